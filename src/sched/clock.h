/*
 * src/sched/clock.h: the runtime's two clocks, inline.
 *
 * weft__now(): CLOCK_MONOTONIC in ns, what deadlines and timers use (and
 *   weft_now(), the public name of the same clock).
 * weft__coarse_now(): CLOCK_MONOTONIC_COARSE in ns, a few ns to read and
 *   one tick (about 4 ms) coarse: for coroutine ages in weft_dump, never
 *   for a deadline.
 * Both are vDSO reads: no system call, any thread, signal-safe.
 */
#ifndef WEFT_SCHED_CLOCK_H
#define WEFT_SCHED_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t weft__clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t weft__now(void) { return weft__clock_ns(CLOCK_MONOTONIC); }
static inline uint64_t weft__coarse_now(void) { return weft__clock_ns(CLOCK_MONOTONIC_COARSE); }

#endif /* WEFT_SCHED_CLOCK_H */
