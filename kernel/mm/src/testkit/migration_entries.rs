//! A migration cut in two halves, for the host tests of everything else
//! that meets migration entries (fork, zap, mprotect, the PMD split,
//! `MADV_PAGEOUT`, reclaim, swap-in, GUP, the checker): a test acts
//! between the halves. Both halves are `mm`'s own code, with the folio
//! itself as the destination (these tests are about the other paths, not
//! the copy, which `kernel/mm/tests/migrate.rs` tests):
//!
//! - [`unmap_to_migration`] is step 3 of [`crate::migrate`]: the caller has
//!   locked the folio and holds the migration's own reference; the
//!   protection of every mapping is remembered ([`Prots::of_mappings`]),
//!   then [`try_to_unmap`]`(`[`Target::Migration`]`)` replaces every
//!   mapping in the tables given (the fork family) by a migration entry
//!   (a PMD mapping one PMD entry naming the head, a PTE one a PTE entry
//!   naming its page; the kind from the mapping's write and
//!   anon-exclusive state; young and dirty kept; the page's
//!   `AnonExclusive` and the mapping's mapcount gone); the flushes run,
//!   then the mappings' references are dropped. **A migration entry holds
//!   neither a mapcount nor a reference**: the migration's own reference
//!   keeps the folio.
//! - [`remove_migration_entries`] is step 7,
//!   [`crate::migrate::remove_migration_entries`] with the folio as its
//!   own destination: every migration entry still naming a page of the
//!   folio, at the address the folio's index says, becomes a present
//!   mapping of that page again, with the remembered protection, writable
//!   only for `Write`, `AnonExclusive` unless `Read`, one mapcount and one
//!   reference each. An entry that is gone (zapped: munmap,
//!   `MADV_DONTNEED`, teardown) is not restored, and a folio all of whose
//!   entries were zapped is freed when the migration drops its own
//!   reference. An entry fork copied is restored in both spaces.
//!
//! [`World::start_migration`] and [`World::end_migration`] run both halves
//! over a world's whole family and keep the checker's exact refcounts
//! right ([`World::declare_refs`] for the migration's reference).

extern crate std;

use super::world::World;
use crate::folio::Folio;
use crate::migrate::Prots;
use crate::page::Memmap;
use crate::pgtable::sim::HardwareWalker;
use crate::pgtable::{PageTable, PageTableFormat, TableMemory, TlbHooks};
use crate::unmap::{try_to_unmap, Target};
use crate::vma::VmaSet;
use alloc::vec::Vec;

/// The first half of a migration ([`unmap_to_migration`]).
#[derive(Debug)]
#[must_use = "the protections are needed by the second half"]
pub struct Unmapped {
    /// Migration entries written (mappings replaced).
    pub nr_entries: usize,
    /// The protection of each mapping replaced.
    pub prots: Prots,
}

/// Replaces every mapping of the locked folio `folio` in `tables` by a
/// migration entry (module doc): [`try_to_unmap`] with the migration
/// target; flushes through `hooks`, then drops the mappings' references.
/// The caller holds the lock of every table in `tables`.
///
/// # Panics
/// When the folio is not locked, when `try_to_unmap` refuses (the folio
/// may be pinned), or when a dropped reference was the last (the caller
/// must hold the migration's own).
pub fn unmap_to_migration<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: &Folio<'_>,
) -> Unmapped {
    assert!(folio.is_locked(), "unmap_to_migration: folio {:#x} not locked", folio.pfn());
    let prots = Prots::of_mappings(tables, mem, folio);
    let done = try_to_unmap(tables, mem, hooks, memmap, folio, Target::Migration)
        .unwrap_or_else(|e| panic!("unmap_to_migration: folio {:#x}: {e}", folio.pfn()));
    for flush in done.flushes {
        flush.flush(hooks);
    }
    for _ in 0..done.refs {
        assert!(!folio.put(), "unmap_to_migration: the migration holds no reference of its own");
    }
    Unmapped { nr_entries: done.refs, prots }
}

/// Puts back a present mapping of `folio` for every migration entry of
/// it still in `spaces` (module doc), the folio still locked, with the
/// protections the first half remembered. Returns the number restored. A
/// restored entry replaces nothing present: no flush is owed.
///
/// # Panics
/// When the folio is not locked, or when a restored mapping lies outside
/// every area of its space (the zap that removed the area must have
/// removed the entry).
pub fn remove_migration_entries<F: PageTableFormat>(
    spaces: &[(&PageTable<F>, &VmaSet)],
    mem: &impl TableMemory,
    folio: &Folio<'_>,
    prots: &Prots,
) -> usize {
    assert!(folio.is_locked(), "remove_migration_entries: folio {:#x} not locked", folio.pfn());
    let tables: Vec<&PageTable<F>> = spaces.iter().map(|(t, _)| *t).collect();
    let restored = crate::migrate::remove_migration_entries(&tables, mem, folio, folio, prots);
    for &(table, vmas) in spaces {
        crate::rmap::rmap_walk(folio, &[table], mem, &mut |m| {
            assert!(vmas.find(m.va).is_some(), "{}: a migration entry restored outside every area", m.va);
        });
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
    /// The protection of each mapping replaced, for the restore.
    pub prots: Prots,
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
        let done = unmap_to_migration(&tables, &self.mem, &self.tlb, self.memmap(), &folio);
        Migrating { folio, nr_entries: done.nr_entries, prots: done.prots }
    }

    /// Ends the migration `m` ([`remove_migration_entries`]), unlocks the
    /// folio and drops the migration's reference (freeing the folio when
    /// that was the last). Returns the number of mappings restored.
    pub fn end_migration(&self, m: Migrating) -> usize {
        let spaces: Vec<_> = self.live().into_iter().map(|s| (&self.sp(s).table, &self.sp(s).vmas)).collect();
        let restored = remove_migration_entries(&spaces, &self.mem, &m.folio, &m.prots);
        m.folio.unlock();
        self.declare_refs(m.folio.pfn(), -1);
        self.frames.put(m.folio);
        restored
    }
}
