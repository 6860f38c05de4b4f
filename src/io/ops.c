/*
 * ops.c — blocking-looking system calls for coroutines, on the worker's ring.
 *
 * An operation is a struct io_op on the calling coroutine's stack. The
 * coroutine opens an interruptible wait (src/sched/wait.h), prepares its SQE(s)
 * on the ring of the worker it runs on (weft__current_ring()) and parks. The
 * SQEs go to the kernel with the worker's next scheduling round.
 *
 * Every CQE that names the record — the op's own, its linked timeout's, the
 * ASYNC_CANCEL's — is counted in io_op.state (low bits), and the record must
 * outlive all of them: the kernel may still write the op's buffer until the
 * op's own CQE, and ring.c dereferences user_data for each. So:
 *
 *   - Normal end: each CQE callback stores its result and decrements the
 *     count; the one that takes it to zero claims the wait and wakes the
 *     coroutine. It copies the waiter (immutable once submitted) *before*
 *     its decrement and touches only that copy (and the type-stable task
 *     record) afterwards, because after the decrement the coroutine may
 *     return on another worker.
 *
 *   - Cancelled (weft_cancel claims the wait with -ECANCELED, possibly on
 *     another thread, possibly before anything was submitted): the coroutine
 *     wakes while CQEs are outstanding, perhaps on another worker. It bumps
 *     the count for an ASYNC_CANCEL and has it submitted on the op's ring —
 *     directly when it still runs on that ring's worker, else through
 *     weft__ring_call() (only the owner may submit: SINGLE_ISSUER). Then it
 *     *drains*: it opens a second, uninterruptible wait (io_op.drain), sets
 *     DRAIN in the state word and parks unless the count was already zero.
 *     The callback whose decrement empties the count sees DRAIN and wakes
 *     that wait (the coroutine is parked on it and cannot leave before, so
 *     reading io_op.drain after the decrement is safe). If the count was
 *     already zero the coroutine closes its own wait (claim, wake, park: the
 *     scheduler requeues a NOTIFIED task at once).
 *
 *   Both sides use acq_rel RMWs on `state`: a callback's release publishes
 *   the result it stored; the coroutine's fetch_or acquires every earlier
 *   decrement (one release sequence), and its release publishes io_op.drain
 *   to the callback that sees DRAIN.
 *
 *   A cancel that misses: ASYNC_CANCEL answers -ENOENT when it cannot find
 *   the op at that instant, and that is not proof the op is over. Found by
 *   stress/iocancel (a soak hang, ~1 run in 3 of 10 s): a recv/read with a
 *   linked timeout, cancelled, got -ENOENT from both the cancel and its own
 *   timeout and no CQE of its own, ever; the same cancel sent again found it
 *   at once. (The op was between a poll wake-up and its retry, which under
 *   DEFER_TASKRUN waits for the owner's next entry into the kernel.) So the
 *   main CQE's callback sets MAIN_SEEN, and a cancel answered -ENOENT before
 *   it is tried again: its count slot passes to an IORING_OP_TIMEOUT (1 ms,
 *   doubling to 1 s) whose callback cancels again unless MAIN_SEEN is set by
 *   then (the op had completed and its CQE was still on the way). Both go
 *   through weft__ring_call, since a callback may run on a rescuer (ring.c),
 *   which may not submit; io_op.call is free then (each use of it ran before
 *   the CQE that makes the next one).
 *
 * Deadlines: the nearer of a _timeout call's own timeout and the coroutine's
 * region deadline (weft_deadline_set, via weft__wait_deadline) becomes an
 * absolute IORING_OP_LINK_TIMEOUT linked to the op; when it fires the op ends
 * with -ECANCELED (or -EINTR) and the call returns -ETIMEDOUT. Both SQEs are
 * reserved together so one submit carries the link. The op's wait is opened
 * with WEFT__WAIT_OWN_TIMEOUT, so the runtime arms no timer of its own for
 * the region deadline: the kernel's timeout is the only one.
 *
 * Rejected: a runtime deadline on the wait (weft__wait_begin's deadline) — it
 * would wake the coroutine with the op still in the kernel, needing the
 * cancel-and-drain path on every timeout; the kernel's linked timeout ends
 * the op itself, one CQE later.
 */
#include "io/ring.h"
#include "sched/wait.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COUNT_MASK 0xffffu
#define DRAIN      0x10000u
#define MAIN_SEEN  0x20000u        /* the op's own CQE has been reaped */
#define RW_MAX     0x7ffff000u     /* what Linux moves in one read/write at most */

