//! [`World`] as the kernel's side of `mm::migrate` ([`MigrateHost`]): the
//! family's tables are every visible space's (as for reclaim), the copy
//! goes through [`SimFrames`]' contents, and the faults' wake-ups are
//! counted. [`World::migrate`] is `kernel/src/vm/migrate.rs` over the
//! simulation: the folio mapped at an address, locked and referenced, a
//! destination of its order from the frames, [`migrate_folio`].

extern crate std;

use super::frames::SimFrames;
use super::world::{va, World};
use crate::folio::Folio;
use crate::lru::LruLists;
use crate::migrate::{migrate_folio, migrate_or_split, MigrateError, MigrateHost, Migrated};
use crate::page::Memmap;
use crate::pgtable::sim::{HardwareWalker, SimMemory, SoftTlb};
use crate::pgtable::{PageTable, SwapType};
use crate::swap::area::SwapArea;
use crate::{Pfn, PhysAddr};
use alloc::vec::Vec;

/// Copies `nr` frames of simulated contents from `src` to `dst`.
pub fn copy_frames(frames: &SimFrames, dst: PhysAddr, src: PhysAddr, nr: usize) {
    for i in 0..nr as u64 {
        frames.set_frame(dst.pfn().plus(i), frames.frame(src.pfn().plus(i)));
    }
}

impl<F: HardwareWalker> MigrateHost for World<F> {
    type Format = F;
    type Mem = SimMemory;
    type Tlb = SoftTlb<F>;

    fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        self.frames.lru_lists()
    }
    fn with_family_locked<R>(
        &self,
        _: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<F>], &SimMemory, &SoftTlb<F>) -> R,
    ) -> R {
        let tables: Vec<&PageTable<F>> = self.visible().into_iter().map(|s| &self.sp(s).table).collect();
        f(&tables, &self.mem, &self.tlb)
    }
    fn with_swap_area<R>(&self, ty: SwapType, f: impl FnOnce(&SwapArea) -> R) -> Option<R> {
        self.frames.swap_area().filter(|a| a.ty() == ty).map(f)
    }
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize) {
        *self.host.entries_at_copy.borrow_mut() = self.entries();
        copy_frames(&self.frames, dst, src, nr);
    }
    fn free(&self, folio: Folio<'static>) {
        self.frames.free(folio);
    }
    fn migration_done(&self, _: Pfn) {
        self.host.nr_migrations_done.set(self.host.nr_migrations_done.get() + 1);
    }
}

impl<F: HardwareWalker> World<F> {
    /// Migrates the folio mapped at `at` in space `s` to a destination of
    /// its order, as the kernel does: a reference and the folio lock, then
    /// [`migrate_folio`]. Returns the new folio (its reference dropped:
    /// the mappings hold it), or why not (the source is as it was).
    pub fn migrate(&self, s: usize, at: u64) -> Result<Folio<'static>, MigrateError> {
        let folio = self.folio_at(s, at);
        folio.get();
        folio.lock();
        let Some(dst) = self.frames.alloc_unpublished(folio.order()) else {
            folio.unlock();
            self.frames.put(folio);
            return Err(MigrateError::NoMemory);
        };
        match migrate_folio(self, folio, dst) {
            Ok(new) => {
                self.frames.put(new);
                Ok(new)
            }
            Err(e) => {
                folio.unlock();
                self.frames.put(folio);
                Err(e)
            }
        }
    }

    /// [`migrate_or_split`] of the folio mapped at `at` in space `s`, with
    /// destinations of order `> max_order` refused (no 2 MiB block).
    pub fn migrate_or_split(&self, s: usize, at: u64, max_order: u8) -> (Migrated, Option<MigrateError>) {
        let folio = self.folio_at(s, at);
        folio.get();
        folio.lock();
        migrate_or_split(self, folio, &mut |order| {
            if order > max_order {
                None
            } else {
                self.frames.alloc_unpublished(order)
            }
        })
    }

    /// Whether `at` in space `s` maps a folio at all (for tests that look
    /// before migrating).
    pub fn is_mapped(&self, s: usize, at: u64) -> bool {
        self.sp(s).table.translate(&self.mem, va(at)).is_some()
    }
}
