/*
 * signal_restart: rt_sigsuspend, SA_RESTART and rt_sigtimedwait.
 *
 * - sigsuspend: the mask is replaced for the wait only; a signal pending
 *   and blocked before the call ends it at once, one sent during the wait
 *   ends it too; the call returns EINTR after the handler ran with the
 *   wait's mask (plus the signal); the old mask is back when the handler
 *   returns: a signal the handler raised, blocked by the wait's mask and
 *   not by the old one, runs its handler then (not nested), before the
 *   call returns; sigpending shows it meanwhile;
 * - SA_RESTART: a pipe read, a wait4 and a futex wait interrupted by a
 *   handler with SA_RESTART go on after it and complete; the same pipe
 *   read with a handler without SA_RESTART returns EINTR;
 * - sigtimedwait takes a blocked signal (pending before the call, or sent
 *   during the wait) without running its handler, and gives EAGAIN after
 *   its timeout when none comes.
 *
 * `signal_restart [part...]` runs only the named parts (sigsuspend,
 * pipe, wait4, futex, eintr, sigtimedwait); without arguments, all of
 * them.
 */
#include "ut.h"
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static void on(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	UT_SYS(sigaction(sig, &sa, NULL));
}

static sigset_t set_of(int sig)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	return s;
}

static sigset_t current_mask(void)
{
	sigset_t s;
	sigprocmask(SIG_BLOCK, NULL, &s);
	return s;
}

/* The handlers record the order they ran in and what SIGUSR1's saw. */
static volatile sig_atomic_t order[4], nr_order, in_usr1, nested;
static sigset_t mask_in_usr1, pending_in_usr1;

static void record_usr1(int sig)
{
	in_usr1 = 1;
	if (nr_order < 4)
		order[nr_order++] = sig;
	mask_in_usr1 = current_mask();
	/* Blocked by the wait's mask: pending until the old mask is back. */
	raise(SIGUSR2);
	sigpending(&pending_in_usr1);
	in_usr1 = 0;
}

static void record_usr2(int sig)
{
	nested |= in_usr1;
	if (nr_order < 4)
		order[nr_order++] = sig;
}

/* One sigsuspend: SIGUSR1 starts blocked, the wait's mask blocks SIGUSR2
 * only. SIGUSR1 is sent before the call (pending) or by a child
 * `delay_ms` into the wait; its handler raises SIGUSR2, which must wait
 * for the handler's return (the old mask back) to run. */
static void one_sigsuspend(const char *how, long delay_ms)
{
	nr_order = 0;
	nested = 0;
	sigset_t usr1 = set_of(SIGUSR1);
	UT_SYS(sigprocmask(SIG_SETMASK, &usr1, NULL));
	pid_t child = 0;
	if (delay_ms == 0) {
		UT_SYS(kill(getpid(), SIGUSR1));
	} else {
		pid_t parent = getpid();
		child = UT_SYS(fork());
		if (child == 0) {
			ut_pause_ms(delay_ms);
			kill(parent, SIGUSR1);
			_exit(0);
		}
	}
	sigset_t wait_mask = set_of(SIGUSR2);
	int r = sigsuspend(&wait_mask);
	int e = errno;
	UT_CHECK(r == -1 && e == EINTR, "sigsuspend (%s) returned %d, errno %s (not EINTR)", how, r, strerror(e));
	if (child)
		ut_reap(child);
	UT_CHECK(sigismember(&mask_in_usr1, SIGUSR2) && sigismember(&mask_in_usr1, SIGUSR1),
		 "sigsuspend (%s): SIGUSR1's handler did not run with the wait's mask (SIGUSR2) and its own signal",
		 how);
	UT_CHECK(sigismember(&pending_in_usr1, SIGUSR2),
		 "sigsuspend (%s): sigpending in SIGUSR1's handler does not show the SIGUSR2 it raised", how);
	UT_CHECK(nr_order == 2 && order[0] == SIGUSR1 && order[1] == SIGUSR2 && !nested,
		 "sigsuspend (%s): %d handlers ran (%d, %d%s), not SIGUSR1's then SIGUSR2's once the old mask came back",
		 how, (int)nr_order, (int)order[0], (int)order[1], nested ? ", nested" : "");
	sigset_t after = current_mask();
	UT_CHECK(sigismember(&after, SIGUSR1) && !sigismember(&after, SIGUSR2),
		 "sigsuspend (%s): the mask before the call is not back after it", how);
	sigset_t none;
	sigemptyset(&none);
	UT_SYS(sigprocmask(SIG_SETMASK, &none, NULL));
}

