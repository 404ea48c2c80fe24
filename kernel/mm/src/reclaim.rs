//! Reclaim's shrink step: what becomes of each folio taken off the LRU
//! lists (or handed over by `MADV_PAGEOUT`): skipped, kept, activated,
//! split, written to swap, freed. The kernel supplies the disk, the fork
//! families' locks, the TLB shootdown and freeing through [`ReclaimHost`];
//! kswapd, its wake-ups and direct reclaim (tasks and timing) stay in the
//! kernel.
//!
//! ## Shrinking one folio ([`shrink_folio`], mm-reference §6)
//!
//! For a folio isolated with a reference (from the inactive tail by
//! [`shrink_lru`], or by [`pageout`]), in this order; each refusal says
//! which list the folio goes back to ([`Kept::list`]):
//! 1. **skip** it when it is locked: somebody else's business
//!    ([`Kept::Locked`], back on the inactive list untouched);
//! 2. **activate** it when it may be pinned ([`Kept::MaybePinned`]): the
//!    pin's owner must keep seeing the page the task sees; and, in the LRU
//!    scan only ([`shrink_lru`], not `MADV_PAGEOUT`), when any leaf that
//!    maps it is **young** ([`test_and_clear_young`] through the reverse
//!    map, under the family's locks; [`Kept::Referenced`]): it was used
//!    since it was last looked at, so it goes back to the active list
//!    with its young bits cleared. Together with the balancing that moves
//!    the active tail to the inactive head, this is a second-chance clock:
//!    a folio is written only when it was not touched between two looks;
//! 3. give it swap slots and put it into the swap cache when it has none
//!    ([`add_to_swap`]; [`Kept::NoSwap`], [`Kept::SwapFull`]); a folio
//!    already in the cache keeps its slots ([`Kept::AreaGone`] when their
//!    area went). A large folio needs a run of 512 slots; when the area has
//!    none it is **split** into order-0 folios
//!    ([`thp::split_isolated_folio`], under the family's locks: it must be
//!    mapped by one space of its family only, not pinned and not referenced
//!    by anyone else, else [`Kept::CannotSplit`]). Page 0 goes on here as
//!    an order-0 folio; the other pieces still mapped, isolated with a
//!    reference each, are left in [`Pieces`] for the caller, which shrinks
//!    them next ([`shrink_list`] does);
//! 4. **unmap** it from every space of its fork family, with all their
//!    locks held ([`try_to_unmap`] with [`Target::Swap`]): wholly or not at
//!    all ([`Kept::CouldNotUnmap`]; [`Kept::StillMapped`] when a mapping
//!    outside the family's tables remains). A pass unmaps up to
//!    [`UNMAP_BATCH`] folios at a time with one TLB flush ("Batched
//!    unmap" below); the flush runs under the locks; the mappings'
//!    references are dropped after it;
//! 5. **write** it, unless no page-table entry holds any of its slots any
//!    more, or it is **clean**: `Dirty` clear, a copy swap-in kept in the
//!    cache and nobody wrote since (the unmap moved every leaf's dirty bit
//!    to the folio, a writable leaf counting as dirty; new slots, a failed
//!    write and a reference kept by someone else all set `Dirty`). To
//!    write, `Writeback` is set and the write is *submitted*
//!    ([`ReclaimHost::submit_write`]), and the shrinker goes on with the
//!    next folio while the disk works ("Writes in flight" below). The folio
//!    stays locked and in the swap cache while it is written, so a fault on
//!    it finds it and waits. A failed write keeps it in memory, in the
//!    cache and unmapped, on the inactive list ([`Kept::WriteFailed`]): it
//!    is written again on a later pass;
//! 6. **free** it if the reference count is exactly ours and the cache's
//!    ([`Folio::try_freeze`]); anyone else's reference (a fault that found
//!    it in the cache, a `get_user_pages` hold) keeps it
//!    ([`Kept::InUse`], inactive). A lookup that raced us on a folio nobody
//!    can map again (unmapped, no entry holds its slots: an munmap freed
//!    the entry, a fault whose entry changed) drops its reference at once,
//!    so for such an orphan the freeze is retried [`ORPHAN_TRIES`] times,
//!    with [`ReclaimHost::relax`] between, rather than leaving it in the
//!    cache for the next pass.
//!
//! ## Batched unmap
//!
//! A pass takes its folios [`UNMAP_BATCH`] at a time through steps 1 to 3
//! one by one, then unmaps the batch ([`unmap_batch`]): the folios of one
//! anon handle that come one after another (one fork family, so the same
//! spaces and locks) are unmapped under **one** taking of the family's
//! locks, their flushes merged into one per space, and that flush runs
//! before the locks are dropped; then steps 5 and 6 go folio by folio.
//! One shootdown (an IPI round on x86_64, one `TLBI` sequence and `DSB`
//! on AArch64) then serves up to 32 folios instead of one each.
//!
//! Why this is safe: between a folio's unmap and the batch's flush,
//! another CPU may still read or write the page through a stale
//! translation. That is harmless while (1) the folio is neither written
//! to disk nor freed: its write is submitted only after the flush (step
//! 5 follows step 4 for the whole batch) and its mappings' references are
//! dropped only after the flush, so a late write lands in the page before
//! it is copied, and never in a freed frame; (2) its dirtiness is not
//! lost: the unmap counts a writable leaf as dirty, so a folio a stale
//! writable translation could still change is `Dirty` and is written; and
//! (3) nobody else sees the spaces in between: the flush runs before the
//! family's locks are released, so no munmap, mprotect or fault of those
//! spaces can find the new swap entries while a stale translation of the
//! old page survives (they would have no reason to flush for a
//! non-present entry). The test kit's TLB checks (1) on every write
//! reclaim submits: no cached translation may reach its frames.
//!
//! ## Writes in flight
//!
//! A pass ([`shrink_list`], so [`shrink_lru`] and [`pageout`] too) keeps up
//! to [`ReclaimHost::max_writes_in_flight`] ([`MAX_WRITES_IN_FLIGHT`] unless
//! the host says otherwise) writes in flight, oldest first in a queue
//! of its own: each queued folio is locked, isolated with the pass's
//! reference, unmapped, in the swap cache, with `Writeback` set. The pass
//! *finishes* a write ([`ReclaimHost::wait_write`], then `Writeback` is
//! cleared and step 6 runs, or the folio is kept on a failure) when the
//! queue is at the cap, when the host has no room for another write
//! (`submit_write` gives `None`, only to a pass that has a write of its own
//! to finish: so a pass never waits for room while it holds room), and for
//! every write left at the end of the pass. So every folio a pass took is
//! settled, freed or back on a list and unlocked, when the pass returns;
//! `Writeback` is never left set. The folio lock is held across the write
//! (not dropped at submission as Linux does): a fault or a second reclaim
//! finds it locked and waits or skips, exactly as for a synchronous write,
//! and the pass frees the folio at once when its write ends, with no
//! second pass to find it clean. Who completes the write below (the
//! kernel: the disk's interrupt handler) is the host's business; `mm` only
//! submits and waits.
//!
//! ## Invariants
//!
//! - An isolated folio is owned by its shrinker through the reference
//!   isolation took: [`shrink_folio`] consumes it, putting the folio back
//!   on a list first unless it freed it. Nothing here ever adds a folio to
//!   a list it was not isolated from (pieces of a split stay isolated).
//! - A folio is never freed while mapped, in use by someone else, or with
//!   its only copy unwritten: step 6 runs only after steps 4 and 5, and the
//!   freeze makes the count the proof.
//! - `MADV_PAGEOUT` never takes a folio that is off the lists: somebody
//!   else's reclaim holds it and will finish it ([`pageout`], the fix of
//!   seed 002; its replay switch is in [`crate::pageout`] and
//!   [`crate::swap::swapin`]).
//!
//! ## Locks
//!
//! Shrinking takes, in order: the folio lock (`try_lock`, never waiting),
//! then the address-space locks of the folio's family
//! ([`ReclaimHost::with_family_locked`], for the split and the unmap), and
//! inside those the swap area's and the LRU lists' leaf locks. It writes
//! (and may sleep) holding only folio locks: the one of the folio at hand
//! and those of its writes in flight. It never waits for a folio lock (step
//! 1 only tries), so holding several cannot deadlock. The caller holds no
//! lock: task context, interrupts on.

