//! Which CPU am I? Each CPU keeps its kernel index (0 = boot CPU) in its
//! own `TPIDR_EL1`, written once when the CPU comes up. And `RNDR`, the
//! random-number register of FEAT_RNG (`ID_AA64ISAR0_EL1.RNDR` >= 1; QEMU's
//! `-cpu max` has it), read as `s3_3_c2_c4_0` so that no assembler feature
//! flag is needed: it sets `NZCV` to `0b0100` (Z) and reads 0 when it
//! could not deliver.
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

/// Whether the CPU implements FEAT_RNG (every CPU of the machine alike).
fn has_rndr() -> bool {
    let isar0: u64;
    // SAFETY: reading ID_AA64ISAR0_EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {0}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack)) };
    (isar0 >> 60) & 0xf >= 1
}

impl Cpu for Aarch64 {
    const MAX_CPUS: usize = MAX_CPUS;

    fn hw_random_source() -> Option<&'static str> {
        has_rndr().then_some("RNDR")
    }

    fn hw_random() -> Option<u64> {
        if !has_rndr() {
            return None;
        }
        for _ in 0..10 {
            let (value, ok): (u64, u64);
            // SAFETY: FEAT_RNG is implemented (checked above), so RNDR
            // exists; reading it changes only the flags, which `cset`
            // reads at once.
            unsafe {
                core::arch::asm!(
                    "mrs {0}, s3_3_c2_c4_0",
                    "cset {1}, ne",
                    out(reg) value,
                    out(reg) ok,
                    options(nomem, nostack)
                )
            };
            if ok != 0 {
                return Some(value);
            }
        }
        None
    }

    fn cpu_index() -> usize {
        let v: u64;
        // SAFETY: reading TPIDR_EL1 has no side effect.
        unsafe { core::arch::asm!("mrs {0}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
        v as usize
    }
}
