/*
 * Internal structures of the scheduler, shared by the files of src/sched only.
 * Other layers use sched/wait.h.
 */
#ifndef WEFT_SCHED_CORE_H
#define WEFT_SCHED_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "io/ring.h"
#include "sched/lock.h"
#include "sched/runq.h"
#include "sched/spawnq.h"
#include "sched/timer.h"
#include "sched/wait.h"

/* Task states (weft_task.state); transitions in runtime.c's opening comment. */
enum {
	WEFT__T_RUNNABLE = 0,
	WEFT__T_RUNNING  = 1,
	WEFT__T_NOTIFIED = 2,
	WEFT__T_PARKED   = 3,
};

struct weft_task {
	struct weft__ctx ctx;             /* saved registers while not running   */
	struct weft__stack *stack;
	_Atomic uint32_t state;           /* WEFT__T_*                           */
	/* free lists, injection queue; in the first cache line with ctx, stack
	 * and state: the lines a yield touches */
	struct weft_task *next;
	/* The claim word: (seq << 1) | 1 while wait number seq is open,
	 * (seq << 1) once claimed or closed. See weft__wait_claim. */
	_Atomic uint64_t wait;
	uint64_t wait_seq;                /* last seq used; owner only           */
	_Atomic unsigned wait_flags;      /* flags of the open wait; see begin   */
	int wake_reason;                  /* written by the claim winner         */
	_Atomic uint32_t cancel;          /* weft_cancel was called              */
	unsigned shield;                  /* cancel shield depth; owner only     */
	uint64_t deadline;                /* region deadline (weft_deadline_set) */
	void **locals;                    /* coroutine-local values (weft_local) */
	struct weft__timer timer;         /* deadline of the open wait           */

	weft_fn fn;
	void *arg;
	void *ret;
	struct weft_rt *rt;

	/* join: under join_lock */
	weft__lock join_lock;
	bool finished;
	bool has_joiner;
	struct weft__waiter joiner;
	_Atomic uint32_t *ext_done;       /* weft_rt_run's thread waits on it    */

	_Atomic uint32_t refs;            /* 1 while it runs + 1 for a handle    */
	_Atomic uint32_t alive;           /* spawned and not yet returned        */
	size_t stack_size;                /* 0: the runtime's default            */
	uint64_t id;
	char name[32];
	uint64_t born;                    /* CLOCK_MONOTONIC_COARSE ns at spawn   */
	/* For weft_dump, which reads them from another thread while the task
	 * runs: relaxed atomics, a sample (the two may come from different
	 * waits; the dump checks obj before it dereferences it). */
	const char *_Atomic wait_what;    /* what it waits for                     */
	const void *_Atomic wait_obj;
};

/*
 * id and name are read from other threads while the coroutine runs and while
 * its record is being recycled for a new one (the monitor's starvation line,
 * weft_dump): such reads are samples that the readers validate or accept
 * torn, but each access must still be atomic, or it is a data race. So every
 * write of them, and every read from another thread, goes through relaxed
 * atomics (the name byte by byte); a coroutine reading its own is plain.
 */
static inline void weft__task_set_name(struct weft_task *t, const char *s)
{
	size_t i = 0;
	for (; s && s[i] && i + 1 < sizeof t->name; i++)
		__atomic_store_n(&t->name[i], s[i], __ATOMIC_RELAXED);
	__atomic_store_n(&t->name[i], 0, __ATOMIC_RELAXED);
}
static inline void weft__task_name_sample(const struct weft_task *t, char out[32])
{
	_Static_assert(sizeof t->name == 32, "name buffer size");
	for (size_t i = 0; i < sizeof t->name; i++)
		out[i] = __atomic_load_n(&t->name[i], __ATOMIC_RELAXED);
	out[sizeof t->name - 1] = 0;
}
static inline uint64_t weft__task_id_sample(const struct weft_task *t)
{
	return __atomic_load_n(&t->id, __ATOMIC_RELAXED);
}

/* What a coroutine asks of its worker when it switches to the scheduler. */
enum weft__action {
	WEFT__A_YIELD = 1,
	WEFT__A_PARK,
	WEFT__A_SPAWN,                    /* run w->action_task first (child-first) */
	WEFT__A_EXIT,
};

#define WEFT__LIFO_MAX 3            /* LIFO-slot hand-offs in a row, then FIFO */
#define WEFT__INJECT_EVERY 61       /* ticks between fairness checks           */
#define WEFT__DRAIN_BATCH 32        /* overflow drained per inject-lock hold   */
#define WEFT__TIMER_HOSTAGE_NS 1000000 /* others fire a worker's timers this late */
#define WEFT__STACK_COLOURS 16      /* stack tops offset 0..15 cache lines    */
#define WEFT__TASK_CACHE 128        /* free task records kept per worker       */

/* Worker counters: written by the owner with a relaxed load and store (no
 * locked instruction), read by anyone with relaxed loads (weft_rt_stats). */
struct weft__wstats {
	_Atomic uint64_t switches, spawns, steals_tried, steals, parks, wakes,
	                 inject_in, inject_out, io_completions, timers_fired, starved;
};
#define WSTAT_ADD(w, f, n)                                                        \
	atomic_store_explicit(&(w)->stats.f,                                     \
	    atomic_load_explicit(&(w)->stats.f, memory_order_relaxed) + (n),       \
	    memory_order_relaxed)

