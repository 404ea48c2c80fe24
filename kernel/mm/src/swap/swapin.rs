//! Swap-in: bringing the page of a swap entry back and mapping it, in two
//! halves around the sleep for the disk.
//!
//! ## The halves
//!
//! The fault handler ([`crate::fault::handle_fault`]) finds a swap entry
//! under the address space's lock and answers
//! [`crate::fault::FaultOutcome::NeedsSwapIn`]. The caller drops the lock
//! (reading may sleep) and:
//!
//! 1. [`get_swapped_folio`] (with the [`SwapInOptions`] below):
//!    looks up the swap cache; on a hit, takes a reference, locks the
//!    folio and checks it is still the cache folio of that entry. On a miss it **claims** the slot's `HAS_CACHE` first
//!    ([`SwapArea::claim_cache`]) and only then allocates a folio, puts it
//!    into the cache and reads. The claim is what makes the read safe: a
//!    slot whose count is 0 (the entry was freed because somebody else
//!    swapped it in and the slot may already hold another page) cannot be
//!    claimed, and a claimed slot cannot be freed or reused while we read
//!    (seed 002's stale read of a freed slot). Two tasks faulting on the
//!    same entry meet here: one claims and reads, the other finds the
//!    folio in the cache (or `Busy` and retries) and waits for the folio
//!    lock, which the reader holds until the data is in.
//! 2. [`map_swapped_in`], under the space's lock again: **rechecks** that
//!    the entry is still exactly the one that faulted (another task may
//!    have swapped it in and mapped it, or the range may be gone). Only
//!    then it maps the page, and for a large cache folio every other page
//!    of it whose entry still holds its own slot: the folio comes back
//!    whole. Each mapped entry gives its slot count back
//!    ([`SwapArea::free_ref`]).
//!
//! ## The large read
//!
//! A 2 MiB folio that reclaim freed would come back 4 KiB at a time. So on a
//! miss, [`get_swapped_folio`] first asks ([`SwapInOptions::run`], under
//! the space's lock, [`intact_run`]) whether the 512 PTEs of the aligned block around the
//! fault, in one huge-page eligible area, hold one 512-aligned run of
//! entries in order. If so it claims the 512 slots at once (all or none),
//! looks again now that no slot of the run can be freed or reused (a slot
//! reused in between would put another page's data under this mapping),
//! allocates an order-9 folio ([`SwapBackend::alloc_huge_folio`]), puts it
//! into the cache and reads the run in one request. Half 2 then maps it
//! whole, with PTEs. Any refusal (no run, a refused claim, a second look
//! that disagrees, no huge frame) falls back to the order-0 read with
//! nothing claimed; so does a large read that fails: it leaves every slot
//! as it was, and the faulting page alone is read next, so one bad page on
//! the disk costs only its own owner the error (the others come back 4 KiB
//! at a time, and swapoff can finish). Host tests:
//! `a_freed_thp_comes_back_whole_in_one_read`,
//! `a_changed_run_falls_back_to_small_reads`,
//! `a_failed_large_read_falls_back_to_small_reads`,
//! `one_bad_page_in_a_run_costs_only_its_owner` in
//! `tests/swap.rs`; in-guest `swap::freed_thp_comes_back_whole`,
//! `swap::concurrent_faults_on_one_freed_thp`.
//!
//! ## Readahead
//!
//! On a miss the large read did not take, and only while the area is read
//! in order ([`SwapArea::note_fault`]: the fault before was within two
//! windows), [`get_swapped_folio`] reads the faulting page's
//! neighbours with it, in one request: [`SwapInOptions::window`] gives, under the space's
//! lock, the swap entries of the [`READAHEAD_PAGES`]-aligned window of
//! PTEs around the fault ([`readahead_window`]); the places whose entries
//! are the slots next to the faulting one ([`Window::run_of`]) are
//! claimed, the faulting slot first, then outwards up to the first
//! refusal; a second look releases, unread, every neighbour whose PTE no
//! longer holds its slot (the slot may hold another space's page now);
//! the run is read into order-0 folios in contiguous frames
//! ([`SwapBackend::alloc_readahead`]). The neighbours stay in the cache,
//! unlocked, on the LRU lists, with only the cache's references: **not
//! mapped, not exclusive, not dirty**; a later fault finds them as any
//! cache hit, and half 2 decides exclusivity as for any cache folio. Any
//! refusal (no block, a failed read) falls back to the order-0 read, with
//! nothing claimed. No lock is held across the read.
//!
//! ## Mapping the window
//!
//! Readahead saves the reads, not the faults: each neighbour would still
//! fault once, a cache hit that takes the space's lock, the cache lookup
//! and the map. So after half 2 has mapped the faulting page, under the
//! same hold of the space's lock, [`map_around`] maps the neighbours of
//! its window whose PTEs hold the slots beside its slot
//! ([`Window::run_beside`]; the run ends at the first page in memory, as
//! readahead's does) and whose folio is in the swap cache and up to date:
//! each through [`map_swapped_in`] as a **read** fault on it would, so
//! the rules are a fault's: exclusive by its own PTE's bit or the proof
//! that this task alone uses it, read-only and shared otherwise, the
//! clean copy kept on the same terms, writable only when it leaves the
//! cache. What a read fault cannot decide for a write (the clean copy is
//! mapped read-only) is left to that write's own fault, which reuses the
//! exclusive page in place as after any read. A neighbour is also left
//! for its own fault when its folio is not in the cache, not up to date,
//! or locked by anybody (being read, written, reclaimed, migrated): folio
//! locks are only tried under the spin lock, and the lock is what keeps
//! a folio reclaim has found unmapped from being mapped while reclaim
//! frees it. Host tests: `one_fault_maps_the_readahead_window`,
//! `map_around_keeps_the_exclusive_and_clean_rules`,
//! `random_operations_with_map_around_agree_with_a_byte_model` in
//! `tests/swap.rs`; shuttle, `tests/races_swapin.rs`: `map_around_*`.
//!
//! ## Exclusive
//!
//! A page is mapped exclusive (and so writable in a writable area, and
//! never copied on its next write) when its swap entry's exclusive bit says
//! it was exclusive when it was unmapped (seed 004), or when this task is
//! provably its only user: no other reference than ours and the cache's,
//! no other entry holding any of its slots. Without the bit, a page that
//! somebody else holds a plain reference to (a `FOLL_GET` of `get_user_pages`)
//! fails the second test, and writes through that reference would be lost
//! at the next copy on write — the reason the bit exists.
//!
//! A page is mapped writable only when the folio can also leave the swap
//! cache (no entry holds any of its slots any more), which frees its slots
//! and makes it `Dirty` (no copy on disk backs it).
//!
//! ## The clean copy
//!
//! A **read** fault on a page this task is the only user of (exclusive, no
//! other entry holds a slot of the folio, not under writeback) leaves the
//! folio in the swap cache with its slots while the area is less than half
//! full ([`keeps_clean_copies`], Linux's `vm_swap_full` rule): the page is
//! mapped exclusive but read-only, the folio stays clean (`Dirty` clear:
//! its contents equal its slots'), and when reclaim takes it again it
//! unmaps it and frees it without writing ([`crate::reclaim`] step 5).
//! A later write fault reuses the exclusive page in place
//! ([`crate::fault`]'s `wp_fault`), setting the folio's `Dirty` before the
//! leaf becomes writable, so reclaim writes it then (to the same slots).
//! A write fault, a shared page or a fuller area frees the slots at once,
//! as before.

