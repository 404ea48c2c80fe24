//! Compaction: rebuilding free 2 MiB blocks out of fragmented memory by
//! moving movable pages out of the low end of a zone into free frames at its
//! high end (mm-reference §11).
//!
//! ## The two scanners
//!
//! A zone (one node's frames, `[start, end)`) is cut into **pageblocks** of
//! [`PAGEBLOCK_NR`] frames (2 MiB, the order of a huge page). One pass runs
//! two scanners towards each other, a pageblock at a time:
//!
//! ```text
//!   start                                                           end
//!   | migrate scanner -->  |  not scanned yet  |  <-- free scanner    |
//!   [ blocks emptied ...   ][ migrate_pfn ... free_end )[ ... blocks filled ]
//! ```
//!
//! - The **migrate scanner** looks at one block from the low end. It first
//!   classifies every frame without taking anything: free (a buddy block),
//!   a movable folio, or something that cannot move. A folio is movable
//!   when it is anonymous, on the LRU lists, not pinned
//!   ([`Folio::maybe_pinned`]), not locked by anyone, and smaller than the
//!   order compaction aims for; a huge folio is looked at **whole** (its
//!   512 frames at once) and, when the aim is a 2 MiB block, never moved:
//!   moving it would need another free 2 MiB block, which is what
//!   compaction makes (for an order-10 aim it moves, whole, into a free
//!   order-9 block). One frame that cannot move (a
//!   raw frame: a page table, the heap; a reserved frame; a pinned, locked
//!   or non-anonymous folio; a hole) makes the whole block **skipped**:
//!   emptying the rest of it would make no free block, only work. Otherwise
//!   it isolates the block's movable folios from the LRU lists
//!   ([`LruLists::isolate_folio`], one reference each) and moves them one
//!   by one.
//! - The **free scanner** walks blocks from the high end down and isolates
//!   every free buddy block in one ([`FrameAllocator::isolate_free_block`])
//!   smaller than the order compaction aims for, keeping them as raw blocks
//!   in a private list. A destination of the order of the folio being moved
//!   is cut from the smallest fitting one (buddy halves go back into the
//!   list) and made a folio (`UnpublishedFolio::prep`). It runs only when
//!   the list has nothing that fits.
//!
//! The two never look at the same block: the free scanner only takes
//! blocks at or above `migrate_pfn` (the first block the migrate scanner
//! has not claimed), and the pass ends when they **meet**
//! (`migrate_pfn >= free_end`). It also ends when the **goal** is reached
//! ([`Goal::Order`]: a free block of that order is on the lists) or the
//! **budget** is spent ([`Budget`]: pageblocks each scanner may look at).
//! Whatever is still isolated goes back: folios to the list they came from,
//! unused free blocks to the allocator (where they merge again).
//!
//! Where a pass stopped is remembered per zone ([`CompactZone`]), so the
//! next pass goes on from there instead of rescanning the blocks it just
//! emptied or filled; a block left half-moved for want of destinations is
//! taken again; the free scanner resumes at the highest block it gave free
//! frames back to, so a half-filled destination block is used up first. A pass that met resets both to the zone's ends.
//! [`Goal::Whole`] always starts from the ends.
//!
//! ## Suitability ([`suitable`])
//!
//! Before a pass for an order: **skip** when an allocation of that order
//! would already succeed (a free block of it exists and the watermark
//! allows it: [`Unsuitable::AlreadyFree`]), or when too little is free for
//! compaction to be worth it ([`Unsuitable::TooLittleFree`]: fewer than
//! `low + 2 * 2^order` pages; the moved pages need free destinations, and
//! the result must still pass the allocator's `min` check). Memory that is
//! short is reclaim's job, not compaction's.
//!
//! ## Moving one folio: the host
//!
//! The move itself is not done here: [`CompactionHost::migrate`] takes the
//! isolated source and the destination block and returns the new folio
//! (`mm::migrate::migrate_folio` in the kernel: every mapping through the
//! reverse map becomes a migration entry, the content is copied, the
//! entries become mappings of the new folio; the TLB is flushed by it
//! before the copy). Compaction holds **no lock** across the call: only the
//! isolation reference on the source and the ownership of the destination.
//! After a success the new folio goes onto the list the source was on
//! ([`LruLists::putback`]) and compaction drops its reference; after a
//! failure the source goes back unchanged and the destination back into
//! the free list. The old frames are freed by whoever drops the old
//! folio's last reference, after the flush that migration did, so
//! compaction owes no flush of its own.
//!
//! ## Callers and policy
//!
//! - **kcompactd**, one per node, is woken when an order-9 allocation fails
//!   for want of a free block ([`wants_kcompactd`], [`KcompactdWake`], the
//!   same no-lost-wake-up protocol as kswapd's) and runs unbudgeted passes
//!   for that order ([`Request::kcompactd`]).
//! - **Direct compaction** runs in a THP fault that found no free 2 MiB
//!   block, when the `defrag` policy lets that fault stall
//!   ([`thp_fault_compaction`]: by default only in a `MADV_HUGEPAGE` range),
//!   with a small budget ([`THP_FAULT_BUDGET`]), and not again right after
//!   it failed ([`Deferral`]; a pass that only spent its budget has not
//!   failed). It runs without the address space's lock
//!   (migration takes the locks of every space mapping a folio).
//! - [`Goal::Whole`] compacts the whole zone (a test, the `compact`
//!   benchmark, a "compact everything" request).
//!
//! [`Fragmentation`] and [`ThpCoverage`] measure the result: free 2 MiB
//! blocks and the largest free order, and how much of a range is mapped by
//! 2 MiB leaves.
//!
//! ## Counters ([`CompactStats`])
//!
//! Named after Linux's `/proc/vmstat`: `compact_stall`, `compact_fail`,
//! `compact_success` (direct passes only), `compact_migrate_scanned`,
//! `compact_free_scanned` (frames each scanner looked at, every caller),
//! `compact_migrated` and `compact_migrate_failed` (pages compaction asked
//! to move and whose move succeeded or failed: compaction's own share of
//! what migration counts), `compact_daemon_wake` (kcompactd passes), and
//! the THP fault's `thp_fault_alloc` and `thp_fault_fallback`, which the
//! fault path counts here so that one structure says what THP allocation
//! and compaction achieved together.
//!
//! ## Locks
//!
//! A pass takes, one at a time and never two together: the frame
//! allocator's lock (inside its methods, for one block each), the LRU
//! lists' lock (inside [`LruLists::isolate_folio`] and
//! [`LruLists::putback`]); whatever [`CompactionHost::migrate`] takes (the
//! folio lock, then the address-space locks of the folio's family, as
//! reclaim does) is taken with nothing of compaction's held. Scanning reads
//! descriptors without a lock: what it sees is a hint, and every decision
//! that matters is taken again under the lock that owns it (a free block
//! under the allocator's, LRU membership under the lists'). The remembered
//! scanner positions and the counters are atomics; two passes on one zone
//! at once (kcompactd and a fault) are correct, each owning what it
//! isolated, and only share the positions as hints. Task context: a pass
//! may sleep in `migrate` and yields between pageblocks
//! ([`CompactionHost::relax`]).

