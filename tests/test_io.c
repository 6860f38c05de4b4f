/*
 * test_io.c — coroutine I/O (src/io/ops.c) through the whole runtime:
 * sockets, files, many connections, peer reset and half-close, deadlines,
 * cancellation of an op in flight (its buffer must stay untouched), and the
 * -EPERM / -EOPNOTSUPP edges. Suites run with 1, 2 and 4 workers; tiny
 * rings (8 SQEs) get a burst that must take the SQ-full and CQ-overflow paths
 * (checked in the stats counters), then the many-connections load.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"

#define MS 1000000ull
#define SEC 1000000000ull

static const unsigned worker_counts[] = { 1, 2, 4 };
#define FOR_EACH_WORKERS(n) \
	for (unsigned _i = 0, n; _i < 3 && ((n = worker_counts[_i]), 1); _i++)

static weft_rt *make_rt(unsigned workers, unsigned ring_entries)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers, .ring_entries = ring_entries };
	int err = weft_rt_create(&rt, &cfg);
	if (err == -EPERM || err == -ENOSYS)
		cr_skip_test("no io_uring here");
	cr_assert_eq(err, 0, "weft_rt_create(%u workers): %s", workers, weft_strerror(err));
	return rt;
}

static void *run_in(unsigned workers, unsigned ring_entries, weft_fn fn, void *arg)
{
	weft_rt *rt = make_rt(workers, ring_entries);
	void *ret = (void *)1;
	cr_assert_eq(weft_rt_run(rt, fn, arg, &ret), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	return ret;
}

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return (void *)1; } } while (0)

/* ------------------------------------------------------------ socketpair --- */

#define MIB (1u << 20)

struct pair_arg { int fd; unsigned char *buf; ssize_t res; };

static void *sender(void *p)
{
	struct pair_arg *a = p;
	a->res = weft_send_all(a->fd, a->buf, MIB, 0);
	return NULL;
}

static void *socketpair_main(void *arg)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	unsigned char *out = malloc(MIB), *in = malloc(MIB);
	for (unsigned i = 0; i < MIB; i++)
		out[i] = (unsigned char)(i * 7 + (i >> 11));
	memset(in, 0, MIB);
	struct pair_arg a = { .fd = sv[0], .buf = out };
	weft_task *t;
	CHECK(weft_spawn(&t, sender, &a) == 0, "spawn");
	size_t got = 0;
	while (got < MIB) {
		ssize_t r = weft_recv(sv[1], in + got, MIB - got, 0);
		CHECK(r > 0, "recv: %zd after %zu bytes", r, got);
		got += (size_t)r;
	}
	CHECK(weft_join(t, NULL) == 0, "join");
	CHECK(a.res == MIB, "send_all: %zd", a.res);
	CHECK(memcmp(in, out, MIB) == 0, "content differs");
	CHECK(weft_close(sv[0]) == 0 && weft_close(sv[1]) == 0, "close");
	CHECK(weft_close(sv[0]) == -EBADF, "double close is -EBADF");
	free(in);
	free(out);
	return NULL;
}

Test(io, socketpair_1mib)
{
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, socketpair_main, NULL), "with %u workers", n);
}

/* ------------------------------------------------------------------ files --- */

static void *file_main(void *arg)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/weft-test-io-%d-%u", getpid(), (unsigned)weft_worker_id() + 1);
	enum { N = 256 * 1024 };
	unsigned char *out = malloc(N), *in = malloc(N);
	for (unsigned i = 0; i < N; i++)
		out[i] = (unsigned char)(i ^ (i >> 8));
	int fd = weft_openat(AT_FDCWD, path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	CHECK(fd >= 0, "openat: %s", weft_strerror(fd));
	/* off -1: at the file position, which must advance */
	CHECK(weft_write_all(fd, out, N / 2, -1) == N / 2, "write_all 1");
	CHECK(weft_write_all(fd, out + N / 2, N / 2, -1) == N / 2, "write_all 2");
	CHECK(lseek(fd, 0, SEEK_CUR) == N, "file position %ld", (long)lseek(fd, 0, SEEK_CUR));
	CHECK(weft_fsync(fd) == 0, "fsync");
	CHECK(weft_fdatasync(fd) == 0, "fdatasync");
	struct statx st;
	CHECK(weft_statx(AT_FDCWD, path, 0, STATX_SIZE, &st) == 0, "statx");
	CHECK(st.stx_size == N, "size %llu", (unsigned long long)st.stx_size);
	/* read back at explicit offsets, then at the position */
	memset(in, 0, N);
	size_t got = 0;
	while (got < N) {
		ssize_t r = weft_read(fd, in + got, N - got, (int64_t)got);
		CHECK(r > 0, "read: %zd", r);
		got += (size_t)r;
	}
	CHECK(memcmp(in, out, N) == 0, "content differs");
	CHECK(weft_read(fd, in, 16, -1) == 0, "read at EOF position gives 0");
	struct iovec iov[2] = { { in, 100 }, { in + 100, 50 } };
	CHECK(weft_readv(fd, iov, 2, 1000) == 150, "readv");
	CHECK(memcmp(in, out + 1000, 150) == 0, "readv content");
	struct iovec wv[1] = { { out, 10 } };
	CHECK(weft_writev(fd, wv, 1, N) == 10, "writev");
	CHECK(weft_fallocate(fd, 0, 0, 2 * N) == 0, "fallocate");
	CHECK(weft_statx(AT_FDCWD, path, 0, STATX_SIZE, &st) == 0 && st.stx_size == 2 * N,
	      "size after fallocate");
	CHECK(weft_close(fd) == 0, "close");
	CHECK(weft_openat(AT_FDCWD, "/nonexistent/dir/x", O_RDONLY, 0) == -ENOENT, "ENOENT");
	unlink(path);
	free(in);
	free(out);
	return NULL;
}

