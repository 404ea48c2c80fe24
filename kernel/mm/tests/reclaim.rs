//! `mm::reclaim` over both real formats: every decision of the shrink step
//! (skip, keep, activate, split, write, free) with the list each kept folio
//! goes back to, the orphan retry, the LRU scan and `MADV_PAGEOUT`'s
//! hand-over (never a folio somebody else's reclaim holds, seed 002). The
//! world is `mm::testkit`'s `World` with LRU lists and a swap area, which
//! plays the kernel's side of `ReclaimHost` (`mm::testkit::policy`).

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::folio::Folio;
use mm::gup::{release, Hold};
use mm::lru::LruList;
use mm::page::PageFlag;
use mm::pgtable::sim::HardwareWalker;
use mm::pgtable::{Level, TlbHooks};
use mm::reclaim::{
    pageout, shrink_folio, shrink_list, shrink_lru, test_and_clear_young, Kept, Pieces, Reclaimed, Shrunk,
    MAX_WRITES_IN_FLIGHT, ORPHAN_TRIES, UNMAP_BATCH,
};
use mm::swap::area::MAX_SWAP_COUNT;
use mm::swap::cache::{add_to_swap, folio_entry};
use mm::testkit::policy::{with_world, world, world_without_runs};
use mm::testkit::world::{page_bytes, pages, World, AREA, HP, NR_HP, PAGE};
use mm::thp::SplitRefused;
use mm::unmap::UnmapError;

/// The state a kept folio must be in: back on `list`, unlocked, holding
/// the references `refs` (the caller's dropped).
fn kept_on<F: HardwareWalker>(w: &World<F>, f: Folio<'static>, list: LruList, refs: i32) {
    assert_eq!(w.list_of(f), Some(list), "pfn {:#x}", f.pfn());
    assert!(!f.is_locked() && !f.test_flag(PageFlag::Writeback));
    assert_eq!(f.refcount(), refs);
}

// ------------------------------------------------------------------ write and free

/// A mapped page and a mapped THP (whole, one run): unmapped, written in
/// one request each, freed; they come back from the disk.
fn mapped_folios_are_unmapped_written_and_freed<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA + HP, 3, 1);
        let thp = w.thp(0, AREA, 2);
        let free = w.nr_free();
        for p in pages(AREA + HP, 3) {
            assert_eq!(w.shrink(w.isolate_at(0, p)), Shrunk::Freed(1));
        }
        assert_eq!(w.shrink(w.isolate(thp)), Shrunk::Freed(512));
        assert_eq!(w.nr_free(), free + 515);
        assert_eq!((w.frames.nr_writes(), w.frames.nr_write_calls()), (515, 4));
        let (first, exclusive) = w.swap_pte(0, AREA).unwrap();
        assert!(exclusive && first.offset() % NR_HP == 0);
        assert_eq!((w.area().nr_used(), w.area().nr_in_cache()), (515, 0));
        assert_eq!((w.lru().nr_active(), w.lru().nr_inactive()), (0, 0));
        assert_eq!(w.stats(0).nr_swap_entries, 515);
        w.expect_page(0, AREA + 7 * PAGE, 2);
        assert_eq!(w.frames.nr_read_calls(), 1, "the THP's run is read whole");
        for p in pages(AREA + HP, 3) {
            w.expect_page(0, p, 1);
        }
    });
}

/// A folio whose mappings went while reclaim held it (an munmap): no
/// entry holds its new slots, so it is freed without a write.
fn a_folio_nobody_maps_any_more_is_freed_without_a_write<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 1);
        let f = w.isolate_at(0, AREA);
        w.munmap(0, AREA, PAGE);
        assert_eq!((f.total_mapcount(), f.refcount()), (0, 1));
        assert_eq!(w.shrink(f), Shrunk::Freed(1));
        assert_eq!((w.frames.nr_writes(), w.area().nr_used()), (0, 0));
        w.expect_page(0, AREA + PAGE, 1);
    });
}

// ------------------------------------------------------------------ skip and activate

/// A folio somebody else has locked is skipped: back on the inactive list
/// untouched (no slots, still mapped).
fn a_locked_folio_is_skipped<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 1);
        let f = w.isolate_at(0, AREA);
        f.lock(); // somebody else's
        assert_eq!(w.shrink(f), Shrunk::Kept(Kept::Locked));
        assert!(f.is_locked(), "not ours to unlock");
        f.unlock();
        kept_on(w, f, LruList::Inactive, 1);
        assert!(folio_entry(&f).is_none() && f.total_mapcount() == 1);
    });
}

