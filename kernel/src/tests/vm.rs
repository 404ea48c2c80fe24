//! In-guest tests moved from vm/space.rs.

use crate::memory;
use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::tests::kit::*;
use crate::vm::space::*;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mm::debug::Stats;
use mm::gup::Hold;
use mm::pgtable::Level;
use mm::vma::{VmaError, VmaProt};
use mm::{PhysAddr, VirtAddr};

use crate::tests::{Test, TestEnv};
use mm::folio::FolioMapping;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const RO: VmaProt = VmaProt { read: true, write: false, exec: false };

/// Runs the consistency checker (at rest: the tests call it with their
/// tasks joined); `Err` names the moment and the problem.
fn check_space(space: &AddressSpace, when: &str) -> Result<Stats, String> {
    space.check_at_rest().map_err(|e| format!("{when}: {e}"))
}

/// Runs the checker and wants exactly `pages` 4 KiB pages mapped, each its
/// own folio.
fn check_pages(space: &AddressSpace, when: &str, pages: u64) -> Result<Stats, String> {
    let stats = check_space(space, when)?;
    let want = Stats { nr_pages_mapped: pages, nr_folios: pages, nr_pte_leaves: pages, ..Stats::default() };
    if stats != want {
        return Err(format!("{when}: checker saw {stats:?}, expected {want:?}"));
    }
    Ok(stats)
}

fn demand_zero_pages_fill_on_touch(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 64;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let h = space.spawn(None, "toucher", move || -> Result<(), String> {
        for p in 0..PAGES {
            let at = base + p * 4096 + (p * 8) % 4096;
            if uaccess::read_u8(at) != 0 {
                return Err(format!("page {p} is not zero-filled"));
            }
            uaccess::write_u8(at, p as u8 ^ 0x3c);
        }
        for p in 0..PAGES {
            let at = base + p * 4096 + (p * 8) % 4096;
            if uaccess::read_u8(at) != p as u8 ^ 0x3c {
                return Err(format!("page {p} lost its byte"));
            }
        }
        Ok(())
    })?;
    h.join()??;
    // On x86 the first touch is one fault (A/D set by the CPU); on AArch64 a
    // read fault maps the page clean, and the first write faults once more
    // to make it dirty.
    let faults = space.nr_faults();
    if !(PAGES..=2 * PAGES).contains(&faults) {
        return Err(format!("{faults} faults for {PAGES} pages"));
    }
    check_pages(&space, "after the faults", PAGES)?;
    space.munmap(VirtAddr::new(base), PAGES * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    check_pages(&space, "after munmap", 0)?;
    Ok(())
}

fn bad_accesses_end_only_the_task(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let ro = space.mmap(4 * 4096, 4096, RO).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let cases: [(&str, u64, bool); 3] = [
        ("write to a read-only area", ro + 0x10, true),
        ("read of no area", ro + 0x40_0000, false),
        ("null", 8, false),
    ];
    for (what, addr, write) in cases {
        let h = space.spawn(None, "offender", move || {
            // A read of the read-only area is allowed (and maps a page).
            if write {
                let _ = uaccess::read_u8(addr);
                uaccess::write_u8(addr, 1);
            } else {
                let _ = uaccess::read_u8(addr);
            }
        })?;
        match h.join() {
            Err(killed) => {
                let expect = if write { "NotAllowed" } else { "NoMapping" };
                if !killed.why.contains(expect) {
                    return Err(format!("{what}: {killed}, expected {expect}"));
                }
            }
            Ok(()) => return Err(format!("{what} did not end the task")),
        }
    }
    // The allowed read before the refused write mapped one page.
    check_pages(&space, "after the killed tasks", 1)?;
    Ok(())
}

fn faults_from_every_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    // Tasks on every CPU touch their own slice of one area at once: the
    // page table is built by concurrent faults under the space's lock.
    const PAGES_EACH: u64 = 32;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = space
        .mmap(cpus.len() as u64 * PAGES_EACH * 4096, 4096, RW)
        .map_err(|e| format!("mmap: {e:?}"))?
        .as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "faulter", move || -> Result<(), String> {
            let mine = base + slot as u64 * PAGES_EACH * 4096;
            for p in 0..PAGES_EACH {
                uaccess::write_u8(mine + p * 4096 + 7, (slot as u8) << 4 | p as u8 & 0xf);
            }
            for p in 0..PAGES_EACH {
                let v = uaccess::read_u8(mine + p * 4096 + 7);
                if v != (slot as u8) << 4 | p as u8 & 0xf {
                    return Err(format!("CPU {cpu}: page {p} reads {v:#x}"));
                }
            }
            Ok(())
        })?);
    }
    for h in handles {
        h.join()??;
    }
    check_pages(&space, "after the faults", cpus.len() as u64 * PAGES_EACH)?;
    Ok(())
}

/// The folio behind the page mapped at `va`, read under the space's lock:
/// `(mapcount, refcount, anon-exclusive, mapping, index)`.
fn folio_state(space: &AddressSpace, va: u64) -> Result<(i32, i32, bool, FolioMapping, u64), String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    let pa = inner.table.translate(&KernelTables, VirtAddr::new(va)).ok_or(format!("{va:#x} not mapped"))?;
    let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pa.pfn())
        .ok_or(format!("{va:#x} maps {pa}, not a folio"))?;
    Ok((
        folio.page_mapcount(0),
        folio.refcount(),
        folio.test_flag(mm::page::PageFlag::AnonExclusive),
        folio.mapping(),
        folio.index(),
    ))
}

