/*
 * A worker's run queue: a fixed-capacity ring used as a work-stealing queue.
 *
 * Shape (Go's runq, Tokio's local queue): the owner pushes at the tail; the
 * owner and the thieves all consume at the head with a CAS, the owner one item
 * at a time, a thief half of what it sees in one step. Because every consumer
 * goes through the same CAS on `head`, a steal-half can never overlap an
 * owner's pop: the Chase-Lev owner-pops-at-the-tail scheme of Lê et al. 2013
 * (whose memory orders spawnq.h uses) does not compose with stealing
 * half at once, since the owner's tail pop takes no lock-step with a thief's
 * range. Locality for the owner comes from the LIFO slot in front of this
 * queue, not from popping at the tail.
 *
 * Invariants:
 *   - tail - head <= CAP (unsigned, wrapping arithmetic on 32-bit counters);
 *   - only the owner writes `tail` and the slots in [tail, head + CAP);
 *   - a consumer owns slots [h, h + n) once its CAS head: h -> h + n succeeded.
 */
#ifndef WEFT_RUNQ_H
#define WEFT_RUNQ_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#if defined(WEFT_SMALL_QUEUES)
#  define WEFT__RUNQ_CAP 4u
#else
#  define WEFT__RUNQ_CAP 256u
#endif
#define WEFT__RUNQ_MASK (WEFT__RUNQ_CAP - 1)

struct weft_task;

struct weft__runq {
	/* head: CASed by the owner and by thieves */
	_Alignas(64) _Atomic uint32_t head;
	/* tail: written by the owner only, read by thieves */
	_Alignas(64) _Atomic uint32_t tail;
	/* Slots are atomics because a thief reads them before its CAS decides
	 * whether the read counted; relaxed accesses cost nothing extra. */
	_Alignas(64) struct weft_task *_Atomic slot[WEFT__RUNQ_CAP];
};

void weft__runq_init(struct weft__runq *q);

/* Owner only. Push t at the tail. When the queue is full, moves half of it
 * plus t into batch[] (room for WEFT__RUNQ_CAP/2 + 1) and returns how many
 * it put there (the caller sends them to the injection queue); 0 otherwise. */
unsigned weft__runq_push(struct weft__runq *q, struct weft_task *t, struct weft_task **batch);

/* Owner only. Take the item at the head, or NULL. */
struct weft_task *weft__runq_pop(struct weft__runq *q);

/* Owner only, and only where no other thread ever consumes from q: the
 * queue of a runtime's only worker, from which nobody steals. Takes the head
 * with a plain store instead of the CAS that races thieves. */
struct weft_task *weft__runq_pop_solo(struct weft__runq *q);

/* Owner only, solo queues only (as weft__runq_pop_solo): the item i places
 * behind the head, or NULL when the queue holds no more than i items. */
static inline struct weft_task *weft__runq_peek_solo(struct weft__runq *q, uint32_t i)
{
	/* relaxed: head and tail have no writer but us, the slots neither. */
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (tl - h <= i)
		return NULL;
	return atomic_load_explicit(&q->slot[(h + i) & WEFT__RUNQ_MASK], memory_order_relaxed);
}

/* Owner only. Push t at the tail if there is room; false (and nothing done)
 * when the queue is full. */
bool weft__runq_try_push(struct weft__runq *q, struct weft_task *t);

/* The thief: the owner of dst, never victim's owner. Moves half of
 * victim's items into dst (which must be empty) and returns one of them to
 * run, or NULL if victim was empty. */
struct weft_task *weft__runq_steal(struct weft__runq *victim, struct weft__runq *dst);

/* Owner only. Append n items (n <= free room) at the tail. */
void weft__runq_push_batch(struct weft__runq *q, struct weft_task **items, unsigned n);

/* Any thread: a snapshot of the length (exact for the owner when no thief runs). */
static inline uint32_t weft__runq_len(struct weft__runq *q)
{
	/* acquire on both: pairs with the release stores/CASes that moved them,
	 * so a non-zero answer means the items are really there to steal. */
	uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
	return t - h;
}

#endif /* WEFT_RUNQ_H */
