//! Processes: pids, the parent and its children, the exit status and the
//! zombie a process leaves until it is waited for (`wait4`), and the API
//! the kernel starts programs with ([`spawn`], [`wait_exit`], [`run_init`]).
//!
//! ## Model
//!
//! A [`Process`] is an address space (replaced by `execve`), a set of
//! threads ([`crate::proc::thread::Thread`], each a kernel task), signal
//! actions and the memory-call state (`brk`). Pids and tids come from one
//! counter; a process's pid is its first thread's tid. The [`TABLE`] holds
//! every process that is alive or a zombie.
//!
//! When the last thread of a process ends, the process becomes a zombie:
//! its address space is dropped, its status is set (a Linux wait status:
//! `code << 8`, or the number of the signal that ended it), its
//! children are orphaned (they reap themselves when they end), and its
//! parent (a process, or the kernel for a process started by [`spawn`]) is
//! woken. The parent's `wait4` (or the kernel's [`wait_exit`]) takes the
//! status and removes the zombie from the table.
//!
//! A group exit (`exit_group`, a fatal signal) sets the status every
//! thread dies with and wakes every thread; each leaves its loop at its
//! next return to the kernel (a thread in user mode comes back at the next
//! timer tick at the latest; a waiting one is unparked and re-checks).
//!
//! Locks: [`Process::state`] (an [`IrqSpinLock`], a leaf, held for a
//! moment and never across a user access or a sleep) guards the threads,
//! children, parent, exit and signal state; [`TABLE`] is a leaf.
//! [`Process::mm`] guards the address space and the `brk`; it is taken
//! before `state` when both are.

use super::signal::{Actions, SigSet};
use super::thread::{self, Start, Thread};
use crate::sync::IrqSpinLock;
use crate::task::wait::WaitQueue;
use crate::vm::space::AddressSpace;
use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A process or thread id, as Linux's `pid_t` (positive).
pub type Pid = u32;

/// The next pid or tid to hand out.
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// Every process alive or a zombie, by pid.
static TABLE: IrqSpinLock<BTreeMap<Pid, Arc<Process>>> = IrqSpinLock::new(BTreeMap::new());

/// Takes `pid` out of the table; an empty table gives its memory back
/// (nothing of a process outlives it).
fn unlist(pid: Pid) {
    let mut table = TABLE.lock();
    table.remove(&pid);
    if table.is_empty() {
        *table = BTreeMap::new();
    }
}

/// A new pid or tid.
pub fn new_pid() -> Pid {
    NEXT_PID.fetch_add(1, Ordering::Relaxed)
}

/// The process with pid `pid`, alive or a zombie.
pub fn find(pid: Pid) -> Option<Arc<Process>> {
    TABLE.lock().get(&pid).cloned()
}

/// Every process there is (for `kill(-1)` and sysinfo).
pub fn all() -> Vec<Arc<Process>> {
    TABLE.lock().values().cloned().collect()
}

/// The address space and what the memory calls keep beside it.
pub struct Mm {
    /// None before a process the kernel spawned has loaded its program,
    /// and once the process is a zombie.
    pub space: Option<Arc<AddressSpace>>,
    /// Where the heap starts (the page after the program's last segment).
    pub brk_start: u64,
    /// The current break (the heap is `[brk_start, page_up(brk))`).
    pub brk: u64,
    /// The path the program was run from (`/proc/self/exe`).
    pub exe: String,
    /// The program's arguments, each followed by a NUL
    /// (`/proc/<pid>/cmdline`; empty before the first program).
    pub cmdline: String,
    /// Ranges `MADV_DONTFORK` marked: a fork leaves them out of the child.
    pub dontfork: Vec<(u64, u64)>,
    /// How many `execve`s the process made (a `vfork` parent waits for one).
    pub execs: u64,
}

/// The mutable state of a process (see the module doc for its lock).
pub struct State {
    /// The parent process; None for one the kernel started, or an orphan.
    pub parent: Option<Pid>,
    /// An orphan: reaped when it ends, nobody waits for it.
    pub autoreap: bool,
    pub children: Vec<Arc<Process>>,
    pub threads: Vec<Arc<Thread>>,
    /// The wait status, once the process is a zombie.
    pub status: Option<i32>,
    /// The wait status every thread dies with (group exit), once decided.
    pub group_exit: Option<i32>,
    /// Signals sent to the process, not yet delivered.
    pub pending: SigSet,
    /// What each signal does (`rt_sigaction`).
    pub actions: Actions,
    /// The CPU time of the threads that ended.
    pub dead_times: CpuTimes,
    /// The CPU time of the children reaped (and of theirs).
    pub children_times: CpuTimes,
}

