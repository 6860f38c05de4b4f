/*
 * 1,000,000 timers (--count) with zero, past (1 ns: expired by the time the
 * worker looks), short (1 us..2 ms) and far (1 hour) deadlines, in batches of
 * up to 10,000 sleeping coroutines; half of each batch is cancelled with
 * weft_cancel at random moments, the far ones always among them.
 *
 * Checked (per timer, after its batch is joined):
 *   - a sleep that returned 0 lasted at least its ns (never early);
 *   - a sleep that returned 0 had not been cancelled before its deadline: if
 *     weft_cancel had returned before start + ns, the timer could not have
 *     expired legitimately first, so it must have returned -ECANCELED;
 *   - every far timer returned -ECANCELED, and a sleep after a cancel too;
 *   - with one worker (where the order is observable without races), timers
 *     fire in deadline order (check_order).
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define BATCH 10000
#define FAR_NS 3600000000000ull

struct tmr {
	weft_task *t;
	uint64_t ns;
	uint64_t start, end;        /* weft_now() around the sleep */
	uint64_t cancel_done;       /* weft_now() after weft_cancel returned; 0: not cancelled */
	int r, r2;
	int worker;                 /* where it resumed */
	uint64_t order;             /* global resume order among those that fired */
	uint64_t end_hi;            /* one worker: latest possible deadline */
};

static struct tmr *tm;
static unsigned pick[BATCH];
static struct tmr *byorder[BATCH];
static _Atomic uint64_t fire_seq;  /* relaxed: a ticket, resumes on one worker are ordered anyway */

static void *sleeper(void *arg)
{
	struct tmr *x = arg;
	x->start = weft_now();
	x->r = weft_sleep(x->ns);
	x->end = weft_now();
	x->worker = weft_worker_id();
	if (x->r == 0)
		x->order = atomic_fetch_add_explicit(&fire_seq, 1, memory_order_relaxed);
	else
		x->r2 = weft_sleep(x->ns % 1000);
	stress_tick();
	return NULL;
}

struct batch { unsigned n; uint64_t rng; };

static void *batch_main(void *arg)
{
	struct batch *b = arg;
	uint64_t rng = b->rng;
	for (unsigned i = 0; i < b->n; i++) {
		int r = weft_spawn(&tm[i].t, sleeper, &tm[i]);
		STRESS_CHECK(r == 0, "spawn %u: %s", i, weft_strerror(r));
		if ((stress_rand(&rng) & 255) == 0)
			weft_yield();
	}
	/* cancel the chosen half in random order, at random delays */
	unsigned m = 0;
	for (unsigned i = 0; i < b->n; i++)
		if (tm[i].cancel_done == 1)
			pick[m++] = i;
	for (unsigned i = m; i > 1; i--) {
		unsigned j = (unsigned)(stress_rand(&rng) % i), x = pick[i - 1];
		pick[i - 1] = pick[j];
		pick[j] = x;
	}
	for (unsigned i = 0; i < m; i++) {
		struct tmr *x = &tm[pick[i]];
		int r = weft_cancel(x->t);
		STRESS_CHECK(r == 0, "weft_cancel: %s", weft_strerror(r));
		x->cancel_done = weft_now();
		uint64_t k = stress_rand(&rng);
		if ((k & 63) == 0)
			weft_sleep((k >> 8) % 200000);
		else if ((k & 7) == 1)
			weft_yield();
	}
	for (unsigned i = 0; i < b->n; i++) {
		int r = weft_join(tm[i].t, NULL);
		STRESS_CHECK(r == 0, "join: %s", weft_strerror(r));
	}
	return NULL;
}

