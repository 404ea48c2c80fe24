//! The consistency checker: walks every entry of one address space's page
//! table and checks it against the space's areas and against the folio
//! counts in the memmap.
//!
//! ## What is checked
//!
//! For each present leaf in the user half (`[0, user end)` of the
//! [`VmaSet`]; the kernel's shared upper half is not the space's):
//! 1. the whole leaf lies inside one area, and its permissions do not
//!    exceed the area's: writable only if the area allows writes,
//!    executable only if it allows execution, readable only if it allows
//!    some access (`PROT_NONE` maps nothing), never global;
//! 2. the frame is a page of a live folio: its descriptor exists, is not
//!    reserved, not inside a free block, and is a folio's head or tail.
//!    A PMD leaf maps a whole order-9 folio from its head; no PUD leaf maps
//!    user memory;
//! 3. an anonymous (`SwapBacked`) folio's mapping is this space's
//!    [`anon_handle`] and its index matches the address it is mapped at;
//! 4. the huge zero folio ([`crate::thp`]) is mapped only by read-only PMD
//!    leaves, and its mappings are not counted.
//!
//! The reverse map ([`crate::rmap::rmap_walk`]) of every anonymous folio
//! seen must find exactly the mappings the walk counted.
//!
//! Then, for every folio seen: each page's mapcount equals the PTEs that
//! map it, the entire mapcount equals the PMDs that map the folio, and the
//! refcount is at least the total mapcount (every mapping holds a
//! reference). Swap entries ([`check_spaces_with_swap`]) must be PTEs
//! inside an area, and each slot's swap count must equal the entries
//! that hold it. Migration entries do not exist yet: they are reported as
//! an error.
//!
//! The counts are compared with what *this* table maps, which is right
//! while every folio is mapped by one address space only (no fork, no
//! shared memory yet).
//!
//! ## Protocol
//!
//! The caller holds the lock that serialises changes to the table, the
//! areas and the mapcounts of the space's folios (the address-space lock),
//! so the walk sees one consistent state. O(mapped pages), allocates a
//! little (one entry per folio seen). Errors name the address, the page
//! and the counts that disagree; the first problem found is reported.

use crate::addr::Pfn;
use crate::addr::VirtAddr;
use crate::anon::anon_handle;
use crate::folio::{folio_of, Folio};
use crate::folio::{AnonHandle, FolioMapping};
use crate::frame::MAX_ORDER;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::SwapType;
use crate::pgtable::{Decoded, Level, NonPresent, PageTable, PageTableFormat, Prot, SwapEntry, TableMemory};
use crate::vma::{VmaProt, VmaSet};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
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
    /// Swap entries where no swap is known, or migration entries, which
    /// nothing makes yet; `first` is the lowest address holding one.
    NonPresentEntries { nr_swap: u64, nr_migration: u64, first: VirtAddr },
    /// A swap entry outside every area, or in a PMD (swap entries are made
    /// for PTEs only).
    MisplacedSwapEntry { va: VirtAddr, level: Level },
    /// `entries` page-table entries of the checked spaces hold the swap
    /// slot `offset` of area `ty`, but the area counts `count`.
    SwapCount { ty: SwapType, offset: u64, entries: u64, count: u8 },
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
            Self::NonPresentEntries { nr_swap, nr_migration, first } => write!(
                f,
                "{nr_swap} swap and {nr_migration} migration entries (first at {first}), none expected yet"
            ),
            Self::MisplacedSwapEntry { va, level } => {
                write!(f, "{va}: swap entry in a {level:?} entry or outside every area")
            }
            Self::SwapCount { ty, offset, entries, count } => write!(
                f,
                "swap slot {ty}:{offset:#x}: held by {entries} page-table entries, but its swap count is {count}"
            ),
        }
    }
}

/// The mappings of one folio the walk found.
struct Seen {
    folio: Folio<'static>,
    /// PTEs mapping each page.
    nr_ptes: Vec<u64>,
    /// PMDs mapping the whole folio.
    nr_pmds: u64,
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
    check_spaces_with_swap(spaces, mem, handles, memmap, None)
}

