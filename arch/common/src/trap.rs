//! The kernel's memory-fault handler, as the arch's exception code finds
//! it.
//!
//! The arch decodes a kernel page fault (x86_64: the error code and CR2;
//! AArch64: ESR and FAR) into an `mm::fault::MemFault`; when no probe
//! claims it ([`crate::probe`]), it offers the fault to the kernel
//! ([`offer_to_kernel`]), and panics if the kernel does not resolve it.

use mm::fault::MemFault;

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
