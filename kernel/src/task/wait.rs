//! Waiting for a condition: a wait queue of parked tasks.
//!
//! ## Protocol
//!
//! A waiter calls [`WaitQueue::wait_for`] with a closure that either
//! produces what it waits for (`Some`) or says "not yet" (`None`). A waker
//! first makes the condition true (under whatever lock guards it), then
//! calls [`WaitQueue::wake_all`]. No wake-up is lost: the waiter puts
//! itself on the queue *before* it evaluates the condition, so a waker that
//! changes the condition after that evaluation finds it on the queue and
//! unparks it; and an unpark that lands between the evaluation and the
//! park is remembered by the scheduler ([`crate::task::sched::park`]), so the
//! park returns at once. Wake-ups may be spurious; `wait_for` re-evaluates.
//!
//! For one task waiting for one event (an I/O request of its own), drivers
//! keep the waiting task next to the request and call
//! [`crate::task::sched::unpark`] on it directly (see [`crate::drivers::blk`]).
//!
//! Locks: the queue's list is an [`IrqSpinLock`] (a leaf: nothing else is
//! taken while it is held; [`wake_all`](WaitQueue::wake_all) unparks after
//! releasing it). `wake_all` may be called from interrupt handlers; the
//! condition closure runs with no wait-queue lock held.

use crate::sync::IrqSpinLock;
use crate::task::sched::{self, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Tasks parked until a condition holds.
pub struct WaitQueue {
    waiters: IrqSpinLock<Vec<Arc<Task>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue { waiters: IrqSpinLock::new(Vec::new()) }
    }

    /// Parks the running task until `ready` returns `Some`, and returns
    /// that. `ready` is evaluated at least once, with no wait-queue lock
    /// held. Task context only, holding no spin lock.
    pub fn wait_for<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        let me = sched::current_task();
        loop {
            // On the queue before looking, and still on it while parked (a
            // waker takes it off).
            {
                let mut waiters = self.waiters.lock();
                if !waiters.iter().any(|t| Arc::ptr_eq(t, &me)) {
                    waiters.push(me.clone());
                }
            }
            if let Some(v) = ready() {
                self.remove(&me);
                return v;
            }
            sched::park();
        }
    }

    /// Takes `task` off the queue if it is there, and gives the list's
    /// memory back once it is empty (a drained queue holds no heap).
    fn remove(&self, task: &Arc<Task>) {
        let mut waiters = self.waiters.lock();
        waiters.retain(|t| !Arc::ptr_eq(t, task));
        if waiters.is_empty() {
            *waiters = Vec::new();
        }
    }

    /// Unparks every waiting task (they re-evaluate their conditions).
    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        for t in &waiters {
            sched::unpark(t);
        }
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
