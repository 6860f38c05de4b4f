/*
 * What echo-load prints and weft-bench echo reads, in one place so neither
 * can ask for something the other does not write:
 *
 * - the percentiles of the latency CDF: echo-load prints its latency at each
 *   (cdf_us=P:V,...), and weft-bench echo takes the median of each over its
 *   runs;
 * - the marks of the measured window, printed (and flushed) by echo-load
 *   when the measured seconds begin and end; weft-bench echo samples CPU
 *   times when it reads each.
 */
#ifndef WEFT_BENCH_ECHO_PROTO_H
#define WEFT_BENCH_ECHO_PROTO_H

static const double echo_cdf_pcts[] = { 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100 };
#define ECHO_NCDF (sizeof echo_cdf_pcts / sizeof echo_cdf_pcts[0])

/* [0] the measured window begins, [1] it ends; each a whole line. */
static const char *const echo_window_marks[2] = { "# window start\n", "# window end\n" };

#endif
