/*
 * src/ctx: execution contexts and their stacks. Knows nothing of scheduling.
 *
 * A context is a saved stack pointer: the callee-saved registers sit on the
 * context's own stack (frame layout in switch_*.S and ctx_frame.h). Switching
 * stores the current sp in `from->sp`, loads `to->sp`, restores registers and
 * returns into `to`, handing it `data`: the value its own weft__ctx_switch call
 * returns (or, for a fresh context, the argument of its entry function).
 *
 * Sanitizer/tool hooks (ASan fiber switches, TSan fibers, valgrind stack ids)
 * are compiled in only in builds that ask for them (WEFT_ASAN, WEFT_TSAN,
 * WEFT_VALGRIND) and live in the inline wrappers below and in ctx.c.
 */
#ifndef WEFT_CTX_H
#define WEFT_CTX_H

#include <stddef.h>
#include <stdint.h>

struct weft__ctx {
	void *sp;                 /* saved stack pointer; valid while not running */
#if defined(WEFT_ASAN)
	const void *stack_lo;     /* this context's stack, for ASan              */
	size_t stack_size;
	void *fake_stack;         /* ASan's fake stack while switched out         */
#endif
#if defined(WEFT_TSAN)
	void *tsan_fiber;
	int tsan_owned;           /* created by us (destroy it) or the thread's  */
#endif
#if defined(WEFT_VALGRIND)
	unsigned vg_stack_id;
#endif
};

typedef void (*weft__ctx_entry)(void *data);

/* Prepare a fresh context on [stack_lo, stack_lo + size): the first switch to
 * it calls entry(data) on a 16-byte aligned stack whose outermost frame ends
 * backtraces cleanly. entry must never return (it aborts if it does). */
void weft__ctx_make(struct weft__ctx *c, void *stack_lo, size_t size, weft__ctx_entry entry);

/* Adopt the calling thread's own stack as a context (a worker's scheduler). */
void weft__ctx_init_thread(struct weft__ctx *c);

/* Release tool state (TSan fiber, valgrind id) of a context that will not run again. */
void weft__ctx_release(struct weft__ctx *c);

/* Switch from the running context (saved into *from) to *to, passing data.
 * Returns the data passed by whoever switches back to `from`. */
void *weft__ctx_switch(struct weft__ctx *from, struct weft__ctx *to, void *data);

/* Like weft__ctx_switch, for a context that will never be resumed (it tells
 * ASan to drop its fake stack). Does not return. */
_Noreturn void weft__ctx_exit(struct weft__ctx *from, struct weft__ctx *to, void *data);

/* The same two for switches that are calls in spirit (generators): they
 * leave the FP control state (MXCSR and x87 CW, FPCR) alone, so both sides
 * share the thread's. A context switched out by one of these must be
 * resumed by one of these (the frame's FP slot is not written). */
void *weft__ctx_switch_threadfp(struct weft__ctx *from, struct weft__ctx *to, void *data);
_Noreturn void weft__ctx_exit_threadfp(struct weft__ctx *from, struct weft__ctx *to, void *data);

#endif /* WEFT_CTX_H */
