/*
 * The context switch tested without Criterion, for builds where Criterion
 * cannot run: AArch64 under qemu-aarch64 (tests/cross/run; no arm64
 * Criterion on the build host) and TSan (Criterion's boxfort arena cannot
 * be mapped inside TSan's address layout, Snaipe/Criterion#274).
 * Links src/ctx/ctx.c and the switch only: stacks are mapped here.
 *
 * Checks: values across 1,000,000 switches (two loops, two call sites: on
 * x86-64 the switch's jump exit); every callee-saved register (x86-64: rbx
 * rbp r12-r15; AArch64: x19-x29, d8-d15) survives a switch while the other
 * context clobbers them all (both sides switch from one call site: on
 * x86-64 the `ret` exit); FP control state (MXCSR and
 * x87 CW / FPCR) is per context; fresh contexts start 16-byte aligned with
 * the maker's FP state; weft__ctx_exit hands over its value. The same for
 * weft__ctx_switch_threadfp (generators), except that its two sides share
 * the thread's FP control state, and values through the generators' pair of
 * raw copies (there and back) in normal builds.
 * Exit 0 on success, 1 with a message on the first failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ctx/ctx.h"

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			exit(1);                                                  \
		}                                                                 \
	} while (0)

static struct weft__ctx main_ctx, co_ctx;

/* The switch regs_switch calls: weft__ctx_switch or weft__ctx_switch_threadfp
 * (both sides of one test use the same one, as the frames require). */
void *(*regs_switch_fn)(struct weft__ctx *, struct weft__ctx *, void *) = weft__ctx_switch;
static void *stack_lo;
static const size_t stack_size = 256 * 1024;

static void make_co(weft__ctx_entry entry)
{
	if (!stack_lo) {
		stack_lo = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
		                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		CHECK(stack_lo != MAP_FAILED, "mmap");
	}
	weft__ctx_release(&co_ctx);
	weft__ctx_make(&co_ctx, stack_lo, stack_size, entry);
}

/* ------------------------------------------------ register helpers ------ */
#if defined(__x86_64__)
#define NREGS 6
__asm__(
	".text\n"
	".globl regs_switch\n"
	".type regs_switch, @function\n"
	"regs_switch:\n"
	"	pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
	"	pushq %rdx\n"
	"	leaq 1(%rcx), %rbx\n leaq 2(%rcx), %rbp\n leaq 3(%rcx), %r12\n"
	"	leaq 4(%rcx), %r13\n leaq 5(%rcx), %r14\n leaq 6(%rcx), %r15\n"
	"	xorl %edx, %edx\n"
	"	call *regs_switch_fn(%rip)\n"
	"	movq (%rsp), %rdx\n"
	"	movq %rbx, 0(%rdx)\n movq %rbp, 8(%rdx)\n movq %r12, 16(%rdx)\n"
	"	movq %r13, 24(%rdx)\n movq %r14, 32(%rdx)\n movq %r15, 40(%rdx)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n"
	"	ret\n"
	".size regs_switch, .-regs_switch\n");

