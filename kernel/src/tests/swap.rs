//! In-guest tests moved from vm/swap.rs.

use crate::demo::{check_pattern, run_in, word, write_pattern, WORDS};
use crate::drivers::blk::BlockDevice;
use crate::memory;
use crate::task::sched;
use crate::vm::swap::*;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::pgtable::{SwapEntry, SwapType};
use mm::PhysAddr;

use crate::tests::{Test, TestEnv};
use crate::vm::space::{release_user_pages, AddressSpace, Advice};
use mm::gup::Hold;
use mm::vma::VmaProt;
use mm::VirtAddr;

pub(crate) const TESTS: &[Test] = register!["swap": io_errors_keep_data_and_end_only_the_reader, write_errors_among_writes_in_flight_keep_every_page, failed_writes_are_counted_and_named, a_disk_that_stops_answering_is_retired, bad_headers_are_refused, pageout_4k_pages_and_back, readahead_reads_the_neighbours_with_the_page, pageout_thp_and_back, pageout_of_part_of_a_thp_splits_it, a_thp_is_split_when_no_run_of_slots_is_free, freed_thp_comes_back_whole, concurrent_faults_on_one_freed_thp, fork_after_swapout_both_sides_write, gup_write_reference_survives_swap, concurrent_swapin_of_one_entry, swapin_racing_pageout_loses_no_write, a_read_only_disk_is_refused, a_fault_that_loses_the_race_with_swapoff_retries, swapoff_brings_back_pages_that_are_out, swapoff_while_tasks_fault_and_page_out, swapoff_with_read_errors_ends_only_the_reader, the_boot_demo_is_skipped_with_a_tiny_swap, fill_more_than_ram, a_full_area_leaves_room_to_the_next];

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };

/// Pages `0..pages` at `base` read back as the pattern `tag` (through
/// swap-ins), the checker passes, and a new pattern `new_tag` written over
/// them reads back too.
fn reads_back_and_takes_new_writes(
    space: &Arc<AddressSpace>,
    base: u64,
    pages: u64,
    tag: u64,
    new_tag: u64,
) -> Result<(), String> {
    check_pattern(space, base, 0..pages, tag)??;
    swap_entries(space, "after reading it back")?;
    write_pattern(space, base, 0..pages, new_tag)?;
    check_pattern(space, base, 0..pages, new_tag)?
}

/// Runs `read(t)` in four tasks `t`, alternately in `parent` and `child`
/// and spread over the CPUs, all at once; the first error wins.
fn four_readers(
    parent: &Arc<AddressSpace>,
    child: &Arc<AddressSpace>,
    name: &'static str,
    read: impl Fn(u64) -> Result<(), String> + Clone + Send + 'static,
) -> Result<(), String> {
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let space = if t % 2 == 0 { parent } else { child };
        let read = read.clone();
        tasks.push(space.spawn(Some(t as usize % sched::nr_cpus_online()), name, move || read(t))?);
    }
    for task in tasks {
        task.join()??;
    }
    Ok(())
}

fn need_swap() -> Result<(), String> {
    if alloc_area().is_none() {
        return Err(String::from("no swap area: attach a swap disk (xtask does unless --swap 0)"));
    }
    Ok(())
}

fn swap_entries(space: &AddressSpace, when: &str) -> Result<u64, String> {
    space.check_at_rest().map(|s| s.nr_swap_entries).map_err(|e| format!("{when}: {e}"))
}

fn pageout(space: &AddressSpace, base: u64, len: u64) -> Result<(), String> {
    space.madvise(VirtAddr::new(base), len, Advice::PageOut).map_err(|e| format!("madvise(PAGEOUT): {e:?}"))
}

/// The swap entries of the `pages` pages at `base`, all paged out, and
/// their area, once every page is out of the swap cache too (freed): a
/// write that failed leaves its page there, and reclaim's next pass
/// writes it again.
fn out_of_the_cache(
    space: &AddressSpace,
    base: u64,
    pages: u64,
) -> Result<(Vec<SwapEntry>, Arc<SwapDevice>), String> {
    let entries: Vec<SwapEntry> = (0..pages)
        .map(|p| space.swap_entry_at(VirtAddr::new(base + p * 4096)).ok_or(format!("page {p} not in swap")))
        .collect::<Result<_, _>>()?;
    let dev = area(entries[0].ty()).ok_or("no area")?;
    for _ in 0..4 {
        if !entries.iter().any(|&e| dev.area.has_cache(e)) {
            break;
        }
        crate::vm::reclaim::shrink(2 * pages as usize);
    }
    if let Some(e) = entries.iter().find(|&&e| dev.area.has_cache(e)) {
        return Err(format!("{e:?} is still in the swap cache after the pageout"));
    }
    Ok((entries, dev))
}

fn pageout_4k_pages_and_back(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 1024;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..PAGES, 1)?;
    let (free_slots, _) = totals();
    let out_before = PSWPOUT.load(Ordering::Relaxed);
    pageout(&space, base, PAGES * 4096)?;
    let swapped = swap_entries(&space, "after MADV_PAGEOUT")?;
    let written = PSWPOUT.load(Ordering::Relaxed) - out_before;
    if swapped != PAGES || written < PAGES {
        return Err(format!(
            "MADV_PAGEOUT of {PAGES} pages: {swapped} swap entries, {written} pages written"
        ));
    }
    let around0 = SWAPIN_MAPPED_AROUND.load(Ordering::Relaxed);
    check_pattern(&space, base, 0..PAGES, 1)??;
    let left = swap_entries(&space, "after reading it back")?;
    // Each page came back by its own fault or beside another's.
    let around = SWAPIN_MAPPED_AROUND.load(Ordering::Relaxed) - around0;
    if left != 0 || space.nr_swapins() + around < PAGES {
        return Err(format!(
            "after reading back: {left} swap entries left, {} swap-ins, {around} pages mapped beside them",
            space.nr_swapins()
        ));
    }
    // Written again after the swap-in (the pages are writable and
    // exclusive again), then a second round trip.
    write_pattern(&space, base, 0..PAGES, 2)?;
    pageout(&space, base, PAGES * 4096)?;
    check_pattern(&space, base, 0..PAGES, 2)??;
    drop(space);
    if totals().0 != free_slots {
        return Err(format!("swap slots leaked: {} free before, {} after", free_slots, totals().0));
    }
    Ok(())
}

/// Readahead (`mm::swap::swapin`): small pages paged out to consecutive
/// slots and read back in order. The touch of page 8 (near the touch of
/// page 0 before it, so the area is read in order) reads 8..15 in one go
/// and maps them all (`mm::swap::swapin::map_around`): no neighbour is a
/// swap entry in the page table any more, and touching them reads nothing
/// more. The data is right.
fn readahead_reads_the_neighbours_with_the_page(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 32;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 8 * 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..PAGES, 0x31)?;
    pageout(&space, base, PAGES * 4096)?;
    let (entries, _) = out_of_the_cache(&space, base, PAGES)?;
    if entries
        .iter()
        .enumerate()
        .any(|(i, e)| e.ty() != entries[0].ty() || e.offset() != entries[0].offset() + i as u64)
    {
        return Err(format!("the pages went out to slots out of order: {entries:?}"));
    }
    let touch = |p: u64| {
        let at = base + p * 4096;
        let got = run_in(&space, move || uaccess::read_u64(at))?;
        if got != word(p, 0, 0x31) {
            return Err(format!("page {p} word 0: {got:#x}"));
        }
        Ok::<(), String>(())
    };
    touch(0)?;
    let (in0, around0) = (PSWPIN.load(Ordering::Relaxed), SWAPIN_MAPPED_AROUND.load(Ordering::Relaxed));
    touch(8)?;
    let read = PSWPIN.load(Ordering::Relaxed) - in0;
    let around = SWAPIN_MAPPED_AROUND.load(Ordering::Relaxed) - around0;
    let still_swap =
        (9..16).filter(|&p| space.swap_entry_at(VirtAddr::new(base + p * 4096)).is_some()).count();
    if read != 8 || around != 7 || still_swap != 0 {
        return Err(format!(
            "the touch of page 8 read {read} pages (not 8) and mapped {around} beside it (not 7); of pages \
             9..15, {still_swap} are still swap entries (not 0)"
        ));
    }
    let in1 = PSWPIN.load(Ordering::Relaxed);
    check_pattern(&space, base, 8..16, 0x31)??;
    if PSWPIN.load(Ordering::Relaxed) != in1 {
        return Err(format!("pages 9..15 were read again: {} pages", PSWPIN.load(Ordering::Relaxed) - in1));
    }
    reads_back_and_takes_new_writes(&space, base, PAGES, 0x31, 0x32)
}

