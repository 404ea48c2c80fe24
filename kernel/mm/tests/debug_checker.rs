//! The consistency checker (`mm::debug`) over both real formats: address
//! spaces built by the real fault handler (`mm::fault::handle_fault`) with
//! anonymous folios from a real `FrameAllocator`, tables in `SimMemory`
//! (`mm::testkit`'s `World` with one space, over `SimFrames` whose memmap
//! ends in reserved frames).
//! A consistent space passes with the right statistics; each kind of
//! corruption (a count, an area, a frame, an entry) is reported by name.
//!
//! The rules of a whole world at a quiescent point (page-table frames,
//! swap counts no entry holds, the swap cache, exact refcounts, the LRU
//! lists, folio flags) are checked over a world with a swap area and LRU
//! lists ([`full`]): each broken by hand and reported, and put back.
//!
//! Frames for data come from the allocator's memmap at PFN 0x80000 and up
//! (physical 0x8000_0000); table frames from `SimMemory` at 0x4000_0000, so
//! the two never overlap.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::anon::anon_handle;
use mm::debug::{ConsistencyError, FrameProblem, MigrationProblem, Stats};
use mm::fault::{Access, FaultOutcome};
use mm::frame::AllocKind;
use mm::gup::Hold;
use mm::page::PageFlag;
use mm::pgtable::format::MigrationKind;
use mm::pgtable::sim::HardwareWalker;
use mm::pgtable::SwapType;
use mm::pgtable::TableMemory;
use mm::pgtable::{Decoded, Leaf, Level, MigrationEntry, NonPresent, PageSize, Prot, SwapEntry};
use mm::reclaim::{Kept, Shrunk};
use mm::swap::cache::folio_entry;
use mm::testkit::frames::SimFrames;
use mm::testkit::mmu::{page, USER_RW};
use mm::testkit::world::{World, AREA, MEMMAP_BASE};
use mm::vma::VmaProt;
use mm::Pfn;
use mm::PhysAddr;
use mm::VirtAddr;

/// Descriptors in the memmap; the last `RESERVED` are never managed.
const MEMMAP_LEN: usize = 4096;
const RESERVED: u64 = 16;
const RW: VmaProt = VmaProt::READ_WRITE;

/// One address space over a memmap with a reserved tail; data frames from
/// PFN 0x80000 (physical 0x8000_0000), tables from 0x4000_0000.
fn space<F: HardwareWalker>() -> World<F> {
    World::with_frames(SimFrames::with_reserved_tail(MEMMAP_BASE, MEMMAP_LEN, RESERVED))
}

/// The checker over the one space.
fn check<F: HardwareWalker>(s: &World<F>) -> Result<Stats, ConsistencyError> {
    s.try_check().map(|stats| stats[0])
}

/// A not-mapped fault at `addr`, which must be resolved.
fn fault<F: HardwareWalker>(s: &World<F>, addr: u64, access: Access) {
    assert_eq!(s.fault(0, addr, access), FaultOutcome::Resolved, "fault at {addr:#x}");
}

fn pages(n: u64) -> Stats {
    Stats { nr_pages_mapped: n, nr_folios: n, nr_pte_leaves: n, ..Stats::default() }
}

/// A space with 8 pages faulted in (writes and reads) in a 16-page area.
fn faulted<F: HardwareWalker>() -> World<F> {
    let mut s = space::<F>();
    s.mmap(0, AREA, 16 * 4096, RW);
    for p in 0..8 {
        let access = if p % 2 == 0 { Access::Write } else { Access::Read };
        fault(&s, AREA + p * 4096 + 0x10, access);
    }
    s
}

fn demand_faults_make_consistent_anon_folios<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    assert_eq!(check(&s), Ok(pages(8)));
    let handle = anon_handle(s.sp(0).table.root());
    for p in 0..8 {
        let va = AREA + p * 4096;
        let f = s.folio_at(0, va);
        assert_eq!((f.order(), f.page_mapcount(0), f.refcount(), f.entire_mapcount()), (0, 1, 1, 0));
        assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert_eq!((f.anon_handle(), f.index()), (Some(handle), va >> 12));
    }
    assert_eq!(s.nr_free(), s.nr_free_at_start() - 8, "one frame per folio");
    // A partial munmap splits the area and frees the folios at once.
    let free = s.nr_free();
    s.munmap(0, AREA + 2 * 4096, 3 * 4096);
    assert_eq!(s.nr_free(), free + 3);
    assert_eq!(s.sp(0).vmas.len(), 2);
    assert_eq!(check(&s), Ok(pages(5)));
    s.finish();
}

fn a_corrupted_page_mapcount_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(0, AREA + 3 * 4096);
    f.add_page_mapcount(0, 1);
    assert_eq!(
        check(&s),
        Err(ConsistencyError::PageMapcount { folio: f.pfn(), pfn: f.pfn(), nr_ptes: 1, mapcount: 2 })
    );
    let msg = check(&s).unwrap_err().to_string();
    assert!(msg.contains("mapped by 1 PTEs, mapcount 2"), "{msg}");
    f.add_page_mapcount(0, -1);
    assert_eq!(check(&s), Ok(pages(8)));
    s.finish();
}

