/*
 * src/util.h: the two helpers every layer of the library needs, written once.
 *
 * weft__container_of(p, type, member): the record that embeds *p as member
 *   (a timer node in its task, a ring inside its worker, an op's parts in the
 *   op). Linux's idiom, without the statement expression.
 *
 * weft__escape_name: a coroutine's name as weft prints it (weft_dump, the
 *   starvation line, the stack overflow message): a name is the program's
 *   data and may hold any byte, so a control byte could start a forged line
 *   (a newline) or reach a terminal (an escape sequence), and a quote could
 *   end the quoted name early. Those become C escapes: \n \t \r, \\ and \",
 *   others \xHH; bytes from 0x80 up are kept (UTF-8 names print as they
 *   are). Async-signal-safe.
 *
 * weft__futex_wait / weft__futex_wake: a private futex on a 32-bit atomic
 *   word, for the few places where a plain thread (not a coroutine) sleeps:
 *   weft_rt_run's caller, a thread parked on a channel or a lock. The wait
 *   takes an absolute CLOCK_MONOTONIC deadline (the clock of weft_now) and,
 *   like every
 *   futex wait, may return early (signal, spurious wake, the word changed):
 *   callers loop on their own condition.
 */
#ifndef WEFT_UTIL_H
#define WEFT_UTIL_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define weft__container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Append the escaped form of at most max bytes of name (NUL-terminated or
 * not) to buf[at..cap); an escape goes in whole or not at all. Returns the
 * new end. Any thread, signal handlers too. */
static inline size_t weft__escape_name(char *buf, size_t at, size_t cap, const char *name,
                                       size_t max)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < max && name[i]; i++) {
		unsigned char c = (unsigned char)name[i];
		char e[4];
		size_t n = 0;
		if (c == '\n' || c == '\t' || c == '\r' || c == '\\' || c == '"') {
			e[n++] = '\\';
			e[n++] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			e[n++] = '\\';
			e[n++] = 'x';
			e[n++] = hex[c >> 4];
			e[n++] = hex[c & 15];
		} else {
			e[n++] = (char)c;
		}
		if (at + n > cap)
			break;
		for (size_t k = 0; k < n; k++)
			buf[at++] = e[k];
	}
	return at;
}

/* Sleep while *word == val, until deadline (absolute CLOCK_MONOTONIC ns;
 * 0 or UINT64_MAX = none). Any plain thread. */
static inline void weft__futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline)
{
	struct timespec ts, *tsp = NULL;
	if (deadline && deadline != UINT64_MAX) {
		ts.tv_sec = (time_t)(deadline / 1000000000u);
		ts.tv_nsec = (long)(deadline % 1000000000u);
		tsp = &ts;
	}
	/* BITSET with all bits: the only futex wait that takes an absolute
	 * CLOCK_MONOTONIC timeout (the plain one is relative). */
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE, val, tsp, NULL,
	        FUTEX_BITSET_MATCH_ANY);
}

/* Wake up to n threads sleeping on word (INT_MAX: all). Any thread. */
static inline void weft__futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#endif /* WEFT_UTIL_H */
