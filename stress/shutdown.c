/*
 * Shutdown with 100,000 coroutines (--count) still blocked: a third in
 * channel receives, a third in channel sends (full buffer), a third in long
 * sleeps, spawned detached and joinable from weft_rt_run's main, which then
 * returns and leaves them all blocked. weft_rt_destroy must return (the
 * watchdog catches a hang) and free everything: run under ASan's leak
 * checker (./dev stress --sanitizer asan) to see that nothing leaked.
 * Then the channels are destroyed (nobody can be blocked on them any more).
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>

static weft_chan *rch, *sch;
static _Atomic unsigned long unblocked_badly;   /* relaxed: a count read after destroy */

static void *blocked(void *arg)
{
	unsigned long k = (uintptr_t)arg % 3, x = 1;
	int r = k == 0 ? weft_chan_recv(rch, &x)
	      : k == 1 ? weft_chan_send(sch, &x)
	      : weft_sleep(3600000000000ull);
	if (r != -ECANCELED)
		atomic_fetch_add_explicit(&unblocked_badly, 1, memory_order_relaxed);
	stress_tick();
	return NULL;
}

static void *spawner(void *arg)
{
	unsigned long n = (uintptr_t)arg;
	for (unsigned long i = 0; i < n; i++) {
		weft_task *t;
		/* every fourth joinable: its handle is simply dropped (destroy
		 * makes it invalid), the rest detached */
		int r = weft_spawn((i & 3) ? NULL : &t, blocked, (void *)(uintptr_t)i);
		STRESS_CHECK(r == 0, "spawn %lu: %s", i, weft_strerror(r));
		if ((i & 1023) == 0)
			stress_tick();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("shutdown", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
#if defined(WEFT_TSAN)
	/* TSan maps a shadow stack and trace parts per fiber: 100,000 live
	 * coroutines ran it out of mappings (vm.max_map_count) in the soak,
	 * "ThreadSanitizer failed to allocate ... (error code: 12)". */
	unsigned long n = stress.count ? stress.count : 20000;
#else
	unsigned long n = stress.count ? stress.count : 100000;
#endif
	stress_watchdog_start();
	unsigned long rounds = 0;
	do {
		STRESS_CHECK(weft_chan_create(&rch, sizeof(unsigned long), 0) == 0 &&
		             weft_chan_create(&sch, sizeof(unsigned long), 0) == 0, "chan_create");
		weft_rt *rt;
		int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
		STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
		r = weft_rt_run(rt, spawner, (void *)(uintptr_t)n, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		uint64_t t0 = stress_now();
		r = weft_rt_destroy(rt);
		STRESS_CHECK(r == 0, "weft_rt_destroy: %s", weft_strerror(r));
		stress_tick();
		printf("  shutdown round %lu: %lu blocked coroutines destroyed in %.1f ms\n", rounds, n,
		       (double)(stress_now() - t0) / 1e6);
		weft_chan_destroy(rch);
		weft_chan_destroy(sch);
		rounds++;
	} while (!stress_expired() && rounds < 1000);
	/* Blocked calls can only end by destroy's cancel; the recv/send ones must
	 * see -ECANCELED, never a value or -EPIPE. */
	STRESS_CHECK(atomic_load(&unblocked_badly) == 0,
	             "%lu blocked calls ended with something other than -ECANCELED",
	             atomic_load(&unblocked_badly));
	stress_pass("workers=%u coroutines=%lu rounds=%lu", workers, n, rounds);
	return 0;
}
