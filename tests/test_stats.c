/*
 * test_stats.c — what weft_rt_stats and weft_dump report beyond the
 * scheduler's own counters: the ring's I/O counters (per worker, in the
 * struct and in the text form) and every coroutine's stack high-water mark.
 *
 * Nothing here depends on timing: the ring checks drive a ring by hand, and
 * the dump checks run on one worker, where weft_spawn runs the child until it
 * parks before the spawner resumes; they still re-dump (bounded) until the
 * expected coroutines show as parked.
 */
#include "io/ring.h"
#include "harness.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(WEFT_TSAN)
/* The fork tests start threads in the child of a multi-threaded parent,
 * which TSan refuses by default (a lock another thread held at the fork
 * stays held in the child: the very hazard those tests check weft resets).
 * An explicit die_after_fork in TSAN_OPTIONS still overrides this. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif

/* ------------------------------------------------------ ring counters --- */

struct nop {
	struct weft__ring_op op;
	int *done;
};

static void nop_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	(void)res;
	(void)flags;
	struct nop *n = (struct nop *)op;
	(*n->done)++;
}

static void prep_nop(struct weft__ring *r, struct nop *n, int *done)
{
	n->op.cb = nop_cb;
	n->done = done;
	struct io_uring_sqe *sqe = weft__ring_sqe(r);
	io_uring_prep_nop(sqe);
	weft__ring_set_op(sqe, &n->op);
}

static void ring_up(struct weft__ring *r, unsigned entries)
{
	char why[256];
	int ret = weft__ring_init(r, entries, why, sizeof why);
	if (ret == -EPERM || ret == -ENOSYS)
		cr_skip_test("no io_uring here: %s", why);
	cr_assert_eq(ret, 0, "weft__ring_init: %d (%s)", ret, why);
}

static void drain(struct weft__ring *r, int *done, int want)
{
	for (int i = 0; i < 10000 && *done < want; i++)
		weft__ring_wait(r, 1000000000);   /* ends at the first CQE */
	cr_assert_eq(*done, want, "%d of %d callbacks ran", *done, want);
}

Test(stats, ring_counts_sqes_cqes_enters_and_sq_full)
{
	struct weft__ring r;
	struct weft__ring_stats_sample s0, s1, s2;
	ring_up(&r, 4);
	weft__ring_stats_read(&r, &s0);
	/* set-up submitted the eventfd poll: one SQE, one enter */
	cr_assert_eq(s0.sqes, 1);
	cr_assert_eq(s0.enters, 1);
	cr_assert_eq(s0.cqes, 0);
	cr_assert_eq(s0.sq_full, 0);

	struct nop ops[5];
	int done = 0;
	for (int i = 0; i < 4; i++)
		prep_nop(&r, &ops[i], &done);
	weft__ring_stats_read(&r, &s1);
	cr_assert_eq(s1.sq_full, 0, "4 SQEs fit a 4-entry SQ");
	cr_assert_eq(s1.sqes, 1, "nothing submitted yet");
	prep_nop(&r, &ops[4], &done);          /* the fifth: SQ full, submit first */
	weft__ring_stats_read(&r, &s2);
	cr_assert_eq(s2.sq_full, 1);
	cr_assert_eq(s2.sqes, 5, "the four queued NOPs went in to make room");
	cr_assert_eq(s2.enters, 2);

	drain(&r, &done, 5);
	weft__ring_stats_read(&r, &s2);
	cr_assert_eq(s2.sqes, 6);
	cr_assert_geq(s2.cqes, 5, "five NOP completions reaped (wakes would add)");
	cr_assert_geq(s2.enters, 3);
	cr_assert_eq(s2.cq_overflow, 0, "5 CQEs fit an 8-entry CQ");
	weft__ring_exit(&r);
}

