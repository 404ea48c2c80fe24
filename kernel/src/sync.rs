//! Locks for a kernel with interrupts and preemption.
//!
//! Rule: a spin lock that an interrupt handler may take, or whose holder
//! must not be preempted (because another task on the same CPU would spin
//! on it with interrupts off), is taken with interrupts disabled:
//! [`IrqSpinLock`]. Its guard restores the previous interrupt state.
//!
//! [`RawSpinLock`] is for the scheduler alone: its lock is taken by one task
//! and released by the next one after the context switch, which no guard
//! can express.
//!
//! Lock order (outer first): the run-queue lock ([`crate::task::sched`]) is the
//! innermost lock of the scheduler; the console lock, the heap lock and the
//! frame allocator's lock are leaves taken with interrupts disabled. Since
//! the run-queue lock's holders take no other lock but the heap's (a leaf,
//! when a run-queue list grows), `sched::unpark` may be called holding any
//! lock but those two: kswapd's wake-up does so from every allocation (see
//! `crate::vm::reclaim`).

use crate::arch;
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
        let irq_was_enabled = arch::irq::save_and_disable();
        match self.inner.try_lock() {
            Some(g) => Some(IrqGuard { guard: core::mem::ManuallyDrop::new(g), irq_was_enabled }),
            None => {
                arch::irq::restore(irq_was_enabled);
                None
            }
        }
    }

    /// Disables interrupts, then spins until the lock is free.
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let irq_was_enabled = arch::irq::save_and_disable();
        IrqGuard { guard: core::mem::ManuallyDrop::new(self.inner.lock()), irq_was_enabled }
    }

    /// As [`IrqSpinLock::lock`], calling `poll` on every turn of the spin:
    /// for locks whose holder may wait for this CPU (the address-space lock,
    /// whose holder may run a TLB shootdown: `poll` serves this CPU's
    /// flush requests, see `crate::vm::tlb`).
    pub fn lock_polling(&self, poll: impl Fn()) -> IrqGuard<'_, T> {
        let irq_was_enabled = arch::irq::save_and_disable();
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
        arch::irq::restore(self.irq_was_enabled);
    }
}

/// Runs `f` with interrupts disabled on this CPU.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was = arch::irq::save_and_disable();
    let r = f();
    arch::irq::restore(was);
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
        debug_assert!(!arch::irq::enabled(), "RawSpinLock::lock with interrupts on");
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
