/*
 * The scheduler: workers, park/wake, spawn/join/cancel, sleep.
 *
 * Terms
 *   worker   a thread with a run queue (runq.h), a LIFO slot, a timer heap
 *            (timer.h) and an io_uring (io/ring.h), running coroutines on its
 *            own stack's scheduler loop (worker_loop) between switches;
 *   task     a coroutine record (struct weft_task) with its context and stack;
 *   wait     one blocking episode of a task, numbered by wait_seq; opened by
 *            weft__wait_begin, ended by exactly one weft__wait_claim.
 *
 * Park/wake state machine (weft_task.state)
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
 *   CAS RUNNING -> PARKED. A waker only ever learns of the task
 *   through a claim (weft__wait_claim), which succeeds once per wait, so each
 *   wait produces at most one wake. If the wake comes while the task is still
 *   RUNNING (claimed by weft_cancel from another thread, say, before the task
 *   got to switch out), the waker leaves NOTIFIED and walks away; the
 *   scheduler's CAS then fails and it queues the task itself. Either way
 *   exactly one party queues it, after its stack is no longer in use: never
 *   on two workers at once, and no wake is lost. A wake in any other state is
 *   a double wake: it aborts.
 *
 *   Memory order: the scheduler's CAS to PARKED is a release that publishes
 *   the saved context; the waker's load that sees PARKED is an acquire of
 *   it (then a plain store of RUNNABLE: only the claim's winner wakes, and
 *   nothing else leaves PARKED);
 *   queueing the task (runq release/acquire, or a lock) carries it to the
 *   worker that resumes it. On the NOTIFIED path the waker's CAS is a release
 *   (publishing wake_reason) and the scheduler's failed CAS an acquire.
 *
 * Switching: a coroutine that yields, parks, spawns or ends switches
 *   straight to the next task when its worker has one in its own queues and
 *   no periodic duty is due (direct_next); otherwise to the scheduler's
 *   context, whose loop (find_work) does the duties, steals or parks. What
 *   the leaving task needs done once it is off its stack (queue it, CAS it
 *   to PARKED, push it on the spawn deque, recycle its stack) is recorded in
 *   w->action/w->prev and done by after_switch, which every context runs
 *   first when it gets control: a coroutine returning from switch_out, a
 *   fresh one in task_entry, the scheduler in run_task.
 *
 * Cancellation: weft_cancel sets task->cancel, then claims the open wait if it
 *   is cancellable. weft__wait_begin opens the wait, then checks the flag. Both
 *   sides use seq_cst on the flag and the claim word (a Dekker pair), so either
 *   the canceller sees the open wait or the waiter sees the flag.
 *
 * Spawn policy: child-first (work-first, as Cilk): weft_spawn switches to the
 *   child at once and pushes the parent's continuation on the worker's spawn
 *   deque (spawnq.h). The worker resumes the newest continuation when a child
 *   parks or ends; thieves take the oldest, nearest the root, carrying the
 *   most work. A fork-join tree then runs depth-first on each worker, so live
 *   stacks stay near depth x workers instead of the tree's width. Measured on
 *   skynet(1M), 1 worker: parent waiting in the LIFO slot and older ones in
 *   the FIFO run queue (the first version) resumed the *oldest* ancestor
 *   whenever the slot emptied, widening the tree: 1.27 s and ~1,700 stacks
 *   for 100k leaves; the spawn deque: 0.24 s and 1.5 MiB peak RSS in all.
 *   WEFT_RT_PARENT_FIRST gives Go's policy (child queued, parent runs on):
 *   5.9 s on the same tree.
 *
 * Idle workers (Go's spinning-M protocol): a worker out of local work becomes
 *   "searching" (rt->nsearching) unless half the busy workers already search,
 *   steals half of a random victim's queue, and if it finds nothing, puts
 *   itself on the idle list, re-checks every queue, and parks in its ring.
 *   Whoever makes work available calls notify_work: if no worker searches and
 *   one is idle, it takes one off the idle list and wakes its ring. A
 *   searching worker that finds work, when it was the last one searching,
 *   wakes one more. The lost-wake-up argument is at notify_work; a worker
 *   pushing on its own queues skips the fence when nobody is idle
 *   (notify_local), and the monitor wakes a worker for work stranded that
 *   way. Coroutines woken by I/O completions wake no helper at all: the
 *   ring's worker runs them (see enqueue_back), unless they overflow its
 *   run queue.
 *
 * Shutdown: weft_rt_destroy sets rt->shutdown (new spawns start cancelled),
 *   cancels every live task by walking the record slabs, waits for the live
 *   count (weft__live_tasks: per-worker counters, double collect) to reach 0, then sets rt->stop, wakes every worker and joins them.
 *
 * Rejected: one global queue (contention at every spawn); Chase-Lev owner pops
 *   at the tail (does not combine with stealing half, see runq.h); waking a
 *   worker per new task (a futex/MSG_RING round trip costs ~50 us here).
 */
#include "sched/core.h"
#include "ctx/tls.h"
#include "debug_hooks.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers --- */

struct weft__worker;
static void enqueue_back(struct weft__worker *w, struct weft_task *t);
static bool enqueue_back_quiet(struct weft__worker *w, struct weft_task *t);
static void *monitor_main(void *arg);
static unsigned batch_room(struct weft__worker *w);

static __thread struct weft__worker *tls_worker
	__attribute__((tls_model("initial-exec")));

/*
 * The worker running the caller, read anew on every call: a coroutine may
 * resume on another thread after any switch (ctx/tls.h). Inline where
 * ctx/tls.h can: a channel hand-off asked up to seven times, each an
 * out-of-line call before (pingpong 1w, 5 runs alternating pinned: 149-159
 * ns before, 141-148 after). Elsewhere out of line, with a memory clobber.
 */
#if WEFT__TLS_INLINE
static WEFT__TLS_OFFSET(tls_worker_off, tls_worker)

static inline struct weft__worker *worker_current(void)
{
	return *WEFT__TLS_AT(struct weft__worker *, tls_worker_off);
}
#else
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noinline, noclone))
#endif
static struct weft__worker *worker_current(void)
{
	__asm__ volatile("" ::: "memory");
	return tls_worker;
}
#endif

/* The coroutine running the caller, or NULL (a plain thread, or a worker
 * in its scheduler context). weft_self() for this file, without the call. */
static inline struct weft_task *task_current(void)
{
	struct weft__worker *w = worker_current();
	return w ? w->current : NULL;
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

WEFT_API uint64_t weft_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ~5 ns: for coroutine ages in weft_dump, not for deadlines. */
uint64_t weft__coarse_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint32_t rng_next(uint32_t *s)
{
	uint32_t x = *s;   /* xorshift32: victim order only */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

void weft__die(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "weft: %s\n", buf);
	abort();
}

/*
 * Cancellation's Dekker pair: weft__wait_begin stores `wait` (open) then
 * loads `cancel`; weft_cancel stores `cancel` then loads `wait`. At least
 * one of them must see the other's store, or a cancel lands between a
 * wait's opening and its parking and is lost. seq_cst on both sides does
 * it with a locked instruction on the waiter's side (x86: xchg), and every
 * blocking call opens a wait: ~7% of a channel hand-off (pingpong, ring)
 * was that xchg. Cancels are rare, so the barrier goes to their side:
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread
 * of the process execute a full barrier between the canceller's store and
 * its load (a thread not running passes one when it is switched out). The
 * waiter keeps only the compiler's order (atomic_signal_fence). Then, with
 * P the point where the waiter's thread executes that barrier: if P comes
 * after the waiter's store of `wait`, the canceller's load (after the
 * syscall) sees the open wait; if P comes before it, the waiter's load of
 * `cancel` comes after P, which comes after the canceller's store, and sees
 * it. Either way one side sees the other (the asymmetric fences of
 * userspace RCU and Folly). A cancel costs the syscall and an IPI to each
 * CPU running one of our threads: microseconds, once per weft_cancel.
 *
 * Registered once per process, at the first weft_rt_create, before any
 * coroutine exists; where the kernel lacks it (before 4.14) or seccomp
 * refuses it, both sides stay seq_cst. membarrier_mode never changes after
 * that, and coroutines and cancels only exist after it is set (rt_create
 * happens-before the workers and whatever spawns).
 */
static bool membarrier_mode;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void membarrier_register(void)
{
	membarrier_mode = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* ---------------------------------------------------- injection queue --- */

/* Any thread. Append the chain first..last (n tasks) to the injection queue. */
static void inject_push(struct weft_rt *rt, struct weft_task *first, struct weft_task *last,
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
 * Owner of w, draining its own overflow: the next task in FIFO order. The
 * overflow went to the injection queue's tail, so its tasks are older than
 * everything left in the run queue and must run first, in order: pushing a
 * batch behind the run queue's tasks would reorder them (timer batches rely
 * on the order). Taking them one lock hold each cost ~35% of the yield
 * benchmark (1,000 yielders, a 256-slot queue: every yield goes round
 * through the overflow); now up to WEFT__DRAIN_BATCH come out per hold into
 * w->drain, which runs before the run queue.
 */
static struct weft_task *drain_next(struct weft_rt *rt, struct weft__worker *w)
{
	if (w->drain_i < w->drain_n)
		return w->drain[w->drain_i++];
	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed) == 0)
		return NULL;
	unsigned n = 0;
	pthread_mutex_lock(&rt->inject_lock);
	while (n < WEFT__DRAIN_BATCH && rt->inject_head) {
		struct weft_task *x = rt->inject_head;
		w->drain[n++] = x;
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
	WSTAT_ADD(w, inject_out, n);
	w->drain_n = n;
	w->drain_i = 1;
	return w->drain[0];
}

/* Owner of w. Take a fair share of the injection queue: one task to run, the
 * rest into w's run queue (which is empty or nearly: we only call this when
 * the local queue ran dry, or on the fairness tick with room to spare). */
static struct weft_task *inject_take(struct weft_rt *rt, struct weft__worker *w)
{
	if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed) == 0)
		return NULL;
	pthread_mutex_lock(&rt->inject_lock);
	uint32_t len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
	uint32_t room = WEFT__RUNQ_CAP - weft__runq_len(&w->runq);
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
		weft__runq_push_batch(&w->runq, batch, n - 1);
	WSTAT_ADD(w, inject_out, n);
	return t;
}

