//! Physical memory in the running kernel: the direct map, the kernel heap,
//! the page descriptor array (memmap) and the buddy frame allocator.
//!
//! ## Protocol
//!
//! [`init`] runs once, on the boot CPU, before anything allocates:
//! 1. an [`EarlyFrameAllocator`] takes the usable memory;
//! 2. it gives [`BOOT_HEAP_SIZE`] contiguous bytes to the heap (`Box`,
//!    `Vec`, ...), which later grows from the buddy allocator ([`heap`]);
//! 3. it gives the frames for the memmap: one 64-byte [`Page`] per 4 KiB
//!    frame from the lowest to the highest usable frame;
//! 4. the buddy [`FrameAllocator`] takes over every frame the early
//!    allocator has not handed out, and the early allocator retires.
//!
//! From then on frames come from [`alloc_frames`] / [`free_frames`].
//!
//! ## Kernel memory is zeroed when taken
//!
//! Memory the kernel keeps for itself and writes a few bytes at a time (the
//! heap, task and CPU stacks, page tables, DMA rings and headers) is zeroed
//! once when it is taken, even where nothing reads the zeros. The firmware
//! ran code from RAM it then reports usable (UEFI's boot services, the
//! bootloader itself); QEMU's TCG keeps its translations of that code, and a
//! write to a page holding one goes through TCG's slow self-modifying-code
//! path, hundreds of times slower than a plain store, until a write covers
//! the translated bytes. Partial writes never may: a stack on such a page
//! made every fault after a UEFI boot 50 times slower. Zeroing the whole
//! block covers them. User pages need nothing extra: they are zeroed or
//! copied whole before use. (The book's "Running" chapter tells the story.)
//!
//! | module | what |
//! | --- | --- |
//! | [`heap`] | the kernel heap: a boot region that grows from the buddy allocator and gives the growth back |
//! | [`paging`] | `mm::pgtable` over this arch's real format: table memory through the direct map, the kernel's shared half |
//! | [`stacks`] | kernel stacks in a window of the kernel half, each with an unmapped guard below it |
//!
//! Locks: the allocator's own spin lock and the heap's lock (see [`heap`]),
//! both leaves taken with interrupts off (the order of all
//! locks: the book's `docs/src/locking.md`).

pub mod heap;
pub mod paging;
pub mod stacks;

use crate::arch::prelude::*;
use crate::bootinfo::BootInfo;
use crate::println;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::early::EarlyFrameAllocator;
use mm::frame::{AllocError, AllocKind, FrameAllocator};
use mm::memmap::MemoryMap;
use mm::page::{Memmap, Page};
use mm::Pfn;
use mm::{PhysAddr, VirtAddr, PAGE_SIZE};

pub use heap::BOOT_HEAP_SIZE;

/// The page descriptors of every frame from the lowest to the highest
/// usable one.
static MEMMAP: spin::Once<Memmap> = spin::Once::new();
/// The buddy allocator over [`MEMMAP`].
static FRAMES: spin::Once<FrameAllocator> = spin::Once::new();
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
/// RAM (the heap, the memmap, frames from the allocator), or in a task's
/// stack ([`stacks::virt_to_phys`]: each stack is one contiguous block);
/// None for any other address (the kernel image on x86_64, the boot stack,
/// MMIO, user addresses) or before [`init`].
pub fn virt_to_phys(va: VirtAddr) -> Option<PhysAddr> {
    if let Some(pa) = stacks::virt_to_phys(va) {
        return Some(pa);
    }
    let offset = DIRECT_MAP_OFFSET.load(Ordering::Relaxed);
    let ram_end = BOOT_MEMORY.get()?.ranges().last()?.end.as_u64();
    let pa = va.as_u64().checked_sub(offset)?;
    (offset != 0 && pa < ram_end).then(|| PhysAddr::new(pa))
}