use crate::addr::{Pfn, VirtAddr};
use crate::folio::{folio_of, Folio, FolioMapping, UnpublishedFolio};
use crate::frame::{AllocError, FrameAllocator, IsolateError, MAX_ORDER, NR_ORDERS};
use crate::lru::{LruList, LruLists};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{Decoded, Level, PageSize, PageTable, PageTableFormat, TableMemory};
use crate::thp::{HPAGE_ORDER, HPAGE_SIZE};
use crate::vma::ThpMode;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The order of a pageblock: 2 MiB of 4 KiB frames, a huge page.
pub const PAGEBLOCK_ORDER: u8 = HPAGE_ORDER;
/// Frames in a pageblock.
pub const PAGEBLOCK_NR: u64 = 1 << PAGEBLOCK_ORDER;

// ---------------------------------------------------------------- the host

/// Why [`CompactionHost::migrate`] did not move a folio: the host's reason,
/// and the destination, unused, for the next folio or the allocator.
pub struct MigrateFailed<E> {
    pub why: E,
    pub dst: UnpublishedFolio<'static>,
}

/// What compaction needs from the kernel: the frames and lists of the zone,
/// the move of one folio, the free path, and a way to yield.
pub trait CompactionHost {
    /// Why a move failed (`mm::migrate`'s error in the kernel).
    type Error: fmt::Debug;

    /// The allocator the zone's frames belong to.
    fn frames(&self) -> &FrameAllocator;
    /// The LRU lists of the zone's folios.
    fn lru(&self) -> &LruLists;
    /// Moves `src` to the frames of `dst`, a prepared, unpublished folio of
    /// the same order that compaction took from the free scanner's list.
    ///
    /// On entry `src` is isolated (off the LRU lists, `Lru` clear),
    /// compaction holds one reference on it (isolation's), and holds no
    /// lock. On success the host returns the new folio, off the lists, with
    /// one reference for compaction in place of the source's; the source's
    /// isolation reference is consumed (the old frames are freed when its
    /// last reference goes, after the flush the move did). On failure the
    /// source is unchanged (mapped as before, still isolated, compaction's
    /// reference still held) and `dst` comes back unpublished, with a
    /// count of 0: compaction undoes its preparation.
    fn migrate(
        &self,
        src: Folio<'static>,
        dst: UnpublishedFolio<'static>,
    ) -> Result<Folio<'static>, MigrateFailed<Self::Error>>;
    /// Drops one reference on `folio`; when it was the last, takes it off
    /// the LRU lists and frees it (the free path).
    fn put(&self, folio: Folio<'static>);
    /// Called between pageblocks: the kernel yields the CPU.
    fn relax(&self) {}
}

// ---------------------------------------------------------------- requests

/// What a pass aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Stop as soon as a free block of this order (or larger) is on the
    /// lists. Suitability is checked first.
    Order(u8),
    /// The whole zone, until the scanners meet, from both ends; no
    /// suitability check.
    Whole,
}

/// How far one pass may go: pageblocks each scanner may look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub migrate_blocks: u64,
    pub free_blocks: u64,
}

impl Budget {
    /// No bound but the zone.
    pub const UNLIMITED: Budget = Budget { migrate_blocks: u64::MAX, free_blocks: u64::MAX };
}

