/*
 * src/sched/rt.h: a runtime (struct weft_rt) and the functions the files of
 * src/sched call in one another. The map of the files, and the order in
 * which they may call each other (always downwards in this list, never
 * back), is in docs/internals.md:
 *
 *   rt.c        create, destroy, the worker threads
 *   monitor.c   the monitor thread: starvation, stranded work, hostage rescue
 *   introspect.c  stats, weft_dump, the list of runtimes
 *   api.c       spawn, join, yield, sleep, self (the public coroutine calls)
 *   wait.c      cancellation, region deadlines, shields (the wait contract's
 *               interrupting half)
 *   run.c       the owner's hot path: enqueue, the wake state machine, the
 *               switch, finding and stealing work, the worker loop, and the
 *               wait contract's hot half (begin, park, claim, wake)
 *   idle.c      searching and parking workers, remote calls
 *   inject.c    the injection queue
 *   task.c      the record pool, live-task accounting, coroutine locals
 *   worker.c    the thread's worker (TLS) and weft__die
 *   runq.c spawnq.c timer.c   the per-worker structures
 */
#ifndef WEFT_SCHED_RT_H
#define WEFT_SCHED_RT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sched/worker.h"

/* A slab of task records (task.c): WEFT__SLAB_TASKS records in a mapping
 * of their own, page-aligned, so that its pages can be given back. The
 * fields after `n` are under rt->pool_lock. */
struct weft__slab {
	struct weft__slab *next;          /* every slab of rt, until destroy       */
	struct weft_task *tasks;          /* the records                            */
	unsigned n;
	unsigned nfree;                   /* records in `free`                      */
	struct weft_task *free;           /* this slab's free records (t->next)     */
	struct weft__slab *next_part;     /* in rt->partial: has free records       */
	bool in_partial;
	bool trimmed;                     /* pages given back, in rt->trimmed_slabs */
	uint64_t seq_floor;               /* trimmed: wait_seq for revived records  */
};

/* The trim policy's state (trim.c): the peaks of the live count over the
 * current and the previous window. The monitor's alone. */
struct weft__trim {
	uint64_t window_start;            /* ns (weft__now), 0: no sample yet      */
	uint64_t peak_cur, peak_prev;
};

struct weft_rt {
	/* set by weft_rt_create, read-only after */
	struct weft__worker *workers;
	unsigned nworkers;
	unsigned flags;
	size_t stack_size;
	unsigned ring_entries;
	struct weft__stack_pool *stack_pool;

	/* injection queue (inject.c): spawns from outside, overflow of run
	 * queues */
	_Alignas(64) pthread_mutex_t inject_lock;
	struct weft_task *inject_head, *inject_tail;
	_Atomic uint32_t inject_len;

	/* idle and searching workers (idle.c; Go's npidle, nmspinning) */
	_Alignas(64) _Atomic uint32_t nsearching;
	_Atomic uint32_t nidle;
	pthread_mutex_t idle_lock;
	unsigned *idle;                   /* stack of worker indices              */
	unsigned nidle_list;

	/* task records (task.c), under pool_lock: every slab, the slabs with
	 * free records, the trimmed ones, and counts for the trim policy */
	_Alignas(64) pthread_mutex_t pool_lock;
	struct weft__slab *slabs;
	struct weft__slab *partial;
	struct weft__slab *trimmed_slabs;
	uint64_t nrecords, nfree_records, ntrimmed_records;

	/* coroutines created by threads that are not its workers (weft_rt_run,
	 * weft_rt_spawn from outside): rare, so a shared RMW counter */
	_Alignas(64) _Atomic uint64_t created_outside;
	_Atomic uint32_t shutdown;        /* destroy started: spawn cancels        */
	_Atomic uint32_t outside_wakers;  /* non-workers inside ready() right now  */
	_Atomic uint32_t stop;            /* workers leave their loops             */

	/* CLOCK_MONOTONIC_COARSE ns, stored by the monitor every round and by a
	 * worker back from parking: the spawn time of a coroutine (its age in
	 * weft_dump) without a clock read per spawn. Own line: read at every
	 * spawn, written every few ms. */
	_Alignas(64) _Atomic uint64_t coarse_ns;

	/* the monitor thread (monitor.c), under monitor_lock: its sleep, its
	 * stop, and the starvation log it calls */
	pthread_mutex_t monitor_lock;
	pthread_cond_t monitor_cond;
	pthread_t monitor;
	bool monitor_started;
	bool monitor_stop;
	_Atomic uint64_t starve_ns;       /* 0: off; relaxed, read every round    */
	void (*starve_log)(const char *line, void *arg);
	void *starve_arg;
	struct weft__trim trim;           /* the monitor's, not under the lock    */

	struct weft_rt *next_rt;          /* all runtimes, under introspect.c's lock */

	/* start-up handshake and exit gate (rt.c), under start_lock */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	unsigned started;
	bool exit_ok;                     /* workers may tear down their rings    */
	int start_err;
	char start_why[160];
};

/* ------------------------------------------------------- monitor.c --- */

/* Start rt's monitor thread; false if it could not (the runtime runs on
 * without: no starvation reports, rescue or stranded-work wake-ups).
 * THREAD (weft_rt_create). */
bool weft__monitor_start(struct weft_rt *rt);
/* Stop it and join it, if it was started. THREAD (weft_rt_destroy). */
void weft__monitor_stop(struct weft_rt *rt);

/* ---------------------------------------------------------- trim.c --- */

/* One round of the trim policy: returns true while a surplus is left (the
 * monitor comes back in 1 ms). MONITOR, without monitor_lock. */
bool weft__trim_tick(struct weft_rt *rt);
/* The policy's parts, for tests: free stacks and records kept for a live
 * count and a peak; a sample folded into the windows; the peak. ANY (a
 * struct weft__trim of one's own). */
uint64_t weft__trim_keep(uint64_t live, uint64_t peak);
void weft__trim_sample(struct weft__trim *tr, uint64_t live, uint64_t now);
uint64_t weft__trim_peak(const struct weft__trim *tr);

/* ---------------------------------------------------- introspect.c --- */

void weft__rts_add(struct weft_rt *rt);      /* the list weft_dump walks; ANY */
void weft__rts_remove(struct weft_rt *rt);
bool weft__dump_requested(void);             /* a SIGQUIT arrived since last
                                                asked; MONITOR               */

/* ---------------------------------------------------------- wait.c --- */

/* Whether cancellation's Dekker pair uses membarrier(2) (wait.c explains
 * it; run.c's weft__wait_begin is its other side). Set once, by
 * weft__membarrier_register, before any coroutine exists; read-only after. */
extern bool weft__membarrier_mode;
void weft__membarrier_register(void);        /* THREAD (weft_rt_create)   */

#endif /* WEFT_SCHED_RT_H */