struct io_op {
	struct weft__ring_op main;     /* the operation's CQE         */
	struct weft__ring_op tmo;      /* its linked timeout's CQE    */
	struct weft__ring_op cancel;   /* the ASYNC_CANCEL's CQE      */
	struct weft__ring_op retry;    /* the pause before a re-cancel */
	struct weft__waiter wait;      /* interruptible; immutable once submitted */
	struct weft__waiter drain;     /* uninterruptible, after a cancel         */
	struct weft__remote_call call; /* submits the cancel on ring's owner    */
	struct weft__ring *ring;       /* where the SQEs went                   */
	struct __kernel_timespec ts;   /* absolute CLOCK_MONOTONIC deadline, read
	                                  by the kernel at submit                 */
	struct __kernel_timespec rts;  /* the re-cancel pause (relative)        */
	unsigned retries;              /* cancels answered -ENOENT too early    */
	bool timed;                    /* a LINK_TIMEOUT follows the op         */
	_Atomic uint32_t state;        /* outstanding CQEs | DRAIN              */
	int res;                       /* main CQE's res                        */
	int tres;                      /* linked timeout's res                  */
};

#define OP_OF(p, member) ((struct io_op *)((char *)(p) - offsetof(struct io_op, member)))

/* A CQE naming io has been reaped (ring owner). See the top of the file. */
static void cqe_done(struct io_op *io)
{
	struct weft__waiter w = io->wait;   /* copy: io may die after the decrement */
	/* acq_rel: release publishes the res stored by the caller; acquire
	 * pairs with the coroutine's fetch_or of DRAIN (publishing io->drain). */
	uint32_t old = atomic_fetch_sub_explicit(&io->state, 1, memory_order_acq_rel);
	if ((old & COUNT_MASK) != 1)
		return;
	if (old & DRAIN)
		weft__wait_claim_wake(&io->drain, 0);   /* it is parked on io->drain */
	else
		weft__wait_claim_wake(&w, 0);           /* fails if cancel won */
}

static void main_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct io_op *io = OP_OF(op, main);
	io->res = res;
	/* relaxed: a hint for cancel_cb/retry_cb, which only decide whether to
	 * cancel once more; our decrement below still counts the CQE. */
	atomic_fetch_or_explicit(&io->state, MAIN_SEEN, memory_order_relaxed);
	cqe_done(io);
}

static void tmo_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct io_op *io = OP_OF(op, tmo);
	io->tres = res;
	cqe_done(io);
}

static void prep_cancel(struct io_op *io)
{
	weft__ring_hold(io->ring);          /* filling an SQE: see ring.h */
	struct io_uring_sqe *sqe = weft__ring_sqe(io->ring);
	io_uring_prep_cancel(sqe, &io->main, 0);
	weft__ring_set_op(sqe, &io->cancel);
	weft__ring_release(io->ring);
}

/* Runs on io->ring's owner (weft__ring_call). */
static void remote_cancel(struct weft__remote_call *c)
{
	prep_cancel((struct io_op *)((char *)c - offsetof(struct io_op, call)));
}

/* Runs on io->ring's owner: the pause before cancelling again. */
static void remote_retry(struct weft__remote_call *c)
{
	struct io_op *io = (struct io_op *)((char *)c - offsetof(struct io_op, call));
	unsigned ms = io->retries < 10 ? 1u << io->retries : 1000u;
	io->retries++;
	io->rts.tv_sec = ms / 1000;
	io->rts.tv_nsec = (long long)(ms % 1000) * 1000000;
	weft__ring_hold(io->ring);
	struct io_uring_sqe *sqe = weft__ring_sqe(io->ring);
	io_uring_prep_timeout(sqe, &io->rts, 0, 0);
	weft__ring_set_op(sqe, &io->retry);
	weft__ring_release(io->ring);
}

/* Whether the op's own CQE has been reaped. A hint: a miss costs one more
 * cancel (-ENOENT again, or it cancels nothing). acquire: when the bit is
 * seen through main_cb's acq_rel decrement, io->res is visible too. */
static bool main_seen(struct io_op *io)
{
	return atomic_load_explicit(&io->state, memory_order_acquire) & MAIN_SEEN;
}

static void cancel_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct io_op *io = OP_OF(op, cancel);
	/* 0 or -EALREADY (running): the op's own CQE comes by itself. -ENOENT
	 * with that CQE not seen yet: maybe over, maybe missed (see the top of
	 * the file): try again shortly. This CQE's count slot passes on. */
	if (res == -ENOENT && !main_seen(io)) {
		io->call.fn = remote_retry;
		weft__ring_call(io->ring, &io->call);
		return;
	}
	cqe_done(io);
}

