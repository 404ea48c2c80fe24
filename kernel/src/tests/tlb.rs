//! In-guest tests moved from vm/tlb.rs.

use crate::arch::prelude::*;
use crate::tests::kit::*;
use crate::vm::tlb::*;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::{PhysAddr, VirtAddr};

use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::tests::kit::{leaf, probe_read, Frames, RW_KERNEL, TEST_VA};
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mm::pgtable::PageSize;

/// Readers on every other CPU read a page of a shared address space while
/// this CPU remaps it, generation after generation, to a fresh frame that
/// holds the generation number. A reader that has seen generation `g`
/// published must never read a smaller number: that would be a stale
/// translation surviving the remap's shootdown.
fn shootdown_leaves_no_stale_reads(_: &TestEnv<'_>) -> Result<(), String> {
    const GENERATIONS: u64 = 60;
    let va = TEST_VA + 0x4000;
    let frames: Result<Vec<Frames>, String> = (0..=GENERATIONS).map(|_| Frames::new(0)).collect();
    let frames = frames?;
    for (gen, f) in frames.iter().enumerate() {
        for off in (0..4096).step_by(64) {
            f.write(off, gen as u8);
        }
    }
    let space = Arc::new(TestSpace::new()?);
    space.map_leaf(va, frames[0].pa, PageSize::Size4K, RW_KERNEL)?;
    let generation = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<usize> = sched::online_cpus().filter(|&c| c != sched::cpu_index()).collect();
    // The generation each reader has read at: the writer waits for all of
    // them before the next remap, so every reader really uses every
    // translation (and would keep a stale one, were it not shot down).
    let progress: Arc<Vec<AtomicU64>> = Arc::new(others.iter().map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for (slot, &cpu) in others.iter().enumerate() {
        let (space, generation, stop, progress) =
            (space.clone(), generation.clone(), stop.clone(), progress.clone());
        let h = sched::spawn_on(cpu, "reader", move || -> Result<u64, String> {
            let _in = sched::enter_address_space(space.table.root());
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                let g = generation.load(Ordering::Acquire);
                let at = VirtAddr::new(va + (reads * 64) % 4096);
                let v = match Arch::probe_read_u8(at) {
                    Ok(v) => v as u64,
                    // The remap's break-before-make leaves the page unmapped
                    // for a moment; a real access would fault and retry.
                    Err(f) if f.cause == mm::fault::FaultCause::NotMapped => continue,
                    Err(f) => return Err(format!("CPU {cpu}: unexpected fault {f:?}")),
                };
                if v < g {
                    return Err(format!("CPU {cpu} read generation {v} after generation {g} was published"));
                }
                progress[slot].store(g, Ordering::Release);
                reads += 1;
            }
            Ok(reads)
        })
        .map_err(|e| format!("spawn_on({cpu}): {e:?}"))?;
        readers.push(h);
    }
    let wait_for_readers = |gen: u64| -> Result<(), String> {
        let start = Arch::now_ns();
        while progress.iter().any(|p| p.load(Ordering::Acquire) < gen) {
            if Arch::now_ns() - start > 5_000_000_000 {
                return Err(format!("a reader did not read generation {gen} within 5 s"));
            }
            sched::yield_now();
        }
        Ok(())
    };
    let result = (|| {
        let _in = sched::enter_address_space(space.table.root());
        wait_for_readers(0)?;
        for gen in 1..=GENERATIONS {
            remap(&space, va, frames[gen as usize].pa)?;
            generation.store(gen, Ordering::Release);
            let here = probe_read(va)? as u64;
            if here != gen {
                return Err(format!("the remapping CPU read {here} after publishing {gen}"));
            }
            wait_for_readers(gen)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Release);
    let mut errors = Vec::new();
    for h in readers {
        if let Err(e) = h.join().unwrap_or_else(|killed| Err(killed.into())) {
            errors.push(e);
        }
    }
    match Arc::try_unwrap(space) {
        Ok(space) => space.destroy(),
        Err(_) => return Err("the address space is still referenced after the readers ended".into()),
    }
    drop(frames);
    // A reader's own failure explains a writer's timeout: report it first.
    if let Some(e) = errors.first() {
        return Err(e.clone());
    }
    result
}

/// Points the 4 KiB kernel-writable mapping at `va` of `space` at `pa`,
/// with the flush `Shootdown` does.
fn remap(space: &TestSpace, va: u64, pa: PhysAddr) -> Result<(), String> {
    space
        .table
        .remap(&KernelTables, &Shootdown, VirtAddr::new(va), leaf(pa, PageSize::Size4K, RW_KERNEL))
        .map(|_| ())
        .map_err(|e| format!("remap: {e}"))
}

/// A flush of a space that only this CPU has loaded stays on this CPU
/// (`flush_is_local`, counted in `NR_LOCAL_FLUSHES`) and the new mapping is
/// what this CPU reads; once a task on another CPU has the space loaded,
/// the same flush is not local any more, and that CPU reads the new
/// mapping too after the remap (no stale translation kept there).
fn a_flush_stays_local_only_while_no_other_cpu_has_the_space(_: &TestEnv<'_>) -> Result<(), String> {
    let va = TEST_VA + 0x8000;
    let frames: Result<Vec<Frames>, String> = (0..3).map(|_| Frames::new(0)).collect();
    let frames = frames?;
    for (gen, f) in frames.iter().enumerate() {
        for off in (0..4096).step_by(64) {
            f.write(off, gen as u8 + 1);
        }
    }
    let space = Arc::new(TestSpace::new()?);
    space.map_leaf(va, frames[0].pa, PageSize::Size4K, RW_KERNEL)?;
    let root = space.table.root();
    let remap = |gen: usize| remap(&space, va, frames[gen].pa);
    let other = sched::online_cpus().find(|&c| c != sched::cpu_index());
    let result = (|| -> Result<(), String> {
        sched::set_affinity(Some(sched::cpu_index())).map_err(|e| format!("set_affinity: {e:?}"))?;
        let _in = sched::enter_address_space(root);
        if probe_read(va)? != 1 {
            return Err("the first mapping does not read 1".into());
        }
        let local = crate::sync::without_interrupts(|| flush_is_local(root));
        if !local {
            return Err("a space loaded on this CPU alone is not flushed locally".into());
        }
        let before = NR_LOCAL_FLUSHES.load(Ordering::Relaxed);
        remap(1)?;
        if NR_LOCAL_FLUSHES.load(Ordering::Relaxed) == before {
            return Err("the remap of a space loaded here alone made no local flush".into());
        }
        if probe_read(va)? != 2 {
            return Err("this CPU does not read the new mapping after a local flush".into());
        }
        // With one CPU, the local half is the whole test.
        let Some(other) = other else { return Ok(()) };
        // A task on another CPU loads the space and reads the page.
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s2, seen2) = (stop.clone(), seen.clone());
        let reader = sched::spawn_on(other, "tlb local reader", move || -> Result<(), String> {
            let _in = sched::enter_address_space(root);
            while !s2.load(Ordering::Acquire) {
                if let Ok(v) = Arch::probe_read_u8(VirtAddr::new(va)) {
                    seen2.store(v as u64, Ordering::Release);
                }
            }
            Ok(())
        })
        .map_err(|e| format!("spawn_on({other}): {e:?}"))?;
        let wait_seen = |v: u64| -> Result<(), String> {
            let start = Arch::now_ns();
            while seen.load(Ordering::Acquire) != v {
                if Arch::now_ns() - start > 5_000_000_000 {
                    return Err(format!("CPU {other} did not read {v} within 5 s"));
                }
                sched::yield_now();
            }
            Ok(())
        };
        let checked = (|| {
            wait_seen(2)?;
            if crate::sync::without_interrupts(|| flush_is_local(root)) {
                return Err(format!("a space loaded on CPU {other} too is flushed locally"));
            }
            remap(2)?;
            wait_seen(3)
        })();
        stop.store(true, Ordering::Release);
        reader.join().unwrap_or_else(|killed| Err(killed.into()))?;
        checked
    })();
    let _ = sched::set_affinity(None);
    match Arc::try_unwrap(space) {
        Ok(space) => space.destroy(),
        Err(_) => return Err("the address space is still referenced after the reader ended".into()),
    }
    drop(frames);
    result
}

pub(crate) const TESTS: &[Test] = register!["tlb": shootdown_leaves_no_stale_reads, a_flush_stays_local_only_while_no_other_cpu_has_the_space];
