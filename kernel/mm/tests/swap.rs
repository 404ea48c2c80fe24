//! Swap-out and swap-in over both real formats: the swap cache
//! (`mm::swap::cache`), unmapping to swap with the exclusive bit
//! (`mm::swap::unmap`), the two halves of swap-in (`mm::swap::swapin`),
//! fork and munmap of swap entries (`mm::space`), with the consistency
//! checker (`mm::debug::check_spaces_with_swap`) after the steps, and at
//! teardown every frame back in the allocator and every slot free.
//!
//! The world is the one of `tests/thp.rs` (a real `FrameAllocator` over a
//! leaked memmap, page tables in `SimMemory`, simulated frame contents, a
//! simulated CPU with a software TLB) plus:
//! - one `SwapArea` of [`SWAP_PAGES`] pages made from a formatted and
//!   parsed mkswap header;
//! - a RAM disk behind `SwapBackend` ([`Sys`]), with switches that make the
//!   next reads, writes or allocations fail. It checks the protocol too: a
//!   read is only of slots that somebody claimed (HAS_CACHE) and that a
//!   page-table entry still holds, a write only of slots in the cache;
//! - the kernel's sequences (`kernel/src/reclaim.rs` `shrink_locked`,
//!   `kernel/src/vm.rs` `swap_in`, `kernel/src/swap.rs` `free_entry`)
//!   re-enacted here over the sim: [`World::shrink`], [`World::swap_in`],
//!   [`Sys::free_swap_entry`].
//!
//! The bug-replay switch word is global to the process: every test takes
//! [`SWITCH`] shared, the one that turns `ForgetAnonExclusive` on takes it
//! alone.

use mm::testkit::rng::Rng;

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::anon::{alloc_anon_folio, anon_handle, remove_pte_mapping};
use mm::bugs::{self, Bug};
use mm::debug::{check_spaces_with_swap, ConsistencyError, Stats};
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::{folio_of, Folio, UnpublishedFolio};
use mm::frame::{AllocKind, FrameAllocator};
use mm::gup::{get_user_page, release, Hold};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Flush, Leaf, Level, NonPresent, PageTable, SwapEntry, TlbHooks};
use mm::space::{fork_range, protect_range, zap_range, Gather};
use mm::swap::area::SwapArea;
use mm::swap::cache::{
    add_to_swap, delete_from_swap_cache, folio_entry, lookup_get, nth_entry, slots_unused,
};
use mm::swap::header::{format, parse};
use mm::swap::swapin::{
    get_swapped_folio, get_swapped_folio_with_run, intact_run, map_swapped_in, SwapBackend, SwapInError,
    SwapInOutcome,
};
use mm::swap::unmap::unmap_to_swap;
use mm::thp::{alloc_anon_huge_folio, remove_pmd_mapping, HPAGE_NR, HPAGE_ORDER, HPAGE_SIZE};
use mm::vma::{ThpMode, VmaKind, VmaProt, VmaSet};
use mm::{PhysAddr, VirtAddr};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const MEMMAP_BASE: u64 = 0x80000;
const MEMMAP_LEN: usize = 8192;
const PAGE: u64 = 4096;
const HP: u64 = HPAGE_SIZE;
/// The start of the areas the tests map: 2 MiB-aligned.
const AREA: u64 = 0x10_0000_0000;
const USER_END: u64 = 0x8000_0000_0000;
const RW: VmaProt = VmaProt::READ_WRITE;
/// The swap area's type and size (8 clusters; cluster 0 holds the header).
const TY: u8 = 2;
const SWAP_PAGES: u64 = 4096;

/// Shared by every test; taken alone by the one that flips a bug switch.
static SWITCH: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    SWITCH.read().unwrap_or_else(|e| e.into_inner())
}

/// Turns a bug switch on for as long as it lives (off again on drop, also
/// when the test panics), holding [`SWITCH`] alone.
struct BugOn {
    bug: Bug,
    _alone: RwLockWriteGuard<'static, ()>,
}

impl BugOn {
    fn new(bug: Bug) -> BugOn {
        let alone = SWITCH.write().unwrap_or_else(|e| e.into_inner());
        bugs::enable(bug);
        BugOn { bug, _alone: alone }
    }
}

impl Drop for BugOn {
    fn drop(&mut self) {
        bugs::disable(self.bug);
    }
}

type Bytes = Box<[u8; 4096]>;

/// The contents tests give page `p` in version `tag` (0: the zero page):
/// every byte of every page differs from its neighbours and versions, so a
/// page read from the wrong slot, a stale copy or a lost write is caught.
fn page_bytes(p: u64, tag: u8) -> Bytes {
    let mut b = Box::new([0u8; 4096]);
    if tag != 0 {
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = ((p >> 12).wrapping_mul(131) + i as u64 * 7 + u64::from(tag) * 13) as u8;
        }
    }
    b
}

fn va(raw: u64) -> VirtAddr {
    VirtAddr::new(raw)
}

fn pages(start: u64, n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| start + i * PAGE)
}

fn small_stats(n: u64) -> Stats {
    Stats { nr_pages_mapped: n, nr_folios: n, nr_pte_leaves: n, ..Stats::default() }
}

// ------------------------------------------------------------------ memory and disk

/// Frames, their simulated contents, the swap area and its RAM disk.
struct Sys {
    fa: &'static FrameAllocator,
    /// The bytes of every data frame handed out, by PFN. A frame not here
    /// is free: touching it is a use after free.
    data: RefCell<HashMap<u64, Bytes>>,
    area: SwapArea,
    /// The disk: slot offset -> the page written there last.
    disk: RefCell<HashMap<u64, Bytes>>,
    /// The next this many reads / writes / swap-in allocations fail.
    fail_reads: Cell<u32>,
    fail_writes: Cell<u32>,
    fail_allocs: Cell<u32>,
    /// The next this many huge swap-in allocations fail.
    fail_huge_allocs: Cell<u32>,
    /// Pages read from and written to the disk.
    nr_reads: Cell<u64>,
    /// Read requests (one per `read` call that succeeded).
    nr_read_calls: Cell<u64>,
    nr_writes: Cell<u64>,
    /// 4 KiB copies made (copy on write).
    nr_copies: Cell<u64>,
}

impl Sys {
    fn fill_zero(&self, pa: PhysAddr, nr: u64) {
        let mut data = self.data.borrow_mut();
        for pfn in pa.pfn()..pa.pfn() + nr {
            assert!(data.insert(pfn, Box::new([0; 4096])).is_none(), "frame {pfn:#x} handed out twice");
        }
    }

    /// Gives back a folio whose last reference is gone.
    fn free(&self, folio: Folio<'static>) {
        {
            let mut data = self.data.borrow_mut();
            for pfn in folio.pfn()..folio.pfn() + folio.nr_pages() as u64 {
                assert!(data.remove(&pfn).is_some(), "free: frame {pfn:#x} was never handed out");
            }
        }
        self.fa.free_folio(folio);
    }

    /// Drops one reference, freeing the folio when it was the last.
    fn put(&self, folio: Folio<'static>) {
        if folio.put() {
            self.free(folio);
        }
    }

    fn frame(&self, pfn: u64) -> Bytes {
        self.data.borrow().get(&pfn).unwrap_or_else(|| panic!("read of free frame {pfn:#x}")).clone()
    }

    fn byte(&self, pa: PhysAddr) -> u8 {
        self.frame(pa.pfn())[(pa.as_u64() & 4095) as usize]
    }

    fn set_byte(&self, pa: PhysAddr, value: u8) {
        let mut data = self.data.borrow_mut();
        let frame = data.get_mut(&pa.pfn()).unwrap_or_else(|| panic!("write to free frame {:#x}", pa.pfn()));
        frame[(pa.as_u64() & 4095) as usize] = value;
    }

    fn set_frame(&self, pfn: u64, bytes: Bytes) {
        *self.data.borrow_mut().get_mut(&pfn).unwrap_or_else(|| panic!("write to free frame {pfn:#x}")) =
            bytes;
    }

    /// A page-table entry holding `entry` is gone (munmap, exit): the
    /// slot loses a count, and when that was the last and a folio is still
    /// in the cache for it, the folio is dropped if nobody uses it (as
    /// `free_entry` in `kernel/src/swap.rs`).
    fn free_swap_entry(&self, entry: SwapEntry) {
        match self.area.free_ref(entry) {
            Ok(0) if self.area.has_cache(entry) => self.drop_unused_cache_folio(entry),
            Ok(_) => {}
            Err(e) => panic!("free of {entry:?}: {e}"),
        }
    }

    fn drop_unused_cache_folio(&self, entry: SwapEntry) {
        let Some((folio, _)) = lookup_get(&self.area, self.fa.memmap(), entry) else { return };
        if folio.try_lock() {
            let unused = folio.test_flag(PageFlag::SwapCache)
                && folio.total_mapcount() == 0
                && !folio.test_flag(PageFlag::Writeback)
                && slots_unused(&self.area, &folio);
            let refs = if unused { delete_from_swap_cache(&self.area, &folio) } else { 0 };
            folio.unlock();
            for _ in 0..refs {
                self.put(folio);
            }
        }
        self.put(folio);
    }
}

