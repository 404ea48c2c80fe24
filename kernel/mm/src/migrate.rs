//! Folio migration: moving an anonymous folio (order 0 or 9) to frames the
//! caller allocated, while every space that maps it keeps mapping it. The
//! kernel supplies the fork family's locks, the copy of the frames, the
//! TLB shootdown, freeing and the wake-up of waiting faults through
//! [`MigrateHost`]; allocating the destination (which node, a compaction
//! free block) is the caller's choice.
//!
//! ## The protocol ([`migrate_folio`], mm-reference §7)
//!
//! The caller holds the source folio **locked** with **one reference**
//! and hands over an [`UnpublishedFolio`] of the same order. In order:
//! 1. **check**: anonymous, same order, not under writeback;
//! 2. take the source **off the LRU lists** (remembering which). When
//!    it is off already, somebody else (reclaim) has it isolated with a
//!    reference: then the freeze (step 4) fails while they hold it, or
//!    they have put it back by then, and it is taken off after the freeze;
//! 3. **unmap** it under the family's locks with
//!    [`try_to_unmap`]`(`[`Target::Migration`]`)`: every PTE becomes a PTE
//!    migration entry, every PMD one PMD migration entry, of kind `Write`,
//!    `ReadExclusive` or `Read` ([`crate::unmap::migration_kind`]), young
//!    and dirty kept; refused, with nothing changed, when the folio may be
//!    pinned. The protection of each mapping is remembered for step 7
//!    (an entry keeps only its kind). The flushes run under the locks; then
//!    the locks go and the mappings' references are dropped. A fault on an
//!    entry now waits ([`crate::fault::FaultOutcome::MigrationWait`]);
//! 4. **freeze** the source's refcount at the references the caller can
//!    account for: its own, plus one per page when the folio is in the
//!    swap cache. Anyone else's (a `FOLL_GET` hold, a swap-in that found
//!    the cache folio) makes migration **back off**: step 7 with the
//!    source as the target, and [`MigrateError::Referenced`];
//! 5. **copy** the frames ([`MigrateHost::copy_frames`]);
//! 6. **move the metadata** to the destination while nobody else can see
//!    it: the folio-wide flags (`SwapBacked`, `Dirty`, `Uptodate`,
//!    `Referenced`), the mapping and index, the lock (the destination is
//!    published locked), and for a swap-cache folio `SwapCache`, the swap
//!    entry ([`record_swap_entry`]) and the cache's `nr` references, and
//!    then **every** one of its `nr` cache slots is pointed at the
//!    destination at once ([`SwapArea::cache_replace`]): a lookup of any
//!    page's entry finds the new folio. The source loses all of it;
//! 7. **restore** under the family's locks: every migration entry naming
//!    a page of the source (in every member, also one forked meanwhile)
//!    becomes a present mapping of the same page of the destination (a PMD
//!    entry a PMD leaf again), writable only for `Write`, anon-exclusive
//!    unless `Read`, young and dirty as the entry says, with the area's
//!    protection remembered in step 3; each restored mapping takes its
//!    mapcount and reference. No flush is owed: nothing was present;
//! 8. the destination goes on the list the source was on; both folios
//!    are **unlocked**, the faults waiting on the source woken
//!    ([`MigrateHost::migration_done`]) and the source **freed** (the
//!    freeze took its last references).
//!
//! The destination comes back with the caller's reference (moved over
//! from the source), unlocked. On any refusal the source is as it was
//! (mapped, listed, its references), still locked, with the caller's
//! reference still held; the destination is freed ([`migrate_folio`]) or
//! handed back unpublished ([`migrate_folio_to`], for compaction, which
//! cut it from free blocks of its own).
//!
//! [`migrate_or_split`] is the policy for a huge folio with no 2 MiB
//! destination: split it, then migrate its pages one by one.
//!
//! ## Invariants
//!
//! - A migration entry exists only while its folio is locked by the
//!   migration that wrote it (steps 3 to 7), and holds no mapcount and no
//!   reference; the source cannot be freed under it (the caller's
//!   reference, frozen or not, is only given up in step 8).
//! - Whole or nothing: step 3 unmaps every mapping or none (the unmap
//!   doc); nothing after the freeze can fail, so a migration that passed
//!   step 4 completes.
//! - The copy happens with every mapping replaced and flushed: no CPU can
//!   write the source during it.
//!
//! ## Locks
//!
//! The caller holds the source's folio lock and no spin lock. Steps 3 and
//! 7 take the family's space locks ([`MigrateHost::with_family_locked`],
//! root order) and inside them the LRU's and the swap area's leaf locks;
//! the copy (step 5) runs with only the folio locks held, so faults on the
//! entries sleep meanwhile instead of spinning on a space lock.

