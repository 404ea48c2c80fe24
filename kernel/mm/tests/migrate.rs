//! `mm::migrate` over both real formats: a small page, a PMD-mapped THP
//! (one PMD migration entry, a PMD leaf again after), a PTE-mapped THP, a
//! folio shared by fork (every space restored, `Read` entries), a folio in
//! the swap cache (every slot names the new folio; swap-in from it
//! works), a pinned or referenced folio refused with nothing changed, the
//! write / exclusive / young / dirty state carried through the entries,
//! and the split-then-migrate policy for a THP with no 2 MiB destination.
//! The world is `mm::testkit`'s `World` with LRU lists and a swap area
//! (`mm::testkit::policy`), as the kernel's side of migration
//! (`mm::testkit::migration`), which records the entries as the copy saw
//! them.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::folio::Folio;
use mm::gup::Hold;
use mm::lru::LruLists;
use mm::migrate::{MigrateError, MigrateHost};
use mm::page::Memmap;
use mm::page::PageFlag;
use mm::pgtable::sim::{HardwareWalker, HwAccess};
use mm::pgtable::sim::{SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Level, MigrationKind, NonPresent};
use mm::pgtable::{PageTable, SwapType};
use mm::swap::area::SwapArea;
use mm::swap::cache::{folio_entry, lookup_get, nth_entry};
use mm::testkit::policy::{with_world, world};
use mm::testkit::world::{pages, va, World, AREA, HP, NR_HP, PAGE};
use mm::unmap::UnmapError;
use mm::vma::VmaProt;
use mm::Pfn;
use mm::PhysAddr;
use std::cell::RefCell;

/// The migration entries of space `s` as the latest migration's copy saw
/// them: (address, level, kind, young, dirty).
fn entries_at_copy<F: HardwareWalker>(
    w: &World<F>,
    s: usize,
) -> Vec<(u64, Level, MigrationKind, bool, bool)> {
    w.host
        .entries_at_copy
        .borrow()
        .iter()
        .filter(|e| e.0 == s)
        .filter_map(|&(_, at, level, d)| match d {
            Decoded::NonPresent(NonPresent::Migration(m)) => {
                Some((at.as_u64(), level, m.kind, m.young, m.dirty))
            }
            _ => None,
        })
        .collect()
}

/// The head PFN of the folio mapped at `at`.
fn head<F: HardwareWalker>(w: &World<F>, s: usize, at: u64) -> Pfn {
    w.folio_at(s, at).pfn()
}

// ------------------------------------------------------------ small pages

/// A small page moves to a new frame with its bytes; it stays writable,
/// exclusive, young and dirty, on the list it was on; the old frame goes
/// back; the entry the copy saw was one `Write` PTE migration entry.
fn small_page_moves_with_its_bytes<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 4, 1);
        let p = AREA + PAGE;
        let old = w.folio_at(0, p);
        let list = w.list_of(old);
        let before = w.leaf(0, p).1;
        let free = w.nr_free();
        let new = w.migrate(0, p).unwrap();
        assert_ne!(new.pfn(), old.pfn());
        assert_eq!(head(w, 0, p), new.pfn());
        assert_eq!(entries_at_copy(w, 0), vec![(p, Level::Pte, MigrationKind::Write, true, true)]);
        let after = w.leaf(0, p).1;
        assert_eq!((after.prot, after.dirty, after.young), (before.prot, before.dirty, before.young));
        assert!(new.page(0).test_flag(PageFlag::AnonExclusive));
        assert_eq!((new.refcount(), new.page_mapcount(0)), (1, 1));
        assert_eq!(w.list_of(new), list);
        assert_eq!(w.nr_free(), free, "one frame taken, one given back");
        assert_eq!(w.host.nr_migrations_done.get(), 1);
        for q in pages(AREA, 4) {
            w.expect_page(0, q, 1);
        }
        // Writable in place: no fault, no copy.
        let copies = w.frames.nr_copies();
        assert!(w.write_page(0, p, 2).is_empty());
        assert_eq!(w.frames.nr_copies(), copies);
        w.expect_page(0, p, 2);
        w.check();
    });
}

