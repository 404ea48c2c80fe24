//! Transparent huge pages for anonymous memory: order-9 folios mapped by
//! one 2 MiB PMD leaf, the huge zero folio, and the two kinds of split.
//!
//! ## The folios
//!
//! - **A huge anon folio** ([`alloc_anon_huge_folio`]) is prepared while
//!   unpublished, like an order-0 one ([`crate::anon`]): `SwapBacked`,
//!   `AnonExclusive` on the head (for a PMD mapping the head's bit speaks
//!   for the whole folio), mapping and index of its first page, **entire
//!   mapcount 1** (the one PMD about to be written), every page's mapcount
//!   0, refcount 1. A PMD mapping holds one reference.
//! - **The huge zero folio** ([`alloc_huge_zero_folio`]): one zeroed
//!   order-9 folio for the whole kernel, mapping [`HUGE_ZERO_MAPPING`], not
//!   `SwapBacked`, one reference held forever. A read fault in a huge-page
//!   eligible range maps it read-only with a PMD; its mappings are not
//!   counted (it is never freed, and nobody needs to find them). A write to
//!   it replaces the PMD with a fresh huge folio. Recognising it
//!   ([`is_huge_zero`]) looks at a *decoded present leaf* only: the PFN of
//!   a migration or swap entry must never be taken for it (seed 001).
//!
//! ## Splitting a PMD ([`split_huge_pmd`])
//!
//! Any change that covers part of a 2 MiB leaf (munmap, mprotect, madvise,
//! a copy on write) first replaces it with a table of 512 PTEs:
//! - the huge zero PMD is cleared and flushed: the range refaults 4 KiB
//!   zero pages on demand;
//! - an anon PMD becomes 512 PTEs of the same frames, same protection,
//!   dirty and young (break-before-make, `PageTable::split_pmd`); the
//!   counts move from the folio to its pages: every page's mapcount +1,
//!   the entire mapcount −1, and the references +511 (each PTE holds one);
//!   when the head was `AnonExclusive` every page becomes so;
//! - a PMD migration or swap entry becomes 512 PTE entries of the same
//!   kind (seed 001): a migration entry naming the head gives entries
//!   naming `head + i` with its kind, young and dirty; no count changes:
//!   nothing is mapped (a migration entry holds no count, see
//!   [`crate::space`]'s "Migration entries").
//!
//! Every case is chosen on the decoded entry, present first; the huge-zero
//! test ([`is_huge_zero`]) takes a present leaf. The bug-replay switch
//! `split-pmd-migration-entry` puts seed 001's mistake back (the zero test
//! on the raw frame field, and a PMD migration entry cleared as if nothing
//! were behind it): [`split_huge_pmd`].
//!
//! ## Splitting a folio ([`try_split_folio`])
//!
//! A PTE-mapped huge folio whose pages are partly unmapped is split into
//! 512 order-0 folios, so the pages nobody maps go back to the allocator.
//! The rule (mm-reference §4): hold the folio lock, see that it is not
//! pinned, then **freeze** the refcount at exactly the references the
//! caller can account for (one per mapping, plus the caller's own), so no
//! other CPU can take a reference while the descriptors change. Here every
//! mapping must be a PTE of the one table the caller has locked (a folio
//! shared with a fork child is left whole: its other mappings could go
//! away under us, and reaching them would need the other spaces' locks).
//! A count that does not match (a `FOLL_GET` reference, a pin) makes the
//! split fail and leaves everything as it was. A folio in the swap cache
//! is split only by migration ([`split_isolated_cache_folio`], which knows
//! its area): the cache's reference on each page is counted in the
//! freeze, every slot is made to name its own page while the count is
//! frozen ([`SwapArea::cache_split`]), and each piece keeps `SwapCache`
//! and the entry of its page (the folio's first plus `i`, seed 000).
//!
//! ## Locks
//!
//! Every function here runs under the lock of the address space whose
//! table it changes (the kernel's address-space lock), which also
//! serialises the mapcounts of the folios that table maps. Flushes go
//! through the caller's [`TlbHooks`], which must reach every CPU that may
//! hold a translation of the space.

