/*
 * Coroutine stacks: mmap'ed, committed on touch, a guard page below each one,
 * pooled and reused (a per-worker cache in front of a shared lock-free stack).
 *
 * Guard: MADV_GUARD_INSTALL (Linux >= 6.13, no extra VMA) probed once at run
 * time; mprotect(PROT_NONE) otherwise, which costs a VMA per stack: the pool
 * then refuses with -EAGAIN and a clear message before vm.max_map_count runs out.
 *
 * High-water mark (weft_dump): found at dump time, nothing on the spawn or
 * switch path but one owner-only counter bump per get. See
 * weft__stack_high_water().
 *
 * Overflow: a SIGSEGV handler on an alternate signal stack recognises a hit
 * in the guard of the stack running on this thread and prints
 *   weft: stack overflow in coroutine <id> "<name>" (stack <N> KiB)
 * then aborts; any other fault goes to the previous handler unchanged.
 */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>
#include "ctx/stack_list.h"
#include "ctx/tls.h"

struct weft__stack {
	void  *lo;                  /* lowest usable byte (just above the guard)  */
	size_t size;                /* usable bytes                               */
	struct weft__stack *next;   /* free-list link, owned by the pool          */
	/* labels for the overflow message; set by the owner of the stack */
	uint64_t owner_id;
	const char *owner_name;
	/* A generator's stack (src/sync/gen.c) has a descriptor of its own, in
	 * its struct weft_gen, only for the overflow message: gen is then the
	 * handle and gen_body its body function (both printed as addresses),
	 * and gen_resumer the generator whose body last resumed it (NULL: a
	 * coroutine or a plain thread did), set by each resume. NULL gen: a
	 * coroutine's stack. Written and read on the resuming thread only. */
	const void *gen;
	void (*gen_body)(void);
	const struct weft__stack *gen_resumer;
	/* Coroutines that have taken this stack since it was mapped (1: the
	 * present one is its first user, so its high-water mark is its own).
	 * Written by the taking thread (relaxed load + store, no RMW: one
	 * owner at a time, handed over through the pool's own ordering); read
	 * by weft_dump with a relaxed load (a sample). */
	_Atomic uint32_t users;
	/* pool internals */
	struct weft__lnode link;    /* in the pool's shared free list (stack.c)   */
	bool own_mapping;           /* off-size: unmapped by weft__stack_put      */
	const char *chunk_base;     /* pooled: the mapping it was carved from     */
	size_t chunk_len;
};

struct weft__stack_pool;        /* shared by the workers of one runtime       */
struct weft__stack_cache;       /* one per worker; owner thread only          */

/* Round a requested size to pages; -EINVAL below WEFT_STACK_MIN (weft.h). */
int weft__stack_size_check(size_t req, size_t *rounded);

int  weft__stack_pool_create(struct weft__stack_pool **p, size_t stack_size);
void weft__stack_pool_destroy(struct weft__stack_pool *p);   /* unmaps everything */
size_t weft__stack_pool_stack_size(const struct weft__stack_pool *p);

int  weft__stack_cache_create(struct weft__stack_cache **c, struct weft__stack_pool *p);
void weft__stack_cache_destroy(struct weft__stack_cache *c); /* returns its stacks to the pool */

/* Take a stack (cache, then pool, then a fresh mapping). 0, -ENOMEM or
 * -EAGAIN (mapping limit). Caller: the cache's owner thread. */
int  weft__stack_get(struct weft__stack_cache *c, struct weft__stack **out);
/* A stack of another size (per-spawn option): pooled when size equals the
 * pool's, otherwise a mapping of its own that weft__stack_put unmaps. */
int  weft__stack_get_size(struct weft__stack_cache *c, size_t size, struct weft__stack **out);
/* Give it back; its pages stay committed for the next user (until a trim).
 * Caller: the cache's owner thread. */
void weft__stack_put(struct weft__stack_cache *c, struct weft__stack *s);

/* Give back to the kernel (MADV_DONTNEED) the pages of free stacks in the
 * pool's shared list beyond the first `keep`, at most `max` stacks in this
 * call; the stacks stay in the pool, mapped and guarded, and are handed out
 * again (pages faulted in anew) once no untrimmed one is left. Stacks in the
 * workers' caches (at most 16 each) are not touched. Returns how many were
 * trimmed. ANY thread; trims run one at a time (a mutex), never holding up
 * get or put. Cost: a process_madvise(2) per 64 stacks where the kernel has
 * it, else an madvise(2) per stack (stack_map.c, "Batches"). */
