//! Swap-out and swap-in over both real formats: the swap cache
//! (`mm::swap::cache`), swap-out by the real reclaim step
//! (`mm::reclaim::shrink_folio`: slots, unmapping to swap with the
//! exclusive bit through `mm::unmap::try_to_unmap`, the write, the
//! freeze), the two halves of swap-in (`mm::swap::swapin`), fork and munmap
//! of swap entries (`mm::space`), with the consistency checker
//! (`mm::debug::check_spaces_in`, through `World::check`) after the steps, and at teardown
//! every frame back in the allocator and every slot free.
//!
//! The world is `mm::testkit`'s `World` (a fork family over `SimFrames`:
//! a real `FrameAllocator` over a leaked memmap, page tables in
//! `SimMemory`, simulated frame contents, a simulated CPU with a software
//! TLB) with a swap area of [`SWAP_PAGES`] pages made from a formatted and
//! parsed mkswap header and `SimFrames`' RAM disk behind `SwapBackend`,
//! whose switches make the next reads, writes or allocations fail and
//! which checks the protocol too: a read is only of slots that somebody
//! claimed (HAS_CACHE) and that a page-table entry still holds, a write
//! only of slots in the cache. It has no LRU lists: reclaim takes the
//! folios the tests name (`World::swap_out`, `World::reclaim_cache`) with
//! `World` as its `ReclaimHost` (`mm::testkit::policy`). The kernel's
//! swap-in (`kernel/src/vm/fault.rs` `swap_in`) and its `free_entry`
//! (`kernel/src/vm/swap.rs`) are re-enacted over the sim: `World::swap_in`,
//! `SimFrames::free_swap_entry`.
//!
//! The bug-replay switch word is global to the process: every test holds
//! `mm::testkit::bug_switch::shared`, the one that turns
//! `ForgetAnonExclusive` on holds a `BugOn`, alone.

use mm::pgtable::SwapType;
use mm::testkit::rng::Rng;

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::bugs::{self, Bug};
use mm::debug::Stats;
use mm::fault::FaultOutcome;
use mm::folio::Folio;
use mm::gup::Hold;
use mm::page::PageFlag;
use mm::pgtable::sim::{HardwareWalker, HwAccess};
use mm::pgtable::{Decoded, Level, SwapEntry};
use mm::reclaim::{Kept, Shrunk};
use mm::swap::cache::{folio_entry, nth_entry};
use mm::swap::swapin::{get_swapped_folio, SwapInError, SwapInOptions, SwapInOutcome};
use mm::testkit::bug_switch::{shared, BugOn};
use mm::testkit::frames::SimFrames;
use mm::testkit::world::{page_bytes, pages, va, Ev, World, AREA, MEMMAP_BASE, MEMMAP_LEN, PAGE};
use mm::thp::{HPAGE_NR, HPAGE_SIZE};
use mm::vma::{ThpMode, VmaProt};
use mm::PhysAddr;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

const HP: u64 = HPAGE_SIZE;
const RW: VmaProt = VmaProt::READ_WRITE;
/// The swap area's type and size (8 clusters; cluster 0 holds the header).
const TY: SwapType = SwapType::nth(2);
const SWAP_PAGES: u64 = 4096;

/// The world of these tests: [`World`]'s frames with a swap area.
fn world<F: HardwareWalker>() -> World<F> {
    let w = World::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_swap(TY.raw(), SWAP_PAGES));
    // These tests follow pages whose swap-in frees their slots at once, as
    // in a fuller area; the clean copies a read keeps otherwise have their
    // own tests (`tests/reclaim.rs`, "clean copies").
    w.area().set_keep_clean(false);
    w
}

fn small_stats(n: u64) -> Stats {
    Stats { nr_pages_mapped: n, nr_folios: n, nr_pte_leaves: n, ..Stats::default() }
}

/// A world whose space 0 maps `n` pages at [`AREA`], each written whole
/// (version 1).
fn written<F: HardwareWalker>(n: u64) -> World<F> {
    let mut w = world::<F>();
    w.mmap(0, AREA, n * PAGE, RW);
    for p in pages(AREA, n) {
        w.write_page(0, p, 1);
    }
    w
}

