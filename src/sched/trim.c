/*
 * src/sched/trim.c: memory given back after a spike. The policy the monitor
 * runs (weft__trim_tick) and weft_rt_trim; the mechanisms are the stack
 * pool's (ctx/stack.c, weft__stack_pool_trim) and the record pool's
 * (task.c, weft__task_trim).
 *
 * A runtime keeps what its recent working set needs and gives the rest
 * back. "Needs": a coroutine holds one stack and one record, so with L alive
 * now and a peak of P over the last one to two seconds (two windows of
 * WEFT__TRIM_WINDOW_NS: the peak of the previous window and of the current
 * one), P - L free stacks and records cover a return to that peak, plus a
 * slack of WEFT__TRIM_SLACK or P/16, whichever is more, for the churn of
 * spawns and returns between two samples. Free stacks and records beyond
 * that are trimmed: their pages go back to the kernel (MADV_DONTNEED), the
 * stacks and record slabs stay mapped and are handed out again, faulted in
 * anew, when the warm ones are gone. Stacks in the workers' caches (16 each)
 * and records in theirs (128 each) are never trimmed.
 *
 * So after a spike ends, within two windows the peak has aged out and the
 * surplus goes, at most WEFT__TRIM_STACKS stacks and WEFT__TRIM_SLABS record
 * slabs per monitor round, the monitor coming back after 1 ms while a
 * surplus is left (instead of its 5 or 50 ms), so that the work is spread
 * into slices that never hold it for long. Cost: the monitor's CPU, a
 * process_madvise(2) per 64 stacks (a TLB flush each) where the kernel has
 * it, else an madvise(2) per stack, and an madvise(2) per slab of 256
 * records; then a page fault for every page a later coroutine touches
 * again. Nothing on the workers' paths but the page faults. The figures are
 * in docs/internals.md (Measurements).
 *
 * WEFT_RT_NO_TRIM turns the policy off (the pools then keep their peak
 * until weft_rt_destroy, as before); weft_rt_trim gives back every free
 * stack and record slab at once, from any thread.
 */
#include "sched/rt.h"
#include "sched/clock.h"

#include <errno.h>
#include <stdint.h>

#define WEFT__TRIM_WINDOW_NS 1000000000ull  /* the peak is over 1-2 of these */
#define WEFT__TRIM_SLACK     64u            /* free stacks/records kept, at least */
#define WEFT__TRIM_STACKS    8192u          /* stacks per monitor round, at most */
#define WEFT__TRIM_SLABS     64u            /* record slabs per round, at most */

/* How many free stacks and records the runtime keeps, from the live count
 * now and its recent peak. Pure: the policy's arithmetic, tested alone
 * (tests/test_trim.c). ANY. */
uint64_t weft__trim_keep(uint64_t live, uint64_t peak)
{
	if (peak < live)
		peak = live;
	uint64_t slack = peak / 16 > WEFT__TRIM_SLACK ? peak / 16 : WEFT__TRIM_SLACK;
	return peak - live + slack;
}

/* Fold a sample of the live count taken at `now` into the two windows.
 * MONITOR (or a test, on its own state). */
void weft__trim_sample(struct weft__trim *tr, uint64_t live, uint64_t now)
{
	if (!tr->window_start || now - tr->window_start >= WEFT__TRIM_WINDOW_NS) {
		/* a window passed: the current one becomes the previous one;
		 * after two without a sample (a long monitor sleep), nothing of
		 * the old peak is left */
		bool skipped = tr->window_start && now - tr->window_start >= 2 * WEFT__TRIM_WINDOW_NS;
		tr->peak_prev = skipped ? 0 : tr->peak_cur;
		tr->peak_cur = 0;
		tr->window_start = now;
	}
	if (live > tr->peak_cur)
		tr->peak_cur = live;
}

/* The peak the policy uses: over the previous window and the current one. */
uint64_t weft__trim_peak(const struct weft__trim *tr)
{
	return tr->peak_prev > tr->peak_cur ? tr->peak_prev : tr->peak_cur;
}

/* One round of the policy: sample the live count, trim what is beyond the
 * keep, a slice at a time. Returns true while a surplus is left (come back
 * soon). MONITOR, without monitor_lock (it makes system calls). */
bool weft__trim_tick(struct weft_rt *rt)
{
	if (rt->flags & WEFT_RT_NO_TRIM)
		return false;
	struct weft__trim *tr = &rt->trim;
	bool exact;
	uint64_t live = weft__live_tasks(rt, &exact);   /* a sample: enough here */
	weft__trim_sample(tr, live, weft__now());
	uint64_t keep = weft__trim_keep(live, weft__trim_peak(tr));
	size_t stacks = weft__stack_pool_trim(rt->stack_pool, keep, WEFT__TRIM_STACKS);
	unsigned slabs = weft__task_trim(rt, keep, WEFT__TRIM_SLABS);
	/* a full slice: probably more behind it */
	return stacks == WEFT__TRIM_STACKS || slabs == WEFT__TRIM_SLABS;
}

/* ANY. */
WEFT_API int weft_rt_trim(weft_rt *rt)
{
	if (!rt)
		return -EINVAL;
	weft__stack_pool_trim(rt->stack_pool, 0, SIZE_MAX);
	weft__task_trim(rt, 0, UINT32_MAX);
	return 0;
}