size_t weft__stack_pool_trim(struct weft__stack_pool *p, size_t keep, size_t max);

/* The pool's counts, each read on its own (relaxed: a sample). ANY. */
struct weft__stack_counts {
	uint64_t mapped;      /* stacks of the pool's size mapped (chunks)      */
	uint64_t free_warm;   /* free in the shared list, pages kept            */
	uint64_t free_cold;   /* free in the shared list, pages given back      */
	uint64_t trimmed;     /* stacks whose pages a trim gave back, since the
	                         pool was created (not those never used)       */
};
void weft__stack_pool_counts(struct weft__stack_pool *p, struct weft__stack_counts *out);

/* The stack's high-water mark in bytes: from its top down to the deepest
 * word ever written (pooled stacks), or to the deepest page the kernel has
 * committed (off-size stacks, which may be unmapped meanwhile: only mincore
 * touches them). Pooled stacks are never cleared on reuse, so the mark is the
 * deepest of all its users (see `users`). 0 when it cannot tell. Any thread,
 * at any time while the stack's pool exists: a racy sample by design (the
 * scan reads words the running coroutine may be writing; it is exempt from
 * ASan/TSan for that reason). Cost: one mincore() per stack, or per chunk of
 * pooled stacks when a `cache` (may be NULL) is passed, and a scan of at most
 * the deepest page in use. */
struct weft__stack_hw_cache;
size_t weft__stack_high_water(const struct weft__stack *s,
                              struct weft__stack_hw_cache *cache);
/* Lets one dump ask mincore() once per chunk of pooled stacks (one mapping
 * holds them side by side) instead of once per stack. Zero it
 * before the first call; the caller's, not shared. */
struct weft__stack_hw_cache {
	const char *base;           /* first page of the last mincore() range */
	size_t npages;
	unsigned char vec[1024];
};

/* Per-thread set-up for any thread that runs coroutines or generators:
 * installs the alternate signal stack (and, once per process, the SIGSEGV
 * handler). Cheap once done on a thread (a thread-local test). A plain
 * thread's alternate stack is unmapped when the thread exits; a worker's by
 * weft__stack_thread_exit. Caller: the thread itself. */
int  weft__stack_thread_init(void);
void weft__stack_thread_exit(void);
/* The stack now running on this thread (NULL: the thread's own), for the
 * overflow handler. Set by the scheduler at every switch, so inline where
 * ctx/tls.h allows (a call per switch showed in the hand-off's cost). */
#if WEFT__TLS_INLINE
extern intptr_t weft__stack_current_off;
static inline void weft__stack_set_current(struct weft__stack *s)
{
	*WEFT__TLS_AT(struct weft__stack *, weft__stack_current_off) = s;
}
#else
void weft__stack_set_current(struct weft__stack *s);
#endif
/* The stack of the generator whose body runs on this thread now, if any,
 * the innermost when bodies resume other generators (NULL: none); the
 * overflow handler looks at it before the coroutine's stack above. Written
 * by src/sync/gen.c at each resume, yield and return, read there and by the
 * handler, all on the thread itself: a plain thread-local, no atomics (the
 * handler interrupts the thread that wrote it). A direct initial-exec
 * access, not WEFT__TLS_AT: a generator's resume and yield read and write
 * it before their switch, never across one, so the thread pointer cannot be
 * stale, and the switch is the generators' whole cost: the accessor's
 * reload of the offset would add to every value. */
extern __thread const struct weft__stack *weft__gen_current
	__attribute__((tls_model("initial-exec")));
/* Tests only: behave as if the kernel lacked MADV_GUARD_INSTALL (mprotect
 * guards) and as if vm.max_map_count were max_map_count (0: the real one).
 * Call before any pool exists. */
void weft__stack_test_force_mprotect(unsigned long max_map_count);
/* true when guards are MADV_GUARD_INSTALL regions (no VMA per stack). */
bool weft__stack_guard_madvise(void);
/* Memory mappings (VMAs) created by stacks with mprotect guards, process-wide. */
unsigned long weft__stack_mapping_count(void);

#endif /* WEFT_STACK_H */