use crate::addr::{PhysAddr, VirtAddr};
use crate::folio::{folio_of, Folio, UnpublishedFolio};
use crate::folio::{AnonHandle, FolioMapping};
use crate::frame::{AllocError, AllocKind, FrameAllocator};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{Decoded, Leaf, Level, PageSize, PageTable, PageTableFormat, PgError};
use crate::pgtable::{TableMemory, TlbHooks};
use crate::swap::area::SwapArea;

/// The order of a huge folio (2 MiB of 4 KiB pages).
pub const HPAGE_ORDER: u8 = 9;
/// Pages in a huge folio.
pub const HPAGE_NR: usize = 1 << HPAGE_ORDER;
/// Bytes a PMD leaf maps.
pub const HPAGE_SIZE: u64 = 2 << 20;
/// The mapping that marks the huge zero folio.
pub const HUGE_ZERO_MAPPING: FolioMapping = FolioMapping::HugeZero;

/// A new anonymous huge folio for the 2 MiB block whose first page is
/// `index` in the space `handle`, zeroed by `zero` (given the first frame;
/// it must clear all 2 MiB), prepared as the module doc says and
/// published. The caller maps it with one PMD.
pub fn alloc_anon_huge_folio(
    frames: &FrameAllocator,
    kind: AllocKind,
    handle: AnonHandle,
    index: u64,
    zero: impl FnOnce(PhysAddr),
) -> Result<Folio<'static>, AllocError> {
    let folio = frames.alloc_folio(HPAGE_ORDER, kind)?;
    zero(folio.pfn().phys());
    Ok(prepare_anon_huge_folio(folio, handle, index))
}

/// [`alloc_anon_huge_folio`]'s second half, for a caller that allocated
/// and zeroed the order-9 block itself before it knew it needed a folio
/// (the kernel's fault path zeroes it without the space's lock, then
/// `crate::frame::FrameAllocator::raw_into_folio`): the zeroed `folio`
/// prepared as the module doc says and published.
pub fn prepare_anon_huge_folio(
    mut folio: UnpublishedFolio<'static>,
    handle: AnonHandle,
    index: u64,
) -> Folio<'static> {
    debug_assert!(
        index.is_multiple_of(HPAGE_NR as u64),
        "prepare_anon_huge_folio: index {index:#x} unaligned"
    );
    debug_assert_eq!(folio.order(), HPAGE_ORDER, "prepare_anon_huge_folio: not a 2 MiB block");
    folio.nonatomic_set_flag(PageFlag::SwapBacked);
    folio.nonatomic_set_flag(PageFlag::AnonExclusive);
    folio.set_mapping(FolioMapping::Anon(handle), index);
    folio.set_entire_mapcount(1);
    folio.publish()
}

/// The huge zero folio: an order-9 folio zeroed by `zero`, marked with
/// [`HUGE_ZERO_MAPPING`], holding one reference that is never dropped.
pub fn alloc_huge_zero_folio(
    frames: &FrameAllocator,
    zero: impl FnOnce(PhysAddr),
) -> Result<Folio<'static>, AllocError> {
    let mut folio = frames.alloc_folio(HPAGE_ORDER, AllocKind::Normal)?;
    zero(folio.pfn().phys());
    folio.nonatomic_set_flag(PageFlag::Uptodate);
    folio.set_mapping(HUGE_ZERO_MAPPING, 0);
    Ok(folio.publish())
}

/// True when the present PMD leaf `leaf` maps the huge zero folio. Takes a
/// decoded [`Leaf`] on purpose: only a present entry has a frame to look
/// at (seed 001).
pub fn is_huge_zero(memmap: &Memmap, leaf: &Leaf) -> bool {
    leaf.size == PageSize::Size2M
        && folio_of(memmap, leaf.frame.pfn()).is_some_and(|f| is_huge_zero_folio(&f))
}