/// A pinned page and a page with 1024 plain references (maybe pinned) are
/// activated, untouched.
fn a_maybe_pinned_folio_is_activated<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 1);
        let pin = w.hold(0, AREA, true, Hold::Pin);
        let maybe = w.folio_at(0, AREA + PAGE);
        (0..1024).for_each(|_| maybe.get());
        for (p, refs) in [(AREA, 1 + 1024), (AREA + PAGE, 1 + 1024)] {
            let f = w.isolate_at(0, p);
            assert_eq!(w.shrink(f), Shrunk::Kept(Kept::MaybePinned));
            kept_on(w, f, LruList::Active, refs);
            assert!(folio_entry(&f).is_none() && f.total_mapcount() == 1);
        }
        assert_eq!(w.frames.nr_writes(), 0);
        w.unhold(pin, Hold::Pin);
        (0..1024).for_each(|_| {
            w.frames.put(maybe);
        });
    });
}

/// No swap on, its area gone, or the area full: activated, mapped, with
/// no slots taken (a gone area's folio keeps the slots it had).
fn no_swap_a_gone_area_or_a_full_one_activates<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 1);
        w.host.no_swap.set(true);
        let f = w.isolate_at(0, AREA);
        assert_eq!(w.shrink(f), Shrunk::Kept(Kept::NoSwap));
        kept_on(w, f, LruList::Active, 1);
        w.host.no_swap.set(false);
        // Full: every slot handed out.
        let taken: Vec<_> = std::iter::from_fn(|| w.area().alloc(0)).collect();
        let f = w.isolate_at(0, AREA);
        assert_eq!(w.shrink(f), Shrunk::Kept(Kept::SwapFull));
        kept_on(w, f, LruList::Active, 1);
        assert!(folio_entry(&f).is_none());
        for e in taken {
            w.area().release_cache(e, 1).unwrap();
        }
        // In the cache (kept in use by a hold), then its area goes.
        let hold = w.hold(0, AREA + PAGE, false, Hold::Get);
        let g = w.isolate_at(0, AREA + PAGE);
        assert_eq!(w.shrink(g), Shrunk::Kept(Kept::InUse));
        w.host.area_gone.set(true);
        let entry = folio_entry(&g).expect("in the cache");
        assert_eq!(w.shrink(w.isolate(g)), Shrunk::Kept(Kept::AreaGone));
        kept_on(w, g, LruList::Active, 1 + 1); // the cache's, the hold's
        assert_eq!((folio_entry(&g), w.area().count(entry)), (Some(entry), 1), "its slot is kept");
        w.host.area_gone.set(false);
        w.unhold(hold, Hold::Get);
        assert_eq!(w.shrink(w.isolate(g)), Shrunk::Freed(1));
        w.expect_page(0, AREA + PAGE, 1);
    });
}

// ------------------------------------------------------------------ split

/// An area with no free run: a THP is split, page 0 goes at once, the 511
/// other pieces come back isolated for the caller; `shrink_list` swaps all
/// 512 pages out one by one, and every byte comes back.
fn a_thp_with_no_run_of_slots_is_split_and_goes_page_by_page<F: HardwareWalker>() {
    with_world(world_without_runs::<F>, |w| {
        let thp = w.thp(0, AREA, 3);
        let mut pieces = Pieces::default();
        assert_eq!(shrink_folio(w, w.isolate(thp), &mut pieces), Shrunk::Freed(1));
        assert_eq!((pieces.nr_split, pieces.folios.len()), (1, 511));
        assert!(pieces.folios.iter().all(|p| p.order() == 0 && p.refcount() == 2 && w.list_of(*p).is_none()));
        assert_eq!(shrink_list(w, pieces.folios), Reclaimed { nr_pages: 511, nr_split: 0 });
        assert_eq!(w.stats(0).nr_swap_entries, 512);
        // And the whole pass at once, on a second THP.
        let thp = w.thp(0, AREA + HP, 4);
        assert_eq!(shrink_list(w, vec![w.isolate(thp)]), Reclaimed { nr_pages: 512, nr_split: 1 });
        assert_eq!((w.lru().nr_active(), w.lru().nr_inactive()), (0, 0));
        assert_eq!((w.frames.nr_writes(), w.frames.nr_write_calls()), (1024, 1024));
        for p in pages(AREA, NR_HP).step_by(41) {
            w.expect_page(0, p, 3);
            w.expect_page(0, p + HP, 4);
        }
    });
}

