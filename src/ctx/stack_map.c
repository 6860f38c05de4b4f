/*
 * Coroutine stacks, the mapping half: the guard mode probed once per
 * process, the VMA budget of mprotect guards, and mapping runs of
 * [guard | stack] (src/ctx/stack.c pools them).
 *
 * Guards. MADV_GUARD_INSTALL (Linux >= 6.13) turns a page into a guard
 * without a VMA of its own, so a chunk stays one mapping however many
 * stacks it holds. It is probed once per process (and trusted only if a
 * guarded page really faults); where it is missing we
 * mprotect(PROT_NONE) each guard, which splits the chunk into 2 VMAs per
 * stack. vm.max_map_count (65530 by default) then caps the process: we keep
 * a process-wide count of the VMAs we made and refuse with -EAGAIN, and one
 * clear message on stderr, before our stacks take more than 7/8 of it (the
 * rest is left to the program: malloc arenas, libraries, thread stacks).
 *
 * Batches. A chunk of n stacks needs n guards, and giving a run of free
 * stacks back (the pool's trim) n madvise(MADV_DONTNEED) calls. Where the
 * kernel lets a process advise itself through process_madvise(2) with the
 * PIDFD_SELF sentinel (Linux >= 6.13 for these advices, 6.15 for the
 * sentinel) one call takes up to IOV_BATCH ranges, and for DONTNEED the
 * kernel flushes the TLB once per call instead of once per range (a
 * shootdown per range is an IPI to every CPU running a thread of ours).
 * Probed per advice on first use; madvise(2) range by range otherwise.
 *
 * Any thread may call these; the process-wide state is atomics (below).
 */
#include "ctx/stack.h"
#include "ctx/stack_map.h"
#include "debug_hooks.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102    /* Linux 6.13; Debian 12's headers lack it */
#endif

#ifndef PIDFD_SELF_THREAD_GROUP
#define PIDFD_SELF_THREAD_GROUP (-10001)  /* Linux 6.15; this process */
#endif

#define WEFT__STACK_MAX         ((size_t)1 << 32) /* sanity bound, 4 GiB      */
#define IOV_BATCH               64u       /* ranges per process_madvise call */

/* -------------------------------------------------- process-wide state --- */

/* Probed once. Every thread would compute the same value, so a racing
 * second probe is harmless; the store is a release (pairs with the acquire
 * loads of guard_mode) so max_maps, written first, is seen with the mode. */
static atomic_int guard_mode;
static unsigned long max_maps;            /* read by the probe (mprotect mode) */
/* VMAs made by mprotect-guarded stacks, all pools together. Relaxed: a
 * budget counter, reserved with fetch_add and checked against the limit. */
static atomic_ulong mapped_vmas;
static atomic_flag limit_reported = ATOMIC_FLAG_INIT;

size_t weft__stack_pagesz(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);   /* glibc: a cached value */
}
#define pagesz weft__stack_pagesz

static unsigned long read_max_map_count(void)
{
	unsigned long v = 65530;  /* the kernel's default */
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 65530;
		fclose(f);
	}
	return v;
}

int weft__stack_guard_probe(void)
{
	int m = atomic_load_explicit(&guard_mode, memory_order_acquire);
	if (m != GUARD_UNKNOWN)
		return m;
	size_t ps = pagesz();
	m = GUARD_MPROTECT;
	void *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p != MAP_FAILED) {
		/* Trust the guard only if it faults: write(2) from it must fail
		 * with EFAULT. An emulator (qemu-user) may accept the advice and
		 * do nothing, which would leave stacks without guards. */
		int fds[2];
		if (madvise(p, ps, MADV_GUARD_INSTALL) == 0 && pipe2(fds, O_CLOEXEC) == 0) {
			if (write(fds[1], p, 1) < 0 && errno == EFAULT)
				m = GUARD_MADVISE;
			close(fds[0]);
			close(fds[1]);
		}
		munmap(p, 2 * ps);
	}
	if (m == GUARD_MPROTECT && !max_maps)
		max_maps = read_max_map_count();
	atomic_store_explicit(&guard_mode, m, memory_order_release); /* see guard_mode */
	return m;
}

void weft__stack_test_force_mprotect(unsigned long max_map_count)
{
	max_maps = max_map_count ? max_map_count : read_max_map_count();
	atomic_store_explicit(&guard_mode, GUARD_MPROTECT, memory_order_release);
}

bool weft__stack_guard_madvise(void)
{
	return weft__stack_guard_probe() == GUARD_MADVISE;
}

unsigned long weft__stack_mapping_count(void)
{
	return atomic_load_explicit(&mapped_vmas, memory_order_relaxed);
}

unsigned long weft__stack_vma_left(void)
{
	unsigned long budget = max_maps - max_maps / 8;
	unsigned long used = weft__stack_mapping_count();
	return used < budget ? budget - used : 0;
}

