//! In-guest tests moved from task/sched.rs.

use crate::arch::prelude::*;
use crate::task::sched::*;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;

fn timer_ticks_advance(_: &TestEnv<'_>) -> Result<(), String> {
    let (t0, c0) = (ticks(), Arch::now_ns());
    while Arch::now_ns() - c0 < 100_000_000 {
        core::hint::spin_loop();
    }
    let n = ticks() - t0;
    // 10 ticks expected at 100 Hz; TCG time is coarse, so only demand a few.
    if n < 3 {
        return Err(format!("{n} ticks in 100 ms of busy waiting (the timer interrupt is not arriving)"));
    }
    Ok(())
}

fn yield_interleaves_tasks(_: &TestEnv<'_>) -> Result<(), String> {
    // What the kernel guarantees is that a yield lets the other ready task
    // of its CPU run: both tasks go on this CPU (which this task leaves
    // while it joins them), and each starts its steps only once both are
    // there. Spread over several CPUs, whether they interleave would be up
    // to how the host schedules QEMU's CPU threads (it once failed so at
    // --smp 4).
    let log = Arc::new(crate::sync::IrqSpinLock::new(Vec::new()));
    let started = Arc::new(AtomicU8::new(0));
    let cpu = cpu_index();
    let mut handles = Vec::new();
    for who in [1u8, 2] {
        let (log, started) = (log.clone(), started.clone());
        handles.push(
            spawn_on(cpu, "yielder", move || {
                started.fetch_add(1, Ordering::AcqRel);
                while started.load(Ordering::Acquire) < 2 {
                    yield_now();
                }
                for i in 0..8u8 {
                    log.lock().push((who, i));
                    yield_now();
                }
            })
            .map_err(|e| format!("spawn: {e:?}"))?,
        );
    }
    for h in handles {
        h.join()?;
    }
    let log = log.lock();
    for who in [1u8, 2] {
        let mine: Vec<u8> = log.iter().filter(|(w, _)| *w == who).map(|(_, i)| *i).collect();
        if mine != (0..8).collect::<Vec<u8>>() {
            return Err(format!("task {who} ran its steps as {mine:?}"));
        }
    }
    let first_two = log.iter().position(|(w, _)| *w == 2).unwrap_or(usize::MAX);
    let last_one = log.iter().rposition(|(w, _)| *w == 1).unwrap_or(0);
    if first_two > last_one {
        return Err(format!("no interleaving: {:?}", *log));
    }
    Ok(())
}