fn a_corrupted_entire_mapcount_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(0, AREA);
    f.add_entire_mapcount(1);
    assert_eq!(
        check(&s),
        Err(ConsistencyError::EntireMapcount { folio: f.pfn(), nr_pmds: 0, entire_mapcount: 1 })
    );
    f.add_entire_mapcount(-1);
    assert_eq!(check(&s), Ok(pages(8)));
    s.finish();
}

fn a_refcount_below_the_mappings_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    // Map the folio of page 0 a second time (not anon, so its index does
    // not tie it to one address), counting the mapping but not its reference.
    let f = s.folio_at(0, AREA);
    f.clear_flag(PageFlag::SwapBacked);
    let leaf = page(f.pfn().phys().as_u64(), USER_RW, false, true);
    s.sp(0).table.map(&s.mem, VirtAddr::new(AREA + 12 * 4096), leaf).unwrap().ignore();
    f.add_page_mapcount(0, 1);
    assert_eq!(
        check(&s),
        Err(ConsistencyError::RefcountBelowMapcount { folio: f.pfn(), refcount: 1, total_mapcount: 2 })
    );
    f.get();
    assert_eq!(check(&s), Ok(Stats { nr_folios: 8, ..pages(9) }));
    // Undo the second mapping: entry, mapcount, reference.
    s.sp(0).table.unmap(&s.mem, VirtAddr::new(AREA + 12 * 4096), PageSize::Size4K).unwrap().1.flush(&s.tlb);
    f.add_page_mapcount(0, -1);
    assert!(!f.put());
    f.set_flag(PageFlag::SwapBacked);
    assert_eq!(check(&s), Ok(pages(8)));
    s.finish();
}

fn leaves_outside_their_area_or_beyond_its_rights_are_reported<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    // The area is cut without the table: the page is left behind.
    let ranges = s.sp_mut(0).vmas.unmap(VirtAddr::new(AREA + 4096), 4096).unwrap();
    assert_eq!(ranges.len(), 1);
    assert_eq!(
        check(&s),
        Err(ConsistencyError::OutsideArea { va: VirtAddr::new(AREA + 4096), level: Level::Pte })
    );
    s.mmap(0, AREA + 4096, 4096, RW);
    assert_eq!(check(&s), Ok(pages(8)));
    // The area becomes read-only without the table following.
    s.sp_mut(0).vmas.protect(VirtAddr::new(AREA), 16 * 4096, VmaProt::READ).unwrap();
    assert_eq!(
        check(&s),
        Err(ConsistencyError::ProtExceedsArea {
            va: VirtAddr::new(AREA),
            level: Level::Pte,
            prot: USER_RW,
            area: VmaProt::READ,
        })
    );
    s.sp(0)
        .table
        .protect(
            &s.mem,
            VirtAddr::new(AREA),
            VirtAddr::new(AREA + 16 * 4096),
            Prot { writable: false, ..USER_RW },
        )
        .unwrap()
        .flush(&s.tlb);
    assert_eq!(check(&s), Ok(pages(8)));
    // PROT_NONE maps nothing at all.
    s.sp_mut(0).vmas.protect(VirtAddr::new(AREA), 16 * 4096, VmaProt::NONE).unwrap();
    assert!(matches!(check(&s), Err(ConsistencyError::ProtExceedsArea { area: VmaProt::NONE, .. })));
    s.finish();
}

fn frames_that_are_not_folio_pages_are_reported<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    let fa = s.frames.fa();
    let raw = fa.alloc(0, AllocKind::Normal).unwrap();
    // Some free frame: the allocator's next order-0 block, given back.
    let free = fa.alloc(0, AllocKind::Normal).unwrap();
    fa.free(free, 0);
    let reserved = Pfn::new(MEMMAP_BASE + MEMMAP_LEN as u64 - 1);
    let outside = Pfn::new(MEMMAP_BASE + MEMMAP_LEN as u64 + 0x100);
    let va = AREA + 10 * 4096;
    for (pfn, why) in [
        (raw, FrameProblem::NotFolio),
        (free, FrameProblem::Free { block: free }),
        (reserved, FrameProblem::Reserved),
        (outside, FrameProblem::OutsideMemmap),
    ] {
        let leaf = page(pfn.phys().as_u64(), USER_RW, false, true);
        s.sp(0).table.map(&s.mem, VirtAddr::new(va), leaf).unwrap().ignore();
        match (check(&s), why) {
            // The free frame merged with its buddies: the block starts at or below it.
            (
                Err(ConsistencyError::NotFolioPage { va: v, pfn: p, why: FrameProblem::Free { block } }),
                FrameProblem::Free { .. },
            ) => {
                assert_eq!((v, p), (VirtAddr::new(va), pfn));
                assert!(block <= pfn, "free block {block:#x} does not contain {pfn:#x}");
            }
            (got, _) => {
                assert_eq!(got, Err(ConsistencyError::NotFolioPage { va: VirtAddr::new(va), pfn, why }))
            }
        }
        s.sp(0).table.unmap(&s.mem, VirtAddr::new(va), PageSize::Size4K).unwrap().1.flush(&s.tlb);
    }
    assert_eq!(check(&s), Ok(pages(8)));
    fa.free(raw, 0);
    s.munmap(0, AREA, 16 * 4096);
    s.finish();
}

