//! The clock: the time-stamp counter, calibrated once against the PIT.
//!
//! `RDTSC` counts at a constant rate, but the rate is not announced in a way
//! QEMU's TCG reliably fills in (CPUID leaves 0x15/0x16), so [`init`]
//! measures it: PIT channel 2 counts down 11932 ticks of its 1.193182 MHz
//! clock (10 ms) while we read the TSC before and after.
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::time::Time;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_TICKS: u64 = 11_932;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC rate. Boot CPU, once, interrupts off.
pub fn init() {
    let mut ctrl = Port::<u8>::new(0x61);
    let mut mode = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61 (gate/speaker), 0x43 (PIT mode) and 0x42 (PIT
    // channel 2) belong to the PC platform timer; channel 2 drives only the
    // speaker, which stays off (bit 1 clear).
    let cycles = unsafe {
        let old = ctrl.read();
        ctrl.write((old & !0x02) | 0x01); // gate high, speaker off
        mode.write(0b1011_0000); // channel 2, lo/hi byte, mode 0, binary
        ch2.write((CALIBRATION_TICKS & 0xff) as u8);
        ch2.write((CALIBRATION_TICKS >> 8) as u8);
        let start = rdtsc();
        while ctrl.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let end = rdtsc();
        ctrl.write(old);
        end - start
    };
    TSC_HZ.store((cycles * PIT_HZ / CALIBRATION_TICKS).max(1), Ordering::Relaxed);
}

impl Time for X86_64 {
    fn now_ns() -> u64 {
        let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
        (rdtsc() as u128 * 1_000_000_000 / hz as u128) as u64
    }

    fn describe_clock() -> (&'static str, u64) {
        ("TSC (calibrated against the PIT)", TSC_HZ.load(Ordering::Relaxed))
    }
}
