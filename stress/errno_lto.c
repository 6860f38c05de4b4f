/*
 * errno and worker identity after 1,000,000 yields (--count), in a build
 * with -O2 -fPIC -flto where weft itself is compiled into this program (see
 * stress/meson.build), so LTO may inline weft's thread-local accesses into
 * the loop below. Coroutines (4 per worker) yield in a loop and migrate;
 * after every yield:
 *   - &errno and pthread_self() read right here must equal those an
 *     out-of-line call (errno_truth.c) returns: the current thread's;
 *   - weft_worker_id() must name that thread: a table maps worker id to
 *     the thread first seen running as it;
 *   - weft_self() is still the same coroutine.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void stress_truth(int **errno_addr, pthread_t *self);

#define MAXW 256
static _Atomic(pthread_t) worker_thread[MAXW];   /* 0: not seen yet */
static unsigned long per_co;
static _Atomic unsigned long migrations;

static void *spinner(void *arg)
{
	weft_task *me = weft_self();
	int last = -1;
	unsigned long moved = 0;
	for (unsigned long i = 0; i < per_co; i++) {
		/* mostly yields; a short sleep now and then wakes up wherever the
		 * timer fires and moves the coroutines around more */
		if ((i & 255) == 255)
			weft_sleep(1000);
		else
			weft_yield();
		int *e = &errno;
		pthread_t s = pthread_self();
		int w = weft_worker_id();
		int *te;
		pthread_t ts;
		stress_truth(&te, &ts);
		STRESS_CHECK(e == te, "yield %lu: &errno %p is not this thread's %p (stale TLS address)",
		             i, (void *)e, (void *)te);
		STRESS_CHECK(pthread_equal(s, ts), "yield %lu: pthread_self() is another thread's", i);
		STRESS_CHECK(w >= 0 && w < MAXW, "yield %lu: weft_worker_id() = %d", i, w);
		pthread_t zero = 0;
		if (!atomic_compare_exchange_strong(&worker_thread[w], &zero, ts))
			STRESS_CHECK(pthread_equal(zero, ts),
			             "yield %lu: weft_worker_id() = %d but this is not worker %d's thread",
			             i, w, w);
		STRESS_CHECK(weft_self() == me, "yield %lu: weft_self() changed", i);
		errno = (int)i;    /* written through the current thread's errno */
		if (w != last && last >= 0)
			moved++;
		last = w;
		if ((i & 1023) == 0)
			stress_tick();
		if ((i & 4095) == 0 && stress_expired())
			break;
	}
	atomic_fetch_add(&migrations, moved);
	(void)arg;
	return NULL;
}

static void *run(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	weft_task *t[4 * MAXW];
	for (unsigned i = 0; i < n; i++)
		STRESS_CHECK(weft_spawn(&t[i], spinner, NULL) == 0, "spawn");
	for (unsigned i = 0; i < n; i++)
		STRESS_CHECK(weft_join(t[i], NULL) == 0, "join");
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("errno_lto", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	if (workers > MAXW)
		workers = MAXW;
	unsigned long total = stress.count ? stress.count : 1000000;
	/* fewer coroutines than 2 per worker: idle workers keep stealing, so
	 * coroutines migrate often */
	unsigned nco = workers + workers / 2 + 1;
	per_co = (total + nco - 1) / nco;
	stress_watchdog_start();
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	r = weft_rt_run(rt, run, (void *)(uintptr_t)nco, NULL);
	STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u yields=%lu migrations=%lu", workers, per_co * nco,
	            atomic_load(&migrations));
	return 0;
}