fn folio_counts_after_faults_from_every_cpu_and_partial_munmap(_: &TestEnv<'_>) -> Result<(), String> {
    // Every CPU faults in its own slice, half by writes and half by reads;
    // then a munmap that cuts the area in two, across the slices of two
    // CPUs and a page nobody touched. The checker must agree at each step,
    // and the folios unmapped must go back to the allocator at once.
    const PAGES_EACH: u64 = 16;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let nr = cpus.len() as u64 * PAGES_EACH + 1; // one page never touched
    let space = AddressSpace::new()?;
    let base = space.mmap(nr * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "faulter", move || -> Result<(), String> {
            let mine = base + slot as u64 * PAGES_EACH * 4096;
            for p in 0..PAGES_EACH {
                let at = mine + p * 4096 + 0x80;
                if p % 2 == 0 {
                    uaccess::write_u8(at, 0xa0 | slot as u8);
                } else if uaccess::read_u8(at) != 0 {
                    return Err(format!("CPU {cpu}: page {p} not zero"));
                }
            }
            Ok(())
        })?);
    }
    for h in handles {
        h.join()??;
    }
    let touched = cpus.len() as u64 * PAGES_EACH;
    check_pages(&space, "after the faults", touched)?;
    let handle = mm::anon::anon_handle(space.root());
    for p in 0..touched {
        let va = base + p * 4096;
        let state = folio_state(&space, va)?;
        if state != (1, 1, true, FolioMapping::Anon(handle), va >> 12) {
            return Err(format!(
                "page {p}: (mapcount, refcount, exclusive, mapping, index) = {state:x?}, \
                 expected (1, 1, true, {handle:x?}, {:#x})",
                va >> 12
            ));
        }
    }
    // Cut out the last half of one slice and the first half of the next
    // (on one CPU: the second half of its slice, the untouched page and
    // beyond the area's end, which munmap allows).
    let cut_start = base + (PAGES_EACH / 2) * 4096;
    let cut_pages = PAGES_EACH;
    let before = memory::nr_free_frames();
    space.munmap(VirtAddr::new(cut_start), cut_pages * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    let freed = memory::nr_free_frames() - before;
    let cut_touched = cut_pages.min(touched - PAGES_EACH / 2);
    if freed != cut_touched {
        return Err(format!("munmap of {cut_touched} mapped pages freed {freed} frames"));
    }
    check_pages(&space, "after the partial munmap", touched - cut_touched)?;
    // The pages on both sides of the hole keep their folios and counts.
    for va in [cut_start - 4096, cut_start + cut_pages * 4096] {
        if va < base + touched * 4096 {
            let state = folio_state(&space, va)?;
            if (state.0, state.1, state.2) != (1, 1, true) {
                return Err(format!("{va:#x} next to the hole: {state:x?}"));
            }
        }
    }
    // A load in the hole ends the task and maps nothing.
    let h = space.spawn(None, "hole", move || uaccess::read_u8(cut_start))?;
    match h.join() {
        Err(killed) if killed.why.contains("NoMapping") => {}
        other => return Err(format!("a load in the hole: {other:?}")),
    }
    check_pages(&space, "after the load in the hole", touched - cut_touched)?;
    Ok(())
}

/// Runs `f` in a task of `space` and returns its result.
fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "cow", f)?.join()?)
}

/// Runs the family checker on both spaces.
fn check_family(a: &AddressSpace, b: &AddressSpace, when: &str) -> Result<(), String> {
    check_space(a, when)?;
    check_space(b, when)?;
    Ok(())
}

fn fork_shares_pages_and_copies_on_write(_: &TestEnv<'_>) -> Result<(), String> {
    // Pages 0..4: both sides write; 4..6: only the parent; 6..8: only the
    // child; 8: nobody. Parent and child run at once (other CPUs if any).
    const N: u64 = 9;
    let parent = AddressSpace::new()?;
    let base = parent.mmap(N * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || (0..N).for_each(|p| uaccess::write_u8(base + p * 4096 + 5, 0xa0 | p as u8)))?;
    check_pages(&parent, "before fork", N)?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    for p in 0..N {
        let (mapcount, refcount, exclusive, _, _) = folio_state(&parent, base + p * 4096)?;
        if (mapcount, refcount, exclusive) != (2, 2, false) {
            return Err(format!(
                "after fork, page {p}: mapcount {mapcount} refcount {refcount} exclusive {exclusive}"
            ));
        }
    }
    let writer = |space: &Arc<AddressSpace>, pages: &'static [u64], tag: u8| {
        space.spawn(None, "cow writer", move || {
            pages.iter().for_each(|&p| uaccess::write_u8(base + p * 4096 + 5, tag | p as u8))
        })
    };
    let hp = writer(&parent, &[0, 1, 2, 3, 4, 5], 0xb0)?;
    let hc = writer(&child, &[3, 2, 1, 0, 6, 7], 0xc0)?;
    hp.join()?;
    hc.join()?;
    check_family(&parent, &child, "after the writes")?;
    let expect = |tag: u8, own: &'static [u64]| {
        move || -> Result<(), String> {
            for p in 0..N {
                let want = if own.contains(&p) { tag | p as u8 } else { 0xa0 | p as u8 };
                let got = uaccess::read_u8(base + p * 4096 + 5);
                if got != want {
                    return Err(format!("page {p}: {got:#x}, expected {want:#x}"));
                }
            }
            Ok(())
        }
    };
    run_in(&parent, expect(0xb0, &[0, 1, 2, 3, 4, 5]))?.map_err(|e| format!("parent: {e}"))?;
    run_in(&child, expect(0xc0, &[0, 1, 2, 3, 6, 7]))?.map_err(|e| format!("child: {e}"))?;
    // Pages 0..4: one side copies, the other (then the only user) reuses,
    // unless both copied at once; 4..8: one copy each.
    let (copies, reuses) =
        (parent.nr_cow_copies() + child.nr_cow_copies(), parent.nr_cow_reuses() + child.nr_cow_reuses());
    if copies + reuses != 12 || !(8..=12).contains(&copies) {
        return Err(format!("{copies} copies and {reuses} reuses for 12 written shared pages"));
    }
    // Page 8 is still shared; every other page is exclusive to each side.
    for p in 0..N {
        let (pm, _, pe, _, _) = folio_state(&parent, base + p * 4096)?;
        let (cm, _, ce, _, _) = folio_state(&child, base + p * 4096)?;
        let shared = p == 8;
        if shared && (pm, pe, cm, ce) != (2, false, 2, false) || !shared && (pm, cm) != (1, 1) {
            return Err(format!("page {p}: parent ({pm}, {pe}), child ({cm}, {ce})"));
        }
    }
    drop(parent);
    check_pages(&child, "after the parent is gone", N)?;
    Ok(())
}

