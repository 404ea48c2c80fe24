//! The kernel heap (`Box`, `Vec`, `BTreeMap`, ...): a fixed boot region that
//! grows from the frame allocator when it runs out, and gives the growth
//! back when it is no longer used.
//!
//! ## Regions
//!
//! The heap is a set of regions, each a first-fit allocator
//! (`linked_list_allocator::Heap`) over contiguous frames of the direct map:
//! - the **boot region**, [`BOOT_HEAP_SIZE`] bytes the early allocator gave
//!   at boot (so the heap exists before the buddy allocator does); it is
//!   never given back;
//! - up to [`MAX_REGIONS`] **grown regions**, each a buddy block of
//!   `2^order` frames taken when no region could serve an allocation.
//!
//! An allocation is tried in the region that served the last one, then in
//! every region; when none has room, the heap takes a block from the frame
//! allocator (at least [`GROW_ORDER`] frames, fewer when a block that large
//! is not to be had, more for an allocation that needs it) and tries again.
//! A grown region whose last allocation is freed goes back to the frame
//! allocator at once. So the heap costs what is allocated, plus the
//! fragmentation inside regions: a structure that grows with a workload
//! (the swap cache, the consistency checker's tables) takes frames as it
//! grows and returns them when it shrinks.
//!
//! When no frames are left either, the allocation fails: `try_reserve`
//! and the other fallible calls return an error; an infallible one (`Box::new`,
//! `Vec::push`) ends the kernel, so every path whose heap use grows with a
//! workload must either use the fallible calls or take its room first with
//! [`reserve`] (which may reclaim, since it runs where a task may wait).
//!
//! Growth takes frames at the normal watermark first and falls back to the
//! reserve below `min` for the smallest block that fits: reclaim itself
//! allocates from the heap (the swap cache's table), and must not fail for
//! want of the memory it is about to free. Growth never calls the frame
//! allocator's low-memory hook (`FrameAllocator::alloc_silent`): a heap
//! allocation may be made under the run-queue lock that hook takes.
//!
//! ## Lock
//!
//! One `spin::Mutex` (`GrowingHeap::state`) guards every region, taken with
//! interrupts off (so an interrupt handler may allocate and a holder is
//! never preempted). It is a **leaf**: frames are taken and given back with
//! it released, so the frame allocator's lock is never taken inside it
//! (the order of all locks: the book's `docs/src/locking.md`).

use crate::sync::without_interrupts;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::Heap;
use mm::frame::{AllocKind, MAX_ORDER};
use mm::{PhysAddr, PAGE_SIZE};

/// Size of the boot region.
pub const BOOT_HEAP_SIZE: u64 = 16 * 1024 * 1024;
/// The order of a grown region when a block that large is to be had
/// (2 MiB).
pub const GROW_ORDER: u8 = 9;
/// Grown regions at most at a time (at [`GROW_ORDER`], 4 GiB of heap;
/// at [`RESERVE_MIN_ORDER`], 128 MiB).
pub const MAX_REGIONS: usize = 2048;
/// The smallest block [`reserve`] takes.
pub const RESERVE_MIN_ORDER: u8 = 4;

/// One grown region: `2^order` frames at `pa`, its allocator over them.
struct Region {
    pa: PhysAddr,
    start: usize,
    end: usize,
    order: u8,
    heap: Heap,
}

/// Everything the heap's lock guards.
struct State {
    boot: Heap,
    /// `[start, end)` of the boot region (0, 0 before `init`).
    boot_range: (usize, usize),
    /// `regions[..nr]` are the grown regions, sorted by address (a free
    /// finds its region by binary search); the rest are None.
    regions: [Option<Region>; MAX_REGIONS],
    nr: usize,
    /// The grown region that served the last allocation, tried first.
    hint: usize,
}

impl State {
    fn grown(&mut self) -> impl Iterator<Item = &mut Region> {
        self.regions[..self.nr].iter_mut().flatten()
    }

