//! The consistency checker: walks the page tables of a set of address
//! spaces (one, or a fork family, or every space there is) and checks
//! them against the spaces' areas, the folio counts and flags in the
//! memmap, the swap areas and the LRU lists.
//!
//! ## What is checked
//!
//! Every rule below has a host test in `kernel/mm/tests/debug_checker.rs`
//! that breaks it and is caught (the book's checker chapter lists them).
//!
//! **Page-table frames** (the user half of every space: the root and every
//! table an entry points at):
//! 1. each table frame is reached once, over all the spaces checked;
//! 2. a table frame inside the memmap is an allocated frame that is not a
//!    folio page (not free, not reserved, not a folio's), marked
//!    [`PageFlag::PageTable`];
//! 3. no leaf maps a table frame as data;
//! 4. with [`Scope::nr_tables`] (and [`Scope::complete`]): as many table
//!    frames are reachable as the table memory has handed out (none
//!    leaked).
//!
//! **Leaves** (each present leaf in the user half, `[0, user end)` of the
//! [`VmaSet`]; the kernel's shared upper half is not the space's):
//! 1. the whole leaf lies inside one area, and its permissions do not
//!    exceed the area's: writable only if the area allows writes,
//!    executable only if it allows execution, readable only if it allows
//!    some access (`PROT_NONE` maps nothing), never global;
//! 2. the frame is a page of a live folio: its descriptor exists, is not
//!    reserved, not inside a free block, and is a folio's head or tail.
//!    A PMD leaf maps a whole order-9 folio from its head; no PUD leaf maps
//!    user memory;
//! 3. an anonymous (`SwapBacked`) folio's mapping is one of the family's
//!    [`anon_handle`]s and its index matches the address it is mapped at;
//! 4. the huge zero folio ([`crate::thp`]) is mapped only by read-only PMD
//!    leaves, and its mappings are not counted;
//! 5. a writable leaf maps an `AnonExclusive` page of an anonymous folio
//!    (its head's bit for a PMD leaf): anything else would let a write
//!    reach a page another space or a pin shares (copy on write broken);
//!    with the rule that an exclusive page has one mapping (below), a
//!    pinned page mapped writable is exclusive and mapped once. At a
//!    quiescent point, a writable leaf never maps a swap-cache folio
//!    (`crate::swap::cache`'s rule).
//!
//! **Folio counts**, for every folio mapped: each page's mapcount equals the
//! PTEs that map it, the entire mapcount equals the PMDs that map the
//! folio, a page marked `AnonExclusive` has one mapping, the reverse map
//! ([`crate::rmap::rmap_walk`]) of an anonymous folio finds exactly the
//! mappings counted, and the refcount is at least the total mapcount
//! (every mapping holds a reference).
//!
//! **Swap entries**: PTEs inside an area; each slot held must count exactly
//! the entries of the spaces that hold it (a slot belongs to one family).
//! With [`Scope::complete`], also every used slot of every area: a count
//! that no entry holds is a leak. Without [`Scope::swap`] any swap entry
//! is an error.
//!
//! **Migration entries** (PTE or PMD; mm-reference §7 and
//! [`crate::space`]'s "Migration entries"), each one reported as
//! [`ConsistencyError::BadMigrationEntry`] with a [`MigrationProblem`]
//! unless:
//! 1. it lies inside one area (a PMD one wholly), and a `Write` one only
//!    where the area allows writes (mprotect makes it `ReadExclusive`);
//! 2. it names a page of a live anonymous folio whose mapping is one of
//!    the family's handles and whose index puts that page at this address
//!    (a PMD one: the head of an order-9 folio);
//! 3. that folio is **locked**: an entry exists only while its migration
//!    runs, so at a quiescent point none may exist at all;
//! 4. the page it stands for (the head, for a PMD one) is not marked
//!    `AnonExclusive`: the kind carries exclusivity while the entry stands,
//!    and the restore sets the bit again (a `Read` entry restored over a
//!    leftover bit would make a shared page exclusive);
//! 5. a `Write` or `ReadExclusive` one is the only mapping or entry of its
//!    page(s) in the family (fork turns both sides' into `Read`).
//!
//! An entry holds no mapcount and no reference: the folio counts above
//! count present leaves only, so a folio whose mappings are all migration
//! entries has mapcount 0, and its refcount (the migration's own
//! reference) is nobody's leak.
//!
//! **At a quiescent point** ([`Scope::quiescent`]: no fault, reclaim, swap
//! I/O or unmap in flight anywhere):
//! 1. no folio mapped or in the swap cache is `Locked` or under
//!    `Writeback`;
//! 2. a mapped folio with `SwapCache` is the one the area's cache holds
//!    for its entry;
//! 3. every slot with `HAS_CACHE` has a cache folio (no orphan claim), and
//!    every cache folio is a `SwapBacked` folio head with `SwapCache` whose
//!    entry is the slot's;
//! 4. with [`Scope::lru`]: every mapped anonymous folio is on an LRU list,
//!    and no folio is on the lists twice;
//! 5. refcounts: at least the mappings plus the swap cache's references
//!    (one per page); with [`Scope::holds`] (and [`Scope::complete`])
//!    exactly that plus the holds the caller knows of.
//!
//! ## Protocol
//!
//! The caller holds the lock of every space listed (the address-space
//! locks serialise changes to the tables, the areas and the mapcounts of
//! the spaces' folios), and says in [`Scope`] what else is true: that the
//! list is every space there is, that nothing is in flight. The areas'
//! and the lists' locks (leaves) are taken here, one call at a time. The
//! first problem found is reported; errors name the address, the page
//! and the counts that disagree.
//!
//! ## Memory
//!
//! The check is two passes over the tables. The first checks every
//! entry's own rules (each leaf, each swap entry's place) and counts the
//! statistics. The second runs in **windows** of [`WINDOW`] frames of the
//! memmap and [`WINDOW`] slots of the areas laid end to end (window `k`
//! has both the `k`th frames and the `k`th slots; [`Scope::window`]
//! lowers the size for tests): it walks the tables again, counts in
//! vectors of the window's size the PTEs mapping each frame, the PMDs
//! mapping each huge folio and the entries holding each slot, then checks
//! the window's slots and the folios with their head in it (a folio's
//! counts reach [`MAX_ORDER`] frames past the window, so one crossing its
//! end is counted whole). So the heap holds, however big the workload, a
//! window's vectors (4 bytes a frame and a slot, 1 bit and 1 byte a frame
//! for the folios seen and the LRU lists: about 1 MiB the largest, 2.3
//! MiB in all at [`WINDOW`]) and 24 bytes per table frame; time is
//! O(mapped pages + swap entries) per window, the windows being
//! `max(frames, slots) / WINDOW`. [`heap_bound`] says how much at most.
//! When the heap cannot hold them, the check reports
//! [`ConsistencyError::NoMemory`] rather than failing the kernel.

