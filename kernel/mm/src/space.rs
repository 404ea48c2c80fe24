//! Operations over a range of one address space's page table that keep the
//! folio counts right: unmapping (munmap, `MADV_DONTNEED`, teardown),
//! changing protection (mprotect), and copying for fork. The kernel's
//! address spaces call them under their lock; the host tests call them over
//! both real formats.
//!
//! ## Rules every operation keeps
//!
//! - **A 2 MiB leaf is never cut**: when the range starts or ends inside
//!   one, it is split into 512 PTEs first ([`crate::thp::split_huge_pmd`]),
//!   so that every leaf lies inside one area with one set of rights (the
//!   checker's first rule).
//! - **Counts follow the entries, references follow the flush**: a cleared
//!   entry's mapcount (page or entire) drops at once, under the lock; the
//!   reference that mapping held is only *gathered* ([`Gather`]) and dropped
//!   after the caller's TLB shootdown ([`Gather::release`]): until then
//!   another CPU may still reach the page through a stale translation.
//! - **Partly unmapped huge folios are split** ([`crate::thp::try_split_folio`])
//!   when this space is their only user, so the unmapped part is freed with
//!   the gathered references; otherwise they stay whole until their last
//!   reference goes.
//! - **mprotect never grants write**: it only takes rights away or changes
//!   the others; a write after `PROT_READ → PROT_READ|PROT_WRITE` faults
//!   once and the fault handler reuses an exclusive page or copies a shared
//!   one. (Making a shared page writable here would let one side of a fork
//!   write the other's page.)
//! - **fork shares, except what may be pinned** (mm-reference §8): each
//!   present anonymous leaf is write-protected on both sides and its
//!   `AnonExclusive` bit is cleared; a page (or huge folio) that may be
//!   pinned is copied for the child at once instead, and stays exclusive
//!   and writable in the parent, so writes through the pin stay visible to
//!   the parent (a pinned huge folio is copied as 512 pages of 4 KiB when
//!   no 2 MiB block is free). The huge zero folio is shared as it is.
//!
//! ## Migration entries
//!
//! A migration entry (PTE or PMD, [`NonPresent::Migration`]) stands for a
//! mapping of a folio that is being migrated: the folio is locked by the
//! migration, and the mapping's mapcount and reference were dropped when
//! the entry was written, so **the entry holds no count** (mm-reference
//! §7). The migration ends by restoring each entry it still finds, at the
//! address the folio's index says, into a present mapping of the new folio,
//! which takes one mapcount and one reference per entry restored (writable
//! only for `Write`, `AnonExclusive` unless `Read`). So:
//! - **zap** (munmap, `MADV_DONTNEED`, teardown) clears them and changes no
//!   count; a PMD one cut by the range is split into 512 PTE ones first.
//!   The restore then finds nothing there and maps nothing: the rule for
//!   `mm::migrate` is *restore only what is still a migration entry naming
//!   the folio; anything else (none, a new page faulted in since) is left
//!   alone*, and a folio whose entries were all zapped is freed when the
//!   migration drops its own reference;
//! - **fork** copies them into the child, and a `Write` or
//!   `ReadExclusive` entry becomes `Read` in both spaces (the page is
//!   shared once restored, like any page fork shares); no count changes:
//!   the restore finds both entries and counts each;
//! - **mprotect** that takes write away turns a `Write` entry into
//!   `ReadExclusive` (the page stays exclusive, as a write-protected
//!   exclusive leaf does); nothing else about an entry changes.
//!
//! ## Locks
//!
//! The caller holds the lock of the space whose table changes (and for
//! fork the parent's, with the child not yet reachable by anyone).

