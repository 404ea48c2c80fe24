//! Folio migration in the running kernel: the host of `mm::migrate` (the
//! fork families' locks, the copy through the direct map, the TLB
//! shootdown, freeing, the wake-up of waiting faults), the choice of the
//! destination ([`Dest`]), the counters, [`AddressSpace::migrate_range`],
//! and the wait of a fault that meets a migration entry ([`wait`]).
//!
//! ## Migrating a folio ([`migrate_folio`])
//!
//! The caller holds a reference on an anonymous folio and no lock. Here:
//! take the folio lock (waiting, by yielding, while reclaim or a swap-in
//! holds it), allocate a destination of its order as [`Dest`] says, and
//! `mm::migrate::migrate_or_split`: the folio is unmapped to migration
//! entries under its family's locks (taken in root order by
//! `crate::vm::space::with_folio_family_locked`, as reclaim takes them),
//! flushed with the shootdown, copied with only the folio locks held,
//! and mapped again from the new frames under the locks; a THP that finds
//! no free 2 MiB block is split and its pages moved one by one.
//!
//! [`migrate_to`] is the same move to a destination the caller chose
//! and owns (compaction's; `crate::vm::compaction`): the destination
//! comes back to it when the move is refused.
//!
//! ## A fault on a migration entry ([`wait`])
//!
//! `mm::fault::handle_fault` answers `MigrationWait`; the trap handler
//! (`crate::vm::fault`) drops the space's lock, turns interrupts on and
//! calls [`wait`], then retries the access. [`wait`] parks the task on one
//! of [`NR_WAIT_QUEUES`] wait queues hashed by the migrating folio's head
//! PFN until `mm::migrate::migration_in_progress` says the entry is gone
//! (or its folio unlocked), looked at under the space's lock. No wake-up
//! is lost: the waiter is on its queue before it looks
//! (`crate::task::wait`), and migration wakes the queue
//! ([`MigrateHost::migration_done`]) only after the entries are replaced
//! (by the new mappings, or the old ones when it backs off). No spinning with interrupts off: the wait
//! sleeps, with no lock held. The space's lock keeps the named folio from
//! being freed while the waiter looks (migration needs that lock to
//! replace the entry first), so the waiter needs no reference.
//!
//! Counters ([`Counters`], read with [`counters`]): `pgmigrate_success`
//! and `pgmigrate_fail` (pages), `thp_migration_success` (THPs moved
//! whole), `thp_migration_split` (THPs split for want of a 2 MiB block).
//!
//! ## Locks
//!
//! The folio lock, then the family's space locks (root order), inside
//! them the LRU's and the swap area's leaves; the copy runs with only the
//! folio locks held, interrupts on. A wait queue's lock is a leaf.

use crate::memory::paging::{Format, KernelTables};
use crate::memory::{frame_allocator, phys_to_virt};
use crate::task::sched;
use crate::task::wait::WaitQueue;
use crate::vm::space::AddressSpace;
use crate::vm::tlb::Shootdown;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::folio::{Folio, UnpublishedFolio};
use mm::frame::AllocKind;
use mm::lru::LruLists;
use mm::migrate::{migrate_or_split, MigrateError, MigrateHost, Migrated};
use mm::numa::NodeId;
use mm::page::Memmap;
use mm::pgtable::{PageTable, SwapType};
use mm::swap::area::SwapArea;
use mm::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};

/// Where a migrated folio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Any free block of the folio's order (the current CPU's node first,
    /// then the others).
    Any,
    /// Order-0 blocks only: a huge folio is split and its pages moved one
    /// by one, as when no 2 MiB block is free (seed 000's path).
    Pages,
    /// Blocks of this node only (`memory::alloc_folio_on`, strict): a THP
    /// that finds no free 2 MiB block there is split and its pages moved
    /// one by one, each to a page of the node, as for [`Dest::Any`]; a
    /// page that finds none stays where it is (`MigrateError::NoMemory`).
    /// What `move_pages` uses (`crate::vm::move_pages`).
    Node(NodeId),
}

impl Dest {
    /// A destination of `order`, or `None` when no block is free.
    fn alloc(self, order: u8) -> Option<UnpublishedFolio<'static>> {
        match self {
            Dest::Pages if order > 0 => None,
            Dest::Any | Dest::Pages => crate::sync::without_interrupts(|| {
                frame_allocator().alloc_folio(order, AllocKind::Normal).ok()
            }),
            Dest::Node(node) => crate::memory::alloc_folio_on(node, order).ok(),
        }
    }
}

/// Pages migrated.
static PGMIGRATE_SUCCESS: AtomicU64 = AtomicU64::new(0);
/// Pages that could not be migrated.
static PGMIGRATE_FAIL: AtomicU64 = AtomicU64::new(0);
/// Huge folios migrated whole.
static THP_MIGRATION_SUCCESS: AtomicU64 = AtomicU64::new(0);
/// Huge folios split because no 2 MiB destination was free.
static THP_MIGRATION_SPLIT: AtomicU64 = AtomicU64::new(0);

