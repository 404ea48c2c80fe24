//! The world of the policy tests (`tests/reclaim.rs`, `tests/swapoff.rs`,
//! `tests/try_to_unmap.rs`): the real `mm` policies (`mm::reclaim`,
//! `mm::swapoff`, `mm::unmap`) over both real page-table formats, with the
//! kernel's side played by [`World`]:
//!
//! - a real `FrameAllocator` over a leaked memmap, simulated frame
//!   contents (a frame not handed out is free: touching it panics), page
//!   tables in `SimMemory`, a simulated CPU with a software TLB (a missing
//!   flush is a stale translation, which [`World::access`] catches);
//! - LRU lists of its own (not registered: each world has its own memmap),
//!   which faults add to as the kernel's allocation wrappers do, and the
//!   free path takes folios off;
//! - one `SwapArea` of [`SWAP_PAGES`] pages from a formatted and parsed
//!   mkswap header (optionally with a bad page in every cluster, so no run
//!   for a huge folio is free), on a RAM disk with switches that make the
//!   next reads or writes fail. The disk checks the protocol: a read only of
//!   claimed slots an entry still holds, a write only of slots in the cache;
//! - a fork family of spaces, which `with_family_locked` hands over whole
//!   (less the spaces a test hides, to play a mapping reclaim cannot see);
//! - the kernel's swap-in sequence (`kernel/src/vm.rs` `swap_in`) over
//!   `mm::swap::swapin`, and its `free_entry` (munmap of a swap entry).
//!
//! [`World`] implements `ReclaimHost` and `SwapoffHost`, so the tests run
//! the real decisions. The bug-replay switch word is global to a test
//! process: tests take [`shared`], a test that flips a switch [`BugOn`].
#![allow(dead_code)]

use mm::anon::{alloc_anon_folio, anon_handle, remove_pte_mapping};
use mm::bugs::{self, Bug};
use mm::debug::{check_spaces_with_swap, Stats};
use mm::fault::{handle_fault, FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::{folio_of, AnonHandle, Folio, UnpublishedFolio};
use mm::frame::{AllocKind, FrameAllocator};
use mm::gup::{get_user_page, release, Hold};
use mm::lru::{LruList, LruLists};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Flush, Leaf, Level, NonPresent, PageTable, SwapEntry, SwapType, TlbHooks};
use mm::reclaim::ReclaimHost;
use mm::space::{fork_range, zap_range, Gather};
use mm::swap::area::SwapArea;
use mm::swap::cache::{delete_if_unused, lookup_get, nth_entry, IfMapped};
use mm::swap::header::{format, parse};
use mm::swap::swapin::{get_swapped_folio_with_run, intact_run, map_swapped_in, SwapBackend, SwapInError};
use mm::swapoff::SwapoffHost;
use mm::thp::{alloc_anon_huge_folio, remove_pmd_mapping, HPAGE_NR, HPAGE_ORDER, HPAGE_SIZE};
use mm::vma::{ThpMode, VmaKind, VmaProt, VmaSet};
use mm::{Pfn, PhysAddr, VirtAddr};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const MEMMAP_BASE: u64 = 0x80000;
pub const MEMMAP_LEN: usize = 8192;
pub const PAGE: u64 = 4096;
pub const HP: u64 = HPAGE_SIZE;
pub const NR_HP: u64 = HPAGE_NR as u64;
/// The start of the areas the tests map: 2 MiB-aligned.
pub const AREA: u64 = 0x10_0000_0000;
pub const USER_END: u64 = 0x8000_0000_0000;
pub const RW: VmaProt = VmaProt::READ_WRITE;
/// The swap area's type and size (8 clusters; cluster 0 holds the header).
pub const TY: u8 = 3;
pub const SWAP_PAGES: u64 = 4096;

/// Shared by every test; taken alone by one that flips a bug switch.
static SWITCH: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    SWITCH.read().unwrap_or_else(|e| e.into_inner())
}

/// Turns a bug switch on for as long as it lives (off again on drop, also
/// when the test panics), holding [`SWITCH`] alone.
pub struct BugOn {
    bug: Bug,
    _alone: RwLockWriteGuard<'static, ()>,
}

