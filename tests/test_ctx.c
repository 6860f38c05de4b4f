/*
 * src/ctx: the context switch. Every callee-saved register and the FP
 * control state survive a switch; values travel across it; fresh contexts
 * start aligned with a terminating frame; deep recursion fits; an overflow
 * ends in the named message and SIGABRT; other faults reach the handler
 * that was there before.
 */
#include <criterion/criterion.h>

#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "weft.h"

static struct weft__ctx main_ctx, co_ctx;
static struct weft__stack_pool *pool;
static struct weft__stack_cache *cache;

static struct weft__stack *setup_co(weft__ctx_entry entry)
{
	struct weft__stack *s;
	cr_assert_eq(weft__stack_pool_create(&pool, WEFT_STACK_DEFAULT), 0);
	cr_assert_eq(weft__stack_cache_create(&cache, pool), 0);
	cr_assert_eq(weft__stack_get(cache, &s), 0);
	weft__ctx_init_thread(&main_ctx);
	weft__ctx_make(&co_ctx, s->lo, s->size, entry);
	return s;
}

static void teardown_co(struct weft__stack *s)
{
	weft__ctx_release(&co_ctx);
	weft__ctx_release(&main_ctx);
	weft__stack_put(cache, s);
	weft__stack_cache_destroy(cache);
	weft__stack_pool_destroy(pool);
}

/* ------------------------------------------------ callee-saved registers -- */
#if defined(__x86_64__)
/*
 * uint64_t *regs_switch(struct weft__ctx *from, struct weft__ctx *to,
 *                       uint64_t out[6], uint64_t seed);
 * Loads rbx rbp r12-r15 with seed+1..seed+6, switches from -> to, stores
 * the six registers found on return into out[] and restores the caller's.
 * Returns the value the switch returned.
 */
__asm__(
	".text\n"
	".globl regs_switch\n"
	".type regs_switch, @function\n"
	"regs_switch:\n"
	"	pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
	"	pushq %rdx\n"                         /* out; also aligns rsp to 16 */
	"	leaq 1(%rcx), %rbx\n leaq 2(%rcx), %rbp\n leaq 3(%rcx), %r12\n"
	"	leaq 4(%rcx), %r13\n leaq 5(%rcx), %r14\n leaq 6(%rcx), %r15\n"
	"	xorl %edx, %edx\n"
	"	call weft__ctx_switch\n"
	"	movq (%rsp), %rdx\n"
	"	movq %rbx, 0(%rdx)\n movq %rbp, 8(%rdx)\n movq %r12, 16(%rdx)\n"
	"	movq %r13, 24(%rdx)\n movq %r14, 32(%rdx)\n movq %r15, 40(%rdx)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n"
	"	ret\n"
	".size regs_switch, .-regs_switch\n");
uint64_t *regs_switch(struct weft__ctx *from, struct weft__ctx *to, uint64_t out[6],
                      uint64_t seed);

static uint64_t co_out[6];

/* The other side: switches back with entirely different register values. */
static void regs_entry(void *data)
{
	uint64_t seed = 0xc0c0c0c000000000u;
	for (;;) {
		regs_switch(&co_ctx, &main_ctx, co_out, seed);
		for (int i = 0; i < 6; i++)
			cr_assert_eq(co_out[i], seed + 1 + (uint64_t)i, "co reg %d", i);
		seed += 0x100;
	}
}

Test(ctx, callee_saved_registers_survive_a_switch)
{
	struct weft__stack *s = setup_co(regs_entry);
	uint64_t out[6];
	for (uint64_t round = 0; round < 1000; round++) {
		uint64_t seed = 0x5a5a000000000000u + (round << 8);
		memset(out, 0, sizeof out);
		regs_switch(&main_ctx, &co_ctx, out, seed);
		for (int i = 0; i < 6; i++)
			cr_assert_eq(out[i], seed + 1 + (uint64_t)i,
			             "round %lu reg %d: %#lx", (unsigned long)round, i,
			             (unsigned long)out[i]);
	}
	teardown_co(s);
}

/* ------------------------------------------------------ FP control state -- */
static uint32_t get_mxcsr(void)
{
	uint32_t v;
	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}
