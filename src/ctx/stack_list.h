/*
 * src/ctx/stack_list.h: the lock-free free list of the stack pool
 * (stack.c): a Treiber stack of nodes whose head carries a generation that
 * is an integer. Header-only so that tests/cross/list_standalone.c can
 * build it with a hook that widens its race windows (WEFT__LIST_RACE).
 *
 * The head is two 64-bit words changed together by one double-width CAS
 * (cmpxchg16b on x86-64; casp or ldxp/stxp on AArch64, through ck's
 * ck_pr_cas_64_2_value): the top node and a generation, an unsigned 64-bit
 * integer that every successful pop increments. ck_stack_pop_mpmc, which
 * this replaces, kept the generation in a char * and stepped it with
 * pointer arithmetic, undefined from a null pointer (clang's UBSan:
 * "applying non-zero offset 1 to null pointer" on the first pop). Pushes
 * leave the generation alone.
 *
 * ABA. A plain CAS on the top would be wrong where nodes are popped and
 * pushed back all the time: T1 reads top A and A->next B; T2 pops A and B
 * and pushes A; T1's CAS(A -> B) succeeds and B is handed out twice. With
 * the generation, T1 compares {A, g}, and T2's pops made it g + 2: T1's CAS
 * fails. The argument, for a pop of up to k nodes: the popper reads the
 * generation g, then the top A, then walks up to k links down from A, then
 * CASes {A, g} to {the node after the last one taken, g + 1}. If that CAS
 * succeeds, the generation was g from the first read to the CAS (it only
 * grows, by one per pop; 2^64 pops do not happen in the life of a process),
 * so no pop ran in between; and without a pop the top cannot have left A
 * and come back (a push leaves a new node above it). So the list was the
 * same from the read of A to the CAS, and the links walked were its links:
 * a link is written only by the push of its node, and a node being pushed is
 * never in the list (a node is either in the list or owned by one thread).
 * A walk that reads a stale link (its node was popped meanwhile) still reads
 * a live node: nodes must outlive the list (the pool's descriptors live as
 * long as the pool), and it ends in a failed CAS; it takes at most k steps
 * whatever it reads. The generation is read before the top: read after, a
 * pop between the two reads would go unseen.
 *
 * Memory order: a pusher writes the links, then a release fence, then the
 * CAS; a popper's acquire fence after its loads of the head, and after its
 * successful CAS, makes those links and everything the nodes' previous
 * owner wrote visible before it walks or uses them. The fences are C11's
 * around ck's inline-assembly CAS. Under TSan (WEFT_TSAN) the same list
 * runs under a mutex: TSan cannot see the assembly and would report the
 * racy link reads that the argument allows.
 *
 * Every function: ANY thread (a push: the thread that owns the chain).
 */
#ifndef WEFT_STACK_LIST_H
#define WEFT_STACK_LIST_H

#include <ck_pr.h>
#include <stdatomic.h>
#include <stdint.h>
#if defined(WEFT_TSAN)
#include <pthread.h>
#endif

/* Tests only: a hook run between reading the head and the CAS. */
#ifndef WEFT__LIST_RACE
#define WEFT__LIST_RACE() ((void)0)
#endif

struct weft__lnode {
	/* relaxed: read racily by poppers (see "ABA"); the fences order it */
	struct weft__lnode *_Atomic next;
};

struct weft__list {
	_Alignas(16) uint64_t w[2];   /* [0]: top (struct weft__lnode *), [1]: generation */
	/* nodes in the list, counting pushes under way: never below the true
	 * count (a push adds before its CAS, a pop subtracts after its own),
	 * exact when no push runs. relaxed: a figure for the trim policy and
	 * the tests, nothing is published through it. */
	_Atomic uint64_t n;
#if defined(WEFT_TSAN)
	pthread_mutex_t lock;
#endif
};

static inline void weft__list_init(struct weft__list *l)
{
	l->w[0] = l->w[1] = 0;
	atomic_init(&l->n, 0);
#if defined(WEFT_TSAN)
	pthread_mutex_init(&l->lock, NULL);
#endif
}

