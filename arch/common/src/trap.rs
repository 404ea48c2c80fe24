//! The kernel's memory-fault handler, as the arch's exception code finds
//! it.
//!
//! The arch decodes a kernel page fault (x86_64: the error code and CR2;
//! AArch64: ESR and FAR) into an `mm::fault::MemFault`; when no probe
//! claims it ([`crate::probe`]), it offers the fault to the kernel
//! ([`offer_to_kernel`]), and panics if the kernel does not resolve it.
//!
//! A kernel stack that overflows cannot take an ordinary fault: the CPU
//! would push the exception's frame on the same exhausted stack. The arch
//! catches that case on a stack of its own (x86_64: the double fault's IST
//! stack; AArch64: the vector entry sees SP in a guard and switches to a
//! per-CPU overflow stack) and offers it to the kernel as a [`StackFault`]
//! ([`offer_stack_fault`]); the kernel knows where its stacks and their
//! guards are.

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