Test(stats, ring_counts_cq_overflow)
{
	struct weft__ring r;
	struct weft__ring_stats_sample s;
	ring_up(&r, 4);                        /* SQ 4, CQ 8 */
	enum { N = 64 };
	struct nop ops[N];
	int done = 0;
	/* Submitted four at a time when the SQ is full, never reaped in
	 * between: NOPs complete at submit, so the CQ overflows. */
	for (int i = 0; i < N; i++)
		prep_nop(&r, &ops[i], &done);
	cr_assert(*r.uring.sq.kflags & IORING_SQ_CQ_OVERFLOW,
		  "the test did not reach CQ overflow (kflags %#x)", *r.uring.sq.kflags);
	weft__ring_stats_read(&r, &s);
	cr_assert_eq(s.cq_overflow, 0, "counted when a reap sees it");
	cr_assert_eq(s.sq_full, N / 4 - 1);
	drain(&r, &done, N);
	weft__ring_stats_read(&r, &s);
	cr_assert_geq(s.cq_overflow, 1);
	cr_assert_geq(s.cqes, N);
	cr_assert_eq(s.sqes, N + 1);
	weft__ring_exit(&r);
}

/* ------------------------------------------- runtime stats: I/O part --- */

enum { PIPE_ROUNDS = 20 };

static void *pipe_io(void *arg)
{
	(void)arg;
	int p[2];
	CHECK(pipe(p) == 0);
	for (int i = 0; i < PIPE_ROUNDS; i++) {
		char c = (char)i, d = 0;
		CHECK(weft_write(p[1], &c, 1, -1) == 1);
		CHECK(weft_read(p[0], &d, 1, -1) == 1 && d == c);
	}
	close(p[0]);
	close(p[1]);

	struct weft_stats st;
	struct weft_worker_stats per[8];
	CHECK(weft_rt_stats(weft_rt_current(), &st, per, 8) == 0);
	CHECK(st.workers == 2);
	/* one SQE and one CQE per op, plus weft's own (eventfd poll, wakes) */
	CHECK(st.total.io_sqes >= 2 * PIPE_ROUNDS);
	CHECK(st.total.io_cqes >= 2 * PIPE_ROUNDS);
	CHECK(st.total.io_enters >= 1);
	/* (Not io_completions: the scheduler adds a reap's callbacks after they
	 * ran, so the woken reader, on the other worker, may look first. The
	 * ring counts each CQE before running its callback.) */
	uint64_t sq = 0, cq = 0, en = 0, full = 0, ovf = 0, resc = 0;
	for (unsigned i = 0; i < st.workers; i++) {
		sq += per[i].io_sqes;
		cq += per[i].io_cqes;
		en += per[i].io_enters;
		full += per[i].io_sq_full;
		ovf += per[i].io_cq_overflow;
		resc += per[i].io_rescued;
	}
	/* one read of each worker feeds both views, so they agree exactly */
	CHECK(sq == st.total.io_sqes && cq == st.total.io_cqes && en == st.total.io_enters);
	CHECK(full == st.total.io_sq_full && ovf == st.total.io_cq_overflow);
	CHECK(resc == st.total.io_rescued && st.total.io_rescued <= st.total.io_cqes);

	char line[512], want[160];
	CHECK(weft_stats_format(&st, line, sizeof line) > 0);
	snprintf(want, sizeof want,
	         "sqes=%llu cqes=%llu enters=%llu sqfull=%llu cqoverflow=%llu rescued=%llu",
	         (unsigned long long)st.total.io_sqes, (unsigned long long)st.total.io_cqes,
	         (unsigned long long)st.total.io_enters, (unsigned long long)st.total.io_sq_full,
	         (unsigned long long)st.total.io_cq_overflow, (unsigned long long)st.total.io_rescued);
	CHECK(strstr(line, want) != NULL);
	return NULL;
}

Test(stats, rt_stats_io_counters_per_worker_and_text)
{
	run_with(2, 0, pipe_io, NULL);
	cr_assert_eq(weft_stats_format(NULL, NULL, 0), -EINVAL);
}

