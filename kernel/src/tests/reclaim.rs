//! In-guest tests moved from vm/reclaim.rs.

use crate::arch::prelude::*;
use crate::memory;
use crate::task::sched;
use crate::vm::reclaim::*;
use crate::vm::swap::{self};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use mm::PhysAddr;

use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;

pub(crate) const TESTS: &[Test] =
    register!["reclaim": kswapd_wakes_at_low_and_sleeps_above, madv_cold_deactivates_and_keeps_the_data];

fn wakeups() -> u64 {
    NR_KSWAPD_WAKEUPS.load(Ordering::SeqCst)
}

/// Allocates and frees `nr` frames one at a time, then naps 50 ms: kswapd
/// must not have been woken (free memory stays above `low` throughout).
fn stays_asleep(nr: usize, when: &str) -> Result<(), String> {
    let before = wakeups();
    let mut held = Vec::new();
    for _ in 0..nr {
        held.push(memory::alloc_frames(0).map_err(|e| format!("{when}: alloc: {e:?}"))?);
    }
    for pa in held {
        memory::free_frames(pa, 0);
    }
    sched::sleep_ms(50);
    let after = wakeups();
    if after != before || KSWAPD_WANTED.load(Ordering::SeqCst) != 0 {
        return Err(format!(
            "{when}: kswapd was woken ({before} -> {after} wake-ups) while free memory stayed above low \
             ({} free, low {})",
            memory::nr_free_frames(),
            memory::frame_allocator().watermarks().low
        ));
    }
    Ok(())
}

