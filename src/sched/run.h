/*
 * src/sched/run.h: what the other files of src/sched call in run.c.
 */
#ifndef WEFT_SCHED_RUN_H
#define WEFT_SCHED_RUN_H

#include "sched/worker.h"

/* Make t (RUNNABLE, owned by the caller: a new task, or the winner of its
 * wait's claim) runnable: on the calling worker as mode says (sched/wait.h)
 * when it is one of t's runtime's, else through the injection queue. ANY. */
void weft__ready(struct weft_task *t, enum weft__wake_mode mode);

/* CORO: leave t, the calling coroutine on worker self, with an action
 * (WEFT__A_*; after WEFT__A_SPAWN self->action_task runs first). Returns
 * when a worker resumes t (perhaps another one). */
void weft__switch_out(struct weft__worker *self, struct weft_task *t, int action);

/* A coroutine's first frame: the entry weft__ctx_make is given. */
void weft__task_entry(void *data);

/* OWNER: the worker's scheduling loop, until the runtime stops. */
void weft__worker_loop(struct weft__worker *self);

#endif /* WEFT_SCHED_RUN_H */