// ------------------------------------------------------------------ THPs

/// A PMD-mapped THP becomes one PMD migration entry and a PMD leaf of the
/// new folio again, every byte intact.
fn pmd_mapped_thp_stays_a_pmd_leaf<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let old = w.thp(0, AREA, 3);
        let new = w.migrate(0, AREA).unwrap();
        assert_ne!(new.pfn(), old.pfn());
        assert_eq!(entries_at_copy(w, 0), vec![(AREA, Level::Pmd, MigrationKind::Write, true, true)]);
        let (level, leaf) = w.leaf(0, AREA);
        assert_eq!((level, leaf.frame.pfn(), leaf.prot.writable), (Level::Pmd, new.pfn(), true));
        assert_eq!((new.entire_mapcount(), new.refcount(), new.order()), (1, 1, 9));
        assert!(new.page(0).test_flag(PageFlag::AnonExclusive));
        for p in pages(AREA, NR_HP) {
            w.expect_page(0, p, 3);
        }
        assert_eq!(w.leaf(0, AREA).0, Level::Pmd, "still one PMD leaf");
        w.check();
    });
}

/// A THP mapped by 512 PTEs: 512 PTE migration entries, then 512 PTEs of
/// the new folio's pages in order.
fn pte_mapped_thp_moves_page_by_page<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.thp(0, AREA, 4);
        mm::thp::split_huge_pmd(&w.sp(0).table, &w.mem, &w.tlb, w.memmap(), va(AREA)).unwrap();
        let new = w.migrate(0, AREA + 7 * PAGE).unwrap();
        let seen = entries_at_copy(w, 0);
        assert_eq!(seen.len(), NR_HP as usize);
        assert!(seen.iter().all(|e| e.1 == Level::Pte && e.2 == MigrationKind::Write));
        for (i, p) in pages(AREA, NR_HP).enumerate() {
            let (level, leaf) = w.leaf(0, p);
            assert_eq!((level, leaf.frame.pfn()), (Level::Pte, new.pfn().plus(i as u64)));
            assert!(new.page(i).test_flag(PageFlag::AnonExclusive));
            w.expect_page(0, p, 4);
        }
        assert_eq!((new.entire_mapcount(), new.refcount()), (0, NR_HP as i32));
        w.check();
    });
}

// ------------------------------------------------------------------ fork

/// A folio shared by fork (small and huge): `Read` entries in both
/// spaces, both restored read-only and not exclusive, mapped from the new
/// folio; copy on write still separates them afterwards.
fn forked_family_is_restored_everywhere<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 5);
        w.thp(0, AREA + HP, 6);
        let child = w.fork(0);
        for at in [AREA, AREA + HP] {
            let new = w.migrate(0, at).unwrap();
            for s in [0, child] {
                let seen = entries_at_copy(w, s);
                assert_eq!(seen.len(), 1, "space {s}");
                assert_eq!(seen[0].2, MigrationKind::Read, "space {s}: shared, so READ");
                let (_, leaf) = w.leaf(s, at);
                assert_eq!((leaf.frame.pfn(), leaf.prot.writable), (new.pfn(), false));
            }
            assert!(!new.page(0).test_flag(PageFlag::AnonExclusive));
            assert_eq!(new.refcount(), 2);
        }
        w.check();
        w.expect_page(child, AREA, 5);
        w.expect_page(child, AREA + HP + 9 * PAGE, 6);
        w.write_page(child, AREA, 7);
        w.write_page(0, AREA + HP, 8);
        w.expect_page(0, AREA, 5);
        w.expect_page(child, AREA, 7);
        w.expect_page(child, AREA + HP, 6);
        w.expect_page(0, AREA + HP, 8);
        w.check();
    });
}

