/*
 * weft__lock: a test-and-test-and-set spinlock for short critical sections
 * (timer heaps, join records). Written on C11 atomics rather than
 * ck_spinlock because ThreadSanitizer cannot see through ck_pr's inline
 * assembly: with ck, every access the lock protects is reported as a race.
 * The code generated is the same xchg/ldaxr loop.
 *
 * Workers can be preempted while holding it (this runtime may run 64 workers
 * on 2 CPUs), so after a bounded spin with ck_backoff the waiter yields the CPU
 * to let the holder finish, instead of burning its whole time slice.
 */
#ifndef WEFT_LOCK_H
#define WEFT_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>
#include <ck_backoff.h>
#include <ck_pr.h>

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
	ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
	for (unsigned spins = 0;; spins++) {
		/* relaxed: only a hint that the lock may be free; the exchange in
		 * weft__lock_try does the synchronisation. */
		while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
			if (spins < 16)
				ck_backoff_eb(&backoff);
			else
				sched_yield();      /* holder likely preempted */
			spins++;
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

#endif /* WEFT_LOCK_H */
