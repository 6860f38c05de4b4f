/*
 * src/sched/run.c: the worker's hot path, in one translation unit so that a
 * hand-off (a wait opened, parked, claimed, woken, switched) is inlined end
 * to end: enqueueing, the wake state machine, the switch and what follows
 * it, finding and stealing work, the worker loop, weft_yield, and the hot
 * half of the wait contract (weft__wait_begin, _park, _claim, _wake; their
 * interrupting half, cancellation and deadlines, is wait.c).
 *
 * Terms
 *   worker   a thread with a run queue (runq.h), a LIFO slot, a spawn deque
 *            (spawnq.h), a timer heap (timer.h) and an io_uring (io/ring.h),
 *            running coroutines from its own stack's scheduler loop
 *            (worker_loop) between switches;
 *   task     a coroutine record (struct weft_task, task.h);
 *   wait     one blocking episode of a task, numbered by wait_seq; opened by
 *            weft__wait_begin, ended by exactly one weft__wait_claim.
 *
 * Park/wake state machine (weft_task.state; stress/model/wake.pml)
 *
 *      RUNNABLE --(a worker switches to it)--> RUNNING
 *      RUNNING  --(weft__wait_park: switch out; scheduler CAS)--> PARKED
 *      RUNNING  --(wake arrives before that CAS)--> NOTIFIED
 *      NOTIFIED --(scheduler's CAS fails, sees it)--> RUNNABLE (queued at once)
 *      PARKED   --(wake: store)--> RUNNABLE (queued on the waker's worker)
 *
 *   A coroutine parks by switching out with action PARK, to the next task
 *   of its worker or to the scheduler's context (see Switching). Only on the
 *   other side, after its registers are saved, does the worker run the
 *   unlock function (releasing the lock of the queue the waiter sits in) and
 *   CAS RUNNING -> PARKED. A waker only ever learns of the task through a
 *   claim (weft__wait_claim), which succeeds once per wait, so each wait
 *   produces at most one wake. If the wake comes while the task is still
 *   RUNNING (claimed by weft_cancel from another thread, say, before the task
 *   got to switch out), the waker leaves NOTIFIED and walks away; the
 *   scheduler's CAS then fails and it queues the task itself. Either way
 *   exactly one party queues it, after its stack is no longer in use: never
 *   on two workers at once, and no wake is lost. A wake in any other state is
 *   a double wake: it dies.
 *
 *   Memory order: the scheduler's CAS to PARKED is a release that publishes
 *   the saved context; the waker's load that sees PARKED is an acquire of
 *   it (then a plain store of RUNNABLE: only the claim's winner wakes, and
 *   nothing else leaves PARKED); queueing the task (runq release/acquire, or
 *   a lock) carries it to the worker that resumes it. On the NOTIFIED path
 *   the waker's CAS is a release (publishing wake_reason) and the
 *   scheduler's failed CAS an acquire.
 *
 * Switching: a coroutine that yields, parks, spawns or ends switches
 *   straight to the next task when its worker has one in its own queues and
 *   no periodic duty is due (direct_next); otherwise to the scheduler's
 *   context, whose loop (find_work) does the duties, steals or parks. What
 *   the leaving task needs done once it is off its stack (queue it, CAS it
 *   to PARKED, push it on the spawn deque, recycle its stack) is recorded in
 *   self->action/self->prev and done by after_switch, which every context
 *   runs first when it gets control: a coroutine returning from switch_out,
 *   a fresh one in weft__task_entry, the scheduler in run_task.
 *
 * Spawn policy: child-first (work-first, as Cilk): weft_spawn switches to the
 *   child at once and pushes the parent's continuation on the worker's spawn
 *   deque. The worker resumes the newest continuation when a child parks or
 *   ends; thieves take the oldest, nearest the root, carrying the most work.
 *   A fork-join tree then runs depth-first on each worker, so live stacks
 *   stay near depth x workers instead of the tree's width. Rejected: the
 *   parent in the LIFO slot and older ones in the FIFO run queue (the first
 *   version), which resumed the oldest ancestor whenever the slot emptied
 *   and so widened the tree (docs/internals.md has the figures).
 *   WEFT_RT_PARENT_FIRST gives Go's policy (child queued, parent runs on).
 *
 * Who may call what: every function here is OWNER (the worker passed as
 * `self`, on its own thread: its scheduler or a coroutine running on it)
 * unless its comment says otherwise.
 */
#include "sched/rt.h"
#include "sched/idle.h"
#include "sched/inject.h"
#include "sched/run.h"
#include "sched/clock.h"
#include "debug_hooks.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ enqueue --- */

static void enqueue_back(struct weft__worker *self, struct weft_task *t);
static bool enqueue_back_quiet(struct weft__worker *self, struct weft_task *t);

/* Make t runnable: on the calling worker when it is one of t's runtime's,
 * as mode says (sched/wait.h), else through the injection queue. ANY. */
