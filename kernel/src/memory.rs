//! Physical memory in the running kernel: the direct map, the kernel heap,
//! the page descriptor array (memmap) and the buddy frame allocator.
//!
//! ## Protocol
//!
//! [`init`] runs once, on the boot CPU, before anything allocates:
//! 1. an [`EarlyFrameAllocator`] takes the usable memory;
//! 2. it gives [`HEAP_SIZE`] contiguous bytes to the heap (`Box`, `Vec`, ...);
//! 3. it gives the frames for the memmap: one 64-byte [`Page`] per 4 KiB
//!    frame from the lowest to the highest usable frame;
//! 4. the buddy [`FrameAllocator`] takes over every frame the early
//!    allocator has not handed out, and the early allocator retires.
//!
//! From then on frames come from [`alloc_frames`] / [`free_frames`].
//!
//! Locks: the allocator's own spin lock (a leaf); the heap's lock inside
//! `LockedHeap` (a leaf). Neither is taken while holding the other.

use crate::boot::BootInfo;
use crate::println;
use crate::testing::{Test, TestEnv};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;
use mm::early::EarlyFrameAllocator;
use mm::folio::Folio;
use mm::frame::{AllocError, AllocKind, FrameAllocator, MAX_ORDER};
use mm::memmap::MemoryMap;
use mm::page::{Memmap, Page};
use mm::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Size of the kernel heap.
pub const HEAP_SIZE: u64 = 16 * 1024 * 1024;

/// The kernel heap: a linked-list allocator whose lock is taken with
/// interrupts disabled, so a task holding it is never preempted (another
/// task on the same CPU would spin on it) and interrupt handlers may
/// allocate.
struct KernelHeap(LockedHeap);

// SAFETY: every method forwards to `LockedHeap`, which is a correct
// GlobalAlloc; disabling interrupts around the calls changes no result.
unsafe impl core::alloc::GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        crate::sync::without_interrupts(|| unsafe { self.0.alloc(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        crate::sync::without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(LockedHeap::empty());

/// The page descriptors of every frame from the lowest to the highest
/// usable one.
static MEMMAP: spin::Once<Memmap> = spin::Once::new();
/// The buddy allocator over [`MEMMAP`].
static FRAMES: spin::Once<FrameAllocator> = spin::Once::new();
/// The root page table the kernel booted with (x86_64: the template of the
/// kernel half every address space shares).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// The usable memory as the boot path described it (for tests and, later,
/// the buddy allocator).
static BOOT_MEMORY: spin::Once<MemoryMap> = spin::Once::new();
/// `direct_map_offset` from the boot info.
static DIRECT_MAP_OFFSET: AtomicU64 = AtomicU64::new(0);
/// Where the heap starts, for reports.
static HEAP_START: AtomicU64 = AtomicU64::new(0);

/// Why boot-time memory could not be set up. The machine's fault (too little
/// RAM); the message says how much was needed.
#[derive(Debug)]
pub enum InitError {
    NoRoomForHeap { needed: u64, usable: u64 },
    NoRoomForMemmap { needed: u64 },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NoRoomForHeap { needed, usable } => write!(
                f,
                "not enough contiguous RAM for the {} MiB kernel heap ({} MiB usable in all); give QEMU more memory (--mem)",
                needed / (1024 * 1024),
                usable / (1024 * 1024)
            ),
            InitError::NoRoomForMemmap { needed } => write!(
                f,
                "not enough contiguous RAM for the {} KiB page descriptor array; give QEMU more memory (--mem)",
                needed / 1024
            ),
        }
    }
}

/// The virtual address at which physical address `pa` is mapped.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.as_u64() + DIRECT_MAP_OFFSET.load(Ordering::Relaxed))
}

/// The physical address of a kernel virtual address in the direct map of
/// RAM (the heap, the memmap, frames from the allocator, task stacks);
/// None for any other address (the kernel image on x86_64, the boot stack,
/// MMIO, user addresses) or before [`init`].
pub fn virt_to_phys(va: VirtAddr) -> Option<PhysAddr> {
    let offset = DIRECT_MAP_OFFSET.load(Ordering::Relaxed);
    let ram_end = BOOT_MEMORY.get()?.ranges().last()?.end.as_u64();
    let pa = va.as_u64().checked_sub(offset)?;
    (offset != 0 && pa < ram_end).then(|| PhysAddr::new(pa))
}

