//! `mm::fault::handle_fault_shared` over both real formats: the fault
//! that runs with the address-space lock held shared maps exactly the
//! first touch of a page whose PTE table exists, under that table's lock,
//! as `handle_fault` would map it; everything else it declines without
//! changing anything (the kernel then takes the lock alone). The races of
//! two such faults, and of one against the exclusive path, are in
//! `races_shared_faults.rs`.

use std::cell::RefCell;

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;

use mm::fault::{handle_fault_shared, Access, FaultCause, FaultOutcome, MemFault, PteTableLocks};
use mm::pgtable::sim::HardwareWalker;
use mm::pgtable::{Decoded, Level, PageSize};
use mm::testkit::world::{va, World, AREA, HP, PAGE, RW};
use mm::vma::{ThpMode, VmaProt};
use mm::PhysAddr;

/// Table locks that only record which tables were locked, and check that
/// no two are held at once.
#[derive(Default)]
struct Recorded {
    locked: RefCell<Vec<PhysAddr>>,
    held: RefCell<bool>,
}

impl PteTableLocks for Recorded {
    fn with_table_locked<R>(&self, table: PhysAddr, f: impl FnOnce() -> R) -> R {
        assert!(!self.held.replace(true), "a table lock taken under another");
        self.locked.borrow_mut().push(table);
        let r = f();
        *self.held.borrow_mut() = false;
        r
    }
}

fn shared<F: HardwareWalker>(
    w: &World<F>,
    locks: &Recorded,
    at: u64,
    access: Access,
) -> Option<FaultOutcome> {
    let sp = w.sp(0);
    let fault = MemFault { addr: va(at), access, cause: FaultCause::NotMapped, level: None, syndrome: 0 };
    handle_fault_shared(&sp.table, &sp.vmas, &w.mem, &w.frames, locks, &fault, true)
}

fn only_the_first_touch_of_a_page_in_an_existing_table<F: HardwareWalker>() {
    let mut w = World::<F>::new();
    w.mmap(0, AREA, 2 * HP, RW);
    w.advise_thp(0, AREA, 2 * HP, ThpMode::Never);
    w.mmap(0, AREA + 4 * HP, HP, VmaProt::READ);
    let locks = Recorded::default();
    let free = w.nr_free();
    // No PTE table yet: declined, nothing taken.
    assert_eq!(shared(&w, &locks, AREA + 5, Access::Write), None);
    assert_eq!((w.lookup(0, AREA).1, w.nr_free()), (Decoded::None, free));
    // The exclusive path makes the table and maps the first page.
    assert_eq!(w.write(0, AREA, 1), [FaultOutcome::Resolved]);
    let free = w.nr_free();
    // Now a write to the next page: mapped as handle_fault maps it, under
    // the lock of the table the entry lies in.
    assert_eq!(shared(&w, &locks, AREA + PAGE + 8, Access::Write), Some(FaultOutcome::Resolved));
    let (level, leaf) = w.leaf(0, AREA + PAGE);
    assert_eq!((level, leaf.size), (Level::Pte, PageSize::Size4K));
    assert!(leaf.prot.writable && leaf.prot.user && leaf.dirty && leaf.young);
    let folio = w.folio_at(0, AREA + PAGE);
    assert_eq!((folio.order(), folio.refcount(), folio.total_mapcount()), (0, 1, 1));
    assert_eq!(w.nr_free(), free - 1);
    let table_of = |w: &World<F>, at: u64| {
        let sp = w.sp(0);
        PhysAddr::new(sp.table.walk(&w.mem, va(at)).pa.as_u64() & !0xfff)
    };
    assert_eq!(*locks.locked.borrow(), [table_of(&w, AREA)]);
    // A read: mapped clean.
    assert_eq!(shared(&w, &locks, AREA + 2 * PAGE, Access::Read), Some(FaultOutcome::Resolved));
    assert!(!w.leaf(0, AREA + 2 * PAGE).1.dirty);
    // The page reads zeros and takes the write that faulted.
    assert_eq!(w.read(0, AREA + 2 * PAGE + 9), 0);
    // A present entry, a refused access, no area, no table: declined.
    let free = w.nr_free();
    let before = w.stats(0);
    assert_eq!(shared(&w, &locks, AREA + PAGE, Access::Write), None);
    assert_eq!(shared(&w, &locks, AREA + 4 * HP, Access::Write), None);
    assert_eq!(shared(&w, &locks, AREA + 3 * HP, Access::Read), None);
    assert_eq!(shared(&w, &locks, AREA + HP, Access::Write), None);
    assert_eq!((w.nr_free(), w.stats(0)), (free, before));
    assert_eq!(locks.locked.borrow().len(), 2, "a declined fault takes no table lock");
    w.check();
    w.finish();
}

mm::for_both_formats!(only_the_first_touch_of_a_page_in_an_existing_table);