/// A new space with two pages, holding 1 and 2 in their first bytes.
fn two_written_pages() -> Result<(Arc<AddressSpace>, u64), String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(2 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&space, move || {
        uaccess::write_u8(base, 1);
        uaccess::write_u8(base + 4096, 2);
    })?;
    Ok((space, base))
}

fn cow_reuses_a_page_the_other_side_unmapped(_: &TestEnv<'_>) -> Result<(), String> {
    let (parent, base) = two_written_pages()?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    // The child drops page 0, the parent page 1: each page is left with
    // one mapping and one reference, so the write reuses it.
    child.munmap(VirtAddr::new(base), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    parent.munmap(VirtAddr::new(base + 4096), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    check_family(&parent, &child, "after the munmaps")?;
    let free = memory::nr_free_frames();
    run_in(&parent, move || uaccess::write_u8(base, 0x11))?;
    run_in(&child, move || uaccess::write_u8(base + 4096, 0x22))?;
    check_family(&parent, &child, "after the writes")?;
    let counts =
        (parent.nr_cow_copies(), parent.nr_cow_reuses(), child.nr_cow_copies(), child.nr_cow_reuses());
    if counts != (0, 1, 0, 1) || memory::nr_free_frames() != free {
        return Err(format!(
            "(copies, reuses) parent/child = {counts:?}, frames used {}",
            free as i64 - memory::nr_free_frames() as i64
        ));
    }
    for (space, va) in [(&parent, base), (&child, base + 4096)] {
        let (m, r, e, _, _) = folio_state(space, va)?;
        if (m, r, e) != (1, 1, true) {
            return Err(format!("{va:#x} after reuse: mapcount {m} refcount {r} exclusive {e}"));
        }
    }
    let (a, b) = (
        run_in(&parent, move || uaccess::read_u8(base))?,
        run_in(&child, move || uaccess::read_u8(base + 4096))?,
    );
    if (a, b) != (0x11, 0x22) {
        return Err(format!("read back {a:#x} {b:#x}"));
    }
    Ok(())
}

fn cow_copy_reaches_readers_on_every_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    // Readers of the parent on every CPU hold read-only translations of a
    // shared page while one of them writes it (a copy): once the write is
    // done, no reader may still see the old page.
    use core::sync::atomic::{AtomicBool, Ordering};
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let parent = AddressSpace::new()?;
    let base = parent.mmap(4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || uaccess::write_u8(base, 0x5a))?;
    let child = parent.fork()?;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for &cpu in cpus.iter().skip(1) {
        let done = done.clone();
        readers.push(parent.spawn(Some(cpu), "cow reader", move || -> Result<(), String> {
            loop {
                let finished = done.load(Ordering::Acquire);
                let v = uaccess::read_u8(base);
                if finished {
                    return if v == 0xa5 { Ok(()) } else { Err(format!("CPU {cpu} still reads {v:#x}")) };
                }
                if v != 0x5a && v != 0xa5 {
                    return Err(format!("CPU {cpu} reads {v:#x}"));
                }
            }
        })?);
    }
    let d = done.clone();
    parent
        .spawn(Some(cpus[0]), "cow writer", move || {
            // Let the readers cache the read-only translation first.
            sched::sleep_ms(20);
            uaccess::write_u8(base, 0xa5);
            d.store(true, Ordering::Release);
        })?
        .join()?;
    for r in readers {
        r.join()??;
    }
    check_family(&parent, &child, "after the copy")?;
    if parent.nr_cow_copies() != 1 || run_in(&child, move || uaccess::read_u8(base))? != 0x5a {
        return Err(format!("{} copies; the child must keep 0x5a", parent.nr_cow_copies()));
    }
    Ok(())
}

// ---------------------------------------------------------------- THP tests

const HUGE: u64 = mm::thp::HPAGE_SIZE;

/// The level and leaf that map `va`, read under the space's lock.
pub(crate) fn leaf_at(
    space: &AddressSpace,
    va: u64,
) -> Result<Option<(mm::pgtable::Level, mm::pgtable::Leaf)>, String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    Ok(match inner.table.lookup(&KernelTables, VirtAddr::new(va)) {
        (level, mm::pgtable::Decoded::Leaf(leaf)) => Some((level, leaf)),
        _ => None,
    })
}

