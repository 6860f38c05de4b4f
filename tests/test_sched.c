/*
 * Runtime core: lifecycle, spawn/join/cancel, park/wake races, sleep, idle
 * CPU. Every suite runs with 1, 2, 4 and 64 workers (64 oversubscribes this
 * machine on purpose: preempted workers must not lose or duplicate work).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "weft/chan.h"
#include "weft/io.h"
#include "sched/wait.h"
#include "util.h"

#if defined(WEFT_TSAN)
/* fork_from_a_coroutine starts threads in the child of a multi-threaded
 * parent, which TSan refuses by default. An explicit die_after_fork in
 * TSAN_OPTIONS still overrides this. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif

static const unsigned worker_counts[] = { 1, 2, 4, 64 };
#define FOR_EACH_WORKERS(n) \
	for (unsigned _i = 0, n; _i < 4 && ((n = worker_counts[_i]), 1); _i++)

static weft_rt *make_rt(unsigned workers)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers };
	int err = weft_rt_create(&rt, &cfg);
	cr_assert_eq(err, 0, "weft_rt_create(%u workers): %s", workers, weft_strerror(err));
	return rt;
}

static void *run_main(unsigned workers, weft_fn fn, void *arg)
{
	weft_rt *rt = make_rt(workers);
	void *ret = (void *)0xdead;
	cr_assert_eq(weft_rt_run(rt, fn, arg, &ret), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	return ret;
}

/* ------------------------------------------------------------- basics --- */

static void *ret_arg(void *arg) { return arg; }

Test(sched, run_returns_result)
{
	FOR_EACH_WORKERS(n)
		cr_assert_eq(run_main(n, ret_arg, (void *)0x1234), (void *)0x1234);
}

Test(sched, bad_config_rejected)
{
	weft_rt *rt = (weft_rt *)1;
	struct weft_config small = { .stack_size = 1024 };
	cr_assert_eq(weft_rt_create(&rt, &small), -EINVAL);
	cr_assert_null(rt);
	struct weft_config flags = { .flags = 0x80 };
	cr_assert_eq(weft_rt_create(&rt, &flags), -EINVAL);
	cr_assert_eq(weft_rt_create(NULL, NULL), -EINVAL);
}

Test(sched, blocking_outside_coroutine_is_eperm)
{
	cr_assert_eq(weft_sleep(1000), -EPERM);
	cr_assert_eq(weft_spawn(NULL, ret_arg, NULL), -EPERM);
	cr_assert_eq(weft_join((weft_task *)8, NULL), -EPERM);
	cr_assert_null(weft_self());
	cr_assert_eq(weft_worker_id(), -1);
	weft_yield();   /* a no-op, must not crash */
}

/* weft called by a program's constructor, before main: the inline accessor
 * of the current worker (ctx/tls.h) must already know its TLS offset, or
 * it reads the thread's control block as a worker (this test hung so). */
static weft_task *ctor_self = (weft_task *)1;
static int ctor_worker = 12345;
static int ctor_sleep = 12345;

__attribute__((constructor)) static void ctor_calls_weft(void)
{
	ctor_self = weft_self();
	ctor_worker = weft_worker_id();
	ctor_sleep = weft_sleep(1000);
}

Test(sched, calls_from_a_constructor_see_a_plain_thread)
{
	cr_assert_null(ctor_self);
	cr_assert_eq(ctor_worker, -1);
	cr_assert_eq(ctor_sleep, -EPERM);
}

static void *join_self(void *arg)
{
	return (void *)(intptr_t)weft_join(weft_self(), NULL);
}

Test(sched, join_self_is_edeadlk)
{
	cr_assert_eq((intptr_t)run_main(2, join_self, NULL), -EDEADLK);
}

static void *in_coroutine_checks(void *arg)
{
	weft_rt *rt = arg;
	cr_assert_eq(weft_rt_current(), rt);
	cr_assert_not_null(weft_self());
	cr_assert_neq(weft_task_id(weft_self()), 0);
	cr_assert_str_eq(weft_task_name(weft_self()), "main");
	weft_set_name("renamed");
	cr_assert_str_eq(weft_task_name(weft_self()), "renamed");
	int id = weft_worker_id();
	cr_assert(id >= 0 && (unsigned)id < weft_rt_workers(rt));
	/* the runtime's own calls refuse to run on a worker */
	weft_rt *other;
	cr_assert_eq(weft_rt_create(&other, NULL), -EPERM);
	cr_assert_eq(weft_rt_destroy(rt), -EPERM);
	cr_assert_eq(weft_rt_run(rt, ret_arg, NULL, NULL), -EPERM);
	return NULL;
}

