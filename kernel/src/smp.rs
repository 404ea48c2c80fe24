//! Bringing every CPU online.
//!
//! The boot path lists the CPUs ([`crate::boot::CpuList`]); [`bring_up`]
//! starts each secondary CPU in turn through the arch code (x86_64:
//! INIT-SIPI-SIPI and a real-mode trampoline; AArch64: PSCI `CPU_ON`), on
//! a fresh 32 KiB stack, and waits for it to report online from
//! [`crate::sched::run_secondary`]. A CPU that does not come up within a
//! second is reported and left out: the kernel runs on the others.

use crate::arch;
use crate::boot::CpuList;
use crate::memory;
use crate::println;
use crate::sched;

/// Order of a secondary CPU's start-up (then idle) stack: 32 KiB.
const STACK_ORDER: u8 = 3;
/// How long a CPU may take to report online.
const START_TIMEOUT_NS: u64 = 1_000_000_000;

extern "C" fn secondary_entry(cpu: usize) -> ! {
    sched::run_secondary(cpu)
}

/// How many CPUs the firmware listed (and the kernel tried to start); 0
/// until [`bring_up`] has run.
static NR_LISTED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Starts every listed CPU; returns how many CPUs run tasks.
pub fn bring_up(cpus: &CpuList) -> usize {
    NR_LISTED.store(cpus.ids().len(), core::sync::atomic::Ordering::Relaxed);
    for (cpu, &id) in cpus.ids().iter().enumerate().skip(1) {
        let Ok(stack) = memory::alloc_frames(STACK_ORDER) else {
            println!("smp: no memory for CPU {cpu}'s stack; not starting it");
            continue;
        };
        let top = memory::phys_to_virt(stack).as_u64() + (4096 << STACK_ORDER);
        // SAFETY: the stack was just allocated for this CPU and is never
        // freed (it becomes the CPU's idle stack).
        if let Err(e) = unsafe { arch::smp::start_cpu(id, cpu, top, secondary_entry) } {
            println!("smp: CPU {cpu} (hardware id {id:#x}) did not start: {e:?}");
            memory::free_frames(stack, STACK_ORDER);
            continue;
        }
        let start = arch::time::now_ns();
        while !sched::cpu_online(cpu) && arch::time::now_ns() - start < START_TIMEOUT_NS {
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
            crate::boot::MAX_CPUS
        );
    }
    sched::nr_cpus_online()
}

// ---------------------------------------------------------------- tests

use crate::testing::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

fn all_cpus_online(_: &TestEnv<'_>) -> Result<(), String> {
    let listed = NR_LISTED.load(core::sync::atomic::Ordering::Relaxed);
    if listed == 0 {
        return Err("smp::bring_up never ran".into());
    }
    let online = sched::nr_cpus_online();
    if online != listed {
        return Err(format!("{online} of {listed} CPUs online"));
    }
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let handles: Result<Vec<_>, _> =
        cpus.iter().map(|&cpu| sched::spawn_on(cpu, "where", sched::cpu_index)).collect();
    for (&cpu, h) in cpus.iter().zip(handles.map_err(|e| format!("spawn_on: {e:?}"))?) {
        let ran_on = h.join();
        if ran_on != cpu {
            return Err(format!("a task pinned to CPU {cpu} ran on CPU {ran_on}"));
        }
    }
    Ok(())
}

fn tasks_migrate(_: &TestEnv<'_>) -> Result<(), String> {
    let n = sched::nr_cpus_online();
    if n < 2 {
        return Ok(()); // one CPU: there is nowhere to migrate to
    }
    let handles: Result<Vec<_>, _> = (0..2 * n)
        .map(|_| {
            sched::spawn("wanderer", || {
                // Keep giving up the CPU until this task has run on two
                // CPUs, or 5 s have passed (a host short of cores may run
                // the other virtual CPUs rarely).
                let start = arch::time::now_ns();
                let mut seen = 0u32;
                let mut i = 0u64;
                while seen.count_ones() < 2 && arch::time::now_ns() - start < 5_000_000_000 {
                    seen |= 1 << sched::cpu_index();
                    if i.is_multiple_of(3) {
                        sched::sleep_ms(1);
                    } else {
                        sched::yield_now();
                    }
                    i += 1;
                }
                seen
            })
        })
        .collect();
    let masks: Vec<u32> =
        handles.map_err(|e| format!("spawn: {e:?}"))?.into_iter().map(|h| h.join()).collect();
    if masks.iter().all(|m| m.count_ones() < 2) {
        let stats: Vec<_> = sched::online_cpus().map(|c| (c, sched::cpu_stats(c))).collect();
        return Err(format!(
            "no task ran on more than one CPU: {masks:x?}; (cpu, (ticks, ipis, switches)): {stats:?}"
        ));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = &[
    Test { name: "smp::all_cpus_online", run: all_cpus_online },
    Test { name: "smp::tasks_migrate", run: tasks_migrate },
];