use crate::addr::Pfn;
use crate::addr::{PhysAddr, VirtAddr};
use crate::anon::anon_handle;
use crate::folio::{folio_of, Folio};
use crate::folio::{AnonHandle, FolioMapping};
use crate::frame::MAX_ORDER;
use crate::lru::LruLists;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::SwapType;
use crate::pgtable::{Decoded, Level, NonPresent, PageTable, PageTableFormat, Prot, SwapEntry, TableMemory};
use crate::pgtable::{MigrationEntry, MigrationKind};
use crate::swap::area::SwapArea;
use crate::vma::{VmaProt, VmaSet};
use alloc::vec::Vec;
use core::fmt;

/// What the checker saw in a consistent address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// 4 KiB pages mapped (a 2 MiB leaf counts 512).
    pub nr_pages_mapped: u64,
    /// Distinct folios mapped.
    pub nr_folios: u64,
    /// 4 KiB leaves.
    pub nr_pte_leaves: u64,
    /// 2 MiB leaves.
    pub nr_pmd_leaves: u64,
    /// 1 GiB leaves (always 0 in a consistent space).
    pub nr_pud_leaves: u64,
    /// Swap entries (pages in swap).
    pub nr_swap_entries: u64,
    /// Migration entries (a PMD one counts once).
    pub nr_migration_entries: u64,
}

/// What the checker may look at beyond the spaces, and what the caller
/// knows to be true (module doc). The default checks the spaces alone.
#[derive(Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The swap areas (every area there is); swap entries of a type none
    /// of them has hold a slot of no area.
    pub swap: Option<&'a [&'a SwapArea]>,
    /// The LRU lists anonymous folios go on.
    pub lru: Option<&'a LruLists>,
    /// The spaces listed are every address space there is: a slot count
    /// or table no space explains is a leak.
    pub complete: bool,
    /// Nothing is in flight: no fault, reclaim, swap I/O, unmap or GUP
    /// call, so folios are unlocked, the swap cache agrees with the
    /// folios and every mapped anonymous folio is on the lists.
    pub quiescent: bool,
    /// References held on the folio with this head beyond its mappings
    /// and the swap cache's (GUP holds, a test's own): with `quiescent`
    /// and `complete`, refcounts are then checked exactly.
    pub holds: Option<&'a dyn Fn(Pfn) -> i32>,
    /// Table frames the spaces' table memory has handed out and not
    /// taken back (roots included): with `complete`, every one must be
    /// reachable.
    pub nr_tables: Option<u64>,
    /// Frames and slots per window of the check's counts (module doc,
    /// Memory); 0 for [`WINDOW`]. Tests lower it to check in many windows.
    pub window: usize,
}

/// Why a mapped frame is not the page of a live folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameProblem {
    /// No descriptor: the frame is not RAM the memmap covers.
    OutsideMemmap,
    /// A hole, firmware or kernel frame, never managed by the allocator.
    Reserved,
    /// Inside the free block starting at `block`.
    Free { block: Pfn },
    /// Allocated, but a raw frame (a page table, kernel data), not a folio.
    NotFolio,
}

/// Why a migration entry is not one a migration in flight may leave
/// (the module doc's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationProblem {
    /// Not wholly inside one area, or above the PMD level.
    OutsideArea,
    /// A `Write` entry in an area that does not allow writes.
    WriteInReadOnlyArea,
    /// The frame named is not the page of a live folio.
    NotFolioPage(FrameProblem),
    /// A PMD entry that does not name the head of an order-9 folio (the
    /// order of the folio it names).
    NotWholeFolio { order: u8 },
    /// The folio is not anonymous, or its mapping or index puts the page
    /// elsewhere.
    WrongMapping,
    /// The folio is not locked: no migration of it is in flight.
    Unlocked,
    /// The page the entry stands for (the head, for a PMD entry) is still
    /// marked `AnonExclusive`.
    ExclusiveFlagLeft,
    /// A migration entry at a quiescent point.
    AtRest,
    /// A `Write` or `ReadExclusive` entry whose page has `mappings`
    /// mappings and entries in all, over the spaces checked.
    SharedExclusive { mappings: u64 },
}

/// What the checker found wrong: a kernel bug in whatever last changed the
/// table, the areas or the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyError {
    /// An entry no rule of the format explains (or a table pointer at the
    /// PTE level).
    Corrupt { va: VirtAddr, level: Level, raw: u64 },
    /// A leaf not inside one area.
    OutsideArea { va: VirtAddr, level: Level },
    /// A leaf allows more than its area.
    ProtExceedsArea { va: VirtAddr, level: Level, prot: Prot, area: VmaProt },
    /// A leaf maps frame `pfn`, which is not the page of a folio.
    NotFolioPage { va: VirtAddr, pfn: Pfn, why: FrameProblem },
    /// A huge leaf that does not map one whole folio of its size from the
    /// head (`order` is the order of the folio its frame is in).
    HugeLeafNotFolio { va: VirtAddr, level: Level, pfn: Pfn, order: u8 },
    /// An anonymous folio mapped at `va` whose mapping or index says it
    /// belongs elsewhere.
    WrongMapping {
        va: VirtAddr,
        folio: Pfn,
        mapping: FolioMapping,
        index: u64,
        expected_mapping: AnonHandle,
        expected_index: u64,
    },
    /// Page `pfn` of the folio at `folio` is mapped by `nr_ptes` PTEs but
    /// its mapcount says `mapcount`.
    PageMapcount { folio: Pfn, pfn: Pfn, nr_ptes: u64, mapcount: i32 },
    /// The folio at `folio` is mapped by `nr_pmds` PMDs but its entire
    /// mapcount says `entire_mapcount`.
    EntireMapcount { folio: Pfn, nr_pmds: u64, entire_mapcount: i32 },
    /// Page `pfn` of the folio at `folio` is marked `AnonExclusive` but has
    /// `mappings` mappings (over every space checked).
    SharedExclusive { folio: Pfn, pfn: Pfn, mappings: u64 },
    /// The folio at `folio` holds fewer references than mappings.
    RefcountBelowMapcount { folio: Pfn, refcount: i32, total_mapcount: i32 },
    /// The reverse map ([`crate::rmap::rmap_walk`]) finds `found` mappings
    /// of the anonymous folio at `folio`, the tables have `mapped`.
    Rmap { folio: Pfn, found: u64, mapped: u64 },
    /// The huge zero folio mapped other than read-only by a PMD leaf.
    HugeZeroMisused { va: VirtAddr, level: Level, writable: bool },
    /// Swap entries where no swap is known; `first` is the lowest address
    /// holding one.
    NonPresentEntries { nr_swap: u64, first: VirtAddr },
    /// The migration entry at `va` naming the frame `pfn` breaks the rule
    /// `why` says (module doc).
    BadMigrationEntry { va: VirtAddr, level: Level, pfn: Pfn, why: MigrationProblem },
    /// A swap entry outside every area, or in a PMD (swap entries are made
    /// for PTEs only).
    MisplacedSwapEntry { va: VirtAddr, level: Level },
    /// `entries` page-table entries of the checked spaces hold the swap
    /// slot `offset` of area `ty`, but the area counts `count` (with
    /// `entries` 0: a count no entry holds, a leaked slot).
    SwapCount { ty: SwapType, offset: u64, entries: u64, count: u8 },
    /// The table frame `table` is reached from two entries (or is a root
    /// and reached from an entry).
    TableReachedTwice { table: PhysAddr },
    /// The table frame `table` is in the memmap but not an allocated raw
    /// frame: free, or reserved.
    TableNotAllocated { table: PhysAddr, why: FrameProblem },
    /// The table frame `table` is an allocated raw frame in the memmap
    /// without [`PageFlag::PageTable`]: not handed out as a table.
    TableNotMarked { table: PhysAddr },
    /// The table frame `table` is a page of the folio at `folio`.
    TableIsFolioPage { table: PhysAddr, folio: Pfn },
    /// A leaf at `va` maps the table frame `table` as data.
    TableMappedAsData { va: VirtAddr, level: Level, table: PhysAddr },
    /// The table memory has `allocated` table frames out, the spaces reach
    /// `reachable` of them: the others leaked.
    TablesLeaked { allocated: u64, reachable: u64 },
    /// A writable leaf at `va` maps page `pfn` of the anonymous folio at
    /// `folio`, which is not `AnonExclusive`.
    WritableNotExclusive { va: VirtAddr, level: Level, folio: Pfn, pfn: Pfn },
    /// A writable leaf at `va` maps the swap-cache folio at `folio`, which
    /// is not `Dirty`, at a quiescent point: reclaim would trust its copy
    /// on disk and drop what was written.
    WritableSwapCache { va: VirtAddr, folio: Pfn },
    /// The folio at `folio` has `flag` (`Locked` or `Writeback`) set at a
    /// quiescent point.
    FlagLeftSet { folio: Pfn, flag: PageFlag },
    /// The mapped folio at `folio` has `SwapCache` and first entry
    /// `entry`, but the area's cache does not hold it there (`cached`:
    /// what the cache holds at that slot, head and index).
    NotInSwapCache { folio: Pfn, entry: Option<SwapEntry>, cached: Option<(Pfn, usize)> },
    /// Swap slot `offset` of area `ty` has `HAS_CACHE` at a quiescent
    /// point but no folio in the cache: an orphan claim.
    OrphanHasCache { ty: SwapType, offset: u64 },
    /// The swap cache holds the frame `pfn` for slot `offset` of area `ty`
    /// (as page `index`), but that frame is not the head of a `SwapBacked`
    /// `SwapCache` folio whose page `index` has this slot.
    SwapCacheMismatch { ty: SwapType, offset: u64, pfn: Pfn, index: usize },
    /// The anonymous folio at `folio` is mapped but on no LRU list.
    NotOnLru { folio: Pfn },
    /// The folio at `folio` is on the LRU lists `times` times.
    OnLruTwice { folio: Pfn, times: u64 },
    /// The folio at `folio` has `refcount` references; `mappings` and the
    /// swap cache's `cache` need that many, and with `holds` known the
    /// count must be exactly their sum.
    Refcount { folio: Pfn, refcount: i32, mappings: i32, cache: i32, holds: Option<i32> },
    /// The checker's own vectors did not fit in the heap (`needed`
    /// entries).
    NoMemory { needed: usize },
}