/// A new space with `pages` pages (a multiple of 512) mapped 2 MiB-aligned
/// with THP on and filled with the pattern `tag`: one 2 MiB folio per 512
/// pages, or an error saying how many huge leaves the fill made.
fn filled_thps(pages: u64, tag: u64) -> Result<(Arc<AddressSpace>, u64), String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 2 << 20, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), pages * 4096, Advice::HugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..pages, tag)?;
    let pmds = space.check().map_err(|e| format!("after the fill: {e}"))?.nr_pmd_leaves;
    if pmds != pages / 512 {
        return Err(format!("the fill made {pmds} 2 MiB leaves, not {} (no huge frames free?)", pages / 512));
    }
    Ok((space, base))
}

fn pageout_thp_and_back(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 1024; // two 2 MiB folios
    let (space, base) = filled_thps(PAGES, 3)?;
    let pmds = PAGES / 512;
    pageout(&space, base, PAGES * 4096)?;
    let swapped = swap_entries(&space, "after MADV_PAGEOUT")?;
    if swapped != PAGES {
        return Err(format!("MADV_PAGEOUT of {pmds} huge pages: {swapped} of {PAGES} pages swapped"));
    }
    reads_back_and_takes_new_writes(&space, base, PAGES, 3, 4)
}

/// `MADV_PAGEOUT` over a range that cuts two THPs (the second half of one,
/// the first half of the next): both are split, exactly the pages inside go
/// to swap, the ones outside stay mapped, and everything reads back right.
fn pageout_of_part_of_a_thp_splits_it(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 1024; // two 2 MiB folios
    let (space, base) = filled_thps(PAGES, 8)?;
    let splits = crate::vm::space::PAGEOUT_SPLITS.load(Ordering::Relaxed);
    let (from, to) = (PAGES / 4, 3 * PAGES / 4);
    pageout(&space, base + from * 4096, (to - from) * 4096)?;
    let after = space.check().map_err(|e| format!("after MADV_PAGEOUT: {e}"))?;
    let split = crate::vm::space::PAGEOUT_SPLITS.load(Ordering::Relaxed) - splits;
    if split < 2
        || after.nr_pmd_leaves != 0
        || after.nr_swap_entries != to - from
        || after.nr_pages_mapped != PAGES - (to - from)
    {
        return Err(format!(
            "MADV_PAGEOUT of pages {from}..{to} of two THPs: {split} folios split, {} 2 MiB leaves, \
             {} swap entries (want {}), {} pages still mapped (want {})",
            after.nr_pmd_leaves,
            after.nr_swap_entries,
            to - from,
            after.nr_pages_mapped,
            PAGES - (to - from)
        ));
    }
    reads_back_and_takes_new_writes(&space, base, PAGES, 8, 9)
}

/// A swap area with a bad page in every cluster of 512 slots has no run
/// for a 2 MiB folio, only single slots: reclaim splits the THP and swaps
/// its pages out one by one, and every byte comes back. (The scratch disk,
/// whose faulty pages are listed as bad too, so no I/O fails here.)
fn a_thp_is_split_when_no_run_of_slots_is_free(_: &TestEnv<'_>) -> Result<(), String> {
    let ty = scratch_swapon(b"fragmented", None, true)?;
    let result = (|| {
        let dev = area(ty).ok_or("the area just swapped on is gone")?;
        if let Some(run) = dev.area.alloc(9) {
            let _ = dev.area.release_cache(run, 512);
            return Err(String::from("the fragmented area still handed out a run of 512 slots"));
        }
        const PAGES: u64 = 512;
        let (space, base) = filled_thps(PAGES, 0x41)?;
        let splits = crate::vm::reclaim::NR_SPLIT_FOR_SWAP.load(Ordering::Relaxed);
        pageout(&space, base, PAGES * 4096)?;
        let split = crate::vm::reclaim::NR_SPLIT_FOR_SWAP.load(Ordering::Relaxed) - splits;
        let out = swap_entries(&space, "after MADV_PAGEOUT")?;
        if split != 1 || out != PAGES {
            return Err(format!(
                "MADV_PAGEOUT of a THP with no run free: {split} splits, {out} of {PAGES} pages out"
            ));
        }
        check_pattern(&space, base, 0..PAGES, 0x41)??;
        swap_entries(&space, "after reading it back")?;
        Ok(())
    })();
    let off = scratch_swapoff(ty);
    result.and(off)
}

/// A THP paged out and freed (out of the swap cache) comes back on the
/// touch of one byte as one order-9 folio, read in one request of 512
/// pages (`mm::swap::swapin`'s large read), every byte right. Read only,
/// it keeps its clean copy (the area is less than half full): paged out
/// again it is freed without a write; written, it is written again.
fn freed_thp_comes_back_whole(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 512;
    let (space, base) = filled_thps(PAGES, 0x21)?;
    let (head, order, _) = space.folio_at(VirtAddr::new(base))?;
    if order != 9 {
        return Err(format!("the fill made an order-{order} folio at {head:#x}, not a THP"));
    }
    pageout(&space, base, PAGES * 4096)?;
    let (entries, _) = out_of_the_cache(&space, base, PAGES)?;
    if !entries[0].offset().is_multiple_of(PAGES)
        || entries.iter().enumerate().any(|(i, e)| e.offset() != entries[0].offset() + i as u64)
    {
        return Err(format!("the THP went out to a broken run from {:?}", entries[0]));
    }
    // One byte touched: the whole 2 MiB comes back, in one fault.
    let in0 = PSWPIN.load(Ordering::Relaxed);
    let at = base + 123 * 4096 + 8;
    let got = run_in(&space, move || uaccess::read_u64(at))?;
    if got != word(123, 1, 0x21) {
        return Err(format!("page 123 word 1: {got:#x}"));
    }
    let read = PSWPIN.load(Ordering::Relaxed) - in0;
    let (head, order, cached) = space.folio_at(VirtAddr::new(at))?;
    if order != 9 || !cached || space.nr_swapins() != 1 || read != PAGES {
        return Err(format!(
            "after one touch: order-{order} folio at {head:#x} (in the swap cache: {cached}), {} swap-ins, \
             {read} pages read",
            space.nr_swapins()
        ));
    }
    for p in 0..PAGES {
        let (h, _, _) = space.folio_at(VirtAddr::new(base + p * 4096))?;
        if h != head {
            return Err(format!("page {p} maps folio {h:#x}, not the THP {head:#x}"));
        }
    }
    let rmap = space.rmap_of(VirtAddr::new(base + 77 * 4096))?;
    if rmap.len() != PAGES as usize {
        return Err(format!("rmap_of finds {} mappings of the folio, not {PAGES}", rmap.len()));
    }
    let stats = space.check().map_err(|e| format!("after the swap-in: {e}"))?;
    if (stats.nr_folios, stats.nr_pages_mapped, stats.nr_swap_entries) != (1, PAGES, 0) {
        return Err(format!("after the swap-in the checker saw {stats:?}"));
    }
    check_pattern(&space, base, 0..PAGES, 0x21)??;
    if space.nr_swapins() != 1 || PSWPIN.load(Ordering::Relaxed) - in0 != PAGES {
        return Err(String::from("reading the rest faulted more pages in"));
    }
    // Clean: out again without a write, and back from the same slots.
    let out0 = PSWPOUT.load(Ordering::Relaxed);
    pageout(&space, base, PAGES * 4096)?;
    if PSWPOUT.load(Ordering::Relaxed) != out0 {
        return Err(format!(
            "the clean copy was written again ({} pages)",
            PSWPOUT.load(Ordering::Relaxed) - out0
        ));
    }
    if space.swap_entry_at(VirtAddr::new(base)) != Some(entries[0]) {
        return Err(String::from("the clean copy went out to other slots"));
    }
    check_pattern(&space, base, 0..PAGES, 0x21)??;
    // Written in place (the cache folio becomes Dirty), and out and back
    // again whole: the write must reach the disk.
    write_pattern(&space, base, 0..PAGES, 0x22)?;
    let out0 = PSWPOUT.load(Ordering::Relaxed);
    pageout(&space, base, PAGES * 4096)?;
    if PSWPOUT.load(Ordering::Relaxed) - out0 != PAGES {
        return Err(format!("the written THP: {} pages written", PSWPOUT.load(Ordering::Relaxed) - out0));
    }
    check_pattern(&space, base, 0..PAGES, 0x22)??;
    space.check().map(drop)
}

