/*
 * A million coroutines alive at once (--count; 100,000 with --short), the
 * shape of a server with a connection per coroutine, each parked in a wait:
 * spawned joinable from weft_rt_run's main, each counts itself in and
 * waits on one semaphore; once all are parked the main coroutine checks the
 * runtime says so (live), posts a permit per coroutine, joins every one and
 * checks its result (a value derived from its index and the seed, so a
 * lost, duplicated or mixed-up coroutine shows). Then the memory of the
 * spike is given back: weft_rt_trim, after which the pools' figures must
 * show every free stack and all but a few record slabs trimmed, and a
 * second, smaller spike must be served from them without mapping more.
 * Rounds repeat until --seconds (at least one round, bounded by count).
 * The RSS per parked coroutine and the RSS after the trim are printed, not
 * checked (bench/park1m has the goals). Under TSan at most 20,000 (a shadow
 * stack per fiber), and the run says so.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static weft_sem sem;
static _Atomic unsigned long arrived, woke_badly;   /* relaxed: counters */
static unsigned long count;
static weft_task **tasks;

static uint64_t expect(unsigned long i)
{
	return stress_seed_for(i) | 1;     /* never 0 or NULL */
}

static void *parked(void *arg)
{
	unsigned long i = (uintptr_t)arg;
	atomic_fetch_add_explicit(&arrived, 1, memory_order_relaxed);
	int r = weft_sem_wait(&sem);
	if (r != 0)
		atomic_fetch_add_explicit(&woke_badly, 1, memory_order_relaxed);
	return (void *)(uintptr_t)expect(i);
}

struct round {
	unsigned long n;              /* coroutines this round */
	uint64_t rss0, rss_parked;
	double park_s;
};

static void *round_main(void *arg)
{
	struct round *rd = arg;
	atomic_store(&arrived, 0);
	rd->rss0 = stress_rss();
	uint64_t t0 = stress_now();
	for (unsigned long i = 0; i < rd->n; i++) {
		int r = weft_spawn(&tasks[i], parked, (void *)(uintptr_t)i);
		STRESS_CHECK(r == 0, "spawn %lu of %lu: %s", i, rd->n, weft_strerror(r));
		if ((i & 4095) == 0)
			stress_tick();
	}
	/* bounded: each reaches its wait on its own; the watchdog catches a
	 * hang */
	while (atomic_load_explicit(&arrived, memory_order_relaxed) < rd->n) {
		weft_sleep(1000000);
		stress_tick();
	}
	rd->park_s = (double)(stress_now() - t0) / 1e9;
	rd->rss_parked = stress_rss();
	struct weft_stats st;
	STRESS_CHECK(weft_rt_stats(weft_rt_current(), &st, NULL, 0) == 0, "stats");
	/* every one of them alive, plus this main coroutine */
	STRESS_CHECK(st.live == rd->n + 1, "live %" PRIu64 " with %lu parked", st.live, rd->n);
	STRESS_CHECK(st.stacks >= rd->n, "%" PRIu64 " stacks for %lu parked", st.stacks, rd->n);
	for (unsigned long i = 0; i < rd->n; i++)
		STRESS_CHECK(weft_sem_post(&sem) == 0, "post %lu", i);
	for (unsigned long i = 0; i < rd->n; i++) {
		void *v = NULL;
		int r = weft_join(tasks[i], &v);
		STRESS_CHECK(r == 0, "join %lu: %s", i, weft_strerror(r));
		STRESS_CHECK((uintptr_t)v == expect(i), "coroutine %lu returned %#" PRIxPTR
		             ", want %#" PRIx64, i, (uintptr_t)v, expect(i));
		if ((i & 4095) == 0)
			stress_tick();
	}
	STRESS_CHECK(weft_sem_value(&sem) == 0, "permits left over: %" PRIu64, weft_sem_value(&sem));
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("park", argc, argv);
	unsigned workers = stress.workers ? stress.workers : stress_ncpu();
	count = stress.count ? stress.count : 1000000;
#if defined(WEFT_TSAN)
	/* TSan maps a shadow stack and trace parts per fiber: 100,000 live ran
	 * it out of mappings (shutdown.c). At most 20,000 here, said aloud. */
	if (count > 20000) {
		printf("  park: %lu coroutines under TSan, not %lu\n", 20000ul, count);
		count = 20000;
	}
#endif
	tasks = calloc(count, sizeof *tasks);
	STRESS_CHECK(tasks, "no memory for %lu handles", count);
	stress_watchdog_start();
	unsigned long rounds = 0;
	double park_s = 0, per = 0, trimmed_mib = 0;
	do {
		weft_sem_init(&sem, 0);
		weft_rt *rt;
		/* the monitor's own policy off: the checks below are about what
		 * weft_rt_trim gives back, at once */
		int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers,
		                                                   .flags = WEFT_RT_NO_TRIM });
		STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
		struct round rd = { .n = count };
		STRESS_CHECK(weft_rt_run(rt, round_main, &rd, NULL) == 0, "weft_rt_run");
		STRESS_CHECK(atomic_load(&woke_badly) == 0, "%lu waits ended badly",
		             atomic_load(&woke_badly));
		struct weft_stats a, b, c;
		STRESS_CHECK(weft_rt_stats(rt, &a, NULL, 0) == 0, "stats");
		uint64_t rss_before = stress_rss();
		STRESS_CHECK(weft_rt_trim(rt) == 0, "weft_rt_trim");
		STRESS_CHECK(weft_rt_stats(rt, &b, NULL, 0) == 0, "stats");
		uint64_t rss_after = stress_rss();
		/* every free stack outside the workers' caches (16 each) trimmed */
		STRESS_CHECK(b.stacks_free == 0 && b.stacks_cold + workers * 16 + 1 >= b.stacks,
		             "after weft_rt_trim: %" PRIu64 " of %" PRIu64 " stacks free with pages, "
		             "%" PRIu64 " cold", b.stacks_free, b.stacks, b.stacks_cold);
		STRESS_CHECK(b.records_cold + (workers * 128 + 1) * 256 >= b.records,
		             "after weft_rt_trim: %" PRIu64 " of %" PRIu64 " records trimmed",
		             b.records_cold, b.records);
		/* a second spike, a tenth the size, from the trimmed pools */
		struct round rd2 = { .n = count / 10 };
		STRESS_CHECK(weft_rt_run(rt, round_main, &rd2, NULL) == 0, "weft_rt_run");
		STRESS_CHECK(weft_rt_stats(rt, &c, NULL, 0) == 0, "stats");
		STRESS_CHECK(c.stacks == a.stacks && c.records == a.records,
		             "the second spike mapped more: stacks %" PRIu64 " -> %" PRIu64
		             ", records %" PRIu64 " -> %" PRIu64, a.stacks, c.stacks, a.records,
		             c.records);
		STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
		park_s = rd.park_s;
		per = rd.rss_parked > rd.rss0 ? (double)(rd.rss_parked - rd.rss0) / (double)count : 0;
		trimmed_mib = rss_before > rss_after ? (double)(rss_before - rss_after) / 1048576.0 : 0;
		printf("  park round %lu: %lu parked in %.2f s, %.0f B RSS each; weft_rt_trim gave "
		       "back %.0f MiB\n", rounds, count, park_s, per, trimmed_mib);
		rounds++;
		stress_tick();
	} while (!stress_expired() && rounds < 100);
	free(tasks);
	stress_pass("workers=%u coroutines=%lu rounds=%lu park=%.2fs rss_per=%.0fB trimmed=%.0fMiB",
	            workers, count, rounds, park_s, per, trimmed_mib);
	return 0;
}