void weft__ready(struct weft_task *t, enum weft__wake_mode mode)
{
	struct weft_rt *rt = t->rt;
	struct weft__worker *w = weft__worker_current();
	if (!w || w->rt != rt) {
		/* Once t is queued it may run, finish, and let weft_rt_destroy
		 * free rt while we are still in notify_work: destroy waits for
		 * outside_wakers to drop to 0 first. seq_cst/release: the count
		 * is up before t is visible, and down after our last use of rt
		 * (destroy's acquire load pairs with it). */
		atomic_fetch_add_explicit(&rt->outside_wakers, 1, memory_order_seq_cst);
		weft__inject_push(rt, t, t, 1);
		weft__notify_work(rt);
		atomic_fetch_sub_explicit(&rt->outside_wakers, 1, memory_order_release);
		return;
	}
	WEFT__STAT(w, wakes, 1);
	switch (mode) {
	case WEFT__WAKE_BATCH:
		/* A batch keeps its order: the LIFO slot would run the last one
		 * first and push the earlier ones behind the whole queue. */
		enqueue_back(w, t);
		return;
	case WEFT__WAKE_IO:
		if (enqueue_back_quiet(w, t))
			weft__notify_local(rt);   /* overflowed: more than we hold */
		return;
	case WEFT__WAKE_NEXT:
		break;
	}
	struct weft_task *prev = w->lifo;
	w->lifo = t;
	if (prev)
		enqueue_back(w, prev);
}

/*
 * The spill: a solo worker's overflow (worker.h). With one worker nobody
 * can take the overflow off our hands, so the injection queue's lock, its
 * linked list (a dependent load per task when draining it, mostly cache
 * misses on task records) and the drain batches only cost. FIFO: while the
 * spill holds anything every push goes to its back, so whatever is in the
 * run queue is older than all of it, and find_local takes the run queue
 * first. It grows by doubling and is freed with the runtime; when growing
 * fails the push falls back to the run queue's overflow into the injection
 * queue (an order between the two is then lost: nothing else is). Emptied,
 * it keeps up to WEFT__SPILL_KEEP slots.
 */
#define WEFT__SPILL_KEEP 4096u      /* spill slots kept once it empties */

static inline uint32_t spill_len(const struct weft__worker *self)
{
	return self->spill_tail - self->spill_head;   /* wrapping: at most spill_cap */
}

static bool spill_push(struct weft__worker *self, struct weft_task *t)
{
	uint32_t cap = self->spill_cap;
	if (spill_len(self) == cap) {
		if (cap >= (1u << 30))
			return false;
		uint32_t ncap = cap ? 2 * cap : WEFT__RUNQ_CAP;
		struct weft_task **n = malloc(ncap * sizeof *n);
		if (!n)
			return false;
		for (uint32_t i = 0; i < cap; i++)
			n[i] = self->spill[(self->spill_head + i) & (cap - 1)];
		free(self->spill);
		self->spill = n;
		self->spill_head = 0;
		self->spill_tail = cap;
		self->spill_cap = cap = ncap;
	}
	self->spill[self->spill_tail++ & (cap - 1)] = t;
	return true;
}

/*
 * A solo worker's next two tasks, while it switches to the one before them:
 * n2's record (its first line: ctx, stack, state) starts loading now, and
 * n1's saved registers, at n1->ctx.sp in a line of n1's stack, whose record
 * was n2 one pop ago and so is in cache or on its way. Queued tasks are not
 * running and only this thread touches them (no thieves), so the read of
 * ctx.sp races with nothing. With more runnable coroutines than the L1 cache
 * holds stacks and records for, these were misses waited for in the switch.
 * The queues of several workers get no such look-ahead: a thief may take
 * the task behind ours and run it while we would read its ctx.
 */
static inline void prefetch_next(struct weft_task *n1, struct weft_task *n2)
{
	if (n2)
		__builtin_prefetch(n2);
	if (n1)
		__builtin_prefetch(n1->ctx.sp);
}

static inline struct weft_task *spill_pop(struct weft__worker *self)
{
	uint32_t h = self->spill_head, m = self->spill_cap - 1, n = spill_len(self);
	if (!n)
		return NULL;
	self->spill_head = h + 1;
	struct weft_task *t = self->spill[h & m];
	if (n == 1 && self->spill_cap > WEFT__SPILL_KEEP) {
		/* A burst is over: give back what it grew; the next burst grows
		 * it again. */
		free(self->spill);
		self->spill = NULL;
		self->spill_head = self->spill_tail = self->spill_cap = 0;
		return t;
	}
	prefetch_next(n > 1 ? self->spill[(h + 1) & m] : NULL,
	              n > 2 ? self->spill[(h + 2) & m] : NULL);
	return t;
}

/* Append t to the back of self's run queue; true when the queue overflowed
 * into the injection queue. */
