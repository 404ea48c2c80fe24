//! Reclaim in the running kernel: the anonymous LRU lists (`mm::lru`),
//! the kswapd task, direct reclaim, and `MADV_PAGEOUT`'s hand-over. What
//! becomes of each folio (skipped, kept, activated, split, written, freed)
//! is decided by `mm::reclaim`; here is its host ([`Reclaimer`]): the swap
//! devices and their disk writes, the fork families' locks
//! (`crate::vm::space::with_folio_family_locked`), the TLB shootdown,
//! freeing onto the frame allocator, and yielding the CPU.
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

use crate::arch::prelude::*;
use crate::memory;
use crate::memory::paging::{Format, ReserveTables};
use crate::sync::IrqSpinLock;
use crate::task::sched;
use crate::vm::swap::{self, SwapDevice};
use crate::vm::tlb::Shootdown;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
use mm::folio::Folio;
use mm::lru::LruLists;
use mm::page::Memmap;
use mm::pgtable::SwapType;
use mm::pgtable::{PageTable, SwapEntry};
use mm::reclaim::{ReclaimHost, Reclaimed};
use mm::swap::area::SwapArea;
use mm::Pfn;
use mm::PhysAddr;

static LRU: spin::Once<LruLists> = spin::Once::new();

/// Cache folios an unmap or a freed entry could not take out of the swap
/// cache at once because somebody held their lock (PFNs, each with a
/// reference): kswapd (or [`drain_deferred`]) finishes the job. Room is
/// reserved at [`init`]; when it is full the folio waits for reclaim.
static DEFERRED: IrqSpinLock<Vec<Pfn>> = IrqSpinLock::new(Vec::new());
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
    mm::sync::set_irq_hooks(Arch::irq_save_and_disable, Arch::irq_restore);
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

/// The writes a reclaim pass keeps in flight at most
/// (`mm::reclaim::MAX_WRITES_IN_FLIGHT` unless a test asks for fewer:
/// [`set_writes_in_flight`]).
static WRITES_IN_FLIGHT: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(mm::reclaim::MAX_WRITES_IN_FLIGHT);

/// Makes reclaim passes keep at most `n` (at least 1) writes in flight
/// from now on; `None`: the default again. For in-guest tests whose
/// expectations count requests: QEMU merges the requests in flight to
/// neighbouring sectors into one, and fails or throttles the merged one
/// whole.
pub fn set_writes_in_flight(n: Option<usize>) {
    let n = n.map_or(mm::reclaim::MAX_WRITES_IN_FLIGHT, |n| n.max(1));
    WRITES_IN_FLIGHT.store(n, Ordering::Relaxed);
}

/// The most pages one reclaim write of several folios takes, below what
/// the disk can gather (`crate::drivers::blk`, "Gathered writes"); for
/// tests: [`set_pages_per_write`].
static PAGES_PER_WRITE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(usize::MAX);

/// Makes reclaim writes take at most `n` pages of several folios from now
/// on, and a pass unmap at most `n` folios together (1: every folio
/// unmapped and written alone, a request of its own, as tests that count
/// failed requests, or the pages given slots on a disk that dies, need);
/// `None`: as many as the disk gathers, and `mm::reclaim::UNMAP_BATCH`.
pub fn set_pages_per_write(n: Option<usize>) {
    PAGES_PER_WRITE.store(n.map_or(usize::MAX, |n| n.max(1)), Ordering::Relaxed);
}

/// Huge folios reclaim split because no run of 512 slots was free.
pub static NR_SPLIT_FOR_SWAP: AtomicU64 = AtomicU64::new(0);

/// The running kernel as `mm::reclaim` needs it (module doc).
struct Reclaimer;

impl ReclaimHost for Reclaimer {
    type Format = Format;
    // Reclaim's splits and unmaps take their new tables from the reserve:
    // a PMD-mapped THP needs a table for its swap entries exactly when
    // memory is at the min watermark (`ReserveTables`).
    type Mem = ReserveTables;
    type Tlb = Shootdown;
    type Device = Arc<SwapDevice>;
    type IoError = crate::drivers::blk::IoError;