static void set_mxcsr(uint32_t v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }
static uint16_t get_x87cw(void)
{
	uint16_t v;
	__asm__ volatile("fnstcw %0" : "=m"(v));
	return v;
}
static void set_x87cw(uint16_t v) { __asm__ volatile("fldcw %0" : : "m"(v)); }

#define MXCSR_RC_MASK  0x6000u
#define MXCSR_RC_ZERO  0x6000u
#define MXCSR_RC_DOWN  0x2000u
#define X87_RC_MASK    0x0c00u
#define X87_RC_UP      0x0800u
#define X87_RC_ZERO    0x0c00u

static uint32_t main_mxcsr;
static uint16_t main_x87;

static void fp_entry(void *data)
{
	/* A fresh context starts with its maker's FP control state. */
	cr_assert_eq(get_mxcsr(), main_mxcsr);
	cr_assert_eq(get_x87cw(), main_x87);
	uint32_t mine = (main_mxcsr & ~MXCSR_RC_MASK) | MXCSR_RC_DOWN;
	uint16_t mine87 = (uint16_t)((main_x87 & ~X87_RC_MASK) | X87_RC_ZERO);
	set_mxcsr(mine);
	set_x87cw(mine87);
	for (;;) {
		weft__ctx_switch(&co_ctx, &main_ctx, NULL);
		cr_assert_eq(get_mxcsr(), mine, "co mxcsr %#x", get_mxcsr());
		cr_assert_eq(get_x87cw(), mine87, "co x87 %#x", get_x87cw());
	}
}

Test(ctx, fp_control_state_is_per_context)
{
	main_mxcsr = get_mxcsr();
	main_x87 = get_x87cw();
	struct weft__stack *s = setup_co(fp_entry);

	uint32_t mine = (main_mxcsr & ~MXCSR_RC_MASK) | MXCSR_RC_ZERO;
	uint16_t mine87 = (uint16_t)((main_x87 & ~X87_RC_MASK) | X87_RC_UP);
	weft__ctx_switch(&main_ctx, &co_ctx, NULL);
	/* co changed its own modes: ours are untouched */
	cr_assert_eq(get_mxcsr(), main_mxcsr);
	cr_assert_eq(get_x87cw(), main_x87);
	set_mxcsr(mine);
	set_x87cw(mine87);
	for (int i = 0; i < 100; i++) {
		weft__ctx_switch(&main_ctx, &co_ctx, NULL);
		cr_assert_eq(get_mxcsr(), mine, "main mxcsr %#x", get_mxcsr());
		cr_assert_eq(get_x87cw(), mine87, "main x87 %#x", get_x87cw());
	}
	set_mxcsr(main_mxcsr);
	set_x87cw(main_x87);
	teardown_co(s);
}
#endif /* __x86_64__ */

/* ------------------------------------------------------------ ping-pong -- */
#define PINGPONG 1000000u

static void pong_entry(void *data)
{
	uintptr_t v = (uintptr_t)data;
	for (;;)
		v = (uintptr_t)weft__ctx_switch(&co_ctx, &main_ctx, (void *)(v * 3 + 1));
}

Test(ctx, ping_pong_carries_values)
{
	struct weft__stack *s = setup_co(pong_entry);
	for (uintptr_t i = 0; i < PINGPONG; i++) {
		uintptr_t r = (uintptr_t)weft__ctx_switch(&main_ctx, &co_ctx, (void *)i);
		if (r != i * 3 + 1)
			cr_assert_fail("switch %lu returned %lu", (unsigned long)i, (unsigned long)r);
	}
	teardown_co(s);
}

/* ------------------------------------------- fresh frame, alignment, exit -- */
static uintptr_t entry_fp, entry_data;
static int fp_chain_len, bt_len;

