/*
 * src/sched/task.h: the coroutine record (struct weft_task) and the record
 * pool (task.c). Files of src/sched only; other layers see the park/wake
 * contract of sched/wait.h.
 *
 * A record is type-stable: it lives in a slab that is freed only with its
 * runtime, and is recycled for new coroutines in between. So a pointer to
 * a record stays safe to read after its coroutine is gone (a stale waiter,
 * the monitor's sample, weft_dump), and wait_seq carries on across lives so
 * that a stale waiter never matches a new wait (wait.h).
 *
 * Caller tags (docs/internals.md, "Who may call it"): OWNER (the worker
 * thread named by the `self` argument), CORO (the calling coroutine), ANY
 * (any thread), MONITOR, SIGNAL, THREAD (a plain thread outside the pool).
 */
#ifndef WEFT_SCHED_TASK_H
#define WEFT_SCHED_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "sched/lock.h"
#include "sched/timer.h"
#include "sched/wait.h"

struct weft_rt;
struct weft__worker;
struct weft__slab;

/* Task states (weft_task.state); the transitions are in run.c's opening
 * comment, and stress/model/wake.pml checks them. */
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
	uint64_t wait_seq;                /* last seq used; the task only        */
	_Atomic unsigned wait_flags;      /* flags of the open wait; see begin   */
	int wake_reason;                  /* written by the claim winner         */
	_Atomic uint32_t cancel;          /* weft_cancel was called              */
	unsigned shield;                  /* shield depth (wait.h); the task only */
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
	uint64_t id;
	char name[32];
	uint64_t born;                    /* CLOCK_MONOTONIC_COARSE ns at spawn   */
	/* For weft_dump, which reads them from another thread while the task
	 * runs: relaxed atomics, a sample (the two may come from different
	 * waits; the dump checks obj before it dereferences it). */
	const char *_Atomic wait_what;    /* what it waits for                     */
	const void *_Atomic wait_obj;
	struct weft__slab *slab;          /* the slab it lives in (task.c); set
	                                     when the slab is made or revived  */
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

/* ------------------------------------------------ the pool (task.c) --- */

/* A record for a new coroutine of rt: from w's cache when w is one of rt's
 * workers (else NULL), else from rt's free list under pool_lock, growing it
 * by a slab. NULL: no memory. ANY. The cache's fast path is inline
 * (worker.h, weft__task_alloc). */
struct weft_task *weft__task_alloc_slow(struct weft_rt *rt, struct weft__worker *w);
/* Give t back (to w's cache when w is one of t's runtime's workers). ANY.
 * Inline fast path: worker.h, weft__task_free. */
void weft__task_free_slow(struct weft_rt *rt, struct weft__worker *w, struct weft_task *t);
/* Give back the pages of wholly free record slabs while more than `keep`
 * free records would remain in rt's pool, at most `max` slabs in this call
 * (task.c, "Trim"). Returns the slabs trimmed. ANY; takes pool_lock. */
unsigned weft__task_trim(struct weft_rt *rt, uint64_t keep, unsigned max);
/* Records of rt: made, free in its pool (not counting the workers'
 * caches), and in trimmed slabs; a sample under pool_lock. ANY. */
struct weft__task_counts {
	uint64_t records, free, trimmed;
};
void weft__task_counts(struct weft_rt *rt, struct weft__task_counts *out);
/* How many coroutines of rt are alive (a double collect, task.c); *exact
 * false when spawns ran during the read. ANY. */
uint64_t weft__live_tasks(struct weft_rt *rt, bool *exact);
/* t's coroutine returned: run its weft_local destructors and free them.
 * The coroutine itself, on its own stack. */
void weft__locals_release(struct weft_task *t);
/* The child of a fork, on its only thread: reset the key table's lock. */
void weft__locals_fork_child(void);

#endif /* WEFT_SCHED_TASK_H */