static void retry_cb(struct weft__ring_op *op, int res, uint32_t flags)
{
	struct io_op *io = OP_OF(op, retry);
	if (main_seen(io)) {
		cqe_done(io);               /* it had completed: nothing to cancel */
		return;
	}
	io->call.fn = remote_cancel;        /* the slot passes to the new cancel */
	weft__ring_call(io->ring, &io->call);
}

/* Open the wait and hand out the op's SQE, holding the ring (op_wait
 * releases it once the SQEs are filled). Returns 0 or -errno with nothing
 * to undo. */
static int op_begin(struct io_op *io, unsigned opcode, uint64_t timeout_ns, bool cancellable,
		    const char *what, struct io_uring_sqe **sqe_out)
{
	struct weft__ring *ring = weft__current_ring();
	if (!ring || !weft_self())
		return -EPERM;
	if (!weft__ring_op_supported(ring, opcode))
		return -EOPNOTSUPP;
	/* The nearer of the call's timeout and the coroutine's region deadline
	 * (weft_deadline_set); a non-cancellable op (close) has none. */
	uint64_t deadline = 0;
	if (cancellable) {
		/* The clock is read only when there is a deadline to compare:
		 * most ops have neither a timeout nor a region deadline, and a
		 * read per op was 1% of weft-echo's profile. */
		uint64_t now = timeout_ns ? weft_now() : 0;
		/* now + timeout saturates: UINT64_MAX means "as good as never",
		 * not a wrapped deadline in the past (H4's bad-input finding) */
		uint64_t own = !timeout_ns ? 0
		               : timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
		deadline = weft__wait_deadline(own);
		if (deadline) {
			if (!timeout_ns)   /* the region's deadline alone */
				now = weft_now();
			if (deadline <= now)
				return -ETIMEDOUT;
			if (!weft__ring_op_supported(ring, IORING_OP_LINK_TIMEOUT))
				return -EOPNOTSUPP;
		}
	}
	weft__wait_describe(what, NULL);
	/* OWN_TIMEOUT: the deadline, region's included, is the linked timeout
	 * below; a runtime timer racing it would end the wait with the op
	 * still in the kernel (wait.h). */
	int err = weft__wait_begin(&io->wait, 0, cancellable ?
	                           WEFT__WAIT_INTERRUPTIBLE | WEFT__WAIT_OWN_TIMEOUT : 0);
	if (err)
		return err;
	io->timed = deadline != 0;
	io->ts.tv_sec = (long long)(deadline / 1000000000u);
	io->ts.tv_nsec = (long long)(deadline % 1000000000u);
	io->main.cb = main_cb;
	io->tmo.cb = tmo_cb;
	io->cancel.cb = cancel_cb;
	io->retry.cb = retry_cb;
	io->retries = 0;
	io->ring = ring;
	io->res = 0;
	io->tres = 0;
	atomic_init(&io->state, io->timed ? 2 : 1);
	/* Held from here until op_wait has filled the last SQE: a rescue
	 * signal must not submit a half-filled one (ring.h, weft__ring_hold). */
	weft__ring_hold(ring);
	weft__ring_reserve(ring, io->timed ? 2 : 1);
	struct io_uring_sqe *sqe = weft__ring_sqe(ring);
	*sqe_out = sqe;
	return 0;
}

/* Cancelled with CQEs outstanding: cancel on the owning ring, then wait
 * (not cancellable) until no CQE names io. */
static void op_cancel_drain(struct io_op *io)
{
	/* acquire: pairs with the callbacks' release decrements. */
	if ((atomic_load_explicit(&io->state, memory_order_acquire) & COUNT_MASK) == 0)
		return;
	/* relaxed: the count only matters to the callback that empties it,
	 * which cannot be this increment's (the cancel's CQE is still to come). */
	atomic_fetch_add_explicit(&io->state, 1, memory_order_relaxed);
	if (weft__current_ring() == io->ring) {
		prep_cancel(io);
	} else {
		io->call.fn = remote_cancel;
		weft__ring_call(io->ring, &io->call);
	}
	weft__wait_describe("the kernel to let go of a cancelled I/O op", NULL);
	/* Uninterruptible: the kernel may write the buffer until the op's own
	 * CQE, so neither a cancel nor the region deadline may end this. */
	weft__wait_begin_uninterruptible(&io->drain);
	/* acq_rel: release publishes io->drain to the callback that empties the
	 * count; acquire takes every result stored before the decrements. */
	uint32_t old = atomic_fetch_or_explicit(&io->state, DRAIN, memory_order_acq_rel);
	if ((old & COUNT_MASK) == 0 && weft__wait_claim(&io->drain))
		weft__wait_wake(&io->drain, 0);   /* close our own wait: park returns at once */
	weft__wait_park(&io->drain, NULL, NULL);
}

