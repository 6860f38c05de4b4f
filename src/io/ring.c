/*
 * ring.c — the io_uring a worker parks in.
 *
 * Terms. A *user op* is an SQE whose user_data points to a struct
 * weft__ring_op (its callback runs when the CQE is reaped). An *internal op*
 * is one of ours: its user_data is a small tag in the low three bits (op
 * records are pointers, so 8-aligned, so their low bits are zero):
 *
 *   TAG_WAKE   (1)        a wake posted into this ring by MSG_RING
 *   TAG_EVFD   (2)        the poll on this ring's eventfd fired
 *   TAG_SENT   (3) | to   our MSG_RING towards ring `to` completed (only seen
 *                         on failure when the kernel can skip success CQEs)
 *
 * Internal CQEs never reach callbacks and are not counted by poll/wait; they
 * exist only to end a wait. `pending` and `inflight` count user ops only, so
 * weft__ring_busy() is false on an idle ring even though the eventfd poll is
 * always armed.
 *
 * Wakes. weft__ring_wake(from, to) sets to->wake_pending with an atomic
 * exchange; only the caller that turned it from 0 to 1 sends anything, either
 * an IORING_OP_MSG_RING from its own ring (`from`, submitted at once) or a
 * write to to->wake_fd, an eventfd the ring polls. The owner clears the flag,
 * again with an exchange, when it has reaped the wake CQE, before it returns
 * from poll/wait; its scheduler re-checks its queues after that. Both
 * exchanges are seq_cst RMWs on one location, so they are totally ordered:
 *  - waker first (sees 1, skips): the owner's exchange reads the waker's
 *    release, so whatever the waker published before waking (a task pushed on
 *    the owner's queue) happens-before the owner's re-check; nothing is lost;
 *  - owner first: the waker reads 0 and sends a wake, which ends the next wait.
 * While the flag is 1 a wake CQE is on its way or unreaped, so a wait that
 * begins then returns at once.
 *
 * Setup falls back SINGLE_ISSUER|DEFER_TASKRUN -> COOP_TASKRUN -> plain on
 * -EINVAL, always with IORING_SETUP_TASKRUN_FLAG where accepted. Under
 * DEFER_TASKRUN nothing completes until the owner enters the kernel with
 * GETEVENTS; the kernel raises IORING_SQ_TASKRUN in the shared flags when
 * completions wait as task work (checked on 6.18), so weft__ring_poll() enters
 * only then, or on a CQ overflow, or (without TASKRUN_FLAG) whenever ops are in
 * flight: a busy worker's round costs no syscall when nothing completed.
 *
 * CQ overflow: the kernel (IORING_FEAT_NODROP) keeps overflowed CQEs on a list
 * and flags IORING_SQ_CQ_OVERFLOW; reaping loops, flushing with GETEVENTS, until
 * the CQ is empty and the flag is clear.
 *
 * Counters (r->stats, read by weft_rt_stats): SQEs the kernel consumed, CQEs
 * reaped, io_uring_enter calls, SQ-full events, overflowed reaps. liburing
 * decides itself whether io_uring_submit() enters; we count an enter where
 * its rule says it does (something to submit, GETEVENTS asked, or the kernel
 * flagged TASKRUN/CQ_OVERFLOW), and every get_events / wait call.
 *
 * Fault points (-Dfault_injection, see debug_hooks.h): "ring.setup" and
 * "ring.eventfd" fail creation with -ENOMEM, "ring.submit" fails a submit
 * with -EAGAIN; all three leave nothing open. "ring.sqe" makes an SQE
 * acquisition see a full SQ once (never inside a reservation, which would
 * split a linked chain), and "ring.submit" also fails its first make-room
 * submit: both run the SQ-full recovery (submit, reap, retry), which must
 * then succeed; SQE acquisition has no error to return to its callers.
 *
 * Rejected: io_uring_register_ring_fd(). The registration lives in the
 * registering thread's table, and io_uring_queue_exit() unregisters the same
 * slot in the *calling* thread's table; a ring torn down by another thread
 * would remove that thread's own registration. The gain (one fdget per
 * enter) is not worth the trap.
 *
 * Callbacks run with the CQE already consumed, on the owner, where they may
 * prepare SQEs (weft__ring_sqe) but must not call weft__ring_poll/wait, or on
 * a rescuer (below), where they must be safe on any thread (ops.c's are:
 * atomics and weft__wait_claim_wake).
 *
 * Rescue. A coroutine that runs for long without switching holds its worker,
 * and with it the ring: only the owner submits (SINGLE_ISSUER), under
 * DEFER_TASKRUN (and COOP_TASKRUN) completions stay in the kernel as task
 * work until the owner enters it, and only the owner reaps. The runtime's
 * monitor gets them out:
 *   1. weft__ring_hostage() tells it something waits: CQEs in the CQ (its
 *      tail and head are atomics), or work only the owner can move on
 *      (busy_hint: SQEs pending or ops in flight; or the kernel's TASKRUN
 *      flag).
 *   2. For the latter it signals the owner's thread. The handler calls
 *      weft__ring_flush_signal(): one io_uring_enter that submits what is
 *      prepared and runs the deferred task work, so the CQEs are posted. It
 *      is safe because the handler runs on the owner's own thread and does
 *      nothing while owner_depth > 0: the owner holds the ring (a counter,
 *      with compiler barriers) around all ring code and around every stretch
 *      in which it fills SQEs, so the handler finds the ring state whole
 *      (no half-filled SQE, no counter mid-update, no enter under way).
 *   3. weft__ring_rescue(), on the monitor's thread, consumes CQEs and runs
 *      their callbacks. CQ consumption (copying CQEs, advancing the head) is
 *      done under cq_busy by the owner and the rescuer alike, so each CQE is
 *      taken once; callbacks run outside it. The rescuer stops at the first
 *      wake or eventfd-poll CQE: those need the owner (wake_pending is the
 *      owner's to clear, a one-shot poll is re-armed through the SQ). It
 *      cannot touch `inflight` (owner-only): it adds the final CQEs it took
 *      to `rescued`, which the owner takes off inflight under cq_busy.
 */
