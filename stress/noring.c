/*
 * noring: run a program where io_uring_setup(2) fails.
 *
 *     noring [--membarrier] EPERM|ENOSYS program [args...]
 *
 * --membarrier: fail membarrier(2) instead, as on kernels before 4.14 or
 * under a seccomp profile without it; weft then keeps cancellation's
 * Dekker pair seq_cst on both sides (src/sched/wait.c, weft__membarrier_mode),
 * and the tests run under it exercise that path.
 *
 * Installs a seccomp-BPF filter (raw prctl, no libseccomp) that makes every
 * io_uring_setup call fail with the given errno and lets every other system
 * call through, then execs the program. This is what a container whose
 * seccomp profile blocks io_uring (EPERM) or a kernel built without it
 * (ENOSYS) looks like to weft.
 * The filter is inherited across exec and fork and cannot be removed.
 *
 * Exit status: the program's, or 2 for a usage error, 1 when the filter
 * cannot be installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#  define NORING_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#  define NORING_ARCH AUDIT_ARCH_AARCH64
#else
#  error "noring: unsupported architecture (add its AUDIT_ARCH_ value)"
#endif

#ifndef __NR_io_uring_setup
#  define __NR_io_uring_setup 425     /* the same on every architecture */
#endif

static int install(int err, long nr)
{
	struct sock_filter f[] = {
		/* A foreign ABI (x32, i386 on x86_64) has other numbers: let it be. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NORING_ARCH, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	/* Needed to install a filter without CAP_SYS_ADMIN; harmless with it. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		fprintf(stderr, "noring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0)) {
		fprintf(stderr, "noring: prctl(PR_SET_SECCOMP): %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long nr = __NR_io_uring_setup;
	const char *name = "io_uring_setup";
	if (argc > 1 && !strcmp(argv[1], "--membarrier")) {
		nr = SYS_membarrier;
		name = "membarrier";
		argv++;
		argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: noring [--membarrier] EPERM|ENOSYS program [args...]\n");
		return 2;
	}
	int err;
	if (!strcmp(argv[1], "EPERM")) {
		err = EPERM;
	} else if (!strcmp(argv[1], "ENOSYS")) {
		err = ENOSYS;
	} else {
		fprintf(stderr, "noring: errno must be EPERM or ENOSYS, not \"%s\"\n", argv[1]);
		return 2;
	}
	if (install(err, nr))
		return 1;
	/* Check the filter took before handing over (MEMBARRIER_CMD_QUERY = 0,
	 * harmless if it went through). */
	if (syscall(nr, nr == SYS_membarrier ? 0 : 1, 0, 0) != -1 || errno != err) {
		fprintf(stderr, "noring: %s not blocked (errno %d)\n", name, errno);
		return 1;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "noring: cannot exec %s: %s\n", argv[2], strerror(errno));
	return 127;
}
