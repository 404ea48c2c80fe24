/*
 * rawdisk_fork: seed 004 from user space. A read from the raw disk goes
 * straight into the user's buffer (the kernel pins its pages and the disk
 * writes them by DMA); while it is in flight another thread forks and
 * pages the buffer out (MADV_PAGEOUT) and writes to it. Every byte the
 * disk delivered must be in the buffer afterwards: a pinned page must
 * neither be paged out nor be copied away from under the transfer (the
 * kernel refuses to unmap a page that may be pinned, and fork copies such
 * a page for the child; bug=forget-anon-exclusive cannot break this,
 * because the page under a pin never reaches swap).
 *
 * argv[1]: the disk (default /dev/vdb, the scratch disk `cargo xtask qemu
 * test` attaches after the swap disk); only its first REGION bytes are
 * used (healthy pages of the faulty disk).
 */
#include "ut.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* The exit status that says the disk's writes were lost (the in-guest
 * test names it; any other failure exits 1). */
#define LOST_STATUS 4

#define REGION_PAGES 16
#define ITERATIONS 40

static unsigned char *buf;
static unsigned char *expected;
static long page;
static atomic_int go;

static void *meanwhile(void *arg)
{
	(void)arg;
	while (!atomic_load(&go))
		;
	pid_t pid = fork();
	UT_CHECK(pid >= 0, "fork while the read is in flight: %s", strerror(errno));
	if (pid == 0)
		_exit(0);
	UT_CHECK(madvise(buf, REGION_PAGES * page, MADV_PAGEOUT) == 0, "MADV_PAGEOUT: %s", strerror(errno));
	/* Write what the disk will put there anyway: harmless, unless the
	 * write makes the page a copy the disk no longer writes. */
	for (int i = 0; i < REGION_PAGES; i++)
		((volatile unsigned char *)buf)[i * page] = expected[i * page];
	int status;
	UT_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "the forked child did not exit");
	return NULL;
}

int main(int argc, char **argv)
{
	ut_name = "rawdisk_fork";
	page = ut_page_size();
	const char *disk = argc > 1 ? argv[1] : "/dev/vdb";
	size_t len = REGION_PAGES * page;
	int fd = open(disk, O_RDWR | O_DIRECT);
	if (fd < 0 && errno == EINVAL)
		fd = open(disk, O_RDWR);
	UT_CHECK(fd >= 0, "cannot open %s: %s", disk, strerror(errno));
	expected = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(expected != MAP_FAILED, "mmap: %s", strerror(errno));

	for (int iter = 0; iter < ITERATIONS; iter++) {
		for (size_t i = 0; i < len; i++)
			expected[i] = (unsigned char)(i * 131 + i / 4096 + iter * 7 + 1);
		ssize_t n = pwrite(fd, expected, len, 0);
		UT_CHECK(n == (ssize_t)len, "writing %zu bytes to %s gave %zd: %s", len, disk, n, strerror(errno));

		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		UT_CHECK(buf != MAP_FAILED, "mmap: %s", strerror(errno));
		madvise(buf, len, MADV_NOHUGEPAGE);
		memset(buf, 0xaa, len);
		atomic_store(&go, 0);
		pthread_t helper;
		int e = pthread_create(&helper, NULL, meanwhile, NULL);
		UT_CHECK(e == 0, "pthread_create: %s", strerror(e));
		atomic_store(&go, 1);
		n = pread(fd, buf, len, 0);
		UT_CHECK(n == (ssize_t)len, "reading %zu bytes from %s gave %zd: %s", len, disk, n, strerror(errno));
		pthread_join(helper, NULL);
		for (size_t i = 0; i < len; i++)
			if (buf[i] != expected[i]) {
				fprintf(stderr,
					"rawdisk_fork: FAILED: iteration %d: byte %zu is %#x, the disk holds %#x: the "
					"read's writes are lost\n",
					iter, i, buf[i], expected[i]);
				exit(LOST_STATUS);
			}
		munmap(buf, len);
	}
	close(fd);
	return 0;
}
