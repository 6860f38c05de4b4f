/*
 * Coroutine stacks: the reuse pool (mapping and guards are stack_map.c's,
 * the high-water mark stack_hw.c's, overflow reports stack_overflow.c's).
 *
 * Layout. Stacks of the pool's size are carved out of chunks: one mmap
 * (MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, never MAP_POPULATE) holding
 * n × (guard page + stack), so growing by n stacks costs one mmap plus the
 * guards (batched: stack_map.c). Nothing is touched here: a page is
 * committed when the coroutine first writes it, and stays so while the
 * stack goes from coroutine to coroutine (a first touch costs microseconds
 * on a VM, docs/internals.md), until a trim gives it back.
 * Chunks are unmapped only by weft__stack_pool_destroy. Off-size stacks
 * (weft__stack_get_size) get a mapping of their own, unmapped on put.
 *
 * Trim. After a spike the pool holds stacks for the peak, their pages
 * committed. weft__stack_pool_trim takes free stacks off the shared list
 * beyond what it is told to keep, gives their pages back
 * (MADV_DONTNEED, batched) and puts them on a second list, cold. get takes
 * cold stacks only when no warm one is left, so a trimmed stack is faulted
 * in again only when the pool would otherwise map a new chunk. The policy
 * (how many to keep, when) is the scheduler's: src/sched/trim.c.
 *
 * Pool. Who touches what:
 *   struct weft__stack_cache   owner worker only, no atomics: a short list
 *                              (WEFT__STACK_CACHE_MAX) in front of the pool.
 *   struct weft__stack_pool    shared: a lock-free list of free stacks
 *                              (stack_list.h: a Treiber stack whose head
 *                              carries an integer generation, the ABA
 *                              argument is there); the chunk list under a
 *                              mutex (slow path: growth, destroy).
 * get: cache, else pop a batch from the shared list, else map a chunk (keep
 * a batch, push the rest). put: into the cache; a full cache pushes half of
 * itself to the shared list, as one chain. Steady state makes no system
 * call. A descriptor lives as long as its pool (its chunk's array), which
 * the list's argument needs: a popper may read the link of a descriptor
 * another thread has just taken.
 */
#include "ctx/stack.h"
#include "ctx/stack_list.h"
#include "ctx/stack_map.h"
#include "debug_hooks.h"
#include "weft.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#define pagesz weft__stack_pagesz

#define WEFT__STACK_CACHE_MAX   16u         /* per worker                     */
#define WEFT__STACK_BATCH       8u          /* moved between cache and pool   */
#define WEFT__STACK_CHUNK_BYTES (2u << 20)  /* the first chunk maps about this */
#define WEFT__STACK_CHUNK_FIRST 64u         /* ... but at most so many stacks */
#define WEFT__STACK_CHUNK_MAX   1024u       /* later ones double up to this   */
#define WEFT__STACK_CHUNK_MAX_BYTES ((size_t)256 << 20) /* ... or this much  */
#define WEFT__STACK_TRIM_BATCH  256u        /* stacks per trim round trip     */

struct chunk {
	struct chunk *next;
	void *base;
	size_t len;
	unsigned long vmas;       /* counted against max_map_count (mprotect mode) */
	unsigned n;
	struct weft__stack s[];
};

struct weft__stack_pool {
	/* shared free list, on its own cache line (hot: every pool get/put):
	 * free stacks whose pages may still be committed ("warm") */
	_Alignas(64) struct weft__list free;
	/* free stacks whose pages the trim gave back ("cold"): taken only when
	 * no warm one is left, before a new chunk is mapped */
	_Alignas(64) struct weft__list cold;
	_Alignas(64) pthread_mutex_t chunk_lock;   /* growth and destroy only */
	struct chunk *chunks;
	struct weft__stack *spare_descs;  /* off-size descriptors, for reuse */
	unsigned chunk_n;         /* stacks in the next chunk, under chunk_lock */
	size_t stack_size;        /* usable bytes per stack */
	size_t stride;            /* guard + stack */
	/* pooled stacks mapped, and stacks trimmed since the pool was made:
	 * relaxed counters, for weft_rt_stats */
	_Atomic uint64_t nstacks, ntrimmed;
	pthread_mutex_t trim_lock;  /* one trim at a time (weft__stack_pool_trim) */
};