/// Wants a 2 MiB leaf of a huge folio (not the zero one) at `block`, with
/// the folio counts `(entire mapcount, refcount)`.
fn want_thp(space: &AddressSpace, block: u64, counts: (i32, i32), when: &str) -> Result<(), String> {
    match leaf_at(space, block)? {
        Some((mm::pgtable::Level::Pmd, leaf)) => {
            let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), leaf.frame.pfn())
                .ok_or(format!("{when}: the PMD maps {}, not a folio", leaf.frame))?;
            if mm::thp::is_huge_zero_folio(&folio) {
                return Err(format!("{when}: {block:#x} maps the huge zero folio"));
            }
            let got = (folio.entire_mapcount(), folio.refcount());
            if folio.order() != 9 || got != counts {
                return Err(format!(
                    "{when}: order {} (entire mapcount, refcount) = {got:?}, expected order 9 {counts:?}",
                    folio.order()
                ));
            }
            Ok(())
        }
        other => Err(format!("{when}: {block:#x} is mapped by {other:?}, not a PMD leaf")),
    }
}

/// A 2 MiB-aligned area of `blocks` huge blocks, THP on.
fn huge_area(space: &AddressSpace, blocks: u64) -> Result<u64, String> {
    let base = space.mmap(blocks * HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(base, blocks * HUGE, Advice::HugePage).map_err(|e| format!("madvise: {e:?}"))?;
    Ok(base.as_u64())
}

fn thp_write_fault_maps_one_2mib_leaf(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 2)?;
    let free = memory::nr_free_frames();
    run_in(&space, move || {
        uaccess::write_u8(base + 0x1234, 0x5a);
        uaccess::write_u8(base + HUGE - 1, 0xa5);
    })?;
    want_thp(&space, base, (1, 1), "after the write")?;
    if space.nr_thp_faults() != 1 || free - memory::nr_free_frames() < 512 {
        return Err(format!(
            "{} huge faults, {} frames used",
            space.nr_thp_faults(),
            free - memory::nr_free_frames()
        ));
    }
    let dump = space.dump(VirtAddr::new(base), VirtAddr::new(base + 2 * HUGE));
    if !dump.lines().any(|l| l.contains("PMD 2M") && l.contains("rw-")) || dump.lines().count() != 1 {
        return Err(format!("the dump does not show one writable 2 MiB leaf:\n{dump}"));
    }
    // Every other byte of the 2 MiB reads zero; ours read back.
    let bad = run_in(&space, move || {
        (0..512u64).map(|p| base + p * 4096 + 8).find(|&a| uaccess::read_u8(a) != 0).or_else(|| {
            (uaccess::read_u8(base + 0x1234) != 0x5a || uaccess::read_u8(base + HUGE - 1) != 0xa5)
                .then_some(base)
        })
    })?;
    if let Some(at) = bad {
        return Err(format!("wrong byte at {at:#x}"));
    }
    let stats = check_space(&space, "after the faults")?;
    if (stats.nr_pmd_leaves, stats.nr_pages_mapped, stats.nr_folios) != (1, 512, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    let (before, tables) = (memory::nr_free_frames(), memory::paging::nr_tables());
    space.munmap(VirtAddr::new(base), 2 * HUGE).map_err(|e| format!("munmap: {e:?}"))?;
    // The folio's 512 frames, and the tables no area uses any more (the
    // space has no other area: at least the PMD table goes).
    let freed_tables = tables - memory::paging::nr_tables();
    let freed = memory::nr_free_frames() - before;
    if freed != 512 + freed_tables || freed_tables == 0 {
        return Err(format!(
            "munmap freed {freed} frames with {freed_tables} page tables, expected 512 and the tables"
        ));
    }
    Ok(())
}

fn thp_read_maps_the_huge_zero_folio_and_a_write_replaces_it(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    let free = memory::nr_free_frames();
    let sum =
        run_in(&space, move || (0..512u64).map(|p| uaccess::read_u8(base + p * 4096) as u64).sum::<u64>())?;
    if sum != 0 || space.nr_thp_zero() != 1 {
        return Err(format!("read sum {sum}, {} huge zero faults", space.nr_thp_zero()));
    }
    match leaf_at(&space, base)? {
        Some((mm::pgtable::Level::Pmd, leaf)) if !leaf.prot.writable => {
            if crate::vm::folios::huge_zero() != Some(leaf.frame) {
                return Err(format!("the read-only PMD maps {}, not the huge zero folio", leaf.frame));
            }
        }
        other => return Err(format!("after the read: {other:?}")),
    }
    // Page-table frames at most, not 2 MiB.
    let used = free - memory::nr_free_frames();
    if used > 3 {
        return Err(format!("mapping the huge zero folio used {used} frames"));
    }
    check_space(&space, "after the read")?;
    run_in(&space, move || uaccess::write_u8(base + 0x10_0000, 7))?;
    want_thp(&space, base, (1, 1), "after the write")?;
    let ok = run_in(&space, move || uaccess::read_u8(base + 0x10_0000) == 7 && uaccess::read_u8(base) == 0)?;
    if !ok || space.nr_thp_faults() != 1 {
        return Err(format!("data wrong or {} huge faults", space.nr_thp_faults()));
    }
    check_space(&space, "after the write")?;
    Ok(())
}

/// Fills every page of `[base, base + pages * 4096)` with its number.
fn fill(space: &Arc<AddressSpace>, base: u64, pages: u64, tag: u8) -> Result<(), String> {
    run_in(space, move || {
        for p in 0..pages {
            uaccess::write_u8(base + p * 4096 + (p % 4000), p as u8 ^ tag);
        }
    })
}

/// The first page of `[base, base + pages * 4096)` that does not hold what
/// [`fill`] wrote (pages in `skip` are not checked).
fn first_wrong(
    space: &Arc<AddressSpace>,
    base: u64,
    pages: u64,
    tag: u8,
    skip: core::ops::Range<u64>,
) -> Result<Option<u64>, String> {
    run_in(space, move || {
        (0..pages)
            .filter(|p| !skip.contains(p))
            .find(|&p| uaccess::read_u8(base + p * 4096 + (p % 4000)) != p as u8 ^ tag)
    })
}

fn thp_partial_munmap_keeps_the_rest_with_its_data(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    fill(&space, base, 512, 0x3c)?;
    want_thp(&space, base, (1, 1), "after the fill")?;
    let before = memory::nr_free_frames();
    // Cut pages 100..356 out of the middle.
    space.munmap(VirtAddr::new(base + 100 * 4096), 256 * 4096).map_err(|e| format!("munmap: {e:?}"))?;
    let freed = memory::nr_free_frames() as i64 - before as i64;
    // 256 pages come back; the split may have taken one page-table frame.
    if !(255..=256).contains(&freed) {
        return Err(format!("the partial munmap freed {freed} frames, expected 256 (less a PTE table)"));
    }
    if let Some(p) = first_wrong(&space, base, 512, 0x3c, 100..356)? {
        return Err(format!("page {p} lost its data"));
    }
    let stats = check_space(&space, "after the partial munmap")?;
    if (stats.nr_pmd_leaves, stats.nr_pte_leaves, stats.nr_folios) != (0, 256, 256) {
        return Err(format!("checker saw {stats:?}: expected 256 PTEs of 256 order-0 folios"));
    }
    let h = space.spawn(None, "hole", move || uaccess::read_u8(base + 200 * 4096))?;
    match h.join() {
        Err(killed) if killed.why.contains("NoMapping") => Ok(()),
        other => Err(format!("a load in the hole: {other:?}")),
    }
}

fn thp_mprotect_and_madvise_on_part_split_the_pmd(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    fill(&space, base, 512, 0x11)?;
    space.mprotect(VirtAddr::new(base + 64 * 4096), 64 * 4096, RO).map_err(|e| format!("mprotect: {e:?}"))?;
    check_space(&space, "after the mprotect")?;
    match leaf_at(&space, base + 64 * 4096)? {
        Some((mm::pgtable::Level::Pte, leaf)) if !leaf.prot.writable => {}
        other => return Err(format!("the protected part is mapped by {other:?}")),
    }
    let h = space.spawn(None, "ro writer", move || uaccess::write_u8(base + 100 * 4096, 1))?;
    match h.join() {
        Err(killed) if killed.why.contains("NotAllowed") => {}
        other => return Err(format!("a write to the read-only part: {other:?}")),
    }
    // The writable rest still takes writes, and every page keeps its data.
    run_in(&space, move || uaccess::write_u8(base + 300 * 4096 + 300, 300u64 as u8 ^ 0x11))?;
    if let Some(p) = first_wrong(&space, base, 512, 0x11, 0..0)? {
        return Err(format!("page {p} lost its data after mprotect"));
    }
    // Back to read-write: the next write faults once and reuses the page.
    space
        .mprotect(VirtAddr::new(base + 64 * 4096), 64 * 4096, RW)
        .map_err(|e| format!("mprotect back: {e:?}"))?;
    let reuses = space.nr_cow_reuses();
    run_in(&space, move || uaccess::write_u8(base + 70 * 4096 + 70, 70 ^ 0x11))?;
    if space.nr_cow_reuses() != reuses + 1 {
        return Err(String::from("the write after mprotect(RW) did not reuse the exclusive page"));
    }
    // DONTNEED on another part: those pages read zero afterwards.
    space
        .madvise(VirtAddr::new(base + 400 * 4096), 16 * 4096, Advice::DontNeed)
        .map_err(|e| format!("madvise: {e:?}"))?;
    check_space(&space, "after MADV_DONTNEED")?;
    if let Some(p) = first_wrong(&space, base, 512, 0x11, 400..416)? {
        return Err(format!("page {p} lost its data after MADV_DONTNEED"));
    }
    let nonzero =
        run_in(&space, move || (400..416u64).find(|p| uaccess::read_u8(base + p * 4096 + p % 4000) != 0))?;
    if let Some(p) = nonzero {
        return Err(format!("page {p} is not zero after MADV_DONTNEED"));
    }
    // PROT_NONE over mapped pages is refused for now (VmaError's doc), and
    // changes nothing.
    match space.mprotect(VirtAddr::new(base), 4096, VmaProt::NONE) {
        Err(VmaError::ProtNoneOverMappedPages) => {}
        other => return Err(format!("mprotect(PROT_NONE) over a mapped page: {other:?}")),
    }
    // NOHUGEPAGE on half the block: it can no longer be one leaf.
    space
        .madvise(VirtAddr::new(base + HUGE / 2), HUGE / 2, Advice::NoHugePage)
        .map_err(|e| format!("madvise: {e:?}"))?;
    check_space(&space, "after MADV_NOHUGEPAGE")?;
    Ok(())
}

fn thp_fork_with_both_sides_writing(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = huge_area(&parent, 1)?;
    fill(&parent, base, 512, 0x22)?;
    let child = parent.fork()?;
    check_family(&parent, &child, "after fork")?;
    want_thp(&parent, base, (2, 2), "after fork")?;
    // Both sides write pages of their own at once; each copy splits that
    // side's PMD.
    let hp = parent.spawn(None, "parent writer", move || {
        (0..512u64).step_by(7).for_each(|p| uaccess::write_u8(base + p * 4096 + (p % 4000), 0xee))
    })?;
    let hc = child.spawn(None, "child writer", move || {
        (3..512u64).step_by(11).for_each(|p| uaccess::write_u8(base + p * 4096 + (p % 4000), 0xdd))
    })?;
    hp.join()?;
    hc.join()?;
    check_family(&parent, &child, "after the writes")?;
    let check = |mine: fn(u64) -> bool, tag: u8| {
        move || -> Option<u64> {
            (0..512u64).find(|&p| {
                let want = if mine(p) { tag } else { p as u8 ^ 0x22 };
                uaccess::read_u8(base + p * 4096 + (p % 4000)) != want
            })
        }
    };
    if let Some(p) = run_in(&parent, check(|p| p % 7 == 0, 0xee))? {
        return Err(format!("parent page {p} wrong"));
    }
    if let Some(p) = run_in(&child, check(|p| p >= 3 && (p - 3) % 11 == 0, 0xdd))? {
        return Err(format!("child page {p} wrong"));
    }
    drop(parent);
    check_space(&child, "after the parent is gone")?;
    Ok(())
}

fn thp_concurrent_faults_on_one_block_make_one_thp(_: &TestEnv<'_>) -> Result<(), String> {
    use core::sync::atomic::{AtomicUsize, Ordering};
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    let ready = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        let ready = ready.clone();
        let n = cpus.len();
        handles.push(space.spawn(Some(cpu), "thp racer", move || {
            ready.fetch_add(1, Ordering::AcqRel);
            while ready.load(Ordering::Acquire) < n {
                core::hint::spin_loop();
            }
            // Every CPU writes its own page of the same block at once.
            uaccess::write_u8(base + (slot as u64 * 97 + 1) * 4096, slot as u8 + 1);
        })?);
    }
    for h in handles {
        h.join()?;
    }
    want_thp(&space, base, (1, 1), "after the racing faults")?;
    if space.nr_thp_faults() != 1 {
        return Err(format!("{} huge faults for one block", space.nr_thp_faults()));
    }
    let n = cpus.len();
    let bad = run_in(&space, move || {
        (0..n).find(|&s| uaccess::read_u8(base + (s as u64 * 97 + 1) * 4096) != s as u8 + 1)
    })?;
    if let Some(s) = bad {
        return Err(format!("the write of CPU slot {s} is lost"));
    }
    let stats = check_space(&space, "after the racing faults")?;
    if (stats.nr_pmd_leaves, stats.nr_folios) != (1, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    Ok(())
}

/// Every CPU touches every page of two PTE tables at once (split
/// page-table locks: `mm::fault::handle_fault_shared` under the space's
/// lock held shared): first a read of each page, all CPUs in the same
/// order so that they meet on the same entries, then a write of the pages
/// it owns. Each page must end with one folio and its owner's byte.
fn concurrent_first_touches_in_one_table_map_each_page_once(_: &TestEnv<'_>) -> Result<(), String> {
    use core::sync::atomic::{AtomicUsize, Ordering};
    const PAGES: u64 = 1024;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let n = cpus.len() as u64;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 2 << 20, RW).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(base, PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("madvise: {e:?}"))?;
    let base = base.as_u64();
    // The two PTE tables exist (the first page of each), the rest is empty.
    run_in(&space, move || (0..PAGES).step_by(512).for_each(|p| uaccess::write_u8(base + p * 4096, 0xaa)))?;
    let ready = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        let ready = ready.clone();
        handles.push(space.spawn(Some(cpu), "first toucher", move || {
            ready.fetch_add(1, Ordering::AcqRel);
            while ready.load(Ordering::Acquire) < n as usize {
                core::hint::spin_loop();
            }
            let zeros =
                (0..PAGES).filter(|&p| p % 512 != 0 && uaccess::read_u8(base + p * 4096 + 7) == 0).count();
            (0..PAGES)
                .filter(|&p| p % 512 != 0 && p % n == slot as u64)
                .for_each(|p| uaccess::write_u8(base + p * 4096 + 7, slot as u8 + 1));
            zeros
        })?);
    }
    let mut zeros = Vec::new();
    for h in handles {
        zeros.push(h.join()?);
    }
    let bad = run_in(&space, move || {
        (0..PAGES)
            .filter(|p| p % 512 != 0)
            .find(|&p| uaccess::read_u8(base + p * 4096 + 7) != (p % n) as u8 + 1)
    })?;
    if let Some(p) = bad {
        return Err(format!("page {p} lost its owner's write"));
    }
    let stats = check_space(&space, "after the racing first touches")?;
    if (stats.nr_folios, stats.nr_pages_mapped) != (PAGES, PAGES) {
        return Err(format!("{PAGES} pages, but the checker saw {stats:?}"));
    }
    if space.nr_shared_faults() == 0 {
        return Err(format!(
            "no fault took the shared path ({} faults; reads that saw zeros per CPU: {zeros:?})",
            space.nr_faults()
        ));
    }
    crate::println!(
        "vm: {} CPUs, {} faults, {} with the space lock shared",
        n,
        space.nr_faults(),
        space.nr_shared_faults()
    );
    Ok(())
}

