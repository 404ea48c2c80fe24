//! Signals: actions (`rt_sigaction`), masks (`rt_sigprocmask`), sending
//! (`kill`, `tgkill`, the kernel's own for faults and `SIGCHLD`), delivery
//! before each return to user mode, `rt_sigreturn`, the restart of an
//! interrupted call, and the calls that wait for signals
//! (`rt_sigsuspend`, `rt_sigtimedwait`; `rt_sigpending`).
//!
//! ## Sending
//!
//! A signal is made pending (the process's set, or a thread's) and its
//! threads kicked out of their waits (an unpark: a timed wait,
//! `sched::park_until`, ends too); a blocking call leaves when a pending
//! signal is deliverable ([`deliverable`], asked through
//! `Thread::interrupted`). A signal whose default action ends the process
//! and which some thread does not block decides the group exit as it is
//! sent ([`send_process`], [`send_thread`]).
//!
//! ## Restarts
//!
//! A wait that Linux restarts (pipe read and write, `wait4`, a futex wait
//! without a timeout) leaves with the kernel's own `ERESTARTSYS`; the
//! thread loop hands the call's number and first argument to the next
//! delivery ([`Interrupted`]). A handler whose action has `SA_RESTART`, or
//! no handler at all (the signal was ignored, or another thread took it),
//! makes the call run again: the registers go back to the system-call
//! instruction with the number and first argument restored
//! (`UserRegs::restart_syscall`), before the handler's frame saves them,
//! so `rt_sigreturn` returns into the call. A handler without
//! `SA_RESTART` makes it return `EINTR`. `rt_sigsuspend` answers
//! `ERESTARTNOHAND`: `EINTR` after any handler. Sleeps (`nanosleep`,
//! `clock_nanosleep`) and timed futex waits return `EINTR` themselves
//! (Linux restarts them through `restart_syscall` when no handler runs;
//! not here), a relative sleep with the time left written.
//!
//! ## `rt_sigsuspend`
//!
//! The call replaces the mask for its wait and keeps the old one in the
//! thread's `saved_mask`; it parks until a signal is deliverable under the
//! new mask. The handler then runs with the wait's mask (plus its own
//! action's), and its frame records the old mask, which `rt_sigreturn`
//! restores; when no handler runs, delivery restores it before the return
//! to user mode (and looks again: the old mask may let another signal
//! through).
//!
//! ## Delivery
//!
//! Before each entry to user mode the thread loop calls [`deliver`]: the
//! lowest pending signal not blocked (the thread's own first, then the
//! process's) is taken. Ignored (explicitly, or by default: `SIGCHLD`,
//! `SIGURG`, `SIGWINCH`, `SIGCONT`, and the stop signals, as there is no
//! job control) it is dropped; with the default action of ending the
//! process it starts a group exit whose wait status is the signal number
//! (no core bit: no core is dumped, as Linux with `RLIMIT_CORE` 0); with a
//! handler, a frame is pushed on the user stack and the registers set to
//! call the handler `(sig, &siginfo, &ucontext)` returning to the action's
//! restorer (the C library's `rt_sigreturn` stub), or without one to the
//! kernel's trampoline page ([`TRAMPOLINE`], as Linux's vDSO on AArch64).
//!
//! A fault (`SIGSEGV`, `SIGBUS`, `SIGILL`...) is forced ([`force`]): the
//! handler is called at once with `si_addr`; when it is blocked or ignored
//! the process dies, as in Linux.
//!
//! The frame on the user stack holds the `siginfo` and a `ucontext` with
//! the mask and, on x86_64, the PC and SP where Linux puts them; the saved
//! registers themselves stay in the kernel (the thread's `frames`, newest
//! last), and `rt_sigreturn` restores the newest. So a program cannot
//! hand the kernel registers of its making (no flags or privileged bits to
//! check), at the cost that a handler changing its `ucontext` changes
//! nothing. A handler left by `longjmp` leaves its frame behind: at most
//! [`MAX_FRAMES`] are kept, oldest dropped first.
//!
//! Locks: the actions and the process's pending set are in the process's
//! state lock; the thread's mask and pending set are atomics; `frames` is
//! the thread's own.

