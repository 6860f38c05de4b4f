/* weft/sync.h: included by weft.h; do not include directly.
 *
 * Synchronisation primitives that park coroutines, not threads: mutex,
 * rwlock, condition variable, semaphore, wait group, once, barrier; then
 * generators (which run on the caller's thread and never park) and task
 * groups.
 *
 * Common rules for the primitives (mutex .. barrier):
 *   - plain structs of opaque storage: zero-initialise them (static storage,
 *     = {0}, the WEFT_*_INIT macros) or call the _init function; they need no
 *     destroy while nobody waits on them, and must not be moved or copied
 *     while in use;
 *   - waiters are served in FIFO order;
 *   - a blocking call parks a coroutine; called from a plain thread outside the
 *     runtime (weft_self() == NULL) it blocks that thread in the same queue
 *     instead (threads cannot be cancelled);
 *   - a blocking call that has to wait returns -ECANCELED when the calling
 *     coroutine is cancelled (before the call or while it waits), and
 *     -ETIMEDOUT once its region deadline (weft_deadline_set) or, for a
 *     _timeout variant, timeout_ns nanoseconds have passed (0: it does not
 *     wait; WEFT_FOREVER: no limit, as everywhere in weft); nothing was
 *     acquired then. A call that can complete at once (a free mutex, a
 *     permit there) completes even in a cancelled coroutine or past its
 *     deadline;
 *   - every function is thread-safe.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H
#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- mutex --- */

/** A mutex. Uncontended: one spin-locked check. Once contended, unlock hands
 *  ownership straight to the longest waiter (no barging, no starvation). Not
 *  recursive. Any coroutine or thread may unlock it (no owner check). */
typedef struct weft_mutex { uint64_t opaque_[4]; } weft_mutex;
#define WEFT_MUTEX_INIT {{0}}

/** Initialise (same as zeroing). Never blocks. */
WEFT_API void weft_mutex_init(weft_mutex *m);
/** Take m, waiting while another holds it. 0, -ECANCELED, -ETIMEDOUT (the
 *  region deadline). */
WEFT_API int  weft_mutex_lock(weft_mutex *m);
/** Take m, waiting at most timeout_ns. 0, -ETIMEDOUT, -ECANCELED. */
WEFT_API int  weft_mutex_lock_timeout(weft_mutex *m, uint64_t timeout_ns);
/** Take m if free (also when others wait: 0 only if nobody does). Never
 *  blocks. 0 or -EBUSY. */
WEFT_API int  weft_mutex_trylock(weft_mutex *m);
/** Release m (hand it to the first waiter, if any). Never blocks. 0, or
 *  -EPERM when m was not locked. */
WEFT_API int  weft_mutex_unlock(weft_mutex *m);

/* --------------------------------------------------------------- rwlock --- */

/** Readers-writer lock, FIFO: a reader arriving while a writer waits queues
 *  behind it (writers do not starve), and a writer's unlock admits every
 *  reader queued before the next writer. */
typedef struct weft_rwlock { uint64_t opaque_[5]; } weft_rwlock;
#define WEFT_RWLOCK_INIT {{0}}

WEFT_API void weft_rwlock_init(weft_rwlock *l);
/** Shared lock. 0, -ECANCELED, -ETIMEDOUT. May block. */
WEFT_API int  weft_rwlock_rdlock(weft_rwlock *l);
WEFT_API int  weft_rwlock_rdlock_timeout(weft_rwlock *l, uint64_t timeout_ns);
/** Exclusive lock. 0, -ECANCELED, -ETIMEDOUT. May block. */
WEFT_API int  weft_rwlock_wrlock(weft_rwlock *l);
WEFT_API int  weft_rwlock_wrlock_timeout(weft_rwlock *l, uint64_t timeout_ns);
/** Release a shared or the exclusive hold. Never blocks. 0, or -EPERM when
 *  l was not held. */
