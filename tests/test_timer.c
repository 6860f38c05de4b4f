/*
 * Timer heap (src/sched/timer.c) on its own, against timer.h's contract:
 * weft__timer_run fires the timers due by `now`, earliest first, at most max
 * of them, and leaves the rest armed; cancel removes an armed timer and says
 * whether it was still armed; equal deadlines all fire, none twice; next is
 * the earliest deadline left (UINT64_MAX: empty); fire() runs under the lock
 * with t->heap still set, and t->heap is NULL after. Then the same with a
 * million entries (the array grows from 64), and a canceller thread racing
 * the owner's firing: every timer ends fired or cancelled, never both.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sched/timer.h"

struct tnode {
	struct weft__timer t;          /* first: the fire callback casts back */
	unsigned id;
	_Atomic unsigned fired;
};

/* What fired, in order. The heap runs fire() under its lock, one at a time,
 * so the log needs no lock of its own. */
static unsigned *fire_log;
static size_t fire_n, fire_cap;
static struct weft__timer_heap *fire_heap;   /* the heap fire() expects to hold it */
static _Atomic unsigned fire_bad_heap;

static void on_fire(struct weft__timer *t)
{
	struct tnode *n = (struct tnode *)t;
	/* relaxed: fire() runs under the heap's lock, which orders these */
	if (atomic_load_explicit(&t->heap, memory_order_relaxed) != fire_heap)
		atomic_fetch_add(&fire_bad_heap, 1);
	atomic_fetch_add_explicit(&n->fired, 1, memory_order_relaxed);
	if (fire_log && fire_n < fire_cap)
		fire_log[fire_n++] = n->id;
}

static void log_reset(size_t cap)
{
	free(fire_log);
	fire_log = cap ? calloc(cap, sizeof *fire_log) : NULL;
	cr_assert(!cap || fire_log);
	fire_cap = cap;
	fire_n = 0;
	atomic_store(&fire_bad_heap, 0);
}

static struct tnode *nodes_new(size_t n)
{
	struct tnode *v = calloc(n, sizeof *v);
	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++) {
		v[i].id = (unsigned)i;
		v[i].t.fire = on_fire;
		atomic_init(&v[i].t.heap, NULL);
	}
	return v;
}

static void heap_up(struct weft__timer_heap *h)
{
	cr_assert_eq(weft__timer_heap_init(h), 0);
	cr_assert_eq(weft__timer_next(h), UINT64_MAX, "a new heap is empty");
	fire_heap = h;
}