use super::area::SlotError;
use super::area::{ClaimError, SwapArea};
use super::cache::{
    delete_from_swap_cache, delete_if_unused, folio_entry, lookup_get, nth_entry, still_cached, IfMapped,
};
use crate::addr::{PhysAddr, VirtAddr};
use crate::folio::{AnonHandle, FolioMapping};
use crate::folio::{Folio, UnpublishedFolio};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{Decoded, Leaf, Level, NonPresent, PageSize, PageTable, PageTableFormat, Prot};
use crate::pgtable::{SwapEntry, TableMemory};
use crate::thp::{HPAGE_NR, HPAGE_ORDER, HPAGE_SIZE};
use crate::vma::VmaSet;
use alloc::vec::Vec;
use core::fmt;

/// What swap-in needs from the kernel: the disk, memory, and a way to wait.
pub trait SwapBackend {
    /// Why the disk failed a read or a write: the kernel's own error,
    /// which says whose fault it is (the device's, the caller's, memory).
    type IoError: fmt::Display + fmt::Debug;
    /// Reads `nr` slots from `first` on into the contiguous frames at
    /// `frame`. May sleep. Contract (not an `unsafe fn`: `mm` has no
    /// `unsafe`; the kernel checks the first half,
    /// [`crate::folio::folio_covering`]): the frames are pages of one
    /// folio, or (readahead) each frame is an order-0 folio of its own,
    /// which the caller holds locked or unpublished, so nothing else reads
    /// or writes them until this returns.
    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), Self::IoError>;
    /// Writes the `nr` frames at `frame` to the slots from `first` on.
    /// Contract as for [`SwapBackend::read`], except that the folio is
    /// only kept allocated and unchanged by the kernel (locked, with a
    /// reference).
    fn write(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), Self::IoError>;
    /// Waits a little: another task holds a folio lock or a slot claim.
    fn relax(&self);
    /// A fresh order-0 folio for swap-in (unpublished), `None` when memory
    /// is out even after reclaim.
    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>>;
    /// A fresh order-9 folio for the large read of an intact run
    /// (unpublished, contents undefined: the read fills them all), `None`
    /// when no 2 MiB block is free; swap-in then reads the one page. It
    /// should not reclaim hard for it. The default never has one.
    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        None
    }
    /// `nr` (at most [`READAHEAD_PAGES`]) fresh order-0 folios in `nr`
    /// physically contiguous frames, in frame order (unpublished, contents
    /// undefined), for a readahead read in one request
    /// ([`crate::frame::FrameAllocator::alloc_folio_run`]); `None` when no
    /// such block is free: swap-in then reads the one page. It should not
    /// reclaim for it. The default never has one (no readahead).
    fn alloc_readahead(&self, nr: usize) -> Option<Vec<UnpublishedFolio<'static>>> {
        let _ = nr;
        None
    }
    /// Gives back a folio whose last reference is gone.
    fn free_folio(&self, folio: Folio<'static>);
}