fn a_wrong_anon_mapping_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(0, AREA + 5 * 4096);
    let handle = anon_handle(s.sp(0).table.root());
    f.lock();
    f.set_mapping(mm::folio::FolioMapping::Anon(handle), f.index() + 1);
    f.unlock();
    assert_eq!(
        check(&s),
        Err(ConsistencyError::WrongMapping {
            va: VirtAddr::new(AREA + 5 * 4096),
            folio: f.pfn(),
            mapping: mm::folio::FolioMapping::Anon(handle),
            index: (AREA >> 12) + 6,
            expected_mapping: handle,
            expected_index: (AREA >> 12) + 5,
        })
    );
    f.lock();
    f.set_mapping(mm::folio::FolioMapping::Anon(handle), (AREA >> 12) + 5);
    f.unlock();
    assert_eq!(check(&s), Ok(pages(8)));
    s.finish();
}

fn swap_and_migration_entries_are_counted_and_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let swap = NonPresent::Swap { entry: SwapEntry::new(SwapType::nth(1), 7).unwrap(), exclusive: true };
    s.sp(0)
        .table
        .set_nonpresent(&s.mem, VirtAddr::new(AREA + 12 * 4096), Level::Pte, swap)
        .unwrap()
        .1
        .flush(&s.tlb);
    let m = MigrationEntry::new(MigrationKind::Read, Pfn::new(0x1234), false, false).unwrap();
    let mig = NonPresent::Migration(m);
    s.sp(0)
        .table
        .set_nonpresent(&s.mem, VirtAddr::new(AREA + 10 * 4096), Level::Pte, mig)
        .unwrap()
        .1
        .flush(&s.tlb);
    s.sp(0)
        .table
        .set_nonpresent(&s.mem, VirtAddr::new(AREA + 11 * 4096), Level::Pte, swap)
        .unwrap()
        .1
        .flush(&s.tlb);
    // The migration entry names a frame outside the memmap.
    assert_eq!(
        check(&s),
        Err(ConsistencyError::BadMigrationEntry {
            va: VirtAddr::new(AREA + 10 * 4096),
            level: Level::Pte,
            pfn: Pfn::new(0x1234),
            why: MigrationProblem::NotFolioPage(FrameProblem::OutsideMemmap)
        })
    );
    s.sp(0).table.clear(&s.mem, VirtAddr::new(AREA + 10 * 4096), Level::Pte).unwrap().1.flush(&s.tlb);
    // No swap area is known.
    assert_eq!(
        check(&s),
        Err(ConsistencyError::NonPresentEntries { nr_swap: 2, first: VirtAddr::new(AREA + 11 * 4096) })
    );
    for p in 11..13 {
        s.sp(0).table.clear(&s.mem, VirtAddr::new(AREA + p * 4096), Level::Pte).unwrap().1.flush(&s.tlb);
    }
    assert_eq!(check(&s), Ok(pages(8)));
    s.finish();
}

