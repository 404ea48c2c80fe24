//! User mode: entering ring 3 (x86_64) or EL0 (AArch64) with a process's
//! registers, coming back on the next system call, fault or interrupt, and
//! copying to and from user memory with fault fix-ups.
//!
//! ## Model
//!
//! A user thread is a kernel task (its own kernel stack, its own saved
//! [`UserMode::Regs`]). The task runs a loop: it calls
//! [`UserMode::enter_user`], which saves the kernel's callee-saved
//! registers, loads the user registers and returns to user mode. When user
//! mode next enters the kernel (a system call instruction, an exception,
//! an interrupt), the arch's entry code stores every user register back
//! into the same `Regs` and returns from `enter_user`, on the task's
//! kernel stack, with a [`UserExit`] that says why. The kernel handles
//! that (runs the system call, resolves the fault or sends a signal, lets
//! the scheduler switch tasks) and calls `enter_user` again. So no kernel
//! code runs "inside" a user trap frame: the user's state is a plain
//! struct the kernel reads and writes between two entries (fork copies
//! it, a signal frame saves it, `rt_sigreturn` restores it).
//!
//! An interrupt taken in user mode is handled as in kernel mode (the
//! device handlers run) before `enter_user` returns `UserExit::Interrupt`;
//! the task then calls the scheduler's preemption check itself.
//!
//! ## User access
//!
//! With SMAP (x86_64) and PAN (AArch64) on, a kernel load or store at a
//! user address faults. The only kernel code that touches user memory is
//! [`UserMode::copy_from_user`] and [`UserMode::copy_to_user`]: assembly
//! routines that open the window (x86_64: `stac`/`clac`; AArch64:
//! unprivileged `ldtr`/`sttr`, which check EL0's permissions) for their
//! own instructions only. The arch's trap handler knows their instructions
//! (an exception table): a fault there is offered to the kernel's
//! user-access hook ([`set_uaccess_hook`]), which maps the page when the
//! process may touch it (the copy then goes on where it stopped) and
//! refuses otherwise; then the routine returns at its fix-up with the
//! address that could not be reached ([`UserFault`]) and the system call
//! answers `EFAULT`. A fault anywhere else in the kernel at a user address
//! is a kernel bug and panics.
//!
//! Locks: none here; the hook is a `spin::Once`.

use mm::fault::MemFault;

/// Why [`UserMode::enter_user`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserExit {
    /// The system-call instruction (`syscall`; `svc #0`). The number and
    /// arguments are in the registers ([`UserRegs::syscall_nr`],
    /// [`UserRegs::syscall_arg`]); the PC is already past the instruction.
    Syscall,
    /// A page fault (at a user address, or at a kernel one: the user may
    /// not touch those), decoded as for the kernel. `Regs` PC is the
    /// faulting instruction: resolving the fault and entering again retries
    /// it.
    PageFault(MemFault),
    /// Another synchronous exception: the PC is the instruction that
    /// raised it.
    Exception(UserException),
    /// An interrupt was taken and handled; nothing for the process.
    Interrupt,
}

/// The synchronous exceptions user code can raise besides page faults,
/// as the kernel turns them into signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserException {
    /// An undefined or privileged instruction (`SIGILL`).
    IllegalInstruction,
    /// A breakpoint or single step (`SIGTRAP`).
    Breakpoint,
    /// Integer division by zero or overflow (`SIGFPE`, x86_64 only).
    DivideError,
    /// A misaligned PC, SP or access (`SIGBUS`).
    Alignment { addr: u64 },
    /// An unmasked x87, SSE or trapped AArch64 floating-point exception
    /// (`SIGFPE`), with the cause the FPU recorded.
    FloatingPoint { cause: FpCause },
    /// A protection fault that is not a page fault, e.g. a non-canonical
    /// address on x86_64 (`SIGSEGV`, address 0 as Linux reports it).
    GeneralProtection,
    /// Anything else, with the arch's raw syndrome (`SIGILL`).
    Other { syndrome: u64 },
}

/// Why a floating-point instruction trapped (the `FPE_FLT*` codes of
/// `SIGFPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FpCause {
    InvalidOperation,
    DivideByZero,
    Overflow,
    /// Underflow, or a denormal operand (x86's DE, reported the same way).
    Underflow,
    Inexact,
    /// No unmasked flag was found set.
    Unknown,
}

impl FpCause {
    /// The cause of the lowest-numbered of x86's six exception flags
    /// (IE 0, DE 1, ZE 2, OE 3, UE 4, PE 5) set in `pending`, the order in
    /// which Linux reports them: invalid, then divide, overflow, underflow
    /// (or denormal), inexact. AArch64's FPSR/ESR flags differ in order
    /// and are decoded by its arch crate.
    pub fn of_x86_flags(pending: u32) -> FpCause {
        if pending & 0x01 != 0 {
            FpCause::InvalidOperation
        } else if pending & 0x04 != 0 {
            FpCause::DivideByZero
        } else if pending & 0x08 != 0 {
            FpCause::Overflow
        } else if pending & 0x12 != 0 {
            FpCause::Underflow
        } else if pending & 0x20 != 0 {
            FpCause::Inexact
        } else {
            FpCause::Unknown
        }
    }
}

/// A user access that failed: the first user address the copy could not
/// reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFault {
    pub addr: u64,
}

