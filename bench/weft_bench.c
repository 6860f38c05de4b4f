/*
 * weft-bench: weft's side of the scheduler benchmarks (defined below; the
 * peers in bench/peers/ run the same).
 *
 *   weft-bench BENCH [--workers N]     run one benchmark once, print its line
 *   weft-bench scale BENCH [--max N]   run BENCH with 1..N workers (N: nproc),
 *                                      each in a fresh child process, and print
 *                                      speed-up and efficiency per count
 *   weft-bench list                    the benchmark names, one per line
 *
 * Definitions (counts are fixed; only run counts change between quick and full
 * mode, and those live in bench/run):
 *   switch   ns/switch, 1 thread: two contexts bounce 20,000,000 switches
 *            (internal src/ctx API, 64 KiB stack, like Boost.Context's peer)
 *   yield    ns/yield, 1 worker: 1,000 coroutines x 10,000 weft_yield
 *   spawn    ns/spawn, all workers: 1,000,000 detached children count down a latch
 *   skynet   ms, all workers: skynet(0, 1,000,000, 10) = 499999500000
 *   fib      ms, all workers: fib(30) = 832040, child spawned for fib(n-1)
 *   sleep    ms, all workers: 100,000 coroutines sleep 10 ms, count down a latch
 *   pingpong ns/round trip over two unbuffered channels, 1,000,000 rounds
 *   ring     ns/hop, 503 coroutines, unbuffered channels, 10,000,000 hops
 *   chan     ns/item, all workers: 4 producers, 4 consumers, a channel
 *            buffered for 1,024, 10,000,000 items (weft_bench_chan.c)
 *   gen      ns/value, 1 worker: a generator yields 10,000,000 values,
 *            values sent back both ways (weft_bench_gen.c)
 *   park1m   s, all workers: 1,000,000 coroutines parked at once on a
 *            semaphore; also prints park1m.rss (B of RSS per parked
 *            coroutine) and park1m.back (s until the RSS is back within
 *            256 MiB of the start after they finished) (weft_bench_park.c)
 *
 * The latch of spawn and sleep is weft's wait group when the library has one
 * (WEFT_BENCH_HAVE_WG, probed by bench/meson.build). Without it, the
 * benchmark's main coroutine returns after the last spawn and the thread that
 * called weft_rt_run waits on a futex the last child opens: the coroutines do
 * exactly the same work, and the waiter, being a plain thread, cannot block a
 * worker. pingpong and ring are built only when weft/chan.h has channels.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctx/ctx.h"
#include "weft_bench.h"

/* ------------------------------------------------------------- helpers --- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned ncpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int bench_fail(const char *bench, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "weft-bench %s: ", bench);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int bench_rt_run(unsigned workers, weft_fn fn, void *arg)
{
	struct weft_config cfg = { .workers = workers };
	weft_rt *rt;
	int err = weft_rt_create(&rt, &cfg);
	if (err < 0) {
		fprintf(stderr, "weft-bench: weft_rt_create(%u workers): %s\n", workers,
		        weft_strerror(err));
		return err;
	}
	int rerr = weft_rt_run(rt, fn, arg, NULL);
	if (rerr < 0)
		fprintf(stderr, "weft-bench: weft_rt_run: %s\n", weft_strerror(rerr));
	if (getenv("WEFT_BENCH_STATS")) {      /* where the time went: steals, parks ... */
		struct weft_stats st;
		char line[512];
		if (weft_rt_stats(rt, &st, NULL, 0) == 0 &&
		    weft_stats_format(&st, line, sizeof line) > 0)
			fprintf(stderr, "weft-bench: stats: %s\n", line);
	}
	err = weft_rt_destroy(rt);
	if (err < 0)
		fprintf(stderr, "weft-bench: weft_rt_destroy: %s\n", weft_strerror(err));
	return rerr < 0 ? rerr : err;
}

/* Spawn or die: a benchmark whose spawn fails measures nothing. */
static weft_task *spawn_or_die(const char *bench, weft_fn fn, void *arg, int joinable)
{
	weft_task *t = NULL;
	int err = weft_spawn(joinable ? &t : NULL, fn, arg);
	if (err < 0) {
		bench_fail(bench, "weft_spawn: %s", weft_strerror(err));
		exit(1);
	}
	return t;
}

