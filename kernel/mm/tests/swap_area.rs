//! One swap area (`mm::swap::area`): allocation of aligned runs from
//! clusters, the header and bad pages never handed out, swap counts,
//! HAS_CACHE claims, the swap cache, and a long random run against a
//! simple model.

use std::collections::{BTreeMap, BTreeSet};

use mm::pgtable::format::SwapEntry;
use mm::pgtable::SwapType;
use mm::swap::area::{
    AreaError, CacheError, ClaimError, SlotError, SwapArea, CLUSTER_SLOTS, MAX_ALLOC_ORDER, MAX_SWAP_COUNT,
};
use mm::swap::header::{format, parse, SwapHeader};
use mm::testkit::rng::Rng;
use mm::Pfn;

const TY: SwapType = SwapType::nth(3);

fn header(total_pages: u64, bad: &[u32]) -> SwapHeader {
    parse(&format(total_pages, bad, b"test").unwrap(), total_pages).unwrap()
}

fn area(total_pages: u64, bad: &[u32]) -> SwapArea {
    let a = SwapArea::new(TY, &header(total_pages, bad));
    a.check().unwrap();
    a
}

fn entry(offset: u64) -> SwapEntry {
    SwapEntry::new(TY, offset).unwrap()
}

/// An area of two clusters and one slot allocated in it.
fn one_slot() -> (SwapArea, SwapEntry) {
    let a = area(CLUSTER_SLOTS * 2, &[]);
    let e = a.alloc(0).unwrap();
    (a, e)
}

/// Allocates until `alloc(order)` fails; returns the first offsets.
fn alloc_all(a: &SwapArea, order: u8) -> Vec<u64> {
    std::iter::from_fn(|| a.alloc(order)).map(|e| e.offset()).collect()
}

/// An area whose slot map would not fit the budget is refused with the
/// largest size that would, before anything is allocated: 56 GiB of swap
/// (14 MiB of map) used to take the kernel's whole 16 MiB heap and panic.
#[test]
fn an_area_too_large_for_its_budget_is_refused() {
    const BUDGET: u64 = 4 << 20;
    let huge = header(56 << 18, &[]); // 56 GiB in pages
    assert!(SwapArea::footprint(&huge) > 14 << 20);
    let Err(AreaError::TooLarge { nr_pages, footprint, budget, max_pages }) =
        SwapArea::try_new(TY, &huge, BUDGET)
    else {
        panic!("a 56 GiB area fit a 4 MiB budget");
    };
    assert_eq!((nr_pages, footprint, budget), (56 << 18, SwapArea::footprint(&huge), BUDGET));
    let message = AreaError::TooLarge { nr_pages, footprint, budget, max_pages }.to_string();
    assert!(message.contains("57344 MiB") && message.contains("at most"), "{message}");
    // `max_pages` is exactly the largest area within the budget.
    let fits = header(max_pages, &[]);
    assert!(SwapArea::footprint(&fits) <= BUDGET);
    assert!(SwapArea::footprint(&header(max_pages + 1, &[])) > BUDGET);
    let a = SwapArea::try_new(TY, &fits, BUDGET).unwrap();
    assert_eq!(a.nr_slots(), max_pages - 1);
    a.check().unwrap();
    for budget in [0, 1, 20, 21, 531, 532, 533, 552, 1064, 1065, 99_999] {
        let n = SwapArea::max_pages_within(budget);
        if n >= 2 {
            // (A header needs 2 pages at least.)
            assert!(SwapArea::footprint(&header(n, &[])) <= budget, "budget {budget}: {n} pages");
            assert!(SwapArea::footprint(&header(n + 1, &[])) > budget, "budget {budget}: {n} + 1 pages");
        }
    }
}

