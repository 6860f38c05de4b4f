/*
 * A worker's spawn queue: the continuations of coroutines that spawned a
 * child and let it run first (child-first spawn, run.c). A Chase-Lev
 * work-stealing deque, with the memory orders of Lê et al. 2013 ("Correct
 * and Efficient Work-Stealing for Weak Memory Models"), fixed capacity.
 *
 * The owner pushes and takes at the bottom (LIFO): when a child finishes its
 * worker resumes the most recent spawner, so a fork-join tree runs depth-first
 * and few stacks are live at once. Thieves take one item at the top: the
 * oldest continuation, nearest the root of the tree, which carries the most
 * work (Cilk's work-first principle). The run queue (runq.h) is the other,
 * FIFO queue of a worker, for woken and yielded coroutines; it is stolen from
 * half at a time. The two are kept apart because a Chase-Lev owner pop at the
 * bottom cannot be combined with a thief taking half (runq.h explains why),
 * while continuations want LIFO for the owner.
 *
 * Invariants: top only grows (CAS); only the owner writes bottom; items live
 * in [top, bottom); bottom - top <= CAP. Indices are 64-bit and never wrap.
 */
#ifndef WEFT_SPAWNQ_H
#define WEFT_SPAWNQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(WEFT_SMALL_QUEUES)
#  define WEFT__SPAWNQ_CAP 4
#else
#  define WEFT__SPAWNQ_CAP 256
#endif

struct weft_task;

struct weft__spawnq {
	_Alignas(64) _Atomic int64_t top;      /* CASed by thieves and by the owner */
	_Alignas(64) _Atomic int64_t bottom;   /* written by the owner only         */
	_Alignas(64) struct weft_task *_Atomic slot[WEFT__SPAWNQ_CAP];
};

void weft__spawnq_init(struct weft__spawnq *q);

/* Owner only. Push t at the bottom. Returns how many items the deque held
 * before (0: it was empty), or -1 when full (the caller queues t elsewhere).
 * A count, not an out-parameter: the caller runs on a coroutine's stack, and
 * an addressable local there costs an ASan fake stack per coroutine. */
int weft__spawnq_push(struct weft__spawnq *q, struct weft_task *t);

/* Owner only. Take the most recent item, or NULL. */
struct weft_task *weft__spawnq_take(struct weft__spawnq *q);

/* Any thread but the owner. Take the oldest item, or NULL when empty or when
 * another consumer won the race (the caller just moves on). */
struct weft_task *weft__spawnq_steal(struct weft__spawnq *q);

static inline bool weft__spawnq_nonempty(struct weft__spawnq *q)
{
	/* acquire on both: a true answer means an item is published. */
	int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
	return b > t;
}

#endif /* WEFT_SPAWNQ_H */