Test(sched, identity_inside_coroutine)
{
	weft_rt *rt = make_rt(2);
	cr_assert_eq(weft_rt_run(rt, in_coroutine_checks, rt, NULL), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

/* --------------------------------------------------- spawn and join --- */

static _Atomic long counter;

static void *bump(void *arg)
{
	atomic_fetch_add_explicit(&counter, (long)(intptr_t)arg, memory_order_relaxed);
	return arg;
}

enum { MILLION = 1000000, CHUNK = 1000 };

static void *spawn_million(void *arg)
{
	/* 1,000,000 joinable coroutines, joined in chunks so the handles fit */
	static __thread int dummy;   /* keep a TLS object around; never cached */
	(void)dummy;
	weft_task *t[CHUNK];
	long sum = 0;
	for (int c = 0; c < MILLION / CHUNK; c++) {
		for (int i = 0; i < CHUNK; i++)
			cr_assert_eq(weft_spawn(&t[i], bump, (void *)(intptr_t)1), 0);
		for (int i = 0; i < CHUNK; i++) {
			void *r;
			cr_assert_eq(weft_join(t[i], &r), 0);
			sum += (intptr_t)r;
		}
	}
	return (void *)sum;
}

Test(sched, million_spawned_and_joined, .timeout = 600)
{
	FOR_EACH_WORKERS(n) {
		atomic_store(&counter, 0);
		cr_assert_eq((intptr_t)run_main(n, spawn_million, NULL), MILLION, "workers=%u", n);
		cr_assert_eq(atomic_load(&counter), MILLION);
	}
}

static void *skynet(void *arg)
{
	/* arg packs num and size: size in the low 24 bits */
	long num = (long)((uintptr_t)arg >> 24), size = (long)((uintptr_t)arg & 0xffffff);
	if (size == 1)
		return (void *)num;
	weft_task *t[10];
	long sub = size / 10, sum = 0;
	for (long i = 0; i < 10; i++)
		cr_assert_eq(weft_spawn(&t[i], skynet,
		                        (void *)(((uintptr_t)(num + i * sub) << 24) | (uintptr_t)sub)), 0);
	for (int i = 0; i < 10; i++) {
		void *r;
		cr_assert_eq(weft_join(t[i], &r), 0);
		sum += (long)r;
	}
	return (void *)sum;
}

Test(sched, skynet_100k_leaves, .timeout = 600)
{
	FOR_EACH_WORKERS(n) {
		long r = (long)run_main(n, skynet, (void *)(uintptr_t)100000);
		cr_assert_eq(r, 4999950000L, "workers=%u: skynet(100000) = %ld", n, r);
	}
}

static void *slow_child(void *arg)
{
	weft_sleep(1000000);
	return arg;
}

static void *join_finished(void *arg)
{
	weft_task *t;
	cr_assert_eq(weft_spawn(&t, ret_arg, (void *)7), 0);
	/* child-first: it ran to completion before we got here; make sure of it
	 * anyway for the parent-first policy */
	for (int i = 0; i < 10; i++)
		weft_yield();
	void *r;
	cr_assert_eq(weft_join(t, &r), 0);
	cr_assert_eq(r, (void *)7);
	cr_assert_eq(weft_spawn(&t, slow_child, (void *)8), 0);
	cr_assert_eq(weft_join(t, &r), 0);
	cr_assert_eq(r, (void *)8);
	return NULL;
}

Test(sched, join_before_and_after_finish)
{
	FOR_EACH_WORKERS(n)
		run_main(n, join_finished, NULL);
}

Test(sched, parent_first_policy)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 2, .flags = WEFT_RT_PARENT_FIRST };
	cr_assert_eq(weft_rt_create(&rt, &cfg), 0);
	void *r;
	cr_assert_eq(weft_rt_run(rt, skynet, (void *)(uintptr_t)10000, &r), 0);
	cr_assert_eq((long)r, 49995000L);
	cr_assert_eq(weft_rt_run(rt, join_finished, NULL, NULL), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

static void *named(void *arg)
{
	return (void *)weft_task_name(weft_self());
}

/* weft_dump's line for coroutine `id` once it shows as parked, copied into
 * out (bounded: 5000 tries, 1 ms apart). By id, not by name: a test of
 * names must find the line whatever the name became. */
static bool parked_dump_line(uint64_t id, char *out, size_t len)
{
	char key[48];
	snprintf(key, sizeof key, "coroutine %llu \"", (unsigned long long)id);
	for (int tries = 0; tries < 5000; tries++) {
		if (tries)
			weft_sleep(1000000);
		char *buf = dump_text();
		if (!buf)
			return false;
		char *p = strstr(buf, key);
		bool ok = false;
		if (p) {
			size_t n = strcspn(p, "\n");
			snprintf(out, len, "%.*s", (int)n, p);
			ok = strstr(out, ": parked") != NULL;
		}
		free(buf);
		if (ok)
			return true;
	}
	return false;
}

#define LONG_NAME "a-rather-long-coroutine-name-over-31-bytes"

/* What spawn_opts saw, asserted on the test's thread. */
struct spawn_seen {
	int spawned, found, ended;
	char name[64];                /* weft_task_name inside the child */
	char line[512];               /* its weft_dump line while parked */
	int dflt_spawned, dflt_found, dflt_ended;
	char dflt_line[512];          /* the same for a spawn without a size */
};

/* Records its name (the record is recycled after the join, so the child
 * copies it), then parks until cancelled. */
static void *named_parker(void *arg)
{
	char *name = arg;
	if (name)
		snprintf(name, 64, "%s", weft_task_name(weft_self()));
	return (void *)(intptr_t)weft_sleep(3600ull * 1000000000ull);
}

static void *spawn_opts(void *arg)
{
	struct spawn_seen *seen = arg;
	struct weft_spawn_opts o = { .name = LONG_NAME, .stack_size = 256 * 1024 };
	weft_task *t;
	void *r = NULL;
	seen->spawned = weft_spawn_opts(&t, named_parker, seen->name, &o);
	if (seen->spawned == 0) {
		seen->found = parked_dump_line(weft_task_id(t), seen->line, sizeof seen->line);
		weft_cancel(t);
		seen->ended = weft_join(t, &r) == 0 && (intptr_t)r == -ECANCELED;
	}
	/* no size asked: the runtime's */
	struct weft_spawn_opts d = { .name = "default-stack" };
	seen->dflt_spawned = weft_spawn_opts(&t, named_parker, NULL, &d);
	if (seen->dflt_spawned == 0) {
		seen->dflt_found = parked_dump_line(weft_task_id(t), seen->dflt_line,
		                                    sizeof seen->dflt_line);
		weft_cancel(t);
		seen->dflt_ended = weft_join(t, &r) == 0 && (intptr_t)r == -ECANCELED;
	}
	struct weft_spawn_opts bad = { .stack_size = 100 };
	cr_assert_eq(weft_spawn_opts(&t, named, NULL, &bad), -EINVAL);
	struct weft_spawn_opts badflags = { .flags = 1 };
	cr_assert_eq(weft_spawn_opts(&t, named, NULL, &badflags), -EINVAL);
	cr_assert_eq(weft_spawn(&t, NULL, NULL), -EINVAL);
	return NULL;
}

/* The options take effect: the name is kept up to 31 bytes (weft.h), and
 * the stack is the size asked for, as weft_dump reports it for a parked
 * coroutine ("stack <used>/<size> KiB in use"). */
Test(sched, spawn_options)
{
	static struct spawn_seen seen;
	run_main(2, spawn_opts, &seen);
	char want[32];
	memcpy(want, LONG_NAME, 31);                   /* the first 31 bytes */
	want[31] = 0;
	cr_assert_eq(seen.spawned, 0);
	cr_assert_str_eq(seen.name, want, "name kept as \"%s\"", seen.name);
	cr_assert(seen.found, "never shown as parked: \"%s\"", seen.line);
	cr_assert_not_null(strstr(seen.line, want), "%s", seen.line);
	cr_assert_not_null(strstr(seen.line, "/256 KiB in use"), "%s", seen.line);
	cr_assert(seen.ended);
	cr_assert_eq(seen.dflt_spawned, 0);
	cr_assert(seen.dflt_found, "never shown as parked: \"%s\"", seen.dflt_line);
	cr_assert_not_null(strstr(seen.dflt_line, "\"default-stack\""), "%s", seen.dflt_line);
	cr_assert_not_null(strstr(seen.dflt_line, "/64 KiB in use"), "%s", seen.dflt_line);
	cr_assert(seen.dflt_ended);
}

/* -------------------------------------------------------- cancellation --- */

static void *sleeper(void *arg)
{
	return (void *)(intptr_t)weft_sleep(3600ull * 1000000000ull);   /* an hour */
}

static void *joiner(void *arg)
{
	return (void *)(intptr_t)weft_join(arg, NULL);
}

static void *cancel_cases(void *arg)
{
	/* cancel during sleep */
	weft_task *s;
	cr_assert_eq(weft_spawn(&s, sleeper, NULL), 0);
	weft_sleep(100000);
	cr_assert_eq(weft_cancel(s), 0);
	void *r;
	cr_assert_eq(weft_join(s, &r), 0);
	cr_assert_eq((intptr_t)r, -ECANCELED);

	/* cancel during join: j joins a sleeper; cancel j, then the sleeper */
	weft_task *s2, *j;
	cr_assert_eq(weft_spawn(&s2, sleeper, NULL), 0);
	cr_assert_eq(weft_spawn(&j, joiner, s2), 0);
	weft_sleep(100000);
	weft_cancel(j);
	cr_assert_eq(weft_join(j, &r), 0);
	cr_assert_eq((intptr_t)r, -ECANCELED, "a cancelled join returns -ECANCELED");
	/* s2 stays joinable after its joiner was cancelled */
	weft_cancel(s2);
	cr_assert_eq(weft_join(s2, &r), 0);
	cr_assert_eq((intptr_t)r, -ECANCELED);

	/* cancel before the first blocking call: the sleep fails at once */
	cr_assert_eq(weft_spawn(&s, sleeper, NULL), 0);
	weft_cancel(s);
	cr_assert_eq(weft_join(s, &r), 0);
	cr_assert_eq((intptr_t)r, -ECANCELED);

	/* cancelling a finished coroutine is a no-op */
	cr_assert_eq(weft_spawn(&s, ret_arg, (void *)3), 0);
	for (int i = 0; i < 5; i++)
		weft_yield();
	cr_assert_eq(weft_cancel(s), 0);
	cr_assert_eq(weft_join(s, &r), 0);
	cr_assert_eq(r, (void *)3);
	return NULL;
}

Test(sched, cancel_sleep_and_join)
{
	FOR_EACH_WORKERS(n)
		run_main(n, cancel_cases, NULL);
}

static void *cancel_race_one(void *arg)
{
	weft_task *s;
	void *r;
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(weft_spawn(&s, sleeper, NULL), 0);
		if (i & 1)
			weft_yield();       /* vary where the cancel lands */
		weft_cancel(s);
		cr_assert_eq(weft_join(s, &r), 0);
		cr_assert_eq((intptr_t)r, -ECANCELED, "round %d", i);
	}
	return NULL;
}

static void *cancel_race(void *arg)
{
	weft_task *t[8];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(weft_spawn(&t[i], cancel_race_one, NULL), 0);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(weft_join(t[i], NULL), 0);
	return NULL;
}

Test(sched, cancel_races_with_parking, .timeout = 300)
{
	FOR_EACH_WORKERS(n)
		run_main(n, cancel_race, NULL);
}

/* -------------------------------------------------- park/wake races --- */

/*
 * A parks on a raw wait and publishes its waiter; B (elsewhere) claims and
 * wakes it as soon as it sees it, often while A is still switching out — the
 * NOTIFIED path. Each round A must be resumed exactly once, with B's reason.
 */
struct pw {
	_Atomic(struct weft__waiter *) slot;
	_Atomic int stop;
};

enum { PW_ROUNDS = 20000 };

static void *pw_parker(void *arg)
{
	struct pw *p = arg;
	for (int i = 0; i < PW_ROUNDS; i++) {
		struct weft__waiter w;
		cr_assert_eq(weft__wait_begin(&w, 0, 0), 0);
		atomic_store_explicit(&p->slot, &w, memory_order_release);
		int r = weft__wait_park(&w, NULL, NULL);
		cr_assert_eq(r, i + 1, "round %d woken with %d", i, r);
	}
	atomic_store(&p->stop, 1);
	return NULL;
}

static void *pw_waker(void *arg)
{
	struct pw *p = arg;
	int round = 0;
	for (long spins = 0; !atomic_load(&p->stop) && spins < 2000000000L; spins++) {
		struct weft__waiter *w = atomic_exchange_explicit(&p->slot, NULL, memory_order_acquire);
		if (!w) {
			if ((spins & 63) == 0)
				weft_yield();     /* on 1 worker, let the parker run */
			continue;
		}
		cr_assert(weft__wait_claim(w), "claim of round %d failed", round);
		cr_assert_not(weft__wait_claim(w), "claimed twice");
		weft__wait_wake(w, ++round);
	}
	return (void *)(intptr_t)round;
}

static void *park_wake_race(void *arg)
{
	struct pw p = { NULL, 0 };
	weft_task *a, *b;
	weft_spawn(&b, pw_waker, &p);
	weft_spawn(&a, pw_parker, &p);
	void *r;
	weft_join(a, NULL);
	weft_join(b, &r);
	cr_assert_eq((intptr_t)r, PW_ROUNDS);
	return NULL;
}

Test(sched, park_wake_race, .timeout = 300)
{
	FOR_EACH_WORKERS(n)
		run_main(n, park_wake_race, NULL);
}

/* ----------------------------------------------------------- timers --- */

static void *sleep_order(void *arg)
{
	uint64_t t0 = weft_now();
	cr_assert_eq(weft_sleep(20 * 1000000), 0);
	uint64_t dt = weft_now() - t0;
	/* At least, never a bound above: how late a sleep wakes depends on
	 * the machine's load, and a sleep that never ends fails by the test's
	 * timeout. */
	cr_assert_geq(dt, 20 * 1000000ull, "woke early: %llu ns", (unsigned long long)dt);
	cr_assert_eq(weft_sleep(0), 0);
	return NULL;
}

Test(sched, sleep_at_least)
{
	FOR_EACH_WORKERS(n)
		run_main(n, sleep_order, NULL);
}

static _Atomic long sleepers_done;

static void *short_sleeper(void *arg)
{
	cr_assert_eq(weft_sleep(1000000 + ((uintptr_t)arg % 1000) * 1000), 0);
	atomic_fetch_add(&sleepers_done, 1);
	return NULL;
}

static void *many_sleepers(void *arg)
{
	long n = (long)arg;
	weft_task **t = malloc(n * sizeof *t);
	for (long i = 0; i < n; i++)
		cr_assert_eq(weft_spawn(&t[i], short_sleeper, (void *)i), 0);
	for (long i = 0; i < n; i++)
		weft_join(t[i], NULL);
	free(t);
	return NULL;
}

Test(sched, hundred_thousand_sleepers, .timeout = 300)
{
	long n = 100000;
#if defined(WEFT_TSAN)
	/* TSan maps a 512 KiB shadow stack per live fiber, one mapping each:
	 * 100,000 at once run into vm.max_map_count (65530). */
	n = 30000;
#endif
	atomic_store(&sleepers_done, 0);
	run_main(2, many_sleepers, (void *)n);
	cr_assert_eq(atomic_load(&sleepers_done), n);
}

/* --------------------------------------------------------- from outside --- */

static _Atomic int outside_ran;

static void *mark(void *arg)
{
	atomic_fetch_add(&outside_ran, 1);
	return arg;
}

static void *wait_marks(void *arg)
{
	for (int i = 0; i < 100000 && atomic_load(&outside_ran) < 100; i++)
		weft_sleep(100000);
	return NULL;
}

Test(sched, spawn_from_plain_thread)
{
	weft_rt *rt = make_rt(2);
	atomic_store(&outside_ran, 0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(weft_rt_spawn(rt, NULL, mark, NULL), 0);
	cr_assert_eq(weft_rt_run(rt, wait_marks, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&outside_ran), 100);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

/* destroy cancels what is still alive and waits for it: every sleeper's
 * sleep has ended with -ECANCELED, and the sleeper has returned, by the
 * time destroy does. */
static _Atomic int destroy_cancelled, destroy_other;

static void *counted_sleeper(void *arg)
{
	int r = weft_sleep(3600ull * 1000000000ull);
	atomic_fetch_add(r == -ECANCELED ? &destroy_cancelled : &destroy_other, 1);
	return NULL;
}

Test(sched, destroy_cancels_live_coroutines)
{
	FOR_EACH_WORKERS(n) {
		atomic_store(&destroy_cancelled, 0);
		atomic_store(&destroy_other, 0);
		weft_rt *rt = make_rt(n);
		for (int i = 0; i < 1000; i++)
			cr_assert_eq(weft_rt_spawn(rt, NULL, counted_sleeper, NULL), 0);
		weft_task *joinable;
		cr_assert_eq(weft_rt_spawn(rt, &joinable, counted_sleeper, NULL), 0);
		cr_assert_eq(weft_rt_run(rt, ret_arg, NULL, NULL), 0);
		cr_assert_eq(weft_rt_destroy(rt), 0);
		cr_assert_eq(atomic_load(&destroy_cancelled), 1001, "workers=%u: %d cancelled", n,
		             atomic_load(&destroy_cancelled));
		cr_assert_eq(atomic_load(&destroy_other), 0);
	}
}

/* ------------------------------------------------------------- idle --- */

/*
 * An idle runtime makes no work for the machine. Counted in events, not
 * measured in CPU time: CPU time depends on the machine's load and on the
 * build (sanitizers run checks and threads of their own), while an idle
 * runtime's events are fixed by its design. Idle, every worker sleeps in its
 * ring with no timeout and the monitor in a timed wait of 50 ms
 * (idle.c, monitor.c), so over an idle period:
 *   - the workers' counters (coroutines resumed, victims probed, parks,
 *     ring enters) stay still, but for the few steps a worker may still
 *     take on its way to sleep; a worker that polls or spins moves one of
 *     them on every turn of its loop (find_work searches, then parks);
 *   - the runtime's threads block and wake a bounded number of times: the
 *     monitor once per 50 ms of the period. A thread that wakes more often
 *     (a monitor or a worker on a short timer) shows in the context switch
 *     counts of /proc/self/task/<tid>/status.
 * The period's length, measured, only sets how many monitor ticks it may
 * hold: a slow or loaded machine stretches the period, not the counts.
 */
#define MAX_TIDS 512

/* The thread ids of this process, from /proc/self/task. */
static int list_tids(pid_t *tids, int cap)
{
	DIR *d = opendir("/proc/self/task");
	cr_assert_not_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < cap)
		if (e->d_name[0] != '.')
			tids[n++] = (pid_t)atoi(e->d_name);
	closedir(d);
	return n;
}

/* Context switches, voluntary and not, of every thread of this process that
 * is not in old[0..nold): the threads started since old was listed. */
static long new_threads_switches(const pid_t *old, int nold, int *nthreads)
{
	pid_t tids[MAX_TIDS];
	int n = list_tids(tids, MAX_TIDS);
	long sum = 0;
	*nthreads = 0;
	for (int i = 0; i < n; i++) {
		bool known = false;
		for (int k = 0; k < nold && !known; k++)
			known = old[k] == tids[i];
		if (known)
			continue;
		char path[64], line[128];
		snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tids[i]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;                   /* it has exited meanwhile */
		(*nthreads)++;
		long v;
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
				sum += v;
		fclose(f);
	}
	return sum;
}

static uint64_t worker_events(weft_rt *rt)
{
	struct weft_stats st;
	cr_assert_eq(weft_rt_stats(rt, &st, NULL, 0), 0);
	return st.total.switches + st.total.steals_tried + st.total.parks + st.total.io_enters;
}

Test(sched, idle_runtime_uses_no_cpu)
{
	enum { WORKERS = 2 };
	pid_t before[MAX_TIDS];
	int nbefore = list_tids(before, MAX_TIDS);
	weft_rt *rt = make_rt(WORKERS);
	cr_assert_eq(weft_rt_run(rt, ret_arg, NULL, NULL), 0);
	/* Settled: the counters held still over 20 ms (bounded: 500 tries). */
	uint64_t ev = worker_events(rt);
	for (int tries = 0; tries < 500; tries++) {
		usleep(20000);
		uint64_t now = worker_events(rt);
		if (now == ev)
			break;
		ev = now;
	}
	int nthreads;
	long sw0 = new_threads_switches(before, nbefore, &nthreads);
	uint64_t ev0 = worker_events(rt), t0 = weft_now();
	usleep(500000);
	long sw1 = new_threads_switches(before, nbefore, &nthreads);
	uint64_t ev1 = worker_events(rt), t1 = weft_now();
	cr_assert_eq(weft_rt_destroy(rt), 0);

	cr_assert_geq(nthreads, WORKERS + 1, "the workers and the monitor: %d threads", nthreads);
	cr_assert_leq(ev1 - ev0, 4 * WORKERS, "idle workers: %llu scheduling events",
	              (unsigned long long)(ev1 - ev0));
	/* the monitor: one wake per 50 ms; each wake is a switch out and maybe
	 * one preempted; plus a few for the threads settling */
	long ticks = (long)((t1 - t0) / 50000000) + 1;
	cr_assert_leq(sw1 - sw0, 2 * ticks + 4 * (WORKERS + 1),
	              "%ld context switches of the runtime's %d threads in %.3f s (%ld monitor ticks)",
	              sw1 - sw0, nthreads, (double)(t1 - t0) / 1e9, ticks);
}

/* ------------------------------------------- deadlines and cancel order --- */

static void *deadline_region(void *arg)
{
	uint64_t old = weft_deadline_set(weft_now() + 20 * 1000000ull);
	cr_assert_eq(old, 0);
	cr_assert_eq(weft_sleep(3600ull * 1000000000ull), -ETIMEDOUT,
	             "an hour's sleep ends at the region's deadline");
	weft_task *t;
	cr_assert_eq(weft_spawn(&t, sleeper, NULL), 0);
	cr_assert_eq(weft_join(t, NULL), -ETIMEDOUT, "join inside the region times out too");
	weft_deadline_set(old);
	cr_assert_eq(weft_deadline(), 0);
	weft_cancel(t);
	void *r;
	cr_assert_eq(weft_join(t, &r), 0);
	cr_assert_eq((intptr_t)r, -ECANCELED);
	return NULL;
}

Test(sched, deadline_for_a_region)
{
	FOR_EACH_WORKERS(n)
		run_main(n, deadline_region, NULL);
}

static void *cancel_beats_deadline(void *arg)
{
	weft_cancel(weft_self());
	cr_assert_eq(weft_sleep(1), -ECANCELED, "a pending cancel wins over a passed deadline");
	cr_assert_eq(weft_sleep(1000000), -ECANCELED, "and stays");
	return NULL;
}

Test(sched, cancel_wins_over_expired_deadline)
{
	run_main(2, cancel_beats_deadline, NULL);
}

/* ------------------------------------------------------ timer order --- */

static _Atomic int order_next;
static int order_seen[200];

static _Atomic uint64_t order_base, order_margin, order_armed_max;

static void *ordered_sleeper(void *arg)
{
	intptr_t i = (intptr_t)arg;
	/* Wait until every sleeper exists, then sleep until base + margin +
	 * i * 20 us. The deadline is absolute (a region deadline on an
	 * endless sleep), so a sleeper that arms late still gets its place in
	 * the heap; only a timer firing before an earlier one is armed could
	 * invert the order, and the test sees that (order_armed_max) and
	 * retries with a wider margin instead of calling it a failure. */
	for (int k = 0; k < 100000 && !atomic_load(&order_base); k++)
		weft_yield();
	uint64_t target = atomic_load(&order_base) + atomic_load(&order_margin) +
	                  (uint64_t)i * 20000;
	uint64_t now = weft_now(), m = atomic_load(&order_armed_max);
	while (now > m && !atomic_compare_exchange_weak(&order_armed_max, &m, now))
		;
	weft_deadline_set(target);
	int r = weft_sleep(3600ull * 1000000000);
	weft_deadline_set(0);
	order_seen[atomic_fetch_add(&order_next, 1)] = r == -ETIMEDOUT ? (int)i : -1 - (int)i;
	return NULL;
}

static void *timer_order(void *arg)
{
	weft_task *t[200];
	atomic_store(&order_base, 0);
	for (intptr_t i = 199; i >= 0; i--)              /* armed in reverse */
		weft_spawn(&t[i], ordered_sleeper, (void *)i);
	atomic_store(&order_base, weft_now());
	for (int i = 0; i < 200; i++)
		weft_join(t[i], NULL);
	return NULL;
}

Test(sched, timers_fire_in_deadline_order_on_one_worker)
{
	/* 200 ms is plenty on a quiet machine; the wider margins only matter
	 * when arming 200 timers took longer than that (ASan on a loaded box). */
	static const uint64_t margins[] = { 200000000, 2000000000, 10000000000 };
	for (unsigned a = 0; a < 3; a++) {
		atomic_store(&order_next, 0);
		atomic_store(&order_margin, margins[a]);
		atomic_store(&order_armed_max, 0);
		run_main(1, timer_order, NULL);
		if (atomic_load(&order_armed_max) >= atomic_load(&order_base) + margins[a])
			continue;                   /* a timer was due before all were armed */
		for (int i = 0; i < 200; i++)
			cr_assert_eq(order_seen[i], i, "position %d woke sleeper %d", i, order_seen[i]);
		return;
	}
	cr_skip_test("arming 200 timers took longer than 10 s three times: machine too loaded");
}

/* ------------------------------------------------------------ locals --- */

static weft_local_key lkey;
static _Atomic int dtor_calls;

static void local_dtor(void *v)
{
	cr_assert_eq((intptr_t)v % 1000, 7);
	atomic_fetch_add(&dtor_calls, 1);
}

static void *local_user(void *arg)
{
	intptr_t mine = (intptr_t)arg * 1000 + 7;
	cr_assert_null(weft_local_get(lkey));
	cr_assert_eq(weft_local_set(lkey, (void *)mine), 0);
	for (int i = 0; i < 100; i++) {
		weft_yield();                   /* may migrate */
		cr_assert_eq(weft_local_get(lkey), (void *)mine);
	}
	return NULL;
}

static void *locals_main(void *arg)
{
	weft_task *t[50];
	for (intptr_t i = 0; i < 50; i++)
		weft_spawn(&t[i], local_user, (void *)(i + 1));
	for (int i = 0; i < 50; i++)
		weft_join(t[i], NULL);
	cr_assert_eq(weft_local_set(WEFT_LOCAL_KEYS + 3, NULL), -EINVAL);
	return NULL;
}

Test(sched, coroutine_locals)
{
	static bool created;
	if (!created) {
		cr_assert_eq(weft_local_key_create(&lkey, local_dtor), 0);
		created = true;
	}
	cr_assert_eq(weft_local_set(lkey, NULL), -EPERM);
	cr_assert_null(weft_local_get(lkey));
	FOR_EACH_WORKERS(n) {
		atomic_store(&dtor_calls, 0);
		run_main(n, locals_main, NULL);
		cr_assert_eq(atomic_load(&dtor_calls), 50, "every value's destructor ran once");
	}
}

/* ------------------------------------------- in a child process --- */

/* Fork a child running fn with its stderr on a pipe; the parent's end of
 * the pipe goes to *fd. alarm() bounds the child (60 s), so waiting for it
 * is bounded too. */
static pid_t child_with_stderr(void (*fn)(void), int *fd)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		close(p[1]);
		alarm(60);
		fn();
		_exit(99);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

/* Append the child's stderr to buf (NUL-terminated, *n bytes) until it
 * contains want, or with want NULL until end of file; at most timeout_ms.
 * true when that happened. */
static bool read_until(int fd, char *buf, size_t cap, size_t *n, const char *want,
                       int timeout_ms)
{
	uint64_t end = weft_now() + (uint64_t)timeout_ms * 1000000;
	for (;;) {
		buf[*n] = 0;
		if (want && strstr(buf, want))
			return true;
		uint64_t now = weft_now();
		if (now >= end)
			return false;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)((end - now) / 1000000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t k = read(fd, buf + *n, cap - 1 - *n);
		if (k <= 0)
			return want == NULL;            /* end of file (or buf full) */
		*n += (size_t)k;
	}
}

/* A real coroutine's overflow is reported with its id, name and stack
 * size: the runtime registers the stack of each coroutine it switches to
 * with the overflow handler (test_ctx.c checks the handler on a context
 * made by hand). Not instrumented by ASan, whose fake stack would take the
 * frames off the coroutine's stack. */
static volatile uint64_t overflow_limit = UINT64_MAX;  /* never reached */

__attribute__((noinline, no_sanitize("address")))
static uint64_t overflow(uint64_t x)
{
	volatile unsigned char frame[256];
	frame[0] = (unsigned char)x;
	if (x == overflow_limit)
		return 0;
	return overflow(x + 1) + frame[0];    /* not a tail call */
}

static void *overflower(void *arg)
{
	char msg[64];
	int n = snprintf(msg, sizeof msg, "overflower id %llu\n",
	                 (unsigned long long)weft_task_id(weft_self()));
	if (write(2, msg, (size_t)n) != n)
		_exit(97);
	return (void *)(uintptr_t)overflow(1);
}

static void *overflow_main(void *arg)
{
	weft_task *t;
	struct weft_spawn_opts o = { .name = "deep-one", .stack_size = 128 * 1024 };
	if (weft_spawn_opts(&t, overflower, NULL, &o) == 0)
		weft_join(t, NULL);
	return NULL;
}

static void child_overflow(void)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 2 };
	if (weft_rt_create(&rt, &cfg))
		_exit(98);
	weft_rt_run(rt, overflow_main, NULL, NULL);
	_exit(96);                             /* not reached: the overflow aborts */
}

