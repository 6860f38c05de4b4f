/*
 * test_deadline.c — the region deadline (weft_deadline_set) against every
 * blocking call of the public API.
 *
 * A region deadline ends a blocking call with -ETIMEDOUT and leaves what the
 * call waited on as if it had not been made: a timed-out recv loses no byte,
 * a timed-out semaphore wait takes no permit, a channel value is delivered
 * exactly once, a condition wait returns holding its mutex, a group wait
 * leaves no member running. The internal waits that must not fail (an I/O
 * op's drain after a cancel, the blocking pool's wait for a running call,
 * cond_wait's re-take, a group's joins) must not see it at all.
 *
 * Every case is a loop of ITERS calls whose deadlines land before the call
 * (long past), as it starts (now), while it waits (0-300 us ahead: in the
 * submission, the kernel's wait or the primitive's queue) and after it (1-2
 * ms ahead, and beyond a _timeout call's own timeout), on 1 and 4 workers,
 * with several coroutines at once so they migrate between calls and race
 * the events that would end their waits. Nothing here passes or fails on
 * time: a call that returned -ETIMEDOUT is checked to have returned no
 * earlier than its deadline, and every other check counts values.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "harness.h"

#define US 1000ull
#define MS 1000000ull
#define ITERS 96
#define LOOPERS 3           /* coroutines racing through the same loop */

static const unsigned worker_counts[] = { 1, 4 };

/* The i-th region deadline of a loop (see the top of the file). */
static uint64_t nth_deadline(unsigned i)
{
	uint64_t now = weft_now();
	switch (i % 4) {
	case 0:  return 1;                                   /* long past  */
	case 1:  return now;                                 /* passing    */
	case 2:  return now + (i * 7919u % 300) * US;        /* while waiting */
	default: return now + MS + (i % 8) * 125 * US;       /* later      */
	}
}

/* A _timeout call's own timeout for iteration i: none (WEFT_FOREVER),
 * zero (do not wait), shorter than the region's later deadlines, or longer
 * than all of them. */
static uint64_t nth_own(unsigned i)
{
	switch (i / 4 % 4) {
	case 0:  return WEFT_FOREVER;
	case 1:  return 0;
	case 2:  return 150 * US;
	default: return 3 * MS;
	}
}

/* The absolute deadline a call's own timeout makes, taken just before the
 * call (the call's own is a little later); 0 for none. */
static uint64_t own_at(uint64_t own)
{
	return own == WEFT_FOREVER ? 0 : weft_now() + own;
}

/* Opens a region for iteration i; returns its deadline (what the call's
 * -ETIMEDOUT must not precede). */
static uint64_t region_open(unsigned i, uint64_t *old)
{
	uint64_t d = nth_deadline(i);
	*old = weft_deadline_set(d);
	return d;
}

/* r is a timeout that ended no earlier than deadline d (or the own one). */
static bool timed_out_in_order(long r, uint64_t d, uint64_t own_deadline)
{
	uint64_t first = own_deadline && own_deadline < d ? own_deadline : d;
	return r == -ETIMEDOUT && weft_now() >= first;
}

/* Spawn n coroutines of fn(arg) and join them all. */
static void spawn_join(unsigned n, weft_fn fn, void *arg)
{
	weft_task *t[16];
	for (unsigned k = 0; k < n; k++)
		CHECK(weft_spawn(&t[k], fn, arg) == 0);
	for (unsigned k = 0; k < n; k++)
		CHECK(weft_join(t[k], NULL) == 0);
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Run fn as the main coroutine on each worker count; I/O cases skip where
 * io_uring is unavailable. */
static void each_workers(weft_fn fn, void *arg)
{
	for (size_t k = 0; k < sizeof worker_counts / sizeof *worker_counts; k++)
		run_with(worker_counts[k], 0, fn, arg);
}

/* ---------------------------------------------------------------- sleep --- */

static void *sleep_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t old, d = region_open(i, &old);
		uint64_t own = nth_own(i), t0 = weft_now();
		if (own == 0)
			own = 50 * US;           /* weft_sleep(0) is a yield, not a wait */
		int r = weft_sleep(own != WEFT_FOREVER ? own : 3600 * 1000 * MS);
		weft_deadline_set(old);
		if (own != WEFT_FOREVER && r == 0)
			CHECK(weft_now() - t0 >= own && d >= t0 + own);   /* its own end came first */
		else
			CHECK(timed_out_in_order(r, d, 0));
	}
	return NULL;
}

static void *sleep_main(void *arg) { spawn_join(LOOPERS, sleep_loop, NULL); return NULL; }
Test(deadline, sleep) { each_workers(sleep_main, NULL); }

/* ----------------------------------------------------------------- join --- */

static void *nap(void *arg)
{
	weft_sleep((uint64_t)(uintptr_t)arg);
	return arg;
}

static void *endless(void *arg)
{
	int r = weft_sleep(3600 * 1000 * MS);
	return (void *)(intptr_t)r;
}

static void *join_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		weft_task *t;
		/* a child that ends around the deadline, or only when cancelled */
		bool forever = i % 3 == 0;
		uintptr_t ns = (i * 104729u % 400) * US;
		CHECK(weft_spawn(&t, forever ? endless : nap, (void *)ns) == 0);
		uint64_t old, d = region_open(i, &old);
		void *ret = NULL;
		int r = weft_join(t, &ret);
		weft_deadline_set(old);
		if (r == 0) {
			CHECK(!forever && (uintptr_t)ret == ns);
			continue;
		}
		CHECK(timed_out_in_order(r, d, 0));
		/* still joinable, exactly once */
		weft_cancel(t);
		CHECK(weft_join(t, &ret) == 0);
		CHECK(forever ? (intptr_t)ret == -ECANCELED : (uintptr_t)ret == ns);
	}
	return NULL;
}

static void *join_main(void *arg) { spawn_join(LOOPERS, join_loop, NULL); return NULL; }
Test(deadline, join) { each_workers(join_main, NULL); }

/* --------------------------------------------------------------- groups --- */

struct member_arg { _Atomic int done; uint64_t ns; };

static int member(void *p, void **result)
{
	struct member_arg *m = p;
	int r = weft_sleep(m->ns);
	/* The group's wait must not return before this store: ASan sees a
	 * member that outlives the group as a use after free of m. */
	atomic_store(&m->done, 1);
	return r;
}