/// True when `folio` is the huge zero folio.
pub fn is_huge_zero_folio(folio: &Folio<'_>) -> bool {
    folio.mapping() == HUGE_ZERO_MAPPING && !folio.test_flag(PageFlag::SwapBacked)
}

/// Drops the PMD mapping of the huge folio at `pa`, whose entry the caller
/// has just cleared: the entire mapcount goes down by one; the folio keeps
/// the mapping's reference until the flush is over (drop it then, as for a
/// PTE: [`crate::anon::put_anon_folio`]).
///
/// # Panics
///
/// When `pa` is not the head of a huge folio mapped by a PMD (a kernel bug).
pub fn remove_pmd_mapping(memmap: &Memmap, pa: PhysAddr) -> Folio<'_> {
    let pfn = pa.pfn();
    let folio = folio_of(memmap, pfn)
        .filter(|f| f.pfn() == pfn && f.order() == HPAGE_ORDER)
        .unwrap_or_else(|| panic!("remove_pmd_mapping: pfn {pfn:#x} is not a huge folio's head"));
    let old = folio.entire_mapcount();
    assert!(old > 0, "remove_pmd_mapping: pfn {pfn:#x} was not PMD-mapped");
    folio.add_entire_mapcount(-1);
    folio
}

/// What [`split_huge_pmd`] found at the PMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmdSplit {
    /// A table (already split) or nothing: there was nothing to split.
    NotHuge,
    /// The huge zero PMD: cleared; the range refaults.
    ZeroCleared,
    /// An anon PMD became 512 PTEs; the counts moved to the pages.
    Anon,
    /// A swap or migration PMD became 512 PTE entries.
    NonPresent,
}

/// Splits the 2 MiB entry covering `va`, if there is one, as the module
/// doc says. The caller holds the space's lock; `hooks` flush every CPU
/// (the break-before-make of a present leaf happens inside).
///
/// Present-ness first: the entry is decoded before anything is asked of
/// it, so a migration entry is split as one (seed 001). With the
/// bug-replay switch `split-pmd-migration-entry` on, the old mistake runs
/// instead (`split_huge_pmd_mistaken`).
pub fn split_huge_pmd<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    va: VirtAddr,
) -> Result<PmdSplit, PgError> {
    let block = va.align_down(HPAGE_SIZE);
    if crate::bugs::enabled(crate::bugs::Bug::SplitPmdMigrationEntry) {
        if let Some(done) = split_huge_pmd_mistaken(table, mem, hooks, memmap, block) {
            return done;
        }
    }
    match table.lookup(mem, block) {
        (Level::Pmd, Decoded::Leaf(leaf)) => {
            if is_huge_zero(memmap, &leaf) {
                let (_, flush) = table.clear(mem, block, Level::Pmd)?;
                flush.flush(hooks);
                return Ok(PmdSplit::ZeroCleared);
            }
            let folio = folio_of(memmap, leaf.frame.pfn())
                .filter(|f| f.pfn() == leaf.frame.pfn() && f.order() == HPAGE_ORDER)
                .ok_or(PgError::WrongKind { va: block, level: Level::Pmd })?;
            table.split_pmd(mem, hooks, block)?;
            let exclusive = folio.page(0).test_flag(PageFlag::AnonExclusive);
            for i in 0..HPAGE_NR {
                folio.add_page_mapcount(i, 1);
                if exclusive {
                    folio.page(i).set_flag(PageFlag::AnonExclusive);
                }
            }
            for _ in 1..HPAGE_NR {
                folio.get();
            }
            folio.add_entire_mapcount(-1);
            Ok(PmdSplit::Anon)
        }
        (Level::Pmd, Decoded::NonPresent(_)) => {
            table.split_pmd(mem, hooks, block)?;
            Ok(PmdSplit::NonPresent)
        }
        _ => Ok(PmdSplit::NotHuge),
    }
}