// ---------------------------------------------------------------- GUP and rmap tests

fn gup_write_pin_breaks_cow_and_makes_the_page_exclusive(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = parent.mmap(4 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || (0..4).for_each(|p| uaccess::write_u8(base + p * 4096, 0x40 | p as u8)))?;
    let child = parent.fork()?;
    // Page 1 is shared; a write pin in the parent must copy it first.
    let pinned = parent.get_user_pages(VirtAddr::new(base + 4096), 1, true, Hold::Pin)?;
    let state = folio_state(&parent, base + 4096)?;
    let (pa, ca) = (translate(&parent, base + 4096)?, translate(&child, base + 4096)?);
    if (state.0, state.2) != (1, true) || pa == ca || pa != pinned[0] {
        release_user_pages(&pinned, Hold::Pin);
        return Err(format!(
            "after the write pin: {state:x?}, parent at {pa}, child at {ca}: COW not broken"
        ));
    }
    check_family(&parent, &child, "with the pin")?;
    // What the kernel writes through the pin, the parent reads; the child
    // keeps the old byte.
    // SAFETY: a page of an anonymous folio under our write pin.
    unsafe { kwrite(pinned[0], 0x99) };
    let (p, c) = (
        run_in(&parent, move || uaccess::read_u8(base + 4096))?,
        run_in(&child, move || uaccess::read_u8(base + 4096))?,
    );
    release_user_pages(&pinned, Hold::Pin);
    if (p, c) != (0x99, 0x41) {
        return Err(format!("parent reads {p:#x}, child {c:#x}; expected 0x99 and 0x41"));
    }
    check_family(&parent, &child, "after the unpin")?;
    Ok(())
}

