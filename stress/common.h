/*
 * Shared plumbing of the stress programs: options, deadline, seeded RNG,
 * start barrier, progress watchdog, and the failure report.
 *
 * Every program takes --seed S --seconds N --workers W (and --count C where
 * a size matters), prints "PASS <name> seed=S ..." and exits 0, or prints
 * "FAIL <name> seed=S: <what>" plus a one-line reproduction command and
 * exits 1. Loops are bounded by their count and by the --seconds deadline;
 * the watchdog turns a hang (no progress for --stall seconds, default 60,
 * or past the deadline by that much) into a failure instead of a stuck run.
 */
#ifndef WEFT_STRESS_COMMON_H
#define WEFT_STRESS_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stress_opts {
	const char *name;
	uint64_t seed;
	double seconds;
	unsigned workers;        /* 0: the program's default list */
	unsigned long count;     /* 0: the program's default size  */
	double stall;            /* watchdog: seconds without progress */
};

extern struct stress_opts stress;

/* Parse argv (exits 2 on a bad option). Prints nothing. */
void stress_init(const char *name, int argc, char **argv);
/* Monotonic ns; true once the --seconds deadline has passed. */
uint64_t stress_now(void);
bool stress_expired(void);
/* Report and exit(1). Thread-safe; the first failure wins. */
__attribute__((noreturn, format(printf, 1, 2))) void stress_fail(const char *fmt, ...);
#define STRESS_CHECK(cond, ...) \
	do { if (!(cond)) stress_fail(__VA_ARGS__); } while (0)
/* Print the PASS line. */
__attribute__((format(printf, 1, 2))) void stress_pass(const char *fmt, ...);

/* Progress: bump it whenever work is done; the watchdog fails the run when
 * it stops moving for --stall seconds. Relaxed: only "did it change" matters. */
extern _Atomic uint64_t stress_progress;
static inline void stress_tick(void)
{
	atomic_fetch_add_explicit(&stress_progress, 1, memory_order_relaxed);
}
void stress_watchdog_start(void);
/* What the watchdog prints as context when it fires (may be NULL). */
extern void (*stress_watchdog_note)(void);

/* splitmix64: per-thread or per-coroutine state, seeded from --seed. */
static inline uint64_t stress_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}
static inline uint64_t stress_seed_for(uint64_t idx)
{
	uint64_t s = stress.seed ^ (idx * 0xD1B54A32D192ED03ull);
	return stress_rand(&s);
}

/* Resident set size in bytes (/proc/self/statm). */
uint64_t stress_rss(void);
/* CPUs in the affinity mask. */
unsigned stress_ncpu(void);
/* Open file descriptors of the process (/proc/self/fd), -1 if unreadable:
 * compare before and after a round to catch a leaked fd. */
int stress_count_fds(void);

#endif
