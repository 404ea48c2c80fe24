/*
 * clone_fs: a process made with clone(CLONE_FS) shares its parent's
 * current directory (a chdir in the child moves the parent too), one made
 * without it gets a copy (kernel/src/proc/files.rs).
 */
#include "ut.h"
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* A fork-like clone with `flags` (no new stack: the arguments after the
 * flags are 0 in either arch's order). */
static pid_t clone_process(unsigned long flags)
{
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

static void child_chdir(unsigned long flags, const char *dir)
{
	pid_t pid = clone_process(flags);
	UT_CHECK(pid >= 0, "clone(%#lx): %s", flags, strerror(errno));
	if (pid == 0)
		_exit(chdir(dir) == 0 ? 0 : 1);
	int status = 0;
	UT_CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's chdir(%s) failed (%#x)", dir, status);
}

int main(int argc, char **argv)
{
	ut_name = "clone_fs";
	(void)argc;
	(void)argv;
	char cwd[256];
	UT_SYS(chdir("/"));
	child_chdir(CLONE_FS, "/tmp");
	UT_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, "/tmp") == 0,
		 "after a CLONE_FS child's chdir(/tmp) the parent is in %s", cwd);
	child_chdir(0, "/etc");
	UT_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, "/tmp") == 0,
		 "after a plain child's chdir(/etc) the parent is in %s, not /tmp", cwd);
	return 0;
}
