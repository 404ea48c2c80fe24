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
//! [`Mutex`] is the lock of one swap area (`crate::swap::area`): a
//! `spin::Mutex` normally, `shuttle::sync::Mutex` under `shuttle`, so that
//! shuttle can interleave swap-area operations
//! (`kernel/mm/tests/races_swap_claim.rs`). With the feature, a swap area
//! too may be used only inside a shuttle execution.
//!
//! What is *not* routed: the frame allocator's spin lock (a `spin::Mutex`
//! spins on its own atomics, which would never yield to shuttle's
//! scheduler: tests keep it uncontended) and the bug-replay switch word
//! (`crate::bugs`).

#[cfg(not(feature = "shuttle"))]
pub(crate) use core::sync::atomic::{fence, AtomicI32, AtomicU64};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{fence, AtomicI32, AtomicU64};

pub(crate) use core::sync::atomic::Ordering;

/// A mutual-exclusion lock with one small API over `spin::Mutex` (normal
/// builds) and `shuttle::sync::Mutex` (the `shuttle` feature).
///
/// Rules for its users: `mm` knows no interrupts, so the kernel takes such
/// a lock only with interrupts disabled on its CPU (its holder is never
/// preempted, nor interrupted by a handler that takes it again); and it is
/// a **leaf** lock: nothing else is taken while holding it. The one
/// exception is documented where it is made (a closure run under the swap
/// area's lock may touch a folio's atomics, which are not locks).
pub(crate) struct Mutex<T> {
    #[cfg(not(feature = "shuttle"))]
    inner: spin::Mutex<T>,
    #[cfg(feature = "shuttle")]
    inner: shuttle::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        #[cfg(not(feature = "shuttle"))]
        let inner = spin::Mutex::new(value);
        #[cfg(feature = "shuttle")]
        let inner = shuttle::sync::Mutex::new(value);
        Mutex { inner }
    }

    /// Takes the lock, spinning (or, under shuttle, blocking) until it is
    /// free; released when the guard is dropped.
    pub(crate) fn lock(&self) -> impl core::ops::DerefMut<Target = T> + '_ {
        #[cfg(not(feature = "shuttle"))]
        let guard = self.inner.lock();
        // A holder that panicked has failed its test already: keep going
        // with its data rather than report a second, confusing panic.
        #[cfg(feature = "shuttle")]
        let guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
    }
}
