/*
 * test_ring.c — the worker ring (src/io/ring.c) on its own: callbacks, wakes
 * (eventfd and MSG_RING, coalesced), SQ full, CQ overflow, timeouts.
 *
 * Every blocking wait has a timeout; a test fails if a wake does not end a
 * wait within generous bounds (seconds), never on a tight timing.
 */
#include "io/ring.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC 1000000000LL

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void ring_up(struct weft__ring *r, unsigned entries)
{
	char why[256];
	int ret = weft__ring_init(r, entries, why, sizeof why);
	if (ret == -EPERM || ret == -ENOSYS)
		cr_skip_test("no io_uring here: %s", why);
	cr_assert_eq(ret, 0, "weft__ring_init: %d (%s)", ret, why);
}

struct nop {
	struct weft__ring_op op;
	int calls;
	int res;
	uint32_t flags;
	int *counter;
};

static void nop_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct nop *n = (struct nop *)op;
	n->calls++;
	n->res = res;
	n->flags = flags;
	(*n->counter)++;
}

static void prep_nop(struct weft__ring *r, struct nop *n, int *counter)
{
	n->op.cb = nop_cb;
	n->calls = 0;
	n->res = 12345;
	n->counter = counter;
	struct io_uring_sqe *sqe = weft__ring_sqe(r);
	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	weft__ring_set_op(sqe, &n->op);
}

/* Poll/wait until *counter reaches want; fail after 10 s. */
static void drain_until(struct weft__ring *r, int *counter, int want)
{
	int64_t end = now_ns() + 10 * SEC;
	int ran = 0;
	while (*counter < want) {
		cr_assert_lt(now_ns(), end, "only %d of %d callbacks after 10 s", *counter, want);
		int n = weft__ring_wait(r, SEC);
		cr_assert_geq(n, 0, "weft__ring_wait: %d", n);
		ran += n;
	}
	cr_assert_eq(*counter, want);
	cr_assert_eq(ran, want, "wait counted %d callbacks, %d ran", ran, want);
}

Test(ring, nop_round_trip)
{
	struct weft__ring r;
	ring_up(&r, 64);
	cr_assert(!weft__ring_busy(&r), "a fresh ring is not busy (its eventfd poll is internal)");
	cr_assert(weft__ring_op_supported(&r, IORING_OP_NOP));

	struct nop ops[10];
	int done = 0;
	for (int i = 0; i < 10; i++)
		prep_nop(&r, &ops[i], &done);
	cr_assert_eq(r.pending, 10);
	cr_assert(weft__ring_busy(&r));
	drain_until(&r, &done, 10);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(ops[i].calls, 1, "op %d ran %d times", i, ops[i].calls);
		cr_assert_eq(ops[i].res, 0);
	}
	cr_assert_eq(r.pending, 0);
	cr_assert_eq(r.inflight, 0);
	cr_assert(!weft__ring_busy(&r));
	/* Nothing left: a poll runs no callback. */
	cr_assert_eq(weft__ring_poll(&r), 0);
	weft__ring_exit(&r);
}

Test(ring, poll_runs_callbacks_without_blocking)
{
	struct weft__ring r;
	ring_up(&r, 8);
	struct nop ops[3];
	int done = 0;
	for (int i = 0; i < 3; i++)
		prep_nop(&r, &ops[i], &done);
	/* NOPs complete at submit; under DEFER_TASKRUN poll must fetch them. */
	for (int i = 0; i < 1000 && done < 3; i++)
		weft__ring_poll(&r);
	cr_assert_eq(done, 3);
	cr_assert(!weft__ring_busy(&r));
	weft__ring_exit(&r);
}

/* A callback that prepares the next NOP: SQEs prepared during reaping. */
struct chain {
	struct weft__ring_op op;
	struct weft__ring *r;
	int left;
	int ran;
};

static void chain_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct chain *c = (struct chain *)op;
	(void)flags;
	cr_assert_eq(res, 0);
	c->ran++;
	if (--c->left > 0) {
		struct io_uring_sqe *sqe = weft__ring_sqe(c->r);
		io_uring_prep_nop(sqe);
		weft__ring_set_op(sqe, &c->op);
	}
}

Test(ring, callback_prepares_sqes)
{
	struct weft__ring r;
	ring_up(&r, 4);
	struct chain c = { .op.cb = chain_cb, .r = &r, .left = 50 };
	struct io_uring_sqe *sqe = weft__ring_sqe(&r);
	io_uring_prep_nop(sqe);
	weft__ring_set_op(sqe, &c.op);
	drain_until(&r, &c.ran, 50);
	cr_assert_eq(c.left, 0);
	cr_assert(!weft__ring_busy(&r));
	weft__ring_exit(&r);
}