#[test]
fn every_order_is_aligned_contiguous_and_unique() {
    let a = area(CLUSTER_SLOTS * 24, &[]);
    let mut taken = BTreeSet::new();
    for order in 0..=MAX_ALLOC_ORDER {
        let nr = 1u64 << order;
        for _ in 0..3 {
            let e = a.alloc(order).unwrap_or_else(|| panic!("order {order} failed"));
            assert_eq!(e.ty(), TY);
            assert_eq!(e.offset() % nr, 0, "order {order} run at {:#x} misaligned", e.offset());
            for s in e.offset()..e.offset() + nr {
                assert!(taken.insert(s), "slot {s:#x} handed out twice");
                assert_eq!(a.count(entry(s)), 0);
                assert!(a.has_cache(entry(s)));
            }
        }
    }
    assert_eq!(a.nr_used(), taken.len() as u64);
    assert_eq!(a.nr_free(), a.nr_slots() - taken.len() as u64);
    a.check().unwrap();
}

#[test]
fn header_and_bad_pages_are_never_handed_out() {
    // Cluster 1 has one bad page (700), cluster 3 another (2047, its last
    // slot), cluster 0 has the header.
    let bad = [700, 2047];
    let a = area(CLUSTER_SLOTS * 4, &bad);
    assert_eq!(a.nr_slots(), CLUSTER_SLOTS * 4 - 1 - 2);
    assert_eq!(a.count(entry(700)), 0);
    assert!(!a.has_cache(entry(700)));
    // Only cluster 2 is whole: one order-9 run, then none.
    let e = a.alloc(9).unwrap();
    assert_eq!(e.offset(), 2 * CLUSTER_SLOTS);
    assert_eq!(a.alloc(9), None, "an order-9 run over the header or a bad page");
    // Order 0 takes every other good slot, and only those.
    let rest = alloc_all(&a, 0);
    assert_eq!(rest.len() as u64, a.nr_slots() - CLUSTER_SLOTS);
    let all: BTreeSet<u64> = rest.iter().copied().chain(e.offset()..e.offset() + CLUSTER_SLOTS).collect();
    assert_eq!(all.len() as u64, a.nr_slots(), "a slot handed out twice");
    assert!(!all.contains(&0) && !all.contains(&700) && !all.contains(&2047));
    assert_eq!(a.nr_free(), 0);
    // Bad slots refuse everything.
    assert_eq!(a.dup(entry(700)), Err(SlotError::Bad { offset: 700 }));
    assert_eq!(a.free_ref(entry(700)), Err(SlotError::Bad { offset: 700 }));
    assert_eq!(a.claim_cache(entry(700), 1), Err(ClaimError::Slot(SlotError::Bad { offset: 700 })));
    assert_eq!(a.release_cache(entry(700), 1), Err(SlotError::Bad { offset: 700 }));
    assert_eq!(
        a.cache_add(entry(700), 1, Pfn::new(5)),
        Err(CacheError::Slot(SlotError::Bad { offset: 700 }))
    );
    a.check().unwrap();
}

#[test]
fn large_orders_avoid_bad_pages_in_every_cluster() {
    // A bad page in each of clusters 1 and 2: order 3 runs come from the
    // whole cluster 3 only, then fail.
    let a = area(CLUSTER_SLOTS * 4, &[600, 1100]);
    let runs = alloc_all(&a, 3);
    assert_eq!(runs.len() as u64, CLUSTER_SLOTS / 8);
    assert!(runs.iter().all(|&r| r / CLUSTER_SLOTS == 3));
}

#[test]
fn short_last_cluster_serves_order_zero_only() {
    let a = area(CLUSTER_SLOTS + 100, &[]);
    assert_eq!(a.alloc(1), None, "no whole cluster");
    let all = alloc_all(&a, 0);
    assert_eq!(all.len() as u64, CLUSTER_SLOTS + 99);
    assert!(all.iter().all(|s| (1..CLUSTER_SLOTS + 100).contains(s)));
}

