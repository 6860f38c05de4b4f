/*
 * Coroutine stacks: mapping, guards, the reuse pool, overflow reports.
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
 * Guards. MADV_GUARD_INSTALL (Linux >= 6.13) turns a page into a guard
 * without a VMA of its own, so a chunk stays one mapping however many
 * stacks it holds. It is probed once per process (and trusted only if a
 * guarded page really faults); where it is missing we
 * mprotect(PROT_NONE) each guard, which splits the chunk into 2 VMAs per
 * stack. vm.max_map_count (65530 by default) then caps the process: we keep
 * a process-wide count of the VMAs we made and refuse with -EAGAIN, and one
 * clear message on stderr, before our stacks take more than 7/8 of it (the
 * rest is left to the program: malloc arenas, libraries, thread stacks).
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
 *
 * High-water mark. Stack pages are committed on first touch and never
 * given back, so the pages mincore() reports resident are the ones ever
 * used; the deepest written word lies in the lowest resident page (or just
 * above it: a page can be resident because someone only read it). We scan
 * words upwards from that page to the first non-zero one. Clearing a stack
 * on reuse to make the mark per coroutine would cost a memset or an madvise
 * per spawn (see "Layout" for why we don't); instead each stack counts its
 * users and the dump says whose mark it is. Off-size stacks are unmapped on
 * put, possibly while the dump looks at them: for those only mincore()
 * (which fails cleanly on an unmapped range) is used, page-granular.
 * Their descriptors are kept on a pool list, not freed, so a dump holding
 * a stale pointer still reads a live descriptor.
 *
 * Overflow. Each coroutine thread has an alternate signal stack
 * (weft__stack_thread_init); the SIGSEGV handler, installed once per
 * process, checks si_addr against the guard of the stack this thread runs
 * (weft__stack_set_current). A hit prints
 *   weft: stack overflow in coroutine <id> "<name>" (stack <N> KiB)
 * with write(2) and aborts; anything else goes to the previous handler as
 * if we had not been there. -fstack-clash-protection (meson.build) makes
 * every large frame probe its pages in order, so it lands in the guard
 * instead of jumping over it.
 */
#include "ctx/stack.h"
#include "debug_hooks.h"
#include "util.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102    /* Linux 6.13; Debian 12's headers lack it */
#endif

#define WEFT__STACK_CACHE_MAX   16u         /* per worker                     */
#define WEFT__STACK_BATCH       8u          /* moved between cache and pool   */
#define WEFT__STACK_CHUNK_BYTES (2u << 20)  /* a chunk maps about this much   */
#define WEFT__STACK_CHUNK_MAX   64u         /* ... but at most so many stacks */
#define WEFT__STACK_MAX         ((size_t)1 << 32) /* sanity bound, 4 GiB      */

enum { GUARD_UNKNOWN = 0, GUARD_MADVISE = 1, GUARD_MPROTECT = 2 };

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

/* -------------------------------------------------- process-wide state --- */

/* Probed once. Every thread would compute the same value, so a racing
 * second probe is harmless; the store is a release (pairs with the acquire
 * loads of guard_mode) so max_maps, written first, is seen with the mode. */
static atomic_int guard_mode;
static unsigned long max_maps;            /* read by the probe (mprotect mode) */
static size_t page_size;                  /* for the signal handler */
/* VMAs made by mprotect-guarded stacks, all pools together. Relaxed: a
 * budget counter, reserved with fetch_add and checked against the limit. */
static atomic_ulong mapped_vmas;
static atomic_flag limit_reported = ATOMIC_FLAG_INIT;

static size_t pagesz(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);   /* glibc: a cached value */
}

static unsigned long read_max_map_count(void)
{
	unsigned long v = 65530;  /* the kernel's default */
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 65530;
		fclose(f);
	}
	return v;
}

