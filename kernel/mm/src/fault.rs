//! The arch-neutral description of a memory fault: what each arch's
//! exception decoder produces from the hardware's report (x86_64's error code
//! and CR2, AArch64's ESR and FAR), and what the fault handler will consume.
//!
//! Decoding lives in `arch/`; this module only names the outcomes, so that
//! `mm` and the tests never look at an arch's raw bits.

use crate::addr::VirtAddr;
use crate::folio::AnonHandle;

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
use crate::compaction::{thp_fault_compaction, Defrag, Request};
use crate::folio::{folio_of, Folio};
use crate::page::{Memmap, PageFlag};
use crate::pgtable::SwapEntry;
use crate::pgtable::{Decoded, Leaf, Level, NonPresent, PageSize, PageTable, PageTableFormat, PgError, Prot};
use crate::pgtable::{TableMemory, TlbHooks};
use crate::thp::{is_huge_zero, split_huge_pmd, HPAGE_SIZE};
use crate::vma::{ThpEnabled, VmaSet};
use alloc::string::String;

/// Where the fault handler gets new anonymous pages, and gives back one it
/// could not map. Each page is an order-0 folio (see [`crate::anon`] for its
/// state and [`crate::anon::alloc_anon_folio`] for an implementation).
pub trait FrameSource {
    /// A new zeroed anonymous page for page `index` (`va >> 12`) of the
    /// address space `handle` ([`crate::anon::anon_handle`]): an order-0
    /// folio with mapcount 1 and refcount 1 for the PTE the caller is about
    /// to write, `AnonExclusive` and `SwapBacked`. `None` when memory is
    /// exhausted.
    fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr>;
    /// Drops the mapping of an anonymous page whose PTE is gone (or was
    /// never written) and that mapping's reference, freeing the folio when
    /// the reference was the last. Only for a page no other CPU can still
    /// reach through a stale translation; unmapping a live PTE goes through
    /// the two steps of [`crate::anon`] instead.
    fn release_anon_page(&self, pa: PhysAddr);
    /// A new zeroed huge anonymous folio for the 2 MiB block whose first
    /// page is `index` (`va >> 12`) of the space `handle`: order 9, entire
    /// mapcount 1 and refcount 1 for the PMD the caller is about to write,
    /// `AnonExclusive`, `SwapBacked` ([`crate::thp::alloc_anon_huge_folio`]).
    /// `None` when no 2 MiB block is free: the fault falls back to 4 KiB.
    fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr>;
    /// Gives back a huge folio from [`FrameSource::alloc_anon_huge`] whose
    /// PMD was never written (or is gone with no stale translation left):
    /// drops its PMD mapping and that reference.
    fn release_anon_huge(&self, pa: PhysAddr);
    /// The huge zero folio ([`crate::thp::alloc_huge_zero_folio`]), made on
    /// first use; `None` when it could not be made (read faults then map
    /// 4 KiB zero pages).
    fn huge_zero(&self) -> Option<PhysAddr>;
    /// Copies the 4 KiB frame at `src` to the frame at `dst` (copy on
    /// write; the kernel does it through its direct map).
    ///
    /// Contract (`mm` has no `unsafe`, so it is not an `unsafe fn`; an
    /// implementation that touches real memory checks what it can and
    /// panics on a broken one): `dst` is a page of an anonymous folio that
    /// [`FrameSource::alloc_anon_page`] or [`FrameSource::alloc_anon_huge`]
    /// just returned and that nothing maps yet; `src` is a different page of
    /// an anonymous folio the caller keeps mapped (so referenced) until
    /// this returns.
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr);
    /// The memmap describing the frames this source hands out (the fault
    /// handler reads the folio state of a write-protected page from it).
    fn memmap(&self) -> &Memmap;
    /// One more page-table entry holds the swap entry `entry` (fork copies
    /// a swap PTE into the child). Refused when the entry's area is gone
    /// or the slot's count is at its limit; without swap, always refused.
    fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
        Err(alloc::format!("no swap area for {entry:?}"))
    }
    /// Which THP write faults that find no free 2 MiB block may stall for
    /// direct compaction ([`crate::compaction::thp_fault_compaction`]):
    /// `None`, the default, none (fall back to 4 KiB at once, as for a
    /// fault retried after its compaction). With `Some`, such a fault
    /// answers [`FaultOutcome::NeedsCompaction`] instead of falling back.
    fn thp_defrag(&self) -> Option<Defrag> {
        None
    }
    /// The system-wide THP switch ([`ThpEnabled`]): a fault maps a huge
    /// page only in an area it allows. The default, `Always`, leaves the
    /// decision to the area's advice and fit.
    fn thp_enabled(&self) -> ThpEnabled {
        ThpEnabled::Always
    }
    /// Whether this source would rather make a fault's huge folio without
    /// the address-space lock (zeroing 2 MiB is most of a THP fault, and the
    /// kernel holds that lock with interrupts off): then a write fault that
    /// would take one from [`FrameSource::alloc_anon_huge`] changes nothing
    /// and answers [`FaultOutcome::NeedsHugeFolio`] instead. `false`, the
    /// default: take it under the lock.
    fn huge_outside_lock(&self) -> bool {
        false
    }
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
    /// The page-table entry is of a kind this kernel does not handle
    /// (a migration entry, a swap entry in a PMD).
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
    /// A write fault in a huge-page eligible range mapped a fresh 2 MiB
    /// folio with one PMD leaf (or replaced the huge zero folio with one).
    MappedHuge,
    /// A read fault in a huge-page eligible range mapped the huge zero
    /// folio read-only with one PMD leaf.
    MappedHugeZero,
    /// The range was huge-page eligible but no 2 MiB block was free: a 4 KiB
    /// page was mapped instead.
    HugeFallback,
    /// The entry already allowed the access (a stale TLB entry, or another
    /// CPU fixed it first): flushed locally, retry.
    Spurious,
    /// The access is not allowed: end the task.
    Refused(Refused),
    /// No memory for the page or a table: end the task (out of memory).
    OutOfMemory,
    /// The page is in swap: the caller drops the lock, brings it back
    /// ([`crate::swap::swapin`]) and maps it under the lock again.
    NeedsSwapIn { page: VirtAddr, entry: SwapEntry },
    /// A migration entry (PTE or PMD) names the frame `pfn`, whose folio is
    /// being migrated ([`crate::migrate`]): the caller drops the lock,
    /// sleeps until that migration is over (the folio named by the entry
    /// is unlocked, the entry gone) and retries the access.
    MigrationWait { page: VirtAddr, pfn: crate::Pfn },
    /// A write fault in a huge-page eligible range found no free 2 MiB
    /// block, and the frame source's `defrag` policy lets it stall
    /// ([`FrameSource::thp_defrag`]): nothing was mapped; the caller drops
    /// the lock, runs `request` (a bounded direct compaction,
    /// [`crate::compaction`]), and handles the same fault once more with
    /// compaction off (which maps a THP, or falls back to 4 KiB).
    NeedsCompaction { page: VirtAddr, request: Request },
    /// A write fault would map a fresh huge folio at the 2 MiB block of
    /// `page`, and the frame source asked to make it without the lock
    /// ([`FrameSource::huge_outside_lock`]): nothing was changed; the
    /// caller drops the lock, allocates and zeroes the folio, and handles
    /// the same fault once more with a source whose
    /// [`FrameSource::alloc_anon_huge`] hands out that folio (or `None`, when
    /// there was no block: then the fault compacts or falls back as usual).
    /// The second time everything is looked at again: the folio goes back
    /// when the fault no longer needs it.
    NeedsHugeFolio { page: VirtAddr },
}

