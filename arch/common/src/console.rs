//! The serial console, write side: what the kernel's `print!` ends in.
//!
//! The boot path sets the port up (arch-specific: COM1 on x86_64, the
//! device tree's PL011 on AArch64); until then output is dropped. The
//! kernel serialises whole lines with its console lock; the arch only
//! guarantees that each byte reaches the port.

/// The console an arch provides.
pub trait Console {
    /// Writes `bytes` to the serial port, `\n` as `\r\n`. Dropped before
    /// the boot path has set the port up.
    fn console_write(bytes: &[u8]);
}
