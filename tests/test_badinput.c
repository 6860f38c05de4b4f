/*
 * Bad API input: each case gets the error its header documents ("Errors:"
 * in include/weft.h and the headers under include/weft/), and nothing crashes, hangs or
 * leaks (the ASan build checks the leaks). Plain-thread cases assert
 * directly; coroutine-side cases go through harness.h's CHECK.
 *
 * Not here, because they are undefined by contract and not detectable: a
 * second weft_join of a handle already joined (the record may be reused),
 * any call on a destroyed runtime, channel or generator.
 */
#include "harness.h"
#include "util.h"
#include "weft/chan.h"
#include "weft/sync.h"
#include "weft/io.h"
#include "weft/blocking.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *noop(void *arg) { return arg; }
static void *gen_body(weft_gen *g, void *arg, void *in);
static int noop_group(void *arg, void **result) { *result = arg; return 0; }

/* ------------------------------------------------ runtime, plain thread --- */

/* weft_rt_create(out, cfg), with what it wrote to stderr in said[]. */
static int create_said(weft_rt **out, const struct weft_config *cfg, char *said, size_t len)
{
	int p[2], saved = dup(2);
	cr_assert(saved >= 0 && pipe(p) == 0);
	fflush(stderr);
	dup2(p[1], 2);
	int err = weft_rt_create(out, cfg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], said, len - 1);       /* one line: far below the pipe's size */
	said[n > 0 ? n : 0] = 0;
	close(p[0]);
	return err;
}

/* Each bad config gets -EINVAL and one line on stderr that names the
 * cause, as weft.h promises for every error of weft_rt_create. */
#define BAD_CONFIG(out, cfg, why) do { \
	char said_[256]; \
	cr_assert_eq(create_said((out), (cfg), said_, sizeof said_), -EINVAL, "%s", why); \
	cr_assert(strstr(said_, "weft: cannot create runtime: ") && strstr(said_, why), \
	          "stderr said \"%s\", not \"%s\"", said_, why); \
} while (0)

Test(badinput, rt_create_bad_config)
{
	weft_rt *rt = (weft_rt *)&rt;       /* must come back NULL */
	BAD_CONFIG(NULL, NULL, "rt is NULL");

	struct weft_config many = { .workers = 5000 };
	BAD_CONFIG(&rt, &many, "workers 5000");
	cr_assert_null(rt);

	struct weft_config flags = { .workers = 1, .flags = 0x80 };
	BAD_CONFIG(&rt, &flags, "unknown flags 0x80");

	struct weft_config ring = { .workers = 1, .ring_entries = 1u << 20 };
	BAD_CONFIG(&rt, &ring, "ring_entries 1048576");

	/* stack sizes: too small, huge, SIZE_MAX (rounding must not wrap) */
	size_t bad[] = { 1, WEFT_STACK_MIN - 1, (size_t)1 << 50, SIZE_MAX,
	                 SIZE_MAX - 4095 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct weft_config c = { .workers = 1, .stack_size = bad[i] };
		char why[64];
		snprintf(why, sizeof why, "stack_size %zu", bad[i]);
		BAD_CONFIG(&rt, &c, why);
		cr_assert_null(rt);
	}
}

