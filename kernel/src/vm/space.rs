//! Address spaces in the running kernel: areas (`mm::vma`), the page table
//! of this arch's format, and the handler of the faults tasks take in them.
//!
//! ## Protocol
//!
//! - An [`AddressSpace`] is shared (`Arc`) by the tasks that run in it.
//!   Its lock (an [`IrqRwLock`]: the fault handler takes it with
//!   interrupts off) guards the areas and the page table (its place in
//!   the kernel's one lock order: `docs/src/locking.md`). Every path holds
//!   it alone ([`AddressSpace::lock`]) but one: the first touch of a page
//!   whose PTE table exists holds it shared ([`AddressSpace::read`]) and
//!   that table's own lock (`crate::vm::ptlock`).
//! - Faults: the arch trap handler offers every fault no probe claimed to
//!   [`on_fault`]. A fault in the lower half, taken by a task that runs in
//!   an address space, is handled by `mm::fault::handle_fault` under the
//!   lock; when the access is refused (no area, not allowed) or memory is
//!   out, the task is ended with a message ([`crate::task::sched::kill_current`])
//!   and the kernel goes on.
//! - Every anonymous page is an order-0 folio (`mm::anon`): mapcount 1 and
//!   the mapping's reference while a PTE maps it.
//! - Unmapping clears the PTEs and drops each page's mapcount under the
//!   lock (so the counts agree with the tables for [`AddressSpace::check`]),
//!   releases it, shoots the range down on every CPU
//!   (`crate::vm::tlb::Shootdown`, which needs interrupts on), and only then
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
//! own CPU's flush requests while spinning (`crate::vm::tlb`'s module doc): the
//! shootdown's own waits and the address-space lock
//! ([`IrqRwLock::read_polling`], [`IrqRwLock::write_polling`]). On AArch64 the broadcast TLBI needs no
//! help from the other CPUs at all.
//!
//! Spaces made by fork form a family ([`Family`]): they may map the same
//! folios, so [`AddressSpace::check`] checks the whole family at once
//! (every member's lock, taken in root order), with
//! `mm::debug::check_spaces_in`; [`check_all_at_rest`] checks every space
//! at once when nothing runs (`docs/src/checker.md`).
//! Several members' locks are taken in increasing root order (check,
//! reclaim's unmap); fork holds only the parent's (the child is not yet
//! published). The whole order: `docs/src/locking.md`.

use crate::arch;
use crate::arch::prelude::*;
use crate::memory;
use crate::memory::paging::{Format, KernelTables};
use crate::sync::{IrqReadGuard, IrqRwLock, IrqSpinLock, IrqWriteGuard};
use crate::task::sched;
use crate::vm::tlb::Shootdown;
use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64};
use mm::debug::Stats;
use mm::fault::{FaultOutcome, FrameSource};
use mm::folio::AnonHandle;
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

/// Anonymous pages: order-0 folios from the buddy allocator, zeroed; and
/// whether a THP fault that finds no 2 MiB block may stall for direct
/// compaction (`crate::vm::compaction`).
/// Both follow the system-wide THP policy (`crate::vm::thp_policy`).
pub(crate) struct KernelFrames {
    compact: bool,
}

impl KernelFrames {
    /// For a fault: THP write faults the `defrag` policy lets stall (by
    /// default those in `MADV_HUGEPAGE` ranges) ask for a direct
    /// compaction before they fall back.
    pub(crate) const FAULT: KernelFrames = KernelFrames { compact: true };
    /// No compaction: fork's copies, and a fault handled again after its
    /// compaction (which must not ask again).
    pub(crate) const PLAIN: KernelFrames = KernelFrames { compact: false };
}