/// [`check_spaces`] for a kernel with swap: `swap_count` gives a swap
/// slot's count in its area (`None` when no area has that type). Each swap
/// entry must be a PTE inside an area, and every slot held by the spaces
/// must count exactly the entries that hold it (the spaces are the whole
/// family, and a slot belongs to one family's folio). Without
/// `swap_count`, any swap entry is an error.
pub fn check_spaces_with_swap<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    handles: &[AnonHandle],
    memmap: &'static Memmap,
    swap_count: Option<&dyn Fn(SwapEntry) -> Option<u8>>,
) -> Result<Vec<Stats>, ConsistencyError> {
    let mut seen: BTreeMap<Pfn, Seen> = BTreeMap::new();
    let mut slots: BTreeMap<SwapEntry, u64> = BTreeMap::new();
    let mut all_stats = Vec::new();
    for &(table, vmas) in spaces {
        let mut stats = Stats::default();
        let mut folios_here: BTreeSet<Pfn> = BTreeSet::new();
        let (mut nr_swap, mut nr_migration, mut first_nonpresent) = (0u64, 0u64, None);
        let mut error = None;
        let end = vmas.user_range().1;
        table.visit(mem, VirtAddr::new(0), end, &mut |va, level, entry, slot| {
            if error.is_some() {
                return;
            }
            let leaf = match entry {
                Decoded::Leaf(leaf) => leaf,
                Decoded::NonPresent(NonPresent::Swap { entry, .. }) if swap_count.is_some() => {
                    if level != Level::Pte || vmas.find(va).is_none() {
                        error = Some(ConsistencyError::MisplacedSwapEntry { va, level });
                    }
                    *slots.entry(entry).or_default() += 1;
                    stats.nr_swap_entries += 1;
                    return;
                }
                Decoded::NonPresent(np) => {
                    match np {
                        NonPresent::Swap { .. } => nr_swap += 1,
                        NonPresent::Migration(_) => nr_migration += 1,
                    }
                    first_nonpresent.get_or_insert(va);
                    return;
                }
                Decoded::None | Decoded::Table(_) | Decoded::Bad(_) => {
                    error = Some(ConsistencyError::Corrupt { va, level, raw: mem.read_entry(slot) });
                    return;
                }
            };
            let own = anon_handle(table.root());
            match check_leaf(vmas, memmap, own, handles, va, level, leaf, &mut seen) {
                Ok(folio) => {
                    folios_here.insert(folio);
                    stats.nr_pages_mapped += leaf.size.bytes() / 4096;
                    match level {
                        Level::Pte => stats.nr_pte_leaves += 1,
                        Level::Pmd => stats.nr_pmd_leaves += 1,
                        _ => stats.nr_pud_leaves += 1,
                    }
                }
                Err(e) => error = Some(e),
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        if let Some(first) = first_nonpresent {
            return Err(ConsistencyError::NonPresentEntries { nr_swap, nr_migration, first });
        }
        stats.nr_folios = folios_here.len() as u64;
        all_stats.push(stats);
    }
    if let Some(count_of) = swap_count {
        for (&entry, &entries) in &slots {
            let count = count_of(entry).unwrap_or(0);
            if count as u64 != entries {
                return Err(ConsistencyError::SwapCount {
                    ty: entry.ty(),
                    offset: entry.offset(),
                    entries,
                    count,
                });
            }
        }
    }
    let tables: Vec<&PageTable<F>> = spaces.iter().map(|s| s.0).collect();
    for s in seen.values() {
        let folio = s.folio;
        if folio.test_flag(PageFlag::SwapBacked) {
            let mapped = s.nr_ptes.iter().sum::<u64>() + s.nr_pmds;
            let found = crate::rmap::rmap_walk(&folio, &tables, mem, &mut |_| {}) as u64;
            if found != mapped {
                return Err(ConsistencyError::Rmap { folio: folio.pfn(), found, mapped });
            }
        }
        for (i, &nr_ptes) in s.nr_ptes.iter().enumerate() {
            let mapcount = folio.page_mapcount(i);
            if mapcount < 0 || mapcount as u64 != nr_ptes {
                return Err(ConsistencyError::PageMapcount {
                    folio: folio.pfn(),
                    pfn: folio.pfn().plus(i as u64),
                    nr_ptes,
                    mapcount,
                });
            }
            let mappings = nr_ptes + s.nr_pmds;
            let anon = folio.test_flag(PageFlag::SwapBacked);
            if anon && folio.page(i).test_flag(PageFlag::AnonExclusive) && mappings > 1 {
                return Err(ConsistencyError::SharedExclusive {
                    folio: folio.pfn(),
                    pfn: folio.pfn().plus(i as u64),
                    mappings,
                });
            }
        }
        let entire_mapcount = folio.entire_mapcount();
        if entire_mapcount < 0 || entire_mapcount as u64 != s.nr_pmds {
            return Err(ConsistencyError::EntireMapcount {
                folio: folio.pfn(),
                nr_pmds: s.nr_pmds,
                entire_mapcount,
            });
        }
        let (refcount, total_mapcount) = (folio.refcount(), folio.total_mapcount());
        if refcount < total_mapcount {
            return Err(ConsistencyError::RefcountBelowMapcount {
                folio: folio.pfn(),
                refcount,
                total_mapcount,
            });
        }
    }
    Ok(all_stats)
}

/// The checks of one present leaf; records its mapping in `seen` and
/// returns its folio's PFN. `own` is the space's handle (for reports),
/// `handles` the ones its anonymous folios may carry.
#[allow(clippy::too_many_arguments)]
fn check_leaf(
    vmas: &VmaSet,
    memmap: &'static Memmap,
    own: AnonHandle,
    handles: &[AnonHandle],
    va: VirtAddr,
    level: Level,
    leaf: crate::pgtable::Leaf,
    seen: &mut BTreeMap<Pfn, Seen>,
) -> Result<Pfn, ConsistencyError> {
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
        return Ok(folio.pfn());
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
    }
    let s = seen.entry(folio.pfn()).or_insert_with(|| Seen {
        folio,
        nr_ptes: vec![0; folio.nr_pages()],
        nr_pmds: 0,
    });
    if level == Level::Pte {
        s.nr_ptes[i] += 1;
    } else {
        s.nr_pmds += 1;
    }
    Ok(folio.pfn())
}
