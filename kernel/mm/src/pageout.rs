//! `MADV_PAGEOUT`'s choice of folios: which folios of a range one address
//! space pages out, and splitting the large folios the range only partly
//! covers so that their covered pages can go and the rest stays; and
//! `MADV_COLD`, which deactivates the same choice of folios instead.
//!
//! ## What is chosen ([`pageout_candidates`])
//!
//! Under the space's lock, over `[start, end)`:
//! 1. every **large** anonymous folio of this space that the range cuts
//!    (some of its pages inside, some outside) is split, if it can be
//!    ([`split_cut_folio`]): a PMD mapping first becomes 512 PTEs
//!    ([`split_huge_pmd`]), then the folio becomes 512 order-0 folios
//!    ([`try_split_folio`], with its refcount-freeze rule);
//! 2. then every folio whose pages all lie inside the range is a candidate,
//!    when it is anonymous, swap-backed, not the huge zero folio, and mapped
//!    by this space alone (each page at most once, no fork relative maps
//!    it: a shared folio stays, as in Linux). Each candidate comes with a
//!    reference, taken with `try_get` while the mapping keeps it alive.
//!
//! The caller (the kernel's `madvise`) drops the lock, then takes each
//! candidate off the LRU lists and shrinks it as reclaim does; a candidate
//! that is off the lists already belongs to somebody else's reclaim and is
//! left to it.
//!
//! ## `MADV_COLD` ([`deactivate_range`])
//!
//! The same candidates, without the splits and without taking anything:
//! each folio of the range that this space maps alone goes to the inactive
//! list's tail and loses its `Referenced` flag and its leaves' young bits,
//! so reclaim takes it first; nothing is written.
//!
//! ## Seed 002: never split what reclaim is swapping out whole
//!
//! A large folio that reclaim has taken off the LRU lists (isolated) is in
//! the middle of being swapped out **whole**: reclaim holds a reference,
//! and soon its lock, gives it one run of slots, unmaps every page and
//! writes it in one request. Splitting it under reclaim's feet is the race
//! of seed 002 (Linux's `MADV_PAGEOUT` split a large folio that reclaim
//! was writing whole, and pages went out twice). So a cut folio is split
//! only while it is **on** an LRU list (`PageFlag::Lru`, when the lists
//! exist): off the lists it is skipped and stays whole. Three rules below
//! back this up, so that even a check that raced would refuse: the split
//! needs the folio lock (reclaim holds it from isolation's end to the
//! write's end), an exact reference count (reclaim's reference breaks it),
//! and a folio in the swap cache is not split at all (its slots name it as
//! a whole).
//!
//! The bug-replay switch `pageout-split-race` ([`crate::bugs`]) leaves the
//! LRU check out; the rest of that replay, the swap-in that reads without
//! claiming its slot, is in [`crate::swap::swapin`].
//!
//! ## Locks
//!
//! The caller holds the space's lock for the whole call (the walks, the
//! splits, the `try_get`s; for `MADV_COLD` the walk, the young-bit writes
//! and the LRU moves, whose lock comes after it). The split takes the folio lock with `try_lock`
//! (never waits under the space lock) and the LRU lock inside.

use crate::addr::Pfn;
use crate::addr::VirtAddr;
use crate::folio::AnonHandle;
use crate::folio::{folio_of, Folio};
use crate::lru::LruLists;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{
    Decoded, Flush, Leaf, Level, PageTable, PageTableFormat, PgError, TableMemory, TlbHooks,
};
use crate::thp::{is_huge_zero_folio, split_pmd_mapping, try_split_folio, SplitRefused};
use alloc::vec::Vec;

/// Why [`split_cut_folio`] left a cut folio whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptWhole {
    /// Off the LRU lists: reclaim has it (seed 002).
    Isolated,
    /// Mapped by a PMD that another space shares (fork), or by another space.
    Shared,
    /// The folio split refused ([`SplitRefused`]).
    Refused(SplitRefused),
}

