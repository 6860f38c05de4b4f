/*
 * src/sync/blocking.c: weft_blocking, a bounded pool of helper threads that
 * run blocking functions while the calling coroutine parks.
 *
 * Terms
 *   pool     one per process (all runtimes share it): a FIFO queue of
 *            requests, the helper threads and their counters, all under one
 *            pthread mutex (`pool.lock`); idle helpers sleep on `pool.cond`.
 *   request  one weft_blocking call, on the calling coroutine's stack:
 *            fn/arg, the result, a state and the waiter of the park/wake
 *            contract (src/sched/wait.h) that the helper ends.
 *
 * Request states (changed only under pool.lock)
 *
 *     QUEUED --(a helper takes it)--> RUNNING --(fn returned)--> DONE
 *     QUEUED --(its coroutine was cancelled, or its region deadline passed)-->
 *              removed, -ECANCELED or -ETIMEDOUT
 *     QUEUED --(no helper could be started and none is left)--> FAILED,
 *              removed, -EAGAIN (fail_queued_locked)
 *
 * Protocol. The coroutine opens an interruptible wait, queues the request and
 * parks. The lock is released *before* parking (unlock callback NULL): the
 * contract's state machine lets a wake arrive while the coroutine is still
 * running (it becomes NOTIFIED and the park returns at once), and nothing the
 * helper touches lives in the scheduler's data, only in the request, which
 * stays valid until the coroutine returns — and it cannot return before it is
 * woken. The helper, when fn returns, takes the lock, stores the result, sets
 * DONE, copies the waiter and claims it; it wakes the copy after unlocking
 * (the coroutine stays parked between claim and wake, so it does not matter
 * that the lock is gone; the copy is read, never the request, after that),
 * then sets `waked`, which the woken coroutine awaits before it returns (see
 * await_waker: the wake itself still touches the runtime).
 * If the claim fails, a cancel or the region deadline ended the wait first:
 * the coroutine then takes the lock itself and finds its request
 *   QUEUED:  it unlinks it and returns -ECANCELED or -ETIMEDOUT (fn never runs);
 *   RUNNING: it opens a second, uninterruptible wait under the lock, storing
 *            the new waiter in the request, and parks; the helper's claim
 *            (made under the same lock, later) succeeds on that one;
 *   DONE:    it returns the result at once.
 * The lock makes "helper reads the waiter" and "coroutine replaces it"
 * mutually exclusive, so a completion is never lost and never double-woken.
 * Memory: the result is written under the lock and read either under the
 * lock or after the wake, whose release/acquire (wait.h) publishes it.
 *
 * Helper threads. Started lazily by the caller that queues a request while no
 * helper is idle and fewer than `max` exist; an idle helper is "reserved" by
 * the enqueuer (waiting--, wakeups++) before it is signalled, so two requests
 * never count on the same sleeper. Invariant: a queued request has a reserved
 * wake-up, a thread being started, or a busy helper that will look at the
 * queue when its fn returns. Raising `max` starts, at once, a helper for
 * each queued request beyond those the free helpers will take
 * (backlog_locked): the invariant alone would let them wait for a busy
 * helper, which may be waiting for one of them. A helper idle for `idle_ms`
 * with an empty queue exits; helpers above a lowered `max` exit between
 * calls. Helpers block every signal so that process-directed signals reach
 * the application's threads, and are detached: nothing joins them, at exit
 * they are idle.
 *
 * Rejected: a pool per runtime (a library with its own runtime, or two
 * runtimes, would each keep 64 threads; the queue is no hotter than a
 * blocking call); a lock-free queue (each call already costs a thread
 * hand-off of tens of microseconds); holding the lock across
 * the park with an unlock callback (a pthread mutex must be unlocked in the
 * context that locked it, and nothing here needs it).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "weft.h"
#include "sched/wait.h"
#include <ck_pr.h>

enum { REQ_QUEUED, REQ_RUNNING, REQ_DONE, REQ_FAILED };

struct req {
	struct req *next, *prev;       /* the queue, under pool.lock             */
	void *(*fn)(void *);
	void *arg;
	void *ret;                     /* written by the helper under pool.lock  */
	struct weft__waiter w;         /* replaced by the coroutine under lock   */
	int state;                     /* REQ_*, under pool.lock                 */
	_Atomic int waked;             /* the helper's wake call has returned    */
};

