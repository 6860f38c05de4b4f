/*
 * src/sync/group.c: task groups (structured concurrency).
 *
 * A group is an array of member records (each malloc'ed once, so a running
 * member's pointer stays valid while the array grows) under a spin. Each
 * member runs a trampoline that calls the body, stores result and error in
 * its record, and on failure records the group's first error; with
 * WEFT_GROUP_CANCEL_ON_ERROR it then cancels every other member whose task
 * handle is known (under the spin: handles are written there by the
 * spawner), and a member spawned after the failure is cancelled right after
 * its spawn. weft_cancel on a finished member is a no-op, and no member is
 * joined before weft_group_wait, so every handle is valid while it is used.
 *
 * weft_group_wait joins the members in spawn order. If the waiter is
 * cancelled, or its region deadline passes, it cancels them all and keeps
 * joining shielded (uninterruptibly, sched/wait.h): a group never leaves a
 * member running behind its wait, and returns -ECANCELED or -ETIMEDOUT.
 */
#include <errno.h>
#include <stdlib.h>
#include "debug_hooks.h"
#include "sync/waitq.h"

struct member {
	struct weft_group *g;
	weft_group_fn fn;
	void *arg;
	weft_task *task;             /* under g->lock; NULL until spawned      */
	void *result;
	int err;
	bool ran;
};

struct weft_group {
	weft__lock lock;
	unsigned flags;
	int first_err;               /* under lock                              */
	struct member **m;
	size_t n, cap;
	bool waited;
};

WEFT_API int weft_group_create(weft_group **out, unsigned flags)
{
	if (!out || (flags & ~WEFT_GROUP_CANCEL_ON_ERROR))
		return -EINVAL;
	struct weft_group *g = weft__fault("group.alloc") ? NULL : calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->flags = flags;
	*out = g;
	return 0;
}

/* With g->lock held: weft_cancel for members from..n-1 except skip (NULL:
 * none) whose task handle is known, with one barrier for all (sched/wait.h):
 * one membarrier system call instead of one per member, under our spin. */
static void cancel_members_locked(struct weft_group *g, size_t from, struct member *skip)
{
	for (size_t i = from; i < g->n; i++)
		if (g->m[i] != skip && g->m[i]->task)
			weft__cancel_mark(g->m[i]->task);
	weft__cancel_fence();
	for (size_t i = from; i < g->n; i++)
		if (g->m[i] != skip && g->m[i]->task)
			weft__cancel_deliver(g->m[i]->task);
}

/* With g->lock held: the first failure; maybe cancel the others. */
static void group_fail_locked(struct weft_group *g, struct member *self, int err)
{
	if (g->first_err)
		return;
	g->first_err = err;
	if (!(g->flags & WEFT_GROUP_CANCEL_ON_ERROR))
		return;
	cancel_members_locked(g, 0, self);
}

static void *member_main(void *arg)
{
	struct member *m = arg;
	void *result = NULL;
	int err = m->fn(m->arg, &result);
	m->result = result;
	m->err = err;
	m->ran = true;
	if (err < 0) {
		weft__lock_acquire(&m->g->lock);
		group_fail_locked(m->g, m, err);
		weft__unlock(&m->g->lock);
	}
	return NULL;
}

WEFT_API int weft_group_spawn(weft_group *g, weft_group_fn fn, void *arg)
{
	if (!g || !fn || g->waited)
		return -EINVAL;
	if (!weft_self())
		return -EPERM;
	if (g->n > INT32_MAX - 1)
		return -ENOMEM;
	struct member *m = weft__fault("group.member_alloc") ? NULL : calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->g = g;
	m->fn = fn;
	m->arg = arg;
	m->err = -ECANCELED;         /* until it runs */

	weft__lock_acquire(&g->lock);
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 8;
		struct member **a = weft__fault("group.grow") ? NULL
		                   : realloc(g->m, cap * sizeof(*a));
		if (!a) {
			weft__unlock(&g->lock);
			free(m);
			return -ENOMEM;
		}
		g->m = a;
		g->cap = cap;
	}
	size_t idx = g->n++;
	g->m[idx] = m;
	weft__unlock(&g->lock);

	/* Not under the spin: with child-first spawns the member may run (and
	 * fail, and take the spin) before weft_spawn returns here. */
	weft_task *t;
	int err = weft_spawn(&t, member_main, m);
	weft__lock_acquire(&g->lock);
	if (err) {
		g->n--;                      /* we are the only spawner */
		weft__unlock(&g->lock);
		free(m);
		return err;
	}
	m->task = t;
	if (g->first_err && (g->flags & WEFT_GROUP_CANCEL_ON_ERROR))
		weft_cancel(t);
	weft__unlock(&g->lock);
	return (int)idx;
}

WEFT_API int weft_group_wait(weft_group *g)
{
	if (!g)
		return -EINVAL;
	if (!weft_self())
		return -EPERM;
	g->waited = true;
	int interrupted = 0;             /* -ECANCELED or -ETIMEDOUT once it happens */
	for (size_t i = 0; i < g->n; i++) {
		/* g->n and g->m no longer change: only the owner spawns. */
		weft_task *t = g->m[i]->task;
		int r = weft_join(t, NULL);
		if (r && !interrupted) {
			/* The waiter was cancelled or its region deadline passed
			 * (t stays joinable): stop the members still running, then
			 * join them all shielded, so none outlives this call. */
			interrupted = r;
			weft__lock_acquire(&g->lock);
			cancel_members_locked(g, i, NULL);
			weft__unlock(&g->lock);
			weft__shield_push();
			r = weft_join(t, NULL);
		}
		/* Shielded joins of our own members are uninterruptible and t is
		 * valid and joined by nobody else: they cannot fail. */
		if (r)
			weft__die("weft_group_wait: shielded join of member %zu failed: %s",
			          i, weft_strerror(r));
	}
	if (interrupted) {
		weft__shield_pop();
		return interrupted;
	}
	weft__lock_acquire(&g->lock);
	int err = g->first_err;
	weft__unlock(&g->lock);
	return err;
}

WEFT_API size_t weft_group_size(const weft_group *g)
{
	return g->n;
}

WEFT_API void *weft_group_result(const weft_group *g, size_t i)
{
	return i < g->n ? g->m[i]->result : NULL;
}

WEFT_API int weft_group_error(const weft_group *g, size_t i)
{
	return i < g->n ? g->m[i]->err : -EINVAL;
}

WEFT_API void weft_group_destroy(weft_group *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		free(g->m[i]);
	free(g->m);
	free(g);
}