#[test]
fn exhaustion_then_freeing_makes_room() {
    let a = area(CLUSTER_SLOTS * 3, &[]);
    let nines = alloc_all(&a, 9);
    assert_eq!(nines.len(), 2, "clusters 1 and 2 (cluster 0 has the header)");
    let ones = alloc_all(&a, 0);
    assert_eq!(ones.len() as u64, CLUSTER_SLOTS - 1);
    assert_eq!(a.nr_free(), 0);
    assert_eq!(a.alloc(0), None);
    // Releasing a fresh run (count 0) frees it; the cluster is free again
    // and serves any order.
    a.release_cache(entry(nines[0]), CLUSTER_SLOTS).unwrap();
    assert_eq!(a.nr_free(), CLUSTER_SLOTS);
    assert_eq!(a.alloc(4).map(|e| e.offset()), Some(nines[0]));
    // An order-0 slot comes back.
    a.release_cache(entry(ones[7]), 1).unwrap();
    assert_eq!(a.alloc(0).map(|e| e.offset()), Some(ones[7]));
    a.check().unwrap();
}

#[test]
fn order_nine_fails_when_fragmented_but_order_zero_succeeds() {
    let a = area(CLUSTER_SLOTS * 3, &[]);
    let all = alloc_all(&a, 0);
    assert_eq!(all.len() as u64, a.nr_slots());
    // Free one slot in the middle of each cluster.
    for c in 0..3 {
        a.release_cache(entry(c * CLUSTER_SLOTS + 300), 1).unwrap();
    }
    assert_eq!(a.nr_free(), 3);
    assert_eq!(a.alloc(9), None);
    assert_eq!(a.alloc(1), None);
    let got: BTreeSet<u64> = alloc_all(&a, 0).into_iter().collect();
    assert_eq!(got, BTreeSet::from([300, 812, 1324]));
    a.check().unwrap();
}

#[test]
fn order_zero_falls_back_to_clusters_of_other_orders() {
    let a = area(CLUSTER_SLOTS * 2, &[]);
    // Cluster 1 serves order 2; fill cluster 0 with order 0.
    let four = a.alloc(2).unwrap().offset();
    assert_eq!(four / CLUSTER_SLOTS, 1);
    assert_eq!(alloc_all(&a, 0).len() as u64, a.nr_slots() - 4);
    assert_eq!(a.nr_free(), 0);
    // Half a run of order 2 freed: order 2 finds no room, order 0 does.
    a.release_cache(entry(four + 1), 1).unwrap();
    assert_eq!(a.alloc(2), None);
    assert_eq!(a.alloc(0).map(|e| e.offset()), Some(four + 1));
}

#[test]
fn a_large_order_prefers_its_current_cluster() {
    let a = area(CLUSTER_SLOTS * 4, &[]);
    let first = a.alloc(4).unwrap().offset();
    let second = a.alloc(4).unwrap().offset();
    let other = a.alloc(3).unwrap().offset();
    assert_eq!(first / CLUSTER_SLOTS, second / CLUSTER_SLOTS);
    assert_ne!(other / CLUSTER_SLOTS, first / CLUSTER_SLOTS, "orders share no cluster");
    assert_eq!(a.alloc(0).unwrap().offset() / CLUSTER_SLOTS, 0, "order 0 starts in the header's cluster");
}

#[test]
fn orders_beyond_a_cluster_are_refused() {
    let a = area(CLUSTER_SLOTS * 4, &[]);
    assert_eq!(a.alloc(MAX_ALLOC_ORDER + 1), None);
    assert_eq!(a.nr_free(), a.nr_slots());
}