/// Seed 001's mistake, taken only with `bug=split-pmd-migration-entry`
/// ([`crate::bugs::Bug::SplitPmdMigrationEntry`]): the split of the huge
/// entry at `block` that did not think of PMD migration entries.
///
/// 1. **huge-zero before present**: the zero test reads the PMD's frame
///    field ([`is_huge_zero_unchecked`]) whatever the entry is, and clears
///    a match as the zero PMD. On x86_64 a migration
///    entry's frame field lies above 2^51 (the offset is stored inverted),
///    so it can never match; on AArch64 it is the frame the entry names,
///    so the test is only as safe as that frame (an entry naming the zero
///    folio's frame is taken for the zero PMD);
/// 2. **no migration case**: a non-present PMD is cleared as if nothing
///    were behind it (the zero or file path: "the range refaults"). The
///    migration entry is lost, the migration's restore finds nothing, and
///    the THP's data with it: the next access maps zeros. (Linux then went
///    on to use `pmd_page` of the entry, a crash: the replay stops at the
///    lost entry so that a test can see it instead.)
///
/// Returns `None` for a present anon PMD or anything not huge, which the
/// correct path splits as ever.
fn split_huge_pmd_mistaken<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    block: VirtAddr,
) -> Option<Result<PmdSplit, PgError>> {
    let slot = table.walk(mem, block);
    if slot.level != Level::Pmd {
        return None;
    }
    let outcome = if is_huge_zero_unchecked::<F>(memmap, slot.raw) {
        PmdSplit::ZeroCleared
    } else if matches!(F::decode(slot.raw, Level::Pmd), Decoded::NonPresent(_)) {
        PmdSplit::NonPresent
    } else {
        return None;
    };
    Some(table.clear(mem, block, Level::Pmd).map(|(_, flush)| {
        flush.flush(hooks);
        outcome
    }))
}

/// The huge-zero test of seed 001's mistake (`split_huge_pmd_mistaken`):
/// true when the frame field of the raw PMD `raw`, read without asking
/// whether it is present, is the huge zero folio's. Public for the
/// replay's host test, which checks on both formats which migration
/// entries it can take for the zero PMD; correct code uses
/// [`is_huge_zero`] on a decoded present leaf.
pub fn is_huge_zero_unchecked<F: PageTableFormat>(memmap: &Memmap, raw: u64) -> bool {
    let frame = F::frame_field_unchecked(raw, PageSize::Size2M);
    folio_of(memmap, frame.pfn()).is_some_and(|f| f.pfn() == frame.pfn() && is_huge_zero_folio(&f))
}

/// Splits the 2 MiB entry covering `va` when `va` is not on a 2 MiB
/// boundary (an operation's range starts or ends inside it).
pub fn split_huge_pmd_if_cut<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    va: VirtAddr,
) -> Result<PmdSplit, PgError> {
    if va.is_aligned(HPAGE_SIZE) {
        return Ok(PmdSplit::NotHuge);
    }
    split_huge_pmd(table, mem, hooks, memmap, va)
}

/// Why [`try_split_folio`] left a folio whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitRefused {
    /// Already order 0.
    Small,
    /// Still mapped by a PMD (split the PMD first).
    PmdMapped,
    /// Pinned (`FOLL_PIN`): its pages must not change under DMA.
    Pinned,
    /// Somebody else holds the folio lock.
    Locked,
    /// Mapped by another space too (fork): its other mappings are out of reach.
    MappedElsewhere,
    /// More references than mappings and the caller's: a `FOLL_GET` user.
    Referenced,
    /// The folio is in the swap cache (its slots name it as a whole).
    InSwapCache,
}

