/*
 * src/sched/cpus.c: how many workers a runtime gets by default.
 *
 * As many as the CPUs the process may run on (its affinity mask), capped by
 * the CPU bandwidth its cgroup may use, as Go does since 1.25 (GOMAXPROCS):
 * a container limited to 2 CPUs on a 64-core host runs 2 workers, not 64
 * that the kernel throttles in turn. The limit is quota / period rounded up
 * (1.5 CPUs: 2 workers, so the quota can be used whole; rounding down would
 * leave half a CPU idle), at least 1. Go keeps a minimum of 2 for its
 * garbage collector's sake; weft has no collector, and one worker runs its
 * solo fast paths.
 *
 * Where the limit is read: the process's cgroup (/proc/self/cgroup) under
 * the mount of its hierarchy (/proc/self/mountinfo), cgroup v2's cpu.max
 * ("max 100000" or "150000 100000") or v1's cpu.cfs_quota_us (-1: none) and
 * cpu.cfs_period_us, at the process's own cgroup and every ancestor up to
 * the mount's root: the tightest wins (a parent's limit binds its children;
 * Go reads the leaf only). Anything unreadable or absent means no limit.
 * The limit is read once, at weft_rt_create; a runtime does not follow a
 * later change of the quota.
 *
 * Everything below takes a path prefix (normally "") so that the tests can
 * build a fake /proc and cgroup tree in a directory of their own.
 */
#include "sched/cpus.h"

#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ANY. Parse cgroup v2's cpu.max: "<quota|max> <period>". 0 and *cpus
 * (in CPUs) when there is a limit, -1 for "max" or anything unparsable. */
int weft__cpu_max_parse(const char *s, double *cpus)
{
	if (!strncmp(s, "max", 3))
		return -1;
	char *end;
	long long quota = strtoll(s, &end, 10);
	if (end == s || quota <= 0)
		return -1;
	long long period = strtoll(end, &end, 10);
	if (period <= 0)
		return -1;
	*cpus = (double)quota / (double)period;
	return 0;
}

/* ANY. The workers for a bandwidth limit of cpus CPUs (cpus <= 0: none)
 * and n CPUs in the affinity mask. */
unsigned weft__cpus_cap(unsigned n, double cpus)
{
	if (cpus <= 0)
		return n;
	double up = (double)(unsigned long)cpus;
	if (up < cpus)
		up += 1;                    /* rounded up */
	unsigned limit = up < 1 ? 1 : up > 4096 ? 4096 : (unsigned)up;
	return limit < n ? limit : n;
}

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char *ok = fgets(buf, (int)len, f);
	fclose(f);
	return ok ? 0 : -1;
}

/* The limit, in CPUs, set by the files of one cgroup directory: v2's
 * cpu.max, or v1's quota and period. 0 when there is none. */
static double dir_limit(const char *dir, bool v2)
{
	char path[8192 + 32], buf[128];
	double cpus;
	if (v2) {
		snprintf(path, sizeof path, "%s/cpu.max", dir);
		if (read_line(path, buf, sizeof buf) == 0 && weft__cpu_max_parse(buf, &cpus) == 0)
			return cpus;
		return 0;
	}
	snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
	if (read_line(path, buf, sizeof buf) != 0)
		return 0;
	long long quota = strtoll(buf, NULL, 10);
	snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
	if (quota <= 0 || read_line(path, buf, sizeof buf) != 0)
		return 0;
	long long period = strtoll(buf, NULL, 10);
	return period > 0 ? (double)quota / (double)period : 0;
}

/* Whether the comma-separated list has the word. */
static bool has_word(const char *list, size_t len, const char *word)
{
	size_t w = strlen(word);
	for (const char *p = list, *end = list + len; p < end;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
		if (n == w && !memcmp(p, word, n))
			return true;
		p += n + 1;
	}
	return false;
}

/* The process's cgroup path in the hierarchy that has the cpu controller:
 * v1's "N:...cpu...:/path" wins over v2's "0::/path" (a hybrid system, as
 * this project's machines are, has both, and the controller is bound to
 * v1 there). */
static int own_cgroup(const char *prefix, char *path, size_t len, bool *v2)
{
	char file[4096], line[4096], v2path[4096] = "";
	snprintf(file, sizeof file, "%s/proc/self/cgroup", prefix);
	FILE *f = fopen(file, "re");
	if (!f)
		return -1;
	bool have_v1 = false, have_v2 = false;
	while (!have_v1 && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		if (b == a + 1 && !strncmp(line, "0:", 2)) {
			snprintf(v2path, sizeof v2path, "%s", b + 1);
			have_v2 = true;
		} else if (has_word(a + 1, (size_t)(b - a - 1), "cpu")) {
			snprintf(path, len, "%s", b + 1);
			have_v1 = true;
		}
	}
	fclose(f);
	if (!have_v1 && have_v2)
		snprintf(path, len, "%s", v2path);
	*v2 = !have_v1;
	return have_v1 || have_v2 ? 0 : -1;
}

/* Where that hierarchy is mounted: the mount point and the cgroup path the
 * mount's root corresponds to (mountinfo's fields 4 and 5; "/" unless a
 * cgroup namespace or a bind mount says otherwise). */
static int mount_of(const char *prefix, bool v2, char *root, char *point, size_t len)
{
	char file[4096], line[4096];
	snprintf(file, sizeof file, "%s/proc/self/mountinfo", prefix);
	FILE *f = fopen(file, "re");
	if (!f)
		return -1;
	int rc = -1;
	while (rc && fgets(line, sizeof line, f)) {
		char *dash = strstr(line, " - ");
		if (!dash)
			continue;
		char fstype[64], opts[1024] = "";
		if (sscanf(dash + 3, "%63s %*s %1023s", fstype, opts) < 1)
			continue;
		if (strcmp(fstype, v2 ? "cgroup2" : "cgroup") ||
		    (!v2 && !has_word(opts, strlen(opts), "cpu")))
			continue;
		char r[4096], p[4096];
		if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, p) != 2)
			continue;
		snprintf(root, len, "%s", r);
		snprintf(point, len, "%s%s", prefix, p);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* ANY. The tightest CPU bandwidth limit of the process's cgroup and its
 * ancestors, in CPUs; 0 when there is none (or it cannot be read). prefix:
 * "" for the real system, a directory holding a fake tree for tests. */
double weft__cgroup_cpu_limit(const char *prefix)
{
	char cg[4096], root[4096], point[4096];
	bool v2 = false;
	if (own_cgroup(prefix, cg, sizeof cg, &v2) || mount_of(prefix, v2, root, point, sizeof root))
		return 0;
	/* The part of our path below the mount's root. */
	size_t rl = strlen(root);
	const char *rel = cg;
	if (strcmp(root, "/")) {
		if (strncmp(cg, root, rl) || (cg[rl] && cg[rl] != '/'))
			return 0;               /* our cgroup is not under this mount */
		rel = cg + rl;
	}
	double best = 0;
	char dir[8192];
	snprintf(dir, sizeof dir, "%s%s", point, rel);
	size_t floor_len = strlen(point);
	for (;;) {
		double l = dir_limit(dir, v2);
		if (l > 0 && (best == 0 || l < best))
			best = l;
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < floor_len)
			break;
		*slash = 0;                 /* up to the parent, down to the mount */
		if (strlen(dir) < floor_len)
			break;
	}
	return best;
}

/* THREAD (weft_rt_create). */
unsigned weft__default_workers(void)
{
	unsigned n = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = (unsigned)CPU_COUNT(&set);
	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	return weft__cpus_cap(n, weft__cgroup_cpu_limit(""));
}
