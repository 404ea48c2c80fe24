//! Boot-time memory: the early frame allocator over the boot memory map, the
//! direct map, and the kernel heap carved out of it.
//!
//! ## Protocol
//!
//! [`init`] runs once, on the boot CPU, before anything allocates: it makes an
//! [`EarlyFrameAllocator`] over the usable memory, takes [`HEAP_SIZE`] bytes
//! of contiguous frames from it, and gives them to the heap. After that,
//! `alloc` works (`Box`, `Vec`, ...) and frames come from
//! [`alloc_early_frame`] until the buddy allocator (issue 3) takes over what
//! the early allocator has not handed out.
//!
//! Locks: [`EARLY`] (a spin lock) guards the early allocator; the heap has its
//! own lock inside `LockedHeap`. Neither is taken while holding the other.

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
use mm::early::{EarlyFrameAllocator, OutOfFrames};
use mm::memmap::MemoryMap;
use mm::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Size of the kernel heap.
pub const HEAP_SIZE: u64 = 16 * 1024 * 1024;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The early frame allocator; `None` before [`init`].
static EARLY: spin::Mutex<Option<EarlyFrameAllocator>> = spin::Mutex::new(None);
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
        }
    }
}

/// The virtual address at which physical address `pa` is mapped.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.as_u64() + DIRECT_MAP_OFFSET.load(Ordering::Relaxed))
}

/// Sets up the early allocator and the heap. Boot CPU, once.
pub fn init(info: &BootInfo) -> Result<(), InitError> {
    DIRECT_MAP_OFFSET.store(info.direct_map_offset, Ordering::Relaxed);
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
    unsafe { HEAP.lock().init(heap_va.as_u64() as *mut u8, HEAP_SIZE as usize) };
    *EARLY.lock() = Some(early);
    Ok(())
}

/// Prints the heap and early-allocator state.
pub fn print_summary() {
    let free = EARLY.lock().as_ref().map_or(0, |e| e.nr_free());
    println!(
        "memory: heap {} MiB at {:#x}; early frame allocator: {} frames free",
        HEAP_SIZE / (1024 * 1024),
        HEAP_START.load(Ordering::Relaxed),
        free
    );
}

/// One frame from the early allocator.
pub fn alloc_early_frame() -> Result<PhysAddr, OutOfFrames> {
    match EARLY.lock().as_mut() {
        Some(early) => early.alloc_frame(),
        None => Err(OutOfFrames { nr_frames: 1 }),
    }
}

/// Frames the early allocator has not handed out.
pub fn nr_early_frames_free() -> u64 {
    EARLY.lock().as_ref().map_or(0, |e| e.nr_free())
}

/// Bytes of heap in use.
pub fn heap_used() -> usize {
    HEAP.lock().used()
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

fn early_frames_are_usable_ram(_: &TestEnv<'_>) -> Result<(), String> {
    let map = boot_memory().ok_or("no boot memory map")?;
    let free_before = nr_early_frames_free();
    let mut frames = Vec::new();
    for _ in 0..64 {
        let f = alloc_early_frame().map_err(|e| format!("early allocator failed: {e:?}"))?;
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
            // SAFETY: the frame is ours (just allocated, never freed by the
            // bump allocator), mapped read-write in the direct map, and `w`
            // stays within its 512 words.
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
    let used = free_before - nr_early_frames_free();
    if used != 64 {
        return Err(format!("64 frames allocated but the free count fell by {used}"));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = &[
    Test { name: "heap::box_vec_and_reuse", run: heap_box_vec_and_reuse },
    Test { name: "heap::exhaustion_is_an_error", run: heap_exhaustion_is_an_error },
    Test { name: "early_alloc::frames_are_usable_ram", run: early_frames_are_usable_ram },
];
