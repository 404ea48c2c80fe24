//! The shared kit of the in-guest tests.

use crate::arch::prelude::*;
use crate::drivers::blk::{disks, BlockDevice};
use crate::memory;
use crate::memory::paging::*;
use alloc::format;
use alloc::string::String;
use mm::pgtable::{Leaf, PageSize, PageTable, Prot};
use mm::{PhysAddr, VirtAddr};

/// A fresh address space for tests: an empty lower half.
pub struct TestSpace {
    pub table: PageTable<Format>,
}

/// Keeps a [`TestSpace`] loaded for the running task until dropped.
pub struct Active<'a> {
    _space: &'a TestSpace,
    _guard: crate::task::sched::AddressSpaceGuard,
}

impl TestSpace {
    /// A new, empty address space.
    pub fn new() -> Result<TestSpace, String> {
        let table = PageTable::new_sharing(&KernelTables, memory::kernel_root(), Arch::KERNEL_SHARED)
            .map_err(|e| format!("new page table: {e}"))?;
        Ok(TestSpace { table })
    }

    /// Makes this the running task's address space until the guard drops:
    /// the scheduler loads it now and whenever the task runs again.
    pub fn activate(&self) -> Active<'_> {
        Active { _space: self, _guard: crate::task::sched::enter_address_space(self.table.root()) }
    }

    /// Maps `frame` at `va` with a leaf of `size` (dirty and young, see
    /// [`leaf`]) where nothing was mapped, so no flush is owed.
    pub fn map_leaf(&self, va: u64, frame: PhysAddr, size: PageSize, prot: Prot) -> Result<(), String> {
        self.table
            .map(&KernelTables, VirtAddr::new(va), leaf(frame, size, prot))
            .map_err(|e| format!("map at {va:#x}: {e}"))?
            .ignore();
        Ok(())
    }

    /// Gives back every table frame (not the frames leaves map).
    pub fn destroy(self) {
        self.table.destroy(&KernelTables, Arch::KERNEL_SHARED);
    }
}

/// Where tests map things: lower half, 256 GiB, away from anything else.
pub(crate) const TEST_VA: u64 = 0x0000_0040_0000_0000;

pub(crate) const RW_USER: Prot = Prot { writable: true, user: true, executable: false, global: false };

/// Read-write kernel pages in the lower half: what the tests that probe
/// their pages with the kernel's probes ([`probe_read`], [`probe_write`])
/// map. With SMAP (x86_64) or PAN (AArch64) on, a kernel load of a user
/// page faults whatever its permissions (`usermode::smap_...` checks it).
pub(crate) const RW_KERNEL: Prot = Prot { user: false, ..RW_USER };

pub(crate) fn leaf(frame: PhysAddr, size: PageSize, prot: Prot) -> Leaf {
    // Mapped dirty and young: the first access needs no fault on a CPU that
    // does not manage A/D itself (AArch64 without FEAT_HAFDBS).
    Leaf { frame, size, prot, dirty: true, young: true }
}

/// Frames for a test, freed on drop.
pub(crate) struct Frames {
    pub(crate) pa: PhysAddr,
    order: u8,
}

impl Frames {
    pub(crate) fn new(order: u8) -> Result<Frames, String> {
        let pa = memory::alloc_frames(order).map_err(|e| format!("allocating order {order}: {e:?}"))?;
        Ok(Frames { pa, order })
    }
    fn bytes(&self) -> u64 {
        4096 << self.order
    }
    /// The frames' bytes through the direct map.
    fn direct(&self, offset: u64) -> *mut u8 {
        assert!(offset < self.bytes());
        (memory::phys_to_virt(self.pa).as_u64() + offset) as *mut u8
    }
    pub(crate) fn write(&self, offset: u64, value: u8) {
        // SAFETY: in bounds (checked by `direct`) of frames this test owns.
        unsafe { self.direct(offset).write_volatile(value) }
    }
    pub(crate) fn read(&self, offset: u64) -> u8 {
        // SAFETY: as for `write`.
        unsafe { self.direct(offset).read_volatile() }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        memory::free_frames(self.pa, self.order);
    }
}