/// A world whose space 0 maps `n` pages at [`AREA`], each written whole
/// (version 1), swapped out and freed in turn.
fn swapped_out<F: HardwareWalker>(n: u64) -> World<F> {
    let mut w = world::<F>();
    w.mmap(0, AREA, n * PAGE, RW);
    for p in pages(AREA, n) {
        w.write_page(0, p, 1);
        assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
    }
    w
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
    let mut w = written::<F>(N);
    assert_eq!(w.stats(0), small_stats(N));
    let free = w.nr_free();
    for p in pages(AREA, N) {
        assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
    }
    assert_eq!(w.nr_free(), free + N, "every frame freed");
    assert_eq!(w.frames.nr_writes(), N);
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
        assert_eq!((f.anon_handle(), f.index()), (Some(handle), p >> 12));
    }
    assert_eq!((w.frames.nr_reads(), w.area().nr_used()), (N, 0));
    assert_eq!(w.stats(0), small_stats(N));
    // Writes reuse the pages in place.
    for p in pages(AREA, N) {
        let pfn = w.folio_at(0, p).pfn();
        let events = w.write_page(0, p, 2);
        assert!(!copied(&events), "{p:#x}: {events:?}");
        assert_eq!(w.folio_at(0, p).pfn(), pfn);
    }
    assert_eq!(w.frames.nr_copies(), 0);
    for p in pages(AREA, N) {
        w.expect_page(0, p, 2);
    }
    w.check();
    // Out again, and this time munmap frees the entries.
    for p in pages(AREA, N) {
        assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
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
    let mut w = world::<F>();
    w.mmap(0, AREA, HP, RW);
    assert_eq!(w.write_page(0, AREA, 1), [Ev::Fault(FaultOutcome::MappedHuge)]);
    for p in pages(AREA, HPAGE_NR as u64) {
        w.write_page(0, p, 1);
    }
    let f = w.folio_at(0, AREA);
    assert_eq!((f.order(), w.leaf(0, AREA).0), (9, Level::Pmd));
    // An extra reference makes the freeze fail: the folio stays in the cache.
    f.get();
    w.declare_refs(f.pfn(), 1);
    assert_eq!(w.swap_out(0, AREA + 5 * PAGE), Shrunk::Kept(Kept::InUse));
    let first = folio_entry(&f).expect("in the swap cache");
    assert_eq!(first.offset() % HPAGE_NR as u64, 0, "one aligned run of 512 slots");
    for (i, p) in pages(AREA, HPAGE_NR as u64).enumerate() {
        assert_eq!(w.swap_pte(0, p), Some((nth_entry(first, i), true)), "the PMD became 512 swap PTEs");
        assert_eq!((w.area().count(nth_entry(first, i)), w.area().has_cache(nth_entry(first, i))), (1, true));
    }
    assert!(f.test_flag(PageFlag::SwapCache) && !f.is_locked());
    assert_eq!((f.order(), f.total_mapcount(), f.refcount()), (9, 0, 1 + 512));
    assert_eq!(w.frames.nr_writes(), 512);
    assert_eq!(w.stats(0), Stats { nr_swap_entries: 512, ..Stats::default() });
    // One fault brings the whole folio back from the cache, no read.
    let p = AREA + 7 * PAGE;
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 7)), swapped_in(512, true, true)]);
    assert_eq!(w.frames.nr_reads(), 0);
    assert_eq!(w.area().nr_used(), 0, "the folio left the cache, its slots are free");
    assert!(!f.test_flag(PageFlag::SwapCache) && f.swap_entry().is_none());
    for (i, p) in pages(AREA, HPAGE_NR as u64).enumerate() {
        let (level, leaf) = w.leaf(0, p);
        assert_eq!((level, leaf.frame.pfn(), leaf.prot.writable), (Level::Pte, f.pfn().plus(i as u64), true));
        assert!(f.page(i).test_flag(PageFlag::AnonExclusive));
    }
    assert_eq!(f.refcount(), 1 + 512);
    w.declare_refs(f.pfn(), -1);
    w.frames.put(f);
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
    assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(512));
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
        assert_eq!(w.frames.nr_reads(), n as u64 + 1);
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
    assert_eq!(w.swap_out(0, base), Shrunk::Freed(512));
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
        assert_eq!(
            (level, leaf.frame.pfn(), leaf.prot.writable),
            (Level::Pte, f.pfn().plus(i as u64), writable)
        );
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
    let mut w = world::<F>();
    let first = thp_out_and_freed(&mut w, AREA, 1);
    let free = w.nr_free();
    let p = AREA + 77 * PAGE;
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 77)), swapped_in(512, true, true)]);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (1, 512), "one request for the run");
    assert_eq!(w.nr_free(), free - 512);
    assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (0, 0), "out of the cache, slots free");
    let f = whole_folio_at(&w, 0, AREA, true);
    assert!(!f.test_flag(PageFlag::SwapCache) && f.swap_entry().is_none());
    assert!((0..HPAGE_NR).all(|i| f.page(i).test_flag(PageFlag::AnonExclusive) && f.page_mapcount(i) == 1));
    assert_eq!((f.refcount(), f.anon_handle(), f.index()), (512, Some(w.handle(0)), AREA >> 12));
    assert_eq!(
        w.stats(0),
        Stats { nr_pages_mapped: 512, nr_folios: 1, nr_pte_leaves: 512, ..Stats::default() }
    );
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, 1);
    }
    assert_eq!(w.frames.nr_reads(), 512, "no more reads");

    // Written in place, out again whole (the folio is PTE-mapped now), and
    // a write fault brings it back whole.
    for q in pages(AREA, HPAGE_NR as u64) {
        assert!(!copied(&w.write_page(0, q, 2)));
    }
    assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(512));
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    let p = AREA + 300 * PAGE;
    let events = w.write_page(0, p, 3);
    assert_eq!(events, [needs(p, nth_entry(first, 300)), swapped_in(512, true, true)]);
    assert_eq!(w.frames.nr_read_calls(), 2);
    whole_folio_at(&w, 0, AREA, true);
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, if q == p { 3 } else { 2 });
    }

    // Shared with a child: each slot's count is 2. The child's fault reads
    // the run whole and maps it read-only (the parent holds the slots);
    // the parent's fault finds it in the cache, no read, and takes it out.
    w.write_page(0, p, 2);
    assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(512));
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    let c = w.fork(0);
    assert_eq!(w.area().count(nth_entry(first, 9)), 2);
    let p = AREA + 9 * PAGE;
    assert_eq!(w.expect_page(c, p, 2), [needs(p, nth_entry(first, 9)), swapped_in(512, false, false)]);
    assert_eq!(w.frames.nr_read_calls(), 3);
    let f = whole_folio_at(&w, c, AREA, false);
    assert!(f.test_flag(PageFlag::SwapCache));
    w.check();
    assert_eq!(w.expect_page(0, p, 2), [needs(p, nth_entry(first, 9)), swapped_in(512, false, false)]);
    assert_eq!(w.frames.nr_read_calls(), 3, "a cache hit");
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
    let mut w = world::<F>();
    let small = |w: &World<F>, p: u64, e: SwapEntry, tag: u8| {
        let calls = w.frames.nr_read_calls();
        assert_eq!(w.expect_page(0, p, tag), [needs(p, e), swapped_in(1, true, true)], "{p:#x}");
        assert_eq!(w.frames.nr_read_calls(), calls + 1);
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
    w.frames.fail_next_huge_allocs(1);
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
    w.frames.put(cached);
    assert!(w.area().has_cache(nth_entry(first, 30)) && cached.test_flag(PageFlag::SwapCache));
    small(&w, b + 31 * PAGE, nth_entry(first, 31), 3);
    untouched(&w, b, first, &[30, 31]);
    // The cached page is mapped from the cache by its own fault.
    let p = b + 30 * PAGE;
    let calls = w.frames.nr_read_calls();
    assert_eq!(w.expect_page(0, p, 3), [needs(p, nth_entry(first, 30)), swapped_in(1, true, true)]);
    assert_eq!((w.frames.nr_read_calls(), w.folio_at(0, p).pfn()), (calls, cached.pfn()));
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
    let got = get_swapped_folio(
        w.area(),
        w.memmap(),
        &w.frames,
        e,
        w.handle(0),
        p >> 12,
        SwapInOptions { run: Some(&run), window: None },
    )
    .unwrap();
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

/// A failed read of a whole run is followed by the read of the faulting
/// page alone; when that fails too, the access ends with the error and
/// every entry, slot count and frame is as it was; the next access reads
/// the run whole again. When only the large read fails, the page comes
/// back alone and its neighbours after it, 4 KiB at a time.
fn a_failed_large_read_falls_back_to_small_reads<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = world::<F>();
    let first = thp_out_and_freed(&mut w, AREA, 1);
    let (free, stats) = (w.nr_free(), w.stats(0));
    // Both reads fail: the large one and the 4 KiB one after it.
    w.frames.fail_next_reads(2);
    let p = AREA + 100 * PAGE;
    let err = w.access(0, p, HwAccess::USER_WRITE).unwrap_err();
    assert!(matches!(err, Ev::SwapIn(Err(SwapInError::Io(ref m))) if m.contains("injected")), "{err:?}");
    for (i, q) in pages(AREA, HPAGE_NR as u64).enumerate() {
        let e = nth_entry(first, i);
        assert_eq!(w.swap_pte(0, q), Some((e, true)), "the entry is still there");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, false));
        assert!(w.frames.on_disk(e.offset()).is_some());
    }
    assert_eq!((w.area().nr_in_cache(), w.nr_free(), w.stats(0)), (0, free, stats));
    assert_eq!(w.frames.nr_read_calls(), 0);
    assert_eq!(w.expect_page(0, p, 1), [needs(p, nth_entry(first, 100)), swapped_in(512, true, true)]);
    whole_folio_at(&w, 0, AREA, true);
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, 1);
    }
    // Out again; only the large read fails now: the faulting page comes
    // back alone, in the second (4 KiB) read.
    for q in pages(AREA, HPAGE_NR as u64) {
        w.write_page(0, q, 2);
    }
    assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(512));
    let (first, _) = w.swap_pte(0, AREA).unwrap();
    w.frames.fail_next_reads(1);
    let calls = w.frames.nr_read_calls();
    assert_eq!(w.expect_page(0, p, 2), [needs(p, nth_entry(first, 100)), swapped_in(1, true, true)]);
    assert_eq!(w.frames.nr_read_calls(), calls + 1, "the 4 KiB read after the failed large one");
    assert_eq!(w.folio_at(0, p).order(), 0);
    for q in pages(AREA, HPAGE_NR as u64) {
        w.expect_page(0, q, 2);
    }
    w.check();
    w.finish();
}

