/*
 * src/sched/task.c: coroutine records, live-task accounting, coroutine
 * locals.
 *
 * Records come from slabs of WEFT__SLAB_TASKS that are never unmapped before
 * the runtime is destroyed (task.h: type-stable memory). Each slab keeps its
 * own free list; rt->partial lists the slabs that have free records, all
 * under rt->pool_lock, with a per-worker cache of up to WEFT__TASK_CACHE in
 * front of them so that a spawn or a return normally takes no lock. A
 * record is recycled when its last reference goes: the running coroutine
 * holds one, a joinable handle the other.
 *
 * Trim. After a spike the slabs hold the peak's records. weft__task_trim
 * gives back the pages of slabs whose records are all free (MADV_DONTNEED:
 * the slab stays mapped, so a stale pointer to one of its records still
 * reads memory, zeroes) and keeps them on rt->trimmed_slabs, to be revived
 * before a new slab is mapped. One thing must survive: wait_seq carries on
 * across a record's lives so that a waiter left over from an earlier life
 * (a channel's queue, a timer) can never match a new wait (wait.h); zeroed,
 * it would start again at 0. So the trim keeps, per slab, the highest
 * wait_seq of its records, and revival starts every record there: every new
 * wait's number is above any number ever used in that record. Reading the
 * records' wait_seq is safe then: they are all free, under pool_lock, and
 * their last writers handed them over through the references' acq_rel and
 * this lock.
 */
#include "sched/rt.h"
#include "debug_hooks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define WEFT__SLAB_TASKS 256u           /* records per slab                  */
#define WEFT__SLAB_REFILL 32u           /* records a cache takes in one go   */

/* ------------------------------------------------------------ the pool --- */

static size_t slab_bytes(void)
{
	return WEFT__SLAB_TASKS * sizeof(struct weft_task);
}

/* Caller holds pool_lock. */
static void partial_add(struct weft_rt *rt, struct weft__slab *s)
{
	s->next_part = rt->partial;
	rt->partial = s;
	s->in_partial = true;
}

/* Its records onto its free list, wait_seq from `seq` (0: a new slab).
 * Caller holds pool_lock (or owns the slab alone). */
static void slab_fill(struct weft__slab *s, uint64_t seq)
{
	s->free = NULL;
	for (unsigned i = s->n; i-- > 0;) {
		struct weft_task *t = &s->tasks[i];
		t->slab = s;
		t->wait_seq = seq;
		t->next = s->free;
		s->free = t;
	}
	s->nfree = s->n;
}

/* A slab with free records for the caller: the partial list's first, else a
 * trimmed one revived, else a new one. NULL: no memory. Caller holds
 * pool_lock. */
