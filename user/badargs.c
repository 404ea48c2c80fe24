/*
 * badargs: system calls with arguments a careless or hostile program can
 * pass get an error (or a bounded answer), and the kernel goes on. Each
 * case once ended the kernel: an overflow in its arithmetic, or an
 * allocation as large as the user asked.
 */
#include "ut.h"
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Large enough that one byte per page (8 MiB) is more than the kernel's
 * largest heap block. */
#define HUGE_RANGE (32UL << 30)

static void expect_errno(long r, int e1, int e2, const char *what)
{
	UT_CHECK(r == -1, "%s returned %ld, expected -1 with %s", what, r, strerror(e1));
	UT_CHECK(errno == e1 || errno == e2, "%s failed with errno %d (%s), expected %s", what, errno,
		 strerror(errno), strerror(e1));
}

/* mincore over a large PROT_NONE mapping answers, without the kernel
 * allocating the whole answer at once; mremap moves it the same way. */
static void large_ranges(long page)
{
	unsigned char *big = mmap(NULL, HUGE_RANGE + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	UT_CHECK(big != MAP_FAILED, "mmap of %lu bytes PROT_NONE: %s", HUGE_RANGE, strerror(errno));
	size_t pages = HUGE_RANGE / page;
	unsigned char *vec = malloc(pages);
	UT_CHECK(vec != NULL, "malloc(%zu)", pages);
	memset(vec, 0xff, pages);
	UT_SYS(mincore(big, HUGE_RANGE, vec));
	for (size_t i = 0; i < pages; i++)
		UT_CHECK((vec[i] & 1) == 0, "mincore says page %zu of an untouched mapping is resident", i);
	free(vec);
	/* An area right after, so that growing must move. */
	UT_SYS(mprotect(big + HUGE_RANGE, page, PROT_READ));
	void *moved = mremap(big, HUGE_RANGE, HUGE_RANGE + page, MREMAP_MAYMOVE);
	UT_CHECK(moved != MAP_FAILED, "mremap of %lu bytes PROT_NONE: %s", HUGE_RANGE, strerror(errno));
	UT_CHECK(moved != big, "mremap grew in place over the area after");
	UT_SYS(munmap(moved, HUGE_RANGE + page));
	UT_SYS(munmap(big + HUGE_RANGE, page));
}

static void mremap_lengths(long page)
{
	char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	expect_errno((long)mremap(p, 0, page, MREMAP_MAYMOVE), EINVAL, EINVAL, "mremap of a private mapping with old_len 0");
	/* old + old_len wraps past 2^64. */
	expect_errno((long)mremap(p, -(unsigned long)(16 * page), 2 * page, MREMAP_MAYMOVE), EFAULT, EINVAL,
		     "mremap with an old_len that wraps");
	p[0] = 1;
	UT_SYS(munmap(p, page));
}

/* mmap of what has no offsets or cannot be read. */
static void mmap_files(long page)
{
	int fds[2];
	UT_SYS(pipe(fds));
	UT_CHECK(write(fds[1], "12345678", 8) == 8, "write to the pipe: %s", strerror(errno));
	/* The pipe's read ignores the offset: offset + bytes read overflowed. */
	expect_errno(syscall(SYS_mmap, 0UL, page, PROT_READ, MAP_PRIVATE, fds[0], -(unsigned long)page), ENODEV,
		     EOVERFLOW, "mmap of a pipe at an offset near 2^64");
	expect_errno(syscall(SYS_mmap, 0UL, page, PROT_READ, MAP_PRIVATE, fds[0], 0UL), ENODEV, ENODEV,
		     "mmap of a pipe");
	expect_errno(syscall(SYS_mmap, 0UL, page, PROT_READ, MAP_PRIVATE, fds[1], 0UL), EACCES, EACCES,
		     "mmap of a write-only fd");
	close(fds[0]);
	close(fds[1]);
	int fd = UT_SYS(open("/etc/passwd", O_RDONLY));
	expect_errno(syscall(SYS_mmap, 0UL, page, PROT_READ, MAP_PRIVATE, fd, -(unsigned long)page), EOVERFLOW,
		     EOVERFLOW, "mmap of a file at an offset near 2^64");
	close(fd);
}

/* clone(CLONE_PARENT_SETTID) into a bad address: either no child (this
 * kernel: EFAULT) or, as Linux does, a child and its pid; never an error
 * with a child running. */
static void clone_parent_settid(long page)
{
	void *gone = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(gone != MAP_FAILED, "mmap: %s", strerror(errno));
	UT_SYS(munmap(gone, page));
	long r = syscall(SYS_clone, (unsigned long)(SIGCHLD | CLONE_PARENT_SETTID), 0UL, gone, 0UL, 0UL);
	if (r == 0)
		_exit(0);
	if (r > 0) {
		int status;
		UT_CHECK(waitpid(r, &status, 0) == r, "waitpid: %s", strerror(errno));
		return;
	}
	UT_CHECK(errno == EFAULT, "clone(CLONE_PARENT_SETTID) into an unmapped page: errno %d (%s)", errno,
		 strerror(errno));
	errno = 0;
	UT_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
		 "clone(CLONE_PARENT_SETTID) failed with EFAULT but left a child");
}

#if defined(__x86_64__)
/* A thread's FS base must be a user address: a non-canonical one would
 * fault in the kernel when loaded. */
static void clone_settls(void)
{
	unsigned long flags = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_SETTLS;
	long r = syscall(SYS_clone, flags, 0UL, 0UL, 0UL, 0x0000800000000000UL);
	if (r == 0)
		syscall(SYS_exit, 0);
	expect_errno(r, EPERM, EPERM, "clone(CLONE_SETTLS) with a non-canonical FS base");
}
#endif

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "badargs";
	long page = ut_page_size();
	mremap_lengths(page);
	mmap_files(page);
	clone_parent_settid(page);
#if defined(__x86_64__)
	clone_settls();
#endif
	large_ranges(page);
	return 0;
}
