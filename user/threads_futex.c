/*
 * threads_futex: threads fault one shared mapping together (each writes
 * its own pages and every thread reads all of them), meet at a barrier made
 * of raw futex calls (FUTEX_WAIT / FUTEX_WAKE, private and shared, and
 * FUTEX_WAIT_BITSET), and are joined with pthread_join (which waits on the
 * tid word the kernel clears at exit: CLONE_CHILD_CLEARTID).
 */
#include "ut.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define THREADS 4
#define PAGES_EACH 16

static unsigned char *area;
static long page;
static atomic_int arrived;
static atomic_int generation;

static long futex(atomic_int *word, int op, int val, uint32_t bitset)
{
	return syscall(SYS_futex, word, op, val, NULL, NULL, bitset);
}

/* Waits until all THREADS + 1 callers have arrived; the last one wakes the rest. */
static void barrier(int op_private)
{
	int gen = atomic_load(&generation);
	if (atomic_fetch_add(&arrived, 1) + 1 == THREADS + 1) {
		atomic_store(&arrived, 0);
		atomic_fetch_add(&generation, 1);
		long woken = futex(&generation, op_private ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE, THREADS + 1, 0);
		UT_CHECK(woken >= 0, "FUTEX_WAKE: %s", strerror(errno));
		return;
	}
	while (atomic_load(&generation) == gen) {
		long r = op_private ? futex(&generation, FUTEX_WAIT_BITSET_PRIVATE, gen, FUTEX_BITSET_MATCH_ANY)
				    : futex(&generation, FUTEX_WAIT, gen, 0);
		UT_CHECK(r == 0 || errno == EAGAIN || errno == EINTR, "FUTEX_WAIT: %s", strerror(errno));
	}
}

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	barrier(1);
	for (int i = 0; i < PAGES_EACH; i++)
		area[(me * PAGES_EACH + i) * page + me] = (unsigned char)(0x10 * (me + 1) + i);
	barrier(0);
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PAGES_EACH; i++) {
			unsigned char got = area[(t * PAGES_EACH + i) * page + t];
			UT_CHECK(got == (unsigned char)(0x10 * (t + 1) + i),
				 "thread %d sees %#x on thread %d's page %d", me, got, t, i);
		}
	return (void *)(intptr_t)(me + 100);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	ut_name = "threads_futex";
	page = ut_page_size();
	area = mmap(NULL, THREADS * PAGES_EACH * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UT_CHECK(area != MAP_FAILED, "mmap: %s", strerror(errno));
	pthread_t threads[THREADS];
	for (int t = 0; t < THREADS; t++) {
		int e = pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)t);
		UT_CHECK(e == 0, "pthread_create: %s", strerror(e));
	}
	barrier(1);
	barrier(0);
	for (int t = 0; t < THREADS; t++) {
		void *ret;
		int e = pthread_join(threads[t], &ret);
		UT_CHECK(e == 0, "pthread_join: %s", strerror(e));
		UT_CHECK(ret == (void *)(intptr_t)(t + 100), "thread %d returned %p", t, ret);
	}
	long tid = syscall(SYS_gettid);
	UT_CHECK(tid == getpid(), "the main thread's tid %ld is not the pid %d", tid, getpid());
	return 0;
}
