/*
 * Channels and select: FIFO and rendezvous semantics, MPMC exactly-once,
 * close with blocked parties, timeouts, cancellation, select fairness and
 * wake-ups, plain threads meeting coroutines.
 *
 * Checks inside coroutines run on worker threads, where Criterion's fatal
 * asserts must not longjmp: they count failures (CHECK) and the test's main
 * thread asserts the count is zero.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

#include "harness.h"
#include "util.h"

static void run(unsigned workers, weft_fn fn, void *arg)
{
	run_with(workers, 32 * 1024, fn, arg);
}

/* ------------------------------------------------- outside the runtime --- */

Test(chan, buffered_fifo_nonblocking_from_thread)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, sizeof(int), 4), 0);
	cr_assert_eq(weft_chan_cap(ch), 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(weft_chan_try_send(ch, &i), 0);
	int v = 99;
	cr_assert_eq(weft_chan_try_send(ch, &v), -EAGAIN);
	cr_assert_eq(weft_chan_len(ch), 4);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(weft_chan_try_recv(ch, &v), 0);
		cr_assert_eq(v, i);
	}
	cr_assert_eq(weft_chan_try_recv(ch, &v), -EAGAIN);
	/* wrap around the ring */
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 3; i++) {
			int x = round * 10 + i;
			cr_assert_eq(weft_chan_try_send(ch, &x), 0);
		}
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(weft_chan_try_recv(ch, &v), 0);
			cr_assert_eq(v, round * 10 + i);
		}
	}
	weft_chan_destroy(ch);
}

Test(chan, close_drains_then_epipe)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, sizeof(int), 4), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(weft_chan_send(ch, &i), 0);   /* does not block: room */
	cr_assert_eq(weft_chan_close(ch), 0);
	cr_assert_eq(weft_chan_close(ch), -EPIPE);
	int v = 7;
	cr_assert_eq(weft_chan_send(ch, &v), -EPIPE);
	cr_assert_eq(weft_chan_try_send(ch, &v), -EPIPE);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(weft_chan_recv(ch, &v), 0);
		cr_assert_eq(v, i);
	}
	cr_assert_eq(weft_chan_recv(ch, &v), -EPIPE);
	cr_assert_eq(weft_chan_try_recv(ch, &v), -EPIPE);
	weft_chan_destroy(ch);
}

Test(chan, bad_arguments)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, 0, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(NULL, 4, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, 1 << 20, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, 8, SIZE_MAX / 2), -EINVAL);
}

Test(chan, thread_timeouts)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, sizeof(int), 0), 0);
	int v = 1;
	uint64_t t0 = weft_now();
	cr_assert_eq(weft_chan_recv_timeout(ch, &v, 20000000), -ETIMEDOUT);
	cr_assert_geq(weft_now() - t0, 20000000);
	t0 = weft_now();
	cr_assert_eq(weft_chan_send_timeout(ch, &v, 20000000), -ETIMEDOUT);
	cr_assert_geq(weft_now() - t0, 20000000);
	weft_chan_destroy(ch);
}

/* ------------------------------------------------------------- rendezvous -- */

struct pair { weft_chan *ch; int n; };

static void *ordered_sender(void *arg)
{
	struct pair *p = arg;
	for (int i = 0; i < p->n; i++)
		CHECK(weft_chan_send(p->ch, &i) == 0);
	return NULL;
}

static void *rendezvous_main(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	struct pair p = { NULL, 10000 };
	CHECK(weft_chan_create(&p.ch, sizeof(int), cap) == 0);
	weft_task *t;
	CHECK(weft_spawn(&t, ordered_sender, &p) == 0);
	for (int i = 0; i < p.n; i++) {
		int v = -1;
		CHECK(weft_chan_recv(p.ch, &v) == 0);
		CHECK(v == i);
	}
	CHECK(weft_join(t, NULL) == 0);
	int v;
	CHECK(weft_chan_try_recv(p.ch, &v) == -EAGAIN);
	weft_chan_destroy(p.ch);
	return NULL;
}

Test(chan, unbuffered_in_order)
{
	run(1, rendezvous_main, (void *)0);
	run(4, rendezvous_main, (void *)0);
}

Test(chan, buffered_in_order)
{
	run(1, rendezvous_main, (void *)3);
	run(4, rendezvous_main, (void *)64);
}

/* ------------------------------------------------------------------ MPMC -- */

