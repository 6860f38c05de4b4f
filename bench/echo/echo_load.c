/*
 * echo-load: the TCP echo load generator of the echo benchmark
 * (bench/weft_bench_echo.c).
 *
 *   echo-load --port P [--host 127.0.0.1] [--conns 50] [--size 64]
 *             [--seconds 5] [--warmup 1] [--depth 1] [--workers 1]
 *             [--label NAME] [--timeout-ms 5000]
 *
 * Opens --conns connections before the clock starts, then each connection
 * sends --depth messages of --size bytes back to back, reads all their echoes,
 * and sends again, until --warmup + --seconds have passed. A request's latency
 * runs from the moment its batch was sent to the moment the last byte of its
 * own echo was read. Requests sent during the warm-up are not counted; those
 * sent during the measured seconds are (requests/s = counted / seconds).
 * Every echo is compared with what was sent (each message carries its
 * connection and sequence number): a mismatch is counted and fails the run.
 *
 * Departure from the benchmark's first definition, a single-threaded epoll loop:
 * this one runs on weft itself with one worker (one thread, io_uring), as
 * issue #4 asks, so the generator exercises the library too. One worker keeps
 * it single-threaded like the epoll original: the load uses one CPU (the
 * caller pins it, see weft_bench_echo.c), and its own overhead per request is
 * an io_uring submission instead of an epoll_wait + read/write pair.
 *
 * Output: one machine-readable line on stdout,
 *   name=echo impl=LABEL conns=C size=S depth=D seconds=T requests=N rps=R
 *   p50_us=.. p99_us=.. p999_us=.. max_us=.. mismatches=M errors=E
 *   cdf_us=1:..,5:..,...,100:..   (percentile:latency pairs, for a CDF plot)
 * followed by one line for people (starting with "echo-load:"). While it runs
 * it also prints "# window start" and "# window end" on stdout (flushed,
 * echo_proto.h) when the measured seconds begin and end, so that a parent
 * reading the pipe can sample CPU times over exactly that window (weft-bench
 * echo does, for the server's and the load's CPU time per request). Exit
 * status 0 when every connection ran to the end with no mismatch, 1
 * otherwise, 2 on a usage error. Every loop is bounded in count and in time:
 * the per-connection batch count is capped (MAX_BATCHES) and every receive
 * has a timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "echo_proto.h"

#include <weft.h>

#define NS_PER_US 1000ull
#define NS_PER_S  1000000000ull
#define MAX_CONNS 100000
#define MAX_SIZE  (1u << 20)
#define MAX_DEPTH 1024
/* Count bound of a connection's send/receive loop, on top of the time bound:
 * 2^32 batches is far beyond any run (it would take days at 10 µs a batch). */
#define MAX_BATCHES (1ull << 32)

/* ------------------------------------------------------------ histogram --- */

/*
 * Log-linear histogram of nanoseconds: values below 2^SUB are exact; above,
 * each power of two is split into 2^SUB buckets, so a bucket is at most
 * 1/32 (3%) of its value wide. Up to 2^42 ns (73 minutes); larger values go
 * in the last bucket.
 */
#define SUB     5
#define NSUB    (1u << SUB)
#define MAXEXP  42
#define NBUCKET ((MAXEXP - SUB + 1) * NSUB)

struct hist {
	/* Counts only: written by the connection coroutines with relaxed
	 * fetch_add (any worker), read after every coroutine is joined, whose
	 * join orders all the increments before the read. */
	_Atomic uint64_t b[NBUCKET];
};

static unsigned hist_index(uint64_t v)
{
	if (v < NSUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* e >= SUB */
	if (e >= MAXEXP)
		return NBUCKET - 1;
	unsigned shift = e - SUB;
	return (shift + 1) * NSUB + (unsigned)((v >> shift) - NSUB);
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
	if (i < NSUB)
		return i;
	unsigned shift = i / NSUB - 1;
	uint64_t lo = (uint64_t)(i % NSUB + NSUB) << shift;
	return (double)lo + ((double)(1ull << shift) - 1) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	atomic_fetch_add_explicit(&h->b[hist_index(v)], 1, memory_order_relaxed);
}

/* The value at quantile q (0..1) of n counted values, in µs. */
static double hist_quantile(const struct hist *h, uint64_t n, double q)
{
	if (!n)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)n);
	if (rank >= n)
		rank = n - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < NBUCKET; i++) {
		seen += atomic_load_explicit(&h->b[i], memory_order_relaxed);
		if (seen > rank)
			return hist_value(i) / NS_PER_US;
	}
	return hist_value(NBUCKET - 1) / NS_PER_US;
}

