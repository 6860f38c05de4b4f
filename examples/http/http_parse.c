/*
 * http_parse.c: see http_parse.h. A line-at-a-time parser: each call looks
 * for the next LF past the bytes it already scanned, parses that complete line
 * (request line, then header fields) and stops at the empty line that ends the
 * head. Limits are checked as bytes arrive, so a client that never sends a LF
 * is refused as soon as it passes a limit, not when its connection times out.
 */
#include "http_parse.h"

#include <string.h>

void http_parser_init(struct http_parser *p, const struct http_limits *lim)
{
	memset(p, 0, offsetof(struct http_parser, req));
	p->lim = lim;
	p->req.minor = 1;
	p->req.nheaders = 0;
	p->req.content_length = 0;
	p->req.keep_alive = false;
	p->req.chunked = false;
	p->req.head_len = 0;
}

/* RFC 9110 tchar: the characters of a token. */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool http_span_ieq(const char *buf, struct http_span s, const char *lit)
{
	size_t n = strlen(lit);
	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)buf[s.off + i]) != lower((unsigned char)lit[i]))
			return false;
	return true;
}

static struct http_span span(size_t off, size_t len)
{
	return (struct http_span){ (uint32_t)off, (uint32_t)len };
}

static int fail(const char **why, int status, const char *msg)
{
	if (why)
		*why = msg;
	return -status;
}

/* "method SP target SP HTTP/1.x", without its CRLF. */
static int request_line(struct http_parser *p, const char *buf, size_t s, size_t e,
			const char **why)
{
	size_t i = s;
	while (i < e && is_tchar((unsigned char)buf[i]))
		i++;
	if (i == s || i == e || buf[i] != ' ')
		return fail(why, 400, "bad method");
	p->req.method = span(s, i - s);
	size_t t = ++i;
	while (i < e && (unsigned char)buf[i] > ' ' && (unsigned char)buf[i] < 0x7f)
		i++;
	if (i == t || i == e || buf[i] != ' ')
		return fail(why, 400, "bad request target");
	p->req.target = span(t, i - t);
	i++;
	if (e - i != 8 || memcmp(buf + i, "HTTP/", 5) || buf[i + 6] != '.')
		return fail(why, 400, "bad HTTP version");
	char maj = buf[i + 5], min = buf[i + 7];
	if (maj < '0' || maj > '9' || min < '0' || min > '9')
		return fail(why, 400, "bad HTTP version");
	if (maj != '1' || (min != '0' && min != '1'))
		return fail(why, 505, "HTTP version not supported");
	p->req.minor = min - '0';
	p->req.keep_alive = p->req.minor == 1;
	return 0;
}

/* Connection: a comma-separated token list. */
static void connection(struct http_parser *p, const char *buf, struct http_span v)
{
	size_t i = v.off, e = (size_t)v.off + v.len;
	while (i < e) {
		while (i < e && (buf[i] == ',' || buf[i] == ' ' || buf[i] == '\t'))
			i++;
		size_t t = i;
		while (i < e && buf[i] != ',' && buf[i] != ' ' && buf[i] != '\t')
			i++;
		if (http_span_ieq(buf, span(t, i - t), "close"))
			p->req.keep_alive = false;
		else if (http_span_ieq(buf, span(t, i - t), "keep-alive") && p->req.minor == 0)
			p->req.keep_alive = true;
	}
}

static int content_length(struct http_parser *p, const char *buf, struct http_span v,
			  const char **why)
{
	uint64_t n = 0;
	if (v.len == 0)
		return fail(why, 400, "empty Content-Length");
	for (size_t i = v.off; i < (size_t)v.off + v.len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < '0' || c > '9')
			return fail(why, 400, "bad Content-Length");
		if (n > (UINT64_MAX - 9) / 10)
			return fail(why, 413, "body too large");
		n = n * 10 + (c - '0');
	}
	if (p->have_cl && n != p->req.content_length)
		return fail(why, 400, "conflicting Content-Length");
	if (n > p->lim->max_body)
		return fail(why, 413, "body too large");
	p->have_cl = true;
	p->req.content_length = n;
	return 0;
}

