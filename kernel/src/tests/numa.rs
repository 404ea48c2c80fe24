//! In-guest tests of the NUMA nodes (`memory`'s "NUMA nodes", `mm::frame`'s
//! per-node pools): the nodes the kernel uses are the firmware's,
//! allocations on a node land in its ranges, and a CPU's faults take
//! frames from its own node. They hold on any machine (without `--numa`
//! there is one node, and the first test checks that everything is on
//! it); CI runs them with `--numa 2 --smp 4` on both arches, where the
//! runner also requires one `numa: node N` line per node.
//!
//! The `move_pages` tests (`crate::vm::move_pages`) move 4 KiB pages and
//! THPs from node to node and back (every byte intact, THPs still PMD
//! leaves when the target had a free 2 MiB block), check the statuses of
//! shared, pinned, absent and unmapped pages, and refuse bad arguments.
//! With one node the moving is skipped (with a line saying so) and the
//! query form and the argument checks are still tested.

use crate::memory;
use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::tests::{Test, TestEnv};
use crate::vm::migrate::counters;
use crate::vm::move_pages::{MovePagesError, PageStatus, MAX_MOVE_PAGES};
use crate::vm::space::{AddressSpace, Advice};
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mm::frame::AllocKind;
use mm::numa::NodeId;
use mm::vma::VmaProt;
use mm::VirtAddr;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };

/// Nodes that hold managed memory.
fn nodes_with_memory() -> Vec<NodeId> {
    let frames = memory::frame_allocator();
    NodeId::all(memory::nr_nodes()).filter(|&n| frames.managed_pages_on(n) > 0).collect()
}

/// The kernel's nodes are the firmware's: as many, each node's pool holds
/// exactly the usable RAM the firmware gives it (less what boot took), the
/// per-node counts add up, and without NUMA information everything (RAM
/// and every CPU) is node 0.
fn nodes_are_the_firmwares(_: &TestEnv<'_>) -> Result<(), String> {
    let frames = memory::frame_allocator();
    let map = memory::numa_map();
    let nr = memory::nr_nodes();
    if nr != map.nr_nodes() {
        return Err(format!("{nr} nodes in use, the firmware described {}", map.nr_nodes()));
    }
    if map.is_empty() {
        if frames.nr_nodes() != 1 || frames.managed_pages_on(NodeId::ZERO) != frames.managed_pages() {
            return Err(format!("no NUMA information, yet memory on {} nodes", frames.nr_nodes()));
        }
        if let Some(cpu) = sched::online_cpus().find(|&cpu| memory::cpu_node(cpu) != NodeId::ZERO) {
            return Err(format!("no NUMA information, yet CPU {cpu} is on node {}", memory::cpu_node(cpu)));
        }
    }
    let (mut managed, mut free) = (0, 0);
    for node in NodeId::all(nr) {
        let (ranges, len, _) = memory::node_memory::<64>(node);
        let usable: u64 = ranges[..len].iter().map(|r| r.size() / mm::PAGE_SIZE).sum();
        let on = frames.managed_pages_on(node);
        if on > usable || (usable > 0) != (on > 0) {
            return Err(format!("node {node}: {on} pages managed of {usable} usable"));
        }
        managed += on;
        free += crate::sync::without_interrupts(|| frames.nr_free_pages_on(node));
    }
    if let Some(cpu) = sched::online_cpus().find(|&cpu| memory::cpu_node(cpu).index() >= nr) {
        return Err(format!("CPU {cpu} is on node {}, of {nr}", memory::cpu_node(cpu)));
    }
    if managed != frames.managed_pages() {
        return Err(format!("{managed} pages managed over the nodes, {} in all", frames.managed_pages()));
    }
    let total = crate::sync::without_interrupts(|| frames.nr_free_pages());
    // Other CPUs may allocate between the reads: only roughly equal.
    if free.abs_diff(total) > 4096 {
        return Err(format!("{free} pages free over the nodes, {total} in all"));
    }
    crate::sync::without_interrupts(|| frames.check_consistency()).map_err(|e| format!("{e}"))
}