static void *group_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		enum { M = 3 };
		struct member_arg *ma = calloc(M, sizeof *ma);
		weft_group *g;
		CHECK(weft_group_create(&g, 0) == 0);
		for (unsigned k = 0; k < M; k++) {
			/* one member in three per round sleeps until cancelled */
			ma[k].ns = (i + k) % 3 == 0 ? 3600 * 1000 * MS : (i * 31 + k * 97) % 500 * US + 1;
			CHECK(weft_group_spawn(g, member, &ma[k]) == (int)k);
		}
		uint64_t old, d = region_open(i, &old);
		int r = weft_group_wait(g);
		weft_deadline_set(old);
		CHECK(timed_out_in_order(r, d, 0));   /* one member never ends by itself */
		for (unsigned k = 0; k < M; k++) {
			CHECK(atomic_load(&ma[k].done) == 1);
			CHECK(weft_group_error(g, k) == 0 || weft_group_error(g, k) == -ECANCELED);
		}
		weft_group_destroy(g);
		free(ma);
	}
	return NULL;
}

static void *group_main(void *arg) { spawn_join(LOOPERS, group_loop, NULL); return NULL; }
Test(deadline, group_wait) { each_workers(group_main, NULL); }

/* ------------------------------------------------------------- blocking --- */

struct bcall { _Atomic int ran; };

static void *slow_fn(void *p)
{
	struct bcall *b = p;
	atomic_store(&b->ran, 1);
	struct timespec ts = { 0, 700 * 1000 };
	nanosleep(&ts, NULL);
	atomic_store(&b->ran, 2);
	return b;
}

static void *blocking_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		struct bcall b = { 0 };
		void *ret = NULL;
		uint64_t old, d = region_open(i, &old);
		int r = weft_blocking(slow_fn, &b, &ret);
		weft_deadline_set(old);
		if (r == 0) {
			/* fn had started: the call waited for it, result intact */
			CHECK(ret == &b && atomic_load(&b.ran) == 2);
		} else {
			/* withdrawn from the queue: fn never ran, never will */
			CHECK(timed_out_in_order(r, d, 0));
			CHECK(atomic_load(&b.ran) == 0);
		}
	}
	return NULL;
}

static void *blocking_main(void *arg)
{
	/* Two helpers for LOOPERS + 1 callers: some calls queue, some run. */
	unsigned max = weft_blocking_max_threads();
	CHECK(weft_blocking_configure(2, 0) == 0);
	spawn_join(LOOPERS + 1, blocking_loop, NULL);
	CHECK(weft_blocking_configure(max, 0) == 0);
	struct bcall b = { 0 };
	void *ret = NULL;
	CHECK(weft_blocking(slow_fn, &b, &ret) == 0 && ret == &b);   /* the pool still works */
	return NULL;
}

Test(deadline, blocking) { each_workers(blocking_main, NULL); }

/* ---------------------------------------------------------------- mutex --- */

/* Every holder of `mx` writes its id into `holder` after locking and checks
 * it is still there before unlocking: two holders at once show up. */
static weft_mutex mx;
static weft_cond cv;
static weft_task *_Atomic holder;
static _Atomic int hogging;

static void take(void)
{
	weft_task *none = NULL;
	CHECK(atomic_compare_exchange_strong(&holder, &none, weft_self()));
}

static int give(void)
{
	weft_task *me = weft_self();
	CHECK(atomic_compare_exchange_strong(&holder, &me, NULL));
	return weft_mutex_unlock(&mx);
}

/* Holds the mutex for 0-400 us at a time, between short sleeps, signalling
 * the condition variable now and then, until hogging drops. */
static void *hog(void *arg)
{
	for (unsigned k = 0; atomic_load(&hogging) && k < 100000; k++) {
		CHECK(weft_mutex_lock(&mx) == 0);
		take();
		weft_sleep((k * 7919u % 400) * US + 1);
		if (k % 3 == 0)
			weft_cond_signal(&cv);
		CHECK(give() == 0);
		weft_sleep((k % 5) * 50 * US + 1);
	}
	return NULL;
}

static void *mutex_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = own != WEFT_FOREVER ? weft_mutex_lock_timeout(&mx, own) : weft_mutex_lock(&mx);
		weft_deadline_set(old);
		if (r == 0) {
			take();
			weft_yield();
			CHECK(give() == 0);
		} else {
			CHECK(timed_out_in_order(r, d, own_d));
		}
	}
	return NULL;
}

static void *with_hog(weft_fn loop)
{
	weft_mutex_init(&mx);
	weft_cond_init(&cv);
	atomic_store(&holder, NULL);
	atomic_store(&hogging, 1);
	weft_task *h;
	CHECK(weft_spawn(&h, hog, NULL) == 0);
	spawn_join(LOOPERS, loop, NULL);
	atomic_store(&hogging, 0);
	CHECK(weft_join(h, NULL) == 0);
	CHECK(weft_mutex_trylock(&mx) == 0 && weft_mutex_unlock(&mx) == 0);
	CHECK(weft_mutex_unlock(&mx) == -EPERM);   /* nobody left holding it */
	return NULL;
}

static void *mutex_main(void *arg) { return with_hog(mutex_loop); }
Test(deadline, mutex) { each_workers(mutex_main, NULL); }

/* ----------------------------------------------------------------- cond --- */

static void *cond_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		CHECK(weft_mutex_lock(&mx) == 0);
		take();
		uint64_t own = nth_own(i);
		uint64_t own_d = own_at(own);
		/* While we wait, the hog takes the mutex; when the deadline
		 * passes it may well be holding it. */
		atomic_store(&holder, NULL);
		uint64_t old, d = region_open(i, &old);
		int r = own != WEFT_FOREVER ? weft_cond_wait_timeout(&cv, &mx, own) : weft_cond_wait(&cv, &mx);
		weft_deadline_set(old);
		take();                      /* we hold mx again, and nobody else does */
		CHECK(r == 0 || timed_out_in_order(r, d, own_d));
		CHECK(give() == 0);
	}
	return NULL;
}

static void *cond_main(void *arg) { return with_hog(cond_loop); }
Test(deadline, cond_wait_returns_with_the_mutex) { each_workers(cond_main, NULL); }

/* --------------------------------------------------------------- rwlock --- */

static weft_rwlock rw;
static _Atomic int readers, writers;

