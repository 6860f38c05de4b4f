/*
 * Generators: a million values out, values in (send), return value, close
 * of a suspended body (it unwinds), close of a body never started, misuse
 * errors, nesting, use from a plain thread as well as from coroutines
 * on several workers, the floating-point environment the body shares
 * with its caller, a fork while another thread uses generators, a yield
 * from anywhere but the body (refused), and a body's stack overflow (the
 * process ends with a message naming the generator, in a child).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#include "harness.h"
#include "util.h"

static void run(unsigned workers, weft_fn fn, void *arg)
{
	run_with(workers, 0, fn, arg);
}

/* ----------------------------------------------------------- counting --- */

static void *count_body(weft_gen *g, void *arg, void *in)
{
	uintptr_t n = (uintptr_t)arg;
	for (uintptr_t i = 0; i < n; i++)
		if (weft_gen_yield(g, (void *)i, NULL) != 0)
			return (void *)UINTPTR_MAX;
	return (void *)(uintptr_t)0xd0e;
}

static void *million(void *arg)
{
	weft_gen *g;
	CHECK(weft_gen_create(&g, count_body, (void *)(uintptr_t)1000000, 0) == 0);
	uintptr_t expect = 0;
	uint64_t sum = 0;
	void *out;
	int r;
	while ((r = weft_gen_resume(g, NULL, &out)) == WEFT_GEN_YIELDED) {
		if ((uintptr_t)out != expect)
			CHECK((uintptr_t)out == expect);
		sum += (uintptr_t)out;
		expect++;
	}
	CHECK(r == WEFT_GEN_DONE);
	CHECK(out == (void *)(uintptr_t)0xd0e);
	CHECK(expect == 1000000);
	CHECK(sum == 999999ull * 1000000 / 2);
	CHECK(weft_gen_done(g));
	CHECK(weft_gen_resume(g, NULL, &out) == -EPIPE);
	CHECK(weft_gen_close(g) == 0);
	return NULL;
}

Test(gen, million_values_in_a_coroutine)
{
	run(1, million, NULL);
}

Test(gen, million_values_on_a_plain_thread)
{
	atomic_store(&failures, 0);
	million(NULL);
	cr_assert_eq(atomic_load(&failures), 0, "first failure at line %d",
	             atomic_load(&first_fail_line));
}

/* --------------------------------------------------------- two-way send -- */

/* A running sum: each resume sends a number in, each yield hands the sum out. */
static void *acc_body(weft_gen *g, void *arg, void *in)
{
	intptr_t total = (intptr_t)in;
	for (;;) {
		void *next;
		if (weft_gen_yield(g, (void *)total, &next) != 0)
			break;
		if (next == NULL)
			return (void *)(-total);
		total += (intptr_t)next;
	}
	return NULL;
}

static void *send_main(void *arg)
{
	weft_gen *g;
	CHECK(weft_gen_create(&g, acc_body, NULL, 16 * 1024) == 0);
	void *out;
	CHECK(weft_gen_resume(g, (void *)5, &out) == WEFT_GEN_YIELDED && out == (void *)5);
	intptr_t expect = 5;
	for (intptr_t i = 1; i <= 1000; i++) {
		expect += i;
		CHECK(weft_gen_resume(g, (void *)i, &out) == WEFT_GEN_YIELDED);
		CHECK((intptr_t)out == expect);
		if ((i & 63) == 0)
			weft_yield();            /* the caller may migrate between resumes */
	}
	CHECK(weft_gen_resume(g, NULL, &out) == WEFT_GEN_DONE);
	CHECK((intptr_t)out == -expect);
	CHECK(weft_gen_close(g) == 0);
	return NULL;
}