#[test]
fn dup_and_free_ref_count_page_table_references() {
    let (a, e) = one_slot();
    assert_eq!(a.dup(e), Ok(1));
    assert_eq!(a.dup(e), Ok(2));
    assert_eq!(a.count(e), 2);
    assert_eq!(a.free_ref(e), Ok(1));
    // The cache still holds it: count 0 does not free.
    assert_eq!(a.free_ref(e), Ok(0));
    assert_eq!(a.free_ref(e), Err(SlotError::NoReference { offset: e.offset() }));
    assert!(a.has_cache(e));
    assert_eq!(a.nr_used(), 1);
    a.release_cache(e, 1).unwrap();
    assert_eq!(a.nr_used(), 0);
    assert_eq!(a.dup(e), Err(SlotError::Free { offset: e.offset() }));
    // Released first, then the last reference goes.
    let e = a.alloc(0).unwrap();
    a.dup(e).unwrap();
    a.release_cache(e, 1).unwrap();
    assert_eq!(a.nr_used(), 1, "a referenced slot stays used without the cache");
    assert_eq!(a.release_cache(e, 1), Err(SlotError::NotCached { offset: e.offset() }));
    assert_eq!(a.free_ref(e), Ok(0));
    assert_eq!(a.nr_used(), 0);
    a.check().unwrap();
}

#[test]
fn dup_stops_at_the_largest_count() {
    let (a, e) = one_slot();
    for n in 1..=MAX_SWAP_COUNT {
        assert_eq!(a.dup(e), Ok(n));
    }
    let err = a.dup(e).unwrap_err();
    assert_eq!(err, SlotError::CountMax { offset: e.offset() });
    assert!(err.to_string().contains("62 references"), "{err}");
    assert_eq!(a.count(e), MAX_SWAP_COUNT);
    assert!(a.has_cache(e), "the count never spills into HAS_CACHE");
}

#[test]
fn entries_outside_the_area_are_refused() {
    let a = area(CLUSTER_SLOTS * 2, &[]);
    let other = SwapEntry::new(SwapType::nth(4), 5).unwrap();
    assert_eq!(a.dup(other), Err(SlotError::WrongArea { ty: SwapType::nth(4), area: TY }));
    let beyond = entry(CLUSTER_SLOTS * 2);
    let out = SlotError::OutOfRange { offset: CLUSTER_SLOTS * 2, nr: 1, nr_pages: CLUSTER_SLOTS * 2 };
    assert_eq!(a.free_ref(beyond), Err(out));
    assert_eq!(a.count(beyond), 0);
    assert!(!a.has_cache(beyond));
    assert_eq!(a.cache_lookup_with(beyond, |p, i| (p.as_u64(), i)), None);
    let e = entry(CLUSTER_SLOTS * 2 - 2);
    assert!(matches!(a.claim_cache(e, 4), Err(ClaimError::Slot(SlotError::OutOfRange { nr: 4, .. }))));
    assert!(matches!(a.claim_cache(e, 0), Err(ClaimError::Slot(SlotError::OutOfRange { nr: 0, .. }))));
    assert!(matches!(a.release_cache(e, u64::MAX), Err(SlotError::OutOfRange { .. })));
}

