/*
 * src/sched/worker.h: a worker (struct weft__worker), split by who touches
 * each part, and how a thread finds the worker it runs on.
 *
 * The record has three parts, each starting on its own cache line so that
 * no writer of one part bounces the lines another part's readers hold
 * (Tokio splits its worker the same way, into Core, Shared and Remote):
 *   owner   read and written only by the worker's own thread: its scheduler
 *           context and every coroutine while it runs there. No atomics.
 *   counts  written only by the owner, read by anyone (stats, the monitor,
 *           destroy's live-task count): relaxed atomics, or release where a
 *           reader draws conclusions from them (created, exited).
 *   shared  the structures other threads operate on: the run queue and
 *           spawn deque (thieves), the timer heap (its lock), the ring
 *           (wakes from any thread, the monitor's rescue), the remote-call
 *           stack, the park flag, the rescue handshake, the idle-list state.
 *
 * Who may call a function of src/sched is in its first comment line, in one
 * vocabulary (docs/internals.md): OWNER (the thread of the worker passed as
 * `self`; debug builds check it with WEFT__ASSERT_OWNER), CORO (the calling
 * coroutine), ANY (any thread), MONITOR (the runtime's monitor thread),
 * SIGNAL (a signal handler), THREAD (a plain thread, not a worker).
 */
#ifndef WEFT_SCHED_WORKER_H
#define WEFT_SCHED_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx/tls.h"
#include "io/ring.h"
#include "sched/runq.h"
#include "sched/spawnq.h"
#include "sched/task.h"
#include "sched/timer.h"

#define WEFT__LIFO_MAX 3            /* LIFO-slot hand-offs in a row, then FIFO */
#define WEFT__INJECT_EVERY 61       /* ticks between fairness checks           */
#define WEFT__DRAIN_BATCH 32        /* overflow drained per inject-lock hold   */
#define WEFT__TIMER_HOSTAGE_NS 1000000 /* others fire a worker's timers this late */
#define WEFT__STACK_COLOURS 16      /* stack tops offset 0..15 cache lines    */
#define WEFT__TASK_CACHE 128        /* free task records kept per worker       */

/* What a coroutine asks of its worker when it switches to the scheduler. */
enum weft__action {
	WEFT__A_YIELD = 1,
	WEFT__A_PARK,
	WEFT__A_SPAWN,                    /* run w->action_task first (child-first) */
	WEFT__A_EXIT,
};

/* The counters a worker keeps, X(field, label in weft_stats_format), in
 * the order of the first fields of the public struct weft_worker_stats
 * (introspect.c reads, sums and prints them from this one list). */
#define WEFT__WORKER_COUNTERS(X) \
	X(switches, "switches") X(spawns, "spawns") X(steals_tried, "steals_tried") \
	X(steals, "steals") X(parks, "parks") X(wakes, "wakes") \
	X(inject_in, "inject_in") X(inject_out, "inject_out") X(io_completions, "io") \
	X(timers_fired, "timers") X(starved, "starved")

struct weft__wstats {
#define WEFT__COUNTER_FIELD(f, label) _Atomic uint64_t f;
	WEFT__WORKER_COUNTERS(WEFT__COUNTER_FIELD)
#undef WEFT__COUNTER_FIELD
};

/* Add n to a counter that only its owner writes: a relaxed load and store,
 * no locked instruction (a reader sees one value or the next, never a torn
 * one). `order` is the store's: relaxed for statistics, release for a count
 * a reader acquires to reason about (created, exited: task.c). OWNER. */
#define WEFT__OWNER_ADD(counter, n, order)                                   \
	atomic_store_explicit(&(counter),                                    \
	    atomic_load_explicit(&(counter), memory_order_relaxed) + (n), (order))
#define WEFT__STAT(w, f, n) WEFT__OWNER_ADD((w)->stats.f, (n), memory_order_relaxed)

struct weft__worker {
	/* ---------------------------------------------------------- owner --- */
	struct weft__ctx sched_ctx;       /* the worker thread's own stack        */
	struct weft_task *current;
	struct weft_task *lifo;           /* LIFO slot: runs next; not stealable  */
	unsigned lifo_streak;
	uint32_t tick;
	uint32_t rng;
	int action;
	struct weft_task *action_task;
	struct weft_task *prev;           /* left with `action`, see after_switch */
	/* Scratch for the scheduler paths that run on coroutine stacks
	 * (after_switch and what it calls): kept off the stack because under
	 * ASan an addressable local there makes the coroutine allocate a fake
	 * stack (an mmap and munmap per coroutine). None of these paths
	 * re-enters. */
	struct weft_task *overflow[WEFT__RUNQ_CAP / 2 + 1];
	struct weft__waiter joiner;
	void (*unlock)(void *);
	void *unlock_arg;
	bool searching;                   /* counted in rt->nsearching            */
	bool drain_inject;                /* our overflow is in the inject queue  */
	/* Tasks taken from the head of the injection queue in one lock hold
	 * while draining our overflow, run in order before the run queue (not
	 * stealable, like the LIFO slot; at most DRAIN_BATCH). inject.c. */
	unsigned drain_i, drain_n;
	struct weft_task *drain[WEFT__DRAIN_BATCH];
	/* A runtime of one worker (solo): nobody steals, so the run queue's
	 * overflow stays here instead of going through the injection queue's
	 * lock as a linked list (run.c, "the spill"). A ring of spill_cap (a
	 * power of two, 0 until first needed) pointers, FIFO; non-empty means
	 * every push lands here, behind it. */
	bool solo;
	uint32_t spill_head, spill_tail, spill_cap;
	struct weft_task **spill;
	struct weft_task *free_tasks;     /* task record cache (task.c)           */
	unsigned nfree_tasks;
	uint64_t next_id, last_id;        /* block of task ids                    */
	struct weft__stack_cache *stacks;
	/* set at creation, read-only after: any thread may read these */
	struct weft_rt *rt;
	unsigned index;
	pthread_t thread;