#define MP 64
#define MC 64
#define PER 2000
#define NVAL (MP * PER)

struct mpmc {
	weft_chan *ch;
	_Atomic uint64_t seen[NVAL / 64];
	_Atomic unsigned dups;
	_Atomic unsigned received;
	bool use_select;
	weft_chan *other;            /* select: a second, never-used channel */
};

static struct mpmc M;

static void *producer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	for (unsigned i = 0; i < PER; i++) {
		uint32_t v = id * PER + i;
		CHECK(weft_chan_send(M.ch, &v) == 0);
		if ((i & 127) == 0)
			weft_yield();
	}
	return NULL;
}

static void *consumer(void *arg)
{
	for (;;) {
		uint32_t v;
		int r;
		if (M.use_select) {
			uint32_t dummy;
			struct weft_select_case c[2] = {
				{ .chan = M.other, .op = WEFT_SELECT_RECV, .elem = &dummy },
				{ .chan = M.ch, .op = WEFT_SELECT_RECV, .elem = &v },
			};
			r = weft_select(c, 2, WEFT_FOREVER);
			CHECK(r == 1);
			if (r != 1)
				return NULL;
			r = c[1].result;
		} else {
			r = weft_chan_recv(M.ch, &v);
		}
		if (r == -EPIPE)
			return NULL;
		CHECK(r == 0);
		CHECK(v < NVAL);
		if (r || v >= NVAL)
			return NULL;
		uint64_t bit = 1ull << (v % 64);
		if (atomic_fetch_or(&M.seen[v / 64], bit) & bit)
			atomic_fetch_add(&M.dups, 1);
		atomic_fetch_add(&M.received, 1);
	}
}

