/*
 * src/sync/gen.c: generators, a body on its own stack driven by its caller.
 *
 * A generator is two contexts (src/ctx/ctx.h): its body's, made on its own
 * stack, and its caller's, saved by each resume. resume switches caller ->
 * body, yield switches body -> caller: one switch each way per value.
 *
 * The hot path is the switch and nothing else: weft_gen_resume and
 * weft_gen_yield end in a tail call of the switch (gen_switch below, the
 * one that leaves the FP control state to the thread; yields use its second
 * copy, gen_switch_back), whose data is the
 * int the *other* side's call returns (YIELDED / DONE to a resume, 0 or
 * -ECANCELED to a yield). Each side writes the value it hands over straight
 * into the other's variable before it switches: a resume stores `in` through
 * the pointer the pending yield left in g->in_ptr, a yield (and the body's
 * return) stores `out` through the resume's g->out_ptr. So the switch jumps
 * straight back into user code: no C frame is resumed on the other stack,
 * and no `ret` is executed on a stack other than the one its `call` was made
 * on. With a C frame that returned after the switch, each value cost two
 * return mispredictions (the return-stack buffer holds the other stack's
 * call sites), more than the two switches themselves (docs/internals.md).
 * The first switch into a fresh context hands its entry function the
 * generator itself; the first `in` waits in g->first_in.
 *
 * States: NEW -> RUNNING <-> SUSPENDED -> ... -> DONE. RUNNING also guards
 * against a body resuming its own generator (-EBUSY).
 *
 * Close of a SUSPENDED generator sets `closing` and resumes it once: its
 * pending weft_gen_yield returns -ECANCELED and the body is expected to
 * return (a later yield returns -ECANCELED without switching). Rejected: just
 * freeing the stack of a suspended body (it would leak whatever the body
 * holds) and unwinding by longjmp (C has no destructors to run).
 *
 * Stacks: mmap'ed with a PROT_NONE guard page below, not from the runtime's
 * pool (its caches belong to worker threads, and generators work on plain
 * threads too); stacks of the default size are kept in a small global free
 * list, since creating a generator should not cost a mapping every time. A
 * body that overflows hits the guard, and the overflow handler of
 * src/ctx/stack.c names the generator and its resumer: each resume makes the
 * body's stack the thread's weft__gen_current (saving the previous one in
 * g->stack.gen_resumer, for nested generators) and each yield or return puts
 * the previous one back. The same pointer tells a yield from g's own body
 * from one anywhere else (-EPERM): only g's body runs while it is g's.
 *
 * Tool builds: the caller's context is adopted at each resume (TSan: the
 * current fiber; ASan: the bounds of the stack the caller runs on, as ASan
 * itself reports them), because the caller may be a different coroutine or
 * thread from one resume to the next.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "debug_hooks.h"
#include "sync/waitq.h"

#if defined(WEFT_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(WEFT_TSAN)
void *__tsan_get_current_fiber(void);
#endif

enum { GEN_NEW, GEN_RUNNING, GEN_SUSPENDED, GEN_DONE };

struct weft_gen {
	struct weft__ctx ctx;        /* the body's context                     */
	struct weft__ctx caller;     /* the resumer's, while the body runs     */
	weft_gen_fn fn;
	void *arg;
	void *first_in;
	void **out_ptr;              /* the pending resume's `out` (may be NULL) */
	void **in_ptr;               /* the pending yield's `in` (may be NULL)   */
	int state;
	bool closing;
	void *map;                   /* the mapping: guard page + stack        */
	size_t map_size;
	/* The body's stack, for the overflow handler (ctx/stack.h): while the
	 * body runs it is weft__gen_current, and gen_resumer the generator
	 * whose body resumed it, if one did. Its address also tells a yield
	 * from g's own body from any other (weft_gen_yield). */
	struct weft__stack stack;
};

/* ---------------------------------------------------------------- stacks -- */

#define GEN_CACHE_MAX 32

static weft__lock cache_lock;
static void *cache[GEN_CACHE_MAX];
static unsigned ncache;

/*
 * fork: the child's copy of cache_lock may be held by a thread that is not
 * in the child, and its first weft_gen_create of a default-size stack would
 * spin on it for ever. The parent takes the lock before the fork (held for
 * a few instructions, never across a call that blocks, so the fork waits no
 * longer than that) and both sides release it after: the child's cache is
 * then a consistent copy, and its stacks are the child's own copies of the
 * mappings, fit to reuse. Registered once, before the lock is first taken
 * (stack_get: a stack of the default size is got there before stack_put
 * can cache one). Callers: the atfork handlers, on the forking
 * thread.
 */
static pthread_once_t cache_fork_once = PTHREAD_ONCE_INIT;

