/*
 * weft-bench: shared declarations of the scheduler benchmarks.
 *
 * Every benchmark follows its definition in weft_bench.c exactly (same counts as the peer
 * programs in bench/peers/), runs once per process, cold, and prints one line
 *   name=<bench> impl=weft workers=<n> value=<number> unit=<unit>
 * A wrong result (skynet sum, fib value, ring winner ...) is a failure: the
 * program says so on stderr and exits 1, so bench/run never reports the time
 * of a broken run.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdint.h>
#include <weft.h>

/* One benchmark: run with `workers` workers, return 0 and set *value, or a
 * negative errno / 1 on failure (message already printed). */
struct bench_def {
	const char *name;
	const char *unit;
	int single;          /* 1: one worker by default (switch, yield) */
	int (*run)(unsigned workers, double *value);
};

/* Creates a runtime of `workers` workers, runs fn(arg) as its main coroutine,
 * destroys the runtime. Returns 0 or -errno (printed). */
int bench_rt_run(unsigned workers, weft_fn fn, void *arg);

/* Print a failure and return 1 (for `return bench_fail(...)`). */
int bench_fail(const char *bench, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#if defined(WEFT_BENCH_HAVE_CHAN)
int bench_pingpong(unsigned workers, double *value);
int bench_ring(unsigned workers, double *value);
int bench_chan(unsigned workers, double *value);
#endif

/* A further figure of the benchmark now running (name, value, unit), printed
 * on a line of its own after the benchmark's own. At most 4 per run. */
void bench_extra(const char *name, double value, const char *unit);

#if defined(WEFT_BENCH_HAVE_PARK)
/* weft_bench_park.c: park1m, and the extra figures park1m.rss, park1m.back */
int bench_park1m(unsigned workers, double *value);
#endif

/* weft_bench_gen.c */
int bench_gen(unsigned workers, double *value);

#if defined(WEFT_BENCH_HAVE_ECHO)
/* `weft-bench echo [options]`: argv[0] is "echo". Returns the exit status. */
int bench_echo_main(int argc, char **argv);
#endif

#endif /* WEFT_BENCH_H */
