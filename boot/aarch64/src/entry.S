// AArch64 entry: from QEMU's jump into the image to the first Rust code.
//
// QEMU `virt` loads the image at 0x4008_0000 (RAM base + text_offset) and
// enters it at `_start` at EL1, MMU off, with the device tree's physical
// address in x0. This code:
//   1. checks it runs at EL1 and at the address it was linked for,
//   2. enables FP/SIMD (Rust code for aarch64-unknown-none uses NEON),
//   3. builds one level-0 and one level-1 table of 1 GiB blocks: Device
//      memory for 0-1 GiB (the UART, GIC, virtio) and from 256 GiB (high
//      MMIO), Normal write-back memory for 1-256 GiB (virt's RAM window),
//   4. installs them in TTBR0 (identity, for the next few instructions)
//      and TTBR1 (the direct map at 0xffff_0000_0000_0000), turns the MMU on
//      and jumps to the upper half (`enable_mmu`, shared with secondary CPUs),
//   5. takes the boot stack, installs the vectors, zeroes .bss, and calls
//      boot_aarch64_main(dtb_pa).
// The Rust side then stops TTBR0 walks. Issue 3 replaces these coarse
// tables with exact ones built by mm::pgtable.
//
// Secondary CPUs enter at `secondary_entry` (PSCI CPU_ON from
// arch/aarch64/src/smp.rs): EL1, MMU off, x0 = the context id, which is the
// physical address of the CPU's start record at the top of its own stack.
// They do the EL1 check of step 1, step 2 and step 4 with the tables the
// boot CPU built, then take the start record's address as their stack
// pointer and call arch_aarch64_secondary_main(record), which reads the
// record through the direct map. With the MMU off they read only the
// image's own constants and write no memory: their data accesses are not
// cacheable then, and could miss what the boot CPU has in its cache.

.equ BLOCK_DEVICE, (1 << 54) | (1 << 53) | (1 << 10) | (0 << 2) | 1   // UXN PXN AF attr0 block
// Normal blocks follow mm's AArch64 format (arch/aarch64/src/pgtable.rs):
// writable (DBM used as the software WRITE bit), dirty (bit 55, RDONLY
// clear), young (AF), kernel-only, executable by the kernel, global. So the
// boot tables decode as ordinary leaves.
.equ BLOCK_NORMAL, (1 << 55) | (1 << 54) | (1 << 51) | (1 << 10) | (3 << 8) | (1 << 2) | 1
.equ MAIR_VALUE, 0x44ff04          // attr0 Device-nGnRE, attr1 Normal WB, attr2 Normal NC
// T0SZ=16 IRGN0=WBWA ORGN0=WBWA SH0=inner TG0=4K, T1SZ=16 IRGN1 ORGN1 SH1 TG1=4K
.equ TCR_VALUE, 0xb5103510
.equ SCTLR_SET, (1 << 0) | (1 << 2) | (1 << 12) | (1 << 23)   // M, C, I, SPAN (PAN left alone on exceptions)
.equ SCTLR_CLEAR, (1 << 1) | (1 << 19) | (1 << 25) // A, WXN, EE

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size, .bss and boot stack included
    .quad   0x2                     // flags: little-endian, 4 KiB pages
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

// Every CPU's first steps, MMU off: mask all exceptions, stop trapping
// FP/SIMD (CPACR_EL1.FPEN), use SP_EL1, and branch to `not_el1` unless
// running at EL1. Clobbers x1.
.macro CPU_EARLY_SETUP not_el1
    msr     daifset, #0xf
    mov     x1, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps
    msr     cpacr_el1, x1
    isb
    msr     spsel, #1
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #1
    b.ne    \not_el1
.endm

primary_entry:
    mov     x19, x0
    CPU_EARLY_SETUP fail_not_el1

    adr     x20, _start
    ldr     x1, =__image_start
    ldr     x2, =DIRECT_MAP_OFFSET
    sub     x1, x1, x2
    cmp     x1, x20
    b.ne    fail_wrong_address

    // Zero both tables. The MMU is off, so these stores reach memory.
    adrp    x0, __boot_l0
    mov     x1, #(2 * 4096 / 16)
1:  stp     xzr, xzr, [x0], #16
    subs    x1, x1, #1
    b.ne    1b

    adrp    x0, __boot_l0
    adrp    x1, __boot_l1
    orr     x2, x1, #3              // table descriptor
    str     x2, [x0]
    ldr     x3, =BLOCK_DEVICE
    ldr     x4, =BLOCK_NORMAL
    mov     x5, #0
