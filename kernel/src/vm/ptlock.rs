//! Split page-table locks: the lock of one PTE table, for the faults that
//! hold their address space's lock only shared
//! (`mm::fault::handle_fault_shared`).
//!
//! What it does: [`PteLocks`] hashes a PTE table's frame number onto one of
//! [`NR_LOCKS`] spin locks. Tables that share a lock only wait for each
//! other a little more; the frames of one space's tables are usually
//! consecutive, so the tables of neighbouring 2 MiB ranges get different
//! locks.
//!
//! Invariants: a table's lock is taken only while the space's lock is held
//! shared (`AddressSpace::read`), around the recheck and the write of one
//! empty entry of that table; nothing else is taken under it, and nothing
//! waits for another CPU while holding it. Every other writer of a PTE
//! holds the space's lock alone, which keeps every shared holder out, so
//! it needs no table lock. The order: the address-space lock (shared),
//! then one table lock (`docs/src/locking.md`).
//!
//! Interrupts are off throughout (the fault handler runs so); the spin
//! serves this CPU's TLB flush requests, as every wait under the fault
//! path does (`crate::vm::tlb::handle_ipi`).

/// How many locks the tables share.
pub const NR_LOCKS: usize = 64;

static LOCKS: [spin::Mutex<()>; NR_LOCKS] = [const { spin::Mutex::new(()) }; NR_LOCKS];

/// The kernel's `mm::fault::PteTableLocks`.
pub struct PteLocks;

impl mm::fault::PteTableLocks for PteLocks {
    fn with_table_locked<R>(&self, table: mm::PhysAddr, f: impl FnOnce() -> R) -> R {
        let lock = &LOCKS[(table.as_u64() >> 12) as usize % NR_LOCKS];
        let guard = loop {
            if let Some(guard) = lock.try_lock() {
                break guard;
            }
            crate::vm::tlb::handle_ipi();
            core::hint::spin_loop();
        };
        let r = f();
        drop(guard);
        r
    }
}