static int guard_probe(void)
{
	int m = atomic_load_explicit(&guard_mode, memory_order_acquire);
	if (m != GUARD_UNKNOWN)
		return m;
	size_t ps = pagesz();
	m = GUARD_MPROTECT;
	void *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p != MAP_FAILED) {
		/* Trust the guard only if it faults: write(2) from it must fail
		 * with EFAULT. An emulator (qemu-user) may accept the advice and
		 * do nothing, which would leave stacks without guards. */
		int fds[2];
		if (madvise(p, ps, MADV_GUARD_INSTALL) == 0 && pipe2(fds, O_CLOEXEC) == 0) {
			if (write(fds[1], p, 1) < 0 && errno == EFAULT)
				m = GUARD_MADVISE;
			close(fds[0]);
			close(fds[1]);
		}
		munmap(p, 2 * ps);
	}
	if (m == GUARD_MPROTECT && !max_maps)
		max_maps = read_max_map_count();
	atomic_store_explicit(&guard_mode, m, memory_order_release); /* see guard_mode */
	return m;
}

void weft__stack_test_force_mprotect(unsigned long max_map_count)
{
	max_maps = max_map_count ? max_map_count : read_max_map_count();
	atomic_store_explicit(&guard_mode, GUARD_MPROTECT, memory_order_release);
}

bool weft__stack_guard_madvise(void)
{
	return guard_probe() == GUARD_MADVISE;
}

unsigned long weft__stack_mapping_count(void)
{
	return atomic_load_explicit(&mapped_vmas, memory_order_relaxed);
}

/* mprotect mode: may we make `want` more VMAs? Reserves them if so. */
static bool vma_reserve(unsigned long want)
{
	unsigned long budget = max_maps - max_maps / 8;
	unsigned long cur = atomic_load_explicit(&mapped_vmas, memory_order_relaxed);
	do {
		if (cur + want > budget)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&mapped_vmas, &cur, cur + want,
	                                                memory_order_relaxed,
	                                                memory_order_relaxed));
	return true;
}

static void vma_unreserve(unsigned long n)
{
	atomic_fetch_sub_explicit(&mapped_vmas, n, memory_order_relaxed);
}

static void report_map_limit(void)
{
	if (atomic_flag_test_and_set_explicit(&limit_reported, memory_order_relaxed))
		return;
	fprintf(stderr,
		"weft: cannot create more coroutine stacks: this kernel lacks "
		"MADV_GUARD_INSTALL (Linux >= 6.13), so each stack's guard page costs "
		"memory mappings, and %lu of vm.max_map_count=%lu are in use by stacks "
		"(7/8 is weft's share). Raise the limit (sysctl -w vm.max_map_count=N) "
		"or run fewer coroutines at once. Spawns fail with -EAGAIN meanwhile.\n",
		weft__stack_mapping_count(), max_maps);
}

/* Map [guard|stack] × n and install the guards. mprotect mode reserves the
 * VMAs first. Returns the base or NULL with *err set. */
static void *map_stacks(size_t stride, unsigned n, unsigned long *vmas, int *err)
{
	size_t ps = pagesz(), len = stride * n;
	int mode = guard_probe();
	*vmas = 0;
	if (mode == GUARD_MPROTECT) {
		*vmas = 2ul * n;
		if (!vma_reserve(*vmas)) {
			report_map_limit();
			*err = -EAGAIN;
			return NULL;
		}
	}
	void *base = weft__fault("stack.mmap") ? (errno = ENOMEM, MAP_FAILED)
	           : mmap(NULL, len, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		*err = errno == ENOMEM ? -ENOMEM : -errno;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		char *g = (char *)base + (size_t)i * stride;
		int r = weft__fault("stack.guard") ? (errno = ENOMEM, -1)
		      : mode == GUARD_MADVISE ? madvise(g, ps, MADV_GUARD_INSTALL)
		                              : mprotect(g, ps, PROT_NONE);
		if (r != 0) {
			*err = errno == ENOMEM ? -EAGAIN : -errno;
			if (*err == -EAGAIN)
				report_map_limit();
			munmap(base, len);
			goto fail;
		}
	}
	return base;
fail:
	if (*vmas)
		vma_unreserve(*vmas);
	*vmas = 0;
	return NULL;
}

/* ------------------------------------------------------------ sizes ------- */