/* ------------------------------------------------------ idle workers --- */

/*
 * Called after making work available where another worker could take it.
 *
 * Lost-wake-up argument: the producer publishes the work, then a seq_cst
 * fence, then reads nidle and nsearching. A worker going idle first leaves
 * the searching count and joins the idle list, then a seq_cst fence, then
 * re-checks every queue (worker_idle_recheck). By the fences, either the
 * producer sees the idle worker (and wakes one) or the idle worker sees the
 * work. If the producer sees a searcher and wakes nobody, that searcher will
 * itself either find the work or go idle and then re-check.
 */
static void notify_work(struct weft_rt *rt)
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
	struct weft__worker *self = worker_current();
	weft__ring_wake(self && self->rt == rt ? &self->ring : NULL, &v->ring);
}

/*
 * After a worker pushed onto its own queues (or overflowed them into the
 * injection queue it then drains itself): work it will run anyway if nobody
 * helps, so a missed wake-up costs parallelism, never progress. That lets
 * the common case, no idle worker, skip notify_work's fence: a relaxed read
 * of nidle. The race it leaves: a worker going idle at this moment may miss
 * our push in its re-check while we read a stale 0; it then sleeps until
 * the next notify (the next spawn or wake, or its timer; the monitor also
 * wakes a worker for stranded work). Waking on pushes rather than only on
 * empty -> non-empty, as Go's wakep does in newproc and ready: the latter
 * left a parked worker asleep for the whole of fib(30), whose deque is never
 * empty once the recursion is under way.
 */
static inline void notify_local(struct weft_rt *rt)
{
	if (rt->nworkers > 1 && atomic_load_explicit(&rt->nidle, memory_order_relaxed) != 0)
		notify_work(rt);
}

static void idle_push(struct weft_rt *rt, struct weft__worker *w)
{
	pthread_mutex_lock(&rt->idle_lock);
	w->in_idle = true;
	w->woken_searching = false;
	rt->idle[rt->nidle_list++] = w->index;
	atomic_fetch_add_explicit(&rt->nidle, 1, memory_order_seq_cst);
	pthread_mutex_unlock(&rt->idle_lock);
}

/* Leave the idle list. Returns true if a waker took us off it (and so we
 * start out searching, counted by the waker). */
static bool idle_leave(struct weft_rt *rt, struct weft__worker *w)
{
	bool woken;
	pthread_mutex_lock(&rt->idle_lock);
	if (w->in_idle) {
		for (unsigned i = 0; i < rt->nidle_list; i++) {
			if (rt->idle[i] == w->index) {
				rt->idle[i] = rt->idle[--rt->nidle_list];
				break;
			}
		}
		w->in_idle = false;
		atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
		woken = false;
	} else {
		woken = w->woken_searching;
		w->woken_searching = false;
	}
	pthread_mutex_unlock(&rt->idle_lock);
	return woken;
}

/* ------------------------------------------------------- task records --- */

static struct weft_task *task_alloc(struct weft_rt *rt, struct weft__worker *w)
{
	struct weft_task *t;
	if (w && w->free_tasks) {
		t = w->free_tasks;
		w->free_tasks = t->next;
		w->nfree_tasks--;
		return t;
	}
	pthread_mutex_lock(&rt->pool_lock);
	if (!rt->free_tasks) {
		/* Growth: a slab of records; never freed before weft_rt_destroy,
		 * so a stale waiter may still read a record (see wait.h). */
		unsigned n = 256;
		struct weft__slab *s = weft__fault("spawn.slab") ? NULL
		                       : calloc(1, sizeof *s + n * sizeof(struct weft_task));
		if (!s) {
			pthread_mutex_unlock(&rt->pool_lock);
			return NULL;
		}
		s->n = n;
		s->next = rt->slabs;
		rt->slabs = s;
		for (unsigned i = 0; i < n; i++) {
			s->tasks[i].next = rt->free_tasks;
			rt->free_tasks = &s->tasks[i];
		}
	}
	t = rt->free_tasks;
	rt->free_tasks = t->next;
	/* Refill the worker's cache in one go to keep the lock cold. */
	if (w) {
		for (unsigned i = 0; i < 32 && rt->free_tasks; i++) {
			struct weft_task *x = rt->free_tasks;
			rt->free_tasks = x->next;
			x->next = w->free_tasks;
			w->free_tasks = x;
			w->nfree_tasks++;
		}
	}
	pthread_mutex_unlock(&rt->pool_lock);
	return t;
}

static void task_free(struct weft_rt *rt, struct weft__worker *w, struct weft_task *t)
{
	if (w && w->rt == rt && w->nfree_tasks < WEFT__TASK_CACHE) {
		t->next = w->free_tasks;
		w->free_tasks = t;
		w->nfree_tasks++;
		return;
	}
	pthread_mutex_lock(&rt->pool_lock);
	t->next = rt->free_tasks;
	rt->free_tasks = t;
	pthread_mutex_unlock(&rt->pool_lock);
}

static void task_unref(struct weft_task *t)
{
	/* References are only ever dropped (2 for a joinable task, 1 for a
	 * detached one, set at creation), so reading 1 means we hold the last
	 * one and nobody can touch the count again: free without the RMW, which
	 * costs ~10% of fib. acquire: pairs with the other holder's release in
	 * its fetch_sub, so its writes (ret, joiner...) precede the recycling.
	 * Otherwise acq_rel: the last holder must see every write made by the
	 * others before it recycles the record. */
	if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1 ||
	    atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		task_free(t->rt, worker_current(), t);
}

/* ------------------------------------------------------------ running --- */

/* Make t runnable on the calling worker (LIFO slot), or through the
 * injection queue when the caller is not one of rt's workers. */
static void ready(struct weft_task *t)
{
	struct weft_rt *rt = t->rt;
	struct weft__worker *w = worker_current();
	if (!w || w->rt != rt) {
		/* Once t is queued it may run, finish, and let weft_rt_destroy
		 * free rt while we are still in notify_work: destroy waits for
		 * outside_wakers to drop to 0 first. seq_cst/release: the count
		 * is up before t is visible, and down after our last use of rt
		 * (destroy's acquire load pairs with it). */
		atomic_fetch_add_explicit(&rt->outside_wakers, 1, memory_order_seq_cst);
		inject_push(rt, t, t, 1);
		notify_work(rt);
		atomic_fetch_sub_explicit(&rt->outside_wakers, 1, memory_order_release);
		return;
	}
	WSTAT_ADD(w, wakes, 1);
	if (w->batch_wake) {
		/* Wakes from a batch (timers firing, I/O completions, remote
		 * calls) keep their order: the LIFO slot would run the last one
		 * first and push the earlier ones behind the whole queue. */
		if (!w->io_wake)
			enqueue_back(w, t);
		else if (enqueue_back_quiet(w, t))
			notify_local(w->rt);    /* overflowed: more than we hold */
		return;
	}
	struct weft_task *prev = w->lifo;
	w->lifo = t;
	if (prev)
		enqueue_back(w, prev);
}

/*
 * The spill: a solo worker's overflow (core.h). With one worker nobody can
 * take the overflow off our hands, so the injection queue's lock, its linked
 * list (a dependent load per task when draining it: ~20% of a yield with
 * 1,000 yielders, most of it cache misses on task records) and the drain
 * batches only cost. FIFO: while the spill holds anything every push goes to
 * its back, so whatever is in the run queue is older than all of it, and
 * find_local takes the run queue first. It grows by doubling and is freed
 * with the runtime; when growing fails the push falls back to the run
 * queue's overflow into the injection queue (an order between the two is
 * then lost: nothing else is). Emptied, it keeps up to WEFT__SPILL_KEEP
 * slots. weft-bench yield (1,000 yielders) pinned to one CPU, 4 runs
 * alternating: 29.3-30.4 ns before, 24.2-24.9 ns with the spill and
 * weft__runq_pop_solo; a run queue of 2,048 slots that never overflows,
 * without either, 26.9-27.6 ns.
 */
#define WEFT__SPILL_KEEP 4096u      /* spill slots kept once it empties */

static inline uint32_t spill_len(const struct weft__worker *w)
{
	return w->spill_tail - w->spill_head;       /* wrapping: at most spill_cap */
}

static bool spill_push(struct weft__worker *w, struct weft_task *t)
{
	uint32_t cap = w->spill_cap;
	if (spill_len(w) == cap) {
		if (cap >= (1u << 30))
			return false;
		uint32_t ncap = cap ? 2 * cap : WEFT__RUNQ_CAP;
		struct weft_task **n = malloc(ncap * sizeof *n);
		if (!n)
			return false;
		for (uint32_t i = 0; i < cap; i++)
			n[i] = w->spill[(w->spill_head + i) & (cap - 1)];
		free(w->spill);
		w->spill = n;
		w->spill_head = 0;
		w->spill_tail = cap;
		w->spill_cap = cap = ncap;
	}
	w->spill[w->spill_tail++ & (cap - 1)] = t;
	return true;
}

/*
 * A solo worker's next two tasks, while it switches to the one before them:
 * n2's record (its first line: ctx, stack, state) starts loading now, and
 * n1's saved registers, at n1->ctx.sp in a line of n1's stack, whose record
 * was n2 one pop ago and so is in cache or on its way. Queued tasks are not
 * running and only this thread touches them (no thieves), so the read of
 * ctx.sp races with nothing. With more runnable coroutines than the L1 cache
 * holds stacks and records for (the yield benchmark's 1,000), these were
 * misses waited for in the switch (perf put half the switch's samples on its
 * first load from the new stack). weft-bench yield pinned to one CPU, 4 runs
 * alternating: 24.2-24.9 ns without, 19.5-20.0 ns with. The queues of
 * several workers get no such look-ahead: a thief may take the task behind
 * ours and run it while we would read its ctx.
 */
static inline void prefetch_next(struct weft_task *n1, struct weft_task *n2)
{
	if (n2)
		__builtin_prefetch(n2);
	if (n1)
		__builtin_prefetch(n1->ctx.sp);
}

