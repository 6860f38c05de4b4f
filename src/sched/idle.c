/*
 * src/sched/idle.c: idle workers, after Go's spinning-M protocol, and remote
 * calls.
 *
 * A worker out of local work becomes "searching" (rt->nsearching) unless
 * half the busy workers already search, steals half of a random victim's
 * queue (run.c, steal_work), and if it finds nothing, puts itself on the
 * idle list, re-checks every queue, and parks in its ring. Whoever makes
 * work available calls weft__notify_work: if no worker searches and one is
 * idle, it takes one off the idle list and wakes its ring. A searching
 * worker that finds work, when it was the last one searching, wakes one
 * more (run.c, found_work). A worker pushing on its own queues skips the
 * fence when nobody is idle (weft__notify_local), and the monitor wakes a
 * worker for work stranded that way. Coroutines woken by I/O completions
 * wake no helper at all: the ring's worker runs them (run.c, enqueue_back).
 *
 * Remote calls (weft__sched_call) share the parking worker's Dekker pair:
 * the caller pushes its call and then reads `parked`; the worker stores
 * `parked` and then re-checks the call list, with seq_cst on both sides, so
 * either the caller sees the worker parked (and wakes its ring) or the
 * worker sees the call (and does not sleep).
 *
 * Rejected: waking a worker per new task (a wake-up of a thread sleeping in
 * the kernel costs tens of microseconds on these machines); parking the
 * moment a worker runs dry (the same cost on every hand-off); spinning
 * between steal rounds (CPU another process needed, docs/internals.md).
 */
#include "sched/idle.h"
#include "sched/clock.h"
#include "debug_hooks.h"
#include "util.h"

/*
 * ANY. Lost-wake-up argument: the producer publishes the work, then a
 * seq_cst fence, then reads nidle and nsearching. A worker going idle first
 * leaves the searching count and joins the idle list, then a seq_cst fence,
 * then re-checks every queue (weft__worker_park). By the fences, either the
 * producer sees the idle worker (and wakes one) or the idle worker sees the
 * work. If the producer sees a searcher and wakes nobody, that searcher will
 * itself either find the work or go idle and then re-check.
 */
void weft__notify_work(struct weft_rt *rt)
{
	weft__perturb();
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&rt->nidle, memory_order_relaxed) == 0)
		return;
	uint32_t zero = 0;
	/* Only one waker at a time: the woken worker counts as searching, and
	 * when it finds work it wakes the next one if needed. */
	if (atomic_load_explicit(&rt->nsearching, memory_order_relaxed) != 0 ||
	    !atomic_compare_exchange_strong_explicit(&rt->nsearching, &zero, 1,
	                                             memory_order_seq_cst,
	                                             memory_order_relaxed))
		return;
	struct weft__worker *v = NULL;
	pthread_mutex_lock(&rt->idle_lock);
	if (rt->nidle_list) {
		v = &rt->workers[rt->idle[--rt->nidle_list]];
		v->in_idle = false;
		v->woken_searching = true;   /* it owns the nsearching we took */
		atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
	}
	pthread_mutex_unlock(&rt->idle_lock);
	if (!v) {
		atomic_fetch_sub_explicit(&rt->nsearching, 1, memory_order_seq_cst);
		return;
	}
	struct weft__worker *self = weft__worker_current();
	weft__ring_wake(self && self->rt == rt ? &self->ring : NULL, &v->ring);
}

/* OWNER: join the idle list. */
static void idle_push(struct weft_rt *rt, struct weft__worker *self)
{
	pthread_mutex_lock(&rt->idle_lock);
	self->in_idle = true;
	self->woken_searching = false;
	rt->idle[rt->nidle_list++] = self->index;
	atomic_fetch_add_explicit(&rt->nidle, 1, memory_order_seq_cst);
	pthread_mutex_unlock(&rt->idle_lock);
}

/* OWNER: leave the idle list. Returns true if a waker took us off it (and
 * so we start out searching, counted by the waker). */