static __attribute__((noinline)) void fresh_entry(void *data)
{
	entry_data = (uintptr_t)data;
	entry_fp = (uintptr_t)__builtin_frame_address(0);
	/* The frame-pointer chain ends in a zero saved frame pointer. */
	uintptr_t *fp = __builtin_frame_address(0);
	fp_chain_len = 0;
	while (fp && fp_chain_len < 64) {
		fp = (uintptr_t *)fp[0];
		fp_chain_len++;
	}
	/* The DWARF unwinder stops at the trampoline (CFI: rip undefined). */
	void *bt[64];
	bt_len = backtrace(bt, 64);
	weft__ctx_exit(&co_ctx, &main_ctx, (void *)0x77);
}

Test(ctx, fresh_context_is_aligned_and_outermost)
{
	struct weft__stack *s = setup_co(fresh_entry);
	void *r = weft__ctx_switch(&main_ctx, &co_ctx, (void *)0x1234);
	cr_assert_eq((uintptr_t)r, 0x77u, "value from weft__ctx_exit");
	cr_assert_eq(entry_data, 0x1234u, "first switch's data is the entry argument");
	/* With frame pointers the entry's frame is 16-byte aligned iff the
	 * stack was aligned at the call (rsp % 16 == 8 on x86-64 entry). */
	cr_assert_eq(entry_fp % 16, 0u, "entry frame %#lx", (unsigned long)entry_fp);
	cr_assert(entry_fp > (uintptr_t)s->lo && entry_fp < (uintptr_t)s->lo + s->size);
	cr_assert(fp_chain_len >= 1 && fp_chain_len <= 3, "fp chain %d frames", fp_chain_len);
	cr_assert(bt_len >= 1 && bt_len <= 6, "backtrace %d frames", bt_len);
	teardown_co(s);
}

/* ------------------------------------------------------- deep recursion -- */
static struct weft__stack *deep_stack;
static uintptr_t deep_min_fp;
static unsigned deep_depth;

static __attribute__((noinline)) uint64_t recurse(unsigned depth, uint64_t seed)
{
	volatile unsigned char frame[512];
	for (unsigned i = 0; i < sizeof frame; i++)
		frame[i] = (unsigned char)(seed + i);
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	if (fp < deep_min_fp)
		deep_min_fp = fp;
	uint64_t sum = 0;
	/* stop 8 KiB above the guard, or at a bounded depth */
	if (fp > (uintptr_t)deep_stack->lo + 8192 && depth < 100000) {
		deep_depth = depth + 1;
		sum = recurse(depth + 1, seed * 6364136223846793005u + 1);
	}
	for (unsigned i = 0; i < sizeof frame; i++)
		if (frame[i] != (unsigned char)(seed + i))
			return UINT64_MAX;         /* a deeper frame trampled ours */
	return sum == UINT64_MAX ? sum : sum + frame[depth % sizeof frame];
}

static void deep_entry(void *data)
{
	uint64_t r = recurse(0, 1);
	weft__ctx_exit(&co_ctx, &main_ctx, (void *)(uintptr_t)(r != UINT64_MAX));
}

Test(ctx, deep_recursion_uses_most_of_a_stack)
{
	deep_stack = setup_co(deep_entry);
	deep_min_fp = UINTPTR_MAX;
	void *ok = weft__ctx_switch(&main_ctx, &co_ctx, NULL);
	cr_assert_eq((uintptr_t)ok, 1u, "frames intact after %u levels", deep_depth);
	size_t used = (uintptr_t)deep_stack->lo + deep_stack->size - deep_min_fp;
	cr_assert(used * 4 >= deep_stack->size * 3, "used %zu of %zu bytes", used,
	          deep_stack->size);
	teardown_co(deep_stack);
}

/* --------------------------------------------------------- death tests -- */
/* Runs fn in a child with stderr on a pipe; returns the wait status and
 * the child's stderr in buf. */
