//! Swap-in under a concurrency checker: two faults on one swapped-out
//! entry racing the end of its swap-out; a swap-out racing a task that
//! faults the page back while a plain (`FOLL_GET`) reference is held on it
//! (the exclusive hand-off of seed 004); and a writer and a reader faulting
//! a page in while a pager swaps it out again into the slot the swap-in
//! freed (seed 002's ABA, which the claim defeats and the replay
//! `pageout-split-race` lets through), in every interleaving shuttle
//! explores of the real `mm::swap` and `mm::fault` code.
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`): the page descriptor's atomics and the swap area's lock
//! become shuttle's.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_swapin
//! ```
//!
//! The address-space lock is a `shuttle::sync::Mutex` around the table,
//! the areas, the simulated memory and the TLB. Half 1 of swap-in
//! (`get_swapped_folio`) runs without it, half 2 (`map_swapped_in`) under
//! it, as in `kernel/src/vm/space.rs`; reclaim's unmap runs under it, its write
//! and freeze without. The frame allocator's spin lock is not shuttle's:
//! every allocation and free goes through a shuttle mutex of the test
//! (`World::fa_lock`), so the spin lock is never contended. Frame and disk
//! contents are two words per page in std mutexes, held across no
//! scheduling point.
//!
//! The bug-replay switch is global: the tests of this file run one at a
//! time ([`SERIAL`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use arch_x86_64::pgtable::X86Format;
use mm::anon::{alloc_anon_folio, anon_handle, remove_pte_mapping};
use mm::bugs::{self, Bug};
use mm::debug::check_spaces_with_swap;
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::{folio_of, Folio, UnpublishedFolio};
use mm::frame::{AllocKind, FrameAllocator};
use mm::gup::{get_user_page, Hold};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::{HwAccess, SimMemory, SoftTlb};
use mm::pgtable::{Decoded, NonPresent, PageTable, SwapEntry};
use mm::space::{zap_range, Gather};
use mm::swap::area::SwapArea;
use mm::swap::cache::{add_to_swap, delete_from_swap_cache, folio_entry, lookup_get, slots_unused};
use mm::swap::header::{format, parse};
use mm::swap::swapin::{get_swapped_folio, map_swapped_in, SwapBackend, SwapInError, SwapInOutcome};
use mm::swap::unmap::unmap_to_swap;
use mm::vma::{VmaKind, VmaProt, VmaSet};
use mm::{PhysAddr, VirtAddr};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::Mutex;
use shuttle::{thread, Config, Runner};

const BASE_PFN: u64 = 0x100;
const NR_FRAMES: usize = 16;
/// The one page the tests use, in a one-page area.
const PAGE_VA: u64 = 0x4000_0000;
const USER_END: u64 = 0x8000_0000_0000;
const TY: u8 = 1;
const SWAP_PAGES: u64 = 8;
const SEED: u64 = 0x5eed_0004;
const ITERATIONS: usize = 800;

/// The tests of this file, one at a time (the bug switch is global).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Page contents: two words, 0 written by the "device" through a held
/// reference, 1 by the task through its mapping.
type Words = [u64; 2];

/// What the address-space lock guards.
struct Inner {
    table: PageTable<X86Format>,
    vmas: VmaSet,
    mem: SimMemory,
    tlb: SoftTlb<X86Format>,
}

struct World {
    space: Mutex<Inner>,
    handle: u64,
    fa: &'static FrameAllocator,
    /// Taken around every call into the frame allocator (module doc).
    fa_lock: Mutex<()>,
    data: std::sync::Mutex<HashMap<u64, Words>>,
    /// Slot offset -> the page written there last.
    disk: std::sync::Mutex<HashMap<u64, Words>>,
    area: SwapArea,
    free_at_start: u64,
}