Test(badinput, rt_calls_with_null)
{
	cr_assert_eq(weft_rt_spawn(NULL, NULL, noop, NULL), -EINVAL);
	cr_assert_eq(weft_rt_run(NULL, noop, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_rt_stats(NULL, NULL, NULL, 0), -EINVAL);
	cr_assert_eq(weft_stats_format(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(weft_rt_workers(NULL), 0u);
	cr_assert_eq(weft_cancel(NULL), -EINVAL);
}

Test(badinput, unaligned_stack_is_rounded)
{
	/* Not an error: rounded up to whole pages, and it runs. */
	weft_rt *rt;
	struct weft_config c = { .workers = 1, .stack_size = WEFT_STACK_MIN + 123 };
	cr_assert_eq(weft_rt_create(&rt, &c), 0);
	void *ret = NULL;
	cr_assert_eq(weft_rt_run(rt, noop, (void *)(uintptr_t)7, &ret), 0);
	cr_assert_eq((uintptr_t)ret, 7);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

Test(badinput, null_fn)
{
	weft_rt *rt;
	struct weft_config c = { .workers = 1 };
	cr_assert_eq(weft_rt_create(&rt, &c), 0);
	weft_task *t = (weft_task *)&t;
	cr_assert_eq(weft_rt_run(rt, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_rt_spawn(rt, &t, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_rt_spawn(rt, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

/* ------------------------------------------- coroutine calls, no runtime --- */

Test(badinput, outside_a_coroutine)
{
	weft_task *t = NULL;
	char buf[4];
	cr_assert_eq(weft_spawn(&t, noop, NULL), -EPERM);
	cr_assert_null(t);
	cr_assert_eq(weft_join((weft_task *)&t, NULL), -EPERM);
	cr_assert_eq(weft_sleep(1), -EPERM);
	weft_yield();                       /* a no-op, documented */
	cr_assert_null(weft_self());
	cr_assert_null(weft_rt_current());
	cr_assert_eq(weft_worker_id(), -1);
	cr_assert_eq(weft_deadline_set(123), 0u);
	cr_assert_eq(weft_deadline(), 0u);
	cr_assert_eq(weft_local_set(0, buf), -EPERM);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(weft_read(fds[0], buf, sizeof buf, -1), -EPERM);
	cr_assert_eq(weft_write(fds[1], "x", 1, -1), -EPERM);
	cr_assert_eq(weft_close(fds[0]), -EPERM);
	cr_assert_eq(weft_poll(fds[0], 1), -EPERM);
	void *r = NULL;                     /* documented: runs inline */
	cr_assert_eq(weft_blocking(noop, (void *)(uintptr_t)3, &r), 0);
	cr_assert_eq((uintptr_t)r, 3);
	close(fds[0]);
	close(fds[1]);
}

/* ---------------------------------------- sync objects, plain thread --- */

Test(badinput, chan_create_and_close)
{
	weft_chan *ch = NULL;
	cr_assert_eq(weft_chan_create(&ch, 0, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, 65537, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, SIZE_MAX, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, 8, SIZE_MAX / 4), -EINVAL, "size overflows");
	cr_assert_eq(weft_chan_create(NULL, 8, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&ch, 4, 2), 0);
	cr_assert_eq(weft_chan_close(ch), 0);
	cr_assert_eq(weft_chan_close(ch), -EPIPE, "double close");
	int v = 1;
	cr_assert_eq(weft_chan_try_send(ch, &v), -EPIPE);
	cr_assert_eq(weft_chan_send(ch, &v), -EPIPE);
	cr_assert_eq(weft_chan_recv(ch, &v), -EPIPE);
	weft_chan_destroy(ch);
}

Test(badinput, select_bad_args)
{
	weft_chan *ch;
	cr_assert_eq(weft_chan_create(&ch, sizeof(int), 1), 0);
	int v = 0;
	struct weft_select_case c = { .chan = ch, .op = WEFT_SELECT_RECV, .elem = &v };
	struct weft_select_case bad = { .chan = ch, .op = 7, .elem = &v };
	cr_assert_eq(weft_select(&bad, 1, 0), -EINVAL, "bad op");
	cr_assert_eq(weft_select(&c, 1, 0), -ETIMEDOUT, "0 does not wait");
	cr_assert_eq(weft_select(NULL, 1, 0), -EINVAL, "NULL cases");
	cr_assert_eq(weft_select(&c, (size_t)INT32_MAX + 1, 0), -EINVAL,
	             "huge n");
	weft_chan_destroy(ch);
}

Test(badinput, sync_objects)
{
	weft_mutex m;
	weft_mutex_init(&m);
	cr_assert_eq(weft_mutex_unlock(&m), -EPERM, "unlock of an unlocked mutex");
	weft_rwlock l;
	weft_rwlock_init(&l);
	cr_assert_eq(weft_rwlock_unlock(&l), -EPERM, "unlock of an unlocked rwlock");
	weft_wg wg;
	weft_wg_init(&wg);
	cr_assert_eq(weft_wg_add(&wg, -1), -EINVAL);
	cr_assert_eq(weft_wg_done(&wg), -EINVAL, "done below zero");
	cr_assert_eq(weft_wg_add(&wg, INT64_MIN), -EINVAL, "INT64_MIN below zero");
	cr_assert_eq(weft_wg_add(&wg, 1), 0);
	cr_assert_eq(weft_wg_add(&wg, INT64_MIN), -EINVAL, "INT64_MIN from 1");
	cr_assert_eq(weft_wg_add(&wg, -1), 0, "back to zero");
	weft_barrier b;
	cr_assert_eq(weft_barrier_init(&b, 0), -EINVAL);
	weft_sem s;
	weft_sem_init(&s, UINT64_MAX);
	cr_assert_eq(weft_sem_post(&s), -EOVERFLOW);
	cr_assert_eq(weft_sem_value(&s), UINT64_MAX);
	weft_group *g = NULL;
	cr_assert_eq(weft_group_create(&g, 0x8000), -EINVAL);
	cr_assert_eq(weft_local_key_create(NULL, NULL), -EINVAL);
	/* Keys are never returned; this test runs in its own process. */
	weft_local_key key;
	int r = 0;
	for (unsigned i = 0; i <= WEFT_LOCAL_KEYS && r == 0; i++)
		r = weft_local_key_create(&key, NULL);
	cr_assert_eq(r, -EAGAIN, "keys exhausted");
	weft_gen *gen = NULL;
	cr_assert_eq(weft_gen_create(&gen, NULL, NULL, 0), -EINVAL, "NULL body");
	cr_assert_eq(weft_gen_create(&gen, gen_body, NULL, 100), -EINVAL);
	cr_assert_eq(weft_blocking_configure(0, 0), -EINVAL);
	cr_assert_eq(weft_blocking_configure(5000, 0), -EINVAL);
}

/* --------------------------------------------------- in a coroutine --- */

static void *bad_in_coroutine(void *arg)
{
	(void)arg;
	weft_task *t = NULL;
	/* NULL fn, bad spawn options */
	CHECK(weft_spawn(&t, NULL, NULL) == -EINVAL);
	CHECK(weft_spawn(NULL, NULL, NULL) == -EINVAL);
	struct weft_spawn_opts o = { .flags = 1 };
	CHECK(weft_spawn_opts(&t, noop, NULL, &o) == -EINVAL);
	size_t bad[] = { 1, WEFT_STACK_MIN - 1, (size_t)1 << 50, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct weft_spawn_opts so = { .stack_size = bad[i] };
		CHECK(weft_spawn_opts(&t, noop, NULL, &so) == -EINVAL);
	}
	/* unaligned: rounded, runs */
	struct weft_spawn_opts odd = { .stack_size = WEFT_STACK_MIN + 1 };
	void *ret = NULL;
	CHECK(weft_spawn_opts(&t, noop, (void *)(uintptr_t)5, &odd) == 0);
	CHECK(weft_join(t, &ret) == 0 && (uintptr_t)ret == 5);

	/* joins: self, NULL (a detached spawn hands out no handle) */
	CHECK(weft_join(weft_self(), NULL) == -EDEADLK);
	CHECK(weft_join(NULL, NULL) == -EINVAL);
	CHECK(weft_spawn(NULL, noop, NULL) == 0);    /* detached: fine */

	/* calls made only from plain threads */
	weft_rt *rt2 = (weft_rt *)&rt2;
	CHECK(weft_rt_create(&rt2, NULL) == -EPERM && rt2 == NULL);
	CHECK(weft_rt_run(weft_rt_current(), noop, NULL, NULL) == -EPERM);
	CHECK(weft_rt_destroy(weft_rt_current()) == -EPERM);

	/* locals: bad key */
	CHECK(weft_local_set(WEFT_LOCAL_KEYS, &t) == -EINVAL);
	CHECK(weft_local_set((weft_local_key)-1, &t) == -EINVAL);
	CHECK(weft_local_get(WEFT_LOCAL_KEYS) == NULL);

	/* I/O: double close, bad fd */
	int fds[2];
	CHECK(pipe(fds) == 0);
	CHECK(weft_close(fds[0]) == 0);
	CHECK(weft_close(fds[0]) == -EBADF);
	CHECK(weft_close(-1) == -EBADF);
	char c;
	CHECK(weft_read(-1, &c, 1, -1) == -EBADF);
	CHECK(weft_write(fds[1], NULL, 0, -1) == 0);
	CHECK(weft_close(fds[1]) == 0);

	/* groups: NULL fn, spawn after wait */
	weft_group *g;
	CHECK(weft_group_create(&g, 0) == 0);
	CHECK(weft_group_spawn(g, NULL, NULL) == -EINVAL);
	CHECK(weft_group_wait(g) == 0);
	CHECK(weft_group_spawn(g, noop_group, NULL) == -EINVAL);
	CHECK(weft_group_error(g, 5) == -EINVAL);
	weft_group_destroy(g);
	return NULL;
}

Test(badinput, in_coroutine)
{
	run_with(2, 0, bad_in_coroutine, NULL);
}

/* Two joiners of one unfinished task: the second gets -EINVAL. */
struct dj {
	weft_task *target;
	weft_chan *gate;
	_Atomic int results[2];
};

static void *wait_gate(void *arg)
{
	struct dj *d = arg;
	int v;
	CHECK(weft_chan_recv(d->gate, &v) == -EPIPE);
	return NULL;
}

static void *second_joiner(void *arg)
{
	struct dj *d = arg;
	return (void *)(intptr_t)weft_join(d->target, NULL);
}

static void *double_join(void *arg)
{
	(void)arg;
	struct dj d = { 0 };
	CHECK(weft_chan_create(&d.gate, sizeof(int), 0) == 0);
	CHECK(weft_spawn(&d.target, wait_gate, &d) == 0);
	/* The other joiner runs first and parks in its join (child-first
	 * spawn runs it until it parks; under PARENT_FIRST it would not, so
	 * the runtime here is the default). Then our join is the second. */
	weft_task *j2;
	CHECK(weft_spawn(&j2, second_joiner, &d) == 0);
	int r = weft_join(d.target, NULL);
	/* Whichever join came second got -EINVAL; the first one waits. */
	weft_chan_close(d.gate);
	void *r2;
	CHECK(weft_join(j2, &r2) == 0);
	if (r == -EINVAL) {
		CHECK((intptr_t)r2 == 0);       /* j2 was first: it joined */
	} else {
		CHECK(r == 0 && (intptr_t)r2 == -EINVAL);
	}
	weft_chan_destroy(d.gate);
	return NULL;
}

Test(badinput, double_join_at_once)
{
	run_with(1, 0, double_join, NULL);
}

/* "Negative" unsigned timeouts (UINT64_MAX, huge): mean a very long wait,
 * never an immediate -ETIMEDOUT from an overflowing deadline, and never no
 * deadline at all. Each blocking call below really waits with the huge
 * timeout: a waiter parks in it, and main reads the deadline it armed from
 * weft_dump ("(deadline in <ms> ms)") before it ends the call by the
 * ordinary means (a send, an unlock, a post...), which must be what ended
 * it. now + timeout must saturate at UINT64_MAX: a wrapped sum is a deadline
 * in the past (the call fails at once, never parks), and a timeout taken
 * for "none" arms no deadline (the dump shows none). */
enum { H_CHAN, H_MUTEX, H_RWLOCK, H_COND, H_SEM, H_WG, H_BARRIER, H_SLEEP, H_KINDS };

struct huge {
	int kind;
	uint64_t timeout;
	weft_chan *ch;
	weft_mutex m, cm;
	weft_rwlock l;
	weft_cond c;
	bool go;
	weft_sem s;
	weft_wg wg;
	weft_barrier b;
};

static void *huge_waiter(void *arg)
{
	struct huge *h = arg;
	int v = 0, r = -1;
	switch (h->kind) {
	case H_CHAN:
		r = weft_chan_recv_timeout(h->ch, &v, h->timeout);
		if (r == 0 && v != 42)
			r = 1;
		break;
	case H_MUTEX:
		r = weft_mutex_lock_timeout(&h->m, h->timeout);
		if (r == 0)
			r = weft_mutex_unlock(&h->m);
		break;
	case H_RWLOCK:
		r = weft_rwlock_wrlock_timeout(&h->l, h->timeout);
		if (r == 0)
			r = weft_rwlock_unlock(&h->l);
		break;
	case H_COND:
		r = weft_mutex_lock(&h->cm);
		if (r)
			break;
		while (!h->go && r == 0)
			r = weft_cond_wait_timeout(&h->c, &h->cm, h->timeout);
		if (weft_mutex_unlock(&h->cm) != 0)
			r = 1;
		break;
	case H_SEM: r = weft_sem_wait_timeout(&h->s, h->timeout); break;
	case H_WG: r = weft_wg_wait_timeout(&h->wg, h->timeout); break;
	case H_BARRIER:
		r = weft_barrier_wait_timeout(&h->b, h->timeout);
		if (r == WEFT_BARRIER_SERIAL)
			r = 0;
		break;
	case H_SLEEP: r = weft_sleep(h->timeout); break;
	}
	return (void *)(intptr_t)r;
}

/* The armed deadline of coroutine `id`, in ms from now, once weft_dump
 * shows it parked (bounded: 5000 tries, 1 ms apart); -1 if it never did,
 * -2 if it parked with no deadline. */
static double parked_deadline_ms(uint64_t id)
{
	char key[48];
	snprintf(key, sizeof key, "coroutine %llu \"", (unsigned long long)id);
	for (int tries = 0; tries < 5000; tries++) {
		if (tries)
			weft_sleep(1000000);
		char *buf = dump_text();
		if (!buf)
			return -1;
		double ms = -1;
		char *p = strstr(buf, key);
		if (p) {
			p[strcspn(p, "\n")] = 0;
			if (strstr(p, ": parked, waiting for")) {
				char *d = strstr(p, "(deadline in ");
				ms = d ? strtod(d + strlen("(deadline in "), NULL) : -2;
			}
		}
		free(buf);
		if (ms != -1)
			return ms;
	}
	return -1;
}

struct huge_read { int fd; uint64_t timeout; };

static void *huge_reader(void *arg)
{
	struct huge_read *hr = arg;
	char c = 0;
	ssize_t n = weft_read_timeout(hr->fd, &c, 1, -1, hr->timeout);
	return (void *)(intptr_t)(n == 1 ? c : n);
}

static const char *const huge_names[H_KINDS] = {
	"chan recv", "mutex", "rwlock", "cond", "sem", "wait group", "barrier", "sleep",
};

static void *huge_timeouts(void *arg)
{
	(void)arg;
	/* Three huge timeouts per call: WEFT_FOREVER (UINT64_MAX), which arms
	 * no deadline at all; UINT64_MAX - 1; and one that wraps only when
	 * added to now (so a special case for one value would not do). The
	 * last two saturate: the deadline is UINT64_MAX. weft_sleep takes a
	 * duration, not a timeout: every one of them saturates there. */
	const uint64_t timeouts[3] = { WEFT_FOREVER, UINT64_MAX - 1, UINT64_MAX - weft_now() / 2 };
	for (int k = 0; k < H_KINDS; k++) {
		for (int j = 0; j < 3; j++) {
			struct huge h = { .kind = k, .timeout = timeouts[j] };
			weft_mutex_init(&h.m);
			weft_mutex_init(&h.cm);
			weft_rwlock_init(&h.l);
			weft_cond_init(&h.c);
			weft_sem_init(&h.s, 0);
			weft_wg_init(&h.wg);
			CHECK(weft_barrier_init(&h.b, 2) == 0);
			CHECK(weft_chan_create(&h.ch, sizeof(int), 0) == 0);
			/* what the waiter waits for is held */
			if (k == H_MUTEX)
				CHECK(weft_mutex_lock(&h.m) == 0);
			if (k == H_RWLOCK)
				CHECK(weft_rwlock_rdlock(&h.l) == 0);
			if (k == H_WG)
				CHECK(weft_wg_add(&h.wg, 1) == 0);

			weft_task *t;
			CHECK(weft_spawn(&t, huge_waiter, &h) == 0);
			double ms = parked_deadline_ms(weft_task_id(t));
			double want = ((double)UINT64_MAX - (double)weft_now()) / 1e6;
			int v = 42, expect = 0;
			switch (k) {       /* end the call the ordinary way */
			case H_CHAN: CHECK(weft_chan_send_timeout(h.ch, &v, 10ull * 1000000000) == 0); break;
			case H_MUTEX: CHECK(weft_mutex_unlock(&h.m) == 0); break;
			case H_RWLOCK: CHECK(weft_rwlock_unlock(&h.l) == 0); break;
			case H_COND:
				CHECK(weft_mutex_lock(&h.cm) == 0);
				h.go = true;
				weft_cond_signal(&h.c);
				CHECK(weft_mutex_unlock(&h.cm) == 0);
				break;
			case H_SEM: CHECK(weft_sem_post(&h.s) == 0); break;
			case H_WG: CHECK(weft_wg_done(&h.wg) == 0); break;
			case H_BARRIER: {
				int r = weft_barrier_wait_timeout(&h.b, 10ull * 1000000000);
				CHECK(r == 0 || r == WEFT_BARRIER_SERIAL);
				break;
			}
			case H_SLEEP:
				CHECK(weft_cancel(t) == 0);
				expect = -ECANCELED;
				break;
			}
			void *r = (void *)(intptr_t)1;
			CHECK(weft_join(t, &r) == 0);
			bool none = timeouts[j] == WEFT_FOREVER && k != H_SLEEP;
			bool ok_deadline = none ? ms == -2 : ms > want - 60000 && ms < want + 60000;
			if ((intptr_t)r != expect || !ok_deadline) {
				fprintf(stderr, "%s, timeout %llu: result %d (want %d), deadline in %.3f ms "
				        "(want %.3f)\n", huge_names[k], (unsigned long long)timeouts[j],
				        (int)(intptr_t)r, expect, ms, want);
				CHECK(false);
			}
			weft_chan_destroy(h.ch);
		}
	}

	/* I/O: the deadline is the kernel's linked timeout, which weft_dump
	 * does not show; wrapped, it would be in the past (-ETIMEDOUT at once,
	 * H4's finding in op_begin). The write comes once the reader parks. */
	int fds[2];
	CHECK(pipe(fds) == 0);
	const uint64_t io_timeouts[3] = { (uint64_t)INT64_MAX, UINT64_MAX,
	                                  UINT64_MAX - weft_now() / 2 };
	for (int j = 0; j < 3; j++) {
		struct huge_read hr = { fds[0], io_timeouts[j] };
		weft_task *t;
		CHECK(weft_spawn(&t, huge_reader, &hr) == 0);
		CHECK(parked_deadline_ms(weft_task_id(t)) != -1);
		CHECK(write(fds[1], "x", 1) == 1);
		void *r = NULL;
		CHECK(weft_join(t, &r) == 0);
		CHECK((intptr_t)r == 'x');
	}
	close(fds[0]);
	close(fds[1]);
	return NULL;
}

Test(badinput, huge_timeouts)
{
	run_with(2, 0, huge_timeouts, NULL);
}

static void *sleep_forever(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)weft_sleep(UINT64_MAX);
}

static void *cancel_long_sleep(void *arg)
{
	(void)arg;
	weft_task *t;
	CHECK(weft_spawn(&t, sleep_forever, NULL) == 0);
	CHECK(weft_cancel(t) == 0);
	void *r;
	CHECK(weft_join(t, &r) == 0);
	CHECK((intptr_t)r == -ECANCELED);
	/* a negative deadline cast to unsigned is far in the future too */
	uint64_t old = weft_deadline_set((uint64_t)-5);
	CHECK(weft_sleep(1000) == 0);
	weft_deadline_set(old);
	return NULL;
}

Test(badinput, sleep_uint64_max_cancelled)
{
	run_with(2, 0, cancel_long_sleep, NULL);
}

/* weft_gen_resume from the generator's own body: -EBUSY. */
static void *gen_body(weft_gen *g, void *arg, void *in)
{
	(void)arg; (void)in;
	int *res = arg;
	*res = weft_gen_resume(g, NULL, NULL);
	*(res + 1) = weft_gen_close(g);
	return NULL;
}

Test(badinput, gen_reentry)
{
	weft_gen *g;
	int res[2] = { 1, 1 };
	cr_assert_eq(weft_gen_create(&g, gen_body, res, 0), 0);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), WEFT_GEN_DONE);
	cr_assert_eq(res[0], -EBUSY);
	cr_assert_eq(res[1], -EBUSY);
	cr_assert_eq(weft_gen_resume(g, NULL, NULL), -EPIPE, "resume after return");
	cr_assert_eq(weft_gen_close(g), 0);
	cr_assert_eq(weft_gen_resume(NULL, NULL, NULL), -EINVAL, "resume of NULL");
}
