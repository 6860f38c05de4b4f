/*
 * src/sched/rt.c: a runtime's life: weft_rt_create, the worker threads,
 * weft_rt_destroy.
 *
 * Start-up: weft_rt_create allocates the runtime and its workers, starts one
 * thread per worker and waits (start_lock, start_cond) until each has set up
 * its ring, stack cache and signal stack, or one has failed, in which case
 * all leave and the error is returned with nothing left behind. Then the
 * monitor starts (monitor.c) and the runtime joins the list weft_dump walks.
 *
 * Shutdown: weft_rt_destroy sets rt->shutdown (new spawns start cancelled),
 * cancels every live task by walking the record slabs with one barrier per
 * sweep (wait.c, weft__cancel_mark), and sweeps again every millisecond
 * until the live count (task.c, weft__live_tasks: per-worker counters,
 * double collect) reads an exact 0. Then it stops the monitor, waits for
 * threads outside the pool still inside a wake of this runtime
 * (outside_wakers), sets rt->stop, wakes every worker and, through the exit
 * gate (exit_ok), lets them tear down their rings only once every ring has
 * been woken: a ring must not go while another thread may still write to it.
 */
#include "sched/rt.h"
#include "sched/cpus.h"
#include "sched/clock.h"
#include "sched/run.h"
#include "debug_hooks.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* THREAD: a worker thread's whole life. */
static void *worker_main(void *arg)
{
	struct weft__worker *w = arg;
	struct weft_rt *rt = w->rt;
	char why[128] = "";
	int err = weft__ring_init(&w->ring, rt->ring_entries, why, sizeof why);
	bool ring_ok = !err;
	if (!err)
		err = weft__stack_cache_create(&w->stacks, rt->stack_pool);
	if (!err)
		err = weft__stack_thread_init();
	weft__tls_worker = err ? NULL : w;
	weft__ctx_init_thread(&w->sched_ctx);

	pthread_mutex_lock(&rt->start_lock);
	if (err && !rt->start_err) {
		rt->start_err = err;
		snprintf(rt->start_why, sizeof rt->start_why, "%s", why[0] ? why : strerror(-err));
	}
	rt->started++;
	pthread_cond_broadcast(&rt->start_cond);
	while (rt->started != rt->nworkers || (rt->start_err && !atomic_load(&rt->stop)))
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);

	if (!rt->start_err)
		weft__worker_loop(w);

	/* Exit gate: weft_rt_destroy may still be waking the other rings (or
	 * ours); only once it has finished may a ring go away. */
	pthread_mutex_lock(&rt->start_lock);
	while (!rt->exit_ok)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);

	if (w->stacks)
		weft__stack_cache_destroy(w->stacks);
	/* A rescue signal still on its way (the monitor has stopped, its last
	 * SIGURG may not) must not find the ring half torn down: the handler
	 * reads weft__tls_worker, on this same thread, so a compiler barrier does. */
	weft__tls_worker = NULL;
	atomic_signal_fence(memory_order_seq_cst);
	if (ring_ok)
		weft__ring_exit(&w->ring);
	weft__ctx_release(&w->sched_ctx);
	weft__stack_thread_exit();
	return NULL;
}

static void rt_free(struct weft_rt *rt)
{
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++) {
			weft__timer_heap_fini(&rt->workers[i].timers);
			free(rt->workers[i].spill);
		}
		free(rt->workers);
	}
	struct weft__slab *s = rt->slabs;
	while (s) {
		struct weft__slab *n = s->next;
		munmap(s->tasks, s->n * sizeof(struct weft_task));
		free(s);
		s = n;
	}
	if (rt->stack_pool)
		weft__stack_pool_destroy(rt->stack_pool);
	free(rt->idle);
	pthread_mutex_destroy(&rt->inject_lock);
	pthread_mutex_destroy(&rt->idle_lock);
	pthread_mutex_destroy(&rt->pool_lock);
	pthread_mutex_destroy(&rt->start_lock);
	pthread_cond_destroy(&rt->start_cond);
	pthread_mutex_destroy(&rt->monitor_lock);
	pthread_cond_destroy(&rt->monitor_cond);
	free(rt);
}

/*
 * fork: the child is one thread, the one that forked. When that was one of
 * a runtime's workers (a coroutine called fork), its weft__tls_worker still
 * names the parent's worker, which does not exist in the child: every call
 * there would take the child for a coroutine (weft_rt_create: -EPERM). The
 * child handler clears it, and resets the few locks of src/sched that a
 * parent thread may have held at the fork (the runtimes list has its own,
 * introspect.c). The parent's runtimes are not usable in the child, which
 * may create its own. Registered once, by the first weft_rt_create.
 */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_child(void)
{
	weft__tls_worker = NULL;
	weft__locals_fork_child();
}