use crate::folio::{Folio, UnpublishedFolio};
use crate::lru::{LruList, LruLists};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{
    Decoded, Leaf, Level, MigrationKind, NonPresent, PageSize, PageTable, PageTableFormat, Prot, SwapType,
    TableMemory, TlbHooks,
};
use crate::rmap::rmap_walk;
use crate::swap::area::{CacheError, SwapArea};
use crate::thp::{self, SplitRefused};
use crate::unmap::{try_to_unmap, Target, UnmapError};
use crate::{Pfn, PhysAddr, VirtAddr};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// What migration needs from the kernel.
pub trait MigrateHost {
    /// The page-table format of the spaces.
    type Format: PageTableFormat;
    /// Where page tables live.
    type Mem: TableMemory;
    /// The TLB shootdown that reaches every CPU.
    type Tlb: TlbHooks;

    /// The page descriptors.
    fn memmap(&self) -> &'static Memmap;
    /// The LRU lists (`None`: none, nothing is moved between them).
    fn lru(&self) -> Option<&LruLists>;
    /// Runs `f` over the tables of every live space that may map `folio`
    /// (its fork family), with all their locks held (root order), and
    /// where those tables live and the shootdown that reaches every CPU.
    fn with_family_locked<R>(
        &self,
        folio: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<Self::Format>], &Self::Mem, &Self::Tlb) -> R,
    ) -> R;
    /// Runs `f` on the swap area of type `ty`; `None` when it is not on.
    fn with_swap_area<R>(&self, ty: SwapType, f: impl FnOnce(&SwapArea) -> R) -> Option<R>;
    /// Copies `nr` frames from `src` to `dst` (the kernel: through its
    /// direct map). `dst` is a block the caller allocated and nothing maps;
    /// `src` a locked folio nothing maps (every mapping is a migration
    /// entry, flushed).
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize);
    /// Gives back a folio whose last reference is gone.
    fn free(&self, folio: Folio<'static>);
    /// The migration of the folio with head `old` is over or was given up
    /// (its entries are gone): wake the faults that wait on it.
    fn migration_done(&self, old: Pfn);
}

/// Why a folio was not migrated. The source is as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateError {
    /// Not an anonymous folio (the huge zero folio, a free frame).
    NotAnon,
    /// The destination's order differs from the source's.
    OrderMismatch { src: u8, dst: u8 },
    /// Being written to swap: its frames must not change now.
    Writeback,
    /// [`try_to_unmap`] refused (the folio may be pinned).
    Unmap(UnmapError),
    /// Mapped outside the family's tables after the unmap (a kernel bug).
    StillMapped,
    /// References nobody accounts for: `expected` were to be frozen,
    /// `found` were there.
    Referenced { expected: i32, found: i32 },
    /// In the swap cache of an area that is gone (swapoff).
    AreaGone,
    /// No destination could be had.
    NoMemory,
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::NotAnon => write!(f, "not an anonymous folio"),
            MigrateError::OrderMismatch { src, dst } => {
                write!(f, "destination of order {dst} for a folio of order {src}")
            }
            MigrateError::Writeback => write!(f, "under writeback"),
            MigrateError::Unmap(e) => write!(f, "unmap: {e}"),
            MigrateError::StillMapped => write!(f, "still mapped outside its family"),
            MigrateError::Referenced { expected, found } => {
                write!(f, "{found} references where {expected} were expected")
            }
            MigrateError::AreaGone => write!(f, "its swap area is gone"),
            MigrateError::NoMemory => write!(f, "no destination"),
        }
    }
}