fn pmd_leaves_count_in_the_entire_mapcount<F: HardwareWalker>() {
    let mut s = space::<F>();
    let base = AREA + 0x20_0000;
    s.mmap(0, base, 0x20_0000, RW);
    let handle = anon_handle(s.sp(0).table.root());
    let mut u = s.frames.fa().alloc_folio(9, AllocKind::Normal).unwrap();
    u.nonatomic_set_flag(PageFlag::SwapBacked);
    u.nonatomic_set_flag(PageFlag::AnonExclusive); // mapped writable: exclusive
    u.set_mapping(mm::folio::FolioMapping::Anon(handle), base >> 12);
    let f = u.publish();
    let huge =
        |frame: Pfn| Leaf { size: PageSize::Size2M, ..page(frame.phys().as_u64(), USER_RW, true, true) };
    s.sp(0).table.map(&s.mem, VirtAddr::new(base), huge(f.pfn())).unwrap().ignore();
    // Mapped by a PMD but not counted.
    assert_eq!(
        check(&s),
        Err(ConsistencyError::EntireMapcount { folio: f.pfn(), nr_pmds: 1, entire_mapcount: 0 })
    );
    f.add_entire_mapcount(1);
    assert_eq!(
        check(&s),
        Ok(Stats { nr_pages_mapped: 512, nr_folios: 1, nr_pmd_leaves: 1, ..Stats::default() })
    );
    // One of its pages also mapped by a PTE (elsewhere, in another area):
    // counted on that page's own mapcount, next to the PMD mapping.
    s.mmap(0, base + 0x20_0000, 0x20_0000, RW);
    f.clear_flag(PageFlag::SwapBacked); // its index ties it to `base` only
    let tail = page(f.pfn().plus(5).phys().as_u64(), USER_RW, false, true);
    s.sp(0).table.map(&s.mem, VirtAddr::new(base + 0x20_0000 + 5 * 4096), tail).unwrap().ignore();
    assert!(
        matches!(check(&s), Err(ConsistencyError::PageMapcount { pfn, nr_ptes: 1, mapcount: 0, .. }) if pfn == f.pfn().plus(5))
    );
    f.add_page_mapcount(5, 1);
    f.get();
    assert_eq!(
        check(&s),
        Ok(Stats {
            nr_pages_mapped: 513,
            nr_folios: 1,
            nr_pte_leaves: 1,
            nr_pmd_leaves: 1,
            ..Stats::default()
        })
    );
    // Undo by hand and free.
    s.sp(0)
        .table
        .unmap(&s.mem, VirtAddr::new(base + 0x20_0000 + 5 * 4096), PageSize::Size4K)
        .unwrap()
        .1
        .flush(&s.tlb);
    s.sp(0).table.unmap(&s.mem, VirtAddr::new(base), PageSize::Size2M).unwrap().1.flush(&s.tlb);
    f.add_page_mapcount(5, -1);
    f.add_entire_mapcount(-1);
    f.set_flag(PageFlag::SwapBacked);
    assert!(!f.put());
    assert!(f.put());
    s.frames.fa().free_folio(f);
    s.finish();
}

fn a_huge_leaf_that_is_not_one_folio_is_reported<F: HardwareWalker>() {
    let mut s = space::<F>();
    let base = AREA + 0x20_0000;
    s.mmap(0, base, 0x20_0000, RW);
    // An order-10 folio (4 MiB): its head is 2 MiB-aligned but the folio is
    // larger than the leaf.
    let f = s.frames.fa().alloc_folio(10, AllocKind::Normal).unwrap().publish();
    let leaf = Leaf { size: PageSize::Size2M, ..page(f.pfn().phys().as_u64(), USER_RW, true, true) };
    s.sp(0).table.map(&s.mem, VirtAddr::new(base), leaf).unwrap().ignore();
    assert_eq!(
        check(&s),
        Err(ConsistencyError::HugeLeafNotFolio {
            va: VirtAddr::new(base),
            level: Level::Pmd,
            pfn: f.pfn(),
            order: 10
        })
    );
    s.sp(0).table.unmap(&s.mem, VirtAddr::new(base), PageSize::Size2M).unwrap().1.flush(&s.tlb);
    assert!(f.put());
    s.frames.fa().free_folio(f);
    s.finish();
}

// ---- a whole world at a quiescent point

/// The swap area of [`full`].
const TY: SwapType = SwapType::nth(2);

/// A world with a swap area and LRU lists; space 0 has 8 pages faulted in
/// (written) in a 16-page area, page 6 and 7 swapped out.
fn full<F: HardwareWalker>() -> World<F> {
    let frames = SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_swap(TY.raw(), 1024).with_lru();
    let mut w = World::with_frames(frames);
    w.mmap(0, AREA, 16 * 4096, RW);
    for p in 0..8 {
        fault(&w, AREA + p * 4096, Access::Write);
    }
    for p in [6, 7] {
        assert_eq!(w.swap_out(0, AREA + p * 4096), Shrunk::Freed(1));
    }
    w
}

fn full_stats() -> Stats {
    Stats { nr_swap_entries: 2, ..pages(6) }
}

/// The slot page `p` of [`full`]'s space 0 is swapped to.
fn slot<F: HardwareWalker>(w: &World<F>, p: u64) -> SwapEntry {
    w.swap_pte(0, AREA + p * 4096).expect("a swap entry").0
}

/// The slot (PA) of the entry at `level` that maps `va` in space 0, and
/// its raw value.
fn entry_slot<F: HardwareWalker>(w: &World<F>, va: u64, level: Level) -> (PhysAddr, u64) {
    let mut table = w.sp(0).table.root();
    for l in Level::TOP_DOWN {
        let slot = PhysAddr::new(table.as_u64() + 8 * l.index(va) as u64);
        let raw = w.mem.read_entry(slot);
        if l == level {
            return (slot, raw);
        }
        match F::decode(raw, l) {
            Decoded::Table(next) => table = next,
            other => panic!("{va:#x}: no table at {l:?} but {other:?}"),
        }
    }
    unreachable!()
}

