/*
 * Sync primitives that park coroutines: mutex (counter, FIFO hand-off,
 * timeouts), rwlock, condition variable, semaphore, wait group, once,
 * barrier, plain threads mixed with coroutines, task groups, and a
 * cancellation storm over every kind of wait.
 *
 * Checks inside coroutines count failures (CHECK); the test's main thread
 * asserts the count is zero (Criterion's fatal asserts must not longjmp on a
 * worker thread).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"
#include "sched/wait.h"     /* weft__shield_push/pop */

#include "harness.h"
#include "util.h"

static void run(unsigned workers, weft_fn fn, void *arg)
{
	run_with(workers, 16 * 1024, fn, arg);
}

/* ------------------------------------------------------------------ mutex -- */

static weft_mutex mtx = WEFT_MUTEX_INIT;
static long counter;
static _Atomic int inside;

static void *counter_body(void *arg)
{
	for (int i = 0; i < 100; i++) {
		CHECK(weft_mutex_lock(&mtx) == 0);
		CHECK(atomic_fetch_add(&inside, 1) == 0);
		long c = counter;
		if ((i & 7) == 0)
			weft_yield();            /* hold it across a switch */
		counter = c + 1;
		atomic_fetch_sub(&inside, 1);
		CHECK(weft_mutex_unlock(&mtx) == 0);
	}
	return NULL;
}

static void *counter_main(void *arg)
{
	enum { N = 1000 };
	weft_task **t = malloc(N * sizeof(*t));
	for (int i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], counter_body, NULL) == 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	free(t);
	CHECK(counter == N * 100);
	CHECK(weft_mutex_trylock(&mtx) == 0);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	CHECK(weft_mutex_unlock(&mtx) == -EPERM);
	return NULL;
}

Test(sync, mutex_counter_1000_coroutines_4_workers)
{
	weft_mutex_init(&mtx);
	counter = 0;
	run(4, counter_main, NULL);
}

Test(sync, mutex_counter_1_2_64_workers)
{
	static const unsigned workers[] = { 1, 2, 64 };
	for (int i = 0; i < 3; i++) {
		weft_mutex_init(&mtx);
		counter = 0;
		run(workers[i], counter_main, NULL);
	}
}

/* On one worker, children run at once when spawned (child-first) and queue
 * on the mutex in spawn order: unlock must hand it over in that order. */
static int order[16];
static _Atomic int norder;

static void *fifo_body(void *arg)
{
	CHECK(weft_mutex_lock(&mtx) == 0);
	order[atomic_fetch_add(&norder, 1)] = (int)(intptr_t)arg;
	CHECK(weft_mutex_unlock(&mtx) == 0);
	return NULL;
}

