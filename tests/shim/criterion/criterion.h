/*
 * A Criterion-compatible subset for builds where Criterion itself cannot run:
 * under ThreadSanitizer, Criterion's process helper (boxfort) maps its shared
 * arena at random addresses inside TSan's reserved range and dies before a
 * test starts (Criterion issue #274). tests/meson.build puts this folder
 * first on the include path in TSan builds, so the same test files build
 * unchanged.
 *
 * Semantics kept: each Test runs in its own child process (fork) with its
 * .timeout; a failed assertion in any thread ends that child with status 1;
 * cr_skip_test exits 77; the runner prints Criterion's synthesis line plus
 * "N passed, N failed, N skipped". It exits 1 when anything failed, else 77
 * (meson's SKIP) when a test skipped itself or no test ran (a --filter that
 * matched none), else 0: the rules of tests/criterion_main.c, which the
 * other builds link. --filter=suite/name (a '*' suffix matches a prefix)
 * selects tests; other Criterion options are accepted and ignored.
 */
#ifndef WEFT_CRITERION_SHIM_H
#define WEFT_CRITERION_SHIM_H

#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct crs_opts {
	double timeout;
	int signal;
	int exit_code;
	bool disabled;
	const char *description;
	void (*init)(void);
	void (*fini)(void);
};

struct crs_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct crs_opts *opts;
	struct crs_test *next;
};

static struct crs_test *crs_head, **crs_tail = &crs_head;

static inline void crs_register(struct crs_test *t)
{
	*crs_tail = t;
	crs_tail = &t->next;
}

#define Test(suite, name, ...)                                                     \
	static void crs_fn_##suite##_##name(void);                                 \
	static const struct crs_opts crs_opts_##suite##_##name = { __VA_ARGS__ };  \
	static struct crs_test crs_t_##suite##_##name = {                         \
		#suite, #name, crs_fn_##suite##_##name, &crs_opts_##suite##_##name, 0 }; \
	__attribute__((constructor)) static void crs_reg_##suite##_##name(void)   \
	{ crs_register(&crs_t_##suite##_##name); }                                 \
	static void crs_fn_##suite##_##name(void)

__attribute__((format(printf, 4, 5), unused))
static void crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	char msg[512] = "";
	if (fmt && *fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
	}
	fprintf(stderr, "%s:%d: Assertion failed: %s%s%s\n", file, line, expr,
	        *msg ? ": " : "", msg);
	fflush(stderr);
	_exit(1);
}

#define crs_check(cond, expr, ...) \
	do { if (!(cond)) crs_fail(__FILE__, __LINE__, expr, "" __VA_ARGS__); } while (0)

#define cr_assert(c, ...)          crs_check((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)      crs_check(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)    crs_check((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)   crs_check((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)    crs_check((a) <  (b), #a " < "  #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)   crs_check((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)    crs_check((a) >  (b), #a " > "  #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)   crs_check((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)     crs_check((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) crs_check((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) crs_check(strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) \
	crs_check((a) - (b) <= (eps) && (b) - (a) <= (eps), #a " == " #b " within " #eps, __VA_ARGS__)
#define cr_assert_fail(...)        crs_fail(__FILE__, __LINE__, "failure", "" __VA_ARGS__)
#define cr_skip_test(...) \
	do { fprintf(stderr, "skipped: " __VA_ARGS__); fputc('\n', stderr); _exit(77); } while (0)

static int crs_run_one(const struct crs_test *t)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		if (t->opts->timeout > 0)
			alarm((unsigned)(t->opts->timeout + 0.999));
		if (t->opts->init)
			t->opts->init();
		t->fn();
		if (t->opts->fini)
			t->opts->fini();
		fflush(NULL);
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		;
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		if (t->opts->signal && sig == t->opts->signal)
			return 0;
		fprintf(stderr, "[FAIL] %s::%s: %s\n", t->suite, t->name,
		        sig == SIGALRM ? "Timed out" : strsignal(sig));
		return 2;
	}
	int code = WEXITSTATUS(status);
	if (code == 77)
		return 77;
	if (code != t->opts->exit_code || t->opts->signal) {
		fprintf(stderr, "[FAIL] %s::%s: exit code %d\n", t->suite, t->name, code);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "--filter=", 9))
			filter = argv[i] + 9;
	unsigned tested = 0, passed = 0, failed = 0, crashed = 0, skipped = 0;
	for (const struct crs_test *t = crs_head; t; t = t->next) {
		char full[256];
		snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
		if (filter && fnmatch(filter, full, 0) != 0)
			continue;
		if (t->opts->disabled)
			continue;
		int r = crs_run_one(t);
		if (r == 77) {
			fprintf(stderr, "SKIPPED %s/%s\n", t->suite, t->name);
			skipped++;
			continue;
		}
		tested++;
		if (r == 0)
			passed++;
		else if (r == 2)
			crashed++;
		else
			failed++;
	}
	printf("[====] Synthesis: Tested: %u | Passing: %u | Failing: %u | Crashing: %u\n",
	       tested, passed, failed, crashed);
	printf("%u passed, %u failed, %u skipped\n", passed, failed + crashed, skipped);
	if (failed + crashed)
		return 1;
	if (tested + skipped == 0) {
		fprintf(stderr, "no test ran (a --filter that matches none?): skipped\n");
		return 77;
	}
	return skipped ? 77 : 0;
}

#endif /* WEFT_CRITERION_SHIM_H */
