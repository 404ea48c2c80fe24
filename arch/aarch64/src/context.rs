//! Switching between kernel tasks: the callee-saved registers and the stack
//! pointer, as a function call sees them.
//!
//! The switch (`arch_context_switch`, the routine `arch_common::context`
//! declares) is called like a function by the scheduler: it stores x19..x30
//! and d8..d15 (the callee-saved general and FP/SIMD registers of AAPCS64)
//! on the current stack, saves SP in `from`, loads the next task's SP,
//! restores the same registers and returns through x30 into whatever that
//! task was doing (a call to `switch`, or, for a new task, the start
//! trampoline). Caller-saved registers, FP/SIMD ones included, are already
//! kept by the compiler around the call; a switch taken from an interrupt
//! has them in the trap frame.
#![cfg(target_os = "none")]

use crate::Aarch64;
use arch_common::context::{Context, ContextSwitch, TaskEntry};

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
    fn arch_task_start();
}

// SAFETY: `arch_context_switch` above is the routine `arch_common::context`
// describes (it keeps x19..x30 and d8..d15, the AAPCS64 callee-saved
// registers), and `new_context` builds the frame it restores.
unsafe impl ContextSwitch for Aarch64 {
    /// Builds the 160-byte frame `arch_context_switch` restores: x19 =
    /// `entry`, x20 = `arg`, x30 = `arch_task_start`, the rest zero.
    unsafe fn new_context(stack_top: u64, entry: TaskEntry, arg: usize) -> Context {
        let frame = (stack_top & !15) - 160;
        let mut words = [0u64; 20];
        words[0] = entry as usize as u64; // x19
        words[1] = arg as u64; // x20
        words[11] = arch_task_start as *const () as u64; // x30
                                                         // SAFETY: the 160 bytes from `frame` are the top of the stack the
                                                         // caller gives the task (16-byte aligned); the words are the frame
                                                         // `arch_context_switch` restores.
        unsafe { Context::with_frame(frame, &words) }
    }
}
