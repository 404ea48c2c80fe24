//! The fault entry of tasks: what the arch trap handlers call for a fault
//! that no probe claimed, and what happens after `mm::fault::handle_fault`
//! decided.
//!
//! - A fault in the lower half, taken by a task that runs in an address
//!   space ([`crate::vm::space`]), is handled under the space's lock, with
//!   interrupts off (the trap entered with them off) and [`Shootdown`] as
//!   the flush: a copy on write's break-before-make must reach every CPU.
//! - `NeedsSwapIn`: the disk sleeps, so interrupts go back on and no lock
//!   is held while the page is read ([`crate::vm::swap::get_folio`]); the
//!   recheck and the mapping are under the lock again
//!   (`mm::swap::swapin::map_swapped_in`). Then the access is retried.
//! - `MigrationWait`: the page is being migrated; interrupts go back on
//!   and the task sleeps without a lock until the migration is over
//!   ([`crate::vm::migrate::wait`]), then the access is retried.
//! - `NeedsHugeFolio`: a THP write fault needs a fresh 2 MiB folio. Its
//!   2 MiB of zeroing is most of the fault, so it is done with no lock
//!   held and interrupts on ([`FaultFrames::huge_outside_lock`]); then the
//!   same fault is handled once more with that folio, which goes back if
//!   the fault no longer needs it (another CPU mapped the block first).
//! - `NeedsCompaction`: a THP write fault in a `MADV_HUGEPAGE` range found
//!   no free 2 MiB block; interrupts go back on and, without a lock, a
//!   bounded direct compaction runs ([`crate::vm::compaction`]); then the
//!   same fault is handled once more with compaction off (a THP, or 4 KiB).
//!   `MappedHuge` and `HugeFallback` are counted as `thp_fault_alloc` and
//!   `thp_fault_fallback`.
//! - `OutOfMemory`: direct reclaim in this task, then a retry; only when
//!   reclaim frees nothing is the task ended.
//! - A refused access (no area, not allowed) ends a kernel task with a
//!   message ([`sched::kill_current`]); the kernel goes on. [`resolve`] is
//!   the same handling without that ending: user mode's faults and the
//!   user-access routines' use it and decide for themselves (a signal,
//!   `EFAULT`).
//!
//! Locks: the space's lock ([`AddressSpace::lock`]) around the decision
//! and around the mapping half of a swap-in, never across a disk read. A
//! fault on a missing entry takes and zeroes its first 4 KiB page before
//! the lock ([`FaultFrames`]), so that faults of one space on several CPUs
//! zero in parallel, while the space's hint says such faults need one
//! ([`AddressSpace::zero_ahead`]: not during a run of swap-ins or huge
//! faults).

