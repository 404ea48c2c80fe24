//! The file system calls and the file state of a process, handed to the
//! file layer ([`crate::fs`]): every file call goes to `fs::syscalls` with
//! the process's fd table and cwd; `execve` and [`super::spawn`] read the
//! program through [`read_file`]; a file `mmap` is a private copy of the
//! file's bytes ([`map_file`]); `sendfile` is a read from one descriptor
//! and a write to the other through a kernel buffer ([`sendfile`]).
//!
//! A process's [`Files`] are its own: a fork copies the fd table and the
//! cwd (threads share them, being one process; a new process gets a copy
//! of the fd table even with `CLONE_FILES`); with `CLONE_FS` a new process
//! shares the cwd (one [`Cwd`] behind an `Arc`: a `chdir` of either is
//! seen by both); `execve` closes the close-on-exec fds; the end of the
//! process closes every fd.
//!
//! Locks: none of its own (the fd table's and the cwd's are the file
//! layer's leaves).

use super::syscall::{Ctx, Errno, SysResult};
use crate::fs::{self, syscalls as fsc, Cwd, FdTable, IoBuf, OpenFile};
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::sync::Arc;
use linux_raw_sys::general as nr;

/// The fd table and cwd of a process.
pub struct Files {
    pub fds: FdTable,
    /// Shared with other processes made with `CLONE_FS`.
    pub cwd: Arc<Cwd>,
}

impl Files {
    /// The files of a process the kernel starts: `/dev/console` on fds 0,
    /// 1 and 2, the root as cwd.
    pub fn for_init() -> Result<Files, String> {
        let files = Files { fds: FdTable::new(), cwd: Arc::new(Cwd::new()) };
        let console = fsc::open_for_kernel(&files.cwd, "/dev/console")
            .map_err(|e| alloc::format!("/dev/console: {e:?}"))?;
        let open = OpenFile::new(console, fs::file::O_RDWR, Some(String::from("/dev/console")));
        for fd in 0..3 {
            files.fds.install_at(fd, open.clone(), false).map_err(|e| alloc::format!("fd {fd}: {e:?}"))?;
        }
        Ok(files)
    }

    /// A fork child's copy; `share_cwd` (`CLONE_FS`): the same cwd.
    pub fn fork(&self, share_cwd: bool) -> Files {
        let cwd = if share_cwd { self.cwd.clone() } else { Arc::new(self.cwd.fork_copy()) };
        Files { fds: self.fds.fork_copy(), cwd }
    }

    /// What `execve` keeps: the fds without close-on-exec.
    pub fn exec(&self) {
        self.fds.close_on_exec();
    }

    /// Closes everything (the process ended).
    pub fn release(&self) {
        self.fds.close_all();
    }
}

/// The whole file at `path` (from the root), for [`super::spawn`]
/// ([`program_bytes`]).
pub fn read_file(path: &str) -> Result<Cow<'static, [u8]>, String> {
    fsc::file_bytes(&Cwd::new(), path).map(program_bytes).map_err(|e| alloc::format!("{e:?}"))
}

/// The executable at `path` for `execve` (relative to the cwd;
/// [`program_bytes`]).
pub fn read_exec(c: &Ctx, path: &str) -> Result<Cow<'static, [u8]>, Errno> {
    Ok(program_bytes(fsc::file_bytes(&c.thread.process.files.cwd, path)?))
}