use super::process::{self, Process};
use super::syscall::{Ctx, Errno, Flow, SysResult};
use super::thread::{Exit, Thread};
use super::Regs;
use crate::arch::prelude::*;
use crate::task::sched;
use crate::vm::uaccess::{copy_from_user, copy_to_user};
use alloc::sync::Arc;
use arch_common::user::{FpCause, UserException, UserRegs};
use core::sync::atomic::Ordering;
use linux_raw_sys::general as g;

pub use g::{SIGBUS, SIGCHLD, SIGKILL, SIGPIPE, SIGSEGV};
pub const SEGV_MAPERR: u32 = g::SEGV_MAPERR;
pub const SEGV_ACCERR: u32 = g::SEGV_ACCERR;
pub const BUS_ADRERR: u32 = g::BUS_ADRERR;

/// A set of signals: bit `n - 1` for signal `n` (1..=64).
pub type SigSet = u64;

/// The most signal frames a thread keeps.
pub const MAX_FRAMES: usize = 64;

/// The bit of signal `sig`.
pub const fn bit(sig: u32) -> SigSet {
    1 << (sig - 1)
}

/// Signals no mask blocks.
const UNBLOCKABLE: SigSet = bit(g::SIGKILL) | bit(g::SIGSTOP);

/// What one signal does (`struct sigaction` as the kernel takes it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}

/// Every signal's action.
#[derive(Debug, Clone, Copy)]
pub struct Actions(pub [SigAction; 64]);

impl Default for Actions {
    fn default() -> Self {
        Actions([SigAction::default(); 64])
    }
}

impl Actions {
    /// What `execve` keeps: handlers go back to the default, ignored
    /// signals stay ignored.
    pub fn exec(&mut self) {
        for a in &mut self.0 {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
    }
}

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;

/// A signal handler's call, saved for `rt_sigreturn`.
pub struct SavedFrame {
    regs: Regs,
    mask: SigSet,
}

/// Whether `sig`'s default action is to ignore it.
fn ignored_by_default(sig: u32) -> bool {
    matches!(
        sig,
        g::SIGCHLD | g::SIGURG | g::SIGWINCH | g::SIGCONT | g::SIGSTOP | g::SIGTSTP | g::SIGTTIN | g::SIGTTOU
    )
}

/// Whether `action` drops `sig` on delivery.
fn ignores(action: &SigAction, sig: u32) -> bool {
    action.handler == SIG_IGN || (action.handler == SIG_DFL && ignored_by_default(sig))
}

/// Whether `action` makes `sig` end the process (the default action of a
/// signal not ignored by default).
fn fatal(action: &SigAction, sig: u32) -> bool {
    sig == g::SIGKILL || (action.handler == SIG_DFL && !ignored_by_default(sig))
}

/// Sends `sig` to process `p` (any of its threads takes it). A signal
/// that ends the process and that some thread does not block decides the
/// group exit at once (every thread leaves its wait), as its delivery
/// would.
pub fn send_process(p: &Arc<Process>, sig: u32) {
    let threads = {
        let mut st = p.state.lock();
        let action = st.actions.0[sig as usize - 1];
        let now =
            fatal(&action, sig) && (sig == g::SIGKILL || st.threads.iter().any(|t| t.mask() & bit(sig) == 0));
        if now {
            drop(st);
            p.start_group_exit(sig as i32);
            return;
        }
        st.pending |= bit(sig);
        st.threads.clone()
    };
    for t in &threads {
        t.kick();
    }
}

/// Sends `sig` to `thread` alone (`tgkill`, `SIGPIPE`); a fatal one it
/// does not block ends the process at once, as in [`send_process`].
pub fn send_thread(thread: &Thread, sig: u32) {
    let action = thread.process.state.lock().actions.0[sig as usize - 1];
    if fatal(&action, sig) && (sig == g::SIGKILL || thread.mask() & bit(sig) == 0) {
        thread.process.start_group_exit(sig as i32);
    } else {
        thread.send(sig);
    }
}

/// Whether a signal is pending for `thread` that delivery would act on
/// (not blocked, not ignored): a blocking call leaves for it (`EINTR`).
pub fn deliverable(thread: &Thread) -> bool {
    let mask = thread.mask() & !UNBLOCKABLE;
    let st = thread.process.state.lock();
    let mut ready = (thread.pending.load(Ordering::Acquire) | st.pending) & !mask;
    while ready != 0 {
        let sig = ready.trailing_zeros() + 1;
        ready &= !bit(sig);
        if !ignores(&st.actions.0[sig as usize - 1], sig) {
            return true;
        }
    }
    false
}

/// A system call a signal interrupted, as the thread loop hands it to the
/// next delivery (see the module doc's "Restarts").
pub struct Interrupted {
    nr: u64,
    arg0: u64,
    /// `ERESTARTSYS` (restarted after a handler with `SA_RESTART`), not
    /// `ERESTARTNOHAND`.
    sa_restart: bool,
}

impl Interrupted {
    /// The interrupted call, when `value` (what call `nr` with first
    /// argument `arg0` returned) says it was one.
    pub fn of_return(value: u64, nr: u64, arg0: u64) -> Option<Interrupted> {
        let is = |e: Errno| value == (e.0 as u64).wrapping_neg();
        if is(Errno::ERESTARTSYS) {
            Some(Interrupted { nr, arg0, sa_restart: true })
        } else if is(Errno::ERESTARTNOHAND) {
            Some(Interrupted { nr, arg0, sa_restart: false })
        } else {
            None
        }
    }