impl World {
    fn new() -> &'static World {
        let memmap = Memmap::new_leaked(BASE_PFN, NR_FRAMES);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(BASE_PFN, BASE_PFN + NR_FRAMES as u64).unwrap();
        let mem = SimMemory::new(0x1000_0000, 64);
        let table = PageTable::new(&mem).unwrap();
        let handle = anon_handle(table.root());
        let mut vmas = VmaSet::new(VirtAddr::new(0x1000), VirtAddr::new(USER_END));
        vmas.map_fixed(VirtAddr::new(PAGE_VA), 4096, VmaProt::READ_WRITE, VmaKind::Anonymous).unwrap();
        let header = parse(&format(SWAP_PAGES, &[], b"race").unwrap(), SWAP_PAGES).unwrap();
        Box::leak(Box::new(World {
            space: Mutex::new(Inner { table, vmas, mem, tlb: SoftTlb::default() }),
            handle,
            fa,
            fa_lock: Mutex::new(()),
            data: std::sync::Mutex::new(HashMap::new()),
            disk: std::sync::Mutex::new(HashMap::new()),
            area: SwapArea::new(TY, &header),
            free_at_start: fa.nr_free_pages(),
        }))
    }

    fn memmap(&self) -> &'static Memmap {
        self.fa.memmap()
    }

    fn words(&self, pfn: u64) -> Words {
        *self.data.lock().unwrap().get(&pfn).unwrap_or_else(|| panic!("read of free frame {pfn:#x}"))
    }

    fn set_word(&self, pa: PhysAddr, w: usize, value: u64) {
        self.data.lock().unwrap().get_mut(&pa.pfn()).unwrap_or_else(|| panic!("write to free frame"))[w] =
            value;
    }

    fn free(&self, folio: Folio<'static>) {
        let _fa = self.fa_lock.lock().unwrap();
        assert!(self.data.lock().unwrap().remove(&folio.pfn()).is_some(), "free of a frame never handed out");
        self.fa.free_folio(folio);
    }

    fn put(&self, folio: Folio<'static>) {
        if folio.put() {
            self.free(folio);
        }
    }

    fn check(&self) {
        let g = self.space.lock().unwrap();
        let count = |e: SwapEntry| (e.ty() == TY).then(|| self.area.count(e));
        check_spaces_with_swap(&[(&g.table, &g.vmas)], &g.mem, &[self.handle], self.memmap(), Some(&count))
            .unwrap_or_else(|e| panic!("consistency: {e}"));
        self.area.check().unwrap();
    }

    /// The entry at the page, under the lock.
    fn entry(&self) -> Decoded {
        let g = self.space.lock().unwrap();
        g.table.lookup(&g.mem, VirtAddr::new(PAGE_VA)).1
    }

    // ---- the task's CPU

    /// One access by the task, as `kernel/src/vm/space.rs` handles it: the fault
    /// handler under the lock; for a swap entry, half 1 without the lock
    /// and half 2 under it. Returns what happened.
    fn fault_once(&self, access: Access) -> Attempt {
        let backend = Backend { w: self, reads: Cell::new(0) };
        let fault = MemFault {
            addr: VirtAddr::new(PAGE_VA),
            access,
            cause: FaultCause::NotMapped,
            level: None,
            syndrome: 0,
        };
        let (out, bit) = {
            let g = self.space.lock().unwrap();
            let out = handle_fault(&g.table, &g.vmas, &g.mem, self, &g.tlb, &fault, true);
            let bit = match g.table.lookup(&g.mem, VirtAddr::new(PAGE_VA)).1 {
                Decoded::NonPresent(NonPresent::Swap { exclusive, .. }) => exclusive,
                _ => false,
            };
            (out, bit)
        };
        match out {
            FaultOutcome::NeedsSwapIn { page, entry } => {
                let got = get_swapped_folio(
                    &self.area,
                    self.memmap(),
                    &backend,
                    entry,
                    self.handle,
                    page.as_u64() >> 12,
                );
                let (folio, i) = match got {
                    Ok(got) => got,
                    Err(SwapInError::Stale) => return Attempt::Stale,
                    Err(e) => panic!("swap-in: {e:?}"),
                };
                let read = backend.reads.get() > 0;
                let out = {
                    let g = self.space.lock().unwrap();
                    let write = access == Access::Write;
                    map_swapped_in(&g.table, &g.mem, &g.vmas, &self.area, &folio, i, page, entry, write, true)
                };
                folio.unlock();
                self.put(folio);
                match out {
                    SwapInOutcome::Mapped { exclusive, writable, .. } => {
                        Attempt::Mapped { read, bit, exclusive, writable }
                    }
                    SwapInOutcome::Changed => Attempt::Changed { read },
                }
            }
            FaultOutcome::Spurious | FaultOutcome::Resolved => Attempt::AlreadyMapped,
            FaultOutcome::Copied => Attempt::Copied,
            FaultOutcome::Reused => Attempt::Reused,
            other => panic!("fault: {other:?}"),
        }
    }

    /// The task accesses word `w` of its page: through the TLB, faulting
    /// (and swapping in) until the access goes through; `f` gets the
    /// physical address used, under the lock. Returns the attempts made.
    fn cpu(&self, how: HwAccess, f: impl FnOnce(PhysAddr)) -> Vec<Attempt> {
        let mut attempts = Vec::new();
        let mut f = Some(f);
        for _ in 0..8 {
            {
                let g = self.space.lock().unwrap();
                if let Ok(t) = g.tlb.translate(&g.mem, g.table.root(), VirtAddr::new(PAGE_VA), how) {
                    assert_eq!(Some(t.pa), g.table.translate(&g.mem, VirtAddr::new(PAGE_VA)), "stale TLB");
                    (f.take().unwrap())(t.pa);
                    return attempts;
                }
            }
            attempts.push(self.fault_once(how.access));
        }
        panic!("the task's access never went through: {attempts:?}");
    }

    // ---- reclaim (kernel/src/vm/reclaim.rs `shrink_locked`)

    /// The start: the folio lock and swap slots. The caller took the
    /// reference reclaim isolates the folio with. Returns false when the
    /// folio was kept (reference consumed).
    fn reclaim_start(&self, folio: Folio<'static>) -> bool {
        if !folio.try_lock() {
            self.put(folio);
            return false;
        }
        if folio_entry(&folio).is_none() {
            add_to_swap(&self.area, &folio).unwrap();
        }
        true
    }

    /// Then: unmap under the space's lock, flush, drop the mappings'
    /// references, write.
    fn reclaim_unmap_and_write(&self, folio: Folio<'static>) {
        let refs = {
            let g = self.space.lock().unwrap();
            let done = unmap_to_swap(&[&g.table], &g.mem, &g.tlb, self.memmap(), &folio, &self.area).unwrap();
            for flush in done.flushes {
                flush.flush(&g.tlb);
            }
            done.refs
        };
        for _ in 0..refs {
            assert!(!folio.put(), "reclaim's reference keeps the folio");
        }
        if !slots_unused(&self.area, &folio) {
            let first = folio_entry(&folio).unwrap();
            folio.set_flag(PageFlag::Writeback);
            let words = self.words(folio.pfn());
            self.disk.lock().unwrap().insert(first.offset(), words);
            folio.clear_flag(PageFlag::Writeback);
        }
    }

    /// The rest: freeze, out of the cache, free; or kept when somebody
    /// holds a reference. Returns whether the folio was freed.
    fn reclaim_finish(&self, folio: Folio<'static>) -> bool {
        if !folio.try_freeze(1 + folio.nr_pages() as i32) {
            folio.unlock();
            self.put(folio);
            return false;
        }
        let _ = delete_from_swap_cache(&self.area, &folio);
        folio.clear_flag(PageFlag::Dirty);
        folio.unlock();
        self.free(folio);
        true
    }

    // ---- setup and teardown

    /// A write fault maps the page; it gets `words`. Returns its PFN.
    fn populate(&self, words: Words) -> u64 {
        assert_eq!(self.fault_once(Access::Write), Attempt::AlreadyMapped);
        let pfn = {
            let g = self.space.lock().unwrap();
            g.table.translate(&g.mem, VirtAddr::new(PAGE_VA)).unwrap().pfn()
        };
        *self.data.lock().unwrap().get_mut(&pfn).unwrap() = words;
        pfn
    }

    /// munmap of everything: entries, flush, swap counts (dropping an
    /// unused cache folio as `kernel/src/vm/swap.rs` does), references. Then
    /// every frame and slot must be back.
    fn finish(&self) {
        let mut gather;
        {
            let g = self.space.lock().unwrap();
            gather = Gather::new(g.table.root());
            zap_range(
                &g.table,
                &g.mem,
                &g.tlb,
                self.memmap(),
                VirtAddr::new(0),
                VirtAddr::new(USER_END),
                &mut gather,
                &mut |f| self.free(f),
            )
            .unwrap();
            gather.take_flush().flush(&g.tlb);
        }
        for e in gather.take_swap_entries() {
            if self.area.free_ref(e) == Ok(0) && self.area.has_cache(e) {
                let (folio, _) = lookup_get(&self.area, self.memmap(), e).unwrap();
                assert!(folio.try_lock());
                assert!(folio.total_mapcount() == 0 && slots_unused(&self.area, &folio));
                let refs = delete_from_swap_cache(&self.area, &folio);
                folio.unlock();
                for _ in 0..refs {
                    self.put(folio);
                }
                self.put(folio);
            }
        }
        gather.release(self.memmap(), &mut |f| self.free(f));
        assert_eq!(
            (self.area.nr_used(), self.area.nr_in_cache()),
            (0, 0),
            "swap slots or cache folios leaked"
        );
        self.area.check().unwrap();
        assert_eq!(self.fa.nr_free_pages(), self.free_at_start, "frames leaked");
        self.fa.check_consistency().unwrap();
    }
}