/* ------------------------------------------------ stack high-water --- */

#define DEEP_BYTES (100u * 1024)

/* Write DEEP_BYTES of non-zero bytes in a frame of this function. Not
 * instrumented by ASan: under detect_stack_use_after_return its frame would
 * move to a heap "fake stack" and never reach the coroutine's stack. */
__attribute__((noinline, no_sanitize("address")))
static int use_stack(void)
{
	volatile char buf[DEEP_BYTES];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (char)(i | 1);
	return buf[0] + (buf[sizeof buf / 2] & 1);   /* 2 */
}

static void *deep(void *arg)
{
	(void)arg;
	CHECK(use_stack() != 0);
	weft_sleep(60ull * 1000000000);        /* parks until cancelled */
	return NULL;
}

static void *shallow(void *arg)
{
	(void)arg;
	weft_sleep(60ull * 1000000000);
	return NULL;
}

static void *deep_returns(void *arg)
{
	(void)arg;
	CHECK(use_stack() != 0);
	return NULL;
}

/* The dump line of the coroutine named `name`, copied into out. */
static bool dump_line(const char *name, char *out, size_t len)
{
	char *buf = dump_text();
	if (!buf)
		return false;
	char key[48];
	snprintf(key, sizeof key, "\"%s\":", name);
	char *p = strstr(buf, key);
	bool ok = p != NULL;
	if (ok) {
		while (p > buf && p[-1] != '\n')
			p--;
		size_t n = strcspn(p, "\n");
		snprintf(out, len, "%.*s", (int)n, p);
	}
	free(buf);
	return ok;
}

/* The dump line of a coroutine once it shows as parked (bounded retries). */
static bool parked_line(const char *name, char *out, size_t len)
{
	for (int i = 0; i < 1000; i++) {
		if (dump_line(name, out, len) && strstr(out, ": parked"))
			return true;
		weft_yield();
	}
	return false;
}

static long high_water_kib(const char *line)
{
	const char *p = strstr(line, "high-water ");
	long kib = -1;
	if (p && sscanf(p, "high-water %ld KiB", &kib) != 1)
		kib = -1;
	return kib;
}

static _Atomic long seen_deep, seen_shallow, seen_main, seen_reused;
static char reused_line[512];

static void *hw_main(void *arg)
{
	(void)arg;
	weft_set_name("hw-main");
	weft_task *d, *s;
	CHECK(weft_spawn_opts(&d, deep, NULL, &(struct weft_spawn_opts){ .name = "deep" }) == 0);
	CHECK(weft_spawn_opts(&s, shallow, NULL, &(struct weft_spawn_opts){ .name = "shallow" }) == 0);

	char line[512];
	CHECK(parked_line("deep", line, sizeof line));
	CHECK(strstr(line, "(own)") != NULL);       /* fresh stacks: their own marks */
	atomic_store(&seen_deep, high_water_kib(line));
	CHECK(parked_line("shallow", line, sizeof line));
	CHECK(strstr(line, "(own)") != NULL);
	atomic_store(&seen_shallow, high_water_kib(line));
	/* the running coroutine gets a mark too */
	CHECK(dump_line("hw-main", line, sizeof line));
	CHECK(strstr(line, "running on worker") != NULL);
	atomic_store(&seen_main, high_water_kib(line));

	weft_cancel(d);
	weft_cancel(s);
	CHECK(weft_join(d, NULL) == 0);
	CHECK(weft_join(s, NULL) == 0);

	/* One worker, LIFO stack cache: a coroutine that ran deep and returned
	 * hands its stack to the next spawn, whose mark is then shared. */
	weft_task *r;
	CHECK(weft_spawn(&r, deep_returns, NULL) == 0);
	CHECK(weft_join(r, NULL) == 0);
	CHECK(weft_spawn_opts(&s, shallow, NULL, &(struct weft_spawn_opts){ .name = "reuser" }) == 0);
	CHECK(parked_line("reuser", line, sizeof line));
	snprintf(reused_line, sizeof reused_line, "%s", line);
	atomic_store(&seen_reused, high_water_kib(line));
	weft_cancel(s);
	CHECK(weft_join(s, NULL) == 0);
	return NULL;
}