static void *send_many(void *arg)
{
	weft_task *t[16];
	for (int i = 0; i < 16; i++)
		CHECK(weft_spawn(&t[i], send_main, NULL) == 0);
	for (int i = 0; i < 16; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(gen, values_both_ways)
{
	run(4, send_many, NULL);
}

/* ----------------------------------------------------------------- close -- */

struct resource { int opened, closed; int yield_result; };

static void *owning_body(weft_gen *g, void *arg, void *in)
{
	struct resource *res = arg;
	res->opened = 1;
	int r;
	for (;;) {
		r = weft_gen_yield(g, NULL, NULL);
		if (r != 0)
			break;
	}
	res->yield_result = r;
	/* every later yield fails at once, without switching */
	if (weft_gen_yield(g, NULL, NULL) != -ECANCELED)
		res->yield_result = 1;
	res->closed = 1;                 /* the body's cleanup ran */
	return NULL;
}

Test(gen, close_unwinds_a_suspended_body)
{
	struct resource res = { 0 };
	weft_gen *g;
	cr_assert_eq(weft_gen_create(&g, owning_body, &res, 0), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(weft_gen_resume(g, NULL, NULL), WEFT_GEN_YIELDED);
	cr_assert_eq(res.opened, 1);
	cr_assert_eq(res.closed, 0);
	cr_assert_eq(weft_gen_close(g), 0);
	cr_assert_eq(res.closed, 1);
	cr_assert_eq(res.yield_result, -ECANCELED);
}

Test(gen, close_never_started_does_not_run)
{
	struct resource res = { 0 };
	weft_gen *g;
	cr_assert_eq(weft_gen_create(&g, owning_body, &res, 0), 0);
	cr_assert_eq(weft_gen_close(g), 0);
	cr_assert_eq(res.opened, 0);
	cr_assert_eq(weft_gen_close(NULL), 0);
}

/* ------------------------------------------------------------ hand-over -- */

/* Each side writes its value straight into the other's variable (gen.c):
 * only the pending call's variables may be written, NULL means "none". */
struct handover { void *in_after_close; int close_result; };

static void *handover_body(weft_gen *g, void *arg, void *in)
{
	struct handover *h = arg;
	void *got = (void *)(uintptr_t)0xbad;
	if (in != (void *)(uintptr_t)10)                 /* the first resume's in */
		return (void *)(uintptr_t)1;
	if (weft_gen_yield(g, (void *)(uintptr_t)11, &got) != 0 || got != (void *)(uintptr_t)20)
		return (void *)(uintptr_t)2;
	if (weft_gen_yield(g, (void *)(uintptr_t)21, NULL) != 0)    /* ignores what is sent */
		return (void *)(uintptr_t)3;
	if (weft_gen_yield(g, (void *)(uintptr_t)31, &got) != 0 || got != (void *)(uintptr_t)40)
		return (void *)(uintptr_t)4;
	got = (void *)(uintptr_t)0x5e1;
	h->close_result = weft_gen_yield(g, (void *)(uintptr_t)41, &got);
	h->in_after_close = got;                         /* close writes no in */
	return (void *)(uintptr_t)0xd0e;
}

Test(gen, values_go_only_to_the_pending_call)
{
	struct handover h = { NULL, 0 };
	weft_gen *g;
	cr_assert_eq(weft_gen_create(&g, handover_body, &h, 0), 0);
	void *a = (void *)(uintptr_t)0xa, *b = (void *)(uintptr_t)0xb;
	cr_assert_eq(weft_gen_resume(g, (void *)(uintptr_t)10, &a), WEFT_GEN_YIELDED);
	cr_assert_eq(a, (void *)(uintptr_t)11);
	cr_assert_eq(weft_gen_resume(g, (void *)(uintptr_t)20, &b), WEFT_GEN_YIELDED);
	cr_assert_eq(b, (void *)(uintptr_t)21);
	cr_assert_eq(a, (void *)(uintptr_t)11, "an earlier resume's out was written again");
	cr_assert_eq(weft_gen_resume(g, (void *)(uintptr_t)30, NULL), WEFT_GEN_YIELDED);
	cr_assert_eq(b, (void *)(uintptr_t)21, "a resume with out NULL wrote an earlier out");
	cr_assert_eq(weft_gen_resume(g, (void *)(uintptr_t)40, &a), WEFT_GEN_YIELDED);
	cr_assert_eq(a, (void *)(uintptr_t)41);
	cr_assert_eq(weft_gen_close(g), 0);
	cr_assert_eq(h.close_result, -ECANCELED);
	cr_assert_eq(h.in_after_close, (void *)(uintptr_t)0x5e1);
	cr_assert_eq(a, (void *)(uintptr_t)41, "close wrote the body's return value somewhere");

	/* the body's return value goes to the resume that ends it */
	struct handover h2 = { NULL, 0 };
	cr_assert_eq(weft_gen_create(&g, handover_body, &h2, 0), 0);
	cr_assert_eq(weft_gen_resume(g, (void *)(uintptr_t)99, &a), WEFT_GEN_DONE);
	cr_assert_eq(a, (void *)(uintptr_t)1);
	cr_assert_eq(weft_gen_resume(g, NULL, &b), -EPIPE);
	cr_assert_eq(b, (void *)(uintptr_t)21, "a failed resume wrote its out");
	cr_assert_eq(weft_gen_close(g), 0);
}

/* ---------------------------------------------------------------- misuse -- */

static void *self_resume_body(weft_gen *g, void *arg, void *in)
{
	int *r = arg;
	r[0] = weft_gen_resume(g, NULL, NULL);
	r[1] = weft_gen_close(g);
	return NULL;
}

Test(gen, misuse_errors)
{
	weft_gen *g;
	cr_assert_eq(weft_gen_create(&g, NULL, NULL, 0), -EINVAL);
	cr_assert_eq(weft_gen_create(&g, count_body, NULL, 1024), -EINVAL);
	int r[2] = { 0, 0 };
	cr_assert_eq(weft_gen_create(&g, self_resume_body, r, 0), 0);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), WEFT_GEN_DONE);
	cr_assert_eq(r[0], -EBUSY);
	cr_assert_eq(r[1], -EBUSY);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), -EPIPE);
	cr_assert_eq(weft_gen_close(g), 0);
}