// ------------------------------------------------------------ swap cache

/// A THP in the swap cache (swapped out from a fork family, read back by
/// one member, so its slots stay held by the other's entries): after the
/// migration every one of its 512 slots names the new folio, which has
/// the entry; the other member swaps its pages in from it, bytes intact,
/// without a disk read.
fn swap_cache_thp_slots_name_the_new_folio<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.thp(0, AREA, 9);
        let child = w.fork(0);
        assert_eq!(w.swap_out(0, AREA), mm::reclaim::Shrunk::Freed(NR_HP as usize));
        w.expect_page(0, AREA, 9);
        let old = w.folio_at(0, AREA);
        assert!(old.is_large() && old.test_flag(PageFlag::SwapCache));
        let first = folio_entry(&old).unwrap();
        let reads = w.frames.nr_reads();
        let new = w.migrate(0, AREA).unwrap();
        assert!(new.test_flag(PageFlag::SwapCache));
        assert_eq!(folio_entry(&new), Some(first));
        for i in 0..NR_HP as usize {
            let (f, at) = lookup_get(w.area(), w.memmap(), nth_entry(first, i)).expect("cached");
            assert_eq!((f.pfn(), at), (new.pfn(), i), "slot {i}");
            w.frames.put(f);
        }
        for p in pages(AREA, NR_HP) {
            w.expect_page(child, p, 9);
            w.expect_page(0, p, 9);
        }
        assert_eq!(w.frames.nr_reads(), reads, "every page came from the cache");
        w.check();
    });
}

/// A small page in the swap cache, mapped by one member and held by the
/// other's swap entry, moves with its slot.
fn swap_cache_small_page_moves_with_its_slot<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 2);
        let child = w.fork(0);
        assert_eq!(w.swap_out(0, AREA), mm::reclaim::Shrunk::Freed(1));
        w.expect_page(child, AREA, 2);
        let old = w.folio_at(child, AREA);
        let first = folio_entry(&old).expect("still in the cache: space 0's entry holds the slot");
        let new = w.migrate(child, AREA).unwrap();
        let (f, _) = lookup_get(w.area(), w.memmap(), first).unwrap();
        assert_eq!(f.pfn(), new.pfn());
        w.frames.put(f);
        w.expect_page(0, AREA, 2);
        w.check();
    });
}

// ---------------------------------------------------------------- refused

/// A pinned folio is refused before anything changes; a folio with a
/// plain reference nobody accounts for is refused at the freeze and
/// restored exactly (the same entries, exclusive again).
fn pinned_or_referenced_folio_is_refused_and_left_intact<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 1);
        let thp = w.thp(0, AREA + HP, 2);
        for (at, hold) in [(AREA, Hold::Pin), (AREA + HP + PAGE, Hold::Pin), (AREA + PAGE, Hold::Get)] {
            let pa = w.hold(0, at, true, hold);
            let entries = w.entries();
            let f = w.folio_at(0, at);
            let state =
                (f.refcount(), f.total_mapcount(), f.page(0).flags() & PageFlag::AnonExclusive.mask());
            let got = w.migrate(0, at);
            match hold {
                Hold::Pin => assert_eq!(got.unwrap_err(), MigrateError::Unmap(UnmapError::Pinned)),
                Hold::Get => {
                    assert!(matches!(got.unwrap_err(), MigrateError::Referenced { expected: 1, .. }))
                }
            }
            assert_eq!(w.entries(), entries, "{at:#x}: every entry as before");
            assert_eq!(
                (f.refcount(), f.total_mapcount(), f.page(0).flags() & PageFlag::AnonExclusive.mask()),
                state
            );
            assert!(!f.is_locked());
            w.unhold(pa, hold);
        }
        // Called directly: a refusal leaves the source locked, as given.
        let pa = w.hold(0, AREA, true, Hold::Get);
        let f = w.folio_at(0, AREA);
        f.get();
        f.lock();
        let dst = w.frames.alloc_unpublished(0).unwrap();
        let got = mm::migrate::migrate_folio(&*w, f, dst);
        assert!(matches!(got, Err(MigrateError::Referenced { .. })));
        assert!(f.is_locked(), "the caller unlocks after a refusal");
        f.unlock();
        w.frames.put(f);
        w.unhold(pa, Hold::Get);
        assert_eq!(w.folio_at(0, AREA + HP), thp);
        w.expect_page(0, AREA, 1);
        w.expect_page(0, AREA + HP, 2);
        w.check();
    });
}