impl SwapBackend for Sys {
    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        if self.fail_reads.get() > 0 {
            self.fail_reads.set(self.fail_reads.get() - 1);
            return Err(String::from("injected read error"));
        }
        for i in 0..nr {
            let e = nth_entry(first, i);
            // Seed 002: only a claimed slot that an entry still holds may
            // be read (a freed slot may already hold another page).
            assert!(
                self.area.has_cache(e) && self.area.count(e) > 0,
                "read of slot {e:?}: count {}, has_cache {}",
                self.area.count(e),
                self.area.has_cache(e)
            );
            let bytes = self.disk.borrow().get(&e.offset()).cloned();
            let bytes = bytes.unwrap_or_else(|| panic!("read of slot {e:?}, never written"));
            self.set_frame(frame.pfn() + i as u64, bytes);
        }
        self.nr_reads.set(self.nr_reads.get() + nr as u64);
        self.nr_read_calls.set(self.nr_read_calls.get() + 1);
        Ok(())
    }

    fn write(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        if self.fail_writes.get() > 0 {
            self.fail_writes.set(self.fail_writes.get() - 1);
            return Err(String::from("injected write error"));
        }
        for i in 0..nr {
            let e = nth_entry(first, i);
            assert!(self.area.has_cache(e), "write of slot {e:?}, which is not in the cache");
            let bytes = self.frame(frame.pfn() + i as u64);
            self.disk.borrow_mut().insert(e.offset(), bytes);
        }
        self.nr_writes.set(self.nr_writes.get() + nr as u64);
        Ok(())
    }

    fn relax(&self) {
        panic!("swap-in waits for a folio lock or a claim, which no one can release in a one-thread test");
    }

    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        if self.fail_allocs.get() > 0 {
            self.fail_allocs.set(self.fail_allocs.get() - 1);
            return None;
        }
        let f = self.fa.alloc_folio(0, AllocKind::Normal).ok()?;
        self.fill_zero(PhysAddr::new(f.pfn() << 12), 1);
        Some(f)
    }

    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        if self.fail_huge_allocs.get() > 0 {
            self.fail_huge_allocs.set(self.fail_huge_allocs.get() - 1);
            return None;
        }
        let f = self.fa.alloc_folio(HPAGE_ORDER, AllocKind::Normal).ok()?;
        self.fill_zero(PhysAddr::new(f.pfn() << 12), HPAGE_NR as u64);
        Some(f)
    }

    fn free_folio(&self, folio: Folio<'static>) {
        self.free(folio);
    }
}

impl FrameSource for Sys {
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let f =
            alloc_anon_folio(self.fa, AllocKind::Normal, handle, index, |pa| self.fill_zero(pa, 1)).ok()?;
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.put(remove_pte_mapping(self.fa.memmap(), pa));
    }
    fn alloc_anon_huge(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let f = alloc_anon_huge_folio(self.fa, AllocKind::Normal, handle, index, |pa| {
            self.fill_zero(pa, HPAGE_NR as u64)
        })
        .ok()?;
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        self.put(remove_pmd_mapping(self.fa.memmap(), pa));
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        None
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        let bytes = self.frame(src.pfn());
        self.set_frame(dst.pfn(), bytes);
        self.nr_copies.set(self.nr_copies.get() + 1);
    }
    fn memmap(&self) -> &Memmap {
        self.fa.memmap()
    }
    fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
        self.area.dup(entry).map(drop).map_err(|e| format!("{e}"))
    }
}

// ------------------------------------------------------------------ spaces

struct Space<F: HardwareWalker> {
    table: PageTable<F>,
    vmas: VmaSet,
}

/// What one access went through.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Fault(FaultOutcome),
    SwapIn(Result<SwapInOutcome, SwapInError>),
}

/// What [`World::shrink`] did with a folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwapOut {
    Freed(usize),
    Kept(&'static str),
}

/// A fork family of address spaces over one allocator, one simulated
/// memory, one TLB and one swap area.
struct World<F: HardwareWalker> {
    mem: SimMemory,
    tlb: SoftTlb<F>,
    sys: Sys,
    /// Index = space id; `None` once it exited.
    spaces: Vec<Option<Space<F>>>,
    /// The anon handle of every space there ever was.
    handles: Vec<u64>,
    free_at_start: u64,
}

impl<F: HardwareWalker> World<F> {
    fn new() -> Self {
        let memmap = Memmap::new_leaked(MEMMAP_BASE, MEMMAP_LEN);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(MEMMAP_BASE, MEMMAP_BASE + MEMMAP_LEN as u64).unwrap();
        let header = parse(&format(SWAP_PAGES, &[], b"swaptest").unwrap(), SWAP_PAGES).unwrap();
        let area = SwapArea::new(TY, &header);
        assert_eq!(area.nr_slots(), SWAP_PAGES - 1);
        let sys = Sys {
            fa,
            data: RefCell::new(HashMap::new()),
            area,
            disk: RefCell::new(HashMap::new()),
            fail_reads: Cell::new(0),
            fail_writes: Cell::new(0),
            fail_allocs: Cell::new(0),
            fail_huge_allocs: Cell::new(0),
            nr_reads: Cell::new(0),
            nr_read_calls: Cell::new(0),
            nr_writes: Cell::new(0),
            nr_copies: Cell::new(0),
        };
        let mem = SimMemory::new(0x4000_0000, 1 << 14);
        let mut w = World {
            mem,
            tlb: SoftTlb::default(),
            sys,
            spaces: Vec::new(),
            handles: Vec::new(),
            free_at_start: fa.nr_free_pages(),
        };
        w.add_space(PageTable::new(&w.mem).unwrap(), VmaSet::new(va(0x1000), va(USER_END)));
        w
    }

    fn add_space(&mut self, table: PageTable<F>, vmas: VmaSet) -> usize {
        self.handles.push(anon_handle(table.root()));
        self.spaces.push(Some(Space { table, vmas }));
        self.spaces.len() - 1
    }

    fn sp(&self, s: usize) -> &Space<F> {
        self.spaces[s].as_ref().expect("space exited")
    }

