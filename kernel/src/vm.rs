//! Address spaces in the running kernel: areas (`mm::vma`), the page table
//! of this arch's format, and the handler of the faults tasks take in them.
//!
//! ## Protocol
//!
//! - An [`AddressSpace`] is shared (`Arc`) by the tasks that run in it.
//!   Its lock (an [`IrqSpinLock`]: the fault handler takes it with
//!   interrupts off) guards the areas and the page table. Lock order:
//!   address-space lock, then the frame allocator's lock (a leaf).
//! - Faults: the arch trap handler offers every fault no probe claimed to
//!   [`on_fault`]. A fault in the lower half, taken by a task that runs in
//!   an address space, is handled by `mm::fault::handle_fault` under the
//!   lock; when the access is refused (no area, not allowed) or memory is
//!   out, the task is ended with a message ([`crate::sched::kill_current`])
//!   and the kernel goes on.
//! - Every anonymous page is an order-0 folio (`mm::anon`): mapcount 1 and
//!   the mapping's reference while a PTE maps it.
//! - Unmapping clears the PTEs and drops each page's mapcount under the
//!   lock (so the counts agree with the tables for [`AddressSpace::check`]),
//!   releases it, shoots the range down on every CPU
//!   (`crate::tlb::Shootdown`, which needs interrupts on), and only then
//!   drops the mappings' references, freeing the folios: until every stale
//!   translation is gone, another CPU may still use them.
//! - Spaces are found from a task by their root ([`SPACES`]).
//!
//! ## Copy on write and fork
//!
//! [`AddressSpace::fork`] makes a child that maps the parent's anonymous
//! pages read-only on both sides: under the parent's lock each present
//! leaf is write-protected in the parent (dirty and young kept), its page
//! loses `AnonExclusive` (it is shared now), and the child maps the same
//! frame read-only, with one more mapcount and reference. A page that may
//! be pinned (`Folio::maybe_pinned`) is not shared: the child gets a copy
//! at once and the parent keeps its page exclusive and writable
//! (mm-reference §8). The parent's range is shot down before the lock is
//! dropped, so when `fork` returns no CPU writes a shared page.
//!
//! A later write fault on such a page (`mm::fault::handle_fault`) reuses
//! it when it is exclusive, or has mapcount 1 and refcount 1 (the other
//! side unmapped it), and copies it otherwise. The copy replaces the
//! entry by break-before-make, and the flush between the clear and the new
//! entry must reach every CPU that may run the space: a CPU keeping the old
//! read-only translation would read the old page after this CPU wrote the
//! new one. So the fault handler is given [`Shootdown`], and runs it inside
//! the trap, with interrupts off and the space's lock held. That is safe
//! because every spin that may wait for a shootdown initiator serves its
//! own CPU's flush requests while spinning (`crate::tlb`'s module doc): the
//! shootdown's own waits and the address-space lock
//! ([`IrqSpinLock::lock_polling`]). On AArch64 the broadcast TLBI needs no
//! help from the other CPUs at all.
//!
//! Spaces made by fork form a family ([`Family`]): they may map the same
//! folios, so [`AddressSpace::check`] checks the whole family at once
//! (every member's lock, taken in root order), with `mm::debug::check_spaces`.
//! Lock order between spaces: a parent's lock before its child's
//! (fork, the child not yet published), several members in increasing root
//! order (check); nothing else holds two.

use crate::arch;
use crate::memory;
use crate::paging::{Format, KernelTables, KERNEL_SHARED};
use crate::sched;
use crate::sync::{IrqGuard, IrqSpinLock};
use crate::tlb::Shootdown;
use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use mm::debug::Stats;
use mm::fault::{FaultOutcome, FrameSource, MemFault};
use mm::folio::Folio;
use mm::gup::Hold;
use mm::pgtable::{Flush, Level, PageTable};
use mm::space::Gather;
use mm::vma::{ThpMode, VmaError, VmaKind, VmaProt, VmaSet};
use mm::{PhysAddr, VirtAddr};

/// The lowest address an area may use (page 0 stays unmapped: null
/// pointers fault).
pub const USER_START: u64 = 0x1000;
/// One past the highest user address (the lower half).
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Anonymous pages: order-0 folios from the buddy allocator, zeroed.
struct KernelFrames;

impl FrameSource for KernelFrames {
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        memory::alloc_anon_page(handle, index)
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        let folio = mm::anon::remove_pte_mapping(memory::frame_allocator().memmap(), pa);
        memory::put_anon_folio(folio);
    }
    fn alloc_anon_huge(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        memory::alloc_anon_huge(handle, index)
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        let folio = mm::thp::remove_pmd_mapping(memory::frame_allocator().memmap(), pa);
        memory::put_anon_folio(folio);
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        memory::huge_zero()
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        memory::copy_page(dst, src);
    }
    fn memmap(&self) -> &mm::page::Memmap {
        memory::frame_allocator().memmap()
    }
    fn swap_dup(&self, entry: mm::pgtable::SwapEntry) -> Result<(), String> {
        crate::swap::dup_entry(entry)
    }
}

/// The spaces that may map the same folios: a space and everything forked
/// from it, transitively.
pub struct Family {
    /// The live members.
    members: IrqSpinLock<Vec<Weak<AddressSpace>>>,
    /// The anon handle of every member there ever was (a child keeps
    /// mapping folios its gone parent made).
    handles: IrqSpinLock<Vec<u64>>,
}

struct Inner {
    table: PageTable<Format>,
    vmas: VmaSet,
}

/// An address space: areas and the page table that maps them.
pub struct AddressSpace {
    root: PhysAddr,
    inner: IrqSpinLock<Option<Inner>>,
    /// Faults resolved in this space (demand-zero, young/dirty, spurious,
    /// copy on write).
    nr_faults: core::sync::atomic::AtomicU64,
    /// Write faults that copied a shared page.
    nr_cow_copies: core::sync::atomic::AtomicU64,
    /// Write faults that reused a write-protected page.
    nr_cow_reuses: core::sync::atomic::AtomicU64,
    /// Faults that mapped a fresh 2 MiB folio.
    nr_thp_faults: core::sync::atomic::AtomicU64,
    /// Read faults that mapped the huge zero folio.
    nr_thp_zero: core::sync::atomic::AtomicU64,
    /// Faults in huge-page ranges that had to map 4 KiB pages.
    nr_thp_fallbacks: core::sync::atomic::AtomicU64,
    /// Faults that brought a page back from swap.
    nr_swapins: core::sync::atomic::AtomicU64,
    family: Arc<Family>,
}

/// Every fork family there is, to find the spaces that may map a folio
/// from its anon handle (reclaim's reverse map). Dead families are pruned
/// when a new one registers.
static FAMILIES: IrqSpinLock<Vec<Weak<Family>>> = IrqSpinLock::new(Vec::new());

/// Every family one of whose members (live or gone) had the anon handle
/// `handle`. Usually one; more when the root frame behind the handle was
/// freed by a dead space and reused by a new one, while a fork child of the
/// dead space still maps folios it made.
fn families_of_handle(handle: u64) -> Vec<Arc<Family>> {
    let families: Vec<Arc<Family>> = FAMILIES.lock().iter().filter_map(Weak::upgrade).collect();
    families.into_iter().filter(|f| f.handles.lock().contains(&handle)).collect()
}

impl Drop for Family {
    fn drop(&mut self) {
        // Our strong count is 0 now: prune our `Weak` (and any other dead
        // one), so the allocation goes with us.
        FAMILIES.lock().retain(|f| f.strong_count() > 0);
    }
}

impl Family {
    /// Runs `f` over every live member, each `(root, areas and table)`, in
    /// root order, with all their locks held (taken in root order: the
    /// module doc's lock order). A fork that registers a member while we
    /// lock did it under a lock we then hold, so after locking the member
    /// list is read again, and everything is retried if it changed.
    /// Members already torn down are left out.
    fn with_locked<R>(&self, f: impl FnOnce(&[(PhysAddr, &Inner)]) -> R) -> R {
        with_families_locked(&[self], f)
    }
}

/// [`Family::with_locked`] over the live members of several families at
/// once (all their locks, in root order).
fn with_families_locked<R>(families: &[&Family], f: impl FnOnce(&[(PhysAddr, &Inner)]) -> R) -> R {
    {
        let mut f = Some(f);
        let live = || -> Vec<Arc<AddressSpace>> {
            let mut v: Vec<_> = families
                .iter()
                .flat_map(|fam| fam.members.lock().iter().filter_map(Weak::upgrade).collect::<Vec<_>>())
                .collect();
            v.sort_by_key(|s| s.root.as_u64());
            v.dedup_by_key(|s| s.root.as_u64());
            v
        };
        loop {
            let members = live();
            let mut guards: Vec<IrqGuard<'_, Option<Inner>>> = members.iter().map(|m| m.lock()).collect();
            let again = live();
            let same =
                again.len() == members.len() && again.iter().zip(&members).all(|(a, b)| a.root == b.root);
            let result = same.then(|| {
                let locked: Vec<(PhysAddr, &Inner)> = members
                    .iter()
                    .zip(&guards)
                    .filter_map(|(m, g)| g.as_ref().map(|inner| (m.root, inner)))
                    .collect();
                let f = f.take().expect("the family is locked and `f` run only once");
                f(&locked)
            });
            // Release in reverse order: each guard restores the interrupt
            // state from before its lock.
            while let Some(g) = guards.pop() {
                drop(g);
            }
            if let Some(r) = result {
                return r;
            }
        }
    }
}

/// Every live address space, by root, for the fault handler. A list (few
/// spaces exist at once) whose room is reserved at [`init`], so making a
/// space does not allocate here in the common case.
static SPACES: IrqSpinLock<Vec<(u64, Weak<AddressSpace>)>> = IrqSpinLock::new(Vec::new());
/// Spaces the registry holds without growing.
const RESERVED_SPACES: usize = 64;

