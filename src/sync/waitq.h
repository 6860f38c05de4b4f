/*
 * src/sync/waitq.h: what every primitive of src/sync is built from.
 *
 * Terms
 *   spin     the runtime's spinlock, weft__lock (sched/lock.h: why C11
 *            atomics, and its backoff), protecting one primitive's state and
 *            its queues. Not pthread_mutex_t: it is 1 byte, needs no
 *            destroy, is all-zero when unlocked (so the public types can be
 *            zero-initialised), and critical sections here are a few dozen
 *            instructions.
 *   parker   one blocking call of one caller: a coroutine (a wait of the
 *            park/wake contract of src/sched/wait.h) or a plain thread outside
 *            the runtime (a futex word in the record). Claim and wake behave
 *            the same for both, so coroutines and threads meet in the same
 *            queues (a thread can rendezvous with a coroutine on a channel).
 *   node     one entry of a parker in one queue. A channel select puts one
 *            node per case into several queues, all pointing to the same
 *            parker: the first waker to claim the parker wins, the other nodes
 *            become stale and are dropped by whoever finds them.
 *
 * Protocol (both kinds of parker)
 *   caller, with the spin(s) held:  weft__sp_begin -> enqueue node(s) ->
 *       weft__sp_park(unlock = release the spins); after it returns with
 *       anything but a hand-off, take the spins again and remove the nodes
 *       still queued (a node is never left queued when the call returns, so
 *       nodes and parkers live on the caller's stack);
 *   waker, with the spin held: pop nodes until weft__sp_claim succeeds,
 *       hand over (copy a value, grant ownership), then weft__sp_wake.
 *   A waker touches a node only while it holds the spin of the queue the node
 *   is (or was just) in, and the parker only between a successful claim and
 *   its wake; the caller cannot return before that wake.
 *
 * Thread parkers: tstate 0 = waiting, 1 = claimed, 2 = woken (reason valid).
 * The waker stores 2 with release after writing the reason/selection and the
 * handed-over data; the thread loads it with acquire. On its deadline the
 * thread claims itself (CAS 0 -> 1) and returns -ETIMEDOUT; if that CAS loses,
 * a waker owns the record and the thread waits for 2. Plain threads cannot be
 * cancelled. The FUTEX_WAKE after the store may hit a record whose thread
 * already returned: a spurious wake-up of whatever waits there next, which
 * every futex loop here tolerates.
 */
#ifndef WEFT_SYNC_WAITQ_H
#define WEFT_SYNC_WAITQ_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "weft.h"
#include "sched/lock.h"
#include "sched/wait.h"

/* ---------------------------------------------------------------- parker -- */

struct weft__parker {
	struct weft__waiter w;       /* coroutine parkers: task + wait sequence   */
	uint64_t deadline;           /* absolute weft_now() ns, 0 = none          */
	_Atomic uint32_t tstate;     /* thread parkers: 0 waiting, 1 claimed, 2 woken */
	bool thread;                 /* a plain thread (weft_self() == NULL)      */
	int reason;                  /* thread parkers: the winner's reason       */
	int selected;                /* written by the winner before the wake     */
};

/* The plain-thread halves of the four calls below (waitq.c); the coroutine
 * halves are inline here, so a channel hand-off between coroutines makes no
 * call into this file (pingpong and ring on 1 worker, see weft__sp_wake). */
int  weft__sp_begin_thread(struct weft__parker *p, uint64_t deadline);
int  weft__sp_park_thread(struct weft__parker *p, void (*unlock)(void *), void *arg);
bool weft__sp_claim_thread(struct weft__parker *p);
void weft__sp_wake_thread(struct weft__parker *p, int reason);

/* Open a blocking call for the caller (coroutine or plain thread); deadline
 * is absolute (weft_now()), 0 = none. 0, or -ECANCELED / -ETIMEDOUT with
 * nothing to undo. Call it with the primitive's spin held, before queueing. */
static inline int weft__sp_begin(struct weft__parker *p, uint64_t deadline)
{
	p->deadline = deadline;
	p->selected = -1;
	p->reason = 0;
	p->thread = false;
	/* -EPERM only outside a coroutine, with nothing opened: then the
	 * caller is a plain thread. One lookup of the current task, not two. */
	int r = weft__wait_begin(&p->w, deadline, WEFT__WAIT_INTERRUPTIBLE);
	if (r != -EPERM)
		return r;
	return weft__sp_begin_thread(p, deadline);
}