    fn memmap(&self) -> &'static Memmap {
        self.sys.fa.memmap()
    }

    fn area(&self) -> &SwapArea {
        &self.sys.area
    }

    fn nr_free(&self) -> u64 {
        self.sys.fa.nr_free_pages()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.spaces.len()).filter(|&s| self.spaces[s].is_some()).collect()
    }

    fn handle(&self, s: usize) -> u64 {
        anon_handle(self.sp(s).table.root())
    }

    // ---- the consistency checker

    fn try_check(&self) -> Result<Vec<Stats>, ConsistencyError> {
        let live = self.live();
        let spaces: Vec<_> = live.iter().map(|&s| (&self.sp(s).table, &self.sp(s).vmas)).collect();
        let area = self.area();
        let count = |e: SwapEntry| (e.ty() == TY).then(|| area.count(e));
        let stats = check_spaces_with_swap(&spaces, &self.mem, &self.handles, self.memmap(), Some(&count))?;
        let mut all = vec![Stats::default(); self.spaces.len()];
        for (s, st) in live.into_iter().zip(stats) {
            all[s] = st;
        }
        Ok(all)
    }

    /// The checker over the family, the allocator and the area; beyond the
    /// checker: a writable leaf maps a page only this space may write, and
    /// never a page of a folio in the swap cache (`mm::swap::cache`'s rule).
    fn check(&self) -> Vec<Stats> {
        self.sys.fa.check_consistency().unwrap();
        self.area().check().unwrap_or_else(|e| panic!("swap area: {e}"));
        let stats = self.try_check().unwrap_or_else(|e| panic!("checker: {e}"));
        for s in self.live() {
            self.sp(s).table.visit(&self.mem, va(0), va(USER_END), &mut |at, level, entry, _| {
                let Decoded::Leaf(leaf) = entry else { return };
                if !leaf.prot.writable {
                    return;
                }
                let f = folio_of(self.memmap(), leaf.frame.pfn()).unwrap();
                let i = (leaf.frame.pfn() - f.pfn()) as usize;
                let mappings = if level == Level::Pmd { f.total_mapcount() } else { f.page_mapcount(i) };
                assert!(
                    f.page(i).test_flag(PageFlag::AnonExclusive) && mappings == 1,
                    "space {s}, {at}: writable {level:?} leaf of a page that is not exclusive ({mappings} mappings)"
                );
                assert!(!f.test_flag(PageFlag::SwapCache), "space {s}, {at}: writable leaf of a swap-cache folio");
            });
        }
        stats
    }

    fn stats(&self, s: usize) -> Stats {
        self.check()[s]
    }

    // ---- looking at the tables

    fn lookup(&self, s: usize, at: u64) -> (Level, Decoded) {
        self.sp(s).table.lookup(&self.mem, va(at))
    }

    fn leaf(&self, s: usize, at: u64) -> (Level, Leaf) {
        match self.lookup(s, at) {
            (level, Decoded::Leaf(leaf)) => (level, leaf),
            other => panic!("{at:#x}: no leaf but {other:?}"),
        }
    }

    /// The swap entry at `at` and its exclusive bit, if a PTE holds one.
    fn swap_pte(&self, s: usize, at: u64) -> Option<(SwapEntry, bool)> {
        match self.lookup(s, at) {
            (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, exclusive })) => {
                Some((entry, exclusive))
            }
            _ => None,
        }
    }

    /// The pages of the random test's areas that space `s` maps.
    fn present_pages(&self, s: usize) -> Vec<u64> {
        let mut found = Vec::new();
        for (start, len) in [(AREA, SMALL_PAGES * PAGE), (HUGE_AREA, HP)] {
            self.sp(s).table.visit(&self.mem, va(start), va(start + len), &mut |at, level, entry, _| {
                if let Decoded::Leaf(_) = entry {
                    let n = if level == Level::Pmd { HPAGE_NR as u64 } else { 1 };
                    found.extend(pages(at.as_u64(), n));
                }
            });
        }
        found
    }

    fn folio_at(&self, s: usize, at: u64) -> Folio<'static> {
        let pa = self.sp(s).table.translate(&self.mem, va(at)).expect("mapped");
        folio_of(self.memmap(), pa.pfn()).expect("a folio")
    }

    // ---- the CPU

    /// An access by user code of space `s`, as a CPU makes it: through the
    /// TLB and the hardware walker; each fault goes to the fault handler,
    /// a swap entry to [`World::swap_in`], and the access is retried.
    /// Returns the physical address used and what the faults went through,
    /// or the event that ended the task.
    fn access(&self, s: usize, at: u64, how: HwAccess) -> Result<(PhysAddr, Vec<Ev>), Ev> {
        let sp = self.sp(s);
        let mut events = Vec::new();
        for _ in 0..6 {
            match self.tlb.translate(&self.mem, sp.table.root(), va(at), how) {
                Ok(t) => {
                    let now = sp.table.translate(&self.mem, va(at));
                    assert_eq!(Some(t.pa), now, "{at:#x}: the CPU used a stale translation");
                    return Ok((t.pa, events));
                }
                Err(fault) => {
                    let cause = match fault {
                        HwFault::NotMapped { .. } => FaultCause::NotMapped,
                        HwFault::Permission { .. } => FaultCause::Protection,
                        HwFault::AccessFlag { .. } => FaultCause::AccessFlag,
                        HwFault::Reserved { level } => panic!("{at:#x}: reserved-bit fault at {level:?}"),
                    };
                    let fault =
                        MemFault { addr: va(at), access: how.access, cause, level: None, syndrome: 0 };
                    let out =
                        handle_fault(&sp.table, &sp.vmas, &self.mem, &self.sys, &self.tlb, &fault, true);
                    events.push(Ev::Fault(out));
                    match out {
                        FaultOutcome::Refused(_) | FaultOutcome::OutOfMemory => return Err(Ev::Fault(out)),
                        FaultOutcome::NeedsSwapIn { page, entry } => {
                            let r = self.swap_in(s, page.as_u64(), entry, how.access == Access::Write);
                            events.push(Ev::SwapIn(r.clone()));
                            if let Err(SwapInError::Io(_) | SwapInError::NoMemory) = r {
                                return Err(Ev::SwapIn(r));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        panic!("{at:#x}: still faulting after {events:?}");
    }

    /// User code of space `s` writes page `p` whole with version `tag`.
    fn write_page(&self, s: usize, p: u64, tag: u8) -> Vec<Ev> {
        let (pa, events) =
            self.access(s, p, HwAccess::USER_WRITE).unwrap_or_else(|e| panic!("write of {p:#x}: {e:?}"));
        self.sys.set_frame(pa.pfn(), page_bytes(p, tag));
        events
    }

    /// User code of space `s` reads page `p` whole.
    fn read_page(&self, s: usize, p: u64) -> (Bytes, Vec<Ev>) {
        let (pa, events) =
            self.access(s, p, HwAccess::USER_READ).unwrap_or_else(|e| panic!("read of {p:#x}: {e:?}"));
        (self.sys.frame(pa.pfn()), events)
    }

    fn expect_page(&self, s: usize, p: u64, tag: u8) -> Vec<Ev> {
        let (bytes, events) = self.read_page(s, p);
        assert!(bytes == page_bytes(p, tag), "space {s}, page {p:#x}: not version {tag}");
        events
    }

    // ---- swap-in (kernel/src/vm.rs `swap_in`)

    /// Half 1, without the space's lock: the folio of `entry`, locked;
    /// an intact run is read whole (the kernel looks at the table under
    /// the space's lock).
    fn swap_in_half1(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
    ) -> Result<(Folio<'static>, usize), SwapInError> {
        let sp = self.sp(s);
        let run = || intact_run(&sp.table, &self.mem, &sp.vmas, va(page), entry);
        get_swapped_folio_with_run(
            self.area(),
            self.memmap(),
            &self.sys,
            entry,
            self.handle(s),
            page >> 12,
            run,
        )
    }

    /// Half 1 as a path that reads the one page whatever the table holds.
    fn swap_in_half1_small(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
    ) -> Result<(Folio<'static>, usize), SwapInError> {
        get_swapped_folio(self.area(), self.memmap(), &self.sys, entry, self.handle(s), page >> 12)
    }

    /// Half 2, under the space's lock; then the folio is unlocked and the
    /// caller's reference dropped.
    fn swap_in_half2(
        &self,
        s: usize,
        (folio, i): (Folio<'static>, usize),
        page: u64,
        entry: SwapEntry,
        write: bool,
    ) -> SwapInOutcome {
        let sp = self.sp(s);
        let out = map_swapped_in(
            &sp.table,
            &self.mem,
            &sp.vmas,
            self.area(),
            &folio,
            i,
            va(page),
            entry,
            write,
            true,
        );
        folio.unlock();
        self.sys.put(folio);
        out
    }

    fn swap_in(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
        write: bool,
    ) -> Result<SwapInOutcome, SwapInError> {
        let got = self.swap_in_half1(s, page, entry)?;
        Ok(self.swap_in_half2(s, got, page, entry, write))
    }

    // ---- swap-out (kernel/src/reclaim.rs `shrink_locked`)

    /// Reclaim of the folio mapped at `at` in space `s`.
    fn swap_out(&self, s: usize, at: u64) -> SwapOut {
        let folio = self.folio_at(s, at);
        folio.get(); // the reference reclaim isolates a folio with
        self.shrink(folio)
    }

    /// Shrinks `folio`, consuming the reference the caller took: lock, swap
    /// slots, unmap from the whole family, flush, drop the mappings'
    /// references, write, freeze, out of the cache, free.
    fn shrink(&self, folio: Folio<'static>) -> SwapOut {
        let sys = &self.sys;
        let keep = |why: &'static str| {
            folio.unlock();
            sys.put(folio);
            SwapOut::Kept(why)
        };
        if !folio.try_lock() {
            sys.put(folio);
            return SwapOut::Kept("locked");
        }
        if folio.maybe_pinned() {
            return keep("may be pinned");
        }
        if folio_entry(&folio).is_none() && add_to_swap(self.area(), &folio).is_err() {
            return keep("no swap slots");
        }
        if folio.total_mapcount() > 0 {
            let tables: Vec<&PageTable<F>> = self.live().into_iter().map(|s| &self.sp(s).table).collect();
            match unmap_to_swap(&tables, &self.mem, &self.tlb, self.memmap(), &folio, self.area()) {
                Ok(done) => {
                    for flush in done.flushes {
                        flush.flush(&self.tlb);
                    }
                    for _ in 0..done.refs {
                        assert!(!folio.put(), "reclaim's reference keeps the folio");
                    }
                }
                Err(_) => return keep("could not unmap"),
            }
            if folio.total_mapcount() > 0 {
                return keep("still mapped");
            }
        }
        let nr = folio.nr_pages();
        if !slots_unused(self.area(), &folio) {
            let first = folio_entry(&folio).expect("in the swap cache");
            folio.set_flag(PageFlag::Writeback);
            let written = sys.write(first, PhysAddr::new(folio.pfn() << 12), nr);
            folio.clear_flag(PageFlag::Writeback);
            if written.is_err() {
                return keep("write failed");
            }
        }
        if !folio.try_freeze(1 + nr as i32) {
            return keep("in use");
        }
        let _ = delete_from_swap_cache(self.area(), &folio);
        folio.clear_flag(PageFlag::Dirty);
        folio.unlock();
        sys.free(folio);
        SwapOut::Freed(nr)
    }

    /// A reclaim pass over the swap cache (what the LRU would find in the
    /// kernel): every cache folio, mapped or not, is shrunk. Returns the
    /// pages freed.
    fn reclaim_cache(&self) -> usize {
        let cached: Vec<SwapEntry> = self.area().used_slots().filter(|&e| self.area().has_cache(e)).collect();
        let mut seen = BTreeSet::new();
        let mut freed = 0;
        for e in cached {
            let Some((folio, _)) = lookup_get(self.area(), self.memmap(), e) else { continue };
            if !seen.insert(folio.pfn()) {
                self.sys.put(folio);
                continue;
            }
            if let SwapOut::Freed(n) = self.shrink(folio) {
                freed += n;
            }
        }
        freed
    }

    // ---- system calls

    fn mmap(&mut self, s: usize, start: u64, len: u64, prot: VmaProt) {
        self.spaces[s].as_mut().unwrap().vmas.map_fixed(va(start), len, prot, VmaKind::Anonymous).unwrap();
    }

    fn advise_thp(&mut self, s: usize, start: u64, len: u64, mode: ThpMode) {
        self.spaces[s].as_mut().unwrap().vmas.advise_thp(va(start), len, mode).unwrap();
    }

    /// Unmaps `[start, end)` of the table into a gather, flushes, gives the
    /// swap entries their counts back, releases the references.
    fn zap(&self, s: usize, ranges: &[(VirtAddr, VirtAddr)]) {
        let sp = self.sp(s);
        let memmap = self.memmap();
        let mut gather = Gather::new(sp.table.root());
        for &(a, b) in ranges {
            zap_range(&sp.table, &self.mem, &self.tlb, memmap, a, b, &mut gather, &mut |f| self.sys.free(f))
                .unwrap();
        }
        gather.take_flush().flush(&self.tlb);
        for e in gather.take_swap_entries() {
            self.sys.free_swap_entry(e);
        }
        gather.release(memmap, &mut |f| self.sys.free(f));
    }

    fn munmap(&mut self, s: usize, start: u64, len: u64) {
        let ranges = self.spaces[s].as_mut().unwrap().vmas.unmap(va(start), len).unwrap();
        self.zap(s, &ranges);
    }

    /// `MADV_DONTNEED` over a wholly mapped range.
    fn dontneed(&self, s: usize, start: u64, len: u64) {
        let end = self.sp(s).vmas.check_mapped(va(start), len).unwrap();
        self.zap(s, &[(va(start), end)]);
    }

    /// mprotect: areas, then leaves; the flush before returning.
    fn mprotect(&mut self, s: usize, start: u64, len: u64, prot: VmaProt) {
        let ranges = self.spaces[s].as_mut().unwrap().vmas.protect(va(start), len, prot).unwrap();
        let sp = self.sp(s);
        let mut flush = Flush::none(sp.table.root());
        for (a, b) in ranges {
            let f = protect_range(&sp.table, &self.mem, &self.tlb, self.memmap(), a, b, prot.to_prot(true))
                .unwrap();
            flush = flush.merge(f);
        }
        flush.flush(&self.tlb);
    }

    fn fork(&mut self, s: usize) -> usize {
        let table = PageTable::<F>::new(&self.mem).unwrap();
        let parent = self.sp(s);
        let mut flush = Flush::none(parent.table.root());
        fork_range(
            &parent.table,
            &table,
            &self.mem,
            &self.sys,
            anon_handle(table.root()),
            va(0),
            va(USER_END),
            &mut flush,
        )
        .unwrap();
        flush.flush(&self.tlb);
        let vmas = parent.vmas.clone();
        self.add_space(table, vmas)
    }

    fn exit(&mut self, s: usize) {
        self.zap(s, &[(va(0), va(USER_END))]);
        let sp = self.spaces[s].take().unwrap();
        let root = sp.table.root();
        sp.table.destroy(&self.mem, 0..0);
        self.tlb.flush_all(root);
    }

    /// A `FOLL_GET` reference on the page at `at` (write: as for a device
    /// that writes into it), after faulting it in if needed.
    fn get_user_page(&self, s: usize, at: u64, write: bool) -> PhysAddr {
        let how = if write { HwAccess::USER_WRITE } else { HwAccess::USER_READ };
        self.access(s, at, how).unwrap();
        let sp = self.sp(s);
        get_user_page(&sp.table, &sp.vmas, &self.mem, &self.sys, &self.tlb, va(at), write, Hold::Get).unwrap()
    }

    fn release_user_page(&self, pa: PhysAddr) {
        if let Some(folio) = release(self.memmap(), pa, Hold::Get) {
            self.sys.free(folio);
        }
    }

    /// Every space exits; every frame and every slot must be back, with
    /// no folio left in the swap cache (tests that leave some behind on
    /// purpose run [`World::reclaim_cache`] first).
    fn finish(mut self) {
        for s in self.live() {
            self.exit(s);
        }
        assert_eq!(self.try_check(), Ok(vec![Stats::default(); self.spaces.len()]));
        assert_eq!(self.area().nr_in_cache(), 0, "folios left in the swap cache");
        assert_eq!(self.area().nr_used(), 0, "swap slots leaked");
        self.area().check().unwrap();
        assert_eq!(self.nr_free(), self.free_at_start, "folios leaked");
        assert_eq!(*self.mem.live_tables.borrow(), 0, "tables leaked");
        assert!(self.sys.data.borrow().is_empty());
        self.sys.fa.check_consistency().unwrap();
    }
}

fn swapped_in(pages: usize, exclusive: bool, writable: bool) -> Ev {
    Ev::SwapIn(Ok(SwapInOutcome::Mapped { pages, exclusive, writable }))
}

fn needs(page: u64, entry: SwapEntry) -> Ev {
    Ev::Fault(FaultOutcome::NeedsSwapIn { page: va(page), entry })
}

fn copied(events: &[Ev]) -> bool {
    events.contains(&Ev::Fault(FaultOutcome::Copied))
}

// ------------------------------------------------------------------ 1

fn small_pages_go_out_and_come_back<F: HardwareWalker>() {
    let _shared = shared();
    const N: u64 = 16;
    let mut w = World::<F>::new();
    w.mmap(0, AREA, N * PAGE, RW);
    for p in pages(AREA, N) {
        w.write_page(0, p, 1);
    }
    assert_eq!(w.stats(0), small_stats(N));
    let free = w.nr_free();
    for p in pages(AREA, N) {
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    }
    assert_eq!(w.nr_free(), free + N, "every frame freed");
    assert_eq!(w.sys.nr_writes.get(), N);
    assert_eq!(w.stats(0), Stats { nr_swap_entries: N, ..Stats::default() });
    let mut offsets = BTreeSet::new();
    for p in pages(AREA, N) {
        let (e, exclusive) = w.swap_pte(0, p).unwrap();
        assert!(exclusive, "{p:#x}: an exclusive page keeps the bit in its swap entry");
        assert_eq!((e.ty(), w.area().count(e), w.area().has_cache(e)), (TY, 1, false));
        offsets.insert(e.offset());
    }
    assert_eq!(offsets.len() as u64, N, "one slot per page");
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (N, 0));
    let handle = w.handle(0);
    for p in pages(AREA, N) {
        let (e, _) = w.swap_pte(0, p).unwrap();
        let events = w.expect_page(0, p, 1);
        assert_eq!(events, [needs(p, e), swapped_in(1, true, true)]);
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, false), "the slot is freed");
        let (level, leaf) = w.leaf(0, p);
        assert_eq!((level, leaf.prot.writable), (Level::Pte, true));
        let f = w.folio_at(0, p);
        assert!(f.page(0).test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert!(!f.test_flag(PageFlag::SwapCache) && f.swap_entry().is_none());
        assert_eq!((f.order(), f.refcount(), f.page_mapcount(0)), (0, 1, 1));
        assert_eq!((f.mapping(), f.index()), (handle, p >> 12));
    }
    assert_eq!((w.sys.nr_reads.get(), w.area().nr_used()), (N, 0));
    assert_eq!(w.stats(0), small_stats(N));
    // Writes reuse the pages in place.
    for p in pages(AREA, N) {
        let pfn = w.folio_at(0, p).pfn();
        let events = w.write_page(0, p, 2);
        assert!(!copied(&events), "{p:#x}: {events:?}");
        assert_eq!(w.folio_at(0, p).pfn(), pfn);
    }
    assert_eq!(w.sys.nr_copies.get(), 0);
    for p in pages(AREA, N) {
        w.expect_page(0, p, 2);
    }
    w.check();
    // Out again, and this time munmap frees the entries.
    for p in pages(AREA, N) {
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    }
    assert_eq!(w.area().nr_used(), N);
    w.munmap(0, AREA, N * PAGE / 2);
    assert_eq!(w.area().nr_used(), N / 2);
    assert_eq!(w.stats(0), Stats { nr_swap_entries: N / 2, ..Stats::default() });
    w.finish();
}

// ------------------------------------------------------------------ 2

fn a_thp_goes_out_whole_and_comes_back<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, HP, RW);
    assert_eq!(w.write_page(0, AREA, 1), [Ev::Fault(FaultOutcome::MappedHuge)]);
    for p in pages(AREA, HPAGE_NR as u64) {
        w.write_page(0, p, 1);
    }
    let f = w.folio_at(0, AREA);
    assert_eq!((f.order(), w.leaf(0, AREA).0), (9, Level::Pmd));
    // An extra reference makes the freeze fail: the folio stays in the cache.
    f.get();
    assert_eq!(w.swap_out(0, AREA + 5 * PAGE), SwapOut::Kept("in use"));
    let first = folio_entry(&f).expect("in the swap cache");
    assert_eq!(first.offset() % HPAGE_NR as u64, 0, "one aligned run of 512 slots");
    for (i, p) in pages(AREA, HPAGE_NR as u64).enumerate() {
        assert_eq!(w.swap_pte(0, p), Some((nth_entry(first, i), true)), "the PMD became 512 swap PTEs");
        assert_eq!((w.area().count(nth_entry(first, i)), w.area().has_cache(nth_entry(first, i))), (1, true));
    }
    assert!(f.test_flag(PageFlag::SwapCache) && !f.is_locked());
    assert_eq!((f.order(), f.total_mapcount(), f.refcount()), (9, 0, 1 + 512));
    assert_eq!(w.sys.nr_writes.get(), 512);
    assert_eq!(w.stats(0), Stats { nr_swap_entries: 512, ..Stats::default() });
    // One fault brings the whole folio back from the cache, no read.
    let p = AREA + 7 * PAGE;
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 7)), swapped_in(512, true, true)]);
    assert_eq!(w.sys.nr_reads.get(), 0);
    assert_eq!(w.area().nr_used(), 0, "the folio left the cache, its slots are free");
    assert!(!f.test_flag(PageFlag::SwapCache) && f.swap_entry().is_none());
    for (i, p) in pages(AREA, HPAGE_NR as u64).enumerate() {
        let (level, leaf) = w.leaf(0, p);
        assert_eq!((level, leaf.frame.pfn(), leaf.prot.writable), (Level::Pte, f.pfn() + i as u64, true));
        assert!(f.page(i).test_flag(PageFlag::AnonExclusive));
    }
    assert_eq!(f.refcount(), 1 + 512);
    w.sys.put(f);
    assert_eq!(
        w.stats(0),
        Stats { nr_pages_mapped: 512, nr_folios: 1, nr_pte_leaves: 512, ..Stats::default() }
    );
    for p in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, p, 1);
    }
    // A full swap-out frees it; in an area that takes no huge pages any
    // more, faults read the pages back one by one (the large read of a
    // freed THP: `a_freed_thp_comes_back_whole_in_one_read`).
    w.advise_thp(0, AREA, HP, ThpMode::Never);
    let free = w.nr_free();
    assert_eq!(w.swap_out(0, AREA), SwapOut::Freed(512));
    assert_eq!(w.nr_free(), free + 512);
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    assert_eq!(first.offset() % HPAGE_NR as u64, 0);
    assert_eq!(w.stats(0), Stats { nr_swap_entries: 512, ..Stats::default() });
    // Pages in a scattered order, each read from its own slot.
    let mut order: Vec<u64> = pages(AREA, HPAGE_NR as u64).collect();
    order.reverse();
    order.rotate_left(100);
    for (n, &p) in order.iter().enumerate() {
        let (e, exclusive) = w.swap_pte(0, p).unwrap();
        assert_eq!((e, exclusive), (nth_entry(first, ((p - AREA) / PAGE) as usize), true));
        assert_eq!(w.expect_page(0, p, 1), [needs(p, e), swapped_in(1, true, true)]);
        assert_eq!(w.sys.nr_reads.get(), n as u64 + 1);
        assert_eq!(w.folio_at(0, p).order(), 0);
    }
    assert_eq!(w.area().nr_used(), 0);
    assert_eq!(w.stats(0), small_stats(512));
    w.finish();
}

