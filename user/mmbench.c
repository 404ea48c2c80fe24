/*
 * mmbench: the workloads of BENCHMARKS.md (profiles `main` and `swap`) as
 * one static program, the same binary on this kernel and on Linux.
 *
 *     mmbench main|swap [name-prefix...]
 *
 * runs the workloads of the profile (those whose name starts with one of
 * the prefixes, when some are given) and prints one line per figure:
 *
 *     BENCH name=<name> value=<number> unit=<unit>
 *
 * Other lines start with "mmbench: " (the clock, the THP setting, how the
 * swap-in found its pages, a failure). Every workload checks its data: a
 * wrong byte, a fault count that cannot be, a page left in memory when it
 * must not be, fails it. The exit status is 0 when every selected workload
 * ran and matched, else 1 (after the line "mmbench: FAILED: ..." saying
 * which).
 *
 * Only plain system calls and files both kernels have:
 * - time: clock_gettime(CLOCK_MONOTONIC), around the timed loop only;
 * - fault counts: getrusage(RUSAGE_SELF) ru_minflt before and after the
 *   timed loop (for cow_fork in the child, which reports through a pipe:
 *   there is no shared anonymous memory on this kernel yet). Every touch
 *   of these loops is a first touch, so the count is at least the pages
 *   touched; a workload fails when it is lower. (The threads' creation in
 *   anon4k_mt adds a few faults of their stacks out of 65,536.)
 * - THP: MADV_HUGEPAGE ("THP on") or MADV_NOHUGEPAGE ("THP off") over the
 *   whole range, whatever /sys/kernel/mm/transparent_hugepage/enabled says
 *   (printed once); huge pages counted from /proc/self/smaps AnonHugePages;
 * - swap: MADV_PAGEOUT; /proc/vmstat pswpin, pswpout and nr_writeback
 *   (or /proc/meminfo Writeback; on Linux after a write to
 *   /proc/sys/vm/stat_refresh); mincore for residency; /proc/meminfo
 *   MemAvailable and SwapFree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PAGE 4096UL
#define MIB (1UL << 20)
#define HUGE (2 * MIB)
#define GIB ((double)(1UL << 30))

/* ------------------------------------------------------------ reporting */

/* Why the current workload failed (empty while it has not). */
static char why[512];

/* Records why the current workload failed (the first reason wins) and
 * returns -1, so that `return fail(...)` ends a workload. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	if (why[0] == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof why, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void bench(const char *name, double value, const char *unit)
{
	printf("BENCH name=%s value=%.2f unit=%s\n", name, value, unit);
	fflush(stdout);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	fputs("mmbench: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* ------------------------------------------------------ clock and counts */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double secs(uint64_t ns)
{
	return (double)(ns ? ns : 1) / 1e9;
}

/* Minor faults of this process so far (all its threads). */
static uint64_t minflt(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)ru.ru_minflt;
}

/* The whole text of a (small, generated) file, NUL-terminated; NULL when it
 * cannot be read. The caller frees it. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 16384, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
		if (len + 1 == cap) {
			char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = bigger;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The number after `name` at the start of a line of `path` (`name value`
 * in /proc/vmstat, `Name:  value kB` in /proc/meminfo); -1 when missing. */
static long long counter(const char *path, const char *name)
{
	char *text = slurp(path);
	if (!text)
		return -1;
	long long value = -1;
	size_t n = strlen(name);
	for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (strncmp(line, name, n) == 0 && (line[n] == ' ' || line[n] == '\t')) {
			value = strtoll(line + n, NULL, 10);
			break;
		}
	}
	free(text);
	return value;
}

static long long vmstat(const char *name)
{
	return counter("/proc/vmstat", name);
}

/* A /proc/meminfo field in kB ("MemAvailable:"), -1 when missing. */
static long long meminfo_kb(const char *field)
{
	return counter("/proc/meminfo", field);
}

