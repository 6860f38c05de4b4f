/*
 * The stack pool's lock-free free list (src/ctx/stack_list.h) under ABA
 * pressure, without Criterion (so it also runs under TSan, where the list
 * is the mutex version). Four threads pop chains of 1-3 nodes from a list of
 * 16, take each node (an atomic exchange of its owner flag, which must find
 * it free: a node handed out twice is the ABA failure), and push them back,
 * one by one or as a chain. The list's race hook yields the thread now and
 * then between its read of the head and its CAS, the window in which
 * another thread pops a node and pushes it back. Finally every node must be
 * in the list exactly once and the count must say so.
 * Bounded: THREADS x OPS operations. Exit 0 on success.
 */
#include <sched.h>
#include <stdint.h>

/* Widen the race windows: a yield every 4th passage on average. */
static _Thread_local uint32_t race_rng = 1;
#define WEFT__LIST_RACE()                                                       \
	do {                                                                    \
		race_rng = race_rng * 1103515245u + 12345u;                     \
		if (((race_rng >> 16) & 3) == 0)                                 \
			sched_yield();                                          \
	} while (0)
#include "ctx/stack_list.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define NODES   16
#define THREADS 4
#define OPS     50000

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                \
		}                                                               \
	} while (0)

struct node {
	struct weft__lnode link;
	atomic_int owned;       /* 1 while a thread holds it */
};

static struct weft__list list;
static struct node nodes[NODES];
static atomic_ulong double_handouts;

static struct node *node_of(struct weft__lnode *x)
{
	return (struct node *)x;   /* link is the first member */
}

static void *worker(void *arg)
{
	uint32_t rng = (uint32_t)(uintptr_t)arg * 2654435761u + 7;
	race_rng = rng | 1;
	for (int op = 0; op < OPS; op++) {
		rng = rng * 1103515245u + 12345u;
		unsigned k = 1 + (rng >> 16) % 3, n;
		struct weft__lnode *x = weft__list_pop(&list, k, &n);
		CHECK(n <= k && (x != NULL) == (n > 0));
		struct node *held[3];
		for (unsigned i = 0; i < n; i++) {
			struct node *d = node_of(x);
			x = weft__list_next(x);
			if (atomic_exchange(&d->owned, 1) != 0)
				atomic_fetch_add(&double_handouts, 1);
			held[i] = d;
		}
		for (unsigned i = 0; i < n; i++)
			atomic_store(&held[i]->owned, 0);
		if (n > 1 && (rng >> 20) & 1) {
			/* back as one chain */
			for (unsigned i = 0; i + 1 < n; i++)
				atomic_store_explicit(&held[i]->link.next, &held[i + 1]->link,
				                      memory_order_relaxed);
			weft__list_push(&list, &held[0]->link, &held[n - 1]->link, n);
		} else {
			for (unsigned i = 0; i < n; i++)
				weft__list_push(&list, &held[i]->link, &held[i]->link, 1);
		}
	}
	return NULL;
}

int main(void)
{
	weft__list_init(&list);
	for (int i = 0; i < NODES; i++)
		weft__list_push(&list, &nodes[i].link, &nodes[i].link, 1);
	CHECK(weft__list_count(&list) == NODES);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	if (atomic_load(&double_handouts)) {
		fprintf(stderr, "FAIL: %lu nodes handed out twice (ABA)\n", atomic_load(&double_handouts));
		return 1;
	}
	/* every node once, nothing else */
	CHECK(weft__list_count(&list) == NODES);
	int seen[NODES] = { 0 };
	unsigned n, total = 0;
	struct weft__lnode *x;
	/* bounded: a list that ABA made cyclic must fail here, not spin */
	while (total <= NODES && (x = weft__list_pop(&list, 1, &n)) != NULL) {
		CHECK(n == 1);
		long i = node_of(x) - nodes;
		CHECK(i >= 0 && i < NODES && !seen[i]);
		seen[i] = 1;
		total++;
	}
	CHECK(total == NODES && weft__list_count(&list) == 0);
	weft__list_fini(&list);
	puts("list_standalone: all passed");
	return 0;
}