static bool enqueue_back_quiet(struct weft__worker *self, struct weft_task *t)
{
	WEFT__ASSERT_OWNER(self);
	if (self->solo) {
		if (!spill_len(self) && weft__runq_try_push(&self->runq, t))
			return false;
		if (spill_push(self, t))
			return false;
	}
	struct weft_task **batch = self->overflow;   /* off the stack: see worker.h */
	unsigned n = weft__runq_push(&self->runq, t, batch);
	if (!n)
		return false;
	for (unsigned i = 0; i + 1 < n; i++)
		batch[i]->next = batch[i + 1];
	weft__inject_push(self->rt, batch[0], batch[n - 1], n);
	self->drain_inject = true;
	WEFT__STAT(self, inject_in, n);
	return true;
}

/* The same, then wake an idle worker to help (yield, LIFO-streak cap,
 * timer batches).
 *
 * I/O completions use enqueue_back_quiet alone (weft__ready, WAKE_IO): they
 * wake coroutines on the worker that owns the ring, and waking an idle
 * worker to steal them cost a wake-up (tens of microseconds) and moved
 * those connections' next operations onto the thief's ring. With the load
 * generator sharing a CPU with one worker, both workers then stayed busy,
 * took turns on the load's CPU, and the connections on whichever ring was
 * preempted waited out a time slice (docs/internals.md, the echo figures).
 * An idle worker still finds this work when it searches after its own, and
 * the monitor wakes one for work left queued while workers sleep. An
 * overflow into the injection queue still wakes one (weft__ready). */
static void enqueue_back(struct weft__worker *self, struct weft_task *t)
{
	enqueue_back_quiet(self, t);
	weft__notify_local(self->rt);
}

/* ----------------------------------------------------------- the wake --- */

/* The winner of t's claim makes it runnable. ANY. */
static void wake_task(struct weft_task *t, enum weft__wake_mode mode)
{
	weft__perturb();
	/* acquire: when it reads PARKED, pairs with the scheduler's release
	 * CAS to PARKED, so t's saved context is visible to us and, through
	 * the queue, to the worker that resumes it. */
	uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
	for (;;) {
		if (s == WEFT__T_PARKED) {
			/* A plain store, no CAS: only the winner of the wait's
			 * claim wakes (we are it), and nothing else leaves PARKED,
			 * so nobody can change the state between our load and this
			 * store (stress/model/wake.pml checks it with the two
			 * apart). relaxed: the queue publishes it to the resumer.
			 * A CAS here cost a locked instruction per hand-off. */
			atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
			weft__ready(t, mode);
			return;
		}
		if (s == WEFT__T_RUNNING) {
			/* release: publishes wake_reason to the scheduler whose CAS
			 * to PARKED fails on this value (acquire). Failure acquire:
			 * it may have just parked, and the PARKED path above needs
			 * the acquire of the first load. */
			if (atomic_compare_exchange_weak_explicit(&t->state, &s, WEFT__T_NOTIFIED,
			                                          memory_order_release,
			                                          memory_order_acquire))
				return;
		} else {
			weft__die("wake of coroutine %llu \"%s\" that is not parked (state %u): double wake",
			          (unsigned long long)t->id, t->name, s);
		}
	}
}

/* ------------------------------------------------------------- switch --- */

/* t has returned and is off its stack: recycle the stack, wake its joiner
 * (or weft_rt_run's thread), count the exit. */
static void task_finish(struct weft__worker *self, struct weft_task *t)
{
	weft__ctx_release(&t->ctx);
	weft__stack_put(self->stacks, t->stack);
	t->stack = NULL;

	weft__lock_acquire(&t->join_lock);
	t->finished = true;
	bool has = t->has_joiner;
	self->joiner = t->joiner;           /* a copy off the stack: see worker.h */
	t->has_joiner = false;
	_Atomic uint32_t *ext = t->ext_done;
	weft__unlock(&t->join_lock);
	if (has)
		weft__wait_claim_wake(&self->joiner, 0);
	if (ext) {
		/* release: the run thread reads t->ret after seeing 1 (acquire). */
		atomic_store_explicit(ext, 1, memory_order_release);
		weft__futex_wake(ext, INT_MAX);
	}
	atomic_store_explicit(&t->alive, 0, memory_order_relaxed);
	weft__task_unref(t);
	/* release: everything this task did (and every spawn it made) is
	 * visible to weft__live_tasks's acquire read of the new count. */
	WEFT__OWNER_ADD(self->exited, 1, memory_order_release);
}

/* Bookkeeping before self switches into t (from its scheduler or directly
 * from the coroutine that leaves). */
static inline void resume_prep(struct weft__worker *self, struct weft_task *t)
{
	self->current = t;
	WEFT__STAT(self, switches, 1);
	/* release: the monitor's acquire load then sees t's id and name as
	 * they were written before t was first made runnable. */
	atomic_store_explicit(&self->running, t, memory_order_release);
	/* relaxed: we own t now (we dequeued it); nobody else may write state
	 * until it opens a wait, which it does after this store in its own
	 * program order on this thread. */
	atomic_store_explicit(&t->state, WEFT__T_RUNNING, memory_order_relaxed);
	weft__stack_set_current(t->stack);
}