/* "name: value", without its CRLF. */
static int header_line(struct http_parser *p, const char *buf, size_t s, size_t e,
		       const char **why)
{
	if (buf[s] == ' ' || buf[s] == '\t')
		return fail(why, 400, "obsolete header line folding");
	size_t i = s;
	while (i < e && is_tchar((unsigned char)buf[i]))
		i++;
	if (i == s || i == e || buf[i] != ':')
		return fail(why, 400, "bad header name");
	struct http_span name = span(s, i - s);
	i++;
	while (i < e && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	size_t vs = i, ve = i;
	for (; i < e; i++) {
		unsigned char c = (unsigned char)buf[i];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			return fail(why, 400, "control character in header value");
		if (c != ' ' && c != '\t')
			ve = i + 1;
	}
	if (p->req.nheaders >= p->lim->max_headers)
		return fail(why, 431, "too many header fields");
	struct http_span value = span(vs, ve - vs);
	p->req.headers[p->req.nheaders++] = (struct http_header){ name, value };

	if (http_span_ieq(buf, name, "content-length"))
		return content_length(p, buf, value, why);
	if (http_span_ieq(buf, name, "transfer-encoding"))
		p->req.chunked = true;
	else if (http_span_ieq(buf, name, "connection"))
		connection(p, buf, value);
	else if (http_span_ieq(buf, name, "host")) {
		if (p->have_host)
			return fail(why, 400, "more than one Host");
		p->have_host = true;
	}
	return 0;
}

/* The size limits, for a line starting at s whose bytes [s, reach) hold no
 * LF (reach: the LF's index, or the end of what has arrived). When the line
 * is past both, the limit crossed first in byte order answers (414 on a
 * tie, as one arrival crossing both at once gets): so the answer is the same
 * however the bytes were split into reads, which fuzz_http.c checks. Checking
 * 414 first always gave 414 to a whole head but 431 to the same bytes read
 * in pieces when the head limit came first. */
static int check_limits(const struct http_parser *p, size_t s, size_t reach, const char **why)
{
	const struct http_limits *lim = p->lim;
	bool line = !p->have_request_line && reach - s >= lim->max_request_line;
	bool head = reach >= lim->max_head;
	if (line && head)
		line = s + lim->max_request_line <= lim->max_head;
	if (line)
		return fail(why, 414, "request line too long");
	if (head)
		return fail(why, 431, "request head too large");
	return 0;
}

int http_parse(struct http_parser *p, const char *buf, size_t len, const char **why)
{
	for (;;) {
		size_t s = p->line;
		const char *nl = len > s + p->scan ?
			memchr(buf + s + p->scan, '\n', len - s - p->scan) : NULL;
		if (!nl) {
			p->scan = len - s;
			int lr = check_limits(p, s, len, why);
			return lr ? lr : HTTP_MORE;
		}
		size_t e = (size_t)(nl - buf);   /* the LF */
		p->scan = 0;
		p->line = e + 1;
		int lr = check_limits(p, s, e, why);
		if (lr)
			return lr;
		if (e == s || buf[e - 1] != '\r')
			return fail(why, 400, "line not ended by CRLF");
		e--;                              /* the CR */
		if (!p->have_request_line) {
			if (e == s)
				continue;         /* an empty line before a request is ignored */
			int r = request_line(p, buf, s, e, why);
			if (r)
				return r;
			p->have_request_line = true;
			continue;
		}
		if (e > s) {
			int r = header_line(p, buf, s, e, why);
			if (r)
				return r;
			continue;
		}
		/* The empty line: the head is complete. */
		if (p->req.minor == 1 && !p->have_host)
			return fail(why, 400, "missing Host");
		if (p->req.chunked && p->have_cl)
			return fail(why, 400, "both Transfer-Encoding and Content-Length");
		if (p->req.chunked)
			return fail(why, 501, "Transfer-Encoding not supported");
		p->req.head_len = p->line;
		return HTTP_DONE;
	}
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 505: return "HTTP Version Not Supported";
	default:  return "Error";
	}
}