Test(stats, dump_shows_stack_high_water)
{
	run_with(1, 256 * 1024, hw_main, NULL);
	long d = atomic_load(&seen_deep), s = atomic_load(&seen_shallow);
	cr_assert_geq(d, (long)(DEEP_BYTES / 1024), "deep coroutine: high-water %ld KiB", d);
	cr_assert_gt(s, 0, "shallow coroutine: no high-water mark");
	cr_assert_lt(s, (long)(DEEP_BYTES / 1024), "shallow coroutine: high-water %ld KiB", s);
	cr_assert_gt(atomic_load(&seen_main), 0, "running coroutine: no high-water mark");
	cr_assert_geq(atomic_load(&seen_reused), (long)(DEEP_BYTES / 1024), "%s", reused_line);
	/* the stack came back through the cache: its users are counted */
	const char *u = strstr(reused_line, "(deepest of ");
	unsigned users = 0;
	cr_assert(u && sscanf(u, "(deepest of %u users", &users) == 1 && users >= 2, "%s",
	          reused_line);
}

/* Off-size stacks (their own mapping) are measured by pages. */
static void *offsize_main(void *arg)
{
	(void)arg;
	weft_task *d;
	CHECK(weft_spawn_opts(&d, deep, NULL,
	                      &(struct weft_spawn_opts){ .name = "deep", .stack_size = 512 * 1024 })
	      == 0);
	char line[512];
	CHECK(parked_line("deep", line, sizeof line));
	CHECK(strstr(line, "(own)") != NULL);
	CHECK(strstr(line, "/512 KiB in use") != NULL);
	atomic_store(&seen_deep, high_water_kib(line));
	weft_cancel(d);
	CHECK(weft_join(d, NULL) == 0);
	return NULL;
}

Test(stats, dump_high_water_of_offsize_stack)
{
	atomic_store(&seen_deep, -1);
	run_with(1, 0, offsize_main, NULL);
	long d = atomic_load(&seen_deep);
	cr_assert_geq(d, (long)(DEEP_BYTES / 1024), "high-water %ld KiB", d);
	cr_assert_lt(d, 512, "high-water %ld KiB: the whole stack?", d);
}

/* weft_dump while other workers run and park coroutines: every line has a
 * mark, and (under TSan/ASan) the sampling reads stay clean. */
static _Atomic int spin_stop;

static void *spinner(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000000 && !atomic_load(&spin_stop); i++) {
		if (i % 64 == 0)
			weft_sleep(1000);              /* parks now and then */
		else
			weft_yield();
	}
	return NULL;
}

