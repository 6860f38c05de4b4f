/*
 * Context switch, AArch64 AAPCS64, ELF, GNU as.
 *
 *   void *weft__ctx_switch_raw(struct weft__ctx *from, struct weft__ctx *to,
 *                              void *data);
 *       x0 = from (its first field is the saved sp), x1 = to, x2 = data.
 *
 * Stores the callee-saved registers (x19-x29, lr, d8-d15) and FPCR below
 * sp, stores sp in from->sp, loads to->sp, reloads the same frame and
 * returns into `to` with x0 = data.
 *
 * Saved frame, at from->sp (offsets in ctx_frame.h, checked in ctx.c):
 *
 *   +------+-----------------------------+
 *   | 0x00 | d8  d9                      |  <- saved sp
 *   | 0x10 | d10 d11                     |
 *   | 0x20 | d12 d13                     |
 *   | 0x30 | d14 d15                     |
 *   | 0x40 | x19 x20                     |
 *   | 0x50 | x21 x22                     |
 *   | 0x60 | x23 x24                     |
 *   | 0x70 | x25 x26                     |
 *   | 0x80 | x27 x28                     |
 *   | 0x90 | x29 (fp)  x30 (lr = pc)     |
 *   | 0xa0 | FPCR      0                 |
 *   +------+-----------------------------+
 *     0xb0   = caller's sp after the return
 *
 * FPCR (rounding mode, flush-to-zero) is preserved across calls by AAPCS64
 * unless a function's contract says otherwise. As on x86-64, we always store
 * it and write it back only when the incoming context's value differs from
 * the thread's current one (msr fpcr may synchronise; mrs is cheap).
 *
 * The switch ends with `ret`: unlike x86-64's `jmp`, an indirect `br` to a
 * return address would fault on BTI-guarded pages (a return site is no
 * landing pad), and `ret` is the branch that may land anywhere.
 *
 * weft__ctx_trampoline is the outermost frame of a fresh context: CFI marks
 * x30 undefined and x29 is 0.
 */
#include "ctx/ctx_frame.h"

	.text

/*
 * The switch, once, for both entry points below: fp=1 keeps each
 * context's FPCR (weft__ctx_switch_raw), fp=0 leaves it alone
 * (weft__ctx_switch_threadfp_raw). Same frame either way.
 */
