//! In-guest tests moved from vm/tlb.rs.

use crate::arch::prelude::*;
use crate::tests::kit::*;
use crate::vm::tlb::*;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::VirtAddr;

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
            space
                .table
                .remap(
                    &KernelTables,
                    &Shootdown,
                    VirtAddr::new(va),
                    leaf(frames[gen as usize].pa, PageSize::Size4K, RW_KERNEL),
                )
                .map_err(|e| format!("remap: {e}"))?;
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

pub(crate) const TESTS: &[Test] = register!["tlb": shootdown_leaves_no_stale_reads];