/// A frame or folio allocated on a node lies in that node's firmware
/// ranges, and the allocator says it is on that node; so does one that
/// merely prefers the node while it has plenty free.
fn allocations_on_a_node_land_in_its_ranges(_: &TestEnv<'_>) -> Result<(), String> {
    let frames = memory::frame_allocator();
    let map = memory::numa_map();
    let check = |node: NodeId, pfn: mm::Pfn, what: &str| -> Result<(), String> {
        let firmware = map.node_of_addr_or_zero(pfn.phys());
        let allocator = memory::node_of_pfn(pfn);
        if firmware != node || allocator != Some(node) {
            return Err(format!(
                "{what} on node {node} got {:#x}: the firmware puts it on node {firmware}, the allocator on {allocator:?}",
                pfn.phys().as_u64()
            ));
        }
        Ok(())
    };
    for node in nodes_with_memory() {
        for order in [0, 4, 9] {
            let pa = memory::alloc_frames_on(node, order).map_err(|e| format!("alloc_frames_on: {e:?}"))?;
            let result = check(node, pa.pfn(), "alloc_frames_on");
            memory::free_frames(pa, order);
            result?;
            let pfn =
                crate::sync::without_interrupts(|| frames.alloc_preferring(node, order, AllocKind::Normal))
                    .map_err(|e| format!("alloc_preferring: {e:?}"))?;
            let result = check(node, pfn, "alloc_preferring");
            memory::free_frames(pfn.phys(), order);
            result?;
        }
        let folio = memory::alloc_folio_on(node, 9).map_err(|e| format!("alloc_folio_on: {e:?}"))?;
        let result = check(node, folio.pfn(), "alloc_folio_on");
        let folio = folio.publish();
        folio.put();
        crate::sync::without_interrupts(|| frames.free_folio(folio));
        result?;
    }
    // A node with no memory fails strictly, and nothing is lost.
    if let Some(empty) = NodeId::new(memory::nr_nodes()) {
        if memory::alloc_frames_on(empty, 0).is_ok() {
            return Err(format!("node {empty} has no memory, yet alloc_frames_on gave a frame"));
        }
    }
    Ok(())
}

/// Pages a task faults in on a CPU come from that CPU's node (while the
/// node has plenty free), on every CPU.
fn faults_prefer_the_faulting_cpus_node(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 32;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = space.mmap(cpus.len() as u64 * PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?;
    let base = base.as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "numa-faulter", move || {
            for p in 0..PAGES {
                uaccess::write_u8(base + (slot as u64 * PAGES + p) * 4096, 1 + slot as u8);
            }
        })?);
    }
    for h in handles {
        h.join()?;
    }
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    for (slot, &cpu) in cpus.iter().enumerate() {
        let want = memory::cpu_node(cpu);
        for p in 0..PAGES {
            let va = base + (slot as u64 * PAGES + p) * 4096;
            let pa = inner
                .table
                .translate(&KernelTables, VirtAddr::new(va))
                .ok_or(format!("{va:#x} not mapped"))?;
            let got = memory::node_of_pfn(pa.pfn());
            if got != Some(want) {
                return Err(format!("CPU {cpu} (node {want}) faulted {va:#x} in from {pa} on node {got:?}"));
            }
        }
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register![
    "numa": nodes_are_the_firmwares, allocations_on_a_node_land_in_its_ranges, faults_prefer_the_faulting_cpus_node,
        move_pages_moves_small_pages_and_thps_between_nodes, move_pages_statuses_of_shared_pinned_absent_and_unmapped_pages,
        query_pages_says_where_each_page_is, move_pages_refuses_bad_arguments
];

// ------------------------------------------------------------ move_pages

const HUGE: u64 = mm::thp::HPAGE_SIZE;
const PAGE: u64 = 4096;

/// Runs `f` in a task of `space` and returns what it returned.
fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "numa test", f)?.join()?)
}

/// Word `w` of page `p` of a test range at `base`, in version `v`: every
/// word differs, so a page moved to the wrong place or half copied shows.
fn word(base: u64, p: u64, w: u64, v: u64) -> u64 {
    mm::rng::mix64(base ^ p << 12 ^ w << 3 ^ v << 40) | 1
}

