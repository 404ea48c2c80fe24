/*
 * execve_limits: execve with more arguments than the initial stack takes
 * fails with E2BIG and the caller goes on (its other threads too). Two
 * million empty strings are 2 MiB of pointers and NULs: counted as such,
 * not only as 2 MiB of NULs (which once let the kernel build a 48 MiB
 * list and die).
 */
#include "ut.h"
#include <pthread.h>
#include <sys/mman.h>

#define MANY (2L << 20)

static volatile int alive;

static void *spin_thread(void *arg)
{
	(void)arg;
	for (;;)
		alive = 1;
	return NULL;
}

int main(void)
{
	ut_name = "execve_limits";
	pthread_t t;
	UT_CHECK(pthread_create(&t, NULL, spin_thread, NULL) == 0, "pthread_create");
	char **argv = mmap(NULL, (MANY + 1) * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(argv != MAP_FAILED, "mmap: %s", strerror(errno));
	static char empty[1];
	for (long i = 0; i < MANY; i++)
		argv[i] = empty;
	argv[MANY] = NULL;
	char *envp[] = { NULL };
	int r = execve("/bin/hello", argv, envp);
	UT_CHECK(r == -1 && errno == E2BIG, "execve with %ld empty strings: %s (not E2BIG)", MANY, strerror(errno));
	/* The other thread was not ended for a call that failed. */
	alive = 0;
	for (int i = 0; i < 1000000 && !alive; i++)
		sched_yield();
	UT_CHECK(alive, "the other thread stopped running after the failed execve");
	return 0;
}
