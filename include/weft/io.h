/* weft/io.h: included by weft.h; do not include directly.
 *
 * Asynchronous system calls for coroutines. Each call looks blocking: it puts
 * an SQE on the io_uring of the worker running the caller and parks the
 * coroutine (never the thread) until its completion arrives. SQEs are
 * submitted in batches, once per scheduling round.
 *
 * Common rules for every function below:
 *   - Returns what the system call would (a count, an fd, 0) or a negative
 *     errno; errno is not used to report errors. Short reads and writes are
 *     returned, not hidden (see the _all helpers).
 *   - Must be called from a coroutine: -EPERM otherwise.
 *   - -EOPNOTSUPP when the running kernel lacks the io_uring opcode (probed at
 *     start-up), or lacks IORING_OP_LINK_TIMEOUT and the call has a deadline.
 *   - -ECANCELED when the calling coroutine is cancelled (weft_cancel) before
 *     or while it waits. The operation is then cancelled on the ring it was
 *     submitted to, and the call returns only once the kernel has let go of
 *     every argument: buffers, iovecs, msghdrs and addresses are never touched
 *     after the call returns. The result of an operation that completed
 *     anyway is discarded (for recv: the bytes are lost), so treat a cancelled
 *     stream as broken. weft_close is not cancellable.
 *   - Deadlines: the _timeout variants (read, write, recv, send, accept,
 *     connect, poll) take a relative timeout in nanoseconds, as every
 *     timeout of weft (weft.h): 0 makes one attempt and fails with
 *     -ETIMEDOUT if the call cannot complete at once (the kernel tries the
 *     op before its already-expired timeout can fire), WEFT_FOREVER sets no
 *     limit. Every call also honours the coroutine's region deadline
 *     (weft_deadline_set), the nearer of the two winning. A region deadline
 *     already past fails the call with -ETIMEDOUT before anything is
 *     submitted; otherwise the kernel
 *     enforces it (a linked timeout) and past it the call returns -ETIMEDOUT,
 *     with the same guarantee about buffers. weft_close has no deadline.
 *     weft_splice (and so weft_sendfile) is ended by the runtime's timer
 *     instead, as a weft_cancel ends it: the kernel does not end a splice
 *     waiting for a pipe or socket when a linked timeout fires. A splice
 *     that had moved bytes when its deadline passed returns their count.
 *   - Thread-safety is the kernel's: fds may be shared between coroutines as
 *     they may between threads.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H
#include "../weft.h"

#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct statx;

/** read(2)/pread(2): off -1 reads at (and advances) the file position. */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t n, int64_t off);
WEFT_API ssize_t weft_read_timeout(int fd, void *buf, size_t n, int64_t off, uint64_t timeout_ns);
/** write(2)/pwrite(2): off -1 writes at (and advances) the file position. */
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t n, int64_t off);
WEFT_API ssize_t weft_write_timeout(int fd, const void *buf, size_t n, int64_t off,
                                    uint64_t timeout_ns);
/** preadv(2)/pwritev(2); off -1 as above. */
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int cnt, int64_t off);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int cnt, int64_t off);

/** recv(2)/send(2). */
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t n, int flags);
WEFT_API ssize_t weft_recv_timeout(int fd, void *buf, size_t n, int flags, uint64_t timeout_ns);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t n, int flags);
WEFT_API ssize_t weft_send_timeout(int fd, const void *buf, size_t n, int flags,
                                   uint64_t timeout_ns);
/** recvmsg(2)/sendmsg(2). */
WEFT_API ssize_t weft_recvmsg(int fd, struct msghdr *msg, int flags);
WEFT_API ssize_t weft_sendmsg(int fd, const struct msghdr *msg, int flags);

/** accept4(2): flags such as SOCK_CLOEXEC | SOCK_NONBLOCK. Returns the new fd. */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags);
WEFT_API int weft_accept_timeout(int fd, struct sockaddr *addr, socklen_t *len, int flags,
                                 uint64_t timeout_ns);
/** connect(2). */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t len);
WEFT_API int weft_connect_timeout(int fd, const struct sockaddr *addr, socklen_t len,
                                  uint64_t timeout_ns);
/** shutdown(2). */
WEFT_API int weft_shutdown(int fd, int how);
/** close(2). Not cancellable: it always completes. */
WEFT_API int weft_close(int fd);

/** openat(2); returns the new fd. */
WEFT_API int weft_openat(int dfd, const char *path, int flags, unsigned mode);
/** statx(2). */
WEFT_API int weft_statx(int dfd, const char *path, int flags, unsigned mask, struct statx *st);
/** fsync(2), fdatasync(2). */
WEFT_API int weft_fsync(int fd);
WEFT_API int weft_fdatasync(int fd);
/** fallocate(2). */
WEFT_API int weft_fallocate(int fd, int mode, int64_t off, int64_t len);
/** splice(2); off_in/off_out -1 = no offset (pipes, or the file position). */
WEFT_API ssize_t weft_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                             size_t n, unsigned flags);

/** Wait until fd is ready for `events` (POLLIN, POLLOUT, ...); returns the
 *  revents mask (> 0). For integrating libraries that do their own I/O. */
WEFT_API int weft_poll(int fd, unsigned events);
WEFT_API int weft_poll_timeout(int fd, unsigned events, uint64_t timeout_ns);

/**
 * Copy up to n bytes from in_fd (at *off and advancing it; the file position
 * when off is NULL) to out_fd (a socket or any fd), in the kernel, through a
 * pipe with splice (a pipe of its own per call). Returns the bytes copied, or
 * -errno when nothing was copied; it is short at end of file, and when an
 * error (a cancel, the peer gone, a full disk) stops it after some bytes,
 * whose error is then not returned. *off, or the file position, ends just
 * past the bytes copied; from an input that cannot seek (a pipe, a socket)
 * the bytes read but not written are lost. Deadlines as weft_splice.
 */
WEFT_API ssize_t weft_sendfile(int out_fd, int in_fd, int64_t *off, size_t n);

/** Send / write all n bytes, looping over short transfers. Returns n, or
 *  -errno (the bytes sent before the error are not reported). */
WEFT_API ssize_t weft_send_all(int fd, const void *buf, size_t n, int flags);
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t n, int64_t off);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_IO_H */