/// Splits the PTE-mapped huge anonymous folio `folio` into order-0 folios
/// (module doc, "Splitting a folio"). Every mapping of it must be a PTE of
/// `table` (which the caller has locked), at the addresses its index says.
/// `held(i)` is the number of references the caller holds on page `i`
/// beyond the mappings: typically 1 for each page whose PTE it has just
/// cleared and whose reference it will drop after the flush. After the
/// split each page's folio holds its own mappings' references and
/// `held(i)`; a page left with none is given to `free` at once.
pub fn try_split_folio<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    folio: Folio<'static>,
    held: impl Fn(usize) -> i32,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<(), SplitRefused> {
    check_splittable(table, mem, &folio)?;
    if !folio.try_lock() {
        return Err(SplitRefused::Locked);
    }
    // Off the LRU lists while it changes shape; the pieces go back after.
    let lru = crate::lru::registered();
    let was_listed = lru.is_some_and(|l| l.remove(folio));
    let result = split_locked(folio, &held, free, was_listed, false, None);
    if result.is_err() && was_listed {
        lru.expect("listed").putback(folio, crate::lru::LruList::Inactive);
    }
    folio.unlock();
    // Page 0 is a folio of its own now; freed only once unlocked.
    if result.is_ok() && folio.refcount() == 0 {
        free(folio);
    }
    result.map(|_| ())
}

/// Splits the huge folio `folio` that reclaim has isolated (one reference,
/// the caller's) and locked, because it cannot be swapped out whole (no
/// free run of 512 slots): a PMD mapping of it in `table` is split first,
/// then the folio, as [`try_split_folio`] does. The caller holds the
/// table's lock and keeps the folio lock (on the head, which is page 0 of
/// the old folio and keeps the caller's reference). Returns the other
/// pieces that are still mapped, each with a new reference for the caller,
/// off the LRU lists, unlocked: isolated, as reclaim's own folios are, to
/// be swapped out or put back by it. Pieces nobody maps go to `free`.
pub fn split_isolated_folio<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: Folio<'static>,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<alloc::vec::Vec<Folio<'static>>, SplitRefused> {
    split_isolated(table, mem, hooks, memmap, folio, None, free)
}

/// [`split_isolated_folio`] for a folio that may be in the swap cache of
/// `area` (migration's split, `crate::migrate`): each piece keeps its page's
/// slot, swap entry (the folio's first plus `i`) and one cache reference,
/// and the cache names each piece for its own slot
/// ([`SwapArea::cache_split`]); a swap-cache folio splits only to order 0
/// (mm-reference §4). Every other piece is returned (mapped or only
/// cached), with a reference.
pub fn split_isolated_cache_folio<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: Folio<'static>,
    area: &SwapArea,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<alloc::vec::Vec<Folio<'static>>, SplitRefused> {
    split_isolated(table, mem, hooks, memmap, folio, Some(area), free)
}

/// [`split_isolated_folio`] and [`split_isolated_cache_folio`].
fn split_isolated<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: Folio<'static>,
    cache: Option<&SwapArea>,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<alloc::vec::Vec<Folio<'static>>, SplitRefused> {
    debug_assert!(folio.is_locked(), "split_isolated_folio: pfn {:#x} not locked", folio.pfn());
    if !folio.is_large() {
        return Err(SplitRefused::Small);
    }
    if folio.test_flag(PageFlag::SwapCache) && cache.is_none() {
        return Err(SplitRefused::InSwapCache);
    }
    split_pmd_mapping(table, mem, hooks, memmap, &folio)?;
    check_splittable(table, mem, &folio)?;
    let pieces = split_locked(folio, &|i| (i == 0) as i32, free, false, true, cache)?;
    Ok(pieces)
}

/// Before a folio split: replaces the PMD mapping of the huge folio
/// `folio` in `table`, if it has one, by 512 PTEs ([`split_huge_pmd`]).
/// Refused when another space maps it by a PMD too (fork), or the PMD at
/// its address is not this folio's; `PmdMapped` when no page table could
/// be had for the split. The caller holds the table's lock.
pub fn split_pmd_mapping<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: &Folio<'static>,
) -> Result<(), SplitRefused> {
    match folio.entire_mapcount() {
        0 => Ok(()),
        1 => {
            let at = VirtAddr::new(folio.index() << 12);
            match table.lookup(mem, at) {
                (Level::Pmd, Decoded::Leaf(leaf)) if leaf.frame.pfn() == folio.pfn() => {
                    split_huge_pmd(table, mem, hooks, memmap, at)
                        .map(drop)
                        .map_err(|_| SplitRefused::PmdMapped)
                }
                _ => Err(SplitRefused::MappedElsewhere),
            }
        }
        _ => Err(SplitRefused::MappedElsewhere),
    }
}

