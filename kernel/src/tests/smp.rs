//! In-guest tests moved from task/smp.rs.

use crate::arch::prelude::*;
use crate::task::sched;
use crate::task::smp::*;

use crate::tests::{Test, TestEnv};
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
        let ran_on = h.join()?;
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
                let start = Arch::now_ns();
                let mut seen = 0u32;
                let mut i = 0u64;
                while seen.count_ones() < 2 && Arch::now_ns() - start < 5_000_000_000 {
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
    let masks: Vec<u32> = handles
        .map_err(|e| format!("spawn: {e:?}"))?
        .into_iter()
        .map(|h| h.join())
        .collect::<Result<_, _>>()?;
    if masks.iter().all(|m| m.count_ones() < 2) {
        let stats: Vec<_> = sched::online_cpus().map(|c| (c, sched::cpu_stats(c))).collect();
        return Err(format!(
            "no task ran on more than one CPU: {masks:x?}; (cpu, (ticks, ipis, switches)): {stats:?}"
        ));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["smp": all_cpus_online, tasks_migrate];
