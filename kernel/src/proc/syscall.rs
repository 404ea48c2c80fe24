//! The system-call table: Linux's numbers (from `linux-raw-sys`, per arch)
//! to their handlers, the arguments as raw words, and the result as
//! Linux returns it (a value, or `-errno`).
//!
//! Handlers take a [`Ctx`] (the thread, its registers, the space it is
//! in) and return [`SysResult`]. A number with no handler answers
//! `ENOSYS` and logs one line naming the number and the program (once per
//! number, so a program probing a call in a loop does not flood the
//! console). `rseq` and `clone3` answer `ENOSYS` on purpose: the C library
//! then falls back to what this kernel has.
//!
//! Locks: none here.

use super::thread::{Entered, Exit, Thread};
use super::{clone, exec, files, futex, info, mman, signal, Regs};
use alloc::sync::Arc;
use arch_common::user::UserRegs;
use core::sync::atomic::{AtomicU64, Ordering};
use linux_raw_sys::general as nr;

/// A Linux errno value (positive): the file layer's, so a file call's
/// error passes through unchanged.
pub use crate::fs::Errno;

/// What a system call returns.
pub type SysResult = Result<u64, Errno>;

/// What the thread loop does after a system call.
pub enum Flow {
    /// Return this value to user mode (`-errno` already encoded).
    Return(u64),
    /// The registers were replaced (`execve`, `rt_sigreturn`): return
    /// without touching the return register.
    NoReturn,
    /// The thread or the process ends.
    Exit(Exit),
}

/// A system call's view of its caller.
pub struct Ctx<'a> {
    pub thread: &'a Arc<Thread>,
    pub regs: &'a mut Regs,
    pub entered: &'a mut Option<Entered>,
    /// Set by a handler that replaced the registers or ends the thread.
    pub flow: Option<Flow>,
}

impl Ctx<'_> {
    /// Argument `i` of the call.
    pub fn arg(&self, i: usize) -> u64 {
        self.regs.syscall_arg(i)
    }
}

/// Runs the system call in `regs` for `thread`.
pub fn dispatch(thread: &Arc<Thread>, regs: &mut Regs, entered: &mut Option<Entered>) -> Flow {
    let number = regs.syscall_nr();
    let mut ctx = Ctx { thread, regs, entered, flow: None };
    let result = call(&mut ctx, number);
    if let Some(flow) = ctx.flow.take() {
        return flow;
    }
    Flow::Return(match result {
        Ok(v) => v,
        Err(Errno(e)) => (e as u64).wrapping_neg(),
    })
}

