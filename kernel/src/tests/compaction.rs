//! In-guest tests of compaction (`crate::vm::compaction`,
//! `mm::compaction`) on the real MMU, at any number of CPUs:
//!
//! - **fragmentation** ([`Fragmented`]): memory is filled with 4 KiB pages
//!   of one space (THP off for the range), then every page is freed but
//!   one in each 2 MiB physical block (its PFN looked up with
//!   `AddressSpace::folio_at`), and the free 2 MiB blocks still left are
//!   taken as ballast: plenty of memory is free, and no 2 MiB block;
//! - `thp_faults_reach_90_percent_through_compaction`: then the write
//!   faults of a `MADV_HUGEPAGE` range must map 2 MiB leaves for at least
//!   90 % of its blocks (direct compaction in the fault, with kcompactd's
//!   help), and every kept page keeps every byte;
//! - `kcompactd_is_woken_by_huge_failures_and_rebuilds_blocks`: a THP
//!   fault in a range without advice (which may not stall) fails for want
//!   of a block: kcompactd is woken, and rebuilds a free 2 MiB block by
//!   itself; the next fault there maps one.
//!
//! The `compact` benchmark (`crate::bench::compact`) uses the same
//! fragmentation.

use crate::memory;
use crate::task::sched;
use crate::tests::vm::leaf_at;
use crate::tests::{Test, TestEnv};
use crate::vm::space::{AddressSpace, Advice};
use crate::vm::uaccess;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mm::pgtable::Level;
use mm::vma::VmaProt;
use mm::{PhysAddr, VirtAddr};

pub(crate) const TESTS: &[Test] = register!["compaction":
    thp_faults_reach_90_percent_through_compaction,
    kcompactd_is_woken_by_huge_failures_and_rebuilds_blocks];

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const PAGE: u64 = 4096;
const HUGE: u64 = mm::thp::HPAGE_SIZE;
const WORDS: u64 = PAGE / 8;
/// Pages left free above the `high` watermark by the fill: kswapd must not
/// wake (it would swap the pages out from under the test).
const FILL_MARGIN: u64 = 2048;

/// Word `w` of the kept page at `va`: never zero, different for every
/// word and page.
pub(crate) fn kept_word(va: u64, w: u64) -> u64 {
    mm::rng::mix64(va ^ (w << 48) ^ 0xc0_4ac7) | 1
}

/// Runs `f` in a task of `space` and returns what it returned.
pub(crate) fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "compaction test", f)?.join()?)
}

/// Memory fragmented as the module doc says: one space holding one
/// 4 KiB page in every 2 MiB physical block it used, each filled with
/// [`kept_word`]s, and the free 2 MiB blocks left taken as ballast.
pub(crate) struct Fragmented {
    pub space: Arc<AddressSpace>,
    /// The kept pages' addresses (one per block), in address order.
    pub kept: Vec<u64>,
    /// The order-9 blocks taken so that none is free.
    ballast: Vec<PhysAddr>,
}