use crate::addr::Pfn;
use crate::addr::PAGE_SIZE;
use crate::addr::{PhysAddr, VirtAddr};
use crate::anon::remove_pte_mapping;
use crate::fault::FrameSource;
use crate::folio::AnonHandle;
use crate::folio::{folio_of, Folio};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{
    Decoded, EntryCopy, Flush, Leaf, Level, NonPresent, PageSize, PageTable, PageTableFormat, PgError, Prot,
};
use crate::pgtable::{MigrationEntry, MigrationKind, SwapEntry};
use crate::pgtable::{TableMemory, TlbHooks};
use crate::thp::{
    is_huge_zero, remove_pmd_mapping, split_huge_pmd_if_cut, try_split_folio, HPAGE_NR, HPAGE_SIZE,
};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// References of removed mappings, to drop once no CPU can use them (after
/// the flush), and the flush that makes it so.
#[derive(Debug)]
pub struct Gather {
    /// One entry per removed mapping: a PFN of the page (PTE) or of the
    /// head (PMD) whose folio holds the mapping's reference.
    pending: Vec<Pfn>,
    /// What the caller must flush before [`Gather::release`].
    flush: Flush,
    root: PhysAddr,
    /// Swap entries whose page-table entries were removed: each gives one
    /// count back to its slot ([`Gather::take_swap_entries`]).
    swap: Vec<SwapEntry>,
    /// Table frames [`free_pgtables`] unhooked: given back by
    /// [`Gather::free_tables`] once the flush is over.
    tables: Vec<PhysAddr>,
}

impl Gather {
    /// An empty gather for the space whose root table is `root`.
    pub fn new(root: PhysAddr) -> Gather {
        Gather { pending: Vec::new(), flush: Flush::none(root), root, swap: Vec::new(), tables: Vec::new() }
    }

    /// The flush owed for the entries removed so far (the caller runs it,
    /// or ignores it when no CPU can hold the space's translations, before
    /// [`Gather::release`]).
    pub fn take_flush(&mut self) -> Flush {
        core::mem::replace(&mut self.flush, Flush::none(self.root))
    }

    /// The swap entries the removed page-table entries held; the caller
    /// gives each its slot count back (no flush needed: a swap entry is
    /// never in a TLB).
    pub fn take_swap_entries(&mut self) -> Vec<SwapEntry> {
        core::mem::take(&mut self.swap)
    }

    /// Gives back the table frames [`free_pgtables`] unhooked. Call only
    /// after the flush ([`Gather::take_flush`]) is over: until then a CPU
    /// may still walk through them. Returns how many were freed.
    pub fn free_tables(&mut self, mem: &impl TableMemory) -> usize {
        let tables = core::mem::take(&mut self.tables);
        for &pa in &tables {
            mem.free_table(pa);
        }
        tables.len()
    }

