//! Page tables in the running kernel: `mm::pgtable` over the real format of
//! this arch, with table frames from the buddy allocator reached through the
//! direct map, and address spaces the CPU really walks.
//!
//! ## Protocol
//!
//! - [`KernelTables`] implements `TableMemory`: entries are read and written
//!   as `AtomicU64` through the direct map; every write is followed by the
//!   arch's table-write barrier (AArch64 `DSB ISHST; ISB`), so a walk that
//!   follows sees it.
//! - [`TestSpace`] is a fresh lower-half address space: its root shares
//!   the kernel root's `Arch::KERNEL_SHARED` entries (x86_64: PML4 entries
//!   256..512, the upper half; AArch64: none, the kernel lives in TTBR1 and
//!   the root goes in TTBR0 alone). [`TestSpace::activate`] makes it the
//!   running task's address space (through the scheduler, so preemption
//!   keeps it) until the returned guard drops.
//! - Changes flush through the arch's `Arch::TLB`: every test here
//!   reads through the MMU after the change, so a missing flush fails it.

use crate::arch::prelude::*;
use crate::memory;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::frame::AllocKind;
use mm::page::PageFlag;
use mm::pgtable::TableMemory;
use mm::PhysAddr;

/// This arch's page-table format.
pub use crate::arch::Format;

/// Table memory of the running kernel.
pub struct KernelTables;

/// The page-table entry at `pa`, through the direct map.
///
/// # Safety
///
/// `pa` is inside a page-table frame (RAM, so in the direct map) that stays
/// a table while the returned reference is used: a table reached from a
/// live root or just made by [`TableMemory::alloc_table`]. Its entries are
/// only ever accessed atomically (here and by the hardware walker), never
/// through a plain Rust reference. Alignment is checked (a panic).
unsafe fn entry_at(pa: PhysAddr) -> &'static AtomicU64 {
    assert!(pa.is_aligned(8), "entry_at: unaligned entry address {pa}");
    let va = memory::phys_to_virt(pa).as_u64();
    // SAFETY: an 8-aligned (checked above) address inside a page-table
    // frame (contract), which is RAM mapped read-write in the direct map;
    // entries are only ever accessed atomically, so viewing one as an
    // AtomicU64 is sound. The `'static` is the caller's to keep (contract).
    unsafe { &*(va as *const AtomicU64) }
}

impl TableMemory for KernelTables {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        // SAFETY: `mm::pgtable`, the one user of `TableMemory`, passes only
        // addresses of entries in tables it walks from a live root or just
        // got from `alloc_table`, and frees a table only once no entry
        // points at it (`TableMemory::free_table`); the reference ends here.
        unsafe { entry_at(pa) }.load(Ordering::Acquire)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        self.write_entry_batched(pa, value);
        Arch::table_write_barrier();
    }
    fn write_entry_batched(&self, pa: PhysAddr, value: u64) {
        // SAFETY: as in `read_entry`.
        unsafe { entry_at(pa) }.store(value, Ordering::Release);
    }
    fn publish_writes(&self) {
        Arch::table_write_barrier();
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        new_table(AllocKind::Normal, &NR_TABLES)
    }
    fn free_table(&self, pa: PhysAddr) {
        free_table(pa, &NR_TABLES)
    }
}

/// Table frames [`KernelTables`] and [`ReserveTables`] have handed out
/// (each marked `PageFlag::PageTable` in the memmap) and not taken back:
/// the lower-half tables of every address space (the kernel's own tables
/// are made at boot or by [`KernelHalfTables`], not here). The consistency
/// checker compares it with the tables it reaches, at rest.
static NR_TABLES: AtomicU64 = AtomicU64::new(0);

/// Table frames handed out and not given back ([`NR_TABLES`]).
pub fn nr_tables() -> u64 {
    NR_TABLES.load(Ordering::Relaxed)
}

/// [`KernelTables`] whose new tables may come from the reserve below the
/// min watermark: for reclaim, which must split a huge page's PMD into a
/// table of swap entries exactly when memory is lowest. Reclaim frees 512
/// pages for the one it takes.
pub struct ReserveTables;

impl TableMemory for ReserveTables {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        KernelTables.read_entry(pa)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        KernelTables.write_entry(pa, value)
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        new_table(AllocKind::Reserve, &NR_TABLES)
    }
    fn free_table(&self, pa: PhysAddr) {
        KernelTables.free_table(pa)
    }
}

/// [`KernelTables`] for the kernel's own half made after boot (the window
/// of kernel stacks, `memory::stacks`): the same entries and frames, but
/// its tables are counted apart ([`nr_kernel_tables`]), since no address
/// space's walk reaches them and the checker's count of lower-half tables
/// must not include them.
pub struct KernelHalfTables;

/// Table frames [`KernelHalfTables`] has handed out and not taken back.
static NR_KERNEL_TABLES: AtomicU64 = AtomicU64::new(0);

/// Table frames of the kernel's own half handed out after boot.
pub fn nr_kernel_tables() -> u64 {
    NR_KERNEL_TABLES.load(Ordering::Relaxed)
}

impl TableMemory for KernelHalfTables {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        KernelTables.read_entry(pa)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        KernelTables.write_entry(pa, value)
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        new_table(AllocKind::Normal, &NR_KERNEL_TABLES)
    }
    fn free_table(&self, pa: PhysAddr) {
        free_table(pa, &NR_KERNEL_TABLES)
    }
}

/// A zeroed table frame, marked `PageTable` and counted in `count`.
fn new_table(kind: AllocKind, count: &AtomicU64) -> Option<PhysAddr> {
    let pa = memory::alloc_frames_of(0, kind).ok()?;
    // SAFETY: just allocated, not yet in any table: ours alone.
    unsafe { memory::zero_frames(pa, 0) };
    if let Some(page) = memory::frame_allocator().memmap().get(pa.pfn()) {
        page.set_flag(PageFlag::PageTable);
    }
    count.fetch_add(1, Ordering::Relaxed);
    Some(pa)
}

/// Gives back a table frame [`new_table`] handed out and counted in `count`.
fn free_table(pa: PhysAddr, count: &AtomicU64) {
    count.fetch_sub(1, Ordering::Relaxed);
    if let Some(page) = memory::frame_allocator().memmap().get(pa.pfn()) {
        page.clear_flag(PageFlag::PageTable);
    }
    memory::free_frames(pa, 0);
}