/// One unreadable page (a bad sector) in an intact run: every other page
/// of the run comes back (4 KiB at a time, after the large read fails),
/// and only an access to the bad page gets the error, which leaves its
/// entry, count and data as they were.
fn one_bad_page_in_a_run_costs_only_its_owner<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = world::<F>();
    let first = thp_out_and_freed(&mut w, AREA, 1);
    const BAD: usize = 200;
    let bad = nth_entry(first, BAD);
    w.frames.make_unreadable(bad.offset());
    let bad_at = AREA + BAD as u64 * PAGE;
    for (i, q) in pages(AREA, HPAGE_NR as u64).enumerate() {
        if i == BAD {
            continue;
        }
        let events = w.expect_page(0, q, 1);
        assert_eq!(events, [needs(q, nth_entry(first, i)), swapped_in(1, true, true)], "page {i}");
    }
    for _ in 0..2 {
        let err = w.access(0, bad_at, HwAccess::USER_READ).unwrap_err();
        assert!(
            matches!(err, Ev::SwapIn(Err(SwapInError::Io(ref m))) if m.contains("unreadable")),
            "{err:?}"
        );
        assert_eq!(w.swap_pte(0, bad_at), Some((bad, true)), "the bad page's entry is still there");
        assert_eq!((w.area().count(bad), w.area().has_cache(bad), w.area().nr_used()), (1, false, 1));
    }
    w.check();
    w.munmap(0, AREA, HP);
    w.finish();
}

// ------------------------------------------------------------------ 3

/// Whether `p` is an even page of the area (tests alternate on it).
fn even(p: u64) -> bool {
    ((p - AREA) / PAGE).is_multiple_of(2)
}

/// A fork that runs out of memory for the child's tables part-way leaves
/// every slot count as it was once the child is torn down (a count raised
/// for an entry the child never got would keep the slot used for ever, and
/// swapoff of its area could never finish). Each budget of table frames
/// stops the copy at another entry, until one is enough.
fn fork_out_of_memory_leaks_no_swap_count<F: HardwareWalker>() {
    let _shared = shared();
    const BLOCKS: u64 = 4;
    let mut w = world::<F>();
    w.mmap(0, AREA, BLOCKS * HP, RW);
    w.advise_thp(0, AREA, BLOCKS * HP, ThpMode::Never);
    // One swapped-out page per 2 MiB block: each needs a PTE table of its
    // own in the child.
    let at: Vec<u64> = (0..BLOCKS).map(|b| AREA + b * HP + 3 * PAGE).collect();
    for &p in &at {
        w.write_page(0, p, 1);
        assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
    }
    let entries: Vec<SwapEntry> = at.iter().map(|&p| w.swap_pte(0, p).unwrap().0).collect();
    let used = w.area().nr_used();
    let mut failures = 0;
    let child = (1..64)
        .find_map(|tables| match w.try_fork_with_tables(0, tables) {
            Ok(c) => Some(c),
            Err(e) => {
                failures += 1;
                assert!(format!("{e:?}").contains("OutOfMemory"), "{e:?}");
                for &e in &entries {
                    assert_eq!(w.area().count(e), 1, "{tables} table frames: the count of {e:?}");
                }
                assert_eq!(w.area().nr_used(), used);
                w.area().check().unwrap();
                w.check();
                None
            }
        })
        .expect("fork never had enough table frames");
    assert!(failures > BLOCKS as usize, "only {failures} budgets failed: the copy never stopped part-way");
    for &e in &entries {
        assert_eq!(w.area().count(e), 2);
    }
    for &p in &at {
        w.expect_page(child, p, 1);
        w.expect_page(0, p, 1);
    }
    w.exit(child);
    w.finish();
}

fn fork_after_swap_out_shares_the_entries<F: HardwareWalker>() {
    let _shared = shared();
    const N: u64 = 8;
    let mut w = swapped_out::<F>(N);
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
        let reads = w.frames.nr_reads();
        assert_eq!(w.expect_page(first, p, 1), [needs(p, e), swapped_in(1, false, false)]);
        assert_eq!(w.frames.nr_reads(), reads + 1, "claimed and read");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (1, true), "the other side still holds it");
        let f = w.folio_at(first, p);
        assert!(f.test_flag(PageFlag::SwapCache) && !f.page(0).test_flag(PageFlag::AnonExclusive));
        w.check();
        assert_eq!(w.expect_page(second, p, 1), [needs(p, e), swapped_in(1, false, false)]);
        assert_eq!(w.frames.nr_reads(), reads + 1, "found in the cache");
        assert_eq!(w.folio_at(second, p), f, "both map the same page");
        assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, false));
        assert!(!f.test_flag(PageFlag::SwapCache));
        assert_eq!((f.page_mapcount(0), f.refcount()), (2, 2));
        // Writes: the first copies, the second is then the only user.
        let copies = w.frames.nr_copies();
        assert!(copied(&w.write_page(first, p, 2)));
        assert_eq!(w.frames.nr_copies(), copies + 1);
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
        assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
        assert_eq!(w.swap_out(c, p), Shrunk::Freed(1));
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

/// Fork runs out of memory for the child's table at the first swap entry
/// it copies (issue 13, item 4): the slot's count it took for the child
/// goes back, so each slot counts the parent's entry alone, and swapoff
/// could still empty the area.
fn fork_out_of_memory_gives_the_swap_counts_back<F: HardwareWalker>() {
    const N: u64 = 8;
    let w = swapped_out::<F>(N);
    let child = mm::pgtable::PageTable::<F>::new(&w.mem).unwrap();
    let handle = mm::anon::anon_handle(child.root());
    let mut flush = mm::pgtable::Flush::none(w.sp(0).table.root());
    w.mem.fail_next_tables(1);
    let got = mm::space::fork_range(
        &w.sp(0).table,
        &child,
        &w.mem,
        &w.frames,
        handle,
        va(0),
        va(mm::testkit::world::USER_END),
        &mut flush,
    );
    assert!(matches!(got, Err(mm::space::ForkError::OutOfMemory { .. })), "{got:?}");
    flush.flush(&w.tlb);
    child.destroy(&w.mem, 0..0);
    for p in pages(AREA, N) {
        let (e, _) = w.swap_pte(0, p).unwrap();
        assert_eq!(w.area().count(e), 1, "page {p:#x}: the failed fork's count is given back");
    }
    w.check();
    w.finish();
}

