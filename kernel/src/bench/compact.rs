//! The `compact` benchmark (profile `migrate`, BENCHMARKS.md): memory
//! filled with 4 KiB pages, all but one movable page freed in every 2 MiB
//! physical block (the fragmentation of `crate::tests::compaction`), then
//! 256 MiB faulted in a `MADV_HUGEPAGE` range, one write per 2 MiB.
//!
//! - `compact`: 2 MiB blocks rebuilt per second: the THPs the faults
//!   mapped beyond the free 2 MiB blocks there were before them (each had
//!   to be rebuilt by compaction: direct, in the fault, or kcompactd's),
//!   over the time of the faulting loop;
//! - `compact_thp_coverage_before`: the share of the 128 blocks that the
//!   free 2 MiB blocks left by the fragmentation could have covered;
//! - `compact_thp_coverage_after`: the share the faults mapped with 2 MiB
//!   leaves;
//! - `compact_pages_migrated`, `compact_stalls`: compaction's counters
//!   over the faults.
//!
//! Every kept page and every THP's byte is checked afterwards.

use super::{per_second, report, timed, Ledger, HUGE, MIB, RW};
use crate::tests::compaction::{nr_huge_leaves, run_in, Fragmented};
use crate::vm::space::Advice;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use mm::compaction::Fragmentation;

/// The `compact` benchmark (module doc).
pub(super) fn compact() -> Result<(), String> {
    const LEN: u64 = 256 * MIB;
    const BLOCKS: u64 = LEN / HUGE;
    crate::vm::compaction::quiesce();
    let ledger = Ledger::open();
    let frag = Fragmented::new()?;
    let space = frag.space.clone();
    let result = (|| {
        let free_huge = Fragmentation::of(crate::memory::frame_allocator()).nr_free_huge_blocks();
        let base = space.mmap(LEN, HUGE, RW).map_err(|e| format!("compact: mmap: {e:?}"))?;
        space.madvise(base, LEN, Advice::HugePage).map_err(|e| format!("compact: madvise: {e:?}"))?;
        let base = base.as_u64();
        let before = crate::vm::compaction::counts();
        let ((), span) = run_in(&space, move || {
            timed(|| (0..BLOCKS).for_each(|b| uaccess::write_u64(base + b * HUGE + 16, b + 3)))
        })?;
        let after = crate::vm::compaction::counts();
        let huge = nr_huge_leaves(&space, base, BLOCKS)?;
        if let Some(va) = frag.damaged()? {
            return Err(format!("compact: the kept page at {va:#x} lost bytes"));
        }
        let bad =
            run_in(&space, move || (0..BLOCKS).find(|&b| uaccess::read_u64(base + b * HUGE + 16) != b + 3))?;
        if let Some(b) = bad {
            return Err(format!("compact: block {b} lost its write"));
        }
        let rebuilt = huge.saturating_sub(free_huge);
        report("compact", per_second(rebuilt, span.ns()), "blocks/s");
        report("compact_thp_coverage_before", 100.0 * free_huge.min(BLOCKS) as f64 / BLOCKS as f64, "%");
        report("compact_thp_coverage_after", 100.0 * huge as f64 / BLOCKS as f64, "%");
        report("compact_pages_migrated", (after.compact_migrated - before.compact_migrated) as f64, "pages");
        report("compact_stalls", (after.compact_stall - before.compact_stall) as f64, "stalls");
        Ok(())
    })();
    frag.release();
    crate::vm::compaction::quiesce();
    result.and_then(|()| ledger.settle("compact", alloc::vec![space]))
}