fn clean_worlds_pass_every_rule<F: HardwareWalker>() {
    let mut w = full::<F>();
    assert_eq!(check(&w), Ok(full_stats()));
    // A fork shares pages and slots; a GUP get and a pin are counted holds.
    let c = w.fork(0);
    let got = w.hold(0, AREA, false, Hold::Get);
    let pinned = w.hold(c, AREA + 4096, true, Hold::Pin);
    let stats = w.check();
    assert_eq!((stats[0].nr_swap_entries, stats[c].nr_swap_entries), (2, 2));
    w.unhold(got, Hold::Get);
    w.unhold(pinned, Hold::Pin);
    // A folio kept in the swap cache, unmapped (an extra reference made
    // its freeze fail), with the test's reference declared.
    let f = w.folio_at(0, AREA + 2 * 4096);
    f.get();
    w.declare_refs(f.pfn(), 1);
    assert_eq!(w.swap_out(0, AREA + 2 * 4096), Shrunk::Kept(Kept::InUse));
    assert!(f.test_flag(PageFlag::SwapCache) && f.total_mapcount() == 0);
    w.check();
    w.declare_refs(f.pfn(), -1);
    assert!(!w.frames.put(f));
    w.reclaim_cache();
    w.check();
    w.finish();
}

fn a_swap_count_no_entry_explains_is_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let area = w.area();
    // A count too high: one entry holds the slot, the area counts two.
    let e = slot(&w, 6);
    assert_eq!(area.dup(e), Ok(2));
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCount { ty: TY, offset: e.offset(), entries: 1, count: 2 })
    );
    assert_eq!(area.free_ref(e), Ok(1));
    assert_eq!(check(&w), Ok(full_stats()));
    // Too low: a second entry holds the slot, which counts one.
    let copy = VirtAddr::new(AREA + 12 * 4096);
    let swap = NonPresent::Swap { entry: e, exclusive: false };
    w.sp(0).table.set_nonpresent(&w.mem, copy, Level::Pte, swap).unwrap().1.flush(&w.tlb);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCount { ty: TY, offset: e.offset(), entries: 2, count: 1 })
    );
    w.sp(0).table.clear(&w.mem, copy, Level::Pte).unwrap().1.flush(&w.tlb);
    assert_eq!(check(&w), Ok(full_stats()));
    // A slot no entry holds at all, with a count: a leaked slot.
    let leaked = area.alloc(0).unwrap();
    area.dup(leaked).unwrap();
    area.release_cache(leaked, 1).unwrap();
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCount { ty: TY, offset: leaked.offset(), entries: 0, count: 1 })
    );
    area.free_ref(leaked).unwrap();
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

fn swap_cache_disagreements_are_reported<F: HardwareWalker>() {
    let mut w = full::<F>();
    let area = w.area();
    // A claim nobody finished: HAS_CACHE and no folio.
    let claimed = slot(&w, 7);
    area.claim_cache(claimed, 1).unwrap();
    assert_eq!(check(&w), Err(ConsistencyError::OrphanHasCache { ty: TY, offset: claimed.offset() }));
    assert_eq!(w.try_check_in(false).map(|s| s[0]), Ok(full_stats()), "a claim in flight is no error");
    area.release_cache(claimed, 1).unwrap();
    // A mapped folio (read-only: a writable one breaks an earlier rule)
    // that says it is in the cache but is not.
    w.mprotect(0, AREA + 3 * 4096, 4096, VmaProt::READ);
    let mapped = w.folio_at(0, AREA + 3 * 4096);
    mapped.set_flag(PageFlag::SwapCache);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::NotInSwapCache { folio: mapped.pfn(), entry: None, cached: None })
    );
    mapped.clear_flag(PageFlag::SwapCache);
    // A cache folio (kept unmapped) that lost its flag.
    let f = w.folio_at(0, AREA + 2 * 4096);
    f.get();
    w.declare_refs(f.pfn(), 1);
    assert_eq!(w.swap_out(0, AREA + 2 * 4096), Shrunk::Kept(Kept::InUse));
    let e = folio_entry(&f).unwrap();
    let stats = Stats { nr_swap_entries: 3, ..pages(5) };
    assert_eq!(check(&w), Ok(stats));
    f.clear_flag(PageFlag::SwapCache);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCacheMismatch { ty: TY, offset: e.offset(), pfn: f.pfn(), index: 0 })
    );
    f.set_flag(PageFlag::SwapCache);
    // Its references: the cache's one, the test's one, no more.
    f.get();
    assert_eq!(
        check(&w),
        Err(ConsistencyError::Refcount {
            folio: f.pfn(),
            refcount: 3,
            mappings: 0,
            cache: 1,
            holds: Some(1)
        })
    );
    assert!(!f.put());
    assert_eq!(check(&w), Ok(stats));
    w.declare_refs(f.pfn(), -1);
    assert!(!w.frames.put(f));
    w.reclaim_cache();
    w.finish();
}

