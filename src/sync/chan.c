/*
 * src/sync/chan.c: channels and select.
 *
 * A channel is a spin, a ring buffer of `cap` elements and two FIFO queues
 * of waiting parties (waitq.h): senders (their node's elem points at the
 * value to send) and receivers (elem points where the value goes).
 *
 * Invariants, under the spin:
 *   - a live receiver waits only while the buffer is empty and no live sender
 *     waits; a live sender waits only while the buffer is full (always, for
 *     capacity 0) and no live receiver waits. Stale nodes (select losers,
 *     timed-out or cancelled waiters on their way out) may sit in either
 *     queue; weft__q_pop_claimed drops them.
 *   - so a send first looks for a receiver to hand the value to (claim, copy
 *     into its buffer, wake): rendezvous for capacity 0, and no detour
 *     through the buffer otherwise; then for room in the buffer.
 *   - a receive takes from the buffer first (FIFO), then refills the slot it
 *     freed from the first waiting sender; with an empty buffer it copies
 *     straight from a waiting sender.
 *   - close wakes every waiter with -EPIPE; buffered values stay for the
 *     receivers to drain.
 *
 * The winner of a claim writes the data and parker->selected before it
 * wakes; the wake publishes them (waitq.h, src/sched/wait.h).
 *
 * Select takes the spins of all its channels in address order (no deadlock
 * between two selects, or a select and a plain op), scans the cases in a
 * random order (fairness), and otherwise queues one node per case, all with
 * the same parker, and parks releasing all spins; afterwards it takes them
 * again to drop the nodes that lost. The order is a uniform random
 * permutation (Fisher-Yates, as Go's pollorder), so the first ready case in
 * it is uniform over the ready ones; a random start scanned cyclically was
 * not: with cases 0 and 1 of three ready, case 0 won two times in three.
 *
 * Rejected: a lock-free buffered fast path (Go has one for the non-blocking
 * case). Every op here takes the spin once; measure before adding one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "debug_hooks.h"
#include "sync/waitq.h"

struct weft_chan {
	weft__lock lock;
	bool closed;
	size_t elem_size;
	size_t cap;
	size_t head;                 /* index of the oldest buffered element */
	size_t count;                /* buffered elements                    */
	struct weft__queue sendq;
	struct weft__queue recvq;
	unsigned char *buf;          /* cap * elem_size bytes, after the struct */
};

WEFT_API int weft_chan_create(weft_chan **out, size_t elem_size, size_t capacity)
{
	if (!out || elem_size == 0 || elem_size > 65536)
		return -EINVAL;
	if (capacity && capacity > (SIZE_MAX - sizeof(struct weft_chan)) / elem_size)
		return -EINVAL;
	struct weft_chan *ch = weft__fault("chan.alloc") ? NULL
	                     : calloc(1, sizeof(*ch) + capacity * elem_size);
	if (!ch)
		return -ENOMEM;
	ch->elem_size = elem_size;
	ch->cap = capacity;
	ch->buf = (unsigned char *)(ch + 1);
	*out = ch;
	return 0;
}

WEFT_API void weft_chan_destroy(weft_chan *ch)
{
	free(ch);
}

WEFT_API size_t weft_chan_len(weft_chan *ch)
{
	weft__lock_acquire(&ch->lock);
	size_t n = ch->count;
	weft__unlock(&ch->lock);
	return n;
}

WEFT_API size_t weft_chan_cap(const weft_chan *ch)
{
	return ch->cap;
}

/* Copy one element, with the spin held. Word-sized elements (the common
 * case: ints, pointers) are copied inline, so the critical section makes no
 * library call; the bench's profile showed memcpy through the PLT inside it. */
static inline void elem_copy(void *dst, const void *src, size_t size)
{
	switch (size) {
	case 8: memcpy(dst, src, 8); break;
	case 4: memcpy(dst, src, 4); break;
	case 16: memcpy(dst, src, 16); break;
	default: memcpy(dst, src, size); break;
	}
}

static inline void hand_over(struct weft__node *n, int reason)
{
	n->p->selected = n->idx;
	weft__sp_wake(n->p, reason);
}

/* With the spin held: 1 sent, 0 must wait, -EPIPE closed. */
static int send_locked(struct weft_chan *ch, const void *elem)
{
	if (ch->closed)
		return -EPIPE;
	struct weft__node *n = weft__q_pop_claimed(&ch->recvq);
	if (n) {
		elem_copy(n->elem, elem, ch->elem_size);
		hand_over(n, 0);
		return 1;
	}
	if (ch->count < ch->cap) {
		size_t tail = ch->head + ch->count;
		if (tail >= ch->cap)
			tail -= ch->cap;
		elem_copy(ch->buf + tail * ch->elem_size, elem, ch->elem_size);
		ch->count++;
		return 1;
	}
	return 0;
}