#[test]
fn claim_needs_references_and_no_cache() {
    let a = area(CLUSTER_SLOTS * 2, &[]);
    // Swap-out of an order-2 folio: four slots, two PTEs each.
    let e = a.alloc(2).unwrap();
    let o = e.offset();
    for s in o..o + 4 {
        a.dup(entry(s)).unwrap();
        a.dup(entry(s)).unwrap();
    }
    // Still in the cache: busy.
    assert_eq!(a.claim_cache(e, 4), Err(ClaimError::Busy { offset: o }));
    assert_eq!(a.claim_cache(entry(o + 2), 1), Err(ClaimError::Busy { offset: o + 2 }));
    // Written and dropped from the cache: claimable, once.
    a.release_cache(e, 4).unwrap();
    assert_eq!(a.claim_cache(e, 4), Ok(()));
    assert!((o..o + 4).all(|s| a.has_cache(entry(s))));
    assert_eq!(a.claim_cache(entry(o + 3), 1), Err(ClaimError::Busy { offset: o + 3 }));
    a.release_cache(e, 4).unwrap();
    // One slot loses its references: the claim of the whole run sees it,
    // and changes nothing.
    a.free_ref(entry(o + 1)).unwrap();
    a.free_ref(entry(o + 1)).unwrap();
    assert_eq!(a.claim_cache(e, 4), Err(ClaimError::Unused { offset: o + 1 }));
    assert!((o..o + 4).all(|s| !a.has_cache(entry(s))));
    // Unused wins over Busy: waiting for the cache would not help.
    a.claim_cache(entry(o + 2), 1).unwrap();
    assert_eq!(a.claim_cache(e, 4), Err(ClaimError::Unused { offset: o + 1 }));
    let msg = ClaimError::Unused { offset: o + 1 }.to_string();
    assert!(msg.contains("freed"), "{msg}");
    assert!(ClaimError::Busy { offset: 1 }.to_string().contains("busy"));
    // A claimed slot outlives its last reference until released.
    a.free_ref(entry(o + 2)).unwrap();
    assert_eq!(a.free_ref(entry(o + 2)), Ok(0));
    assert!(a.has_cache(entry(o + 2)));
    assert_eq!(a.dup(entry(o + 2)), Ok(1), "still used, not free");
    a.free_ref(entry(o + 2)).unwrap();
    let used_before = a.nr_used();
    a.release_cache(entry(o + 2), 1).unwrap();
    assert_eq!(a.nr_used(), used_before - 1);
    a.check().unwrap();
}

#[test]
fn cache_of_a_512_page_folio() {
    let a = area(CLUSTER_SLOTS * 3, &[]);
    let pfn = 0x4_0000;
    let e = a.alloc(9).unwrap();
    let o = e.offset();
    assert_eq!(a.cache_lookup_with(e, |p, i| (p.as_u64(), i)), None);
    a.cache_add(e, CLUSTER_SLOTS, Pfn::new(pfn)).unwrap();
    assert_eq!(a.nr_in_cache(), CLUSTER_SLOTS);
    for i in [0, 1, 255, 511] {
        assert_eq!(a.cache_lookup_with(entry(o + i), |p, idx| (p.as_u64(), idx)), Some((pfn, i as usize)));
    }
    // The slots around it are not in the cache.
    assert_eq!(a.cache_lookup_with(entry(o - 1), |p, i| (p.as_u64(), i)), None);
    assert_eq!(a.cache_lookup_with(entry(o + CLUSTER_SLOTS), |p, i| (p.as_u64(), i)), None);
    // Adding over it, even partly, is refused.
    assert_eq!(a.cache_add(entry(o + 8), 8, Pfn::new(7)), Err(CacheError::Occupied { offset: o + 8 }));
    // Releasing the slots while the folio is cached is refused.
    assert_eq!(a.release_cache(entry(o + 100), 1), Err(SlotError::StillInCache { offset: o + 100 }));
    assert_eq!(a.release_cache(e, CLUSTER_SLOTS), Err(SlotError::StillInCache { offset: o }));
    // Deleting must name the folio exactly.
    assert_eq!(
        a.cache_delete(e, CLUSTER_SLOTS, Pfn::new(pfn + 1)),
        Err(CacheError::OtherFolio { offset: o, first: o, nr: CLUSTER_SLOTS, pfn })
    );
    assert_eq!(
        a.cache_delete(entry(o + 4), 4, Pfn::new(pfn)),
        Err(CacheError::OtherFolio { offset: o + 4, first: o, nr: CLUSTER_SLOTS, pfn })
    );
    a.cache_delete(e, CLUSTER_SLOTS, Pfn::new(pfn)).unwrap();
    assert_eq!(a.cache_delete(e, CLUSTER_SLOTS, Pfn::new(pfn)), Err(CacheError::Absent { offset: o }));
    assert_eq!(a.nr_in_cache(), 0);
    assert_eq!(a.cache_lookup_with(entry(o + 3), |p, i| (p.as_u64(), i)), None);
    a.release_cache(e, CLUSTER_SLOTS).unwrap();
    assert_eq!(a.nr_used(), 0);
    a.check().unwrap();
}

