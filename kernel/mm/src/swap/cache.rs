//! The swap cache seen from a folio: putting an anonymous folio into it
//! (giving it swap slots), finding the folio of an entry again, and taking
//! it out. The slot-to-folio table itself is [`super::area::SwapArea`]'s.
//!
//! ## State of a folio in the swap cache
//!
//! | what | value |
//! | --- | --- |
//! | [`PageFlag::SwapCache`] | set |
//! | [`PageFlag::Uptodate`] | set: its contents are valid (a read in progress or failed leaves it clear) |
//! | `swap` (head only) | the raw entry of page 0; page `i`'s is `swap + i` (seed 000) |
//! | refcount | one reference **per page** held by the cache (Linux does the same), on top of the mappings' and everyone else's |
//! | the area | each of the folio's `nr` slots has `HAS_CACHE` and points at the head |
//!
//! ## Rules
//!
//! - Adding and deleting need the folio lock ([`Folio::set_swap_entry`]
//!   asserts it) and happen under the area's lock for the slot side, so a
//!   lookup sees either the whole folio or none of it.
//! - A lookup takes its reference *inside* the area's lock
//!   ([`super::area::SwapArea::cache_lookup_with`]): while the slot points
//!   at the folio its memory stays a folio, and [`Folio::try_get`] fails
//!   only when reclaim has frozen the count to free it. The caller then locks the folio and
//!   checks it is still the cache folio of that entry ([`still_cached`]):
//!   it may have been deleted between the lookup and the lock.
//! - **`Dirty` says whether the slots can be trusted.** A cache folio
//!   whose `Dirty` is clear holds exactly what its slots hold (it was read
//!   from them, or written to them and not changed since); reclaim frees
//!   such a folio without writing it. Everything that may make the copy
//!   on disk stale sets `Dirty` first: new slots (reclaim's
//!   [`add_to_swap`]), a failed write, a reference reclaim found held by
//!   someone else, the unmap of a dirty or writable leaf
//!   ([`crate::unmap`]), and a write fault that reuses a page of a cache
//!   folio in place ([`crate::fault`]). So a cache folio is mapped
//!   writable only when it is `Dirty` (the checker's `WritableSwapCache`),
//!   and reclaim never trusts a leaf's dirty bit alone (on x86 a CPU may
//!   set one that a racing fork's write-protect loses). Leaving the cache
//!   (its slots freed) sets `Dirty` too: no copy backs it then.

use super::area::SwapArea;
use crate::folio::{folio_of, Folio};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::SwapEntry;
use core::fmt;

/// Why a folio could not get swap slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// No run of `nr` free slots (aligned to `nr`) in the area; a large
    /// folio may be split and its pages retried one by one.
    NoSpace { nr: usize },
    /// The area refused the cache entry (a kernel bug; reported, not
    /// panicked, so reclaim only skips the folio).
    Cache,
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::NoSpace { nr } => write!(f, "swap area full: no free run of {nr} slots"),
            AddError::Cache => write!(f, "swap cache refused the folio's slots"),
        }
    }
}

/// The swap entry of page 0 of the cache folio `folio`
/// ([`Folio::swap_entry`]).
pub fn folio_entry(folio: &Folio<'_>) -> Option<SwapEntry> {
    folio.swap_entry()
}

/// The swap entry `i` slots after `first` (page `i` of a cache folio).
pub fn nth_entry(first: SwapEntry, i: usize) -> SwapEntry {
    first.plus(i as u64)
}

/// Gives the locked anonymous folio `folio` swap slots in `area` and puts
/// it into the swap cache: a run of `nr` slots (aligned to `nr`), the
/// cache's `nr` references, `SwapCache`, `Dirty` (the slots hold nothing
/// of it yet), and the entry on the head.
///
/// Precondition: the caller holds the folio lock and a reference; the
/// folio is `SwapBacked` and not in the swap cache yet.
pub fn add_to_swap(area: &SwapArea, folio: &Folio<'_>) -> Result<SwapEntry, AddError> {
    debug_assert!(folio.is_locked(), "add_to_swap: folio {:#x} not locked", folio.pfn());
    debug_assert!(!folio.test_flag(PageFlag::SwapCache), "add_to_swap: folio already in the swap cache");
    let nr = folio.nr_pages();
    let entry = area.alloc(folio.order()).ok_or(AddError::NoSpace { nr })?;
    // The references first: a lookup that finds the slot may take its own
    // reference at once, and must find the cache's there already.
    for _ in 0..nr {
        folio.get();
    }
    // Its contents are the valid ones (anonymous folios are made without
    // `Uptodate`): swap-in takes a cache folio lacking it for one whose
    // read failed and looks again, so without this a fault that finds the
    // folio still in the cache (write failed, freeze failed, or during
    // writeback) would retry for ever.
    folio.set_flag(PageFlag::Uptodate);
    // The new slots hold nothing of it yet: reclaim must write it.
    folio.set_flag(PageFlag::Dirty);
    folio.set_swap_entry(entry);
    if crate::bugs::enabled(crate::bugs::Bug::SwapcacheTailEntries) {
        folio.bug_replay_record_tail_entries(); // seed 000's per-page records
    }
    folio.set_flag(PageFlag::SwapCache);
    if area.cache_add(entry, nr as u64, folio.pfn()).is_err() {
        folio.clear_flag(PageFlag::SwapCache);
        folio.clear_swap_entry();
        let _ = area.release_cache(entry, nr as u64);
        for _ in 0..nr {
            folio.put(); // the caller's reference keeps it alive
        }
        return Err(AddError::Cache);
    }
    Ok(entry)
}

