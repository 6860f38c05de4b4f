/*
 * Coroutine stacks: the reuse pool (mapping and guards are stack_map.c's,
 * the high-water mark stack_hw.c's, overflow reports stack_overflow.c's).
 *
 * Layout. Stacks of the pool's size are carved out of chunks: one mmap
 * (MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, never MAP_POPULATE) holding
 * n × (guard page + stack), so growing by n stacks costs one mmap plus the
 * guards. Nothing is touched here: a page is committed when the coroutine
 * first writes it, and once committed it stays so (a stack that comes back
 * is never MADV_DONTNEED'ed: a first touch costs microseconds on a VM,
 * docs/internals.md).
 * Chunks are unmapped only by weft__stack_pool_destroy. Off-size stacks
 * (weft__stack_get_size) get a mapping of their own, unmapped on put.
 *
 * Pool. Who touches what:
 *   struct weft__stack_cache   owner worker only, no atomics: a short list
 *                              (WEFT__STACK_CACHE_MAX) in front of the pool.
 *   struct weft__stack_pool    shared: a ck_stack of free stacks; the chunk
 *                              list under a mutex (slow path: growth, destroy).
 * get: cache, else pop a batch from the shared stack, else map a chunk (keep
 * a batch, push the rest). put: into the cache; a full cache pushes half of
 * itself to the shared stack. Steady state makes no system call.
 *
 * ABA. ck_stack_pop_upmc (plain CAS on head) is only safe when no popped
 * entry can be pushed back while another thread is between reading head and
 * head->next -- here a stack is popped and pushed again all the time, so
 * upmc would be wrong: T1 reads head A and A->next B; T2 pops A and B and
 * pushes A; T1's CAS(A -> B) succeeds and B is handed out twice. We use
 * ck_stack_pop_mpmc, which pairs head with a generation counter in one
 * double-width CAS (cmpxchg16b / ldxp-stxp), so that CAS fails. Reading
 * A->next of an entry someone else popped meanwhile is harmless (stack
 * descriptors live until the pool is destroyed; the CAS then fails).
 * Pushes need no generation (ck_stack_push_mpmc is push_upmc).
 * Under TSan the shared stack is the same list guarded by a mutex: TSan
 * cannot see ck's inline-asm atomics and would flag the benign next read.
 */
#include "ctx/stack.h"
#include "ctx/stack_map.h"
#include "debug_hooks.h"
#include "weft.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define pagesz weft__stack_pagesz

#define WEFT__STACK_CACHE_MAX   16u         /* per worker                     */
#define WEFT__STACK_BATCH       8u          /* moved between cache and pool   */
#define WEFT__STACK_CHUNK_BYTES (2u << 20)  /* a chunk maps about this much   */
#define WEFT__STACK_CHUNK_MAX   64u         /* ... but at most so many stacks */

struct chunk {
	struct chunk *next;
	void *base;
	size_t len;
	unsigned long vmas;       /* counted against max_map_count (mprotect mode) */
	unsigned n;
	struct weft__stack s[];
};

struct weft__stack_pool {
	/* shared free stack, on its own cache line (hot: every pool get/put) */
#if defined(WEFT_TSAN)
	pthread_mutex_t free_lock;
#endif
	_Alignas(64) ck_stack_t free;   /* 16-byte aligned for the double CAS */
	_Alignas(64) pthread_mutex_t chunk_lock;   /* growth and destroy only */
	struct chunk *chunks;
	struct weft__stack *spare_descs;  /* off-size descriptors, for reuse */
	size_t stack_size;        /* usable bytes per stack */
	size_t stride;            /* guard + stack */
	unsigned chunk_n;
};

struct weft__stack_cache {
	struct weft__stack_pool *pool;
	struct weft__stack *head; /* linked through weft__stack.next */
	unsigned n;
};

/* ------------------------------------------------------------- pool ------- */

CK_STACK_CONTAINER(struct weft__stack, link, stack_of_link)

static void shared_push(struct weft__stack_pool *p, struct weft__stack *s)
{
#if defined(WEFT_TSAN)
	pthread_mutex_lock(&p->free_lock);
	ck_stack_push_spnc(&p->free, &s->link);
	pthread_mutex_unlock(&p->free_lock);
#else
	/* CAS on head; ck fences the store of link.next before it (release). */
	ck_stack_push_mpmc(&p->free, &s->link);
#endif
}

static struct weft__stack *shared_pop(struct weft__stack_pool *p)
{
	ck_stack_entry_t *e;
#if defined(WEFT_TSAN)
	pthread_mutex_lock(&p->free_lock);
	e = ck_stack_pop_npsc(&p->free);
	pthread_mutex_unlock(&p->free_lock);
#else
	/* generation-counted double CAS, see "ABA" above; ck orders the load
	 * of head before the load of head->next (pairs with push's fence). */
	e = ck_stack_pop_mpmc(&p->free);
#endif
	return e ? stack_of_link(e) : NULL;
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
	ck_stack_init(&p->free);
#if defined(WEFT_TSAN)
	pthread_mutex_init(&p->free_lock, NULL);
#endif
	pthread_mutex_init(&p->chunk_lock, NULL);
	p->stack_size = size;
	p->stride = size + pagesz();
	size_t n = WEFT__STACK_CHUNK_BYTES / p->stride;
	p->chunk_n = n < 1 ? 1 : n > WEFT__STACK_CHUNK_MAX ? WEFT__STACK_CHUNK_MAX : (unsigned)n;
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
#if defined(WEFT_TSAN)
	pthread_mutex_destroy(&p->free_lock);
#endif
	free(p);
}

size_t weft__stack_pool_stack_size(const struct weft__stack_pool *p)
{
	return p->stack_size;
}

/* Slow path: map a chunk; its stacks go to the cache (up to a batch) and
 * the shared stack. Caller: the cache's owner. */
static int pool_grow(struct weft__stack_cache *c)
{
	struct weft__stack_pool *p = c->pool;
	unsigned n = p->chunk_n;
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
		} else {
			shared_push(p, s);
		}
	}
	pthread_mutex_lock(&p->chunk_lock);
	ch->next = p->chunks;
	p->chunks = ch;
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
		for (unsigned i = 0; i < WEFT__STACK_BATCH; i++) {
			struct weft__stack *s = shared_pop(c->pool);
			if (!s)
				break;
			s->next = c->head;
			c->head = s;
			c->n++;
		}
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
		/* full: hand the older half to the other workers */
		for (unsigned i = 0; i < WEFT__STACK_CACHE_MAX / 2; i++) {
			struct weft__stack *o = c->head;
			c->head = o->next;
			c->n--;
			shared_push(c->pool, o);
		}
	}
	s->next = c->head;
	c->head = s;
	c->n++;
}
