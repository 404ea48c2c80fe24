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
//!    (`crate::vm::space::split_isolated_folio`: it must be mapped by one space of
//!    its family, and not pinned or referenced by anyone else), page 0 goes
//!    on here as an order-0 folio, and the other pieces, isolated with a
//!    reference each, are shrunk next by the same caller ([`shrink_list`]);
//! 4. unmap it from every space of its fork family, with all their locks
//!    held (`crate::vm::space::unmap_folio_to_swap`, `mm::swap::unmap`): wholly
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
//! kswapd is a kernel task that sleeps (parked) until it is woken, and
//! then, if it was woken for memory and free memory is below the `high`
//! watermark, shrinks until it is above `high`; then it finishes deferred
//! swap-cache work ([`drain_deferred`]) and parks again. It does not poll:
//! while memory is above `low` and nothing is deferred it stays parked.
//! An allocation for a fault that fails anyway reclaims directly
//! ([`direct_reclaim`]) and the fault is retried; when reclaim frees
//! nothing the faulting task is ended (out of memory), never the kernel.
//!
//! ### Waking kswapd (`wakeup_kswapd`)
//!
//! - Who wakes it: the frame allocator's low-memory hook
//!   (`mm::frame::FrameAllocator::set_low_memory_hook`, registered in
//!   [`init`]) after **every** allocation that leaves fewer than `low`
//!   pages free or fails, whoever calls the allocator (the `memory`
//!   wrappers, the swap-in backend, tests); and [`defer`], for its
//!   deferred work.
//! - How: the waker ORs its reason into `KSWAPD_WANTED` (an atomic), and
//!   only the waker that found it zero calls `sched::unpark` on kswapd's
//!   task. A non-zero flag means an unpark was or is being sent and kswapd
//!   has not consumed the flag yet, so it will see the new reason too.
//! - No lost wake-up (the protocol of `crate::task::wait`): kswapd consumes the
//!   flag (`swap(0)`) *before* it looks at memory, and parks only after
//!   finding it zero. A waker that sets it after that look is seen by the
//!   next swap; an unpark that lands between the swap and the park leaves
//!   the task's unpark token, so the park returns at once. The flag is a
//!   level, not an edge: an unpark eaten by one of kswapd's other waits
//!   (a disk request's park) loses nothing, since the flag stays set until
//!   kswapd's own loop consumes it. Spurious unparks just loop.
//! - Where it may be called: anywhere an allocation may happen: with
//!   interrupts off, with any spin lock held (page-table and space locks;
//!   not the heap's or the run queue's, under which nothing allocates
//!   frames; [`defer`] drops its list's lock first), from interrupt handlers
//!   and from any CPU. It never allocates and takes only the run-queue
//!   lock (inside `unpark`, with interrupts off), which is innermost: its
//!   holders take no other lock but the heap's (a leaf), never allocate
//!   frames and never wait for another CPU. It is called after the
//!   allocator's lock is released.
//! - No timer safety net: every frame leaves the allocator through
//!   `FrameAllocator::alloc`, which is where the hook sits, so there is no
//!   path that lowers free memory without a wake; a periodic wake would
//!   only cost CPU time (and hide bugs of this protocol from the test).
//! - Back-off: a pass that was asked to reclaim and freed nothing (swap
//!   full, every folio in use, no swap) while memory is still below `low`
//!   sleeps [`KSWAPD_BACKOFF_MS`] before it looks at the flag again: each
//!   failed allocation wakes kswapd, and a futile pass scans the whole LRU.
//!   Wakes that come meanwhile are kept in the flag.
//!
//! Counters: [`NR_KSWAPD_WAKEUPS`] (passes kswapd made because it was
//! woken). The in-guest test `reclaim::kswapd_wakes_at_low_and_sleeps_above`
//! checks that kswapd stays parked while memory is above `low`, and that
//! allocations crossing `low` wake it and it alone brings free memory back
//! above `high`.

//! ## Locks
//!
//! The LRU lists' lock is a leaf taken with interrupts off (inside
//! `mm::lru`). Shrinking takes, in order: the folio lock, then the address
//! spaces' locks (to unmap), and sleeps for the disk with only the folio
//! lock held. `wakeup_kswapd` takes only the run-queue lock (above).