/* ------------------------------------------------------------ the load --- */

struct opts {
	const char *host, *label;
	int port;
	unsigned conns, size, depth, workers;
	double seconds, warmup;
	uint64_t timeout_ns;
};

struct conn {
	int fd;
	unsigned id;
	const struct opts *o;
	uint64_t warm_end, end;           /* absolute, CLOCK_MONOTONIC ns */
	struct hist *h;
	/* results, read by main after the join */
	uint64_t requests, mismatches;
	int err;                          /* 0 or the -errno that stopped it */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Message j of a connection: a 16-byte header (connection id, sequence) then
 * bytes derived from both, so a reply from another request or connection, or
 * a reordered one, differs. */
static void fill(unsigned char *m, unsigned size, unsigned id, uint64_t seq)
{
	for (unsigned k = 0; k < size; k++)
		m[k] = (unsigned char)(seq * 131u + id * 7u + k);
	if (size >= 12) {
		memcpy(m, &id, sizeof id);
		memcpy(m + 4, &seq, sizeof seq);
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	const struct opts *o = c->o;
	size_t batch = (size_t)o->size * o->depth;
	unsigned char *out = malloc(batch), *in = malloc(batch);
	if (!out || !in) {
		c->err = -ENOMEM;
		goto done;
	}
	uint64_t seq = 0;
	for (uint64_t b = 0; b < MAX_BATCHES; b++) {
		uint64_t t0 = now_ns();
		if (t0 >= c->end)
			break;
		for (unsigned j = 0; j < o->depth; j++)
			fill(out + (size_t)j * o->size, o->size, c->id, seq + j);
		ssize_t r = weft_send_all(c->fd, out, batch, MSG_NOSIGNAL);
		if (r < 0) {
			c->err = (int)r;
			break;
		}
		/* Read the batch back; message j is complete once byte
		 * (j+1)*size-1 has arrived. Bounded by bytes: each successful
		 * recv brings at least one. */
		size_t got = 0;
		unsigned done_msgs = 0;
		while (got < batch) {
			r = weft_recv_timeout(c->fd, in + got, batch - got, 0, o->timeout_ns);
			if (r <= 0) {
				c->err = r ? (int)r : -ECONNRESET;
				goto done;
			}
			got += (size_t)r;
			uint64_t t1 = now_ns();
			for (; done_msgs < o->depth && got >= (size_t)(done_msgs + 1) * o->size; done_msgs++) {
				size_t off = (size_t)done_msgs * o->size;
				if (memcmp(in + off, out + off, o->size))
					c->mismatches++;
				if (t0 >= c->warm_end) {
					c->requests++;
					hist_add(c->h, t1 - t0);
				}
			}
		}
		seq += o->depth;
	}
done:
	free(out);
	free(in);
	return NULL;
}

static int open_conn(const struct opts *o, const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int r = weft_connect_timeout(fd, (const struct sockaddr *)sa, sizeof *sa, o->timeout_ns);
	if (r < 0) {
		weft_close(fd);
		return r;
	}
	return fd;
}

struct run {
	const struct opts *o;
	struct conn *c;
	struct hist *h;
	int err;                 /* connect failure: exit 1 with its message */
	unsigned opened;
	uint64_t t_start, t_end;
};

/* The measured window's marks on stdout (see the header): sleeps to each
 * edge, prints, flushes. Bounded: two sleeps, ended early only by the
 * runtime's destruction (-ECANCELED), when it prints nothing more. */
static void *marks_main(void *arg)
{
	const uint64_t *edge = arg;   /* [0] warm-up's end, [1] the run's end */
	for (int i = 0; i < 2; i++) {
		uint64_t t = now_ns();
		if (t < edge[i] && weft_sleep(edge[i] - t) == -ECANCELED)
			return NULL;
		fputs(echo_window_marks[i], stdout);
		fflush(stdout);
	}
	return NULL;
}

static void *load_main(void *arg)
{
	struct run *R = arg;
	const struct opts *o = R->o;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	inet_pton(AF_INET, o->host, &sa.sin_addr);   /* checked in main */

	/* Every connection is opened before the clock starts. */
	for (unsigned i = 0; i < o->conns; i++) {
		int fd = open_conn(o, &sa);
		if (fd < 0) {
			R->err = fd;
			return NULL;
		}
		R->c[i].fd = fd;
		R->opened++;
	}
	weft_task **t = calloc(o->conns, sizeof *t);
	if (!t) {
		R->err = -ENOMEM;
		return NULL;
	}
	R->t_start = now_ns();
	uint64_t warm_end = R->t_start + (uint64_t)(o->warmup * NS_PER_S);
	uint64_t end = warm_end + (uint64_t)(o->seconds * NS_PER_S);
	uint64_t edges[2] = { warm_end, end };
	weft_task *marks = NULL;
	if (weft_spawn(&marks, marks_main, edges) < 0)
		marks = NULL;   /* no marks: the parent then reports no CPU times */
	unsigned spawned = 0;
	for (unsigned i = 0; i < o->conns; i++) {
		struct conn *c = &R->c[i];
		c->id = i;
		c->o = o;
		c->warm_end = warm_end;
		c->end = end;
		c->h = R->h;
		int r = weft_spawn(&t[i], conn_main, c);
		if (r < 0) {
			R->err = r;
			break;
		}
		spawned++;
	}
	for (unsigned i = 0; i < spawned; i++)
		weft_join(t[i], NULL);
	R->t_end = now_ns();
	if (marks)
		weft_join(marks, NULL);
	free(t);
	return NULL;
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "echo-load: %s\n", why);
	fprintf(stderr,
		"usage: echo-load --port P [--host 127.0.0.1] [--conns 50] [--size 64]\n"
		"                 [--seconds 5] [--warmup 1] [--depth 1] [--workers 1]\n"
		"                 [--label NAME] [--timeout-ms 5000]\n");
	exit(2);
}

static unsigned long num(const char *name, const char *s, unsigned long lo, unsigned long hi)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "echo-load: %s must be an integer in %lu..%lu, not '%s'\n",
			name, lo, hi, s);
		exit(2);
	}
	return v;
}

