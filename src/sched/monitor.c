/*
 * src/sched/monitor.c: the monitor thread (Go's sysmon, much reduced).
 *
 * Every few milliseconds (5 while the runtime is busy, 50 while it is idle)
 * it samples each worker's switch counter and running coroutine, and acts
 * on what a worker cannot do for itself while one coroutine holds it:
 *   - starvation: a coroutine that has run past the threshold (in its worker
 *     thread's CPU time, so a preempted worker is not blamed) without
 *     reaching a blocking point is reported once, and an idle worker is
 *     woken to take over the held worker's queue (run.c, steal_work);
 *   - hostage rescue: the held worker's ring may hold completions that only
 *     its thread can post (below);
 *   - hostage timers: its due timers are fired here when every other worker
 *     is busy too (nobody searches);
 *   - stranded work: work queued on some worker while others sleep and
 *     nobody searches (a lone spawn continuation behind a long child wakes
 *     nobody, run.c; a notify_local that lost its race) wakes one idle
 *     worker;
 *   - SIGQUIT dumps (introspect.c) are printed from here, not from the
 *     handler.
 * It costs nothing on the workers' paths. It sleeps on monitor_cond under
 * monitor_lock, which also guards monitor_stop and the starvation log; no
 * other protocol uses that lock.
 */
#include "sched/rt.h"
#include "sched/clock.h"
#include "sched/idle.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ANY. */
WEFT_API void weft_rt_set_starvation(weft_rt *rt, uint64_t threshold_ns,
                                     void (*log)(const char *line, void *arg), void *arg)
{
	if (!rt)
		return;
	pthread_mutex_lock(&rt->monitor_lock);
	rt->starve_log = log;
	rt->starve_arg = arg;
	pthread_mutex_unlock(&rt->monitor_lock);
	atomic_store_explicit(&rt->starve_ns, threshold_ns, memory_order_relaxed);
}

/* ------------------------------------------------------------ rescue --- */

/*
 * Hostage rescue: completions of a worker held by a coroutine that does not
 * switch (see "Rescue" in src/io/ring.c and WEFT_RT_NO_RESCUE_SIGNAL).
 *
 * The monitor, on seeing the same run at two samples (5 ms apart while
 * busy), asks weft__ring_hostage. When only the owner's thread can move the
 * ring on, it sets w->rescue_req and sends SIGURG to that thread; the
 * handler flushes the ring (weft__ring_flush_signal) and bumps rescue_acks.
 * The monitor waits for the ack (bounded: 2 ms; the thread may be
 * descheduled, and then the next sample tries again), then reaps the CQ
 * itself: the callbacks wake the waiting coroutines through the injection
 * queue, and idle workers run them.
 *
 * SIGURG, as Go uses it: ignored by default, rarely used by programs (it
 * reports out-of-band socket data only to a process that asked with
 * F_SETOWN). A SIGURG the handler did not ask for (rescue_req clear) goes to
 * the handler we replaced.
 */
static struct sigaction rescue_prev;
static bool rescue_installed;
static pthread_once_t rescue_once = PTHREAD_ONCE_INIT;

/* SIGNAL: on a worker thread (ours), or any thread (someone else's SIGURG). */
static void rescue_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	struct weft__worker *w = weft__tls_worker;
	/* acquire: pairs with the monitor's release store of the request. */
	if (w && atomic_exchange_explicit(&w->rescue_req, 0, memory_order_acquire)) {
		weft__ring_flush_signal(&w->ring);
		/* release: the CQEs the flush posted are in the CQ before the
		 * monitor, acquiring the ack, reaps. */
		atomic_fetch_add_explicit(&w->rescue_acks, 1, memory_order_release);
	} else if (rescue_prev.sa_flags & SA_SIGINFO) {
		if (rescue_prev.sa_sigaction)
			rescue_prev.sa_sigaction(sig, si, uc);
	} else if (rescue_prev.sa_handler != SIG_DFL && rescue_prev.sa_handler != SIG_IGN) {
		rescue_prev.sa_handler(sig);
	}
	errno = saved;
}

static void rescue_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = rescue_handler;
	/* SA_RESTART: a system call the hog makes itself restarts where it can;
	 * SA_ONSTACK: the worker's alternate stack (the overflow handler's) when
	 * the coroutine's own is nearly used up. */
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	rescue_installed = sigaction(SIGURG, &sa, &rescue_prev) == 0;
}

