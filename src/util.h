/*
 * src/util.h: the two helpers every layer of the library needs, written once.
 *
 * weft__container_of(p, type, member): the record that embeds *p as member
 *   (a timer node in its task, a ring inside its worker, an op's parts in the
 *   op). Linux's idiom, without the statement expression.
 *
 * weft__futex_wait / weft__futex_wake: a private futex on a 32-bit atomic
 *   word, for the few places where a plain thread (not a coroutine) sleeps:
 *   weft_rt_run's caller, a thread parked on a channel or a lock. The wait
 *   takes an absolute CLOCK_MONOTONIC deadline (the clock of weft_now) and,
 *   like every
 *   futex wait, may return early (signal, spurious wake, the word changed):
 *   callers loop on their own condition.
 */
#ifndef WEFT_UTIL_H
#define WEFT_UTIL_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define weft__container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Sleep while *word == val, until deadline (absolute CLOCK_MONOTONIC ns;
 * 0 or UINT64_MAX = none). Any plain thread. */
static inline void weft__futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline)
{
	struct timespec ts, *tsp = NULL;
	if (deadline && deadline != UINT64_MAX) {
		ts.tv_sec = (time_t)(deadline / 1000000000u);
		ts.tv_nsec = (long)(deadline % 1000000000u);
		tsp = &ts;
	}
	/* BITSET with all bits: the only futex wait that takes an absolute
	 * CLOCK_MONOTONIC timeout (the plain one is relative). */
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE, val, tsp, NULL,
	        FUTEX_BITSET_MATCH_ANY);
}

/* Wake up to n threads sleeping on word (INT_MAX: all). Any thread. */
static inline void weft__futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#endif /* WEFT_UTIL_H */
