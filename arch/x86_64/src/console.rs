//! COM1 (I/O port 0x3f8), a 16550 UART, write side.
//!
//! [`init`] programs the UART once; `Console::console_write` sends bytes,
//! turning `\n` into `\r\n` (the `uart_16550` crate does that for `\n`).
//! Callers serialise whole lines with the kernel's console lock.
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::console::Console;
use core::sync::atomic::{AtomicBool, Ordering};
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;
static READY: AtomicBool = AtomicBool::new(false);

fn port() -> SerialPort {
    // SAFETY: 0x3f8 is COM1 on the PC platform; the port only touches the
    // UART's eight I/O registers.
    unsafe { SerialPort::new(COM1) }
}

/// Programs COM1 (line settings, FIFO). Boot CPU, once, before printing.
pub fn init() {
    port().init();
    READY.store(true, Ordering::Release);
}

impl Console for X86_64 {
    /// Writes `bytes` to COM1; dropped before [`init`].
    fn console_write(bytes: &[u8]) {
        if !READY.load(Ordering::Acquire) {
            return;
        }
        let mut port = port();
        for &b in bytes {
            port.send(b);
        }
    }
}
