/*
 * src/ctx stacks: sizes, reuse without new mappings, pages kept committed,
 * 100,000 live stacks within vm.max_map_count (MADV_GUARD_INSTALL), the
 * mprotect fallback's clear -EAGAIN, off-size stacks, guards that fault,
 * and a multi-threaded pool that never hands one stack out twice.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx/stack.h"
#include "weft.h"

static long maps_lines(void)
{
#if defined(WEFT_TSAN)
	/* TSan maps shadow memory beside each new mapping of ours, so VMA
	 * counts say nothing about the pool here; the default and ASan builds
	 * check them. */
	cr_skip_test("VMA counts are not meaningful under TSan");
#endif
	FILE *f = fopen("/proc/self/maps", "re");
	cr_assert_not_null(f);
	long n = 0;
	int ch;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* Runs fn in a child with stderr on a pipe; returns the wait status. */
static int run_child(void (*fn)(void), char *buf, size_t cap)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		alarm(120);
		fn();
		_exit(0);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(p[0], buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

Test(stack, sizes_are_checked_and_rounded)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), r = 0;
	cr_assert_eq(weft__stack_size_check(0, &r), -EINVAL);
	cr_assert_eq(weft__stack_size_check(WEFT_STACK_MIN - 1, &r), -EINVAL);
	cr_assert_eq(weft__stack_size_check(SIZE_MAX, &r), -EINVAL);
	cr_assert_eq(weft__stack_size_check(WEFT_STACK_MIN, &r), 0);
	cr_assert_eq(r, WEFT_STACK_MIN);
	cr_assert_eq(weft__stack_size_check(WEFT_STACK_MIN + 1, &r), 0);
	cr_assert_eq(r, WEFT_STACK_MIN + ps);
	cr_assert_eq(weft__stack_size_check(100000, &r), 0);
	cr_assert_eq(r, (100000 + ps - 1) / ps * ps);

	struct weft__stack_pool *p = NULL;
	cr_assert_eq(weft__stack_pool_create(&p, 1024), -EINVAL);
	cr_assert_eq(weft__stack_pool_create(&p, 100000), 0);
	cr_assert_eq(weft__stack_pool_stack_size(p), r);
	struct weft__stack_cache *c;
	struct weft__stack *s;
	cr_assert_eq(weft__stack_cache_create(&c, p), 0);
	cr_assert_eq(weft__stack_get_size(c, 4096, &s), -EINVAL);
	cr_assert_eq(weft__stack_get(c, &s), 0);
	cr_assert_eq(s->size, r);
	cr_assert_eq((uintptr_t)s->lo % ps, 0u);
	weft__stack_put(c, s);
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
}

Test(stack, reuse_makes_no_mapping_and_keeps_pages)
{
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s, *t;
	cr_assert_eq(weft__stack_pool_create(&p, WEFT_STACK_DEFAULT), 0);
	cr_assert_eq(weft__stack_cache_create(&c, p), 0);
	cr_assert_eq(weft__stack_get(c, &s), 0);
	char *top = (char *)s->lo + s->size - 64;
	memset(top, 0xab, 64);                 /* commit the top page */
	weft__stack_put(c, s);
	cr_assert_eq(weft__stack_get(c, &t), 0);
	cr_assert_eq(t, s, "the stack just returned comes back first");
	for (int i = 0; i < 64; i++)
		cr_assert_eq((unsigned char)top[i], 0xab, "page content kept (no MADV_DONTNEED)");
	weft__stack_put(c, t);

	/* Steady state: a get/put cycle with up to 40 live stacks (more than a
	 * cache holds, so the shared pool is exercised) adds no mapping. */
	struct weft__stack *live[40];
	for (int i = 0; i < 40; i++)
		cr_assert_eq(weft__stack_get(c, &live[i]), 0);
	for (int i = 0; i < 40; i++)
		weft__stack_put(c, live[i]);
	long before = maps_lines();
	for (int round = 0; round < 1000; round++) {
		for (int i = 0; i < 40; i++)
			cr_assert_eq(weft__stack_get(c, &live[i]), 0);
		for (int i = 39; i >= 0; i--)
			weft__stack_put(c, live[i]);
	}
	cr_assert_eq(maps_lines(), before, "no new mapping in steady state");
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)(*(struct weft__stack *const *)a)->lo;
	uintptr_t y = (uintptr_t)(*(struct weft__stack *const *)b)->lo;
	return x < y ? -1 : x > y;
}

