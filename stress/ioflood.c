/*
 * I/O flood on a tiny ring: --count channels (pipes and stream
 * socketpairs; default 2,000, bounded by RLIMIT_NOFILE), each with a writer
 * and a reader coroutine, all in flight at once on runtimes whose rings have
 * 1, 2, 4 or 16 SQ entries (weft_config.ring_entries; the kernel sizes the CQ
 * at twice that, so 2 to 32 CQEs). Thousands of ops wait on a ring a
 * hundred times smaller. Reaping is delayed: after most ops a coroutine burns
 * a random amount of CPU (bounded spin) before its next one, so completions
 * pile up behind busy workers and the CQ overflows into the kernel's
 * overflow list. Writers send a deterministic byte stream in random-sized
 * pieces (write, send, writev); readers read random sizes (read, recv,
 * readv). A third of the reads and writes go through the _timeout variants
 * with an hour's timeout, so linked pairs of SQEs (op + LINK_TIMEOUT) must
 * fit the tiny SQ too — except on 1-entry rings, where a timed call aborts
 * the process (stress/REPORT.md, I/O finding 1) and only untimed ones run.
 * Checked:
 *   - every byte arrives, in order, exactly once (each byte is a function of
 *     its channel and position; the reader stops at the exact total);
 *   - every op completes exactly once: no cancels and no timeout fires, so
 *     an untimed op has exactly one CQE and a timed one two (its own and its
 *     linked timeout's, cancelled), and the runtime's io_completions counter
 *     must grow by exactly that many (more: a CQE delivered twice;
 *     fewer: one lost — which would also hang a coroutine, and the watchdog
 *     reports it with a dump of the runtime);
 *   - no fd leaks (count before and after each round).
 * The PASS line reports the rings' SQ-full and CQ-overflow counters
 * (weft_rt_stats), to show the pressure was real; they are not checked,
 * since how often a CQ overflows depends on timing.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 512
#define HOUR 3600000000000ull

struct chan {
	bool pipe;
	int rfd, wfd;
	size_t total;          /* bytes the writer sends this round */
	uint64_t wrng, rrng;
	unsigned long wops, rops;  /* calls made, each side's own */
	unsigned long wtops, rtops; /* of which timed (two CQEs each)       */
	bool timed;                /* the _timeout variants may be used */
	size_t got;
};

static struct chan *chans;
static unsigned nchan;
static uint32_t round_no;
/* A runtime exists (the watchdog note dumps it). Relaxed: a hint for a
 * diagnostic printed on the way to failing. */
static _Atomic int flood_rt_set;

static inline unsigned char byte_at(unsigned c, size_t i)
{
	return (unsigned char)((i * 131u) ^ (i >> 9) ^ (c * 29u) ^ round_no);
}

/* Delayed reaping: keep this worker busy so its ring is not reaped. */
static void spin(uint64_t *rng)
{
	uint64_t x = stress_rand(rng);
	if ((x & 3) == 0)
		return;
	/* a register-only loop the compiler must keep (and sanitizers do not
	 * instrument, so it costs the same in every build) */
	for (unsigned long i = 0, n = (x >> 8) % 20000; i < n; i++)
		__asm__ __volatile__("" : "+r"(i));
}

