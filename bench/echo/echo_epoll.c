/*
 * echo-epoll: the hand-written C baseline of the echo benchmark
 * (bench/weft_bench_echo.c).
 *
 *   echo-epoll --port P [--threads N] [--addr 127.0.0.1]
 *
 * N threads (default: one per CPU in the affinity mask), each with its own
 * listening socket on the same port (SO_REUSEPORT: the kernel spreads new
 * connections over them) and its own level-triggered epoll set. A thread
 * accepts on its socket, reads whatever a connection sends and writes it back;
 * bytes that do not fit in the socket buffer wait in the connection's buffer
 * and the connection switches from EPOLLIN to EPOLLOUT until they are gone.
 * TCP_NODELAY on every connection. Runs until SIGINT/SIGTERM (default action:
 * the process ends; nothing needs saving).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384

struct conn {
	int fd;
	size_t off, len;         /* pending bytes buf[off..len) still to write */
	char buf[BUF];
};

static int port = -1;
static const char *addr = "127.0.0.1";

static int listener(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, addr, &sa.sin_addr);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void drop(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Write the pending bytes; 0 when all are out, 1 when the socket is full,
 * -1 when the connection is broken. */
static int flush(struct conn *c)
{
	while (c->off < c->len) {
		ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (w < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : errno == EINTR ? 1 : -1;
		c->off += (size_t)w;
	}
	c->off = c->len = 0;
	return 0;
}

static void *worker(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("echo-epoll: epoll_create1");
		exit(1);
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("echo-epoll: epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				/* Level-triggered: one accept per event is enough, the
				 * next epoll_wait reports the rest. */
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;   /* EAGAIN (another thread won), EMFILE: retry later */
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				c = malloc(sizeof *c);
				if (!c) {
					close(fd);
					continue;
				}
				c->fd = fd;
				c->off = c->len = 0;
				struct epoll_event ce = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce)) {
					close(fd);
					free(c);
				}
				continue;
			}
			if (c->len) {
				/* Waiting for EPOLLOUT with bytes pending. */
				int f = flush(c);
				if (f < 0) {
					drop(ep, c);
				} else if (f == 0) {
					struct epoll_event ce = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
				}
				continue;
			}
			ssize_t r = recv(c->fd, c->buf, BUF, 0);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				drop(ep, c);
				continue;
			}
			if (r < 0)
				continue;
			c->off = 0;
			c->len = (size_t)r;
			int f = flush(c);
			if (f < 0) {
				drop(ep, c);
			} else if (f == 1) {
				struct epoll_event ce = { .events = EPOLLOUT, .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
			}
		}
	}
	return NULL;
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "echo-epoll: %s\n", why);
	fprintf(stderr, "usage: echo-epoll --port P [--threads N] [--addr 127.0.0.1]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long threads = 0;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage("missing value after the last option");
		char *end;
		if (!strcmp(argv[i], "--port")) {
			port = (int)strtol(argv[++i], &end, 10);
			if (*end || port < 1 || port > 65535)
				usage("--port must be 1..65535");
		} else if (!strcmp(argv[i], "--threads")) {
			threads = strtol(argv[++i], &end, 10);
			if (*end || threads < 1 || threads > 1024)
				usage("--threads must be 1..1024");
		} else if (!strcmp(argv[i], "--addr")) {
			addr = argv[++i];
		} else {
			usage("unknown option");
		}
	}
	if (port < 0)
		usage("--port is required");
	struct in_addr tmp;
	if (inet_pton(AF_INET, addr, &tmp) != 1)
		usage("--addr must be an IPv4 address");
	if (!threads) {
		cpu_set_t set;
		threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
	}
	/* Every listener is bound before any thread runs, so the server
	 * accepts on all of them once the first connection gets through. */
	int *lfd = calloc((size_t)threads, sizeof *lfd);
	if (!lfd)
		return 1;
	for (long t = 0; t < threads; t++) {
		lfd[t] = listener();
		if (lfd[t] < 0) {
			fprintf(stderr, "echo-epoll: listen on %s:%d: %s\n", addr, port, strerror(errno));
			return 1;
		}
	}
	for (long t = 1; t < threads; t++) {
		pthread_t th;
		int e = pthread_create(&th, NULL, worker, (void *)(intptr_t)lfd[t]);
		if (e) {
			fprintf(stderr, "echo-epoll: pthread_create: %s\n", strerror(e));
			return 1;
		}
	}
	fprintf(stderr, "echo-epoll: listening on %s:%d with %ld threads\n", addr, port, threads);
	worker((void *)(intptr_t)lfd[0]);
	return 0;
}