/// No run, and the THP cannot be split: shared with a fork child (its PMD
/// stays whole), or referenced by someone else (its PMD split, the folio
/// whole). Activated, no slots taken.
fn a_thp_with_no_run_that_cannot_be_split_is_activated<F: HardwareWalker>() {
    with_world(world_without_runs::<F>, |w| {
        let shared_thp = w.thp(0, AREA, 5);
        let c = w.fork(0);
        assert_eq!(
            w.shrink(w.isolate(shared_thp)),
            Shrunk::Kept(Kept::CannotSplit(SplitRefused::MappedElsewhere))
        );
        kept_on(w, shared_thp, LruList::Active, 2);
        assert_eq!((w.leaf(0, AREA).0, w.leaf(c, AREA).0), (Level::Pmd, Level::Pmd));
        w.exit(c);
        let referenced = w.thp(0, AREA + HP, 6);
        let hold = w.hold(0, AREA + HP + 3 * PAGE, false, Hold::Get);
        assert_eq!(
            w.shrink(w.isolate(referenced)),
            Shrunk::Kept(Kept::CannotSplit(SplitRefused::Referenced))
        );
        kept_on(w, referenced, LruList::Active, 512 + 1);
        assert_eq!((referenced.order(), w.leaf(0, AREA + HP).0), (9, Level::Pte));
        assert!(folio_entry(&shared_thp).is_none() && folio_entry(&referenced).is_none());
        assert_eq!(w.area().nr_used(), 0);
        w.unhold(hold, Hold::Get);
        w.check();
        w.expect_page(0, AREA + HP + 9 * PAGE, 6);
    });
}

// ------------------------------------------------------------------ unmap refused

/// A slot already at its count limit: the unmap is refused as a whole,
/// the folio stays mapped (in the cache) and active; once the count goes
/// down it is swapped out.
fn a_refused_unmap_keeps_it_mapped_and_active<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 7);
        let f = w.folio_at(0, AREA);
        f.lock();
        let e = add_to_swap(w.area(), &f).unwrap();
        f.unlock();
        for _ in 0..MAX_SWAP_COUNT {
            w.area().dup(e).unwrap();
        }
        let full = UnmapError::SwapCountFull { offset: e.offset() };
        assert_eq!(w.shrink(w.isolate_at(0, AREA)), Shrunk::Kept(Kept::CouldNotUnmap(full)));
        kept_on(w, f, LruList::Active, 1 + 1);
        assert_eq!((f.total_mapcount(), w.area().count(e), w.frames.nr_writes()), (1, MAX_SWAP_COUNT, 0));
        for _ in 0..MAX_SWAP_COUNT {
            w.area().free_ref(e).unwrap();
        }
        assert_eq!(w.shrink(w.isolate_at(0, AREA)), Shrunk::Freed(1));
        w.expect_page(0, AREA, 7);
    });
}

/// A mapping the family's tables do not show (a space reclaim cannot
/// see): what it can see is unmapped, and the folio, still mapped, is
/// kept active; with every space in sight it goes.
fn a_mapping_outside_the_family_keeps_it_still_mapped<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 8);
        let c = w.fork(0);
        w.host.hidden.borrow_mut().push(c);
        let f = w.folio_at(0, AREA);
        assert_eq!(w.shrink(w.isolate_at(0, AREA)), Shrunk::Kept(Kept::StillMapped));
        kept_on(w, f, LruList::Active, 1 + 1); // the child's mapping, the cache
        assert!(w.swap_pte(0, AREA).is_some() && w.swap_pte(c, AREA).is_none());
        assert_eq!(f.total_mapcount(), 1);
        w.host.hidden.borrow_mut().clear();
        assert_eq!(w.shrink(w.isolate(f)), Shrunk::Freed(1));
        assert_eq!(w.swap_pte(c, AREA), w.swap_pte(0, AREA));
        w.expect_page(c, AREA, 8);
        w.expect_page(0, AREA, 8);
        w.exit(c);
    });
}

// ------------------------------------------------------------------ writes in flight

