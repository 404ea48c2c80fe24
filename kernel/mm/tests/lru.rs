//! The anonymous LRU lists (`mm::lru`) on the host: the order of add,
//! remove, isolate and putback, the second chance of referenced folios,
//! folios being freed left alone by the scan, deactivation and balance,
//! large folios as one element, the consistency check, a few threads at
//! once, and a long run of random operations against a `VecDeque` model.
//!
//! The world: `mm::testkit`'s `SimFrames` with the LRU lists (a real
//! `FrameAllocator` over a leaked memmap of 8192 pages, room for a few
//! 2 MiB folios), anonymous folios made as the fault path makes them
//! (`SimFrames::alloc_anon`: one mapping, one reference), and the free path
//! as the module doc of `mm::lru` describes it:
//! whoever drops the last reference removes the folio from its list, then
//! frees it. Every test ends with every frame back in the allocator.

use mm::testkit::rng::Rng;

use mm::anon::remove_pte_mapping;
use mm::folio::{AnonHandle, Folio};
use mm::frame::AllocKind;
use mm::lru::{LruCounts, LruList, LruLists};
use mm::page::PageFlag;
use mm::testkit::frames::SimFrames;
use mm::thp::{remove_pmd_mapping, HPAGE_NR};
use mm::{Pfn, PhysAddr};
use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};

const BASE_PFN: u64 = 0x80000;
const NR_FRAMES: usize = 8192;
/// The space all these folios belong to: a root table in frame 0x4242.
fn handle() -> AnonHandle {
    AnonHandle::of_root(PhysAddr::new(0x4242 << 12))
}

/// The lists over [`SimFrames`] (whose free path takes a folio off its
/// list first), and the views and checks of these tests.
struct World {
    frames: SimFrames,
    lru: &'static LruLists,
    nr_free: u64,
    next_index: Cell<u64>,
}

impl World {
    fn new() -> World {
        let frames = SimFrames::new(BASE_PFN, NR_FRAMES).with_lru();
        World { lru: frames.lru(), nr_free: frames.nr_free(), frames, next_index: Cell::new(0) }
    }

    /// A world and `n` new small folios, added in this order.
    fn with_added(n: usize) -> (World, Vec<Folio<'static>>) {
        let w = World::new();
        let f = w.added_n(n);
        (w, f)
    }

    /// A new mapped anonymous folio, small or huge, not on a list; `None`
    /// when memory is short.
    fn try_folio(&self, huge: bool) -> Option<Folio<'static>> {
        let index = self.next_index.get();
        self.next_index.set(index + HPAGE_NR as u64);
        self.frames.alloc_anon(AllocKind::Reserve, huge, handle(), index)
    }

    /// A new small folio on the inactive list, as the fault path leaves it.
    fn added(&self) -> Folio<'static> {
        let f = self.try_folio(false).unwrap();
        self.lru.add(f);
        f
    }

    /// `n` new small folios, added in this order.
    fn added_n(&self, n: usize) -> Vec<Folio<'static>> {
        (0..n).map(|_| self.added()).collect()
    }

    /// Clears the folio's one mapping (it keeps the mapping's reference).
    fn unmap(&self, f: Folio<'static>) {
        let pa = f.pfn().phys();
        if f.is_large() {
            remove_pmd_mapping(self.frames.memmap(), pa);
        } else {
            remove_pte_mapping(self.frames.memmap(), pa);
        }
    }

    /// Unmaps a folio and drops the mapping's reference, which must be the
    /// last.
    fn release(&self, f: Folio<'static>) {
        self.unmap(f);
        assert!(self.frames.put(f), "pfn {:#x} had other references", f.pfn());
    }

    fn list(&self, which: LruList) -> Vec<Pfn> {
        let mut pfns = Vec::new();
        self.lru.for_each(|pfn, list| {
            if list == which {
                pfns.push(pfn)
            }
        });
        pfns
    }

    fn inactive(&self) -> Vec<Pfn> {
        self.list(LruList::Inactive)
    }

    fn active(&self) -> Vec<Pfn> {
        self.list(LruList::Active)
    }

    fn check(&self) {
        self.lru.check().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Checks the lists, drops reclaim's reference on each of `isolated`,
    /// releases each of `folios` (whose mapping holds the last reference),
    /// then [`World::finish`].
    fn release_all(&self, isolated: &[Folio<'static>], folios: &[Folio<'static>]) {
        self.check();
        for &x in isolated {
            assert!(!self.frames.put(x), "pfn {:#x}: reclaim's reference was the last", x.pfn());
        }
        for &x in folios {
            self.release(x);
        }
        self.finish();
    }

    /// Every folio gone: empty lists, every frame back.
    fn finish(&self) {
        self.check();
        assert_eq!(self.lru.counts(), LruCounts::default());
        assert_eq!(self.frames.nr_free(), self.nr_free, "frames leaked");
        assert_eq!(self.frames.nr_data_frames(), 0);
        self.frames.fa().check_consistency().unwrap();
    }
}

