/*
 * Shutdown with --count coroutines (default 100,000) still blocked, most of
 * them in I/O: recv on socketpairs that never get data (some through
 * weft_recv_timeout with an hour's timeout, so a linked timeout is in flight
 * too), read on pipes nobody writes, accept on a listening socket on
 * 127.0.0.1 nobody connects to, poll for input, and the rest in channel
 * receives, channel sends (full buffer) and hour-long sleeps. Many
 * coroutines share each fd (the fd limit is far below the coroutine count).
 * weft_rt_run's main returns with them all blocked, then weft_rt_destroy
 * must:
 *   - return (the watchdog turns a hang into a failure);
 *   - end every coroutine: each counts itself after its call returned, and
 *     every call must have returned -ECANCELED;
 *   - leave no op in the kernel: after destroy every socketpair and pipe
 *     gets one probe record and must give it back (a recv or read still
 *     held by a ring would take it);
 *   - leak nothing: the fd count is back to what it was before the round
 *     (ring fds, eventfds, our sockets), and under ASan the leak checker
 *     sees every stack and record freed.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NSOCK 64
#define NPIPE 16

enum kind { K_RECV, K_RECV_TMO, K_READ, K_ACCEPT, K_POLL, K_CHAN_RECV, K_CHAN_SEND, K_SLEEP,
	    K_NKIND };
static const char *const kind_name[K_NKIND] = { "recv", "recv_timeout", "read", "accept", "poll",
						"chan_recv", "chan_send", "sleep" };

static int sock[NSOCK][2], pip[NPIPE][2], lfd;
static weft_chan *rch, *sch;
/* Relaxed counters: read by main after weft_rt_destroy joined the workers. */
static _Atomic unsigned long ended, bad, bad_kind[K_NKIND];
static _Atomic long bad_res;

static void *blocked(void *arg)
{
	unsigned long i = (uintptr_t)arg;
	enum kind k = (enum kind)(i % K_NKIND);
	unsigned long x = 1;
	char buf[16];
	long r;
	switch (k) {
	case K_RECV: r = weft_recv(sock[i % NSOCK][0], buf, sizeof buf, 0); break;
	case K_RECV_TMO:
		r = weft_recv_timeout(sock[i % NSOCK][0], buf, sizeof buf, 0, 3600000000000ull);
		break;
	case K_READ: r = weft_read(pip[i % NPIPE][0], buf, sizeof buf, -1); break;
	case K_ACCEPT: r = weft_accept(lfd, NULL, NULL, SOCK_CLOEXEC); break;
	case K_POLL: r = weft_poll(sock[i % NSOCK][0], POLLIN); break;
	case K_CHAN_RECV: r = weft_chan_recv(rch, &x); break;
	case K_CHAN_SEND: r = weft_chan_send(sch, &x); break;
	default: r = weft_sleep(3600000000000ull); break;
	}
	if (r != -ECANCELED) {
		atomic_fetch_add_explicit(&bad, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&bad_kind[k], 1, memory_order_relaxed);
		atomic_store_explicit(&bad_res, r, memory_order_relaxed);
		if (k == K_ACCEPT && r >= 0)
			close((int)r);
	}
	atomic_fetch_add_explicit(&ended, 1, memory_order_relaxed);
	stress_tick();
	return NULL;
}

static void *spawner(void *arg)
{
	unsigned long n = (uintptr_t)arg;
	for (unsigned long i = 0; i < n; i++) {
		weft_task *t;
		/* every fourth joinable: destroy makes the handle invalid */
		int r = weft_spawn((i & 3) ? NULL : &t, blocked, (void *)(uintptr_t)i);
		STRESS_CHECK(r == 0, "spawn %lu: %s", i, weft_strerror(r));
		if ((i & 1023) == 0)
			stress_tick();
	}
	/* let the last ones reach their blocking call and submit */
	weft_yield();
	return NULL;
}

static void open_fds(void)
{
	for (int i = 0; i < NSOCK; i++)
		STRESS_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock[i]) == 0,
			     "socketpair: %s", strerror(errno));
	for (int i = 0; i < NPIPE; i++)
		STRESS_CHECK(pipe2(pip[i], O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	STRESS_CHECK(lfd >= 0, "socket: %s", strerror(errno));
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };   /* port 0 */
	STRESS_CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 16) == 0,
		     "bind/listen on 127.0.0.1: %s", strerror(errno));
}