#define MANY 100000

Test(stack, hundred_thousand_live_stacks_within_max_map_count)
{
	if (!weft__stack_guard_madvise())
		cr_skip_test("MADV_GUARD_INSTALL unavailable (Linux < 6.13)");
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	cr_assert_eq(weft__stack_pool_create(&p, WEFT_STACK_DEFAULT), 0);
	cr_assert_eq(weft__stack_cache_create(&c, p), 0);
	struct weft__stack **s = calloc(MANY, sizeof *s);
	cr_assert_not_null(s);
	long before = maps_lines();
	for (int i = 0; i < MANY; i++) {
		int err = weft__stack_get(c, &s[i]);
		cr_assert_eq(err, 0, "stack %d: %d", i, err);
	}
	long after = maps_lines();
	cr_assert_lt(after - before, 2000, "%ld new mappings for %d stacks", after - before, MANY);
	cr_assert_eq(weft__stack_mapping_count(), 0ul, "no VMAs spent on guards");

	/* all distinct, each with at least a page between it and the next */
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	qsort(s, MANY, sizeof *s, cmp_ptr);
	for (int i = 1; i < MANY; i++)
		cr_assert_geq((uintptr_t)s[i]->lo, (uintptr_t)s[i - 1]->lo + s[i - 1]->size + ps,
		              "stacks %d and %d overlap or share a guard", i - 1, i);
	/* usable: touch the top of every 97th */
	enum { PROBES = MANY / 97 + 1 };
	void **probe = calloc(PROBES, sizeof *probe);
	cr_assert_not_null(probe);
	int np = 0;
	for (int i = 0; i < MANY; i += 97) {
		((volatile char *)s[i]->lo)[s[i]->size - 1] = 1;
		probe[np++] = s[i]->lo;
	}
	for (int i = 0; i < MANY; i++)
		weft__stack_put(c, s[i]);
	free(s);
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
	/* Unmapped, every chunk: mincore says ENOMEM for an address that is
	 * not mapped. (Counting /proc/self/maps lines instead also counted the
	 * allocator's own mappings for the freed chunk arrays, under ASan.) */
	for (int i = 0; i < np; i++) {
		unsigned char v;
		errno = 0;
		cr_assert(mincore(probe[i], ps, &v) == -1 && errno == ENOMEM,
		          "pool_destroy unmaps its chunks: %p still mapped", probe[i]);
	}
	free(probe);
}

/* mprotect fallback against a small pretend vm.max_map_count. */
static void child_map_limit(void)
{
	weft__stack_test_force_mprotect(2000);   /* weft may use 7/8: 1750 VMAs */
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s;
	if (weft__stack_pool_create(&p, WEFT_STACK_MIN) || weft__stack_cache_create(&c, p))
		_exit(90);
	long before = maps_lines();
	int n = 0, err = 0;
	while (n < 5000 && (err = weft__stack_get(c, &s)) == 0)
		n++;
	long grown = maps_lines() - before;
	if (err != -EAGAIN)
		_exit(91);
	if (n < 800 || n > 875)
		_exit(92);
	if (grown < n || weft__stack_mapping_count() > 1750)
		_exit(93);                       /* guards really split the mapping */
	if (weft__stack_get(c, &s) != -EAGAIN)  /* still refused, message once */
		_exit(94);
	/* an off-size stack is refused as well */
	if (weft__stack_get_size(c, 2 * WEFT_STACK_MIN, &s) != -EAGAIN)
		_exit(95);
	_exit(0);
}

