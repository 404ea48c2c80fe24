/*
 * hello: the first program of the process unit (issue 15): prints, uses
 * malloc (brk and mmap), forks and waits for the child's status, starts a
 * thread and joins it (clone, futex, set_tid_address), and exits 0.
 */
#include "ut.h"
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread_body(void *arg)
{
	int *value = arg;
	*value += 1;
	return value;
}

int main(int argc, char **argv)
{
	ut_name = "hello";
	(void)argc;
	(void)argv;
	printf("hello: hello, world\n");

	char *small = malloc(100);
	char *big = malloc(1 << 20);
	UT_CHECK(small && big, "malloc failed");
	memset(big, 0x5a, 1 << 20);
	UT_CHECK(big[12345] == 0x5a, "malloc'd memory does not hold a byte");
	free(big);
	free(small);

	pid_t pid = fork();
	UT_CHECK(pid >= 0, "fork failed");
	if (pid == 0)
		_exit(7);
	int status = 0;
	UT_CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7, "the child's status is %#x, not exit 7", status);

	int value = 41;
	pthread_t t;
	void *ret = NULL;
	UT_CHECK(pthread_create(&t, NULL, thread_body, &value) == 0, "pthread_create failed");
	UT_CHECK(pthread_join(t, &ret) == 0, "pthread_join failed");
	UT_CHECK(ret == &value && value == 42, "the thread did not run (value %d)", value);

	printf("hello: malloc, fork+wait and a thread: ok\n");
	return 0;
}
