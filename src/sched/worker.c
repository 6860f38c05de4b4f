/*
 * src/sched/worker.c: the bottom of src/sched, which every other file of it
 * may call: the thread's worker (worker.h) and weft__die (wait.h).
 */
#include "sched/worker.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__thread struct weft__worker *weft__tls_worker __attribute__((tls_model("initial-exec")));

#if WEFT__TLS_INLINE
WEFT__TLS_OFFSET(weft__tls_worker_off, weft__tls_worker)
#else
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noinline, noclone))
#endif
struct weft__worker *weft__worker_current(void)
{
	__asm__ volatile("" ::: "memory");
	return weft__tls_worker;
}
#endif

/* ANY (sched/wait.h). */
void weft__die(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "weft: %s\n", buf);
	abort();
}

