//! The swap-in claim (`SwapArea::claim_cache`) under a concurrency checker:
//! two swap-ins racing for one entry, and a swap-in racing the drop of the
//! entry's last reference while swap-out wants a slot (the ABA of seed
//! 002: a freed slot reused for another page while it is read as ours).
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`): the swap area's lock becomes a `shuttle::sync::Mutex`,
//! so shuttle may switch threads at every area operation.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_swap_claim
//! ```
//!
//! Bookkeeping of the tests uses plain std atomics: they are not scheduling
//! points, and shuttle runs one thread at a time, so they see program order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mm::pgtable::format::SwapEntry;
use mm::pgtable::SwapType;
use mm::swap::area::{ClaimError, SwapArea};
use mm::swap::header::{format, parse};
use mm::testkit::races::run;
use mm::Pfn;
use shuttle::thread;

const TY: SwapType = SwapType::nth(1);
const SEED: u64 = 0x5eed_0002;
const ITERATIONS: usize = 1000;
/// The head PFNs of the folios the threads read into.
const PFN_A: u64 = 0xa000;
const PFN_B: u64 = 0xb000;
const PFN_OUT: u64 = 0xc000;

/// An area of one slot (page 1), whose entry one page-table entry holds
/// and whose folio has left the swap cache: what swap-in finds.
fn swapped_out_slot() -> (Arc<SwapArea>, SwapEntry) {
    let header = parse(&format(2, &[], b"race").unwrap(), 2).unwrap();
    let area = Arc::new(SwapArea::new(TY, &header));
    let e = area.alloc(0).unwrap();
    assert_eq!(area.dup(e), Ok(1));
    area.release_cache(e, 1).unwrap();
    (area, e)
}

/// Swap-in of `e` into the folio at `pfn`: claim, add to the cache, (read,)
/// and keep the claim. On Busy, look the cache up again as swap-in does:
/// whatever is found must be the winner's folio. Returns whether it won.
fn swap_in(area: &SwapArea, e: SwapEntry, pfn: u64, other_pfn: u64) -> bool {
    match area.claim_cache(e, 1) {
        Ok(()) => {
            area.cache_add(e, 1, Pfn::new(pfn)).unwrap();
            true
        }
        Err(ClaimError::Busy { offset }) => {
            assert_eq!(offset, e.offset());
            let found = area.cache_lookup_with(e, |p, i| (p.as_u64(), i));
            assert!(
                found.is_none() || found == Some((other_pfn, 0)),
                "a stranger's folio in the cache: {found:?}"
            );
            false
        }
        Err(other) => panic!("swap-in of a referenced entry: {other}"),
    }
}

static BOTH_WON: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn two_swap_ins() {
    let (area, e) = swapped_out_slot();
    let a = {
        let area = Arc::clone(&area);
        thread::spawn(move || swap_in(&area, e, PFN_A, PFN_B))
    };
    let won_b = swap_in(&area, e, PFN_B, PFN_A);
    let won_a = a.join().unwrap();
    assert!(won_a != won_b, "exactly one swap-in must win the claim (a {won_a}, b {won_b})");
    BOTH_WON[usize::from(won_b)].fetch_add(1, Ordering::Relaxed);
    // The winner maps its folio and finishes: entry freed, cache dropped.
    let pfn = if won_a { PFN_A } else { PFN_B };
    assert_eq!(area.cache_lookup_with(e, |p, i| (p.as_u64(), i)), Some((pfn, 0)));
    assert_eq!(area.free_ref(e), Ok(0));
    area.cache_delete(e, 1, Pfn::new(pfn)).unwrap();
    area.release_cache(e, 1).unwrap();
    assert_eq!(area.nr_free(), 1);
    area.check().unwrap();
}

/// Swap-in holds a claim (between claim and release).
static HOLDING: AtomicBool = AtomicBool::new(false);
/// Executions in which the claim won, and in which it saw Unused.
static CLAIM_OUTCOMES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
/// Executions in which swap-out reused the slot.
static REUSED: AtomicUsize = AtomicUsize::new(0);

fn claim_against_last_free_ref() {
    HOLDING.store(false, Ordering::Relaxed);
    let (area, e) = swapped_out_slot();
    // Swap-in, from a page-table entry it read before the race.
    let swap_in = {
        let area = Arc::clone(&area);
        thread::spawn(move || match area.claim_cache(e, 1) {
            Ok(()) => {
                HOLDING.store(true, Ordering::Relaxed);
                // "Reading" the slot: it stays ours, nobody else's folio
                // appears in it, it is not free.
                assert!(area.has_cache(e));
                assert_eq!(area.cache_lookup_with(e, |p, _| p), None, "the claimed slot was reused");
                assert_eq!(area.nr_free(), 0, "a claimed slot counted free");
                // The page-table entry changed meanwhile (the unmap):
                // give up, release the claim.
                HOLDING.store(false, Ordering::Relaxed);
                area.release_cache(e, 1).unwrap();
                CLAIM_OUTCOMES[0].fetch_add(1, Ordering::Relaxed);
            }
            Err(ClaimError::Unused { offset }) => {
                assert_eq!(offset, e.offset());
                CLAIM_OUTCOMES[1].fetch_add(1, Ordering::Relaxed);
            }
            Err(other) => panic!("claim racing the last free_ref: {other}"),
        })
    };
    // Swap-out, wanting a slot for another page.
    let swap_out = {
        let area = Arc::clone(&area);
        thread::spawn(move || {
            let Some(got) = area.alloc(0) else { return };
            assert!(!HOLDING.load(Ordering::Relaxed), "swap-out got a slot swap-in has claimed");
            assert_eq!(got, e);
            area.cache_add(got, 1, Pfn::new(PFN_OUT)).unwrap();
            REUSED.fetch_add(1, Ordering::Relaxed);
            // Written; no page-table entry took it after all: drop it.
            area.cache_delete(got, 1, Pfn::new(PFN_OUT)).unwrap();
            area.release_cache(got, 1).unwrap();
        })
    };
    // The unmap of the last page-table entry holding `e`.
    assert_eq!(area.free_ref(e), Ok(0));
    swap_in.join().unwrap();
    swap_out.join().unwrap();
    assert_eq!(area.nr_free(), 1, "the slot must be free once everyone is done");
    assert_eq!(area.nr_in_cache(), 0);
    area.check().unwrap();
}

#[test]
fn two_swap_ins_of_one_entry_claim_it_once() {
    run("two swap-ins", SEED, ITERATIONS, two_swap_ins);
    let won: Vec<usize> = BOTH_WON.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    eprintln!("shuttle: thread a won {} times, b {} times", won[0], won[1]);
    assert!(won[0] > 0 && won[1] > 0, "shuttle never let both threads win: {won:?}");
}

#[test]
fn a_claim_racing_the_last_free_ref_never_claims_a_free_slot() {
    run("claim against last free_ref", SEED, ITERATIONS, claim_against_last_free_ref);
    let outcomes: Vec<usize> = CLAIM_OUTCOMES.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    let reused = REUSED.load(Ordering::Relaxed);
    eprintln!(
        "shuttle: claim won {} times, saw Unused {} times; slot reused {reused} times",
        outcomes[0], outcomes[1]
    );
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0 && reused > 0,
        "shuttle missed an outcome: {outcomes:?}, {reused}"
    );
}