static void *join_or_die(const char *bench, weft_task *t)
{
	void *r = NULL;
	int err = weft_join(t, &r);
	if (err < 0) {
		bench_fail(bench, "weft_join: %s", weft_strerror(err));
		exit(1);
	}
	return r;
}

/* --------------------------------------------------------------- latch --- */

#if defined(WEFT_BENCH_HAVE_WG)
struct latch { weft_wg wg; uint64_t t_open; };

static void latch_init(struct latch *l, unsigned n)
{
	weft_wg_init(&l->wg);
	int err = weft_wg_add(&l->wg, (int64_t)n);
	if (err < 0) {
		bench_fail("latch", "weft_wg: %s", weft_strerror(err));
		exit(1);
	}
}
static void latch_done(struct latch *l) { weft_wg_done(&l->wg); }
/* In the benchmark's main coroutine. */
static void latch_wait_co(struct latch *l)
{
	int err = weft_wg_wait(&l->wg);
	if (err < 0) {
		bench_fail("latch", "weft_wg_wait: %s", weft_strerror(err));
		exit(1);
	}
	l->t_open = now_ns();
}
/* In the thread that called weft_rt_run, after it returned. */
static void latch_wait_thread(struct latch *l) { (void)l; }
static void latch_fini(struct latch *l) { (void)l; }   /* a wait group owns nothing */
#else
struct latch {
	_Atomic uint32_t left;   /* children still to count down               */
	_Atomic uint32_t open;   /* futex word: 1 once left reached 0           */
	uint64_t t_open;         /* written by the opener before open is set     */
};

