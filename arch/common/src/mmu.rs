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

    /// This CPU's TLB hooks alone: for a flush of a space no other CPU has
    /// loaded (a CPU that loads it later drops its old lower-half
    /// translations then, [`Mmu::load_user_root`]). AArch64's non-broadcast
    /// `TLBI`s with `DSB NSH`; the same as [`Mmu::TLB`] where that is local.
    type LocalTlb: TlbHooks + 'static;

    /// The local TLB hooks' value.
    const LOCAL_TLB: Self::LocalTlb;

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

    /// Drops the translations of the kernel-half range `[start, end)`,
    /// global ones included, whichever root is loaded: on this CPU (x86_64;
    /// the kernel asks the others by IPI) or on every CPU (AArch64, where
    /// the invalidation is broadcast). For kernel mappings that change
    /// after boot (the kernel stacks' window).
    fn flush_kernel_range(start: VirtAddr, end: VirtAddr);

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

/// The kernel stacks' window: the last top-level entry of the kernel half
/// on both arches (x86_64 PML4 entry 511; AArch64 TTBR1's level-0 entry
/// 511), 512 GiB from `0xffff_ff80_0000_0000` to the end of the address
/// space: every address at or above it has bits 63..=39 set.
pub const STACK_WINDOW_SHIFT: u32 = 39;
/// The first address of the kernel stacks' window.
pub const STACK_WINDOW_START: u64 = !0 << STACK_WINDOW_SHIFT;
/// The window is cut into slots of `1 << STACK_SLOT_SHIFT` bytes (64 KiB),
/// one kernel stack each: the lower half of a slot is never mapped (the
/// stack's guard), the upper half is the stack. So an address in the window
/// lies in a guard exactly when its bit `STACK_SLOT_SHIFT - 1` is clear,
/// which the AArch64 vector entry checks without a memory access.
pub const STACK_SLOT_SHIFT: u32 = 16;
/// The bytes of one slot's stack (and of its guard).
pub const STACK_SIZE: u64 = 1 << (STACK_SLOT_SHIFT - 1);

/// Where [`Mmu::map_device`] gets a page table: a zeroed frame, or None
/// when memory is short.
pub type TableAlloc<'a> = &'a mut dyn FnMut() -> Option<PhysAddr>;