/// A pass writes its folios with several writes in flight (up to
/// [`MAX_WRITES_IN_FLIGHT`], each folio locked and under `Writeback` until
/// its write is waited for: the world checks it), finishes them oldest
/// first when the disk has no room, and frees every one; a write that
/// fails among them keeps only its own folio.
fn a_pass_keeps_several_writes_in_flight<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 40, 13);
        let all: Vec<Folio<'static>> = pages(AREA, 40).map(|p| w.isolate_at(0, p)).collect();
        assert_eq!(shrink_list(w, all).nr_pages, 40);
        assert_eq!(w.host.most_writes_in_flight.get(), MAX_WRITES_IN_FLIGHT);
        assert_eq!((w.host.writes_in_flight.get(), w.frames.nr_writes()), (0, 40));
        // A disk with room for 3: the oldest is finished to make room.
        w.small_pages(0, AREA + HP, 20, 14);
        w.host.most_writes_in_flight.set(0);
        w.host.write_room.set(Some(3));
        let all: Vec<Folio<'static>> = pages(AREA + HP, 20).map(|p| w.isolate_at(0, p)).collect();
        assert_eq!(shrink_list(w, all).nr_pages, 20);
        assert_eq!(w.host.most_writes_in_flight.get(), 3);
        // Two failures among five in flight: those two are kept.
        w.host.write_room.set(None);
        w.small_pages(0, AREA + 2 * HP, 5, 15);
        let kept: Vec<Folio<'static>> = pages(AREA + 2 * HP, 5).map(|p| w.folio_at(0, p)).collect();
        w.frames.fail_next_writes(2);
        let all: Vec<Folio<'static>> = pages(AREA + 2 * HP, 5).map(|p| w.isolate_at(0, p)).collect();
        assert_eq!(shrink_list(w, all).nr_pages, 3);
        for f in &kept[..2] {
            kept_on(w, *f, LruList::Inactive, 1); // the cache's
        }
        for (i, p) in pages(AREA, 40).enumerate() {
            if i % 7 == 0 {
                w.expect_page(0, p, 13);
            }
        }
        for p in pages(AREA + HP, 20).chain(pages(AREA + 2 * HP, 5)).step_by(3) {
            w.expect_page(0, p, if p < AREA + 2 * HP { 14 } else { 15 });
        }
    });
}

/// A pass unmaps its folios in batches of [`UNMAP_BATCH`] with one TLB
/// flush per batch (of one family), not one per folio; every write is
/// still submitted after the flush that covers its folio (the world
/// checks that no cached translation reaches a frame being written).
fn a_pass_flushes_the_tlb_once_per_batch<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let n = 2 * UNMAP_BATCH as u64 + 3;
        w.small_pages(0, AREA, n, 16);
        let flushes = *w.tlb.nr_flushes.borrow();
        let all: Vec<Folio<'static>> = pages(AREA, n).map(|p| w.isolate_at(0, p)).collect();
        assert_eq!(shrink_list(w, all).nr_pages, n as usize);
        let batches = (n as usize).div_ceil(UNMAP_BATCH) as u64;
        assert_eq!(*w.tlb.nr_flushes.borrow() - flushes, batches, "one flush per batch");
        for p in pages(AREA, n).step_by(5) {
            w.expect_page(0, p, 16);
        }
    });
}