/// The checks of a split that need no lock of the folio: large, not mapped
/// by a PMD, not pinned, every mapping a PTE of `table`.
fn check_splittable<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    folio: &Folio<'static>,
) -> Result<(), SplitRefused> {
    if !folio.is_large() {
        return Err(SplitRefused::Small);
    }
    if folio.entire_mapcount() != 0 {
        return Err(SplitRefused::PmdMapped);
    }
    if folio.maybe_pinned() {
        return Err(SplitRefused::Pinned);
    }
    // Every mapping must be one of this table's PTEs.
    let start = VirtAddr::new(folio.index() << 12);
    let end = VirtAddr::new(start.as_u64() + (folio.nr_pages() as u64) * 4096);
    let mut ours = 0i32;
    table.visit(mem, start, end, &mut |_, level, entry, _| {
        if let (Level::Pte, Decoded::Leaf(leaf)) = (level, entry) {
            let pfn = leaf.frame.pfn();
            if folio.contains_pfn(pfn) {
                ours += 1;
            }
        }
    });
    if ours != folio.total_mapcount() {
        return Err(SplitRefused::MappedElsewhere);
    }
    Ok(())
}

/// The split itself, for a folio the caller has locked and checked
/// ([`check_splittable`], under the table's lock): refuses a swap-cache
/// folio unless `cache` is its area, freezes at mappings + `held` (+ the
/// cache's references), splits (a cache folio's slots first, while frozen),
/// and puts the mapped pieces on the LRU lists when `relist`. When `take`,
/// returns the pieces other than page 0 that are still mapped or cached,
/// each with a new reference (else nothing). The folio lock stays with the
/// caller, and so does page 0 if it ends with no reference (it must be
/// unlocked before it is freed).
fn split_locked(
    folio: Folio<'static>,
    held: &dyn Fn(usize) -> i32,
    free: &mut dyn FnMut(Folio<'static>),
    relist: bool,
    take: bool,
    cache: Option<&SwapArea>,
) -> Result<alloc::vec::Vec<Folio<'static>>, SplitRefused> {
    let cached = match (folio.test_flag(PageFlag::SwapCache), cache) {
        (false, _) => None,
        (true, Some(area)) => Some((area, folio.swap_entry().expect("a swap-cache folio has an entry"))),
        // Its slots point at the head as one folio (`crate::swap`).
        (true, None) => return Err(SplitRefused::InSwapCache),
    };
    let per_page = cached.is_some() as i32; // the cache's reference on each page
    let nr = folio.nr_pages();
    let expected: i32 = folio.total_mapcount() + (0..nr).map(held).sum::<i32>() + per_page * nr as i32;
    if !folio.try_freeze(expected) {
        return Err(SplitRefused::Referenced);
    }
    if let Some((area, first)) = cached {
        area.cache_split(first, nr as u64, folio.pfn())
            .unwrap_or_else(|e| panic!("split: folio {:#x} at {first:?}: {e}", folio.pfn()));
    }
    let memmap = folio.memmap();
    folio.split_frozen(|i| folio.page_mapcount(i) + held(i) + per_page);
    let lru = crate::lru::registered();
    let mut pieces = alloc::vec::Vec::new();
    for i in 0..nr {
        let page =
            folio_of(memmap, folio.pfn().plus(i as u64)).expect("split_frozen made every page a folio");
        page.clear_flag(PageFlag::Active);
        if page.total_mapcount() > 0 || (per_page > 0 && i > 0 && take) {
            if relist {
                lru.expect("relist only when the folio was listed").add(page);
            } else if take && i > 0 {
                page.get();
                pieces.push(page);
            }
        }
    }
    // Page 0 keeps the caller's lock: the caller frees it if it must.
    for i in 1..nr {
        let page =
            folio_of(memmap, folio.pfn().plus(i as u64)).expect("split_frozen made every page a folio");
        if page.refcount() == 0 {
            free(page);
        }
    }
    Ok(pieces)
}