static void *rw_loop(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	for (unsigned i = 0; i < ITERS; i++) {
		bool write = (i + id) % 3 == 0;
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = write ? (own != WEFT_FOREVER ? weft_rwlock_wrlock_timeout(&rw, own) : weft_rwlock_wrlock(&rw))
		              : (own != WEFT_FOREVER ? weft_rwlock_rdlock_timeout(&rw, own) : weft_rwlock_rdlock(&rw));
		weft_deadline_set(old);
		if (r) {
			CHECK(timed_out_in_order(r, d, own_d));
			continue;
		}
		if (write) {
			CHECK(atomic_fetch_add(&writers, 1) == 0 && atomic_load(&readers) == 0);
			weft_sleep((i % 4) * 100 * US + 1);
			atomic_fetch_sub(&writers, 1);
		} else {
			atomic_fetch_add(&readers, 1);
			CHECK(atomic_load(&writers) == 0);
			weft_sleep((i % 4) * 100 * US + 1);
			atomic_fetch_sub(&readers, 1);
		}
		CHECK(weft_rwlock_unlock(&rw) == 0);
	}
	return NULL;
}

static void *rw_main(void *arg)
{
	weft_rwlock_init(&rw);
	weft_task *t[2 * LOOPERS];
	for (uintptr_t k = 0; k < 2 * LOOPERS; k++)
		CHECK(weft_spawn(&t[k], rw_loop, (void *)k) == 0);
	for (unsigned k = 0; k < 2 * LOOPERS; k++)
		CHECK(weft_join(t[k], NULL) == 0);
	CHECK(weft_rwlock_unlock(&rw) == -EPERM);
	CHECK(weft_rwlock_wrlock_timeout(&rw, 1) == 0 && weft_rwlock_unlock(&rw) == 0);
	return NULL;
}

Test(deadline, rwlock) { each_workers(rw_main, NULL); }

/* ----------------------------------------------- semaphore, wait group --- */

static weft_sem sem;
static _Atomic uint64_t posted, taken;

static void *poster(void *arg)
{
	for (unsigned k = 0; k < ITERS; k++) {
		weft_sleep((k * 131u % 300) * US + 1);
		CHECK(weft_sem_post(&sem) == 0);
		atomic_fetch_add(&posted, 1);
	}
	return NULL;
}

static void *sem_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = own != WEFT_FOREVER ? weft_sem_wait_timeout(&sem, own) : weft_sem_wait(&sem);
		weft_deadline_set(old);
		if (r == 0)
			atomic_fetch_add(&taken, 1);
		else
			CHECK(timed_out_in_order(r, d, own_d));
	}
	return NULL;
}

static void *sem_main(void *arg)
{
	weft_sem_init(&sem, 0);
	atomic_store(&posted, 0);
	atomic_store(&taken, 0);
	weft_task *p;
	CHECK(weft_spawn(&p, poster, NULL) == 0);
	spawn_join(LOOPERS, sem_loop, NULL);
	CHECK(weft_join(p, NULL) == 0);
	/* No permit lost to a wait that timed out, none taken twice. */
	CHECK(atomic_load(&taken) + weft_sem_value(&sem) == atomic_load(&posted));
	CHECK(atomic_load(&posted) == ITERS);
	return NULL;
}

Test(deadline, semaphore_keeps_every_permit) { each_workers(sem_main, NULL); }

static weft_wg wg;

static void *wg_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = own != WEFT_FOREVER ? weft_wg_wait_timeout(&wg, own) : weft_wg_wait(&wg);
		weft_deadline_set(old);
		CHECK(timed_out_in_order(r, d, own_d));
	}
	return NULL;
}

static void *wg_main(void *arg)
{
	weft_wg_init(&wg);
	CHECK(weft_wg_add(&wg, 1) == 0);
	spawn_join(LOOPERS, wg_loop, NULL);
	CHECK(weft_wg_done(&wg) == 0);
	CHECK(weft_wg_wait(&wg) == 0);
	return NULL;
}

Test(deadline, wait_group) { each_workers(wg_main, NULL); }

/* -------------------------------------------------------- once, barrier --- */

struct once_case { weft_once_flag flag; _Atomic int done; uint64_t ns; };

static void once_body(void *p)
{
	struct once_case *o = p;
	/* no region deadline here: the runner opened none */
	weft_sleep(o->ns);
	atomic_store(&o->done, 1);
}

static void *once_runner(void *p)
{
	struct once_case *o = p;
	CHECK(weft_once(&o->flag, once_body, o) == 0);
	return NULL;
}

static void *once_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		struct once_case o = { .flag = WEFT_ONCE_INIT, .ns = (i * 53u % 400) * US + 1 };
		weft_task *t;
		CHECK(weft_spawn(&t, once_runner, &o) == 0);    /* child first: it is in fn */
		uint64_t old, d = region_open(i, &old);
		int r = weft_once(&o.flag, once_body, &o);
		weft_deadline_set(old);
		if (r == 0)
			CHECK(atomic_load(&o.done) == 1);   /* 0 only once fn has run */
		else
			CHECK(timed_out_in_order(r, d, 0));
		CHECK(weft_join(t, NULL) == 0);
		CHECK(atomic_load(&o.done) == 1);
	}
	return NULL;
}

static void *once_main(void *arg) { spawn_join(LOOPERS, once_loop, NULL); return NULL; }
Test(deadline, once) { each_workers(once_main, NULL); }

static weft_barrier bar;

static void *barrier_loop(void *arg)
{
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		/* LOOPERS of the LOOPERS + 1 parties: no round completes */
		int r = own != WEFT_FOREVER ? weft_barrier_wait_timeout(&bar, own) : weft_barrier_wait(&bar);
		weft_deadline_set(old);
		CHECK(timed_out_in_order(r, d, own_d));
	}
	return NULL;
}

static _Atomic int serials;

static void *barrier_party(void *arg)
{
	int r = weft_barrier_wait(&bar);
	CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
	if (r == WEFT_BARRIER_SERIAL)
		atomic_fetch_add(&serials, 1);
	return NULL;
}

static void *barrier_main(void *arg)
{
	CHECK(weft_barrier_init(&bar, LOOPERS + 1) == 0);
	spawn_join(LOOPERS, barrier_loop, NULL);
	/* Every party that gave up has left: a full round of fresh parties
	 * completes, with one serial. */
	atomic_store(&serials, 0);
	spawn_join(LOOPERS + 1, barrier_party, NULL);
	CHECK(atomic_load(&serials) == 1);
	return NULL;
}

