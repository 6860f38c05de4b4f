/*
 * Per-worker timer heap: a binary min-heap of deadlines (absolute
 * CLOCK_MONOTONIC ns). A worker's park uses the earliest one as the timeout of
 * its io_uring wait, so a million sleepers cost O(log n) each and put no
 * timeout into the kernel.
 *
 * Locking: the heap's lock is taken by its owner (insert, fire) and by a
 * coroutine removing its own timer after it woke, possibly on another worker.
 * A timer node lives in its task record; node->heap says which heap holds it
 * (NULL: none) and is read and written only under that heap's lock.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "sched/lock.h"

struct weft__timer_heap;

struct weft__timer {
	uint64_t deadline;
	struct weft__timer_heap *_Atomic heap; /* holder, or NULL; see above          */
	uint32_t idx;                          /* position in heap->v, under its lock */
	void (*fire)(struct weft__timer *t);   /* runs under the heap lock            */
};

struct weft__timer_heap {
	weft__lock lock;
	struct weft__timer **v;
	uint32_t n, cap;
	/* earliest deadline, readable without the lock (UINT64_MAX: empty);
	 * relaxed: a stale value only makes the owner look a round early/late,
	 * and only the owner inserts, so it never misses its own new minimum. */
	_Atomic uint64_t next;
};

int  weft__timer_heap_init(struct weft__timer_heap *h);
void weft__timer_heap_fini(struct weft__timer_heap *h);
/* Insert t (not in any heap). Returns 0 or -ENOMEM. */
int  weft__timer_add(struct weft__timer_heap *h, struct weft__timer *t);
/* Remove t from whatever heap holds it; no-op if none. Any thread. Returns
 * true if it was still armed (so it had not fired). The test for "in no
 * heap" is inline: every wait takes its timer down when it wakes, and most
 * waits never armed one (a call per channel hand-off otherwise). */
bool weft__timer_cancel_slow(struct weft__timer *t);
static inline bool weft__timer_cancel(struct weft__timer *t)
{
	/* acquire: pairs with the release in weft__timer_run after fire();
	 * seeing NULL means the firing is over and its reads of the owner's
	 * state are done. Non-NULL is re-checked under the lock. */
	if (!atomic_load_explicit(&t->heap, memory_order_acquire))
		return false;
	return weft__timer_cancel_slow(t);
}
/* Run fire() of the timers with deadline <= now, earliest first, at most max
 * of them (the rest stay armed for the next call). Returns how many. Any
 * thread (the heap has a lock); normally its owner. */
unsigned weft__timer_run(struct weft__timer_heap *h, uint64_t now, unsigned max);
/* The same, but gives up (returns 0) when another thread holds the heap:
 * for workers firing someone else's overdue timers, which must not queue
 * behind the owner (or each other) on its lock. */
unsigned weft__timer_run_try(struct weft__timer_heap *h, uint64_t now, unsigned max);
static inline uint64_t weft__timer_next(struct weft__timer_heap *h)
{
	return atomic_load_explicit(&h->next, memory_order_relaxed);
}

#endif /* WEFT_TIMER_H */
