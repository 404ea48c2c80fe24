//! The MMU state the kernel runs with after boot.
//!
//! The boot path enables the MMU with one level-0 table in both TTBR0 (an
//! identity map, needed only for the instructions that turn the MMU on) and
//! TTBR1 (the kernel and the direct map). Once running in the upper half the
//! identity map must go: [`disable_lower_half`] stops all TTBR0 walks, so any
//! lower-half access takes a level-0 translation fault until an address
//! space's root is loaded into TTBR0 (`Mmu::load_user_root`). The kernel
//! half keeps its own root in TTBR1, so address spaces share none of their
//! top-level entries with it (`Mmu::KERNEL_SHARED` is empty).
#![cfg(target_os = "none")]

use crate::pgtable::Aarch64Format;
use crate::Aarch64;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, TCR_EL1};
use arch_common::mmu::{Mmu, TableAlloc};
use core::ops::Range;
use mm::{PhysAddr, VirtAddr};

/// Turns off translation through TTBR0 and drops every cached lower-half
/// translation.
pub fn disable_lower_half() {
    TCR_EL1.modify(TCR_EL1::EPD0::DisableTTBR0Walks);
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation only drops cached translations; the next walk
    // reads the tables again. DSB waits for it to finish, ISB makes later
    // instructions see the result.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}

/// Makes `root` the table for the lower half (TTBR0, ASID 0) and turns
/// TTBR0 walks on; returns the previous TTBR0 value. ASIDs are not used
/// yet, so every switch drops all cached lower-half translations.
///
/// # Safety
/// `root` must be a valid level-0 table that stays allocated while loaded.
pub unsafe fn switch_lower_half(root: PhysAddr) -> u64 {
    let previous: u64;
    // SAFETY: the kernel runs from TTBR1, which is untouched; the new
    // TTBR0 is valid by the caller's promise. ISB makes the register write
    // take effect before the TLB invalidation and before walks resume.
    unsafe {
        core::arch::asm!("mrs {0}, ttbr0_el1", out(reg) previous, options(nomem, nostack));
        core::arch::asm!(
            "msr ttbr0_el1, {0}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            in(reg) root.as_u64(),
            options(nostack)
        );
    }
    TCR_EL1.modify(TCR_EL1::EPD0::EnableTTBR0Walks);
    barrier::isb(barrier::SY);
    previous
}

/// The TLB hooks `mm::pgtable` asks for: broadcast invalidation to every
/// CPU in the inner-shareable domain, then wait for it (`DSB ISH`).
pub struct Tlb;

/// Ranges longer than this many pages are flushed whole.
const MAX_TLBI_PAGES: u64 = 64;

impl mm::pgtable::TlbHooks for Tlb {
    fn flush_range(&self, _root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        let first = start.as_u64() & !0xfff;
        let nr_pages = end.as_u64().saturating_sub(first).div_ceil(4096);
        if nr_pages > MAX_TLBI_PAGES {
            // SAFETY: TLB invalidation only drops cached translations.
            unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
            return;
        }
        // SAFETY: as above. The operand of TLBI VAAE1IS is VA[55:12] in
        // bits 43:0 (all ASIDs).
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
        for i in 0..nr_pages {
            let operand = ((first + i * 4096) >> 12) & ((1 << 44) - 1);
            // SAFETY: as above.
            unsafe { core::arch::asm!("tlbi vaae1is, {0}", in(reg) operand, options(nostack)) };
        }
        // SAFETY: barriers have no effect on memory contents.
        unsafe { core::arch::asm!("dsb ish", "isb", options(nostack)) };
    }

    fn flush_all(&self, _root: PhysAddr) {
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
    }
}

/// This CPU's part of [`Tlb`]: the same invalidations without the
/// broadcast (`TLBI VAAE1`, `VMALLE1`), waited for with `DSB NSH`. For a
/// space no other CPU has loaded (`Mmu::LOCAL_TLB`); the page-table writes
/// before it are made visible to every CPU's walks first (`DSB ISHST`), as
/// a CPU that loads the space later must see them.
pub struct LocalTlb;

impl mm::pgtable::TlbHooks for LocalTlb {
    fn flush_range(&self, _root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        let first = start.as_u64() & !0xfff;
        let nr_pages = end.as_u64().saturating_sub(first).div_ceil(4096);
        if nr_pages > MAX_TLBI_PAGES {
            // SAFETY: TLB invalidation only drops cached translations.
            unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
            return;
        }
        // SAFETY: as above. The operand of TLBI VAAE1 is VA[55:12] in bits
        // 43:0 (all ASIDs).
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
        for i in 0..nr_pages {
            let operand = ((first + i * 4096) >> 12) & ((1 << 44) - 1);
            // SAFETY: as above.
            unsafe { core::arch::asm!("tlbi vaae1, {0}", in(reg) operand, options(nostack)) };
        }
        // SAFETY: barriers have no effect on memory contents.
        unsafe { core::arch::asm!("dsb nsh", "isb", options(nostack)) };
    }

    fn flush_all(&self, _root: PhysAddr) {
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    }
}

/// Why device registers could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapDeviceError {
    /// Outside the boot tables' Device blocks (and nothing else maps
    /// devices on AArch64 yet).
    Unmapped,
}

