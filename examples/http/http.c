/*
 * weft-http: an HTTP/1.1 server, one coroutine per connection.
 *
 *   weft-http --port P [--root DIR] [--workers N] [--addr A]
 *             [--idle-timeout-ms N] [--header-timeout-ms N] [--max-body BYTES]
 *
 * GET / (and HEAD /) answers "hello" as text/plain. With --root, any other
 * path is a file under DIR, sent with weft_sendfile (splice through a pipe, in
 * the kernel). Listens on 127.0.0.1 unless --addr says otherwise; --port 0
 * picks a free port. The line "weft-http: listening on ADDR:PORT ..." on
 * stderr says where. SIGINT/SIGTERM stop it cleanly: weft_rt_destroy cancels
 * every coroutine, whose blocking call then returns -ECANCELED and which
 * frees what it holds.
 *
 * Connections: keep-alive and pipelining. Every complete request in the
 * input buffer is answered before the answers go out in one send. Limits
 * (http_parse.h): request line 8 KiB (414), head 16 KiB or 64 fields (431),
 * body --max-body (413, default 1 MiB; bodies are read and dropped). Slow
 * clients: a connection with no request under way is closed after the idle
 * timeout (default 60 s); a request whose head is not complete within the
 * header timeout after its first byte (default 10 s) gets a 408 and the
 * connection is closed, as does a body that stalls that long. Every other
 * malformed request gets its 4xx/5xx and the connection is closed (the
 * parser's state after an error is not trusted to find the next request).
 *
 * Files under --root: the path is percent-decoded, must not contain "." or
 * ".." segments or NUL, and its last component must not be a symlink
 * (O_NOFOLLOW); directories are 404. The root's own content is trusted (a
 * symlinked directory inside it is followed).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"
#include "server.h"
#include "http_parse.h"

#define IN_CAP  (64u * 1024)
#define OUT_CAP (64u * 1024)

static struct {
	int rootfd;                     /* -1: no --root */
	uint64_t idle_ns, header_ns;
	struct http_limits lim;
} conf = {
	.rootfd = -1,
	.idle_ns = 60ull * 1000000000,
	.header_ns = 10ull * 1000000000,
	.lim = {
		.max_request_line = 8 * 1024,
		.max_head = 16 * 1024,
		.max_headers = HTTP_HEADERS_MAX,
		.max_body = 1024 * 1024,
	},
};

struct conn {
	int fd;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len;
};

/* Queue a string literal (or char array): its size is known here. */
#define PUT_LIT(c, s) put((c), (s), sizeof(s) - 1)