use crate::folio::Folio;
use crate::lru::{LruList, LruLists};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::SwapType;
use crate::pgtable::{Flush, Leaf, PageTable, PageTableFormat, SwapEntry, TableMemory, TlbHooks};
use crate::rmap::rmap_walk;
use crate::swap::area::SwapArea;
use crate::swap::cache::{add_to_swap, delete_from_swap_cache, folio_entry, slots_unused, AddError};
use crate::thp::{self, SplitRefused};
use crate::unmap::{try_to_unmap, Target, UnmapError};
use alloc::vec::Vec;

/// Folios a pass takes through steps 1 to 3 before it unmaps them all
/// with one TLB flush per family (step 4, "Batched unmap").
pub const UNMAP_BATCH: usize = 32;
/// Freeze attempts on an orphan folio before it is kept (step 6).
pub const ORPHAN_TRIES: usize = 100;
/// Folios [`shrink_lru`] isolates at a time.
pub const SCAN_BATCH: usize = 32;
/// Folios [`shrink_lru`] deactivates at most per balancing.
pub const BALANCE_BATCH: usize = 64;
/// Writes one shrinker keeps in flight at most (step 5): the disk's queue
/// depth (16 requests) keeps the disk busy; more would only hold more
/// folios locked.
pub const MAX_WRITES_IN_FLIGHT: usize = 16;