static void *dump_busy_main(void *arg)
{
	(void)arg;
	weft_task *t[3];
	for (int i = 0; i < 3; i++)
		CHECK(weft_spawn_opts(&t[i], spinner, NULL,
		                      &(struct weft_spawn_opts){ .name = "spinner" }) == 0);
	char line[512];
	for (int i = 0; i < 50; i++) {
		CHECK(dump_line("spinner", line, sizeof line));
		CHECK(high_water_kib(line) > 0);
		weft_yield();
	}
	atomic_store(&spin_stop, 1);
	for (int i = 0; i < 3; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(stats, dump_while_coroutines_run)
{
	atomic_store(&spin_stop, 0);
	run_with(4, 0, dump_busy_main, NULL);
}

/* ------------------------------------------------------- dump and fork --- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}


/* How many "weft: runtime" lines weft_dump prints now; -1 on error. */
static int dumped_runtimes(void)
{
	char *buf = dump_text();
	if (!buf)
		return -1;
	int n = 0;
	for (const char *p = buf; (p = strstr(p, "weft: runtime ")); p++)
		n++;
	free(buf);
	return n;
}

/* A FILE whose writes wait (at most 5 s) until released: a weft_dump into it
 * stays inside weft_dump, holding its list of runtimes, while we fork. */
static _Atomic int dump_inside, dump_release;

static ssize_t held_write(void *cookie, const char *buf, size_t n)
{
	(void)cookie;
	(void)buf;
	atomic_store(&dump_inside, 1);
	for (int i = 0; i < 5000 && !atomic_load(&dump_release); i++)
		sleep_ms(1);
	return (ssize_t)n;
}

static void *held_dumper(void *arg)
{
	(void)arg;
	FILE *f = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = held_write });
	if (!f)
		return NULL;
	setvbuf(f, NULL, _IONBF, 0);     /* every line reaches held_write at once */
	weft_dump(f);
	fclose(f);
	return NULL;
}

/* In the child: the parent's runtime is not listed (it has no thread here),
 * and the child can create, dump and destroy a runtime of its own. */
static int child_dumps_its_own(void)
{
	if (dumped_runtimes() != 0)
		return 2;
	weft_rt *rt;
	if (weft_rt_create(&rt, &(struct weft_config){ .workers = 1 }) != 0)
		return 3;
	int n = dumped_runtimes();
	if (weft_rt_destroy(rt) != 0)
		return 4;
	if (n != 1)
		return 5;
	return dumped_runtimes() == 0 ? 0 : 6;
}

Test(stats, fork_child_lists_only_its_own_runtimes)
{
	weft_rt *rt;
	cr_assert_eq(weft_rt_create(&rt, &(struct weft_config){ .workers = 1 }), 0);
	cr_assert_eq(dumped_runtimes(), 1);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, held_dumper, NULL), 0);
	for (int i = 0; i < 5000 && !atomic_load(&dump_inside); i++)
		sleep_ms(1);
	/* The fork copies the list's lock held by held_dumper. */
	int st = atomic_load(&dump_inside) ? in_child(child_dumps_its_own, 10) : -2;
	atomic_store(&dump_release, 1);
	pthread_join(th, NULL);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

/* ------------------------------------------------- names in the dump --- */

/* A coroutine's name goes into weft_dump escaped: a newline in it cannot
 * start a line of its own (a forged "weft: runtime" or "coroutine" line),
 * nor can an escape sequence reach a terminal, nor a quote end the name. */
static const char evil_name[] = "a\nweft: runtime 0: x\x1b[2J\\\"z";
static char evil_dump[8192];

static void *named_sleeper(void *arg)
{
	(void)arg;
	weft_set_name(evil_name);
	weft_sleep(60ull * 1000000000);        /* parks until cancelled */
	return NULL;
}

static void *escape_main(void *arg)
{
	(void)arg;
	weft_task *t;
	CHECK(weft_spawn(&t, named_sleeper, NULL) == 0);
	char *buf = dump_text();
	CHECK(buf != NULL);
	if (buf) {
		snprintf(evil_dump, sizeof evil_dump, "%s", buf);
		free(buf);
	}
	weft_cancel(t);
	CHECK(weft_join(t, NULL) == 0);
	return NULL;
}

Test(stats, dump_escapes_names)
{
	cr_assert_lt(strlen(evil_name), 32, "fits a name");
	run_with(1, 0, escape_main, NULL);
	/* every line is a runtime's header or a coroutine's */
	int runtimes = 0;
	for (const char *p = evil_dump; *p; p = strchr(p, '\n') + 1) {
		if (!strncmp(p, "weft: runtime ", 14))
			runtimes++;
		else
			cr_assert(!strncmp(p, "  coroutine ", 12), "stray line: %.60s", p);
		cr_assert(strchr(p, '\n'), "unterminated line: %.60s", p);
	}
	cr_assert_eq(runtimes, 1, "dump:\n%s", evil_dump);
	cr_assert_null(strchr(evil_dump, '\x1b'), "dump:\n%s", evil_dump);
	cr_assert(strstr(evil_dump, "\"a\\nweft: runtime 0: x\\x1b[2J\\\\\\\"z\": parked"),
	          "dump:\n%s", evil_dump);
}

