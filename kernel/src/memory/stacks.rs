//! Kernel stacks with guard pages: every task's stack lives in its own slot
//! of a window of the kernel half, with an unmapped guard below it, so a
//! stack that overflows faults instead of writing over whatever frame lies
//! below it.
//!
//! ## Layout
//!
//! The window is the last top-level entry of the kernel half on both arches
//! (`arch_common::mmu::STACK_WINDOW_START`, `0xffff_ff80_0000_0000`), cut
//! into 64 KiB slots (`STACK_SLOT_SHIFT`). In a slot, the lower 32 KiB are
//! never mapped (the guard), the upper 32 KiB are the stack: one block of
//! eight frames from the buddy allocator, mapped read-write, kernel only,
//! global, not executable. The block is contiguous because a stack may hold
//! a buffer a device reads or writes (virtio-drivers keeps a blocking
//! request's header on the stack): [`virt_to_phys`] translates stack
//! addresses for DMA, and a buffer inside one stack is then contiguous in
//! RAM too. An address of the window is in a guard exactly when its bit 15
//! is clear.
//! At most [`MAX_SLOTS`] stacks exist at once (512 MiB of the window); the
//! slot lists are fixed arrays, so that making and freeing stacks never
//! touches the heap.
//!
//! The window's top-level entry is made by [`init`] at boot, before any
//! address space copies the kernel half (x86_64 copies PML4 entries
//! 256..512 into every space), so tables added below it later are seen by
//! every space.
//!
//! ## What an overflow does
//!
//! The first access below the stack faults in the guard. The arch cannot
//! push that fault's frame on the exhausted stack, so it takes it on a stack
//! of its own (x86_64: the double fault's IST stack; AArch64: the vector
//! entry sees SP in a guard and moves to a per-CPU overflow stack) and
//! offers it to the kernel (`arch_common::trap::StackFault`). The task
//! layer then ends the task with "kernel stack overflow" when interrupts
//! were on (it held no spin lock), and panics naming the task otherwise
//! (`crate::task::sched`, `on_stack_fault`).
//!
//! ## Freeing, and stale translations
//!
//! A freed stack is unmapped and its frames go back to the allocator at
//! once; nothing uses a dead task's stack addresses again, so a stale
//! translation another CPU may keep of them does no harm until the *slot*
//! is reused. So a freed slot is reused only after every CPU has dropped
//! its translations of it: on AArch64 the unmap's invalidation is
//! broadcast and the slot is clean at once; on x86_64 it goes to a
//! quarantine, and when [`QUARANTINE`] slots wait there (or no other slot is
//! left), one flush of the window on every CPU (the kernel IPI, through the
//! hook [`set_flush_hook`] registers, from `crate::vm::tlb`) makes them
//! all clean. That flush is made by [`KernelStack::alloc`], in the task
//! that spawns, holding no lock; the free path, which may run in
//! `finish_switch` right after an interrupt, never waits for another CPU.
//!
//! ## Lock
//!
//! `SLOTS` (an [`IrqSpinLock`]) guards the slot lists, the owners and every
//! change to the window's page tables (`mm::pgtable` expects its caller to
//! serialise changes to one tree). Under it the allocator's lock is taken
//! (page tables of the window) and the heap's (the lists); it is taken with
//! no other lock held (book: "Locks").

use crate::arch::mmu::{STACK_SIZE, STACK_SLOT_SHIFT, STACK_WINDOW_START};
use crate::arch::prelude::*;
use crate::memory::{self, paging::Format, paging::KernelHalfTables};
use crate::sync::IrqSpinLock;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::pgtable::{Decoded, Leaf, Level, PageSize, PageTable, PageTableFormat, Prot, TableMemory};
use mm::{PhysAddr, VirtAddr, PAGE_SIZE};

/// The most stacks that exist at once.
pub const MAX_SLOTS: u32 = 1 << 13;
/// Freed slots that wait for one flush of the window on every CPU (x86_64).
pub const QUARANTINE: usize = 64;
/// Slots whose page tables [`init`] makes (the first 16 MiB of the
/// window: 256 slots, 8 page tables).
const PREPARED_SLOTS: u32 = 256;
/// Frames in one stack.
const NR_PAGES: u64 = STACK_SIZE / PAGE_SIZE;
/// The order of a stack's block of frames.
pub(crate) const STACK_ORDER: u8 = NR_PAGES.trailing_zeros() as u8;
const _: () = assert!(NR_PAGES.is_power_of_two());
/// Bytes of one slot (guard and stack).
const SLOT_SIZE: u64 = 1 << STACK_SLOT_SHIFT;
/// Left unused at the very top of a stack: a stack pointer equal to the
/// slot's end would be the next slot's first byte, in that slot's guard.
const TOP_PAD: u64 = 16;