Test(stack, mprotect_guards_stop_before_max_map_count_with_a_message)
{
#if defined(WEFT_TSAN)
	cr_skip_test("counts VMAs, which TSan's shadow mappings change; checked in the other builds");
#endif
	char buf[8192];
	int st = run_child(child_map_limit, buf, sizeof buf);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr: %s", st, buf);
	const char *m = strstr(buf, "weft: cannot create more coroutine stacks");
	cr_assert_not_null(m, "stderr: %s", buf);
	cr_assert_null(strstr(m + 1, "weft: cannot create"), "message printed once: %s", buf);
	cr_assert_not_null(strstr(buf, "vm.max_map_count=2000"), "stderr: %s", buf);
}

static struct weft__stack_cache *guard_cache;
static size_t guard_size_req;

static void child_touch_guard(void)
{
	signal(SIGSEGV, SIG_DFL);
	struct weft__stack_pool *p;
	struct weft__stack *s;
	if (weft__stack_pool_create(&p, WEFT_STACK_DEFAULT) ||
	    weft__stack_cache_create(&guard_cache, p) ||
	    weft__stack_get_size(guard_cache, guard_size_req, &s))
		_exit(90);
	((volatile char *)s->lo)[0] = 1;            /* lowest usable byte: fine */
	((volatile char *)s->lo)[-1] = 1;           /* the guard: SIGSEGV */
	_exit(0);
}

Test(stack, guards_fault_for_pooled_and_off_size_stacks)
{
	char buf[1024];
	guard_size_req = WEFT_STACK_DEFAULT;
	int st = run_child(child_touch_guard, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "pooled: status %#x", st);
	guard_size_req = 3 * WEFT_STACK_DEFAULT;
	st = run_child(child_touch_guard, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "off-size: status %#x", st);
}

Test(stack, off_size_stacks)
{
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s, *t;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	cr_assert_eq(weft__stack_pool_create(&p, WEFT_STACK_DEFAULT), 0);
	cr_assert_eq(weft__stack_cache_create(&c, p), 0);
	long before = maps_lines();
	cr_assert_eq(weft__stack_get_size(c, 256 * 1024 + 1, &s), 0);
	cr_assert_eq(s->size, 256 * 1024 + ps);
	((volatile char *)s->lo)[0] = 1;
	((volatile char *)s->lo)[s->size - 1] = 1;
	weft__stack_put(c, s);                       /* unmapped */
	cr_assert_eq(maps_lines(), before, "off-size stack unmapped on put");
	/* the pool's own size is pooled */
	cr_assert_eq(weft__stack_get_size(c, WEFT_STACK_DEFAULT - 100, &s), 0);
	cr_assert_eq(s->size, WEFT_STACK_DEFAULT);
	weft__stack_put(c, s);
	cr_assert_eq(weft__stack_get(c, &t), 0);
	cr_assert_eq(t, s, "same-size request came from the pool");
	weft__stack_put(c, t);
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
}

/* ------------------------------------------------- concurrent pool use -- */
#define THREADS 4
#define OPS     200000
#define HOLD    40

static struct weft__stack_pool *mt_pool;
static atomic_int mt_errors;
static pthread_barrier_t mt_start;

/* The top byte of each stack says "handed out"; a stack given to two
 * holders at once (an ABA bug in the shared stack) trips it. */