/// With writes of up to 8 pages, a pass writes folios whose slots follow
/// one another in one write each (the world checks the run and that each
/// is locked under `Writeback`); a THP goes alone. A write that fails
/// keeps every folio it took, in the cache, unmapped and intact; the next
/// pass writes and frees them.
fn folios_with_consecutive_slots_go_in_one_write<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.host.write_gather.set(8);
        w.small_pages(0, AREA + HP, 40, 17);
        let thp = w.thp(0, AREA, 18);
        let mut all: Vec<Folio<'static>> = pages(AREA + HP, 40).map(|p| w.isolate_at(0, p)).collect();
        all.insert(20, w.isolate(thp));
        assert_eq!(shrink_list(w, all).nr_pages, 40 + 512);
        // Batches of 32 folios (a write takes folios of one batch): 20
        // small pages, the THP, 11 small pages; then 9 small pages. So
        // 3 + 1 + 2 writes, then 2.
        assert_eq!(UNMAP_BATCH, 32);
        assert_eq!((w.host.nr_writes_submitted.get(), w.host.most_folios_per_write.get()), (8, 8));
        assert_eq!((w.frames.nr_writes(), w.area().nr_in_cache()), (552, 0));
        // A failed write keeps all of its folios.
        w.small_pages(0, AREA + 2 * HP, 8, 19);
        let kept: Vec<Folio<'static>> = pages(AREA + 2 * HP, 8).map(|p| w.folio_at(0, p)).collect();
        w.frames.fail_next_writes(1);
        let all: Vec<Folio<'static>> = pages(AREA + 2 * HP, 8).map(|p| w.isolate_at(0, p)).collect();
        assert_eq!(shrink_list(w, all).nr_pages, 0);
        for f in &kept {
            kept_on(w, *f, LruList::Inactive, 1); // the cache's
            assert!(f.test_flag(PageFlag::Dirty) && f.total_mapcount() == 0);
        }
        let again: Vec<Folio<'static>> = kept.iter().map(|f| w.isolate(*f)).collect();
        assert_eq!(shrink_list(w, again).nr_pages, 8, "written again");
        for p in pages(AREA + HP, 40).step_by(3) {
            w.expect_page(0, p, 17);
        }
        w.expect_page(0, AREA + 5 * PAGE, 18);
        for p in pages(AREA + 2 * HP, 8) {
            w.expect_page(0, p, 19);
        }
    });
}

// ------------------------------------------------------------------ write failed, in use

/// A failed write keeps the folio in memory, in the cache and unmapped, on
/// the inactive list; a fault maps it from there without a read; the next
/// pass writes it again and frees it.
fn a_failed_write_keeps_it_in_the_cache_on_the_inactive_list<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 9);
        w.frames.fail_next_writes(2);
        let f = w.folio_at(0, AREA);
        assert_eq!(w.shrink(w.isolate_at(0, AREA)), Shrunk::Kept(Kept::WriteFailed));
        kept_on(w, f, LruList::Inactive, 1); // the cache's
        assert!(f.test_flag(PageFlag::SwapCache) && f.total_mapcount() == 0);
        w.expect_page(0, AREA, 9);
        assert_eq!(w.frames.nr_reads(), 0, "from the cache");
        let g = w.folio_at(0, AREA + PAGE);
        assert_eq!(w.shrink(w.isolate_at(0, AREA + PAGE)), Shrunk::Kept(Kept::WriteFailed));
        assert_eq!(w.shrink(w.isolate(g)), Shrunk::Freed(1), "written again");
        w.expect_page(0, AREA + PAGE, 9);
    });
}

/// Someone else's reference keeps a written folio in the cache, on the
/// inactive list, with no waiting (it may be mapped again); an orphan
/// (nobody can map it again) is retried while a racing reference goes,
/// up to [`ORPHAN_TRIES`] times.
fn someone_elses_reference_keeps_it_and_an_orphan_is_retried<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 3, 10);
        // In use: an entry holds its slot.
        let hold = w.hold(0, AREA, false, Hold::Get);
        let f = w.folio_at(0, AREA);
        assert_eq!(w.shrink(w.isolate_at(0, AREA)), Shrunk::Kept(Kept::InUse));
        kept_on(w, f, LruList::Inactive, 1 + 1);
        assert_eq!((w.host.nr_relax.get(), w.frames.nr_writes()), (0, 1), "written, no retry");
        w.unhold(hold, Hold::Get);
        // Orphans: unmapped while isolated, a reference that is not ours.
        for (p, goes_after) in [(AREA + PAGE, Some(3)), (AREA + 2 * PAGE, None)] {
            let g = w.isolate_at(0, p);
            let hold = w.hold(0, p, false, Hold::Get);
            w.munmap(0, p, PAGE);
            w.host.nr_relax.set(0);
            let memmap = w.memmap();
            let mut calls = 0;
            *w.host.on_relax.borrow_mut() = Some(Box::new(move || {
                calls += 1;
                if Some(calls) == goes_after {
                    assert!(release(memmap, hold, Hold::Get).is_none());
                }
            }));
            let got = w.shrink(g);
            *w.host.on_relax.borrow_mut() = None;
            match goes_after {
                Some(n) => assert_eq!((got, w.host.nr_relax.get()), (Shrunk::Freed(1), n)),
                None => {
                    assert_eq!((got, w.host.nr_relax.get()), (Shrunk::Kept(Kept::InUse), ORPHAN_TRIES));
                    kept_on(w, g, LruList::Inactive, 1 + 1);
                    w.unhold(hold, Hold::Get);
                    assert_eq!(w.shrink(w.isolate(g)), Shrunk::Freed(1));
                }
            }
        }
        assert_eq!(w.frames.nr_writes(), 1, "orphans are never written");
        w.expect_page(0, AREA, 10);
    });
}