#define BLOCKING_MAX_LIMIT    4096u
#define BLOCKING_MAX_DEFAULT  64u
#define BLOCKING_IDLE_DEFAULT 10000u   /* ms */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* idle helpers sleep here (CLOCK_MONOTONIC) */
	struct req *head, *tail;
	unsigned max, idle_ms;
	unsigned threads;              /* alive or being started                 */
	unsigned waiting;              /* idle helpers not reserved               */
	unsigned wakeups;              /* reserved idle helpers, not yet running  */
	unsigned queued, running, peak;
	uint64_t completed, cancelled;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static unsigned env_unsigned(const char *name, unsigned def, unsigned lo, unsigned hi)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	return (*end || v < lo || v > hi) ? def : (unsigned)v;
}

static void cond_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&pool.cond, &a);
	pthread_condattr_destroy(&a);
}

/*
 * fork. Only the forking thread goes on in the child: the helpers, and the
 * coroutines whose requests are queued or running, stay in the parent. A
 * child that kept the parent's counters would reserve an idle helper that
 * does not exist (or count on a busy one) and wait for ever; and the child's
 * copy of pool.lock may be held by a thread that is not there. So the child
 * handler makes lock and cond anew (the parent's sleepers on the cond do not
 * exist here) and empties the pool: no helper, no request, zero counters.
 * The limit and idle timeout are kept. The requests the parent had queued
 * belong to coroutines that are not in the child; they are dropped (their
 * memory is the child's copy of the parent's stacks, never touched again).
 * Nothing of the copy is read, so it does not matter that another thread
 * may have been in the middle of an update when the fork took it, and the
 * parent needs no prepare handler (a fork never waits for the pool).
 * max and idle_ms are single words written under the lock: the child reads
 * the value before or after a configure that raced with the fork.
 * Registered by pool_init, before anything can leave the pool non-empty:
 * until then there is nothing to reset. Caller: the atfork child, on the
 * forking thread; it calls only pthread_*_init, as atfork child handlers do.
 */
static void pool_child_fork(void)
{
	pthread_mutex_init(&pool.lock, NULL);
	cond_init();
	pool.head = pool.tail = NULL;
	pool.threads = pool.waiting = pool.wakeups = 0;
	pool.queued = pool.running = pool.peak = 0;
	pool.completed = pool.cancelled = 0;
}

static void pool_init(void)
{
	cond_init();
	/* Fails only for lack of memory (ENOMEM), and then the pool works on,
	 * but a child of a later fork inherits the parent's counters and must
	 * not call weft_blocking: nothing here can report it. */
	(void)pthread_atfork(NULL, NULL, pool_child_fork);
	pthread_mutex_lock(&pool.lock);
	if (!pool.max)       /* weft_blocking_configure may not run before this */
		pool.max = env_unsigned("WEFT_BLOCKING_THREADS", BLOCKING_MAX_DEFAULT,
		                        1, BLOCKING_MAX_LIMIT);
	if (!pool.idle_ms)
		pool.idle_ms = env_unsigned("WEFT_BLOCKING_IDLE_MS", BLOCKING_IDLE_DEFAULT,
		                            1, 24u * 3600 * 1000);
	pthread_mutex_unlock(&pool.lock);
}

static inline void pool_ready(void)
{
	pthread_once(&pool_once, pool_init);
}

/* ---------------------------------------------------------------- queue -- */

/* Under pool.lock. */
static void q_push(struct req *r)
{
	r->next = NULL;
	r->prev = pool.tail;
	if (pool.tail)
		pool.tail->next = r;
	else
		pool.head = r;
	pool.tail = r;
	pool.queued++;
}

/* Under pool.lock. */
static void q_unlink(struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		pool.head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		pool.tail = r->prev;
	pool.queued--;
}

/* Reserve and signal one idle helper if there is one. Under pool.lock.
 * Returns true when one was reserved. */
static bool wake_idle_locked(void)
{
	if (!pool.waiting)
		return false;
	pool.waiting--;
	pool.wakeups++;
	pthread_cond_signal(&pool.cond);
	return true;
}

/* --------------------------------------------------------------- helpers -- */

static void deadline_after_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Helper thread body. Takes requests in FIFO order until idle for idle_ms
 * or surplus after the limit was lowered. */
