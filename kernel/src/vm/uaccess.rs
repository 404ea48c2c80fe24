//! The one way kernel code touches user memory: copies to and from user
//! addresses of the address space the running task is in, through the
//! arch's user-access routines (`arch_common::user`: `copy_from_user`,
//! `copy_to_user`, `clear_user`).
//!
//! With SMAP (x86_64) or PAN (AArch64) on, those routines are the only
//! kernel instructions allowed to touch a user page; a plain load or store
//! at a user address anywhere else faults and the kernel panics. A first
//! touch inside a routine faults into the arch's exception table, which
//! offers it to [`on_uaccess_fault`] (installed by [`init`]): it runs
//! [`crate::vm::fault::resolve`], and on `Ok` the routine goes on where it
//! stopped; otherwise it returns the first address it could not reach.
//!
//! Two kinds of callers:
//! - System calls: [`copy_from_user`] and [`copy_to_user`] return
//!   `Err(BadAddress)` (the caller answers `EFAULT`); [`read_cstr`] reads
//!   a NUL-terminated string (a path, an `execve` argument) the same way.
//! - Kernel tasks working in a space (the in-guest tests, the benchmarks,
//!   the boot workload): [`read`], [`write`], [`read_u8`], [`write_u64`],
//!   [`read_words`], [`zero`], [`first_non_zero`], ... either complete or
//!   end the task with the fault's reason
//!   ([`crate::task::sched::kill_current`]), as a program touching a bad
//!   address would die. Each call is one user access (with SMAP a
//!   `stac`/`clac` pair: ~100 ns a call under TCG), so a page's worth of
//!   words goes much faster in one [`read_words`] or [`write_words`].
//!
//! The reason of a refusal (`Unresolved::why`, e.g. `NoMapping ...` or a
//! swap read error) is noted by the hook per task ([`REFUSALS`]) and taken
//! by the caller of the routine that failed: the ending helpers end the task
//! with it; the `Result` API drops it.
//!
//! Locks: [`REFUSALS`] (an `IrqSpinLock`, a leaf: nothing is taken under
//! it).
//!
//! # Panics
//! The ending helpers panic on an address outside the lower half (at or
//! above [`USER_END`]) or, for [`read`] and [`write`], not aligned to its
//! size: kernel bugs, never user input. An address in the lower half but in
//! no area (null, say) is fine: it faults, and the task is ended.

use crate::arch::prelude::*;
use crate::sync::IrqSpinLock;
use crate::task::sched;
use crate::vm::space::USER_END;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use arch_common::user::UserFault;
use mm::fault::MemFault;
use mm::PAGE_SIZE;

/// Why the last refused user access of each task was refused: (task id,
/// reason). Written by [`on_uaccess_fault`], taken by the task after its
/// routine returned; at most one entry per task.
static REFUSALS: IrqSpinLock<Vec<(u64, String)>> = IrqSpinLock::new(Vec::new());

/// Installs [`on_uaccess_fault`] as the arch's user-access fault hook.
/// Boot CPU, once, before any task touches user memory.
pub fn init() {
    crate::arch::user::set_uaccess_hook(on_uaccess_fault);
}

/// The user-access fault hook: a fault inside an arch user-access routine,
/// with interrupts off. True when [`crate::vm::fault::resolve`] made the
/// access possible (the routine retries); false when refused, after noting
/// why for the task.
fn on_uaccess_fault(fault: &MemFault) -> bool {
    match crate::vm::fault::resolve(fault) {
        Ok(()) => true,
        Err(e) => {
            let id = sched::current_id();
            let mut notes = REFUSALS.lock();
            notes.retain(|(task, _)| *task != id);
            notes.push((id, e.why()));
            false
        }
    }
}

/// Takes the reason the hook noted for the running task's refused access.
fn take_refusal() -> Option<String> {
    let id = sched::current_id();
    let mut notes = REFUSALS.lock();
    let i = notes.iter().position(|(task, _)| *task == id)?;
    let why = notes.swap_remove(i).1;
    if notes.is_empty() {
        // Give the table's memory back: nothing is kept while no access is
        // being refused.
        *notes = Vec::new();
    }
    Some(why)
}

/// Ends the running task for the refused access at `fault`.
fn end_task(fault: UserFault) -> ! {
    let why = take_refusal().unwrap_or_else(|| format!("user access at {:#x} refused", fault.addr));
    sched::kill_current(why)
}

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

fn in_user_half(addr: u64, len: usize) -> bool {
    addr.checked_add(len as u64).is_some_and(|end| end <= USER_END)
}

/// What may be loaded from and stored to user memory: plain integers,
/// valid for every bit pattern, whose alignment is their size.
pub trait UserWord: Copy + Default {}
impl UserWord for u8 {}
impl UserWord for u64 {}

/// Loads the `T` at user address `addr` (aligned to its size); a refused
/// access ends the task.
pub fn read<T: UserWord>(addr: u64) -> T {
    let size = core::mem::size_of::<T>();
    check(addr, size as u64);
    let mut value = T::default();
    // SAFETY: `value` is valid for `size` bytes of writes, and any bytes
    // are a valid `UserWord`; the source is in the user half (checked).
    match unsafe { Arch::copy_from_user(&mut value as *mut T as *mut u8, addr, size) } {
        Ok(()) => value,
        Err(fault) => end_task(fault),
    }
}