Test(io, file_write_fsync_read_back)
{
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, file_main, NULL), "with %u workers", n);
}

struct sf { int out, in; int64_t *off; size_t n; ssize_t res; };

static void *sf_fn(void *p)
{
	struct sf *s = p;
	s->res = weft_sendfile(s->out, s->in, s->off, s->n);
	return NULL;
}

static void *sendfile_main(void *arg)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/weft-test-sf-%d", getpid());
	enum { N = 300000 };
	unsigned char *out = malloc(N), *in = malloc(N);
	for (unsigned i = 0; i < N; i++)
		out[i] = (unsigned char)(i * 13);
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && write(fd, out, N) == N, "prepare file");
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	int64_t off = 0;
	/* The reader runs concurrently so a small socket buffer cannot stall. */
	struct sf s = { sv[0], fd, &off, N + 1000, 0 };   /* asks past EOF: short */
	weft_task *t;
	CHECK(weft_spawn(&t, sf_fn, &s) == 0, "spawn");
	size_t got = 0;
	while (got < N) {
		ssize_t r = weft_recv(sv[1], in + got, N - got, 0);
		CHECK(r > 0, "recv %zd", r);
		got += (size_t)r;
	}
	CHECK(weft_join(t, NULL) == 0, "join");
	CHECK(s.res == N, "sendfile returned %zd", s.res);
	CHECK(off == N, "offset advanced to %lld", (long long)off);
	CHECK(memcmp(in, out, N) == 0, "content");
	close(fd);
	close(sv[0]);
	close(sv[1]);
	unlink(path);
	free(in);
	free(out);
	return NULL;
}

Test(io, sendfile_through_splice)
{
	cr_assert_null(run_in(2, 0, sendfile_main, NULL));
}

/* An error that stops weft_sendfile after some bytes leaves bytes it read
 * into its pipe that it never wrote. Here the output file reaches
 * RLIMIT_FSIZE: the splice out of the pipe writes up to the limit, the next
 * one fails with -EFBIG. The call returns the bytes copied, and the input
 * offset (*off, or the file position when off is NULL) must advance by just
 * as many, so a caller can carry on from there. */
static void *sendfile_partial_main(void *arg)
{
	enum { N = 100000, LIMIT = 10000 };
	char src[64], dst[64];
	snprintf(src, sizeof src, "/tmp/weft-test-sfp-src-%d", getpid());
	snprintf(dst, sizeof dst, "/tmp/weft-test-sfp-dst-%d", getpid());
	unsigned char *data = malloc(N);
	for (unsigned i = 0; i < N; i++)
		data[i] = (unsigned char)(i * 29 + 3);
	int fd = open(src, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && write(fd, data, N) == N && close(fd) == 0, "prepare source");
	ssize_t res[2];
	int64_t off = 0;
	off_t pos[2];
	struct rlimit old, lim;
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit");
	void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
	lim.rlim_cur = LIMIT;
	lim.rlim_max = old.rlim_max;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
	for (int pass = 0; pass < 2; pass++) {
		int in = open(src, O_RDONLY | O_CLOEXEC);
		int out = open(dst, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
		res[pass] = in >= 0 && out >= 0 ? weft_sendfile(out, in, pass == 0 ? &off : NULL, N)
		                                : -EBADF;
		pos[pass] = lseek(in, 0, SEEK_CUR);
		close(in);
		close(out);
	}
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	unlink(src);
	unlink(dst);
	free(data);
	CHECK(res[0] == LIMIT, "sendfile with an offset returned %zd", res[0]);
	CHECK(off == res[0], "offset advanced to %lld after %zd bytes copied",
	      (long long)off, res[0]);
	CHECK(pos[0] == 0, "file position moved to %lld although an offset was given",
	      (long long)pos[0]);
	CHECK(res[1] == LIMIT, "sendfile from the file position returned %zd", res[1]);
	CHECK(pos[1] == res[1], "file position advanced to %lld after %zd bytes copied",
	      (long long)pos[1], res[1]);
	return NULL;
}

Test(io, sendfile_stopped_by_an_error_advances_by_what_it_copied)
{
	cr_assert_null(run_in(1, 0, sendfile_partial_main, NULL));
}

/* ------------------------------------------------------------------- TCP --- */

static int tcp_listener(uint16_t *port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, backlog))
		return -errno;
	socklen_t l = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &l);
	*port = ntohs(a.sin_port);
	return fd;
}

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int r = weft_connect(fd, (struct sockaddr *)&a, sizeof a);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static void *echo_conn(void *p)
{
	int fd = (int)(intptr_t)p;
	char buf[4096];
	for (;;) {
		ssize_t r = weft_recv(fd, buf, sizeof buf, 0);
		if (r <= 0)
			break;
		if (weft_send_all(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0)
			break;
	}
	weft_close(fd);
	return NULL;
}

struct server { int lfd; int conns; _Atomic int accepted; int err; };

static void *acceptor(void *p)
{
	struct server *s = p;
	for (int i = 0; i < s->conns; i++) {
		int c = weft_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			s->err = c;
			return NULL;
		}
		atomic_fetch_add(&s->accepted, 1);
		if (weft_spawn(NULL, echo_conn, (void *)(intptr_t)c)) {
			s->err = -ENOMEM;
			return NULL;
		}
	}
	return NULL;
}

