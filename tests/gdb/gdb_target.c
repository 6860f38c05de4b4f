/*
 * gdb_target.c — the program tests/gdb/check.py runs under gdb. One worker,
 * so each child runs until it parks before its spawner resumes (child-first
 * spawn): when the main coroutine raises SIGTRAP, "sleeper" is parked in
 * weft_sleep, "receiver" in weft_chan_recv, "joiner" in weft_join of
 * "inner", and "gdb-main" is running on worker 0. Under gdb the trap stops
 * the program there; the script then inspects it with tools/weft-gdb.py.
 * Run on its own, SIGTRAP ends it: it is not meant to run outside gdb.
 */
#include "weft.h"

#include <signal.h>
#include <stdio.h>

static weft_chan *ch;

__attribute__((noinline)) static void *gdb_sleeper(void *arg)
{
	(void)arg;
	weft_sleep(3600ull * 1000000000);      /* cancelled at the end */
	return NULL;
}

__attribute__((noinline)) static void *gdb_receiver(void *arg)
{
	(void)arg;
	int v;
	weft_chan_recv(ch, &v);                /* closed at the end */
	return NULL;
}

__attribute__((noinline)) static void *gdb_joiner(void *arg)
{
	(void)arg;
	weft_task *in;
	if (weft_spawn_opts(&in, gdb_sleeper, NULL, &(struct weft_spawn_opts){ .name = "inner" }))
		return NULL;
	weft_join(in, NULL);   /* cancelled: returns -ECANCELED, `in` stays joinable */
	weft_cancel(in);
	weft_join(in, NULL);
	return NULL;
}

__attribute__((noinline)) static void *gdb_main(void *arg)
{
	(void)arg;
	weft_set_name("gdb-main");
	weft_task *t[3];
	weft_fn fns[3] = { gdb_sleeper, gdb_receiver, gdb_joiner };
	const char *names[3] = { "sleeper", "receiver", "joiner" };
	for (int i = 0; i < 3; i++)
		if (weft_spawn_opts(&t[i], fns[i], NULL, &(struct weft_spawn_opts){ .name = names[i] }))
			return (void *)1;
	raise(SIGTRAP);                        /* gdb stops here */
	weft_chan_close(ch);
	for (int i = 0; i < 3; i++) {
		weft_cancel(t[i]);
		weft_join(t[i], NULL);
	}
	return NULL;
}

int main(void)
{
	weft_rt *rt;
	int err = weft_rt_create(&rt, &(struct weft_config){ .workers = 1 });
	if (err) {
		fprintf(stderr, "weft_rt_create: %s\n", weft_strerror(err));
		return 1;
	}
	if ((err = weft_chan_create(&ch, sizeof(int), 0))) {
		fprintf(stderr, "weft_chan_create: %s\n", weft_strerror(err));
		return 1;
	}
	void *res = NULL;
	err = weft_rt_run(rt, gdb_main, NULL, &res);
	weft_rt_destroy(rt);
	weft_chan_destroy(ch);
	return err || res ? 1 : 0;
}
