/*
 * src/sync/mutex.c: mutex, readers-writer lock, condition variable.
 *
 * Each is a spin (waitq.h) over a little state and a FIFO queue of parkers.
 *
 * Mutex: `locked` plus waiters. Unlock with waiters does not clear `locked`:
 *   it claims the first waiter and wakes it as the new owner (direct
 *   hand-off). So a waiter is never overtaken by a newcomer once it queued
 *   (no starvation, strict FIFO), at the price of a convoy under heavy
 *   contention; lock() never spins on a held mutex. A waiter whose wait a
 *   deadline or a cancel claims first is simply not the one handed to: the
 *   claim decides, exactly once.
 *
 * Rwlock: `readers` (holders in shared mode) and `writer`. A request is
 *   granted at once only when nobody is queued (FIFO: a reader never jumps a
 *   waiting writer). grant() runs after every release and after a waiter
 *   leaves the queue (timeout/cancel): it admits the head writer if the lock
 *   is free, or the run of readers at the head while no writer holds it.
 *
 * Cond: a queue. wait() queues a node and opens its wait before it releases
 *   the mutex, so a signal sent after the release (the only one the caller may
 *   expect) finds the node and, by the wake contract, is not lost even if it
 *   arrives before the park. The mutex is re-taken shielded (from
 *   cancellation and the region deadline) and without a deadline of its own,
 *   so the caller always owns it again on return, whatever ended the wait.
 */
#include <errno.h>
#include <string.h>
#include "sync/waitq.h"

/* ---------------------------------------------------------------- mutex --- */

struct mutex {
	weft__lock lock;
	bool locked;
	struct weft__queue q;
};
WEFT__FITS(weft_mutex, struct mutex);

WEFT_API void weft_mutex_init(weft_mutex *m)
{
	memset(m, 0, sizeof(*m));
}

static int mutex_lock(weft_mutex *pub, uint64_t deadline)
{
	struct mutex *m = (struct mutex *)pub;
	weft__lock_acquire(&m->lock);
	if (!m->locked) {
		m->locked = true;
		weft__unlock(&m->lock);
		return 0;
	}
	/* 0: the previous owner handed the mutex to us */
	weft__wait_describe("mutex", pub);
	return weft__q_wait(&m->lock, &m->q, deadline, NULL, 0);
}

WEFT_API int weft_mutex_lock(weft_mutex *m)
{
	return mutex_lock(m, 0);
}

WEFT_API int weft_mutex_lock_timeout(weft_mutex *m, uint64_t timeout_ns)
{
	return mutex_lock(m, weft__deadline_after(timeout_ns));
}

WEFT_API int weft_mutex_trylock(weft_mutex *pub)
{
	struct mutex *m = (struct mutex *)pub;
	weft__lock_acquire(&m->lock);
	int r = -EBUSY;
	if (!m->locked) {
		m->locked = true;
		r = 0;
	}
	weft__unlock(&m->lock);
	return r;
}

WEFT_API int weft_mutex_unlock(weft_mutex *pub)
{
	struct mutex *m = (struct mutex *)pub;
	weft__lock_acquire(&m->lock);
	if (!m->locked) {
		weft__unlock(&m->lock);
		return -EPERM;
	}
	struct weft__node *n = weft__q_pop_claimed(&m->q);
	if (n)
		weft__sp_wake(n->p, 0);      /* hand-off: m stays locked, for n */
	else
		m->locked = false;
	weft__unlock(&m->lock);
	return 0;
}

/* --------------------------------------------------------------- rwlock --- */

struct rwlock {
	weft__lock lock;
	bool writer;
	uint64_t readers;
	struct weft__queue q;        /* node idx: 1 = writer, 0 = reader */
};
WEFT__FITS(weft_rwlock, struct rwlock);

WEFT_API void weft_rwlock_init(weft_rwlock *l)
{
	memset(l, 0, sizeof(*l));
}

/* With the spin held: admit what the head of the queue allows. */
static void rw_grant(struct rwlock *l)
{
	struct weft__node *n;
	while (!l->writer && (n = l->q.head)) {
		if (n->idx) {
			if (l->readers)
				return;
			weft__q_remove(&l->q, n);
			if (weft__sp_claim(n->p)) {
				l->writer = true;
				weft__sp_wake(n->p, 0);
				return;
			}
		} else {
			weft__q_remove(&l->q, n);
			if (weft__sp_claim(n->p)) {
				l->readers++;
				weft__sp_wake(n->p, 0);
			}
		}
	}
}