/// A list of slots, in a fixed array.
struct SlotList {
    slots: [u32; MAX_SLOTS as usize],
    len: usize,
}

impl SlotList {
    const fn new() -> SlotList {
        SlotList { slots: [0; MAX_SLOTS as usize], len: 0 }
    }
    fn push(&mut self, slot: u32) {
        // Each slot is on one list at most, so there is always room.
        self.slots[self.len] = slot;
        self.len += 1;
    }
    fn pop(&mut self) -> Option<u32> {
        self.len = self.len.checked_sub(1)?;
        Some(self.slots[self.len])
    }
}

/// The slot lists (see the module doc).
struct Slots {
    /// Free, with no CPU keeping a translation.
    clean: SlotList,
    /// Free, unmapped, but maybe still cached by a CPU's TLB (x86_64).
    quarantined: SlotList,
    /// Slots `next_fresh..MAX_SLOTS` were never used.
    next_fresh: u32,
    /// A task is flushing the quarantine (it alone takes slots off it).
    flushing: bool,
}

static SLOTS: IrqSpinLock<Slots> = IrqSpinLock::new(Slots {
    clean: SlotList::new(),
    quarantined: SlotList::new(),
    next_fresh: 0,
    flushing: false,
});

/// The id of the task each slot's stack belongs to (0: none yet, or free);
/// read without the lock by the overflow handler, which must not wait.
static OWNERS: [AtomicU64; MAX_SLOTS as usize] = [const { AtomicU64::new(0) }; MAX_SLOTS as usize];

/// Live stacks (for reports and tests).
static NR_LIVE: AtomicU64 = AtomicU64::new(0);

/// Flushes a range of the window on every CPU; set by `crate::vm::tlb`.
static FLUSH_EVERYWHERE: spin::Once<fn(VirtAddr, VirtAddr)> = spin::Once::new();

/// Why a stack could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// No frame for the stack or for a page table of the window.
    NoMemory,
    /// [`MAX_SLOTS`] stacks exist already.
    NoSlot,
}

/// Why [`init`] could not set the window up (at boot: a kernel or boot bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// Something is mapped in the window's top-level entry already.
    WindowInUse { raw: u64 },
    /// No frame for its table.
    NoMemory,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::WindowInUse { raw } => write!(
                f,
                "the kernel stacks' window at {STACK_WINDOW_START:#x} is already mapped (top-level entry {raw:#x})"
            ),
            InitError::NoMemory => f.write_str("no memory for the kernel stacks' page table"),
        }
    }
}

/// The kernel root as a page table this module may change.
fn kernel_tree() -> PageTable<Format> {
    PageTable::from_root(Arch::kernel_root())
}

/// Makes the window's top-level table. Boot CPU, once, before any address
/// space is made and before any stack is allocated.
pub fn init() -> Result<(), InitError> {
    let _slots = SLOTS.lock();
    let root = Arch::kernel_root();
    let entry = PhysAddr::new(root.as_u64() + 8 * Level::Pgd.index(STACK_WINDOW_START) as u64);
    let raw = KernelHalfTables.read_entry(entry);
    match Format::decode(raw, Level::Pgd) {
        Decoded::None => {}
        _ => return Err(InitError::WindowInUse { raw }),
    }
    let table = KernelHalfTables.alloc_table().ok_or(InitError::NoMemory)?;
    KernelHalfTables.write_entry(entry, Format::make_table(table, Level::Pgd));
    // The page tables of the first slots, made now (by mapping one page of
    // each 2 MiB and unmapping it again: tables stay): the window's tables
    // are never freed, so tables made later would look, to a test's frame
    // count, like frames the test leaked.
    let tree = kernel_tree();
    let scratch = memory::alloc_frames(0).map_err(|_| InitError::NoMemory)?;
    let slots_per_table = Level::Pmd.entry_size() / SLOT_SIZE;
    for slot in (0..PREPARED_SLOTS).step_by(slots_per_table as usize) {
        let va = VirtAddr::new(stack_start(slot));
        let leaf = stack_leaf(scratch);
        tree.map(&KernelHalfTables, va, leaf).map_err(|_| InitError::NoMemory)?.ignore();
        tree.unmap(&KernelHalfTables, va, PageSize::Size4K)
            .expect("stacks::init: the page just mapped")
            .1
            .ignore();
    }
    let end = stack_start(PREPARED_SLOTS);
    Arch::flush_kernel_range(VirtAddr::new(STACK_WINDOW_START), VirtAddr::new(end));
    memory::free_frames(scratch, 0);
    Ok(())
}

