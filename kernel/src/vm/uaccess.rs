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
    check_range(addr, size);
    assert!(addr.is_multiple_of(size), "uaccess: {addr:#x} is not aligned to {size}");
}

fn check_range(addr: u64, len: u64) {
    assert!(
        addr.checked_add(len).is_some_and(|end| end <= USER_END),
        "uaccess: [{addr:#x}, +{len:#x}) is not in the user half"
    );
}

/// What may be loaded from and stored to user memory: plain integers,
/// valid for every bit pattern, whose alignment is their size.
pub trait UserWord: Copy {}
impl UserWord for u8 {}
impl UserWord for u64 {}

/// Loads the `T` at user address `addr` (aligned to its size).
pub fn read<T: UserWord>(addr: u64) -> T {
    check(addr, core::mem::size_of::<T>() as u64);
    // SAFETY: a user address (checked above, with its alignment) of the
    // running task's own space: the load either succeeds or faults into
    // the fault entry, which maps the page (the load is retried) or ends
    // the task without returning here. No Rust object lives in the lower
    // half, so nothing is read behind its owner's back; a `UserWord` is
    // valid for any bits.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// Stores `value` at user address `addr` (aligned to its size).
pub fn write<T: UserWord>(addr: u64, value: T) {
    check(addr, core::mem::size_of::<T>() as u64);
    // SAFETY: as in `read`; no Rust object lives in the lower half, so the
    // store changes nothing the kernel owns.
    unsafe { core::ptr::write_volatile(addr as *mut T, value) }
}

/// Loads the byte at user address `addr`.
pub fn read_u8(addr: u64) -> u8 {
    read(addr)
}

/// Stores the byte `value` at user address `addr`.
pub fn write_u8(addr: u64, value: u8) {
    write(addr, value)
}

/// Loads the 8-aligned word at user address `addr`.
pub fn read_u64(addr: u64) -> u64 {
    read(addr)
}

/// Stores the word `value` at the 8-aligned user address `addr`.
pub fn write_u64(addr: u64, value: u64) {
    write(addr, value)
}

/// Writes `len` zero bytes from `addr`, as a program's memset would.
pub fn zero(addr: u64, len: u64) {
    check_range(addr, len);
    // SAFETY: as in `write`, for every byte of the range (checked above).
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len as usize) }
}

/// The offset of the first non-zero 8-byte word of `[addr, addr + len)`.
pub fn first_non_zero(addr: u64, len: u64) -> Option<u64> {
    check_range(addr, len);
    assert!(addr.is_multiple_of(8), "first_non_zero: {addr:#x} is not 8-byte aligned");
    // SAFETY: 1. an aligned user range (checked above): every word of it is
    // either the running task's memory or faults in as in `read`; any bit
    // pattern is a valid `u64`. 2. The caller's task reads only, and the
    // callers run no other task in the space while the slice lives, so
    // nothing writes the memory behind the shared reference.
    let words = unsafe { core::slice::from_raw_parts(addr as *const u64, (len / 8) as usize) };
    words.iter().position(|&w| w != 0).map(|i| i as u64 * 8)
}

/// A user access that failed: the first user address that could not be
/// reached. System calls answer it with `EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAddress {
    pub addr: u64,
}

/// Copies `dst.len()` bytes from user address `src` into `dst`; `Err`
/// when some byte of the range is not the process's to read (the range
/// leaves the user half, no area, not readable).
///
/// Interim body (issue 15): the range check is real, but a bad address
/// inside the user half still ends the task; the fix-up path replaces it.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), BadAddress> {
    if !src.checked_add(dst.len() as u64).is_some_and(|end| end <= USER_END) {
        return Err(BadAddress { addr: src });
    }
    for (i, byte) in dst.iter_mut().enumerate() {
        *byte = read_u8(src + i as u64);
    }
    Ok(())
}

/// Copies `src` to user address `dst`; `Err` as for [`copy_from_user`]
/// (not writable, too).
///
/// Interim body (issue 15): as [`copy_from_user`].
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), BadAddress> {
    if !dst.checked_add(src.len() as u64).is_some_and(|end| end <= USER_END) {
        return Err(BadAddress { addr: dst });
    }
    for (i, byte) in src.iter().enumerate() {
        write_u8(dst + i as u64, *byte);
    }
    Ok(())
}