/*
 * The second half of a switch, run by whatever context the worker switched
 * into: a coroutine returning from switch_out, a fresh one in
 * weft__task_entry, or the scheduler in run_task. The task that left
 * (self->prev) could not do this itself: until its registers are saved and
 * its stack is left, no other worker may resume it (yield, park) and its
 * stack may not be recycled (exit). Boost.Context calls this running a
 * function "on top" of the context switched to.
 */
static void after_switch_slow(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_task *t = self->prev;
	self->prev = NULL;
	switch (self->action) {
	case WEFT__A_YIELD:
		atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
		enqueue_back(self, t);
		return;
	case WEFT__A_PARK: {
		if (self->unlock)
			self->unlock(self->unlock_arg);
		weft__perturb();            /* widen the unlock -> PARKED window */
		uint32_t s = WEFT__T_RUNNING;
		/* acq_rel: release publishes the saved context to the waker's
		 * acquire; on failure (NOTIFIED) acquire sees the waker's
		 * wake_reason. */
		if (!atomic_compare_exchange_strong_explicit(&t->state, &s, WEFT__T_PARKED,
		                                             memory_order_acq_rel,
		                                             memory_order_acquire)) {
			if (s != WEFT__T_NOTIFIED)
				weft__die("coroutine %llu parked in state %u", (unsigned long long)t->id, s);
			atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
			weft__ready(t, WEFT__WAKE_NEXT);
		}
		return;
	}
	case WEFT__A_SPAWN: {
		/* The parent's continuation goes on the spawn deque: this worker
		 * resumes it (newest first) when the child parks or ends, unless a
		 * thief takes it first (oldest first). */
		atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
		/* Wake a helper only when the deque holds two or more: a lone
		 * continuation is a spawn loop's parent, which this worker takes
		 * back as soon as the child parks or ends. Waking for it made
		 * idle workers steal the spawner back and forth, a wake system
		 * call per spawn. A recursion (fib, skynet) stacks continuations
		 * and wakes helpers at once; a lone continuation left behind a
		 * long child is found by a searching worker, or by the monitor's
		 * stranded-work check. */
		int held = weft__spawnq_push(&self->spawnq, t);
		if (held > 0)
			weft__notify_local(self->rt);
		else if (held < 0)
			enqueue_back(self, t);      /* deque full: FIFO queue */
		return;
	}
	case WEFT__A_EXIT:
		task_finish(self, t);
		return;
	default:
		weft__die("coroutine %llu switched out with no action", (unsigned long long)t->id);
	}
}

/* The test stays inline: a call into after_switch_slow on a coroutine's
 * stack allocates that coroutine an ASan fake stack (see WEFT__DIRECT). */
static inline void after_switch(struct weft__worker *self)
{
	if (self->prev)
		after_switch_slow(self);
}

/*
 * Direct switching is off in ASan builds. With detect_stack_use_after_return
 * (the asan setup), the first function with an addressable local that runs
 * on a coroutine's stack makes ASan map a fake stack for that coroutine
 * (an mmap, munmap and shadow per coroutine); after_switch and the queue
 * operations it calls have such locals (the expected values of their CASes),
 * so running them on every coroutine's stack made spawn-heavy tests run for
 * tens of minutes. In ASan builds every switch goes through the scheduler's
 * context, whose fake stack lives as long as the worker; TSan, valgrind and
 * the default builds test the direct path.
 */
#if defined(WEFT_ASAN)
#define WEFT__DIRECT 0
#else
#define WEFT__DIRECT 1
#endif

/* Scheduler side: run t until it switches back to the scheduler (having
 * perhaps switched directly to others in between). Returns the task to run
 * next when that is decided already (a spawned child, without direct
 * switching), else NULL. */
static struct weft_task *run_task(struct weft__worker *self, struct weft_task *t)
{
	resume_prep(self, t);
	weft__ctx_switch(&self->sched_ctx, &t->ctx, t);
	weft__stack_set_current(NULL);
	self->current = NULL;
	atomic_store_explicit(&self->running, NULL, memory_order_relaxed);
	after_switch(self);
	struct weft_task *child = self->action_task;
	self->action_task = NULL;
	return child;
}

static struct weft_task *direct_next(struct weft__worker *self);

/*
 * CORO: leave t (the caller, running on self) with an action, done by
 * after_switch on the other side. The next task is switched to directly when
 * the worker has one at hand and no periodic duty is due (direct_next): one
 * switch instead of two through the scheduler's context. A spawn always
 * switches straight into the child. Returns when some worker resumes t,
 * which may be another worker: self is the caller's worker before the
 * switch, and is looked up again after it. Never inlined: every coroutine
 * must leave through this one call of weft__ctx_switch (below), whatever
 * made it leave, so that the return the switch ends in is the one the
 * return-stack predictor expects.
 */