static uint64_t get_fpstate(void)
{
	uint32_t mx;
	uint16_t cw;
	__asm__ volatile("stmxcsr %0" : "=m"(mx));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	return (uint64_t)mx | (uint64_t)cw << 32;
}
static void set_fpstate(uint64_t v)
{
	uint32_t mx = (uint32_t)v;
	uint16_t cw = (uint16_t)(v >> 32);
	__asm__ volatile("ldmxcsr %0" : : "m"(mx));
	__asm__ volatile("fldcw %0" : : "m"(cw));
}
/* rounding mode: MXCSR bits 13-14, x87 CW bits 10-11 */
static uint64_t with_rounding(uint64_t v, unsigned rc)
{
	v &= ~(0x6000ull | 0xc00ull << 32);
	return v | (uint64_t)rc << 13 | (uint64_t)rc << 42;
}
#elif defined(__aarch64__)
#define NREGS 19
/* x19-x28 = seed+1..10, x29 = seed+11, d8-d15 = seed+12..19 */
__asm__(
	".text\n"
	".globl regs_switch\n"
	".type regs_switch, %function\n"
	"regs_switch:\n"
	"	sub sp, sp, #176\n"
	"	stp x29, x30, [sp, #0]\n"
	"	stp x19, x20, [sp, #16]\n stp x21, x22, [sp, #32]\n stp x23, x24, [sp, #48]\n"
	"	stp x25, x26, [sp, #64]\n stp x27, x28, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n stp d10, d11, [sp, #112]\n stp d12, d13, [sp, #128]\n"
	"	stp d14, d15, [sp, #144]\n"
	"	str x2, [sp, #160]\n"
	"	add x19, x3, #1\n add x20, x3, #2\n add x21, x3, #3\n add x22, x3, #4\n"
	"	add x23, x3, #5\n add x24, x3, #6\n add x25, x3, #7\n add x26, x3, #8\n"
	"	add x27, x3, #9\n add x28, x3, #10\n add x29, x3, #11\n"
	"	add x9, x3, #12\n fmov d8, x9\n  add x9, x3, #13\n fmov d9, x9\n"
	"	add x9, x3, #14\n fmov d10, x9\n add x9, x3, #15\n fmov d11, x9\n"
	"	add x9, x3, #16\n fmov d12, x9\n add x9, x3, #17\n fmov d13, x9\n"
	"	add x9, x3, #18\n fmov d14, x9\n add x9, x3, #19\n fmov d15, x9\n"
	"	mov x2, xzr\n"
	"	adrp x9, regs_switch_fn\n"
	"	ldr x9, [x9, :lo12:regs_switch_fn]\n"
	"	blr x9\n"
	"	ldr x9, [sp, #160]\n"
	"	stp x19, x20, [x9, #0]\n stp x21, x22, [x9, #16]\n stp x23, x24, [x9, #32]\n"
	"	stp x25, x26, [x9, #48]\n stp x27, x28, [x9, #64]\n str x29, [x9, #80]\n"
	"	stp d8, d9, [x9, #88]\n stp d10, d11, [x9, #104]\n stp d12, d13, [x9, #120]\n"
	"	stp d14, d15, [x9, #136]\n"
	"	ldp x19, x20, [sp, #16]\n ldp x21, x22, [sp, #32]\n ldp x23, x24, [sp, #48]\n"
	"	ldp x25, x26, [sp, #64]\n ldp x27, x28, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n ldp d10, d11, [sp, #112]\n ldp d12, d13, [sp, #128]\n"
	"	ldp d14, d15, [sp, #144]\n"
	"	ldp x29, x30, [sp, #0]\n"
	"	add sp, sp, #176\n"
	"	ret\n"
	".size regs_switch, .-regs_switch\n");

static uint64_t get_fpstate(void)
{
	uint64_t v;
	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	return v;
}
static void set_fpstate(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
/* rounding mode: FPCR bits 22-23 */
static uint64_t with_rounding(uint64_t v, unsigned rc)
{
	return (v & ~(3ull << 22)) | (uint64_t)rc << 22;
}
#endif

void regs_switch(struct weft__ctx *from, struct weft__ctx *to, uint64_t *out, uint64_t seed);

/* ------------------------------------------------------------ tests ----- */
static uint64_t co_out[NREGS];

static void regs_entry(void *data)
{
	uint64_t seed = 0xc0c0c0c000000000u;
	for (;;) {
		regs_switch(&co_ctx, &main_ctx, co_out, seed);
		for (int i = 0; i < NREGS; i++)
			CHECK(co_out[i] == seed + 1 + (uint64_t)i, "co reg %d = %#llx", i,
			      (unsigned long long)co_out[i]);
		seed += 0x100;
	}
}

static void test_registers(void *(*fn)(struct weft__ctx *, struct weft__ctx *, void *))
{
	uint64_t out[NREGS];
	regs_switch_fn = fn;
	make_co(regs_entry);
	for (uint64_t round = 0; round < 1000; round++) {
		uint64_t seed = 0x5a5a000000000000u + (round << 8);
		memset(out, 0, sizeof out);
		regs_switch(&main_ctx, &co_ctx, out, seed);
		for (int i = 0; i < NREGS; i++)
			CHECK(out[i] == seed + 1 + (uint64_t)i, "round %llu reg %d = %#llx",
			      (unsigned long long)round, i, (unsigned long long)out[i]);
	}
}

static void pong_entry(void *data)
{
	uintptr_t v = (uintptr_t)data;
	for (;;)
		v = (uintptr_t)weft__ctx_switch(&co_ctx, &main_ctx, (void *)(v * 3 + 1));
}

static void test_ping_pong(void)
{
	make_co(pong_entry);
	for (uintptr_t i = 0; i < 1000000; i++) {
		uintptr_t r = (uintptr_t)weft__ctx_switch(&main_ctx, &co_ctx, (void *)i);
		CHECK(r == i * 3 + 1, "switch %lu returned %lu", (unsigned long)i, (unsigned long)r);
	}
}

static uint64_t main_fp;

static void fp_entry(void *data)
{
	CHECK(get_fpstate() == main_fp, "fresh context has the maker's FP state");
	uint64_t mine = with_rounding(main_fp, 1);      /* toward -inf / down */
	set_fpstate(mine);
	for (;;) {
		weft__ctx_switch(&co_ctx, &main_ctx, NULL);
		CHECK(get_fpstate() == mine, "co FP state %#llx", (unsigned long long)get_fpstate());
	}
}

static void test_fp_state(void)
{
	main_fp = get_fpstate();
	make_co(fp_entry);
	weft__ctx_switch(&main_ctx, &co_ctx, NULL);
	CHECK(get_fpstate() == main_fp, "co's change leaked to main");
	uint64_t mine = with_rounding(main_fp, 3);      /* toward zero */
	set_fpstate(mine);
	for (int i = 0; i < 100; i++) {
		weft__ctx_switch(&main_ctx, &co_ctx, NULL);
		CHECK(get_fpstate() == mine, "main FP state %#llx", (unsigned long long)get_fpstate());
	}
	set_fpstate(main_fp);
}

/* threadfp: no FP state of its own; a change on either side is seen by the
 * other, including by a fresh context on its first run. */
static uint64_t fp_zero, fp_down;

static void shared_fp_entry(void *data)
{
	for (;;) {
		uint64_t seen = get_fpstate();
		set_fpstate(fp_down);
		weft__ctx_switch_threadfp(&co_ctx, &main_ctx, (void *)(uintptr_t)seen);
	}
}

static void test_threadfp_shares_fp_state(void)
{
	uint64_t saved = get_fpstate();
	fp_down = with_rounding(saved, 1);
	fp_zero = with_rounding(saved, 3);
	make_co(shared_fp_entry);
	for (int i = 0; i < 100; i++) {
		set_fpstate(fp_zero);
		uint64_t co_saw = (uintptr_t)weft__ctx_switch_threadfp(&main_ctx, &co_ctx, NULL);
		CHECK(co_saw == fp_zero, "round %d: main's change did not reach co: %#llx", i,
		      (unsigned long long)co_saw);
		CHECK(get_fpstate() == fp_down, "round %d: co's change did not reach main: %#llx", i,
		      (unsigned long long)get_fpstate());
	}
	set_fpstate(saved);
}

#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
/* The generators' pair (src/sync/gen.c): there one way through
 * weft__ctx_switch_threadfp_raw, back through its second copy
 * weft__ctx_switch_threadfp_back_raw. Values and shared FP state across
 * 1,000,000 round trips. Normal builds only: the raw switches tell no tool. */
void *weft__ctx_switch_threadfp_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);
void *weft__ctx_switch_threadfp_back_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);

