/*
 * proc_stat: /proc/<pid>/cmdline is the arguments, each followed by a NUL,
 * and /proc/<pid>/stat has Linux's field layout (kernel/src/proc/procfs.rs):
 * pid, (comm), state, ppid, minflt, utime (after a spin), num_threads,
 * vsize and rss, for this process and for a child read by pid.
 */
#include "ut.h"
#include <sys/wait.h>
#include <time.h>

/* The fields after "(comm) ", 1-based as in proc(5): f[i] is field i. */
static unsigned long long f[53];

static void read_stat(pid_t pid, char *comm, size_t comm_len, char *state)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = UT_SYS(open(path, O_RDONLY));
	ssize_t n = UT_SYS(read(fd, buf, sizeof buf - 1));
	close(fd);
	buf[n] = 0;
	char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
	UT_CHECK(open_paren && close_paren && close_paren > open_paren, "%s: no (comm): %s", path, buf);
	f[1] = strtoull(buf, NULL, 10);
	snprintf(comm, comm_len, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
	UT_CHECK(close_paren[1] == ' ' && close_paren[3] == ' ', "%s: no state after the comm: %s", path, buf);
	*state = close_paren[2];
	char *p = close_paren + 3;
	int i = 4;
	for (; i <= 52 && *p == ' '; i++)
		f[i] = strtoull(p + 1, &p, 10);
	UT_CHECK(i == 53 && *p == '\n', "%s: %d fields, not 52: %s", path, i - 1, buf);
}

int main(int argc, char **argv)
{
	ut_name = "proc_stat";
	if (argc > 1 && strcmp(argv[1], "--wait") == 0) {
		/* The child: waits for its parent to read its files. */
		char c;
		return read(0, &c, 1) == 1 ? 0 : 1;
	}
	char comm[64], state;
	volatile unsigned long x = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 100000; i++)
			x += i;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);

	read_stat(getpid(), comm, sizeof comm, &state);
	UT_CHECK((pid_t)f[1] == getpid(), "field 1 is %llu, not the pid %d", f[1], (int)getpid());
	UT_CHECK(strcmp(comm, "proc_stat") == 0, "comm is '%s'", comm);
	UT_CHECK(state == 'R', "state is %c", state);
	UT_CHECK((pid_t)f[4] == getppid(), "ppid %llu, getppid %d", f[4], (int)getppid());
	UT_CHECK(f[10] > 0, "minflt is 0");
	UT_CHECK(f[14] >= 10, "utime is %llu ticks after a 300 ms spin", f[14]);
	UT_CHECK(f[20] == 1, "num_threads is %llu", f[20]);
	UT_CHECK(f[23] > 1000000, "vsize is %llu bytes", f[23]);
	UT_CHECK(f[24] > 10, "rss is %llu pages", f[24]);

	/* A child, by pid: its cmdline and stat. */
	int fds[2];
	UT_SYS(pipe(fds));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[1]);
		execl("/bin/proc_stat", "proc_stat", "--wait", "", "third arg", (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	const char want[] = "proc_stat\0--wait\0\0third arg";
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	ssize_t n = 0;
	for (int tries = 0; tries < 1000; tries++) {
		/* Until the exec happened (before it, the parent's arguments). */
		int fd = UT_SYS(open(path, O_RDONLY));
		n = UT_SYS(read(fd, buf, sizeof buf));
		close(fd);
		if (n == (ssize_t)sizeof want && memcmp(buf, want, sizeof want) == 0)
			break;
		usleep(10000);
	}
	UT_CHECK(n == (ssize_t)sizeof want && memcmp(buf, want, sizeof want) == 0,
		 "%s: %zd bytes, not the %zu of 'proc_stat\\0--wait\\0\\0third arg\\0'", path, n, sizeof want);
	read_stat(pid, comm, sizeof comm, &state);
	UT_CHECK((pid_t)f[1] == pid && (pid_t)f[4] == getpid(), "the child's pid %llu and ppid %llu", f[1], f[4]);
	UT_CHECK(f[20] == 1, "the child's num_threads is %llu", f[20]);
	UT_SYS(write(fds[1], "x", 1));
	int status = 0;
	UT_SYS(waitpid(pid, &status, 0));
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's status %#x", status);
	return 0;
}