/// Tasks of a parent and its child, on several CPUs, fault the pages of
/// one freed THP whose run both share, each starting somewhere else: one
/// large read claims the run, the others find its folio in the cache (or
/// their entry gone) and map it; every byte is right and both spaces end
/// up mapping the one order-9 folio.
fn concurrent_faults_on_one_freed_thp(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 512;
    // A fresh parent each round: after the first, the parent's writes
    // would copy the shared folio page by page.
    for round in 0..3u64 {
        let tag = 0x40 + round;
        let (parent, base) = filled_thps(PAGES, tag)?;
        pageout(&parent, base, PAGES * 4096)?;
        let child = parent.fork()?;
        four_readers(&parent, &child, "thp-swapin", move |t| {
            for k in 0..PAGES {
                let p = (k + t * 131) % PAGES;
                for w in [0, 255, 511] {
                    if uaccess::read_u64(base + p * 4096 + w * 8) != word(p, w, tag) {
                        return Err(format!("task {t}: page {p} word {w} wrong"));
                    }
                }
            }
            Ok(())
        })?;
        parent.check().map_err(|e| format!("round {round}: {e}"))?;
        let (head, order, _) = parent.folio_at(VirtAddr::new(base))?;
        for (who, space) in [("parent", &parent), ("child", &child)] {
            for p in [0, 1, 300, PAGES - 1] {
                let (h, o, _) = space.folio_at(VirtAddr::new(base + p * 4096))?;
                if (h, o) != (head, 9) || order != 9 {
                    return Err(format!(
                        "round {round}: {who} page {p} maps an order-{o} folio at {h:#x}, not the THP"
                    ));
                }
            }
        }
        check_pattern(&child, base, 0..PAGES, tag)??;
        drop(child);
        check_pattern(&parent, base, 0..PAGES, tag)??;
        parent.check().map_err(|e| format!("round {round}, at the end: {e}"))?;
    }
    Ok(())
}

fn fork_after_swapout_both_sides_write(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 256;
    let parent = AddressSpace::new()?;
    let base = parent.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    write_pattern(&parent, base, 0..PAGES, 5)?;
    pageout(&parent, base, PAGES * 4096)?;
    let child = parent.fork()?;
    child.check().map_err(|e| format!("after fork: {e}"))?;
    // Each side rewrites its own half, then both read everything.
    write_pattern(&child, base, 0..PAGES / 2, 6)?;
    write_pattern(&parent, base, PAGES / 2..PAGES, 7)?;
    check_pattern(&child, base, 0..PAGES / 2, 6)?.map_err(|e| format!("child, its half: {e}"))?;
    check_pattern(&child, base, PAGES / 2..PAGES, 5)?.map_err(|e| format!("child, the other half: {e}"))?;
    check_pattern(&parent, base, 0..PAGES / 2, 5)?.map_err(|e| format!("parent, the other half: {e}"))?;
    check_pattern(&parent, base, PAGES / 2..PAGES, 7)?.map_err(|e| format!("parent, its half: {e}"))?;
    // Out again, with both sides sharing some pages, and back.
    pageout(&parent, base, PAGES * 4096)?;
    pageout(&child, base, PAGES * 4096)?;
    parent.check().map_err(|e| format!("after the second pageout: {e}"))?;
    check_pattern(&child, base, PAGES / 2..PAGES, 5)?.map_err(|e| format!("child after the second: {e}"))?;
    check_pattern(&parent, base, 0..PAGES / 2, 5)?.map_err(|e| format!("parent after the second: {e}"))?;
    parent.check().map_err(|e| format!("at the end: {e}"))?;
    Ok(())
}

/// Seed 004's scenario: a plain writable reference (`FOLL_GET`, as
/// O_DIRECT took) held across swap-out and swap-in must keep seeing the
/// page the task sees. `bug=forget-anon-exclusive` makes it fail.
fn gup_write_reference_survives_swap(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    let space = AddressSpace::new()?;
    let base = space.mmap(4 * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    run_in(&space, move || (0..4).for_each(|p| uaccess::write_u8(base + p * 4096, 0x10 + p as u8)))?;
    let held = space.get_user_pages(VirtAddr::new(base + 4096), 1, true, Hold::Get)?;
    let result = (|| {
        pageout(&space, base, 4 * 4096)?;
        // The device writes through the reference while the page is out.
        // SAFETY: a page of an anonymous folio we hold a writable
        // reference on (`Hold::Get`, write).
        unsafe { crate::tests::kit::kwrite(held[0], 0x77) };
        // The task reads it (swap-in), then writes another byte of it.
        let seen = run_in(&space, move || {
            let v = uaccess::read_u8(base + 4096);
            uaccess::write_u8(base + 4096 + 8, 0x88);
            v
        })?;
        // SAFETY: byte 8 of the page we hold a reference on.
        let through_ref = unsafe { crate::tests::kit::kread(PhysAddr::new(held[0].as_u64() + 8)) };
        if seen != 0x77 || through_ref != 0x88 {
            return Err(format!(
                "the task read {seen:#x} (device wrote 0x77) and the reference sees {through_ref:#x} \
                 (task wrote 0x88): the page was copied after swap-in, writes are lost"
            ));
        }
        space.check().map(drop)
    })();
    release_user_pages(&held, Hold::Get);
    result
}

fn concurrent_swapin_of_one_entry(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const PAGES: u64 = 8;
    let parent = AddressSpace::new()?;
    let base = parent.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    for round in 0..4u64 {
        write_pattern(&parent, base, 0..PAGES, 8 + round)?;
        pageout(&parent, base, PAGES * 4096)?;
        let child = parent.fork()?;
        // Several tasks of both spaces fault the same entries at once.
        four_readers(&parent, &child, "swapin", move |t| {
            for p in (0..PAGES).rev() {
                for w in 0..WORDS {
                    if uaccess::read_u64(base + p * 4096 + w * 8) != word(p, w, 8 + round) {
                        return Err(format!("task {t}: page {p} word {w} wrong"));
                    }
                }
            }
            Ok(())
        })?;
        parent.check().map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(())
}

/// A full swap area does not stop swap-out while another has room: with a
/// small preferred area (the scratch disk) full, the rest of a pageout
/// goes to the swap disk. (Found by the randomised stress: allocation kept
/// choosing the full area, reclaim freed nothing, and tasks were killed
/// for want of memory with most of the swap free.)
fn a_full_area_leaves_room_to_the_next(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const SMALL: u64 = 100;
    const PAGES: u64 = 300;
    let ty = scratch_swapon(b"small", Some(SMALL), false)?;
    let result = (|| {
        let space = AddressSpace::new()?;
        let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
        write_pattern(&space, base, 0..PAGES, 7)?;
        pageout(&space, base, PAGES * 4096)?;
        let swapped = swap_entries(&space, "after MADV_PAGEOUT")?;
        let small_free = area(ty).map(|d| d.area.nr_free()).unwrap_or(0);
        if swapped != PAGES {
            return Err(format!(
                "MADV_PAGEOUT of {PAGES} pages with a {SMALL}-page area preferred: {swapped} went out \
                 ({small_free} slots of that area free): a full area hid the others"
            ));
        }
        check_pattern(&space, base, 0..PAGES, 7)?
    })();
    let off = scratch_swapoff(ty);
    result.and(off)
}

/// The scratch disk as a swap area of `pages` pages (its faulty pages
/// listed as bad, so no I/O fails; with `bad_every_cluster`, one bad page
/// in every cluster of 512 too, so no run for a huge folio is free), on and
/// preferred for new slots. Give it back with [`scratch_swapoff`].
pub(crate) fn scratch_swapon(
    label: &[u8],
    pages: Option<u64>,
    bad_every_cluster: bool,
) -> Result<SwapType, String> {
    let disk = crate::tests::kit::scratch_disk()?;
    let pages = pages.unwrap_or(disk.capacity_pages()).min(disk.capacity_pages());
    let (bad_write, bad_read) =
        crate::tests::kit::faulty_ranges(disk.serial()).ok_or("faulty disk without ranges")?;
    let mut bad: Vec<u32> = bad_write.chain(bad_read).filter(|&p| p < pages).map(|p| p as u32).collect();
    if bad_every_cluster {
        bad.extend((0..pages).step_by(512).map(|c| c + 300).filter(|&p| p < pages).map(|p| p as u32));
    }
    bad.sort_unstable();
    let header = mm::swap::header::format(pages, &bad, label).map_err(|e| format!("{e}"))?;
    write_header(disk, &header)?;
    let ty = swapon(disk)?;
    prefer(Some(ty));
    Ok(ty)
}

fn scratch_swapoff(ty: SwapType) -> Result<(), String> {
    prefer(None);
    Ok(swapoff(ty)?)
}

/// What the tasks of [`swapin_racing_pageout_loses_no_write`] share.
#[derive(Default)]
struct Race {
    /// Bumped by the coordinator to start a round; the tasks wait for it.
    round: AtomicU64,
    /// The page of the round, and the version of the pattern it holds.
    page: AtomicU64,
    version: AtomicU64,
    /// Bits of the tasks done with the round (1: writer, 2: reader, 4: pager).
    done: AtomicU64,
    /// Set at the end; the tasks return.
    stop: core::sync::atomic::AtomicBool,
}

impl Race {
    /// Waits (yielding, so one CPU is enough) for a round after `seen`;
    /// returns it with its page and version, or `None` at the end.
    fn next_round(&self, seen: u64) -> Option<(u64, u64, u64)> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let r = self.round.load(Ordering::Acquire);
            if r > seen {
                return Some((r, self.page.load(Ordering::Relaxed), self.version.load(Ordering::Relaxed)));
            }
            sched::yield_now();
        }
    }
}