static void *mpmc_main(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	CHECK(weft_chan_create(&M.ch, sizeof(uint32_t), cap) == 0);
	CHECK(weft_chan_create(&M.other, sizeof(uint32_t), 0) == 0);
	weft_task *p[MP], *c[MC];
	for (unsigned i = 0; i < MC; i++)
		CHECK(weft_spawn(&c[i], consumer, NULL) == 0);
	for (unsigned i = 0; i < MP; i++)
		CHECK(weft_spawn(&p[i], producer, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < MP; i++)
		CHECK(weft_join(p[i], NULL) == 0);
	CHECK(weft_chan_close(M.ch) == 0);
	for (unsigned i = 0; i < MC; i++)
		CHECK(weft_join(c[i], NULL) == 0);
	weft_chan_destroy(M.ch);
	weft_chan_destroy(M.other);
	return NULL;
}

static void mpmc(unsigned workers, size_t cap, bool sel)
{
	memset(&M, 0, sizeof(M));
	M.use_select = sel;
	run(workers, mpmc_main, (void *)(uintptr_t)cap);
	cr_assert_eq(atomic_load(&M.dups), 0, "values received twice");
	cr_assert_eq(atomic_load(&M.received), NVAL);
	for (unsigned i = 0; i < NVAL / 64; i++)
		cr_assert_eq(atomic_load(&M.seen[i]), ~0ull, "value lost in word %u", i);
}

Test(chan, mpmc_64x64_unbuffered) { mpmc(4, 0, false); }
Test(chan, mpmc_64x64_buffered)   { mpmc(4, 16, false); }
Test(chan, mpmc_64x64_select)     { mpmc(4, 8, true); }
Test(chan, mpmc_64x64_one_worker) { mpmc(1, 0, true); }
Test(chan, mpmc_64x64_64_workers) { mpmc(64, 4, true); mpmc(64, 0, false); }

/* ----------------------------------------------------- close while blocked -- */

/* Every party is parked in its call when the channels close (weft_dump
 * counts them), so the close is what wakes them; their waits are bounded
 * (10 s), so a close that wakes nobody fails their results (-ETIMEDOUT,
 * not -EPIPE) instead of hanging the test. */
#define CLOSE_BOUND (10ull * 1000000000)

struct closing { weft_chan *empty, *full; };

static void *blocked_recv(void *arg)
{
	struct closing *c = arg;
	int v;
	return (void *)(intptr_t)weft_chan_recv_timeout(c->empty, &v, CLOSE_BOUND);
}

static void *blocked_send(void *arg)
{
	struct closing *c = arg;
	int v = 5;
	return (void *)(intptr_t)weft_chan_send_timeout(c->full, &v, CLOSE_BOUND);
}

static void *blocked_select(void *arg)
{
	struct closing *c = arg;
	int a, b = 1;
	struct weft_select_case cs[2] = {
		{ .chan = c->empty, .op = WEFT_SELECT_RECV, .elem = &a },
		{ .chan = c->full, .op = WEFT_SELECT_SEND, .elem = &b },
	};
	int r = weft_select(cs, 2, (int64_t)CLOSE_BOUND);
	if (r < 0)
		return (void *)(intptr_t)r;
	return (void *)(intptr_t)cs[r].result;
}

/* How many coroutines weft_dump shows parked in a channel call. */
static unsigned parked_on_channels(void)
{
	char *buf = dump_text();
	if (!buf)
		return 0;
	unsigned n = 0;
	for (const char *p = buf; (p = strstr(p, ": parked, waiting for channel ")); p++)
		n++;
	free(buf);
	return n;
}

static void *close_main(void *arg)
{
	struct closing c = { 0 };
	CHECK(weft_chan_create(&c.empty, sizeof(int), 0) == 0);
	CHECK(weft_chan_create(&c.full, sizeof(int), 2) == 0);
	int v = 1;
	CHECK(weft_chan_send(c.full, &v) == 0);
	CHECK(weft_chan_send(c.full, &v) == 0);
	enum { N = 32 };
	weft_task *t[3 * N];
	for (int i = 0; i < N; i++) {
		CHECK(weft_spawn(&t[3 * i], blocked_recv, &c) == 0);
		CHECK(weft_spawn(&t[3 * i + 1], blocked_send, &c) == 0);
		CHECK(weft_spawn(&t[3 * i + 2], blocked_select, &c) == 0);
	}
	/* bounded: 5000 looks, 1 ms apart */
	unsigned parked = 0;
	for (int i = 0; i < 5000 && (parked = parked_on_channels()) < 3 * N; i++)
		weft_sleep(1000000);
	CHECK(parked == 3 * N);
	CHECK(weft_chan_close(c.empty) == 0);
	CHECK(weft_chan_close(c.full) == 0);
	for (int i = 0; i < 3 * N; i++) {
		void *r;
		CHECK(weft_join(t[i], &r) == 0);
		CHECK((intptr_t)r == -EPIPE);
	}
	/* the buffered values are still there */
	CHECK(weft_chan_recv(c.full, &v) == 0);
	CHECK(weft_chan_recv(c.full, &v) == 0);
	CHECK(weft_chan_recv(c.full, &v) == -EPIPE);
	weft_chan_destroy(c.empty);
	weft_chan_destroy(c.full);
	return NULL;
}

Test(chan, close_wakes_blocked_senders_receivers_selects)
{
	run(4, close_main, NULL);
	run(1, close_main, NULL);
}

/* ------------------------------------------------ timeouts, cancellation -- */

static void *timeout_main(void *arg)
{
	weft_chan *ch;
	CHECK(weft_chan_create(&ch, sizeof(int), 1) == 0);
	int v = 3;
	uint64_t t0 = weft_now();
	CHECK(weft_chan_recv_timeout(ch, &v, 10000000) == -ETIMEDOUT);
	CHECK(weft_now() - t0 >= 10000000);
	CHECK(weft_chan_send_timeout(ch, &v, 10000000) == 0);   /* room */
	t0 = weft_now();
	CHECK(weft_chan_send_timeout(ch, &v, 10000000) == -ETIMEDOUT);
	CHECK(weft_now() - t0 >= 10000000);
	CHECK(weft_chan_recv_timeout(ch, &v, 0) == 0);          /* ready: no wait */
	CHECK(v == 3);
	struct weft_select_case c = { .chan = ch, .op = WEFT_SELECT_RECV, .elem = &v };
	t0 = weft_now();
	CHECK(weft_select(&c, 1, 10000000) == -ETIMEDOUT);
	CHECK(weft_now() - t0 >= 10000000);
	CHECK(weft_select(&c, 1, 0) == -ETIMEDOUT);            /* 0: does not wait */
	CHECK(weft_select(NULL, 0, 5000000) == -ETIMEDOUT);     /* empty select */
	weft_chan_destroy(ch);
	return NULL;
}

Test(chan, timeouts)
{
	run(2, timeout_main, NULL);
}

static void *cancel_recv(void *arg)
{
	int v;
	return (void *)(intptr_t)weft_chan_recv(arg, &v);
}

static void *cancel_select(void *arg)
{
	int v;
	struct weft_select_case c = { .chan = arg, .op = WEFT_SELECT_RECV, .elem = &v };
	return (void *)(intptr_t)weft_select(&c, 1, WEFT_FOREVER);
}

static void *cancel_main(void *arg)
{
	weft_chan *ch;
	CHECK(weft_chan_create(&ch, sizeof(int), 0) == 0);
	weft_task *a, *b;
	CHECK(weft_spawn(&a, cancel_recv, ch) == 0);
	CHECK(weft_spawn(&b, cancel_select, ch) == 0);
	/* Both parked in their calls before the cancels (the dump says so), so
	 * this cancels blocked waiters, not calls about to start. */
	unsigned parked = 0;
	for (int i = 0; i < 5000 && (parked = parked_on_channels()) < 2; i++)
		weft_sleep(1000000);
	CHECK(parked == 2);
	CHECK(weft_cancel(a) == 0);
	CHECK(weft_cancel(b) == 0);
	void *r;
	CHECK(weft_join(a, &r) == 0 && (intptr_t)r == -ECANCELED);
	CHECK(weft_join(b, &r) == 0 && (intptr_t)r == -ECANCELED);
	/* the cancelled waiters left no node behind: a send finds no receiver */
	int v = 1;
	CHECK(weft_chan_try_send(ch, &v) == -EAGAIN);
	weft_chan_destroy(ch);
	return NULL;
}

Test(chan, cancel_blocked)
{
	run(2, cancel_main, NULL);
}

/* ----------------------------------------------------------------- select -- */

static void *fairness_main(void *arg)
{
	weft_chan *ch[3];
	unsigned hits[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		CHECK(weft_chan_create(&ch[i], sizeof(int), 1) == 0);
		CHECK(weft_chan_send(ch[i], &i) == 0);
	}
	for (int round = 0; round < 30000; round++) {
		int v = -1;
		struct weft_select_case c[3];
		for (int i = 0; i < 3; i++)
			c[i] = (struct weft_select_case){ ch[i], WEFT_SELECT_RECV, &v, 1 };
		int r = weft_select(c, 3, 0);
		CHECK(r >= 0 && r < 3);
		if (r < 0 || r >= 3)
			break;
		CHECK(c[r].result == 0 && v == r);
		hits[r]++;
		CHECK(weft_chan_try_send(ch[r], &r) == 0);   /* ready again */
	}
	for (int i = 0; i < 3; i++) {
		CHECK(hits[i] >= 9000 && hits[i] <= 11000);
		weft_chan_destroy(ch[i]);
	}
	memcpy(arg, hits, sizeof(hits));
	return NULL;
}

Test(chan, select_fair_over_three_ready)
{
	unsigned hits[3];
	run(1, fairness_main, hits);
	for (int i = 0; i < 3; i++)
		cr_assert(hits[i] >= 9000 && hits[i] <= 11000, "case %d chosen %u of 30000", i, hits[i]);
}

/* Uniform over the ready cases only, whichever they are: with a random start
 * scanned in order, the ready case after a run of unready ones also won
 * their starts (cases 0 and 1 of three ready: case 0 two times in three).
 * Each non-empty subset of four cases is made ready in turn (the others stay
 * empty), 24,000 rounds each: every ready case must win 24,000/k +- 10%. */
#define SUBSET_ROUNDS 24000
struct fair_subset { double spread; unsigned mask, hits[4]; };

static void *fair_subset_main(void *arg)
{
	struct fair_subset *worst = arg;     /* the subset furthest from uniform */
	weft_chan *ch[4];
	for (int i = 0; i < 4; i++)
		CHECK(weft_chan_create(&ch[i], sizeof(int), 1) == 0);
	for (unsigned mask = 1; mask < 16; mask++) {
		unsigned hits[4] = { 0 }, k = 0;
		for (int i = 0; i < 4; i++)
			if (mask & (1u << i)) {
				CHECK(weft_chan_send(ch[i], &i) == 0);
				k++;
			}
		for (int round = 0; round < SUBSET_ROUNDS; round++) {
			int v = -1;
			struct weft_select_case c[4];
			for (int i = 0; i < 4; i++)
				c[i] = (struct weft_select_case){ ch[i], WEFT_SELECT_RECV, &v, 1 };
			int r = weft_select(c, 4, 0);
			CHECK(r >= 0 && r < 4 && (mask & (1u << r)));
			if (r < 0 || r >= 4)
				break;
			hits[r]++;
			CHECK(weft_chan_try_send(ch[r], &r) == 0);   /* ready again */
		}
		for (int i = 0; i < 4; i++) {
			if (!(mask & (1u << i)))
				continue;
			int v;
			CHECK(weft_chan_try_recv(ch[i], &v) == 0);   /* empty again */
			double want = (double)SUBSET_ROUNDS / k;
			double off = (hits[i] > want ? hits[i] - want : want - hits[i]) / want;
			if (off > worst->spread) {
				worst->spread = off;
				worst->mask = mask;
				memcpy(worst->hits, hits, sizeof hits);
			}
		}
	}
	for (int i = 0; i < 4; i++)
		weft_chan_destroy(ch[i]);
	return NULL;
}

Test(chan, select_fair_over_any_ready_subset)
{
	struct fair_subset w = { 0 };
	run(1, fair_subset_main, &w);
	cr_assert(w.spread <= 0.10, "ready mask %#x of 4 cases: hits %u %u %u %u in %d rounds",
	          w.mask, w.hits[0], w.hits[1], w.hits[2], w.hits[3], SUBSET_ROUNDS);
}

/* More cases than select keeps on its stack (8): the scan order, nodes and
 * lock set come from one allocation. 20 cases over 10 channels (each twice,
 * every third case NULL): a single ready case is found wherever it is, the
 * choice among ready ones stays fair, and a wait on all of them is ended by a
 * send from another coroutine to the last channel. */
enum { MANY = 20, MANY_CH = 10 };

static void *many_sender(void *arg)
{
	int v = 77;
	weft_sleep(2000000);
	return (void *)(intptr_t)weft_chan_send(arg, &v);
}

static void *many_cases_main(void *arg)
{
	weft_chan *ch[MANY_CH];
	for (int i = 0; i < MANY_CH; i++)
		CHECK(weft_chan_create(&ch[i], sizeof(int), 1) == 0);
	int v = -1;
	struct weft_select_case c[MANY];
	for (int i = 0; i < MANY; i++)
		c[i] = (struct weft_select_case){ i % 3 == 2 ? NULL : ch[i % MANY_CH],
		                                  WEFT_SELECT_RECV, &v, 1 };
	/* case 15 is channel 5's only case (case 5 is NULL) */
	int five = 5;
	CHECK(weft_chan_send(ch[5], &five) == 0);
	CHECK(weft_select(c, MANY, 0) == 15 && c[15].result == 0 && v == 5);
	/* channels 0 and 1 ready: cases 0, 10 (channel 0), 1 (channel 1; case
	 * 11 is NULL); channel 0 has two cases, so it wins two draws in three */
	unsigned hits[MANY] = { 0 };
	for (int round = 0; round < 9000; round++) {
		int a = 0, b = 1;
		CHECK(weft_chan_try_send(ch[0], &a) == 0 && weft_chan_try_send(ch[1], &b) == 0);
		int r = weft_select(c, MANY, 0);
		CHECK(r == 0 || r == 10 || r == 1);
		if (r < 0)
			break;
		hits[r]++;
		int w;
		(void)weft_chan_try_recv(ch[0], &w);   /* empty both again */
		(void)weft_chan_try_recv(ch[1], &w);
	}
	for (int i = 0; i < MANY; i++)
		CHECK(i == 0 || i == 1 || i == 10 ? hits[i] >= 2700 && hits[i] <= 3300 : hits[i] == 0);
	weft_task *t;
	CHECK(weft_spawn(&t, many_sender, ch[9]) == 0);
	int r = weft_select(c, MANY, WEFT_FOREVER);
	CHECK((r == 9 || r == 19) && c[r].result == 0 && v == 77);
	void *sent;
	CHECK(weft_join(t, &sent) == 0 && sent == NULL);
	for (int i = 0; i < MANY_CH; i++)
		weft_chan_destroy(ch[i]);
	return NULL;
}

Test(chan, select_more_cases_than_the_stack_holds)
{
	run(2, many_cases_main, NULL);
}

struct selwake { weft_chan *a, *b, *c; };

static void *delayed_sender(void *arg)
{
	weft_chan *ch = arg;
	weft_sleep(3000000);
	int v = 42;
	CHECK(weft_chan_send(ch, &v) == 0);
	return NULL;
}

static void *delayed_receiver(void *arg)
{
	weft_chan *ch = arg;
	weft_sleep(3000000);
	int v = 0;
	CHECK(weft_chan_recv(ch, &v) == 0);
	CHECK(v == 77);
	return NULL;
}

static void *select_wake_main(void *arg)
{
	struct selwake s;
	CHECK(weft_chan_create(&s.a, sizeof(int), 0) == 0);
	CHECK(weft_chan_create(&s.b, sizeof(int), 0) == 0);
	CHECK(weft_chan_create(&s.c, sizeof(int), 0) == 0);
	for (int iter = 0; iter < 20; iter++) {
		/* woken by a sender on b */
		weft_task *t;
		CHECK(weft_spawn(&t, delayed_sender, s.b) == 0);
		int va = 0, vb = 0, vc = 77;
		struct weft_select_case c[3] = {
			{ s.a, WEFT_SELECT_RECV, &va, 1 },
			{ s.b, WEFT_SELECT_RECV, &vb, 1 },
			{ s.c, WEFT_SELECT_SEND, &vc, 1 },
		};
		CHECK(weft_select(c, 3, WEFT_FOREVER) == 1);
		CHECK(c[1].result == 0 && vb == 42);
		CHECK(weft_join(t, NULL) == 0);
		/* woken by a receiver on c: our send case completes */
		CHECK(weft_spawn(&t, delayed_receiver, s.c) == 0);
		CHECK(weft_select(c, 3, WEFT_FOREVER) == 2);
		CHECK(c[2].result == 0);
		CHECK(weft_join(t, NULL) == 0);
		/* nobody is left queued anywhere */
		int v = 0;
		CHECK(weft_chan_try_send(s.a, &v) == -EAGAIN);
		CHECK(weft_chan_try_send(s.b, &v) == -EAGAIN);
		CHECK(weft_chan_try_recv(s.c, &v) == -EAGAIN);
	}
	/* a closed channel makes its case ready with -EPIPE */
	CHECK(weft_chan_close(s.a) == 0);
	int v;
	struct weft_select_case c[2] = {
		{ s.a, WEFT_SELECT_RECV, &v, 1 }, { NULL, WEFT_SELECT_RECV, &v, 1 },
	};
	CHECK(weft_select(c, 2, WEFT_FOREVER) == 0 && c[0].result == -EPIPE);
	c[0].op = 99;
	CHECK(weft_select(c, 2, 0) == -EINVAL);
	weft_chan_destroy(s.a);
	weft_chan_destroy(s.b);
	weft_chan_destroy(s.c);
	return NULL;
}

Test(chan, select_wakes_on_send_and_recv)
{
	run(1, select_wake_main, NULL);
	run(4, select_wake_main, NULL);
}

/* A select with a send and a receive case on the same channel must not meet
 * itself; two such selects meet each other. */
static void *self_select(void *arg)
{
	weft_chan *ch = arg;
	int in = 0, out = (int)weft_task_id(weft_self());
	struct weft_select_case c[2] = {
		{ ch, WEFT_SELECT_SEND, &out, 1 }, { ch, WEFT_SELECT_RECV, &in, 1 },
	};
	int r = weft_select(c, 2, 2000000000);
	CHECK(r == 0 || r == 1);
	if (r == 1)
		CHECK(in != out && in != 0);
	return (void *)(intptr_t)r;
}

static void *self_select_main(void *arg)
{
	weft_chan *ch;
	CHECK(weft_chan_create(&ch, sizeof(int), 0) == 0);
	for (int i = 0; i < 50; i++) {
		weft_task *a, *b;
		CHECK(weft_spawn(&a, self_select, ch) == 0);
		CHECK(weft_spawn(&b, self_select, ch) == 0);
		void *ra, *rb;
		CHECK(weft_join(a, &ra) == 0);
		CHECK(weft_join(b, &rb) == 0);
		CHECK((intptr_t)ra + (intptr_t)rb == 1);   /* one sent, one received */
	}
	weft_chan_destroy(ch);
	return NULL;
}

Test(chan, select_send_recv_same_channel)
{
	run(2, self_select_main, NULL);
}

/* ----------------------------------------------------------- plain threads -- */

struct thr { weft_chan *to_co, *from_co; int n; };

static void *thread_feeder(void *arg)
{
	struct thr *t = arg;
	for (int i = 0; i < t->n; i++) {
		if (weft_chan_send(t->to_co, &i) != 0)
			return (void *)1;
		int back = -1;
		if (weft_chan_recv(t->from_co, &back) != 0 || back != 2 * i)
			return (void *)2;
	}
	return NULL;
}

static void *echo_main(void *arg)
{
	struct thr *t = arg;
	for (int i = 0; i < t->n; i++) {
		int v = -1;
		CHECK(weft_chan_recv(t->to_co, &v) == 0);
		CHECK(v == i);
		v *= 2;
		CHECK(weft_chan_send(t->from_co, &v) == 0);
	}
	return NULL;
}

Test(chan, plain_thread_rendezvous_with_coroutine)
{
	struct thr t = { .n = 5000 };
	cr_assert_eq(weft_chan_create(&t.to_co, sizeof(int), 0), 0);
	cr_assert_eq(weft_chan_create(&t.from_co, sizeof(int), 0), 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, thread_feeder, &t), 0);
	run(2, echo_main, &t);
	void *r;
	pthread_join(th, &r);
	cr_assert_null(r, "thread side failed: %p", r);
	weft_chan_destroy(t.to_co);
	weft_chan_destroy(t.from_co);
}