static inline struct weft_task *spill_pop(struct weft__worker *w)
{
	uint32_t h = w->spill_head, m = w->spill_cap - 1, n = spill_len(w);
	if (!n)
		return NULL;
	w->spill_head = h + 1;
	struct weft_task *t = w->spill[h & m];
	if (n == 1 && w->spill_cap > WEFT__SPILL_KEEP) {
		/* A burst is over: give back what it grew (a million runnable
		 * coroutines left 8 MiB here); the next burst grows it again. */
		free(w->spill);
		w->spill = NULL;
		w->spill_head = w->spill_tail = w->spill_cap = 0;
		return t;
	}
	prefetch_next(n > 1 ? w->spill[(h + 1) & m] : NULL, n > 2 ? w->spill[(h + 2) & m] : NULL);
	return t;
}

/* Owner: append t to the back of w's run queue; true when the queue
 * overflowed into the injection queue. */
static bool enqueue_back_quiet(struct weft__worker *w, struct weft_task *t)
{
	if (w->solo) {
		if (!spill_len(w) && weft__runq_try_push(&w->runq, t))
			return false;
		if (spill_push(w, t))
			return false;
	}
	struct weft_task **batch = w->overflow;     /* off the stack: see core.h */
	unsigned n = weft__runq_push(&w->runq, t, batch);
	if (!n)
		return false;
	for (unsigned i = 0; i + 1 < n; i++)
		batch[i]->next = batch[i + 1];
	inject_push(w->rt, batch[0], batch[n - 1], n);
	w->drain_inject = true;
	WSTAT_ADD(w, inject_in, n);
	return true;
}

/* Owner: the same, then wake an idle worker to help (yield, LIFO-streak
 * cap, timer and remote-call batches).
 *
 * I/O completions use enqueue_back_quiet alone (ready, io_wake): they
 * wake coroutines on the worker that owns the ring, and waking an idle
 * worker to steal them cost a wake-up (tens of microseconds here) and
 * moved those connections' next operations onto the thief's ring. On the
 * echo benchmark (2 workers, the load generator pinned to one of the two
 * CPUs) both workers then stayed busy, took turns on the load's CPU, and
 * the connections on whichever ring was preempted waited out a time
 * slice. Without that wake, 6 runs of 3 s per binary alternating: p99
 * median 2.3 -> 1.6 ms, req/s median 182k -> 194k. An idle worker still finds this
 * work when it searches after its own, and the monitor wakes one for work
 * left queued while workers sleep (every 5 ms while busy). An overflow
 * into the injection queue still wakes one (below). */
static void enqueue_back(struct weft__worker *w, struct weft_task *t)
{
	enqueue_back_quiet(w, t);
	notify_local(w->rt);
}

static void wake_task(struct weft_task *t)
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
			 * A CAS here cost a locked instruction per hand-off:
			 * pingpong 1w, 8 runs alternating, best 164 -> 146 ns,
			 * median 183 -> 171. */
			atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
			ready(t);
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

static void task_entry(void *data);

/* Owner: switch to t until it switches back; then carry out what it asked. */

static void task_finish(struct weft__worker *w, struct weft_task *t)
{
	weft__ctx_release(&t->ctx);
	weft__stack_put(w->stacks, t->stack);
	t->stack = NULL;

	weft__lock_acquire(&t->join_lock);
	t->finished = true;
	bool has = t->has_joiner;
	w->joiner = t->joiner;              /* a copy off the stack: see core.h */
	t->has_joiner = false;
	_Atomic uint32_t *ext = t->ext_done;
	weft__unlock(&t->join_lock);
	if (has)
		weft__wait_claim_wake(&w->joiner, 0);
	if (ext) {
		/* release: the run thread reads t->ret after seeing 1 (acquire). */
		atomic_store_explicit(ext, 1, memory_order_release);
		futex_wake_all(ext);
	}
	atomic_store_explicit(&t->alive, 0, memory_order_relaxed);
	task_unref(t);
	/* Owner-only counter: a plain load and a release store, no RMW. The
	 * release makes everything this task did (and every spawn it made)
	 * visible to live_tasks()'s acquire read of the new count. */
	atomic_store_explicit(&w->exited,
	                      atomic_load_explicit(&w->exited, memory_order_relaxed) + 1,
	                      memory_order_release);
}

/*
 * How many coroutines are alive: created minus exited, summed over the
 * workers. One shared counter for this cost skynet on 2 workers more than the
 * second worker gained (every spawn and every return bounced its cache line:
 * 2 workers 1.35x slower than 1). Each worker now counts in its own line, and
 * a reader takes a double collect:
 *
 *   read every `exited` (E), then every `created` (C1), then every
 *   `created` again (C2). If C1 == C2 the answer is C - E, and 0 is exact.
 *
 * Why a false 0 is impossible: a coroutine is created by a live one (or by an
 * outside thread, counted in created_outside). Suppose child c, created by p,
 * is alive but missed: its creation is not in C2 (else C - E counts it, as c
 * has not exited). Then its creation's store comes after the C2 reads in
 * coherence order, so p had not returned when E was read... unless p's exit
 * is in E. p's exit is sequenced after c's creation on p's thread(s), and E
 * read p's exit with acquire from a release store, so c's creation
 * happens-before the C reads and C1/C2 include it: contradiction. So when
 * p's exit is in E, c's creation is in C; when it is not, p itself is counted
 * as alive (p's creation is in C by the same argument one level up, or p is
 * the runtime's main / an outside spawn, counted in created_outside, whose
 * increment precedes its enqueue). C1 != C2 means spawns ran during the read:
 * *exact is false and the caller looks again.
 */
uint64_t weft__live_tasks(struct weft_rt *rt, bool *exact)
{
	uint64_t e = 0, c1 = 0, c2 = 0;
	for (unsigned i = 0; i < rt->nworkers; i++)       /* acquire: see above */
		e += atomic_load_explicit(&rt->workers[i].exited, memory_order_acquire);
	for (int pass = 0; pass < 2; pass++) {
		uint64_t c = atomic_load_explicit(&rt->created_outside, memory_order_acquire);
		for (unsigned i = 0; i < rt->nworkers; i++)
			c += atomic_load_explicit(&rt->workers[i].created, memory_order_acquire);
		if (pass == 0)
			c1 = c;
		else
			c2 = c;
	}
	*exact = c1 == c2;
	return c2 >= e ? c2 - e : 0;
}

/* Bookkeeping before w switches into t (from its scheduler or directly
 * from the coroutine that leaves). */
static inline void resume_prep(struct weft__worker *w, struct weft_task *t)
{
	w->current = t;
	WSTAT_ADD(w, switches, 1);
	/* release: the monitor's acquire load then sees t's id and name as
	 * they were written before t was first made runnable. */
	atomic_store_explicit(&w->running, t, memory_order_release);
	/* relaxed: we own t now (we dequeued it); nobody else may write state
	 * until it opens a wait, which it does after this store in its own
	 * program order on this thread. */
	atomic_store_explicit(&t->state, WEFT__T_RUNNING, memory_order_relaxed);
	weft__stack_set_current(t->stack);
}

/*
 * The second half of a switch, run by whatever context the worker switched
 * into: a coroutine returning from switch_out, a fresh one in task_entry, or
 * the scheduler in run_task. The task that left (w->prev) could not do this
 * itself: until its registers are saved and its stack is left, no other
 * worker may resume it (yield, park) and its stack may not be recycled
 * (exit). Boost.Context calls this running a function "on top" of the
 * context switched to.
 */
static void after_switch_slow(struct weft__worker *w)
{
	struct weft_task *t = w->prev;
	w->prev = NULL;
	switch (w->action) {
	case WEFT__A_YIELD:
		atomic_store_explicit(&t->state, WEFT__T_RUNNABLE, memory_order_relaxed);
		enqueue_back(w, t);
		return;
	case WEFT__A_PARK: {
		if (w->unlock)
			w->unlock(w->unlock_arg);
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
			ready(t);
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
		 * idle workers steal the spawner back and forth, a wake syscall
		 * per spawn (a million spawns under ASan: minutes). A recursion
		 * (fib, skynet) stacks continuations and wakes helpers at once; a
		 * lone continuation left behind a long child is found by a
		 * searching worker, or by the monitor's stranded-work check. */
		int held = weft__spawnq_push(&w->spawnq, t);
		if (held > 0)
			notify_local(w->rt);
		else if (held < 0)
			enqueue_back(w, t);         /* deque full: FIFO queue */
		return;
	}
	case WEFT__A_EXIT:
		task_finish(w, t);
		return;
	default:
		weft__die("coroutine %llu switched out with no action", (unsigned long long)t->id);
	}
}

/* The test stays inline: a call into after_switch_slow on a coroutine's
 * stack allocates that coroutine an ASan fake stack (see WEFT__DIRECT). */
static inline void after_switch(struct weft__worker *w)
{
	if (w->prev)
		after_switch_slow(w);
}

/*
 * Direct switching is off in ASan builds. With detect_stack_use_after_return
 * (our asan setup), the first function with an addressable local that runs
 * on a coroutine's stack makes ASan map a fake stack for that coroutine
 * (~700 KiB, mmap + munmap + shadow per coroutine); after_switch and the
 * queue operations it calls have such locals (the expected values of their
 * CASes), so running them on every coroutine's stack turned the
 * million-spawn test from 20 s into tens of minutes. In ASan builds every
 * switch goes through the scheduler's context, whose fake stack lives as
 * long as the worker, as weft did before direct switching; TSan, valgrind
 * and the default builds test the direct path.
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
static struct weft_task *run_task(struct weft__worker *w, struct weft_task *t)
{
	resume_prep(w, t);
	weft__ctx_switch(&w->sched_ctx, &t->ctx, t);
	weft__stack_set_current(NULL);
	w->current = NULL;
	atomic_store_explicit(&w->running, NULL, memory_order_relaxed);
	after_switch(w);
	struct weft_task *child = w->action_task;
	w->action_task = NULL;
	return child;
}

static struct weft_task *direct_next(struct weft__worker *w);

/*
 * Coroutine side: leave t with an action (done by after_switch on the other
 * side). The next task is switched to directly when the worker has one at
 * hand and no periodic duty is due (direct_next): one switch instead of two
 * through the scheduler's context. A spawn always switches straight into
 * the child. Returns when some worker resumes
 * t, which may be another worker: w is the caller's worker before the
 * switch, and is read again after it.
 */