    /// Sets `regs` to run the call again or to return `EINTR`, as the
    /// handler's `action` (None: no handler runs) decides.
    fn resolve(self, regs: &mut Regs, action: Option<&SigAction>) {
        let restart = match action {
            None => true,
            Some(a) => self.sa_restart && a.flags & g::SA_RESTART as u64 != 0,
        };
        if restart {
            regs.restart_syscall(self.nr, self.arg0);
        } else {
            regs.set_syscall_return((Errno::EINTR.0 as u64).wrapping_neg());
        }
    }
}

/// Takes the next deliverable signal and acts on it; `Some` when the
/// thread must end. `interrupted`: the system call just made left its wait
/// for a signal (restarted or `EINTR`, as the handler decides).
pub fn deliver(thread: &Arc<Thread>, regs: &mut Regs, mut interrupted: Option<Interrupted>) -> Option<Exit> {
    loop {
        let mask = thread.mask() & !UNBLOCKABLE;
        let own = thread.pending.load(Ordering::Acquire) & !mask;
        let sig = if own != 0 {
            let sig = own.trailing_zeros() + 1;
            thread.pending.fetch_and(!bit(sig), Ordering::AcqRel);
            sig
        } else {
            let mut st = thread.process.state.lock();
            let ready = st.pending & !mask;
            if ready == 0 {
                drop(st);
                // No handler ran after `rt_sigsuspend`: its old mask comes
                // back now, and may let another signal through.
                if let Some(old) = thread.saved_mask.lock().take() {
                    thread.sigmask.store(old, Ordering::Release);
                    continue;
                }
                if let Some(call) = interrupted.take() {
                    call.resolve(regs, None);
                }
                return None;
            }
            let sig = ready.trailing_zeros() + 1;
            st.pending &= !bit(sig);
            sig
        };
        let action = thread.process.state.lock().actions.0[sig as usize - 1];
        match action.handler {
            _ if ignores(&action, sig) => continue,
            SIG_DFL => return Some(die(thread, sig)),
            _ => {
                // Before the frame saves the registers: the handler
                // returns into the call again, or to its `EINTR`.
                if let Some(call) = interrupted.take() {
                    call.resolve(regs, Some(&action));
                }
                let info = SigInfo { sig, code: SI_USER, addr: 0 };
                if call_handler(thread, regs, &action, &info).is_err() {
                    return Some(die(thread, g::SIGSEGV));
                }
                return None;
            }
        }
    }
}

/// Ends the process by signal `sig`.
fn die(thread: &Thread, sig: u32) -> Exit {
    thread.process.start_group_exit(sig as i32);
    Exit::Group
}

/// `si_code` of a signal a process sent.
const SI_USER: u32 = 0;
/// `si_code` of a signal the kernel sent.
const SI_KERNEL: u32 = 0x80;

/// What a handler is told.
struct SigInfo {
    sig: u32,
    code: u32,
    addr: u64,
}

/// Delivers the synchronous signal `sig` (a fault at `addr`) now: the
/// handler runs next, or the process dies when there is none or the
/// signal is blocked or ignored.
pub fn force(thread: &Arc<Thread>, regs: &mut Regs, sig: u32, code: u32, addr: u64) {
    let action = thread.process.state.lock().actions.0[sig as usize - 1];
    let blocked = thread.mask() & bit(sig) != 0;
    if sig == g::SIGKILL || blocked || action.handler == SIG_IGN || action.handler == SIG_DFL {
        // One line per death by fault, as Linux's "segfault at" line.
        let exe = thread.process.mm.lock().exe.clone();
        crate::println!(
            "proc: pid {} ({exe}): signal {sig} (code {code}) at {addr:#x}, pc {:#x}: killed",
            thread.process.pid,
            regs.pc()
        );
        die(thread, sig);
        return;
    }
    let info = SigInfo { sig, code, addr };
    if call_handler(thread, regs, &action, &info).is_err() {
        die(thread, g::SIGSEGV);
    }
}

/// The signal, `si_code` and address of a user exception.
pub fn of_exception(e: UserException, pc: u64) -> (u32, u32, u64) {
    match e {
        UserException::IllegalInstruction => (g::SIGILL, g::ILL_ILLOPC, pc),
        UserException::Breakpoint => (g::SIGTRAP, g::TRAP_BRKPT, pc),
        UserException::DivideError => (g::SIGFPE, g::FPE_INTDIV, pc),
        UserException::FloatingPoint { cause } => {
            let code = match cause {
                FpCause::InvalidOperation => g::FPE_FLTINV,
                FpCause::DivideByZero => g::FPE_FLTDIV,
                FpCause::Overflow => g::FPE_FLTOVF,
                FpCause::Underflow => g::FPE_FLTUND,
                FpCause::Inexact => g::FPE_FLTRES,
                // Linux's code when no flag explains the trap.
                FpCause::Unknown => 0,
            };
            (g::SIGFPE, code, pc)
        }
        UserException::Alignment { addr } => (g::SIGBUS, g::BUS_ADRALN, addr),
        UserException::GeneralProtection => (g::SIGSEGV, SI_KERNEL, 0),
        UserException::Other { .. } => (g::SIGILL, g::ILL_ILLOPC, pc),
    }
}

/// Bytes of `siginfo`.
const SIGINFO_SIZE: u64 = 128;
/// Bytes kept for the `ucontext`.
const UCONTEXT_SIZE: u64 = 1024;
/// Where the signal mask lies in the `ucontext`.
#[cfg(target_arch = "x86_64")]
const UC_SIGMASK: usize = 296;
#[cfg(not(target_arch = "x86_64"))]
const UC_SIGMASK: usize = 40;

/// Pushes a signal frame and sets `regs` to call the handler.
fn call_handler(thread: &Thread, regs: &mut Regs, action: &SigAction, info: &SigInfo) -> Result<(), Errno> {
    // Below the x86_64 red zone (128 bytes the interrupted code may use).
    let base = (regs.sp().wrapping_sub(128 + SIGINFO_SIZE + UCONTEXT_SIZE)) & !15;
    let mut si = [0u8; SIGINFO_SIZE as usize];
    si[0..4].copy_from_slice(&info.sig.to_ne_bytes());
    si[8..12].copy_from_slice(&info.code.to_ne_bytes());
    // si_addr (fault signals) or si_pid (sent ones) share offset 16.
    si[16..24].copy_from_slice(&info.addr.to_ne_bytes());
    copy_to_user(base, &si)?;
    // The mask `rt_sigreturn` restores: the one before `rt_sigsuspend` if
    // the handler ends its wait, else the current one.
    let cur_mask = thread.mask();
    let old_mask = thread.saved_mask.lock().take().unwrap_or(cur_mask);
    let mut uc = [0u8; UCONTEXT_SIZE as usize];
    uc[UC_SIGMASK..UC_SIGMASK + 8].copy_from_slice(&old_mask.to_ne_bytes());
    #[cfg(target_arch = "x86_64")]
    {
        // uc_mcontext's rsp and rip (struct sigcontext after uc_stack).
        uc[40 + 15 * 8..40 + 16 * 8].copy_from_slice(&regs.sp().to_ne_bytes());
        uc[40 + 16 * 8..40 + 17 * 8].copy_from_slice(&regs.pc().to_ne_bytes());
    }
    let uc_addr = base + SIGINFO_SIZE;
    copy_to_user(uc_addr, &uc)?;
    let restorer = if action.flags & g::SA_RESTORER as u64 != 0 { action.restorer } else { TRAMPOLINE };
    let sp = if <Regs as UserRegs>::RET_ON_STACK {
        copy_to_user(base - 8, &restorer.to_ne_bytes())?;
        base - 8
    } else {
        base
    };
    {
        let mut frames = thread.frames.lock();
        if frames.len() == MAX_FRAMES {
            frames.remove(0);
        }
        frames.push(SavedFrame { regs: *regs, mask: old_mask });
    }
    let mut new_mask = cur_mask | action.mask;
    if action.flags & g::SA_NODEFER as u64 == 0 {
        new_mask |= bit(info.sig);
    }
    thread.sigmask.store(new_mask & !UNBLOCKABLE, Ordering::Release);
    if action.flags & g::SA_RESETHAND as u64 != 0 {
        thread.process.state.lock().actions.0[info.sig as usize - 1] = SigAction::default();
    }
    regs.set_call(action.handler, sp, [info.sig as u64, base, uc_addr], restorer);
    Ok(())
}

/// Where the signal trampoline lies in every process: the return address
/// of a handler whose action has no restorer (AArch64's C library sets
/// none: Linux returns through its vDSO's trampoline, which this page
/// stands for). On x86_64 an action must have a restorer, as in Linux.
pub const TRAMPOLINE: u64 = 0x7fff_ff10_0000;

/// The trampoline's code: `rt_sigreturn`.
#[cfg(target_arch = "aarch64")]
const TRAMPOLINE_CODE: &[u8] = &[
    0x68, 0x11, 0x80, 0xd2, // mov x8, #139 (rt_sigreturn)
    0x01, 0x00, 0x00, 0xd4, // svc #0
];
#[cfg(target_arch = "x86_64")]
const TRAMPOLINE_CODE: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, // mov rax, 15 (rt_sigreturn)
    0x0f, 0x05, // syscall
];