static void test_sigsuspend(void)
{
	on(SIGUSR1, record_usr1, 0);
	on(SIGUSR2, record_usr2, 0);
	one_sigsuspend("SIGUSR1 pending before the call", 0);
	one_sigsuspend("SIGUSR1 sent during the wait", 100);
	on(SIGUSR1, SIG_DFL, 0);
	on(SIGUSR2, SIG_DFL, 0);
}

/* The handler acknowledges each signal on a pipe (write is
 * async-signal-safe). */
static int ack_fd = -1;
static volatile sig_atomic_t handled;

static void ack(int sig)
{
	handled = sig;
	char c = 'a';
	if (write(ack_fd, &c, 1) != 1)
		_exit(90);
}

/* Sends SIGUSR1 to `pid` three times, each after `pid` had time to block
 * again, and waits for each acknowledgement on `ack_read` (whose write end
 * only the child holds); false when the child ended first. */
static int signal_three_times(pid_t pid, int ack_read)
{
	for (int i = 0; i < 3; i++) {
		ut_pause_ms(60);
		kill(pid, SIGUSR1);
		char c;
		if (read(ack_read, &c, 1) != 1)
			return 0;
	}
	return 1;
}

/* A pipe read in a child, with a SIGUSR1 handler of `flags`: its result,
 * as the child's exit status (0: the byte written after the signals
 * arrived; 1: EINTR). */
static int pipe_read_with(int flags)
{
	int data[2], acks[2];
	UT_SYS(pipe(data));
	UT_SYS(pipe(acks));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		close(acks[0]);
		ack_fd = acks[1];
		on(SIGUSR1, ack, flags);
		char c = 0;
		ssize_t r = read(data[0], &c, 1);
		if (r == 1 && c == 'd' && handled == SIGUSR1)
			_exit(0);
		_exit(r == -1 && errno == EINTR ? 1 : 2);
	}
	close(acks[1]);
	if (flags & SA_RESTART) {
		signal_three_times(pid, acks[0]);
	} else {
		ut_pause_ms(60);
		UT_SYS(kill(pid, SIGUSR1));
		/* The child leaves with EINTR now (or the byte comes later). */
		ut_pause_ms(20);
	}
	UT_SYS(write(data[1], "d", 1));
	int status = ut_reap(pid);
	close(data[0]);
	close(data[1]);
	close(acks[0]);
	UT_CHECK(WIFEXITED(status), "the reading child: wait status %#x", status);
	return WEXITSTATUS(status);
}

static void test_pipe(void)
{
	int r = pipe_read_with(SA_RESTART);
	UT_CHECK(r == 0, "a pipe read interrupted by handlers with SA_RESTART: %s",
		 r == 1 ? "EINTR (not restarted)" : "did not return the byte written after them");
}

static void test_eintr(void)
{
	int r = pipe_read_with(0);
	UT_CHECK(r == 1, "a pipe read interrupted by a handler without SA_RESTART: %s",
		 r == 0 ? "restarted (not EINTR)" : "neither EINTR nor the byte");
}

static void test_wait4(void)
{
	int acks[2], go[2];
	UT_SYS(pipe(acks));
	UT_SYS(pipe(go));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		close(acks[0]);
		close(go[1]);
		ack_fd = acks[1];
		on(SIGUSR1, ack, SA_RESTART);
		pid_t kid = UT_SYS(fork());
		if (kid == 0) {
			/* Ends when the test says so (after the signals). */
			char c;
			while (read(go[0], &c, 1) == -1 && errno == EINTR)
				;
			_exit(42);
		}
		close(go[0]);
		int status;
		pid_t r = waitpid(kid, &status, 0);
		if (r == kid && WIFEXITED(status) && WEXITSTATUS(status) == 42 && handled == SIGUSR1)
			_exit(0);
		if (r == -1 && errno == EINTR) {
			ut_reap(kid);
			_exit(1);
		}
		_exit(2);
	}
	close(acks[1]);
	close(go[0]);
	signal_three_times(pid, acks[0]);
	UT_SYS(write(go[1], "g", 1));
	close(go[1]);
	int status = ut_reap(pid);
	close(acks[0]);
	UT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "wait4 interrupted by handlers with SA_RESTART: %s (wait status %#x)",
		 WIFEXITED(status) && WEXITSTATUS(status) == 1 ? "EINTR (not restarted)" : "no child's status",
		 status);
}