/// A program file's bytes as the ELF reader needs them (8-byte aligned,
/// `elf::Image::parse`): the archive's own bytes when they are (no copy),
/// else a copy in a heap block (`newc` aligns file data to 4 bytes only;
/// the kernel heap's blocks are 8-byte aligned).
fn program_bytes(bytes: &'static [u8]) -> Cow<'static, [u8]> {
    if (bytes.as_ptr() as usize).is_multiple_of(8) {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(bytes.to_vec())
    }
}

/// Fills `[at, at + len)` (just mapped, writable) with the contents of fd
/// `fd` from `offset`: a private copy of a file mapping; past the file's
/// end the pages stay zero. The fd must be open for reading (`EACCES`)
/// and name a file with offsets (`ENODEV` for a pipe or the console,
/// whose read would ignore the offset and could block), and the range of
/// the file must not pass 2^64 (`EOVERFLOW`).
pub fn map_file(c: &Ctx, fd: i32, offset: u64, at: u64, len: u64) -> Result<(), Errno> {
    // Written so, not as named constants of `Errno`, to hold whichever
    // errno type this module's `Errno` is.
    const EACCES: Errno = Errno(linux_raw_sys::errno::EACCES);
    const ENODEV: Errno = Errno(linux_raw_sys::errno::ENODEV);
    const EOVERFLOW: Errno = Errno(linux_raw_sys::errno::EOVERFLOW);
    if !offset.is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    let open = c.thread.process.files.fds.get(fd)?;
    if !open.readable() {
        return Err(EACCES);
    }
    if !open.file.seekable() {
        return Err(ENODEV);
    }
    offset.checked_add(len).ok_or(EOVERFLOW)?;
    let mut done = 0u64;
    let chunk = 64 * 1024;
    while done < len {
        let n = (len - done).min(chunk) as usize;
        let got = open.file.read(offset + done, &mut IoBuf::User(at + done), n, false)?;
        if got == 0 {
            break;
        }
        done += got as u64;
    }
    Ok(())
}

/// The bounce buffer of [`sendfile`]: one chunk.
const SENDFILE_CHUNK: u64 = 64 * 1024;

/// `sendfile(out_fd, in_fd, offset, count)`: up to `count` bytes read
/// from `in_fd` (at `*offset`, which is then advanced, without moving the
/// fd's own offset, when `offset` is not null; else at the fd's offset)
/// and written to `out_fd`, chunk by chunk, stopping at the end of the
/// input or a short write. The bytes pass through a kernel buffer
/// ([`IoBuf::Kernel`], at most [`SENDFILE_CHUNK`]): the caller's memory
/// is never touched but for `*offset`. An error before any byte moved is
/// the call's error; later, the call returns what moved.
fn sendfile(c: &mut Ctx, out_fd: u64, in_fd: u64, offset: u64, count: u64) -> Result<u64, Errno> {
    let files = &c.thread.process.files;
    let input = files.fds.get(in_fd as u32 as i32)?;
    let output = files.fds.get(out_fd as u32 as i32)?;
    if !input.readable() || !output.writable() {
        return Err(Errno::EBADF);
    }
    let mut at = match offset {
        0 => None,
        p => {
            let mut raw = [0u8; 8];
            crate::vm::uaccess::copy_from_user(&mut raw, p)?;
            let v = i64::from_ne_bytes(raw);
            if v < 0 {
                return Err(Errno::EINVAL);
            }
            Some(v as u64)
        }
    };
    let count = count.min(0x7fff_f000);
    if count == 0 {
        return Ok(0);
    }
    let mut bounce = alloc::vec::Vec::new();
    bounce.try_reserve_exact(count.min(SENDFILE_CHUNK) as usize).map_err(|_| Errno::ENOMEM)?;
    bounce.resize(count.min(SENDFILE_CHUNK) as usize, 0u8);
    let mut total = 0u64;
    let result = loop {
        if total == count {
            break Ok(());
        }
        let want = (count - total).min(bounce.len() as u64) as usize;
        let mut buf = IoBuf::Kernel(&mut bounce);
        let got = match at {
            Some(off) => input.pread(&mut buf, want, off),
            None => input.read(&mut buf, want),
        };
        let got = match got {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let put = match output.write(&buf, got) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        total += put as u64;
        if let Some(off) = &mut at {
            *off += put as u64;
        }
        if put < got {
            // The input moved past what the output took: an fd offset
            // cannot be put back here (Linux's does), so stop.
            break Ok(());
        }
    };
    if let (Some(off), true) = (at, offset != 0) {
        crate::vm::uaccess::copy_to_user(offset, &off.to_ne_bytes())?;
    }
    match result {
        Err(e) if total == 0 => Err(e),
        _ => Ok(total),
    }
}

/// The file call `number`, or None when it is not one.
pub fn call(c: &mut Ctx, number: u32) -> Option<SysResult> {
    let a: [u64; 6] = core::array::from_fn(|i| c.arg(i));
    let files = &c.thread.process.files;
    let (fds, cwd) = (&files.fds, &files.cwd);
    let r = match number {
        nr::__NR_openat => fsc::openat(fds, cwd, a[0], a[1], a[2], a[3]),
        nr::__NR_close => fsc::close(fds, a[0]),
        nr::__NR_read => fsc::read(fds, a[0], a[1], a[2]),
        nr::__NR_write => fsc::write(fds, a[0], a[1], a[2]),
        nr::__NR_readv => fsc::readv(fds, a[0], a[1], a[2]),
        nr::__NR_writev => fsc::writev(fds, a[0], a[1], a[2]),
        nr::__NR_pread64 => fsc::pread64(fds, a[0], a[1], a[2], a[3]),
        nr::__NR_pwrite64 => fsc::pwrite64(fds, a[0], a[1], a[2], a[3]),
        nr::__NR_lseek => fsc::lseek(fds, a[0], a[1], a[2]),
        nr::__NR_newfstatat => fsc::newfstatat(fds, cwd, a[0], a[1], a[2], a[3]),
        nr::__NR_fstat => fsc::fstat(fds, a[0], a[1]),
        nr::__NR_readlinkat => fsc::readlinkat(fds, cwd, a[0], a[1], a[2], a[3]),
        nr::__NR_getdents64 => fsc::getdents64(fds, a[0], a[1], a[2]),
        nr::__NR_ioctl => fsc::ioctl(fds, a[0], a[1], a[2]),
        nr::__NR_pipe2 => fsc::pipe2(fds, a[0], a[1]),
        nr::__NR_dup => fsc::dup(fds, a[0]),
        nr::__NR_dup3 => fsc::dup3(fds, a[0], a[1], a[2]),
        nr::__NR_fcntl => fsc::fcntl(fds, a[0], a[1], a[2]),
        nr::__NR_faccessat => fsc::faccessat(fds, cwd, a[0], a[1], a[2], 0),
        nr::__NR_faccessat2 => fsc::faccessat(fds, cwd, a[0], a[1], a[2], a[3]),
        nr::__NR_getcwd => fsc::getcwd(cwd, a[0], a[1]),
        nr::__NR_chdir => fsc::chdir(cwd, a[0]),
        nr::__NR_fchdir => fsc::fchdir(fds, cwd, a[0]),
        nr::__NR_sendfile => sendfile(c, a[0], a[1], a[2], a[3]),
        _ => return arch_call(fds, cwd, number, &a),
    };
    let writes = matches!(number, nr::__NR_write | nr::__NR_writev | nr::__NR_pwrite64 | nr::__NR_sendfile);
    if writes && r == Err(fs::Errno::EPIPE) {
        // A write to a pipe no one reads: `SIGPIPE` too (the file layer
        // only says `EPIPE`); ignored or handled, the caller sees `EPIPE`.
        super::signal::send_thread(c.thread, super::signal::SIGPIPE);
    }
    Some(r)
}

/// x86_64's older file calls.
#[cfg(target_arch = "x86_64")]
fn arch_call(fds: &FdTable, cwd: &Cwd, number: u32, a: &[u64; 6]) -> Option<SysResult> {
    let r = match number {
        nr::__NR_open => fsc::open(fds, cwd, a[0], a[1], a[2]),
        nr::__NR_stat => fsc::stat(fds, cwd, a[0], a[1]),
        nr::__NR_lstat => fsc::lstat(fds, cwd, a[0], a[1]),
        nr::__NR_access => fsc::access(fds, cwd, a[0], a[1]),
        nr::__NR_pipe => fsc::pipe(fds, a[0]),
        nr::__NR_dup2 => fsc::dup2(fds, a[0], a[1]),
        nr::__NR_readlink => fsc::readlinkat(fds, cwd, fsc::AT_FDCWD, a[0], a[1], a[2]),
        _ => return None,
    };
    Some(r)
}

#[cfg(not(target_arch = "x86_64"))]
fn arch_call(_fds: &FdTable, _cwd: &Cwd, _number: u32, _a: &[u64; 6]) -> Option<SysResult> {
    None
}
