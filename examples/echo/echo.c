/*
 * weft-echo: a TCP echo server, one coroutine per connection.
 *
 *   weft-echo --port P [--workers N] [--addr A] [--hog MS] [--stats]
 *
 * Listens on 127.0.0.1 (or A) and sends back whatever each client sends, until
 * the client closes. Every blocking call parks a coroutine, never a worker
 * thread: the accept loop and each connection look like plain blocking code.
 * Runs until SIGINT/SIGTERM, which end it cleanly: the runtime is destroyed
 * (every coroutine cancelled and joined) and the process exits 0.
 *
 * --hog MS adds one coroutine that burns CPU in bursts of MS milliseconds
 * with no blocking point inside a burst (no yield, no I/O), then sleeps 1 ms
 * (its only cancellation point, so shutdown can end it) and starts again, for
 * the server's whole life. While it computes it holds its worker; the
 * connections queued there are kept moving only by the runtime's defence
 * against starvation (other workers steal the held worker's queue). Compare
 * the echo latency (bench/echo/echo-load) with and without it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"
#include "server.h"

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	for (;;) {
		ssize_t n = weft_recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		if (weft_send_all(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0)
			break;
	}
	weft_close(fd);
	return NULL;
}

/* Bursts of CPU work of `ms` milliseconds each, separated by 1 ms sleeps. */
static _Atomic uint64_t hog_sink;

static void *hog(void *arg)
{
	uint64_t burst = (uint64_t)(uintptr_t)arg * 1000000ull;
	uint64_t x = 88172645463325252ull;
	weft_set_name("hog");   /* how the starvation monitor's reports name it */
	/* Bounded by the server's lifetime: weft_sleep returns -ECANCELED once
	 * weft_rt_destroy cancels us (SIGINT/SIGTERM). */
	for (;;) {
		uint64_t end = weft_now() + burst;
		while (weft_now() < end) {
			for (int i = 0; i < 1000; i++) {   /* xorshift: pure CPU */
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
			}
		}
		/* Relaxed: a sink so the loop is not optimised away; nobody
		 * reads it for ordering. */
		atomic_store_explicit(&hog_sink, x, memory_order_relaxed);
		if (weft_sleep(1000000) == -ECANCELED)
			break;
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: weft-echo --port P [--workers N] [--addr A] [--hog MS] [--stats]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = -1;
	unsigned workers = 0;
	const char *addr = "127.0.0.1";
	long hog_ms = 0;
	bool stats = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			char *end;
			port = (int)strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || port < 1 || port > 65535) {
				fprintf(stderr, "weft-echo: --port takes 1..65535\n");
				return 2;
			}
		}
		else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
			workers = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--addr") && i + 1 < argc)
			addr = argv[++i];
		else if (!strcmp(argv[i], "--hog") && i + 1 < argc) {
			char *end;
			hog_ms = strtol(argv[++i], &end, 10);
			if (*end || hog_ms < 1 || hog_ms > 60000) {
				fprintf(stderr, "weft-echo: --hog takes 1..60000 milliseconds\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--stats"))
			stats = true;
		else
			usage();
	}
	if (port < 0 || port > 65535)
		usage();

	int bound;
	int lfd = ex_listen("weft-echo", addr, port, &bound);
	if (lfd < 0)
		return lfd == -EINVAL ? 2 : 1;
	/* Signals wait for this thread (the runtime's threads inherit the
	 * mask); destroying the runtime then cancels the accept loop. */
	sigset_t set;
	ex_signals_block(&set);

	weft_rt *rt;
	struct weft_config cfg = { .workers = workers };
	int err = weft_rt_create(&rt, &cfg);
	if (err) {
		fprintf(stderr, "weft-echo: %s\n", weft_strerror(err));
		return 1;
	}
	struct ex_acceptor acceptor = { "weft-echo", lfd, serve };
	err = weft_rt_spawn(rt, NULL, ex_accept_loop, &acceptor);
	if (err) {
		fprintf(stderr, "weft-echo: spawn: %s\n", weft_strerror(err));
		return 1;
	}
	if (hog_ms) {
		err = weft_rt_spawn(rt, NULL, hog, (void *)(uintptr_t)hog_ms);
		if (err) {
			fprintf(stderr, "weft-echo: spawn hog: %s\n", weft_strerror(err));
			return 1;
		}
	}
	fprintf(stderr, "weft-echo: listening on %s:%d with %u workers%s\n", addr, bound,
		weft_rt_workers(rt), hog_ms ? " and a CPU hog" : "");
	ex_signals_wait(&set);
	if (stats) {
		struct weft_stats st;
		char line[512];
		if (weft_rt_stats(rt, &st, NULL, 0) == 0 &&
		    weft_stats_format(&st, line, sizeof line) >= 0)
			fprintf(stderr, "weft-echo: %s\n", line);
	}
	weft_rt_destroy(rt);
	close(lfd);
	return 0;
}