// ------------------------------------------------------------------ 2c

/// A THP at `base` written out whole in one aligned run of slots and freed.
fn thp_out_and_freed<F: HardwareWalker>(w: &mut World<F>, base: u64, tag: u8) -> SwapEntry {
    w.mmap(0, base, HP, RW);
    assert_eq!(w.write_page(0, base, tag), [Ev::Fault(FaultOutcome::MappedHuge)]);
    for p in pages(base, HPAGE_NR as u64) {
        w.write_page(0, p, tag);
    }
    assert_eq!(w.swap_out(0, base), SwapOut::Freed(512));
    let (first, _) = w.swap_pte(0, base).unwrap();
    assert_eq!(first.offset() % HPAGE_NR as u64, 0);
    assert_eq!(w.area().nr_in_cache(), 0, "freed, out of the swap cache");
    first
}

/// The folio mapped at `base` is one order-9 folio whose page `i` every
/// PTE `i` of the block maps, with the rights `writable`.
fn whole_folio_at<F: HardwareWalker>(w: &World<F>, s: usize, base: u64, writable: bool) -> Folio<'static> {
    let f = w.folio_at(s, base);
    assert_eq!(f.order(), 9);
    for (i, p) in pages(base, HPAGE_NR as u64).enumerate() {
        let (level, leaf) = w.leaf(s, p);
        assert_eq!((level, leaf.frame.pfn(), leaf.prot.writable), (Level::Pte, f.pfn() + i as u64, writable));
    }
    f
}