/// Seed 002's race, as the replay `bug=pageout-split-race` needs it: two
/// tasks fault on the same swapped-out page at once (one reads and checks
/// it, then writes a new version; the other only reads), while a third
/// pages it out again and again with `MADV_PAGEOUT`. The area is full, so
/// the slot a swap-in frees is the one the next swap-out gets, and the
/// page-table entry holds the same swap entry value again (ABA). The
/// claim of the slot before reading keeps every read safe; without it
/// the reader that lost the race maps the stale copy it read over the new
/// version, and the next check of the page finds a lost write. Runs
/// `stress_secs` seconds (2 by default); the pages of the rounds come from
/// `seed=`.
fn swapin_racing_pageout_loses_no_write(env: &TestEnv<'_>) -> Result<(), String> {
    let secs = env.args.get_u64("stress_secs").map_err(|e| format!("{e}"))?.unwrap_or(2);
    let seed = crate::tests::kit::test_seed(env, "swap::swapin_racing_pageout_loses_no_write", 0x2545_f491)?;
    let ty = scratch_swapon(b"race", Some(600), false)?;
    let result = race_on(ty, secs, seed);
    let off = scratch_swapoff(ty);
    result.and(off)
}

fn race_on(ty: SwapType, secs: u64, seed: u64) -> Result<(), String> {
    const HOT: u64 = 16;
    let dev = area(ty).ok_or("the area just swapped on is gone")?;
    // As many pages as the area has slots: once all are out it is full.
    let pages = dev.area.nr_free();
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), pages * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..pages, 0)?;
    pageout(&space, base, pages * 4096)?;
    let out = swap_entries(&space, "after the first pageout")?;
    if out != pages || dev.area.nr_free() != 0 {
        return Err(format!("{out} of {pages} pages went out, {} slots left free", dev.area.nr_free()));
    }
    let race = Arc::new(Race::default());
    let cpus = sched::nr_cpus_online();
    let mut tasks = Vec::new();
    let r = race.clone();
    tasks.push(space.spawn(Some(0), "race-writer", move || {
        let mut seen = 0;
        while let Some((round, p, v)) = r.next_round(seen) {
            seen = round;
            let at = base + p * 4096;
            for w in 0..WORDS {
                let got = uaccess::read_u64(at + w * 8);
                if got != word(p, w, v) {
                    let found = (0..=v + 1).find(|&old| got == word(p, w, old));
                    return Err(format!(
                        "lost write: page {p} word {w} holds {}, the last version written was {v}",
                        found.map_or(format!("{got:#x}"), |old| format!("version {old}"))
                    ));
                }
            }
            for w in 0..WORDS {
                uaccess::write_u64(at + w * 8, word(p, w, v + 1));
            }
            r.done.fetch_or(1, Ordering::AcqRel);
        }
        Ok(())
    })?);
    let r = race.clone();
    tasks.push(space.spawn(Some(1 % cpus), "race-reader", move || {
        let mut seen = 0;
        while let Some((round, p, _)) = r.next_round(seen) {
            seen = round;
            uaccess::read_u64(base + p * 4096 + 8 * (round % WORDS));
            r.done.fetch_or(2, Ordering::AcqRel);
        }
        Ok(())
    })?);
    let (r, pager_space) = (race.clone(), space.clone());
    tasks.push(space.spawn(Some(2 % cpus), "race-pager", move || {
        let mut seen = 0;
        while let Some((round, p, _)) = r.next_round(seen) {
            seen = round;
            while r.done.load(Ordering::Acquire) & 3 != 3 {
                pageout(&pager_space, base + p * 4096, 4096)?;
            }
            r.done.fetch_or(4, Ordering::AcqRel);
        }
        Ok(())
    })?);
    let mut versions = [0u64; HOT as usize];
    let mut rng = mm::rng::SplitMix64::new(seed, 0);
    let start = sched::ticks();
    let mut rounds = 0u64;
    let mut failure = None;
    while sched::ticks() - start < secs * u64::from(sched::TICK_HZ) {
        let p = rng.next_u64() % HOT;
        race.page.store(p, Ordering::Relaxed);
        race.version.store(versions[p as usize], Ordering::Relaxed);
        race.done.store(0, Ordering::Relaxed);
        rounds += 1;
        race.round.store(rounds, Ordering::Release);
        let waited = sched::ticks();
        while race.done.load(Ordering::Acquire) != 7 {
            if sched::ticks() - waited > 10 * u64::from(sched::TICK_HZ) {
                failure = Some(format!("round {rounds} on page {p} did not end in 10 s"));
                break;
            }
            if tasks.iter().any(|t| t.is_finished()) {
                break; // a task failed or was ended: its result says why
            }
            sched::yield_now();
        }
        if failure.is_some() || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        versions[p as usize] += 1;
        // Out again for the next round on it (the pager may have lost
        // the last word to the writer).
        pageout(&space, base + p * 4096, 4096)?;
    }
    race.stop.store(true, Ordering::Release);
    for t in tasks {
        t.join()??;
    }
    if let Some(f) = failure {
        return Err(f);
    }
    for p in 0..HOT {
        check_pattern(&space, base, p..p + 1, versions[p as usize])?
            .map_err(|e| format!("lost write after {rounds} rounds: {e}"))?;
    }
    crate::println!("swap race: {rounds} rounds over {HOT} pages in {secs} s, a full area of {pages} slots");
    check_pattern(&space, base, HOT..pages, 0)??;
    space.check().map(drop)
}

