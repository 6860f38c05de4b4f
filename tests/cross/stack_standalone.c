/*
 * The stack pool and coroutine migration tested without Criterion, so that
 * the TSan build can check them (Criterion cannot run under TSan,
 * Snaipe/Criterion#274). Four threads take and return stacks through their
 * caches and the shared pool; a byte at the top of each stack, plain (not
 * atomic) on purpose, marks it handed out: TSan flags any missing
 * happens-before between a put and the next get, and "handed out twice"
 * any double hand-out. Then one coroutine is resumed by 50 threads in turn.
 * Exit 0 on success.
 */
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "weft.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define OPS     100000
#define HOLD    40

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                \
		}                                                               \
	} while (0)

static struct weft__stack_pool *pool;
static atomic_int errs;

static char *flag_of(struct weft__stack *s)
{
	return (char *)s->lo + s->size - 1;
}

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
	struct weft__stack_cache *c;
	struct weft__stack *held[HOLD];
	int n = 0;
	CHECK(weft__stack_cache_create(&c, pool) == 0);
	for (int op = 0; op < OPS; op++) {
		seed = seed * 1103515245u + 12345u;
		if (n == 0 || (n < HOLD && (seed >> 16) % 2)) {
			struct weft__stack *s;
			CHECK(weft__stack_get(c, &s) == 0);
			if (*flag_of(s)) {
				fprintf(stderr, "stack %p handed out twice\n", s->lo);
				atomic_fetch_add(&errs, 1);
			}
			*flag_of(s) = 1;
			held[n++] = s;
		} else {
			int i = (int)((seed >> 8) % (unsigned)n);
			struct weft__stack *s = held[i];
			held[i] = held[--n];
			*flag_of(s) = 0;
			weft__stack_put(c, s);
		}
	}
	while (n) {
		struct weft__stack *s = held[--n];
		*flag_of(s) = 0;
		weft__stack_put(c, s);
	}
	weft__stack_cache_destroy(c);
	return NULL;
}

/* Migration: one coroutine resumed by a different thread each time. */
static struct weft__ctx co;
static struct weft__ctx *home;       /* set before each resume; join orders it */
static int resumed;

static void co_entry(void *data)
{
	for (;;) {
		resumed++;
		weft__ctx_switch(&co, home, NULL);
	}
}

static void *resumer(void *arg)
{
	struct weft__ctx me;
	weft__ctx_init_thread(&me);
	CHECK(weft__stack_thread_init() == 0);
	home = &me;
	weft__ctx_switch(&me, &co, NULL);
	weft__ctx_release(&me);
	weft__stack_thread_exit();
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	CHECK(weft__stack_pool_create(&pool, WEFT_STACK_MIN) == 0);
	for (uintptr_t i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	CHECK(atomic_load(&errs) == 0);

	struct weft__stack_cache *c;
	struct weft__stack *s;
	CHECK(weft__stack_cache_create(&c, pool) == 0);
	CHECK(weft__stack_get(c, &s) == 0);
	weft__ctx_make(&co, s->lo, s->size, co_entry);
	for (int i = 0; i < 50; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, resumer, NULL) == 0);
		pthread_join(t, NULL);
	}
	CHECK(resumed == 50);
	weft__ctx_release(&co);
	weft__stack_put(c, s);
	weft__stack_cache_destroy(c);
	weft__stack_pool_destroy(pool);
	puts("stack_standalone: all passed");
	return 0;
}
