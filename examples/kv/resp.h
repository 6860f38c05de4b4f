/*
 * resp: a parser of Redis protocol (RESP2) requests, pure C (no weft, no
 * I/O, no allocation), for weft-kv and its fuzz target.
 *
 * A request is a multibulk array of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
 * or an inline command (a line of words separated by blanks, as typed by hand
 * over telnet; no quoting). Every length is bounded by struct resp_limits and
 * every violation is a protocol error with a message in Redis' words; after
 * one the stream cannot be trusted, so the server answers "-ERR <why>" and
 * closes the connection, as Redis does.
 *
 * Stateless between calls: the caller keeps the bytes of a partial request
 * and calls again when more arrived; *need says how many bytes in all the
 * request needs at least, so a large bulk string is not parsed again for
 * every read that adds to it.
 */
#ifndef WEFT_EXAMPLE_RESP_H
#define WEFT_EXAMPLE_RESP_H

#include <stddef.h>
#include <stdint.h>

struct resp_limits {
	unsigned max_args;      /* arguments in one request (argv's room)         */
	uint32_t max_bulk;      /* bytes of one bulk string (< 2 GiB)             */
	uint32_t max_inline;    /* bytes of an inline request line                */
	uint32_t max_request;   /* bytes of one whole request (< 4 GiB)           */
};

/* An argument: buf[off .. off+len). */
struct resp_arg {
	uint32_t off, len;
};

/*
 * Parse the request at the start of buf[0..len). Returns the bytes it takes
 * (> 0) with its arguments in argv[0..*argc) (*argc may be 0: an empty line or
 * an empty array, to skip), 0 when buf holds only part of it (*need: the
 * total bytes needed at least, > len), or -1 on a protocol error (*why: a
 * static message, without "ERR " and without CRLF).
 */
long resp_parse(const char *buf, size_t len, const struct resp_limits *lim,
		struct resp_arg *argv, unsigned *argc, size_t *need, const char **why);

#endif