static int rw_lock(weft_rwlock *pub, bool write, uint64_t deadline)
{
	struct rwlock *l = (struct rwlock *)pub;
	weft__lock_acquire(&l->lock);
	if (!l->writer && weft__q_empty(&l->q) && (!write || !l->readers)) {
		if (write)
			l->writer = true;
		else
			l->readers++;
		weft__unlock(&l->lock);
		return 0;
	}
	struct weft__parker p;
	weft__wait_describe(write ? "rwlock write" : "rwlock read", pub);
	int err = weft__sp_begin(&p, deadline);
	if (err) {
		weft__unlock(&l->lock);
		return err;
	}
	struct weft__node n = { .p = &p, .idx = write };
	weft__q_push(&l->q, &n);
	int r = weft__sp_park(&p, weft__unlock_cb, &l->lock);
	if (r) {
		/* Leaving may unblock those queued behind us (readers behind a
		 * writer that gave up). */
		weft__lock_acquire(&l->lock);
		weft__q_remove(&l->q, &n);
		rw_grant(l);
		weft__unlock(&l->lock);
	}
	return r;
}

WEFT_API int weft_rwlock_rdlock(weft_rwlock *l) { return rw_lock(l, false, 0); }
WEFT_API int weft_rwlock_wrlock(weft_rwlock *l) { return rw_lock(l, true, 0); }

WEFT_API int weft_rwlock_rdlock_timeout(weft_rwlock *l, uint64_t timeout_ns)
{
	return rw_lock(l, false, weft__deadline_after(timeout_ns));
}

WEFT_API int weft_rwlock_wrlock_timeout(weft_rwlock *l, uint64_t timeout_ns)
{
	return rw_lock(l, true, weft__deadline_after(timeout_ns));
}

WEFT_API int weft_rwlock_unlock(weft_rwlock *pub)
{
	struct rwlock *l = (struct rwlock *)pub;
	weft__lock_acquire(&l->lock);
	int r = 0;
	if (l->writer)
		l->writer = false;
	else if (l->readers)
		l->readers--;
	else
		r = -EPERM;
	if (!r)
		rw_grant(l);
	weft__unlock(&l->lock);
	return r;
}

/* ----------------------------------------------------- condition variable --- */

struct cond {
	weft__lock lock;
	struct weft__queue q;
};
WEFT__FITS(weft_cond, struct cond);

WEFT_API void weft_cond_init(weft_cond *c)
{
	memset(c, 0, sizeof(*c));
}

static int cond_wait(weft_cond *pub, weft_mutex *m, uint64_t deadline)
{
	struct cond *c = (struct cond *)pub;
	struct weft__parker p;
	weft__lock_acquire(&c->lock);
	weft__wait_describe("condition variable", pub);
	int r = weft__sp_begin(&p, deadline);
	if (r) {
		weft__unlock(&c->lock);
		return r;                    /* m still held */
	}
	struct weft__node n = { .p = &p };
	weft__q_push(&c->q, &n);
	weft__unlock(&c->lock);
	/* The wait is open and queued: a signal from now on ends it, even one
	 * that arrives before we park. */
	weft_mutex_unlock(m);
	r = weft__sp_park(&p, NULL, NULL);
	if (r) {
		weft__lock_acquire(&c->lock);
		weft__q_remove(&c->q, &n);
		weft__unlock(&c->lock);
	}
	/* Shielded: the re-take is uninterruptible (sched/wait.h), neither a
	 * cancel nor the region deadline may leave the caller without m. */
	weft__shield_push();
	int err = weft_mutex_lock(m);
	weft__shield_pop();
	if (err)
		weft__die("cond_wait could not re-take its mutex: %s", weft_strerror(err));
	return r;
}

WEFT_API int weft_cond_wait(weft_cond *c, weft_mutex *m)
{
	return cond_wait(c, m, 0);
}

WEFT_API int weft_cond_wait_timeout(weft_cond *c, weft_mutex *m, uint64_t timeout_ns)
{
	return cond_wait(c, m, weft__deadline_after(timeout_ns));
}

WEFT_API void weft_cond_signal(weft_cond *pub)
{
	struct cond *c = (struct cond *)pub;
	weft__lock_acquire(&c->lock);
	struct weft__node *n = weft__q_pop_claimed(&c->q);
	if (n)
		weft__sp_wake(n->p, 0);
	weft__unlock(&c->lock);
}

WEFT_API void weft_cond_broadcast(weft_cond *pub)
{
	struct cond *c = (struct cond *)pub;
	weft__lock_acquire(&c->lock);
	weft__q_wake_all(&c->q, 0);
	weft__unlock(&c->lock);
}
