//! Which CPU am I? Each CPU keeps its kernel index (0 = boot CPU) in its
//! own `IA32_GS_BASE` MSR, written once when the CPU comes up. (The kernel
//! uses no GS-relative data, so the register is free for this.)
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::cpu::Cpu;
use x86_64::registers::model_specific::Msr;

const IA32_GS_BASE: u32 = 0xc000_0101;

/// The most CPUs this arch code keeps per-CPU state for (GDT, TSS, IST
/// stacks, APIC ids); at least the kernel's own limit.
pub const MAX_CPUS: usize = 16;

/// Records this CPU's index. Once per CPU, before it runs tasks.
pub fn set_index(index: usize) {
    // SAFETY: GS_BASE is not used for anything else by this kernel.
    unsafe { Msr::new(IA32_GS_BASE).write(index as u64) };
}

impl Cpu for X86_64 {
    const MAX_CPUS: usize = MAX_CPUS;

    fn cpu_index() -> usize {
        // SAFETY: reading GS_BASE has no side effect.
        unsafe { Msr::new(IA32_GS_BASE).read() as usize }
    }
}