Test(sched, stack_overflow_in_a_coroutine_names_it, .timeout = 120)
{
	char buf[8192];
	size_t n = 0;
	int fd, st;
	pid_t pid = child_with_stderr(child_overflow, &fd);
	read_until(fd, buf, sizeof buf, &n, NULL, 60000);
	close(fd);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	unsigned long long id = 0;
	const char *p = strstr(buf, "overflower id ");
	cr_assert(p && sscanf(p, "overflower id %llu", &id) == 1, "stderr: %s", buf);
	char want[128];
	snprintf(want, sizeof want,
	         "weft: stack overflow in coroutine %llu \"deep-one\" (stack 128 KiB)\n", id);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	cr_assert_not_null(strstr(buf, want), "want \"%s\", stderr: %s", want, buf);
}

/* weft_dump_on_sigquit: SIGQUIT makes the monitor dump every coroutine to
 * stderr (without the handler SIGQUIT would end the child). The child says
 * when its coroutine runs; the parent then sends SIGQUIT and reads until
 * the coroutine's dump line shows, then kills the child. */
static void *quitter(void *arg)
{
	static const char ready[] = "quitter ready\n";
	weft_set_name("quitter");
	if (write(2, ready, sizeof ready - 1) != (ssize_t)(sizeof ready - 1))
		_exit(97);
	weft_sleep(30ull * 1000000000);        /* the parent kills us first */
	return NULL;
}

