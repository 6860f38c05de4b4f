/*
 * libFuzzer target for http_parse (examples/http/fuzz.sh builds and runs it
 * with clang -fsanitize=fuzzer,address,undefined).
 *
 * Besides memory errors it checks the parser's contract: a request fed in
 * pieces (split where the input's first byte says) gets the same answer as
 * the whole request at once: HTTP_MORE on every prefix shorter than the
 * head, then the same status and head length; every span of a parsed
 * request lies inside its head. Small limits, so the 414/431/413 paths run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

static const struct http_limits lim = {
	.max_request_line = 64, .max_head = 512, .max_headers = 8, .max_body = 1000,
};

static void span_ok(struct http_span s, size_t head)
{
	if ((size_t)s.off + s.len > head)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)(data[0] % 17) + 1;
	const char *buf = (const char *)data + 1;
	size_t n = size - 1;

	struct http_parser whole;
	http_parser_init(&whole, &lim);
	const char *why = NULL;
	int r = http_parse(&whole, buf, n, &why);
	if (r < 0 && !why)
		__builtin_trap();               /* every error names its cause */
	if (r == HTTP_DONE) {
		struct http_request *q = &whole.req;
		if (q->head_len > n || q->nheaders > lim.max_headers ||
		    q->content_length > lim.max_body)
			__builtin_trap();
		span_ok(q->method, q->head_len);
		span_ok(q->target, q->head_len);
		for (unsigned i = 0; i < q->nheaders; i++) {
			span_ok(q->headers[i].name, q->head_len);
			span_ok(q->headers[i].value, q->head_len);
		}
	}

	/* The same bytes in pieces of `step`. */
	struct http_parser inc;
	http_parser_init(&inc, &lim);
	int ri = HTTP_MORE;
	for (size_t have = step < n ? step : n;; have = have + step < n ? have + step : n) {
		ri = http_parse(&inc, buf, have, NULL);
		if (ri != HTTP_MORE || have == n)
			break;
	}
	if (ri != r)
		__builtin_trap();
	if (r == HTTP_DONE && inc.req.head_len != whole.req.head_len)
		__builtin_trap();
	return 0;
}