/// What reclaim needs from the kernel: page tables and their locks, the
/// TLB, swap areas and their disk, freeing, and a way to wait.
pub trait ReclaimHost {
    /// The page-table format of the spaces.
    type Format: PageTableFormat;
    /// Where page tables live.
    type Mem: TableMemory;
    /// The TLB shootdown that reaches every CPU.
    type Tlb: TlbHooks;
    /// A swap area and its disk, kept alive while held (the kernel's
    /// `Arc` of a swap device).
    type Device;

    /// Where page tables live.
    fn mem(&self) -> &Self::Mem;
    /// The shootdown.
    fn tlb(&self) -> &Self::Tlb;
    /// The page descriptors.
    fn memmap(&self) -> &'static Memmap;
    /// The LRU lists kept folios go back to (`None`: none yet, nothing is
    /// put back and [`shrink_lru`] finds nothing).
    fn lru(&self) -> Option<&LruLists>;
    /// True when some swap area is on.
    fn any_device(&self) -> bool;
    /// The area of type `ty`, if it is on.
    fn device(&self, ty: SwapType) -> Option<Self::Device>;
    /// The area new slots come from, if any still allocates.
    fn alloc_device(&self) -> Option<Self::Device>;
    /// The slots and cache of `dev`.
    fn area<'a>(&'a self, dev: &'a Self::Device) -> &'a SwapArea;
    /// Why the disk failed a write (the kernel's own error, which says
    /// whose fault it is).
    type IoError: core::fmt::Debug;
    /// A write [`ReclaimHost::submit_write`] started and nobody has waited
    /// for yet.
    type Write;
    /// Starts writing `folios`, one after another, to the slots from
    /// `first` on of `dev` (each folio's slots follow the previous one's),
    /// as one write, and returns without waiting for the disk (step 5).
    /// Reclaim holds each folio locked, with `Writeback` set, until
    /// [`ReclaimHost::wait_write`] returned for the write (the contract of
    /// [`crate::swap::swapin::SwapBackend::write`]); they are more than
    /// one only when they fit [`ReclaimHost::max_write_pages`].
    /// `Ok(None)` means no room for another write in flight now: it is
    /// allowed only when `pending` (the caller has writes of its own to
    /// wait for, and waits for one before it asks again); with nothing
    /// pending the host waits for room itself, so that a caller never
    /// waits for room while it holds room nobody else can give back.
    fn submit_write(
        &self,
        dev: &Self::Device,
        first: SwapEntry,
        folios: &[Folio<'static>],
        pending: bool,
    ) -> Result<Option<Self::Write>, Self::IoError>;
    /// The most pages one write of several folios may take on `dev`
    /// ("Gathered writes" in the module doc; 1: every folio alone).
    fn max_write_pages(&self, dev: &Self::Device) -> usize {
        let _ = dev;
        1
    }
    /// Waits until `write` has ended; says how (for all its folios: a
    /// write fails or succeeds whole). May sleep.
    fn wait_write(&self, write: Self::Write) -> Result<(), Self::IoError>;
    /// The writes a pass keeps in flight at most (at least 1).
    fn max_writes_in_flight(&self) -> usize {
        MAX_WRITES_IN_FLIGHT
    }
    /// The folios a pass takes through steps 1 to 3 before it unmaps them
    /// together ("Batched unmap"; at least 1, at most [`UNMAP_BATCH`]).
    /// 1 takes each folio through every step before the next, as tests
    /// of a disk that dies need: every folio given slots on it before it
    /// died stays in memory.
    fn unmap_batch(&self) -> usize {
        UNMAP_BATCH
    }
    /// Runs `f` over the tables of every live space that may map `folio`
    /// (its fork family, found from its anon handle), with all their locks
    /// held, in the kernel's lock order.
    fn with_family_locked<R>(
        &self,
        folio: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<Self::Format>]) -> R,
    ) -> R;
    /// Gives back a folio whose last reference is gone (off the LRU lists
    /// first if it is on them).
    fn free(&self, folio: Folio<'static>);
    /// Waits a little (step 6's orphan retry): yields the CPU.
    fn relax(&self);
}

