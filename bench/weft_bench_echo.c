/*
 * weft-bench echo: every echo server against the same load generator, in one
 * invocation.
 *
 *   weft-bench echo [--seconds 5] [--warmup 1] [--quick] [--runs 1]
 *                   [--conns 50,500] [--workers N] [--hog MS]
 *
 * Servers: weft-echo (examples/echo, all workers unless --workers), the C
 * epoll baseline echo-epoll and the Go peer go-echo (bench/echo/), plus
 * weft-echo on 1 worker when weft has more (label weft-1w), and, with
 * --hog MS, weft-echo with a CPU-hogging coroutine (label weft-hog). The two
 * extras are not peers: the ratio's best peer is c-epoll or go. Each server
 * is started once on a free 127.0.0.1 port and is ready when it accepts a
 * connection (10 s at most); one that is not built or does not come up is
 * reported as missing, and the others still run.
 *
 * Load: bench/echo/echo-load, pinned to the last CPU of our affinity mask
 * (sched_setaffinity in the child before exec), 64-byte messages, depth 1,
 * for each connection count and run, servers alternating (weft, epoll, go,
 * weft-1w, weft, ...). Every load run is bounded by warm-up + seconds + 30 s, then
 * killed. Servers are stopped by their PID (SIGTERM, SIGKILL after 5 s) and
 * reaped; they also get SIGKILL if weft-bench dies first (PR_SET_PDEATHSIG).
 *
 * Output, per server and connection count (medians over --runs):
 *   name=echo impl=<weft|c-epoll|go|weft-1w|weft-hog> workers=<n> conns=<c> value=<req/s>
 *   unit=req/s p50_us=<..> p99_us=<..> p999_us=<..> runs=<ok runs>
 *   [cpu_us=<..> load_cpu_us=<..> load_busy=<..>] cdf_us=<..>
 * then, per connection count,
 *   name=echo-ratio conns=<c> best_peer=<impl> value=<weft req/s / best peer's>
 *   weft_p99_us=<..> peer_p99_us=<..> [weft_cpu_us=<..> peer_cpu_us=<..>]
 *   [weft_1w_value=<weft-1w req/s / best peer's> weft_1w_p99_us=<..>]
 * cpu_us is the server's CPU time (user + system, every thread, from
 * /proc/PID/stat) per request over the load's measured window, load_cpu_us
 * the load generator's, load_busy the load's CPU time over the window's
 * length. They say what the requests/s alone cannot on a machine where the
 * load and the server share CPUs: how much CPU each server needs per request,
 * and whether the load generator, at load_busy near 100%, set the rate.
 * and a table for people. Binaries are found relative to /proc/self/exe: this
 * program lives in BUILD/bench/, weft-echo in BUILD/examples/echo/, the rest
 * in BUILD/bench/echo/. Exit 0 when weft ran; 1 when it could not.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "echo/echo_proto.h"

#include "weft_bench.h"

#define MAX_SERVERS 5
#define MAX_CONNS_SETS 8
#define MAX_RUNS 50

struct server {
	const char *name;        /* impl label */
	char path[PATH_MAX + 64];
	char args[4][32];        /* extra arguments after --port P */
	int nargs;
	unsigned workers;        /* for the output line (0: not known) */
	pid_t pid;
	int port;
	FILE *log;               /* its stdout+stderr */
	char missing[256];       /* why it does not run; "" when it does */
};

/* cpu_us, load_cpu_us: CPU time (user + system, all threads) of the server
 * and of the load generator per request over the measured window, -1 when
 * not known; load_busy: the load's CPU time over the window's length (near 1:
 * the load generator, not the server, set the rate). */
struct figure { double rps, p50, p99, p999, cdf[ECHO_NCDF], cpu_us, load_cpu_us, load_busy; };