/// The protection of every mapping step 3 replaced, by (root, address),
/// for step 7 (a migration entry keeps only its kind).
#[derive(Debug, Clone, Default)]
pub struct Prots(BTreeMap<(u64, u64), Prot>);

impl Prots {
    /// The protection of every mapping of `folio` in `tables`, read
    /// through the reverse map; taken under the same locks as the unmap
    /// that follows (step 3).
    pub fn of_mappings<F: PageTableFormat>(
        tables: &[&PageTable<F>],
        mem: &impl TableMemory,
        folio: &Folio<'_>,
    ) -> Prots {
        let mut prots = BTreeMap::new();
        for table in tables {
            rmap_walk(folio, &[*table], mem, &mut |m| {
                prots.insert((table.root().as_u64(), m.va.as_u64()), m.leaf.prot);
            });
        }
        Prots(prots)
    }

    /// The protection for restoring the entry at `va` of the space rooted
    /// at `root`: that mapping's; else that of the PMD mapping around it
    /// in the same space (a PMD entry split into PTE entries meanwhile);
    /// else the same address in another member (a space forked during the
    /// migration, whose entries fork copied: fork copies the areas too);
    /// else any mapping of the folio (they all lie in one area's range).
    fn of(&self, root: PhysAddr, va: VirtAddr) -> Prot {
        let (root, va) = (root.as_u64(), va.as_u64());
        let block = va & !(thp::HPAGE_SIZE - 1);
        let same_va = |v: u64| self.0.iter().find(move |((_, w), _)| *w == v).map(|(_, p)| p);
        self.0
            .get(&(root, va))
            .or_else(|| self.0.get(&(root, block)))
            .or_else(|| same_va(va))
            .or_else(|| same_va(block))
            .or_else(|| self.0.values().next())
            .copied()
            .unwrap_or(Prot { writable: false, user: true, executable: false, global: false })
    }
}

/// Records the swap entry of a swap-cache folio on the migration
/// destination `dst` (locked, not visible to anyone yet): one entry, on
/// the head, as for every folio ([`Folio::set_swap_entry`]); page `i`'s is
/// the head's plus `i`, so nothing else needs moving. With the bug-replay
/// switch [`crate::bugs::Bug::SwapcacheTailEntries`] on, the pages also
/// keep records of their own (the old per-page design), which this does
/// not carry over: seed 000's mistake, the tails of the new folio carry
/// no entry once it is split.
pub fn record_swap_entry(src: &Folio<'_>, dst: &Folio<'_>) {
    let first = src.swap_entry().expect("record_swap_entry: a swap-cache folio has an entry");
    dst.set_swap_entry(first);
}

/// Moves the locked anonymous folio `src` (the caller holds one reference)
/// to `dst`, a block of the same order the caller allocated, as the module
/// doc says. Returns the new folio, unlocked, holding the caller's
/// reference; on a refusal the source is as it was, still locked (the
/// caller still holds its reference) and `dst` is freed.
pub fn migrate_folio<H: MigrateHost>(
    host: &H,
    src: Folio<'static>,
    dst: UnpublishedFolio<'static>,
) -> Result<Folio<'static>, MigrateError> {
    migrate_folio_to(host, src, dst).map_err(|refused| {
        discard(host, refused.dst);
        refused.why
    })
}

/// Why [`migrate_folio_to`] did not move a folio, and its destination,
/// untouched (unpublished, as the caller handed it over).
#[derive(Debug)]
pub struct Refused {
    pub why: MigrateError,
    pub dst: UnpublishedFolio<'static>,
}