fn find_space(root: PhysAddr) -> Option<Arc<AddressSpace>> {
    SPACES.lock().iter().find(|(r, _)| *r == root.as_u64()).and_then(|(_, w)| w.upgrade())
}

impl AddressSpace {
    /// A new, empty address space.
    pub fn new() -> Result<Arc<AddressSpace>, String> {
        let table = Self::new_table()?;
        let vmas = VmaSet::new(VirtAddr::new(USER_START), VirtAddr::new(USER_END));
        let family =
            Arc::new(Family { members: IrqSpinLock::new(Vec::new()), handles: IrqSpinLock::new(Vec::new()) });
        {
            let mut families = FAMILIES.lock();
            families.retain(|f| f.strong_count() > 0);
            families.push(Arc::downgrade(&family));
        }
        Ok(Self::publish(Inner { table, vmas }, family))
    }

    /// A new empty page table for a space.
    fn new_table() -> Result<PageTable<Format>, String> {
        #[cfg(target_arch = "x86_64")]
        let table = PageTable::new_sharing(&KernelTables, memory::kernel_root(), KERNEL_SHARED);
        #[cfg(target_arch = "aarch64")]
        let table = PageTable::new(&KernelTables);
        table.map_err(|e| format!("new page table: {e}"))
    }

    /// Makes `inner` a space of `family`, findable by the fault handler.
    fn publish(inner: Inner, family: Arc<Family>) -> Arc<AddressSpace> {
        let root = inner.table.root();
        let space = Arc::new(AddressSpace {
            root,
            inner: IrqSpinLock::new(Some(inner)),
            nr_faults: core::sync::atomic::AtomicU64::new(0),
            nr_cow_copies: core::sync::atomic::AtomicU64::new(0),
            nr_cow_reuses: core::sync::atomic::AtomicU64::new(0),
            nr_thp_faults: core::sync::atomic::AtomicU64::new(0),
            nr_thp_zero: core::sync::atomic::AtomicU64::new(0),
            nr_thp_fallbacks: core::sync::atomic::AtomicU64::new(0),
            nr_swapins: core::sync::atomic::AtomicU64::new(0),
            family: family.clone(),
        });
        family.handles.lock().push(mm::anon::anon_handle(root));
        family.members.lock().push(Arc::downgrade(&space));
        SPACES.lock().push((root.as_u64(), Arc::downgrade(&space)));
        space
    }