/// CPU time in nanoseconds: in user mode, and in the kernel on the
/// threads' behalf (`getrusage`, `wait4`, `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user_ns: u64,
    pub sys_ns: u64,
}

impl CpuTimes {
    /// The sum of both.
    pub fn plus(self, o: CpuTimes) -> CpuTimes {
        CpuTimes { user_ns: self.user_ns + o.user_ns, sys_ns: self.sys_ns + o.sys_ns }
    }
}

/// A user process.
pub struct Process {
    pub pid: Pid,
    pub mm: IrqSpinLock<Mm>,
    pub state: IrqSpinLock<State>,
    /// Woken when a child of this process ends (its `wait4`).
    pub child_exit: WaitQueue,
    /// Woken when this process ends (the kernel's [`wait_exit`]).
    pub exited: WaitQueue,
    /// Minor and major faults of its threads (getrusage, `/proc` status).
    pub min_flt: AtomicU64,
    pub maj_flt: AtomicU64,
    /// A thread's `execve` is ending the others (the first one wins; a
    /// second gives up with `EINTR`).
    pub execing: core::sync::atomic::AtomicBool,
    /// The fd table and cwd of the file layer.
    pub files: super::files::Files,
}

impl Process {
    /// A new process with `space`, no threads yet, in the table.
    pub fn new(
        pid: Pid,
        parent: Option<Pid>,
        space: Option<Arc<AddressSpace>>,
        exe: String,
        actions: Actions,
        files: super::files::Files,
    ) -> Arc<Process> {
        let p = Arc::new(Process {
            pid,
            mm: IrqSpinLock::new(Mm {
                space,
                brk_start: 0,
                brk: 0,
                exe,
                cmdline: String::new(),
                dontfork: Vec::new(),
                execs: 0,
            }),
            state: IrqSpinLock::new(State {
                parent,
                autoreap: false,
                children: Vec::new(),
                threads: Vec::new(),
                status: None,
                group_exit: None,
                pending: 0,
                actions,
                dead_times: CpuTimes::default(),
                children_times: CpuTimes::default(),
            }),
            child_exit: WaitQueue::new(),
            exited: WaitQueue::new(),
            min_flt: AtomicU64::new(0),
            maj_flt: AtomicU64::new(0),
            execing: core::sync::atomic::AtomicBool::new(false),
            files,
        });
        TABLE.lock().insert(pid, p.clone());
        p
    }

    /// The address space; None before a spawned process has loaded its
    /// program and once the process is a zombie.
    pub fn space(&self) -> Option<Arc<AddressSpace>> {
        self.mm.lock().space.clone()
    }

    /// The CPU time of the process's threads, live and ended.
    pub fn cpu_times(&self) -> CpuTimes {
        let (dead, threads) = {
            let st = self.state.lock();
            (st.dead_times, st.threads.clone())
        };
        threads.iter().fold(dead, |sum, t| sum.plus(t.cpu_times()))
    }

    /// The CPU time of the children reaped.
    pub fn children_times(&self) -> CpuTimes {
        self.state.lock().children_times
    }

    /// The parent's pid (0 when the kernel started it, as Linux's init).
    pub fn ppid(&self) -> Pid {
        self.state.lock().parent.unwrap_or(0)
    }

    /// The status the threads die with, when a group exit was decided.
    pub fn group_exit(&self) -> Option<i32> {
        self.state.lock().group_exit
    }

    /// Decides a group exit with wait status `status` (the first decision
    /// stands) and wakes every thread so that each leaves its loop.
    pub fn start_group_exit(&self, status: i32) {
        let threads = {
            let mut st = self.state.lock();
            st.group_exit.get_or_insert(status);
            st.threads.clone()
        };
        for t in &threads {
            t.kick();
        }
        self.child_exit.wake_all();
    }

    /// The thread `tid` of this process.
    pub fn thread(&self, tid: Pid) -> Option<Arc<Thread>> {
        self.state.lock().threads.iter().find(|t| t.tid == tid).cloned()
    }

    /// Called by the last thread as it ends: makes the process a zombie
    /// with wait status `status` and tells its parent.
    pub(super) fn become_zombie(self: &Arc<Self>, status: i32) {
        // The space goes first (the caller left it already).
        let space = self.mm.lock().space.take();
        drop(space);
        self.files.release();
        let (children, parent, autoreap) = {
            let mut st = self.state.lock();
            st.status = Some(status);
            (core::mem::take(&mut st.children), st.parent, st.autoreap)
        };
        for child in children {
            let mut cst = child.state.lock();
            cst.parent = None;
            cst.autoreap = true;
            let dead = cst.status.is_some();
            drop(cst);
            if dead {
                unlist(child.pid);
            }
        }
        let parent = parent.and_then(find);
        match parent {
            Some(parent) => {
                parent.child_exit.wake_all();
                super::signal::send_process(&parent, super::signal::SIGCHLD);
            }
            None if autoreap => {
                unlist(self.pid);
            }
            None => {}
        }
        self.exited.wake_all();
    }
}

