/*
 * Coroutine stacks: stack overflow reports and the per-thread alternate
 * signal stacks they need.
 *
 * Each coroutine thread has an alternate signal stack
 * (weft__stack_thread_init); the SIGSEGV handler, installed once per
 * process, checks si_addr against the guard of the stack this thread runs
 * (weft__stack_set_current). A hit prints
 *   weft: stack overflow in coroutine <id> "<name>" (stack <N> KiB)
 * with write(2) and aborts; anything else goes to the previous handler as
 * if we had not been there. -fstack-clash-protection (meson.build) makes
 * every large frame probe its pages in order, so it lands in the guard
 * instead of jumping over it.
 */
#include "ctx/stack.h"
#include "ctx/stack_map.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define pagesz weft__stack_pagesz

static size_t page_size;                  /* for the signal handler */

/* initial-exec: read from the signal handler, and written at every switch;
 * no __tls_get_addr (not async-signal-safe) and no lazy allocation. */
static __thread struct weft__stack *tls_current __attribute__((tls_model("initial-exec")));
static __thread void *tls_altstack __attribute__((tls_model("initial-exec")));
static __thread size_t tls_altstack_len __attribute__((tls_model("initial-exec")));
/* weft__stack_thread_init succeeded on this thread (with our alternate
 * stack or one that was there): later calls return at once. */
static __thread bool tls_ready __attribute__((tls_model("initial-exec")));
__thread const struct weft__stack *weft__gen_current __attribute__((tls_model("initial-exec")));

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static struct sigaction old_segv;
static int handler_err;

#if WEFT__TLS_INLINE
WEFT__TLS_OFFSET(weft__stack_current_off, tls_current)
#else
void weft__stack_set_current(struct weft__stack *s)
{
	tls_current = s;
}
#endif

static size_t fmt_u64(char *buf, uint64_t v)
{
	char tmp[24];
	size_t n = 0, i;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

static size_t put_str(char *buf, size_t at, size_t cap, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max && at < cap; i++)
		buf[at++] = s[i];
	return at;
}

static size_t fmt_hex(char *buf, uintptr_t v)
{
	char tmp[2 + 2 * sizeof v];
	size_t n = 0, i;
	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < n; i++)
		buf[2 + i] = tmp[n - 1 - i];
	return n + 2;
}

/* A number at buf[at], if it fits below cap (fmt_u64 and fmt_hex write
 * at most 20 and 18 characters); else nothing. */
static size_t put_u64(char *buf, size_t at, size_t cap, uint64_t v)
{
	return at + 20 <= cap ? at + fmt_u64(buf + at, v) : at;
}

static size_t put_hex(char *buf, size_t at, size_t cap, uintptr_t v)
{
	return at + 18 <= cap ? at + fmt_hex(buf + at, v) : at;
}

/* `coroutine <id> "<name>"` of a coroutine's stack, `generator 0x...
 * (body 0x...)` of a generator's. */
static size_t put_owner(char *buf, size_t n, size_t cap, const struct weft__stack *s)
{
	if (s->gen) {
		n = put_str(buf, n, cap, "generator ", 16);
		n = put_hex(buf, n, cap, (uintptr_t)s->gen);
		n = put_str(buf, n, cap, " (body ", 16);
		n = put_hex(buf, n, cap, (uintptr_t)s->gen_body);
		return put_str(buf, n, cap, ")", 1);
	}
	n = put_str(buf, n, cap, "coroutine ", 16);
	n = put_u64(buf, n, cap, s->owner_id);
	const char *name = s->owner_name;
	if (name && name[0]) {
		n = put_str(buf, n, cap, " \"", 2);
		n = weft__escape_name(buf, n, cap, name, 64);
		n = put_str(buf, n, cap, "\"", 1);
	}
	return n;
}

/* Async-signal-safe: formats by hand, one write(2). A coroutine's stack:
 *   weft: stack overflow in coroutine <id> "<name>" (stack <N> KiB)
 * a generator's, followed by who resumed it: the generators whose bodies
 * resumed it, innermost first (a few, then "..."), and then the coroutine
 * running on this thread, or a plain thread:
 *   weft: stack overflow in generator 0x... (body 0x...) (stack <N> KiB),
 *   resumed by coroutine <id> "<name>"
 * The line is cut, never overrun, when it does not fit the buffer. */
