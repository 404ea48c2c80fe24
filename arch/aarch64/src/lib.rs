//! AArch64 support: everything the kernel needs from the CPU and the `virt`
//! machine that is specific to this architecture.
//!
//! | module | what |
//! | --- | --- |
//! | [`console`] | the PL011 UART, write side |
//! | [`trap`] | the exception vector table, the saved register frame, ESR decoding |
//! | [`probe`] | loads and stores that may fault, with a fix-up instead of a crash |
//! | [`cpu`] | this CPU's kernel index, in a per-CPU register |
//! | [`context`] | task context switch (callee-saved registers, stack pointer) |
//! | [`irq`] | interrupt controller, periodic timer, IPIs, device interrupt lines, interrupt enable/disable |
//! | [`pci`] | the ECAM PCI host bridge from the device tree, INTx routing |
//! | [`smp`] | starting secondary CPUs with PSCI `CPU_ON`, their first Rust code |
//! | [`mmu`] | TTBR0 switching, TLBI broadcast flushes (`mm`'s `TlbHooks`), table-write and code barriers |
//! | [`time`] | the generic timer's virtual counter |
//! | [`semihosting`] | leaving QEMU with an exit status |
//! | [`pgtable`] | the page-table entry format (`Aarch64Format`) and, for host tests, a software walker |
//!
//! Everything except [`pgtable`], [`NAME`], [`DIRECT_MAP_OFFSET`] and
//! [`ExitStatus`] touches the hardware and is built only for the bare-metal
//! target (`target_os = "none"`); `pgtable` is plain bit arithmetic, built
//! and tested on the host.
//!
//! ## Assumed configuration
//!
//! EL1, 4 KiB granule, 48-bit virtual addresses, the kernel in the upper half
//! through TTBR1 with all RAM mapped at [`DIRECT_MAP_OFFSET`]. The boot path
//! (`boot/aarch64`) sets all of this up before any Rust code runs.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod context;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod pci;
pub mod pgtable;
#[cfg(target_os = "none")]
pub mod probe;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod trap;

/// The architecture's name as the kernel prints it.
pub const NAME: &str = "aarch64";

/// Virtual address of physical address 0: all RAM and the low device space
/// are mapped at `DIRECT_MAP_OFFSET + pa` through TTBR1.
pub const DIRECT_MAP_OFFSET: u64 = 0xffff_0000_0000_0000;

/// How the guest tells QEMU it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
}

/// Leaves QEMU with `status` (semihosting). If semihosting is not enabled the
/// call returns, and the CPU parks itself instead.
#[cfg(target_os = "none")]
pub fn exit(status: ExitStatus) -> ! {
    semihosting::exit(match status {
        ExitStatus::Success => 0,
        ExitStatus::Failure => 1,
    });
    halt_forever()
}

/// Masks interrupts and waits forever.
#[cfg(target_os = "none")]
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: masking interrupts and waiting for an event have no effect
        // on memory; this CPU simply stops doing work.
        unsafe { core::arch::asm!("msr daifset, #0xf", "wfe", options(nomem, nostack)) };
    }
}