struct client { uint16_t port; int id; int ok; };

static void *client_fn(void *p)
{
	struct client *c = p;
	int fd = tcp_connect(c->port);
	if (fd < 0)
		return NULL;
	char msg[64], back[64];
	for (int round = 0; round < 3; round++) {
		snprintf(msg, sizeof msg, "client %06d round %d ................................", c->id, round);
		if (weft_send_all(fd, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg)
			goto out;
		size_t got = 0;
		while (got < sizeof back) {
			ssize_t r = weft_recv(fd, back + got, sizeof back - got, 0);
			if (r <= 0)
				goto out;
			got += (size_t)r;
		}
		if (memcmp(msg, back, sizeof msg))
			goto out;
	}
	c->ok = 1;
out:
	weft_close(fd);
	return NULL;
}

struct many { int conns; };

static void *many_main(void *arg)
{
	struct many *m = arg;
	uint16_t port;
	int lfd = tcp_listener(&port, 4096);
	CHECK(lfd >= 0, "listen: %s", weft_strerror(lfd));
	struct server s = { .lfd = lfd, .conns = m->conns };
	weft_task *acc;
	CHECK(weft_spawn(&acc, acceptor, &s) == 0, "spawn acceptor");
	struct client *cl = calloc((size_t)m->conns, sizeof *cl);
	weft_task **ts = calloc((size_t)m->conns, sizeof *ts);
	for (int i = 0; i < m->conns; i++) {
		cl[i].port = port;
		cl[i].id = i;
		CHECK(weft_spawn(&ts[i], client_fn, &cl[i]) == 0, "spawn client %d", i);
	}
	int ok = 0;
	for (int i = 0; i < m->conns; i++) {
		weft_join(ts[i], NULL);
		ok += cl[i].ok;
	}
	weft_join(acc, NULL);
	close(lfd);
	CHECK(s.err == 0, "accept: %s", weft_strerror(s.err));
	CHECK(ok == m->conns, "%d of %d connections echoed correctly", ok, m->conns);
	free(cl);
	free(ts);
	return NULL;
}

static void need_fds(rlim_t n)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < n) {
		rl.rlim_cur = rl.rlim_max < n ? rl.rlim_max : n;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < n)
		cr_skip_test("RLIMIT_NOFILE %lu < %lu", (unsigned long)rl.rlim_cur, (unsigned long)n);
}

Test(io, tcp_1000_connections_echo)
{
	need_fds(2200);
	struct many m = { .conns = 1000 };
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, many_main, &m), "with %u workers", n);
}

/*
 * More ops than an 8-entry ring holds, on one worker, so that its SQ-full
 * and CQ-overflow paths must run, by count: BURST readers, spawned in a row,
 * each park in a recv on a socketpair of their own. Their SQEs are prepared
 * faster than the scheduler submits them (it submits when its local work runs
 * dry or every WEFT__INJECT_EVERY ticks, not per SQE), so the 8-entry SQ
 * fills and weft__ring_sqe submits early. Then this coroutine writes a byte to
 * each socket without switching: BURST completions wait for the owner's next
 * reap, more than the 16-entry CQ holds, so the kernel keeps the rest on its
 * overflow list and the reap must flush it. WEFT_RT_NO_RESCUE_SIGNAL keeps the
 * monitor from posting the completions early should this coroutine be
 * preempted while it writes (with DEFER_TASKRUN they then stay in the kernel
 * until the owner enters it).
 */
enum { BURST = 64 };

struct burst_reader { int fd; ssize_t res; char c; };

static void *burst_reader_fn(void *p)
{
	struct burst_reader *b = p;
	b->res = weft_recv(b->fd, &b->c, 1, 0);
	return NULL;
}

struct burst { struct weft_stats before, after; };

static void *burst_main(void *arg)
{
	struct burst *bu = arg;
	int sv[BURST][2];
	struct burst_reader rd[BURST];
	weft_task *t[BURST];
	CHECK(weft_rt_stats(weft_rt_current(), &bu->before, NULL, 0) == 0, "stats");
	for (int i = 0; i < BURST; i++) {
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]) == 0, "socketpair");
		rd[i] = (struct burst_reader){ .fd = sv[i][0], .res = -1 };
	}
	for (int i = 0; i < BURST; i++)
		CHECK(weft_spawn(&t[i], burst_reader_fn, &rd[i]) == 0, "spawn reader %d", i);
	for (int i = 0; i < BURST; i++)
		CHECK(write(sv[i][1], "x", 1) == 1, "write %d: %s", i, strerror(errno));
	for (int i = 0; i < BURST; i++) {
		CHECK(weft_join(t[i], NULL) == 0, "join %d", i);
		CHECK(rd[i].res == 1 && rd[i].c == 'x', "reader %d: %zd", i, rd[i].res);
	}
	CHECK(weft_rt_stats(weft_rt_current(), &bu->after, NULL, 0) == 0, "stats");
	for (int i = 0; i < BURST; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	return NULL;
}