/// Sets up the heap, the memmap and the frame allocator. Boot CPU, once.
pub fn init(info: &BootInfo) -> Result<(), InitError> {
    DIRECT_MAP_OFFSET.store(info.direct_map_offset, Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    KERNEL_ROOT.store(crate::arch::mmu::current_root().as_u64(), Ordering::Relaxed);
    let map = BOOT_MEMORY.call_once(|| info.memory.clone());
    let mut early = EarlyFrameAllocator::new(map.clone());
    let heap = early
        .alloc_contiguous(HEAP_SIZE / PAGE_SIZE, PAGE_SIZE)
        .map_err(|_| InitError::NoRoomForHeap { needed: HEAP_SIZE, usable: map.total_bytes() })?;
    let heap_va = phys_to_virt(heap);
    HEAP_START.store(heap_va.as_u64(), Ordering::Relaxed);
    // SAFETY: the frames were just taken from the early allocator, which
    // never hands them out again; they are RAM, mapped read-write in the
    // direct map at `heap_va`, and `init` runs once, before any allocation.
    unsafe { HEAP.0.lock().init(heap_va.as_u64() as *mut u8, HEAP_SIZE as usize) };

    // The memmap covers [first usable pfn, last usable pfn]; holes in it
    // stay Reserved.
    let first_pfn = map.ranges().first().map_or(0, |r| r.start.pfn());
    let end_pfn = map.ranges().last().map_or(0, |r| r.end.pfn());
    let nr_pages = (end_pfn - first_pfn) as usize;
    let bytes = (nr_pages * core::mem::size_of::<Page>()) as u64;
    let memmap_pa = early
        .alloc_contiguous(bytes.div_ceil(PAGE_SIZE), PAGE_SIZE)
        .map_err(|_| InitError::NoRoomForMemmap { needed: bytes })?;
    let pages = phys_to_virt(memmap_pa).as_u64() as *mut Page;
    for i in 0..nr_pages {
        // SAFETY: the early allocator gave us `bytes` bytes at `memmap_pa`,
        // mapped in the direct map and never handed out again; Page is
        // 64-byte aligned and the frames are page-aligned.
        unsafe { pages.add(i).write(Page::new()) };
    }
    // SAFETY: `nr_pages` descriptors were just initialised at `pages`; the
    // memory is never freed or reused, so the slice may be 'static.
    let pages: &'static [Page] = unsafe { core::slice::from_raw_parts(pages, nr_pages) };
    let memmap = MEMMAP.call_once(|| Memmap::new(first_pfn, pages));
    let frames = FRAMES.call_once(|| FrameAllocator::new(memmap));
    for r in early.remaining() {
        frames
            .add_free_range(r.start.pfn(), r.end.pfn())
            .expect("memory::init: a usable range outside the memmap");
    }
    Ok(())
}

/// Prints the heap, memmap and allocator state.
pub fn print_summary() {
    let Some(frames) = FRAMES.get() else { return };
    let memmap = frames.memmap();
    let w = frames.watermarks();
    println!(
        "memory: heap {} MiB at {:#x}; memmap {} descriptors x {} bytes = {} KiB ({:.2}% of RAM)",
        HEAP_SIZE / (1024 * 1024),
        HEAP_START.load(Ordering::Relaxed),
        memmap.len(),
        core::mem::size_of::<Page>(),
        memmap.len() * core::mem::size_of::<Page>() / 1024,
        100.0 * core::mem::size_of::<Page>() as f64 / PAGE_SIZE as f64
    );
    println!(
        "memory: buddy allocator: {} of {} pages free; watermarks min {} low {} high {}",
        frames.nr_free_pages(),
        frames.managed_pages(),
        w.min,
        w.low,
        w.high
    );
}

/// The frame allocator.
///
/// # Panics
/// Before [`init`] (a kernel bug: nothing allocates frames that early).
pub fn frame_allocator() -> &'static FrameAllocator {
    FRAMES.get().expect("frame_allocator: memory::init has not run")
}

/// `2^order` contiguous frames (normal priority: fails at the min
/// watermark).
pub fn alloc_frames(order: u8) -> Result<PhysAddr, AllocError> {
    // Interrupts off around the allocator's lock: its holder must not be
    // preempted (see `crate::sync`).
    let pfn = crate::sync::without_interrupts(|| frame_allocator().alloc(order, AllocKind::Normal))?;
    Ok(PhysAddr::new(pfn << 12))
}

/// Gives back frames from [`alloc_frames`].
pub fn free_frames(pa: PhysAddr, order: u8) {
    crate::sync::without_interrupts(|| frame_allocator().free(pa.pfn(), order));
}