/// Why [`shrink_folio`] kept a folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Somebody else holds the folio lock: skipped.
    Locked,
    /// It may be pinned.
    MaybePinned,
    /// Its swap slots' area is gone (swapoff).
    AreaGone,
    /// No swap area allocates.
    NoSwap,
    /// A large folio found no run of slots and could not be split.
    CannotSplit(SplitRefused),
    /// No free slot (or run) in the area.
    SwapFull,
    /// The area refused the cache entry (a kernel bug; reported as a
    /// refusal so that reclaim only skips the folio).
    CacheRefused,
    /// [`try_to_unmap`] refused: nothing was unmapped.
    CouldNotUnmap(UnmapError),
    /// Unmapped from the family's tables, and still mapped.
    StillMapped,
    /// The write failed: in the cache, unmapped, written again later.
    WriteFailed,
    /// Someone else holds a reference.
    InUse,
    /// Found young through the reverse map ([`shrink_lru`]'s aging): used
    /// since it was last looked at, so it goes back to the active list
    /// (its young bits cleared) instead of being written.
    Referenced,
}

impl Kept {
    /// The list a folio kept for this reason goes back to: the inactive
    /// list when the reason may pass by the next scan (a lock, a failed
    /// write, a passing reference), the active list when it will not soon.
    pub fn list(self) -> LruList {
        match self {
            Kept::Locked | Kept::WriteFailed | Kept::InUse => LruList::Inactive,
            Kept::MaybePinned
            | Kept::AreaGone
            | Kept::NoSwap
            | Kept::CannotSplit(_)
            | Kept::SwapFull
            | Kept::CacheRefused
            | Kept::CouldNotUnmap(_)
            | Kept::StillMapped
            | Kept::Referenced => LruList::Active,
        }
    }
}

/// What [`shrink_folio`] did with a folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shrunk {
    /// Written (if needed) and freed: this many pages.
    Freed(usize),
    /// Kept, back on [`Kept::list`].
    Kept(Kept),
}

/// The pieces of large folios [`shrink_folio`] split (step 3), for the
/// caller to shrink next: each isolated, with a reference.
#[derive(Debug, Default)]
pub struct Pieces {
    /// The pieces still mapped, other than each split folio's page 0.
    pub folios: Vec<Folio<'static>>,
    /// Large folios split because no run of slots was free.
    pub nr_split: usize,
}

/// What a pass ([`shrink_list`], [`shrink_lru`], [`pageout`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reclaimed {
    /// Pages freed.
    pub nr_pages: usize,
    /// Large folios split because no run of slots was free.
    pub nr_split: usize,
}

impl Reclaimed {
    fn add(&mut self, other: Reclaimed) {
        self.nr_pages += other.nr_pages;
        self.nr_split += other.nr_split;
    }
}

/// Drops one reference to `folio`, freeing it when it was the last.
fn put<H: ReclaimHost>(host: &H, folio: Folio<'static>) {
    if folio.put() {
        host.free(folio);
    }
}

/// Puts the isolated `folio` back on `list` (when there are lists).
fn putback<H: ReclaimHost>(host: &H, folio: Folio<'static>, list: LruList) {
    if let Some(lru) = host.lru() {
        lru.putback(folio, list);
    }
}

/// Shrinks the isolated folio `folio` (module doc) and consumes the
/// reference the caller took with it. A large folio that had to be split
/// leaves its other pieces in `pieces`, for the caller to shrink in turn.
/// Task context, no lock held.
pub fn shrink_folio<H: ReclaimHost>(host: &H, folio: Folio<'static>, pieces: &mut Pieces) -> Shrunk {
    shrink_one(host, folio, pieces, Age::No)
}

/// Whether the shrink step looks at the young bits first ([`shrink_lru`]
/// does; a folio `MADV_PAGEOUT` or a caller names goes regardless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    No,
    Yes,
}

/// [`shrink_folio`], aging first when `age` says so.
fn shrink_one<H: ReclaimHost>(host: &H, folio: Folio<'static>, pieces: &mut Pieces, age: Age) -> Shrunk {
    let mut writes = Writes::new();
    let result = match shrink_batch(host, &[folio], pieces, &mut writes, age, usize::MAX).pop() {
        Some((_, done)) => done,
        None => {
            finish_write(host, writes.oldest().expect("its write is in flight")).pop().expect("its folio").1
        }
    };
    if let Shrunk::Kept(_) = result {
        put(host, folio);
    }
    result
}

/// A write in flight (step 5) and its folios, each locked, isolated, with
/// the caller's reference, `Writeback` set, their slots one run from the
/// first folio's.
struct Writing<H: ReclaimHost> {
    folios: Vec<Folio<'static>>,
    dev: H::Device,
    write: H::Write,
}

