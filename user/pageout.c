/*
 * pageout: MADV_PAGEOUT sends private anonymous pages to swap (mincore says
 * they are gone, pagemap says swapped), and reading them back brings every
 * byte back.
 */
#include "ut.h"
#include <sys/mman.h>

#define PAGES 32

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "pageout";
	long page = ut_page_size();
	unsigned char *p = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	UT_SYS(madvise(p, PAGES * page, MADV_NOHUGEPAGE));
	for (long i = 0; i < PAGES * page; i++)
		p[i] = (unsigned char)(i * 7 + i / page);
	UT_SYS(madvise(p, PAGES * page, MADV_PAGEOUT));

	unsigned char vec[PAGES];
	UT_SYS(mincore(p, PAGES * page, vec));
	int resident = 0, swapped = 0;
	for (int i = 0; i < PAGES; i++) {
		resident += vec[i] & 1;
		swapped += (ut_pagemap(p + i * page) & PM_SWAPPED) != 0;
	}
	UT_CHECK(resident == 0, "%d of %d pages are still resident after MADV_PAGEOUT (is there a swap disk?)",
		 resident, PAGES);
	UT_CHECK(swapped == PAGES, "pagemap shows %d of %d paged-out pages as swapped", swapped, PAGES);
	UT_CHECK(ut_smaps_kb(p, "Swap") >= PAGES * page / 1024, "smaps Swap is %ld kB, expected %ld",
		 ut_smaps_kb(p, "Swap"), PAGES * page / 1024);

	for (long i = 0; i < PAGES * page; i++)
		UT_CHECK(p[i] == (unsigned char)(i * 7 + i / page), "byte %ld came back from swap as %#x, expected %#x", i,
			 p[i], (unsigned char)(i * 7 + i / page));
	UT_SYS(mincore(p, PAGES * page, vec));
	for (int i = 0; i < PAGES; i++)
		UT_CHECK(vec[i] & 1, "page %d is not resident after it was read back", i);
	return 0;
}