/// Writes version `v` over every word of `pages` pages at `base` (in a task).
fn fill(space: &Arc<AddressSpace>, base: u64, pages: u64, v: u64) -> Result<(), String> {
    run_in(space, move || {
        for p in 0..pages {
            (0..PAGE / 8).for_each(|w| uaccess::write_u64(base + p * PAGE + w * 8, word(base, p, w, v)))
        }
    })
}

/// Checks every word of `pages` pages at `base` against version `v`.
fn check_words(space: &Arc<AddressSpace>, base: u64, pages: u64, v: u64, when: &str) -> Result<(), String> {
    let bad = run_in(space, move || {
        for p in 0..pages {
            for w in 0..PAGE / 8 {
                let got = uaccess::read_u64(base + p * PAGE + w * 8);
                if got != word(base, p, w, v) {
                    return Some((p, w, got));
                }
            }
        }
        None
    })?;
    match bad {
        Some((p, w, got)) => Err(format!("{when}: word {w} of page {p} at {base:#x} is {got:#x}")),
        None => Ok(()),
    }
}

/// A free block of 2 MiB or more on `node` (a THP can move there whole).
fn has_free_huge_block(node: NodeId) -> bool {
    let frames = memory::frame_allocator();
    crate::sync::without_interrupts(|| {
        (mm::thp::HPAGE_ORDER..=mm::frame::MAX_ORDER).any(|o| frames.nr_free_blocks_on(node, o) > 0)
    })
}

/// The statuses of `[base, base + len)` must all be `want`.
fn want_all(got: &[PageStatus], want: PageStatus, when: &str) -> Result<(), String> {
    match got.iter().position(|s| *s != want) {
        Some(p) => Err(format!("{when}: page {p} is {:?}, expected {want:?} ({} pages)", got[p], got.len())),
        None => Ok(()),
    }
}

/// Whether the PMD at `va` is a leaf (a THP mapped whole).
fn is_pmd_leaf(space: &AddressSpace, va: u64) -> Result<bool, String> {
    Ok(matches!(crate::tests::vm::leaf_at(space, va)?, Some((mm::pgtable::Level::Pmd, _))))
}

/// Two nodes with memory, or a line saying the test of moving is skipped.
fn two_nodes(test: &str) -> Option<(NodeId, NodeId)> {
    let nodes = nodes_with_memory();
    if nodes.len() < 2 {
        crate::println!("numa: {test}: one node with memory, moving skipped (run with --numa 2)");
        return None;
    }
    Some((nodes[0], nodes[1]))
}

