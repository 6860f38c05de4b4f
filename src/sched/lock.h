/*
 * weft__lock: the runtime's test-and-test-and-set spinlock for short critical
 * sections: timer heaps and join records in src/sched, and in src/sync (as
 * "the spin" of sync/waitq.h) every channel, mutex, semaphore and group. Written on C11
 * atomics rather than ck_spinlock because ThreadSanitizer cannot see through
 * ck_pr's inline assembly: with ck, every access the lock protects is
 * reported as a race. The code generated is the same xchg/ldaxr loop.
 *
 * A waiter backs off exponentially: it pauses 1, 2, 4 ... up to LOCK_CAP
 * times between looks at the lock, and after LOCK_BUDGET pauses in all it
 * yields the CPU on each look instead: workers can be preempted while
 * holding it (a runtime may run 64 workers on 2 CPUs), and then only the
 * holder running again frees it. Backing off is for the contended case: two
 * workers hammering one channel (the chan benchmark: 4 producers, 4
 * consumers, 2 workers). With a fixed single pause between looks the lock's
 * line crossed CPUs on almost every operation and the waiter went on to
 * sched_yield; backing off lets the holder run a burst of operations with
 * the line in its cache. The cap and budget are the measured best, and a
 * cap well above or below it costs (docs/internals.md, Measurements).
 * Rejected: ck_backoff_eb, whose schedule spun for milliseconds against a
 * preempted holder before the first yield.
 */
#ifndef WEFT_LOCK_H
#define WEFT_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>
#include <ck_pr.h>

#define WEFT__LOCK_CAP 128
#define WEFT__LOCK_BUDGET 2048

typedef struct { _Atomic unsigned char held; } weft__lock;

#define WEFT__LOCK_INIT { 0 }

static inline bool weft__lock_try(weft__lock *l)
{
	/* acquire: pairs with the release in weft__unlock, so what the previous
	 * holder wrote inside the section is visible to us. */
	return !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

static inline void weft__lock_acquire(weft__lock *l)
{
	if (weft__lock_try(l))
		return;
	unsigned wait = 1, spent = 0;
	for (;;) {
		/* relaxed: only a hint that the lock may be free; the exchange in
		 * weft__lock_try does the synchronisation. */
		while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
			if (spent < WEFT__LOCK_BUDGET) {
				for (unsigned i = 0; i < wait; i++)
					ck_pr_stall();      /* pause: no memory access, TSan-neutral */
				spent += wait;
				if (wait < WEFT__LOCK_CAP)
					wait <<= 1;
			} else {
				sched_yield();      /* the holder is likely preempted */
			}
		}
		if (weft__lock_try(l))
			return;
	}
}

static inline void weft__unlock(weft__lock *l)
{
	/* release: publishes the critical section to the next acquirer. */
	atomic_store_explicit(&l->held, 0, memory_order_release);
}

/* An unlock callback for weft__wait_park and weft__sp_park: arg is the
 * weft__lock * to release (sched/api.c). */
void weft__unlock_cb(void *arg);

#endif /* WEFT_LOCK_H */