#[test]
fn cache_add_needs_has_cache() {
    let (a, e) = one_slot();
    a.dup(e).unwrap();
    a.release_cache(e, 1).unwrap();
    let err = a.cache_add(e, 1, Pfn::new(9)).unwrap_err();
    assert_eq!(err, CacheError::NotClaimed { offset: e.offset() });
    assert!(err.to_string().contains("claim"), "{err}");
    // Swap-in: claim, add, look up, delete, release.
    a.claim_cache(e, 1).unwrap();
    a.cache_add(e, 1, Pfn::new(9)).unwrap();
    assert_eq!(a.cache_lookup_with(e, |p, i| (p.as_u64(), i)), Some((9, 0)));
    a.cache_delete(e, 1, Pfn::new(9)).unwrap();
    a.release_cache(e, 1).unwrap();
    assert_eq!(a.count(e), 1);
    a.check().unwrap();
}

#[test]
fn stop_alloc_refuses_new_slots_only() {
    let (a, e) = one_slot();
    a.dup(e).unwrap();
    assert!(!a.alloc_stopped());
    a.stop_alloc();
    assert!(a.alloc_stopped());
    for order in 0..=MAX_ALLOC_ORDER {
        assert_eq!(a.alloc(order), None);
    }
    a.release_cache(e, 1).unwrap();
    a.claim_cache(e, 1).unwrap();
    a.release_cache(e, 1).unwrap();
    assert_eq!(a.free_ref(e), Ok(0));
    assert_eq!(a.alloc(0), None);
}

#[test]
fn used_slots_lists_them_in_order() {
    let a = area(CLUSTER_SLOTS * 4, &[]);
    let mut used = BTreeSet::new();
    for order in [0, 3, 0, 9, 1] {
        let e = a.alloc(order).unwrap();
        used.extend(e.offset()..e.offset() + (1 << order));
    }
    // Give some a reference and drop their cache: still used.
    for &s in used.iter().step_by(3) {
        a.dup(entry(s)).unwrap();
        a.release_cache(entry(s), 1).unwrap();
    }
    let listed: Vec<u64> = a.used_slots().map(|e| e.offset()).collect();
    assert_eq!(listed, used.iter().copied().collect::<Vec<_>>());
    assert_eq!(a.nr_used(), used.len() as u64);
    let last = *used.last().unwrap();
    assert_eq!(a.next_used(last + 1), None);
    assert_eq!(a.next_used(0).map(|e| e.offset()), used.first().copied());
}

#[test]
fn footprint_fits_a_gigabyte_area_in_the_heap() {
    let h = header(262_144, &[]);
    let bytes = SwapArea::footprint(&h);
    assert!(bytes < 300 * 1024, "{bytes} bytes for a 1 GiB area");
    let a = SwapArea::new(SwapType::nth(0), &h);
    assert_eq!(a.nr_slots(), 262_143);
    assert_eq!(alloc_all(&a, 9).len(), 511);
    a.check().unwrap();
}

/// What the model knows of one slot.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Slot {
    count: u8,
    cache: bool,
}

/// A plain model of the area: slot states and cached folios.
struct Model {
    slots: Vec<Slot>,
    good: Vec<bool>,
    /// first slot → (nr, pfn).
    cache: BTreeMap<u64, (u64, u64)>,
    /// Runs whose HAS_CACHE the test owns: first slot → nr.
    owned: BTreeMap<u64, u64>,
}

impl Model {
    fn free(&self, s: u64) -> bool {
        self.good[s as usize] && self.slots[s as usize] == Slot::default()
    }

    fn has_free_whole_cluster(&self) -> bool {
        (0..self.slots.len() as u64 / CLUSTER_SLOTS)
            .any(|c| (c * CLUSTER_SLOTS..(c + 1) * CLUSTER_SLOTS).all(|s| self.free(s)))
    }

