//! What an open file is: the [`File`] trait every kind of file implements
//! (tree files, devices, pipes, the synthetic files, and `crate::proc`'s
//! per-process ones), and the open-file description [`OpenFile`] that
//! descriptors point to.
//!
//! ## Open-file descriptions
//!
//! An [`OpenFile`] is what `open` makes and `dup`/`fork` share: the file,
//! the offset, the status flags (`O_APPEND`, `O_NONBLOCK`, the access
//! mode) and, for a directory of the tree, its canonical path (the base of
//! `openat` relative to it, and of `fchdir`). The offset is under the
//! description's `offset` lock (a leaf); a `read` takes the offset, drops
//! the lock for the transfer (which may sleep) and stores the new one, so
//! two tasks reading one description at once may read the same bytes:
//! Linux serialises them with `f_pos_lock`, this kernel does not (yet).
//!
//! ## Transfers
//!
//! [`File::read`] and [`File::write`] move bytes between the file and an
//! [`IoBuf`]: a *user* buffer (an address: what the system calls pass) or
//! a *kernel* buffer (a slice: what `sendfile` moves through, so that it
//! needs no memory of the caller's). A file copies through
//! [`IoBuf::put`] and [`IoBuf::take`], which use `crate::vm::uaccess` for
//! user memory; a raw disk pins the user's pages instead of copying and
//! goes through a bounce frame for a kernel buffer ([`crate::fs::dev`]).
//! Kernel-made content goes out through [`read_from_bytes`].

use crate::fs::Errno;
use crate::sync::IrqSpinLock;
use crate::vm::uaccess;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// The file-type bits of a mode (`S_IFMT`) and their values.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;
pub const S_IFBLK: u32 = 0o060_000;
pub const S_IFIFO: u32 = 0o010_000;

/// What `stat` reports of a file (converted to the arch's `struct stat` by
/// [`crate::fs::syscalls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// The inode number (unique within the tree; devices and pipes have
    /// their own ranges).
    pub ino: u64,
    /// Type and permission bits (`S_IF*` | `0o7777`).
    pub mode: u32,
    pub nlink: u32,
    /// Bytes (regular files, symlinks, disks), 0 otherwise.
    pub size: u64,
    /// Device number of a character or block device (`makedev`).
    pub rdev: u64,
    /// The preferred transfer size.
    pub blksize: u32,
}

/// Linux's `makedev(major, minor)` encoding.
pub const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12)
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// `S_IF*` of the entry.
    pub kind: u32,
    pub name: String,
}

/// The other end of a transfer (module doc, "Transfers"): bytes `0..len`
/// of a user buffer at an address, or of a kernel slice.
pub enum IoBuf<'a> {
    /// User memory from this address on: every access is checked and may
    /// fault (`EFAULT` for an address the process may not use).
    User(u64),
    /// A kernel buffer; an access past its end is `EFAULT` too, never a
    /// panic.
    Kernel(&'a mut [u8]),
}

impl IoBuf<'_> {
    /// Copies `bytes` into the buffer at offset `at` (a read's result).
    pub fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), Errno> {
        match self {
            IoBuf::User(base) => Ok(uaccess::copy_to_user(*base + at as u64, bytes)?),
            IoBuf::Kernel(buf) => {
                let end = at.checked_add(bytes.len()).ok_or(Errno::EFAULT)?;
                buf.get_mut(at..end).ok_or(Errno::EFAULT)?.copy_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Copies the buffer's bytes at offset `at` into `out` (a write's
    /// source).
    pub fn take(&self, at: usize, out: &mut [u8]) -> Result<(), Errno> {
        match self {
            IoBuf::User(base) => Ok(uaccess::copy_from_user(out, *base + at as u64)?),
            IoBuf::Kernel(buf) => {
                let end = at.checked_add(out.len()).ok_or(Errno::EFAULT)?;
                out.copy_from_slice(buf.get(at..end).ok_or(Errno::EFAULT)?);
                Ok(())
            }
        }
    }
}

/// An open file of any kind. Offsets are the description's; a file that
/// is not seekable ignores them.
pub trait File: Send + Sync {
    /// Reads up to `len` bytes at `offset` into `buf`; returns how many
    /// (0: end of file). `nonblock`: `EAGAIN` rather than waiting.
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, nonblock: bool) -> Result<usize, Errno>;
    /// Writes `len` bytes from `buf` at `offset`; returns how many were
    /// taken.
    fn write(&self, offset: u64, buf: &IoBuf<'_>, len: usize, nonblock: bool) -> Result<usize, Errno>;
    /// What `stat` says of it.
    fn stat(&self) -> Stat;
    /// False for pipes (`lseek` and `pread` answer `ESPIPE`).
    fn seekable(&self) -> bool {
        true
    }
    /// The entries of a directory (`ENOTDIR` for anything else); `.` and
    /// `..` included.
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        Err(Errno::ENOTDIR)
    }
    /// An `ioctl` on it; `ENOTTY` unless the file knows the request.
    fn ioctl(&self, _cmd: u32, _arg: u64) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }
    /// The target of a link-like file (`/proc/self/exe`): what `readlink`
    /// returns when it is opened through the per-process hook.
    fn readlink(&self) -> Option<String> {
        None
    }
}