/* Park until the op (and its timeout) completed; map the result. */
static int op_wait(struct io_op *io, struct io_uring_sqe *sqe)
{
	weft__ring_set_op(sqe, &io->main);
	if (io->timed) {
		sqe->flags |= IOSQE_IO_LINK;
		struct io_uring_sqe *t = weft__ring_sqe(io->ring);
		/* absolute: weft_now() is CLOCK_MONOTONIC, the kernel's default */
		io_uring_prep_link_timeout(t, &io->ts, IORING_TIMEOUT_ABS);
		weft__ring_set_op(t, &io->tmo);
	}
	weft__ring_release(io->ring);       /* held since op_begin */
	int r = weft__wait_park(&io->wait, NULL, NULL);
	if (r != 0) {
		op_cancel_drain(io);
		return r;
	}
	/* The linked timeout's CQE is -ECANCELED when the op finished first;
	 * any other answer means it fired: -ETIME when it cancelled the op,
	 * -EALREADY or -ENOENT when its cancel did not find the op (running, or
	 * between two states), which ended -ECANCELED all the same. Nothing
	 * else cancels an op whose wait was not claimed: our own ASYNC_CANCEL
	 * is sent only after a claim (op_cancel_drain). */
	if (io->timed && io->tres != -ECANCELED && (io->res == -ECANCELED || io->res == -EINTR))
		return -ETIMEDOUT;
	return io->res;
}

#define OP_RUN(opcode, timeout, cancellable, prep)                          \
	do {                                                                 \
		struct io_op io_;                                            \
		struct io_uring_sqe *sqe;                                    \
		int err_ = op_begin(&io_, (opcode), (timeout), (cancellable), \
				    __func__, &sqe);                         \
		if (err_)                                                    \
			return err_;                                         \
		prep;                                                        \
		return op_wait(&io_, sqe);                                   \
	} while (0)

static unsigned clamp_len(size_t n)
{
	return n > RW_MAX ? RW_MAX : (unsigned)n;
}

/* ------------------------------------------------------------- read/write --- */

WEFT_API ssize_t weft_read_timeout(int fd, void *buf, size_t n, int64_t off, uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_READ, timeout_ns, true,
	       io_uring_prep_read(sqe, fd, buf, clamp_len(n), (uint64_t)off));
}

WEFT_API ssize_t weft_read(int fd, void *buf, size_t n, int64_t off)
{
	return weft_read_timeout(fd, buf, n, off, 0);
}

WEFT_API ssize_t weft_write_timeout(int fd, const void *buf, size_t n, int64_t off,
				    uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_WRITE, timeout_ns, true,
	       io_uring_prep_write(sqe, fd, buf, clamp_len(n), (uint64_t)off));
}

WEFT_API ssize_t weft_write(int fd, const void *buf, size_t n, int64_t off)
{
	return weft_write_timeout(fd, buf, n, off, 0);
}

WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int cnt, int64_t off)
{
	if (cnt < 0)
		return -EINVAL;
	OP_RUN(IORING_OP_READV, 0, true,
	       io_uring_prep_readv(sqe, fd, iov, (unsigned)cnt, (uint64_t)off));
}

WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int cnt, int64_t off)
{
	if (cnt < 0)
		return -EINVAL;
	OP_RUN(IORING_OP_WRITEV, 0, true,
	       io_uring_prep_writev(sqe, fd, iov, (unsigned)cnt, (uint64_t)off));
}

/* ---------------------------------------------------------------- sockets --- */

WEFT_API ssize_t weft_recv_timeout(int fd, void *buf, size_t n, int flags, uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_RECV, timeout_ns, true,
	       io_uring_prep_recv(sqe, fd, buf, clamp_len(n), flags));
}

WEFT_API ssize_t weft_recv(int fd, void *buf, size_t n, int flags)
{
	return weft_recv_timeout(fd, buf, n, flags, 0);
}

WEFT_API ssize_t weft_send_timeout(int fd, const void *buf, size_t n, int flags,
				   uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_SEND, timeout_ns, true,
	       io_uring_prep_send(sqe, fd, buf, clamp_len(n), flags));
}

WEFT_API ssize_t weft_send(int fd, const void *buf, size_t n, int flags)
{
	return weft_send_timeout(fd, buf, n, flags, 0);
}

WEFT_API ssize_t weft_recvmsg(int fd, struct msghdr *msg, int flags)
{
	OP_RUN(IORING_OP_RECVMSG, 0, true, io_uring_prep_recvmsg(sqe, fd, msg, (unsigned)flags));
}

