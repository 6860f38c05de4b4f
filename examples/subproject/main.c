/*
 * The smallest useful weft program: a producer and a consumer coroutine
 * talking over a channel, and a blocking call offloaded to the helper pool.
 * Exits 0 and prints "sum 5050" when all went well; 77 when the kernel does
 * not allow io_uring (a skip for the packaging test).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

static void *producer(void *arg)
{
	weft_chan *ch = arg;
	for (long i = 1; i <= 100; i++)
		if (weft_chan_send(ch, &i) != 0)
			return (void *)1;
	weft_chan_close(ch);
	return NULL;
}

static void *square(void *arg)
{
	return (void *)((intptr_t)arg * (intptr_t)arg);
}

static void *main_co(void *arg)
{
	(void)arg;
	weft_chan *ch;
	weft_task *p;
	long v, sum = 0;
	if (weft_chan_create(&ch, sizeof(long), 4) != 0)
		return (void *)1;
	if (weft_spawn(&p, producer, ch) != 0)
		return (void *)1;
	while (weft_chan_recv(ch, &v) == 0)
		sum += v;
	void *pr = NULL, *sq = NULL;
	weft_join(p, &pr);
	weft_chan_destroy(ch);
	if (weft_blocking(square, (void *)(intptr_t)12, &sq) != 0 || sq != (void *)144)
		return (void *)1;
	printf("sum %ld\n", sum);
	return (void *)(intptr_t)(pr != NULL || sum != 5050);
}

int main(void)
{
	weft_rt *rt;
	struct weft_config cfg = { .workers = 2 };
	int err = weft_rt_create(&rt, &cfg);
	if (err == -EPERM || err == -ENOSYS)
		return 77;
	if (err) {
		fprintf(stderr, "weft_rt_create: %s\n", weft_strerror(err));
		return 1;
	}
	void *ret = (void *)1;
	err = weft_rt_run(rt, main_co, NULL, &ret);
	weft_rt_destroy(rt);
	return err || ret ? 1 : 0;
}