/// Why [`get_swapped_folio`] brought nothing back; `E` is the backend's
/// I/O error ([`SwapBackend::IoError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapInError<E> {
    /// The slot is no longer held by any entry: the faulting entry changed
    /// meanwhile (somebody else swapped it in). Retry the access.
    Stale,
    /// No memory for the folio.
    NoMemory,
    /// The disk failed the read (its error says whose fault it is).
    Io(E),
    /// The entry names no slot of the area: a page table holds an entry
    /// the area never gave out (a kernel bug, or memory corruption).
    Slot(SlotError),
}

/// What swap-in brings back: the cache folio holding the entry (locked,
/// with a reference for the caller) and the entry's page in it, or why not.
pub type SwappedIn<B> = Result<(Folio<'static>, usize), SwapInError<<B as SwapBackend>::IoError>>;

/// Which reads besides the faulting page's alone a miss may try (module
/// doc): each is a look at the page table, which the kernel takes under
/// the space's lock; the answer is a snapshot, made safe by the claims and
/// the look after them. `SwapInOptions::default()` tries neither: every
/// miss reads the one page.
#[derive(Clone, Copy, Default)]
pub struct SwapInOptions<'a> {
    /// The large read: the first entry of the intact run around the
    /// faulting page ([`intact_run`]), or `None`. Asked before the claim
    /// (which slots to claim) and once more after it (the run is still
    /// intact now that no slot of it can be freed or reused).
    pub run: Option<&'a dyn Fn() -> Option<SwapEntry>>,
    /// Readahead, on a miss the large read did not take: the swap entries
    /// of the PTEs around the faulting page ([`readahead_window`]), or
    /// `None`. Asked before the claims (which neighbours to claim) and
    /// once more after them (each neighbour's PTE still holds its slot, so
    /// the slot holds that page and no other).
    pub window: Option<&'a dyn Fn() -> Option<Window>>,
}

