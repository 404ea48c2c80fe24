//! `mm::move_pages::look_at` over both real formats: what `move_pages`
//! says of a page that no area covers, that was never touched, that the
//! huge zero folio maps, that a migration entry stands for, that lies on
//! the target node or elsewhere, mapped once or shared by fork, as a 4 KiB
//! page or a page of a THP (each page of it naming the THP's head).
//! Nodes are made up for the test: a frame's node is bit 9 of its PFN, so
//! a THP lies on one node and neighbouring 2 MiB blocks alternate.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::move_pages::{look_at, PageLook, PageStatus};
use mm::numa::NodeId;
use mm::pgtable::sim::HardwareWalker;
use mm::testkit::frames::SimFrames;
use mm::testkit::policy::{with_world, world};
use mm::testkit::world::{pages, va, World, AREA, HP, MEMMAP_BASE, MEMMAP_LEN, PAGE};
use mm::vma::{ThpMode, VmaProt};
use mm::Pfn;

const N0: NodeId = NodeId::ZERO;
const N1: NodeId = match NodeId::new(1) {
    Some(n) => n,
    None => panic!("node 1"),
};

/// The policy world with the huge zero folio.
fn world_with_huge_zero<F: HardwareWalker>() -> World<F> {
    World::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_huge_zero().with_lru())
}

/// The made-up node of a frame (module doc).
fn node_of(pfn: Pfn) -> NodeId {
    if pfn.as_u64() >> 9 & 1 == 0 {
        N0
    } else {
        N1
    }
}

/// The other node.
fn other(n: NodeId) -> NodeId {
    if n == N0 {
        N1
    } else {
        N0
    }
}

/// `look_at` for page `at` of space `s`.
fn look<F: HardwareWalker>(w: &World<F>, s: usize, at: u64, target: Option<NodeId>) -> PageLook {
    let sp = w.sp(s);
    look_at(&sp.table, &sp.vmas, &w.mem, w.memmap(), va(at), target, &node_of)
}

/// The node the page at `at` of space `s` is on.
fn node_at<F: HardwareWalker>(w: &World<F>, s: usize, at: u64) -> NodeId {
    let pa = w.sp(s).table.translate(&w.mem, va(at)).expect("mapped");
    node_of(pa.pfn())
}

/// Holes, untouched pages and the huge zero folio have no node, asked or
/// moved; the query names every present page's node and moves nothing.
fn absent_unmapped_and_huge_zero_pages<F: HardwareWalker>() {
    with_world(world_with_huge_zero::<F>, |w| {
        w.small_pages(0, AREA, 4, 1);
        w.mmap(0, AREA + 4 * PAGE, 2 * PAGE, VmaProt::READ_WRITE);
        w.munmap(0, AREA + 2 * PAGE, PAGE);
        let zero_at = AREA + 2 * HP;
        w.mmap(0, zero_at, HP, VmaProt::READ_WRITE);
        w.advise_thp(0, zero_at, HP, ThpMode::Always);
        assert_eq!(w.read(0, zero_at + 5), 0);
        assert_eq!(w.leaf(0, zero_at).1.frame, w.zero_folio().phys(), "a read maps the huge zero folio");
        for target in [None, Some(N0), Some(N1)] {
            assert_eq!(look(w, 0, AREA + 2 * PAGE, target), PageLook::Done(PageStatus::NoMapping), "a hole");
            assert_eq!(
                look(w, 0, AREA + 4 * PAGE, target),
                PageLook::Done(PageStatus::NotPresent),
                "untouched"
            );
            assert_eq!(
                look(w, 0, AREA - PAGE, target),
                PageLook::Done(PageStatus::NoMapping),
                "below every area"
            );
            for p in [zero_at, zero_at + 511 * PAGE] {
                assert_eq!(look(w, 0, p, target), PageLook::Done(PageStatus::NoMapping), "huge zero");
            }
        }
        for p in [AREA, AREA + PAGE, AREA + 3 * PAGE] {
            let here = node_at(w, 0, p);
            assert_eq!(look(w, 0, p, None), PageLook::Done(PageStatus::Node(here)));
            assert_eq!(look(w, 0, p, Some(here)), PageLook::Done(PageStatus::Node(here)), "already there");
            let head = w.folio_at(0, p).pfn();
            assert_eq!(look(w, 0, p, Some(other(here))), PageLook::Move(head), "mapped once: to move");
        }
        w.check();
    });
}