static __attribute__((noinline)) void switch_out(struct weft__worker *self, struct weft_task *t,
                                                 int action)
{
	self->action = action;
	self->prev = t;
	struct weft_task *next;
	if (action == WEFT__A_SPAWN) {
		next = NULL;
		if (WEFT__DIRECT) {             /* else run_task returns the child */
			next = self->action_task;
			self->action_task = NULL;
		}
	} else {
		next = direct_next(self);
	}
	struct weft__ctx *to = &self->sched_ctx;
	if (next) {
		resume_prep(self, next);
		to = &next->ctx;
	}
	/* One call site for every coroutine that leaves: the coroutine
	 * switched to left through it too (unless fresh or resumed by the
	 * scheduler), and the switch returns there with a `ret` the return
	 * stack predicts (see the x86-64 switch). */
	weft__ctx_switch(&t->ctx, to, next);
	after_switch(weft__worker_current());
}

void weft__switch_out(struct weft__worker *self, struct weft_task *t, int action)
{
	switch_out(self, t, action);
}

WEFT_API void weft_yield(void)
{
	struct weft__worker *w = weft__worker_current();
	if (w && w->current)
		switch_out(w, w->current, WEFT__A_YIELD);
}

/* Every coroutine's first frame (weft__ctx_make's entry, on its own stack). */
void weft__task_entry(void *data)
{
	struct weft_task *t = data;
	after_switch(weft__worker_current());   /* for the one we switched from */
	t->ret = t->fn(t->arg);
	if (t->locals)
		weft__locals_release(t);        /* destructors run as the coroutine */
	struct weft__worker *w = weft__worker_current();   /* not the one we started on */
	w->action = WEFT__A_EXIT;
	w->prev = t;
	struct weft_task *next = direct_next(w);
	if (next) {
		resume_prep(w, next);
		weft__ctx_exit(&t->ctx, &next->ctx, next);
	}
	weft__ctx_exit(&t->ctx, &w->sched_ctx, NULL);
}

/* ------------------------------------------------------------ finding --- */