/* Block until claimed and woken; unlock(arg) releases the spins (for a
 * coroutine after its registers are saved, for a thread at once). Returns
 * the winner's reason (0 or a primitive-specific value), -ETIMEDOUT or
 * -ECANCELED. */
static inline int weft__sp_park(struct weft__parker *p, void (*unlock)(void *), void *arg)
{
	if (p->thread)
		return weft__sp_park_thread(p, unlock, arg);
	return weft__wait_park(&p->w, unlock, arg);
}

/* First caller wins; the winner must call weft__sp_wake. Any thread. */
static inline bool weft__sp_claim(struct weft__parker *p)
{
	if (p->thread)
		return weft__sp_claim_thread(p);
	return weft__wait_claim(&p->w);
}

static inline void weft__sp_wake(struct weft__parker *p, int reason)
{
	if (p->thread)
		weft__sp_wake_thread(p, reason);
	else
		weft__wait_wake(&p->w, reason);
}

/* A _timeout call's relative timeout (ns) to the absolute deadline the
 * parker takes: WEFT_FOREVER to 0 (none), anything else to now + ns,
 * saturating, and never 0. A timeout of 0 gives a deadline already reached:
 * the wait fails with -ETIMEDOUT before it parks, after the caller's fast
 * path found nothing to take at once (weft.h, Timeouts). */
static inline uint64_t weft__deadline_after(uint64_t ns)
{
	if (ns == WEFT_FOREVER)
		return 0;
	uint64_t now = weft_now();
	uint64_t d = now + ns;
	return d < now ? UINT64_MAX : (d ? d : 1);
}

/* ----------------------------------------------------------------- queue -- */

struct weft__node {
	struct weft__node *next, *prev;
	struct weft__parker *p;
	void *elem;                  /* channels: value to send / where to receive */
	int idx;                     /* select: case index; rwlock: 1 = writer    */
	bool queued;                 /* under the queue's spin                    */
};

struct weft__queue { struct weft__node *head, *tail; };

/* All queue functions: with the queue's spin held. */
static inline bool weft__q_empty(const struct weft__queue *q) { return !q->head; }

static inline void weft__q_push(struct weft__queue *q, struct weft__node *n)
{
	n->next = NULL;
	n->prev = q->tail;
	if (q->tail)
		q->tail->next = n;
	else
		q->head = n;
	q->tail = n;
	n->queued = true;
}

static inline void weft__q_remove(struct weft__queue *q, struct weft__node *n)
{
	if (!n->queued)
		return;
	if (n->prev)
		n->prev->next = n->next;
	else
		q->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		q->tail = n->prev;
	n->queued = false;
}

/* Pop nodes from the head until one's parker is claimed; that node (removed)
 * or NULL. Stale nodes (their wait ended elsewhere) are dropped on the way. */
static inline struct weft__node *weft__q_pop_claimed(struct weft__queue *q)
{
	struct weft__node *n;
	while ((n = q->head)) {
		weft__q_remove(q, n);
		if (weft__sp_claim(n->p))
			return n;
	}
	return NULL;
}

/* Claim and wake every parker queued in q with reason; returns how many. */
unsigned weft__q_wake_all(struct weft__queue *q, int reason);

/* Wait on one queue for the common case: with *l held, queue a node for the
 * caller and park; *l is released whatever happens. On a return other than
 * 0 the node is removed again (under *l). idx/elem go into the node.
 * Returns the winner's reason, -ETIMEDOUT, -ECANCELED. */
int weft__q_wait(weft__lock *l, struct weft__queue *q, uint64_t deadline,
                 void *elem, int idx);

/* Storage check for public types holding an internal struct. */
#define WEFT__FITS(pub, priv) \
	_Static_assert(sizeof(pub) >= sizeof(priv) && \
	               _Alignof(pub) >= _Alignof(priv), #priv " does not fit " #pub)

#endif /* WEFT_SYNC_WAITQ_H */