/// Maps the trampoline page into `space` (the running task is in it), as
/// `execve` makes a new program.
pub fn map_trampoline(space: &crate::vm::space::AddressSpace) -> Result<(), Errno> {
    use mm::vma::VmaProt;
    use mm::VirtAddr;
    space.mmap_fixed(VirtAddr::new(TRAMPOLINE), 4096, VmaProt::READ_WRITE).map_err(|_| Errno::ENOMEM)?;
    copy_to_user(TRAMPOLINE, TRAMPOLINE_CODE)?;
    space.mprotect(VirtAddr::new(TRAMPOLINE), 4096, VmaProt::READ_EXEC).map_err(|_| Errno::ENOMEM)?;
    Ok(())
}

/// `rt_sigreturn`: back to where the newest handler interrupted.
pub fn rt_sigreturn(c: &mut Ctx) -> SysResult {
    let Some(frame) = c.thread.frames.lock().pop() else {
        die(c.thread, g::SIGSEGV);
        c.flow = Some(Flow::Exit(Exit::Group));
        return Ok(0);
    };
    *c.regs = frame.regs;
    c.thread.sigmask.store(frame.mask, Ordering::Release);
    c.flow = Some(Flow::NoReturn);
    Ok(0)
}

/// `rt_sigsuspend(set, sigsetsize)`: waits with the mask `set` until a
/// signal is deliverable; always "fails" (`EINTR` after the handler, see
/// the module doc), the old mask back after the handler.
pub fn rt_sigsuspend(c: &mut Ctx, set: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; 8];
    copy_from_user(&mut raw, set)?;
    let old = c.thread.mask();
    *c.thread.saved_mask.lock() = Some(old);
    c.thread.sigmask.store(u64::from_ne_bytes(raw) & !UNBLOCKABLE, Ordering::Release);
    // A sender makes the signal pending, then kicks (unparks) the thread:
    // a kick between the check and the park leaves a token, and the park
    // returns at once.
    while !c.thread.interrupted() {
        sched::park();
    }
    Err(Errno::ERESTARTNOHAND)
}

