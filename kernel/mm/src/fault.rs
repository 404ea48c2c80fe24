//! The arch-neutral description of a memory fault: what each arch's
//! exception decoder produces from the hardware's report (x86_64's error code
//! and CR2, AArch64's ESR and FAR), and what the fault handler will consume.
//!
//! Decoding lives in `arch/`; this module only names the outcomes, so that
//! `mm` and the tests never look at an arch's raw bits.

use crate::addr::VirtAddr;

/// What the faulting access tried to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// An instruction fetch.
    Execute,
}

/// Why the translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCause {
    /// No valid entry at some level (x86_64: P=0; AArch64: translation fault).
    NotMapped,
    /// A valid entry forbids the access (read-only, no-execute, privilege).
    Protection,
    /// AArch64 only: a valid entry with the access flag clear.
    AccessFlag,
    /// Anything else the hardware reports (reserved bits, alignment,
    /// external abort). `MemFault::syndrome` has the raw report.
    Other,
}

/// A decoded memory fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemFault {
    /// The address the access named (CR2 / FAR).
    pub addr: VirtAddr,
    pub access: Access,
    pub cause: FaultCause,
    /// The table level the walk stopped at, when the hardware says
    /// (AArch64 reports it; x86_64 does not).
    pub level: Option<u8>,
    /// The raw report: the x86_64 error code, or the AArch64 ESR.
    pub syndrome: u64,
}

// ---------------------------------------------------------------- handling

use crate::addr::PhysAddr;
use crate::folio::folio_of;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{Decoded, Leaf, PageSize, PageTable, PageTableFormat, TableMemory, TlbHooks};
use crate::vma::VmaSet;

/// Where the fault handler gets new anonymous pages, and gives back one it
/// could not map. Each page is an order-0 folio (see [`crate::anon`] for its
/// state and [`crate::anon::alloc_anon_folio`] for an implementation).
pub trait FrameSource {
    /// A new zeroed anonymous page for page `index` (`va >> 12`) of the
    /// address space `handle` ([`crate::anon::anon_handle`]): an order-0
    /// folio with mapcount 1 and refcount 1 for the PTE the caller is about
    /// to write, `AnonExclusive` and `SwapBacked`. `None` when memory is
    /// exhausted.
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr>;
    /// Drops the mapping of an anonymous page whose PTE is gone (or was
    /// never written) and that mapping's reference, freeing the folio when
    /// the reference was the last. Only for a page no other CPU can still
    /// reach through a stale translation; unmapping a live PTE goes through
    /// the two steps of [`crate::anon`] instead.
    fn release_anon_page(&self, pa: PhysAddr);
    /// Copies the 4 KiB frame at `src` to the frame at `dst` (copy on
    /// write; the kernel does it through its direct map).
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr);
    /// The memmap describing the frames this source hands out (the fault
    /// handler reads the folio state of a write-protected page from it).
    fn memmap(&self) -> &Memmap;
}

/// Why an access is refused: the faulting task's fault (a segmentation
/// fault for a user program).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No area is mapped at the address.
    NoMapping,
    /// The area does not allow this access (write to read-only, execute
    /// of non-executable).
    NotAllowed,
    /// The page-table entry is of a kind this kernel does not handle yet
    /// (swap and migration entries come with issues 5 and 6).
    Unsupported,
}

/// What the fault handler did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// A mapping was made or fixed: retry the access.
    Resolved,
    /// A write to a write-protected anonymous page that was exclusive to
    /// this space (or found to be its only user): the same page was made
    /// writable in place.
    Reused,
    /// A write to a write-protected anonymous page shared with others: a
    /// copy replaced it (copy on write).
    Copied,
    /// The entry already allowed the access (a stale TLB entry, or another
    /// CPU fixed it first): flushed locally, retry.
    Spurious,
    /// The access is not allowed: end the task.
    Refused(Refused),
    /// No memory for the page or a table: end the task (out of memory).
    OutOfMemory,
}