impl core::fmt::Display for MapDeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapDeviceError::Unmapped => {
                f.write_str("outside the Device blocks of the boot tables (0..1 GiB, 256..512 GiB)")
            }
        }
    }
}

/// The TTBR1_EL1 base-address field (bits 47..1; bit 0 is CnP).
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_fffe;

impl Mmu for Aarch64 {
    type Format = Aarch64Format;
    /// None: the kernel half has a root of its own, in TTBR1.
    const KERNEL_SHARED: Range<usize> = 0..0;
    type Tlb = Tlb;
    const TLB: Tlb = Tlb;
    type LocalTlb = LocalTlb;
    const LOCAL_TLB: LocalTlb = LocalTlb;
    /// `TLBI ... IS` reaches every CPU in the inner-shareable domain.
    const TLB_BROADCAST: bool = true;
    type MapDeviceError = MapDeviceError;

    /// The kernel half's root, in TTBR1.
    fn kernel_root() -> PhysAddr {
        let ttbr1: u64;
        // SAFETY: reading TTBR1_EL1 has no effect.
        unsafe { core::arch::asm!("mrs {0}, ttbr1_el1", out(reg) ttbr1, options(nomem, nostack)) };
        PhysAddr::new(ttbr1 & TTBR_BADDR)
    }

    /// `root` into TTBR0 with its walks on, or TTBR0 walks off.
    unsafe fn load_user_root(root: Option<PhysAddr>) {
        match root {
            // SAFETY: the caller's contract: a live level-0 table that
            // outlives its stay in TTBR0.
            Some(r) => unsafe {
                switch_lower_half(r);
            },
            None => disable_lower_half(),
        }
    }

    /// A walker is an observer of its own: `DSB ISHST` makes the stores
    /// visible to it, `ISB` keeps later instructions from using an old view.
    fn table_write_barrier() {
        // SAFETY: barriers have no effect on memory contents.
        unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
    }

    /// The broadcast invalidation of [`Tlb`] (`TLBI VAAE1IS` reaches every
    /// CPU and every ASID, global entries included).
    fn flush_kernel_range(start: VirtAddr, end: VirtAddr) {
        mm::pgtable::TlbHooks::flush_range(&Tlb, Self::kernel_root(), start, end);
    }

    /// Cleans the data cache to the point of unification, then invalidates
    /// the instruction cache.
    fn code_written(va: VirtAddr, len: u64) {
        let ctr: u64;
        // SAFETY: reading CTR_EL0 has no effect.
        unsafe { core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
        let line = 4u64 << ((ctr >> 16) & 0xf);
        let mut addr = va.as_u64() & !(line - 1);
        while addr < va.as_u64() + len {
            // SAFETY: cleaning a cache line writes back data that is already
            // ours; `addr` lies in the mapped range the caller just wrote.
            unsafe { core::arch::asm!("dc cvau, {0}", in(reg) addr, options(nostack)) };
            addr += line;
        }
        // SAFETY: barriers and instruction-cache invalidation do not change
        // memory.
        unsafe { core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack)) };
    }

    /// Checks that the registers are mapped at `DIRECT_MAP_OFFSET + pa`:
    /// the boot tables map 0..1 GiB (virt's devices and 32-bit PCI window)
    /// and 256..512 GiB (its high ECAM) as Device memory; nothing else is
    /// mapped for devices, so a range outside them is refused. (`root` and
    /// `alloc_table` serve x86_64, which maps what its bootloader left out;
    /// this touches no memory, so it asks nothing of its caller.)
    unsafe fn map_device(
        _root: PhysAddr,
        pa: u64,
        size: u64,
        _alloc_table: TableAlloc,
    ) -> Result<(), MapDeviceError> {
        const GIB: u64 = 1 << 30;
        let end = pa.checked_add(size).ok_or(MapDeviceError::Unmapped)?;
        if end <= GIB || (256 * GIB <= pa && end <= 512 * GIB) {
            Ok(())
        } else {
            Err(MapDeviceError::Unmapped)
        }
    }
}