/// fork walks each table once (issue 16, item 6): copying a space of
/// present pages and swap entries reads each slot of the parent's tables
/// in range once (here 256 of the root, 512 of one table at each middle
/// level, 2 × 512 of PTEs: at most 4 × 512) and two more entries per
/// entry copied (the child's new entry, the parent's write-protected or
/// no-longer-exclusive one), with no walk from the root of either tree per
/// entry (about eight more reads and writes each), and no read of the
/// child's slots: its tables are new, so known empty (that read was 2 × 256
/// more). Both sides keep their data and the counts check.
fn fork_walks_each_table_once<F: HardwareWalker>() {
    const N: u64 = 256;
    let mut w = swapped_out::<F>(N);
    let present = AREA + N * PAGE;
    w.mmap(0, present, N * PAGE, RW);
    for p in pages(present, N) {
        w.write_page(0, p, 2);
    }
    let (c, work) = w.fork_counting(0);
    assert!(
        work.accesses <= 4 * 512 + 2 * 2 * N + 64,
        "{} table entries read or written to fork {} entries",
        work.accesses,
        2 * N
    );
    // The entries are written without a walker barrier each (AArch64's
    // `dsb ishst; isb`, two a page), and published with one at the end:
    // barriers only for the child's few table links.
    assert!(work.batched >= 2 * N, "{work:?}: the child's {} entries were not written batched", 2 * N);
    assert!(work.barriers <= 8, "{work:?}: a barrier a write to fork {} entries", 2 * N);
    w.check();
    for (s, p) in [(0, AREA), (c, AREA), (0, present), (c, present)] {
        w.expect_page(s, p, if p == AREA { 1 } else { 2 });
    }
    w.exit(c);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 4

/// Seed 004 with the switch off or on: a page with a plain write
/// reference (`FOLL_GET|FOLL_WRITE`) goes out (the freeze fails, it stays
/// in the cache) and is faulted back by a read.
fn foll_get_reference_across_swap<F: HardwareWalker>(bug: bool) {
    let mut w = world::<F>();
    w.mmap(0, AREA, 2 * PAGE, RW);
    w.write_page(0, AREA, 1);
    w.write_page(0, AREA + PAGE, 1);
    let held = w.hold(0, AREA, true, Hold::Get);
    let f = w.folio_at(0, AREA);
    assert_eq!(f.refcount(), 2);
    assert_eq!(w.swap_out(0, AREA), Shrunk::Kept(Kept::InUse));
    assert_eq!(w.swap_out(0, AREA + PAGE), Shrunk::Freed(1), "the page beside it, unreferenced, goes");
    let (e, exclusive) = w.swap_pte(0, AREA).unwrap();
    assert_eq!(exclusive, !bug, "the swap entry keeps the page's exclusive state (unless the bug)");
    assert!(f.test_flag(PageFlag::SwapCache));
    assert_eq!((f.total_mapcount(), f.refcount()), (0, 2), "the cache's reference and the held one");
    w.check();
    // The device writes through the reference while the page is out.
    w.frames.set_byte(held, 0x77);
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
    w.frames.set_byte(pa, 0x88);
    let through_ref = w.frames.byte(PhysAddr::new(held.as_u64() + 8));
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
    w.unhold(held, Hold::Get);
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
    let w = swapped_out::<F>(4);
    let free = w.nr_free();

    // (a) The range is zapped between the halves.
    let p = AREA;
    let (e, _) = w.swap_pte(0, p).unwrap();
    let got = w.swap_in_half1(0, p, e).unwrap();
    assert_eq!(w.frames.nr_reads(), 1);
    assert!(got.0.is_locked() && got.0.test_flag(PageFlag::SwapCache) && got.0.test_flag(PageFlag::Uptodate));
    w.dontneed(0, p, PAGE);
    assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, true), "the claim keeps the slot");
    assert_eq!(w.area().nr_in_cache(), 1);
    let writes = w.frames.nr_writes();
    assert_eq!(w.swap_in_half2(0, got, p, e, false), SwapInOutcome::Changed);
    assert_eq!(w.lookup(0, p), (Level::Pte, Decoded::None));
    w.check();
    // Nobody needs the folio any more (unmapped, no entry holds its slot):
    // it leaves the cache at once and is freed, without a write (the
    // kernel's `free_if_unused_locked` after half 2).
    assert_eq!((w.area().nr_in_cache(), w.frames.nr_writes()), (0, writes));
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
    assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
    let (e2, _) = w.swap_pte(0, p).unwrap();
    assert_ne!(e2, e, "the claimed slot is not handed out again");
    assert_eq!(w.swap_in_half2(0, got, p, e, true), SwapInOutcome::Changed);
    assert_eq!(w.swap_pte(0, p), Some((e2, true)), "the other entry is left alone");
    w.check();
    assert!(!w.area().has_cache(e) && w.area().nr_in_cache() == 0, "the claimed folio left the cache");
    assert_eq!(w.nr_free(), free - 1, "and was freed: only page 0's folio is in memory");
    w.expect_page(0, p, 6);

    // (c) The page is mapped by then (a present leaf instead of the entry).
    let p = AREA + 2 * PAGE;
    let (e, _) = w.swap_pte(0, p).unwrap();
    let got = w.swap_in_half1(0, p, e).unwrap();
    w.dontneed(0, p, PAGE);
    w.write_page(0, p, 7);
    assert_eq!(w.swap_in_half2(0, got, p, e, false), SwapInOutcome::Changed);
    assert!(!w.area().has_cache(e) && w.area().nr_in_cache() == 0, "the claimed folio left the cache");
    assert_eq!(w.nr_free(), free - 3, "and was freed: pages 0, 1 and 2 are in memory");
    w.expect_page(0, p, 7);
    w.expect_page(0, AREA, 5);
    w.expect_page(0, AREA + 3 * PAGE, 1);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 6