    fn try_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if let Some(Some(r)) = self.regions[..self.nr].get_mut(self.hint) {
            if let Ok(p) = r.heap.allocate_first_fit(layout) {
                return Some(p);
            }
        }
        if let Ok(p) = self.boot.allocate_first_fit(layout) {
            return Some(p);
        }
        for i in 0..self.nr {
            if let Some(Ok(p)) = self.regions[i].as_mut().map(|r| r.heap.allocate_first_fit(layout)) {
                self.hint = i;
                return Some(p);
            }
        }
        None
    }

    /// The index of the grown region holding `addr`.
    fn find(&self, addr: usize) -> Option<usize> {
        let regions = &self.regions[..self.nr];
        let i = regions.partition_point(|r| r.as_ref().is_some_and(|r| r.start <= addr));
        let i = i.checked_sub(1)?;
        regions[i].as_ref().is_some_and(|r| addr < r.end).then_some(i)
    }

    /// Adds a region in address order; false when the table is full.
    fn insert(&mut self, region: Region) -> bool {
        if self.nr == MAX_REGIONS {
            return false;
        }
        let i =
            self.regions[..self.nr].partition_point(|r| r.as_ref().is_some_and(|r| r.start < region.start));
        self.regions[i..=self.nr].rotate_right(1);
        self.regions[i] = Some(region);
        self.nr += 1;
        self.hint = i;
        true
    }

    /// Takes region `i` out of the table.
    fn remove(&mut self, i: usize) -> Option<Region> {
        let r = self.regions[i].take();
        self.regions[i..self.nr].rotate_left(1);
        self.nr -= 1;
        self.hint = 0;
        r
    }

    /// Frees `ptr`; returns the grown region it emptied, to give back.
    ///
    /// # Safety
    /// `ptr` came from [`State::try_alloc`] with `layout` and is not used
    /// again.
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) -> Option<Region> {
        let addr = ptr.as_ptr() as usize;
        if (self.boot_range.0..self.boot_range.1).contains(&addr) {
            // SAFETY: the caller's contract; the pointer is in the boot region.
            unsafe { self.boot.deallocate(ptr, layout) };
            return None;
        }
        let i = self.find(addr)?;
        let r = self.regions[i].as_mut()?;
        // SAFETY: the caller's contract; the pointer is in this region.
        unsafe { r.heap.deallocate(ptr, layout) };
        if r.heap.used() == 0 {
            return self.remove(i);
        }
        None
    }

    fn used(&mut self) -> usize {
        self.boot.used() + self.grown().map(|r| r.heap.used()).sum::<usize>()
    }

    fn free(&mut self) -> usize {
        self.boot.free() + self.grown().map(|r| r.heap.free()).sum::<usize>()
    }
}

/// The kernel's allocator (module doc).
pub struct GrowingHeap {
    state: spin::Mutex<State>,
    /// Frames held by grown regions.
    grown_frames: AtomicU64,
    /// The most `grown_frames` has been.
    peak_grown_frames: AtomicU64,
}

/// The global allocator.
#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap {
    state: spin::Mutex::new(State {
        boot: Heap::empty(),
        boot_range: (0, 0),
        regions: [const { None }; MAX_REGIONS],
        nr: 0,
        hint: 0,
    }),
    grown_frames: AtomicU64::new(0),
    peak_grown_frames: AtomicU64::new(0),
};

/// The smallest order of a block that can serve `layout` alone; None if
/// no block can. A region starts page-aligned and its allocator rounds
/// sizes up to 16 bytes; only an alignment above a page needs more.
fn order_for(layout: Layout) -> Option<u8> {
    let extra = if layout.align() > PAGE_SIZE as usize { layout.align() } else { 0 };
    let need = layout.size().max(1).checked_next_multiple_of(16)?.checked_add(extra)? as u64;
    let pages = need.div_ceil(PAGE_SIZE).next_power_of_two();
    let order = pages.trailing_zeros() as u8;
    (order <= MAX_ORDER).then_some(order)
}

/// A block of frames for a new region that can serve `layout`:
/// [`GROW_ORDER`] or what `layout` needs, whichever is more; smaller down
/// to what it needs when that is not to be had; then the reserve (module
/// doc).
fn take_frames(layout: Layout) -> Option<(PhysAddr, u8)> {
    let need = order_for(layout)?;
    let frames = super::FRAMES.get()?;
    for order in (need..=GROW_ORDER.max(need)).rev() {
        if let Ok(pfn) = frames.alloc_silent(order, AllocKind::Normal) {
            return Some((pfn.phys(), order));
        }
    }
    frames.alloc_silent(need, AllocKind::Reserve).ok().map(|pfn| (pfn.phys(), need))
}

