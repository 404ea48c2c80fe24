//! `mm::unmap::try_to_unmap` with the swap target over both real formats:
//! PTE- and PMD-mapped folios, folios shared by fork, the exclusive bit
//! (and its replay switch, seed 004), the flush the caller owes, and every
//! refusal (pinned, maybe pinned, a slot count at its limit, not in the
//! swap cache) leaving nothing changed. The world is `mm::testkit`'s
//! `World` with LRU lists and a swap area (`mm::testkit::policy`).

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::bugs::Bug;
use mm::folio::Folio;
use mm::gup::Hold;
use mm::page::PageFlag;
use mm::pgtable::sim::{HardwareWalker, HwAccess};
use mm::pgtable::{Decoded, Level, PageTable, SwapEntry};
use mm::swap::area::MAX_SWAP_COUNT;
use mm::swap::cache::{add_to_swap, folio_entry, nth_entry};
use mm::testkit::policy::{with_world, with_world_and_bug, world};
use mm::testkit::world::{pages, va, World, AREA, HP, NR_HP, PAGE};
use mm::unmap::{try_to_unmap, Target, UnmapError, Unmapped};

/// Takes `folio` as reclaim does before it unmaps it: a reference (the
/// unmapper's) and the folio lock.
fn take(folio: Folio<'static>) {
    folio.get();
    folio.lock();
}

/// Puts the locked `folio` into the swap cache (as reclaim's step 3 does).
fn into_cache<F: HardwareWalker>(w: &World<F>, folio: &Folio<'static>) -> SwapEntry {
    add_to_swap(w.area(), folio).expect("free slots")
}

/// Gives back what [`take`] took: the lock, then the reference.
fn give_back<F: HardwareWalker>(w: &World<F>, folio: Folio<'static>) {
    folio.unlock();
    w.frames.put(folio);
}

/// `try_to_unmap` to swap over every live space's table.
fn unmap<F: HardwareWalker>(w: &World<F>, folio: &Folio<'static>) -> Result<Unmapped, UnmapError> {
    let tables: Vec<&PageTable<F>> = w.live().into_iter().map(|s| &w.sp(s).table).collect();
    try_to_unmap(&tables, &w.mem, &w.tlb, w.memmap(), folio, Target::Swap { area: w.area() })
}

/// The caller's part after a successful unmap: the flushes, then the
/// mappings' references.
fn finish_unmap<F: HardwareWalker>(w: &World<F>, folio: &Folio<'static>, done: Unmapped) {
    for flush in done.flushes {
        flush.flush(&w.tlb);
    }
    for _ in 0..done.refs {
        assert!(!folio.put(), "the caller's reference keeps the folio");
    }
}

/// Everything `try_to_unmap` could change: every entry of every space,
/// the folio's flags, counts and swap entry, and its slots' counts.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    entries: Vec<(usize, mm::VirtAddr, Level, Decoded)>,
    pages: Vec<(u64, i32)>,
    folio: (i32, i32, i32, Option<SwapEntry>),
    slots: Vec<u8>,
}

fn snapshot<F: HardwareWalker>(w: &World<F>, folio: &Folio<'static>) -> Snapshot {
    let nr = folio.nr_pages();
    Snapshot {
        entries: w.entries(),
        pages: (0..nr).map(|i| (folio.page(i).flags(), folio.page_mapcount(i))).collect(),
        folio: (folio.refcount(), folio.entire_mapcount(), folio.pincount(), folio.swap_entry()),
        slots: folio_entry(folio)
            .map_or(vec![], |e| (0..nr).map(|i| w.area().count(nth_entry(e, i))).collect()),
    }
}

// ------------------------------------------------------------------ PTEs

/// Each PTE becomes the swap entry of its page's slot with the exclusive
/// bit; the slot gains a count, the page loses its mapcount and
/// `AnonExclusive`; the stale translation stays usable until the caller
/// flushes; the page comes back from the cache with its bytes.
fn pte_mapped_pages_become_swap_entries_with_the_exclusive_bit<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 4, 1);
        for p in pages(AREA, 4) {
            let f = w.folio_at(0, p);
            take(f);
            let first = into_cache(w, &f);
            assert!(f.page(0).test_flag(PageFlag::AnonExclusive));
            let done = unmap(w, &f).unwrap();
            assert_eq!((done.refs, done.flushes.len()), (1, 1));
            assert_eq!(w.swap_pte(0, p), Some((first, true)));
            assert_eq!((w.area().count(first), w.area().has_cache(first)), (1, true));
            assert_eq!(
                (f.page_mapcount(0), f.refcount()),
                (0, 1 + 1 + 1),
                "ours, the cache's, the mapping's"
            );
            assert!(!f.page(0).test_flag(PageFlag::AnonExclusive), "the entry carries it now");
            // Not flushed yet: the CPU may still use its cached translation.
            let root = w.sp(0).table.root();
            assert!(w.tlb.translate(&w.mem, root, va(p), HwAccess::USER_READ).is_ok(), "stale until flushed");
            finish_unmap(w, &f, done);
            assert!(
                w.tlb.translate(&w.mem, root, va(p), HwAccess::USER_READ).is_err(),
                "gone after the flush"
            );
            assert_eq!(f.refcount(), 2);
            give_back(w, f);
        }
        assert_eq!(w.stats(0).nr_swap_entries, 4);
        // From the cache, exclusive again and writable: no read, no copy.
        for p in pages(AREA, 4) {
            w.expect_page(0, p, 1);
            assert!(w.leaf(0, p).1.prot.writable);
        }
        assert_eq!(w.frames.nr_reads(), 0);
        assert_eq!(w.area().nr_used(), 0);
    });
}

