//! The kernel's memory-fault handler, as the arch's exception code finds
//! it.
//!
//! The arch decodes a kernel page fault (x86_64: the error code and CR2;
//! AArch64: ESR and FAR) into an `mm::fault::MemFault`; when no probe
//! claims it ([`crate::probe`]), it offers the fault to the kernel
//! ([`offer_to_kernel`]), and panics if the kernel does not resolve it.
//! Before that panic it records where the fault happened
//! ([`note_fatal_fault`]), so the panic's backtrace starts at the faulting
//! instruction rather than inside the trap handler.
//!
//! [`Frames`] gives the kernel the current frame pointer, where a backtrace
//! of a panic that is not a fault starts.
//!
//! A kernel stack that overflows cannot take an ordinary fault: the CPU
//! would push the exception's frame on the same exhausted stack. The arch
//! catches that case on a stack of its own (x86_64: the double fault's IST
//! stack; AArch64: the vector entry sees SP in a guard and switches to a
//! per-CPU overflow stack) and offers it to the kernel as a [`StackFault`]
//! ([`offer_stack_fault`]); the kernel knows where its stacks and their
//! guards are.
//!
//! Locks: none; the recorded faults are per-CPU atomics, the hook a
//! `spin::Once`.

use core::sync::atomic::{AtomicU64, Ordering};
use mm::fault::MemFault;

/// What the arch knows about a fault that may be a kernel stack overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackFault {
    /// The stack pointer when the fault was taken.
    pub sp: u64,
    /// The address that faulted (x86_64: CR2; AArch64: FAR), if known.
    pub addr: u64,
    /// The instruction that faulted (x86_64: as the double fault's frame
    /// says; AArch64: ELR).
    pub pc: u64,
    /// Whether interrupts were on when it faulted: if they were, the code
    /// held no spin lock (every spin lock is held with interrupts off).
    pub irqs_were_on: bool,
}

/// The kernel's stack-overflow handler: returns when `fault` is not the
/// overflow of a kernel stack it knows (the arch then reports the fault as
/// it would have); otherwise it ends the task or panics, and never returns.
/// Runs on the arch's emergency stack, interrupts off.
pub type StackFaultHook = fn(&StackFault);

static STACK_FAULT_HOOK: spin::Once<StackFaultHook> = spin::Once::new();

/// Installs the kernel's stack-overflow handler (once; later calls are
/// ignored).
pub fn set_stack_fault_hook(hook: StackFaultHook) {
    STACK_FAULT_HOOK.call_once(|| hook);
}

/// Offers `fault` to the kernel's stack-overflow handler; returns when it
/// was not an overflow the kernel recognised (or no handler is installed).
pub fn offer_stack_fault(fault: &StackFault) {
    if let Some(hook) = STACK_FAULT_HOOK.get() {
        hook(fault);
    }
}

/// The kernel's memory-fault handler: called for a fault no probe claimed,
/// with interrupts disabled; returns true when the fault was resolved and
/// the access should be retried. (It may also end the running task and
/// never return.)
pub type FaultHook = fn(&MemFault) -> bool;

/// The kernel's fault handler, installed once by [`set_fault_hook`].
static FAULT_HOOK: spin::Once<FaultHook> = spin::Once::new();

/// Installs the kernel's memory-fault handler (once; later calls are
/// ignored).
pub fn set_fault_hook(hook: FaultHook) {
    FAULT_HOOK.call_once(|| hook);
}

/// Offers `fault` to the kernel's handler; true when resolved (false
/// before one is installed).
pub fn offer_to_kernel(fault: &MemFault) -> bool {
    FAULT_HOOK.get().is_some_and(|hook| hook(fault))
}

/// The frame-pointer register, for backtraces. Kernels are built with frame
/// pointers forced on (`.cargo/config.toml`), and on both arches a frame
/// pointer points at a two-word record: the caller's frame pointer, then
/// the return address.
pub trait Frames {
    /// The frame pointer of the function this is inlined into.
    fn frame_pointer() -> u64;
}

/// CPUs whose fatal faults are recorded (both arches keep state for 16).
const FAULT_SLOTS: usize = 16;

/// Per CPU: the PC and frame pointer of a kernel fault about to panic; 0
/// when none is recorded.
static FATAL_FAULTS: [[AtomicU64; 2]; FAULT_SLOTS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; FAULT_SLOTS];

/// Records, for `cpu`'s panic handler, where a kernel fault that is about
/// to panic happened: its PC and the frame pointer it had.
pub fn note_fatal_fault(cpu: usize, pc: u64, fp: u64) {
    if let Some([p, f]) = FATAL_FAULTS.get(cpu) {
        f.store(fp, Ordering::Relaxed);
        p.store(pc, Ordering::Relaxed);
    }
}

/// Takes what [`note_fatal_fault`] recorded for `cpu`: `(pc, fp)`.
pub fn take_fatal_fault(cpu: usize) -> Option<(u64, u64)> {
    let [p, f] = FATAL_FAULTS.get(cpu)?;
    let pc = p.swap(0, Ordering::Relaxed);
    (pc != 0).then(|| (pc, f.swap(0, Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_fault_is_taken_once_and_only_by_its_cpu() {
        assert_eq!(take_fatal_fault(3), None);
        note_fatal_fault(3, 0x1234, 0x5678);
        assert_eq!(take_fatal_fault(2), None);
        assert_eq!(take_fatal_fault(3), Some((0x1234, 0x5678)));
        assert_eq!(take_fatal_fault(3), None);
        note_fatal_fault(FAULT_SLOTS, 1, 1); // out of range: ignored
        assert_eq!(take_fatal_fault(FAULT_SLOTS), None);
    }
}