int weft__stack_size_check(size_t req, size_t *rounded)
{
	size_t ps = pagesz();
	if (req < WEFT_STACK_MIN || req > WEFT__STACK_MAX)
		return -EINVAL;
	*rounded = (req + ps - 1) & ~(ps - 1);
	return 0;
}

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
	guard_probe();
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
			vma_unreserve(c->vmas);
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
	if (guard_probe() == GUARD_MPROTECT) {
		/* near the mapping limit, take what still fits */
		unsigned long budget = max_maps - max_maps / 8;
		unsigned long used = weft__stack_mapping_count();
		unsigned long left = used < budget ? (budget - used) / 2 : 0;
		if (left < n)
			n = left ? (unsigned)left : 1;
	}
	struct chunk *ch = weft__fault("stack.chunk_alloc") ? NULL
	                 : malloc(sizeof *ch + n * sizeof ch->s[0]);
	if (!ch)
		return -ENOMEM;
	int err = 0;
	ch->base = map_stacks(p->stride, n, &ch->vmas, &err);
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
	char *base = map_stacks(rounded + pagesz(), 1, &vmas, &err);
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
		if (guard_probe() == GUARD_MPROTECT)
			vma_unreserve(2);
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

/* ------------------------------------------------------- high-water ------- */

#define HW_VEC 512u               /* pages per mincore() call */

/* Deepest non-zero word from `from` up to `top`. Reads another coroutine's
 * stack while it may run: racy by design (a sample), and ASan's redzones in
 * its frames are not ours to check, so neither sanitizer looks here. */
__attribute__((no_sanitize("address", "thread")))
static const char *first_nonzero(const char *from, const char *top)
{
	const uintptr_t *w = (const uintptr_t *)from, *end = (const uintptr_t *)top;
	/* 64 bytes per test (from and top are page-aligned): a dump scans up to
	 * a page per stack, cold, so this loop is most of its cost */
	for (; w + 8 <= end; w += 8) {
		uintptr_t any = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
		if (any)
			break;
	}
	for (; w < end; w++)
		if (*w)
			return (const char *)w;
	return NULL;
}

/* Residency of the pages of [lo, lo + npages): from the cache when its last
 * range covers them, else one mincore() over the whole chunk the stack was
 * carved from (pooled stacks; kept for its neighbours), else over these pages
 * alone. NULL when the range is not mapped. */
static const unsigned char *residency(const struct weft__stack *s, const char *lo,
                                      size_t npages, struct weft__stack_hw_cache *c,
                                      unsigned char *own)
{
	size_t ps = pagesz();
	if (c && c->base && lo >= c->base &&
	    (size_t)(lo - c->base) / ps + npages <= c->npages)
		return c->vec + (size_t)(lo - c->base) / ps;
	size_t cpages = s->chunk_len / ps;
	if (c && s->chunk_base && cpages <= sizeof c->vec &&
	    mincore((void *)(uintptr_t)s->chunk_base, s->chunk_len, c->vec) == 0) {
		c->base = s->chunk_base;
		c->npages = cpages;
		return c->vec + (size_t)(lo - c->base) / ps;
	}
	if (npages > HW_VEC || mincore((void *)(uintptr_t)lo, npages * ps, own) != 0)
		return NULL;
	return own;
}

size_t weft__stack_high_water(const struct weft__stack *s, struct weft__stack_hw_cache *cache)
{
	size_t ps = pagesz();
	const char *lo = s->lo, *top = (const char *)s->lo + s->size;
	size_t npages = s->size / ps;
	bool own = s->own_mapping;
	unsigned char vec[HW_VEC];
	for (size_t at = 0; at < npages; at += HW_VEC) {
		size_t n = npages - at < HW_VEC ? npages - at : HW_VEC;
		const unsigned char *v = residency(s, lo + at * ps, n, cache, vec);
		if (!v)
			return 0;           /* unmapped meanwhile (off-size stack) */
		for (size_t i = 0; i < n; i++) {
			if (!(v[i] & 1))
				continue;
			const char *page = lo + (at + i) * ps;
			if (own)
				return (size_t)(top - page);
			const char *w = first_nonzero(page, top);
			return w ? (size_t)(top - w) : (size_t)(top - page);
		}
	}
	return 0;
}

/* --------------------------------------------------------- overflow ------- */

/* initial-exec: read from the signal handler, and written at every switch;
 * no __tls_get_addr (not async-signal-safe) and no lazy allocation. */