impl GrowingHeap {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // A region grown for `layout` serves it (it is empty and large
        // enough) unless other CPUs took its room in between: a few rounds,
        // then a last try.
        for _ in 0..3 {
            if let Some(p) = self.state.lock().try_alloc(layout) {
                return p.as_ptr();
            }
            let Some((pa, order)) = take_frames(layout) else { return core::ptr::null_mut() };
            if !self.add_region(pa, order) {
                super::free_frames(pa, order);
                return core::ptr::null_mut();
            }
        }
        self.state.lock().try_alloc(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    /// Makes `2^order` frames at `pa` a region; false when the table of
    /// regions is full (the frames are then still the caller's).
    fn add_region(&self, pa: PhysAddr, order: u8) -> bool {
        let start = super::phys_to_virt(pa).as_u64() as usize;
        let size = (PAGE_SIZE << order) as usize;
        // Zeroed once: `memory`'s "Kernel memory is zeroed when taken".
        // SAFETY: the frames were just taken from the frame allocator for
        // this region and are not yet published to anyone.
        unsafe { super::zero_frames(pa, order) };
        // SAFETY: the frames were just taken from the frame allocator for
        // this region alone; they are RAM, mapped read-write in the direct
        // map at `start`, and go back only when the region is taken out.
        let heap = unsafe { Heap::new(start as *mut u8, size) };
        if !self.state.lock().insert(Region { pa, start, end: start + size, order, heap }) {
            return false;
        }
        let grown = self.grown_frames.fetch_add(1 << order, Ordering::Relaxed) + (1 << order);
        self.peak_grown_frames.fetch_max(grown, Ordering::Relaxed);
        true
    }

    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else { return };
        // SAFETY: the caller's contract.
        let emptied = unsafe { self.state.lock().dealloc(ptr, layout) };
        if let Some(r) = emptied {
            self.grown_frames.fetch_sub(1 << r.order, Ordering::Relaxed);
            super::free_frames(r.pa, r.order);
        }
    }
}

// SAFETY: `alloc` returns a block of at least `layout.size()` bytes at
// `layout.align()` from one region's allocator, which hands it out once
// until `dealloc` gives it back to the same region (found by address);
// regions never overlap (frames of the frame allocator, the boot region
// from the early allocator) and a region is given back only when nothing
// in it is allocated.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| GrowingHeap::alloc(self, layout))
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        without_interrupts(|| unsafe { GrowingHeap::dealloc(self, ptr, layout) })
    }
}

/// Makes `[start, start + BOOT_HEAP_SIZE)` the boot region.
///
/// # Safety
/// The range is RAM, mapped read-write, used by nothing else for ever;
/// called once, before any allocation.
pub(super) unsafe fn init(start: usize) {
    let mut state = HEAP.state.lock();
    // SAFETY: the caller's contract.
    unsafe { state.boot.init(start as *mut u8, BOOT_HEAP_SIZE as usize) };
    state.boot_range = (start, start + BOOT_HEAP_SIZE as usize);
}

/// Bytes of heap in use.
pub fn used() -> usize {
    without_interrupts(|| HEAP.state.lock().used())
}

/// Bytes of heap free in the regions it has now.
pub fn free() -> usize {
    without_interrupts(|| HEAP.state.lock().free())
}

/// Frames the heap holds beyond its boot region.
pub fn grown_frames() -> u64 {
    HEAP.grown_frames.load(Ordering::Relaxed)
}

/// The most frames the heap has held beyond its boot region.
pub fn peak_grown_frames() -> u64 {
    HEAP.peak_grown_frames.load(Ordering::Relaxed)
}

/// Why [`reserve`] could not make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveError {
    pub wanted: usize,
    pub free: usize,
}

/// Makes sure the heap has `bytes` free, taking blocks of frames from
/// `take(order)`, which may reclaim: the caller runs where a task may wait,
/// with no spin lock held. Blocks of [`GROW_ORDER`] frames, smaller down to
/// [`RESERVE_MIN_ORDER`] when `take` finds none. For work that is about to
/// allocate much where it cannot wait (the consistency checker under its
/// address-space locks). The room stays only while something uses it: a
/// grown region goes back at the free that empties it, so the caller
/// allocates right after, and calls [`trim`] when done, which gives back
/// the regions it grew here and did not use.
pub fn reserve(bytes: usize, mut take: impl FnMut(u8) -> Option<PhysAddr>) -> Result<(), ReserveError> {
    let mut order = GROW_ORDER;
    loop {
        let free = free();
        if free >= bytes {
            return Ok(());
        }
        let Some(pa) = take(order) else {
            if order > RESERVE_MIN_ORDER {
                order -= 1;
                continue;
            }
            return Err(ReserveError { wanted: bytes, free });
        };
        if !without_interrupts(|| HEAP.add_region(pa, order)) {
            super::free_frames(pa, order);
            return Err(ReserveError { wanted: bytes, free });
        }
    }
}

/// Gives every grown region nothing is allocated in back to the frame
/// allocator; returns how many frames went back.
pub fn trim() -> u64 {
    let mut given = 0;
    loop {
        let empty = without_interrupts(|| {
            let mut state = HEAP.state.lock();
            let i = state.regions[..state.nr]
                .iter()
                .position(|r| r.as_ref().is_some_and(|r| r.heap.used() == 0))?;
            state.remove(i)
        });
        let Some(r) = empty else { return given };
        HEAP.grown_frames.fetch_sub(1 << r.order, Ordering::Relaxed);
        super::free_frames(r.pa, r.order);
        given += 1 << r.order;
    }
}
