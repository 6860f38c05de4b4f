/*
 * Cancellation storm: coroutines blocked in sleep, join, channel recv/send
 * and mutex lock are cancelled at random delays (0..200 us after they were
 * spawned, from another coroutine, possibly on another worker). Checked:
 *   - each blocking call returns 0 or -ECANCELED and nothing else;
 *   - a call that returned -ECANCELED took nothing: a cancelled recv left
 *     its value in the channel (all values are accounted for at the end),
 *     a cancelled mutex lock does not hold the mutex (the mutex is free at
 *     the end of the round: trylock succeeds);
 *   - every victim finishes (join of all of them returns; the watchdog
 *     catches a hang).
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define NV 256

enum kind { K_SLEEP, K_JOIN, K_RECV, K_SEND, K_MUTEX, K_NKIND };

static weft_chan *rch, *sch;      /* recv victims read rch (never fed), send victims fill sch */
static weft_mutex mu;
static _Atomic unsigned long got, sent; /* relaxed: totals, read after the joins */
static unsigned long stats[K_NKIND][2];

struct victim { enum kind k; int r; weft_task *t; };

static void *sleep_forever(void *arg)
{
	(void)arg;
	int r = weft_sleep(3600000000000ull);
	STRESS_CHECK(r == -ECANCELED, "blocker sleep: %d", r);
	return NULL;
}

static void *victim(void *arg)
{
	struct victim *v = arg;
	unsigned long x = 7;
	switch (v->k) {
	case K_SLEEP: v->r = weft_sleep(3600000000000ull); break;
	case K_JOIN: {
		/* join a private sleeper: joining the same task from two
		 * coroutines is not allowed */
		weft_task *s;
		STRESS_CHECK(weft_spawn(&s, sleep_forever, NULL) == 0, "spawn");
		v->r = weft_join(s, NULL);
		if (v->r == -ECANCELED) {
			/* s stays joinable; our own cancel is sticky (a second join
			 * would fail too), so stop s and let main join it */
			weft_cancel(s);
			v->t = s;
		}
		break;
	}
	case K_RECV:
		v->r = weft_chan_recv(rch, &x);
		if (v->r == 0)
			atomic_fetch_add_explicit(&got, 1, memory_order_relaxed);
		break;
	case K_SEND:
		v->r = weft_chan_send(sch, &x);
		if (v->r == 0)
			atomic_fetch_add_explicit(&sent, 1, memory_order_relaxed);
		break;
	case K_MUTEX:
		v->r = weft_mutex_lock(&mu);
		if (v->r == 0)
			weft_mutex_unlock(&mu);
		break;
	default: break;
	}
	STRESS_CHECK(v->r == 0 || v->r == -ECANCELED, "kind %d returned %d (%s)", v->k, v->r,
	             weft_strerror(v->r));
	stress_tick();
	return NULL;
}

struct canceller { weft_task *t; uint64_t delay; };

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;
	if (c->delay)
		weft_sleep(c->delay);
	else
		weft_yield();
	weft_cancel(c->t);
	return NULL;
}

static void *round_main(void *arg)
{
	uint64_t *rng = arg;
	static struct victim v[NV];
	static struct canceller c[NV];
	weft_task *ct[NV];
	/* hold the mutex for part of the round so mutex victims block */
	STRESS_CHECK(weft_mutex_lock(&mu) == 0, "lock");
	for (unsigned i = 0; i < NV; i++) {
		v[i] = (struct victim){ .k = (enum kind)(stress_rand(rng) % K_NKIND) };
		weft_task *t;
		STRESS_CHECK(weft_spawn(&t, victim, &v[i]) == 0, "spawn");
		c[i] = (struct canceller){ t, stress_rand(rng) % 200000 };
		if ((stress_rand(rng) & 7) == 0)
			c[i].delay = 0;
		STRESS_CHECK(weft_spawn(&ct[i], cancel_later, &c[i]) == 0, "spawn");
	}
	weft_sleep(stress_rand(rng) % 300000);
	weft_mutex_unlock(&mu);
	for (unsigned i = 0; i < NV; i++) {
		STRESS_CHECK(weft_join(ct[i], NULL) == 0, "join canceller");
		STRESS_CHECK(weft_join(c[i].t, NULL) == 0, "join victim %u (kind %d)", i, v[i].k);
		if (v[i].t)
			STRESS_CHECK(weft_join(v[i].t, NULL) == 0, "join sleeper");
		stats[v[i].k][v[i].r == 0]++;
	}
	STRESS_CHECK(weft_mutex_trylock(&mu) == 0, "mutex still held after the round "
	             "(a cancelled lock kept it?)");
	weft_mutex_unlock(&mu);
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("cancel", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	stress_watchdog_start();
	weft_rt *rt;
	int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
	STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
	uint64_t rng = stress_seed_for(0);
	unsigned long rounds = 0;
	do {
		STRESS_CHECK(weft_chan_create(&rch, sizeof(unsigned long), 0) == 0 &&
		             weft_chan_create(&sch, sizeof(unsigned long), 4) == 0, "chan_create");
		atomic_store(&got, 0);
		atomic_store(&sent, 0);
		r = weft_rt_run(rt, round_main, &rng, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		STRESS_CHECK(atomic_load(&got) == 0, "a recv on a channel nobody feeds returned a value");
		STRESS_CHECK(weft_chan_len(sch) == atomic_load(&sent),
		             "send victims: %lu sends returned 0 but %zu values are buffered",
		             atomic_load(&sent), weft_chan_len(sch));
		weft_chan_destroy(rch);
		weft_chan_destroy(sch);
		rounds++;
	} while (!stress_expired() && rounds < 100000);
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	stress_pass("workers=%u rounds=%lu sleep %lu/%lu join %lu/%lu recv %lu/%lu send %lu/%lu "
	            "mutex %lu/%lu (cancelled/completed)", workers, rounds,
	            stats[0][0], stats[0][1], stats[1][0], stats[1][1], stats[2][0], stats[2][1],
	            stats[3][0], stats[3][1], stats[4][0], stats[4][1]);
	return 0;
}
