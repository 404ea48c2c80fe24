//! Getting user pages: the kernel takes hold of the page behind a user
//! address so it can read or write it directly (I/O into a buffer, a
//! driver's DMA), with either of two kinds of hold.
//!
//! - **`FOLL_GET`** ([`Hold::Get`]): a plain reference. It keeps the frame
//!   from being freed, nothing more: the space may later copy the page on
//!   write, and the holder then keeps the old copy. Fine for a short look.
//! - **`FOLL_PIN`** ([`Hold::Pin`]): a pin ([`Folio::pin`]: a large bias on a
//!   small folio's refcount, one reference and one pin count on a large
//!   folio). A pin promises that what the holder writes is what the space
//!   sees (mm-reference §8):
//!   1. **a pin needs an exclusive page**: before pinning, a page that is
//!      not `AnonExclusive` (shared with a fork relative) goes through the
//!      write-fault path first, which copies it or reuses it and makes it
//!      exclusive (for a write pin this is the usual copy on write; for a
//!      read pin in a writable area it is done the same way);
//!   2. **fork copies pinned pages** (`crate::space::fork_range` checks
//!      `Folio::maybe_pinned`): the parent keeps its pinned page,
//!      exclusive and writable, and the child gets a copy, so no later copy
//!      on write can move the parent away from the pinned frame;
//!   3. **pinned folios are not split** (`crate::thp::try_split_folio`)
//!      and, with swap, not unmapped for reclaim.
//!
//! A write hold also marks the page dirty and writable in the table (the
//! write-fault path), so the data written through it is never taken for
//! clean.
//!
//! A **migration entry** at the address (PTE, or the PMD covering it)
//! means the page is being moved: nothing can be held until the migration
//! ends. [`get_user_page`] answers [`GupError::Migrating`] without
//! touching anything; the caller drops the space's lock, waits for the
//! folio the entry names to be unlocked (as the fault path does) and calls
//! again, which then finds the page mapped again (or gone: the range was
//! zapped meanwhile, and the fault path maps a new page as usual).
//!
//! ## Locks
//!
//! [`get_user_page`] runs under the space's lock (like the fault handler,
//! which it calls). The hold outlives the lock: release it with
//! [`release`] (any time, no lock).

use crate::addr::{PhysAddr, VirtAddr};
use crate::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
use crate::folio::{folio_of, Folio};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{
    Decoded, MigrationEntry, NonPresent, PageTable, PageTableFormat, TableMemory, TlbHooks,
};
use crate::vma::VmaSet;

/// The kind of hold (Linux's `FOLL_GET` / `FOLL_PIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A plain reference.
    Get,
    /// A pin (module doc).
    Pin,
}

/// Why a page could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GupError {
    /// The fault that would map the page was refused or ran out of memory.
    Fault(FaultOutcome),
    /// The entry there is not an anonymous folio page (or the fault path
    /// gave up after retries).
    NotHoldable { va: VirtAddr },
    /// A migration entry covers `va` (module doc): wait for the folio it
    /// names to be unlocked, without the space's lock, and try again.
    Migrating { va: VirtAddr, entry: MigrationEntry },
}

/// Maps the page at `va` if needed (as a fault from user mode would), makes
/// it writable and dirty for a `write` hold, exclusive for a pin, then
/// takes the hold. Returns the physical address of the byte at `va`.
///
/// The caller holds the space's lock; `hooks` as for
/// [`handle_fault`] (a copy on write may happen here).
#[allow(clippy::too_many_arguments)]
pub fn get_user_page<F: PageTableFormat>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &impl TableMemory,
    frames: &impl FrameSource,
    hooks: &impl TlbHooks,
    va: VirtAddr,
    write: bool,
    hold: Hold,
) -> Result<PhysAddr, GupError> {
    let memmap = frames.memmap();
    // Two rounds are enough: one fault, then the page as it is now; a
    // third only when something changed the entry under the lock (a bug).
    for _ in 0..3 {
        let (_, entry) = table.lookup(mem, va.align_down(4096));
        let fault_for = match entry {
            Decoded::Leaf(leaf) => {
                let pa = PhysAddr::new(leaf.frame.as_u64() + (va.as_u64() & (leaf.size.bytes() - 1)));
                let writable_area = vmas.find(va).is_some_and(|a| a.prot.write);
                if crate::thp::is_huge_zero(memmap, &leaf) {
                    // Nothing to hold in the shared zero folio: a write
                    // fault gives the range a folio of its own.
                    if !writable_area {
                        return Err(GupError::NotHoldable { va });
                    }
                    Some(Access::Write)
                } else {
                    let folio = anon_folio(memmap, pa).ok_or(GupError::NotHoldable { va })?;
                    // A PMD mapping's exclusivity is the head's bit.
                    let bit = if leaf.size.bytes() > 4096 { 0 } else { folio.page_index_of(pa.pfn()) };
                    let exclusive = folio.page(bit).test_flag(PageFlag::AnonExclusive);
                    if write && !(leaf.prot.writable && leaf.dirty) {
                        Some(Access::Write)
                    } else if hold == Hold::Pin && !exclusive && writable_area {
                        // Unshare before pinning (module doc, rule 1).
                        Some(Access::Write)
                    } else {
                        match hold {
                            Hold::Get => folio.get(),
                            Hold::Pin => folio.pin(),
                        }
                        return Ok(pa);
                    }
                }
            }
            Decoded::NonPresent(NonPresent::Migration(entry)) => {
                return Err(GupError::Migrating { va, entry })
            }
            _ => Some(if write { Access::Write } else { Access::Read }),
        };
        if let Some(access) = fault_for {
            let fault = MemFault { addr: va, access, cause: FaultCause::NotMapped, level: None, syndrome: 0 };
            let outcome = handle_fault(table, vmas, mem, frames, hooks, &fault, true);
            if matches!(
                outcome,
                FaultOutcome::Refused(_)
                    | FaultOutcome::OutOfMemory
                    | FaultOutcome::NeedsSwapIn { .. }
                    | FaultOutcome::MigrationWait { .. }
                    | FaultOutcome::NeedsCompaction { .. }
                    | FaultOutcome::NeedsHugeFolio { .. }
            ) {
                return Err(GupError::Fault(outcome));
            }
        }
    }
    Err(GupError::NotHoldable { va })
}

/// The anonymous folio that contains the frame of `pa`.
fn anon_folio(memmap: &Memmap, pa: PhysAddr) -> Option<Folio<'_>> {
    folio_of(memmap, pa.pfn()).filter(|f| f.test_flag(PageFlag::SwapBacked))
}

/// Releases a hold taken by [`get_user_page`] on the page at `pa`. Returns
/// the folio when that was its last reference: the caller frees it.
pub fn release(memmap: &'static Memmap, pa: PhysAddr, hold: Hold) -> Option<Folio<'static>> {
    let folio = folio_of(memmap, pa.pfn())
        .unwrap_or_else(|| panic!("gup::release: {pa} is not a folio page (released twice?)"));
    let last = match hold {
        Hold::Get => folio.put(),
        Hold::Pin => folio.unpin(),
    };
    last.then_some(folio)
}