static inline void weft__list_fini(struct weft__list *l)
{
#if defined(WEFT_TSAN)
	pthread_mutex_destroy(&l->lock);
#else
	(void)l;
#endif
}

static inline struct weft__lnode *weft__list_next(struct weft__lnode *x)
{
	return atomic_load_explicit(&x->next, memory_order_relaxed);
}

static inline uint64_t weft__list_count(struct weft__list *l)
{
	return atomic_load_explicit(&l->n, memory_order_relaxed);
}

#if !defined(WEFT_TSAN)
/* The head, generation first (see "ABA"); either word may be stale or the
 * pair torn: the CAS that follows checks both. */
static inline void weft__list_head(struct weft__list *l, uint64_t v[2])
{
	v[1] = __atomic_load_n(&l->w[1], __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_acquire);    /* generation, then top */
	v[0] = __atomic_load_n(&l->w[0], __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_acquire);    /* top, then its links */
}
#endif

/* Push the chain first .. last (n nodes linked through next; last's link is
 * overwritten). */
static inline void weft__list_push(struct weft__list *l, struct weft__lnode *first,
                                   struct weft__lnode *last, unsigned n)
{
	atomic_fetch_add_explicit(&l->n, n, memory_order_relaxed);
#if defined(WEFT_TSAN)
	pthread_mutex_lock(&l->lock);
	atomic_store_explicit(&last->next, (struct weft__lnode *)(uintptr_t)l->w[0],
	                      memory_order_relaxed);
	l->w[0] = (uintptr_t)first;
	pthread_mutex_unlock(&l->lock);
#else
	uint64_t cur[2], set[2];
	weft__list_head(l, cur);
	for (;;) {
		atomic_store_explicit(&last->next, (struct weft__lnode *)(uintptr_t)cur[0],
		                      memory_order_relaxed);
		set[0] = (uintptr_t)first;
		set[1] = cur[1];              /* a push keeps the generation */
		WEFT__LIST_RACE();
		/* release: the links, and the nodes' last use, before the top */
		atomic_thread_fence(memory_order_release);
		if (ck_pr_cas_64_2_value(l->w, cur, set, cur))
			break;
		atomic_thread_fence(memory_order_acquire);   /* as weft__list_head */
	}
#endif
}

/* Pop up to k (>= 1) nodes: returns the first, the others after it through
 * next, their number in *n (follow only *n - 1 links: the last one's is not
 * NULL); NULL, and *n = 0, when the list is empty. */
static inline struct weft__lnode *weft__list_pop(struct weft__list *l, unsigned k, unsigned *n)
{
	struct weft__lnode *top, *next;
	unsigned got;
#if defined(WEFT_TSAN)
	pthread_mutex_lock(&l->lock);
	top = (struct weft__lnode *)(uintptr_t)l->w[0];
	for (got = 0, next = top; next && got < k; got++)
		next = weft__list_next(next);
	l->w[0] = (uintptr_t)next;
	pthread_mutex_unlock(&l->lock);
#else
	uint64_t cur[2], set[2];
	weft__list_head(l, cur);
	for (;;) {
		top = (struct weft__lnode *)(uintptr_t)cur[0];
		if (!top) {
			*n = 0;
			return NULL;
		}
		/* at most k steps, however stale the links are */
		for (got = 0, next = top; next && got < k; got++)
			next = weft__list_next(next);
		set[0] = (uintptr_t)next;
		set[1] = cur[1] + 1;          /* every pop: integer arithmetic */
		WEFT__LIST_RACE();
		if (ck_pr_cas_64_2_value(l->w, cur, set, cur)) {
			/* acquire: the pushers' writes before we use the nodes */
			atomic_thread_fence(memory_order_acquire);
			break;
		}
		atomic_thread_fence(memory_order_acquire);   /* as weft__list_head */
	}
#endif
	if (got)
		atomic_fetch_sub_explicit(&l->n, got, memory_order_relaxed);
	*n = got;
	return top;
}

#endif /* WEFT_STACK_LIST_H */