WEFT_API int  weft_rwlock_unlock(weft_rwlock *l);

/* ----------------------------------------------------- condition variable --- */

typedef struct weft_cond { uint64_t opaque_[3]; } weft_cond;
#define WEFT_COND_INIT {{0}}

WEFT_API void weft_cond_init(weft_cond *c);
/**
 * Atomically release m (which the caller holds) and wait for a signal; m is
 * held again when it returns, whatever the result (re-taking it ignores
 * cancellation, the timeout and the region deadline, so it may wait for
 * another holder's unlock after either has passed). Spurious wake-ups do not
 * happen, but loop on your predicate anyway. 0, -ECANCELED, -ETIMEDOUT (the
 * timeout of weft_cond_wait_timeout or the region deadline).
 */
WEFT_API int  weft_cond_wait(weft_cond *c, weft_mutex *m);
WEFT_API int  weft_cond_wait_timeout(weft_cond *c, weft_mutex *m, uint64_t timeout_ns);
/** Wake the longest waiter / all waiters. Never block; with or without m held. */
WEFT_API void weft_cond_signal(weft_cond *c);
WEFT_API void weft_cond_broadcast(weft_cond *c);

/* ------------------------------------------------------------ semaphore --- */

typedef struct weft_sem { uint64_t opaque_[4]; } weft_sem;

/** Initialise with value permits. Never blocks. */
WEFT_API void weft_sem_init(weft_sem *s, uint64_t value);
/** Take a permit, waiting for one. 0, -ECANCELED, -ETIMEDOUT. */
WEFT_API int  weft_sem_wait(weft_sem *s);
WEFT_API int  weft_sem_wait_timeout(weft_sem *s, uint64_t timeout_ns);
/** Take a permit if one is there (and nobody waits). 0 or -EAGAIN. */
WEFT_API int  weft_sem_trywait(weft_sem *s);
/** Add a permit (handed to the first waiter, if any). Never blocks. 0, or
 *  -EOVERFLOW. */
WEFT_API int  weft_sem_post(weft_sem *s);
/** Permits available now (a snapshot). */
WEFT_API uint64_t weft_sem_value(weft_sem *s);

/* ----------------------------------------------------------- wait group --- */

/** Go's sync.WaitGroup. Zero-initialised: counter 0. */
typedef struct weft_wg { uint64_t opaque_[4]; } weft_wg;
#define WEFT_WG_INIT {{0}}

WEFT_API void weft_wg_init(weft_wg *wg);
/** Add delta (may be negative) to the counter; at 0 every waiter is woken.
 *  Never blocks. 0, or -EINVAL if the counter would go below 0 or above
 *  INT64_MAX (unchanged). */
WEFT_API int  weft_wg_add(weft_wg *wg, int64_t delta);
/** weft_wg_add(wg, -1). */
WEFT_API int  weft_wg_done(weft_wg *wg);
/** Wait until the counter is 0. 0, -ECANCELED, -ETIMEDOUT. */
WEFT_API int  weft_wg_wait(weft_wg *wg);
WEFT_API int  weft_wg_wait_timeout(weft_wg *wg, uint64_t timeout_ns);

/* ----------------------------------------------------------------- once --- */

typedef struct weft_once_flag { uint64_t opaque_[3]; } weft_once_flag;
#define WEFT_ONCE_INIT {{0}}

/**
 * Run fn(arg) exactly once for o. The first caller runs it; callers arriving
 * meanwhile wait until it has returned. Once it has, returns 0 at once (one
 * acquire load). fn may block; if the coroutine running it is cancelled,
 * fn's own blocking calls fail, and o counts as done once fn returns.
 * Returns 0, or for a caller that had to wait -ECANCELED or -ETIMEDOUT: fn
 * has then not necessarily finished.
 */
WEFT_API int weft_once(weft_once_flag *o, void (*fn)(void *), void *arg);
WEFT_API int weft_once_timeout(weft_once_flag *o, void (*fn)(void *), void *arg, uint64_t timeout_ns);

