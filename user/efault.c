/*
 * efault: a bad pointer given to a system call gets EFAULT (the kernel's
 * copy fails and is fixed up) instead of killing the process or the kernel:
 * write from, and read into, an unmapped page and a kernel address.
 */
#include "ut.h"
#include <sys/mman.h>

#if defined(__x86_64__)
#define KERNEL_ADDR ((void *)0xffff800000001000UL)
#else
#define KERNEL_ADDR ((void *)0xffff000000001000UL)
#endif

static void expect_efault(long r, const char *what)
{
	UT_CHECK(r == -1, "%s returned %ld, expected -1 with EFAULT", what, r);
	UT_CHECK(errno == EFAULT, "%s failed with errno %d (%s), expected EFAULT", what, errno, strerror(errno));
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "efault";
	long page = ut_page_size();
	unsigned char *gone = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(gone != MAP_FAILED, "mmap: %s", strerror(errno));
	UT_SYS(munmap(gone, page));
	int fds[2];
	UT_SYS(pipe(fds));

	expect_efault(write(fds[1], gone, 16), "write() from an unmapped page");
	expect_efault(write(fds[1], KERNEL_ADDR, 16), "write() from a kernel address");
	expect_efault(write(STDOUT_FILENO, gone, 16), "write() to the console from an unmapped page");
	UT_CHECK(write(fds[1], "abcd", 4) == 4, "a good write() after the bad ones failed: %s", strerror(errno));
	expect_efault(read(fds[0], gone, 4), "read() into an unmapped page");
	/* The data is still in the pipe: the failed read took nothing, or at
	 * least a good read still works. */
	char buf[8] = { 0 };
	UT_CHECK(read(fds[0], buf, 4) > 0, "a good read() after the bad one failed: %s", strerror(errno));
	UT_CHECK(write(fds[1], "efgh", 4) == 4, "write: %s", strerror(errno));
	expect_efault(read(fds[0], KERNEL_ADDR, 4), "read() into a kernel address");
	expect_efault(pipe((int *)gone), "pipe() into an unmapped page");
	return 0;
}