#include "io/ring.h"
#include "debug_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <unistd.h>

_Static_assert(_Alignof(struct weft__ring_op) >= 8,
	       "op records must be 8-aligned: the low 3 bits of user_data tag internal ops");

enum {
	TAG_MASK = 7,
	TAG_WAKE = 1,
	TAG_EVFD = 2,
	TAG_SENT = 3,
};

#define REAP_BATCH 32
#define SQE_TRIES  1000

/* The kernel writes sq.kflags; a relaxed load is enough: we act on a stale
 * value only by entering once more (or once less, caught on the next round). */
static inline unsigned ring_kflags(const struct weft__ring *r)
{
	return __atomic_load_n(r->uring.sq.kflags, __ATOMIC_RELAXED);
}

/* Owner-only counter bump: relaxed load + relaxed store, no locked RMW
 * (only the owner writes; readers take relaxed samples, see ring.h). */
#define RSTAT_ADD(r, f, n)                                                     \
	atomic_store_explicit(&(r)->stats.f,                                    \
	    atomic_load_explicit(&(r)->stats.f, memory_order_relaxed) + (n),      \
	    memory_order_relaxed)

void weft__ring_stats_read(const struct weft__ring *r, struct weft__ring_stats_sample *o)
{
	/* relaxed: independent monotone samples, see struct weft__ring_stats */
	o->sqes = atomic_load_explicit(&r->stats.sqes, memory_order_relaxed);
	o->cqes = atomic_load_explicit(&r->stats.cqes, memory_order_relaxed);
	o->enters = atomic_load_explicit(&r->stats.enters, memory_order_relaxed);
	o->sq_full = atomic_load_explicit(&r->stats.sq_full, memory_order_relaxed);
	o->cq_overflow = atomic_load_explicit(&r->stats.cq_overflow, memory_order_relaxed);
	o->rescued = atomic_load_explicit(&r->stats.rescued, memory_order_relaxed);
	o->rescued_ops = atomic_load_explicit(&r->stats.rescued_ops, memory_order_relaxed);
	o->cqes += o->rescued;      /* reaped is reaped, whoever did it */
}

/* Owner, after pending or inflight changed: the mirror other threads read.
 * relaxed: a hint for the monitor's decision to rescue, nothing published. */
static inline void hint(struct weft__ring *r)
{
	atomic_store_explicit(&r->busy_hint, r->pending + r->inflight, memory_order_relaxed);
}

/* CQ consumption lock (see Rescue at the top). acquire/release: the CQE
 * copies and head advance of one holder happen before the next holder's.
 * The owner spins: a rescuer holds it only to copy up to REAP_BATCH CQEs. */
