//! DMA for virtio devices: the kernel's implementation of `virtio-drivers`'
//! [`Hal`] trait.
//!
//! ## What a device may see
//!
//! - Rings and other driver-owned DMA memory ([`Hal::dma_alloc`]) are
//!   frames from the buddy allocator ([`memory::alloc_frames`]): `2^order`
//!   physically contiguous frames, the smallest block holding the pages
//!   asked for, zeroed, reached through the direct map. [`Hal::dma_dealloc`]
//!   gives the whole block back.
//! - Buffers the driver shares for one request ([`Hal::share`]) must lie in
//!   the direct map of RAM: the heap, frames from the allocator (a folio of
//!   any order is physically contiguous, so one buffer is one device
//!   address range), task stacks. Their device address is their physical
//!   address; no copy and no IOMMU. A buffer anywhere else (the x86_64 boot
//!   stack, the kernel image there, MMIO) is a kernel bug, and `share`
//!   panics naming it.
//! - The virt and pc machines are DMA-coherent (`dma-coherent` in virt's PCI
//!   node; x86 snoops), so sharing and unsharing need no cache maintenance.
//! - BAR MMIO ([`Hal::mmio_phys_to_virt`]) is reached at `phys_to_virt(pa)`.
//!   [`map_mmio`] makes sure it is mapped there before a driver uses it
//!   (`crate::drivers::pci` calls it for every memory BAR): on x86_64 the
//!   bootloader's map of physical memory covers the firmware's memory map
//!   (SeaBIOS's 32-bit PCI window below 4 GiB), and the arch maps anything
//!   beyond it (OVMF's 64-bit BARs); AArch64's boot tables map the low 1 GiB
//!   (virt's 32-bit PCI window) and 256..512 GiB (its ECAM) as Device memory,
//!   and anything else is refused.
//!
//! No lock here: the frame allocator has its own.

use crate::arch;
use crate::arch::prelude::*;
use crate::memory;
use core::ptr::NonNull;
use mm::{PhysAddr, VirtAddr, PAGE_SIZE};
use virtio_drivers::{BufferDirection, Hal};

/// The kernel's [`Hal`] (see the module doc).
pub struct KernelHal;

/// The buddy order holding `pages` frames.
fn order_of(pages: usize) -> u8 {
    pages.max(1).next_power_of_two().trailing_zeros() as u8
}

/// Makes `size` bytes of device registers at physical `pa` reachable at
/// `phys_to_virt(pa)`, uncached (see the module doc). Boot only: on
/// x86_64 new kernel mappings must exist before any address space copies
/// the kernel half.
pub fn map_mmio(pa: u64, size: u64) -> Result<(), arch::MapDeviceError> {
    let mut alloc_table = || {
        let frame = memory::alloc_frames(0).ok()?;
        // SAFETY: just allocated, not yet in any table: ours alone.
        unsafe { memory::zero_frames(frame, 0) };
        Some(frame)
    };
    // SAFETY: the kernel root, and `alloc_table` hands over zeroed frames
    // fresh from the allocator, never freed (they become kernel tables).
    unsafe { Arch::map_device(memory::kernel_root(), pa, size, &mut alloc_table) }
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned frames
// (fresh from the buddy allocator) mapped at the returned pointer; `share`
// returns the physical address of a buffer the direct map proves is RAM at
// that address; `mmio_phys_to_virt` returns the mapping `map_mmio` made
// sure of for every BAR before any driver used it (module doc). Each method's own contract is met below.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (u64, NonNull<u8>) {
        let order = order_of(pages);
        match memory::alloc_frames(order) {
            Ok(pa) => {
                // SAFETY: just allocated, not yet handed to the driver.
                unsafe { memory::zero_frames(pa, order) };
                let va = memory::phys_to_virt(pa).as_u64() as *mut u8;
                // A direct-map address is never null.
                (pa.as_u64(), NonNull::new(va).expect("dma_alloc: null direct-map address"))
            }
            // `Dma::new` reads a zero physical address as failure.
            Err(_) => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: u64, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        memory::free_frames(PhysAddr::new(paddr), order_of(pages));
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: u64, _size: usize) -> NonNull<u8> {
        let va = memory::phys_to_virt(PhysAddr::new(paddr)).as_u64() as *mut u8;
        NonNull::new(va).expect("mmio_phys_to_virt: null direct-map address")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> u64 {
        let va = VirtAddr::new(buffer.as_ptr() as *mut u8 as u64);
        let len = buffer.len() as u64;
        let start = memory::virt_to_phys(va);
        let last = va.checked_add(len.saturating_sub(1)).and_then(memory::virt_to_phys);
        match (start, last) {
            (Some(pa), Some(_)) => pa.as_u64(),
            _ => panic!(
                "share: DMA buffer {va}+{len:#x} is not in the direct map of RAM (a kernel bug: \
                 buffers come from the heap or the frame allocator)"
            ),
        }
    }

    unsafe fn unshare(_paddr: u64, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

const _: () = assert!(PAGE_SIZE as usize == virtio_drivers::PAGE_SIZE);
