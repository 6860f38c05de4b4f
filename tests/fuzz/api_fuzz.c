/*
 * libFuzzer target: the input bytes are a program of API calls run in one
 * fresh runtime per input.
 *
 * Byte 0 picks the worker count (1..3) and the spawn policy. Then each byte
 * is an opcode (low 4 bits) with an argument (high 4 bits), for the main
 * coroutine: spawn a joinable or detached child (which runs the next few
 * bytes as its own program), join, cancel, yield, sleep 0..15 us, channel
 * send/recv/try/close/select, mutex, wait group, a short deadline. At most
 * MAX_OPS opcodes and MAX_KIDS children per input, and every wait is bounded
 * (try variants, timeouts, sleeps of microseconds), so every input ends.
 *
 * Invariants checked (a failure traps, which libFuzzer reports):
 *   - every call returns one of the values its header documents;
 *   - every joinable child is joined exactly once (the rest at the end),
 *     and its join hands back the child's own tag;
 *   - every detached child finishes (a wait group), before destroy;
 *   - weft_rt_destroy returns 0; nothing leaks (ASan's leak check at exit
 *     and libFuzzer's per-input malloc/free balance, -detect_leaks).
 */
#include "weft.h"
#include "weft/chan.h"
#include "weft/sync.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS   96
#define MAX_KIDS  24
#define KID_OPS   8

#define REQUIRE(c) do { if (!(c)) { \
	fprintf(stderr, "api_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
	__builtin_trap(); } } while (0)

struct world {
	weft_chan *ch;          /* buffered, capacity 2 */
	weft_chan *rv;          /* unbuffered */
	weft_mutex mu;
	weft_wg detached;       /* counts detached children still running */
	long shared;            /* guarded by mu */
	const uint8_t *prog;
	size_t len;
};

struct kid {
	struct world *w;
	uintptr_t tag;
	uint8_t ops[KID_OPS];
	size_t n;
	bool detached;
};

static bool is_blocking_err(int r)
{
	return r == -ECANCELED || r == -ETIMEDOUT;
}

/* One opcode that children and main share. */
static void common_op(struct world *w, uint8_t op, uint8_t arg)
{
	int v = arg, r;
	switch (op) {
	case 3:
		weft_yield();
		break;
	case 4:
		r = weft_sleep((uint64_t)arg * 1000);
		REQUIRE(r == 0 || r == -ECANCELED);
		break;
	case 5:
		r = weft_chan_try_send(w->ch, &v);
		REQUIRE(r == 0 || r == -EAGAIN || r == -EPIPE);
		break;
	case 6:
		r = weft_chan_try_recv(w->ch, &v);
		REQUIRE(r == 0 || r == -EAGAIN || r == -EPIPE);
		REQUIRE(r != 0 || (v >= 0 && v < 16));
		break;
	case 7:
		r = weft_mutex_lock(&w->mu);
		REQUIRE(r == 0 || r == -ECANCELED);
		if (r == 0) {
			long before = w->shared++;
			if (arg & 1)
				weft_yield();       /* hold it across a switch */
			REQUIRE(w->shared == before + 1);
			REQUIRE(weft_mutex_unlock(&w->mu) == 0);
		}
		break;
	case 8: {
		uint64_t old = weft_deadline_set(weft_now() + (uint64_t)arg * 1000);
		r = weft_chan_recv(w->rv, &v);
		REQUIRE(r == 0 || r == -EPIPE || is_blocking_err(r));
		weft_deadline_set(old);
		break;
	}
	case 10:
		r = weft_chan_send_timeout(w->rv, &v, (uint64_t)arg * 1000);
		REQUIRE(r == 0 || r == -EPIPE || is_blocking_err(r));
		break;
	case 11: {
		int a = 0, b = arg;
		struct weft_select_case c[2] = {
			{ .chan = w->ch, .op = WEFT_SELECT_RECV, .elem = &a },
			{ .chan = arg & 1 ? w->rv : NULL, .op = WEFT_SELECT_SEND, .elem = &b },
		};
		r = weft_select(c, 2, arg & 2 ? 0 : (uint64_t)arg * 1000);
		REQUIRE(r == 0 || r == 1 || r == -EAGAIN || is_blocking_err(r));
		if (r >= 0)
			REQUIRE(c[r].result == 0 || c[r].result == -EPIPE);
		break;
	}
	default:
		break;
	}
	REQUIRE(weft_chan_len(w->ch) <= 2);
}

