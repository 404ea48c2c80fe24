/*
 * cow_fork: after fork, parent and child both write the pages they shared
 * and each sees only its own writes (copy on write on both sides).
 */
#include "ut.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 32

static void fill(unsigned char *p, long page, unsigned char base)
{
	for (int i = 0; i < PAGES; i += 2)
		p[i * page + 1] = (unsigned char)(base + i);
}

/* Odd pages keep the value written before fork; even pages hold base + i. */
static const char *check(const unsigned char *p, long page, unsigned char base)
{
	static char why[128];
	for (int i = 0; i < PAGES; i++) {
		unsigned char want = (i % 2) ? (unsigned char)(0x40 + i) : (unsigned char)(base + i);
		if (p[i * page + 1] != want) {
			snprintf(why, sizeof why, "page %d holds %#x, expected %#x", i, p[i * page + 1], want);
			return why;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "cow_fork";
	long page = ut_page_size();
	unsigned char *p = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	for (int i = 0; i < PAGES; i++)
		p[i * page + 1] = (unsigned char)(0x40 + i);
	int to_child[2], to_parent[2];
	UT_SYS(pipe(to_child));
	UT_SYS(pipe(to_parent));
	pid_t pid = UT_SYS(fork());
	char token = 'x';
	if (pid == 0) {
		ut_name = "cow_fork (child)";
		fill(p, page, 0x80);
		UT_SYS(write(to_parent[1], &token, 1));
		/* The parent writes its copy now; wait until it has. */
		UT_CHECK(read(to_child[0], &token, 1) == 1, "the parent went away");
		const char *why = check(p, page, 0x80);
		UT_CHECK(!why, "the child's copy after both wrote: %s", why);
		_exit(0);
	}
	UT_CHECK(read(to_parent[0], &token, 1) == 1, "the child died before writing");
	fill(p, page, 0xc0);
	UT_SYS(write(to_child[1], &token, 1));
	int status;
	UT_SYS(waitpid(pid, &status, 0));
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with wait status %#x", status);
	const char *why = check(p, page, 0xc0);
	UT_CHECK(!why, "the parent's copy after both wrote: %s", why);
	return 0;
}
