//! Address-space switching and TLB invalidation on x86_64.
//!
//! CR3 holds the root (PML4) of the running address space. Without PCIDs
//! (not used yet), loading CR3 drops every non-global translation of this
//! CPU, so a table that is not loaded has nothing cached here. `INVLPG`
//! drops one page's translation (any size) and the paging-structure caches
//! that lead to it.
//!
//! Everything here acts on the running CPU only; making other CPUs drop a
//! translation (a shootdown, by IPI) is the kernel's job.
//!
//! The kernel root is the PML4 the bootloader left in CR3, recorded by
//! [`crate::init`]; every address space copies its upper half (PML4
//! entries 256..512, `Mmu::KERNEL_SHARED`), and loading no address space
//! means loading it again.
//!
//! `Mmu::map_device` maps device registers the bootloader's map of physical
//! memory does not reach (OVMF places 64-bit PCI BARs far above RAM), at
//! the address that map would give them, by writing the kernel root's
//! entries directly, with the bits [`crate::pgtable`] names: `mm`'s format
//! has no way to say "uncached device memory", and these mappings are made
//! once at boot and never changed.
#![cfg(target_os = "none")]

use crate::pgtable::{X86Format, ADDR, G, NX, P, PCD, PS, PWT, RW, US};
use crate::X86_64;
use arch_common::irq::Irq;
use arch_common::mmu::{Mmu, TableAlloc};
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::pgtable::TlbHooks;
use mm::{PhysAddr, VirtAddr};
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

/// Ranges longer than this many pages are flushed whole (CR4.PGE toggle).
const MAX_INVLPG_PAGES: u64 = 64;

/// The PML4 the kernel booted on (0 before [`record_kernel_root`]).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// The root of the running address space.
pub fn current_root() -> PhysAddr {
    PhysAddr::new(Cr3::read().0.start_address().as_u64())
}

/// Records the running root as the kernel root. Boot CPU, once, from
/// [`crate::init`], before any address space is loaded.
pub(crate) fn record_kernel_root() {
    KERNEL_ROOT.store(current_root().as_u64(), Ordering::Relaxed);
}

/// Makes `root` the running address space and returns the previous root.
///
/// # Safety
/// `root` must be a valid PML4 whose upper half maps the kernel exactly as
/// the current one does (the code, stack and data in use stay mapped).
pub unsafe fn switch_root(root: PhysAddr) -> PhysAddr {
    let previous = current_root();
    let frame = PhysFrame::from_start_address(x86_64::PhysAddr::new(root.as_u64()))
        .expect("switch_root: root table not page-aligned");
    // SAFETY: the caller guarantees the kernel half is mapped identically,
    // so execution continues; CR3 load also drops this CPU's non-global
    // translations of the old space.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    previous
}

/// Drops every translation of this CPU, global ones included: toggling
/// CR4.PGE flushes the whole TLB (a CR3 reload keeps global entries).
fn flush_everything() {
    let cr4 = Cr4::read();
    if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
        // SAFETY: clearing and restoring PGE changes no mapping; its only
        // effect is the full TLB flush we want.
        unsafe {
            Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
            Cr4::write(cr4);
        }
    } else {
        tlb::flush_all();
    }
}

/// `INVLPG` of every page of `[start, end)` on this CPU, or everything
/// when the range is longer than [`MAX_INVLPG_PAGES`].
fn flush_pages(start: VirtAddr, end: VirtAddr) {
    let first = start.as_u64() & !0xfff;
    let nr_pages = end.as_u64().saturating_sub(first).div_ceil(4096);
    if nr_pages > MAX_INVLPG_PAGES {
        flush_everything();
        return;
    }
    for i in 0..nr_pages {
        tlb::flush(x86_64::VirtAddr::new_truncate(first + i * 4096));
    }
}

/// The TLB hooks `mm::pgtable` asks for.
pub struct Tlb;

impl TlbHooks for Tlb {
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        if root != current_root() {
            return; // not loaded: nothing cached on this CPU (no PCIDs)
        }
        flush_pages(start, end);
    }

    fn flush_all(&self, root: PhysAddr) {
        if root == current_root() {
            flush_everything();
        }
    }
}

/// Why device registers could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapDeviceError {
    /// Something else is mapped where the registers would go.
    Occupied { va: u64 },
    /// No frame for a page table.
    NoMemory,
    /// The range wraps around or is not in canonical kernel space.
    BadRange,
}

impl core::fmt::Display for MapDeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapDeviceError::Occupied { va } => write!(f, "{va:#x} already maps something else"),
            MapDeviceError::NoMemory => f.write_str("no memory for a page table"),
            MapDeviceError::BadRange => f.write_str("the range is not mappable"),
        }
    }
}

/// Serialises `Mmu::map_device` (two callers must not both add a table).
static MAP_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// The entry at `index` (below 512) of the table at physical `table`.
///
/// # Safety
///
/// `table` is a page-table frame of the kernel root's tree (the root, or a
/// table an entry of it names, or a frame `map_device`'s `alloc_table` has
/// just given for one), which stays a table for the kernel's life.
unsafe fn table_entry(table: u64, index: u64) -> &'static AtomicU64 {
    debug_assert!(index < 512 && table.is_multiple_of(4096));
    let va = crate::phys_offset() + table + index * 8;
    // SAFETY: `table` is a page-table frame of the kernel root's tree
    // (contract), which the bootloader's map of physical memory covers;
    // entries are u64-aligned and only accessed atomically here and by the
    // hardware walker.
    unsafe { &*(va as *const AtomicU64) }
}

