//! Switching between kernel tasks: the callee-saved registers and the stack
//! pointer, as a function call sees them.
//!
//! The switch (`arch_context_switch`, the routine `arch_common::context`
//! declares) is called like a function by the scheduler: it pushes RBP,
//! RBX and R12..R15 on the current stack, stores RSP in `from`, loads the
//! next task's RSP and pops the same registers, then `ret`s into whatever
//! that task was doing (a call to `switch`, or, for a new task, the start
//! trampoline). Everything else is caller-saved, so the compiler already
//! keeps it across the call. `x86_64-unknown-none` code uses no SSE
//! registers, so there is no vector state to keep.
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::context::{Context, ContextSwitch, TaskEntry};

core::arch::global_asm!(
    ".section .text",
    ".global arch_context_switch",
    "arch_context_switch:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    ".global arch_task_start",
    "arch_task_start:",
    "    mov rdi, r13",
    "    call r12",
    "    ud2",
);

extern "C" {
    fn arch_task_start();
}

// SAFETY: `arch_context_switch` above is the routine `arch_common::context`
// describes (it keeps RBP, RBX and R12..R15, the System V callee-saved
// registers), and `new_context` builds the frame it pops.
unsafe impl ContextSwitch for X86_64 {
    /// Builds the frame `arch_context_switch` pops: six registers, R12 =
    /// `entry` and R13 = `arg` among them, then `arch_task_start` as the
    /// return address. It uses 88 bytes below `stack_top`.
    unsafe fn new_context(stack_top: u64, entry: TaskEntry, arg: usize) -> Context {
        // After `ret` into arch_task_start, RSP must be 16-byte aligned so
        // that its `call` leaves the callee with RSP = 8 mod 16, as the ABI
        // requires.
        let ret_slot = (stack_top & !15) - 16 - 8;
        let frame = ret_slot - 6 * 8;
        let words: [u64; 7] =
            [0, 0, arg as u64, entry as usize as u64, 0, 0, arch_task_start as *const () as u64];
        // SAFETY: the 56 bytes from `frame` lie in the top 88 bytes of the
        // stack, which the caller gives the task; the words are the frame
        // `arch_context_switch` pops.
        unsafe { Context::with_frame(frame, &words) }
    }
}