static void cache_prepare_fork(void)
{
	weft__lock_acquire(&cache_lock);
}

static void cache_after_fork(void)
{
	weft__unlock(&cache_lock);
}

static void cache_fork_register(void)
{
	/* Fails only for lack of memory: a child may then hang on the lock
	 * (nothing here can report it). */
	(void)pthread_atfork(cache_prepare_fork, cache_after_fork, cache_after_fork);
}

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static int stack_get(size_t size, void **map, size_t *map_size)
{
	size_t total = size + page_size();
	if (size == WEFT_STACK_DEFAULT) {
		pthread_once(&cache_fork_once, cache_fork_register);
		weft__lock_acquire(&cache_lock);
		void *m = ncache ? cache[--ncache] : NULL;
		weft__unlock(&cache_lock);
		if (m) {
			*map = m;
			*map_size = total;
			return 0;
		}
	}
	void *m = weft__fault("gen.mmap") ? MAP_FAILED
	        : mmap(NULL, total, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	if (weft__fault("gen.mprotect") || mprotect(m, page_size(), PROT_NONE)) {
		munmap(m, total);
		return -ENOMEM;
	}
	*map = m;
	*map_size = total;
	return 0;
}

static void stack_put(void *map, size_t map_size)
{
	if (map_size == WEFT_STACK_DEFAULT + page_size()) {
		weft__lock_acquire(&cache_lock);
		if (ncache < GEN_CACHE_MAX) {
			cache[ncache++] = map;
			map = NULL;
		}
		weft__unlock(&cache_lock);
	}
	if (map)
		munmap(map, map_size);
}

/* ----------------------------------------------------------------- tools -- */

/* Make g->caller describe the context about to switch into g. */
static void caller_adopt(struct weft_gen *g)
{
#if defined(WEFT_TSAN)
	g->caller.tsan_fiber = __tsan_get_current_fiber();
	g->caller.tsan_owned = 0;
#endif
#if defined(WEFT_ASAN)
	/* ASan knows the bounds of the stack we run on (a coroutine's, a
	 * thread's, an outer generator's) but only tells them through
	 * finish_switch_fiber: switch "to" a dummy range and straight back,
	 * touching no memory in between, and keep what it reports. */
	void *fake;
	const void *lo;
	size_t size;
	__sanitizer_start_switch_fiber(&fake, g->map, 1);
	__sanitizer_finish_switch_fiber(fake, &lo, &size);
	__sanitizer_start_switch_fiber(&fake, lo, size);
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
	g->caller.stack_lo = lo;
	g->caller.stack_size = size;
	g->caller.fake_stack = NULL;
#endif
	(void)g;
}

/* gen_switch: the switch with the int result the generator protocol passes
 * through it, so that resume and yield end in a plain tail jump.
 *
 * Normal builds: weft__ctx_switch_threadfp_raw, the switch that leaves the
 * FP control state alone (src/ctx/switch_*.S). A generator body runs nested
 * in its caller, on the caller's thread, as a called function does, so the
 * two share the thread's floating-point environment (documented at
 * weft_gen in weft/sync.h), and the stores and loads of MXCSR and the x87
 * control word (FPCR on AArch64) that keep a coroutine's own FP state across
 * the scheduler's switches are not needed here. Declared with an int
 * result: sound where int and pointer results come back in the same
 * register, the int in its low half (x86-64: eax of rax; AAPCS64: w0 of
 * x0), and the data passed is always a small int or the generator itself
 * (the first switch, whose result nobody reads as an int). gcc makes no tail
 * call of a function whose result needs converting, even a free
 * pointer-to-int truncation, hence the int; no other file declares this
 * name, so LTO has no second type to compare it with.
 *
 * Tool builds: a call of the C wrapper (src/ctx/ctx.c) that tells ASan,
 * TSan, valgrind about the switch, and a cast. */
#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && !defined(WEFT_VALGRIND)
int weft__ctx_switch_threadfp_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);
int weft__ctx_switch_threadfp_back_raw(struct weft__ctx *from, struct weft__ctx *to, void *data);
#define gen_switch weft__ctx_switch_threadfp_raw
/* Yields go through a second copy of the same switch, so that each copy's
 * closing indirect jump has one target in a loop (the body's yield site for
 * resumes, the caller's resume site for yields); see the x86-64 switch
 * file. */
#define gen_switch_back weft__ctx_switch_threadfp_back_raw
#else
static inline int gen_switch(struct weft__ctx *from, struct weft__ctx *to, void *data)
{
	return (int)(intptr_t)weft__ctx_switch_threadfp(from, to, data);
}
#define gen_switch_back gen_switch
#endif