impl BugOn {
    pub fn new(bug: Bug) -> BugOn {
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

pub type Bytes = Box<[u8; 4096]>;

/// The contents tests give page `p` in version `tag` (0: the zero page):
/// every byte differs from its neighbours' and other versions', so a page
/// read from the wrong slot, a stale copy or a lost write is caught.
pub fn page_bytes(p: u64, tag: u8) -> Bytes {
    let mut b = Box::new([0u8; 4096]);
    if tag != 0 {
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = ((p >> 12).wrapping_mul(131) + i as u64 * 7 + u64::from(tag) * 13) as u8;
        }
    }
    b
}

pub fn va(raw: u64) -> VirtAddr {
    VirtAddr::new(raw)
}

pub fn pages(start: u64, n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| start + i * PAGE)
}

// ------------------------------------------------------------------ memory and disk

/// Frames, their simulated contents, the LRU lists, the swap area and its
/// RAM disk.
pub struct Sys {
    pub fa: &'static FrameAllocator,
    pub lru: &'static LruLists,
    /// The bytes of every data frame handed out, by PFN.
    pub data: RefCell<HashMap<u64, Bytes>>,
    pub area: SwapArea,
    /// The disk: slot offset -> the page written there last.
    pub disk: RefCell<HashMap<u64, Bytes>>,
    /// The next this many reads / writes fail.
    pub fail_reads: Cell<u32>,
    pub fail_writes: Cell<u32>,
    /// Pages read from and written to the disk; read and write requests.
    pub nr_reads: Cell<u64>,
    pub nr_read_calls: Cell<u64>,
    pub nr_writes: Cell<u64>,
    pub nr_write_calls: Cell<u64>,
}

impl Sys {
    fn fill_zero(&self, pa: PhysAddr, nr: u64) {
        let mut data = self.data.borrow_mut();
        for pfn in pa.pfn().as_u64()..pa.pfn().as_u64() + nr {
            assert!(data.insert(pfn, Box::new([0; 4096])).is_none(), "frame {pfn:#x} handed out twice");
        }
    }

    /// Gives back a folio whose last reference is gone, off the lists
    /// first (the kernel's `memory::free_folio`).
    pub fn free(&self, folio: Folio<'static>) {
        if folio.test_flag(PageFlag::Lru) {
            self.lru.remove(folio);
        }
        {
            let mut data = self.data.borrow_mut();
            for pfn in folio.pfn().as_u64()..folio.pfn().as_u64() + folio.nr_pages() as u64 {
                assert!(data.remove(&pfn).is_some(), "free: frame {pfn:#x} was never handed out");
            }
        }
        self.fa.free_folio(folio);
    }

    /// Drops one reference, freeing the folio when it was the last.
    pub fn put(&self, folio: Folio<'static>) {
        if folio.put() {
            self.free(folio);
        }
    }

    pub fn frame(&self, pfn: Pfn) -> Bytes {
        let pfn = pfn.as_u64();
        self.data.borrow().get(&pfn).unwrap_or_else(|| panic!("read of free frame {pfn:#x}")).clone()
    }

    pub fn set_frame(&self, pfn: Pfn, bytes: Bytes) {
        let pfn = pfn.as_u64();
        *self.data.borrow_mut().get_mut(&pfn).unwrap_or_else(|| panic!("write to free frame {pfn:#x}")) =
            bytes;
    }

    /// A page-table entry holding `entry` is gone (munmap, exit): the
    /// slot loses a count, and a cache folio nobody needs any more leaves
    /// the cache (the kernel's `swap::free_entry`).
    fn free_swap_entry(&self, entry: SwapEntry) {
        match self.area.free_ref(entry) {
            Ok(0) if self.area.has_cache(entry) => {
                let Some((folio, _)) = lookup_get(&self.area, self.fa.memmap(), entry) else { return };
                self.drop_unmapped_cache_folio(folio);
                self.put(folio);
            }
            Ok(_) => {}
            Err(e) => panic!("free of {entry:?}: {e}"),
        }
    }

