/*
 * rawdisk_get: seed 004 replayed from user space. A raw-disk read moves
 * the disk's bytes straight into the user's buffer (the kernel holds the
 * buffer's pages and the disk writes them by DMA, one request per
 * physically contiguous run). While the read is in flight, a second
 * thread pages the buffer out (MADV_PAGEOUT, one page at a time, from the
 * last page back, since the read fills the buffer front to back) and at
 * once write-faults each page back in without changing its bytes (an
 * atomic add of 0), so that a page that came back read-only and shared is
 * copied. Afterwards every byte must be the disk's.
 *
 * How the kernel holds the pages decides what can happen (argv[2] says
 * which hold it takes: the kernel argument rawdisk_hold=):
 * - pin (FOLL_PIN, the default): a pinned page is never unmapped to
 *   swap, so the pageouts under the read leave it alone;
 * - get (FOLL_GET, O_DIRECT before Linux moved it to pins): the page is
 *   unmapped and written to swap under the read, and stays in the swap
 *   cache (the reference keeps it). Its swap entry carries the exclusive
 *   bit, so the write fault maps the same frame again as the process's
 *   own, and the disk's bytes arrive. With bug=forget-anon-exclusive the
 *   bit is lost: the page comes back shared, the write fault copies it,
 *   and the disk writes into a frame the process no longer maps. Its
 *   bytes are lost (exit status 4).
 *
 * Not vacuous: with get, at least one page must have been seen swapped
 * out (pagemap) while the read was in flight and faulted back before it
 * returned, else the run did not reach the race (exit status 5); with
 * pin, at least one pageout must have run while the read was in flight.
 *
 * argv[1]: the disk (default /dev/vdb, the scratch disk `cargo xtask qemu
 * test` attaches after the swap disk; only REGION_PAGES pages from page
 * DISK_PAGE on are used, healthy pages of the faulty disk, which fails
 * writes of pages 16..24 and reads of 32..40); argv[2]: pin or get
 * (default pin).
 */
#include "ut.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* Exit statuses the in-guest test names (any other failure exits 1). */
#define LOST_STATUS 4
#define NOT_REACHED_STATUS 5

#define REGION_PAGES 64
#define DISK_PAGE 64
#define ITERATIONS 16

enum phase { IDLE, READING, DONE };

static unsigned char *buf;
static long page;
static atomic_int phase;
/* Pages seen swapped out under the read and faulted back before it
 * returned, and pageouts that ran wholly under the read. */
static long swapped_under_read;
static long pageouts_under_read;

static void *meanwhile(void *arg)
{
	(void)arg;
	while (atomic_load(&phase) == IDLE)
		sched_yield();
	while (atomic_load(&phase) == READING) {
		for (int i = REGION_PAGES - 1; i >= 0 && atomic_load(&phase) == READING; i--) {
			unsigned char *p = buf + i * page;
			UT_CHECK(madvise(p, page, MADV_PAGEOUT) == 0, "MADV_PAGEOUT: %s", strerror(errno));
			int swapped = (ut_pagemap(p) & PM_SWAPPED) != 0;
			/* A write fault that leaves the bytes as they are. */
			__atomic_fetch_add((unsigned long *)p, 0UL, __ATOMIC_SEQ_CST);
			if (atomic_load(&phase) == READING) {
				pageouts_under_read++;
				swapped_under_read += swapped;
			}
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	ut_name = "rawdisk_get";
	page = ut_page_size();
	const char *disk = argc > 1 ? argv[1] : "/dev/vdb";
	const char *hold = argc > 2 ? argv[2] : "pin";
	UT_CHECK(strcmp(hold, "pin") == 0 || strcmp(hold, "get") == 0, "argv[2] is `%s`, not pin or get", hold);
	int get = strcmp(hold, "get") == 0;
	size_t len = REGION_PAGES * page;
	off_t at = (off_t)DISK_PAGE * 4096;
	int fd = open(disk, O_RDWR | O_DIRECT);
	if (fd < 0 && errno == EINVAL)
		fd = open(disk, O_RDWR);
	UT_CHECK(fd >= 0, "cannot open %s: %s", disk, strerror(errno));
	unsigned char *expected = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(expected != MAP_FAILED, "mmap: %s", strerror(errno));

	for (int iter = 0; iter < ITERATIONS; iter++) {
		for (size_t i = 0; i < len; i++)
			expected[i] = (unsigned char)(i * 131 + i / 4096 + iter * 7 + 1);
		ssize_t n = pwrite(fd, expected, len, at);
		UT_CHECK(n == (ssize_t)len, "writing %zu bytes to %s gave %zd: %s", len, disk, n, strerror(errno));

		/* The buffer's pages interleaved with another mapping's at the
		 * first touch, so that no two of them are likely to be
		 * physically adjacent: the read then takes one request per
		 * page, and the last pages are written last. */
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		unsigned char *spacer = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		UT_CHECK(buf != MAP_FAILED && spacer != MAP_FAILED, "mmap: %s", strerror(errno));
		madvise(buf, len, MADV_NOHUGEPAGE);
		madvise(spacer, len, MADV_NOHUGEPAGE);
		for (int i = 0; i < REGION_PAGES; i++) {
			memset(buf + i * page, 0xaa, page);
			spacer[i * page] = 1;
		}
		atomic_store(&phase, IDLE);
		pthread_t helper;
		int e = pthread_create(&helper, NULL, meanwhile, NULL);
		UT_CHECK(e == 0, "pthread_create: %s", strerror(e));
		atomic_store(&phase, READING);
		n = pread(fd, buf, len, at);
		atomic_store(&phase, DONE);
		UT_CHECK(n == (ssize_t)len, "reading %zu bytes from %s gave %zd: %s", len, disk, n, strerror(errno));
		pthread_join(helper, NULL);
		size_t lost = 0, first = 0;
		for (size_t i = 0; i < len; i++)
			if (buf[i] != expected[i] && lost++ == 0)
				first = i;
		if (lost) {
			fprintf(stderr,
				"rawdisk_get: FAILED: hold %s, iteration %d of %d: %zu bytes differ from the disk's, "
				"the first at byte %zu (page %zu) is %#x, the disk holds %#x: the read's writes are lost "
				"(%ld pages were swapped out under the reads so far)\n",
				hold, iter + 1, ITERATIONS, lost, first, first / page, buf[first], expected[first],
				swapped_under_read);
			exit(LOST_STATUS);
		}
		munmap(buf, len);
		munmap(spacer, len);
	}
	close(fd);
	if (get ? swapped_under_read == 0 : pageouts_under_read == 0) {
		fprintf(stderr,
			"rawdisk_get: FAILED: hold %s: did not reach the race in %d iterations (%ld pageouts and %ld "
			"pages swapped out while a read was in flight)\n",
			hold, ITERATIONS, pageouts_under_read, swapped_under_read);
		exit(NOT_REACHED_STATUS);
	}
	return 0;
}