static void back_entry(void *data)
{
	uintptr_t v = (uintptr_t)data;
	for (;;) {
		set_fpstate(fp_down);
		v = (uintptr_t)weft__ctx_switch_threadfp_back_raw(&co_ctx, &main_ctx,
		                                                  (void *)(v * 5 + 3));
	}
}

static void test_threadfp_pair(void)
{
	uint64_t saved = get_fpstate();
	fp_down = with_rounding(saved, 1);
	make_co(back_entry);
	for (uintptr_t i = 0; i < 1000000; i++) {
		uintptr_t r = (uintptr_t)weft__ctx_switch_threadfp_raw(&main_ctx, &co_ctx, (void *)i);
		CHECK(r == i * 5 + 3, "round trip %lu returned %lu", (unsigned long)i,
		      (unsigned long)r);
	}
	CHECK(get_fpstate() == fp_down, "co's change did not reach main: %#llx",
	      (unsigned long long)get_fpstate());
	set_fpstate(saved);
}
#define HAVE_RAW_PAIR 1
#endif

static uintptr_t entry_fp, entry_arg;

static __attribute__((noinline)) void fresh_entry(void *data)
{
	entry_arg = (uintptr_t)data;
	entry_fp = (uintptr_t)__builtin_frame_address(0);
	weft__ctx_exit(&co_ctx, &main_ctx, (void *)0x77);
}

static void test_fresh(void)
{
	make_co(fresh_entry);
	void *r = weft__ctx_switch(&main_ctx, &co_ctx, (void *)0x1234);
	CHECK((uintptr_t)r == 0x77, "exit value %p", r);
	CHECK(entry_arg == 0x1234, "entry argument %#lx", (unsigned long)entry_arg);
	CHECK(entry_fp % 16 == 0, "entry frame %#lx not 16-byte aligned", (unsigned long)entry_fp);
	CHECK(entry_fp > (uintptr_t)stack_lo && entry_fp < (uintptr_t)stack_lo + stack_size,
	      "entry frame off the stack");
}

int main(void)
{
	weft__ctx_init_thread(&main_ctx);
	test_registers(weft__ctx_switch);
	test_registers(weft__ctx_switch_threadfp);
	test_ping_pong();
	test_fp_state();
	test_threadfp_shares_fp_state();
#ifdef HAVE_RAW_PAIR
	test_threadfp_pair();
#endif
	test_fresh();
	weft__ctx_release(&co_ctx);
	weft__ctx_release(&main_ctx);
	puts("ctx_standalone: all passed");
	return 0;
}