use crate::arch::prelude::*;
use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::vm::space::{find_space, AddressSpace, KernelFrames, USER_END};
use crate::vm::tlb::Shootdown;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::Cell;
use mm::fault::{FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::AnonHandle;
use mm::{Pfn, PhysAddr, VirtAddr};

/// Why [`resolve`] did not make an access possible.
#[derive(Debug)]
pub enum Unresolved {
    /// Not a fault of a task's address space: a kernel address, or a task
    /// that runs in none. The arch reports it as a kernel fault.
    NotOurs,
    /// The access is not allowed (no area, or the area's protection
    /// refuses it): a user process gets `SIGSEGV`.
    Refused(String),
    /// The page could not be brought back (a swap read error, an entry
    /// naming no area): a user process gets `SIGBUS`.
    Lost(String),
    /// Out of memory, and reclaim freed nothing.
    OutOfMemory(String),
}

impl Unresolved {
    /// The message a task ended for this fault is ended with.
    pub fn why(self) -> String {
        match self {
            Unresolved::NotOurs => String::from("not a fault of an address space"),
            Unresolved::Refused(why) | Unresolved::Lost(why) | Unresolved::OutOfMemory(why) => why,
        }
    }
}

/// The fault hook the arch trap handlers call for a kernel-mode fault: a
/// kernel task touching its space's user pages. True when resolved (the
/// access is retried); a refused access ends the task.
pub(crate) fn on_fault(fault: &MemFault) -> bool {
    match resolve(fault) {
        Ok(()) => true,
        Err(Unresolved::NotOurs) => false,
        Err(other) => sched::kill_current(other.why()),
    }
}

/// Handles `fault`, taken by the running task in its address space, with
/// interrupts off (as the trap entered): maps what the access needs and
/// returns `Ok` when the access may be retried. The one place that turns a
/// fault into pages, used by kernel tasks' faults ([`on_fault`]), by user
/// mode's, and by the user-access routines' (`crate::vm::uaccess`), which
/// differ only in what they do with an `Err`.
pub fn resolve(fault: &MemFault) -> Result<(), Unresolved> {
    if fault.addr.as_u64() >= USER_END {
        return Err(Unresolved::NotOurs); // a kernel address
    }
    let Some(root) = sched::current_root() else { return Err(Unresolved::NotOurs) };
    let Some(space) = find_space(root) else { return Err(Unresolved::NotOurs) };
    // At most four rounds: a huge folio made without the lock, a direct
    // compaction (once), and a huge folio again after it.
    let mut frames = &KernelFrames::FAULT;
    let mut compacted = false;
    let mut huge = HugeSpare::Unprepared;
    let outcome = loop {
        let Some(outcome) = handle(&space, fault, frames, huge) else {
            return Err(Unresolved::NotOurs);
        };
        match outcome {
            FaultOutcome::NeedsHugeFolio { .. } if huge == HugeSpare::Unprepared => {
                // Zero 2 MiB with no lock held and interrupts on, then the
                // same fault once more with that block.
                Arch::irq_enable();
                huge = HugeSpare::Prepared(crate::vm::folios::alloc_zeroed_huge());
                Arch::irq_disable();
            }
            FaultOutcome::NeedsCompaction { request, .. } if !compacted => {
                // No 2 MiB block: compact without the lock, interrupts on
                // (the migrations take the locks of every space mapping a
                // folio), then the same fault once more with compaction off.
                Arch::irq_enable();
                crate::vm::compaction::direct_compact(request);
                Arch::irq_disable();
                frames = &KernelFrames::PLAIN;
                compacted = true;
                huge = HugeSpare::Unprepared;
            }
            other => break other,
        }
    };
    let count = |c: &core::sync::atomic::AtomicU64| c.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    match outcome {
        FaultOutcome::MappedHuge => crate::vm::compaction::count_thp_fault_alloc(),
        FaultOutcome::HugeFallback => crate::vm::compaction::count_thp_fault_fallback(),
        _ => {}
    }
    match outcome {
        FaultOutcome::Resolved
        | FaultOutcome::Spurious
        | FaultOutcome::Reused
        | FaultOutcome::Copied
        | FaultOutcome::MappedHuge
        | FaultOutcome::MappedHugeZero
        | FaultOutcome::HugeFallback => {
            count(&space.counts.nr_faults);
            match outcome {
                FaultOutcome::Reused => count(&space.counts.nr_cow_reuses),
                FaultOutcome::Copied => count(&space.counts.nr_cow_copies),
                FaultOutcome::MappedHuge => count(&space.counts.nr_thp_faults),
                FaultOutcome::MappedHugeZero => count(&space.counts.nr_thp_zero),
                FaultOutcome::HugeFallback => count(&space.counts.nr_thp_fallbacks),
                _ => 0,
            };
            Ok(())
        }
        FaultOutcome::Refused(why) => {
            Err(Unresolved::Refused(format!("{why:?}: {:?} at {}", fault.access, fault.addr)))
        }
        FaultOutcome::NeedsSwapIn { page, entry } => {
            // The disk sleeps: interrupts on (the trap entered with them
            // off) and no lock held until the mapping half.
            Arch::irq_enable();
            let result = swap_in(&space, fault.access, page, entry);
            Arch::irq_disable();
            result.map_err(Unresolved::Lost)
        }
        // Not with `KernelFrames::PLAIN`; were it to come, the access
        // faults again.
        FaultOutcome::NeedsCompaction { .. } | FaultOutcome::NeedsHugeFolio { .. } => Ok(()),
        FaultOutcome::MigrationWait { page, .. } => {
            // The folio is being migrated: sleep until that is over (no
            // lock held, interrupts on), then retry the access.
            Arch::irq_enable();
            crate::vm::migrate::wait(&space, page);
            Arch::irq_disable();
            Ok(())
        }
        FaultOutcome::OutOfMemory => {
            // Reclaim in this task, then retry the access; only when
            // reclaim frees nothing does the access fail.
            Arch::irq_enable();
            let freed = crate::vm::reclaim::direct_reclaim(64);
            Arch::irq_disable();
            if freed > 0 {
                return Ok(());
            }
            crate::vm::reclaim::NR_OOM_KILLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            Err(Unresolved::OutOfMemory(format!(
                "out of memory on a {:?} fault at {} (reclaim freed nothing: {})",
                fault.access,
                fault.addr,
                crate::vm::reclaim::why_nothing_freed()
            )))
        }
    }
}

/// `mm::fault::handle_fault` under `space`'s lock, with `frames`; `None`
/// when the space is torn down.
///
/// A fault on a missing entry most often maps a new 4 KiB page, and
/// zeroing it is most of the work under the lock: so that faults of one
/// space on several CPUs run in parallel, its frame is taken and zeroed
/// first, without the lock ([`FaultFrames`]), and given back when the
/// fault did not need it (a race). Whether the entry is empty, a swap
/// entry, or in a huge-page range is known only under the lock, so the
/// space keeps a hint ([`AddressSpace::zero_ahead`]): the zeroing ahead is
/// done only while the space's last such fault used its page. A run of
/// swap-ins or huge faults then zeroes nothing it throws away; the first
/// new page after them is zeroed under the lock, and turns the hint on.
///
/// `huge` is the fault's huge folio as [`resolve`] prepared it; one the
/// fault did not map goes back after the lock.
fn handle(
    space: &AddressSpace,
    fault: &MemFault,
    frames: &KernelFrames,
    huge: HugeSpare,
) -> Option<FaultOutcome> {
    use core::sync::atomic::Ordering::Relaxed;
    let spare = match fault.cause {
        FaultCause::NotMapped if space.zero_ahead.load(Relaxed) => {
            match crate::vm::folios::alloc_zeroed_frame() {
                Ok(pfn) => Spare::Zeroed(pfn),
                Err(_) => Spare::Failed,
            }
        }
        _ => Spare::Unused,
    };
    let frames = FaultFrames {
        base: frames,
        spare: Cell::new(spare),
        zeroed_under_lock: Cell::new(false),
        huge: Cell::new(huge),
    };
    // First the one fault several CPUs may handle at once: the space's
    // lock shared, the PTE table's own lock around the entry
    // (`mm::fault::handle_fault_shared`; `None`: the lock alone decides).
    let shared = match fault.cause {
        FaultCause::NotMapped => {
            let guard = space.read();
            guard.as_ref().and_then(|inner| {
                mm::fault::handle_fault_shared(
                    &inner.table,
                    &inner.vmas,
                    &KernelTables,
                    &frames,
                    &crate::vm::ptlock::PteLocks,
                    fault,
                    true,
                )
            })
        }
        _ => None,
    };
    let outcome = if shared.is_some() {
        space.counts.nr_shared_faults.fetch_add(1, Relaxed);
        shared
    } else {
        let guard = space.lock();
        guard.as_ref().map(|inner| {
            // `Shootdown` even with interrupts off: the break-before-make
            // of a copy on write must reach every CPU (see the module doc).
            mm::fault::handle_fault(
                &inner.table,
                &inner.vmas,
                &KernelTables,
                &frames,
                &Shootdown,
                fault,
                true,
            )
        })
    };
    if fault.cause == FaultCause::NotMapped {
        if let Spare::Zeroed(pfn) = frames.spare.get() {
            crate::vm::folios::free_zeroed_frame(pfn);
            space.zero_ahead.store(false, Relaxed);
        } else if frames.zeroed_under_lock.get() {
            space.zero_ahead.store(true, Relaxed);
        }
    }
    if let HugeSpare::Prepared(Some(pfn)) = frames.huge.get() {
        crate::vm::folios::free_zeroed_huge(pfn);
    }
    outcome
}

/// The fault's huge folio, made by [`resolve`] without the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HugeSpare {
    /// None made yet: a fault that needs one answers `NeedsHugeFolio`.
    Unprepared,
    /// A zeroed raw block (`crate::vm::folios::alloc_zeroed_huge`; `None`:
    /// no 2 MiB block was free), not taken yet.
    Prepared(Option<Pfn>),
    /// Taken by the fault: another one is made under the lock.
    Taken,
}

