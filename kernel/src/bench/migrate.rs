//! The migration benchmarks of profile `migrate` (BENCHMARKS.md: `-m 2048
//! -smp 4 --numa 2`; `bench=migrate-profile`): `migrate_4k` and
//! `migrate_thp`.
//!
//! Each fills its range from a task of its space, then moves all of it
//! from the bench task, timed: with two or more nodes to the node the
//! range is not on, with `AddressSpace::move_pages` (every status must say
//! the target node); with one node to other frames of any node, with
//! `AddressSpace::migrate_range` and `Dest::Any`. The rates count what the
//! migration counters say moved, not what was asked. Every page is read
//! back after (outside the timing), and the spaces are dropped with every
//! frame accounted for ([`super::Ledger`]).

use super::{
    gib_per_second, map, page_is, per_second, report, run_in, timed, write_page, Ledger, Thp, HUGE, MIB, PAGE,
};
use crate::memory;
use crate::vm::migrate::{counters, Counters, Dest};
use crate::vm::move_pages::PageStatus;
use crate::vm::space::AddressSpace;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use mm::numa::NodeId;
use mm::VirtAddr;

/// Where the bench moves a range: the other node (`move_pages`), or any
/// other frames on one node (`migrate_range`).
#[derive(Clone, Copy)]
enum Target {
    Node(NodeId),
    AnyFrames,
}

/// The target for a range whose first page is at `base`: with several
/// nodes, the one after the node that page is on.
fn target(space: &Arc<AddressSpace>, base: u64) -> Result<Target, String> {
    let nr = memory::nr_nodes();
    if nr < 2 {
        return Ok(Target::AnyFrames);
    }
    let here = match space.query_pages(VirtAddr::new(base), PAGE).map_err(|e| format!("{e}"))?[0] {
        PageStatus::Node(n) => n,
        other => return Err(format!("the first page is {other:?} after the fill")),
    };
    let next = NodeId::new((here.index() + 1) % nr).ok_or("no next node")?;
    Ok(Target::Node(next))
}

/// Moves `[base, base + len)` to `to`, timed; the counters before and
/// after. With a node, every page must report it.
fn move_range(
    what: &str,
    space: &Arc<AddressSpace>,
    base: u64,
    len: u64,
    to: Target,
) -> Result<(Counters, Counters, super::Span), String> {
    let before = counters();
    let (result, span) = timed(|| match to {
        Target::Node(node) => space
            .move_pages(VirtAddr::new(base), len, node)
            .map(|s| Some((node, s)))
            .map_err(|e| format!("{e}")),
        Target::AnyFrames => space.migrate_range(VirtAddr::new(base), len, Dest::Any).map(|_| None),
    });
    let after = counters();
    if let Some((node, statuses)) = result.map_err(|e| format!("{what}: {e}"))? {
        if let Some(p) = statuses.iter().position(|s| *s != PageStatus::Node(node)) {
            return Err(format!("{what}: page {p} is {:?} after the move to node {node}", statuses[p]));
        }
    }
    Ok((before, after, span))
}

/// Reports how many nodes the moves crossed between (1: to other frames).
fn report_nodes(name: &str, to: Target) {
    let nodes = match to {
        Target::Node(_) => memory::nr_nodes(),
        Target::AnyFrames => 1,
    };
    report(name, nodes as f64, "nodes");
}

/// `migrate_4k`: 256 MiB of 4 KiB pages (THP off), every word written,
/// then all moved (module doc); pages moved per second; every word read
/// back.
pub(super) fn migrate_4k() -> Result<(), String> {
    const LEN: u64 = 256 * MIB;
    const PAGES: u64 = LEN / PAGE;
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, LEN, PAGE, Thp::Off)?;
    run_in(&space, None, "migrate_4k fill", move || (0..PAGES).for_each(|p| write_page(base, p, 7)))?;
    let to = target(&space, base)?;
    let (before, after, span) = move_range("migrate_4k", &space, base, LEN, to)?;
    let moved = after.pgmigrate_success - before.pgmigrate_success;
    if moved < PAGES {
        return Err(format!("migrate_4k: {moved} of {PAGES} pages migrated ({before:?} -> {after:?})"));
    }
    let bad = run_in(&space, None, "migrate_4k verify", move || (0..PAGES).find(|&p| !page_is(base, p, 7)))?;
    if let Some(p) = bad {
        return Err(format!("migrate_4k: page {p} differs after the move"));
    }
    report("migrate_4k", per_second(moved, span.ns()), "pages/s");
    report_nodes("migrate_4k_nodes", to);
    ledger.settle("migrate_4k", alloc::vec![space])
}

/// `migrate_thp`: 512 MiB of THPs (one word written per 4 KiB page, every
/// 2 MiB block a PMD leaf), all moved (module doc); THPs moved whole per
/// second and GiB/s; every THP a PMD leaf after, every written word read
/// back and the last word of every page still zero.
pub(super) fn migrate_thp() -> Result<(), String> {
    const LEN: u64 = 512 * MIB;
    const BLOCKS: u64 = LEN / HUGE;
    const PAGES: u64 = LEN / PAGE;
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, LEN, HUGE, Thp::On)?;
    let word = |p: u64| super::swap_word(p, 0, 9);
    run_in(&space, None, "migrate_thp fill", move || {
        (0..PAGES).for_each(|p| uaccess::write_u64(base + p * PAGE, word(p)))
    })?;
    let pmd_leaves = |space: &AddressSpace| -> Result<u64, String> {
        let mut n = 0;
        for b in 0..BLOCKS {
            if matches!(
                crate::tests::vm::leaf_at(space, base + b * HUGE)?,
                Some((mm::pgtable::Level::Pmd, _))
            ) {
                n += 1;
            }
        }
        Ok(n)
    };
    let huge = pmd_leaves(&space)?;
    if huge != BLOCKS {
        return Err(format!("migrate_thp: {huge} of {BLOCKS} blocks are PMD leaves after the fill"));
    }
    let to = target(&space, base)?;
    let (before, after, span) = move_range("migrate_thp", &space, base, LEN, to)?;
    let whole = after.thp_migration_success - before.thp_migration_success;
    let split = after.thp_migration_split - before.thp_migration_split;
    if whole + split < BLOCKS {
        return Err(format!("migrate_thp: {whole} THPs moved whole and {split} split, of {BLOCKS}"));
    }
    let bad = run_in(&space, None, "migrate_thp verify", move || {
        (0..PAGES).find(|&p| {
            uaccess::read_u64(base + p * PAGE) != word(p)
                || uaccess::read_u64(base + p * PAGE + PAGE - 8) != 0
        })
    })?;
    if let Some(p) = bad {
        return Err(format!("migrate_thp: page {p} differs after the move"));
    }
    let after_leaves = pmd_leaves(&space)?;
    if after_leaves != BLOCKS - split {
        return Err(format!(
            "migrate_thp: {after_leaves} PMD leaves after the move, {whole} THPs moved whole"
        ));
    }
    report("migrate_thp", per_second(whole, span.ns()), "THPs/s");
    report("migrate_thp_gibps", gib_per_second(whole * HUGE, span.ns()), "GiB/s");
    report("migrate_thp_split", split as f64, "THPs");
    report_nodes("migrate_thp_nodes", to);
    ledger.settle("migrate_thp", alloc::vec![space])
}
