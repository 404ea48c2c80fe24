//! The PL011 UART (Arm PrimeCell UART), write side only.
//!
//! The boot path finds the UART in the device tree and calls [`init`] with its
//! address in the direct map. Until then `Console::console_write` drops
//! output.
//! Callers serialise whole lines with the kernel's console lock; this module
//! only guarantees that each byte reaches the transmit FIFO.
#![cfg(target_os = "none")]

use crate::Aarch64;
use arch_common::console::Console;
use core::sync::atomic::{AtomicU64, Ordering};

/// Data register.
const UARTDR: u64 = 0x00;
/// Flag register; bit 5 = transmit FIFO full.
const UARTFR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// Virtual address of the UART's registers, 0 until [`init`].
static BASE: AtomicU64 = AtomicU64::new(0);

/// Uses the PL011 whose registers are mapped at `base` (Device memory).
///
/// # Safety
/// `base` must be the virtual address of a PL011's register block, mapped
/// as Device memory for as long as the kernel runs.
pub unsafe fn init(base: u64) {
    BASE.store(base, Ordering::Release);
}

fn put(base: u64, byte: u8) {
    // SAFETY: `base` was given to `init`, whose contract makes it a mapped
    // PL011 register block; FR and DR are 32-bit registers read and written
    // with volatile accesses as the device requires.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UARTDR) as *mut u32, byte as u32);
    }
}

impl Console for Aarch64 {
    fn console_write(bytes: &[u8]) {
        let base = BASE.load(Ordering::Acquire);
        if base == 0 {
            return;
        }
        for &b in bytes {
            if b == b'\n' {
                put(base, b'\r');
            }
            put(base, b);
        }
    }
}
