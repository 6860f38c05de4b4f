/*
 * src/sched/task.c: coroutine records, live-task accounting, coroutine
 * locals.
 *
 * Records come from slabs of 256 that are never freed before the runtime
 * is (task.h: type-stable memory), through a free list under rt->pool_lock,
 * with a per-worker cache of up to WEFT__TASK_CACHE in front of it so that
 * a spawn or a return normally takes no lock. A record is recycled when its
 * last reference goes: the running coroutine holds one, a joinable handle
 * the other.
 */
#include "sched/rt.h"
#include "debug_hooks.h"

#include <errno.h>
#include <stdlib.h>

/* ------------------------------------------------------------ the pool --- */

/* ANY; w is one of rt's workers (its thread) or NULL. */
struct weft_task *weft__task_alloc_slow(struct weft_rt *rt, struct weft__worker *w)
{
	struct weft_task *t;
	pthread_mutex_lock(&rt->pool_lock);
	if (!rt->free_tasks) {
		/* Growth: a slab of records; never freed before weft_rt_destroy,
		 * so a stale waiter may still read a record (see wait.h). */
		unsigned n = 256;
		struct weft__slab *s = weft__fault("spawn.slab") ? NULL
		                       : calloc(1, sizeof *s + n * sizeof(struct weft_task));
		if (!s) {
			pthread_mutex_unlock(&rt->pool_lock);
			return NULL;
		}
		s->n = n;
		s->next = rt->slabs;
		rt->slabs = s;
		for (unsigned i = 0; i < n; i++) {
			s->tasks[i].next = rt->free_tasks;
			rt->free_tasks = &s->tasks[i];
		}
	}
	t = rt->free_tasks;
	rt->free_tasks = t->next;
	/* Refill the worker's cache in one go to keep the lock cold. */
	if (w) {
		for (unsigned i = 0; i < 32 && rt->free_tasks; i++) {
			struct weft_task *x = rt->free_tasks;
			rt->free_tasks = x->next;
			x->next = w->free_tasks;
			w->free_tasks = x;
			w->nfree_tasks++;
		}
	}
	pthread_mutex_unlock(&rt->pool_lock);
	return t;
}

/* ANY; w: the caller's worker, of any runtime, or NULL (only rt's own
 * keep a cache). */
void weft__task_free_slow(struct weft_rt *rt, struct weft__worker *w, struct weft_task *t)
{
	(void)w;
	pthread_mutex_lock(&rt->pool_lock);
	t->next = rt->free_tasks;
	rt->free_tasks = t;
	pthread_mutex_unlock(&rt->pool_lock);
}

/*
 * ANY. How many coroutines are alive: created minus exited, summed over the
 * workers. One shared counter for this cost a fork-join tree on 2 workers
 * more than the second worker gained (every spawn and every return bounced
 * its cache line). Each worker counts in its own line (worker.h, counts),
 * and a reader takes a double collect:
 *
 *   read every `exited` (E), then every `created` (C1), then every
 *   `created` again (C2). If C1 == C2 the answer is C - E, and 0 is exact.
 *
 * Why a false 0 is impossible: a coroutine is created by a live one (or by an
 * outside thread, counted in created_outside). Suppose child c, created by p,
 * is alive but missed: its creation is not in C2 (else C - E counts it, as c
 * has not exited). Then its creation's store comes after the C2 reads in
 * coherence order, so p had not returned when E was read... unless p's exit
 * is in E. p's exit is sequenced after c's creation on p's thread(s), and E
 * read p's exit with acquire from a release store, so c's creation
 * happens-before the C reads and C1/C2 include it: contradiction. So when
 * p's exit is in E, c's creation is in C; when it is not, p itself is counted
 * as alive (p's creation is in C by the same argument one level up, or p is
 * the runtime's main / an outside spawn, counted in created_outside, whose
 * increment precedes its enqueue). C1 != C2 means spawns ran during the read:
 * *exact is false and the caller looks again.
 */
uint64_t weft__live_tasks(struct weft_rt *rt, bool *exact)
{
	uint64_t e = 0, c1 = 0, c2 = 0;
	for (unsigned i = 0; i < rt->nworkers; i++)       /* acquire: see above */
		e += atomic_load_explicit(&rt->workers[i].exited, memory_order_acquire);
	for (int pass = 0; pass < 2; pass++) {
		uint64_t c = atomic_load_explicit(&rt->created_outside, memory_order_acquire);
		for (unsigned i = 0; i < rt->nworkers; i++)
			c += atomic_load_explicit(&rt->workers[i].created, memory_order_acquire);
		if (pass == 0)
			c1 = c;
		else
			c2 = c;
	}
	*exact = c1 == c2;
	return c2 >= e ? c2 - e : 0;
}

/* -------------------------------------------------- coroutine locals --- */

static pthread_mutex_t locals_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*locals_dtor[WEFT_LOCAL_KEYS])(void *);
static _Atomic unsigned locals_used;    /* keys handed out, never returned */

/* The atfork child (rt.c), on the forking thread: a parent thread may have
 * held locals_lock at the fork. The keys and destructors stay (they belong
 * to the program, not to a runtime). */
void weft__locals_fork_child(void)
{
	pthread_mutex_init(&locals_lock, NULL);
}

WEFT_API int weft_local_key_create(weft_local_key *key, void (*dtor)(void *))
{
	if (!key)
		return -EINVAL;
	pthread_mutex_lock(&locals_lock);
	unsigned k = atomic_load_explicit(&locals_used, memory_order_relaxed);
	if (k == WEFT_LOCAL_KEYS) {
		pthread_mutex_unlock(&locals_lock);
		return -EAGAIN;
	}
	locals_dtor[k] = dtor;
	/* release: a coroutine that sees the key in use sees its dtor. */
	atomic_store_explicit(&locals_used, k + 1, memory_order_release);
	pthread_mutex_unlock(&locals_lock);
	*key = k;
	return 0;
}

WEFT_API void *weft_local_get(weft_local_key key)
{
	struct weft_task *t = weft__task_current();
	if (!t || !t->locals || key >= WEFT_LOCAL_KEYS)
		return NULL;
	return t->locals[key];
}

WEFT_API int weft_local_set(weft_local_key key, void *value)
{
	struct weft_task *t = weft__task_current();
	if (!t)
		return -EPERM;
	if (key >= atomic_load_explicit(&locals_used, memory_order_acquire))
		return -EINVAL;
	if (!t->locals) {
		if (!value)
			return 0;
		/* Only coroutines that use locals pay for them: one small
		 * allocation on first use, freed when the coroutine returns. */
		t->locals = weft__fault("local.alloc") ? NULL
		            : calloc(WEFT_LOCAL_KEYS, sizeof *t->locals);
		if (!t->locals)
			return -ENOMEM;
	}
	t->locals[key] = value;
	return 0;
}

/* The coroutine returned: run destructors (as pthread does, a few rounds in
 * case a destructor sets values again), then free the array. The coroutine
 * itself, on its own stack. */
void weft__locals_release(struct weft_task *t)
{
	unsigned used = atomic_load_explicit(&locals_used, memory_order_acquire);
	for (int round = 0; round < 4; round++) {
		bool again = false;
		for (unsigned k = 0; k < used; k++) {
			void *v = t->locals[k];
			if (v && locals_dtor[k]) {
				t->locals[k] = NULL;
				locals_dtor[k](v);
				again = true;
			}
		}
		if (!again)
			break;
	}
	free(t->locals);
	t->locals = NULL;
}
