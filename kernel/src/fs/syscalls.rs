//! The file system calls of the Linux ABI, as plain functions: each takes
//! the calling process's descriptor table (and current directory where a
//! path is involved) and the call's raw arguments as the registers held
//! them (`u64`; the function narrows them as Linux does: a descriptor is
//! the low 32 bits, signed), and returns the value for the return register
//! or the [`Errno`] whose negation goes there. `crate::proc` dispatches to
//! them by syscall number; the legacy x86_64-only calls (`open`, `stat`,
//! `lstat`, `access`, `pipe`, `dup2`) are here as the `*at` forms with
//! `AT_FDCWD`.
//!
//! User memory is read and written only with `crate::vm::uaccess`'s
//! copies: a bad pointer is `EFAULT`, never a kernel fault. Paths are read
//! up to their NUL, at most `PATH_MAX` bytes (`ENAMETOOLONG`), by
//! `uaccess::read_cstr` (a path that is not UTF-8 names nothing: `ENOENT`).
//!
//! `EPIPE` from a write is returned as is: the caller also sends `SIGPIPE`
//! (the signal is the process layer's business).

use crate::fs::abi;
use crate::fs::fdtable::{FdTable, MAX_FDS};
use crate::fs::file::{IoBuf, OpenFile, O_ACCMODE, O_NONBLOCK, O_RDONLY, O_WRONLY, S_IFDIR, S_IFMT, S_IFREG};
use crate::fs::path::{lookup, Cwd, Found, PATH_MAX};
use crate::fs::tree::NodeKind;
use crate::fs::{pipe, Errno};
use crate::vm::uaccess::{copy_from_user, copy_to_user, read_cstr};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use linux_raw_sys::general as g;

/// `AT_FDCWD` as the register holds it.
pub const AT_FDCWD: u64 = g::AT_FDCWD as i64 as u64;
/// The most `iovec`s one `readv`/`writev` takes (`UIO_MAXIOV`).
pub const UIO_MAXIOV: u64 = 1024;

fn fd_of(raw: u64) -> i32 {
    raw as u32 as i32
}

/// The canonical directory a `*at` call starts from.
fn base_dir(fds: &FdTable, cwd: &Cwd, dirfd: u64) -> Result<String, Errno> {
    if dirfd as u32 as i32 == g::AT_FDCWD {
        return Ok(cwd.get());
    }
    let file = fds.get(fd_of(dirfd))?;
    if file.file.stat().mode & S_IFMT != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    file.path.clone().ok_or(Errno::ENOTDIR)
}