/// A new zeroed anonymous page for page `index` of the address space
/// `handle`: an order-0 folio, mapcount 1 and refcount 1 for the PTE the
/// caller writes next (see `mm::anon`). `None` when memory is short.
pub fn alloc_anon_page(handle: u64, index: u64) -> Option<PhysAddr> {
    // Interrupts off around the allocator's lock (see `crate::sync`); the
    // zeroing inside is of a frame nobody else can see yet.
    let folio = crate::sync::without_interrupts(|| {
        mm::anon::alloc_anon_folio(frame_allocator(), AllocKind::Normal, handle, index, |pa| {
            zero_frames(pa, 0)
        })
    })
    .ok()?;
    crate::reclaim::lru_add(folio);
    Some(PhysAddr::new(folio.pfn() << 12))
}

/// A new zeroed huge anonymous folio (order 9) for the 2 MiB block whose
/// first page is `index` of the space `handle`: entire mapcount 1 and
/// refcount 1 for the PMD the caller writes next (see `mm::thp`). `None`
/// when no free 2 MiB block is left above the watermark.
pub fn alloc_anon_huge(handle: u64, index: u64) -> Option<PhysAddr> {
    // The allocator's lock with interrupts off; the 2 MiB of zeroing after
    // it (interrupts still off: this runs inside a fault) is of frames
    // nobody else can see yet.
    let folio = crate::sync::without_interrupts(|| {
        mm::thp::alloc_anon_huge_folio(frame_allocator(), AllocKind::Normal, handle, index, |pa| {
            zero_frames(pa, mm::thp::HPAGE_ORDER)
        })
    })
    .ok()?;
    crate::reclaim::lru_add(folio);
    Some(PhysAddr::new(folio.pfn() << 12))
}

/// The huge zero folio, made once at boot ([`init_huge_zero`]).
static HUGE_ZERO: spin::Once<Option<u64>> = spin::Once::new();

/// Makes the huge zero folio (2 MiB of zeros, kept for good). Boot CPU,
/// once, after [`init`]. Without a free 2 MiB block, read faults in huge
/// ranges map 4 KiB pages instead.
pub fn init_huge_zero() {
    HUGE_ZERO.call_once(|| {
        crate::sync::without_interrupts(|| {
            mm::thp::alloc_huge_zero_folio(frame_allocator(), |pa| zero_frames(pa, mm::thp::HPAGE_ORDER))
        })
        .ok()
        .map(|f| f.pfn())
    });
}

/// The huge zero folio's first frame, if it was made.
pub fn huge_zero() -> Option<PhysAddr> {
    HUGE_ZERO.get().copied().flatten().map(|pfn| PhysAddr::new(pfn << 12))
}

/// Gives back a folio whose last reference is gone, taking it off the LRU
/// lists first (`crate::reclaim`).
pub fn free_folio(folio: Folio<'_>) {
    crate::sync::without_interrupts(|| {
        if folio.test_flag(mm::page::PageFlag::Lru) {
            crate::reclaim::lru_remove(folio);
        }
        frame_allocator().free_folio(folio)
    });
}

/// Drops the reference a removed mapping held on `folio` (the second step
/// of unmapping an anonymous page, after the TLB shootdown), freeing the
/// folio when it was the last.
pub fn put_anon_folio(folio: Folio<'_>) {
    if folio.put() {
        free_folio(folio);
    }
}

/// Copies the 4 KiB frame at `src` to the frame at `dst` (copy on write).
pub fn copy_page(dst: PhysAddr, src: PhysAddr) {
    let (d, s) = (phys_to_virt(dst).as_u64() as *mut u8, phys_to_virt(src).as_u64() as *const u8);
    // SAFETY: both are RAM frames mapped read-write in the direct map; the
    // caller owns `dst` (just allocated, unpublished) and holds a reference
    // on `src`, which nobody writes meanwhile (it is mapped read-only and
    // its write-protection was flushed everywhere). Distinct frames.
    unsafe { core::ptr::copy_nonoverlapping(s, d, PAGE_SIZE as usize) };
}

/// Fills `2^order` frames at `pa` with zeros.
pub fn zero_frames(pa: PhysAddr, order: u8) {
    let va = phys_to_virt(pa).as_u64() as *mut u8;
    // SAFETY: the caller owns the frames (just allocated); they are RAM,
    // mapped read-write in the direct map.
    unsafe { core::ptr::write_bytes(va, 0, (PAGE_SIZE << order) as usize) };
}

/// Free frames in the buddy allocator (0 before [`init`]).
pub fn nr_free_frames() -> u64 {
    FRAMES.get().map_or(0, |f| f.nr_free_pages())
}

