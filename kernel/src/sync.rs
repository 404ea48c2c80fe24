//! Locks for a kernel with interrupts and preemption.
//!
//! Rule: a spin lock that an interrupt handler may take, or whose holder
//! must not be preempted (because another task on the same CPU would spin
//! on it with interrupts off), is taken with interrupts disabled:
//! [`IrqSpinLock`]. Its guard restores the previous interrupt state.
//! [`IrqRwLock`] is its reader-writer form (the address-space lock, which
//! faults of several CPUs may hold shared).
//!
//! [`RawSpinLock`] is for the scheduler alone: its lock is taken by one task
//! and released by the next one after the context switch, which no guard
//! can express.
//!
//! The order in which every lock of the kernel nests, and which are taken
//! with interrupts off, is written once: the book's chapter "Locks"
//! (`docs/src/locking.md`). What matters here: `sched::unpark` may be
//! called holding any lock but the run-queue lock and the heap's, which
//! is how kswapd is woken from every allocation (`crate::vm::reclaim`).

use crate::arch::prelude::*;
use core::sync::atomic::{AtomicBool, Ordering};

/// A spin lock whose holder runs with interrupts disabled on its CPU.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

/// Holds an [`IrqSpinLock`]; interrupts come back (if they were on) when
/// it drops.
pub struct IrqGuard<'a, T> {
    guard: core::mem::ManuallyDrop<spin::MutexGuard<'a, T>>,
    irq_was_enabled: bool,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        IrqSpinLock { inner: spin::Mutex::new(value) }
    }

    /// Takes the lock if it is free (interrupts disabled while held);
    /// `None` at once otherwise.
    pub fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let irq_was_enabled = Arch::irq_save_and_disable();
        match self.inner.try_lock() {
            Some(g) => Some(IrqGuard { guard: core::mem::ManuallyDrop::new(g), irq_was_enabled }),
            None => {
                Arch::irq_restore(irq_was_enabled);
                None
            }
        }
    }

    /// Disables interrupts, then spins until the lock is free.
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let irq_was_enabled = Arch::irq_save_and_disable();
        IrqGuard { guard: core::mem::ManuallyDrop::new(self.inner.lock()), irq_was_enabled }
    }

    /// As [`IrqSpinLock::lock`], calling `poll` on every turn of the spin:
    /// for locks whose holder may wait for this CPU (the address-space lock,
    /// whose holder may run a TLB shootdown: `poll` serves this CPU's
    /// flush requests, see `crate::vm::tlb`).
    pub fn lock_polling(&self, poll: impl Fn()) -> IrqGuard<'_, T> {
        let irq_was_enabled = Arch::irq_save_and_disable();
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return IrqGuard { guard: core::mem::ManuallyDrop::new(guard), irq_was_enabled };
            }
            poll();
            core::hint::spin_loop();
        }
    }
}

impl<T> core::ops::Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> core::ops::DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; the lock is released before
        // interrupts come back, so no handler on this CPU can find it held.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.guard) };
        Arch::irq_restore(self.irq_was_enabled);
    }
}

/// A reader-writer spin lock whose holders run with interrupts disabled:
/// any number of readers, or one writer. It prefers writers: once a writer
/// waits, no new reader gets in, so a stream of readers that overlap (the
/// faults of several CPUs) cannot keep a writer out for good. The
/// address-space lock (`crate::vm::space`): faults that may run beside each
/// other read, everything else writes.
///
/// The state word: bit 31 a writer holds it, bit 30 a writer waits, the
/// low bits count the readers.
pub struct IrqRwLock<T> {
    state: core::sync::atomic::AtomicU32,
    value: core::cell::UnsafeCell<T>,
}

const RW_WRITER: u32 = 1 << 31;
const RW_WAITING: u32 = 1 << 30;
const RW_READERS: u32 = RW_WAITING - 1;

// SAFETY: the lock hands out `&T` to several CPUs at once (readers: `T`
// must be `Sync`) and `&mut T` to one at a time (a writer, possibly on
// another CPU than the last: `T` must be `Send`).
unsafe impl<T: Send + Sync> Sync for IrqRwLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for IrqRwLock<T> {}