impl Mmu for X86_64 {
    type Format = X86Format;
    type Tlb = Tlb;
    type MapDeviceError = MapDeviceError;
    /// PML4 entries 256..512: the upper half, the kernel's, the same in
    /// every address space.
    const KERNEL_SHARED: Range<usize> = 256..512;
    const TLB: Tlb = Tlb;
    /// [`Tlb`] is this CPU's alone already.
    type LocalTlb = Tlb;
    const LOCAL_TLB: Tlb = Tlb;
    /// `INVLPG` and CR3 loads act on this CPU alone.
    const TLB_BROADCAST: bool = false;

    fn kernel_root() -> PhysAddr {
        PhysAddr::new(KERNEL_ROOT.load(Ordering::Relaxed))
    }

    /// Loads `root`, or the kernel root, into CR3.
    unsafe fn load_user_root(root: Option<PhysAddr>) {
        // SAFETY: the caller's contract: `root` maps the kernel half as the
        // kernel root does, and the kernel root is the table in use.
        unsafe { switch_root(root.unwrap_or_else(Self::kernel_root)) };
    }

    /// x86 walks see stores in program order: only the compiler must not
    /// move them.
    fn table_write_barrier() {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// `INVLPG` of each page (it drops global translations too, and the
    /// kernel half is mapped in every root), or everything when the range
    /// is long; this CPU only.
    fn flush_kernel_range(start: VirtAddr, end: VirtAddr) {
        flush_pages(start, end);
    }

    /// x86 keeps instruction caches coherent with stores; the jump to the
    /// code serialises enough on one CPU.
    fn code_written(_va: VirtAddr, _len: u64) {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// Maps the registers where the bootloader's map of physical memory
    /// would have them, `phys_offset + pa`: 4 KiB pages, writable,
    /// no-execute, global, uncached (PCD and PWT: PAT entry 3, UC, at the
    /// power-on PAT). Pages already mapped there to the same physical
    /// address (by the bootloader's map, which covers the firmware's memory
    /// map, or by an earlier call) are left alone.
    ///
    /// Boot only, before any address space copies the kernel half (PML4
    /// entries 256..512 are copied when a space is made; an entry added
    /// later would be missing from it). Making entries present needs no TLB
    /// flush.
    unsafe fn map_device(
        root: PhysAddr,
        pa: u64,
        size: u64,
        alloc_table: TableAlloc,
    ) -> Result<(), MapDeviceError> {
        let start = pa & !0xfff;
        let end =
            pa.checked_add(size).and_then(|e| e.checked_add(0xfff)).ok_or(MapDeviceError::BadRange)? & !0xfff;
        let offset = crate::phys_offset();
        if end > 1 << 46 || offset.checked_add(end).is_none() {
            return Err(MapDeviceError::BadRange);
        }
        Self::with_irqs_disabled(|| {
            let _guard = MAP_LOCK.lock();
            // SAFETY: `root` is the kernel root and `alloc_table` gives
            // owned zeroed frames (this function's contract).
            (start..end)
                .step_by(4096)
                .try_for_each(|page| unsafe { map_device_page(root.as_u64(), page, alloc_table) })
        })
    }
}

/// Maps the one page at `pa` (see `Mmu::map_device`).
///
/// # Safety
///
/// As for `Mmu::map_device`: `root` is the kernel root, `alloc_table`
/// gives zeroed frames the caller gives up for good.
unsafe fn map_device_page(root: u64, pa: u64, alloc_table: TableAlloc) -> Result<(), MapDeviceError> {
    let va = crate::phys_offset() + pa;
    let mut table = root;
    // PML4, PDPT, PD: follow or make the next table; a huge leaf on the
    // way must already map `pa`.
    for shift in [39u32, 30, 21] {
        // SAFETY: `table` is the root (contract), a frame `alloc_table`
        // just gave and we linked in, or the table a present non-leaf entry
        // of the kernel tree names; the index is below 512.
        let entry = unsafe { table_entry(table, (va >> shift) & 0x1ff) };
        let value = entry.load(Ordering::Acquire);
        if value & P == 0 {
            let frame = alloc_table().ok_or(MapDeviceError::NoMemory)?.as_u64();
            entry.store(frame | P | RW, Ordering::Release);
            table = frame;
            continue;
        }
        if shift != 39 && value & PS != 0 {
            let mask = (1u64 << shift) - 1;
            let mapped = (value & ADDR & !mask) | (va & mask);
            return if mapped == pa { Ok(()) } else { Err(MapDeviceError::Occupied { va }) };
        }
        if value & US != 0 {
            return Err(MapDeviceError::Occupied { va });
        }
        table = value & ADDR;
    }
    // SAFETY: as in the loop: the page table the PD entry names.
    let entry = unsafe { table_entry(table, (va >> 12) & 0x1ff) };
    let value = entry.load(Ordering::Acquire);
    if value & P != 0 {
        return if value & ADDR == pa { Ok(()) } else { Err(MapDeviceError::Occupied { va }) };
    }
    let leaf = pa | P | RW | PWT | PCD | G | NX;
    entry.store(leaf, Ordering::Release);
    X86_64::table_write_barrier();
    Ok(())
}