/// The direct compaction a THP fault may do: 8 pageblocks (16 MiB) for the
/// migrate scanner, 32 for the free scanner. At one folio or a few per
/// block that is a few dozen page copies; a block full of small folios is
/// 512 copies (2 MiB), which stays well under the cost of the 4 KiB faults
/// a THP saves. The free scanner gets more because blocks near the top may
/// hold little free memory.
pub const THP_FAULT_BUDGET: Budget = Budget { migrate_blocks: 8, free_blocks: 32 };

/// Who asked for a pass, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An allocation that stalls for it (a THP fault): `compact_stall`,
    /// `compact_success`, `compact_fail` count it.
    Direct,
    /// kcompactd: `compact_daemon_wake`.
    Kcompactd,
    /// Anything else (a test, a benchmark, "compact everything").
    Manual,
}

/// One pass's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub goal: Goal,
    pub budget: Budget,
    pub caller: Caller,
}

impl Request {
    /// A direct compaction for a THP fault: order 9, [`THP_FAULT_BUDGET`].
    pub const fn thp_fault() -> Request {
        Request { goal: Goal::Order(HPAGE_ORDER), budget: THP_FAULT_BUDGET, caller: Caller::Direct }
    }
    /// kcompactd's pass for `order`, unbudgeted.
    pub const fn kcompactd(order: u8) -> Request {
        Request { goal: Goal::Order(order), budget: Budget::UNLIMITED, caller: Caller::Kcompactd }
    }
    /// The whole zone, unbudgeted.
    pub const fn whole() -> Request {
        Request { goal: Goal::Whole, budget: Budget::UNLIMITED, caller: Caller::Manual }
    }
}

// ---------------------------------------------------------------- suitability

/// Why a pass for an order would not be worth it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsuitable {
    /// An allocation of the order would succeed now.
    AlreadyFree,
    /// Fewer than `low + 2 * 2^order` pages are free: reclaim first.
    TooLittleFree,
    /// The order is above [`MAX_ORDER`] (the caller's mistake).
    BadOrder,
}

/// Whether compaction for `order` is worth a pass now (module doc).
pub fn suitable(frames: &FrameAllocator, order: u8) -> Result<(), Unsuitable> {
    if order > MAX_ORDER {
        return Err(Unsuitable::BadOrder);
    }
    let wm = frames.watermarks();
    let free = frames.nr_free_pages();
    let nr = 1u64 << order;
    if frames.has_free_block(order) && free >= wm.min + nr {
        return Err(Unsuitable::AlreadyFree);
    }
    if free < wm.low + 2 * nr {
        return Err(Unsuitable::TooLittleFree);
    }
    Ok(())
}

// ---------------------------------------------------------------- counters

/// The compaction and THP-allocation counters (module doc); the kernel
/// keeps one, tests their own.
#[derive(Debug, Default)]
pub struct CompactStats {
    pub compact_stall: AtomicU64,
    pub compact_fail: AtomicU64,
    pub compact_success: AtomicU64,
    pub compact_migrate_scanned: AtomicU64,
    pub compact_free_scanned: AtomicU64,
    pub compact_migrated: AtomicU64,
    pub compact_migrate_failed: AtomicU64,
    pub compact_daemon_wake: AtomicU64,
    pub thp_fault_alloc: AtomicU64,
    pub thp_fault_fallback: AtomicU64,
}

/// A snapshot of [`CompactStats`], printed as `name value` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactCounts {
    pub compact_stall: u64,
    pub compact_fail: u64,
    pub compact_success: u64,
    pub compact_migrate_scanned: u64,
    pub compact_free_scanned: u64,
    pub compact_migrated: u64,
    pub compact_migrate_failed: u64,
    pub compact_daemon_wake: u64,
    pub thp_fault_alloc: u64,
    pub thp_fault_fallback: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl CompactStats {
    /// All zero.
    pub const fn new() -> CompactStats {
        CompactStats {
            compact_stall: AtomicU64::new(0),
            compact_fail: AtomicU64::new(0),
            compact_success: AtomicU64::new(0),
            compact_migrate_scanned: AtomicU64::new(0),
            compact_free_scanned: AtomicU64::new(0),
            compact_migrated: AtomicU64::new(0),
            compact_migrate_failed: AtomicU64::new(0),
            compact_daemon_wake: AtomicU64::new(0),
            thp_fault_alloc: AtomicU64::new(0),
            thp_fault_fallback: AtomicU64::new(0),
        }
    }

    /// The fault path mapped a huge folio.
    pub fn count_thp_fault_alloc(&self) {
        add(&self.thp_fault_alloc, 1);
    }

    /// The fault path fell back to 4 KiB in a huge-page eligible range.
    pub fn count_thp_fault_fallback(&self) {
        add(&self.thp_fault_fallback, 1);
    }

    /// Every counter, each read on its own (a pass running meanwhile may
    /// be half counted).
    pub fn snapshot(&self) -> CompactCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CompactCounts {
            compact_stall: r(&self.compact_stall),
            compact_fail: r(&self.compact_fail),
            compact_success: r(&self.compact_success),
            compact_migrate_scanned: r(&self.compact_migrate_scanned),
            compact_free_scanned: r(&self.compact_free_scanned),
            compact_migrated: r(&self.compact_migrated),
            compact_migrate_failed: r(&self.compact_migrate_failed),
            compact_daemon_wake: r(&self.compact_daemon_wake),
            thp_fault_alloc: r(&self.thp_fault_alloc),
            thp_fault_fallback: r(&self.thp_fault_fallback),
        }
    }
}