static atomic_int word;
static atomic_long futex_result;
static volatile pid_t waiter_tid;

static void *futex_waiter(void *arg)
{
	(void)arg;
	waiter_tid = (pid_t)syscall(SYS_gettid);
	long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	futex_result = r == 0 ? 0 : -errno;
	return NULL;
}

static void test_futex(void)
{
	int acks[2];
	UT_SYS(pipe(acks));
	ack_fd = acks[1];
	handled = 0;
	on(SIGUSR1, ack, SA_RESTART);
	word = 0;
	futex_result = 1;
	pthread_t t;
	UT_CHECK(pthread_create(&t, NULL, futex_waiter, NULL) == 0, "pthread_create");
	while (!waiter_tid)
		ut_pause_ms(5);
	for (int i = 0; i < 3 && futex_result == 1; i++) {
		ut_pause_ms(60);
		/* Fails once the waiter left (then its handler acked before). */
		if (syscall(SYS_tgkill, getpid(), waiter_tid, SIGUSR1) == -1)
			break;
		char c;
		UT_CHECK(read(acks[0], &c, 1) == 1, "no acknowledgement of signal %d from the handler", i + 1);
	}
	ut_pause_ms(20);
	UT_CHECK(futex_result == 1, "a futex wait interrupted by handlers with SA_RESTART returned %ld before its wake",
		 (long)futex_result);
	word = 1;
	/* Until the waiter has gone back to its wait and taken the wake. */
	while (futex_result == 1) {
		syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		ut_pause_ms(5);
	}
	pthread_join(t, NULL);
	UT_CHECK(futex_result == 0 || futex_result == -EAGAIN,
		 "a futex wait interrupted by handlers with SA_RESTART: %s (not its wake)", strerror((int)-futex_result));
	on(SIGUSR1, SIG_DFL, 0);
	close(acks[0]);
	close(acks[1]);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* sigtimedwait takes a blocked signal without its handler: one pending
 * before the call, one sent during the wait; none comes: EAGAIN after the
 * timeout. */
static void test_sigtimedwait(void)
{
	nr_order = 0;
	on(SIGUSR1, record_usr2, 0);
	sigset_t usr1 = set_of(SIGUSR1);
	UT_SYS(sigprocmask(SIG_BLOCK, &usr1, NULL));
	UT_SYS(kill(getpid(), SIGUSR1));
	siginfo_t si;
	memset(&si, 0, sizeof si);
	struct timespec five = { 5, 0 };
	int r = sigtimedwait(&usr1, &si, &five);
	UT_CHECK(r == SIGUSR1 && si.si_signo == SIGUSR1, "sigtimedwait with SIGUSR1 pending: %d (%s), si_signo %d", r,
		 strerror(errno), si.si_signo);
	pid_t parent = getpid();
	pid_t child = UT_SYS(fork());
	if (child == 0) {
		ut_pause_ms(100);
		kill(parent, SIGUSR1);
		_exit(0);
	}
	r = sigtimedwait(&usr1, NULL, &five);
	ut_reap(child);
	UT_CHECK(r == SIGUSR1, "sigtimedwait with SIGUSR1 sent during the wait: %d (%s)", r, strerror(errno));
	struct timespec tenth = { 0, 100 * 1000000L };
	long long start = now_ms();
	r = sigtimedwait(&usr1, NULL, &tenth);
	long long took = now_ms() - start;
	UT_CHECK(r == -1 && errno == EAGAIN && took >= 100 && took < 5000,
		 "sigtimedwait with nothing sent and 100 ms: %d (%s) after %lld ms, not EAGAIN after 100 ms", r,
		 strerror(errno), took);
	UT_CHECK(nr_order == 0, "sigtimedwait: the handler ran for a signal it took");
	UT_SYS(sigprocmask(SIG_UNBLOCK, &usr1, NULL));
	on(SIGUSR1, SIG_DFL, 0);
}

static const struct ut_part parts[] = {
	{ "sigsuspend", test_sigsuspend }, { "pipe", test_pipe },   { "wait4", test_wait4 },
	{ "futex", test_futex },	   { "eintr", test_eintr }, { "sigtimedwait", test_sigtimedwait },
};

int main(int argc, char **argv)
{
	ut_name = "signal_restart";
	ut_run_parts(parts, sizeof parts / sizeof parts[0], argc, argv);
	return 0;
}
