//! Threads: the loop each user thread runs around the arch's
//! `enter_user`, and how a thread ends.
//!
//! ## The loop
//!
//! A thread is a kernel task that runs [`run`]: enter the process's space,
//! deliver a pending signal (which may end the process; a handler's frame
//! is written to the user stack, hence the space first), enter user mode, and handle why it came
//! back: a system call ([`super::syscall::dispatch`]), a page fault
//! (resolved by [`crate::vm::fault::resolve`], or `SIGSEGV`/`SIGBUS` with
//! the address), another exception (its signal), or an interrupt (a
//! preemption point: the task yields). The registers live in the loop's
//! own [`Regs`]: fork copies them, signal delivery saves them, `execve`
//! replaces them. Before each entry the loop makes sure the task runs in
//! the process's current address space ([`Entered`]; `execve` changes it).
//!
//! The loop ends when the thread calls `exit`, or a group exit was decided
//! (`exit_group`, a fatal signal). Then the thread leaves the address
//! space, clears its `clear_child_tid` word and wakes its futex (how
//! `pthread_join` learns of the end), and the last thread makes the
//! process a zombie.
//!
//! Locks: `BY_TASK` (a leaf); the per-thread atomics are written by the
//! thread itself, except `pending` (senders set bits) and the task handle
//! (set once).

use super::process::{Pid, Process};
use super::signal::{self, SigSet};
use super::syscall::{self, Flow};
use super::{Regs, UserArch};
use crate::arch::prelude::*;
use crate::sync::IrqSpinLock;
use crate::task::sched::{self, AddressSpaceGuard, Task};
use crate::vm::fault::{self, Unresolved};
use crate::vm::space::AddressSpace;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use arch_common::user::{UserExit, UserMode, UserRegs};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::fault::FaultCause;