Test(deadline, barrier) { each_workers(barrier_main, NULL); }

/* ----------------------------------------------------- channels, select --- */

#define MSGS (LOOPERS * ITERS / 2)
static weft_chan *chan_a, *chan_b;
static _Atomic unsigned char seen[2][MSGS];

/* Sends 0..MSGS-1 on ch, each under a region deadline, again after each
 * -ETIMEDOUT, until it goes through. */
static void *chan_sender(void *arg)
{
	uintptr_t which = (uintptr_t)arg;
	weft_chan *ch = which ? chan_b : chan_a;
	unsigned i = 0, v = 0;
	for (; v < MSGS && i < MSGS * 16; i++) {
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = own != WEFT_FOREVER ? weft_chan_send_timeout(ch, &v, own) : weft_chan_send(ch, &v);
		weft_deadline_set(old);
		if (r == 0)
			v++;
		else
			CHECK(timed_out_in_order(r, d, own_d));
		if (i % 7 == 0)
			weft_sleep(50 * US);
	}
	CHECK(v == MSGS);
	return NULL;
}

static void note(unsigned which, unsigned v)
{
	CHECK(v < MSGS);
	if (v < MSGS)
		CHECK(atomic_fetch_add(&seen[which][v], 1) == 0);   /* exactly once */
}

/* Receivers run until the channels close (bounded: at least one in two
 * iterations gets a value or -EPIPE once the senders are through). */
static void *chan_receiver(void *arg)
{
	for (unsigned i = 0; i < MSGS * 64; i++) {
		unsigned v;
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = own != WEFT_FOREVER ? weft_chan_recv_timeout(chan_a, &v, own) : weft_chan_recv(chan_a, &v);
		weft_deadline_set(old);
		if (r == 0)
			note(0, v);
		else if (r != -EPIPE)
			CHECK(timed_out_in_order(r, d, own_d));
		else
			break;
	}
	return NULL;
}

static void *selector(void *arg)
{
	for (unsigned i = 0; i < MSGS * 64; i++) {
		unsigned va, vb;
		struct weft_select_case c[2] = {
			{ .chan = chan_a, .op = WEFT_SELECT_RECV, .elem = &va },
			{ .chan = chan_b, .op = WEFT_SELECT_RECV, .elem = &vb },
		};
		uint64_t old, d = region_open(i, &old), own = nth_own(i);
		uint64_t own_d = own_at(own);
		int r = weft_select(c, 2, own);
		weft_deadline_set(old);
		if (r == 0 && c[0].result == 0)
			note(0, va);
		else if (r == 1 && c[1].result == 0)
			note(1, vb);
		else if (r < 0)
			CHECK(timed_out_in_order(r, d, own_d));
		else
			break;                   /* -EPIPE: closed */
	}
	return NULL;
}

static void *chan_main(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	memset(seen, 0, sizeof seen);
	CHECK(weft_chan_create(&chan_a, sizeof(unsigned), cap) == 0);
	CHECK(weft_chan_create(&chan_b, sizeof(unsigned), cap) == 0);
	weft_task *s[2], *r[3];
	CHECK(weft_spawn(&r[0], chan_receiver, NULL) == 0);
	CHECK(weft_spawn(&r[1], selector, NULL) == 0);
	CHECK(weft_spawn(&r[2], selector, NULL) == 0);
	CHECK(weft_spawn(&s[0], chan_sender, (void *)0) == 0);
	CHECK(weft_spawn(&s[1], chan_sender, (void *)1) == 0);
	for (int k = 0; k < 2; k++)
		CHECK(weft_join(s[k], NULL) == 0);
	weft_chan_close(chan_a);
	weft_chan_close(chan_b);
	for (int k = 0; k < 3; k++)
		CHECK(weft_join(r[k], NULL) == 0);
	/* A selector that saw one channel closed left; what it would have
	 * taken from the other is still buffered there. */
	unsigned v;
	while (weft_chan_try_recv(chan_a, &v) == 0)
		note(0, v);
	while (weft_chan_try_recv(chan_b, &v) == 0)
		note(1, v);
	for (unsigned w = 0; w < 2; w++)
		for (unsigned k = 0; k < MSGS; k++)
			CHECK(atomic_load(&seen[w][k]) == 1);   /* none lost */
	weft_chan_destroy(chan_a);
	weft_chan_destroy(chan_b);
	return NULL;
}

Test(deadline, channels_and_select_unbuffered) { each_workers(chan_main, (void *)0); }
Test(deadline, channels_and_select_buffered) { each_workers(chan_main, (void *)4); }

/* ----------------------------------------------------------- generators --- */

static void *gen_body(weft_gen *g, void *arg, void *in)
{
	for (uintptr_t k = 1; k < 4; k++)
		if (weft_gen_yield(g, (void *)k, NULL))
			break;
	return NULL;
}

static void *gen_main(void *arg)
{
	/* A generator runs on its caller's stack and never parks: a passed
	 * region deadline does not touch its resumes. */
	weft_gen *g;
	CHECK(weft_gen_create(&g, gen_body, NULL, 0) == 0);
	uint64_t old = weft_deadline_set(1);
	void *out;
	for (uintptr_t k = 1; k < 4; k++)
		CHECK(weft_gen_resume(g, NULL, &out) == WEFT_GEN_YIELDED && (uintptr_t)out == k);
	CHECK(weft_gen_resume(g, NULL, &out) == WEFT_GEN_DONE);
	weft_deadline_set(old);
	CHECK(weft_gen_close(g) == 0);
	return NULL;
}

Test(deadline, generators_do_not_block) { run_with(1, 0, gen_main, NULL); }

/* ------------------------------------------------------------------- I/O --- */

/*
 * The I/O cases need io_uring; where it is blocked every case is skipped
 * (and says so). A case's coroutines share one stream: the writers put a
 * counted byte sequence in at 0-300 us intervals, the readers take it out
 * under deadlines, and at the end every byte has arrived once, in order.
 */
static bool have_uring(void)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 1 };
	int err = weft_rt_create(&rt, &cfg);
	if (err == 0)
		weft_rt_destroy(rt);
	return err == 0;
}

#define NEED_URING() do { if (!have_uring()) cr_skip_test("no io_uring here"); } while (0)

enum { STREAM_BYTES = 3000 };