/* With the spin held: 1 received, 0 must wait, -EPIPE closed and drained. */
static int recv_locked(struct weft_chan *ch, void *elem)
{
	struct weft__node *n;
	if (ch->count) {
		unsigned char *slot = ch->buf + ch->head * ch->elem_size;
		elem_copy(elem, slot, ch->elem_size);
		n = weft__q_pop_claimed(&ch->sendq);
		if (n) {
			/* the freed slot is the new tail: the buffer was full */
			elem_copy(slot, n->elem, ch->elem_size);
			if (++ch->head == ch->cap)
				ch->head = 0;
			hand_over(n, 0);
		} else {
			if (++ch->head == ch->cap)
				ch->head = 0;
			ch->count--;
		}
		return 1;
	}
	n = weft__q_pop_claimed(&ch->sendq);
	if (n) {
		elem_copy(elem, n->elem, ch->elem_size);
		hand_over(n, 0);
		return 1;
	}
	return ch->closed ? -EPIPE : 0;
}

static int chan_send(struct weft_chan *ch, const void *elem, uint64_t deadline, bool block)
{
	weft__lock_acquire(&ch->lock);
	int r = send_locked(ch, elem);
	if (r) {
		weft__unlock(&ch->lock);
		return r < 0 ? r : 0;
	}
	if (!block) {
		weft__unlock(&ch->lock);
		return -EAGAIN;
	}
	/* 0: a receiver took the value; -EPIPE: closed while we waited */
	weft__wait_describe("channel send", ch);
	return weft__q_wait(&ch->lock, &ch->sendq, deadline, (void *)elem, 0);
}

static int chan_recv(struct weft_chan *ch, void *elem, uint64_t deadline, bool block)
{
	weft__lock_acquire(&ch->lock);
	int r = recv_locked(ch, elem);
	if (r) {
		weft__unlock(&ch->lock);
		return r < 0 ? r : 0;
	}
	if (!block) {
		weft__unlock(&ch->lock);
		return -EAGAIN;
	}
	weft__wait_describe("channel recv", ch);
	return weft__q_wait(&ch->lock, &ch->recvq, deadline, elem, 0);
}

WEFT_API int weft_chan_send(weft_chan *ch, const void *elem)
{
	return chan_send(ch, elem, 0, true);
}

WEFT_API int weft_chan_recv(weft_chan *ch, void *elem)
{
	return chan_recv(ch, elem, 0, true);
}

WEFT_API int weft_chan_try_send(weft_chan *ch, const void *elem)
{
	return chan_send(ch, elem, 0, false);
}

WEFT_API int weft_chan_try_recv(weft_chan *ch, void *elem)
{
	return chan_recv(ch, elem, 0, false);
}

WEFT_API int weft_chan_send_timeout(weft_chan *ch, const void *elem, uint64_t timeout_ns)
{
	return chan_send(ch, elem, weft__deadline_after(timeout_ns), true);
}

WEFT_API int weft_chan_recv_timeout(weft_chan *ch, void *elem, uint64_t timeout_ns)
{
	return chan_recv(ch, elem, weft__deadline_after(timeout_ns), true);
}

WEFT_API int weft_chan_close(weft_chan *ch)
{
	weft__lock_acquire(&ch->lock);
	if (ch->closed) {
		weft__unlock(&ch->lock);
		return -EPIPE;
	}
	ch->closed = true;
	weft__q_wake_all(&ch->recvq, -EPIPE);
	weft__q_wake_all(&ch->sendq, -EPIPE);
	weft__unlock(&ch->lock);
	return 0;
}

/* --------------------------------------------------------------- select -- */

/* xorshift64* per thread. Not inlined, so the TLS address is computed anew
 * on every call (a coroutine may migrate between calls; ctx/tls.h). */
__attribute__((noinline)) static uint64_t select_rand(void)
{
	static _Thread_local uint64_t s;
	uint64_t x = s;
	if (!x)
		x = (uint64_t)(uintptr_t)&s ^ weft_now() ^ 0x9e3779b97f4a7c15u;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s = x;
	return x * 0x2545f4914f6cdd1du;
}

struct lockset {
	struct weft_chan **ch;       /* distinct channels, ascending addresses */
	size_t n;
};

static void lockset_lock(const struct lockset *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		weft__lock_acquire(&ls->ch[i]->lock);
}