static void *mt_worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
	struct weft__stack_cache *c;
	struct weft__stack *held[HOLD];
	int n = 0;
	if (weft__stack_cache_create(&c, mt_pool))
		return (void *)1;
	pthread_barrier_wait(&mt_start);
	for (int op = 0; op < OPS; op++) {
		seed = seed * 1103515245u + 12345u;
		bool get = n == 0 || (n < HOLD && (seed >> 16) % 2);
		if (get) {
			struct weft__stack *s;
			if (weft__stack_get(c, &s)) {
				atomic_fetch_add(&mt_errors, 1);
				break;
			}
			_Atomic char *flag = (_Atomic char *)((char *)s->lo + s->size - 1);
			/* relaxed: the pool's own ordering is what is under test */
			if (atomic_exchange_explicit(flag, 1, memory_order_relaxed) != 0) {
				fprintf(stderr, "stack %p handed out twice\n", s->lo);
				atomic_fetch_add(&mt_errors, 1);
			}
			held[n++] = s;
		} else {
			int i = (int)((seed >> 8) % (unsigned)n);
			struct weft__stack *s = held[i];
			held[i] = held[--n];
			_Atomic char *flag = (_Atomic char *)((char *)s->lo + s->size - 1);
			atomic_store_explicit(flag, 0, memory_order_relaxed);
			weft__stack_put(c, s);
		}
	}
	while (n > 0) {
		struct weft__stack *s = held[--n];
		atomic_store_explicit((_Atomic char *)((char *)s->lo + s->size - 1), 0,
		                      memory_order_relaxed);
		weft__stack_put(c, s);
	}
	weft__stack_cache_destroy(c);
	return NULL;
}

Test(stack, pool_is_safe_across_threads)
{
	pthread_t th[THREADS];
	cr_assert_eq(weft__stack_pool_create(&mt_pool, WEFT_STACK_MIN), 0);
	pthread_barrier_init(&mt_start, NULL, THREADS);
	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, mt_worker, (void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		cr_assert_null(r);
	}
	cr_assert_eq(atomic_load(&mt_errors), 0, "a stack was handed out twice");
	pthread_barrier_destroy(&mt_start);
	weft__stack_pool_destroy(mt_pool);
}

/* ------------------------------------------------------------- trim ----- */

/* Resident pages of [lo, lo + len) (mincore). */
static size_t resident_pages(const void *lo, size_t len)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), n = len / ps, res = 0;
	unsigned char *v = malloc(n);
	cr_assert_not_null(v);
	cr_assert_eq(mincore((void *)(uintptr_t)lo, len, v), 0);
	for (size_t i = 0; i < n; i++)
		res += v[i] & 1;
	free(v);
	return res;
}

#define TRIM_N 200

/* Commits the top page of each of TRIM_N stacks and two more pages of
 * every tenth, then returns them all: the cache keeps at most 16, the rest
 * are free in the shared list. */
static void trim_setup(struct weft__stack_pool **p, struct weft__stack_cache **c,
                       struct weft__stack **s)
{
	cr_assert_eq(weft__stack_pool_create(p, WEFT_STACK_DEFAULT), 0);
	cr_assert_eq(weft__stack_cache_create(c, *p), 0);
	for (int i = 0; i < TRIM_N; i++) {
		cr_assert_eq(weft__stack_get(*c, &s[i]), 0);
		char *top = (char *)s[i]->lo + s[i]->size;
		memset(top - 64, 0xcd, 64);
		if (i % 10 == 0)
			memset(top - 3 * 4096, 0xcd, 64);
	}
	for (int i = 0; i < TRIM_N; i++)
		weft__stack_put(*c, s[i]);
}

