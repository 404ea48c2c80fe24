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
//! The space is `mm::testkit`'s `SharedSpace` over `SimFrames` with a swap
//! area: its lock (shuttle's mutex) is around the table, the areas, the
//! simulated memory and the TLB. Half 1 of swap-in (`get_swapped_folio`)
//! runs without it, half 2 (`map_swapped_in`) under it, as in
//! `kernel/src/vm/fault.rs`; reclaim's steps (those of `mm::reclaim`'s
//! shrink step, split where the tests race them) run their unmap under it,
//! their write and freeze without. `SimFrames` makes every call
//! into the frame allocator under a shuttle mutex of its own, so the
//! allocator's spin lock (not shuttle's) is never contended; frame and disk
//! contents are in std mutexes held across no scheduling point. The tests
//! use two words of the page: 0 written by the "device" through a held
//! reference, 1 by the task through its mapping.
//!
//! The bug-replay switch is global: a test that turns one on runs alone
//! (`mm::testkit::bug_switch`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arch_x86_64::pgtable::X86Format;
use mm::bugs::{self, Bug};
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, MemFault};
use mm::folio::{folio_of, Folio};
use mm::gup::{get_user_page, Hold};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::HwAccess;
use mm::pgtable::SwapType;
use mm::pgtable::{Decoded, NonPresent, SwapEntry};
use mm::swap::area::SwapArea;
use mm::swap::cache::{
    add_to_swap, delete_from_swap_cache, delete_if_unused, folio_entry, lookup_get, slots_unused, IfMapped,
};
use mm::swap::swapin::{get_swapped_folio, map_around, map_swapped_in, readahead_window, SwapInOptions};
use mm::swap::swapin::{SwapBackend, SwapInError, SwapInOutcome};
use mm::testkit::bug_switch::{shared, BugOn};
use mm::testkit::frames::SimFrames;
use mm::testkit::races::{explore, run, Explorer};
use mm::testkit::world::SharedSpace;
use mm::unmap::{try_to_unmap, Target};
use mm::{Pfn, PhysAddr, VirtAddr};
use shuttle::thread;
use shuttle::FailurePersistence;

const BASE_PFN: u64 = 0x100;
const NR_FRAMES: usize = 16;
/// The one page the tests use, in a one-page area.
const PAGE_VA: u64 = 0x4000_0000;
const TY: SwapType = SwapType::nth(1);
const SWAP_PAGES: u64 = 8;
const SEED: u64 = 0x5eed_0004;
const ITERATIONS: usize = 800;
/// The readahead races' (two pages, a few more steps each): enough for
/// both to reach their interleavings and, with the munmap, to find a
/// neighbour freed under the reader (checked by undoing the fix).
const READAHEAD_ITERATIONS: usize = 250;

/// Page contents: two words, 0 written by the "device" through a held
/// reference, 1 by the task through its mapping.
type Words = [u64; 2];