    /// Takes this space's lock, serving TLB flush requests while spinning
    /// (its holder may be running a shootdown: see the module doc).
    fn lock(&self) -> IrqGuard<'_, Option<Inner>> {
        self.inner.lock_polling(crate::tlb::handle_ipi)
    }

    /// Write faults that copied a shared page (copy on write).
    pub fn nr_cow_copies(&self) -> u64 {
        self.nr_cow_copies.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Write faults that reused a write-protected page in place.
    pub fn nr_cow_reuses(&self) -> u64 {
        self.nr_cow_reuses.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Faults that mapped a fresh 2 MiB folio with a PMD leaf.
    pub fn nr_thp_faults(&self) -> u64 {
        self.nr_thp_faults.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Read faults that mapped the huge zero folio.
    pub fn nr_thp_zero(&self) -> u64 {
        self.nr_thp_zero.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Faults that brought a page back from swap.
    pub fn nr_swapins(&self) -> u64 {
        self.nr_swapins.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Faults in huge-page eligible ranges that fell back to 4 KiB (no free
    /// 2 MiB block).
    pub fn nr_thp_fallbacks(&self) -> u64 {
        self.nr_thp_fallbacks.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// A copy of this space for a child (see the module doc): the same
    /// areas; every anonymous page shared read-only by both sides (copy
    /// on write), except pages that may be pinned, which the child gets a
    /// copy of at once. Fails (leaving the parent as it was, give or take
    /// write protection) when memory runs out.
    pub fn fork(&self) -> Result<Arc<AddressSpace>, String> {
        let table = Self::new_table()?;
        let mut guard = self.lock();
        let parent = guard.as_mut().ok_or("fork: address space torn down")?;
        let child_handle = mm::anon::anon_handle(table.root());
        let child = Inner { table, vmas: parent.vmas.clone() };
        let mut flush = Flush::none(self.root);
        let result = mm::space::fork_range(
            &parent.table,
            &child.table,
            &KernelTables,
            &KernelFrames,
            child_handle,
            VirtAddr::new(0),
            VirtAddr::new(USER_END),
            &mut flush,
        );
        // Every CPU drops its writable translations of the shared pages
        // before anyone (either side) runs on: interrupts may be off here
        // (see the module doc).
        flush.flush(&Shootdown);
        let child = Self::publish(child, self.family.clone());
        drop(guard);
        match result {
            Ok(()) => Ok(child),
            // Dropping `child` gives back what it mapped.
            Err(e) => Err(format!("fork: {e:?}")),
        }
    }

    /// The page table's root.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Faults resolved so far.
    pub fn nr_faults(&self) -> u64 {
        self.nr_faults.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Takes a hold (`mm::gup`: a plain reference or a pin) on each of the
    /// `pages` pages from `start`, mapping them first as a fault would (and
    /// for `write`, making them writable and dirty; for a pin, exclusive).
    /// Returns their physical addresses; release them with
    /// [`release_user_pages`]. All or nothing: on an error the holds
    /// already taken are released and the message names the page.
    pub fn get_user_pages(
        self: &Arc<Self>,
        start: VirtAddr,
        pages: usize,
        write: bool,
        hold: Hold,
    ) -> Result<Vec<PhysAddr>, String> {
        let mut held = Vec::with_capacity(pages);
        let mut error = None;
        let mut i = 0u64;
        while i < pages as u64 && error.is_none() {
            let va = VirtAddr::new(start.as_u64() + i * 4096);
            let got = {
                let guard = self.lock();
                let Some(inner) = guard.as_ref() else {
                    error = Some(String::from("get_user_pages: address space torn down"));
                    break;
                };
                mm::gup::get_user_page(
                    &inner.table,
                    &inner.vmas,
                    &KernelTables,
                    &KernelFrames,
                    &Shootdown,
                    va,
                    write,
                    hold,
                )
            };
            match got {
                Ok(pa) => {
                    held.push(pa);
                    i += 1;
                }
                // In swap: bring it back without the lock, then try again.
                Err(mm::gup::GupError::Fault(FaultOutcome::NeedsSwapIn { page, entry })) => {
                    let access = if write { mm::fault::Access::Write } else { mm::fault::Access::Read };
                    if let Err(e) = swap_in(self, access, page, entry) {
                        error = Some(format!("get_user_pages: {va}: {e}"));
                    }
                }
                Err(e) => error = Some(format!("get_user_pages: {va}: {e:?}")),
            }
        }
        match error {
            None => Ok(held),
            Some(e) => {
                release_user_pages(&held, hold);
                Err(e)
            }
        }
    }

    /// The mappings of the anonymous folio mapped at `va`, over this
    /// space's whole fork family (`mm::rmap`): `(space root, address,
    /// level)` each, found under every member's lock.
    pub fn rmap_of(&self, va: VirtAddr) -> Result<Vec<(PhysAddr, VirtAddr, Level)>, String> {
        let memmap = memory::frame_allocator().memmap();
        self.with_family_locked(|members| {
            let inner = members
                .iter()
                .find(|(root, _)| *root == self.root)
                .map(|(_, inner)| inner)
                .ok_or("rmap_of: address space torn down")?;
            let pa =
                inner.table.translate(&KernelTables, va).ok_or(format!("rmap_of: {va} is not mapped"))?;
            let folio =
                mm::folio::folio_of(memmap, pa.pfn()).ok_or(format!("rmap_of: {pa} is not a folio"))?;
            let tables: Vec<&PageTable<Format>> = members.iter().map(|(_, inner)| &inner.table).collect();
            let mut found = Vec::new();
            mm::rmap::rmap_walk(&folio, &tables, &KernelTables, &mut |m| {
                found.push((members[m.space].0, m.va, m.level))
            });
            Ok(found)
        })
    }

    /// The swap entry a PTE at `va` holds, if any (for tests).
    pub fn swap_entry_at(&self, va: VirtAddr) -> Option<mm::pgtable::SwapEntry> {
        let guard = self.lock();
        match guard.as_ref()?.table.lookup(&KernelTables, va) {
            (Level::Pte, mm::pgtable::Decoded::NonPresent(mm::pgtable::NonPresent::Swap { entry, .. })) => {
                Some(entry)
            }
            _ => None,
        }
    }

    /// The folio mapped at `va`: its head PFN, its order and whether it is
    /// in the swap cache (for tests).
    pub fn folio_at(&self, va: VirtAddr) -> Result<(u64, u8, bool), String> {
        let guard = self.lock();
        let inner = guard.as_ref().ok_or("folio_at: torn down")?;
        let pa = inner.table.translate(&KernelTables, va).ok_or(format!("folio_at: {va} is not mapped"))?;
        let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pa.pfn())
            .ok_or(format!("folio_at: {pa} is not a folio"))?;
        Ok((folio.pfn(), folio.order(), folio.test_flag(mm::page::PageFlag::SwapCache)))
    }

    /// The page-table dump (`mm::ptdump`) of `[start, end)`: one line per
    /// run of like entries, e.g. `PMD 2M x1 rw- u D A -> ...` for a huge page.
    pub fn dump(&self, start: VirtAddr, end: VirtAddr) -> String {
        let guard = self.lock();
        let mut out = String::new();
        if let Some(inner) = guard.as_ref() {
            let _ = mm::ptdump::dump(&inner.table, &KernelTables, start, end, &mut out);
        }
        out
    }

    /// Maps `len` bytes of anonymous memory anywhere, aligned to `align`.
    pub fn mmap(&self, len: u64, align: u64, prot: VmaProt) -> Result<VirtAddr, VmaError> {
        let mut guard = self.lock();
        let inner = guard.as_mut().expect("AddressSpace used after teardown");
        inner.vmas.map_anywhere(len, align, prot, VmaKind::Anonymous)
    }

    /// Unmaps `[start, start + len)`: areas, page-table entries and the
    /// folios they mapped (freed after the shootdown). A 2 MiB page cut by
    /// the range is split first; its unmapped part is freed when this space
    /// was its only user (`mm::space`).
    pub fn munmap(&self, start: VirtAddr, len: u64) -> Result<(), VmaError> {
        let mut gather = Gather::new(self.root);
        {
            let mut guard = self.lock();
            let inner = guard.as_mut().expect("AddressSpace used after teardown");
            let ranges = inner.vmas.unmap(start, len)?;
            for (s, e) in ranges {
                zap(inner, s, e, &mut gather);
            }
        }
        finish_gather(gather);
        Ok(())
    }

    /// Changes the rights of `[start, start + len)` (mprotect): areas, then
    /// every leaf there. Rights taken away are shot down before it returns;
    /// write is never granted to an existing leaf (the next write faults and
    /// reuses or copies: `mm::space`).
    pub fn mprotect(&self, start: VirtAddr, len: u64, prot: VmaProt) -> Result<(), VmaError> {
        let mut flush = Flush::none(self.root);
        {
            let mut guard = self.lock();
            let inner = guard.as_mut().expect("AddressSpace used after teardown");
            if !(prot.read || prot.write || prot.exec) {
                let end = VirtAddr::new(start.as_u64().saturating_add(len));
                let mut mapped = false;
                inner.table.visit(&KernelTables, start, end, &mut |_, _, _, _| mapped = true);
                if mapped {
                    return Err(VmaError::ProtNoneOverMappedPages);
                }
            }
            let ranges = inner.vmas.protect(start, len, prot)?;
            for (s, e) in ranges {
                match mm::space::protect_range(
                    &inner.table,
                    &KernelTables,
                    &Shootdown,
                    memory::frame_allocator().memmap(),
                    s,
                    e,
                    prot.to_prot(true),
                ) {
                    Ok(f) => flush = flush.merge(f),
                    // Only a table for a split can fail (out of memory):
                    // the leaves keep their old rights, which the area
                    // still allows where they are less.
                    Err(e) => crate::println!("mprotect: {e}"),
                }
            }
            // Rights taken away must be gone everywhere before we return.
            flush.flush(&Shootdown);
        }
        Ok(())
    }

    /// `madvise` over `[start, start + len)`, which must be mapped:
    /// `DontNeed` drops the pages (the next touch reads zeros), `HugePage`
    /// and `NoHugePage` set the areas' huge-page mode (pages already mapped
    /// stay as they are; a 2 MiB page cut by the range is split, so that it
    /// lies in one area).
    pub fn madvise(&self, start: VirtAddr, len: u64, advice: Advice) -> Result<(), VmaError> {
        let mut gather = Gather::new(self.root);
        let mut pageout = Vec::new();
        {
            let mut guard = self.lock();
            let inner = guard.as_mut().expect("AddressSpace used after teardown");
            match advice {
                Advice::DontNeed => {
                    let end = inner.vmas.check_mapped(start, len)?;
                    zap(inner, start, end, &mut gather);
                }
                Advice::PageOut => {
                    let end = inner.vmas.check_mapped(start, len)?;
                    pageout = pageout_candidates(inner, start, end);
                }
                Advice::HugePage | Advice::NoHugePage => {
                    let mode = if advice == Advice::HugePage { ThpMode::Always } else { ThpMode::Never };
                    inner.vmas.advise_thp(start, len, mode)?;
                    let end = VirtAddr::new(start.as_u64() + len);
                    for at in [start, end] {
                        // A new area boundary inside a 2 MiB leaf.
                        if inner.vmas.is_boundary(at) {
                            let memmap = memory::frame_allocator().memmap();
                            if let Err(e) = mm::thp::split_huge_pmd_if_cut(
                                &inner.table,
                                &KernelTables,
                                &Shootdown,
                                memmap,
                                at,
                            ) {
                                crate::println!("madvise: split at {at}: {e}");
                            }
                        }
                    }
                }
            }
        }
        finish_gather(gather);
        // Outside the lock: writing sleeps, and unmapping takes the
        // family's locks.
        crate::reclaim::pageout(pageout);
        Ok(())
    }

    /// Runs the consistency checker (`mm::debug::check_spaces`) over this
    /// space and every live space of its fork family, under all their locks
    /// (taken in root order), and returns this space's statistics. Exact
    /// while no member of the family is being dropped at the same time.
    pub fn check(&self) -> Result<Stats, String> {
        let memmap = memory::frame_allocator().memmap();
        self.with_family_locked(|members| {
            let mine = members.iter().position(|(root, _)| *root == self.root);
            let spaces: Vec<_> = members.iter().map(|(_, inner)| (&inner.table, &inner.vmas)).collect();
            let handles = self.family.handles.lock().clone();
            let count_of = |e: mm::pgtable::SwapEntry| crate::swap::count_of(e);
            let checked =
                mm::debug::check_spaces_with_swap(&spaces, &KernelTables, &handles, memmap, Some(&count_of));
            match (mine, checked) {
                (Some(i), Ok(stats)) => Ok(stats[i]),
                (None, _) => Err(String::from("check: address space torn down")),
                (_, Err(e)) => Err(format!("address space {} (family of {}): {e}", self.root, spaces.len())),
            }
        })
    }

    /// Runs `f` over every live member of this space's fork family with
    /// all their locks held ([`Family::with_locked`]).
    fn with_family_locked<R>(&self, f: impl FnOnce(&[(PhysAddr, &Inner)]) -> R) -> R {
        self.family.with_locked(f)
    }

    /// Starts a task that runs `f` in this space (see `sched::spawn_in`:
    /// if the kernel ends the task for a bad access, nothing leaks).
    pub fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        cpu: Option<usize>,
        name: &'static str,
        f: impl Fn() -> T + Send + 'static,
    ) -> Result<sched::JoinHandle<T>, String> {
        let keep: Arc<dyn core::any::Any + Send + Sync> = self.clone();
        sched::spawn_in(cpu, self.root, keep, name, f).map_err(|e| format!("spawn: {e:?}"))
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        SPACES.lock().retain(|(r, _)| *r != self.root.as_u64());
        self.family.members.lock().retain(|w| w.strong_count() > 0);
        // No task runs in the space any more (each held an `Arc`), and
        // every CPU that ran one switched away (loading another root), so
        // nothing caches its translations: drop the folios' mappings (the
        // entries go with the tables; the mapcounts under the lock), then
        // the tables.
        let mut gather = Gather::new(self.root);
        let inner = {
            let mut guard = self.lock();
            let Some(mut inner) = guard.take() else { return };
            zap(&mut inner, VirtAddr::new(0), VirtAddr::new(USER_END), &mut gather);
            inner
        };
        // Nothing to flush (see above); the references go now.
        gather.take_flush().ignore();
        for entry in gather.take_swap_entries() {
            crate::swap::free_entry(entry);
        }
        let memmap = memory::frame_allocator().memmap();
        gather.release_unmapped(memmap, &mut crate::swap::drop_unmapped_cache_folio, &mut |f| {
            memory::free_folio(f)
        });
        inner.table.destroy(&KernelTables, KERNEL_SHARED);
    }
}

/// Reclaim's unmap (`crate::reclaim`): replaces every mapping of the
/// locked `folio`, which is in `area`'s swap cache, by swap entries, over
/// the whole fork family that may map it, with every member's lock held
/// (`mm::swap::unmap`); shoots the old translations down, then drops the
/// mappings' references (the caller's and the cache's keep the folio).
pub fn unmap_folio_to_swap(folio: &Folio<'static>, area: &mm::swap::area::SwapArea) -> Result<(), String> {
    let families = families_of_handle(folio.mapping());
    if families.is_empty() {
        return if folio.total_mapcount() == 0 { Ok(()) } else { Err(String::from("no family maps it")) };
    }
    let families: Vec<&Family> = families.iter().map(|f| &**f).collect();
    let memmap = memory::frame_allocator().memmap();
    let refs = with_families_locked(&families, |members| {
        let tables: Vec<&PageTable<Format>> = members.iter().map(|(_, inner)| &inner.table).collect();
        let done = mm::swap::unmap::unmap_to_swap(&tables, &KernelTables, &Shootdown, memmap, folio, area)
            .map_err(|e| format!("{e}"))?;
        for flush in done.flushes {
            flush.flush(&Shootdown);
        }
        Ok::<usize, String>(done.refs)
    })?;
    for _ in 0..refs {
        let last = folio.put();
        debug_assert!(!last, "unmap_folio_to_swap: the caller's reference keeps the folio");
    }
    Ok(())
}

/// Reclaim's split (`crate::reclaim`): splits the locked, isolated huge
/// folio `folio` (the caller's one reference) into order-0 folios because
/// no run of 512 swap slots is free for it (`mm::thp::split_isolated_folio`,
/// with the lock of every space of its fork family held; it must be mapped
/// by one of them only). Returns the other pieces still mapped, each
/// isolated with a reference for the caller; the caller keeps page 0.
pub fn split_isolated_folio(folio: &Folio<'static>) -> Result<Vec<Folio<'static>>, String> {
    let families = families_of_handle(folio.mapping());
    let families: Vec<&Family> = families.iter().map(|f| &**f).collect();
    let memmap = memory::frame_allocator().memmap();
    with_families_locked(&families, |members| {
        // The member whose table maps the folio (the reverse map's walk).
        let maps = |inner: &Inner| {
            let mut found = false;
            mm::rmap::rmap_walk(folio, &[&inner.table], &KernelTables, &mut |_| found = true);
            found
        };
        let mut mapping = members.iter().filter(|(_, inner)| maps(inner));
        let (Some((_, inner)), None) = (mapping.next(), mapping.next()) else {
            return Err(String::from("mapped by no space or by several"));
        };
        mm::thp::split_isolated_folio(&inner.table, &KernelTables, &Shootdown, memmap, *folio, &mut |f| {
            memory::free_folio(f)
        })
        .map_err(|e| format!("{e:?}"))
    })
}

/// swapoff's walk (`crate::swap::swapoff`): brings back every page of
/// every live space that sits in the swap area of type `ty`, as faults
/// would (one page at a time, sleeping for the disk without any lock).
/// Returns how many were brought back, or why one could not be.
pub fn swap_in_all(ty: u8) -> Result<u64, String> {
    let spaces: Vec<Arc<AddressSpace>> = SPACES.lock().iter().filter_map(|(_, w)| w.upgrade()).collect();
    let mut done = 0;
    for space in spaces {
        loop {
            // A few entries at a time: the table may change between walks.
            let mut found = Vec::new();
            {
                let guard = space.lock();
                let Some(inner) = guard.as_ref() else { break };
                inner.table.visit(
                    &KernelTables,
                    VirtAddr::new(0),
                    VirtAddr::new(USER_END),
                    &mut |va, _, e, _| {
                        if let mm::pgtable::Decoded::NonPresent(mm::pgtable::NonPresent::Swap {
                            entry, ..
                        }) = e
                        {
                            if entry.ty() == ty && found.len() < 64 {
                                found.push((va, entry));
                            }
                        }
                    },
                );
            }
            if found.is_empty() {
                break;
            }
            for (va, entry) in found {
                swap_in(&space, mm::fault::Access::Read, va, entry)
                    .map_err(|e| format!("swapoff: {} {va}: {e}", space.root))?;
                done += 1;
            }
        }
    }
    Ok(done)
}

/// Releases holds taken by [`AddressSpace::get_user_pages`] (no lock
/// needed; a folio whose last reference that was is freed).
pub fn release_user_pages(pages: &[PhysAddr], hold: Hold) {
    let memmap = memory::frame_allocator().memmap();
    for &pa in pages {
        if let Some(folio) = mm::gup::release(memmap, pa, hold) {
            memory::free_folio(folio);
        }
    }
}

/// `madvise` advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// `MADV_DONTNEED`: drop the pages; the range reads zeros afterwards.
    DontNeed,
    /// `MADV_HUGEPAGE`: back the range with 2 MiB pages where they fit.
    HugePage,
    /// `MADV_NOHUGEPAGE`: only 4 KiB pages in the range.
    NoHugePage,
    /// `MADV_PAGEOUT`: write the range's anonymous pages to swap and free
    /// them now. A huge folio the range cuts is split first and only its
    /// pages inside go; pages shared with a fork relative, pinned pages,
    /// and a huge folio that cannot be split (reclaim holds it, it is
    /// shared or referenced) stay.
    PageOut,
}

/// The folios `MADV_PAGEOUT` over `[start, end)` pages out, with a
/// reference each (`mm::pageout`): large folios the range cuts are split
/// first when they can be (never one that reclaim has isolated, seed 002),
/// then every anonymous folio wholly inside the range and mapped by this
/// space alone is taken. The caller holds the lock.
fn pageout_candidates(inner: &Inner, start: VirtAddr, end: VirtAddr) -> Vec<Folio<'static>> {
    let memmap = memory::frame_allocator().memmap();
    let found = mm::pageout::pageout_candidates(
        &inner.table,
        &KernelTables,
        &Shootdown,
        memmap,
        start,
        end,
        &mut |f| memory::free_folio(f),
    );
    PAGEOUT_SPLITS.fetch_add(found.nr_split as u64, core::sync::atomic::Ordering::Relaxed);
    found.folios
}

/// Large folios `MADV_PAGEOUT` split because the range cut them.
pub static PAGEOUT_SPLITS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Unmaps every entry of `inner` in `[start, end)` into `gather` (the
/// caller holds the lock). A split that needs a table and finds no memory
/// is reported; the entries it could not reach stay mapped.
fn zap(inner: &mut Inner, start: VirtAddr, end: VirtAddr, gather: &mut Gather) {
    let memmap = memory::frame_allocator().memmap();
    if let Err(e) =
        mm::space::zap_range(&inner.table, &KernelTables, &Shootdown, memmap, start, end, gather, &mut |f| {
            memory::free_folio(f)
        })
    {
        crate::println!("vm: unmap [{start}, {end}): {e}");
    }
}

/// Shoots the gathered range down on every CPU, then drops the references
/// (freeing the folios whose last they were).
fn finish_gather(mut gather: Gather) {
    gather.take_flush().flush(&Shootdown);
    for entry in gather.take_swap_entries() {
        crate::swap::free_entry(entry);
    }
    gather.release_unmapped(
        memory::frame_allocator().memmap(),
        &mut crate::swap::drop_unmapped_cache_folio,
        &mut |f| memory::free_folio(f),
    );
}

/// The fault hook the arch trap handlers call.
fn on_fault(fault: &MemFault) -> bool {
    if fault.addr.as_u64() >= USER_END {
        return false; // a kernel address: a kernel bug, reported by the arch
    }
    let Some(root) = sched::current_root() else { return false };
    let Some(space) = find_space(root) else { return false };
    let outcome = {
        let guard = space.lock();
        let Some(inner) = guard.as_ref() else { return false };
        // `Shootdown` even with interrupts off: the break-before-make of a
        // copy on write must reach every CPU (see the module doc).
        mm::fault::handle_fault(
            &inner.table,
            &inner.vmas,
            &KernelTables,
            &KernelFrames,
            &Shootdown,
            fault,
            true,
        )
    };
    let count = |c: &core::sync::atomic::AtomicU64| c.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    match outcome {
        FaultOutcome::Resolved
        | FaultOutcome::Spurious
        | FaultOutcome::Reused
        | FaultOutcome::Copied
        | FaultOutcome::MappedHuge
        | FaultOutcome::MappedHugeZero
        | FaultOutcome::HugeFallback => {
            count(&space.nr_faults);
            match outcome {
                FaultOutcome::Reused => count(&space.nr_cow_reuses),
                FaultOutcome::Copied => count(&space.nr_cow_copies),
                FaultOutcome::MappedHuge => count(&space.nr_thp_faults),
                FaultOutcome::MappedHugeZero => count(&space.nr_thp_zero),
                FaultOutcome::HugeFallback => count(&space.nr_thp_fallbacks),
                _ => 0,
            };
            true
        }
        FaultOutcome::Refused(why) => {
            drop(space);
            sched::kill_current(format!("{why:?}: {:?} at {}", fault.access, fault.addr))
        }
        FaultOutcome::NeedsSwapIn { page, entry } => {
            // The disk sleeps: interrupts on (the trap entered with them
            // off) and no lock held until the mapping half.
            arch::irq::enable();
            let result = swap_in(&space, fault.access, page, entry);
            arch::irq::disable();
            match result {
                Ok(()) => true,
                Err(why) => {
                    drop(space);
                    sched::kill_current(why)
                }
            }
        }
        FaultOutcome::OutOfMemory => {
            // Reclaim in this task, then retry the access; only when
            // reclaim frees nothing is the task ended.
            arch::irq::enable();
            let freed = crate::reclaim::direct_reclaim(64);
            arch::irq::disable();
            if freed > 0 {
                return true;
            }
            drop(space);
            crate::reclaim::NR_OOM_KILLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            sched::kill_current(format!(
                "out of memory on a {:?} fault at {} (reclaim freed nothing)",
                fault.access, fault.addr
            ))
        }
    }
}

/// Brings the page of the swap entry `entry` back for an `access` at
/// `page` and maps it (`mm::swap::swapin`: the cache or the disk
/// without the space's lock, then the recheck and the mapping under it).
/// `Ok` means "retry the access" (mapped, or the entry changed meanwhile);
/// `Err` says why the task must end (a read error, no memory).
fn swap_in(
    space: &Arc<AddressSpace>,
    access: mm::fault::Access,
    page: VirtAddr,
    entry: mm::pgtable::SwapEntry,
) -> Result<(), String> {
    use mm::swap::swapin::{SwapInError, SwapInOutcome};
    let dev = crate::swap::area(entry.ty()).ok_or_else(|| format!("{page}: {entry:?} is in no swap area"))?;
    let handle = mm::anon::anon_handle(space.root);
    // An intact run of a swapped-out huge page comes back whole in one
    // read; the look at the table is under the lock, the claim and the
    // recheck in half 1 make it safe to act on later.
    let run = || {
        let guard = space.lock();
        guard.as_ref().and_then(|inner| {
            mm::swap::swapin::intact_run(&inner.table, &KernelTables, &inner.vmas, page, entry)
        })
    };
    let (folio, i) = match crate::swap::get_folio(&dev, entry, handle, page.as_u64() >> 12, run) {
        Ok(got) => got,
        Err(SwapInError::Stale) => return Ok(()),
        Err(SwapInError::NoMemory) => {
            crate::reclaim::NR_OOM_KILLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            return Err(format!("out of memory swapping in {page} (reclaim freed nothing)"));
        }
        Err(SwapInError::Io(e)) => return Err(format!("swap read error at {page} ({entry:?}): {e}")),
    };
    let outcome = {
        let guard = space.lock();
        guard.as_ref().map(|inner| {
            mm::swap::swapin::map_swapped_in(
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
            )
        })
    };
    // The entry changed meanwhile: the folio may be needed by nobody now.
    crate::swap::free_if_unused_locked(&dev, folio);
    folio.unlock();
    crate::swap::put(folio);
    if let Some(SwapInOutcome::Mapped { .. }) = outcome {
        space.nr_faults.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        space.nr_swapins.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// Installs the fault hook. Boot CPU, once, before tasks touch address spaces.
pub fn init() {
    SPACES.lock().reserve(RESERVED_SPACES);
    FAMILIES.lock().reserve(RESERVED_SPACES);
    memory::init_huge_zero();
    arch::trap::set_fault_hook(on_fault);
}

// ---------------------------------------------------------------- tests

use crate::testing::{Test, TestEnv};

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const RO: VmaProt = VmaProt { read: true, write: false, exec: false };

/// A plain load, as any code does: a fault on it goes to the kernel's
/// fault handler, which maps the page or ends the task.
pub(crate) fn load(addr: u64) -> u8 {
    // SAFETY: `addr` lies in an area of the running task's address space:
    // the load either succeeds or faults into `on_fault`, which maps the page
    // (then the load is retried) or ends this task without returning here.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// A plain store (see [`load`]).
pub(crate) fn store(addr: u64, value: u8) {
    // SAFETY: as for `load`; the area is the test's own anonymous memory.
    unsafe { core::ptr::write_volatile(addr as *mut u8, value) }
}

/// Runs the consistency checker; `Err` names the moment and the problem.
fn check_space(space: &AddressSpace, when: &str) -> Result<Stats, String> {
    space.check().map_err(|e| format!("{when}: {e}"))
}

/// Runs the checker and wants exactly `pages` 4 KiB pages mapped, each its
/// own folio.
fn check_pages(space: &AddressSpace, when: &str, pages: u64) -> Result<Stats, String> {
    let stats = check_space(space, when)?;
    let want = Stats { nr_pages_mapped: pages, nr_folios: pages, nr_pte_leaves: pages, ..Stats::default() };
    if stats != want {
        return Err(format!("{when}: checker saw {stats:?}, expected {want:?}"));
    }
    Ok(stats)
}

fn demand_zero_pages_fill_on_touch(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 64;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let h = space.spawn(None, "toucher", move || -> Result<(), String> {
        for p in 0..PAGES {
            let at = base + p * 4096 + (p * 8) % 4096;
            if load(at) != 0 {
                return Err(format!("page {p} is not zero-filled"));
            }
            store(at, p as u8 ^ 0x3c);
        }
        for p in 0..PAGES {
            let at = base + p * 4096 + (p * 8) % 4096;
            if load(at) != p as u8 ^ 0x3c {
                return Err(format!("page {p} lost its byte"));
            }
        }
        Ok(())
    })?;
    h.join()?;
    // On x86 the first touch is one fault (A/D set by the CPU); on AArch64 a
    // read fault maps the page clean, and the first write faults once more
    // to make it dirty.
    let faults = space.nr_faults();
    if !(PAGES..=2 * PAGES).contains(&faults) {
        return Err(format!("{faults} faults for {PAGES} pages"));
    }
    check_pages(&space, "after the faults", PAGES)?;
    space.munmap(VirtAddr::new(base), PAGES * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    check_pages(&space, "after munmap", 0)?;
    Ok(())
}

fn bad_accesses_end_only_the_task(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let ro = space.mmap(4 * 4096, 4096, RO).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let cases: [(&str, u64, bool); 3] = [
        ("write to a read-only area", ro + 0x10, true),
        ("read of no area", ro + 0x40_0000, false),
        ("null", 8, false),
    ];
    for (what, addr, write) in cases {
        let h = space.spawn(None, "offender", move || {
            // A read of the read-only area is allowed (and maps a page).
            if write {
                let _ = load(addr);
                store(addr, 1);
            } else {
                let _ = load(addr);
            }
        })?;
        match h.join_or_killed() {
            Err(why) => {
                let expect = if write { "NotAllowed" } else { "NoMapping" };
                if !why.contains(expect) {
                    return Err(format!("{what}: killed for `{why}`, expected {expect}"));
                }
            }
            Ok(()) => return Err(format!("{what} did not end the task")),
        }
    }
    // The allowed read before the refused write mapped one page.
    check_pages(&space, "after the killed tasks", 1)?;
    Ok(())
}

fn faults_from_every_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    // Tasks on every CPU touch their own slice of one area at once: the
    // page table is built by concurrent faults under the space's lock.
    const PAGES_EACH: u64 = 32;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = space
        .mmap(cpus.len() as u64 * PAGES_EACH * 4096, 4096, RW)
        .map_err(|e| format!("mmap: {e:?}"))?
        .as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "faulter", move || -> Result<(), String> {
            let mine = base + slot as u64 * PAGES_EACH * 4096;
            for p in 0..PAGES_EACH {
                store(mine + p * 4096 + 7, (slot as u8) << 4 | p as u8 & 0xf);
            }
            for p in 0..PAGES_EACH {
                let v = load(mine + p * 4096 + 7);
                if v != (slot as u8) << 4 | p as u8 & 0xf {
                    return Err(format!("CPU {cpu}: page {p} reads {v:#x}"));
                }
            }
            Ok(())
        })?);
    }
    for h in handles {
        h.join()?;
    }
    check_pages(&space, "after the faults", cpus.len() as u64 * PAGES_EACH)?;
    Ok(())
}

/// The folio behind the page mapped at `va`, read under the space's lock:
/// `(mapcount, refcount, anon-exclusive, mapping, index)`.
fn folio_state(space: &AddressSpace, va: u64) -> Result<(i32, i32, bool, u64, u64), String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    let pa = inner.table.translate(&KernelTables, VirtAddr::new(va)).ok_or(format!("{va:#x} not mapped"))?;
    let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pa.pfn())
        .ok_or(format!("{va:#x} maps {pa}, not a folio"))?;
    Ok((
        folio.page_mapcount(0),
        folio.refcount(),
        folio.test_flag(mm::page::PageFlag::AnonExclusive),
        folio.mapping(),
        folio.index(),
    ))
}

fn folio_counts_after_faults_from_every_cpu_and_partial_munmap(_: &TestEnv<'_>) -> Result<(), String> {
    // Every CPU faults in its own slice, half by writes and half by reads;
    // then a munmap that cuts the area in two, across the slices of two
    // CPUs and a page nobody touched. The checker must agree at each step,
    // and the folios unmapped must go back to the allocator at once.
    const PAGES_EACH: u64 = 16;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let nr = cpus.len() as u64 * PAGES_EACH + 1; // one page never touched
    let space = AddressSpace::new()?;
    let base = space.mmap(nr * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "faulter", move || -> Result<(), String> {
            let mine = base + slot as u64 * PAGES_EACH * 4096;
            for p in 0..PAGES_EACH {
                let at = mine + p * 4096 + 0x80;
                if p % 2 == 0 {
                    store(at, 0xa0 | slot as u8);
                } else if load(at) != 0 {
                    return Err(format!("CPU {cpu}: page {p} not zero"));
                }
            }
            Ok(())
        })?);
    }
    for h in handles {
        h.join()?;
    }
    let touched = cpus.len() as u64 * PAGES_EACH;
    check_pages(&space, "after the faults", touched)?;
    let handle = mm::anon::anon_handle(space.root());
    for p in 0..touched {
        let va = base + p * 4096;
        let state = folio_state(&space, va)?;
        if state != (1, 1, true, handle, va >> 12) {
            return Err(format!(
                "page {p}: (mapcount, refcount, exclusive, mapping, index) = {state:x?}, \
                 expected (1, 1, true, {handle:#x}, {:#x})",
                va >> 12
            ));
        }
    }
    // Cut out the last half of one slice and the first half of the next
    // (on one CPU: the second half of its slice, the untouched page and
    // beyond the area's end, which munmap allows).
    let cut_start = base + (PAGES_EACH / 2) * 4096;
    let cut_pages = PAGES_EACH;
    let before = memory::nr_free_frames();
    space.munmap(VirtAddr::new(cut_start), cut_pages * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    let freed = memory::nr_free_frames() - before;
    let cut_touched = cut_pages.min(touched - PAGES_EACH / 2);
    if freed != cut_touched {
        return Err(format!("munmap of {cut_touched} mapped pages freed {freed} frames"));
    }
    check_pages(&space, "after the partial munmap", touched - cut_touched)?;
    // The pages on both sides of the hole keep their folios and counts.
    for va in [cut_start - 4096, cut_start + cut_pages * 4096] {
        if va < base + touched * 4096 {
            let state = folio_state(&space, va)?;
            if (state.0, state.1, state.2) != (1, 1, true) {
                return Err(format!("{va:#x} next to the hole: {state:x?}"));
            }
        }
    }
    // A load in the hole ends the task and maps nothing.
    let h = space.spawn(None, "hole", move || load(cut_start))?;
    match h.join_or_killed() {
        Err(why) if why.contains("NoMapping") => {}
        other => return Err(format!("a load in the hole: {other:?}")),
    }
    check_pages(&space, "after the load in the hole", touched - cut_touched)?;
    Ok(())
}

/// Runs `f` in a task of `space` and returns its result.
fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "cow", f)?.join())
}