static const char hello_head[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n";

/* Send what is queued. Returns 0 or -errno. */
static int flush(struct conn *c, int flags)
{
	if (!c->out_len)
		return 0;
	ssize_t n = weft_send_all(c->fd, c->out, c->out_len, MSG_NOSIGNAL | flags);
	c->out_len = 0;
	return n < 0 ? (int)n : 0;
}

/* Queue bytes, sending first when they would not fit. Returns 0 or -errno. */
static int put(struct conn *c, const char *s, size_t n)
{
	if (c->out_len + n > OUT_CAP) {
		int r = flush(c, 0);
		if (r)
			return r;
		if (n > OUT_CAP)
			return weft_send_all(c->fd, s, n, MSG_NOSIGNAL) < 0 ? -EPIPE : 0;
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
	return 0;
}

/* A response with a short text body; `close` adds Connection: close. */
static int put_status(struct conn *c, int status, const char *text, bool head_only,
		      bool close, bool ka10)
{
	char h[512];
	int n = snprintf(h, sizeof h,
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "%s%s\r\n%s",
			 status, http_reason(status), strlen(text), close ? "Connection: close\r\n" : "",
			 ka10 && !close ? "Connection: keep-alive\r\n" : "",
			 head_only ? "" : text);
	if (n < 0 || (size_t)n >= sizeof h)
		return -EINVAL;
	return put(c, h, (size_t)n);
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The target's path, decoded, as a path relative to the root, in out[cap].
 * Returns 0, or the HTTP status to answer (400, 404). */
static int file_path(const char *t, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	if (n == 0 || t[0] != '/')
		return 400;
	for (size_t i = 1; i < n && t[i] != '?' && t[i] != '#'; i++) {
		char ch = t[i];
		if (ch == '%') {
			int hi = i + 2 < n ? hexval(t[i + 1]) : -1, lo = hi >= 0 ? hexval(t[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return 400;
			ch = (char)(hi * 16 + lo);
			i += 2;
			if (ch == 0)
				return 400;
		}
		if (o + 1 >= cap)
			return 404;
		out[o++] = ch;
	}
	out[o] = 0;
	if (o == 0 || out[o - 1] == '/')
		return 404;
	/* No "." or ".." segment anywhere, no absolute path. */
	for (size_t s = 0; s <= o;) {
		size_t e = s;
		while (e < o && out[e] != '/')
			e++;
		size_t len = e - s;
		if (len == 0 || (len == 1 && out[s] == '.') ||
		    (len == 2 && out[s] == '.' && out[s + 1] == '.'))
			return 404;
		s = e + 1;
	}
	return 0;
}

static const char *content_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html" }, { ".txt", "text/plain" }, { ".css", "text/css" },
		{ ".js", "text/javascript" }, { ".json", "application/json" },
		{ ".png", "image/png" }, { ".jpg", "image/jpeg" }, { ".svg", "image/svg+xml" },
	};
	if (dot)
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
			if (!strcmp(dot, types[i].ext))
				return types[i].type;
	return "application/octet-stream";
}

/* Answer a file under the root. Returns 0, or -errno when the connection
 * must be closed. */
static int serve_file(struct conn *c, const char *t, size_t tn, bool head_only, bool ka,
		      bool ka10)
{
	char path[1024];
	int st = file_path(t, tn, path, sizeof path);
	if (st)
		return put_status(c, st, st == 400 ? "bad path\n" : "not found\n", head_only, !ka, ka10);
	int fd = weft_openat(conf.rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd == -ECANCELED || fd == -ETIMEDOUT)
		return fd;
	if (fd < 0)
		return put_status(c, fd == -EACCES ? 403 : 404,
				  fd == -EACCES ? "forbidden\n" : "not found\n", head_only, !ka, ka10);
	struct stat sb;
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		weft_close(fd);
		return put_status(c, 404, "not found\n", head_only, !ka, ka10);
	}
	char h[512];
	int n = snprintf(h, sizeof h,
			 "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n%s%s\r\n",
			 content_type(path), (long long)sb.st_size, ka ? "" : "Connection: close\r\n",
			 ka10 && ka ? "Connection: keep-alive\r\n" : "");
	int r = put(c, h, (size_t)n);
	if (!r && !head_only && sb.st_size > 0) {
		r = flush(c, MSG_MORE);
		int64_t off = 0;
		ssize_t sent = r ? 0 : weft_sendfile(c->fd, fd, &off, (size_t)sb.st_size);
		/* A file that shrank under us: the promised length cannot be
		 * kept, so the connection must end. */
		if (!r && sent != (ssize_t)sb.st_size)
			r = sent < 0 ? (int)sent : -EIO;
	}
	weft_close(fd);
	return r;
}

/* Read more input: wait at most `timeout` ns. Returns the bytes read, 0 at
 * end of stream, or -errno (-ETIMEDOUT). */
static ssize_t fill(struct conn *c, uint64_t timeout)
{
	return weft_recv_timeout(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0, timeout);
}

static void *serve(void *arg)
{
	struct conn c = { .fd = (int)(intptr_t)arg };
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c.in = malloc(IN_CAP);
	c.out = malloc(OUT_CAP);
	if (!c.in || !c.out)
		goto out;

	struct http_parser p;
	http_parser_init(&p, &conf.lim);
	uint64_t req_start = 0;         /* when the request under way began; 0: none */
	for (;;) {
		size_t off = 0;
		bool done = false;
		while (off < c.in_len && !done) {
			const char *why = NULL;
			int r = http_parse(&p, c.in + off, c.in_len - off, &why);
			if (r == HTTP_MORE)
				break;
			if (r < 0) {
				char text[128];
				snprintf(text, sizeof text, "%s\n", why ? why : "bad request");
				put_status(&c, -r, text, false, true, false);
				flush(&c, 0);
				goto out;
			}
			struct http_request *q = &p.req;
			const char *m = c.in + off;
			bool get = http_span_ieq(m, q->method, "GET");
			bool head = !get && http_span_ieq(m, q->method, "HEAD");
			bool ka = q->keep_alive, ka10 = q->minor == 0;
			/* Method names are case-sensitive; http_span_ieq is not. */
			if ((get && memcmp(m + q->method.off, "GET", 3)) ||
			    (head && memcmp(m + q->method.off, "HEAD", 4)))
				get = head = false;
			const char *target = m + q->target.off;
			size_t tn = q->target.len;
			uint64_t body = q->content_length;
			off += q->head_len;
			int err;
			if (!get && !head) {
				err = PUT_LIT(&c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
					      "Content-Length: 0\r\n");
				if (!err)
					err = ka ? PUT_LIT(&c, "\r\n") : PUT_LIT(&c, "Connection: close\r\n\r\n");
			} else if (tn == 1 && target[0] == '/') {
				err = PUT_LIT(&c, hello_head);
				if (!err && !ka)
					err = PUT_LIT(&c, "Connection: close\r\n");
				else if (!err && ka10)
					err = PUT_LIT(&c, "Connection: keep-alive\r\n");
				if (!err)
					err = head ? PUT_LIT(&c, "\r\n") : PUT_LIT(&c, "\r\nhello");
			} else if (conf.rootfd >= 0) {
				err = serve_file(&c, target, tn, head, ka, ka10);
			} else {
				err = put_status(&c, 404, "not found\n", head, !ka, ka10);
			}
			if (err)
				goto out;
			/* Drop the body: what is buffered now, then the rest as it comes. */
			uint64_t have = c.in_len - off < body ? c.in_len - off : body;
			off += have;
			body -= have;
			while (body) {
				if (flush(&c, 0))
					goto out;
				c.in_len = 0;
				off = 0;
				ssize_t n = fill(&c, conf.header_ns);
				if (n <= 0)
					goto out;
				size_t take = (uint64_t)n < body ? (size_t)n : (size_t)body;
				off = take;
				c.in_len = (size_t)n;
				body -= take;
			}
			http_parser_init(&p, &conf.lim);
			req_start = 0;
			if (!ka)
				done = true;
		}
		if (flush(&c, 0) || done)
			goto out;
		/* Keep the unparsed rest (a partial request) at the buffer's start;
		 * the parser's offsets are relative to it, so they stay valid. */
		if (off) {
			memmove(c.in, c.in + off, c.in_len - off);
			c.in_len -= off;
		}
		uint64_t now = weft_now(), timeout;
		if (c.in_len == 0) {
			timeout = conf.idle_ns;
		} else {
			if (!req_start)
				req_start = now;
			if (now - req_start >= conf.header_ns)
				timeout = 0;
			else
				timeout = conf.header_ns - (now - req_start);
		}
		ssize_t n = timeout ? fill(&c, timeout) : -ETIMEDOUT;
		if (n == -ETIMEDOUT && c.in_len) {
			put_status(&c, 408, "request head not received in time\n", false, true, false);
			flush(&c, 0);
			goto out;
		}
		if (n <= 0)
			goto out;
		if (c.in_len == 0)
			req_start = weft_now();
		c.in_len += (size_t)n;
	}
out:
	free(c.in);
	free(c.out);
	weft_close(c.fd);
	return NULL;
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "weft-http: %s\n", why);
	fprintf(stderr, "usage: weft-http --port P [--root DIR] [--workers N] [--addr A]\n"
			"                 [--idle-timeout-ms N] [--header-timeout-ms N] [--max-body BYTES]\n");
	exit(2);
}

/* A whole decimal number in [min, max], or usage(). */
static unsigned long long number(const char *s, unsigned long long min, unsigned long long max,
				 const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		char msg[128];
		snprintf(msg, sizeof msg, "bad %s '%s' (%llu..%llu)", what, s, min, max);
		usage(msg);
	}
	return v;
}