impl fmt::Display for ConsistencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Corrupt { va, level, raw } => write!(f, "{va}: corrupt {level:?} entry {raw:#x}"),
            Self::OutsideArea { va, level } => write!(f, "{va}: {level:?} leaf outside every area"),
            Self::ProtExceedsArea { va, level, prot, area } => {
                write!(f, "{va}: {level:?} leaf allows {prot:?}, more than its area's {area:?}")
            }
            Self::NotFolioPage { va, pfn, why } => {
                write!(f, "{va}: maps pfn {pfn:#x}, which is not a folio page ({why:?})")
            }
            Self::HugeLeafNotFolio { va, level, pfn, order } => {
                write!(f, "{va}: {level:?} leaf at pfn {pfn:#x} does not map one whole folio (order {order})")
            }
            Self::WrongMapping { va, folio, mapping, index, expected_mapping, expected_index } => write!(
                f,
                "{va}: folio {folio:#x} has mapping {mapping:?} index {index:#x}, \
                 expected {expected_mapping:?} index {expected_index:#x}"
            ),
            Self::PageMapcount { folio, pfn, nr_ptes, mapcount } => {
                write!(f, "folio {folio:#x}: page {pfn:#x} is mapped by {nr_ptes} PTEs, mapcount {mapcount}")
            }
            Self::EntireMapcount { folio, nr_pmds, entire_mapcount } => {
                write!(f, "folio {folio:#x}: mapped by {nr_pmds} PMDs, entire mapcount {entire_mapcount}")
            }
            Self::SharedExclusive { folio, pfn, mappings } => {
                write!(f, "folio {folio:#x}: page {pfn:#x} is anon-exclusive but has {mappings} mappings")
            }
            Self::RefcountBelowMapcount { folio, refcount, total_mapcount } => {
                write!(f, "folio {folio:#x}: refcount {refcount} below its total mapcount {total_mapcount}")
            }
            Self::Rmap { folio, found, mapped } => write!(
                f,
                "folio {folio:#x}: the reverse map finds {found} mappings, the tables have {mapped}"
            ),
            Self::HugeZeroMisused { va, level, writable } => write!(
                f,
                "{va}: the huge zero folio is mapped by a {level:?} leaf (writable: {writable}); \
                 only read-only PMD leaves may map it"
            ),
            Self::NonPresentEntries { nr_swap, first } => {
                write!(f, "{nr_swap} swap entries (first at {first}) and no swap area known")
            }
            Self::BadMigrationEntry { va, level, pfn, why } => {
                write!(f, "{va}: {level:?} migration entry of pfn {pfn:#x}: {why:?}")
            }
            Self::MisplacedSwapEntry { va, level } => {
                write!(f, "{va}: swap entry in a {level:?} entry or outside every area")
            }
            Self::SwapCount { ty, offset, entries, count } => write!(
                f,
                "swap slot {ty}:{offset:#x}: held by {entries} page-table entries, but its swap count is {count}"
            ),
            Self::TableReachedTwice { table } => write!(f, "table frame {table} is reached twice"),
            Self::TableNotAllocated { table, why } => {
                write!(f, "table frame {table} is not an allocated frame ({why:?})")
            }
            Self::TableNotMarked { table } => {
                write!(f, "table frame {table} is not marked as a page table in the memmap")
            }
            Self::TableIsFolioPage { table, folio } => {
                write!(f, "table frame {table} is a page of the folio {folio:#x}")
            }
            Self::TableMappedAsData { va, level, table } => {
                write!(f, "{va}: {level:?} leaf maps the table frame {table} as data")
            }
            Self::TablesLeaked { allocated, reachable } => write!(
                f,
                "{allocated} table frames are allocated but only {reachable} are reachable: {} leaked",
                allocated.saturating_sub(reachable)
            ),
            Self::WritableNotExclusive { va, level, folio, pfn } => write!(
                f,
                "{va}: writable {level:?} leaf of page {pfn:#x} of folio {folio:#x}, which is not anon-exclusive"
            ),
            Self::WritableSwapCache { va, folio } => {
                write!(f, "{va}: writable leaf of the clean swap-cache folio {folio:#x} at a quiescent point")
            }
            Self::FlagLeftSet { folio, flag } => {
                write!(f, "folio {folio:#x}: {flag:?} is set at a quiescent point")
            }
            Self::NotInSwapCache { folio, entry, cached } => write!(
                f,
                "folio {folio:#x}: has SwapCache and entry {entry:?}, but the swap cache holds {cached:?} there"
            ),
            Self::OrphanHasCache { ty, offset } => {
                write!(f, "swap slot {ty}:{offset:#x}: HAS_CACHE at a quiescent point, but no folio in the cache")
            }
            Self::SwapCacheMismatch { ty, offset, pfn, index } => write!(
                f,
                "swap slot {ty}:{offset:#x}: the cache holds pfn {pfn:#x} (page {index}), \
                 which is not a swap-cache folio with this slot"
            ),
            Self::NotOnLru { folio } => write!(f, "folio {folio:#x}: mapped anonymous folio on no LRU list"),
            Self::OnLruTwice { folio, times } => write!(f, "folio {folio:#x}: on the LRU lists {times} times"),
            Self::Refcount { folio, refcount, mappings, cache, holds: Some(holds) } => write!(
                f,
                "folio {folio:#x}: refcount {refcount}, expected {mappings} mappings + {cache} swap cache + {holds} holds"
            ),
            Self::Refcount { folio, refcount, mappings, cache, holds: None } => write!(
                f,
                "folio {folio:#x}: refcount {refcount} below {mappings} mappings + {cache} swap cache"
            ),
            Self::NoMemory { needed } => write!(f, "checker: no heap for {needed} entries"),
        }
    }
}