struct stream {
	int rfd, wfd;
	int kind;                    /* which call the readers use */
	_Atomic unsigned got;        /* bytes read, in order (under `order`) */
	weft_mutex order;            /* readers append one at a time */
	unsigned char buf[STREAM_BYTES];
};

enum { K_RECV, K_RECV_TIMEOUT, K_READ, K_READ_TIMEOUT, K_READV, K_RECVMSG, K_POLL };

static void *stream_writer(void *p)
{
	struct stream *s = p;
	for (unsigned off = 0, k = 0; off < STREAM_BYTES; k++) {
		unsigned char chunk[16];
		unsigned n = 1 + k % 16;
		if (n > STREAM_BYTES - off)
			n = STREAM_BYTES - off;
		for (unsigned j = 0; j < n; j++)
			chunk[j] = (unsigned char)((off + j) * 31 + 7);
		/* a plain write: the stream is the subject, not its writer */
		CHECK(write(s->wfd, chunk, n) == (ssize_t)n);
		off += n;
		weft_sleep((k * 7919u % 300) * US + 1);
	}
	return NULL;
}

static ssize_t stream_read(struct stream *s, unsigned char *b, size_t n, unsigned i,
                           uint64_t *own_d)
{
	uint64_t own = nth_own(i);
	*own_d = 0;
	switch (s->kind) {
	case K_RECV:
		return weft_recv(s->rfd, b, n, 0);
	case K_RECV_TIMEOUT:
		*own_d = own_at(own);
		return weft_recv_timeout(s->rfd, b, n, 0, own);
	case K_READ:
		return weft_read(s->rfd, b, n, -1);
	case K_READ_TIMEOUT:
		*own_d = own_at(own);
		return weft_read_timeout(s->rfd, b, n, -1, own);
	case K_READV: {
		struct iovec iov[2] = { { b, n / 2 }, { b + n / 2, n - n / 2 } };
		return weft_readv(s->rfd, iov, 2, -1);
	}
	case K_RECVMSG: {
		struct iovec iov = { b, n };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		return weft_recvmsg(s->rfd, &m, 0);
	}
	default: {                   /* poll, then a non-blocking read */
		*own_d = own_at(own);
		int r = weft_poll_timeout(s->rfd, POLLIN, own);
		if (r < 0)
			return r;
		ssize_t got = read(s->rfd, b, n);
		return got < 0 && errno == EAGAIN ? 0 : got < 0 ? -errno : got;
	}
	}
}

static void *stream_reader(void *p)
{
	struct stream *s = p;
	for (unsigned i = 0; i < ITERS * 4 && atomic_load(&s->got) < STREAM_BYTES; i++) {
		unsigned char b[64];
		/* A sentinel the kernel never writes: a timed-out call must not
		 * have touched the buffer (the op is over when it returns). */
		memset(b, 0xa5, sizeof b);
		CHECK(weft_mutex_lock(&s->order) == 0);
		uint64_t own_d, old, d = region_open(i, &old);
		ssize_t r = stream_read(s, b, sizeof b, i, &own_d);
		weft_deadline_set(old);
		if (r > 0) {
			unsigned at = atomic_load(&s->got);
			CHECK(at + (size_t)r <= STREAM_BYTES);
			if (at + (size_t)r <= STREAM_BYTES)
				memcpy(s->buf + at, b, (size_t)r);
			atomic_store(&s->got, at + (unsigned)r);
		} else if (r < 0) {
			CHECK(timed_out_in_order(r, d, own_d));
			CHECK(b[0] == 0xa5 && b[sizeof b - 1] == 0xa5);
		}
		CHECK(weft_mutex_unlock(&s->order) == 0);
	}
	return NULL;
}

static void *stream_main(void *p)
{
	struct stream *s = p;
	unsigned fds = open_fds();
	int sv[2];
	if (s->kind == K_READ || s->kind == K_READ_TIMEOUT || s->kind == K_READV) {
		CHECK(pipe2(sv, O_CLOEXEC) == 0);
		s->rfd = sv[0];
		s->wfd = sv[1];
	} else {
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		s->rfd = sv[0];
		s->wfd = sv[1];
	}
	if (s->kind == K_POLL)
		fcntl(s->rfd, F_SETFL, O_NONBLOCK);
	atomic_store(&s->got, 0);
	weft_mutex_init(&s->order);
	weft_task *w;
	CHECK(weft_spawn(&w, stream_writer, s) == 0);
	spawn_join(LOOPERS, stream_reader, s);
	CHECK(weft_join(w, NULL) == 0);
	/* What the bounded loops left is still in the stream, none lost. */
	while (atomic_load(&s->got) < STREAM_BYTES) {
		ssize_t r = read(s->rfd, s->buf + atomic_load(&s->got), STREAM_BYTES - s->got);
		if (r <= 0)
			break;
		atomic_fetch_add(&s->got, (unsigned)r);
	}
	CHECK(atomic_load(&s->got) == STREAM_BYTES);
	for (unsigned j = 0; j < STREAM_BYTES; j++)
		if (s->buf[j] != (unsigned char)(j * 31 + 7)) {
			CHECK(!"stream out of order or corrupt");
			break;
		}
	close(s->rfd);
	close(s->wfd);
	CHECK(open_fds() == fds);
	return NULL;
}

static void stream_case(int kind)
{
	NEED_URING();
	static struct stream s;
	for (size_t k = 0; k < sizeof worker_counts / sizeof *worker_counts; k++) {
		memset(&s, 0, sizeof s);
		s.kind = kind;
		run_with(worker_counts[k], 0, stream_main, &s);
	}
}

Test(deadline, io_recv_on_an_idle_socket) { stream_case(K_RECV); }
Test(deadline, io_recv_timeout) { stream_case(K_RECV_TIMEOUT); }
Test(deadline, io_read_pipe) { stream_case(K_READ); }
Test(deadline, io_read_timeout_pipe) { stream_case(K_READ_TIMEOUT); }
Test(deadline, io_readv) { stream_case(K_READV); }
Test(deadline, io_recvmsg) { stream_case(K_RECVMSG); }
Test(deadline, io_poll) { stream_case(K_POLL); }

/*
 * Writers into a full socket or pipe: each call under a deadline either
 * moves some bytes (reported as they are) or times out having moved none.
 * The reader counts what arrives: exactly the sum of what the calls said.
 */
struct sink {
	int rfd, wfd;
	int kind;
	_Atomic uint64_t said;       /* bytes the calls reported */
	_Atomic int draining;
};