// ------------------------------------------------------------------ clean copies

/// A page read back from swap keeps its slot and its copy in the cache,
/// mapped exclusive but read-only and clean; reclaiming it again unmaps
/// and frees it without a write, and it comes back from the same slot.
fn a_page_read_back_is_reclaimed_again_without_a_write<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 3);
        assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
        let (entry, _) = w.swap_pte(0, AREA).unwrap();
        assert_eq!(w.frames.nr_writes(), 1);
        for _ in 0..3 {
            w.expect_page(0, AREA, 3);
            let f = w.folio_at(0, AREA);
            assert_eq!(folio_entry(&f), Some(entry), "kept in the cache with its slot");
            assert!(!f.test_flag(PageFlag::Dirty) && f.page(0).test_flag(PageFlag::AnonExclusive));
            let (_, leaf) = w.leaf(0, AREA);
            assert!(!leaf.prot.writable && !leaf.dirty, "{leaf:?}");
            assert_eq!(w.area().nr_used(), 1);
            w.check();
            assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
            assert_eq!(w.swap_pte(0, AREA), Some((entry, true)), "the same slot, still exclusive");
        }
        assert_eq!(w.frames.nr_writes(), 1, "written once");
        w.expect_page(0, AREA, 3);
    });
}

/// A kept copy written since is written again, to the same slot: the
/// write fault's reuse makes the folio `Dirty` before its leaf becomes
/// writable; and with the folio's flag cleared by hand, the unmap still
/// moves the leaf's dirtiness to it, so a written page is never dropped.
fn a_kept_copy_written_since_is_written_again<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 3);
        for p in pages(AREA, 2) {
            assert_eq!(w.swap_out(0, p), Shrunk::Freed(1));
            w.expect_page(0, p, 3);
        }
        assert_eq!(w.frames.nr_writes(), 2);
        w.write_page(0, AREA, 4);
        let f = w.folio_at(0, AREA);
        assert!(f.test_flag(PageFlag::SwapCache) && f.test_flag(PageFlag::Dirty));
        assert!(w.leaf(0, AREA).1.prot.writable);
        w.check();
        let (entry, _) = w.swap_pte(0, AREA).map_or((None, ()), |e| (Some(e.0), ()));
        assert_eq!(entry, None, "mapped");
        assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
        assert_eq!(w.frames.nr_writes(), 3, "written again");
        w.expect_page(0, AREA, 4);
        // Only the leaf knows it was written.
        w.write_page(0, AREA + PAGE, 5);
        w.folio_at(0, AREA + PAGE).clear_flag(PageFlag::Dirty);
        assert_eq!(w.swap_out(0, AREA + PAGE), Shrunk::Freed(1));
        assert_eq!(w.frames.nr_writes(), 4, "the leaf's dirty bit reached the folio");
        w.expect_page(0, AREA + PAGE, 5);
    });
}

/// While the area is half full or more, a read-back frees its slot at
/// once (the page is mapped writable, `Dirty`, out of the cache), and the
/// next reclaim writes it to new slots.
fn a_half_full_area_frees_the_slot_of_a_page_read_back<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 3);
        assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
        let half = w.area().nr_slots().div_ceil(2);
        let taken: Vec<_> = (1..half).map(|_| w.area().alloc(0).unwrap()).collect();
        assert_eq!(w.area().nr_used(), half);
        w.expect_page(0, AREA, 3);
        let f = w.folio_at(0, AREA);
        assert!(!f.test_flag(PageFlag::SwapCache) && f.test_flag(PageFlag::Dirty));
        assert!(w.leaf(0, AREA).1.prot.writable, "exclusive: writable");
        assert_eq!(w.area().nr_used(), half - 1);
        for e in taken {
            w.area().release_cache(e, 1).unwrap();
        }
        assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
        assert_eq!(w.frames.nr_writes(), 2);
        w.expect_page(0, AREA, 3);
    });
}