/* Pages under writeback now: /proc/vmstat nr_writeback, else /proc/meminfo
 * Writeback; -1 when neither file has it. Linux keeps part of such counts
 * in per-CPU deltas that the files do not add in (folded about once a
 * second), so a write to /proc/sys/vm/stat_refresh folds them first where
 * that file exists (not on this kernel, whose counters are exact). */
static long long writeback_pages(void)
{
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (fd >= 0) {
		/* Not refreshed when this fails: the count may lag by a second. */
		ssize_t written = write(fd, "1", 1);
		(void)written;
		close(fd);
	}
	long long n = vmstat("nr_writeback");
	if (n >= 0)
		return n;
	n = meminfo_kb("Writeback:");
	return n >= 0 ? n / 4 : -1;
}

/* kB of AnonHugePages in /proc/self/smaps over the areas inside
 * [start, end); -1 when the file cannot be read. */
static long long anon_huge_kb(uintptr_t start, uintptr_t end)
{
	char *text = slurp("/proc/self/smaps");
	if (!text)
		return -1;
	long long kb = 0;
	int inside = 0;
	for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		unsigned long lo, hi;
		char dash;
		/* An area's first line: "lo-hi perms ..." (hex, no 0x). */
		if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-')
			inside = lo >= start && hi <= end;
		else if (inside && strncmp(line, "AnonHugePages:", 14) == 0)
			kb += strtoll(line + 14, NULL, 10);
	}
	free(text);
	return kb;
}

/* Pages of [addr, addr + len) mincore says are resident; -1 on error. */
static long resident_pages(const void *addr, size_t len)
{
	size_t pages = len / PAGE;
	unsigned char *vec = malloc(pages);
	if (!vec)
		return -1;
	long n = -1;
	if (mincore((void *)addr, len, vec) == 0) {
		n = 0;
		for (size_t i = 0; i < pages; i++)
			n += vec[i] & 1;
	}
	free(vec);
	return n;
}

/* --------------------------------------------------------------- memory */

/* `len` bytes of private anonymous memory aligned to `align`, with THP on
 * (MADV_HUGEPAGE) or off (MADV_NOHUGEPAGE) for the whole range; NULL (and
 * the reason recorded) on failure. Unmapped with unmap(). */