fn a_stale_entry_is_refused_without_a_read<F: HardwareWalker>() {
    let _shared = shared();
    let w = swapped_out::<F>(2);
    // Swapped in: the slot's count is 0, the entry that faulted is stale.
    let (e, _) = w.swap_pte(0, AREA).unwrap();
    w.expect_page(0, AREA, 1);
    assert_eq!((w.area().count(e), w.area().has_cache(e)), (0, false));
    let (reads, free) = (w.frames.nr_reads(), w.nr_free());
    assert_eq!(w.swap_in_half1(0, AREA, e).err(), Some(SwapInError::Stale));
    // Unmapped: the same.
    let (e, _) = w.swap_pte(0, AREA + PAGE).unwrap();
    w.dontneed(0, AREA + PAGE, PAGE);
    assert_eq!(w.area().count(e), 0);
    assert_eq!(w.swap_in_half1(0, AREA + PAGE, e).err(), Some(SwapInError::Stale));
    assert_eq!((w.frames.nr_reads(), w.nr_free(), w.area().nr_used()), (reads, free, 0), "never read");
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 6b

/// `n` pages of space 0 at [`AREA`] swapped out in order, with readahead
/// on; their entries, checked to be consecutive slots.
fn swapped_out_in_order<F: HardwareWalker>(n: u64) -> (World<F>, Vec<SwapEntry>) {
    let w = swapped_out::<F>(n);
    w.frames.set_readahead(true);
    let entries: Vec<SwapEntry> = pages(AREA, n).map(|p| w.swap_pte(0, p).unwrap().0).collect();
    for (k, e) in entries.iter().enumerate() {
        assert_eq!(*e, nth_entry(entries[0], k), "the slots are given out in order");
    }
    (w, entries)
}

/// A readahead folio: in the swap cache at `e`, unlocked, uptodate, on no
/// one's page table, with only the cache's reference, not exclusive, named
/// after page `p` of space `s`, and not dirty (its copy on disk is good).
fn assert_read_ahead<F: HardwareWalker>(w: &World<F>, s: usize, p: u64, e: SwapEntry) -> Folio<'static> {
    let (f, i) =
        mm::swap::cache::lookup_get(w.area(), w.memmap(), e).expect("a readahead folio in the cache");
    assert_eq!(i, 0);
    assert_eq!(w.swap_pte(s, p).map(|x| x.0), Some(e), "still a swap entry in the page table");
    assert!(f.test_flag(PageFlag::SwapCache) && f.test_flag(PageFlag::Uptodate) && !f.is_locked());
    assert!(!f.page(0).test_flag(PageFlag::AnonExclusive) && !f.test_flag(PageFlag::Dirty));
    assert_eq!((f.order(), f.total_mapcount(), f.refcount()), (0, 0, 2), "the cache's reference and ours");
    assert_eq!((f.anon_handle(), f.index()), (Some(w.handle(s)), p >> 12));
    assert!(!f.put());
    f
}

/// Readahead: a fault on a page brings back the 8-page window around it
/// in one read; the neighbours land in the swap cache unmapped and not
/// exclusive; a fault on one maps it from the cache without a read
/// (exclusive and writable: its PTE's bit says so and nobody else holds
/// it). A window ends at the area's end, and at a page that is not
/// swapped out.
fn readahead_brings_the_neighbours_into_the_cache<F: HardwareWalker>() {
    let _shared = shared();
    let (w, e) = swapped_out_in_order::<F>(20);
    let p = |k: u64| AREA + k * PAGE;
    let free = w.nr_free();
    assert_eq!(w.expect_page(0, p(3), 1), [needs(p(3), e[3]), swapped_in(1, true, true)]);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (1, 8), "one request for the window");
    assert_eq!(w.nr_free(), free - 8);
    assert_eq!(w.area().nr_in_cache(), 7);
    let ahead: Vec<Folio<'static>> =
        (0..8).filter(|&k| k != 3).map(|k| assert_read_ahead(&w, 0, p(k), e[k as usize])).collect();
    // One block of frames, in order (one request reads into it).
    assert_eq!(ahead[3].pfn(), w.folio_at(0, p(3)).pfn().plus(1));
    assert_eq!(ahead[0].pfn().plus(3), w.folio_at(0, p(3)).pfn());
    w.check();
    // A fault on a neighbour: a cache hit, mapped exclusive and writable,
    // out of the cache, its slot free.
    assert_eq!(w.expect_page(0, p(5), 1), [needs(p(5), e[5]), swapped_in(1, true, true)]);
    assert_eq!(w.frames.nr_read_calls(), 1, "no read");
    assert_eq!(w.folio_at(0, p(5)), ahead[4]);
    assert!(ahead[4].page(0).test_flag(PageFlag::AnonExclusive) && !ahead[4].test_flag(PageFlag::SwapCache));
    assert_eq!((w.area().count(e[5]), w.area().has_cache(e[5]), w.area().nr_in_cache()), (0, false, 6));
    assert!(!copied(&w.write_page(0, p(5), 2)), "written in place");
    w.check();
    // Pages 8..15 in one more read; 16..19 too (the window of 16..23 ends
    // with the area).
    w.expect_page(0, p(12), 1);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (2, 16));
    w.expect_page(0, p(19), 1);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (3, 20));
    for k in 0..20 {
        w.expect_page(0, p(k), if k == 5 { 2 } else { 1 });
    }
    assert_eq!(w.frames.nr_read_calls(), 3, "every other page came from the cache");
    assert_eq!(w.area().nr_in_cache(), 0);
    w.check();
    w.finish();
}

/// Readahead only while the area is read in order: a fault far from the
/// one before reads its page alone; the next one near it reads ahead
/// again (a run ends at a page in memory).
fn readahead_only_when_read_in_order<F: HardwareWalker>() {
    let _shared = shared();
    let (w, e) = swapped_out_in_order::<F>(64);
    let p = |k: u64| AREA + k * PAGE;
    let reads = |w: &World<F>| (w.frames.nr_read_calls(), w.frames.nr_reads());
    w.expect_page(0, p(40), 1);
    assert_eq!(reads(&w), (1, 8), "the first fault reads ahead");
    w.expect_page(0, p(3), 1);
    assert_eq!(reads(&w), (2, 9), "far from 40: page 3 alone");
    w.expect_page(0, p(60), 1);
    assert_eq!(reads(&w), (3, 10), "far from 3: page 60 alone");
    w.expect_page(0, p(62), 1);
    assert_eq!(reads(&w), (4, 13), "near 60: 61..63 (60 is in memory)");
    assert_eq!(w.area().nr_in_cache(), 7 + 2);
    assert!(w.area().has_cache(e[61]) && w.area().has_cache(e[63]) && !w.area().has_cache(e[59]));
    w.check();
    w.finish();
}