/* --------------------------------------------------------------- nesting -- */

/* The outer generator yields the squares of what an inner one yields. */
static void *outer_body(weft_gen *g, void *arg, void *in)
{
	weft_gen *inner;
	if (weft_gen_create(&inner, count_body, (void *)(uintptr_t)100, 0) != 0)
		return (void *)1;
	void *v;
	while (weft_gen_resume(inner, NULL, &v) == WEFT_GEN_YIELDED) {
		uintptr_t x = (uintptr_t)v;
		if (weft_gen_yield(g, (void *)(x * x), NULL) != 0)
			break;
	}
	weft_gen_close(inner);
	return NULL;
}

static void *nested_main(void *arg)
{
	weft_gen *g;
	CHECK(weft_gen_create(&g, outer_body, NULL, 0) == 0);
	void *v;
	uintptr_t i = 0;
	while (weft_gen_resume(g, NULL, &v) == WEFT_GEN_YIELDED) {
		CHECK((uintptr_t)v == i * i);
		i++;
	}
	CHECK(i == 100);
	CHECK(v == NULL);
	CHECK(weft_gen_close(g) == 0);
	/* close an outer generator suspended while its inner one is live */
	CHECK(weft_gen_create(&g, outer_body, NULL, 0) == 0);
	CHECK(weft_gen_resume(g, NULL, &v) == WEFT_GEN_YIELDED);
	CHECK(weft_gen_close(g) == 0);
	return NULL;
}

Test(gen, nested_generators)
{
	run(2, nested_main, NULL);
}

/* Many generators created and closed: stacks are reused, nothing leaks
 * (the ASan build checks the leaks). Reuse shows as memory kept: a body
 * marks a byte of its stack below its frame and records where; the next
 * body, on the stack given back to the free list (gen.c), finds the mark
 * at the same place, which a fresh mapping, zeroed by the kernel, would
 * not have. Not instrumented by ASan: the byte is outside any frame. */
static volatile char *stack_mark;

__attribute__((noinline, no_sanitize("address")))
static void *marking_body(weft_gen *g, void *arg, void *in)
{
	volatile char *p = (volatile char *)((uintptr_t)__builtin_frame_address(0) - 2048);
	bool found = p == stack_mark && *p == 0x5a;
	*p = 0x5a;
	stack_mark = p;
	return (void *)(uintptr_t)found;
}

static void *churn_main(void *arg)
{
	for (int i = 0; i < 2000; i++) {
		weft_gen *g;
		CHECK(weft_gen_create(&g, count_body, (void *)(uintptr_t)3, 0) == 0);
		void *v;
		CHECK(weft_gen_resume(g, NULL, &v) == WEFT_GEN_YIELDED);
		CHECK(weft_gen_close(g) == 0);
	}
	stack_mark = NULL;
	unsigned reused = 0;
	for (int i = 0; i < 3; i++) {
		weft_gen *g;
		void *found = NULL;
		CHECK(weft_gen_create(&g, marking_body, NULL, 0) == 0);
		CHECK(weft_gen_resume(g, NULL, &found) == WEFT_GEN_DONE);
		CHECK(weft_gen_close(g) == 0);
		reused += found != NULL;
	}
	CHECK(reused == 2);                  /* all but the first */
	return NULL;
}

Test(gen, create_close_churn)
{
	run(4, churn_main, NULL);
}

/* -------------------------------------------------- FP environment --- */

/* weft/sync.h: the body shares the thread's floating-point environment with
 * its caller, as a called function does; so a rounding mode set on one side
 * is the one the other side finds after the switch, both in the x87
 * control word (fegetround reads it on x86-64) and in MXCSR (SSE division
 * below). */
static volatile double fp_one = 1.0, fp_three = 3.0;

