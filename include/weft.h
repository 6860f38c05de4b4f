/*
 * weft: an M:N work-stealing runtime for stackful coroutines on Linux.
 *
 * This is the only header users include. Conventions, as in liburing:
 *   - functions that can fail return 0 (or a count) on success and a negative
 *     errno on failure; errno itself is never used to report errors;
 *   - every blocking call parks the calling coroutine, never its worker thread;
 *     when it has to wait it returns -ECANCELED if the coroutine is cancelled
 *     and -ETIMEDOUT past its deadline (a call that can complete at once, such
 *     as a lock of a free mutex, completes even then);
 *   - a blocking call made outside a coroutine returns -EPERM (channels and
 *     sync primitives document where plain threads are allowed instead, and
 *     weft_blocking runs its function inline there);
 *   - timeouts: every timeout_ns argument (the _timeout calls, weft_select)
 *     is relative, in nanoseconds, and means the same everywhere: 0 does not
 *     wait (the call completes if it can at once, else fails with
 *     -ETIMEDOUT, as a zero duration does in Go and Tokio), WEFT_FOREVER
 *     sets no limit, any other value waits at most that long. A region
 *     deadline (weft_deadline_set) bounds them all as well.
 *
 * Migration and thread-locals: a coroutine may resume on another worker thread
 * after any blocking call (and after weft_yield or weft_spawn). Never keep the
 * address of a thread-local variable (errno included) across such a call; read
 * it again afterwards. Use coroutine-local state for per-coroutine data.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING)
#  define WEFT_API __attribute__((visibility("default")))
#else
#  define WEFT_API
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1

/** "No limit" for every timeout_ns argument (see Timeouts above). */
#define WEFT_FOREVER UINT64_MAX

typedef struct weft_rt   weft_rt;
typedef struct weft_task weft_task;

/** A coroutine body. Its return value is handed to weft_join(). */
typedef void *(*weft_fn)(void *arg);

/* ------------------------------------------------------------- runtime --- */

/** Runtime configuration. Zero in a field means "the default". */
struct weft_config {
	unsigned workers;      /* worker threads; default: CPUs in the affinity mask,
	                          capped by the cgroup's CPU quota (cpu.max, v1's
	                          cfs quota), rounded up, as Go's GOMAXPROCS    */
	size_t   stack_size;   /* coroutine stack size, rounded up to pages; default
	                          WEFT_STACK_DEFAULT; below WEFT_STACK_MIN: -EINVAL     */
	unsigned ring_entries; /* io_uring SQ entries per worker; default 256; 1 is
	                          raised to 2 (a timed op takes an SQE pair) and the
	                          kernel rounds up to a power of two                  */
	unsigned flags;        /* WEFT_RT_* flags                                      */
};

#define WEFT_STACK_MIN      (16u * 1024)
#define WEFT_STACK_DEFAULT  (64u * 1024)

/** Spawn policy flag: the spawner runs first and the child waits in the
 *  worker's LIFO slot (Go's policy). Default is child-first: weft_spawn switches
 *  to the child at once and the parent's continuation waits to be resumed or
 *  stolen (Cilk's work-first policy), which keeps live stacks near the tree
 *  depth instead of its width. */
#define WEFT_RT_PARENT_FIRST 0x1u

/** Hostage rescue flag. A coroutine that runs for milliseconds without
 *  switching holds its worker's io_uring: only that thread submits to it and,
 *  on kernels with DEFER_TASKRUN or COOP_TASKRUN, only it makes completions
 *  visible. The runtime's monitor then sends the worker thread SIGURG (as Go
 *  does for preemption); the handler submits the ring's prepared SQEs and
 *  posts its completions, and the monitor reaps them, so the coroutines
 *  waiting on them run on other workers. The handler is installed on first
 *  use, with SA_RESTART, and passes SIGURGs it did not ask for to the handler
 *  it replaced. A system call made directly by the hogging coroutine may then
 *  fail with EINTR where SA_RESTART does not apply (nanosleep, poll, ...).
 *  With this flag no signal is sent: the monitor still reaps completions
 *  already posted, but those the kernel keeps for the owner wait for the
 *  coroutine to switch. */
#define WEFT_RT_NO_RESCUE_SIGNAL 0x2u

