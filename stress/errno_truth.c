/* The out-of-line reference for errno_lto.c: the calling thread's &errno and
 * pthread_self(), read fresh on every call. noinline plus an asm barrier on
 * the results keeps LTO from inlining, hoisting or treating it as const. */
#include <errno.h>
#include <pthread.h>

void stress_truth(int **errno_addr, pthread_t *self);

__attribute__((noinline)) void stress_truth(int **errno_addr, pthread_t *self)
{
	int *e = &errno;
	pthread_t s = pthread_self();
	__asm__ volatile("" : "+r"(e), "+r"(s) : : "memory");
	*errno_addr = e;
	*self = s;
}
