//! The panic handler. A panic means a kernel invariant broke (see the
//! `# Panics` sections): print the message and where, the call stack
//! ([`crate::backtrace`]), then make QEMU exit
//! with the failure status so the runner reports it. Nothing a user or a
//! device does may lead here.

use crate::arch::prelude::*;
use crate::arch::ExitStatus;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: stop here rather than loop.
        Arch::exit(ExitStatus::Failure);
    }
    match info.location() {
        Some(loc) => crate::console::write_unlocked(format_args!(
            "\nkernel panic: {} at {}:{}:{}\n",
            info.message(),
            loc.file(),
            loc.line(),
            loc.column()
        )),
        None => crate::console::write_unlocked(format_args!("\nkernel panic: {}\n", info.message())),
    }
    crate::backtrace::print();
    Arch::exit(ExitStatus::Failure)
}