static void fork_register(void)
{
	/* Fails only for lack of memory; a child then keeps the parent's
	 * state, as before this existed. */
	(void)pthread_atfork(NULL, NULL, fork_child);
}

/* Every error of weft_rt_create says what went wrong on stderr, in one
 * line (weft.h promises it), and returns err. */
static int __attribute__((format(printf, 2, 3))) create_fail(int err, const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	fprintf(stderr, "weft: cannot create runtime: %s\n", why);
	return err;
}

/* THREAD. */
WEFT_API int weft_rt_create(weft_rt **out, const struct weft_config *cfg)
{
	if (!out)
		return create_fail(-EINVAL, "rt is NULL");
	*out = NULL;
	if (weft__worker_current())
		return create_fail(-EPERM, "called from a coroutine (or a worker thread)");
	struct weft_config c = cfg ? *cfg : (struct weft_config){0};
	const unsigned known = WEFT_RT_PARENT_FIRST | WEFT_RT_NO_RESCUE_SIGNAL | WEFT_RT_NO_TRIM;
	if (c.workers > 4096)
		return create_fail(-EINVAL, "workers %u is more than 4096", c.workers);
	if (c.flags & ~known)
		return create_fail(-EINVAL, "unknown flags 0x%x", c.flags & ~known);
	if (c.ring_entries > 32768)
		return create_fail(-EINVAL, "ring_entries %u is more than 32768", c.ring_entries);
	size_t stack_size;
	int err = weft__stack_size_check(c.stack_size ? c.stack_size : WEFT_STACK_DEFAULT,
	                                 &stack_size);
	if (err)
		return create_fail(err, "stack_size %zu is below WEFT_STACK_MIN or above 4 GiB",
		                   c.stack_size);

	weft__membarrier_register();
	pthread_once(&fork_once, fork_register);

	/* aligned_alloc: struct weft_rt keeps its shared counters on cache
	 * lines of their own (_Alignas(64)); calloc's 16-byte alignment was
	 * undefined behaviour (UBSan: "misaligned address ... requires 64 byte
	 * alignment") and put those counters back on shared lines. */
	size_t rt_size = (sizeof(struct weft_rt) + 63) & ~(size_t)63;
	struct weft_rt *rt = weft__fault("rt.alloc") ? NULL : aligned_alloc(64, rt_size);
	if (!rt)
		return create_fail(-ENOMEM, "out of memory for the runtime");
	memset(rt, 0, rt_size);
	rt->nworkers = c.workers ? c.workers : weft__default_workers();
	rt->flags = c.flags;
	rt->stack_size = stack_size;
	/* At least 2: an op with a deadline is an SQE pair (op + linked
	 * timeout) that must fit the SQ at once; 1 made every timed call abort
	 * in weft__ring_reserve (stress/ioflood found it). The kernel rounds up
	 * to a power of two anyway. */
	rt->ring_entries = c.ring_entries ? (c.ring_entries < 2 ? 2 : c.ring_entries) : 256;
	pthread_mutex_init(&rt->inject_lock, NULL);
	pthread_mutex_init(&rt->idle_lock, NULL);
	pthread_mutex_init(&rt->pool_lock, NULL);
	pthread_mutex_init(&rt->start_lock, NULL);
	pthread_cond_init(&rt->start_cond, NULL);
	pthread_mutex_init(&rt->monitor_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* its sleeps: monitor.c */
	pthread_cond_init(&rt->monitor_cond, &ca);
	pthread_condattr_destroy(&ca);

	rt->workers = weft__fault("rt.workers") ? NULL
	              : aligned_alloc(64, sizeof *rt->workers * rt->nworkers);
	rt->idle = weft__fault("rt.idle") ? NULL : calloc(rt->nworkers, sizeof *rt->idle);
	if (!rt->workers || !rt->idle) {
		free(rt->workers);
		rt->workers = NULL;
		rt_free(rt);
		return create_fail(-ENOMEM, "out of memory for %u workers", c.workers);
	}
	memset(rt->workers, 0, sizeof *rt->workers * rt->nworkers);
	err = weft__stack_pool_create(&rt->stack_pool, stack_size);
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct weft__worker *w = &rt->workers[i];
		w->rt = rt;
		w->index = i;
		w->rng = 0x9e3779b9u * (i + 1);
		w->solo = rt->nworkers == 1;
		weft__runq_init(&w->runq);
		weft__spawnq_init(&w->spawnq);
		if (!err)
			err = weft__timer_heap_init(&w->timers);
	}
	if (err) {
		rt_free(rt);
		return create_fail(err, "stack pool or timer heaps: %s", strerror(-err));
	}

	unsigned created = 0;
	for (; created < rt->nworkers; created++) {
		struct weft__worker *w = &rt->workers[created];
		if ((err = -pthread_create(&w->thread, NULL, worker_main, w)))
			break;
	}
	pthread_mutex_lock(&rt->start_lock);
	if (err) {
		/* Fewer threads than planned: tell those that exist to leave. */
		rt->start_err = err;
		/* rt_free only sees the first nworkers: free the rest here. */
		for (unsigned i = created; i < rt->nworkers; i++)
			weft__timer_heap_fini(&rt->workers[i].timers);
		rt->nworkers = created;
		snprintf(rt->start_why, sizeof rt->start_why, "cannot start worker threads");
		pthread_cond_broadcast(&rt->start_cond);
	}
	while (rt->started != rt->nworkers)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	err = rt->start_err;
	if (err) {
		atomic_store(&rt->stop, 1);
		rt->exit_ok = true;
		pthread_cond_broadcast(&rt->start_cond);
	}
	pthread_mutex_unlock(&rt->start_lock);

	if (err) {
		char why[sizeof rt->start_why];
		memcpy(why, rt->start_why, sizeof why);
		for (unsigned i = 0; i < created; i++)
			pthread_join(rt->workers[i].thread, NULL);
		rt_free(rt);
		return create_fail(err, "%s", why);
	}
	atomic_store_explicit(&rt->starve_ns, 10000000, memory_order_relaxed);   /* 10 ms */
	atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
	rt->monitor_started = weft__monitor_start(rt);
	weft__rts_add(rt);
	*out = rt;
	return 0;
}