impl Fragmented {
    /// Fills free memory down to `high + FILL_MARGIN` pages, keeps one
    /// page per 2 MiB block, takes the free 2 MiB blocks left.
    pub(crate) fn new() -> Result<Fragmented, String> {
        let frames = memory::frame_allocator();
        let space = AddressSpace::new()?;
        let high = frames.watermarks().high;
        let pages = memory::nr_free_frames().saturating_sub(high + FILL_MARGIN);
        // The page tables take 1/512 more.
        let pages = pages - pages / 512 - 64;
        let len = pages * PAGE;
        let base = space.mmap(len, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
        space.madvise(base, len, Advice::NoHugePage).map_err(|e| format!("madvise: {e:?}"))?;
        let base = base.as_u64();
        // Every page table first (one page per 2 MiB of addresses), so
        // that they sit together in a few blocks instead of one in every
        // block the data pages fill.
        run_in(&space, move || {
            (0..pages).step_by(512).for_each(|p| uaccess::write_u64(base + p * PAGE, p + 1));
            (0..pages).filter(|p| p % 512 != 0).for_each(|p| uaccess::write_u64(base + p * PAGE, p + 1));
        })?;
        // One page per physical block stays; runs of the others go.
        let mut blocks = BTreeSet::new();
        let mut kept = Vec::new();
        let mut run_start = None;
        let drop_run = |from: u64, to: u64| -> Result<(), String> {
            space
                .madvise(VirtAddr::new(base + from * PAGE), (to - from) * PAGE, Advice::DontNeed)
                .map_err(|e| format!("madvise(DONTNEED): {e:?}"))
        };
        for p in 0..pages {
            let va = base + p * PAGE;
            let Ok((pfn, order, _)) = space.folio_at(VirtAddr::new(va)) else {
                // Not in memory: reclaim took it to swap while memory
                // was being filled (kswapd wakes at `low`, and at 4 CPUs
                // the other CPUs' allocations can reach it). It goes
                // with the dropped pages.
                run_start.get_or_insert(p);
                continue;
            };
            if order != 0 {
                return Err(format!("{va:#x}: a folio of order {order} in a range with THP off"));
            }
            if blocks.insert(pfn.as_u64() >> 9) {
                kept.push(va);
                if let Some(s) = run_start.take() {
                    drop_run(s, p)?;
                }
            } else if run_start.is_none() {
                run_start = Some(p);
            }
        }
        if let Some(s) = run_start {
            drop_run(s, pages)?;
        }
        let ballast = take_free_huge_blocks();
        let fill = kept.clone();
        run_in(&space, move || {
            for &va in &fill {
                (0..WORDS).for_each(|w| uaccess::write_u64(va + w * 8, kept_word(va, w)));
            }
        })?;
        if frames.has_free_block(mm::thp::HPAGE_ORDER) {
            return Err(String::from("a free 2 MiB block is left after the fragmentation"));
        }
        Ok(Fragmented { space, kept, ballast })
    }

    /// The first kept page whose bytes are not its own, if any.
    pub(crate) fn damaged(&self) -> Result<Option<u64>, String> {
        let kept = self.kept.clone();
        run_in(&self.space, move || {
            kept.iter()
                .copied()
                .find(|&va| (0..WORDS).any(|w| uaccess::read_u64(va + w * 8) != kept_word(va, w)))
        })
    }

    /// The frames the kept pages are in now (`None`: in swap just now).
    pub(crate) fn pfns(&self) -> Vec<Option<mm::Pfn>> {
        self.kept.iter().map(|&va| self.space.folio_at(VirtAddr::new(va)).ok().map(|f| f.0)).collect()
    }

    /// Gives the ballast back; the space goes with the last reference.
    pub(crate) fn release(self) {
        for pa in self.ballast {
            memory::free_frames(pa, mm::thp::HPAGE_ORDER);
        }
    }
}

/// Takes every free 2 MiB block (as raw order-9 blocks) while that leaves
/// free memory above `high` (kswapd stays asleep).
fn take_free_huge_blocks() -> Vec<PhysAddr> {
    let frames = memory::frame_allocator();
    let high = frames.watermarks().high;
    let mut taken = Vec::new();
    while frames.has_free_block(mm::thp::HPAGE_ORDER) && memory::nr_free_frames() > high + 2 * 512 {
        match memory::alloc_frames(mm::thp::HPAGE_ORDER) {
            Ok(pa) => taken.push(pa),
            Err(_) => break,
        }
    }
    taken
}

/// Blocks of `[base, base + n * HUGE)` mapped by a 2 MiB leaf.
pub(crate) fn nr_huge_leaves(space: &AddressSpace, base: u64, n: u64) -> Result<u64, String> {
    let mut huge = 0;
    for b in 0..n {
        if let Some((Level::Pmd, _)) = leaf_at(space, base + b * HUGE)? {
            huge += 1;
        }
    }
    Ok(huge)
}

fn thp_faults_reach_90_percent_through_compaction(_: &TestEnv<'_>) -> Result<(), String> {
    crate::vm::compaction::quiesce();
    let frag = Fragmented::new()?;
    let result = (|| {
        let space = frag.space.clone();
        // Half as many THPs as blocks hold a kept page: the other half
        // (with the blocks compaction cannot empty) takes the pages moved.
        let n = (frag.kept.len() as u64 / 2).min(128);
        if n < 8 {
            return Err(format!("only {} blocks with a kept page: too little memory", frag.kept.len()));
        }
        let before = crate::vm::compaction::counts();
        let pfns = frag.pfns();
        let base = space.mmap(n * HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
        space.madvise(base, n * HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
        let base = base.as_u64();
        run_in(&space, move || (0..n).for_each(|b| uaccess::write_u64(base + b * HUGE + 8, b + 7)))?;
        let huge = nr_huge_leaves(&space, base, n)?;
        // A kcompactd pass counts its pages when it ends: at one CPU the
        // faults can finish while one is half-way (it yields between
        // blocks), having moved the kept pages the direct passes then
        // found gone. Wait for it before reading the counters.
        crate::vm::compaction::quiesce();
        let after = crate::vm::compaction::counts();
        let now = frag.pfns();
        let moved = now.iter().zip(&pfns).filter(|(a, b)| a != b).count();
        let swapped = now.iter().zip(&pfns).filter(|(a, b)| a.is_none() && b.is_some()).count();
        crate::println!(
            "compaction: {} blocks with one page kept; {n} THP faults: {huge} huge ({}%), {moved} kept pages \
             moved ({swapped} to swap); direct compactions {} ({} succeeded), kcompactd passes {}, pages \
             migrated {}",
            frag.kept.len(),
            huge * 100 / n,
            after.compact_stall - before.compact_stall,
            after.compact_success - before.compact_success,
            after.compact_daemon_wake - before.compact_daemon_wake,
            after.compact_migrated - before.compact_migrated
        );
        if huge * 10 < n * 9 {
            return Err(format!("THP coverage {huge} of {n} blocks, below 90%: {before} -> {after}"));
        }
        if moved == 0 || after.compact_migrated == before.compact_migrated {
            return Err(format!("no kept page moved: the blocks were not rebuilt by compaction ({after})"));
        }
        if after.thp_fault_alloc - before.thp_fault_alloc < huge {
            return Err(format!("thp_fault_alloc counted {before} -> {after} for {huge} huge faults"));
        }
        if let Some(va) = frag.damaged()? {
            return Err(format!("the kept page at {va:#x} lost bytes"));
        }
        let bad = run_in(&space, move || (0..n).find(|&b| uaccess::read_u64(base + b * HUGE + 8) != b + 7))?;
        if let Some(b) = bad {
            return Err(format!("THP block {b} lost its write"));
        }
        crate::vm::compaction::quiesce();
        space.check_at_rest().map(drop)
    })();
    frag.release();
    result
}

fn kcompactd_is_woken_by_huge_failures_and_rebuilds_blocks(_: &TestEnv<'_>) -> Result<(), String> {
    const PATIENCE_MS: u64 = 5_000;
    const ROUNDS: u64 = 4;
    crate::vm::compaction::quiesce();
    let frag = Fragmented::new()?;
    let late = Arc::new(spin::Mutex::new(Vec::new()));
    let result = (|| {
        let space = frag.space.clone();
        let frames = memory::frame_allocator();
        // A range with no advice: huge-page eligible, but its faults do
        // not stall for compaction (`Defrag::Madvise`).
        let base = space.mmap((ROUNDS + 1) * HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        let before = crate::vm::compaction::counts();
        // A round: a THP fault in the next block fails for want of a
        // free 2 MiB block and wakes kcompactd, which rebuilds one. A
        // block freed meanwhile by something else (a finished task's
        // stack goes back a moment after the task) is taken, in the
        // faulting task, right before the fault; one freed after it may
        // still be what kcompactd finds, with nothing to move: then the
        // next round. Each round takes what a round frees. (A block made
        // by kcompactd and then taken, or a pass that moved pages and made
        // none, also goes on to the next round.)
        let mut block = 0;
        let mut waited = 0;
        let rebuilt = || {
            crate::vm::compaction::counts().compact_migrated > before.compact_migrated
                && frames.has_free_block(mm::thp::HPAGE_ORDER)
        };
        while block < ROUNDS && !rebuilt() {
            let (l, va) = (late.clone(), base + block * HUGE);
            let migrated = crate::vm::compaction::counts().compact_migrated;
            let free_after_fault = run_in(&space, move || {
                l.lock().extend(take_free_huge_blocks());
                uaccess::write_u64(va, 1);
                memory::frame_allocator().has_free_block(mm::thp::HPAGE_ORDER)
            })?;
            if nr_huge_leaves(&space, va, 1)? != 0 {
                return Err(format!("round {block}: a THP fault found a free 2 MiB block"));
            }
            // At one CPU the wake can run kcompactd's whole pass before
            // the faulting task looks: a block it made is what the test
            // waits for. One that appeared while kcompactd moved nothing
            // came from elsewhere, too late to be taken.
            if free_after_fault && crate::vm::compaction::counts().compact_migrated == migrated {
                return Err(format!(
                    "round {block}: a free 2 MiB block appeared right after the THP fault, not made by kcompactd"
                ));
            }
            waited = 0;
            while !frames.has_free_block(mm::thp::HPAGE_ORDER) && waited < PATIENCE_MS {
                sched::sleep_ms(5);
                waited += 5;
            }
            block += 1;
        }
        let after = crate::vm::compaction::counts();
        crate::println!(
            "compaction: kcompactd made a free 2 MiB block in {waited} ms (round {block}): passes {}, pages \
             migrated {}",
            after.compact_daemon_wake - before.compact_daemon_wake,
            after.compact_migrated - before.compact_migrated
        );
        if !rebuilt() {
            return Err(format!(
                "kcompactd rebuilt no free 2 MiB block in {block} rounds: {before} -> {after}"
            ));
        }
        if after.compact_daemon_wake == before.compact_daemon_wake {
            return Err(format!("pages moved, but not by kcompactd: {before} -> {after}"));
        }
        if after.compact_stall != before.compact_stall {
            return Err(format!("a fault without MADV_HUGEPAGE compacted directly: {before} -> {after}"));
        }
        // The next fault in the range maps a THP.
        let va = base + block * HUGE;
        run_in(&space, move || uaccess::write_u64(va, 2))?;
        if nr_huge_leaves(&space, va, 1)? != 1 {
            return Err(String::from("the fault after kcompactd's pass found no 2 MiB block"));
        }
        if let Some(va) = frag.damaged()? {
            return Err(format!("the kept page at {va:#x} lost bytes"));
        }
        crate::vm::compaction::quiesce();
        space.check_at_rest().map(drop)
    })();
    late.lock().drain(..).for_each(|pa| memory::free_frames(pa, mm::thp::HPAGE_ORDER));
    frag.release();
    result
}