/// The cache folio holding `entry`, locked, with a reference for the
/// caller, and the index of `entry`'s page in it (module doc, half 1).
/// `handle`/`index` name the faulting page (`index` = its `va >> 12`), for
/// a folio this call reads in. On a miss, `options` says which larger
/// reads to try first ([`SwapInOptions`]); any refusal falls back to the
/// order-0 read.
pub fn get_swapped_folio<B: SwapBackend>(
    area: &SwapArea,
    memmap: &'static Memmap,
    backend: &B,
    entry: SwapEntry,
    handle: AnonHandle,
    index: u64,
    options: SwapInOptions<'_>,
) -> SwappedIn<B> {
    let none_run = || None;
    let none_window = || None;
    let run: &dyn Fn() -> Option<SwapEntry> = options.run.unwrap_or(&none_run);
    let window: &dyn Fn() -> Option<Window> = options.window.unwrap_or(&none_window);
    let mut try_run = true;
    // Readahead only while the area is read in order: the fault before
    // this one (a miss, or a hit on a page read ahead) was near it. A
    // random access pattern reads no neighbours it will not use.
    let mut try_window =
        area.note_fault(entry).is_none_or(|prev| prev.abs_diff(entry.offset()) < 2 * READAHEAD_PAGES as u64);
    loop {
        if let Some((folio, i)) = lookup_get(area, memmap, entry) {
            while !folio.try_lock() {
                backend.relax();
            }
            if !still_cached(&folio, entry, i) || !folio.test_flag(PageFlag::Uptodate) {
                // Deleted (and maybe reused) before we locked it, or its
                // read failed and it is on its way out: look again.
                folio.unlock();
                if folio.put() {
                    backend.free_folio(folio);
                }
                continue;
            }
            return Ok((folio, i));
        }
        // Once per fault: a run that was not intact (or no huge frame)
        // will not become so by waiting.
        if core::mem::take(&mut try_run) {
            if let Some(got) = read_run(area, backend, entry, handle, index, run) {
                return got;
            }
        }
        if crate::bugs::enabled(crate::bugs::Bug::PageoutSplitRace) && area.count(entry) == 1 {
            let Some(new) = backend.alloc_folio() else { return Err(SwapInError::NoMemory) };
            return read_new(area, backend, alloc::vec![new], entry, 0, handle, index, ReadInto::Private);
        }
        // Once per fault too: a refused readahead leaves nothing claimed.
        if core::mem::take(&mut try_window) {
            if let Some(got) = read_ahead(area, backend, entry, handle, index, window) {
                return got;
            }
        }
        match area.claim_cache(entry, 1) {
            Ok(()) => {}
            Err(ClaimError::Busy { .. }) => {
                backend.relax();
                continue;
            }
            Err(ClaimError::Unused { .. }) => return Err(SwapInError::Stale),
            Err(ClaimError::Slot(e)) => return Err(SwapInError::Slot(e)),
        }
        let Some(new) = backend.alloc_folio() else {
            let _ = area.release_cache(entry, 1);
            return Err(SwapInError::NoMemory);
        };
        return read_new(area, backend, alloc::vec![new], entry, 0, handle, index, ReadInto::Cache);
    }
}

/// How many pages a readahead window spans: the faulting page and up to
/// 7 neighbours (Linux's default, `page_cluster` 3).
pub const READAHEAD_PAGES: usize = 8;

/// The swap entries of the PTEs of a readahead window, a snapshot taken
/// under the space's lock ([`readahead_window`]): the
/// [`READAHEAD_PAGES`]-aligned block of pages from `start`, of which the
/// faulting page is number `at`; `entries[j]` is the swap entry of page
/// `j` when its PTE holds one and the page lies in the faulting page's
/// area, else `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: VirtAddr,
    pub at: usize,
    pub entries: [Option<SwapEntry>; READAHEAD_PAGES],
}

impl Window {
    /// The places `lo..hi` around `at` whose entries are the slots of
    /// `entry`'s area next to `entry`'s, in order (place `at + k` holds
    /// `entry + k`): what one read of consecutive slots can bring back.
    /// `at..at + 1` alone when no neighbour is; `None` when the window
    /// does not hold `entry` at `at`.
    pub fn run_of(&self, entry: SwapEntry) -> Option<(usize, usize)> {
        if self.entries.get(self.at).copied().flatten() != Some(entry) {
            return None;
        }
        Some(self.run_beside(entry))
    }

    /// [`Window::run_of`] without asking place `at` to hold `entry` (it
    /// no longer does once its page is mapped: [`map_around`]).
    pub fn run_beside(&self, entry: SwapEntry) -> (usize, usize) {
        let next = |j: usize| {
            let want = (entry.offset() + j as u64).checked_sub(self.at as u64);
            self.entries[j].is_some_and(|e| e.ty() == entry.ty() && Some(e.offset()) == want)
        };
        let mut lo = self.at;
        while lo > 0 && next(lo - 1) {
            lo -= 1;
        }
        let mut hi = self.at + 1;
        while hi < READAHEAD_PAGES && next(hi) {
            hi += 1;
        }
        (lo, hi)
    }
}

/// The readahead window around the swap entry `entry` at `page`
/// ([`Window`]), or `None` when `page` lies in no area. Only PTEs of the
/// area of `page` count (a neighbour in another area, or past its end,
/// is `None`). The caller holds the space's lock; the answer is a
/// snapshot, made safe by the claims and the second look.
pub fn readahead_window<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    vmas: &VmaSet,
    page: VirtAddr,
    entry: SwapEntry,
) -> Option<Window> {
    let _ = entry;
    let vma = vmas.find(page)?;
    let span = READAHEAD_PAGES as u64 * 4096;
    let block = page.align_down(span);
    let start = block.as_u64().max(vma.start.as_u64());
    let end = (block.as_u64() + span).min(vma.end.as_u64());
    let mut w = Window {
        start: block,
        at: ((page.as_u64() - block.as_u64()) / 4096) as usize,
        entries: [None; READAHEAD_PAGES],
    };
    table.visit(mem, VirtAddr::new(start), VirtAddr::new(end), &mut |va, level, e, _| {
        if let (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, .. })) = (level, e) {
            w.entries[((va.as_u64() - block.as_u64()) / 4096) as usize] = Some(entry);
        }
    });
    Some(w)
}