int main(int argc, char **argv)
{
	int port = -1;
	unsigned workers = 0;
	const char *addr = "127.0.0.1", *root = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage(!strcmp(a, "--help") ? NULL : "missing value");
		i++;
		if (!strcmp(a, "--port"))
			port = (int)number(v, 0, 65535, "port");
		else if (!strcmp(a, "--workers"))
			workers = (unsigned)number(v, 1, 1024, "worker count");
		else if (!strcmp(a, "--addr"))
			addr = v;
		else if (!strcmp(a, "--root"))
			root = v;
		else if (!strcmp(a, "--idle-timeout-ms"))
			conf.idle_ns = number(v, 1, 86400000, "idle timeout") * 1000000;
		else if (!strcmp(a, "--header-timeout-ms"))
			conf.header_ns = number(v, 1, 86400000, "header timeout") * 1000000;
		else if (!strcmp(a, "--max-body"))
			conf.lim.max_body = number(v, 0, 1ull << 40, "body limit");
		else
			usage("unknown option");
	}
	if (port < 0)
		usage("--port is required");
	if (root) {
		conf.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (conf.rootfd < 0) {
			fprintf(stderr, "weft-http: --root %s: %s\n", root, strerror(errno));
			return 2;
		}
	}

	int bound;
	int lfd = ex_listen("weft-http", addr, port, &bound);
	if (lfd < 0)
		return lfd == -EINVAL ? 2 : 1;

	/* Signals go to this thread, which waits for them; the runtime's
	 * workers inherit the blocked mask. */
	sigset_t set;
	ex_signals_block(&set);

	struct ex_acceptor acceptor = { "weft-http", lfd, serve };
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers };
	int err = weft_rt_create(&rt, &cfg);
	if (err) {
		fprintf(stderr, "weft-http: runtime: %s\n", weft_strerror(err));
		return 1;
	}
	err = weft_rt_spawn(rt, NULL, ex_accept_loop, &acceptor);
	if (err) {
		fprintf(stderr, "weft-http: spawn: %s\n", weft_strerror(err));
		weft_rt_destroy(rt);
		return 1;
	}
	fprintf(stderr, "weft-http: listening on %s:%d with %u workers\n", addr,
		bound, weft_rt_workers(rt));
	ex_signals_wait(&set);
	weft_rt_destroy(rt);
	close(lfd);
	if (conf.rootfd >= 0)
		close(conf.rootfd);
	return 0;
}