pub(crate) fn probe_read(va: u64) -> Result<u8, String> {
    Arch::probe_read_u8(VirtAddr::new(va)).map_err(|f| format!("read at {va:#x} faulted: {f:?}"))
}

pub(crate) fn probe_write(va: u64, value: u8) -> Result<(), String> {
    // SAFETY: every test writes only to addresses it mapped to its own frames.
    unsafe { Arch::probe_write_u8(VirtAddr::new(va), value) }
        .map_err(|f| format!("write at {va:#x} faulted: {f:?}"))
}

/// Reads the byte at `pa` through the direct map: the kernel's view of a
/// page it holds.
///
/// # Safety
///
/// `pa` is in a RAM frame the caller holds (a reference or a pin from
/// get_user_pages) for the duration of the call, and no Rust object lives
/// in that frame (an anonymous page: plain bytes).
pub(crate) unsafe fn kread(pa: PhysAddr) -> u8 {
    // SAFETY: in a RAM frame mapped in the direct map and kept allocated
    // (contract); a volatile byte read of plain bytes.
    unsafe { core::ptr::read_volatile(memory::phys_to_virt(pa).as_u64() as *const u8) }
}

/// Writes the byte at `pa` through the direct map (as a device would
/// through a pinned buffer).
///
/// # Safety
///
/// As for [`kread`], and the caller's hold allows writing (a write pin).
pub(crate) unsafe fn kwrite(pa: PhysAddr, v: u8) {
    // SAFETY: as in `kread`; a volatile byte write the hold allows, to
    // plain bytes no Rust object owns.
    unsafe { core::ptr::write_volatile(memory::phys_to_virt(pa).as_u64() as *mut u8, v) }
}

/// The prefix of the id xtask gives the faulty disk: `faulty:wA-B:rC-D`
/// says writes of pages `A..B` and reads of pages `C..D` fail (QEMU
/// blkdebug). Its other pages are healthy scratch space for the tests.
pub const FAULTY_SERIAL_PREFIX: &str = "faulty:";

/// The scratch disk: the faulty disk, whose healthy pages nobody else uses.
pub(crate) fn scratch_disk() -> Result<&'static BlockDevice, String> {
    disks().iter().find(|d| d.serial().starts_with(FAULTY_SERIAL_PREFIX)).ok_or_else(|| {
        format!(
            "no faulty/scratch disk (serial `{FAULTY_SERIAL_PREFIX}...`) among {} disks: \
             `cargo xtask qemu test` attaches one unless --no-faulty-disk is given",
            disks().len()
        )
    })
}

/// The id xtask gives the stalling disk: a blank disk whose QEMU drive
/// stops answering after its first few requests (`qemu::disk` on the
/// host, "The stalling disk").
pub const STALLING_SERIAL: &str = "stalling";

/// The stalling disk.
pub(crate) fn stalling_disk() -> Result<&'static BlockDevice, String> {
    disks().iter().find(|d| d.serial() == STALLING_SERIAL).ok_or_else(|| {
        format!(
            "no stalling disk (serial `{STALLING_SERIAL}`) among {} disks: `cargo xtask qemu test` \
             attaches one with the faulty disk unless --no-faulty-disk is given",
            disks().len()
        )
    })
}

/// The id xtask gives the read-only disk: a small disk with a valid swap
/// header, attached read-only, that comes with the faulty disk.
pub const READ_ONLY_SERIAL: &str = "readonly0";