/* ------------------------------------------------------------------ body -- */

static _Noreturn void gen_entry(void *data)
{
	struct weft_gen *g = data;
	void *ret = g->fn(g, g->arg, g->first_in);
	if (g->out_ptr)
		*g->out_ptr = ret;
	g->state = GEN_DONE;
	weft__gen_current = g->stack.gen_resumer;
	weft__ctx_exit_threadfp(&g->ctx, &g->caller, (void *)(intptr_t)WEFT_GEN_DONE);
}

WEFT_API int weft_gen_create(weft_gen **out, weft_gen_fn fn, void *arg, size_t stack_size)
{
	if (!out || !fn)
		return -EINVAL;
	if (stack_size == 0)
		stack_size = WEFT_STACK_DEFAULT;
	if (stack_size < WEFT_STACK_MIN || stack_size > ((size_t)1 << 40))
		return -EINVAL;
	size_t ps = page_size();
	stack_size = (stack_size + ps - 1) & ~(ps - 1);
	struct weft_gen *g = weft__fault("gen.alloc") ? NULL : calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	int err = stack_get(stack_size, &g->map, &g->map_size);
	if (err) {
		free(g);
		return err;
	}
	g->fn = fn;
	g->arg = arg;
	g->state = GEN_NEW;
	g->stack.lo = (char *)g->map + ps;
	g->stack.size = stack_size;
	g->stack.gen = g;
	g->stack.gen_body = (void (*)(void))fn;
	weft__ctx_make(&g->ctx, (char *)g->map + ps, stack_size, gen_entry);
	/* The overflow message needs the SIGSEGV handler and, on this thread,
	 * an alternate signal stack to run on (workers have theirs). Without
	 * them (no memory for one) the generator still works; an overflow then
	 * ends the process with a bare SIGSEGV. */
	(void)weft__stack_thread_init();
	*out = g;
	return 0;
}

/* Both return through a tail call of the switch: the int the other side
 * hands over (see the top of the file); nothing may follow the switch. */
WEFT_API int weft_gen_resume(weft_gen *g, void *in, void **out)
{
	void *data;
	if (!g)
		return -EINVAL;
	switch (g->state) {
	case GEN_SUSPENDED:
		if (g->closing) {
			data = (void *)(intptr_t)-ECANCELED;
		} else {
			if (g->in_ptr)
				*g->in_ptr = in;
			data = (void *)(intptr_t)0;
		}
		break;
	case GEN_NEW:
		g->first_in = in;
		data = g;
		break;
	case GEN_DONE:
		return -EPIPE;
	default:
		return -EBUSY;
	}
	g->out_ptr = out;
	g->state = GEN_RUNNING;
	caller_adopt(g);
	/* The body's stack is this thread's current generator stack until it
	 * yields or returns (both put the resumer's back): for the overflow
	 * handler, and for weft_gen_yield's check. */
	g->stack.gen_resumer = weft__gen_current;
	weft__gen_current = &g->stack;
	return gen_switch(&g->caller, &g->ctx, data);
}

WEFT_API int weft_gen_yield(weft_gen *g, void *out, void **in)
{
	if (!g)
		return -EINVAL;
	/* Only g's own body runs on g's stack: a yield from anywhere else
	 * (g's caller, another generator's body, g not running) would switch
	 * to a caller context that is stale or was never saved. */
	if (weft__gen_current != &g->stack)
		return -EPERM;
	if (g->closing)
		return -ECANCELED;
	if (g->out_ptr)
		*g->out_ptr = out;
	g->in_ptr = in;
	g->state = GEN_SUSPENDED;
	weft__gen_current = g->stack.gen_resumer;
	return gen_switch_back(&g->ctx, &g->caller, (void *)(intptr_t)WEFT_GEN_YIELDED);
}

WEFT_API bool weft_gen_done(const weft_gen *g)
{
	return g->state == GEN_DONE;
}

WEFT_API int weft_gen_close(weft_gen *g)
{
	if (!g)
		return 0;
	if (g->state == GEN_RUNNING)
		return -EBUSY;
	if (g->state == GEN_SUSPENDED) {
		g->closing = true;
		int r = weft_gen_resume(g, NULL, NULL);
		if (r != WEFT_GEN_DONE) {
			/* The body yielded instead of returning although every yield
			 * now fails: it ignores the protocol; its stack is abandoned. */
			static const char msg[] =
				"weft: weft_gen_close: generator body yielded after -ECANCELED\n";
			ssize_t w = write(2, msg, sizeof msg - 1);
			(void)w;
			abort();
		}
	}
	weft__ctx_release(&g->ctx);
	stack_put(g->map, g->map_size);
	free(g);
	return 0;
}
