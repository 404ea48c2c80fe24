/*
 * ut.h: what the project's user-mode tests share.
 *
 * Each test is one static program in user/, built by xtask with Debian's
 * gcc -static (aarch64-linux-gnu-gcc -static for AArch64) and put in the
 * initramfs as /bin/<name>. It prints nothing when all is well and exits 0;
 * otherwise it prints one line "<name>: FAILED: <why>" on stderr and exits
 * 1. The kernel's harness runs each as a process (kernel/src/tests/user.rs)
 * and reports `test user::<name> ... ok|FAILED`.
 *
 * Only what glibc's static library offers is used: plain libc calls, and
 * syscall() where glibc has no wrapper.
 */
#ifndef UT_H
#define UT_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The program's name for messages; each test sets it first thing. */
static const char *ut_name = "user-test";

static void ut_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Prints "<name>: FAILED: <why>" and exits 1. */
static void ut_fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: FAILED: ", ut_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	exit(1);
}

/* Fails with the message when cond is false. */
#define UT_CHECK(cond, ...)                \
	do {                                   \
		if (!(cond))                       \
			ut_fail(__VA_ARGS__);          \
	} while (0)

/* Fails naming the call and errno when a call returned -1. */
#define UT_SYS(call)                                                         \
	({                                                                       \
		long ut_r_ = (long)(call);                                           \
		if (ut_r_ == -1)                                                     \
			ut_fail("%s: %s (errno %d)", #call, strerror(errno), errno);     \
		ut_r_;                                                               \
	})

static inline long ut_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

/* The 64-bit /proc/self/pagemap entry of the page at addr. */
static inline uint64_t ut_pagemap(const void *addr)
{
	static int fd = -1;
	uint64_t entry = 0;
	if (fd < 0)
		fd = UT_SYS(open("/proc/self/pagemap", O_RDONLY));
	off_t off = (off_t)((uintptr_t)addr / (uintptr_t)ut_page_size()) * 8;
	ssize_t n = pread(fd, &entry, sizeof entry, off);
	UT_CHECK(n == (ssize_t)sizeof entry, "pread of /proc/self/pagemap at %#llx gave %zd (errno %d)",
		 (unsigned long long)off, n, errno);
	return entry;
}

/* Bits of a pagemap entry, as Linux defines them (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN_MASK ((1ULL << 55) - 1)

/*
 * The value (in kB) of `field` (e.g. "AnonHugePages") in /proc/self/smaps
 * for the mapping that contains addr; -1 when there is no such mapping or
 * field.
 */
static inline long ut_smaps_kb(const void *addr, const char *field)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	UT_CHECK(f, "cannot open /proc/self/smaps: %s", strerror(errno));
	char line[512];
	int inside = 0;
	long value = -1;
	size_t flen = strlen(field);
	while (fgets(line, sizeof line, f)) {
		unsigned long start, end;
		/* A mapping's header: "start-end perms offset dev inode [path]";
		 * no field name is hex digits then '-'. */
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			inside = start <= (uintptr_t)addr && (uintptr_t)addr < end;
			continue;
		}
		if (inside && strncmp(line, field, flen) == 0 && line[flen] == ':') {
			value = strtol(line + flen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return value;
}

/* Sleeps ms milliseconds, whatever signals arrive meanwhile. */
static inline void ut_pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Waits for pid (through EINTR) and returns its wait status. */
static inline int ut_reap(pid_t pid)
{
	int status;
	pid_t r;
	while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		;
	UT_CHECK(r == pid, "waitpid(%d): %s", pid, strerror(errno));
	return status;
}

/* One named part of a test that has several. */
struct ut_part {
	const char *name;
	void (*run)(void);
};

/* Runs the parts named on the command line, or all of them. */
static inline void ut_run_parts(const struct ut_part *parts, size_t n, int argc, char **argv)
{
	for (size_t i = 0; i < n; i++) {
		int wanted = argc < 2;
		for (int a = 1; a < argc; a++)
			wanted |= strcmp(argv[a], parts[i].name) == 0;
		if (wanted)
			parts[i].run();
	}
}

#endif