    fn nr_free(&self) -> u64 {
        (0..self.slots.len() as u64).filter(|&s| self.free(s)).count() as u64
    }

    fn cached(&self, s: u64) -> Option<(u64, usize)> {
        let (&first, &(nr, pfn)) = self.cache.range(..=s).next_back()?;
        (s < first + nr).then_some((pfn, (s - first) as usize))
    }

    /// A random slot with count > 0.
    fn referenced(&self, rng: &mut Rng) -> Option<u64> {
        self.pick(rng, |slot| slot.count > 0)
    }

    /// A random slot with count > 0, mostly one without HAS_CACHE.
    fn claimable(&self, rng: &mut Rng) -> Option<u64> {
        if rng.chance(70) {
            self.pick(rng, |slot| slot.count > 0 && !slot.cache)
        } else {
            self.referenced(rng)
        }
    }

    fn pick(&self, rng: &mut Rng, want: impl Fn(Slot) -> bool) -> Option<u64> {
        let found: Vec<u64> =
            (0..self.slots.len() as u64).filter(|&s| want(self.slots[s as usize])).collect();
        (!found.is_empty()).then(|| found[rng.below(found.len() as u64) as usize])
    }
}

fn random_ops(seed: u64, nr_ops: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let pages = CLUSTER_SLOTS * 6 + 77;
    let bad = [5, 600, 1500, 1501, 3100];
    let a = area(pages, &bad);
    let mut m = Model {
        slots: vec![Slot::default(); pages as usize],
        good: (0..pages).map(|s| s != 0 && !bad.contains(&(s as u32))).collect(),
        cache: BTreeMap::new(),
        owned: BTreeMap::new(),
    };
    let mut next_pfn = 0x1000;
    for step in 0..nr_ops {
        let why = format!("seed {seed:#x} step {step}");
        // Phases of filling and draining, so that the area both runs out
        // of room and empties again.
        let filling = (step / 5000) % 2 == 0;
        let mut op = rng.below(100);
        if filling && (45..=64).contains(&op) | (75..=89).contains(&op) && rng.chance(80) {
            op = 0;
        } else if !filling && op <= 24 && rng.chance(70) {
            op = 80;
        }
        match op {
            // Swap-out's allocation, often followed by a cache add.
            0..=24 => {
                let order = if rng.chance(60) { 0 } else { rng.below(MAX_ALLOC_ORDER as u64 + 1) as u8 };
                let nr = 1u64 << order;
                match a.alloc(order) {
                    Some(e) => {
                        let o = e.offset();
                        assert_eq!(o % nr, 0, "{why}: misaligned");
                        assert_eq!(
                            o / CLUSTER_SLOTS,
                            (o + nr - 1) / CLUSTER_SLOTS,
                            "{why}: crosses a cluster"
                        );
                        for s in o..o + nr {
                            assert!(m.free(s), "{why}: slot {s:#x} was not free");
                            m.slots[s as usize].cache = true;
                        }
                        m.owned.insert(o, nr);
                        if rng.chance(70) {
                            a.cache_add(e, nr, Pfn::new(next_pfn)).unwrap();
                            m.cache.insert(o, (nr, next_pfn));
                            next_pfn += 1024;
                        }
                    }
                    None if order == 0 => assert_eq!(m.nr_free(), 0, "{why}: order 0 refused with room"),
                    None => assert!(
                        !m.has_free_whole_cluster(),
                        "{why}: order {order} refused, a cluster is free"
                    ),
                }
            }
            // A PTE takes a reference on an owned slot or a used one.
            25..=44 => {
                let nth = rng.below(m.owned.len().max(1) as u64) as usize;
                let s = match (rng.bool(), m.owned.iter().nth(nth)) {
                    (true, Some((&first, &nr))) => first + rng.below(nr),
                    _ => match m.referenced(&mut rng) {
                        Some(s) => s,
                        None => continue,
                    },
                };
                let slot = m.slots[s as usize];
                let got = a.dup(entry(s));
                if slot.count == MAX_SWAP_COUNT {
                    assert_eq!(got, Err(SlotError::CountMax { offset: s }), "{why}");
                } else {
                    assert_eq!(got, Ok(slot.count + 1), "{why}");
                    m.slots[s as usize].count += 1;
                }
            }
            // A PTE drops its reference.
            45..=64 => {
                let Some(s) = m.referenced(&mut rng) else { continue };
                assert_eq!(a.free_ref(entry(s)), Ok(m.slots[s as usize].count - 1), "{why}");
                m.slots[s as usize].count -= 1;
            }
            // Swap-in claims a run (maybe of a dropped entry).
            65..=74 => {
                let nr = if rng.chance(80) { 1 } else { 1 << rng.below(4) };
                let s = match m.claimable(&mut rng) {
                    Some(s) if rng.chance(80) => (s / nr * nr).max(nr),
                    _ => 1 + rng.below(pages - nr),
                };
                let got = a.claim_cache(entry(s), nr);
                let range = s..s + nr;
                // The first bad or unused slot is reported; else the first
                // busy one.
                let first_problem =
                    range.clone().find(|&t| !m.good[t as usize] || m.slots[t as usize].count == 0);
                let want = match first_problem {
                    Some(t) if !m.good[t as usize] => Err(ClaimError::Slot(SlotError::Bad { offset: t })),
                    Some(t) => Err(ClaimError::Unused { offset: t }),
                    None => match range.clone().find(|&t| m.slots[t as usize].cache) {
                        Some(t) => Err(ClaimError::Busy { offset: t }),
                        None => Ok(()),
                    },
                };
                assert_eq!(got, want, "{why}: claim {s:#x} +{nr}");
                if got.is_ok() {
                    for t in range {
                        m.slots[t as usize].cache = true;
                    }
                    m.owned.insert(s, nr);
                }
            }
            // The owner of a cache position finishes: deletes its folio
            // (if added) and releases.
            75..=89 => {
                let Some((&first, &nr)) = m.owned.iter().nth(rng.below(m.owned.len().max(1) as u64) as usize)
                else {
                    continue;
                };
                if let Some((nr_c, pfn)) = m.cache.remove(&first) {
                    assert_eq!(nr_c, nr);
                    assert_eq!(
                        a.release_cache(entry(first), nr),
                        Err(SlotError::StillInCache { offset: first }),
                        "{why}"
                    );
                    a.cache_delete(entry(first), nr, Pfn::new(pfn)).unwrap();
                }
                a.release_cache(entry(first), nr).unwrap();
                m.owned.remove(&first);
                for s in first..first + nr {
                    m.slots[s as usize].cache = false;
                }
            }
            // Lookups of random slots.
            _ => {
                for _ in 0..4 {
                    let s = 1 + rng.below(pages - 1);
                    assert_eq!(
                        a.cache_lookup_with(entry(s), |p, i| (p.as_u64(), i)),
                        m.cached(s),
                        "{why}: {s:#x}"
                    );
                    let want = if m.good[s as usize] { m.slots[s as usize] } else { Slot::default() };
                    assert_eq!((a.count(entry(s)), a.has_cache(entry(s))), (want.count, want.cache), "{why}");
                }
            }
        }
        if step % 500 == 0 {
            a.check().unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(a.nr_free(), m.nr_free(), "{why}");
        }
    }
    a.check().unwrap();
    assert_eq!(a.nr_free(), m.nr_free());
    assert_eq!(a.nr_in_cache(), m.cache.values().map(|&(nr, _)| nr).sum::<u64>());
    let used: Vec<u64> = (1..pages).filter(|&s| m.good[s as usize] && !m.free(s)).collect();
    assert_eq!(a.used_slots().map(|e| e.offset()).collect::<Vec<_>>(), used);
}

#[test]
fn random_operations_match_a_model() {
    for seed in [1, 2, 3] {
        random_ops(seed, 20_000);
    }
}
