//! Migration entries made and taken away the way migration does it, for
//! the host tests of everything else that meets them (fork, zap, mprotect,
//! the PMD split, `MADV_PAGEOUT`, reclaim, swap-in, GUP, the checker),
//! until `mm::migrate` exists to make them; the tests then switch to it.
//!
//! [`unmap_to_migration`] is the first half of a migration (mm-reference
//! §7) without the copy: the caller has locked the folio and holds the
//! migration's own reference; every mapping of it in the tables given (the
//! fork family) becomes a migration entry:
//! - a PMD mapping one **PMD migration entry** naming the head, a PTE one a
//!   PTE migration entry naming its page;
//! - the kind from the mapping: `Write` when it was writable, else
//!   `ReadExclusive` when the page (the head, for a PMD) was
//!   `AnonExclusive`, else `Read`; young and dirty kept;
//! - the page loses `AnonExclusive` (the kind carries it now) and the
//!   mapping's mapcount; the mapping's reference is dropped after the
//!   flush. **A migration entry holds neither a mapcount nor a reference**:
//!   the migration's own reference keeps the folio.
//!
//! [`remove_migration_entries`] is the last half: every migration entry
//! still naming a page of the folio, at the address the folio's index
//! says, becomes a present mapping of that page again (the same folio: no
//! copy is made here), writable only for `Write` (and an area that allows
//! it), `AnonExclusive` unless `Read`, with one mapcount and one reference
//! each. An entry that is gone (zapped: munmap, `MADV_DONTNEED`,
//! teardown) or changed is not restored: nothing is mapped there again,
//! and a folio whose entries were all zapped is freed when the migration
//! drops its own reference. An entry fork copied is restored in both
//! spaces, each with its own mapcount and reference.
//!
//! [`World::start_migration`] and [`World::end_migration`] run both halves
//! over a world's whole family and keep the checker's exact refcounts
//! right ([`World::declare_refs`] for the migration's reference).

extern crate std;

use super::world::World;
use crate::folio::Folio;
use crate::page::PageFlag;
use crate::pgtable::sim::HardwareWalker;
use crate::pgtable::{
    Decoded, Flush, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageSize, PageTable,
    PageTableFormat, Prot, TableMemory, TlbHooks,
};
use crate::rmap::rmap_walk;
use crate::vma::VmaSet;
use crate::VirtAddr;
use alloc::vec::Vec;

/// The kind of migration entry that replaces a mapping (module doc).
pub fn migration_kind(writable: bool, exclusive: bool) -> MigrationKind {
    match (writable, exclusive) {
        (true, _) => MigrationKind::Write,
        (false, true) => MigrationKind::ReadExclusive,
        (false, false) => MigrationKind::Read,
    }
}

/// Replaces every mapping of the locked folio `folio` in `tables` by a
/// migration entry (module doc); flushes through `hooks`, then drops the
/// mappings' references. Returns the number of entries written.
///
/// # Panics
/// When the folio is not locked, or when a dropped reference was the last
/// (the caller must hold the migration's own).
pub fn unmap_to_migration<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    folio: &Folio<'_>,
) -> usize {
    assert!(folio.is_locked(), "unmap_to_migration: folio {:#x} not locked", folio.pfn());
    let mut refs = 0;
    for table in tables {
        let mut found = Vec::new();
        rmap_walk(folio, &[*table], mem, &mut |m| found.push(m));
        let mut flush = Flush::none(table.root());
        for m in found {
            let i = m.page;
            let kind = migration_kind(m.leaf.prot.writable, folio.page(i).test_flag(PageFlag::AnonExclusive));
            let entry = MigrationEntry::new(kind, folio.pfn().plus(i as u64), m.leaf.young, m.leaf.dirty)
                .expect("a frame of the simulated memmap fits a migration entry");
            let (_, f) = table
                .set_nonpresent(mem, m.va, m.level, NonPresent::Migration(entry))
                .expect("the rmap walk just found a leaf here");
            flush = flush.merge(f);
            folio.page(i).clear_flag(PageFlag::AnonExclusive);
            match m.level {
                Level::Pmd => folio.add_entire_mapcount(-1),
                _ => folio.add_page_mapcount(i, -1),
            };
            refs += 1;
        }
        flush.flush(hooks);
    }
    for _ in 0..refs {
        assert!(!folio.put(), "unmap_to_migration: the migration holds no reference of its own");
    }
    refs
}

