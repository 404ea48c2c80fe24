//! swapoff: bringing every page of a swap area back into memory, so that
//! the area can be taken away. The kernel supplies the list of spaces,
//! their locks and the swap-in of one entry (the fault path's, which reads
//! the slot) through [`SwapoffHost`]; the order of the steps and what is
//! left when one fails are decided here.
//!
//! ## The steps ([`swapoff`])
//!
//! 1. **Stop allocation** from the area ([`SwapArea::stop_alloc`]): from
//!    now on reclaim takes no new slot of it, so the walk below can end.
//!    Folios already in its cache keep their slots until step 3.
//! 2. **Walk** every live space ([`swap_in_all`]): under the space's lock,
//!    collect up to [`BATCH`] swap entries of the area, drop the lock, and
//!    bring each back as a read fault would ([`SwapoffHost::swap_in`]:
//!    the swap cache or the disk, sleeping without any lock, then the
//!    recheck and the mapping under the lock). Then walk that space again,
//!    until a walk finds none: the table may change while it is unlocked (a
//!    fork copies entries, reclaim of an older cache folio adds some), and
//!    a space is done only when one whole walk under its lock saw no entry
//!    of the area. A read that fails stops swapoff at once with
//!    [`SwapoffError::SwapIn`]: the entry stays in place with its slot's
//!    count, nothing is lost, and the area stays on with allocation stopped.
//! 3. **Empty the cache**: every used slot that still has a cache folio
//!    (one whose entries all went: reclaim kept it for a reference, or the
//!    walk's swap-ins mapped it shared and read-only) loses it, locked,
//!    when no entry holds its slots ([`delete_if_unused`] with
//!    [`IfMapped::Delete`]: its mappings stay, the copy on disk goes).
//! 4. **Check** that no slot is used. Slots can still be held by work
//!    that was in flight when allocation stopped: a folio reclaim took
//!    slots for just before and is writing now (its entries appear after
//!    the walk looked), a space that was being made or torn down while the
//!    walk listed the spaces, a folio whose cache deletion kswapd deferred.
//!    So while slots are used, steps 2 and 3 run again; a round that
//!    brings nothing back and frees no slot waits
//!    ([`SwapoffHost::wait_in_flight`]) first, and after [`IDLE_ROUNDS`]
//!    such rounds in a row swapoff gives up with
//!    [`SwapoffError::StillUsed`] (an entry in a space the walk cannot
//!    see). Then the kernel takes the area out of its table.
//!
//! ## Invariants
//!
//! - Nothing is freed that a page-table entry still holds: step 3 takes
//!   out only folios with every slot's count at 0, and step 4 refuses
//!   while any slot is used.
//! - A failed step leaves the area on (allocation stopped), every entry
//!   that was not brought back in place, and every byte readable.
//!
//! ## Locks
//!
//! Each space's lock only while its table is walked
//! ([`SwapoffHost::with_space_locked`]); swap-in takes it again itself.
//! Step 3 takes each cache folio's lock (waiting with
//! [`SwapoffHost::relax`]: its holder may be reading or writing it) and
//! the area's leaf lock inside. The caller holds no lock: task context.

use crate::addr::VirtAddr;
use crate::folio::Folio;
use crate::page::Memmap;
use crate::pgtable::SwapType;
use crate::pgtable::{Decoded, NonPresent, PageTable, PageTableFormat, SwapEntry, TableMemory};
use crate::swap::area::SwapArea;
use crate::swap::cache::{delete_if_unused, lookup_get, IfMapped};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Entries collected under a space's lock per walk.
pub const BATCH: usize = 64;

/// Rounds of steps 2 and 3 in a row that may bring nothing back and free
/// no slot (each after [`SwapoffHost::wait_in_flight`]) before swapoff
/// gives up (module doc, step 4).
pub const IDLE_ROUNDS: u32 = 300;

/// What swapoff needs from the kernel: the spaces, their locks, the
/// swap-in of one entry, freeing, and a way to wait.
pub trait SwapoffHost {
    /// A live address space, kept alive while held.
    type Space;
    /// The page-table format of the spaces.
    type Format: PageTableFormat;
    /// Where page tables live.
    type Mem: TableMemory;

