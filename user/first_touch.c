/*
 * first_touch: anonymous memory is not there until it is touched, and a
 * first touch makes it there, zero-filled, counted as a minor fault.
 */
#include "ut.h"
#include <sys/mman.h>
#include <sys/resource.h>

#define PAGES 64

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "first_touch";
	long page = ut_page_size();
	unsigned char *p = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(p != MAP_FAILED, "mmap of %d pages: %s", PAGES, strerror(errno));
	unsigned char vec[PAGES];
	UT_SYS(mincore(p, PAGES * page, vec));
	for (int i = 0; i < PAGES; i++)
		UT_CHECK(!(vec[i] & 1), "page %d is resident before anything touched it", i);

	struct rusage before, after;
	UT_SYS(getrusage(RUSAGE_SELF, &before));
	for (int i = 0; i < PAGES; i++) {
		UT_CHECK(p[i * page + 7] == 0, "page %d reads %#x before any write, not 0", i, p[i * page + 7]);
		p[i * page] = (unsigned char)(i + 1);
	}
	UT_SYS(getrusage(RUSAGE_SELF, &after));
	long faults = after.ru_minflt - before.ru_minflt;
	UT_CHECK(faults >= PAGES / 2, "touching %d new pages counted %ld minor faults", PAGES, faults);

	UT_SYS(mincore(p, PAGES * page, vec));
	for (int i = 0; i < PAGES; i++) {
		UT_CHECK(vec[i] & 1, "page %d is not resident after it was written", i);
		UT_CHECK(p[i * page] == (unsigned char)(i + 1), "page %d lost its byte: %#x", i, p[i * page]);
		uint64_t pm = ut_pagemap(p + i * page);
		UT_CHECK(pm & PM_PRESENT, "pagemap says page %d is not present (entry %#llx)", i, (unsigned long long)pm);
	}
	UT_CHECK(ut_smaps_kb(p, "Rss") >= PAGES * page / 1024, "smaps Rss of the mapping is %ld kB, less than %ld",
		 ut_smaps_kb(p, "Rss"), PAGES * page / 1024);
	UT_SYS(munmap(p, PAGES * page));
	return 0;
}