    fn mem(&self) -> &ReserveTables {
        &ReserveTables
    }
    fn tlb(&self) -> &Shootdown {
        &Shootdown
    }
    fn memmap(&self) -> &'static Memmap {
        memory::frame_allocator().memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        lru()
    }
    fn any_device(&self) -> bool {
        swap::any_area()
    }
    fn device(&self, ty: SwapType) -> Option<Arc<SwapDevice>> {
        swap::area(ty)
    }
    fn alloc_device(&self) -> Option<Arc<SwapDevice>> {
        swap::alloc_area()
    }
    fn area<'a>(&'a self, dev: &'a Arc<SwapDevice>) -> &'a SwapArea {
        &dev.area
    }
    type Write = swap::PendingWrite;
    fn submit_write(
        &self,
        dev: &Arc<SwapDevice>,
        first: SwapEntry,
        folios: &[Folio<'static>],
        pending: bool,
    ) -> Result<Option<swap::PendingWrite>, crate::drivers::blk::IoError> {
        swap::Io(dev).submit_write(first, folios, pending)
    }
    fn max_write_pages(&self, dev: &Arc<SwapDevice>) -> usize {
        dev.gather_pages().min(PAGES_PER_WRITE.load(Ordering::Relaxed))
    }
    fn unmap_batch(&self) -> usize {
        mm::reclaim::UNMAP_BATCH.min(PAGES_PER_WRITE.load(Ordering::Relaxed))
    }
    fn wait_write(&self, write: swap::PendingWrite) -> Result<(), crate::drivers::blk::IoError> {
        swap::wait_write(write)
    }
    fn max_writes_in_flight(&self) -> usize {
        WRITES_IN_FLIGHT.load(Ordering::Relaxed)
    }
    fn with_family_locked<R>(&self, folio: &Folio<'static>, f: impl FnOnce(&[&PageTable<Format>]) -> R) -> R {
        crate::vm::space::with_folio_family_locked(folio, f)
    }
    fn free(&self, folio: Folio<'static>) {
        crate::vm::folios::free_folio(folio);
    }
    fn relax(&self) {
        sched::yield_now();
    }
}

/// Adds what a pass did to the counters; returns the pages freed.
fn counted(done: Reclaimed) -> usize {
    NR_RECLAIMED.fetch_add(done.nr_pages as u64, Ordering::Relaxed);
    NR_SPLIT_FOR_SWAP.fetch_add(done.nr_split as u64, Ordering::Relaxed);
    done.nr_pages
}

/// Frees up to about `nr_pages` pages from the inactive tail
/// (`mm::reclaim::shrink_lru`). Task context, interrupts on, no lock held.
/// Returns the pages freed.
pub fn shrink(nr_pages: usize) -> usize {
    counted(mm::reclaim::shrink_lru(&Reclaimer, nr_pages))
}

/// Why reclaim could free nothing, as far as the kernel can tell: for the
/// message of a task ended out of memory. Names, in this order, failing
/// swap writes (with the latest error), no swap, no area that takes pages
/// (a retired disk), a full swap; else that every folio looked at was in
/// use.
pub fn why_nothing_freed() -> alloc::string::String {
    use alloc::format;
    let mut why = Vec::new();
    let (failed, last) = swap::write_errors_in_a_row();
    if failed > 0 {
        why.push(match last {
            Some(e) => format!("{failed} swap writes failed in a row, the latest: {e}"),
            None => format!("{failed} swap writes failed in a row"),
        });
    }
    let (free, total) = swap::totals();
    if !swap::any_area() {
        why.push("no swap area is on".into());
    } else if swap::alloc_area().is_none() {
        why.push("no swap area takes new pages (allocation stopped, or its disk is out of service)".into());
    } else if free == 0 {
        why.push(format!("swap is full ({total} slots)"));
    }
    if why.is_empty() {
        why.push("every folio it looked at was in use, locked or pinned".into());
    }
    why.join("; ")
}

/// Reclaim for an allocation that failed: frees up to `nr_pages` pages
/// now, in the caller's task.
pub fn direct_reclaim(nr_pages: usize) -> usize {
    NR_DIRECT_RECLAIMS.fetch_add(1, Ordering::Relaxed);
    shrink(nr_pages)
}

/// `2^order` frames for the kernel's own use (the heap's growth before a
/// large piece of work, `memory::heap::reserve`), reclaiming when none are
/// free above the watermark. Task context, interrupts on, no lock held.
/// None when reclaim frees nothing, or a block that large is still not to
/// be had after a few rounds.
pub fn alloc_frames_reclaiming(order: u8) -> Option<PhysAddr> {
    for _ in 0..4 {
        if let Ok(pa) = memory::alloc_frames(order) {
            return Some(pa);
        }
        if direct_reclaim(64.max(1 << order)) == 0 {
            return None;
        }
    }
    None
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
/// lists and shrinks it now, leaving any that is off the lists already to
/// whoever holds it (`mm::reclaim::pageout`, the fix of seed 002). Returns
/// the pages freed.
pub fn pageout(folios: Vec<Folio<'static>>) -> usize {
    counted(mm::reclaim::pageout(&Reclaimer, folios))
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