/// [`migrate_folio`] for a caller that keeps its destination when the
/// move is refused (compaction: a block cut from the free blocks it
/// isolated, which goes to the next folio or back to its list): the same
/// protocol, but on a refusal `dst` comes back in [`Refused`], never
/// published, instead of being freed.
pub fn migrate_folio_to<H: MigrateHost>(
    host: &H,
    src: Folio<'static>,
    mut dst: UnpublishedFolio<'static>,
) -> Result<Folio<'static>, Refused> {
    debug_assert!(src.is_locked(), "migrate_folio: folio {:#x} not locked", src.pfn());
    let nr = src.nr_pages();
    // Step 1.
    let refused = |host: &H, dst: UnpublishedFolio<'static>, why| {
        // Faults that met an entry of a migration given up retry now.
        host.migration_done(src.pfn());
        Err(Refused { why, dst })
    };
    let Some(handle) = src.anon_handle() else { return refused(host, dst, MigrateError::NotAnon) };
    if src.order() != dst.order() {
        let why = MigrateError::OrderMismatch { src: src.order(), dst: dst.order() };
        return refused(host, dst, why);
    }
    if src.test_flag(PageFlag::Writeback) {
        return refused(host, dst, MigrateError::Writeback);
    }
    let cache_entry = src.test_flag(PageFlag::SwapCache).then(|| src.swap_entry()).flatten();
    if let Some(e) = cache_entry {
        if host.with_swap_area(e.ty(), |_| ()).is_none() {
            return refused(host, dst, MigrateError::AreaGone);
        }
    }
    // Step 2.
    let list = host.lru().and_then(|lru| {
        let list = lru.list_of(src.pfn())?;
        lru.remove(src).then_some(list)
    });
    let put_back = |f: Folio<'static>| {
        if let (Some(lru), Some(list)) = (host.lru(), list) {
            lru.putback(f, list);
        }
    };
    // Step 3.
    let unmapped = host.with_family_locked(&src, |tables, mem, tlb| {
        let prots = Prots::of_mappings(tables, mem, &src);
        let done = try_to_unmap(tables, mem, tlb, host.memmap(), &src, Target::Migration)?;
        for flush in done.flushes {
            flush.flush(tlb);
        }
        Ok::<_, UnmapError>((done.refs, prots))
    });
    let (refs, prots) = match unmapped {
        Ok(done) => done,
        Err(e) => {
            put_back(src);
            return refused(host, dst, MigrateError::Unmap(e));
        }
    };
    for _ in 0..refs {
        let last = src.put();
        debug_assert!(!last, "migrate_folio: the caller's reference keeps the folio");
    }
    // Step 4.
    let expected = 1 + if cache_entry.is_some() { nr as i32 } else { 0 };
    let why = if src.total_mapcount() != 0 {
        Some(MigrateError::StillMapped)
    } else if !src.try_freeze(expected) {
        Some(MigrateError::Referenced { expected, found: src.refcount() })
    } else {
        None
    };
    if let Some(why) = why {
        host.with_family_locked(&src, |tables, mem, _| {
            remove_migration_entries(tables, mem, &src, &src, &prots)
        });
        put_back(src);
        return refused(host, dst, why);
    }
    // Off the lists for good. A folio somebody else had isolated at step 2
    // (reclaim or `MADV_PAGEOUT`, which then found it locked) is put back
    // by them before they drop their reference: after the freeze it is
    // back on its list (nobody can isolate it again now: that takes a
    // reference), and it is the destination's to take.
    let list = list.or_else(|| {
        let lru = host.lru()?;
        let back_on = lru.list_of(src.pfn())?;
        lru.remove(src).then_some(back_on)
    });
    let put_back = |f: Folio<'static>| {
        if let (Some(lru), Some(list)) = (host.lru(), list) {
            lru.putback(f, list);
        }
    };
    // Step 5.
    host.copy_frames(dst.phys(), src.phys(), nr);
    // Step 6: the destination, still invisible, then published locked.
    for flag in [PageFlag::SwapBacked, PageFlag::Dirty, PageFlag::Uptodate, PageFlag::Referenced] {
        if src.test_flag(flag) {
            dst.nonatomic_set_flag(flag);
        }
    }
    dst.set_mapping(crate::folio::FolioMapping::Anon(handle), src.index());
    dst.nonatomic_set_flag(PageFlag::Locked);
    let new = dst.publish();
    if let Some(entry) = cache_entry {
        for _ in 0..nr {
            new.get();
        }
        record_swap_entry(&src, &new);
        new.set_flag(PageFlag::SwapCache);
        host.with_swap_area(entry.ty(), |area| {
            area.cache_replace(entry, nr as u64, src.pfn(), new.pfn())
                .unwrap_or_else(|e: CacheError| panic!("migrate_folio: {:#x} at {entry:?}: {e}", src.pfn()))
        })
        .expect("migrate_folio: the area was there before the freeze and the folio lock keeps swapoff out");
        src.clear_flag(PageFlag::SwapCache);
        src.clear_swap_entry();
    }
    for flag in [PageFlag::SwapBacked, PageFlag::Dirty, PageFlag::Uptodate, PageFlag::Referenced] {
        src.clear_flag(flag);
    }
    // Step 7 (the source's index still says where its entries are).
    host.with_family_locked(&new, |tables, mem, _| remove_migration_entries(tables, mem, &src, &new, &prots));
    src.set_mapping(crate::folio::FolioMapping::None, 0);
    // Step 8.
    put_back(new);
    new.unlock();
    src.unlock();
    host.migration_done(src.pfn());
    host.free(src);
    Ok(new)
}