// ------------------------------------------------------------------ PMDs

/// A PMD-mapped THP: the PMD is split into 512 PTEs and each becomes the
/// swap entry of its page in the folio's run; the folio stays whole.
fn a_pmd_mapped_thp_is_split_and_every_page_unmapped<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let f = w.thp(0, AREA, 2);
        take(f);
        let first = into_cache(w, &f);
        assert_eq!(first.offset() % NR_HP, 0, "one aligned run");
        let done = unmap(w, &f).unwrap();
        assert_eq!(done.refs, 512);
        for (i, p) in pages(AREA, NR_HP).enumerate() {
            assert_eq!(w.swap_pte(0, p), Some((nth_entry(first, i), true)), "page {i}");
            assert_eq!(w.area().count(nth_entry(first, i)), 1);
            assert_eq!(f.page_mapcount(i), 0);
        }
        assert_eq!((f.order(), f.entire_mapcount(), f.total_mapcount()), (9, 0, 0));
        finish_unmap(w, &f, done);
        assert_eq!(f.refcount(), 1 + 512, "ours and the cache's");
        give_back(w, f);
        w.check();
        // One fault maps the whole folio back from the cache.
        w.expect_page(0, AREA + 100 * PAGE, 2);
        assert_eq!(w.folio_at(0, AREA).pfn(), f.pfn());
        for p in pages(AREA, NR_HP) {
            w.expect_page(0, p, 2);
        }
        assert_eq!(w.frames.nr_reads(), 0);
    });
}

/// A THP whose PMD parent and child share after fork: both PMDs are split
/// and every page of both spaces unmapped, each slot held twice, no
/// exclusive bit (fork shared the pages).
fn a_thp_shared_by_fork_is_unmapped_in_every_space<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let f = w.thp(0, AREA, 3);
        let c = w.fork(0);
        assert_eq!((w.leaf(c, AREA).0, f.entire_mapcount()), (Level::Pmd, 2));
        take(f);
        let first = into_cache(w, &f);
        let done = unmap(w, &f).unwrap();
        assert_eq!((done.refs, done.flushes.len()), (1024, 2));
        for s in [0, c] {
            for (i, p) in pages(AREA, NR_HP).enumerate().step_by(37) {
                assert_eq!(w.swap_pte(s, p), Some((nth_entry(first, i), false)), "space {s} page {i}");
            }
        }
        assert!((0..HP as usize / 4096).all(|i| w.area().count(nth_entry(first, i)) == 2));
        assert_eq!(f.total_mapcount(), 0);
        finish_unmap(w, &f, done);
        give_back(w, f);
        let stats = w.check();
        assert_eq!((stats[0].nr_swap_entries, stats[c].nr_swap_entries), (512, 512));
        // Both read it back from the cache, shared read-only.
        w.expect_page(c, AREA + 5 * PAGE, 3);
        w.expect_page(0, AREA + 5 * PAGE, 3);
        assert_eq!(w.folio_at(0, AREA).pfn(), w.folio_at(c, AREA).pfn());
        w.exit(c);
    });
}

/// Small pages shared by fork: two entries per slot, no exclusive bit;
/// a page one side copied on write is that side's alone.
fn small_pages_shared_by_fork<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 4);
        let c = w.fork(0);
        w.write_page(c, AREA + PAGE, 5); // the child's own copy of page 1
        for (p, refs, count) in [(AREA, 2, 2), (AREA + PAGE, 1, 1)] {
            let f = w.folio_at(0, p);
            take(f);
            let first = into_cache(w, &f);
            let done = unmap(w, &f).unwrap();
            assert_eq!(done.refs, refs, "{p:#x}");
            assert_eq!(w.area().count(first), count);
            assert_eq!(w.swap_pte(0, p), Some((first, false)), "fork cleared the parent's exclusive");
            finish_unmap(w, &f, done);
            give_back(w, f);
        }
        assert_eq!(w.swap_pte(c, AREA), w.swap_pte(0, AREA));
        assert!(w.swap_pte(c, AREA + PAGE).is_none(), "the child's copy stays mapped");
        w.check();
        w.expect_page(0, AREA, 4);
        w.expect_page(c, AREA, 4);
        w.expect_page(0, AREA + PAGE, 4);
        w.expect_page(c, AREA + PAGE, 5);
        w.exit(c);
    });
}

