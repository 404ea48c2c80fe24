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

use mm::pgtable::TlbHooks;
use mm::{PhysAddr, VirtAddr};
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

/// Ranges longer than this many pages are flushed whole (CR4.PGE toggle).
const MAX_INVLPG_PAGES: u64 = 64;

/// The root of the running address space.
pub fn current_root() -> PhysAddr {
    PhysAddr::new(Cr3::read().0.start_address().as_u64())
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

/// Orders page-table writes before later accesses that may walk them.
/// x86 walks see stores in program order: only the compiler must not move
/// them.
pub fn table_write_barrier() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
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

/// The TLB hooks `mm::pgtable` asks for.
pub struct Tlb;

impl TlbHooks for Tlb {
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        if root != current_root() {
            return; // not loaded: nothing cached on this CPU (no PCIDs)
        }
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

    fn flush_all(&self, root: PhysAddr) {
        if root == current_root() {
            flush_everything();
        }
    }
}

/// Makes code just written at `va` (any mapping of it) visible to
/// instruction fetch. x86 keeps instruction caches coherent with stores;
/// the jump to the code serialises enough on one CPU.
pub fn code_written(_va: VirtAddr, _len: u64) {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
