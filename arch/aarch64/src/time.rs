//! The clock: the generic timer's virtual counter (`CNTVCT_EL0`), whose
//! rate the firmware puts in `CNTFRQ_EL0`.
//!
//! The date: the `virt` machine's PL031 real-time clock, whose data
//! register (offset 0) counts seconds since the Unix epoch (QEMU starts it
//! at the host's UTC time). The boot path finds it in the device tree
//! (compatible `arm,pl031`) and gives its address to [`set_rtc`]; it must
//! lie in the boot tables' low Device GiB, where it is read through the
//! direct map. [`RTC`] is written once, before any other CPU runs.
#![cfg(target_os = "none")]

use crate::Aarch64;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};
use arch_common::time::Time;
use core::sync::atomic::{AtomicU64, Ordering};

/// The PL031's physical address; 0 while there is none.
static RTC: AtomicU64 = AtomicU64::new(0);

/// The registers' size.
const PL031_SIZE: u64 = 0x1000;

/// Why a PL031 was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcError {
    /// Its registers are outside the low GiB the boot tables map as Device.
    Unmapped,
}

/// Takes the PL031 at physical address `pa` (from the device tree). Boot
/// CPU, once.
pub fn set_rtc(pa: u64) -> Result<(), RtcError> {
    if pa == 0 || pa.checked_add(PL031_SIZE).is_none_or(|end| end > 1 << 30) {
        return Err(RtcError::Unmapped);
    }
    RTC.store(pa, Ordering::Relaxed);
    Ok(())
}

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

    fn rtc_unix_secs() -> Option<(u64, &'static str)> {
        let pa = RTC.load(Ordering::Relaxed);
        if pa == 0 {
            return None;
        }
        // SAFETY: `set_rtc` took `pa` from the device tree's PL031 node and
        // checked that its registers lie in the low GiB the boot tables map
        // as Device memory at DIRECT_MAP_OFFSET + pa; RTCDR (offset 0) is a
        // 32-bit register whose read has no side effect.
        let secs = unsafe { core::ptr::read_volatile((pa + crate::DIRECT_MAP_OFFSET) as *const u32) };
        Some((secs as u64, "PL031 RTC"))
    }
}