// ------------------------------------------------------------ the state

/// Write, anon-exclusive, young and dirty go through the entries: a
/// writable page gives `Write`, a read-only exclusive one `ReadExclusive`
/// (restored exclusive and read-only), an old clean one stays old and
/// clean.
fn write_exclusive_young_dirty_are_carried<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 3, 1);
        // Page 1 read-only (still exclusive); page 2 old and clean.
        w.mprotect(0, AREA + PAGE, PAGE, VmaProt::READ);
        let p2 = AREA + 2 * PAGE;
        let (_, leaf) = w.leaf(0, p2);
        let old_clean = mm::pgtable::Leaf { young: false, dirty: false, ..leaf };
        w.sp(0).table.update_leaf(&w.mem, va(p2), Level::Pte, old_clean).unwrap().flush(&w.tlb);
        let cases = [
            (AREA, MigrationKind::Write, true, true, true),
            (AREA + PAGE, MigrationKind::ReadExclusive, false, true, true),
            (p2, MigrationKind::Write, true, false, false),
        ];
        for (at, kind, writable, young, dirty) in cases {
            let new = w.migrate(0, at).unwrap();
            assert_eq!(entries_at_copy(w, 0), vec![(at, Level::Pte, kind, young, dirty)]);
            let (_, leaf) = w.leaf(0, at);
            assert_eq!((leaf.prot.writable, leaf.young, leaf.dirty), (writable, young, dirty), "{at:#x}");
            assert!(new.page(0).test_flag(PageFlag::AnonExclusive), "{at:#x}: exclusive unless READ");
        }
        let root = w.sp(0).table.root();
        assert!(w.tlb.translate(&w.mem, root, va(AREA + PAGE), HwAccess::USER_WRITE).is_err());
        w.expect_page(0, AREA + PAGE, 1);
        w.check();
    });
}

// ---------------------------------------------------------- split policy

/// A THP with no 2 MiB destination is split and its pages moved one by
/// one: 512 order-0 folios in new frames, every byte intact, listed.
fn thp_without_a_huge_destination_is_split_and_moved<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let old = w.thp(0, AREA, 5).pfn();
        let (done, err) = w.migrate_or_split(0, AREA, 0);
        assert_eq!(err, None);
        assert!(done.split);
        assert_eq!((done.nr_moved, done.nr_pages, done.nr_failed), (NR_HP as usize, NR_HP as usize, 0));
        for p in pages(AREA, NR_HP) {
            let f: Folio<'static> = w.folio_at(0, p);
            assert_eq!(f.order(), 0);
            assert_ne!(f.pfn(), old.plus((p - AREA) / PAGE), "{p:#x} moved");
            assert!(w.list_of(f).is_some());
            w.expect_page(0, p, 5);
        }
        w.check();
    });
}

/// With a destination of its order, the policy moves the folio whole and
/// counts it.
fn migrate_or_split_moves_whole_when_it_can<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 1, 1);
        let old = w.thp(0, AREA + HP, 2).pfn();
        let (done, err) = w.migrate_or_split(0, AREA, 9);
        assert_eq!((done.nr_moved, done.nr_pages, done.nr_failed, done.split, err), (1, 1, 0, false, None));
        let (done, err) = w.migrate_or_split(0, AREA + HP, 9);
        assert_eq!((done.nr_moved, done.nr_pages, done.nr_failed, done.split, err), (1, 512, 0, false, None));
        assert_ne!(w.folio_at(0, AREA + HP).pfn(), old);
        assert_eq!(w.leaf(0, AREA + HP).0, Level::Pmd);
        w.expect_page(0, AREA, 1);
        w.expect_page(0, AREA + HP + 3 * PAGE, 2);
        w.check();
    });
}

