//! The huge-page race protocols under a concurrency checker: two faults on
//! one empty PMD, and a PMD split (with the folio split and its refcount
//! freeze) against a fault and against a speculative reference, in every
//! interleaving shuttle explores of the real `mm` code.
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`): the page descriptor's atomics become shuttle's, so every
//! count, flag and refcount operation of `mm::fault`, `mm::thp` and
//! `mm::space` is a point where shuttle may switch threads.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_thp
//! ```
//!
//! The space is `mm::testkit`'s `SharedSpace`: its lock (shuttle's mutex)
//! is around the table, the areas and the simulated memory, as the
//! kernel's `IrqSpinLock` is around its `Inner`; the protocol is that every
//! table and mapcount change happens under it, while speculative
//! references (`Folio::try_get`) are taken without it. After each
//! execution the consistency checker must pass and every frame must come
//! back at teardown. The frames are `SimFrames`, whose calls into the frame
//! allocator go through a shuttle mutex of their own, so the allocator's
//! spin lock (not shuttle's, it would never yield) is never contended.

use std::sync::atomic::{AtomicUsize, Ordering};

use arch_x86_64::pgtable::X86Format;
use mm::debug::Stats;
use mm::fault::{Access, FaultOutcome};
use mm::folio::folio_of;
use mm::pgtable::{Decoded, Level};
use mm::testkit::frames::SimFrames;
use mm::testkit::races::run;
use mm::testkit::world::SharedSpace;
use mm::thp::HPAGE_SIZE;

const BASE_PFN: u64 = 0x80000;
/// Two 2 MiB blocks of frames.
const NR_FRAMES: usize = 1024;
const AREA: u64 = 0x4000_0000;
const SEED: u64 = 0x5eed_0005;
const ITERATIONS: usize = 150;

type Space = SharedSpace<X86Format>;

/// A space with one 2 MiB-aligned read-write area of one block, over two
/// blocks of frames (no contents checked here: only the counts).
fn space() -> &'static Space {
    SharedSpace::new(SimFrames::new(BASE_PFN, NR_FRAMES), &[(AREA, HPAGE_SIZE)])
}

/// The checker; then the level of the leaf at `va`, if any.
fn check(space: &Space, va: u64) -> (Stats, Option<Level>) {
    let level = match space.lookup(va) {
        (level, Decoded::Leaf(_)) => Some(level),
        _ => None,
    };
    (space.check(), level)
}

/// Executions that saw each outcome, to prove both sides of a race ran.
static SEEN: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

/// Two CPUs write to different pages of one empty 2 MiB block at once.
fn two_faults_on_one_pmd() {
    let space = space();
    let a = shuttle::thread::spawn(move || space.fault(AREA + 0x1000, Access::Write));
    let b = shuttle::thread::spawn(move || space.fault(AREA + 0x1f_f000, Access::Write));
    let outcomes = [a.join().unwrap(), b.join().unwrap()];
    let huge = outcomes.iter().filter(|o| **o == FaultOutcome::MappedHuge).count();
    assert_eq!(huge, 1, "one of the two faults maps the huge page: {outcomes:?}");
    assert!(
        outcomes.contains(&FaultOutcome::Spurious),
        "the other finds it mapped and only retries: {outcomes:?}"
    );
    let (stats, level) = check(space, AREA);
    assert_eq!((stats.nr_pmd_leaves, stats.nr_folios, level), (1, 1, Some(Level::Pmd)));
    let head = space.translate(AREA).unwrap().pfn();
    let folio = folio_of(space.memmap(), head).unwrap();
    assert_eq!((folio.entire_mapcount(), folio.refcount()), (1, 1));
    space.finish();
}

/// A munmap that cuts a THP in two (PMD split, then folio split under the
/// freeze rule) against a write fault in the part that stays and a
/// speculative reference on one of its pages.
fn split_against_fault_and_speculative_reference() {
    let space = space();
    assert_eq!(space.fault(AREA, Access::Write), FaultOutcome::MappedHuge);
    let head = space.translate(AREA).unwrap().pfn();
    let memmap = space.memmap();
    let zap = shuttle::thread::spawn(move || space.munmap(AREA + 100 * 4096, AREA + 356 * 4096));
    let fault = shuttle::thread::spawn(move || space.fault(AREA + 400 * 4096, Access::Write));
    let walker = shuttle::thread::spawn(move || {
        // A scanner that finds page 5 by its frame number.
        let pfn = head.plus(5);
        let folio = folio_of(memmap, pfn)?;
        if !folio.try_get() {
            return Some(false); // frozen: the split is under way
        }
        let same = folio_of(memmap, pfn) == Some(folio);
        let order = folio.order();
        shuttle::thread::yield_now();
        assert!(!folio.put(), "the walker's put is never the last: page 5 stays mapped");
        Some(same && order <= 9)
    });
    zap.join().unwrap();
    let outcome = fault.join().unwrap();
    let walked = walker.join().unwrap();
    assert!(
        matches!(outcome, FaultOutcome::Spurious | FaultOutcome::Resolved),
        "the write to a mapped page only retries: {outcome:?}"
    );
    let (stats, level) = check(space, AREA + 400 * 4096);
    assert_eq!(level, Some(Level::Pte), "the cut huge page is mapped by PTEs");
    assert_eq!(stats.nr_pte_leaves, 256);
    // Either the folio was split (256 order-0 folios, the cut part freed),
    // or the walker held a reference at the freeze and it stayed whole.
    let folio = folio_of(memmap, head).unwrap();
    let freed = space.nr_taken();
    match (folio.order(), stats.nr_folios) {
        (0, 256) => {
            assert_eq!(freed, 256, "a split frees the cut part at once");
            SEEN[0].fetch_add(1, Ordering::Relaxed);
        }
        (9, 1) => {
            assert_eq!(freed, 512, "a refused split keeps the whole folio");
            assert_eq!(walked, Some(true), "only the walker's reference can refuse the split");
            SEEN[1].fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("after the cut: (order, folios) = {other:?}"),
    }
    if walked == Some(false) {
        SEEN[2].fetch_add(1, Ordering::Relaxed);
    }
    space.finish();
}

#[test]
fn two_faults_on_one_pmd_make_one_thp() {
    run("two faults on one PMD", SEED, ITERATIONS, two_faults_on_one_pmd);
}

#[test]
fn a_split_against_a_fault_and_a_speculative_reference_keeps_the_counts() {
    for s in &SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run("split against fault and reference", SEED, ITERATIONS, split_against_fault_and_speculative_reference);
    let seen: Vec<usize> = SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: split {} times, refused for the walker {} times, walker met a frozen folio {} times",
        seen[0], seen[1], seen[2]
    );
    // Both ends of the race were reached: the split and its refusal.
    assert!(seen[0] > 0 && seen[1] > 0, "shuttle never reached both outcomes: {seen:?}");
}