fn gup_pinned_page_across_fork_is_copied_for_the_child(_: &TestEnv<'_>) -> Result<(), String> {
    let (parent, base) = two_written_pages()?;
    let pinned = parent.get_user_pages(VirtAddr::new(base), 1, true, Hold::Pin)?;
    let child = parent.fork()?;
    let result = (|| {
        check_family(&parent, &child, "after fork with a pin")?;
        // The pinned page stays the parent's, exclusive and writable; the
        // child has its own copy. The unpinned page is shared.
        let (pm, _, pe, _, _) = folio_state(&parent, base)?;
        let (cm, _, ce, _, _) = folio_state(&child, base)?;
        let (parent_pa, child_pa) = (translate(&parent, base)?, translate(&child, base)?);
        if (pm, pe, cm, ce) != (1, true, 1, true) || parent_pa == child_pa || parent_pa != pinned[0] {
            return Err(format!(
                "pinned page: parent ({pm}, {pe}) at {parent_pa}, child ({cm}, {ce}) at {child_pa}, pin at {}",
                pinned[0]
            ));
        }
        if folio_state(&parent, base + 4096)?.0 != 2 {
            return Err(String::from("the unpinned page is not shared"));
        }
        // Writes through the pin and by the parent both land in the pinned
        // frame: no copy on write ever moves the parent away from it.
        // SAFETY: a page of an anonymous folio under our write pin.
        unsafe { kwrite(pinned[0], 0x77) };
        run_in(&parent, move || uaccess::write_u8(base + 8, 0x78))?;
        let copies = parent.nr_cow_copies();
        // SAFETY: bytes 0 and 8 of the page under our pin.
        let (a, b) = unsafe { (kread(pinned[0]), kread(PhysAddr::new(pinned[0].as_u64() + 8))) };
        let (p0, c0) = (
            run_in(&parent, move || uaccess::read_u8(base))?,
            run_in(&child, move || uaccess::read_u8(base))?,
        );
        if (a, b, p0, c0, copies) != (0x77, 0x78, 0x77, 1, 0) {
            return Err(format!(
                "pin reads ({a:#x}, {b:#x}), parent {p0:#x}, child {c0:#x}, parent copies {copies}"
            ));
        }
        Ok(())
    })();
    release_user_pages(&pinned, Hold::Pin);
    result?;
    check_family(&parent, &child, "after the unpin")?;
    Ok(())
}

