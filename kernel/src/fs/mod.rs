//! Files: the tree a process sees (the initramfs with `/dev`, `/proc` and
//! `/sys` grafted on), open files, file descriptors, pipes, and the file
//! system calls of the Linux ABI.
//!
//! | module | what |
//! | --- | --- |
//! | [`abi`] | the Linux structures (`stat` per arch, `linux_dirent64`, `iovec`, `termios`) as bytes |
//! | [`tree`] | the file tree: nodes built once from the cpio archive plus the synthetic files; the mounted root |
//! | [`path`] | path lookup: absolute or from a directory, `.`, `..`, symlinks, `/proc/self` |
//! | [`file`] | the `File` trait, open-file descriptions (offset, status flags), stat |
//! | [`fdtable`] | a process's descriptors: fork copy (threads share the process's), close-on-exec |
//! | [`pipe`] | pipes: a bounded buffer, blocking ends, EOF and `EPIPE` |
//! | [`dev`] | `/dev/console`, `/dev/null`, the virtio disks as raw block devices (reads and writes pin the user's pages) |
//! | [`procfs`] | `/proc/meminfo`, `/proc/vmstat`, `/proc/cpuinfo`, the `/sys` files of the THP policy and the CPUs |
//! | [`syscalls`] | the file system calls: raw user arguments in, `Result<u64, Errno>` out |
//!
//! ## Protocol
//!
//! The tree is immutable once built: [`init`] builds it at boot from the
//! initramfs (`crate::bootinfo::initrd`, none: the synthetic files alone),
//! and [`tree::mount_root`] replaces the whole root (tests). Lookups take
//! the root's `Arc` under its lock and walk without any lock. Everything
//! that changes (an offset, a descriptor slot, a pipe's buffer) has its own
//! lock, named in its module; every one is a leaf: no other lock is taken
//! while holding it, and none is held across a copy to or from user
//! memory (which may fault and sleep) or a disk transfer.
//!
//! User memory is reached only through `crate::vm::uaccess`'s copies; a
//! bad pointer is [`Errno::EFAULT`].
//!
//! The per-process files under `/proc/self/` and `/proc/<pid>/` belong to
//! `crate::proc`, above this unit: it registers them with
//! [`set_proc_self_hook`] (which is told which process), and the `self`
//! and pid entries of `/proc`'s listing with [`set_proc_list_hook`].
//!
//! Below: [`crate::vm`] (uaccess, address spaces, the THP policy),
//! [`crate::drivers`] (disks), [`crate::task`] (wait queues).

pub mod abi;
pub mod dev;
pub mod fdtable;
pub mod file;
pub mod path;
pub mod pipe;
pub mod procfs;
pub mod syscalls;
pub mod tree;

pub use fdtable::FdTable;
pub use file::{File, IoBuf, OpenFile, Stat};
pub use path::Cwd;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// A Linux error number (positive, as in `errno.h`; the values are the
/// `linux-raw-sys` crate's). The system call entry returns `-errno`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(pub const $name: Errno = Errno(linux_raw_sys::errno::$name);)*

            /// The symbolic name (`"ENOENT"`), or `None` for a value this
            /// kernel never returns.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(linux_raw_sys::errno::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos!(
    EPERM,
    EINTR,
    ENOENT,
    EIO,
    EBADF,
    EAGAIN,
    ENOMEM,
    EFAULT,
    EEXIST,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EMFILE,
    ENOTTY,
    ENOSPC,
    ESPIPE,
    EROFS,
    EPIPE,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ELOOP,
    EACCES,
    ENXIO,
    // Process calls' (`crate::proc` answers with this type too).
    ESRCH,
    ENOEXEC,
    ECHILD,
    ETIMEDOUT,
    E2BIG,
);