/// Takes the locked folio `folio` out of the swap cache: its slots stop
/// pointing at it and lose `HAS_CACHE` (a slot no page-table entry holds
/// becomes free), the folio loses `SwapCache` and its entry. Returns how
/// many references the cache held, which the caller drops (after whatever
/// keeps the folio alive meanwhile).
///
/// Precondition: the folio lock, a reference, the folio in the cache of
/// `area` and not under writeback.
pub fn delete_from_swap_cache(area: &SwapArea, folio: &Folio<'_>) -> usize {
    debug_assert!(folio.is_locked(), "delete_from_swap_cache: folio {:#x} not locked", folio.pfn());
    debug_assert!(!folio.test_flag(PageFlag::Writeback), "delete_from_swap_cache: under writeback");
    let entry = folio_entry(folio).expect("delete_from_swap_cache: a cache folio has an entry");
    let nr = folio.nr_pages();
    if let Err(e) = area.cache_delete(entry, nr as u64, folio.pfn()) {
        panic!("delete_from_swap_cache: folio {:#x} at {entry:?}: {e}", folio.pfn());
    }
    folio.clear_flag(PageFlag::SwapCache);
    folio.clear_swap_entry();
    let _ = area.release_cache(entry, nr as u64);
    nr
}

/// The cache folio holding `entry`, with a reference taken for the
/// caller, and the index of `entry`'s page in it; `None` on a miss, and
/// also when the folio's refcount is frozen: reclaim is deleting it after
/// writing it out (the caller's claim then fails with `Busy` until the
/// slot is released, and it retries).
pub fn lookup_get<'m>(area: &SwapArea, memmap: &'m Memmap, entry: SwapEntry) -> Option<(Folio<'m>, usize)> {
    area.cache_lookup_with(entry, |pfn, i| {
        let folio = folio_of(memmap, pfn).expect("a swap-cache slot points at a folio head");
        // Not a plain get: a frozen count must stay 0.
        folio.try_get().then_some((folio, i))
    })
    .flatten()
}

/// True when `folio` (locked by the caller) is still the cache folio that
/// holds `entry` as its page `i`: it may have been deleted and even reused
/// between an unlocked lookup and the lock.
pub fn still_cached(folio: &Folio<'_>, entry: SwapEntry, i: usize) -> bool {
    folio.test_flag(PageFlag::SwapCache)
        && i < folio.nr_pages()
        && folio_entry(folio)
            .is_some_and(|first| first.ty() == entry.ty() && first.offset() + i as u64 == entry.offset())
}

/// True when no page-table entry holds any slot of the cache folio
/// `folio` any more (every slot's count is 0): its contents matter to
/// nobody who could fault them back, and reclaim frees it without writing.
pub fn slots_unused(area: &SwapArea, folio: &Folio<'_>) -> bool {
    let Some(first) = folio_entry(folio) else { return true };
    (0..folio.nr_pages()).all(|i| area.count(nth_entry(first, i)) == 0)
}

/// What [`delete_if_unused`] does with a folio that is still mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMapped {
    /// Leave it in the cache (the usual case: a mapped cache folio is
    /// reclaim's to unmap, write and free).
    Keep,
    /// Take it out all the same: swapoff, whose walk left no entry holding
    /// its slots, so its mappings (read-only) are its only users.
    Delete,
}

/// Takes the locked cache folio `folio` (the caller holds a reference too)
/// out of `area`'s swap cache when nothing needs its slots any more: no
/// page-table entry holds any of them ([`slots_unused`]), it is not under
/// writeback, and (unless `mapped` says [`IfMapped::Delete`]) nothing maps
/// it. Its copy on disk is gone then, so it becomes `Dirty`. A folio is
/// left so by a fault whose entry changed meanwhile, an munmap that raced
/// reclaim, or swapoff's walk; without this it would wait for the next
/// reclaim pass. Returns whether it left the cache. A folio of another
/// area, or out of the cache already, is left alone.
pub fn delete_if_unused(area: &SwapArea, folio: &Folio<'_>, mapped: IfMapped) -> bool {
    debug_assert!(folio.is_locked(), "delete_if_unused: folio {:#x} not locked", folio.pfn());
    let unused = folio.test_flag(PageFlag::SwapCache)
        && (mapped == IfMapped::Delete || folio.total_mapcount() == 0)
        && !folio.test_flag(PageFlag::Writeback)
        && folio_entry(folio).is_some_and(|e| e.ty() == area.ty())
        && slots_unused(area, folio);
    if unused {
        for _ in 0..delete_from_swap_cache(area, folio) {
            let last = folio.put();
            debug_assert!(!last, "delete_if_unused: the caller's reference keeps the folio");
        }
        folio.set_flag(PageFlag::Dirty); // the copy on disk is gone
    }
    unused
}
