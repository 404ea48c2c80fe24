//! `fork`, `vfork` and `clone`: new processes and new threads; and
//! `wait4`, the parent's side of a child's end.
//!
//! - A new process (no `CLONE_VM`, or `vfork`) gets a copy-on-write fork
//!   of the address space ([`AddressSpace::fork`], minus the
//!   `MADV_DONTFORK` ranges), a copy of the signal actions and of the fd
//!   table, the cwd (shared with `CLONE_FS`, else a copy), and one thread
//!   with the caller's registers, returning 0.
//!   `vfork` (and `clone(CLONE_VM | CLONE_VFORK)` without `CLONE_THREAD`,
//!   as `posix_spawn` uses it) is a fork whose parent waits until the
//!   child has called `execve` or ended: the child does not share the
//!   parent's memory here, which a child that only execs cannot tell.
//! - A new thread (`CLONE_VM | CLONE_THREAD`) joins the caller's process
//!   with the stack and TLS given; `CLONE_PARENT_SETTID`,
//!   `CLONE_CHILD_SETTID` and `CLONE_CHILD_CLEARTID` as in Linux. The
//!   argument order is the arch's: x86_64 `(flags, stack, parent_tid,
//!   child_tid, tls)`, AArch64 `(flags, stack, parent_tid, tls, child_tid)`.
//!
//! Locks: the process's state lock, for a moment, to link the child.

use super::process::{self, Pid, Process, WaitFor};
use super::syscall::{Ctx, Errno, SysResult};
use super::thread::{self, Start};
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::copy_to_user;
use alloc::sync::Arc;
use arch_common::user::UserRegs;
use linux_raw_sys::general as g;

/// The `clone` flags this kernel knows; others give `EINVAL`.
const KNOWN: u64 = (g::CLONE_VM
    | g::CLONE_FS
    | g::CLONE_FILES
    | g::CLONE_SIGHAND
    | g::CLONE_THREAD
    | g::CLONE_SYSVSEM
    | g::CLONE_SETTLS
    | g::CLONE_PARENT_SETTID
    | g::CLONE_CHILD_CLEARTID
    | g::CLONE_CHILD_SETTID
    | g::CLONE_VFORK
    | 0xff) as u64;

/// `fork()` / `vfork()`.
pub fn fork(c: &mut Ctx, vfork: bool) -> SysResult {
    let child = new_process(c, 0, None, false)?;
    if vfork {
        wait_vfork(c.thread, &child);
    }
    Ok(child.pid as u64)
}

/// `clone(flags, stack, ...)`.
pub fn clone(c: &mut Ctx) -> SysResult {
    let flags = c.arg(0);
    let stack = c.arg(1);
    let parent_tid = c.arg(2);
    #[cfg(target_arch = "x86_64")]
    let (child_tid, tls) = (c.arg(3), c.arg(4));
    #[cfg(not(target_arch = "x86_64"))]
    let (tls, child_tid) = (c.arg(3), c.arg(4));
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    let f = |bit: u32| flags & bit as u64 != 0;
    if !f(g::CLONE_THREAD) {
        let child = new_process(c, stack, f(g::CLONE_PARENT_SETTID).then_some(parent_tid), f(g::CLONE_FS))?;
        if f(g::CLONE_VFORK) {
            wait_vfork(c.thread, &child);
        }
        return Ok(child.pid as u64);
    }
    // A thread: it shares everything with the caller.
    if !f(g::CLONE_VM) || !f(g::CLONE_SIGHAND) {
        return Err(Errno::EINVAL);
    }
    let process = c.thread.process.clone();
    if process.group_exit().is_some() {
        return Err(Errno::EINTR);
    }
    let tid = process::new_pid();
    let mut regs = *c.regs;
    regs.set_syscall_return(0);
    if stack != 0 {
        regs.set_sp(stack);
    }
    if f(g::CLONE_SETTLS) {
        // x86-64's TLS is the FS base, which must be a user address (as
        // `arch_prctl(ARCH_SET_FS)`); AArch64's TPIDR_EL0 takes any value.
        #[cfg(target_arch = "x86_64")]
        if tls >= crate::vm::space::USER_END {
            return Err(Errno::EPERM);
        }
        regs.set_tls(tls);
    }
    if f(g::CLONE_PARENT_SETTID) {
        copy_to_user(parent_tid, &tid.to_ne_bytes())?;
    }
    if f(g::CLONE_CHILD_SETTID) {
        copy_to_user(child_tid, &tid.to_ne_bytes())?;
    }
    let t = thread::prepare(&process, tid, c.thread.mask());
    if f(g::CLONE_CHILD_CLEARTID) {
        t.clear_child_tid.store(child_tid, core::sync::atomic::Ordering::Release);
    }
    thread::launch(t, Start::Regs(alloc::boxed::Box::new(regs))).map_err(|e| {
        crate::println!("clone: {e}");
        Errno::EAGAIN
    })?;
    Ok(tid as u64)
}