/// A user thread's registers, as user mode left them (or as they will be
/// loaded). `Copy`: fork copies them, a signal frame stores them.
pub trait UserRegs: Copy + Default + Send + Sync + core::fmt::Debug {
    /// Registers that start at `pc` with stack pointer `sp`, every other
    /// register zero, flags as user code starts (x86_64: IF set).
    fn new(pc: u64, sp: u64) -> Self;
    fn pc(&self) -> u64;
    fn set_pc(&mut self, pc: u64);
    fn sp(&self) -> u64;
    fn set_sp(&mut self, sp: u64);
    /// The thread pointer (x86_64: FS base; AArch64: `TPIDR_EL0`).
    fn tls(&self) -> u64;
    fn set_tls(&mut self, tls: u64);
    /// The system-call number (x86_64: `rax`; AArch64: `x8`).
    fn syscall_nr(&self) -> u64;
    /// Argument `i` (0..6) of a system call (x86_64: `rdi rsi rdx r10 r8
    /// r9`; AArch64: `x0..x5`).
    fn syscall_arg(&self, i: usize) -> u64;
    /// Sets the system call's return value (x86_64: `rax`; AArch64: `x0`),
    /// negative errno as a `u64` for an error.
    fn set_syscall_return(&mut self, value: u64);
    /// Makes the system call just made run again at the next entry to user
    /// mode (a wait a signal interrupted, restarted after its handler):
    /// the PC back on the system-call instruction, and the number `nr` and
    /// first argument `arg0` (as [`UserRegs::syscall_nr`] and
    /// [`UserRegs::syscall_arg`] read them before the call) back in their
    /// registers, where the return value may have overwritten one
    /// (x86_64: `rax`; AArch64: `x0`). The other argument registers are
    /// never written by a call.
    fn restart_syscall(&mut self, nr: u64, arg0: u64);
    /// Prepares a call of a signal handler: PC `pc`, SP `sp`, the first
    /// three argument registers `args`, returning to `ret`. On AArch64 `ret`
    /// goes to the link register; on x86_64 ([`UserRegs::RET_ON_STACK`])
    /// the caller must already have written `ret` to the word at `sp`, and
    /// the x87/SSE state is reset to its defaults as Linux does for a
    /// handler (AArch64 keeps its FP/SIMD registers, as Linux does there).
    fn set_call(&mut self, pc: u64, sp: u64, args: [u64; 3], ret: u64);
    /// Whether a call's return address is a word on the stack (x86_64)
    /// rather than a register (AArch64).
    const RET_ON_STACK: bool;
}

/// User mode, as an arch provides it.
pub trait UserMode {
    /// The saved user registers.
    type Regs: UserRegs;

    /// The machine name `uname` reports (`x86_64`, `aarch64`).
    const MACHINE: &'static str;

    /// Runs user code with `regs` until it next enters the kernel, saves
    /// its registers back into `regs` and says why.
    ///
    /// Called by a task whose user address space is loaded (its root is
    /// this CPU's user root), with interrupts disabled; returns with
    /// interrupts disabled. The task may be on another CPU next time: the
    /// arch sets up the per-CPU state (x86_64: TSS `rsp0` and the syscall
    /// stack; AArch64: nothing, `SP_EL1` is the task's stack) on every
    /// call.
    ///
    /// # Safety
    /// `regs` must be valid for the whole call; the current task's kernel
    /// stack is where user mode's entries land, so it must be the stack
    /// this is called on.
    unsafe fn enter_user(regs: &mut Self::Regs) -> UserExit;

    /// Copies `len` bytes from user address `src` to `dst`. Either all are
    /// copied, or `Err` names the first user address that could not be
    /// read (some bytes before it may have been copied).
    ///
    /// # Safety
    /// `dst` must be valid for `len` bytes of writes. `[src, src + len)`
    /// must lie in the user half (the caller checks; the routine only
    /// guards against faults, not against a kernel address).
    unsafe fn copy_from_user(dst: *mut u8, src: u64, len: usize) -> Result<(), UserFault>;

    /// Copies `len` bytes from `src` to user address `dst`, as
    /// [`UserMode::copy_from_user`] does the other way.
    ///
    /// # Safety
    /// `src` must be valid for `len` bytes of reads; `[dst, dst + len)` in
    /// the user half.
    unsafe fn copy_to_user(dst: u64, src: *const u8, len: usize) -> Result<(), UserFault>;

    /// Writes `len` zero bytes from user address `dst`, as
    /// [`UserMode::copy_to_user`] would copy zeros (an arch may do it
    /// without reading a source; the provided body copies from a zero
    /// buffer).
    ///
    /// # Safety
    /// `[dst, dst + len)` in the user half.
    unsafe fn clear_user(dst: u64, len: usize) -> Result<(), UserFault> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len());
            // SAFETY: `ZEROS` is valid for `n` bytes of reads; the target is
            // in the user half (the caller's contract).
            unsafe { Self::copy_to_user(dst + done as u64, ZEROS.as_ptr(), n)? };
            done += n;
        }
        Ok(())
    }

    /// The `AT_HWCAP` word of the auxiliary vector, as this CPU really is
    /// (x86_64: CPUID.1 EDX; AArch64: Linux's `HWCAP_*` bits from the ID
    /// registers).
    fn hwcap() -> u64;
}

/// The kernel's handler of a fault inside a user-access routine: true when
/// the page was mapped and the copy may go on; false when the access is
/// refused (the routine then returns [`UserFault`]). Called with
/// interrupts disabled, like the fault hook.
pub type UaccessHook = fn(&MemFault) -> bool;

static UACCESS_HOOK: spin::Once<UaccessHook> = spin::Once::new();

/// Installs the kernel's user-access fault handler (once).
pub fn set_uaccess_hook(hook: UaccessHook) {
    UACCESS_HOOK.call_once(|| hook);
}

/// Offers a fault taken inside a user-access routine to the kernel; false
/// when no handler is installed.
pub fn offer_uaccess_fault(fault: &MemFault) -> bool {
    UACCESS_HOOK.get().is_some_and(|hook| hook(fault))
}