/* -------------------------------------------------------------- barrier --- */

typedef struct weft_barrier { uint64_t opaque_[5]; } weft_barrier;
#define WEFT_BARRIER_SERIAL 1

/** Initialise for count parties (>= 1). 0 or -EINVAL. Never blocks. */
WEFT_API int weft_barrier_init(weft_barrier *b, unsigned count);
/**
 * Wait until count parties have arrived, then all go on; the barrier is
 * ready for the next round at once. Returns WEFT_BARRIER_SERIAL to exactly one
 * party of each round (the last to arrive), 0 to the others; -ECANCELED,
 * -ETIMEDOUT: the caller left the round and no longer counts towards it
 * (unless the round completed in the same instant: it then counted).
 */
WEFT_API int weft_barrier_wait(weft_barrier *b);
WEFT_API int weft_barrier_wait_timeout(weft_barrier *b, uint64_t timeout_ns);

/* ----------------------------------------------------------- generators --- */

/**
 * Generators: a body that runs on its own stack, driven by its caller, in
 * the style of Python's generator.send(). weft_gen_resume(g, in, &out)
 * switches into the body, which runs on the caller's thread, nested inside
 * the caller, until it calls weft_gen_yield(g, out, &in) or returns. One
 * context switch each way: no scheduler, no allocation, no syscall.
 *
 * A generator belongs to one caller at a time (not thread-safe; it may be
 * handed to another coroutine or thread between resumes). The body must not
 * call blocking runtime functions (channels, sync waits, sleep, join, I/O,
 * weft_yield): it is not a coroutine of the scheduler, weft_self() inside
 * it names the coroutine that resumed it, and parking from there would park
 * that coroutine with the generator's stack live on top of it. Generators can
 * be used from plain threads too.
 *
 * The floating-point environment (rounding mode, exception masks: MXCSR and
 * the x87 control word, FPCR on AArch64) is the thread's, shared by the body
 * and its caller as by a function and its caller: a body that changes it
 * (fesetround) and yields leaves it changed for the caller, so restore it
 * before yielding, as a function restores it before it returns. (A
 * coroutine, by contrast, keeps its own across the scheduler's switches.)
 */
typedef struct weft_gen weft_gen;

/** The body: gets arg and the in value of the first resume; its return
 *  value is the last out. */
typedef void *(*weft_gen_fn)(weft_gen *g, void *arg, void *in);

/** Create a suspended generator (the body has not started). stack_size 0:
 *  WEFT_STACK_DEFAULT; below WEFT_STACK_MIN: -EINVAL. Never blocks; any
 *  thread. 0, -EINVAL, -ENOMEM.
 *  A body that overflows its stack ends the process (SIGABRT) with
 *  "weft: stack overflow in generator 0x<g> (body 0x<fn>) (stack N KiB),
 *  resumed by coroutine <id> "<name>"" (or by a generator's body, or by a
 *  plain thread), as a coroutine's overflow does. The message needs an
 *  alternate signal stack on the resuming thread: workers have one and
 *  weft_gen_create gives one to the plain thread that calls it; a plain
 *  thread that only resumes generators created elsewhere dies with a bare
 *  SIGSEGV instead. */
WEFT_API int weft_gen_create(weft_gen **g, weft_gen_fn fn, void *arg, size_t stack_size);

#define WEFT_GEN_YIELDED 1   /* weft_gen_resume: the body yielded *out     */
#define WEFT_GEN_DONE    0   /* weft_gen_resume: the body returned *out    */

/**
 * Run the body until it yields or returns, passing in (the first resume
 * starts the body with it; later ones make its pending weft_gen_yield
 * return it). out may be NULL. Returns WEFT_GEN_YIELDED, WEFT_GEN_DONE,
 * -EPIPE (the body had already returned or was closed), -EBUSY (called from
 * inside the generator's own body), -EINVAL (g NULL). Blocks only as long
 * as the body runs.
 */
