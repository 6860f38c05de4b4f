/*
 * src/sched/inject.c: the injection queue (inject.h).
 *
 * A linked list through weft_task.next under rt->inject_lock, with its
 * length in an atomic beside it that workers read without the lock as a
 * hint ("anything there?"). Go's global run queue and Tokio's inject queue
 * play the same part. A mutex rather than a lock-free queue: the queue is
 * cold on every path that matters (local queues take the traffic) and a
 * drain moves a whole batch per hold.
 *
 * Order: an overflow moves the oldest half of a run queue to the tail
 * here, so its tasks are older than everything left in that run queue. The
 * worker that overflowed must run them first, in order (drain_inject in
 * worker.h, weft__drain_next): pushing them back behind the run queue's
 * tasks would reorder them, and timer batches rely on the order.
 */
#include "sched/inject.h"

/* ANY. */
void weft__inject_push(struct weft_rt *rt, struct weft_task *first, struct weft_task *last,
                       unsigned n)
{
	last->next = NULL;
	pthread_mutex_lock(&rt->inject_lock);
	if (rt->inject_tail)
		rt->inject_tail->next = first;
	else
		rt->inject_head = first;
	rt->inject_tail = last;
	/* relaxed under the lock; readers outside it use it as a hint, and
	 * notify_work's fence orders it against the idle check. */
	atomic_store_explicit(&rt->inject_len,
	                      atomic_load_explicit(&rt->inject_len, memory_order_relaxed) + n,
	                      memory_order_relaxed);
	pthread_mutex_unlock(&rt->inject_lock);
}

/*
 * OWNER, draining its own overflow. Taking the tasks one lock hold each was
 * dear when a yield loop overflows on every round (1,000 yielders in a
 * 256-slot queue): up to WEFT__DRAIN_BATCH come out per hold into
 * self->drain, which runs before the run queue.
 */
struct weft_task *weft__drain_next_slow(struct weft_rt *rt, struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed) == 0)
		return NULL;
	unsigned n = 0;
	pthread_mutex_lock(&rt->inject_lock);
	while (n < WEFT__DRAIN_BATCH && rt->inject_head) {
		struct weft_task *x = rt->inject_head;
		self->drain[n++] = x;
		/* x's first line (ctx, next) is loaded now: start loading the
		 * saved registers on its stack, which the switch into x reads. */
		__builtin_prefetch(x->ctx.sp);
		rt->inject_head = x->next;
	}
	if (!rt->inject_head)
		rt->inject_tail = NULL;
	atomic_store_explicit(&rt->inject_len,
	                      atomic_load_explicit(&rt->inject_len, memory_order_relaxed) - n,
	                      memory_order_relaxed);
	pthread_mutex_unlock(&rt->inject_lock);
	if (!n)
		return NULL;
	WEFT__STAT(self, inject_out, n);
	self->drain_n = n;
	self->drain_i = 1;
	return self->drain[0];
}

/* OWNER: called when self's local queue ran dry, or on the fairness tick
 * with room to spare. Takes len / workers + 1, at most half the room. */
struct weft_task *weft__inject_take_slow(struct weft_rt *rt, struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	pthread_mutex_lock(&rt->inject_lock);
	uint32_t len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
	uint32_t room = WEFT__RUNQ_CAP - weft__runq_len(&self->runq);
	uint32_t n = len / rt->nworkers + 1;
	if (n > len)
		n = len;
	if (n > room / 2 + 1)
		n = room / 2 + 1;
	struct weft_task *batch[WEFT__RUNQ_CAP / 2 + 1];
	struct weft_task *t = NULL;
	for (uint32_t i = 0; i < n; i++) {
		struct weft_task *x = rt->inject_head;
		rt->inject_head = x->next;
		if (i == 0)
			t = x;
		else
			batch[i - 1] = x;
	}
	if (!rt->inject_head)
		rt->inject_tail = NULL;
	atomic_store_explicit(&rt->inject_len, len - n, memory_order_relaxed);
	pthread_mutex_unlock(&rt->inject_lock);
	if (n > 1)
		weft__runq_push_batch(&self->runq, batch, n - 1);
	if (n)
		WEFT__STAT(self, inject_out, n);
	return t;
}