fn pfns(folios: &[Folio<'_>]) -> Vec<Pfn> {
    folios.iter().map(|f| f.pfn()).collect()
}

fn counts(nr_active: u64, nr_inactive: u64, nr_active_pages: u64, nr_inactive_pages: u64) -> LruCounts {
    LruCounts { nr_active, nr_inactive, nr_active_pages, nr_inactive_pages }
}

// ------------------------------------------------------------ basic order

#[test]
fn new_folios_go_on_the_inactive_head() {
    let (w, f) = World::with_added(3);
    assert_eq!(w.inactive(), vec![f[2].pfn(), f[1].pfn(), f[0].pfn()], "newest first");
    assert!(w.active().is_empty());
    assert_eq!(w.lru.counts(), counts(0, 3, 0, 3));
    assert_eq!((w.lru.nr_active(), w.lru.nr_inactive()), (0, 3));
    assert_eq!((w.lru.nr_active_pages(), w.lru.nr_inactive_pages()), (0, 3));
    for &x in &f {
        assert!(x.test_flag(PageFlag::Lru) && !x.test_flag(PageFlag::Active));
        assert_eq!(x.refcount(), 1, "the lists hold no reference");
        assert_eq!(w.lru.list_of(x.pfn()), Some(LruList::Inactive));
    }
    assert_eq!(w.lru.list_of(Pfn::new(BASE_PFN + NR_FRAMES as u64)), None);
    w.release_all(&[], &f);
}

#[test]
fn remove_takes_a_folio_off_either_list() {
    let (w, f) = World::with_added(4);
    w.lru.mark_accessed(f[1]);
    let scan = w.lru.isolate(2);
    assert_eq!(pfns(&scan.isolated), vec![f[0].pfn()]);
    assert_eq!(w.active(), vec![f[1].pfn()]);
    // From the middle of the inactive list, from the active list, and an
    // isolated folio (on no list).
    assert!(w.lru.remove(f[2]));
    assert!(w.lru.remove(f[1]));
    assert!(!w.lru.remove(f[0]));
    for x in [f[0], f[1], f[2]] {
        assert!(!x.test_flag(PageFlag::Lru) && !x.test_flag(PageFlag::Active));
        assert_eq!(w.lru.list_of(x.pfn()), None);
    }
    assert!(!w.lru.remove(f[2]), "removed once only");
    assert_eq!((w.inactive(), w.active()), (vec![f[3].pfn()], vec![]));
    assert_eq!(w.lru.counts(), counts(0, 1, 0, 1));
    w.check();
    // The isolation reference, then everything.
    assert!(!w.frames.put(f[0]));
    w.release_all(&[], &f);
}

#[test]
fn isolate_takes_the_oldest_first_with_a_reference() {
    let (w, f) = World::with_added(5);
    let scan = w.lru.isolate(2);
    assert_eq!(pfns(&scan.isolated), vec![f[0].pfn(), f[1].pfn()]);
    assert_eq!((scan.nr_scanned, scan.nr_rotated, scan.nr_skipped), (2, 0, 0));
    for x in &scan.isolated {
        assert!(!x.test_flag(PageFlag::Lru) && !x.test_flag(PageFlag::Active));
        assert_eq!(x.refcount(), 2, "the mapping's and the isolation's");
    }
    assert_eq!(w.inactive(), vec![f[4].pfn(), f[3].pfn(), f[2].pfn()]);
    w.check();
    let rest = w.lru.isolate(100);
    assert_eq!(pfns(&rest.isolated), vec![f[2].pfn(), f[3].pfn(), f[4].pfn()]);
    assert_eq!(rest.nr_scanned, 3);
    assert_eq!(w.lru.counts(), LruCounts::default());
    assert!(w.lru.isolate(100).isolated.is_empty());
    w.check();
    for x in scan.isolated.into_iter().chain(rest.isolated) {
        assert!(!w.frames.put(x));
    }
    w.release_all(&[], &f);
}

#[test]
fn referenced_folios_get_a_second_chance_on_the_active_list() {
    let (w, f) = World::with_added(4);
    w.lru.mark_accessed(f[0]);
    w.lru.mark_accessed(f[2]);
    assert!(f[0].test_flag(PageFlag::Referenced) && !f[1].test_flag(PageFlag::Referenced));
    let scan = w.lru.isolate(4);
    assert_eq!(pfns(&scan.isolated), vec![f[1].pfn(), f[3].pfn()]);
    assert_eq!((scan.nr_scanned, scan.nr_rotated, scan.nr_skipped), (4, 2, 0));
    // Rotated oldest first, each to the head.
    assert_eq!(w.active(), vec![f[2].pfn(), f[0].pfn()]);
    for x in [f[0], f[2]] {
        assert!(x.test_flag(PageFlag::Active) && x.test_flag(PageFlag::Lru));
        assert!(!x.test_flag(PageFlag::Referenced), "the second chance is spent");
        assert_eq!(x.refcount(), 1, "rotation takes no reference");
        assert_eq!(w.lru.list_of(x.pfn()), Some(LruList::Active));
    }
    w.check();
    // Deactivated, then used again while inactive: promoted again.
    assert_eq!(w.lru.shrink_active(1), 1);
    assert_eq!((w.inactive(), w.active()), (vec![f[0].pfn()], vec![f[2].pfn()]));
    w.lru.mark_accessed(f[0]);
    let again = w.lru.isolate(10);
    assert!(again.isolated.is_empty() && again.nr_rotated == 1);
    assert_eq!(w.active(), vec![f[0].pfn(), f[2].pfn()]);
    w.release_all(&scan.isolated, &f);
}

#[test]
fn nr_to_scan_counts_every_folio_looked_at() {
    let (w, f) = World::with_added(5);
    w.lru.mark_accessed(f[0]);
    w.lru.mark_accessed(f[1]);
    let scan = w.lru.isolate(3);
    assert_eq!((scan.nr_scanned, scan.nr_rotated, pfns(&scan.isolated)), (3, 2, vec![f[2].pfn()]));
    assert_eq!(w.inactive(), vec![f[4].pfn(), f[3].pfn()]);
    assert!(w.lru.isolate(0).isolated.is_empty());
    w.release_all(&scan.isolated, &f);
}

/// The window between a folio's last put and its removal: the scan must
/// neither isolate it (no reference can be had) nor rotate it, and leave
/// it for the free path.
#[test]
fn isolate_skips_folios_being_freed() {
    let (w, f) = World::with_added(3);
    w.lru.mark_accessed(f[1]);
    w.unmap(f[1]);
    assert!(f[1].put(), "the last reference");
    assert_eq!(f[1].refcount(), 0);
    let scan = w.lru.isolate(3);
    assert_eq!(pfns(&scan.isolated), vec![f[0].pfn(), f[2].pfn()]);
    assert_eq!((scan.nr_scanned, scan.nr_rotated, scan.nr_skipped), (3, 0, 1));
    assert_eq!((w.inactive(), w.active()), (vec![f[1].pfn()], vec![]));
    assert!(f[1].test_flag(PageFlag::Lru), "still on the list, for the free path");
    w.check();
    // The free path goes on.
    assert!(w.lru.remove(f[1]));
    w.frames.free(f[1]);
    w.check();
    for x in scan.isolated {
        assert!(!w.frames.put(x));
        w.release(x);
    }
    w.finish();
}

#[test]
fn putback_to_either_list_at_its_head() {
    let (w, f) = World::with_added(4);
    let scan = w.lru.isolate(2);
    let [a, b] = [scan.isolated[0], scan.isolated[1]];
    w.lru.putback(a, LruList::Active);
    w.lru.putback(b, LruList::Inactive);
    assert_eq!(w.active(), vec![a.pfn()]);
    assert_eq!(w.inactive(), vec![b.pfn(), f[3].pfn(), f[2].pfn()]);
    assert!(a.test_flag(PageFlag::Active) && a.test_flag(PageFlag::Lru));
    assert!(!b.test_flag(PageFlag::Active) && b.test_flag(PageFlag::Lru));
    assert_eq!(w.lru.counts(), counts(1, 3, 1, 3));
    // Reclaim drops its references: not the last ones.
    assert!(!w.frames.put(a) && !w.frames.put(b));
    w.release_all(&[], &f);
}

/// Reclaim decided to swap the folio out: it unmaps it and drops both
/// references; the last put finds it on no list.
#[test]
fn an_isolated_folio_is_freed_without_the_lists() {
    let (w, f) = World::with_added(2);
    let scan = w.lru.isolate(1);
    let x = scan.isolated[0];
    w.unmap(x);
    assert!(!x.put());
    assert!(w.frames.put(x), "the isolation's reference was the last");
    assert_eq!(w.inactive(), vec![f[1].pfn()]);
    w.check();
    w.release(f[1]);
    w.finish();
}

// ------------------------------------------------- deactivation, balance

/// `n` small folios, all on the active list (isolated and put back there),
/// the oldest at the tail.
fn all_active(w: &World, n: usize) -> Vec<Folio<'static>> {
    let f = w.added_n(n);
    for x in w.lru.isolate(n).isolated {
        w.lru.putback(x, LruList::Active);
        assert!(!w.frames.put(x));
    }
    assert_eq!(w.lru.counts(), counts(n as u64, 0, n as u64, 0));
    f
}