/* ----------------------------------------------------- SIGQUIT trigger --- */

/* weft_dump_on_sigquit's handler asks a runtime's monitor for a dump; with
 * no runtime alive no monitor would ever see the request, and the SIGQUIT
 * must not vanish: it gets the default action (the process ends with
 * SIGQUIT). Children, with cores off; stderr goes to a file the child
 * reads back to see the dump. */
static char quit_err_path[64];

/* Wait (at most 5 s) until the child's stderr file holds what. */
static bool stderr_has(const char *what)
{
	for (int i = 0; i < 5000; i++) {
		char buf[8192];
		FILE *f = fopen(quit_err_path, "r");
		size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = 0;
		if (strstr(buf, what))
			return true;
		sleep_ms(1);
	}
	return false;
}

static int quit_setup(void)
{
	struct rlimit no_core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &no_core);
	int fd = open(quit_err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, 2) < 0)
		return -1;
	close(fd);
	return weft_dump_on_sigquit();
}

static int quit_without_runtime(void)
{
	if (quit_setup() != 0)
		return 2;
	raise(SIGQUIT);       /* the handler runs before raise returns */
	return 0;             /* survived: swallowed */
}

static int quit_with_then_without_runtime(void)
{
	if (quit_setup() != 0)
		return 2;
	weft_rt *rt;
	if (weft_rt_create(&rt, &(struct weft_config){ .workers = 1 }) != 0)
		return 3;
	raise(SIGQUIT);       /* a dump request: the monitor prints it */
	if (!stderr_has("weft: runtime "))
		return 4;
	if (weft_rt_destroy(rt) != 0)
		return 5;
	raise(SIGQUIT);       /* no runtime now: the default action */
	return 0;
}

static void quit_check(int (*fn)(void))
{
	snprintf(quit_err_path, sizeof quit_err_path, "/tmp/weft-quit-%d", (int)getpid());
	int st = in_child(fn, 10);
	unlink(quit_err_path);
	cr_assert(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGQUIT,
	          "child status %#x (exited %d)", st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

Test(stats, sigquit_without_a_runtime_has_the_default_action)
{
	quit_check(quit_without_runtime);
}

Test(stats, sigquit_dumps_while_a_runtime_lives_then_has_the_default_action)
{
	quit_check(quit_with_then_without_runtime);
}

/* A SIGQUIT just before the last runtime is destroyed: its monitor may not
 * have taken the request yet, and stops; the dump must come all the same. */
static int quit_then_destroy(void)
{
	if (quit_setup() != 0)
		return 2;
	weft_rt *rt;
	if (weft_rt_create(&rt, &(struct weft_config){ .workers = 1 }) != 0)
		return 3;
	raise(SIGQUIT);
	if (weft_rt_destroy(rt) != 0)
		return 4;
	/* Answered by the runtime's monitor or by weft_rt_destroy itself; the
	 * monitor's answer says "no runtime alive" when the destroy unlisted
	 * the runtime between the monitor's taking the request and its dump. */
	return stderr_has("weft: runtime ") || stderr_has("weft: no runtime alive\n") ? 0 : 5;
}

Test(stats, sigquit_just_before_the_last_destroy_still_dumps)
{
	snprintf(quit_err_path, sizeof quit_err_path, "/tmp/weft-quit-%d", (int)getpid());
	int st = in_child(quit_then_destroy, 10);
	unlink(quit_err_path);
	cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