    /// Where page tables live.
    fn mem(&self) -> &Self::Mem;
    /// The page descriptors.
    fn memmap(&self) -> &'static Memmap;
    /// Every live address space.
    fn spaces(&self) -> Vec<Self::Space>;
    /// One past the highest user address: the walk covers `[0, user_end)`.
    fn user_end(&self) -> VirtAddr;
    /// Runs `f` over `space`'s table under its lock; `None` when the space
    /// was torn down meanwhile.
    fn with_space_locked<R>(
        &self,
        space: &Self::Space,
        f: impl FnOnce(&PageTable<Self::Format>) -> R,
    ) -> Option<R>;
    /// Brings back the page that the swap entry `entry` at `va` of `space`
    /// holds, as a read fault there would, and maps it (`Ok` also when the
    /// entry changed meanwhile: the next walk looks again). Task context,
    /// no lock held; may sleep. `Err` says why (with the space's name).
    fn swap_in(&self, space: &Self::Space, va: VirtAddr, entry: SwapEntry) -> Result<(), String>;
    /// Drops one reference, freeing the folio when it was the last.
    fn put(&self, folio: Folio<'static>);
    /// Waits a little: another task holds a folio lock.
    fn relax(&self);
    /// Waits for work in flight that holds slots (module doc, step 4): a
    /// write, a teardown, deferred cache work. The kernel sleeps a few
    /// milliseconds.
    fn wait_in_flight(&self);
}

/// Why swapoff stopped; the area stays on with allocation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapoffError {
    /// Bringing an entry back failed (a read error, no memory); the entry
    /// is still in place. The message is [`SwapoffHost::swap_in`]'s.
    SwapIn { va: VirtAddr, why: String },
    /// Slots are still used after the walk.
    StillUsed { nr_used: u64 },
}

impl fmt::Display for SwapoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapoffError::SwapIn { why, .. } => write!(f, "{why}"),
            SwapoffError::StillUsed { nr_used } => {
                write!(f, "{nr_used} slots still in use; allocation stays off")
            }
        }
    }
}

/// Turns swap off for `area` (module doc, steps 1 to 4). Returns the
/// number of entries brought back; on `Ok` no slot of the area is used
/// and the caller may drop it.
pub fn swapoff<H: SwapoffHost>(host: &H, area: &SwapArea) -> Result<u64, SwapoffError> {
    area.stop_alloc();
    let mut back = 0;
    let mut idle = 0;
    let mut was_used = u64::MAX;
    loop {
        let got = swap_in_all(host, area.ty())?;
        back += got;
        empty_cache(host, area);
        let nr_used = area.nr_used();
        if nr_used == 0 {
            return Ok(back);
        }
        if got == 0 && nr_used >= was_used {
            idle += 1;
            if idle >= IDLE_ROUNDS {
                return Err(SwapoffError::StillUsed { nr_used });
            }
            host.wait_in_flight();
        } else {
            idle = 0;
        }
        was_used = nr_used;
    }
}

/// Step 2: brings back every page of every live space that sits in the
/// swap area of type `ty`. Returns how many entries were brought back.
pub fn swap_in_all<H: SwapoffHost>(host: &H, ty: SwapType) -> Result<u64, SwapoffError> {
    let mut done = 0;
    for space in host.spaces() {
        loop {
            let found =
                host.with_space_locked(&space, |table| entries_of(table, host.mem(), host.user_end(), ty));
            let Some(found) = found.filter(|f| !f.is_empty()) else { break };
            for (va, entry) in found {
                host.swap_in(&space, va, entry).map_err(|why| SwapoffError::SwapIn { va, why })?;
                done += 1;
            }
        }
    }
    Ok(done)
}

/// Up to [`BATCH`] swap entries of type `ty` in `[0, end)` of `table`,
/// with their addresses (the caller holds the space's lock).
fn entries_of<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    end: VirtAddr,
    ty: SwapType,
) -> Vec<(VirtAddr, SwapEntry)> {
    let mut found = Vec::new();
    table.visit(mem, VirtAddr::new(0), end, &mut |va, _, e, _| {
        if let Decoded::NonPresent(NonPresent::Swap { entry, .. }) = e {
            if entry.ty() == ty && found.len() < BATCH {
                found.push((va, entry));
            }
        }
    });
    found
}

/// Step 3: takes every cache folio left in `area` out of the cache when
/// no entry holds its slots, mapped or not.
pub fn empty_cache<H: SwapoffHost>(host: &H, area: &SwapArea) {
    let mut from = 0;
    while let Some(entry) = area.next_used(from) {
        from = entry.offset() + 1;
        let Some((folio, _)) = lookup_get(area, host.memmap(), entry) else { continue };
        while !folio.try_lock() {
            host.relax();
        }
        delete_if_unused(area, &folio, IfMapped::Delete);
        folio.unlock();
        host.put(folio);
    }
}