/// 64 pages of 4 KiB and two THPs, filled, moved to one node, to the
/// other and back: every status the target node, every page there (the
/// query agrees), every word intact; a THP stays one PMD leaf whenever
/// the target had a free 2 MiB block; a second move to the same node
/// moves nothing.
fn move_pages_moves_small_pages_and_thps_between_nodes(_: &TestEnv<'_>) -> Result<(), String> {
    const SMALL: u64 = 64;
    const THPS: u64 = 2;
    let Some((a, b)) = two_nodes("move_pages_moves_small_pages_and_thps_between_nodes") else {
        return Ok(());
    };
    let space = AddressSpace::new()?;
    let small = space.mmap(SMALL * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(small, SMALL * PAGE, Advice::NoHugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let huge = space.mmap(THPS * HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(huge, THPS * HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let (small, huge) = (small.as_u64(), huge.as_u64());
    fill(&space, small, SMALL, 1)?;
    fill(&space, huge, THPS * 512, 2)?;
    for t in 0..THPS {
        if !is_pmd_leaf(&space, huge + t * HUGE)? {
            return Err(format!("THP {t} is not a PMD leaf after the fill"));
        }
    }
    for (round, node) in [a, b, a, b].into_iter().enumerate() {
        let when = format!("round {round}, to node {node}");
        let whole = has_free_huge_block(node);
        let before = counters();
        let got = space.move_pages(VirtAddr::new(small), SMALL * PAGE, node).map_err(|e| format!("{e}"))?;
        want_all(&got, PageStatus::Node(node), &format!("{when}: small pages"))?;
        let got = space.move_pages(VirtAddr::new(huge), THPS * HUGE, node).map_err(|e| format!("{e}"))?;
        want_all(&got, PageStatus::Node(node), &format!("{when}: THPs"))?;
        let after = counters();
        for (base, len) in [(small, SMALL * PAGE), (huge, THPS * HUGE)] {
            let q = space.query_pages(VirtAddr::new(base), len).map_err(|e| format!("{e}"))?;
            want_all(&q, PageStatus::Node(node), &format!("{when}: query"))?;
            let guard = space.lock();
            let inner = guard.as_ref().ok_or("torn down")?;
            for p in 0..len / PAGE {
                let pa = inner.table.translate(&KernelTables, VirtAddr::new(base + p * PAGE));
                let on = pa.and_then(|pa| memory::node_of_pfn(pa.pfn()));
                if on != Some(node) {
                    return Err(format!("{when}: page {p} at {base:#x} is at {pa:?} on node {on:?}"));
                }
            }
        }
        for t in 0..THPS {
            if whole && !is_pmd_leaf(&space, huge + t * HUGE)? {
                return Err(format!("{when}: THP {t} is no PMD leaf, though node {node} had a 2 MiB block"));
            }
        }
        if whole && after.thp_migration_split != before.thp_migration_split {
            return Err(format!("{when}: a THP was split, though node {node} had a 2 MiB block"));
        }
        if round == 0 {
            continue;
        }
        // Everything was on the other node: all of it moved.
        let moved = after.pgmigrate_success - before.pgmigrate_success;
        if moved < SMALL + THPS * 512 {
            return Err(format!("{when}: {moved} pages migrated, expected {}", SMALL + THPS * 512));
        }
        check_words(&space, small, SMALL, 1, &when)?;
        check_words(&space, huge, THPS * 512, 2, &when)?;
        space.check_at_rest().map_err(|e| format!("{when}: {e}"))?;
        // Again to the same node: nothing moves.
        let again = counters();
        let got = space.move_pages(VirtAddr::new(small), SMALL * PAGE, node).map_err(|e| format!("{e}"))?;
        want_all(&got, PageStatus::Node(node), &format!("{when}: again"))?;
        if counters().pgmigrate_success != again.pgmigrate_success {
            return Err(format!("{when}: moving pages already on node {node} migrated some"));
        }
    }
    Ok(())
}

/// One range of eight pages: untouched, shared with a fork child, copied
/// by the child after the fork (exclusive on both sides), pinned (before
/// the fork), written, written, then a hole with no area, then a written
/// page (the child unmaps all from page 3). Moved to the
/// node the written pages are not on: `NotPresent`, `Shared`, moved,
/// `Busy`, moved, moved, `NoMapping`, moved; the shared and pinned pages
/// stay where they were, the child's view unchanged.
fn move_pages_statuses_of_shared_pinned_absent_and_unmapped_pages(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 8;
    let Some((a, b)) = two_nodes("move_pages_statuses_of_shared_pinned_absent_and_unmapped_pages") else {
        return Ok(());
    };
    let parent = AddressSpace::new()?;
    let base = parent.mmap(PAGES * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    parent.madvise(VirtAddr::new(base), PAGES * PAGE, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    parent.munmap(VirtAddr::new(base + 6 * PAGE), PAGE).map_err(|e| format!("munmap: {e:?}"))?;
    let written = [1u64, 2, 3, 4, 5, 7];
    run_in(&parent, move || written.iter().for_each(|&p| uaccess::write_u64(base + p * PAGE, p + 100)))?;
    // Everything written on node `a` first, so the move to `b` has work.
    parent.move_pages(VirtAddr::new(base), 6 * PAGE, a).map_err(|e| format!("{e}"))?;
    parent.move_pages(VirtAddr::new(base + 7 * PAGE), PAGE, a).map_err(|e| format!("{e}"))?;
    // Pinned before the fork: the child gets a copy of it, the parent
    // keeps it (exclusive, where it is).
    let pinned = parent.get_user_pages(VirtAddr::new(base + 3 * PAGE), 1, true, mm::gup::Hold::Pin)?;
    let child = match parent.fork() {
        Ok(child) => child,
        Err(e) => {
            crate::vm::space::release_user_pages(&pinned, mm::gup::Hold::Pin);
            return Err(e);
        }
    };
    // The child copies page 2 (then neither side shares it) and unmaps
    // everything but pages 1 and 2; page 1 stays shared.
    let setup = (|| {
        run_in(&child, move || uaccess::write_u64(base + 2 * PAGE, 202))?;
        child.munmap(VirtAddr::new(base + 3 * PAGE), 5 * PAGE).map_err(|e| format!("munmap: {e:?}"))?;
        child.folio_at(VirtAddr::new(base + PAGE)).map(|f| f.0)
    })();
    let child_page1 = match setup {
        Ok(pfn) => pfn,
        Err(e) => {
            crate::vm::space::release_user_pages(&pinned, mm::gup::Hold::Pin);
            return Err(e);
        }
    };
    let got = parent.move_pages(VirtAddr::new(base), PAGES * PAGE, b);
    crate::vm::space::release_user_pages(&pinned, mm::gup::Hold::Pin);
    let got = got.map_err(|e| format!("{e}"))?;
    let want = [
        PageStatus::NotPresent,
        PageStatus::Shared,
        PageStatus::Node(b),
        PageStatus::Busy,
        PageStatus::Node(b),
        PageStatus::Node(b),
        PageStatus::NoMapping,
        PageStatus::Node(b),
    ];
    if got != want {
        return Err(format!("statuses {got:?}, expected {want:?}"));
    }
    let errnos: Vec<i32> = got.iter().map(|s| s.errno()).collect();
    let b_nr = b.index() as i32;
    if errnos != [-2, -13, b_nr, -16, b_nr, b_nr, -14, b_nr] {
        return Err(format!("errnos {errnos:?}"));
    }
    let q = parent.query_pages(VirtAddr::new(base), PAGES * PAGE).map_err(|e| format!("{e}"))?;
    let want_q = [
        PageStatus::NotPresent,
        PageStatus::Node(a),
        PageStatus::Node(b),
        PageStatus::Node(a),
        PageStatus::Node(b),
        PageStatus::Node(b),
        PageStatus::NoMapping,
        PageStatus::Node(b),
    ];
    if q != want_q {
        return Err(format!("query after the move: {q:?}, expected {want_q:?}"));
    }
    if child.folio_at(VirtAddr::new(base + PAGE))?.0 != child_page1 {
        return Err(String::from("the shared page moved under the child"));
    }
    parent.check_at_rest().map_err(|e| format!("after the move: {e}"))?;
    let got = run_in(&parent, move || written.map(|p| uaccess::read_u64(base + p * PAGE)))?;
    if got != written.map(|p| p + 100) {
        return Err(format!("parent reads {got:?}"));
    }
    let got = run_in(&child, move || [1, 2].map(|p| uaccess::read_u64(base + p * PAGE)))?;
    if got != [101, 202] {
        return Err(format!("child reads {got:?}"));
    }
    Ok(())
}

/// The query form on any machine: a page faulted in by a task on each
/// CPU is on the node its frame is on (that CPU's, while it has room);
/// an untouched page is `NotPresent`, a page of the huge zero folio and a
/// hole `NoMapping`. Nothing moves.
fn query_pages_says_where_each_page_is(_: &TestEnv<'_>) -> Result<(), String> {
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let n = cpus.len() as u64;
    let space = AddressSpace::new()?;
    // One page per CPU, an untouched page, then a hole.
    let base = space.mmap((n + 2) * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.munmap(VirtAddr::new(base + (n + 1) * PAGE), PAGE).map_err(|e| format!("munmap: {e:?}"))?;
    for (slot, &cpu) in cpus.iter().enumerate() {
        space
            .spawn(Some(cpu), "numa-query", move || uaccess::write_u8(base + slot as u64 * PAGE, 1))?
            .join()?;
    }
    let before = counters();
    let got = space.query_pages(VirtAddr::new(base), (n + 2) * PAGE).map_err(|e| format!("{e}"))?;
    for (slot, &cpu) in cpus.iter().enumerate() {
        let pa = space.folio_at(VirtAddr::new(base + slot as u64 * PAGE))?.0;
        let on = memory::node_of_pfn(pa).ok_or(format!("{pa:?} is on no node"))?;
        if got[slot] != PageStatus::Node(on) {
            return Err(format!("CPU {cpu}'s page: {:?}, its frame is on node {on}", got[slot]));
        }
    }
    if got[n as usize..] != [PageStatus::NotPresent, PageStatus::NoMapping] {
        return Err(format!("untouched page and hole: {:?}", &got[n as usize..]));
    }
    // A read of an untouched THP block maps the huge zero folio.
    let huge = space.mmap(HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(huge, HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let h = huge.as_u64();
    run_in(&space, move || uaccess::read_u8(h + 5))?;
    let zero = crate::vm::folios::huge_zero();
    if zero.is_some() && crate::tests::vm::leaf_at(&space, h)?.map(|(_, l)| l.frame) == zero {
        let got = space.query_pages(huge, HUGE).map_err(|e| format!("{e}"))?;
        want_all(&got, PageStatus::NoMapping, "the huge zero folio")?;
    }
    if counters().pgmigrate_success != before.pgmigrate_success {
        return Err(String::from("a query migrated pages"));
    }
    Ok(())
}

/// Bad arguments are refused with an error naming them, nothing panics
/// and nothing moves: unaligned start or length, an empty range, a range
/// outside the user half or wrapping, too many pages, a node that does
/// not exist.
fn move_pages_refuses_bad_arguments(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(4 * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    let b = base.as_u64();
    let node = NodeId::ZERO;
    let va = VirtAddr::new;
    type Case = (&'static str, Result<Vec<PageStatus>, MovePagesError>, MovePagesError);
    let cases: [Case; 7] = [
        (
            "unaligned start",
            space.move_pages(va(b + 8), PAGE, node),
            MovePagesError::Unaligned { start: va(b + 8), len: PAGE },
        ),
        (
            "unaligned length",
            space.query_pages(base, PAGE + 1),
            MovePagesError::Unaligned { start: base, len: PAGE + 1 },
        ),
        ("empty", space.move_pages(base, 0, node), MovePagesError::Empty),
        (
            "kernel half",
            space.query_pages(va(0xffff_8000_0000_0000), PAGE),
            MovePagesError::OutsideUser { start: va(0xffff_8000_0000_0000), len: PAGE },
        ),
        (
            "page 0",
            space.move_pages(va(0), PAGE, node),
            MovePagesError::OutsideUser { start: va(0), len: PAGE },
        ),
        (
            "too long",
            space.query_pages(va(0x1000_0000), (MAX_MOVE_PAGES + 1) * PAGE),
            MovePagesError::TooLong { pages: MAX_MOVE_PAGES + 1 },
        ),
        (
            "past the user half",
            space.move_pages(va(0x0000_7fff_ffff_f000), 2 * PAGE, node),
            MovePagesError::OutsideUser { start: va(0x0000_7fff_ffff_f000), len: 2 * PAGE },
        ),
    ];
    for (what, got, want) in cases {
        if got != Err(want) {
            return Err(format!("{what}: {got:?}, expected {want:?}"));
        }
    }
    let nr = memory::nr_nodes();
    if let Some(missing) = NodeId::new(nr) {
        let got = space.move_pages(base, PAGE, missing);
        if got != Err(MovePagesError::NoSuchNode { node: missing, nr_nodes: nr }) {
            return Err(format!("node {missing} of {nr}: {got:?}"));
        }
        if let Err(e) = got {
            crate::println!("numa: refused as it should be: {e}");
        }
    }
    // And a good call still works (nothing mapped yet: every page absent).
    let got = space.move_pages(base, 4 * PAGE, node).map_err(|e| format!("{e}"))?;
    want_all(&got, PageStatus::NotPresent, "untouched pages")
}