enum { W_SEND, W_SEND_TIMEOUT, W_WRITE, W_WRITEV, W_SENDMSG, W_SEND_ALL, W_SPLICE };

static void *sink_writer(void *p)
{
	struct sink *s = p;
	static const unsigned char block[4096];
	int pp[2] = { -1, -1 };
	if (s->kind == W_SPLICE)
		CHECK(pipe2(pp, O_CLOEXEC) == 0);
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t own = nth_own(i), own_d = 0, old, d = region_open(i, &old);
		ssize_t r;
		switch (s->kind) {
		case W_SEND:
			r = weft_send(s->wfd, block, sizeof block, 0);
			break;
		case W_SEND_TIMEOUT:
			own_d = own_at(own);
			r = weft_send_timeout(s->wfd, block, sizeof block, 0, own);
			break;
		case W_WRITE:
			r = weft_write(s->wfd, block, sizeof block, -1);
			break;
		case W_WRITEV: {
			struct iovec iov[2] = { { (void *)block, 1000 }, { (void *)block, 3096 } };
			r = weft_writev(s->wfd, iov, 2, -1);
			break;
		}
		case W_SENDMSG: {
			struct iovec iov = { (void *)block, sizeof block };
			struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
			r = weft_sendmsg(s->wfd, &m, 0);
			break;
		}
		case W_SEND_ALL:
			/* may move part and then time out: that part is not reported
			 * (documented), so the pass counts what is reported only when
			 * nothing can be in between */
			r = weft_send_all(s->wfd, block, sizeof block, 0);
			break;
		default: {
			/* splice from a private pipe we fill with plain writes */
			if (write(pp[1], block, 1024) != 1024)
				CHECK(!"fill splice pipe");
			r = weft_splice(pp[0], -1, s->wfd, -1, 1024, 0);
			if (r >= 0 && r < 1024) {
				/* the rest stays in our pipe: move it on without a deadline */
				weft_deadline_set(0);
				ssize_t more = weft_splice(pp[0], -1, s->wfd, -1, (size_t)(1024 - r), 0);
				CHECK(more == 1024 - r);
				r = 1024;
			} else if (r < 0) {
				/* timed out with nothing moved: drain our pipe */
				char junk[1024];
				CHECK(read(pp[0], junk, sizeof junk) == 1024);
			}
			break;
		}
		}
		weft_deadline_set(old);
		if (r >= 0) {
			CHECK(r > 0 && r <= 4096);
			atomic_fetch_add(&s->said, (uint64_t)r);
		} else {
			CHECK(timed_out_in_order(r, d, own_d));
		}
		if (s->kind == W_SEND_ALL && r < 0)
			break;               /* the stream count is lost from here on */
	}
	if (pp[0] >= 0) {
		close(pp[0]);
		close(pp[1]);
	}
	return NULL;
}

/* Reads the sink in bursts, with pauses that let it fill up. */
static void *sink_reader(void *p)
{
	struct sink *s = p;
	uint64_t got = 0;
	char buf[8192];
	for (unsigned k = 0; k < 1000000; k++) {
		int dr = atomic_load(&s->draining);
		ssize_t r = read(s->rfd, buf, sizeof buf);
		if (r > 0) {
			got += (uint64_t)r;
			continue;
		}
		if (r < 0 && errno != EAGAIN) {
			CHECK(!"sink read failed");
			break;
		}
		if (dr)
			break;               /* empty after the writers finished */
		weft_sleep((k % 7) * 100 * US + 1);
	}
	return (void *)(uintptr_t)got;
}

static void *sink_main(void *p)
{
	struct sink *s = p;
	unsigned fds = open_fds();
	int sv[2];
	if (s->kind == W_WRITE || s->kind == W_WRITEV) {
		CHECK(pipe2(sv, O_CLOEXEC) == 0);
		fcntl(sv[1], F_SETPIPE_SZ, 4096);
	} else {
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		int small = 4096;
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
		setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	}
	s->rfd = sv[0];
	s->wfd = sv[1];
	fcntl(s->rfd, F_SETFL, O_NONBLOCK);
	atomic_store(&s->said, 0);
	atomic_store(&s->draining, 0);
	weft_task *r;
	CHECK(weft_spawn(&r, sink_reader, s) == 0);
	spawn_join(LOOPERS, sink_writer, s);
	atomic_store(&s->draining, 1);
	void *got;
	CHECK(weft_join(r, &got) == 0);
	if (s->kind != W_SEND_ALL)
		CHECK((uint64_t)(uintptr_t)got == atomic_load(&s->said));
	close(s->rfd);
	close(s->wfd);
	CHECK(open_fds() == fds);
	return NULL;
}

static void sink_case(int kind)
{
	NEED_URING();
	static struct sink s;
	for (size_t k = 0; k < sizeof worker_counts / sizeof *worker_counts; k++) {
		memset(&s, 0, sizeof s);
		s.kind = kind;
		run_with(worker_counts[k], 0, sink_main, &s);
	}
}

Test(deadline, io_send_full_socket) { sink_case(W_SEND); }
Test(deadline, io_send_timeout_full_socket) { sink_case(W_SEND_TIMEOUT); }
Test(deadline, io_write_full_pipe) { sink_case(W_WRITE); }
Test(deadline, io_writev_full_pipe) { sink_case(W_WRITEV); }
Test(deadline, io_sendmsg_full_socket) { sink_case(W_SENDMSG); }
Test(deadline, io_send_all) { sink_case(W_SEND_ALL); }
Test(deadline, io_splice) { sink_case(W_SPLICE); }

/* accept and connect on loopback TCP. */
static int tcp_listener(uint16_t *port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, backlog) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

struct accept_case { int lfd; uint16_t port; _Atomic unsigned accepted, connected; };

