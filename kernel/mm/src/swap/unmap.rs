//! Unmapping a folio to swap: every page-table entry that maps a page of
//! the folio, found through the reverse map ([`crate::rmap`]), becomes a
//! swap entry for that page's slot, carrying the page's anon-exclusive
//! state in the entry's exclusive bit (seed 004).
//!
//! ## What one entry goes through (mm-reference §6, §8)
//!
//! For page `i` of a folio in the swap cache with first entry `e`:
//! 1. the slot `e + i` gains one count ([`SwapArea::dup`]): a page-table
//!    entry now holds it;
//! 2. the entry is replaced by the swap entry `e + i` with
//!    `exclusive` = the page's [`PageFlag::AnonExclusive`];
//! 3. the page loses `AnonExclusive` (the information now lives in the
//!    entry, where swap-in finds it again) and one mapcount; the mapping's
//!    reference is dropped by the caller after the TLB flush.
//!
//! With the bug-replay switch [`Bug::ForgetAnonExclusive`] on, step 2
//! always writes `exclusive = false`: the mistake of seed 004, after which a
//! swapped-in page that somebody else still holds a plain (`FOLL_GET`)
//! reference to can no longer be proven exclusive, is mapped read-only,
//! and is copied on the next write, so writes through that reference are
//! lost.
//!
//! ## Whole or nothing
//!
//! A large folio is unmapped wholly or not at all. Linux needs care for
//! that (seed 002: its walk took the page-table lock only at the first
//! present entry, so a transiently cleared entry at the front was skipped
//! and the folio ended half unmapped). Here the caller holds the lock of
//! **every** space that may map the folio (its fork family) for the whole
//! operation, and page-table entries of a space change only under its
//! lock, so the walk cannot see a transient entry; everything that could
//! refuse (a pin, a swap count at its limit) is checked before the first
//! entry changes.
//!
//! Pins: `get_user_pages` takes the space's lock too, so with every family
//! lock held no pin can appear during the operation, and one check of
//! [`Folio::maybe_pinned`] at the start is enough (Linux, whose GUP-fast
//! takes no lock, clears the entry first and checks after a barrier). A
//! pinned folio is never unmapped: the pin's owner must keep seeing the
//! page the task sees.
//!
//! A PMD-mapped folio is first split into 512 PTEs ([`split_huge_pmd`]),
//! which keeps the folio whole; the PTEs then become swap entries.

use super::area::{SwapArea, MAX_SWAP_COUNT};
use super::cache::{folio_entry, nth_entry};
use crate::bugs::{self, Bug};
use crate::folio::Folio;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{Flush, Level, NonPresent, PageTable, PageTableFormat, PgError, TableMemory, TlbHooks};
use crate::rmap::rmap_walk;
use crate::thp::split_huge_pmd;
use alloc::vec::Vec;
use core::fmt;

/// Why a folio was left mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// The folio may be pinned: it stays mapped (and exclusive).
    Pinned,
    /// A slot would exceed [`MAX_SWAP_COUNT`] page-table entries.
    SwapCountFull { offset: u64 },
    /// The folio is not in the swap cache (a caller's bug).
    NotInSwapCache,
    /// A page table refused a change (out of memory for a PMD split).
    Table(PgError),
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapError::Pinned => write!(f, "the folio may be pinned"),
            UnmapError::SwapCountFull { offset } => {
                write!(f, "swap slot {offset:#x} is held by {MAX_SWAP_COUNT} entries already")
            }
            UnmapError::NotInSwapCache => write!(f, "the folio has no swap slots"),
            UnmapError::Table(e) => write!(f, "page table: {e:?}"),
        }
    }
}

/// What [`unmap_to_swap`] did.
#[derive(Debug)]
pub struct Unmapped {
    /// Entries replaced: the mapping references the caller drops once the
    /// flushes are over.
    pub refs: usize,
    /// Per table (same order as passed in): what must be flushed before
    /// those references go.
    pub flushes: Vec<Flush>,
}

/// Replaces every mapping of `folio` in `tables` by swap entries, as the
/// module doc says. The caller holds the lock of every table in `tables`
/// (the whole fork family of the folio), the folio lock and a reference,
/// and the folio is in `area`'s swap cache. PMD splits are flushed through
/// `hooks` on the spot (break-before-make); the returned flushes cover the
/// replaced PTEs.
pub fn unmap_to_swap<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: &Folio<'_>,
    area: &SwapArea,
) -> Result<Unmapped, UnmapError> {
    debug_assert!(folio.is_locked(), "unmap_to_swap: folio {:#x} not locked", folio.pfn());
    let first = folio_entry(folio).ok_or(UnmapError::NotInSwapCache)?;
    if folio.maybe_pinned() {
        return Err(UnmapError::Pinned);
    }
    // Count what each slot will gain, and refuse before changing anything.
    let mut gain = alloc::vec![0u32; folio.nr_pages()];
    let mut pmds = Vec::new();
    for (s, table) in tables.iter().enumerate() {
        rmap_walk(folio, &[*table], mem, &mut |m| match m.level {
            Level::Pmd => {
                pmds.push((s, m.va));
                gain.iter_mut().for_each(|g| *g += 1);
            }
            _ => gain[m.page] += 1,
        });
    }
    for (i, g) in gain.iter().enumerate() {
        let e = nth_entry(first, i);
        if area.count(e) as u32 + g > MAX_SWAP_COUNT as u32 {
            return Err(UnmapError::SwapCountFull { offset: e.offset() });
        }
    }
    for (s, va) in pmds {
        split_huge_pmd(tables[s], mem, hooks, memmap, va).map_err(UnmapError::Table)?;
    }
    let mut flushes: Vec<Flush> = tables.iter().map(|t| Flush::none(t.root())).collect();
    let mut refs = 0;
    for (s, table) in tables.iter().enumerate() {
        let mut ptes = Vec::new();
        rmap_walk(folio, &[*table], mem, &mut |m| ptes.push((m.va, m.page)));
        for (va, i) in ptes {
            let entry = nth_entry(first, i);
            let page = folio.page(i);
            let exclusive =
                page.test_flag(PageFlag::AnonExclusive) && !bugs::enabled(Bug::ForgetAnonExclusive);
            area.dup(entry).expect("unmap_to_swap: counts were checked under the family's locks");
            let (_, flush) = table
                .set_nonpresent(mem, va, Level::Pte, NonPresent::Swap { entry, exclusive })
                .expect("unmap_to_swap: the rmap walk just found a PTE leaf here");
            page.clear_flag(PageFlag::AnonExclusive);
            folio.add_page_mapcount(i, -1);
            flushes[s] = core::mem::replace(&mut flushes[s], Flush::none(table.root())).merge(flush);
            refs += 1;
        }
    }
    Ok(Unmapped { refs, flushes })
}
