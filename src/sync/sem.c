/*
 * src/sync/sem.c: semaphore, wait group, once, barrier.
 *
 * All four are a spin (waitq.h), a counter and a FIFO queue of parkers.
 *
 * Semaphore: post hands its permit straight to the first waiter (the count
 *   stays as it is); only with nobody waiting does the count grow. trywait
 *   and wait take from the count only while nobody waits, so FIFO holds.
 * Wait group: a signed counter; reaching 0 wakes every waiter.
 * Once: state 0 (new) -> 1 (running; later callers queue) -> 2 (done; the
 *   runner wakes everybody). `state` is atomic only for the fast path: an
 *   acquire load of 2 pairs with the runner's release store made after fn
 *   returned, so what fn wrote is visible.
 * Barrier: `arrived` counts this round's parties; the last one wakes the
 *   queued ones and starts the next round (`round`++). A waiter that leaves
 *   by timeout or cancel finds its node still queued (the round has not
 *   completed) and un-counts itself under the spin.
 */
#include <errno.h>
#include <string.h>
#include "sync/waitq.h"

/* ------------------------------------------------------------ semaphore --- */

struct sem {
	weft__lock lock;
	uint64_t value;
	struct weft__queue q;
};
WEFT__FITS(weft_sem, struct sem);

WEFT_API void weft_sem_init(weft_sem *pub, uint64_t value)
{
	memset(pub, 0, sizeof(*pub));
	((struct sem *)pub)->value = value;
}

static int sem_wait(weft_sem *pub, uint64_t deadline, bool block)
{
	struct sem *s = (struct sem *)pub;
	weft__lock_acquire(&s->lock);
	if (s->value && weft__q_empty(&s->q)) {
		s->value--;
		weft__unlock(&s->lock);
		return 0;
	}
	if (!block) {
		weft__unlock(&s->lock);
		return -EAGAIN;
	}
	weft__wait_describe("semaphore", pub);
	return weft__q_wait(&s->lock, &s->q, deadline, NULL, 0);
}

WEFT_API int weft_sem_wait(weft_sem *s) { return sem_wait(s, 0, true); }
WEFT_API int weft_sem_trywait(weft_sem *s) { return sem_wait(s, 0, false); }

WEFT_API int weft_sem_wait_timeout(weft_sem *s, uint64_t timeout_ns)
{
	return sem_wait(s, weft__deadline_after(timeout_ns), true);
}

WEFT_API int weft_sem_post(weft_sem *pub)
{
	struct sem *s = (struct sem *)pub;
	int r = 0;
	weft__lock_acquire(&s->lock);
	struct weft__node *n = weft__q_pop_claimed(&s->q);
	if (n)
		weft__sp_wake(n->p, 0);
	else if (s->value == UINT64_MAX)
		r = -EOVERFLOW;
	else
		s->value++;
	weft__unlock(&s->lock);
	return r;
}

WEFT_API uint64_t weft_sem_value(weft_sem *pub)
{
	struct sem *s = (struct sem *)pub;
	weft__lock_acquire(&s->lock);
	uint64_t v = s->value;
	weft__unlock(&s->lock);
	return v;
}

/* ----------------------------------------------------------- wait group --- */

struct wg {
	weft__lock lock;
	int64_t count;
	struct weft__queue q;
};
WEFT__FITS(weft_wg, struct wg);

WEFT_API void weft_wg_init(weft_wg *wg)
{
	memset(wg, 0, sizeof(*wg));
}

WEFT_API int weft_wg_add(weft_wg *pub, int64_t delta)
{
	struct wg *g = (struct wg *)pub;
	int r = 0;
	weft__lock_acquire(&g->lock);
	/* delta < -count, written without negating delta (INT64_MIN has no
	 * negation; count is never negative) */
	if ((delta < 0 && delta < -g->count) ||
	    (delta > 0 && g->count > INT64_MAX - delta)) {
		r = -EINVAL;
	} else {
		g->count += delta;
		if (g->count == 0)
			weft__q_wake_all(&g->q, 0);
	}
	weft__unlock(&g->lock);
	return r;
}

WEFT_API int weft_wg_done(weft_wg *wg)
{
	return weft_wg_add(wg, -1);
}