	/* --------------------------------------------------------- counts --- */
	_Alignas(64) struct weft__wstats stats;
	/* Coroutines this worker created / saw return, for the live count
	 * without a shared counter (task.c, weft__live_tasks). Monotonic. */
	_Atomic uint64_t created, exited;
	/* What runs now, for the monitor (a sample: see run.c, resume_prep). */
	_Atomic(struct weft_task *) running;

	/* --------------------------------------------------------- shared --- */
	_Alignas(64) struct weft__runq runq;
	struct weft__spawnq spawnq;       /* continuations of child-first spawns */
	struct weft__timer_heap timers;
	struct weft__ring ring;
	_Alignas(64) struct weft__remote_call *_Atomic calls;  /* MPSC stack     */
	_Atomic uint32_t parked;          /* about to wait / waiting in its ring  */
	/* Hostage rescue (monitor.c): the monitor asks, the SIGURG handler on
	 * this worker's thread answers. */
	_Atomic uint32_t rescue_req;      /* 1: the next SIGURG here is ours      */
	_Atomic uint32_t rescue_acks;     /* handler runs that flushed the ring   */
	bool in_idle;                     /* under rt->idle_lock (idle.c)         */
	bool woken_searching;             /* under rt->idle_lock                  */
};

/*
 * The worker running the caller, read anew on every call: a coroutine may
 * resume on another thread after any switch (ctx/tls.h). Inline where
 * ctx/tls.h can (one load relative to the thread pointer: a channel
 * hand-off asks up to seven times); elsewhere out of line, with a memory
 * clobber. Set by the worker thread itself (rt.c), NULL on other threads.
 * ANY, SIGNAL.
 */
extern __thread struct weft__worker *weft__tls_worker
	__attribute__((tls_model("initial-exec")));
#if WEFT__TLS_INLINE
extern intptr_t weft__tls_worker_off;
static inline struct weft__worker *weft__worker_current(void)
{
	return *WEFT__TLS_AT(struct weft__worker *, weft__tls_worker_off);
}
#else
struct weft__worker *weft__worker_current(void);
#endif

/* The coroutine running the caller, or NULL (a plain thread, or a worker in
 * its scheduler context). weft_self() without the call. ANY. */
static inline struct weft_task *weft__task_current(void)
{
	struct weft__worker *w = weft__worker_current();
	return w ? w->current : NULL;
}

/* ------------------------------------- the task record cache (task.c) --- */

/* ANY; w: the caller's worker when it is one of rt's, else NULL. */
static inline struct weft_task *weft__task_alloc(struct weft_rt *rt, struct weft__worker *w)
{
	if (w && w->free_tasks) {
		struct weft_task *t = w->free_tasks;
		w->free_tasks = t->next;
		w->nfree_tasks--;
		return t;
	}
	return weft__task_alloc_slow(rt, w);
}

/* ANY; w: the caller's worker, of any runtime, or NULL (only rt's own keep
 * a cache). */
static inline void weft__task_free(struct weft_rt *rt, struct weft__worker *w, struct weft_task *t)
{
	if (w && w->rt == rt && w->nfree_tasks < WEFT__TASK_CACHE) {
		t->next = w->free_tasks;
		w->free_tasks = t;
		w->nfree_tasks++;
		return;
	}
	weft__task_free_slow(rt, w, t);
}

/* Drop one reference (the running task's, or the joiner's handle); the last
 * one recycles the record. ANY. */
static inline void weft__task_unref(struct weft_task *t)
{
	/* References are only ever dropped (2 for a joinable task, 1 for a
	 * detached one, set at creation), so reading 1 means we hold the last
	 * one and nobody can touch the count again: free without the RMW (a
	 * locked instruction per finished coroutine). acquire: pairs with the
	 * other holder's release in its fetch_sub, so its writes (ret,
	 * joiner...) precede the recycling. Otherwise acq_rel: the last holder
	 * must see every write made by the others before it recycles the
	 * record. */
	if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1 ||
	    atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		weft__task_free(t->rt, weft__worker_current(), t);
}

/* Debug builds: die unless the caller runs on self's thread (Go's
 * assertLockHeld for the P). A function tagged OWNER takes the worker as
 * `self` and checks it on entry. Release builds (NDEBUG) compile it out. */
#ifdef NDEBUG
#define WEFT__ASSERT_OWNER(self) ((void)(self))
#else
#define WEFT__ASSERT_OWNER(self)                                             \
	do {                                                                 \
		if (__builtin_expect(weft__worker_current() != (self), 0))   \
			weft__die("%s: not on worker %u's thread", __func__, \
			          (self)->index);                            \
	} while (0)
#endif

#endif /* WEFT_SCHED_WORKER_H */