static inline uint32_t rng_next(uint32_t *s)
{
	uint32_t x = *s;   /* xorshift32: victim order only */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* How many batch wakes fit the run queue without overflowing it: an overflow
 * moves the queue's oldest half to the injection queue, which would reorder
 * the batch. Timers beyond that stay armed and fire in the next round. */
static unsigned batch_room(struct weft__worker *self)
{
	uint32_t len = weft__runq_len(&self->runq);
	return len >= WEFT__RUNQ_CAP ? 0 : WEFT__RUNQ_CAP - len;
}

/* Steal from the others in random order; the searching cap of Go. */
static struct weft_task *steal_work(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_rt *rt = self->rt;
	unsigned n = rt->nworkers;
	if (n == 1)
		return NULL;
	if (!self->searching) {
		uint32_t busy = n - atomic_load_explicit(&rt->nidle, memory_order_relaxed);
		if (2 * atomic_load_explicit(&rt->nsearching, memory_order_relaxed) >= busy)
			return NULL;
		self->searching = true;
		atomic_fetch_add_explicit(&rt->nsearching, 1, memory_order_seq_cst);
	}
	for (int round = 0; round < 4; round++) {
		unsigned start = rng_next(&self->rng) % n;
		for (unsigned i = 0; i < n; i++) {
			struct weft__worker *v = &rt->workers[(start + i) % n];
			if (v == self)
				continue;
			/* Due timers of a worker held by a long-running coroutine
			 * are not hostage: fire them here (the heap has a lock;
			 * the woken come to us, WAKE_BATCH). Only when overdue by
			 * WEFT__TIMER_HOSTAGE_NS (the owner fires its own every 8
			 * ticks), and only if the lock is free: racing the owner
			 * for every due batch had both workers spinning on the
			 * heap lock. */
			uint64_t due = weft__timer_next(&v->timers);
			if (due != UINT64_MAX && due + WEFT__TIMER_HOSTAGE_NS <= weft__now()) {
				weft__timer_run_try(&v->timers, weft__now(), batch_room(self));
				if (self->lifo || weft__runq_len(&self->runq))
					return NULL;        /* found work: find_work takes it */
			}
			/* the oldest continuation first: it carries the most work */
			WEFT__STAT(self, steals_tried, 1);
			struct weft_task *t = weft__spawnq_steal(&v->spawnq);
			if (t || (t = weft__runq_steal(&v->runq, &self->runq))) {
				WEFT__STAT(self, steals, 1);
				return t;
			}
		}
		struct weft_task *t = weft__inject_take(rt, self);
		if (t)
			return t;
		/* No pause between rounds (Go's four passes have none either):
		 * pause instructions here kept a worker with nothing to do
		 * spinning before it parked, without looking at its own ring,
		 * on a CPU another process (a load generator) needed. */
	}
	return NULL;
}

/* Called with a task found: leave the searching state, and if we were the
 * last searcher, wake another worker, as there may be more work about. */
static void found_work(struct weft__worker *self)
{
	if (!self->searching)
		return;
	self->searching = false;
	if (atomic_fetch_sub_explicit(&self->rt->nsearching, 1, memory_order_seq_cst) == 1)
		weft__notify_work(self->rt);
}

/* Fire self's due timers; the woken queue in order (WAKE_BATCH, set by
 * wait_timer_fire). */
static unsigned fire_timers(struct weft__worker *self)
{
	uint64_t next = weft__timer_next(&self->timers);
	if (next == UINT64_MAX)
		return 0;
	unsigned n = weft__timer_run(&self->timers, weft__now(), batch_room(self));
	WEFT__STAT(self, timers_fired, n);
	return n;
}

/* Submit and reap; the completions' wakes keep their order (WAKE_IO, set by
 * their callbacks in io/ops.c). */
static int ring_poll(struct weft__worker *self)
{
	int n = weft__ring_poll(&self->ring);
	if (n > 0)
		WEFT__STAT(self, io_completions, (unsigned)n);
	return n;
}

/* Whether self has work queued besides its LIFO slot: in its run queue, its
 * spawn deque, or its run queue's overflow, waiting in the injection queue
 * (drain_inject) or in a solo worker's spill. */
static inline bool queued_here(struct weft__worker *self)
{
	return weft__runq_len(&self->runq) || weft__spawnq_nonempty(&self->spawnq) ||
	       self->drain_inject || spill_len(self);
}

/* The next task from self's own queues, in the scheduler's order. */
static struct weft_task *find_local(struct weft__worker *self, uint32_t tick)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_task *t;
	if (self->lifo) {
		t = self->lifo;
		self->lifo = NULL;
		/* The cap is for the queue's sake: with nothing else queued
		 * here there is nobody to give a turn to, and requeueing the
		 * pair's next half only woke an idle worker (enqueue_back ->
		 * notify_local), which stole it: every third hand-off of a
		 * ping-pong pair crossed workers through a ring wake. The
		 * streak keeps counting, so the first task queued behind a long
		 * streak gets its turn at once. The injection queue, timers and
		 * remote calls are find_work's periodic duties, which a streak
		 * does not skip. */
		if (self->lifo_streak++ < WEFT__LIFO_MAX || !queued_here(self))
			return t;
		enqueue_back(self, t);  /* ping-pong pair: give the queue a turn */
	}
	self->lifo_streak = 0;
	/* Continuations and the FIFO queue take turns. Continuations first
	 * always (depth-first) starved woken coroutines while a parent
	 * spawned in a loop (the sleep benchmark's 100k sleepers); taking
	 * turns keeps fork-join trees as narrow. */
	if (tick & 1 && (t = weft__spawnq_take(&self->spawnq)))
		return t;
	/* Our run queue overflowed: its oldest half went to the injection
	 * queue, so those run before what is left here, in order (see
	 * weft__drain_next) — FIFO order survives the overflow (timer batches
	 * rely on it). */
	if (self->drain_inject) {
		if ((t = weft__drain_next(self->rt, self)))
			return t;
		self->drain_inject = false;
	}
	if (self->solo) {
		if ((t = weft__runq_pop_solo(&self->runq))) {
			prefetch_next(weft__runq_peek_solo(&self->runq, 0),
			              weft__runq_peek_solo(&self->runq, 1));
			return t;
		}
		if ((t = spill_pop(self)))
			return t;
	} else if ((t = weft__runq_pop(&self->runq))) {
		return t;
	}
	if ((t = weft__spawnq_take(&self->spawnq)))
		return t;
	return NULL;
}

/*
 * CORO: whether one of find_work's periodic duties has something to do at
 * this tick: remote calls queued; the timer check (every 8 ticks) with a
 * timer armed on this worker; the fairness check (every WEFT__INJECT_EVERY
 * ticks) with SQEs prepared or I/O in flight, our own overflow to drain, or
 * tasks in the injection queue. A duty with nothing to do is a no-op in
 * find_work too (fire_timers of an empty heap, an inject_take that reads a
 * zero length), so skipping the visit changes nothing but its cost: two
 * switches through the scheduler's context instead of one, both ending in
 * the switch's jump exit, which leaves the return stack unbalanced for the
 * returns after it (see the x86-64 switch). The loads are the same relaxed
 * hints find_work reads: a timer armed or a task injected by another thread
 * just after we looked is seen at the next due tick, as find_work would
 * have seen it.
 */
static inline bool duty_due(struct weft__worker *self, uint32_t tick)
{
	if (atomic_load_explicit(&self->calls, memory_order_relaxed))
		return true;
	if ((tick & 7) == 0 && weft__timer_next(&self->timers) != UINT64_MAX)
		return true;
	if (tick % WEFT__INJECT_EVERY == 0 &&
	    (weft__ring_busy(&self->ring) || self->drain_inject ||
	     atomic_load_explicit(&self->rt->inject_len, memory_order_relaxed)))
		return true;
	return false;
}