/* 1/3 in the current rounding mode. Out of line, with volatile operands:
 * compilers that assume the default FP environment (clang without
 * FENV_ACCESS) may otherwise move a division across fesetround. */
static __attribute__((noinline)) double third(void)
{
	return fp_one / fp_three;
}

struct fp_seen { int at_start, after_resume; double q_after_resume; };

static void *rounding_body(weft_gen *g, void *arg, void *in)
{
	struct fp_seen *seen = arg;
	seen->at_start = fegetround();
	fesetround(FE_UPWARD);
	if (weft_gen_yield(g, NULL, NULL) != 0)
		return NULL;
	seen->after_resume = fegetround();
	seen->q_after_resume = third();
	fesetround(FE_TONEAREST);
	return NULL;
}

Test(gen, body_shares_the_callers_fp_environment)
{
	fesetround(FE_DOWNWARD);
	double q_down = third();
	fesetround(FE_UPWARD);
	double q_up = third();
	cr_assert(q_up > q_down, "rounding modes make no difference here");

	struct fp_seen seen = { -1, -1, 0 };
	weft_gen *g;
	fesetround(FE_DOWNWARD);
	cr_assert_eq(weft_gen_create(&g, rounding_body, &seen, 0), 0);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), WEFT_GEN_YIELDED);
	cr_assert_eq(seen.at_start, FE_DOWNWARD, "the body did not start in the caller's mode");
	cr_assert_eq(fegetround(), FE_UPWARD, "the body's mode did not reach the caller");
	cr_assert(third() == q_up, "MXCSR: the body's mode did not reach the caller");

	fesetround(FE_DOWNWARD);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), WEFT_GEN_DONE);
	cr_assert_eq(seen.after_resume, FE_DOWNWARD, "the caller's mode did not reach the body");
	cr_assert(seen.q_after_resume == q_down, "MXCSR: the caller's mode did not reach the body");
	cr_assert_eq(fegetround(), FE_TONEAREST, "the body's last change did not reach the caller");
	cr_assert_eq(weft_gen_close(g), 0);
}

/* ------------------------------------------------------------------ fork -- */

/* Generator stacks of the default size come from a process-wide free list
 * under a lock. A child forked while another thread held that lock used to
 * wait for it for ever at its first weft_gen_create. A thread here creates
 * and closes generators (the list's lock taken twice per round) while the
 * test forks children that each create and close one. Whether a fork lands
 * inside the lock is chance, so the old code failed only when one did
 * (most runs: the lock is a good part of each round); the fixed code passes
 * whatever the timing. Each child has an alarm, the parent a bounded wait. */
static _Atomic int churn_stop;

static void *churner(void *arg)
{
	(void)arg;
	for (long i = 0; i < 100000000 && !atomic_load(&churn_stop); i++) {
		weft_gen *g;
		if (weft_gen_create(&g, count_body, (void *)(uintptr_t)1, 0) != 0)
			break;
		weft_gen_close(g);
	}
	return NULL;
}

static int child_gen_works(void)
{
	weft_gen *g;
	void *out = NULL;
	if (weft_gen_create(&g, count_body, (void *)(uintptr_t)2, 0) != 0)
		return 2;
	int r1 = weft_gen_resume(g, NULL, &out);
	int r2 = weft_gen_resume(g, NULL, &out);
	int r3 = weft_gen_resume(g, NULL, &out);
	if (r1 != WEFT_GEN_YIELDED || r2 != WEFT_GEN_YIELDED || r3 != WEFT_GEN_DONE)
		return 3;
	return weft_gen_close(g) == 0 ? 0 : 4;
}


Test(gen, fork_child_creates_generators)
{
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, churner, NULL), 0);
	int bad = 0, status = 0;
	for (int i = 0; i < 100 && !bad; i++) {
		status = in_child(child_gen_works, 5);
		bad = !(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&churn_stop, 1);
	pthread_join(th, NULL);
	cr_assert(!bad, "a child failed: status %#x", status);
}

/* ------------------------------------------------- yield outside the body -- */

static void *yield_other_body(weft_gen *h, void *arg, void *in)
{
	weft_gen *g = arg;                     /* running, but this is h's body */
	return (void *)(intptr_t)weft_gen_yield(g, NULL, NULL);
}

static void *nest_yield_body(weft_gen *g, void *arg, void *in)
{
	weft_gen *h;
	intptr_t r = -1;
	if (weft_gen_create(&h, yield_other_body, g, 0) == 0) {
		void *out = NULL;
		if (weft_gen_resume(h, NULL, &out) == WEFT_GEN_DONE)
			r = (intptr_t)out;
		weft_gen_close(h);
	}
	weft_gen_yield(g, (void *)r, NULL);     /* its own: fine */
	return (void *)(uintptr_t)0xd0e;
}