impl FrameSource for KernelFrames {
    fn thp_defrag(&self) -> Option<mm::compaction::Defrag> {
        self.compact.then(crate::vm::thp_policy::defrag)
    }
    fn thp_enabled(&self) -> mm::vma::ThpEnabled {
        crate::vm::thp_policy::enabled()
    }
    fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        crate::vm::folios::alloc_anon_page(handle, index)
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        let folio = mm::anon::remove_pte_mapping(memory::frame_allocator().memmap(), pa);
        crate::vm::folios::put_anon_folio(folio);
    }
    fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        crate::vm::folios::alloc_anon_huge(handle, index)
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        let folio = mm::thp::remove_pmd_mapping(memory::frame_allocator().memmap(), pa);
        crate::vm::folios::put_anon_folio(folio);
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        crate::vm::folios::huge_zero()
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        // `mm` has no `unsafe`, so this method is safe to call: check what
        // can be checked of `folios::copy_page`'s contract, so that a bug in
        // a caller can at worst garble anonymous memory, never reach a page
        // table, the heap or a stack (none of them is a `SwapBacked` folio).
        let anon = |pa| mm::anon::is_live_anon_page(self.memmap(), pa);
        assert!(
            dst != src && anon(dst) && anon(src),
            "copy_page: {dst} <- {src} is not a copy between two live anonymous pages"
        );
        // SAFETY: 1. distinct, aligned and in the memmap, so RAM (checked
        // above). 2. and 3. are `FrameSource::copy_page`'s contract, which
        // `mm`'s callers keep: `dst` is a page `alloc_anon_page` or
        // `alloc_anon_huge` just returned and that nothing maps yet; `src`
        // is a page of an anonymous folio (checked above) whose mapping
        // the caller holds under the space lock, so it stays allocated.
        unsafe { crate::vm::folios::copy_page(dst, src) };
    }
    fn memmap(&self) -> &mm::page::Memmap {
        memory::frame_allocator().memmap()
    }
    fn swap_dup(&self, entry: mm::pgtable::SwapEntry) -> Result<(), String> {
        crate::vm::swap::dup_entry(entry)
    }
}

/// The spaces that may map the same folios: a space and everything forked
/// from it, transitively.
pub struct Family {
    /// The live members.
    members: IrqSpinLock<Vec<Weak<AddressSpace>>>,
    /// The anon handle of every member there ever was (a child keeps
    /// mapping folios its gone parent made).
    handles: IrqSpinLock<Vec<AnonHandle>>,
}

pub(crate) struct Inner {
    pub(crate) table: PageTable<Format>,
    pub(crate) vmas: VmaSet,
}

/// Counts of what the faults of one space did; each only grows.
#[derive(Default)]
pub(crate) struct FaultCounts {
    /// Faults resolved in this space (demand-zero, young/dirty, spurious,
    /// copy on write).
    pub(crate) nr_faults: AtomicU64,
    /// Write faults that copied a shared page.
    pub(crate) nr_cow_copies: AtomicU64,
    /// Write faults that reused a write-protected page.
    pub(crate) nr_cow_reuses: AtomicU64,
    /// Faults that mapped a fresh 2 MiB folio.
    pub(crate) nr_thp_faults: AtomicU64,
    /// Read faults that mapped the huge zero folio.
    pub(crate) nr_thp_zero: AtomicU64,
    /// Faults in huge-page ranges that had to map 4 KiB pages.
    pub(crate) nr_thp_fallbacks: AtomicU64,
    /// Faults that brought a page back from swap.
    pub(crate) nr_swapins: AtomicU64,
    /// Faults handled with the space's lock held shared
    /// (`mm::fault::handle_fault_shared`); also counted in `nr_faults`.
    pub(crate) nr_shared_faults: AtomicU64,
}

/// Getters of [`FaultCounts`] on [`AddressSpace`], one per counter.
macro_rules! fault_count_getters {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $($(#[$doc])* pub fn $name(&self) -> u64 {
            self.counts.$name.load(core::sync::atomic::Ordering::Relaxed)
        })+
    };
}

/// An address space: areas and the page table that maps them.
pub struct AddressSpace {
    root: PhysAddr,
    inner: IrqRwLock<Option<Inner>>,
    /// What the faults in this space did (read with the `nr_*` methods).
    pub(crate) counts: FaultCounts,
    /// Whether a not-present fault here zeroes a 4 KiB page before taking
    /// the lock (`crate::vm::fault`): true while this space's last such
    /// fault that decided used a new 4 KiB page, false after one that did
    /// not (a swap-in, a huge page). A hint only: a wrong guess costs a
    /// page zeroed for nothing, or one zeroed under the lock.
    pub(crate) zero_ahead: AtomicBool,
    family: Arc<Family>,
}