static bool idle_leave(struct weft_rt *rt, struct weft__worker *self)
{
	bool woken;
	pthread_mutex_lock(&rt->idle_lock);
	if (self->in_idle) {
		for (unsigned i = 0; i < rt->nidle_list; i++) {
			if (rt->idle[i] == self->index) {
				rt->idle[i] = rt->idle[--rt->nidle_list];
				break;
			}
		}
		self->in_idle = false;
		atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
		woken = false;
	} else {
		woken = self->woken_searching;
		self->woken_searching = false;
	}
	pthread_mutex_unlock(&rt->idle_lock);
	return woken;
}

/* OWNER: the re-check after going idle (the second half of both Dekker
 * pairs above). */
static bool any_work_visible(struct weft_rt *rt, struct weft__worker *self)
{
	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed))
		return true;
	if (atomic_load_explicit(&self->calls, memory_order_relaxed))
		return true;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (weft__runq_len(&rt->workers[i].runq) ||
		    weft__spawnq_nonempty(&rt->workers[i].spawnq))
			return true;
	return false;
}

/* OWNER. */
void weft__worker_park(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_rt *rt = self->rt;
	if (self->searching) {
		self->searching = false;
		atomic_fetch_sub_explicit(&rt->nsearching, 1, memory_order_seq_cst);
	}
	idle_push(rt, self);
	weft__perturb();
	atomic_store_explicit(&self->parked, 1, memory_order_seq_cst);
	/* seq_cst fence: orders idle_push and `parked` before the re-check of
	 * the queues and the call list (the Dekker pairs of notify_work and
	 * weft__sched_call). */
	atomic_thread_fence(memory_order_seq_cst);
	if (!any_work_visible(rt, self) && !atomic_load_explicit(&rt->stop, memory_order_seq_cst)) {
		int64_t timeout = -1;
		uint64_t next = weft__timer_next(&self->timers);
		if (next != UINT64_MAX) {
			uint64_t now = weft__now();
			timeout = next > now ? (int64_t)(next - now) : 0;
		}
		if (timeout != 0) {
			WEFT__STAT(self, parks, 1);
			/* Completions reaped here wake their coroutines in order
			 * on this worker (WAKE_IO, io/ops.c). */
			int n = weft__ring_wait(&self->ring, timeout);
			/* The monitor may have slept for its idle period: spawns
			 * from now on get a fresh spawn time. */
			atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
			if (n > 0)
				WEFT__STAT(self, io_completions, (unsigned)n);
		}
	}
	atomic_store_explicit(&self->parked, 0, memory_order_relaxed);
	if (idle_leave(rt, self))
		self->searching = true;
}

/* ------------------------------------------------------- remote calls --- */

/* OWNER. */
void weft__run_remote_calls(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	/* acquire: pairs with the release CAS in weft__sched_call, so each
	 * call record's contents are visible. We take the whole stack, so no
	 * ABA: nobody pops but us. */
	struct weft__remote_call *c = atomic_exchange_explicit(&self->calls, NULL,
	                                                       memory_order_acquire);
	struct weft__remote_call *rev = NULL;
	while (c) {                         /* oldest first */
		struct weft__remote_call *n = c->next;
		c->next = rev;
		rev = c;
		c = n;
	}
	while (rev) {
		struct weft__remote_call *n = rev->next;
		rev->fn(rev);                   /* may free rev: read next first */
		rev = n;
	}
}

/* ANY (sched/wait.h). */
void weft__sched_call(struct weft__ring *r, struct weft__remote_call *c)
{
	struct weft__worker *w = weft__container_of(r, struct weft__worker, ring);
	struct weft__remote_call *head = atomic_load_explicit(&w->calls, memory_order_relaxed);
	do
		c->next = head;
	/* release: publishes *c to the owner's acquire exchange; seq_cst so the
	 * load of `parked` below cannot move before it (the Dekker pair with
	 * weft__worker_park). */
	while (!atomic_compare_exchange_weak_explicit(&w->calls, &head, c,
	                                              memory_order_seq_cst,
	                                              memory_order_relaxed));
	if (atomic_load_explicit(&w->parked, memory_order_seq_cst)) {
		struct weft__worker *self = weft__worker_current();
		weft__ring_wake(self && self->rt ? &self->ring : NULL, r);
	}
}

/* CORO (sched/wait.h). */
struct weft__ring *weft__sched_ring(void)
{
	struct weft__worker *w = weft__worker_current();
	return w ? &w->ring : NULL;
}
