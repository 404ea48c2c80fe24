/*
 * sendfile_copy: sendfile moves a file's bytes to a pipe (it was ENOSYS;
 * busybox cat fell back on read and write): a child sends /bin/usertests
 * (most of a MiB) from an offset through a pipe, and the parent compares
 * every byte with the file's; with an offset pointer the pointer advances
 * and the fd's offset does not, without one the fd's offset advances; a
 * write-only input is EBADF.
 */
#include "ut.h"
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FILE_PATH "/bin/usertests"
#define START 1000

int main(int argc, char **argv)
{
	ut_name = "sendfile_copy";
	(void)argc;
	(void)argv;
	int fd = UT_SYS(open(FILE_PATH, O_RDONLY));
	struct stat st;
	UT_SYS(fstat(fd, &st));
	size_t size = st.st_size;
	UT_CHECK(size > 200000, "%s is only %zu bytes", FILE_PATH, size);
	char *want = malloc(size), *got = malloc(size);
	UT_CHECK(want && got, "malloc");
	UT_CHECK(pread(fd, want, size, 0) == (ssize_t)size, "pread of the whole file");

	int p[2];
	UT_SYS(pipe(p));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		close(p[0]);
		off_t off = START;
		ssize_t n = sendfile(p[1], fd, &off, size);
		if (n != (ssize_t)(size - START) || off != (off_t)size || lseek(fd, 0, SEEK_CUR) != 0)
			_exit(1);
		/* From the fd's offset: 10 bytes from 0, and the offset moves. */
		if (sendfile(p[1], fd, NULL, 10) != 10 || lseek(fd, 0, SEEK_CUR) != 10)
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	size_t have = 0, total = size - START + 10;
	while (have < total) {
		ssize_t n = read(p[0], got + have, total - have);
		UT_CHECK(n > 0, "the pipe ended after %zu of %zu bytes", have, total);
		have += n;
	}
	UT_CHECK(memcmp(got, want + START, size - START) == 0, "the bytes sent from offset %d differ", START);
	UT_CHECK(memcmp(got + size - START, want, 10) == 0, "the 10 bytes sent from the fd's offset differ");
	int status = 0;
	UT_SYS(waitpid(pid, &status, 0));
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "the sender's status %#x (1: the offset pointer, 2: the fd's offset)", status);

	UT_CHECK(sendfile(p[0], p[0], NULL, 1) == -1 && errno == EBADF, "sendfile to a read end: %s",
		 strerror(errno));
	return 0;
}