struct weft__worker {
	/* ---- owner-only, hot ---- */
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
	 * stack (an mmap and munmap per coroutine: a million spawns went from
	 * 20 s to many minutes). Owner only; none of these paths re-enters. */
	struct weft_task *overflow[WEFT__RUNQ_CAP / 2 + 1];
	struct weft__waiter joiner;
	void (*unlock)(void *);
	void *unlock_arg;
	bool searching;                   /* counted in rt->nsearching            */
	bool batch_wake;                  /* waking a batch: FIFO, not LIFO slot  */
	bool io_wake;                     /* ...of I/O completions: wake no helper */
	bool drain_inject;                /* our overflow is in the inject queue  */
	/* Tasks taken from the head of the injection queue in one lock hold
	 * while draining our overflow, run in order before the run queue.
	 * Owner-only; not stealable, like the LIFO slot (at most DRAIN_BATCH). */
	unsigned drain_i, drain_n;
	struct weft_task *drain[WEFT__DRAIN_BATCH];
	/* A runtime of one worker (solo): nobody steals, so the run queue's
	 * overflow stays here instead of going through the injection queue's
	 * lock as a linked list; see spill_push in runtime.c. A ring of
	 * spill_cap (a power of two, 0 until first needed) pointers, FIFO,
	 * owner-only; non-empty means every push lands here, behind it. */
	bool solo;
	uint32_t spill_head, spill_tail, spill_cap;
	struct weft_task **spill;
	struct weft_task *free_tasks;     /* task record cache                    */
	unsigned nfree_tasks;
	uint64_t next_id, last_id;        /* block of task ids                    */
	struct weft__stack_cache *stacks;
	struct weft_rt *rt;
	unsigned index;
	pthread_t thread;

	/* ---- shared ---- */
	struct weft__wstats stats;
	/* Live-task accounting without a shared counter (see live_tasks() in
	 * runtime.c): coroutines this worker created / saw return. Written by
	 * the owner only, monotonic; read by destroy and stats. */
	_Atomic uint64_t created, exited;
	/* What runs now, for the monitor (relaxed: a sample, not a protocol). */
	_Atomic(struct weft_task *) running;
	struct weft__runq runq;
	struct weft__spawnq spawnq;       /* continuations of child-first spawns */
	struct weft__timer_heap timers;
	struct weft__ring ring;
	_Alignas(64) struct weft__remote_call *_Atomic calls;  /* MPSC stack     */
	_Atomic uint32_t parked;          /* about to wait / waiting in its ring  */
	/* Hostage rescue (runtime.c, rescue_ring): the monitor asks, the
	 * SIGURG handler on this worker's thread answers. */
	_Atomic uint32_t rescue_req;      /* 1: the next SIGURG here is ours      */
	_Atomic uint32_t rescue_acks;     /* handler runs that flushed the ring   */
	bool in_idle;                     /* under rt->idle_lock                  */
	bool woken_searching;             /* under rt->idle_lock                  */
};

struct weft__slab {
	struct weft__slab *next;
	unsigned n;
	struct weft_task tasks[];
};

struct weft_rt {
	struct weft__worker *workers;
	unsigned nworkers;
	unsigned flags;
	size_t stack_size;
	unsigned ring_entries;
	struct weft__stack_pool *stack_pool;

	/* injection queue: spawns from outside, overflow of run queues */
	_Alignas(64) pthread_mutex_t inject_lock;
	struct weft_task *inject_head, *inject_tail;
	_Atomic uint32_t inject_len;

	/* idle workers and searching workers (Go's npidle, nmspinning) */
	_Alignas(64) _Atomic uint32_t nsearching;
	_Atomic uint32_t nidle;
	pthread_mutex_t idle_lock;
	unsigned *idle;                   /* stack of worker indices              */
	unsigned nidle_list;

	/* task records */
	_Alignas(64) pthread_mutex_t pool_lock;
	struct weft__slab *slabs;
	struct weft_task *free_tasks;
	_Atomic uint64_t next_id;

	/* coroutines created by threads that are not its workers (weft_rt_run,
	 * weft_rt_spawn from outside): rare, so a shared RMW counter */
	_Alignas(64) _Atomic uint64_t created_outside;
	_Atomic uint32_t shutdown;        /* destroy started: spawn cancels        */
	_Atomic uint32_t outside_wakers;  /* non-workers inside ready() right now  */
	_Atomic uint32_t stop;            /* workers leave their loops             */

	/* monitor thread: starvation reports, SIGQUIT dumps */
	pthread_t monitor;
	bool monitor_started;
	bool monitor_stop;                /* under start_lock                      */
	_Atomic uint64_t starve_ns;       /* 0: off                                */
	/* CLOCK_MONOTONIC_COARSE ns, stored by the monitor every round (5 ms
	 * busy, 50 ms idle) and by a worker back from parking: the spawn time
	 * of a coroutine (its age in weft_dump) without a clock read per
	 * spawn. Own line: read at every spawn, written every few ms. */
	_Alignas(64) _Atomic uint64_t coarse_ns;
	void (*starve_log)(const char *line, void *arg);
	void *starve_arg;
	struct weft_rt *next_rt;          /* all runtimes, for weft_dump           */

	/* start-up handshake */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	unsigned started;
	bool exit_ok;                     /* workers may tear down their rings    */
	int start_err;
	char start_why[160];
};

/* Shared by runtime.c and introspect.c (stats, dump). */
uint64_t weft__coarse_now(void);            /* ~5 ns clock for ages, not deadlines */
void weft__rts_add(struct weft_rt *rt);      /* the list weft_dump walks            */
void weft__rts_remove(struct weft_rt *rt);
bool weft__dump_requested(void);             /* a SIGQUIT arrived since last asked  */
uint64_t weft__live_tasks(struct weft_rt *rt, bool *exact);  /* see runtime.c        */

#endif /* WEFT_SCHED_CORE_H */