/// A folio someone else held a reference to when reclaim wrote it may be
/// written through that reference (a `FOLL_GET` transfer into it): its
/// copy is not trusted; read back, it is not kept clean, and the next
/// reclaim writes what the holder wrote.
fn a_copy_someone_else_held_is_written_again<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 3);
        let hold = w.hold(0, AREA, true, Hold::Get);
        assert_eq!(w.swap_out(0, AREA), Shrunk::Kept(Kept::InUse));
        assert_eq!(w.frames.nr_writes(), 1);
        w.frames.set_frame(hold.pfn(), page_bytes(AREA, 6)); // the device writes
        w.unhold(hold, Hold::Get);
        w.expect_page(0, AREA, 6);
        assert_eq!(w.swap_out(0, AREA), Shrunk::Freed(1));
        assert_eq!(w.frames.nr_writes(), 2);
        w.expect_page(0, AREA, 6);
    });
}

// ------------------------------------------------------------------ aging

/// The LRU scan ages by the young bits found through the reverse map: a
/// folio used since it was last looked at goes to the active list with
/// its leaves made old, not written; one untouched since is written and
/// freed; when every folio was used, the balancing hands the (now old)
/// active tail back and the pass still frees (a second-chance clock, no
/// livelock). `MADV_PAGEOUT` (and a named folio) goes regardless.
fn the_scan_activates_young_folios_and_takes_old_ones<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        const N: u64 = 8;
        w.small_pages(0, AREA, N, 5);
        // Every page is young from its fault; pages 4..8 are looked at
        // once (made old), pages 0..4 not.
        for p in pages(AREA + 4 * PAGE, 4) {
            let f = w.folio_at(0, p);
            f.get();
            assert_eq!(test_and_clear_young(w, &f), 1);
            w.frames.put(f);
            assert!(!w.leaf(0, p).1.young, "{p:#x}: made old");
        }
        let first = shrink_lru(w, 4);
        assert_eq!((first.nr_pages, w.frames.nr_writes()), (4, 4), "{first:?}");
        for p in pages(AREA, 4) {
            assert_eq!(w.list_of(w.folio_at(0, p)), Some(LruList::Active), "{p:#x}: used, kept");
            assert!(!w.leaf(0, p).1.young, "{p:#x}: made old when activated");
        }
        for p in pages(AREA + 4 * PAGE, 4) {
            assert!(w.swap_pte(0, p).is_some(), "{p:#x}: untouched, written");
        }
        // Nothing used since: the balancing brings the active tail back
        // and the next pass frees it.
        let second = shrink_lru(w, 2);
        assert!(second.nr_pages >= 2, "{second:?}");
        // A writable leaf made old is made dirty too (x86 may set its dirty
        // bit meanwhile), so nothing written is lost.
        let at = pages(AREA, 4).find(|&p| w.swap_pte(0, p).is_none()).expect("one left");
        w.tlb.flush_all(w.sp(0).table.root()); // a switch: the CPU marks young again
        w.write_page(0, at, 6);
        let f = w.isolate_at(0, at);
        assert_eq!(test_and_clear_young(w, &f), 1);
        let (_, leaf) = w.leaf(0, at);
        assert!(!leaf.young && leaf.dirty && leaf.prot.writable, "{leaf:?}");
        assert_eq!(w.shrink(f), Shrunk::Freed(1), "a named folio is not aged");
        // MADV_PAGEOUT takes a young folio.
        let young = pages(AREA, 4).find(|&p| w.swap_pte(0, p).is_none());
        if let Some(p) = young {
            w.write_page(0, p, 7);
            assert!(w.leaf(0, p).1.young);
            let g = w.folio_at(0, p);
            g.get();
            assert_eq!(pageout(w, vec![g]).nr_pages, 1);
            w.expect_page(0, p, 7);
        }
        w.expect_page(0, at, 6);
        for p in pages(AREA + 4 * PAGE, 4) {
            w.expect_page(0, p, 5);
        }
    });
}

// ------------------------------------------------------------------ the scan and MADV_PAGEOUT

