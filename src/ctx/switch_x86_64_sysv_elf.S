/*
 * Context switch, x86-64 System V ABI, ELF, GNU as.
 *
 *   void *weft__ctx_switch_raw(struct weft__ctx *from, struct weft__ctx *to,
 *                              void *data);
 *       rdi = from (its first field is the saved sp), rsi = to, rdx = data.
 *
 * Pushes the callee-saved registers and the FP control state onto the
 * running stack, stores rsp in from->sp, loads to->sp, pops the same frame
 * and continues in `to` with rax = data (the return value of the
 * weft__ctx_switch_raw call `to` made when it was switched out).
 *
 * Saved frame, at from->sp (offsets in ctx_frame.h, checked in ctx.c):
 *
 *   +------+--------------------------------------------+
 *   | 0x00 | MXCSR (4) | x87 CW (2) | 0 (2)   = fpcsr   |  <- saved sp
 *   | 0x08 | r15                                         |
 *   | 0x10 | r14                                         |
 *   | 0x18 | r13                                         |
 *   | 0x20 | r12                                         |
 *   | 0x28 | rbx                                         |
 *   | 0x30 | rbp                                         |
 *   | 0x38 | resume pc (the caller's return address)     |
 *   +------+--------------------------------------------+
 *     0x40   = caller's rsp after the return
 *
 * Two details that cost or save nanoseconds (measured here, 2 vCPU VM):
 *
 * - How the switch ends. The return stack buffer (RSB) predicts a `ret`
 *   from the calls made on this thread, whatever stack they were made on.
 *   When `to` was switched out from the very call site that called us now
 *   (the scheduler's: every coroutine leaves through one call in
 *   switch_out), a plain `ret` lands where the RSB predicts, and the RSB
 *   stays balanced, so the returns that follow up `to`'s call chain are
 *   predicted too when its chain has the same shape as ours (two
 *   coroutines parked in the same channel receive). Otherwise (a fresh
 *   context, whose first pc is the trampoline; a scheduler context; two
 *   loops that switch from different places) the switch ends with
 *   `pop %r8; jmp *%r8`, which the branch target buffer predicts, where a
 *   `ret` would always miss. The scheduler's switch compares the two
 *   return addresses and takes the matching exit (`samesite` below; the
 *   generators' switches are entered by tail jumps, not calls, and always
 *   jump). Always jumping left the RSB one entry deep with our caller's
 *   return address, so every `ret` after the switch, up the resumed
 *   coroutine's chain, was predicted from the wrong entry. Measured with
 *   weft-bench pinned to one CPU, 3 runs alternating, ns, before/after:
 *   yield 47/35, ring (1 worker) 134/109, pingpong (1 worker) 240/220;
 *   the switch benchmark (two loops, two call sites: the jump exit) 6.1/5.5;
 *   spawn, skynet, fib, sleep (2 workers) within noise.
 *
 * - MXCSR and the x87 control word are callee-saved in the SysV ABI, so a
 *   switch hands each context back the control state it left with: saved
 *   (stmxcsr, fnstcw) and restored (ldmxcsr, fldcw) on every switch. We
 *   measured the cheaper-looking alternative, "store, compare with the
 *   incoming frame, load only if different" (the state is per thread and
 *   nothing runs between our save and our restore, so the saved values are
 *   the thread's current state; a program that never changes the rounding
 *   mode would never load). It is slower: reading back what stmxcsr /
 *   fnstcw just stored cannot be store-forwarded and stalls, while the
 *   loads themselves are cheap. Any scheme that notices a change must
 *   execute the stores anyway, so this is within the cost of the loads of
 *   the best possible that keeps the ABI promise on every switch (the
 *   table of the four variants: docs/internals.md, Measurements).
 *   A fresh context starts with the FP control state of the thread that
 *   made it (as a new thread inherits its creator's), see weft__ctx_make.
 *
 * CFI: the frame layout is the same on both stacks, so one description is
 * true before and after the stack pointer moves; gdb and perf can unwind
 * from any instruction. weft__ctx_trampoline is the outermost frame of every
 * fresh context (return address undefined, rbp = 0).
 *
 * CET: endbr64 at each entry. The `jmp *%r8` lands on a return address,
 * which is no IBT landing pad, so this object deliberately carries no
 * .note.gnu.property IBT/SHSTK marking (Linux enables neither for user
 * space by default; a shadow stack would need its own switch anyway).
 */
#include "ctx/ctx_frame.h"

	.text

/*
 * The switch, once, for every entry point below: fp=1 saves and restores
 * the FP control state (weft__ctx_switch_raw), fp=0 leaves it alone
 * (weft__ctx_switch_threadfp_raw and its copy). Same frame either way.
 * samesite=1 returns with `ret` when `to` resumes at our own return address
 * (see "How the switch ends" above); r9 (caller-saved, not an argument
 * here) carries that address across the change of stack.
 */
.macro WEFT_SWITCH fp, samesite
	endbr64
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbp, 0
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbx, 0
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r12, 0
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r13, 0
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r14, 0
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r15, 0
	subq	$8, %rsp			/* fpcsr slot */
	.cfi_adjust_cfa_offset 8
