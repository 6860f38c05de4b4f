/*
 * main() of every Criterion test program (tests/meson.build), in place of
 * the one in libcriterion: the same run, but the exit status tells meson
 * about skips. Criterion's own runner exits 0 when a test called
 * cr_skip_test and when --filter matched no test at all, so meson showed OK
 * for a program that checked nothing. Here:
 *   1   a test failed or crashed (as Criterion: its run reported a failure);
 *   77  (meson's SKIP) no test ran, or a test skipped itself; the skipped
 *       ones are named on stderr with their reason, and how many passed;
 *   0   every test that was selected ran and passed.
 * Tests left out by --filter or .disabled are not skips of the program: the
 * runner does not start them (no PRE_INIT), where a cr_skip_test started.
 * The report hooks run in the runner process, one test at a time.
 * The TSan builds use tests/shim/criterion/criterion.h, whose runner has the
 * same rules.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>

static size_t started, skipped;

ReportHook(PRE_INIT)(struct criterion_test *t)
{
	(void)t;
	started++;
}

ReportHook(POST_TEST)(struct criterion_test_stats *st)
{
	if (st->test_status != CR_STATUS_SKIPPED)
		return;
	skipped++;
	fprintf(stderr, "SKIPPED %s/%s: %s\n", st->test->category, st->test->name,
	        st->message ? st->message : "(no reason given)");
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int rc = 0, ran = 0;
	if (criterion_handle_args(argc, argv, true)) {
		ran = 1;
		rc = !criterion_run_all_tests(tests);
	}
	criterion_finalize(tests);
	if (!ran || rc)
		return rc;               /* --help, --list ...; or a failure */
	if (started == 0) {
		fprintf(stderr, "no test ran (a --filter that matches none?): skipped\n");
		return 77;
	}
	if (skipped) {
		fprintf(stderr, "%zu of %zu tests skipped themselves (above), %zu passed: "
		        "reported as skipped\n", skipped, started, started - skipped);
		return 77;
	}
	return 0;
}