/// The readahead of a miss on `entry` (module doc): `None` when it does
/// not apply or anything refuses (nothing is left claimed, and the
/// faulting page is read alone); else what the read gave, the faulting
/// page's folio.
fn read_ahead<B: SwapBackend>(
    area: &SwapArea,
    backend: &B,
    entry: SwapEntry,
    handle: AnonHandle,
    index: u64,
    window: &dyn Fn() -> Option<Window>,
) -> Option<SwappedIn<B>> {
    let w = window()?;
    let (lo, hi) = w.run_of(entry)?;
    if hi - lo < 2 {
        return None;
    }
    let at = w.at;
    let slot = |j: usize| w.entries[j].expect("run_of checked every place of the run");
    let release = |j: usize| {
        if let Err(e) = area.release_cache(slot(j), 1) {
            panic!("get_swapped_folio: releasing the claimed slot {:?}: {e}", slot(j));
        }
    };
    // The faulting slot first: its refusals (busy, unused, no slot) are
    // the order-0 path's to handle. Then outwards, up to the first
    // neighbour refused: a slot another task reads or has in the cache,
    // or one no entry holds any more.
    area.claim_cache(entry, 1).ok()?;
    let claim = |j: usize| area.claim_cache(slot(j), 1).is_ok();
    let mut a = at;
    while a > lo && claim(a - 1) {
        a -= 1;
    }
    let mut b = at + 1;
    while b < hi && claim(b) {
        b += 1;
    }
    // Claimed, no neighbour's slot can be freed or reused now: does its
    // PTE still hold it? If not, the slot may hold another space's page,
    // which must not be read in under this space's name.
    let again = window();
    let holds = |j: usize| again.is_some_and(|v| v.start == w.start && v.entries[j] == w.entries[j]);
    let (mut a2, mut b2) = (at, at + 1);
    while a2 > a && holds(a2 - 1) {
        a2 -= 1;
    }
    while b2 < b && holds(b2) {
        b2 += 1;
    }
    (a..a2).chain(b2..b).for_each(release);
    let news = if b2 - a2 >= 2 { backend.alloc_readahead(b2 - a2) } else { None };
    let Some(news) = news else {
        (a2..b2).for_each(release);
        return None;
    };
    assert!(
        news.len() == b2 - a2 && news.iter().all(|f| f.order() == 0),
        "alloc_readahead gave other folios than asked"
    );
    match read_new(area, backend, news, slot(a2), at - a2, handle, index, ReadInto::Cache) {
        // A bad neighbour must not cost the faulting page: the failed
        // read left every slot as it was, and the order-0 read follows.
        Err(SwapInError::Io(_)) => None,
        got => Some(got),
    }
}

/// The first entry of the intact run around the swap entry `entry` at
/// `page`, or `None`: the 2 MiB block around `page` lies in one
/// huge-page eligible area ([`VmaSet::thp_eligible`]) and its 512 PTEs
/// hold the swap entries `first + 0 ..= first + 511` of `entry`'s area, in
/// order, with `first`'s offset 512-aligned. The exclusive bits do not
/// matter (half 2 reads each page's own). The caller holds the space's
/// lock; the answer is a snapshot, made safe by the claim and the recheck.
pub fn intact_run<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    vmas: &VmaSet,
    page: VirtAddr,
    entry: SwapEntry,
) -> Option<SwapEntry> {
    if !vmas.thp_eligible(page) {
        return None;
    }
    let block = page.align_down(HPAGE_SIZE).as_u64();
    let i = (page.as_u64() - block) / 4096;
    let first = SwapEntry::new(entry.ty(), entry.offset().checked_sub(i)?).ok()?;
    if !first.offset().is_multiple_of(HPAGE_NR as u64) {
        return None; // cheap: most runs of small pages fail here
    }
    // One walk over the block: 512 PTEs, each the next entry of the run.
    let mut in_order = 0u64;
    table.visit(mem, VirtAddr::new(block), VirtAddr::new(block + HPAGE_SIZE), &mut |va, level, e, _| {
        let j = (va.as_u64() - block) / 4096;
        if let (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, .. })) = (level, e) {
            if j == in_order && entry.ty() == first.ty() && entry.offset() == first.offset() + j {
                in_order += 1;
            }
        }
    });
    (in_order == HPAGE_NR as u64).then_some(first)
}

