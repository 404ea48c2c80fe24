//! Which CPU am I? Each CPU keeps its kernel index (0 = boot CPU) in its
//! own `TPIDR_EL1`, written once when the CPU comes up.
#![cfg(target_os = "none")]

use crate::Aarch64;
use arch_common::cpu::Cpu;

/// The most CPUs this arch code keeps per-CPU state for (the GIC interface
/// masks of [`crate::irq`]); at least the kernel's own limit. (GICv2 itself
/// has at most 8 CPU interfaces.)
pub const MAX_CPUS: usize = 16;

/// Records this CPU's index. Once per CPU, before it runs tasks.
pub fn set_index(index: usize) {
    // SAFETY: TPIDR_EL1 is a software thread-ID register reserved for this.
    unsafe { core::arch::asm!("msr tpidr_el1, {0}", in(reg) index as u64, options(nomem, nostack)) };
}

impl Cpu for Aarch64 {
    const MAX_CPUS: usize = MAX_CPUS;

    fn cpu_index() -> usize {
        let v: u64;
        // SAFETY: reading TPIDR_EL1 has no side effect.
        unsafe { core::arch::asm!("mrs {0}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
        v as usize
    }
}