Test(io, tcp_connections_tiny_rings)
{
	need_fds(1200);
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1, .ring_entries = 8, .flags = WEFT_RT_NO_RESCUE_SIGNAL };
	int err = weft_rt_create(&rt, &cfg);
	if (err == -EPERM || err == -ENOSYS)
		cr_skip_test("no io_uring here");
	cr_assert_eq(err, 0, "weft_rt_create: %s", weft_strerror(err));
	struct burst bu;
	void *ret = (void *)1;
	cr_assert_eq(weft_rt_run(rt, burst_main, &bu, &ret), 0);
	cr_assert_null(ret, "burst on one worker failed (see stderr)");
	cr_assert_eq(weft_rt_destroy(rt), 0);
	uint64_t full = bu.after.total.io_sq_full - bu.before.total.io_sq_full;
	uint64_t ovf = bu.after.total.io_cq_overflow - bu.before.total.io_cq_overflow;
	cr_assert_geq(full, 1, "%d recvs prepared in a row never found the 8-entry SQ full", BURST);
	cr_assert_geq(ovf, 1, "%d completions for one reap never overflowed the 16-entry CQ", BURST);

	/* The same tiny rings under a load of connections on two workers. */
	struct many m = { .conns = 500 };
	cr_assert_null(run_in(2, 8, many_main, &m), "2 workers, 8-entry rings");
}

static void *half_close_main(void *arg)
{
	uint16_t port;
	int lfd = tcp_listener(&port, 16);
	CHECK(lfd >= 0, "listen");
	int c = tcp_connect(port);
	CHECK(c >= 0, "connect: %s", weft_strerror(c));
	struct sockaddr_in peer;
	socklen_t pl = sizeof peer;
	int s = weft_accept(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
	CHECK(s >= 0, "accept: %s", weft_strerror(s));
	CHECK(pl == sizeof peer && peer.sin_family == AF_INET, "peer address filled");
	/* half-close: the server reads EOF and can still answer */
	CHECK(weft_send_all(c, "ping", 4, MSG_NOSIGNAL) == 4, "send");
	CHECK(weft_shutdown(c, SHUT_WR) == 0, "shutdown");
	char buf[16];
	CHECK(weft_recv(s, buf, 4, MSG_WAITALL) == 4 && !memcmp(buf, "ping", 4), "recv ping");
	CHECK(weft_recv(s, buf, sizeof buf, 0) == 0, "EOF after half-close");
	CHECK(weft_send_all(s, "pong", 4, MSG_NOSIGNAL) == 4, "send after peer's half-close");
	CHECK(weft_recv(c, buf, 4, MSG_WAITALL) == 4 && !memcmp(buf, "pong", 4), "recv pong");
	CHECK(weft_close(c) == 0 && weft_close(s) == 0, "close");
	/* reset, on a fresh connection: linger 0 then close sends RST */
	c = tcp_connect(port);
	CHECK(c >= 0, "connect 2: %s", weft_strerror(c));
	s = weft_accept(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(s >= 0, "accept 2: %s", weft_strerror(s));
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	CHECK(weft_close(c) == 0, "close");
	ssize_t r = weft_recv(s, buf, sizeof buf, 0);
	CHECK(r == -ECONNRESET, "recv after peer reset: %zd", r);
	r = weft_send(s, "x", 1, MSG_NOSIGNAL);
	CHECK(r == -EPIPE || r == -ECONNRESET, "send after reset: %zd", r);
	weft_close(s);
	close(lfd);
	return NULL;
}

Test(io, tcp_half_close_and_reset)
{
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, half_close_main, NULL), "with %u workers", n);
}

/* ----------------------------------------------------- deadlines, cancel --- */

static void *timeouts_main(void *arg)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	char buf[8];
	uint64_t t0 = weft_now();
	ssize_t r = weft_recv_timeout(sv[0], buf, sizeof buf, 0, 50 * MS);
	uint64_t dt = weft_now() - t0;
	CHECK(r == -ETIMEDOUT, "recv_timeout: %zd", r);
	CHECK(dt >= 45 * MS && dt < 10 * SEC, "recv_timeout took %llu ns", (unsigned long long)dt);
	t0 = weft_now();
	r = weft_poll_timeout(sv[0], POLLIN, 30 * MS);
	dt = weft_now() - t0;
	CHECK(r == -ETIMEDOUT, "poll_timeout: %zd", r);
	CHECK(dt >= 25 * MS && dt < 10 * SEC, "poll_timeout took %llu ns", (unsigned long long)dt);
	/* data present: the timeout does not fire, the result comes through */
	CHECK(write(sv[1], "abc", 3) == 3, "write");
	CHECK(weft_poll(sv[0], POLLIN) & POLLIN, "poll sees POLLIN");
	t0 = weft_now();
	r = weft_recv_timeout(sv[0], buf, sizeof buf, 0, 10 * SEC);
	CHECK(r == 3 && !memcmp(buf, "abc", 3), "recv_timeout with data: %zd", r);
	CHECK(weft_now() - t0 < 5 * SEC, "did not wait for the timeout");
	/* a region deadline applies to plain calls, and the nearer one wins */
	uint64_t old = weft_deadline_set(weft_now() + 40 * MS);
	t0 = weft_now();
	r = weft_recv(sv[0], buf, sizeof buf, 0);
	dt = weft_now() - t0;
	CHECK(r == -ETIMEDOUT, "recv under a region deadline: %zd", r);
	CHECK(dt >= 35 * MS && dt < 10 * SEC, "region deadline took %llu ns", (unsigned long long)dt);
	r = weft_recv_timeout(sv[0], buf, sizeof buf, 0, 10 * SEC);
	CHECK(r == -ETIMEDOUT, "past the region deadline at once: %zd", r);
	weft_deadline_set(old);
	uint16_t port;
	int lfd = tcp_listener(&port, 4);
	r = weft_accept_timeout(lfd, NULL, NULL, 0, 20 * MS);
	CHECK(r == -ETIMEDOUT, "accept_timeout: %zd", r);
	close(lfd);
	close(sv[0]);
	close(sv[1]);
	return NULL;
}