static void arm(struct weft__timer_heap *h, struct tnode *n, uint64_t deadline)
{
	n->t.deadline = deadline;
	cr_assert_eq(weft__timer_add(h, &n->t), 0, "add %u", n->id);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(timer, fires_due_earliest_first_and_no_more)
{
	enum { N = 1000 };
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(N);
	uint64_t s = 88172645463325252ull, min = UINT64_MAX;
	for (unsigned i = 0; i < N; i++) {
		uint64_t d = 1000 + rnd(&s) % 100000;
		arm(&h, &v[i], d);
		min = d < min ? d : min;
		cr_assert_eq(weft__timer_next(&h), min, "next after %u adds", i + 1);
	}
	log_reset(N);
	/* Before the earliest deadline: nothing is due. */
	cr_assert_eq(weft__timer_run(&h, min - 1, N), 0);
	/* Half-way: exactly the timers due by then, in deadline order. */
	uint64_t mid = 1000 + 50000;
	unsigned due = 0;
	for (unsigned i = 0; i < N; i++)
		due += v[i].t.deadline <= mid;
	cr_assert_eq(weft__timer_run(&h, mid, N), due);
	cr_assert_eq(fire_n, due);
	for (size_t k = 1; k < fire_n; k++)
		cr_assert_leq(v[fire_log[k - 1]].t.deadline, v[fire_log[k]].t.deadline,
			      "fired out of order at %zu", k);
	for (unsigned i = 0; i < N; i++) {
		bool is_due = v[i].t.deadline <= mid;
		cr_assert_eq(atomic_load(&v[i].fired), is_due ? 1u : 0u, "timer %u (deadline %llu)",
			     i, (unsigned long long)v[i].t.deadline);
		cr_assert_eq(atomic_load(&v[i].t.heap) == NULL, is_due, "timer %u's heap", i);
	}
	cr_assert_gt(weft__timer_next(&h), mid, "next is a deadline still armed");
	/* max bounds one call; the rest stay armed, still in order. */
	cr_assert_eq(weft__timer_run(&h, UINT64_MAX - 1, 7), 7);
	cr_assert_eq(fire_n, due + 7);
	cr_assert_eq(weft__timer_run(&h, UINT64_MAX - 1, N), N - due - 7);
	cr_assert_eq(fire_n, N);
	for (size_t k = 1; k < fire_n; k++)
		cr_assert_leq(v[fire_log[k - 1]].t.deadline, v[fire_log[k]].t.deadline,
			      "fired out of order at %zu", k);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(atomic_load(&v[i].fired), 1, "timer %u fired %u times", i,
			     atomic_load(&v[i].fired));
	cr_assert_eq(weft__timer_next(&h), UINT64_MAX);
	cr_assert_eq(atomic_load(&fire_bad_heap), 0, "fire() ran with t->heap not its heap");
	weft__timer_heap_fini(&h);
	free(v);
	log_reset(0);
}

Test(timer, deadline_equal_to_now_is_due)
{
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(2);
	arm(&h, &v[0], 500);
	arm(&h, &v[1], 501);
	log_reset(2);
	cr_assert_eq(weft__timer_run(&h, 499, 10), 0);
	cr_assert_eq(weft__timer_run(&h, 500, 10), 1);
	cr_assert_eq(fire_log[0], 0);
	cr_assert_eq(weft__timer_next(&h), 501);
	cr_assert_eq(weft__timer_run(&h, 501, 10), 1);
	cr_assert_eq(weft__timer_next(&h), UINT64_MAX);
	weft__timer_heap_fini(&h);
	free(v);
	log_reset(0);
}

Test(timer, cancel_removes_and_reports_whether_armed)
{
	enum { N = 64 };
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(N);
	for (unsigned i = 0; i < N; i++)
		arm(&h, &v[i], 100 + (uint64_t)(N - i) * 10);   /* v[N-1] earliest */
	/* The earliest (the root): next moves to the second earliest. */
	cr_assert(weft__timer_cancel(&v[N - 1].t));
	cr_assert_eq(weft__timer_next(&h), 100 + 2 * 10);
	cr_assert_null(atomic_load(&v[N - 1].t.heap));
	/* Twice: no longer armed. */
	cr_assert_not(weft__timer_cancel(&v[N - 1].t));
	/* The latest (the last slot or near it) and some in the middle. */
	cr_assert(weft__timer_cancel(&v[0].t));
	for (unsigned i = 5; i < N - 5; i += 3)
		cr_assert(weft__timer_cancel(&v[i].t), "cancel %u", i);
	/* Never armed: nothing to do. */
	struct tnode lone = { .t.fire = on_fire, .id = 999 };
	atomic_init(&lone.t.heap, NULL);
	cr_assert_not(weft__timer_cancel(&lone.t));

	log_reset(N);
	unsigned left = 0;
	for (unsigned i = 0; i < N; i++)
		left += atomic_load(&v[i].t.heap) != NULL;
	cr_assert_eq(weft__timer_run(&h, UINT64_MAX - 1, N), left);
	for (size_t k = 1; k < fire_n; k++)
		cr_assert_leq(v[fire_log[k - 1]].t.deadline, v[fire_log[k]].t.deadline);
	bool cancelled[N] = { 0 };
	cancelled[0] = cancelled[N - 1] = true;
	for (unsigned i = 5; i < N - 5; i += 3)
		cancelled[i] = true;
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(atomic_load(&v[i].fired), cancelled[i] ? 0u : 1u, "timer %u", i);
	/* After it fired, cancel says it was no longer armed. */
	cr_assert_not(weft__timer_cancel(&v[1].t));
	/* A cancelled timer can be armed again and fires. */
	arm(&h, &v[0], 7);
	cr_assert_eq(weft__timer_next(&h), 7);
	cr_assert_eq(weft__timer_run(&h, 7, 1), 1);
	cr_assert_eq(atomic_load(&v[0].fired), 1);
	weft__timer_heap_fini(&h);
	free(v);
	log_reset(0);
}

Test(timer, equal_deadlines_all_fire_once)
{
	enum { N = 5000 };
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(N);
	/* Three deadlines, interleaved, so equal keys meet at every level. */
	for (unsigned i = 0; i < N; i++)
		arm(&h, &v[i], 1000 + (uint64_t)(i % 3) * 1000);
	for (unsigned i = 0; i < N; i += 7)
		cr_assert(weft__timer_cancel(&v[i].t));
	log_reset(N);
	unsigned want[3] = { 0 };
	for (unsigned i = 0; i < N; i++)
		if (i % 7)
			want[i % 3]++;
	cr_assert_eq(weft__timer_run(&h, 999, N), 0, "none is due before the shared deadline");
	for (unsigned k = 0; k < 3; k++) {
		uint64_t d = 1000 + (uint64_t)k * 1000;
		cr_assert_eq(weft__timer_next(&h), d);
		size_t before = fire_n;
		cr_assert_eq(weft__timer_run(&h, d, N), want[k], "deadline %llu", (unsigned long long)d);
		for (size_t j = before; j < fire_n; j++)
			cr_assert_eq(v[fire_log[j]].t.deadline, d);
	}
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(atomic_load(&v[i].fired), i % 7 ? 1u : 0u, "timer %u", i);
	cr_assert_eq(weft__timer_next(&h), UINT64_MAX);
	weft__timer_heap_fini(&h);
	free(v);
	log_reset(0);
}

/* A million timers: the array grows from 64 slots by doubling; a third are
 * cancelled at random positions (removal from the middle moves the last
 * node into the hole, and it may have to go up or down); the rest fire in
 * deadline order across calls of at most 4096. */
Test(timer, a_million_entries, .timeout = 120)
{
	enum { N = 1000000, BATCH = 4096 };
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(N);
	uint64_t s = 0x2545F4914F6CDD1Dull;
	for (unsigned i = 0; i < N; i++)
		arm(&h, &v[i], 1 + rnd(&s) % (4ull * N));   /* duplicates on purpose */
	cr_assert_geq(h.cap, N);
	unsigned cancelled = 0;
	for (unsigned i = 0; i < N; i++) {
		unsigned j = (unsigned)(rnd(&s) % N);
		if (j % 3 == 0 && weft__timer_cancel(&v[j].t))
			cancelled++;
	}
	cr_assert_gt(cancelled, N / 6);
	cr_assert_eq(h.n, N - cancelled);
	log_reset(N);
	uint64_t now = 0, step = 4ull * N / 64;
	unsigned calls = 0;
	while (weft__timer_next(&h) != UINT64_MAX) {
		cr_assert_lt(calls++, 2 * N / BATCH + 200, "the heap does not drain");
		unsigned got = weft__timer_run(&h, now, BATCH);
		cr_assert_leq(got, BATCH);
		if (got < BATCH)
			now += step;     /* all due by now fired: move on */
	}
	cr_assert_eq(fire_n, N - cancelled);
	for (size_t k = 1; k < fire_n; k++)
		cr_assert_leq(v[fire_log[k - 1]].t.deadline, v[fire_log[k]].t.deadline,
			      "fired out of order at %zu", k);
	unsigned fired = 0;
	for (unsigned i = 0; i < N; i++) {
		unsigned f = atomic_load(&v[i].fired);
		cr_assert_leq(f, 1, "timer %u fired %u times", i, f);
		cr_assert_null(atomic_load(&v[i].t.heap));
		fired += f;
	}
	cr_assert_eq(fired, N - cancelled);
	cr_assert_eq(h.n, 0);
	weft__timer_heap_fini(&h);
	free(v);
	log_reset(0);
}

Test(timer, run_try_gives_up_while_the_lock_is_held)
{
	struct weft__timer_heap h;
	heap_up(&h);
	struct tnode *v = nodes_new(1);
	arm(&h, &v[0], 10);
	weft__lock_acquire(&h.lock);
	cr_assert_eq(weft__timer_run_try(&h, 10, 1), 0);
	weft__unlock(&h.lock);
	cr_assert_eq(atomic_load(&v[0].fired), 0);
	cr_assert_eq(weft__timer_run_try(&h, 10, 1), 1);
	cr_assert_eq(atomic_load(&v[0].fired), 1);
	weft__timer_heap_fini(&h);
	free(v);
}

/* The owner fires while another thread cancels (as a coroutine that woke on
 * another worker takes its timer down): each timer fires or is cancelled,
 * never both, and cancel returns true exactly for those it took before they
 * fired. Both threads start on a barrier; every loop is bounded by count. */
enum { RACE_N = 200000 };
static struct weft__timer_heap race_heap;
static struct tnode *race_v;
static unsigned char *race_cancelled;     /* written by the canceller only */
static pthread_barrier_t race_start;

static void *canceller(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&race_start);
	for (unsigned i = 0; i < RACE_N; i++) {
		/* 7919 is prime and RACE_N = 2^6 * 5^5: each timer once, scattered */
		unsigned j = (unsigned)((uint64_t)i * 7919u % RACE_N);
		race_cancelled[j] = weft__timer_cancel(&race_v[j].t);
	}
	return NULL;
}