static inline bool cq_try(struct weft__ring *r)
{
	return !atomic_exchange_explicit(&r->cq_busy, true, memory_order_acquire);
}
static inline void cq_lock(struct weft__ring *r)
{
	while (!cq_try(r))
		while (atomic_load_explicit(&r->cq_busy, memory_order_relaxed))
			sched_yield();      /* the rescuer may have been preempted */
}
static inline void cq_unlock(struct weft__ring *r)
{
	atomic_store_explicit(&r->cq_busy, false, memory_order_release);
}

static int ring_get_events(struct weft__ring *r)
{
	RSTAT_ADD(r, enters, 1);
	return io_uring_get_events(&r->uring);
}

static void set_supported(struct weft__ring *r, unsigned op)
{
	r->ops[op / 32] |= 1u << (op % 32);
}

static __attribute__((cold)) void explain(int err, char *why, size_t why_len)
{
	if (!why || !why_len)
		return;
	if (err == -EPERM || err == -EACCES) {
		int disabled = -1;
		FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
		if (f) {
			if (fscanf(f, "%d", &disabled) != 1)
				disabled = -1;
			fclose(f);
		}
		if (disabled == 2)
			snprintf(why, why_len, "io_uring is disabled: kernel.io_uring_disabled = 2");
		else if (disabled == 1)
			snprintf(why, why_len, "io_uring is restricted: kernel.io_uring_disabled = 1 "
				 "and this process is not in kernel.io_uring_group");
		else
			snprintf(why, why_len, "io_uring is blocked by seccomp or a container policy");
	} else if (err == -ENOSYS) {
		snprintf(why, why_len, "io_uring is not available: kernel too old, or the "
			 "syscall is blocked by seccomp or a container policy");
	} else {
		snprintf(why, why_len, "io_uring_queue_init failed: %s", strerror(-err));
	}
}

/* Move what the kernel consumed from the SQ into the counts. The SQ is FIFO
 * but mixes user and internal SQEs; a short submit (only under memory
 * pressure) is charged to user SQEs first. */
static void account(struct weft__ring *r, unsigned before)
{
	unsigned left = io_uring_sq_ready(&r->uring);
	unsigned done = before > left ? before - left : 0;
	if (done)
		RSTAT_ADD(r, sqes, done);
	if (left == 0) {
		r->inflight += r->pending;
		r->pending = 0;
		r->ipending = 0;
		hint(r);
		return;
	}
	unsigned u = done < r->pending ? done : r->pending;
	r->pending -= u;
	r->inflight += u;
	done -= u;
	r->ipending -= done < r->ipending ? done : r->ipending;
	hint(r);
}

/*
 * Owner, just before every system call that may submit SQEs. A rescuer runs
 * the callbacks of ops whose records the owner wrote before submitting them;
 * the kernel carries that order (the CQE exists only after the submit), but
 * no atomic of ours does, so the rescuer could not show it to TSan or argue
 * it in C11 terms. release here, acquire in weft__ring_rescue after it saw
 * the CQEs: every op record written before a submit whose CQE the rescuer
 * reaps is visible to it (the bump precedes the syscall, so any CQE of that
 * submit is posted after it). Plain load + store: only the owner writes it.
 */
static inline void publish(struct weft__ring *r)
{
	atomic_store_explicit(&r->submits,
	                      atomic_load_explicit(&r->submits, memory_order_relaxed) + 1,
	                      memory_order_release);
}

static int ring_submit(struct weft__ring *r, bool getevents)
{
	publish(r);
	unsigned before = io_uring_sq_ready(&r->uring);
	/* liburing enters when there is something to submit, GETEVENTS is
	 * asked, or the kernel wants task work run / an overflow flushed. */
	if (before || getevents || (ring_kflags(r) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)))
		RSTAT_ADD(r, enters, 1);
	int ret = getevents ? io_uring_submit_and_get_events(&r->uring)
			    : io_uring_submit(&r->uring);
	account(r, before);
	return ret;
}

static int ring_reap(struct weft__ring *r);

/* An SQE, never NULL: submit when the SQ is full; when the kernel refuses
 * more (-EBUSY/-EAGAIN: completions backed up), reap and retry. */
