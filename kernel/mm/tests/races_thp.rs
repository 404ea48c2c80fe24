//! The huge-page race protocols under a concurrency checker: two faults on
//! one empty PMD, and a PMD split (with the folio split and its refcount
//! freeze) against a fault and against a speculative reference, in every
//! interleaving shuttle explores of the real `mm` code.
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`): the page descriptor's atomics become shuttle's, so every
//! count, flag and refcount operation of `mm::fault`, `mm::thp` and
//! `mm::space` is a point where shuttle may switch threads.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_thp
//! ```
//!
//! The address-space lock is a `shuttle::sync::Mutex` around the table,
//! the areas and the simulated memory, as the kernel's `IrqSpinLock` is
//! around its `Inner`; the protocol is that every table and mapcount change
//! happens under it, while speculative references (`Folio::try_get`) are
//! taken without it. After each execution the consistency checker must
//! pass and every frame must come back at teardown.
//!
//! The frame allocator's spin lock is not shuttle's and would never yield:
//! it is only used under the space's mutex, or by one thread at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arch_x86_64::pgtable::X86Format;
use mm::anon::{alloc_anon_folio, put_anon_folio, remove_pte_mapping};
use mm::debug::check_address_space;
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::folio_of;
use mm::frame::{AllocKind, FrameAllocator};
use mm::page::Memmap;
use mm::pgtable::sim::{SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Level, PageTable};
use mm::space::{zap_range, Gather};
use mm::thp::{alloc_anon_huge_folio, remove_pmd_mapping, HPAGE_SIZE};
use mm::vma::{VmaKind, VmaProt, VmaSet};
use mm::{PhysAddr, VirtAddr};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::Mutex;
use shuttle::{Config, Runner};

const BASE_PFN: u64 = 0x80000;
/// Two 2 MiB blocks of frames.
const NR_FRAMES: usize = 1024;
const AREA: u64 = 0x4000_0000;
const SEED: u64 = 0x5eed_0005;
const ITERATIONS: usize = 150;

/// Anonymous pages and huge folios from a real allocator (no data: only
/// the counts are checked here).
struct Frames(&'static FrameAllocator);

impl FrameSource for Frames {
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let f = alloc_anon_folio(self.0, AllocKind::Normal, handle, index, |_| {}).ok()?;
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        put_anon_folio(self.0, remove_pte_mapping(self.0.memmap(), pa));
    }
    fn alloc_anon_huge(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let f = alloc_anon_huge_folio(self.0, AllocKind::Normal, handle, index, |_| {}).ok()?;
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        put_anon_folio(self.0, remove_pmd_mapping(self.0.memmap(), pa));
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        None
    }
    fn copy_page(&self, _dst: PhysAddr, _src: PhysAddr) {}
    fn memmap(&self) -> &Memmap {
        self.0.memmap()
    }
}

/// What the address-space lock guards.
struct Inner {
    table: PageTable<X86Format>,
    vmas: VmaSet,
    mem: SimMemory,
    tlb: SoftTlb<X86Format>,
}

struct Space {
    inner: Mutex<Inner>,
    frames: Frames,
    free_at_start: u64,
}

impl Space {
    /// A space with one 2 MiB-aligned read-write area of one block.
    fn new() -> &'static Space {
        let memmap = Memmap::new_leaked(BASE_PFN, NR_FRAMES);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(BASE_PFN, BASE_PFN + NR_FRAMES as u64).unwrap();
        let mem = SimMemory::new(0x1000_0000, 64);
        let table = PageTable::new(&mem).unwrap();
        let mut vmas = VmaSet::new(VirtAddr::new(0x1000), VirtAddr::new(0x8000_0000_0000));
        vmas.map_fixed(VirtAddr::new(AREA), HPAGE_SIZE, VmaProt::READ_WRITE, VmaKind::Anonymous).unwrap();
        let free_at_start = fa.nr_free_pages();
        let inner = Mutex::new(Inner { table, vmas, mem, tlb: SoftTlb::default() });
        Box::leak(Box::new(Space { inner, frames: Frames(fa), free_at_start }))
    }

    /// A write fault at `va`, under the lock.
    fn fault(&self, va: u64) -> FaultOutcome {
        let g = self.inner.lock().unwrap();
        let fault = MemFault {
            addr: VirtAddr::new(va),
            access: Access::Write,
            cause: FaultCause::NotMapped,
            level: None,
            syndrome: 0,
        };
        handle_fault(&g.table, &g.vmas, &g.mem, &self.frames, &g.tlb, &fault, true)
    }

    /// munmap of `[start, end)`: under the lock the entries and mapcounts,
    /// then the flush, then the references.
    fn munmap(&self, start: u64, end: u64) {
        let memmap = self.frames.0.memmap();
        let mut gather = Gather::new(PhysAddr::new(0x1000_0000));
        {
            let mut g = self.inner.lock().unwrap();
            g.vmas.unmap(VirtAddr::new(start), end - start).unwrap();
            let Inner { table, mem, tlb, .. } = &*g;
            zap_range(
                table,
                mem,
                tlb,
                memmap,
                VirtAddr::new(start),
                VirtAddr::new(end),
                &mut gather,
                &mut |f| self.frames.0.free_folio(f),
            )
            .unwrap();
            gather.take_flush().flush(tlb);
        }
        gather.release(memmap, &mut |f| self.frames.0.free_folio(f));
    }

    /// The checker; then the level of the entry at `va`.
    fn check(&self, va: u64) -> (mm::debug::Stats, Option<Level>) {
        let g = self.inner.lock().unwrap();
        let stats = check_address_space(&g.table, &g.vmas, &g.mem, self.frames.0.memmap())
            .unwrap_or_else(|e| panic!("consistency: {e}"));
        let level = match g.table.lookup(&g.mem, VirtAddr::new(va)) {
            (level, Decoded::Leaf(_)) => Some(level),
            _ => None,
        };
        (stats, level)
    }

    /// Unmaps everything and wants every frame back.
    fn finish(&self) {
        self.munmap(AREA, AREA + HPAGE_SIZE);
        assert_eq!(self.frames.0.nr_free_pages(), self.free_at_start, "frames leaked");
        self.frames.0.check_consistency().unwrap();
    }
}