/// Looks `name` up for a `*at` call: from the root when it is absolute,
/// else from `dirfd`'s directory (or `cwd` for `AT_FDCWD`); `follow`
/// follows a final symlink.
fn lookup_at(fds: &FdTable, cwd: &Cwd, dirfd: u64, name: &str, follow: bool) -> Result<Found, Errno> {
    let base = if name.starts_with('/') { String::new() } else { base_dir(fds, cwd, dirfd)? };
    lookup(&base, name, follow)
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat(fds: &FdTable, cwd: &Cwd, dirfd: u64, path: u64, flags: u64, _mode: u64) -> Result<u64, Errno> {
    let flags = flags as u32;
    let name = read_cstr(path, PATH_MAX)?;
    let found = match lookup_at(fds, cwd, dirfd, &name, flags & g::O_NOFOLLOW == 0) {
        Ok(f) => f,
        // The tree is read-only: nothing can be created.
        Err(Errno::ENOENT) if flags & g::O_CREAT != 0 => return Err(Errno::EROFS),
        Err(e) => return Err(e),
    };
    if flags & g::O_CREAT != 0 && flags & g::O_EXCL != 0 {
        return Err(Errno::EEXIST);
    }
    let (file, path) = match &found {
        Found::Node(node, canonical) => {
            if matches!(node.kind, NodeKind::Symlink(_)) {
                return Err(Errno::ELOOP); // O_NOFOLLOW on a symlink
            }
            let is_dir = node.is_dir();
            let writes = flags & O_ACCMODE != O_RDONLY || flags & g::O_TRUNC != 0;
            if is_dir && writes {
                return Err(Errno::EISDIR);
            }
            if writes && matches!(node.kind, NodeKind::Regular(_)) {
                return Err(Errno::EROFS);
            }
            (node.open()?, Some(canonical.clone()))
        }
        Found::Proc(f) => (f.clone(), None),
    };
    if flags & g::O_DIRECTORY != 0 && file.stat().mode & S_IFMT != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    let open = OpenFile::new(file, flags, path);
    Ok(fds.install(open, flags & g::O_CLOEXEC != 0)? as u64)
}

/// `open(path, flags, mode)` (x86_64).
pub fn open(fds: &FdTable, cwd: &Cwd, path: u64, flags: u64, mode: u64) -> Result<u64, Errno> {
    openat(fds, cwd, AT_FDCWD, path, flags, mode)
}

/// `close(fd)`.
pub fn close(fds: &FdTable, fd: u64) -> Result<u64, Errno> {
    fds.close(fd_of(fd)).map(|()| 0)
}

/// `read(fd, buf, count)`.
pub fn read(fds: &FdTable, fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    file.read(&mut IoBuf::User(buf), clamp_count(count)).map(|n| n as u64)
}

/// `write(fd, buf, count)`.
pub fn write(fds: &FdTable, fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    file.write(&IoBuf::User(buf), clamp_count(count)).map(|n| n as u64)
}

/// Linux caps one transfer at `MAX_RW_COUNT` (2 GiB less a page).
fn clamp_count(count: u64) -> usize {
    count.min(0x7fff_f000) as usize
}

/// The `iovec`s at user address `iov`.
fn read_iovecs(iov: u64, iovcnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if iovcnt > UIO_MAXIOV {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; iovcnt as usize * abi::IOVEC_SIZE];
    copy_from_user(&mut bytes, iov)?;
    let v: Vec<(u64, u64)> = bytes.chunks(abi::IOVEC_SIZE).map(abi::iovec_from).collect();
    if v.iter()
        .try_fold(0u64, |sum, (_, len)| sum.checked_add(*len).filter(|s| *s <= i64::MAX as u64))
        .is_none()
    {
        return Err(Errno::EINVAL);
    }
    Ok(v)
}

/// `readv`'s and `writev`'s loop: `each(base, len)` moves one buffer
/// (`len` clamped to what one call moves), buffer after buffer, stopping
/// at a short transfer. An error on the first buffer is the call's error;
/// a later one ends it with what was moved so far.
fn iovec_transfer(
    iov: u64,
    iovcnt: u64,
    mut each: impl FnMut(u64, usize) -> Result<usize, Errno>,
) -> Result<u64, Errno> {
    let mut total = 0u64;
    for (base, len) in read_iovecs(iov, iovcnt)? {
        match each(base, clamp_count(len)) {
            Ok(n) => {
                total += n as u64;
                if (n as u64) < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// `readv(fd, iov, iovcnt)`: buffer after buffer, stopping at a short read.
pub fn readv(fds: &FdTable, fd: u64, iov: u64, iovcnt: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    iovec_transfer(iov, iovcnt, |base, len| file.read(&mut IoBuf::User(base), len))
}

/// `writev(fd, iov, iovcnt)`: buffer after buffer, stopping at a short write.
pub fn writev(fds: &FdTable, fd: u64, iov: u64, iovcnt: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    iovec_transfer(iov, iovcnt, |base, len| file.write(&IoBuf::User(base), len))
}

/// `pread64(fd, buf, count, offset)`.
pub fn pread64(fds: &FdTable, fd: u64, buf: u64, count: u64, offset: u64) -> Result<u64, Errno> {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    fds.get(fd_of(fd))?.pread(&mut IoBuf::User(buf), clamp_count(count), offset).map(|n| n as u64)
}

/// `pwrite64(fd, buf, count, offset)`.
pub fn pwrite64(fds: &FdTable, fd: u64, buf: u64, count: u64, offset: u64) -> Result<u64, Errno> {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    fds.get(fd_of(fd))?.pwrite(&IoBuf::User(buf), clamp_count(count), offset).map(|n| n as u64)
}

/// `lseek(fd, offset, whence)`.
pub fn lseek(fds: &FdTable, fd: u64, offset: u64, whence: u64) -> Result<u64, Errno> {
    fds.get(fd_of(fd))?.seek(offset as i64, whence as u32)
}

/// `newfstatat(dirfd, path, statbuf, flags)` (`fstatat` on AArch64).
pub fn newfstatat(
    fds: &FdTable,
    cwd: &Cwd,
    dirfd: u64,
    path: u64,
    statbuf: u64,
    flags: u64,
) -> Result<u64, Errno> {
    let flags = flags as u32;
    let name = read_cstr(path, PATH_MAX)?;
    let st = if name.is_empty() && flags & g::AT_EMPTY_PATH != 0 {
        if dirfd as u32 as i32 == g::AT_FDCWD {
            lookup("/", &cwd.get(), true).map(|f| stat_of(&f))??
        } else {
            fds.get(fd_of(dirfd))?.file.stat()
        }
    } else {
        stat_of(&lookup_at(fds, cwd, dirfd, &name, flags & g::AT_SYMLINK_NOFOLLOW == 0)?)?
    };
    copy_to_user(statbuf, &abi::stat_bytes(&st))?;
    Ok(0)
}

fn stat_of(found: &Found) -> Result<crate::fs::Stat, Errno> {
    Ok(match found {
        Found::Node(node, _) => node.stat(),
        Found::Proc(f) => f.stat(),
    })
}

/// `stat(path, statbuf)` (x86_64).
pub fn stat(fds: &FdTable, cwd: &Cwd, path: u64, statbuf: u64) -> Result<u64, Errno> {
    newfstatat(fds, cwd, AT_FDCWD, path, statbuf, 0)
}

/// `lstat(path, statbuf)` (x86_64).
pub fn lstat(fds: &FdTable, cwd: &Cwd, path: u64, statbuf: u64) -> Result<u64, Errno> {
    newfstatat(fds, cwd, AT_FDCWD, path, statbuf, g::AT_SYMLINK_NOFOLLOW as u64)
}

/// `fstat(fd, statbuf)`.
pub fn fstat(fds: &FdTable, fd: u64, statbuf: u64) -> Result<u64, Errno> {
    let st = fds.get(fd_of(fd))?.file.stat();
    copy_to_user(statbuf, &abi::stat_bytes(&st))?;
    Ok(0)
}

/// `readlinkat(dirfd, path, buf, bufsiz)`: the target, not NUL-terminated,
/// cut at `bufsiz`.
pub fn readlinkat(
    fds: &FdTable,
    cwd: &Cwd,
    dirfd: u64,
    path: u64,
    buf: u64,
    bufsiz: u64,
) -> Result<u64, Errno> {
    if bufsiz as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    let name = read_cstr(path, PATH_MAX)?;
    let target = match lookup_at(fds, cwd, dirfd, &name, false)? {
        Found::Node(node, _) => match &node.kind {
            NodeKind::Symlink(t) => t.clone(),
            _ => return Err(Errno::EINVAL),
        },
        Found::Proc(f) => f.readlink().ok_or(Errno::EINVAL)?,
    };
    let n = target.len().min(bufsiz as u32 as usize);
    copy_to_user(buf, &target.as_bytes()[..n])?;
    Ok(n as u64)
}

/// `getdents64(fd, dirp, count)`: as many whole entries as fit, from the
/// description's offset (an entry index); 0 at the end.
pub fn getdents64(fds: &FdTable, fd: u64, dirp: u64, count: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    let entries = file.file.readdir()?;
    let mut index = file.offset() as usize;
    let mut out = Vec::new();
    while index < entries.len() {
        let rec = abi::dirent64_bytes(&entries[index], index as u64 + 1);
        if out.len() + rec.len() > count as usize {
            if out.is_empty() {
                return Err(Errno::EINVAL);
            }
            break;
        }
        out.extend_from_slice(&rec);
        index += 1;
    }
    copy_to_user(dirp, &out)?;
    file.set_offset(index as u64);
    Ok(out.len() as u64)
}

/// `ioctl(fd, cmd, arg)`: what the file answers (the console is a
/// terminal; everything else `ENOTTY`).
pub fn ioctl(fds: &FdTable, fd: u64, cmd: u64, arg: u64) -> Result<u64, Errno> {
    fds.get(fd_of(fd))?.file.ioctl(cmd as u32, arg)
}

/// `pipe2(pipefd, flags)`: `O_CLOEXEC` and `O_NONBLOCK` only.
pub fn pipe2(fds: &FdTable, pipefd: u64, flags: u64) -> Result<u64, Errno> {
    let flags = flags as u32;
    if flags & !(g::O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let (r, w) = pipe::new();
    let cloexec = flags & g::O_CLOEXEC != 0;
    let rfd = fds.install(OpenFile::new(r, O_RDONLY | (flags & O_NONBLOCK), None), cloexec)?;
    let wfd = match fds.install(OpenFile::new(w, O_WRONLY | (flags & O_NONBLOCK), None), cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = fds.close(rfd);
            return Err(e);
        }
    };
    let mut pair = [0u8; 8];
    pair[..4].copy_from_slice(&rfd.to_le_bytes());
    pair[4..].copy_from_slice(&wfd.to_le_bytes());
    if let Err(e) = copy_to_user(pipefd, &pair) {
        let _ = fds.close(rfd);
        let _ = fds.close(wfd);
        return Err(e.into());
    }
    Ok(0)
}

/// `pipe(pipefd)` (x86_64).
pub fn pipe(fds: &FdTable, pipefd: u64) -> Result<u64, Errno> {
    pipe2(fds, pipefd, 0)
}

/// `dup(fd)`: the lowest free descriptor, close-on-exec clear.
pub fn dup(fds: &FdTable, fd: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    Ok(fds.install(file, false)? as u64)
}

/// `dup3(oldfd, newfd, flags)`: `flags` is 0 or `O_CLOEXEC`; `oldfd ==
/// newfd` is `EINVAL`.
pub fn dup3(fds: &FdTable, oldfd: u64, newfd: u64, flags: u64) -> Result<u64, Errno> {
    if flags as u32 & !g::O_CLOEXEC != 0 || fd_of(oldfd) == fd_of(newfd) {
        return Err(Errno::EINVAL);
    }
    let file = fds.get(fd_of(oldfd))?;
    fds.install_at(fd_of(newfd), file, flags as u32 & g::O_CLOEXEC != 0)?;
    Ok(newfd as u32 as u64)
}

/// `dup2(oldfd, newfd)` (x86_64): as `dup3` but `oldfd == newfd` returns it.
pub fn dup2(fds: &FdTable, oldfd: u64, newfd: u64) -> Result<u64, Errno> {
    if fd_of(oldfd) == fd_of(newfd) {
        fds.get(fd_of(oldfd))?;
        return Ok(newfd as u32 as u64);
    }
    dup3(fds, oldfd, newfd, 0)
}

/// `fcntl(fd, cmd, arg)`: `F_DUPFD`, `F_DUPFD_CLOEXEC`, `F_GETFD`,
/// `F_SETFD`, `F_GETFL`, `F_SETFL`.
pub fn fcntl(fds: &FdTable, fd: u64, cmd: u64, arg: u64) -> Result<u64, Errno> {
    let fd = fd_of(fd);
    let file = fds.get(fd)?;
    match cmd as u32 {
        g::F_DUPFD | g::F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg as u32 as i32).map_err(|_| Errno::EINVAL)?;
            if min >= MAX_FDS {
                return Err(Errno::EINVAL);
            }
            Ok(fds.install_from(min, file, cmd as u32 == g::F_DUPFD_CLOEXEC)? as u64)
        }
        g::F_GETFD => Ok(if fds.cloexec(fd)? { g::FD_CLOEXEC as u64 } else { 0 }),
        g::F_SETFD => fds.set_cloexec(fd, arg as u32 & g::FD_CLOEXEC != 0).map(|()| 0),
        g::F_GETFL => Ok(file.flags() as u64),
        g::F_SETFL => {
            file.set_status_flags(arg as u32);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `faccessat(dirfd, path, mode, flags)` (and `faccessat2`): the caller is
/// root, so only existence, the tree being read-only (`W_OK` on a tree
/// file or directory: `EROFS`) and execute bits (`X_OK` on a file with
/// none: `EACCES`) can refuse.
pub fn faccessat(
    fds: &FdTable,
    cwd: &Cwd,
    dirfd: u64,
    path: u64,
    mode: u64,
    flags: u64,
) -> Result<u64, Errno> {
    let mode = mode as u32;
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let name = read_cstr(path, PATH_MAX)?;
    let found = lookup_at(fds, cwd, dirfd, &name, flags as u32 & g::AT_SYMLINK_NOFOLLOW == 0)?;
    let st = stat_of(&found)?;
    if mode & 2 != 0 {
        if let Found::Node(node, _) = &found {
            if matches!(node.kind, NodeKind::Regular(_) | NodeKind::Dir(_)) {
                return Err(Errno::EROFS);
            }
        }
    }
    if mode & 1 != 0 && st.mode & S_IFMT == S_IFREG && st.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

/// `access(path, mode)` (x86_64).
pub fn access(fds: &FdTable, cwd: &Cwd, path: u64, mode: u64) -> Result<u64, Errno> {
    faccessat(fds, cwd, AT_FDCWD, path, mode, 0)
}

/// `getcwd(buf, size)`: the path with its NUL; returns its length with the
/// NUL (the raw call's convention).
pub fn getcwd(cwd: &Cwd, buf: u64, size: u64) -> Result<u64, Errno> {
    let mut path = cwd.get().into_bytes();
    path.push(0);
    if (size as usize) < path.len() {
        return Err(Errno::ERANGE);
    }
    copy_to_user(buf, &path)?;
    Ok(path.len() as u64)
}

/// `chdir(path)`.
pub fn chdir(cwd: &Cwd, path: u64) -> Result<u64, Errno> {
    let name = read_cstr(path, PATH_MAX)?;
    match lookup(&cwd.get(), &name, true)? {
        Found::Node(node, canonical) if node.is_dir() => {
            cwd.set(canonical);
            Ok(0)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

/// `fchdir(fd)`.
pub fn fchdir(fds: &FdTable, cwd: &Cwd, fd: u64) -> Result<u64, Errno> {
    let file = fds.get(fd_of(fd))?;
    if file.file.stat().mode & S_IFMT != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    cwd.set(file.path.clone().ok_or(Errno::ENOTDIR)?);
    Ok(0)
}

/// Opens `path` for the kernel (`crate::proc`'s `execve` and the tests):
/// the file, following symlinks, from the root or `cwd`.
pub fn open_for_kernel(cwd: &Cwd, path: &str) -> Result<Arc<dyn crate::fs::File>, Errno> {
    lookup(&cwd.get(), path, true)?.open()
}

/// The whole content of the tree's regular file at `path` (for `execve`:
/// the archive's own bytes, no copy).
pub fn file_bytes(cwd: &Cwd, path: &str) -> Result<&'static [u8], Errno> {
    match lookup(&cwd.get(), path, true)? {
        Found::Node(node, _) => match node.kind {
            NodeKind::Regular(data) => Ok(data),
            NodeKind::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EACCES),
        },
        Found::Proc(_) => Err(Errno::EACCES),
    }
}