Test(timer, cancel_races_firing_exactly_once, .timeout = 120)
{
	heap_up(&race_heap);
	race_v = nodes_new(RACE_N);
	race_cancelled = calloc(RACE_N, 1);
	cr_assert_not_null(race_cancelled);
	for (unsigned i = 0; i < RACE_N; i++)
		arm(&race_heap, &race_v[i], 1 + i);
	log_reset(0);
	pthread_barrier_init(&race_start, NULL, 2);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, canceller, NULL), 0);
	pthread_barrier_wait(&race_start);
	unsigned fired = 0;
	for (uint64_t now = 0; now <= RACE_N; now += 64)
		fired += weft__timer_run(&race_heap, now, 64);
	pthread_join(th, NULL);       /* orders race_cancelled before the reads below */
	unsigned cancelled = 0;
	for (unsigned i = 0; i < RACE_N; i++) {
		unsigned f = atomic_load(&race_v[i].fired);
		cr_assert_eq(f + race_cancelled[i], 1, "timer %u: fired %u times, cancel said %d",
			     i, f, race_cancelled[i]);
		cr_assert_null(atomic_load(&race_v[i].t.heap));
		cancelled += race_cancelled[i];
	}
	cr_assert_eq(fired + cancelled, RACE_N, "fired %u + cancelled %u", fired, cancelled);
	cr_assert_eq(atomic_load(&fire_bad_heap), 0);
	cr_assert_eq(weft__timer_next(&race_heap), UINT64_MAX);
	pthread_barrier_destroy(&race_start);
	weft__timer_heap_fini(&race_heap);
	free(race_cancelled);
	free(race_v);
}
