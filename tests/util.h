/*
 * tests/util.h: what several test programs need and used to write out each
 * for itself: weft_dump's text, waiting (bounded) until a dump shows a
 * coroutine parked where a test expects it, and running a function in a
 * forked child with bounds on how long it may take.
 */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

/* weft_dump's output now, as a malloc'ed string (free it); NULL when
 * memory ran out. Any thread. */
static inline char *dump_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	weft_dump(f);
	fclose(f);
	return buf;
}

/* Whether weft_dump shows "<name>": parked, waiting for <what> <obj>,
 * trying again 1 ms apart (bounded: 5000 tries) so that the waiter gets to
 * park: with one worker at the caller's first sleep, with more on its own
 * worker meanwhile. From a coroutine (it sleeps with weft_sleep). */
static inline bool dump_shows(const char *name, const char *what, const void *obj)
{
	char want[160];
	snprintf(want, sizeof want, "\"%s\": parked, waiting for %s %p", name, what, obj);
	for (int tries = 0; tries < 5000; tries++) {
		if (tries)
			weft_sleep(1000000);
		char *buf = dump_text();
		bool found = buf && strstr(buf, want) != NULL;
		free(buf);
		if (found)
			return true;
	}
	return false;
}

/* Run fn in a forked child and return its wait status; -1 when it has not
 * ended after about 15 s (it is killed then). The child's alarm(alarm_s)
 * ends a hang sooner, so a broken child fails its test instead of stalling
 * the suite. Only stdout and stderr are flushed first, not every FILE: a
 * test may hold one's lock on purpose. From a plain thread (it sleeps the
 * thread while it waits). */
static inline int in_child(int (*fn)(void), unsigned alarm_s)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(alarm_s);
		_exit(fn());
	}
	int st = 0;
	for (int i = 0; i < 15000; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

#endif /* WEFT_TEST_UTIL_H */