/// Why the frame `pfn`, which is in no folio, is not one.
fn frame_problem(memmap: &Memmap, pfn: Pfn) -> FrameProblem {
    let Some(page) = memmap.get(pfn) else { return FrameProblem::OutsideMemmap };
    let pfn = pfn.as_u64();
    if page.test_flag(PageFlag::Reserved) {
        return FrameProblem::Reserved;
    }
    // A free block containing `pfn` starts at `pfn` rounded down to its order.
    for k in 0..=MAX_ORDER {
        let start = pfn & !((1u64 << k) - 1);
        if let Some(p) = memmap.get(Pfn::new(start)) {
            if p.test_flag(PageFlag::Buddy) && start + (1u64 << p.order()) > pfn {
                return FrameProblem::Free { block: Pfn::new(start) };
            }
        }
    }
    FrameProblem::NotFolio
}

/// Pushes `value`, growing `v` with `try_reserve` (doubling).
fn push<T>(v: &mut Vec<T>, value: T) -> Result<(), ConsistencyError> {
    if v.len() == v.capacity() {
        let more = v.capacity().max(64);
        v.try_reserve(more).map_err(|_| ConsistencyError::NoMemory { needed: v.len() + more })?;
    }
    v.push(value);
    Ok(())
}

/// Calls `f(va, level, entry, slot)` for every entry of the table `table`
/// (at `level`, covering from `table_va`) below `end` that is not empty;
/// recurses into tables after reporting them. The kernel's shared upper
/// half is never reached (`end` is the user end).
#[allow(clippy::too_many_arguments)]
fn walk<F: PageTableFormat>(
    mem: &impl TableMemory,
    table: PhysAddr,
    level: Level,
    table_va: u64,
    end: u64,
    f: &mut dyn FnMut(VirtAddr, Level, Decoded, PhysAddr) -> Result<(), ConsistencyError>,
) -> Result<(), ConsistencyError> {
    let size = level.entry_size();
    for i in 0..crate::pgtable::format::ENTRIES_PER_TABLE as u64 {
        let va = table_va + i * size;
        if va >= end {
            break;
        }
        let slot = PhysAddr::new(table.as_u64() + 8 * i);
        let entry = F::decode(mem.read_entry(slot), level);
        match (entry, level.below()) {
            (Decoded::None, _) => {}
            (Decoded::Table(next), Some(below)) => {
                f(VirtAddr::new(va), level, entry, slot)?;
                walk::<F>(mem, next, below, va, end, f)?;
            }
            _ => f(VirtAddr::new(va), level, entry, slot)?,
        }
    }
    Ok(())
}

/// Checks the address space whose tables are `table` (read through `mem`)
/// and areas `vmas` against each other and against the folio counts in
/// `memmap` (see the module doc). The caller holds the space's lock. Right
/// only while no other space maps this space's folios (no fork): otherwise
/// use [`check_spaces`] over the whole family.
pub fn check_address_space<F: PageTableFormat>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &impl TableMemory,
    memmap: &'static Memmap,
) -> Result<Stats, ConsistencyError> {
    let stats = check_spaces(&[(table, vmas)], mem, &[anon_handle(table.root())], memmap)?;
    Ok(stats[0])
}

/// Checks several address spaces that may map the same folios (a fork
/// family) at once: each leaf as [`check_address_space`] does, except that
/// an anonymous folio's mapping may be any of `handles` (every space of the
/// family that ever made anonymous pages, gone ones included: a child keeps
/// mapping folios its dead parent made); then each page's mapcount must
/// equal the PTEs of *all* the spaces that map it, and a page marked
/// `AnonExclusive` must be mapped by one PTE only. Returns each space's
/// statistics, in order. The caller holds the lock of every space listed,
/// and the list holds every space that may map one of their folios.
pub fn check_spaces<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    handles: &[AnonHandle],
    memmap: &'static Memmap,
) -> Result<Vec<Stats>, ConsistencyError> {
    check_spaces_in(spaces, mem, handles, memmap, &Scope::default())
}

