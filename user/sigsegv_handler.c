/*
 * sigsegv_handler: a SIGSEGV handler installed with SA_SIGINFO sees the
 * faulting address in si_addr, with SEGV_MAPERR for an unmapped page and
 * SEGV_ACCERR for a PROT_NONE one, and can leave with siglongjmp.
 */
#include "ut.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

static sigjmp_buf back;
static volatile void *seen_addr;
static volatile int seen_signo, seen_code;

static void handler(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	seen_signo = sig;
	seen_addr = info->si_addr;
	seen_code = info->si_code;
	siglongjmp(back, 1);
}

static void expect_fault(volatile unsigned char *addr, int write, int code, const char *what)
{
	seen_addr = NULL;
	seen_signo = 0;
	if (sigsetjmp(back, 1) == 0) {
		if (write)
			*addr = 1;
		else
			(void)*addr;
		ut_fail("%s at %p did not fault", what, (void *)addr);
	}
	UT_CHECK(seen_signo == SIGSEGV, "%s: the handler got signal %d, not SIGSEGV", what, seen_signo);
	UT_CHECK(seen_addr == addr, "%s: si_addr is %p, the access was at %p", what, seen_addr, (void *)addr);
	UT_CHECK(seen_code == code, "%s: si_code is %d, expected %d", what, seen_code, code);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "sigsegv_handler";
	long page = ut_page_size();
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	UT_SYS(sigaction(SIGSEGV, &sa, NULL));

	unsigned char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	UT_SYS(munmap(p + page, page));
	expect_fault(p + page + 123, 0, SEGV_MAPERR, "a read of an unmapped page");
	UT_SYS(mprotect(p, page, PROT_NONE));
	expect_fault(p + 77, 1, SEGV_ACCERR, "a write to a PROT_NONE page");
	UT_SYS(mprotect(p, page, PROT_READ));
	expect_fault(p + 5, 1, SEGV_ACCERR, "a write to a read-only page");
	/* The handler ran three times and the program goes on normally. */
	UT_SYS(mprotect(p, page, PROT_READ | PROT_WRITE));
	p[5] = 9;
	UT_CHECK(p[5] == 9, "the page is not writable after mprotect");
	return 0;
}