/// Reads kernel-made `content` as a file: bytes from `offset`, at most
/// `len`, copied to `buf`.
pub fn read_from_bytes(content: &[u8], offset: u64, buf: &mut IoBuf<'_>, len: usize) -> Result<usize, Errno> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
    let n = len.min(content.len() - start);
    buf.put(0, &content[start..start + n])?;
    Ok(n)
}

/// Status flags kept on a description (`fcntl(F_GETFL)`): the access mode
/// and the flags `F_SETFL` may change.
pub const O_ACCMODE: u32 = linux_raw_sys::general::O_ACCMODE;
pub const O_APPEND: u32 = linux_raw_sys::general::O_APPEND;
pub const O_NONBLOCK: u32 = linux_raw_sys::general::O_NONBLOCK;
pub const O_RDONLY: u32 = linux_raw_sys::general::O_RDONLY;
pub const O_WRONLY: u32 = linux_raw_sys::general::O_WRONLY;
pub const O_RDWR: u32 = linux_raw_sys::general::O_RDWR;
const SETFL_MASK: u32 = O_APPEND | O_NONBLOCK;

/// An open-file description (module doc).
pub struct OpenFile {
    pub file: Arc<dyn File>,
    /// The current offset (leaf lock).
    offset: IrqSpinLock<u64>,
    /// Access mode and status flags.
    flags: AtomicU32,
    /// The canonical path of a tree directory (or file), for `openat` and
    /// `fchdir`; `None` for pipes and per-process files.
    pub path: Option<String>,
}

impl OpenFile {
    pub fn new(file: Arc<dyn File>, flags: u32, path: Option<String>) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            file,
            offset: IrqSpinLock::new(0),
            flags: AtomicU32::new(flags & (O_ACCMODE | SETFL_MASK)),
            path,
        })
    }

    /// Access mode and status flags (`F_GETFL`).
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Changes the flags `F_SETFL` may change (`O_APPEND`, `O_NONBLOCK`).
    pub fn set_status_flags(&self, flags: u32) {
        let keep = self.flags() & !SETFL_MASK;
        self.flags.store(keep | (flags & SETFL_MASK), Ordering::Relaxed);
    }

    pub fn readable(&self) -> bool {
        self.flags() & O_ACCMODE != O_WRONLY
    }

    pub fn writable(&self) -> bool {
        matches!(self.flags() & O_ACCMODE, O_WRONLY | O_RDWR)
    }

    fn nonblock(&self) -> bool {
        self.flags() & O_NONBLOCK != 0
    }

    /// `read`: at the offset, which moves by what was read.
    pub fn read(&self, buf: &mut IoBuf<'_>, len: usize) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        let offset = *self.offset.lock();
        let n = self.file.read(offset, buf, len, self.nonblock())?;
        if self.file.seekable() {
            *self.offset.lock() = offset + n as u64;
        }
        Ok(n)
    }

    /// `write`: at the offset (at the end with `O_APPEND`), which moves.
    pub fn write(&self, buf: &IoBuf<'_>, len: usize) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        let offset = if self.flags() & O_APPEND != 0 { self.file.stat().size } else { *self.offset.lock() };
        let n = self.file.write(offset, buf, len, self.nonblock())?;
        if self.file.seekable() {
            *self.offset.lock() = offset + n as u64;
        }
        Ok(n)
    }

    /// `pread64`: at `offset`, leaving the description's offset alone.
    pub fn pread(&self, buf: &mut IoBuf<'_>, len: usize, offset: u64) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if !self.file.seekable() {
            return Err(Errno::ESPIPE);
        }
        self.file.read(offset, buf, len, self.nonblock())
    }

    /// `pwrite64`: as [`OpenFile::pread`].
    pub fn pwrite(&self, buf: &IoBuf<'_>, len: usize, offset: u64) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if !self.file.seekable() {
            return Err(Errno::ESPIPE);
        }
        self.file.write(offset, buf, len, self.nonblock())
    }

    /// The offset now.
    pub fn offset(&self) -> u64 {
        *self.offset.lock()
    }

    /// `lseek`: `whence` 0 = `SEEK_SET`, 1 = `SEEK_CUR`, 2 = `SEEK_END`.
    pub fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        if !self.file.seekable() {
            return Err(Errno::ESPIPE);
        }
        let size = self.file.stat().size;
        let mut cur = self.offset.lock();
        let base = match whence {
            linux_raw_sys::general::SEEK_SET => 0,
            linux_raw_sys::general::SEEK_CUR => *cur,
            linux_raw_sys::general::SEEK_END => size,
            _ => return Err(Errno::EINVAL),
        };
        let new = (base as i64).checked_add(offset).filter(|n| *n >= 0).ok_or(Errno::EINVAL)?;
        *cur = new as u64;
        Ok(new as u64)
    }

    /// Sets the offset (`getdents64` moves it by entries).
    pub fn set_offset(&self, offset: u64) {
        *self.offset.lock() = offset;
    }
}