/// Gives back a destination that was not used.
fn discard<H: MigrateHost>(host: &H, dst: UnpublishedFolio<'static>) {
    let folio = dst.publish();
    if folio.put() {
        host.free(folio);
    }
}

/// Step 7: replaces every migration entry naming a page of `old` in
/// `tables` by a present mapping of the same page of `new` (which may be
/// `old` itself, when migration backs off), with its mapcount and
/// reference, and the protection `prots` remembered from step 3 (made
/// read-only unless the entry is `Write`). Returns how many there were.
/// Entries that are gone (zapped) or that lie where the folio's index
/// does not put that page are not restored.
///
/// The caller holds the lock of every table in `tables` (the family's)
/// and `old` locked; `new` is locked too when it is not `old`. Public as
/// the second half of a migration for the host tests of the paths that
/// meet migration entries (`crate::testkit::migration_entries`), which
/// act between the halves.
pub fn remove_migration_entries<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    old: &Folio<'_>,
    new: &Folio<'_>,
    prots: &Prots,
) -> usize {
    debug_assert!(old.is_locked(), "remove_migration_entries: folio {:#x} not locked", old.pfn());
    let nr = old.nr_pages() as u64;
    let start = VirtAddr::new(old.index() << 12);
    let end = VirtAddr::new((old.index() + nr) << 12);
    let mut restored = 0;
    for table in tables {
        let mut found = Vec::new();
        table.visit(mem, start, end, &mut |va, level, entry, _| {
            let Decoded::NonPresent(NonPresent::Migration(m)) = entry else { return };
            if !old.contains_pfn(m.pfn) {
                return;
            }
            let i = old.page_index_of(m.pfn);
            // Only where the index says the page is (as `rmap_walk`).
            if va.as_u64() >> 12 == old.index() + i as u64 {
                found.push((va, level, i, m));
            }
        });
        for (va, level, i, m) in found {
            let prot = prots.of(table.root(), va);
            let size = PageSize::at_level(level).expect("remove_migration_entries: an entry at a leaf level");
            let leaf = Leaf {
                frame: new.pfn().plus(i as u64).phys(),
                size,
                prot: Prot { writable: m.kind == MigrationKind::Write, ..prot },
                dirty: m.dirty,
                young: m.young,
            };
            // Nothing was present: no flush is owed for either write, and
            // the slot's table exists (no allocation).
            table
                .clear(mem, va, level)
                .expect("remove_migration_entries: the entry was just found")
                .1
                .ignore();
            table.map(mem, va, leaf).expect("remove_migration_entries: the slot was just cleared").ignore();
            new.get();
            match level {
                Level::Pmd => new.add_entire_mapcount(1),
                _ => new.add_page_mapcount(i, 1),
            };
            if m.kind != MigrationKind::Read {
                new.page(i).set_flag(PageFlag::AnonExclusive);
            }
            restored += 1;
        }
    }
    restored
}

