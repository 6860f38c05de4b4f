/*
 * Shared by the tests whose checks run inside coroutines (chan, sync, gen,
 * blocking). On worker threads a failed Criterion assert must not longjmp
 * off a coroutine stack, so CHECK counts failures and remembers the first
 * line; run_with() then asserts on the test's own thread that none failed.
 */
#ifndef WEFT_TEST_HARNESS_H
#define WEFT_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include "weft.h"

static _Atomic unsigned failures;
static _Atomic int first_fail_line;

#define CHECK(c) do { if (!(c)) { \
	int z_ = 0; atomic_compare_exchange_strong(&first_fail_line, &z_, __LINE__); \
	atomic_fetch_add(&failures, 1); } } while (0)

/* Run fn(arg) as the main coroutine of a fresh runtime (stack 0: default). */
static inline void run_with(unsigned workers, size_t stack, weft_fn fn, void *arg)
{
	atomic_store(&failures, 0);
	atomic_store(&first_fail_line, 0);
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers, .stack_size = stack };
	int err = weft_rt_create(&rt, &cfg);
	cr_assert_eq(err, 0, "weft_rt_create: %s", weft_strerror(err));
	cr_assert_eq(weft_rt_run(rt, fn, arg, NULL), 0);
	cr_assert_eq(weft_rt_destroy(rt), 0);
	cr_assert_eq(atomic_load(&failures), 0, "%u check(s) failed, first at line %d",
	             atomic_load(&failures), atomic_load(&first_fail_line));
}

#endif /* WEFT_TEST_HARNESS_H */