/// A freed THP whose run is intact comes back as one order-9 folio in one
/// read on the first fault, exclusive and writable; and again after a
/// second round trip (the PTE-mapped folio goes out whole); after a fork
/// the shared run comes back whole for the child, read-only, and the
/// parent finds it in the cache.
fn a_freed_thp_comes_back_whole_in_one_read<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    let first = thp_out_and_freed(&mut w, AREA, 1);
    let free = w.nr_free();
    let p = AREA + 77 * PAGE;
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 77)), swapped_in(512, true, true)]);
    assert_eq!((w.sys.nr_read_calls.get(), w.sys.nr_reads.get()), (1, 512), "one request for the run");
    assert_eq!(w.nr_free(), free - 512);
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (0, 0), "out of the cache, slots free");
    let f = whole_folio_at(&w, 0, AREA, true);
    assert!(!f.test_flag(PageFlag::SwapCache) && f.swap_entry().is_none());
    assert!((0..HPAGE_NR).all(|i| f.page(i).test_flag(PageFlag::AnonExclusive) && f.page_mapcount(i) == 1));
    assert_eq!((f.refcount(), f.mapping(), f.index()), (512, w.handle(0), AREA >> 12));
    assert_eq!(
        w.stats(0),
        Stats { nr_pages_mapped: 512, nr_folios: 1, nr_pte_leaves: 512, ..Stats::default() }
    );
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, 1);
    }
    assert_eq!(w.sys.nr_reads.get(), 512, "no more reads");

    // Written in place, out again whole (the folio is PTE-mapped now), and
    // a write fault brings it back whole.
    for q in pages(AREA, HPAGE_NR as u64) {
        assert!(!copied(&w.write_page(0, q, 2)));
    }
    assert_eq!(w.swap_out(0, AREA), SwapOut::Freed(512));
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    let p = AREA + 300 * PAGE;
    let events = w.write_page(0, p, 3);
    assert_eq!(events, [needs(p, nth_entry(first, 300)), swapped_in(512, true, true)]);
    assert_eq!(w.sys.nr_read_calls.get(), 2);
    whole_folio_at(&w, 0, AREA, true);
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, if q == p { 3 } else { 2 });
    }

    // Shared with a child: each slot's count is 2. The child's fault reads
    // the run whole and maps it read-only (the parent holds the slots);
    // the parent's fault finds it in the cache, no read, and takes it out.
    w.write_page(0, p, 2);
    assert_eq!(w.swap_out(0, AREA), SwapOut::Freed(512));
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    let c = w.fork(0);
    assert_eq!(w.area().count(nth_entry(first, 9)), 2);
    let p = AREA + 9 * PAGE;
    assert_eq!(w.expect_page(c, p, 2), [needs(p, nth_entry(first, 9)), swapped_in(512, false, false)]);
    assert_eq!(w.sys.nr_read_calls.get(), 3);
    let f = whole_folio_at(&w, c, AREA, false);
    assert!(f.test_flag(PageFlag::SwapCache));
    w.check();
    assert_eq!(w.expect_page(0, p, 2), [needs(p, nth_entry(first, 9)), swapped_in(512, false, false)]);
    assert_eq!(w.sys.nr_read_calls.get(), 3, "a cache hit");
    assert!(!f.test_flag(PageFlag::SwapCache));
    assert_eq!(whole_folio_at(&w, 0, AREA, false).pfn(), f.pfn());
    assert!(copied(&w.write_page(c, p, 4)));
    w.expect_page(0, p, 2);
    w.check();
    w.exit(c);
    w.finish();
}