/// For a fault that met a migration entry at `va`
/// ([`crate::fault::FaultOutcome::MigrationWait`]), under the lock of the
/// space of `table`: the head PFN of the folio being migrated, while the
/// entry covering `va` is still a migration entry and that folio still
/// locked; `None` once the access should be retried. The caller sleeps
/// while it says `Some` (woken by [`MigrateHost::migration_done`]). The
/// space's lock keeps the named folio from being freed meanwhile: the
/// migration needs that lock to replace the entry before it frees it.
pub fn migration_in_progress<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    memmap: &Memmap,
    va: VirtAddr,
) -> Option<Pfn> {
    match table.lookup(mem, va) {
        (_, Decoded::NonPresent(NonPresent::Migration(m))) => {
            crate::folio::folio_of(memmap, m.pfn).filter(|f| f.is_locked()).map(|f| f.pfn())
        }
        _ => None,
    }
}

/// What [`migrate_or_split`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Migrated {
    /// Folios moved.
    pub nr_moved: usize,
    /// Pages moved.
    pub nr_pages: usize,
    /// Folios (pieces of a split one counted each) left where they were.
    pub nr_failed: usize,
    /// The huge folio was split because no 2 MiB destination was free.
    pub split: bool,
}

/// The migration policy for one folio (locked by the caller, which holds
/// one reference; both are consumed): a destination of its order from
/// `alloc` and [`migrate_folio`]; for a huge folio that gets none, split it
/// (mapped by one space only and not pinned, else it stays where it is; a
/// swap-cache folio's pieces keep their slots, seed 000) and migrate each
/// still-mapped piece to an order-0 destination. Pieces and folios that
/// could not move stay where they are, on the lists. Returns what moved,
/// and the last refusal.
pub fn migrate_or_split<H: MigrateHost>(
    host: &H,
    folio: Folio<'static>,
    alloc: &mut dyn FnMut(u8) -> Option<UnpublishedFolio<'static>>,
) -> (Migrated, Option<MigrateError>) {
    let mut done = Migrated::default();
    if let Some(dst) = alloc(folio.order()) {
        let err = finish(host, folio, move_one(host, folio, Some(dst), &mut done));
        return (done, err);
    }
    if !folio.is_large() {
        let err = finish(host, folio, move_one(host, folio, None, &mut done));
        return (done, err);
    }
    // Off the lists while it changes shape (`crate::lru`); the pieces go
    // back on after.
    let listed = host.lru().is_some_and(|l| l.remove(folio));
    let pieces = match split(host, folio) {
        Ok(pieces) => pieces,
        Err(_) => {
            if listed {
                host.lru().expect("listed").putback(folio, LruList::Inactive);
            }
            let err = finish(host, folio, move_one(host, folio, None, &mut done));
            return (done, err);
        }
    };
    done.split = true;
    // Mapped pieces, and pieces in the swap cache, go back on the lists.
    let relist = |f: Folio<'static>| {
        let wanted = f.total_mapcount() > 0 || f.test_flag(PageFlag::SwapCache);
        if let (true, Some(lru)) = (wanted, host.lru()) {
            lru.putback(f, LruList::Inactive);
        }
    };
    let mut err = None;
    // Page 0 keeps the caller's lock and reference; the others come with
    // a reference each, unlocked, off the lists.
    let mut todo = alloc::vec![folio];
    todo.extend(pieces);
    for (n, f) in todo.into_iter().enumerate() {
        if n > 0 && !f.try_lock() {
            relist(f);
            done.nr_failed += 1;
            put(host, f);
            continue;
        }
        if f.total_mapcount() == 0 {
            // Nobody maps it any more: nothing to move.
            f.unlock();
            relist(f);
            put(host, f);
            continue;
        }
        // Off the lists: `migrate_folio` moves no list membership here.
        let dst = alloc(0);
        match move_one(host, f, dst, &mut done) {
            Ok(new) => {
                relist(new);
                put(host, new);
            }
            Err(e) => {
                relist(f);
                put(host, f);
                err = Some(e);
            }
        }
    }
    (done, err)
}