/// Splits the large folio `folio` of the space of `table`, which the range
/// being paged out cuts, so that its covered pages can be paged out alone
/// (module doc, step 1). The caller holds the space's lock. Pages that end
/// with no reference are given to `free`. `Ok` means split (every page is an
/// order-0 folio now).
pub fn split_cut_folio<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: Folio<'static>,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<(), KeptWhole> {
    // `bug=pageout-split-race` leaves this check out (seed 002's first
    // half); the reference count still refuses below.
    if crate::lru::registered().is_some()
        && !folio.test_flag(PageFlag::Lru)
        && !crate::bugs::enabled(crate::bugs::Bug::PageoutSplitRace)
    {
        return Err(KeptWhole::Isolated);
    }
    let kept = |e| match e {
        SplitRefused::MappedElsewhere => KeptWhole::Shared,
        e => KeptWhole::Refused(e),
    };
    split_pmd_mapping(table, mem, hooks, memmap, &folio).map_err(kept)?;
    try_split_folio(table, mem, folio, |_| 0, free).map_err(kept)
}

/// What [`pageout_candidates`] found.
#[derive(Debug, Default)]
pub struct Candidates {
    /// The folios to page out, each with a reference for the caller.
    pub folios: Vec<Folio<'static>>,
    /// Cut large folios that were split.
    pub nr_split: usize,
    /// Cut large folios left whole, and why.
    pub kept_whole: Vec<(Pfn, KeptWhole)>,
}

/// The folios `MADV_PAGEOUT` over `[start, end)` of the space of `table`
/// pages out, after splitting the large folios the range cuts (module
/// doc). The caller holds the space's lock.
pub fn pageout_candidates<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &'static Memmap,
    start: VirtAddr,
    end: VirtAddr,
    free: &mut dyn FnMut(Folio<'static>),
) -> Candidates {
    let handle = crate::anon::anon_handle(table.root());
    let mut out = Candidates::default();
    let span = |f: &Folio<'_>| {
        let first = f.index() << 12;
        (first, first + ((f.nr_pages() as u64) << 12))
    };
    // Step 1: the large folios of ours that the range cuts. Only the two
    // ends of the range can cut one, but a walk is simplest and the range
    // is mapped anyway.
    let mut cut: Vec<Folio<'static>> = Vec::new();
    table.visit(mem, start, end, &mut |_, _, entry, _| {
        let Decoded::Leaf(leaf) = entry else { return };
        let Some(folio) = folio_of(memmap, leaf.frame.pfn()) else { return };
        if !folio.is_large() || is_huge_zero_folio(&folio) || folio.anon_handle() != Some(handle) {
            return;
        }
        if cut.last().is_some_and(|f| f.pfn() == folio.pfn()) {
            return;
        }
        let (first, last) = span(&folio);
        if first < start.as_u64() || last > end.as_u64() {
            cut.push(folio);
        }
    });
    for folio in cut {
        match split_cut_folio(table, mem, hooks, memmap, folio, free) {
            Ok(()) => out.nr_split += 1,
            Err(why) => out.kept_whole.push((folio.pfn(), why)),
        }
    }
    // Step 2: what lies wholly inside.
    table.visit(mem, start, end, &mut |_, _, entry, _| {
        let Decoded::Leaf(leaf) = entry else { return };
        let Some(folio) = folio_of(memmap, leaf.frame.pfn()) else { return };
        if out.folios.last().is_some_and(|f| f.pfn() == folio.pfn()) || is_huge_zero_folio(&folio) {
            return;
        }
        let (first, last) = span(&folio);
        let whole = first >= start.as_u64() && last <= end.as_u64();
        if whole && mapped_alone(&folio, handle) && folio.try_get() {
            out.folios.push(folio);
        }
    });
    out
}

