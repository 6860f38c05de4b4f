/*
 * The park/wake contract, as src/sync and src/io/ops.c use it. They include
 * only this header of src/sched.
 *
 * A blocking primitive opens a *wait* for the calling coroutine, registers a
 * struct weft__waiter (task + sequence number) with every source that may end
 * it (a channel's queue, a mutex's queue, an I/O op's completion record...),
 * and parks. Sources race to end the wait; exactly one wins weft__wait_claim(),
 * and only the winner may touch the parked coroutine's state (for example copy
 * a value into the receiver's buffer) before it calls weft__wait_wake(). The
 * runtime itself is a source too: a deadline given to weft__wait_begin() claims
 * the wait with -ETIMEDOUT, weft_cancel() with -ECANCELED.
 *
 * Two kinds of wait:
 *   interruptible (WEFT__WAIT_INTERRUPTIBLE): what every blocking call of the
 *     public API opens. Besides its own sources and its own deadline, a
 *     cancel ends it (-ECANCELED) and so does the coroutine's region deadline
 *     (weft_deadline_set: -ETIMEDOUT). So it may fail, and its caller must
 *     undo what it registered and return the error.
 *   uninterruptible (weft__wait_begin_uninterruptible, or any wait opened
 *     while the coroutine is shielded, weft__shield_push): only its own
 *     sources, and its own deadline if it was given one, end it. These are
 *     the waits that must not fail because something the caller cannot take
 *     back is still in flight: an I/O op's drain after a cancel (the kernel
 *     still owns the buffer), the blocking pool's wait for a call already
 *     running, cond_wait's re-take of its mutex, a task group's joins of
 *     members it has cancelled. A region deadline is a cancel scope with a
 *     time on it (Trio's), so the shield that keeps out the one keeps out
 *     the other.
 * weft__wait_park dies with a message when it is asked to park on a wait that
 * is not the caller's open one, which is what a caller that ignored a failed
 * begin would do.
 *
 * A waiter record whose wait has already ended is harmless: its sequence no
 * longer matches, so weft__wait_claim() on it returns false. Task records
 * are never unmapped while their runtime lives, so a stale waiter may still be
 * read by a claim (type-stable memory); it never matches again.
 *
 * Typical use (a lock-protected queue of waiters):
 *
 *     lock(&q->lock);
 *     if (can_proceed(q)) { ...; unlock(&q->lock); return 0; }
 *     struct my_waiter w;                       // on the coroutine's stack
 *     int err = weft__wait_begin(&w.waiter, deadline, WEFT__WAIT_INTERRUPTIBLE);
 *     if (err) { unlock(&q->lock); return err; } // -ECANCELED, -ETIMEDOUT, -EPERM
 *     enqueue(q, &w);
 *     int r = weft__wait_park(&w.waiter, unlock_cb, &q->lock);  // lock released
 *     if (r != 0) { lock(&q->lock); remove_if_queued(q, &w); unlock(&q->lock); }
 *     return r;
 *
 * and on the other side:
 *
 *     lock(&q->lock);
 *     while ((w = dequeue(q)))
 *         if (weft__wait_claim(&w->waiter)) { hand_over(w); weft__wait_wake(&w->waiter, 0); break; }
 *     unlock(&q->lock);
 */
#ifndef WEFT_WAIT_H
#define WEFT_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include "weft.h"

/* A broken invariant of the runtime (a contract violated by its own code or
 * by a caller's misuse that the API cannot report): print "weft: ..." to
 * stderr and abort. Any thread. */
void weft__die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

struct weft__waiter {
	struct weft_task *task;
	uint64_t seq;              /* which wait of `task` this record belongs to */
};

enum {
	/* weft_cancel ends it with -ECANCELED, the region deadline with
	 * -ETIMEDOUT; dropped while the coroutine is shielded */
	WEFT__WAIT_INTERRUPTIBLE = 1u << 0,
	/* a deadline already past still goes through the timer heap, so the
	 * wait ends in order with other due timers (weft_sleep) */
	WEFT__WAIT_IN_ORDER      = 1u << 1,
	/* the caller enforces the deadline itself (an I/O op's linked timeout
	 * in the kernel, computed with weft__wait_deadline): the region
	 * deadline is not added and no timer is armed */
	WEFT__WAIT_OWN_TIMEOUT   = 1u << 2,
};

/* Open a wait for the calling coroutine. deadline: absolute weft_now() time,
 * 0 = none; an interruptible wait also ends at the region deadline, when
 * that is nearer. Returns 0, or (with nothing to undo) -EPERM outside a
 * coroutine (weft__sp_begin tells threads from coroutines by it),
 * -ECANCELED when a cancel is pending and the wait is interruptible,
 * -ETIMEDOUT when the deadline has already passed, -ENOMEM when the timer
 * could not be armed (fault injection only). A wait with no deadline that is
 * not interruptible fails only with -EPERM. Caller: the coroutine. */
