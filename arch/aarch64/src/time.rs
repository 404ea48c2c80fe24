//! The clock: the generic timer's virtual counter (`CNTVCT_EL0`), whose
//! rate the firmware puts in `CNTFRQ_EL0`.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};

/// Nothing to calibrate: `CNTFRQ_EL0` says the rate.
pub fn init() {}

fn hz() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

/// Nanoseconds since an arbitrary point (boot).
pub fn now_ns() -> u64 {
    // An ISB keeps the counter read from being taken early.
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    (CNTVCT_EL0.get() as u128 * 1_000_000_000 / hz() as u128) as u64
}

/// The clock's name and rate, printed once at boot.
pub fn describe() -> (&'static str, u64) {
    ("CNTVCT_EL0 (generic timer)", hz())
}
