/*
 * Test-only hooks compiled into every layer, both empty in normal builds.
 *
 * weft__perturb(): with -Dperturb=true, a random yield or short spin at the
 *   scheduler's atomic steps (before a CAS of a run queue, around park/wake
 *   transitions, the idle protocol), as Go randomises its scheduler under the
 *   race detector, so stress runs reach interleavings a quiet machine never
 *   shows. Rate and seed from WEFT_PERTURB="rate[,seed]" (rate in 1/1000).
 *
 * weft__fault(point): with -Dfault_injection=true, true when the failure
 *   point named `point` should fail now. Rate and seed from
 *   WEFT_FAULT="rate[,seed[,point-substring]]" (rate in 1/1000). Call sites
 *   fail the way the real call would (-ENOMEM, -EAGAIN, a short count...).
 *
 * Both are implemented in src/debug_hooks.c (stress/ owns them).
 */
#ifndef WEFT_DEBUG_HOOKS_H
#define WEFT_DEBUG_HOOKS_H

#include <stdbool.h>

#if defined(WEFT_PERTURB)
void weft__perturb_slow(void);
#  define weft__perturb() weft__perturb_slow()
#else
#  define weft__perturb() ((void)0)
#endif

#if defined(WEFT_FAULT_INJECTION)
bool weft__fault_slow(const char *point);
/* Faults injected so far in this process, and whether WEFT_FAULT asks for
 * any (a rate above 0): the fault scenario checks it really injected. */
unsigned long weft__fault_injected(void);
bool weft__fault_enabled(void);
#  define weft__fault(point) __builtin_expect(weft__fault_slow(point), 0)
#else
#  define weft__fault(point) false
#endif

#endif /* WEFT_DEBUG_HOOKS_H */