static void switch_out(struct weft__worker *w, struct weft_task *t, int action)
{
	w->action = action;
	w->prev = t;
	struct weft_task *next;
	if (action == WEFT__A_SPAWN) {
		next = NULL;
		if (WEFT__DIRECT) {             /* else run_task returns the child */
			next = w->action_task;
			w->action_task = NULL;
		}
	} else {
		next = direct_next(w);
	}
	struct weft__ctx *to = &w->sched_ctx;
	if (next) {
		resume_prep(w, next);
		to = &next->ctx;
	}
	/* One call site for every coroutine that leaves: the coroutine
	 * switched to left through it too (unless fresh or resumed by the
	 * scheduler), and the switch returns there with a `ret` the return
	 * stack predicts (see the x86-64 switch). */
	weft__ctx_switch(&t->ctx, to, next);
	after_switch(worker_current());
}

static void locals_release(struct weft_task *t);

static void task_entry(void *data)
{
	struct weft_task *t = data;
	after_switch(worker_current());     /* for the one we switched from */
	t->ret = t->fn(t->arg);
	if (t->locals)
		locals_release(t);              /* destructors run as the coroutine */
	struct weft__worker *w = worker_current();    /* not the one we started on */
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

static void run_remote_calls(struct weft__worker *w)
{
	/* acquire: pairs with the release CAS in weft__ring_call, so each
	 * call record's contents are visible. We take the whole stack, so no
	 * ABA: nobody pops but us. */
	struct weft__remote_call *c = atomic_exchange_explicit(&w->calls, NULL,
	                                                       memory_order_acquire);
	struct weft__remote_call *rev = NULL;
	w->batch_wake = true;
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
	w->batch_wake = false;
}

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

/* Steal from the others in random order; the searching cap of Go. */
static struct weft_task *steal_work(struct weft__worker *w)
{
	struct weft_rt *rt = w->rt;
	unsigned n = rt->nworkers;
	if (n == 1)
		return NULL;
	if (!w->searching) {
		uint32_t busy = n - atomic_load_explicit(&rt->nidle, memory_order_relaxed);
		if (2 * atomic_load_explicit(&rt->nsearching, memory_order_relaxed) >= busy)
			return NULL;
		w->searching = true;
		atomic_fetch_add_explicit(&rt->nsearching, 1, memory_order_seq_cst);
	}
	for (int round = 0; round < 4; round++) {
		unsigned start = rng_next(&w->rng) % n;
		for (unsigned i = 0; i < n; i++) {
			struct weft__worker *v = &rt->workers[(start + i) % n];
			if (v == w)
				continue;
			/* Due timers of a worker held by a long-running coroutine
			 * are not hostage: fire them here (the heap has a lock).
			 * Only when overdue by WEFT__TIMER_HOSTAGE_NS (the owner
			 * fires its own every 8 ticks), and only if the lock is
			 * free: racing the owner for every due batch had both
			 * workers spinning on the heap lock (17% of the sleep
			 * benchmark on 2 workers). */
			uint64_t due = weft__timer_next(&v->timers);
			if (due != UINT64_MAX && due + WEFT__TIMER_HOSTAGE_NS <= weft_now()) {
				w->batch_wake = true;
				weft__timer_run_try(&v->timers, weft_now(), batch_room(w));
				w->batch_wake = false;
				if (w->lifo || weft__runq_len(&w->runq))
					return NULL;        /* found work: find_work takes it */
			}
			/* the oldest continuation first: it carries the most work */
			WSTAT_ADD(w, steals_tried, 1);
			struct weft_task *t = weft__spawnq_steal(&v->spawnq);
			if (t || (t = weft__runq_steal(&v->runq, &w->runq))) {
				WSTAT_ADD(w, steals, 1);
				return t;
			}
		}
		struct weft_task *t = inject_take(rt, w);
		if (t)
			return t;
		/* No pause between rounds (Go's four passes have none either).
		 * The 64, 128, 192 and 256 pause instructions that followed
		 * the rounds kept a worker with nothing to do spinning for
		 * tens of microseconds before it parked, without looking at
		 * its own ring: on echo (2 workers, the load on one of the two
		 * CPUs) that was CPU taken from the load generator. Echo, 50
		 * connections, paired rounds of 2 s, server CPU per request:
		 * 8 rounds -7% and 8 more -8% (req/s +3%, +8%); 500
		 * connections -2%. chan, pingpong, ring, skynet, fib, sleep and
		 * spawn on 2 workers did not move beyond noise (3 runs each,
		 * alternating). */
	}
	return NULL;
}

/* Called with a task found: leave the searching state, and if we were the
 * last searcher, wake another worker, as there may be more work about. */
static void found_work(struct weft__worker *w)
{
	if (!w->searching)
		return;
	w->searching = false;
	if (atomic_fetch_sub_explicit(&w->rt->nsearching, 1, memory_order_seq_cst) == 1)
		notify_work(w->rt);
}

/* How many batch wakes fit the run queue without overflowing it: an overflow
 * moves the queue's oldest half to the injection queue, which would reorder
 * the batch. Timers beyond that stay armed and fire in the next round. */
static unsigned batch_room(struct weft__worker *w)
{
	uint32_t len = weft__runq_len(&w->runq);
	return len >= WEFT__RUNQ_CAP ? 0 : WEFT__RUNQ_CAP - len;
}

static unsigned fire_timers(struct weft__worker *w)
{
	uint64_t next = weft__timer_next(&w->timers);
	if (next == UINT64_MAX)
		return 0;
	w->batch_wake = true;
	unsigned n = weft__timer_run(&w->timers, weft_now(), batch_room(w));
	w->batch_wake = false;
	WSTAT_ADD(w, timers_fired, n);
	return n;
}

/* Owner: submit and reap; the completions' wakes keep their order. */
static int ring_poll(struct weft__worker *w)
{
	w->batch_wake = w->io_wake = true;
	int n = weft__ring_poll(&w->ring);
	w->batch_wake = w->io_wake = false;
	if (n > 0)
		WSTAT_ADD(w, io_completions, (unsigned)n);
	return n;
}

/* Park the worker in its ring until work may have arrived. */
static void worker_park(struct weft__worker *w)
{
	struct weft_rt *rt = w->rt;
	if (w->searching) {
		w->searching = false;
		atomic_fetch_sub_explicit(&rt->nsearching, 1, memory_order_seq_cst);
	}
	idle_push(rt, w);
	weft__perturb();
	atomic_store_explicit(&w->parked, 1, memory_order_seq_cst);
	/* seq_cst fence: orders idle_push and `parked` before the re-check of
	 * the queues and the call list (the Dekker pairs of notify_work and
	 * weft__ring_call). */
	atomic_thread_fence(memory_order_seq_cst);
	if (!any_work_visible(rt, w) && !atomic_load_explicit(&rt->stop, memory_order_seq_cst)) {
		int64_t timeout = -1;
		uint64_t next = weft__timer_next(&w->timers);
		if (next != UINT64_MAX) {
			uint64_t now = weft_now();
			timeout = next > now ? (int64_t)(next - now) : 0;
		}
		if (timeout != 0) {
			WSTAT_ADD(w, parks, 1);
			w->batch_wake = w->io_wake = true;
			int n = weft__ring_wait(&w->ring, timeout);
			w->batch_wake = w->io_wake = false;
			/* The monitor may have slept 50 ms (idle): spawns from
			 * now on get a fresh spawn time. */
			atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
			if (n > 0)
				WSTAT_ADD(w, io_completions, (unsigned)n);
		}
	}
	atomic_store_explicit(&w->parked, 0, memory_order_relaxed);
	if (idle_leave(rt, w))
		w->searching = true;
}

/* Owner: whether w has work queued besides its LIFO slot: in its run queue,
 * its spawn deque, or its run queue's overflow, waiting in the injection
 * queue (drain_inject) or in a solo worker's spill. */
static inline bool queued_here(struct weft__worker *w)
{
	return weft__runq_len(&w->runq) || weft__spawnq_nonempty(&w->spawnq) || w->drain_inject ||
	       spill_len(w);
}

/* Owner: the next task from w's own queues, in the scheduler's order. */
static struct weft_task *find_local(struct weft__worker *w, uint32_t tick)
{
	struct weft_task *t;
	if (w->lifo) {
		t = w->lifo;
		w->lifo = NULL;
		/* The cap is for the queue's sake: with nothing else queued
		 * here there is nobody to give a turn to, and requeueing the
		 * pair's next half only woke an idle worker (enqueue_back ->
		 * notify_local), which stole it: every third hand-off of a
		 * ping-pong pair crossed workers through a ring wake
		 * (pingpong on 2 workers 1.7x its 1-worker time, ring 4x).
		 * The streak keeps counting, so the first task queued behind
		 * a long streak gets its turn at once. The injection queue,
		 * timers and remote calls are find_work's periodic duties,
		 * which a streak does not skip. */
		if (w->lifo_streak++ < WEFT__LIFO_MAX || !queued_here(w))
			return t;
		enqueue_back(w, t);     /* ping-pong pair: give the queue a turn */
	}
	w->lifo_streak = 0;
	/* Continuations and the FIFO queue take turns. Continuations
	 * first always (depth-first) starved woken coroutines while a
	 * parent spawned in a loop: on the sleep benchmark (100k
	 * sleepers) 2.0 s and 416 MiB instead of 0.27 s and 28 MiB.
	 * Taking turns keeps skynet and fib at ~2 MiB. */
	if (tick & 1 && (t = weft__spawnq_take(&w->spawnq)))
		return t;
	/* Our run queue overflowed: its oldest half went to the injection
	 * queue, so those run before what is left here, in order (see
	 * drain_next) — FIFO order survives the overflow (timer batches
	 * rely on it). */
	if (w->drain_inject) {
		if ((t = drain_next(w->rt, w)))
			return t;
		w->drain_inject = false;
	}
	if (w->solo) {
		if ((t = weft__runq_pop_solo(&w->runq))) {
			prefetch_next(weft__runq_peek_solo(&w->runq, 0),
			              weft__runq_peek_solo(&w->runq, 1));
			return t;
		}
		if ((t = spill_pop(w)))
			return t;
	} else if ((t = weft__runq_pop(&w->runq))) {
		return t;
	}
	if ((t = weft__spawnq_take(&w->spawnq)))
		return t;
	return NULL;
}

/*
 * Coroutine side: whether one of find_work's periodic duties has something
 * to do at this tick: remote calls queued; the timer check (every 8 ticks)
 * with a timer armed on this worker; the fairness check (every
 * WEFT__INJECT_EVERY ticks) with SQEs prepared or I/O in flight, our own
 * overflow to drain, or tasks in the injection queue. A duty with nothing
 * to do is a no-op in find_work too (fire_timers of an empty heap, an
 * inject_take that reads a zero length), so skipping the visit changes
 * nothing but its cost: two switches through the scheduler's context
 * instead of one, both ending in the switch's jump exit, which leaves the
 * return stack unbalanced for the returns after it (see the x86-64
 * switch). The loads are the same relaxed hints find_work reads: a timer
 * armed or a task injected by another thread just after we looked is seen
 * at the next due tick, as find_work would have seen it. Measured pinned
 * to one CPU, 4 runs alternating, ns, before/after: yield 32.5/27.9,
 * ring (1 worker) 95/90, pingpong (1 worker) 185/184.
 */
static inline bool duty_due(struct weft__worker *w, uint32_t tick)
{
	if (atomic_load_explicit(&w->calls, memory_order_relaxed))
		return true;
	if ((tick & 7) == 0 && weft__timer_next(&w->timers) != UINT64_MAX)
		return true;
	if (tick % WEFT__INJECT_EVERY == 0 &&
	    (weft__ring_busy(&w->ring) || w->drain_inject ||
	     atomic_load_explicit(&w->rt->inject_len, memory_order_relaxed)))
		return true;
	return false;
}

/*
 * Coroutine side (switch_out, task_entry): the task to switch to directly,
 * or NULL to go through the scheduler's context: NULL whenever a periodic
 * duty of find_work has work this tick (duty_due), so direct switching
 * changes no fairness rule, and when w's own queues are empty. One switch
 * per yield instead of two: the yield benchmark (1,000 yielders, 1 worker)
 * went from 57 to 46 ns, and 125 to 88 ns, in A/B runs alternating on a
 * loaded machine (Boost.Fiber: 30 and 50 ns in the same runs).
 */
static struct weft_task *direct_next(struct weft__worker *w)
{
	if (!WEFT__DIRECT)
		return NULL;
	uint32_t tick = w->tick + 1;
	if (duty_due(w, tick))
		return NULL;
	struct weft_task *t = find_local(w, tick);
	if (t)
		w->tick = tick;             /* a scheduling step like find_work's */
	return t;
}

/* Owner: the next task to run, or NULL when the runtime stops. */
static struct weft_task *find_work(struct weft__worker *w)
{
	struct weft_rt *rt = w->rt;
	for (;;) {
		uint32_t tick = ++w->tick;
		struct weft_task *t;

		if (atomic_load_explicit(&w->calls, memory_order_relaxed))
			run_remote_calls(w);     /* sets batch_wake itself */
		if ((tick & 7) == 0)
			fire_timers(w);
		if (tick % WEFT__INJECT_EVERY == 0) {
			if (weft__ring_busy(&w->ring))
				ring_poll(w);
			/* While draining our own overflow, in order (drain_next):
			 * a batch would land behind newer tasks in the run queue. */
			if ((t = w->drain_inject ? drain_next(rt, w) : inject_take(rt, w)))
				return t;
		}
		if ((t = find_local(w, tick)))
			return t;
		if ((t = inject_take(rt, w)))
			return t;

		/* Local work ran dry: one scheduling round is over. Submit the
		 * SQEs it prepared, reap, fire timers; any of these may make
		 * tasks runnable here. */
		if (weft__ring_busy(&w->ring) && ring_poll(w) > 0)
			continue;
		if (fire_timers(w))
			continue;
		if (w->lifo || queued_here(w))
			continue;
		if (atomic_load_explicit(&rt->stop, memory_order_acquire))
			return NULL;
		if ((t = steal_work(w)))
			return t;               /* worker_loop calls found_work */
		worker_park(w);
	}
}

static void worker_loop(struct weft__worker *w)
{
	struct weft_task *t;
	while ((t = find_work(w))) {
		/* A worker woken to search counts in nsearching until it finds
		 * work, wherever it finds it: its own queues after a ring wake, the
		 * injection queue, or a victim. Leaving the count only on a steal
		 * kept a woken worker "searching" for as long as it ran what it
		 * took from the injection queue, and every notify_work meanwhile
		 * saw a searcher and woke nobody: skynet and fib ran on one worker
		 * of two (0 steals), 1.0x instead of ~2x. */
		found_work(w);
		do
			t = run_task(w, t);
		while (t);
	}
}

/* ------------------------------------------------------------ workers --- */

static void *worker_main(void *arg)
{
	struct weft__worker *w = arg;
	struct weft_rt *rt = w->rt;
	char why[128] = "";
	int err = weft__ring_init(&w->ring, rt->ring_entries, why, sizeof why);
	bool ring_ok = !err;
	if (!err)
		err = weft__stack_cache_create(&w->stacks, rt->stack_pool);
	if (!err)
		err = weft__stack_thread_init();
	tls_worker = err ? NULL : w;
	weft__ctx_init_thread(&w->sched_ctx);

	pthread_mutex_lock(&rt->start_lock);
	if (err && !rt->start_err) {
		rt->start_err = err;
		snprintf(rt->start_why, sizeof rt->start_why, "%s", why[0] ? why : strerror(-err));
	}
	rt->started++;
	pthread_cond_broadcast(&rt->start_cond);
	while (rt->started != rt->nworkers || (rt->start_err && !atomic_load(&rt->stop)))
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);

	if (!rt->start_err)
		worker_loop(w);

	/* Exit gate: weft_rt_destroy may still be waking the other rings (or
	 * ours); only once it has finished may a ring go away. */
	pthread_mutex_lock(&rt->start_lock);
	while (!rt->exit_ok)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);

	if (w->stacks)
		weft__stack_cache_destroy(w->stacks);
	/* A rescue signal still on its way (the monitor has stopped, its last
	 * SIGURG may not) must not find the ring half torn down: the handler
	 * reads tls_worker, on this same thread, so a compiler barrier does. */
	tls_worker = NULL;
	atomic_signal_fence(memory_order_seq_cst);
	if (ring_ok)
		weft__ring_exit(&w->ring);
	weft__ctx_release(&w->sched_ctx);
	weft__stack_thread_exit();
	tls_worker = NULL;
	return NULL;
}

