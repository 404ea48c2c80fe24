/*
 * fp_signal: an unmasked floating-point exception is SIGFPE with the
 * FPE_FLT* code of its cause and si_addr at the instruction, never SIGILL.
 * On x86_64 both units are tried: x87 (a long double division, #MF), which
 * must trap, and SSE (a double division, #XM), which traps where the CPU
 * raises #XM (QEMU's TCG does not). On AArch64 trapping is optional (FPCR's
 * trap-enable bits may read as zero: QEMU's do); the test then checks
 * that the division gives infinity without a signal, as the CPU says.
 */
#include "ut.h"
#include <fenv.h>
#include <setjmp.h>
#include <signal.h>

static sigjmp_buf back;
static volatile int seen_signo, seen_code;

static void handler(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	seen_signo = sig;
	seen_code = info->si_code;
	siglongjmp(back, 1);
}

static volatile double one = 1.0, zero = 0.0;
static volatile long double lone = 1.0L, lzero = 0.0L;

/* Divides by zero with the unit `what` names; returns whether it trapped. */
static int divide(int x87, const char *what)
{
	seen_signo = 0;
	feclearexcept(FE_ALL_EXCEPT);
	if (feenableexcept(FE_DIVBYZERO) == -1)
		return -1;
	if (sigsetjmp(back, 1) == 0) {
		if (x87) {
			volatile long double r = lone / lzero;
			/* x87 reports at the next waiting instruction. */
			__asm__ volatile("fwait");
			(void)r;
		} else {
			volatile double r = one / zero;
			(void)r;
		}
		fedisableexcept(FE_ALL_EXCEPT);
		feclearexcept(FE_ALL_EXCEPT);
		return 0;
	}
	fedisableexcept(FE_ALL_EXCEPT);
	feclearexcept(FE_ALL_EXCEPT);
	UT_CHECK(seen_signo == SIGFPE, "%s: the handler got signal %d, not SIGFPE (%d)", what, seen_signo, SIGFPE);
	UT_CHECK(seen_code == FPE_FLTDIV, "%s: si_code is %d, expected FPE_FLTDIV (%d)", what, seen_code,
		 FPE_FLTDIV);
	return 1;
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "fp_signal";
	struct sigaction sa = { 0 };
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	UT_SYS(sigaction(SIGFPE, &sa, NULL));
	UT_SYS(sigaction(SIGILL, &sa, NULL));
#if defined(__x86_64__)
	UT_CHECK(divide(1, "x87") == 1, "x87: 1.0L / 0.0L with divide-by-zero unmasked did not trap");
	/* QEMU's TCG (7.2) flags SSE exceptions in MXCSR but raises no #XM;
	 * hardware and KVM do, and then the handler must see SIGFPE. */
	int sse = divide(0, "SSE");
	UT_CHECK(sse != -1, "feenableexcept failed");
#else
	int r = divide(0, "FP");
	if (r == -1) {
		/* No trap support: the exception is only flagged. */
		feclearexcept(FE_ALL_EXCEPT);
		volatile double q = one / zero;
		UT_CHECK(q > 1e308 && fetestexcept(FE_DIVBYZERO), "1.0 / 0.0 is %g and flags %d", (double)q,
			 fetestexcept(FE_ALL_EXCEPT));
	}
#endif
	return 0;
}
