//! Compaction (`mm::compaction`) over a simulated host: the scanners, the
//! goal, the budget, suitability, the counters, and the decisions the
//! kernel takes with them (kcompactd's wake-up, direct compaction for a THP
//! fault, its back-off, the measures).
//!
//! The host here ([`Sim`]) has a real `FrameAllocator` and real LRU lists
//! over a leaked memmap, and stands in for the rest:
//! - **no page tables**: a folio's "mapping" is one entry of a map from
//!   its page index to its head PFN ([`Sim::place`]), with the mapcount and
//!   the reference a PTE would hold; the contents of every data frame are
//!   kept by PFN, so a move that loses or mixes bytes fails a test;
//! - **a stand-in for `mm::migrate::migrate_folio`** ([`Sim::migrate`]):
//!   lock the source, freeze its count at the mapping's reference plus
//!   compaction's, copy the bytes, make the destination a folio like it,
//!   point the map at it, free the old frames. It stays for the tests of
//!   the scanners that a `testkit` world cannot host: real threads racing
//!   the passes (a world is single-threaded), folios put in odd states by
//!   hand (pinned, locked, not anonymous, a raw frame), and placement
//!   exact to the pageblock.
//!
//! The real migration (`mm::migrate::migrate_folio_to`, with the page
//! tables of both formats, the fault path, the reverse map and the
//! checker) runs in [`real_migration`]: the host a kernel writes, over a
//! `testkit` world; one page in every block moves with its mappings, and
//! a THP fault that may stall asks for compaction, then maps a THP.

use mm::anon::{alloc_anon_folio, put_anon_folio, remove_pte_mapping};
use mm::compaction::{
    suitable, thp_coverage, thp_fault_compaction, wants_kcompactd, Budget, Caller, CompactStats, CompactZone,
    CompactionHost, Deferral, Defrag, Fragmentation, Goal, KcompactdWake, MigrateFailed, Outcome, Request,
    Unsuitable, MAX_DEFER_SHIFT, PAGEBLOCK_NR, THP_FAULT_BUDGET,
};
use mm::folio::{folio_of, AnonHandle, Folio, UnpublishedFolio};
use mm::frame::{AllocError, AllocKind, FrameAllocator};
use mm::lru::LruLists;
use mm::page::{Memmap, PageFlag};
use mm::testkit::rng::Rng;
use mm::thp::{alloc_anon_huge_folio, HPAGE_ORDER};
use mm::vma::ThpMode;
use mm::{Pfn, PhysAddr};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Where the simulated memory starts: 2 MiB-aligned, as RAM usually is.
const BASE: u64 = 0x10_0000;

/// The bytes of page `index`: a pattern no other page has.
fn pattern(index: u64) -> Box<[u8; 4096]> {
    let mut bytes = Box::new([0u8; 4096]);
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    bytes
}

/// The simulated host (module doc).
struct Sim {
    fa: &'static FrameAllocator,
    lru: &'static LruLists,
    handle: AnonHandle,
    /// What a page-table lock is to the kernel: held while a mapping
    /// changes (a move, an unmap), so that neither sees the other half
    /// done. Taken before the others.
    rmap: Mutex<()>,
    /// Page index -> head PFN of the folio "mapped" there.
    place: Mutex<BTreeMap<u64, u64>>,
    /// PFN -> bytes, for every page of every folio made here. Taken last.
    contents: Mutex<HashMap<u64, Box<[u8; 4096]>>>,
    /// Head PFNs whose move the host refuses (as migration refuses a
    /// folio whose count is not what it expects).
    refuse: Mutex<HashSet<u64>>,
    nr_relax: AtomicU64,
}

/// Takes a mutex of the sim (a panic under one has failed the test already).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// `nr_blocks` pageblocks of free memory.
    fn new(nr_blocks: u64) -> Sim {
        let memmap = Memmap::new_leaked(Pfn::new(BASE), (nr_blocks * PAGEBLOCK_NR) as usize);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(Pfn::new(BASE), memmap.end_pfn()).unwrap();
        Sim {
            fa,
            lru: Box::leak(Box::new(LruLists::new(memmap))),
            handle: AnonHandle::of_root(PhysAddr::new(0x4000_0000)),
            rmap: Mutex::new(()),
            place: Mutex::new(BTreeMap::new()),
            contents: Mutex::new(HashMap::new()),
            refuse: Mutex::new(HashSet::new()),
            nr_relax: AtomicU64::new(0),
        }
    }

    fn memmap(&self) -> &'static Memmap {
        self.fa.memmap()
    }

    fn zone(&self) -> CompactZone {
        CompactZone::of_memmap(self.memmap())
    }

    /// A movable page at `index`: an anon folio, mapped, on the LRU, with
    /// its pattern. Allocated wherever the allocator says.
    fn map_page(&self, index: u64) -> Folio<'static> {
        let folio = alloc_anon_folio(self.fa, AllocKind::Reserve, self.handle, index, |_| {}).unwrap();
        self.adopt(folio, index);
        folio
    }

    /// Makes a fresh folio "mapped" at `index`: contents, place, LRU.
    fn adopt(&self, folio: Folio<'static>, index: u64) {
        for i in 0..folio.nr_pages() as u64 {
            locked(&self.contents).insert(folio.pfn().as_u64() + i, pattern(index + i));
        }
        assert!(locked(&self.place).insert(index, folio.pfn().as_u64()).is_none());
        self.lru.add(folio);
    }

    /// Every mapped page still has its bytes, at the place the map says.
    fn check_contents(&self) {
        let place = locked(&self.place);
        let contents = locked(&self.contents);
        let mut nr_mapped = 0;
        for (&index, &pfn) in place.iter() {
            let folio = folio_of(self.memmap(), Pfn::new(pfn)).expect("a mapped folio");
            assert_eq!(folio.pfn().as_u64(), pfn, "the map names a head");
            for i in 0..folio.nr_pages() as u64 {
                assert!(contents[&(pfn + i)] == pattern(index + i), "page {:#x} lost its bytes", index + i);
            }
            nr_mapped += folio.nr_pages();
        }
        assert_eq!(contents.len(), nr_mapped, "contents of frames nobody maps");
    }

    fn pfn_of(&self, index: u64) -> u64 {
        locked(&self.place)[&index]
    }

    /// Everything consistent: allocator, lists, contents, and every frame
    /// either free or a mapped folio's (no leak).
    fn check(&self) {
        self.fa.check_consistency().unwrap();
        self.lru.check().unwrap();
        self.check_contents();
    }

    /// Unmaps and frees every folio; all memory must be free after.
    fn teardown(self, extra: &[(Pfn, u8)]) {
        let place = std::mem::take(&mut *locked(&self.place));
        for (_, pfn) in place {
            let folio = folio_of(self.memmap(), Pfn::new(pfn)).unwrap();
            for i in 0..folio.nr_pages() {
                if folio.page_mapcount(i) > 0 {
                    remove_pte_mapping(self.memmap(), folio.pfn().plus(i as u64).phys());
                }
            }
            if folio.entire_mapcount() > 0 {
                folio.add_entire_mapcount(-1);
            }
            self.put(folio);
        }
        for &(pfn, order) in extra {
            self.fa.free(pfn, order);
        }
        self.fa.check_consistency().unwrap();
        assert_eq!(self.fa.nr_free_pages(), self.fa.managed_pages(), "frames leaked");
        assert!(locked(&self.contents).is_empty());
    }
}