#[test]
fn shrink_active_moves_the_active_tail_to_the_inactive_head() {
    let w = World::new();
    let f = all_active(&w, 4);
    assert_eq!(w.active(), vec![f[3].pfn(), f[2].pfn(), f[1].pfn(), f[0].pfn()]);
    w.lru.mark_accessed(f[0]);
    assert_eq!(w.lru.shrink_active(2), 2);
    assert_eq!(w.inactive(), vec![f[1].pfn(), f[0].pfn()]);
    assert_eq!(w.active(), vec![f[3].pfn(), f[2].pfn()]);
    for x in [f[0], f[1]] {
        assert!(!x.test_flag(PageFlag::Active) && !x.test_flag(PageFlag::Referenced));
    }
    assert_eq!(w.lru.shrink_active(100), 2);
    assert_eq!(w.lru.shrink_active(100), 0);
    assert_eq!(w.lru.counts(), counts(0, 4, 0, 4));
    w.release_all(&[], &f);
}

#[test]
fn balance_keeps_the_inactive_list_as_large_as_the_active_one() {
    let w = World::new();
    let f = all_active(&w, 6);
    assert!(w.lru.inactive_is_low());
    assert_eq!(w.lru.balance(1), 1, "bounded by nr_to_scan");
    assert_eq!(w.lru.balance(100), 2);
    assert_eq!(w.lru.counts(), counts(3, 3, 3, 3));
    assert!(!w.lru.inactive_is_low());
    assert_eq!(w.lru.balance(100), 0, "already balanced");
    assert_eq!(w.inactive(), vec![f[2].pfn(), f[1].pfn(), f[0].pfn()], "oldest active first");
    w.release_all(&[], &f);
}

