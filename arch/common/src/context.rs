//! Switching between kernel tasks: a task's saved [`Context`], and the
//! switch from one to another ([`ContextSwitch`]).
//!
//! ## Protocol
//!
//! A switch is a function call: `arch_context_switch(save_sp, next_sp)`, an
//! assembly routine of the arch crate, pushes the callee-saved registers of
//! its ABI on the current stack, stores the stack pointer through
//! `save_sp`, loads `next_sp`, pops the same registers and returns into
//! whatever the next task was doing (its own call to the switch, or, for a
//! new task, the arch's start trampoline, which calls `entry(arg)`). Every
//! other register is caller-saved, so the compiler already keeps it across
//! the call. A [`Context`] is therefore only a stack pointer; the registers
//! are on the task's stack. The arch says how a new task's first frame looks
//! ([`ContextSwitch::new_context`]).

/// The function a new task (or a newly started CPU) runs; it never returns.
pub type TaskEntry = extern "C" fn(usize) -> !;

/// A task's saved stack pointer; its registers are on its stack.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Context {
    sp: u64,
}

impl Context {
    /// Writes a new task's first frame, `words`, upward from `sp`, and
    /// returns the context that resumes it.
    ///
    /// # Safety
    /// `[sp, sp + 8 * words.len())` must be 8-byte aligned, writable memory
    /// of the new task's stack, and `words` a frame the arch's switch
    /// routine resumes (what [`ContextSwitch::new_context`] builds).
    pub unsafe fn with_frame(sp: u64, words: &[u64]) -> Context {
        for (i, w) in words.iter().enumerate() {
            // SAFETY: inside the range the caller vouches for; aligned.
            unsafe { ((sp + 8 * i as u64) as *mut u64).write(*w) };
        }
        Context { sp }
    }
}

extern "C" {
    /// The arch's switch routine (see the module doc).
    fn arch_context_switch(save_sp: *mut u64, next_sp: u64);
}

/// Task switching, as an arch provides it.
///
/// # Safety
/// The implementing arch crate defines `arch_context_switch` as the module
/// doc describes, and `new_context` builds a frame it resumes into
/// `entry(arg)` on the given stack.
pub unsafe trait ContextSwitch {
    /// A context that, when switched to, calls `entry(arg)` on the stack
    /// ending at `stack_top`.
    ///
    /// # Safety
    /// The top 256 bytes below `stack_top` must be writable memory owned by
    /// the new task, and the stack must stay allocated while the task can
    /// run.
    unsafe fn new_context(stack_top: u64, entry: TaskEntry, arg: usize) -> Context;

    /// Saves the running task's registers into `from` and continues the
    /// task saved in `to`. Returns when some CPU switches back to `from`.
    ///
    /// # Safety
    /// Interrupts must be disabled; `to` must be a context made by
    /// [`ContextSwitch::new_context`] or saved by this switch, whose stack
    /// is still allocated and not running on any CPU; `from` must stay valid
    /// until switched back to.
    unsafe fn switch_context(from: *mut Context, to: *const Context) {
        // SAFETY: the caller's contract, and the implementor's (the routine
        // exists and keeps the ABI); `Context` is `repr(C)` with `sp` first,
        // so `from` is where the routine stores the stack pointer.
        unsafe { arch_context_switch(from as *mut u64, (*to).sp) }
    }
}
