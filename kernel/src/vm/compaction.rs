//! Compaction in the running kernel: the host of `mm::compaction` over
//! the real frame allocator, LRU lists and migration, one zone per NUMA
//! node, the kcompactd tasks, direct compaction for THP faults, and the
//! counters. What moves where is decided by `mm::compaction`; the move of
//! one folio is `mm::migrate`'s, through [`crate::vm::migrate`].
//!
//! ## The host ([`Compactor`])
//!
//! `frames` is the frame allocator (one for every node; a zone is a span
//! of PFNs in it), `lru` the anonymous LRU lists ([`crate::vm::reclaim`]),
//! `migrate` is [`crate::vm::migrate::migrate_to`] (the folio lock, then
//! `mm::migrate::migrate_folio_to`, which hands the destination back on a
//! refusal), `put` the free path, `relax` a yield.
//!
//! ## Zones
//!
//! One [`CompactZone`] per NUMA node, over the PFN span of the usable
//! RAM the boot path gave that node (from its lowest to its highest
//! frame; holes and frames of other nodes in the span are skipped as
//! unmovable), made by [`start`]. A pass for an order asks
//! `mm::compaction::suitable` of the whole allocator: with one node (the
//! usual case) that is the node's own state.
//!
//! ## kcompactd
//!
//! One task per node with memory, started at boot ([`start`]) after
//! kswapd. A huge anonymous allocation that fails for want of a free
//! block (`mm::compaction::wants_kcompactd`: `OutOfMemory` at order 9, not
//! `BelowMin`) calls [`huge_alloc_failed`], which wakes the kcompactd of
//! the failing CPU's node with kswapd's protocol
//! (`crate::vm::reclaim`'s "Waking kswapd"): the order is recorded in the
//! node's `KcompactdWake` (an atomic), and only the waker that found
//! nothing recorded unparks the task; kcompactd takes the record
//! **before** it looks at memory and parks only after finding nothing
//! recorded, so no wake is lost. The waker never allocates and takes only
//! the run-queue lock (inside `unpark`), with interrupts off: it runs
//! inside the fault, under the space's lock. For each order taken
//! kcompactd runs `Request::kcompactd(order)` (unbudgeted: until a free
//! block of the order is on the lists, or the scanners meet; a pass that
//! met after starting half-way, where the zone's last pass stopped, is
//! followed by one over the whole zone); a pass that
//! ends without one rests [`KCOMPACTD_BACKOFF_MS`] before the next look,
//! keeping the wakes that came meanwhile (each failing THP fault wakes it,
//! and a futile pass scans the whole zone).
//!
//! ## Direct compaction ([`direct_compact`])
//!
//! The kernel's frame source tells `mm::fault` that THP faults in
//! `MADV_HUGEPAGE` ranges may stall (`Defrag::Madvise`,
//! `crate::vm::space::KernelFrames::FAULT`); such a write fault that finds
//! no free 2 MiB block answers `NeedsCompaction` instead of falling back.
//! The trap handler ([`crate::vm::fault`]) and GUP drop the space's lock,
//! turn interrupts on and call [`direct_compact`]: unless the node's
//! `Deferral` says to back off after failures, one bounded pass
//! (`THP_FAULT_BUDGET`) on the faulting CPU's node, its outcome noted in
//! the deferral; when it made no free block, the same on the next nodes
//! in turn (the allocation tried them all: a THP from another node beats
//! 4 KiB pages from this one); then the same fault is handled once more with compaction
//! off (`KernelFrames::PLAIN`): a THP if a block is free now, else 4 KiB.
//! It must run without the space's lock: migration takes the locks of
//! every space mapping a folio, the faulting one among them.
//!
//! ## Counters
//!
//! One `CompactStats` ([`counts`]): `mm::compaction`'s counters, and the
//! fault's `thp_fault_alloc` and `thp_fault_fallback` (counted by the
//! trap handler from `MappedHuge` and `HugeFallback`).
//! [`print_counters`] prints them with migration's at the end of a boot.
//!
//! ## Quiescence
//!
//! A pass holds folios off the LRU lists, free blocks off the free lists
//! and, during a move, migration entries in page tables: none of that may
//! be seen by a check at rest or a count of free frames. [`quiesce`] waits
//! until every kcompactd is parked with nothing recorded (the test
//! harness, before it counts frames and runs the checker; the stress
//! before its quiescent checks). Direct compaction and the tests' passes
//! run inside a task the caller joins.
//!
//! ## Locks
//!
//! None of its own: a pass takes the allocator's pool locks and the LRU
//! lock one at a time inside `mm`, and migration's locks (the folio lock,
//! then the family's space locks) with nothing of compaction's held. The
//! wake-up takes only the run-queue lock. Task context, interrupts on, no
//! lock held, for every pass.

