/*
 * weft_blocking: offloaded blocking calls do not block the worker (a sleep
 * and a read on a pipe on a 1-worker runtime, while another coroutine keeps
 * running and is what ends the wait), results come back, the pool stays
 * within its limit and reaches it, a queued call is withdrawn by a cancel,
 * a running one is waited for, plain threads run fn inline, and raising the
 * limit starts the calls queued behind the old one, and the child of a fork
 * gets an empty pool of its own (with the parent's helper idle, or busy with
 * a call queued behind it).
 *
 * Waits inside the offloaded functions are bounded (5 s): a broken offload
 * fails a check instead of hanging. Checks inside coroutines count failures;
 * the test thread asserts the count is zero.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#include "harness.h"
#include "util.h"

#if defined(WEFT_TSAN)
/* The fork tests start threads in the child of a multi-threaded parent,
 * which TSan refuses by default (a lock another thread held at the fork
 * stays held in the child: the very hazard those tests check weft resets).
 * An explicit die_after_fork in TSAN_OPTIONS still overrides this. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif

static void run(unsigned workers, weft_fn fn, void *arg)
{
	run_with(workers, 0, fn, arg);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* On a helper thread: wait until *flag >= want, at most 5 s. */
static bool wait_flag(_Atomic unsigned *flag, unsigned want)
{
	for (int i = 0; i < 5000; i++) {
		if (atomic_load(flag) >= want)
			return true;
		sleep_ms(1);
	}
	return false;
}

/* In a coroutine: wait until cond() holds, at most 5 s, parking between. */
#define CO_WAIT_UNTIL(cond) do {                                  \
		for (int i_ = 0; !(cond) && i_ < 5000; i_++)                 \
			weft_sleep(1000000);                                 \
		CHECK(cond);                                                 \
	} while (0)

/* ------------------------------------------------------------- results -- */

static void *twice(void *arg) { return (void *)((uintptr_t)arg * 2); }

static void *results_body(void *arg)
{
	for (uintptr_t i = 1; i <= 50; i++) {
		void *ret = NULL;
		CHECK(weft_blocking(twice, (void *)(i + (uintptr_t)arg), &ret) == 0);
		CHECK((uintptr_t)ret == 2 * (i + (uintptr_t)arg));
	}
	CHECK(weft_blocking(twice, (void *)1, NULL) == 0);   /* ret may be NULL */
	return NULL;
}

static void *results_main(void *arg)
{
	enum { N = 20 };
	weft_task *t[N];
	for (uintptr_t i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], results_body, (void *)(i * 1000)) == 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(blocking, results_returned)
{
	struct weft_blocking_stats before, after;
	weft_blocking_stats(&before);
	run(2, results_main, NULL);
	weft_blocking_stats(&after);
	cr_assert_eq(after.completed - before.completed, 20 * 51);
	cr_assert_eq(after.queued, 0);
	cr_assert_eq(after.running, 0);
	cr_assert(after.threads >= 1 && after.threads <= weft_blocking_max_threads());
}

/* ------------------------------------- the worker is not blocked: pipe -- */

static int pipefd[2];
static _Atomic unsigned in_fn;

static void *read_pipe(void *arg)
{
	char *buf = arg;
	atomic_store(&in_fn, 1);
	struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)            /* bounded: never hang the test */
		return (void *)(intptr_t)-ETIMEDOUT;
	return (void *)(intptr_t)read(pipefd[0], buf, 16);
}

static void *writer(void *arg)
{
	/* Runs only if the single worker is free while read_pipe blocks. */
	CO_WAIT_UNTIL(atomic_load(&in_fn) == 1);
	CHECK(write(pipefd[1], "hello", 5) == 5);
	return NULL;
}