struct weft__stack_cache {
	struct weft__stack_pool *pool;
	struct weft__stack *head; /* linked through weft__stack.next */
	unsigned n;
};

/* ------------------------------------------------------------- pool ------- */

static struct weft__stack *stack_of(struct weft__lnode *x)
{
	return (struct weft__stack *)((char *)x - offsetof(struct weft__stack, link));
}

/* Move a popped chain of n onto the cache. Caller: the cache's owner. */
static void cache_take(struct weft__stack_cache *c, struct weft__lnode *x, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct weft__stack *s = stack_of(x);
		x = weft__list_next(x);
		s->next = c->head;
		c->head = s;
		c->n++;
	}
}

static void shared_push(struct weft__stack_pool *p, struct weft__stack *s)
{
	weft__list_push(&p->free, &s->link, &s->link, 1);
}

int weft__stack_pool_create(struct weft__stack_pool **out, size_t stack_size)
{
	size_t size;
	int err = weft__stack_size_check(stack_size, &size);
	if (err)
		return err;
	struct weft__stack_pool *p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63);
	if (!p)
		return -ENOMEM;
	memset(p, 0, sizeof *p);
	weft__list_init(&p->free);
	weft__list_init(&p->cold);
	pthread_mutex_init(&p->chunk_lock, NULL);
	pthread_mutex_init(&p->trim_lock, NULL);
	p->stack_size = size;
	p->stride = size + pagesz();
	size_t n = WEFT__STACK_CHUNK_BYTES / p->stride;
	p->chunk_n = n < 1 ? 1 : n > WEFT__STACK_CHUNK_FIRST ? WEFT__STACK_CHUNK_FIRST : (unsigned)n;
	weft__stack_guard_probe();
	*out = p;
	return 0;
}

void weft__stack_pool_destroy(struct weft__stack_pool *p)
{
	if (!p)
		return;
	struct chunk *c = p->chunks, *next;
	for (; c; c = next) {
		next = c->next;
		munmap(c->base, c->len);
		if (c->vmas)
			weft__stack_vma_unreserve(c->vmas);
		free(c);
	}
	while (p->spare_descs) {
		struct weft__stack *d = p->spare_descs;
		p->spare_descs = d->next;
		free(d);
	}
	pthread_mutex_destroy(&p->chunk_lock);
	pthread_mutex_destroy(&p->trim_lock);
	weft__list_fini(&p->free);
	weft__list_fini(&p->cold);
	free(p);
}

size_t weft__stack_pool_stack_size(const struct weft__stack_pool *p)
{
	return p->stack_size;
}

/* Slow path: map a chunk; its stacks go to the cache (up to a batch) and
 * the shared list. Chunks grow geometrically (the first about 2 MiB, then
 * each twice the last, up to WEFT__STACK_CHUNK_MAX stacks), so a program
 * with a few coroutines maps little while a spike of a million maps a
 * thousand chunks, not thirty thousand, and installs their guards in as
 * few system calls (stack_map.c). Caller: the cache's owner. */