/// The read-only disk.
pub(crate) fn read_only_disk() -> Result<&'static BlockDevice, String> {
    disks().iter().find(|d| d.serial() == READ_ONLY_SERIAL).ok_or_else(|| {
        format!(
            "no read-only disk (serial `{READ_ONLY_SERIAL}`) among {} disks: \
             `cargo xtask qemu test` attaches one with the faulty disk unless --no-faulty-disk is given",
            disks().len()
        )
    })
}

/// The page ranges of the faulty disk that fail writes and reads, from its
/// serial (see [`FAULTY_SERIAL_PREFIX`]).
pub(crate) fn faulty_ranges(serial: &str) -> Option<(core::ops::Range<u64>, core::ops::Range<u64>)> {
    let mut write = None;
    let mut read = None;
    for part in serial.strip_prefix(FAULTY_SERIAL_PREFIX)?.split(':') {
        let (kind, range) = part.split_at_checked(1)?;
        let (a, b) = range.split_once('-')?;
        let r = a.parse().ok()?..b.parse().ok()?;
        match kind {
            "w" => write = Some(r),
            "r" => read = Some(r),
            _ => return None,
        }
    }
    Some((write?, read?))
}

/// What the kernel holds at one moment, for the leak checks of the
/// harness, the allocation-failure sweep and the stress: frames in use
/// (the heap's growth counted as free, since its bytes are counted in
/// `heap_used`), swap slots in use (an area whose swapoff failed counts
/// with what it still holds), heap bytes in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub free_frames: u64,
    pub used_slots: u64,
    pub heap_used: usize,
}

impl Usage {
    /// The counts now, once the reclaim work caught mid-pass or deferred
    /// is done and kcompactd is idle (neither is a leak).
    pub(crate) fn now() -> Usage {
        crate::vm::compaction::quiesce();
        crate::vm::reclaim::quiesce();
        let (free, total) = crate::vm::swap::totals();
        Usage {
            free_frames: memory::nr_free_frames() + memory::heap::grown_frames(),
            used_slots: total - free,
            heap_used: memory::heap_used(),
        }
    }

    /// The counts once they are back to `self` or `wait_ms` have passed: a
    /// task that just ended is dropped by its CPU a moment after its
    /// joiner returned, so what it held comes back a few ticks later.
    pub(crate) fn settled_since(self, wait_ms: u64) -> Usage {
        let mut now = Usage::now();
        for _ in 0..wait_ms.div_ceil(2) {
            if now.is_back_to(&self) {
                break;
            }
            crate::task::sched::sleep_ms(2);
            now = Usage::now();
        }
        now
    }

    /// The same frames and slots in use as `before`, and no more heap.
    pub(crate) fn is_back_to(&self, before: &Usage) -> bool {
        self.free_frames == before.free_frames
            && self.used_slots == before.used_slots
            && self.heap_used <= before.heap_used
    }

    /// What leaked since `before`, in words; None when nothing did.
    pub(crate) fn leaks_since(&self, before: &Usage) -> Option<String> {
        (!self.is_back_to(before)).then(|| {
            format!(
                "leaked: free frames {} -> {}, swap slots in use {} -> {}, heap used {} -> {} bytes",
                before.free_frames,
                self.free_frames,
                before.used_slots,
                self.used_slots,
                before.heap_used,
                self.heap_used
            )
        })
    }
}

/// The seed a randomised test uses: the kernel argument `seed=` when
/// given (`cargo xtask qemu test --seed N`), else `default`. Printed on a
/// line of its own (`seed: <test> uses seed=0x...`), so that any run can be
/// replayed: the same seed gives the same sequence of operations.
pub(crate) fn test_seed(env: &crate::tests::TestEnv<'_>, test: &str, default: u64) -> Result<u64, String> {
    let given = env.args.get_u64("seed").map_err(|e| format!("{e}"))?;
    let seed = given.unwrap_or(default);
    let whence = if given.is_some() { "from seed=" } else { "default; replay with --seed" };
    crate::println!("\nseed: {test} uses seed={seed:#x} ({whence})");
    Ok(seed)
}
