/*
 * weft-bench: the channel benchmarks (pingpong, ring; defined in weft_bench.c).
 * Built only when include/weft/chan.h declares the channel API (bench/meson.build
 * probes it), so the rest of weft-bench builds before channels exist.
 *
 *   pingpong  ns per round trip: two unbuffered channels, the driver does
 *             1,000,000 x { send(ping, v); v = recv(pong) }, the echoer answers
 *             x + 1; v must end at 1,000,000.
 *   ring      ns per hop: 503 coroutines, coroutine k receives from chan k-1
 *             and sends to chan k (mod 503); a token of 10,000,000 travels,
 *             decremented at each hop; the one that receives 0 wins and must be
 *             10,000,000 mod 503 + 1. The winner closes every channel, which
 *             ends the others' recv with -EPIPE.
 *   chan      ns per item (issue #5 asks for items/s: that is 1e9 / value;
 *             bench/run wants every figure as a time): 4 producers and 4
 *             consumers on one channel buffered for 1,024 items pass
 *             10,000,000 items (the values 1..N, each producer a quarter);
 *             once the producers are joined the main coroutine closes the
 *             channel and the consumers drain it until -EPIPE. value = time
 *             from before the first spawn to after the last join / N. Checks:
 *             N items received, their sum N(N+1)/2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "weft_bench.h"

static weft_chan *chan_or_die(const char *bench)
{
	weft_chan *ch;
	int err = weft_chan_create(&ch, sizeof(int64_t), 0);   /* unbuffered */
	if (err < 0) {
		bench_fail(bench, "weft_chan_create: %s", weft_strerror(err));
		exit(1);
	}
	return ch;
}

/* ------------------------------------------------------------ pingpong --- */

#define PINGPONG_ROUNDS 1000000

struct pingpong { weft_chan *ping, *pong; uint64_t t0, t1; int64_t v; };

static void *echoer(void *arg)
{
	struct pingpong *p = arg;
	int64_t x;
	int err;
	while ((err = weft_chan_recv(p->ping, &x)) == 0) {
		x++;
		if ((err = weft_chan_send(p->pong, &x)) < 0)
			break;
	}
	if (err != -EPIPE) {
		bench_fail("pingpong", "echoer: %s", weft_strerror(err));
		exit(1);
	}
	return NULL;
}

static void *pingpong_main(void *arg)
{
	struct pingpong *p = arg;
	weft_task *e;
	int err = weft_spawn(&e, echoer, p);
	if (err < 0) {
		bench_fail("pingpong", "weft_spawn: %s", weft_strerror(err));
		exit(1);
	}
	int64_t v = 0;
	p->t0 = weft_now();
	for (int i = 0; i < PINGPONG_ROUNDS; i++) {
		if ((err = weft_chan_send(p->ping, &v)) < 0 ||
		    (err = weft_chan_recv(p->pong, &v)) < 0) {
			bench_fail("pingpong", "round %d: %s", i, weft_strerror(err));
			exit(1);
		}
	}
	p->t1 = weft_now();
	p->v = v;
	weft_chan_close(p->ping);
	weft_join(e, NULL);
	return NULL;
}

int bench_pingpong(unsigned workers, double *value)
{
	struct pingpong p = { chan_or_die("pingpong"), chan_or_die("pingpong"), 0, 0, 0 };
	if (bench_rt_run(workers, pingpong_main, &p))
		return 1;
	weft_chan_destroy(p.ping);
	weft_chan_destroy(p.pong);
	if (p.v != PINGPONG_ROUNDS)
		return bench_fail("pingpong", "value %" PRId64 ", want %d", p.v, PINGPONG_ROUNDS);
	*value = (double)(p.t1 - p.t0) / PINGPONG_ROUNDS;
	return 0;
}

/* ---------------------------------------------------------------- ring --- */

#define RING_SIZE 503
#define RING_HOPS 10000000

struct ring {
	weft_chan *ch[RING_SIZE];   /* ch[k]: from member k+1 to member k+2 (1-based) */
	int winner;                 /* written by the winner before it closes     */
	uint64_t t0, t1;
};

struct member { struct ring *r; int id; };   /* id 1..RING_SIZE */

static void *ring_member(void *arg)
{
	const struct member *m = arg;
	struct ring *r = m->r;
	weft_chan *in = r->ch[(m->id - 2 + RING_SIZE) % RING_SIZE];
	weft_chan *out = r->ch[m->id - 1];
	int64_t token;
	int err;
	for (;;) {
		if ((err = weft_chan_recv(in, &token)) < 0)
			break;
		if (token == 0) {
			r->t1 = weft_now();
			r->winner = m->id;
			/* The join in ring_main orders these writes before the reads. */
			for (int k = 0; k < RING_SIZE; k++)
				weft_chan_close(r->ch[k]);
			return NULL;
		}
		token--;
		if ((err = weft_chan_send(out, &token)) < 0)
			break;
	}
	if (err != -EPIPE) {
		bench_fail("ring", "member %d: %s", m->id, weft_strerror(err));
		exit(1);
	}
	return NULL;
}