static int pool_grow(struct weft__stack_cache *c)
{
	struct weft__stack_pool *p = c->pool;
	pthread_mutex_lock(&p->chunk_lock);
	unsigned n = p->chunk_n;
	pthread_mutex_unlock(&p->chunk_lock);
	if (weft__stack_guard_probe() == GUARD_MPROTECT) {
		/* near the mapping limit, take what still fits */
		unsigned long left = weft__stack_vma_left() / 2;
		if (left < n)
			n = left ? (unsigned)left : 1;
	}
	struct chunk *ch = weft__fault("stack.chunk_alloc") ? NULL
	                 : malloc(sizeof *ch + n * sizeof ch->s[0]);
	if (!ch)
		return -ENOMEM;
	int err = 0;
	ch->base = weft__stack_map(p->stride, n, &ch->vmas, &err);
	if (!ch->base) {
		free(ch);
		return err;
	}
	ch->len = p->stride * n;
	ch->n = n;
	memset(ch->s, 0, n * sizeof ch->s[0]);
	for (unsigned i = 0; i < n; i++) {
		struct weft__stack *s = &ch->s[i];
		s->lo = (char *)ch->base + (size_t)i * p->stride + pagesz();
		s->size = p->stack_size;
		s->chunk_base = ch->base;
		s->chunk_len = ch->len;
		if (i < WEFT__STACK_BATCH) {
			s->next = c->head;
			c->head = s;
			c->n++;
		} else if (i + 1 < n) {
			atomic_store_explicit(&s->link.next, &ch->s[i + 1].link, memory_order_relaxed);
		}
	}
	if (n > WEFT__STACK_BATCH)   /* the rest as one chain */
		weft__list_push(&p->free, &ch->s[WEFT__STACK_BATCH].link, &ch->s[n - 1].link,
		                n - WEFT__STACK_BATCH);
	atomic_fetch_add_explicit(&p->nstacks, n, memory_order_relaxed);
	pthread_mutex_lock(&p->chunk_lock);
	ch->next = p->chunks;
	p->chunks = ch;
	size_t cap = WEFT__STACK_CHUNK_MAX_BYTES / p->stride;
	if (cap > WEFT__STACK_CHUNK_MAX)
		cap = WEFT__STACK_CHUNK_MAX;
	if (p->chunk_n < cap)
		p->chunk_n = p->chunk_n * 2 > cap ? (unsigned)cap : p->chunk_n * 2;
	pthread_mutex_unlock(&p->chunk_lock);
	return 0;
}

int weft__stack_cache_create(struct weft__stack_cache **out, struct weft__stack_pool *p)
{
	struct weft__stack_cache *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->pool = p;
	*out = c;
	return 0;
}

void weft__stack_cache_destroy(struct weft__stack_cache *c)
{
	if (!c)
		return;
	while (c->head) {
		struct weft__stack *s = c->head;
		c->head = s->next;
		shared_push(c->pool, s);
	}
	free(c);
}

