/*
 * Memory given back after a spike (src/sched/trim.c, task.c's record trim,
 * ctx/stack.c's stack trim): the policy's arithmetic, record slabs trimmed
 * and revived with wait numbers above their past, weft_rt_trim and the
 * pool figures of weft_rt_stats, WEFT_RT_NO_TRIM, and the monitor's policy
 * giving a spike back on its own.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "sched/rt.h"

static weft_rt *make_rt(unsigned workers, unsigned flags)
{
	weft_rt *rt;
	int err = weft_rt_create(&rt, &(struct weft_config){ .workers = workers, .flags = flags });
	cr_assert_eq(err, 0, "weft_rt_create: %s", weft_strerror(err));
	return rt;
}

static struct weft_stats stats_of(weft_rt *rt)
{
	struct weft_stats st;
	cr_assert_eq(weft_rt_stats(rt, &st, NULL, 0), 0);
	return st;
}

/* ------------------------------------------------------------ policy --- */

Test(trim, keep_covers_a_return_to_the_peak_plus_slack)
{
	cr_assert_eq(weft__trim_keep(0, 0), 64u, "the slack, at least");
	cr_assert_eq(weft__trim_keep(1000, 1000), 64u, "at the peak: only the slack");
	cr_assert_eq(weft__trim_keep(0, 1000000), 1000000u + 62500u, "peak/16 above 64");
	cr_assert_eq(weft__trim_keep(400000, 1000000), 600000u + 62500u);
	cr_assert_eq(weft__trim_keep(5000, 10), 312u,
	             "a peak below the live count is the live count");
}

Test(trim, the_peak_covers_one_to_two_windows)
{
	const uint64_t s = 1000000000ull;   /* WEFT__TRIM_WINDOW_NS */
	struct weft__trim tr = { 0 };
	weft__trim_sample(&tr, 100, 10 * s);
	cr_assert_eq(weft__trim_peak(&tr), 100u);
	weft__trim_sample(&tr, 10, 10 * s + s / 2);
	cr_assert_eq(weft__trim_peak(&tr), 100u, "same window");
	weft__trim_sample(&tr, 5, 11 * s + s / 10);
	cr_assert_eq(weft__trim_peak(&tr), 100u, "the previous window still counts");
	weft__trim_sample(&tr, 7, 12 * s + s / 5);
	cr_assert_eq(weft__trim_peak(&tr), 7u, "two windows on, the spike is gone");
	weft__trim_sample(&tr, 50, 12 * s + s / 2);
	cr_assert_eq(weft__trim_peak(&tr), 50u);
	weft__trim_sample(&tr, 3, 20 * s);
	cr_assert_eq(weft__trim_peak(&tr), 3u, "after a gap of many windows nothing is left");
}

/* ------------------------------------------------------------ spikes --- */

/* Enough for the record check below to mean something (more slabs than the
 * workers' caches can pin); TSan maps a shadow stack per fiber: fewer. */
#if defined(WEFT_TSAN)
#define SPIKE 10000u
#else
#define SPIKE 100000u
#endif

static weft_sem spike_sem;
static weft_wg spike_wg;
static _Atomic unsigned spike_arrived, spike_bad;

static void *spike_child(void *arg)
{
	atomic_fetch_add(&spike_arrived, 1);
	/* a few waits, so that the record's wait numbers move on */
	for (int i = 0; i < 3; i++)
		if (weft_sleep(1000) != 0)
			atomic_fetch_add(&spike_bad, 1);
	if (weft_sem_wait(&spike_sem) != 0)
		atomic_fetch_add(&spike_bad, 1);
	weft_wg_done(&spike_wg);
	return arg;
}

/* SPIKE coroutines alive at once, then all released and finished. */
static void *spike_main(void *arg)
{
	(void)arg;
	weft_sem_init(&spike_sem, 0);
	weft_wg_init(&spike_wg);
	cr_assert_eq(weft_wg_add(&spike_wg, SPIKE), 0);
	atomic_store(&spike_arrived, 0);
	for (unsigned i = 0; i < SPIKE; i++)
		cr_assert_eq(weft_spawn(NULL, spike_child, NULL), 0);
	/* bounded: every child gets to its wait on its own */
	while (atomic_load(&spike_arrived) < SPIKE)
		weft_sleep(100000);
	for (unsigned i = 0; i < SPIKE; i++)
		cr_assert_eq(weft_sem_post(&spike_sem), 0);
	cr_assert_eq(weft_wg_wait(&spike_wg), 0);
	return NULL;
}

