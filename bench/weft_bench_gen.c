/*
 * weft-bench: gen, ns per generator value (issue #5; defined here the way the
 * peers in bench/peers/ define it too).
 *
 *   gen   1 worker: a generator whose body yields 0, 1, ..., N-1 (N =
 *         10,000,000) is driven by a coroutine that resumes it until it
 *         returns and adds up the values; value = time from the first resume
 *         to the last / N. Values travel both ways, as with Python's send():
 *         each resume sends the count of values received so far (0 starts
 *         the body), the body adds up what it is sent and returns the total.
 *         Checks: the values sum to N(N-1)/2, the body's total is N(N+1)/2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "weft_bench.h"

#define GEN_VALUES 10000000u

struct gen_run { uint64_t t0, t1, sum, insum; int err; };

/* Yields 0..GEN_VALUES-1; adds up what the caller sends back; returns it. */
static void *gen_body(weft_gen *g, void *arg, void *in)
{
	(void)arg;
	uintptr_t insum = (uintptr_t)in;
	for (uintptr_t i = 0; i < GEN_VALUES; i++) {
		void *v;
		if (weft_gen_yield(g, (void *)i, &v) < 0)
			return NULL;
		insum += (uintptr_t)v;
	}
	return (void *)insum;
}

static void *gen_main(void *arg)
{
	struct gen_run *r = arg;
	weft_gen *g;
	int err = weft_gen_create(&g, gen_body, NULL, 0);
	if (err < 0) {
		r->err = err;
		return NULL;
	}
	uint64_t sum = 0, n = 0;
	void *out;
	r->t0 = weft_now();
	/* every resume sends the count of values received so far */
	while ((err = weft_gen_resume(g, (void *)(uintptr_t)n, &out)) == WEFT_GEN_YIELDED) {
		sum += (uintptr_t)out;
		n++;
	}
	r->t1 = weft_now();
	r->err = err < 0 ? err : 0;
	r->sum = n == GEN_VALUES ? sum : UINT64_MAX;
	r->insum = (uintptr_t)out;
	weft_gen_close(g);
	return NULL;
}

int bench_gen(unsigned workers, double *value)
{
	struct gen_run r = { 0, 0, 0, 0, 0 };
	if (bench_rt_run(workers, gen_main, &r))
		return 1;
	if (r.err)
		return bench_fail("gen", "%s", weft_strerror(r.err));
	const uint64_t n = GEN_VALUES;
	/* values 0..N-1; the ins are 0 (the start) + 1 + 2 + ... + N */
	if (r.sum != n * (n - 1) / 2)
		return bench_fail("gen", "sum %" PRIu64 ", want %" PRIu64, r.sum, n * (n - 1) / 2);
	if (r.insum != n * (n + 1) / 2)
		return bench_fail("gen", "sum sent %" PRIu64 ", want %" PRIu64, r.insum, n * (n + 1) / 2);
	*value = (double)(r.t1 - r.t0) / GEN_VALUES;
	return 0;
}