/// Sets up the heap, the memmap and the frame allocator. Boot CPU, once.
pub fn init(info: &BootInfo) -> Result<(), InitError> {
    DIRECT_MAP_OFFSET.store(info.direct_map_offset, Ordering::Relaxed);
    let map = BOOT_MEMORY.call_once(|| info.memory.clone());
    let mut early = EarlyFrameAllocator::new(map.clone());
    let heap = early
        .alloc_contiguous(BOOT_HEAP_SIZE / PAGE_SIZE, PAGE_SIZE)
        .map_err(|_| InitError::NoRoomForHeap { needed: BOOT_HEAP_SIZE, usable: map.total_bytes() })?;
    let heap_va = phys_to_virt(heap);
    HEAP_START.store(heap_va.as_u64(), Ordering::Relaxed);
    // Zeroed once: see "Kernel memory is zeroed when taken" above.
    // SAFETY: the early allocator just gave these frames to the heap,
    // which has not started: nothing else reaches them.
    unsafe { zero_frames(heap, (BOOT_HEAP_SIZE / PAGE_SIZE).trailing_zeros() as u8) };
    // SAFETY: the frames were just taken from the early allocator, which
    // never hands them out again; they are RAM, mapped read-write in the
    // direct map at `heap_va`, and `init` runs once, before any allocation.
    unsafe { heap::init(heap_va.as_u64() as usize) };

    // The memmap covers [first usable pfn, last usable pfn]; holes in it
    // stay Reserved.
    let first_pfn = map.ranges().first().map_or(Pfn::default(), |r| r.start.pfn());
    let end_pfn = map.ranges().last().map_or(Pfn::default(), |r| r.end.pfn());
    let nr_pages = end_pfn.since(first_pfn) as usize;
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
        "memory: heap {} MiB at {:#x} (grows from the buddy allocator); memmap {} descriptors x {} bytes = {} KiB ({:.2}% of RAM)",
        BOOT_HEAP_SIZE / (1024 * 1024),
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

/// The frame allocator's allocation-failure injector (`mm::fail_alloc`;
/// the kernel argument `fail_alloc=`, the `fail_alloc::` sweep).
pub fn fail_alloc() -> &'static mm::fail_alloc::FailAlloc {
    frame_allocator().fail_alloc()
}

/// `2^order` contiguous frames (normal priority: fails at the min
/// watermark).
pub fn alloc_frames(order: u8) -> Result<PhysAddr, AllocError> {
    alloc_frames_of(order, AllocKind::Normal)
}

/// `2^order` contiguous frames of the priority `kind`: `Reserve` may go
/// below the min watermark, and is for the work that frees memory
/// (reclaim's page-table splits), never for work that grows with a
/// workload.
pub fn alloc_frames_of(order: u8, kind: AllocKind) -> Result<PhysAddr, AllocError> {
    // Interrupts off around the allocator's lock: its holder must not be
    // preempted (see `crate::sync`).
    let pfn = crate::sync::without_interrupts(|| frame_allocator().alloc(order, kind))?;
    Ok(pfn.phys())
}

/// Gives back frames from [`alloc_frames`].
pub fn free_frames(pa: PhysAddr, order: u8) {
    crate::sync::without_interrupts(|| frame_allocator().free(pa.pfn(), order));
}

/// Fills `2^order` frames at `pa` with zeros.
///
/// # Safety
///
/// The `2^order` frames from `pa` are RAM the caller owns: allocated from
/// the frame allocator (or reserved at boot) and not yet published, so
/// that nothing else (no Rust object, no device, no other CPU) reads or
/// writes them until this returns.
pub unsafe fn zero_frames(pa: PhysAddr, order: u8) {
    let va = phys_to_virt(pa).as_u64() as *mut u8;
    // SAFETY: RAM (caller's contract), mapped read-write in the direct
    // map, and owned by the caller, so no one else sees the writes.
    unsafe { core::ptr::write_bytes(va, 0, (PAGE_SIZE << order) as usize) };
}

/// Free frames in the buddy allocator (0 before [`init`]).
pub fn nr_free_frames() -> u64 {
    FRAMES.get().map_or(0, |f| f.nr_free_pages())
}

/// The root table the kernel runs on (`Arch::kernel_root`; x86_64: the one
/// it booted with, the template of the kernel half every address space
/// shares; AArch64: TTBR1's).
pub fn kernel_root() -> PhysAddr {
    Arch::kernel_root()
}

/// Bytes of heap in use.
pub fn heap_used() -> usize {
    heap::used()
}

/// The usable memory the boot path reported.
pub fn boot_memory() -> Option<&'static MemoryMap> {
    BOOT_MEMORY.get()
}