/// The large read of a miss on `entry` (module doc): `None` when it does
/// not apply or anything refuses (nothing is left claimed); else what the
/// read gave.
fn read_run<B: SwapBackend>(
    area: &SwapArea,
    backend: &B,
    entry: SwapEntry,
    handle: AnonHandle,
    index: u64,
    run: &dyn Fn() -> Option<SwapEntry>,
) -> Option<SwappedIn<B>> {
    let first = run()?;
    let i = entry.offset().checked_sub(first.offset())? as usize;
    if first.ty() != entry.ty() || i >= HPAGE_NR || !first.offset().is_multiple_of(HPAGE_NR as u64) {
        return None;
    }
    // All 512 or none: a refused claim leaves nothing claimed.
    area.claim_cache(first, HPAGE_NR as u64).ok()?;
    let release = || {
        if let Err(e) = area.release_cache(first, HPAGE_NR as u64) {
            panic!("get_swapped_folio: releasing the claimed run {first:?}: {e}");
        }
    };
    // No slot of the run can be freed (or reused) now; is every one still
    // held by its PTE? If not, a slot may already hold another page.
    if run() != Some(first) {
        release();
        return None;
    }
    let Some(new) = backend.alloc_huge_folio() else {
        release();
        return None;
    };
    assert_eq!(new.order(), HPAGE_ORDER, "alloc_huge_folio gave a folio of another order");
    match read_new(area, backend, alloc::vec![new], first, i, handle, index, ReadInto::Cache) {
        // One bad page must not make the 511 others unreadable: the
        // failed read left every slot as it was (unclaimed, its count and
        // data kept), so the order-0 read of the faulting page follows,
        // and only a fault on the bad page itself gets the error.
        Err(SwapInError::Io(_)) => None,
        got => Some(got),
    }
}

/// Where [`read_new`] puts the folio it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadInto {
    /// The swap cache, at the slots the caller claimed.
    Cache,
    /// Nowhere: a private folio, its slot unclaimed. Only the mistake of
    /// `bug=pageout-split-race` (seed 002) reads so, as Linux's fast path
    /// for synchronous devices did: nothing keeps the slot used meanwhile,
    /// so another task may swap the page in and free it, a later swap-out
    /// may be handed the same slot and put the same entry value back in the
    /// page-table entry, and [`map_swapped_in`]'s recheck passes and maps
    /// what this read returned, a stale copy.
    Private,
}

/// Reads the slots from `first` on into the fresh folios `news`, whose
/// frames are contiguous (one folio of any order, or order-0 folios in
/// frame order: readahead), in one request: into the swap cache at those
/// claimed slots, or privately ([`ReadInto`], one folio). Page `at` of the
/// run is the faulting one, at `index` of `handle`; each folio is named
/// after its place next to it. On success the faulting page's folio is
/// returned locked, with the caller's reference (and the cache's), and
/// its page index; every other folio is left in the cache, unlocked, on
/// the LRU lists, with only the cache's references: unmapped and not
/// exclusive to anybody until a fault maps it. On a read error every
/// folio is out of the cache again and freed, and the slots keep their
/// data and counts.
#[allow(clippy::too_many_arguments)]
fn read_new<B: SwapBackend>(
    area: &SwapArea,
    backend: &B,
    news: Vec<UnpublishedFolio<'static>>,
    first: SwapEntry,
    at: usize,
    handle: AnonHandle,
    index: u64,
    into: ReadInto,
) -> SwappedIn<B> {
    let mut folios: Vec<Folio<'static>> = Vec::with_capacity(news.len());
    let mut pick = None;
    let mut p = 0usize; // the run's page at which the next folio starts
    for mut new in news {
        let nr = new.nr_pages();
        // Plain stores while nobody else can see it (seed 003).
        new.nonatomic_set_flag(PageFlag::SwapBacked);
        new.nonatomic_set_flag(PageFlag::Locked);
        new.set_mapping(FolioMapping::Anon(handle), index + p as u64 - at as u64);
        let folio = new.publish(); // our reference
        if into == ReadInto::Cache {
            for _ in 0..nr {
                folio.get(); // the cache's, one per page
            }
            let e = nth_entry(first, p);
            folio.set_swap_entry(e);
            folio.set_flag(PageFlag::SwapCache);
            if let Err(err) = area.cache_add(e, nr as u64, folio.pfn()) {
                panic!("get_swapped_folio: claimed slots {e:?} (+{nr}) refused by the cache: {err}");
            }
        }
        if (p..p + nr).contains(&at) {
            pick = Some((folios.len(), at - p));
        }
        folios.push(folio);
        p += nr;
    }
    let (k, i) = pick.expect("read_new: the faulting page lies in the run");
    match backend.read(first, folios[0].pfn().phys(), p) {
        Ok(()) => {
            for (j, folio) in folios.iter().enumerate() {
                folio.set_flag(PageFlag::Uptodate);
                // A neighbour whose entry went while it was read (an
                // munmap after the second look: its free found no folio
                // in the cache yet) is needed by nobody: out and freed
                // now, not left for reclaim.
                if j != k && delete_if_unused(area, folio, IfMapped::Keep) {
                    folio.unlock();
                    if folio.put() {
                        backend.free_folio(*folio);
                    }
                    continue;
                }
                // A new folio goes on the LRU lists here, and only here: a
                // cache hit is on them already, or isolated by reclaim,
                // which puts it back itself.
                if let Some(lru) = crate::lru::registered() {
                    lru.add(*folio);
                }
                if j != k {
                    // A neighbour: the cache's references keep it, unless
                    // an munmap freed its entry and took it out of the
                    // cache the moment it was unlocked.
                    folio.unlock();
                    if folio.put() {
                        backend.free_folio(*folio);
                    }
                }
            }
            Ok((folios[k], i))
        }
        Err(e) => {
            for folio in folios {
                // Out of the cache again; the slots keep their data and
                // their counts, so a later fault may try the read again.
                let refs = if into == ReadInto::Cache { delete_from_swap_cache(area, &folio) } else { 0 };
                folio.unlock();
                for _ in 0..refs {
                    folio.put();
                }
                if folio.put() {
                    backend.free_folio(folio);
                }
            }
            Err(SwapInError::Io(e))
        }
    }
}