int  weft__wait_begin(struct weft__waiter *w, uint64_t deadline, unsigned flags);

/* Open a wait that nothing but its own sources can end (see the top of this
 * file): no deadline, not cancellable, the region deadline ignored. Cannot
 * fail; called outside a coroutine it dies with a message. Caller: the
 * coroutine. */
void weft__wait_begin_uninterruptible(struct weft__waiter *w);

/* Park until the wait is claimed and woken. unlock(arg) (may be NULL) runs once
 * the coroutine's registers are saved, on the worker's scheduler stack: release
 * the lock that protects the queue the waiter sits in there. Returns the
 * reason given by the winner: 0 or a source-specific value, -ETIMEDOUT,
 * -ECANCELED. When it returns, the deadline timer is gone. Caller: the coroutine. */
int  weft__wait_park(struct weft__waiter *w, void (*unlock)(void *arg), void *arg);

/* End the wait described by w if nobody has: true means the caller won and
 * must call weft__wait_wake(w, reason) (after handing over any data).
 * ANY: any thread, any context (also plain threads and scheduler callbacks). */
bool weft__wait_claim(const struct weft__waiter *w);

/* How a wake queues the woken coroutine when the waker runs on one of its
 * runtime's workers (from anywhere else it goes through the injection queue,
 * and the mode does not matter):
 *   NEXT   the worker's LIFO slot: it runs next, as a hand-off should
 *          (channel, lock, join); the slot's previous occupant goes to the
 *          back of the run queue.
 *   BATCH  the back of the run queue, in order with the rest of its batch
 *          (timers firing: the slot would run the last one first), waking
 *          an idle worker to help.
 *   IO     the back of the run queue, in order, waking no helper: the
 *          ring's own worker runs what its ring completed (run.c,
 *          enqueue_back, says why). For I/O completion callbacks. */
enum weft__wake_mode { WEFT__WAKE_NEXT, WEFT__WAKE_BATCH, WEFT__WAKE_IO };

/* Wake the coroutine of a wait the caller has claimed, with reason (what
 * weft__wait_park returns), queued as mode says. ANY. */
void weft__wait_wake_as(const struct weft__waiter *w, int reason, enum weft__wake_mode mode);
static inline void weft__wait_wake(const struct weft__waiter *w, int reason)
{
	weft__wait_wake_as(w, reason, WEFT__WAKE_NEXT);
}
static inline bool weft__wait_claim_wake(const struct weft__waiter *w, int reason)
{
	if (!weft__wait_claim(w))
		return false;
	weft__wait_wake(w, reason);
	return true;
}

/* Say what the calling coroutine is about to wait for, for weft_dump
 * ("chan recv", "mutex", "read fd"...) and the object (may be NULL). Lasts
 * until its next wait; call it before weft__wait_begin. */
void weft__wait_describe(const char *what, const void *obj);

/* The deadline an interruptible blocking call should use: the nearer of its
 * own (0: none) and the calling coroutine's region deadline
 * (weft_deadline_set), which does not count while the coroutine is shielded.
 * For ops that put their own timeout in the kernel (linked timeouts, with
 * WEFT__WAIT_OWN_TIMEOUT). Caller: the coroutine (0 from a plain thread). */
uint64_t weft__wait_deadline(uint64_t own);

/* weft_cancel in three steps, for cancelling many tasks at once (task
 * groups): weft__cancel_mark each, then weft__cancel_fence once (a
 * membarrier system call where the kernel has it), then
 * weft__cancel_deliver each task marked before that fence. One barrier for
 * all instead of one per weft_cancel. Every task must stay valid (a handle
 * held) from its mark to its delivery. */
void weft__cancel_mark(weft_task *t);
void weft__cancel_fence(void);
void weft__cancel_deliver(weft_task *t);

/* Shield the calling coroutine from cancellation and from its region
 * deadline (nesting counter): while shielded, the waits it opens are
 * uninterruptible. Returns the previous depth. Caller: the coroutine (a
 * no-op returning 0 from a plain thread). */
unsigned weft__shield_push(void);
void     weft__shield_pop(void);

/* The ring of the worker running the caller (for src/io/ops.c), NULL
 * outside a worker. Valid until the caller's next blocking point (it may
 * migrate after it). CORO. */
struct weft__ring *weft__sched_ring(void);

/* Run c->fn(c) on the worker thread that owns ring r, during its next
 * scheduling round (that worker is woken if it is parked). c must stay valid
 * until fn has run. For what only a ring's owner may do, such as submitting
 * IORING_OP_ASYNC_CANCEL for an op that a migrated coroutine left in flight
 * there. ANY. */
struct weft__remote_call {
	struct weft__remote_call *next;     /* owned by the runtime until fn runs */
	void (*fn)(struct weft__remote_call *c);
};
void weft__sched_call(struct weft__ring *r, struct weft__remote_call *c);

#endif /* WEFT_WAIT_H */