/* THREAD. */
WEFT_API int weft_rt_destroy(weft_rt *rt)
{
	if (!rt)
		return -EINVAL;
	/* From any worker thread, not only rt's own: destroy waits for every
	 * coroutine of rt to return and joins threads, which would hold that
	 * worker (and every coroutine queued on it) meanwhile. A coroutine that
	 * must destroy another runtime does it through weft_blocking. */
	if (weft__worker_current())
		return -EPERM;
	/* seq_cst: a spawn that reads the flag starts its task cancelled; one
	 * that misses it is counted below and cancelled by the sweep. */
	atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
	uint64_t start = weft__now();
	bool warned = false;
	for (;;) {
		bool exact;
		uint64_t live = weft__live_tasks(rt, &exact);
		if (live == 0 && exact)
			break;
		/* weft_cancel for every live task, with one barrier for all
		 * (weft__cancel_mark). The second pass delivers only what the first
		 * marked: a record recycled in between has its flag clear and
		 * waits for the next sweep. */
		pthread_mutex_lock(&rt->pool_lock);
		for (struct weft__slab *s = rt->slabs; s; s = s->next)
			for (unsigned i = 0; i < s->n; i++)
				if (atomic_load_explicit(&s->tasks[i].alive, memory_order_relaxed))
					weft__cancel_mark(&s->tasks[i]);
		weft__cancel_fence();
		for (struct weft__slab *s = rt->slabs; s; s = s->next)
			for (unsigned i = 0; i < s->n; i++)
				if (atomic_load_explicit(&s->tasks[i].alive, memory_order_relaxed) &&
				    atomic_load_explicit(&s->tasks[i].cancel, memory_order_relaxed))
					weft__cancel_deliver(&s->tasks[i]);
		pthread_mutex_unlock(&rt->pool_lock);
		if (!warned && weft__now() - start > 5000000000ull) {
			warned = true;
			fprintf(stderr, "weft: weft_rt_destroy: %llu coroutine(s) still running after "
			        "cancellation; waiting for them to return\n", (unsigned long long)live);
		}
		struct timespec ts = { 0, 1000000 };   /* 1 ms between sweeps */
		nanosleep(&ts, NULL);
	}
	weft__rts_remove(rt);
	weft__monitor_stop(rt);
	/* No task is left to wake, but a thread outside the pool may still be
	 * inside ready() for the last one (see there). */
	while (atomic_load_explicit(&rt->outside_wakers, memory_order_acquire))
		sched_yield();
	atomic_store_explicit(&rt->stop, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < rt->nworkers; i++)
		weft__ring_wake(NULL, &rt->workers[i].ring);
	pthread_mutex_lock(&rt->start_lock);
	rt->exit_ok = true;                 /* the rings may go now */
	pthread_cond_broadcast(&rt->start_cond);
	pthread_mutex_unlock(&rt->start_lock);
	for (unsigned i = 0; i < rt->nworkers; i++)
		pthread_join(rt->workers[i].thread, NULL);
	rt_free(rt);
	return 0;
}
