/*
 * Channel close with blocked senders and receivers across workers. Each
 * round: S senders and R receivers (coroutines, spread over the workers) on
 * one channel (capacity 0..4 from the seed); after a random delay a closer
 * closes it. Checked:
 *   - every send that returned 0 was received exactly once, or is still in
 *     the buffer drained after the close (no loss, no duplicate);
 *   - a send that returned -EPIPE delivered nothing;
 *   - after the close every blocked sender and receiver returns (-EPIPE),
 *     within the watchdog's patience (no hang).
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXV (1u << 20)

static weft_chan *ch;
static _Atomic uint8_t *sent_ok, *recvd;   /* per value; relaxed: counters */
static _Atomic unsigned long nsent, nrecv;
static unsigned S, R;

static void *sender(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	for (unsigned k = 0;; k++) {
		unsigned long v = (unsigned long)id * 4096 + k;
		if (k >= 4096)
			return NULL;
		int r = weft_chan_send(ch, &v);
		if (r == -EPIPE)
			return NULL;
		STRESS_CHECK(r == 0, "send: %s", weft_strerror(r));
		atomic_fetch_add_explicit(&sent_ok[v], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&nsent, 1, memory_order_relaxed);
	}
}

static void *receiver(void *arg)
{
	(void)arg;
	for (;;) {
		unsigned long v;
		int r = weft_chan_recv(ch, &v);
		if (r == -EPIPE)
			return NULL;
		STRESS_CHECK(r == 0, "recv: %s", weft_strerror(r));
		STRESS_CHECK(v < MAXV, "received a bogus value %lu", v);
		uint8_t prev = atomic_fetch_add_explicit(&recvd[v], 1, memory_order_relaxed);
		STRESS_CHECK(prev == 0, "value %lu received twice", v);
		atomic_fetch_add_explicit(&nrecv, 1, memory_order_relaxed);
		stress_tick();
	}
}

static void *round_main(void *arg)
{
	uint64_t *rng = arg;
	weft_task *t[512];
	unsigned n = 0;
	for (unsigned i = 0; i < S; i++)
		STRESS_CHECK(weft_spawn(&t[n++], sender, (void *)(uintptr_t)i) == 0, "spawn");
	for (unsigned i = 0; i < R; i++)
		STRESS_CHECK(weft_spawn(&t[n++], receiver, NULL) == 0, "spawn");
	weft_sleep(stress_rand(rng) % 2000000);    /* up to 2 ms */
	int r = weft_chan_close(ch);
	STRESS_CHECK(r == 0, "close: %s", weft_strerror(r));
	STRESS_CHECK(weft_chan_close(ch) == -EPIPE, "second close did not answer -EPIPE");
	for (unsigned i = 0; i < n; i++)
		STRESS_CHECK(weft_join(t[i], NULL) == 0, "join");
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("chanclose", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	stress_watchdog_start();
	sent_ok = calloc(MAXV, 1);
	recvd = calloc(MAXV, 1);
	STRESS_CHECK(sent_ok && recvd, "out of memory");
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	uint64_t rng = stress_seed_for(0);
	unsigned long rounds = 0, msgs = 0;
	do {
		S = 1 + (unsigned)(stress_rand(&rng) % 64);
		R = 1 + (unsigned)(stress_rand(&rng) % 64);
		size_t cap = stress_rand(&rng) % 5;
		STRESS_CHECK(weft_chan_create(&ch, sizeof(unsigned long), cap) == 0, "chan_create");
		atomic_store(&nsent, 0);
		atomic_store(&nrecv, 0);
		r = weft_rt_run(rt, round_main, &rng, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		/* Receivers drained the buffer before seeing -EPIPE: every value
		 * whose send succeeded must have been received exactly once. */
		for (unsigned i = 0; i < S; i++)
			for (unsigned k = 0; k < 4096; k++) {
				unsigned long v = (unsigned long)i * 4096 + k;
				uint8_t s = atomic_load_explicit(&sent_ok[v], memory_order_relaxed);
				uint8_t g = atomic_load_explicit(&recvd[v], memory_order_relaxed);
				STRESS_CHECK(s == g, "round %lu: value %lu sent %u times, received %u times",
				             rounds, v, s, g);
				atomic_store_explicit(&sent_ok[v], 0, memory_order_relaxed);
				atomic_store_explicit(&recvd[v], 0, memory_order_relaxed);
			}
		unsigned long v;
		STRESS_CHECK(weft_chan_try_recv(ch, &v) == -EPIPE, "closed channel not drained");
		weft_chan_destroy(ch);
		msgs += atomic_load(&nrecv);
		rounds++;
	} while (!stress_expired() && rounds < 100000);
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u rounds=%lu messages=%lu", workers, rounds, msgs);
	free((void *)sent_ok);
	free((void *)recvd);
	return 0;
}
