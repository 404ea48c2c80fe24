//! In-guest tests of folio migration (`crate::vm::migrate`, `mm::migrate`)
//! on the real MMU: a THP migrated again and again while tasks on every
//! CPU read and write it (no write lost, still one PMD leaf after each);
//! the small pages of a fork family migrated (every member maps the new
//! frames, copy on write still separates them); seed 000's path: a THP in
//! the swap cache migrated, then split by a migration with no 2 MiB
//! destination, a piece freed, the rest swapped back in (the test the
//! replay `swapcache-tail-entries` must fail).

use crate::memory;
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
use mm::pgtable::Level;
use mm::vma::VmaProt;
use mm::{PhysAddr, VirtAddr};

pub(crate) const TESTS: &[Test] = register!["migrate":
    thp_moves_while_every_cpu_reads_and_writes_it,
    small_pages_of_a_fork_family_move,
    swap_cache_thp_migrated_split_freed_and_swapped_in];

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
    let mut tasks = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        let (stop, ready) = (stop.clone(), ready.clone());
        tasks.push(space.spawn(Some(cpu), "migrate rw", move || -> Result<u64, String> {
            ready.fetch_add(1, Ordering::AcqRel);
            // Each round writes `i` into this task's word of every page it
            // owns (pages `slot`, `slot + n`, ...) and reads it back, and
            // checks word 0 of the page.
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) || i == 0 {
                i += 1;
                for p in (slot as u64..512).step_by(n) {
                    uaccess::write_u64(word(base, p, slot), i);
                    let got = uaccess::read_u64(word(base, p, slot));
                    if got != i {
                        return Err(format!("page {p}: wrote {i}, read {got}"));
                    }
                    let fixed = uaccess::read_u64(base + p * 4096);
                    if fixed != p ^ 0xabcd {
                        return Err(format!("page {p}: word 0 is {fixed:#x}"));
                    }
                }
            }
            Ok(i)
        })?);
    }
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
