//! Switching between kernel tasks: the callee-saved registers and the stack
//! pointer, as a function call sees them.
//!
//! [`switch`] is called like a function by the scheduler: it pushes RBP,
//! RBX and R12..R15 on the current stack, stores RSP in `from`, loads the
//! next task's RSP and pops the same registers, then `ret`s into whatever
//! that task was doing (a call to `switch`, or, for a new task, the start
//! trampoline). Everything else is caller-saved, so the compiler already
//! keeps it across the call. `x86_64-unknown-none` code uses no SSE
//! registers, so there is no vector state to keep.

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
    /// `[stack_top - 88, stack_top)` must be writable memory owned by the new
    /// task, and stay allocated while the task can run.
    pub unsafe fn new(stack_top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> Context {
        // After `ret` into arch_task_start, RSP must be 16-byte aligned so
        // that its `call` leaves the callee with RSP = 8 mod 16, as the ABI
        // requires.
        let ret_slot = (stack_top & !15) - 16 - 8;
        let frame = ret_slot - 6 * 8;
        let words: [u64; 7] =
            [0, 0, arg as u64, entry as usize as u64, 0, 0, arch_task_start as *const () as u64];
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
