//! The clock: the generic timer's virtual counter (`CNTVCT_EL0`), whose
//! rate the firmware puts in `CNTFRQ_EL0`.
#![cfg(target_os = "none")]

use crate::Aarch64;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};
use arch_common::time::Time;

/// Nothing to calibrate: `CNTFRQ_EL0` says the rate.
pub fn init() {}

fn hz() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

impl Time for Aarch64 {
    fn now_ns() -> u64 {
        // An ISB keeps the counter read from being taken early.
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        (CNTVCT_EL0.get() as u128 * 1_000_000_000 / hz() as u128) as u64
    }

    fn describe_clock() -> (&'static str, u64) {
        ("CNTVCT_EL0 (generic timer)", hz())
    }
}
