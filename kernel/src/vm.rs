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
use mm::pgtable::{Decoded, Flush, Leaf, Level, PageSize, PageTable};
use mm::vma::{VmaError, VmaKind, VmaProt, VmaSet};
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
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        memory::copy_page(dst, src);
    }
    fn memmap(&self) -> &mm::page::Memmap {
        memory::frame_allocator().memmap()
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
    family: Arc<Family>,
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

    /// A copy of this space for a child (see the module doc): the same
    /// areas; every anonymous page shared read-only by both sides (copy
    /// on write), except pages that may be pinned, which the child gets a
    /// copy of at once. Fails (leaving the parent as it was, give or take
    /// write protection) when memory runs out.
    pub fn fork(&self) -> Result<Arc<AddressSpace>, String> {
        let memmap = memory::frame_allocator().memmap();
        let table = Self::new_table()?;
        let mut guard = self.lock();
        let parent = guard.as_mut().ok_or("fork: address space torn down")?;
        let child_handle = mm::anon::anon_handle(table.root());
        let child = Inner { table, vmas: parent.vmas.clone() };
        let mut leaves = Vec::new();
        parent.table.visit(
            &KernelTables,
            VirtAddr::new(0),
            VirtAddr::new(USER_END),
            &mut |va, level, entry, _| {
                if let Decoded::Leaf(leaf) = entry {
                    leaves.push((va, level, leaf));
                }
            },
        );
        let mut flush = Flush::none(self.root);
        let mut error = None;
        for (va, level, leaf) in leaves {
            // Only 4 KiB anonymous leaves exist until THP (issue 5).
            debug_assert_eq!(level, Level::Pte);
            let Some(folio) = mm::folio::folio_of(memmap, leaf.frame.pfn()) else {
                error = Some(format!("fork: {va} maps {}, not a folio", leaf.frame));
                break;
            };
            if folio.maybe_pinned() {
                // §8: a maybe-pinned page stays the parent's, exclusive;
                // the child gets its own copy now.
                let Some(copy) = memory::alloc_anon_page(child_handle, va.as_u64() >> 12) else {
                    error = Some(String::from("fork: out of memory for a pinned page's copy"));
                    break;
                };
                memory::copy_page(copy, leaf.frame);
                if let Err(e) = child.table.map(&KernelTables, va, Leaf { frame: copy, dirty: true, ..leaf })
                {
                    KernelFrames.release_anon_page(copy);
                    error = Some(format!("fork: map {va} in the child: {e}"));
                    break;
                }
                continue;
            }
            let shared = Leaf { prot: mm::pgtable::Prot { writable: false, ..leaf.prot }, ..leaf };
            if let Err(e) = child.table.map(&KernelTables, va, shared) {
                error = Some(format!("fork: map {va} in the child: {e}"));
                break;
            }
            folio.get();
            folio.add_page_mapcount(0, 1);
            folio.clear_flag(mm::page::PageFlag::AnonExclusive);
            if leaf.prot.writable {
                // Known gap: on x86 a CPU may set the dirty bit between
                // our read and this write; nothing reads dirty for
                // anonymous pages yet (no swap).
                match parent.table.update_leaf(&KernelTables, va, level, shared) {
                    Ok(f) => flush = flush.merge(f),
                    Err(e) => {
                        error = Some(format!("fork: write-protect {va}: {e}"));
                        break;
                    }
                }
            }
        }
        // Every CPU drops its writable translations of the shared pages
        // before anyone (either side) runs on: interrupts may be off here
        // (see the module doc).
        flush.flush(&Shootdown);
        let child = Self::publish(child, self.family.clone());
        drop(guard);
        match error {
            None => Ok(child),
            Some(e) => Err(e), // dropping `child` gives back what it mapped
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

    /// Maps `len` bytes of anonymous memory anywhere, aligned to `align`.
    pub fn mmap(&self, len: u64, align: u64, prot: VmaProt) -> Result<VirtAddr, VmaError> {
        let mut guard = self.lock();
        let inner = guard.as_mut().expect("AddressSpace used after teardown");
        inner.vmas.map_anywhere(len, align, prot, VmaKind::Anonymous)
    }

    /// Unmaps `[start, start + len)`: areas, page-table entries and the
    /// folios they mapped (freed after the shootdown).
    pub fn munmap(&self, start: VirtAddr, len: u64) -> Result<(), VmaError> {
        let memmap = memory::frame_allocator().memmap();
        let mut folios: Vec<Folio<'static>> = Vec::new();
        let mut flush = Flush::none(self.root);
        {
            let mut guard = self.lock();
            let inner = guard.as_mut().expect("AddressSpace used after teardown");
            let ranges = inner.vmas.unmap(start, len)?;
            for (s, e) in ranges {
                let mut leaves = Vec::new();
                inner.table.visit(&KernelTables, s, e, &mut |va, level, entry, _| {
                    if let Decoded::Leaf(leaf) = entry {
                        leaves.push((va, level, leaf));
                    }
                });
                for (va, level, leaf) in leaves {
                    // Only 4 KiB leaves exist until THP (issue 5).
                    debug_assert_eq!(level, Level::Pte);
                    if let Ok((_, f)) = inner.table.unmap(&KernelTables, va, PageSize::Size4K) {
                        flush = flush.merge(f);
                        folios.push(mm::anon::remove_pte_mapping(memmap, leaf.frame));
                    }
                }
            }
        }
        flush.flush(&Shootdown);
        for folio in folios {
            memory::put_anon_folio(folio);
        }
        Ok(())
    }

    /// Runs the consistency checker (`mm::debug::check_spaces`) over this
    /// space and every live space of its fork family, under all their locks
    /// (taken in root order), and returns this space's statistics. Exact
    /// while no member of the family is being dropped at the same time.
    pub fn check(&self) -> Result<Stats, String> {
        let memmap = memory::frame_allocator().memmap();
        let live = |family: &Family| -> Vec<Arc<AddressSpace>> {
            let mut v: Vec<_> = family.members.lock().iter().filter_map(Weak::upgrade).collect();
            v.sort_by_key(|s| s.root.as_u64());
            v
        };
        loop {
            let members = live(&self.family);
            let mut guards: Vec<IrqGuard<'_, Option<Inner>>> = members.iter().map(|m| m.lock()).collect();
            // A fork that registered a member after the snapshot did it
            // under a lock we now hold: look again, and retry if so.
            let again = live(&self.family);
            let same =
                again.len() == members.len() && again.iter().zip(&members).all(|(a, b)| a.root == b.root);
            let result = if same {
                let mut spaces = Vec::new();
                let mut mine = None;
                for (m, g) in members.iter().zip(&guards) {
                    if let Some(inner) = g.as_ref() {
                        if m.root == self.root {
                            mine = Some(spaces.len());
                        }
                        spaces.push((&inner.table, &inner.vmas));
                    }
                }
                let handles = self.family.handles.lock().clone();
                Some(match (mine, mm::debug::check_spaces(&spaces, &KernelTables, &handles, memmap)) {
                    (Some(i), Ok(stats)) => Ok(stats[i]),
                    (None, _) => Err(String::from("check: address space torn down")),
                    (_, Err(e)) => {
                        Err(format!("address space {} (family of {}): {e}", self.root, spaces.len()))
                    }
                })
            } else {
                None
            };
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
        let memmap = memory::frame_allocator().memmap();
        let mut folios: Vec<Folio<'static>> = Vec::new();
        let inner = {
            let mut guard = self.lock();
            let Some(inner) = guard.take() else { return };
            inner.table.visit(
                &KernelTables,
                VirtAddr::new(0),
                VirtAddr::new(USER_END),
                &mut |_, _, entry, _| {
                    if let Decoded::Leaf(leaf) = entry {
                        folios.push(mm::anon::remove_pte_mapping(memmap, leaf.frame));
                    }
                },
            );
            inner
        };
        for folio in folios {
            memory::put_anon_folio(folio);
        }
        inner.table.destroy(&KernelTables, KERNEL_SHARED);
    }
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
        FaultOutcome::Resolved | FaultOutcome::Spurious | FaultOutcome::Reused | FaultOutcome::Copied => {
            count(&space.nr_faults);
            match outcome {
                FaultOutcome::Reused => count(&space.nr_cow_reuses),
                FaultOutcome::Copied => count(&space.nr_cow_copies),
                _ => 0,
            };
            true
        }
        FaultOutcome::Refused(why) => {
            drop(space);
            sched::kill_current(format!("{why:?}: {:?} at {}", fault.access, fault.addr))
        }
        FaultOutcome::OutOfMemory => {
            drop(space);
            sched::kill_current(format!("out of memory on a {:?} fault at {}", fault.access, fault.addr))
        }
    }
}

/// Installs the fault hook. Boot CPU, once, before tasks touch address spaces.
pub fn init() {
    SPACES.lock().reserve(RESERVED_SPACES);
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
];