static struct weft__slab *slab_for_alloc(struct weft_rt *rt)
{
	if (rt->partial)
		return rt->partial;
	struct weft__slab *s = rt->trimmed_slabs;
	if (s) {
		rt->trimmed_slabs = s->next_part;
		s->trimmed = false;
		rt->ntrimmed_records -= s->n;
		slab_fill(s, s->seq_floor);  /* faults its pages in again */
	} else {
		/* Growth: never unmapped before weft_rt_destroy, so a stale
		 * waiter may still read a record (see wait.h). A mapping of its
		 * own, so that the trim can give whole pages back. */
		s = weft__fault("spawn.slab") ? NULL : calloc(1, sizeof *s);
		void *m = s ? mmap(NULL, slab_bytes(), PROT_READ | PROT_WRITE,
		                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
		if (m == MAP_FAILED) {
			free(s);
			return NULL;
		}
		s->tasks = m;
		s->n = WEFT__SLAB_TASKS;
		s->next = rt->slabs;
		rt->slabs = s;
		rt->nrecords += s->n;
		slab_fill(s, 0);
	}
	rt->nfree_records += s->n;
	partial_add(rt, s);
	return s;
}

/* One free record off the partial list. Caller holds pool_lock; the list is
 * not empty. */
static struct weft_task *take_one(struct weft_rt *rt)
{
	struct weft__slab *s = rt->partial;
	struct weft_task *t = s->free;
	s->free = t->next;
	if (--s->nfree == 0) {
		rt->partial = s->next_part;
		s->in_partial = false;
	}
	rt->nfree_records--;
	return t;
}

/* t back on its slab's free list. Caller holds pool_lock. */
static void give_one(struct weft_rt *rt, struct weft_task *t)
{
	struct weft__slab *s = t->slab;
	t->next = s->free;
	s->free = t;
	if (s->nfree++ == 0 && !s->in_partial)
		partial_add(rt, s);
	rt->nfree_records++;
}

/* ANY; w is one of rt's workers (its thread) or NULL. */
struct weft_task *weft__task_alloc_slow(struct weft_rt *rt, struct weft__worker *w)
{
	pthread_mutex_lock(&rt->pool_lock);
	if (!slab_for_alloc(rt)) {
		pthread_mutex_unlock(&rt->pool_lock);
		return NULL;
	}
	struct weft_task *t = take_one(rt);
	/* Refill the worker's cache in one go to keep the lock cold. */
	if (w) {
		for (unsigned i = 0; i < WEFT__SLAB_REFILL && rt->partial; i++) {
			struct weft_task *x = take_one(rt);
			x->next = w->free_tasks;
			w->free_tasks = x;
			w->nfree_tasks++;
		}
	}
	pthread_mutex_unlock(&rt->pool_lock);
	return t;
}

/* ANY; w: the caller's worker, of any runtime, or NULL (only rt's own
 * keep a cache). Called when w's cache is full (or w is not rt's): t and
 * half of the cache go back to their slabs in one lock hold, so that the
 * return of a million coroutines takes the lock thousands of times, not a
 * million. */
void weft__task_free_slow(struct weft_rt *rt, struct weft__worker *w, struct weft_task *t)
{
	pthread_mutex_lock(&rt->pool_lock);
	give_one(rt, t);
	if (w && w->rt == rt) {
		while (w->nfree_tasks > WEFT__TASK_CACHE / 2) {
			struct weft_task *x = w->free_tasks;
			w->free_tasks = x->next;
			w->nfree_tasks--;
			give_one(rt, x);
		}
	}
	pthread_mutex_unlock(&rt->pool_lock);
}

unsigned weft__task_trim(struct weft_rt *rt, uint64_t keep, unsigned max)
{
	unsigned done = 0;
	pthread_mutex_lock(&rt->pool_lock);
	/* The monitor asks every round: without a slab's worth of free records
	 * above the keep nothing can go, and the walk is skipped. */
	if (rt->nfree_records < keep + WEFT__SLAB_TASKS) {
		pthread_mutex_unlock(&rt->pool_lock);
		return 0;
	}
	/* Walk the partial list for slabs wholly free, unlinking those we
	 * trim. Bounded by the list (every slab at most once) and by max. */
	struct weft__slab **link = &rt->partial;
	while (*link && done < max) {
		struct weft__slab *s = *link;
		if (s->nfree != s->n || rt->nfree_records < keep + s->n) {
			link = &s->next_part;
			continue;
		}
		*link = s->next_part;
		s->in_partial = false;
		uint64_t floor = 0;
		for (unsigned i = 0; i < s->n; i++)
			if (s->tasks[i].wait_seq > floor)
				floor = s->tasks[i].wait_seq;
		s->seq_floor = floor;
		s->free = NULL;
		s->nfree = 0;
		/* Under the lock: nobody can take one of its records meanwhile.
		 * A failure (no memory to split a VMA) leaves the pages in
		 * place: memory not given back, nothing else. */
		(void)madvise(s->tasks, slab_bytes(), MADV_DONTNEED);
		s->trimmed = true;
		s->next_part = rt->trimmed_slabs;
		rt->trimmed_slabs = s;
		rt->nfree_records -= s->n;
		rt->ntrimmed_records += s->n;
		done++;
	}
	pthread_mutex_unlock(&rt->pool_lock);
	return done;
}

void weft__task_counts(struct weft_rt *rt, struct weft__task_counts *out)
{
	pthread_mutex_lock(&rt->pool_lock);
	out->records = rt->nrecords;
	out->free = rt->nfree_records;
	out->trimmed = rt->ntrimmed_records;
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