    /// The kernel's `swap::drop_unmapped_cache_folio`, less the hand-over
    /// to kswapd (nobody else holds a lock in a one-thread test).
    fn drop_unmapped_cache_folio(&self, folio: Folio<'static>) {
        if folio.try_lock() {
            delete_if_unused(&self.area, &folio, IfMapped::Keep);
            folio.unlock();
        }
    }
}

impl SwapBackend for Sys {
    type IoError = String;

    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        if self.fail_reads.get() > 0 {
            self.fail_reads.set(self.fail_reads.get() - 1);
            return Err(String::from("injected read error"));
        }
        for i in 0..nr {
            let e = nth_entry(first, i);
            assert!(
                self.area.has_cache(e) && self.area.count(e) > 0,
                "read of slot {e:?}: count {}, has_cache {}",
                self.area.count(e),
                self.area.has_cache(e)
            );
            let bytes = self.disk.borrow().get(&e.offset()).cloned();
            let bytes = bytes.unwrap_or_else(|| panic!("read of slot {e:?}, never written"));
            self.set_frame(frame.pfn().plus(i as u64), bytes);
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
            let bytes = self.frame(frame.pfn().plus(i as u64));
            self.disk.borrow_mut().insert(e.offset(), bytes);
        }
        self.nr_writes.set(self.nr_writes.get() + nr as u64);
        self.nr_write_calls.set(self.nr_write_calls.get() + 1);
        Ok(())
    }

    fn relax(&self) {
        panic!("swap-in waits for a folio lock or a claim, which no one can release in a one-thread test");
    }

    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        let f = self.fa.alloc_folio(0, AllocKind::Normal).ok()?;
        self.fill_zero(f.pfn().phys(), 1);
        Some(f)
    }

    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        let f = self.fa.alloc_folio(HPAGE_ORDER, AllocKind::Normal).ok()?;
        self.fill_zero(f.pfn().phys(), NR_HP);
        Some(f)
    }

    fn free_folio(&self, folio: Folio<'static>) {
        self.free(folio);
    }
}

impl FrameSource for Sys {
    fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        let f =
            alloc_anon_folio(self.fa, AllocKind::Normal, handle, index, |pa| self.fill_zero(pa, 1)).ok()?;
        self.lru.add(f);
        Some(f.pfn().phys())
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.put(remove_pte_mapping(self.fa.memmap(), pa));
    }
    fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        let f =
            alloc_anon_huge_folio(self.fa, AllocKind::Normal, handle, index, |pa| self.fill_zero(pa, NR_HP))
                .ok()?;
        self.lru.add(f);
        Some(f.pfn().phys())
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
    }
    fn memmap(&self) -> &Memmap {
        self.fa.memmap()
    }
    fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
        self.area.dup(entry).map(drop).map_err(|e| format!("{e}"))
    }
}

// ------------------------------------------------------------------ spaces

pub struct Space<F: HardwareWalker> {
    pub table: PageTable<F>,
    pub vmas: VmaSet,
}

/// A fork family of address spaces over one allocator, one simulated
/// memory, one TLB, one set of LRU lists and one swap area.
pub struct World<F: HardwareWalker> {
    pub mem: SimMemory,
    pub tlb: SoftTlb<F>,
    pub sys: Sys,
    /// Index = space id; `None` once it exited.
    pub spaces: Vec<Option<Space<F>>>,
    /// The anon handle of every space there ever was.
    pub handles: Vec<AnonHandle>,
    free_at_start: u64,
    // ---- switches a test sets to play the kernel's side differently
    /// `alloc_device` finds no area (no swap on).
    pub no_swap: Cell<bool>,
    /// `device` finds no area (swapoff took it away).
    pub area_gone: Cell<bool>,
    /// Spaces `with_family_locked` and `spaces` leave out.
    pub hidden: RefCell<Vec<usize>>,
    /// Calls of `relax`, and what each call does (a racing reference
    /// going away, say).
    pub nr_relax: Cell<usize>,
    pub on_relax: RefCell<Option<Box<dyn FnMut()>>>,
}

impl<F: HardwareWalker> World<F> {
    /// A world with one empty space (id 0) and a swap area whose every
    /// cluster is whole.
    pub fn new() -> Self {
        Self::with_area(false)
    }