/// [`check_spaces`] with what else `scope` says may be looked at and is
/// true (the swap areas, the LRU lists, every space listed, nothing in
/// flight): the module doc's rules. Returns each space's statistics, in
/// order.
pub fn check_spaces_in<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    handles: &[AnonHandle],
    memmap: &'static Memmap,
    scope: &Scope<'_>,
) -> Result<Vec<Stats>, ConsistencyError> {
    let tables = check_tables(spaces, mem, memmap, scope)?;
    let mut all_stats = Vec::new();
    all_stats
        .try_reserve_exact(spaces.len())
        .map_err(|_| ConsistencyError::NoMemory { needed: spaces.len() })?;
    let areas = scope.swap.unwrap_or(&[]);
    // Pass 1: every entry's own rules and the statistics but the folios;
    // the lowest swap entry of no area's slots, if any.
    let mut stray: Option<SwapEntry> = None;
    for &(table, vmas) in spaces {
        let mut stats = Stats::default();
        let (mut nr_swap, mut first_nonpresent) = (0u64, None);
        let own = anon_handle(table.root());
        let end = vmas.user_range().1.as_u64();
        walk::<F>(mem, table.root(), Level::Pgd, 0, end, &mut |va, level, entry, slot| {
            let leaf = match entry {
                Decoded::Leaf(leaf) => leaf,
                Decoded::Table(_) if level.below().is_some() => return Ok(()),
                Decoded::NonPresent(NonPresent::Swap { entry, .. }) if scope.swap.is_some() => {
                    if level != Level::Pte || vmas.find(va).is_none() {
                        return Err(ConsistencyError::MisplacedSwapEntry { va, level });
                    }
                    if slot_index(areas, entry).is_none() && stray.is_none_or(|s| entry.to_raw() < s.to_raw())
                    {
                        stray = Some(entry);
                    }
                    stats.nr_swap_entries += 1;
                    return Ok(());
                }
                Decoded::NonPresent(NonPresent::Migration(m)) => {
                    let at = MigrationAt { va, level, entry: m };
                    check_migration_entry(spaces, mem, vmas, memmap, handles, at, scope.quiescent)
                        .map_err(|why| ConsistencyError::BadMigrationEntry { va, level, pfn: m.pfn, why })?;
                    stats.nr_migration_entries += 1;
                    return Ok(());
                }
                Decoded::NonPresent(NonPresent::Swap { .. }) => {
                    nr_swap += 1;
                    first_nonpresent.get_or_insert(va);
                    return Ok(());
                }
                Decoded::None | Decoded::Table(_) | Decoded::Bad(_) => {
                    return Err(ConsistencyError::Corrupt { va, level, raw: mem.read_entry(slot) });
                }
            };
            if tables.binary_search_by_key(&leaf.frame.pfn().as_u64(), |t| t.0).is_ok() {
                return Err(ConsistencyError::TableMappedAsData { va, level, table: leaf.frame });
            }
            check_leaf(vmas, memmap, own, handles, va, level, leaf, scope.quiescent)?;
            stats.nr_pages_mapped += leaf.size.bytes() / 4096;
            match level {
                Level::Pte => stats.nr_pte_leaves += 1,
                Level::Pmd => stats.nr_pmd_leaves += 1,
                _ => stats.nr_pud_leaves += 1,
            }
            Ok(())
        })?;
        if let Some(first) = first_nonpresent {
            return Err(ConsistencyError::NonPresentEntries { nr_swap, first });
        }
        all_stats.push(stats);
    }
    if let Some(entry) = stray {
        // No area counts it (module doc): 0 for every entry that holds it.
        let mut entries = 0;
        for &(table, vmas) in spaces {
            let end = vmas.user_range().1.as_u64();
            walk::<F>(mem, table.root(), Level::Pgd, 0, end, &mut |_, _, e, _| {
                if matches!(e, Decoded::NonPresent(NonPresent::Swap { entry: held, .. }) if held == entry) {
                    entries += 1;
                }
                Ok(())
            })?;
        }
        let count = areas.iter().find(|a| a.ty() == entry.ty()).map_or(0, |a| a.count(entry));
        return Err(ConsistencyError::SwapCount { ty: entry.ty(), offset: entry.offset(), entries, count });
    }
    // Pass 2, one window at a time (module doc, Memory): the counts of
    // the mappings of the frames and of the entries holding the slots in
    // the window, then the rules that need them.
    let window = if scope.window == 0 { WINDOW } else { scope.window } as u64;
    let nr_frames = memmap.len() as u64;
    let nr_slots: u64 = areas.iter().map(|a| a.nr_pages()).sum();
    let nr_windows = nr_frames.div_ceil(window).max(nr_slots.div_ceil(window)).max(1);
    let tables_list: Vec<&PageTable<F>> = spaces.iter().map(|s| s.0).collect();
    for k in 0..nr_windows {
        let w = Window::new(memmap, k * window, window, nr_slots)?;
        check_window(spaces, mem, memmap, scope, &tables_list, w, &mut all_stats)?;
    }
    if let (Some(areas), true) = (scope.swap, scope.quiescent) {
        check_swap_cache(areas, memmap)?;
    }
    Ok(all_stats)
}

/// Entries per window of the checker's counts (module doc, Memory): a
/// 4-byte count each, so about 1 MiB per vector.
pub const WINDOW: usize = 1 << 18;

/// Heap bytes a check whose spaces have `nr_tables` table frames (roots
/// included) may use at most: the window's vectors, and the table list and
/// statistics (a space has at least its root), counted with their growth.
pub const fn heap_bound(nr_tables: u64) -> u64 {
    let window = WINDOW as u64;
    let per_window = 4 * (window + (1 << MAX_ORDER))
        + 4 * ((window + (1 << MAX_ORDER)) >> 9)
        + 4
        + 4 * window
        + window
        + window / 8;
    per_window + 3 * 24 * nr_tables + 64 * nr_tables + 4096
}

/// One window of the check: frames `[lo, hi)` (the folios whose heads are
/// there are checked; their mappings are counted up to `span_hi`, so a
/// folio that crosses `hi` is counted whole), and the slots `[slot_lo,
/// slot_hi)` of the areas laid end to end (all their pages, header and
/// bad pages included).
struct Window {
    lo: u64,
    hi: u64,
    span_hi: u64,
    slot_lo: u64,
    slot_hi: u64,
    /// The PTEs mapping each frame of `[lo, span_hi)`.
    ptes: Vec<u32>,
    /// The PMDs mapping each order-9 folio with its head in `[lo,
    /// span_hi)`, at `(head - lo) >> 9` (two such heads are 512 apart).
    pmds: Vec<u32>,
    /// The entries holding each slot of `[slot_lo, slot_hi)`.
    slots: Vec<u32>,
    /// The folios with their head in `[lo, hi)` one space maps, a bit each.
    heads: Vec<u64>,
}

impl Window {
    fn new(memmap: &Memmap, first: u64, len: u64, nr_slots: u64) -> Result<Window, ConsistencyError> {
        let (base, end) = (memmap.base_pfn().as_u64(), memmap.end_pfn().as_u64());
        let lo = (base + first).min(end);
        let hi = (lo + len).min(end);
        let span_hi = (hi + (1 << MAX_ORDER)).min(end);
        let (slot_lo, slot_hi) = (first.min(nr_slots), (first + len).min(nr_slots));
        Ok(Window {
            lo,
            hi,
            span_hi,
            slot_lo,
            slot_hi,
            ptes: zeroed((span_hi - lo) as usize)?,
            pmds: zeroed(((span_hi - lo) >> 9) as usize + 1)?,
            slots: zeroed((slot_hi - slot_lo) as usize)?,
            heads: zeroed((hi - lo).div_ceil(64) as usize)?,
        })
    }

    /// The mappings of the folio `folio` (its head in `[lo, span_hi)`):
    /// the PMDs and the PTEs of each page.
    fn mappings_of(&self, folio: &Folio<'_>) -> (u64, &[u32]) {
        let i = (folio.pfn().as_u64() - self.lo) as usize;
        let nr_pmds = if folio.order() == 9 { self.pmds[i >> 9] } else { 0 };
        (u64::from(nr_pmds), &self.ptes[i..i + folio.nr_pages()])
    }
}

/// A vector of `n` zeros, or [`ConsistencyError::NoMemory`].
fn zeroed<T: Copy + Default>(n: usize) -> Result<Vec<T>, ConsistencyError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| ConsistencyError::NoMemory { needed: n })?;
    v.resize(n, T::default());
    Ok(v)
}