/// The numbers this arch has only (x86_64's older calls).
#[cfg(target_arch = "x86_64")]
fn arch_call(c: &mut Ctx, number: u32) -> Option<SysResult> {
    let a = |i| c.arg(i);
    Some(match number {
        nr::__NR_fork => clone::fork(c, false),
        nr::__NR_vfork => clone::fork(c, true),
        nr::__NR_arch_prctl => info::arch_prctl(c, a(0), a(1)),
        nr::__NR_time => info::time(c, a(0)),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn arch_call(_c: &mut Ctx, _number: u32) -> Option<SysResult> {
    None
}

/// The handler of `number`.
fn call(c: &mut Ctx, number: u64) -> SysResult {
    let Ok(number) = u32::try_from(number) else { return unknown(c, number) };
    if let Some(r) = arch_call(c, number) {
        return r;
    }
    let a = |c: &Ctx, i| c.arg(i);
    match number {
        // Processes and threads.
        nr::__NR_exit => {
            c.flow = Some(Flow::Exit(Exit::Thread(a(c, 0) as i32)));
            Ok(0)
        }
        nr::__NR_exit_group => {
            c.thread.process.start_group_exit(((a(c, 0) as i32) & 0xff) << 8);
            c.flow = Some(Flow::Exit(Exit::Group));
            Ok(0)
        }
        nr::__NR_clone => clone::clone(c),
        nr::__NR_clone3 => Err(Errno::ENOSYS),
        nr::__NR_execve => exec::execve(c, a(c, 0), a(c, 1), a(c, 2)),
        nr::__NR_wait4 => clone::wait4(c, a(c, 0) as i32, a(c, 1), a(c, 2) as u32, a(c, 3)),
        nr::__NR_set_tid_address => {
            c.thread.clear_child_tid.store(a(c, 0), Ordering::Release);
            Ok(c.thread.tid as u64)
        }
        nr::__NR_futex => futex::futex(c, a(c, 0), a(c, 1) as u32, a(c, 2) as u32, a(c, 3), a(c, 5) as u32),
        nr::__NR_set_robust_list => Ok(0),
        nr::__NR_rseq => Err(Errno::ENOSYS),
        // Signals.
        nr::__NR_rt_sigaction => signal::rt_sigaction(c, a(c, 0) as u32, a(c, 1), a(c, 2), a(c, 3)),
        nr::__NR_rt_sigprocmask => signal::rt_sigprocmask(c, a(c, 0) as u32, a(c, 1), a(c, 2), a(c, 3)),
        nr::__NR_rt_sigreturn => signal::rt_sigreturn(c),
        nr::__NR_rt_sigsuspend => signal::rt_sigsuspend(c, a(c, 0), a(c, 1)),
        nr::__NR_rt_sigpending => signal::rt_sigpending(c, a(c, 0), a(c, 1)),
        nr::__NR_rt_sigtimedwait => signal::rt_sigtimedwait(c, a(c, 0), a(c, 1), a(c, 2), a(c, 3)),
        nr::__NR_kill => signal::kill(c, a(c, 0) as i32, a(c, 1) as u32),
        nr::__NR_tgkill => signal::tgkill(c, a(c, 0) as i32, a(c, 1) as i32, a(c, 2) as u32),
        nr::__NR_tkill => signal::tgkill(c, -1, a(c, 0) as i32, a(c, 1) as u32),
        nr::__NR_sigaltstack => Ok(0),
        // Memory.
        nr::__NR_brk => mman::brk(c, a(c, 0)),
        nr::__NR_mmap => {
            mman::mmap(c, a(c, 0), a(c, 1), a(c, 2) as u32, a(c, 3) as u32, a(c, 4) as i32, a(c, 5))
        }
        nr::__NR_munmap => mman::munmap(c, a(c, 0), a(c, 1)),
        nr::__NR_mprotect => mman::mprotect(c, a(c, 0), a(c, 1), a(c, 2) as u32),
        nr::__NR_mremap => mman::mremap(c, a(c, 0), a(c, 1), a(c, 2), a(c, 3) as u32, a(c, 4)),
        nr::__NR_madvise => mman::madvise(c, a(c, 0), a(c, 1), a(c, 2) as u32),
        nr::__NR_mincore => mman::mincore(c, a(c, 0), a(c, 1), a(c, 2)),
        // Information.
        nr::__NR_getpid => Ok(c.thread.process.pid as u64),
        nr::__NR_gettid => Ok(c.thread.tid as u64),
        nr::__NR_getppid => Ok(c.thread.process.ppid() as u64),
        nr::__NR_getuid | nr::__NR_geteuid | nr::__NR_getgid | nr::__NR_getegid => Ok(0),
        nr::__NR_getpgid | nr::__NR_getsid => Ok(c.thread.process.pid as u64),
        nr::__NR_setpgid | nr::__NR_umask => Ok(0),
        nr::__NR_prlimit64 => info::prlimit64(c, a(c, 0) as u32, a(c, 1) as u32, a(c, 2), a(c, 3)),
        nr::__NR_getrandom => info::getrandom(c, a(c, 0), a(c, 1)),
        nr::__NR_clock_gettime => info::clock_gettime(c, a(c, 0) as u32, a(c, 1)),
        nr::__NR_gettimeofday => info::gettimeofday(c, a(c, 0)),
        nr::__NR_clock_nanosleep => {
            info::clock_nanosleep(c, a(c, 0) as u32, a(c, 1) as u32, a(c, 2), a(c, 3))
        }
        nr::__NR_nanosleep => info::clock_nanosleep(c, nr::CLOCK_MONOTONIC, 0, a(c, 0), a(c, 1)),
        nr::__NR_getrusage => info::getrusage(c, a(c, 0) as i32, a(c, 1)),
        nr::__NR_sched_yield => {
            crate::task::sched::yield_now();
            Ok(0)
        }
        nr::__NR_prctl => info::prctl(c, a(c, 0) as u32, a(c, 1)),
        nr::__NR_sched_getaffinity => info::sched_getaffinity(c, a(c, 1), a(c, 2)),
        nr::__NR_sysinfo => info::sysinfo(c, a(c, 0)),
        nr::__NR_uname => info::uname(c, a(c, 0)),
        // Files.
        _ => match files::call(c, number) {
            Some(r) => r,
            None => unknown(c, number as u64),
        },
    }
}

/// Numbers already reported (bit per number below 512).
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// `ENOSYS`, and one log line per number.
fn unknown(c: &Ctx, number: u64) -> SysResult {
    let first = match usize::try_from(number).ok().filter(|&n| n < 512) {
        Some(n) => REPORTED[n / 64].fetch_or(1 << (n % 64), Ordering::Relaxed) & (1 << (n % 64)) == 0,
        None => true,
    };
    if first {
        let exe = c.thread.process.mm.lock().exe.clone();
        crate::println!("proc: pid {} ({exe}): unknown system call {number}: ENOSYS", c.thread.process.pid);
    }
    Err(Errno::ENOSYS)
}
