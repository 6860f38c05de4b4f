/* Chase-Lev deque for spawn continuations; see spawnq.h. */
#include "sched/spawnq.h"

#include <stddef.h>

#include "debug_hooks.h"

#define MASK (WEFT__SPAWNQ_CAP - 1)

void weft__spawnq_init(struct weft__spawnq *q)
{
	atomic_init(&q->top, 0);
	atomic_init(&q->bottom, 0);
	for (unsigned i = 0; i < WEFT__SPAWNQ_CAP; i++)
		atomic_init(&q->slot[i], NULL);
}

int weft__spawnq_push(struct weft__spawnq *q, struct weft_task *t)
{
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);  /* ours */
	/* acquire: pairs with thieves' CAS on top, so a slot they emptied is
	 * free before we overwrite it. */
	int64_t tp = atomic_load_explicit(&q->top, memory_order_acquire);
	if (b - tp >= WEFT__SPAWNQ_CAP)
		return -1;
	atomic_store_explicit(&q->slot[b & MASK], t, memory_order_relaxed);
	/* release: publishes the slot and everything the owner wrote to the
	 * task before (its saved context) to a thief's acquire load of bottom.
	 * Lê et al. use a release fence and a relaxed store; a release store is
	 * the same instruction on x86 and lets ThreadSanitizer see the edge. */
	atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
	return b > tp ? (int)(b - tp) : 0;   /* tp may run ahead in a race: 0 */
}

struct weft_task *weft__spawnq_take(struct weft__spawnq *q)
{
	/* Fast path for an empty deque, without the fence below (a seq_cst
	 * fence on every yield is not small): only we add items, thieves only remove them, so top
	 * already at or past bottom stays there until our next push. relaxed:
	 * a stale (smaller) top can only send us down the full path. */
	if (atomic_load_explicit(&q->top, memory_order_relaxed) >=
	    atomic_load_explicit(&q->bottom, memory_order_relaxed))
		return NULL;
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
	atomic_store_explicit(&q->bottom, b, memory_order_relaxed);
	/* seq_cst fence: the store of bottom above must be visible before we
	 * read top, and a thief reads top before bottom with a fence of its own:
	 * of the two, at least one sees the other's move (Lê et al., take). */
	atomic_thread_fence(memory_order_seq_cst);
	int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
	if (t > b) {                             /* empty: restore */
		atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
		return NULL;
	}
	struct weft_task *x = atomic_load_explicit(&q->slot[b & MASK], memory_order_relaxed);
	if (t == b) {
		/* The last item: race the thieves for it with their own CAS.
		 * seq_cst as in the paper; on failure a thief has it. */
		weft__perturb();
		if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1,
		                                             memory_order_seq_cst,
		                                             memory_order_relaxed))
			x = NULL;
		atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
	}
	return x;
}

struct weft_task *weft__spawnq_steal(struct weft__spawnq *q)
{
	/* acquire: synchronise with other consumers' CAS on top. */
	int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
	/* seq_cst fence: pairs with the owner's fence in take (see there). */
	atomic_thread_fence(memory_order_seq_cst);
	/* acquire: pairs with the owner's release store of bottom in push. */
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
	if (t >= b)
		return NULL;
	struct weft_task *x = atomic_load_explicit(&q->slot[t & MASK], memory_order_relaxed);
	weft__perturb();
	/* seq_cst: the paper's; commits the steal against the owner's take of
	 * the last item and against other thieves. */
	if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1,
	                                             memory_order_seq_cst,
	                                             memory_order_relaxed))
		return NULL;
	return x;
}
