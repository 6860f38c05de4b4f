/* weft/blocking.h: included by weft.h; do not include directly.
 *
 * Blocking offload: run a function that blocks its thread (getaddrinfo, a
 * library without asynchronous I/O, a slow read(2) on a pipe) on a bounded
 * pool of helper threads while the calling coroutine parks, so its worker
 * keeps running other coroutines.
 *
 * The pool is shared by the whole process (every runtime). Helper threads are
 * started lazily, at most weft_blocking_max_threads() of them at once (default
 * 64, or the WEFT_BLOCKING_THREADS environment variable read at the first
 * call); calls beyond that wait in a FIFO queue. A helper that finds no work
 * for the idle timeout (default 10 s, WEFT_BLOCKING_IDLE_MS) exits.
 *
 * fork: the child starts with an empty pool. The parent's helpers stay in
 * the parent, and so do the calls its coroutines had queued or running
 * (they are not run in the child); weft_blocking_stats counts from zero. The
 * limit and the idle timeout are kept. A child forked from a plain thread
 * (not from a coroutine or a helper's fn) may create a runtime of its own
 * and call weft_blocking, whether or not the parent had a runtime alive.
 */
#ifndef WEFT_BLOCKING_H
#define WEFT_BLOCKING_H
#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Run fn(arg) on a helper thread and park the calling coroutine until it
 * returns; its result goes to *ret (ret may be NULL). From a plain thread
 * (outside any coroutine) fn simply runs inline on the caller.
 *
 * Cancellation and deadlines: while the call waits in the queue it is
 * interruptible: the request is withdrawn (fn never runs) and -ECANCELED
 * (cancelled) or -ETIMEDOUT (the coroutine's region deadline passed,
 * weft_deadline_set) is returned. Once a helper has started fn it cannot be
 * interrupted: the coroutine then waits, uninterruptibly, for fn to return
 * and returns 0 with its result; the cancel stays pending, and the deadline
 * past, for the coroutine's next blocking call. So a region deadline does
 * not bound this call once fn has started (nor weft_close, which always
 * completes), and a coroutine cancelled or reaped by
 * weft_rt_destroy waits for its fn. A coroutine already cancelled or past
 * its region deadline gets the error at once: fn never runs.
 *
 * fn runs on a plain thread: it must not call weft functions that need a
 * coroutine (they return -EPERM there); channels and sync primitives that
 * allow plain threads are fine.
 *
 * Returns 0, -ECANCELED or -ETIMEDOUT (before fn started; it never runs
 * then), or -EAGAIN (no helper thread could be started and none is running).
 * Thread-safe.
 */
WEFT_API int weft_blocking(void *(*fn)(void *arg), void *arg, void **ret);

/**
 * Set the most helper threads that may run at once (1..4096) and the idle
 * timeout after which a helper without work exits (idle_ms 0: keep the
 * current value). Raising the limit starts helpers at once for the calls
 * queued beyond the old one, up to the new limit (a helper that cannot be
 * started then is left to a later call). Lowering it lets surplus helpers
 * exit after their current call. Any thread; returns 0 or -EINVAL.
 */
WEFT_API int weft_blocking_configure(unsigned max_threads, unsigned idle_ms);

/** The current limit on helper threads. Any thread. */
WEFT_API unsigned weft_blocking_max_threads(void);

/** A snapshot of the pool, for diagnostics and tests. */
struct weft_blocking_stats {
	unsigned threads;      /* helper threads alive now                      */
	unsigned idle;         /* of which waiting for work                     */
	unsigned queued;       /* calls waiting for a helper                    */
	unsigned running;      /* calls whose fn is running                     */
	unsigned peak_threads; /* most helper threads alive at once, ever       */
	uint64_t completed;    /* calls whose fn returned                       */
	uint64_t cancelled;    /* calls withdrawn from the queue by a cancel or
	                          a region deadline                             */
};

/** Fill *st with a snapshot of the pool. Any thread. */
WEFT_API void weft_blocking_stats(struct weft_blocking_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_BLOCKING_H */