/// True while `area` is less than half full (and keeping is not turned
/// off, [`SwapArea::set_keep_clean`]): then a page swapped in by a
/// read fault keeps its slot and its clean copy in the swap cache (module
/// doc, "The clean copy"); above that, slots are worth more than the
/// writes they save, and swap-in frees them as before.
pub fn keeps_clean_copies(area: &SwapArea) -> bool {
    // An area being swapped off (allocation stopped) keeps nothing.
    area.keep_clean() && !area.alloc_stopped() && area.nr_used() * 2 < area.nr_slots()
}

/// What [`map_swapped_in`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapInOutcome {
    /// `pages` entries now map the folio (1 for a small one).
    Mapped { pages: usize, exclusive: bool, writable: bool },
    /// The faulting entry is no longer the swap entry that faulted: nothing
    /// was done; retry the access.
    Changed,
}

/// Half 2 of the module doc: maps the locked cache folio `folio` (page `i`
/// holds `entry`) at `page` if the entry there is still `entry` (with
/// exclusive bit `was_exclusive`). The caller holds the space's lock, the
/// folio lock and a reference (which it keeps: the mappings take their
/// own).
#[allow(clippy::too_many_arguments)]
pub fn map_swapped_in<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    vmas: &VmaSet,
    area: &SwapArea,
    folio: &Folio<'_>,
    i: usize,
    page: VirtAddr,
    entry: SwapEntry,
    write: bool,
    user: bool,
) -> SwapInOutcome {
    let Some(vma) = vmas.find(page) else { return SwapInOutcome::Changed };
    let swap_at = |va: VirtAddr| match table.lookup(mem, va) {
        (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, exclusive })) => Some((entry, exclusive)),
        _ => None,
    };
    // A folio outside the swap cache comes only from `read_new` into a
    // private folio (bug=pageout-split-race): the recheck of the entry is
    // all that is left of the protocol, and the page is taken as the
    // task's own.
    let cached = folio.test_flag(PageFlag::SwapCache);
    if swap_at(page).map(|(e, _)| e) != Some(entry) || (cached && !still_cached(folio, entry, i)) {
        return SwapInOutcome::Changed;
    }
    let (pages, exclusive, writable, leave_cache) = if cached {
        let first = folio_entry(folio).expect("still_cached checked the entry");
        let nr = folio.nr_pages();
        let base = page.as_u64() - (i as u64) * 4096;
        // The pages to map: the faulting one, and every other page of the
        // folio whose entry (in the same area) still holds its own slot.
        let mut pages = Vec::new();
        for j in 0..nr {
            let va = VirtAddr::new(base + j as u64 * 4096);
            if !vma.contains(va) {
                continue;
            }
            if let Some((e, excl)) = swap_at(va).filter(|(e, _)| *e == nth_entry(first, j)) {
                pages.push((j, va, e, excl));
            }
        }
        // After this, will any entry still hold a slot of the folio?
        let held_elsewhere = (0..nr)
            .any(|j| area.count(nth_entry(first, j)) > pages.iter().filter(|p| p.0 == j).count() as u8);
        let sole_user = folio.total_mapcount() == 0 && folio.refcount() == 1 + nr as i32 && !held_elsewhere;
        let exclusive = pages.iter().all(|p| p.3) || sole_user;
        let unheld = !held_elsewhere && !folio.test_flag(PageFlag::Writeback);
        // A read fault keeps the clean copy (module doc, "The clean copy"):
        // mapped read-only, the folio stays in the cache with its slots, so
        // reclaiming it again writes nothing.
        let keep_clean =
            unheld && !write && exclusive && !folio.test_flag(PageFlag::Dirty) && keeps_clean_copies(area);
        let leave_cache = unheld && !keep_clean;
        let writable = vma.prot.write && exclusive && leave_cache;
        // Not exclusive enough to leave the cache: mapped shared (a later
        // write copies). A cache folio is mapped writable only by a write
        // fault's reuse, which makes it `Dirty` first.
        (pages, exclusive && (leave_cache || keep_clean), writable, leave_cache)
    } else {
        (alloc::vec![(0, page, entry, true)], true, vma.prot.write, false)
    };
    let prot = Prot { writable, ..vma.prot.to_prot(user) };
    for &(j, va, e, _) in &pages {
        if let Err(err) = area.free_ref(e) {
            panic!("map_swapped_in: an entry held slot {e:?} but the area says {err}");
        }
        let (_, flush) = table.clear(mem, va, Level::Pte).expect("a swap PTE was just read here");
        flush.ignore(); // a swap entry is never cached by a TLB
        let frame = folio.pfn().plus(j as u64).phys();
        let leaf = Leaf { frame, size: PageSize::Size4K, prot, dirty: writable && write, young: true };
        table.map(mem, va, leaf).expect("the slot was just cleared").ignore();
        folio.add_page_mapcount(j, 1);
        folio.get();
        if exclusive {
            folio.page(j).set_flag(PageFlag::AnonExclusive);
        }
    }
    if leave_cache {
        let refs = delete_from_swap_cache(area, folio);
        for _ in 0..refs {
            folio.put(); // the caller's reference and the mappings' remain
        }
    }
    if leave_cache || !cached {
        folio.set_flag(PageFlag::Dirty); // no copy on disk backs it now
    }
    SwapInOutcome::Mapped { pages: pages.len(), exclusive, writable }
}