/// Every fork family there is, to find the spaces that may map a folio
/// from its anon handle (reclaim's reverse map). Dead families are pruned
/// when a new one registers.
/// The teardown of a space unmaps this much at a time (`Drop`): at most
/// 1 MiB of gathered references.
const TEARDOWN_CHUNK: u64 = 512 << 20;

static FAMILIES: IrqSpinLock<Vec<Weak<Family>>> = IrqSpinLock::new(Vec::new());

/// Every family one of whose members (live or gone) had the anon handle
/// `handle`. Usually one; more when the root frame behind the handle was
/// freed by a dead space and reused by a new one, while a fork child of the
/// dead space still maps folios it made.
fn families_of_handle(handle: AnonHandle) -> Vec<Arc<Family>> {
    let families: Vec<Arc<Family>> = FAMILIES.lock().iter().filter_map(Weak::upgrade).collect();
    families.into_iter().filter(|f| f.handles.lock().contains(&handle)).collect()
}

/// The consistency checker over every address space there is, at rest:
/// the caller knows that nothing is in flight (no task faults, unmaps,
/// forks or holds a page of a space; reclaim quiesced:
/// `crate::vm::reclaim::quiesce`), as the test harness between tests.
/// Then every rule of `mm::debug` applies: the spaces are complete (a slot
/// count or table no space explains is a leak), the swap cache agrees
/// with its folios, every mapped anonymous folio is on the LRU lists,
/// nothing is locked or under writeback, refcounts are exact (no holds),
/// and every table [`crate::memory::paging`] handed out is reached.
/// Takes every space's lock (root order), then the areas' and the lists'
/// (leaves). Returns how many spaces it checked. With `exact` false, a
/// test still holding pages (GUP) or tables of its own (`tests::kit`)
/// may call it: refcounts are checked against a lower bound only, and
/// the tables are not counted.
pub fn check_all_at_rest(exact: bool) -> Result<usize, String> {
    let memmap = memory::frame_allocator().memmap();
    let families: Vec<Arc<Family>> = FAMILIES.lock().iter().filter_map(Weak::upgrade).collect();
    let refs: Vec<&Family> = families.iter().map(|f| &**f).collect();
    let mut handles: Vec<AnonHandle> = Vec::new();
    for f in &families {
        handles.extend_from_slice(&f.handles.lock());
    }
    let devices: Vec<_> = (0..mm::pgtable::format::MAX_SWAP_TYPES)
        .filter_map(|n| crate::vm::swap::area(mm::pgtable::SwapType::nth(n)))
        .collect();
    let areas: Vec<&mm::swap::area::SwapArea> = devices.iter().map(|d| &d.area).collect();
    let no_holds = |_: mm::Pfn| 0;
    with_families_locked(&refs, |members| {
        let spaces: Vec<_> = members.iter().map(|(_, inner)| (&inner.table, &inner.vmas)).collect();
        let scope = mm::debug::Scope {
            swap: Some(&areas),
            lru: crate::vm::reclaim::lru(),
            complete: true,
            quiescent: true,
            holds: exact.then_some(&no_holds as &dyn Fn(mm::Pfn) -> i32),
            nr_tables: exact.then(crate::memory::paging::nr_tables),
            window: 0,
        };
        mm::debug::check_spaces_in(&spaces, &KernelTables, &handles, memmap, &scope)
            .map(|_| spaces.len())
            .map_err(|e| format!("{} address spaces at rest: {e}", spaces.len()))
    })
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
            let mut guards: Vec<IrqWriteGuard<'_, Option<Inner>>> =
                members.iter().map(|m| m.lock()).collect();
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

pub(crate) fn find_space(root: PhysAddr) -> Option<Arc<AddressSpace>> {
    SPACES.lock().iter().find(|(r, _)| *r == root.as_u64()).and_then(|(_, w)| w.upgrade())
}

impl AddressSpace {
    fault_count_getters! {
        /// Faults resolved so far.
        nr_faults,
        /// Write faults that copied a shared page (copy on write).
        nr_cow_copies,
        /// Write faults that reused a write-protected page in place.
        nr_cow_reuses,
        /// Faults that mapped a fresh 2 MiB folio with a PMD leaf.
        nr_thp_faults,
        /// Read faults that mapped the huge zero folio.
        nr_thp_zero,
        /// Faults in huge-page eligible ranges that fell back to 4 KiB (no free
        /// 2 MiB block).
        nr_thp_fallbacks,
        /// Faults that brought a page back from swap.
        nr_swapins,
        /// Faults handled with the space's lock held shared (a first touch
        /// in an existing PTE table).
        nr_shared_faults,
    }

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
        PageTable::new_sharing(&KernelTables, memory::kernel_root(), Arch::KERNEL_SHARED)
            .map_err(|e| format!("new page table: {e}"))
    }

    /// Makes `inner` a space of `family`, findable by the fault handler.
    fn publish(inner: Inner, family: Arc<Family>) -> Arc<AddressSpace> {
        let root = inner.table.root();
        let space = Arc::new(AddressSpace {
            root,
            inner: IrqRwLock::new(Some(inner)),
            counts: FaultCounts::default(),
            zero_ahead: AtomicBool::new(true),
            family: family.clone(),
        });
        family.handles.lock().push(mm::anon::anon_handle(root));
        family.members.lock().push(Arc::downgrade(&space));
        SPACES.lock().push((root.as_u64(), Arc::downgrade(&space)));
        space
    }

    /// Takes this space's lock alone, serving TLB flush requests while
    /// spinning (its holder may be running a shootdown: see the module
    /// doc). Every change of the areas or the tables but one takes it so.
    pub(crate) fn lock(&self) -> IrqWriteGuard<'_, Option<Inner>> {
        self.inner.write_polling(crate::vm::tlb::handle_ipi)
    }

    /// Takes this space's lock shared, serving TLB flush requests while
    /// spinning: for the one change several CPUs may make at once, a fault
    /// that fills an empty entry of an existing PTE table
    /// (`mm::fault::handle_fault_shared`, under that table's own lock,
    /// [`crate::vm::ptlock`]).
    pub(crate) fn read(&self) -> IrqReadGuard<'_, Option<Inner>> {
        self.inner.read_polling(crate::vm::tlb::handle_ipi)
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
            &KernelFrames::PLAIN,
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
        // The page `i` whose fault compacted already: handled again with
        // compaction off (`crate::vm::compaction`).
        let mut compacted = None;
        while i < pages as u64 && error.is_none() {
            let va = VirtAddr::new(start.as_u64() + i * 4096);
            let frames = if compacted == Some(i) { &KernelFrames::PLAIN } else { &KernelFrames::FAULT };
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
                    frames,
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
                // Being migrated: sleep until the migration is over (it
                // holds the folio lock until every entry is restored), as
                // the fault path does, then try again (`mm::gup`'s module
                // doc).
                Err(mm::gup::GupError::Migrating { va, .. }) => crate::vm::migrate::wait(self, va),
                // In swap: bring it back without the lock, then try again.
                Err(mm::gup::GupError::Fault(FaultOutcome::NeedsSwapIn { page, entry })) => {
                    let access = if write { mm::fault::Access::Write } else { mm::fault::Access::Read };
                    if let Err(e) = crate::vm::fault::swap_in(self, access, page, entry) {
                        error = Some(format!("get_user_pages: {va}: {e}"));
                    }
                }
                // The fault GUP made met a migration entry: the same wait.
                Err(mm::gup::GupError::Fault(FaultOutcome::MigrationWait { page, .. })) => {
                    crate::vm::migrate::wait(self, page);
                }
                // A THP fault with no 2 MiB block: compact without the
                // lock, as the trap handler does, then once more without.
                Err(mm::gup::GupError::Fault(FaultOutcome::NeedsCompaction { request, .. })) => {
                    crate::vm::compaction::direct_compact(request);
                    compacted = Some(i);
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

    /// The swap entry a PTE at `va` holds, if any (the swap-in's recheck
    /// when an area is gone, and tests).
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
    pub fn folio_at(&self, va: VirtAddr) -> Result<(mm::Pfn, u8, bool), String> {
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

    /// Maps `len` bytes of anonymous memory at the highest free address
    /// aligned to `align` that ends at or below `limit` (a process's
    /// `mmap`: `mm::vma::VmaSet::map_below`).
    pub fn mmap_below(
        &self,
        limit: VirtAddr,
        len: u64,
        align: u64,
        prot: VmaProt,
    ) -> Result<VirtAddr, VmaError> {
        let mut guard = self.lock();
        let inner = guard.as_mut().expect("AddressSpace used after teardown");
        inner.vmas.map_below(limit, len, align, prot, VmaKind::Anonymous)
    }

    /// Maps `len` bytes of anonymous memory at `start`, which must be free
    /// (mmap's `MAP_FIXED_NOREPLACE`: `mm::vma::VmaSet::map_fixed`).
    pub fn mmap_fixed(&self, start: VirtAddr, len: u64, prot: VmaProt) -> Result<VirtAddr, VmaError> {
        let mut guard = self.lock();
        let inner = guard.as_mut().expect("AddressSpace used after teardown");
        inner.vmas.map_fixed(start, len, prot, VmaKind::Anonymous)
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
            split_cut_huge_pages(inner, start, len, |_| true)?;
            let ranges = inner.vmas.unmap(start, len)?;
            for &(s, e) in &ranges {
                zap(inner, s, e, &mut gather);
            }
            // The tables only the removed areas used go too (after the
            // shootdown), so a later mapping here may take PMD leaves.
            if let (Some(&(s, _)), Some(&(_, e))) = (ranges.first(), ranges.last()) {
                let (floor, ceiling) = inner.vmas.gap_around(s, e);
                mm::space::free_pgtables(&inner.table, &KernelTables, s, e, floor, ceiling, &mut gather);
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
            split_cut_huge_pages(inner, start, len, |_| true)?;
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
                    // Only a table for a split can fail (out of memory),
                    // and the splits were made above.
                    Err(e) => crate::println!("mprotect: {e}"),
                }
            }
            // Rights taken away must be gone everywhere before we return.
            flush.flush(&Shootdown);
        }
        Ok(())
    }

    /// `madvise` over `[start, start + len)`, which must be mapped:
    /// `DontNeed` drops the pages (the next touch reads zeros), `PageOut`
    /// writes them to swap, `Cold` deactivates them ([`Advice`]), `HugePage`
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
                Advice::Cold => {
                    let end = inner.vmas.check_mapped(start, len)?;
                    match mm::pageout::deactivate_range(
                        &inner.table,
                        &KernelTables,
                        memory::frame_allocator().memmap(),
                        crate::vm::reclaim::lru(),
                        start,
                        end,
                    ) {
                        Ok(cold) => cold.flush.flush(&Shootdown),
                        // Only a leaf that changed under the lock can
                        // fail: a kernel bug, not the caller's.
                        Err(e) => crate::println!("madvise(COLD): {e}"),
                    }
                }
                Advice::HugePage | Advice::NoHugePage => {
                    let mode = if advice == Advice::HugePage { ThpMode::Always } else { ThpMode::Never };
                    // A 2 MiB page at an area boundary this makes.
                    split_cut_huge_pages(inner, start, len, |v| v.thp != mode)?;
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
        crate::vm::reclaim::pageout(pageout);
        Ok(())
    }

    /// Whether an area covers `va`.
    pub fn has_area(&self, va: VirtAddr) -> bool {
        self.area_at(va).is_some()
    }

    /// The area that covers `va`, if one does.
    pub fn area_at(&self, va: VirtAddr) -> Option<mm::vma::Vma> {
        let guard = self.lock();
        guard.as_ref().and_then(|inner| inner.vmas.find(va).copied())
    }

    /// Every area, in address order (`/proc/<pid>/maps`).
    pub fn areas(&self) -> Vec<mm::vma::Vma> {
        let guard = self.lock();
        guard.as_ref().map(|inner| inner.vmas.iter().copied().collect()).unwrap_or_default()
    }

    /// `Ok` when areas cover all of `[start, start + len)` (madvise's and
    /// mincore's check).
    pub fn check_mapped(&self, start: VirtAddr, len: u64) -> Result<(), VmaError> {
        let guard = self.lock();
        let inner = guard.as_ref().expect("AddressSpace used after teardown");
        inner.vmas.check_mapped(start, len).map(|_| ())
    }

    /// One byte per page of `[start, start + len)`, which areas must
    /// cover: `mm::space::RESIDENT` for a page a present entry maps,
    /// `mm::space::NOT_PRESENT` for one in swap or being migrated
    /// (`mm::space::residency`; `mincore`, `mremap`).
    pub fn resident(&self, start: VirtAddr, len: u64) -> Result<Vec<u8>, VmaError> {
        let guard = self.lock();
        let inner = guard.as_ref().expect("AddressSpace used after teardown");
        let end = inner.vmas.check_mapped(start, len)?;
        Ok(mm::space::residency(&inner.table, &KernelTables, start, end))
    }

    /// What `/proc/<pid>/smaps` says of `[start, end)` (`mm::space::usage`).
    pub fn usage(&self, start: VirtAddr, end: VirtAddr) -> mm::space::Usage {
        let guard = self.lock();
        let inner = guard.as_ref().expect("AddressSpace used after teardown");
        mm::space::usage(&inner.table, &KernelTables, start, end)
    }

    /// `/proc/<pid>/pagemap`'s words of `[start, end)` (`mm::space::pagemap`).
    pub fn pagemap(&self, start: VirtAddr, end: VirtAddr) -> Vec<u64> {
        let guard = self.lock();
        let inner = guard.as_ref().expect("AddressSpace used after teardown");
        mm::space::pagemap(&inner.table, &KernelTables, memory::frame_allocator().memmap(), start, end)
    }

    /// Runs the consistency checker (`mm::debug::check_spaces_in`) over this
    /// space and every live space of its fork family, under all their locks
    /// (taken in root order), and returns this space's statistics. Exact
    /// while no member of the family is being dropped at the same time.
    ///
    /// The checker's heap use is bounded (`mm::debug::heap_bound`: its
    /// windows' counts, about 2.3 MiB, and a little per table frame) and
    /// taken under the family's locks, where the heap cannot wait for
    /// reclaim: so the room is taken first, reclaiming if need be, for
    /// every table frame handed out. Without it the check fails with a
    /// message, and nothing else does.
    pub fn check(&self) -> Result<Stats, String> {
        let memmap = memory::frame_allocator().memmap();
        let bound = mm::debug::heap_bound(crate::memory::paging::nr_tables());
        memory::heap::reserve(bound as usize, crate::vm::reclaim::alloc_frames_reclaiming).map_err(|e| {
            format!(
                "check: no memory for the checker's tables ({} KiB wanted, {} KiB free)",
                e.wanted >> 10,
                e.free >> 10
            )
        })?;
        let result = self.check_locked(memmap);
        memory::heap::trim();
        result
    }

    fn check_locked(&self, memmap: &'static mm::page::Memmap) -> Result<Stats, String> {
        self.with_family_locked(|members| {
            let mine = members.iter().position(|(root, _)| *root == self.root);
            let spaces: Vec<_> = members.iter().map(|(_, inner)| (&inner.table, &inner.vmas)).collect();
            let handles = self.family.handles.lock().clone();
            // Every area (a leaf lock each, taken one call at a time): the
            // family's slots must count exactly its entries. Not quiescent
            // (reclaim and swap-in may be half-way on another CPU) nor
            // complete (other families exist): the rules that need those
            // are for a check of every space at rest.
            let devices: Vec<_> = (0..mm::pgtable::format::MAX_SWAP_TYPES)
                .filter_map(|n| crate::vm::swap::area(mm::pgtable::SwapType::nth(n)))
                .collect();
            let areas: Vec<&mm::swap::area::SwapArea> = devices.iter().map(|d| &d.area).collect();
            let scope = mm::debug::Scope { swap: Some(&areas), ..mm::debug::Scope::default() };
            let checked = mm::debug::check_spaces_in(&spaces, &KernelTables, &handles, memmap, &scope);
            match (mine, checked) {
                (Some(i), Ok(stats)) => Ok(stats[i]),
                (None, _) => Err(String::from("check: address space torn down")),
                (_, Err(e)) => Err(format!("address space {} (family of {}): {e}", self.root, spaces.len())),
            }
        })
    }

    /// [`AddressSpace::check`] at a point where the caller knows nothing
    /// else runs (its tasks joined): kcompactd and reclaim are quiesced first, and every
    /// space is checked at rest too ([`check_all_at_rest`], not exact: the
    /// caller may hold pages).
    pub fn check_at_rest(&self) -> Result<Stats, String> {
        crate::vm::compaction::quiesce();
        crate::vm::reclaim::quiesce();
        check_all_at_rest(false)?;
        self.check()
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
        // A chunk at a time: the gathered references grow with the pages
        // mapped (8 bytes each), and a whole large space's would not fit
        // in one heap block. Chunks are 2 MiB-aligned, so none cuts a huge
        // page.
        let memmap = memory::frame_allocator().memmap();
        // Each area's range in chunks, then the whole user range (where
        // nothing is left to gather: entries lie inside areas).
        let ranges: Vec<(u64, u64)> = match self.lock().as_ref() {
            Some(inner) => inner.vmas.iter().map(|v| (v.start.as_u64(), v.end.as_u64())).collect(),
            None => return,
        };
        let chunks = ranges
            .into_iter()
            .flat_map(|(start, end)| {
                let first = start & !(TEARDOWN_CHUNK - 1);
                (first..end)
                    .step_by(TEARDOWN_CHUNK as usize)
                    .map(move |c| (c.max(start), (c + TEARDOWN_CHUNK).min(end)))
            })
            .chain([(0, USER_END)]);
        for (at, end) in chunks {
            let mut gather = Gather::new(self.root);
            {
                let mut guard = self.lock();
                let Some(inner) = guard.as_mut() else { return };
                zap(inner, VirtAddr::new(at), VirtAddr::new(end), &mut gather);
            }
            // Nothing to flush (see above); the references go now.
            gather.take_flush().ignore();
            for entry in gather.take_swap_entries() {
                crate::vm::swap::free_entry(entry);
            }
            gather.release_unmapped(memmap, &mut crate::vm::swap::drop_unmapped_cache_folio, &mut |f| {
                crate::vm::folios::free_folio(f)
            });
        }
        let Some(inner) = self.lock().take() else { return };
        inner.table.destroy(&KernelTables, Arch::KERNEL_SHARED);
    }
}

