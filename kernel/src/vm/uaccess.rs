//! The one way kernel code touches user memory: loads and stores at user
//! addresses of the address space the running task is in.
//!
//! Every access is volatile (the compiler may neither drop it nor merge it
//! with another: each one is the touch a program would make) and goes
//! through the MMU with the task's own page table loaded. A first touch
//! faults into the fault entry ([`crate::vm::space`]), which maps the page
//! and retries the access, or ends the task with a message when the access
//! is not allowed; so an access here either completes or never returns.
//!
//! The in-guest tests, the benchmarks and the boot workload use these; the
//! system calls of user processes will reach user memory through here too.
//!
//! # Panics
//! On an address outside the lower half (at or above [`USER_END`]) or not
//! aligned to its size: that is a kernel bug, never user input. An address
//! in the lower half but in no area (null, say) is fine: it faults, and
//! the task is ended.

use crate::vm::space::USER_END;

fn check(addr: u64, size: u64) {
    assert!(
        addr.checked_add(size).is_some_and(|end| end <= USER_END) && addr.is_multiple_of(size),
        "uaccess: {addr:#x} (+{size}) is not an aligned user address"
    );
}

/// Loads the byte at user address `addr`.
pub fn read_u8(addr: u64) -> u8 {
    check(addr, 1);
    // SAFETY: a user address (checked above) of the running task's own
    // space: the load either succeeds or faults into the fault entry,
    // which maps the page (the load is retried) or ends the task without
    // returning here. No Rust object lives in the lower half, so nothing
    // is read behind its owner's back; any byte value is valid.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Stores `value` at user address `addr`.
pub fn write_u8(addr: u64, value: u8) {
    check(addr, 1);
    // SAFETY: as in `read_u8`; no Rust object lives in the lower half, so
    // the store changes nothing the kernel owns.
    unsafe { core::ptr::write_volatile(addr as *mut u8, value) }
}

/// Loads the 8-aligned word at user address `addr`.
pub fn read_u64(addr: u64) -> u64 {
    check(addr, 8);
    // SAFETY: as in `read_u8`, and `addr` is 8-aligned (checked above).
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Stores `value` at the 8-aligned user address `addr`.
pub fn write_u64(addr: u64, value: u64) {
    check(addr, 8);
    // SAFETY: as in `write_u8`, and `addr` is 8-aligned (checked above).
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}
