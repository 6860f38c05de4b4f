/*
 * Execution contexts: building the first frame of a fresh context, and the
 * sanitizer/tool hooks around the assembly switch.
 *
 * Terms. A context is a saved stack pointer (struct weft__ctx.sp); while a
 * context is switched out, its callee-saved registers, FP control state and
 * resume pc sit at that sp in a struct weft__ctx_frame (ctx_frame.h). The
 * switch itself is switch_<arch>_<abi>_elf.S.
 *
 * Fresh context. weft__ctx_make writes one frame at the top of the stack
 * whose resume pc is weft__ctx_trampoline, so the first switch "returns"
 * into the trampoline, which calls entry(data). The frame's FP control state
 * is the maker's (a new thread likewise inherits its creator's). Below the
 * top we leave a zeroed 16 bytes (a null return address), the saved frame
 * pointer is 0 and the trampoline's CFI marks the return address undefined,
 * so frame-pointer and DWARF unwinders (perf, gdb) both stop there.
 *
 * Normal builds: weft__ctx_switch *is* the assembly (an alias in the .S),
 * no C in between. Tool builds (WEFT_ASAN, WEFT_TSAN, WEFT_VALGRIND) route
 * through the C wrapper below, which tells the tool about each switch:
 *   ASan: __sanitizer_start_switch_fiber(&from's fake stack, to's stack)
 *         before, __sanitizer_finish_switch_fiber after; a context that will
 *         never run again passes NULL so its fake stack is freed.
 *   TSan: one fiber per made context; __tsan_switch_to_fiber before the
 *         switch (flags 0: the switch orders everything before it with
 *         everything after it in the other context, as it does in fact).
 *   valgrind: each coroutine stack is registered so that valgrind does not
 *         take a stack switch for a huge frame.
 * A fresh context starts in weft__ctx_start_tools, which finishes the tool's
 * switch before calling the real entry.
 */
#include "ctx/ctx.h"
#include "ctx/ctx_frame.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(WEFT_ASAN)
#include <pthread.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(WEFT_TSAN)
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif
#if defined(WEFT_VALGRIND)
#include <valgrind/valgrind.h>
#endif

#if defined(WEFT_ASAN) || defined(WEFT_TSAN) || defined(WEFT_VALGRIND)
#define WEFT_CTX_TOOLS 1
#endif

/* The assembly, switch_*.S. */
void *weft__ctx_switch_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);
void weft__ctx_trampoline(void);
#if defined(WEFT_ASAN) || defined(WEFT_TSAN) || defined(WEFT_VALGRIND)
void *weft__ctx_switch_threadfp_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);
#define threadfp_raw weft__ctx_switch_threadfp_raw
#else
/* Normal builds: weft__ctx_switch_threadfp is the assembly itself (an alias
 * in the .S); its _raw name is left to src/sync/gen.c, which declares it
 * with an int result, and LTO would flag two types for one symbol. */
#define threadfp_raw weft__ctx_switch_threadfp
#endif
_Noreturn void weft__ctx_entry_returned(void);

/* The asm loads and stores `sp` through the context pointer itself. */
_Static_assert(offsetof(struct weft__ctx, sp) == 0, "weft__ctx.sp must come first");

#if defined(__x86_64__)
_Static_assert(offsetof(struct weft__ctx_frame, mxcsr) == WEFT_CTX_FRAME_FPCSR, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, x87cw) == WEFT_CTX_FRAME_FPCSR + 4, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, r15) == WEFT_CTX_FRAME_R15, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, r14) == WEFT_CTX_FRAME_R14, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, r13) == WEFT_CTX_FRAME_R13, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, r12) == WEFT_CTX_FRAME_R12, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, rbx) == WEFT_CTX_FRAME_RBX, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, rbp) == WEFT_CTX_FRAME_RBP, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, pc) == WEFT_CTX_FRAME_PC, "frame");
_Static_assert(sizeof(struct weft__ctx_frame) == WEFT_CTX_FRAME_SIZE, "frame");
/* Entry into the trampoline must leave rsp 16-byte aligned, so the frame
 * size must keep a 16-aligned saved sp 16-aligned after the 0x40 pop. */
_Static_assert(WEFT_CTX_FRAME_SIZE % 16 == 0, "frame");
#elif defined(__aarch64__)
_Static_assert(offsetof(struct weft__ctx_frame, d) == WEFT_CTX_FRAME_D8, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, x) == WEFT_CTX_FRAME_X19, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, x29) == WEFT_CTX_FRAME_X29, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, pc) == WEFT_CTX_FRAME_PC, "frame");
_Static_assert(offsetof(struct weft__ctx_frame, fpcr) == WEFT_CTX_FRAME_FPCR, "frame");
_Static_assert(sizeof(struct weft__ctx_frame) == WEFT_CTX_FRAME_SIZE, "frame");
_Static_assert(WEFT_CTX_FRAME_SIZE % 16 == 0, "frame");
#endif

/* Called by the trampoline if a context's entry function returns: there is
 * no frame to return to. Async-signal-safe, as it may run anywhere. */
_Noreturn void weft__ctx_entry_returned(void)
{
	static const char msg[] =
		"weft: a coroutine entry function returned (it must switch away for good)\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	abort();
}

#if defined(WEFT_CTX_TOOLS)
/* First C code of a fresh context in tool builds: finish the tool's side of
 * the switch that brought us here, then run the real entry. */
static void weft__ctx_start_tools(void *data, weft__ctx_entry entry)
{
#if defined(WEFT_ASAN)
	/* NULL: a fresh context has no fake stack to restore. */
	__sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
	entry(data);
	weft__ctx_entry_returned();
}
#endif

