/*
 * test_cpus.c — the default worker count (src/sched/cpus.c): cgroup CPU
 * bandwidth limits parsed from sample files (v2's cpu.max: a quota, "max",
 * fractional; v1's quota and period; absent), the tightest of a cgroup and
 * its ancestors, and the cap on the affinity mask's CPUs. The trees are
 * fake /proc and cgroup directories under a temporary directory, so the
 * tests do not depend on the machine's own cgroups.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sched/cpus.h"

Test(cpus, cpu_max_parse)
{
	double c = -1;
	cr_assert_eq(weft__cpu_max_parse("max 100000\n", &c), -1);
	cr_assert_eq(weft__cpu_max_parse("150000 100000\n", &c), 0);
	cr_assert_float_eq(c, 1.5, 1e-9);
	cr_assert_eq(weft__cpu_max_parse("200000 100000", &c), 0);
	cr_assert_float_eq(c, 2.0, 1e-9);
	cr_assert_eq(weft__cpu_max_parse("50000 100000", &c), 0);
	cr_assert_float_eq(c, 0.5, 1e-9);
	cr_assert_eq(weft__cpu_max_parse("", &c), -1);
	cr_assert_eq(weft__cpu_max_parse("abc 100000", &c), -1);
	cr_assert_eq(weft__cpu_max_parse("0 100000", &c), -1);
	cr_assert_eq(weft__cpu_max_parse("100000", &c), -1, "no period");
	cr_assert_eq(weft__cpu_max_parse("100000 0", &c), -1);
}

Test(cpus, cap_rounds_up_and_keeps_the_mask)
{
	cr_assert_eq(weft__cpus_cap(64, 0), 64u, "no limit");
	cr_assert_eq(weft__cpus_cap(64, 2.0), 2u);
	cr_assert_eq(weft__cpus_cap(64, 1.5), 2u, "rounded up");
	cr_assert_eq(weft__cpus_cap(64, 0.5), 1u, "at least one");
	cr_assert_eq(weft__cpus_cap(64, 0.01), 1u);
	cr_assert_eq(weft__cpus_cap(1, 4.0), 1u, "never above the mask");
	cr_assert_eq(weft__cpus_cap(8, 8.5), 8u);
	cr_assert_eq(weft__cpus_cap(16, 8.5), 9u);
}

/* A fake tree under a temporary directory. */
static char root[64];

static void put(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	/* mkdir -p of the parents */
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
	FILE *f = fopen(path, "w");
	cr_assert(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static void fresh_root(void)
{
	snprintf(root, sizeof root, "/tmp/weft-cpus-XXXXXX");
	cr_assert(mkdtemp(root));
}

static void drop_root(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

static const char v2_mount[] =
	"30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

Test(cpus, v2_leaf_limit)
{
	fresh_root();
	put("proc/self/cgroup", "0::/kubepods/pod1\n");
	put("proc/self/mountinfo", v2_mount);
	put("sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n");
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 1.5, 1e-9);
	drop_root();
}

Test(cpus, v2_tightest_ancestor_wins)
{
	fresh_root();
	put("proc/self/cgroup", "0::/kubepods/pod1/c1\n");
	put("proc/self/mountinfo", v2_mount);
	put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/kubepods/pod1/cpu.max", "300000 100000\n");
	put("sys/fs/cgroup/kubepods/cpu.max", "200000 100000\n");
	put("sys/fs/cgroup/cpu.max", "max 100000\n");
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 2.0, 1e-9);
	drop_root();
}

Test(cpus, v2_no_limit)
{
	fresh_root();
	put("proc/self/cgroup", "0::/\n");
	put("proc/self/mountinfo", v2_mount);
	put("sys/fs/cgroup/cpu.max", "max 100000\n");
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 0.0, 1e-9, "max");
	drop_root();
	fresh_root();
	put("proc/self/cgroup", "0::/a\n");
	put("proc/self/mountinfo", v2_mount);
	put("sys/fs/cgroup/a/cgroup.procs", "1\n");        /* no cpu.max at all */
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 0.0, 1e-9, "absent");
	drop_root();
	fresh_root();                                     /* no /proc at all */
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 0.0, 1e-9, "no proc");
	drop_root();
}

Test(cpus, v2_namespaced_mount_root)
{
	/* A cgroup namespace or bind mount: the mount's root is our own
	 * cgroup, so the files are at the mount point itself. */
	fresh_root();
	put("proc/self/cgroup", "0::/docker/abc\n");
	put("proc/self/mountinfo",
	    "30 23 0:27 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put("sys/fs/cgroup/cpu.max", "250000 100000\n");
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 2.5, 1e-9);
	drop_root();
}

Test(cpus, v1_quota_and_period)
{
	/* A hybrid system (this project's machines): the cpu controller on
	 * v1, a v2 hierarchy beside it without it. */
	fresh_root();
	put("proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n0::/\n");
	put("proc/self/mountinfo",
	    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
	    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	    "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
	put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "200000\n");
	put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/unified/cpu.max", "100000 100000\n");   /* not ours */
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 2.0, 1e-9);
	put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
	cr_assert_float_eq(weft__cgroup_cpu_limit(root), 0.0, 1e-9, "quota -1: none");
	drop_root();
}

Test(cpus, default_within_the_mask)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
	unsigned n = weft__default_workers(), mask = (unsigned)CPU_COUNT(&set);
	cr_assert(n >= 1 && n <= mask, "%u workers for %u CPUs", n, mask);
	cr_assert_eq(n, weft__cpus_cap(mask, weft__cgroup_cpu_limit("")));
}

/* The real thing, where this machine lets us: a child moved into a new v1
 * cpu cgroup with a quota of half a CPU gets one worker. Skipped where the
 * cpu controller is not mounted at /sys/fs/cgroup/cpu (v1) or the cgroup
 * cannot be made (not root, a read-only cgroupfs). */
static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) || rc ? -1 : 0;
}

Test(cpus, real_v1_cgroup_half_a_cpu)
{
	char dir[128], path[192], pid[32];
	snprintf(dir, sizeof dir, "/sys/fs/cgroup/cpu/weft-test-%d", (int)getpid());
	if (mkdir(dir, 0755) != 0)
		cr_skip_test("no writable v1 cpu cgroup here (%s)", strerror(errno));
	snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
	bool ok = write_file(path, "100000") == 0;
	snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
	ok = ok && write_file(path, "50000") == 0;
	pid_t child = ok ? fork() : -1;
	if (child == 0) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		snprintf(pid, sizeof pid, "%d", (int)getpid());
		if (write_file(path, pid) != 0)
			_exit(77);
		_exit(weft__default_workers() == 1 ? 0 : 1);
	}
	int st = -1;
	if (child > 0)
		waitpid(child, &st, 0);
	rmdir(dir);                      /* empty again once the child is gone */
	cr_assert(ok, "could not set the quota of %s", dir);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		cr_skip_test("could not move a process into %s", dir);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	          "a child limited to half a CPU did not get 1 worker (status %#x)", st);
}