/*
 * CORO (switch_out, weft__task_entry): the task to switch to directly, or
 * NULL to go through the scheduler's context: NULL whenever a periodic duty
 * of find_work has work this tick (duty_due), so direct switching changes
 * no fairness rule, and when self's own queues are empty. One switch per
 * yield instead of two.
 */
static struct weft_task *direct_next(struct weft__worker *self)
{
	if (!WEFT__DIRECT)
		return NULL;
	uint32_t tick = self->tick + 1;
	if (duty_due(self, tick))
		return NULL;
	struct weft_task *t = find_local(self, tick);
	if (t)
		self->tick = tick;          /* a scheduling step like find_work's */
	return t;
}

/* The scheduler context: the next task to run, or NULL when the runtime
 * stops. */
static struct weft_task *find_work(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_rt *rt = self->rt;
	for (;;) {
		uint32_t tick = ++self->tick;
		struct weft_task *t;

		if (atomic_load_explicit(&self->calls, memory_order_relaxed))
			weft__run_remote_calls(self);
		if ((tick & 7) == 0)
			fire_timers(self);
		if (tick % WEFT__INJECT_EVERY == 0) {
			if (weft__ring_busy(&self->ring))
				ring_poll(self);
			/* While draining our own overflow, in order (drain_next):
			 * a batch would land behind newer tasks in the run queue. */
			if ((t = self->drain_inject ? weft__drain_next(rt, self)
			                            : weft__inject_take(rt, self)))
				return t;
		}
		if ((t = find_local(self, tick)))
			return t;
		if ((t = weft__inject_take(rt, self)))
			return t;

		/* Local work ran dry: one scheduling round is over. Submit the
		 * SQEs it prepared, reap, fire timers; any of these may make
		 * tasks runnable here. */
		if (weft__ring_busy(&self->ring) && ring_poll(self) > 0)
			continue;
		if (fire_timers(self))
			continue;
		if (self->lifo || queued_here(self))
			continue;
		if (atomic_load_explicit(&rt->stop, memory_order_acquire))
			return NULL;
		if ((t = steal_work(self)))
			return t;               /* worker_loop calls found_work */
		weft__worker_park(self);
	}
}

/* The worker thread's loop, until the runtime stops (rt.c, worker_main). */
void weft__worker_loop(struct weft__worker *self)
{
	WEFT__ASSERT_OWNER(self);
	struct weft_task *t;
	while ((t = find_work(self))) {
		/* A worker woken to search counts in nsearching until it finds
		 * work, wherever it finds it: its own queues after a ring wake, the
		 * injection queue, or a victim. Leaving the count only on a steal
		 * kept a woken worker "searching" for as long as it ran what it
		 * took from the injection queue, and every notify_work meanwhile
		 * saw a searcher and woke nobody: fork-join trees ran on one
		 * worker of two. */
		found_work(self);
		do
			t = run_task(self, t);
		while (t);
	}
}

/* ------------------------------------------- waits: the hot half --- */

/* Under the heap's lock, on whichever thread fires it (the owner, a thief
 * in steal_work, the monitor): the wait's deadline passed. */
static void wait_timer_fire(struct weft__timer *tm)
{
	struct weft_task *t = weft__container_of(tm, struct weft_task, timer);
	/* The timer belongs to the wait that armed it: that wait's seq is the
	 * current wait_seq of t unless the wait already ended, in which case
	 * the claim below fails harmlessly. Reading wait_seq here races with
	 * nothing: it changes only when t opens a new wait, after it removed
	 * this timer under this heap's lock, which we hold. */
	struct weft__waiter w = { t, t->wait_seq };
	if (weft__wait_claim(&w))
		weft__wait_wake_as(&w, -ETIMEDOUT, WEFT__WAKE_BATCH);
}

/*
 * CORO: the calling task opened a wait and then lost the claim on it to a
 * canceller before it could park: that canceller is about to call wake_task
 * (or has), which will find the task RUNNING and leave NOTIFIED. Consume
 * that wake here rather than by parking, since the caller may hold a
 * spinlock: wait for the NOTIFIED (the canceller is between two
 * instructions of its own) and return to RUNNING, so the wake cannot land
 * on a later wait.
 */
static void absorb_wake(struct weft_task *t)
{
	for (unsigned spins = 0;; spins++) {
		uint32_t s = WEFT__T_NOTIFIED;
		/* acquire: pairs with the waker's release CAS to NOTIFIED. */
		if (atomic_compare_exchange_weak_explicit(&t->state, &s, WEFT__T_RUNNING,
		                                          memory_order_acquire,
		                                          memory_order_relaxed))
			return;
		if (spins > 64)
			sched_yield();      /* the canceller was preempted */
		else
			ck_pr_stall();
	}
}

