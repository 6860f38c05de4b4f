/*
 * src/sched/wait.c: the interrupting half of the wait contract (sched/wait.h):
 * cancellation, region deadlines, shields, and the description of a wait
 * for weft_dump. The hot half (opening, parking, claiming and waking a wait)
 * is in run.c beside the switch it ends in; the two halves meet in the
 * Dekker pair below and in weft__wait_begin's reading of the cancel flag,
 * the region deadline and the shield.
 *
 * Cancellation: weft_cancel sets task->cancel, then claims the open wait if
 * it is interruptible. weft__wait_begin opens the wait, then checks the
 * flag. Either the canceller sees the open wait or the waiter sees the
 * flag (the argument follows).
 *
 * A region deadline is the coroutine's t->deadline: weft__wait_begin folds
 * it into every interruptible wait's own deadline (the nearer wins), and an
 * I/O op folds it into its kernel timeout (weft__wait_deadline). A shield
 * (weft__shield_push) makes the waits opened under it uninterruptible: no
 * cancel and no region deadline reach them (wait.h lists the waits that
 * need it).
 */
#include "sched/rt.h"
#include "debug_hooks.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Cancellation's Dekker pair: weft__wait_begin stores `wait` (open) then
 * loads `cancel`; weft_cancel stores `cancel` then loads `wait`. At least
 * one of them must see the other's store, or a cancel lands between a
 * wait's opening and its parking and is lost. seq_cst on both sides does
 * it with a locked instruction on the waiter's side (x86: xchg), and every
 * blocking call opens a wait: a measurable part of every channel hand-off
 * (docs/internals.md). Cancels are rare, so the barrier goes to their side:
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread
 * of the process execute a full barrier between the canceller's store and
 * its load (a thread not running passes one when it is switched out). The
 * waiter keeps only the compiler's order (atomic_signal_fence). Then, with
 * P the point where the waiter's thread executes that barrier: if P comes
 * after the waiter's store of `wait`, the canceller's load (after the
 * syscall) sees the open wait; if P comes before it, the waiter's load of
 * `cancel` comes after P, which comes after the canceller's store, and sees
 * it. Either way one side sees the other (the asymmetric fences of
 * userspace RCU and Folly). A cancel costs the syscall and an IPI to each
 * CPU running one of our threads: microseconds, once per weft_cancel.
 *
 * Registered once per process, at the first weft_rt_create, before any
 * coroutine exists; where the kernel lacks it (before 4.14) or seccomp
 * refuses it, both sides stay seq_cst. weft__membarrier_mode never changes after
 * that, and coroutines and cancels only exist after it is set (rt_create
 * happens-before the workers and whatever spawns).
 */
bool weft__membarrier_mode;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void membarrier_register_once(void)
{
	weft__membarrier_mode =
		syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* THREAD (weft_rt_create): once per process, before any coroutine. */
void weft__membarrier_register(void)
{
	pthread_once(&membarrier_once, membarrier_register_once);
}

/* ------------------------------------------------------- cancellation --- */

/*
 * weft_cancel in three steps, so that a sweep over many tasks (destroy, a
 * task group) pays one barrier instead of one per task: mark each,
 * weft__cancel_fence once, then deliver each. The Dekker pair with
 * weft__wait_begin (store wait; load cancel) holds for every task marked
 * before the fence and delivered after it: see weft__membarrier_mode. A
 * membarrier per task made weft_rt_destroy of many blocked coroutines three
 * times slower (stress/ioshutdown; docs/internals.md). ANY, all three.
 */
void weft__cancel_mark(struct weft_task *t)
{
	if (weft__membarrier_mode)
		atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
	else
		atomic_store_explicit(&t->cancel, 1, memory_order_seq_cst);
}

void weft__cancel_fence(void)
{
	if (weft__membarrier_mode && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		weft__die("membarrier(PRIVATE_EXPEDITED) failed after registering: %s", strerror(errno));
}

/* t was marked before the last weft__cancel_fence: end its open wait, if any. */
void weft__cancel_deliver(struct weft_task *t)
{
	uint64_t wv;
	if (weft__membarrier_mode)   /* acquire: pairs with the release store that opened the wait */
		wv = atomic_load_explicit(&t->wait, memory_order_acquire);
	else
		wv = atomic_load_explicit(&t->wait, memory_order_seq_cst);
	if (!(wv & 1))
		return;                         /* not waiting: it sees the flag */
	/* wait_flags was written before the store that opened this wait,
	 * which we read: it is the open wait's. */
	if (!(atomic_load_explicit(&t->wait_flags, memory_order_relaxed) & WEFT__WAIT_INTERRUPTIBLE))
		return;
	struct weft__waiter wt = { t, wv >> 1 };
	weft__wait_claim_wake(&wt, -ECANCELED);
}

WEFT_API int weft_cancel(weft_task *t)
{
	if (!t)
		return -EINVAL;
	weft__cancel_mark(t);
	weft__cancel_fence();
	weft__cancel_deliver(t);
	return 0;
}

WEFT_API bool weft_cancelled(void)
{
	struct weft_task *t = weft__task_current();
	return t && atomic_load_explicit(&t->cancel, memory_order_relaxed);
}

/* ------------------------------------------------ deadlines, shields --- */

WEFT_API uint64_t weft_deadline_set(uint64_t deadline)
{
	struct weft_task *t = weft__task_current();
	if (!t)
		return 0;
	uint64_t old = t->deadline;
	t->deadline = deadline;
	return old;
}

WEFT_API uint64_t weft_deadline(void)
{
	struct weft_task *t = weft__task_current();
	return t ? t->deadline : 0;
}

/* CORO (sched/wait.h). */
uint64_t weft__wait_deadline(uint64_t own)
{
	struct weft_task *t = weft__task_current();
	if (t && t->deadline && !t->shield && (!own || t->deadline < own))
		return t->deadline;
	return own;
}

/* CORO (sched/wait.h). */
void weft__wait_describe(const char *what, const void *obj)
{
	struct weft_task *t = weft__task_current();
	if (t) {
		/* relaxed: read only by weft_dump, as a sample */
		atomic_store_explicit(&t->wait_what, what, memory_order_relaxed);
		atomic_store_explicit(&t->wait_obj, obj, memory_order_relaxed);
	}
}

/* CORO (sched/wait.h): the shield nests; a plain thread has none. */
unsigned weft__shield_push(void)
{
	struct weft__worker *w = weft__worker_current();
	if (!w || !w->current)
		return 0;
	return w->current->shield++;
}

void weft__shield_pop(void)
{
	struct weft__worker *w = weft__worker_current();
	if (w && w->current && w->current->shield)
		w->current->shield--;
}