/// Seed 000's path: a THP in the swap cache is migrated whole, then
/// migrated again with no 2 MiB destination, so it is split in the cache
/// and its pages moved one by one. Returns the pages whose piece does not
/// name its own slot (`first + i`) afterwards, after checking the rest of
/// the path when there are none: every slot names its piece, a piece
/// nobody needs any more is freed with its slot, and the rest swap back
/// in with their bytes.
fn migrate_then_split_a_swap_cache_thp<F: HardwareWalker>(w: &mut World<F>) -> Vec<usize> {
    w.thp(0, AREA, 9);
    let child = w.fork(0);
    assert_eq!(w.swap_out(0, AREA), mm::reclaim::Shrunk::Freed(NR_HP as usize));
    w.expect_page(0, AREA, 9);
    let first = folio_entry(&w.folio_at(0, AREA)).expect("in the swap cache");
    w.migrate(0, AREA).unwrap();
    let (done, err) = w.migrate_or_split(0, AREA, 0);
    assert!(done.split);
    let wrong: Vec<usize> = (0..NR_HP as usize)
        .filter(|&i| {
            let f = w.folio_at(0, AREA + i as u64 * PAGE);
            folio_entry(&f) != Some(nth_entry(first, i)) || !f.test_flag(PageFlag::SwapCache)
        })
        .collect();
    if !wrong.is_empty() {
        return wrong;
    }
    assert_eq!(err, None);
    assert_eq!((done.nr_moved, done.nr_failed), (NR_HP as usize, 0));
    for i in 0..NR_HP as usize {
        let piece = w.folio_at(0, AREA + i as u64 * PAGE);
        assert_eq!(piece.order(), 0);
        let (f, at) = lookup_get(w.area(), w.memmap(), nth_entry(first, i)).expect("cached");
        assert_eq!((f.pfn(), at), (piece.pfn(), 0), "slot {i} names its piece");
        w.frames.put(f);
    }
    w.check();
    // Page 5 is needed by nobody once both spaces unmap it: freed, its
    // slot too, and no other slot with it.
    w.munmap(0, AREA + 5 * PAGE, PAGE);
    w.munmap(child, AREA + 5 * PAGE, PAGE);
    assert!(!w.area().has_cache(nth_entry(first, 5)));
    assert_eq!(w.area().count(nth_entry(first, 5)), 0);
    for i in [4, 6] {
        assert!(w.area().has_cache(nth_entry(first, i)), "slot {i} kept");
    }
    let reads = w.frames.nr_reads();
    for p in pages(AREA, NR_HP).filter(|&p| p != AREA + 5 * PAGE) {
        w.expect_page(child, p, 9);
        w.expect_page(0, p, 9);
    }
    assert_eq!(w.frames.nr_reads(), reads, "from the cache");
    w.check();
    wrong
}

/// Seed 000 with the correct design: every piece names its own slot.
fn swap_cache_thp_migrated_then_split_keeps_every_tail_entry<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        assert_eq!(migrate_then_split_a_swap_cache_thp(w), Vec::<usize>::new());
    });
}

/// The replay `swapcache-tail-entries` (seed 000): with per-page records
/// and a migration that carries the head's only, the tails of the split
/// folio name no slot of their own; the test above catches it. (The pieces
/// are then given back by hand: the mistake leaves them in the cache.)
fn replay_swapcache_tail_entries_is_caught<F: HardwareWalker>() {
    let _on = mm::testkit::bug_switch::BugOn::new(mm::bugs::Bug::SwapcacheTailEntries);
    let mut w = world::<F>();
    let wrong = migrate_then_split_a_swap_cache_thp(&mut w);
    assert_eq!(wrong, (1..NR_HP as usize).collect::<Vec<_>>(), "every tail, and only the tails, is wrong");
    // The world cannot be finished: the mistake leaks the tails in the
    // cache (their entries are lost), as the kernel would.
    std::mem::forget(w);
}

