/*
 * Run queue (src/sched/runq.c): an owner pushes and pops while thieves steal
 * half at a time; every item must come out exactly once. With -Dsmall_queues
 * the capacity is 4, so overflow and steal-half run on nearly every step.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sched/runq.h"

/* The queue stores task pointers; these tests use fake ones: (item + 1). */
#define ITEM(i) ((struct weft_task *)(uintptr_t)((i) + 1))
#define INDEX(p) ((uintptr_t)(p) - 1)

enum { NITEMS = 1000000, NTHIEVES = 3 };

static struct weft__runq owner_q;
static struct weft__runq thief_q[NTHIEVES];
static _Atomic uint8_t *seen;
static _Atomic int owner_done;
static _Atomic unsigned long taken_by_thieves;
static pthread_barrier_t start;

static void take(struct weft_task *t)
{
	uintptr_t i = INDEX(t);
	cr_assert_lt(i, NITEMS, "item out of range: %lu", (unsigned long)i);
	uint8_t prev = atomic_fetch_add(&seen[i], 1);
	cr_assert_eq(prev, 0, "item %lu taken twice", (unsigned long)i);
}

static void *thief(void *arg)
{
	struct weft__runq *mine = arg;
	pthread_barrier_wait(&start);
	for (;;) {
		int done = atomic_load(&owner_done);
		struct weft_task *t = weft__runq_steal(&owner_q, mine);
		if (!t) {
			if (done && weft__runq_len(&owner_q) == 0)
				break;
			continue;
		}
		take(t);
		atomic_fetch_add(&taken_by_thieves, 1);
		/* drain what the steal put in our own queue, as a worker would */
		while ((t = weft__runq_pop(mine))) {
			take(t);
			atomic_fetch_add(&taken_by_thieves, 1);
		}
	}
	return NULL;
}

Test(runq, stampede_exactly_once, .timeout = 120)
{
	seen = calloc(NITEMS, 1);
	cr_assert(seen);
	weft__runq_init(&owner_q);
	pthread_t th[NTHIEVES];
	pthread_barrier_init(&start, NULL, NTHIEVES + 1);
	for (int i = 0; i < NTHIEVES; i++) {
		weft__runq_init(&thief_q[i]);
		pthread_create(&th[i], NULL, thief, &thief_q[i]);
	}
	pthread_barrier_wait(&start);

	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	unsigned long overflowed = 0, popped = 0;
	unsigned rng = 12345;
	for (unsigned i = 0; i < NITEMS; i++) {
		unsigned n = weft__runq_push(&owner_q, ITEM(i), batch);
		for (unsigned k = 0; k < n; k++)      /* "injection queue": take them here */
			take(batch[k]);
		overflowed += n;
		rng = rng * 1103515245u + 12345u;
		if ((rng >> 16) % 3 == 0) {
			struct weft_task *t = weft__runq_pop(&owner_q);
			if (t) {
				take(t);
				popped++;
			}
		}
	}
	struct weft_task *t;
	while ((t = weft__runq_pop(&owner_q))) {
		take(t);
		popped++;
	}
	atomic_store(&owner_done, 1);
	for (int i = 0; i < NTHIEVES; i++)
		pthread_join(th[i], NULL);

	for (unsigned i = 0; i < NITEMS; i++)
		cr_assert_eq(atomic_load(&seen[i]), 1, "item %u lost", i);
	cr_assert_eq(popped + overflowed + atomic_load(&taken_by_thieves), NITEMS);
	cr_assert_gt(overflowed, 0, "overflow path never ran");
	free(seen);
}

Test(runq, steal_takes_half_rounded_up)
{
	struct weft__runq a, b;
	weft__runq_init(&a);
	weft__runq_init(&b);
	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	unsigned n = WEFT__RUNQ_CAP;
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(weft__runq_push(&a, ITEM(i), batch), 0);
	struct weft_task *t = weft__runq_steal(&a, &b);
	cr_assert_not_null(t);
	/* n/2 taken: one returned, the rest in b, in FIFO order from a's head */
	cr_assert_eq(weft__runq_len(&a), n - n / 2);
	cr_assert_eq(weft__runq_len(&b), n / 2 - 1);
	cr_assert_eq(INDEX(t), n / 2 - 1);
	for (unsigned i = 0; i < n / 2 - 1; i++)
		cr_assert_eq(INDEX(weft__runq_pop(&b)), i);
	cr_assert_eq(INDEX(weft__runq_pop(&a)), n / 2);

	/* one item: a steal takes it */
	struct weft__runq c, d;
	weft__runq_init(&c);
	weft__runq_init(&d);
	weft__runq_push(&c, ITEM(7), batch);
	cr_assert_eq(INDEX(weft__runq_steal(&c, &d)), 7);
	cr_assert_null(weft__runq_steal(&c, &d));
	cr_assert_null(weft__runq_pop(&c));
}

Test(runq, overflow_moves_half_plus_one)
{
	struct weft__runq a;
	weft__runq_init(&a);
	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	for (unsigned i = 0; i < WEFT__RUNQ_CAP; i++)
		cr_assert_eq(weft__runq_push(&a, ITEM(i), batch), 0);
	unsigned n = weft__runq_push(&a, ITEM(WEFT__RUNQ_CAP), batch);
	cr_assert_eq(n, WEFT__RUNQ_CAP / 2 + 1);
	for (unsigned i = 0; i < WEFT__RUNQ_CAP / 2; i++)
		cr_assert_eq(INDEX(batch[i]), i, "oldest half moves out, in order");
	cr_assert_eq(INDEX(batch[n - 1]), WEFT__RUNQ_CAP);
	cr_assert_eq(weft__runq_len(&a), WEFT__RUNQ_CAP / 2);
}