/// The migration counters (module doc), as `/proc/vmstat` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub pgmigrate_success: u64,
    pub pgmigrate_fail: u64,
    pub thp_migration_success: u64,
    pub thp_migration_split: u64,
}

/// The counters now.
pub fn counters() -> Counters {
    Counters {
        pgmigrate_success: PGMIGRATE_SUCCESS.load(Ordering::Relaxed),
        pgmigrate_fail: PGMIGRATE_FAIL.load(Ordering::Relaxed),
        thp_migration_success: THP_MIGRATION_SUCCESS.load(Ordering::Relaxed),
        thp_migration_split: THP_MIGRATION_SPLIT.load(Ordering::Relaxed),
    }
}

/// Wait queues of faults waiting on a migration, hashed by the migrating
/// folio's head PFN.
pub const NR_WAIT_QUEUES: usize = 64;
static WAITERS: [WaitQueue; NR_WAIT_QUEUES] = [const { WaitQueue::new() }; NR_WAIT_QUEUES];

/// The queue of the folio with head `pfn`.
fn queue(pfn: Pfn) -> &'static WaitQueue {
    // Huge heads are 512-aligned: mix the bits above the order too.
    let p = pfn.as_u64();
    &WAITERS[((p ^ (p >> 9) ^ (p >> 18)) as usize) % NR_WAIT_QUEUES]
}

/// The running kernel as `mm::migrate` needs it (module doc).
struct Migrator;

impl MigrateHost for Migrator {
    type Format = Format;
    type Mem = KernelTables;
    type Tlb = Shootdown;

    fn memmap(&self) -> &'static Memmap {
        frame_allocator().memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        crate::vm::reclaim::lru()
    }
    fn with_family_locked<R>(
        &self,
        folio: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<Format>], &KernelTables, &Shootdown) -> R,
    ) -> R {
        crate::vm::space::with_folio_family_locked(folio, |tables| f(tables, &KernelTables, &Shootdown))
    }
    fn with_swap_area<R>(&self, ty: SwapType, f: impl FnOnce(&SwapArea) -> R) -> Option<R> {
        crate::vm::swap::area(ty).map(|dev| f(&dev.area))
    }
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize) {
        // `mm` has no `unsafe`: check what can be checked of the contract.
        let memmap = self.memmap();
        assert!(
            dst != src
                && mm::folio::folio_covering(memmap, src, nr).is_some_and(|f| f.is_locked())
                && memmap.get(dst.pfn()).is_some()
                && memmap.get(dst.pfn().plus(nr as u64 - 1)).is_some(),
            "migrate: copy of {nr} frames {src} -> {dst} is not a locked folio to a block"
        );
        let (d, s) = (phys_to_virt(dst).as_u64() as *mut u8, phys_to_virt(src).as_u64() as *const u8);
        // SAFETY: both are runs of `nr` RAM frames in the memmap (checked
        // above), so mapped read-write in the direct map. `dst` is the
        // block the caller allocated and has not published: nothing else
        // reads or writes it. `src` is a locked folio whose refcount
        // `mm::migrate` froze after replacing every mapping by a
        // migration entry and flushing: no CPU and no kernel path writes
        // it (a device pin would have refused the migration), and it holds
        // plain bytes. Two distinct blocks of the allocator do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(s, d, nr * PAGE_SIZE as usize) };
    }
    fn free(&self, folio: Folio<'static>) {
        crate::vm::folios::free_folio(folio);
    }
    fn migration_done(&self, old: Pfn) {
        queue(old).wake_all();
    }
}

/// Migrates `folio` (the caller's reference is consumed) to a destination
/// [`Dest`] chooses: module doc. Task context, interrupts on, no lock held.
pub fn migrate_folio(folio: Folio<'static>, dest: Dest) -> (Migrated, Option<MigrateError>) {
    // Reclaim writing it out, or a swap-in reading it, may hold the lock
    // for a disk request: yield meanwhile.
    while !folio.try_lock() {
        sched::yield_now();
    }
    let huge = folio.is_large();
    let (done, err) = migrate_or_split(&Migrator, folio, &mut |order| dest.alloc(order));
    PGMIGRATE_SUCCESS.fetch_add(done.nr_pages as u64, Ordering::Relaxed);
    if done.nr_failed > 0 || err.is_some() {
        let failed =
            if done.nr_moved == 0 && !done.split { folio_pages(huge) } else { done.nr_failed as u64 };
        PGMIGRATE_FAIL.fetch_add(failed, Ordering::Relaxed);
    }
    if huge && !done.split && done.nr_moved == 1 {
        THP_MIGRATION_SUCCESS.fetch_add(1, Ordering::Relaxed);
    }
    if done.split {
        THP_MIGRATION_SPLIT.fetch_add(1, Ordering::Relaxed);
    }
    (done, err)
}

