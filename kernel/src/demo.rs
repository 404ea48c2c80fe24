//! The boot workload: what `cargo xtask qemu boot` shows of swap.
//!
//! [`run`] fills more anonymous memory than is free with a pattern in an
//! address space of its own, reads every word back, and prints how much
//! went to swap and came back. It is sized from free memory at the moment
//! it starts, so that the default boot (512 MiB of RAM, a 256 MiB swap
//! disk) really swaps. The kernel argument `swap_demo=0` turns it off.
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
    space.spawn(None, "swap-test", f)?.join_or_killed()
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
    // More than is free, by a quarter of free memory or by half of what
    // the swap area has free, whichever is less: the overflow must go to
    // swap, and must fit there with room to spare (a kernel task's pages,
    // the page tables and the watermarks take frames too).
    let free = memory::nr_free_frames();
    let overflow = (free / 4).min(totals().0 / 2);
    let pages = free + overflow;
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
