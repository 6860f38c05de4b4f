/*
 * The saved frame of a switched-out context, shared by C (ctx.c builds the
 * first frame of a fresh context) and the assembly (switch_*.S saves and
 * restores it). Offsets are bytes from the saved stack pointer; ctx.c checks
 * every one against the C struct with _Static_assert, so the two cannot drift.
 *
 * x86-64 SysV (switch_x86_64_sysv_elf.S):
 *   0x00  MXCSR (4 bytes) | x87 control word (2) | 0 (2)   "fpcsr", one qword
 *   0x08  r15     0x10  r14     0x18  r13     0x20  r12
 *   0x28  rbx     0x30  rbp     0x38  return address (resume pc)
 *   0x40  = the resumed context's stack pointer after the switch
 *
 * AArch64 AAPCS64 (switch_aarch64_aapcs_elf.S):
 *   0x00..0x38  d8..d15
 *   0x40..0x88  x19..x28
 *   0x90  x29 (fp)   0x98  x30 (lr, resume pc)
 *   0xa0  FPCR       0xa8  0 (keeps the frame a multiple of 16)
 *   0xb0  = the resumed context's stack pointer after the switch
 */
#ifndef WEFT_CTX_FRAME_H
#define WEFT_CTX_FRAME_H

#if defined(__x86_64__)

#define WEFT_CTX_FRAME_FPCSR  0x00
#define WEFT_CTX_FRAME_R15    0x08
#define WEFT_CTX_FRAME_R14    0x10
#define WEFT_CTX_FRAME_R13    0x18
#define WEFT_CTX_FRAME_R12    0x20
#define WEFT_CTX_FRAME_RBX    0x28
#define WEFT_CTX_FRAME_RBP    0x30
#define WEFT_CTX_FRAME_PC     0x38
#define WEFT_CTX_FRAME_SIZE   0x40

#ifndef __ASSEMBLER__
#include <stdint.h>
struct weft__ctx_frame {
	uint32_t mxcsr;
	uint16_t x87cw;
	uint16_t fpcsr_pad;       /* always 0: the asm compares the whole qword */
	uint64_t r15, r14, r13, r12, rbx, rbp;
	uint64_t pc;
};
#endif

#elif defined(__aarch64__)

#define WEFT_CTX_FRAME_D8     0x00
#define WEFT_CTX_FRAME_X19    0x40
#define WEFT_CTX_FRAME_X29    0x90
#define WEFT_CTX_FRAME_PC     0x98     /* x30 */
#define WEFT_CTX_FRAME_FPCR   0xa0
#define WEFT_CTX_FRAME_SIZE   0xb0

#ifndef __ASSEMBLER__
#include <stdint.h>
struct weft__ctx_frame {
	uint64_t d[8];            /* d8..d15 */
	uint64_t x[10];           /* x19..x28 */
	uint64_t x29;
	uint64_t pc;              /* x30 */
	uint64_t fpcr;
	uint64_t pad;
};
#endif

#else
#error "weft: unsupported architecture (x86-64 and AArch64 only)"
#endif

#endif /* WEFT_CTX_FRAME_H */