impl fmt::Display for CompactCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compact_stall {} compact_fail {} compact_success {} compact_migrate_scanned {} \
             compact_free_scanned {} compact_migrated {} compact_migrate_failed {} \
             compact_daemon_wake {} thp_fault_alloc {} thp_fault_fallback {}",
            self.compact_stall,
            self.compact_fail,
            self.compact_success,
            self.compact_migrate_scanned,
            self.compact_free_scanned,
            self.compact_migrated,
            self.compact_migrate_failed,
            self.compact_daemon_wake,
            self.thp_fault_alloc,
            self.thp_fault_fallback
        )
    }
}

// ---------------------------------------------------------------- a pass

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not started: suitability said no.
    Skipped(Unsuitable),
    /// The goal is reached: a free block of the order is on the lists.
    Success,
    /// The scanners met: the zone was scanned through. (For
    /// [`Goal::Order`], without reaching the goal.)
    Complete,
    /// The budget ran out first.
    BudgetSpent,
    /// The free scanner could take no more free frames without going
    /// below the `min` watermark.
    NoDestination,
}

/// What one pass did (its share of the counters, and more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub outcome: Outcome,
    /// Pageblocks the migrate scanner looked at.
    pub nr_migrate_blocks: u64,
    /// Of those, skipped because something in them cannot move.
    pub nr_blocks_skipped: u64,
    /// Pageblocks the free scanner looked at.
    pub nr_free_blocks: u64,
    /// Frames the migrate scanner looked at.
    pub nr_migrate_scanned: u64,
    /// Frames the free scanner looked at.
    pub nr_free_scanned: u64,
    /// Free frames the free scanner isolated.
    pub nr_free_isolated: u64,
    /// Folios isolated from the LRU lists to be moved.
    pub nr_isolated: u64,
    /// Pages moved.
    pub nr_migrated: u64,
    /// Pages whose move failed.
    pub nr_migrate_failed: u64,
}

impl PassReport {
    fn new(outcome: Outcome) -> PassReport {
        PassReport {
            outcome,
            nr_migrate_blocks: 0,
            nr_blocks_skipped: 0,
            nr_free_blocks: 0,
            nr_migrate_scanned: 0,
            nr_free_scanned: 0,
            nr_free_isolated: 0,
            nr_isolated: 0,
            nr_migrated: 0,
            nr_migrate_failed: 0,
        }
    }
}

/// One zone as compaction sees it: its pageblocks, and where the last
/// pass stopped (module doc).
pub struct CompactZone {
    /// First frame of the first pageblock (the zone's start rounded down).
    start: u64,
    /// End of the last pageblock (the zone's end rounded up).
    end: u64,
    /// The next pageblock the migrate scanner takes.
    migrate_pfn: AtomicU64,
    /// The end of the next pageblock the free scanner takes (it goes down).
    free_end: AtomicU64,
}

/// What the migrate scanner found in a block.
enum BlockScan {
    /// Something cannot move: leave the block alone.
    Skip,
    /// These folios (heads) may move; everything else is free.
    Movable(Vec<Folio<'static>>),
}

/// Rounds `pfn` down to its pageblock.
fn block_of(pfn: u64) -> u64 {
    pfn & !(PAGEBLOCK_NR - 1)
}

impl CompactZone {
    /// The zone of the frames `[start, end)`; nothing scanned yet.
    pub const fn new(start: Pfn, end: Pfn) -> CompactZone {
        let start = start.as_u64() & !(PAGEBLOCK_NR - 1);
        let end = (end.as_u64() + PAGEBLOCK_NR - 1) & !(PAGEBLOCK_NR - 1);
        CompactZone { start, end, migrate_pfn: AtomicU64::new(start), free_end: AtomicU64::new(end) }
    }

    /// The zone of every frame of `memmap`.
    pub fn of_memmap(memmap: &Memmap) -> CompactZone {
        CompactZone::new(memmap.base_pfn(), memmap.end_pfn())
    }

    /// Where the next pass starts: `(migrate_pfn, free_end)`.
    pub fn positions(&self) -> (Pfn, Pfn) {
        (Pfn::new(self.migrate_pfn.load(Ordering::Relaxed)), Pfn::new(self.free_end.load(Ordering::Relaxed)))
    }

    /// Forgets where the last pass stopped.
    pub fn reset(&self) {
        self.migrate_pfn.store(self.start, Ordering::Relaxed);
        self.free_end.store(self.end, Ordering::Relaxed);
    }

