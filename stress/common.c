/* Shared plumbing of the stress programs; see common.h. */
#include "common.h"
#include "weft.h"

#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct stress_opts stress = { .seconds = 10, .stall = 60 };
_Atomic uint64_t stress_progress;
void (*stress_watchdog_note)(void);

static uint64_t deadline_ns;
static char repro[1024];
/* The first failure prints, later ones wait to be killed by its exit.
 * Relaxed exchange: nothing is published through it. */
static _Atomic int failed;

uint64_t stress_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool stress_expired(void)
{
	return stress_now() >= deadline_ns;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--seed S] [--seconds N] [--workers W] [--count C] [--stall N]\n",
	        argv0);
	exit(2);
}

void stress_init(const char *name, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seed", required_argument, 0, 's' },
		{ "seconds", required_argument, 0, 't' },
		{ "workers", required_argument, 0, 'w' },
		{ "count", required_argument, 0, 'c' },
		{ "stall", required_argument, 0, 'l' },
		{ 0, 0, 0, 0 },
	};
	bool seeded = false;
	stress.name = name;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': stress.seed = strtoull(optarg, NULL, 0); seeded = true; break;
		case 't': stress.seconds = atof(optarg); break;
		case 'w': stress.workers = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'c': stress.count = strtoul(optarg, NULL, 0); break;
		case 'l': stress.stall = atof(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc || stress.seconds < 0)
		usage(argv[0]);
	if (!seeded)
		stress.seed = stress_now() ^ ((uint64_t)getpid() << 32);
	deadline_ns = stress_now() + (uint64_t)(stress.seconds * 1e9);
	int n = snprintf(repro, sizeof repro, "%s --seed %" PRIu64 " --seconds %g", argv[0],
	                 stress.seed, stress.seconds);
	if (stress.workers)
		n += snprintf(repro + n, sizeof repro - (size_t)n, " --workers %u", stress.workers);
	if (stress.count)
		snprintf(repro + n, sizeof repro - (size_t)n, " --count %lu", stress.count);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

void stress_fail(const char *fmt, ...)
{
	if (atomic_exchange_explicit(&failed, 1, memory_order_relaxed)) {
		for (;;)
			pause();
	}
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	const char *p = getenv("WEFT_PERTURB"), *f = getenv("WEFT_FAULT");
	fprintf(stderr, "FAIL %s seed=%" PRIu64 ": %s\n", stress.name, stress.seed, msg);
	fprintf(stderr, "  repro: %s%s%s%s%s%s%s\n", p ? "WEFT_PERTURB=" : "", p ? p : "",
	        p ? " " : "", f ? "WEFT_FAULT=" : "", f ? f : "", f ? " " : "", repro);
	printf("FAIL %s seed=%" PRIu64 "\n", stress.name, stress.seed);
	fflush(NULL);
	_exit(1);
}

void stress_pass(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	printf("PASS %s seed=%" PRIu64 " %s\n", stress.name, stress.seed, msg);
	fflush(stdout);
}

static void *watchdog(void *arg)
{
	(void)arg;
	uint64_t last = atomic_load_explicit(&stress_progress, memory_order_relaxed);
	uint64_t since = stress_now();
	uint64_t stall = (uint64_t)(stress.stall * 1e9);
	for (;;) {
		usleep(100 * 1000);
		uint64_t now = stress_now(), p = atomic_load_explicit(&stress_progress, memory_order_relaxed);
		if (p != last) {
			last = p;
			since = now;
		}
		if (now - since > stall || now > deadline_ns + 4 * stall) {
			if (stress_watchdog_note)
				stress_watchdog_note();
			/* What every coroutine waits for: the first thing to read
			 * when a run hangs. */
			fprintf(stderr, "%s: watchdog: coroutines at the stall:\n", stress.name);
			weft_dump(stderr);
			stress_fail("no progress for %.0f s (progress counter %" PRIu64 "): hang or lost wake-up",
			            (double)(now - since) / 1e9, p);
		}
	}
	return NULL;
}

void stress_watchdog_start(void)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, watchdog, NULL) != 0)
		stress_fail("cannot start the watchdog thread");
	pthread_attr_destroy(&a);
}

uint64_t stress_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

unsigned stress_ncpu(void)
{
	cpu_set_t s;
	if (sched_getaffinity(0, sizeof s, &s) == 0)
		return (unsigned)CPU_COUNT(&s);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int stress_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;   /* the directory's own fd */
}