    /// A world whose swap area has a bad page in every cluster of 512 when
    /// `fragmented`: single slots only, no run for a huge folio.
    pub fn with_area(fragmented: bool) -> Self {
        let memmap = Memmap::new_leaked(Pfn::new(MEMMAP_BASE), MEMMAP_LEN);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(Pfn::new(MEMMAP_BASE), Pfn::new(MEMMAP_BASE + MEMMAP_LEN as u64)).unwrap();
        let lru: &'static LruLists = Box::leak(Box::new(LruLists::new(memmap)));
        let bad: Vec<u32> = if fragmented {
            (0..SWAP_PAGES as u32).step_by(512).map(|c| c + 300).collect()
        } else {
            Vec::new()
        };
        let header = parse(&format(SWAP_PAGES, &bad, b"policy").unwrap(), SWAP_PAGES).unwrap();
        let area = SwapArea::new(SwapType::nth(TY), &header);
        let sys = Sys {
            fa,
            lru,
            data: RefCell::new(HashMap::new()),
            area,
            disk: RefCell::new(HashMap::new()),
            fail_reads: Cell::new(0),
            fail_writes: Cell::new(0),
            nr_reads: Cell::new(0),
            nr_read_calls: Cell::new(0),
            nr_writes: Cell::new(0),
            nr_write_calls: Cell::new(0),
        };
        let mut w = World {
            mem: SimMemory::new(0x4000_0000, 1 << 14),
            tlb: SoftTlb::default(),
            sys,
            spaces: Vec::new(),
            handles: Vec::new(),
            free_at_start: fa.nr_free_pages(),
            no_swap: Cell::new(false),
            area_gone: Cell::new(false),
            hidden: RefCell::new(Vec::new()),
            nr_relax: Cell::new(0),
            on_relax: RefCell::new(None),
        };
        w.add_space(PageTable::new(&w.mem).unwrap(), VmaSet::new(va(0x1000), va(USER_END)));
        w
    }

    fn add_space(&mut self, table: PageTable<F>, vmas: VmaSet) -> usize {
        self.handles.push(anon_handle(table.root()));
        self.spaces.push(Some(Space { table, vmas }));
        self.spaces.len() - 1
    }

    pub fn sp(&self, s: usize) -> &Space<F> {
        self.spaces[s].as_ref().expect("space exited")
    }