/// How a stack page is mapped: read-write, kernel only, global, not
/// executable, already dirty and young (nothing to update on first use).
fn stack_leaf(frame: PhysAddr) -> Leaf {
    Leaf {
        frame,
        size: PageSize::Size4K,
        prot: Prot { writable: true, user: false, executable: false, global: true },
        dirty: true,
        young: true,
    }
}

/// Registers how to flush a range of the window on every CPU (once).
pub fn set_flush_hook(hook: fn(VirtAddr, VirtAddr)) {
    FLUSH_EVERYWHERE.call_once(|| hook);
}

/// The first byte of slot `slot`'s stack (its guard is the 32 KiB below).
fn stack_start(slot: u32) -> u64 {
    STACK_WINDOW_START + slot as u64 * SLOT_SIZE + STACK_SIZE
}

/// The slot whose guard holds `addr`, if any slot's does.
pub fn guard_slot(addr: u64) -> Option<u32> {
    let offset = addr.checked_sub(STACK_WINDOW_START)?;
    let slot = offset >> STACK_SLOT_SHIFT;
    (slot < MAX_SLOTS as u64 && offset & STACK_SIZE == 0).then_some(slot as u32)
}

/// The id of the task whose stack is in `slot` (0: none).
pub fn owner(slot: u32) -> u64 {
    OWNERS.get(slot as usize).map_or(0, |o| o.load(Ordering::Relaxed))
}

/// Stacks that exist now.
pub fn nr_live() -> u64 {
    NR_LIVE.load(Ordering::Relaxed)
}

/// One task's kernel stack: mapped in its slot until dropped.
#[derive(Debug)]
pub struct KernelStack {
    slot: u32,
}

impl KernelStack {
    /// A new 32 KiB stack with its guard below it.
    pub fn alloc() -> Result<KernelStack, StackError> {
        let slot = take_slot()?;
        let Ok(block) = memory::alloc_frames(STACK_ORDER) else {
            SLOTS.lock().clean.push(slot);
            return Err(StackError::NoMemory);
        };
        // Zeroed though nothing reads it: see `memory`'s "Kernel memory is
        // zeroed when taken" (a stack is written a few bytes at a time).
        // SAFETY: the block was just allocated and is not mapped in the
        // window yet: nobody else can reach it.
        unsafe { memory::zero_frames(block, STACK_ORDER) };
        let tree = kernel_tree();
        let mut slots = SLOTS.lock();
        for i in 0..NR_PAGES {
            let va = VirtAddr::new(stack_start(slot) + i * PAGE_SIZE);
            let leaf = stack_leaf(PhysAddr::new(block.as_u64() + i * PAGE_SIZE));
            match tree.map(&KernelHalfTables, va, leaf) {
                // Nothing was mapped there: nothing to flush.
                Ok(flush) => flush.ignore(),
                Err(_) => {
                    // Only a page table can be missing (the slot was free):
                    // give back what was mapped, through the free path.
                    unmap_pages(&tree, slot, i);
                    slots.quarantined.push(slot);
                    drop(slots);
                    flush_local(slot);
                    memory::free_frames(block, STACK_ORDER);
                    return Err(StackError::NoMemory);
                }
            }
        }
        drop(slots);
        NR_LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(KernelStack { slot })
    }

    /// The address a new task's stack pointer starts from.
    pub fn top(&self) -> u64 {
        stack_start(self.slot) + STACK_SIZE - TOP_PAD
    }

    /// Records the task the stack belongs to, for the overflow report.
    pub fn set_owner(&self, task_id: u64) {
        OWNERS[self.slot as usize].store(task_id, Ordering::Relaxed);
    }
}

