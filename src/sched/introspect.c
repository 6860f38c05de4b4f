/*
 * Looking inside a runtime: weft_rt_stats, weft_stats_format, weft_dump and
 * its SIGQUIT trigger. Nothing here is on a worker's fast path: stats are
 * relaxed reads of counters each worker bumps on its own cache line, and
 * the dump walks the task slabs under the pool lock, sampling states that
 * keep changing while it looks.
 */
#include "sched/rt.h"
#include "sched/clock.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

/* ------------------------------------------------------------- stats --- */

/* Every field of struct weft_worker_stats, in order: the worker's own
 * counters (worker.h), then its ring's. One list for the reader, the totals
 * and the format. */
#define STATS_FIELDS(X) WEFT__WORKER_COUNTERS(X) \
	X(io_sqes, "sqes") X(io_cqes, "cqes") X(io_enters, "enters") \
	X(io_sq_full, "sqfull") X(io_cq_overflow, "cqoverflow") X(io_rescued, "rescued")

#define COUNT_ONE(f, label) + 1
_Static_assert(sizeof(struct weft_worker_stats) == (0 STATS_FIELDS(COUNT_ONE)) * sizeof(uint64_t),
               "STATS_FIELDS must list every field of struct weft_worker_stats");
#undef COUNT_ONE

/* ANY: relaxed loads of counters their owners write (worker.h, counts). */
static void stats_read(struct weft__worker *w, struct weft_worker_stats *o)
{
#define READ_COUNTER(f, label) o->f = atomic_load_explicit(&w->stats.f, memory_order_relaxed);
	WEFT__WORKER_COUNTERS(READ_COUNTER)
#undef READ_COUNTER
	struct weft__ring_stats_sample rs;
	weft__ring_stats_read(&w->ring, &rs);     /* relaxed loads, see ring.h */
	o->io_sqes = rs.sqes;
	o->io_cqes = rs.cqes;
	o->io_enters = rs.enters;
	o->io_sq_full = rs.sq_full;
	o->io_cq_overflow = rs.cq_overflow;
	o->io_rescued = rs.rescued;
	/* callbacks the monitor ran for this worker's ring are completions too
	 * (stress/ioflood counts exactly one per op and found them missing) */
	o->io_completions += rs.rescued_ops;
}

/* ANY. */
WEFT_API int weft_rt_stats(weft_rt *rt, struct weft_stats *out,
                           struct weft_worker_stats *per_worker, unsigned n)
{
	if (!rt || !out)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	out->workers = rt->nworkers;
	bool exact;
	out->live = weft__live_tasks(rt, &exact);     /* a sample when !exact */
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct weft_worker_stats ws;
		stats_read(&rt->workers[i], &ws);
		if (per_worker && i < n)
			per_worker[i] = ws;
#define ADD_COUNTER(f, label) out->total.f += ws.f;
		STATS_FIELDS(ADD_COUNTER)
#undef ADD_COUNTER
	}
	struct weft__stack_counts sc;
	weft__stack_pool_counts(rt->stack_pool, &sc);
	out->stacks = sc.mapped;
	out->stacks_free = sc.free_warm;
	out->stacks_cold = sc.free_cold;
	out->stacks_trimmed = sc.trimmed;
	struct weft__task_counts tc;
	weft__task_counts(rt, &tc);
	out->records = tc.records;
	out->records_free = tc.free;
	out->records_cold = tc.trimmed;
	return 0;
}

/* The pools' figures of struct weft_stats, in order, with their labels. */
#define POOL_FIELDS(X) X(stacks, "stacks") X(stacks_free, "stacks_free") \
	X(stacks_cold, "stacks_cold") X(stacks_trimmed, "stacks_trimmed") \
	X(records, "records") X(records_free, "records_free") X(records_cold, "records_cold")

/* ANY. "workers=N live=N", every counter as label=value in the order of
 * struct weft_worker_stats, then the pools'. */
