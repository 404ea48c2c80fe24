/*
 * wall_clock: CLOCK_REALTIME is the date, not the time since boot (the
 * kernel reads the CMOS RTC or the PL031 at boot, kernel/src/proc/info.rs):
 * time(), gettimeofday() and clock_gettime(CLOCK_REALTIME) are after
 * 2024-01-01 and agree with each other, the wall clock minus the monotonic
 * one stays put, and an absolute CLOCK_REALTIME sleep ends about on time.
 */
#include "ut.h"
#include <sys/time.h>
#include <time.h>

/* 2024-01-01T00:00:00Z */
#define JAN_2024 1704067200L

static long long ns_of(struct timespec t)
{
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long clock_ns(clockid_t clock)
{
	struct timespec t;
	UT_SYS(clock_gettime(clock, &t));
	return ns_of(t);
}

int main(int argc, char **argv)
{
	ut_name = "wall_clock";
	(void)argc;
	(void)argv;
	time_t now = time(NULL);
	UT_CHECK(now > JAN_2024, "time() is %lld, before 2024 (the wall clock counts from 1970)", (long long)now);
	struct timeval tv;
	UT_SYS(gettimeofday(&tv, NULL));
	long long real = clock_ns(CLOCK_REALTIME);
	UT_CHECK(tv.tv_sec >= now && tv.tv_sec <= now + 2, "gettimeofday says %lld s, time() %lld",
		 (long long)tv.tv_sec, (long long)now);
	UT_CHECK(real / 1000000000LL >= now && real / 1000000000LL <= now + 2,
		 "CLOCK_REALTIME says %lld s, time() %lld", real / 1000000000LL, (long long)now);

	/* The wall clock advances with the monotonic one. */
	long long before = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	struct timespec ten_ms = { 0, 10000000 };
	nanosleep(&ten_ms, NULL);
	long long after = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	long long drift = after - before;
	UT_CHECK(drift > -50000000LL && drift < 50000000LL, "REALTIME - MONOTONIC moved by %lld ns", drift);

	/* An absolute deadline on the wall clock, 50 ms ahead. */
	long long start = clock_ns(CLOCK_MONOTONIC);
	struct timespec deadline;
	UT_SYS(clock_gettime(CLOCK_REALTIME, &deadline));
	deadline.tv_nsec += 50000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	int r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &deadline, NULL);
	UT_CHECK(r == 0, "clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME): %s", strerror(r));
	long long slept = clock_ns(CLOCK_MONOTONIC) - start;
	UT_CHECK(slept >= 40000000LL && slept < 5000000000LL, "an absolute 50 ms wall-clock sleep took %lld ns", slept);
	UT_CHECK(clock_ns(CLOCK_REALTIME) >= ns_of(deadline), "woke before the wall-clock deadline");
	return 0;
}