/// The locks of single PTE tables ("split page-table locks"): what lets
/// faults that hold the address-space lock only *shared* fill entries of
/// one table one at a time ([`handle_fault_shared`]). A lock may stand for
/// several tables (the kernel hashes them onto a few locks); it is held
/// only around the recheck and the write of one entry, with nothing taken
/// under it.
pub trait PteTableLocks {
    /// Runs `f` holding the lock of the PTE table at `table`.
    fn with_table_locked<R>(&self, table: PhysAddr, f: impl FnOnce() -> R) -> R;
}

/// The one fault several CPUs may handle at once in one address space:
/// the first touch of a page whose PTE table exists, in an area that
/// allows the access. The caller holds the space's lock *shared* (other
/// such faults run beside it; every other change of the areas or the
/// tables holds it alone) and `locks` guard each PTE table.
///
/// The entry is read without the table's lock; a new zeroed anonymous page
/// is taken from `frames`; then, under the table's lock, the entry is read
/// again and, still empty, the page is mapped exactly as [`handle_fault`]
/// would map it (young, dirty when written). Returns `None`, having changed
/// nothing, for every other case (no area, a refused access, no PTE table,
/// an entry that is not empty or that another CPU filled meanwhile, no
/// memory): the caller then takes the lock alone and calls
/// [`handle_fault`], the one place that decides those.
///
/// Why the shared hold is enough: nothing but this function writes a PTE
/// while the space's lock is held shared, and it writes only an empty
/// entry of an existing table under that table's lock, so two of them
/// never write the same entry; tables are freed and upper entries written
/// only under the exclusive hold, so the walk cannot meet a table being
/// freed; an empty entry is cached by no TLB (neither format caches
/// invalid entries), so no flush is owed.
pub fn handle_fault_shared<F: PageTableFormat>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &impl TableMemory,
    frames: &impl FrameSource,
    locks: &impl PteTableLocks,
    fault: &MemFault,
    user: bool,
) -> Option<FaultOutcome> {
    let vma = vmas.find(fault.addr)?;
    let write = fault.access == Access::Write;
    let allowed = match fault.access {
        Access::Read => vma.prot.read,
        Access::Write => vma.prot.write,
        Access::Execute => vma.prot.exec,
    };
    let page = fault.addr.align_down(4096);
    let slot = table.walk(mem, page);
    if !allowed || slot.level != Level::Pte || F::decode(slot.raw, Level::Pte) != Decoded::None {
        return None;
    }
    let handle = crate::anon::anon_handle(table.root());
    let frame = frames.alloc_anon_page(handle, page.as_u64() >> 12)?;
    let leaf =
        Leaf { frame, size: PageSize::Size4K, prot: vma.prot.to_prot(user), dirty: write, young: true };
    let pte_table = PhysAddr::new(slot.pa.as_u64() & !0xfff);
    let mapped = locks.with_table_locked(pte_table, || {
        let empty = F::decode(mem.read_entry(slot.pa), Level::Pte) == Decoded::None;
        if empty {
            mem.write_entry(slot.pa, F::make_leaf(&leaf));
        }
        empty
    });
    if !mapped {
        // Another CPU filled the entry first: never mapped, never seen.
        frames.release_anon_page(frame);
        return None;
    }
    Some(FaultOutcome::Resolved)
}

