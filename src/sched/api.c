/*
 * src/sched/api.c: the public calls about coroutines themselves: spawn (and
 * the record set-up behind it), join, sleep, and who am I. weft_yield, which
 * is nothing but a switch, is in run.c with the switch; cancellation and
 * deadlines are in wait.c.
 *
 * Spawn sets up a record (task.c) and a stack (ctx/stack.c) and, by the
 * child-first policy (run.c), switches into the child at once; the parent's
 * continuation goes on the spawn deque. Join is a wait on the child's
 * record (join_lock guards finished/has_joiner/joiner), ended by the child's
 * exit (run.c, task_finish).
 */
#include "sched/rt.h"
#include "sched/clock.h"
#include "sched/run.h"
#include "debug_hooks.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ANY (vDSO). */
WEFT_API uint64_t weft_now(void)
{
	return weft__now();
}

WEFT_API weft_task *weft_self(void)
{
	return weft__task_current();
}

WEFT_API int weft_worker_id(void)
{
	struct weft__worker *w = weft__worker_current();
	return w ? (int)w->index : -1;
}

WEFT_API uint64_t weft_task_id(const weft_task *t)
{
	return t ? t->id : 0;
}

WEFT_API const char *weft_task_name(const weft_task *t)
{
	return t ? t->name : "";
}

WEFT_API void weft_set_name(const char *name)
{
	struct weft_task *t = weft_self();
	if (t)
		weft__task_set_name(t, name);
}

/* CORO. */
WEFT_API int weft_sleep(uint64_t ns)
{
	struct weft__waiter wt;
	uint64_t now = weft__now();
	uint64_t deadline = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
	if (ns == 0) {
		if (!weft_self())
			return -EPERM;
		weft_yield();
		return weft_cancelled() ? -ECANCELED : 0;
	}
	/* Reaching its own deadline is a sleep's success; a region deadline
	 * (weft_deadline_set) that cuts it short is a -ETIMEDOUT. */
	uint64_t region = weft__wait_deadline(0);
	int timed_out = region && region < deadline ? -ETIMEDOUT : 0;
	weft__wait_describe("sleep", NULL);
	/* IN_ORDER: a short sleep whose deadline passed on the way here still
	 * waits for the timers due before it (stress finding: it overtook them). */
	int err = weft__wait_begin(&wt, deadline, WEFT__WAIT_INTERRUPTIBLE | WEFT__WAIT_IN_ORDER);
	if (err)
		return err == -ETIMEDOUT ? timed_out : err;
	int r = weft__wait_park(&wt, NULL, NULL);
	return r == -ETIMEDOUT ? timed_out : r;
}

/* Runs on the scheduler's side of a park (sched/lock.h). */
void weft__unlock_cb(void *arg)
{
	weft__unlock(arg);
}

/* CORO. */
WEFT_API int weft_join(weft_task *t, void **ret)
{
	struct weft_task *self = weft_self();
	if (!self)
		return -EPERM;
	if (!t)
		return -EINVAL;
	if (t == self)
		return -EDEADLK;
	weft__lock_acquire(&t->join_lock);
	if (!t->finished) {
		if (t->has_joiner) {
			weft__unlock(&t->join_lock);
			return -EINVAL;             /* joined twice at once */
		}
		struct weft__waiter wt;
		weft__wait_describe("join of coroutine", t);
		int err = weft__wait_begin(&wt, 0, WEFT__WAIT_INTERRUPTIBLE);
		if (err) {
			weft__unlock(&t->join_lock);
			return err;
		}
		t->joiner = wt;
		t->has_joiner = true;
		int r = weft__wait_park(&wt, weft__unlock_cb, &t->join_lock);
		if (r) {
			weft__lock_acquire(&t->join_lock);
			if (t->has_joiner && t->joiner.seq == wt.seq && t->joiner.task == self)
				t->has_joiner = false;
			weft__unlock(&t->join_lock);
			return r;                   /* t stays joinable */
		}
		weft__lock_acquire(&t->join_lock);
	}
	weft__unlock(&t->join_lock);
	if (ret)
		*ret = t->ret;
	weft__task_unref(t);
	return 0;
}

