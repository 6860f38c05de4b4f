/* Timer heap; see timer.h. Plain binary heap over an array of node pointers,
 * each node knowing its index so that removal is O(log n). */
#include "sched/timer.h"
#include "debug_hooks.h"

#include <errno.h>
#include <stdlib.h>

int weft__timer_heap_init(struct weft__timer_heap *h)
{
	h->lock = (weft__lock)WEFT__LOCK_INIT;
	h->n = 0;
	h->cap = 64;
	h->v = weft__fault("timer.heap_init") ? NULL : malloc(h->cap * sizeof *h->v);
	atomic_init(&h->next, UINT64_MAX);
	return h->v ? 0 : -ENOMEM;
}

void weft__timer_heap_fini(struct weft__timer_heap *h)
{
	for (uint32_t i = 0; i < h->n; i++)
		atomic_store_explicit(&h->v[i]->heap, NULL, memory_order_relaxed);
	h->n = 0;
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

static inline void place(struct weft__timer_heap *h, uint32_t i, struct weft__timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void sift_up(struct weft__timer_heap *h, uint32_t i)
{
	struct weft__timer *t = h->v[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (h->v[p]->deadline <= t->deadline)
			break;
		place(h, i, h->v[p]);
		i = p;
	}
	place(h, i, t);
}

static void sift_down(struct weft__timer_heap *h, uint32_t i)
{
	struct weft__timer *t = h->v[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline)
			c++;
		if (t->deadline <= h->v[c]->deadline)
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, t);
}

static void update_next(struct weft__timer_heap *h)
{
	atomic_store_explicit(&h->next, h->n ? h->v[0]->deadline : UINT64_MAX,
	                      memory_order_relaxed);
}

/* Under h->lock. The caller clears t->heap. */
static void heap_remove_at(struct weft__timer_heap *h, uint32_t i)
{
	h->n--;
	if (i != h->n) {
		struct weft__timer *m = h->v[h->n];   /* last one fills the hole */
		place(h, i, m);
		sift_down(h, i);
		sift_up(h, m->idx);                  /* no-op if it moved down */
	}
	update_next(h);
}

int weft__timer_add(struct weft__timer_heap *h, struct weft__timer *t)
{
	weft__lock_acquire(&h->lock);
	if (h->n == h->cap) {
		/* Growth only: the array keeps its high-water size, so steady
		 * state allocates nothing. */
		struct weft__timer **v = weft__fault("timer.grow") ? NULL
		                         : realloc(h->v, 2 * h->cap * sizeof *v);
		if (!v) {
			weft__unlock(&h->lock);
			return -ENOMEM;
		}
		h->v = v;
		h->cap *= 2;
	}
	/* relaxed: read and written only under the lock of the heap named. */
	atomic_store_explicit(&t->heap, h, memory_order_relaxed);
	place(h, h->n++, t);
	sift_up(h, t->idx);
	update_next(h);
	weft__unlock(&h->lock);
	return 0;
}

bool weft__timer_cancel_slow(struct weft__timer *t)
{
	for (;;) {
		/* acquire: as in weft__timer_cancel (timer.h); we come back here
		 * when the timer moved or fired while we took the lock. */
		struct weft__timer_heap *h = atomic_load_explicit(&t->heap, memory_order_acquire);
		if (!h)
			return false;
		weft__lock_acquire(&h->lock);
		if (atomic_load_explicit(&t->heap, memory_order_relaxed) == h) {
			heap_remove_at(h, t->idx);
			atomic_store_explicit(&t->heap, NULL, memory_order_relaxed);
			weft__unlock(&h->lock);
			return true;
		}
		weft__unlock(&h->lock);
	}
}

static unsigned run_locked(struct weft__timer_heap *h, uint64_t now, unsigned max);

unsigned weft__timer_run(struct weft__timer_heap *h, uint64_t now, unsigned max)
{
	if (weft__timer_next(h) > now)
		return 0;
	weft__lock_acquire(&h->lock);
	return run_locked(h, now, max);
}

unsigned weft__timer_run_try(struct weft__timer_heap *h, uint64_t now, unsigned max)
{
	if (weft__timer_next(h) > now || !weft__lock_try(&h->lock))
		return 0;
	return run_locked(h, now, max);
}

static unsigned run_locked(struct weft__timer_heap *h, uint64_t now, unsigned max)
{
	unsigned fired = 0;
	while (fired < max && h->n && h->v[0]->deadline <= now) {
		struct weft__timer *t = h->v[0];
		heap_remove_at(h, 0);
		/* fire() runs under the lock with t->heap still set, so a
		 * concurrent weft__timer_cancel waits for it; then release: the
		 * owner that sees NULL without the lock sees fire() complete. */
		t->fire(t);
		atomic_store_explicit(&t->heap, NULL, memory_order_release);
		fired++;
	}
	weft__unlock(&h->lock);
	return fired;
}