/// Handles a fault at `fault.addr` in the address space whose tables are
/// `table` and areas `vmas`, for an access from kernel or user mode.
///
/// - Nothing mapped: in a 2 MiB block that lies in one huge-page eligible
///   area ([`VmaSet::thp_eligible`]) the system-wide switch allows
///   ([`FrameSource::thp_enabled`]) and has no PTE table yet, a write maps a
///   fresh huge folio with one PMD leaf and a read maps the huge zero
///   folio read-only ([`crate::thp`]); elsewhere, or when no 2 MiB block is
///   free (after a direct compaction, when the frame source's `defrag`
///   policy asks for one: [`FaultOutcome::NeedsCompaction`]), a demand-zero 4 KiB page (an order-0 anon folio from `frames`,
///   see [`crate::anon`]). A source that makes huge folios without the
///   lock gets [`FaultOutcome::NeedsHugeFolio`] first.
/// - A present leaf: on AArch64 the access flag and the software dirty
///   state (the CPU does not manage them without FEAT_HAFDBS); spurious
///   faults; a write to a write-protected anonymous leaf in a writable area
///   (after fork, or the huge zero folio): reuse or copy, by `wp_fault`
///   and [`huge_wp_fault`].
/// - A swap entry in a PTE: [`FaultOutcome::NeedsSwapIn`] (the caller
///   sleeps for the disk without the lock: [`crate::swap::swapin`]).
/// - A migration entry in a PTE or a PMD: [`FaultOutcome::MigrationWait`]
///   (the caller sleeps until the migration is over, without the lock,
///   and retries).
///
/// The caller holds the address space's lock (areas and tables do not
/// change under us). `hooks` must reach every CPU that may hold a
/// translation of this space: a copy replaces the page by break-before-make
/// and flushes between the two writes, and so does a PMD split.
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
    let prot = vma.prot.to_prot(user);
    let handle = crate::anon::anon_handle(table.root());
    let compact = frames.thp_defrag().and_then(|defrag| thp_fault_compaction(defrag, vma.thp));
    let at = At { table, mem, frames, hooks, page, prot, handle, compact };
    // Huge pages here at all: the switch allows the area's advice, and the
    // 2 MiB block fits in the area.
    let huge_ok = frames.thp_enabled().allows(vma.thp) && vmas.thp_eligible(fault.addr);
    let (level, entry) = table.lookup(mem, page);
    match entry {
        // Nothing there. No PTE table either (the walk stopped above the
        // PTE level) and the block is eligible: a huge page.
        Decoded::None if level != Level::Pte && huge_ok => {
            let block = fault.addr.align_down(HPAGE_SIZE);
            let huge = |frame: PhysAddr, writable: bool| Leaf {
                frame,
                size: PageSize::Size2M,
                prot: Prot { writable, ..prot },
                dirty: writable,
                young: true,
            };
            if !write {
                if let Some(zero) = frames.huge_zero() {
                    return match table.map(mem, block, huge(zero, false)) {
                        Ok(flush) => {
                            flush.ignore(); // nothing valid was there
                            FaultOutcome::MappedHugeZero
                        }
                        Err(e) => refused_by(e),
                    };
                }
            } else if frames.huge_outside_lock() {
                return FaultOutcome::NeedsHugeFolio { page };
            } else if let Some(frame) = frames.alloc_anon_huge(handle, block.as_u64() >> 12) {
                return match table.map(mem, block, huge(frame, true)) {
                    Ok(flush) => {
                        flush.ignore();
                        FaultOutcome::MappedHuge
                    }
                    Err(e) => {
                        frames.release_anon_huge(frame); // never seen by anyone
                        refused_by(e)
                    }
                };
            } else if let Some(request) = at.compact {
                return FaultOutcome::NeedsCompaction { page, request };
            }
            match at.demand_zero(write) {
                FaultOutcome::Resolved => FaultOutcome::HugeFallback,
                other => other,
            }
        }
        // Nothing there: demand-zero. A fresh zeroed anon folio, mapped
        // young, and dirty when the first access writes.
        Decoded::None => at.demand_zero(write),
        Decoded::Leaf(leaf) => {
            let mut fixed = Leaf { young: true, ..leaf };
            if write {
                if !leaf.prot.writable {
                    // Write-protected in an area that allows writes: copy
                    // on write or reuse.
                    return match level {
                        Level::Pte => at.wp_fault(leaf),
                        Level::Pmd => at.huge_wp_fault(leaf, huge_ok),
                        _ => FaultOutcome::Refused(Refused::Unsupported),
                    };
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
        Decoded::NonPresent(NonPresent::Swap { entry, .. }) if level == Level::Pte => {
            FaultOutcome::NeedsSwapIn { page, entry }
        }
        Decoded::NonPresent(NonPresent::Migration(m)) if matches!(level, Level::Pte | Level::Pmd) => {
            FaultOutcome::MigrationWait { page, pfn: m.pfn }
        }
        Decoded::NonPresent(_) | Decoded::Table(_) | Decoded::Bad(_) => {
            FaultOutcome::Refused(Refused::Unsupported)
        }
    }
}

/// What a failed table change means for the faulting task.
/// Before a reuse makes a leaf of `folio` writable: a folio in the swap
/// cache (a clean copy kept by a read fault's swap-in,
/// [`crate::swap::swapin`]) becomes `Dirty`, so that reclaim writes it
/// again rather than trusting the copy on disk, whatever becomes of the
/// leaf's own dirty bit (a fork's write-protect may lose the CPU's).
fn dirty_before_writable(folio: &Folio<'_>) {
    if folio.test_flag(PageFlag::SwapCache) {
        folio.set_flag(PageFlag::Dirty);
    }
}

fn refused_by(e: PgError) -> FaultOutcome {
    match e {
        PgError::OutOfMemory => FaultOutcome::OutOfMemory,
        _ => FaultOutcome::Refused(Refused::Unsupported),
    }
}

/// One fault being handled: the space's table and where it lives, the
/// frames, the flush that reaches every CPU, and the faulting page with the
/// rights its area gives and the space's anon handle. The caller holds the
/// space's lock for as long as it lives.
struct At<'a, F: PageTableFormat, M, S, H> {
    table: &'a PageTable<F>,
    mem: &'a M,
    frames: &'a S,
    hooks: &'a H,
    page: VirtAddr,
    prot: Prot,
    handle: AnonHandle,
    /// The direct compaction a THP write fault that finds no 2 MiB block
    /// asks for instead of falling back ([`FrameSource::thp_defrag`]).
    compact: Option<Request>,
}

impl<F: PageTableFormat, M: TableMemory, S: FrameSource, H: TlbHooks> At<'_, F, M, S, H> {
    /// Maps a fresh zeroed 4 KiB anonymous page at `page`, which nothing maps.
    fn demand_zero(&self, write: bool) -> FaultOutcome {
        let At { table, mem, frames, page, prot, handle, .. } = *self;
        let Some(frame) = frames.alloc_anon_page(handle, page.as_u64() >> 12) else {
            return FaultOutcome::OutOfMemory;
        };
        let leaf = Leaf { frame, size: PageSize::Size4K, prot, dirty: write, young: true };
        match table.map(mem, page, leaf) {
            Ok(flush) => {
                flush.ignore(); // nothing valid was mapped there
                FaultOutcome::Resolved
            }
            Err(e) => {
                // Never mapped, never seen by anyone: give it back whole.
                frames.release_anon_page(frame);
                refused_by(e)
            }
        }
    }

    /// A write fault on the write-protected anonymous 4 KiB leaf `leaf` at
    /// `page`, in an area whose leaves may have `prot` (writable). The caller
    /// holds the space's lock. mm-reference §8:
    ///
    /// - **reuse** when the page is `AnonExclusive` (only this space maps it:
    ///   a write-protected exclusive page is merely clean-and-protected), or
    ///   when it is an order-0 folio with mapcount 1 and refcount 1: this PTE
    ///   is the only user, and nobody can take a new reference or mapping
    ///   without this space's lock (fork) or a mapping (which would show in
    ///   the counts); the page is then marked exclusive. The leaf becomes
    ///   writable, dirty and young in place: access is only granted, no flush
    ///   is owed. (A page of a large folio is reused only when exclusive: its
    ///   refcount speaks for all its pages.)
    /// - **copy** otherwise: a new anonymous page of this space (`handle`)
    ///   gets the old page's bytes and replaces the leaf writable, dirty and
    ///   exclusive by break-before-make (`hooks` flush every CPU between the
    ///   clear and the new entry, so no CPU can read the old page after any
    ///   CPU wrote the new one); then the old page loses this mapping and,
    ///   the flush being over, its reference.
    fn wp_fault(&self, leaf: Leaf) -> FaultOutcome {
        let At { table, mem, frames, hooks, page, prot, handle, .. } = *self;
        let Some(folio) = folio_of(frames.memmap(), leaf.frame.pfn()) else {
            return FaultOutcome::Refused(Refused::Unsupported);
        };
        if !folio.test_flag(PageFlag::SwapBacked) {
            return FaultOutcome::Refused(Refused::Unsupported);
        }
        let i = folio.page_index_of(leaf.frame.pfn());
        let exclusive = folio.page(i).test_flag(PageFlag::AnonExclusive)
            || (!folio.is_large() && folio.page_mapcount(0) == 1 && folio.refcount() == 1 && {
                folio.set_flag(PageFlag::AnonExclusive);
                true
            });
        if exclusive {
            dirty_before_writable(&folio);
            let fixed = Leaf { prot, dirty: true, young: true, ..leaf };
            return match table.update_leaf(mem, page, Level::Pte, fixed) {
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

    /// A write fault on the write-protected 2 MiB leaf `leaf` covering `page`
    /// (copy on write of a PMD-mapped huge page, mm-reference §4 and §8):
    ///
    /// - **the huge zero folio**: a fresh huge folio replaces it by
    ///   break-before-make when the block is still huge-page `eligible`
    ///   (`MADV_NOHUGEPAGE` may have come since the read); otherwise, or with
    ///   no 2 MiB block free (and no direct compaction to ask for first:
    ///   [`FaultOutcome::NeedsCompaction`]), the zero PMD is split (cleared) and the faulting
    ///   page gets a 4 KiB zero page;
    /// - **reuse** when the folio is exclusive (`AnonExclusive` on the head),
    ///   or this PMD is its only mapping and reference: the PMD becomes
    ///   writable, dirty and young in place;
    /// - **otherwise** the PMD is split into 512 read-only PTEs of the same
    ///   folio (the other side keeps its PMD), and the faulting 4 KiB page is
    ///   copied as any shared page (`wp_fault`); the other 511 stay shared
    ///   until written.
    fn huge_wp_fault(&self, leaf: Leaf, eligible: bool) -> FaultOutcome {
        let At { table, mem, frames, hooks, page, prot, handle, .. } = *self;
        let memmap = frames.memmap();
        let block = page.align_down(HPAGE_SIZE);
        if is_huge_zero(memmap, &leaf) {
            if eligible && frames.huge_outside_lock() {
                return FaultOutcome::NeedsHugeFolio { page };
            }
            let fresh = if eligible { frames.alloc_anon_huge(handle, block.as_u64() >> 12) } else { None };
            if let Some(frame) = fresh {
                let new = Leaf { frame, size: PageSize::Size2M, prot, dirty: true, young: true };
                return match table.remap(mem, hooks, block, new) {
                    // The zero folio's mappings are not counted: nothing to drop.
                    Ok(_) => FaultOutcome::MappedHuge,
                    Err(e) => {
                        frames.release_anon_huge(frame);
                        refused_by(e)
                    }
                };
            }
            if let (true, Some(request)) = (eligible, self.compact) {
                return FaultOutcome::NeedsCompaction { page, request };
            }
            if let Err(e) = split_huge_pmd(table, mem, hooks, memmap, block) {
                return refused_by(e);
            }
            return match self.demand_zero(true) {
                FaultOutcome::Resolved => FaultOutcome::HugeFallback,
                other => other,
            };
        }
        let Some(folio) = folio_of(memmap, leaf.frame.pfn()) else {
            return FaultOutcome::Refused(Refused::Unsupported);
        };
        if !folio.test_flag(PageFlag::SwapBacked) {
            return FaultOutcome::Refused(Refused::Unsupported);
        }
        let sole = || folio.entire_mapcount() == 1 && folio.total_mapcount() == 1 && folio.refcount() == 1;
        if folio.page(0).test_flag(PageFlag::AnonExclusive) || sole() {
            folio.set_flag(PageFlag::AnonExclusive);
            dirty_before_writable(&folio);
            let fixed = Leaf { prot, dirty: true, young: true, ..leaf };
            return match table.update_leaf(mem, block, Level::Pmd, fixed) {
                Ok(flush) => {
                    flush.ignore(); // access granted only
                    FaultOutcome::Reused
                }
                Err(e) => refused_by(e),
            };
        }
        if let Err(e) = split_huge_pmd(table, mem, hooks, memmap, block) {
            return refused_by(e);
        }
        match table.lookup(mem, page) {
            (Level::Pte, Decoded::Leaf(small)) => self.wp_fault(small),
            _ => FaultOutcome::Refused(Refused::Unsupported),
        }
    }
}
