/* weft/chan.h: included by weft.h; do not include directly.
 *
 * Channels: typed-by-size FIFO queues between coroutines (and plain threads),
 * Go's semantics. Capacity 0 is a rendezvous: a send completes only when a
 * receiver takes the value (copied straight from the sender's buffer into the
 * receiver's). Any number of senders and receivers; waiters are served FIFO.
 *
 * Coroutines park; plain threads outside the runtime (weft_self() == NULL)
 * block the thread in the same queues, so a thread can feed a runtime. Plain
 * threads cannot be cancelled. All functions are thread-safe.
 */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H
#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan;

/**
 * Create a channel of elements of elem_size bytes (1..65536) with room for
 * capacity elements (0: unbuffered). Does not block; any thread.
 * Returns 0, -EINVAL or -ENOMEM.
 * Errors: -EINVAL (ch NULL, elem_size 0 or above 65536, or elem_size x
 * capacity overflowing size_t), -ENOMEM. A channel used after
 * weft_chan_destroy is undefined (not detectable).
 */
WEFT_API int weft_chan_create(weft_chan **ch, size_t elem_size, size_t capacity);

/**
 * Free ch. Nobody may be blocked on it or use it afterwards (close it and let
 * the users finish first). Does not block; any thread.
 */
WEFT_API void weft_chan_destroy(weft_chan *ch);

/**
 * Close ch: every blocked sender and every later send fails with -EPIPE (the
 * value is not delivered); receivers first drain the buffered values, then
 * get -EPIPE. Does not block; any thread. Returns 0, or -EPIPE when ch was
 * already closed.
 */
WEFT_API int weft_chan_close(weft_chan *ch);

/**
 * Send the elem_size bytes at elem. Blocks (parks a coroutine, blocks a plain
 * thread) until a receiver takes the value (unbuffered) or there is room in
 * the buffer. Returns 0, -EPIPE (closed, before or while waiting),
 * -ECANCELED (the calling coroutine was cancelled while it had to wait;
 * nothing was sent), -ETIMEDOUT (its region deadline, weft_deadline_set,
 * passed while it had to wait; nothing was sent).
 */
WEFT_API int weft_chan_send(weft_chan *ch, const void *elem);

/**
 * Receive one value into elem (elem_size bytes). Blocks until a value is
 * there. Returns 0, -EPIPE (closed and drained), -ECANCELED or -ETIMEDOUT
 * (as for weft_chan_send; nothing was received).
 */
WEFT_API int weft_chan_recv(weft_chan *ch, void *elem);

/** Like weft_chan_send/recv, never blocking: -EAGAIN instead (-EPIPE still
 *  for a closed channel, drained for recv). */
WEFT_API int weft_chan_try_send(weft_chan *ch, const void *elem);
WEFT_API int weft_chan_try_recv(weft_chan *ch, void *elem);

/** Like weft_chan_send/recv, giving up after timeout_ns nanoseconds with
 *  -ETIMEDOUT (the value was then neither sent nor received); 0 does not
 *  wait, WEFT_FOREVER has no limit (weft.h, Timeouts). */
WEFT_API int weft_chan_send_timeout(weft_chan *ch, const void *elem, uint64_t timeout_ns);
WEFT_API int weft_chan_recv_timeout(weft_chan *ch, void *elem, uint64_t timeout_ns);

/** Values buffered now, and the capacity. A snapshot; any thread. */
WEFT_API size_t weft_chan_len(weft_chan *ch);
WEFT_API size_t weft_chan_cap(const weft_chan *ch);

/* ------------------------------------------------------------- select --- */

enum weft_select_op {
	WEFT_SELECT_SEND = 1,
	WEFT_SELECT_RECV = 2,
};

/** One case of weft_select. chan NULL: the case is ignored (Go's nil channel). */
struct weft_select_case {
	weft_chan *chan;
	int op;             /* WEFT_SELECT_SEND or WEFT_SELECT_RECV          */
	void *elem;         /* send: the value; recv: where the value goes   */
	int result;         /* out, chosen case only: 0, or -EPIPE (closed)  */
};

/**
 * Complete exactly one of the n cases: the first that can proceed; when
 * several can, one chosen uniformly at random (fair). A closed channel makes
 * its case ready with result -EPIPE (a send case sends nothing then).
 * timeout_ns as every timeout of weft (weft.h): 0 does not wait (Go's
 * select with a default case: -ETIMEDOUT when no case is ready),
 * WEFT_FOREVER waits with no limit. Blocks otherwise (parks / blocks a
 * plain thread); the same channel may appear in several cases.
 * With no usable case (n == 0, all chans NULL) it only waits for its timeout,
 * its region deadline or a cancel, like Go's empty select. Returns the index of the case
 * completed (its .result says how), -ETIMEDOUT, -ECANCELED, -EINVAL (bad
 * op) or -ENOMEM (more than 8 cases need a malloc).
 * Errors: -EINVAL also for cases NULL with n > 0 and n > INT32_MAX.
 */
WEFT_API int weft_select(struct weft_select_case *cases, size_t n, uint64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_CHAN_H */