/// Runs `f` over the page tables of every live space that may map the
/// anonymous `folio` (every fork family one of whose members had its anon
/// handle), with all their locks held, taken in root order
/// ([`with_families_locked`]). Reclaim's split and unmap run under it
/// (`mm::reclaim`, through [`crate::vm::reclaim`]'s host).
pub(crate) fn with_folio_family_locked<R>(
    folio: &Folio<'static>,
    f: impl FnOnce(&[&PageTable<Format>]) -> R,
) -> R {
    let families = folio.anon_handle().map(families_of_handle).unwrap_or_default();
    let families: Vec<&Family> = families.iter().map(|f| &**f).collect();
    with_families_locked(&families, |members| {
        let tables: Vec<&PageTable<Format>> = members.iter().map(|(_, inner)| &inner.table).collect();
        f(&tables)
    })
}

/// The address spaces as swapoff walks them (`mm::swapoff`): every live
/// space, its lock, and the fault path's swap-in of one entry
/// ([`crate::vm::fault::swap_in`], as a read fault).
pub(crate) struct Spaces;

impl mm::swapoff::SwapoffHost for Spaces {
    type Space = Arc<AddressSpace>;
    type Format = Format;
    type Mem = KernelTables;

    fn mem(&self) -> &KernelTables {
        &KernelTables
    }
    fn memmap(&self) -> &'static mm::page::Memmap {
        memory::frame_allocator().memmap()
    }
    fn spaces(&self) -> Vec<Arc<AddressSpace>> {
        SPACES.lock().iter().filter_map(|(_, w)| w.upgrade()).collect()
    }
    fn user_end(&self) -> VirtAddr {
        VirtAddr::new(USER_END)
    }
    fn with_space_locked<R>(
        &self,
        space: &Arc<AddressSpace>,
        f: impl FnOnce(&PageTable<Format>) -> R,
    ) -> Option<R> {
        let guard = space.lock();
        guard.as_ref().map(|inner| f(&inner.table))
    }
    fn swap_in(
        &self,
        space: &Arc<AddressSpace>,
        va: VirtAddr,
        entry: mm::pgtable::SwapEntry,
    ) -> Result<(), String> {
        crate::vm::fault::swap_in(space, mm::fault::Access::Read, va, entry)
            .map_err(|e| format!("swapoff: {} {va}: {e}", space.root))
    }
    fn put(&self, folio: Folio<'static>) {
        crate::vm::swap::put(folio);
    }
    fn relax(&self) {
        sched::yield_now();
    }
    fn wait_in_flight(&self) {
        crate::vm::reclaim::drain_deferred();
        sched::sleep_ms(10);
    }
}