WEFT_API int weft_stats_format(const struct weft_stats *s, char *buf, size_t len)
{
	if (!s)
		return -EINVAL;
	const struct weft_worker_stats *t = &s->total;
#define FMT_COUNTER(f, label) " " label "=%llu"
#define ARG_COUNTER(f, label) , (unsigned long long)t->f
#define ARG_POOL(f, label) , (unsigned long long)s->f
	return snprintf(buf, len, "workers=%u live=%llu" STATS_FIELDS(FMT_COUNTER) POOL_FIELDS(FMT_COUNTER),
	                s->workers, (unsigned long long)s->live STATS_FIELDS(ARG_COUNTER)
	                POOL_FIELDS(ARG_POOL));
#undef FMT_COUNTER
#undef ARG_COUNTER
#undef ARG_POOL
}

/* -------------------------------------------------------------- dump --- */

static pthread_mutex_t rts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft_rt *rts;             /* every live runtime, for weft_dump */
/* The runtimes on the list whose monitor runs: a monitor is what answers a
 * SIGQUIT's dump request (weft__dump_requested). Changed under rts_lock,
 * read by on_sigquit without it; seq_cst, with sigquit_pending: see
 * on_sigquit. */
static _Atomic unsigned nmonitored;
static _Atomic int sigquit_pending;

static void dump_rt(struct weft_rt *rt, FILE *f);

/*
 * fork: the child has none of the parent's workers, so none of its runtimes
 * is live there (dumping one would show coroutines that can never run), and
 * its copy of rts_lock may be held by a parent thread that is in weft_dump
 * (a dump writes to a FILE while holding it: for as long as the FILE
 * takes). The child handler starts an empty list with a fresh lock; it
 * reads nothing of the copy, so no prepare handler is needed and a fork
 * never waits for a dump. Registered (once) before the lock is first
 * taken. Caller: the atfork child, on the forking thread.
 */
static pthread_once_t rts_fork_once = PTHREAD_ONCE_INIT;

static void rts_child_fork(void)
{
	pthread_mutex_init(&rts_lock, NULL);
	rts = NULL;
	/* No monitor here: a SIGQUIT in the child gets the default action
	 * until the child creates a runtime; a request the parent had not
	 * answered yet is the parent's. Relaxed: the child has one thread,
	 * and a handler that interrupts it sees its own stores. */
	atomic_store_explicit(&nmonitored, 0, memory_order_relaxed);
	atomic_store_explicit(&sigquit_pending, 0, memory_order_relaxed);
}

static void rts_fork_register(void)
{
	/* Fails only for lack of memory: a child then keeps the parent's list
	 * (nothing here can report it). */
	(void)pthread_atfork(NULL, NULL, rts_child_fork);
}

void weft__rts_add(struct weft_rt *rt)
{
	pthread_once(&rts_fork_once, rts_fork_register);
	pthread_mutex_lock(&rts_lock);
	rt->next_rt = rts;
	rts = rt;
	/* monitor_started is set before rt is listed and never changes */
	if (rt->monitor_started)
		atomic_fetch_add(&nmonitored, 1);       /* seq_cst: see on_sigquit */
	pthread_mutex_unlock(&rts_lock);
}

/* Caller: weft_rt_destroy, once no coroutine of rt is left and before its
 * monitor stops. */
void weft__rts_remove(struct weft_rt *rt)
{
	pthread_mutex_lock(&rts_lock);
	for (struct weft_rt **p = &rts; *p; p = &(*p)->next_rt)
		if (*p == rt) {
			*p = rt->next_rt;
			break;
		}
	/* The last monitor is about to stop: a dump request it has not taken
	 * yet would be left to nobody, so it is answered here, with the dump
	 * of rt (its workers still run; rts_lock held, as in weft_dump).
	 * seq_cst decrement, then exchange: the pair on_sigquit relies on. */
	if (rt->monitor_started && atomic_fetch_sub(&nmonitored, 1) == 1 &&
	    atomic_exchange(&sigquit_pending, 0)) {
		dump_rt(rt, stderr);
		fflush(stderr);
	}
	pthread_mutex_unlock(&rts_lock);
}

