//! Starting another CPU. How is the arch's (x86_64: INIT-SIPI-SIPI and a
//! real-mode trampoline; AArch64: PSCI `CPU_ON`); what the new CPU finds
//! when it reaches the kernel is the same on both: its own stack, its
//! kernel index set, interrupts disabled, its exception handling and
//! interrupt controller set up, the kernel's page tables loaded.

use crate::context::TaskEntry;
use core::fmt;

/// What to start: a CPU the firmware lists, the kernel index it gets, its
/// stack and the function it runs.
#[derive(Debug, Clone, Copy)]
pub struct CpuStart {
    /// The CPU's hardware id as the firmware gives it (x86_64: the local
    /// APIC id from the MADT; AArch64: the MPIDR affinity from the device
    /// tree).
    pub arch_id: u64,
    /// The kernel index the CPU gets (0 is the boot CPU).
    pub cpu: usize,
    /// The end of the CPU's stack (16-byte aligned, in the direct map).
    pub stack_top: u64,
    /// What the CPU runs, as `entry(cpu)`, interrupts disabled.
    pub entry: TaskEntry,
}

/// Starting CPUs, as an arch provides it.
pub trait Smp {
    /// Why a CPU was not started.
    type SmpError: fmt::Debug;

    /// Starts `start.arch_id` as kernel CPU `start.cpu`, running
    /// `start.entry(cpu)` on its stack (see the module doc). Returns once
    /// the CPU is under way (and, where the arch waits for it, past the
    /// point where the next CPU may be started); whether it comes online is
    /// for the kernel to see. Boot CPU; calls are serialised.
    ///
    /// # Safety
    /// 1. `arch_id` must not name a CPU that runs anything (x86_64 resets
    ///    it with INIT).
    /// 2. `stack_top` must end a writable stack of at least a few KiB in the
    ///    direct map, owned by the new CPU from now on (never freed or
    ///    reused once this returns `Ok`).
    /// 3. `cpu` must be a kernel index no other CPU has, and `entry` fit to
    ///    run on the new CPU with interrupts disabled.
    unsafe fn start_cpu(start: CpuStart) -> Result<(), Self::SmpError>;
}
