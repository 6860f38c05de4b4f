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
 */
#include "common.h"
#include "sched/runq.h"

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
		rounds++;
	} while (!stress_expired() && rounds < rounds_max);
	stress_pass("threads=%u items=%lu rounds=%lu cap=%u", nthreads, nitems, rounds, WEFT__RUNQ_CAP);
	free(queues);
	free((void *)taken);
	return 0;
}