2:  lsl     x6, x5, #30
    cbz     x5, 3f
    cmp     x5, #256
    b.hs    3f
    orr     x6, x6, x4
    b       4f
3:  orr     x6, x6, x3
4:  str     x6, [x1, x5, lsl #3]
    add     x5, x5, #1
    cmp     x5, #512
    b.ne    2b

    // The walker will read the tables through the cache: drop any stale
    // lines for them (line size from CTR_EL0.DminLine).
    dsb     sy
    adrp    x0, __boot_l0
    add     x1, x0, #(2 * 4096)
    mrs     x2, ctr_el0
    ubfx    x2, x2, #16, #4
    mov     x3, #4
    lsl     x3, x3, x2
5:  dc      ivac, x0
    add     x0, x0, x3
    cmp     x0, x1
    b.lo    5b
    dsb     sy

    bl      enable_mmu
    ldr     x1, =upper_half
    br      x1

upper_half:
    ldr     x1, =__boot_stack_top
    mov     sp, x1
    ldr     x1, =arch_aarch64_vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
7:  cmp     x1, x2
    b.hs    8f
    stp     xzr, xzr, [x1], #16
    b       7b
8:  mov     x0, x19
    bl      boot_aarch64_main
9:  wfe
    b       9b

// Turns the MMU on with the boot tables, the same way on every CPU: memory
// attributes (MAIR), translation control (TCR, with the output size IPS
// from ID_AA64MMFR0_EL1.PARange, at most 48 bits), TTBR0 = TTBR1 =
// __boot_l0, a local TLB flush, then SCTLR. Called with `bl` with the MMU
// off; returns through the identity map in TTBR0, still at the physical
// address, so the caller then jumps to its upper-half continuation. Reads
// only literal constants of the image; the walks that follow read the
// tables with the MMU on, cacheable and coherent. Clobbers x1, x2.
enable_mmu:
    ldr     x1, =MAIR_VALUE
    msr     mair_el1, x1
    ldr     x1, =TCR_VALUE
    mrs     x2, id_aa64mmfr0_el1
    and     x2, x2, #0xf            // PARange
    cmp     x2, #5                  // at most 48 bits
    b.ls    1f
    mov     x2, #5
1:  orr     x1, x1, x2, lsl #32     // TCR_EL1.IPS
    msr     tcr_el1, x1
    adrp    x1, __boot_l0
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x1, sctlr_el1
    ldr     x2, =SCTLR_SET
    orr     x1, x1, x2
    ldr     x2, =SCTLR_CLEAR
    bic     x1, x1, x2
    msr     sctlr_el1, x1
    isb
    ret

// A secondary CPU, started by PSCI CPU_ON (see the header). x0 = physical
// address of its start record, 16-byte aligned, at the top of its stack.
.global secondary_entry
secondary_entry:
    mov     x19, x0
    CPU_EARLY_SETUP secondary_park
    bl      enable_mmu
    ldr     x1, =secondary_upper_half
    br      x1

secondary_upper_half:
    ldr     x1, =arch_aarch64_vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, =DIRECT_MAP_OFFSET
    add     x0, x19, x1             // the record, through the direct map
    mov     sp, x0                  // the stack grows down from below it
    bl      arch_aarch64_secondary_main
// Not at EL1 (PSCI enters at the caller's level, so never expected), or
// back from Rust (which never returns): the CPU stays off the kernel's
// books and the boot CPU reports that it did not come online.
secondary_park:
    wfe
    b       secondary_park

// Early failures: say why on virt's PL011 (MMU off: physical address) and
// ask QEMU to exit with status 1 through semihosting.
fail_not_el1:
    adr     x1, msg_not_el1
    b       early_fail
fail_wrong_address:
    adr     x1, msg_wrong_address
early_fail:
    mov     x2, #0x09000000
10: ldrb    w3, [x1], #1
    cbz     w3, 11f
    str     w3, [x2]
    b       10b
11: mov     x0, #0x20
    adr     x1, exit_block
    hlt     #0xf000
12: wfe
    b       12b

.ltorg
.balign 8
exit_block:
    .quad   0x20026, 1
msg_not_el1:
    .asciz  "boot: not entered at EL1 (run QEMU without virtualization=on)\r\n"
msg_wrong_address:
    .asciz  "boot: image not loaded at 0x40080000 (RAM base + text_offset)\r\n"