/** Memory flag. After a spike (many coroutines alive at once, then few) the
 *  runtime gives the memory of the surplus back: its monitor keeps, of the
 *  free coroutine stacks and task records, what a return to the peak of the
 *  last one to two seconds would need (plus a small slack) and hands the
 *  pages of the rest to the kernel (MADV_DONTNEED), a slice every
 *  millisecond, so the RSS follows the live coroutines back down within a
 *  few seconds. The stacks and records stay mapped and are used again
 *  (their pages faulted in anew) when the runtime grows back. With this
 *  flag the monitor gives nothing back: the pools keep their peak until
 *  weft_rt_destroy, and no later spawn pays page faults for it
 *  (weft_rt_trim still works). docs/guarantees.md, "Memory per coroutine". */
#define WEFT_RT_NO_TRIM 0x4u

/**
 * Create a runtime and start its workers. cfg may be NULL (all defaults).
 * Not callable from inside a coroutine. Returns 0, -EINVAL (bad config),
 * -ENOMEM, or -EPERM/-ENOSYS when io_uring is unavailable (a message naming the
 * cause is printed to stderr). Thread-safe.
 * Errors: -EINVAL (rt NULL; workers > 4096; unknown flags; ring_entries >
 * 32768; stack_size below WEFT_STACK_MIN or above 4 GiB, a size that is
 * not a page multiple is rounded up, not an error), -EPERM (called from a
 * coroutine, or io_uring blocked), -ENOSYS (no io_uring), -EMFILE/-ENFILE
 * (no fd left for a worker's ring or eventfd), -EAGAIN (a worker thread
 * could not start), -ENOMEM. On any error *rt is NULL, every fd and thread
 * already made is released, and a line naming the cause goes to stderr.
 */
WEFT_API int weft_rt_create(weft_rt **rt, const struct weft_config *cfg);

/**
 * Run fn(arg) as a coroutine on rt and block the calling thread until it
 * returns; its result goes to *ret (ret may be NULL). Other coroutines it
 * spawned keep running. Must not be called from a coroutine (-EPERM); may be
 * called again after it returns.
 * Errors: -EINVAL (rt or fn NULL), -EPERM (from a coroutine), -ENOMEM/-EAGAIN
 * (as weft_spawn).
 */
WEFT_API int weft_rt_run(weft_rt *rt, weft_fn fn, void *arg, void **ret);

/**
 * Spawn a coroutine into rt from any thread, worker or not. Returns 0 or
 * -errno; *t as for weft_spawn (NULL: detached). Thread-safe.
 * Errors: -EINVAL (rt or fn NULL), -ENOMEM, -EAGAIN.
 */
WEFT_API int weft_rt_spawn(weft_rt *rt, weft_task **t, weft_fn fn, void *arg);

/**
 * Cancel every coroutine still alive, wait for them to finish, stop and join
 * the workers and free everything. Blocks the calling thread, so it is not
 * callable from any coroutine, of rt or of another runtime (-EPERM): a
 * coroutine of another runtime can call it through weft_blocking; one of rt
 * cannot at all, as rt's destroy would wait for that very coroutine, which
 * waits for the helper thread (a deadlock). A coroutine that does not return
 * keeps it waiting; after 5 s it prints how many are left. Joinable handles
 * not yet joined become invalid.
 * Errors: -EINVAL (rt NULL), -EPERM (from a coroutine). Destroying rt twice,
 * or any call on rt after it, is undefined (not detectable: rt is freed).
 */
WEFT_API int weft_rt_destroy(weft_rt *rt);

/** Number of workers of rt. */
WEFT_API unsigned weft_rt_workers(const weft_rt *rt);

/**
 * Give back to the kernel, now, the memory of every free coroutine stack
 * and every wholly free slab of task records of rt, whatever the recent
 * peak (the monitor's own policy keeps that peak's needs for a second or
 * two, WEFT_RT_NO_TRIM). Stacks and records in the workers' small caches
 * (16 stacks and 128 records each) are kept. The memory stays mapped and is
 * used again, page faults and all, when coroutines need it. Any thread, a
 * coroutine included; it does not park, and runs on the calling thread for
 * about a microsecond per free stack (MADV_DONTNEED batched where the kernel
 * has process_madvise for it, one madvise per stack otherwise) and per slab.
 * Returns 0, or -EINVAL when rt is NULL.
 */