/// Fills more memory than is free with a pattern, so reclaim must swap,
/// then checks every byte. To stay short at any `--mem`, it first takes
/// raw frames ("ballast", which reclaim cannot touch) until about 64 MiB
/// are free, as on a small machine, and gives them back at the end.
fn fill_more_than_ram(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    const KEEP_FREE: u64 = 16384; // pages
    let mut ballast = Vec::new();
    while memory::nr_free_frames() > KEEP_FREE + 512 {
        match memory::alloc_frames(9) {
            Ok(pa) => ballast.push(pa),
            Err(_) => break,
        }
    }
    let result = fill_with_ballast();
    for pa in ballast {
        memory::free_frames(pa, 9);
    }
    result
}

fn fill_with_ballast() -> Result<(), String> {
    let free = memory::nr_free_frames();
    let pages = free + free / 2;
    let (free_slots, _) = totals();
    if free_slots < pages + 1024 {
        return Err(format!("swap too small: {free_slots} free slots for {pages} pages"));
    }
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let (out0, in0) = (PSWPOUT.load(Ordering::Relaxed), PSWPIN.load(Ordering::Relaxed));
    write_pattern(&space, base, 0..pages, 0x55)?;
    check_pattern(&space, base, 0..pages, 0x55)??;
    let (out, inn) = (PSWPOUT.load(Ordering::Relaxed) - out0, PSWPIN.load(Ordering::Relaxed) - in0);
    space.check().map_err(|e| format!("after the fill: {e}"))?;
    crate::println!(
        "swap: filled {} MiB with {} MiB free: {} MiB out, {} MiB in",
        pages / 256,
        free / 256,
        out / 256,
        inn / 256
    );
    if out == 0 || inn == 0 {
        return Err(format!("nothing went through swap ({out} pages out, {inn} in)"));
    }
    Ok(())
}

/// Writes `page` (4096 bytes) to page 0 of `disk`.
pub(crate) fn write_header(disk: &'static BlockDevice, page: &[u8]) -> Result<(), String> {
    let frame = memory::alloc_frames(0).map_err(|e| format!("no frame: {e:?}"))?;
    // SAFETY: a frame we own, in the direct map; nobody else sees it.
    let buf =
        unsafe { core::slice::from_raw_parts_mut(memory::phys_to_virt(frame).as_u64() as *mut u8, 4096) };
    buf.copy_from_slice(page);
    // SAFETY: our frame; `buf`'s last use is above.
    let r = unsafe { disk.write_pages(0, frame, 1) }.map_err(|e| format!("writing the header: {e}"));
    memory::free_frames(frame, 0);
    r
}

/// Broken headers on the scratch disk are refused by swapon with a clear
/// message, and the kernel goes on; a good one is accepted and swapoff
/// frees it again.
fn bad_headers_are_refused(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = crate::tests::kit::scratch_disk()?;
    let good =
        mm::swap::header::format(disk.capacity_pages(), &[], b"scratch").map_err(|e| format!("{e}"))?;
    let mut no_magic = good;
    no_magic[4090] = b'X';
    let mut bad_version = good;
    bad_version[1024..1028].copy_from_slice(&7u32.to_le_bytes());
    let mut too_long = good;
    too_long[1028..1032].copy_from_slice(&(disk.capacity_pages() as u32 + 100).to_le_bytes());
    for (page, want) in [(&no_magic, "signature"), (&bad_version, "version"), (&too_long, "device")] {
        write_header(disk, page)?;
        match swapon(disk) {
            Ok(ty) => {
                swapoff(ty)?;
                return Err(format!("a header with a bad {want} was accepted"));
            }
            Err(e) if alloc::format!("{e}").contains(want) => {}
            Err(e) => return Err(format!("refused, but the message does not say `{want}`: {e}")),
        }
    }
    write_header(disk, &good)?;
    let ty = swapon(disk)?;
    Ok(swapoff(ty)?)
}

/// The faulty disk as a swap area: a page whose write fails stays in memory
/// (and is written again on the next try), its data intact; a page whose
/// read fails ends only the task that touched it.
fn io_errors_keep_data_and_end_only_the_reader(_: &TestEnv<'_>) -> Result<(), String> {
    // One write in flight, of one page: each page is a request of its
    // own, so exactly the pages of the failing range fail (`io_errors_on`).
    crate::vm::reclaim::set_writes_in_flight(Some(1));
    crate::vm::reclaim::set_pages_per_write(Some(1));
    let result = on_the_faulty_area(false);
    crate::vm::reclaim::set_pages_per_write(None);
    crate::vm::reclaim::set_writes_in_flight(None);
    result
}

/// As [`io_errors_keep_data_and_end_only_the_reader`] with reclaim's
/// writes in flight together and gathered (the default): a gathered
/// request fails whole, and QEMU merges requests in flight to neighbouring
/// sectors and fails a merged one whole, so the pages of the failing range
/// fail and maybe some of their neighbours, in fewer failed requests than
/// pages; every one of them stays in memory (in the swap cache) and
/// nothing is lost.
fn write_errors_among_writes_in_flight_keep_every_page(_: &TestEnv<'_>) -> Result<(), String> {
    on_the_faulty_area(true)
}

/// [`io_errors_on`] over the whole faulty disk made a swap area (preferred
/// for the test, swapped off after it); `merged`: as it says there.
fn on_the_faulty_area(merged: bool) -> Result<(), String> {
    let disk = crate::tests::kit::scratch_disk()?;
    let (bad_write, bad_read) =
        crate::tests::kit::faulty_ranges(disk.serial()).ok_or("faulty disk without ranges")?;
    let header =
        mm::swap::header::format(disk.capacity_pages(), &[], b"faulty").map_err(|e| format!("{e}"))?;
    write_header(disk, &header)?;
    let ty = swapon(disk)?;
    prefer(Some(ty));
    let result = io_errors_on(bad_write, bad_read, merged);
    prefer(None);
    let off = swapoff(ty).map_err(String::from);
    result.and(off)
}

/// A swap area whose every slot fails its write (the faulty disk's
/// write-failing pages, the others listed as bad): each failed write is a
/// device error of the disk, counted, and what an out-of-memory message
/// gives as the reason reclaim freed nothing names them, with the error.
fn failed_writes_are_counted_and_named(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = crate::tests::kit::scratch_disk()?;
    let (bad_write, _) =
        crate::tests::kit::faulty_ranges(disk.serial()).ok_or("faulty disk without ranges")?;
    // Slots 1..bad_write.start are bad: only the failing ones are left.
    let bad: Vec<u32> = (1..bad_write.start as u32).collect();
    let header = mm::swap::header::format(bad_write.end, &bad, b"failing").map_err(|e| format!("{e}"))?;
    write_header(disk, &header)?;
    let ty = swapon(disk)?;
    prefer(Some(ty));
    // One page per request: each failed write counts.
    crate::vm::reclaim::set_pages_per_write(Some(1));
    let result = failing_writes_on(disk, bad_write.end - bad_write.start);
    crate::vm::reclaim::set_pages_per_write(None);
    prefer(None);
    let off = swapoff(ty).map_err(String::from);
    result.and(off)
}

fn failing_writes_on(disk: &'static BlockDevice, pages: u64) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), pages * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..pages, 0x47)?;
    let errors0 = disk.nr_device_errors();
    pageout(&space, base, pages * 4096)?;
    let errors = disk.nr_device_errors() - errors0;
    let (in_a_row, last) = write_errors_in_a_row();
    if errors < pages || in_a_row < pages {
        return Err(format!(
            "{pages} writes to failing slots: {errors} device errors on {}, {in_a_row} failed writes in a row",
            disk.name()
        ));
    }
    if !matches!(last, Some(crate::drivers::blk::IoError::Device { .. })) {
        return Err(format!("the latest write error is {last:?}, not the device's"));
    }
    let why = crate::vm::reclaim::why_nothing_freed();
    if !why.contains(&format!("{in_a_row} swap writes failed in a row")) || !why.contains(disk.name()) {
        return Err(format!("why reclaim freed nothing does not name the {in_a_row} failed writes: {why}"));
    }
    // The data stayed in memory.
    check_pattern(&space, base, 0..pages, 0x47)??;
    space.munmap(VirtAddr::new(base), pages * 4096).map_err(|e| format!("munmap: {e:?}"))
}