use crate::memory;
use crate::sync::IrqSpinLock;
use crate::task::sched;
use crate::vm::swap::{self, SwapDevice};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
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
/// Passes kswapd made because it was woken ([`wakeup_kswapd`]).
pub static NR_KSWAPD_WAKEUPS: AtomicU64 = AtomicU64::new(0);
/// Calls of [`direct_reclaim`].
pub static NR_DIRECT_RECLAIMS: AtomicU64 = AtomicU64::new(0);
/// kswapd is awake: between consuming [`KSWAPD_WANTED`] and parking
/// (shrinking or draining).
pub(crate) static KSWAPD_BUSY: AtomicBool = AtomicBool::new(false);
/// kswapd has started.
static KSWAPD_UP: AtomicBool = AtomicBool::new(false);
/// Why kswapd should run (`WAKE_*` bits), consumed by kswapd's loop (module
/// doc, "Waking kswapd").
pub(crate) static KSWAPD_WANTED: AtomicU8 = AtomicU8::new(0);
/// An allocation left free memory below `low`, or failed.
const WAKE_RECLAIM: u8 = 1;
/// [`defer`] queued work.
const WAKE_DRAIN: u8 = 2;
/// kswapd's task, for [`wakeup_kswapd`] (set by kswapd itself).
pub(crate) static KSWAPD_TASK: spin::Once<Arc<sched::Task>> = spin::Once::new();
/// How long kswapd rests after a pass that could free nothing.
pub const KSWAPD_BACKOFF_MS: u64 = 10;

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
    memory::frame_allocator().set_low_memory_hook(low_memory);
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
                match crate::vm::space::split_isolated_folio(&folio) {
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
        if crate::vm::space::unmap_folio_to_swap(&folio, &dev.area).is_err() {
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
        let written = crate::vm::swap::Io(&dev).write(first, PhysAddr::new(folio.pfn() << 12), nr);
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
    crate::vm::folios::free_folio(folio);
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
    NR_DIRECT_RECLAIMS.fetch_add(1, Ordering::Relaxed);
    shrink(nr_pages)
}

/// The frame allocator's low-memory hook (module doc): an allocation left
/// free memory below `low`, or failed.
fn low_memory() {
    wakeup_kswapd(WAKE_RECLAIM);
}

/// Asks kswapd to run for `why` (`WAKE_*`). Any context: interrupts off,
/// spin locks held, interrupt handlers, any CPU; never allocates; takes
/// only the run-queue lock (module doc, "Waking kswapd").
fn wakeup_kswapd(why: u8) {
    // Interrupts off from the flag to the unpark: the waker that owes the
    // unpark is not preempted in between (others count on it).
    crate::sync::without_interrupts(|| {
        if KSWAPD_WANTED.fetch_or(why, Ordering::SeqCst) != 0 {
            return; // an unpark is on its way, or kswapd has yet to look
        }
        // Pairs with the fence in `kswapd`: either this finds the task, or
        // kswapd's first look finds the flag.
        fence(Ordering::SeqCst);
        if let Some(task) = KSWAPD_TASK.get() {
            sched::unpark(task);
        }
    });
}

/// Parks kswapd until [`KSWAPD_WANTED`] is set; returns (and clears) it.
/// On return `KSWAPD_BUSY` is set.
fn kswapd_wait() -> u8 {
    loop {
        // Busy before the flag is consumed, so `quiesce` never sees both
        // clear while a pass is due.
        KSWAPD_BUSY.store(true, Ordering::SeqCst);
        let why = KSWAPD_WANTED.swap(0, Ordering::SeqCst);
        if why != 0 {
            return why;
        }
        KSWAPD_BUSY.store(false, Ordering::SeqCst);
        // A wake between the swap and here left the unpark token: the
        // park returns at once.
        sched::park();
    }
}

/// kswapd's loop (module doc).
fn kswapd() {
    KSWAPD_TASK.call_once(sched::current_task);
    // Pairs with the fence in `wakeup_kswapd` (a wake before the task was
    // recorded sent no unpark, and its flag must be seen below).
    fence(Ordering::SeqCst);
    let frames = memory::frame_allocator();
    loop {
        let why = kswapd_wait();
        NR_KSWAPD_WAKEUPS.fetch_add(1, Ordering::Relaxed);
        let mut futile = false;
        if why & WAKE_RECLAIM != 0 && frames.below_high() && swap::any_area() {
            let high = frames.watermarks().high;
            let mut freed = 0;
            while frames.nr_free_pages() < high {
                match shrink(64) {
                    0 => break,
                    n => freed += n,
                }
            }
            futile = freed == 0 && frames.below_low();
        }
        drain_deferred();
        KSWAPD_BUSY.store(false, Ordering::SeqCst);
        if futile {
            sched::sleep_ms(KSWAPD_BACKOFF_MS);
        }
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
    if queued {
        wakeup_kswapd(WAKE_DRAIN); // after the list's lock is dropped
    } else {
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

/// Waits (up to a second) until kswapd is parked with no wake pending,
/// then finishes deferred work: for the test harness, whose heap and frame
/// counts must not catch reclaim half-way through.
pub fn quiesce() {
    for _ in 0..500 {
        let pending = KSWAPD_TASK.get().is_some() && KSWAPD_WANTED.load(Ordering::SeqCst) != 0;
        if !pending && !KSWAPD_BUSY.load(Ordering::SeqCst) {
            break;
        }
        sched::sleep_ms(2);
    }
    drain_deferred();
}