/// The index of the slot `entry` holds among the slots of `areas` laid end
/// to end, if it is a slot of one of them (the first of its type).
fn slot_index(areas: &[&SwapArea], entry: SwapEntry) -> Option<u64> {
    let mut first = 0;
    for area in areas {
        if area.ty() == entry.ty() {
            return (entry.offset() < area.nr_pages()).then_some(first + entry.offset());
        }
        first += area.nr_pages();
    }
    None
}

/// The rules of window `w` (pass 2 of [`check_spaces_in`]): counts the
/// mappings and entries in it, adds each space's folios with their head
/// in it to `all_stats`, and checks its slots' counts and its folios.
fn check_window<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    memmap: &'static Memmap,
    scope: &Scope<'_>,
    tables: &[&PageTable<F>],
    mut w: Window,
    all_stats: &mut [Stats],
) -> Result<(), ConsistencyError> {
    let areas = scope.swap.unwrap_or(&[]);
    for (&(table, vmas), stats) in spaces.iter().zip(all_stats.iter_mut()) {
        w.heads.fill(0);
        let end = vmas.user_range().1.as_u64();
        walk::<F>(mem, table.root(), Level::Pgd, 0, end, &mut |_, level, entry, _| {
            match entry {
                Decoded::Leaf(leaf) => {
                    let pfn = leaf.frame.pfn().as_u64();
                    if !(w.lo..w.span_hi).contains(&pfn) {
                        return Ok(());
                    }
                    let folio = folio_of(memmap, leaf.frame.pfn()).expect("pass 1 saw a folio");
                    if !crate::thp::is_huge_zero_folio(&folio) {
                        let i = (pfn - w.lo) as usize;
                        match level {
                            Level::Pte => w.ptes[i] += 1,
                            _ => w.pmds[i >> 9] += 1,
                        }
                    }
                    let head = folio.pfn().as_u64();
                    if (w.lo..w.hi).contains(&head) {
                        let i = (head - w.lo) as usize;
                        w.heads[i / 64] |= 1 << (i % 64);
                    }
                }
                Decoded::NonPresent(NonPresent::Swap { entry, .. }) => {
                    if let Some(i) = slot_index(areas, entry).filter(|i| (w.slot_lo..w.slot_hi).contains(i)) {
                        w.slots[(i - w.slot_lo) as usize] += 1;
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        stats.nr_folios += w.heads.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
    }
    if scope.swap.is_some() {
        check_swap_counts(areas, &w, scope)?;
    }
    // How many times each folio with its head in the window is on the
    // lists (at most 255 counted; a folio there twice is recounted).
    let lru_times = match (scope.lru, scope.quiescent) {
        (Some(lru), true) => {
            let mut times: Vec<u8> = zeroed((w.hi - w.lo) as usize)?;
            lru.for_each(|pfn, _| {
                if (w.lo..w.hi).contains(&pfn.as_u64()) {
                    let t = &mut times[(pfn.as_u64() - w.lo) as usize];
                    *t = t.saturating_add(1);
                }
            });
            Some(times)
        }
        _ => None,
    };
    let mut pfn = w.lo;
    while pfn < w.span_hi {
        let i = (pfn - w.lo) as usize;
        if w.ptes[i] == 0 && w.pmds[i >> 9] == 0 {
            pfn += 1;
            continue;
        }
        let Some(head) = folio_of(memmap, Pfn::new(pfn)) else {
            pfn += 1;
            continue;
        };
        let (start, next) = (head.pfn().as_u64(), head.pfn().as_u64() + head.nr_pages() as u64);
        pfn = next;
        // A folio with its head before the window was checked in the
        // window before; one with its head after, in the next.
        if !(w.lo..w.hi).contains(&start) {
            continue;
        }
        let (nr_pmds, ptes) = w.mappings_of(&head);
        if nr_pmds == 0 && ptes.iter().all(|&n| n == 0) {
            continue;
        }
        let lru_times = lru_times.as_ref().map(|times| match times[(start - w.lo) as usize] {
            t @ 0..=1 => u64::from(t),
            _ => {
                let mut exact = 0;
                scope.lru.expect("lists counted").for_each(|p, _| exact += u64::from(p == head.pfn()));
                exact
            }
        });
        check_folio(&head, nr_pmds, ptes, tables, mem, scope, lru_times)?;
    }
    if let (Some(areas), true, true) = (scope.swap, scope.quiescent, scope.complete) {
        check_unmapped_cache_refcounts(areas, memmap, &w, scope)?;
    }
    Ok(())
}

/// The page-table frames of `spaces` (module doc, rules 1 to 4): returns
/// them sorted by PFN, each with the entry that reaches it (its address
/// and level; the root's is level `Pgd` at address 0 with no slot).
fn check_tables<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    memmap: &'static Memmap,
    scope: &Scope<'_>,
) -> Result<Vec<(u64, VirtAddr, Level)>, ConsistencyError> {
    let mut tables: Vec<(u64, VirtAddr, Level)> = Vec::new();
    for &(table, vmas) in spaces {
        push(&mut tables, (table.root().pfn().as_u64(), VirtAddr::new(0), Level::Pgd))?;
        let end = vmas.user_range().1.as_u64();
        walk::<F>(mem, table.root(), Level::Pgd, 0, end, &mut |va, level, entry, _| {
            if let Decoded::Table(next) = entry {
                if level.below().is_some() {
                    push(&mut tables, (next.pfn().as_u64(), va, level))?;
                }
            }
            Ok(())
        })?;
    }
    tables.sort_unstable_by_key(|t| t.0);
    if let Some(w) = tables.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ConsistencyError::TableReachedTwice { table: Pfn::new(w[0].0).phys() });
    }
    for &(pfn, _, _) in &tables {
        let pfn = Pfn::new(pfn);
        if let Some(folio) = folio_of(memmap, pfn) {
            return Err(ConsistencyError::TableIsFolioPage { table: pfn.phys(), folio: folio.pfn() });
        }
        match frame_problem(memmap, pfn) {
            FrameProblem::OutsideMemmap => {}
            FrameProblem::NotFolio => {
                if !memmap.get(pfn).is_some_and(|p| p.test_flag(PageFlag::PageTable)) {
                    return Err(ConsistencyError::TableNotMarked { table: pfn.phys() });
                }
            }
            why => return Err(ConsistencyError::TableNotAllocated { table: pfn.phys(), why }),
        }
    }
    if let (Some(allocated), true) = (scope.nr_tables, scope.complete) {
        if allocated != tables.len() as u64 {
            return Err(ConsistencyError::TablesLeaked { allocated, reachable: tables.len() as u64 });
        }
    }
    Ok(tables)
}

/// The checks of one present leaf; returns its folio. `own` is the
/// space's handle (for reports), `handles` the ones its anonymous folios
/// may carry.
#[allow(clippy::too_many_arguments)]
fn check_leaf(
    vmas: &VmaSet,
    memmap: &'static Memmap,
    own: AnonHandle,
    handles: &[AnonHandle],
    va: VirtAddr,
    level: Level,
    leaf: crate::pgtable::Leaf,
    quiescent: bool,
) -> Result<Folio<'static>, ConsistencyError> {
    let bytes = leaf.size.bytes();
    let area = vmas
        .find(va)
        .filter(|a| va.as_u64() + bytes <= a.end.as_u64())
        .ok_or(ConsistencyError::OutsideArea { va, level })?;
    let p = area.prot;
    let exceeds = (leaf.prot.writable && !p.write)
        || (leaf.prot.executable && !p.exec)
        || !(p.read || p.write || p.exec)
        || leaf.prot.global;
    if exceeds {
        return Err(ConsistencyError::ProtExceedsArea { va, level, prot: leaf.prot, area: p });
    }
    let pfn = leaf.frame.pfn();
    let Some(folio) = folio_of(memmap, pfn) else {
        return Err(ConsistencyError::NotFolioPage { va, pfn, why: frame_problem(memmap, pfn) });
    };
    let i = folio.page_index_of(pfn);
    if crate::thp::is_huge_zero_folio(&folio) {
        // Shared by everyone, never counted, never written.
        if level != Level::Pmd || i != 0 || leaf.prot.writable {
            return Err(ConsistencyError::HugeZeroMisused { va, level, writable: leaf.prot.writable });
        }
        return Ok(folio);
    }
    match level {
        Level::Pte => {}
        Level::Pmd if i == 0 && folio.order() == 9 => {}
        _ => {
            return Err(ConsistencyError::HugeLeafNotFolio { va, level, pfn, order: folio.order() });
        }
    }
    if folio.test_flag(PageFlag::SwapBacked) {
        let expected_index = (va.as_u64() >> 12) - i as u64;
        if !folio.anon_handle().is_some_and(|h| handles.contains(&h)) || folio.index() != expected_index {
            return Err(ConsistencyError::WrongMapping {
                va,
                folio: folio.pfn(),
                mapping: folio.mapping(),
                index: folio.index(),
                expected_mapping: own,
                expected_index,
            });
        }
        if leaf.prot.writable {
            // A PMD leaf's exclusivity is its head's bit (as `crate::gup`).
            if !folio.page(i).test_flag(PageFlag::AnonExclusive) {
                return Err(ConsistencyError::WritableNotExclusive { va, level, folio: folio.pfn(), pfn });
            }
            if quiescent && folio.test_flag(PageFlag::SwapCache) && !folio.test_flag(PageFlag::Dirty) {
                return Err(ConsistencyError::WritableSwapCache { va, folio: folio.pfn() });
            }
        }
    }
    Ok(folio)
}

/// A migration entry the walk found: where, and what it says.
#[derive(Clone, Copy)]
struct MigrationAt {
    va: VirtAddr,
    level: Level,
    entry: MigrationEntry,
}

/// The rules of one migration entry (module doc, "Migration entries"),
/// in `vmas`' space among `spaces`: `Err` says which it breaks.
#[allow(clippy::too_many_arguments)]
fn check_migration_entry<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    vmas: &VmaSet,
    memmap: &'static Memmap,
    handles: &[AnonHandle],
    at: MigrationAt,
    quiescent: bool,
) -> Result<(), MigrationProblem> {
    let MigrationAt { va, level, entry } = at;
    let nr_pages: u64 = match level {
        Level::Pte => 1,
        Level::Pmd => 512,
        _ => return Err(MigrationProblem::OutsideArea),
    };
    let bytes = nr_pages * 4096;
    let area = vmas
        .find(va)
        .filter(|a| va.as_u64() + bytes <= a.end.as_u64())
        .ok_or(MigrationProblem::OutsideArea)?;
    if entry.kind == MigrationKind::Write && !area.prot.write {
        return Err(MigrationProblem::WriteInReadOnlyArea);
    }
    let Some(folio) = folio_of(memmap, entry.pfn) else {
        return Err(MigrationProblem::NotFolioPage(frame_problem(memmap, entry.pfn)));
    };
    let i = folio.page_index_of(entry.pfn);
    if level == Level::Pmd && (i != 0 || folio.order() != 9) {
        return Err(MigrationProblem::NotWholeFolio { order: folio.order() });
    }
    let anon = folio.test_flag(PageFlag::SwapBacked) && !crate::thp::is_huge_zero_folio(&folio);
    let belongs = folio.anon_handle().is_some_and(|h| handles.contains(&h))
        && folio.index() + i as u64 == va.as_u64() >> 12;
    if !anon || !belongs {
        return Err(MigrationProblem::WrongMapping);
    }
    if quiescent {
        return Err(MigrationProblem::AtRest);
    }
    if !folio.is_locked() {
        return Err(MigrationProblem::Unlocked);
    }
    if folio.page(i).test_flag(PageFlag::AnonExclusive) {
        return Err(MigrationProblem::ExclusiveFlagLeft);
    }
    if entry.kind != MigrationKind::Read {
        // Every mapping or entry of these pages sits at this address in
        // some space of the family (their index says where).
        let (first, last) = (entry.pfn.as_u64(), entry.pfn.as_u64() + nr_pages);
        let names = |pfn: Pfn, n: u64| pfn.as_u64() < last && pfn.as_u64() + n > first;
        let end = VirtAddr::new(va.as_u64() + bytes);
        let mut mappings = 0;
        for &(table, _) in spaces {
            table.visit(mem, va, end, &mut |_, l, e, _| {
                let n = if l == Level::Pmd { 512 } else { 1 };
                match e {
                    Decoded::Leaf(leaf) if names(leaf.frame.pfn(), n) => mappings += 1,
                    Decoded::NonPresent(NonPresent::Migration(m)) if names(m.pfn, n) => mappings += 1,
                    _ => {}
                }
            });
        }
        if mappings != 1 {
            return Err(MigrationProblem::SharedExclusive { mappings });
        }
    }
    Ok(())
}