/// A child process of the caller, running a copy of it (return value 0,
/// stack `stack` when not 0). Its pid is written to the caller's
/// `parent_tid` when given (`CLONE_PARENT_SETTID`) before the child is
/// made known or runs, so a bad address fails the call with no child.
fn new_process(
    c: &mut Ctx,
    stack: u64,
    parent_tid: Option<u64>,
    share_cwd: bool,
) -> Result<Arc<Process>, Errno> {
    let parent = c.thread.process.clone();
    let (space, exe, cmdline, brk_start, brk, dontfork) = {
        let mm = parent.mm.lock();
        let space = mm.space.clone().ok_or(Errno::EINVAL)?;
        (space, mm.exe.clone(), mm.cmdline.clone(), mm.brk_start, mm.brk, mm.dontfork.clone())
    };
    let child_space = fork_space(&space, &dontfork)?;
    let actions = parent.state.lock().actions;
    let pid = process::new_pid();
    if let Some(at) = parent_tid {
        // Before `Process::new` lists the pid; the unused copy of the
        // space is dropped on the error.
        copy_to_user(at, &pid.to_ne_bytes())?;
    }
    let child =
        Process::new(pid, Some(parent.pid), Some(child_space), exe, actions, parent.files.fork(share_cwd));
    {
        let mut mm = child.mm.lock();
        mm.cmdline = cmdline;
        mm.brk_start = brk_start;
        mm.brk = brk;
        mm.dontfork = dontfork;
    }
    parent.state.lock().children.push(child.clone());
    let mut regs = *c.regs;
    regs.set_syscall_return(0);
    if stack != 0 {
        regs.set_sp(stack);
    }
    let t = thread::prepare(&child, pid, c.thread.mask());
    if let Err(e) = thread::launch(t, Start::Regs(alloc::boxed::Box::new(regs))) {
        crate::println!("fork: {e}");
        parent.state.lock().children.retain(|p| !Arc::ptr_eq(p, &child));
        process::forget(pid);
        return Err(Errno::EAGAIN);
    }
    Ok(child)
}

/// A fork of `space` without the `dontfork` ranges.
fn fork_space(space: &AddressSpace, dontfork: &[(u64, u64)]) -> Result<Arc<AddressSpace>, Errno> {
    let child = space.fork().map_err(|e| {
        crate::println!("fork: {e}");
        Errno::ENOMEM
    })?;
    for &(s, e) in dontfork {
        // Ranges the parent unmapped since are fine to unmap again.
        let _ = child.munmap(mm::VirtAddr::new(s), e - s);
    }
    Ok(child)
}

/// A `vfork` parent's wait: until the child has exec'd or ended, or the
/// caller must end (a handled signal waits, as in Linux: the child exists
/// and the call returns its pid; the thread loop then ends the caller).
fn wait_vfork(me: &thread::Thread, child: &Arc<Process>) {
    child.exited.wait_for(|| {
        // One lock at a time (the order is mm before state).
        let ended = child.state.lock().status.is_some();
        let exec_or_end = ended || child.mm.lock().execs > 0;
        (exec_or_end || me.must_exit()).then_some(())
    });
}

/// `wait4(pid, wstatus, options, rusage)`.
pub fn wait4(c: &mut Ctx, pid: i32, wstatus: u64, options: u32, rusage: u64) -> SysResult {
    let which = match pid {
        p if p > 0 => WaitFor::Pid(p as Pid),
        // No process groups: every child is in the caller's group.
        _ => WaitFor::Any,
    };
    if options & !(g::WNOHANG | g::WUNTRACED | g::WCONTINUED | 0x4000_0000 | 0x8000_0000) != 0 {
        return Err(Errno::EINVAL);
    }
    let process = c.thread.process.clone();
    let found = process.child_exit.wait_for(|| match process::reap_child(&process, which) {
        Err(process::NoChild) => Some(Err(Errno::ECHILD)),
        Ok(Some(found)) => Some(Ok(found)),
        Ok(None) if options & g::WNOHANG != 0 => Some(Ok((0, 0, process::CpuTimes::default()))),
        // About to wait: not when the caller must end or has a signal
        // (`EINTR`, or the call again after a handler with `SA_RESTART`).
        Ok(None) if c.thread.interrupted() => Some(Err(Errno::ERESTARTSYS)),
        Ok(None) => None,
    })?;
    let (pid, status, times) = found;
    if pid != 0 && wstatus != 0 {
        copy_to_user(wstatus, &status.to_ne_bytes())?;
    }
    if rusage != 0 {
        // The child's times; its faults are not kept past its end.
        copy_to_user(rusage, &super::info::rusage(times, 0, 0))?;
    }
    Ok(pid as u64)
}