static void *fifo_main(void *arg)
{
	weft_task *t[16];
	CHECK(weft_mutex_lock(&mtx) == 0);
	for (int i = 0; i < 16; i++) {
		CHECK(weft_spawn(&t[i], fifo_body, (void *)(intptr_t)i) == 0);
		weft_yield();                /* let it reach the mutex queue */
	}
	/* a newcomer's trylock must not barge past the queue... */
	CHECK(weft_mutex_unlock(&mtx) == 0);
	CHECK(weft_mutex_trylock(&mtx) == -EBUSY);   /* handed to waiter 0 */
	for (int i = 0; i < 16; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	for (int i = 0; i < 16; i++)
		CHECK(order[i] == i);
	return NULL;
}

Test(sync, mutex_fifo_hand_off)
{
	weft_mutex_init(&mtx);
	atomic_store(&norder, 0);
	run(1, fifo_main, NULL);
}

static void *mutex_timeout_body(void *arg)
{
	uint64_t t0 = weft_now();
	int r = weft_mutex_lock_timeout(&mtx, 10000000);
	CHECK(weft_now() - t0 >= 10000000);
	return (void *)(intptr_t)r;
}

static void *mutex_timeout_main(void *arg)
{
	CHECK(weft_mutex_lock(&mtx) == 0);
	weft_task *t;
	CHECK(weft_spawn(&t, mutex_timeout_body, NULL) == 0);
	void *r;
	CHECK(weft_join(t, &r) == 0);
	CHECK((intptr_t)r == -ETIMEDOUT);
	/* the timed-out waiter is gone: unlock leaves the mutex free */
	CHECK(weft_mutex_unlock(&mtx) == 0);
	CHECK(weft_mutex_trylock(&mtx) == 0);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	return NULL;
}

Test(sync, mutex_timeout)
{
	weft_mutex_init(&mtx);
	run(2, mutex_timeout_main, NULL);
}

/* A plain thread and coroutines share one mutex. */
static void *thread_incr(void *arg)
{
	for (int i = 0; i < 20000; i++) {
		if (weft_mutex_lock(&mtx))
			return (void *)1;
		counter++;
		weft_mutex_unlock(&mtx);
	}
	return NULL;
}

static void *co_incr(void *arg)
{
	for (int i = 0; i < 20000; i++) {
		CHECK(weft_mutex_lock(&mtx) == 0);
		counter++;
		CHECK(weft_mutex_unlock(&mtx) == 0);
	}
	return NULL;
}

static void *mixed_main(void *arg)
{
	weft_task *t[4];
	for (int i = 0; i < 4; i++)
		CHECK(weft_spawn(&t[i], co_incr, NULL) == 0);
	for (int i = 0; i < 4; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(sync, mutex_shared_by_threads_and_coroutines)
{
	weft_mutex_init(&mtx);
	counter = 0;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, thread_incr, NULL), 0);
	run(2, mixed_main, NULL);
	for (int i = 0; i < 2; i++) {
		void *r;
		pthread_join(th[i], &r);
		cr_assert_null(r);
	}
	cr_assert_eq(counter, 6 * 20000);
}

/* ----------------------------------------------------------------- rwlock -- */

static weft_rwlock rw = WEFT_RWLOCK_INIT;
static _Atomic int readers_in, writers_in;

static void *rw_body(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	for (int i = 0; i < 50; i++) {
		if ((id + i) % 5 == 0) {
			CHECK(weft_rwlock_wrlock(&rw) == 0);
			CHECK(atomic_fetch_add(&writers_in, 1) == 0);
			CHECK(atomic_load(&readers_in) == 0);
			weft_yield();
			atomic_fetch_sub(&writers_in, 1);
		} else {
			CHECK(weft_rwlock_rdlock(&rw) == 0);
			atomic_fetch_add(&readers_in, 1);
			CHECK(atomic_load(&writers_in) == 0);
			weft_yield();
			atomic_fetch_sub(&readers_in, 1);
		}
		CHECK(weft_rwlock_unlock(&rw) == 0);
	}
	return NULL;
}

static void *rw_main(void *arg)
{
	enum { N = 200 };
	weft_task *t[N];
	for (unsigned i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], rw_body, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	CHECK(weft_rwlock_unlock(&rw) == -EPERM);
	/* timeouts: a writer waits out readers, a reader waits out a writer */
	CHECK(weft_rwlock_rdlock(&rw) == 0);
	CHECK(weft_rwlock_rdlock(&rw) == 0);             /* shared */
	CHECK(weft_rwlock_wrlock_timeout(&rw, 5000000) == -ETIMEDOUT);
	CHECK(weft_rwlock_unlock(&rw) == 0);
	CHECK(weft_rwlock_unlock(&rw) == 0);
	CHECK(weft_rwlock_wrlock(&rw) == 0);
	CHECK(weft_rwlock_rdlock_timeout(&rw, 5000000) == -ETIMEDOUT);
	CHECK(weft_rwlock_unlock(&rw) == 0);
	return NULL;
}

Test(sync, rwlock_exclusion)
{
	weft_rwlock_init(&rw);
	run(4, rw_main, NULL);
	cr_assert_eq(atomic_load(&readers_in), 0);
}

/* A writer's unlock admits every reader queued behind it at once, not one
 * at a time. One worker: each reader spawned runs until it parks in rdlock
 * (child-first) before main goes on, so all RW_QUEUED are queued behind
 * main's write lock when main unlocks. An admitted reader counts itself,
 * checks in on a wait group and keeps its read lock until main opens the
 * gate, so the count reaches RW_QUEUED only if they were all in at once.
 * main's wait is bounded (10 s): a lock that admitted one reader fails the
 * check instead of hanging, and opening the gate then lets the rest in. */
enum { RW_QUEUED = 8 };
static weft_wg rw_admitted;
static weft_sem rw_gate;
static _Atomic int max_readers;

static void *rw_queued_reader(void *arg)
{
	CHECK(weft_rwlock_rdlock(&rw) == 0);
	int r = atomic_fetch_add(&readers_in, 1) + 1;
	int m = atomic_load(&max_readers);
	while (r > m && !atomic_compare_exchange_weak(&max_readers, &m, r))
		;
	CHECK(weft_wg_done(&rw_admitted) == 0);
	CHECK(weft_sem_wait(&rw_gate) == 0);
	atomic_fetch_sub(&readers_in, 1);
	CHECK(weft_rwlock_unlock(&rw) == 0);
	return NULL;
}

static void *rw_batch_main(void *arg)
{
	weft_task *t[RW_QUEUED];
	CHECK(weft_wg_add(&rw_admitted, RW_QUEUED) == 0);
	CHECK(weft_rwlock_wrlock(&rw) == 0);
	for (int i = 0; i < RW_QUEUED; i++)
		CHECK(weft_spawn(&t[i], rw_queued_reader, NULL) == 0);
	CHECK(atomic_load(&readers_in) == 0);          /* all queued, none in */
	CHECK(weft_rwlock_unlock(&rw) == 0);
	CHECK(weft_wg_wait_timeout(&rw_admitted, 10ull * 1000000000) == 0);
	CHECK(atomic_load(&max_readers) == RW_QUEUED);
	for (int i = 0; i < RW_QUEUED; i++)
		CHECK(weft_sem_post(&rw_gate) == 0);
	for (int i = 0; i < RW_QUEUED; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	/* all gone: the lock is free for a writer */
	CHECK(weft_rwlock_wrlock_timeout(&rw, 1000000) == 0);
	CHECK(weft_rwlock_unlock(&rw) == 0);
	return NULL;
}

Test(sync, rwlock_unlock_admits_every_queued_reader)
{
	weft_rwlock_init(&rw);
	weft_wg_init(&rw_admitted);
	weft_sem_init(&rw_gate, 0);
	atomic_store(&readers_in, 0);
	atomic_store(&max_readers, 0);
	run(1, rw_batch_main, NULL);
}

/* A writer that gives up must let the readers queued behind it in. One
 * worker: each spawned coroutine runs until it parks before main goes on,
 * and nothing fires the writer's timer until main parks in its join, so
 * the reader has queued behind the waiting writer (dump_shows checks both)
 * by the time the writer gives up. The reader's wait is bounded (10 s): a
 * reader left queued fails its result instead of hanging the test. */

static void *rw_reader_after(void *arg)
{
	int r = weft_rwlock_rdlock_timeout(&rw, 10ull * 1000000000);
	if (r == 0)
		weft_rwlock_unlock(&rw);
	return (void *)(intptr_t)r;
}

static void *rw_writer_timeout(void *arg)
{
	return (void *)(intptr_t)weft_rwlock_wrlock_timeout(&rw, 50000000);
}

static void *rw_giveup_main(void *arg)
{
	CHECK(weft_rwlock_rdlock(&rw) == 0);
	weft_task *w, *r;
	CHECK(weft_spawn_opts(&w, rw_writer_timeout, NULL,
	                      &(struct weft_spawn_opts){ .name = "rw-giver-up" }) == 0);
	CHECK(dump_shows("rw-giver-up", "rwlock write", &rw));
	CHECK(weft_spawn_opts(&r, rw_reader_after, NULL,
	                      &(struct weft_spawn_opts){ .name = "rw-behind" }) == 0);
	CHECK(dump_shows("rw-behind", "rwlock read", &rw));     /* behind the writer */
	void *res;
	CHECK(weft_join(w, &res) == 0 && (intptr_t)res == -ETIMEDOUT);
	CHECK(weft_join(r, &res) == 0 && (intptr_t)res == 0);   /* admitted */
	CHECK(weft_rwlock_unlock(&rw) == 0);
	return NULL;
}

Test(sync, rwlock_writer_timeout_admits_readers)
{
	weft_rwlock_init(&rw);
	run(1, rw_giveup_main, NULL);
}

/* ------------------------------------------------------------------- cond -- */

static weft_cond cv = WEFT_COND_INIT;
static int queue_items, consumed_total;
static bool producing_done;

static void *cond_consumer(void *arg)
{
	CHECK(weft_mutex_lock(&mtx) == 0);
	for (;;) {
		while (queue_items == 0 && !producing_done)
			CHECK(weft_cond_wait(&cv, &mtx) == 0);
		if (queue_items == 0)
			break;
		queue_items--;
		consumed_total++;
	}
	CHECK(weft_mutex_unlock(&mtx) == 0);
	return NULL;
}

static void *cond_main(void *arg)
{
	enum { C = 16, ITEMS = 20000 };
	weft_task *t[C];
	for (int i = 0; i < C; i++)
		CHECK(weft_spawn(&t[i], cond_consumer, NULL) == 0);
	for (int i = 0; i < ITEMS; i++) {
		CHECK(weft_mutex_lock(&mtx) == 0);
		queue_items++;
		weft_cond_signal(&cv);
		CHECK(weft_mutex_unlock(&mtx) == 0);
		if ((i & 63) == 0)
			weft_yield();
	}
	CHECK(weft_mutex_lock(&mtx) == 0);
	producing_done = true;
	weft_cond_broadcast(&cv);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	for (int i = 0; i < C; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	CHECK(consumed_total == ITEMS);
	/* timeout: returns with the mutex held again */
	CHECK(weft_mutex_lock(&mtx) == 0);
	CHECK(weft_cond_wait_timeout(&cv, &mtx, 5000000) == -ETIMEDOUT);
	CHECK(weft_mutex_trylock(&mtx) == -EBUSY);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	return NULL;
}

Test(sync, cond_producer_consumers)
{
	weft_mutex_init(&mtx);
	weft_cond_init(&cv);
	queue_items = consumed_total = 0;
	producing_done = false;
	run(4, cond_main, NULL);
}

/* One broadcast ends every wait, not only the longest one's. Each waiter
 * counts itself under the mutex before it waits, and cond_wait queues it
 * before it lets the mutex go: once main holds the mutex and sees all of
 * them counted, all are queued on the condition variable. The woken check in
 * on a wait group; main's wait for it is bounded (10 s), so a broadcast that
 * woke fewer fails the check instead of hanging the test, and main then
 * signals the others out one by one. */
enum { BC_WAITERS = 16 };
static int bc_waiting;
static bool bc_go;
static weft_wg bc_woken;

static void *bc_waiter(void *arg)
{
	int r = 0;
	CHECK(weft_mutex_lock(&mtx) == 0);
	bc_waiting++;
	while (!bc_go && r == 0)
		r = weft_cond_wait(&cv, &mtx);
	CHECK(r == 0);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	CHECK(weft_wg_done(&bc_woken) == 0);
	return NULL;
}

static void *bc_main(void *arg)
{
	weft_task *t[BC_WAITERS];
	CHECK(weft_wg_add(&bc_woken, BC_WAITERS) == 0);
	for (int i = 0; i < BC_WAITERS; i++)
		CHECK(weft_spawn(&t[i], bc_waiter, NULL) == 0);
	bool all = false;
	for (int tries = 0; !all && tries < 10000; tries++) {
		if (tries)
			weft_sleep(1000000);
		CHECK(weft_mutex_lock(&mtx) == 0);
		all = bc_waiting == BC_WAITERS;
		if (!all)
			CHECK(weft_mutex_unlock(&mtx) == 0);
	}
	CHECK(all);
	if (!all)
		CHECK(weft_mutex_lock(&mtx) == 0);
	bc_go = true;
	weft_cond_broadcast(&cv);
	CHECK(weft_mutex_unlock(&mtx) == 0);
	int r = weft_wg_wait_timeout(&bc_woken, 10ull * 1000000000);
	CHECK(r == 0);
	for (int i = 0; r != 0 && i < BC_WAITERS; i++)
		weft_cond_signal(&cv);
	for (int i = 0; i < BC_WAITERS; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	return NULL;
}

Test(sync, cond_broadcast_wakes_every_waiter)
{
	weft_mutex_init(&mtx);
	weft_cond_init(&cv);
	weft_wg_init(&bc_woken);
	bc_waiting = 0;
	bc_go = false;
	run(4, bc_main, NULL);
}

/* -------------------------------------------------------------- semaphore -- */

static weft_sem sem;
static _Atomic int sem_in, sem_max;

static void *sem_body(void *arg)
{
	for (int i = 0; i < 20; i++) {
		CHECK(weft_sem_wait(&sem) == 0);
		int n = atomic_fetch_add(&sem_in, 1) + 1;
		int m = atomic_load(&sem_max);
		while (n > m && !atomic_compare_exchange_weak(&sem_max, &m, n))
			;
		weft_yield();
		atomic_fetch_sub(&sem_in, 1);
		CHECK(weft_sem_post(&sem) == 0);
	}
	return NULL;
}

/* The lower bound: SEM_LIMIT holders at once. Twice SEM_LIMIT coroutines
 * each take a permit and, holding it, meet at a barrier of SEM_LIMIT: a
 * round of the barrier completes only with SEM_LIMIT holders inside at once,
 * and the count of holders inside reaches SEM_LIMIT. Everything is bounded by
 * one region deadline (10 s from the start), so a semaphore that let fewer in
 * fails the checks instead of hanging. */
enum { SEM_LIMIT = 8 };
static weft_barrier sem_bar;
static uint64_t sem_deadline;

static void *sem_full(void *arg)
{
	weft_deadline_set(sem_deadline);
	int r = weft_sem_wait(&sem);
	CHECK(r == 0);
	if (r)
		return NULL;
	int n = atomic_fetch_add(&sem_in, 1) + 1;
	int m = atomic_load(&sem_max);
	while (n > m && !atomic_compare_exchange_weak(&sem_max, &m, n))
		;
	r = weft_barrier_wait(&sem_bar);
	CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
	atomic_fetch_sub(&sem_in, 1);
	CHECK(weft_sem_post(&sem) == 0);
	return NULL;
}

static void *sem_main(void *arg)
{
	weft_task *f[2 * SEM_LIMIT];
	CHECK(weft_barrier_init(&sem_bar, SEM_LIMIT) == 0);
	sem_deadline = weft_now() + 10ull * 1000000000;
	for (int i = 0; i < 2 * SEM_LIMIT; i++)
		CHECK(weft_spawn(&f[i], sem_full, NULL) == 0);
	for (int i = 0; i < 2 * SEM_LIMIT; i++)
		CHECK(weft_join(f[i], NULL) == 0);
	CHECK(atomic_load(&sem_max) == SEM_LIMIT);
	CHECK(weft_sem_value(&sem) == SEM_LIMIT);

	/* the upper bound, under churn */
	enum { N = 100 };
	weft_task *t[N];
	atomic_store(&sem_max, 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], sem_body, NULL) == 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	CHECK(atomic_load(&sem_max) <= SEM_LIMIT);
	CHECK(weft_sem_value(&sem) == SEM_LIMIT);
	for (int i = 0; i < SEM_LIMIT; i++)
		CHECK(weft_sem_trywait(&sem) == 0);
	CHECK(weft_sem_trywait(&sem) == -EAGAIN);
	CHECK(weft_sem_wait_timeout(&sem, 5000000) == -ETIMEDOUT);
	return NULL;
}

Test(sync, semaphore_limits_concurrency)
{
	weft_sem_init(&sem, SEM_LIMIT);
	atomic_store(&sem_in, 0);
	atomic_store(&sem_max, 0);
	run(4, sem_main, NULL);
}

/* ------------------------------------------------------------- wait group -- */

static weft_wg wg = WEFT_WG_INIT;
static _Atomic unsigned wg_done_count;

static void *wg_member(void *arg)
{
	if ((uintptr_t)arg & 1)
		weft_yield();
	atomic_fetch_add(&wg_done_count, 1);
	CHECK(weft_wg_done(&wg) == 0);
	return NULL;
}

static void *wg_waiter(void *arg)
{
	CHECK(weft_wg_wait(&wg) == 0);
	CHECK(atomic_load(&wg_done_count) == 10000);
	return NULL;
}

static void *wg_main(void *arg)
{
	enum { N = 10000 };
	CHECK(weft_wg_add(&wg, N) == 0);
	weft_task *w[4];
	for (int i = 0; i < 4; i++)
		CHECK(weft_spawn(&w[i], wg_waiter, NULL) == 0);
	for (uintptr_t i = 0; i < N; i++)
		CHECK(weft_spawn(NULL, wg_member, (void *)i) == 0);
	CHECK(weft_wg_wait(&wg) == 0);
	CHECK(atomic_load(&wg_done_count) == N);
	for (int i = 0; i < 4; i++)
		CHECK(weft_join(w[i], NULL) == 0);
	CHECK(weft_wg_done(&wg) == -EINVAL);
	CHECK(weft_wg_add(&wg, 1) == 0);
	CHECK(weft_wg_wait_timeout(&wg, 5000000) == -ETIMEDOUT);
	CHECK(weft_wg_done(&wg) == 0);
	CHECK(weft_wg_wait_timeout(&wg, 5000000) == 0);
	return NULL;
}

Test(sync, wait_group_10000_members)
{
	weft_wg_init(&wg);
	atomic_store(&wg_done_count, 0);
	run(4, wg_main, NULL);
}

/* ------------------------------------------------------------------- once -- */

static weft_once_flag once = WEFT_ONCE_INIT;
static _Atomic int once_runs;
static int once_value;

static void once_fn(void *arg)
{
	atomic_fetch_add(&once_runs, 1);
	weft_sleep(2000000);                 /* others must wait, not run it */
	once_value = 1234;
}

static void *once_body(void *arg)
{
	CHECK(weft_once(&once, once_fn, NULL) == 0);
	CHECK(once_value == 1234);
	return NULL;
}

static void *once_main(void *arg)
{
	enum { N = 100 };
	weft_task *t[N];
	for (int i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], once_body, NULL) == 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	CHECK(atomic_load(&once_runs) == 1);
	return NULL;
}

Test(sync, once_runs_once)
{
	memset(&once, 0, sizeof(once));
	atomic_store(&once_runs, 0);
	once_value = 0;
	run(4, once_main, NULL);
}

/* ---------------------------------------------------------------- barrier -- */

static weft_barrier bar;
static _Atomic int phase_count[64];
static _Atomic int serials[64];

static void *barrier_body(void *arg)
{
	for (int round = 0; round < 64; round++) {
		atomic_fetch_add(&phase_count[round], 1);
		int r = weft_barrier_wait(&bar);
		CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
		if (r == WEFT_BARRIER_SERIAL)
			atomic_fetch_add(&serials[round], 1);
		/* everybody arrived before anybody left */
		CHECK(atomic_load(&phase_count[round]) == 16);
	}
	return NULL;
}

static void *barrier_main(void *arg)
{
	weft_task *t[16];
	for (int i = 0; i < 16; i++)
		CHECK(weft_spawn(&t[i], barrier_body, NULL) == 0);
	for (int i = 0; i < 16; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	for (int i = 0; i < 64; i++)
		CHECK(atomic_load(&serials[i]) == 1);
	/* a party that times out leaves the round */
	weft_barrier b2;
	CHECK(weft_barrier_init(&b2, 2) == 0);
	CHECK(weft_barrier_wait_timeout(&b2, 3000000) == -ETIMEDOUT);
	CHECK(weft_barrier_wait_timeout(&b2, 3000000) == -ETIMEDOUT);   /* still 1 short */
	CHECK(weft_barrier_init(&b2, 0) == -EINVAL);
	CHECK(weft_barrier_init(&b2, 1) == 0);
	CHECK(weft_barrier_wait(&b2) == WEFT_BARRIER_SERIAL);
	return NULL;
}

Test(sync, barrier_rounds)
{
	cr_assert_eq(weft_barrier_init(&bar, 16), 0);
	memset(phase_count, 0, sizeof(phase_count));
	memset(serials, 0, sizeof(serials));
	run(4, barrier_main, NULL);
}

/* ------------------------------------------------------------ task groups -- */

static int ok_member(void *arg, void **result)
{
	weft_yield();
	*result = (void *)((uintptr_t)arg * 2);
	return 0;
}

static int failing_member(void *arg, void **result)
{
	weft_sleep(1000000);
	return -EIO;
}

static int sleepy_member(void *arg, void **result)
{
	int r = weft_sleep(10ull * 1000000000);    /* only a cancel ends it early */
	*result = (void *)1;
	return r;
}

static void *group_main(void *arg)
{
	weft_group *g;
	CHECK(weft_group_create(&g, 0) == 0);
	for (uintptr_t i = 0; i < 100; i++)
		CHECK(weft_group_spawn(g, ok_member, (void *)i) == (int)i);
	CHECK(weft_group_wait(g) == 0);
	CHECK(weft_group_size(g) == 100);
	for (uintptr_t i = 0; i < 100; i++) {
		CHECK(weft_group_result(g, i) == (void *)(i * 2));
		CHECK(weft_group_error(g, i) == 0);
	}
	weft_group_destroy(g);

	/* first failure cancels the rest: their 10 s sleeps end -ECANCELED
	 * (a sleep that ran its course would return 0) */
	CHECK(weft_group_create(&g, WEFT_GROUP_CANCEL_ON_ERROR) == 0);
	for (int i = 0; i < 20; i++)
		CHECK(weft_group_spawn(g, sleepy_member, NULL) == i);
	CHECK(weft_group_spawn(g, failing_member, NULL) == 20);
	CHECK(weft_group_wait(g) == -EIO);
	for (int i = 0; i < 20; i++)
		CHECK(weft_group_error(g, i) == -ECANCELED);
	CHECK(weft_group_error(g, 20) == -EIO);
	weft_group_destroy(g);

	/* without the flag, a failure is reported but the others finish */
	CHECK(weft_group_create(&g, 0) == 0);
	CHECK(weft_group_spawn(g, failing_member, NULL) == 0);
	CHECK(weft_group_spawn(g, ok_member, (void *)5) == 1);
	CHECK(weft_group_wait(g) == -EIO);
	CHECK(weft_group_result(g, 1) == (void *)10);
	weft_group_destroy(g);
	CHECK(weft_group_create(&g, 0x80) == -EINVAL);
	return NULL;
}

Test(sync, task_groups)
{
	run(4, group_main, NULL);
}

static void *group_owner(void *arg)
{
	weft_group *g;
	CHECK(weft_group_create(&g, 0) == 0);
	for (int i = 0; i < 10; i++)
		CHECK(weft_group_spawn(g, sleepy_member, NULL) == i);
	int r = weft_group_wait(g);
	for (int i = 0; i < 10; i++)
		CHECK(weft_group_error(g, i) == -ECANCELED);
	weft_group_destroy(g);
	return (void *)(intptr_t)r;
}

static void *group_cancel_main(void *arg)
{
	weft_task *t;
	CHECK(weft_spawn(&t, group_owner, NULL) == 0);
	weft_sleep(2000000);
	CHECK(weft_cancel(t) == 0);
	void *r;
	CHECK(weft_join(t, &r) == 0);
	CHECK((intptr_t)r == -ECANCELED);    /* group_owner checks its members' */
	return NULL;
}

Test(sync, task_group_owner_cancelled_cancels_members)
{
	run(2, group_cancel_main, NULL);
}

/* ------------------------------------------------------ cancellation storm -- */

enum {
	W_CHAN_RECV, W_CHAN_SEND, W_SELECT, W_MUTEX, W_RDLOCK, W_WRLOCK, W_COND,
	W_SEM, W_WG, W_ONCE, W_BARRIER, W_SLEEP, W_JOIN, W_KINDS
};

struct storm {
	weft_chan *empty, *full;
	weft_mutex m, cm;
	weft_rwlock rd, wr;            /* rd: held by a writer; wr: held by a reader */
	weft_cond c;
	weft_sem s;
	weft_wg wg;
	weft_once_flag o;
	weft_barrier b;
	_Atomic unsigned started;
	_Atomic unsigned ended;
	_Atomic unsigned wrong[W_KINDS];
	_Atomic unsigned once_ran;
	weft_sem release_once;
	bool cond_go;                  /* after the storm: ends after_cond's wait */
	_Atomic unsigned once_again_ran;
};

static struct storm S;

/* The once runner stays blocked (shielded) until released, so the other
 * once callers are still waiting when they are cancelled. */
static void once_blocker(void *arg)
{
	weft__shield_push();
	weft_sem_wait(&S.release_once);
	weft__shield_pop();
}

static void *sleeper_body(void *arg)
{
	return (void *)(intptr_t)weft_sleep(60ull * 1000000000);
}

static void *storm_body(void *arg)
{
	unsigned kind = (unsigned)(uintptr_t)arg % W_KINDS;
	int v = 0, r;
	atomic_fetch_add(&S.started, 1);
	switch (kind) {
	case W_CHAN_RECV: r = weft_chan_recv(S.empty, &v); break;
	case W_CHAN_SEND: r = weft_chan_send(S.full, &v); break;
	case W_SELECT: {
		struct weft_select_case c[2] = {
			{ S.empty, WEFT_SELECT_RECV, &v, 1 }, { S.full, WEFT_SELECT_SEND, &v, 1 },
		};
		r = weft_select(c, 2, WEFT_FOREVER);
		break;
	}
	case W_MUTEX: r = weft_mutex_lock(&S.m); break;
	case W_RDLOCK: r = weft_rwlock_rdlock(&S.rd); break;
	case W_WRLOCK: r = weft_rwlock_wrlock(&S.wr); break;
	case W_COND:
		r = weft_mutex_lock(&S.cm);
		if (r)
			break;
		r = weft_cond_wait(&S.c, &S.cm);
		/* the mutex is held again whatever the result */
		if (weft_mutex_unlock(&S.cm) != 0)
			r = 1;
		break;
	case W_SEM: r = weft_sem_wait(&S.s); break;
	case W_WG: r = weft_wg_wait(&S.wg); break;
	case W_ONCE: r = weft_once(&S.o, once_blocker, NULL); break;
	case W_BARRIER: r = weft_barrier_wait(&S.b); break;
	case W_SLEEP: r = weft_sleep(60ull * 1000000000); break;
	default: {
		/* a join allows one joiner per task: each joins its own child */
		weft_task *child;
		if (weft_spawn(&child, sleeper_body, NULL) != 0) {
			r = 1;
			break;
		}
		r = weft_join(child, NULL);
		if (r == -ECANCELED) {
			weft_cancel(child);
			weft__shield_push();
			if (weft_join(child, NULL) != 0)
				r = 1;
			weft__shield_pop();
		}
		break;
	}
	}
	/* The one once caller that runs once_blocker returns 0. */
	if (kind == W_ONCE && r == 0)
		atomic_fetch_add(&S.once_ran, 1);
	else if (r != -ECANCELED)
		atomic_fetch_add(&S.wrong[kind], 1);
	atomic_fetch_add(&S.ended, 1);
	return NULL;
}

/* After the storm: fresh waiters where the cancelled ones were. Bounded
 * waits (10 s), so a release that does not reach them fails their result
 * instead of hanging the test. */
#define AFTER_BOUND (10ull * 1000000000)

static void *after_recv(void *arg)
{
	int v = 0;
	int r = weft_chan_recv_timeout(S.empty, &v, AFTER_BOUND);
	return (void *)(intptr_t)(r ? r : v);
}

static void *after_lock(void *arg)
{
	int r = weft_mutex_lock_timeout(&S.m, AFTER_BOUND);
	if (r == 0)
		r = weft_mutex_unlock(&S.m);
	return (void *)(intptr_t)r;
}

static void *after_wrlock(void *arg)
{
	int r = weft_rwlock_wrlock_timeout(&S.rd, AFTER_BOUND);
	if (r == 0)
		r = weft_rwlock_unlock(&S.rd);
	return (void *)(intptr_t)r;
}

static void *after_cond(void *arg)
{
	int r = weft_mutex_lock(&S.cm);
	if (r)
		return (void *)(intptr_t)r;
	while (!S.cond_go && r == 0)
		r = weft_cond_wait_timeout(&S.c, &S.cm, AFTER_BOUND);
	if (weft_mutex_unlock(&S.cm) != 0)
		r = 1;
	return (void *)(intptr_t)r;
}

static void *after_sem(void *arg)
{
	return (void *)(intptr_t)weft_sem_wait_timeout(&S.s, AFTER_BOUND);
}

static void *after_wg(void *arg)
{
	return (void *)(intptr_t)weft_wg_wait_timeout(&S.wg, AFTER_BOUND);
}

static void *after_barrier(void *arg)
{
	return (void *)(intptr_t)weft_barrier_wait_timeout(&S.b, AFTER_BOUND);
}

static void once_again(void *arg)
{
	atomic_fetch_add(&S.once_again_ran, 1);
}

static weft_task *after_spawn(weft_fn fn, const char *name)
{
	weft_task *t = NULL;
	struct weft_spawn_opts o = { .name = name };
	CHECK(weft_spawn_opts(&t, fn, NULL, &o) == 0);
	return t;
}

static intptr_t after_join(weft_task *t)
{
	void *r = (void *)(intptr_t)-1;
	CHECK(t && weft_join(t, &r) == 0);
	return (intptr_t)r;
}

static void *storm_main(void *arg)
{
	enum { N = 10000 };
	/* The barrier waits for one party more than the storm has: complete
	 * only with main, which arrives after the storm, when every cancelled
	 * party should have left the round. */
	unsigned barrier_parties = 0;
	for (unsigned i = 0; i < N; i++)
		barrier_parties += i % W_KINDS == W_BARRIER;
	CHECK(weft_chan_create(&S.empty, sizeof(int), 0) == 0);
	CHECK(weft_chan_create(&S.full, sizeof(int), 1) == 0);
	int v = 0;
	CHECK(weft_chan_send(S.full, &v) == 0);
	CHECK(weft_mutex_lock(&S.m) == 0);
	CHECK(weft_rwlock_wrlock(&S.rd) == 0);
	CHECK(weft_rwlock_rdlock(&S.wr) == 0);
	weft_sem_init(&S.s, 0);
	weft_sem_init(&S.release_once, 0);
	CHECK(weft_wg_add(&S.wg, 1) == 0);
	CHECK(weft_barrier_init(&S.b, barrier_parties + 1) == 0);

	weft_task **t = malloc(N * sizeof(*t));
	for (uintptr_t i = 0; i < N; i++)
		CHECK(weft_spawn(&t[i], storm_body, (void *)i) == 0);
	for (int i = 0; i < 2000 && atomic_load(&S.started) < N; i++)
		weft_sleep(1000000);
	weft_sleep(20000000);                /* most are parked by now */
	CHECK(atomic_load(&S.ended) == 0);   /* nothing ended on its own */
	for (int i = 0; i < N; i++)
		CHECK(weft_cancel(t[i]) == 0);
	/* release the once runner */
	CHECK(weft_sem_post(&S.release_once) == 0);
	for (int i = 0; i < N; i++)
		CHECK(weft_join(t[i], NULL) == 0);
	free(t);
	CHECK(atomic_load(&S.ended) == N);
	CHECK(atomic_load(&S.once_ran) == 1);
	for (int k = 0; k < W_KINDS; k++)
		CHECK(atomic_load(&S.wrong[k]) == 0);

	/* Nothing left queued and no party left counted: each primitive works
	 * normally afterwards, and a fresh waiter, parked where the cancelled
	 * ones were (dump_shows), is woken by the usual release. */
	weft_task *w;
	CHECK(weft_chan_try_send(S.empty, &v) == -EAGAIN);   /* no receiver */
	CHECK(weft_chan_try_recv(S.full, &v) == 0);
	CHECK(weft_chan_try_recv(S.full, &v) == -EAGAIN);    /* no sender */
	w = after_spawn(after_recv, "after-recv");
	CHECK(dump_shows("after-recv", "channel recv", S.empty));
	v = 7;
	CHECK(weft_chan_send_timeout(S.empty, &v, AFTER_BOUND) == 0);
	CHECK(after_join(w) == 7);
	v = 8;
	CHECK(weft_chan_send(S.full, &v) == 0);
	v = 0;
	CHECK(weft_chan_try_recv(S.full, &v) == 0 && v == 8);

	CHECK(weft_mutex_unlock(&S.m) == 0);
	CHECK(weft_mutex_trylock(&S.m) == 0);                /* not handed to a ghost */
	w = after_spawn(after_lock, "after-mutex");
	CHECK(dump_shows("after-mutex", "mutex", &S.m));
	CHECK(weft_mutex_unlock(&S.m) == 0);                 /* handed to the waiter */
	CHECK(after_join(w) == 0);
	CHECK(weft_mutex_trylock(&S.m) == 0);
	CHECK(weft_mutex_unlock(&S.m) == 0);

	CHECK(weft_rwlock_unlock(&S.rd) == 0);               /* readers share it again */
	CHECK(weft_rwlock_rdlock(&S.rd) == 0);
	CHECK(weft_rwlock_rdlock(&S.rd) == 0);
	w = after_spawn(after_wrlock, "after-wrlock");
	CHECK(dump_shows("after-wrlock", "rwlock write", &S.rd));
	CHECK(weft_rwlock_unlock(&S.rd) == 0);
	CHECK(weft_rwlock_unlock(&S.rd) == 0);               /* the writer's turn */
	CHECK(after_join(w) == 0);
	CHECK(weft_rwlock_unlock(&S.wr) == 0);
	CHECK(weft_rwlock_wrlock_timeout(&S.wr, 1000000) == 0);
	CHECK(weft_rwlock_unlock(&S.wr) == 0);

	w = after_spawn(after_cond, "after-cond");
	CHECK(dump_shows("after-cond", "condition variable", &S.c));
	CHECK(weft_mutex_lock(&S.cm) == 0);
	S.cond_go = true;
	weft_cond_signal(&S.c);
	CHECK(weft_mutex_unlock(&S.cm) == 0);
	CHECK(after_join(w) == 0);

	CHECK(weft_sem_post(&S.s) == 0);
	CHECK(weft_sem_value(&S.s) == 1);                    /* nobody took it */
	CHECK(weft_sem_trywait(&S.s) == 0);
	w = after_spawn(after_sem, "after-sem");
	CHECK(dump_shows("after-sem", "semaphore", &S.s));
	CHECK(weft_sem_post(&S.s) == 0);                     /* handed to the waiter */
	CHECK(after_join(w) == 0);
	CHECK(weft_sem_value(&S.s) == 0);

	w = after_spawn(after_wg, "after-wg");
	CHECK(dump_shows("after-wg", "wait group", &S.wg));
	CHECK(weft_wg_done(&S.wg) == 0);
	CHECK(after_join(w) == 0);

	CHECK(weft_once(&S.o, once_again, NULL) == 0);      /* done: not run again */
	CHECK(atomic_load(&S.once_again_ran) == 0);

	/* every cancelled party left the round: main alone completes nothing */
	CHECK(weft_barrier_wait_timeout(&S.b, 1000000) == -ETIMEDOUT);
	CHECK(weft_barrier_init(&S.b, 2) == 0);
	w = after_spawn(after_barrier, "after-barrier");
	CHECK(dump_shows("after-barrier", "barrier", &S.b));
	int br = weft_barrier_wait(&S.b);
	intptr_t wr = after_join(w);
	CHECK((br == WEFT_BARRIER_SERIAL && wr == 0) || (br == 0 && wr == WEFT_BARRIER_SERIAL));

	CHECK(weft_sleep(1000) == 0);                        /* main was never cancelled */
	weft_chan_destroy(S.empty);
	weft_chan_destroy(S.full);
	return NULL;
}

Test(sync, cancellation_storm_10000, .timeout = 300)
{
	memset(&S, 0, sizeof(S));
	run(4, storm_main, NULL);
}

/* ------------------------------------------------- weft_dump names waits -- */


static weft_mutex dump_mtx = WEFT_MUTEX_INIT;
static weft_rwlock dump_rw;
static weft_cond dump_cond;
static weft_sem dump_sem;
static weft_wg dump_wg;
static weft_barrier dump_bar;
static bool dump_cond_go;

static void *dump_mutex_waiter(void *arg)
{
	(void)arg;
	weft_set_name("mtx-waiter");
	CHECK(weft_mutex_lock(&dump_mtx) == 0);
	CHECK(weft_mutex_unlock(&dump_mtx) == 0);
	return NULL;
}

static void *dump_rw_waiter(void *arg)
{
	(void)arg;
	weft_set_name("rw-waiter");
	CHECK(weft_rwlock_wrlock(&dump_rw) == 0);
	CHECK(weft_rwlock_unlock(&dump_rw) == 0);
	return NULL;
}

static void *dump_cond_waiter(void *arg)
{
	(void)arg;
	weft_set_name("cond-waiter");
	CHECK(weft_mutex_lock(&dump_mtx) == 0);
	while (!dump_cond_go)
		CHECK(weft_cond_wait(&dump_cond, &dump_mtx) == 0);
	CHECK(weft_mutex_unlock(&dump_mtx) == 0);
	return NULL;
}

static void *dump_sem_waiter(void *arg)
{
	(void)arg;
	weft_set_name("sem-waiter");
	CHECK(weft_sem_wait(&dump_sem) == 0);
	return NULL;
}

static void *dump_wg_waiter(void *arg)
{
	(void)arg;
	weft_set_name("wg-waiter");
	CHECK(weft_wg_wait(&dump_wg) == 0);
	return NULL;
}

static void *dump_bar_waiter(void *arg)
{
	(void)arg;
	weft_set_name("bar-waiter");
	int r = weft_barrier_wait(&dump_bar);
	CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
	return NULL;
}

static weft_task *spawn_checked(weft_fn fn)
{
	weft_task *t = NULL;
	CHECK(weft_spawn(&t, fn, NULL) == 0);
	return t;
}

static void *dump_waits_main(void *arg)
{
	(void)arg;
	weft_task *t;

	CHECK(weft_mutex_lock(&dump_mtx) == 0);
	t = spawn_checked(dump_mutex_waiter);
	CHECK(dump_shows("mtx-waiter", "mutex", &dump_mtx));
	CHECK(weft_mutex_unlock(&dump_mtx) == 0);
	CHECK(weft_join(t, NULL) == 0);

	weft_rwlock_init(&dump_rw);
	CHECK(weft_rwlock_rdlock(&dump_rw) == 0);
	t = spawn_checked(dump_rw_waiter);
	CHECK(dump_shows("rw-waiter", "rwlock write", &dump_rw));
	CHECK(weft_rwlock_unlock(&dump_rw) == 0);
	CHECK(weft_join(t, NULL) == 0);

	weft_cond_init(&dump_cond);
	t = spawn_checked(dump_cond_waiter);
	CHECK(dump_shows("cond-waiter", "condition variable", &dump_cond));
	CHECK(weft_mutex_lock(&dump_mtx) == 0);
	dump_cond_go = true;
	weft_cond_signal(&dump_cond);
	CHECK(weft_mutex_unlock(&dump_mtx) == 0);
	CHECK(weft_join(t, NULL) == 0);

	weft_sem_init(&dump_sem, 0);
	t = spawn_checked(dump_sem_waiter);
	CHECK(dump_shows("sem-waiter", "semaphore", &dump_sem));
	CHECK(weft_sem_post(&dump_sem) == 0);
	CHECK(weft_join(t, NULL) == 0);

	weft_wg_init(&dump_wg);
	CHECK(weft_wg_add(&dump_wg, 1) == 0);
	t = spawn_checked(dump_wg_waiter);
	CHECK(dump_shows("wg-waiter", "wait group", &dump_wg));
	CHECK(weft_wg_done(&dump_wg) == 0);
	CHECK(weft_join(t, NULL) == 0);

	CHECK(weft_barrier_init(&dump_bar, 2) == 0);
	t = spawn_checked(dump_bar_waiter);
	CHECK(dump_shows("bar-waiter", "barrier", &dump_bar));
	int r = weft_barrier_wait(&dump_bar);
	CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
	CHECK(weft_join(t, NULL) == 0);
	return NULL;
}

/* One worker: the dump reads each waiter's description on the thread that
 * wrote it (the fields are plain, for diagnostics only). */
Test(sync, dump_names_what_a_coroutine_waits_for)
{
	run(1, dump_waits_main, NULL);
}
