/*
 * park1m: a million coroutines alive at once, the shape of a server with a
 * million connections, each a coroutine parked in a read (issue #22).
 *
 *   park1m   s, all workers: the main coroutine spawns 1,000,000 detached
 *            coroutines; each counts itself in and waits on one semaphore.
 *            The figure is the time from the first spawn until all of them
 *            have counted themselves in (every one has reached its wait).
 *            Then the main coroutine posts 1,000,000 permits, each woken
 *            coroutine checks the value it was spawned with and counts down
 *            a wait group, and the main coroutine waits for it.
 *   park1m.rss   B per parked coroutine: (RSS with all of them parked - RSS
 *            before the first spawn) / 1,000,000.
 *   park1m.back  s: from the last coroutine's return until the process's
 *            RSS is back within 256 MiB of what it was before the first
 *            spawn, with the runtime still running (its own policy gives the
 *            memory back; nothing here asks it to). RSS is read every 10 ms,
 *            for at most 20 s: a runtime that does not get there prints no
 *            park1m.back line and says so on stderr.
 *
 * The Go peer (bench/peers/go/main.go, benchPark1m) does the same with
 * goroutines, a channel as the semaphore and a sync.WaitGroup.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "weft_bench.h"

#define PARK_COUNT     1000000u
#define PARK_BACK_MIB  256u
#define PARK_BACK_MAX_NS (20ull * 1000000000u)
#define PARK_POLL_NS   10000000u

static uint64_t park_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

struct park {
	weft_sem sem;
	weft_wg done;
	_Atomic uint64_t arrived;   /* children that reached their wait      */
	_Atomic uint64_t bad;       /* children that saw a wrong value/error */
	uint64_t rss0, rss_parked;
	uint64_t t0, t_parked, t_done, t_back;
	int back_ok;
};

static struct park pk;

static void *park_child(void *arg)
{
	uintptr_t i = (uintptr_t)arg;
	/* relaxed: a count the main coroutine polls; nothing else hangs on it */
	atomic_fetch_add_explicit(&pk.arrived, 1, memory_order_relaxed);
	int err = weft_sem_wait(&pk.sem);
	/* the argument survived the park: it lives on this coroutine's stack
	 * (a register saved across the switch) */
	if (err < 0 || i >= PARK_COUNT)
		atomic_fetch_add_explicit(&pk.bad, 1, memory_order_relaxed);
	weft_wg_done(&pk.done);
	return NULL;
}

static int park_main_body(void)
{
	pk.rss0 = park_rss();
	pk.t0 = weft_now();
	for (uintptr_t i = 0; i < PARK_COUNT; i++) {
		int err = weft_spawn(NULL, park_child, (void *)i);
		if (err < 0)
			return bench_fail("park1m", "weft_spawn %" PRIuPTR ": %s", i, weft_strerror(err));
	}
	/* Bounded: every child reaches its wait without waiting for anything
	 * else; bench/run's timeout bounds the whole process. */
	while (atomic_load_explicit(&pk.arrived, memory_order_relaxed) < PARK_COUNT)
		weft_sleep(100000);
	pk.t_parked = weft_now();
	pk.rss_parked = park_rss();
	for (unsigned i = 0; i < PARK_COUNT; i++) {
		int err = weft_sem_post(&pk.sem);
		if (err < 0)
			return bench_fail("park1m", "weft_sem_post: %s", weft_strerror(err));
	}
	int err = weft_wg_wait(&pk.done);
	if (err < 0)
		return bench_fail("park1m", "weft_wg_wait: %s", weft_strerror(err));
	pk.t_done = weft_now();
	uint64_t limit = pk.rss0 + (uint64_t)PARK_BACK_MIB * 1024 * 1024;
	/* Bounded by PARK_BACK_MAX_NS. */
	for (;;) {
		uint64_t now = weft_now();
		if (park_rss() <= limit) {
			pk.t_back = now;
			pk.back_ok = 1;
			break;
		}
		if (now - pk.t_done > PARK_BACK_MAX_NS)
			break;
		weft_sleep(PARK_POLL_NS);
	}
	return 0;
}

static void *park_main(void *arg)
{
	*(int *)arg = park_main_body();
	return NULL;
}

int bench_park1m(unsigned workers, double *value)
{
	weft_sem_init(&pk.sem, 0);
	weft_wg_init(&pk.done);
	if (weft_wg_add(&pk.done, PARK_COUNT) < 0)
		return bench_fail("park1m", "weft_wg_add");
	int rc = 1;
	if (bench_rt_run(workers, park_main, &rc) || rc)
		return 1;
	if (atomic_load(&pk.bad))
		return bench_fail("park1m", "%" PRIu64 " coroutines woke wrongly", atomic_load(&pk.bad));
	*value = (double)(pk.t_parked - pk.t0) / 1e9;
	double per = pk.rss_parked > pk.rss0 ? (double)(pk.rss_parked - pk.rss0) / PARK_COUNT : 0;
	/* the extra figures of this benchmark, after its own line (weft_bench.c
	 * prints that one when we return) */
	bench_extra("park1m.rss", per, "B");
	if (pk.back_ok)
		bench_extra("park1m.back", (double)(pk.t_back - pk.t_done) / 1e9, "s");
	else
		fprintf(stderr, "weft-bench park1m: RSS not back within %u MiB of the start "
		        "%.0f s after the spike\n", PARK_BACK_MIB, PARK_BACK_MAX_NS / 1e9);
	return 0;
}
