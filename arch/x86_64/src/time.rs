//! The clock: the time-stamp counter, calibrated once against the PIT.
//!
//! `RDTSC` counts at a constant rate, but the rate is not announced in a way
//! QEMU's TCG reliably fills in (CPUID leaves 0x15/0x16), so [`init`]
//! measures it: PIT channel 2 counts down 11932 ticks of its 1.193182 MHz
//! clock (10 ms) while we read the TSC before and after.
//!
//! The date: the PC's CMOS real-time clock (MC146818, ports 0x70/0x71),
//! read by [`read_cmos`]: its registers are read until two passes agree,
//! neither started during an update (register A's UIP bit), in BCD or
//! binary and 12- or 24-hour form as register B says; the century comes
//! from register 0x32 (where QEMU and most PCs keep it) when it reads
//! 19..=29, else the years are 2000..2099. QEMU's clock is the host's
//! UTC time unless `-rtc base=localtime` is given. Only the boot CPU reads
//! it, once (the kernel's call), so nothing else selects a CMOS register
//! meanwhile.
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::time::{CivilTime, Time};
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

/// Reads CMOS register `reg`.
fn cmos(reg: u8) -> u8 {
    let mut select = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 are the PC's CMOS index and data ports;
    // selecting a register (bit 7, NMI masking, left clear) and reading it
    // changes no other state.
    unsafe {
        select.write(reg & 0x7f);
        data.read()
    }
}

/// The RTC's raw fields: seconds, minutes, hours, day, month, year,
/// century.
fn cmos_fields() -> [u8; 7] {
    [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(cmos)
}

/// Register A's update-in-progress bit.
fn cmos_updating() -> bool {
    cmos(0x0a) & 0x80 != 0
}

/// The CMOS clock's date (see the module doc), or `None` when it never
/// reads the same twice or reads no date.
pub fn read_cmos() -> Option<CivilTime> {
    let mut fields = None;
    for _ in 0..1000 {
        while cmos_updating() {
            core::hint::spin_loop();
        }
        let a = cmos_fields();
        if !cmos_updating() && cmos_fields() == a {
            fields = Some(a);
            break;
        }
    }
    let [sec, min, hour, day, month, year, century] = fields?;
    let status_b = cmos(0x0b);
    let binary = status_b & 0x04 != 0;
    let hour24 = status_b & 0x02 != 0;
    let bcd = |v: u8| if binary { v as u32 } else { (v >> 4) as u32 * 10 + (v & 0x0f) as u32 };
    let pm = !hour24 && hour & 0x80 != 0;
    let mut h = bcd(hour & 0x7f);
    if !hour24 {
        // 12 AM is 0, 12 PM is 12.
        h = h % 12 + if pm { 12 } else { 0 };
    }
    let century = match bcd(century) {
        c @ 19..=29 => c,
        _ => 20,
    };
    Some(CivilTime {
        year: century * 100 + bcd(year),
        month: bcd(month),
        day: bcd(day),
        hour: h,
        minute: bcd(min),
        second: bcd(sec),
    })
}

impl Time for X86_64 {
    fn now_ns() -> u64 {
        let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
        (rdtsc() as u128 * 1_000_000_000 / hz as u128) as u64
    }

    fn describe_clock() -> (&'static str, u64) {
        ("TSC (calibrated against the PIT)", TSC_HZ.load(Ordering::Relaxed))
    }

    fn rtc_unix_secs() -> Option<(u64, &'static str)> {
        Some((read_cmos()?.unix_secs()?, "CMOS RTC"))
    }
}