/// What one fault of the task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Swapped in and mapped; `read` when this task claimed and read the
    /// slot (otherwise it found the folio in the cache); `bit` the swap
    /// entry's exclusive bit.
    Mapped {
        read: bool,
        bit: bool,
        exclusive: bool,
        writable: bool,
    },
    /// Half 2 found another entry.
    Changed {
        read: bool,
    },
    /// Half 1: the slot is no longer held (somebody swapped it in).
    Stale,
    /// The page was mapped already.
    AlreadyMapped,
    /// Write faults on a read-only mapping.
    Copied,
    Reused,
}

/// The disk and memory of one faulting thread (its own read count).
struct Backend<'a> {
    w: &'a World,
    reads: Cell<u32>,
}

impl SwapBackend for Backend<'_> {
    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        assert_eq!(nr, 1);
        // Seed 002: a slot is read only while claimed and held (the
        // replayed mistake reads without the claim: that read is what the
        // test of the switch is about).
        if !bugs::enabled(Bug::PageoutSplitRace) {
            assert!(
                self.w.area.has_cache(first) && self.w.area.count(first) > 0,
                "read of an unclaimed slot"
            );
        }
        let words = *self.w.disk.lock().unwrap().get(&first.offset()).expect("read of a slot never written");
        *self.w.data.lock().unwrap().get_mut(&frame.pfn()).unwrap() = words;
        self.reads.set(self.reads.get() + 1);
        Ok(())
    }
    fn write(&self, _: SwapEntry, _: PhysAddr, _: usize) -> Result<(), String> {
        unreachable!("swap-in never writes")
    }
    fn relax(&self) {
        thread::yield_now();
    }
    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        let _fa = self.w.fa_lock.lock().unwrap();
        let f = self.w.fa.alloc_folio(0, AllocKind::Normal).ok()?;
        self.w.data.lock().unwrap().insert(f.pfn(), [0; 2]);
        Some(f)
    }
    fn free_folio(&self, folio: Folio<'static>) {
        self.w.free(folio);
    }
}