static void spike(weft_rt *rt)
{
	cr_assert_eq(weft_rt_run(rt, spike_main, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&spike_bad), 0u);
}

Test(trim, weft_rt_trim_gives_a_spike_back_and_reuses_it)
{
	cr_assert_eq(weft_rt_trim(NULL), -EINVAL);
	/* no policy of its own: only weft_rt_trim gives anything back */
	weft_rt *rt = make_rt(2, WEFT_RT_NO_TRIM);
	spike(rt);
	struct weft_stats a = stats_of(rt);
	cr_assert_geq(a.stacks, SPIKE, "a stack per coroutine alive at once");
	cr_assert_geq(a.records, SPIKE);
	cr_assert_eq(a.stacks_cold, 0u);
	cr_assert_eq(a.records_cold, 0u);
	/* all but the workers' caches (16 stacks, 128 records each) */
	cr_assert_geq(a.stacks_free, a.stacks - 2 * 16 - 1);

	cr_assert_eq(weft_rt_trim(rt), 0);
	struct weft_stats b = stats_of(rt);
	cr_assert_eq(b.stacks, a.stacks, "trimmed stacks stay mapped");
	cr_assert_eq(b.records, a.records);
	cr_assert_eq(b.stacks_free, 0u);
	cr_assert_eq(b.stacks_cold, a.stacks_free);
	cr_assert_geq(b.stacks_trimmed, SPIKE - 2 * 16 - 1, "the used ones had pages to give");
	/* whole slabs only: the workers' caches pin at most 2 x 128 records,
	 * so at most that many slabs are kept, besides a partial last one */
	cr_assert_geq(b.records_cold + (2 * 128 + 1) * 256, b.records, "%llu of %llu trimmed",
	              (unsigned long long)b.records_cold, (unsigned long long)b.records);
	cr_assert_gt(b.records_cold, 0u);
	char line[1024];
	cr_assert_gt(weft_stats_format(&b, line, sizeof line), 0);
	char want[128];
	snprintf(want, sizeof want, " stacks=%llu stacks_free=0 stacks_cold=%llu ",
	         (unsigned long long)b.stacks, (unsigned long long)b.stacks_cold);
	cr_assert_not_null(strstr(line, want), "%s", line);

	/* The same spike again: served from the trimmed stacks and slabs,
	 * nothing new mapped. */
	spike(rt);
	struct weft_stats c = stats_of(rt);
	cr_assert_eq(c.stacks, a.stacks, "no new stack mapped: %llu, was %llu",
	             (unsigned long long)c.stacks, (unsigned long long)a.stacks);
	cr_assert_eq(c.records, a.records, "no new record slab");
	cr_assert_lt(c.stacks_cold, b.stacks_cold, "the trimmed stacks were taken again");
	cr_assert_lt(c.records_cold, b.records_cold, "the trimmed slabs were revived");
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

Test(trim, no_trim_flag_turns_the_policy_off)
{
	weft_rt *rt = make_rt(1, WEFT_RT_NO_TRIM);
	spike(rt);
	/* Longer than two windows and a monitor round (50 ms idle), after which
	 * the policy would have trimmed the spike (the_monitor_gives_a_spike_
	 * back): nothing must be. Timing can only hide a failure here (a
	 * monitor slower than this), never make one. */
	struct timespec ts = { 2, 600000000 };
	nanosleep(&ts, NULL);
	/* the monitor's round itself, called here: with the flag it does
	 * nothing (and touches no policy state, so it may run beside the
	 * monitor's own) */
	for (int i = 0; i < 3; i++)
		cr_assert(!weft__trim_tick(rt));
	struct weft_stats st = stats_of(rt);
	cr_assert_eq(st.stacks_cold, 0u);
	cr_assert_eq(st.records_cold, 0u);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	/* and the flag is known to weft_rt_create */
	weft_rt *r2;
	cr_assert_eq(weft_rt_create(&r2, &(struct weft_config){ .workers = 1, .flags = 0x80 }),
	             -EINVAL);
}

/* ------------------------------------------------------ wait numbers --- */

#define SEQ_N 1024u

static weft_task *seq_tasks[SEQ_N];
static struct { struct weft_task *rec; uint64_t seq; } seq_seen[SEQ_N];

static void *seq_child(void *arg)
{
	for (int i = 0; i < 3; i++)
		weft_sleep(1000);
	return arg;
}

static void *seq_round(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < SEQ_N; i++)
		cr_assert_eq(weft_spawn(&seq_tasks[i], seq_child, NULL), 0);
	for (unsigned i = 0; i < SEQ_N; i++) {
		cr_assert_eq(weft_join(seq_tasks[i], NULL), 0);
		/* the record is free now; on one worker, with nothing else
		 * running, nobody touches it before we read it */
		seq_seen[i].rec = seq_tasks[i];
		seq_seen[i].seq = seq_tasks[i]->wait_seq;
	}
	return NULL;
}