int weft__stack_get(struct weft__stack_cache *c, struct weft__stack **out)
{
	if (!c->head) {
		/* warm stacks first; trimmed ones before a new mapping */
		unsigned n;
		struct weft__lnode *x = weft__list_pop(&c->pool->free, WEFT__STACK_BATCH, &n);
		if (!x)
			x = weft__list_pop(&c->pool->cold, WEFT__STACK_BATCH, &n);
		cache_take(c, x, n);
		if (!c->head) {
			int err = pool_grow(c);
			if (err)
				return err;
		}
	}
	struct weft__stack *s = c->head;
	c->head = s->next;
	c->n--;
	s->next = NULL;
	s->owner_id = 0;
	s->owner_name = NULL;
	/* Only the taking thread writes `users`: relaxed load + store (the
	 * previous owner's writes reached us through the pool's hand-over);
	 * relaxed for the dump's sampling load. */
	atomic_store_explicit(&s->users,
	                      atomic_load_explicit(&s->users, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	*out = s;
	return 0;
}

/* Keep an off-size descriptor for reuse: a dump may still hold it (see
 * "High-water mark"). Freed by weft__stack_pool_destroy. */
static void desc_spare(struct weft__stack_pool *p, struct weft__stack *s)
{
	pthread_mutex_lock(&p->chunk_lock);
	s->next = p->spare_descs;
	p->spare_descs = s;
	pthread_mutex_unlock(&p->chunk_lock);
}

int weft__stack_get_size(struct weft__stack_cache *c, size_t size, struct weft__stack **out)
{
	size_t rounded;
	int err = weft__stack_size_check(size, &rounded);
	if (err)
		return err;
	if (rounded == c->pool->stack_size)
		return weft__stack_get(c, out);
	struct weft__stack_pool *p = c->pool;
	pthread_mutex_lock(&p->chunk_lock);
	struct weft__stack *s = p->spare_descs;
	if (s)
		p->spare_descs = s->next;
	pthread_mutex_unlock(&p->chunk_lock);
	if (!s) {
		s = weft__fault("stack.desc_alloc") ? NULL : malloc(sizeof *s);
		if (!s)
			return -ENOMEM;
	}
	memset(s, 0, sizeof *s);
	unsigned long vmas;
	char *base = weft__stack_map(rounded + pagesz(), 1, &vmas, &err);
	if (!base) {
		desc_spare(p, s);
		return err;
	}
	s->lo = base + pagesz();
	s->size = rounded;
	s->own_mapping = true;
	/* a fresh mapping: its first user (relaxed, see weft__stack_get) */
	atomic_store_explicit(&s->users, 1, memory_order_relaxed);
	*out = s;
	return 0;
}

void weft__stack_put(struct weft__stack_cache *c, struct weft__stack *s)
{
	if (s->own_mapping) {
		munmap((char *)s->lo - pagesz(), s->size + pagesz());
		if (weft__stack_guard_probe() == GUARD_MPROTECT)
			weft__stack_vma_unreserve(2);
		desc_spare(c->pool, s);
		return;
	}
	if (c->n >= WEFT__STACK_CACHE_MAX) {
		/* full: hand half of it to the other workers, one chain, one CAS */
		struct weft__stack *first = c->head, *last = first;
		for (unsigned i = 1; i < WEFT__STACK_CACHE_MAX / 2; i++) {
			atomic_store_explicit(&last->link.next, &last->next->link, memory_order_relaxed);
			last = last->next;
		}
		c->head = last->next;
		c->n -= WEFT__STACK_CACHE_MAX / 2;
		weft__list_push(&c->pool->free, &first->link, &last->link, WEFT__STACK_CACHE_MAX / 2);
	}
	s->next = c->head;
	c->head = s;
	c->n++;
}

/* ------------------------------------------------------------- trim ------- */

size_t weft__stack_pool_trim(struct weft__stack_pool *p, size_t keep, size_t max)
{
	size_t done = 0;
	pthread_mutex_lock(&p->trim_lock);
	while (done < max) {
		/* the count may run ahead of the list (pushes under way): the pop
		 * then takes fewer, and the next round looks again */
		uint64_t warm = weft__list_count(&p->free);
		if (warm <= keep)
			break;
		size_t want = warm - keep;
		if (want > max - done)
			want = max - done;
		if (want > WEFT__STACK_TRIM_BATCH)
			want = WEFT__STACK_TRIM_BATCH;
		unsigned n;
		struct weft__lnode *first = weft__list_pop(&p->free, (unsigned)want, &n);
		if (!first)
			break;
		struct iovec v[WEFT__STACK_TRIM_BATCH];
		struct weft__lnode *x = first, *last = first;
		unsigned nv = 0;
		for (unsigned i = 0; i < n; i++) {
			struct weft__stack *s = stack_of(x);
			/* users 0: nobody took it since it was mapped or trimmed,
			 * so it has no page to give back (a fresh chunk's tail) */
			if (atomic_load_explicit(&s->users, memory_order_relaxed))
				v[nv++] = (struct iovec){ s->lo, s->size };
			/* the high-water mark starts again with the next user (we own
			 * the stack now: relaxed, as weft__stack_get) */
			atomic_store_explicit(&s->users, 0, memory_order_relaxed);
			last = x;
			x = weft__list_next(x);
		}
		/* MADV_DONTNEED, not MADV_FREE: the pages leave the RSS now, and a
		 * later user finds zeroes (it expects nothing else); guard pages
		 * are not in the ranges, and a guard installed with
		 * MADV_GUARD_INSTALL survives DONTNEED anyway. A failure (ENOMEM
		 * splitting a VMA: mprotect guards) leaves the pages where they
		 * were, which is only memory not given back. */
		(void)weft__stack_advise(v, nv, MADV_DONTNEED);
		weft__list_push(&p->cold, first, last, n);
		atomic_fetch_add_explicit(&p->ntrimmed, nv, memory_order_relaxed);
		done += n;
	}
	pthread_mutex_unlock(&p->trim_lock);
	return done;
}

void weft__stack_pool_counts(struct weft__stack_pool *p, struct weft__stack_counts *out)
{
	out->mapped = atomic_load_explicit(&p->nstacks, memory_order_relaxed);
	out->free_warm = weft__list_count(&p->free);
	out->free_cold = weft__list_count(&p->cold);
	out->trimmed = atomic_load_explicit(&p->ntrimmed, memory_order_relaxed);
}
