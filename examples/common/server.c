/* examples/common/server.c: see server.h. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft/io.h"

int ex_listen(const char *prog, const char *addr, int port, int *bound)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "%s: bad IPv4 address '%s'\n", prog, addr);
		return -EINVAL;
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
		int err = errno;
		fprintf(stderr, "%s: listen on %s:%d: %s\n", prog, addr, port, strerror(err));
		if (lfd >= 0)
			close(lfd);
		return -err;
	}
	socklen_t sl = sizeof sa;
	if (getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0)
		*bound = ntohs(sa.sin_port);
	else
		*bound = port;
	return lfd;
}

void *ex_accept_loop(void *arg)
{
	const struct ex_acceptor *a = arg;
	for (;;) {
		int fd = weft_accept(a->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -ECANCELED)
			break;
		if (fd < 0) {
			fprintf(stderr, "%s: accept: %s\n", a->prog, weft_strerror(fd));
			if (weft_sleep(10 * 1000 * 1000) == -ECANCELED)
				break;
			continue;
		}
		if (weft_spawn(NULL, a->serve, (void *)(intptr_t)fd) < 0)
			close(fd);
	}
	return NULL;
}

void ex_signals_block(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int ex_signals_wait(const sigset_t *set)
{
	int sig = 0;
	return sigwait(set, &sig) == 0 ? sig : -1;
}