/* CPU time of a process, user + system over all its threads, in seconds
 * (/proc/PID/stat fields 14 and 15, in clock ticks); -1 if unreadable.
 * Ticks (10 ms) are fine grained enough for windows of 1 s and more, and
 * the process's total keeps the time of threads that have exited. (The
 * http and kv sections sum per-thread schedstat in ns instead: their quick
 * runs last a tenth of a second, and their servers keep their threads.) */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name (field 2) may hold spaces and parentheses: count
	 * fields from the last ')'. Field 3 follows it. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut, st;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? (double)(ut + st) / (double)hz : -1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A port nobody listens on now (the kernel's choice for port 0). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int port = -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int accepts(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void log_tail(FILE *log, char *out, size_t n)
{
	out[0] = 0;
	if (!log)
		return;
	fflush(log);
	long end = ftell(log);
	long from = end > (long)n - 1 ? end - (long)n + 1 : 0;
	fseek(log, from, SEEK_SET);
	size_t got = fread(out, 1, n - 1, log);
	out[got] = 0;
	for (size_t i = 0; i < got; i++)
		if (out[i] == '\n')
			out[i] = ' ';
	fseek(log, 0, SEEK_END);
}

/* Wait up to `ms` for pid to exit; its status, or -1 if still running. */
static int reap_within(pid_t pid, unsigned ms)
{
	for (unsigned i = 0; i <= ms / 10; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0)
			return 0;
		sleep_ms(10);
	}
	return -1;
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	if (reap_within(s->pid, 5000) < 0) {
		fprintf(stderr, "weft-bench echo: %s ignored SIGTERM for 5 s, killing it\n", s->name);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

static void server_start(struct server *s)
{
	if (access(s->path, X_OK)) {
		snprintf(s->missing, sizeof s->missing, "%s not built (%s)", s->path, strerror(errno));
		return;
	}
	s->port = free_port();
	if (s->port < 0) {
		snprintf(s->missing, sizeof s->missing, "no free port: %s", strerror(errno));
		return;
	}
	s->log = tmpfile();
	if (s->log)   /* the server's copies (dup2 below) stay open; ours not in loads */
		fcntl(fileno(s->log), F_SETFD, FD_CLOEXEC);
	char port[16];
	snprintf(port, sizeof port, "%d", s->port);
	char *argv[8] = { s->path, "--port", port };
	int n = 3;
	for (int i = 0; i < s->nargs; i++)
		argv[n++] = s->args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(s->missing, sizeof s->missing, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul >= 0)
			dup2(nul, 0);
		if (s->log) {
			dup2(fileno(s->log), 1);
			dup2(fileno(s->log), 2);
		}
		execv(s->path, argv);
		fprintf(stderr, "exec %s: %s\n", s->path, strerror(errno));
		_exit(127);
	}
	s->pid = pid;
	/* Ready when it accepts: at most 10 s, 200 tries. */
	for (int i = 0; i < 200; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char tail[160];
			log_tail(s->log, tail, sizeof tail);
			snprintf(s->missing, sizeof s->missing, "exited with %s %d at start: %s",
				 WIFEXITED(st) ? "status" : "signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), tail);
			s->pid = 0;
			return;
		}
		if (accepts(s->port))
			return;
		sleep_ms(50);
	}
	server_stop(s);
	snprintf(s->missing, sizeof s->missing, "did not accept on port %d within 10 s", s->port);
}

static int last_cpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set))
		return -1;
	for (int c = CPU_SETSIZE - 1; c >= 0; c--)
		if (CPU_ISSET(c, &set))
			return c;
	return -1;
}