static void *kid_main(void *arg)
{
	struct kid *k = arg;
	for (size_t i = 0; i < k->n; i++)
		common_op(k->w, k->ops[i] & 15, k->ops[i] >> 4);
	uintptr_t tag = k->tag;
	if (k->detached) {
		struct world *w = k->w;
		free(k);
		REQUIRE(weft_wg_done(&w->detached) == 0);
	}
	return (void *)tag;
}

static void *main_prog(void *arg)
{
	struct world *w = arg;
	weft_task *kids[MAX_KIDS];
	struct kid *kidp[MAX_KIDS];
	bool joined[MAX_KIDS];
	unsigned nkids = 0, nspawned = 0, ops = 0;
	size_t i = 1;
	bool closed = false;

	while (i < w->len && ops++ < MAX_OPS) {
		uint8_t op = w->prog[i] & 15, a = w->prog[i] >> 4;
		i++;
		switch (op) {
		case 0:         /* spawn a child running the next bytes */
		case 9: {
			if (nspawned >= MAX_KIDS)
				break;
			struct kid *k = calloc(1, sizeof *k);
			REQUIRE(k);
			k->w = w;
			k->tag = 0x1000 + nspawned;
			k->n = a % (KID_OPS + 1);
			if (k->n > w->len - i)
				k->n = w->len - i;
			memcpy(k->ops, w->prog + i, k->n);
			i += k->n;
			k->detached = op == 9;
			nspawned++;
			if (k->detached) {
				REQUIRE(weft_wg_add(&w->detached, 1) == 0);
				int r = weft_spawn(NULL, kid_main, k);
				REQUIRE(r == 0);
			} else {
				int r = weft_spawn(&kids[nkids], kid_main, k);
				REQUIRE(r == 0);
				kidp[nkids] = k;
				joined[nkids] = false;
				nkids++;
			}
			break;
		}
		case 1:         /* join one not yet joined */
			for (unsigned j = 0; j < nkids; j++) {
				unsigned x = (a + j) % nkids;
				if (joined[x])
					continue;
				void *ret = NULL;
				REQUIRE(weft_join(kids[x], &ret) == 0);
				REQUIRE(ret == (void *)kidp[x]->tag);
				free(kidp[x]);
				joined[x] = true;
				break;
			}
			break;
		case 2:         /* cancel one not yet joined */
			if (nkids && !joined[a % nkids])
				REQUIRE(weft_cancel(kids[a % nkids]) == 0);
			break;
		case 12:        /* close the buffered channel, once */
			REQUIRE(weft_chan_close(w->ch) == (closed ? -EPIPE : 0));
			closed = true;
			break;
		case 13:
			REQUIRE(weft_join(weft_self(), NULL) == -EDEADLK);
			break;
		default:
			common_op(w, op, a);
			break;
		}
	}
	/* Every joinable child exactly once. */
	for (unsigned j = 0; j < nkids; j++) {
		if (joined[j])
			continue;
		void *ret = NULL;
		REQUIRE(weft_join(kids[j], &ret) == 0);
		REQUIRE(ret == (void *)kidp[j]->tag);
		free(kidp[j]);
	}
	/* Detached children: none may be left parked forever (their waits are
	 * all bounded), so this wait ends. */
	REQUIRE(weft_wg_wait(&w->detached) == 0);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct weft_config cfg = {
		.workers = 1 + data[0] % 3,
		.flags = data[0] & 0x10 ? WEFT_RT_PARENT_FIRST : 0,
	};
	weft_rt *rt;
	int err = weft_rt_create(&rt, &cfg);
	REQUIRE(err == 0);
	struct world w = { .prog = data, .len = size };
	REQUIRE(weft_chan_create(&w.ch, sizeof(int), 2) == 0);
	REQUIRE(weft_chan_create(&w.rv, sizeof(int), 0) == 0);
	weft_mutex_init(&w.mu);
	weft_wg_init(&w.detached);
	REQUIRE(weft_rt_run(rt, main_prog, &w, NULL) == 0);
	REQUIRE(weft_rt_destroy(rt) == 0);
	weft_chan_destroy(w.ch);
	weft_chan_destroy(w.rv);
	return 0;
}
