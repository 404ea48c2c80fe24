//! The boot workload: what `cargo xtask qemu boot` shows of swap.
//!
//! [`run`] fills more anonymous memory than is free with a pattern in an
//! address space of its own, reads every word back, and prints how much
//! went to swap and came back. It is sized from free memory at the moment
//! it starts, so that the default boot (512 MiB of RAM, a 256 MiB swap
//! disk) really swaps ([`plan`]); with a swap area too small to take the
//! overflow it says so and is skipped, which is a clean result. The
//! kernel argument `swap_demo=0` turns it off.
//!
//! The pattern ([`word`], [`write_pattern`], [`check_pattern`]) is also
//! what the swap tests write: every word of every page differs, so a page
//! read from the wrong slot, a stale copy or a zero page is caught.

use crate::memory;
use crate::task::sched;
use crate::vm::space::AddressSpace;
use crate::vm::swap::{alloc_area, totals, PSWPIN, PSWPOUT};
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use mm::vma::VmaProt;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
/// 8-byte words in a page.
pub const WORDS: u64 = 512;

/// The word `w` of page `p` in a pattern of version `tag`: every word of
/// every page differs, so a page read from the wrong slot, a stale copy or
/// a zero page is caught.
pub fn word(p: u64, w: u64, tag: u64) -> u64 {
    (p << 16 | w).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag
}

pub fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "swap-test", f)?.join()?)
}

/// Writes the pattern `tag` over pages `pages` of the area at `base`.
pub fn write_pattern(
    space: &Arc<AddressSpace>,
    base: u64,
    pages: core::ops::Range<u64>,
    tag: u64,
) -> Result<(), String> {
    run_in(space, move || {
        for p in pages.clone() {
            for w in 0..WORDS {
                uaccess::write_u64(base + p * 4096 + w * 8, word(p, w, tag));
            }
        }
    })
}

/// The first page in `pages` whose contents are not the pattern `tag`.
pub fn check_pattern(
    space: &Arc<AddressSpace>,
    base: u64,
    pages: core::ops::Range<u64>,
    tag: u64,
) -> Result<Result<(), String>, String> {
    run_in(space, move || {
        for p in pages.clone() {
            for w in 0..WORDS {
                let got = uaccess::read_u64(base + p * 4096 + w * 8);
                if got != word(p, w, tag) {
                    return Err(format!("page {p} word {w}: {got:#x}, expected {:#x}", word(p, w, tag)));
                }
            }
        }
        Ok(())
    })
}

/// (kswapd wake-ups, direct reclaims) so far.
fn reclaim_counts() -> (u64, u64) {
    (
        crate::vm::reclaim::NR_KSWAPD_WAKEUPS.load(Ordering::Relaxed),
        crate::vm::reclaim::NR_DIRECT_RECLAIMS.load(Ordering::Relaxed),
    )
}

/// How many pages the demo writes with `free` frames and `free_slots` swap
/// slots free: more than is free, by a quarter of free memory or by half of
/// what swap has free, whichever is less. The overflow must go to swap and
/// fit there with room to spare, for more than the overflow goes out: the
/// frames the writer cannot have (the watermarks, its page tables, other
/// tasks) are taken from it too, about `free / 64 + 1024` pages. A swap
/// area with less than twice that free (a 10-page area made by `mkswap`,
/// say) could not take it: `Err` says why the demo is skipped then.
pub fn plan(free: u64, free_slots: u64) -> Result<u64, String> {
    let reserve = free / 64 + 1024;
    let room = free_slots / 2;
    if room < reserve {
        return Err(format!(
            "{free_slots} swap slots free ({} MiB), too few to take the overflow of {} MiB of free memory: \
             it needs {} MiB",
            free_slots / 256,
            free / 256,
            (2 * reserve).div_ceil(256)
        ));
    }
    Ok(free + (free / 4).min(room))
}

/// The boot workload (`cargo xtask qemu boot`, kernel argument
/// `swap_demo=0` turns it off): fills a quarter more memory than is free
/// with a pattern, reads every word back, and prints how much went to
/// swap and came back. Returns false when a word came back wrong or the
/// task was ended.
pub fn run() -> bool {
    if alloc_area().is_none() {
        crate::println!("swap demo: skipped (no swap area)");
        return true;
    }
    let free = memory::nr_free_frames();
    let pages = match plan(free, totals().0) {
        Ok(pages) => pages,
        Err(why) => {
            crate::println!("swap demo: skipped ({why})");
            return true;
        }
    };
    let (out0, in0) = (PSWPOUT.load(Ordering::Relaxed), PSWPIN.load(Ordering::Relaxed));
    let (wake0, direct0) = reclaim_counts();
    let start = sched::ticks();
    let result = (|| -> Result<(), String> {
        let space = AddressSpace::new()?;
        let base = space.mmap(pages * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        write_pattern(&space, base, 0..pages, 0xd3)?;
        check_pattern(&space, base, 0..pages, 0xd3)??;
        space.check().map(drop)
    })();
    let (out, inn) = (PSWPOUT.load(Ordering::Relaxed) - out0, PSWPIN.load(Ordering::Relaxed) - in0);
    let (wake, direct) = reclaim_counts();
    let secs = (sched::ticks() - start) as f64 / sched::TICK_HZ as f64;
    crate::println!(
        "swap demo: {} MiB written and read back with {} MiB free in {secs:.1} s: {} MiB went to swap, \
         {} MiB came back",
        pages / 256,
        free / 256,
        out / 256,
        inn / 256
    );
    crate::println!(
        "swap demo: reclaim: kswapd woken {} times, direct reclaim {} times; heap grew by {} MiB at most \
         beyond its {} MiB",
        wake - wake0,
        direct - direct0,
        memory::heap::peak_grown_frames() / 256,
        memory::BOOT_HEAP_SIZE >> 20
    );
    match result {
        Ok(()) => {
            crate::println!("swap demo: every word came back right");
            true
        }
        Err(e) => {
            crate::println!("swap demo: FAILED: {e}");
            false
        }
    }
}