/// A run that is not intact any more, or whose large read is refused,
/// falls back to reading the faulting page alone, and leaves no claim
/// behind. Each case on a THP of its own block.
fn a_changed_run_falls_back_to_small_reads<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    let small = |w: &World<F>, p: u64, e: SwapEntry, tag: u8| {
        let calls = w.sys.nr_read_calls.get();
        assert_eq!(w.expect_page(0, p, tag), [needs(p, e), swapped_in(1, true, true)], "{p:#x}");
        assert_eq!(w.sys.nr_read_calls.get(), calls + 1);
        assert_eq!(w.folio_at(0, p).order(), 0);
    };
    // Every slot of the run at `base` but the ones given: count 1, no
    // HAS_CACHE, its PTE still holding it.
    let untouched = |w: &World<F>, base: u64, first: SwapEntry, except: &[usize]| {
        for i in (0..HPAGE_NR).filter(|i| !except.contains(i)) {
            let e = nth_entry(first, i);
            assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, false), "slot {i}");
            assert_eq!(w.swap_pte(0, base + i as u64 * PAGE).map(|x| x.0), Some(e));
        }
    };
    let mapped = SwapInOutcome::Mapped { pages: 1, exclusive: true, writable: true };

    // 1. One page swapped in alone first (by a path that reads one page):
    // its PTE is present, the run is broken.
    let b = AREA;
    let first = thp_out_and_freed(&mut w, b, 1);
    let got = w.swap_in_half1_small(0, b + 5 * PAGE, nth_entry(first, 5)).unwrap();
    assert_eq!(w.swap_in_half2(0, got, b + 5 * PAGE, nth_entry(first, 5), false), mapped);
    small(&w, b + 6 * PAGE, nth_entry(first, 6), 1);
    untouched(&w, b, first, &[5, 6]);
    w.check();
    // 2. One page unmapped (MADV_DONTNEED): the run is broken too.
    w.dontneed(0, b + 10 * PAGE, PAGE);
    small(&w, b + 11 * PAGE, nth_entry(first, 11), 1);
    untouched(&w, b, first, &[5, 6, 10, 11]);
    w.munmap(0, b, HP);
    assert_eq!(w.area().nr_used(), 0);
    w.check();

    // 3. No huge frame: the claim of the run is given back.
    let b = AREA + HP;
    let first = thp_out_and_freed(&mut w, b, 2);
    w.sys.fail_huge_allocs.set(1);
    small(&w, b + 20 * PAGE, nth_entry(first, 20), 2);
    untouched(&w, b, first, &[20]);
    w.munmap(0, b, HP);
    w.check();

    // 4. A slot of the run busy (its page is in the swap cache, not mapped
    // back): the claim of the run fails as a whole, nothing is claimed.
    let b = AREA + 2 * HP;
    let first = thp_out_and_freed(&mut w, b, 3);
    let (cached, _) = w.swap_in_half1_small(0, b + 30 * PAGE, nth_entry(first, 30)).unwrap();
    cached.unlock();
    w.sys.put(cached);
    assert!(w.area().has_cache(nth_entry(first, 30)) && cached.test_flag(PageFlag::SwapCache));
    small(&w, b + 31 * PAGE, nth_entry(first, 31), 3);
    untouched(&w, b, first, &[30, 31]);
    // The cached page is mapped from the cache by its own fault.
    let p = b + 30 * PAGE;
    let calls = w.sys.nr_read_calls.get();
    assert_eq!(w.expect_page(0, p, 3), [needs(p, nth_entry(first, 30)), swapped_in(1, true, true)]);
    assert_eq!((w.sys.nr_read_calls.get(), w.folio_at(0, p).pfn()), (calls, cached.pfn()));
    w.munmap(0, b, HP);
    w.check();

    // 5. The run changed between the look and the claim (the recheck
    // after the claim says so): the claim is given back, one page read.
    let b = AREA + 3 * HP;
    let first = thp_out_and_freed(&mut w, b, 4);
    let looks = Cell::new(0);
    let run = || {
        looks.set(looks.get() + 1);
        (looks.get() == 1).then_some(first)
    };
    let p = b + 40 * PAGE;
    let e = nth_entry(first, 40);
    let got = get_swapped_folio_with_run(w.area(), w.memmap(), &w.sys, e, w.handle(0), p >> 12, run).unwrap();
    assert_eq!((looks.get(), got.0.order(), got.1), (2, 0, 0));
    untouched(&w, b, first, &[40]);
    assert_eq!(w.swap_in_half2(0, got, p, e, false), mapped);
    w.expect_page(0, p, 4);
    // 6. The area takes no huge pages: one page read.
    w.advise_thp(0, b, HP, ThpMode::Never);
    small(&w, b + 41 * PAGE, nth_entry(first, 41), 4);
    untouched(&w, b, first, &[40, 41]);
    w.advise_thp(0, b, HP, ThpMode::Default);
    // 7. The 2 MiB block around the fault is not in one area any more.
    w.munmap(0, b + HP / 2, HP / 2);
    small(&w, b + 42 * PAGE, nth_entry(first, 42), 4);
    for q in pages(b, HPAGE_NR as u64 / 2) {
        w.expect_page(0, q, 4);
    }
    w.check();
    w.finish();
}

/// A failed read of a whole run ends only the access, and leaves every
/// entry, slot count and frame as it was; the next access reads it whole.
fn a_failed_large_read_leaves_everything_as_it_was<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    let first = thp_out_and_freed(&mut w, AREA, 1);
    let (free, stats) = (w.nr_free(), w.stats(0));
    w.sys.fail_reads.set(1);
    let p = AREA + 100 * PAGE;
    let err = w.access(0, p, HwAccess::USER_WRITE).unwrap_err();
    assert!(matches!(err, Ev::SwapIn(Err(SwapInError::Io(ref m))) if m.contains("injected")), "{err:?}");
    for (i, q) in pages(AREA, HPAGE_NR as u64).enumerate() {
        let e = nth_entry(first, i);
        assert_eq!(w.swap_pte(0, q), Some((e, true)), "the entry is still there");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, false));
        assert!(w.sys.disk.borrow().contains_key(&e.offset()));
    }
    assert_eq!((w.area().nr_in_cache(), w.nr_free(), w.stats(0)), (0, free, stats));
    assert_eq!(w.sys.nr_read_calls.get(), 0);
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 100)), swapped_in(512, true, true)]);
    whole_folio_at(&w, 0, AREA, true);
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, 1);
    }
    w.finish();
}

// ------------------------------------------------------------------ 3

/// Whether `p` is an even page of the area (tests alternate on it).
fn even(p: u64) -> bool {
    ((p - AREA) / PAGE).is_multiple_of(2)
}

fn fork_after_swap_out_shares_the_entries<F: HardwareWalker>() {
    let _shared = shared();
    const N: u64 = 8;
    let mut w = World::<F>::new();
    w.mmap(0, AREA, N * PAGE, RW);
    for p in pages(AREA, N) {
        w.write_page(0, p, 1);
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    }
    let c = w.fork(0);
    let st = w.check();
    assert_eq!((st[0].nr_swap_entries, st[c].nr_swap_entries), (N, N));
    for p in pages(AREA, N) {
        let (e, exclusive) = w.swap_pte(0, p).unwrap();
        assert!(!exclusive, "fork clears the parent's bit");
        assert_eq!(w.swap_pte(c, p), Some((e, false)), "the child holds the same entry, not exclusive");
        assert_eq!(w.area().count(e), 2);
    }
    for p in pages(AREA, N) {
        // Even pages: the parent first; odd: the child first.
        let (first, second) = if even(p) { (0, c) } else { (c, 0) };
        let (e, _) = w.swap_pte(0, p).unwrap();
        let reads = w.sys.nr_reads.get();
        assert_eq!(w.expect_page(first, p, 1), [needs(p, e), swapped_in(1, false, false)]);
        assert_eq!(w.sys.nr_reads.get(), reads + 1, "claimed and read");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, true), "the other side still holds it");
        let f = w.folio_at(first, p);
        assert!(f.test_flag(PageFlag::SwapCache) && !f.page(0).test_flag(PageFlag::AnonExclusive));
        w.check();
        assert_eq!(w.expect_page(second, p, 1), [needs(p, e), swapped_in(1, false, false)]);
        assert_eq!(w.sys.nr_reads.get(), reads + 1, "found in the cache");
        assert_eq!(w.folio_at(second, p), f, "both map the same page");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, false));
        assert!(!f.test_flag(PageFlag::SwapCache));
        assert_eq!((f.page_mapcount(0), f.refcount()), (2, 2));
        // Writes: the first copies, the second is then the only user.
        let copies = w.sys.nr_copies.get();
        assert!(copied(&w.write_page(first, p, 2)));
        assert_eq!(w.sys.nr_copies.get(), copies + 1);
        let events = w.write_page(second, p, 3);
        assert!(events.contains(&Ev::Fault(FaultOutcome::Reused)), "{events:?}");
        assert_ne!(w.folio_at(first, p), w.folio_at(second, p));
        w.check();
    }
    for p in pages(AREA, N) {
        w.expect_page(0, p, if even(p) { 2 } else { 3 });
        w.expect_page(c, p, if even(p) { 3 } else { 2 });
    }
    assert_eq!(w.area().nr_used(), 0);
    // Swapped out again on both sides (each its own slots); the child
    // forks a grandchild (its slots count 2) and exits (back to 1): each
    // side still reads its own data.
    for p in pages(AREA, N) {
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
        assert_eq!(w.swap_out(c, p), SwapOut::Freed(1));
    }
    let c2 = w.fork(c);
    assert!(pages(AREA, N).all(|p| w.area().count(w.swap_pte(c2, p).unwrap().0) == 2));
    w.check();
    w.exit(c);
    for p in pages(AREA, N) {
        w.expect_page(c2, p, if even(p) { 3 } else { 2 });
    }
    w.exit(c2);
    w.check();
    for p in pages(AREA, N) {
        w.expect_page(0, p, if even(p) { 2 } else { 3 });
    }
    w.finish();
}

// ------------------------------------------------------------------ 4

