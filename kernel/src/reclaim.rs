//! Reclaim: the anonymous LRU lists (`mm::lru`) of the running kernel,
//! shrinking them to swap, the kswapd task, direct reclaim, and
//! `MADV_PAGEOUT`.
//!
//! ## Shrinking one folio ([`shrink_folio`], mm-reference §6)
//!
//! For a folio isolated with a reference (from the inactive tail, or by
//! `MADV_PAGEOUT`):
//! 1. lock it (a locked folio is somebody else's business: keep it);
//! 2. keep it, on the active list, when it may be pinned;
//! 3. give it swap slots and put it into the swap cache when it has none
//!    (`mm::swap::cache::add_to_swap`); a large folio needs a run of 512
//!    slots. When the area has none, the folio is split into order-0 folios
//!    (`crate::vm::split_isolated_folio`: it must be mapped by one space of
//!    its family, and not pinned or referenced by anyone else), page 0 goes
//!    on here as an order-0 folio, and the other pieces, isolated with a
//!    reference each, are shrunk next by the same caller ([`shrink_list`]);
//! 4. unmap it from every space of its fork family, with all their locks
//!    held (`crate::vm::unmap_folio_to_swap`, `mm::swap::unmap`): wholly
//!    or not at all;
//! 5. write it, unless no page-table entry holds any of its slots any
//!    more; the folio stays locked and in the swap cache meanwhile, so a
//!    fault on it finds it and waits. A failed write keeps it in memory (in
//!    the cache, unmapped) on the inactive list: it is written again on a
//!    later pass;
//! 6. free it if the reference count is exactly ours and the cache's
//!    (`Folio::try_freeze`): anyone else's reference (a fault that found
//!    it in the cache, a `get_user_pages` hold) keeps it.
//!
//! ## kswapd and direct reclaim
//!
//! kswapd is a kernel task that sleeps a tick at a time and, whenever free
//! memory is below the `low` watermark, shrinks until it is above `high`.
//! An allocation for a fault that fails reclaims directly
//! ([`direct_reclaim`]) and the fault is retried; when reclaim frees
//! nothing the faulting task is ended (out of memory), never the kernel.
//!
//! ## Locks
//!
//! The LRU lists' lock is a leaf taken with interrupts off (inside
//! `mm::lru`). Shrinking takes, in order: the folio lock, then the address
//! spaces' locks (to unmap), and sleeps for the disk with only the folio
//! lock held.

use crate::memory;
use crate::sched;
use crate::swap::{self, SwapDevice};
use crate::sync::IrqSpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::folio::Folio;
use mm::lru::{LruList, LruLists};
use mm::page::PageFlag;
use mm::swap::cache::{add_to_swap, delete_from_swap_cache, folio_entry, slots_unused, AddError};
use mm::swap::swapin::SwapBackend;
use mm::PhysAddr;

static LRU: spin::Once<LruLists> = spin::Once::new();

/// Cache folios an unmap or a freed entry could not take out of the swap
/// cache at once because somebody held their lock (PFNs, each with a
/// reference): kswapd (or [`drain_deferred`]) finishes the job. Room is
/// reserved at [`init`]; when it is full the folio waits for reclaim.
static DEFERRED: IrqSpinLock<Vec<u64>> = IrqSpinLock::new(Vec::new());
const DEFERRED_ROOM: usize = 4096;

/// Folios reclaim freed (pages).
pub static NR_RECLAIMED: AtomicU64 = AtomicU64::new(0);
/// Faults that ended their task after reclaim freed nothing.
pub static NR_OOM_KILLS: AtomicU64 = AtomicU64::new(0);
/// kswapd is between two naps (shrinking or draining).
static KSWAPD_BUSY: AtomicBool = AtomicBool::new(false);
/// kswapd has started.
static KSWAPD_UP: AtomicBool = AtomicBool::new(false);

/// The lists. Before [`init`] nothing is added.
pub fn lru() -> Option<&'static LruLists> {
    LRU.get()
}

/// Makes the lists (boot, after `memory::init`).
pub fn init() {
    // `mm`'s own locks (these lists, each swap area) are held with
    // interrupts off, as every spin lock a task and a fault may share.
    mm::sync::set_irq_hooks(crate::arch::irq::save_and_disable, crate::arch::irq::restore);
    DEFERRED.lock().reserve(DEFERRED_ROOM);
    let lists = LRU.call_once(|| LruLists::new(memory::frame_allocator().memmap()));
    mm::lru::register(lists);
}

/// Puts a newly mapped anonymous folio on the lists.
pub fn lru_add(folio: Folio<'_>) {
    if let Some(lru) = lru() {
        crate::sync::without_interrupts(|| lru.add(folio));
    }
}