fn exact_refcounts_are_checked<F: HardwareWalker>() {
    let w = full::<F>();
    let f = w.folio_at(0, AREA + 4096);
    f.get();
    assert_eq!(
        check(&w),
        Err(ConsistencyError::Refcount {
            folio: f.pfn(),
            refcount: 2,
            mappings: 1,
            cache: 0,
            holds: Some(0)
        })
    );
    w.declare_refs(f.pfn(), 1);
    assert_eq!(check(&w), Ok(full_stats()));
    w.declare_refs(f.pfn(), -1);
    assert!(!f.put());
    // A pin through GUP is a known hold; one taken behind the checker's
    // back is not.
    let pa = w.hold(0, AREA, true, Hold::Pin);
    assert_eq!(check(&w), Ok(full_stats()));
    let g = w.folio_at(0, AREA);
    g.pin();
    assert!(matches!(check(&w), Err(ConsistencyError::Refcount { refcount: 2049, mappings: 1, .. })));
    assert!(!g.unpin());
    w.unhold(pa, Hold::Pin);
    w.finish();
}

fn locked_or_writeback_folios_at_rest_are_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let f = w.folio_at(0, AREA + 5 * 4096);
    f.lock();
    assert_eq!(check(&w), Err(ConsistencyError::FlagLeftSet { folio: f.pfn(), flag: PageFlag::Locked }));
    assert_eq!(w.try_check_in(false).map(|s| s[0]), Ok(full_stats()), "not at rest: no error");
    f.unlock();
    f.set_flag(PageFlag::Writeback);
    assert_eq!(check(&w), Err(ConsistencyError::FlagLeftSet { folio: f.pfn(), flag: PageFlag::Writeback }));
    f.clear_flag(PageFlag::Writeback);
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

fn a_mapped_anon_folio_off_the_lru_is_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let lru = w.lru();
    let f = w.folio_at(0, AREA + 4 * 4096);
    assert!(lru.remove(f));
    assert_eq!(check(&w), Err(ConsistencyError::NotOnLru { folio: f.pfn() }));
    lru.add(f);
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

fn a_folio_on_the_lru_twice_is_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let lru = w.lru();
    // Page 5 was faulted last of those still mapped: the inactive head.
    // Added again without its flag the lists hold it twice (its links
    // now loop: the world is not taken down).
    let f = w.folio_at(0, AREA + 5 * 4096);
    f.clear_flag(PageFlag::Lru);
    lru.add(f);
    assert!(
        matches!(check(&w), Err(ConsistencyError::OnLruTwice { folio, times }) if folio == f.pfn() && times > 1)
    );
    std::mem::forget(w);
}

