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

use crate::arch;
use crate::memory;
use crate::paging::{Format, KernelTables, KERNEL_SHARED};
use crate::sched;
use crate::sync::IrqSpinLock;
use crate::tlb::Shootdown;
use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use mm::debug::Stats;
use mm::fault::{FaultOutcome, FrameSource, MemFault};
use mm::folio::Folio;
use mm::pgtable::{Decoded, Flush, Level, PageSize, PageTable};
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
}

struct Inner {
    table: PageTable<Format>,
    vmas: VmaSet,
}

/// An address space: areas and the page table that maps them.
pub struct AddressSpace {
    root: PhysAddr,
    inner: IrqSpinLock<Option<Inner>>,
    /// Faults resolved in this space (demand-zero, young/dirty, spurious).
    nr_faults: core::sync::atomic::AtomicU64,
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
        #[cfg(target_arch = "x86_64")]
        let table = PageTable::new_sharing(&KernelTables, memory::kernel_root(), KERNEL_SHARED);
        #[cfg(target_arch = "aarch64")]
        let table = PageTable::new(&KernelTables);
        let table = table.map_err(|e| format!("new page table: {e}"))?;
        let root = table.root();
        let vmas = VmaSet::new(VirtAddr::new(USER_START), VirtAddr::new(USER_END));
        let space = Arc::new(AddressSpace {
            root,
            inner: IrqSpinLock::new(Some(Inner { table, vmas })),
            nr_faults: core::sync::atomic::AtomicU64::new(0),
        });
        SPACES.lock().push((root.as_u64(), Arc::downgrade(&space)));
        Ok(space)
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
        let mut guard = self.inner.lock();
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
            let mut guard = self.inner.lock();
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

    /// Runs the consistency checker (`mm::debug`) over this space's table,
    /// areas and folio counts, under the space's lock.
    pub fn check(&self) -> Result<Stats, String> {
        let guard = self.inner.lock();
        let inner = guard.as_ref().ok_or("check: address space torn down")?;
        let memmap = memory::frame_allocator().memmap();
        mm::debug::check_address_space(&inner.table, &inner.vmas, &KernelTables, memmap)
            .map_err(|e| format!("address space {}: {e}", self.root))
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
        match cpu {
            Some(c) => sched::spawn_in_on(c, self.root, keep, name, f),
            None => sched::spawn_in(self.root, keep, name, f),
        }
        .map_err(|e| format!("spawn: {e:?}"))
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        SPACES.lock().retain(|(r, _)| *r != self.root.as_u64());
        let Some(inner) = self.inner.lock().take() else { return };
        // No task runs in the space any more (each held an `Arc`), and
        // every CPU that ran one switched away (loading another root), so
        // nothing caches its translations: drop the folios' mappings (the
        // entries go with the tables), then the tables.
        let memmap = memory::frame_allocator().memmap();
        let mut folios: Vec<Folio<'static>> = Vec::new();
        inner.table.visit(&KernelTables, VirtAddr::new(0), VirtAddr::new(USER_END), &mut |_, _, entry, _| {
            if let Decoded::Leaf(leaf) = entry {
                folios.push(mm::anon::remove_pte_mapping(memmap, leaf.frame));
            }
        });
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
        let guard = space.inner.lock();
        let Some(inner) = guard.as_ref() else { return false };
        mm::fault::handle_fault(
            &inner.table,
            &inner.vmas,
            &KernelTables,
            &KernelFrames,
            &arch::mmu::Tlb,
            fault,
            true,
        )
    };
    match outcome {
        FaultOutcome::Resolved | FaultOutcome::Spurious => {
            space.nr_faults.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
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
fn load(addr: u64) -> u8 {
    // SAFETY: `addr` lies in an area of the running task's address space:
    // the load either succeeds or faults into `on_fault`, which maps the page
    // (then the load is retried) or ends this task without returning here.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// A plain store (see [`load`]).
fn store(addr: u64, value: u8) {
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
    let guard = space.inner.lock();
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

pub(crate) const TESTS: &[Test] = &[
    Test { name: "vm::demand_zero_pages_fill_on_touch", run: demand_zero_pages_fill_on_touch },
    Test { name: "vm::bad_accesses_end_only_the_task", run: bad_accesses_end_only_the_task },
    Test { name: "vm::faults_from_every_cpu", run: faults_from_every_cpu },
    Test {
        name: "vm::folio_counts_after_faults_from_every_cpu_and_partial_munmap",
        run: folio_counts_after_faults_from_every_cpu_and_partial_munmap,
    },
];
