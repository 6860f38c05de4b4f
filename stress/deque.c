/*
 * Deque stampede: one owner and W-1 thieves on the run queues of
 * src/sched/runq.h directly (no runtime). Every item must be taken exactly
 * once: by the owner's pop, by the owner's overflow batch, or by a thief
 * (the item its steal returns plus the ones moved into its own queue, which
 * it pops as their owner while the other thieves steal from it).
 *
 * Checked continuously: an item taken twice fails at once (per-item counter);
 * a steal that returns an item from a victim whose items were all taken
 * would show up the same way. At the end of each round: every item taken
 * exactly once (no loss). Run it also from a -Dsmall_queues=true build
 * (capacity 4), where overflow and steal paths run all the time.
 *
 * Never-spuriously-empty probes, after each stampede round: the owner
 * pushes (never past capacity, so its overflow never consumes) while one
 * thief steals, so the thief is the only consumer. Then a steal that comes
 * back empty although the thief saw items before it is a spurious empty
 * (a lost CAS race with nobody to lose it to, a stale index): it fails at
 * once. The same for the spawn deque (src/sched/spawnq.h, Chase-Lev): the
 * owner pushes, never takes, and one thief steals.
 */
#include "common.h"
#include "sched/runq.h"
#include "sched/spawnq.h"

#include <stdio.h>
#include <stdlib.h>

#define MAXT 64

static struct weft__runq *queues;          /* [0]: the owner's */
static _Atomic uint8_t *taken;             /* per item */
static unsigned long nitems;
static unsigned nthreads;
static pthread_barrier_t start, done;
/* owner_done: release by the owner after its last push, acquire by thieves
 * before their final drain, so they see every push. */
static _Atomic int owner_done;

static struct weft_task *enc(unsigned long i) { return (struct weft_task *)(uintptr_t)((i + 1) << 4); }

static void take(struct weft_task *t, const char *how)
{
	uintptr_t v = (uintptr_t)t;
	STRESS_CHECK(v && !(v & 15) && (v >> 4) - 1 < nitems, "%s returned a bogus item %p", how, (void *)t);
	unsigned long i = (v >> 4) - 1;
	/* relaxed: the counter itself is the check, not a publication */
	uint8_t prev = atomic_fetch_add_explicit(&taken[i], 1, memory_order_relaxed);
	STRESS_CHECK(prev == 0, "item %lu taken twice (second time by %s)", i, how);
	stress_tick();
}

static void *owner(void *arg)
{
	uint64_t rng = stress_seed_for(0);
	struct weft__runq *q = &queues[0];
	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	pthread_barrier_wait(&start);
	for (unsigned long i = 0; i < nitems; i++) {
		unsigned n = weft__runq_push(q, enc(i), batch);
		for (unsigned k = 0; k < n; k++)
			take(batch[k], "owner overflow batch");
		uint64_t r = stress_rand(&rng);
		if ((r & 7) == 0) {               /* pop a few now and then */
			for (unsigned k = (unsigned)(r >> 8) & 3; k; k--) {
				struct weft_task *t = weft__runq_pop(q);
				if (t)
					take(t, "owner pop");
			}
		}
	}
	atomic_store_explicit(&owner_done, 1, memory_order_release); /* pairs with thieves' acquire */
	struct weft_task *t;
	while ((t = weft__runq_pop(q)))
		take(t, "owner final pop");
	pthread_barrier_wait(&done);
	return arg;
}

static void *thief(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	uint64_t rng = stress_seed_for(me);
	struct weft__runq *mine = &queues[me];
	pthread_barrier_wait(&start);
	for (;;) {
		/* drain what we own first: steal needs an empty destination */
		struct weft_task *t;
		while ((t = weft__runq_pop(mine)))
			take(t, "thief pop of its own queue");
		bool fin = atomic_load_explicit(&owner_done, memory_order_acquire);
		unsigned v = (unsigned)(stress_rand(&rng) % nthreads);
		if (v == me)
			v = 0;
		t = weft__runq_steal(&queues[v], mine);
		if (t) {
			take(t, "steal");
			continue;
		}
		/* Done when the owner has finished and every queue looks empty. */
		if (fin) {
			bool empty = true;
			for (unsigned k = 0; k < nthreads; k++)
				if (k != me && weft__runq_len(&queues[k]))
					empty = false;
			if (empty && !weft__runq_len(mine))
				break;
		}
	}
	pthread_barrier_wait(&done);
	return NULL;
}

/* ------------------------------------------------ spurious-empty probes -- */

static struct weft__runq probe_q, probe_dst;
static struct weft__spawnq probe_sq;
static _Atomic unsigned long probe_pushed;   /* items published by the owner */
static unsigned long probe_n;

