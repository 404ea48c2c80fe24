/*
 * thp_madvise: with MADV_HUGEPAGE, first touches of an aligned 2 MiB range
 * map a transparent huge page: /proc/self/smaps counts it in
 * AnonHugePages, and /proc/self/pagemap shows 512 present pages on
 * physically contiguous frames starting at a 2 MiB boundary.
 */
#include "ut.h"
#include <sys/mman.h>

#define HUGE (2UL << 20)
#define NR_HUGE 2

/* Makes sure the THP policy lets madvise'd ranges have huge pages. */
static void thp_allowed(void)
{
	const char *path = "/sys/kernel/mm/transparent_hugepage/enabled";
	char buf[128] = { 0 };
	int fd = UT_SYS(open(path, O_RDONLY));
	UT_CHECK(read(fd, buf, sizeof buf - 1) > 0, "cannot read %s", path);
	close(fd);
	if (strstr(buf, "[never]")) {
		fd = UT_SYS(open(path, O_WRONLY));
		UT_CHECK(write(fd, "madvise", 7) == 7, "cannot set %s to madvise: %s", path, strerror(errno));
		close(fd);
	}
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "thp_madvise";
	long page = ut_page_size();
	thp_allowed();
	size_t len = (NR_HUGE + 1) * HUGE;
	unsigned char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(raw != MAP_FAILED, "mmap: %s", strerror(errno));
	unsigned char *p = (unsigned char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	UT_SYS(madvise(p, NR_HUGE * HUGE, MADV_HUGEPAGE));
	for (int h = 0; h < NR_HUGE; h++)
		p[h * HUGE + 5] = (unsigned char)(h + 1);

	long anon_huge = ut_smaps_kb(p, "AnonHugePages");
	UT_CHECK(anon_huge >= (long)(NR_HUGE * HUGE / 1024),
		 "smaps AnonHugePages is %ld kB after touching %d madvised 2 MiB ranges, expected %lu", anon_huge,
		 NR_HUGE, NR_HUGE * HUGE / 1024);
	for (int h = 0; h < NR_HUGE; h++) {
		unsigned char *base = p + h * HUGE;
		uint64_t first = ut_pagemap(base);
		UT_CHECK(first & PM_PRESENT, "pagemap: huge page %d is not present (%#llx)", h, (unsigned long long)first);
		uint64_t pfn = first & PM_PFN_MASK;
		UT_CHECK(pfn != 0, "pagemap shows no PFN for huge page %d (is the reader privileged?)", h);
		UT_CHECK(pfn % (HUGE / page) == 0, "huge page %d starts at PFN %#llx, not 2 MiB aligned", h,
			 (unsigned long long)pfn);
		for (unsigned long i = 1; i < HUGE / page; i++) {
			uint64_t e = ut_pagemap(base + i * page);
			UT_CHECK((e & PM_PRESENT) && (e & PM_PFN_MASK) == pfn + i,
				 "huge page %d, page %lu: pagemap %#llx, expected present with PFN %#llx", h, i,
				 (unsigned long long)e, (unsigned long long)(pfn + i));
		}
		UT_CHECK(base[5] == (unsigned char)(h + 1) && base[HUGE - 1] == 0, "huge page %d has wrong bytes", h);
	}
	UT_SYS(munmap(raw, len));
	return 0;
}