/* ------------------------------------------------------------- spawn --- */

/* Task ids, unique within the process (weft_task_id): workers take them in
 * blocks of 1024, other threads one at a time. relaxed: only uniqueness
 * matters, which the RMW gives; nothing is published through an id. */
static _Atomic uint64_t next_task_id = 1;

/* ANY: a new record and stack for fn(arg) in rt, RUNNABLE and not yet
 * queued; w is the caller's worker when it is one of rt's, else NULL. */
static int task_create(struct weft_rt *rt, struct weft__worker *w, weft_fn fn, void *arg,
                       const struct weft_spawn_opts *o, bool joinable, struct weft_task **out)
{
	if (!fn)
		return -EINVAL;
	if (o && o->flags)
		return -EINVAL;
	size_t ssize = 0;
	if (o && o->stack_size) {
		int err = weft__stack_size_check(o->stack_size, &ssize);
		if (err)
			return err;
	}
	struct weft_task *t = weft__fault("spawn.task_alloc") ? NULL : weft__task_alloc(rt, w);
	if (!t)
		return -ENOMEM;

	/* A task's stack is taken at spawn so a failure is reported here.
	 * Workers take from their own cache; other threads through a
	 * temporary cache on the shared pool. */
	struct weft__stack *s = NULL;
	int err;
	if (w && w->rt == rt) {
		err = ssize && ssize != rt->stack_size
		      ? weft__stack_get_size(w->stacks, ssize, &s)
		      : weft__stack_get(w->stacks, &s);
	} else {
		struct weft__stack_cache *c;
		err = weft__stack_cache_create(&c, rt->stack_pool);
		if (!err) {
			err = ssize && ssize != rt->stack_size
			      ? weft__stack_get_size(c, ssize, &s)
			      : weft__stack_get(c, &s);
			weft__stack_cache_destroy(c);
		}
	}
	if (err) {
		weft__task_free(rt, w, t);
		return err;
	}

	uint64_t id;
	if (w && w->rt == rt) {
		if (w->next_id == w->last_id) {
			w->next_id = atomic_fetch_add_explicit(&next_task_id, 1024, memory_order_relaxed);
			w->last_id = w->next_id + 1024;
		}
		id = w->next_id++;
		WEFT__STAT(w, spawns, 1);
	} else {
		id = atomic_fetch_add_explicit(&next_task_id, 1, memory_order_relaxed);
	}

	t->stack = s;
	t->fn = fn;
	t->arg = arg;
	t->ret = NULL;
	t->rt = rt;
	__atomic_store_n(&t->id, id, __ATOMIC_RELAXED);   /* see weft__task_set_name */
	weft__task_set_name(t, o ? o->name : NULL);
	s->owner_id = id;
	s->owner_name = t->name;
	t->join_lock = (weft__lock)WEFT__LOCK_INIT;
	t->finished = false;
	t->has_joiner = false;
	t->ext_done = NULL;
	t->shield = 0;
	t->deadline = 0;
	t->locals = NULL;
	atomic_store_explicit(&t->wait_what, NULL, memory_order_relaxed);
	atomic_store_explicit(&t->wait_obj, NULL, memory_order_relaxed);
	/* relaxed: a sample of a clock, no data hangs on it. Without a
	 * monitor nobody refreshes it: read the clock. */
	t->born = rt->monitor_started ? atomic_load_explicit(&rt->coarse_ns, memory_order_relaxed)
	                              : weft__coarse_now();
	atomic_store_explicit(&t->wait_flags, 0, memory_order_relaxed);
	/* wait_seq carries on from the record's previous life, so waiters
	 * left over from then can never match again. */
	atomic_store_explicit(&t->wait, t->wait_seq << 1, memory_order_relaxed);
	atomic_store_explicit(&t->timer.heap, NULL, memory_order_relaxed);
	atomic_store_explicit(&t->refs, joinable ? 2 : 1, memory_order_relaxed);
	/* release: weft_dump's acquire load of alive then sees id, name and
	 * born as written above */
	atomic_store_explicit(&t->alive, 1, memory_order_release);
	atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
	/* relaxed: nobody can see the task before it is queued, which
	 * publishes the record; the shutdown check below may set it again. */
	atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
	/* Counted before anyone can see the task (weft__live_tasks). release:
	 * the record's initialisation precedes a reader's acquire of the count.
	 * Owner-only counter, so no RMW. */
	if (w)
		WEFT__OWNER_ADD(w->created, 1, memory_order_release);
	else
		atomic_fetch_add_explicit(&rt->created_outside, 1, memory_order_release);
	/* relaxed: a hint, not a handshake. A task created while destroy runs
	 * is counted as live by destroy's double collect, and destroy's sweep
	 * (every 1 ms, every record with `alive` set) cancels it if it missed
	 * the flag here. A seq_cst fence to make this exact was a fifth of
	 * the cost of a spawn. */
	if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed))
		atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
	/* Cache colouring: stacks are page-aligned mappings of equal size, so
	 * every coroutine's first frames sit at the same offset in a page and
	 * compete for the same few cache sets; a thousand yielders evicted each
	 * other's hot stack lines on every switch. Starting each stack 0-15
	 * cache lines below its top (at most 960 bytes of it) spreads them over
	 * 16 times the sets. */
	size_t colour = (size_t)(t->id % WEFT__STACK_COLOURS) * 64;
	weft__ctx_make(&t->ctx, s->lo, s->size - colour, weft__task_entry);
	*out = t;
	return 0;
}

