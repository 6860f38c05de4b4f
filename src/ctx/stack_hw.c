/*
 * Coroutine stacks: the high-water mark weft_dump prints (ctx/stack.h,
 * weft__stack_high_water).
 *
 * Stack pages are committed on first touch and kept while the stack is
 * pooled (until the pool trims it, which gives its pages back and starts
 * its count of users again: stack.c), so the pages mincore() reports
 * resident are the ones used since; the deepest written word lies in the
 * lowest resident page (or just above it: a page can be resident because
 * someone only read it). We scan words upwards from that page to the first
 * non-zero one. Clearing a stack on reuse to make the mark per coroutine
 * would cost a memset or an madvise per spawn; instead each stack counts its
 * users and the dump says whose mark it is. Off-size stacks are unmapped on
 * put, possibly while the dump looks at them: for those only mincore()
 * (which fails cleanly on an unmapped range) is used, page-granular.
 * Their descriptors are kept on a pool list, not freed, so a dump holding
 * a stale pointer still reads a live descriptor.
 */
#include "ctx/stack.h"
#include "ctx/stack_map.h"

#include <stdint.h>
#include <sys/mman.h>

#define pagesz weft__stack_pagesz

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