impl Drop for KernelStack {
    /// Unmaps the stack and frees its frames; the slot is clean at once
    /// where the unmap's invalidation reached every CPU, quarantined
    /// otherwise (module doc).
    fn drop(&mut self) {
        OWNERS[self.slot as usize].store(0, Ordering::Relaxed);
        let tree = kernel_tree();
        let mut slots = SLOTS.lock();
        let block = unmap_pages(&tree, self.slot, NR_PAGES);
        if Arch::TLB_BROADCAST {
            drop(slots);
            flush_local(self.slot);
            SLOTS.lock().clean.push(self.slot);
        } else {
            slots.quarantined.push(self.slot);
            drop(slots);
            flush_local(self.slot);
        }
        memory::free_frames(block, STACK_ORDER);
        NR_LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unmaps the first `nr` pages of `slot`'s stack (SLOTS held); the
/// block of frames they mapped.
fn unmap_pages(tree: &PageTable<Format>, slot: u32, nr: u64) -> PhysAddr {
    let mut block = PhysAddr::new(0);
    for i in 0..nr {
        let va = VirtAddr::new(stack_start(slot) + i * PAGE_SIZE);
        let (leaf, flush) = tree
            .unmap(&KernelHalfTables, va, PageSize::Size4K)
            .expect("stacks: a live stack's page is not mapped");
        // Flushed by the caller, for the whole slot at once.
        flush.ignore();
        if i == 0 {
            block = leaf.frame;
        }
    }
    block
}

/// The physical address of `va` when it lies in a live stack (for DMA
/// from a buffer on a stack, `crate::memory::virt_to_phys`); `None` for
/// any other address. The caller keeps that stack alive (it runs on it).
pub fn virt_to_phys(va: VirtAddr) -> Option<PhysAddr> {
    let offset = va.as_u64().checked_sub(STACK_WINDOW_START)?;
    if offset >> STACK_SLOT_SHIFT >= MAX_SLOTS as u64 || offset & STACK_SIZE == 0 {
        return None;
    }
    kernel_tree().translate(&KernelHalfTables, va)
}

/// Drops this CPU's translations of `slot`'s stack (every CPU's where the
/// invalidation is broadcast).
fn flush_local(slot: u32) {
    let start = stack_start(slot);
    Arch::flush_kernel_range(VirtAddr::new(start), VirtAddr::new(start + STACK_SIZE));
}

/// A free slot no CPU has a translation of.
fn take_slot() -> Result<u32, StackError> {
    loop {
        let mut slots = SLOTS.lock();
        if let Some(slot) = slots.clean.pop() {
            return Ok(slot);
        }
        let fresh_left = slots.next_fresh < MAX_SLOTS;
        if fresh_left && (slots.quarantined.len < QUARANTINE || slots.flushing) {
            let slot = slots.next_fresh;
            slots.next_fresh += 1;
            return Ok(slot);
        }
        if slots.quarantined.len == 0 && !slots.flushing {
            return Err(StackError::NoSlot);
        }
        if slots.flushing {
            // Another task is flushing the quarantine: wait for it, with
            // interrupts on and no lock held.
            drop(slots);
            core::hint::spin_loop();
            continue;
        }
        // Flush the window on every CPU (no lock held): every slot
        // quarantined before the flush is then clean. Slots freed
        // meanwhile are pushed behind them and wait for the next flush;
        // only the flusher takes slots off the quarantine.
        slots.flushing = true;
        let nr_flushed = slots.quarantined.len;
        let end = STACK_WINDOW_START + slots.next_fresh as u64 * SLOT_SIZE;
        drop(slots);
        match FLUSH_EVERYWHERE.get() {
            Some(flush) => flush(VirtAddr::new(STACK_WINDOW_START), VirtAddr::new(end)),
            None => Arch::flush_kernel_range(VirtAddr::new(STACK_WINDOW_START), VirtAddr::new(end)),
        }
        let mut slots = SLOTS.lock();
        let Slots { clean, quarantined, flushing, .. } = &mut *slots;
        for &slot in &quarantined.slots[..nr_flushed] {
            clean.push(slot);
        }
        quarantined.slots.copy_within(nr_flushed..quarantined.len, 0);
        quarantined.len -= nr_flushed;
        *flushing = false;
    }
}
