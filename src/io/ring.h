/*
 * The ring a worker parks in. ring.c knows nothing of coroutines: each CQE's
 * user_data points to a struct weft__ring_op whose callback the reaping thread
 * runs with the CQE's res and flags.
 *
 * Ownership: one ring per worker, created and driven by that worker only
 * (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN when the kernel has them,
 * COOP_TASKRUN otherwise). Other threads may call weft__ring_wake(),
 * weft__ring_rescue() and weft__ring_hostage(); a signal handler on the
 * owner's thread may call weft__ring_flush_signal() (see "Rescue" in ring.c).
 */
#ifndef WEFT_RING_H
#define WEFT_RING_H

#include <liburing.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct weft__ring_op;
typedef void (*weft__ring_cb)(struct weft__ring_op *op, int res, uint32_t cqe_flags);

/* A completion record. Lives wherever the submitter wants (for a coroutine's
 * I/O: on its stack) and must stay valid until its CQE has been reaped. */
struct weft__ring_op {
	weft__ring_cb cb;
};

/* Counters of one ring since it was set up. Written by the owner only, each
 * with a relaxed load and a relaxed store (no locked RMW on the submit/reap
 * path: nobody else writes them); read by any thread with relaxed loads
 * (weft_rt_stats). Relaxed is enough both ways: each counter is a
 * self-contained monotone value, nothing is published through it, and a
 * reader wants a recent sample, not a snapshot consistent across counters. */
struct weft__ring_stats {
	_Atomic uint64_t sqes;         /* SQEs the kernel consumed (user + internal) */
	_Atomic uint64_t cqes;         /* CQEs reaped (user + internal: wakes, polls) */
	_Atomic uint64_t enters;       /* io_uring_enter calls made through liburing  */
	_Atomic uint64_t sq_full;      /* no free SQE: submitted early to make room  */
	_Atomic uint64_t cq_overflow;  /* reaps that found the CQ overflow flag set   */
	_Atomic uint64_t rescued;      /* CQEs reaped by a rescuer, not the owner:
	                                  written by rescuers (RMW), not the owner  */
	_Atomic uint64_t rescued_ops;  /* callbacks a rescuer ran (after them), ditto */
};

/* A plain copy of struct weft__ring_stats, for readers. */
struct weft__ring_stats_sample {
	uint64_t sqes, cqes, enters, sq_full, cq_overflow, rescued, rescued_ops;
};

struct weft__ring {
	struct io_uring uring;
	unsigned flags;            /* IORING_SETUP_* actually in effect          */
	unsigned pending;          /* SQEs prepared, not yet submitted           */
	unsigned inflight;         /* ops submitted whose CQE is not yet reaped  */
	int wake_fd;               /* eventfd for wakes from non-ring threads    */
	/* further private fields of ring.c (owner only unless said otherwise) */
	unsigned ipending;         /* internal SQEs (poll, MSG_RING) not submitted */
	unsigned reserved;         /* SQEs left of weft__ring_reserve's room      */
	bool has_msg_ring;         /* IORING_OP_MSG_RING probed                   */
	bool cqe_skip;             /* IORING_FEAT_CQE_SKIP: sender gets no CQE    */
	bool poll_multishot;       /* cleared when the kernel rejects POLL_ADD_MULTI */
	uint32_t ops[8];           /* bitmap of supported IORING_OP_* (probe)     */
	_Atomic unsigned wake_pending; /* a wake is on its way: later wakers skip.
	                                  Any thread (see ring.c)                  */
	struct weft__ring_stats stats; /* owner writes, anyone reads (see above)  */
	/* Rescue (ring.c): */
	volatile sig_atomic_t owner_depth; /* > 0 while the owner is in ring code
	                                      or filling SQEs (weft__ring_hold)   */
	_Atomic unsigned busy_hint;    /* pending + inflight, for other threads   */
	_Atomic bool cq_busy;          /* CQ consumption: the owner or a rescuer  */
	_Atomic unsigned rescued;      /* final user CQEs a rescuer reaped that the
	                                  owner has not yet taken off inflight     */
	_Atomic unsigned submits;      /* bumped (release) before every submit    */
};

/* Create the ring (entries SQEs). On failure returns -errno and writes a
 * message naming the cause (io_uring disabled by sysctl, seccomp, old kernel)
 * into why[why_len]; nothing is left open. Fault points (-Dfault_injection):
 * "ring.setup" (io_uring_setup fails -ENOMEM), "ring.eventfd" (-ENOMEM),
 * "ring.submit" (the first submit fails -EAGAIN). */