static __thread struct weft__stack *tls_current __attribute__((tls_model("initial-exec")));
static __thread void *tls_altstack __attribute__((tls_model("initial-exec")));
static __thread size_t tls_altstack_len __attribute__((tls_model("initial-exec")));
/* weft__stack_thread_init succeeded on this thread (with our alternate
 * stack or one that was there): later calls return at once. */
static __thread bool tls_ready __attribute__((tls_model("initial-exec")));
__thread const struct weft__stack *weft__gen_current __attribute__((tls_model("initial-exec")));

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static struct sigaction old_segv;
static int handler_err;

#if WEFT__TLS_INLINE
WEFT__TLS_OFFSET(weft__stack_current_off, tls_current)
#else
void weft__stack_set_current(struct weft__stack *s)
{
	tls_current = s;
}
#endif

static size_t fmt_u64(char *buf, uint64_t v)
{
	char tmp[24];
	size_t n = 0, i;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

static size_t put_str(char *buf, size_t at, size_t cap, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max && at < cap; i++)
		buf[at++] = s[i];
	return at;
}

static size_t fmt_hex(char *buf, uintptr_t v)
{
	char tmp[2 + 2 * sizeof v];
	size_t n = 0, i;
	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < n; i++)
		buf[2 + i] = tmp[n - 1 - i];
	return n + 2;
}

/* A number at buf[at], if it fits below cap (fmt_u64 and fmt_hex write
 * at most 20 and 18 characters); else nothing. */
static size_t put_u64(char *buf, size_t at, size_t cap, uint64_t v)
{
	return at + 20 <= cap ? at + fmt_u64(buf + at, v) : at;
}

static size_t put_hex(char *buf, size_t at, size_t cap, uintptr_t v)
{
	return at + 18 <= cap ? at + fmt_hex(buf + at, v) : at;
}

/* `coroutine <id> "<name>"` of a coroutine's stack, `generator 0x...
 * (body 0x...)` of a generator's. */
static size_t put_owner(char *buf, size_t n, size_t cap, const struct weft__stack *s)
{
	if (s->gen) {
		n = put_str(buf, n, cap, "generator ", 16);
		n = put_hex(buf, n, cap, (uintptr_t)s->gen);
		n = put_str(buf, n, cap, " (body ", 16);
		n = put_hex(buf, n, cap, (uintptr_t)s->gen_body);
		return put_str(buf, n, cap, ")", 1);
	}
	n = put_str(buf, n, cap, "coroutine ", 16);
	n = put_u64(buf, n, cap, s->owner_id);
	const char *name = s->owner_name;
	if (name && name[0]) {
		n = put_str(buf, n, cap, " \"", 2);
		n = weft__escape_name(buf, n, cap, name, 64);
		n = put_str(buf, n, cap, "\"", 1);
	}
	return n;
}

/* Async-signal-safe: formats by hand, one write(2). A coroutine's stack:
 *   weft: stack overflow in coroutine <id> "<name>" (stack <N> KiB)
 * a generator's, followed by who resumed it: the generators whose bodies
 * resumed it, innermost first (a few, then "..."), and then the coroutine
 * running on this thread, or a plain thread:
 *   weft: stack overflow in generator 0x... (body 0x...) (stack <N> KiB),
 *   resumed by coroutine <id> "<name>"
 * The line is cut, never overrun, when it does not fit the buffer. */
static void report_overflow(const struct weft__stack *s)
{
	char buf[512];
	size_t n = 0, cap = sizeof buf - 1;      /* room kept for the newline */
	n = put_str(buf, n, cap, "weft: stack overflow in ", 64);
	n = put_owner(buf, n, cap, s);
	n = put_str(buf, n, cap, " (stack ", 16);
	n = put_u64(buf, n, cap, s->size / 1024);
	n = put_str(buf, n, cap, " KiB)", 8);
	/* The resumers were each stored on this thread, by the resume that
	 * made the next one run: reading them here reads our own stores. */
	for (int depth = 0; s->gen; depth++) {
		n = put_str(buf, n, cap, ", resumed by ", 16);
		if (depth == 4) {
			n = put_str(buf, n, cap, "...", 3);
			break;
		}
		s = s->gen_resumer ? s->gen_resumer : tls_current;
		if (!s) {
			n = put_str(buf, n, cap, "a plain thread", 16);
			break;
		}
		n = put_owner(buf, n, cap, s);
	}
	buf[n++] = '\n';
	ssize_t w = write(2, buf, n);
	(void)w;
}

