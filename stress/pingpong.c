/*
 * Ping-pong: two coroutines bounce a counter through two channels while
 * every other worker has nothing to do (so they park, and each hand-off may
 * have to wake one). A lost wake-up shows up as a hang: the watchdog fails
 * the run when the counter stops moving. Values are checked in order.
 *
 * Each round picks, from the seed, the channel capacity (0: rendezvous, or
 * 1) and whether one side sleeps a few microseconds now and then, so the
 * other side parks and its worker may go idle between messages.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>

struct pp {
	weft_chan *ab, *ba;
	unsigned long n;
	uint64_t rng;
	int sleepy;          /* 0: none, 1: pinger sleeps, 2: ponger sleeps */
};

static void *ponger(void *arg)
{
	struct pp *p = arg;
	uint64_t rng = p->rng ^ 0x55;
	for (unsigned long i = 0; i < p->n; i++) {
		unsigned long v;
		int r = weft_chan_recv(p->ab, &v);
		STRESS_CHECK(r == 0, "pong recv: %s", weft_strerror(r));
		STRESS_CHECK(v == 2 * i, "pong got %lu, expected %lu", v, 2 * i);
		if (p->sleepy == 2 && (stress_rand(&rng) & 15) == 0)
			weft_sleep(stress_rand(&rng) % 20000);
		v++;
		r = weft_chan_send(p->ba, &v);
		STRESS_CHECK(r == 0, "pong send: %s", weft_strerror(r));
	}
	return NULL;
}

static void *round_main(void *arg)
{
	struct pp *p = arg;
	weft_task *t;
	int r = weft_spawn(&t, ponger, p);
	STRESS_CHECK(r == 0, "spawn: %s", weft_strerror(r));
	uint64_t rng = p->rng;
	for (unsigned long i = 0; i < p->n; i++) {
		unsigned long v = 2 * i;
		r = weft_chan_send(p->ab, &v);
		STRESS_CHECK(r == 0, "ping send: %s", weft_strerror(r));
		if (p->sleepy == 1 && (stress_rand(&rng) & 15) == 0)
			weft_sleep(stress_rand(&rng) % 20000);
		r = weft_chan_recv(p->ba, &v);
		STRESS_CHECK(r == 0, "ping recv: %s", weft_strerror(r));
		STRESS_CHECK(v == 2 * i + 1, "ping got %lu, expected %lu", v, 2 * i + 1);
		stress_tick();
	}
	r = weft_join(t, NULL);
	STRESS_CHECK(r == 0, "join: %s", weft_strerror(r));
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("pingpong", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	unsigned long n = stress.count ? stress.count : 20000;
	stress.stall = stress.stall < 60 ? stress.stall : 60;
	stress_watchdog_start();
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	uint64_t rng = stress_seed_for(0);
	unsigned long rounds = 0, msgs = 0;
	do {
		struct pp p = { .n = n, .rng = stress_rand(&rng) };
		size_t cap = stress_rand(&rng) & 1;
		p.sleepy = (int)(stress_rand(&rng) % 3);
		STRESS_CHECK(weft_chan_create(&p.ab, sizeof(unsigned long), cap) == 0 &&
		             weft_chan_create(&p.ba, sizeof(unsigned long), cap) == 0, "chan_create");
		r = weft_rt_run(rt, round_main, &p, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		weft_chan_destroy(p.ab);
		weft_chan_destroy(p.ba);
		rounds++;
		msgs += 2 * n;
	} while (!stress_expired() && rounds < 100000);
	r = weft_rt_destroy(rt);
	STRESS_CHECK(r == 0, "weft_rt_destroy: %s", weft_strerror(r));
	stress_pass("workers=%u rounds=%lu messages=%lu", workers, rounds, msgs);
	return 0;
}