static int wg_wait(weft_wg *pub, uint64_t deadline)
{
	struct wg *g = (struct wg *)pub;
	weft__lock_acquire(&g->lock);
	if (g->count == 0) {
		weft__unlock(&g->lock);
		return 0;
	}
	weft__wait_describe("wait group", pub);
	return weft__q_wait(&g->lock, &g->q, deadline, NULL, 0);
}

WEFT_API int weft_wg_wait(weft_wg *wg) { return wg_wait(wg, 0); }

WEFT_API int weft_wg_wait_timeout(weft_wg *wg, uint64_t timeout_ns)
{
	return wg_wait(wg, weft__deadline_after(timeout_ns));
}

/* ----------------------------------------------------------------- once --- */

struct once {
	_Atomic uint32_t state;      /* 0 new, 1 running, 2 done */
	weft__lock lock;
	struct weft__queue q;
};
WEFT__FITS(weft_once_flag, struct once);

static int once_do(weft_once_flag *pub, void (*fn)(void *), void *arg, uint64_t deadline)
{
	struct once *o = (struct once *)pub;
	/* acquire: pairs with the release store of 2 below; fn's effects are
	 * visible to every caller that sees it done. */
	if (atomic_load_explicit(&o->state, memory_order_acquire) == 2)
		return 0;
	weft__lock_acquire(&o->lock);
	/* relaxed: under the spin, which orders it with the other writers. */
	uint32_t s = atomic_load_explicit(&o->state, memory_order_relaxed);
	if (s == 2) {
		weft__unlock(&o->lock);
		return 0;
	}
	if (s == 1) {
		weft__wait_describe("once (another caller runs it)", pub);
		return weft__q_wait(&o->lock, &o->q, deadline, NULL, 0);
	}
	atomic_store_explicit(&o->state, 1, memory_order_relaxed);
	weft__unlock(&o->lock);
	fn(arg);
	weft__lock_acquire(&o->lock);
	/* release: pairs with the fast-path acquire load above. */
	atomic_store_explicit(&o->state, 2, memory_order_release);
	weft__q_wake_all(&o->q, 0);
	weft__unlock(&o->lock);
	return 0;
}

WEFT_API int weft_once(weft_once_flag *o, void (*fn)(void *), void *arg)
{
	return once_do(o, fn, arg, 0);
}

WEFT_API int weft_once_timeout(weft_once_flag *o, void (*fn)(void *), void *arg, uint64_t timeout_ns)
{
	return once_do(o, fn, arg, weft__deadline_after(timeout_ns));
}

/* -------------------------------------------------------------- barrier --- */

struct barrier {
	weft__lock lock;
	unsigned count;              /* parties per round */
	unsigned arrived;            /* this round's, not counting those left */
	struct weft__queue q;
};
WEFT__FITS(weft_barrier, struct barrier);

WEFT_API int weft_barrier_init(weft_barrier *pub, unsigned count)
{
	if (count == 0)
		return -EINVAL;
	memset(pub, 0, sizeof(*pub));
	((struct barrier *)pub)->count = count;
	return 0;
}

static int barrier_wait(weft_barrier *pub, uint64_t deadline)
{
	struct barrier *b = (struct barrier *)pub;
	weft__lock_acquire(&b->lock);
	if (b->arrived + 1 == b->count) {
		b->arrived = 0;
		weft__q_wake_all(&b->q, 0);
		weft__unlock(&b->lock);
		return WEFT_BARRIER_SERIAL;
	}
	struct weft__parker p;
	weft__wait_describe("barrier", pub);
	int err = weft__sp_begin(&p, deadline);
	if (err) {
		weft__unlock(&b->lock);
		return err;
	}
	b->arrived++;
	struct weft__node n = { .p = &p };
	weft__q_push(&b->q, &n);
	int r = weft__sp_park(&p, weft__unlock_cb, &b->lock);
	if (r) {
		weft__lock_acquire(&b->lock);
		if (n.queued) {              /* the round has not completed */
			weft__q_remove(&b->q, &n);
			b->arrived--;
		}
		weft__unlock(&b->lock);
	}
	return r;
}

WEFT_API int weft_barrier_wait(weft_barrier *b) { return barrier_wait(b, 0); }

WEFT_API int weft_barrier_wait_timeout(weft_barrier *b, uint64_t timeout_ns)
{
	return barrier_wait(b, weft__deadline_after(timeout_ns));
}