    pub fn memmap(&self) -> &'static Memmap {
        self.sys.fa.memmap()
    }

    pub fn area(&self) -> &SwapArea {
        &self.sys.area
    }

    pub fn lru(&self) -> &'static LruLists {
        self.sys.lru
    }

    pub fn nr_free(&self) -> u64 {
        self.sys.fa.nr_free_pages()
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.spaces.len()).filter(|&s| self.spaces[s].is_some()).collect()
    }

    /// The live spaces the kernel side can see (not hidden).
    pub fn visible(&self) -> Vec<usize> {
        let hidden = self.hidden.borrow();
        self.live().into_iter().filter(|s| !hidden.contains(s)).collect()
    }

    pub fn handle(&self, s: usize) -> AnonHandle {
        anon_handle(self.sp(s).table.root())
    }

    // ---- checks

    /// The checker over the family, the allocator, the area and the lists.
    pub fn check(&self) -> Vec<Stats> {
        self.sys.fa.check_consistency().unwrap();
        self.area().check().unwrap_or_else(|e| panic!("swap area: {e}"));
        self.lru().check().unwrap_or_else(|e| panic!("lru: {e}"));
        let live = self.live();
        let spaces: Vec<_> = live.iter().map(|&s| (&self.sp(s).table, &self.sp(s).vmas)).collect();
        let area = self.area();
        let count = |e: SwapEntry| (e.ty() == SwapType::nth(TY)).then(|| area.count(e));
        let stats = check_spaces_with_swap(&spaces, &self.mem, &self.handles, self.memmap(), Some(&count))
            .unwrap_or_else(|e| panic!("checker: {e}"));
        let mut all = vec![Stats::default(); self.spaces.len()];
        for (s, st) in live.into_iter().zip(stats) {
            all[s] = st;
        }
        all
    }

    pub fn stats(&self, s: usize) -> Stats {
        self.check()[s]
    }

    /// Every entry of every live space, for "nothing changed" checks.
    pub fn entries(&self) -> Vec<(usize, VirtAddr, Level, Decoded)> {
        let mut all = Vec::new();
        for s in self.live() {
            self.sp(s).table.visit(&self.mem, va(0), va(USER_END), &mut |at, level, e, _| {
                all.push((s, at, level, e));
            });
        }
        all
    }

    // ---- looking at the tables

    pub fn lookup(&self, s: usize, at: u64) -> (Level, Decoded) {
        self.sp(s).table.lookup(&self.mem, va(at))
    }

    pub fn leaf(&self, s: usize, at: u64) -> (Level, Leaf) {
        match self.lookup(s, at) {
            (level, Decoded::Leaf(leaf)) => (level, leaf),
            other => panic!("{at:#x}: no leaf but {other:?}"),
        }
    }

    /// The swap entry at `at` and its exclusive bit, if a PTE holds one.
    pub fn swap_pte(&self, s: usize, at: u64) -> Option<(SwapEntry, bool)> {
        match self.lookup(s, at) {
            (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, exclusive })) => {
                Some((entry, exclusive))
            }
            _ => None,
        }
    }

    pub fn folio_at(&self, s: usize, at: u64) -> Folio<'static> {
        let pa = self.sp(s).table.translate(&self.mem, va(at)).expect("mapped");
        folio_of(self.memmap(), pa.pfn()).expect("a folio")
    }

    /// The folio mapped at `at`, isolated from the lists with a reference,
    /// as reclaim's scan takes it.
    pub fn isolate_at(&self, s: usize, at: u64) -> Folio<'static> {
        let f = self.folio_at(s, at);
        f.get();
        assert!(self.lru().remove(f), "{at:#x}: the folio is on no list");
        f
    }

    // ---- the CPU

    /// An access by user code of space `s`, through the TLB and the
    /// hardware walker; each fault goes to the fault handler, a swap entry
    /// to [`World::swap_in`], and the access is retried. `Err` is the
    /// swap-in error that ended the access.
    pub fn try_access(&self, s: usize, at: u64, how: HwAccess) -> Result<PhysAddr, SwapInError<String>> {
        let sp = self.sp(s);
        for _ in 0..6 {
            match self.tlb.translate(&self.mem, sp.table.root(), va(at), how) {
                Ok(t) => {
                    let now = sp.table.translate(&self.mem, va(at));
                    assert_eq!(Some(t.pa), now, "{at:#x}: the CPU used a stale translation");
                    return Ok(t.pa);
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
                    match handle_fault(&sp.table, &sp.vmas, &self.mem, &self.sys, &self.tlb, &fault, true) {
                        FaultOutcome::NeedsSwapIn { page, entry } => {
                            self.swap_in(s, page.as_u64(), entry, how.access == mm::fault::Access::Write)?;
                        }
                        out @ (FaultOutcome::Refused(_) | FaultOutcome::OutOfMemory) => {
                            panic!("{at:#x}: {out:?}")
                        }
                        _ => {}
                    }
                }
            }
        }
        panic!("{at:#x}: still faulting");
    }

    /// User code of space `s` writes page `p` whole with version `tag`.
    pub fn write_page(&self, s: usize, p: u64, tag: u8) {
        let pa =
            self.try_access(s, p, HwAccess::USER_WRITE).unwrap_or_else(|e| panic!("write {p:#x}: {e:?}"));
        self.sys.set_frame(pa.pfn(), page_bytes(p, tag));
    }

    /// User code of space `s` reads page `p` and finds version `tag`.
    pub fn expect_page(&self, s: usize, p: u64, tag: u8) {
        let pa = self.try_access(s, p, HwAccess::USER_READ).unwrap_or_else(|e| panic!("read {p:#x}: {e:?}"));
        assert!(self.sys.frame(pa.pfn()) == page_bytes(p, tag), "space {s}, page {p:#x}: not version {tag}");
    }

    /// `n` pages from `start`, mapped 4 KiB each (no THP) and written with
    /// version `tag`.
    pub fn small_pages(&mut self, s: usize, start: u64, n: u64, tag: u8) {
        self.mmap(s, start, n * PAGE, RW);
        self.advise_thp(s, start, n * PAGE, ThpMode::Never);
        for p in pages(start, n) {
            self.write_page(s, p, tag);
        }
    }

    /// A THP at `base` (2 MiB-aligned) mapped by a PMD, written with `tag`.
    pub fn thp(&mut self, s: usize, base: u64, tag: u8) -> Folio<'static> {
        self.mmap(s, base, HP, RW);
        self.advise_thp(s, base, HP, ThpMode::Always);
        for p in pages(base, NR_HP) {
            self.write_page(s, p, tag);
        }
        assert_eq!(self.leaf(s, base).0, Level::Pmd, "no 2 MiB block for the THP");
        self.folio_at(s, base)
    }

    // ---- swap-in (kernel/src/vm.rs `swap_in`)

    /// Brings the page of `entry` at `page` of space `s` back and maps it:
    /// half 1 without the lock (the cache, or the disk; an intact run is
    /// read whole), half 2 under it, then the folio leaves the cache if
    /// nobody needs it there, is unlocked and our reference dropped. A
    /// stale entry (somebody else brought it back) is `Ok`: the access is
    /// retried.
    pub fn swap_in(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
        write: bool,
    ) -> Result<(), SwapInError<String>> {
        let sp = self.sp(s);
        let calls = self.sys.nr_read_calls.get();
        let run = || intact_run(&sp.table, &self.mem, &sp.vmas, va(page), entry);
        let got = get_swapped_folio_with_run(
            self.area(),
            self.memmap(),
            &self.sys,
            entry,
            self.handle(s),
            page >> 12,
            run,
        );
        let (folio, i) = match got {
            Ok(got) => got,
            Err(SwapInError::Stale) => return Ok(()), // the entry changed: retry the access
            Err(e) => return Err(e),
        };
        if self.sys.nr_read_calls.get() != calls {
            self.lru().add(folio); // new from the disk (the kernel's lists are registered)
        }
        map_swapped_in(&sp.table, &self.mem, &sp.vmas, self.area(), &folio, i, va(page), entry, write, true);
        delete_if_unused(self.area(), &folio, IfMapped::Keep);
        folio.unlock();
        self.sys.put(folio);
        Ok(())
    }

    // ---- system calls

    pub fn mmap(&mut self, s: usize, start: u64, len: u64, prot: VmaProt) {
        self.spaces[s].as_mut().unwrap().vmas.map_fixed(va(start), len, prot, VmaKind::Anonymous).unwrap();
    }

    pub fn advise_thp(&mut self, s: usize, start: u64, len: u64, mode: ThpMode) {
        self.spaces[s].as_mut().unwrap().vmas.advise_thp(va(start), len, mode).unwrap();
    }

    /// Unmaps `ranges` of the table: flush, swap counts back, references
    /// dropped (a cache folio whose last mapping went leaves the cache).
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
        gather.release_unmapped(memmap, &mut |f| self.sys.drop_unmapped_cache_folio(f), &mut |f| {
            self.sys.free(f)
        });
    }

    pub fn munmap(&mut self, s: usize, start: u64, len: u64) {
        let ranges = self.spaces[s].as_mut().unwrap().vmas.unmap(va(start), len).unwrap();
        self.zap(s, &ranges);
    }

    pub fn fork(&mut self, s: usize) -> usize {
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

    pub fn exit(&mut self, s: usize) {
        self.zap(s, &[(va(0), va(USER_END))]);
        let sp = self.spaces[s].take().unwrap();
        let root = sp.table.root();
        sp.table.destroy(&self.mem, 0..0);
        self.tlb.flush_all(root);
    }

    /// A hold (`FOLL_GET` or a pin) on the page at `at`, after faulting it
    /// in for `write` if needed.
    pub fn hold(&self, s: usize, at: u64, write: bool, hold: Hold) -> PhysAddr {
        let how = if write { HwAccess::USER_WRITE } else { HwAccess::USER_READ };
        self.try_access(s, at, how).unwrap();
        let sp = self.sp(s);
        get_user_page(&sp.table, &sp.vmas, &self.mem, &self.sys, &self.tlb, va(at), write, hold).unwrap()
    }

    pub fn unhold(&self, pa: PhysAddr, hold: Hold) {
        if let Some(folio) = release(self.memmap(), pa, hold) {
            self.sys.free(folio);
        }
    }

    /// Every space exits; every frame, slot and table must be back, the
    /// lists empty and no folio left in the swap cache.
    pub fn finish(mut self) {
        for s in self.live() {
            self.exit(s);
        }
        assert_eq!(self.area().nr_in_cache(), 0, "folios left in the swap cache");
        assert_eq!(self.area().nr_used(), 0, "swap slots leaked");
        self.area().check().unwrap();
        assert_eq!((self.lru().nr_active(), self.lru().nr_inactive()), (0, 0), "folios left on the lists");
        assert_eq!(self.nr_free(), self.free_at_start, "folios leaked");
        assert_eq!(*self.mem.live_tables.borrow(), 0, "tables leaked");
        assert!(self.sys.data.borrow().is_empty());
        self.sys.fa.check_consistency().unwrap();
    }
}

