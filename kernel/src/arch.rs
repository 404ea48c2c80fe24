//! The architecture this kernel is built for, named once.
//!
//! [`Arch`] is the arch crate's type (`arch_x86_64::X86_64` or
//! `arch_aarch64::Aarch64`). It implements every trait of `arch_common`,
//! the one declaration of what the kernel needs from an arch, and the
//! kernel reaches the hardware only through those traits:
//! `Arch::now_ns()`, `Arch::irq_save_and_disable()`, `Arch::TLB`, ..., with
//! [`prelude`] bringing the traits into scope. An arch crate that lacks an
//! item, or declares one differently, does not compile; this module does
//! not either if [`Arch`] misses a trait.
//!
//! What both arches share is `arch_common`'s, re-exported here with its
//! modules: [`ExitStatus`], [`irq::Hooks`] and [`irq::set_hooks`],
//! [`trap::set_fault_hook`], [`context::Context`], [`smp::CpuStart`], ...
//! The per-arch types the kernel names have short aliases below.

pub use arch_common::{context, irq, mmu, pci, probe, smp, trap, user, ExitStatus};

/// The architecture of this build.
#[cfg(target_arch = "x86_64")]
pub type Arch = arch_x86_64::X86_64;
/// The architecture of this build.
#[cfg(target_arch = "aarch64")]
pub type Arch = arch_aarch64::Aarch64;

// `Arch` implements the whole interface.
const _: () = {
    const fn implements_the_interface<A: arch_common::Arch>() {}
    implements_the_interface::<Arch>()
};

/// A device's interrupt line, as this arch's interrupt controller names it.
pub type DeviceIrq = <Arch as irq::Irq>::DeviceIrq;
/// This machine's PCI configuration access.
pub type Cam = <Arch as pci::Pci>::Cam;
/// Why device registers could not be mapped.
pub type MapDeviceError = <Arch as mmu::Mmu>::MapDeviceError;
/// The page-table format the MMU walks.
pub type Format = <Arch as mmu::Mmu>::Format;

/// `use crate::arch::prelude::*;`: [`Arch`], and every `arch_common` trait
/// (anonymously), so that `Arch::...` calls resolve.
pub mod prelude {
    pub use super::Arch;
    pub use arch_common::prelude::*;
}