/// Readahead never reads a slot it should not: a neighbour whose slot was
/// freed since the window was looked at (its claim fails: unused), one
/// whose slot now holds another space's page (claimed, but the second
/// look finds the PTE changed: released unread), one another fault is
/// reading or has in the cache (busy) all cut the run; what is left is
/// read, and nothing stays claimed.
fn readahead_over_a_freed_or_foreign_slot_reads_only_its_own<F: HardwareWalker>() {
    let _shared = shared();
    let (w, e) = swapped_out_in_order::<F>(16);
    let p = |k: u64| AREA + k * PAGE;
    let real = |w: &World<F>| {
        let sp = w.sp(0);
        mm::swap::swapin::readahead_window(&sp.table, &w.mem, &sp.vmas, va(p(2)), e[2]).unwrap()
    };
    let seen = real(&w);
    assert_eq!(seen.run_of(e[2]), Some((0, 8)));
    // Page 6 unmapped: its slot is free (count 0). Then somebody else
    // (as another space's swap-out would) gets that slot and holds it.
    w.dontneed(0, p(6), PAGE);
    assert_eq!((w.area().count(e[6]), w.area().has_cache(e[6])), (0, false));
    let mut taken = Vec::new();
    while let Some(got) = w.area().alloc(0) {
        taken.push(got);
        if got == e[6] {
            break;
        }
    }
    assert_eq!(taken.last(), Some(&e[6]), "the freed slot is given out again");
    w.area().dup(e[6]).unwrap();
    for t in taken {
        w.area().release_cache(t, 1).unwrap();
    }
    assert_eq!((w.area().count(e[6]), w.area().has_cache(e[6])), (1, false));
    // Page 1 unmapped too, its slot left free.
    w.dontneed(0, p(1), PAGE);
    // Half 1 with the stale window first (as if taken before all that),
    // then the real one for the second look.
    let calls = Cell::new(0);
    let window = || {
        calls.set(calls.get() + 1);
        Some(if calls.get() == 1 { seen } else { real(&w) })
    };
    let options = SwapInOptions { run: None, window: Some(&window) };
    let got =
        get_swapped_folio(w.area(), w.memmap(), &w.frames, e[2], w.handle(0), p(2) >> 12, options).unwrap();
    assert_eq!(calls.get(), 2);
    // 1 is free (unused): the run starts at 2. 6 was claimed (count 1,
    // somebody else's) but page 6's PTE no longer holds it: released.
    // So 2..6 were read, in one request.
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (1, 4));
    assert_eq!((w.area().has_cache(e[1]), w.area().has_cache(e[6]), w.area().count(e[6])), (false, false, 1));
    for k in [3, 4, 5] {
        assert_read_ahead(&w, 0, p(k), e[k as usize]);
    }
    assert_eq!(w.area().nr_in_cache(), 4);
    assert_eq!(
        w.swap_in_half2(0, got, p(2), e[2], false),
        SwapInOutcome::Mapped { pages: 1, exclusive: true, writable: true }
    );
    w.area().free_ref(e[6]).unwrap();
    // A neighbour another fault has in hand (claimed, or in the cache)
    // cuts the run: with 10's slot claimed by somebody else, a fault on 12
    // reads 11..15; then one on 10 reads 8..10 (11 is in the cache).
    assert_eq!(w.area().claim_cache(e[10], 1), Ok(()));
    w.expect_page(0, p(12), 1);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (2, 9));
    w.area().release_cache(e[10], 1).unwrap();
    w.expect_page(0, p(10), 1);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (3, 12));
    assert_read_ahead(&w, 0, p(8), e[8]);
    assert_read_ahead(&w, 0, p(11), e[11]);
    for k in [0, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
        w.expect_page(0, p(k), 1);
    }
    assert_eq!(w.area().nr_used(), 0);
    w.check();
    w.finish();
}

/// A failed readahead costs only the bad page's owner: the faulting page
/// is read alone after it, the neighbours stay on disk with their counts,
/// and a fault on the bad page gets the error. No block for the window
/// (readahead off) is the order-0 read. After a fork the neighbours come
/// in shared: a fault maps one read-only, not exclusive, and it stays in
/// the cache.
fn readahead_failures_and_shared_neighbours<F: HardwareWalker>() {
    let _shared = shared();
    let (mut w, e) = swapped_out_in_order::<F>(16);
    let p = |k: u64| AREA + k * PAGE;
    w.frames.make_unreadable(e[6].offset());
    assert_eq!(w.expect_page(0, p(2), 1), [needs(p(2), e[2]), swapped_in(1, true, true)]);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (1, 1), "the window failed, page 2 alone");
    assert_eq!(w.area().nr_in_cache(), 0);
    assert!((0..8).filter(|&k| k != 2).all(|k| w.area().count(e[k]) == 1));
    let err = w.access(0, p(6), HwAccess::USER_READ).unwrap_err();
    assert!(matches!(err, Ev::SwapIn(Err(SwapInError::Io(_)))), "{err:?}");
    assert_eq!(w.area().count(e[6]), 1);
    w.dontneed(0, p(6), PAGE);
    // Off: one page per read.
    w.frames.set_readahead(false);
    w.expect_page(0, p(0), 1);
    assert_eq!(w.frames.nr_reads(), 2);
    w.frames.set_readahead(true);
    w.check();
    // Shared with a child: the child's fault reads 8..15, maps its page
    // read-only (the parent holds the slot); the parent's neighbour comes
    // from the cache, read-only, and stays there for the child.
    let c = w.fork(0);
    assert_eq!(w.expect_page(c, p(9), 1), [needs(p(9), e[9]), swapped_in(1, false, false)]);
    assert_eq!(w.frames.nr_reads(), 10);
    let f = assert_read_ahead(&w, c, p(12), e[12]);
    assert_eq!(w.expect_page(0, p(12), 1), [needs(p(12), e[12]), swapped_in(1, false, false)]);
    assert!(f.test_flag(PageFlag::SwapCache) && !f.page(0).test_flag(PageFlag::AnonExclusive));
    assert!(copied(&w.write_page(0, p(12), 3)), "a shared page is copied on write");
    w.expect_page(c, p(12), 1);
    assert_eq!(w.frames.nr_reads(), 10);
    w.check();
    w.exit(c);
    w.finish();
}

/// The pages of space `s` from `p` on (`n` of them) that are mapped, not
/// swap entries.
fn nr_mapped<F: HardwareWalker>(w: &World<F>, s: usize, p: u64, n: u64) -> usize {
    pages(p, n).filter(|&q| w.swap_pte(s, q).is_none()).count()
}