/* t->stack is a plain field the owner worker writes at spawn and exit
 * (run.c, resume_prep). The dump only samples it: the descriptor it points to lives
 * as long as the runtime's stack pool (stack.c keeps even off-size ones),
 * so a stale value at worst describes the stack's next user. TSan is told
 * not to flag this one racy read. */
__attribute__((no_sanitize("thread")))
static struct weft__stack *stack_sample(struct weft_task *t)
{
	return *(struct weft__stack *volatile *)&t->stack;
}

/* ", high-water N KiB (own)" or "(deepest of U users of this stack)": pooled
 * stacks are reused uncleared (see weft__stack_high_water). */
static void dump_high_water(FILE *f, const struct weft__stack *s,
                            struct weft__stack_hw_cache *cache)
{
	size_t hw = weft__stack_high_water(s, cache);
	/* relaxed: a sample of a counter only the stack's taker writes */
	uint32_t users = atomic_load_explicit(&s->users, memory_order_relaxed);
	if (!hw) {
		fprintf(f, ", high-water unknown");
		return;
	}
	fprintf(f, ", high-water %zu KiB", (hw + 1023) / 1024);
	if (users <= 1)
		fprintf(f, " (own)");
	else
		fprintf(f, " (deepest of %u users of this stack)", users);
}

/* p points at a task record of rt (caller holds rt->pool_lock). */
static bool is_task_record(struct weft_rt *rt, const void *p)
{
	for (struct weft__slab *sl = rt->slabs; sl; sl = sl->next) {
		const char *lo = (const char *)sl->tasks, *q = p;
		if (q >= lo && q < lo + sl->n * sizeof(struct weft_task))
			return (size_t)(q - lo) % sizeof(struct weft_task) == 0;
	}
	return false;
}

static void dump_rt(struct weft_rt *rt, FILE *f)
{
	uint64_t now = weft__coarse_now();
	struct weft_stats st;
	char line[512];
	weft_rt_stats(rt, &st, NULL, 0);
	weft_stats_format(&st, line, sizeof line);
	fprintf(f, "weft: runtime %p: %s\n", (void *)rt, line);
	/* one mincore() per run of neighbouring stacks, not one per stack */
	struct weft__stack_hw_cache hw_cache = { 0 };
	pthread_mutex_lock(&rt->pool_lock);
	for (struct weft__slab *sl = rt->slabs; sl; sl = sl->next) {
		for (unsigned i = 0; i < sl->n; i++) {
			struct weft_task *t = &sl->tasks[i];
			if (!atomic_load_explicit(&t->alive, memory_order_acquire))
				continue;
			/* A sample: the coroutine keeps running while we look. */
			int on = -1;
			for (unsigned k = 0; k < rt->nworkers; k++)
				if (atomic_load_explicit(&rt->workers[k].running, memory_order_relaxed) == t)
					on = (int)k;
			uint32_t state = atomic_load_explicit(&t->state, memory_order_relaxed);
			bool waiting = atomic_load_explicit(&t->wait, memory_order_relaxed) & 1;
			char st_buf[48];
			if (on >= 0)
				snprintf(st_buf, sizeof st_buf, "running on worker %d", on);
			else
				snprintf(st_buf, sizeof st_buf, "%s",
				         state == WEFT__T_PARKED ? "parked" : "runnable");
			char name[32], shown[4 * 31 + 1];
			weft__task_name_sample(t, name);
			shown[weft__escape_name(shown, 0, sizeof shown - 1, name, 31)] = 0;
			fprintf(f, "  coroutine %llu \"%s\": %s",
			        (unsigned long long)weft__task_id_sample(t), shown, st_buf);
			if (waiting && on < 0) {
				/* relaxed, each read once: a sample; the strings are
				 * literals and the objects outlive the runtime's tasks
				 * or are only printed as addresses */
				const char *what = atomic_load_explicit(&t->wait_what, memory_order_relaxed);
				const void *obj = atomic_load_explicit(&t->wait_obj, memory_order_relaxed);
				fprintf(f, ", waiting for %s", what ? what : "an event");
				if (obj && what && !strcmp(what, "join of coroutine") &&
				    is_task_record(rt, obj))
					/* a task record: slabs live as long as rt. what and
					 * obj are read separately, so obj may belong to
					 * another wait (a channel, say): dereferenced only
					 * when it is one of rt's records. */
					fprintf(f, " %llu", (unsigned long long)
					        weft__task_id_sample(obj));
				else if (obj)
					fprintf(f, " %p", obj);
			}
			if (waiting && atomic_load_explicit(&t->timer.heap, memory_order_relaxed))
				fprintf(f, " (deadline in %.3f ms)",
				        ((double)__atomic_load_n(&t->timer.deadline, __ATOMIC_RELAXED) -
				         (double)weft__now()) / 1e6);
			fprintf(f, ", age %.3f s", (double)(now - t->born) / 1e9);
			struct weft__stack *stk = stack_sample(t);
			if (on < 0 && state == WEFT__T_PARKED && stk)
				fprintf(f, ", stack %zu/%zu KiB in use",
				        ((size_t)(((char *)stk->lo + stk->size) - (char *)t->ctx.sp) + 1023) / 1024,
				        stk->size / 1024);
			if (stk)
				dump_high_water(f, stk, &hw_cache);
			fputc('\n', f);
		}
	}
	pthread_mutex_unlock(&rt->pool_lock);
}