Test(ring, sq_full_submits_and_retries)
{
	struct weft__ring r;
	ring_up(&r, 4);
	enum { N = 100 };
	struct nop *ops = calloc(N, sizeof *ops);
	int done = 0;
	for (int i = 0; i < N; i++)
		prep_nop(&r, &ops[i], &done);     /* 25 times what the SQ holds */
	drain_until(&r, &done, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(ops[i].calls, 1, "op %d ran %d times", i, ops[i].calls);
	cr_assert(!weft__ring_busy(&r));
	free(ops);
	weft__ring_exit(&r);
}

Test(ring, cq_overflow_loses_nothing)
{
	struct weft__ring r;
	ring_up(&r, 4);                        /* SQ 4, CQ 8 */
	cr_assert_eq(r.uring.cq.ring_entries, 8);
	enum { N = 1000 };
	struct nop *ops = calloc(N, sizeof *ops);
	int done = 0;
	/* Batches of 4 submitted by weft__ring_sqe when the SQ is full, never
	 * reaped in between: ~992 CQEs must go to the kernel's overflow list. */
	for (int i = 0; i < N; i++)
		prep_nop(&r, &ops[i], &done);
	cr_assert_eq(done, 0, "nothing may run before the owner reaps");
	/* NOPs complete at submit: the CQ filled and the rest overflowed. */
	cr_assert(*r.uring.sq.kflags & IORING_SQ_CQ_OVERFLOW,
		  "the test did not reach CQ overflow (kflags %#x)", *r.uring.sq.kflags);
	/* One poll must run them all: the CQ holds 8, so its reap has to flush
	 * the kernel's overflow list again and again until the flag clears (a
	 * later wait would flush it too, and hide a reap that stops early). */
	int ran = weft__ring_poll(&r);
	cr_assert_eq(ran, N, "one poll ran %d of %d callbacks", ran, N);
	cr_assert_eq(done, N);
	cr_assert_not(*r.uring.sq.kflags & IORING_SQ_CQ_OVERFLOW, "overflow flag still set");
	struct weft__ring_stats_sample st;
	weft__ring_stats_read(&r, &st);
	cr_assert_eq(st.cq_overflow, 1, "one reap saw the overflow: counted %llu",
		     (unsigned long long)st.cq_overflow);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(ops[i].calls, 1, "op %d ran %d times", i, ops[i].calls);
		cr_assert_eq(ops[i].res, 0);
	}
	cr_assert(!weft__ring_busy(&r));
	cr_assert_eq(weft__ring_poll(&r), 0);
	free(ops);
	weft__ring_exit(&r);
}

Test(ring, timeout_returns)
{
	struct weft__ring r;
	ring_up(&r, 8);
	int64_t t0 = now_ns();
	int n = weft__ring_wait(&r, 50 * 1000 * 1000);
	int64_t dt = now_ns() - t0;
	cr_assert_eq(n, 0);
	cr_assert_geq(dt, 40 * 1000 * 1000, "a 50 ms wait returned after %lld ns", (long long)dt);
	cr_assert_lt(dt, 10 * SEC);
	/* zero timeout: a poll */
	cr_assert_eq(weft__ring_wait(&r, 0), 0);
	weft__ring_exit(&r);
}

/* ---- wakes between threads ---------------------------------------------- */

struct waker_arg {
	struct weft__ring *to;
	_Atomic int go;
	int times;
};

static void *eventfd_waker(void *p)
{
	struct waker_arg *a = p;
	/* acquire: pairs with the release store of go in the owner. */
	while (!atomic_load_explicit(&a->go, memory_order_acquire))
		;
	for (int i = 0; i < a->times; i++)
		weft__ring_wake(NULL, a->to);
	return NULL;
}

Test(ring, eventfd_wake_ends_blocking_wait)
{
	struct weft__ring r;
	ring_up(&r, 8);
	struct waker_arg a = { .to = &r, .times = 1 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, eventfd_waker, &a), 0);
	atomic_store_explicit(&a.go, 1, memory_order_release);
	int64_t t0 = now_ns();
	int n = weft__ring_wait(&r, 20 * SEC);   /* ends at the wake, not the timeout */
	int64_t dt = now_ns() - t0;
	pthread_join(t, NULL);
	cr_assert_eq(n, 0, "a wake runs no callback");
	cr_assert_lt(dt, 10 * SEC, "wake did not end the wait (%lld ns)", (long long)dt);
	/* The wake was reaped, so the flag is clear and the next wait blocks
	 * until its timeout. */
	cr_assert_eq(atomic_load(&r.wake_pending), 0);
	t0 = now_ns();
	cr_assert_eq(weft__ring_wait(&r, 20 * 1000 * 1000), 0);
	cr_assert_geq(now_ns() - t0, 15 * 1000 * 1000);
	/* A second wake works too (eventfd poll re-armed or multishot). */
	weft__ring_wake(NULL, &r);
	t0 = now_ns();
	weft__ring_wait(&r, 20 * SEC);
	cr_assert_lt(now_ns() - t0, 10 * SEC);
	weft__ring_exit(&r);
}