impl CompactionHost for Sim {
    type Error = &'static str;

    fn frames(&self) -> &FrameAllocator {
        self.fa
    }

    fn lru(&self) -> &LruLists {
        self.lru
    }

    /// The stand-in for `mm::migrate::migrate_folio` (module doc).
    fn migrate(
        &self,
        src: Folio<'static>,
        dst: UnpublishedFolio<'static>,
    ) -> Result<Folio<'static>, MigrateFailed<&'static str>> {
        assert_eq!(src.order(), dst.order(), "a destination of another order");
        assert!(!src.test_flag(PageFlag::Lru), "the source is not isolated");
        if locked(&self.refuse).contains(&src.pfn().as_u64()) {
            return Err(MigrateFailed { why: "refused", dst });
        }
        // As the kernel's migration holds the page-table locks of every
        // mapping while it replaces them.
        let _rmap = locked(&self.rmap);
        if !src.try_lock() {
            return Err(MigrateFailed { why: "locked", dst });
        }
        // The mapping's reference and compaction's. As migration counts
        // the references it expects from the mappings it found under the
        // locks: one that an unmap took away (its reference may not be
        // dropped yet) is not expected, and nothing moves.
        if locked(&self.place).get(&src.index()) != Some(&src.pfn().as_u64()) {
            src.unlock();
            return Err(MigrateFailed { why: "unmapped meanwhile", dst });
        }
        if !src.try_freeze(2) {
            src.unlock();
            return Err(MigrateFailed { why: "unexpected references", dst });
        }
        let (from, to, nr) = (src.pfn().as_u64(), dst.pfn().as_u64(), src.nr_pages() as u64);
        {
            let mut contents = locked(&self.contents);
            for i in 0..nr {
                let bytes = contents.remove(&(from + i)).expect("the source's bytes");
                contents.insert(to + i, bytes);
            }
        }
        let mut dst = dst;
        for flag in [PageFlag::SwapBacked, PageFlag::Uptodate, PageFlag::Dirty, PageFlag::Referenced] {
            if src.test_flag(flag) {
                dst.nonatomic_set_flag(flag);
            }
        }
        dst.set_entire_mapcount(src.entire_mapcount());
        src.add_entire_mapcount(-src.entire_mapcount());
        for i in 0..nr as usize {
            if src.page(i).test_flag(PageFlag::AnonExclusive) {
                dst.nonatomic_set_page_flag(i, PageFlag::AnonExclusive);
            }
            dst.set_page_mapcount(i, src.page_mapcount(i));
            src.add_page_mapcount(i, -src.page_mapcount(i));
        }
        dst.set_mapping(src.mapping(), src.index());
        let new = dst.publish(); // the mapping's reference
        new.get(); // compaction's
        let index = src.index();
        *locked(&self.place).get_mut(&index).expect("the source is mapped") = to;
        src.unlock();
        // Frozen at 0: nobody else holds it; the old frames go back.
        self.fa.free_folio(src);
        Ok(new)
    }

    fn put(&self, folio: Folio<'static>) {
        if folio.put() {
            self.lru.remove(folio);
            let mut contents = locked(&self.contents);
            for i in 0..folio.nr_pages() as u64 {
                contents.remove(&(folio.pfn().as_u64() + i));
            }
            self.fa.free_folio(folio);
        }
    }

    fn relax(&self) {
        self.nr_relax.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
    }
}

/// Fills all memory with mapped pages, then unmaps all but `keep(block)`
/// pages of each pageblock (at offsets spread over the block): the
/// fragmentation of issue 14's test. Returns the indices kept.
fn fragment(sim: &Sim, keep: impl Fn(u64) -> u64) -> Vec<u64> {
    let total = sim.fa.managed_pages();
    let mut by_pfn = BTreeMap::new();
    for index in 0..total {
        let folio = alloc_anon_folio(sim.fa, AllocKind::Reserve, sim.handle, index, |_| {}).unwrap();
        by_pfn.insert(folio.pfn().as_u64(), folio);
    }
    assert_eq!(sim.fa.nr_free_pages(), 0);
    let mut kept = Vec::new();
    for (pfn, folio) in by_pfn {
        let block = (pfn - BASE) / PAGEBLOCK_NR;
        let offset = (pfn - BASE) % PAGEBLOCK_NR;
        let n = keep(block);
        // `n` offsets spread over the block: multiples of 512 / n, shifted.
        let spread = n > 0 && offset % (PAGEBLOCK_NR / n) == (block * 37) % (PAGEBLOCK_NR / n);
        if spread {
            let index = folio.index();
            sim.adopt(folio, index);
            kept.push(index);
        } else {
            let folio = remove_pte_mapping(sim.memmap(), folio.pfn().phys());
            assert!(put_anon_folio(sim.fa, folio));
        }
    }
    sim.check();
    kept
}

/// The number of pageblocks holding at least one mapped page.
fn blocks_in_use(sim: &Sim) -> u64 {
    let blocks: HashSet<u64> = locked(&sim.place).values().map(|&pfn| (pfn - BASE) / PAGEBLOCK_NR).collect();
    blocks.len() as u64
}

