//! The LRU flag rule under a concurrency checker: reclaim isolating from
//! the lists while another CPU changes other bits of the same flags words
//! and a third drops a folio's last reference and frees it, in every
//! interleaving shuttle explores of the real `mm::lru` code.
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`): the page descriptor's atomics and the lists' lock
//! (`sync::Lock`) become shuttle's, so each flag, link and refcount
//! operation and each lock acquisition is a point where shuttle may switch
//! threads:
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_lru
//! ```
//!
//! One execution: the main thread makes a memmap of 8 frames, a frame
//! allocator and the lists, and adds three new anonymous folios A, B, C
//! (each with its mapping's one reference). Then three threads race:
//!
//! - **reclaim**: `isolate(3)`; puts the first folio it got back on the
//!   inactive list and drops that reference (freeing the folio, free path
//!   and all, if it was the last); keeps the others isolated, with their
//!   references, and reports them;
//! - **accessor**: for each folio, a speculative reference (`folio_of`,
//!   `try_get`, `folio_of` again), `mark_accessed` on A only, an atomic
//!   toggle of `Dirty` (a bit only it uses) checked for lost updates,
//!   then its put (and the free path if that was the last);
//! - **unmap**: drops C's mapping and its reference; if that was the last,
//!   the free path: `remove` from the lists, then `free_folio` (which
//!   refuses a folio with `Lru` set).
//!
//! Invariants, after the threads are joined: `check()` passes (links, and
//! `Lru`/`Active` exactly on the members: a lost update of `Lru` leaves a
//! stray bit or a member without it); no `Dirty` is left set; every folio
//! is in exactly one place: on a list, isolated by reclaim, or freed (C
//! only, once). Then everything is released and every frame must come
//! back to the allocator.
//!
//! The frames, the lists and the free path are `mm::testkit`'s `SimFrames`
//! (`with_lru`): its calls into the frame allocator go through a shuttle
//! mutex of its own, so the allocator's spin lock (not shuttle's, it would
//! never yield) is never contended; besides, only C can be freed during an
//! execution (A and B keep their mappings until the teardown), and only by
//! the one thread whose put was the last.

use std::sync::atomic::{AtomicUsize, Ordering};

use mm::anon::remove_pte_mapping;
use mm::folio::AnonHandle;
use mm::folio::{folio_of, Folio};
use mm::frame::AllocKind;
use mm::lru::LruList;
use mm::page::PageFlag;
use mm::testkit::frames::SimFrames;
use mm::testkit::races::run;
use mm::Pfn;
use mm::PhysAddr;

const BASE_PFN: u64 = 0x100;
const NR_FRAMES: usize = 8;
/// The space all these folios belong to: a root table in frame 0x4242.
fn handle() -> AnonHandle {
    AnonHandle::of_root(PhysAddr::new(0x4242 << 12))
}
const SEED: u64 = 0x5eed_0006;
const ITERATIONS: usize = 1500;

/// Bookkeeping of the test (plain std atomics, not scheduling points):
/// executions in which reclaim isolated C, rotated A, or skipped a folio
/// being freed; and in which C was freed during the race.
static NR_ISOLATED_C: AtomicUsize = AtomicUsize::new(0);
static NR_ROTATED: AtomicUsize = AtomicUsize::new(0);
static NR_SKIPPED: AtomicUsize = AtomicUsize::new(0);
static NR_FREED_C: AtomicUsize = AtomicUsize::new(0);