static void latch_init(struct latch *l, unsigned n)
{
	atomic_init(&l->left, n);
	atomic_init(&l->open, 0);
	l->t_open = 0;
}
static void latch_done(struct latch *l)
{
	/* acq_rel: the last decrement sees every earlier child's work. */
	if (atomic_fetch_sub_explicit(&l->left, 1, memory_order_acq_rel) != 1)
		return;
	l->t_open = now_ns();
	/* release: pairs with the acquire load in latch_wait_thread, which then
	 * reads t_open. */
	atomic_store_explicit(&l->open, 1, memory_order_release);
	syscall(SYS_futex, &l->open, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
static void latch_wait_co(struct latch *l) { (void)l; }
static void latch_wait_thread(struct latch *l)
{
	/* acquire: pairs with the release store in latch_done. Bounded: the
	 * children each finish in bounded time, and bench/run kills the process
	 * after its timeout. */
	while (!atomic_load_explicit(&l->open, memory_order_acquire))
		syscall(SYS_futex, &l->open, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}
static void latch_fini(struct latch *l) { (void)l; }
#endif

/* -------------------------------------------------------------- switch --- */

#define SWITCH_COUNT 20000000u          /* switches; one round trip = 2 */
#define SWITCH_STACK (64u * 1024)

static struct weft__ctx sw_main, sw_co;

static void sw_entry(void *data)
{
	for (;;)
		data = weft__ctx_switch(&sw_co, &sw_main, data);
}

static int bench_switch(unsigned workers, double *value)
{
	(void)workers;            /* one thread by definition */
	void *stk = mmap(NULL, SWITCH_STACK, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stk == MAP_FAILED)
		return bench_fail("switch", "mmap: %s", strerror(errno));
	weft__ctx_init_thread(&sw_main);
	weft__ctx_make(&sw_co, stk, SWITCH_STACK, sw_entry);

	uintptr_t sum = 0;
	uint64_t t0 = now_ns();
	for (uintptr_t i = 0; i < SWITCH_COUNT / 2; i++)
		sum += (uintptr_t)weft__ctx_switch(&sw_main, &sw_co, (void *)i);
	uint64_t t1 = now_ns();

	/* The value travels both ways: the sum proves every switch carried it. */
	uintptr_t n = SWITCH_COUNT / 2;
	if (sum != n * (n - 1) / 2)
		return bench_fail("switch", "values lost: sum %" PRIuPTR, sum);
	weft__ctx_release(&sw_co);
	*value = (double)(t1 - t0) / SWITCH_COUNT;
	return 0;   /* the stack stays mapped: sw_co is parked on it */
}

/* --------------------------------------------------------------- yield --- */

#define YIELD_TASKS  1000u
#define YIELD_EACH   10000u

struct timed { uint64_t t0, t1; };

static void *yield_body(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < YIELD_EACH; i++)
		weft_yield();
	return NULL;
}

static void *yield_main(void *arg)
{
	struct timed *tm = arg;
	static weft_task *tasks[YIELD_TASKS];
	tm->t0 = weft_now();
	for (unsigned i = 0; i < YIELD_TASKS; i++)
		tasks[i] = spawn_or_die("yield", yield_body, NULL, 1);
	for (unsigned i = 0; i < YIELD_TASKS; i++)
		join_or_die("yield", tasks[i]);
	tm->t1 = weft_now();
	return NULL;
}

static int bench_yield(unsigned workers, double *value)
{
	struct timed tm = { 0, 0 };
	int err = bench_rt_run(workers, yield_main, &tm);
	if (err)
		return 1;
	*value = (double)(tm.t1 - tm.t0) / ((double)YIELD_TASKS * YIELD_EACH);
	return 0;
}

/* --------------------------------------------------------- spawn, sleep --- */

#define SPAWN_COUNT  1000000u
#define SLEEP_COUNT  100000u
#define SLEEP_NS     10000000u

struct latched { struct latch latch; unsigned count; uint64_t t0; };

static void *spawn_child(void *arg)
{
	latch_done(&((struct latched *)arg)->latch);
	return NULL;
}

static void *sleep_child(void *arg)
{
	int err = weft_sleep(SLEEP_NS);
	if (err < 0) {
		bench_fail("sleep", "weft_sleep: %s", weft_strerror(err));
		exit(1);
	}
	latch_done(&((struct latched *)arg)->latch);
	return NULL;
}

static weft_fn latched_child;   /* spawn_child or sleep_child */

static void *latched_main(void *arg)
{
	struct latched *b = arg;
	b->t0 = weft_now();
	for (unsigned i = 0; i < b->count; i++)
		spawn_or_die("spawn", latched_child, b, 0);
	latch_wait_co(&b->latch);
	return NULL;
}

static int run_latched(unsigned workers, unsigned count, weft_fn child, uint64_t *ns)
{
	static struct latched b;
	latch_init(&b.latch, count);
	b.count = count;
	latched_child = child;
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers };
	int err = weft_rt_create(&rt, &cfg);
	if (err < 0)
		return bench_fail("spawn", "weft_rt_create: %s", weft_strerror(err));
	err = weft_rt_run(rt, latched_main, &b, NULL);
	if (err < 0)
		return bench_fail("spawn", "weft_rt_run: %s", weft_strerror(err));
	latch_wait_thread(&b.latch);
	*ns = b.latch.t_open - b.t0;   /* weft_now() is CLOCK_MONOTONIC too */
	weft_rt_destroy(rt);
	latch_fini(&b.latch);
	return 0;
}

static int bench_spawn(unsigned workers, double *value)
{
	uint64_t ns;
	if (run_latched(workers, SPAWN_COUNT, spawn_child, &ns))
		return 1;
	*value = (double)ns / SPAWN_COUNT;
	return 0;
}

static int bench_sleep(unsigned workers, double *value)
{
	uint64_t ns;
	if (run_latched(workers, SLEEP_COUNT, sleep_child, &ns))
		return 1;
	*value = (double)ns / 1e6;
	return 0;
}

/* -------------------------------------------------------------- skynet --- */

#define SKYNET_SIZE   1000000u
#define SKYNET_DIV    10u
#define SKYNET_RESULT 499999500000ull

struct sky { uint64_t num, size; };

static void *skynet(void *arg)
{
	const struct sky *a = arg;
	if (a->size == 1)
		return (void *)(uintptr_t)a->num;
	struct sky kids[SKYNET_DIV];      /* lives until every child is joined */
	weft_task *t[SKYNET_DIV];
	uint64_t sub = a->size / SKYNET_DIV;
	for (unsigned i = 0; i < SKYNET_DIV; i++) {
		kids[i] = (struct sky){ a->num + i * sub, sub };
		t[i] = spawn_or_die("skynet", skynet, &kids[i], 1);
	}
	uint64_t sum = 0;
	for (unsigned i = 0; i < SKYNET_DIV; i++)
		sum += (uintptr_t)join_or_die("skynet", t[i]);
	return (void *)(uintptr_t)sum;
}

struct tree_run { struct timed tm; uint64_t result; };

static void *skynet_main(void *arg)
{
	struct tree_run *r = arg;
	struct sky root = { 0, SKYNET_SIZE };
	r->tm.t0 = weft_now();
	r->result = (uintptr_t)skynet(&root);
	r->tm.t1 = weft_now();
	return NULL;
}

static int bench_skynet(unsigned workers, double *value)
{
	struct tree_run r = { { 0, 0 }, 0 };
	if (bench_rt_run(workers, skynet_main, &r))
		return 1;
	if (r.result != SKYNET_RESULT)
		return bench_fail("skynet", "result %" PRIu64 ", want %llu", r.result, SKYNET_RESULT);
	*value = (double)(r.tm.t1 - r.tm.t0) / 1e6;
	return 0;
}

/* ----------------------------------------------------------------- fib --- */

#define FIB_N      30u
#define FIB_RESULT 832040u

static void *fib(void *arg)
{
	uintptr_t n = (uintptr_t)arg;
	if (n < 2)
		return (void *)n;
	weft_task *child = spawn_or_die("fib", fib, (void *)(n - 1), 1);
	uintptr_t x = (uintptr_t)fib((void *)(n - 2));
	return (void *)(x + (uintptr_t)join_or_die("fib", child));
}

static void *fib_main(void *arg)
{
	struct tree_run *r = arg;
	r->tm.t0 = weft_now();
	r->result = (uintptr_t)fib((void *)(uintptr_t)FIB_N);
	r->tm.t1 = weft_now();
	return NULL;
}

static int bench_fib(unsigned workers, double *value)
{
	struct tree_run r = { { 0, 0 }, 0 };
	if (bench_rt_run(workers, fib_main, &r))
		return 1;
	if (r.result != FIB_RESULT)
		return bench_fail("fib", "fib(%u) = %" PRIu64 ", want %u", FIB_N, r.result, FIB_RESULT);
	*value = (double)(r.tm.t1 - r.tm.t0) / 1e6;
	return 0;
}

/* ---------------------------------------------------------------- main --- */

static const struct bench_def benches[] = {
	{ "switch",   "ns", 1, bench_switch },
	{ "yield",    "ns", 1, bench_yield },
	{ "spawn",    "ns", 0, bench_spawn },
	{ "skynet",   "ms", 0, bench_skynet },
	{ "fib",      "ms", 0, bench_fib },
	{ "sleep",    "ms", 0, bench_sleep },
#if defined(WEFT_BENCH_HAVE_CHAN)
	{ "pingpong", "ns", 0, bench_pingpong },
	{ "ring",     "ns", 0, bench_ring },
	{ "chan",     "ns", 0, bench_chan },        /* ns per item */
#endif
	{ "gen",      "ns", 1, bench_gen },         /* ns per value */
#if defined(WEFT_BENCH_HAVE_PARK)
	{ "park1m",   "s",  0, bench_park1m },      /* weft_bench_park.c */
#endif
};
#define NBENCH (sizeof benches / sizeof benches[0])

static const struct bench_def *find(const char *name)
{
	for (size_t i = 0; i < NBENCH; i++)
		if (strcmp(benches[i].name, name) == 0)
			return &benches[i];
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: weft-bench BENCH [--workers N]\n"
	                "       weft-bench scale BENCH [--max N]\n"
	                "       weft-bench list\n"
	                "benchmarks:");
	for (size_t i = 0; i < NBENCH; i++)
		fprintf(stderr, " %s", benches[i].name);
	fputc('\n', stderr);
	return 2;
}