static struct io_uring_sqe *ring_get_sqe(struct weft__ring *r)
{
	if (r->reserved) {
		/* inside a reservation: room was made, and a fault here would
		 * split the linked chain being prepared */
		r->reserved--;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
		if (sqe)
			return sqe;
	}
	for (int i = 0; i < SQE_TRIES; i++) {
		/* The faults act on the first try only, so a retry always sees
		 * the real ring and a 100% fault rate cannot exhaust SQE_TRIES. */
		struct io_uring_sqe *sqe = i == 0 && weft__fault("ring.sqe") ? NULL
		                         : io_uring_get_sqe(&r->uring);
		if (sqe)
			return sqe;
		if (i == 0)
			RSTAT_ADD(r, sq_full, 1);
		int ret = i == 0 && weft__fault("ring.submit") ? -EAGAIN : ring_submit(r, false);
		if (ret == -EBUSY || ret == -EAGAIN || ret == -EINTR || (i > 0 && ret <= 0)) {
			ring_reap(r);
			if (io_uring_sq_space_left(&r->uring) == 0)
				ring_get_events(r);
		}
	}
	fprintf(stderr, "weft: io_uring SQ stays full after %d submits; giving up\n", SQE_TRIES);
	abort();
}

void weft__ring_reserve(struct weft__ring *r, unsigned n)
{
	if (io_uring_sq_space_left(&r->uring) < n)
		RSTAT_ADD(r, sq_full, 1);
	for (int i = 0; i < SQE_TRIES && io_uring_sq_space_left(&r->uring) < n; i++) {
		int ret = ring_submit(r, false);
		if (ret < 0 || i > 0) {
			ring_reap(r);
			ring_get_events(r);
		}
	}
	if (io_uring_sq_space_left(&r->uring) < n) {
		fprintf(stderr, "weft: cannot make room for %u SQEs\n", n);
		abort();
	}
	/* A reap above may have run callbacks that prepared SQEs; room was
	 * re-checked after them. The next n acquisitions take it unfaulted. */
	r->reserved = n;
}

struct io_uring_sqe *weft__ring_sqe(struct weft__ring *r)
{
	struct io_uring_sqe *sqe = ring_get_sqe(r);
	r->pending++;
	hint(r);
	return sqe;
}

static struct io_uring_sqe *internal_sqe(struct weft__ring *r)
{
	struct io_uring_sqe *sqe = ring_get_sqe(r);
	r->ipending++;
	return sqe;
}

static void arm_eventfd(struct weft__ring *r)
{
	struct io_uring_sqe *sqe = internal_sqe(r);
	if (r->poll_multishot)
		io_uring_prep_poll_multishot(sqe, r->wake_fd, POLLIN);
	else
		io_uring_prep_poll_add(sqe, r->wake_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, TAG_EVFD);
}

static void write_eventfd(int fd)
{
	uint64_t one = 1;
	/* Only EINTR can make this fail: the counter would need 2^64 - 2 wakes. */
	while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static __attribute__((cold)) void probe(struct weft__ring *r)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&r->uring);
	if (p) {
		for (unsigned op = 0; op < 256 && op <= p->last_op; op++)
			if (io_uring_opcode_supported(p, (int)op))
				set_supported(r, op);
		io_uring_free_probe(p);
	} else {
		/* No probe (before 5.6): assume the basic set that 5.1 had. */
		set_supported(r, IORING_OP_NOP);
		set_supported(r, IORING_OP_READV);
		set_supported(r, IORING_OP_WRITEV);
		set_supported(r, IORING_OP_FSYNC);
		set_supported(r, IORING_OP_POLL_ADD);
	}
	r->has_msg_ring = weft__ring_op_supported(r, IORING_OP_MSG_RING);
	r->cqe_skip = (r->uring.features & IORING_FEAT_CQE_SKIP) != 0;
}