/// Folios gathered for one write (step 5, "Gathered writes"): locked,
/// unmapped, `Writeback` set, their slots one run from `first`; not
/// submitted yet.
struct Gather<H: ReclaimHost> {
    folios: Vec<Folio<'static>>,
    dev: H::Device,
    first: SwapEntry,
    nr_pages: usize,
}

/// The writes one shrinker has in flight, oldest first.
struct Writes<H: ReclaimHost> {
    queue: alloc::collections::VecDeque<Writing<H>>,
    /// Pages freed by finishing writes (step 6).
    freed: usize,
}

impl<H: ReclaimHost> Writes<H> {
    fn new() -> Self {
        Writes { queue: alloc::collections::VecDeque::new(), freed: 0 }
    }

    fn oldest(&mut self) -> Option<Writing<H>> {
        self.queue.pop_front()
    }

    /// Waits for the oldest write and finishes its folio
    /// ([`finish_write`], [`settle`]), counting the pages freed.
    fn finish_oldest(&mut self, host: &H) {
        let w = self.oldest().expect("finish_oldest: no write in flight");
        for (folio, shrunk) in finish_write(host, w) {
            self.freed += settle(host, folio, shrunk);
        }
    }
}

/// Shrinks every folio of `folios` (isolated, each with a reference) and
/// the pieces of those that had to be split.
pub fn shrink_list<H: ReclaimHost>(host: &H, folios: Vec<Folio<'static>>) -> Reclaimed {
    shrink_list_aging(host, folios, Age::No)
}

/// [`shrink_list`], aging each folio first when `age` says so (the
/// pieces of a split are not aged again: their folio was old).
fn shrink_list_aging<H: ReclaimHost>(host: &H, folios: Vec<Folio<'static>>, mut age: Age) -> Reclaimed {
    let mut done = Reclaimed::default();
    let mut todo = folios;
    let mut writes = Writes::new();
    while !todo.is_empty() {
        let mut pieces = Pieces::default();
        for batch in todo.chunks(host.unmap_batch().clamp(1, UNMAP_BATCH)) {
            // Written folios are finished (step 6) oldest first: when the
            // disk has no room for another write, when more than the cap
            // are in flight, and at the end.
            let cap = host.max_writes_in_flight().max(1);
            for (folio, shrunk) in shrink_batch(host, batch, &mut pieces, &mut writes, age, cap) {
                done.nr_pages += settle(host, folio, shrunk);
            }
        }
        done.nr_split += pieces.nr_split;
        todo = pieces.folios;
        age = Age::No;
    }
    while !writes.queue.is_empty() {
        writes.finish_oldest(host);
    }
    done.nr_pages += writes.freed;
    done
}

/// The pages `shrunk` freed; drops the caller's reference to a kept
/// `folio`.
fn settle<H: ReclaimHost>(host: &H, folio: Folio<'static>, shrunk: Shrunk) -> usize {
    match shrunk {
        Shrunk::Freed(n) => n,
        Shrunk::Kept(_) => {
            put(host, folio);
            0
        }
    }
}

/// Frees up to about `nr_pages` pages from the inactive tail, balancing
/// the lists first when the inactive one is the shorter; scans at most
/// every listed folio once (plus a little), so a pass over a list of
/// folios nobody can free ends. Task context, no lock held.
pub fn shrink_lru<H: ReclaimHost>(host: &H, nr_pages: usize) -> Reclaimed {
    let mut done = Reclaimed::default();
    let Some(lru) = host.lru() else { return done };
    if !host.any_device() {
        return done;
    }
    let mut scanned = 0;
    let limit = (lru.nr_inactive() + lru.nr_active()) as usize + BALANCE_BATCH;
    while done.nr_pages < nr_pages && scanned < limit {
        if lru.inactive_is_low() {
            lru.balance(BALANCE_BATCH);
        }
        let scan = lru.isolate(SCAN_BATCH);
        if scan.nr_scanned == 0 {
            break;
        }
        scanned += scan.nr_scanned;
        done.add(shrink_list_aging(host, scan.isolated, Age::Yes));
    }
    done
}

/// `MADV_PAGEOUT` for `folios` (each with a reference the caller took,
/// found mapped by one space only: [`crate::pageout::pageout_candidates`]):
/// takes each off the LRU lists and shrinks it now. A folio that is off
/// the lists already is being reclaimed (or paged out) by somebody else: it
/// is left to them, not split or unmapped a second time (the fix of seed
/// 002), and only the caller's reference is dropped.
pub fn pageout<H: ReclaimHost>(host: &H, folios: Vec<Folio<'static>>) -> Reclaimed {
    let mut mine = Vec::with_capacity(folios.len());
    for folio in folios {
        if host.lru().is_some_and(|l| l.remove(folio)) {
            mine.push(folio);
        } else {
            put(host, folio);
        }
    }
    shrink_list(host, mine)
}