static void *probe_owner(void *arg)
{
	bool spawnq = arg != NULL;
	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	pthread_barrier_wait(&start);
	for (unsigned long i = 0; i < probe_n; i++) {
		if (spawnq) {
			while (weft__spawnq_push(&probe_sq, enc(i)) < 0)   /* full: wait */
				sched_yield();
		} else {
			/* Below capacity the push never overflows, so the thief stays
			 * the only consumer (it only shrinks the queue meanwhile). */
			while (weft__runq_len(&probe_q) >= WEFT__RUNQ_CAP)
				sched_yield();
			unsigned n = weft__runq_push(&probe_q, enc(i), batch);
			STRESS_CHECK(n == 0, "probe: a push below capacity overflowed %u items", n);
		}
		/* release: the thief's acquire sees the push done */
		atomic_store_explicit(&probe_pushed, i + 1, memory_order_release);
	}
	pthread_barrier_wait(&done);
	return NULL;
}

static void *probe_thief(void *arg)
{
	bool spawnq = arg != NULL;
	unsigned long got = 0;
	pthread_barrier_wait(&start);
	while (got < probe_n) {
		unsigned long pushed = atomic_load_explicit(&probe_pushed, memory_order_acquire);
		struct weft_task *t;
		if (spawnq) {
			t = weft__spawnq_steal(&probe_sq);
		} else {
			t = weft__runq_steal(&probe_q, &probe_dst);
			if (t) {                    /* the rest of the half it moved */
				struct weft_task *x;
				while ((x = weft__runq_pop(&probe_dst))) {
					take(x, "probe steal batch");
					got++;
				}
			}
		}
		if (t) {
			take(t, spawnq ? "probe spawnq steal" : "probe steal");
			got++;
			continue;
		}
		/* Empty is only right if everything published was taken. */
		STRESS_CHECK(pushed <= got, "%s came back empty with %lu of %lu published items "
		             "not yet taken and no other consumer: spurious empty",
		             spawnq ? "spawnq steal" : "runq steal", pushed - got, pushed);
	}
	pthread_barrier_wait(&done);
	return NULL;
}

static void probe_round(bool spawnq)
{
	weft__runq_init(&probe_q);
	weft__runq_init(&probe_dst);
	weft__spawnq_init(&probe_sq);
	probe_n = nitems < 20000 ? nitems : 20000;
	for (unsigned long i = 0; i < probe_n; i++)
		atomic_store_explicit(&taken[i], 0, memory_order_relaxed);
	atomic_store_explicit(&probe_pushed, 0, memory_order_relaxed);
	pthread_barrier_init(&start, NULL, 2);
	pthread_barrier_init(&done, NULL, 2);
	pthread_t a, b;
	pthread_create(&a, NULL, probe_owner, spawnq ? (void *)1 : NULL);
	pthread_create(&b, NULL, probe_thief, spawnq ? (void *)1 : NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&done);
	for (unsigned long i = 0; i < probe_n; i++)
		STRESS_CHECK(atomic_load_explicit(&taken[i], memory_order_relaxed) == 1,
		             "probe: item %lu taken %u times", i,
		             atomic_load_explicit(&taken[i], memory_order_relaxed));
}

int main(int argc, char **argv)
{
	stress_init("deque", argc, argv);
	nthreads = stress.workers ? stress.workers : 4;
	if (nthreads < 2)
		nthreads = 2;
	if (nthreads > MAXT)
		nthreads = MAXT;
	nitems = stress.count ? stress.count : 200000;
	unsigned long rounds_max = 1000000;
	queues = aligned_alloc(64, nthreads * sizeof *queues);
	taken = calloc(nitems, 1);
	STRESS_CHECK(queues && taken, "out of memory");
	stress_watchdog_start();
	unsigned long rounds = 0;
	do {
		for (unsigned k = 0; k < nthreads; k++)
			weft__runq_init(&queues[k]);
		for (unsigned long i = 0; i < nitems; i++)
			atomic_store_explicit(&taken[i], 0, memory_order_relaxed);
		atomic_store_explicit(&owner_done, 0, memory_order_relaxed);
		pthread_barrier_init(&start, NULL, nthreads);
		pthread_barrier_init(&done, NULL, nthreads);
		pthread_t th[MAXT];
		pthread_create(&th[0], NULL, owner, NULL);
		for (unsigned k = 1; k < nthreads; k++)
			pthread_create(&th[k], NULL, thief, (void *)(uintptr_t)k);
		for (unsigned k = 0; k < nthreads; k++)
			pthread_join(th[k], NULL);
		pthread_barrier_destroy(&start);
		pthread_barrier_destroy(&done);
		for (unsigned long i = 0; i < nitems; i++)
			STRESS_CHECK(atomic_load_explicit(&taken[i], memory_order_relaxed) == 1,
			             "round %lu: item %lu taken %u times (lost)", rounds, i,
			             atomic_load_explicit(&taken[i], memory_order_relaxed));
		probe_round(false);
		probe_round(true);
		rounds++;
	} while (!stress_expired() && rounds < rounds_max);
	stress_pass("threads=%u items=%lu rounds=%lu cap=%u (+ %lu spurious-empty probe rounds)",
	            nthreads, nitems, rounds, WEFT__RUNQ_CAP, 2 * rounds);
	free(queues);
	free((void *)taken);
	return 0;
}