static void *writer(void *arg)
{
	struct chan *ch = arg;
	unsigned c = (unsigned)(ch - chans);
	unsigned char buf[CHUNK];
	size_t off = 0;
	while (off < ch->total) {
		uint64_t x = stress_rand(&ch->wrng);
		size_t n = 1 + x % CHUNK;
		if (n > ch->total - off)
			n = ch->total - off;
		for (size_t i = 0; i < n; i++)
			buf[i] = byte_at(c, off + i);
		ssize_t w;
		bool tmo = ch->timed && (x >> 40) % 3 == 0;
		if (tmo) {
			w = ch->pipe ? weft_write_timeout(ch->wfd, buf, n, -1, HOUR)
				     : weft_send_timeout(ch->wfd, buf, n, 0, HOUR);
			ch->wtops++;
		} else if ((x >> 32) % 4 == 0) {
			size_t h = n / 2;
			struct iovec iov[2] = { { buf, h }, { buf + h, n - h } };
			w = weft_writev(ch->wfd, iov, 2, -1);
		} else if (ch->pipe) {
			w = weft_write(ch->wfd, buf, n, -1);
		} else {
			w = weft_send(ch->wfd, buf, n, 0);
		}
		ch->wops++;
		STRESS_CHECK(w > 0 && (size_t)w <= n, "writer %u: %zu bytes returned %zd (%s)", c, n, w,
			     w < 0 ? weft_strerror((int)w) : "bad count");
		off += (size_t)w;
		stress_tick();
		spin(&ch->wrng);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct chan *ch = arg;
	unsigned c = (unsigned)(ch - chans);
	unsigned char buf[CHUNK];
	while (ch->got < ch->total) {
		uint64_t x = stress_rand(&ch->rrng);
		size_t n = 1 + x % CHUNK;
		ssize_t r;
		bool tmo = ch->timed && (x >> 40) % 3 == 0;
		if (tmo) {
			r = ch->pipe ? weft_read_timeout(ch->rfd, buf, n, -1, HOUR)
				     : weft_recv_timeout(ch->rfd, buf, n, 0, HOUR);
			ch->rtops++;
		} else if ((x >> 32) % 4 == 0) {
			size_t h = n / 2;
			struct iovec iov[2] = { { buf, h }, { buf + h, n - h } };
			r = weft_readv(ch->rfd, iov, 2, -1);
		} else if (ch->pipe) {
			r = weft_read(ch->rfd, buf, n, -1);
		} else {
			r = weft_recv(ch->rfd, buf, n, 0);
		}
		ch->rops++;
		STRESS_CHECK(r > 0 && (size_t)r <= n, "reader %u: read of %zu at byte %zu of %zu "
			     "returned %zd (%s)", c, n, ch->got, ch->total, r,
			     r < 0 ? weft_strerror((int)r) : r == 0 ? "end of stream" : "bad count");
		STRESS_CHECK(ch->got + (size_t)r <= ch->total, "reader %u: %zu bytes past the end",
			     c, ch->got + (size_t)r - ch->total);
		for (ssize_t i = 0; i < r; i++)
			STRESS_CHECK(buf[i] == byte_at(c, ch->got + (size_t)i),
				     "reader %u: byte %zu is %#x, expected %#x (lost, repeated or "
				     "misdelivered data; round %u)", c, ch->got + (size_t)i, buf[i],
				     byte_at(c, ch->got + (size_t)i), round_no);
		ch->got += (size_t)r;
		stress_tick();
		spin(&ch->rrng);
	}
	return NULL;
}

static void *round_main(void *arg)
{
	(void)arg;
	weft_task **t = calloc(2 * (size_t)nchan, sizeof *t);
	STRESS_CHECK(t, "out of memory");
	/* readers first: they all block at once, so the flood of reads is in
	 * flight before any data exists */
	for (unsigned i = 0; i < nchan; i++)
		STRESS_CHECK(weft_spawn(&t[i], reader, &chans[i]) == 0, "spawn reader %u", i);
	for (unsigned i = 0; i < nchan; i++)
		STRESS_CHECK(weft_spawn(&t[nchan + i], writer, &chans[i]) == 0, "spawn writer %u", i);
	for (unsigned i = 0; i < 2 * nchan; i++)
		STRESS_CHECK(weft_join(t[i], NULL) == 0, "join %u", i);
	free(t);
	return NULL;
}

/* The watchdog's context on a hang. It reads the channels while coroutines
 * may still write them: a racy snapshot, printed on the way to failing. */
static void note(void)
{
	if (atomic_load_explicit(&flood_rt_set, memory_order_relaxed))
		weft_dump(stderr);
	unsigned short_r = 0;
	for (unsigned i = 0; i < nchan; i++)
		short_r += chans[i].got < chans[i].total;
	fprintf(stderr, "  round %u: %u of %u readers still short of their bytes\n", round_no,
		short_r, nchan);
}

static struct weft_worker_stats rt_stats(weft_rt *rt)
{
	struct weft_stats s;
	STRESS_CHECK(weft_rt_stats(rt, &s, NULL, 0) == 0, "weft_rt_stats");
	return s.total;
}

static uint64_t completions(weft_rt *rt)
{
	return rt_stats(rt).io_completions;
}

int main(int argc, char **argv)
{
	stress_init("ioflood", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	struct rlimit rl;
	STRESS_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	unsigned long want = stress.count ? stress.count : 2000;
	unsigned long cap = rl.rlim_cur > 256 ? (unsigned long)(rl.rlim_cur - 128) / 2 : 64;
	nchan = (unsigned)(want < cap ? want : cap);
	if (nchan < want)
		printf("  RLIMIT_NOFILE %lu: %u channels instead of %lu\n",
		       (unsigned long)rl.rlim_cur, nchan, want);
	chans = calloc(nchan, sizeof *chans);
	STRESS_CHECK(chans, "out of memory");
	stress_watchdog_note = note;
	stress_watchdog_start();
	static const unsigned sizes[] = { 1, 2, 4, 16 };
	uint64_t rng = stress_seed_for(0);
	unsigned long ops = 0, tops = 0;
	/* how hard the rings were pushed (reported, not checked: it depends
	 * on timing) */
	uint64_t sq_full = 0, cq_overflow = 0;
	uint64_t bytes = 0;
	unsigned rounds_at[4] = { 0 };
	int fds0 = stress_count_fds();
	do {
		round_no++;
		unsigned si = (unsigned)(stress_rand(&rng) % 4), entries = sizes[si];
		rounds_at[si]++;
		for (unsigned i = 0; i < nchan; i++) {
			struct chan *ch = &chans[i];
			int fd[2];
			uint64_t x = stress_rand(&rng);
			*ch = (struct chan){ .pipe = x & 1, .total = 1 + (x >> 8) % (8 * CHUNK),
					     .wrng = stress_rand(&rng), .rrng = stress_rand(&rng),
					     .timed = entries > 1 };
			if (ch->pipe)
				STRESS_CHECK(pipe2(fd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
			else
				STRESS_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0,
					     "socketpair: %s", strerror(errno));
			ch->rfd = fd[0];
			ch->wfd = fd[1];
		}
		weft_rt *rt;
		int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers,
								   .ring_entries = entries });
		STRESS_CHECK(r == 0, "weft_rt_create (ring_entries %u): %s", entries, weft_strerror(r));
		atomic_store_explicit(&flood_rt_set, 1, memory_order_relaxed);
		uint64_t c0 = completions(rt);
		r = weft_rt_run(rt, round_main, NULL, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		unsigned long cqes = 0;
		for (unsigned i = 0; i < nchan; i++) {
			STRESS_CHECK(chans[i].got == chans[i].total, "channel %u: %zu of %zu bytes", i,
				     chans[i].got, chans[i].total);
			/* one CQE per call, a second for each timed one */
			cqes += chans[i].wops + chans[i].rops + chans[i].wtops + chans[i].rtops;
			tops += chans[i].wtops + chans[i].rtops;
			bytes += chans[i].total;
		}
		/* A worker adds to its counter after running the callbacks that
		 * woke our coroutines, so the last additions may trail the joins:
		 * wait for them (bounded); more than one CQE per op fails at once. */
		uint64_t c = 0;
		for (int i = 0; i < 5000; i++) {
			c = completions(rt) - c0;
			STRESS_CHECK(c <= cqes, "round %u (ring_entries %u): %llu completions, %lu "
				     "expected: some op completed twice", round_no, entries,
				     (unsigned long long)c, cqes);
			if (c == cqes)
				break;
			usleep(1000);
		}
		STRESS_CHECK(c == cqes, "round %u (ring_entries %u): %llu completions, %lu expected "
			     "(5 s after the joins)", round_no, entries, (unsigned long long)c, cqes);
		ops += cqes;
		struct weft_worker_stats ws = rt_stats(rt);
		sq_full += ws.io_sq_full;
		cq_overflow += ws.io_cq_overflow;
		atomic_store_explicit(&flood_rt_set, 0, memory_order_relaxed);
		STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
		for (unsigned i = 0; i < nchan; i++) {
			close(chans[i].rfd);
			close(chans[i].wfd);
		}
		int fds = stress_count_fds();
		STRESS_CHECK(fds == fds0, "round %u: %d fds open, %d before", round_no, fds, fds0);
		stress_tick();
	} while (!stress_expired() && round_no < 100000);
	free(chans);
	stress_pass("workers=%u channels=%u rounds=%u (ring_entries 1/2/4/16: %u/%u/%u/%u) "
		    "CQEs=%lu (%lu timed ops) bytes=%llu SQ-full=%llu CQ-overflow reaps=%llu",
		    workers, nchan, round_no, rounds_at[0], rounds_at[1], rounds_at[2],
		    rounds_at[3], ops, tops, (unsigned long long)bytes,
		    (unsigned long long)sq_full, (unsigned long long)cq_overflow);
	return 0;
}