Test(io, timeouts_fire_within_bounds)
{
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, timeouts_main, NULL), "with %u workers", n);
}

struct victim { int fd; unsigned char *buf; _Atomic int started; ssize_t res; _Atomic int done; };

static void *victim_fn(void *p)
{
	struct victim *v = p;
	atomic_store(&v->started, 1);
	v->res = weft_recv(v->fd, v->buf, 64, 0);
	atomic_store_explicit(&v->done, 1, memory_order_release);  /* publishes res */
	return NULL;
}

struct cancel_arg { int rounds; bool from_thread; };

static void *cancel_main(void *arg)
{
	struct cancel_arg *ca = arg;
	for (int round = 0; round < ca->rounds; round++) {
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
		unsigned char *buf = malloc(64);
		memset(buf, 0xAA, 64);
		struct victim v = { .fd = sv[0], .buf = buf };
		weft_task *t;
		CHECK(weft_spawn(&t, victim_fn, &v) == 0, "spawn");
		/* let it park in recv for varying times (0 = maybe before submit) */
		for (int i = 0; i < 100 && !atomic_load(&v.started); i++)
			weft_yield();
		if (round % 3)
			weft_sleep((uint64_t)(round % 5) * MS);
		CHECK(weft_cancel(t) == 0, "cancel");
		CHECK(weft_join(t, NULL) == 0, "join");
		CHECK(v.res == -ECANCELED, "round %d: cancelled recv returned %zd", round, v.res);
		/* The op is gone from the kernel: data sent now stays in the socket
		 * and the buffer is not written. */
		CHECK(write(sv[1], "DATA", 4) == 4, "write");
		weft_sleep(2 * MS);
		for (int i = 0; i < 64; i++)
			CHECK(buf[i] == 0xAA, "round %d: buffer written after cancel (byte %d)", round, i);
		char got[8];
		CHECK(recv(sv[0], got, sizeof got, MSG_DONTWAIT) == 4, "data still in the socket");
		free(buf);
		close(sv[0]);
		close(sv[1]);
	}
	return NULL;
}

Test(io, cancelled_recv_leaves_buffer_alone)
{
	struct cancel_arg ca = { .rounds = 60 };
	FOR_EACH_WORKERS(n)
		cr_assert_null(run_in(n, 0, cancel_main, &ca), "with %u workers", n);
}

/* Cancel from a plain thread while the op is in flight, with the timeout
 * variant too (both CQEs must be drained). */

static void *victim_tmo_fn(void *p)
{
	struct victim *v = p;
	atomic_store(&v->started, 1);
	v->res = weft_recv_timeout(v->fd, v->buf, 64, 0, 30 * SEC);
	atomic_store_explicit(&v->done, 1, memory_order_release);  /* publishes res */
	return NULL;
}

Test(io, cancel_from_plain_thread)
{
	for (int round = 0; round < 20; round++) {
		weft_rt *rt = make_rt(2, 0);
		int sv[2];
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		unsigned char buf[64];
		memset(buf, 0xAA, sizeof buf);
		struct victim v = { .fd = sv[0], .buf = buf };
		weft_task *t;
		cr_assert_eq(weft_rt_spawn(rt, &t, round % 2 ? victim_fn : victim_tmo_fn, &v), 0);
		for (int i = 0; i < 100000 && !atomic_load(&v.started); i++)
			usleep(10);
		usleep(1000);
		cr_assert_eq(weft_cancel(t), 0);
		/* joining needs a coroutine: destroy reaps it; wait for its result */
		for (int i = 0; i < 100000 && !atomic_load_explicit(&v.done, memory_order_acquire); i++)
			usleep(100);
		cr_assert(atomic_load_explicit(&v.done, memory_order_acquire), "round %d: not done in 10 s", round);
		cr_assert_eq(v.res, -ECANCELED, "round %d: %zd", round, v.res);
		cr_assert_eq(write(sv[1], "DATA", 4), 4);
		usleep(2000);
		for (unsigned i = 0; i < sizeof buf; i++)
			cr_assert_eq(buf[i], 0xAA, "buffer written after cancel");
		cr_assert_eq(weft_rt_destroy(rt), 0);
		close(sv[0]);
		close(sv[1]);
	}
}

/* --------------------------------------------------------------- edges --- */

Test(io, outside_coroutine_is_eperm)
{
	char b[4];
	cr_assert_eq(weft_read(0, b, 4, -1), -EPERM);
	cr_assert_eq(weft_send(0, b, 4, 0), -EPERM);
	cr_assert_eq(weft_close(12345), -EPERM);
	cr_assert_eq(weft_sendfile(1, 0, NULL, 4), -EPERM);
}