/// The fault's 4 KiB page as [`handle`] prepared it before the lock.
#[derive(Clone, Copy)]
enum Spare {
    /// None prepared (not a fault on a missing entry), or used already:
    /// a page is allocated (and zeroed) under the lock.
    Unused,
    /// A zeroed raw frame (`crate::vm::folios::alloc_zeroed_frame`).
    Zeroed(Pfn),
    /// Its allocation failed: the fault's first 4 KiB page fails too, as
    /// the allocation under the lock would have (out of memory: reclaim,
    /// then a retry; also how `mm::fail_alloc` reaches that path), in the
    /// shared attempt and in the exclusive one after it alike.
    Failed,
}

/// [`KernelFrames`] for one fault, whose first new 4 KiB page is the one
/// [`handle`] zeroed before taking the space's lock. Lives on the faulting
/// CPU's stack for the one call, so the `Cell` is never shared.
struct FaultFrames<'a> {
    base: &'a KernelFrames,
    spare: Cell<Spare>,
    /// A 4 KiB page was allocated and zeroed under the lock (none had been
    /// prepared): the hint should be on.
    zeroed_under_lock: Cell<bool>,
    huge: Cell<HugeSpare>,
}

impl FrameSource for FaultFrames<'_> {
    fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        match self.spare.get() {
            Spare::Zeroed(pfn) => {
                self.spare.set(Spare::Unused);
                Some(crate::vm::folios::anon_page_from_zeroed(pfn, handle, index))
            }
            // Stays failed: the shared attempt (`handle_fault_shared`)
            // declines, and the exclusive one must fail the same page
            // rather than allocate it again.
            Spare::Failed => None,
            Spare::Unused => {
                self.zeroed_under_lock.set(true);
                self.base.alloc_anon_page(handle, index)
            }
        }
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.base.release_anon_page(pa)
    }
    fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        match self.huge.replace(HugeSpare::Taken) {
            HugeSpare::Prepared(pfn) => {
                pfn.map(|pfn| crate::vm::folios::anon_huge_from_zeroed(pfn, handle, index))
            }
            HugeSpare::Unprepared | HugeSpare::Taken => self.base.alloc_anon_huge(handle, index),
        }
    }
    /// Only until [`resolve`] has made the folio.
    fn huge_outside_lock(&self) -> bool {
        self.huge.get() == HugeSpare::Unprepared
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        self.base.release_anon_huge(pa)
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        self.base.huge_zero()
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        self.base.copy_page(dst, src)
    }
    fn memmap(&self) -> &mm::page::Memmap {
        self.base.memmap()
    }
    fn swap_dup(&self, entry: mm::pgtable::SwapEntry) -> Result<(), String> {
        self.base.swap_dup(entry)
    }
    fn thp_defrag(&self) -> Option<mm::compaction::Defrag> {
        self.base.thp_defrag()
    }
    fn thp_enabled(&self) -> mm::vma::ThpEnabled {
        self.base.thp_enabled()
    }
}