use crate::memory;
use crate::task::sched;
use crate::vm::reclaim;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, Ordering};
use mm::compaction::{
    wants_kcompactd, CompactCounts, CompactStats, CompactZone, CompactionHost, Deferral, KcompactdWake,
    MigrateFailed, Outcome, PassReport, Request,
};
use mm::folio::{Folio, UnpublishedFolio};
use mm::frame::{AllocError, FrameAllocator};
use mm::lru::LruLists;
use mm::numa::{NodeId, MAX_NODES};
use mm::Pfn;

/// The counters (module doc).
static STATS: CompactStats = CompactStats::new();
/// One zone per node, made by [`start`].
static ZONES: spin::Once<Vec<CompactZone>> = spin::Once::new();
/// Direct compaction's back-off, per node.
static DEFER: [Deferral; MAX_NODES] = [const { Deferral::new() }; MAX_NODES];
/// kcompactd's wake-up, per node.
static WAKE: [KcompactdWake; MAX_NODES] = [const { KcompactdWake::new() }; MAX_NODES];
/// Each node's kcompactd (set by the task itself).
static TASKS: [spin::Once<Arc<sched::Task>>; MAX_NODES] = [const { spin::Once::new() }; MAX_NODES];
/// A node's kcompactd is between taking its record and parking.
static BUSY: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
/// How long kcompactd rests after a pass that made no free block.
pub const KCOMPACTD_BACKOFF_MS: u64 = 20;

/// The running kernel as `mm::compaction` needs it (module doc).
pub(crate) struct Compactor;

impl CompactionHost for Compactor {
    type Error = mm::migrate::MigrateError;

    fn frames(&self) -> &FrameAllocator {
        memory::frame_allocator()
    }
    fn lru(&self) -> &LruLists {
        reclaim::lru().expect("compaction: the LRU lists are made at boot, before any pass")
    }
    fn migrate(
        &self,
        src: Folio<'static>,
        dst: UnpublishedFolio<'static>,
    ) -> Result<Folio<'static>, MigrateFailed<Self::Error>> {
        crate::vm::migrate::migrate_to(src, dst).map_err(|r| MigrateFailed { why: r.why, dst: r.dst })
    }
    fn put(&self, folio: Folio<'static>) {
        crate::vm::folios::put_anon_folio(folio);
    }
    fn relax(&self) {
        sched::yield_now();
    }
}

/// The PFN span `[start, end)` of `node`'s usable RAM (empty when it has
/// none).
fn node_span(node: NodeId) -> (Pfn, Pfn) {
    let (mut start, mut end) = (u64::MAX, 0u64);
    for r in memory::boot_memory().map_or(&[][..], mm::memmap::MemoryMap::ranges) {
        memory::numa_map().split(*r, |piece, n| {
            if n == node && piece.size() > 0 {
                start = start.min(piece.start.pfn().as_u64());
                end = end.max(piece.end.pfn().as_u64());
            }
        });
    }
    if start >= end {
        (Pfn::new(0), Pfn::new(0))
    } else {
        (Pfn::new(start), Pfn::new(end))
    }
}

/// `node`'s zone, once [`start`] made them.
pub fn zone(node: NodeId) -> Option<&'static CompactZone> {
    ZONES.get()?.get(node.index())
}

/// The node of the CPU this runs on.
fn local_node() -> NodeId {
    memory::cpu_node(sched::cpu_index())
}

/// One pass of `request` over `node`'s zone, counted. Task context,
/// interrupts on, no lock held. `None` before [`start`] or for a node
/// with no zone.
pub fn compact_node(node: NodeId, request: Request) -> Option<PassReport> {
    Some(zone(node)?.compact(&Compactor, &STATS, request))
}

/// Direct compaction for a THP fault (module doc): one bounded pass on
/// the faulting CPU's node, then, while none made a free block, on the
/// next nodes in turn (the order in which the allocation tried them),
/// each unless its back-off skips it. Returns the last pass's report,
/// `None` when every node was deferred. Task context, interrupts on, no
/// lock held.
pub fn direct_compact(request: Request) -> Option<PassReport> {
    let (local, nr) = (local_node().index(), memory::nr_nodes());
    let mut last = None;
    for node in (0..nr).filter_map(|k| NodeId::new((local + k) % nr)) {
        let defer = &DEFER[node.index()];
        if defer.deferred() {
            continue;
        }
        let Some(report) = compact_node(node, request) else { continue };
        defer.note(report.outcome);
        last = Some(report);
        if matches!(report.outcome, Outcome::Success | Outcome::Skipped(_)) {
            break;
        }
    }
    last
}

/// A huge anonymous allocation of `order` failed with `err`: wakes the
/// kcompactd of this CPU's node when that is what the failure asks for
/// (module doc). Any context the allocation had (interrupts off, spin
/// locks held); never allocates, takes only the run-queue lock.
pub fn huge_alloc_failed(order: u8, err: AllocError) {
    if wants_kcompactd(order, err) {
        wakeup_kcompactd(local_node(), order);
    }
}

