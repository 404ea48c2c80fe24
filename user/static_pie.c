/*
 * static_pie: the user programs are one static-pie executable (ET_DYN
 * without an interpreter, xtask/src/userprogs.rs); the kernel loads it at
 * its fixed base (kernel/src/proc/elf.rs, PIE_BASE) and the program
 * relocates itself. Checks that this one is such a file, loaded at that
 * base, that the auxiliary vector says so (AT_PHDR and AT_ENTRY biased,
 * AT_BASE 0: no interpreter), and that its data was relocated.
 */
#include "ut.h"
#include <elf.h>
#include <sys/auxv.h>

/* The fixed load base of kernel/src/proc/elf.rs. */
#define PIE_BASE 0x555555400000UL

/* The linker's symbol for the file's first byte (the ELF header). */
extern const Elf64_Ehdr __ehdr_start;

static int target = 42;
/* Needs an R_*_RELATIVE relocation: linked as 0 + offset. */
static int *relocated = &target;

int main(int argc, char **argv)
{
	ut_name = "static_pie";
	(void)argc;
	(void)argv;
	const Elf64_Ehdr *eh = &__ehdr_start;
	UT_CHECK(eh->e_type == ET_DYN, "the program is of ELF type %u, not ET_DYN (built without -static-pie?)",
		 eh->e_type);
	UT_CHECK((uintptr_t)eh == PIE_BASE, "loaded at %p, not at %#lx", (const void *)eh, PIE_BASE);
	UT_CHECK(getauxval(AT_BASE) == 0, "AT_BASE is %#lx, not 0", getauxval(AT_BASE));
	UT_CHECK(getauxval(AT_PHDR) == (uintptr_t)eh + eh->e_phoff, "AT_PHDR %#lx, the headers are at %#lx",
		 getauxval(AT_PHDR), (unsigned long)((uintptr_t)eh + eh->e_phoff));
	UT_CHECK(getauxval(AT_ENTRY) == (uintptr_t)eh + eh->e_entry, "AT_ENTRY %#lx, the entry is at %#lx",
		 getauxval(AT_ENTRY), (unsigned long)((uintptr_t)eh + eh->e_entry));
	UT_CHECK(relocated == &target && *relocated == 42, "a data pointer was not relocated (%p, not %p)",
		 (void *)relocated, (void *)&target);
	return 0;
}
