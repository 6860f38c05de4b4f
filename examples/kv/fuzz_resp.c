/*
 * libFuzzer target for resp_parse (examples/http/fuzz.sh builds and runs it
 * with clang -fsanitize=fuzzer,address,undefined).
 *
 * Besides memory errors it checks the parser's contract: a parsed request
 * takes at most the bytes given and its arguments lie inside what it took;
 * every shorter prefix of it answers "need more" (never an error), with a
 * need larger than the prefix and no larger than the request; an error always
 * names its cause. Requests after the first are parsed too, as a pipelining
 * server would. Small limits, so the limit paths run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static const struct resp_limits lim = {
	.max_args = 16, .max_bulk = 256, .max_inline = 128, .max_request = 1024,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct resp_arg argv[16];
	const char *buf = (const char *)data;
	size_t off = 0;
	for (int cmds = 0; cmds < 64 && off < size; cmds++) {
		unsigned argc;
		size_t need = 0;
		const char *why = NULL;
		long used = resp_parse(buf + off, size - off, &lim, argv, &argc, &need, &why);
		if (used < 0) {
			if (!why)
				__builtin_trap();
			return 0;
		}
		if (used == 0) {
			if (need <= size - off)
				__builtin_trap();
			return 0;
		}
		if ((size_t)used > size - off || argc > lim.max_args)
			__builtin_trap();
		for (unsigned i = 0; i < argc; i++)
			if ((size_t)argv[i].off + argv[i].len > (size_t)used)
				__builtin_trap();
		/* Prefixes: all of them for short requests, a spread otherwise. */
		size_t stride = (size_t)used > 64 ? (size_t)used / 32 : 1;
		for (size_t k = 0; k < (size_t)used; k += stride) {
			long r = resp_parse(buf + off, k, &lim, argv, &argc, &need, &why);
			if (r != 0 || need <= k || need > (size_t)used)
				__builtin_trap();
		}
		off += (size_t)used;
	}
	return 0;
}
