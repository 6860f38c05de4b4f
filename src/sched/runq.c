/*
 * Work-stealing run queue; see runq.h for the shape and its invariants.
 * Each atomic step below names the step it synchronises with.
 */
#include "sched/runq.h"
#include "debug_hooks.h"

#include <stddef.h>

void weft__runq_init(struct weft__runq *q)
{
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	for (unsigned i = 0; i < WEFT__RUNQ_CAP; i++)
		atomic_init(&q->slot[i], NULL);
}

/* Slow path of weft__runq_push: the queue looked full. Grab half of it with
 * the same CAS a thief uses, so no consumer can be taking those slots. */
static unsigned runq_push_slow(struct weft__runq *q, struct weft_task *t, uint32_t h,
                               uint32_t tl, struct weft_task **batch)
{
	uint32_t n = (tl - h) / 2;
	for (uint32_t i = 0; i < n; i++)
		batch[i] = atomic_load_explicit(&q->slot[(h + i) & WEFT__RUNQ_MASK],
		                                memory_order_relaxed);
	weft__perturb();
	/* release: our reads of the slots above happen before any later
	 * overwrite of them by our own pushes (program order covers that), and
	 * the CAS commits the consumption against other consumers' CASes.
	 * Failure: a thief took some first, so the queue is no longer full. */
	if (!atomic_compare_exchange_strong_explicit(&q->head, &h, h + n,
	                                             memory_order_release,
	                                             memory_order_relaxed))
		return 0;
	batch[n] = t;
	return n + 1;
}

bool weft__runq_try_push(struct weft__runq *q, struct weft_task *t)
{
	/* acquire: synchronises with consumers' CAS-release on head, so the
	 * slot they emptied is really free before we overwrite it. */
	uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	/* relaxed: only the owner (us) writes tail. */
	uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (tl - h >= WEFT__RUNQ_CAP)
		return false;
	atomic_store_explicit(&q->slot[tl & WEFT__RUNQ_MASK], t, memory_order_relaxed);
	/* release: makes the slot's content visible to whoever reads this
	 * tail with acquire (thieves, weft__runq_len). */
	atomic_store_explicit(&q->tail, tl + 1, memory_order_release);
	return true;
}

unsigned weft__runq_push(struct weft__runq *q, struct weft_task *t, struct weft_task **batch)
{
	while (!weft__runq_try_push(q, t)) {
		/* Full when we looked: orders as in weft__runq_try_push. A thief
		 * that makes room before our look (here) or before our CAS (the
		 * slow path's fails) sends us back to push. */
		uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
		uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (tl - h < WEFT__RUNQ_CAP)
			continue;
		unsigned n = runq_push_slow(q, t, h, tl, batch);
		if (n)
			return n;
	}
	return 0;
}

void weft__runq_push_batch(struct weft__runq *q, struct weft_task **items, unsigned n)
{
	uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed); /* owner's own */
	for (unsigned i = 0; i < n; i++)
		atomic_store_explicit(&q->slot[(tl + i) & WEFT__RUNQ_MASK], items[i],
		                      memory_order_relaxed);
	/* release: publishes all n slots at once (pairs with thieves' acquire). */
	atomic_store_explicit(&q->tail, tl + n, memory_order_release);
}

struct weft_task *weft__runq_pop(struct weft__runq *q)
{
	for (;;) {
		/* acquire: synchronise with other consumers' CAS on head. */
		uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
		uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed); /* ours */
		if (h == tl)
			return NULL;
		struct weft_task *t = atomic_load_explicit(&q->slot[h & WEFT__RUNQ_MASK],
		                                           memory_order_relaxed);
		weft__perturb();
		/* release: commits the consumption; a thief that read the same slot
		 * fails its CAS and discards what it read. */
		if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1,
		                                          memory_order_release,
		                                          memory_order_relaxed))
			return t;
	}
}

/*
 * The only consumer is the owner (a runtime with one worker: steal_work
 * never runs, and the overflow's CAS in weft__runq_push_slow is ours too), so
 * head has one writer and the CAS that arbitrates between consumers has
 * nobody to arbitrate: a plain store takes the item. The CAS was a locked
 * instruction per yield, a tenth of a yield (docs/internals.md). relaxed
 * loads: both words are ours alone to write.
 * release on head: other threads that read the length (the monitor's
 * stranded-work check, weft__runq_len) pair with it as with the CAS.
 */
struct weft_task *weft__runq_pop_solo(struct weft__runq *q)
{
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (h == tl)
		return NULL;
	struct weft_task *t = atomic_load_explicit(&q->slot[h & WEFT__RUNQ_MASK],
	                                           memory_order_relaxed);
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return t;
}

/* Copy half of victim's items into dst's slots starting at dst_tail, and
 * commit by CAS on victim->head. Returns how many were taken. */
static uint32_t runq_grab(struct weft__runq *victim, struct weft__runq *dst, uint32_t dst_tail)
{
	for (;;) {
		/* acquire: synchronise with other consumers of victim. */
		uint32_t h = atomic_load_explicit(&victim->head, memory_order_acquire);
		/* acquire: synchronise with victim's owner's release on tail, so the
		 * slots up to it hold the tasks pushed there. */
		uint32_t tl = atomic_load_explicit(&victim->tail, memory_order_acquire);
		uint32_t n = tl - h;
		n = n - n / 2;                      /* half, rounded up: 1 of 1 */
		if (n == 0)
			return 0;
		if (n > WEFT__RUNQ_CAP / 2)         /* h and tl read at different */
			continue;                   /* times: inconsistent, retry */
		for (uint32_t i = 0; i < n; i++) {
			struct weft_task *t = atomic_load_explicit(
				&victim->slot[(h + i) & WEFT__RUNQ_MASK], memory_order_relaxed);
			atomic_store_explicit(&dst->slot[(dst_tail + i) & WEFT__RUNQ_MASK], t,
			                      memory_order_relaxed);
		}
		weft__perturb();
		/* release: commits the steal of [h, h+n); on failure someone else
		 * consumed part of it and what we copied is discarded. */
		if (atomic_compare_exchange_strong_explicit(&victim->head, &h, h + n,
		                                            memory_order_release,
		                                            memory_order_relaxed))
			return n;
	}
}

struct weft_task *weft__runq_steal(struct weft__runq *victim, struct weft__runq *dst)
{
	uint32_t tl = atomic_load_explicit(&dst->tail, memory_order_relaxed); /* ours */
	uint32_t n = runq_grab(victim, dst, tl);
	if (n == 0)
		return NULL;
	n--;
	struct weft_task *t = atomic_load_explicit(&dst->slot[(tl + n) & WEFT__RUNQ_MASK],
	                                           memory_order_relaxed);
	if (n != 0)
		/* release: publishes the stolen tasks in our own queue. */
		atomic_store_explicit(&dst->tail, tl + n, memory_order_release);
	return t;
}