static int parse_uint(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v == 0 || v > 4096)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* Extra figures of the running benchmark (bench_extra), printed after its
 * own line. */
#define EXTRA_MAX 4
struct extra { const char *name, *unit; double value; };
static struct extra extras[EXTRA_MAX];
static unsigned nextras;

void bench_extra(const char *name, double value, const char *unit)
{
	if (nextras < EXTRA_MAX)
		extras[nextras++] = (struct extra){ name, unit, value };
}

static int run_one(const struct bench_def *b, unsigned workers, double *value)
{
	nextras = 0;
	int err = b->run(workers, value);
	if (err)
		return 1;
	unsigned shown = b->single && strcmp(b->name, "switch") == 0 ? 1 : workers;
	printf("name=%s impl=weft workers=%u value=%.3f unit=%s\n", b->name, shown, *value, b->unit);
	for (unsigned i = 0; i < nextras; i++)
		printf("name=%s impl=weft workers=%u value=%.3f unit=%s\n", extras[i].name, shown,
		       extras[i].value, extras[i].unit);
	fflush(stdout);
	return 0;
}

#define SCALE_CHILD_TIMEOUT_S 120u

/* Run b with `workers` in a child process (each run cold, see weft_bench.h);
 * the child prints its own line and hands the value back through a pipe. */