static void *helper_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		if (pool.threads > pool.max)
			break;                              /* surplus: leave */
		if (!pool.head) {
			struct timespec ts;
			deadline_after_ms(&ts, pool.idle_ms);
			pool.waiting++;
			int rc = pthread_cond_timedwait(&pool.cond, &pool.lock, &ts);
			if (pool.wakeups) {
				pool.wakeups--;     /* reserved for us (waiting-- done) */
			} else {
				pool.waiting--;
				if (rc == ETIMEDOUT && !pool.head)
					break;              /* idle too long */
			}
			continue;
		}
		struct req *r = pool.head;
		q_unlink(r);
		r->state = REQ_RUNNING;
		pool.running++;
		pthread_mutex_unlock(&pool.lock);

		void *ret = r->fn(r->arg);

		pthread_mutex_lock(&pool.lock);
		pool.running--;
		pool.completed++;
		r->ret = ret;
		r->state = REQ_DONE;
		struct weft__waiter w = r->w;   /* r may vanish once claimed+woken */
		if (weft__wait_claim(&w)) {
			pthread_mutex_unlock(&pool.lock);
			weft__wait_wake(&w, 0);
			/* release: pairs with the acquire in await_waker; our last
			 * touch of r (see there why it is needed). */
			atomic_store_explicit(&r->waked, 1, memory_order_release);
			pthread_mutex_lock(&pool.lock);
		}
		/* else: a cancel won; the coroutine reads DONE under the lock. */
	}
	pool.threads--;
	/* Leaving with work queued (surplus exit): hand it to a sleeper. */
	if (pool.head)
		wake_idle_locked();
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* Under pool.lock, with no helper left (pool.threads == 0): take every
 * request off the queue as FAILED and end its wait with err. A request
 * whose claim a cancel won first is failed all the same: its coroutine,
 * once woken, takes the lock, finds FAILED and returns without unlinking
 * it again. The wakes happen under the lock, which no wake takes; the woken
 * coroutines need it before they can return, so their requests outlive our
 * loop. */
static void fail_queued_locked(int err)
{
	while (pool.head) {
		struct req *r = pool.head;
		q_unlink(r);
		r->state = REQ_FAILED;
		if (weft__wait_claim(&r->w))
			weft__wait_wake(&r->w, err);
	}
}

/* Start one helper; pool.threads was already counted for it. 0 or -errno. */
static int helper_start(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);   /* inherited by the helper */
	int err = pthread_create(&tid, &attr, helper_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return -err;
}

/* ------------------------------------------------------------------ API -- */

/*
 * Woken by the helper (park returned 0): wait until its weft__wait_wake call
 * has returned before letting the coroutine go on. The wake, from a thread
 * outside the runtime, still reads the runtime after it made the coroutine
 * runnable (to notify an idle worker); were the coroutine to finish and the
 * runtime be destroyed in that window, the helper would read freed memory
 * (seen by TSan). The window is a few hundred nanoseconds; yield through it.
 */
static void await_waker(struct req *r)
{
	/* acquire: pairs with the helper's release store after its wake. */
	for (unsigned spins = 0; !atomic_load_explicit(&r->waked, memory_order_acquire); spins++) {
		if (spins < 64)
			ck_pr_stall();
		else
			sched_yield();   /* the helper was preempted: let it finish */
	}
}