/* MONITOR, without monitor_lock. */
static void rescue_ring(struct weft_rt *rt, struct weft__worker *w, unsigned hostage)
{
	if ((hostage & WEFT__HOSTAGE_OWNER) && !(rt->flags & WEFT_RT_NO_RESCUE_SIGNAL)) {
		pthread_once(&rescue_once, rescue_install);
		/* acquire: pairs with the handler's release bump (below too). */
		uint32_t acks = atomic_load_explicit(&w->rescue_acks, memory_order_acquire);
		/* release: see rescue_handler. */
		atomic_store_explicit(&w->rescue_req, 1, memory_order_release);
		if (rescue_installed && pthread_kill(w->thread, SIGURG) == 0) {
			for (int i = 0; i < 40; i++) {
				if (atomic_load_explicit(&w->rescue_acks, memory_order_acquire) != acks)
					break;
				struct timespec ts = { 0, 50000 };     /* 50 us, 2 ms at most */
				nanosleep(&ts, NULL);
			}
		}
	}
	weft__ring_rescue(&w->ring);
}

/* The trim policy's round (trim.c): its system calls run without
 * monitor_lock. Returns true while memory is left to give back. MONITOR,
 * holding monitor_lock. */
static bool trim_round(struct weft_rt *rt)
{
	pthread_mutex_unlock(&rt->monitor_lock);
	bool more = weft__trim_tick(rt);
	pthread_mutex_lock(&rt->monitor_lock);
	return more;
}

