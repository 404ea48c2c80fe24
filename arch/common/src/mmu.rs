//! The MMU as the kernel sees it: the page-table format, which root tables
//! are loaded, TLB invalidation on this CPU's side, the barriers page-table
//! and code writes need, and device registers outside RAM.
//!
//! ## Address spaces
//!
//! The kernel half is always mapped; an address space is a root table for
//! the lower half. How the two halves meet is the arch's: on x86_64 one root
//! (CR3) holds both, and every address space copies the kernel root's
//! top-level entries [`Mmu::KERNEL_SHARED`]; on AArch64 the kernel has its
//! own root (TTBR1) and an address space's root holds only the lower half
//! (TTBR0). [`Mmu::load_user_root`] hides the difference.

use core::fmt;
use core::ops::Range;
use mm::pgtable::{PageTableFormat, TlbHooks};
use mm::{PhysAddr, VirtAddr};

/// The MMU an arch provides.
pub trait Mmu {
    /// The page-table entry format the hardware walks.
    type Format: PageTableFormat;

    /// Top-level entries every address space shares with the kernel root
    /// (copied when a space is made); empty when the kernel half has a
    /// root of its own.
    const KERNEL_SHARED: Range<usize>;

    /// The TLB hooks `mm::pgtable` asks for, for this CPU's part: the
    /// kernel adds the other CPUs' where the arch does not broadcast.
    type Tlb: TlbHooks + 'static;

    /// The TLB hooks' value.
    const TLB: Self::Tlb;

    /// Whether [`Mmu::TLB`]'s invalidations reach every CPU (AArch64's
    /// broadcast `TLBI ... IS`), or only this one (x86_64's `INVLPG`; the
    /// kernel then shoots the others down by IPI).
    const TLB_BROADCAST: bool;

    /// Why [`Mmu::map_device`] failed.
    type MapDeviceError: fmt::Debug + fmt::Display + Copy;

    /// The root table the kernel runs on: the template of
    /// [`Mmu::KERNEL_SHARED`], and where [`Mmu::map_device`] adds mappings.
    fn kernel_root() -> PhysAddr;

    /// Loads the address space rooted at `root` on this CPU, or, with
    /// `None`, none: the kernel alone, every lower-half access faulting.
    /// Drops this CPU's cached lower-half translations of the previous one.
    ///
    /// # Safety
    /// `root` must be a valid root made for this arch's address spaces (on
    /// x86_64 with the kernel root's [`Mmu::KERNEL_SHARED`] entries, so
    /// that the code, stack and data in use stay mapped), and stay allocated
    /// while it is loaded.
    unsafe fn load_user_root(root: Option<PhysAddr>);

    /// Orders page-table writes before later accesses and TLB maintenance
    /// that may walk them.
    fn table_write_barrier();

    /// Makes `len` bytes of code just written at `va` (through any mapping
    /// of it) visible to instruction fetch on this CPU.
    fn code_written(va: VirtAddr, len: u64);

    /// Makes `size` bytes of device registers at physical `pa` reachable at
    /// the direct-map address of `pa`, uncached, in the kernel root `root`;
    /// page tables it needs come from `alloc_table` (zeroed frames). Boot
    /// only, before any address space copies the kernel half.
    ///
    /// # Safety
    ///
    /// `root` is the kernel root ([`Mmu::kernel_root`]): the implementation
    /// walks and writes the tables under it through the direct map. Every
    /// frame `alloc_table` returns is a zeroed frame the caller owns and
    /// gives up for good (it becomes a table of that tree).
    unsafe fn map_device(
        root: PhysAddr,
        pa: u64,
        size: u64,
        alloc_table: TableAlloc,
    ) -> Result<(), Self::MapDeviceError>;
}

/// Where [`Mmu::map_device`] gets a page table: a zeroed frame, or None
/// when memory is short.
pub type TableAlloc<'a> = &'a mut dyn FnMut() -> Option<PhysAddr>;