/// Handles a fault at `fault.addr` in the address space whose tables are
/// `table` and areas `vmas`, for an access from kernel or user mode.
///
/// Today: demand-zero 4 KiB pages for anonymous areas (each an order-0
/// anon folio from `frames`, see [`crate::anon`]); on AArch64 the
/// access flag and the software dirty state (the CPU does not manage them
/// without FEAT_HAFDBS); spurious faults; write faults on write-protected
/// anonymous 4 KiB pages in writable areas (after a fork), by
/// [`wp_fault`]: reuse or copy. THP, swap and migration come with issues 5
/// and 6.
///
/// The caller holds the address space's lock (areas and tables do not
/// change under us). `hooks` must reach every CPU that may hold a
/// translation of this space: a copy replaces the page by break-before-make
/// and flushes between the two writes.
pub fn handle_fault<F: PageTableFormat>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &impl TableMemory,
    frames: &impl FrameSource,
    hooks: &impl TlbHooks,
    fault: &MemFault,
    user: bool,
) -> FaultOutcome {
    let Some(vma) = vmas.find(fault.addr) else { return FaultOutcome::Refused(Refused::NoMapping) };
    let allowed = match fault.access {
        Access::Read => vma.prot.read,
        Access::Write => vma.prot.write,
        Access::Execute => vma.prot.exec,
    };
    if !allowed {
        return FaultOutcome::Refused(Refused::NotAllowed);
    }
    let page = fault.addr.align_down(4096);
    let write = fault.access == Access::Write;
    let (level, entry) = table.lookup(mem, page);
    match entry {
        // Nothing there (at any level): demand-zero. A fresh zeroed anon
        // folio, mapped young, and dirty when the first access writes.
        Decoded::None => {
            let handle = crate::anon::anon_handle(table.root());
            let Some(frame) = frames.alloc_anon_page(handle, page.as_u64() >> 12) else {
                return FaultOutcome::OutOfMemory;
            };
            let leaf = Leaf {
                frame,
                size: PageSize::Size4K,
                prot: vma.prot.to_prot(user),
                dirty: write,
                young: true,
            };
            match table.map(mem, page, leaf) {
                Ok(flush) => {
                    flush.ignore(); // nothing valid was mapped there
                    FaultOutcome::Resolved
                }
                Err(e) => {
                    // Never mapped, never seen by anyone: give it back whole.
                    frames.release_anon_page(frame);
                    match e {
                        crate::pgtable::PgError::OutOfMemory => FaultOutcome::OutOfMemory,
                        _ => FaultOutcome::Refused(Refused::Unsupported),
                    }
                }
            }
        }
        Decoded::Leaf(leaf) => {
            let mut fixed = Leaf { young: true, ..leaf };
            if write {
                if !leaf.prot.writable {
                    // Write-protected in an area that allows writes: copy
                    // on write or reuse.
                    if level != crate::pgtable::Level::Pte {
                        return FaultOutcome::Refused(Refused::Unsupported); // THP: issue 5
                    }
                    let handle = crate::anon::anon_handle(table.root());
                    let prot = vma.prot.to_prot(user);
                    return wp_fault(table, mem, frames, hooks, page, leaf, prot, handle);
                }
                fixed.dirty = true;
            }
            if fixed == leaf {
                // Already allowed: a stale translation on this CPU.
                let start = page.align_down(level.entry_size());
                hooks.flush_range(table.root(), start, VirtAddr::new(start.as_u64() + level.entry_size()));
                return FaultOutcome::Spurious;
            }
            // Setting young or dirty only grants access: no flush is owed
            // (a CPU holding the old entry faults again, spuriously).
            match table.update_leaf(mem, page, level, fixed) {
                Ok(flush) => {
                    flush.ignore();
                    FaultOutcome::Resolved
                }
                Err(_) => FaultOutcome::Refused(Refused::Unsupported),
            }
        }
        Decoded::NonPresent(_) | Decoded::Table(_) | Decoded::Bad(_) => {
            FaultOutcome::Refused(Refused::Unsupported)
        }
    }
}

/// A write fault on the write-protected anonymous 4 KiB leaf `leaf` at
/// `page`, in an area whose leaves may have `prot` (writable). The caller
/// holds the space's lock. mm-reference §8:
///
/// - **reuse** when the page is `AnonExclusive` (only this space maps it:
///   a write-protected exclusive page is merely clean-and-protected), or
///   when its folio has mapcount 1 and refcount 1: this PTE is the only
///   user, and nobody can take a new reference or mapping without this
///   space's lock (fork) or a mapping (which would show in the counts);
///   the page is then marked exclusive. The leaf becomes writable, dirty
///   and young in place: access is only granted, no flush is owed.
/// - **copy** otherwise: a new anonymous page of this space (`handle`)
///   gets the old page's bytes and replaces the leaf writable, dirty and
///   exclusive by break-before-make (`hooks` flush every CPU between the
///   clear and the new entry, so no CPU can read the old page after any
///   CPU wrote the new one); then the old page loses this mapping and,
///   the flush being over, its reference.
#[allow(clippy::too_many_arguments)]
fn wp_fault<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    frames: &impl FrameSource,
    hooks: &impl TlbHooks,
    page: VirtAddr,
    leaf: Leaf,
    prot: crate::pgtable::Prot,
    handle: u64,
) -> FaultOutcome {
    let Some(folio) = folio_of(frames.memmap(), leaf.frame.pfn()) else {
        return FaultOutcome::Refused(Refused::Unsupported);
    };
    if !folio.test_flag(PageFlag::SwapBacked) || folio.is_large() {
        return FaultOutcome::Refused(Refused::Unsupported);
    }
    let exclusive = folio.test_flag(PageFlag::AnonExclusive)
        || (folio.page_mapcount(0) == 1 && folio.refcount() == 1 && {
            folio.set_flag(PageFlag::AnonExclusive);
            true
        });
    if exclusive {
        let fixed = Leaf { prot, dirty: true, young: true, ..leaf };
        return match table.update_leaf(mem, page, crate::pgtable::Level::Pte, fixed) {
            Ok(flush) => {
                flush.ignore(); // access granted only
                FaultOutcome::Reused
            }
            Err(_) => FaultOutcome::Refused(Refused::Unsupported),
        };
    }
    let Some(new) = frames.alloc_anon_page(handle, page.as_u64() >> 12) else {
        return FaultOutcome::OutOfMemory;
    };
    frames.copy_page(new, leaf.frame);
    let new_leaf = Leaf { frame: new, size: PageSize::Size4K, prot, dirty: true, young: true };
    match table.remap(mem, hooks, page, new_leaf) {
        Ok(old) => {
            // The flush inside `remap` is over: no CPU reaches the old page
            // through this space any more.
            frames.release_anon_page(old.frame);
            FaultOutcome::Copied
        }
        Err(_) => {
            frames.release_anon_page(new);
            FaultOutcome::Refused(Refused::Unsupported)
        }
    }
}