fn page_table_frames_are_checked<F: HardwareWalker>() {
    let w = full::<F>();
    let root = w.sp(0).table.root();
    // A leaf mapping a table frame as data.
    let at = VirtAddr::new(AREA + 12 * 4096);
    w.sp(0).table.map(&w.mem, at, page(root.as_u64(), USER_RW, false, true)).unwrap().ignore();
    assert_eq!(
        check(&w),
        Err(ConsistencyError::TableMappedAsData { va: at, level: Level::Pte, table: root })
    );
    w.sp(0).table.unmap(&w.mem, at, PageSize::Size4K).unwrap().1.flush(&w.tlb);
    assert_eq!(check(&w), Ok(full_stats()));
    // The PTE table of the area reached from a second PMD entry.
    let (pmd, raw) = entry_slot(&w, AREA, Level::Pmd);
    let Decoded::Table(pte_table) = F::decode(raw, Level::Pmd) else { panic!("no PTE table") };
    let next = PhysAddr::new(pmd.as_u64() + 8);
    w.mem.write_entry(next, raw);
    assert_eq!(check(&w), Err(ConsistencyError::TableReachedTwice { table: pte_table }));
    // A table entry pointing at a free frame of the memmap, or at a folio page.
    let fa = w.frames.fa();
    let free = fa.alloc(0, AllocKind::Normal).unwrap();
    fa.free(free, 0);
    w.mem.write_entry(next, F::make_table(free.phys(), Level::Pmd));
    assert!(matches!(
        check(&w),
        Err(ConsistencyError::TableNotAllocated { table, why: FrameProblem::Free { .. } }) if table == free.phys()
    ));
    let folio = w.folio_at(0, AREA);
    w.mem.write_entry(next, F::make_table(folio.pfn().phys(), Level::Pmd));
    assert_eq!(
        check(&w),
        Err(ConsistencyError::TableIsFolioPage { table: folio.pfn().phys(), folio: folio.pfn() })
    );
    // An allocated raw frame, but not one handed out as a table.
    let raw = fa.alloc(0, AllocKind::Normal).unwrap();
    w.mem.write_entry(next, F::make_table(raw.phys(), Level::Pmd));
    assert_eq!(check(&w), Err(ConsistencyError::TableNotMarked { table: raw.phys() }));
    // Marked, it passes that rule; but the table memory did not hand it
    // out, so the spaces reach one table more than there are.
    let desc = w.memmap().get(raw).unwrap();
    desc.set_flag(PageFlag::PageTable);
    let n = *w.mem.live_tables.borrow();
    assert_eq!(check(&w), Err(ConsistencyError::TablesLeaked { allocated: n, reachable: n + 1 }));
    w.mem.write_entry(next, 0);
    desc.clear_flag(PageFlag::PageTable);
    fa.free(raw, 0);
    assert_eq!(check(&w), Ok(full_stats()));
    // A table frame handed out that no space reaches: leaked.
    let n = *w.mem.live_tables.borrow();
    let lost = w.mem.alloc_table().unwrap();
    assert_eq!(check(&w), Err(ConsistencyError::TablesLeaked { allocated: n + 1, reachable: n }));
    w.mem.free_table(lost);
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

fn a_shared_page_marked_exclusive_is_reported<F: HardwareWalker>() {
    let mut w = faulted::<F>();
    let c = w.fork(0);
    let f = w.folio_at(0, AREA + 2 * 4096);
    assert!(!f.test_flag(PageFlag::AnonExclusive), "fork shares the page");
    f.set_flag(PageFlag::AnonExclusive);
    assert_eq!(
        w.try_check().map(|_| ()),
        Err(ConsistencyError::SharedExclusive { folio: f.pfn(), pfn: f.pfn(), mappings: 2 })
    );
    f.clear_flag(PageFlag::AnonExclusive);
    w.check();
    w.exit(c);
    w.finish();
}

fn the_huge_zero_folio_mapped_by_a_pte_is_reported<F: HardwareWalker>() {
    let frames = SimFrames::with_reserved_tail(MEMMAP_BASE, MEMMAP_LEN, RESERVED).with_huge_zero();
    let mut w = World::<F>::with_frames(frames);
    w.mmap(0, AREA, 16 * 4096, RW);
    let zero = w.zero_folio();
    let at = VirtAddr::new(AREA + 3 * 4096);
    let ro = Prot { writable: false, ..USER_RW };
    w.sp(0).table.map(&w.mem, at, page(zero.pfn().phys().as_u64(), ro, false, true)).unwrap().ignore();
    assert_eq!(
        check(&w),
        Err(ConsistencyError::HugeZeroMisused { va: at, level: Level::Pte, writable: false })
    );
    w.sp(0).table.unmap(&w.mem, at, PageSize::Size4K).unwrap().1.flush(&w.tlb);
    assert_eq!(check(&w), Ok(Stats::default()));
    w.finish();
}

fn a_swap_entry_outside_every_area_is_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let e = slot(&w, 6);
    // The same slot moved to an address no area covers (the count follows).
    let outside = VirtAddr::new(AREA + 20 * 4096);
    let swap = NonPresent::Swap { entry: e, exclusive: true };
    w.sp(0).table.clear(&w.mem, VirtAddr::new(AREA + 6 * 4096), Level::Pte).unwrap().1.flush(&w.tlb);
    w.sp(0).table.set_nonpresent(&w.mem, outside, Level::Pte, swap).unwrap().1.flush(&w.tlb);
    assert_eq!(check(&w), Err(ConsistencyError::MisplacedSwapEntry { va: outside, level: Level::Pte }));
    w.sp(0).table.clear(&w.mem, outside, Level::Pte).unwrap().1.flush(&w.tlb);
    w.sp(0)
        .table
        .set_nonpresent(&w.mem, VirtAddr::new(AREA + 6 * 4096), Level::Pte, swap)
        .unwrap()
        .1
        .flush(&w.tlb);
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

fn a_writable_leaf_of_a_shared_or_cached_page_is_reported<F: HardwareWalker>() {
    let w = full::<F>();
    let at = AREA + 4096;
    let (level, leaf) = w.leaf(0, at);
    assert!(leaf.prot.writable, "a written page is mapped writable");
    let f = w.folio_at(0, at);
    // Not exclusive: a write would reach a page someone may share.
    f.clear_flag(PageFlag::AnonExclusive);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::WritableNotExclusive {
            va: VirtAddr::new(at),
            level,
            folio: f.pfn(),
            pfn: f.pfn()
        })
    );
    f.set_flag(PageFlag::AnonExclusive);
    // In the swap cache and clean, at rest: reclaim would trust the copy
    // on disk and drop what was written.
    assert!(!f.test_flag(PageFlag::Dirty));
    f.set_flag(PageFlag::SwapCache);
    assert_eq!(check(&w), Err(ConsistencyError::WritableSwapCache { va: VirtAddr::new(at), folio: f.pfn() }));
    // Dirty (a reuse of a kept copy marks it so): reclaim writes it again,
    // so this rule is met; the next one sees the flag is faked (no slot).
    f.set_flag(PageFlag::Dirty);
    assert!(matches!(check(&w), Err(ConsistencyError::NotInSwapCache { .. })), "{:?}", check(&w));
    f.clear_flag(PageFlag::Dirty);
    f.clear_flag(PageFlag::SwapCache);
    assert_eq!(check(&w), Ok(full_stats()));
    w.finish();
}

