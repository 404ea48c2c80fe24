/*
 * enosys: system call numbers the kernel does not implement return ENOSYS
 * (and the process goes on), as glibc expects of rseq and clone3.
 */
#include "ut.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "enosys";
	long numbers[] = { 999, 1000, 4095 };
	for (unsigned i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		errno = 0;
		long r = syscall(numbers[i], 1, 2, 3);
		UT_CHECK(r == -1 && errno == ENOSYS, "system call %ld returned %ld with errno %d, expected ENOSYS",
			 numbers[i], r, errno);
	}
	UT_CHECK(getpid() > 0, "getpid() after the unknown calls failed");
	return 0;
}