    /// Mappings whose references are waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops every gathered reference; `free` gets each folio whose last
    /// reference that was. Call only after the flush is over. Returns the
    /// number of folios freed.
    pub fn release(self, memmap: &'static Memmap, free: &mut dyn FnMut(Folio<'static>)) -> usize {
        self.release_unmapped(memmap, &mut |_| {}, free)
    }

    /// [`Gather::release`], and before dropping each reference, hands a
    /// folio that is no longer mapped anywhere but is still in the swap
    /// cache to `unmapped` (which may take it out of the cache: the
    /// gathered reference keeps it alive meanwhile). Without this, a folio
    /// in the cache whose last mapping went would stay there, holding its
    /// slots, until reclaim came across it.
    pub fn release_unmapped(
        self,
        memmap: &'static Memmap,
        unmapped: &mut dyn FnMut(Folio<'static>),
        free: &mut dyn FnMut(Folio<'static>),
    ) -> usize {
        debug_assert!(
            self.tables.is_empty(),
            "Gather::release: unhooked tables not freed (Gather::free_tables)"
        );
        let mut freed = 0;
        for pfn in self.pending {
            let folio = folio_of(memmap, pfn)
                .unwrap_or_else(|| panic!("Gather::release: pfn {pfn:#x} is no longer a folio page"));
            if folio.test_flag(PageFlag::SwapCache) && folio.total_mapcount() == 0 {
                unmapped(folio);
            }
            if folio.put() {
                free(folio);
                freed += 1;
            }
        }
        freed
    }
}

/// Removes every mapping in `[start, end)` (leaves, swap and migration
/// entries) as the module doc says, gathering the references and the swap
/// entries into `gather`. `free` receives folios that a split left
/// without any reference. `hooks` are used only to split a 2 MiB leaf cut
/// by the range (break-before-make); the removed entries are flushed by the
/// caller through [`Gather::take_flush`].
#[allow(clippy::too_many_arguments)]
pub fn zap_range<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &'static Memmap,
    start: VirtAddr,
    end: VirtAddr,
    gather: &mut Gather,
    free: &mut dyn FnMut(Folio<'static>),
) -> Result<(), PgError> {
    split_huge_pmd_if_cut(table, mem, hooks, memmap, start)?;
    split_huge_pmd_if_cut(table, mem, hooks, memmap, end)?;
    // Huge folios some of whose PTEs went: head PFN -> pages unmapped.
    let mut cut: BTreeMap<Pfn, Vec<usize>> = BTreeMap::new();
    let pending = &mut gather.pending;
    let swap = &mut gather.swap;
    let flush = table.clear_range(mem, start, end, &mut |_, level, entry| {
        if let Decoded::NonPresent(NonPresent::Swap { entry, .. }) = entry {
            swap.push(entry);
            return;
        }
        let Decoded::Leaf(leaf) = entry else { return };
        match level {
            Level::Pmd if is_huge_zero(memmap, &leaf) => {}
            Level::Pmd => pending.push(remove_pmd_mapping(memmap, leaf.frame).pfn()),
            _ => {
                let folio = remove_pte_mapping(memmap, leaf.frame);
                pending.push(leaf.frame.pfn());
                if folio.is_large() {
                    cut.entry(folio.pfn()).or_default().push(folio.page_index_of(leaf.frame.pfn()));
                }
            }
        }
    });
    gather.flush = gather.take_flush().merge(flush);
    for (head, pages) in cut {
        let folio = folio_of(memmap, head).expect("a gathered reference keeps the folio");
        if folio.total_mapcount() == 0 {
            continue; // wholly unmapped: the gathered references free it whole
        }
        let mut held = [0u16; HPAGE_NR];
        for &i in &pages {
            held[i] += 1;
        }
        // Refused splits leave the folio whole (module doc).
        let _ = try_split_folio(table, mem, folio, |i| held.get(i).copied().unwrap_or(0) as i32, free);
    }
    Ok(())
}

/// After munmap removed the areas of `[start, end)` and [`zap_range`]
/// cleared its entries: unhooks every table that maps nothing and whose
/// whole span lies in `[floor, ceiling)`, the gap between the area below
/// the range (its end, or the bottom of user space) and the area above (its
/// start, or the top), into `gather` ([`PageTable::unhook_empty_tables`]).
/// When any went, the gather's flush becomes a flush of everything the
/// space caches, table entries included ([`Flush::all`]); the caller frees
/// the frames with [`Gather::free_tables`] after that flush. Returns the
/// number of tables unhooked.
#[allow(clippy::too_many_arguments)]
pub fn free_pgtables<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    start: VirtAddr,
    end: VirtAddr,
    floor: VirtAddr,
    ceiling: VirtAddr,
    gather: &mut Gather,
) -> usize {
    debug_assert!(floor <= start && end <= ceiling, "free_pgtables: the range lies outside its gap");
    let before = gather.tables.len();
    table.unhook_empty_tables(mem, start, end, floor, ceiling, &mut gather.tables);
    let unhooked = gather.tables.len() - before;
    if unhooked > 0 {
        gather.flush = gather.take_flush().merge(Flush::all(gather.root));
    }
    unhooked
}

/// Changes the rights of every present leaf in `[start, end)` to `prot`,
/// except that a read-only leaf stays read-only, and without write turns
/// `Write` migration entries into `ReadExclusive` ones (module doc).
/// Returns the flush owed (rights taken away).
pub fn protect_range<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &'static Memmap,
    start: VirtAddr,
    end: VirtAddr,
    prot: Prot,
) -> Result<Flush, PgError> {
    split_huge_pmd_if_cut(table, mem, hooks, memmap, start)?;
    split_huge_pmd_if_cut(table, mem, hooks, memmap, end)?;
    let mut leaves = Vec::new();
    let mut writes = Vec::new();
    table.visit(mem, start, end, &mut |va, level, entry, _| match entry {
        Decoded::Leaf(leaf) => leaves.push((va, level, leaf)),
        Decoded::NonPresent(NonPresent::Migration(m)) if m.kind == MigrationKind::Write => {
            writes.push((va, level, m))
        }
        _ => {}
    });
    if !prot.writable {
        // Module doc, "Migration entries": exclusive, no longer writable.
        for (va, level, m) in writes {
            let entry = NonPresent::Migration(MigrationEntry { kind: MigrationKind::ReadExclusive, ..m });
            let (_, f) = table.set_nonpresent(mem, va, level, entry)?;
            f.ignore(); // a migration entry is never cached by a TLB
        }
    }
    let mut flush = Flush::none(table.root());
    for (va, level, leaf) in leaves {
        let new = Leaf { prot: Prot { writable: prot.writable && leaf.prot.writable, ..prot }, ..leaf };
        if new != leaf {
            flush = flush.merge(table.update_leaf(mem, va, level, new)?);
        }
    }
    Ok(flush)
}