/// Seed 004 with the switch off or on: a page with a plain write
/// reference (`FOLL_GET|FOLL_WRITE`) goes out (the freeze fails, it stays
/// in the cache) and is faulted back by a read.
fn foll_get_reference_across_swap<F: HardwareWalker>(bug: bool) {
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 2 * PAGE, RW);
    w.write_page(0, AREA, 1);
    w.write_page(0, AREA + PAGE, 1);
    let held = w.get_user_page(0, AREA, true);
    let f = w.folio_at(0, AREA);
    assert_eq!(f.refcount(), 2);
    assert_eq!(w.swap_out(0, AREA), SwapOut::Kept("in use"));
    assert_eq!(w.swap_out(0, AREA + PAGE), SwapOut::Freed(1), "the page beside it, unreferenced, goes");
    let (e, exclusive) = w.swap_pte(0, AREA).unwrap();
    assert_eq!(exclusive, !bug, "the swap entry keeps the page's exclusive state (unless the bug)");
    assert!(f.test_flag(PageFlag::SwapCache));
    assert_eq!((f.total_mapcount(), f.refcount()), (0, 2), "the cache's reference and the held one");
    w.check();
    // The device writes through the reference while the page is out.
    w.sys.set_byte(held, 0x77);
    // The task reads it back.
    let (bytes, events) = w.read_page(0, AREA);
    assert_eq!(bytes[0], 0x77);
    assert_eq!(events, [needs(AREA, e), swapped_in(1, !bug, !bug)]);
    assert_eq!(w.folio_at(0, AREA), f, "the same page, from the cache");
    assert_eq!(f.page(0).test_flag(PageFlag::AnonExclusive), !bug);
    assert_eq!(w.leaf(0, AREA).1.prot.writable, !bug);
    w.check();
    // The task writes another byte of it; the device then reads that
    // through its reference.
    let (pa, events) = w.access(0, AREA + 8, HwAccess::USER_WRITE).unwrap();
    w.sys.set_byte(pa, 0x88);
    let through_ref = w.sys.byte(PhysAddr::new(held.as_u64() + 8));
    if bug {
        assert!(copied(&events), "not provably exclusive: the write copies ({events:?})");
        assert_ne!(pa.pfn(), held.pfn());
        assert_eq!(through_ref, page_bytes(AREA, 1)[8], "the write is lost to the reference holder");
    } else {
        assert!(!copied(&events), "exclusive: the write reuses ({events:?})");
        assert_eq!(pa.pfn(), held.pfn());
        assert_eq!(through_ref, 0x88, "the reference holder sees the task's write");
    }
    w.check();
    w.expect_page(0, AREA + PAGE, 1);
    w.release_user_page(held);
    w.finish();
}

fn seed_004_exclusive_bit_survives_swap<F: HardwareWalker>() {
    {
        let _shared = shared();
        assert!(!bugs::enabled(Bug::ForgetAnonExclusive));
        foll_get_reference_across_swap::<F>(false);
    }
    {
        let _on = BugOn::new(Bug::ForgetAnonExclusive);
        foll_get_reference_across_swap::<F>(true);
    }
    assert!(!bugs::enabled(Bug::ForgetAnonExclusive));
}

// ------------------------------------------------------------------ 5

fn swap_in_rechecks_the_entry_before_mapping<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 4 * PAGE, RW);
    for p in pages(AREA, 4) {
        w.write_page(0, p, 1);
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    }
    let free = w.nr_free();

    // (a) The range is zapped between the halves.
    let p = AREA;
    let (e, _) = w.swap_pte(0, p).unwrap();
    let got = w.swap_in_half1(0, p, e).unwrap();
    assert_eq!(w.sys.nr_reads.get(), 1);
    assert!(got.0.is_locked() && got.0.test_flag(PageFlag::SwapCache) && got.0.test_flag(PageFlag::Uptodate));
    w.dontneed(0, p, PAGE);
    assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, true), "the claim keeps the slot");
    assert_eq!(w.swap_in_half2(0, got, p, e, false), SwapInOutcome::Changed);
    assert_eq!(w.lookup(0, p), (Level::Pte, Decoded::None));
    w.check();
    // The folio is left in the cache for reclaim (the kernel's LRU finds
    // it): unmapped, unused, freed without a write.
    let writes = w.sys.nr_writes.get();
    assert_eq!(w.area().nr_in_cache(), 1);
    assert_eq!(w.reclaim_cache(), 1);
    assert_eq!((w.area().nr_in_cache(), w.sys.nr_writes.get()), (0, writes));
    assert!(!w.area().has_cache(e));
    assert_eq!(w.nr_free(), free, "nothing leaked");
    w.expect_page(0, p, 0);
    w.write_page(0, p, 5);

    // (b) The page is faulted in through another path (here: the entry is
    // zapped, the page refaulted and written, and swapped out again to
    // another slot) between the halves: half 2 sees another entry.
    let p = AREA + PAGE;
    let (e, _) = w.swap_pte(0, p).unwrap();
    let got = w.swap_in_half1(0, p, e).unwrap();
    w.dontneed(0, p, PAGE);
    w.write_page(0, p, 6);
    assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    let (e2, _) = w.swap_pte(0, p).unwrap();
    assert_ne!(e2, e, "the claimed slot is not handed out again");
    assert_eq!(w.swap_in_half2(0, got, p, e, true), SwapInOutcome::Changed);
    assert_eq!(w.swap_pte(0, p), Some((e2, true)), "the other entry is left alone");
    w.check();
    assert_eq!(w.reclaim_cache(), 1);
    w.expect_page(0, p, 6);

    // (c) The page is mapped by then (a present leaf instead of the entry).
    let p = AREA + 2 * PAGE;
    let (e, _) = w.swap_pte(0, p).unwrap();
    let got = w.swap_in_half1(0, p, e).unwrap();
    w.dontneed(0, p, PAGE);
    w.write_page(0, p, 7);
    assert_eq!(w.swap_in_half2(0, got, p, e, false), SwapInOutcome::Changed);
    assert_eq!(w.reclaim_cache(), 1);
    w.expect_page(0, p, 7);
    w.expect_page(0, AREA, 5);
    w.expect_page(0, AREA + 3 * PAGE, 1);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 6

fn a_stale_entry_is_refused_without_a_read<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 2 * PAGE, RW);
    for p in pages(AREA, 2) {
        w.write_page(0, p, 1);
        assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    }
    // Swapped in: the slot's count is 0, the entry that faulted is stale.
    let (e, _) = w.swap_pte(0, AREA).unwrap();
    w.expect_page(0, AREA, 1);
    assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, false));
    let (reads, free) = (w.sys.nr_reads.get(), w.nr_free());
    assert_eq!(w.swap_in_half1(0, AREA, e).err(), Some(SwapInError::Stale));
    // Unmapped: the same.
    let (e, _) = w.swap_pte(0, AREA + PAGE).unwrap();
    w.dontneed(0, AREA + PAGE, PAGE);
    assert_eq!(w.area().count(e), 0);
    assert_eq!(w.swap_in_half1(0, AREA + PAGE, e).err(), Some(SwapInError::Stale));
    assert_eq!((w.sys.nr_reads.get(), w.nr_free(), w.area().nr_used()), (reads, free, 0), "never read");
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 7

fn io_errors_lose_no_data<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 4 * PAGE, RW);
    for p in pages(AREA, 4) {
        w.write_page(0, p, 1);
    }
    // A failed write: the folio stays, unmapped, in the cache.
    let free = w.nr_free();
    let f = w.folio_at(0, AREA);
    w.sys.fail_writes.set(1);
    assert_eq!(w.swap_out(0, AREA), SwapOut::Kept("write failed"));
    let (e, exclusive) = w.swap_pte(0, AREA).unwrap();
    assert!(exclusive);
    assert!(f.test_flag(PageFlag::SwapCache) && !f.test_flag(PageFlag::Writeback) && !f.is_locked());
    assert_eq!((f.total_mapcount(), f.refcount(), w.area().count(e)), (0, 1, 1));
    assert_eq!(w.nr_free(), free, "kept in memory");
    assert!(!w.sys.disk.borrow().contains_key(&e.offset()));
    w.check();
    // A later fault maps it back from the cache, no read.
    assert_eq!(w.expect_page(0, AREA, 1), [needs(AREA, e), swapped_in(1, true, true)]);
    assert_eq!((w.sys.nr_reads.get(), w.area().nr_used()), (0, 0));
    assert_eq!(w.folio_at(0, AREA), f);
    // Another failed write, then a later reclaim pass writes it and frees it.
    let g = w.folio_at(0, AREA + PAGE);
    w.sys.fail_writes.set(1);
    assert_eq!(w.swap_out(0, AREA + PAGE), SwapOut::Kept("write failed"));
    assert!(g.test_flag(PageFlag::SwapCache));
    assert_eq!(w.reclaim_cache(), 1);
    assert_eq!(w.nr_free(), free + 1);
    w.check();
    w.expect_page(0, AREA + PAGE, 1);
    assert_eq!(w.sys.nr_reads.get(), 1);

    // A failed read: the task gets the error; slot, count and data stay.
    let p = AREA + 2 * PAGE;
    assert_eq!(w.swap_out(0, p), SwapOut::Freed(1));
    let (e, _) = w.swap_pte(0, p).unwrap();
    let (free, reads) = (w.nr_free(), w.sys.nr_reads.get());
    let on_disk = w.sys.disk.borrow()[&e.offset()].clone();
    w.sys.fail_reads.set(1);
    let err = w.access(0, p, HwAccess::USER_READ).unwrap_err();
    assert!(matches!(err, Ev::SwapIn(Err(SwapInError::Io(ref m))) if m.contains("injected")), "{err:?}");
    assert_eq!(w.swap_pte(0, p), Some((e, true)), "the entry is still there");
    assert_eq!((w.area().count(e), w.area().has_cache(e), w.area().nr_in_cache()), (1, false, 0));
    assert!(w.sys.disk.borrow()[&e.offset()] == on_disk);
    assert_eq!((w.nr_free(), w.sys.nr_reads.get()), (free, reads), "the folio read into was freed");
    w.check();
    // No memory for the folio: the claim is given back too.
    w.sys.fail_allocs.set(1);
    assert_eq!(w.access(0, p, HwAccess::USER_READ).unwrap_err(), Ev::SwapIn(Err(SwapInError::NoMemory)));
    assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, false));
    // The disk recovered: the retry succeeds.
    assert_eq!(w.expect_page(0, p, 1), [needs(p, e), swapped_in(1, true, true)]);
    assert_eq!(w.area().nr_used(), 0);
    for p in pages(AREA, 4) {
        w.expect_page(0, p, 1);
    }
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 2b