/// Stores `value` at user address `addr` (aligned to its size); a refused
/// access ends the task.
pub fn write<T: UserWord>(addr: u64, value: T) {
    let size = core::mem::size_of::<T>();
    check(addr, size as u64);
    // SAFETY: `value` is valid for `size` bytes of reads; the target is in
    // the user half (checked).
    if let Err(fault) = unsafe { Arch::copy_to_user(addr, &value as *const T as *const u8, size) } {
        end_task(fault)
    }
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

/// Loads the 8-aligned words from user address `addr` into `words`, with
/// one copy; a refused access ends the task.
pub fn read_words(addr: u64, words: &mut [u64]) {
    let len = core::mem::size_of_val(words);
    check(addr, 8);
    check_range(addr, len as u64);
    // SAFETY: `words` is valid for `len` bytes of writes, any bytes are
    // valid `u64`s; the source is in the user half (checked).
    if let Err(fault) = unsafe { Arch::copy_from_user(words.as_mut_ptr() as *mut u8, addr, len) } {
        end_task(fault)
    }
}

/// Stores `words` at the 8-aligned user address `addr`, with one copy; a
/// refused access ends the task.
pub fn write_words(addr: u64, words: &[u64]) {
    let len = core::mem::size_of_val(words);
    check(addr, 8);
    check_range(addr, len as u64);
    // SAFETY: `words` is valid for `len` bytes of reads; the target is in
    // the user half (checked).
    if let Err(fault) = unsafe { Arch::copy_to_user(addr, words.as_ptr() as *const u8, len) } {
        end_task(fault)
    }
}

/// Writes `len` zero bytes from `addr`, as a program's memset would; a
/// refused access ends the task.
pub fn zero(addr: u64, len: u64) {
    check_range(addr, len);
    // SAFETY: the range is in the user half (checked).
    if let Err(fault) = unsafe { Arch::clear_user(addr, len as usize) } {
        end_task(fault)
    }
}

/// The offset of the first non-zero 8-byte word of `[addr, addr + len)`;
/// a refused access ends the task.
pub fn first_non_zero(addr: u64, len: u64) -> Option<u64> {
    check_range(addr, len);
    assert!(addr.is_multiple_of(8), "first_non_zero: {addr:#x} is not 8-byte aligned");
    let mut buf = [0u64; 128];
    let words = len / 8;
    let mut done = 0;
    while done < words {
        let n = (words - done).min(buf.len() as u64) as usize;
        let at = addr + done * 8;
        // SAFETY: `buf` is valid for `n * 8` bytes of writes, any bytes are
        // valid `u64`s; the source is in the user half (checked).
        if let Err(fault) = unsafe { Arch::copy_from_user(buf.as_mut_ptr() as *mut u8, at, n * 8) } {
            end_task(fault)
        }
        if let Some(i) = buf[..n].iter().position(|&w| w != 0) {
            return Some((done + i as u64) * 8);
        }
        done += n as u64;
    }
    None
}

/// A user access that failed: the first user address that could not be
/// reached. System calls answer it with `EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAddress {
    pub addr: u64,
}

impl BadAddress {
    /// The failure of a routine (the hook's note of why is dropped).
    fn from_fault(fault: UserFault) -> BadAddress {
        take_refusal();
        BadAddress { addr: fault.addr }
    }
}

/// Copies `dst.len()` bytes from user address `src` into `dst`; `Err`
/// when some byte of the range is not the process's to read (the range
/// leaves the user half, no area, not readable, not brought back).
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), BadAddress> {
    if !in_user_half(src, dst.len()) {
        return Err(BadAddress { addr: src });
    }
    // SAFETY: `dst` is valid for its length of writes; the source is in
    // the user half (checked).
    unsafe { Arch::copy_from_user(dst.as_mut_ptr(), src, dst.len()) }.map_err(BadAddress::from_fault)
}

/// Why [`read_cstr`] refused a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CStrError {
    /// A byte before the NUL could not be read (`EFAULT`).
    BadAddress,
    /// No NUL within the first `max` bytes (`ENAMETOOLONG`).
    TooLong,
    /// The bytes are not UTF-8. Every name this kernel holds is UTF-8, so
    /// such a path names nothing (`ENOENT`, as Linux answers for a name
    /// that does not exist); an `execve` argument gets the same answer.
    NotUtf8,
}

/// Reads the NUL-terminated string at user address `addr`: the bytes
/// before the NUL, which must come within the first `max` bytes (so the
/// string with its NUL fits in `max`; `PATH_MAX` counts it that way).
/// Reads a chunk at a time, never across a page (the next page may not be
/// mapped and the string may end before it), and never past `max` bytes.
///
/// # Errors
/// See [`CStrError`].
pub fn read_cstr(addr: u64, max: usize) -> Result<String, CStrError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    while out.len() < max {
        let at = addr.checked_add(out.len() as u64).ok_or(CStrError::BadAddress)?;
        let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(chunk.len()).min(max - out.len());
        copy_from_user(&mut chunk[..n], at).map_err(|_| CStrError::BadAddress)?;
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return String::from_utf8(out).map_err(|_| CStrError::NotUtf8);
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Err(CStrError::TooLong)
}

/// Copies `src` to user address `dst`; `Err` as for [`copy_from_user`]
/// (not writable, too).
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), BadAddress> {
    if !in_user_half(dst, src.len()) {
        return Err(BadAddress { addr: dst });
    }
    // SAFETY: `src` is valid for its length of reads; the target is in the
    // user half (checked).
    unsafe { Arch::copy_to_user(dst, src.as_ptr(), src.len()) }.map_err(BadAddress::from_fault)
}

/// Writes `len` zero bytes at user address `dst`; `Err` as for
/// [`copy_to_user`].
pub fn clear_user(dst: u64, len: usize) -> Result<(), BadAddress> {
    if !in_user_half(dst, len) {
        return Err(BadAddress { addr: dst });
    }
    // SAFETY: the target is in the user half (checked).
    unsafe { Arch::clear_user(dst, len) }.map_err(BadAddress::from_fault)
}