/// The counts and flags of the folio `folio`, mapped by `nr_pmds` PMDs and
/// `ptes[i]` PTEs of its page `i`, on the LRU lists `lru_times` times
/// (when they are checked).
fn check_folio<F: PageTableFormat>(
    folio: &Folio<'static>,
    nr_pmds: u64,
    ptes: &[u32],
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    scope: &Scope<'_>,
    lru_times: Option<u64>,
) -> Result<(), ConsistencyError> {
    let head = folio.pfn();
    let anon = folio.test_flag(PageFlag::SwapBacked);
    if anon {
        let mapped = nr_pmds + ptes.iter().map(|&n| u64::from(n)).sum::<u64>();
        let found = crate::rmap::rmap_walk(folio, tables, mem, &mut |_| {}) as u64;
        if found != mapped {
            return Err(ConsistencyError::Rmap { folio: head, found, mapped });
        }
    }
    for (i, &nr_ptes) in ptes.iter().enumerate() {
        let pfn = head.plus(i as u64);
        let nr_ptes = u64::from(nr_ptes);
        let mapcount = folio.page_mapcount(i);
        if mapcount < 0 || mapcount as u64 != nr_ptes {
            return Err(ConsistencyError::PageMapcount { folio: head, pfn, nr_ptes, mapcount });
        }
        let mappings = nr_ptes + nr_pmds;
        if anon && folio.page(i).test_flag(PageFlag::AnonExclusive) && mappings > 1 {
            return Err(ConsistencyError::SharedExclusive { folio: head, pfn, mappings });
        }
    }
    let entire_mapcount = folio.entire_mapcount();
    if entire_mapcount < 0 || entire_mapcount as u64 != nr_pmds {
        return Err(ConsistencyError::EntireMapcount { folio: head, nr_pmds, entire_mapcount });
    }
    let (refcount, total_mapcount) = (folio.refcount(), folio.total_mapcount());
    if refcount < total_mapcount {
        return Err(ConsistencyError::RefcountBelowMapcount { folio: head, refcount, total_mapcount });
    }
    if !scope.quiescent {
        return Ok(());
    }
    check_quiet_flags(folio)?;
    if folio.test_flag(PageFlag::SwapCache) {
        let entry = folio.swap_entry();
        let area = entry.and_then(|e| scope.swap?.iter().find(|a| a.ty() == e.ty()));
        let cached = entry.zip(area).and_then(|(e, a)| a.cache_lookup_with(e, |pfn, i| (pfn, i)));
        if cached != Some((head, 0)) {
            return Err(ConsistencyError::NotInSwapCache { folio: head, entry, cached });
        }
    }
    if let (Some(lru), true) = (scope.lru, anon) {
        if lru.list_of(head).is_none() {
            return Err(ConsistencyError::NotOnLru { folio: head });
        }
    }
    if let Some(times) = lru_times {
        if times > 1 {
            return Err(ConsistencyError::OnLruTwice { folio: head, times });
        }
    }
    check_refcount(folio, total_mapcount, scope)
}