static void *thread_closer(void *arg)
{
	struct timespec ts = { 0, 20000000 };
	nanosleep(&ts, NULL);
	weft_chan_close(arg);
	return NULL;
}

Test(chan, plain_thread_blocked_until_close)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, sizeof(int), 0), 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, thread_closer, ch), 0);
	int v;
	cr_assert_eq(weft_chan_recv(ch, &v), -EPIPE);
	pthread_join(th, NULL);
	weft_chan_destroy(ch);
}

/* ------------------------------------------------- weft_dump names waits -- */


static weft_chan *dump_ch;

static void *dump_receiver(void *arg)
{
	(void)arg;
	weft_set_name("receiver");
	int v = 0;
	CHECK(weft_chan_recv(dump_ch, &v) == 0);
	CHECK(v == 42);
	return NULL;
}

static void *dump_sender(void *arg)
{
	(void)arg;
	weft_set_name("sender");
	int v = 43;
	CHECK(weft_chan_send(dump_ch, &v) == 0);
	return NULL;
}

static void *dump_selector(void *arg)
{
	weft_chan *other = arg;
	weft_set_name("selector");
	int a = 0, b = 0;
	struct weft_select_case cs[2] = {
		{ .chan = dump_ch, .op = WEFT_SELECT_RECV, .elem = &a },
		{ .chan = other, .op = WEFT_SELECT_RECV, .elem = &b },
	};
	CHECK(weft_select(cs, 2, WEFT_FOREVER) == 1);
	CHECK(cs[1].result == 0 && b == 44);
	return NULL;
}