Test(stack, trim_gives_pages_back_and_the_stacks_come_back_zeroed)
{
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s[TRIM_N];
	trim_setup(&p, &c, s);
	struct weft__stack_counts k0;
	weft__stack_pool_counts(p, &k0);
	cr_assert_geq(k0.free_warm, (uint64_t)(TRIM_N - 16), "at most 16 in the cache");
	cr_assert_eq(k0.free_cold, 0u);
	cr_assert_eq(k0.trimmed, 0u);

	size_t got = weft__stack_pool_trim(p, 0, SIZE_MAX);
	struct weft__stack_counts k1;
	weft__stack_pool_counts(p, &k1);
	cr_assert_eq(got, k0.free_warm, "every free stack of the shared list trimmed");
	cr_assert_eq(k1.free_warm, 0u);
	cr_assert_eq(k1.free_cold, k0.free_warm);
	cr_assert_eq(k1.mapped, k0.mapped, "trimmed stacks stay in the pool");

	/* every stack outside the cache has no page left; those in the cache
	 * kept theirs */
	size_t in_cache = 0, gone = 0;
	for (int i = 0; i < TRIM_N; i++) {
		size_t r = resident_pages(s[i]->lo, s[i]->size);
		if (r)
			in_cache++;
		else
			gone++;
	}
	cr_assert_leq(in_cache, 16u);
	cr_assert_eq(gone, TRIM_N - in_cache, "pages given back: %zu of our stacks empty, %zu kept",
	             gone, in_cache);
	cr_assert_eq(k1.trimmed, gone, "counted: the stacks that had pages, not the never used");

	/* Handed out again, without a new mapping: the cache's first, then the
	 * trimmed ones, which read as zeroes. */
	long maps = maps_lines();
	struct weft__stack *t[TRIM_N];
	size_t zeroed = 0;
	for (int i = 0; i < TRIM_N; i++) {
		cr_assert_eq(weft__stack_get(c, &t[i]), 0);
		const char *top = (const char *)t[i]->lo + t[i]->size;
		if (top[-64] == 0 && top[-3 * 4096] == 0)
			zeroed++;
		else
			cr_assert_eq((unsigned char)top[-64], 0xcd, "a kept stack keeps its bytes");
	}
	cr_assert_eq(zeroed, TRIM_N - in_cache, "the trimmed stacks came back, zeroed");
	cr_assert_eq(maps_lines(), maps, "no new mapping to hand them out");
	struct weft__stack_counts k2;
	weft__stack_pool_counts(p, &k2);
	cr_assert_eq(k2.mapped, k0.mapped);
	cr_assert_eq(k2.free_cold, got - (TRIM_N - in_cache), "the cold ones were taken first");
	cr_assert_eq(k2.free_warm, 0u);
	for (int i = 0; i < TRIM_N; i++)
		weft__stack_put(c, t[i]);
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
}

Test(stack, trim_keeps_what_it_is_told_and_stops_at_max)
{
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s[TRIM_N];
	trim_setup(&p, &c, s);
	struct weft__stack_counts k0, k1;
	weft__stack_pool_counts(p, &k0);
	cr_assert_eq(weft__stack_pool_trim(p, 0, 7), 7u, "max bounds one call");
	cr_assert_eq(weft__stack_pool_trim(p, k0.free_warm - 7 - 50, SIZE_MAX), 50u);
	weft__stack_pool_counts(p, &k1);
	cr_assert_eq(k1.free_warm, k0.free_warm - 57);
	cr_assert_eq(k1.free_cold, 57u);
	cr_assert_eq(weft__stack_pool_trim(p, k1.free_warm, SIZE_MAX), 0u, "nothing above keep");
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(p);
}

static void child_trimmed_guard(void)
{
	signal(SIGSEGV, SIG_DFL);
	struct weft__stack_pool *p;
	struct weft__stack_cache *c;
	struct weft__stack *s[40];
	if (weft__stack_pool_create(&p, WEFT_STACK_DEFAULT) || weft__stack_cache_create(&c, p))
		_exit(90);
	for (int i = 0; i < 40; i++)
		if (weft__stack_get(c, &s[i]))
			_exit(91);
	for (int i = 0; i < 40; i++) {
		((volatile char *)s[i]->lo)[s[i]->size - 1] = 1;
		weft__stack_put(c, s[i]);
	}
	if (weft__stack_pool_trim(p, 0, SIZE_MAX) == 0)
		_exit(92);
	/* some are in the cache (kept); a trimmed one has no page left */
	int i = 0;
	while (i < 40 && resident_pages(s[i]->lo, s[i]->size) != 0)
		i++;
	if (i == 40)
		_exit(93);
	((volatile char *)s[i]->lo)[0] = 1;         /* lowest usable byte: fine */
	((volatile char *)s[i]->lo)[-1] = 1;        /* the guard: SIGSEGV */
	_exit(0);
}

Test(stack, a_trimmed_stack_keeps_its_guard)
{
	char buf[1024];
	int st = run_child(child_trimmed_guard, buf, sizeof buf);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x, stderr: %s", st, buf);
}