/// Releases holds taken by [`AddressSpace::get_user_pages`] (no lock
/// needed; a folio whose last reference that was is freed).
pub fn release_user_pages(pages: &[PhysAddr], hold: Hold) {
    let memmap = memory::frame_allocator().memmap();
    for &pa in pages {
        if let Some(folio) = mm::gup::release(memmap, pa, hold) {
            crate::vm::folios::free_folio(folio);
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
    /// `MADV_COLD`: deactivate the range's anonymous pages: the folios this
    /// space maps alone and that lie wholly inside go to the inactive
    /// list's tail and lose their referenced and young marks, so reclaim
    /// takes them first (`mm::pageout::deactivate_range`). Nothing is
    /// written or freed; a huge page the range cuts stays as it is.
    Cold,
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
        &mut |f| crate::vm::folios::free_folio(f),
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
            crate::vm::folios::free_folio(f)
        })
    {
        crate::println!("vm: unmap [{start}, {end}): {e}");
    }
}

/// Splits the 2 MiB pages that `[start, start + len)` cuts at either end,
/// where the area there satisfies `changes` (the operation will change it,
/// so that a boundary would fall inside the huge page): before an
/// operation changes its areas, so that a split that finds no memory for
/// its table fails the operation with nothing changed
/// (`VmaError::OutOfMemory`) instead of leaving a huge page across two
/// areas or a leaf its area no longer allows. A split already made stays:
/// the pages are the same, mapped by 4 KiB entries.
fn split_cut_huge_pages(
    inner: &mut Inner,
    start: VirtAddr,
    len: u64,
    changes: impl Fn(&mm::vma::Vma) -> bool,
) -> Result<(), VmaError> {
    let memmap = memory::frame_allocator().memmap();
    let end = VirtAddr::new(start.as_u64().saturating_add(len));
    for at in [start, end] {
        if inner.vmas.find(at).is_some_and(|v| v.start != at && changes(v)) {
            match mm::thp::split_huge_pmd_if_cut(&inner.table, &KernelTables, &Shootdown, memmap, at) {
                Ok(_) => {}
                Err(mm::pgtable::PgError::OutOfMemory) => return Err(VmaError::OutOfMemory),
                // Anything else is left for the operation to meet and report.
                Err(e) => crate::println!("vm: split at {at}: {e}"),
            }
        }
    }
    Ok(())
}