/* The runtime's threads start with SIGQUIT blocked and the child's main
 * thread takes it, waiting in usleep: TSan delivers a signal to a thread
 * only in or after a call it intercepts, never to one blocked in
 * io_uring_enter, so a SIGQUIT that landed on a sleeping worker would wait
 * there. */
static void child_sigquit(void)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1 };
	sigset_t quit, old;
	sigemptyset(&quit);
	sigaddset(&quit, SIGQUIT);
	if (weft_dump_on_sigquit() != 0)
		_exit(95);
	pthread_sigmask(SIG_BLOCK, &quit, &old);
	if (weft_rt_create(&rt, &cfg) || weft_rt_spawn(rt, NULL, quitter, NULL))
		_exit(98);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	for (int i = 0; i < 600; i++)          /* 60 s at most; killed first */
		usleep(100000);
	_exit(0);
}

Test(sched, sigquit_dumps_every_coroutine, .timeout = 120)
{
	char buf[16384];
	size_t n = 0;
	int fd, st;
	pid_t pid = child_with_stderr(child_sigquit, &fd);
	bool ready = read_until(fd, buf, sizeof buf, &n, "quitter ready\n", 30000);
	if (ready)
		kill(pid, SIGQUIT);
	bool dumped = ready && read_until(fd, buf, sizeof buf, &n, "\"quitter\": ", 30000);
	kill(pid, SIGKILL);
	close(fd);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(ready, "the child never ran its coroutine: status %#x, stderr: %s", st, buf);
	cr_assert(dumped, "no dump after SIGQUIT: status %#x, stderr: %s", st, buf);
	cr_assert_not_null(strstr(buf, "weft: runtime "), "stderr: %s", buf);
}