/// Records `order` in `node`'s wake-up and unparks its kcompactd if this
/// waker owes the unpark (module doc).
fn wakeup_kcompactd(node: NodeId, order: u8) {
    // Interrupts off from the record to the unpark: the waker that owes
    // the unpark is not preempted in between (others count on it).
    crate::sync::without_interrupts(|| {
        if !WAKE[node.index()].wake(order) {
            return; // an unpark is on its way, or kcompactd has yet to look
        }
        // Pairs with the fence in `kcompactd`: either this finds the task,
        // or the task's first look finds the record.
        fence(Ordering::SeqCst);
        if let Some(task) = TASKS[node.index()].get() {
            sched::unpark(task);
        }
    });
}

/// Parks `node`'s kcompactd until an order is recorded; returns it. On
/// return the node's `BUSY` is set.
fn kcompactd_wait(node: NodeId) -> u8 {
    let i = node.index();
    loop {
        // Busy before the record is taken, so `quiesce` never sees both
        // clear while a pass is due.
        BUSY[i].store(true, Ordering::SeqCst);
        if let Some(order) = WAKE[i].take() {
            return order;
        }
        BUSY[i].store(false, Ordering::SeqCst);
        // A wake between the take and here left the unpark token: the
        // park returns at once.
        sched::park();
    }
}

/// `node`'s kcompactd (module doc).
fn kcompactd(node: NodeId) {
    TASKS[node.index()].call_once(sched::current_task);
    // Pairs with the fence in `wakeup_kcompactd` (a wake before the task
    // was recorded sent no unpark, and its record must be seen below).
    fence(Ordering::SeqCst);
    loop {
        let order = kcompactd_wait(node);
        let report = kcompactd_pass(node, order);
        let futile = report.is_some_and(|r| !matches!(r.outcome, Outcome::Success | Outcome::Skipped(_)));
        BUSY[node.index()].store(false, Ordering::SeqCst);
        if futile {
            sched::sleep_ms(KCOMPACTD_BACKOFF_MS);
        }
    }
}

/// kcompactd's work for one wake: a pass for `order` from where the
/// zone's last pass stopped; when it met the other scanner without a free
/// block after starting half-way, once more over the whole zone (a pass
/// that met reset the positions to the ends). `None` without a zone.
fn kcompactd_pass(node: NodeId, order: u8) -> Option<PassReport> {
    let start = zone(node)?.positions();
    let report = compact_node(node, Request::kcompactd(order))?;
    if report.outcome == Outcome::Complete && zone(node)?.positions() != start {
        return compact_node(node, Request::kcompactd(order));
    }
    Some(report)
}

/// Makes the zones and starts one kcompactd per node with memory (boot,
/// once the scheduler runs and after `reclaim::init`).
pub fn start() {
    let mut started = false;
    ZONES.call_once(|| {
        started = true;
        NodeId::all(memory::nr_nodes())
            .map(|node| {
                let (start, end) = node_span(node);
                CompactZone::new(start, end)
            })
            .collect()
    });
    if !started {
        return;
    }
    for node in NodeId::all(memory::nr_nodes()) {
        let (start, end) = node_span(node);
        if start == end {
            continue;
        }
        crate::println!(
            "compaction: node {node}: zone of PFNs {:#x}-{:#x} ({} pageblocks), kcompactd started",
            start.as_u64(),
            end.as_u64(),
            (end.as_u64() - start.as_u64()).div_ceil(mm::compaction::PAGEBLOCK_NR)
        );
        if let Err(e) = sched::spawn("kcompactd", move || kcompactd(node)) {
            crate::println!("compaction: kcompactd of node {node} not started: {e:?}");
        }
    }
}

/// The counters now.
pub fn counts() -> CompactCounts {
    STATS.snapshot()
}

/// A THP fault mapped a huge folio.
pub fn count_thp_fault_alloc() {
    STATS.count_thp_fault_alloc();
}

/// A THP fault fell back to 4 KiB.
pub fn count_thp_fault_fallback() {
    STATS.count_thp_fault_fallback();
}

/// Prints the compaction and migration counters, `/proc/vmstat` style.
pub fn print_counters() {
    let m = crate::vm::migrate::counters();
    crate::println!("vmstat: {}", counts());
    crate::println!(
        "vmstat: pgmigrate_success {} pgmigrate_fail {} thp_migration_success {} thp_migration_split {}",
        m.pgmigrate_success,
        m.pgmigrate_fail,
        m.thp_migration_success,
        m.thp_migration_split
    );
}

/// True while some kcompactd is in a pass or has a wake recorded.
pub fn kcompactd_active() -> bool {
    (0..MAX_NODES).any(|i| BUSY[i].load(Ordering::SeqCst) || (TASKS[i].get().is_some() && WAKE[i].pending()))
}

/// Waits (up to a second) until every kcompactd is parked with nothing
/// recorded (module doc, "Quiescence"). Task context.
pub fn quiesce() {
    for _ in 0..500 {
        if !kcompactd_active() {
            return;
        }
        sched::sleep_ms(2);
    }
}