/// kswapd stays parked while free memory is above `low`; raw allocations
/// ("ballast", which reclaim cannot free) that take free memory just below
/// `low` wake it, and it alone (no direct reclaim) swaps out anonymous
/// pages until free memory is at `high` again; then it parks again.
fn kswapd_wakes_at_low_and_sleeps_above(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::vm::space::{AddressSpace, Advice};
    use mm::vma::VmaProt;
    if swap::alloc_area().is_none() {
        return Err("no swap area: attach a swap disk (xtask does unless --swap 0)".into());
    }
    // kswapd records its task when it first runs.
    for _ in 0..100 {
        if KSWAPD_TASK.get().is_some() {
            break;
        }
        sched::sleep_ms(10);
    }
    if KSWAPD_TASK.get().is_none() {
        return Err("kswapd is not running".into());
    }
    let frames = memory::frame_allocator();
    let wm = frames.watermarks();
    quiesce();
    if frames.nr_free_pages() < wm.high + 4096 {
        return Err(format!("too little free memory to start: {} pages", frames.nr_free_pages()));
    }
    stays_asleep(256, "before the fill")?;

    // Something for kswapd to reclaim: anonymous 4 KiB pages, a few times
    // what it takes to go from `low` to `high`.
    let pages = 4 * (wm.high - wm.low) + 256;
    let space = AddressSpace::new()?;
    let rw = VmaProt { read: true, write: true, exec: false };
    let base = space.mmap(pages * 4096, 4096, rw).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(mm::VirtAddr::new(base), pages * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    space
        .spawn(None, "kswapd-test", move || {
            (0..pages).for_each(|p| crate::vm::uaccess::write_u8(base + p * 4096, 1))
        })?
        .join()?;

    // Ballast down to just below `low`: big blocks well above it, then
    // single frames, stopping at the first allocation that crosses it.
    let (wake0, direct0, reclaimed0) =
        (wakeups(), NR_DIRECT_RECLAIMS.load(Ordering::SeqCst), NR_RECLAIMED.load(Ordering::SeqCst));
    let mut ballast: Vec<(PhysAddr, u8)> = Vec::new();
    let result = (|| -> Result<(), String> {
        while frames.nr_free_pages() > wm.low + 2048 {
            ballast.push((memory::alloc_frames(9).map_err(|e| format!("ballast: {e:?}"))?, 9));
        }
        while frames.nr_free_pages() >= wm.low {
            ballast.push((memory::alloc_frames(0).map_err(|e| format!("ballast: {e:?}"))?, 0));
        }
        // kswapd's pass: up to 5 s for free memory back at `high` and
        // kswapd parked again.
        let start = Arch::now_ns();
        loop {
            let done = frames.nr_free_pages() >= wm.high
                && !KSWAPD_BUSY.load(Ordering::SeqCst)
                && KSWAPD_WANTED.load(Ordering::SeqCst) == 0;
            if done {
                break;
            }
            if Arch::now_ns() - start > 5_000_000_000 {
                return Err(format!(
                    "5 s after free memory fell below low ({}): {} pages free (high {}), {} kswapd \
                     wake-ups, {} pages reclaimed",
                    wm.low,
                    frames.nr_free_pages(),
                    wm.high,
                    wakeups() - wake0,
                    NR_RECLAIMED.load(Ordering::SeqCst) - reclaimed0
                ));
            }
            sched::sleep_ms(10);
        }
        let (woken, direct, reclaimed) = (
            wakeups() - wake0,
            NR_DIRECT_RECLAIMS.load(Ordering::SeqCst) - direct0,
            NR_RECLAIMED.load(Ordering::SeqCst) - reclaimed0,
        );
        if woken == 0 || direct != 0 || reclaimed == 0 {
            return Err(format!(
                "free memory is back at high, but with {woken} kswapd wake-ups, {direct} direct \
                 reclaims and {reclaimed} pages reclaimed (want >0, 0, >0)"
            ));
        }
        // Above `high` again: kswapd sleeps through allocations that stay
        // above `low`.
        stays_asleep(16, "after kswapd's pass")
    })();
    for (pa, order) in ballast {
        memory::free_frames(pa, order);
    }
    drop(space);
    result
}

/// `MADV_COLD` (`Advice::Cold`): pages mapped, written twice and active
/// (put on the active list with `Referenced` set, as reclaim's second
/// chance does to a folio used again: nothing in the kernel promotes a
/// folio on a touch alone yet) are on the inactive list without
/// `Referenced` and with their young bits clear after the advice; nothing
/// is written to swap; the next read finds the data and marks the entries
/// young again.
fn madv_cold_deactivates_and_keeps_the_data(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::demo::{check_pattern, write_pattern};
    use crate::vm::space::{AddressSpace, Advice};
    use mm::lru::LruList;
    use mm::page::PageFlag;
    use mm::vma::VmaProt;
    use mm::VirtAddr;
    const PAGES: u64 = 16;
    let lru = lru().ok_or("no LRU lists")?;
    let memmap = memory::frame_allocator().memmap();
    let space = AddressSpace::new()?;
    let rw = VmaProt { read: true, write: true, exec: false };
    let base = space.mmap(PAGES * 4096, 4096, rw).map_err(|e| format!("mmap: {e:?}"))?;
    space.madvise(base, PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    let base = base.as_u64();
    write_pattern(&space, base, 0..PAGES, 0xc01d)?;
    write_pattern(&space, base, 0..PAGES, 0xc01d)?;
    let folio = |p: u64| -> Result<mm::folio::Folio<'static>, String> {
        let (pfn, _, _) = space.folio_at(VirtAddr::new(base + p * 4096))?;
        mm::folio::folio_of(memmap, pfn).ok_or(format!("page {p}: no folio"))
    };
    let young = |p: u64| {
        space.dump(VirtAddr::new(base + p * 4096), VirtAddr::new(base + (p + 1) * 4096)).contains(" A -> ")
    };
    for p in 0..PAGES {
        let f = folio(p)?;
        // kswapd may hold it for a moment; memory is plentiful, so it
        // comes back.
        let mut from = lru.isolate_folio(f);
        for _ in 0..100 {
            if from.is_some() {
                break;
            }
            sched::sleep_ms(1);
            from = lru.isolate_folio(f);
        }
        from.ok_or(format!("page {p}: not on the LRU lists"))?;
        lru.putback(f, LruList::Active);
        lru.mark_accessed(f);
        // The isolation's reference; the mapping keeps another.
        if f.put() {
            crate::vm::folios::free_folio(f);
        }
        if !young(p) {
            return Err(format!("page {p}: not young after the writes"));
        }
    }
    let swapped = |p: u64| space.swap_entry_at(VirtAddr::new(base + p * 4096)).is_some();
    space
        .madvise(VirtAddr::new(base), PAGES * 4096, Advice::Cold)
        .map_err(|e| format!("madvise(COLD): {e:?}"))?;
    for p in 0..PAGES {
        let f = folio(p).map_err(|e| format!("after COLD (nothing may be paged out): {e}"))?;
        let list = lru.list_of(f.pfn());
        if list != Some(LruList::Inactive) || f.test_flag(PageFlag::Referenced) || young(p) || swapped(p) {
            return Err(format!(
                "page {p} after COLD: on {list:?}, referenced {}, young {}: want inactive, neither",
                f.test_flag(PageFlag::Referenced),
                young(p)
            ));
        }
    }
    check_pattern(&space, base, 0..PAGES, 0xc01d)??;
    if let Some(p) = (0..PAGES).find(|&p| !young(p)) {
        return Err(format!("page {p}: not young again after the read"));
    }
    space.check_at_rest().map(drop).map_err(|e| format!("after COLD: {e}"))
}
