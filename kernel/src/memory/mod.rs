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
//! ## NUMA nodes
//!
//! Step 4 cuts every range at the node boundaries of the boot info's
//! [`NumaMap`] and gives each piece to its node's pool
//! ([`FrameAllocator::add_free_range_on`]; RAM no node claims goes to node
//! 0, with a line saying how much). Each CPU's node (by its hardware id;
//! node 0 when the firmware does not list it) is kept in `CPU_NODE`, and
//! the allocator's local-node hook returns the current CPU's: every
//! allocation that names no node, the fault path's folios and page tables
//! among them, prefers the node of the CPU it runs on, and falls back to
//! the others in turn. [`alloc_frames_on`] and [`alloc_folio_on`] take
//! from one node only; [`node_of_pfn`] says which node a frame is on.
//! Without NUMA information everything is node 0. [`print_summary`] prints
//! one `numa: node N: ...` line per node (the runner counts them).
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
//! Locks: the allocator's own spin locks and the heap's lock (see [`heap`]),
//! both leaves taken with interrupts off (the order of all
//! locks: the book's `docs/src/locking.md`).

pub mod heap;
pub mod paging;
pub mod stacks;

use crate::arch::prelude::*;
use crate::bootinfo::{BootInfo, MAX_CPUS};
use crate::println;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use mm::early::EarlyFrameAllocator;
use mm::folio::UnpublishedFolio;
use mm::frame::{AllocError, AllocKind, FrameAllocator};
use mm::memmap::{MemoryMap, PhysRange};
use mm::numa::{NodeId, NumaMap};
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
/// The NUMA nodes as the boot path described them (empty: one node).
static NUMA: spin::Once<NumaMap> = spin::Once::new();
/// Each CPU's node (by kernel CPU index), set by [`init`] before any
/// other CPU runs; read without a lock by the allocator's local-node hook.
static CPU_NODE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// How many CPUs the boot info listed (the valid part of `CPU_NODE`).
static NR_CPUS_LISTED: AtomicU64 = AtomicU64::new(1);

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
    let numa = NUMA.call_once(|| info.numa);
    let mut uncovered = 0;
    for r in early.remaining() {
        uncovered += numa.split(r, |piece, node| {
            frames
                .add_free_range_on(node, piece.start.pfn(), piece.end.pfn())
                .expect("memory::init: a usable range outside the memmap, or too many pieces")
        });
    }
    if uncovered > 0 {
        println!("numa: {} KiB of usable RAM lie in no node's range; node 0 takes them", uncovered / 1024);
    }
    let ids = info.cpus.ids();
    NR_CPUS_LISTED.store(ids.len() as u64, Ordering::Relaxed);
    for (cpu, &hw_id) in ids.iter().enumerate() {
        let node = numa.node_of_cpu(hw_id);
        if node.is_none() && !numa.is_empty() {
            println!("numa: CPU {cpu} (hardware id {hw_id:#x}) is in no node; node 0 takes it");
        }
        CPU_NODE[cpu].store(node.unwrap_or(NodeId::ZERO).index() as u8, Ordering::Relaxed);
    }
    frames.set_local_node_hook(local_node);
    Ok(())
}

/// The allocator's local-node hook: the current CPU's node.
fn local_node() -> NodeId {
    cpu_node(Arch::cpu_index())
}

/// The node of kernel CPU `cpu` (node 0 for a CPU the boot info did not list).
pub fn cpu_node(cpu: usize) -> NodeId {
    let node = CPU_NODE.get(cpu).map_or(0, |n| n.load(Ordering::Relaxed));
    NodeId::new(node as usize).unwrap_or(NodeId::ZERO)
}

/// The NUMA nodes: at least 1 (those the firmware declared, or that hold
/// memory).
pub fn nr_nodes() -> usize {
    let firmware = NUMA.get().map_or(1, NumaMap::nr_nodes);
    FRAMES.get().map_or(1, FrameAllocator::nr_nodes).max(firmware)
}