static double field(const char *line, const char *key)
{
	char k[32];
	snprintf(k, sizeof k, " %s=", key);
	const char *p = strstr(line, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

/* cdf_us=P:V,P:V,... into cdf[] by echo_cdf_pcts; -1 where a percentile is
 * missing (an older echo-load), so the CDF is left out, not made up. */
static void cdf_field(const char *line, double *cdf)
{
	for (size_t i = 0; i < ECHO_NCDF; i++)
		cdf[i] = -1;
	const char *p = strstr(line, " cdf_us=");
	if (!p)
		return;
	p += strlen(" cdf_us=");
	for (size_t k = 0; k < ECHO_NCDF && *p && *p != ' ' && *p != '\n'; k++) {
		char *end;
		double pct = strtod(p, &end);
		if (end == p || *end != ':')
			return;
		double v = strtod(end + 1, &end);
		for (size_t i = 0; i < ECHO_NCDF; i++)
			if (echo_cdf_pcts[i] == pct)
				cdf[i] = v;
		if (*end != ',')
			return;
		p = end + 1;
	}
}

/*
 * One echo-load run against s with `conns` connections, pinned to `cpu`.
 * Returns 0 and fills *f, or -1 with the reason printed.
 */
static int load_run(const char *load, const struct server *s, unsigned conns, double secs,
		    double warmup, int cpu, struct figure *f)
{
	char port[16], c[16], sec[32], warm[32];
	snprintf(port, sizeof port, "%d", s->port);
	snprintf(c, sizeof c, "%u", conns);
	snprintf(sec, sizeof sec, "%g", secs);
	snprintf(warm, sizeof warm, "%g", warmup);
	char *argv[] = { (char *)load, "--port", port, "--conns", c, "--size", "64", "--depth", "1",
			 "--seconds", sec, "--warmup", warm, "--label", (char *)s->name, NULL };
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC)) {
		perror("weft-bench echo: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("weft-bench echo: fork");
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (cpu >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			if (sched_setaffinity(0, sizeof set, &set))
				fprintf(stderr, "weft-bench echo: pinning the load to CPU %d: %s\n",
					cpu, strerror(errno));
		}
		dup2(pfd[1], 1);
		execv(load, argv);
		fprintf(stderr, "weft-bench echo: exec %s: %s\n", load, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	char out[4096];
	size_t got = 0;
	double deadline = now_s() + warmup + secs + 30;
	int killed = 0;
	/* CPU times at the load's window marks (echo_window_marks), sampled
	 * as soon as each is read: [0] start, [1] end. */
	double srv_cpu[2] = { -1, -1 }, load_cpu[2] = { -1, -1 }, mark_t[2] = { -1, -1 };
	/* Bounded by the deadline; each pass waits at most 1 s. */
	while (now_s() < deadline) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int r = poll(&p, 1, 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		ssize_t n = read(pfd[0], out + got, sizeof out - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		out[got] = 0;
			for (int m = 0; m < 2; m++)
			if (mark_t[m] < 0 && strstr(out, echo_window_marks[m])) {
				srv_cpu[m] = proc_cpu_s(s->pid);
				load_cpu[m] = proc_cpu_s(pid);
				mark_t[m] = now_s();
			}
		if (got == sizeof out - 1)
			break;
	}
	out[got] = 0;
	close(pfd[0]);
	int st = reap_within(pid, 2000);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		killed = 1;
	}
	const char *line = strstr(out, "name=echo ");
	if (killed || !line || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "weft-bench echo: load on %s with %u conns failed (%s)%s%s\n", s->name,
			conns, killed ? "killed after its time" : !line ? "no result line" : "bad exit",
			line ? ": " : "", line ? line : "");
		return -1;
	}
	f->rps = field(line, "rps");
	f->p50 = field(line, "p50_us");
	f->p99 = field(line, "p99_us");
	f->p999 = field(line, "p999_us");
	cdf_field(line, f->cdf);
	if (f->rps <= 0 || f->p99 < 0) {
		fprintf(stderr, "weft-bench echo: unreadable result: %s", line);
		return -1;
	}
	/* Per request: the CPU spent between the marks over the requests
	 * counted in the window (echo-load's requests=, those sent in it). */
	double req = field(line, "requests");
	f->cpu_us = f->load_cpu_us = f->load_busy = -1;
	if (req > 0 && srv_cpu[0] >= 0 && srv_cpu[1] >= srv_cpu[0]) {
		f->cpu_us = (srv_cpu[1] - srv_cpu[0]) * 1e6 / req;
		if (load_cpu[0] >= 0 && load_cpu[1] >= load_cpu[0]) {
			f->load_cpu_us = (load_cpu[1] - load_cpu[0]) * 1e6 / req;
			if (mark_t[1] > mark_t[0])
				f->load_busy = (load_cpu[1] - load_cpu[0]) / (mark_t[1] - mark_t[0]);
		}
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	if (n <= 0)
		return -1;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of the runs' values that are known (>= 0); -1 when a run
 * lacks one, so a figure is left out rather than taken from some runs. */
static double median_known(const double *v, int n)
{
	double w[MAX_RUNS];
	for (int i = 0; i < n; i++) {
		if (v[i] < 0)
			return -1;
		w[i] = v[i];
	}
	return median(w, n);
}

static int echo_usage(void)
{
	fprintf(stderr,
		"usage: weft-bench echo [--seconds 5] [--warmup 1] [--quick] [--runs 1]\n"
		"                       [--conns 50,500] [--workers N] [--hog MS]\n"
		"  --quick: 1 s measured after 0.3 s of warm-up (unless given)\n");
	return 2;
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *v)
{
	char *end;
	*v = strtod(s, &end);
	if (*end || end == s || !(*v >= lo && *v <= hi)) {
		fprintf(stderr, "weft-bench echo: %s must be a number in %g..%g, not '%s'\n",
			opt, lo, hi, s);
		return -1;
	}
	return 0;
}

int bench_echo_main(int argc, char **argv)
{
	double secs = -1, warmup = -1, runs_d = 1, workers_d = 0, hog_d = 0;
	int quick = 0;
	unsigned conns[MAX_CONNS_SETS] = { 50, 500 };
	int nconns = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--quick")) {
			quick = 1;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return echo_usage();
		static const char *const valued[] = { "--seconds", "--warmup", "--runs", "--workers",
						       "--hog", "--conns" };
		int known = 0;
		for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
			known |= !strcmp(a, valued[k]);
		if (!known) {
			fprintf(stderr, "weft-bench echo: unknown option '%s'\n", a);
			return echo_usage();
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "weft-bench echo: %s needs a value\n", a);
			return echo_usage();
		}
		const char *v = argv[++i];
		int bad = 0;
		if (!strcmp(a, "--seconds"))
			bad = parse_num(a, v, 0.05, 3600, &secs);
		else if (!strcmp(a, "--warmup"))
			bad = parse_num(a, v, 0, 3600, &warmup);
		else if (!strcmp(a, "--runs"))
			bad = parse_num(a, v, 1, MAX_RUNS, &runs_d);
		else if (!strcmp(a, "--workers"))
			bad = parse_num(a, v, 1, 4096, &workers_d);
		else if (!strcmp(a, "--hog"))
			bad = parse_num(a, v, 1, 60000, &hog_d);
		else if (!strcmp(a, "--conns")) {
			nconns = 0;
			char buf[256];
			snprintf(buf, sizeof buf, "%s", v);
			for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				double c;
				if (nconns == MAX_CONNS_SETS || parse_num(a, t, 1, 100000, &c))
					return echo_usage();
				conns[nconns++] = (unsigned)c;
			}
			bad = nconns == 0;
		} else {
			fprintf(stderr, "weft-bench echo: unknown option '%s'\n", a);
			return echo_usage();
		}
		if (bad)
			return echo_usage();
	}
	if (secs < 0)
		secs = quick ? 1 : 5;
	if (warmup < 0)
		warmup = quick ? 0.3 : 1;
	int runs = (int)runs_d;

	/* BUILD/bench/weft-bench -> BUILD */
	char self[PATH_MAX], root[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		fprintf(stderr, "weft-bench echo: cannot read /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self[n] = 0;
	snprintf(root, sizeof root, "%s", self);
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(root, '/');
		if (!slash || slash == root) {
			fprintf(stderr, "weft-bench echo: %s is not in BUILD/bench/\n", self);
			return 1;
		}
		*slash = 0;
	}
	char load[PATH_MAX + 32];
	snprintf(load, sizeof load, "%s/bench/echo/echo-load", root);
	if (access(load, X_OK)) {
		fprintf(stderr, "weft-bench echo: the load generator %s is not built: %s\n",
			load, strerror(errno));
		return 1;
	}

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	{
		cpu_set_t set;
		if (sched_getaffinity(0, sizeof set, &set) == 0)
			ncpu = CPU_COUNT(&set);
	}
	unsigned wk = workers_d > 0 ? (unsigned)workers_d : (unsigned)ncpu;
	/* 0 weft, 1 c-epoll, 2 go (the peers: 1..2), then the extras that
	 * are not peers and not in the ratio's best-peer choice: weft-1w
	 * (weft-echo on 1 worker, when weft has more: as http and kv show
	 * theirs) and weft-hog (--hog). */
	struct server sv[MAX_SERVERS] = {
		{ .name = "weft", .nargs = 2, .workers = wk },
		{ .name = "c-epoll", .nargs = 2, .workers = (unsigned)ncpu },
		{ .name = "go", .nargs = 0, .workers = (unsigned)ncpu },
	};
	int nsv = 3, one_w = -1;
	snprintf(sv[0].path, sizeof sv[0].path, "%s/examples/echo/weft-echo", root);
	snprintf(sv[1].path, sizeof sv[1].path, "%s/bench/echo/echo-epoll", root);
	snprintf(sv[2].path, sizeof sv[2].path, "%s/bench/echo/go-echo", root);
	snprintf(sv[0].args[0], 32, "--workers");
	snprintf(sv[0].args[1], 32, "%u", wk);
	snprintf(sv[1].args[0], 32, "--threads");
	snprintf(sv[1].args[1], 32, "%ld", ncpu);
	if (wk > 1) {
		one_w = nsv++;
		sv[one_w] = (struct server){ .name = "weft-1w", .nargs = 2, .workers = 1 };
		snprintf(sv[one_w].path, sizeof sv[one_w].path, "%s", sv[0].path);
		snprintf(sv[one_w].args[0], 32, "--workers");
		snprintf(sv[one_w].args[1], 32, "1");
	}
	if (hog_d > 0) {
		int h = nsv++;
		sv[h] = (struct server){ .name = "weft-hog", .nargs = 4, .workers = wk };
		snprintf(sv[h].path, sizeof sv[h].path, "%s", sv[0].path);
		memcpy(sv[h].args, sv[0].args, sizeof sv[0].args);
		snprintf(sv[h].args[2], 32, "--hog");
		snprintf(sv[h].args[3], 32, "%u", (unsigned)hog_d);
	}

	int cpu = last_cpu();
	printf("# echo: %d server(s), load pinned to CPU %d, %g s warm-up + %g s, %d run(s), "
	       "64-byte messages\n", nsv, cpu, warmup, secs, runs);
	for (int s = 0; s < nsv; s++) {
		server_start(&sv[s]);
		if (sv[s].missing[0])
			printf("# echo: %s missing: %s\n", sv[s].name, sv[s].missing);
	}
	fflush(stdout);

	static double rps[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS], p50[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS],
		p99[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS], p999[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS],
		cdf[MAX_CONNS_SETS][MAX_SERVERS][ECHO_NCDF][MAX_RUNS],
		scpu[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS], lcpu[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS],
		lbusy[MAX_CONNS_SETS][MAX_SERVERS][MAX_RUNS];
	int ok[MAX_CONNS_SETS][MAX_SERVERS] = { { 0 } };
	for (int c = 0; c < nconns; c++)
		for (int r = 0; r < runs; r++)
			for (int s = 0; s < nsv; s++) {
				if (sv[s].missing[0])
					continue;
				struct figure f;
				if (load_run(load, &sv[s], conns[c], secs, warmup, cpu, &f))
					continue;
				int k = ok[c][s]++;
				rps[c][s][k] = f.rps;
				p50[c][s][k] = f.p50;
				p99[c][s][k] = f.p99;
				p999[c][s][k] = f.p999;
				for (size_t i = 0; i < ECHO_NCDF; i++)
					cdf[c][s][i][k] = f.cdf[i];
				scpu[c][s][k] = f.cpu_us;
				lcpu[c][s][k] = f.load_cpu_us;
				lbusy[c][s][k] = f.load_busy;
			}
	for (int s = 0; s < nsv; s++) {
		if (sv[s].pid > 0 && reap_within(sv[s].pid, 0) >= 0) {
			printf("# echo: %s died during the runs\n", sv[s].name);
			sv[s].pid = 0;
		}
		server_stop(&sv[s]);
		if (sv[s].log)
			fclose(sv[s].log);
	}

	/* Medians, machine lines, then the table and the ratios. */
	struct figure med[MAX_CONNS_SETS][MAX_SERVERS];
	for (int c = 0; c < nconns; c++)
		for (int s = 0; s < nsv; s++) {
			int k = ok[c][s];
			med[c][s] = (struct figure){ .rps = median(rps[c][s], k),
						     .p50 = median(p50[c][s], k),
						     .p99 = median(p99[c][s], k),
						     .p999 = median(p999[c][s], k),
						     .cpu_us = median_known(scpu[c][s], k),
						     .load_cpu_us = median_known(lcpu[c][s], k),
						     .load_busy = median_known(lbusy[c][s], k) };
			if (!k)
				continue;
			printf("name=echo impl=%s workers=%u conns=%u value=%.0f unit=req/s p50_us=%.1f "
			       "p99_us=%.1f p999_us=%.1f runs=%d", sv[s].name, sv[s].workers, conns[c],
			       med[c][s].rps, med[c][s].p50, med[c][s].p99, med[c][s].p999, k);
			if (med[c][s].cpu_us >= 0)
				printf(" cpu_us=%.2f", med[c][s].cpu_us);
			if (med[c][s].load_cpu_us >= 0)
				printf(" load_cpu_us=%.2f load_busy=%.2f", med[c][s].load_cpu_us,
				       med[c][s].load_busy);
			/* The CDF: per percentile, the median over the runs that
			 * reported it (all of them, from this echo-load). */
			const char *sep = " cdf_us=";
			for (size_t i = 0; i < ECHO_NCDF; i++) {
				double v[MAX_RUNS];
				int m = 0;
				for (int r = 0; r < k; r++)
					if (cdf[c][s][i][r] >= 0)
						v[m++] = cdf[c][s][i][r];
				if (m == k) {
					printf("%s%g:%.1f", sep, echo_cdf_pcts[i], median(v, m));
					sep = ",";
				}
			}
			printf("\n");
		}
	int weft_ran = 0;
	for (int c = 0; c < nconns; c++) {
		if (!ok[c][0])
			continue;
		weft_ran = 1;
		int best = -1;
		for (int s = 1; s <= 2; s++)
			if (ok[c][s] && (best < 0 || med[c][s].rps > med[c][best].rps))
				best = s;
		if (best < 0)
			continue;
		printf("name=echo-ratio conns=%u best_peer=%s value=%.2f weft_p99_us=%.1f peer_p99_us=%.1f",
		       conns[c], sv[best].name, med[c][0].rps / med[c][best].rps, med[c][0].p99,
		       med[c][best].p99);
		if (med[c][0].cpu_us > 0 && med[c][best].cpu_us > 0)
			printf(" weft_cpu_us=%.2f peer_cpu_us=%.2f", med[c][0].cpu_us,
			       med[c][best].cpu_us);
		if (one_w >= 0 && ok[c][one_w])
			printf(" weft_1w_value=%.2f weft_1w_p99_us=%.1f",
			       med[c][one_w].rps / med[c][best].rps, med[c][one_w].p99);
		printf("\n");
	}
	printf("\n%-9s %6s %12s %10s %10s %10s %12s %12s %10s\n", "server", "conns", "req/s",
	       "p50 us", "p99 us", "p99.9 us", "cpu us/req", "load us/req", "load busy");
	for (int c = 0; c < nconns; c++)
		for (int s = 0; s < nsv; s++) {
			if (!ok[c][s]) {
				printf("%-9s %6u %12s %10s %10s %10s %12s %12s %10s\n", sv[s].name,
				       conns[c], "-", "-", "-", "-", "-", "-", "-");
				continue;
			}
			char cu[16] = "-", lu[16] = "-", lb[16] = "-";
			if (med[c][s].cpu_us >= 0)
				snprintf(cu, sizeof cu, "%.2f", med[c][s].cpu_us);
			if (med[c][s].load_cpu_us >= 0) {
				snprintf(lu, sizeof lu, "%.2f", med[c][s].load_cpu_us);
				snprintf(lb, sizeof lb, "%.0f%%", 100 * med[c][s].load_busy);
			}
			printf("%-9s %6u %12.0f %10.1f %10.1f %10.1f %12s %12s %10s\n", sv[s].name,
			       conns[c], med[c][s].rps, med[c][s].p50, med[c][s].p99, med[c][s].p999,
			       cu, lu, lb);
		}
	fflush(stdout);
	if (!weft_ran) {
		fprintf(stderr, "weft-bench echo: weft-echo did not run%s%s\n",
			sv[0].missing[0] ? ": " : "", sv[0].missing);
		return 1;
	}
	return 0;
}
