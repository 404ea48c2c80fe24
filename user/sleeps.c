/*
 * sleeps: nanosleep and clock_nanosleep sleep about as long as asked, and
 * a signal cuts a sleep short.
 *
 * - a 20 ms nanosleep (and clock_nanosleep, relative and TIMER_ABSTIME)
 *   lasts at least 20 ms and, as the median of five, well under 100 ms
 *   (a loose bound: this is behaviour, not a benchmark; the kernel's tick
 *   is 10 ms);
 * - a 10 s nanosleep in a child, with a handled signal sent by its parent
 *   every 100 ms until it ends: EINTR well before 10 s and the remaining
 *   time written, about 10 s less the time slept; the same for a thread of the
 *   process, the signal sent by another thread (tgkill) and the sleep a
 *   clock_nanosleep.
 *
 * `sleeps [part...]` runs only the named parts (short, signal); without
 * arguments, both.
 */
#include "ut.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long ns_of(struct timespec ts)
{
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

#define ROUNDS 5
#define SHORT_NS (20 * 1000000LL)
#define MEDIAN_LIMIT_NS (80 * 1000000LL)

/* One 20 ms sleep of kind `how` (0 nanosleep, 1 clock_nanosleep relative,
 * 2 absolute); how long it took. */
static long long one_short_sleep(int how)
{
	struct timespec req = { 0, SHORT_NS };
	long long start = now_ns();
	int r;
	if (how == 0) {
		r = nanosleep(&req, NULL);
	} else if (how == 1) {
		r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
	} else {
		long long at = start + SHORT_NS;
		struct timespec abs = { at / 1000000000LL, at % 1000000000LL };
		r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
	}
	long long took = now_ns() - start;
	/* clock_nanosleep returns the error number instead of setting errno. */
	UT_CHECK(r == 0, "a 20 ms sleep (kind %d) failed: %d", how, r);
	UT_CHECK(took >= SHORT_NS, "a 20 ms sleep (kind %d) took %lld us, less than asked", how, took / 1000);
	return took;
}

static void test_short(void)
{
	static const char *kinds[] = { "nanosleep", "clock_nanosleep", "clock_nanosleep(TIMER_ABSTIME)" };
	for (int how = 0; how < 3; how++) {
		long long took[ROUNDS];
		for (int i = 0; i < ROUNDS; i++)
			took[i] = one_short_sleep(how);
		qsort(took, ROUNDS, sizeof took[0], cmp_ll);
		UT_CHECK(took[ROUNDS / 2] < MEDIAN_LIMIT_NS,
			 "a 20 ms %s took %lld us (median of %d; fastest %lld us): not about as long as asked",
			 kinds[how], took[ROUNDS / 2] / 1000, ROUNDS, took[0] / 1000);
	}
}

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	got = sig;
}

#define LONG_S 10
/* A sleep cut short ends at least this long before its 10 s. */
#define CUT_LIMIT_NS (3000 * 1000000LL)

/* Sleeps 10 s (nanosleep, or clock_nanosleep when `clock`); returns 0 when
 * a signal ended the sleep early with the remaining time written, else a
 * code saying what went wrong. */
static int sleep_long(int clock, long long *took, long long *rem_ns)
{
	struct timespec req = { LONG_S, 0 }, rem = { -1, -1 };
	long long start = now_ns();
	int r, e;
	if (clock) {
		e = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
		r = e ? -1 : 0;
	} else {
		r = nanosleep(&req, &rem);
		e = errno;
	}
	*took = now_ns() - start;
	*rem_ns = ns_of(rem);
	if (r != -1 || e != EINTR)
		return 1;
	if (got != SIGUSR1)
		return 2;
	if (*took > LONG_S * 1000000000LL - CUT_LIMIT_NS)
		return 3;
	long long expect = LONG_S * 1000000000LL - *took;
	/* The remaining time: what was asked less what was slept, give or
	 * take a few ticks. */
	if (rem.tv_sec < 0 || rem.tv_nsec < 0 || rem.tv_nsec >= 1000000000L || *rem_ns > LONG_S * 1000000000LL ||
	    *rem_ns < expect - 100 * 1000000LL)
		return 4;
	return 0;
}

static const char *why(int code)
{
	switch (code) {
	case 1:
		return "it did not return EINTR";
	case 2:
		return "the handler did not run";
	case 3:
		return "it was not cut short";
	case 4:
		return "the remaining time was not written (or is wrong)";
	default:
		return "?";
	}
}

struct sleeper {
	int clock;
	volatile pid_t tid;
	volatile int done;
	int result;
	long long took, rem;
};

static void *sleeper_thread(void *arg)
{
	struct sleeper *s = arg;
	s->tid = (pid_t)syscall(SYS_gettid);
	s->result = sleep_long(s->clock, &s->took, &s->rem);
	s->done = 1;
	return NULL;
}

static void test_signal(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	UT_SYS(sigaction(SIGUSR1, &sa, NULL));

	/* Another process sends it. */
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		long long took, rem;
		int r = sleep_long(0, &took, &rem);
		if (r)
			fprintf(stderr, "sleeps: the child's 10 s nanosleep: took %lld ms, rem %lld ms\n",
				took / 1000000, rem / 1000000);
		_exit(r);
	}
	/* Again and again until it ends: one may land before the sleep. */
	struct timespec tenth = { 0, 100 * 1000000L };
	int status;
	pid_t r;
	do {
		nanosleep(&tenth, NULL);
		kill(pid, SIGUSR1);
	} while ((r = waitpid(pid, &status, WNOHANG)) == 0);
	UT_CHECK(r == pid, "waitpid: %s", strerror(errno));
	UT_CHECK(WIFEXITED(status), "the sleeping child: wait status %#x", status);
	UT_CHECK(WEXITSTATUS(status) == 0, "a 10 s nanosleep with a signal from another process: %s",
		 why(WEXITSTATUS(status)));

	/* Another thread sends it (tgkill), to a clock_nanosleep. */
	got = 0;
	struct sleeper s = { .clock = 1 };
	pthread_t t;
	UT_CHECK(pthread_create(&t, NULL, sleeper_thread, &s) == 0, "pthread_create");
	while (!s.tid)
		nanosleep(&tenth, NULL);
	while (!s.done) {
		nanosleep(&tenth, NULL);
		syscall(SYS_tgkill, getpid(), s.tid, SIGUSR1);
	}
	pthread_join(t, NULL);
	UT_CHECK(s.result == 0, "a 10 s clock_nanosleep with a signal from another thread: %s (took %lld ms, rem %lld ms)",
		 why(s.result), s.took / 1000000, s.rem / 1000000);
}

static const struct ut_part parts[] = { { "short", test_short }, { "signal", test_signal } };

int main(int argc, char **argv)
{
	ut_name = "sleeps";
	ut_run_parts(parts, sizeof parts / sizeof parts[0], argc, argv);
	return 0;
}