/* mprotect mode: may we make `want` more VMAs? Reserves them if so. */
static bool vma_reserve(unsigned long want)
{
	unsigned long budget = max_maps - max_maps / 8;
	unsigned long cur = atomic_load_explicit(&mapped_vmas, memory_order_relaxed);
	do {
		if (cur + want > budget)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&mapped_vmas, &cur, cur + want,
	                                                memory_order_relaxed,
	                                                memory_order_relaxed));
	return true;
}

void weft__stack_vma_unreserve(unsigned long n)
{
	atomic_fetch_sub_explicit(&mapped_vmas, n, memory_order_relaxed);
}

static void report_map_limit(void)
{
	if (atomic_flag_test_and_set_explicit(&limit_reported, memory_order_relaxed))
		return;
	fprintf(stderr,
		"weft: cannot create more coroutine stacks: this kernel lacks "
		"MADV_GUARD_INSTALL (Linux >= 6.13), so each stack's guard page costs "
		"memory mappings, and %lu of vm.max_map_count=%lu are in use by stacks "
		"(7/8 is weft's share). Raise the limit (sysctl -w vm.max_map_count=N) "
		"or run fewer coroutines at once. Spawns fail with -EAGAIN meanwhile.\n",
		weft__stack_mapping_count(), max_maps);
}

/* Per advice: 0 not probed, 1 process_madvise works for it, 2 it does
 * not. Racing first calls both probe, harmlessly. relaxed: a hint that only
 * picks between two correct ways. */
static _Atomic unsigned char batch_ok[128];

static int advise_one(void *a, size_t len, int advice)
{
	return madvise(a, len, advice) == 0 ? 0 : -errno;
}

int weft__stack_advise(const struct iovec *v, unsigned n, int advice)
{
	unsigned char *okp = (unsigned char *)&batch_ok[advice & 127];
	unsigned i = 0;
	while (i < n) {
		unsigned k = n - i < IOV_BATCH ? n - i : IOV_BATCH;
		if (__atomic_load_n(okp, __ATOMIC_RELAXED) != 2 && advice < 128) {
			ssize_t r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD_GROUP, v + i,
			                    (size_t)k, advice, 0u);
			if (r >= 0) {
				__atomic_store_n(okp, 1, __ATOMIC_RELAXED);
				/* a short count: the ranges it did not reach go one by one */
				size_t done = (size_t)r;
				for (; k && done >= v[i].iov_len; k--, i++)
					done -= v[i].iov_len;
				if (!k)
					continue;
			} else if (errno == ENOMEM || errno == EFAULT) {
				return -errno;     /* the advice itself failed: no retry */
			} else {
				/* EINVAL, EBADF, ENOSYS, EPERM: not for us here */
				__atomic_store_n(okp, 2, __ATOMIC_RELAXED);
			}
		}
		int e = advise_one(v[i].iov_base, v[i].iov_len, advice);
		if (e)
			return e;
		i++;
	}
	return 0;
}

void *weft__stack_map(size_t stride, unsigned n, unsigned long *vmas, int *err)
{
	size_t ps = pagesz(), len = stride * n;
	int mode = weft__stack_guard_probe();
	*vmas = 0;
	if (mode == GUARD_MPROTECT) {
		*vmas = 2ul * n;
		if (!vma_reserve(*vmas)) {
			report_map_limit();
			*err = -EAGAIN;
			return NULL;
		}
	}
	void *base = weft__fault("stack.mmap") ? (errno = ENOMEM, MAP_FAILED)
	           : mmap(NULL, len, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		*err = errno == ENOMEM ? -ENOMEM : -errno;
		goto fail;
	}
	/* the guards: IOV_BATCH at a time (1 KiB of iovecs: this runs on a
	 * coroutine's stack, in spawn) */
	for (unsigned i = 0; i < n; i += IOV_BATCH) {
		unsigned k = n - i < IOV_BATCH ? n - i : IOV_BATCH;
		int r = 0;
		if (weft__fault("stack.guard")) {
			r = -ENOMEM;
		} else if (mode == GUARD_MADVISE) {
			struct iovec v[IOV_BATCH];
			for (unsigned j = 0; j < k; j++)
				v[j] = (struct iovec){ (char *)base + (size_t)(i + j) * stride, ps };
			r = weft__stack_advise(v, k, MADV_GUARD_INSTALL);
		} else {
			for (unsigned j = 0; j < k && !r; j++)
				if (mprotect((char *)base + (size_t)(i + j) * stride, ps, PROT_NONE))
					r = -errno;
		}
		if (r) {
			*err = r == -ENOMEM ? -EAGAIN : r;
			if (*err == -EAGAIN)
				report_map_limit();
			munmap(base, len);
			goto fail;
		}
	}
	return base;
fail:
	if (*vmas)
		weft__stack_vma_unreserve(*vmas);
	*vmas = 0;
	return NULL;
}

/* ------------------------------------------------------------ sizes ------- */

int weft__stack_size_check(size_t req, size_t *rounded)
{
	size_t ps = pagesz();
	if (req < WEFT_STACK_MIN || req > WEFT__STACK_MAX)
		return -EINVAL;
	*rounded = (req + ps - 1) & ~(ps - 1);
	return 0;
}