/// A shared hold of an [`IrqRwLock`].
pub struct IrqReadGuard<'a, T> {
    lock: &'a IrqRwLock<T>,
    irq_was_enabled: bool,
}

/// The exclusive hold of an [`IrqRwLock`].
pub struct IrqWriteGuard<'a, T> {
    lock: &'a IrqRwLock<T>,
    irq_was_enabled: bool,
}

impl<T> IrqRwLock<T> {
    pub const fn new(value: T) -> Self {
        IrqRwLock { state: core::sync::atomic::AtomicU32::new(0), value: core::cell::UnsafeCell::new(value) }
    }

    /// Disables interrupts, then spins (calling `poll` on every turn, as
    /// [`IrqSpinLock::lock_polling`]) until no writer holds the lock or
    /// waits for it, and holds it shared.
    pub fn read_polling(&self, poll: impl Fn()) -> IrqReadGuard<'_, T> {
        let irq_was_enabled = Arch::irq_save_and_disable();
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (RW_WRITER | RW_WAITING) == 0 && s & RW_READERS < RW_READERS {
                if self.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return IrqReadGuard { lock: self, irq_was_enabled };
                }
                continue;
            }
            poll();
            core::hint::spin_loop();
        }
    }

    /// Disables interrupts, then spins (calling `poll` on every turn) until
    /// neither a writer nor a reader holds the lock, and holds it alone.
    /// While it waits, it keeps the waiting bit set, so that no new reader
    /// gets in.
    pub fn write_polling(&self, poll: impl Fn()) -> IrqWriteGuard<'_, T> {
        let irq_was_enabled = Arch::irq_save_and_disable();
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & (RW_WRITER | RW_READERS) == 0 {
                // Free: take it, clearing the waiting bit (another waiting
                // writer sets it again on its next turn).
                if self
                    .state
                    .compare_exchange_weak(s, RW_WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return IrqWriteGuard { lock: self, irq_was_enabled };
                }
                continue;
            }
            if s & RW_WAITING == 0 {
                self.state.fetch_or(RW_WAITING, Ordering::Relaxed);
            }
            poll();
            core::hint::spin_loop();
        }
    }
}

impl<T> core::ops::Deref for IrqReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock shared: no writer holds it (a
        // writer is the only one with `&mut T`) until the guard drops.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Drop for IrqReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1, Ordering::Release);
        Arch::irq_restore(self.irq_was_enabled);
    }
}

impl<T> core::ops::Deref for IrqWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock alone until it drops.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for IrqWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock alone until it drops, and
        // `&mut self` makes this the only reference through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for IrqWriteGuard<'_, T> {
    fn drop(&mut self) {
        // Keeps the waiting bit another writer may have set meanwhile.
        self.lock.state.fetch_and(!RW_WRITER, Ordering::Release);
        Arch::irq_restore(self.irq_was_enabled);
    }
}

/// Runs `f` with interrupts disabled on this CPU.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was = Arch::irq_save_and_disable();
    let r = f();
    Arch::irq_restore(was);
    r
}

/// A bare spin lock with explicit lock and unlock (see the module doc).
pub struct RawSpinLock {
    locked: AtomicBool,
}

impl RawSpinLock {
    pub const fn new() -> Self {
        RawSpinLock { locked: AtomicBool::new(false) }
    }
    /// Spins until the lock is ours. Interrupts must be disabled.
    pub fn lock(&self) {
        debug_assert!(!Arch::irq_enabled(), "RawSpinLock::lock with interrupts on");
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }
    /// Releases the lock (possibly taken by another task before a switch).
    pub fn unlock(&self) {
        debug_assert!(self.locked.load(Ordering::Relaxed), "RawSpinLock::unlock of a free lock");
        self.locked.store(false, Ordering::Release);
    }
    /// True while held (for assertions).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl Default for RawSpinLock {
    fn default() -> Self {
        Self::new()
    }
}
