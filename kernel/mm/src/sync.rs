//! The atomics of the page descriptor, and the swap area's lock, from one
//! place, so that a host test can put them under a concurrency checker.
//!
//! Normally these are `core::sync::atomic`'s types, and nothing else
//! changes. With the feature `shuttle` (host tests only, see
//! `kernel/mm/Cargo.toml`) they are `shuttle::sync::atomic`'s: every load,
//! store and read-modify-write of a [`crate::page::Page`] field (and the
//! fence of `Folio::put`) becomes a point where shuttle may switch threads,
//! and shuttle explores many such interleavings of the real `mm` code
//! (`kernel/mm/tests/races_folio_flags.rs`).
//!
//! Under `shuttle` the descriptor is no longer 64 bytes (shuttle's atomics
//! carry bookkeeping), so the layout checks of `page.rs` are off, and its
//! atomics may be used only inside a shuttle execution. That is why the
//! feature is for the `races_*` tests alone: run them with
//! `cargo test -p mm --features shuttle --test races_folio_flags`.
//! Shuttle models every ordering as sequentially consistent: it finds
//! lost updates and bad interleavings, not missing `Acquire`/`Release`.
//!
//! What is *not* routed: the frame allocator's lock, an [`IrqLock`] (a
//! `spin::Mutex` in every build: it spins on its own atomics, which would
//! never yield to shuttle's scheduler, so tests keep it uncontended; in the
//! kernel it is held with interrupts off like [`Lock`]) and the bug-replay
//! switch word (`crate::bugs`).
//!
//! Locks of newer modules are routed: [`Mutex`] is `spin::Mutex` normally
//! and `shuttle::sync::Mutex` under `shuttle`, whose waiters yield to the
//! scheduler. The two `lock()`s differ (spin's returns the guard, shuttle's
//! a `LockResult`, as std's), so code takes them through [`Lock`], which
//! hides the difference. The LRU lists (`crate::lru`) and each swap area
//! (`crate::swap::area`, `kernel/mm/tests/races_swap_claim.rs`) use it;
//! under the feature they too may be used only inside a shuttle execution.

#[cfg(not(feature = "shuttle"))]
pub(crate) use core::sync::atomic::{fence, AtomicI32, AtomicU64};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{fence, AtomicI32, AtomicU64};

pub(crate) use core::sync::atomic::Ordering;

#[cfg(not(feature = "shuttle"))]
pub(crate) use spin::Mutex;

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::Mutex;

use core::ops::DerefMut;

/// A [`Mutex`] with one `lock()` for both builds: a spin lock in the
/// kernel, shuttle's mutex in the race tests. Not reentrant.
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> Lock<T> {
        Lock(Mutex::new(value))
    }

    /// Takes the lock, spinning (or, under shuttle, yielding) while another
    /// holder has it; released when the guard is dropped. In the kernel,
    /// interrupts are off on this CPU while it is held ([`set_irq_hooks`]).
    #[cfg(not(feature = "shuttle"))]
    pub(crate) fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        IrqLockGuard::take(&self.0)
    }

    /// Takes the lock. Shuttle's mutex is poisoned when a holder panicked;
    /// the test is failing then anyway, so the guard is taken regardless.
    #[cfg(feature = "shuttle")]
    pub(crate) fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A spin lock held with interrupts off on its CPU (in the kernel, through
/// [`set_irq_hooks`], as [`Lock`]), but a `spin::Mutex` in every build,
/// shuttle's included: for the frame allocator, whose lock host tests use
/// outside shuttle executions too. Every method that takes it, queries
/// included, holds it with interrupts off, so no caller has to remember to
/// turn them off: a holder preempted by the tick would leave the next
/// taker on its CPU spinning for ever. Not reentrant.
pub(crate) struct IrqLock<T>(spin::Mutex<T>);

impl<T> IrqLock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> IrqLock<T> {
        IrqLock(spin::Mutex::new(value))
    }

    /// Turns interrupts off (when the kernel registered its hooks), then
    /// spins until the lock is free; the guard releases the lock, then
    /// restores interrupts.
    #[cfg(not(feature = "shuttle"))]
    pub(crate) fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        IrqLockGuard::take(&self.0)
    }

    /// Takes the lock (no interrupts to turn off under shuttle).
    #[cfg(feature = "shuttle")]
    pub(crate) fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        self.0.lock()
    }
}

/// How the kernel turns interrupts off around these locks: a function that
/// disables them and says whether they were on, and one that restores that.
/// `mm` knows no hardware, so the kernel registers them at boot
/// ([`set_irq_hooks`]); host tests have none.
#[cfg(not(feature = "shuttle"))]
type IrqHooks = (fn() -> bool, fn(bool));

#[cfg(not(feature = "shuttle"))]
static IRQ_HOOKS: spin::Once<IrqHooks> = spin::Once::new();

/// Registers the kernel's interrupt save/restore for [`Lock`] and
/// [`IrqLock`]: every such lock (the LRU lists, each swap area, the frame
/// allocator) is then held with interrupts off
/// on its CPU, so a holder is never preempted or interrupted while another
/// task on the same CPU spins on it. The kernel calls it once, at boot,
/// before any of these locks is taken.
#[cfg(not(feature = "shuttle"))]
pub fn set_irq_hooks(save_and_disable: fn() -> bool, restore: fn(bool)) {
    IRQ_HOOKS.call_once(|| (save_and_disable, restore));
}

/// The guard of [`Lock`] and [`IrqLock`]: releases the lock, then
/// restores interrupts.
#[cfg(not(feature = "shuttle"))]
struct IrqLockGuard<'a, T> {
    /// `Some` until dropped (taken first, so the lock goes before the
    /// interrupts come back).
    guard: Option<spin::MutexGuard<'a, T>>,
    irq: Option<bool>,
}

#[cfg(not(feature = "shuttle"))]
impl<'a, T> IrqLockGuard<'a, T> {
    /// Turns interrupts off (when the kernel registered its hooks), then
    /// spins until `lock` is free.
    fn take(lock: &'a spin::Mutex<T>) -> IrqLockGuard<'a, T> {
        let irq = IRQ_HOOKS.get().map(|(save_and_disable, _)| save_and_disable());
        IrqLockGuard { guard: Some(lock.lock()), irq }
    }
}

#[cfg(not(feature = "shuttle"))]
impl<T> core::ops::Deref for IrqLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("a live guard")
    }
}

#[cfg(not(feature = "shuttle"))]
impl<T> DerefMut for IrqLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("a live guard")
    }
}

#[cfg(not(feature = "shuttle"))]
impl<T> Drop for IrqLockGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let (Some(was_on), Some((_, restore))) = (self.irq, IRQ_HOOKS.get()) {
            restore(was_on);
        }
    }
}
