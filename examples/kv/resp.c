/*
 * resp.c: see resp.h. Redis' own reader (networking.c) accepts the same
 * shapes; the limits and messages follow it so that clients see familiar
 * errors, but the code is this project's: a multibulk request is walked
 * header by header, each "$<len>" checked against the limits before its bytes
 * are waited for.
 */
#include "resp.h"

#include <string.h>

/* Longest "*<count>\r\n" or "$<len>\r\n" line: the prefix, a sign, 19 digits
 * and CRLF fit. Longer is a protocol error, not a reason to wait. */
#define INT_LINE_MAX 24

static long protocol_error(const char **why, const char *msg)
{
	*why = msg;
	return -1;
}

/*
 * The integer of the line at buf[*pos] (its first byte, the prefix, is
 * skipped). Returns 1 with *val set and *pos past the CRLF, 0 when the line is
 * not complete yet, -1 when it is not "<prefix><integer>\r\n".
 */
static int int_line(const char *buf, size_t len, size_t *pos, long long *val)
{
	size_t i = *pos + 1;
	if (i >= len)
		return 0;
	size_t room = len - i;
	const char *cr = memchr(buf + i, '\r', room < INT_LINE_MAX ? room : INT_LINE_MAX);
	if (!cr)
		return room >= INT_LINE_MAX ? -1 : 0;
	size_t e = (size_t)(cr - buf);
	if (e + 1 >= len)
		return 0;
	if (buf[e + 1] != '\n')
		return -1;
	int neg = i < e && buf[i] == '-';
	size_t d = i + (size_t)neg;
	if (d == e || e - d > 18)
		return -1;
	long long v = 0;
	for (; d < e; d++) {
		if (buf[d] < '0' || buf[d] > '9')
			return -1;
		v = v * 10 + (buf[d] - '0');
	}
	*val = neg ? -v : v;
	*pos = e + 2;
	return 1;
}

static long multibulk(const char *buf, size_t len, const struct resp_limits *lim,
		      struct resp_arg *argv, unsigned *argc, size_t *need, const char **why)
{
	size_t pos = 0;
	long long n;
	int r = int_line(buf, len, &pos, &n);
	if (r <= 0) {
		*need = len + 1;
		return r ? protocol_error(why, "Protocol error: invalid multibulk length") : 0;
	}
	if (n > (long long)lim->max_args)
		return protocol_error(why, "Protocol error: invalid multibulk length");
	if (n <= 0) {                   /* "*0" and "*-1": nothing to do, as Redis */
		*argc = 0;
		return (long)pos;
	}
	for (unsigned k = 0; k < (unsigned)n; k++) {
		if (pos >= len) {
			*need = pos + 1;
			return 0;
		}
		if (buf[pos] != '$')
			return protocol_error(why, "Protocol error: expected '$'");
		long long b;
		r = int_line(buf, len, &pos, &b);
		if (r == 0) {
			*need = len + 1;
			return 0;
		}
		if (r < 0 || b < 0 || b > (long long)lim->max_bulk)
			return protocol_error(why, "Protocol error: invalid bulk length");
		size_t end = pos + (size_t)b + 2;
		if (end > lim->max_request)
			return protocol_error(why, "Protocol error: request too large");
		if (end > len) {
			*need = end;
			return 0;
		}
		if (buf[end - 2] != '\r' || buf[end - 1] != '\n')
			return protocol_error(why, "Protocol error: bulk string not followed by CRLF");
		argv[k] = (struct resp_arg){ (uint32_t)pos, (uint32_t)b };
		pos = end;
	}
	*argc = (unsigned)n;
	return (long)pos;
}

static long inline_request(const char *buf, size_t len, const struct resp_limits *lim,
			   struct resp_arg *argv, unsigned *argc, size_t *need, const char **why)
{
	size_t room = len < lim->max_inline ? len : lim->max_inline;
	const char *nl = memchr(buf, '\n', room);
	if (!nl) {
		if (len >= lim->max_inline)
			return protocol_error(why, "Protocol error: too big inline request");
		*need = len + 1;
		return 0;
	}
	size_t e = (size_t)(nl - buf), end = e;
	if (end > 0 && buf[end - 1] == '\r')
		end--;
	unsigned n = 0;
	for (size_t i = 0; i < end;) {
		while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		if (i == end)
			break;
		size_t s = i;
		while (i < end && buf[i] != ' ' && buf[i] != '\t')
			i++;
		if (n == lim->max_args)
			return protocol_error(why, "Protocol error: too many arguments");
		argv[n++] = (struct resp_arg){ (uint32_t)s, (uint32_t)(i - s) };
	}
	*argc = n;
	return (long)(e + 1);
}

long resp_parse(const char *buf, size_t len, const struct resp_limits *lim,
		struct resp_arg *argv, unsigned *argc, size_t *need, const char **why)
{
	*argc = 0;
	if (len == 0) {
		*need = 1;
		return 0;
	}
	if (buf[0] == '*')
		return multibulk(buf, len, lim, argv, argc, need, why);
	return inline_request(buf, len, lim, argv, argc, need, why);
}
