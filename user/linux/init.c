/*
 * init: the first process of the Linux reference boot of
 * `cargo xtask bench --linux` (xtask/src/linuxref.rs), run by Debian's
 * unmodified kernel from the initramfs xtask writes for it. It is not
 * one of the project's user programs (it is not in the usertests
 * multicall) and never runs on the project's kernel.
 *
 * It puts up what the benchmark program needs and nothing more:
 *   1. devtmpfs on /dev (the kernel does not mount it), and /dev/console
 *      as standard input, output and error;
 *   2. proc on /proc (the benchmark reads /proc/vmstat) and sysfs on /sys;
 *   3. the modules listed in /etc/modules-load, one path a line, in that
 *      order (xtask writes them dependencies first), with finit_module;
 *   4. swap on /dev/vda, once the virtio disk has shown up;
 *   5. the program given after `--` on the kernel command line, as a
 *      child, waited for;
 *   6. how it ended, in the lines the project's kernel prints for its own
 *      first program (`init: exited with status N`, `init: killed by
 *      signal S`, `init: cannot run PATH: WHY`), so the host reads both
 *      kernels' runs with the same parser; then the machine is powered off.
 * A step that fails prints `init: cannot run ...` with the reason and
 * powers off: the host then sees no `exited` line and fails the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MODULES_LIST "/etc/modules-load"
#define SWAP_DISK "/dev/vda"
/* How long the swap disk may take to appear after its driver loaded. */
#define DISK_WAIT_MS 10000

static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* Only reached when the reboot call failed. */
	for (;;)
		pause();
}

/* The step `what` failed: say so in the `cannot run` form and stop. */
static void give_up(const char *what, int err)
{
	printf("init: cannot run %s: %s\n", what, strerror(err));
	fflush(stdout);
	power_off();
}

static void setup_console(void)
{
	/* Standard I/O may be closed: the initramfs has no /dev/console. */
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0 && errno != EBUSY)
		give_up("mount devtmpfs on /dev", errno);
	int fd = open("/dev/console", O_RDWR);
	if (fd < 0)
		give_up("open /dev/console", errno);
	for (int i = 0; i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static void load_modules(void)
{
	FILE *list = fopen(MODULES_LIST, "r");
	if (!list)
		give_up(MODULES_LIST, errno);
	char line[256];
	while (fgets(line, sizeof line, list)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0')
			continue;
		int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			give_up(line, errno);
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
			give_up(line, errno);
		close(fd);
	}
	fclose(list);
}

static void wait_for(const char *path)
{
	struct stat st;
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int waited = 0; stat(path, &st) != 0; waited += 10) {
		if (waited >= DISK_WAIT_MS)
			give_up(path, ENOENT);
		nanosleep(&tick, NULL);
	}
}

int main(int argc, char **argv)
{
	setup_console();
	if (mount("proc", "/proc", "proc", 0, NULL) != 0)
		give_up("mount proc on /proc", errno);
	if (mount("sysfs", "/sys", "sysfs", 0, NULL) != 0)
		give_up("mount sysfs on /sys", errno);
	load_modules();
	wait_for(SWAP_DISK);
	if (swapon(SWAP_DISK, 0) != 0)
		give_up("swapon " SWAP_DISK, errno);
	if (argc < 2)
		give_up("(nothing: no program after `--` on the kernel command line)", EINVAL);
	setenv("PATH", "/bin", 1);

	/* A close-on-exec pipe tells the parent whether execv succeeded. */
	int report[2];
	if (pipe2(report, O_CLOEXEC) != 0)
		give_up("pipe2", errno);
	pid_t child = fork();
	if (child < 0)
		give_up("fork", errno);
	if (child == 0) {
		close(report[0]);
		execv(argv[1], argv + 1);
		int err = errno;
		if (write(report[1], &err, sizeof err) != sizeof err)
			_exit(127);
		_exit(127);
	}
	close(report[1]);
	int err = 0;
	if (read(report[0], &err, sizeof err) == sizeof err)
		give_up(argv[1], err);
	close(report[0]);

	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			give_up("waitpid", errno);
	if (WIFEXITED(status))
		printf("init: exited with status %d\n", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("init: killed by signal %d\n", WTERMSIG(status));
	fflush(stdout);
	power_off();
	return 0;
}