Test(ring, wakes_coalesce_and_none_is_lost)
{
	struct weft__ring r;
	ring_up(&r, 8);
	enum { T = 4 };
	struct waker_arg a = { .to = &r, .times = 20000 };
	pthread_t t[T];
	for (int i = 0; i < T; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, eventfd_waker, &a), 0);
	atomic_store_explicit(&a.go, 1, memory_order_release);
	int returns = 0;
	int64_t end = now_ns() + 10 * SEC;
	while (returns == 0 && now_ns() < end)
		if (weft__ring_wait(&r, SEC) == 0 && atomic_load(&r.wake_pending) == 0)
			returns++;
	for (int i = 0; i < T; i++)
		pthread_join(t[i], NULL);
	cr_assert_gt(returns, 0, "no wake was delivered");
	/* After the storm: drain what is left, then one more wake must still
	 * end a wait (a flag stuck at 1 with nothing on its way would hang). */
	for (int i = 0; i < 100 && atomic_load(&r.wake_pending); i++)
		weft__ring_wait(&r, SEC / 10);
	cr_assert_eq(atomic_load(&r.wake_pending), 0, "wake_pending stuck at 1");
	pthread_t w;
	struct waker_arg b = { .to = &r, .times = 1 };
	cr_assert_eq(pthread_create(&w, NULL, eventfd_waker, &b), 0);
	atomic_store_explicit(&b.go, 1, memory_order_release);
	int64_t t0 = now_ns();
	weft__ring_wait(&r, 20 * SEC);
	cr_assert_lt(now_ns() - t0, 10 * SEC);
	pthread_join(w, NULL);
	weft__ring_exit(&r);
}

/* Ping-pong by MSG_RING between two rings, each owned by its thread. */
struct pingpong {
	struct weft__ring rings[2];
	_Atomic int ready;       /* rings initialised */
	_Atomic int turn;        /* whose turn: 0 or 1 */
	_Atomic int failed;
	int rounds;
	int init_err;
	bool no_msg_ring;        /* the kernel has no IORING_OP_MSG_RING */
	bool force_eventfd;      /* wake by eventfd even where MSG_RING works */
};

static void *pp_side(struct pingpong *pp, int me)
{
	struct weft__ring *mine = &pp->rings[me], *peer = &pp->rings[!me];
	/* acquire: pairs with the release increment of ready (the peer's ring
	 * must be initialised before we message it). */
	while (atomic_load_explicit(&pp->ready, memory_order_acquire) < 2)
		if (atomic_load(&pp->failed))
			return NULL;
	for (int i = 0; i < pp->rounds; i++) {
		int64_t end = now_ns() + 10 * SEC;
		/* acquire: pairs with the peer's release store of turn. */
		while (atomic_load_explicit(&pp->turn, memory_order_acquire) != me) {
			if (now_ns() > end || atomic_load(&pp->failed)) {
				atomic_store(&pp->failed, 1);
				weft__ring_wake(mine, peer);
				return NULL;
			}
			weft__ring_wait(mine, SEC);
		}
		atomic_store_explicit(&pp->turn, !me, memory_order_release);
		weft__ring_wake(mine, peer);
	}
	/* Let the peer's last wait end before we tear down (its ring is still
	 * ours to message until it has joined: main joins both first). */
	return NULL;
}

struct pp_thread { struct pingpong *pp; int me; };

static void *pp_main(void *p)
{
	struct pp_thread *t = p;
	struct pingpong *pp = t->pp;
	char why[128];
	int ret = weft__ring_init(&pp->rings[t->me], 16, why, sizeof why);
	if (ret) {
		pp->init_err = ret;
		atomic_store(&pp->failed, 1);
		return NULL;
	}
	if (!pp->rings[t->me].has_msg_ring)
		pp->no_msg_ring = true;
	/* weft__ring_wake reads this of the sender's ring, which is ours */
	if (pp->force_eventfd)
		pp->rings[t->me].has_msg_ring = false;
	atomic_fetch_add_explicit(&pp->ready, 1, memory_order_release);
	pp_side(pp, t->me);
	return NULL;
}