int weft__ring_init(struct weft__ring *r, unsigned entries, char *why, size_t why_len)
{
	static const unsigned tries[] = {
#if !defined(WEFT_VALGRIND)   /* see weft__ring_wait: valgrind waits in poll(2) */
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
#endif
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	memset(r, 0, sizeof *r);
	r->wake_fd = -1;
	atomic_init(&r->wake_pending, 0);
	if (why && why_len)
		why[0] = '\0';
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		p.flags = tries[i];
		if (weft__fault("ring.setup")) {
			ret = -ENOMEM;     /* io_uring_setup's answer under memory pressure */
			break;
		}
		ret = io_uring_queue_init_params(entries, &r->uring, &p);
		if (ret == 0) {
			r->flags = p.flags;
			break;
		}
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0) {
		explain(ret, why, why_len);
		return ret;
	}
	r->wake_fd = weft__fault("ring.eventfd") ? (errno = ENOMEM, -1)
	           : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0) {
		ret = -errno;
		if (why && why_len)
			snprintf(why, why_len, "eventfd: %s", strerror(errno));
		io_uring_queue_exit(&r->uring);
		return ret;
	}
	probe(r);
	r->poll_multishot = true;
	arm_eventfd(r);
	ret = weft__fault("ring.submit") ? -EAGAIN : ring_submit(r, false);
	if (ret < 0) {
		if (why && why_len)
			snprintf(why, why_len, "io_uring_submit: %s", strerror(-ret));
		weft__ring_exit(r);
		return ret;
	}
	return 0;
}

void weft__ring_exit(struct weft__ring *r)
{
	if (r->wake_fd >= 0) {
		io_uring_queue_exit(&r->uring);
		close(r->wake_fd);
		r->wake_fd = -1;
	}
}

/* Handle one internal CQE. Returns true when it was a wake. */
static bool internal_cqe(struct weft__ring *r, uint64_t ud, int res, uint32_t flags)
{
	switch (ud & TAG_MASK) {
	case TAG_WAKE:
		return true;
	case TAG_EVFD: {
		uint64_t v;
		/* Drain so the next write wakes the poll again; EAGAIN = already empty. */
		while (read(r->wake_fd, &v, sizeof v) < 0 && errno == EINTR)
			;
		if (res == -EINVAL && r->poll_multishot)
			r->poll_multishot = false;   /* kernel without POLL_ADD_MULTI */
		if (!(flags & IORING_CQE_F_MORE))
			arm_eventfd(r);              /* submitted with the next submit */
		return res >= 0;
	}
	case TAG_SENT: {
		/* MSG_RING failed (target gone or its CQ full): wake by eventfd.
		 * to->wake_pending is still 1, owned by this wake. */
		struct weft__ring *to = (struct weft__ring *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);
		if (res < 0)
			write_eventfd(to->wake_fd);
		return false;
	}
	default:
		fprintf(stderr, "weft: io_uring CQE with unknown tag %#llx\n", (unsigned long long)ud);
		abort();
	}
}

/* A CQE copied out of the CQ, so the slot can be handed back before the
 * callback runs. */
struct cqe_copy { uint64_t ud; int32_t res; uint32_t flags; };

/* Under cq_busy: copy up to REAP_BATCH CQEs and consume them. A rescuer
 * stops at the first wake or eventfd-poll CQE, which only the owner may
 * handle (see Rescue at the top). Owner reaps and rescues share this. */
static unsigned cq_take(struct weft__ring *r, struct cqe_copy *batch, bool rescuer)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&r->uring, head, cqe) {
		uint64_t ud = cqe->user_data;
		if (rescuer && (ud & TAG_MASK) && (ud & TAG_MASK) != TAG_SENT)
			break;
		batch[n].ud = ud;
		batch[n].res = cqe->res;
		batch[n].flags = cqe->flags;
		if (++n == REAP_BATCH)
			break;
	}
	io_uring_cq_advance(&r->uring, n);
	return n;
}

/* Run the callbacks of every CQE there, flushing overflowed CQEs, until the
 * CQ is empty. Clears wake_pending when a wake was among them. */