/// The root table the kernel booted with.
pub fn kernel_root() -> PhysAddr {
    PhysAddr::new(KERNEL_ROOT.load(Ordering::Relaxed))
}

/// Bytes of heap in use.
pub fn heap_used() -> usize {
    crate::sync::without_interrupts(|| HEAP.0.lock().used())
}

/// The usable memory the boot path reported.
pub fn boot_memory() -> Option<&'static MemoryMap> {
    BOOT_MEMORY.get()
}

// ---------------------------------------------------------------- tests

fn heap_box_vec_and_reuse(_: &TestEnv<'_>) -> Result<(), String> {
    let before = heap_used();
    let b = Box::new(0x1234_5678_u64);
    let mut v: Vec<u32> = Vec::new();
    for i in 0..10_000 {
        v.push(i * 3);
    }
    if *b != 0x1234_5678 || v.iter().enumerate().any(|(i, &x)| x != i as u32 * 3) {
        return Err("heap data changed under us".into());
    }
    // A large block, written and read in full.
    let mut big = alloc::vec![0u8; 1 << 20];
    for (i, byte) in big.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    if big.iter().enumerate().any(|(i, &x)| x != (i % 251) as u8) {
        return Err("1 MiB heap block did not keep its contents".into());
    }
    drop((b, v, big));
    let after = heap_used();
    if after != before {
        return Err(format!("heap use went from {before} to {after} bytes after freeing everything"));
    }
    Ok(())
}

fn heap_exhaustion_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    // More than the whole heap: must fail as a result, not a crash.
    let mut v: Vec<u8> = Vec::new();
    match v.try_reserve_exact(HEAP_SIZE as usize * 2) {
        Err(_) => {}
        Ok(()) => return Err("reserving twice the heap succeeded".into()),
    }
    // And the heap still works afterwards.
    let ok: Vec<u64> = (0..100).collect();
    if ok.iter().sum::<u64>() != 4950 {
        return Err("heap broken after a failed allocation".into());
    }
    Ok(())
}

