//! In-guest tests moved from task/smp.rs.

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

/// A task moves between CPUs when it is moved ([`sched::set_affinity`]):
/// what the kernel guarantees, whatever the host does with QEMU's threads.
/// (Whether an unpinned task changes CPU on its own is up to timing: a
/// loaded host may run the other virtual CPUs too rarely for it to happen,
/// which once failed the test this replaces at `--smp 3`.)
fn tasks_migrate(_: &TestEnv<'_>) -> Result<(), String> {
    let cpus: Vec<usize> = sched::online_cpus().collect();
    if sched::set_affinity(Some(sched::MAX_CPUS + 1))
        != Err(sched::SpawnError::NoSuchCpu(sched::MAX_CPUS + 1))
    {
        return Err("set_affinity to a CPU that does not exist was not refused".into());
    }
    // Each task starts pinned to one CPU and walks every CPU from the next
    // one on, twice around, checking where it runs after each move, after
    // a yield and after a sleep (a pinned task stays); then it is let go.
    let walk = |first: usize, cpus: Vec<usize>| {
        move || -> Result<Vec<usize>, String> {
            let mut visited = alloc::vec![sched::cpu_index()];
            for &cpu in cpus.iter().cycle().skip(first + 1).take(2 * cpus.len()) {
                sched::set_affinity(Some(cpu)).map_err(|e| format!("set_affinity({cpu}): {e:?}"))?;
                let here = sched::cpu_index();
                sched::yield_now();
                let after_yield = sched::cpu_index();
                sched::sleep_ms(1);
                let after_sleep = sched::cpu_index();
                if (here, after_yield, after_sleep) != (cpu, cpu, cpu) {
                    return Err(format!(
                        "moved to CPU {cpu}: ran on {here}, then {after_yield} after a yield, {after_sleep} after a sleep"
                    ));
                }
                visited.push(here);
            }
            sched::set_affinity(None).map_err(|e| format!("set_affinity(None): {e:?}"))?;
            Ok(visited)
        }
    };
    let handles: Result<Vec<_>, _> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| sched::spawn_on(cpu, "wanderer", walk(i, cpus.clone())))
        .collect();
    for (i, h) in handles.map_err(|e| format!("spawn_on: {e:?}"))?.into_iter().enumerate() {
        let visited = h.join()??;
        let expect: Vec<usize> = cpus.iter().cycle().skip(i).take(2 * cpus.len() + 1).copied().collect();
        if visited != expect {
            return Err(format!("task {i} ran on {visited:?}, expected {expect:?}"));
        }
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["smp": all_cpus_online, tasks_migrate];