static int ring_reap(struct weft__ring *r)
{
	struct cqe_copy batch[REAP_BATCH];
	bool woken = false, overflow = false;
	int ran = 0;

	for (int rounds = 0; rounds < 1 << 16; rounds++) {
		unsigned n;
		cq_lock(r);
		/* relaxed: cq_busy's acquire ordered the rescuer's add before us */
		unsigned took = atomic_exchange_explicit(&r->rescued, 0, memory_order_relaxed);
		if (took) {
			r->inflight -= took < r->inflight ? took : r->inflight;
			hint(r);
		}
		/* Consume before calling back: a callback may prepare SQEs, and an
		 * SQ-full submit inside it may reap again. */
		n = cq_take(r, batch, false);
		cq_unlock(r);
		if (n == 0) {
			/* Overflowed CQEs wait in the kernel: GETEVENTS flushes them. */
			if (!(ring_kflags(r) & IORING_SQ_CQ_OVERFLOW))
				break;
			if (!overflow)
				RSTAT_ADD(r, cq_overflow, 1);
			overflow = true;
			ring_get_events(r);
			if (io_uring_cq_ready(&r->uring) == 0)
				break;
			continue;
		}
		RSTAT_ADD(r, cqes, n);
		for (unsigned i = 0; i < n; i++) {
			uint64_t ud = batch[i].ud;
			if (ud & TAG_MASK) {
				woken |= internal_cqe(r, ud, batch[i].res, batch[i].flags);
				continue;
			}
			struct weft__ring_op *op = (struct weft__ring_op *)(uintptr_t)ud;
			if (!(batch[i].flags & IORING_CQE_F_MORE) && r->inflight > 0) {
				r->inflight--;
				hint(r);
			}
			op->cb(op, batch[i].res, batch[i].flags);
			ran++;
		}
	}
	if (woken) {
		/* seq_cst RMW, pairs with the exchange in weft__ring_wake(): see the
		 * top of this file. The caller re-checks its queues after we return. */
		atomic_exchange_explicit(&r->wake_pending, 0, memory_order_seq_cst);
	}
	return ran;
}

int weft__ring_poll(struct weft__ring *r)
{
	weft__ring_hold(r);
	if (r->pending || r->ipending) {
		/* GETEVENTS too: under DEFER_TASKRUN that is what posts completions. */
		ring_submit(r, r->inflight != 0 || (r->flags & IORING_SETUP_DEFER_TASKRUN));
	} else if (r->inflight) {
		/* With TASKRUN_FLAG the kernel raises IORING_SQ_TASKRUN when
		 * completions wait as task work (DEFER_TASKRUN, COOP_TASKRUN): enter
		 * only then. Without it, enter whenever ops are in flight. */
		unsigned kf = ring_kflags(r);
		if (!(r->flags & IORING_SETUP_TASKRUN_FLAG) ||
		    (kf & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)))
			ring_get_events(r);
	} else if (ring_kflags(r) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) {
		ring_get_events(r);
	}
	int ran = ring_reap(r);
	weft__ring_release(r);
	return ran;
}

int weft__ring_wait(struct weft__ring *r, int64_t timeout_ns)
{
	if (timeout_ns == 0 || io_uring_cq_ready(&r->uring))
		return weft__ring_poll(r);
#if defined(WEFT_VALGRIND)
	/* Valgrind (3.19) keeps its big lock across io_uring_enter, so a worker
	 * waiting there stops every other thread, its wakers included: the
	 * valgrind stress pass hung at once. Under valgrind, submit and reap
	 * without waiting, then block in poll(2) on the ring fd, which valgrind
	 * knows may block. Valgrind builds make plain rings (no DEFER_TASKRUN,
	 * no COOP_TASKRUN, see weft__ring_init): completions are posted as they
	 * come, so the ring fd polls readable for them (a DEFER_TASKRUN ring did
	 * not wake the poll for a MSG_RING wake). */
	int got = weft__ring_poll(r);
	if (got)
		return got;
	struct pollfd pfd = { .fd = r->uring.ring_fd, .events = POLLIN };
	poll(&pfd, 1, timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000));
	return weft__ring_poll(r);
#endif

	struct __kernel_timespec ts = {
		.tv_sec = timeout_ns / 1000000000,
		.tv_nsec = timeout_ns % 1000000000,
	};
	struct io_uring_cqe *cqe = NULL;
	weft__ring_hold(r);
	publish(r);
	unsigned before = io_uring_sq_ready(&r->uring);
	RSTAT_ADD(r, enters, 1);   /* waits for one CQE: always enters */
	int ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1,
						   timeout_ns < 0 ? NULL : &ts, NULL);
	account(r, before);
	int ran = ring_reap(r);
	weft__ring_release(r);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
		return ran ? ran : ret;
	return ran;
}