/// Executions that saw each outcome, to prove both sides of a race ran.
static SEEN: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

/// Two CPUs write to different pages of one empty 2 MiB block at once.
fn two_faults_on_one_pmd() {
    let space = Space::new();
    let a = shuttle::thread::spawn(move || space.fault(AREA + 0x1000));
    let b = shuttle::thread::spawn(move || space.fault(AREA + 0x1f_f000));
    let outcomes = [a.join().unwrap(), b.join().unwrap()];
    let huge = outcomes.iter().filter(|o| **o == FaultOutcome::MappedHuge).count();
    assert_eq!(huge, 1, "one of the two faults maps the huge page: {outcomes:?}");
    assert!(
        outcomes.contains(&FaultOutcome::Spurious),
        "the other finds it mapped and only retries: {outcomes:?}"
    );
    let (stats, level) = space.check(AREA);
    assert_eq!((stats.nr_pmd_leaves, stats.nr_folios, level), (1, 1, Some(Level::Pmd)));
    let head = {
        let g = space.inner.lock().unwrap();
        g.table.translate(&g.mem, VirtAddr::new(AREA)).unwrap().pfn()
    };
    let folio = folio_of(space.frames.0.memmap(), head).unwrap();
    assert_eq!((folio.entire_mapcount(), folio.refcount()), (1, 1));
    space.finish();
}

/// A munmap that cuts a THP in two (PMD split, then folio split under the
/// freeze rule) against a write fault in the part that stays and a
/// speculative reference on one of its pages.
fn split_against_fault_and_speculative_reference() {
    let space = Space::new();
    assert_eq!(space.fault(AREA), FaultOutcome::MappedHuge);
    let head = {
        let g = space.inner.lock().unwrap();
        g.table.translate(&g.mem, VirtAddr::new(AREA)).unwrap().pfn()
    };
    let memmap = space.frames.0.memmap();
    let zap = shuttle::thread::spawn(move || space.munmap(AREA + 100 * 4096, AREA + 356 * 4096));
    let fault = shuttle::thread::spawn(move || space.fault(AREA + 400 * 4096));
    let walker = shuttle::thread::spawn(move || {
        // A scanner that finds page 5 by its frame number.
        let pfn = head + 5;
        let folio = folio_of(memmap, pfn)?;
        if !folio.try_get() {
            return Some(false); // frozen: the split is under way
        }
        let same = folio_of(memmap, pfn) == Some(folio);
        let order = folio.order();
        shuttle::thread::yield_now();
        assert!(!folio.put(), "the walker's put is never the last: page 5 stays mapped");
        Some(same && order <= 9)
    });
    zap.join().unwrap();
    let outcome = fault.join().unwrap();
    let walked = walker.join().unwrap();
    assert!(
        matches!(outcome, FaultOutcome::Spurious | FaultOutcome::Resolved),
        "the write to a mapped page only retries: {outcome:?}"
    );
    let (stats, level) = space.check(AREA + 400 * 4096);
    assert_eq!(level, Some(Level::Pte), "the cut huge page is mapped by PTEs");
    assert_eq!(stats.nr_pte_leaves, 256);
    // Either the folio was split (256 order-0 folios, the cut part freed),
    // or the walker held a reference at the freeze and it stayed whole.
    let folio = folio_of(memmap, head).unwrap();
    let freed = space.free_at_start - space.frames.0.nr_free_pages();
    match (folio.order(), stats.nr_folios) {
        (0, 256) => {
            assert_eq!(freed, 256, "a split frees the cut part at once");
            SEEN[0].fetch_add(1, Ordering::Relaxed);
        }
        (9, 1) => {
            assert_eq!(freed, 512, "a refused split keeps the whole folio");
            assert_eq!(walked, Some(true), "only the walker's reference can refuse the split");
            SEEN[1].fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("after the cut: (order, folios) = {other:?}"),
    }
    if walked == Some(false) {
        SEEN[2].fetch_add(1, Ordering::Relaxed);
    }
    space.finish();
}

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

#[test]
fn two_faults_on_one_pmd_make_one_thp() {
    run("two faults on one PMD", two_faults_on_one_pmd);
}

#[test]
fn a_split_against_a_fault_and_a_speculative_reference_keeps_the_counts() {
    for s in &SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run("split against fault and reference", split_against_fault_and_speculative_reference);
    let seen: Vec<usize> = SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: split {} times, refused for the walker {} times, walker met a frozen folio {} times",
        seen[0], seen[1], seen[2]
    );
    // Both ends of the race were reached: the split and its refusal.
    assert!(seen[0] > 0 && seen[1] > 0, "shuttle never reached both outcomes: {seen:?}");
}
