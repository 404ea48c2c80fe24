/*
 * signal_waits: signals and process ends reach threads blocked in the
 * kernel, and a new process can take a signal at once.
 *
 * - fork, then kill(child, SIGUSR1) at once with a handler installed: the
 *   child runs the handler (its first pass into user mode delivers it);
 * - a thread blocked reading a pipe while another calls exit_group: the
 *   process ends and wait4 returns its status;
 * - a blocking pipe read and wait4 interrupted by a handled signal (no
 *   SA_RESTART) return EINTR; the default action of SIGTERM ends a process
 *   blocked in a pipe read;
 * - a write to a pipe with no reader: EPIPE when SIGPIPE is ignored, death
 *   by SIGPIPE by default;
 * - kill of a zombie (ended, not yet waited for) succeeds and changes
 *   nothing, as on Linux; once reaped, the pid is ESRCH.
 */
#include "ut.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	got = sig;
}

/* Installs on_usr1 for SIGUSR1 without SA_RESTART. */
static void handle_usr1(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	UT_SYS(sigaction(SIGUSR1, &sa, NULL));
}

static void fork_then_kill(void)
{
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		for (int i = 0; i < 2000 && !got; i++)
			ut_pause_ms(1);
		_exit(got == SIGUSR1 ? 0 : 3);
	}
	UT_SYS(kill(pid, SIGUSR1));
	int status = ut_reap(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "a child sent SIGUSR1 just after fork: wait status %#x (not its handler's exit 0)", status);
}

static int reader_fd;

static void *block_in_read(void *arg)
{
	(void)arg;
	char c;
	read(reader_fd, &c, 1);
	return NULL;
}

static void exit_group_while_reading(void)
{
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		int fds[2];
		UT_SYS(pipe(fds));
		reader_fd = fds[0];
		pthread_t t;
		UT_CHECK(pthread_create(&t, NULL, block_in_read, NULL) == 0, "pthread_create");
		ut_pause_ms(50);
		_exit(7); /* exit_group, the writer still open */
	}
	int status = ut_reap(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7,
		 "exit_group with a thread blocked in a pipe read: wait status %#x", status);
}

static void read_interrupted(void)
{
	int fds[2];
	UT_SYS(pipe(fds));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		char c;
		ssize_t r = read(fds[0], &c, 1);
		_exit(r == -1 && errno == EINTR && got == SIGUSR1 ? 0 : 4);
	}
	/* Again and again: one may land before the child blocks. */
	int status;
	while (UT_SYS(waitpid(pid, &status, WNOHANG)) == 0) {
		kill(pid, SIGUSR1);
		ut_pause_ms(20);
	}
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "a pipe read with a handled signal: wait status %#x (not EINTR)", status);

	pid = UT_SYS(fork());
	if (pid == 0) {
		char c;
		read(fds[0], &c, 1);
		_exit(5);
	}
	ut_pause_ms(50);
	UT_SYS(kill(pid, SIGTERM));
	status = ut_reap(pid);
	UT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
		 "SIGTERM to a process blocked in a pipe read: wait status %#x", status);
	close(fds[0]);
	close(fds[1]);
}

static void wait4_interrupted(void)
{
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		pid_t sleeper = UT_SYS(fork());
		if (sleeper == 0) {
			/* Again and again: one may land before the wait. */
			for (int i = 0; i < 100; i++) {
				kill(getppid(), SIGUSR1);
				ut_pause_ms(50);
			}
			_exit(0);
		}
		int status;
		pid_t r = waitpid(sleeper, &status, 0);
		int ok = r == -1 && errno == EINTR && got == SIGUSR1;
		kill(sleeper, SIGKILL);
		ut_reap(sleeper);
		_exit(ok ? 0 : 6);
	}
	int status = ut_reap(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "wait4 with a handled signal: wait status %#x (not EINTR)", status);
}

static void sigpipe(void)
{
	int fds[2];
	UT_SYS(pipe(fds));
	close(fds[0]);
	UT_SYS(signal(SIGPIPE, SIG_IGN) == SIG_ERR ? -1 : 0);
	UT_CHECK(write(fds[1], "x", 1) == -1 && errno == EPIPE, "write with no reader, SIGPIPE ignored: not EPIPE");
	UT_SYS(signal(SIGPIPE, SIG_DFL) == SIG_ERR ? -1 : 0);
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		write(fds[1], "x", 1);
		_exit(8);
	}
	int status = ut_reap(pid);
	UT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE,
		 "write with no reader: wait status %#x (not death by SIGPIPE)", status);
	close(fds[1]);
}

/* Waits until /proc/<pid>/stat says the process is a zombie ('Z'). */
static void wait_zombie(pid_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	for (int tries = 0; tries < 1000; tries++) {
		int fd = UT_SYS(open(path, O_RDONLY));
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		UT_CHECK(n > 0, "reading %s", path);
		buf[n] = 0;
		char *end = strrchr(buf, ')');
		if (end && end[1] == ' ' && end[2] == 'Z')
			return;
		ut_pause_ms(1);
	}
	UT_CHECK(0, "pid %d never became a zombie: %s", pid, buf);
}

static void kill_zombie(void)
{
	pid_t pid = UT_SYS(fork());
	if (pid == 0)
		_exit(9);
	wait_zombie(pid);
	UT_CHECK(kill(pid, 0) == 0, "kill(zombie, 0): %s (Linux: 0)", strerror(errno));
	UT_CHECK(kill(pid, SIGTERM) == 0, "kill(zombie, SIGTERM): %s (Linux: 0)", strerror(errno));
	int status = ut_reap(pid);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 9, "the zombie's status changed: %#x", status);
	UT_CHECK(kill(pid, 0) == -1 && errno == ESRCH, "kill of a reaped pid: %s (not ESRCH)", strerror(errno));
}

int main(void)
{
	ut_name = "signal_waits";
	handle_usr1(); /* inherited by every child */
	fork_then_kill();
	exit_group_while_reading();
	read_interrupted();
	wait4_interrupted();
	sigpipe();
	kill_zombie();
	return 0;
}