static unsigned char *map(size_t len, size_t align, int thp_on)
{
	size_t slack = align > PAGE ? align : 0;
	unsigned char *raw = mmap(NULL, len + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		fail("mmap of %zu bytes: %s", len + slack, strerror(errno));
		return NULL;
	}
	unsigned char *base = raw;
	if (slack) {
		base = (unsigned char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
		if (base > raw)
			munmap(raw, base - raw);
		if (base + len < raw + len + slack)
			munmap(base + len, raw + len + slack - (base + len));
	}
	if (madvise(base, len, thp_on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
		fail("madvise(%s): %s", thp_on ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", strerror(errno));
		munmap(base, len);
		return NULL;
	}
	return base;
}

static void unmap(void *base, size_t len)
{
	if (base && munmap(base, len) != 0)
		fail("munmap: %s", strerror(errno));
}

/* The byte a workload writes into page `p` (never 0, so an untouched page
 * cannot pass for a written one), varied by `salt`. */
static unsigned char pattern(uint64_t p, uint64_t salt)
{
	return (unsigned char)(1 + (p * 7 + salt) % 255);
}

/* Checks byte `offset` of each of `n` pages `stride` apart from `base`
 * against want(p, salt) (or zero when `zero`). */
static int check_bytes(const char *what, const volatile unsigned char *base, uint64_t n, size_t stride,
		       size_t offset, int zero, uint64_t salt)
{
	for (uint64_t p = 0; p < n; p++) {
		unsigned char got = base[p * stride + offset], want = zero ? 0 : pattern(p, salt);
		if (got != want)
			return fail("%s: page %llu: the byte at offset %#zx is %#x, expected %#x", what,
				    (unsigned long long)p, p * stride + offset, got, want);
	}
	return 0;
}

/* ------------------------------------------------------- profile `main` */

/* Writes pattern(i, salt) at the start of each `stride` of [base, base +
 * len), timed; returns the time and sets *faults. */
static uint64_t first_touches(volatile unsigned char *base, size_t len, size_t stride, uint64_t salt,
			      uint64_t *faults)
{
	uint64_t f0 = minflt(), t0 = now_ns();
	for (uint64_t i = 0; i < len / stride; i++)
		base[i * stride] = pattern(i, salt);
	uint64_t t1 = now_ns();
	*faults = minflt() - f0;
	return t1 - t0;
}

static int anon4k_fault(void)
{
	const size_t len = 256 * MIB;
	const uint64_t pages = len / PAGE;
	unsigned char *base = map(len, PAGE, 0);
	if (!base)
		return -1;
	uint64_t faults;
	uint64_t ns = first_touches(base, len, PAGE, 0, &faults);
	if (faults < pages)
		fail("anon4k_fault: %llu faults for %llu pages", (unsigned long long)faults,
		     (unsigned long long)pages);
	/* The byte written, and the rest of the page still zero (its last byte). */
	check_bytes("anon4k_fault", base, pages, PAGE, 0, 0, 0);
	check_bytes("anon4k_fault", base, pages, PAGE, PAGE - 1, 1, 0);
	if (why[0]) {
		munmap(base, len);
		return -1;
	}
	bench("anon4k_fault", faults / secs(ns), "faults/s");
	bench("anon4k_fault_lat", (double)ns / 1e3 / (double)faults, "us/fault");
	uint64_t t0 = now_ns();
	int r = munmap(base, len);
	uint64_t t1 = now_ns();
	if (r != 0)
		return fail("anon4k_fault: munmap: %s", strerror(errno));
	bench("anon4k_munmap", (double)(t1 - t0) / 1e6, "ms");
	return 0;
}

static int thp_fault(void)
{
	const size_t len = 512 * MIB;
	const uint64_t blocks = len / HUGE;
	unsigned char *base = map(len, HUGE, 1);
	if (!base)
		return -1;
	uint64_t faults;
	uint64_t ns = first_touches(base, len, HUGE, 1, &faults);
	long long huge_kb = anon_huge_kb((uintptr_t)base, (uintptr_t)base + len);
	if (faults < blocks)
		fail("thp_fault: %llu faults for %llu blocks", (unsigned long long)faults,
		     (unsigned long long)blocks);
	if (huge_kb < 0)
		fail("thp_fault: cannot read /proc/self/smaps");
	/* The byte written; the middle and the end of each block still zero. */
	check_bytes("thp_fault", base, blocks, HUGE, 0, 0, 1);
	check_bytes("thp_fault", base, blocks, HUGE, HUGE / 2 + 5, 1, 0);
	check_bytes("thp_fault", base, blocks, HUGE, HUGE - 1, 1, 0);
	unmap(base, len);
	if (why[0])
		return -1;
	uint64_t huge = (uint64_t)huge_kb / (HUGE / 1024);
	bench("thp_fault", faults / secs(ns), "faults/s");
	bench("thp_zero_gibps", (double)(huge * HUGE) / GIB / secs(ns), "GiB/s");
	bench("thp_coverage", 100.0 * (double)huge / (double)blocks, "%");
	return 0;
}

/* What the child of cow_fork reports through the pipe. */
struct cow_report {
	uint64_t faults, ns;
	char why[256];
};

static int cow_fork(void)
{
	/* THP off, so the copies measured are of 4 KiB pages. */
	const size_t len = 128 * MIB;
	const uint64_t pages = len / PAGE;
	volatile unsigned char *base = map(len, PAGE, 0);
	if (!base)
		return -1;
	for (uint64_t p = 0; p < pages; p++)
		base[p * PAGE] = pattern(p, 2);
	int fds[2];
	if (pipe(fds) != 0)
		return fail("cow_fork: pipe: %s", strerror(errno));
	fflush(stdout);
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	uint64_t t1 = now_ns();
	if (pid < 0)
		return fail("cow_fork: fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child: one byte written per page, each a copy on write. */
		struct cow_report r;
		memset(&r, 0, sizeof r);
		close(fds[0]);
		uint64_t f0 = minflt(), c0 = now_ns();
		for (uint64_t p = 0; p < pages; p++)
			base[p * PAGE + 1] = pattern(p, 3);
		uint64_t c1 = now_ns();
		r.faults = minflt() - f0;
		r.ns = c1 - c0;
		/* The parent's byte (copied) and the child's own. */
		for (uint64_t p = 0; p < pages && !r.why[0]; p++) {
			unsigned char a = base[p * PAGE], b = base[p * PAGE + 1];
			if (a != pattern(p, 2) || b != pattern(p, 3))
				snprintf(r.why, sizeof r.why,
					 "cow_fork child: page %llu holds %#x %#x, expected %#x %#x",
					 (unsigned long long)p, a, b, pattern(p, 2), pattern(p, 3));
		}
		ssize_t n = write(fds[1], &r, sizeof r);
		_exit(n == (ssize_t)sizeof r ? 0 : 1);
	}
	close(fds[1]);
	struct cow_report r;
	ssize_t n = read(fds[0], &r, sizeof r);
	close(fds[0]);
	int status;
	if (waitpid(pid, &status, 0) != pid)
		fail("cow_fork: waitpid: %s", strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("cow_fork: the child ended with wait status %#x", status);
	if (n != (ssize_t)sizeof r)
		fail("cow_fork: the child's report was %zd bytes, expected %zu", n, sizeof r);
	else if (r.why[0])
		fail("%s", r.why);
	else if (r.faults < pages)
		fail("cow_fork: the child took %llu faults writing %llu shared pages", (unsigned long long)r.faults,
		     (unsigned long long)pages);
	/* The parent keeps its byte and never sees the child's. */
	check_bytes("cow_fork parent", base, pages, PAGE, 0, 0, 2);
	check_bytes("cow_fork parent", base, pages, PAGE, 1, 1, 0);
	unmap((void *)base, len);
	if (why[0])
		return -1;
	bench("cow_fork", r.faults / secs(r.ns), "faults/s");
	bench("cow_fork_lat", (double)r.ns / 1e3 / (double)r.faults, "us/fault");
	bench("cow_fork_syscall", (double)(t1 - t0) / 1e6, "ms");
	return 0;
}

/* One thread of anon4k_mt: its slice, and when it started and ended. */
struct mt_slice {
	pthread_t thread;
	pthread_barrier_t *start;
	volatile unsigned char *base;
	uint64_t first, pages;
	uint64_t t0, t1;
};

static void *mt_touch(void *arg)
{
	struct mt_slice *s = arg;
	pthread_barrier_wait(s->start);
	s->t0 = now_ns();
	for (uint64_t p = s->first; p < s->first + s->pages; p++)
		s->base[p * PAGE] = pattern(p, 4);
	s->t1 = now_ns();
	return NULL;
}

static int anon4k_mt(unsigned nr)
{
	/* One 256 MiB mapping (THP off), one thread per 2 MiB-aligned slice;
	 * the time is from the first start to the last end. */
	const size_t len = 256 * MIB;
	const uint64_t pages = len / PAGE;
	char name[32];
	snprintf(name, sizeof name, "anon4k_mt_t%u", nr);
	if ((len / nr) % HUGE != 0)
		return fail("%s: a slice of %zu bytes is not 2 MiB-aligned", name, len / nr);
	unsigned char *base = map(len, HUGE, 0);
	if (!base)
		return -1;
	struct mt_slice slices[4];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, nr);
	uint64_t f0 = minflt();
	unsigned started = 0;
	for (unsigned t = 0; t < nr; t++) {
		slices[t] = (struct mt_slice){ .start = &start, .base = base, .first = t * pages / nr,
					       .pages = pages / nr };
		int e = pthread_create(&slices[t].thread, NULL, mt_touch, &slices[t]);
		if (e != 0) {
			fail("%s: pthread_create: %s", name, strerror(e));
			break;
		}
		started++;
	}
	if (started < nr) {
		/* The threads started wait at the barrier for ever: end here. */
		printf("mmbench: FAILED: %s\n", why);
		fflush(stdout);
		exit(1);
	}
	for (unsigned t = 0; t < nr; t++)
		pthread_join(slices[t].thread, NULL);
	uint64_t faults = minflt() - f0;
	pthread_barrier_destroy(&start);
	uint64_t t0 = slices[0].t0, t1 = slices[0].t1;
	for (unsigned t = 1; t < nr; t++) {
		t0 = slices[t].t0 < t0 ? slices[t].t0 : t0;
		t1 = slices[t].t1 > t1 ? slices[t].t1 : t1;
	}
	if (faults < pages)
		fail("%s: %llu faults for %llu pages", name, (unsigned long long)faults, (unsigned long long)pages);
	check_bytes(name, base, pages, PAGE, 0, 0, 4);
	check_bytes(name, base, pages, PAGE, PAGE - 1, 1, 0);
	unmap(base, len);
	if (why[0])
		return -1;
	bench(name, faults / secs(t1 - t0), "faults/s");
	return 0;
}

static int anon4k_mt_t1(void)
{
	return anon4k_mt(1);
}

static int anon4k_mt_t2(void)
{
	return anon4k_mt(2);
}

static int anon4k_mt_t4(void)
{
	return anon4k_mt(4);
}

static int memset_gibps(void)
{
	/* 512 MiB, THP on, all mapped first (a non-zero byte left in every
	 * 4 KiB page); then zeros written over all of it, faulting nothing. */
	const size_t len = 512 * MIB;
	const uint64_t pages = len / PAGE;
	unsigned char *base = map(len, HUGE, 1);
	if (!base)
		return -1;
	volatile unsigned char *v = base;
	for (uint64_t p = 0; p < pages; p++)
		v[p * PAGE + p % PAGE] = pattern(p, 5);
	uint64_t f0 = minflt(), t0 = now_ns();
	memset(base, 0, len);
	uint64_t t1 = now_ns(), faults = minflt() - f0;
	if (faults != 0)
		fail("memset_gibps: %llu faults while writing over mapped memory", (unsigned long long)faults);
	const volatile uint64_t *words = (const volatile uint64_t *)base;
	for (size_t w = 0; w < len / 8 && !why[0]; w++)
		if (words[w] != 0)
			fail("memset_gibps: a non-zero word at offset %#zx after the memset", w * 8);
	unmap(base, len);
	if (why[0])
		return -1;
	bench("memset_gibps", (double)len / GIB / secs(t1 - t0), "GiB/s");
	return 0;
}

/* ------------------------------------------------------- profile `swap` */

/* Word `w` of page `p` in version `v` of the swap workloads' pattern: every
 * word of every page and version differs, so a page read from the wrong
 * slot, a stale copy or zeros is counted as a mismatch. */
static uint64_t swap_word(uint64_t p, uint64_t w, uint64_t v)
{
	return ((p << 20 | w << 8 | v) * 0x9e3779b97f4a7c15ULL) | 1;
}

/* Writes version `v` of the pattern over page `p` (built on the stack, then
 * one copy, as a program's memcpy would). */
static void write_page(unsigned char *base, uint64_t p, uint64_t v)
{
	uint64_t words[PAGE / 8];
	for (uint64_t w = 0; w < PAGE / 8; w++)
		words[w] = swap_word(p, w, v);
	memcpy(base + p * PAGE, words, PAGE);
}

/* True when page `p` holds version `v` of the pattern (read with one copy). */
static int page_is(const unsigned char *base, uint64_t p, uint64_t v)
{
	uint64_t words[PAGE / 8];
	memcpy(words, base + p * PAGE, PAGE);
	for (uint64_t w = 0; w < PAGE / 8; w++)
		if (words[w] != swap_word(p, w, v))
			return 0;
	return 1;
}

/* Fails unless /proc/vmstat has the swap counters and `pages` pages of swap
 * are free. */
static int need_swap(const char *what, uint64_t pages)
{
	if (vmstat("pswpin") < 0 || vmstat("pswpout") < 0)
		return fail("%s: /proc/vmstat has no pswpin/pswpout", what);
	long long free_kb = meminfo_kb("SwapFree:");
	if (free_kb < 0 || (uint64_t)free_kb < pages * (PAGE / 1024))
		return fail("%s: needs %llu kB of free swap, /proc/meminfo SwapFree says %lld kB (no swap disk?)",
			    what, (unsigned long long)(pages * (PAGE / 1024)), free_kb);
	return 0;
}

/* Makes sure no page of [base, base + len) is in memory, mincore says: on
 * Linux the pages MADV_PAGEOUT wrote stay in the swap cache once written
 * (mincore counts them), so memory is squeezed with other anonymous pages,
 * 16 MiB at a time, until reclaim has dropped them all (the squeeze is
 * unmapped after). On this kernel MADV_PAGEOUT frees the pages when their
 * writes complete and mincore finds none. Says what it did. */
static int evict(const char *what, unsigned char *base, size_t len)
{
	long resident = resident_pages(base, len);
	if (resident < 0)
		return fail("%s: mincore: %s", what, strerror(errno));
	long first = resident;
	long long total_kb = meminfo_kb("MemTotal:");
	const size_t step = 16 * MIB;
	size_t limit = total_kb > 0 ? (size_t)total_kb * 1024 * 2 : 512 * MIB, squeezed = 0;
	unsigned char *squeeze[256];
	unsigned nr = 0;
	while (resident > 0 && squeezed < limit && nr < 256) {
		unsigned char *s = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (s == MAP_FAILED)
			break;
		madvise(s, step, MADV_NOHUGEPAGE);
		for (size_t i = 0; i < step; i += PAGE)
			s[i] = 1;
		squeeze[nr++] = s;
		squeezed += step;
		resident = resident_pages(base, len);
	}
	for (unsigned i = 0; i < nr; i++)
		munmap(squeeze[i], step);
	if (resident != 0)
		return fail("%s: %ld of %zu pages still in memory after MADV_PAGEOUT and a squeeze of %zu MiB", what,
			    resident, len / PAGE, squeezed / MIB);
	say("%s: mincore: %ld of %zu pages resident after MADV_PAGEOUT, 0 after squeezing %zu MiB of other memory",
	    what, first, len / PAGE, squeezed / MIB);
	return 0;
}

/* swap_out, swap_in and swap_mismatch: 128 MiB filled with the pattern,
 * MADV_PAGEOUT over all of it, timed until no page is under writeback;
 * then, with none of the pages in memory (evict), one word per page read
 * in address order; then every page compared whole. */
static int swap_out(void)
{
	const size_t len = 128 * MIB;
	const uint64_t pages = len / PAGE;
	if (need_swap("swap_out", pages) != 0)
		return -1;
	unsigned char *base = map(len, PAGE, 0);
	if (!base)
		return -1;
	for (uint64_t p = 0; p < pages; p++)
		write_page(base, p, 1);
	long long out0 = vmstat("pswpout");
	uint64_t t0 = now_ns();
	int r = madvise(base, len, MADV_PAGEOUT);
	while (r == 0 && writeback_pages() > 0)
		sched_yield();
	uint64_t t1 = now_ns();
	if (r != 0) {
		munmap(base, len);
		return fail("swap_out: madvise(MADV_PAGEOUT): %s", strerror(errno));
	}
	long long written = vmstat("pswpout") - out0;
	bench("swap_out", (double)written * PAGE / MIB / secs(t1 - t0), "MiB/s");
	bench("swap_out_pages", (double)written, "pages");
	if (evict("swap_in", base, len) != 0) {
		munmap(base, len);
		return -1;
	}
	long long in0 = vmstat("pswpin");
	const volatile uint64_t *v = (const volatile uint64_t *)base;
	uint64_t sum = 0;
	t0 = now_ns();
	for (uint64_t p = 0; p < pages; p++)
		sum += v[p * (PAGE / 8)];
	t1 = now_ns();
	long long read = vmstat("pswpin") - in0;
	/* Every page came from the disk (none was in memory): the rate is of
	 * the 128 MiB read. */
	bench("swap_in", (double)len / MIB / secs(t1 - t0), "MiB/s");
	bench("swap_in_pages", (double)read, "pages");
	uint64_t want = 0;
	for (uint64_t p = 0; p < pages; p++)
		want += swap_word(p, 0, 1);
	uint64_t mismatch = 0;
	for (uint64_t p = 0; p < pages; p++)
		mismatch += !page_is(base, p, 1);
	unmap(base, len);
	bench("swap_mismatch", (double)mismatch, "pages");
	if (mismatch != 0)
		return fail("swap_mismatch: %llu pages came back wrong", (unsigned long long)mismatch);
	if (sum != want)
		return fail("swap_in: the words read in the timed loop sum to %#llx, expected %#llx",
			    (unsigned long long)sum, (unsigned long long)want);
	return why[0] ? -1 : 0;
}

/* pressure: a working set twice the free memory (MemAvailable), every page
 * filled, then 20,000 random page touches (xorshift, fixed seed); each
 * verifies the whole page and every second one rewrites it with a new
 * version. */
static int pressure(void)
{
	const uint64_t touches = 20000;
	long long avail_kb = meminfo_kb("MemAvailable:");
	if (avail_kb <= 0)
		return fail("pressure: /proc/meminfo has no MemAvailable");
	uint64_t pages = 2 * (uint64_t)avail_kb / (PAGE / 1024);
	if (need_swap("pressure", pages) != 0)
		return -1;
	size_t len = pages * PAGE;
	unsigned char *base = map(len, PAGE, 0);
	if (!base)
		return -1;
	unsigned char *versions = calloc(pages, 1);
	if (!versions) {
		munmap(base, len);
		return fail("pressure: no memory for %llu versions", (unsigned long long)pages);
	}
	say("pressure: working set %llu pages (%llu MiB), twice MemAvailable", (unsigned long long)pages,
	    (unsigned long long)(len / MIB));
	long long in0 = vmstat("pswpin"), out0 = vmstat("pswpout");
	uint64_t t0 = now_ns();
	for (uint64_t p = 0; p < pages; p++)
		write_page(base, p, 0);
	uint64_t t1 = now_ns();
	uint64_t x = 0x2545f4914f6cdd1dULL, mismatch = 0;
	long long out1 = vmstat("pswpout");
	uint64_t t2 = now_ns();
	for (uint64_t t = 0; t < touches; t++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t p = x % pages;
		if (!page_is(base, p, versions[p]))
			mismatch++;
		if (t % 2 == 1) {
			versions[p]++;
			write_page(base, p, versions[p]);
		}
	}
	uint64_t t3 = now_ns();
	long long pswpin = vmstat("pswpin") - in0, out3 = vmstat("pswpout"), pswpout = out3 - out0;
	free(versions);
	unmap(base, len);
	bench("pressure", touches / secs(t3 - t2), "touches/s");
	bench("pressure_pswpin", (double)pswpin, "pages");
	bench("pressure_pswpout", (double)pswpout, "pages");
	/* The fill writes at least what does not fit, so the count above grows
	 * with the working set, which is sized by each kernel's MemAvailable:
	 * the set itself and the touches' own writes, to compare reclaim. */
	bench("pressure_pages", (double)pages, "pages");
	bench("pressure_pswpout_touch", (double)(out3 - out1), "pages");
	bench("pressure_fill", (double)len / MIB / secs(t1 - t0), "MiB/s");
	bench("pressure_mismatch", (double)mismatch, "pages");
	if (mismatch != 0)
		return fail("pressure: %llu touches found a wrong page", (unsigned long long)mismatch);
	return why[0] ? -1 : 0;
}

/* ---------------------------------------------------------------- main */

struct workload {
	const char *name;
	int (*run)(void);
};

static const struct workload MAIN[] = {
	{ "anon4k_fault", anon4k_fault }, { "thp_fault", thp_fault },	    { "cow_fork", cow_fork },
	{ "anon4k_mt_t1", anon4k_mt_t1 }, { "anon4k_mt_t2", anon4k_mt_t2 }, { "anon4k_mt_t4", anon4k_mt_t4 },
	{ "memset_gibps", memset_gibps },
};

static const struct workload SWAP[] = {
	{ "swap_out", swap_out },
	{ "pressure", pressure },
};

static int usage(void)
{
	fprintf(stderr, "usage: mmbench main|swap [name-prefix...]\n");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const struct workload *list;
	size_t n;
	if (strcmp(argv[1], "main") == 0) {
		list = MAIN;
		n = sizeof MAIN / sizeof MAIN[0];
	} else if (strcmp(argv[1], "swap") == 0) {
		list = SWAP;
		n = sizeof SWAP / sizeof SWAP[0];
	} else {
		return usage();
	}
	int prefixes = argc - 2;
	char **prefix = argv + 2;
	/* Every prefix must name something of the profile. */
	for (int i = 0; i < prefixes; i++) {
		size_t k;
		for (k = 0; k < n && strncmp(list[k].name, prefix[i], strlen(prefix[i])) != 0; k++)
			;
		if (k == n) {
			say("FAILED: no workload of profile %s starts with `%s`", argv[1], prefix[i]);
			return 1;
		}
	}
	struct timespec res;
	if (clock_getres(CLOCK_MONOTONIC, &res) == 0)
		say("clock CLOCK_MONOTONIC (clock_getres: %ld ns)", res.tv_nsec + 1000000000L * (long)res.tv_sec);
	else
		say("clock CLOCK_MONOTONIC (clock_getres: %s)", strerror(errno));
	char *thp = slurp("/sys/kernel/mm/transparent_hugepage/enabled");
	if (thp)
		thp[strcspn(thp, "\n")] = 0;
	say("transparent_hugepage/enabled: %s (the workloads set MADV_HUGEPAGE or MADV_NOHUGEPAGE)",
	    thp ? thp : "(cannot read)");
	free(thp);
	unsigned ran = 0, failed = 0;
	char failures[512] = "";
	for (size_t k = 0; k < n; k++) {
		int chosen = prefixes == 0;
		for (int i = 0; i < prefixes && !chosen; i++)
			chosen = strncmp(list[k].name, prefix[i], strlen(prefix[i])) == 0;
		if (!chosen)
			continue;
		why[0] = 0;
		uint64_t t0 = now_ns();
		int r = list[k].run();
		ran++;
		if (r != 0 || why[0]) {
			failed++;
			say("%s FAILED: %s", list[k].name, why[0] ? why : "(no reason recorded)");
			size_t used = strlen(failures);
			snprintf(failures + used, sizeof failures - used, "%s%s", used ? ", " : "", list[k].name);
		} else {
			say("%s took %.1f s", list[k].name, secs(now_ns() - t0));
		}
	}
	if (failed) {
		say("FAILED: %u of %u workloads failed: %s", failed, ran, failures);
		return 1;
	}
	say("all %u workloads of profile %s ran and their data matched", ran, argv[1]);
	return 0;
}