// ------------------------------------------------------------------ refusals

/// A refusal leaves everything as it was; the folio (left in the cache,
/// mapped) is then unlocked and given back.
fn refused<F: HardwareWalker>(w: &World<F>, f: &Folio<'static>, want: UnmapError) {
    let before = snapshot(w, f);
    let flushes = *w.tlb.nr_flushes.borrow();
    assert_eq!(unmap(w, f).unwrap_err(), want);
    assert_eq!(snapshot(w, f), before, "a refusal changed something");
    assert_eq!(*w.tlb.nr_flushes.borrow(), flushes, "a refusal flushed");
}

/// A pinned THP (a pin count), a pinned small page and a small page that
/// only looks pinned (1024 plain references) are refused before anything
/// changes: the PMD is not even split.
fn pinned_and_maybe_pinned_folios_are_refused_and_nothing_changes<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let thp = w.thp(0, AREA, 6);
        w.small_pages(0, AREA + HP, 2, 6);
        let pin_thp = w.hold(0, AREA + 9 * PAGE, true, Hold::Pin);
        let pin_small = w.hold(0, AREA + HP, true, Hold::Pin);
        let small = w.folio_at(0, AREA + HP);
        let maybe = w.folio_at(0, AREA + HP + PAGE);
        (0..1024).for_each(|_| maybe.get());
        assert!(thp.maybe_pinned() && small.maybe_pinned() && maybe.maybe_pinned());
        for f in [thp, small, maybe] {
            take(f);
            into_cache(w, &f);
            refused(w, &f, UnmapError::Pinned);
            give_back(w, f);
        }
        assert_eq!(w.leaf(0, AREA).0, Level::Pmd, "the PMD was not split");
        (0..1024).for_each(|_| {
            w.frames.put(maybe);
        });
        w.unhold(pin_thp, Hold::Pin);
        w.unhold(pin_small, Hold::Pin);
        w.expect_page(0, AREA + HP + PAGE, 6);
    });
}

/// A slot at its count limit refuses the whole folio before anything
/// changes (the PMD stays whole); a folio not in the swap cache is
/// refused too.
fn a_full_slot_count_or_no_swap_slots_refuse_and_nothing_changes<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let f = w.thp(0, AREA, 7);
        take(f);
        refused(w, &f, UnmapError::NotInSwapCache);
        let first = into_cache(w, &f);
        let full = nth_entry(first, 300);
        for _ in 0..MAX_SWAP_COUNT {
            w.area().dup(full).unwrap();
        }
        refused(w, &f, UnmapError::SwapCountFull { offset: full.offset() });
        assert_eq!(w.leaf(0, AREA).0, Level::Pmd);
        // One count less: there is room for the one PMD.
        w.area().free_ref(full).unwrap();
        let done = unmap(w, &f).unwrap();
        assert_eq!((done.refs, w.area().count(full)), (512, MAX_SWAP_COUNT));
        finish_unmap(w, &f, done);
        for _ in 1..MAX_SWAP_COUNT {
            w.area().free_ref(full).unwrap();
        }
        give_back(w, f);
        w.expect_page(0, AREA + 300 * PAGE, 7);
    });
}

// ------------------------------------------------------------------ seed 004

/// With `forget-anon-exclusive` on, the swap target writes every entry
/// without the exclusive bit (seed 004's mistake); off, with it.
fn the_replay_switch_drops_the_exclusive_bit<F: HardwareWalker>() {
    for bug in [false, true] {
        with_world_and_bug(bug.then_some(Bug::ForgetAnonExclusive), world::<F>, |w| {
            w.small_pages(0, AREA, 1, 8);
            let f = w.folio_at(0, AREA);
            take(f);
            let first = into_cache(w, &f);
            let done = unmap(w, &f).unwrap();
            assert_eq!(w.swap_pte(0, AREA), Some((first, !bug)), "switch {bug}");
            finish_unmap(w, &f, done);
            give_back(w, f);
            w.expect_page(0, AREA, 8);
        });
    }
}

mm::for_both_formats!(
    pte_mapped_pages_become_swap_entries_with_the_exclusive_bit,
    a_pmd_mapped_thp_is_split_and_every_page_unmapped,
    a_thp_shared_by_fork_is_unmapped_in_every_space,
    small_pages_shared_by_fork,
    pinned_and_maybe_pinned_folios_are_refused_and_nothing_changes,
    a_full_slot_count_or_no_swap_slots_refuse_and_nothing_changes,
    the_replay_switch_drops_the_exclusive_bit,
);