/* ------------------------------------------------ stats, dump, starve --- */

static void *named_sleeper(void *arg)
{
	weft_set_name("sleepy");
	return (void *)(intptr_t)weft_sleep(3600ull * 1000000000ull);
}

static void *introspect(void *arg)
{
	weft_rt *rt = weft_rt_current();
	weft_task *t[3];
	for (int i = 0; i < 3; i++)
		weft_spawn(&t[i], named_sleeper, NULL);
	weft_sleep(1000000);

	struct weft_stats st;
	struct weft_worker_stats per[4];
	memset(per, 0, sizeof per);
	cr_assert_eq(weft_rt_stats(rt, &st, per, 4), 0);
	cr_assert_eq(st.workers, 2);
	cr_assert_geq(st.total.spawns, 3);
	cr_assert_geq(st.total.switches, 4);
	cr_assert_geq(st.live, 4);
	/* one read of each worker feeds both views, so they agree exactly */
	uint64_t switches = 0, spawns = 0, parks = 0, wakes = 0;
	for (unsigned i = 0; i < st.workers; i++) {
		switches += per[i].switches;
		spawns += per[i].spawns;
		parks += per[i].parks;
		wakes += per[i].wakes;
	}
	cr_assert_eq(switches, st.total.switches);
	cr_assert_eq(spawns, st.total.spawns);
	cr_assert_eq(parks, st.total.parks);
	cr_assert_eq(wakes, st.total.wakes);
	char line[512], want[128];
	cr_assert_gt(weft_stats_format(&st, line, sizeof line), 0);
	snprintf(want, sizeof want, "workers=2 live=%llu switches=%llu spawns=%llu ",
	         (unsigned long long)st.live, (unsigned long long)st.total.switches,
	         (unsigned long long)st.total.spawns);
	cr_assert_not_null(strstr(line, want), "want \"%s\" in %s", want, line);

	char *buf = dump_text();
	cr_assert_not_null(buf);
	cr_assert_not_null(strstr(buf, "\"sleepy\": parked, waiting for sleep"), "%s", buf);
	cr_assert_not_null(strstr(buf, "\"main\": running on worker"), "%s", buf);
	free(buf);
	for (int i = 0; i < 3; i++) {
		weft_cancel(t[i]);
		weft_join(t[i], NULL);
	}
	return NULL;
}