/* Set on a monitor's thread when weft__dump_requested hands it a SIGQUIT's
 * request, cleared by the weft_dump it then makes. */
static _Thread_local bool dump_for_sigquit;

WEFT_API void weft_dump(void *file)
{
	FILE *f = file ? file : stderr;
	bool answer = dump_for_sigquit;
	dump_for_sigquit = false;
	pthread_once(&rts_fork_once, rts_fork_register);
	pthread_mutex_lock(&rts_lock);
	for (struct weft_rt *rt = rts; rt; rt = rt->next_rt)
		dump_rt(rt, f);
	/* A monitor took the request just before its runtime, the last, was
	 * removed (weft__rts_remove): the answer to a SIGQUIT is never
	 * silence. */
	if (answer && !rts)
		fprintf(f, "weft: no runtime alive\n");
	pthread_mutex_unlock(&rts_lock);
	fflush(f);
}

/* Caller: a runtime's monitor, at each of its rounds. seq_cst: see
 * on_sigquit. */
bool weft__dump_requested(void)
{
	if (!atomic_exchange(&sigquit_pending, 0))
		return false;
	dump_for_sigquit = true;      /* the monitor's weft_dump comes next */
	return true;
}

/*
 * SIGQUIT: a dump request for the monitors (the handler cannot print: the
 * dump takes locks and calls stdio). With no monitored runtime alive nobody
 * would ever take it and the signal would be swallowed, so then SIGQUIT
 * gets its default action: back to SIG_DFL and raised again, it is
 * delivered when the handler returns (blocked until then) and ends the
 * process, with a core where enabled, as if weft had never installed a
 * handler.
 *
 * The request must not be lost either when the last monitored runtime is
 * destroyed meanwhile. We store the flag and then read nmonitored; remove
 * decrements nmonitored and then exchanges the flag; all seq_cst, so (as in
 * Dekker's algorithm) at least one side sees the other's write: we see no
 * monitor, or remove sees the flag, or both. Whichever exchanges the flag
 * back to 0 answers it, once: remove with the dump of its runtime, we with
 * the default action, a monitor with a dump (which says "no runtime alive"
 * when remove unlisted the last runtime between the monitor's exchange and
 * its dump). Lock-free atomics and sigaction/raise only: async-signal-safe.
 * Caller: the kernel, on any thread that does not block SIGQUIT (helpers of
 * weft_blocking block it).
 */
static void on_sigquit(int sig)
{
	int saved = errno;
	atomic_store(&sigquit_pending, 1);
	if (atomic_load(&nmonitored) == 0 && atomic_exchange(&sigquit_pending, 0)) {
		struct sigaction dfl;
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		raise(sig);
	}
	errno = saved;
}

WEFT_API int weft_dump_on_sigquit(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigquit;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGQUIT, &sa, NULL) ? -errno : 0;
}