WEFT_API ssize_t weft_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	OP_RUN(IORING_OP_SENDMSG, 0, true, io_uring_prep_sendmsg(sqe, fd, msg, (unsigned)flags));
}

WEFT_API int weft_accept_timeout(int fd, struct sockaddr *addr, socklen_t *len, int flags,
				 uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_ACCEPT, timeout_ns, true, io_uring_prep_accept(sqe, fd, addr, len, flags));
}

WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return weft_accept_timeout(fd, addr, len, flags, 0);
}

WEFT_API int weft_connect_timeout(int fd, const struct sockaddr *addr, socklen_t len,
				  uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_CONNECT, timeout_ns, true, io_uring_prep_connect(sqe, fd, addr, len));
}

WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return weft_connect_timeout(fd, addr, len, 0);
}

WEFT_API int weft_shutdown(int fd, int how)
{
	OP_RUN(IORING_OP_SHUTDOWN, 0, true, io_uring_prep_shutdown(sqe, fd, how));
}

WEFT_API int weft_close(int fd)
{
	OP_RUN(IORING_OP_CLOSE, 0, false, io_uring_prep_close(sqe, fd));
}

/* ------------------------------------------------------------------ files --- */

WEFT_API int weft_openat(int dfd, const char *path, int flags, unsigned mode)
{
	OP_RUN(IORING_OP_OPENAT, 0, true, io_uring_prep_openat(sqe, dfd, path, flags, mode));
}

WEFT_API int weft_statx(int dfd, const char *path, int flags, unsigned mask, struct statx *st)
{
	OP_RUN(IORING_OP_STATX, 0, true, io_uring_prep_statx(sqe, dfd, path, flags, mask, st));
}

WEFT_API int weft_fsync(int fd)
{
	OP_RUN(IORING_OP_FSYNC, 0, true, io_uring_prep_fsync(sqe, fd, 0));
}

WEFT_API int weft_fdatasync(int fd)
{
	OP_RUN(IORING_OP_FSYNC, 0, true, io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC));
}

WEFT_API int weft_fallocate(int fd, int mode, int64_t off, int64_t len)
{
	if (off < 0 || len <= 0)
		return -EINVAL;
	OP_RUN(IORING_OP_FALLOCATE, 0, true,
	       io_uring_prep_fallocate(sqe, fd, mode, (uint64_t)off, (uint64_t)len));
}

WEFT_API ssize_t weft_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out,
			     size_t n, unsigned flags)
{
	OP_RUN(IORING_OP_SPLICE, 0, true,
	       io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, clamp_len(n), flags));
}

WEFT_API int weft_poll_timeout(int fd, unsigned events, uint64_t timeout_ns)
{
	OP_RUN(IORING_OP_POLL_ADD, timeout_ns, true, io_uring_prep_poll_add(sqe, fd, events));
}

WEFT_API int weft_poll(int fd, unsigned events)
{
	return weft_poll_timeout(fd, events, 0);
}

/* ---------------------------------------------------------------- helpers --- */

WEFT_API ssize_t weft_send_all(int fd, const void *buf, size_t n, int flags)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = weft_send(fd, (const char *)buf + done, n - done, flags);
		if (r < 0)
			return r;
		if (r == 0)
			return -EPIPE;
		done += (size_t)r;
	}
	return (ssize_t)n;
}

WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t n, int64_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = weft_write(fd, (const char *)buf + done, n - done,
				       off < 0 ? -1 : off + (int64_t)done);
		if (r < 0)
			return r;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return (ssize_t)n;
}

/* in -> pipe -> out with splice; a private pipe per call. */
WEFT_API ssize_t weft_sendfile(int out_fd, int in_fd, int64_t *off, size_t n)
{
	int p[2];
	if (!weft_self())
		return -EPERM;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	size_t done = 0;
	ssize_t err = 0;
	while (done < n) {
		ssize_t in = weft_splice(in_fd, off ? *off : -1, p[1], -1, n - done, SPLICE_F_MOVE);
		if (in <= 0) {
			err = in;
			break;
		}
		if (off)
			*off += in;
		ssize_t moved = 0;
		while (moved < in) {
			ssize_t out = weft_splice(p[0], -1, out_fd, -1, (size_t)(in - moved),
						  SPLICE_F_MOVE);
			if (out <= 0) {
				err = out ? out : -EPIPE;
				break;
			}
			moved += out;
		}
		done += (size_t)moved;
		if (err)
			break;
	}
	close(p[0]);
	close(p[1]);
	return done ? (ssize_t)done : err;
}