/// Reclaim: the pfns it keeps isolated, and whether it freed a folio.
fn reclaim(frames: &SimFrames, c: Pfn) -> (Vec<Pfn>, bool) {
    let lru = frames.lru();
    let scan = lru.isolate(3);
    if scan.nr_rotated > 0 {
        NR_ROTATED.fetch_add(1, Ordering::Relaxed);
    }
    if scan.nr_skipped > 0 {
        NR_SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
    let mut kept = Vec::new();
    let mut freed = false;
    for (i, folio) in scan.isolated.into_iter().enumerate() {
        assert!(!folio.test_flag(PageFlag::Lru), "isolated pfn {:#x} with Lru", folio.pfn());
        if folio.pfn() == c {
            NR_ISOLATED_C.fetch_add(1, Ordering::Relaxed);
        }
        if i == 0 {
            lru.putback(folio, LruList::Inactive);
            freed |= frames.put(folio);
        } else {
            kept.push(folio.pfn());
        }
    }
    (kept, freed)
}

/// The accessor: returns whether it freed a folio.
fn access(frames: &SimFrames, pfns: [Pfn; 3]) -> bool {
    let (memmap, lru) = (frames.memmap(), frames.lru());
    let mut freed = false;
    for (i, pfn) in pfns.into_iter().enumerate() {
        let Some(folio) = folio_of(memmap, pfn) else { continue };
        if !folio.try_get() {
            continue;
        }
        if folio_of(memmap, pfn) == Some(folio) {
            if i == 0 {
                lru.mark_accessed(folio);
            }
            assert!(!folio.test_and_set_flag(PageFlag::Dirty), "lost update: Dirty set behind our back");
            assert!(folio.test_flag(PageFlag::Dirty), "lost update: our Dirty vanished");
            assert!(folio.test_and_clear_flag(PageFlag::Dirty), "lost update: our Dirty was cleared");
        }
        freed |= frames.put(folio);
    }
    freed
}

/// One execution (see the module doc).
fn isolate_against_flags_and_free() {
    let frames: &'static SimFrames = Box::leak(Box::new(SimFrames::new(BASE_PFN, NR_FRAMES).with_lru()));
    let (memmap, lru) = (frames.memmap(), frames.lru());
    let nr_free = frames.nr_free();
    let folios: Vec<Folio<'static>> =
        (0..3).map(|i| frames.alloc_anon(AllocKind::Reserve, false, handle(), i).unwrap()).collect();
    for &f in &folios {
        lru.add(f);
    }
    let nr_free_racing = frames.nr_free();
    let pfns = [folios[0].pfn(), folios[1].pfn(), folios[2].pfn()];
    let c = pfns[2];

    let reclaimer = shuttle::thread::spawn(move || reclaim(frames, c));
    let accessor = shuttle::thread::spawn(move || access(frames, pfns));
    let unmapper = shuttle::thread::spawn(move || {
        let folio = remove_pte_mapping(memmap, c.phys());
        frames.put(folio)
    });
    let (kept, reclaim_freed) = reclaimer.join().unwrap();
    let accessor_freed = accessor.join().unwrap();
    let unmap_freed = unmapper.join().unwrap();

    lru.check().unwrap_or_else(|e| panic!("after the race: {e}"));
    let nr_freed = [reclaim_freed, accessor_freed, unmap_freed].iter().filter(|&&f| f).count();
    assert!(nr_freed <= 1, "C freed {nr_freed} times");
    let c_freed = nr_freed == 1;
    if c_freed {
        NR_FREED_C.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(frames.nr_free(), nr_free_racing + u64::from(c_freed), "C's frame and who freed it disagree");
    for (i, &f) in folios.iter().enumerate() {
        let freed = i == 2 && c_freed;
        let listed = !freed && lru.list_of(f.pfn()).is_some();
        let isolated = kept.contains(&f.pfn());
        let places = usize::from(freed) + usize::from(listed) + usize::from(isolated);
        assert_eq!(places, 1, "pfn {:#x}: freed {freed}, listed {listed}, isolated {isolated}", f.pfn());
        if !freed {
            assert!(!f.test_flag(PageFlag::Dirty), "lost update: pfn {:#x} keeps Dirty", f.pfn());
            assert_eq!(f.test_flag(PageFlag::Lru), listed);
        }
    }

    // Teardown: reclaim's references (C's is its last: its mapping is
    // gone), then A's and B's mappings.
    for &pfn in &kept {
        let f = folio_of(memmap, pfn).unwrap();
        assert_eq!(frames.put(f), pfn == c, "reclaim's reference on pfn {pfn:#x}");
    }
    for &f in &folios[..2] {
        remove_pte_mapping(memmap, f.pfn().phys());
        assert!(frames.put(f), "pfn {:#x} keeps references", f.pfn());
    }
    assert_eq!(lru.nr_active() + lru.nr_inactive(), 0);
    assert_eq!(frames.nr_free(), nr_free, "frames leaked");
    frames.fa().check_consistency().unwrap();
}

#[test]
fn isolation_loses_no_flag_and_no_folio() {
    run("isolation against flags and free", SEED, ITERATIONS, isolate_against_flags_and_free);
    let seen = [&NR_ISOLATED_C, &NR_ROTATED, &NR_SKIPPED, &NR_FREED_C].map(|n| n.load(Ordering::Relaxed));
    eprintln!(
        "shuttle: of {} executions: C isolated {}, A rotated {}, a dying folio skipped {}, C freed in the race {}",
        2 * ITERATIONS,
        seen[0],
        seen[1],
        seen[2],
        seen[3]
    );
    // Not vacuous: each outcome happened in some executions.
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}