/// Takes a folio whose last reference went off the lists (before it is
/// freed).
pub fn lru_remove(folio: Folio<'_>) {
    if let Some(lru) = lru() {
        crate::sync::without_interrupts(|| lru.remove(folio));
    }
}

/// What [`shrink_folio`] did with a folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shrunk {
    /// Written (if needed) and freed: this many pages.
    Freed(usize),
    /// Kept: back on a list.
    Kept(&'static str),
}

fn putback(folio: Folio<'static>, list: LruList) {
    if let Some(lru) = lru() {
        crate::sync::without_interrupts(|| lru.putback(folio, list));
    }
}

/// Shrinks the isolated folio `folio` (module doc) and consumes the
/// reference the caller took with it. A huge folio that had to be split
/// (no free run of 512 slots) leaves its other pieces in `split`, each
/// isolated with a reference, for the caller to shrink in turn.
pub fn shrink_folio(folio: Folio<'static>, split: &mut Vec<Folio<'static>>) -> Shrunk {
    let result = shrink_locked(folio, split);
    if let Shrunk::Kept(_) = result {
        swap::put(folio);
    }
    result
}

/// Shrinks every folio of `folios` (isolated, each with a reference) and
/// the pieces of those that had to be split. Returns the pages freed.
fn shrink_list(folios: Vec<Folio<'static>>) -> usize {
    let mut freed = 0;
    let mut todo = folios;
    while !todo.is_empty() {
        let mut split = Vec::new();
        for folio in todo {
            if let Shrunk::Freed(n) = shrink_folio(folio, &mut split) {
                freed += n;
            }
        }
        todo = split;
    }
    freed
}

/// Huge folios reclaim split because no run of 512 slots was free.
pub static NR_SPLIT_FOR_SWAP: AtomicU64 = AtomicU64::new(0);

fn keep(folio: Folio<'static>, list: LruList, why: &'static str) -> Shrunk {
    folio.unlock();
    putback(folio, list);
    Shrunk::Kept(why)
}

fn shrink_locked(folio: Folio<'static>, split: &mut Vec<Folio<'static>>) -> Shrunk {
    if !folio.try_lock() {
        putback(folio, LruList::Inactive);
        return Shrunk::Kept("locked");
    }
    if folio.maybe_pinned() {
        return keep(folio, LruList::Active, "may be pinned");
    }
    let dev: Arc<SwapDevice> = match folio_entry(&folio) {
        Some(entry) => match swap::area(entry.ty()) {
            Some(d) => d,
            None => return keep(folio, LruList::Active, "its swap area is gone"),
        },
        None => {
            let Some(d) = swap::alloc_area() else { return keep(folio, LruList::Active, "no swap") };
            let mut added = add_to_swap(&d.area, &folio);
            if let (Err(AddError::NoSpace { .. }), true) = (&added, folio.is_large()) {
                // No run for it whole: split it and swap its pages out one
                // by one (this one now, the others by the caller).
                match crate::vm::split_isolated_folio(&folio) {
                    Ok(pieces) => {
                        NR_SPLIT_FOR_SWAP.fetch_add(1, Ordering::Relaxed);
                        split.extend(pieces);
                        added = add_to_swap(&d.area, &folio);
                    }
                    Err(_) => return keep(folio, LruList::Active, "no run of slots, and could not split"),
                }
            }
            match added {
                Ok(_) => d,
                Err(AddError::NoSpace { .. }) => return keep(folio, LruList::Active, "swap full"),
                Err(AddError::Cache) => return keep(folio, LruList::Active, "swap cache refused"),
            }
        }
    };
    if folio.total_mapcount() > 0 {
        // Refused (a pin, a full count, no memory for a PMD split): kept.
        if crate::vm::unmap_folio_to_swap(&folio, &dev.area).is_err() {
            return keep(folio, LruList::Active, "could not unmap");
        }
        if folio.total_mapcount() > 0 {
            return keep(folio, LruList::Active, "still mapped");
        }
    }
    let nr = folio.nr_pages();
    if !slots_unused(&dev.area, &folio) {
        let first = folio_entry(&folio).expect("in the swap cache");
        folio.set_flag(PageFlag::Writeback);
        let written = crate::swap::Io(&dev).write(first, PhysAddr::new(folio.pfn() << 12), nr);
        folio.clear_flag(PageFlag::Writeback);
        if written.is_err() {
            return keep(folio, LruList::Inactive, "write failed");
        }
    }
    // Anyone else's reference keeps the folio. A lookup that raced us
    // (an munmap freeing the entry, a fault whose entry then changed)
    // drops its reference at once: for a folio nobody can map again
    // (unmapped, no entry holds its slots), wait for that a little rather
    // than leave it in the cache for the next pass.
    let mut tries = 0;
    while !folio.try_freeze(1 + nr as i32) {
        let orphan = folio.total_mapcount() == 0 && slots_unused(&dev.area, &folio);
        if !orphan || tries == 100 {
            return keep(folio, LruList::Inactive, "in use");
        }
        tries += 1;
        sched::yield_now();
    }
    // Frozen: nobody can take a reference; the cache's are gone with the
    // freeze (they were counted in it).
    let _ = delete_from_swap_cache(&dev.area, &folio);
    folio.clear_flag(PageFlag::Dirty);
    folio.unlock();
    memory::free_folio(folio);
    NR_RECLAIMED.fetch_add(nr as u64, Ordering::Relaxed);
    Shrunk::Freed(nr)
}

