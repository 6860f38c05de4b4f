/*
 * examples/common/server.h: what the example servers (echo, http, kv) do
 * the same way: listen on an IPv4 address, accept in a coroutine that
 * spawns one coroutine per connection, and stop cleanly on SIGINT/SIGTERM
 * (weft_rt_destroy cancels the accept loop and every connection).
 * Public API only, like the examples themselves.
 */
#ifndef WEFT_EXAMPLE_SERVER_H
#define WEFT_EXAMPLE_SERVER_H

#include <signal.h>

#include "weft.h"

/* A listening TCP socket on addr:port (IPv4 dotted quad; port 0: any free
 * port), SO_REUSEADDR, backlog 4096, close-on-exec. Returns the fd and the
 * port it got in *bound; or prints "<prog>: <what went wrong>" and returns
 * -EINVAL for an address that is no IPv4 address, -errno otherwise. */
int ex_listen(const char *prog, const char *addr, int port, int *bound);

/* The accept loop, a coroutine: ex_accept_loop(&acceptor). Spawns
 * serve((void *)(intptr_t)fd) for each connection (closing the fd if the
 * spawn fails). When accept fails (-EMFILE, -ENFILE, -ENOMEM...) it says so
 * and retries 10 ms later, serving the connections it has meanwhile. Ends
 * when cancelled. `acceptor` must outlive the loop. */
struct ex_acceptor {
	const char *prog;
	int lfd;
	weft_fn serve;
};
void *ex_accept_loop(void *acceptor);

/* Before weft_rt_create: block SIGINT and SIGTERM in the calling thread
 * (the runtime's threads inherit the mask, so the signals wait for
 * ex_signals_wait) and ignore SIGPIPE (a peer gone mid-send is an error
 * return, not a death). */
void ex_signals_block(sigset_t *set);

/* Wait until SIGINT or SIGTERM arrives; returns its number (-1 if set
 * is not a valid signal set). */
int ex_signals_wait(const sigset_t *set);

#endif /* WEFT_EXAMPLE_SERVER_H */