/// Runs the family checker on both spaces.
fn check_family(a: &AddressSpace, b: &AddressSpace, when: &str) -> Result<(), String> {
    check_space(a, when)?;
    check_space(b, when)?;
    Ok(())
}

fn fork_shares_pages_and_copies_on_write(_: &TestEnv<'_>) -> Result<(), String> {
    // Pages 0..4: both sides write; 4..6: only the parent; 6..8: only the
    // child; 8: nobody. Parent and child run at once (other CPUs if any).
    const N: u64 = 9;
    let parent = AddressSpace::new()?;
    let base = parent.mmap(N * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || (0..N).for_each(|p| store(base + p * 4096 + 5, 0xa0 | p as u8)))?;
    check_pages(&parent, "before fork", N)?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    for p in 0..N {
        let (mapcount, refcount, exclusive, _, _) = folio_state(&parent, base + p * 4096)?;
        if (mapcount, refcount, exclusive) != (2, 2, false) {
            return Err(format!(
                "after fork, page {p}: mapcount {mapcount} refcount {refcount} exclusive {exclusive}"
            ));
        }
    }
    let writer = |space: &Arc<AddressSpace>, pages: &'static [u64], tag: u8| {
        space.spawn(None, "cow writer", move || {
            pages.iter().for_each(|&p| store(base + p * 4096 + 5, tag | p as u8))
        })
    };
    let hp = writer(&parent, &[0, 1, 2, 3, 4, 5], 0xb0)?;
    let hc = writer(&child, &[3, 2, 1, 0, 6, 7], 0xc0)?;
    hp.join();
    hc.join();
    check_family(&parent, &child, "after the writes")?;
    let expect = |tag: u8, own: &'static [u64]| {
        move || -> Result<(), String> {
            for p in 0..N {
                let want = if own.contains(&p) { tag | p as u8 } else { 0xa0 | p as u8 };
                let got = load(base + p * 4096 + 5);
                if got != want {
                    return Err(format!("page {p}: {got:#x}, expected {want:#x}"));
                }
            }
            Ok(())
        }
    };
    run_in(&parent, expect(0xb0, &[0, 1, 2, 3, 4, 5]))?.map_err(|e| format!("parent: {e}"))?;
    run_in(&child, expect(0xc0, &[0, 1, 2, 3, 6, 7]))?.map_err(|e| format!("child: {e}"))?;
    // Pages 0..4: one side copies, the other (then the only user) reuses,
    // unless both copied at once; 4..8: one copy each.
    let (copies, reuses) =
        (parent.nr_cow_copies() + child.nr_cow_copies(), parent.nr_cow_reuses() + child.nr_cow_reuses());
    if copies + reuses != 12 || !(8..=12).contains(&copies) {
        return Err(format!("{copies} copies and {reuses} reuses for 12 written shared pages"));
    }
    // Page 8 is still shared; every other page is exclusive to each side.
    for p in 0..N {
        let (pm, _, pe, _, _) = folio_state(&parent, base + p * 4096)?;
        let (cm, _, ce, _, _) = folio_state(&child, base + p * 4096)?;
        let shared = p == 8;
        if shared && (pm, pe, cm, ce) != (2, false, 2, false) || !shared && (pm, cm) != (1, 1) {
            return Err(format!("page {p}: parent ({pm}, {pe}), child ({cm}, {ce})"));
        }
    }
    drop(parent);
    check_pages(&child, "after the parent is gone", N)?;
    Ok(())
}