WEFT_API int weft_gen_resume(weft_gen *g, void *in, void **out);

/**
 * From the body only: hand out to the resumer and suspend. Returns 0 with
 * *in (may be NULL) set to the next resume's value, or -ECANCELED when the
 * generator is being closed: the body must then clean up and return (every
 * later yield also returns -ECANCELED at once). Errors: -EPERM when not
 * called from g's own body (from its caller, from another generator's body,
 * g not started, suspended or done; nothing done), -EINVAL (g NULL).
 */
WEFT_API int weft_gen_yield(weft_gen *g, void *out, void **in);

/**
 * Close and free g. A body suspended in weft_gen_yield is resumed once more
 * with -ECANCELED so it unwinds (frees its resources) and returns; a body
 * never started is not run. Must not be called from g's own body. Never
 * blocks beyond the body's unwinding. Returns 0, or -EBUSY (from the body;
 * nothing done).
 */
WEFT_API int weft_gen_close(weft_gen *g);

/** true once the body has returned. */
WEFT_API bool weft_gen_done(const weft_gen *g);

/* ---------------------------------------------------------- task groups --- */

/**
 * Task groups (structured concurrency, asyncio's gather / Trio's nursery):
 * spawn coroutines into a group, wait for all of them, collect their results.
 * A member reports failure by returning a negative errno from its body; with
 * WEFT_GROUP_CANCEL_ON_ERROR the first failure cancels every other member
 * (spawned before or after it). weft_group_wait always waits for all members,
 * so none outlives the wait.
 */
typedef struct weft_group weft_group;

/** A member body: store the result in *result (initially NULL); return 0,
 *  or a negative errno to report failure. */
typedef int (*weft_group_fn)(void *arg, void **result);

#define WEFT_GROUP_CANCEL_ON_ERROR 0x1u

/** Create an empty group. Never blocks. 0, -EINVAL (unknown flags), -ENOMEM. */
WEFT_API int weft_group_create(weft_group **g, unsigned flags);

/**
 * Spawn fn(arg) as a member, in the caller's runtime. Must be called from a
 * coroutine (-EPERM otherwise), by one coroutine at a time per group (the
 * group's owner), before weft_group_wait. Returns the member's index (>= 0,
 * in spawn order), or -ENOMEM / -EAGAIN / -EPERM. When the group has already
 * failed with WEFT_GROUP_CANCEL_ON_ERROR the member is cancelled as soon as
 * its spawn returns (with child-first spawns it may have run up to its first
 * wait by then).
 * Errors: also -EINVAL (g or fn NULL, or weft_group_wait already called).
 */
WEFT_API int weft_group_spawn(weft_group *g, weft_group_fn fn, void *arg);

/**
 * Wait for every member to finish (blocks; coroutine only, -EPERM otherwise).
 * Returns 0 when all succeeded, else the error of the first member to fail
 * (by time of failure). If the caller is cancelled while waiting, or its
 * region deadline (weft_deadline_set) passes, every member still running is
 * cancelled, the wait still waits for them all, and it returns -ECANCELED or
 * -ETIMEDOUT: no member outlives the call, whatever it returns.
 */
WEFT_API int weft_group_wait(weft_group *g);

/** After weft_group_wait: number of members, and member i's result and
 *  error (what its body returned: 0 or a negative errno; a cancelled member
 *  runs its body all the same, whose waits then fail with -ECANCELED).
 *  -EINVAL / NULL for a bad index. Never block. */
WEFT_API size_t weft_group_size(const weft_group *g);
WEFT_API void  *weft_group_result(const weft_group *g, size_t i);
WEFT_API int    weft_group_error(const weft_group *g, size_t i);

/** Free g. Only after weft_group_wait returned (or with no member spawned). */
WEFT_API void weft_group_destroy(weft_group *g);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SYNC_H */