.if \fp
	stmxcsr	WEFT_CTX_FRAME_FPCSR(%rsp)
	fnstcw	WEFT_CTX_FRAME_FPCSR+4(%rsp)
.endif

.if \samesite
	movq	WEFT_CTX_FRAME_PC(%rsp), %r9	/* where our caller returns to */
.endif
	movq	%rsp, (%rdi)			/* from->sp */
	movq	(%rsi), %rsp			/* to->sp: same frame layout, CFI holds */

.if \fp
	ldmxcsr	WEFT_CTX_FRAME_FPCSR(%rsp)
	fldcw	WEFT_CTX_FRAME_FPCSR+4(%rsp)
.endif
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	popq	%r15
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r15
	popq	%r14
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r14
	popq	%r13
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r13
	popq	%r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r12
	popq	%rbx
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbx
	popq	%rbp
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbp
.if \samesite
	/* `to` was switched out from the call site we were called from: a
	 * `ret` lands where the return stack predicts and keeps it balanced */
	cmpq	(%rsp), %r9
	jne	1f
	movq	%rdx, %rax			/* data: the value the switch returns */
	ret
1:
.endif
	popq	%r8
	.cfi_adjust_cfa_offset -8
	.cfi_register %rip, %r8
	movq	%rdx, %rax			/* data: the value the switch returns */
	jmp	*%r8
.endm

	.globl	weft__ctx_switch_raw
	.hidden	weft__ctx_switch_raw
	.type	weft__ctx_switch_raw, @function
	.p2align 4
weft__ctx_switch_raw:
#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
	/* No tool hooks to run: the raw switch is weft__ctx_switch itself. */
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, @function
weft__ctx_switch:
#endif
	.cfi_startproc
	WEFT_SWITCH 1, 1
	.cfi_endproc
	.size	weft__ctx_switch_raw, .-weft__ctx_switch_raw

/*
 * weft__ctx_switch_threadfp(_raw): the same switch and the same frame, but the FP
 * control state is left alone: not stored, not loaded. For switches that
 * are calls in spirit, where both sides run in the thread's floating-point
 * environment as a function and its caller do: generators (src/sync/gen.c),
 * whose resume and yield pair up on one thread. The frame's fpcsr slot is
 * left unwritten, so a frame saved here must only ever be resumed here; gen.c
 * keeps to that (every switch between a generator body and its caller, the
 * body's last one included, is this one). Saves the stmxcsr/fnstcw/
 * ldmxcsr/fldcw group on every switch.
 */
	.globl	weft__ctx_switch_threadfp_raw
	.hidden	weft__ctx_switch_threadfp_raw
	.type	weft__ctx_switch_threadfp_raw, @function
	.p2align 4
weft__ctx_switch_threadfp_raw:
#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
	.globl	weft__ctx_switch_threadfp
	.hidden	weft__ctx_switch_threadfp
	.type	weft__ctx_switch_threadfp, @function
weft__ctx_switch_threadfp:
#endif
	.cfi_startproc
	WEFT_SWITCH 0, 0
	.cfi_endproc
	.size	weft__ctx_switch_threadfp_raw, .-weft__ctx_switch_threadfp_raw

/*
 * weft__ctx_switch_threadfp_back_raw: the same switch again, a second copy,
 * for the other direction of a call-like pair: gen.c's resume goes through
 * weft__ctx_switch_threadfp_raw, its yield through this one. The switch ends
 * in an indirect jump to where the other side left off. One copy used both
 * ways jumps to two places in turn (the body's yield site, the caller's
 * resume site), and the branch target predictor missed on most values; with
 * a copy per direction each jump has one target while a loop runs (a third
 * of the cost of a value, docs/internals.md). Normal builds only; tool builds go through the C wrapper both ways.
 */
	.globl	weft__ctx_switch_threadfp_back_raw
	.hidden	weft__ctx_switch_threadfp_back_raw
	.type	weft__ctx_switch_threadfp_back_raw, @function
	.p2align 4
weft__ctx_switch_threadfp_back_raw:
	.cfi_startproc
	WEFT_SWITCH 0, 0
	.cfi_endproc
	.size	weft__ctx_switch_threadfp_back_raw, .-weft__ctx_switch_threadfp_back_raw

/*
 * First code of every fresh context, entered by the `jmp *%r8` of its first
 * switch with rsp 16-byte aligned, rax = data, r12 = function to call,
 * rbx = second argument (see weft__ctx_make). Calls r12(data, rbx); that
 * function must never return: if it does, weft__ctx_entry_returned aborts.
 */
	.globl	weft__ctx_trampoline
	.hidden	weft__ctx_trampoline
	.type	weft__ctx_trampoline, @function
	.p2align 4
	.cfi_startproc
	.cfi_undefined %rip			/* outermost frame: unwinding stops here */
	nop	/* unwinders look up pc-1 for a caller frame: keep it in this FDE */
weft__ctx_trampoline:
	endbr64
	movq	%rax, %rdi
	movq	%rbx, %rsi
	callq	*%r12
	callq	weft__ctx_entry_returned
	ud2
	.cfi_endproc
	.size	weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack, "", @progbits