#[test]
fn one_page_in_every_block_becomes_free_2mib_blocks_with_every_byte_intact() {
    let nr_blocks = 32;
    let sim = Sim::new(nr_blocks);
    let kept = fragment(&sim, |_| 1);
    assert_eq!(kept.len() as u64, nr_blocks);
    let before = Fragmentation::of(sim.fa);
    assert_eq!(before.nr_free_huge_blocks(), 0);
    assert_eq!(before.largest_free_order(), Some(8));
    assert_eq!(before.unusable_permille(HPAGE_ORDER), 1000);
    let free_before = sim.fa.nr_free_pages();

    let stats = CompactStats::new();
    let zone = sim.zone();
    let report = zone.compact(&sim, &stats, Request::whole());

    // The top block took the 31 others' pages into its 511 free frames;
    // every other block is free, and merged (15 order-10 blocks and one
    // order-9 block: 31 free 2 MiB blocks).
    assert_eq!(report.outcome, Outcome::Complete);
    assert_eq!(report.nr_migrated, nr_blocks - 1);
    assert_eq!(report.nr_migrate_failed, 0);
    assert_eq!(report.nr_migrate_blocks, nr_blocks - 1);
    assert_eq!(report.nr_free_blocks, 1);
    assert_eq!(report.nr_blocks_skipped, 0);
    assert_eq!(blocks_in_use(&sim), 1);
    let after = Fragmentation::of(sim.fa);
    assert_eq!(after.nr_free_huge_blocks(), nr_blocks - 1, "{after}");
    assert_eq!(after.largest_free_order(), Some(10));
    assert!(after.unusable_permille(HPAGE_ORDER) < 40, "{after}");
    assert_eq!(sim.fa.nr_free_pages(), free_before, "a move neither frees nor takes frames");
    sim.check();

    // The counters add up: each scanner looked at every frame of its
    // blocks once; the free scanner isolated all 511 free frames of the
    // top block and gave back the 480 it did not use.
    let counts = stats.snapshot();
    assert_eq!(counts.compact_migrate_scanned, (nr_blocks - 1) * PAGEBLOCK_NR);
    assert_eq!(counts.compact_migrate_scanned, report.nr_migrate_scanned);
    assert_eq!(counts.compact_free_scanned, PAGEBLOCK_NR);
    assert_eq!(report.nr_free_isolated, PAGEBLOCK_NR - 1);
    assert_eq!(counts.compact_migrated, report.nr_migrated);
    assert_eq!(counts.compact_migrate_failed, 0);
    // Not a direct compaction, nor kcompactd: no stall, no wake.
    assert_eq!((counts.compact_stall, counts.compact_success, counts.compact_fail), (0, 0, 0));
    assert_eq!(counts.compact_daemon_wake, 0);
    assert_eq!(sim.nr_relax.load(Ordering::Relaxed), nr_blocks - 1, "a yield after every migrate block");
    // The scanners met: the next pass starts from the ends again.
    assert_eq!(zone.positions(), (Pfn::new(BASE), sim.memmap().end_pfn()));

    // A second pass finds nothing left to move, and nothing in its way:
    // the upper half of a free 4 MiB block is free, not a raw frame.
    let again = zone.compact(&sim, &stats, Request::whole());
    assert_eq!((again.outcome, again.nr_migrated, again.nr_blocks_skipped), (Outcome::Complete, 0, 0));
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn a_pass_for_an_order_stops_at_the_goal_and_the_next_goes_on_from_there() {
    let sim = Sim::new(16);
    fragment(&sim, |_| 1);
    let stats = CompactStats::new();
    let zone = sim.zone();
    let report = zone.compact(&sim, &stats, Request::kcompactd(HPAGE_ORDER));
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!((report.nr_migrate_blocks, report.nr_migrated), (1, 1));
    assert!(sim.fa.has_free_block(HPAGE_ORDER));
    assert_eq!(stats.snapshot().compact_daemon_wake, 1);
    // The free scanner resumes at the block it gave frames back to.
    assert_eq!(zone.positions(), (Pfn::new(BASE + PAGEBLOCK_NR), sim.memmap().end_pfn()));
    // Suitability: the goal is there already.
    let skipped = zone.compact(&sim, &stats, Request::kcompactd(HPAGE_ORDER));
    assert_eq!(skipped.outcome, Outcome::Skipped(Unsuitable::AlreadyFree));
    assert_eq!(skipped.nr_migrate_scanned, 0);
    assert_eq!(stats.snapshot().compact_daemon_wake, 1, "a skipped pass is no wake");

    // Take the block (a THP), and the next pass empties the next block,
    // filling the same top block.
    let mut taken = Vec::new();
    for round in 2..=5u64 {
        taken.push(sim.fa.alloc(HPAGE_ORDER, AllocKind::Normal).unwrap());
        let report = zone.compact(&sim, &stats, Request::kcompactd(HPAGE_ORDER));
        assert_eq!((report.outcome, report.nr_migrate_blocks, report.nr_migrated), (Outcome::Success, 1, 1));
        assert_eq!(report.nr_free_blocks, 1, "round {round}: the top block again");
        assert_eq!(zone.positions().0, Pfn::new(BASE + round * PAGEBLOCK_NR));
    }
    assert_eq!(blocks_in_use(&sim), 16 - 5);
    sim.check();
    let taken: Vec<_> = taken.into_iter().map(|p| (p, HPAGE_ORDER)).collect();
    sim.teardown(&taken);
}

#[test]
fn thp_faults_reach_full_coverage_through_bounded_direct_compaction() {
    // 64 blocks with a page each; 32 THP faults in a MADV_HUGEPAGE range.
    let sim = Sim::new(64);
    let kept = fragment(&sim, |_| 1);
    let stats = CompactStats::new();
    let zone = sim.zone();
    let deferral = Deferral::new();
    let mut huge = Vec::new();
    for n in 0..32u64 {
        let index = (1 << 30) + n * 512;
        let folio = match alloc_anon_huge_folio(sim.fa, AllocKind::Normal, sim.handle, index, |_| {}) {
            Ok(folio) => folio,
            Err(err) => {
                assert_eq!(err, AllocError::OutOfMemory { order: HPAGE_ORDER });
                let request = thp_fault_compaction(Defrag::Madvise, ThpMode::Always).expect("may stall");
                assert!(!deferral.deferred());
                let report = zone.compact(&sim, &stats, request);
                deferral.note(report.outcome);
                assert!(report.nr_migrate_blocks <= THP_FAULT_BUDGET.migrate_blocks);
                match alloc_anon_huge_folio(sim.fa, AllocKind::Normal, sim.handle, index, |_| {}) {
                    Ok(folio) => folio,
                    Err(_) => {
                        stats.count_thp_fault_fallback();
                        continue;
                    }
                }
            }
        };
        stats.count_thp_fault_alloc();
        sim.adopt(folio, index);
        huge.push(folio);
    }
    let counts = stats.snapshot();
    assert_eq!(counts.thp_fault_alloc, 32, "{counts}");
    assert_eq!(counts.thp_fault_fallback, 0);
    assert_eq!(counts.compact_stall, 32, "every fault needed compaction");
    assert_eq!((counts.compact_success, counts.compact_fail), (32, 0));
    assert_eq!(counts.compact_migrated, 32);
    assert_eq!(deferral.shift(), 0);
    // The small pages of the 32 lowest blocks moved to the top block (the
    // THPs took their blocks), the others stayed; every byte intact.
    let mut blocks: Vec<u64> = kept.iter().map(|&i| (sim.pfn_of(i) - BASE) / PAGEBLOCK_NR).collect();
    blocks.sort_unstable();
    let expected: Vec<u64> = (32..63).chain([63; 33]).collect();
    assert_eq!(blocks, expected);
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn blocks_with_something_unmovable_are_skipped_and_the_pass_still_ends() {
    let sim = Sim::new(16);
    let kept = fragment(&sim, |_| 2);
    let mut by_block: HashMap<u64, Vec<u64>> = HashMap::new();
    for &i in &kept {
        by_block.entry((sim.pfn_of(i) - BASE) / PAGEBLOCK_NR).or_default().push(i);
    }
    let in_block = |b: u64| by_block[&b].clone();
    // Block 1: one page pinned. Block 2: one page locked by someone.
    // Block 3: a raw frame (a page table) in a free spot. Block 4: a folio
    // that is not anonymous (the huge zero folio's kind: it never moves).
    // Block 5: a huge folio, whole.
    let pinned = folio_of(sim.memmap(), Pfn::new(sim.pfn_of(in_block(1)[0]))).unwrap();
    pinned.pin();
    let busy = folio_of(sim.memmap(), Pfn::new(sim.pfn_of(in_block(2)[1]))).unwrap();
    assert!(busy.try_lock());
    // A raw frame in block 3: its first free block taken as a page table
    // would be.
    let raw_pfn = (BASE + 3 * PAGEBLOCK_NR..BASE + 4 * PAGEBLOCK_NR)
        .find(|&p| sim.memmap().get(Pfn::new(p)).unwrap().test_flag(PageFlag::Buddy))
        .unwrap();
    let raw_order = sim.fa.isolate_free_block(Pfn::new(raw_pfn), 10).unwrap();
    let table_page = sim.memmap().get(Pfn::new(raw_pfn)).unwrap();
    table_page.set_flag(PageFlag::PageTable);
    // Block 4's pages: swap one for a folio of another kind.
    let odd = in_block(4)[0];
    let odd_pfn = sim.pfn_of(odd);
    let before: HashMap<u64, u64> = kept.iter().map(|&i| (i, sim.pfn_of(i))).collect();
    let used_before = blocks_in_use(&sim);
    // Block 5 becomes one huge folio: its two small pages go first.
    let huge_block = 5;
    for index in in_block(huge_block) {
        let pfn = locked(&sim.place).remove(&index).unwrap();
        let folio = folio_of(sim.memmap(), Pfn::new(pfn)).unwrap();
        remove_pte_mapping(sim.memmap(), folio.pfn().phys());
        sim.put(folio);
    }
    let huge = alloc_anon_huge_folio(sim.fa, AllocKind::Reserve, sim.handle, 1 << 30, |_| {}).unwrap();
    assert_eq!((huge.pfn().as_u64() - BASE) / PAGEBLOCK_NR, huge_block, "the block just freed");
    sim.adopt(huge, 1 << 30);
    let zero_like = {
        // Not anon: take the folio off its "mapping" kind.
        let folio = folio_of(sim.memmap(), Pfn::new(odd_pfn)).unwrap();
        folio.lock();
        folio.set_mapping(mm::folio::FolioMapping::HugeZero, 0);
        folio.unlock();
        folio
    };

    let stats = CompactStats::new();
    let zone = sim.zone();
    let report = zone.compact(&sim, &stats, Request::whole());
    assert_eq!(report.outcome, Outcome::Complete);
    // Blocks 1 (pinned), 2 (locked), 3 (a page table), 4 (not anon), 5 (huge).
    assert_eq!(report.nr_blocks_skipped, 5, "{report:?}");
    for b in [1u64, 2, 3, 4] {
        for i in in_block(b) {
            assert_eq!(sim.pfn_of(i), before[&i], "page {i:#x} of skipped block {b} moved");
        }
    }
    assert_eq!(sim.pfn_of(1 << 30), huge.pfn().as_u64(), "the huge folio stays whole where it is");
    assert_eq!(report.nr_migrate_failed, 0, "nothing unmovable was even tried");
    // Every other block's pages went to the top block: 0 and 6..=14 are
    // free 2 MiB blocks now.
    assert_eq!(used_before, 16);
    assert_eq!(report.nr_migrated, 10 * 2);
    let used: HashSet<u64> = locked(&sim.place).values().map(|&p| (p - BASE) / PAGEBLOCK_NR).collect();
    assert_eq!(used, HashSet::from([1, 2, 3, 4, 5, 15]));
    assert_eq!(Fragmentation::of(sim.fa).nr_free_huge_blocks(), 10);
    assert_eq!(zone.positions(), (Pfn::new(BASE), sim.memmap().end_pfn()), "reset after meeting");

    // Undo the oddities and tear down.
    zero_like.lock();
    zero_like.set_mapping(mm::folio::FolioMapping::Anon(sim.handle), odd);
    zero_like.unlock();
    busy.unlock();
    assert!(!pinned.unpin());
    sim.check();
    table_page.clear_flag(PageFlag::PageTable);
    sim.teardown(&[(Pfn::new(raw_pfn), raw_order)]);
}

#[test]
fn huge_folios_move_whole_only_for_a_larger_goal() {
    // A THP in every other block: no free order-10 block, plenty of free
    // order-9 ones.
    let sim = Sim::new(16);
    let mut held = Vec::new();
    while let Ok(pfn) = sim.fa.alloc(HPAGE_ORDER, AllocKind::Reserve) {
        held.push(pfn);
    }
    held.sort_unstable();
    let mut thps = Vec::new();
    for (n, pfn) in held.into_iter().enumerate() {
        sim.fa.free(pfn, HPAGE_ORDER);
        if n % 2 == 0 {
            let index = (n as u64) << 9;
            let folio = alloc_anon_huge_folio(sim.fa, AllocKind::Reserve, sim.handle, index, |_| {}).unwrap();
            assert_eq!(folio.pfn(), pfn, "the block just freed");
            sim.adopt(folio, index);
            thps.push(index);
        }
    }
    assert_eq!(Fragmentation::of(sim.fa).free_blocks[9..], [8, 0]);
    let stats = CompactStats::new();
    let zone = sim.zone();
    // Aiming at 2 MiB: a free one is there already. The whole zone for 2
    // MiB blocks: every block is a THP or free; nothing moves.
    assert_eq!(
        zone.compact(&sim, &stats, Request::kcompactd(HPAGE_ORDER)).outcome,
        Outcome::Skipped(Unsuitable::AlreadyFree)
    );
    let whole = zone.compact(&sim, &stats, Request::whole());
    assert_eq!((whole.nr_migrated, whole.nr_blocks_skipped, whole.nr_migrate_blocks), (0, 8, 16));
    // Aiming at 4 MiB: the THP of block 0 moves whole into a free block
    // at the top, and blocks 0 and 1 merge.
    let report = zone.compact(&sim, &stats, Request::kcompactd(10));
    assert_eq!((report.outcome, report.nr_migrated), (Outcome::Success, 512));
    assert_eq!(Fragmentation::of(sim.fa).free_blocks[9..], [6, 1]);
    assert_eq!(sim.pfn_of(0), BASE + 15 * PAGEBLOCK_NR, "into the highest free 2 MiB block");
    let moved = folio_of(sim.memmap(), Pfn::new(sim.pfn_of(0))).unwrap();
    assert_eq!((moved.order(), moved.entire_mapcount(), moved.refcount()), (HPAGE_ORDER, 1, 1));
    assert_eq!(thps.len(), 8);
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn the_scanners_meet_when_memory_is_too_full_to_empty_everything() {
    // Half of every block in use: only about half the blocks can be
    // emptied into the other half's free frames.
    let sim = Sim::new(16);
    fragment(&sim, |_| 256);
    let stats = CompactStats::new();
    let report = sim.zone().compact(&sim, &stats, Request::whole());
    assert_eq!(report.outcome, Outcome::Complete);
    assert_eq!(report.nr_migrate_blocks + report.nr_free_blocks, 16, "every block seen by one scanner");
    assert!(report.nr_migrated >= 7 * 256, "{report:?}");
    let free_huge = Fragmentation::of(sim.fa).nr_free_huge_blocks();
    assert!((7..=8).contains(&free_huge), "{free_huge} free 2 MiB blocks");
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn compaction_against_mapping_and_unmapping_on_another_thread() {
    // One thread compacts, with passes of every kind; another unmaps and
    // maps pages meanwhile (under the sim's rmap lock, as munmap holds the
    // page-table lock): a folio may be unmapped while isolated, a free
    // block taken while the free scanner looks at it, a frame allocated
    // while the migrate scanner looks at it. After each round every mapped
    // page has its bytes and every frame is accounted for.
    let mut totals = (0, 0);
    for round in 0..16u64 {
        let sim = Sim::new(16);
        let kept = fragment(&sim, |b| 16 + 4 * b);
        let stats = CompactStats::new();
        let zone = sim.zone();
        std::thread::scope(|scope| {
            let sim = &sim;
            let mapper = scope.spawn(move || {
                let mut rng = Rng(0xc0de + round);
                let mut mapped = kept;
                let mut next = 1u64 << 32;
                for _ in 0..800 {
                    if rng.chance(70) && !mapped.is_empty() {
                        let index = mapped.swap_remove(rng.below(mapped.len() as u64) as usize);
                        let folio = {
                            let _rmap = locked(&sim.rmap);
                            let pfn = locked(&sim.place).remove(&index).unwrap();
                            remove_pte_mapping(sim.memmap(), Pfn::new(pfn).phys())
                        };
                        sim.put(folio);
                    } else if let Ok(folio) =
                        alloc_anon_folio(sim.fa, AllocKind::Normal, sim.handle, next, |_| {})
                    {
                        sim.adopt(folio, next);
                        mapped.push(next);
                        next += 1;
                    }
                    std::thread::yield_now();
                }
            });
            let mut rng = Rng(0xfeed + round);
            while !mapper.is_finished() {
                let request = match rng.below(3) {
                    0 => Request::whole(),
                    1 => Request::kcompactd(HPAGE_ORDER),
                    _ => Request::thp_fault(),
                };
                let report = zone.compact(sim, &stats, request);
                assert!(report.nr_migrate_scanned <= 16 * PAGEBLOCK_NR, "{report:?}");
            }
            mapper.join().unwrap();
        });
        let counts = stats.snapshot();
        totals.0 += counts.compact_migrated;
        totals.1 += counts.compact_migrate_failed;
        sim.check();
        sim.teardown(&[]);
    }
    assert!(totals.0 > 0, "nothing moved: {totals:?}");
}

#[test]
fn failed_moves_are_counted_and_give_their_destination_back() {
    let sim = Sim::new(8);
    let kept = fragment(&sim, |_| 4);
    // Refuse the moves of block 0's pages.
    let refused: Vec<u64> =
        kept.iter().map(|&i| sim.pfn_of(i)).filter(|&p| p < BASE + PAGEBLOCK_NR).collect();
    assert_eq!(refused.len(), 4);
    locked(&sim.refuse).extend(refused.iter().copied());
    let free_before = sim.fa.nr_free_pages();
    let stats = CompactStats::new();
    let report = sim.zone().compact(&sim, &stats, Request::whole());
    assert_eq!(report.nr_migrate_failed, 4);
    assert_eq!(stats.snapshot().compact_migrate_failed, 4);
    for pfn in &refused {
        let folio = folio_of(sim.memmap(), Pfn::new(*pfn)).unwrap();
        assert!(folio.test_flag(PageFlag::Lru), "put back on its list");
        assert_eq!(folio.refcount(), 1, "compaction's reference dropped");
    }
    assert_eq!(sim.fa.nr_free_pages(), free_before, "every destination came back");
    assert!(!sim.fa.has_free_block(HPAGE_ORDER + 1) || report.nr_migrated > 0);
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn suitability_skips_when_the_order_is_free_or_memory_is_short() {
    let sim = Sim::new(8);
    assert_eq!(suitable(sim.fa, HPAGE_ORDER), Err(Unsuitable::AlreadyFree));
    assert_eq!(suitable(sim.fa, 11), Err(Unsuitable::BadOrder));
    let stats = CompactStats::new();
    let zone = sim.zone();
    let report = zone.compact(&sim, &stats, Request::thp_fault());
    assert_eq!(report.outcome, Outcome::Skipped(Unsuitable::AlreadyFree));
    assert_eq!(stats.snapshot().compact_stall, 0, "a skipped pass does not stall");
    // Fragment it, then fill it: nothing to gain.
    let kept = fragment(&sim, |_| 1);
    assert_eq!(suitable(sim.fa, HPAGE_ORDER), Ok(()));
    let wm = sim.fa.watermarks();
    let mut index = 1 << 32;
    while sim.fa.nr_free_pages() >= wm.low + 2 * 512 {
        sim.map_page(index);
        index += 1;
    }
    assert_eq!(suitable(sim.fa, HPAGE_ORDER), Err(Unsuitable::TooLittleFree));
    assert_eq!(suitable(sim.fa, 0), Err(Unsuitable::AlreadyFree), "an order-0 page is there");
    let report = zone.compact(&sim, &stats, Request::kcompactd(HPAGE_ORDER));
    assert_eq!(report.outcome, Outcome::Skipped(Unsuitable::TooLittleFree));
    assert_eq!(stats.snapshot(), Default::default(), "nothing counted");
    assert!(kept.len() == 8);
    sim.teardown(&[]);
}

#[test]
fn direct_compaction_stays_within_its_budget_and_resumes_next_time() {
    // Blocks 0..12 each hold a pinned page; block 12 and up a movable one.
    let sim = Sim::new(32);
    let kept = fragment(&sim, |_| 1);
    let mut pinned = Vec::new();
    for &i in &kept {
        let pfn = sim.pfn_of(i);
        if (pfn - BASE) / PAGEBLOCK_NR < 12 {
            let folio = folio_of(sim.memmap(), Pfn::new(pfn)).unwrap();
            folio.pin();
            pinned.push(folio);
        }
    }
    let stats = CompactStats::new();
    let zone = sim.zone();
    let first = zone.compact(&sim, &stats, Request::thp_fault());
    assert_eq!(first.outcome, Outcome::BudgetSpent);
    assert_eq!(first.nr_migrate_blocks, THP_FAULT_BUDGET.migrate_blocks);
    assert!(first.nr_migrate_scanned <= THP_FAULT_BUDGET.migrate_blocks * PAGEBLOCK_NR);
    assert!(first.nr_free_blocks <= THP_FAULT_BUDGET.free_blocks);
    assert_eq!((first.nr_blocks_skipped, first.nr_migrated), (8, 0));
    assert_eq!(zone.positions().0, Pfn::new(BASE + 8 * PAGEBLOCK_NR), "resumes after the 8 blocks");
    let second = zone.compact(&sim, &stats, Request::thp_fault());
    assert_eq!(second.outcome, Outcome::Success);
    assert_eq!((second.nr_migrate_blocks, second.nr_blocks_skipped, second.nr_migrated), (5, 4, 1));
    let counts = stats.snapshot();
    assert_eq!((counts.compact_stall, counts.compact_fail, counts.compact_success), (2, 1, 1));
    assert_eq!(counts.compact_migrate_scanned, first.nr_migrate_scanned + second.nr_migrate_scanned);
    assert_eq!(counts.compact_free_scanned, first.nr_free_scanned + second.nr_free_scanned);
    // A budget of nothing scans nothing.
    let none = Request {
        goal: Goal::Order(HPAGE_ORDER),
        budget: Budget { migrate_blocks: 0, free_blocks: 0 },
        caller: Caller::Direct,
    };
    sim.fa.alloc(HPAGE_ORDER, AllocKind::Normal).map(|p| sim.fa.free(p, HPAGE_ORDER)).ok();
    let big = sim.fa.alloc(HPAGE_ORDER, AllocKind::Normal).unwrap();
    let r = zone.compact(&sim, &stats, none);
    assert_eq!((r.outcome, r.nr_migrate_scanned, r.nr_free_scanned), (Outcome::BudgetSpent, 0, 0));
    sim.fa.free(big, HPAGE_ORDER);
    for folio in pinned {
        assert!(!folio.unpin());
    }
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn a_block_left_half_moved_for_want_of_destinations_is_taken_again() {
    // Blocks 0..=5 full, the others half full: block 0 needs two
    // pageblocks of destinations, and the free scanner may take one a pass.
    let sim = Sim::new(16);
    fragment(&sim, |b| if b <= 5 { 512 } else { 256 });
    let stats = CompactStats::new();
    let zone = sim.zone();
    let request = Request {
        goal: Goal::Order(HPAGE_ORDER),
        budget: Budget { migrate_blocks: u64::MAX, free_blocks: 1 },
        caller: Caller::Kcompactd,
    };
    let first = zone.compact(&sim, &stats, request);
    assert_eq!((first.outcome, first.nr_migrate_blocks, first.nr_free_blocks), (Outcome::BudgetSpent, 1, 1));
    assert_eq!((first.nr_isolated, first.nr_migrated), (512, 256), "the rest went back to the lists");
    assert_eq!(zone.positions(), (Pfn::new(BASE), Pfn::new(BASE + 15 * PAGEBLOCK_NR)), "block 0 again");
    let second = zone.compact(&sim, &stats, request);
    assert_eq!((second.outcome, second.nr_migrated), (Outcome::Success, 256));
    let used: HashSet<u64> = locked(&sim.place).values().map(|&p| (p - BASE) / PAGEBLOCK_NR).collect();
    assert!(!used.contains(&0));
    sim.check();
    sim.teardown(&[]);
}

#[test]
fn kcompactd_is_woken_by_huge_allocations_failing_for_want_of_a_block() {
    let order = HPAGE_ORDER;
    assert!(wants_kcompactd(order, AllocError::OutOfMemory { order }));
    assert!(wants_kcompactd(10, AllocError::OutOfMemory { order: 10 }));
    assert!(!wants_kcompactd(order, AllocError::BelowMin { order }), "short of memory: kswapd's");
    assert!(!wants_kcompactd(0, AllocError::OutOfMemory { order: 0 }));
    assert!(!wants_kcompactd(3, AllocError::OutOfMemory { order: 3 }));
    assert!(!wants_kcompactd(11, AllocError::BadOrder(11)));

    let wake = KcompactdWake::new();
    assert_eq!(wake.take(), None);
    assert!(wake.wake(order), "the first waker unparks");
    assert!(!wake.wake(order), "an unpark is on its way");
    assert!(!wake.wake(3));
    assert!(wake.pending());
    assert_eq!(wake.take(), Some(order), "the largest order wanted");
    assert!(!wake.pending());
    assert_eq!(wake.take(), None, "consumed");
    assert!(wake.wake(3));
    assert!(!wake.wake(order));
    assert_eq!(wake.take(), Some(order));
}

#[test]
fn thp_faults_stall_for_compaction_as_defrag_says() {
    use Defrag::*;
    use ThpMode::{Always as Advised, Default as NoAdvice, Never as NoHuge};
    let stall = |d, t| thp_fault_compaction(d, t).is_some();
    assert!(stall(Madvise, Advised));
    assert!(!stall(Madvise, NoAdvice));
    assert!(stall(Always, Advised) && stall(Always, NoAdvice));
    assert!(!stall(Always, NoHuge) && !stall(Never, Advised));
    assert_eq!(Defrag::default(), Madvise);
    let request = thp_fault_compaction(Madvise, Advised).unwrap();
    assert_eq!(request, Request::thp_fault());
    assert_eq!(
        (request.goal, request.budget, request.caller),
        (Goal::Order(HPAGE_ORDER), THP_FAULT_BUDGET, Caller::Direct)
    );
}

#[test]
fn direct_compaction_backs_off_after_failures() {
    let d = Deferral::new();
    assert!(!d.deferred(), "never deferred before a failure");
    d.note(Outcome::Complete);
    assert_eq!(d.shift(), 1);
    // After n failures, one attempt in 2^n runs.
    assert!(d.deferred());
    assert!(!d.deferred());
    // A pass that only spent its budget is no failure: the next goes on.
    d.note(Outcome::BudgetSpent);
    assert_eq!(d.shift(), 1);
    d.note(Outcome::NoDestination);
    assert_eq!(d.shift(), 2);
    let runs = (0..16).filter(|_| !d.deferred()).count();
    assert_eq!(runs, 4, "one in 4");
    for _ in 0..20 {
        d.note(Outcome::Complete);
    }
    assert_eq!(d.shift(), MAX_DEFER_SHIFT);
    let runs = (0..128).filter(|_| !d.deferred()).count();
    assert_eq!(runs, 2, "one in 64");
    // A success ends it; skipping for want of memory changes nothing.
    d.note(Outcome::Skipped(Unsuitable::TooLittleFree));
    assert_eq!(d.shift(), MAX_DEFER_SHIFT);
    d.note(Outcome::Success);
    assert_eq!(d.shift(), 0);
    assert!(!d.deferred() && !d.deferred());
}

#[test]
fn fragmentation_measures() {
    let mut f = Fragmentation { free_blocks: [0; 11] };
    assert_eq!((f.nr_free_pages(), f.nr_free_huge_blocks(), f.largest_free_order()), (0, 0, None));
    assert_eq!(f.unusable_permille(HPAGE_ORDER), 1000);
    f.free_blocks[0] = 512;
    f.free_blocks[9] = 1;
    f.free_blocks[10] = 1;
    assert_eq!(f.nr_free_pages(), 512 + 512 + 1024);
    assert_eq!(f.nr_free_huge_blocks(), 3);
    assert_eq!(f.largest_free_order(), Some(10));
    assert_eq!(f.unusable_permille(HPAGE_ORDER), 250);
    assert_eq!(f.unusable_permille(0), 0);
    assert_eq!(
        f.to_string(),
        "free 2048 pages, 3 free 2 MiB blocks, largest order 10, unusable for order 9: 25.0%"
    );
}

mod coverage {
    use super::*;
    use arch_aarch64::pgtable::Aarch64Format;
    use arch_x86_64::pgtable::X86Format;
    use mm::pgtable::sim::HardwareWalker;
    use mm::testkit::frames::SimFrames;
    use mm::testkit::world::{World, HP};
    use mm::VirtAddr;

    const AREA: u64 = 0x4000_0000;

    /// Two THPs, then a block of small pages, then an unmapped block.
    fn coverage_counts_2mib_leaves<F: HardwareWalker>() {
        let mut w = World::<F>::with_frames(SimFrames::new(0x80000, 8192).with_huge_zero().with_lru());
        w.thp(0, AREA, 1);
        w.thp(0, AREA + HP, 2);
        w.small_pages(0, AREA + 2 * HP, 3, 3);
        let sp = w.sp(0);
        let cover = |s: u64, e: u64| thp_coverage(&sp.table, &w.mem, VirtAddr::new(s), VirtAddr::new(e));
        let all = cover(AREA, AREA + 4 * HP);
        assert_eq!((all.nr_blocks, all.nr_huge, all.permille()), (4, 2, 500));
        // Only whole blocks count.
        let part = cover(AREA + 4096, AREA + 3 * HP - 1);
        assert_eq!((part.nr_blocks, part.nr_huge), (1, 1));
        assert_eq!(cover(AREA, AREA).permille(), 0);
        w.finish();
    }

    mm::for_both_formats!(coverage_counts_2mib_leaves);
}

/// Compaction with the real `mm::migrate` over a `testkit` world (page
/// tables of both formats, the fault path, the reverse map, the checker):
/// the host a kernel writes, here over [`World`]. The tests above keep the
/// stand-in [`Sim`] where they need what a world does not have: threads
/// (a world is single-threaded), folios made by hand in odd states, and
/// exact placement.
mod real_migration {
    use super::*;
    use arch_aarch64::pgtable::Aarch64Format;
    use arch_x86_64::pgtable::X86Format;
    use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
    use mm::migrate::{migrate_folio_to, MigrateError};
    use mm::pgtable::sim::HardwareWalker;
    use mm::pgtable::{Decoded, Level, NonPresent, SwapEntry};
    use mm::testkit::frames::SimFrames;
    use mm::testkit::world::{va, World, HP, PAGE};
    use mm::vma::VmaProt;

    const BASE_PFN: u64 = 0x80000;
    const AREA: u64 = 0x10_0000_0000;
    const TAG: u8 = 0x5c;

    /// The kernel's compaction host over a world: its allocator and lists,
    /// the folio lock and `migrate_folio_to` (the destination's frames
    /// handed to the world's contents first, and taken back when the move
    /// is refused), the free path.
    struct Host<'w, F: HardwareWalker>(&'w World<F>);

    impl<F: HardwareWalker> CompactionHost for Host<'_, F> {
        type Error = MigrateError;

        fn frames(&self) -> &FrameAllocator {
            self.0.frames.fa()
        }
        fn lru(&self) -> &LruLists {
            self.0.lru()
        }
        fn migrate(
            &self,
            src: Folio<'static>,
            dst: UnpublishedFolio<'static>,
        ) -> Result<Folio<'static>, MigrateFailed<MigrateError>> {
            assert!(src.try_lock(), "an isolated folio nobody else holds");
            self.0.frames.adopt_unpublished(&dst);
            migrate_folio_to(self.0, src, dst).map_err(|refused| {
                src.unlock();
                self.0.frames.disown_unpublished(&refused.dst);
                MigrateFailed { why: refused.why, dst: refused.dst }
            })
        }
        fn put(&self, folio: Folio<'static>) {
            self.0.frames.put(folio);
        }
    }

    /// A world of `nr_blocks` pageblocks filled with 4 KiB pages of space
    /// 0 (written whole with [`TAG`]) down to the `min` watermark, then
    /// all but one page in every block dropped. Returns the kept pages.
    fn fragmented<F: HardwareWalker>(nr_blocks: u64) -> (World<F>, Vec<u64>) {
        let frames = SimFrames::new(BASE_PFN, (nr_blocks * PAGEBLOCK_NR) as usize).with_lru();
        let n = frames.nr_free() - frames.fa().watermarks().min - 8;
        let mut w = World::<F>::with_frames(frames);
        w.small_pages(0, AREA, n, TAG);
        let mut blocks = HashSet::new();
        let mut kept = Vec::new();
        let mut run = None;
        for i in 0..n {
            let at = AREA + i * PAGE;
            let pfn = w.leaf(0, at).1.frame.pfn().as_u64();
            if blocks.insert(pfn / PAGEBLOCK_NR) {
                kept.push(at);
                if let Some(s) = run.take() {
                    w.dontneed(0, s, at - s);
                }
            } else {
                run.get_or_insert(at);
            }
        }
        if let Some(s) = run {
            w.dontneed(0, s, AREA + n * PAGE - s);
        }
        assert_eq!(kept.len() as u64, nr_blocks);
        assert_eq!(Fragmentation::of(w.frames.fa()).nr_free_huge_blocks(), 0);
        w.check();
        (w, kept)
    }

    /// Where each kept page is, and what it holds.
    fn expect_kept<F: HardwareWalker>(w: &World<F>, kept: &[u64]) -> Vec<u64> {
        kept.iter()
            .map(|&at| {
                w.expect_page(0, at, TAG);
                let (level, leaf) = w.leaf(0, at);
                assert_eq!(level, Level::Pte);
                leaf.frame.pfn().as_u64()
            })
            .collect()
    }

    fn one_page_in_every_block_moves_with_its_mappings<F: HardwareWalker>() {
        let nr_blocks = 16;
        let (w, kept) = fragmented::<F>(nr_blocks);
        let before = expect_kept(&w, &kept);
        let stats = CompactStats::new();
        let zone = CompactZone::of_memmap(w.memmap());
        let report = zone.compact(&Host(&w), &stats, Request::whole());
        assert_eq!(report.outcome, Outcome::Complete);
        assert_eq!((report.nr_migrate_failed, report.nr_blocks_skipped), (0, 0), "{report:?}");
        // Every page but the top block's moved into the top block; its
        // mapping followed it (a PTE of the new frame, no migration entry
        // left), its bytes too.
        assert_eq!(report.nr_migrated, nr_blocks - 1);
        let after = expect_kept(&w, &kept);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as u64;
        assert_eq!(moved, nr_blocks - 1);
        let top = (BASE_PFN / PAGEBLOCK_NR) + nr_blocks - 1;
        assert!(after.iter().all(|pfn| pfn / PAGEBLOCK_NR == top), "all in the top block");
        assert!(w.entries().iter().all(|e| !matches!(e.3, Decoded::NonPresent(NonPresent::Migration(_)))));
        assert_eq!(Fragmentation::of(w.frames.fa()).nr_free_huge_blocks(), nr_blocks - 1);
        assert_eq!(stats.snapshot().compact_migrated, nr_blocks - 1);
        // The checker at rest: lists, counts, mapcounts all as they must.
        w.check();
        w.finish();
    }

    /// The fault's side as the kernel has it: a frame source whose THP
    /// faults may stall (`Defrag::Madvise`) over the world's frames.
    struct Stalling<'a>(&'a SimFrames);

    impl FrameSource for Stalling<'_> {
        fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
            self.0.alloc_anon_page(handle, index)
        }
        fn release_anon_page(&self, pa: PhysAddr) {
            self.0.release_anon_page(pa)
        }
        fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
            self.0.alloc_anon_huge(handle, index)
        }
        fn release_anon_huge(&self, pa: PhysAddr) {
            self.0.release_anon_huge(pa)
        }
        fn huge_zero(&self) -> Option<PhysAddr> {
            self.0.huge_zero()
        }
        fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
            self.0.copy_page(dst, src)
        }
        fn memmap(&self) -> &Memmap {
            FrameSource::memmap(self.0)
        }
        fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
            self.0.swap_dup(entry)
        }
        fn thp_defrag(&self) -> Option<Defrag> {
            Some(Defrag::Madvise)
        }
    }

    fn a_thp_fault_asks_for_compaction_then_maps_a_thp<F: HardwareWalker>() {
        let (mut w, kept) = fragmented::<F>(16);
        let huge_area = 0x20_0000_0000;
        let plain_area = 0x30_0000_0000;
        w.mmap(0, huge_area, HP, VmaProt::READ_WRITE);
        w.advise_thp(0, huge_area, HP, ThpMode::Always);
        w.mmap(0, plain_area, HP, VmaProt::READ_WRITE);
        let fault = |at: u64, frames: &dyn Fn(&MemFault) -> FaultOutcome| {
            frames(&MemFault {
                addr: va(at),
                access: Access::Write,
                cause: FaultCause::NotMapped,
                level: None,
                syndrome: 0,
            })
        };
        let stalling = |f: &MemFault| {
            let sp = w.sp(0);
            handle_fault(&sp.table, &sp.vmas, &w.mem, &Stalling(&w.frames), &w.tlb, f, true)
        };
        // No advice: the fault may not stall; it falls back at once.
        assert_eq!(fault(plain_area, &stalling), FaultOutcome::HugeFallback);
        // MADV_HUGEPAGE: it asks for a bounded compaction, mapping nothing.
        let out = fault(huge_area + 5 * PAGE, &stalling);
        assert_eq!(
            out,
            FaultOutcome::NeedsCompaction { page: va(huge_area + 5 * PAGE), request: Request::thp_fault() }
        );
        assert!(matches!(w.lookup(0, huge_area), (_, Decoded::None)));
        // The caller compacts without the lock, then handles the same
        // fault once more with compaction off: a THP.
        let stats = CompactStats::new();
        let report = CompactZone::of_memmap(w.memmap()).compact(&Host(&w), &stats, Request::thp_fault());
        assert_eq!((report.outcome, report.nr_migrated), (Outcome::Success, 1));
        assert_eq!(w.fault(0, huge_area + 5 * PAGE, Access::Write), FaultOutcome::MappedHuge);
        assert_eq!(w.leaf(0, huge_area).0, Level::Pmd);
        expect_kept(&w, &kept);
        w.check();
        w.finish();
    }

    mm::for_both_formats!(
        one_page_in_every_block_moves_with_its_mappings,
        a_thp_fault_asks_for_compaction_then_maps_a_thp
    );
}