int  weft__ring_init(struct weft__ring *r, unsigned entries, char *why, size_t why_len);
void weft__ring_exit(struct weft__ring *r);

/* The owner brackets every stretch in which it fills SQEs with hold and
 * release (they nest): weft__ring_flush_signal() submits nothing while the
 * owner holds its ring, so it never sends a half-filled SQE. */
static inline void weft__ring_hold(struct weft__ring *r)
{
	r->owner_depth = r->owner_depth + 1;
	/* The handler runs on this thread: a compiler barrier is all the
	 * ordering it needs against the ring state we are about to touch. */
	atomic_signal_fence(memory_order_seq_cst);
}
static inline void weft__ring_release(struct weft__ring *r)
{
	atomic_signal_fence(memory_order_seq_cst);
	r->owner_depth = r->owner_depth - 1;
}

/* An SQE to fill (the caller holds the ring); never NULL: when the SQ is full it submits first (and when
 * the kernel refuses with -EAGAIN/-EBUSY, reaps and retries). Owner only.
 * The caller must set user_data with weft__ring_set_op(). Fault points:
 * "ring.sqe" (the SQ looks full once), "ring.submit" (that early submit fails
 * -EAGAIN once): both take the recovery path, never a failure to the caller. */
struct io_uring_sqe *weft__ring_sqe(struct weft__ring *r);
/* Make room for n SQEs in a row (n <= the ring's entries), so that a linked
 * chain prepared next is not split across two submits. Owner only, holding
 * the ring. */
void weft__ring_reserve(struct weft__ring *r, unsigned n);
static inline void weft__ring_set_op(struct io_uring_sqe *sqe, struct weft__ring_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}

/* Read the ring's counters (relaxed loads). Any thread. */
void weft__ring_stats_read(const struct weft__ring *r, struct weft__ring_stats_sample *out);

/* Whether the kernel supports opcode op (IORING_OP_*), from the probe. */
static inline bool weft__ring_op_supported(const struct weft__ring *r, unsigned op)
{
	return op < 256 && (r->ops[op / 32] >> (op % 32) & 1u);
}

/* Submit what is pending and run the callbacks of every CQE already there,
 * without blocking. Returns how many callbacks ran. Owner only; call once per
 * scheduling round while weft__ring_busy(). */
int  weft__ring_poll(struct weft__ring *r);
static inline bool weft__ring_busy(const struct weft__ring *r)
{
	return r->pending != 0 || r->inflight != 0;
}

/* Submit what is pending, then block until a CQE arrives, a wake arrives, or
 * timeout_ns passes (< 0: no timeout); runs the callbacks. Returns how many
 * callbacks ran (wakes not counted). Owner only. */
int  weft__ring_wait(struct weft__ring *r, int64_t timeout_ns);

/* Make `to`'s owner return from weft__ring_wait (now, or at once when it next
 * waits). `from` is the caller's own ring when the caller owns one (MSG_RING),
 * NULL otherwise (eventfd). Wakes are coalesced: a wake already on its way
 * makes this a no-op. Any thread. */
void weft__ring_wake(struct weft__ring *from, struct weft__ring *to);

/* Another thread's view of the owner's ring while its owner is held up by a
 * coroutine that does not switch: WEFT__HOSTAGE_CQ when completions wait in
 * the CQ (weft__ring_rescue can reap them), WEFT__HOSTAGE_OWNER when only the
 * owner's thread can move them on (unsubmitted SQEs, or completions the
 * kernel keeps as task work: weft__ring_flush_signal), 0 when nothing waits.
 * Any thread; a sample. */
enum { WEFT__HOSTAGE_CQ = 1, WEFT__HOSTAGE_OWNER = 2 };
unsigned weft__ring_hostage(struct weft__ring *r);

/* From a signal handler on the owner's thread (async-signal-safe): submit
 * the SQEs prepared and run the completions the kernel defers to the owner,
 * so that their CQEs land in the CQ. Does nothing and returns false when the
 * signal interrupted the owner in ring code (weft__ring_hold). */
bool weft__ring_flush_signal(struct weft__ring *r);

/* Any thread but the owner: reap the CQEs waiting in the CQ and run their
 * callbacks here, up to the first CQE that only the owner may handle (a wake
 * or the eventfd poll). Returns the callbacks run; 0 at once when the owner
 * is reaping itself. */
int weft__ring_rescue(struct weft__ring *r);

#endif /* WEFT_RING_H */