/// A user thread.
pub struct Thread {
    pub tid: Pid,
    pub process: Arc<Process>,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID`: zeroed and woken at exit.
    pub clear_child_tid: AtomicU64,
    /// Blocked signals.
    pub sigmask: AtomicU64,
    /// Signals sent to this thread (tgkill, faults), not yet delivered.
    pub pending: AtomicU64,
    /// The kernel task that runs the thread (set once, as it starts).
    task: spin::Once<Arc<Task>>,
    /// Signal frames entered and not yet returned from (`rt_sigreturn`).
    pub(super) frames: spin::Mutex<Vec<signal::SavedFrame>>,
    /// The mask `rt_sigsuspend` replaced for its wait: the next handler's
    /// frame records it (its `rt_sigreturn` restores it), or it comes back
    /// before the return to user mode when no handler runs. The thread's
    /// own.
    pub(super) saved_mask: spin::Mutex<Option<SigSet>>,
    /// Another thread's `execve` ends this one (the process goes on).
    doomed: AtomicBool,
    /// Nanoseconds in user mode: the clock read around each `enter_user`
    /// (written by the thread only).
    user_ns: AtomicU64,
}

impl Thread {
    /// Wakes the thread if it waits (it re-checks why it waits, and its
    /// pending signals and the group exit at its next return to user mode).
    pub fn kick(&self) {
        if let Some(task) = self.task.get() {
            sched::unpark(task);
        }
    }

    /// The thread's CPU time: user mode, and the rest of its task's time
    /// on a CPU (the kernel on its behalf).
    pub fn cpu_times(&self) -> super::process::CpuTimes {
        let user_ns = self.user_ns.load(Ordering::Relaxed);
        let total = self.task.get().map_or(0, |t| t.cpu_ns());
        super::process::CpuTimes { user_ns, sys_ns: total.saturating_sub(user_ns) }
    }

    /// Sends signal `sig` to this thread.
    pub fn send(&self, sig: u32) {
        self.pending.fetch_or(signal::bit(sig), Ordering::AcqRel);
        self.kick();
    }

    /// Ends this thread alone at its next return to the kernel
    /// (`execve` in another thread).
    pub fn doom(&self) {
        self.doomed.store(true, Ordering::Release);
        self.kick();
    }

    /// Whether the thread must leave what it waits for and end.
    pub fn must_exit(&self) -> bool {
        self.doomed.load(Ordering::Acquire) || self.process.group_exit().is_some()
    }

    /// Whether a blocking call must stop waiting and return `EINTR`: the
    /// thread must end, or a signal is pending that delivery would act on.
    pub fn interrupted(&self) -> bool {
        self.must_exit() || signal::deliverable(self)
    }

    /// The signals blocked.
    pub fn mask(&self) -> SigSet {
        self.sigmask.load(Ordering::Acquire)
    }
}

/// Every running thread, by the id of its kernel task (to find the
/// caller's process from a hook of a lower unit: `/proc/self`).
static BY_TASK: IrqSpinLock<BTreeMap<u64, Weak<Thread>>> = IrqSpinLock::new(BTreeMap::new());

/// The user thread the running task is, if it is one.
pub fn current() -> Option<Arc<Thread>> {
    BY_TASK.lock().get(&sched::current_id()).and_then(Weak::upgrade)
}

/// How a new thread starts.
pub enum Start {
    /// With these registers (fork, clone).
    Regs(alloc::boxed::Box<Regs>),
    /// By loading a program (the first thread of a spawned process).
    Exec { path: String, image: alloc::borrow::Cow<'static, [u8]>, argv: Vec<String>, envp: Vec<String> },
}

/// The task of a new thread `tid` in `process`: added to the process's
/// threads and started.
pub fn start(process: &Arc<Process>, tid: Pid, how: Start) -> Result<Arc<Thread>, String> {
    let thread = prepare(process, tid, 0);
    launch(thread.clone(), how)?;
    Ok(thread)
}

/// A new thread `tid` of `process` with signal mask `mask` (a clone
/// inherits its creator's), not yet running ([`launch`]).
pub fn prepare(process: &Arc<Process>, tid: Pid, mask: SigSet) -> Arc<Thread> {
    Arc::new(Thread {
        tid,
        process: process.clone(),
        clear_child_tid: AtomicU64::new(0),
        sigmask: AtomicU64::new(mask),
        pending: AtomicU64::new(0),
        task: spin::Once::new(),
        frames: spin::Mutex::new(Vec::new()),
        saved_mask: spin::Mutex::new(None),
        doomed: AtomicBool::new(false),
        user_ns: AtomicU64::new(0),
    })
}

/// Adds `thread` to its process and starts its task.
pub fn launch(thread: Arc<Thread>, how: Start) -> Result<(), String> {
    let process = thread.process.clone();
    process.state.lock().threads.push(thread.clone());
    let t = thread.clone();
    let spawned = sched::spawn("user", move || {
        t.task.call_once(sched::current_task);
        let id = sched::current_id();
        BY_TASK.lock().insert(id, Arc::downgrade(&t));
        main(t, how);
        let mut by_task = BY_TASK.lock();
        by_task.remove(&id);
        if by_task.is_empty() {
            // No memory outlives the threads.
            *by_task = BTreeMap::new();
        }
    });
    if let Err(e) = spawned {
        process.state.lock().threads.retain(|t| !Arc::ptr_eq(t, &thread));
        return Err(alloc::format!("no task for thread {}: {e:?}", thread.tid));
    }
    Ok(())
}

/// The address space the running thread is in, and the scheduler's
/// record of it; dropping it leaves the space.
pub struct Entered {
    // Field order: the guard (leaving the space) drops before the space.
    _guard: AddressSpaceGuard,
    pub space: Arc<AddressSpace>,
}

/// Makes the running task run in `space`, leaving what `entered` had.
pub fn enter(entered: &mut Option<Entered>, space: Arc<AddressSpace>) {
    if entered.as_ref().is_some_and(|e| Arc::ptr_eq(&e.space, &space)) {
        return;
    }
    // Leave first: a new guard set before the old one dropped would be
    // undone by that drop.
    drop(entered.take());
    let guard = sched::enter_address_space(space.root());
    *entered = Some(Entered { _guard: guard, space });
}

/// What a thread's task runs.
fn main(thread: Arc<Thread>, how: Start) {
    let mut entered: Option<Entered> = None;
    let status = match how {
        Start::Regs(regs) => run(&thread, *regs, &mut entered),
        Start::Exec { path, image, argv, envp } => {
            match super::exec::exec_image(&thread, &mut entered, &path, &image, &argv, &envp) {
                Ok(regs) => {
                    drop(image);
                    run(&thread, regs, &mut entered)
                }
                Err(e) => {
                    crate::println!("proc: pid {}: cannot run {path}: {e:?}", thread.process.pid);
                    // Nothing of the program ran: the status a shell gives
                    // a program it cannot execute.
                    thread.process.start_group_exit(126 << 8);
                    Exit::Group
                }
            }
        }
    };
    drop(entered);
    finish(&thread, status);
}

/// How a thread's loop ended.
#[derive(Debug, Clone, Copy)]
pub enum Exit {
    /// `exit(code)`: this thread only (the process ends with the last).
    Thread(i32),
    /// The process ends with the group exit's status.
    Group,
}

/// The loop of a user thread (see the module doc); returns how it ended.
pub fn run(thread: &Arc<Thread>, mut regs: Regs, entered: &mut Option<Entered>) -> Exit {
    // A system call that a signal interrupted, for delivery to restart or
    // answer `EINTR` (set after the call, taken by the next delivery).
    let mut interrupted: Option<signal::Interrupted> = None;
    loop {
        if thread.process.group_exit().is_some() {
            return Exit::Group;
        }
        if thread.doomed.load(Ordering::Acquire) {
            return Exit::Thread(0);
        }
        // In the space before delivering: a handler's frame is written to
        // the user stack (a new thread's first pass has entered nothing).
        let Some(space) = thread.process.space() else { return Exit::Group };
        enter(entered, space);
        if let Some(exit) = signal::deliver(thread, &mut regs, interrupted.take()) {
            return exit;
        }
        let was = Arch::irq_save_and_disable();
        // SAFETY: `regs` lives across the call; this is the task's own
        // stack; the task runs in its process's space (entered above).
        let entered_at = Arch::now_ns();
        let why = unsafe { UserArch::enter_user(&mut regs) };
        thread.user_ns.fetch_add(Arch::now_ns().saturating_sub(entered_at), Ordering::Relaxed);
        match why {
            UserExit::Syscall => {
                Arch::irq_restore(was);
                let (nr, arg0) = (regs.syscall_nr(), regs.syscall_arg(0));
                match syscall::dispatch(thread, &mut regs, entered) {
                    Flow::Return(value) => {
                        interrupted = signal::Interrupted::of_return(value, nr, arg0);
                        regs.set_syscall_return(value);
                    }
                    Flow::NoReturn => {}
                    Flow::Exit(exit) => {
                        return exit;
                    }
                }
            }
            UserExit::PageFault(f) => {
                let res = fault::resolve(&f);
                Arch::irq_restore(was);
                match res {
                    Ok(()) => {
                        thread.process.min_flt.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Unresolved::Refused(_) | Unresolved::NotOurs) => {
                        let code = if f.cause == FaultCause::NotMapped && !in_area(entered, f.addr.as_u64()) {
                            signal::SEGV_MAPERR
                        } else {
                            signal::SEGV_ACCERR
                        };
                        signal::force(thread, &mut regs, signal::SIGSEGV, code, f.addr.as_u64());
                    }
                    Err(Unresolved::Lost(why)) => {
                        crate::println!("proc: pid {}: {why}", thread.process.pid);
                        signal::force(thread, &mut regs, signal::SIGBUS, signal::BUS_ADRERR, f.addr.as_u64());
                    }
                    Err(Unresolved::OutOfMemory(why)) => {
                        crate::println!("proc: pid {}: out of memory: {why}", thread.process.pid);
                        signal::force(thread, &mut regs, signal::SIGKILL, 0, 0);
                    }
                }
            }
            UserExit::Exception(e) => {
                Arch::irq_restore(was);
                let (sig, code, addr) = signal::of_exception(e, regs.pc());
                signal::force(thread, &mut regs, sig, code, addr);
            }
            UserExit::Interrupt => {
                Arch::irq_restore(was);
                // The preemption point of user mode (the trap did not switch).
                sched::yield_now();
            }
        }
    }
}

/// Whether `addr` lies in an area of the entered space (MAPERR or ACCERR).
fn in_area(entered: &Option<Entered>, addr: u64) -> bool {
    entered.as_ref().is_some_and(|e| e.space.has_area(mm::VirtAddr::new(addr & !0xfff)))
}

/// The end of a thread: its `clear_child_tid`, its place in the process,
/// and the process's end if it was the last.
fn finish(thread: &Arc<Thread>, how: Exit) {
    let process = &thread.process;
    let ctid = thread.clear_child_tid.load(Ordering::Acquire);
    if ctid != 0 {
        if let Some(space) = process.space() {
            let mut entered = None;
            enter(&mut entered, space.clone());
            if crate::vm::uaccess::copy_to_user(ctid, &0u32.to_ne_bytes()).is_ok() {
                super::futex::wake(&space, ctid, 1, u32::MAX);
            }
        }
    }
    let times = thread.cpu_times();
    let last = {
        let mut st = process.state.lock();
        st.dead_times = st.dead_times.plus(times);
        st.threads.retain(|t| !Arc::ptr_eq(t, thread));
        st.threads.is_empty()
    };
    if last {
        let status = match how {
            Exit::Thread(code) => process.group_exit().unwrap_or((code & 0xff) << 8),
            Exit::Group => process.group_exit().unwrap_or(0),
        };
        process.become_zombie(status);
    }
}