static void *cancelled_first_main(void *arg)
{
	/* A coroutine already cancelled gets -ECANCELED without submitting. */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	weft_cancel(weft_self());
	char b[4];
	ssize_t r = weft_recv(sv[0], b, sizeof b, 0);
	CHECK(r == -ECANCELED, "recv when cancelled: %zd", r);
	/* close is not cancellable */
	CHECK(weft_close(sv[0]) == 0 && weft_close(sv[1]) == 0, "close while cancelled");
	return NULL;
}

Test(io, cancelled_coroutine_fails_fast_but_closes)
{
	cr_assert_null(run_in(1, 0, cancelled_first_main, NULL));
}

/* ------------------------------------------------------------- -EMFILE --- */

/*
 * A server whose process runs out of fds: accept must fail cleanly with
 * -EMFILE (the pending connections stay in the backlog), and the server keeps
 * serving once fds free up. Runs in a forked child, since it lowers
 * RLIMIT_NOFILE to the fds already open; the child reports through its exit
 * status and a 60 s alarm is its watchdog. Nothing depends on timing: every
 * wait is for an event that must come (bounded only against a hang).
 */
#define EMFILE_CLIENTS 4

struct emfile {
	int lfd, want, err;
	/* Written by the server, polled by the main coroutine, possibly on
	 * another worker: plain seq_cst atomics (a test; no speed to win). err
	 * is read only after the join, which orders it. */
	_Atomic int emfile_seen, accepted;
};

/* Accepts `want` connections; -EMFILE means "retry once fds free up". */
static void *emfile_server(void *p)
{
	struct emfile *e = p;
	for (int tries = 0; atomic_load(&e->accepted) < e->want && tries < 50000; tries++) {
		int c = weft_accept(e->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c == -EMFILE) {
			atomic_fetch_add(&e->emfile_seen, 1);
			weft_sleep(1 * MS);
			continue;
		}
		if (c < 0) {
			e->err = c;
			return NULL;
		}
		atomic_fetch_add(&e->accepted, 1);
		if (weft_spawn(NULL, echo_conn, (void *)(intptr_t)c)) {
			e->err = -ENOMEM;
			close(c);
			return NULL;
		}
	}
	return NULL;
}

