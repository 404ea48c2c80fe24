//! AArch64 support: everything the kernel needs from the CPU and the `virt`
//! machine that is specific to this architecture.
//!
//! | module | what |
//! | --- | --- |
//! | [`console`] | `Console`: the PL011 UART, write side |
//! | [`trap`] | the exception vector table, the saved register frame, ESR decoding |
//! | [`probe`] | `Probe`: the probe routines (loads, stores and calls that may fault) and their fix-ups |
//! | [`cpu`] | `Cpu`: this CPU's kernel index, in a per-CPU register; the random-number instruction |
//! | [`context`] | `ContextSwitch`: the task switch routine (callee-saved registers, stack pointer), a new task's frame |
//! | [`irq`] | `Irq`: interrupt controller, periodic timer, IPIs, device interrupt lines, interrupt enable/disable |
//! | [`pci`] | `Pci`: the ECAM PCI host bridge from the device tree, INTx routing |
//! | [`smp`] | `Smp`: starting secondary CPUs with PSCI `CPU_ON`, their first Rust code |
//! | [`mmu`] | `Mmu`: TTBR0 switching, TLBI broadcast flushes (`mm`'s `TlbHooks`), table-write and code barriers, device mappings |
//! | [`time`] | `Time`: the generic timer's virtual counter; the PL031 real-time clock |
//! | [`semihosting`] | leaving QEMU with an exit status |
//! | [`pgtable`] | the page-table entry format (`Aarch64Format`) and, for host tests, a software walker |
//! | [`user`] | `UserMode`: EL0 entry by `eret` and the lower-EL vectors' return, the user registers, `ldtr`/`sttr` copies and their fix-ups, PAN |
//! | [`hwcap`] | `AT_HWCAP`: Linux's `HWCAP_*` bits from the ID registers |
//! | [`dtmem`] | the RAM the device tree's memory nodes list, read without panicking, clipped to the boot tables' Normal window; their and the CPUs' `numa-node-id`s |
//!
//! [`Aarch64`] is this arch for the kernel: it implements every trait of
//! `arch_common` (the one declaration of what the kernel needs from an
//! arch), each in the module the table names with it.
//!
//! Everything except [`pgtable`], [`dtmem`], [`hwcap`], [`NAME`], [`DIRECT_MAP_OFFSET`] and the
//! [`Aarch64`] type touches the hardware and is built only for the
//! bare-metal target (`target_os = "none"`); `pgtable` and `hwcap` are
//! plain bit arithmetic and `dtmem` plain parsing, built and tested on the
//! host.
//!
//! ## Assumed configuration
//!
//! EL1, 4 KiB granule, 48-bit virtual addresses, the kernel in the upper half
//! through TTBR1 with all RAM mapped at [`DIRECT_MAP_OFFSET`]. The boot path
//! (`boot/aarch64`) sets all of this up before any Rust code runs.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

// Every module but `pgtable`, `dtmem` and `hwcap` touches the hardware and starts with
// `#![cfg(target_os = "none")]`: it is built for the bare-metal target only.
pub mod console;
pub mod context;
pub mod cpu;
pub mod dtmem;
pub mod hwcap;
pub mod irq;
pub mod mmu;
pub mod pci;
pub mod pgtable;
pub mod probe;
pub mod semihosting;
pub mod smp;
pub mod time;
pub mod trap;
pub mod user;

/// The architecture's name as the kernel prints it.
pub const NAME: &str = "aarch64";

/// Virtual address of physical address 0: all RAM and the low device space
/// are mapped at `DIRECT_MAP_OFFSET + pa` through TTBR1.
pub const DIRECT_MAP_OFFSET: u64 = 0xffff_0000_0000_0000;

/// AArch64 on QEMU `virt` as the kernel sees it: the type every trait of
/// `arch_common` is implemented for.
#[derive(Debug, Clone, Copy)]
pub struct Aarch64;

#[cfg(target_os = "none")]
use arch_common::ExitStatus;

#[cfg(target_os = "none")]
impl arch_common::Arch for Aarch64 {
    const NAME: &'static str = NAME;

    /// Leaves through semihosting. If semihosting is not enabled the call
    /// returns, and the CPU parks itself instead.
    fn exit(status: ExitStatus) -> ! {
        semihosting::exit(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
        });
        Self::halt_forever()
    }

    fn halt_forever() -> ! {
        loop {
            // SAFETY: masking interrupts and waiting for an event have no
            // effect on memory; this CPU simply stops doing work.
            unsafe { core::arch::asm!("msr daifset, #0xf", "wfe", options(nomem, nostack)) };
        }
    }
}