fn frames_are_usable_ram(_: &TestEnv<'_>) -> Result<(), String> {
    let map = boot_memory().ok_or("no boot memory map")?;
    let free_before = nr_free_frames();
    let mut frames = Vec::new();
    for _ in 0..64 {
        let f = alloc_frames(0).map_err(|e| format!("frame allocator failed: {e:?}"))?;
        if !f.is_aligned(PAGE_SIZE) {
            return Err(format!("frame {f} is not page-aligned"));
        }
        if !map.ranges().iter().any(|r| r.contains(f)) {
            return Err(format!("frame {f} is not in usable memory {map:?}"));
        }
        if frames.contains(&f) {
            return Err(format!("frame {f} handed out twice"));
        }
        frames.push(f);
    }
    // Fill each frame through the direct map with its own pattern, then
    // check them all: distinct frames, really RAM, really mapped.
    for (i, f) in frames.iter().enumerate() {
        let p = phys_to_virt(*f).as_u64() as *mut u64;
        for w in 0..(PAGE_SIZE / 8) as usize {
            // SAFETY: the frame is ours (just allocated), mapped read-write
            // in the direct map, and `w` stays within its 512 words.
            unsafe { p.add(w).write_volatile(((i as u64) << 32) | w as u64) };
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let p = phys_to_virt(*f).as_u64() as *const u64;
        for w in 0..(PAGE_SIZE / 8) as usize {
            // SAFETY: as above, reading back what we wrote.
            let got = unsafe { p.add(w).read_volatile() };
            if got != ((i as u64) << 32) | w as u64 {
                return Err(format!("frame {f} word {w}: read {got:#x}"));
            }
        }
    }
    let used = free_before - nr_free_frames();
    for f in frames {
        free_frames(f, 0);
    }
    if used != 64 {
        return Err(format!("64 frames allocated but the free count fell by {used}"));
    }
    Ok(())
}

fn every_order_drains_and_refills(_: &TestEnv<'_>) -> Result<(), String> {
    // Take *all* memory at each order (reserve included), give it back, and
    // find the allocator exactly as it was.
    let frames = frame_allocator();
    let start: Vec<u64> = (0..=MAX_ORDER).map(|o| frames.nr_free_blocks(o)).collect();
    let free_before = frames.nr_free_pages();
    for order in 0..=MAX_ORDER {
        let mut blocks = Vec::new();
        // Interrupts off around each call, as for every allocator call
        // (see `crate::sync`).
        let alloc = || crate::sync::without_interrupts(|| frames.alloc(order, AllocKind::Reserve));
        while let Ok(pfn) = alloc() {
            blocks.push(pfn);
        }
        let left = frames.nr_free_pages();
        if left >= 1 << order {
            // Fragmentation may leave free pages, but never a free block of
            // this order or larger.
            if (order..=MAX_ORDER).any(|o| frames.nr_free_blocks(o) > 0) {
                return Err(format!("order {order}: allocation failed with blocks of that order free"));
            }
        }
        if order == 0 && left != 0 {
            return Err(format!("order 0: {left} pages left free after draining"));
        }
        for pfn in blocks.drain(..) {
            crate::sync::without_interrupts(|| frames.free(pfn, order));
        }
        if frames.nr_free_pages() != free_before {
            return Err(format!(
                "order {order}: {} pages free after refilling, {free_before} before",
                frames.nr_free_pages()
            ));
        }
        crate::sync::without_interrupts(|| frames.check_consistency())
            .map_err(|e| format!("order {order}: {e}"))?;
    }
    let end: Vec<u64> = (0..=MAX_ORDER).map(|o| frames.nr_free_blocks(o)).collect();
    if start != end {
        return Err(format!("free blocks per order {start:?} before, {end:?} after"));
    }
    Ok(())
}

fn huge_frames_are_aligned_and_distinct(_: &TestEnv<'_>) -> Result<(), String> {
    let mut blocks = Vec::new();
    for _ in 0..8 {
        let pa = alloc_frames(9).map_err(|e| format!("order 9: {e:?}"))?;
        if !pa.is_aligned(2 * 1024 * 1024) {
            return Err(format!("order-9 block at {pa} is not 2 MiB aligned"));
        }
        blocks.push(pa);
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    let overlap = sorted.windows(2).any(|w| w[1].as_u64() - w[0].as_u64() < 2 * 1024 * 1024);
    for pa in blocks {
        free_frames(pa, 9);
    }
    if overlap {
        return Err(format!("order-9 blocks overlap: {sorted:?}"));
    }
    Ok(())
}

fn concurrent_alloc_from_every_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    // A task pinned to every CPU allocates and frees blocks of random
    // orders, stamping each block it owns and checking the stamp before it
    // frees it: a block handed to two CPUs at once shows up as a wrong stamp.
    let before = nr_free_frames();
    let handles: Result<Vec<_>, _> = crate::sched::online_cpus()
        .map(|cpu| {
            crate::sched::spawn_on(cpu, "allocator", move || -> Result<(), String> {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (cpu as u64 + 1);
                let mut held: Vec<(PhysAddr, u8, u64)> = Vec::new();
                for round in 0..3000u64 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if held.len() < 48 && !seed.is_multiple_of(3) {
                        let order = (seed >> 8) as u8 % 5;
                        let Ok(pa) = alloc_frames(order) else { continue };
                        let stamp = (cpu as u64) << 48 | round;
                        // SAFETY: the block is ours until we free it; RAM in the direct map.
                        unsafe { (phys_to_virt(pa).as_u64() as *mut u64).write_volatile(stamp) };
                        held.push((pa, order, stamp));
                    } else if !held.is_empty() {
                        let (pa, order, stamp) = held.swap_remove((seed >> 16) as usize % held.len());
                        // SAFETY: as above.
                        let seen = unsafe { (phys_to_virt(pa).as_u64() as *const u64).read_volatile() };
                        if seen != stamp {
                            return Err(format!(
                                "CPU {cpu}: block {pa} holds {seen:#x}, not its stamp {stamp:#x}"
                            ));
                        }
                        free_frames(pa, order);
                    }
                }
                for (pa, order, _) in held {
                    free_frames(pa, order);
                }
                Ok(())
            })
        })
        .collect();
    for h in handles.map_err(|e| format!("spawn_on: {e:?}"))? {
        h.join()?;
    }
    crate::sync::without_interrupts(|| frame_allocator().check_consistency()).map_err(|e| format!("{e}"))?;
    let after = nr_free_frames();
    if after != before {
        return Err(format!("{before} frames free before, {after} after"));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = &[
    Test { name: "frame::concurrent_alloc_from_every_cpu", run: concurrent_alloc_from_every_cpu },
    Test { name: "heap::box_vec_and_reuse", run: heap_box_vec_and_reuse },
    Test { name: "heap::exhaustion_is_an_error", run: heap_exhaustion_is_an_error },
    Test { name: "frame::frames_are_usable_ram", run: frames_are_usable_ram },
    Test { name: "frame::huge_frames_are_aligned_and_distinct", run: huge_frames_are_aligned_and_distinct },
    Test { name: "frame::every_order_drains_and_refills", run: every_order_drains_and_refills },
];