WEFT_API int weft_rt_trim(weft_rt *rt);

/** The runtime of the calling coroutine, or NULL outside one. */
WEFT_API weft_rt *weft_rt_current(void);

/* ------------------------------------------------------------ coroutines --- */

/** Per-spawn options; zeroed fields mean defaults. */
struct weft_spawn_opts {
	const char *name;     /* copied (truncated to 31 bytes); shown in diagnostics */
	size_t stack_size;    /* 0: the runtime's stack size                          */
	unsigned flags;       /* reserved, must be 0                                  */
};

/**
 * Spawn fn(arg) as a new coroutine of the caller's runtime. t NULL: detached
 * (its result is dropped and it is reaped when it returns); otherwise the handle
 * must be passed to weft_join() exactly once. Must be called from a coroutine
 * (-EPERM otherwise; use weft_rt_spawn from plain threads). By default the
 * child runs at once and the caller resumes when a worker picks it up again,
 * possibly on another worker. Allocates nothing once the pools are warm
 * (a stack of a non-default size is a mapping of its own), and makes no
 * system call then except to wake an idle worker (one io_uring submit or
 * eventfd write) when there is work it could take. Returns 0, -ENOMEM or
 * -EAGAIN.
 * Errors: -EINVAL (fn NULL; opts->flags not 0; opts->stack_size non-zero and
 * below WEFT_STACK_MIN or above 4 GiB; other sizes are rounded up to
 * pages), -EPERM (outside a coroutine), -ENOMEM/-EAGAIN (no memory or address
 * space for the record or the stack).
 */
WEFT_API int weft_spawn(weft_task **t, weft_fn fn, void *arg);
WEFT_API int weft_spawn_opts(weft_task **t, weft_fn fn, void *arg,
                             const struct weft_spawn_opts *opts);

/**
 * Wait for t to finish and release it; its result goes to *ret (may be NULL).
 * Blocks (parks) while t runs; a t that has finished is joined at once, with
 * 0. Returns 0, -EDEADLK (t is the caller), -EINVAL (t NULL), -ECANCELED (the
 * caller was cancelled; t stays joinable), -ETIMEDOUT (the caller's region
 * deadline, weft_deadline_set, passed; t stays joinable), -EPERM outside a
 * coroutine.
 * Errors: also -EINVAL when another coroutine is already joining t. A
 * detached coroutine has no handle to join (weft_join(NULL): -EINVAL). Joining
 * a handle again after a join returned 0 is undefined and not detectable
 * (the record may already belong to a new coroutine).
 */
WEFT_API int weft_join(weft_task *t, void **ret);

/**
 * Ask t to stop: the wait it is in (unless that one cannot be interrupted:
 * weft_close, a weft_blocking call whose fn runs), or else the next blocking
 * call of t that has to wait, returns -ECANCELED, and so does every one after
 * it (calls that complete without waiting still do). Cancelling a finished
 * coroutine is a no-op. Callable from any thread while t is not yet joined.
 * Returns 0, or -EINVAL when t is NULL. Costs a membarrier(2) system call
 * (docs/guarantees.md, Cancellation): cheap waits, dearer cancels.
 */
WEFT_API int weft_cancel(weft_task *t);

/** true when the calling coroutine has been cancelled. */
WEFT_API bool weft_cancelled(void);

/** Let the other runnable coroutines run; the caller goes to the back of its
 *  worker's queue. A no-op outside a coroutine. */
WEFT_API void weft_yield(void);

/** Park the caller for at least ns nanoseconds (0: weft_yield). Returns 0,
 *  -ECANCELED, -ETIMEDOUT (the region deadline, weft_deadline_set, came
 *  before the end of the sleep and cut it short; a sleep that reaches its own
 *  end returns 0) or -EPERM. */
WEFT_API int weft_sleep(uint64_t ns);

/** The calling coroutine, or NULL outside one. */
WEFT_API weft_task *weft_self(void);

/** The id (never 0, unique within the process, across runtimes) and the
 *  name of a coroutine. */
WEFT_API uint64_t    weft_task_id(const weft_task *t);
WEFT_API const char *weft_task_name(const weft_task *t);
/** Rename the calling coroutine (copied, truncated to 31 bytes). */
WEFT_API void weft_set_name(const char *name);

/** Index of the worker running the caller (0..workers-1), or -1 outside one. */
WEFT_API int weft_worker_id(void);