/* MONITOR: the thread's body. */
static void *monitor_main(void *arg)
{
	struct weft_rt *rt = arg;
	unsigned n = rt->nworkers;
	uint64_t *last_sw = calloc(n, sizeof *last_sw);
	uint64_t *since = calloc(n, sizeof *since);
	uint64_t *reported = calloc(n, sizeof *reported);
	uint64_t *held_sw = calloc(n, sizeof *held_sw);
	clockid_t *cpu = calloc(n, sizeof *cpu);
	if (!last_sw || !since || !reported || !held_sw || !cpu)
		goto out;
	for (unsigned i = 0; i < n; i++)
		held_sw[i] = UINT64_MAX;    /* no run seen yet */
	/* A run is measured in its worker thread's CPU time, not wall time: on
	 * a loaded machine the kernel preempts workers for tens of ms, and a
	 * coroutine that was not even running must not be reported as a hog.
	 * A worker whose CPU clock cannot be had falls back to wall time. */
	for (unsigned i = 0; i < n; i++)
		if (pthread_getcpuclockid(rt->workers[i].thread, &cpu[i]))
			cpu[i] = CLOCK_MONOTONIC;
	pthread_mutex_lock(&rt->monitor_lock);
	while (!rt->monitor_stop) {
		bool busy = false;
		atomic_store_explicit(&rt->coarse_ns, weft__coarse_now(), memory_order_relaxed);
		uint64_t limit = atomic_load_explicit(&rt->starve_ns, memory_order_relaxed);
		for (unsigned i = 0; i < n; i++) {
			struct weft__worker *w = &rt->workers[i];
			uint64_t sw = atomic_load_explicit(&w->stats.switches, memory_order_relaxed);
			struct weft_task *t = atomic_load_explicit(&w->running, memory_order_acquire);
			if (t)
				busy = true;
			/* The same run as at the last sample (a switch would have
			 * moved sw): its worker's ring may hold completions hostage. */
			bool held = t && sw == held_sw[i];
			held_sw[i] = sw;
			unsigned hostage = held ? weft__ring_hostage(&w->ring) : 0;
			if (hostage) {
				pthread_mutex_unlock(&rt->monitor_lock);
				rescue_ring(rt, w, hostage);
				pthread_mutex_lock(&rt->monitor_lock);
			}
			/* Its timers too, once overdue by WEFT__TIMER_HOSTAGE_NS:
			 * idle workers do that as they search (steal_work), but
			 * when every other worker is busy nobody searches. The
			 * woken go through the injection queue (we are no worker),
			 * earliest deadline first. Not with one worker: nobody
			 * could run them before it, and the injection queue would
			 * put them out of order with the timers it fires itself
			 * (one worker guarantees firing order; stress/timers-1w
			 * caught it when the soak's load made a preempted worker
			 * look held). */
			uint64_t due = held && n > 1 ? weft__timer_next(&w->timers) : UINT64_MAX;
			if (due != UINT64_MAX && due + WEFT__TIMER_HOSTAGE_NS <= weft__now()) {
				pthread_mutex_unlock(&rt->monitor_lock);
				weft__timer_run_try(&w->timers, weft__now(), WEFT__RUNQ_CAP);
				pthread_mutex_lock(&rt->monitor_lock);
			}
			if (!limit)
				continue;
			struct timespec cts;
			clock_gettime(cpu[i], &cts);
			uint64_t now = (uint64_t)cts.tv_sec * 1000000000u + (uint64_t)cts.tv_nsec;
			if (sw != last_sw[i] || !t) {
				last_sw[i] = sw;
				since[i] = now;
				continue;
			}
			if (now - since[i] < limit || reported[i] == sw)
				continue;
			reported[i] = sw;
			atomic_fetch_add_explicit(&w->stats.starved, 1, memory_order_relaxed);
			char line[256], name[32], shown[4 * 31 + 1];
			/* A sample (the coroutine may rename itself, the record be
			 * recycled); the record itself stays valid (slabs live until
			 * destroy). Escaped as weft_dump prints it (util.h). */
			weft__task_name_sample(t, name);
			shown[weft__escape_name(shown, 0, sizeof shown - 1, name, 31)] = 0;
			snprintf(line, sizeof line,
			         "weft: coroutine %llu \"%s\" has run for %.1f ms (CPU) on worker %u "
			         "without reaching a blocking point",
			         (unsigned long long)weft__task_id_sample(t), shown,
			         (double)(now - since[i]) / 1e6, i);
			/* Still the same run? Otherwise t may be a recycled record
			 * and the line torn: drop it, the next sample decides. */
			if (atomic_load_explicit(&w->stats.switches, memory_order_acquire) != sw)
				continue;
			void (*log)(const char *, void *) = rt->starve_log;
			void *larg = rt->starve_arg;
			pthread_mutex_unlock(&rt->monitor_lock);
			if (log)
				log(line, larg);
			else
				fprintf(stderr, "%s\n", line);
			weft__notify_work(rt);    /* let an idle worker take over its queue */
			pthread_mutex_lock(&rt->monitor_lock);
		}
		/* Stranded work: queued on some worker while others sleep and
		 * nobody searches (a lone spawn continuation behind a long child
		 * wakes nobody, see after_switch; a notify_local that lost its
		 * race). Wake one idle worker; it steals or parks again. */
		if (atomic_load_explicit(&rt->nidle, memory_order_relaxed) &&
		    !atomic_load_explicit(&rt->nsearching, memory_order_relaxed)) {
			bool stranded = false;
			for (unsigned i = 0; i < n && !stranded; i++)
				stranded = weft__runq_len(&rt->workers[i].runq) ||
				           weft__spawnq_nonempty(&rt->workers[i].spawnq);
			if (stranded) {
				pthread_mutex_unlock(&rt->monitor_lock);
				weft__notify_work(rt);
				pthread_mutex_lock(&rt->monitor_lock);
			}
		}
		if (weft__dump_requested()) {
			pthread_mutex_unlock(&rt->monitor_lock);
			weft_dump(stderr);
			pthread_mutex_lock(&rt->monitor_lock);
		}
		bool trimming = trim_round(rt);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);       /* monitor_cond's clock (rt.c) */
		/* 5 ms busy, 50 ms idle, 1 ms while memory is being given back */
		long step = trimming ? 1000000 : busy ? 5000000 : 50000000;
		ts.tv_nsec += step;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rt->monitor_cond, &rt->monitor_lock, &ts);
	}
	pthread_mutex_unlock(&rt->monitor_lock);
out:
	free(last_sw);
	free(since);
	free(reported);
	free(held_sw);
	free(cpu);
	return NULL;
}


/* THREAD (weft_rt_create). */
bool weft__monitor_start(struct weft_rt *rt)
{
	return pthread_create(&rt->monitor, NULL, monitor_main, rt) == 0;
}

/* THREAD (weft_rt_destroy). */
void weft__monitor_stop(struct weft_rt *rt)
{
	if (!rt->monitor_started)
		return;
	pthread_mutex_lock(&rt->monitor_lock);
	rt->monitor_stop = true;
	pthread_cond_broadcast(&rt->monitor_cond);
	pthread_mutex_unlock(&rt->monitor_lock);
	pthread_join(rt->monitor, NULL);
}
