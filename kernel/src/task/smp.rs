//! Bringing every CPU online.
//!
//! The boot path lists the CPUs ([`crate::bootinfo::CpuList`]); [`bring_up`]
//! starts each secondary CPU in turn through the arch code (x86_64:
//! INIT-SIPI-SIPI and a real-mode trampoline; AArch64: PSCI `CPU_ON`), on
//! a fresh 32 KiB stack, and waits for it to report online from
//! [`crate::task::sched::run_secondary`]. A CPU that does not come up within a
//! second is reported and left out: the kernel runs on the others.

use crate::arch::prelude::*;
use crate::arch::smp::CpuStart;
use crate::bootinfo::CpuList;
use crate::memory;
use crate::println;
use crate::task::sched;

/// Order of a secondary CPU's start-up (then idle) stack: 32 KiB.
const STACK_ORDER: u8 = 3;
/// How long a CPU may take to report online.
const START_TIMEOUT_NS: u64 = 1_000_000_000;

extern "C" fn secondary_entry(cpu: usize) -> ! {
    sched::run_secondary(cpu)
}

/// How many CPUs the firmware listed (and the kernel tried to start); 0
/// until [`bring_up`] has run.
pub(crate) static NR_LISTED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Starts every listed CPU; returns how many CPUs run tasks.
pub fn bring_up(cpus: &CpuList) -> usize {
    NR_LISTED.store(cpus.ids().len(), core::sync::atomic::Ordering::Relaxed);
    for (cpu, &id) in cpus.ids().iter().enumerate().skip(1) {
        let Ok(stack) = memory::alloc_frames(STACK_ORDER) else {
            println!("smp: no memory for CPU {cpu}'s stack; not starting it");
            continue;
        };
        // Zeroed though nothing reads it: see `memory`'s "Kernel memory is
        // zeroed when taken".
        // SAFETY: just allocated for this CPU's stack, which has not
        // started: nothing else reaches it.
        unsafe { memory::zero_frames(stack, STACK_ORDER) };
        let top = memory::phys_to_virt(stack).as_u64() + (4096 << STACK_ORDER);
        // SAFETY: the stack was just allocated for this CPU and is never
        // freed (it becomes the CPU's idle stack).
        let start = CpuStart { arch_id: id, cpu, stack_top: top, entry: secondary_entry };
        if let Err(e) = unsafe { Arch::start_cpu(start) } {
            println!("smp: CPU {cpu} (hardware id {id:#x}) did not start: {e:?}");
            memory::free_frames(stack, STACK_ORDER);
            continue;
        }
        let start = Arch::now_ns();
        while !sched::cpu_online(cpu) && Arch::now_ns() - start < START_TIMEOUT_NS {
            core::hint::spin_loop();
        }
        if !sched::cpu_online(cpu) {
            println!("smp: CPU {cpu} (hardware id {id:#x}) did not report online within 1 s");
        }
    }
    if cpus.nr_ignored > 0 {
        println!(
            "smp: {} more CPUs than the kernel's limit of {} were left out",
            cpus.nr_ignored,
            crate::bootinfo::MAX_CPUS
        );
    }
    sched::nr_cpus_online()
}