/* ----------------------------------------------- deadlines and locals --- */

/**
 * Set a deadline for a region of code (the cancel scope of structured
 * concurrency): until it is changed, every blocking call of the calling
 * coroutine that has to wait fails with -ETIMEDOUT once weft_now() passes
 * `deadline` (absolute ns; 0 = none), whatever its own timeout.
 * weft_cond_wait still returns holding its mutex; weft_group_wait cancels
 * its members, waits for them all and then returns -ETIMEDOUT. Not bounded:
 * weft_close (it always completes) and a weft_blocking call whose fn has
 * started (it waits for fn).
 * Returns the previous deadline, to restore when the region ends:
 *     uint64_t old = weft_deadline_set(weft_now() + 50 * 1000000);
 *     ... calls ...
 *     weft_deadline_set(old);
 * A no-op returning 0 outside a coroutine.
 */
WEFT_API uint64_t weft_deadline_set(uint64_t deadline);
/** The calling coroutine's region deadline (0: none). */
WEFT_API uint64_t weft_deadline(void);

/** A key for coroutine-local storage (like pthread_key_t). */
typedef unsigned weft_local_key;
#define WEFT_LOCAL_KEYS 64
/**
 * Create a key; dtor (may be NULL) runs with a coroutine's non-NULL value when
 * that coroutine returns. Returns 0, -EAGAIN (all WEFT_LOCAL_KEYS in use) or
 * -EINVAL (key NULL).
 * Thread-safe. Keys live as long as the process.
 */
WEFT_API int weft_local_key_create(weft_local_key *key, void (*dtor)(void *));
/** The calling coroutine's value for key (NULL if unset or outside one). */
WEFT_API void *weft_local_get(weft_local_key key);
/** Set it. Returns 0, -EINVAL (bad key), -EPERM outside a coroutine, -ENOMEM. */
WEFT_API int weft_local_set(weft_local_key key, void *value);

/* ------------------------------------------------------ introspection --- */

/** Counters of one worker since the runtime started (monotone, relaxed). */
struct weft_worker_stats {
	uint64_t switches;      /* coroutines resumed                                 */
	uint64_t spawns;        /* coroutines created by this worker                  */
	uint64_t steals_tried;  /* victims probed while searching                     */
	uint64_t steals;        /* successful steals                                  */
	uint64_t parks;         /* times the worker slept in its ring                 */
	uint64_t wakes;         /* coroutines made runnable by this worker            */
	uint64_t inject_in;     /* coroutines it put on the injection queue           */
	uint64_t inject_out;    /* coroutines it took from the injection queue        */
	uint64_t io_completions;/* ring callbacks run (I/O ops completed), the
	                           monitor's rescues included                         */
	uint64_t timers_fired;
	uint64_t starved;       /* runs reported as over the starvation threshold     */
	/* The worker's io_uring (its own ring, only it submits and reaps): */
	uint64_t io_sqes;       /* SQEs the kernel took: I/O ops and weft's own (wake
	                           messages, the eventfd poll)                        */
	uint64_t io_cqes;       /* CQEs reaped, weft's own included                   */
	uint64_t io_enters;     /* io_uring_enter system calls (submit, get events,
	                           waits)                                             */
	uint64_t io_sq_full;    /* SQ full when an SQE was wanted: submitted early    */
	uint64_t io_cq_overflow;/* reaps that found the kernel's CQ overflow flag set
	                           (completions kept by the kernel, none lost)        */
	uint64_t io_rescued;    /* CQEs the runtime's monitor reaped for this worker
	                           while a coroutine held it without switching (in
	                           io_cqes too; see WEFT_RT_NO_RESCUE_SIGNAL)          */
};

/** Runtime-wide view: the sum over workers, plus live coroutines and the
 *  memory pools (samples, each read on its own). */
struct weft_stats {
	unsigned workers;
	uint64_t live;          /* coroutines spawned and not yet returned            */
	struct weft_worker_stats total;
	/* Coroutine stacks of the runtime's size (others are mappings of their
	 * own, unmapped when their coroutine returns): */
	uint64_t stacks;        /* mapped (in use, free, trimmed)                     */
	uint64_t stacks_free;   /* free, pages kept (not counting workers' caches)    */
	uint64_t stacks_cold;   /* free, pages given back by a trim                   */
	uint64_t stacks_trimmed;/* stacks whose pages trims gave back, in all         */
	/* Task records (struct weft_task), in slabs of 256: */
	uint64_t records;       /* made (in use, free, trimmed)                       */
	uint64_t records_free;  /* free, pages kept (not counting workers' caches)    */
	uint64_t records_cold;  /* in slabs whose pages a trim gave back              */
};