static unsigned default_workers(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return (unsigned)n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void rt_free(struct weft_rt *rt)
{
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++) {
			weft__timer_heap_fini(&rt->workers[i].timers);
			free(rt->workers[i].spill);
		}
		free(rt->workers);
	}
	struct weft__slab *s = rt->slabs;
	while (s) {
		struct weft__slab *n = s->next;
		free(s);
		s = n;
	}
	if (rt->stack_pool)
		weft__stack_pool_destroy(rt->stack_pool);
	free(rt->idle);
	pthread_mutex_destroy(&rt->inject_lock);
	pthread_mutex_destroy(&rt->idle_lock);
	pthread_mutex_destroy(&rt->pool_lock);
	pthread_mutex_destroy(&rt->start_lock);
	pthread_cond_destroy(&rt->start_cond);
	free(rt);
}

WEFT_API int weft_rt_create(weft_rt **out, const struct weft_config *cfg)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (worker_current())
		return -EPERM;
	struct weft_config c = cfg ? *cfg : (struct weft_config){0};
	if (c.workers > 4096 || (c.flags & ~(WEFT_RT_PARENT_FIRST | WEFT_RT_NO_RESCUE_SIGNAL)) ||
	    (c.ring_entries && (c.ring_entries > 32768)))
		return -EINVAL;
	size_t stack_size;
	int err = weft__stack_size_check(c.stack_size ? c.stack_size : WEFT_STACK_DEFAULT,
	                                 &stack_size);
	if (err)
		return err;

	pthread_once(&membarrier_once, membarrier_register);

	/* aligned_alloc: struct weft_rt keeps its shared counters on cache
	 * lines of their own (_Alignas(64)); calloc's 16-byte alignment was
	 * undefined behaviour (UBSan: "misaligned address ... requires 64 byte
	 * alignment") and put those counters back on shared lines. */
	size_t rt_size = (sizeof(struct weft_rt) + 63) & ~(size_t)63;
	struct weft_rt *rt = weft__fault("rt.alloc") ? NULL : aligned_alloc(64, rt_size);
	if (!rt)
		return -ENOMEM;
	memset(rt, 0, rt_size);
	rt->nworkers = c.workers ? c.workers : default_workers();
	rt->flags = c.flags;
	rt->stack_size = stack_size;
	/* At least 2: an op with a deadline is an SQE pair (op + linked
	 * timeout) that must fit the SQ at once; 1 made every timed call abort
	 * in weft__ring_reserve (stress/ioflood found it). The kernel rounds up
	 * to a power of two anyway. */
	rt->ring_entries = c.ring_entries ? (c.ring_entries < 2 ? 2 : c.ring_entries) : 256;
	pthread_mutex_init(&rt->inject_lock, NULL);
	pthread_mutex_init(&rt->idle_lock, NULL);
	pthread_mutex_init(&rt->pool_lock, NULL);
	pthread_mutex_init(&rt->start_lock, NULL);
	pthread_cond_init(&rt->start_cond, NULL);
	atomic_init(&rt->next_id, 1);

	rt->workers = weft__fault("rt.workers") ? NULL
	              : aligned_alloc(64, sizeof *rt->workers * rt->nworkers);
	rt->idle = weft__fault("rt.idle") ? NULL : calloc(rt->nworkers, sizeof *rt->idle);
	if (!rt->workers || !rt->idle) {
		free(rt->workers);
		rt->workers = NULL;
		rt_free(rt);
		return -ENOMEM;
	}
	memset(rt->workers, 0, sizeof *rt->workers * rt->nworkers);
	err = weft__stack_pool_create(&rt->stack_pool, stack_size);
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct weft__worker *w = &rt->workers[i];
		w->rt = rt;
		w->index = i;
		w->rng = 0x9e3779b9u * (i + 1);
		w->solo = rt->nworkers == 1;
		weft__runq_init(&w->runq);
		weft__spawnq_init(&w->spawnq);
		if (!err)
			err = weft__timer_heap_init(&w->timers);
	}
	if (err) {
		rt_free(rt);
		return err;
	}

	unsigned created = 0;
	for (; created < rt->nworkers; created++) {
		struct weft__worker *w = &rt->workers[created];
		if ((err = -pthread_create(&w->thread, NULL, worker_main, w)))
			break;
	}
	pthread_mutex_lock(&rt->start_lock);
	if (err) {
		/* Fewer threads than planned: tell those that exist to leave. */
		rt->start_err = err;
		/* rt_free only sees the first nworkers: free the rest here. */
		for (unsigned i = created; i < rt->nworkers; i++)
			weft__timer_heap_fini(&rt->workers[i].timers);
		rt->nworkers = created;
		snprintf(rt->start_why, sizeof rt->start_why, "cannot start worker threads");
		pthread_cond_broadcast(&rt->start_cond);
	}
	while (rt->started != rt->nworkers)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	err = rt->start_err;
	if (err) {
		atomic_store(&rt->stop, 1);
		rt->exit_ok = true;
		pthread_cond_broadcast(&rt->start_cond);
	}
	pthread_mutex_unlock(&rt->start_lock);

	if (err) {
		fprintf(stderr, "weft: cannot create runtime: %s\n", rt->start_why);
		for (unsigned i = 0; i < created; i++)
			pthread_join(rt->workers[i].thread, NULL);
		rt_free(rt);
		return err;
	}
	atomic_store_explicit(&rt->starve_ns, 10000000, memory_order_relaxed);   /* 10 ms */
	atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
	rt->monitor_started = pthread_create(&rt->monitor, NULL, monitor_main, rt) == 0;
	weft__rts_add(rt);
	*out = rt;
	return 0;
}