static void *pipe_main(void *arg)
{
	char buf[16] = { 0 };
	weft_task *w;
	CHECK(weft_spawn(&w, writer, NULL) == 0);
	void *ret = NULL;
	CHECK(weft_blocking(read_pipe, buf, &ret) == 0);
	CHECK((intptr_t)ret == 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK(weft_join(w, NULL) == 0);
	return NULL;
}

Test(blocking, pipe_read_does_not_block_the_worker)
{
	cr_assert_eq(pipe(pipefd), 0);
	run(1, pipe_main, NULL);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* ------------------------------------ the worker is not blocked: sleep -- */

static _Atomic unsigned ticks;
static _Atomic unsigned sleeper_done;

static void *sleepy(void *arg)
{
	/* Sleeps in 1 ms steps until the other coroutine has ticked 3 times
	 * (it can only tick if our worker is free), at most 5 s. */
	return (void *)(uintptr_t)wait_flag(&ticks, 3);
}

static void *ticker(void *arg)
{
	for (int i = 0; i < 10000 && !atomic_load(&sleeper_done); i++) {
		atomic_fetch_add(&ticks, 1);
		weft_sleep(500000);
	}
	return NULL;
}

static void *sleep_main(void *arg)
{
	weft_task *t;
	atomic_store(&ticks, 0);
	CHECK(weft_spawn(&t, ticker, NULL) == 0);
	void *ret = NULL;
	CHECK(weft_blocking(sleepy, NULL, &ret) == 0);
	CHECK(ret == (void *)1);
	atomic_store(&sleeper_done, 1);
	CHECK(weft_join(t, NULL) == 0);
	return NULL;
}

Test(blocking, sleep_does_not_block_the_worker)
{
	run(1, sleep_main, NULL);
}

/* --------------------------------------------------------- bounded pool -- */

enum { POOL = 4, CALLS = POOL + 10 };
static _Atomic unsigned running, max_running, entered;

static void *pooled(void *arg)
{
	unsigned now = atomic_fetch_add(&running, 1) + 1;
	unsigned m = atomic_load(&max_running);
	while (now > m && !atomic_compare_exchange_weak(&max_running, &m, now))
		;
	atomic_fetch_add(&entered, 1);
	/* Hold the helper until POOL calls ran at once (or all have entered):
	 * shows the pool grows to its limit, while the limit caps it. */
	for (int i = 0; i < 5000 && atomic_load(&max_running) < POOL
	                 && atomic_load(&entered) < CALLS; i++)
		sleep_ms(1);
	atomic_fetch_sub(&running, 1);
	return (void *)((uintptr_t)arg + 7);
}

static void *pool_body(void *arg)
{
	void *ret = NULL;
	CHECK(weft_blocking(pooled, arg, &ret) == 0);
	CHECK((uintptr_t)ret == (uintptr_t)arg + 7);
	return NULL;
}

static void *pool_main(void *arg)
{
	weft_task *t[CALLS];
	for (uintptr_t i = 0; i < CALLS; i++)
		CHECK(weft_spawn(&t[i], pool_body, (void *)i) == 0);
	for (int i = 0; i < CALLS; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(blocking, bounded_pool_serves_more_calls_than_threads)
{
	cr_assert_eq(weft_blocking_configure(POOL, 0), 0);
	cr_assert_eq(weft_blocking_max_threads(), POOL);
	cr_assert_eq(weft_blocking_configure(0, 0), -EINVAL);
	run(2, pool_main, NULL);
	cr_assert_eq(atomic_load(&entered), CALLS);
	cr_assert_eq(atomic_load(&max_running), POOL, "max concurrent %u",
	             atomic_load(&max_running));
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	cr_assert(st.peak_threads <= POOL, "peak %u", st.peak_threads);
	cr_assert_eq(st.queued, 0);
}

/* ---------------------------------------------------------- cancellation -- */

static _Atomic unsigned gate_started, gate_open, gate_done, never_ran;

static void *gate(void *arg)
{
	atomic_store(&gate_started, 1);
	bool opened = wait_flag(&gate_open, 1);
	atomic_store(&gate_done, 1);
	return opened ? arg : NULL;
}

static void *never(void *arg)
{
	atomic_store(&never_ran, 1);
	return NULL;
}

static void *call_gate(void *arg)
{
	void *ret = NULL;
	CHECK(weft_blocking(gate, (void *)0x600d, &ret) == 0);
	CHECK(ret == (void *)0x600d);
	return NULL;
}

static void *call_never(void *arg)
{
	return (void *)(intptr_t)weft_blocking(never, NULL, NULL);
}

static unsigned stat_queued(void)
{
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	return st.queued;
}

static void *cancel_queued_main(void *arg)
{
	weft_task *busy, *q;
	CHECK(weft_spawn(&busy, call_gate, NULL) == 0);   /* takes the one helper */
	CO_WAIT_UNTIL(atomic_load(&gate_started) == 1);
	CHECK(weft_spawn(&q, call_never, NULL) == 0);
	CO_WAIT_UNTIL(stat_queued() == 1);
	CHECK(weft_cancel(q) == 0);
	void *r = NULL;
	CHECK(weft_join(q, &r) == 0);
	CHECK((intptr_t)r == -ECANCELED);
	CHECK(stat_queued() == 0);
	atomic_store(&gate_open, 1);
	CHECK(weft_join(busy, NULL) == 0);
	CHECK(atomic_load(&never_ran) == 0);    /* withdrawn: never started */
	return NULL;
}

Test(blocking, cancel_while_queued_withdraws_the_call)
{
	cr_assert_eq(weft_blocking_configure(1, 0), 0);
	struct weft_blocking_stats before, after;
	weft_blocking_stats(&before);
	run(2, cancel_queued_main, NULL);
	weft_blocking_stats(&after);
	cr_assert_eq(after.cancelled - before.cancelled, 1);
	cr_assert_eq(atomic_load(&never_ran), 0);
}

static void *cancelled_runner(void *arg)
{
	void *ret = NULL;
	int r = weft_blocking(gate, (void *)0xabc, &ret);
	/* Cancelled while gate ran: waited for it and got its result. */
	CHECK(r == 0);
	CHECK(ret == (void *)0xabc);
	CHECK(atomic_load(&gate_done) == 1);
	CHECK(weft_cancelled());
	/* The cancel stays pending: the next call is refused up front. */
	CHECK(weft_blocking(never, NULL, NULL) == -ECANCELED);
	return NULL;
}

static void *cancel_running_main(void *arg)
{
	weft_task *t;
	CHECK(weft_spawn(&t, cancelled_runner, NULL) == 0);
	CO_WAIT_UNTIL(atomic_load(&gate_started) == 1);
	CHECK(weft_cancel(t) == 0);
	weft_sleep(2000000);             /* let it see the cancel (either way correct) */
	CHECK(atomic_load(&gate_done) == 0);
	atomic_store(&gate_open, 1);
	CHECK(weft_join(t, NULL) == 0);
	CHECK(atomic_load(&never_ran) == 0);
	return NULL;
}

Test(blocking, cancel_while_running_waits_for_the_result)
{
	cr_assert_eq(weft_blocking_configure(2, 0), 0);
	run(2, cancel_running_main, NULL);
}

/* -------------------------------------------------------- plain threads -- */

Test(blocking, plain_thread_runs_inline)
{
	struct weft_blocking_stats before, after;
	weft_blocking_stats(&before);
	void *ret = NULL;
	cr_assert_eq(weft_blocking(twice, (void *)21, &ret), 0);
	cr_assert_eq((uintptr_t)ret, 42);
	weft_blocking_stats(&after);
	cr_assert_eq(after.completed, before.completed);   /* no helper involved */
	cr_assert_eq(after.threads, 0);
}

/* ------------------------------------------------- raising the limit -- */

/* With the limit at 1, a call's fn that waits (on a channel, from its
 * helper) for a second call queued behind it: raising the limit must start
 * a helper for the queued call, or the first fn waits for ever. The
 * channel waits are bounded (5 s), so the old behaviour fails a check
 * instead of hanging. */
static weft_chan *handoff;

static void *wait_for_second(void *arg)
{
	int v = 0;
	int r = weft_chan_recv_timeout(handoff, &v, 5000000000ull);
	return (void *)(intptr_t)(r == 0 ? v : r);
}

static void *send_to_first(void *arg)
{
	int v = 42;
	return (void *)(intptr_t)weft_chan_send_timeout(handoff, &v, 5000000000ull);
}

static void *call_fn(void *arg)
{
	void *ret = (void *)(intptr_t)-1;
	CHECK(weft_blocking((void *(*)(void *))arg, NULL, &ret) == 0);
	return ret;
}

static bool stats_are(unsigned running_, unsigned queued_)
{
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	return st.running == running_ && st.queued == queued_;
}

static void *raise_unblocks_main(void *arg)
{
	weft_task *first, *second;
	CHECK(weft_spawn(&first, call_fn, (void *)wait_for_second) == 0);
	CO_WAIT_UNTIL(stats_are(1, 0));
	CHECK(weft_spawn(&second, call_fn, (void *)send_to_first) == 0);
	CO_WAIT_UNTIL(stats_are(1, 1));
	CHECK(weft_blocking_configure(8, 0) == 0);
	void *r1 = NULL, *r2 = NULL;
	CHECK(weft_join(first, &r1) == 0);
	CHECK(weft_join(second, &r2) == 0);
	CHECK((intptr_t)r1 == 42);          /* got the second call's value */
	CHECK((intptr_t)r2 == 0);
	return NULL;
}

Test(blocking, raising_the_limit_starts_queued_calls)
{
	cr_assert_eq(weft_blocking_configure(1, 0), 0);
	cr_assert_eq(weft_chan_create(&handoff, sizeof(int), 0), 0);
	run(2, raise_unblocks_main, NULL);
	weft_chan_destroy(handoff);
}

/* Eight calls queued behind a limit of 1, then the limit raised to 8: all
 * eight run at once (weft_blocking_stats shows running == 8) before any of
 * them is let go. */
enum { RAISED = 8 };
static _Atomic unsigned raise_gate;

static void *held(void *arg)
{
	return (void *)(uintptr_t)wait_flag(&raise_gate, 1);
}

static void *call_held(void *arg)
{
	void *ret = NULL;
	CHECK(weft_blocking(held, NULL, &ret) == 0);
	CHECK(ret == (void *)1);
	return NULL;
}

static unsigned stat_running(void)
{
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	return st.running;
}

static void *raise_all_main(void *arg)
{
	weft_task *t[RAISED];
	for (int i = 0; i < RAISED; i++)
		CHECK(weft_spawn(&t[i], call_held, NULL) == 0);
	CO_WAIT_UNTIL(stats_are(1, RAISED - 1));
	CHECK(weft_blocking_configure(RAISED, 0) == 0);
	CO_WAIT_UNTIL(stat_running() == RAISED);
	CHECK(stat_queued() == 0);
	atomic_store(&raise_gate, 1);
	for (int i = 0; i < RAISED; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(blocking, raising_the_limit_runs_the_queue_at_once)
{
	cr_assert_eq(weft_blocking_configure(1, 0), 0);
	run(2, raise_all_main, NULL);
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	cr_assert_eq(st.peak_threads, RAISED, "peak %u", st.peak_threads);
}

/* ----------------------------------------------------------------- fork -- */


static void *child_call(void *arg)
{
	void *ret = NULL;
	int r = weft_blocking(twice, (void *)21, &ret);
	return (void *)(uintptr_t)(r == 0 && (uintptr_t)ret == 42);
}

/* In the child: a fresh pool (nothing of the parent's is counted), then a
 * runtime of its own whose coroutine's call runs on a helper. Exit status 0
 * when all went well, else which step failed. */
static int child_uses_pool(void)
{
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	if (st.threads || st.idle || st.queued || st.running)
		return 2;
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1 };
	if (weft_rt_create(&rt, &cfg) != 0)
		return 3;
	void *ok = NULL;
	if (weft_rt_run(rt, child_call, NULL, &ok) != 0 || !ok)
		return 4;
	if (weft_rt_destroy(rt) != 0)
		return 5;
	weft_blocking_stats(&st);
	if (st.completed != 1 || st.threads > 1)
		return 6;
	return 0;
}

static void *one_call(void *arg)
{
	void *ret = NULL;
	CHECK(weft_blocking(twice, (void *)1, &ret) == 0);
	CHECK(ret == (void *)2);
	return NULL;
}

Test(blocking, fork_child_gets_a_fresh_pool)
{
	/* The parent's helper is idle at the fork: the child's first call used
	 * to reserve it and wait for ever. */
	run(1, one_call, NULL);
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	cr_assert_eq(st.idle, 1);
	int status = in_child(child_uses_pool, 10);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "child status %#x", status);
}

static _Atomic unsigned fork_ready, fork_done;

/* The parent's side while the child is forked: one helper busy in gate, one
 * call queued behind it (limit 1). */
static void *fork_busy_main(void *arg)
{
	weft_task *busy, *q;
	CHECK(weft_spawn(&busy, call_gate, NULL) == 0);   /* takes the one helper */
	CO_WAIT_UNTIL(atomic_load(&gate_started) == 1);
	CHECK(weft_spawn(&q, call_fn, (void *)twice) == 0);
	CO_WAIT_UNTIL(stat_queued() == 1);
	atomic_store(&fork_ready, 1);
	CO_WAIT_UNTIL(atomic_load(&fork_done) == 1);
	atomic_store(&gate_open, 1);
	CHECK(weft_join(busy, NULL) == 0);
	CHECK(weft_join(q, NULL) == 0);
	return NULL;
}

static _Atomic int runner_err = -1;

/* A plain thread: the parent's runtime lives here while the test's own
 * thread forks (a child of a coroutine would inherit a worker thread). */
static void *runner(void *arg)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 2 };
	int err = weft_rt_create(&rt, &cfg);
	if (!err)
		err = weft_rt_run(rt, fork_busy_main, NULL, NULL);
	if (!err)
		err = weft_rt_destroy(rt);
	atomic_store(&runner_err, err);
	return NULL;
}

Test(blocking, fork_child_gets_a_fresh_pool_while_the_parent_runs)
{
	cr_assert_eq(weft_blocking_configure(1, 0), 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, runner, NULL), 0);
	for (int i = 0; i < 5000 && !atomic_load(&fork_ready); i++)
		sleep_ms(1);
	int status = atomic_load(&fork_ready) ? in_child(child_uses_pool, 10) : -2;
	atomic_store(&fork_done, 1);
	pthread_join(th, NULL);
	cr_assert(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "child status %#x", status);
	cr_assert_eq(atomic_load(&runner_err), 0);
	cr_assert_eq(atomic_load(&failures), 0, "%u check(s) failed, first at line %d",
	             atomic_load(&failures), atomic_load(&first_fail_line));
	/* The parent's pool is untouched by the child's reset. */
	struct weft_blocking_stats st;
	weft_blocking_stats(&st);
	cr_assert_eq(st.queued, 0);
	cr_assert_eq(st.running, 0);
}

/* ------------------------------------------- no helper can be started -- */

/*
 * When no helper thread can be started and none is left, every call queued
 * gets -EAGAIN: also those queued behind a helper that another call was
 * starting when its pthread_create failed (they used to wait for ever). The
 * child drops root and caps RLIMIT_NPROC at the threads it already has, so
 * every pthread_create fails with EAGAIN; 64 coroutines race into the pool
 * (limit 1) on 2 workers, so some queue while another's helper is being
 * started. A hang is the failure the child's alarm turns into a status.
 */
static void *nothing(void *arg) { return arg; }

static _Atomic int eagain_calls, other_results;

static void *capped_call(void *arg)
{
	int r = weft_blocking(nothing, NULL, NULL);
	atomic_fetch_add(r == -EAGAIN ? &eagain_calls : &other_results, 1);
	return NULL;
}

static void *capped_main(void *arg)
{
	weft_task *t[64];
	for (int i = 0; i < 64; i++)
		if (weft_spawn(&t[i], capped_call, NULL) != 0)
			return (void *)1;
	for (int i = 0; i < 64; i++)
		weft_join(t[i], NULL);
	return NULL;
}

static int threads_now(void)
{
	char line[128];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "Threads:", 8))
			n = atoi(line + 8);
	if (f)
		fclose(f);
	return n;
}

static int child_without_threads(void)
{
	if (setgid(65534) != 0 || setuid(65534) != 0)
		return 77;                    /* not root: cannot drop to nobody */
	weft_rt *rt;
	struct weft_config cfg = { .workers = 2 };
	if (weft_rt_create(&rt, &cfg) != 0)
		return 2;
	int n = threads_now();
	struct rlimit lim = { (rlim_t)n, (rlim_t)n };
	if (n <= 0 || setrlimit(RLIMIT_NPROC, &lim) != 0)
		return 3;
	if (weft_blocking_configure(1, 0) != 0)
		return 4;
	void *r = (void *)1;
	if (weft_rt_run(rt, capped_main, NULL, &r) != 0 || r)
		return 5;
	if (atomic_load(&eagain_calls) != 64)
		return 10 + atomic_load(&other_results) % 100;   /* some call got a helper? */
	return weft_rt_destroy(rt) ? 6 : 0;
}

Test(blocking, no_helper_startable_fails_every_queued_call)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to drop to an unprivileged uid");
	int st = in_child(child_without_threads, 10);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		cr_skip_test("could not drop to nobody");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x (exit %d)", st,
	          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}