/* The fault at a lies in the guard page below s. */
static bool in_guard(const struct weft__stack *s, uintptr_t a)
{
	uintptr_t lo = (uintptr_t)s->lo;
	return a < lo && a >= lo - page_size;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	/* A generator's body runs on the generator's stack, above whatever
	 * coroutine resumed it: that stack is the one to look at first. */
	const struct weft__stack *g = weft__gen_current, *s = tls_current;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (si->si_code > 0 && ((g && in_guard(g, a)) || (s && in_guard(s, a)))) {
		report_overflow(g && in_guard(g, a) ? g : s);
		abort();
	}
	/* Not ours: the previous disposition, unchanged. */
	if (old_segv.sa_flags & SA_SIGINFO) {
		old_segv.sa_sigaction(sig, si, uc);
		return;
	}
	if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
		return;
	}
	/* Default action (the kernel treats an ignored fault as default too):
	 * restore it; a real fault re-executes and kills the process with
	 * SIGSEGV, a sent one is re-raised and delivered when we return. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGSEGV, &dfl, NULL);
	if (si->si_code <= 0)
		raise(SIGSEGV);
}

static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	page_size = pagesz();     /* before the handler can run */
	if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
		handler_err = -errno;
}

/* A thread that exits without weft__stack_thread_exit (a plain thread that
 * ran generators: nothing of weft sees it end) unmaps its alternate stack
 * through this key's destructor; weft__stack_thread_exit clears the key. */
static pthread_key_t altstack_key;
static int altstack_key_err;
static pthread_once_t altstack_key_once = PTHREAD_ONCE_INIT;

static void altstack_release(void)
{
	stack_t ss = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
	if (sigaltstack(&ss, NULL) == 0)
		munmap(tls_altstack, tls_altstack_len);
	tls_altstack = NULL;
	tls_altstack_len = 0;
}

/* Runs at the exit of a thread whose key is still set; its TLS is still
 * there (destructors run before the thread's TLS goes). */
static void altstack_dtor(void *unused)
{
	(void)unused;
	tls_current = NULL;
	weft__gen_current = NULL;
	tls_ready = false;
	if (tls_altstack)
		altstack_release();
}

static void altstack_key_create(void)
{
	altstack_key_err = -pthread_key_create(&altstack_key, altstack_dtor);
}

int weft__stack_thread_init(void)
{
	if (tls_ready)
		return 0;
	pthread_once(&handler_once, install_handler);
	if (handler_err)
		return handler_err;
	pthread_once(&altstack_key_once, altstack_key_create);
	if (altstack_key_err)
		return altstack_key_err;

	/* Keep an alternate stack someone else (ASan, the program) set up, if
	 * it is big enough for our handler and the one we chain to. */
	size_t need = 64 * 1024;
	long min = sysconf(_SC_SIGSTKSZ);
	if (min > 0 && (size_t)min * 4 > need)
		need = ((size_t)min * 4 + pagesz() - 1) & ~(pagesz() - 1);
	stack_t cur;
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE) && cur.ss_size >= need) {
		tls_ready = true;
		return 0;
	}

	size_t len = need + pagesz();
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	mprotect(m, pagesz(), PROT_NONE);   /* overflowing the handler faults too */
	stack_t ss = { .ss_sp = m + pagesz(), .ss_size = need, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0) {
		int err = -errno;
		munmap(m, len);
		return err;
	}
	int err = -pthread_setspecific(altstack_key, m);   /* any non-NULL value */
	if (err) {
		stack_t off = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
		munmap(m, len);
		return err;
	}
	tls_altstack = m;
	tls_altstack_len = len;
	tls_ready = true;
	return 0;
}

void weft__stack_thread_exit(void)
{
	tls_current = NULL;
	tls_ready = false;
	if (!tls_altstack)
		return;
	pthread_setspecific(altstack_key, NULL);
	altstack_release();
}