/* CORO (sched/wait.h). */
int weft__wait_begin(struct weft__waiter *wt, uint64_t deadline, unsigned flags)
{
	struct weft__worker *w = weft__worker_current();
	struct weft_task *t = w ? w->current : NULL;
	if (!t)
		return -EPERM;
	if (t->shield)
		flags &= ~WEFT__WAIT_INTERRUPTIBLE;
	if (flags & WEFT__WAIT_INTERRUPTIBLE) {
		/* A pending cancel wins over a deadline already passed: every
		 * blocking call after a cancel returns -ECANCELED. */
		if (atomic_load_explicit(&t->cancel, memory_order_relaxed))
			return -ECANCELED;   /* fast path: nothing opened yet */
		/* The region's deadline, when nearer, bounds an interruptible
		 * wait; an uninterruptible one (wait.h) never sees it, and an op
		 * that put it in the kernel already folded it in. */
		if (t->deadline && !(flags & WEFT__WAIT_OWN_TIMEOUT) &&
		    (!deadline || t->deadline < deadline))
			deadline = t->deadline;
	}
	if (flags & WEFT__WAIT_OWN_TIMEOUT)
		deadline = 0;                   /* the caller's timeout is in the kernel */
	if (deadline && !(flags & WEFT__WAIT_IN_ORDER) && deadline <= weft__now())
		return -ETIMEDOUT;
	uint64_t seq = ++t->wait_seq;
	wt->task = t;
	wt->seq = seq;
	/* relaxed: published by the store of `wait` below (release or
	 * seq_cst), which a canceller reads (acquire) before the flags. */
	atomic_store_explicit(&t->wait_flags, flags, memory_order_relaxed);
	t->wake_reason = 0;
	/* The Dekker pair with weft_cancel (wait.c, weft__membarrier_mode).
	 * release: publishes wait_flags to the canceller's acquire load of
	 * `wait`. */
	if (weft__membarrier_mode) {
		atomic_store_explicit(&t->wait, (seq << 1) | 1, memory_order_release);
		atomic_signal_fence(memory_order_seq_cst);  /* store, then load: compiler order */
	} else {
		atomic_store_explicit(&t->wait, (seq << 1) | 1, memory_order_seq_cst);
	}
	weft__perturb();
	if ((flags & WEFT__WAIT_INTERRUPTIBLE) &&
	    atomic_load_explicit(&t->cancel, memory_order_seq_cst)) {
		if (!weft__wait_claim(wt))
			absorb_wake(t);
		return -ECANCELED;
	}
	if (deadline) {
		/* relaxed atomic store: weft_dump samples it from another thread
		 * (a TSan report); the heap reads it under its lock after add */
		__atomic_store_n(&t->timer.deadline, deadline, __ATOMIC_RELAXED);
		t->timer.fire = wait_timer_fire;
		int err = weft__fault("wait.timer_add") ? -ENOMEM
		          : weft__timer_add(&w->timers, &t->timer);
		if (err) {
			if (!weft__wait_claim(wt))
				absorb_wake(t);
			return err;
		}
	}
	return 0;
}

/* CORO (sched/wait.h). */
void weft__wait_begin_uninterruptible(struct weft__waiter *wt)
{
	/* No deadline and not interruptible: nothing but "outside a
	 * coroutine" can make it fail, and that is a caller's bug. */
	int err = weft__wait_begin(wt, 0, 0);
	if (err)
		weft__die("uninterruptible wait opened outside a coroutine (%s)", strerror(-err));
}

/* CORO (sched/wait.h). */
int weft__wait_park(struct weft__waiter *wt, void (*unlock)(void *), void *arg)
{
	struct weft__worker *w = weft__worker_current();
	struct weft_task *t = w ? w->current : NULL;
	/* Parking on a record that is not the caller's open wait (its begin
	 * failed and the error was dropped) would switch out a task that no
	 * source can wake, or none at all: say so instead of crashing later. */
	if (__builtin_expect(!t || wt->task != t || wt->seq != t->wait_seq, 0))
		weft__die("park on a wait that is not open (a failed weft__wait_begin ignored?)");
	w->unlock = unlock;
	w->unlock_arg = arg;
	switch_out(w, t, WEFT__A_PARK);
	/* Woken: the winner's wake_reason is visible (see the state machine).
	 * Take the timer down before the next wait can re-arm it; if it is
	 * firing right now, weft__timer_cancel waits for that to finish. */
	weft__timer_cancel(&t->timer);
	return t->wake_reason;
}

/* ANY (sched/wait.h). */
bool weft__wait_claim(const struct weft__waiter *wt)
{
	uint64_t open = (wt->seq << 1) | 1;
	/* acq_rel: acquire orders the claimer's hand-over after the waiter's
	 * registration; release publishes the close to later claimers. */
	return atomic_compare_exchange_strong_explicit(&wt->task->wait, &open, wt->seq << 1,
	                                               memory_order_acq_rel,
	                                               memory_order_relaxed);
}

/* ANY (sched/wait.h): the claim's winner only. */
void weft__wait_wake_as(const struct weft__waiter *wt, int reason, enum weft__wake_mode mode)
{
	wt->task->wake_reason = reason;
	wake_task(wt->task, mode);
}