static int by_start(const void *a, const void *b)
{
	const struct tmr *x = *(struct tmr *const *)a, *y = *(struct tmr *const *)b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int by_order(const void *a, const void *b)
{
	const struct tmr *x = *(struct tmr *const *)a, *y = *(struct tmr *const *)b;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* One worker: coroutines run one at a time, so a sleeper arms its timer
 * between its own start stamp and the next sleeper's start stamp: its
 * deadline lies in [start + ns, next_start + ns]. If a resumed from a fired
 * sleep before b, b's deadline must not lie wholly before a's:
 * hi(b) < lo(a) means b was due first and yet fired later. */
static void check_order(unsigned n)
{
	unsigned m = 0;
	for (unsigned i = 0; i < n; i++)
		byorder[m++] = &tm[i];
	qsort(byorder, m, sizeof *byorder, by_start);
	for (unsigned i = 0; i < m; i++)
		byorder[i]->end_hi = i + 1 < m ? byorder[i + 1]->start + byorder[i]->ns : UINT64_MAX;
	m = 0;
	for (unsigned i = 0; i < n; i++)     /* 0 and 1 ns return without a timer */
		if (tm[i].r == 0 && tm[i].ns > 1)
			byorder[m++] = &tm[i];
	qsort(byorder, m, sizeof *byorder, by_order);
	uint64_t max_lo = 0;
	for (unsigned i = 0; i < m; i++) {
		struct tmr *x = byorder[i];
		STRESS_CHECK(x->end_hi >= max_lo,
		             "timers fired out of order on one worker: a sleep due by %lu fired after "
		             "one due no earlier than %lu", (unsigned long)x->end_hi, (unsigned long)max_lo);
		if (x->start + x->ns > max_lo)
			max_lo = x->start + x->ns;
	}
}

int main(int argc, char **argv)
{
	stress_init("timers", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	unsigned long total = stress.count ? stress.count : 1000000;
	stress_watchdog_start();
	tm = calloc(BATCH, sizeof *tm);
	STRESS_CHECK(tm, "out of memory");
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	uint64_t rng = stress_seed_for(0);
	unsigned long done = 0, fired = 0, cancelled = 0, batches = 0;
	while (done < total && !stress_expired()) {
		unsigned n = total - done < BATCH ? (unsigned)(total - done) : BATCH;
		for (unsigned i = 0; i < n; i++) {
			struct tmr *x = &tm[i];
			*x = (struct tmr){ 0 };
			uint64_t k = stress_rand(&rng);
			switch (k & 3) {
			case 0: x->ns = 0; break;
			case 1: x->ns = 1; break;
			case 2: x->ns = 1000 + (k >> 8) % 2000000; break;
			default: x->ns = FAR_NS; break;
			}
			/* cancel_done == 1 marks "to be cancelled": every far one and
			 * a third of the others, which makes about half. */
			if (x->ns == FAR_NS || (k >> 40) % 3 == 0)
				x->cancel_done = 1;
		}
		struct batch b = { n, stress_rand(&rng) };
		r = weft_rt_run(rt, batch_main, &b, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		/* one worker: resumes of fired timers in order of their deadlines,
		 * give or take those that expired in the same scheduling round. */
		for (unsigned i = 0; i < n; i++) {
			struct tmr *x = &tm[i];
			STRESS_CHECK(x->r == 0 || x->r == -ECANCELED, "sleep returned %d (%s)", x->r,
			             weft_strerror(x->r));
			if (x->r == 0) {
				fired++;
				STRESS_CHECK(x->end - x->start >= x->ns,
				             "sleep(%lu ns) returned 0 after only %lu ns", (unsigned long)x->ns,
				             (unsigned long)(x->end - x->start));
				STRESS_CHECK(x->ns != FAR_NS, "a 1-hour sleep returned 0");
				STRESS_CHECK(!x->cancel_done || x->cancel_done >= x->start + x->ns,
				             "sleep(%lu ns) returned 0 though weft_cancel returned %lu ns "
				             "before its deadline", (unsigned long)x->ns,
				             (unsigned long)(x->start + x->ns - x->cancel_done));
			} else {
				cancelled++;
				STRESS_CHECK(x->cancel_done, "sleep returned -ECANCELED without a cancel");
				STRESS_CHECK(x->r2 == -ECANCELED, "sleep after a cancel returned %d", x->r2);
			}
			if (x->ns == FAR_NS)
				STRESS_CHECK(x->r == -ECANCELED, "far timer: %d", x->r);
		}
		if (workers == 1)
			check_order(n);
		done += n;
		batches++;
	}
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u timers=%lu fired=%lu cancelled=%lu batches=%lu", workers, done, fired,
	            cancelled, batches);
	free(tm);
	return 0;
}