Test(gen, yield_outside_its_body_is_refused)
{
	weft_gen *g;
	void *out = NULL;
	cr_assert_eq(weft_gen_yield(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_gen_create(&g, count_body, (void *)(uintptr_t)2, 0), 0);
	cr_assert_eq(weft_gen_yield(g, NULL, NULL), -EPERM, "never started");
	cr_assert_eq(weft_gen_resume(g, NULL, &out), WEFT_GEN_YIELDED);
	cr_assert_eq((uintptr_t)out, 0);
	cr_assert_eq(weft_gen_yield(g, NULL, NULL), -EPERM, "suspended, from its caller");
	cr_assert_eq(weft_gen_resume(g, NULL, &out), WEFT_GEN_YIELDED);
	cr_assert_eq((uintptr_t)out, 1, "the refused yields changed nothing");
	cr_assert_eq(weft_gen_resume(g, NULL, &out), WEFT_GEN_DONE);
	cr_assert_eq(weft_gen_yield(g, NULL, NULL), -EPERM, "done");
	cr_assert_eq(weft_gen_close(g), 0);

	/* g is running, but the yield comes from the body of another
	 * generator that g's body resumed. */
	cr_assert_eq(weft_gen_create(&g, nest_yield_body, NULL, 0), 0);
	cr_assert_eq(weft_gen_resume(g, NULL, &out), WEFT_GEN_YIELDED);
	cr_assert_eq((intptr_t)out, -EPERM);
	cr_assert_eq(weft_gen_resume(g, NULL, &out), WEFT_GEN_DONE);
	cr_assert_eq((uintptr_t)out, 0xd0e);
	cr_assert_eq(weft_gen_close(g), 0);
}

/* -------------------------------------------------------------- overflow -- */

/* A generator body that overflows its stack must end the process with the
 * same kind of message as a coroutine's: "weft: stack overflow in
 * generator ...", naming the generator and who resumed it. Each case runs
 * in a child with stderr on a pipe. */
static volatile uint64_t overflow_limit = UINT64_MAX;   /* never reached */

static __attribute__((noinline)) uint64_t recurse(uint64_t x)
{
	volatile unsigned char frame[256];
	frame[0] = (unsigned char)x;
	if (x == overflow_limit)
		return 0;
	return recurse(x + 1) + frame[0];      /* not a tail call */
}

static void *overflow_body(weft_gen *g, void *arg, void *in)
{
	return (void *)(uintptr_t)recurse(1);
}

static weft_gen *overflow_gen;

static int overflow_on_this_thread(void)
{
	if (weft_gen_create(&overflow_gen, overflow_body, NULL, 0) != 0)
		return 2;
	weft_gen_resume(overflow_gen, NULL, NULL);
	return 3;                              /* survived: no overflow */
}

static void *overflow_in_coroutine(void *arg)
{
	weft_set_name("gen-owner");
	overflow_on_this_thread();
	return NULL;
}

static int overflow_from_coroutine(void)
{
	weft_rt *rt;
	if (weft_rt_create(&rt, &(struct weft_config){ .workers = 1 }) != 0)
		return 4;
	weft_rt_run(rt, overflow_in_coroutine, NULL, NULL);
	return 3;
}

/* fn's wait status in a child whose stderr lands in buf. */
static int child_stderr(int (*fn)(void), char *buf, size_t cap)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		alarm(20);                     /* a hang must not hang the suite */
		_exit(fn());
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(p[0], buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;                /* ends when the child's stderr closes */
	buf[n] = 0;
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

Test(gen, stack_overflow_on_a_plain_thread_is_reported)
{
	char buf[4096];
	int st = child_stderr(overflow_on_this_thread, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	char want[128];
	snprintf(want, sizeof want, " (body %p) (stack 64 KiB), resumed by a plain thread\n",
	         (void *)(uintptr_t)overflow_body);
	cr_assert(strstr(buf, "weft: stack overflow in generator 0x"), "stderr: %s", buf);
	cr_assert(strstr(buf, want), "stderr: %s, want: %s", buf, want);
}

Test(gen, stack_overflow_in_a_coroutine_names_the_resumer)
{
	char buf[4096];
	int st = child_stderr(overflow_from_coroutine, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	cr_assert(strstr(buf, "weft: stack overflow in generator "), "stderr: %s", buf);
	cr_assert(strstr(buf, "(stack 64 KiB), resumed by coroutine 1 \"gen-owner\"\n"),
	          "stderr: %s", buf);
}