Test(sched, stats_and_dump)
{
	run_main(2, introspect, NULL);
}

static char starve_line[256];
static _Atomic int starve_reports;

static void starve_log(const char *line, void *arg)
{
	snprintf(starve_line, sizeof starve_line, "%s", line);
	atomic_fetch_add(&starve_reports, 1);
}

static void *hog(void *arg)
{
	struct timespec t0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	uint64_t cpu_end = (uint64_t)t0.tv_sec * 1000000000u + (uint64_t)t0.tv_nsec +
	                   300 * 1000000ull;
	weft_set_name("hog");
	/* 300 ms of this thread's CPU time, no blocking point: the monitor
	 * counts CPU time, so a loaded machine cannot make the run look short.
	 * Bounded in wall time too (30 s). */
	struct timespec ts;
	uint64_t wall_end = weft_now() + 30ull * 1000000000;
	volatile uint64_t x = 0;
	for (;;) {
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
		if ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec >= cpu_end ||
		    weft_now() > wall_end)
			break;
		x++;
	}
	return NULL;
}

static void *starve_main(void *arg)
{
	weft_task *t;
	weft_spawn(&t, hog, NULL);
	weft_join(t, NULL);
	return NULL;
}

Test(sched, long_runner_reported_once)
{
	weft_rt *rt = make_rt(2);
	atomic_store(&starve_reports, 0);
	weft_rt_set_starvation(rt, 20 * 1000000ull, starve_log, NULL);
	cr_assert_eq(weft_rt_run(rt, starve_main, NULL, NULL), 0);
	struct weft_stats st;
	weft_rt_stats(rt, &st, NULL, 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	cr_assert_eq(atomic_load(&starve_reports), 1, "reported once, got %d", atomic_load(&starve_reports));
	cr_assert_not_null(strstr(starve_line, "\"hog\""), "%s", starve_line);
	cr_assert_eq(st.total.starved, 1);
}

/* ------------------------------------------------------ parallelism --- */

/*
 * Two coroutines that can only finish together: each raises its flag and
 * spins (no blocking point) until it sees the other's. With 2+ workers both
 * must end up running at once, whatever the timing: the spawns publish work
 * and notify_work must wake the idle worker. Regression: a worker woken to
 * search that took `main` from the injection queue stayed counted as
 * searching while it ran it, so every later notify_work saw a searcher and
 * woke nobody; the pair spun on one worker until the bound. The starvation
 * monitor is off here, so nothing but the scheduler's own wake-ups can help.
 */
struct rendezvous { _Atomic int flag[2]; };

static void *meet(void *arg)
{
	struct rendezvous *r = (struct rendezvous *)((uintptr_t)arg & ~(uintptr_t)1);
	int me = (int)((uintptr_t)arg & 1);
	atomic_store(&r->flag[me], 1);
	uint64_t end = weft_now() + 10ull * 1000000000;   /* bounded: 10 s */
	while (!atomic_load(&r->flag[!me]))
		if (weft_now() > end)
			return (void *)0;
	return (void *)1;
}

static void *meet_main(void *arg)
{
	static struct rendezvous r;     /* 4-aligned: bit 0 of its address is free */
	atomic_store(&r.flag[0], 0);
	atomic_store(&r.flag[1], 0);
	weft_task *a, *b;
	void *ra = NULL, *rb = NULL;
	if (weft_spawn(&a, meet, (void *)((uintptr_t)&r | 0)) ||
	    weft_spawn(&b, meet, (void *)((uintptr_t)&r | 1)))
		return (void *)0;
	weft_join(a, &ra);
	weft_join(b, &rb);
	return (void *)((uintptr_t)ra & (uintptr_t)rb);
}

Test(sched, spawned_work_reaches_idle_workers, .timeout = 120)
{
	static const unsigned counts[] = { 2, 4 };
	for (unsigned i = 0; i < 2; i++) {
		weft_rt *rt = make_rt(counts[i]);
		weft_rt_set_starvation(rt, 0, NULL, NULL);
		void *ret = NULL;
		cr_assert_eq(weft_rt_run(rt, meet_main, NULL, &ret), 0);
		cr_assert_eq(weft_rt_destroy(rt), 0);
		cr_assert_eq((uintptr_t)ret, 1, "%u workers: the two coroutines never ran at once",
		             counts[i]);
	}
}

/* ring_entries = 1 is raised to 2: an op with a deadline is an SQE pair
 * (op + linked timeout) that must fit at once; it used to abort the process
 * in weft__ring_reserve (found by stress/ioflood). */
static void *timed_recv(void *arg)
{
	int *sv = arg;
	char b[4];
	return (void *)(intptr_t)weft_recv_timeout(sv[0], b, sizeof b, 0, 1000000);
}

Test(sched, one_entry_ring_takes_timed_ops)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1, .ring_entries = 1 };
	cr_assert_eq(weft_rt_create(&rt, &cfg), 0);
	void *ret = NULL;
	cr_assert_eq(weft_rt_run(rt, timed_recv, sv, &ret), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	cr_assert_eq((intptr_t)ret, -ETIMEDOUT, "got %s", weft_strerror((int)(intptr_t)ret));
	close(sv[0]);
	close(sv[1]);
}

