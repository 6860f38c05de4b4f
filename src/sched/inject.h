/*
 * src/sched/inject.h: the injection queue (inject.c), a runtime-wide FIFO
 * under a mutex for what cannot go on a worker's own run queue: coroutines
 * spawned or woken by threads that are not the runtime's workers, and the
 * oldest half of a run queue that overflowed. Workers take from it when
 * their own queues run dry, and every WEFT__INJECT_EVERY ticks for fairness.
 */
#ifndef WEFT_SCHED_INJECT_H
#define WEFT_SCHED_INJECT_H

#include "sched/rt.h"

/* Append the chain first..last (n tasks, linked by ->next) at the tail. ANY. */
void weft__inject_push(struct weft_rt *rt, struct weft_task *first, struct weft_task *last,
                       unsigned n);

/* OWNER: take a fair share of the queue: one task to run, the rest into
 * self's run queue (which is empty or nearly). NULL when it is empty. */
struct weft_task *weft__inject_take_slow(struct weft_rt *rt, struct weft__worker *self);
static inline struct weft_task *weft__inject_take(struct weft_rt *rt, struct weft__worker *self)
{
	/* relaxed: a hint; inject_push's producer publishes under the lock,
	 * and a miss here is seen at the next look (notify_work's fence
	 * orders it against going idle). */
	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed) == 0)
		return NULL;
	return weft__inject_take_slow(rt, self);
}

/* OWNER, while self drains its own overflow: the next task in FIFO order,
 * from a batch taken under one lock hold into self->drain. NULL: drained. */
struct weft_task *weft__drain_next_slow(struct weft_rt *rt, struct weft__worker *self);
static inline struct weft_task *weft__drain_next(struct weft_rt *rt, struct weft__worker *self)
{
	if (self->drain_i < self->drain_n)
		return self->drain[self->drain_i++];
	return weft__drain_next_slow(rt, self);
}

#endif /* WEFT_SCHED_INJECT_H */
