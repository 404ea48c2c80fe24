/*
 * exit_with N: exits with status N (0 to 255), after saying so. Not a
 * test: `cargo xtask test` runs it with `qemu run` to see a program's exit
 * status reach xtask.
 */
#include "ut.h"

int main(int argc, char **argv)
{
	ut_name = "exit_with";
	UT_CHECK(argc == 2, "usage: exit_with N");
	int status = atoi(argv[1]);
	printf("exit_with: exiting with %d\n", status);
	return status & 0xff;
}