#[test]
fn a_huge_folio_is_one_element_of_512_pages() {
    let w = World::new();
    let huge = w.try_folio(true).unwrap();
    assert_eq!(huge.nr_pages(), HPAGE_NR);
    w.lru.add(huge);
    let f = w.added_n(2);
    assert_eq!(w.lru.counts(), counts(0, 3, 0, 514));
    assert_eq!(w.inactive(), vec![f[1].pfn(), f[0].pfn(), huge.pfn()]);
    // Its tails are not members.
    assert_eq!(w.lru.list_of(huge.pfn().plus(1)), None);
    assert!(!huge.page(1).test_flag(PageFlag::Lru));
    w.check();
    let scan = w.lru.isolate(1);
    assert_eq!(pfns(&scan.isolated), vec![huge.pfn()]);
    assert_eq!(w.lru.counts(), counts(0, 2, 0, 2));
    w.lru.putback(huge, LruList::Active);
    assert!(!w.frames.put(huge));
    assert_eq!(w.lru.counts(), counts(1, 2, HPAGE_NR as u64, 2));
    // 2 inactive pages against 512 active: the huge folio must go.
    assert!(w.lru.inactive_is_low());
    assert_eq!(w.lru.balance(100), 1);
    assert_eq!(w.lru.counts(), counts(0, 3, 0, 514));
    w.check();
    w.release(huge);
    assert_eq!(w.lru.counts(), counts(0, 2, 0, 2));
    w.release_all(&[], &f);
}