/// Shoots the gathered range down on every CPU, then gives back the page
/// tables munmap unhooked and drops the references (freeing the folios
/// whose last they were).
fn finish_gather(mut gather: Gather) {
    gather.take_flush().flush(&Shootdown);
    gather.free_tables(&KernelTables);
    for entry in gather.take_swap_entries() {
        crate::vm::swap::free_entry(entry);
    }
    gather.release_unmapped(
        memory::frame_allocator().memmap(),
        &mut crate::vm::swap::drop_unmapped_cache_folio,
        &mut |f| crate::vm::folios::free_folio(f),
    );
}

/// Installs the fault hooks (kernel tasks' and the user-access
/// routines'). Boot CPU, once, before tasks touch address spaces.
pub fn init() {
    SPACES.lock().reserve(RESERVED_SPACES);
    FAMILIES.lock().reserve(RESERVED_SPACES);
    crate::vm::folios::init_huge_zero();
    arch::trap::set_fault_hook(crate::vm::fault::on_fault);
    crate::vm::uaccess::init();
    // The kernel IPI serves this CPU's TLB flush requests.
    sched::set_ipi_hook(crate::vm::tlb::handle_ipi);
    // Freed kernel stacks are flushed everywhere before their slots are reused.
    memory::stacks::set_flush_hook(crate::vm::tlb::flush_kernel_everywhere);
}