/// The physical address `va` maps to in `space`.
fn translate(space: &AddressSpace, va: u64) -> Result<PhysAddr, String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    inner.table.translate(&KernelTables, VirtAddr::new(va)).ok_or(format!("{va:#x} not mapped"))
}

fn gup_get_and_pin_on_a_thp(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = huge_area(&space, 1)?;
    // A read hold on an untouched huge range: the zero folio cannot be
    // held, so the range gets a folio of its own.
    let got = space.get_user_pages(VirtAddr::new(base + 5 * 4096), 2, false, Hold::Get)?;
    want_thp(&space, base, (1, 3), "with two FOLL_GET references")?;
    release_user_pages(&got, Hold::Get);
    let pins = space.get_user_pages(VirtAddr::new(base + 10 * 4096), 3, true, Hold::Pin)?;
    let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pins[0].pfn()).ok_or("no folio")?;
    if (folio.pincount(), folio.refcount(), folio.maybe_pinned()) != (3, 4, true) {
        release_user_pages(&pins, Hold::Pin);
        return Err(format!("pincount {} refcount {}", folio.pincount(), folio.refcount()));
    }
    // A partial munmap splits the PMD but not the pinned folio: its pages
    // stay where the pins point, and the counts stay right.
    let result = space.munmap(VirtAddr::new(base + 256 * 4096), 256 * 4096).map_err(|e| format!("{e:?}"));
    let same = mm::folio::folio_of(memory::frame_allocator().memmap(), pins[0].pfn())
        .is_some_and(|f| f.order() == 9 && f.pincount() == 3);
    // SAFETY: a page of an anonymous folio under our write pin.
    unsafe { kwrite(pins[1], 0x31) };
    let seen = run_in(&space, move || uaccess::read_u8(base + 11 * 4096))?;
    release_user_pages(&pins, Hold::Pin);
    result?;
    if !same || seen != 0x31 {
        return Err(format!("pinned folio split ({}) or the pin's write lost ({seen:#x})", !same));
    }
    let stats = check_space(&space, "after the partial munmap of a pinned THP")?;
    if (stats.nr_pte_leaves, stats.nr_folios) != (256, 1) {
        return Err(format!("checker saw {stats:?}"));
    }
    let before = memory::nr_free_frames();
    space.munmap(VirtAddr::new(base), 256 * 4096).map_err(|e| format!("{e:?}"))?;
    if memory::nr_free_frames() - before < 512 {
        return Err(String::from("the huge folio was not freed with its last mapping"));
    }
    Ok(())
}