    /// Runs one pass (module doc) and counts it in `stats`.
    pub fn compact<H: CompactionHost>(&self, host: &H, stats: &CompactStats, request: Request) -> PassReport {
        let frames = host.frames();
        let goal_order = match request.goal {
            Goal::Order(order) => {
                if let Err(why) = suitable(frames, order) {
                    return PassReport::new(Outcome::Skipped(why));
                }
                Some(order)
            }
            Goal::Whole => None,
        };
        match request.caller {
            Caller::Direct => add(&stats.compact_stall, 1),
            Caller::Kcompactd => add(&stats.compact_daemon_wake, 1),
            Caller::Manual => {}
        }
        let (migrate_pfn, free_end) = match request.goal {
            Goal::Whole => (self.start, self.end),
            Goal::Order(_) => {
                // Hints from the last pass, kept inside the zone.
                let m = self.migrate_pfn.load(Ordering::Relaxed).clamp(self.start, self.end);
                let f = self.free_end.load(Ordering::Relaxed).clamp(self.start, self.end);
                (block_of(m), block_of(f))
            }
        };
        let mut pass = Pass {
            host,
            frames,
            memmap: frames.memmap(),
            // The free scanner takes nothing of this order or larger:
            // those are the goal. `Whole` aims at the largest blocks.
            below_order: goal_order.unwrap_or(PAGEBLOCK_ORDER),
            budget: request.budget,
            migrate_pfn,
            free_end,
            free: Vec::new(),
            free_stopped: None,
            report: PassReport::new(Outcome::Complete),
        };
        let outcome = pass.run(goal_order);
        pass.report.outcome = outcome;
        let resume_free = pass.release_free();
        let report = pass.report;
        if outcome == Outcome::Complete || request.goal == Goal::Whole {
            self.reset();
        } else {
            self.migrate_pfn.store(pass.migrate_pfn, Ordering::Relaxed);
            self.free_end.store(pass.free_end.max(resume_free), Ordering::Relaxed);
        }
        add(&stats.compact_migrate_scanned, report.nr_migrate_scanned);
        add(&stats.compact_free_scanned, report.nr_free_scanned);
        add(&stats.compact_migrated, report.nr_migrated);
        add(&stats.compact_migrate_failed, report.nr_migrate_failed);
        if request.caller == Caller::Direct {
            if outcome == Outcome::Success {
                add(&stats.compact_success, 1);
            } else {
                add(&stats.compact_fail, 1);
            }
        }
        report
    }
}

/// The state of one pass.
struct Pass<'h, H: CompactionHost> {
    host: &'h H,
    frames: &'h FrameAllocator,
    memmap: &'static Memmap,
    below_order: u8,
    budget: Budget,
    /// The next pageblock the migrate scanner takes.
    migrate_pfn: u64,
    /// The end of the next pageblock the free scanner takes.
    free_end: u64,
    /// Free blocks isolated and not used yet: `(first pfn, order)`, raw.
    free: Vec<(u64, u8)>,
    /// Why the free scanner cannot go on (it met the migrate scanner, ran
    /// out of budget, or reached the reserve), as the pass's outcome.
    free_stopped: Option<Outcome>,
    report: PassReport,
}