/// Puts back a present mapping of `folio` for every migration entry of
/// it still in `spaces` (module doc), the folio still locked. Returns the
/// number restored. A restored entry replaces nothing present: no flush
/// is owed.
///
/// # Panics
/// When an entry naming the folio lies outside every area (the zap that
/// removed the area must have removed the entry).
pub fn remove_migration_entries<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    folio: &Folio<'_>,
) -> usize {
    assert!(folio.is_locked(), "remove_migration_entries: folio {:#x} not locked", folio.pfn());
    let start = VirtAddr::new(folio.index() << 12);
    let end = VirtAddr::new((folio.index() + folio.nr_pages() as u64) << 12);
    let mut restored = 0;
    for &(table, vmas) in spaces {
        let mut found = Vec::new();
        table.visit(mem, start, end, &mut |va, level, entry, _| {
            let Decoded::NonPresent(NonPresent::Migration(m)) = entry else { return };
            if !folio.contains_pfn(m.pfn) {
                return;
            }
            let i = folio.page_index_of(m.pfn);
            if va.as_u64() >> 12 == folio.index() + i as u64 && (level == Level::Pte || i == 0) {
                found.push((va, level, i, m));
            }
        });
        for (va, level, i, m) in found {
            let area = vmas.find(va).unwrap_or_else(|| panic!("{va}: a migration entry outside every area"));
            let writable = m.kind == MigrationKind::Write && area.prot.write;
            let size = if level == Level::Pmd { PageSize::Size2M } else { PageSize::Size4K };
            let leaf = Leaf {
                frame: m.pfn.phys(),
                size,
                prot: Prot { writable, ..area.prot.to_prot(true) },
                dirty: m.dirty,
                young: m.young,
            };
            table.clear(mem, va, level).expect("the walk just found the entry").1.ignore();
            table.map(mem, va, leaf).expect("the slot was just cleared").ignore();
            match level {
                Level::Pmd => folio.add_entire_mapcount(1),
                _ => folio.add_page_mapcount(i, 1),
            };
            folio.get();
            if m.kind != MigrationKind::Read {
                folio.page(i).set_flag(PageFlag::AnonExclusive);
            }
            restored += 1;
        }
    }
    restored
}

/// A migration in flight ([`World::start_migration`]): the folio, locked,
/// with the migration's reference.
#[derive(Debug)]
#[must_use = "end the migration: the folio stays locked until then"]
pub struct Migrating {
    pub folio: Folio<'static>,
    /// Migration entries written.
    pub nr_entries: usize,
}

impl<F: HardwareWalker> World<F> {
    /// Starts migrating `folio`: its lock, the migration's reference, and
    /// every mapping in every live space replaced by a migration entry
    /// ([`unmap_to_migration`]).
    ///
    /// # Panics
    /// When somebody else holds the folio lock.
    pub fn start_migration(&self, folio: Folio<'static>) -> Migrating {
        assert!(folio.try_lock(), "start_migration: folio {:#x} is locked", folio.pfn());
        folio.get();
        self.declare_refs(folio.pfn(), 1);
        let tables: Vec<&PageTable<F>> = self.live().into_iter().map(|s| &self.sp(s).table).collect();
        let nr_entries = unmap_to_migration(&tables, &self.mem, &self.tlb, &folio);
        Migrating { folio, nr_entries }
    }

    /// Ends the migration `m` ([`remove_migration_entries`]), unlocks the
    /// folio and drops the migration's reference (freeing the folio when
    /// that was the last). Returns the number of mappings restored.
    pub fn end_migration(&self, m: Migrating) -> usize {
        let spaces: Vec<_> = self.live().into_iter().map(|s| (&self.sp(s).table, &self.sp(s).vmas)).collect();
        let restored = remove_migration_entries(&spaces, &self.mem, &m.folio);
        m.folio.unlock();
        self.declare_refs(m.folio.pfn(), -1);
        self.frames.put(m.folio);
        restored
    }
}
