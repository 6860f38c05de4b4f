/*
 * http_parse: an HTTP/1.x request-head parser, pure C (no weft, no I/O, no
 * allocation), for weft-http and its fuzz target.
 *
 * Incremental: the caller appends bytes to one buffer and calls
 * http_parse() again with the whole buffer and the same state; lines already
 * seen are not scanned again. What it parsed is kept as offsets into the
 * buffer, so the caller may move (realloc) the buffer between calls as long as
 * the bytes keep their offsets.
 *
 * Strict where looseness lets two parsers disagree (request smuggling): every
 * line ends in CRLF (a bare LF is a 400), no whitespace before a header's
 * colon, no obsolete line folding, one Content-Length (repeated only with the
 * same value), Transfer-Encoding together with Content-Length is a 400.
 */
#ifndef WEFT_EXAMPLE_HTTP_PARSE_H
#define WEFT_EXAMPLE_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room in a request for this many header fields; limits.max_headers may not
 * exceed it. */
#define HTTP_HEADERS_MAX 64

struct http_limits {
	size_t   max_request_line;  /* bytes of the request line with its CRLF: 414 past it */
	size_t   max_head;          /* bytes of the whole head, request line included: 431 */
	unsigned max_headers;       /* header fields (<= HTTP_HEADERS_MAX): 431 past it    */
	uint64_t max_body;          /* Content-Length: 413 past it                         */
};

/* A span of the buffer: offset and length. */
struct http_span {
	uint32_t off, len;
};

struct http_header {
	struct http_span name, value;   /* value without surrounding blanks */
};

struct http_request {
	struct http_span method, target;
	int      minor;                 /* HTTP/1.<minor>: 0 or 1 */
	unsigned nheaders;
	struct http_header headers[HTTP_HEADERS_MAX];
	uint64_t content_length;        /* 0 when absent */
	bool     keep_alive;            /* from the version and Connection */
	bool     chunked;               /* Transfer-Encoding present (weft-http answers 501) */
	size_t   head_len;              /* bytes of the head, final CRLF included */
};

/* Parser state between calls; http_parser_init() it for every request. */
struct http_parser {
	const struct http_limits *lim;
	size_t line;                    /* offset of the first line not yet parsed */
	size_t scan;                    /* bytes from `line` on known to hold no LF */
	bool   have_request_line;
	bool   have_host;
	bool   have_cl;
	struct http_request req;
};

void http_parser_init(struct http_parser *p, const struct http_limits *lim);

/*
 * Parse buf[0..len) (the bytes of one request, from its first byte on; more
 * may follow it). Returns HTTP_DONE when the head is complete (p->req filled
 * in, p->req.head_len its size), HTTP_MORE when more bytes are needed, or a
 * negative HTTP status: -400 malformed, -414 request line too long, -431 head
 * or header count too large, -413 body too large, -505 HTTP version not
 * supported, -501 Transfer-Encoding (not supported by this parser).
 * *why, when not NULL, gets a static string naming the problem.
 */
#define HTTP_DONE 1
#define HTTP_MORE 0
int http_parse(struct http_parser *p, const char *buf, size_t len, const char **why);

/* Case-insensitive comparison of a span with a NUL-terminated string. */
bool http_span_ieq(const char *buf, struct http_span s, const char *lit);

/* Status line text of a status code ("Bad Request" ...); "Error" if unknown. */
const char *http_reason(int status);

#endif