.macro WEFT_SWITCH fp
	hint	#34				/* bti c */
	sub	sp, sp, #WEFT_CTX_FRAME_SIZE
	.cfi_adjust_cfa_offset WEFT_CTX_FRAME_SIZE
	stp	d8,  d9,  [sp, #0x00]
	stp	d10, d11, [sp, #0x10]
	stp	d12, d13, [sp, #0x20]
	stp	d14, d15, [sp, #0x30]
	stp	x19, x20, [sp, #0x40]
	stp	x21, x22, [sp, #0x50]
	stp	x23, x24, [sp, #0x60]
	stp	x25, x26, [sp, #0x70]
	stp	x27, x28, [sp, #0x80]
	stp	x29, x30, [sp, #WEFT_CTX_FRAME_X29]
	.cfi_rel_offset x19, 0x40
	.cfi_rel_offset x20, 0x48
	.cfi_rel_offset x21, 0x50
	.cfi_rel_offset x22, 0x58
	.cfi_rel_offset x23, 0x60
	.cfi_rel_offset x24, 0x68
	.cfi_rel_offset x25, 0x70
	.cfi_rel_offset x26, 0x78
	.cfi_rel_offset x27, 0x80
	.cfi_rel_offset x28, 0x88
	.cfi_rel_offset x29, 0x90
	.cfi_rel_offset x30, 0x98
.if \fp
	mrs	x9, fpcr
	stp	x9, xzr, [sp, #WEFT_CTX_FRAME_FPCR]
.endif

	mov	x10, sp
	str	x10, [x0]			/* from->sp */
	ldr	x10, [x1]			/* to->sp: same frame layout, CFI holds */
	mov	sp, x10

.if \fp
	ldr	x10, [sp, #WEFT_CTX_FRAME_FPCR]
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x10			/* `to` left with another FP state (rare) */
1:
.endif
	ldp	d8,  d9,  [sp, #0x00]
	ldp	d10, d11, [sp, #0x10]
	ldp	d12, d13, [sp, #0x20]
	ldp	d14, d15, [sp, #0x30]
	ldp	x19, x20, [sp, #0x40]
	ldp	x21, x22, [sp, #0x50]
	ldp	x23, x24, [sp, #0x60]
	ldp	x25, x26, [sp, #0x70]
	ldp	x27, x28, [sp, #0x80]
	ldp	x29, x30, [sp, #WEFT_CTX_FRAME_X29]
	add	sp, sp, #WEFT_CTX_FRAME_SIZE
	.cfi_adjust_cfa_offset -WEFT_CTX_FRAME_SIZE
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore x29
	.cfi_restore x30
	mov	x0, x2				/* data: the value the switch returns */
	ret
.endm

	.globl	weft__ctx_switch_raw
	.hidden	weft__ctx_switch_raw
	.type	weft__ctx_switch_raw, %function
	.p2align 4
weft__ctx_switch_raw:
#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, %function
weft__ctx_switch:
#endif
	.cfi_startproc
	WEFT_SWITCH 1
	.cfi_endproc
	.size	weft__ctx_switch_raw, .-weft__ctx_switch_raw

/*
 * weft__ctx_switch_threadfp(_raw): the same switch and frame without FPCR: not
 * read, not written, the frame's FPCR slot left as it was. For switches
 * that are calls in spirit, where both sides share the thread's
 * floating-point environment as a function and its caller do: generators
 * (src/sync/gen.c). A frame saved here is only ever resumed here. See the
 * x86-64 file for the measurements behind it.
 */
	.globl	weft__ctx_switch_threadfp_raw
	.hidden	weft__ctx_switch_threadfp_raw
	.type	weft__ctx_switch_threadfp_raw, %function
	.p2align 4
weft__ctx_switch_threadfp_raw:
#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
	.globl	weft__ctx_switch_threadfp
	.hidden	weft__ctx_switch_threadfp
	.type	weft__ctx_switch_threadfp, %function
weft__ctx_switch_threadfp:
#endif
	.cfi_startproc
	WEFT_SWITCH 0
	.cfi_endproc
	.size	weft__ctx_switch_threadfp_raw, .-weft__ctx_switch_threadfp_raw

/*
 * weft__ctx_switch_threadfp_back_raw: a second copy of the switch above for
 * the other direction of a call-like pair (gen.c's yield), as on x86-64,
 * where one copy per direction lets each indirect jump keep one predicted
 * target. Here the switch ends in `ret`, predicted by the return stack,
 * which a stack change defeats either way; the copy is there so that gen.c
 * is the same on both architectures, and costs nothing. Not measured here.
 */
	.globl	weft__ctx_switch_threadfp_back_raw
	.hidden	weft__ctx_switch_threadfp_back_raw
	.type	weft__ctx_switch_threadfp_back_raw, %function
	.p2align 4
weft__ctx_switch_threadfp_back_raw:
	.cfi_startproc
	WEFT_SWITCH 0
	.cfi_endproc
	.size	weft__ctx_switch_threadfp_back_raw, .-weft__ctx_switch_threadfp_back_raw

/*
 * First code of every fresh context, entered by the `ret` of its first
 * switch with sp 16-byte aligned, x0 = data, x19 = function to call,
 * x20 = second argument (see weft__ctx_make). Calls x19(data, x20); that
 * function must never return: if it does, weft__ctx_entry_returned aborts.
 */
	.globl	weft__ctx_trampoline
	.hidden	weft__ctx_trampoline
	.type	weft__ctx_trampoline, %function
	.p2align 4
	.cfi_startproc
	.cfi_undefined x30			/* outermost frame: unwinding stops here */
	nop	/* unwinders look up pc-1 for a caller frame: keep it in this FDE */
weft__ctx_trampoline:
	mov	x1, x20
	blr	x19
	bl	weft__ctx_entry_returned
	brk	#0
	.cfi_endproc
	.size	weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack, "", %progbits