impl FrameSource for World {
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let _fa = self.fa_lock.lock().unwrap();
        let f = alloc_anon_folio(self.fa, AllocKind::Normal, handle, index, |_| {}).ok()?;
        self.data.lock().unwrap().insert(f.pfn(), [0; 2]);
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.put(remove_pte_mapping(self.memmap(), pa));
    }
    fn alloc_anon_huge(&self, _: u64, _: u64) -> Option<PhysAddr> {
        None
    }
    fn release_anon_huge(&self, _: PhysAddr) {
        unreachable!("no huge folios here")
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        None
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        let words = self.words(src.pfn());
        *self.data.lock().unwrap().get_mut(&dst.pfn()).unwrap() = words;
    }
    fn memmap(&self) -> &Memmap {
        self.fa.memmap()
    }
    fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
        self.area.dup(entry).map(drop).map_err(|e| format!("{e}"))
    }
}

// ------------------------------------------------------------------ 1

/// Executions in which the winner found the folio in the cache, and in
/// which it claimed the slot and read it.
static WINNER_HIT: AtomicUsize = AtomicUsize::new(0);
static WINNER_READ: AtomicUsize = AtomicUsize::new(0);

/// A page is swapped out up to its write; then the end of reclaim (freeze
/// and free, or kept when a fault holds a reference) races two read faults
/// on its entry.
fn two_faults_on_one_entry() {
    let w = World::new();
    const MAGIC: Words = [0x1111, 0x2222];
    let pfn = w.populate(MAGIC);
    let folio = folio_of(w.memmap(), pfn).unwrap();
    folio.get(); // reclaim's isolation reference
    assert!(w.reclaim_start(folio));
    w.reclaim_unmap_and_write(folio);
    let Decoded::NonPresent(NonPresent::Swap { entry, exclusive: true }) = w.entry() else {
        panic!("not swapped out: {:?}", w.entry())
    };
    let reclaim = thread::spawn(move || w.reclaim_finish(folio));
    let a = thread::spawn(move || w.fault_once(Access::Read));
    let b = thread::spawn(move || w.fault_once(Access::Read));
    let freed = reclaim.join().unwrap();
    let outcomes = [a.join().unwrap(), b.join().unwrap()];
    let mapped: Vec<_> = outcomes.iter().filter(|o| matches!(o, Attempt::Mapped { .. })).collect();
    assert_eq!(mapped.len(), 1, "exactly one fault maps the page: {outcomes:?}");
    let Attempt::Mapped { read, bit, exclusive, writable } = *mapped[0] else { unreachable!() };
    assert!(bit && exclusive && writable, "an exclusive page comes back exclusive: {outcomes:?}");
    assert_eq!(read, freed, "the winner reads exactly when reclaim freed the folio: {outcomes:?}");
    for o in outcomes {
        assert!(
            matches!(
                o,
                Attempt::Mapped { .. } | Attempt::Changed { .. } | Attempt::Stale | Attempt::AlreadyMapped
            ),
            "the other fault sees the change: {outcomes:?}"
        );
    }
    [&WINNER_HIT, &WINNER_READ][usize::from(read)].fetch_add(1, Ordering::Relaxed);
    // Mapped, right contents, slot free, folio out of the cache.
    let pa = {
        let g = w.space.lock().unwrap();
        g.table.translate(&g.mem, VirtAddr::new(PAGE_VA)).expect("mapped")
    };
    assert_eq!(w.words(pa.pfn()), MAGIC);
    let now = folio_of(w.memmap(), pa.pfn()).unwrap();
    assert!(now.page(0).test_flag(PageFlag::AnonExclusive) && !now.test_flag(PageFlag::SwapCache));
    assert_eq!((now.refcount(), now.page_mapcount(0)), (1, 1));
    assert_eq!((w.area.count(entry), w.area.has_cache(entry)), (0, false));
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 2

/// Executions in which the task's write found the page swapped out.
static WRITE_AFTER_UNMAP: AtomicUsize = AtomicUsize::new(0);
/// Set when the invariant of [`exclusive_hand_off`] failed.
static LOST: AtomicBool = AtomicBool::new(false);

/// A device holds a plain write reference (`FOLL_GET|FOLL_WRITE`) on the
/// task's page; reclaim swaps the page out (its freeze fails: the folio
/// stays in the cache) while the task writes the page, the device writes
/// through its reference, and the task reads. Writes on each side must be
/// seen by the other; a swap-in maps the page exclusive exactly when the
/// swap entry's bit says so.
fn exclusive_hand_off() {
    let w = World::new();
    let pfn = w.populate([1, 1]);
    let held = {
        let g = w.space.lock().unwrap();
        get_user_page(&g.table, &g.vmas, &g.mem, w, &g.tlb, VirtAddr::new(PAGE_VA), true, Hold::Get).unwrap()
    };
    assert_eq!(held.pfn(), pfn);
    let folio = folio_of(w.memmap(), pfn).unwrap();
    folio.get(); // reclaim's isolation reference
    assert!(w.reclaim_start(folio));
    let reclaim = thread::spawn(move || {
        w.reclaim_unmap_and_write(folio);
        w.reclaim_finish(folio)
    });
    let task = thread::spawn(move || {
        let mut attempts = w.cpu(HwAccess::USER_WRITE, |pa| w.set_word(pa, 1, 7));
        w.set_word(held, 0, 0xd); // the device
        let mut seen = 0;
        attempts.extend(w.cpu(HwAccess::USER_READ, |pa| seen = w.words(pa.pfn())[0]));
        let through_ref = w.words(held.pfn())[1];
        for a in &attempts {
            if let Attempt::Mapped { bit, exclusive, writable, .. } = *a {
                // A reference is held, so only the bit can prove the page
                // exclusive.
                assert_eq!(
                    (exclusive, writable),
                    (bit, bit),
                    "exclusive exactly when the bit was kept: {a:?}"
                );
                assert_eq!(bit, !bugs::enabled(Bug::ForgetAnonExclusive));
            }
        }
        if matches!(attempts.first(), Some(Attempt::Mapped { .. })) {
            WRITE_AFTER_UNMAP.fetch_add(1, Ordering::Relaxed);
        }
        if seen != 0xd || through_ref != 7 {
            // Reported by the main thread once every thread is done.
            return Err(format!(
                "writes through the reference are lost: the task sees {seen:#x} (device wrote 0xd), the \
                 reference sees {through_ref:#x} (task wrote 7); attempts {attempts:?}"
            ));
        }
        Ok(())
    });
    let freed = reclaim.join().unwrap();
    if let Err(lost) = task.join().unwrap() {
        LOST.store(true, Ordering::Relaxed);
        panic!("{lost}");
    }
    assert!(!freed, "the held reference keeps the folio");
    w.check();
    let last = mm::gup::release(w.memmap(), held, Hold::Get);
    if let Some(f) = last {
        w.free(f);
    }
    w.finish();
}

// ------------------------------------------------------------------ 3

/// Executions in which the pager swapped the page out again after the
/// writer's write (into the slot the swap-in had freed: the ABA).
static REPAGED_AFTER_WRITE: AtomicUsize = AtomicUsize::new(0);
/// Set when the writer's write was lost.
static LOST_WRITE: AtomicBool = AtomicBool::new(false);

/// Seed 002's race: the page is swapped out and freed (one entry holds its
/// slot, nothing is in the cache). A writer faults it in and writes a new
/// version; a reader faults on it at the same time; a pager swaps it out
/// again. Every other slot of the area is taken, so the slot a swap-in
/// frees is the one the pager gets, and the entry holds the same value
/// again. The write must survive.
fn swap_in_against_a_reswap_of_the_same_slot() {
    let w = World::new();
    let pfn = w.populate([1, 1]);
    let folio = folio_of(w.memmap(), pfn).unwrap();
    folio.get();
    assert!(w.reclaim_start(folio));
    w.reclaim_unmap_and_write(folio);
    assert!(w.reclaim_finish(folio), "nothing else holds it");
    // Every other slot in use, as in a full area.
    let fillers: Vec<SwapEntry> = std::iter::from_fn(|| w.area.alloc(0)).collect();
    assert_eq!(w.area.nr_free(), 0);
    let writer = thread::spawn(move || w.cpu(HwAccess::USER_WRITE, |pa| w.set_word(pa, 1, 2)));
    let reader = thread::spawn(move || w.fault_once(Access::Read));
    let pager = thread::spawn(move || {
        for _ in 0..2 {
            // The folio mapped now, if any, with a reference: MADV_PAGEOUT.
            let found = {
                let g = w.space.lock().unwrap();
                g.table
                    .translate(&g.mem, VirtAddr::new(PAGE_VA))
                    .and_then(|pa| folio_of(w.memmap(), pa.pfn()))
                    .filter(|f| f.try_get())
            };
            if let Some(folio) = found {
                let new_version = w.words(folio.pfn())[1] == 2;
                if w.reclaim_start(folio) {
                    w.reclaim_unmap_and_write(folio);
                    w.reclaim_finish(folio);
                    if new_version {
                        REPAGED_AFTER_WRITE.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            thread::yield_now();
        }
    });
    writer.join().unwrap();
    reader.join().unwrap();
    pager.join().unwrap();
    let mut seen = [0; 2];
    w.cpu(HwAccess::USER_READ, |pa| seen = w.words(pa.pfn()));
    if seen[1] != 2 {
        LOST_WRITE.store(true, Ordering::Relaxed);
        panic!("lost write: the page holds {seen:?} after the writer wrote 2 into word 1");
    }
    w.check();
    for e in fillers {
        w.area.release_cache(e, 1).unwrap();
    }
    w.finish();
}

// ------------------------------------------------------------------ runs

fn config() -> Config {
    let mut config = Config::new();
    config.silence_warnings = true;
    config
}

fn run(name: &str, f: fn()) {
    let start = Instant::now();
    Runner::new(RandomScheduler::new_from_seed(SEED, ITERATIONS), config()).run(f);
    Runner::new(PctScheduler::new_from_seed(SEED, 3, ITERATIONS), config()).run(f);
    eprintln!("shuttle: {name}: {:.2} s", start.elapsed().as_secs_f64());
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn two_faults_on_one_swapped_out_entry_map_it_once() {
    let _serial = serial();
    run("two faults on one entry", two_faults_on_one_entry);
    let (hit, read) = (WINNER_HIT.load(Ordering::Relaxed), WINNER_READ.load(Ordering::Relaxed));
    eprintln!(
        "shuttle: the winner found the folio in the cache {hit} times, claimed and read it {read} times"
    );
    assert!(hit > 0 && read > 0, "shuttle never reached both paths: hit {hit}, read {read}");
}

#[test]
fn swap_in_keeps_the_exclusive_hand_off() {
    let _serial = serial();
    assert!(!bugs::enabled(Bug::ForgetAnonExclusive));
    run("exclusive hand-off", exclusive_hand_off);
    let n = WRITE_AFTER_UNMAP.load(Ordering::Relaxed);
    eprintln!("shuttle: the task's write found the page swapped out in {n} executions");
    assert!(n > 0, "shuttle never let reclaim unmap before the task's write");
}

/// Turns the switch off again even when the run panics.
struct BugOn(Bug);

impl Drop for BugOn {
    fn drop(&mut self) {
        bugs::disable(self.0);
    }
}

#[test]
fn shuttle_catches_forget_anon_exclusive() {
    let _serial = serial();
    LOST.store(false, Ordering::Relaxed);
    let failed = {
        let _on = BugOn(Bug::ForgetAnonExclusive);
        bugs::enable(Bug::ForgetAnonExclusive);
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| {
            Runner::new(RandomScheduler::new_from_seed(SEED, ITERATIONS), config()).run(exclusive_hand_off)
        });
        eprintln!("shuttle: exclusive hand-off with the bug: {:.2} s", start.elapsed().as_secs_f64());
        if let Err(payload) = &r {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            eprintln!("shuttle: the failure it found: {}", msg.as_deref().unwrap_or("(not a message)"));
        }
        r.is_err()
    };
    assert!(!bugs::enabled(Bug::ForgetAnonExclusive));
    assert!(failed && LOST.load(Ordering::Relaxed), "shuttle did not find the lost write of seed 004");
}

#[test]
fn swap_in_survives_a_reswap_of_the_same_slot() {
    let _serial = serial();
    assert!(!bugs::enabled(Bug::PageoutSplitRace));
    run("re-swap of the same slot", swap_in_against_a_reswap_of_the_same_slot);
    let n = REPAGED_AFTER_WRITE.load(Ordering::Relaxed);
    eprintln!("shuttle: the pager swapped the new version out again in {n} executions");
    assert!(n > 0, "shuttle never let the pager swap the written page out again");
}

#[test]
fn shuttle_catches_pageout_split_race() {
    let _serial = serial();
    LOST_WRITE.store(false, Ordering::Relaxed);
    let failed = {
        let _on = BugOn(Bug::PageoutSplitRace);
        bugs::enable(Bug::PageoutSplitRace);
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| {
            Runner::new(PctScheduler::new_from_seed(SEED, 3, ITERATIONS), config())
                .run(swap_in_against_a_reswap_of_the_same_slot)
        });
        eprintln!("shuttle: re-swap with the bug: {:.2} s", start.elapsed().as_secs_f64());
        r.is_err()
    };
    assert!(!bugs::enabled(Bug::PageoutSplitRace));
    assert!(failed && LOST_WRITE.load(Ordering::Relaxed), "shuttle did not find the lost write of seed 002");
}