/// Fault-around: with the window read ahead, the one fault maps all of
/// it, each neighbour as a read fault on it would (exclusive by its PTE's
/// bit, out of the cache, writable); the pages after it take no fault. A
/// fault that is a cache hit maps the neighbours waiting in the cache
/// too, up to the first page in memory (the slots beside the faulting
/// one, as readahead reads them), and leaves one somebody holds locked
/// (or that is not in the cache) for its own fault.
fn one_fault_maps_the_readahead_window<F: HardwareWalker>() {
    let _shared = shared();
    let (w, e) = swapped_out_in_order::<F>(24);
    let p = |k: u64| AREA + k * PAGE;
    w.host.map_around.set(true);
    assert_eq!(w.expect_page(0, p(3), 1), [needs(p(3), e[3]), swapped_in(1, true, true)]);
    assert_eq!((w.frames.nr_read_calls(), w.frames.nr_reads()), (1, 8), "one request for the window");
    assert_eq!((nr_mapped(&w, 0, p(0), 8), w.host.nr_mapped_around.get()), (8, 7));
    for k in (0..8).filter(|&k| k != 3) {
        let f = w.folio_at(0, p(k));
        assert!(f.page(0).test_flag(PageFlag::AnonExclusive), "page {k}: its PTE's exclusive bit");
        assert!(!f.test_flag(PageFlag::SwapCache) && f.test_flag(PageFlag::Dirty), "page {k} left the cache");
        assert_eq!((w.area().count(e[k as usize]), w.area().has_cache(e[k as usize])), (0, false));
        assert!(w.expect_page(0, p(k), 1).is_empty(), "page {k} is mapped: no fault");
        assert!(!copied(&w.write_page(0, p(k), 2)), "page {k} is written in place, no fault");
    }
    assert_eq!(w.area().nr_in_cache(), 0);
    w.check();
    // A cache hit maps its neighbours too: 8..15 read ahead without
    // fault-around, then a fault on 12 maps them all, except 10, whose
    // folio somebody holds locked, and 14, which is no longer in the cache
    // (its read failed, say): each is left for its own fault.
    w.host.map_around.set(false);
    w.expect_page(0, p(9), 1);
    assert_eq!((w.frames.nr_reads(), nr_mapped(&w, 0, p(8), 8)), (16, 1));
    w.host.map_around.set(true);
    let (f10, _) = mm::swap::cache::lookup_get(w.area(), w.memmap(), e[10]).unwrap();
    assert!(f10.try_lock());
    let (f14, _) = mm::swap::cache::lookup_get(w.area(), w.memmap(), e[14]).unwrap();
    assert!(f14.try_lock());
    let refs = mm::swap::cache::delete_from_swap_cache(w.area(), &f14);
    f14.unlock();
    for _ in 0..=refs {
        w.frames.put(f14);
    }
    assert_eq!(w.expect_page(0, p(12), 1), [needs(p(12), e[12]), swapped_in(1, true, true)]);
    assert_eq!(w.frames.nr_reads(), 16, "no read");
    assert_eq!(w.host.nr_mapped_around.get(), 7 + 3, "11, 13 and 15; the run ends at 9, in memory");
    assert_eq!(nr_mapped(&w, 0, p(8), 8), 5);
    assert_eq!(w.swap_pte(0, p(8)).map(|x| x.0), Some(e[8]));
    assert_eq!(w.swap_pte(0, p(10)).map(|x| x.0), Some(e[10]));
    assert_eq!(w.swap_pte(0, p(14)).map(|x| x.0), Some(e[14]));
    f10.unlock();
    assert!(!w.frames.put(f10));
    assert_eq!(w.expect_page(0, p(10), 1), [needs(p(10), e[10]), swapped_in(1, true, true)]);
    assert_eq!(w.frames.nr_reads(), 16, "10 from the cache");
    w.expect_page(0, p(14), 1);
    assert_eq!(w.frames.nr_reads(), 17, "14 read again");
    w.expect_page(0, p(8), 1);
    assert_eq!((w.frames.nr_reads(), nr_mapped(&w, 0, p(8), 8)), (17, 8), "8 from the cache");
    w.check();
    w.finish();
}

/// Fault-around keeps the rules of a fault on each page. After a fork
/// the child's fault maps the window read-only and shared (the parent
/// holds every slot), and the parent's fault on one page of it maps the
/// rest the same way: a write copies. A read keeps its clean copy: with
/// the area mostly free, the neighbours are mapped exclusive but
/// read-only and stay clean in the cache; a write reuses one in place and
/// only then makes it dirty.
fn map_around_keeps_the_exclusive_and_clean_rules<F: HardwareWalker>() {
    let _shared = shared();
    let (mut w, e) = swapped_out_in_order::<F>(16);
    let p = |k: u64| AREA + k * PAGE;
    w.host.map_around.set(true);
    let c = w.fork(0);
    assert_eq!(w.expect_page(c, p(9), 1), [needs(p(9), e[9]), swapped_in(1, false, false)]);
    assert_eq!((w.frames.nr_reads(), w.host.nr_mapped_around.get()), (8, 7));
    assert_eq!((nr_mapped(&w, c, p(8), 8), nr_mapped(&w, 0, p(8), 8)), (8, 0));
    for k in 8..16 {
        let f = w.folio_at(c, p(k));
        assert!(
            f.test_flag(PageFlag::SwapCache) && !f.page(0).test_flag(PageFlag::AnonExclusive),
            "page {k}"
        );
        assert!(!f.test_flag(PageFlag::Dirty), "page {k}: its copy on disk is good");
        assert_eq!(w.area().count(e[k as usize]), 1, "page {k}: the parent's entry");
    }
    assert_eq!(w.expect_page(0, p(13), 1), [needs(p(13), e[13]), swapped_in(1, false, false)]);
    assert_eq!((w.frames.nr_reads(), w.host.nr_mapped_around.get()), (8, 14));
    assert_eq!(nr_mapped(&w, 0, p(8), 8), 8);
    assert_eq!(w.folio_at(0, p(11)), w.folio_at(c, p(11)));
    assert!(copied(&w.write_page(0, p(11), 3)), "a shared page is copied on write");
    assert!(copied(&w.write_page(c, p(15), 4)), "on both sides");
    w.expect_page(c, p(11), 1);
    w.expect_page(0, p(15), 1);
    w.check();
    w.exit(c);
    // The clean copy: pages 0..7, read with the area mostly free.
    w.area().set_keep_clean(true);
    assert!(mm::swap::swapin::keeps_clean_copies(w.area()));
    assert_eq!(w.expect_page(0, p(2), 1), [needs(p(2), e[2]), swapped_in(1, true, false)]);
    assert_eq!(nr_mapped(&w, 0, p(0), 8), 8);
    for k in 0..8 {
        let f = w.folio_at(0, p(k));
        assert!(f.test_flag(PageFlag::SwapCache) && f.page(0).test_flag(PageFlag::AnonExclusive), "page {k}");
        assert!(!f.test_flag(PageFlag::Dirty), "page {k}: kept clean");
    }
    assert!(!copied(&w.write_page(0, p(6), 5)), "reused in place");
    assert!(w.folio_at(0, p(6)).test_flag(PageFlag::Dirty), "dirty once written");
    w.expect_page(0, p(6), 5);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 7

fn io_errors_lose_no_data<F: HardwareWalker>() {
    let _shared = shared();
    let w = written::<F>(4);
    // A failed write: the folio stays, unmapped, in the cache.
    let free = w.nr_free();
    let f = w.folio_at(0, AREA);
    w.frames.fail_next_writes(1);
    assert_eq!(w.swap_out(0, AREA), Shrunk::Kept(Kept::WriteFailed));
    let (e, exclusive) = w.swap_pte(0, AREA).unwrap();
    assert!(exclusive);
    assert!(f.test_flag(PageFlag::SwapCache) && !f.test_flag(PageFlag::Writeback) && !f.is_locked());
    assert_eq!((f.total_mapcount(), f.refcount(), w.area().count(e)), (0, 1, 1));
    assert_eq!(w.nr_free(), free, "kept in memory");
    assert!(w.frames.on_disk(e.offset()).is_none());
    w.check();
    // A later fault maps it back from the cache, no read.
    assert_eq!(w.expect_page(0, AREA, 1), [needs(AREA, e), swapped_in(1, true, true)]);
    assert_eq!((w.frames.nr_reads(), w.area().nr_used()), (0, 0));
    assert_eq!(w.folio_at(0, AREA), f);
    // Another failed write, then a later reclaim pass writes it and frees it.
    let g = w.folio_at(0, AREA + PAGE);
    w.frames.fail_next_writes(1);
    assert_eq!(w.swap_out(0, AREA + PAGE), Shrunk::Kept(Kept::WriteFailed));
    assert!(g.test_flag(PageFlag::SwapCache));
    assert_eq!(w.reclaim_cache(), 1);
    assert_eq!(w.nr_free(), free + 1);
    w.check();
    w.expect_page(0, AREA + PAGE, 1);
    assert_eq!(w.frames.nr_reads(), 1);

    // A failed read: the task gets the error; slot, count and data stay.
    let p = AREA + 2 * PAGE;
    assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
    let (e, _) = w.swap_pte(0, p).unwrap();
    let (free, reads) = (w.nr_free(), w.frames.nr_reads());
    let on_disk = w.frames.on_disk(e.offset()).unwrap();
    w.frames.fail_next_reads(1);
    let err = w.access(0, p, HwAccess::USER_READ).unwrap_err();
    assert!(matches!(err, Ev::SwapIn(Err(SwapInError::Io(ref m))) if m.contains("injected")), "{err:?}");
    assert_eq!(w.swap_pte(0, p), Some((e, true)), "the entry is still there");
    assert_eq!((w.area().count(e), w.area().has_cache(e), w.area().nr_in_cache()), (1, false, 0));
    assert!(w.frames.on_disk(e.offset()).unwrap() == on_disk);
    assert_eq!((w.nr_free(), w.frames.nr_reads()), (free, reads), "the folio read into was freed");
    w.check();
    // No memory for the folio: the claim is given back too.
    w.frames.fail_next_allocs(1);
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
    let mut w = written::<F>(HPAGE_NR as u64);
    let f = w.folio_at(0, AREA);
    f.get();
    w.declare_refs(f.pfn(), 1);
    assert_eq!(w.swap_out(0, AREA), Shrunk::Kept(Kept::InUse));
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
    assert_eq!(w.frames.nr_reads(), 0);
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
    w.declare_refs(f.pfn(), -1);
    w.frames.put(f);
    w.check();
    w.exit(c);
    w.check();
    w.finish();
}

/// Swap-in maps a page with its area's rights: read-only in a read-only
/// area (still exclusive), and a write after mprotect back reuses it.
fn swap_in_respects_the_area_rights<F: HardwareWalker>() {
    let _shared = shared();
    let mut w = world::<F>();
    w.mmap(0, AREA, 2 * PAGE, RW);
    w.write_page(0, AREA, 1);
    assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
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

/// The pages of the random test's areas that space `s` maps.
fn present_pages<F: HardwareWalker>(w: &World<F>, s: usize) -> Vec<u64> {
    let mut found = Vec::new();
    for (start, len) in [(AREA, SMALL_PAGES * PAGE), (HUGE_AREA, HP)] {
        w.sp(s).table.visit(&w.mem, va(start), va(start + len), &mut |at, level, entry, _| {
            if let Decoded::Leaf(_) = entry {
                let n = if level == Level::Pmd { HPAGE_NR as u64 } else { 1 };
                found.extend(pages(at.as_u64(), n));
            }
        });
    }
    found
}

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
        random_run::<F>(seed, 400, false, false);
    }
}