/* ------------------------------------------------- timer hostage --- */

/*
 * A sleeper's timer on a worker held by a hog must still fire while the hog
 * runs, even when the only other worker is busy (a coroutine that keeps
 * yielding never searches, so it never fires others' timers): the monitor
 * fires overdue timers of a held worker. The hog spins until the sleeper
 * has run (bounded: 20 s), and the test asserts it saw that while spinning.
 * Where the three land depends on stealing; in the layout that matters
 * (sleeper and hog on one worker, yielder on the other) nothing but the
 * monitor can wake the sleeper.
 */
struct hostage_timer { _Atomic int woke, stop; int seen_while_hog; };

static void *ht_yielder(void *arg)
{
	struct hostage_timer *h = arg;
	uint64_t end = weft_now() + 30ull * 1000000000;
	while (!atomic_load(&h->stop) && weft_now() < end)
		weft_yield();
	return NULL;
}

static void *ht_sleeper(void *arg)
{
	struct hostage_timer *h = arg;
	weft_sleep(1000000);            /* 1 ms */
	atomic_store(&h->woke, 1);
	return NULL;
}

static void *ht_hog(void *arg)
{
	struct hostage_timer *h = arg;
	uint64_t end = weft_now() + 20ull * 1000000000;
	while (!atomic_load(&h->woke) && weft_now() < end)
		;
	h->seen_while_hog = atomic_load(&h->woke);
	atomic_store(&h->stop, 1);
	return NULL;
}

static void *ht_main(void *arg)
{
	weft_task *y, *s, *g;
	if (weft_spawn(&y, ht_yielder, arg) || weft_spawn(&s, ht_sleeper, arg) ||
	    weft_spawn(&g, ht_hog, arg))
		return (void *)1;
	weft_join(g, NULL);
	weft_join(s, NULL);
	weft_join(y, NULL);
	return NULL;
}

Test(sched, held_worker_timers_fire_while_others_are_busy, .timeout = 120)
{
	for (int round = 0; round < 5; round++) {
		struct hostage_timer h = { 0 };
		cr_assert_null(run_main(2, ht_main, &h));
		cr_assert_eq(h.seen_while_hog, 1,
		             "round %d: the sleeper did not wake while the hog held a worker (20 s)", round);
	}
}

/* ----------------------------------------------- LIFO slot and its cap --- */

/* A ping-pong pair hands the worker back and forth through the LIFO slot.
 * The cap on LIFO hand-offs in a row exists for the coroutines queued
 * behind the pair; with none queued, the pair keeps its worker: requeueing
 * its next half used to wake the idle worker, which stole it, so hand-offs
 * crossed workers through ring wakes. Both halves of the rule below. */
#define PAIR_ROUNDS 10000

struct pair {
	weft_chan *ping, *pong;
	bool with_yielder;
	_Atomic bool stop;
	_Atomic unsigned long yields;
	int failed_line;                /* first failed PAIR_CHECK, 0 if none */
};

/* No Criterion assert on a coroutine stack: note the line, assert later. */
#define PAIR_CHECK(p, c) do { if (!(c) && !(p)->failed_line) (p)->failed_line = __LINE__; } while (0)

static void *pair_echoer(void *arg)
{
	struct pair *p = arg;
	int64_t x;
	while (weft_chan_recv(p->ping, &x) == 0) {
		x++;
		if (weft_chan_send(p->pong, &x) < 0)
			break;
	}
	return NULL;
}

static void *pair_yielder(void *arg)
{
	struct pair *p = arg;
	for (unsigned long i = 0; i < 100ul * PAIR_ROUNDS && !atomic_load(&p->stop); i++) {
		atomic_fetch_add(&p->yields, 1);
		weft_yield();
	}
	return NULL;
}

static void *pair_main(void *arg)
{
	struct pair *p = arg;
	weft_task *echo, *yielder = NULL;
	PAIR_CHECK(p, weft_chan_create(&p->ping, sizeof(int64_t), 0) == 0);
	PAIR_CHECK(p, weft_chan_create(&p->pong, sizeof(int64_t), 0) == 0);
	PAIR_CHECK(p, weft_spawn(&echo, pair_echoer, p) == 0);
	if (p->with_yielder)
		PAIR_CHECK(p, weft_spawn(&yielder, pair_yielder, p) == 0);
	int64_t v = 0;
	for (int i = 0; i < PAIR_ROUNDS; i++) {
		PAIR_CHECK(p, weft_chan_send(p->ping, &v) == 0);
		PAIR_CHECK(p, weft_chan_recv(p->pong, &v) == 0);
	}
	PAIR_CHECK(p, v == PAIR_ROUNDS);
	atomic_store(&p->stop, true);
	weft_chan_close(p->ping);
	PAIR_CHECK(p, weft_join(echo, NULL) == 0);
	if (yielder)
		PAIR_CHECK(p, weft_join(yielder, NULL) == 0);
	weft_chan_destroy(p->ping);
	weft_chan_destroy(p->pong);
	return NULL;
}

/* Nothing else runnable: no worker but the pair's takes part. The runtime
 * steals main's continuation when it spawns the echoer (child first), and
 * may steal the pair's next half in the rare moment it sits in the run
 * queue when the monitor looks for stranded work; the pair otherwise meets
 * on one worker for good. The bound is a share of the hand-offs, not a
 * count that a longer (slower, sanitized) run could exceed: the regression
 * moved one hand-off in three (thousands of steals), while the monitor's
 * looks are a few per run. */
