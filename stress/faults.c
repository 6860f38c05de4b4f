/*
 * Fault injection (a -Dfault_injection=true build, WEFT_FAULT=rate,seed):
 * runtimes are created, fork-join trees spawned, channels made and used,
 * timers armed, while allocations, stack mmaps/guards, task records and
 * timer registrations fail at random. Every failure must surface as a clean
 * error code (-ENOMEM or -EAGAIN; -EPERM/-ENOSYS only from io_uring setup),
 * nothing may hang (watchdog), the work that did start must finish with the
 * right result (the tree returns the number of leaves that really ran), and
 * nothing may leak (run under ASan: ./dev stress --fault --sanitizer asan).
 * In a normal build it runs the same code with no faults and must pass too.
 */
#include "common.h"
#include "debug_hooks.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>

static _Atomic unsigned long errors, leaves_run;   /* relaxed: counters */

static bool clean_error(int r)
{
	return r == -ENOMEM || r == -EAGAIN;
}

static void *node(void *arg)
{
	uintptr_t d = (uintptr_t)arg;
	if (d == 0) {
		/* a leaf sleeps briefly (timer registration can fail: then the
		 * sleep must report it, not hang or return early) */
		int r = weft_sleep(1000);
		STRESS_CHECK(r == 0 || clean_error(r), "sleep: %d (%s)", r, weft_strerror(r));
		if (r)
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&leaves_run, 1, memory_order_relaxed);
		stress_tick();
		return (void *)(uintptr_t)1;
	}
	weft_task *c[2];
	uintptr_t sum = 0;
	for (int i = 0; i < 2; i++) {
		int r = weft_spawn(&c[i], node, (void *)(d - 1));
		if (r) {
			STRESS_CHECK(clean_error(r), "spawn: %d (%s)", r, weft_strerror(r));
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed);
			c[i] = NULL;
		}
	}
	for (int i = 0; i < 2; i++) {
		void *v;
		if (c[i]) {
			STRESS_CHECK(weft_join(c[i], &v) == 0, "join");
			sum += (uintptr_t)v;
		}
	}
	return (void *)sum;
}

static void *chan_user(void *arg)
{
	(void)arg;
	weft_chan *ch;
	int r = weft_chan_create(&ch, sizeof(int), 2);
	if (r) {
		STRESS_CHECK(clean_error(r), "chan_create: %d", r);
		atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed);
		return NULL;
	}
	for (int i = 0; i < 100; i++) {
		int x = i, y = -1;
		STRESS_CHECK(weft_chan_send(ch, &x) == 0 && weft_chan_recv(ch, &y) == 0 && y == i,
		             "channel round trip");
	}
	weft_chan_destroy(ch);
	return NULL;
}

static void *round_main(void *arg)
{
	uintptr_t depth = (uintptr_t)arg;
	weft_task *t;
	int r = weft_spawn(&t, chan_user, NULL);
	if (r == 0)
		STRESS_CHECK(weft_join(t, NULL) == 0, "join");
	else
		STRESS_CHECK(clean_error(r), "spawn: %d", r);
	return node((void *)depth);
}

int main(int argc, char **argv)
{
	stress_init("faults", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	unsigned depth = 12;
	stress_watchdog_start();
	unsigned long rounds = 0, rt_fail = 0;
	do {
		weft_rt *rt;
		int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
		if (r) {
			STRESS_CHECK(clean_error(r), "weft_rt_create: %d (%s)", r, weft_strerror(r));
			rt_fail++;
			rounds++;
			continue;
		}
		atomic_store(&leaves_run, 0);
		void *res = NULL;
		r = weft_rt_run(rt, round_main, (void *)(uintptr_t)depth, &res);
		if (r == 0)
			STRESS_CHECK((uintptr_t)res == atomic_load(&leaves_run),
			             "tree returned %lu but %lu leaves ran", (unsigned long)(uintptr_t)res,
			             atomic_load(&leaves_run));
		else
			STRESS_CHECK(clean_error(r), "weft_rt_run: %d (%s)", r, weft_strerror(r));
		STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
		rounds++;
		stress_tick();
	} while (!stress_expired() && rounds < 100000);
	unsigned long injected = 0;
#if defined(WEFT_FAULT_INJECTION)
	/* A fault run that injected nothing checked no error path: say so. */
	injected = weft__fault_injected();
	STRESS_CHECK(!weft__fault_enabled() || injected > 0,
	             "WEFT_FAULT sets a rate but no fault was injected in %lu rounds", rounds);
#endif
	stress_pass("workers=%u rounds=%lu injected=%lu clean errors=%lu failed creates=%lu", workers,
	            rounds, injected, atomic_load(&errors), rt_fail);
	return 0;
}