/// `rt_sigpending(set, sigsetsize)`: the pending signals (the thread's and
/// the process's) that the mask blocks.
pub fn rt_sigpending(c: &mut Ctx, set: u64, size: u64) -> SysResult {
    if size > 8 {
        return Err(Errno::EINVAL);
    }
    let pending = c.thread.pending.load(Ordering::Acquire) | c.thread.process.state.lock().pending;
    let blocked = pending & c.thread.mask();
    copy_to_user(set, &blocked.to_ne_bytes()[..size as usize])?;
    Ok(0)
}

/// Takes the lowest signal of `set` pending for `thread` (its own first,
/// then the process's), if any.
fn take_pending(thread: &Thread, set: SigSet) -> Option<u32> {
    let own = thread.pending.load(Ordering::Acquire) & set;
    if own != 0 {
        let sig = own.trailing_zeros() + 1;
        if thread.pending.fetch_and(!bit(sig), Ordering::AcqRel) & bit(sig) != 0 {
            return Some(sig);
        }
    }
    let mut st = thread.process.state.lock();
    let ready = st.pending & set;
    if ready == 0 {
        return None;
    }
    let sig = ready.trailing_zeros() + 1;
    st.pending &= !bit(sig);
    Some(sig)
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)` (and so `sigwait`,
/// `sigwaitinfo`): takes a pending signal of `set` without running its
/// handler and returns its number (its `siginfo` written to `info` when
/// not null), waiting for one until the relative `timeout` (`EAGAIN`;
/// null: no limit). A deliverable signal outside `set` ends the wait with
/// `EINTR`. The signals of `set` are usually blocked; a sender's kick
/// wakes the wait whatever the mask.
pub fn rt_sigtimedwait(c: &mut Ctx, set: u64, info: u64, timeout: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; 8];
    copy_from_user(&mut raw, set)?;
    let set = u64::from_ne_bytes(raw) & !UNBLOCKABLE;
    let deadline = match timeout {
        0 => None,
        t => Some(Arch::now_ns().saturating_add(super::futex::read_timespec(t)?)),
    };
    let sig = loop {
        if let Some(sig) = take_pending(c.thread, set) {
            break sig;
        }
        if c.thread.interrupted() {
            return Err(Errno::EINTR);
        }
        match deadline {
            Some(d) => {
                let now = Arch::now_ns();
                if now >= d {
                    return Err(Errno::EAGAIN);
                }
                sched::park_for_ns(d - now);
            }
            None => sched::park(),
        }
    };
    if info != 0 {
        let mut si = [0u8; SIGINFO_SIZE as usize];
        si[0..4].copy_from_slice(&sig.to_ne_bytes());
        si[8..12].copy_from_slice(&SI_USER.to_ne_bytes());
        copy_to_user(info, &si)?;
    }
    Ok(sig as u64)
}

/// Signal numbers are 1..=64.
fn valid(sig: u32) -> Result<(), Errno> {
    if (1..=64).contains(&sig) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// `rt_sigaction(sig, act, oldact, sigsetsize)`.
pub fn rt_sigaction(c: &mut Ctx, sig: u32, act: u64, oldact: u64, size: u64) -> SysResult {
    valid(sig)?;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 {
        if sig == g::SIGKILL || sig == g::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut raw = [0u8; 32];
        copy_from_user(&mut raw, act)?;
        let w = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        Some(SigAction { handler: w(0), flags: w(1), restorer: w(2), mask: w(3) & !UNBLOCKABLE })
    } else {
        None
    };
    let old = {
        let mut st = c.thread.process.state.lock();
        let old = st.actions.0[sig as usize - 1];
        if let Some(new) = new {
            st.actions.0[sig as usize - 1] = new;
        }
        old
    };
    if oldact != 0 {
        let mut raw = [0u8; 32];
        for (i, w) in [old.handler, old.flags, old.restorer, old.mask].into_iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        copy_to_user(oldact, &raw)?;
    }
    Ok(0)
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
pub fn rt_sigprocmask(c: &mut Ctx, how: u32, set: u64, oldset: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let old = c.thread.mask();
    if set != 0 {
        let mut raw = [0u8; 8];
        copy_from_user(&mut raw, set)?;
        let s = u64::from_ne_bytes(raw);
        let new = match how {
            g::SIG_BLOCK => old | s,
            g::SIG_UNBLOCK => old & !s,
            g::SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        };
        c.thread.sigmask.store(new & !UNBLOCKABLE, Ordering::Release);
    }
    if oldset != 0 {
        copy_to_user(oldset, &old.to_ne_bytes())?;
    }
    Ok(0)
}

/// `kill(pid, sig)`: a process (`pid > 0`), the caller's own (`0`), every
/// process but the caller's (`-1`), or process `-pid` (there are no
/// process groups: a group is its leader). A zombie is still a process
/// until it is waited for: as on Linux, a kill of one succeeds and does
/// nothing (its status is final); `ESRCH` only when no process matched.
pub fn kill(c: &mut Ctx, pid: i32, sig: u32) -> SysResult {
    if sig != 0 {
        valid(sig)?;
    }
    let targets: alloc::vec::Vec<Arc<Process>> = match pid {
        0 => alloc::vec![c.thread.process.clone()],
        -1 => process::all().into_iter().filter(|p| p.pid != c.thread.process.pid).collect(),
        p => process::find(p.unsigned_abs()).into_iter().collect(),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig != 0 {
        for p in targets.iter().filter(|p| p.state.lock().status.is_none()) {
            send_process(p, sig);
        }
    }
    Ok(0)
}

/// `tgkill(tgid, tid, sig)` (`tgid` -1: `tkill`, any process).
pub fn tgkill(c: &mut Ctx, tgid: i32, tid: i32, sig: u32) -> SysResult {
    if sig != 0 {
        valid(sig)?;
    }
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let tid = tid as u32;
    let thread = if tgid == -1 {
        c.thread.process.thread(tid).or_else(|| process::all().iter().find_map(|p| p.thread(tid)))
    } else {
        process::find(tgid as u32).and_then(|p| p.thread(tid))
    };
    let thread = thread.ok_or(Errno::ESRCH)?;
    if sig != 0 {
        send_thread(&thread, sig);
    }
    Ok(0)
}