/* A new life's first wait number in rec, or 0 if rec was not handed out. */
static struct weft_task *seq_new[SEQ_N];
static uint64_t seq_first[SEQ_N];

static void *seq_probe_child(void *arg)
{
	return arg;
}

static void *seq_probe(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < SEQ_N; i++) {
		/* child-first: the child has run and returned when spawn comes
		 * back, so its record's wait_seq is where the new life began */
		cr_assert_eq(weft_spawn(&seq_new[i], seq_probe_child, NULL), 0);
		seq_first[i] = seq_new[i]->wait_seq;
	}
	for (unsigned i = 0; i < SEQ_N; i++)
		cr_assert_eq(weft_join(seq_new[i], NULL), 0);
	return NULL;
}

Test(trim, revived_records_keep_their_wait_numbers_above_the_past)
{
	weft_rt *rt = make_rt(1, WEFT_RT_NO_TRIM);
	cr_assert_eq(weft_rt_run(rt, seq_round, NULL, NULL), 0);
	for (unsigned i = 0; i < SEQ_N; i++)
		cr_assert_geq(seq_seen[i].seq, 3u, "each record waited three times");
	cr_assert_eq(weft_rt_trim(rt), 0);
	struct weft_stats st = stats_of(rt);
	cr_assert_gt(st.records_cold, 0u);
	/* the trimmed slabs' pages are gone */
	pthread_mutex_lock(&rt->pool_lock);
	unsigned ntrimmed = 0;
	for (struct weft__slab *s = rt->trimmed_slabs; s; s = s->next_part, ntrimmed++) {
		size_t len = s->n * sizeof(struct weft_task), ps = (size_t)sysconf(_SC_PAGESIZE);
		unsigned char v[64];
		cr_assert_leq(len / ps, sizeof v);
		cr_assert_eq(mincore(s->tasks, len, v), 0);
		for (size_t p = 0; p < len / ps; p++)
			cr_assert_eq(v[p] & 1, 0, "slab page %zu still resident", p);
	}
	pthread_mutex_unlock(&rt->pool_lock);
	cr_assert_gt(ntrimmed, 0u);

	cr_assert_eq(weft_rt_run(rt, seq_probe, NULL, NULL), 0);
	unsigned reused = 0;
	for (unsigned i = 0; i < SEQ_N; i++) {
		for (unsigned j = 0; j < SEQ_N; j++) {
			if (seq_seen[j].rec != seq_new[i])
				continue;
			reused++;
			cr_assert_geq(seq_first[i], seq_seen[j].seq,
			              "a record's wait numbers went back: %llu after %llu",
			              (unsigned long long)seq_first[i],
			              (unsigned long long)seq_seen[j].seq);
		}
	}
	cr_assert_gt(reused, SEQ_N / 2, "the probe ran on the trimmed records (%u)", reused);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}

/* ----------------------------------------------------------- monitor --- */

Test(trim, the_monitor_gives_a_spike_back, .timeout = 300)
{
	weft_rt *rt = make_rt(2, 0);
	spike(rt);
	struct weft_stats a = stats_of(rt);
	/* The policy keeps the peak's needs for one to two seconds, then trims
	 * in slices: wait for it, bounded (10 ms polls for at most 60 s times
	 * the setup's multiplier). Not a speed check: bench/park1m times it. */
	const char *m = getenv("WEFT_TIMEOUT_MULTIPLIER");
	long mult = m && atol(m) > 0 ? atol(m) : 1;
	struct weft_stats b;
	for (long i = 0; i < 6000 * mult; i++) {
		b = stats_of(rt);
		if (b.stacks_free <= 64 && b.records_cold > 0)
			break;
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	cr_assert_leq(b.stacks_free, 64u, "free stacks with pages left: %llu of %llu",
	              (unsigned long long)b.stacks_free, (unsigned long long)a.stacks_free);
	cr_assert_geq(b.stacks_cold, a.stacks_free - 64);
	cr_assert_gt(b.records_cold, 0u);
	cr_assert_eq(weft_rt_destroy(rt), 0);
}