WEFT_API unsigned weft_rt_workers(const weft_rt *rt)
{
	return rt ? rt->nworkers : 0;
}

WEFT_API weft_rt *weft_rt_current(void)
{
	struct weft__worker *w = worker_current();
	return w ? w->rt : NULL;
}

/* ------------------------------------------------------------- spawn --- */

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
	struct weft_task *t = weft__fault("spawn.task_alloc") ? NULL : task_alloc(rt, w);
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
		task_free(rt, w, t);
		return err;
	}

	uint64_t id;
	if (w && w->rt == rt) {
		if (w->next_id == w->last_id) {
			w->next_id = atomic_fetch_add_explicit(&rt->next_id, 1024, memory_order_relaxed);
			w->last_id = w->next_id + 1024;
		}
		id = w->next_id++;
		WSTAT_ADD(w, spawns, 1);
	} else {
		id = atomic_fetch_add_explicit(&rt->next_id, 1, memory_order_relaxed);
	}

	t->stack = s;
	t->fn = fn;
	t->arg = arg;
	t->ret = NULL;
	t->rt = rt;
	__atomic_store_n(&t->id, id, __ATOMIC_RELAXED);   /* see weft__task_set_name */
	t->stack_size = ssize;
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
	/* seq_cst on both: pairs with weft_rt_destroy, which sets shutdown and
	 * then counts live tasks; a task it does not count starts cancelled. */
	atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
	/* Counted before anyone can see the task (weft__live_tasks). release:
	 * the record's initialisation precedes a reader's acquire of the count.
	 * Owner-only counter, so no RMW. */
	if (w)
		atomic_store_explicit(&w->created,
		                      atomic_load_explicit(&w->created, memory_order_relaxed) + 1,
		                      memory_order_release);
	else
		atomic_fetch_add_explicit(&rt->created_outside, 1, memory_order_release);
	/* relaxed: a hint, not a handshake. A task created while destroy runs
	 * is counted as live by destroy's double collect, and destroy's sweep
	 * (every 1 ms, every record with `alive` set) cancels it if it missed
	 * the flag here. A seq_cst fence to make this exact cost 20% of
	 * task_create. */
	if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed))
		atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
	/* Cache colouring: stacks are page-aligned mappings of equal size, so
	 * every coroutine's first frames sit at the same offset in a page and
	 * compete for the same few cache sets; 1,000 yielders evicted each
	 * other's hot stack lines on every switch. Starting each stack 0-15
	 * cache lines below its top (at most 960 bytes of it) spreads them over
	 * 16 times the sets: the yield benchmark went from 45 to 39 ns. */
	size_t colour = (size_t)(t->id % WEFT__STACK_COLOURS) * 64;
	weft__ctx_make(&t->ctx, s->lo, s->size - colour, task_entry);
	*out = t;
	return 0;
}

WEFT_API int weft_spawn_opts(weft_task **out, weft_fn fn, void *arg,
                             const struct weft_spawn_opts *opts)
{
	struct weft__worker *w = worker_current();
	if (!w || !w->current)
		return -EPERM;
	struct weft_task *t;
	int err = task_create(w->rt, w, fn, arg, opts, out != NULL, &t);
	if (err)
		return err;
	if (out)
		*out = t;
	if (w->rt->flags & WEFT_RT_PARENT_FIRST) {
		ready(t);
		return 0;
	}
	w->action_task = t;
	switch_out(w, w->current, WEFT__A_SPAWN);
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
	struct weft__worker *w = worker_current();
	struct weft_task *t;
	int err = task_create(rt, w && w->rt == rt ? w : NULL, fn, arg, NULL, out != NULL, &t);
	if (err)
		return err;
	if (out)
		*out = t;
	ready(t);
	return 0;
}

WEFT_API int weft_rt_run(weft_rt *rt, weft_fn fn, void *arg, void **ret)
{
	if (!rt || !fn)
		return -EINVAL;
	if (worker_current())
		return -EPERM;
	struct weft_task *t;
	int err = task_create(rt, NULL, fn, arg, NULL, true, &t);
	if (err)
		return err;
	_Atomic uint32_t done = 0;
	t->ext_done = &done;
	weft__task_set_name(t, "main");
	ready(t);
	/* acquire: pairs with the release in task_finish; t->ret is then ours. */
	while (!atomic_load_explicit(&done, memory_order_acquire))
		futex_wait(&done, 0);
	if (ret)
		*ret = t->ret;
	/* The exiting worker may still be inside task_finish touching t;
	 * our reference keeps the record alive until it is done with it. */
	task_unref(t);
	return 0;
}

/* ------------------------------------------------------------- waits --- */

static void wait_timer_fire(struct weft__timer *tm)
{
	struct weft_task *t = (struct weft_task *)((char *)tm - offsetof(struct weft_task, timer));
	/* The timer belongs to the wait that armed it: that wait's seq is the
	 * current wait_seq of t unless the wait already ended, in which case
	 * the claim below fails harmlessly. Reading wait_seq here races with
	 * nothing: it changes only when t opens a new wait, after it removed
	 * this timer under this heap's lock, which we hold. */
	struct weft__waiter w = { t, t->wait_seq };
	weft__wait_claim_wake(&w, -ETIMEDOUT);
}

