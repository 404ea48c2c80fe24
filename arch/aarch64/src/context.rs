//! Switching between kernel tasks: the callee-saved registers and the stack
//! pointer, as a function call sees them.
//!
//! [`switch`] is called like a function by the scheduler: it stores x19..x30
//! and d8..d15 (the callee-saved general and FP/SIMD registers of AAPCS64)
//! on the current stack, saves SP in `from`, loads the next task's SP,
//! restores the same registers and returns through x30 into whatever that
//! task was doing (a call to `switch`, or, for a new task, the start
//! trampoline). Caller-saved registers, FP/SIMD ones included, are already
//! kept by the compiler around the call; a switch taken from an interrupt
//! has them in the trap frame.

core::arch::global_asm!(
    r#"
.section .text
.global arch_context_switch
arch_context_switch:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret

.global arch_task_start
arch_task_start:
    mov x0, x20
    blr x19
    brk #1
"#
);

extern "C" {
    fn arch_context_switch(save_sp: *mut u64, next_sp: u64);
    fn arch_task_start();
}

/// A task's saved stack pointer; its registers are on its stack.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Context {
    sp: u64,
}

impl Context {
    /// A context that, when switched to, calls `entry(arg)` on the stack
    /// ending at `stack_top`. `entry` must never return.
    ///
    /// # Safety
    /// `[stack_top - 176, stack_top)` must be writable memory owned by the
    /// new task, and stay allocated while the task can run.
    pub unsafe fn new(stack_top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> Context {
        let frame = (stack_top & !15) - 160;
        let mut words = [0u64; 20];
        words[0] = entry as usize as u64; // x19
        words[1] = arg as u64; // x20
        words[11] = arch_task_start as *const () as u64; // x30
        for (i, w) in words.iter().enumerate() {
            // SAFETY: inside the caller's stack range (checked by the
            // contract); 8-byte aligned.
            unsafe { ((frame + 8 * i as u64) as *mut u64).write(*w) };
        }
        Context { sp: frame }
    }
}

/// Saves the running task's registers into `from` and continues the task
/// saved in `to`. Returns when some CPU switches back to `from`.
///
/// # Safety
/// Interrupts must be disabled; `to` must be a context made by
/// [`Context::new`] or saved by `switch`, whose stack is still allocated and
/// not running on any CPU; `from` must stay valid until switched back to.
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    // SAFETY: the caller's contract; `Context` is `repr(C)` with `sp` first.
    unsafe { arch_context_switch(from as *mut u64, (*to).sp) }
}