/// The candidate rule of both advices (module doc, step 2, and
/// [`deactivate_range`]): an anonymous, swap-backed folio of the space
/// whose handle is `handle`, each page mapped at most once and no fork
/// relative mapping it.
fn mapped_alone(folio: &Folio<'_>, handle: AnonHandle) -> bool {
    folio.anon_handle() == Some(handle)
        && folio.entire_mapcount() <= 1
        && (0..folio.nr_pages()).all(|i| folio.page_mapcount(i) <= 1)
        && folio.test_flag(PageFlag::SwapBacked)
}

/// What [`deactivate_range`] did.
#[derive(Debug)]
#[must_use]
pub struct Cold {
    /// Folios moved to the inactive tail.
    pub nr_deactivated: usize,
    /// Folios of the range that qualified but were off the lists
    /// (isolated by reclaim or compaction): left to their owner.
    pub nr_off_lists: usize,
    /// Leaves whose young bit was cleared.
    pub nr_aged: usize,
    /// The flush the cleared young bits owe (so that the CPUs mark the
    /// entries again on the next access), for every CPU of the space.
    pub flush: Flush,
}

/// `MADV_COLD` over `[start, end)` of the space of `table`: deactivates
/// the range's folios without writing anything. Every folio that lies
/// wholly inside the range and that this space maps alone (the rule of
/// [`pageout_candidates`], so a folio shared with a fork relative stays
/// where it is) is moved to the inactive list's tail with `Referenced`
/// cleared ([`LruLists::deactivate`]), and its leaves lose their young
/// bit, so reclaim takes these folios first. Unlike `MADV_PAGEOUT` a
/// large folio the range cuts is not split (deactivating half of a huge
/// page is not worth breaking it up) and stays as it is.
///
/// A writable leaf that is not dirty keeps its young bit: a CPU may set
/// dirty in it between this walk's read and its write (x86 sets accessed
/// and dirty in the entry by itself, and the tables have no atomic update),
/// and a plain store would lose that. Such a leaf was young since its
/// last write fault at the earliest, and the folio still goes to the tail.
///
/// `lru` is `None` when there are no lists (early boot, tests without
/// them): then only the young bits change. The caller holds the space's
/// lock (it keeps every mapped folio alive) and flushes `Cold::flush`.
pub fn deactivate_range<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    memmap: &'static Memmap,
    lru: Option<&LruLists>,
    start: VirtAddr,
    end: VirtAddr,
) -> Result<Cold, PgError> {
    let handle = crate::anon::anon_handle(table.root());
    let mut leaves: Vec<(VirtAddr, Level, Leaf)> = Vec::new();
    let mut folios: Vec<Folio<'static>> = Vec::new();
    table.visit(mem, start, end, &mut |va, level, entry, _| {
        let Decoded::Leaf(leaf) = entry else { return };
        let Some(folio) = folio_of(memmap, leaf.frame.pfn()) else { return };
        if is_huge_zero_folio(&folio) || !mapped_alone(&folio, handle) {
            return;
        }
        let first = folio.index() << 12;
        let last = first + ((folio.nr_pages() as u64) << 12);
        if first < start.as_u64() || last > end.as_u64() {
            return;
        }
        if leaf.young && !(leaf.prot.writable && !leaf.dirty) {
            leaves.push((va, level, leaf));
        }
        if folios.last().is_none_or(|f| f.pfn() != folio.pfn()) {
            folios.push(folio);
        }
    });
    let mut cold = Cold { nr_deactivated: 0, nr_off_lists: 0, nr_aged: 0, flush: Flush::none(table.root()) };
    for (va, level, leaf) in leaves {
        let f = table.update_leaf(mem, va, level, Leaf { young: false, ..leaf })?;
        cold.flush = core::mem::replace(&mut cold.flush, Flush::none(table.root())).merge(f);
        cold.nr_aged += 1;
    }
    if let Some(lru) = lru {
        for folio in folios {
            if lru.deactivate(folio) {
                cold.nr_deactivated += 1;
            } else {
                cold.nr_off_lists += 1;
            }
        }
    }
    Ok(cold)
}