static int run_child(const struct bench_def *b, unsigned workers, double *value)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -errno;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(fd[0]);
		alarm(SCALE_CHILD_TIMEOUT_S);   /* a hung run must not hang the sweep */
		double v;
		int rc = run_one(b, workers, &v);
		if (rc == 0 && write(fd[1], &v, sizeof v) != (ssize_t)sizeof v)
			rc = 1;
		_exit(rc);
	}
	close(fd[1]);
	ssize_t n = read(fd[0], value, sizeof *value);
	close(fd[0]);
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n != (ssize_t)sizeof *value)
		return -EIO;
	return 0;
}

static int scale(const struct bench_def *b, unsigned max)
{
	double base = 0;
	int rc = 0;
	for (unsigned w = 1; w <= max; w++) {
		double v;
		if (run_child(b, w, &v) < 0) {
			fprintf(stderr, "weft-bench scale %s: run with %u workers failed\n", b->name, w);
			rc = 1;
			continue;
		}
		if (w == 1)
			base = v;
		if (base > 0 && v > 0) {
			/* every figure is a time: speed-up = t(1) / t(w) */
			double s = base / v;
			printf("name=%s.speedup impl=weft workers=%u value=%.3f unit=x\n", b->name, w, s);
			printf("name=%s.efficiency impl=weft workers=%u value=%.3f unit=ratio\n",
			       b->name, w, s / w);
			fflush(stdout);
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
#if defined(WEFT_BENCH_HAVE_ECHO)
	if (strcmp(argv[1], "echo") == 0)       /* servers vs one load: weft_bench_echo.c */
		return bench_echo_main(argc - 1, argv + 1);
#endif
	if (strcmp(argv[1], "list") == 0) {
		for (size_t i = 0; i < NBENCH; i++)
			printf("%s %s %s\n", benches[i].name, benches[i].unit,
			       benches[i].single ? "single" : "multi");
		return 0;
	}
	int is_scale = strcmp(argv[1], "scale") == 0;
	int argi = is_scale ? 2 : 1;
	if (argi >= argc)
		return usage();
	const struct bench_def *b = find(argv[argi]);
	if (!b) {
		fprintf(stderr, "weft-bench: unknown benchmark '%s'\n", argv[argi]);
		return usage();
	}
	unsigned workers = b->single ? 1 : ncpus();
	unsigned max = ncpus();
	for (int i = argi + 1; i < argc; i += 2) {     /* option, value pairs */
		unsigned *dst = NULL;
		if (strcmp(argv[i], "--workers") == 0 && !is_scale)
			dst = &workers;
		else if (strcmp(argv[i], "--max") == 0 && is_scale)
			dst = &max;
		if (!dst || i + 1 >= argc || parse_uint(argv[i + 1], dst) < 0)
			return usage();
	}
	if (is_scale)
		return scale(b, max);
	double v;
	return run_one(b, workers, &v);
}