impl<H: CompactionHost> Pass<'_, H> {
    fn run(&mut self, goal_order: Option<u8>) -> Outcome {
        loop {
            if goal_order.is_some_and(|order| self.frames.has_free_block(order)) {
                return Outcome::Success;
            }
            if self.migrate_pfn >= self.free_end {
                return Outcome::Complete;
            }
            if self.report.nr_migrate_blocks >= self.budget.migrate_blocks {
                return Outcome::BudgetSpent;
            }
            let block = self.migrate_pfn;
            self.migrate_pfn += PAGEBLOCK_NR;
            self.report.nr_migrate_blocks += 1;
            if let BlockScan::Movable(folios) = self.scan_block(block) {
                let isolated = self.isolate(folios);
                if let Some(stop) = self.move_all(isolated) {
                    // Out of destinations half-way: the next pass takes
                    // this block again.
                    self.migrate_pfn = block;
                    return stop;
                }
            } else {
                self.report.nr_blocks_skipped += 1;
            }
            self.host.relax();
        }
    }

    /// The migrate scanner's first look at `block`: what is there, without
    /// taking anything. Counts the frames it looked at.
    fn scan_block(&mut self, block: u64) -> BlockScan {
        let end = block + PAGEBLOCK_NR;
        if self.inside_larger_free_block(block) {
            self.report.nr_migrate_scanned += PAGEBLOCK_NR;
            return BlockScan::Movable(Vec::new()); // all free already
        }
        let mut movable = Vec::new();
        let mut pfn = block;
        while pfn < end {
            let next = match self.memmap.get(Pfn::new(pfn)) {
                // A free block: skip it (its order, read without the lock,
                // may be stale; a wrong skip only misses a frame).
                Some(page) if page.test_flag(PageFlag::Buddy) => {
                    pfn + (1u64 << page.order().min(PAGEBLOCK_ORDER))
                }
                Some(_) => match folio_of(self.memmap, Pfn::new(pfn)) {
                    Some(folio) if folio.test_flag(PageFlag::Lru) && self.can_move(&folio) => {
                        movable.push(folio);
                        folio.pfn().as_u64() + folio.nr_pages() as u64
                    }
                    // A folio that cannot move (a huge one, whole), a raw
                    // frame (a page table, the heap), a reserved one.
                    _ => pfn,
                },
                None => pfn, // a hole
            };
            if next <= pfn {
                self.report.nr_migrate_scanned += 1;
                return BlockScan::Skip;
            }
            let next = next.min(end);
            self.report.nr_migrate_scanned += next - pfn;
            pfn = next;
        }
        BlockScan::Movable(movable)
    }

    /// Takes the movable folios off the LRU lists; those that went away or
    /// turned out pinned meanwhile stay where they are.
    fn isolate(&mut self, folios: Vec<Folio<'static>>) -> Vec<(Folio<'static>, LruList)> {
        let lru = self.host.lru();
        let mut isolated = Vec::with_capacity(folios.len());
        for folio in folios {
            let Some(list) = lru.isolate_folio(folio) else { continue };
            // Again with our reference held: a pin or a lock taken since
            // the first look, or another folio at that PFN by now, keeps
            // the folio where it is. (What guarantees a pinned folio never
            // moves is the move's own refcount freeze; this only spares a
            // doomed attempt.)
            if !self.can_move(&folio) {
                lru.putback(folio, list);
                self.host.put(folio);
                continue;
            }
            self.report.nr_isolated += 1;
            isolated.push((folio, list));
        }
        isolated
    }

    /// Moves each isolated folio into a destination from the free list.
    /// Returns why the pass stops when it ran out of destinations (the
    /// rest is put back).
    fn move_all(&mut self, isolated: Vec<(Folio<'static>, LruList)>) -> Option<Outcome> {
        let lru = self.host.lru();
        let mut stop = None;
        for (src, list) in isolated {
            let order = src.order();
            let nr = src.nr_pages() as u64;
            let dst = if stop.is_none() { self.destination(order) } else { None };
            let Some((pfn, _)) = dst else {
                stop.get_or_insert(self.free_stopped.unwrap_or(Outcome::Complete));
                lru.putback(src, list);
                self.host.put(src);
                continue;
            };
            let dst = UnpublishedFolio::prep(self.memmap, Pfn::new(pfn), order);
            match self.host.migrate(src, dst) {
                Ok(new) => {
                    self.report.nr_migrated += nr;
                    lru.putback(new, list);
                    self.host.put(new);
                }
                Err(failed) => {
                    self.report.nr_migrate_failed += nr;
                    let (pfn, order) = failed.dst.into_raw_block();
                    self.free.push((pfn.as_u64(), order));
                    lru.putback(src, list);
                    self.host.put(src);
                }
            }
        }
        stop
    }

    /// A raw block of `order` from the free list, running the free scanner
    /// when nothing fits. `None` when the free scanner cannot go on.
    fn destination(&mut self, order: u8) -> Option<(u64, u8)> {
        loop {
            // The smallest block that fits, split down to `order`.
            let best =
                (0..self.free.len()).filter(|&i| self.free[i].1 >= order).min_by_key(|&i| self.free[i].1);
            if let Some(i) = best {
                let (pfn, mut o) = self.free.swap_remove(i);
                while o > order {
                    o -= 1;
                    self.free.push((pfn + (1u64 << o), o));
                }
                return Some((pfn, order));
            }
            if !self.scan_free_block() {
                return None;
            }
        }
    }

    /// The free scanner: isolates the free blocks of the next pageblock
    /// down. False when it may not go on (met the migrate scanner, budget,
    /// the reserve).
    fn scan_free_block(&mut self) -> bool {
        if self.free_stopped.is_some() {
            return false;
        }
        if self.free_end <= self.migrate_pfn {
            self.free_stopped = Some(Outcome::Complete);
            return false;
        }
        if self.report.nr_free_blocks >= self.budget.free_blocks {
            self.free_stopped = Some(Outcome::BudgetSpent);
            return false;
        }
        self.free_end -= PAGEBLOCK_NR;
        self.report.nr_free_blocks += 1;
        let block = self.free_end;
        let end = block + PAGEBLOCK_NR;
        let mut pfn = block;
        while pfn < end {
            self.report.nr_free_scanned += 1;
            let Some(page) = self.memmap.get(Pfn::new(pfn)) else {
                pfn += 1;
                continue;
            };
            if page.test_flag(PageFlag::Buddy) {
                match self.frames.isolate_free_block(Pfn::new(pfn), self.below_order) {
                    Ok(order) => {
                        let nr = 1u64 << order;
                        self.report.nr_free_isolated += nr;
                        self.report.nr_free_scanned += nr - 1;
                        self.free.push((pfn, order));
                        pfn += nr;
                    }
                    Err(IsolateError::TooLarge { order }) => {
                        let nr = 1u64 << order;
                        self.report.nr_free_scanned += (end - pfn).min(nr) - 1;
                        pfn += nr;
                    }
                    Err(IsolateError::BelowMin { .. }) => {
                        self.free_stopped = Some(Outcome::NoDestination);
                        return true; // what it took so far is usable
                    }
                    Err(IsolateError::NotFree) => pfn += 1,
                }
            } else if let Some(folio) = folio_of(self.memmap, Pfn::new(pfn)) {
                let next = folio.pfn().as_u64() + folio.nr_pages() as u64;
                self.report.nr_free_scanned += next.clamp(pfn + 1, end) - pfn - 1;
                pfn = next.max(pfn + 1);
            } else {
                pfn += 1;
            }
        }
        true
    }

    /// True when the pageblock `block` lies inside a free block larger than
    /// a pageblock whose first frame is in an earlier pageblock (its own
    /// first frame has no flag, like a raw frame's). A hint, as the rest
    /// of the look.
    fn inside_larger_free_block(&self, block: u64) -> bool {
        (PAGEBLOCK_ORDER + 1..=MAX_ORDER).any(|order| {
            let head = block & !((1u64 << order) - 1);
            head != block
                && self
                    .memmap
                    .get(Pfn::new(head))
                    .is_some_and(|p| p.test_flag(PageFlag::Buddy) && p.order() >= order)
        })
    }

    /// The migrate scanner's test of a folio (besides being on the LRU
    /// lists): anonymous, not pinned, not locked, and smaller than the
    /// blocks the free scanner takes (so smaller than the goal's order: a
    /// huge folio when the goal is a 2 MiB block). Seen without a
    /// reference it is a hint; isolation asks again with one.
    fn can_move(&self, folio: &Folio<'_>) -> bool {
        matches!(folio.mapping(), FolioMapping::Anon(_))
            && folio.order() < self.below_order
            && !folio.maybe_pinned()
            && !folio.is_locked()
    }

    /// Gives every unused free block back; returns the end of the highest
    /// pageblock one went back to (0 when none), where the free scanner
    /// should resume next time.
    fn release_free(&mut self) -> u64 {
        let mut resume = 0;
        for (pfn, order) in self.free.drain(..) {
            resume = resume.max(block_of(pfn) + PAGEBLOCK_NR);
            self.frames.putback_isolated(Pfn::new(pfn), order);
        }
        resume
    }
}