fn cow_reuses_a_page_the_other_side_unmapped(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = parent.mmap(2 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || {
        store(base, 1);
        store(base + 4096, 2);
    })?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    // The child drops page 0, the parent page 1: each page is left with
    // one mapping and one reference, so the write reuses it.
    child.munmap(VirtAddr::new(base), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    parent.munmap(VirtAddr::new(base + 4096), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    check_family(&parent, &child, "after the munmaps")?;
    let free = memory::nr_free_frames();
    run_in(&parent, move || store(base, 0x11))?;
    run_in(&child, move || store(base + 4096, 0x22))?;
    check_family(&parent, &child, "after the writes")?;
    let counts =
        (parent.nr_cow_copies(), parent.nr_cow_reuses(), child.nr_cow_copies(), child.nr_cow_reuses());
    if counts != (0, 1, 0, 1) || memory::nr_free_frames() != free {
        return Err(format!(
            "(copies, reuses) parent/child = {counts:?}, frames used {}",
            free as i64 - memory::nr_free_frames() as i64
        ));
    }
    for (space, va) in [(&parent, base), (&child, base + 4096)] {
        let (m, r, e, _, _) = folio_state(space, va)?;
        if (m, r, e) != (1, 1, true) {
            return Err(format!("{va:#x} after reuse: mapcount {m} refcount {r} exclusive {e}"));
        }
    }
    let (a, b) = (run_in(&parent, move || load(base))?, run_in(&child, move || load(base + 4096))?);
    if (a, b) != (0x11, 0x22) {
        return Err(format!("read back {a:#x} {b:#x}"));
    }
    Ok(())
}

fn cow_copy_reaches_readers_on_every_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    // Readers of the parent on every CPU hold read-only translations of a
    // shared page while one of them writes it (a copy): once the write is
    // done, no reader may still see the old page.
    use core::sync::atomic::{AtomicBool, Ordering};
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let parent = AddressSpace::new()?;
    let base = parent.mmap(4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || store(base, 0x5a))?;
    let child = parent.fork()?;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for &cpu in cpus.iter().skip(1) {
        let done = done.clone();
        readers.push(parent.spawn(Some(cpu), "cow reader", move || -> Result<(), String> {
            loop {
                let finished = done.load(Ordering::Acquire);
                let v = load(base);
                if finished {
                    return if v == 0xa5 { Ok(()) } else { Err(format!("CPU {cpu} still reads {v:#x}")) };
                }
                if v != 0x5a && v != 0xa5 {
                    return Err(format!("CPU {cpu} reads {v:#x}"));
                }
            }
        })?);
    }
    let d = done.clone();
    parent
        .spawn(Some(cpus[0]), "cow writer", move || {
            // Let the readers cache the read-only translation first.
            sched::sleep_ms(20);
            store(base, 0xa5);
            d.store(true, Ordering::Release);
        })?
        .join();
    for r in readers {
        r.join()?;
    }
    check_family(&parent, &child, "after the copy")?;
    if parent.nr_cow_copies() != 1 || run_in(&child, move || load(base))? != 0x5a {
        return Err(format!("{} copies; the child must keep 0x5a", parent.nr_cow_copies()));
    }
    Ok(())
}

// ---------------------------------------------------------------- THP tests

const HUGE: u64 = mm::thp::HPAGE_SIZE;

/// The level and leaf that map `va`, read under the space's lock.
fn leaf_at(space: &AddressSpace, va: u64) -> Result<Option<(mm::pgtable::Level, mm::pgtable::Leaf)>, String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    Ok(match inner.table.lookup(&KernelTables, VirtAddr::new(va)) {
        (level, mm::pgtable::Decoded::Leaf(leaf)) => Some((level, leaf)),
        _ => None,
    })
}