static double secs(const char *name, const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || !(v >= lo && v <= hi)) {
		fprintf(stderr, "echo-load: %s must be a number of seconds in %g..%g, not '%s'\n",
			name, lo, hi, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct opts o = { .host = "127.0.0.1", .label = "unknown", .port = -1, .conns = 50,
	                  .size = 64, .depth = 1, .workers = 1, .seconds = 5, .warmup = 1,
	                  .timeout_ns = 5 * NS_PER_S };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			usage(NULL);
		if (!v)
			usage("missing value after the last option");
		i++;
		if (!strcmp(a, "--port"))
			o.port = (int)num(a, v, 1, 65535);
		else if (!strcmp(a, "--host"))
			o.host = v;
		else if (!strcmp(a, "--conns"))
			o.conns = (unsigned)num(a, v, 1, MAX_CONNS);
		else if (!strcmp(a, "--size"))
			o.size = (unsigned)num(a, v, 1, MAX_SIZE);
		else if (!strcmp(a, "--depth"))
			o.depth = (unsigned)num(a, v, 1, MAX_DEPTH);
		else if (!strcmp(a, "--workers"))
			o.workers = (unsigned)num(a, v, 1, 4096);
		else if (!strcmp(a, "--seconds"))
			o.seconds = secs(a, v, 0.01, 3600);
		else if (!strcmp(a, "--warmup"))
			o.warmup = secs(a, v, 0, 3600);
		else if (!strcmp(a, "--label"))
			o.label = v;
		else if (!strcmp(a, "--timeout-ms"))
			o.timeout_ns = num(a, v, 1, 3600000) * 1000000ull;
		else {
			fprintf(stderr, "echo-load: unknown option '%s'\n", a);
			usage(NULL);
		}
	}
	if (o.port < 0)
		usage("--port is required");
	struct in_addr tmp;
	if (inet_pton(AF_INET, o.host, &tmp) != 1) {
		fprintf(stderr, "echo-load: --host '%s' is not an IPv4 address\n", o.host);
		return 2;
	}
	if ((uint64_t)o.size * o.depth > 64ull << 20) {
		fprintf(stderr, "echo-load: --size x --depth must stay under 64 MiB\n");
		return 2;
	}
	/* One fd per connection plus the runtime's: raise the soft limit to the
	 * hard one when needed, and say so clearly when even that is too low. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.conns + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)o.conns + 64) {
			fprintf(stderr, "echo-load: --conns %u needs %u fds, RLIMIT_NOFILE allows %llu\n",
				o.conns, o.conns + 64, (unsigned long long)rl.rlim_cur);
			return 1;
		}
	}

	struct hist *h = calloc(1, sizeof *h);
	struct conn *c = calloc(o.conns, sizeof *c);
	if (!h || !c) {
		fprintf(stderr, "echo-load: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < o.conns; i++)
		c[i].fd = -1;
	weft_rt *rt;
	struct weft_config cfg = { .workers = o.workers };
	int err = weft_rt_create(&rt, &cfg);
	if (err) {
		fprintf(stderr, "echo-load: weft_rt_create: %s\n", weft_strerror(err));
		free(c);
		free(h);
		return 1;
	}
	struct run R = { .o = &o, .c = c, .h = h };
	err = weft_rt_run(rt, load_main, &R, NULL);
	weft_rt_destroy(rt);
	for (unsigned i = 0; i < o.conns; i++)
		if (c[i].fd >= 0)
			close(c[i].fd);
	if (err) {
		fprintf(stderr, "echo-load: weft_rt_run: %s\n", weft_strerror(err));
		free(c);
		free(h);
		return 1;
	}
	if (R.err) {
		fprintf(stderr, "echo-load: cannot %s %s:%d (connection %u of %u): %s\n",
			R.opened < o.conns ? "connect to" : "start the load on", o.host, o.port,
			R.opened + 1, o.conns, weft_strerror(R.err));
		free(c);
		free(h);
		return 1;
	}

	uint64_t n = 0, mism = 0;
	unsigned errs = 0;
	int first_err = 0;
	for (unsigned i = 0; i < o.conns; i++) {
		n += c[i].requests;
		mism += c[i].mismatches;
		if (c[i].err) {
			errs++;
			if (!first_err)
				first_err = c[i].err;
		}
	}
	double p50 = hist_quantile(h, n, 0.50), p99 = hist_quantile(h, n, 0.99);
	double p999 = hist_quantile(h, n, 0.999), pmax = hist_quantile(h, n, 1.0);
	double rps = (double)n / o.seconds;
	printf("name=echo impl=%s conns=%u size=%u depth=%u seconds=%g requests=%llu rps=%.0f "
	       "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mismatches=%llu errors=%u cdf_us=",
	       o.label, o.conns, o.size, o.depth, o.seconds, (unsigned long long)n, rps,
	       p50, p99, p999, pmax, (unsigned long long)mism, errs);
	for (size_t i = 0; i < ECHO_NCDF; i++)
		printf("%s%g:%.1f", i ? "," : "", echo_cdf_pcts[i],
		       hist_quantile(h, n, echo_cdf_pcts[i] / 100));
	printf("\n");
	printf("echo-load: %s %s:%d, %u conns x depth %u, %u-byte messages: %.0f req/s, "
	       "latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us%s%s\n",
	       o.label, o.host, o.port, o.conns, o.depth, o.size, rps, p50, p99, p999,
	       mism ? ", ECHO MISMATCHES" : "", errs ? ", CONNECTION ERRORS" : "");
	if (errs)
		fprintf(stderr, "echo-load: %u connection(s) failed, first: %s\n", errs,
			weft_strerror(first_err));
	if (mism)
		fprintf(stderr, "echo-load: %llu echo(es) differ from what was sent\n",
			(unsigned long long)mism);
	if (!n)
		fprintf(stderr, "echo-load: no request was sent and answered in the measured time\n");
	free(c);
	free(h);
	return (errs || mism || !n) ? 1 : 0;
}