static void *dump_chan_main(void *arg)
{
	(void)arg;
	weft_task *t = NULL;
	int v = 42;
	CHECK(weft_chan_create(&dump_ch, sizeof(int), 0) == 0);

	CHECK(weft_spawn(&t, dump_receiver, NULL) == 0);
	CHECK(dump_shows("receiver", "channel recv", dump_ch));
	CHECK(weft_chan_send(dump_ch, &v) == 0);
	CHECK(weft_join(t, NULL) == 0);

	CHECK(weft_spawn(&t, dump_sender, NULL) == 0);
	CHECK(dump_shows("sender", "channel send", dump_ch));
	CHECK(weft_chan_recv(dump_ch, &v) == 0 && v == 43);
	CHECK(weft_join(t, NULL) == 0);

	/* a select is named by its lowest-addressed channel */
	weft_chan *other;
	CHECK(weft_chan_create(&other, sizeof(int), 0) == 0);
	CHECK(weft_spawn(&t, dump_selector, other) == 0);
	CHECK(dump_shows("selector", "channel select",
	                 (uintptr_t)dump_ch < (uintptr_t)other ? dump_ch : other));
	v = 44;
	CHECK(weft_chan_send(other, &v) == 0);
	CHECK(weft_join(t, NULL) == 0);
	weft_chan_destroy(other);
	weft_chan_destroy(dump_ch);
	return NULL;
}

/* One worker: the dump reads each waiter's description on the thread that
 * wrote it (the fields are plain, for diagnostics only). */
Test(chan, dump_names_channel_waits)
{
	run(1, dump_chan_main, NULL);
}