/// Unlocks `folio` and puts it back on the list `why` says.
fn keep<H: ReclaimHost>(host: &H, folio: Folio<'static>, why: Kept) -> Shrunk {
    folio.unlock();
    putback(host, folio, why.list());
    Shrunk::Kept(why)
}

/// A folio past steps 1 to 3: locked, isolated with the caller's
/// reference, in the swap cache of `dev`, maybe still mapped.
struct Ready<H: ReclaimHost> {
    folio: Folio<'static>,
    dev: H::Device,
}

/// Steps 1 to 6 of the module doc for the isolated `folios` (each with the
/// caller's reference, which stays: the caller drops it when the folio is
/// kept): steps 1 to 3 folio by folio, step 4 for all of them with one
/// flush per family ([`unmap_batch`]), then steps 5 and 6 folio by folio.
/// Returns what became of each folio settled here; the others' writes are
/// in flight, queued on `writes` ([`finish_write`] says what becomes of
/// them), and at most `cap` stay queued when this returns (the oldest are
/// finished first).
fn shrink_batch<H: ReclaimHost>(
    host: &H,
    folios: &[Folio<'static>],
    pieces: &mut Pieces,
    writes: &mut Writes<H>,
    age: Age,
    cap: usize,
) -> Vec<(Folio<'static>, Shrunk)> {
    let mut settled = Vec::new();
    let mut ready = Vec::with_capacity(folios.len());
    for &folio in folios {
        match prepare(host, folio, pieces, age) {
            Ok(dev) => ready.push(Ready::<H> { folio, dev }),
            Err(shrunk) => settled.push((folio, shrunk)),
        }
    }
    let unmapped = unmap_batch(host, &ready);
    let mut gather: Option<Gather<H>> = None;
    for (Ready { folio, dev }, result) in ready.into_iter().zip(unmapped) {
        let shrunk = match result {
            Err(e) => keep(host, folio, Kept::CouldNotUnmap(e)),
            Ok(()) if folio.total_mapcount() > 0 => keep(host, folio, Kept::StillMapped),
            Ok(()) if !needs_write(host, &folio, &dev) => free_unmapped(host, folio, host.area(&dev)),
            Ok(()) => {
                // Joins the gathered write when its slots follow on.
                let first = folio_entry(&folio).expect("in the swap cache");
                let nr = folio.nr_pages();
                let joins = gather.as_ref().is_some_and(|g| {
                    g.first.ty() == first.ty()
                        && g.first.offset() + g.nr_pages as u64 == first.offset()
                        && g.nr_pages + nr <= host.max_write_pages(&g.dev)
                });
                match gather.as_mut() {
                    Some(g) if joins => {
                        g.folios.push(folio);
                        g.nr_pages += nr;
                    }
                    _ => {
                        let full =
                            gather.replace(Gather { folios: alloc::vec![folio], dev, first, nr_pages: nr });
                        if let Some(g) = full {
                            submit_gather(host, g, writes, &mut settled);
                            while writes.queue.len() >= cap {
                                writes.finish_oldest(host);
                            }
                        }
                    }
                }
                continue;
            }
        };
        settled.push((folio, shrunk));
    }
    if let Some(g) = gather {
        submit_gather(host, g, writes, &mut settled);
        while writes.queue.len() >= cap {
            writes.finish_oldest(host);
        }
    }
    settled
}

/// Step 5's decision for the locked, unmapped cache folio `folio` of
/// `dev`: true when it must be written, with `Dirty` now cleared and
/// `Writeback` set. A clean folio (a copy swap-in kept, not written
/// since: `Dirty` clear, the unmap having moved every leaf's dirty bit to
/// it) already equals its slots; a folio no entry holds any more need not
/// be written at all.
fn needs_write<H: ReclaimHost>(host: &H, folio: &Folio<'static>, dev: &H::Device) -> bool {
    let write = !slots_unused(host.area(dev), folio) && folio.test_and_clear_flag(PageFlag::Dirty);
    if write {
        folio.set_flag(PageFlag::Writeback);
    }
    write
}

/// Submits the gathered write `g` (step 5), finishing our oldest write
/// first while the host has no room; a write that fails at once keeps
/// each of its folios, pushed on `settled`.
fn submit_gather<H: ReclaimHost>(
    host: &H,
    g: Gather<H>,
    writes: &mut Writes<H>,
    settled: &mut Vec<(Folio<'static>, Shrunk)>,
) {
    loop {
        let pending = !writes.queue.is_empty();
        match host.submit_write(&g.dev, g.first, &g.folios, pending) {
            Ok(Some(write)) => {
                writes.queue.push_back(Writing { folios: g.folios, dev: g.dev, write });
                return;
            }
            // No room: our oldest write is finished first.
            Ok(None) => {
                assert!(pending, "reclaim: the host found no room with nothing of ours in flight");
                writes.finish_oldest(host);
            }
            Err(_) => {
                for folio in g.folios {
                    folio.clear_flag(PageFlag::Writeback);
                    folio.set_flag(PageFlag::Dirty); // the slots still hold nothing valid
                    settled.push((folio, keep(host, folio, Kept::WriteFailed)));
                }
                return;
            }
        }
    }
}

/// Steps 1 to 3 of the module doc: the device whose swap cache now holds
/// the locked `folio`, or what became of it (kept: unlocked, back on its
/// list). The caller's reference stays.
fn prepare<H: ReclaimHost>(
    host: &H,
    folio: Folio<'static>,
    pieces: &mut Pieces,
    age: Age,
) -> Result<H::Device, Shrunk> {
    if !folio.try_lock() {
        putback(host, folio, Kept::Locked.list());
        return Err(Shrunk::Kept(Kept::Locked));
    }
    if folio.maybe_pinned() {
        return Err(keep(host, folio, Kept::MaybePinned));
    }
    if age == Age::Yes && folio.total_mapcount() > 0 && test_and_clear_young(host, &folio) > 0 {
        return Err(keep(host, folio, Kept::Referenced));
    }
    match folio_entry(&folio) {
        Some(entry) => match host.device(entry.ty()) {
            Some(d) => Ok(d),
            None => Err(keep(host, folio, Kept::AreaGone)),
        },
        None => {
            let Some(d) = host.alloc_device() else { return Err(keep(host, folio, Kept::NoSwap)) };
            let mut added = add_to_swap(host.area(&d), &folio);
            if let (Err(AddError::NoSpace { .. }), true) = (&added, folio.is_large()) {
                // No run for it whole: split it and swap its pages out one
                // by one (this one now, the others by the caller).
                match split_isolated(host, &folio) {
                    Ok(more) => {
                        pieces.nr_split += 1;
                        pieces.folios.extend(more);
                        added = add_to_swap(host.area(&d), &folio);
                    }
                    Err(why) => return Err(keep(host, folio, Kept::CannotSplit(why))),
                }
            }
            match added {
                Ok(_) => Ok(d), // `Dirty`: the new slots hold nothing of it yet
                Err(AddError::NoSpace { .. }) => Err(keep(host, folio, Kept::SwapFull)),
                Err(AddError::Cache) => Err(keep(host, folio, Kept::CacheRefused)),
            }
        }
    }
}

/// Waits for the write of `w` (step 5) and frees each of its folios (step
/// 6), or keeps them all when the write failed; the caller's references
/// stay, as for [`shrink_batch`].
fn finish_write<H: ReclaimHost>(host: &H, w: Writing<H>) -> Vec<(Folio<'static>, Shrunk)> {
    let Writing { folios, dev, write } = w;
    let written = host.wait_write(write);
    let mut done = Vec::with_capacity(folios.len());
    for folio in folios {
        folio.clear_flag(PageFlag::Writeback);
        let shrunk = if written.is_err() {
            folio.set_flag(PageFlag::Dirty); // the slots still hold nothing valid
            keep(host, folio, Kept::WriteFailed)
        } else {
            free_unmapped(host, folio, host.area(&dev))
        };
        done.push((folio, shrunk));
    }
    done
}

/// Step 6 for the locked, unmapped, written `folio`.
fn free_unmapped<H: ReclaimHost>(host: &H, folio: Folio<'static>, area: &SwapArea) -> Shrunk {
    let nr = folio.nr_pages();
    let mut tries = 0;
    while !folio.try_freeze(1 + nr as i32) {
        let orphan = folio.total_mapcount() == 0 && slots_unused(area, &folio);
        if !orphan || tries == ORPHAN_TRIES {
            // Whoever holds the other reference may write through it (a
            // `FOLL_GET` transfer): the copy just written, or kept, can
            // no longer be trusted.
            folio.set_flag(PageFlag::Dirty);
            return keep(host, folio, Kept::InUse);
        }
        tries += 1;
        host.relax();
    }
    // Frozen: nobody can take a reference; the cache's are gone with the
    // freeze (they were counted in it).
    let _ = delete_from_swap_cache(area, &folio);
    folio.clear_flag(PageFlag::Dirty);
    folio.unlock();
    host.free(folio);
    Shrunk::Freed(nr)
}

/// The aging of [`shrink_lru`] (step 1b of the module doc): clears the
/// young bit of every leaf that maps `folio` in its family, under the
/// family's locks, and returns how many were young. A writable leaf is
/// rewritten dirty as well: on x86 a CPU may set its dirty bit between the
/// walk's read and this write, and the plain store must not lose that
/// (a writable leaf counts as dirty for reclaim anyway, [`crate::unmap`]).
/// No flush: a CPU that still holds the young translation keeps using it
/// unseen until its next flush or switch, as on Linux's x86; the cost is
/// only a folio thought older than it is.
pub fn test_and_clear_young<H: ReclaimHost>(host: &H, folio: &Folio<'static>) -> usize {
    let mem = host.mem();
    host.with_family_locked(folio, |tables| {
        let mut young = 0;
        for table in tables {
            let mut found = Vec::new();
            rmap_walk(folio, &[*table], mem, &mut |m| {
                if m.leaf.young {
                    found.push(m);
                }
            });
            for m in found {
                let old = Leaf { young: false, dirty: m.leaf.dirty || m.leaf.prot.writable, ..m.leaf };
                if let Ok(flush) = table.update_leaf(mem, m.va, m.level, old) {
                    flush.ignore(); // module doc: no flush owed for aging
                    young += 1;
                }
            }
        }
        young
    })
}

/// Step 3's split of the locked, isolated large `folio` (the caller's one
/// reference): under its family's locks, the one space that maps it splits
/// it ([`thp::split_isolated_folio`]). Returns the other pieces still
/// mapped, each isolated with a reference; the caller keeps page 0.
fn split_isolated<H: ReclaimHost>(
    host: &H,
    folio: &Folio<'static>,
) -> Result<Vec<Folio<'static>>, SplitRefused> {
    let (mem, tlb, memmap) = (host.mem(), host.tlb(), host.memmap());
    host.with_family_locked(folio, |tables| {
        let mut mapping = tables.iter().filter(|t| rmap_walk(folio, &[**t], mem, &mut |_| {}) > 0);
        let (Some(table), None) = (mapping.next(), mapping.next()) else {
            return Err(SplitRefused::MappedElsewhere); // by no space, or by several
        };
        thp::split_isolated_folio(table, mem, tlb, memmap, *folio, &mut |f| host.free(f))
    })
}

/// Step 4 for the folios of `ready` still mapped: [`try_to_unmap`] to
/// swap, the folios of one anon handle (one fork family, so one set of
/// locks) that come one after another under one taking of the family's
/// locks, and the TLB flushed **once** for them all, still under the
/// locks, before any of their writes is submitted ("Batched unmap" in the
/// module doc); then the mappings' references go (the caller's and the
/// cache's keep each folio). Returns each folio's result, in order.
fn unmap_batch<H: ReclaimHost>(host: &H, ready: &[Ready<H>]) -> Vec<Result<(), UnmapError>> {
    let (mem, tlb, memmap) = (host.mem(), host.tlb(), host.memmap());
    let mut results = alloc::vec![Ok(()); ready.len()];
    let mut i = 0;
    while i < ready.len() {
        if ready[i].folio.total_mapcount() == 0 {
            i += 1;
            continue;
        }
        let handle = ready[i].folio.anon_handle();
        let end = i + ready[i..].iter().take_while(|r| r.folio.anon_handle() == handle).count();
        let (group, group_results) = (&ready[i..end], &mut results[i..end]);
        let refs: Vec<usize> = host.with_family_locked(&group[0].folio, |tables| {
            let mut owed: Vec<Flush> = tables.iter().map(|t| Flush::none(t.root())).collect();
            let refs = group
                .iter()
                .zip(group_results.iter_mut())
                .map(|(r, result)| {
                    if r.folio.total_mapcount() == 0 {
                        return 0;
                    }
                    let target = Target::Swap { area: host.area(&r.dev) };
                    match try_to_unmap(tables, mem, tlb, memmap, &r.folio, target) {
                        Ok(done) => {
                            for ((o, flush), t) in owed.iter_mut().zip(done.flushes).zip(tables) {
                                *o = core::mem::replace(o, Flush::none(t.root())).merge(flush);
                            }
                            done.refs
                        }
                        Err(e) => {
                            *result = Err(e);
                            0
                        }
                    }
                })
                .collect();
            for flush in owed {
                flush.flush(tlb);
            }
            refs
        });
        for (r, n) in group.iter().zip(refs) {
            for _ in 0..n {
                let last = r.folio.put();
                debug_assert!(!last, "reclaim: the caller's reference keeps the folio");
            }
        }
        i = end;
    }
    results
}
