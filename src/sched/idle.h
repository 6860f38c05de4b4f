/*
 * src/sched/idle.h: workers with nothing to do (idle.c): the searching and
 * parking protocol, how work that appears wakes one of them, and remote
 * calls, which wake a parked worker the same way.
 */
#ifndef WEFT_SCHED_IDLE_H
#define WEFT_SCHED_IDLE_H

#include "sched/rt.h"

/* After making work available where another worker could take it: wake an
 * idle worker if none is searching (the lost-wake-up argument is in
 * idle.c). ANY. */
void weft__notify_work(struct weft_rt *rt);

/*
 * After a worker pushed onto its own queues (or overflowed them into the
 * injection queue it then drains itself): work it will run anyway if nobody
 * helps, so a missed wake-up costs parallelism, never progress. That lets
 * the common case, no idle worker, skip notify_work's fence: a relaxed read
 * of nidle. The race it leaves: a worker going idle at this moment may miss
 * our push in its re-check while we read a stale 0; it then sleeps until the
 * next notify (the next spawn or wake, or its timer; the monitor also wakes
 * a worker for stranded work). Waking on pushes rather than only on empty ->
 * non-empty, as Go's wakep does in newproc and ready: the latter left a
 * parked worker asleep for the whole of a fork-join recursion, whose deque
 * is never empty once it is under way. OWNER (of the queues pushed to).
 */
static inline void weft__notify_local(struct weft_rt *rt)
{
	if (rt->nworkers > 1 && atomic_load_explicit(&rt->nidle, memory_order_relaxed) != 0)
		weft__notify_work(rt);
}

/* OWNER: nothing to run, nothing to steal: go idle and park in self's ring
 * until work may have arrived (a wake, a completion, the next timer). */
void weft__worker_park(struct weft__worker *self);

/* OWNER: run the calls other threads queued for self (weft__sched_call),
 * oldest first. */
void weft__run_remote_calls(struct weft__worker *self);

#endif /* WEFT_SCHED_IDLE_H */