static void report_overflow(const struct weft__stack *s)
{
	char buf[512];
	size_t n = 0, cap = sizeof buf - 1;      /* room kept for the newline */
	n = put_str(buf, n, cap, "weft: stack overflow in ", 64);
	n = put_owner(buf, n, cap, s);
	n = put_str(buf, n, cap, " (stack ", 16);
	n = put_u64(buf, n, cap, s->size / 1024);
	n = put_str(buf, n, cap, " KiB)", 8);
	/* The resumers were each stored on this thread, by the resume that
	 * made the next one run: reading them here reads our own stores. */
	for (int depth = 0; s->gen; depth++) {
		n = put_str(buf, n, cap, ", resumed by ", 16);
		if (depth == 4) {
			n = put_str(buf, n, cap, "...", 3);
			break;
		}
		s = s->gen_resumer ? s->gen_resumer : tls_current;
		if (!s) {
			n = put_str(buf, n, cap, "a plain thread", 16);
			break;
		}
		n = put_owner(buf, n, cap, s);
	}
	buf[n++] = '\n';
	ssize_t w = write(2, buf, n);
	(void)w;
}

/* The fault at a lies in the guard page below s. */
static bool in_guard(const struct weft__stack *s, uintptr_t a)
{
	uintptr_t lo = (uintptr_t)s->lo;
	return a < lo && a >= lo - page_size;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	/* A generator's body runs on the generator's stack, above whatever
	 * coroutine resumed it: that stack is the one to look at first. */
	const struct weft__stack *g = weft__gen_current, *s = tls_current;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (si->si_code > 0 && ((g && in_guard(g, a)) || (s && in_guard(s, a)))) {
		report_overflow(g && in_guard(g, a) ? g : s);
		abort();
	}
	/* Not ours: the previous disposition, unchanged. */
	if (old_segv.sa_flags & SA_SIGINFO) {
		old_segv.sa_sigaction(sig, si, uc);
		return;
	}
	if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
		return;
	}
	/* Default action (the kernel treats an ignored fault as default too):
	 * restore it; a real fault re-executes and kills the process with
	 * SIGSEGV, a sent one is re-raised and delivered when we return. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGSEGV, &dfl, NULL);
	if (si->si_code <= 0)
		raise(SIGSEGV);
}

static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	page_size = pagesz();     /* before the handler can run */
	if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
		handler_err = -errno;
}

/* A thread that exits without weft__stack_thread_exit (a plain thread that
 * ran generators: nothing of weft sees it end) unmaps its alternate stack
 * through this key's destructor; weft__stack_thread_exit clears the key. */
static pthread_key_t altstack_key;
static int altstack_key_err;
static pthread_once_t altstack_key_once = PTHREAD_ONCE_INIT;

static void altstack_release(void)
{
	stack_t ss = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
	if (sigaltstack(&ss, NULL) == 0)
		munmap(tls_altstack, tls_altstack_len);
	tls_altstack = NULL;
	tls_altstack_len = 0;
}

/* Runs at the exit of a thread whose key is still set; its TLS is still
 * there (destructors run before the thread's TLS goes). */
static void altstack_dtor(void *unused)
{
	(void)unused;
	tls_current = NULL;
	weft__gen_current = NULL;
	tls_ready = false;
	if (tls_altstack)
		altstack_release();
}

static void altstack_key_create(void)
{
	altstack_key_err = -pthread_key_create(&altstack_key, altstack_dtor);
}

int weft__stack_thread_init(void)
{
	if (tls_ready)
		return 0;
	pthread_once(&handler_once, install_handler);
	if (handler_err)
		return handler_err;
	pthread_once(&altstack_key_once, altstack_key_create);
	if (altstack_key_err)
		return altstack_key_err;

	/* Keep an alternate stack someone else (ASan, the program) set up, if
	 * it is big enough for our handler and the one we chain to. */
	size_t need = 64 * 1024;
	long min = sysconf(_SC_SIGSTKSZ);
	if (min > 0 && (size_t)min * 4 > need)
		need = ((size_t)min * 4 + pagesz() - 1) & ~(pagesz() - 1);
	stack_t cur;
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE) && cur.ss_size >= need) {
		tls_ready = true;
		return 0;
	}

	size_t len = need + pagesz();
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	mprotect(m, pagesz(), PROT_NONE);   /* overflowing the handler faults too */
	stack_t ss = { .ss_sp = m + pagesz(), .ss_size = need, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0) {
		int err = -errno;
		munmap(m, len);
		return err;
	}
	int err = -pthread_setspecific(altstack_key, m);   /* any non-NULL value */
	if (err) {
		stack_t off = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
		munmap(m, len);
		return err;
	}
	tls_altstack = m;
	tls_altstack_len = len;
	tls_ready = true;
	return 0;
}

void weft__stack_thread_exit(void)
{
	tls_current = NULL;
	tls_ready = false;
	if (!tls_altstack)
		return;
	pthread_setspecific(altstack_key, NULL);
	altstack_release();
}