/// Every page of a PMD-mapped THP names the THP's head; after a fork its
/// pages are shared (not moved), and a page the child copied is the
/// parent's alone again.
fn thp_pages_name_their_head_and_shared_pages_stay<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let thp = w.thp(0, AREA, 3);
        let here = node_of(thp.pfn());
        for p in [AREA, AREA + PAGE, AREA + 511 * PAGE] {
            assert_eq!(look(w, 0, p, None), PageLook::Done(PageStatus::Node(here)));
            assert_eq!(look(w, 0, p, Some(other(here))), PageLook::Move(thp.pfn()));
            assert_eq!(look(w, 0, p, Some(here)), PageLook::Done(PageStatus::Node(here)));
        }
        w.small_pages(0, AREA + HP, 2, 4);
        let child = w.fork(0);
        for s in [0, child] {
            for p in [AREA, AREA + 100 * PAGE, AREA + HP, AREA + HP + PAGE] {
                let n = node_at(w, s, p);
                assert_eq!(
                    look(w, s, p, Some(other(n))),
                    PageLook::Done(PageStatus::Shared),
                    "space {s} {p:#x}"
                );
                assert_eq!(
                    look(w, s, p, None),
                    PageLook::Done(PageStatus::Node(n)),
                    "a query names the node"
                );
            }
        }
        // The child writes its second small page: a copy of its own; both
        // sides then map that page once.
        w.write_page(child, AREA + HP + PAGE, 9);
        for s in [0, child] {
            let p = AREA + HP + PAGE;
            let n = node_at(w, s, p);
            assert_eq!(look(w, s, p, Some(other(n))), PageLook::Move(w.folio_at(s, p).pfn()), "space {s}");
        }
        w.exit(child);
        for p in pages(AREA, 4) {
            assert_eq!(look(w, 0, p, Some(other(here))), PageLook::Move(thp.pfn()), "the child is gone");
        }
        w.check();
    });
}

/// A migration entry (a PTE's or a THP's PMD) is to be waited for, in a
/// query as in a move; once the migration is over the page is looked at
/// as before.
fn migration_entries_are_waited_for<F: HardwareWalker>() {
    with_world(world::<F>, |w| {
        let thp = w.thp(0, AREA, 5);
        w.small_pages(0, AREA + HP, 1, 6);
        let small = w.folio_at(0, AREA + HP);
        for folio in [thp, small] {
            let at = if folio.pfn() == thp.pfn() { AREA + 7 * PAGE } else { AREA + HP };
            let m = w.start_migration(folio);
            for target in [None, Some(N0), Some(N1)] {
                assert_eq!(look(w, 0, at, target), PageLook::Migrating);
            }
            w.end_migration(m);
            let n = node_at(w, 0, at);
            assert_eq!(look(w, 0, at, None), PageLook::Done(PageStatus::Node(n)));
        }
        w.check();
    });
}

#[test]
fn statuses_are_linuxs_numbers() {
    assert_eq!(PageStatus::Node(N1).errno(), 1);
    assert_eq!(PageStatus::NotPresent.errno(), -2);
    assert_eq!(PageStatus::NoMemory.errno(), -12);
    assert_eq!(PageStatus::Shared.errno(), -13);
    assert_eq!(PageStatus::NoMapping.errno(), -14);
    assert_eq!(PageStatus::Busy.errno(), -16);
}

mm::for_both_formats!(
    absent_unmapped_and_huge_zero_pages,
    thp_pages_name_their_head_and_shared_pages_stay,
    migration_entries_are_waited_for,
);