static void *connector(void *p)
{
	struct accept_case *a = p;
	for (unsigned k = 0; k < ITERS; k++) {
		weft_sleep((k * 104729u % 600) * US + 1);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(a->port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		CHECK(weft_connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
		atomic_fetch_add(&a->connected, 1);
		close(fd);
	}
	return NULL;
}

static void *acceptor(void *p)
{
	struct accept_case *a = p;
	for (unsigned i = 0; i < ITERS; i++) {
		uint64_t own = nth_own(i), own_d = own_at(own);
		uint64_t old, d = region_open(i, &old);
		int r = own != WEFT_FOREVER ? weft_accept_timeout(a->lfd, NULL, NULL, SOCK_CLOEXEC, own)
		            : weft_accept(a->lfd, NULL, NULL, SOCK_CLOEXEC);
		weft_deadline_set(old);
		if (r >= 0) {
			close(r);
			atomic_fetch_add(&a->accepted, 1);
		} else {
			CHECK(timed_out_in_order(r, d, own_d));
		}
	}
	return NULL;
}

static void *accept_main(void *p)
{
	struct accept_case a = { 0 };
	unsigned fds = open_fds();
	a.lfd = tcp_listener(&a.port, 256);
	CHECK(a.lfd >= 0);
	weft_task *c;
	CHECK(weft_spawn(&c, connector, &a) == 0);
	spawn_join(LOOPERS, acceptor, &a);
	CHECK(weft_join(c, NULL) == 0);
	/* Every connection is accepted once: the rest wait in the backlog. */
	while (atomic_load(&a.accepted) < atomic_load(&a.connected)) {
		int r = weft_accept_timeout(a.lfd, NULL, NULL, SOCK_CLOEXEC, 1000 * MS);
		CHECK(r >= 0);
		if (r < 0)
			break;
		close(r);
		atomic_fetch_add(&a.accepted, 1);
	}
	CHECK(atomic_load(&a.connected) == ITERS && atomic_load(&a.accepted) == ITERS);
	close(a.lfd);
	CHECK(open_fds() == fds);
	return NULL;
}

Test(deadline, io_accept) { NEED_URING(); each_workers(accept_main, NULL); }

static void *connect_main(void *p)
{
	unsigned fds = open_fds();
	/* A listener with a full accept queue drops SYNs: connect waits. */
	uint16_t port;
	int lfd = tcp_listener(&port, 0);
	CHECK(lfd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(filler, (struct sockaddr *)&sa, sizeof sa) == 0);
	for (unsigned i = 0; i < ITERS / 2; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		uint64_t own = nth_own(i), own_d = own_at(own);
		uint64_t old, d = region_open(i % 4 == 3 ? i - 1 : i, &old);  /* no 1 ms waits */
		int r = own != WEFT_FOREVER ? weft_connect_timeout(fd, (struct sockaddr *)&sa, sizeof sa, own)
		            : weft_connect(fd, (struct sockaddr *)&sa, sizeof sa);
		weft_deadline_set(old);
		CHECK(timed_out_in_order(r, d, own_d));
		CHECK(close(fd) == 0);
	}
	close(filler);
	close(lfd);
	CHECK(open_fds() == fds);
	return NULL;
}

Test(deadline, io_connect) { NEED_URING(); each_workers(connect_main, NULL); }

/* Calls that do not wait for a peer (files, shutdown, close): past a
 * deadline they fail at once, except close, which always completes (an fd
 * that failed to close would leak); later deadlines let them through. */
static void *file_loop(void *arg)
{
	const char *dir = arg;
	char path[256];
	snprintf(path, sizeof path, "%s/f%p", dir, (void *)weft_self());
	for (unsigned i = 0; i < ITERS; i++) {
		bool past = i % 4 < 2;
		uint64_t old;
		(void)region_open(i, &old);
		int fd = weft_openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		weft_deadline_set(old);
		if (past) {
			CHECK(fd == -ETIMEDOUT);
			continue;
		}
		if (fd == -ETIMEDOUT)
			continue;
		CHECK(fd >= 0);
		char b[64] = "deadline";
		struct statx st;
		int r[7];
		(void)region_open(i, &old);
		r[0] = (int)weft_write(fd, b, sizeof b, 0);
		r[1] = (int)weft_read(fd, b, sizeof b, 0);
		r[2] = weft_fsync(fd);
		r[3] = weft_fdatasync(fd);
		r[4] = weft_fallocate(fd, 0, 0, 4096);
		r[5] = weft_statx(AT_FDCWD, path, 0, STATX_SIZE, &st);
		r[6] = weft_close(fd);
		weft_deadline_set(old);
		for (int k = 0; k < 6; k++)
			CHECK(r[k] >= 0 || r[k] == -ETIMEDOUT || (k == 4 && r[k] == -EOPNOTSUPP));
		CHECK(r[6] == 0);            /* close is never cut short */
	}
	/* past a deadline: shutdown fails, close still closes */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	uint64_t old = weft_deadline_set(1);
	CHECK(weft_shutdown(sv[0], SHUT_WR) == -ETIMEDOUT);
	CHECK(weft_close(sv[0]) == 0);
	CHECK(weft_close(sv[1]) == 0);
	weft_deadline_set(old);
	unlink(path);
	return NULL;
}

static void *file_main(void *arg)
{
	unsigned fds = open_fds();
	char dir[] = "/tmp/weft-deadline-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	spawn_join(LOOPERS, file_loop, dir);
	rmdir(dir);
	CHECK(open_fds() == fds);
	return NULL;
}

Test(deadline, io_files_shutdown_close) { NEED_URING(); each_workers(file_main, NULL); }

/*
 * Calls that nothing but the deadline can end: the other end of the pipe or
 * socket never moves. A deadline that does not bound one shows up as a hang,
 * which the test's own timeout turns into a failure; each call must return
 * -ETIMEDOUT, no earlier than its deadline, with nothing moved.
 */
static void *stuck_loop(void *arg)
{
	int empty[2], full[2];
	CHECK(pipe2(empty, O_CLOEXEC) == 0);   /* never written */
	CHECK(pipe2(full, O_CLOEXEC) == 0);    /* filled, never read */
	fcntl(full[1], F_SETPIPE_SZ, 4096);
	fcntl(full[1], F_SETFL, O_NONBLOCK);
	static const char block[4096];
	while (write(full[1], block, sizeof block) > 0)
		;
	fcntl(full[1], F_SETFL, 0);
	int src[2];                              /* a pipe with data, for the full one */
	CHECK(pipe2(src, O_CLOEXEC) == 0);
	CHECK(write(src[1], block, 512) == 512);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	for (unsigned i = 0; i < ITERS / 2; i++) {
		uint64_t old, d = region_open(i % 4 == 3 ? i - 1 : i, &old);   /* no 1 ms waits */
		char b[64];
		ssize_t r[4];
		r[0] = weft_splice(empty[0], -1, sv[0], -1, 4096, 0);   /* empty source */
		r[1] = weft_splice(src[0], -1, full[1], -1, 512, 0);    /* full destination */
		r[2] = weft_read(empty[0], b, sizeof b, -1);
		r[3] = weft_recv(sv[1], b, sizeof b, 0);
		weft_deadline_set(old);
		for (int k = 0; k < 4; k++)
			CHECK(timed_out_in_order(r[k], d, 0));
	}
	int left = 0;
	CHECK(ioctl(src[0], FIONREAD, &left) == 0 && left == 512);   /* nothing moved */
	close(empty[0]); close(empty[1]); close(full[0]); close(full[1]);
	close(src[0]); close(src[1]); close(sv[0]); close(sv[1]);
	return NULL;
}

static void *stuck_main(void *arg)
{
	unsigned fds = open_fds();
	spawn_join(LOOPERS, stuck_loop, NULL);
	CHECK(open_fds() == fds);
	return NULL;
}

Test(deadline, io_calls_only_the_deadline_ends, .timeout = 120)
{
	NEED_URING();
	each_workers(stuck_main, NULL);
}

/* ------------------------------------------------------ zero timeouts --- */

/*
 * One meaning of a zero timeout everywhere (weft.h, Timeouts): the call
 * completes if it can at once, else fails with -ETIMEDOUT without waiting.
 * Each call is made twice, once when it can complete and once when nothing
 * will ever let it (a zero that meant "no limit" would hang there, which
 * the test's timeout turns into a failure).
 */
static void once_noop(void *arg) { (void)arg; }

static void *zero_main(void *arg)
{
	/* channels and select */
	weft_chan *ch;
	CHECK(weft_chan_create(&ch, sizeof(int), 1) == 0);
	int v = 7, got = 0;
	CHECK(weft_chan_recv_timeout(ch, &got, 0) == -ETIMEDOUT);
	CHECK(weft_chan_send_timeout(ch, &v, 0) == 0);
	CHECK(weft_chan_send_timeout(ch, &v, 0) == -ETIMEDOUT);    /* full */
	struct weft_select_case sc = { .chan = ch, .op = WEFT_SELECT_RECV, .elem = &got };
	CHECK(weft_select(&sc, 1, 0) == 0 && got == 7);
	CHECK(weft_select(&sc, 1, 0) == -ETIMEDOUT);
	CHECK(weft_select(NULL, 0, 0) == -ETIMEDOUT);
	CHECK(weft_chan_send_timeout(ch, &v, 0) == 0);
	CHECK(weft_chan_recv_timeout(ch, &got, 0) == 0 && got == 7);
	weft_chan_destroy(ch);

	/* locks and the rest */
	weft_mutex m = WEFT_MUTEX_INIT;
	CHECK(weft_mutex_lock_timeout(&m, 0) == 0);
	weft_cond c = WEFT_COND_INIT;
	CHECK(weft_cond_wait_timeout(&c, &m, 0) == -ETIMEDOUT);   /* and m still held: */
	CHECK(weft_mutex_lock_timeout(&m, 0) == -ETIMEDOUT);
	CHECK(weft_mutex_unlock(&m) == 0);
	weft_rwlock l = WEFT_RWLOCK_INIT;
	CHECK(weft_rwlock_rdlock_timeout(&l, 0) == 0);
	CHECK(weft_rwlock_wrlock_timeout(&l, 0) == -ETIMEDOUT);
	CHECK(weft_rwlock_unlock(&l) == 0);
	CHECK(weft_rwlock_wrlock_timeout(&l, 0) == 0 && weft_rwlock_unlock(&l) == 0);
	weft_sem s;
	weft_sem_init(&s, 1);
	CHECK(weft_sem_wait_timeout(&s, 0) == 0);
	CHECK(weft_sem_wait_timeout(&s, 0) == -ETIMEDOUT);
	weft_wg zwg;
	weft_wg_init(&zwg);
	CHECK(weft_wg_wait_timeout(&zwg, 0) == 0);
	CHECK(weft_wg_add(&zwg, 1) == 0);
	CHECK(weft_wg_wait_timeout(&zwg, 0) == -ETIMEDOUT);
	weft_barrier b;
	CHECK(weft_barrier_init(&b, 2) == 0);
	CHECK(weft_barrier_wait_timeout(&b, 0) == -ETIMEDOUT);
	weft_once_flag o = WEFT_ONCE_INIT;
	CHECK(weft_once_timeout(&o, once_noop, NULL, 0) == 0);    /* runs fn: no wait */

	/* I/O: one attempt, made by the kernel */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	char buf[8];
	CHECK(weft_recv_timeout(sv[0], buf, sizeof buf, 0, 0) == -ETIMEDOUT);
	CHECK(weft_poll_timeout(sv[0], POLLIN, 0) == -ETIMEDOUT);
	CHECK(weft_send_timeout(sv[1], "ab", 2, 0, 0) == 2);
	CHECK(weft_poll_timeout(sv[0], POLLIN, 0) & POLLIN);
	CHECK(weft_recv_timeout(sv[0], buf, sizeof buf, 0, 0) == 2 && !memcmp(buf, "ab", 2));
	CHECK(weft_read_timeout(sv[0], buf, sizeof buf, -1, 0) == -ETIMEDOUT);
	CHECK(weft_write_timeout(sv[1], "c", 1, -1, 0) == 1);
	CHECK(weft_read_timeout(sv[0], buf, sizeof buf, -1, 0) == 1 && buf[0] == 'c');
	uint16_t port;
	int lfd = tcp_listener(&port, 4);
	CHECK(lfd >= 0);
	CHECK(weft_accept_timeout(lfd, NULL, NULL, SOCK_CLOEXEC, 0) == -ETIMEDOUT);
	int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(weft_connect_timeout(cfd, (struct sockaddr *)&sa, sizeof sa, WEFT_FOREVER) == 0);
	int afd = -1;
	for (int k = 0; k < 1000 && afd < 0; k++) {     /* the handshake is done; the
	                                                   accept queue may lag a hair */
		afd = weft_accept_timeout(lfd, NULL, NULL, SOCK_CLOEXEC, 0);
		if (afd < 0) {
			CHECK(afd == -ETIMEDOUT);
			weft_yield();
		}
	}
	CHECK(afd >= 0);
	close(afd);
	close(cfd);
	close(lfd);
	close(sv[0]);
	close(sv[1]);
	return NULL;
}

Test(deadline, zero_timeout_does_not_wait, .timeout = 60)
{
	NEED_URING();
	each_workers(zero_main, NULL);
}