// ------------------------------------------------------------ the lists

/// `World` as the kernel's side of migration, with `hook` run once at the
/// start of step 3 (the first time migration takes the family's locks),
/// between its step 2 and the freeze.
struct Hooked<'a, F: HardwareWalker> {
    w: &'a World<F>,
    hook: RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl<F: HardwareWalker> MigrateHost for Hooked<'_, F> {
    type Format = F;
    type Mem = SimMemory;
    type Tlb = SoftTlb<F>;

    fn memmap(&self) -> &'static Memmap {
        self.w.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        MigrateHost::lru(self.w)
    }
    fn with_family_locked<R>(
        &self,
        folio: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<F>], &SimMemory, &SoftTlb<F>) -> R,
    ) -> R {
        if let Some(hook) = self.hook.borrow_mut().take() {
            hook();
        }
        self.w.with_family_locked(folio, f)
    }
    fn with_swap_area<R>(&self, ty: SwapType, f: impl FnOnce(&SwapArea) -> R) -> Option<R> {
        self.w.with_swap_area(ty, f)
    }
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize) {
        MigrateHost::copy_frames(self.w, dst, src, nr)
    }
    fn free(&self, folio: Folio<'static>) {
        MigrateHost::free(self.w, folio)
    }
    fn migration_done(&self, old: Pfn) {
        self.w.migration_done(old)
    }
}

/// Reclaim had isolated the page (off the lists, with a reference) when
/// the migration took it off the lists (step 2), then found it locked and
/// put it back, and dropped its reference, before the freeze: the new
/// page must end on that list and the old one on none (the in-guest
/// `MADV_PAGEOUT` race found the new page on no list).
fn a_page_reclaim_puts_back_during_its_migration_keeps_its_list<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        w.small_pages(0, AREA, 2, 1);
        let f = w.folio_at(0, AREA);
        let list = w.list_of(f).expect("a mapped page is on a list");
        let lru = MigrateHost::lru(&*w).expect("the world has lists");
        f.get(); // reclaim's isolation
        assert!(lru.remove(f));
        let reclaim_gives_up = move || {
            lru.putback(f, list);
            assert!(!f.put());
        };
        let host = Hooked { w: &*w, hook: RefCell::new(Some(Box::new(reclaim_gives_up))) };
        f.get();
        f.lock();
        let dst = w.frames.alloc_unpublished(0).unwrap();
        let new = mm::migrate::migrate_folio(&host, f, dst).unwrap_or_else(|e| panic!("refused: {e}"));
        assert!(!new.put(), "the mapping keeps it");
        assert_ne!(new, f);
        assert_eq!(w.list_of(new), Some(list), "the new page is on the list the old one was put back on");
        w.expect_page(0, AREA, 1);
        w.check();
    });
}

mm::for_both_formats!(
    swap_cache_thp_migrated_then_split_keeps_every_tail_entry,
    replay_swapcache_tail_entries_is_caught,
    migrate_or_split_moves_whole_when_it_can,
    small_page_moves_with_its_bytes,
    pmd_mapped_thp_stays_a_pmd_leaf,
    pte_mapped_thp_moves_page_by_page,
    forked_family_is_restored_everywhere,
    swap_cache_thp_slots_name_the_new_folio,
    swap_cache_small_page_moves_with_its_slot,
    pinned_or_referenced_folio_is_refused_and_left_intact,
    write_exclusive_young_dirty_are_carried,
    thp_without_a_huge_destination_is_split_and_moved,
    a_page_reclaim_puts_back_during_its_migration_keeps_its_list,
);