static void lockset_unlock(void *arg)
{
	const struct lockset *ls = arg;
	for (size_t i = ls->n; i-- > 0;)
		weft__unlock(&ls->ch[i]->lock);
}

#define SELECT_STACK_CASES 8

WEFT_API int weft_select(struct weft_select_case *cases, size_t n, uint64_t timeout_ns)
{
	if (n && !cases)
		return -EINVAL;
	if (n > INT32_MAX)
		return -EINVAL;
	struct weft_chan *chs_stack[SELECT_STACK_CASES];
	struct weft__node nodes_stack[SELECT_STACK_CASES];
	uint32_t order_stack[SELECT_STACK_CASES];
	struct weft_chan **chs = chs_stack;
	struct weft__node *nodes = nodes_stack;
	uint32_t *order = order_stack;
	void *heap = NULL;
	if (n > SELECT_STACK_CASES) {
		heap = weft__fault("select.alloc") ? NULL
		     : malloc(n * (sizeof(*chs) + sizeof(*nodes) + sizeof(*order)));
		if (!heap)
			return -ENOMEM;
		nodes = heap;
		chs = (struct weft_chan **)(nodes + n);
		order = (uint32_t *)(chs + n);
	}

	/* Distinct channels in ascending address order (insertion sort: n is
	 * small), the global lock order. */
	struct lockset ls = { chs, 0 };
	size_t active = 0;
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		struct weft_chan *c = cases[i].chan;
		if (!c)
			continue;
		if (cases[i].op != WEFT_SELECT_SEND && cases[i].op != WEFT_SELECT_RECV) {
			ret = -EINVAL;
			goto out;
		}
		active++;
		size_t j = ls.n;
		while (j > 0 && (uintptr_t)chs[j - 1] > (uintptr_t)c)
			j--;
		if (j > 0 && chs[j - 1] == c)
			continue;
		memmove(&chs[j + 1], &chs[j], (ls.n - j) * sizeof(*chs));
		chs[j] = c;
		ls.n++;
	}

	/* The scan order: a uniform random permutation of the cases (see the
	 * top of the file), drawn before the spins are taken. */
	if (active > 1) {
		for (size_t i = 0; i < n; i++) {
			size_t j = (size_t)(select_rand() % (i + 1));   /* inside-out */
			if (j != i)
				order[i] = order[j];
			order[j] = (uint32_t)i;
		}
	} else {
		for (size_t i = 0; i < n; i++)
			order[i] = (uint32_t)i;
	}
	lockset_lock(&ls);
	if (active) {
		for (size_t k = 0; k < n; k++) {
			size_t i = order[k];
			struct weft_select_case *c = &cases[i];
			if (!c->chan)
				continue;
			int r = c->op == WEFT_SELECT_SEND ? send_locked(c->chan, c->elem)
			                                  : recv_locked(c->chan, c->elem);
			if (r) {
				c->result = r < 0 ? r : 0;
				lockset_unlock(&ls);
				ret = (int)i;
				goto out;
			}
		}
	}
	if (timeout_ns == 0) {          /* do not wait (weft.h, Timeouts) */
		lockset_unlock(&ls);
		ret = -ETIMEDOUT;
		goto out;
	}

	struct weft__parker p;
	/* weft_dump names the select by its first channel in lock order */
	weft__wait_describe("channel select", ls.n ? ls.ch[0] : NULL);
	ret = weft__sp_begin(&p, weft__deadline_after(timeout_ns));
	if (ret) {
		lockset_unlock(&ls);
		goto out;
	}
	size_t nn = 0;
	for (size_t i = 0; i < n; i++) {
		struct weft_select_case *c = &cases[i];
		if (!c->chan)
			continue;
		nodes[nn] = (struct weft__node){ .p = &p, .elem = c->elem, .idx = (int)i };
		weft__q_push(c->op == WEFT_SELECT_SEND ? &c->chan->sendq : &c->chan->recvq,
		             &nodes[nn]);
		nn++;
	}
	int r = weft__sp_park(&p, lockset_unlock, &ls);

	/* Drop the nodes that did not win (and all of them after a timeout or
	 * a cancel). */
	lockset_lock(&ls);
	nn = 0;
	for (size_t i = 0; i < n; i++) {
		struct weft_select_case *c = &cases[i];
		if (!c->chan)
			continue;
		weft__q_remove(c->op == WEFT_SELECT_SEND ? &c->chan->sendq : &c->chan->recvq,
		               &nodes[nn++]);
	}
	lockset_unlock(&ls);

	if (r == 0 || r == -EPIPE) {
		cases[p.selected].result = r;
		ret = p.selected;
	} else {
		ret = r;
	}
out:
	free(heap);
	return ret;
}
