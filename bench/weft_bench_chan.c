/*
 * weft-bench: the channel benchmarks of ../shared/BENCH.md (pingpong, ring).
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