static void *ring_main(void *arg)
{
	struct ring *r = arg;
	static struct member m[RING_SIZE];
	static weft_task *t[RING_SIZE];
	for (int k = 0; k < RING_SIZE; k++) {
		m[k] = (struct member){ r, k + 1 };
		int err = weft_spawn(&t[k], ring_member, &m[k]);
		if (err < 0) {
			bench_fail("ring", "weft_spawn: %s", weft_strerror(err));
			exit(1);
		}
	}
	int64_t token = RING_HOPS;
	r->t0 = weft_now();
	/* member 1 receives from the channel of member RING_SIZE */
	int err = weft_chan_send(r->ch[RING_SIZE - 1], &token);
	if (err < 0) {
		bench_fail("ring", "first send: %s", weft_strerror(err));
		exit(1);
	}
	for (int k = 0; k < RING_SIZE; k++)
		weft_join(t[k], NULL);
	return NULL;
}

int bench_ring(unsigned workers, double *value)
{
	static struct ring r;
	for (int k = 0; k < RING_SIZE; k++)
		r.ch[k] = chan_or_die("ring");
	if (bench_rt_run(workers, ring_main, &r))
		return 1;
	for (int k = 0; k < RING_SIZE; k++)
		weft_chan_destroy(r.ch[k]);
	if (r.winner != RING_HOPS % RING_SIZE + 1)
		return bench_fail("ring", "winner %d, want %d", r.winner, RING_HOPS % RING_SIZE + 1);
	*value = (double)(r.t1 - r.t0) / RING_HOPS;
	return 0;
}

/* ---------------------------------------------------------------- chan --- */

#define CHAN_PRODUCERS 4
#define CHAN_CONSUMERS 4
#define CHAN_CAP       1024
#define CHAN_ITEMS     10000000u

struct mpmc {
	weft_chan *ch;
	uint64_t t0, t1;
	struct { uint64_t n, sum; } got[CHAN_CONSUMERS];   /* one per consumer */
};

struct mpmc_part { struct mpmc *m; int id; };

static void *chan_producer(void *arg)
{
	const struct mpmc_part *p = arg;
	const int64_t per = CHAN_ITEMS / CHAN_PRODUCERS;
	for (int64_t v = p->id * per + 1; v <= (p->id + 1) * per; v++) {
		int err = weft_chan_send(p->m->ch, &v);
		if (err < 0) {
			bench_fail("chan", "producer %d: %s", p->id, weft_strerror(err));
			exit(1);
		}
	}
	return NULL;
}

static void *chan_consumer(void *arg)
{
	const struct mpmc_part *p = arg;
	uint64_t n = 0, sum = 0;
	int64_t v;
	int err;
	while ((err = weft_chan_recv(p->m->ch, &v)) == 0) {
		n++;
		sum += (uint64_t)v;
	}
	if (err != -EPIPE) {
		bench_fail("chan", "consumer %d: %s", p->id, weft_strerror(err));
		exit(1);
	}
	p->m->got[p->id].n = n;
	p->m->got[p->id].sum = sum;
	return NULL;
}

static void *chan_main(void *arg)
{
	struct mpmc *m = arg;
	struct mpmc_part pp[CHAN_PRODUCERS], cp[CHAN_CONSUMERS];
	weft_task *pt[CHAN_PRODUCERS], *ct[CHAN_CONSUMERS];
	int err = 0;
	m->t0 = weft_now();
	for (int i = 0; i < CHAN_CONSUMERS && !err; i++) {
		cp[i] = (struct mpmc_part){ m, i };
		err = weft_spawn(&ct[i], chan_consumer, &cp[i]);
	}
	for (int i = 0; i < CHAN_PRODUCERS && !err; i++) {
		pp[i] = (struct mpmc_part){ m, i };
		err = weft_spawn(&pt[i], chan_producer, &pp[i]);
	}
	if (err < 0) {
		bench_fail("chan", "weft_spawn: %s", weft_strerror(err));
		exit(1);
	}
	for (int i = 0; i < CHAN_PRODUCERS; i++)
		weft_join(pt[i], NULL);
	weft_chan_close(m->ch);
	/* the joins order the consumers' writes to m->got before our reads */
	for (int i = 0; i < CHAN_CONSUMERS; i++)
		weft_join(ct[i], NULL);
	m->t1 = weft_now();
	return NULL;
}

int bench_chan(unsigned workers, double *value)
{
	static struct mpmc m;
	_Static_assert(CHAN_ITEMS % CHAN_PRODUCERS == 0, "producers share the items evenly");
	int err = weft_chan_create(&m.ch, sizeof(int64_t), CHAN_CAP);
	if (err < 0)
		return bench_fail("chan", "weft_chan_create: %s", weft_strerror(err));
	if (bench_rt_run(workers, chan_main, &m))
		return 1;
	weft_chan_destroy(m.ch);
	uint64_t n = 0, sum = 0;
	for (int i = 0; i < CHAN_CONSUMERS; i++) {
		n += m.got[i].n;
		sum += m.got[i].sum;
	}
	const uint64_t want = (uint64_t)CHAN_ITEMS * (CHAN_ITEMS + 1) / 2;
	if (n != CHAN_ITEMS || sum != want)
		return bench_fail("chan", "%" PRIu64 " items summing to %" PRIu64
		                  ", want %u summing to %" PRIu64, n, sum, CHAN_ITEMS, want);
	*value = (double)(m.t1 - m.t0) / CHAN_ITEMS;
	return 0;
}