/// `Locked` and `Writeback` are clear on `folio` (a quiescent point).
fn check_quiet_flags(folio: &Folio<'_>) -> Result<(), ConsistencyError> {
    for flag in [PageFlag::Locked, PageFlag::Writeback] {
        if folio.test_flag(flag) {
            return Err(ConsistencyError::FlagLeftSet { folio: folio.pfn(), flag });
        }
    }
    Ok(())
}

/// The refcount of `folio` (mapped `mappings` times) against its users at
/// a quiescent point (module doc).
fn check_refcount(folio: &Folio<'_>, mappings: i32, scope: &Scope<'_>) -> Result<(), ConsistencyError> {
    let cache = if folio.test_flag(PageFlag::SwapCache) { folio.nr_pages() as i32 } else { 0 };
    let refcount = folio.refcount();
    let holds = scope.holds.filter(|_| scope.complete).map(|h| h(folio.pfn()));
    let ok = match holds {
        Some(h) => refcount == mappings + cache + h,
        None => refcount >= mappings + cache,
    };
    if ok {
        Ok(())
    } else {
        Err(ConsistencyError::Refcount { folio: folio.pfn(), refcount, mappings, cache, holds })
    }
}

/// The swap counts of the slots in window `w` (module doc): each slot held
/// by entries counts them exactly; with `scope.complete` every used slot
/// is held by as many entries as it counts.
fn check_swap_counts(areas: &[&SwapArea], w: &Window, scope: &Scope<'_>) -> Result<(), ConsistencyError> {
    let mut first = 0;
    for area in areas {
        let (lo, hi) = (w.slot_lo.max(first), w.slot_hi.min(first + area.nr_pages()));
        let base = first;
        first += area.nr_pages();
        if lo >= hi {
            continue;
        }
        let entries_of = |offset: u64| u64::from(w.slots[(base + offset - w.slot_lo) as usize]);
        for offset in lo - base..hi - base {
            let entries = entries_of(offset);
            if entries == 0 {
                continue;
            }
            let entry = SwapEntry::new(area.ty(), offset).expect("a swap entry the walk decoded");
            let count = area.count(entry);
            if u64::from(count) != entries {
                return Err(ConsistencyError::SwapCount { ty: entry.ty(), offset, entries, count });
            }
        }
        if !scope.complete {
            continue;
        }
        for entry in area.used_slots_from(lo - base).take_while(|e| e.offset() < hi - base) {
            let count = area.count(entry);
            let entries = entries_of(entry.offset());
            if u64::from(count) != entries {
                return Err(ConsistencyError::SwapCount {
                    ty: entry.ty(),
                    offset: entry.offset(),
                    entries,
                    count,
                });
            }
        }
    }
    Ok(())
}

/// The cache folio of the `HAS_CACHE` slot `entry` of `area`, and its page
/// index there, if the cache holds one that says it has this slot (the
/// cache's rules, module doc): `Err` names what is wrong.
fn cache_folio(
    area: &SwapArea,
    memmap: &'static Memmap,
    entry: SwapEntry,
) -> Result<(Folio<'static>, usize), ConsistencyError> {
    let (ty, offset) = (entry.ty(), entry.offset());
    let Some((pfn, index)) = area.cache_lookup_with(entry, |pfn, i| (pfn, i)) else {
        return Err(ConsistencyError::OrphanHasCache { ty, offset });
    };
    let folio = folio_of(memmap, pfn).filter(|f| {
        f.pfn() == pfn
            && index < f.nr_pages()
            && f.test_flag(PageFlag::SwapCache)
            && f.test_flag(PageFlag::SwapBacked)
            && f.swap_entry().map(|e| e.plus(index as u64)) == Some(entry)
    });
    folio.map(|f| (f, index)).ok_or(ConsistencyError::SwapCacheMismatch { ty, offset, pfn, index })
}

/// The refcounts of the swap-cache folios nothing maps whose heads are in
/// window `w`, at a quiescent point of every space (module doc): their
/// cache references (exactly, with the holds known). A cache folio
/// [`check_swap_cache`] refuses is left to it.
fn check_unmapped_cache_refcounts(
    areas: &[&SwapArea],
    memmap: &'static Memmap,
    w: &Window,
    scope: &Scope<'_>,
) -> Result<(), ConsistencyError> {
    for area in areas {
        for entry in area.used_slots() {
            if !area.has_cache(entry) {
                continue;
            }
            let Ok((folio, 0)) = cache_folio(area, memmap, entry) else { continue };
            let head = folio.pfn().as_u64();
            if !(w.lo..w.hi).contains(&head) || check_quiet_flags(&folio).is_err() {
                continue;
            }
            let (nr_pmds, ptes) = w.mappings_of(&folio);
            if nr_pmds == 0 && ptes.iter().all(|&n| n == 0) {
                check_refcount(&folio, 0, scope)?;
            }
        }
    }
    Ok(())
}

/// The swap cache at a quiescent point (module doc): every `HAS_CACHE`
/// slot has a cache folio that says it has this slot, unlocked (the
/// refcounts of those nothing maps are checked per window:
/// [`check_unmapped_cache_refcounts`]).
fn check_swap_cache(areas: &[&SwapArea], memmap: &'static Memmap) -> Result<(), ConsistencyError> {
    for area in areas {
        for entry in area.used_slots() {
            if !area.has_cache(entry) {
                continue;
            }
            let (folio, index) = cache_folio(area, memmap, entry)?;
            if index == 0 {
                check_quiet_flags(&folio)?;
            }
        }
    }
    Ok(())
}
