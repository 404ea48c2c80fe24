/*
 * kernel_read: a process that reads kernel memory is killed by SIGSEGV
 * (the kernel's pages have no user bit), and its parent sees that in the
 * wait status. argv[1] may name a kernel address that really is mapped
 * (the in-guest test passes one); otherwise a direct-map address is used.
 */
#include "ut.h"
#include <signal.h>
#include <sys/wait.h>

#if defined(__x86_64__)
#define DEFAULT_KERNEL_ADDR 0xffff800000001000UL
#else
#define DEFAULT_KERNEL_ADDR 0xffff000040001000UL
#endif

int main(int argc, char **argv)
{
	ut_name = "kernel_read";
	unsigned long addr = argc > 1 ? strtoul(argv[1], NULL, 0) : DEFAULT_KERNEL_ADDR;
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		volatile unsigned long *p = (volatile unsigned long *)addr;
		unsigned long v = *p;
		fprintf(stderr, "kernel_read: FAILED: the child read %#lx at kernel address %#lx\n", v, addr);
		_exit(1);
	}
	int status;
	UT_SYS(waitpid(pid, &status, 0));
	UT_CHECK(WIFSIGNALED(status), "the child reading %#lx was not killed: wait status %#x", addr, status);
	UT_CHECK(WTERMSIG(status) == SIGSEGV, "the child reading %#lx was killed by signal %d, not SIGSEGV", addr,
		 WTERMSIG(status));
	return 0;
}