fn gup_refuses_bad_addresses_without_side_effects(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let ro = space.mmap(2 * 4096, 4096, RO).map_err(|e| format!("mmap: {e:?}"))?;
    for (what, va, write) in [("no area", 0x7000_0000u64, false), ("write to read-only", ro.as_u64(), true)] {
        match space.get_user_pages(VirtAddr::new(va), 1, write, Hold::Pin) {
            Err(e) if e.contains("Refused") => {}
            other => return Err(format!("{what}: {other:?}")),
        }
    }
    // Two pages of which the second is beyond the area: nothing stays held.
    let before = check_space(&space, "before")?;
    match space.get_user_pages(VirtAddr::new(ro.as_u64() + 4096), 2, false, Hold::Get) {
        Err(e) if e.contains("Refused") => {}
        other => return Err(format!("a range running out of the area: {other:?}")),
    }
    let after = check_space(&space, "after")?;
    let state = folio_state(&space, ro.as_u64() + 4096)?;
    if state.1 != 1 || after.nr_pages_mapped != before.nr_pages_mapped + 1 {
        return Err(format!("a failed get left {state:?} (the page mapped on the way stays, unheld)"));
    }
    Ok(())
}

fn rmap_finds_every_mapping_across_a_fork_family(_: &TestEnv<'_>) -> Result<(), String> {
    let parent = AddressSpace::new()?;
    let base = huge_area(&parent, 1)?;
    let small = parent.mmap(4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&parent, move || {
        uaccess::write_u8(base, 1);
        uaccess::write_u8(small, 2);
    })?;
    let child = parent.fork()?;
    let grandchild = child.fork()?;
    for (what, va, level) in [("THP", base, Level::Pmd), ("page", small, Level::Pte)] {
        let found = parent.rmap_of(VirtAddr::new(va))?;
        let mut roots: Vec<u64> = found.iter().map(|m| m.0.as_u64()).collect();
        roots.sort();
        let mut want: Vec<u64> = [&parent, &child, &grandchild].iter().map(|s| s.root().as_u64()).collect();
        want.sort();
        if roots != want || found.iter().any(|m| m.1.as_u64() != va || m.2 != level) {
            return Err(format!("{what}: rmap found {found:x?}"));
        }
    }
    // The child's copy of the small page is its own: one mapping each.
    run_in(&child, move || uaccess::write_u8(small, 3))?;
    if child.rmap_of(VirtAddr::new(small))?.len() != 1 || parent.rmap_of(VirtAddr::new(small))?.len() != 2 {
        return Err(String::from("after the child's copy the rmap still counts it"));
    }
    check_space(&grandchild, "at the end")?;
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["vm": demand_zero_pages_fill_on_touch, bad_accesses_end_only_the_task, faults_from_every_cpu, folio_counts_after_faults_from_every_cpu_and_partial_munmap, fork_shares_pages_and_copies_on_write, cow_reuses_a_page_the_other_side_unmapped, cow_copy_reaches_readers_on_every_cpu, thp_write_fault_maps_one_2mib_leaf, thp_read_maps_the_huge_zero_folio_and_a_write_replaces_it, thp_partial_munmap_keeps_the_rest_with_its_data, thp_mprotect_and_madvise_on_part_split_the_pmd, thp_fork_with_both_sides_writing, thp_concurrent_faults_on_one_block_make_one_thp, concurrent_first_touches_in_one_table_map_each_page_once, gup_write_pin_breaks_cow_and_makes_the_page_exclusive, gup_pinned_page_across_fork_is_copied_for_the_child, gup_get_and_pin_on_a_thp, gup_refuses_bad_addresses_without_side_effects, rmap_finds_every_mapping_across_a_fork_family];