/// Drops the caller's reference after [`move_one`] (on the new folio, or
/// on `old` after a refusal); returns the refusal.
fn finish<H: MigrateHost>(
    host: &H,
    old: Folio<'static>,
    moved: Result<Folio<'static>, MigrateError>,
) -> Option<MigrateError> {
    match moved {
        Ok(new) => {
            put(host, new);
            None
        }
        Err(e) => {
            put(host, old);
            Some(e)
        }
    }
}

/// [`migrate_folio`] of the locked `f` to `dst`, or a refusal for want of
/// one; counts the outcome in `done`. On success returns the new folio
/// with the caller's reference; on a refusal `f` is unlocked (here) and
/// the caller still holds its reference.
fn move_one<H: MigrateHost>(
    host: &H,
    f: Folio<'static>,
    dst: Option<UnpublishedFolio<'static>>,
    done: &mut Migrated,
) -> Result<Folio<'static>, MigrateError> {
    let nr = f.nr_pages();
    let result = match dst {
        Some(dst) => migrate_folio(host, f, dst),
        None => Err(MigrateError::NoMemory),
    };
    if result.is_err() {
        f.unlock();
    }
    match result {
        Ok(new) => {
            done.nr_moved += 1;
            done.nr_pages += nr;
            Ok(new)
        }
        Err(e) => {
            done.nr_failed += 1;
            Err(e)
        }
    }
}

/// Drops one reference to `folio`, freeing it when it was the last.
fn put<H: MigrateHost>(host: &H, folio: Folio<'static>) {
    if folio.put() {
        host.free(folio);
    }
}

/// Splits the locked huge `folio` (off the lists, the caller's reference)
/// under its family's locks, when one space alone maps it
/// ([`thp::split_isolated_folio`]; for a folio in the swap cache
/// [`thp::split_isolated_cache_folio`], every piece keeping its slot).
/// Returns the other pieces still mapped or cached, each with a reference.
fn split<H: MigrateHost>(host: &H, folio: Folio<'static>) -> Result<Vec<Folio<'static>>, SplitRefused> {
    let memmap = host.memmap();
    let cache_type =
        folio.test_flag(PageFlag::SwapCache).then(|| folio.swap_entry()).flatten().map(|e| e.ty());
    host.with_family_locked(&folio, |tables, mem, tlb| {
        let mut mapping = tables.iter().filter(|t| rmap_walk(&folio, &[**t], mem, &mut |_| {}) > 0);
        let (Some(table), None) = (mapping.next(), mapping.next()) else {
            return Err(SplitRefused::MappedElsewhere);
        };
        let free = &mut |f| host.free(f);
        match cache_type {
            None => thp::split_isolated_folio(table, mem, tlb, memmap, folio, free),
            Some(ty) => host
                .with_swap_area(ty, |area| {
                    thp::split_isolated_cache_folio(table, mem, tlb, memmap, folio, area, free)
                })
                .unwrap_or(Err(SplitRefused::InSwapCache)),
        }
    })
}
