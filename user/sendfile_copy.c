/*
 * sendfile_copy: sendfile moves a file's bytes to a pipe (it was ENOSYS;
 * busybox cat fell back on read and write): a child sends /bin/usertests
 * (most of a MiB) from an offset through a pipe, and the parent compares
 * every byte with the file's; with an offset pointer the pointer advances
 * and the fd's offset does not, without one the fd's offset advances; a
 * write-only input is EBADF.
 *
 * argv[1] (the kernel's test passes the scratch disk, /dev/vdb): the raw
 * disk's side, which the kernel moves through a bounce frame: sendfile
 * writes 8 KiB of the file to the disk (read back with pread), sends them
 * back from the disk into a pipe, and a page whose reads fail (the
 * scratch disk's pages 32..40) is EIO, an unaligned count EINVAL.
 */
#include "ut.h"
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define FILE_PATH "/bin/usertests"
#define START 1000

/* The scratch disk's healthy page 8 on, and a page whose reads fail. */
#define RAW_AT (8 * 4096)
#define RAW_LEN 8192
#define RAW_BAD_READ (32 * 4096)

static void raw_disk(const char *disk, int file, const char *want)
{
	int p[2];
	UT_SYS(pipe(p));
	int raw = open(disk, O_RDWR);
	UT_CHECK(raw >= 0, "cannot open %s: %s", disk, strerror(errno));
	UT_SYS(lseek(raw, RAW_AT, SEEK_SET));
	off_t off = 0;
	ssize_t n = sendfile(raw, file, &off, RAW_LEN);
	UT_CHECK(n == RAW_LEN && off == RAW_LEN, "sendfile to %s: %zd (%s), offset %lld", disk, n,
		 n < 0 ? strerror(errno) : "short", (long long)off);
	UT_CHECK(lseek(raw, 0, SEEK_CUR) == RAW_AT + RAW_LEN, "the disk's offset did not move");
	char *back = aligned_alloc(4096, RAW_LEN);
	UT_CHECK(back != NULL, "aligned_alloc");
	UT_CHECK(pread(raw, back, RAW_LEN, RAW_AT) == RAW_LEN, "pread from %s: %s", disk, strerror(errno));
	UT_CHECK(memcmp(back, want, RAW_LEN) == 0, "the bytes sendfile wrote to %s differ", disk);

	off = RAW_AT;
	n = sendfile(p[1], raw, &off, RAW_LEN);
	UT_CHECK(n == RAW_LEN && off == RAW_AT + RAW_LEN, "sendfile from %s: %zd (%s)", disk, n,
		 n < 0 ? strerror(errno) : "short");
	memset(back, 0, RAW_LEN);
	for (size_t have = 0; have < RAW_LEN;) {
		ssize_t got = read(p[0], back + have, RAW_LEN - have);
		UT_CHECK(got > 0, "the pipe ended after %zu bytes", have);
		have += got;
	}
	UT_CHECK(memcmp(back, want, RAW_LEN) == 0, "the bytes sendfile read from %s differ", disk);

	off = RAW_BAD_READ;
	errno = 0;
	UT_CHECK(sendfile(p[1], raw, &off, 4096) == -1 && errno == EIO && off == RAW_BAD_READ,
		 "sendfile from %s's failing page: errno %s, offset %lld", disk, strerror(errno), (long long)off);
	off = RAW_AT;
	UT_CHECK(sendfile(p[1], raw, &off, 100) == -1 && errno == EINVAL, "an unaligned sendfile from %s: %s", disk,
		 strerror(errno));
	free(back);
	close(raw);
	close(p[0]);
	close(p[1]);
}

int main(int argc, char **argv)
{
	ut_name = "sendfile_copy";
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
	if (argc > 1)
		raw_disk(argv[1], fd, want);
	return 0;
}