/**
 * Read the counters of rt: the totals into *out, and per worker into
 * per_worker[0..n) when per_worker is not NULL (n may be less than the
 * workers). Any thread, no lock on the workers' paths. Returns 0 or -EINVAL.
 */
WEFT_API int weft_rt_stats(weft_rt *rt, struct weft_stats *out,
                           struct weft_worker_stats *per_worker, unsigned n);
/** One line of text with every total, label=value in the order of struct
 *  weft_worker_stats, then the pools ("workers=2 live=3 switches=...
 *  spawns=... steals_tried=... steals=... parks=... wakes=... inject_in=...
 *  inject_out=... io=... timers=... starved=... sqes=... cqes=... enters=...
 *  sqfull=... cqoverflow=... rescued=... stacks=... stacks_free=...
 *  stacks_cold=... stacks_trimmed=... records=... records_free=...
 *  records_cold=..."); returns its length (snprintf's convention), or
 *  -EINVAL when s is NULL. */
WEFT_API int weft_stats_format(const struct weft_stats *s, char *buf, size_t len);

/**
 * Print every live coroutine of every runtime to f (NULL: stderr): id, name,
 * state (running on worker N, runnable, parked), what it waits for, its age,
 * the stack it uses now (parked coroutines: from the saved stack pointer) and
 * its stack high-water mark ("high-water N KiB": the deepest byte of the stack
 * ever written, found at dump time from the pages the kernel has committed,
 * nothing on the spawn or switch path). Pooled stacks are reused without
 * being cleared, so the mark covers every coroutine that ran on the stack
 * since it was mapped; the line says "(own)" when this coroutine is the
 * stack's first user, otherwise "(deepest of N users of this stack)". Each
 * line is a sample taken while the coroutines keep running. Names are
 * printed between double quotes with control bytes, backslash and the quote
 * escaped as in C (\n, \t, \r, \\, \", other control bytes \xHH; bytes from
 * 0x80 up as they are), so every line of the dump is weft's own; the stack
 * overflow message escapes them the same way. Any thread; takes each
 * runtime's record lock, nothing on the spawn path.
 */
WEFT_API void weft_dump(void *file /* FILE * */);
/** Install a SIGQUIT handler that makes weft_dump(stderr) run (from a
 *  runtime's monitor thread, not in the handler), as Go does; it replaces
 *  the disposition SIGQUIT had. A SIGQUIT that arrives while no runtime (with
 *  a running monitor) is alive gets the default action instead: the handler
 *  resets SIGQUIT to SIG_DFL and raises it again, so the process ends with
 *  SIGQUIT (and a core dump where enabled), as without the handler. One
 *  that arrives just before the last runtime is destroyed is still answered
 *  by a dump (of that runtime, or "weft: no runtime alive"). Any thread;
 *  returns 0 or -errno (sigaction). */
WEFT_API int weft_dump_on_sigquit(void);

/**
 * Starvation defence: a coroutine that runs longer than threshold_ns of its
 * worker thread's CPU time (default 10 ms; 0 turns detection off; time the
 * kernel preempted the worker does not count) without reaching a blocking
 * point is reported once, with its id, name and how long it had run, through log
 * (NULL: a line on stderr), and counted in weft_worker_stats.starved. Its
 * worker's queue is then stolen by idle workers, and its due timers fired by
 * them. Thread-safe.
 */
WEFT_API void weft_rt_set_starvation(weft_rt *rt, uint64_t threshold_ns,
                                     void (*log)(const char *line, void *arg), void *arg);

/** Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
WEFT_API uint64_t weft_now(void);

/** A message for a negative errno returned by weft (like strerror). */
WEFT_API const char *weft_strerror(int err);

#ifdef __cplusplus
}
#endif

/* Per-module parts of the API. */
#include "weft/chan.h"
#include "weft/sync.h"
#include "weft/io.h"
#include "weft/blocking.h"

#endif /* WEFT_H */
