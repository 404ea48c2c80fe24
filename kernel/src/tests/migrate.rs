//! In-guest tests of folio migration (`crate::vm::migrate`, `mm::migrate`)
//! on the real MMU: a THP migrated again and again while tasks on every
//! CPU read and write it (no write lost, still one PMD leaf after each);
//! the small pages of a fork family migrated (every member maps the new
//! frames, copy on write still separates them); seed 000's path: a THP in
//! the swap cache migrated, then split by a migration with no 2 MiB
//! destination, a piece freed, the rest swapped back in (the test the
//! replay `swapcache-tail-entries` must fail).

use crate::memory;
use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::tests::vm::leaf_at;
use crate::tests::{Test, TestEnv};
use crate::vm::migrate::{counters, Dest};
use crate::vm::space::{AddressSpace, Advice};
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use mm::pgtable::{Decoded, Level, NonPresent};
use mm::vma::VmaProt;
use mm::{PhysAddr, VirtAddr};

pub(crate) const TESTS: &[Test] = register!["migrate":
    thp_moves_while_every_cpu_reads_and_writes_it,
    small_pages_of_a_fork_family_move,
    swap_cache_thp_migrated_split_freed_and_swapped_in,
    thp_cut_while_it_migrates_loses_nothing,
    small_pages_cut_or_paged_out_while_they_migrate,
    thp_cut_or_paged_out_while_it_migrates];

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const HUGE: u64 = mm::thp::HPAGE_SIZE;

/// Runs `f` in a task of `space` and returns what it returned.
fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "migrate test", f)?.join()?)
}

/// The checker over `space`'s family, at rest.
fn check(space: &AddressSpace, when: &str) -> Result<(), String> {
    space.check_at_rest().map(drop).map_err(|e| format!("{when}: {e}"))
}

/// The frame a PMD leaf at `va` maps; an error when it is no PMD leaf.
fn pmd_frame(space: &AddressSpace, va: u64, when: &str) -> Result<PhysAddr, String> {
    match leaf_at(space, va)? {
        Some((Level::Pmd, leaf)) => Ok(leaf.frame),
        other => Err(format!("{when}: {va:#x} is mapped by {other:?}, not one PMD leaf")),
    }
}

/// The word task `slot` of `n` writes in page `p` of the THP at `base`:
/// each task its own word of every page it owns.
fn word(base: u64, p: u64, slot: usize) -> u64 {
    base + p * 4096 + 8 * (slot as u64 + 1)
}

/// Starts a writer task on every CPU of `cpus` in `space` (slot `k` on
/// `cpus[k]`). Each counts itself in `ready`, then in round `i` writes `i`
/// into its own word (`word`) of every page it owns (pages `k`, `k + n`,
/// ... below 512, those in `skip` left out), reads it back and checks
/// word 0 of the page against `word0(p)`, until `stop` (one round at
/// least). A task returns its last round, or the first mismatch as
/// "lost data: ..." (what seed 001's replay looks for).
fn spawn_writers(
    space: &Arc<AddressSpace>,
    cpus: &[usize],
    stop: &Arc<AtomicBool>,
    ready: &Arc<AtomicUsize>,
    base: u64,
    skip: core::ops::Range<u64>,
    word0: impl Fn(u64) -> u64 + Clone + Send + 'static,
) -> Result<Vec<sched::JoinHandle<Result<u64, String>>>, String> {
    let n = cpus.len();
    let mut tasks = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        let (stop, ready, skip, word0) = (stop.clone(), ready.clone(), skip.clone(), word0.clone());
        tasks.push(space.spawn(Some(cpu), "migrate rw", move || -> Result<u64, String> {
            ready.fetch_add(1, Ordering::AcqRel);
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) || i == 0 {
                i += 1;
                for p in (slot as u64..512).step_by(n).filter(|p| !skip.contains(p)) {
                    uaccess::write_u64(word(base, p, slot), i);
                    let got = uaccess::read_u64(word(base, p, slot));
                    let fixed = uaccess::read_u64(base + p * 4096);
                    if got != i || fixed != word0(p) {
                        return Err(format!(
                            "lost data: page {p}: wrote {i}, read {got}; word 0 {fixed:#x}, not {:#x}",
                            word0(p)
                        ));
                    }
                }
            }
            Ok(i)
        })?);
    }
    Ok(tasks)
}