WEFT_API int weft_blocking(void *(*fn)(void *), void *arg, void **ret)
{
	if (!weft_self()) {                 /* a plain thread: just run it */
		void *r = fn(arg);
		if (ret)
			*ret = r;
		return 0;
	}
	pool_ready();

	struct req rq = { .fn = fn, .arg = arg, .state = REQ_QUEUED };
	weft__wait_describe("blocking call on a helper thread", NULL);
	pthread_mutex_lock(&pool.lock);
	int err = weft__wait_begin(&rq.w, 0, WEFT__WAIT_INTERRUPTIBLE);
	if (err) {
		pthread_mutex_unlock(&pool.lock);
		return err;                     /* -ECANCELED/-ETIMEDOUT, nothing queued */
	}
	q_push(&rq);
	bool start = false;
	if (!wake_idle_locked() && pool.threads < pool.max) {
		pool.threads++;
		if (pool.threads > pool.peak)
			pool.peak = pool.threads;
		start = true;
	}
	pthread_mutex_unlock(&pool.lock);

	if (start && (err = helper_start()) != 0) {
		pthread_mutex_lock(&pool.lock);
		pool.threads--;
		/* With no helper left nobody will ever serve the queue: fail every
		 * call queued, ours and those that counted on the helper we were
		 * starting. Otherwise a helper exists and will. */
		if (pool.threads == 0)
			fail_queued_locked(err);
		pthread_mutex_unlock(&pool.lock);
	}

	int r = weft__wait_park(&rq.w, NULL, NULL);
	if (r != 0) {
		/* Cancelled, past the region deadline, or failed for want of a
		 * helper (the only other ways this wait ends). */
		pthread_mutex_lock(&pool.lock);
		if (rq.state == REQ_FAILED) {
			pthread_mutex_unlock(&pool.lock);
			return r;               /* unlinked already: the error, or a
			                           cancel that won the claim first */
		}
		if (rq.state == REQ_QUEUED) {
			q_unlink(&rq);
			pool.cancelled++;
			pthread_mutex_unlock(&pool.lock);
			return r;
		}
		if (rq.state == REQ_RUNNING) {
			/* fn cannot be stopped and runs on our stack's request:
			 * wait for it, uninterruptibly (wait.h). */
			weft__wait_begin_uninterruptible(&rq.w);
			pthread_mutex_unlock(&pool.lock);
			r = weft__wait_park(&rq.w, NULL, NULL);
		} else {
			pthread_mutex_unlock(&pool.lock);
		}
	}
	/* DONE: rq.ret was written under the lock (read after taking it above)
	 * or before the wake (published by it). */
	if (r == 0)
		await_waker(&rq);
	if (ret)
		*ret = rq.ret;
	return 0;
}

/*
 * Helpers to start for the queue after the limit was raised. Under
 * pool.lock; the returned number is already counted in pool.threads.
 *
 * Every helper that is not running a fn (threads - running: starting,
 * idle, reserved, or back from a fn and about to look at the queue) takes
 * a queued request before it can sleep, so those requests are served. The
 * rest waited only because the old limit let no more helpers exist: an
 * enqueuer starts a helper only when it queues, so nobody else would start
 * one for them, and a fn waiting for a call queued behind it would wait for
 * ever.
 */
static unsigned backlog_locked(void)
{
	unsigned free_helpers = pool.threads - pool.running;
	unsigned need = pool.queued > free_helpers ? pool.queued - free_helpers : 0;
	unsigned room = pool.max > pool.threads ? pool.max - pool.threads : 0;
	unsigned n = need < room ? need : room;
	pool.threads += n;
	if (pool.threads > pool.peak)
		pool.peak = pool.threads;
	return n;
}

WEFT_API int weft_blocking_configure(unsigned max_threads, unsigned idle_ms)
{
	if (max_threads < 1 || max_threads > BLOCKING_MAX_LIMIT)
		return -EINVAL;
	pool_ready();
	pthread_mutex_lock(&pool.lock);
	pool.max = max_threads;
	if (idle_ms)
		pool.idle_ms = idle_ms;
	unsigned start = backlog_locked();
	/* Let idle surplus helpers see the new limit (their wake is spurious:
	 * not reserved, so they re-check everything). */
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	/* A helper that cannot start now is no loss: the queue keeps the
	 * helpers that served it before the limit was raised, and the next
	 * enqueue tries again. */
	unsigned failed = 0;
	for (unsigned i = 0; i < start; i++)
		if (helper_start() != 0)
			failed++;
	if (failed) {
		pthread_mutex_lock(&pool.lock);
		pool.threads -= failed;
		pthread_mutex_unlock(&pool.lock);
	}
	return 0;
}

WEFT_API unsigned weft_blocking_max_threads(void)
{
	pool_ready();
	pthread_mutex_lock(&pool.lock);
	unsigned m = pool.max;
	pthread_mutex_unlock(&pool.lock);
	return m;
}

WEFT_API void weft_blocking_stats(struct weft_blocking_stats *st)
{
	pool_ready();
	pthread_mutex_lock(&pool.lock);
	*st = (struct weft_blocking_stats){
		.threads = pool.threads,
		.idle = pool.waiting + pool.wakeups,
		.queued = pool.queued,
		.running = pool.running,
		.peak_threads = pool.peak,
		.completed = pool.completed,
		.cancelled = pool.cancelled,
	};
	pthread_mutex_unlock(&pool.lock);
}
