//! The file system calls and the file state of a process, handed to the
//! file layer.
//!
//! INTERIM (issue 15): until the file layer (`crate::fs`) is merged, this
//! bridge has no files: `write`/`writev` on fds 1 and 2 go to the console,
//! reads of fd 0 see end of file, and [`read_file`] finds nothing. With
//! the file layer it passes every file call to `fs::syscalls` with the
//! process's fd table and cwd.
//!
//! Locks: none.

use super::syscall::{Ctx, Errno, SysResult};
use crate::vm::uaccess::copy_from_user;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use linux_raw_sys::errno;
use linux_raw_sys::general as nr;

/// The fd table and cwd of a process (none yet: see the module doc).
pub struct Files {}

impl Files {
    /// The files of the first process: the console on fds 0, 1 and 2.
    pub fn for_init() -> Result<Files, String> {
        Ok(Files {})
    }

    /// A fork child's copy.
    pub fn fork(&self) -> Files {
        Files {}
    }

    /// What `execve` keeps (close-on-exec fds closed).
    pub fn exec(&self) {}

    /// Closes everything (the process ended).
    pub fn release(&self) {}
}

/// The whole file at `path`, for `execve` and [`super::spawn`].
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    Err(alloc::format!("no such file {path} (no file layer yet)"))
}

/// The executable at `path` for `execve` (relative to the cwd).
pub fn read_exec(_c: &Ctx, path: &str) -> Result<Vec<u8>, Errno> {
    read_file(path).map_err(|_| Errno::ENOENT)
}

/// Fills `[at, at + len)` (just mapped, writable) with the contents of
/// fd `fd` from `offset`: a private copy of a file mapping.
pub fn map_file(_c: &Ctx, _fd: i32, _offset: u64, _at: u64, _len: u64) -> Result<(), Errno> {
    Err(Errno(errno::ENODEV))
}

/// Writes `[buf, buf + len)` of user memory to the console.
fn console_write(buf: u64, len: u64) -> SysResult {
    let mut done = 0;
    let mut chunk = vec![0u8; len.min(4096) as usize];
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        copy_from_user(&mut chunk[..n], buf + done)?;
        crate::print!("{}", String::from_utf8_lossy(&chunk[..n]));
        done += n as u64;
    }
    Ok(len)
}

/// The file call `number`, or None when it is not one.
pub fn call(c: &mut Ctx, number: u32) -> Option<SysResult> {
    let a = |i| c.arg(i);
    let console = |fd: u64| fd == 1 || fd == 2;
    Some(match number {
        nr::__NR_write if console(a(0)) => console_write(a(1), a(2)),
        nr::__NR_writev if console(a(0)) => {
            let mut total = 0;
            for i in 0..a(2).min(1024) {
                let mut iov = [0u8; 16];
                if let Err(e) = copy_from_user(&mut iov, a(1) + i * 16) {
                    return Some(Err(e.into()));
                }
                let base = u64::from_ne_bytes(iov[..8].try_into().unwrap());
                let len = u64::from_ne_bytes(iov[8..].try_into().unwrap());
                match console_write(base, len) {
                    Ok(n) => total += n,
                    Err(e) => return Some(Err(e)),
                }
            }
            Ok(total)
        }
        nr::__NR_read if a(0) == 0 => Ok(0),
        nr::__NR_ioctl => Err(Errno(errno::ENOTTY)),
        nr::__NR_close => Ok(0),
        nr::__NR_write | nr::__NR_read | nr::__NR_writev | nr::__NR_fstat => Err(Errno(errno::EBADF)),
        nr::__NR_newfstatat | nr::__NR_openat => Err(Errno::ENOENT),
        _ => return None,
    })
}