fn thp_moves_while_every_cpu_reads_and_writes_it(_: &TestEnv<'_>) -> Result<(), String> {
    const ROUNDS: usize = 12;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = space.mmap(HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(base, HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let base = base.as_u64();
    // Word 0 of every page: its number, never written again.
    run_in(&space, move || (0..512u64).for_each(|p| uaccess::write_u64(base + p * 4096, p ^ 0xabcd)))?;
    let mut frame = pmd_frame(&space, base, "after the fill")?;
    let before = counters();
    let waits = crate::vm::migrate::NR_WAITS.load(Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let n = cpus.len();
    let tasks = spawn_writers(&space, &cpus, &stop, &ready, base, 0..0, |p| p ^ 0xabcd)?;
    while ready.load(Ordering::Acquire) < n {
        sched::yield_now();
    }
    let mut error = None;
    for round in 0..ROUNDS {
        match space.migrate_range(VirtAddr::new(base), HUGE, Dest::Any) {
            Ok(done) if done.nr_moved == 1 && done.nr_split == 0 => {}
            other => {
                error = Some(format!("round {round}: {other:?}"));
                break;
            }
        }
        let now = pmd_frame(&space, base, "after a migration")?;
        if now == frame {
            error = Some(format!("round {round}: still at {now}"));
            break;
        }
        frame = now;
        sched::sleep_ms(2);
    }
    stop.store(true, Ordering::Release);
    let mut last = Vec::new();
    for t in tasks {
        last.push(t.join()??);
    }
    if let Some(e) = error {
        return Err(e);
    }
    // Every task's last write is in the THP where it now is.
    let bad = run_in(&space, move || {
        (0..512u64).find(|&p| {
            let slot = (p % n as u64) as usize;
            uaccess::read_u64(word(base, p, slot)) != last[slot]
                || uaccess::read_u64(base + p * 4096) != p ^ 0xabcd
        })
    })?;
    if let Some(p) = bad {
        return Err(format!("page {p} lost a write"));
    }
    pmd_frame(&space, base, "at the end")?;
    let after = counters();
    crate::println!(
        "migrate: {ROUNDS} migrations of a THP under {n} tasks: {} faults waited on a migration entry",
        crate::vm::migrate::NR_WAITS.load(Ordering::Relaxed) - waits
    );
    if after.thp_migration_success - before.thp_migration_success < ROUNDS as u64
        || after.pgmigrate_success - before.pgmigrate_success < (ROUNDS * 512) as u64
    {
        return Err(format!("counters: {before:?} -> {after:?}"));
    }
    check(&space, "after the migrations")?;
    Ok(())
}

fn small_pages_of_a_fork_family_move(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 32;
    let parent = AddressSpace::new()?;
    let base = parent.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    parent
        .madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage)
        .map_err(|e| format!("madvise: {e:?}"))?;
    run_in(&parent, move || (0..PAGES).for_each(|p| uaccess::write_u64(base + p * 4096 + 16, p * 3 + 1)))?;
    let child = parent.fork()?;
    // Half the pages written by the child after the fork: its own copies.
    run_in(&child, move || (0..PAGES / 2).for_each(|p| uaccess::write_u64(base + p * 4096 + 16, p * 5 + 2)))?;
    let frames = |space: &AddressSpace| -> Result<Vec<PhysAddr>, String> {
        (0..PAGES).map(|p| space.folio_at(VirtAddr::new(base + p * 4096)).map(|f| f.0.phys())).collect()
    };
    let (old_parent, old_child) = (frames(&parent)?, frames(&child)?);
    let free = memory::nr_free_frames();
    let done = parent.migrate_range(VirtAddr::new(base), PAGES * 4096, Dest::Any)?;
    if (done.nr_folios, done.nr_moved) != (PAGES as usize, PAGES as usize) {
        return Err(format!("parent: {done:?}"));
    }
    let done = child.migrate_range(VirtAddr::new(base), PAGES * 4096, Dest::Any)?;
    if (done.nr_folios, done.nr_moved) != (PAGES as usize, PAGES as usize) {
        return Err(format!("child: {done:?}"));
    }
    let (new_parent, new_child) = (frames(&parent)?, frames(&child)?);
    for p in 0..PAGES as usize {
        if new_parent[p] == old_parent[p] || new_child[p] == old_child[p] {
            return Err(format!("page {p} did not move"));
        }
        // Shared pages (the second half) stay shared, at the same frame.
        if (p as u64 >= PAGES / 2) != (new_parent[p] == new_child[p]) {
            return Err(format!("page {p}: parent {} child {}", new_parent[p], new_child[p]));
        }
    }
    if memory::nr_free_frames() != free {
        return Err(format!("{} frames free, {free} before", memory::nr_free_frames()));
    }
    check(&parent, "after the migrations")?;
    let got =
        run_in(&parent, move || (0..PAGES).find(|&p| uaccess::read_u64(base + p * 4096 + 16) != p * 3 + 1))?;
    if let Some(p) = got {
        return Err(format!("parent page {p} wrong"));
    }
    let want_child = |p: u64| if p < PAGES / 2 { p * 5 + 2 } else { p * 3 + 1 };
    let got = run_in(&child, move || {
        (0..PAGES).find(|&p| uaccess::read_u64(base + p * 4096 + 16) != want_child(p))
    })?;
    if let Some(p) = got {
        return Err(format!("child page {p} wrong"));
    }
    // Copy on write still separates the shared half.
    run_in(&parent, move || uaccess::write_u64(base + (PAGES - 1) * 4096 + 16, 7))?;
    let child_sees = run_in(&child, move || uaccess::read_u64(base + (PAGES - 1) * 4096 + 16))?;
    if child_sees != want_child(PAGES - 1) {
        return Err(format!("the child sees the parent's write: {child_sees}"));
    }
    check(&parent, "after copy on write")?;
    Ok(())
}

/// Seed 000's path. A THP paged out, its swap entries copied by fork, read
/// back by the parent: a whole THP in the swap cache, mapped by the
/// parent, its slots held by the child's entries. Migrated whole (still in
/// the cache, every slot naming the new folio), then migrated with order-0
/// destinations only: split in the cache, each piece must name its own
/// slot (`first + i`; with `bug=swapcache-tail-entries` the tails carry no
/// entry, and this fails). Then a piece nobody needs any more is freed
/// with its slot only, and both spaces read every other page back.
fn swap_cache_thp_migrated_split_freed_and_swapped_in(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::demo::{check_pattern, write_pattern};
    if crate::vm::swap::alloc_area().is_none() {
        return Err(String::from("no swap area: attach a swap disk (xtask does unless --swap 0)"));
    }
    let memmap = memory::frame_allocator().memmap();
    let parent = AddressSpace::new()?;
    let base = parent.mmap(HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    parent.madvise(base, HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let base = base.as_u64();
    write_pattern(&parent, base, 0..512, 0x000)?;
    pmd_frame(&parent, base, "after the fill")?;
    parent.madvise(VirtAddr::new(base), HUGE, Advice::PageOut).map_err(|e| format!("pageout: {e:?}"))?;
    let child = parent.fork()?;
    check_pattern(&parent, base, 0..512, 0x000)??;
    let (pfn, order, cached) = parent.folio_at(VirtAddr::new(base))?;
    if (order, cached) != (9, true) {
        return Err(format!("read back as order {order}, in the swap cache: {cached} (want a cached THP)"));
    }
    let first = mm::folio::folio_of(memmap, pfn).and_then(|f| f.swap_entry()).ok_or("no swap entry")?;
    // Whole, to a 2 MiB block.
    let done = parent.migrate_range(VirtAddr::new(base), HUGE, Dest::Any)?;
    let (now, order, cached) = parent.folio_at(VirtAddr::new(base))?;
    if done.nr_moved != 1 || now == pfn || (order, cached) != (9, true) {
        return Err(format!("whole: {done:?}, now {now:?} order {order} cached {cached}"));
    }
    // Split, and the pieces moved one by one.
    let done = parent.migrate_range(VirtAddr::new(base), HUGE, Dest::Pages)?;
    for p in 0..512u64 {
        let (piece, order, cached) = parent.folio_at(VirtAddr::new(base + p * 4096))?;
        let entry = mm::folio::folio_of(memmap, piece).and_then(|f| f.swap_entry());
        if order != 0 || !cached || entry != Some(first.plus(p)) {
            return Err(format!(
                "after the split, page {p} carries a wrong tail entry: {entry:?}, not {:?} (order {order}, \
                 in the swap cache: {cached}; {done:?})",
                first.plus(p)
            ));
        }
    }
    if done.nr_split != 1 || done.nr_moved != 512 {
        return Err(format!("split: {done:?}"));
    }
    check(&parent, "after the split")?;
    // Page 7 leaves both spaces: its piece and its slot go, nothing else.
    let area = crate::vm::swap::area(first.ty()).ok_or("the area is gone")?;
    for space in [&parent, &child] {
        space.munmap(VirtAddr::new(base + 7 * 4096), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    }
    crate::vm::reclaim::drain_deferred();
    if area.area.has_cache(first.plus(7)) || area.area.count(first.plus(7)) != 0 {
        return Err(String::from("page 7's slot is still used after both spaces unmapped it"));
    }
    for p in [6u64, 8] {
        if !area.area.has_cache(first.plus(p)) {
            return Err(format!("freeing page 7 dropped page {p}'s swap-cache slot"));
        }
    }
    // The rest back in, in both spaces, from the cache.
    for space in [&child, &parent] {
        check_pattern(space, base, 0..7, 0x000)??;
        check_pattern(space, base, 8..512, 0x000)??;
    }
    check(&parent, "after swapping back in")?;
    Ok(())
}

// ------------------------------------------------------------------ cuts racing migrations

/// What the cutter does to part of the block while it migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Munmap,
    /// `mprotect` to read-only.
    Mprotect,
    DontNeed,
    PageOut,
}

/// The pages of the 2 MiB block a cut covers: the middle half, so that it
/// cuts a THP at both ends.
const CUT: core::ops::Range<u64> = 100..356;

/// Word 0 of page `p` in round `round`: written once by the fill.
fn stamp(round: u64, p: u64) -> u64 {
    0x5eed_0001_0000_0000 ^ (round << 16) ^ p
}

/// PMD migration entries seen by the cutters, and of them those whose
/// frame field, read raw as seed 001's mistaken huge-zero test reads it
/// (`PageTableFormat::frame_field_unchecked`), is the very frame the
/// entry names, and those for which that test says "huge zero".
static PMD_ENTRIES_SEEN: AtomicUsize = AtomicUsize::new(0);
static FIELD_IS_THE_FRAME: AtomicUsize = AtomicUsize::new(0);
static FIELD_SAYS_ZERO: AtomicUsize = AtomicUsize::new(0);

/// Counts what the raw frame field of the PMD migration entry `raw`
/// (naming `pfn`) would tell seed 001's mistaken test.
fn note_frame_field(raw: u64, pfn: mm::Pfn) {
    use mm::pgtable::{PageSize, PageTableFormat};
    let memmap = memory::frame_allocator().memmap();
    let field =
        <crate::memory::paging::Format as PageTableFormat>::frame_field_unchecked(raw, PageSize::Size2M);
    PMD_ENTRIES_SEEN.fetch_add(1, Ordering::Relaxed);
    if field == pfn.phys() {
        FIELD_IS_THE_FRAME.fetch_add(1, Ordering::Relaxed);
    }
    if mm::thp::is_huge_zero_unchecked::<crate::memory::paging::Format>(memmap, raw) {
        FIELD_SAYS_ZERO.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a migration entry stands in the block at `base` now: the PMD
/// (`huge`) or any PTE of the cut range.
fn migration_entry_in(space: &AddressSpace, base: u64, huge: bool) -> bool {
    let guard = space.lock();
    let Some(inner) = guard.as_ref() else { return false };
    let is_entry = |d: &Decoded| matches!(d, Decoded::NonPresent(NonPresent::Migration(_)));
    if huge {
        let (level, d) = inner.table.lookup(&KernelTables, VirtAddr::new(base));
        if let (Level::Pmd, Decoded::NonPresent(NonPresent::Migration(m))) = (level, d) {
            let raw = inner.table.walk(&KernelTables, VirtAddr::new(base)).raw;
            note_frame_field(raw, m.pfn);
            return true;
        }
        return false;
    }
    let mut found = false;
    let (start, end) = (VirtAddr::new(base + CUT.start * 4096), VirtAddr::new(base + CUT.end * 4096));
    inner.table.visit(&KernelTables, start, end, &mut |_, _, d, _| found |= is_entry(&d));
    found
}

/// One round of a cut racing a migration of a 2 MiB block (2 MiB
/// aligned, in a fresh space): the block is filled (word 0 of every
/// page a stamp) as one THP (`huge`) or 512 small pages; then the test
/// task migrates it (`migrate_range`; of small pages the 128 from 32
/// before the cut's start) while a cutter applies `cut` to the
/// pages [`CUT`] and a task on every CPU writes its own word of the
/// other pages, reads it back and reads word 0. With `aim`, the cutter
/// waits until it sees a migration entry in the block (it then races the
/// migration's restore for the split: most rounds it wins); without, it
/// starts after `round % 8` yields. Then every page still mapped must
/// hold its bytes (the cut pages: read-only ones their stamp, dropped ones
/// zeros, paged-out ones their stamp again), and the checker must pass.
/// Returns whether the cutter saw a migration entry when it cut.
fn cut_round(round: u64, huge: bool, cut: Cut, aim: bool) -> Result<bool, String> {
    // A space of its own each round: a block once split keeps its page
    // table, and a THP needs a block without one.
    let space = &AddressSpace::new()?;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let n = cpus.len();
    let at = space.mmap(HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    let advice = if huge { Advice::HugePage } else { Advice::NoHugePage };
    space.madvise(at, HUGE, advice).map_err(|e| format!("madvise: {e:?}"))?;
    let base = at.as_u64();
    run_in(space, move || (0..512u64).for_each(|p| uaccess::write_u64(base + p * 4096, stamp(round, p))))?;
    if huge {
        pmd_frame(space, base, "after the fill")?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let cutter = {
        let (stop, ready, weak) = (stop.clone(), ready.clone(), Arc::downgrade(space));
        space.spawn(Some(cpus[1 % n]), "migrate cutter", move || -> Result<bool, String> {
            let space = weak.upgrade().ok_or("the space is gone")?;
            ready.fetch_add(1, Ordering::AcqRel);
            let mut saw = false;
            if aim {
                while !stop.load(Ordering::Acquire) && !saw {
                    saw = migration_entry_in(&space, base, huge);
                    if !saw {
                        sched::yield_now();
                    }
                }
            } else {
                (0..round % 8).for_each(|_| sched::yield_now());
                saw = migration_entry_in(&space, base, huge);
            }
            let (start, len) = (VirtAddr::new(base + CUT.start * 4096), (CUT.end - CUT.start) * 4096);
            match cut {
                Cut::Munmap => space.munmap(start, len),
                Cut::Mprotect => space.mprotect(start, len, VmaProt::READ),
                Cut::DontNeed => space.madvise(start, len, Advice::DontNeed),
                Cut::PageOut => space.madvise(start, len, Advice::PageOut),
            }
            .map_err(|e| format!("{cut:?}: {e:?}"))?;
            Ok(saw)
        })?
    };
    let tasks = spawn_writers(space, &cpus, &stop, &ready, base, CUT, move |p| stamp(round, p))?;
    while ready.load(Ordering::Acquire) < n + 1 {
        sched::yield_now();
    }
    // Small pages: only the 128 pages around the cut's start move (a
    // migration of each of 512 pages under four writers costs seconds
    // under TCG); the cut still meets entries inside it and the writers
    // pages that move beside it.
    let (from, len) =
        if huge { (at, HUGE) } else { (VirtAddr::new(base + (CUT.start - 32) * 4096), 128 * 4096) };
    let migrated = space.migrate_range(from, len, Dest::Any);
    stop.store(true, Ordering::Release);
    let saw = cutter.join()?;
    let mut last = Vec::new();
    let mut error = None;
    for t in tasks {
        match t.join()? {
            Ok(i) => last.push(i),
            Err(e) => error = error.or(Some(e)),
        }
    }
    let saw = saw?;
    if let Some(e) = error {
        return Err(format!("{cut:?} (saw a migration entry: {saw}; {migrated:?}): {e}"));
    }
    // Every page still mapped holds what it should.
    let bad = run_in(space, move || {
        (0..512u64).find_map(|p| {
            let want0 = match (CUT.contains(&p), cut) {
                (true, Cut::Munmap) => return None,
                (true, Cut::DontNeed) => 0,
                _ => stamp(round, p),
            };
            let got0 = uaccess::read_u64(base + p * 4096);
            let slot = (p % n as u64) as usize;
            let own = (!CUT.contains(&p)).then(|| uaccess::read_u64(word(base, p, slot)));
            (got0 != want0 || own.is_some_and(|w| w != last[slot])).then(|| {
                format!("page {p}: word 0 {got0:#x}, not {want0:#x}; own word {own:?}, not {}", last[slot])
            })
        })
    })?;
    if let Some(why) = bad {
        return Err(format!("lost data after {cut:?} (saw a migration entry: {saw}; {migrated:?}): {why}"));
    }
    check(space, &format!("after {cut:?} racing a migration (saw a migration entry: {saw})"))?;
    Ok(saw)
}

/// The rounds of [`cut_round`] over `cuts` in turn, for at least `secs`
/// seconds and `min_rounds` rounds; prints how many cuts met a migration
/// entry.
fn cut_rounds(
    name: &str,
    huge: bool,
    cuts: &[Cut],
    aim: &[bool],
    secs: u64,
    min_rounds: u64,
) -> Result<(), String> {
    use crate::arch::prelude::*;
    let deadline = Arch::now_ns() + secs * 1_000_000_000;
    let (mut round, mut hits) = (0u64, 0u64);
    while round < min_rounds || Arch::now_ns() < deadline {
        let cut = cuts[round as usize % cuts.len()];
        let aimed = aim[(round as usize / cuts.len()) % aim.len()];
        hits += cut_round(round, huge, cut, aimed).map_err(|e| format!("round {round}: {e}"))? as u64;
        round += 1;
    }
    crate::println!("{name}: {round} rounds, {hits} cuts met a migration entry");
    Ok(())
}

/// Seed 001 in the guest: a THP migrated while a cutter on another CPU
/// munmaps, mprotects or drops (`MADV_DONTNEED`) the middle of it as soon
/// as it sees the PMD migration entry (so the PMD split meets the entry
/// most rounds), and a task on every CPU reads and writes the rest. No
/// byte may be lost. With `bug=split-pmd-migration-entry` the split clears
/// the PMD migration entry, the migration restores nothing, and the rest
/// of the block reads zeros: "lost data". Runs `stress_secs` seconds
/// (2 by default), at least 6 rounds.
fn thp_cut_while_it_migrates_loses_nothing(env: &TestEnv<'_>) -> Result<(), String> {
    let secs = env.args.get_u64("stress_secs").map_err(|e| format!("{e}"))?.unwrap_or(2);
    let cuts = [Cut::DontNeed, Cut::Munmap, Cut::Mprotect];
    let seen = PMD_ENTRIES_SEEN.load(Ordering::Relaxed);
    let is_frame = FIELD_IS_THE_FRAME.load(Ordering::Relaxed);
    let says_zero = FIELD_SAYS_ZERO.load(Ordering::Relaxed);
    cut_rounds("migrate: THP cut while it migrates", true, &cuts, &[true], secs, 6)?;
    // Seed 001's other half, on this arch: what the raw frame field of the
    // PMD migration entries met tells a huge-zero test that skips the
    // present check. x86_64 stores the offset inverted, so the field is
    // never the frame (never RAM); AArch64 stores it where a block's
    // address goes, so the field is the frame the entry names, and only
    // that frame (a THP being migrated, never the huge zero folio) keeps
    // the test from saying "huge zero".
    let seen = PMD_ENTRIES_SEEN.load(Ordering::Relaxed) - seen;
    let is_frame = FIELD_IS_THE_FRAME.load(Ordering::Relaxed) - is_frame;
    let says_zero = FIELD_SAYS_ZERO.load(Ordering::Relaxed) - says_zero;
    let arch = <crate::memory::paging::Format as mm::pgtable::PageTableFormat>::NAME;
    crate::println!(
        "migrate: seed 001 on {arch}: {seen} PMD migration entries met, the raw frame field is the named frame \
         in {is_frame}, taken for huge zero in {says_zero}"
    );
    let want_frame = if arch == "x86_64" { 0 } else { seen };
    if is_frame != want_frame || says_zero != 0 {
        return Err(format!(
            "seed 001's frame field on {arch}: {is_frame} of {seen} name the frame, {says_zero} zero"
        ));
    }
    Ok(())
}

/// munmap, mprotect, `MADV_DONTNEED` and `MADV_PAGEOUT` of part of a block
/// of small pages racing their migration, each aimed at a migration entry
/// and at a random moment.
fn small_pages_cut_or_paged_out_while_they_migrate(_: &TestEnv<'_>) -> Result<(), String> {
    let cuts = [Cut::Munmap, Cut::Mprotect, Cut::DontNeed, Cut::PageOut];
    cut_rounds("migrate: small pages cut while they migrate", false, &cuts, &[true, false], 0, 8)
}

/// The same over a THP, `MADV_PAGEOUT` included (it splits the THP, or
/// passes a PMD migration entry by), each aimed and at a random moment.
fn thp_cut_or_paged_out_while_it_migrates(_: &TestEnv<'_>) -> Result<(), String> {
    let cuts = [Cut::Munmap, Cut::Mprotect, Cut::DontNeed, Cut::PageOut];
    cut_rounds("migrate: THP cut or paged out while it migrates", true, &cuts, &[true, false], 0, 8)
}