static int run_child(void (*fn)(void), char *buf, size_t cap)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		alarm(60);               /* a hang must not hang the suite */
		fn();
		_exit(99);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(p[0], buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static struct weft__stack *child_stack;

static volatile uint64_t overflow_limit = UINT64_MAX;  /* never reached */

static __attribute__((noinline)) uint64_t overflow(uint64_t x)
{
	volatile unsigned char frame[256];
	frame[0] = (unsigned char)x;
	if (x == overflow_limit)
		return 0;
	return overflow(x + 1) + frame[0];    /* not a tail call */
}

static void overflow_entry(void *data)
{
	overflow(1);
}

static const char *child_name = "deep";

static void child_start(weft__ctx_entry entry)
{
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	if (weft__stack_thread_init() || weft__stack_pool_create(&p, WEFT_STACK_DEFAULT) ||
	    weft__stack_cache_create(&c, p) || weft__stack_get(c, &child_stack))
		_exit(98);
	child_stack->owner_id = 42;
	child_stack->owner_name = child_name;
	weft__ctx_init_thread(&main_ctx);
	weft__ctx_make(&co_ctx, child_stack->lo, child_stack->size, entry);
	weft__stack_set_current(child_stack);
	weft__ctx_switch(&main_ctx, &co_ctx, NULL);
}

static void child_overflow(void) { child_start(overflow_entry); }

Test(ctx, stack_overflow_names_the_coroutine_and_aborts)
{
	char buf[4096];
	int st = run_child(child_overflow, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	cr_assert(strstr(buf, "weft: stack overflow in coroutine 42 \"deep\" (stack 64 KiB)\n"),
	          "stderr: %s", buf);
}

/* The name is the program's data: escaped in the message, so a newline in
 * it cannot forge a line of stderr. */
static void child_overflow_odd_name(void)
{
	child_name = "a\nweft: x\x1b\\\"";
	child_start(overflow_entry);
}

Test(ctx, stack_overflow_escapes_the_name)
{
	char buf[4096];
	int st = run_child(child_overflow_odd_name, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	cr_assert(strstr(buf, "weft: stack overflow in coroutine 42 \"a\\nweft: x\\x1b\\\\\\\"\" "
	                      "(stack 64 KiB)\n"), "stderr: %s", buf);
}

static int *volatile wild_ptr = (int *)16;   /* nowhere near a guard */

static void wild_entry(void *data)
{
	*wild_ptr = 1;
}

static void prev_handler(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "previous handler ran\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(si->si_addr == (void *)16 ? 7 : 8);
}

static void child_wild_with_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = prev_handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	child_start(wild_entry);
}

Test(ctx, other_faults_go_to_the_previous_handler)
{
	char buf[4096];
	int st = run_child(child_wild_with_handler, buf, sizeof buf);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 7, "status %#x, stderr: %s", st, buf);
	cr_assert(strstr(buf, "previous handler ran"), "stderr: %s", buf);
	cr_assert_null(strstr(buf, "stack overflow"), "stderr: %s", buf);
}

static void child_wild_default(void)
{
	signal(SIGSEGV, SIG_DFL);
	child_start(wild_entry);
}

Test(ctx, other_faults_keep_the_default_action)
{
	char buf[4096];
	int st = run_child(child_wild_default, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x, stderr: %s", st, buf);
	cr_assert_null(strstr(buf, "stack overflow"), "stderr: %s", buf);
}

/* A hit in the guard of a stack that is not the one running is no overflow
 * of ours: the default action applies. */
static void child_other_guard(void)
{
	signal(SIGSEGV, SIG_DFL);
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *a, *b;
	if (weft__stack_thread_init() || weft__stack_pool_create(&p, WEFT_STACK_DEFAULT) ||
	    weft__stack_cache_create(&c, p) || weft__stack_get(c, &a) || weft__stack_get(c, &b))
		_exit(98);
	weft__stack_set_current(a);
	*(volatile char *)((char *)b->lo - 1) = 1;
}

Test(ctx, a_guard_hit_of_another_stack_is_not_reported)
{
	char buf[4096];
	int st = run_child(child_other_guard, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x, stderr: %s", st, buf);
	cr_assert_null(strstr(buf, "stack overflow"), "stderr: %s", buf);
}

static void returning_entry(void *data) { (void)data; }
static void child_entry_returns(void) { child_start(returning_entry); }

Test(ctx, an_entry_that_returns_aborts_with_a_message)
{
	char buf[4096];
	int st = run_child(child_entry_returns, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, buf);
	cr_assert(strstr(buf, "entry function returned"), "stderr: %s", buf);
}
