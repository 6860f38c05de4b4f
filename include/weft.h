/*
 * weft: an M:N work-stealing runtime for stackful coroutines on Linux.
 *
 * This is the only header users include. Conventions, as in liburing:
 *   - functions that can fail return 0 (or a count) on success and a negative
 *     errno on failure; errno itself is never used to report errors;
 *   - every blocking call parks the calling coroutine, never its worker thread;
 *     it returns -ECANCELED when the coroutine is cancelled and -ETIMEDOUT past
 *     its deadline;
 *   - a blocking call made outside a coroutine returns -EPERM (channels and
 *     sync primitives document where plain threads are allowed instead).
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

typedef struct weft_rt   weft_rt;
typedef struct weft_task weft_task;

/** A coroutine body. Its return value is handed to weft_join(). */
typedef void *(*weft_fn)(void *arg);

/* ------------------------------------------------------------- runtime --- */

/** Runtime configuration. Zero in a field means "the default". */
struct weft_config {
	unsigned workers;      /* worker threads; default: CPUs in the affinity mask  */
	size_t   stack_size;   /* coroutine stack size, rounded up to pages; default
	                          WEFT_STACK_DEFAULT; below WEFT_STACK_MIN: -EINVAL     */
	unsigned ring_entries; /* io_uring SQ entries per worker; default 256          */
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

/**
 * Create a runtime and start its workers. cfg may be NULL (all defaults).
 * Not callable from inside a coroutine. Returns 0, -EINVAL (bad config),
 * -ENOMEM, or -EPERM/-ENOSYS when io_uring is unavailable (a message naming the
 * cause is printed to stderr). Thread-safe.
 */
WEFT_API int weft_rt_create(weft_rt **rt, const struct weft_config *cfg);

/**
 * Run fn(arg) as a coroutine on rt and block the calling thread until it
 * returns; its result goes to *ret (ret may be NULL). Other coroutines it
 * spawned keep running. Must not be called from a coroutine (-EPERM); may be
 * called again after it returns.
 */
WEFT_API int weft_rt_run(weft_rt *rt, weft_fn fn, void *arg, void **ret);

/**
 * Spawn a coroutine into rt from any thread, worker or not. Returns 0 or
 * -errno; *t as for weft_spawn (NULL: detached). Thread-safe.
 */
WEFT_API int weft_rt_spawn(weft_rt *rt, weft_task **t, weft_fn fn, void *arg);

/**
 * Cancel every coroutine still alive, wait for them to finish, stop and join
 * the workers and free everything. Not callable from a coroutine of rt
 * (-EPERM). Joinable handles not yet joined become invalid.
 */
WEFT_API int weft_rt_destroy(weft_rt *rt);

/** Number of workers of rt. */
WEFT_API unsigned weft_rt_workers(const weft_rt *rt);

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
 * possibly on another worker. Makes no syscall and no malloc once the pools
 * are warm. Returns 0, -ENOMEM or -EAGAIN.
 */
WEFT_API int weft_spawn(weft_task **t, weft_fn fn, void *arg);
WEFT_API int weft_spawn_opts(weft_task **t, weft_fn fn, void *arg,
                             const struct weft_spawn_opts *opts);

/**
 * Wait for t to finish and release it; its result goes to *ret (may be NULL).
 * Blocks (parks). Returns 0, -EDEADLK (t is the caller), -EINVAL (t NULL),
 * -ECANCELED (the caller was cancelled; t stays joinable), -EPERM outside a
 * coroutine.
 */
WEFT_API int weft_join(weft_task *t, void **ret);

/**
 * Ask t to stop: its current or next blocking call returns -ECANCELED (and so
 * does every blocking call after it). Cancelling a finished coroutine is a
 * no-op. Callable from any thread while t is not yet joined. Returns 0.
 */
WEFT_API int weft_cancel(weft_task *t);

/** true when the calling coroutine has been cancelled. */
WEFT_API bool weft_cancelled(void);

/** Let the other runnable coroutines run; the caller goes to the back of its
 *  worker's queue. A no-op outside a coroutine. */
WEFT_API void weft_yield(void);

/** Park the caller for at least ns nanoseconds. Returns 0, -ECANCELED or -EPERM. */
WEFT_API int weft_sleep(uint64_t ns);

/** The calling coroutine, or NULL outside one. */
WEFT_API weft_task *weft_self(void);

/** The id (unique within the process, never 0) and the name of a coroutine. */
WEFT_API uint64_t    weft_task_id(const weft_task *t);
WEFT_API const char *weft_task_name(const weft_task *t);
/** Rename the calling coroutine (copied, truncated to 31 bytes). */
WEFT_API void weft_set_name(const char *name);

/** Index of the worker running the caller (0..workers-1), or -1 outside one. */
WEFT_API int weft_worker_id(void);

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
