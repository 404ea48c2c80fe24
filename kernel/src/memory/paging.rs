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
//! - [`TestSpace`] is a fresh lower-half address space: on x86_64 its root
//!   shares the kernel's upper half (PML4 entries 256..512, copied from the
//!   boot root); on AArch64 the kernel lives in TTBR1 and the root goes in
//!   TTBR0 alone. [`TestSpace::activate`] makes it the running task's
//!   address space (through the scheduler, so preemption keeps it) until
//!   the returned guard drops.
//! - Changes flush through the arch's [`arch::mmu::Tlb`]: every test here
//!   reads through the MMU after the change, so a missing flush fails it.

use crate::arch;
use crate::memory;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::pgtable::TableMemory;
use mm::PhysAddr;

/// This arch's page-table format.
#[cfg(target_arch = "x86_64")]
pub type Format = arch::pgtable::X86Format;
/// This arch's page-table format.
#[cfg(target_arch = "aarch64")]
pub type Format = arch::pgtable::Aarch64Format;

/// Top-level entries an address space shares with the kernel.
#[cfg(target_arch = "x86_64")]
pub const KERNEL_SHARED: core::ops::Range<usize> = 256..512;
/// Top-level entries an address space shares with the kernel (none: the
/// kernel half has its own root in TTBR1).
#[cfg(target_arch = "aarch64")]
pub const KERNEL_SHARED: core::ops::Range<usize> = 0..0;

/// Table memory of the running kernel.
pub struct KernelTables;

fn entry_at(pa: PhysAddr) -> &'static AtomicU64 {
    assert!(pa.is_aligned(8), "entry_at: unaligned entry address {pa}");
    let va = memory::phys_to_virt(pa).as_u64();
    // SAFETY: `pa` is an 8-aligned address inside a page-table frame (the
    // only addresses `mm::pgtable` passes), which is RAM mapped read-write
    // in the direct map for the kernel's whole life; page-table entries are
    // only ever accessed atomically (by us and by the hardware walker), so
    // viewing them as AtomicU64 is sound.
    unsafe { &*(va as *const AtomicU64) }
}

impl TableMemory for KernelTables {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        entry_at(pa).load(Ordering::Acquire)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        entry_at(pa).store(value, Ordering::Release);
        arch::mmu::table_write_barrier();
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        let pa = memory::alloc_frames(0).ok()?;
        memory::zero_frames(pa, 0);
        Some(pa)
    }
    fn free_table(&self, pa: PhysAddr) {
        memory::free_frames(pa, 0);
    }
}