/// The kernel's own "interrupted" answers of a blocking call, never seen
/// by user mode: the thread loop (`crate::proc::signal::deliver`) turns
/// them into a restart of the call or `EINTR`, as Linux does with the
/// same values.
impl Errno {
    /// A wait left for a signal: the call runs again after a handler with
    /// `SA_RESTART`, or when no handler runs; `EINTR` after a handler
    /// without it (pipe read and write, `wait4`, a futex wait without a
    /// timeout).
    pub const ERESTARTSYS: Errno = Errno(512);
    /// The same, but `EINTR` after any handler (`rt_sigsuspend`).
    pub const ERESTARTNOHAND: Errno = Errno(514);
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl From<crate::vm::uaccess::BadAddress> for Errno {
    fn from(_: crate::vm::uaccess::BadAddress) -> Errno {
        Errno::EFAULT
    }
}

impl From<crate::vm::uaccess::CStrError> for Errno {
    fn from(e: crate::vm::uaccess::CStrError) -> Errno {
        use crate::vm::uaccess::CStrError;
        match e {
            CStrError::BadAddress => Errno::EFAULT,
            CStrError::TooLong => Errno::ENAMETOOLONG,
            CStrError::NotUtf8 => Errno::ENOENT,
        }
    }
}

/// What [`set_proc_self_hook`] registers: given the process (`None` for
/// `/proc/self/`, `Some(pid)` for `/proc/<pid>/`) and the path after its
/// directory (`rest`, maybe empty: the directory itself), the file, an
/// error (`ENOENT` when there is no such process), or `None` when there
/// is no such file.
pub type ProcSelfHook = fn(pid: Option<u32>, rest: &str) -> Option<Result<Arc<dyn File>, Errno>>;

/// What [`set_proc_list_hook`] registers: the entries `/proc` lists
/// besides its fixed files (`self` and one directory per process).
pub type ProcListHook = fn() -> Vec<file::DirEntry>;

static PROC_SELF_HOOK: spin::Once<ProcSelfHook> = spin::Once::new();
static PROC_LIST_HOOK: spin::Once<ProcListHook> = spin::Once::new();

/// Registers the per-process `/proc` files (once, by `crate::proc`).
pub fn set_proc_self_hook(hook: ProcSelfHook) {
    PROC_SELF_HOOK.call_once(|| hook);
}

/// Registers the per-process entries of `/proc`'s listing (once, by
/// `crate::proc`).
pub fn set_proc_list_hook(hook: ProcListHook) {
    PROC_LIST_HOOK.call_once(|| hook);
}

/// The per-process file `rest` of `pid` (module doc).
fn proc_self(pid: Option<u32>, rest: &str) -> Option<Result<Arc<dyn File>, Errno>> {
    PROC_SELF_HOOK.get().and_then(|hook| hook(pid, rest))
}

/// The per-process entries of `/proc` (none before the hook is set).
fn proc_list() -> Vec<file::DirEntry> {
    PROC_LIST_HOOK.get().map(|hook| hook()).unwrap_or_default()
}

/// What [`set_interrupt_hook`] registers: whether the calling task must
/// leave a blocking wait now (a signal to deliver, or its thread ending).
pub type InterruptHook = fn() -> bool;

static INTERRUPT_HOOK: spin::Once<InterruptHook> = spin::Once::new();

/// Registers the interruption check of blocking waits (once, by
/// `crate::proc`; the file layer does not know processes).
pub fn set_interrupt_hook(hook: InterruptHook) {
    INTERRUPT_HOOK.call_once(|| hook);
}

/// Whether the caller must leave a blocking wait ([`Errno::ERESTARTSYS`],
/// which becomes `EINTR` or a restart of the call): asked by
/// every wait of the file layer before it parks (false for kernel tasks,
/// and before `crate::proc` registered its hook).
pub fn interrupted() -> bool {
    INTERRUPT_HOOK.get().is_some_and(|hook| hook())
}

/// Builds the file tree at boot: the initramfs if the boot path passed
/// one, plus `/dev`, `/proc` and `/sys`. Prints what it found.
pub fn init() {
    let archive = crate::bootinfo::initrd();
    let (root, nr_entries) = tree::build(archive.unwrap_or(&[]));
    match archive {
        Some(a) => crate::println!("fs: initramfs of {} bytes, {nr_entries} entries", a.len()),
        None => crate::println!("fs: no initramfs; /dev, /proc and /sys only"),
    }
    tree::mount_root(root);
}