/// Migrates `folio` to `dst`, a destination of its order the caller cut
/// from free memory of its own (compaction's free scanner): the folio
/// lock, then `mm::migrate::migrate_folio_to`, counted as
/// [`migrate_folio`] counts. The caller holds a reference (on success it
/// moves to the new folio, returned unlocked; on a refusal it is still
/// the caller's, on the unlocked source) and no lock; `dst` comes back
/// untouched on a refusal. Task context, interrupts on.
pub(crate) fn migrate_to(
    folio: Folio<'static>,
    dst: UnpublishedFolio<'static>,
) -> Result<Folio<'static>, mm::migrate::Refused> {
    while !folio.try_lock() {
        sched::yield_now();
    }
    let nr = folio.nr_pages() as u64;
    match mm::migrate::migrate_folio_to(&Migrator, folio, dst) {
        Ok(new) => {
            PGMIGRATE_SUCCESS.fetch_add(nr, Ordering::Relaxed);
            if new.is_large() {
                THP_MIGRATION_SUCCESS.fetch_add(1, Ordering::Relaxed);
            }
            Ok(new)
        }
        Err(refused) => {
            folio.unlock();
            PGMIGRATE_FAIL.fetch_add(nr, Ordering::Relaxed);
            Err(refused)
        }
    }
}

/// The pages of a folio that failed whole.
fn folio_pages(huge: bool) -> u64 {
    if huge {
        mm::thp::HPAGE_NR as u64
    } else {
        1
    }
}

/// Sleeps until the migration named by the migration entry at `page` of
/// `space` is over (module doc); the caller then retries the access. Task
/// context, interrupts on, no lock held.
pub fn wait(space: &Arc<AddressSpace>, page: VirtAddr) {
    let memmap = frame_allocator().memmap();
    let in_progress = || {
        let guard = space.lock();
        guard
            .as_ref()
            .and_then(|inner| mm::migrate::migration_in_progress(&inner.table, &KernelTables, memmap, page))
    };
    let Some(head) = in_progress() else { return };
    NR_WAITS.fetch_add(1, Ordering::Relaxed);
    queue(head).wait_for(|| (in_progress() != Some(head)).then_some(()));
}

/// Faults that waited on a migration entry ([`wait`]).
pub static NR_WAITS: AtomicU64 = AtomicU64::new(0);

/// What [`AddressSpace::migrate_range`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeMigrated {
    /// Folios found mapped in the range.
    pub nr_folios: usize,
    /// Of them and their pieces, folios moved.
    pub nr_moved: usize,
    /// Pages moved.
    pub nr_pages: usize,
    /// Folios (or pieces) left where they were.
    pub nr_failed: usize,
    /// THPs split for want of a 2 MiB block.
    pub nr_split: usize,
}

impl AddressSpace {
    /// Migrates every anonymous folio mapped in `[start, start + len)`
    /// ([`migrate_folio`]), each once even when it is mapped several
    /// times. Folios that refuse (pinned, referenced by someone else) stay
    /// where they are and are counted as failed; the message names the
    /// last refusal when nothing moved at all.
    pub fn migrate_range(&self, start: VirtAddr, len: u64, dest: Dest) -> Result<RangeMigrated, String> {
        let memmap = frame_allocator().memmap();
        let end = VirtAddr::new(start.as_u64() + len);
        let mut folios: Vec<Folio<'static>> = Vec::new();
        {
            let guard = self.lock();
            let inner = guard.as_ref().ok_or("migrate_range: address space torn down")?;
            inner.table.visit(&KernelTables, start, end, &mut |_, _, entry, _| {
                let mm::pgtable::Decoded::Leaf(leaf) = entry else { return };
                let Some(folio) = mm::folio::folio_of(memmap, leaf.frame.pfn()) else { return };
                if folio.anon_handle().is_none() || folios.iter().any(|f| f.pfn() == folio.pfn()) {
                    return;
                }
                folio.get(); // the mapping's keeps it alive until this one
                folios.push(folio);
            });
        }
        let mut done = RangeMigrated { nr_folios: folios.len(), ..RangeMigrated::default() };
        let mut last = None;
        for folio in folios {
            let (m, err) = migrate_folio(folio, dest);
            done.nr_moved += m.nr_moved;
            done.nr_pages += m.nr_pages;
            done.nr_failed += m.nr_failed;
            done.nr_split += m.split as usize;
            last = err.or(last);
        }
        match last {
            Some(e) if done.nr_moved == 0 && done.nr_folios > 0 => Err(alloc::format!("migrate_range: {e}")),
            _ => Ok(done),
        }
    }
}