/// Why fork could not copy the space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkError {
    /// No memory for a copy of a pinned page or for the child's tables.
    OutOfMemory { va: VirtAddr },
    /// A leaf that is not an anonymous folio page (a kernel bug).
    NotAnon { va: VirtAddr, pfn: Pfn },
    /// The child's table refused an entry.
    Table { va: VirtAddr, error: PgError },
    /// A swap slot could not take one more holder (its area is gone, or
    /// its count is at the limit).
    SwapCount { va: VirtAddr },
}

/// Copies every present leaf, swap entry and migration entry of `parent`
/// in `[start, end)` into `child` for fork (module doc; a swap entry gains
/// a slot count through [`FrameSource::swap_dup`] and loses its exclusive
/// bit on both sides; a migration entry becomes `Read` on both sides). On success returns the flush the parent owes
/// (leaves made read-only), which must reach every CPU before the parent's
/// lock is dropped. On error the parent is left as it was give or take
/// write protection (flush `partial` all the same), and the child holds
/// what was copied so far (tear it down).
#[allow(clippy::too_many_arguments)]
pub fn fork_range<F: PageTableFormat>(
    parent: &PageTable<F>,
    child: &PageTable<F>,
    mem: &impl TableMemory,
    frames: &impl FrameSource,
    child_handle: AnonHandle,
    start: VirtAddr,
    end: VirtAddr,
    partial: &mut Flush,
) -> Result<(), ForkError> {
    let memmap = frames.memmap();
    let table_error = |va: VirtAddr, error: PgError| match error {
        PgError::OutOfMemory => ForkError::OutOfMemory { va },
        error => ForkError::Table { va, error },
    };
    let map_child = |va: VirtAddr, leaf: Leaf| {
        child.map(mem, va, leaf).map(Flush::ignore).map_err(|error| table_error(va, error))
    };
    // One walk, a table at a time (`PageTable::copy_range`): the child's
    // table for an entry exists before the entry is looked at here, so a
    // count taken below always gets its entry, and tearing down a child
    // that fork gave up on gives back exactly the counts it took.
    let keep = EntryCopy::KEEP;
    parent.copy_range(child, mem, start, end, partial, &table_error, &mut |va, level, entry| {
        let leaf = match entry {
            Decoded::Leaf(leaf) => leaf,
            // Migration entries (module doc): copied, as `Read` on both
            // sides when they were exclusive; they hold no count, so none
            // changes (and neither side owes a flush: a migration entry is
            // never cached by a TLB).
            Decoded::NonPresent(NonPresent::Migration(m)) => {
                let shared = F::make_nonpresent(&NonPresent::Migration(MigrationEntry {
                    kind: MigrationKind::Read,
                    ..m
                }));
                return Ok(EntryCopy {
                    child: shared,
                    source: (m.kind != MigrationKind::Read).then_some(shared),
                });
            }
            // Swap entries: both sides hold the slot now, so neither is
            // exclusive (seed 004: the bit is cleared in the parent, never
            // copied). No count is taken unless the child's entry is
            // written (`copy_range` writes what we return without fail).
            Decoded::NonPresent(NonPresent::Swap { entry, exclusive }) => {
                frames.swap_dup(entry).map_err(|_| ForkError::SwapCount { va })?;
                let shared = F::make_nonpresent(&NonPresent::Swap { entry, exclusive: false });
                return Ok(EntryCopy { child: shared, source: exclusive.then_some(shared) });
            }
            _ => return Ok(keep),
        };
        let huge = level == Level::Pmd;
        if huge && is_huge_zero(memmap, &leaf) {
            return Ok(EntryCopy { child: F::make_leaf(&leaf), source: None });
        }
        let pfn = leaf.frame.pfn();
        let folio = folio_of(memmap, pfn)
            .filter(|f| f.test_flag(PageFlag::SwapBacked))
            .ok_or(ForkError::NotAnon { va, pfn })?;
        let pinned = folio.maybe_pinned();
        if pinned {
            // §8: the parent keeps its page exclusive and writable; the
            // child gets a copy now (mapped here; its slot is empty).
            let copy_small = |at: VirtAddr, src: PhysAddr| {
                let copy = frames
                    .alloc_anon_page(child_handle, at.as_u64() >> 12)
                    .ok_or(ForkError::OutOfMemory { va: at })?;
                frames.copy_page(copy, src);
                let small = Leaf { frame: copy, size: PageSize::Size4K, dirty: true, ..leaf };
                map_child(at, small).inspect_err(|_| frames.release_anon_page(copy))
            };
            let huge_copy = if huge { frames.alloc_anon_huge(child_handle, va.as_u64() >> 12) } else { None };
            let Some(copy) = huge_copy else {
                // A 4 KiB page; or a huge one and no 2 MiB block is free:
                // the child gets 512 copies of 4 KiB (the parent keeps its
                // PMD), so fork does not fail while small pages are left.
                let nr = if huge { HPAGE_NR as u64 } else { 1 };
                for i in 0..nr {
                    let (at, src) = (va.as_u64() + i * 4096, leaf.frame.as_u64() + i * 4096);
                    copy_small(VirtAddr::new(at), PhysAddr::new(src))?;
                }
                return Ok(keep);
            };
            for i in 0..HPAGE_NR as u64 {
                frames.copy_page(
                    PhysAddr::new(copy.as_u64() + i * 4096),
                    PhysAddr::new(leaf.frame.as_u64() + i * 4096),
                );
            }
            if let Err(e) = map_child(va, Leaf { frame: copy, dirty: true, ..leaf }) {
                frames.release_anon_huge(copy);
                return Err(e);
            }
            return Ok(keep);
        }
        let shared = Leaf { prot: Prot { writable: false, ..leaf.prot }, ..leaf };
        folio.get();
        let i = if huge {
            folio.add_entire_mapcount(1);
            0
        } else {
            let i = folio.page_index_of(pfn);
            folio.add_page_mapcount(i, 1);
            i
        };
        // Tested first: a page shared before (a second fork) needs no
        // atomic write. The bit cannot be set meanwhile: only a fault or a
        // pin through this mapping sets it, under the lock we hold.
        let page = folio.page(i);
        if page.test_flag(PageFlag::AnonExclusive) {
            page.clear_flag(PageFlag::AnonExclusive);
        }
        // The parent's leaf is write-protected where it was writable
        // (`copy_range` adds it to the flush). Known gap: on x86 a CPU may
        // set the dirty bit between our read and this write; nothing reads
        // dirty for anonymous pages yet (no swap).
        // Encoded once for both sides.
        let shared = F::make_leaf(&shared);
        Ok(EntryCopy { child: shared, source: leaf.prot.writable.then_some(shared) })
    })
}

