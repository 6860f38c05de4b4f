/*
 * Spawn deque (src/sched/spawnq.c, Chase-Lev) on its own. The hardest race:
 * the owner taking the last item while thieves steal it, where the owner's
 * take and a thief's steal both CAS top and exactly one may win. The owner
 * pushes one to three items and takes until the deque is empty, round after
 * round, so nearly every take is of the last item; three thieves steal all
 * along. Every item must be taken exactly once (a per-item counter catches a
 * double take at once) and none lost. With -Dsmall_queues the capacity is 4.
 * The single-threaded tests pin down the orders and the full deque.
 */
#include <ck_pr.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched/spawnq.h"

/* Fake task pointers, 16-aligned like real ones: ((i + 1) << 4). */
#define ITEM(i) ((struct weft_task *)(uintptr_t)(((uintptr_t)(i) + 1) << 4))
#define INDEX(p) (((uintptr_t)(p) >> 4) - 1)

enum { NITEMS = 1000000, NTHIEVES = 3 };

static struct weft__spawnq q;
static _Atomic uint8_t *seen;
static _Atomic int owner_done;
static _Atomic unsigned long stolen;
static pthread_barrier_t start;

static void take_item(struct weft_task *t)
{
	uintptr_t v = (uintptr_t)t;
	cr_assert(v && !(v & 15), "bogus item %p", (void *)t);
	uintptr_t i = INDEX(t);
	cr_assert_lt(i, NITEMS, "item out of range: %lu", (unsigned long)i);
	/* relaxed: the counter is the check, nothing is published through it */
	uint8_t prev = atomic_fetch_add_explicit(&seen[i], 1, memory_order_relaxed);
	cr_assert_eq(prev, 0, "item %lu taken twice", (unsigned long)i);
}

static void *thief(void *arg)
{
	(void)arg;
	unsigned long mine = 0;
	pthread_barrier_wait(&start);
	/* Bounded: the owner stops after NITEMS pushes and leaves the deque
	 * empty, and an empty deque stays empty once owner_done is seen. */
	for (;;) {
		/* acquire: pairs with the owner's release store; after it, the
		 * owner pushes nothing more */
		int done = atomic_load_explicit(&owner_done, memory_order_acquire);
		struct weft_task *t = weft__spawnq_steal(&q);
		if (t) {
			take_item(t);
			mine++;
		} else if (done && !weft__spawnq_nonempty(&q)) {
			break;
		}
	}
	atomic_fetch_add(&stolen, mine);
	return NULL;
}

Test(spawnq, owner_takes_last_item_while_thieves_steal, .timeout = 120)
{
	seen = calloc(NITEMS, 1);
	cr_assert_not_null(seen);
	weft__spawnq_init(&q);
	pthread_t th[NTHIEVES];
	pthread_barrier_init(&start, NULL, NTHIEVES + 1);
	for (int i = 0; i < NTHIEVES; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, thief, NULL), 0);
	pthread_barrier_wait(&start);

	unsigned long taken = 0, rounds = 0;
	unsigned rng = 12345;
	for (unsigned i = 0; i < NITEMS;) {
		rng = rng * 1103515245u + 12345u;
		unsigned k = (rng >> 16) % 4 == 0 ? 2 + (rng >> 20) % 2 : 1;   /* mostly 1 */
		for (unsigned j = 0; j < k && i < NITEMS; j++, i++)
			cr_assert_geq(weft__spawnq_push(&q, ITEM(i)), 0, "push %u: deque full", i);
		/* A pause of a varying length, so that thieves which saw the
		 * item are mid-steal at every phase of the owner's take. */
		for (unsigned p = (rng >> 8) % 16; p; p--)
			ck_pr_stall();
		/* Take until empty: the last take races the thieves' steals. */
		struct weft_task *t;
		while ((t = weft__spawnq_take(&q))) {
			take_item(t);
			taken++;
		}
		/* Empty now, whoever won: nothing left for this round. */
		cr_assert_not(weft__spawnq_nonempty(&q), "round %lu: items left after take failed", rounds);
		rounds++;
	}
	atomic_store_explicit(&owner_done, 1, memory_order_release);
	for (int i = 0; i < NTHIEVES; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);

	for (unsigned i = 0; i < NITEMS; i++)
		cr_assert_eq(atomic_load(&seen[i]), 1, "item %u lost", i);
	cr_assert_eq(taken + atomic_load(&stolen), NITEMS, "owner %lu + thieves %lu",
		     taken, atomic_load(&stolen));
	cr_assert_null(weft__spawnq_take(&q));
	cr_assert_null(weft__spawnq_steal(&q));
	free(seen);
}

Test(spawnq, owner_lifo_thief_fifo)
{
	weft__spawnq_init(&q);
	cr_assert_null(weft__spawnq_take(&q));
	cr_assert_null(weft__spawnq_steal(&q));
	cr_assert_not(weft__spawnq_nonempty(&q));
	unsigned n = WEFT__SPAWNQ_CAP;
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(weft__spawnq_push(&q, ITEM(i)), (int)i, "push returns the count before");
	cr_assert_eq(weft__spawnq_push(&q, ITEM(n)), -1, "full");
	cr_assert(weft__spawnq_nonempty(&q));
	cr_assert_eq(INDEX(weft__spawnq_steal(&q)), 0, "a thief takes the oldest");
	cr_assert_eq(INDEX(weft__spawnq_take(&q)), n - 1, "the owner takes the newest");
	/* room for one again: the slot the thief emptied */
	cr_assert_eq(weft__spawnq_push(&q, ITEM(n)), (int)n - 2);
	cr_assert_eq(INDEX(weft__spawnq_take(&q)), n);
	for (unsigned i = n - 1; i-- > 1;)
		cr_assert_eq(INDEX(weft__spawnq_take(&q)), i);
	cr_assert_null(weft__spawnq_take(&q));
	cr_assert_null(weft__spawnq_steal(&q));
	/* the last item alone, uncontended: the owner's CAS wins */
	cr_assert_eq(weft__spawnq_push(&q, ITEM(7)), 0);
	cr_assert_eq(INDEX(weft__spawnq_take(&q)), 7);
	cr_assert_null(weft__spawnq_take(&q));
	cr_assert_eq(weft__spawnq_push(&q, ITEM(8)), 0);
	cr_assert_eq(INDEX(weft__spawnq_steal(&q)), 8);
	cr_assert_null(weft__spawnq_take(&q), "the thief had the last item");
	cr_assert_eq(weft__spawnq_push(&q, ITEM(9)), 0, "and the deque is usable after");
	cr_assert_eq(INDEX(weft__spawnq_take(&q)), 9);
}