// ------------------------------------------------------------- the check

/// What an integration test can break without `unsafe`: the flags (links
/// are crate-private; `lru::tests::check_catches_broken_links` breaks
/// those).
#[test]
fn check_catches_flags_out_of_place() {
    let (w, f) = World::with_added(3);
    w.check();
    f[1].clear_flag(PageFlag::Lru);
    let e = w.lru.check().unwrap_err();
    assert!(e.contains("without Lru"), "{e}");
    f[1].set_flag(PageFlag::Lru);

    f[1].set_flag(PageFlag::Active);
    let e = w.lru.check().unwrap_err();
    assert!(e.contains("Active wrong"), "{e}");
    f[1].clear_flag(PageFlag::Active);
    w.check();

    // A folio off the lists with Lru set (seed 003's leftover bit).
    let x = w.lru.isolate(1).isolated[0];
    x.set_flag(PageFlag::Lru);
    let e = w.lru.check().unwrap_err();
    assert!(e.contains("2 are on the lists"), "{e}");
    x.clear_flag(PageFlag::Lru);
    x.set_flag(PageFlag::Active);
    let e = w.lru.check().unwrap_err();
    assert!(e.contains("Active without Lru"), "{e}");
    x.clear_flag(PageFlag::Active);
    // A tail with Lru.
    let huge = w.try_folio(true).unwrap();
    huge.page(3).set_flag(PageFlag::Lru);
    let e = w.lru.check().unwrap_err();
    assert!(e.contains("no folio head"), "{e}");
    huge.page(3).clear_flag(PageFlag::Lru);
    w.check();

    assert!(!w.frames.put(x));
    w.release(huge);
    w.release_all(&[], &f);
}

#[test]
#[should_panic(expected = "is already on a list")]
fn adding_twice_panics() {
    let w = World::new();
    let f = w.added();
    w.lru.add(f);
}

#[test]
#[should_panic(expected = "LruLists::putback")]
fn putting_back_a_listed_folio_panics() {
    let w = World::new();
    let f = w.added();
    w.lru.putback(f, LruList::Active);
}

// ------------------------------------------------------------ concurrency

/// Real threads: reclaim isolating and putting back, an accessor marking
/// folios and toggling `Dirty` (a bit only it uses) with atomic ops, and an
/// ager deactivating. No toggle is lost, and the lists stay consistent.
#[test]
fn threads_isolating_flagging_and_aging() {
    const N: usize = 64;
    const ROUNDS: usize = 3000;
    let w = World::new();
    let f = w.added_n(N);
    let lru = w.lru;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(0x1a7e);
            for _ in 0..ROUNDS {
                for x in lru.isolate(rng.below(8) as usize).isolated {
                    assert!(!x.test_flag(PageFlag::Lru));
                    let list = if rng.bool() { LruList::Active } else { LruList::Inactive };
                    lru.putback(x, list);
                    assert!(!x.put(), "the mapping still holds a reference");
                }
            }
        });
        s.spawn(|| {
            let mut rng = Rng(0xacce55);
            for _ in 0..ROUNDS {
                let x = f[rng.below(N as u64) as usize];
                lru.mark_accessed(x);
                assert!(!x.test_and_set_flag(PageFlag::Dirty), "lost update: Dirty set behind our back");
                assert!(x.test_and_clear_flag(PageFlag::Dirty), "lost update: our Dirty vanished");
            }
        });
        s.spawn(|| {
            let mut rng = Rng(0xa9e);
            for _ in 0..ROUNDS {
                if rng.bool() {
                    lru.balance(4);
                } else {
                    lru.shrink_active(2);
                }
            }
        });
    });
    w.check();
    assert_eq!(lru.nr_active() + lru.nr_inactive(), N as u64, "every folio back on a list");
    for x in f {
        assert!(!x.test_flag(PageFlag::Dirty));
        w.release(x);
    }
    w.finish();
}

// ----------------------------------------------------- random vs a model

/// Where a live folio is, in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Listed,
    /// Isolated: reclaim holds a second reference.
    Isolated,
    /// Removed while mapped (off the lists, one reference).
    Off,
}