/* One round trip on fd, waiting at most 10 s for the echo. */
static int echo_once(int fd, int id)
{
	char msg[48], back[48];
	snprintf(msg, sizeof msg, "emfile client %d ..............", id & 0xffff);
	if (weft_send_all(fd, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg)
		return -EIO;
	size_t got = 0;
	while (got < sizeof back) {
		ssize_t r = weft_recv_timeout(fd, back + got, sizeof back - got, 0, 10 * SEC);
		if (r <= 0)
			return r ? (int)r : -ECONNRESET;
		got += (size_t)r;
	}
	return memcmp(msg, back, sizeof msg) ? -EBADMSG : 0;
}

static void *emfile_main(void *arg)
{
	uint16_t port;
	int lfd = tcp_listener(&port, 64);
	CHECK(lfd >= 0, "listen: %s", weft_strerror(lfd));
	/* Clients connect now, while fds are plentiful: their connections wait
	 * in the backlog until the server can accept them. Spares are fds we
	 * close later to give the server room. */
	int cl[EMFILE_CLIENTS], spare[EMFILE_CLIENTS];
	for (int i = 0; i < EMFILE_CLIENTS; i++) {
		cl[i] = tcp_connect(port);
		CHECK(cl[i] >= 0, "connect %d: %s", i, weft_strerror(cl[i]));
		spare[i] = dup(lfd);
		CHECK(spare[i] >= 0, "dup: %s", strerror(errno));
	}
	/* Lower the limit to just above the highest fd in use (the runtime's
	 * rings included), then fill the holes below it: the fd table is full. */
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	int top = 0;
	DIR *dir = opendir("/proc/self/fd");
	if (dir) {
		for (struct dirent *de; (de = readdir(dir));)   /* ends at the list's end */
			if (de->d_name[0] != '.' && atoi(de->d_name) > top && atoi(de->d_name) != dirfd(dir))
				top = atoi(de->d_name);
		closedir(dir);
	} else {
		int scan = rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
		for (int fd = 0; fd < scan; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				top = fd;
	}
	int *fill = calloc((size_t)top + 1, sizeof *fill), nfill = 0;
	CHECK(fill, "calloc");
	rl.rlim_cur = (rlim_t)top + 1;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit(%d): %s", top + 1, strerror(errno));
	while (nfill <= top) {
		int d = dup(lfd);
		if (d < 0) {
			CHECK(errno == EMFILE, "dup to fill the table: %s", strerror(errno));
			break;
		}
		fill[nfill++] = d;
	}

	int r = weft_accept(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(r == -EMFILE, "accept with a full fd table: %s (want -EMFILE)", weft_strerror(r));

	/* The server hits -EMFILE and keeps retrying ... */
	struct emfile e = { .lfd = lfd, .want = EMFILE_CLIENTS + 1 };
	weft_task *srv;
	CHECK(weft_spawn(&srv, emfile_server, &e) == 0, "spawn server");
	for (int i = 0; i < 10000 && atomic_load(&e.emfile_seen) == 0; i++)
		weft_sleep(1 * MS);
	CHECK(atomic_load(&e.emfile_seen) > 0, "the server never saw -EMFILE");
	CHECK(atomic_load(&e.accepted) == 0, "accepted with a full fd table");

	/* ... and serves every waiting client once fds are free. */
	for (int i = 0; i < EMFILE_CLIENTS; i++)
		close(spare[i]);
	for (int i = 0; i < EMFILE_CLIENTS; i++) {
		r = echo_once(cl[i], i);
		CHECK(r == 0, "echo on client %d after fds freed up: %s", i, weft_strerror(r));
	}
	/* Full again (the accepted fds took the spares' places): a client that
	 * leaves makes room for a new one, which is served too. */
	weft_close(cl[0]);
	int late = -EMFILE;
	for (int i = 0; i < 10000 && late == -EMFILE; i++) {
		late = tcp_connect(port);
		if (late == -EMFILE)
			weft_sleep(1 * MS);
	}
	CHECK(late >= 0, "connect after a client left: %s", weft_strerror(late));
	r = echo_once(late, 99);
	CHECK(r == 0, "echo on the late client: %s", weft_strerror(r));
	CHECK(weft_join(srv, NULL) == 0, "join server");
	CHECK(e.err == 0, "server: %s", weft_strerror(e.err));
	CHECK(atomic_load(&e.accepted) == EMFILE_CLIENTS + 1, "accepted %d",
	      atomic_load(&e.accepted));
	weft_close(late);
	for (int i = 1; i < EMFILE_CLIENTS; i++)
		weft_close(cl[i]);
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	free(fill);
	close(lfd);
	return NULL;
}

Test(io, accept_emfile_then_keeps_serving)
{
	for (unsigned workers = 1; workers <= 2; workers++) {
		fflush(NULL);
		pid_t pid = fork();
		cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
		if (pid == 0) {
			alarm(60);   /* watchdog: a hang ends as SIGALRM */
			weft_rt *rt;
			struct weft_config cfg = { .workers = workers };
			int err = weft_rt_create(&rt, &cfg);
			if (err == -EPERM || err == -ENOSYS)
				_exit(77);
			if (err) {
				fprintf(stderr, "weft_rt_create: %s\n", weft_strerror(err));
				_exit(2);
			}
			void *ret = (void *)1;
			err = weft_rt_run(rt, emfile_main, NULL, &ret);
			weft_rt_destroy(rt);
			_exit(err || ret ? 1 : 0);
		}
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid, "waitpid: %s", strerror(errno));
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
			cr_skip_test("no io_uring here");
		cr_assert(WIFEXITED(st), "child (%u workers) killed by signal %d%s", workers,
			  WTERMSIG(st), WTERMSIG(st) == SIGALRM ? " (60 s watchdog)" : "");
		cr_assert_eq(WEXITSTATUS(st), 0, "child (%u workers) failed (see its stderr)", workers);
	}
}

/* ------------------------------------------------------ hostage rescue --- */

/*
 * A coroutine that spins without switching holds its worker's ring: only that
 * thread submits and (DEFER_TASKRUN) posts completions. The monitor rescues
 * them (WEFT_RT_NO_RESCUE_SIGNAL in weft.h). The reader parks with its SQE
 * prepared but not yet submitted (no scheduling round ran since), then the
 * hog takes the worker; the byte is already in the pipe.
 */
struct hostage {
	weft_rt *rt;
	int fds[2];
	_Atomic int got;              /* the reader's result, once it ran      */
	_Atomic int stop;             /* the hog may return                    */
	uint64_t rescued_seen;        /* io_rescued when the hog stopped       */
	int got_while_hog;            /* 2 workers: the reader ran meanwhile   */
	uint64_t spin_ns;             /* the hog's bound                       */
	uint64_t after_starved_ns;    /* if set: stop this long after the
	                                 monitor reported the hog as starving
	                                 its worker (it watched it, then)       */
	uint64_t starved_seen;        /* weft_worker_stats.starved at the end  */
};

static void *hostage_reader(void *p)
{
	struct hostage *h = p;
	char c = 0;
	ssize_t n = weft_read(h->fds[0], &c, 1, -1);
	atomic_store(&h->got, n == 1 && c == 'x' ? 1 : -1);
	return NULL;
}

/* Spins (no switch) until the condition or spin_ns passes. */
static void *hostage_hog(void *p)
{
	struct hostage *h = p;
	uint64_t end = weft_now() + h->spin_ns;
	uint64_t after_starved = h->after_starved_ns;   /* 0 once applied */
	struct weft_stats st = { 0 };
	while (weft_now() < end) {
		if (weft_rt_stats(h->rt, &st, NULL, 0) == 0 && st.total.io_rescued && atomic_load(&h->stop))
			break;
		if (atomic_load(&h->got))
			break;
		if (after_starved && st.total.starved) {
			uint64_t stop_at = weft_now() + after_starved;
			end = stop_at < end ? stop_at : end;
			after_starved = 0;
		}
	}
	weft_rt_stats(h->rt, &st, NULL, 0);
	h->rescued_seen = st.total.io_rescued;
	h->starved_seen = st.total.starved;
	h->got_while_hog = atomic_load(&h->got);
	return NULL;
}

static void *hostage_main(void *p)
{
	struct hostage *h = p;
	weft_task *r, *g;
	/* child-first: the reader runs at once, prepares its SQE and parks */
	CHECK(weft_spawn(&r, hostage_reader, h) == 0, "spawn reader");
	CHECK(write(h->fds[1], "x", 1) == 1, "write: %s", strerror(errno));
	CHECK(weft_spawn(&g, hostage_hog, h) == 0, "spawn hog");
	CHECK(weft_join(g, NULL) == 0 && weft_join(r, NULL) == 0, "join");
	return NULL;
}

static void quiet_log(const char *line, void *arg)
{
	(void)line;
	(void)arg;
}

static void hostage_run(unsigned workers, unsigned flags, struct hostage *h)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers, .flags = flags };
	int err = weft_rt_create(&rt, &cfg);
	if (err == -EPERM || err == -ENOSYS)
		cr_skip_test("no io_uring here");
	cr_assert_eq(err, 0, "weft_rt_create: %s", weft_strerror(err));
	h->rt = rt;
	/* the monitor's default threshold, quietly: the hog is meant to starve */
	weft_rt_set_starvation(rt, 10 * MS, quiet_log, NULL);
	cr_assert_eq(pipe(h->fds), 0);
	void *ret = (void *)1;
	cr_assert_eq(weft_rt_run(rt, hostage_main, h, &ret), 0);
	cr_assert_null(ret, "hostage_main failed (see stderr)");
	cr_assert_eq(weft_rt_destroy(rt), 0);
	close(h->fds[0]);
	close(h->fds[1]);
	cr_assert_eq(atomic_load(&h->got), 1, "the reader did not read its byte");
}