/// Frees up to about `nr_pages` pages from the inactive tail (balancing
/// the lists first). Task context, interrupts on, no lock held. Returns
/// the pages freed.
pub fn shrink(nr_pages: usize) -> usize {
    let Some(lru) = lru() else { return 0 };
    if !swap::any_area() {
        return 0;
    }
    let mut freed = 0;
    let mut scanned = 0;
    let limit = (lru.nr_inactive() + lru.nr_active()) as usize + 64;
    while freed < nr_pages && scanned < limit {
        crate::sync::without_interrupts(|| {
            if lru.inactive_is_low() {
                lru.balance(64);
            }
        });
        let scan = crate::sync::without_interrupts(|| lru.isolate(32));
        if scan.nr_scanned == 0 {
            break;
        }
        scanned += scan.nr_scanned;
        freed += shrink_list(scan.isolated);
    }
    freed
}

/// Reclaim for an allocation that failed: frees up to `nr_pages` pages
/// now, in the caller's task.
pub fn direct_reclaim(nr_pages: usize) -> usize {
    shrink(nr_pages)
}

/// kswapd's loop (module doc).
fn kswapd() {
    loop {
        let frames = memory::frame_allocator();
        KSWAPD_BUSY.store(true, Ordering::SeqCst);
        if frames.below_low() && swap::any_area() {
            let high = frames.watermarks().high;
            while frames.nr_free_pages() < high {
                if shrink(64) == 0 {
                    break;
                }
            }
        }
        drain_deferred();
        KSWAPD_BUSY.store(false, Ordering::SeqCst);
        sched::sleep_ms(2);
    }
}

/// Hands the unmapped cache folio `folio` (the caller holds a reference)
/// to kswapd, which takes it out of the swap cache once it gets its lock
/// (the caller could not take it without waiting).
pub fn defer(folio: Folio<'static>) {
    folio.get();
    let queued = {
        let mut deferred = DEFERRED.lock();
        let room = deferred.len() < deferred.capacity();
        if room {
            deferred.push(folio.pfn());
        }
        room
    };
    if !queued {
        swap::put(folio); // reclaim frees it when it finds it
    }
}

/// Finishes the deferred work of [`defer`] now, in this task (kswapd's
/// loop; the test harness before it counts frames).
pub fn drain_deferred() {
    let memmap = memory::frame_allocator().memmap();
    while let Some(pfn) = DEFERRED.lock().pop() {
        let folio = mm::folio::folio_of(memmap, pfn).expect("a deferred folio is held by its reference");
        while !folio.try_lock() {
            sched::yield_now();
        }
        if let Some(dev) = mm::swap::cache::folio_entry(&folio).and_then(|e| swap::area(e.ty())) {
            swap::free_if_unused_locked(&dev, folio);
        }
        folio.unlock();
        swap::put(folio);
    }
}

/// Starts kswapd (boot, once the scheduler runs).
pub fn start_kswapd() {
    if KSWAPD_UP.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Err(e) = sched::spawn("kswapd", kswapd) {
        crate::println!("reclaim: kswapd not started: {e:?}");
    }
}

/// `MADV_PAGEOUT` for the folios `folios` (each with a reference the
/// caller took, found mapped by one space only): takes each off the LRU
/// lists and shrinks it now. A folio that is off the lists already is
/// being reclaimed (or paged out) by somebody else: it is left to them, not
/// split or unmapped a second time (the fix of seed 002). Returns the
/// pages freed.
pub fn pageout(folios: alloc::vec::Vec<Folio<'static>>) -> usize {
    let mut mine = Vec::with_capacity(folios.len());
    for folio in folios {
        let isolated = lru().is_some_and(|l| crate::sync::without_interrupts(|| l.remove(folio)));
        if isolated {
            mine.push(folio);
        } else {
            swap::put(folio);
        }
    }
    shrink_list(mine)
}

/// Waits (up to a second) until kswapd is between passes, then finishes
/// deferred work: for the test harness, whose heap and frame counts must
/// not catch reclaim half-way through.
pub fn quiesce() {
    for _ in 0..500 {
        if !KSWAPD_BUSY.load(Ordering::SeqCst) {
            break;
        }
        sched::sleep_ms(2);
    }
    drain_deferred();
}