/// A world of 96 written pages in a 128-page area, 60 of them swapped out,
/// and a fork: spread over many windows of 32 frames and 32 slots.
fn windowed<F: HardwareWalker>() -> World<F> {
    let frames = SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_swap(TY.raw(), 1024).with_lru();
    let mut w = World::with_frames(frames);
    w.mmap(0, AREA, 128 * 4096, RW);
    for p in 0..96 {
        fault(&w, AREA + p * 4096, Access::Write);
    }
    for p in 20..80 {
        assert_eq!(w.swap_out(0, AREA + p * 4096), Shrunk::Freed(1));
    }
    w.fork(0);
    w.check_window = 32;
    w
}

fn windows_check_every_rule_as_one_pass_does<F: HardwareWalker>() {
    let mut w = windowed::<F>();
    let windowed_stats = w.try_check();
    w.check_window = 0;
    assert_eq!(w.try_check(), windowed_stats);
    w.check_window = 32;
    let stats = windowed_stats.unwrap();
    assert_eq!((stats[0].nr_folios, stats[0].nr_swap_entries, stats[1].nr_swap_entries), (36, 60, 60));
    // The mapped page with the highest frame and the slot with the highest
    // offset are far past the first window: breaking them is still seen.
    let last = (0..96).filter(|p| !(20..80).contains(p)).map(|p| w.folio_at(0, AREA + p * 4096));
    let f = last.max_by_key(|f| f.pfn()).unwrap();
    assert!(f.pfn().as_u64() - MEMMAP_BASE >= 2 * 32, "frame {:#x} in a late window", f.pfn());
    f.add_page_mapcount(0, 1);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::PageMapcount { folio: f.pfn(), pfn: f.pfn(), nr_ptes: 2, mapcount: 3 })
    );
    f.add_page_mapcount(0, -1);
    let e = (20..80).map(|p| slot(&w, p)).max_by_key(|e| e.offset()).unwrap();
    assert!(e.offset() >= 32, "slot {:#x} in a late window", e.offset());
    let area = w.area();
    assert_eq!(area.dup(e), Ok(3));
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCount { ty: TY, offset: e.offset(), entries: 2, count: 3 })
    );
    assert_eq!(area.free_ref(e), Ok(2));
    // A leaked slot after every held one.
    let leaked = area.alloc(0).unwrap();
    area.dup(leaked).unwrap();
    area.release_cache(leaked, 1).unwrap();
    assert!(leaked.offset() > e.offset());
    assert_eq!(
        check(&w),
        Err(ConsistencyError::SwapCount { ty: TY, offset: leaked.offset(), entries: 0, count: 1 })
    );
    area.free_ref(leaked).unwrap();
    // An unmapped swap-cache folio with a reference nobody declared.
    let g = w.folio_at(1, AREA + 95 * 4096);
    let h = w.folio_at(0, AREA + 95 * 4096);
    assert_eq!(g.pfn(), h.pfn());
    g.get();
    w.declare_refs(g.pfn(), 1);
    assert_eq!(w.swap_out(0, AREA + 95 * 4096), Shrunk::Kept(Kept::InUse));
    assert!(g.test_flag(PageFlag::SwapCache) && g.total_mapcount() == 0, "kept in the cache, unmapped");
    w.check();
    w.declare_refs(g.pfn(), -1);
    assert_eq!(
        check(&w),
        Err(ConsistencyError::Refcount {
            folio: g.pfn(),
            refcount: 2,
            mappings: 0,
            cache: 1,
            holds: Some(0)
        })
    );
    assert!(!w.frames.put(g));
    w.reclaim_cache();
    w.check();
    w.finish();
}

mm::for_both_formats!(
    demand_faults_make_consistent_anon_folios,
    a_corrupted_page_mapcount_is_reported,
    a_corrupted_entire_mapcount_is_reported,
    a_refcount_below_the_mappings_is_reported,
    leaves_outside_their_area_or_beyond_its_rights_are_reported,
    frames_that_are_not_folio_pages_are_reported,
    a_wrong_anon_mapping_is_reported,
    swap_and_migration_entries_are_counted_and_reported,
    pmd_leaves_count_in_the_entire_mapcount,
    a_huge_leaf_that_is_not_one_folio_is_reported,
    clean_worlds_pass_every_rule,
    a_swap_count_no_entry_explains_is_reported,
    swap_cache_disagreements_are_reported,
    exact_refcounts_are_checked,
    locked_or_writeback_folios_at_rest_are_reported,
    a_mapped_anon_folio_off_the_lru_is_reported,
    a_folio_on_the_lru_twice_is_reported,
    page_table_frames_are_checked,
    a_shared_page_marked_exclusive_is_reported,
    the_huge_zero_folio_mapped_by_a_pte_is_reported,
    a_swap_entry_outside_every_area_is_reported,
    a_writable_leaf_of_a_shared_or_cached_page_is_reported,
    windows_check_every_rule_as_one_pass_does,
);