/* After destroy: a probe through every socketpair and pipe must come back
 * (no read/recv of a ring still holds it); then close everything. */
static void probe_and_close(void)
{
	for (int i = 0; i < NSOCK + NPIPE; i++) {
		int *fd = i < NSOCK ? sock[i] : pip[i - NSOCK];
		char m[8] = "probe", b[16];
		STRESS_CHECK(write(fd[1], m, sizeof m) == sizeof m, "probe write: %s", strerror(errno));
		STRESS_CHECK(fcntl(fd[0], F_SETFL, O_NONBLOCK) == 0, "fcntl: %s", strerror(errno));
		ssize_t r = read(fd[0], b, sizeof b);
		STRESS_CHECK(r == sizeof m && memcmp(b, m, sizeof m) == 0,
			     "%s %d: the probe written after weft_rt_destroy did not come back (%zd%s%s): "
			     "an op of the destroyed runtime still reads it", i < NSOCK ? "socketpair" :
			     "pipe", i < NSOCK ? i : i - NSOCK, r, r < 0 ? ", " : "",
			     r < 0 ? strerror(errno) : "");
		close(fd[0]);
		close(fd[1]);
	}
	close(lfd);
}

int main(int argc, char **argv)
{
	stress_init("ioshutdown", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
#if defined(WEFT_TSAN)
	/* TSan maps a shadow stack and trace parts per fiber: 100,000 live
	 * coroutines ran it out of mappings (vm.max_map_count) in the soak,
	 * "ThreadSanitizer failed to allocate ... (error code: 12)". */
	unsigned long n = stress.count ? stress.count : 20000;
#else
	unsigned long n = stress.count ? stress.count : 100000;
#endif
	stress_watchdog_start();
	int fds0 = stress_count_fds();
	unsigned long rounds = 0;
	double worst_ms = 0;
	do {
		atomic_store_explicit(&ended, 0, memory_order_relaxed);
		open_fds();
		STRESS_CHECK(weft_chan_create(&rch, sizeof(unsigned long), 0) == 0 &&
			     weft_chan_create(&sch, sizeof(unsigned long), 0) == 0, "chan_create");
		weft_rt *rt;
		int r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers });
		STRESS_CHECK(r == 0, "weft_rt_create: %s", weft_strerror(r));
		r = weft_rt_run(rt, spawner, (void *)(uintptr_t)n, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		uint64_t t0 = stress_now();
		r = weft_rt_destroy(rt);
		STRESS_CHECK(r == 0, "weft_rt_destroy: %s", weft_strerror(r));
		double ms = (double)(stress_now() - t0) / 1e6;
		worst_ms = ms > worst_ms ? ms : worst_ms;
		stress_tick();
		unsigned long e = atomic_load_explicit(&ended, memory_order_relaxed);
		STRESS_CHECK(e == n, "round %lu: weft_rt_destroy returned with %lu of %lu coroutines "
			     "ended", rounds, e, n);
		unsigned long b = atomic_load_explicit(&bad, memory_order_relaxed);
		if (b) {
			char what[256];
			int m = 0;
			for (int k = 0; k < K_NKIND; k++)
				m += snprintf(what + m, sizeof what - (size_t)m, " %s=%lu", kind_name[k],
					      atomic_load_explicit(&bad_kind[k], memory_order_relaxed));
			stress_fail("round %lu: %lu blocked calls ended with something other than "
				    "-ECANCELED (last: %ld) by kind:%s", rounds, b,
				    atomic_load_explicit(&bad_res, memory_order_relaxed), what);
		}
		probe_and_close();
		weft_chan_destroy(rch);
		weft_chan_destroy(sch);
		int fds = stress_count_fds();
		STRESS_CHECK(fds == fds0, "round %lu: %d fds open after weft_rt_destroy and closing ours, "
			     "%d before the round", rounds, fds, fds0);
		rounds++;
		printf("  ioshutdown round %lu: %lu blocked coroutines destroyed in %.1f ms\n", rounds,
		       n, ms);
	} while (!stress_expired() && rounds < 1000);
	stress_pass("workers=%u coroutines=%lu rounds=%lu worst destroy %.1f ms", workers, n, rounds,
		    worst_ms);
	return 0;
}