/// The lists as `VecDeque`s (front = head), and every folio's state.
struct Model {
    w: World,
    inactive: VecDeque<Pfn>,
    active: VecDeque<Pfn>,
    folios: HashMap<Pfn, (Folio<'static>, Where)>,
    referenced: HashSet<Pfn>,
    /// Last reference dropped, still listed: waiting for the free path.
    dying: HashMap<Pfn, Folio<'static>>,
    rng: Rng,
    /// Not vacuous: folios isolated, rotated, skipped; huge folios added.
    seen: [usize; 4],
}

impl Model {
    fn new(seed: u64) -> Model {
        Model {
            w: World::new(),
            inactive: VecDeque::new(),
            active: VecDeque::new(),
            folios: HashMap::new(),
            referenced: HashSet::new(),
            dying: HashMap::new(),
            rng: Rng(seed),
            seen: [0; 4],
        }
    }

    fn pages(&self, list: &VecDeque<Pfn>) -> u64 {
        list.iter().map(|pfn| self.folio(*pfn).nr_pages() as u64).sum()
    }

    fn folio(&self, pfn: Pfn) -> Folio<'static> {
        self.folios.get(&pfn).map(|e| e.0).or_else(|| self.dying.get(&pfn).copied()).unwrap()
    }

    /// A random live folio in state `want`, if any (sorted, so that a seed
    /// replays).
    fn pick(&mut self, want: Where) -> Option<Folio<'static>> {
        let mut c: Vec<Pfn> = self.folios.iter().filter(|(_, e)| e.1 == want).map(|(p, _)| *p).collect();
        if c.is_empty() {
            return None;
        }
        c.sort_unstable();
        let pfn = c[self.rng.below(c.len() as u64) as usize];
        Some(self.folios[&pfn].0)
    }

    fn unlist(&mut self, pfn: Pfn) {
        self.inactive.retain(|&p| p != pfn);
        self.active.retain(|&p| p != pfn);
    }

    fn step(&mut self) {
        let lru = self.w.lru;
        match self.rng.below(100) {
            0..=24 => {
                let huge = self.rng.chance(8);
                if let Some(f) = self.w.try_folio(huge) {
                    self.seen[3] += usize::from(huge);
                    lru.add(f);
                    self.inactive.push_front(f.pfn());
                    self.folios.insert(f.pfn(), (f, Where::Listed));
                }
            }
            25..=39 => {
                let want = [Where::Listed, Where::Isolated, Where::Off][self.rng.below(3) as usize];
                if let Some(f) = self.pick(want) {
                    lru.mark_accessed(f);
                    self.referenced.insert(f.pfn());
                }
            }
            40..=54 => {
                let n = self.rng.below(10) as usize;
                let scan = lru.isolate(n);
                // The model's scan.
                let room = n.min(self.inactive.len());
                let (mut scanned, mut rotated, mut skipped, mut isolated) = (0, 0, 0, Vec::new());
                let mut i = self.inactive.len();
                while i > 0 && scanned < n && isolated.len() < room {
                    i -= 1;
                    let pfn = self.inactive[i];
                    scanned += 1;
                    if self.dying.contains_key(&pfn) {
                        skipped += 1;
                    } else if self.referenced.remove(&pfn) {
                        self.inactive.remove(i);
                        self.active.push_front(pfn);
                        rotated += 1;
                    } else {
                        self.inactive.remove(i);
                        self.folios.get_mut(&pfn).unwrap().1 = Where::Isolated;
                        isolated.push(pfn);
                    }
                }
                assert_eq!(pfns(&scan.isolated), isolated, "isolate({n})");
                assert_eq!((scan.nr_scanned, scan.nr_rotated, scan.nr_skipped), (scanned, rotated, skipped));
                self.seen[0] += isolated.len();
                self.seen[1] += rotated;
                self.seen[2] += skipped;
            }
            55..=64 => {
                if let Some(f) = self.pick(Where::Isolated) {
                    if self.rng.chance(80) {
                        let list = if self.rng.bool() { LruList::Active } else { LruList::Inactive };
                        lru.putback(f, list);
                        match list {
                            LruList::Active => self.active.push_front(f.pfn()),
                            LruList::Inactive => self.inactive.push_front(f.pfn()),
                        }
                        self.folios.get_mut(&f.pfn()).unwrap().1 = Where::Listed;
                        assert!(!self.w.frames.put(f));
                    } else {
                        // Reclaimed: unmapped, both references dropped.
                        self.w.unmap(f);
                        assert!(!f.put());
                        assert!(self.w.frames.put(f));
                        self.folios.remove(&f.pfn());
                        self.referenced.remove(&f.pfn());
                    }
                }
            }
            65..=69 => {
                // Removed while still mapped (and added back later).
                if let Some(f) = self.pick(Where::Listed) {
                    assert!(lru.remove(f));
                    self.unlist(f.pfn());
                    self.folios.get_mut(&f.pfn()).unwrap().1 = Where::Off;
                }
            }
            70..=74 => {
                if let Some(f) = self.pick(Where::Off) {
                    if self.rng.bool() {
                        assert!(!lru.remove(f));
                        lru.add(f);
                        self.inactive.push_front(f.pfn());
                        self.folios.get_mut(&f.pfn()).unwrap().1 = Where::Listed;
                    } else {
                        self.w.release(f);
                        self.folios.remove(&f.pfn());
                        self.referenced.remove(&f.pfn());
                    }
                }
            }
            75..=80 => {
                // The last put of a listed folio, its removal still to come.
                if let Some(f) = self.pick(Where::Listed) {
                    self.w.unmap(f);
                    assert!(f.put());
                    self.folios.remove(&f.pfn());
                    self.dying.insert(f.pfn(), f);
                }
            }
            81..=86 => {
                let mut dying: Vec<Pfn> = self.dying.keys().copied().collect();
                dying.sort_unstable();
                if !dying.is_empty() {
                    let pfn = dying[self.rng.below(dying.len() as u64) as usize];
                    let f = self.dying.remove(&pfn).unwrap();
                    assert!(lru.remove(f));
                    self.unlist(pfn);
                    self.referenced.remove(&pfn);
                    self.w.frames.free(f);
                }
            }
            87..=93 => {
                let n = self.rng.below(6) as usize;
                let moved = lru.shrink_active(n);
                let expect = n.min(self.active.len());
                assert_eq!(moved, expect, "shrink_active({n})");
                for _ in 0..expect {
                    let pfn = self.active.pop_back().unwrap();
                    self.referenced.remove(&pfn);
                    self.inactive.push_front(pfn);
                }
            }
            _ => {
                let n = self.rng.below(20) as usize;
                let moved = lru.balance(n);
                let mut expect = 0;
                while expect < n && self.pages(&self.inactive) < self.pages(&self.active) {
                    let pfn = self.active.pop_back().unwrap();
                    self.referenced.remove(&pfn);
                    self.inactive.push_front(pfn);
                    expect += 1;
                }
                assert_eq!(moved, expect, "balance({n})");
            }
        }
    }

    fn compare(&self) {
        let w = &self.w;
        w.check();
        assert_eq!(w.inactive(), Vec::from(self.inactive.clone()), "inactive list");
        assert_eq!(w.active(), Vec::from(self.active.clone()), "active list");
        let expect = counts(
            self.active.len() as u64,
            self.inactive.len() as u64,
            self.pages(&self.active),
            self.pages(&self.inactive),
        );
        assert_eq!(w.lru.counts(), expect);
        for (pfn, (f, _)) in &self.folios {
            assert_eq!(f.test_flag(PageFlag::Referenced), self.referenced.contains(pfn), "pfn {pfn:#x}");
        }
    }

    fn finish(mut self) {
        for (_, (f, state)) in std::mem::take(&mut self.folios) {
            if state == Where::Isolated {
                assert!(!self.w.frames.put(f));
            }
            self.w.release(f);
        }
        for (_, f) in std::mem::take(&mut self.dying) {
            assert!(self.w.lru.remove(f));
            self.w.frames.free(f);
        }
        self.w.finish();
    }
}

#[test]
fn random_operations_agree_with_a_model() {
    for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 0xdead_beef_cafe_f00d, 0x1111] {
        let mut model = Model::new(seed);
        for i in 0..4000 {
            model.step();
            if i % 4 == 0 || model.folios.len() < 40 {
                model.compare();
            }
        }
        model.compare();
        let [isolated, rotated, skipped, huge] = model.seen;
        eprintln!("seed {seed:#x}: isolated {isolated}, rotated {rotated}, skipped {skipped}, huge {huge}");
        assert!(
            isolated > 100 && rotated > 50 && skipped > 10 && huge > 5,
            "seed {seed:#x}: {:?}",
            model.seen
        );
        model.finish();
    }
}