/// The stalling disk as a swap area: its write that gets no answer fails
/// with a timeout within the disk's timeout, the disk is retired and the
/// area with it (no new slots), swap goes on on the other area, a task
/// reading another disk meanwhile goes on as if nothing happened, pages
/// that reached the dead disk end only the task that touches them, every
/// other page comes back, and a retired disk fails at once.
fn a_disk_that_stops_answering_is_retired(_: &TestEnv<'_>) -> Result<(), String> {
    need_swap()?;
    let disk = crate::tests::kit::stalling_disk()?;
    if let Some(why) = disk.retired() {
        return Err(format!("{} is retired already ({why}): this test runs once per boot", disk.name()));
    }
    disk.set_timeout_ms(STALL_TIMEOUT_MS);
    let header =
        mm::swap::header::format(disk.capacity_pages(), &[], b"stalling").map_err(|e| format!("{e}"))?;
    write_header(disk, &header)?;
    let ty = swapon(disk)?;
    prefer(Some(ty));
    // One write in flight, of one page: the throttle lets whole requests
    // through, and the bound on the pages lost below counts one page per
    // request.
    crate::vm::reclaim::set_writes_in_flight(Some(1));
    crate::vm::reclaim::set_pages_per_write(Some(1));
    let result = stall_on(disk, ty);
    crate::vm::reclaim::set_pages_per_write(None);
    crate::vm::reclaim::set_writes_in_flight(None);
    prefer(None);
    let off = swapoff(ty).map_err(String::from);
    result.and(off)
}

/// The stalling disk's request timeout in [`a_disk_that_stops_answering_is_retired`].
const STALL_TIMEOUT_MS: u64 = 1000;

fn stall_on(disk: &'static BlockDevice, ty: SwapType) -> Result<(), String> {
    use crate::drivers::blk::{IoError, Retirement};
    use core::sync::atomic::AtomicBool;
    const PAGES: u64 = 16;
    let ms = |ticks: u64| ticks * 1000 / sched::TICK_HZ as u64;
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..PAGES, 0x57)?;
    // Meanwhile a task reads a healthy page of another disk, again and again.
    let other = crate::tests::kit::scratch_disk()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads) = (stop.clone(), reads.clone());
        sched::spawn("other-disk", move || -> Result<(), String> {
            let frame = memory::alloc_frames(0).map_err(|e| format!("no frame: {e:?}"))?;
            let mut r = Ok(());
            while r.is_ok() && !stop.load(Ordering::Relaxed) {
                // SAFETY: a frame this task allocated and touches nowhere else.
                r = unsafe { other.read_pages(0, frame, 1) }.map_err(|e| format!("{e}"));
                reads.fetch_add(1, Ordering::Relaxed);
                sched::sleep_ms(5);
            }
            memory::free_frames(frame, 0);
            r
        })
        .map_err(|e| format!("spawn: {e:?}"))?
    };
    let out0 = PSWPOUT.load(Ordering::Relaxed);
    let (t0, reads0) = (sched::ticks(), reads.load(Ordering::Relaxed));
    let paged = pageout(&space, base, PAGES * 4096);
    let (took, reads_during) = (ms(sched::ticks() - t0), reads.load(Ordering::Relaxed) - reads0);
    stop.store(true, Ordering::Relaxed);
    reader.join().map_err(|e| format!("the task reading {} meanwhile: {e}", other.name()))??;
    paged?;
    let written = PSWPOUT.load(Ordering::Relaxed) - out0;
    match disk.retired() {
        Some(Retirement::NoAnswer { after_ms }) if after_ms == STALL_TIMEOUT_MS => {}
        other => return Err(format!("after a pageout of {took} ms, {} is retired: {other:?}", disk.name())),
    }
    // The stalled write waited for its timeout, and not much longer (TCG on
    // a loaded host is slow: a generous bound).
    if took + 10 < STALL_TIMEOUT_MS || took > STALL_TIMEOUT_MS + 8000 {
        return Err(format!(
            "the pageout with a stalled write took {took} ms (timeout {STALL_TIMEOUT_MS} ms)"
        ));
    }
    if reads_during < 2 {
        return Err(format!("{} reads of {} in the {took} ms of the stall", reads_during, other.name()));
    }
    let dev = area(ty).ok_or("the area went away")?;
    if !dev.disk_gone() || !dev.area.alloc_stopped() || alloc_area().is_some_and(|a| a.area.ty() == ty) {
        return Err(String::from("the area on the retired disk still allocates"));
    }
    drop(dev);
    if disk.nr_device_errors() == 0 {
        return Err(String::from("the timeout was not counted as a device error"));
    }
    // Swap went on on the other area: at most the few pages the stalling
    // disk took before it stopped, and the one that timed out, did not go.
    if written + 4 < PAGES {
        return Err(format!("only {written} of {PAGES} pages were written after the stall"));
    }
    // Each page in a task of its own: those that reached the dead disk end
    // their reader with a read error; every other one reads back right.
    let mut lost = 0;
    for p in 0..PAGES {
        match check_pattern(&space, base, p..p + 1, 0x57) {
            Ok(r) => r?,
            Err(why) if why.contains("swap read error") && why.contains("out of service") => lost += 1,
            Err(why) => return Err(format!("page {p}: {why}")),
        }
    }
    if lost > 3 {
        return Err(format!("{lost} pages were lost on a disk that answers at most 3 requests"));
    }
    // A request to the retired disk fails at once.
    let frame = memory::alloc_frames(0).map_err(|e| format!("no frame: {e:?}"))?;
    let t1 = sched::ticks();
    // SAFETY: a frame we just allocated and free only after the request.
    let r = unsafe { disk.read_pages(1, frame, 1) };
    memory::free_frames(frame, 0);
    match r {
        Err(IoError::OutOfService { .. }) if ms(sched::ticks() - t1) < STALL_TIMEOUT_MS => {}
        other => {
            return Err(format!("a read of the retired disk: {other:?} after {} ms", ms(sched::ticks() - t1)))
        }
    }
    space.munmap(VirtAddr::new(base), PAGES * 4096).map_err(|e| format!("munmap: {e:?}"))
}

/// `merged`: several writes were in flight, and a failed request may have
/// carried pages outside `bad_write` too (at least those inside failed).
fn io_errors_on(
    bad_write: core::ops::Range<u64>,
    bad_read: core::ops::Range<u64>,
    merged: bool,
) -> Result<(), String> {
    // Slots are handed out from 1 upwards: enough pages to reach past both
    // faulty ranges.
    let pages = bad_read.end + 8;
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), pages * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..pages, 0x31)?;
    let w0 = WRITE_ERRORS.load(Ordering::Relaxed);
    let cached0 = crate::vm::swap::nr_cached();
    pageout(&space, base, pages * 4096)?;
    let failed = WRITE_ERRORS.load(Ordering::Relaxed) - w0;
    let kept = crate::vm::swap::nr_cached().saturating_sub(cached0);
    let out = swap_entries(&space, "after the pageout")?;
    // All unmapped; the ones whose write failed stay in the swap cache.
    let bad = bad_write.end - bad_write.start;
    let expected = if merged { failed >= 1 && kept >= bad } else { failed == bad };
    if !expected || out != pages {
        return Err(format!(
            "{failed} writes failed (expected {}), {kept} pages kept in the swap cache, {out} of {pages} \
             pages in swap",
            if merged {
                String::from("at least 1, keeping the failing range's pages")
            } else {
                format!("{bad}")
            }
        ));
    }
    // Reclaim's next pass writes them again (and fails again): still in
    // memory.
    crate::vm::reclaim::shrink(4 * pages as usize);
    if WRITE_ERRORS.load(Ordering::Relaxed) - w0 <= failed {
        return Err(String::from("a folio whose write failed was not written again"));
    }
    // Every page but those in the unreadable slots reads back right; the
    // kept ones come from the swap cache.
    let unreadable = |p: u64| bad_read.contains(&(p + 1));
    for p in (0..pages).filter(|&p| !unreadable(p)) {
        check_pattern(&space, base, p..p + 1, 0x31)?.map_err(|e| format!("after write errors: {e}"))?;
    }
    // A read error ends the reader, not the kernel; the space stays sound.
    // `merged`: a page of an unreadable slot may still be in memory, its
    // write having failed with its neighbours' (a gathered or merged
    // request); then the next one is read, until one ends its reader.
    let r0 = READ_ERRORS.load(Ordering::Relaxed);
    let first_bad = bad_read.start - 1;
    let last = if merged { bad_read.end - 1 } else { first_bad + 1 };
    for p in first_bad..last {
        let killed = space.spawn(None, "reader", move || uaccess::read_u8(base + p * 4096))?.join();
        match killed {
            Err(killed) if killed.why.contains("swap read error") => break,
            Ok(b) if merged && p + 1 < last && b == crate::demo::word(p, 0, 0x31) as u8 => {}
            other => return Err(format!("reading an unreadable slot (page {p}): {other:?}")),
        }
    }
    if READ_ERRORS.load(Ordering::Relaxed) == r0 {
        return Err(String::from("no read error was counted"));
    }
    space.check().map_err(|e| format!("after the read error: {e}"))?;
    // Give the slots back before swapoff (the unreadable one could not be
    // brought back).
    space.munmap(VirtAddr::new(base), pages * 4096).map_err(|e| format!("munmap: {e:?}"))
}