/// The same with readahead on: the neighbours a fault brings into the
/// cache change no byte anyone reads.
fn random_operations_with_readahead_agree_with_a_byte_model<F: HardwareWalker>() {
    let _shared = shared();
    for seed in [0x00ad_0001u64, 0x5eed_0ead] {
        random_run::<F>(seed, 400, true, false);
    }
}

/// The same with readahead and fault-around on: the neighbours one fault
/// maps hold what their owners wrote.
fn random_operations_with_map_around_agree_with_a_byte_model<F: HardwareWalker>() {
    let _shared = shared();
    for seed in [0x00ad_0002u64, 0xa20_0d0f] {
        random_run::<F>(seed, 400, true, true);
    }
}

fn random_run<F: HardwareWalker>(seed: u64, steps: usize, readahead: bool, map_around: bool) {
    let mut rng = Rng(seed);
    let mut w = world::<F>();
    w.frames.set_readahead(readahead);
    w.host.map_around.set(map_around);
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
                let present = present_pages(&w, s);
                if !present.is_empty() {
                    let q = present[rng.below(present.len() as u64) as usize];
                    let out = w.swap_out(s, q);
                    counts[if let Shrunk::Freed(_) = out { 2 } else { 3 }] += 1;
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
                    held.push(w.hold(s, p, false, Hold::Get));
                } else if !held.is_empty() {
                    let i = rng.below(held.len() as u64) as usize;
                    w.unhold(held.swap_remove(i), Hold::Get);
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
        w.unhold(pa, Hold::Get);
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
        w.frames.nr_reads(),
        w.frames.nr_writes()
    );
    assert!(counts[2] > 0 && w.frames.nr_reads() > 0, "seed {seed:#x}: the run never swapped");
    w.finish();
}

mm::for_both_formats!(
    small_pages_go_out_and_come_back,
    a_thp_goes_out_whole_and_comes_back,
    a_large_cache_folio_partly_zapped_or_shared,
    a_freed_thp_comes_back_whole_in_one_read,
    a_changed_run_falls_back_to_small_reads,
    a_failed_large_read_falls_back_to_small_reads,
    one_bad_page_in_a_run_costs_only_its_owner,
    swap_in_respects_the_area_rights,
    fork_after_swap_out_shares_the_entries,
    fork_out_of_memory_leaks_no_swap_count,
    fork_out_of_memory_gives_the_swap_counts_back,
    fork_walks_each_table_once,
    seed_004_exclusive_bit_survives_swap,
    swap_in_rechecks_the_entry_before_mapping,
    a_stale_entry_is_refused_without_a_read,
    io_errors_lose_no_data,
    readahead_brings_the_neighbours_into_the_cache,
    readahead_only_when_read_in_order,
    readahead_over_a_freed_or_foreign_slot_reads_only_its_own,
    readahead_failures_and_shared_neighbours,
    one_fault_maps_the_readahead_window,
    map_around_keeps_the_exclusive_and_clean_rules,
    random_operations_agree_with_a_byte_model,
    random_operations_with_readahead_agree_with_a_byte_model,
    random_operations_with_map_around_agree_with_a_byte_model,
);