fn preemption_stops_a_busy_task(_: &TestEnv<'_>) -> Result<(), String> {
    // One task spins without ever yielding, waiting for a flag only the
    // other task sets. On one CPU that finishes only if the timer preempts
    // the spinner.
    let flag = Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    let spinner = spawn("spinner", move || {
        let start = Arch::now_ns();
        while !seen.load(Ordering::Acquire) {
            if Arch::now_ns() - start > 5_000_000_000 {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    })
    .map_err(|e| format!("spawn: {e:?}"))?;
    let setter =
        spawn("setter", move || flag.store(true, Ordering::Release)).map_err(|e| format!("spawn: {e:?}"))?;
    setter.join()?;
    if !spinner.join()? {
        return Err("the spinning task was never preempted (5 s without the setter running)".into());
    }
    Ok(())
}

fn sleep_lasts_at_least(_: &TestEnv<'_>) -> Result<(), String> {
    let start = Arch::now_ns();
    sleep_ms(50);
    let slept = Arch::now_ns() - start;
    if slept < 50_000_000 {
        return Err(format!("sleep_ms(50) returned after {} us", slept / 1000));
    }
    if slept > 2_000_000_000 {
        return Err(format!("sleep_ms(50) took {} ms", slept / 1_000_000));
    }
    Ok(())
}

fn join_returns_values_and_frees_stacks(_: &TestEnv<'_>) -> Result<(), String> {
    // The harness's frame check fails this test if any stack is kept.
    let handles: Result<Vec<_>, _> = (0..32u64).map(|i| spawn("square", move || i * i)).collect();
    let handles = handles.map_err(|e| format!("spawn: {e:?}"))?;
    for (i, h) in handles.into_iter().enumerate() {
        let v = h.join()?;
        if v != (i * i) as u64 {
            return Err(format!("task {i} returned {v}"));
        }
    }
    Ok(())
}

fn spawn_on_a_missing_cpu_is_refused(_: &TestEnv<'_>) -> Result<(), String> {
    match spawn_on(MAX_CPUS + 1, "nowhere", || ()) {
        Err(SpawnError::NoSuchCpu(c)) if c == MAX_CPUS + 1 => Ok(()),
        Err(e) => Err(format!("wrong error {e:?}")),
        Ok(h) => {
            let _ = h.join();
            Err("a task was started on a CPU that does not exist".into())
        }
    }
}

fn join_of_a_killed_task_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    // The kernel ends the task half-way; its joiner gets which task and
    // why, not a panic (the harness's frame check sees its stack freed).
    let h = spawn("doomed", || -> u64 { kill_current(String::from("ended by the test")) })
        .map_err(|e| format!("spawn: {e:?}"))?;
    let id = h.id();
    let start = Arch::now_ns();
    while !h.is_finished() {
        if Arch::now_ns() - start > 5_000_000_000 {
            return Err("the killed task never finished".into());
        }
        yield_now();
    }
    match h.join() {
        Err(killed) if killed.id == id && killed.name == "doomed" && killed.why == "ended by the test" => {
            let shown = format!("{killed}");
            if !shown.contains("doomed") || !shown.contains("ended by the test") {
                return Err(format!("the report `{shown}` does not name the task and the reason"));
            }
            Ok(())
        }
        other => Err(format!("join of a killed task gave {other:?}")),
    }
}

/// Uses about 600 bytes of stack per level, and cannot be turned into a
/// loop: what a stack overflow looks like.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut pad = [0u8; 512];
    pad[(depth % 512) as usize] = depth as u8;
    core::hint::black_box(&mut pad);
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1).wrapping_add(core::hint::black_box(pad)[(depth % 512) as usize] as u64)
}

fn stack_overflow_ends_only_the_task(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::memory::stacks;
    let live_before = stacks::nr_live();
    // A million levels need about 600 MiB of stack: the 32 KiB one runs
    // into its guard long before, and only this task may end.
    let h = spawn("recurser", || recurse(1 << 20)).map_err(|e| format!("spawn: {e:?}"))?;
    match h.join() {
        Err(killed) if killed.name == "recurser" && killed.why.contains("kernel stack overflow") => {}
        Err(killed) => return Err(format!("the recursing task ended otherwise: {killed}")),
        Ok(v) => return Err(format!("a million levels of recursion returned {v} on a 32 KiB stack")),
    }
    // The kernel goes on: tasks run again, on slots that are reused once
    // the freed ones have been flushed from every CPU (more than the
    // quarantine holds, so that happens here too).
    for i in 0..(2 * stacks::QUARANTINE as u64 + 8) {
        let v = spawn("after", move || recurse(i % 16)).map_err(|e| format!("spawn: {e:?}"))?.join()?;
        if v != recurse(i % 16) {
            return Err(format!("task {i} after the overflow computed {v}"));
        }
    }
    if stacks::nr_live() != live_before {
        return Err(format!("{} stacks before, {} after", live_before, stacks::nr_live()));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["sched": timer_ticks_advance, yield_interleaves_tasks, preemption_stops_a_busy_task, sleep_lasts_at_least, join_returns_values_and_frees_stacks, spawn_on_a_missing_cpu_is_refused, join_of_a_killed_task_is_an_error, stack_overflow_ends_only_the_task];
