/*
 * cpu_times: user and system time are accounted (kernel/src/proc/thread.rs
 * reads the clock around each entry to user mode; the scheduler counts
 * each task's time on a CPU). A user-mode spin shows in ru_utime and not
 * in ru_stime; a loop of system calls shows in ru_stime; a sleep shows in
 * neither; a child's spin comes back in wait4's rusage and in
 * RUSAGE_CHILDREN; RUSAGE_THREAD is the calling thread's.
 */
#include "ut.h"
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long us_of(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

/* Spins in user mode for ms milliseconds of wall time (few clock reads). */
static void spin_user(int ms)
{
	volatile unsigned long x = 0;
	long long end = now_ns() + ms * 1000000LL;
	while (now_ns() < end)
		for (int i = 0; i < 100000; i++)
			x += i;
}

static void usage(int who, long long *user_us, long long *sys_us)
{
	struct rusage r;
	UT_SYS(getrusage(who, &r));
	*user_us = us_of(r.ru_utime);
	*sys_us = us_of(r.ru_stime);
}

int main(int argc, char **argv)
{
	ut_name = "cpu_times";
	(void)argc;
	(void)argv;
	long long u0, s0, u1, s1, u2, s2, u3, s3;
	usage(RUSAGE_SELF, &u0, &s0);
	spin_user(300);
	usage(RUSAGE_SELF, &u1, &s1);
	/* A loaded host may take the CPU away: half the wall time at least. */
	UT_CHECK(u1 - u0 >= 100000, "a 300 ms user-mode spin added %lld us of user time", u1 - u0);
	UT_CHECK(u1 - u0 <= 2000000, "a 300 ms spin added %lld us of user time", u1 - u0);

	long long end = now_ns() + 300 * 1000000LL;
	while (now_ns() < end)
		for (int i = 0; i < 100; i++)
			syscall(SYS_getppid);
	usage(RUSAGE_SELF, &u2, &s2);
	UT_CHECK(s2 - s1 > 0, "a 300 ms loop of system calls added no system time");

	struct timespec sleep = { 0, 300000000 };
	nanosleep(&sleep, NULL);
	usage(RUSAGE_SELF, &u3, &s3);
	long long slept = (u3 - u2) + (s3 - s2);
	UT_CHECK(slept < 150000, "a 300 ms sleep counted %lld us of CPU time", slept);

	long long tu, ts;
	usage(RUSAGE_THREAD, &tu, &ts);
	UT_CHECK(tu >= u1 - u0, "RUSAGE_THREAD's user time %lld us is less than the spin's %lld", tu, u1 - u0);

	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		spin_user(300);
		_exit(0);
	}
	int status = 0;
	struct rusage child;
	UT_CHECK(wait4(pid, &status, 0, &child) == pid, "wait4 failed");
	UT_CHECK(us_of(child.ru_utime) >= 100000, "wait4's rusage: the child's 300 ms spin is %lld us of user time",
		 us_of(child.ru_utime));
	long long cu, cs;
	usage(RUSAGE_CHILDREN, &cu, &cs);
	UT_CHECK(cu >= us_of(child.ru_utime), "RUSAGE_CHILDREN's user time %lld us, wait4 said %lld", cu,
		 us_of(child.ru_utime));
	return 0;
}