/// The NUMA map the boot path gave (empty before [`init`] and without
/// NUMA information).
pub fn numa_map() -> &'static NumaMap {
    static EMPTY: NumaMap = NumaMap::new();
    NUMA.get().unwrap_or(&EMPTY)
}

/// The node frame `pfn` is on; None for a frame the allocator never
/// managed (the kernel image, the memmap, holes).
pub fn node_of_pfn(pfn: Pfn) -> Option<NodeId> {
    FRAMES.get()?.node_of(pfn)
}

/// The kernel CPUs of `node`, as a bit set (bit `i` for CPU `i`).
pub fn node_cpus(node: NodeId) -> u64 {
    let nr = (NR_CPUS_LISTED.load(Ordering::Relaxed) as usize).min(MAX_CPUS);
    (0..nr).filter(|&cpu| cpu_node(cpu) == node).fold(0, |set, cpu| set | 1 << cpu)
}

/// `node`'s usable RAM (as the boot path reported it), in address order,
/// adjacent pieces joined; at most `N` ranges, and the number of ranges
/// that did not fit.
pub fn node_memory<const N: usize>(node: NodeId) -> ([PhysRange; N], usize, usize) {
    let mut out = [PhysRange::new(0, 0); N];
    let (mut len, mut more) = (0usize, 0usize);
    for r in boot_memory().map_or(&[][..], MemoryMap::ranges) {
        numa_map().split(*r, |piece, n| {
            if n != node {
                return;
            }
            if len > 0 && out[len - 1].end == piece.start {
                out[len - 1].end = piece.end;
            } else if len < N {
                out[len] = piece;
                len += 1;
            } else {
                more += 1;
            }
        });
    }
    (out, len, more)
}

/// One `numa: node N: M MiB [a-b ...], CPUs c-d` line per node.
fn print_numa() {
    for node in NodeId::all(nr_nodes()) {
        let (ranges, len, more) = node_memory::<4>(node);
        let bytes: u64 = ranges[..len].iter().map(PhysRange::size).sum();
        let mut line = alloc::format!("numa: node {node}: {} MiB", bytes >> 20);
        for (i, r) in ranges[..len].iter().enumerate() {
            let sep = if i == 0 { " [" } else { " " };
            line += &alloc::format!("{sep}{:#x}-{:#x}", r.start.as_u64(), r.end.as_u64());
        }
        if len > 0 {
            line += if more > 0 { " ...]" } else { "]" };
        }
        println!("{line}, CPUs {}", CpuSet(node_cpus(node)));
    }
}

/// A set of CPUs written as ranges: `0-1,4`, or `none`.
struct CpuSet(u64);

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        let mut cpu = 0;
        while cpu < 64 {
            if self.0 & 1 << cpu == 0 {
                cpu += 1;
                continue;
            }
            let start = cpu;
            while cpu < 64 && self.0 & 1 << cpu != 0 {
                cpu += 1;
            }
            f.write_str(if first { "" } else { "," })?;
            first = false;
            match cpu - 1 - start {
                0 => write!(f, "{start}")?,
                _ => write!(f, "{start}-{}", cpu - 1)?,
            }
        }
        Ok(())
    }
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
    print_numa();
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

/// `2^order` contiguous frames from `node` only (normal priority); fails
/// when that node has none, whatever the others hold.
pub fn alloc_frames_on(node: NodeId, order: u8) -> Result<PhysAddr, AllocError> {
    let pfn = crate::sync::without_interrupts(|| frame_allocator().alloc_on(node, order, AllocKind::Normal))?;
    Ok(pfn.phys())
}

/// A new folio of `2^order` pages from `node` only (normal priority),
/// prepared and not yet published; for moving memory to a node.
pub fn alloc_folio_on(node: NodeId, order: u8) -> Result<UnpublishedFolio<'static>, AllocError> {
    crate::sync::without_interrupts(|| frame_allocator().alloc_folio_on(node, order, AllocKind::Normal))
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
