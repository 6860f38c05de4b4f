/*
 * Oversubscription: more workers than CPUs (default 4 x CPUs) plus one
 * plain thread per CPU spinning flat out (a CPU hog the runtime competes
 * with). Coroutines pass a token around a ring of channels and others yield
 * in a loop; the watchdog requires continuous progress (no worker may wait
 * on a preempted peer forever: a lost wake-up or a spin that depends on the
 * peer running shows up as a stall), and the token count must be exact.
 */
#include "common.h"
#include "weft.h"

#include <stdio.h>
#include <stdlib.h>

#define RING 64

static weft_chan *ring[RING];
static _Atomic int hog_stop;   /* relaxed: a stop flag, nothing published */
static unsigned long laps;

static void *hog(void *arg)
{
	volatile unsigned long x = 0;
	while (!atomic_load_explicit(&hog_stop, memory_order_relaxed))
		x++;
	return arg;
}

static void *hop(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	for (unsigned long l = 0; l < laps; l++) {
		unsigned long v;
		STRESS_CHECK(weft_chan_recv(ring[i], &v) == 0, "recv");
		STRESS_CHECK(v == l * RING + i, "token %lu at hop %u lap %lu", v, i, l);
		v++;
		stress_tick();
		if (i + 1 < RING || l + 1 < laps)
			STRESS_CHECK(weft_chan_send(ring[(i + 1) % RING], &v) == 0, "send");
	}
	return NULL;
}

static void *yielder(void *arg)
{
	/* until main cancels it; weft_sleep(0) yields and reports the cancel */
	while (weft_sleep(0) == 0)
		;
	return arg;
}

static void *round_main(void *arg)
{
	(void)arg;
	weft_task *t[RING], *y[8];
	for (unsigned i = 0; i < 8; i++)
		STRESS_CHECK(weft_spawn(&y[i], yielder, NULL) == 0, "spawn");
	for (unsigned i = 0; i < RING; i++)
		STRESS_CHECK(weft_spawn(&t[i], hop, (void *)(uintptr_t)i) == 0, "spawn");
	unsigned long v = 0;
	STRESS_CHECK(weft_chan_send(ring[0], &v) == 0, "send");
	for (unsigned i = 0; i < RING; i++)
		STRESS_CHECK(weft_join(t[i], NULL) == 0, "join");
	for (unsigned i = 0; i < 8; i++) {
		weft_cancel(y[i]);
		STRESS_CHECK(weft_join(y[i], NULL) == 0, "join");
	}
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("oversub", argc, argv);
	unsigned ncpu = stress_ncpu();
	unsigned workers = stress.workers ? stress.workers : 4 * ncpu;
	laps = stress.count ? stress.count : 2000;
	stress_watchdog_start();
	pthread_t hogs[64];
	unsigned nh = ncpu < 64 ? ncpu : 64;
	for (unsigned i = 0; i < nh; i++)
		pthread_create(&hogs[i], NULL, hog, NULL);
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	unsigned long rounds = 0;
	do {
		for (unsigned i = 0; i < RING; i++)
			STRESS_CHECK(weft_chan_create(&ring[i], sizeof(unsigned long), 0) == 0, "chan");
		r = weft_rt_run(rt, round_main, NULL, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		for (unsigned i = 0; i < RING; i++)
			weft_chan_destroy(ring[i]);
		rounds++;
	} while (!stress_expired() && rounds < 100000);
	atomic_store_explicit(&hog_stop, 1, memory_order_relaxed);
	for (unsigned i = 0; i < nh; i++)
		pthread_join(hogs[i], NULL);
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u hogs=%u rounds=%lu hops=%lu", workers, nh, rounds,
	            rounds * laps * RING);
	return 0;
}