/// Turns the scratch area of type `ty` off if it is still on (a test that
/// turned it off itself, or failed half-way).
fn scratch_cleanup(ty: SwapType) -> Result<(), String> {
    prefer(None);
    match area(ty) {
        Some(dev) if dev.disk_name() == crate::tests::kit::scratch_disk()?.name() => {
            drop(dev);
            Ok(swapoff(ty)?)
        }
        _ => Ok(()),
    }
}

/// Every page-table entry of `space` in `[base, base + pages * 4096)` that
/// still names the area of type `ty`.
fn entries_of_area(space: &AddressSpace, base: u64, pages: u64, ty: SwapType) -> Vec<(u64, SwapEntry)> {
    (0..pages)
        .filter_map(|p| space.swap_entry_at(VirtAddr::new(base + p * 4096)).map(|e| (p, e)))
        .filter(|(_, e)| e.ty() == ty)
        .collect()
}

/// The read-only disk xtask attaches (with a valid swap header) is refused
/// by swapon with a message saying so, and nothing of it is left on.
fn a_read_only_disk_is_refused(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = crate::tests::kit::read_only_disk()?;
    if !disk.read_only() {
        return Err(format!("{} does not say it is read-only", disk.name()));
    }
    let (_, total) = totals();
    match swapon(disk) {
        Ok(ty) => {
            let off = swapoff(ty).map_err(String::from);
            Err(format!("swapon accepted the read-only disk {} as type {ty} ({off:?})", disk.name()))
        }
        Err(e) if format!("{e}").contains("read-only") && matches!(e, SwapOnError::ReadOnly) => {
            if totals().1 != total {
                return Err(String::from("the refused disk's slots were counted anyway"));
            }
            Ok(())
        }
        Err(e) => Err(format!("refused, but not for being read-only: {e}")),
    }
}

/// A fault reads its swap entry under the space's lock and looks the area
/// up after dropping it; a swapoff that finishes in between brings the page
/// back and takes the area away. That fault must retry, not end its task
/// with "is in no swap area": here it is replayed by calling the swap-in
/// half with the entry read before the swapoff.
fn a_fault_that_loses_the_race_with_swapoff_retries(_: &TestEnv<'_>) -> Result<(), String> {
    let ty = scratch_swapon(b"late-fault", None, false)?;
    let result = (|| {
        const PAGES: u64 = 4;
        let space = AddressSpace::new()?;
        let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
        write_pattern(&space, base, 0..PAGES, 0x71)?;
        pageout(&space, base, PAGES * 4096)?;
        let entry = space.swap_entry_at(VirtAddr::new(base)).ok_or("page 0 did not go out")?;
        if entry.ty() != ty {
            return Err(format!("page 0 went to {entry:?}, not the scratch area {ty}"));
        }
        swapoff(ty)?;
        if area(ty).is_some() || space.swap_entry_at(VirtAddr::new(base)).is_some() {
            return Err(String::from("swapoff left the area on or the page out"));
        }
        let late = space.clone();
        let retried = run_in(&space, move || {
            crate::vm::fault::swap_in(&late, mm::fault::Access::Read, VirtAddr::new(base), entry)
        })?;
        retried.map_err(|e| format!("the fault that lost the race with swapoff: {e}"))?;
        check_pattern(&space, base, 0..PAGES, 0x71)??;
        space.check().map(drop)
    })();
    result.and(scratch_cleanup(ty))
}

