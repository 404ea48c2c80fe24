//! `futex`: `FUTEX_WAIT`, `FUTEX_WAKE`, `FUTEX_WAIT_BITSET` and
//! `FUTEX_WAKE_BITSET`, private or shared.
//!
//! A futex is named by its address space and user address: private and
//! shared futexes are the same here, because no two processes share
//! memory (anonymous memory is private; fork copies on write), so a
//! shared futex can only be waited on and woken inside one space.
//!
//! ## Protocol
//!
//! A waiter puts itself in [`WAITERS`] first, then reads the word: if it
//! differs from the expected value it leaves (`EAGAIN`); else it parks
//! until a waker takes it out of the table and sets its `woken` flag. A
//! waker that changed the word after the waiter's read finds the waiter
//! in the table; one before it, the waiter sees the new value. So no wake
//! is lost, and the word is never read under a lock (the read may fault
//! and sleep). A wait with a timeout parks until the deadline
//! (`sched::park_until`: a wake or a signal's kick ends it earlier). A
//! waiting thread also leaves when it must end or has a signal to deliver
//! ([`super::thread::Thread::interrupted`]): a wait without a timeout with
//! `ERESTARTSYS` (it runs again after a handler with `SA_RESTART`, as in
//! Linux), a timed one with `EINTR`.
//!
//! Locks: [`WAITERS`] (a leaf).

use super::syscall::{Ctx, Errno, SysResult};
use super::thread::Thread;
use crate::arch::prelude::*;
use crate::sync::IrqSpinLock;
use crate::task::sched::{self, Task};
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::copy_from_user;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use linux_raw_sys::general as g;

/// One waiting thread.
struct Waiter {
    /// The space's root and the word's user address.
    key: (u64, u64),
    bitset: u32,
    task: Arc<Task>,
    woken: Arc<AtomicBool>,
}

/// Every waiting thread.
static WAITERS: IrqSpinLock<Vec<Waiter>> = IrqSpinLock::new(Vec::new());

/// Gives an empty table's memory back (nothing of a thread outlives it).
fn shrink(w: &mut Vec<Waiter>) {
    if w.is_empty() {
        *w = Vec::new();
    }
}

/// Wakes at most `n` waiters on `uaddr` of `space` whose bitset meets
/// `bitset`; returns how many.
pub fn wake(space: &AddressSpace, uaddr: u64, n: u32, bitset: u32) -> u32 {
    let key = (space.root().as_u64(), uaddr);
    let mut woken = Vec::new();
    {
        let mut w = WAITERS.lock();
        let mut i = 0;
        while i < w.len() && (woken.len() as u32) < n {
            if w[i].key == key && w[i].bitset & bitset != 0 {
                woken.push(w.swap_remove(i));
            } else {
                i += 1;
            }
        }
    }
    shrink(&mut WAITERS.lock());
    for w in &woken {
        w.woken.store(true, Ordering::Release);
        sched::unpark(&w.task);
    }
    woken.len() as u32
}

/// Waits on `uaddr` while it holds `val`, until woken, the deadline (in
/// `Time::now_ns` nanoseconds) or the process's exit.
fn wait(
    thread: &Thread,
    space: &AddressSpace,
    uaddr: u64,
    val: u32,
    bitset: u32,
    deadline: Option<u64>,
) -> SysResult {
    let key = (space.root().as_u64(), uaddr);
    let woken = Arc::new(AtomicBool::new(false));
    WAITERS.lock().push(Waiter { key, bitset, task: sched::current_task(), woken: woken.clone() });
    let leave = |woken: &Arc<AtomicBool>| {
        let mut w = WAITERS.lock();
        w.retain(|w| !Arc::ptr_eq(&w.woken, woken));
        shrink(&mut w);
    };
    let mut word = [0u8; 4];
    if let Err(e) = copy_from_user(&mut word, uaddr) {
        leave(&woken);
        return Err(e.into());
    }
    if u32::from_ne_bytes(word) != val {
        leave(&woken);
        return Err(Errno::EAGAIN);
    }
    loop {
        if woken.load(Ordering::Acquire) {
            return Ok(0);
        }
        if thread.interrupted() {
            leave(&woken);
            // As Linux: a wait without a timeout runs again after a handler
            // with `SA_RESTART`; a timed one returns `EINTR`.
            return Err(if deadline.is_some() { Errno::EINTR } else { Errno::ERESTARTSYS });
        }
        match deadline {
            Some(d) => {
                if Arch::now_ns() >= d {
                    leave(&woken);
                    // A wake between the check and the leave counts.
                    return if woken.load(Ordering::Acquire) { Ok(0) } else { Err(Errno::ETIMEDOUT) };
                }
                // Until the deadline, a wake or a signal's kick.
                sched::park_for_ns(d - Arch::now_ns().min(d));
            }
            None => sched::park(),
        }
    }
}

/// Reads a `struct timespec` at `addr` as nanoseconds.
pub fn read_timespec(addr: u64) -> Result<u64, Errno> {
    let mut raw = [0u8; 16];
    copy_from_user(&mut raw, addr)?;
    let sec = i64::from_ne_bytes(raw[..8].try_into().unwrap());
    let nsec = i64::from_ne_bytes(raw[8..].try_into().unwrap());
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64))
}

/// `futex(uaddr, op, val, timeout, uaddr2, val3)`.
pub fn futex(c: &mut Ctx, uaddr: u64, op: u32, val: u32, timeout: u64, val3: u32) -> SysResult {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let space = c.thread.process.space().ok_or(Errno::EINVAL)?;
    let cmd = op & !(g::FUTEX_PRIVATE_FLAG | g::FUTEX_CLOCK_REALTIME);
    match cmd {
        g::FUTEX_WAIT | g::FUTEX_WAIT_BITSET => {
            let bitset = if cmd == g::FUTEX_WAIT { u32::MAX } else { val3 };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let deadline = if timeout == 0 {
                None
            } else {
                let t = read_timespec(timeout)?;
                // FUTEX_WAIT's timeout is relative; WAIT_BITSET's absolute
                // (on the monotonic clock, which is ours).
                Some(if cmd == g::FUTEX_WAIT { Arch::now_ns().saturating_add(t) } else { t })
            };
            wait(c.thread, &space, uaddr, val, bitset, deadline)
        }
        g::FUTEX_WAKE | g::FUTEX_WAKE_BITSET => {
            let bitset = if cmd == g::FUTEX_WAKE { u32::MAX } else { val3 };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(wake(&space, uaddr, val, bitset) as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}
