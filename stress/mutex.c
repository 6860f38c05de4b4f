/*
 * 1,000 coroutines (--count) on one weft mutex, each taking it many times and
 * yielding (or sleeping briefly) inside the critical section, so holders
 * migrate between workers while they hold it. Checked continuously: nobody
 * else is inside (an occupancy flag set and cleared by the holder), and the
 * plain (non-atomic) counter it protects ends exact.
 */
#include "common.h"
#include "weft.h"

#include <stdio.h>
#include <stdlib.h>

static weft_mutex mu;
static unsigned long counter;        /* protected by mu, deliberately plain */
static _Atomic int inside;           /* occupancy check; relaxed is enough: the
                                      * mutex orders the holders, this only
                                      * detects a second holder */
static unsigned long iters;

static void *worker(void *arg)
{
	uint64_t rng = stress_seed_for((uintptr_t)arg);
	for (unsigned long i = 0; i < iters; i++) {
		int r = weft_mutex_lock(&mu);
		STRESS_CHECK(r == 0, "lock: %s", weft_strerror(r));
		int was = atomic_exchange_explicit(&inside, 1, memory_order_relaxed);
		STRESS_CHECK(was == 0, "two holders of the mutex at once");
		int w0 = weft_worker_id();
		unsigned long c = counter;
		uint64_t x = stress_rand(&rng);
		if ((x & 3) == 0)
			weft_yield();
		else if ((x & 63) == 1)
			weft_sleep(x % 5000);
		counter = c + 1;
		(void)w0;
		atomic_store_explicit(&inside, 0, memory_order_relaxed);
		r = weft_mutex_unlock(&mu);
		STRESS_CHECK(r == 0, "unlock: %s", weft_strerror(r));
		stress_tick();
		if ((x & 7) == 2)
			weft_yield();
	}
	return NULL;
}

static void *run(void *arg)
{
	unsigned long n = (uintptr_t)arg;
	weft_task **t = calloc(n, sizeof *t);
	STRESS_CHECK(t, "out of memory");
	for (unsigned long i = 0; i < n; i++) {
		int r = weft_spawn(&t[i], worker, (void *)(uintptr_t)(i + 1));
		STRESS_CHECK(r == 0, "spawn: %s", weft_strerror(r));
	}
	for (unsigned long i = 0; i < n; i++)
		STRESS_CHECK(weft_join(t[i], NULL) == 0, "join");
	free(t);
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("mutex", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	unsigned long n = stress.count ? stress.count : 1000;
	stress_watchdog_start();
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	unsigned long rounds = 0, total = 0;
	iters = 200;
	do {
		counter = 0;
		r = weft_rt_run(rt, run, (void *)(uintptr_t)n, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		STRESS_CHECK(counter == n * iters, "round %lu: counter %lu, expected %lu (lost updates)",
		             rounds, counter, n * iters);
		total += counter;
		rounds++;
	} while (!stress_expired() && rounds < 10000);
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u coroutines=%lu rounds=%lu locks=%lu", workers, n, rounds, total);
	return 0;
}
