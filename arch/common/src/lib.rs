//! `arch-common`: what the kernel needs from an architecture, declared once,
//! and what both architectures share.
//!
//! Each mechanism the kernel asks of the hardware is a trait here; each arch
//! crate implements every one of them for one zero-sized type
//! (`arch_x86_64::X86_64`, `arch_aarch64::Aarch64`), and [`Arch`] requires
//! them all. The kernel names its arch once (`kernel::arch::Arch`) and calls
//! it only through these traits, so an item missing from an arch crate, or
//! one whose signature differs, is a compile error in that arch crate, against
//! the one declaration here. Types that are the same on both arches
//! ([`ExitStatus`], [`irq::AttachError`], [`irq::Hooks`], the device-line
//! table, [`context::Context`], [`probe::BreakpointHit`], [`pci::Host`], ...)
//! and the logic both used to repeat (the device-line table, the hook
//! registries, the probe fix-up bookkeeping) exist once, here.
//!
//! | module | what |
//! | --- | --- |
//! | [`console`] | `Console`: the serial console, write side |
//! | [`cpu`] | `Cpu`: this CPU's kernel index, the per-CPU limit, the random-number instruction |
//! | [`time`] | `Time`: the clock, the real-time clock; `CivilTime`, a date to Unix seconds |
//! | [`irq`] | `Irq`: interrupt enable/disable, timer, IPIs, device lines; the kernel's hooks; the device-line table |
//! | [`context`] | `ContextSwitch`: a task's saved [`context::Context`] and the switch between two |
//! | [`mmu`] | `Mmu`: the page-table format, address-space switching, TLB hooks, barriers, device mappings |
//! | [`trap`] | the kernel's memory-fault handler, as the arch's exception code finds it; `Frames`: the frame pointer, and where a fatal fault happened, for backtraces |
//! | [`probe`] | `Probe`: loads, stores and calls that may fault, and an expected breakpoint |
//! | [`pci`] | `Pci`: the host bridge and INTx routing |
//! | [`smp`] | `Smp`: starting another CPU |
//! | [`user`] | `UserMode`: entering ring 3 / EL0 and coming back (`UserExit`), the user registers, copies to and from user memory with fault fix-ups |
//! | [`prelude`] | every trait, imported anonymously, for `A::method()` calls |
//!
//! Everything here builds and is tested on the host. A few provided trait
//! methods call assembly routines the arch crate defines ([`probe`],
//! [`context`]); they are only instantiated for an arch type, so on the host,
//! where no arch type implements the traits, nothing refers to those symbols.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod console;
pub mod context;
pub mod cpu;
pub mod irq;
pub mod mmu;
pub mod pci;
pub mod probe;
pub mod smp;
pub mod time;
pub mod trap;
pub mod user;

/// Everything the kernel needs from an architecture: the arch's name, how
/// to leave QEMU, and every mechanism trait. Implemented by one zero-sized
/// type per arch crate; `impl Arch for ...` does not compile until the arch
/// implements every mechanism.
pub trait Arch:
    console::Console
    + cpu::Cpu
    + time::Time
    + irq::Irq
    + context::ContextSwitch
    + mmu::Mmu
    + probe::Probe
    + pci::Pci
    + smp::Smp
    + trap::Frames
    + user::UserMode
{
    /// The architecture's name as the kernel prints it.
    const NAME: &'static str;

    /// Leaves QEMU with `status`. When the machine offers no way out (no
    /// debug-exit device, no semihosting), the CPU parks itself instead.
    fn exit(status: ExitStatus) -> !;

    /// Disables interrupts on this CPU and stops it for good.
    fn halt_forever() -> !;
}

/// How the guest tells QEMU it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
}

/// Every trait of this crate, imported anonymously: `use
/// arch_common::prelude::*;` lets code call `A::now_ns()`,
/// `A::irq_save_and_disable()`, ... on an arch type `A` without naming the
/// trait that declares each.
pub mod prelude {
    pub use crate::console::Console as _;
    pub use crate::context::ContextSwitch as _;
    pub use crate::cpu::Cpu as _;
    pub use crate::irq::Irq as _;
    pub use crate::mmu::Mmu as _;
    pub use crate::pci::Pci as _;
    pub use crate::probe::Probe as _;
    pub use crate::smp::Smp as _;
    pub use crate::time::Time as _;
    pub use crate::trap::Frames as _;
    pub use crate::user::UserMode as _;
    pub use crate::Arch as _;
}