/// [`residency`]'s bit of a page a present leaf maps (`mincore`'s bit).
pub const RESIDENT: u8 = 1;
/// [`residency`]'s bit of a page whose contents are in swap or being
/// migrated (not resident, but not empty either).
pub const NOT_PRESENT: u8 = 2;

/// One byte per 4 KiB page of `[start, end)` (both page-aligned):
/// [`RESIDENT`] for a page a present leaf maps (4 KiB or inside a 2 MiB
/// leaf), [`NOT_PRESENT`] for one a swap or migration entry stands for,
/// 0 for a page never touched or dropped. `mincore` reports the first
/// bit; a copy of the range (`mremap`) needs every page with either.
pub fn residency<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    start: VirtAddr,
    end: VirtAddr,
) -> Vec<u8> {
    let (s, e) = (start.as_u64(), end.as_u64());
    let mut out = alloc::vec![0u8; ((e - s) / PAGE_SIZE) as usize];
    table.visit(mem, start, end, &mut |va, level, entry, _| {
        let bit = match entry {
            Decoded::Leaf(_) => RESIDENT,
            Decoded::NonPresent(_) => NOT_PRESENT,
            _ => return,
        };
        let size = match level {
            Level::Pmd => HPAGE_SIZE,
            _ => PAGE_SIZE,
        };
        let (from, to) = (va.as_u64().max(s), (va.as_u64() + size).min(e));
        for page in (from..to).step_by(PAGE_SIZE as usize) {
            out[((page - s) / PAGE_SIZE) as usize] |= bit;
        }
    });
    out
}

