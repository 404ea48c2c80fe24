/*
 * exec_race: two threads of one process call execve at the same moment:
 * one program wins (the process exits with its status), the other call
 * gives up, nothing hangs or crashes (kernel/src/proc/exec.rs); and
 * vfork's parent sleeps until its child has exec'd or exited
 * (kernel/src/proc/clone.rs), both ways.
 */
#include "ut.h"
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

static pthread_barrier_t start;

static void *exec_thread(void *arg)
{
	char *args[] = { "exit_with", arg, NULL };
	char *env[] = { NULL };
	pthread_barrier_wait(&start);
	execve("/bin/exit_with", args, env);
	return NULL; /* lost the race: the winner ends this thread */
}

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int wait_for(pid_t pid)
{
	int status = 0;
	UT_CHECK(waitpid(pid, &status, 0) == pid, "waitpid(%d) failed", (int)pid);
	return status;
}

int main(int argc, char **argv)
{
	ut_name = "exec_race";
	(void)argc;
	(void)argv;
	for (int round = 0; round < 4; round++) {
		pid_t pid = UT_SYS(fork());
		if (pid == 0) {
			pthread_t a, b;
			pthread_barrier_init(&start, NULL, 2);
			pthread_create(&a, NULL, exec_thread, "3");
			pthread_create(&b, NULL, exec_thread, "4");
			pthread_join(a, NULL);
			pthread_join(b, NULL);
			_exit(100); /* neither exec worked */
		}
		int status = wait_for(pid);
		UT_CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4),
			 "round %d: two threads' execve ended with status %#x, not exit 3 or 4", round, status);
	}

	/* vfork: the parent goes on only once the child exited... */
	long long t0 = now_ms();
	pid_t pid = vfork();
	if (pid == 0) {
		struct timespec d = { 0, 200000000 };
		nanosleep(&d, NULL);
		_exit(5);
	}
	UT_CHECK(pid > 0, "vfork failed");
	long long waited = now_ms() - t0;
	UT_CHECK(waited >= 150, "vfork returned to the parent after %lld ms, before the child's exit", waited);
	int status = wait_for(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 5, "the vfork child's status %#x", status);

	/* ...or exec'd. */
	t0 = now_ms();
	pid = vfork();
	if (pid == 0) {
		struct timespec d = { 0, 200000000 };
		nanosleep(&d, NULL);
		char *args[] = { "exit_with", "6", NULL };
		char *env[] = { NULL };
		execve("/bin/exit_with", args, env);
		_exit(127);
	}
	UT_CHECK(pid > 0, "vfork failed");
	waited = now_ms() - t0;
	UT_CHECK(waited >= 150, "vfork returned to the parent after %lld ms, before the child's exec", waited);
	status = wait_for(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 6, "the exec'd vfork child's status %#x", status);
	return 0;
}
