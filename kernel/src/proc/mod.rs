//! User processes with the Linux ABI: processes and threads, the loop a
//! user thread runs around the arch's `enter_user`, the system calls with
//! Linux's numbers, ELF loading and `execve`, fork and threads, signals,
//! futexes, the memory system calls over [`crate::vm::space`], and the
//! per-process `/proc` files.
//!
//! | module | what |
//! | --- | --- |
//! | [`process`] | processes: pids, parent and children, exit status, zombies, `wait4`; `spawn`, `wait_exit`, `run_init` |
//! | [`thread`] | threads: the per-thread loop around `enter_user`, thread exit |
//! | [`clone`] | `fork`, `vfork` and `clone` (new processes and threads) |
//! | [`elf`] | reading an ELF executable and mapping its segments |
//! | [`stack`] | the initial stack: argv, envp, auxv |
//! | [`exec`] | `execve`: a new address space with a program in it |
//! | [`syscall`] | the system-call table: numbers to handlers, errno values |
//! | [`signal`] | signal actions, masks, delivery to handlers, `rt_sigreturn`, death by signal |
//! | [`futex`] | `futex` wait and wake |
//! | [`mman`] | `brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise`, `mincore` |
//! | [`info`] | the information system calls: ids, time, limits, `uname`, `sysinfo`, random bytes |
//! | [`files`] | the file system calls, handed to the file layer |
//! | [`procfs`] | the per-process `/proc` files: `status`, `maps`, `smaps`, `pagemap`, `exe` |
//!
//! Below: [`crate::vm`] (address spaces, faults, user access),
//! [`crate::task`] (each thread is a kernel task), [`crate::memory`].
//!
//! Locks: each process's state ([`process::Process`]) is one
//! [`crate::sync::IrqSpinLock`], a leaf taken for a moment (never across
//! a user access, a sleep or another process's lock, except the parent's
//! then the child's in that order when a child exits); the process table
//! and the futex table are leaves too.

pub mod clone;
pub mod elf;
pub mod exec;
pub mod files;
pub mod futex;
pub mod info;
pub mod mman;
pub mod process;
pub mod procfs;
pub mod signal;
pub mod stack;
pub mod syscall;
pub mod thread;

pub use process::{run_init, spawn, spawn_image, wait_exit, Pid};
pub use syscall::Errno;

/// Sets the process unit up at boot (after the file layer): the wall
/// clock ([`info::init_wall_clock`]), a word on the random bytes, the per-process `/proc` files and
/// the file layer's interruption check
/// (`fs::set_interrupt_hook`: [`thread::Thread::interrupted`] of the
/// calling thread).
pub fn init() {
    info::init_wall_clock();
    info::describe_random();
    procfs::init();
    crate::fs::set_interrupt_hook(|| thread::current().is_some_and(|t| t.interrupted()));
}

/// The arch's user mode, as this build has it.
pub use crate::arch::Arch as UserArch;

/// A user thread's saved registers.
pub type Regs = <UserArch as arch_common::user::UserMode>::Regs;