/// `/proc/<pid>/pagemap`'s bit of a present page.
pub const PM_PRESENT: u64 = 1 << 63;
/// `/proc/<pid>/pagemap`'s bit of a page in swap (or being migrated).
pub const PM_SWAP: u64 = 1 << 62;
/// `/proc/<pid>/pagemap`'s bit of a page this mapping alone maps.
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// The PFN field (bits 0..=54) of a present page.
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// One `pagemap` word per 4 KiB page of `[start, end)` (page-aligned), as
/// Linux's `/proc/<pid>/pagemap` gives them: [`PM_PRESENT`] with the PFN
/// and [`PM_MMAP_EXCLUSIVE`] when the page's mapcount is 1 (a PMD-mapped
/// page counts its huge mapping), [`PM_SWAP`] with the swap type in bits
/// 0..=4 and the offset from bit 5 for a swap entry (a migration entry:
/// [`PM_SWAP`] alone), 0 for nothing.
pub fn pagemap<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    memmap: &Memmap,
    start: VirtAddr,
    end: VirtAddr,
) -> Vec<u64> {
    let (s, e) = (start.as_u64(), end.as_u64());
    let mut out = alloc::vec![0u64; ((e - s) / PAGE_SIZE) as usize];
    table.visit(mem, start, end, &mut |va, level, entry, _| {
        let size = if level == Level::Pmd { HPAGE_SIZE } else { PAGE_SIZE };
        let (from, to) = (va.as_u64().max(s), (va.as_u64() + size).min(e));
        for page in (from..to).step_by(PAGE_SIZE as usize) {
            let i = (page - va.as_u64()) / PAGE_SIZE;
            out[((page - s) / PAGE_SIZE) as usize] = match entry {
                Decoded::Leaf(leaf) => {
                    let pfn = leaf.frame.pfn().plus(i);
                    let mapcount = folio_of(memmap, pfn)
                        .map_or(0, |f| f.page_mapcount(f.page_index_of(pfn)) + f.entire_mapcount());
                    let exclusive = if mapcount == 1 { PM_MMAP_EXCLUSIVE } else { 0 };
                    PM_PRESENT | exclusive | (pfn.as_u64() & PM_PFN_MASK)
                }
                Decoded::NonPresent(NonPresent::Swap { entry, .. }) => {
                    let offset = entry.offset() + if level == Level::Pmd { i } else { 0 };
                    PM_SWAP | (entry.ty().index() as u64 & 0x1f) | ((offset << 5) & PM_PFN_MASK)
                }
                Decoded::NonPresent(NonPresent::Migration(_)) => PM_SWAP,
                _ => 0,
            };
        }
    });
    out
}

/// What `/proc/<pid>/smaps` says of a range: bytes mapped (`Rss`), of
/// which by 2 MiB leaves (`AnonHugePages`), and bytes in swap (`Swap`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss: u64,
    pub anon_huge: u64,
    pub swap: u64,
}

/// [`Usage`] of `[start, end)` (page-aligned); a 2 MiB leaf the range
/// cuts counts its part inside.
pub fn usage<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    start: VirtAddr,
    end: VirtAddr,
) -> Usage {
    let (s, e) = (start.as_u64(), end.as_u64());
    let mut u = Usage::default();
    table.visit(mem, start, end, &mut |va, level, entry, _| {
        let size = if level == Level::Pmd { HPAGE_SIZE } else { PAGE_SIZE };
        let inside = (va.as_u64() + size).min(e) - va.as_u64().max(s);
        match entry {
            Decoded::Leaf(_) => {
                u.rss += inside;
                if level == Level::Pmd {
                    u.anon_huge += inside;
                }
            }
            Decoded::NonPresent(NonPresent::Swap { .. }) => u.swap += inside,
            _ => {}
        }
    });
    u
}
