/*
 * random_bytes: getrandom and AT_RANDOM come from the CPU's random-number
 * instruction (RDSEED/RDRAND, RNDR; the harness's QEMU -cpu max has them),
 * not from the kernel's fallback generator, which is not a CSPRNG
 * (kernel/src/proc/info.rs). The fallback is splitmix64 over a counter
 * advanced by a fixed step per 64 bits, XORed with the boot clock rotated
 * by 32 bits: its mixing inverts, and two consecutive outputs then show
 * two consecutive counter values with the clock's small high word. This
 * program inverts two consecutive words of getrandom and of AT_RANDOM and
 * fails when they fit that pattern (the chance that random words fit is
 * below 2^-13). Also: the words differ between calls and processes.
 */
#include "ut.h"
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define STEP 0x9e3779b97f4a7c15ULL
/* How many counter values are tried, and how many calls may lie between
 * the two (other processes', on other CPUs). */
#define COUNTERS (1u << 22)
#define GAP 8
/* The clock's high word (now_ns >> 32) is below this for ~5 hours. */
#define CLOCK_HIGH 4096

static uint64_t inverse(uint64_t a)
{
	uint64_t x = a; /* a is odd: Newton's iteration doubles the good bits */
	for (int i = 0; i < 6; i++)
		x *= 2 - a * x;
	return x;
}

/* The splitmix64 finalizer, undone. */
static uint64_t unmix(uint64_t z)
{
	z ^= z >> 31 ^ z >> 62;
	z *= inverse(0x94d049bb133111ebULL);
	z ^= z >> 27 ^ z >> 54;
	z *= inverse(0xbf58476d1ce4e5b9ULL);
	z ^= z >> 30 ^ z >> 60;
	return z;
}

/* Whether a and then b could be the fallback generator's outputs. */
static int predictable(uint64_t a, uint64_t b)
{
	uint64_t ua = unmix(a), ub = unmix(b);
	for (uint64_t k = 1; k < COUNTERS; k++) {
		if ((uint32_t)(ua ^ k * STEP) >= CLOCK_HIGH)
			continue;
		for (uint64_t g = 1; g <= GAP; g++)
			if ((uint32_t)(ub ^ (k + g) * STEP) < CLOCK_HIGH)
				return 1;
	}
	return 0;
}

static uint64_t random_word(void)
{
	uint64_t w = 0;
	UT_CHECK(syscall(SYS_getrandom, &w, sizeof w, 0) == (long)sizeof w, "getrandom of 8 bytes failed");
	return w;
}

int main(int argc, char **argv)
{
	ut_name = "random_bytes";
	if (argc > 1 && strcmp(argv[1], "--print-at-random") == 0) {
		ssize_t n = write(1, (const void *)getauxval(AT_RANDOM), 16);
		return n == 16 ? 0 : 1;
	}
	uint64_t a = random_word(), b = random_word();
	UT_CHECK(a != b, "two getrandom calls gave the same word %#llx", (unsigned long long)a);
	UT_CHECK(!predictable(a, b), "getrandom's words %#llx, %#llx invert to a counter and the clock: "
		 "the fallback generator, not the CPU's", (unsigned long long)a, (unsigned long long)b);

	const uint64_t *at = (const uint64_t *)getauxval(AT_RANDOM);
	UT_CHECK(at != NULL, "no AT_RANDOM");
	UT_CHECK(!predictable(at[0], at[1]), "AT_RANDOM's words %#llx, %#llx invert to a counter and the clock",
		 (unsigned long long)at[0], (unsigned long long)at[1]);

	/* A child's AT_RANDOM (a new program) differs from ours. */
	int fds[2];
	UT_SYS(pipe(fds));
	pid_t pid = UT_SYS(fork());
	if (pid == 0) {
		dup2(fds[1], 1);
		execl("/bin/random_bytes", "random_bytes", "--print-at-random", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	uint64_t theirs[2] = { 0, 0 };
	UT_CHECK(read(fds[0], theirs, sizeof theirs) == (ssize_t)sizeof theirs, "the child's AT_RANDOM did not arrive");
	int status = 0;
	UT_SYS(waitpid(pid, &status, 0));
	UT_CHECK(memcmp(theirs, at, sizeof theirs) != 0, "a new program got the same AT_RANDOM bytes");
	return 0;
}