/// swapoff with its real work to do: small pages and a THP out on the
/// scratch area, some freed from the swap cache, some still in it, and a
/// forked child sharing them. Every page of both comes back with its data,
/// the area goes, and the checker is clean.
fn swapoff_brings_back_pages_that_are_out(_: &TestEnv<'_>) -> Result<(), String> {
    let ty = scratch_swapon(b"swapoff", None, false)?;
    let result = (|| {
        const SMALL: u64 = 300;
        // About half, whole readahead windows: a fault maps the pages of
        // its window that wait in the swap cache (`swapin::map_around`).
        const HALF: u64 = 152;
        const WINDOW: u64 = mm::swap::swapin::READAHEAD_PAGES as u64 * 4096;
        let (space, thp) = filled_thps(512, 0x61)?;
        let base = space.mmap(SMALL * 4096, WINDOW, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        space.madvise(VirtAddr::new(base), SMALL * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
        write_pattern(&space, base, 0..SMALL, 0x62)?;
        pageout(&space, thp, 512 * 4096)?;
        pageout(&space, base, SMALL * 4096)?;
        let child = space.fork()?;
        // Half of the small pages back in the parent (mapped from the swap
        // cache or read), so some slots are held by the child alone.
        check_pattern(&space, base, 0..HALF, 0x62)??;
        let out =
            entries_of_area(&space, thp, 512, ty).len() + entries_of_area(&space, base, SMALL, ty).len();
        let child_out = entries_of_area(&child, base, SMALL, ty).len();
        if out as u64 != 512 + SMALL - HALF || child_out as u64 != SMALL {
            return Err(format!(
                "{out} parent and {child_out} child entries in the scratch area before swapoff"
            ));
        }
        let in0 = PSWPIN.load(Ordering::Relaxed);
        swapoff(ty)?;
        if area(ty).is_some() {
            return Err(String::from("swapoff returned, the area is still on"));
        }
        for (who, s) in [("parent", &space), ("child", &child)] {
            let left = entries_of_area(s, thp, 512, ty).len() + entries_of_area(s, base, SMALL, ty).len();
            let stats = s.check().map_err(|e| format!("{who} after swapoff: {e}"))?;
            if left != 0 || stats.nr_swap_entries != 0 {
                return Err(format!(
                    "{who}: {left} entries of the area, {} swap entries left",
                    stats.nr_swap_entries
                ));
            }
            check_pattern(s, thp, 0..512, 0x61)?.map_err(|e| format!("{who}, the THP: {e}"))?;
            check_pattern(s, base, 0..SMALL, 0x62)?.map_err(|e| format!("{who}, the small pages: {e}"))?;
        }
        if PSWPIN.load(Ordering::Relaxed) == in0 {
            return Err(String::from("swapoff read nothing: its pages were all back already"));
        }
        // Both sides still write their own copies.
        write_pattern(&child, base, 0..SMALL, 0x63)?;
        check_pattern(&space, base, 0..SMALL, 0x62)??;
        check_pattern(&child, base, 0..SMALL, 0x63)??;
        space.check().map(drop)
    })();
    result.and(scratch_cleanup(ty))
}

/// swapoff while tasks on every CPU fault their pages in, write them and
/// page them out again (`MADV_PAGEOUT`): swapoff finishes, no page of the
/// area is left, every task's last write is there, and the checker is
/// clean. Pages paged out after swapoff stopped allocation go to another
/// area (the swap disk) or stay in memory.
fn swapoff_while_tasks_fault_and_page_out(_: &TestEnv<'_>) -> Result<(), String> {
    let ty = scratch_swapon(b"busy", None, false)?;
    let result = busy_swapoff(ty);
    result.and(scratch_cleanup(ty))
}

fn busy_swapoff(ty: SwapType) -> Result<(), String> {
    const TASKS: u64 = 4;
    const PER: u64 = 96;
    let space = AddressSpace::new()?;
    let base = space.mmap(TASKS * PER * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space
        .madvise(VirtAddr::new(base), TASKS * PER * 4096, Advice::NoHugePage)
        .map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..TASKS * PER, 0)?;
    pageout(&space, base, TASKS * PER * 4096)?;
    if entries_of_area(&space, base, TASKS * PER, ty).is_empty() {
        return Err(String::from("nothing went out to the scratch area"));
    }
    let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (stop, rounds, own) = (stop.clone(), rounds.clone(), space.clone());
        tasks.push(space.spawn(Some(t as usize % sched::nr_cpus_online()), "swapoff-busy", move || {
            let first = t * PER;
            let mut version = 0;
            loop {
                for p in first..first + PER {
                    for w in [0, 200, 511] {
                        let got = uaccess::read_u64(base + p * 4096 + w * 8);
                        if got != word(p, w, version) {
                            return Err(format!("task {t}: page {p} word {w} is not version {version}"));
                        }
                    }
                }
                if stop.load(Ordering::Acquire) {
                    return Ok(version);
                }
                version += 1;
                for p in first..first + PER {
                    for w in 0..WORDS {
                        uaccess::write_u64(base + p * 4096 + w * 8, word(p, w, version));
                    }
                }
                // Out again, half of the range at a time.
                let half = (version % 2) * PER / 2;
                pageout(&own, base + (first + half) * 4096, PER / 2 * 4096)?;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    // Let them go round a few times, then swapoff under them.
    let start = sched::ticks();
    while rounds.load(Ordering::Relaxed) < 2 * TASKS
        && sched::ticks() - start < 10 * u64::from(sched::TICK_HZ)
    {
        sched::yield_now();
    }
    let off = swapoff(ty).map_err(String::from);
    let during = rounds.load(Ordering::Relaxed);
    stop.store(true, Ordering::Release);
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.join()??);
    }
    off?;
    for (t, &v) in versions.iter().enumerate() {
        let first = t as u64 * PER;
        check_pattern(&space, base, first..first + PER, v)?.map_err(|e| format!("task {t}'s pages: {e}"))?;
    }
    let left = entries_of_area(&space, base, TASKS * PER, ty);
    if !left.is_empty() || area(ty).is_some() {
        return Err(format!(
            "after swapoff: {} entries of the area, area on: {}",
            left.len(),
            area(ty).is_some()
        ));
    }
    crate::println!("swapoff under load: {during} rounds of fault, write and pageout by {TASKS} tasks");
    space.check().map(drop)
}

/// swapoff of an area whose disk fails some reads (the faulty disk): it
/// stops at the unreadable page with a message, and leaves the area on
/// with allocation stopped; every other page still reads back (from the
/// area or already brought back), only a task touching the unreadable
/// page ends, the checker is clean, and once that page is unmapped the
/// next swapoff finishes.
fn swapoff_with_read_errors_ends_only_the_reader(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = crate::tests::kit::scratch_disk()?;
    let (_, bad_read) =
        crate::tests::kit::faulty_ranges(disk.serial()).ok_or("faulty disk without ranges")?;
    let header =
        mm::swap::header::format(disk.capacity_pages(), &[], b"faulty-off").map_err(|e| format!("{e}"))?;
    write_header(disk, &header)?;
    let ty = swapon(disk)?;
    prefer(Some(ty));
    let result = swapoff_with_errors_on(ty, bad_read);
    result.and(scratch_cleanup(ty))
}

fn swapoff_with_errors_on(ty: SwapType, bad_read: core::ops::Range<u64>) -> Result<(), String> {
    let pages = bad_read.end + 16;
    let space = AddressSpace::new()?;
    let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), pages * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    write_pattern(&space, base, 0..pages, 0x81)?;
    pageout(&space, base, pages * 4096)?;
    // Out of the swap cache, so that swapoff must read them.
    crate::vm::reclaim::shrink(4 * pages as usize);
    let unreadable: Vec<u64> = entries_of_area(&space, base, pages, ty)
        .into_iter()
        .filter(|(_, e)| bad_read.contains(&e.offset()))
        .map(|(p, _)| p)
        .collect();
    if unreadable.is_empty() {
        return Err(format!("no page went out to the unreadable slots {bad_read:?}"));
    }
    match swapoff(ty) {
        Err(e) if format!("{e}").contains("read") => {}
        other => return Err(format!("swapoff over unreadable slots: {other:?}")),
    }
    let dev = area(ty).ok_or("the area went off though a page could not be read")?;
    if !dev.area.alloc_stopped() {
        return Err(String::from("the area still allocates after a failed swapoff"));
    }
    drop(dev);
    space.check().map_err(|e| format!("after the failed swapoff: {e}"))?;
    // The page swapoff stopped at: the first that still holds an
    // unreadable slot. `shrink` does not promise to have taken every page
    // out of the swap cache (reclaim may keep one, e.g. while a write or a
    // reference holds it), and swapoff maps such a page back from the
    // cache without reading it; so it is not always `unreadable[0]`.
    let unreadable: Vec<u64> = entries_of_area(&space, base, pages, ty)
        .into_iter()
        .filter(|(_, e)| bad_read.contains(&e.offset()))
        .map(|(p, _)| p)
        .collect();
    let Some(&bad) = unreadable.first() else {
        return Err(String::from("swapoff failed on a read, but no page holds an unreadable slot"));
    };
    // The pages before the bad one are back (the walk goes in address
    // order); the ones after it still out, left to the second swapoff.
    check_pattern(&space, base, 0..bad, 0x81)?.map_err(|e| format!("after the failed swapoff: {e}"))?;
    let still_out = entries_of_area(&space, base, pages, ty).len();
    if still_out <= unreadable.len() {
        return Err(format!("only {still_out} pages still out after the failed swapoff"));
    }
    let killed =
        space.spawn(None, "reader", move || uaccess::read_u8(base + bad * 4096))?.join().map_err(|k| k.why);
    match killed {
        Err(why) if why.contains("swap read error") => {}
        other => return Err(format!("reading an unreadable page: {other:?}")),
    }
    space.check().map_err(|e| format!("after the read error: {e}"))?;
    for &p in &unreadable {
        space.munmap(VirtAddr::new(base + p * 4096), 4096).map_err(|e| format!("munmap: {e:?}"))?;
    }
    prefer(None);
    let in0 = PSWPIN.load(Ordering::Relaxed);
    swapoff(ty)?;
    if PSWPIN.load(Ordering::Relaxed) == in0 {
        return Err(String::from("the second swapoff read nothing"));
    }
    for p in (0..pages).filter(|p| !unreadable.contains(p)) {
        check_pattern(&space, base, p..p + 1, 0x81)?.map_err(|e| format!("after the second swapoff: {e}"))?;
    }
    space.check().map(drop)
}

/// The boot demo with a swap area too small to take its overflow (the
/// 10-page area `mkswap` makes at least) is skipped with a message, a
/// clean result, rather than run out of memory; with the default disks
/// it runs and overflows into swap.
fn the_boot_demo_is_skipped_with_a_tiny_swap(_: &TestEnv<'_>) -> Result<(), String> {
    let free = memory::nr_free_frames();
    match crate::demo::plan(free, 9) {
        Err(why) if why.contains("too few") => {}
        other => return Err(format!("demo plan with 9 free slots: {other:?}")),
    }
    // 512 MiB of RAM and a 256 MiB disk, as `qemu boot` has.
    let (ram, slots) = (120_000, 65_535);
    match crate::demo::plan(ram, slots) {
        Ok(pages) if pages > ram && pages - ram <= slots / 2 => Ok(()),
        other => Err(format!("demo plan with {ram} free frames and {slots} slots: {other:?}")),
    }
}