/// Brings the page of the swap entry `entry` back for an `access` at
/// `page` and maps it (`mm::swap::swapin`: the cache or the disk
/// without the space's lock, then the recheck and the mapping under it).
/// `Ok` means "retry the access" (mapped, or the entry changed meanwhile,
/// also when its area is gone because a swapoff brought the page back);
/// `Err` says why the task must end (a read error, no memory, an entry
/// still in the table whose area is gone).
pub(crate) fn swap_in(
    space: &Arc<AddressSpace>,
    access: mm::fault::Access,
    page: VirtAddr,
    entry: mm::pgtable::SwapEntry,
) -> Result<(), String> {
    use mm::swap::swapin::{SwapInError, SwapInOutcome};
    let Some(dev) = crate::vm::swap::area(entry.ty()) else {
        // The entry was read under the space's lock, the area looked up
        // after it was dropped: a swapoff that finished in between brought
        // the page back and took the area away. Only an entry still in the
        // page table names no area for real.
        if space.swap_entry_at(page) == Some(entry) {
            return Err(format!("{page}: {entry:?} is in no swap area"));
        }
        return Ok(()); // changed meanwhile: retry the access
    };
    let handle = mm::anon::anon_handle(space.root());
    // An intact run of a swapped-out huge page comes back whole in one
    // read; the look at the table is under the lock, the claim and the
    // recheck in half 1 make it safe to act on later.
    let run = || {
        let guard = space.lock();
        guard.as_ref().and_then(|inner| {
            mm::swap::swapin::intact_run(&inner.table, &KernelTables, &inner.vmas, page, entry)
        })
    };
    // Readahead: the neighbours whose PTEs hold the slots next to
    // `entry`'s come in with it, into the swap cache (looked at under the
    // lock, made safe by the claims and a second look in half 1).
    let window = || {
        let guard = space.lock();
        guard.as_ref().and_then(|inner| {
            mm::swap::swapin::readahead_window(&inner.table, &KernelTables, &inner.vmas, page, entry)
        })
    };
    let options = mm::swap::swapin::SwapInOptions { run: Some(&run), window: Some(&window) };
    let (folio, i) = match crate::vm::swap::get_folio(&dev, entry, handle, page.as_u64() >> 12, options) {
        Ok(got) => got,
        Err(SwapInError::Stale) => return Ok(()),
        Err(SwapInError::NoMemory) => {
            crate::vm::reclaim::NR_OOM_KILLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            let why = crate::vm::reclaim::why_nothing_freed();
            return Err(format!("out of memory swapping in {page} (reclaim freed nothing: {why})"));
        }
        Err(SwapInError::Io(e)) => return Err(format!("swap read error at {page} ({entry:?}): {e}")),
        Err(SwapInError::Slot(e)) => return Err(format!("{page}: {entry:?} is no slot of its area: {e}")),
    };
    let outcome = {
        let guard = space.lock();
        guard.as_ref().map(|inner| {
            let out = mm::swap::swapin::map_swapped_in(
                &inner.table,
                &KernelTables,
                &inner.vmas,
                &dev.area,
                &folio,
                i,
                page,
                entry,
                access == mm::fault::Access::Write,
                true,
            );
            if let SwapInOutcome::Mapped { .. } = out {
                crate::vm::swap::map_around(&dev, &inner.table, &inner.vmas, page, entry);
            }
            out
        })
    };
    // The entry changed meanwhile: the folio may be needed by nobody now.
    crate::vm::swap::free_if_unused_locked(&dev, folio);
    folio.unlock();
    crate::vm::swap::put(folio);
    if let Some(SwapInOutcome::Mapped { .. }) = outcome {
        space.counts.nr_faults.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        space.counts.nr_swapins.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}