void weft__ring_wake(struct weft__ring *from, struct weft__ring *to)
{
	if (from == to)
		return;   /* the caller owns `to` and is running: nothing to end */
	/* seq_cst RMW: only the 0 -> 1 transition sends. Pairs with the owner's
	 * exchange in ring_reap(); release part publishes what the caller queued
	 * for `to` before waking it. */
	if (atomic_exchange_explicit(&to->wake_pending, 1, memory_order_seq_cst))
		return;
	if (from && from->has_msg_ring) {
		weft__ring_hold(from);
		struct io_uring_sqe *sqe = internal_sqe(from);
		io_uring_prep_msg_ring(sqe, to->uring.ring_fd, 0, TAG_WAKE, 0);
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)to | TAG_SENT);
		if (from->cqe_skip)
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		int ret = ring_submit(from, false);
		weft__ring_release(from);
		if (ret >= 0)
			return;
		/* Not submitted: it stays in from's SQ and goes with the next
		 * submit; wake by eventfd now too (a spurious wake is harmless). */
	}
	write_eventfd(to->wake_fd);
}

/* ------------------------------------------------------------ rescue --- */

unsigned weft__ring_hostage(struct weft__ring *r)
{
	/* acquire on the kernel's tail (CQEs written before it); relaxed on
	 * the head, which the owner or a rescuer moves: a sample either way.
	 * (liburing's io_uring_cq_ready reads the head non-atomically.) */
	if (__atomic_load_n(r->uring.cq.ktail, __ATOMIC_ACQUIRE) !=
	    __atomic_load_n(r->uring.cq.khead, __ATOMIC_RELAXED))
		return WEFT__HOSTAGE_CQ;
	/* relaxed: a hint (see hint()); the kernel's flags word likewise. */
	if (atomic_load_explicit(&r->busy_hint, memory_order_relaxed) ||
	    (ring_kflags(r) & IORING_SQ_TASKRUN))
		return WEFT__HOSTAGE_OWNER;
	return 0;
}

bool weft__ring_flush_signal(struct weft__ring *r)
{
	if (r->owner_depth)
		return false;           /* interrupted in ring code: it moves on itself */
	/* Whole ring state (see Rescue): submitting here is what the owner's
	 * next poll would do. Under DEFER_TASKRUN/COOP_TASKRUN the enter with
	 * GETEVENTS also runs the deferred completions; a plain ring posts them
	 * without us, so only pending SQEs need an enter there. */
	bool deferred = r->flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN);
	if (r->pending || r->ipending || deferred) {
		weft__ring_hold(r);
		ring_submit(r, deferred);
		weft__ring_release(r);
	}
	return true;
}

int weft__ring_rescue(struct weft__ring *r)
{
	struct cqe_copy batch[REAP_BATCH];
	int ran = 0;
	/* Bounded: a rescue is a stop-gap; whatever is left, the next one or
	 * the owner takes. */
	for (int rounds = 0; rounds < 64; rounds++) {
		if (!cq_try(r))
			return ran;         /* the owner is reaping: nothing is hostage */
		unsigned n = cq_take(r, batch, true), fin = 0;
		for (unsigned i = 0; i < n; i++)
			if (!(batch[i].ud & TAG_MASK) && !(batch[i].flags & IORING_CQE_F_MORE))
				fin++;
		/* acquire: see publish() — the records of the ops just taken. */
		(void)atomic_load_explicit(&r->submits, memory_order_acquire);
		/* relaxed: read by the owner under cq_busy, whose release/acquire
		 * orders this add before the owner's exchange. */
		if (fin)
			atomic_fetch_add_explicit(&r->rescued, fin, memory_order_relaxed);
		cq_unlock(r);
		if (n == 0)
			return ran;
		/* relaxed RMW: rescuers are the only writers of this counter. */
		atomic_fetch_add_explicit(&r->stats.rescued, n, memory_order_relaxed);
		unsigned cbs = 0;
		for (unsigned i = 0; i < n; i++) {
			if (batch[i].ud & TAG_MASK) {
				internal_cqe(r, batch[i].ud, batch[i].res, batch[i].flags);  /* TAG_SENT only: any thread */
				continue;
			}
			struct weft__ring_op *op = (struct weft__ring_op *)(uintptr_t)batch[i].ud;
			op->cb(op, batch[i].res, batch[i].flags);
			cbs++;
		}
		/* counted after the callbacks ran, as the owner counts its own
		 * (weft_rt_stats' io_completions is both) */
		if (cbs)
			atomic_fetch_add_explicit(&r->stats.rescued_ops, cbs, memory_order_relaxed);
		ran += (int)cbs;
		if (n < REAP_BATCH)
			return ran;
	}
	return ran;
}
