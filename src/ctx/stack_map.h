/*
 * src/ctx/stack_map.h: mapping coroutine stacks and their guard pages
 * (stack_map.c), for the pool (stack.c). Not for other layers: they use
 * ctx/stack.h. Every function here: ANY thread.
 */
#ifndef WEFT_STACK_MAP_H
#define WEFT_STACK_MAP_H

#include <stddef.h>
#include <sys/uio.h>

enum { GUARD_UNKNOWN = 0, GUARD_MADVISE = 1, GUARD_MPROTECT = 2 };

/* The page size (sysconf's cached value). */
size_t weft__stack_pagesz(void);
/* GUARD_MADVISE or GUARD_MPROTECT, probed on the first call. */
int weft__stack_guard_probe(void);
/* Map n × [guard page | stack] (stride bytes each) and install the guards.
 * mprotect mode reserves the 2n VMAs first (*vmas says how many). Returns
 * the base, or NULL with *err -ENOMEM or -EAGAIN (mapping limit, reported
 * once on stderr) and nothing left mapped or reserved. */
void *weft__stack_map(size_t stride, unsigned n, unsigned long *vmas, int *err);
/* madvise(2) each of the n ranges in v (advice < 128), through batched
 * process_madvise(2) calls where the kernel allows (stack_map.c, "Batches").
 * 0, or the first error (-ENOMEM, -EINVAL...), ranges after it not
 * advised. */
int weft__stack_advise(const struct iovec *v, unsigned n, int advice);
/* Give back n VMAs of the mprotect budget (the mapping that had them is
 * gone). */
void weft__stack_vma_unreserve(unsigned long n);
/* mprotect mode: VMAs still within weft's share of vm.max_map_count. */
unsigned long weft__stack_vma_left(void);

#endif /* WEFT_STACK_MAP_H */