WEFT_API int weft_spawn_opts(weft_task **out, weft_fn fn, void *arg,
                             const struct weft_spawn_opts *opts)
{
	struct weft__worker *w = weft__worker_current();
	if (!w || !w->current)
		return -EPERM;
	struct weft_task *t;
	int err = task_create(w->rt, w, fn, arg, opts, out != NULL, &t);
	if (err)
		return err;
	if (out)
		*out = t;
	if (w->rt->flags & WEFT_RT_PARENT_FIRST) {
		weft__ready(t, WEFT__WAKE_NEXT);
		return 0;
	}
	w->action_task = t;
	weft__switch_out(w, w->current, WEFT__A_SPAWN);
	return 0;
}

WEFT_API int weft_spawn(weft_task **out, weft_fn fn, void *arg)
{
	return weft_spawn_opts(out, fn, arg, NULL);
}

WEFT_API int weft_rt_spawn(weft_rt *rt, weft_task **out, weft_fn fn, void *arg)
{
	if (!rt)
		return -EINVAL;
	struct weft__worker *w = weft__worker_current();
	struct weft_task *t;
	int err = task_create(rt, w && w->rt == rt ? w : NULL, fn, arg, NULL, out != NULL, &t);
	if (err)
		return err;
	if (out)
		*out = t;
	weft__ready(t, WEFT__WAKE_NEXT);
	return 0;
}

WEFT_API int weft_rt_run(weft_rt *rt, weft_fn fn, void *arg, void **ret)
{
	if (!rt || !fn)
		return -EINVAL;
	if (weft__worker_current())
		return -EPERM;
	struct weft_task *t;
	int err = task_create(rt, NULL, fn, arg, NULL, true, &t);
	if (err)
		return err;
	_Atomic uint32_t done = 0;
	t->ext_done = &done;
	weft__task_set_name(t, "main");
	weft__ready(t, WEFT__WAKE_NEXT);
	/* acquire: pairs with the release in task_finish; t->ret is then ours. */
	while (!atomic_load_explicit(&done, memory_order_acquire))
		weft__futex_wait(&done, 0, 0);
	if (ret)
		*ret = t->ret;
	/* The exiting worker may still be inside task_finish touching t;
	 * our reference keeps the record alive until it is done with it. */
	weft__task_unref(t);
	return 0;
}

WEFT_API unsigned weft_rt_workers(const weft_rt *rt)
{
	return rt ? rt->nworkers : 0;
}

WEFT_API weft_rt *weft_rt_current(void)
{
	struct weft__worker *w = weft__worker_current();
	return w ? w->rt : NULL;
}