/*
 * The calling task opened a wait and then lost the claim on it to a canceller
 * before it could park: that canceller is about to call wake_task (or has),
 * which will find the task RUNNING and leave NOTIFIED. Consume that wake here
 * rather than by parking, since the caller may hold a spinlock: wait for the
 * NOTIFIED (the canceller is between two instructions of its own) and return
 * to RUNNING, so the wake cannot land on a later wait.
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

int weft__wait_begin(struct weft__waiter *wt, uint64_t deadline, unsigned flags)
{
	struct weft__worker *w = worker_current();
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
	if (deadline && !(flags & WEFT__WAIT_IN_ORDER) && deadline <= weft_now())
		return -ETIMEDOUT;
	uint64_t seq = ++t->wait_seq;
	wt->task = t;
	wt->seq = seq;
	/* relaxed: published by the store of `wait` below (release or
	 * seq_cst), which a canceller reads (acquire) before the flags. */
	atomic_store_explicit(&t->wait_flags, flags, memory_order_relaxed);
	t->wake_reason = 0;
	/* The Dekker pair with weft_cancel (see membarrier_mode). release:
	 * publishes wait_flags to the canceller's acquire load of `wait`. */
	if (membarrier_mode) {
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

void weft__wait_begin_uninterruptible(struct weft__waiter *wt)
{
	/* No deadline and not interruptible: nothing but "outside a
	 * coroutine" can make it fail, and that is a caller's bug. */
	int err = weft__wait_begin(wt, 0, 0);
	if (err)
		weft__die("uninterruptible wait opened outside a coroutine (%s)", strerror(-err));
}

int weft__wait_park(struct weft__waiter *wt, void (*unlock)(void *), void *arg)
{
	struct weft__worker *w = worker_current();
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

bool weft__wait_claim(const struct weft__waiter *wt)
{
	uint64_t open = (wt->seq << 1) | 1;
	/* acq_rel: acquire orders the claimer's hand-over after the waiter's
	 * registration; release publishes the close to later claimers. */
	return atomic_compare_exchange_strong_explicit(&wt->task->wait, &open, wt->seq << 1,
	                                               memory_order_acq_rel,
	                                               memory_order_relaxed);
}

void weft__wait_wake(const struct weft__waiter *wt, int reason)
{
	wt->task->wake_reason = reason;
	wake_task(wt->task);
}

unsigned weft__shield_push(void)
{
	struct weft__worker *w = worker_current();
	if (!w || !w->current)
		return 0;
	return w->current->shield++;
}

void weft__shield_pop(void)
{
	struct weft__worker *w = worker_current();
	if (w && w->current && w->current->shield)
		w->current->shield--;
}

struct weft__ring *weft__current_ring(void)
{
	struct weft__worker *w = worker_current();
	return w ? &w->ring : NULL;
}

void weft__ring_call(struct weft__ring *r, struct weft__remote_call *c)
{
	struct weft__worker *w = (struct weft__worker *)((char *)r - offsetof(struct weft__worker, ring));
	struct weft__remote_call *head = atomic_load_explicit(&w->calls, memory_order_relaxed);
	do
		c->next = head;
	/* release: publishes *c to the owner's acquire exchange; seq_cst so the
	 * load of `parked` below cannot move before it (Dekker with worker_park). */
	while (!atomic_compare_exchange_weak_explicit(&w->calls, &head, c,
	                                              memory_order_seq_cst,
	                                              memory_order_relaxed));
	if (atomic_load_explicit(&w->parked, memory_order_seq_cst)) {
		struct weft__worker *self = worker_current();
		weft__ring_wake(self && self->rt ? &self->ring : NULL, r);
	}
}

/* --------------------------------------------------------- public API --- */

WEFT_API weft_task *weft_self(void)
{
	return task_current();
}

WEFT_API int weft_worker_id(void)
{
	struct weft__worker *w = worker_current();
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

WEFT_API void weft_yield(void)
{
	struct weft__worker *w = worker_current();
	if (w && w->current)
		switch_out(w, w->current, WEFT__A_YIELD);
}

WEFT_API bool weft_cancelled(void)
{
	struct weft_task *t = weft_self();
	return t && atomic_load_explicit(&t->cancel, memory_order_relaxed);
}

WEFT_API int weft_sleep(uint64_t ns)
{
	struct weft__waiter wt;
	uint64_t now = weft_now();
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

static void unlock_join(void *arg)
{
	weft__unlock(arg);
}

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
		int r = weft__wait_park(&wt, unlock_join, &t->join_lock);
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
	task_unref(t);
	return 0;
}

/*
 * weft_cancel in three steps, so that a sweep over many tasks (destroy, a
 * task group) pays one barrier instead of one per task: mark each,
 * weft__cancel_fence once, then deliver each. The Dekker pair with
 * weft__wait_begin (store wait; load cancel) holds for every task marked
 * before the fence and delivered after it: see membarrier_mode. A
 * membarrier per task made weft_rt_destroy with 100,000 blocked coroutines
 * take 6.3-6.7 s instead of 1.9-2.1 s (stress/ioshutdown).
 */
void weft__cancel_mark(struct weft_task *t)
{
	if (membarrier_mode)
		atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
	else
		atomic_store_explicit(&t->cancel, 1, memory_order_seq_cst);
}

void weft__cancel_fence(void)
{
	if (membarrier_mode && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		weft__die("membarrier(PRIVATE_EXPEDITED) failed after registering: %s", strerror(errno));
}

/* t was marked before the last weft__cancel_fence: end its open wait, if any. */
void weft__cancel_deliver(struct weft_task *t)
{
	uint64_t wv;
	if (membarrier_mode)   /* acquire: pairs with the release store that opened the wait */
		wv = atomic_load_explicit(&t->wait, memory_order_acquire);
	else
		wv = atomic_load_explicit(&t->wait, memory_order_seq_cst);
	if (!(wv & 1))
		return;                         /* not waiting: it sees the flag */
	/* wait_flags was written before the store that opened this wait,
	 * which we read: it is the open wait's. */
	if (!(atomic_load_explicit(&t->wait_flags, memory_order_relaxed) & WEFT__WAIT_INTERRUPTIBLE))
		return;
	struct weft__waiter wt = { t, wv >> 1 };
	weft__wait_claim_wake(&wt, -ECANCELED);
}

WEFT_API int weft_cancel(weft_task *t)
{
	if (!t)
		return -EINVAL;
	weft__cancel_mark(t);
	weft__cancel_fence();
	weft__cancel_deliver(t);
	return 0;
}

/* ------------------------------------------- deadlines, describe, locals --- */

WEFT_API uint64_t weft_deadline_set(uint64_t deadline)
{
	struct weft_task *t = weft_self();
	if (!t)
		return 0;
	uint64_t old = t->deadline;
	t->deadline = deadline;
	return old;
}

WEFT_API uint64_t weft_deadline(void)
{
	struct weft_task *t = weft_self();
	return t ? t->deadline : 0;
}

uint64_t weft__wait_deadline(uint64_t own)
{
	struct weft_task *t = weft_self();
	if (t && t->deadline && !t->shield && (!own || t->deadline < own))
		return t->deadline;
	return own;
}

void weft__wait_describe(const char *what, const void *obj)
{
	struct weft_task *t = task_current();
	if (t) {
		/* relaxed: read only by weft_dump, as a sample */
		atomic_store_explicit(&t->wait_what, what, memory_order_relaxed);
		atomic_store_explicit(&t->wait_obj, obj, memory_order_relaxed);
	}
}

static pthread_mutex_t locals_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*locals_dtor[WEFT_LOCAL_KEYS])(void *);
static _Atomic unsigned locals_used;    /* keys handed out, never returned */

WEFT_API int weft_local_key_create(weft_local_key *key, void (*dtor)(void *))
{
	if (!key)
		return -EINVAL;
	pthread_mutex_lock(&locals_lock);
	unsigned k = atomic_load_explicit(&locals_used, memory_order_relaxed);
	if (k == WEFT_LOCAL_KEYS) {
		pthread_mutex_unlock(&locals_lock);
		return -EAGAIN;
	}
	locals_dtor[k] = dtor;
	/* release: a coroutine that sees the key in use sees its dtor. */
	atomic_store_explicit(&locals_used, k + 1, memory_order_release);
	pthread_mutex_unlock(&locals_lock);
	*key = k;
	return 0;
}

WEFT_API void *weft_local_get(weft_local_key key)
{
	struct weft_task *t = weft_self();
	if (!t || !t->locals || key >= WEFT_LOCAL_KEYS)
		return NULL;
	return t->locals[key];
}

WEFT_API int weft_local_set(weft_local_key key, void *value)
{
	struct weft_task *t = weft_self();
	if (!t)
		return -EPERM;
	if (key >= atomic_load_explicit(&locals_used, memory_order_acquire))
		return -EINVAL;
	if (!t->locals) {
		if (!value)
			return 0;
		/* Only coroutines that use locals pay for them: one small
		 * allocation on first use, freed when the coroutine returns. */
		t->locals = weft__fault("local.alloc") ? NULL
		            : calloc(WEFT_LOCAL_KEYS, sizeof *t->locals);
		if (!t->locals)
			return -ENOMEM;
	}
	t->locals[key] = value;
	return 0;
}

/* The coroutine returned: run destructors (as pthread does, a few rounds in
 * case a destructor sets values again), then free the array. */
static void locals_release(struct weft_task *t)
{
	unsigned used = atomic_load_explicit(&locals_used, memory_order_acquire);
	for (int round = 0; round < 4; round++) {
		bool again = false;
		for (unsigned k = 0; k < used; k++) {
			void *v = t->locals[k];
			if (v && locals_dtor[k]) {
				t->locals[k] = NULL;
				locals_dtor[k](v);
				again = true;
			}
		}
		if (!again)
			break;
	}
	free(t->locals);
	t->locals = NULL;
}

/* ------------------------------------------------------------ monitor --- */

WEFT_API void weft_rt_set_starvation(weft_rt *rt, uint64_t threshold_ns,
                                     void (*log)(const char *line, void *arg), void *arg)
{
	if (!rt)
		return;
	pthread_mutex_lock(&rt->start_lock);
	rt->starve_log = log;
	rt->starve_arg = arg;
	pthread_mutex_unlock(&rt->start_lock);
	atomic_store_explicit(&rt->starve_ns, threshold_ns, memory_order_relaxed);
}

/*
 * The monitor thread (Go's sysmon, much reduced): every few milliseconds it
 * samples each worker's switch counter and running coroutine. A worker whose
 * counter has not moved while one coroutine ran past the threshold is held
 * by it: report that coroutine once, and wake an idle worker so the held
 * worker's queue and due timers get taken over (steal_work). It also serves
 * SIGQUIT dumps. Costs nothing on the workers' paths; ~200 wake-ups a second
 * while the runtime is busy, 20 when it is idle.
 */
/* ------------------------------------------------------------ rescue --- */

/*
 * Hostage rescue: completions of a worker held by a coroutine that does not
 * switch (see "Rescue" in src/io/ring.c and WEFT_RT_NO_RESCUE_SIGNAL).
 *
 * The monitor, on seeing the same run at two samples (5 ms apart while
 * busy), asks weft__ring_hostage. When only the owner's thread can move the
 * ring on, it sets w->rescue_req and sends SIGURG to that thread; the
 * handler flushes the ring (weft__ring_flush_signal) and bumps rescue_acks.
 * The monitor waits for the ack (bounded: 2 ms; the thread may be
 * descheduled, and then the next sample tries again), then reaps the CQ
 * itself: the callbacks wake the waiting coroutines through the injection
 * queue, and idle workers run them.
 *
 * SIGURG, as Go uses it: ignored by default, rarely used by programs (it
 * reports out-of-band socket data only to a process that asked with
 * F_SETOWN). A SIGURG the handler did not ask for (rescue_req clear) goes to
 * the handler we replaced.
 */
static struct sigaction rescue_prev;
static bool rescue_installed;
static pthread_once_t rescue_once = PTHREAD_ONCE_INIT;

static void rescue_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	struct weft__worker *w = tls_worker;
	/* acquire: pairs with the monitor's release store of the request. */
	if (w && atomic_exchange_explicit(&w->rescue_req, 0, memory_order_acquire)) {
		weft__ring_flush_signal(&w->ring);
		/* release: the CQEs the flush posted are in the CQ before the
		 * monitor, acquiring the ack, reaps. */
		atomic_fetch_add_explicit(&w->rescue_acks, 1, memory_order_release);
	} else if (rescue_prev.sa_flags & SA_SIGINFO) {
		if (rescue_prev.sa_sigaction)
			rescue_prev.sa_sigaction(sig, si, uc);
	} else if (rescue_prev.sa_handler != SIG_DFL && rescue_prev.sa_handler != SIG_IGN) {
		rescue_prev.sa_handler(sig);
	}
	errno = saved;
}

static void rescue_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = rescue_handler;
	/* SA_RESTART: a system call the hog makes itself restarts where it can;
	 * SA_ONSTACK: the worker's alternate stack (the overflow handler's) when
	 * the coroutine's own is nearly used up. */
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	rescue_installed = sigaction(SIGURG, &sa, &rescue_prev) == 0;
}

/* Monitor thread, without start_lock. */
static void rescue_ring(struct weft_rt *rt, struct weft__worker *w, unsigned hostage)
{
	if ((hostage & WEFT__HOSTAGE_OWNER) && !(rt->flags & WEFT_RT_NO_RESCUE_SIGNAL)) {
		pthread_once(&rescue_once, rescue_install);
		/* acquire: pairs with the handler's release bump (below too). */
		uint32_t acks = atomic_load_explicit(&w->rescue_acks, memory_order_acquire);
		/* release: see rescue_handler. */
		atomic_store_explicit(&w->rescue_req, 1, memory_order_release);
		if (rescue_installed && pthread_kill(w->thread, SIGURG) == 0) {
			for (int i = 0; i < 40; i++) {
				if (atomic_load_explicit(&w->rescue_acks, memory_order_acquire) != acks)
					break;
				struct timespec ts = { 0, 50000 };     /* 50 us, 2 ms at most */
				nanosleep(&ts, NULL);
			}
		}
	}
	weft__ring_rescue(&w->ring);
}

static void *monitor_main(void *arg)
{
	struct weft_rt *rt = arg;
	unsigned n = rt->nworkers;
	uint64_t *last_sw = calloc(n, sizeof *last_sw);
	uint64_t *since = calloc(n, sizeof *since);
	uint64_t *reported = calloc(n, sizeof *reported);
	uint64_t *held_sw = calloc(n, sizeof *held_sw);
	clockid_t *cpu = calloc(n, sizeof *cpu);
	if (!last_sw || !since || !reported || !held_sw || !cpu)
		goto out;
	for (unsigned i = 0; i < n; i++)
		held_sw[i] = UINT64_MAX;    /* no run seen yet */
	/* A run is measured in its worker thread's CPU time, not wall time: on
	 * a loaded machine the kernel preempts workers for tens of ms, and a
	 * coroutine that was not even running must not be reported as a hog.
	 * A worker whose CPU clock cannot be had falls back to wall time. */
	for (unsigned i = 0; i < n; i++)
		if (pthread_getcpuclockid(rt->workers[i].thread, &cpu[i]))
			cpu[i] = CLOCK_MONOTONIC;
	pthread_mutex_lock(&rt->start_lock);
	while (!rt->monitor_stop) {
		bool busy = false;
		atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
		uint64_t limit = atomic_load_explicit(&rt->starve_ns, memory_order_relaxed);
		for (unsigned i = 0; i < n; i++) {
			struct weft__worker *w = &rt->workers[i];
			uint64_t sw = atomic_load_explicit(&w->stats.switches, memory_order_relaxed);
			struct weft_task *t = atomic_load_explicit(&w->running, memory_order_acquire);
			if (t)
				busy = true;
			/* The same run as at the last sample (a switch would have
			 * moved sw): its worker's ring may hold completions hostage. */
			bool held = t && sw == held_sw[i];
			held_sw[i] = sw;
			unsigned hostage = held ? weft__ring_hostage(&w->ring) : 0;
			if (hostage) {
				pthread_mutex_unlock(&rt->start_lock);
				rescue_ring(rt, w, hostage);
				pthread_mutex_lock(&rt->start_lock);
			}
			/* Its timers too, once overdue by WEFT__TIMER_HOSTAGE_NS:
			 * idle workers do that as they search (steal_work), but
			 * when every other worker is busy nobody searches. The
			 * woken go through the injection queue (we are no worker),
			 * earliest deadline first. Not with one worker: nobody
			 * could run them before it, and the injection queue would
			 * put them out of order with the timers it fires itself
			 * (one worker guarantees firing order; stress/timers-1w
			 * caught it when the soak's load made a preempted worker
			 * look held). */
			uint64_t due = held && n > 1 ? weft__timer_next(&w->timers) : UINT64_MAX;
			if (due != UINT64_MAX && due + WEFT__TIMER_HOSTAGE_NS <= weft_now()) {
				pthread_mutex_unlock(&rt->start_lock);
				weft__timer_run_try(&w->timers, weft_now(), WEFT__RUNQ_CAP);
				pthread_mutex_lock(&rt->start_lock);
			}
			if (!limit)
				continue;
			struct timespec cts;
			clock_gettime(cpu[i], &cts);
			uint64_t now = (uint64_t)cts.tv_sec * 1000000000u + (uint64_t)cts.tv_nsec;
			if (sw != last_sw[i] || !t) {
				last_sw[i] = sw;
				since[i] = now;
				continue;
			}
			if (now - since[i] < limit || reported[i] == sw)
				continue;
			reported[i] = sw;
			atomic_fetch_add_explicit(&w->stats.starved, 1, memory_order_relaxed);
			char line[160], name[32];
			/* A sample (the coroutine may rename itself, the record be
			 * recycled); the record itself stays valid (slabs live until
			 * destroy). */
			weft__task_name_sample(t, name);
			snprintf(line, sizeof line,
			         "weft: coroutine %llu \"%s\" has run for %.1f ms (CPU) on worker %u "
			         "without reaching a blocking point",
			         (unsigned long long)weft__task_id_sample(t), name,
			         (double)(now - since[i]) / 1e6, i);
			/* Still the same run? Otherwise t may be a recycled record
			 * and the line torn: drop it, the next sample decides. */
			if (atomic_load_explicit(&w->stats.switches, memory_order_acquire) != sw)
				continue;
			void (*log)(const char *, void *) = rt->starve_log;
			void *larg = rt->starve_arg;
			pthread_mutex_unlock(&rt->start_lock);
			if (log)
				log(line, larg);
			else
				fprintf(stderr, "%s\n", line);
			notify_work(rt);          /* let an idle worker take over its queue */
			pthread_mutex_lock(&rt->start_lock);
		}
		/* Stranded work: queued on some worker while others sleep and
		 * nobody searches (a lone spawn continuation behind a long child
		 * wakes nobody, see after_switch; a notify_local that lost its
		 * race). Wake one idle worker; it steals or parks again. */
		if (atomic_load_explicit(&rt->nidle, memory_order_relaxed) &&
		    !atomic_load_explicit(&rt->nsearching, memory_order_relaxed)) {
			bool stranded = false;
			for (unsigned i = 0; i < n && !stranded; i++)
				stranded = weft__runq_len(&rt->workers[i].runq) ||
				           weft__spawnq_nonempty(&rt->workers[i].spawnq);
			if (stranded) {
				pthread_mutex_unlock(&rt->start_lock);
				notify_work(rt);
				pthread_mutex_lock(&rt->start_lock);
			}
		}
		if (weft__dump_requested()) {
			pthread_mutex_unlock(&rt->start_lock);
			weft_dump(stderr);
			pthread_mutex_lock(&rt->start_lock);
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long step = busy ? 5000000 : 50000000;     /* 5 ms busy, 50 ms idle */
		ts.tv_nsec += step;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rt->start_cond, &rt->start_lock, &ts);
	}
	pthread_mutex_unlock(&rt->start_lock);
out:
	free(last_sw);
	free(since);
	free(reported);
	free(held_sw);
	free(cpu);
	return NULL;
}

/* ------------------------------------------------------------ destroy --- */

WEFT_API int weft_rt_destroy(weft_rt *rt)
{
	if (!rt)
		return -EINVAL;
	/* From any worker thread, not only rt's own: destroy waits for every
	 * coroutine of rt to return and joins threads, which would hold that
	 * worker (and every coroutine queued on it) meanwhile. A coroutine that
	 * must destroy another runtime does it through weft_blocking. */
	if (worker_current())
		return -EPERM;
	/* seq_cst: a spawn that reads the flag starts its task cancelled; one
	 * that misses it is counted below and cancelled by the sweep. */
	atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
	uint64_t start = weft_now();
	bool warned = false;
	for (;;) {
		bool exact;
		uint64_t live = weft__live_tasks(rt, &exact);
		if (live == 0 && exact)
			break;
		/* weft_cancel for every live task, with one barrier for all
		 * (weft__cancel_mark). The second pass delivers only what the first
		 * marked: a record recycled in between has its flag clear and
		 * waits for the next sweep. */
		pthread_mutex_lock(&rt->pool_lock);
		for (struct weft__slab *s = rt->slabs; s; s = s->next)
			for (unsigned i = 0; i < s->n; i++)
				if (atomic_load_explicit(&s->tasks[i].alive, memory_order_relaxed))
					weft__cancel_mark(&s->tasks[i]);
		weft__cancel_fence();
		for (struct weft__slab *s = rt->slabs; s; s = s->next)
			for (unsigned i = 0; i < s->n; i++)
				if (atomic_load_explicit(&s->tasks[i].alive, memory_order_relaxed) &&
				    atomic_load_explicit(&s->tasks[i].cancel, memory_order_relaxed))
					weft__cancel_deliver(&s->tasks[i]);
		pthread_mutex_unlock(&rt->pool_lock);
		if (!warned && weft_now() - start > 5000000000ull) {
			warned = true;
			fprintf(stderr, "weft: weft_rt_destroy: %llu coroutine(s) still running after "
			        "cancellation; waiting for them to return\n", (unsigned long long)live);
		}
		struct timespec ts = { 0, 1000000 };   /* 1 ms between sweeps */
		nanosleep(&ts, NULL);
	}
	weft__rts_remove(rt);
	if (rt->monitor_started) {
		pthread_mutex_lock(&rt->start_lock);
		rt->monitor_stop = true;
		pthread_cond_broadcast(&rt->start_cond);
		pthread_mutex_unlock(&rt->start_lock);
		pthread_join(rt->monitor, NULL);
	}
	/* No task is left to wake, but a thread outside the pool may still be
	 * inside ready() for the last one (see there). */
	while (atomic_load_explicit(&rt->outside_wakers, memory_order_acquire))
		sched_yield();
	atomic_store_explicit(&rt->stop, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < rt->nworkers; i++)
		weft__ring_wake(NULL, &rt->workers[i].ring);
	pthread_mutex_lock(&rt->start_lock);
	rt->exit_ok = true;                 /* the rings may go now */
	pthread_cond_broadcast(&rt->start_cond);
	pthread_mutex_unlock(&rt->start_lock);
	for (unsigned i = 0; i < rt->nworkers; i++)
		pthread_join(rt->workers[i].thread, NULL);
	rt_free(rt);
	return 0;
}