void weft__ctx_make(struct weft__ctx *c, void *stack_lo, size_t size, weft__ctx_entry entry)
{
	uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
	top -= 16;                /* a zeroed null return address above the trampoline */
	memset((void *)top, 0, 16);
	struct weft__ctx_frame *f = (struct weft__ctx_frame *)(top - sizeof *f);
	memset(f, 0, sizeof *f);

	uintptr_t fn = (uintptr_t)entry, arg2 = 0;
#if defined(WEFT_CTX_TOOLS)
	arg2 = (uintptr_t)entry;
	fn = (uintptr_t)weft__ctx_start_tools;
#endif
#if defined(__x86_64__)
	__asm__ volatile("stmxcsr %0" : "=m"(f->mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(f->x87cw));
	f->r12 = fn;              /* the trampoline calls r12(data, rbx) */
	f->rbx = arg2;
	f->rbp = 0;               /* frame-pointer chains end here */
#elif defined(__aarch64__)
	uint64_t fpcr;
	__asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
	f->fpcr = fpcr;
	f->x[0] = fn;             /* x19: the trampoline calls x19(data, x20) */
	f->x[1] = arg2;           /* x20 */
	f->x29 = 0;
#endif
	f->pc = (uintptr_t)weft__ctx_trampoline;
	c->sp = f;

#if defined(WEFT_ASAN)
	c->stack_lo = stack_lo;
	c->stack_size = size;
	c->fake_stack = NULL;
	/* A reused stack may still carry the poisoned redzones of frames of
	 * its previous coroutine, which ended without unwinding them. */
	ASAN_UNPOISON_MEMORY_REGION(stack_lo, size);
#endif
#if defined(WEFT_TSAN)
	c->tsan_fiber = __tsan_create_fiber(0);
	c->tsan_owned = 1;
#endif
#if defined(WEFT_VALGRIND)
	c->vg_stack_id = VALGRIND_STACK_REGISTER(stack_lo, (char *)stack_lo + size);
#endif
}

void weft__ctx_init_thread(struct weft__ctx *c)
{
	c->sp = NULL;             /* written by the first switch away */
#if defined(WEFT_ASAN)
	pthread_attr_t a;
	c->stack_lo = NULL;
	c->stack_size = 0;
	c->fake_stack = NULL;
	if (pthread_getattr_np(pthread_self(), &a) == 0) {
		void *lo;
		size_t sz;
		if (pthread_attr_getstack(&a, &lo, &sz) == 0) {
			c->stack_lo = lo;
			c->stack_size = sz;
		}
		pthread_attr_destroy(&a);
	}
#endif
#if defined(WEFT_TSAN)
	c->tsan_fiber = __tsan_get_current_fiber();
	c->tsan_owned = 0;        /* the thread's own fiber: TSan ends it */
#endif
#if defined(WEFT_VALGRIND)
	c->vg_stack_id = 0;       /* valgrind knows thread stacks already */
#endif
}

void weft__ctx_release(struct weft__ctx *c)
{
#if defined(WEFT_TSAN)
	if (c->tsan_owned && c->tsan_fiber)
		__tsan_destroy_fiber(c->tsan_fiber);
	c->tsan_fiber = NULL;
	c->tsan_owned = 0;
#endif
#if defined(WEFT_VALGRIND)
	if (c->vg_stack_id)
		VALGRIND_STACK_DEREGISTER(c->vg_stack_id);
	c->vg_stack_id = 0;
#endif
	(void)c;
}

/* One of the assembly switches: weft__ctx_switch_raw or threadfp_raw. */
typedef void *(*switch_raw_fn)(struct weft__ctx *, struct weft__ctx *, void *);

#if defined(WEFT_CTX_TOOLS)
static inline void *switch_tools(struct weft__ctx *from, struct weft__ctx *to, void *data,
                                 switch_raw_fn raw)
{
#if defined(WEFT_ASAN)
	__sanitizer_start_switch_fiber(&from->fake_stack, to->stack_lo, to->stack_size);
#endif
#if defined(WEFT_TSAN)
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
	data = raw(from, to, data);
#if defined(WEFT_ASAN)
	/* Back in `from`, possibly on another thread: reinstate its fake stack. */
	__sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#endif
	return data;
}

void *weft__ctx_switch(struct weft__ctx *from, struct weft__ctx *to, void *data)
{
	return switch_tools(from, to, data, weft__ctx_switch_raw);
}

void *weft__ctx_switch_threadfp(struct weft__ctx *from, struct weft__ctx *to, void *data)
{
	return switch_tools(from, to, data, threadfp_raw);
}
#endif

static inline _Noreturn void exit_tools(struct weft__ctx *from, struct weft__ctx *to, void *data,
                                        switch_raw_fn raw)
{
#if defined(WEFT_ASAN)
	/* NULL fake-stack save: this context is gone, ASan may free its fake stack. */
	__sanitizer_start_switch_fiber(NULL, to->stack_lo, to->stack_size);
#endif
#if defined(WEFT_TSAN)
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
	raw(from, to, data);
	weft__ctx_entry_returned();  /* resumed although it said it never would */
}

_Noreturn void weft__ctx_exit(struct weft__ctx *from, struct weft__ctx *to, void *data)
{
	exit_tools(from, to, data, weft__ctx_switch_raw);
}

_Noreturn void weft__ctx_exit_threadfp(struct weft__ctx *from, struct weft__ctx *to, void *data)
{
	exit_tools(from, to, data, threadfp_raw);
}