Test(sched, lifo_pair_keeps_its_worker_when_nothing_else_waits)
{
	weft_rt *rt = make_rt(2);
	struct pair p = { .with_yielder = false };
	cr_assert_eq(weft_rt_run(rt, pair_main, &p, NULL), 0);
	cr_assert_eq(p.failed_line, 0, "check at line %d failed", p.failed_line);
	struct weft_stats st;
	cr_assert_eq(weft_rt_stats(rt, &st, NULL, 0), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	/* 2 hand-offs per round trip; at most 1 in 200 crossed workers */
	cr_assert_leq(st.total.steals, 2 * PAIR_ROUNDS / 200,
	              "%llu steals in %d round trips: the pair moved between workers",
	              (unsigned long long)st.total.steals, PAIR_ROUNDS);
}

/* Something queued behind the pair: the cap gives it a turn every
 * WEFT__LIFO_MAX + 1 hand-offs (1 worker, so nothing else could run it). */
Test(sched, lifo_pair_does_not_starve_a_queued_coroutine)
{
	weft_rt *rt = make_rt(1);
	struct pair p = { .with_yielder = true };
	cr_assert_eq(weft_rt_run(rt, pair_main, &p, NULL), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	cr_assert_eq(p.failed_line, 0, "check at line %d failed", p.failed_line);
	/* 2 hand-offs per round trip, a turn for the yielder every 4 */
	cr_assert_geq(atomic_load(&p.yields), PAIR_ROUNDS / 4,
	              "the yielder ran %lu times in %d round trips",
	              atomic_load(&p.yields), PAIR_ROUNDS);
}

/* ------------------------------------------------- FIFO past overflow --- */

/* More yielders than a run queue holds (256; 4 with small_queues), on one
 * worker: the overflow (a solo worker's spill, growing from one run queue's
 * worth) must keep FIFO order, so once every yielder is past the gate each
 * runs exactly once per round, in the same order every round: the log
 * repeats with a period of FIFO_TASKS. A lost, doubled or reordered task
 * breaks the period. */
#define FIFO_TASKS  1000
#define FIFO_ROUNDS 20

static _Atomic bool fifo_go;
static _Atomic unsigned fifo_n;
static uint16_t fifo_log[FIFO_TASKS * FIFO_ROUNDS];

static void *fifo_yielder(void *arg)
{
	uint16_t me = (uint16_t)(uintptr_t)arg;
	for (unsigned spin = 0; !atomic_load(&fifo_go) && spin < 100000; spin++)
		weft_yield();
	for (int r = 0; r < FIFO_ROUNDS; r++) {
		unsigned k = atomic_fetch_add(&fifo_n, 1);
		if (k < FIFO_TASKS * FIFO_ROUNDS)
			fifo_log[k] = me;
		weft_yield();
	}
	return NULL;
}

static void *fifo_main(void *arg)
{
	(void)arg;
	static weft_task *t[FIFO_TASKS];
	for (uintptr_t i = 0; i < FIFO_TASKS; i++)
		if (weft_spawn(&t[i], fifo_yielder, (void *)i))
			return (void *)1;
	atomic_store(&fifo_go, true);
	for (int i = 0; i < FIFO_TASKS; i++)
		weft_join(t[i], NULL);
	return NULL;
}

Test(sched, yield_keeps_fifo_order_past_queue_overflow_on_one_worker)
{
	atomic_store(&fifo_go, false);
	atomic_store(&fifo_n, 0);
	cr_assert_null(run_main(1, fifo_main, NULL));
	cr_assert_eq(atomic_load(&fifo_n), FIFO_TASKS * FIFO_ROUNDS);
	static unsigned seen[FIFO_TASKS];
	memset(seen, 0, sizeof seen);
	for (unsigned k = 0; k < FIFO_TASKS * FIFO_ROUNDS; k++) {
		seen[fifo_log[k]]++;
		if (k >= FIFO_TASKS)
			cr_assert_eq(fifo_log[k], fifo_log[k - FIFO_TASKS],
			             "turn %u ran yielder %u, one round earlier yielder %u ran there",
			             k, fifo_log[k], fifo_log[k - FIFO_TASKS]);
	}
	for (unsigned i = 0; i < FIFO_TASKS; i++)
		cr_assert_eq(seen[i], FIFO_ROUNDS, "yielder %u ran %u rounds", i, seen[i]);
}

/* A burst of runnable coroutines bigger than the spill keeps once empty
 * (4,096 slots), twice in one runtime: the spill grows, is given back when
 * the burst drains, and grows again; every turn is still taken. */
#define BURST_TASKS  10000
#define BURST_ROUNDS 3

static _Atomic unsigned burst_turns;

static void *burst_yielder(void *arg)
{
	(void)arg;
	for (int r = 0; r < BURST_ROUNDS; r++) {
		atomic_fetch_add(&burst_turns, 1);
		weft_yield();
	}
	return NULL;
}

static void *burst_main(void *arg)
{
	(void)arg;
	static weft_task *t[BURST_TASKS];
	for (int burst = 0; burst < 2; burst++) {
		for (int i = 0; i < BURST_TASKS; i++)
			if (weft_spawn(&t[i], burst_yielder, NULL))
				return (void *)1;
		for (int i = 0; i < BURST_TASKS; i++)
			weft_join(t[i], NULL);
	}
	return NULL;
}

Test(sched, runnable_bursts_grow_and_release_the_overflow_on_one_worker, .timeout = 120)
{
	atomic_store(&burst_turns, 0);
	cr_assert_null(run_main(1, burst_main, NULL));
	cr_assert_eq(atomic_load(&burst_turns), 2u * BURST_TASKS * BURST_ROUNDS);
}

/* ----------------------------------------------- ids across runtimes --- */

static void *own_id(void *arg)
{
	return (void *)(uintptr_t)weft_task_id(weft_self());
}

Test(sched, task_ids_unique_across_runtimes)
{
	/* Two runtimes alive at once, each spawning from outside and inside:
	 * no id seen twice (they used to count from 1 each). */
	weft_rt *a = make_rt(1), *b = make_rt(2);
	uint64_t ids[8];
	for (int i = 0; i < 8; i++) {
		void *r;
		cr_assert_eq(weft_rt_run(i & 1 ? b : a, own_id, NULL, &r), 0);
		ids[i] = (uint64_t)(uintptr_t)r;
		cr_assert_neq(ids[i], 0);
		for (int k = 0; k < i; k++)
			cr_assert_neq(ids[k], ids[i], "id %llu seen twice", (unsigned long long)ids[i]);
	}
	cr_assert_eq(weft_rt_destroy(a), 0);
	cr_assert_eq(weft_rt_destroy(b), 0);
}

/* --------------------------------------------- fork from a coroutine --- */

static void *forty_two(void *arg) { return (void *)42; }

/* The child of a fork made by a coroutine: a runtime of its own works
 * there (its thread was a worker's in the parent). Exit status 0 when all
 * went well, else the failing step. */
static int child_runs_a_runtime(void)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1 };
	if (weft_rt_current() || weft_self())
		return 2;                    /* still taken for a coroutine */
	if (weft_rt_create(&rt, &cfg) != 0)
		return 3;
	void *r = NULL;
	if (weft_rt_run(rt, forty_two, NULL, &r) != 0 || r != (void *)42)
		return 4;
	weft_local_key key;
	if (weft_local_key_create(&key, NULL) != 0)   /* its lock is usable */
		return 5;
	return weft_rt_destroy(rt) ? 6 : 0;
}

static void *fork_from_coroutine(void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(10);                   /* a hang fails the test, not the suite */
		_exit(child_runs_a_runtime());
	}
	int st = -1;
	for (int i = 0; i < 15000 && pid > 0; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		weft_sleep(1000000);
	}
	return (void *)(intptr_t)st;
}

Test(sched, fork_from_a_coroutine_leaves_a_usable_child)
{
	weft_rt *rt = make_rt(2);
	void *st;
	cr_assert_eq(weft_rt_run(rt, fork_from_coroutine, NULL, &st), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	int s = (int)(intptr_t)st;
	cr_assert(WIFEXITED(s) && WEXITSTATUS(s) == 0, "child: status %#x (exit %d)", s,
	          WIFEXITED(s) ? WEXITSTATUS(s) : -1);
}