// ---------------------------------------------------------------- kcompactd

/// The smallest order whose failed allocations wake kcompactd: a huge
/// page's. Smaller orders find a block after a little reclaim and merging.
pub const KCOMPACTD_MIN_ORDER: u8 = HPAGE_ORDER;

/// True when the failure of an allocation of `order` with `err` should
/// wake kcompactd: an order of a huge page or more, failed for want of a
/// free block of it ([`AllocError::OutOfMemory`]). A `BelowMin` failure
/// means memory is short, not fragmented: that wakes kswapd (the frame
/// allocator's low-memory hook does), and compaction would not be
/// suitable anyway.
pub fn wants_kcompactd(order: u8, err: AllocError) -> bool {
    (KCOMPACTD_MIN_ORDER..=MAX_ORDER).contains(&order) && err == AllocError::OutOfMemory { order }
}

/// kcompactd's wake-up, as kswapd's (`kernel/src/vm/reclaim.rs`): a level,
/// not an edge. A waker records the order it wants ([`KcompactdWake::wake`])
/// and only the one that found nothing recorded unparks the task; kcompactd
/// consumes the order ([`KcompactdWake::take`]) **before** it looks at
/// memory and parks only after finding nothing recorded, so no wake is
/// lost. The largest order wanted wins.
#[derive(Debug, Default)]
pub struct KcompactdWake {
    /// 0: nothing wanted; `order + 1` otherwise.
    wanted: AtomicU8,
}

impl KcompactdWake {
    /// Nothing wanted.
    pub const fn new() -> KcompactdWake {
        KcompactdWake { wanted: AtomicU8::new(0) }
    }

    /// Records that an allocation of `order` failed; true when the caller
    /// must unpark kcompactd (nothing was recorded before). Never
    /// allocates, takes no lock: callable wherever the allocation was.
    pub fn wake(&self, order: u8) -> bool {
        self.wanted.fetch_max(order.min(MAX_ORDER) + 1, Ordering::AcqRel) == 0
    }

    /// kcompactd's side: the order wanted since the last take, if any,
    /// and nothing recorded after.
    pub fn take(&self) -> Option<u8> {
        self.wanted.swap(0, Ordering::AcqRel).checked_sub(1)
    }

    /// True when an order is recorded and not taken yet (a look for
    /// quiescence; the answer may be stale at once).
    pub fn pending(&self) -> bool {
        self.wanted.load(Ordering::Acquire) != 0
    }
}

// ---------------------------------------------------------------- THP faults

/// Which THP faults may stall in direct compaction (Linux's
/// `transparent_hugepage/defrag`, without its deferred modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Defrag {
    /// Every huge-page eligible fault.
    Always,
    /// Only faults in `MADV_HUGEPAGE` ranges ([`ThpMode::Always`]).
    #[default]
    Madvise,
    /// None: fall back to 4 KiB at once.
    Never,
}

/// The direct compaction a THP fault that found no free 2 MiB block may do
/// before it falls back to 4 KiB: `Some` request (order 9,
/// [`THP_FAULT_BUDGET`]) when `defrag` lets a range of advice `thp` stall,
/// `None` to fall back at once. The fault's area must be huge-page
/// eligible in the first place (`VmaSet::thp_eligible`).
pub fn thp_fault_compaction(defrag: Defrag, thp: ThpMode) -> Option<Request> {
    let stall = match defrag {
        Defrag::Always => thp != ThpMode::Never,
        Defrag::Madvise => thp == ThpMode::Always,
        Defrag::Never => false,
    };
    stall.then(Request::thp_fault)
}

/// The longest back-off: after this many failures in a row, a direct
/// compaction runs once in `2^MAX_DEFER_SHIFT` (64) attempts.
pub const MAX_DEFER_SHIFT: u32 = 6;