// ------------------------------------------------------------------ the kernel's side

impl<F: HardwareWalker> ReclaimHost for World<F> {
    type Format = F;
    type Mem = SimMemory;
    type Tlb = SoftTlb<F>;
    type Device = ();
    type IoError = String;

    fn mem(&self) -> &SimMemory {
        &self.mem
    }
    fn tlb(&self) -> &SoftTlb<F> {
        &self.tlb
    }
    fn memmap(&self) -> &'static Memmap {
        self.sys.fa.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        Some(self.sys.lru)
    }
    fn any_device(&self) -> bool {
        !self.no_swap.get()
    }
    fn device(&self, ty: SwapType) -> Option<()> {
        (ty == SwapType::nth(TY) && !self.area_gone.get()).then_some(())
    }
    fn alloc_device(&self) -> Option<()> {
        (!self.no_swap.get() && !self.area().alloc_stopped()).then_some(())
    }
    fn area<'a>(&'a self, _: &'a ()) -> &'a SwapArea {
        &self.sys.area
    }
    fn write(&self, _: &(), first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        SwapBackend::write(&self.sys, first, frame, nr)
    }
    fn with_family_locked<R>(&self, _: &Folio<'static>, f: impl FnOnce(&[&PageTable<F>]) -> R) -> R {
        let tables: Vec<&PageTable<F>> = self.visible().into_iter().map(|s| &self.sp(s).table).collect();
        f(&tables)
    }
    fn free(&self, folio: Folio<'static>) {
        self.sys.free(folio);
    }
    fn relax(&self) {
        self.nr_relax.set(self.nr_relax.get() + 1);
        if let Some(f) = self.on_relax.borrow_mut().as_mut() {
            f();
        }
    }
}