/// `shrink_lru`: nothing without swap; referenced folios get a second
/// chance on the active list, the others go; a list of only referenced
/// folios is balanced and still reclaims; a pass ends even when nothing
/// can be freed.
fn shrink_lru_scans_rotates_balances_and_ends<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        const N: u64 = 40;
        w.small_pages(0, AREA, N, 11);
        w.host.no_swap.set(true);
        assert_eq!(shrink_lru(w, 8), Reclaimed::default());
        assert_eq!(w.lru().nr_inactive(), N);
        w.host.no_swap.set(false);
        // The oldest 8 are referenced: rotated, and the next ones go.
        for p in pages(AREA, 8) {
            w.lru().mark_accessed(w.folio_at(0, p));
        }
        let done = shrink_lru(w, 8);
        assert!(done.nr_pages >= 8 && done.nr_split == 0, "{done:?}");
        for p in pages(AREA, 8) {
            assert_eq!(w.list_of(w.folio_at(0, p)), Some(LruList::Active), "{p:#x} had a second chance");
        }
        assert_eq!(w.stats(0).nr_swap_entries, done.nr_pages as u64);
        // Everything left referenced: balancing still finds folios to free.
        for p in pages(AREA, N).filter(|&p| w.swap_pte(0, p).is_none()) {
            w.lru().mark_accessed(w.folio_at(0, p));
        }
        let more = shrink_lru(w, 4);
        assert!(more.nr_pages >= 4, "{more:?}");
        // Nothing can go (all pinned): the pass ends.
        let left: Vec<u64> = pages(AREA, N).filter(|&p| w.swap_pte(0, p).is_none()).collect();
        let pins: Vec<_> = left.iter().map(|&p| w.hold(0, p, false, Hold::Pin)).collect();
        assert_eq!(shrink_lru(w, 1000), Reclaimed::default());
        assert_eq!(w.lru().nr_active() + w.lru().nr_inactive(), left.len() as u64);
        pins.into_iter().for_each(|pa| w.unhold(pa, Hold::Pin));
        for p in pages(AREA, N) {
            w.expect_page(0, p, 11);
        }
    });
}

/// `MADV_PAGEOUT`'s hand-over: a folio on the lists is taken and shrunk
/// now; one that is off the lists (somebody else's reclaim holds it, seed
/// 002) is left alone, only the candidate's reference dropped.
fn pageout_never_takes_a_folio_another_reclaim_holds<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 12);
        let (mine, theirs) = (w.folio_at(0, AREA), w.folio_at(0, AREA + PAGE));
        let held = w.isolate_at(0, AREA + PAGE); // the other reclaim's
        mine.get();
        theirs.get();
        assert_eq!(pageout(w, vec![mine, theirs]), Reclaimed { nr_pages: 1, nr_split: 0 });
        assert!(w.swap_pte(0, AREA).is_some());
        assert_eq!((theirs.refcount(), theirs.total_mapcount(), w.list_of(theirs)), (2, 1, None));
        assert!(folio_entry(&theirs).is_none() && !theirs.is_locked());
        assert_eq!(w.shrink(held), Shrunk::Freed(1), "the other reclaim finishes it");
        w.expect_page(0, AREA, 12);
        w.expect_page(0, AREA + PAGE, 12);
    });
}

mm::for_both_formats!(
    mapped_folios_are_unmapped_written_and_freed,
    a_folio_nobody_maps_any_more_is_freed_without_a_write,
    a_locked_folio_is_skipped,
    a_maybe_pinned_folio_is_activated,
    no_swap_a_gone_area_or_a_full_one_activates,
    a_thp_with_no_run_of_slots_is_split_and_goes_page_by_page,
    a_thp_with_no_run_that_cannot_be_split_is_activated,
    a_refused_unmap_keeps_it_mapped_and_active,
    a_mapping_outside_the_family_keeps_it_still_mapped,
    a_failed_write_keeps_it_in_the_cache_on_the_inactive_list,
    a_pass_keeps_several_writes_in_flight,
    a_pass_flushes_the_tlb_once_per_batch,
    folios_with_consecutive_slots_go_in_one_write,
    someone_elses_reference_keeps_it_and_an_orphan_is_retried,
    shrink_lru_scans_rotates_balances_and_ends,
    pageout_never_takes_a_folio_another_reclaim_holds,
    a_page_read_back_is_reclaimed_again_without_a_write,
    a_kept_copy_written_since_is_written_again,
    a_half_full_area_frees_the_slot_of_a_page_read_back,
    a_copy_someone_else_held_is_written_again,
    the_scan_activates_young_folios_and_takes_old_ones,
);
