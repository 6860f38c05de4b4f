/*
 * src/sync/waitq.c: parkers for coroutines and plain threads (protocol in
 * waitq.h). Coroutines go through the park/wake contract of src/sched/wait.h;
 * plain threads sleep on a futex word in their parker.
 */
#include <errno.h>
#include "sync/waitq.h"
#include "util.h"

int weft__sp_begin_thread(struct weft__parker *p, uint64_t deadline)
{
	p->thread = true;
	/* relaxed: nobody can see the parker before it is queued under a spin. */
	atomic_store_explicit(&p->tstate, 0, memory_order_relaxed);
	if (deadline && weft_now() >= deadline)
		return -ETIMEDOUT;
	return 0;
}

int weft__sp_park_thread(struct weft__parker *p, void (*unlock)(void *), void *arg)
{
	if (unlock)
		unlock(arg);
	for (;;) {
		/* acquire: pairs with the release store of 2 in weft__sp_wake, so
		 * the reason and any handed-over data are visible. */
		uint32_t s = atomic_load_explicit(&p->tstate, memory_order_acquire);
		if (s == 2)
			return p->reason;
		if (s == 0 && p->deadline && weft_now() >= p->deadline) {
			uint32_t exp = 0;
			/* relaxed: claiming ourselves publishes nothing; a waker
			 * that loses this race never touches the parker again. */
			if (atomic_compare_exchange_strong_explicit(&p->tstate, &exp, 1,
			        memory_order_relaxed, memory_order_relaxed))
				return -ETIMEDOUT;
			continue;
		}
		/* claimed (1): the winner is about to store 2; wait without a
		 * deadline, the wake is coming. EINTR, EAGAIN and ETIMEDOUT all
		 * send us round the loop, which re-reads the word and the clock. */
		weft__futex_wait(&p->tstate, s, s == 0 ? p->deadline : 0);
	}
}

bool weft__sp_claim_thread(struct weft__parker *p)
{
	uint32_t exp = 0;
	/* relaxed: exclusivity only; data goes over in weft__sp_wake's release. */
	return atomic_compare_exchange_strong_explicit(&p->tstate, &exp, 1,
	        memory_order_relaxed, memory_order_relaxed);
}

void weft__sp_wake_thread(struct weft__parker *p, int reason)
{
	p->reason = reason;
	/* release: pairs with the acquire load in weft__sp_park_thread; publishes the
	 * reason, p->selected and the data handed over before this call. */
	atomic_store_explicit(&p->tstate, 2, memory_order_release);
	weft__futex_wake(&p->tstate, 1);
}

unsigned weft__q_wake_all(struct weft__queue *q, int reason)
{
	unsigned n = 0;
	struct weft__node *nd;
	while ((nd = weft__q_pop_claimed(q))) {
		nd->p->selected = nd->idx;
		weft__sp_wake(nd->p, reason);
		n++;
	}
	return n;
}

int weft__q_wait(weft__lock *l, struct weft__queue *q, uint64_t deadline,
                 void *elem, int idx)
{
	struct weft__parker p;
	int err = weft__sp_begin(&p, deadline);
	if (err) {
		weft__unlock(l);
		return err;
	}
	struct weft__node n = { .p = &p, .elem = elem, .idx = idx };
	weft__q_push(q, &n);
	int r = weft__sp_park(&p, weft__unlock_cb, l);
	if (r != 0) {
		/* A deadline or a cancel ended the wait, or the waker dequeued
		 * us with a non-zero reason: drop the node if still queued. */
		weft__lock_acquire(l);
		weft__q_remove(q, &n);
		weft__unlock(l);
	}
	return r;
}