/// Takes process `pid` out of the table (one that never ran).
pub fn forget(pid: Pid) {
    unlist(pid);
}

/// `wait4`'s `ECHILD`: no child matches.
#[derive(Debug, Clone, Copy)]
pub struct NoChild;

/// Which children a `wait4` waits for.
#[derive(Debug, Clone, Copy)]
pub enum WaitFor {
    Any,
    Pid(Pid),
}

/// `wait4`'s search: a zombie child matching `which` is taken (removed
/// from the children and the table) and its pid and status returned;
/// `Ok(None)` when matching children exist but none has ended;
/// `Err(NoChild)` when there is no matching child.
pub fn reap_child(parent: &Process, which: WaitFor) -> Result<Option<(Pid, i32, CpuTimes)>, NoChild> {
    let mut st = parent.state.lock();
    let matches = |c: &Arc<Process>| match which {
        WaitFor::Any => true,
        WaitFor::Pid(p) => c.pid == p,
    };
    if !st.children.iter().any(matches) {
        return Err(NoChild);
    }
    let found = st.children.iter().position(|c| matches(c) && c.state.lock().status.is_some());
    let Some(i) = found else { return Ok(None) };
    let child = st.children.remove(i);
    let (status, times) = {
        let cst = child.state.lock();
        (cst.status.expect("a zombie has a status"), cst.dead_times.plus(cst.children_times))
    };
    st.children_times = st.children_times.plus(times);
    drop(st);
    unlist(child.pid);
    Ok(Some((child.pid, status, times)))
}

/// Starts the program at `path` (read through the file layer) as a new
/// process with arguments `argv` and environment `envp`; the kernel is
/// its parent ([`wait_exit`] reaps it).
///
/// # Errors
/// The file cannot be read, or is not an executable this kernel runs.
pub fn spawn(path: &str, argv: &[&str], envp: &[&str]) -> Result<Pid, String> {
    let image = super::files::read_file(path).map_err(|e| format!("{path}: {e}"))?;
    spawn_image(path, image, argv, envp)
}

/// [`spawn`] of a program image already in memory (the archive's bytes,
/// or a buffer of the caller's); `path` is its name. The process has no
/// space until its first thread loads the program (`exec::exec_image`
/// makes it).
pub fn spawn_image(
    path: &str,
    image: Cow<'static, [u8]>,
    argv: &[&str],
    envp: &[&str],
) -> Result<Pid, String> {
    super::elf::Image::parse(&image).map_err(|e| format!("{path}: {e}"))?;
    let pid = new_pid();
    let process = Process::new(
        pid,
        None,
        None,
        path.to_string(),
        Actions::default(),
        super::files::Files::for_init().map_err(|e| format!("{path}: {e}"))?,
    );
    let start = Start::Exec {
        path: path.to_string(),
        image,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        envp: envp.iter().map(|s| s.to_string()).collect(),
    };
    thread::start(&process, pid, start).inspect_err(|_| {
        unlist(pid);
    })?;
    Ok(pid)
}

/// Waits until process `pid` (started by [`spawn`]) has ended, reaps it
/// and returns its Linux wait status. A pid the kernel did not start, or
/// that was already reaped, gives `-1`.
pub fn wait_exit(pid: Pid) -> i32 {
    let Some(p) = find(pid) else { return -1 };
    if p.state.lock().parent.is_some() {
        return -1;
    }
    let status = p.exited.wait_for(|| p.state.lock().status);
    unlist(pid);
    status
}

/// Runs the first program (`init=`): spawns it with the environment
/// Linux gives init, waits for it and returns its wait status.
///
/// # Errors
/// The program cannot be started: why, without the leading `path: `
/// (the caller prints `init: cannot run PATH: WHY`, `qemu::protocol`).
pub fn run_init(path: &str, argv: &[&str]) -> Result<i32, String> {
    let envp = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"];
    match spawn(path, argv, &envp) {
        Ok(pid) => Ok(wait_exit(pid)),
        Err(e) => Err(e.strip_prefix(path).and_then(|r| r.strip_prefix(": ")).unwrap_or(&e).to_string()),
    }
}