/// Wants a 2 MiB leaf of a huge folio (not the zero one) at `block`, with
/// the folio counts `(entire mapcount, refcount)`.
fn want_thp(space: &AddressSpace, block: u64, counts: (i32, i32), when: &str) -> Result<(), String> {
    match leaf_at(space, block)? {
        Some((mm::pgtable::Level::Pmd, leaf)) => {
            let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), leaf.frame.pfn())
                .ok_or(format!("{when}: the PMD maps {}, not a folio", leaf.frame))?;
            if mm::thp::is_huge_zero_folio(&folio) {
                return Err(format!("{when}: {block:#x} maps the huge zero folio"));
            }
            let got = (folio.entire_mapcount(), folio.refcount());
            if folio.order() != 9 || got != counts {
                return Err(format!(
                    "{when}: order {} (entire mapcount, refcount) = {got:?}, expected order 9 {counts:?}",
                    folio.order()
                ));
            }
            Ok(())
        }
        other => Err(format!("{when}: {block:#x} is mapped by {other:?}, not a PMD leaf")),
    }
}

/// A 2 MiB-aligned area of `blocks` huge blocks, THP on.
fn huge_area(space: &AddressSpace, blocks: u64) -> Result<u64, String> {
    let base = space.mmap(blocks * HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(base, blocks * HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    Ok(base.as_u64())
}

fn thp_write_fault_maps_one_2mib_leaf(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 2)?;
    let free = memory::nr_free_frames();
    run_in(&space, move || {
        store(base + 0x1234, 0x5a);
        store(base + HUGE - 1, 0xa5);
    })?;
    want_thp(&space, base, (1, 1), "after the write")?;
    if space.nr_thp_faults() != 1 || free - memory::nr_free_frames() < 512 {
        return Err(format!(
            "{} huge faults, {} frames used",
            space.nr_thp_faults(),
            free - memory::nr_free_frames()
        ));
    }
    let dump = space.dump(VirtAddr::new(base), VirtAddr::new(base + 2 * HUGE));
    if !dump.lines().any(|l| l.contains("PMD 2M") && l.contains("rw-")) || dump.lines().count() != 1 {
        return Err(format!("the dump does not show one writable 2 MiB leaf:\n{dump}"));
    }
    // Every other byte of the 2 MiB reads zero; ours read back.
    let bad = run_in(&space, move || {
        (0..512u64)
            .map(|p| base + p * 4096 + 8)
            .find(|&a| load(a) != 0)
            .or_else(|| (load(base + 0x1234) != 0x5a || load(base + HUGE - 1) != 0xa5).then_some(base))
    })?;
    if let Some(at) = bad {
        return Err(format!("wrong byte at {at:#x}"));
    }
    let stats = check_space(&space, "after the faults")?;
    if (stats.nr_pmd_leaves, stats.nr_pages_mapped, stats.nr_folios) != (1, 512, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    let before = memory::nr_free_frames();
    space.munmap(VirtAddr::new(base), 2 * HUGE).map_err(|e| format!("munmap: {e:?}"))?;
    if memory::nr_free_frames() - before != 512 {
        return Err(format!("munmap freed {} frames, expected 512", memory::nr_free_frames() - before));
    }
    Ok(())
}

fn thp_read_maps_the_huge_zero_folio_and_a_write_replaces_it(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    let free = memory::nr_free_frames();
    let sum = run_in(&space, move || (0..512u64).map(|p| load(base + p * 4096) as u64).sum::<u64>())?;
    if sum != 0 || space.nr_thp_zero() != 1 {
        return Err(format!("read sum {sum}, {} huge zero faults", space.nr_thp_zero()));
    }
    match leaf_at(&space, base)? {
        Some((mm::pgtable::Level::Pmd, leaf)) if !leaf.prot.writable => {
            if memory::huge_zero() != Some(leaf.frame) {
                return Err(format!("the read-only PMD maps {}, not the huge zero folio", leaf.frame));
            }
        }
        other => return Err(format!("after the read: {other:?}")),
    }
    // Page-table frames at most, not 2 MiB.
    let used = free - memory::nr_free_frames();
    if used > 3 {
        return Err(format!("mapping the huge zero folio used {used} frames"));
    }
    check_space(&space, "after the read")?;
    run_in(&space, move || store(base + 0x10_0000, 7))?;
    want_thp(&space, base, (1, 1), "after the write")?;
    let ok = run_in(&space, move || load(base + 0x10_0000) == 7 && load(base) == 0)?;
    if !ok || space.nr_thp_faults() != 1 {
        return Err(format!("data wrong or {} huge faults", space.nr_thp_faults()));
    }
    check_space(&space, "after the write")?;
    Ok(())
}

/// Fills every page of `[base, base + pages * 4096)` with its number.
fn fill(space: &Arc<AddressSpace>, base: u64, pages: u64, tag: u8) -> Result<(), String> {
    run_in(space, move || {
        for p in 0..pages {
            store(base + p * 4096 + (p % 4000), p as u8 ^ tag);
        }
    })
}

/// The first page of `[base, base + pages * 4096)` that does not hold what
/// [`fill`] wrote (pages in `skip` are not checked).
fn first_wrong(
    space: &Arc<AddressSpace>,
    base: u64,
    pages: u64,
    tag: u8,
    skip: core::ops::Range<u64>,
) -> Result<Option<u64>, String> {
    run_in(space, move || {
        (0..pages)
            .filter(|p| !skip.contains(p))
            .find(|&p| load(base + p * 4096 + (p % 4000)) != p as u8 ^ tag)
    })
}

fn thp_partial_munmap_keeps_the_rest_with_its_data(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    fill(&space, base, 512, 0x3c)?;
    want_thp(&space, base, (1, 1), "after the fill")?;
    let before = memory::nr_free_frames();
    // Cut pages 100..356 out of the middle.
    space.munmap(VirtAddr::new(base + 100 * 4096), 256 * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    let freed = memory::nr_free_frames() as i64 - before as i64;
    // 256 pages come back; the split may have taken one page-table frame.
    if !(255..=256).contains(&freed) {
        return Err(format!("the partial munmap freed {freed} frames, expected 256 (less a PTE table)"));
    }
    if let Some(p) = first_wrong(&space, base, 512, 0x3c, 100..356)? {
        return Err(format!("page {p} lost its data"));
    }
    let stats = check_space(&space, "after the partial munmap")?;
    if (stats.nr_pmd_leaves, stats.nr_pte_leaves, stats.nr_folios) != (0, 256, 256) {
        return Err(format!("checker saw {stats:?}: expected 256 PTEs of 256 order-0 folios"));
    }
    let h = space.spawn(None, "hole", move || load(base + 200 * 4096))?;
    match h.join_or_killed() {
        Err(why) if why.contains("NoMapping") => Ok(()),
        other => Err(format!("a load in the hole: {other:?}")),
    }
}

fn thp_mprotect_and_madvise_on_part_split_the_pmd(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    fill(&space, base, 512, 0x11)?;
    space.mprotect(VirtAddr::new(base + 64 * 4096), 64 * 4096, RO).map_err(|e| format!("mprotect: {e:?}"))?;
    check_space(&space, "after the mprotect")?;
    match leaf_at(&space, base + 64 * 4096)? {
        Some((mm::pgtable::Level::Pte, leaf)) if !leaf.prot.writable => {}
        other => return Err(format!("the protected part is mapped by {other:?}")),
    }
    let h = space.spawn(None, "ro writer", move || store(base + 100 * 4096, 1))?;
    match h.join_or_killed() {
        Err(why) if why.contains("NotAllowed") => {}
        other => return Err(format!("a write to the read-only part: {other:?}")),
    }
    // The writable rest still takes writes, and every page keeps its data.
    run_in(&space, move || store(base + 300 * 4096 + 300, 300u64 as u8 ^ 0x11))?;
    if let Some(p) = first_wrong(&space, base, 512, 0x11, 0..0)? {
        return Err(format!("page {p} lost its data after mprotect"));
    }
    // Back to read-write: the next write faults once and reuses the page.
    space
        .mprotect(VirtAddr::new(base + 64 * 4096), 64 * 4096, RW)
        .map_err(|e| format!("mprotect back: {e:?}"))?;
    let reuses = space.nr_cow_reuses();
    run_in(&space, move || store(base + 70 * 4096 + 70, 70 ^ 0x11))?;
    if space.nr_cow_reuses() != reuses + 1 {
        return Err(String::from("the write after mprotect(RW) did not reuse the exclusive page"));
    }
    // DONTNEED on another part: those pages read zero afterwards.
    space
        .madvise(VirtAddr::new(base + 400 * 4096), 16 * 4096, Advice::DontNeed)
        .map_err(|e| format!("madvise: {e:?}"))?;
    check_space(&space, "after MADV_DONTNEED")?;
    if let Some(p) = first_wrong(&space, base, 512, 0x11, 400..416)? {
        return Err(format!("page {p} lost its data after MADV_DONTNEED"));
    }
    let nonzero = run_in(&space, move || (400..416u64).find(|p| load(base + p * 4096 + p % 4000) != 0))?;
    if let Some(p) = nonzero {
        return Err(format!("page {p} is not zero after MADV_DONTNEED"));
    }
    // PROT_NONE over mapped pages is refused for now (VmaError's doc), and
    // changes nothing.
    match space.mprotect(VirtAddr::new(base), 4096, VmaProt::NONE) {
        Err(VmaError::ProtNoneOverMappedPages) => {}
        other => return Err(format!("mprotect(PROT_NONE) over a mapped page: {other:?}")),
    }
    // NOHUGEPAGE on half the block: it can no longer be one leaf.
    space
        .madvise(VirtAddr::new(base + HUGE / 2), HUGE / 2, Advice::NoHugePage)
        .map_err(|e| format!("madvise: {e:?}"))?;
    check_space(&space, "after MADV_NOHUGEPAGE")?;
    Ok(())
}

fn thp_fork_with_both_sides_writing(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = huge_area(&parent, 1)?;
    fill(&parent, base, 512, 0x22)?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    want_thp(&parent, base, (2, 2), "after fork")?;
    // Both sides write pages of their own at once; each copy splits that
    // side's PMD.
    let hp = parent.spawn(None, "parent writer", move || {
        (0..512u64).step_by(7).for_each(|p| store(base + p * 4096 + (p % 4000), 0xee))
    })?;
    let hc = child.spawn(None, "child writer", move || {
        (3..512u64).step_by(11).for_each(|p| store(base + p * 4096 + (p % 4000), 0xdd))
    })?;
    hp.join();
    hc.join();
    check_family(&parent, &child, "after the writes")?;
    let check = |mine: fn(u64) -> bool, tag: u8| {
        move || -> Option<u64> {
            (0..512u64).find(|&p| {
                let want = if mine(p) { tag } else { p as u8 ^ 0x22 };
                load(base + p * 4096 + (p % 4000)) != want
            })
        }
    };
    if let Some(p) = run_in(&parent, check(|p| p % 7 == 0, 0xee))? {
        return Err(format!("parent page {p} wrong"));
    }
    if let Some(p) = run_in(&child, check(|p| p >= 3 && (p - 3) % 11 == 0, 0xdd))? {
        return Err(format!("child page {p} wrong"));
    }
    drop(parent);
    check_space(&child, "after the parent is gone")?;
    Ok(())
}

fn thp_concurrent_faults_on_one_block_make_one_thp(_: &TestEnv<'_>) -> Result<(), String> {
    use core::sync::atomic::{AtomicUsize, Ordering};
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    let ready = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        let ready = ready.clone();
        let n = cpus.len();
        handles.push(space.spawn(Some(cpu), "thp racer", move || {
            ready.fetch_add(1, Ordering::AcqRel);
            while ready.load(Ordering::Acquire) < n {
                core::hint::spin_loop();
            }
            // Every CPU writes its own page of the same block at once.
            store(base + (slot as u64 * 97 + 1) * 4096, slot as u8 + 1);
        })?);
    }
    for h in handles {
        h.join();
    }
    want_thp(&space, base, (1, 1), "after the racing faults")?;
    if space.nr_thp_faults() != 1 {
        return Err(format!("{} huge faults for one block", space.nr_thp_faults()));
    }
    let n = cpus.len();
    let bad =
        run_in(&space, move || (0..n).find(|&s| load(base + (s as u64 * 97 + 1) * 4096) != s as u8 + 1))?;
    if let Some(s) = bad {
        return Err(format!("the write of CPU slot {s} is lost"));
    }
    let stats = check_space(&space, "after the racing faults")?;
    if (stats.nr_pmd_leaves, stats.nr_folios) != (1, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- GUP and rmap tests

/// Reads the byte at `pa` through the direct map: the kernel's view of a
/// page it holds.
pub(crate) fn kread(pa: PhysAddr) -> u8 {
    // SAFETY: `pa` is in a RAM frame the caller holds (a reference or a
    // pin from get_user_pages), mapped in the direct map; a byte read.
    unsafe { core::ptr::read_volatile(memory::phys_to_virt(pa).as_u64() as *const u8) }
}

/// Writes the byte at `pa` through the direct map (as a device would
/// through a pinned buffer).
pub(crate) fn kwrite(pa: PhysAddr, v: u8) {
    // SAFETY: as `kread`; the caller holds a write hold on the page.
    unsafe { core::ptr::write_volatile(memory::phys_to_virt(pa).as_u64() as *mut u8, v) }
}

fn gup_write_pin_breaks_cow_and_makes_the_page_exclusive(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = parent.mmap(4 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || (0..4).for_each(|p| store(base + p * 4096, 0x40 | p as u8)))?;
    let child = parent.fork()?;
    // Page 1 is shared; a write pin in the parent must copy it first.
    let pinned = parent.get_user_pages(VirtAddr::new(base + 4096), 1, true, Hold::Pin)?;
    let state = folio_state(&parent, base + 4096)?;
    let (pa, ca) = (translate(&parent, base + 4096)?, translate(&child, base + 4096)?);
    if (state.0, state.2) != (1, true) || pa == ca || pa != pinned[0] {
        release_user_pages(&pinned, Hold::Pin);
        return Err(format!(
            "after the write pin: {state:x?}, parent at {pa}, child at {ca}: COW not broken"
        ));
    }
    check_family(&parent, &child, "with the pin")?;
    // What the kernel writes through the pin, the parent reads; the child
    // keeps the old byte.
    kwrite(pinned[0], 0x99);
    let (p, c) = (run_in(&parent, move || load(base + 4096))?, run_in(&child, move || load(base + 4096))?);
    release_user_pages(&pinned, Hold::Pin);
    if (p, c) != (0x99, 0x41) {
        return Err(format!("parent reads {p:#x}, child {c:#x}; expected 0x99 and 0x41"));
    }
    check_family(&parent, &child, "after the unpin")?;
    Ok(())
}

fn gup_pinned_page_across_fork_is_copied_for_the_child(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = parent.mmap(2 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || {
        store(base, 1);
        store(base + 4096, 2);
    })?;
    let pinned = parent.get_user_pages(VirtAddr::new(base), 1, true, Hold::Pin)?;
    let child = parent.fork()?;
    let result = (|| {
        check_family(&parent, &child, "after fork with a pin")?;
        // The pinned page stays the parent's, exclusive and writable; the
        // child has its own copy. The unpinned page is shared.
        let (pm, _, pe, _, _) = folio_state(&parent, base)?;
        let (cm, _, ce, _, _) = folio_state(&child, base)?;
        let (parent_pa, child_pa) = (translate(&parent, base)?, translate(&child, base)?);
        if (pm, pe, cm, ce) != (1, true, 1, true) || parent_pa == child_pa || parent_pa != pinned[0] {
            return Err(format!(
                "pinned page: parent ({pm}, {pe}) at {parent_pa}, child ({cm}, {ce}) at {child_pa}, pin at {}",
                pinned[0]
            ));
        }
        if folio_state(&parent, base + 4096)?.0 != 2 {
            return Err(String::from("the unpinned page is not shared"));
        }
        // Writes through the pin and by the parent both land in the pinned
        // frame: no copy on write ever moves the parent away from it.
        kwrite(pinned[0], 0x77);
        run_in(&parent, move || store(base + 8, 0x78))?;
        let copies = parent.nr_cow_copies();
        let (a, b) = (kread(pinned[0]), kread(PhysAddr::new(pinned[0].as_u64() + 8)));
        let (p0, c0) = (run_in(&parent, move || load(base))?, run_in(&child, move || load(base))?);
        if (a, b, p0, c0, copies) != (0x77, 0x78, 0x77, 1, 0) {
            return Err(format!(
                "pin reads ({a:#x}, {b:#x}), parent {p0:#x}, child {c0:#x}, parent copies {copies}"
            ));
        }
        Ok(())
    })();
    release_user_pages(&pinned, Hold::Pin);
    result?;
    check_family(&parent, &child, "after the unpin")?;
    Ok(())
}

/// The physical address `va` maps to in `space`.
fn translate(space: &AddressSpace, va: u64) -> Result<PhysAddr, String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    inner.table.translate(&KernelTables, VirtAddr::new(va)).ok_or(format!("{va:#x} not mapped"))
}

fn gup_get_and_pin_on_a_thp(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    // A read hold on an untouched huge range: the zero folio cannot be
    // held, so the range gets a folio of its own.
    let got = space.get_user_pages(VirtAddr::new(base + 5 * 4096), 2, false, Hold::Get)?;
    want_thp(&space, base, (1, 3), "with two FOLL_GET references")?;
    release_user_pages(&got, Hold::Get);
    let pins = space.get_user_pages(VirtAddr::new(base + 10 * 4096), 3, true, Hold::Pin)?;
    let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pins[0].pfn()).ok_or("no folio")?;
    if (folio.pincount(), folio.refcount(), folio.maybe_pinned()) != (3, 4, true) {
        release_user_pages(&pins, Hold::Pin);
        return Err(format!("pincount {} refcount {}", folio.pincount(), folio.refcount()));
    }
    // A partial munmap splits the PMD but not the pinned folio: its pages
    // stay where the pins point, and the counts stay right.
    let result = space.munmap(VirtAddr::new(base + 256 * 4096), 256 * 4096).map_err(|e| format!("{e:?}"));
    let same = mm::folio::folio_of(memory::frame_allocator().memmap(), pins[0].pfn())
        .is_some_and(|f| f.order() == 9 && f.pincount() == 3);
    kwrite(pins[1], 0x31);
    let seen = run_in(&space, move || load(base + 11 * 4096))?;
    release_user_pages(&pins, Hold::Pin);
    result?;
    if !same || seen != 0x31 {
        return Err(format!("pinned folio split ({}) or the pin's write lost ({seen:#x})", !same));
    }
    let stats = check_space(&space, "after the partial munmap of a pinned THP")?;
    if (stats.nr_pte_leaves, stats.nr_folios) != (256, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    let before = memory::nr_free_frames();
    space.munmap(VirtAddr::new(base), 256 * 4096).map_err(|e| format!("{e:?}"))?;
    if memory::nr_free_frames() - before < 512 {
        return Err(String::from("the huge folio was not freed with its last mapping"));
    }
    Ok(())
}

fn gup_refuses_bad_addresses_without_side_effects(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let ro = space.mmap(2 * 4096, 4096, RO).map_err(|e| format!("mmap: {e:?}"))?;
    for (what, va, write) in [("no area", 0x7000_0000u64, false), ("write to read-only", ro.as_u64(), true)] {
        match space.get_user_pages(VirtAddr::new(va), 1, write, Hold::Pin) {
            Err(e) if e.contains("Refused") => {}
            other => return Err(format!("{what}: {other:?}")),
        }
    }
    // Two pages of which the second is beyond the area: nothing stays held.
    let before = check_space(&space, "before")?;
    match space.get_user_pages(VirtAddr::new(ro.as_u64() + 4096), 2, false, Hold::Get) {
        Err(e) if e.contains("Refused") => {}
        other => return Err(format!("a range running out of the area: {other:?}")),
    }
    let after = check_space(&space, "after")?;
    let state = folio_state(&space, ro.as_u64() + 4096)?;
    if state.1 != 1 || after.nr_pages_mapped != before.nr_pages_mapped + 1 {
        return Err(format!("a failed get left {state:?} (the page mapped on the way stays, unheld)"));
    }
    Ok(())
}

fn rmap_finds_every_mapping_across_a_fork_family(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = huge_area(&parent, 1)?;
    let small = parent.mmap(4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || {
        store(base, 1);
        store(small, 2);
    })?;
    let child = parent.fork()?;
    let grandchild = child.fork()?;
    for (what, va, level) in [("THP", base, Level::Pmd), ("page", small, Level::Pte)] {
        let found = parent.rmap_of(VirtAddr::new(va))?;
        let mut roots: Vec<u64> = found.iter().map(|m| m.0.as_u64()).collect();
        roots.sort();
        let mut want: Vec<u64> = [&parent, &child, &grandchild].iter().map(|s| s.root().as_u64()).collect();
        want.sort();
        if roots != want || found.iter().any(|m| m.1.as_u64() != va || m.2 != level) {
            return Err(format!("{what}: rmap found {found:x?}"));
        }
    }
    // The child's copy of the small page is its own: one mapping each.
    run_in(&child, move || store(small, 3))?;
    if child.rmap_of(VirtAddr::new(small))?.len() != 1 || parent.rmap_of(VirtAddr::new(small))?.len() != 2 {
        return Err(String::from("after the child's copy the rmap still counts it"));
    }
    check_space(&grandchild, "at the end")?;
    Ok(())
}

pub(crate) const TESTS: &[Test] = &[
    Test { name: "vm::demand_zero_pages_fill_on_touch", run: demand_zero_pages_fill_on_touch },
    Test { name: "vm::bad_accesses_end_only_the_task", run: bad_accesses_end_only_the_task },
    Test { name: "vm::faults_from_every_cpu", run: faults_from_every_cpu },
    Test {
        name: "vm::folio_counts_after_faults_from_every_cpu_and_partial_munmap",
        run: folio_counts_after_faults_from_every_cpu_and_partial_munmap,
    },
    Test { name: "vm::fork_shares_pages_and_copies_on_write", run: fork_shares_pages_and_copies_on_write },
    Test {
        name: "vm::cow_reuses_a_page_the_other_side_unmapped",
        run: cow_reuses_a_page_the_other_side_unmapped,
    },
    Test { name: "vm::cow_copy_reaches_readers_on_every_cpu", run: cow_copy_reaches_readers_on_every_cpu },
    Test { name: "vm::thp_write_fault_maps_one_2mib_leaf", run: thp_write_fault_maps_one_2mib_leaf },
    Test {
        name: "vm::thp_read_maps_the_huge_zero_folio_and_a_write_replaces_it",
        run: thp_read_maps_the_huge_zero_folio_and_a_write_replaces_it,
    },
    Test {
        name: "vm::thp_partial_munmap_keeps_the_rest_with_its_data",
        run: thp_partial_munmap_keeps_the_rest_with_its_data,
    },
    Test {
        name: "vm::thp_mprotect_and_madvise_on_part_split_the_pmd",
        run: thp_mprotect_and_madvise_on_part_split_the_pmd,
    },
    Test { name: "vm::thp_fork_with_both_sides_writing", run: thp_fork_with_both_sides_writing },
    Test {
        name: "vm::thp_concurrent_faults_on_one_block_make_one_thp",
        run: thp_concurrent_faults_on_one_block_make_one_thp,
    },
    Test {
        name: "vm::gup_write_pin_breaks_cow_and_makes_the_page_exclusive",
        run: gup_write_pin_breaks_cow_and_makes_the_page_exclusive,
    },
    Test {
        name: "vm::gup_pinned_page_across_fork_is_copied_for_the_child",
        run: gup_pinned_page_across_fork_is_copied_for_the_child,
    },
    Test { name: "vm::gup_get_and_pin_on_a_thp", run: gup_get_and_pin_on_a_thp },
    Test {
        name: "vm::gup_refuses_bad_addresses_without_side_effects",
        run: gup_refuses_bad_addresses_without_side_effects,
    },
    Test {
        name: "vm::rmap_finds_every_mapping_across_a_fork_family",
        run: rmap_finds_every_mapping_across_a_fork_family,
    },
];