/* One worker: nobody but the monitor can get the completion out while the
 * hog runs; the hog stops as soon as the stats show the rescue (20 s bound). */
Test(io, hog_worker_completions_are_rescued, .timeout = 60)
{
	struct hostage h = { .spin_ns = 20 * SEC };
	atomic_store(&h.stop, 1);
	hostage_run(1, 0, &h);
	cr_assert_geq(h.rescued_seen, 1, "no completion was rescued in 20 s of hogging");
	cr_assert_eq(h.got_while_hog, 0, "one worker, held by the hog: the reader cannot have run");
}

/* Two workers: the reader, whose SQE sits on the held worker's ring, runs on
 * the other worker while the hog still spins (the hog stops when it sees it). */
Test(io, hog_worker_reader_runs_elsewhere_meanwhile, .timeout = 60)
{
	struct hostage h = { .spin_ns = 20 * SEC };
	hostage_run(2, 0, &h);
	cr_assert_eq(h.got_while_hog, 1, "the reader did not run while the hog held its worker (20 s)");
}

/* WEFT_RT_NO_RESCUE_SIGNAL: no SIGURG, so the SQE the reader prepared stays
 * unsubmitted while the hog spins and nothing can be rescued; the read
 * completes after. A rescue here would mean a signal was sent. The hog spins
 * until the monitor has reported it (so the monitor did watch the held
 * worker: without the flag it would have rescued by then, see the test
 * above) and 300 ms more, 20 s at most; a run where the monitor never got to
 * look proves nothing and fails rather than passing. */
Test(io, hog_no_rescue_signal_flag_sends_none, .timeout = 60)
{
	struct hostage h = { .spin_ns = 20 * SEC, .after_starved_ns = 300 * MS };
	hostage_run(1, WEFT_RT_NO_RESCUE_SIGNAL, &h);
	cr_assert_geq(h.starved_seen, 1, "the monitor never reported the hog in 20 s: nothing tested");
	cr_assert_eq(h.rescued_seen, 0, "a completion was rescued without the signal");
}

/* SIGURGs weft did not send go to the handler it replaced (weft.h,
 * WEFT_RT_NO_RESCUE_SIGNAL). Ours is installed before any runtime exists; a
 * rescue makes weft install its own on top (on first use, see the test
 * above); then SIGURGs we send ourselves must still reach ours: to this
 * thread, outside any runtime, and to a worker's thread, from a coroutine
 * (weft's handler sees a worker there, with no rescue asked of it). A
 * signal a thread sends itself is handled before pthread_kill returns. */
static _Atomic unsigned own_urgs;

static void own_urg(int sig)
{
	(void)sig;
	atomic_fetch_add(&own_urgs, 1);
}

static void *urg_on_worker(void *arg)
{
	(void)arg;
	unsigned before = atomic_load(&own_urgs);
	CHECK(pthread_kill(pthread_self(), SIGURG) == 0, "pthread_kill");
	CHECK(atomic_load(&own_urgs) > before,
	      "a SIGURG sent to a worker's thread did not reach the handler weft replaced");
	return NULL;
}

Test(io, foreign_sigurg_reaches_the_handler_weft_replaced, .timeout = 60)
{
	struct sigaction sa, cur;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = own_urg;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGURG, &sa, NULL), 0);

	struct hostage h = { .spin_ns = 20 * SEC };
	atomic_store(&h.stop, 1);
	hostage_run(1, 0, &h);
	cr_assert_geq(h.rescued_seen, 1, "no completion was rescued in 20 s: nothing tested");
	cr_assert_eq(sigaction(SIGURG, NULL, &cur), 0);
	cr_assert(cur.sa_handler != own_urg && cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN,
	          "weft did not install its SIGURG handler for the rescue");

	unsigned before = atomic_load(&own_urgs);
	cr_assert_eq(pthread_kill(pthread_self(), SIGURG), 0);
	cr_assert_gt(atomic_load(&own_urgs), before,
	             "a SIGURG sent to a plain thread did not reach the handler weft replaced");
	cr_assert_null(run_in(1, 0, urg_on_worker, NULL), "see stderr");
}