/// Back-off for direct compaction after failures (Linux's
/// `compaction_deferred`): after `n` failed passes in a row the next
/// `2^n - 1` attempts are skipped (`n` at most [`MAX_DEFER_SHIFT`]), so a
/// zone that cannot be compacted does not make every THP fault stall; a
/// success ends the back-off. A failure is a pass that went through the
/// zone ([`Outcome::Complete`]) or found no destination
/// ([`Outcome::NoDestination`]); one that only spent its budget
/// ([`Outcome::BudgetSpent`]) is none: the zone remembers where it stopped
/// and the next pass goes on from there, so a round over the zone ends in
/// `Complete` anyway. (Counting it would make the first THP faults after a
/// fragmentation, whose bounded passes walk through the unmovable blocks at
/// the bottom of the zone, the kernel's own, defer the faults after them,
/// which would have found movable blocks.) Atomics: faults on every CPU
/// consult it.
#[derive(Debug, Default)]
pub struct Deferral {
    /// Attempts skipped since the last pass.
    considered: AtomicU32,
    /// Failures in a row, capped.
    shift: AtomicU32,
}

impl Deferral {
    /// No back-off.
    pub const fn new() -> Deferral {
        Deferral { considered: AtomicU32::new(0), shift: AtomicU32::new(0) }
    }

    /// True when this attempt should be skipped (and counts it).
    pub fn deferred(&self) -> bool {
        let limit = 1u32 << self.shift.load(Ordering::Relaxed);
        let considered = self.considered.fetch_add(1, Ordering::Relaxed) + 1;
        if considered >= limit {
            self.considered.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Notes how a pass that was not deferred ended.
    pub fn note(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success | Outcome::Skipped(Unsuitable::AlreadyFree) => {
                self.shift.store(0, Ordering::Relaxed);
                self.considered.store(0, Ordering::Relaxed);
            }
            Outcome::Complete | Outcome::NoDestination => {
                let shift = (self.shift.load(Ordering::Relaxed) + 1).min(MAX_DEFER_SHIFT);
                self.shift.store(shift, Ordering::Relaxed);
                self.considered.store(0, Ordering::Relaxed);
            }
            Outcome::BudgetSpent | Outcome::Skipped(_) => {}
        }
    }

    /// Failures in a row so far (capped at [`MAX_DEFER_SHIFT`]).
    pub fn shift(&self) -> u32 {
        self.shift.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------- measures

/// How fragmented free memory is: free blocks of each order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragmentation {
    /// Free blocks of each order.
    pub free_blocks: [u64; NR_ORDERS],
}

impl Fragmentation {
    /// The allocator's free lists now.
    pub fn of(frames: &FrameAllocator) -> Fragmentation {
        Fragmentation { free_blocks: frames.free_block_counts() }
    }

    /// Free pages.
    pub fn nr_free_pages(&self) -> u64 {
        self.free_blocks.iter().enumerate().map(|(o, n)| n << o).sum()
    }

    /// Free 2 MiB blocks (a free order-10 block counts twice): how many
    /// huge pages could be allocated now.
    pub fn nr_free_huge_blocks(&self) -> u64 {
        self.free_blocks.iter().enumerate().skip(HPAGE_ORDER as usize).map(|(o, n)| n << (o - 9)).sum()
    }

    /// The largest order with a free block, if any page is free.
    pub fn largest_free_order(&self) -> Option<u8> {
        self.free_blocks.iter().rposition(|&n| n > 0).map(|o| o as u8)
    }

    /// Of the free pages, the share (per mille) in blocks too small for an
    /// allocation of `order` (Linux's unusable free space index): 0 when
    /// all free memory could serve it, 1000 when none could or nothing is
    /// free.
    pub fn unusable_permille(&self, order: u8) -> u64 {
        let free = self.nr_free_pages();
        if free == 0 {
            return 1000;
        }
        let usable: u64 = self.free_blocks.iter().enumerate().skip(order as usize).map(|(o, n)| n << o).sum();
        (free - usable) * 1000 / free
    }
}

impl fmt::Display for Fragmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "free {} pages, {} free 2 MiB blocks, largest order {}, unusable for order 9: {}.{}%",
            self.nr_free_pages(),
            self.nr_free_huge_blocks(),
            self.largest_free_order().map_or(-1, i32::from),
            self.unusable_permille(HPAGE_ORDER) / 10,
            self.unusable_permille(HPAGE_ORDER) % 10
        )
    }
}

/// How much of a range is mapped by 2 MiB leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThpCoverage {
    /// Whole 2 MiB blocks in the range.
    pub nr_blocks: u64,
    /// Of those, mapped by a present 2 MiB leaf.
    pub nr_huge: u64,
}

impl ThpCoverage {
    /// `nr_huge` per `nr_blocks`, in per mille (0 for an empty range).
    pub fn permille(&self) -> u64 {
        (self.nr_huge * 1000).checked_div(self.nr_blocks).unwrap_or(0)
    }
}

/// Counts the whole 2 MiB blocks of `[start, end)` and those a present
/// 2 MiB leaf of `table` maps. The caller holds the space's lock.
pub fn thp_coverage<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    start: VirtAddr,
    end: VirtAddr,
) -> ThpCoverage {
    let first = start.as_u64().next_multiple_of(HPAGE_SIZE);
    let last = end.as_u64() & !(HPAGE_SIZE - 1);
    let mut coverage = ThpCoverage { nr_blocks: 0, nr_huge: 0 };
    let mut va = first;
    while va < last {
        coverage.nr_blocks += 1;
        if let (Level::Pmd, Decoded::Leaf(leaf)) = table.lookup(mem, VirtAddr::new(va)) {
            if leaf.size == PageSize::Size2M {
                coverage.nr_huge += 1;
            }
        }
        va += HPAGE_SIZE;
    }
    coverage
}
