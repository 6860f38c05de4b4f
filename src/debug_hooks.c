/*
 * Test-only hooks (see debug_hooks.h): scheduling perturbation and fault
 * points. Compiled only into -Dperturb=true / -Dfault_injection=true builds.
 *
 * Configuration is read from the environment once per process (pthread_once,
 * so any thread may be the first caller, a worker included):
 *   WEFT_PERTURB="rate[,seed]"             rate in 1/1000 (default 50, 0 = off)
 *   WEFT_FAULT="rate[,seed[,substring]]"   rate in 1/1000 (default 0 = off);
 *                                          only points whose name contains
 *                                          substring fail (default: all)
 *   WEFT_FAULT_VERBOSE=1                   one line on stderr per injected fault
 *
 * Randomness: one xorshift64* state per thread (thread-local, no sharing, so
 * no atomics on the hot path), seeded from the env seed and a per-process
 * thread index handed out in first-call order. Thread start order is not
 * deterministic, so a run is reproducible in distribution, not bit for bit;
 * the seed still picks a different family of interleavings each time.
 *
 * Perturbation, at a hit: half the time sched_yield() (the OS may run another
 * worker right inside the critical window), otherwise a spin of 1..1024
 * pause instructions (a short delay that keeps the CPU). Both widen the
 * windows between the scheduler's atomic steps without changing semantics.
 */
#include "debug_hooks.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ck_pr.h>

struct hook_cfg {
	unsigned rate;        /* per 1000 calls */
	uint64_t seed;
};

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static struct hook_cfg perturb_cfg = { 50, 1 };
static struct hook_cfg fault_cfg = { 0, 1 };
static char fault_filter[64];           /* "" = every point */
static int fault_verbose;
/* Thread index for seeding. Relaxed: only uniqueness matters, nothing is
 * published through it. */
static _Atomic uint64_t thread_counter;

/* Parse "rate[,seed[,rest]]"; rest (may be NULL) gets what follows. */
static void parse(const char *s, struct hook_cfg *c, char *rest, size_t restlen)
{
	if (!s || !*s)
		return;
	char *end;
	unsigned long r = strtoul(s, &end, 10);
	c->rate = r > 1000 ? 1000 : (unsigned)r;
	if (*end != ',')
		return;
	c->seed = strtoull(end + 1, &end, 10);
	if (*end == ',' && rest) {
		snprintf(rest, restlen, "%s", end + 1);
	}
}

static void cfg_init(void)
{
	parse(getenv("WEFT_PERTURB"), &perturb_cfg, NULL, 0);
	parse(getenv("WEFT_FAULT"), &fault_cfg, fault_filter, sizeof fault_filter);
	const char *v = getenv("WEFT_FAULT_VERBOSE");
	fault_verbose = v && *v && *v != '0';
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;     /* xorshift64* (Vigna): fast, good enough here */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t seed_mix(uint64_t seed, uint64_t idx, uint64_t salt)
{
	uint64_t z = seed * 0x9E3779B97F4A7C15ull + idx * 0xBF58476D1CE4E5B9ull + salt;
	z ^= z >> 31;
	z *= 0x94D049BB133111EBull;
	z ^= z >> 29;
	return z ? z : 0x1234567ull;  /* xorshift must not start at 0 */
}


static uint64_t *state_for(uint64_t *st, const struct hook_cfg *c, uint64_t salt)
{
	if (!*st) {
		uint64_t idx = atomic_fetch_add_explicit(&thread_counter, 1, memory_order_relaxed);
		*st = seed_mix(c->seed, idx, salt);
	}
	return st;
}

#if defined(WEFT_PERTURB)
static _Thread_local uint64_t perturb_state;

void weft__perturb_slow(void)
{
	pthread_once(&cfg_once, cfg_init);
	if (!perturb_cfg.rate)
		return;
	uint64_t *st = state_for(&perturb_state, &perturb_cfg, 1);
	uint64_t r = rng_next(st);
	if (r % 1000 >= perturb_cfg.rate)
		return;
	if (r & (1ull << 40)) {
		sched_yield();
	} else {
		unsigned spins = 1 + (unsigned)((r >> 20) & 1023);
		for (unsigned i = 0; i < spins; i++)
			ck_pr_stall();
	}
}
#endif

#if defined(WEFT_FAULT_INJECTION)
static _Thread_local uint64_t fault_state;
/* Faults injected so far, process-wide. Relaxed: a count for the report. */
static _Atomic unsigned long faults_injected;

unsigned long weft__fault_injected(void)
{
	return atomic_load_explicit(&faults_injected, memory_order_relaxed);
}

bool weft__fault_enabled(void)
{
	pthread_once(&cfg_once, cfg_init);
	return fault_cfg.rate != 0;
}

bool weft__fault_slow(const char *point)
{
	pthread_once(&cfg_once, cfg_init);
	if (!fault_cfg.rate)
		return false;
	if (fault_filter[0] && !strstr(point, fault_filter))
		return false;
	uint64_t *st = state_for(&fault_state, &fault_cfg, 2);
	if (rng_next(st) % 1000 >= fault_cfg.rate)
		return false;
	atomic_fetch_add_explicit(&faults_injected, 1, memory_order_relaxed);
	if (fault_verbose) {
		char buf[128];
		int n = snprintf(buf, sizeof buf, "weft: injected fault at %s\n", point);
		if (n > 0)
			(void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	}
	return true;
}
#endif