/// The one page's space, its frames and swap area (`SharedSpace` over
/// `SimFrames`), with the kernel's swap-in and reclaim steps split where
/// they take and drop the space's lock.
#[derive(Clone, Copy)]
struct World(&'static SharedSpace<X86Format>);

impl World {
    fn new() -> World {
        let frames = SimFrames::new(BASE_PFN, NR_FRAMES).with_swap(TY.raw(), SWAP_PAGES);
        World(SharedSpace::new(frames, &[(PAGE_VA, 4096)]))
    }

    fn memmap(&self) -> &'static Memmap {
        self.0.memmap()
    }

    fn area(&self) -> &'static SwapArea {
        self.0.frames.area()
    }

    fn frames(&self) -> &'static SimFrames {
        &self.0.frames
    }

    fn words(&self, pfn: Pfn) -> Words {
        let pa = pfn.phys();
        [self.frames().read_u64(pa), self.frames().read_u64(PhysAddr::new(pa.as_u64() + 8))]
    }

    fn set_word(&self, pa: PhysAddr, w: usize, value: u64) {
        self.frames().write_u64(PhysAddr::new(pa.as_u64() + 8 * w as u64), value);
    }

    fn set_words(&self, pfn: Pfn, words: Words) {
        for (w, value) in words.into_iter().enumerate() {
            self.set_word(pfn.phys(), w, value);
        }
    }

    /// The entry at the page, under the lock.
    fn entry(&self) -> Decoded {
        self.0.lookup(PAGE_VA).1
    }

    // ---- the task's CPU

    /// One access by the task, as `kernel/src/vm/fault.rs` handles it: the fault
    /// handler under the lock; for a swap entry, half 1 without the lock
    /// and half 2 under it. Returns what happened.
    fn fault_once(&self, access: Access) -> Attempt {
        let backend = self.frames().counting();
        let fault = MemFault {
            addr: VirtAddr::new(PAGE_VA),
            access,
            cause: FaultCause::NotMapped,
            level: None,
            syndrome: 0,
        };
        let (out, bit) = self.0.locked(|g| {
            let out = handle_fault(&g.table, &g.vmas, &g.mem, self.frames(), &g.tlb, &fault, true);
            let bit = match g.table.lookup(&g.mem, VirtAddr::new(PAGE_VA)).1 {
                Decoded::NonPresent(NonPresent::Swap { exclusive, .. }) => exclusive,
                _ => false,
            };
            (out, bit)
        });
        match out {
            FaultOutcome::NeedsSwapIn { page, entry } => {
                let got = get_swapped_folio(
                    self.area(),
                    self.memmap(),
                    &backend,
                    entry,
                    self.0.handle,
                    page.as_u64() >> 12,
                    SwapInOptions::default(),
                );
                let (folio, i) = match got {
                    Ok(got) => got,
                    Err(SwapInError::Stale) => return Attempt::Stale,
                    Err(e) => panic!("swap-in: {e:?}"),
                };
                let read = backend.nr_reads() > 0;
                let write = access == Access::Write;
                let out = self.0.locked(|g| {
                    map_swapped_in(
                        &g.table,
                        &g.mem,
                        &g.vmas,
                        self.area(),
                        &folio,
                        i,
                        page,
                        entry,
                        write,
                        true,
                    )
                });
                folio.unlock();
                self.frames().put(folio);
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
            let done = self.0.locked(|g| {
                let t = g.tlb.translate(&g.mem, g.table.root(), VirtAddr::new(PAGE_VA), how).ok()?;
                assert_eq!(Some(t.pa), g.table.translate(&g.mem, VirtAddr::new(PAGE_VA)), "stale TLB");
                (f.take().unwrap())(t.pa);
                Some(())
            });
            if done.is_some() {
                return attempts;
            }
            attempts.push(self.fault_once(how.access));
        }
        panic!("the task's access never went through: {attempts:?}");
    }

    // ---- reclaim (`mm::reclaim`'s shrink step, steps 1 to 6)

    /// The start: the folio lock (skipped when somebody holds it), no pin,
    /// swap slots. The caller took the reference reclaim isolates the
    /// folio with. Returns false when the folio was skipped (reference
    /// dropped).
    ///
    /// # Panics
    /// When reclaim would keep it for any other reason: the tests never
    /// pin it and leave a slot free.
    fn reclaim_start(&self, folio: Folio<'static>) -> bool {
        if !folio.try_lock() {
            self.frames().put(folio);
            return false;
        }
        assert!(!folio.maybe_pinned(), "reclaim_start: maybe pinned");
        if folio_entry(&folio).is_none() {
            add_to_swap(self.area(), &folio).expect("reclaim_start: no swap slot");
        }
        true
    }

    /// The folio at `pfn`, taken for reclaim: the reference reclaim
    /// isolates it with, then the folio lock and swap slots.
    fn isolate_for_reclaim(&self, pfn: Pfn) -> Folio<'static> {
        let folio = folio_of(self.memmap(), pfn).unwrap();
        folio.get();
        assert!(self.reclaim_start(folio));
        folio
    }

    /// Then: unmap under the space's lock, flush, drop the mappings'
    /// references, write (unless no entry holds the slot any more, or the
    /// folio is clean: `mm::reclaim` step 5).
    fn reclaim_unmap_and_write(&self, folio: Folio<'static>) {
        let refs = self.0.locked(|g| {
            let target = Target::Swap { area: self.area() };
            let done = try_to_unmap(&[&g.table], &g.mem, &g.tlb, self.memmap(), &folio, target).unwrap();
            for flush in done.flushes {
                flush.flush(&g.tlb);
            }
            done.refs
        });
        for _ in 0..refs {
            assert!(!folio.put(), "reclaim's reference keeps the folio");
        }
        if !slots_unused(self.area(), &folio) && folio.test_and_clear_flag(PageFlag::Dirty) {
            let first = folio_entry(&folio).expect("in the swap cache");
            folio.set_flag(PageFlag::Writeback);
            let written = self.frames().write(first, folio.pfn().phys(), folio.nr_pages());
            folio.clear_flag(PageFlag::Writeback);
            written.expect("reclaim: the write failed");
        }
    }

    /// The rest: freeze, out of the cache, free; or kept (unlocked, the
    /// reference dropped) when somebody holds a reference. Returns whether
    /// the folio was freed.
    fn reclaim_finish(&self, folio: Folio<'static>) -> bool {
        if !folio.try_freeze(1 + folio.nr_pages() as i32) {
            folio.set_flag(PageFlag::Dirty); // the holder may write through its reference
            folio.unlock();
            self.frames().put(folio);
            return false;
        }
        let _ = delete_from_swap_cache(self.area(), &folio);
        folio.clear_flag(PageFlag::Dirty);
        folio.unlock();
        self.frames().free(folio);
        true
    }

    // ---- setup

    /// A new world whose page is populated with `words`; and its PFN.
    fn populated(words: Words) -> (World, Pfn) {
        let w = World::new();
        let pfn = w.populate(words);
        (w, pfn)
    }

    /// A write fault maps the page; it gets `words`. Returns its PFN.
    fn populate(&self, words: Words) -> Pfn {
        assert_eq!(self.fault_once(Access::Write), Attempt::AlreadyMapped);
        let pfn = self.0.translate(PAGE_VA).unwrap().pfn();
        self.set_words(pfn, words);
        pfn
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
    let folio = w.isolate_for_reclaim(pfn);
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
    assert!(bit && exclusive, "an exclusive page comes back exclusive: {outcomes:?}");
    // Read from the disk, it keeps its clean copy and is mapped read-only;
    // found in the cache after the fault's reference kept it, it is
    // `Dirty` (reclaim cannot trust a copy a holder may write to) and
    // leaves the cache, writable.
    assert_eq!(writable, !read, "clean copy kept exactly when read: {outcomes:?}");
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
    // Mapped, right contents; the slot free and the folio out of the cache,
    // or (read from the disk) both kept for the clean copy, the folio
    // clean.
    let pa = w.0.translate(PAGE_VA).expect("mapped");
    assert_eq!(w.words(pa.pfn()), MAGIC);
    let now = folio_of(w.memmap(), pa.pfn()).unwrap();
    assert!(now.page(0).test_flag(PageFlag::AnonExclusive));
    assert_eq!(now.test_flag(PageFlag::SwapCache), read);
    assert_eq!(now.test_flag(PageFlag::Dirty), !read);
    assert_eq!((now.refcount(), now.page_mapcount(0)), (1 + i32::from(read), 1));
    assert_eq!((w.area().count(entry), w.area().has_cache(entry)), (0, read));
    w.0.check();
    w.0.finish();
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
    let (w, pfn) = World::populated([1, 1]);
    let held = w.0.locked(|g| {
        get_user_page(&g.table, &g.vmas, &g.mem, w.frames(), &g.tlb, VirtAddr::new(PAGE_VA), true, Hold::Get)
            .unwrap()
    });
    assert_eq!(held.pfn(), pfn);
    let folio = w.isolate_for_reclaim(pfn);
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
    w.0.check();
    let last = mm::gup::release(w.memmap(), held, Hold::Get);
    if let Some(f) = last {
        w.frames().free(f);
    }
    w.0.finish();
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
    let (w, pfn) = World::populated([1, 1]);
    let folio = w.isolate_for_reclaim(pfn);
    w.reclaim_unmap_and_write(folio);
    assert!(w.reclaim_finish(folio), "nothing else holds it");
    // Every other slot in use, as in a full area.
    let fillers: Vec<SwapEntry> = std::iter::from_fn(|| w.area().alloc(0)).collect();
    assert_eq!(w.area().nr_free(), 0);
    let writer = thread::spawn(move || w.cpu(HwAccess::USER_WRITE, |pa| w.set_word(pa, 1, 2)));
    let reader = thread::spawn(move || w.fault_once(Access::Read));
    let pager = thread::spawn(move || {
        for _ in 0..2 {
            // The folio mapped now, if any, with a reference: MADV_PAGEOUT.
            let found = w.0.locked(|g| {
                g.table
                    .translate(&g.mem, VirtAddr::new(PAGE_VA))
                    .and_then(|pa| folio_of(w.memmap(), pa.pfn()))
                    .filter(|f| f.try_get())
            });
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
    // The fillers' claims first: a claim with no folio is an orphan to
    // the checker at rest.
    for e in fillers {
        w.area().release_cache(e, 1).unwrap();
    }
    w.0.check();
    w.0.finish();
}

// ------------------------------------------------------------------ 4

/// The two pages of the readahead races, and what they hold (word 0).
const PAIR: [u64; 2] = [PAGE_VA, PAGE_VA + 4096];
const PAIR_WORDS: [u64; 2] = [0xa0, 0xa1];

/// A world of two pages, with readahead on, both swapped out to
/// consecutive slots and freed; and their entries.
fn pair_swapped_out() -> (World, Vec<SwapEntry>) {
    let frames = SimFrames::new(BASE_PFN, NR_FRAMES).with_swap(TY.raw(), SWAP_PAGES);
    frames.set_readahead(true);
    let w = World(SharedSpace::new(frames, &[(PAGE_VA, 2 * 4096)]));
    // These races follow the slots a swap-in frees at once, as in a fuller
    // area; the clean copy a read keeps otherwise has its own tests
    // (`tests/reclaim.rs`, "clean copies").
    w.area().set_keep_clean(false);
    let mut entries = Vec::new();
    for (at, word) in PAIR.into_iter().zip(PAIR_WORDS) {
        assert_eq!(w.0.fault(at, Access::Write), FaultOutcome::Resolved);
        let pa = w.0.translate(at).unwrap();
        w.set_word(pa, 0, word);
        let folio = w.isolate_for_reclaim(pa.pfn());
        w.reclaim_unmap_and_write(folio);
        assert!(w.reclaim_finish(folio), "nobody holds it: freed");
        let (_, Decoded::NonPresent(NonPresent::Swap { entry, .. })) = w.0.lookup(at) else {
            panic!("not out")
        };
        entries.push(entry);
    }
    assert_eq!(entries[1], entries[0].plus(1), "consecutive slots");
    (w, entries)
}

/// A read of word 0 at `at` as `kernel/src/vm/fault.rs` does it, with
/// readahead: the fault handler under the lock; for a swap entry, half 1
/// without it (the window looked at under it), half 2 under it, then the
/// folio left unneeded leaves the cache. Until the access goes through;
/// `None` when the page's area is gone.
fn read_with_readahead(w: World, at: u64) -> Option<u64> {
    read_with(w, at, None)
}

/// [`read_with_readahead`], and half 2 maps the window around the page
/// too ([`map_around`]), under the same hold of the lock, as the kernel
/// does; `reached` counts the faults that mapped the other page.
fn read_with_map_around(w: World, at: u64, reached: &'static AtomicUsize) -> Option<u64> {
    read_with(w, at, Some(reached))
}

fn read_with(w: World, at: u64, around: Option<&'static AtomicUsize>) -> Option<u64> {
    for _ in 0..8 {
        let word =
            w.0.locked(|g| g.table.translate(&g.mem, VirtAddr::new(at)).map(|pa| w.frames().read_u64(pa)));
        if word.is_some() {
            return word;
        }
        match w.0.fault(at, Access::Read) {
            FaultOutcome::NeedsSwapIn { page, entry } => {
                let window = || w.0.locked(|g| readahead_window(&g.table, &g.mem, &g.vmas, page, entry));
                let got = get_swapped_folio(
                    w.area(),
                    w.memmap(),
                    w.frames(),
                    entry,
                    w.0.handle,
                    page.as_u64() >> 12,
                    SwapInOptions { run: None, window: Some(&window) },
                );
                let (folio, i) = match got {
                    Ok(got) => got,
                    Err(SwapInError::Stale) => continue,
                    Err(e) => panic!("swap-in: {e:?}"),
                };
                w.0.locked(|g| {
                    let out = map_swapped_in(
                        &g.table,
                        &g.mem,
                        &g.vmas,
                        w.area(),
                        &folio,
                        i,
                        page,
                        entry,
                        false,
                        true,
                    );
                    if let (Some(reached), SwapInOutcome::Mapped { .. }) = (around, out) {
                        let free = |f| {
                            w.frames().put(f);
                        };
                        let (area, memmap) = (w.area(), w.memmap());
                        if map_around(&g.table, &g.mem, &g.vmas, area, memmap, page, entry, true, &free) > 0 {
                            reached.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                delete_if_unused(w.area(), &folio, IfMapped::Keep);
                folio.unlock();
                w.frames().put(folio);
            }
            FaultOutcome::Spurious | FaultOutcome::Resolved => {}
            FaultOutcome::Refused(_) => return None,
            other => panic!("fault: {other:?}"),
        }
    }
    panic!("the read at {at:#x} never went through");
}

/// Executions in which one read served both pages (the other found its
/// page read ahead), and in which the readahead read the neighbour that
/// an munmap was taking away.
static ONE_READ_FOR_TWO: AtomicUsize = AtomicUsize::new(0);
static READ_AHEAD_WHILE_UNMAPPED: AtomicUsize = AtomicUsize::new(0);

/// Two tasks read the two pages at once: whichever reads ahead, each
/// gets its own page's data, each page is mapped once, and nothing stays
/// in the cache.
fn readahead_against_a_fault_on_the_neighbour() {
    let (w, _) = pair_swapped_out();
    let a = thread::spawn(move || read_with_readahead(w, PAIR[0]));
    let b = thread::spawn(move || read_with_readahead(w, PAIR[1]));
    assert_eq!([a.join().unwrap(), b.join().unwrap()], PAIR_WORDS.map(Some));
    if w.frames().nr_read_calls() == 1 {
        ONE_READ_FOR_TWO.fetch_add(1, Ordering::Relaxed);
    }
    both_pages_mapped_exclusive_and_nothing_left(w);
}

/// The end of two faults on the pair: each page mapped once, exclusive,
/// out of the swap cache, with one reference; no slot or cache folio left.
fn both_pages_mapped_exclusive_and_nothing_left(w: World) {
    for at in PAIR {
        let pfn = w.0.translate(at).expect("mapped").pfn();
        let f = folio_of(w.memmap(), pfn).unwrap();
        assert!(f.page(0).test_flag(PageFlag::AnonExclusive) && !f.test_flag(PageFlag::SwapCache));
        assert_eq!((f.refcount(), f.page_mapcount(0)), (1, 1));
    }
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (0, 0));
    w.0.check();
    w.0.finish();
}

/// A task reads page 0 while another unmaps page 1: a readahead of page
/// 1 is refused, released or dropped, never left in the cache for an
/// entry nobody holds, but for the folio the munmap found locked, which
/// the kernel hands to kswapd (the finish checks that no slot or cache
/// folio leaks).
fn readahead_against_munmap_of_the_neighbour() {
    let (w, entries) = pair_swapped_out();
    let a = thread::spawn(move || read_with_readahead(w, PAIR[0]));
    let c = thread::spawn(move || w.0.munmap(PAIR[1], PAIR[1] + 4096));
    assert_eq!(a.join().unwrap(), Some(PAIR_WORDS[0]));
    c.join().unwrap();
    if w.frames().nr_reads() == 2 {
        READ_AHEAD_WHILE_UNMAPPED.fetch_add(1, Ordering::Relaxed);
    }
    kswapd_frees_the_unmapped_neighbour(w, entries[1]);
}

/// What is left after an munmap of the neighbour: the munmap's free may
/// have found the neighbour in the cache but locked (the reader still held
/// it); the kernel then hands it to kswapd (`drop_unmapped_cache_folio` in
/// kernel/src/vm/swap.rs), which the sim leaves out. Does kswapd's part,
/// then checks that nothing is left behind.
fn kswapd_frees_the_unmapped_neighbour(w: World, neighbour: SwapEntry) {
    if w.area().nr_in_cache() > 0 {
        let (folio, _) = lookup_get(w.area(), w.memmap(), neighbour).expect("the neighbour's folio");
        folio.lock();
        assert!(delete_if_unused(w.area(), &folio, IfMapped::Keep), "needed by nobody");
        folio.unlock();
        w.frames().put(folio);
    }
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (0, 0), "a neighbour left behind");
    w.0.check();
    w.0.finish();
}

/// Faults that mapped the other page beside their own: against a fault
/// on it, against its munmap.
static MAPPED_AROUND: AtomicUsize = AtomicUsize::new(0);
static MAPPED_AROUND_BEFORE_MUNMAP: AtomicUsize = AtomicUsize::new(0);

/// Two tasks read the two pages at once, each fault mapping the window
/// around its page: whichever maps the other's page, each gets its own
/// page's data, each page is mapped once (a fault that finds its page
/// mapped beside another retries and reads it), exclusive, out of the
/// cache, and no slot or cache folio is left.
fn map_around_against_a_fault_on_the_neighbour() {
    let (w, _) = pair_swapped_out();
    let a = thread::spawn(move || read_with_map_around(w, PAIR[0], &MAPPED_AROUND));
    let b = thread::spawn(move || read_with_map_around(w, PAIR[1], &MAPPED_AROUND));
    assert_eq!([a.join().unwrap(), b.join().unwrap()], PAIR_WORDS.map(Some));
    both_pages_mapped_exclusive_and_nothing_left(w);
}

/// A task reads page 0, mapping the window around it, while another
/// unmaps page 1: page 1 is mapped beside page 0 only while its PTE still
/// holds its slot, and the munmap that comes after takes that mapping
/// away; nothing is left mapped, claimed or cached for it.
fn map_around_against_munmap_of_the_neighbour() {
    let (w, entries) = pair_swapped_out();
    let a = thread::spawn(move || read_with_map_around(w, PAIR[0], &MAPPED_AROUND_BEFORE_MUNMAP));
    let c = thread::spawn(move || w.0.munmap(PAIR[1], PAIR[1] + 4096));
    assert_eq!(a.join().unwrap(), Some(PAIR_WORDS[0]));
    c.join().unwrap();
    assert_eq!(w.0.translate(PAIR[1]), None, "the unmapped page is mapped");
    kswapd_frees_the_unmapped_neighbour(w, entries[1]);
}

/// Faults that mapped the neighbour while reclaim was after it, and the
/// executions in which reclaim freed it.
static MAPPED_AROUND_AGAINST_RECLAIM: AtomicUsize = AtomicUsize::new(0);
static RECLAIMED_THE_NEIGHBOUR: AtomicUsize = AtomicUsize::new(0);

/// Both pages wait in the swap cache, unmapped (read ahead together).
/// A task reads page 0, mapping page 1 beside it, while reclaim takes
/// page 1's folio (locked: it unmaps it, and frees it when nobody else
/// holds it). The folio lock is what keeps fault-around from mapping a
/// folio reclaim has found unmapped and is freeing: whichever wins, page
/// 1 reads its own data afterwards, and nothing is left behind.
fn map_around_against_reclaim_of_the_neighbour() {
    let (w, entries) = pair_swapped_out();
    let window =
        || w.0.locked(|g| readahead_window(&g.table, &g.mem, &g.vmas, VirtAddr::new(PAIR[0]), entries[0]));
    let options = SwapInOptions { run: None, window: Some(&window) };
    let (f0, _) =
        get_swapped_folio(w.area(), w.memmap(), w.frames(), entries[0], w.0.handle, PAIR[0] >> 12, options)
            .expect("both pages read");
    f0.unlock();
    w.frames().put(f0);
    assert_eq!((w.frames().nr_read_calls(), w.area().nr_in_cache()), (1, 2));
    let a = thread::spawn(move || read_with_map_around(w, PAIR[0], &MAPPED_AROUND_AGAINST_RECLAIM));
    let b = thread::spawn(move || {
        let Some((folio, _)) = lookup_get(w.area(), w.memmap(), entries[1]) else { return };
        if w.reclaim_start(folio) {
            w.reclaim_unmap_and_write(folio);
            if w.reclaim_finish(folio) {
                RECLAIMED_THE_NEIGHBOUR.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    assert_eq!(a.join().unwrap(), Some(PAIR_WORDS[0]));
    b.join().unwrap();
    w.0.check();
    assert_eq!(read_with_readahead(w, PAIR[1]), Some(PAIR_WORDS[1]));
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (0, 0), "a neighbour left behind");
    w.0.check();
    w.0.finish();
}

// ------------------------------------------------------------------ runs

#[test]
fn two_faults_on_one_swapped_out_entry_map_it_once() {
    let _shared = shared();
    run("two faults on one entry", SEED, ITERATIONS, two_faults_on_one_entry);
    let (hit, read) = (WINNER_HIT.load(Ordering::Relaxed), WINNER_READ.load(Ordering::Relaxed));
    eprintln!(
        "shuttle: the winner found the folio in the cache {hit} times, claimed and read it {read} times"
    );
    assert!(hit > 0 && read > 0, "shuttle never reached both paths: hit {hit}, read {read}");
}

/// Runs `test` under both schedulers with every switch off (`bug`'s, the
/// one whose mistake it looks for, too): every execution must pass, and
/// `reached` must count at least one of the interleaving it is about
/// (`what`).
fn passes_and_reaches(name: &str, bug: Bug, test: fn(), reached: &AtomicUsize, what: &str) {
    passes_and_reaches_in(ITERATIONS, name, bug, test, reached, what);
}

/// [`passes_and_reaches`] with `iterations` executions per scheduler.
fn passes_and_reaches_in(
    iterations: usize,
    name: &str,
    bug: Bug,
    test: fn(),
    reached: &AtomicUsize,
    what: &str,
) {
    let _shared = shared();
    assert!(!bugs::enabled(bug));
    run(name, SEED, iterations, test);
    let n = reached.load(Ordering::Relaxed);
    eprintln!("shuttle: {what} in {n} executions");
    assert!(n > 0, "shuttle never reached it: {what}");
}

/// Explores `test` under `explorer` with `bug`'s replay switch on (alone):
/// an execution must fail, with the failure `lost` flags (the bug's lost
/// write, `what`).
fn bug_is_caught(bug: Bug, explorer: Explorer, test: fn(), lost: &AtomicBool, what: &str) {
    let failed = {
        let _on = BugOn::new(bug);
        lost.store(false, Ordering::Relaxed);
        let r = explore(explorer, SEED, ITERATIONS, FailurePersistence::Print, test);
        if let Err(msg) = &r {
            eprintln!("shuttle: the failure it found: {msg}");
        }
        r.is_err()
    };
    assert!(!bugs::enabled(bug));
    assert!(failed && lost.load(Ordering::Relaxed), "shuttle did not find {what}");
}

#[test]
fn swap_in_keeps_the_exclusive_hand_off() {
    let what = "the task's write found the page swapped out";
    passes_and_reaches(
        "exclusive hand-off",
        Bug::ForgetAnonExclusive,
        exclusive_hand_off,
        &WRITE_AFTER_UNMAP,
        what,
    );
}

#[test]
fn shuttle_catches_forget_anon_exclusive() {
    let what = "the lost write of seed 004";
    bug_is_caught(Bug::ForgetAnonExclusive, Explorer::Random, exclusive_hand_off, &LOST, what);
}

#[test]
fn swap_in_survives_a_reswap_of_the_same_slot() {
    let what = "the pager swapped the new version out again";
    let test = swap_in_against_a_reswap_of_the_same_slot;
    passes_and_reaches("re-swap of the same slot", Bug::PageoutSplitRace, test, &REPAGED_AFTER_WRITE, what);
}

#[test]
fn shuttle_catches_pageout_split_race() {
    let what = "the lost write of seed 002";
    let test = swap_in_against_a_reswap_of_the_same_slot;
    bug_is_caught(Bug::PageoutSplitRace, Explorer::Pct, test, &LOST_WRITE, what);
}

#[test]
fn readahead_serves_a_fault_on_the_neighbour() {
    let what = "one read brought both pages";
    let test = readahead_against_a_fault_on_the_neighbour;
    let reached = &ONE_READ_FOR_TWO;
    passes_and_reaches_in(
        READAHEAD_ITERATIONS,
        "readahead against a fault",
        Bug::PageoutSplitRace,
        test,
        reached,
        what,
    );
}

#[test]
fn readahead_leaves_nothing_behind_an_munmap() {
    let what = "the readahead read the neighbour being unmapped";
    let test = readahead_against_munmap_of_the_neighbour;
    passes_and_reaches(
        "readahead against munmap",
        Bug::PageoutSplitRace,
        test,
        &READ_AHEAD_WHILE_UNMAPPED,
        what,
    );
}

#[test]
fn map_around_serves_a_fault_on_the_neighbour() {
    let what = "a fault mapped the other page beside its own";
    let test = map_around_against_a_fault_on_the_neighbour;
    let reached = &MAPPED_AROUND;
    passes_and_reaches_in(
        READAHEAD_ITERATIONS,
        "fault-around against a fault",
        Bug::PageoutSplitRace,
        test,
        reached,
        what,
    );
}

#[test]
fn map_around_leaves_nothing_behind_an_munmap() {
    let what = "a fault mapped the page being unmapped beside its own";
    let test = map_around_against_munmap_of_the_neighbour;
    passes_and_reaches(
        "fault-around against munmap",
        Bug::PageoutSplitRace,
        test,
        &MAPPED_AROUND_BEFORE_MUNMAP,
        what,
    );
}

#[test]
fn map_around_keeps_off_a_folio_reclaim_holds() {
    let what = "a fault mapped the neighbour reclaim was after";
    let test = map_around_against_reclaim_of_the_neighbour;
    let reached = &MAPPED_AROUND_AGAINST_RECLAIM;
    passes_and_reaches("fault-around against reclaim", Bug::PageoutSplitRace, test, reached, what);
    let freed = RECLAIMED_THE_NEIGHBOUR.load(Ordering::Relaxed);
    assert!(freed > 0, "shuttle never had reclaim free the neighbour");
}