/// A THP kept in the swap cache (a held reference) whose entries are
/// partly zapped, or shared with a child: faults bring back what is still
/// held, and the slots are freed when nobody holds them.
fn a_large_cache_folio_partly_zapped_or_shared<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, HP, RW);
    for p in pages(AREA, HPAGE_NR as u64) {
        w.write_page(0, p, 1);
    }
    let f = w.folio_at(0, AREA);
    f.get();
    assert_eq!(w.swap_out(0, AREA), SwapOut::Kept("in use"));
    let first = folio_entry(&f).unwrap();
    // 100 pages zapped: their slots lose their count but stay in the cache.
    w.dontneed(0, AREA, 100 * PAGE);
    assert!(
        (0..100).all(|i| w.area().count(nth_entry(first, i)) == 0 && w.area().has_cache(nth_entry(first, i)))
    );
    assert!(f.test_flag(PageFlag::SwapCache), "other slots are still held");
    w.check();
    // A child shares the rest.
    let c = w.fork(0);
    assert_eq!(w.area().count(nth_entry(first, 200)), 2);
    w.check();
    // The parent's fault maps its 412 pages, read-only: the child holds them.
    let p = AREA + 200 * PAGE;
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 200)), swapped_in(412, false, false)]);
    assert!(f.test_flag(PageFlag::SwapCache));
    w.check();
    // The child's maps them too, and the folio leaves the cache.
    assert_eq!(w.expect_page(c, p, 1), [needs(p, nth_entry(first, 200)), swapped_in(412, false, false)]);
    assert!(!f.test_flag(PageFlag::SwapCache));
    assert_eq!(w.area().nr_used(), 0);
    assert_eq!(w.sys.nr_reads.get(), 0);
    w.check();
    for q in pages(AREA, HPAGE_NR as u64) {
        let tag = if q < AREA + 100 * PAGE { 0 } else { 1 };
        w.expect_page(0, q, tag);
        w.expect_page(c, q, tag);
    }
    // Writes copy on both sides (the second may reuse).
    assert!(copied(&w.write_page(0, p, 2)));
    w.write_page(c, p, 3);
    w.expect_page(0, p, 2);
    w.expect_page(c, p, 3);
    w.sys.put(f);
    w.check();
    w.exit(c);
    w.check();
    w.finish();
}

/// Swap-in maps a page with its area's rights: read-only in a read-only
/// area (still exclusive), and a write after mprotect back reuses it.
fn swap_in_respects_the_area_rights<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 2 * PAGE, RW);
    w.write_page(0, AREA, 1);
    assert_eq!(w.swap_out(0, AREA), SwapOut::Freed(1));
    w.mprotect(0, AREA, 2 * PAGE, VmaProt::READ);
    let (e, _) = w.swap_pte(0, AREA).unwrap();
    assert_eq!(w.expect_page(0, AREA, 1), [needs(AREA, e), swapped_in(1, true, false)]);
    assert!(w.folio_at(0, AREA).page(0).test_flag(PageFlag::AnonExclusive));
    assert_eq!(w.area().nr_used(), 0);
    w.check();
    assert!(w.access(0, AREA, HwAccess::USER_WRITE).is_err(), "read-only area");
    w.mprotect(0, AREA, 2 * PAGE, RW);
    let pfn = w.folio_at(0, AREA).pfn();
    let events = w.write_page(0, AREA, 2);
    assert!(events.contains(&Ev::Fault(FaultOutcome::Reused)), "{events:?}");
    assert_eq!(w.folio_at(0, AREA).pfn(), pfn);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 8

/// The byte model: (space, page) -> version (0: zeros).
type Model = BTreeMap<(usize, u64), u8>;

const SMALL_PAGES: u64 = 40;
/// A 2 MiB-aligned huge-page eligible area after the small one.
const HUGE_AREA: u64 = AREA + 2 * HP;

fn random_page(rng: &mut Rng) -> u64 {
    if rng.chance(60) {
        AREA + rng.below(SMALL_PAGES) * PAGE
    } else {
        HUGE_AREA + rng.below(HPAGE_NR as u64) * PAGE
    }
}

fn random_operations_agree_with_a_byte_model<F: HardwareWalker>() {
    let _shared = shared();
    for seed in [0x5a5a_0001u64, 0x0bad_cafe, 0x1234_5678_9abc, 0x0005_3ed0_0004] {
        random_run::<F>(seed, 400);
    }
}

fn random_run<F: HardwareWalker>(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut w = World::<F>::new();
    w.mmap(0, AREA, SMALL_PAGES * PAGE, RW);
    w.mmap(0, HUGE_AREA, HP, RW);
    let mut model = Model::new();
    let mut version = 0u8;
    let mut held: Vec<PhysAddr> = Vec::new();
    let mut counts = [0usize; 9];
    let expected = |model: &Model, s: usize, p: u64| model.get(&(s, p)).copied().unwrap_or(0);
    for step in 0..steps {
        let live = w.live();
        let s = live[rng.below(live.len() as u64) as usize];
        let p = random_page(&mut rng);
        let op = rng.below(100);
        let ctx = format!("seed {seed:#x} step {step} op {op} space {s} page {p:#x}");
        match op {
            0..=24 => {
                version = version.wrapping_add(1).max(1);
                w.write_page(s, p, version);
                model.insert((s, p), version);
                counts[0] += 1;
            }
            25..=39 => {
                let (bytes, _) = w.read_page(s, p);
                assert!(bytes == page_bytes(p, expected(&model, s, p)), "{ctx}: read the wrong data");
                counts[1] += 1;
            }
            40..=64 => {
                // Reclaim of a random page mapped in this space.
                let present = w.present_pages(s);
                if !present.is_empty() {
                    let q = present[rng.below(present.len() as u64) as usize];
                    let out = w.swap_out(s, q);
                    counts[if let SwapOut::Freed(_) = out { 2 } else { 3 }] += 1;
                }
            }
            65..=69 if live.len() < 4 => {
                let c = w.fork(s);
                let copy: Vec<_> = model.range((s, 0)..(s + 1, 0)).map(|(&(_, p), &v)| ((c, p), v)).collect();
                model.extend(copy);
                counts[4] += 1;
            }
            70..=74 if live.len() > 1 => {
                let c =
                    *live.iter().filter(|&&c| c != 0).nth(rng.below(live.len() as u64 - 1) as usize).unwrap();
                w.exit(c);
                model.retain(|&(sp, _), _| sp != c);
                counts[5] += 1;
            }
            75..=82 => {
                let n = 1 + rng.below(8);
                let (start, end) = if p < HUGE_AREA {
                    (p, (p + n * PAGE).min(AREA + SMALL_PAGES * PAGE))
                } else {
                    (p, (p + n * PAGE).min(HUGE_AREA + HP))
                };
                w.dontneed(s, start, end - start);
                for q in (start..end).step_by(PAGE as usize) {
                    model.remove(&(s, q));
                }
                counts[6] += 1;
            }
            83..=87 => {
                w.reclaim_cache();
                counts[7] += 1;
            }
            _ => {
                if held.len() < 3 && rng.bool() {
                    held.push(w.get_user_page(s, p, false));
                } else if !held.is_empty() {
                    let i = rng.below(held.len() as u64) as usize;
                    w.release_user_page(held.swap_remove(i));
                }
                counts[8] += 1;
            }
        }
        if let Err(e) = w.try_check() {
            panic!("{ctx}: checker: {e}");
        }
        if step % 16 == 0 {
            w.check();
        }
    }
    for s in w.live() {
        for p in pages(AREA, SMALL_PAGES).chain(pages(HUGE_AREA, HPAGE_NR as u64)) {
            let (bytes, _) = w.read_page(s, p);
            assert!(
                bytes == page_bytes(p, expected(&model, s, p)),
                "seed {seed:#x}: end: space {s} page {p:#x}"
            );
        }
    }
    w.check();
    for pa in held {
        w.release_user_page(pa);
    }
    for s in w.live() {
        w.exit(s);
    }
    w.reclaim_cache();
    eprintln!(
        "seed {seed:#x}: writes {} reads {} swapped out {} kept {} forks {} exits {} zaps {} reclaims {} holds {}; \
         disk reads {} writes {}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8],
        w.sys.nr_reads.get(),
        w.sys.nr_writes.get()
    );
    assert!(counts[2] > 0 && w.sys.nr_reads.get() > 0, "seed {seed:#x}: the run never swapped");
    w.finish();
}

mm::for_both_formats!(
    small_pages_go_out_and_come_back,
    a_thp_goes_out_whole_and_comes_back,
    a_large_cache_folio_partly_zapped_or_shared,
    a_freed_thp_comes_back_whole_in_one_read,
    a_changed_run_falls_back_to_small_reads,
    a_failed_large_read_leaves_everything_as_it_was,
    swap_in_respects_the_area_rights,
    fork_after_swap_out_shares_the_entries,
    seed_004_exclusive_bit_survives_swap,
    swap_in_rechecks_the_entry_before_mapping,
    a_stale_entry_is_refused_without_a_read,
    io_errors_lose_no_data,
    random_operations_agree_with_a_byte_model,
);