/* 200 rounds of ping-pong; then each ring's SQE count says which way its
 * wakes went. A MSG_RING wake is an SQE of the sender's ring; an eventfd wake
 * is a write(2), and the only SQE of a ring that sends no MSG_RING is its own
 * eventfd poll, armed once at setup (multishot: it stays armed). */
static void pingpong_run(bool force_eventfd)
{
	struct weft__ring_stats_sample st[2];
	static struct pingpong pp;
	memset(&pp, 0, sizeof pp);
	pp.rounds = 200;
	pp.force_eventfd = force_eventfd;
	struct pp_thread a = { &pp, 0 }, b = { &pp, 1 };
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, pp_main, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, pp_main, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	if (pp.init_err == -EPERM || pp.init_err == -ENOSYS)
		cr_skip_test("no io_uring");
	cr_assert_eq(pp.init_err, 0);
	if (!force_eventfd && pp.no_msg_ring) {
		weft__ring_exit(&pp.rings[0]);
		weft__ring_exit(&pp.rings[1]);
		cr_skip_test("kernel without IORING_OP_MSG_RING (eventfd_wake_between_rings "
			     "covers the fallback)");
	}
	cr_assert_eq(atomic_load(&pp.failed), 0, "a wake was lost: turn stuck at %d", atomic_load(&pp.turn));
	for (int i = 0; i < 2; i++) {
		weft__ring_stats_read(&pp.rings[i], &st[i]);
		if (force_eventfd && !pp.rings[i].poll_multishot) {
			/* one-shot polls: one re-arm per eventfd CQE at most */
			cr_assert_leq(st[i].sqes, 1 + st[i].cqes, "ring %d sent MSG_RINGs", i);
		} else if (force_eventfd) {
			cr_assert_eq(st[i].sqes, 1, "ring %d submitted %llu SQEs: it sent MSG_RINGs "
				     "instead of writing the eventfd", i, (unsigned long long)st[i].sqes);
		} else {
			cr_assert_geq(st[i].sqes, 2, "ring %d submitted only its eventfd poll: "
				      "its wakes did not go by MSG_RING", i);
		}
	}
	weft__ring_exit(&pp.rings[0]);
	weft__ring_exit(&pp.rings[1]);
}

Test(ring, msg_ring_wake_between_rings)
{
	pingpong_run(false);
}

/* The fallback for kernels without MSG_RING (and for a MSG_RING that
 * failed), on any kernel: the same ping-pong with the eventfd alone. */
Test(ring, eventfd_wake_between_rings)
{
	pingpong_run(true);
}

/* The sender's MSG_RING never produces a user-visible CQE, and a wake sent
 * while the owner is not waiting ends its next wait at once. */
struct owner_arg {
	struct weft__ring r;
	_Atomic int stage;
	int64_t waited_ns;
	int ran;
};

static void *late_owner(void *p)
{
	struct owner_arg *o = p;
	char why[128];
	if (weft__ring_init(&o->r, 8, why, sizeof why)) {
		atomic_store(&o->stage, -1);
		return NULL;
	}
	atomic_store_explicit(&o->stage, 1, memory_order_release);  /* ring ready */
	while (atomic_load_explicit(&o->stage, memory_order_acquire) != 2)
		;   /* the wake has been sent */
	int64_t t0 = now_ns();
	o->ran = weft__ring_wait(&o->r, 20 * SEC);
	o->waited_ns = now_ns() - t0;
	return NULL;
}

Test(ring, msg_ring_wake_before_wait_is_kept)
{
	struct weft__ring me;
	ring_up(&me, 8);
	if (!me.has_msg_ring) {
		weft__ring_exit(&me);
		cr_skip_test("kernel without IORING_OP_MSG_RING");
	}
	static struct owner_arg o;
	memset(&o, 0, sizeof o);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, late_owner, &o), 0);
	int s;
	while ((s = atomic_load_explicit(&o.stage, memory_order_acquire)) == 0)
		;
	cr_assert_eq(s, 1);
	weft__ring_wake(&me, &o.r);
	weft__ring_wake(&me, &o.r);               /* coalesced: a no-op */
	atomic_store_explicit(&o.stage, 2, memory_order_release);
	pthread_join(t, NULL);
	cr_assert_eq(o.ran, 0);
	cr_assert_lt(o.waited_ns, 10 * SEC, "a wake sent before the wait was lost");
	/* The sender saw no CQE: polling its ring runs nothing. */
	cr_assert_eq(weft__ring_poll(&me), 0);
	cr_assert(!weft__ring_busy(&me));
	weft__ring_exit(&o.r);
	weft__ring_exit(&me);
}