/// Half 2's fault-around (module doc, "Mapping the window"): after
/// [`map_swapped_in`] mapped the page at `page`, whose PTE held `entry`,
/// maps its neighbours in the [`READAHEAD_PAGES`] window around it whose
/// PTEs hold the slots next to `entry`'s ([`Window::run_beside`]) and whose
/// folio is in the swap cache, up to date and not locked by anybody: each
/// as a read fault on it would ([`map_swapped_in`] with `write` false),
/// the exclusive bit and the clean copy decided by its own PTE and folio.
/// A folio somebody holds locked (being read, written, reclaimed,
/// migrated) or that is not in the cache is left for its own fault.
/// Returns how many pages it mapped.
///
/// The caller holds the space's lock (the same hold as the
/// [`map_swapped_in`] before it) and the faulting folio's lock; folio
/// locks are only tried here. `free` gives back a folio whose last
/// reference this drops (one deleted from the cache since its lookup).
#[allow(clippy::too_many_arguments)]
pub fn map_around<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    vmas: &VmaSet,
    area: &SwapArea,
    memmap: &'static Memmap,
    page: VirtAddr,
    entry: SwapEntry,
    user: bool,
    free: &dyn Fn(Folio<'static>),
) -> usize {
    let Some(w) = readahead_window(table, mem, vmas, page, entry) else { return 0 };
    let (lo, hi) = w.run_beside(entry);
    let mut mapped = 0;
    for j in (lo..hi).filter(|&j| j != w.at) {
        let Some(e) = w.entries[j] else { continue };
        let va = VirtAddr::new(w.start.as_u64() + j as u64 * 4096);
        let Some((folio, i)) = lookup_get(area, memmap, e) else { continue };
        // Tried, never waited for: we hold a spin lock (and the faulting
        // folio's lock: a page of that folio is mapped already, or not
        // ours to map).
        if folio.try_lock() {
            if still_cached(&folio, e, i) && folio.test_flag(PageFlag::Uptodate) {
                // Rechecks `e` at `va` (a page of a large folio mapped by
                // an earlier neighbour is no swap entry any more).
                if let SwapInOutcome::Mapped { pages, .. } =
                    map_swapped_in(table, mem, vmas, area, &folio, i, va, e, false, user)
                {
                    mapped += pages;
                }
            }
            folio.unlock();
        }
        if folio.put() {
            free(folio);
        }
    }
    mapped
}
