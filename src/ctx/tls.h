/*
 * src/ctx/tls.h: thread-local variables that a coroutine may read or write
 * on either side of a switch.
 *
 * A coroutine may resume on another thread after any switch, and compilers
 * assume the thread pointer is constant within a function: a plain access
 * to a __thread variable (thread pointer + offset) may reuse a thread
 * pointer computed before a switch, inlined callers included, and touch the
 * old thread's copy. weft__tp() reads the thread pointer in a volatile asm
 * with a memory clobber: the compiler executes it anew at each use and
 * cannot assume two results equal. An initial-exec variable lies at the same
 * offset from every thread's pointer (the static TLS block), so each such
 * variable's offset is computed once (WEFT__TLS_OFFSET, a constructor),
 * before any thread can use it. The constructor has priority 101, the first
 * one left to programs, so it runs before any constructor of a program that
 * calls weft at load time (C++ static initialisers included); an offset not
 * yet set would read the thread's control block as a worker.
 *
 * Only x86-64 and AArch64 (WEFT__TLS_INLINE); elsewhere the users keep an
 * out-of-line accessor with a compiler barrier.
 */
#ifndef WEFT_CTX_TLS_H
#define WEFT_CTX_TLS_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define WEFT__TLS_INLINE 1

static inline char *weft__tp(void)
{
	char *tp;
#if defined(__x86_64__)
	__asm__ volatile("movq %%fs:0, %0" : "=r"(tp) : : "memory");  /* TCB self-pointer */
#else
	__asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp) : : "memory");
#endif
	return tp;
}

/* Define `off` (intptr_t) as the offset of the initial-exec __thread
 * variable `var` from the thread pointer, set by a load-time constructor. */
#define WEFT__TLS_OFFSET(off, var)                                          \
	intptr_t off;                                                       \
	__attribute__((constructor(101))) static void off##_init(void)      \
	{                                                                   \
		off = (char *)&(var) - (char *)__builtin_thread_pointer();  \
	}

/* The calling thread's copy of the variable at offset off, as type T *. */
#define WEFT__TLS_AT(T, off) ((T *)(weft__tp() + (off)))
#else
#define WEFT__TLS_INLINE 0
#endif

#endif /* WEFT_CTX_TLS_H */
