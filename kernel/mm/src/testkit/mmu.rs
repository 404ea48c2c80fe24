//! The simulated MMU by hand: tables written entry by entry, walked by a
//! format's [`HardwareWalker`], for the tests of the formats themselves
//! (the arch crates' walker tests and `mm`'s format conformance tests), and
//! [`Machine`], one [`PageTable`] behind a software TLB for the tests of
//! the generic page-table code.
//!
//! Table frames come from a [`SimMemory`]; data frames are only numbers
//! here (nothing reads them), so any frame may be named in a leaf.
//! Single-threaded: `SimMemory` and `SoftTlb` are `RefCell`s.

use crate::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SimMemory, SoftTlb, Translation};
use crate::pgtable::{Decoded, Leaf, Level, PageSize, PageTable, PageTableFormat, Prot, TableMemory};
use crate::{PhysAddr, VirtAddr};

/// Where [`memory`] puts its table frames.
pub const ROOT_BASE: u64 = 0x10_0000;
/// The address the walker tests map: in the lower half, with a byte offset
/// (`0xabc`) in its page and a different index at every level.
pub const VA: u64 = 0x0000_1234_5678_9abc;
/// The frame the walker tests map (any number will do: nothing reads it).
pub const FRAME: u64 = 0x7654_3000;
/// A user page that may be read and written, not executed.
pub const USER_RW: Prot = Prot { writable: true, user: true, executable: false, global: false };

/// Memory for 64 table frames and an empty root table in it.
pub fn memory() -> (SimMemory, PhysAddr) {
    let mem = SimMemory::new(ROOT_BASE, 64);
    let root = mem.alloc_table().unwrap();
    (mem, root)
}

/// The address of the entry at `level` for `va`, making tables (with
/// `make_table`) on the way where there are none.
///
/// # Panics
/// When an entry other than a table or none is in the way.
pub fn slot_of<F: PageTableFormat>(mem: &SimMemory, root: PhysAddr, va: u64, level: Level) -> PhysAddr {
    let mut table = root;
    for l in Level::TOP_DOWN {
        let slot = PhysAddr::new(table.as_u64() + 8 * l.index(va) as u64);
        if l == level {
            return slot;
        }
        table = match F::decode(mem.read_entry(slot), l) {
            Decoded::Table(next) => next,
            Decoded::None => {
                let next = mem.alloc_table().unwrap();
                mem.write_entry(slot, F::make_table(next, l));
                next
            }
            other => panic!("slot_of: {other:?} in the way at {l:?}"),
        };
    }
    unreachable!("slot_of: the PTE level ends every walk")
}

/// Writes `raw` as the entry at `level` for `va` (see [`slot_of`]);
/// returns the entry's address.
pub fn install<F: PageTableFormat>(
    mem: &SimMemory,
    root: PhysAddr,
    va: u64,
    level: Level,
    raw: u64,
) -> PhysAddr {
    let slot = slot_of::<F>(mem, root, va, level);
    mem.write_entry(slot, raw);
    slot
}

/// One walk of the format's MMU, no TLB.
pub fn walk<F: HardwareWalker>(
    mem: &SimMemory,
    root: PhysAddr,
    va: u64,
    access: HwAccess,
) -> Result<Translation, HwFault> {
    F::hw_translate(mem, root, VirtAddr::new(va), access)
}

/// A 4 KiB leaf of `frame`.
pub fn page(frame: u64, prot: Prot, dirty: bool, young: bool) -> Leaf {
    Leaf { frame: PhysAddr::new(frame), size: PageSize::Size4K, prot, dirty, young }
}

/// One page table in simulated memory (room for 65536 table frames from
/// physical 0x4000_0000), and a software TLB in front of the format's MMU.
pub struct Machine<F: HardwareWalker> {
    pub mem: SimMemory,
    pub tlb: SoftTlb<F>,
    pub table: PageTable<F>,
}

impl<F: HardwareWalker> Default for Machine<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: HardwareWalker> Machine<F> {
    /// An empty table.
    pub fn new() -> Self {
        let mem = SimMemory::new(0x4000_0000, 1 << 16);
        let table = PageTable::new(&mem).unwrap();
        Machine { mem, tlb: SoftTlb::default(), table }
    }

    /// A user read of `at`, through the TLB.
    pub fn read(&self, at: VirtAddr) -> Result<PhysAddr, HwFault> {
        self.tlb.translate(&self.mem, self.table.root(), at, HwAccess::USER_READ).map(|t| t.pa)
    }

    /// A user write of `at`, through the TLB.
    pub fn write(&self, at: VirtAddr) -> Result<PhysAddr, HwFault> {
        self.tlb.translate(&self.mem, self.table.root(), at, HwAccess::USER_WRITE).map(|t| t.pa)
    }

    /// Tears the table down; every table frame must come back.
    pub fn finish(self) {
        self.table.destroy(&self.mem, 0..0);
        assert_eq!(*self.mem.live_tables.borrow(), 0, "table frames leaked by destroy");
    }
}