impl<F: HardwareWalker> SwapoffHost for World<F> {
    type Space = usize;
    type Format = F;
    type Mem = SimMemory;

    fn mem(&self) -> &SimMemory {
        &self.mem
    }
    fn memmap(&self) -> &'static Memmap {
        self.sys.fa.memmap()
    }
    fn spaces(&self) -> Vec<usize> {
        self.visible()
    }
    fn user_end(&self) -> VirtAddr {
        va(USER_END)
    }
    fn with_space_locked<R>(&self, s: &usize, f: impl FnOnce(&PageTable<F>) -> R) -> Option<R> {
        self.spaces[*s].as_ref().map(|sp| f(&sp.table))
    }
    fn swap_in(&self, s: &usize, at: VirtAddr, entry: SwapEntry) -> Result<(), String> {
        World::swap_in(self, *s, at.as_u64(), entry, false).map_err(|e| format!("space {s} {at}: {e:?}"))
    }
    fn put(&self, folio: Folio<'static>) {
        self.sys.put(folio);
    }
    fn relax(&self) {
        ReclaimHost::relax(self);
    }
}

/// The list a folio is on, if any.
pub fn list_of<F: HardwareWalker>(w: &World<F>, f: Folio<'static>) -> Option<LruList> {
    w.lru().list_of(f.pfn())
}
