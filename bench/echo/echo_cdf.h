/*
 * The percentiles of the echo latency CDF: echo-load prints its latency at
 * each (cdf_us=P:V,...), and weft-bench echo takes the median of each over
 * its runs. One list for both, so neither can ask for a point the other
 * does not have.
 */
#ifndef WEFT_BENCH_ECHO_CDF_H
#define WEFT_BENCH_ECHO_CDF_H

static const double echo_cdf_pcts[] = { 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100 };
#define ECHO_NCDF (sizeof echo_cdf_pcts / sizeof echo_cdf_pcts[0])

#endif
