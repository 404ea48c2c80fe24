//! The kernel console: formatted output to the arch's serial port.
//!
//! [`print!`](crate::print) and [`println!`](crate::println) format into the
//! port while holding [`CONSOLE_LOCK`], so lines from different CPUs do not
//! interleave mid-line. The panic handler writes with [`write_unlocked`]: a
//! panic may happen while the lock is held, and the message matters more than
//! tidy output.
//!
//! Lock: `CONSOLE_LOCK` is a leaf lock (nothing is taken while holding it),
//! taken with interrupts disabled.

use crate::arch::prelude::*;
use core::fmt::{self, Write};

/// Serialises writers of whole formatted messages; taken with interrupts
/// off, so an interrupt handler that prints cannot deadlock against it.
static CONSOLE_LOCK: crate::sync::IrqSpinLock<()> = crate::sync::IrqSpinLock::new(());

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Arch::console_write(s.as_bytes());
        Ok(())
    }
}

/// Used by `print!`; prints `args` under the console lock.
pub fn print_locked(args: fmt::Arguments<'_>) {
    let _guard = CONSOLE_LOCK.lock();
    // Serial::write_str never fails.
    let _ = Serial.write_fmt(args);
}

/// Writes raw bytes (a program's output through `/dev/console`) under the
/// console lock.
pub fn write_bytes(bytes: &[u8]) {
    let _guard = CONSOLE_LOCK.lock();
    Arch::console_write(bytes);
}

/// Prints without taking the console lock. For the panic handler only.
pub fn write_unlocked(args: fmt::Arguments<'_>) {
    let _ = Serial.write_fmt(args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::print_locked(format_args!($($arg)*)));
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::print_locked(format_args!("{}\n", format_args!($($arg)*))));
}
