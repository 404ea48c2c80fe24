//! In-guest tests of `crate::fs`: the tree built from a cpio archive the
//! test makes in memory, path lookup, the file system calls run by a task
//! in a user address space with user pointers, descriptors, pipes, the
//! console and `/dev/null`, raw disk transfers into pinned user pages,
//! the `/proc` and `/sys` files against the kernel's counters, and the
//! THP switch they set.

use crate::fs::file::{S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};
use crate::fs::path::{lookup, Found};
use crate::fs::syscalls as sys;
use crate::fs::tree::{self, Node, NodeKind};
use crate::fs::{Cwd, Errno, FdTable};
use crate::memory;
use crate::memory::paging::KernelTables;
use crate::tests::kit::*;
use crate::tests::{Test, TestEnv};
use crate::vm::space::{AddressSpace, Advice, USER_END};
use crate::vm::uaccess::{copy_from_user, copy_to_user};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::mem::offset_of;
use linux_raw_sys::general as g;
use mm::vma::VmaProt;
use mm::VirtAddr;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const HUGE: u64 = 2 << 20;

// ---------------------------------------------------------------- a cpio archive

/// One archive entry: inode, mode, link count, name, data.
type Entry = (u32, u32, u32, &'static str, &'static [u8]);

const HELLO: &[u8] = b"hello, world\n";

const ENTRIES: &[Entry] = &[
    (1, S_IFDIR | 0o755, 2, ".", b""),
    (2, S_IFDIR | 0o755, 2, "bin", b""),
    (3, S_IFREG | 0o755, 1, "bin/hello", HELLO),
    (4, S_IFLNK | 0o777, 1, "bin/sh", b"hello"),
    // No `etc` entry: made on the way.
    (5, S_IFREG | 0o644, 1, "./etc/passwd", b"root:x:0:0:root:/:/bin/sh\n"),
    (6, S_IFLNK | 0o777, 1, "lib", b"/usr/lib"),
    (7, S_IFREG | 0o644, 1, "usr/lib/libc.txt", b"libc"),
    (8, S_IFLNK | 0o777, 1, "loop", b"loop"),
    // A hard link pair: the data comes with the last one.
    (9, S_IFREG | 0o644, 2, "etc/hard1", b""),
    (9, S_IFREG | 0o644, 2, "etc/hard2", b"shared"),
    // A device node: left out.
    (10, S_IFCHR | 0o600, 1, "dev/ttyS0", b""),
    (0, 0, 1, "TRAILER!!!", b""),
];

const fn pad4(n: usize) -> usize {
    n.next_multiple_of(4)
}

/// The size of the `newc` archive of `entries`: per entry a 110-byte
/// header, the name and its NUL padded to 4, the data padded to 4.
const fn newc_len(entries: &[Entry]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < entries.len() {
        n += pad4(110 + entries[i].3.len() + 1) + pad4(entries[i].4.len());
        i += 1;
    }
    n
}

/// The `newc` archive of `entries`, made at compile time (a `static`:
/// the tree keeps the archive's bytes for good, as it does the
/// initramfs's, and a test must not grow the heap for good).
const fn newc<const N: usize>(entries: &[Entry]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < entries.len() {
        let (ino, mode, nlink, name, data) = entries[i];
        let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        let magic = b"070701";
        let mut k = 0;
        while k < 6 {
            out[at + k] = magic[k];
            k += 1;
        }
        at += 6;
        let mut f = 0;
        while f < fields.len() {
            let mut d = 0;
            while d < 8 {
                let nibble = (fields[f] >> (28 - 4 * d)) & 0xf;
                out[at + d] = if nibble < 10 { b'0' + nibble as u8 } else { b'a' + nibble as u8 - 10 };
                d += 1;
            }
            at += 8;
            f += 1;
        }
        let name = name.as_bytes();
        let mut k = 0;
        while k < name.len() {
            out[at + k] = name[k];
            k += 1;
        }
        at = pad4(at + name.len() + 1);
        let mut k = 0;
        while k < data.len() {
            out[at + k] = data[k];
            k += 1;
        }
        at = pad4(at + data.len());
        i += 1;
    }
    out
}

static ARCHIVE: [u8; newc_len(ENTRIES)] = newc(ENTRIES);

fn test_archive() -> &'static [u8] {
    &ARCHIVE
}

/// The test tree mounted as the root until dropped (then the one before).
struct Mounted(Option<Arc<Node>>);

impl Mounted {
    fn test_tree() -> Mounted {
        let (root, _) = tree::build(test_archive());
        Mounted(tree::mount_root(root))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let old = self.0.take().unwrap_or_else(|| tree::build(crate::bootinfo::initrd().unwrap_or(&[])).0);
        tree::mount_root(old);
    }
}

fn found_path(f: Result<Found, Errno>) -> Result<String, String> {
    match f {
        Ok(Found::Node(_, p)) => Ok(p),
        Ok(Found::Proc(_)) => Err("a /proc/self file".into()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn data_of(f: Result<Found, Errno>) -> Result<&'static [u8], String> {
    match f {
        Ok(Found::Node(n, _)) => match n.kind {
            NodeKind::Regular(d) => Ok(d),
            _ => Err("not a regular file".into()),
        },
        other => Err(format!("{:?}", found_path(other))),
    }
}

// ---------------------------------------------------------------- tree and lookup

fn tree_from_a_cpio_archive(_: &TestEnv<'_>) -> Result<(), String> {
    let (root, nr) = tree::build(test_archive());
    if nr != 10 {
        return Err(format!("{nr} entries taken; expected 10 (the device node left out)"));
    }
    let _m = Mounted(tree::mount_root(root));
    let cases: &[(&str, &str, bool, Result<&str, Errno>)] = &[
        ("/", "bin/hello", true, Ok("/bin/hello")),
        ("/bin", "hello", true, Ok("/bin/hello")),
        ("/bin", "../etc/./passwd", true, Ok("/etc/passwd")),
        ("/", "/../../bin/hello", true, Ok("/bin/hello")),
        // A symlink: followed as the last component or not.
        ("/", "/bin/sh", true, Ok("/bin/hello")),
        ("/", "/bin/sh", false, Ok("/bin/sh")),
        // An absolute symlink in the middle.
        ("/", "/lib/libc.txt", false, Ok("/usr/lib/libc.txt")),
        ("/etc", "../lib/", true, Ok("/usr/lib")),
        ("/", "/loop", true, Err(Errno::ELOOP)),
        ("/", "/bin/hello/x", true, Err(Errno::ENOTDIR)),
        ("/", "/etc/passwd/", true, Err(Errno::ENOTDIR)),
        ("/", "/nothing", true, Err(Errno::ENOENT)),
        ("/", "", true, Err(Errno::ENOENT)),
        ("/", "/dev/ttyS0", true, Err(Errno::ENOENT)),
        ("/", "/dev/null", true, Ok("/dev/null")),
        ("/", "/proc/meminfo", true, Ok("/proc/meminfo")),
        (
            "/",
            "/sys/kernel/mm/transparent_hugepage/enabled",
            true,
            Ok("/sys/kernel/mm/transparent_hugepage/enabled"),
        ),
        ("/", "/tmp", true, Ok("/tmp")),
    ];
    for (base, path, follow, want) in cases {
        let got = found_path(lookup(base, path, *follow));
        let want = want.map(String::from).map_err(|e| format!("{e:?}"));
        if got != want {
            return Err(format!("lookup({base:?}, {path:?}, follow {follow}): {got:?}, expected {want:?}"));
        }
    }
    for (path, want) in [("/bin/hello", HELLO), ("/etc/hard1", b"shared"), ("/etc/hard2", b"shared")] {
        let got = data_of(lookup("/", path, true))?;
        if got != want {
            return Err(format!("{path} holds {got:?}"));
        }
    }
    // Inside a proc directory, `self` goes to the hook (none registered
    // here unless `crate::proc` is in this kernel).
    if let Ok(Found::Node(..)) = lookup("/", "/proc/self/status", true) {
        return Err("/proc/self/status is a node of the tree".into());
    }
    Ok(())
}

fn the_boot_initramfs_is_the_root(_: &TestEnv<'_>) -> Result<(), String> {
    // Without one (a boot path that passes none) there is nothing to check.
    let Some(archive) = crate::bootinfo::initrd() else { return Ok(()) };
    let mut nr = 0;
    for entry in cpio_reader::iter_files(archive) {
        let name = entry.name().trim_start_matches("./").trim_start_matches('/');
        let mode = entry.mode().bits();
        let path = format!("/{name}");
        let kind = mode & S_IFMT;
        if name.is_empty() || name == "." || !matches!(kind, S_IFDIR | S_IFREG | S_IFLNK) {
            continue;
        }
        let node = match lookup("/", &path, false) {
            Ok(Found::Node(n, _)) => n,
            Ok(Found::Proc(_)) => continue, // under /proc/<number>: the process layer's
            Err(e) => return Err(format!("{path} of the archive: {e:?}")),
        };
        let same = match (&node.kind, kind) {
            (NodeKind::Dir(_), S_IFDIR) => true,
            (NodeKind::Regular(d), S_IFREG) => d.len() == entry.file().len() || entry.nlink() > 1,
            (NodeKind::Symlink(t), S_IFLNK) => t.as_bytes() == entry.file(),
            // A synthetic file of the same name wins (`/dev/console`).
            (NodeKind::Special(_), _) => true,
            _ => false,
        };
        if !same {
            return Err(format!("{path}: the tree's node differs from the archive's entry (mode {mode:o})"));
        }
        nr += 1;
    }
    if nr == 0 {
        return Err(format!("an initramfs of {} bytes with no entry the tree shows", archive.len()));
    }
    Ok(())
}

// ---------------------------------------------------------------- system calls from a user task

/// A user address space with `BUF_PAGES` of buffer, and the process state
/// the calls take.
struct Proc {
    space: Arc<AddressSpace>,
    buf: u64,
    fds: Arc<FdTable>,
    cwd: Arc<Cwd>,
}

const BUF_PAGES: u64 = 64;

impl Proc {
    fn new() -> Result<Proc, String> {
        let space = AddressSpace::new()?;
        let buf = space.mmap(BUF_PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
        Ok(Proc { space, buf, fds: Arc::new(FdTable::new()), cwd: Arc::new(Cwd::new()) })
    }

    /// Runs `f(fds, cwd, buf)` in a task of the space.
    fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&FdTable, &Cwd, u64) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<T, String> {
        let (fds, cwd, buf) = (self.fds.clone(), self.cwd.clone(), self.buf);
        self.space.spawn(None, "fs test", move || f(&fds, &cwd, buf))?.join()?
    }
}

/// Puts `s` and a NUL at user address `at`; returns `at`.
fn put_str(at: u64, s: &str) -> Result<u64, String> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    copy_to_user(at, &bytes).map_err(|e| format!("{e:?}"))?;
    Ok(at)
}

fn get(at: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; len];
    copy_from_user(&mut v, at).map_err(|e| format!("{e:?}"))?;
    Ok(v)
}

fn ok(what: &str, r: Result<u64, Errno>) -> Result<u64, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

fn want_err(what: &str, r: Result<u64, Errno>, want: Errno) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: {other:?}, expected {want:?}")),
    }
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8]))
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or([0; 4]))
}

const O_RDONLY: u64 = g::O_RDONLY as u64;
const O_WRONLY: u64 = g::O_WRONLY as u64;
const O_RDWR: u64 = g::O_RDWR as u64;
const O_CLOEXEC: u64 = g::O_CLOEXEC as u64;
const FDCWD: u64 = sys::AT_FDCWD;

fn open_read_seek_stat_and_list(_: &TestEnv<'_>) -> Result<(), String> {
    let _m = Mounted::test_tree();
    let p = Proc::new()?;
    p.run(|fds, cwd, buf| {
        let path = put_str(buf, "/bin/sh")?;
        let data = buf + 4096;
        let fd = ok("openat /bin/sh", sys::openat(fds, cwd, FDCWD, path, O_RDONLY | O_CLOEXEC, 0))?;
        // Read in two pieces, then at the end: 0.
        let n = ok("read", sys::read(fds, fd, data, 5))?;
        let m = ok("read", sys::read(fds, fd, data + 5, 100))?;
        let end = ok("read at the end", sys::read(fds, fd, data, 100))?;
        if (n, m, end) != (5, HELLO.len() as u64 - 5, 0) || get(data, HELLO.len())? != HELLO {
            return Err(format!("reads gave {n}, {m}, {end}: {:?}", get(data, HELLO.len())?));
        }
        // lseek and pread.
        if ok("lseek", sys::lseek(fds, fd, 7, g::SEEK_SET as u64))? != 7
            || ok("pread", sys::pread64(fds, fd, data, 5, 0))? != 5
            || ok("read", sys::read(fds, fd, data + 16, 5))? != 5
            || get(data, 5)? != b"hello"
            || get(data + 16, 5)? != b"world"
        {
            return Err("lseek/pread read the wrong bytes".into());
        }
        if ok("SEEK_END", sys::lseek(fds, fd, (-1i64) as u64, g::SEEK_END as u64))? != HELLO.len() as u64 - 1
        {
            return Err("SEEK_END is not at the size".into());
        }
        want_err("lseek before 0", sys::lseek(fds, fd, (-100i64) as u64, g::SEEK_CUR as u64), Errno::EINVAL)?;
        // fstat at the arch's layout; the file followed through the link.
        let st = data + 8192;
        ok("fstat", sys::fstat(fds, fd, st))?;
        let bytes = get(st, core::mem::size_of::<g::stat>())?;
        let (mode, size) =
            (u32_at(&bytes, offset_of!(g::stat, st_mode)), u64_at(&bytes, offset_of!(g::stat, st_size)));
        if (mode, size) != (S_IFREG | 0o755, HELLO.len() as u64) {
            return Err(format!("fstat: mode {mode:o} size {size}"));
        }
        // lstat of the link itself, readlink.
        ok("newfstatat nofollow", sys::newfstatat(fds, cwd, FDCWD, path, st, g::AT_SYMLINK_NOFOLLOW as u64))?;
        let mode = u32_at(&get(st, 144)?, offset_of!(g::stat, st_mode));
        let n = ok("readlinkat", sys::readlinkat(fds, cwd, FDCWD, path, data, 64))?;
        if mode & S_IFMT != S_IFLNK || get(data, n as usize)? != b"hello" {
            return Err(format!("lstat mode {mode:o}, readlink {:?}", get(data, n as usize)?));
        }
        want_err(
            "readlink of a file",
            sys::readlinkat(fds, cwd, FDCWD, put_str(buf, "/bin/hello")?, data, 64),
            Errno::EINVAL,
        )?;
        // Writes to the read-only tree; creating.
        want_err("write to a read-only descriptor", sys::write(fds, fd, data, 1), Errno::EBADF)?;
        want_err(
            "open for writing",
            sys::openat(fds, cwd, FDCWD, put_str(buf, "/etc/passwd")?, O_WRONLY, 0),
            Errno::EROFS,
        )?;
        let creat = (g::O_CREAT | g::O_WRONLY) as u64;
        want_err(
            "O_CREAT",
            sys::openat(fds, cwd, FDCWD, put_str(buf, "/tmp/new")?, creat, 0o644),
            Errno::EROFS,
        )?;
        let link = put_str(buf, "/bin/sh")?;
        want_err("O_NOFOLLOW", sys::openat(fds, cwd, FDCWD, link, g::O_NOFOLLOW as u64, 0), Errno::ELOOP)?;
        want_err(
            "O_DIRECTORY on a file",
            sys::openat(fds, cwd, FDCWD, put_str(buf, "/bin/hello")?, g::O_DIRECTORY as u64, 0),
            Errno::ENOTDIR,
        )?;
        want_err(
            "missing",
            sys::openat(fds, cwd, FDCWD, put_str(buf, "/bin/nothing")?, 0, 0),
            Errno::ENOENT,
        )?;
        // A pointer outside the user half: EFAULT, no fault.
        want_err(
            "path in the kernel half",
            sys::openat(fds, cwd, FDCWD, USER_END + 4096, 0, 0),
            Errno::EFAULT,
        )?;
        want_err("read into the kernel half", sys::read(fds, fd, USER_END, 4), Errno::EFAULT)?;
        ok("close", sys::close(fds, fd))?;
        want_err("close twice", sys::close(fds, fd), Errno::EBADF)?;
        // getdents64 on /etc in a buffer that fits two records at a time.
        let dfd =
            ok("open /etc", sys::openat(fds, cwd, FDCWD, put_str(buf, "/etc")?, g::O_DIRECTORY as u64, 0))?;
        let mut names = Vec::new();
        loop {
            let n = ok("getdents64", sys::getdents64(fds, dfd, data, 64))? as usize;
            if n == 0 {
                break;
            }
            let recs = get(data, n)?;
            let mut at = 0;
            while at < n {
                let reclen = u16::from_le_bytes([recs[at + 16], recs[at + 17]]) as usize;
                let name = &recs[at + 19..at + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                names.push((String::from_utf8_lossy(name).to_string(), recs[at + 18]));
                at += reclen;
            }
        }
        let want = [(".", 4u8), ("..", 4), ("hard1", 8), ("hard2", 8), ("passwd", 8)];
        if names.iter().map(|(n, t)| (n.as_str(), *t)).collect::<Vec<_>>() != want {
            return Err(format!("getdents64 listed {names:?}"));
        }
        ok("rewind", sys::lseek(fds, dfd, 0, g::SEEK_SET as u64))?;
        want_err("getdents64 into too small a buffer", sys::getdents64(fds, dfd, data, 8), Errno::EINVAL)?;
        if ok("getdents64 after the rewind", sys::getdents64(fds, dfd, data, 4096))? == 0 {
            return Err("a rewound directory lists nothing".into());
        }
        // openat relative to the directory; chdir, getcwd, access.
        let pfd = ok("openat from /etc", sys::openat(fds, cwd, dfd, put_str(buf, "passwd")?, 0, 0))?;
        ok("close", sys::close(fds, pfd))?;
        ok("chdir", sys::chdir(cwd, put_str(buf, "/lib")?))?;
        let n = ok("getcwd", sys::getcwd(cwd, data, 64))?;
        if get(data, n as usize)? != b"/usr/lib\0" {
            return Err(format!("getcwd after chdir /lib: {:?}", get(data, n as usize)?));
        }
        want_err("getcwd too small", sys::getcwd(cwd, data, 4), Errno::ERANGE)?;
        ok("access relative", sys::faccessat(fds, cwd, FDCWD, put_str(buf, "libc.txt")?, 4, 0))?;
        want_err("W_OK", sys::faccessat(fds, cwd, FDCWD, put_str(buf, "libc.txt")?, 2, 0), Errno::EROFS)?;
        want_err("X_OK", sys::faccessat(fds, cwd, FDCWD, put_str(buf, "libc.txt")?, 1, 0), Errno::EACCES)?;
        ok("X_OK", sys::faccessat(fds, cwd, FDCWD, put_str(buf, "/bin/sh")?, 1, 0))?;
        want_err("chdir to a file", sys::chdir(cwd, put_str(buf, "/bin/hello")?), Errno::ENOTDIR)?;
        Ok(())
    })
}

fn descriptors_dup_cloexec_and_fork_copies(_: &TestEnv<'_>) -> Result<(), String> {
    let _m = Mounted::test_tree();
    let p = Proc::new()?;
    p.run(|fds, cwd, buf| {
        let data = buf + 4096;
        let path = put_str(buf, "/bin/hello")?;
        let a = ok("open", sys::openat(fds, cwd, FDCWD, path, O_CLOEXEC, 0))?;
        let b = ok("dup", sys::dup(fds, a))?;
        let c = ok("F_DUPFD_CLOEXEC", sys::fcntl(fds, a, g::F_DUPFD_CLOEXEC as u64, 10))?;
        let d = ok("dup3", sys::dup3(fds, a, 20, O_CLOEXEC))?;
        if (a, b, c, d) != (0, 1, 10, 20) {
            return Err(format!("descriptors {a} {b} {c} {d}"));
        }
        let bits: Result<Vec<u64>, _> =
            [a, b, c, d].iter().map(|&fd| sys::fcntl(fds, fd, g::F_GETFD as u64, 0)).collect();
        if bits.map_err(|e| format!("{e:?}"))? != [1, 0, 1, 1] {
            return Err("close-on-exec bits wrong after dup/dup3/F_DUPFD_CLOEXEC".into());
        }
        want_err("dup3 onto itself", sys::dup3(fds, a, a, 0), Errno::EINVAL)?;
        want_err("dup of a closed fd", sys::dup(fds, 5), Errno::EBADF)?;
        // Duplicates share the offset.
        ok("read", sys::read(fds, b, data, 7))?;
        if ok("lseek", sys::lseek(fds, a, 0, g::SEEK_CUR as u64))? != 7 {
            return Err("a dup does not share the offset".into());
        }
        // A fork's copy shares descriptions; its closes are its own.
        let child = fds.fork_copy();
        ok("read in the child", sys::read(&child, c, data, 2))?;
        if ok("lseek", sys::lseek(fds, a, 0, g::SEEK_CUR as u64))? != 9 {
            return Err("a fork copy does not share the offset".into());
        }
        ok("close in the child", sys::close(&child, b))?;
        ok("the parent's is open", sys::fcntl(fds, b, g::F_GETFD as u64, 0))?;
        // exec closes exactly the marked ones.
        ok("F_SETFD", sys::fcntl(fds, b, g::F_SETFD as u64, g::FD_CLOEXEC as u64))?;
        ok("F_SETFD", sys::fcntl(fds, c, g::F_SETFD as u64, 0))?;
        fds.close_on_exec();
        if fds.open_fds() != [10] {
            return Err(format!("after exec: open {:?}, expected [10]", fds.open_fds()));
        }
        if child.open_fds() != [0, 10, 20] {
            return Err(format!("the child's table changed: {:?}", child.open_fds()));
        }
        // F_GETFL / F_SETFL.
        let fl = ok("F_GETFL", sys::fcntl(fds, c, g::F_GETFL as u64, 0))?;
        ok("F_SETFL", sys::fcntl(fds, c, g::F_SETFL as u64, (g::O_NONBLOCK | g::O_WRONLY) as u64))?;
        let fl2 = ok("F_GETFL", sys::fcntl(fds, c, g::F_GETFL as u64, 0))?;
        if fl != O_RDONLY || fl2 != g::O_NONBLOCK as u64 {
            return Err(format!("F_GETFL {fl:#o} then {fl2:#o} (the access mode must not change)"));
        }
        // The table's limit.
        let mut n = 1;
        while sys::dup(fds, c).is_ok() {
            n += 1;
        }
        want_err("one too many", sys::dup(fds, c), Errno::EMFILE)?;
        if n != crate::fs::fdtable::MAX_FDS {
            return Err(format!("{n} descriptors fit; expected {}", crate::fs::fdtable::MAX_FDS));
        }
        fds.close_all();
        child.close_all();
        Ok(())
    })
}

fn pipes_carry_data_block_and_end(_: &TestEnv<'_>) -> Result<(), String> {
    const BYTES: usize = 200_000;
    let p = Proc::new()?;
    let (rfd, wfd) = p.run(|fds, _, buf| {
        ok("pipe2", sys::pipe2(fds, buf, 0))?;
        let b = get(buf, 8)?;
        Ok((u32_at(&b, 0) as u64, u32_at(&b, 4) as u64))
    })?;
    // The writer: one write of more than the pipe holds, then close.
    let (fds, buf) = (p.fds.clone(), p.buf);
    let writer = p.space.spawn(None, "pipe writer", move || -> Result<u64, String> {
        let src = buf + 8192;
        let pattern: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        while at < BYTES {
            let n = (BYTES - at).min(64 * 4096 - 8192 - 4096);
            copy_to_user(src, &pattern[at..at + n]).map_err(|e| format!("{e:?}"))?;
            let w = ok("write", sys::write(&fds, wfd, src, n as u64))?;
            at += w as usize;
        }
        ok("close", sys::close(&fds, wfd))?;
        Ok(at as u64)
    })?;
    let got = p.run(move |fds, _, buf| {
        let dst = buf + 4096;
        let mut total = 0usize;
        loop {
            let n = ok("read", sys::read(fds, rfd, dst, 4096))? as usize;
            if n == 0 {
                break;
            }
            let bytes = get(dst, n)?;
            if let Some(i) = bytes.iter().enumerate().position(|(i, &b)| b != ((total + i) % 251) as u8) {
                return Err(format!("byte {} of the stream is wrong", total + i));
            }
            total += n;
        }
        Ok(total)
    })?;
    let wrote = writer.join()??;
    if (got, wrote) != (BYTES, BYTES as u64) {
        return Err(format!("wrote {wrote}, read {got} before EOF"));
    }
    p.run(move |fds, _, buf| {
        ok("close", sys::close(fds, rfd))?;
        // No reader: EPIPE. Non-blocking and empty: EAGAIN.
        ok("pipe2", sys::pipe2(fds, buf, (g::O_NONBLOCK | g::O_CLOEXEC) as u64))?;
        let b = get(buf, 8)?;
        let (r, w) = (u32_at(&b, 0) as u64, u32_at(&b, 4) as u64);
        want_err("read of an empty non-blocking pipe", sys::read(fds, r, buf + 64, 1), Errno::EAGAIN)?;
        want_err("lseek on a pipe", sys::lseek(fds, r, 0, 0), Errno::ESPIPE)?;
        want_err("write to the read end", sys::write(fds, r, buf, 1), Errno::EBADF)?;
        let st = buf + 4096;
        ok("fstat", sys::fstat(fds, w, st))?;
        if u32_at(&get(st, 144)?, offset_of!(g::stat, st_mode)) & S_IFMT != S_IFIFO {
            return Err("a pipe is not S_IFIFO".into());
        }
        ok("close the read end", sys::close(fds, r))?;
        want_err("write with no reader", sys::write(fds, w, buf, 1), Errno::EPIPE)?;
        want_err("pipe2 with a bad flag", sys::pipe2(fds, buf, g::O_APPEND as u64), Errno::EINVAL)?;
        fds.close_all();
        Ok(())
    })
}

fn console_and_null(_: &TestEnv<'_>) -> Result<(), String> {
    let p = Proc::new()?;
    p.run(|fds, cwd, buf| {
        let data = buf + 4096;
        let null = ok("open /dev/null", sys::openat(fds, cwd, FDCWD, put_str(buf, "/dev/null")?, O_RDWR, 0))?;
        let con =
            ok("open /dev/console", sys::openat(fds, cwd, FDCWD, put_str(buf, "/dev/console")?, O_RDWR, 0))?;
        if ok("write /dev/null", sys::write(fds, null, data, 3000))? != 3000
            || ok("read /dev/null", sys::read(fds, null, data, 10))? != 0
            || ok("read /dev/console", sys::read(fds, con, data, 10))? != 0
        {
            return Err("/dev/null or /dev/console transfers are wrong".into());
        }
        let line = b"fs test: a line written through /dev/console\n";
        copy_to_user(data, line).map_err(|e| format!("{e:?}"))?;
        // Through writev: two pieces.
        let iov = buf + 8192;
        let mut v = Vec::new();
        for (base, len) in [(data, 8u64), (data + 8, line.len() as u64 - 8)] {
            v.extend_from_slice(&base.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
        }
        copy_to_user(iov, &v).map_err(|e| format!("{e:?}"))?;
        if ok("writev", sys::writev(fds, con, iov, 2))? != line.len() as u64 {
            return Err("writev to the console was short".into());
        }
        // A terminal for TCGETS, not /dev/null.
        let t = buf + 12288;
        ok("TCGETS on the console", sys::ioctl(fds, con, linux_raw_sys::ioctl::TCGETS as u64, t))?;
        let lflag = u32_at(&get(t, 16)?, offset_of!(g::termios, c_lflag));
        if lflag & g::ICANON == 0 {
            return Err(format!("the console's c_lflag {lflag:#x} is not cooked"));
        }
        want_err(
            "TCGETS on /dev/null",
            sys::ioctl(fds, null, linux_raw_sys::ioctl::TCGETS as u64, t),
            Errno::ENOTTY,
        )?;
        let st = buf + 16384;
        ok("fstat", sys::fstat(fds, null, st))?;
        let b = get(st, 144)?;
        let (mode, rdev) =
            (u32_at(&b, offset_of!(g::stat, st_mode)), u64_at(&b, offset_of!(g::stat, st_rdev)));
        if (mode & S_IFMT, rdev) != (S_IFCHR, crate::fs::file::makedev(1, 3)) {
            return Err(format!("/dev/null: mode {mode:o}, rdev {rdev:#x}"));
        }
        fds.close_all();
        Ok(())
    })
}

fn raw_disk_transfers_pin_the_users_pages(_: &TestEnv<'_>) -> Result<(), String> {
    const DISK_OFFSET: u64 = 1536 * 4096;
    let disk = scratch_disk()?;
    if disk.capacity_pages() < 1600 {
        return Err(format!("{} has {} pages; the test needs 1600", disk.name(), disk.capacity_pages()));
    }
    let dev = format!("/dev/{}", disk.name());
    let p = Proc::new()?;
    // 3 pages + 1 KiB from a 512-aligned address inside a page: the parts
    // of five pages, none whole at the start.
    const LEN: usize = 3 * 4096 + 1024;
    let src = p.buf + 8 * 4096 + 1536;
    let pattern: Vec<u8> = (0..LEN).map(|i| (i * 7 % 253) as u8 ^ 0x5a).collect();
    let pat = pattern.clone();
    let size = disk.capacity_pages() * 4096;
    let fd = p.run(move |fds, cwd, buf| {
        let fd = ok("open", sys::openat(fds, cwd, FDCWD, put_str(buf, &dev)?, O_RDWR, 0))?;
        copy_to_user(src, &pat).map_err(|e| format!("{e:?}"))?;
        if ok("pwrite", sys::pwrite64(fds, fd, src, LEN as u64, DISK_OFFSET + 512))? != LEN as u64 {
            return Err("short write".into());
        }
        let dst = buf + 24 * 4096 + 512;
        if ok("pread", sys::pread64(fds, fd, dst, LEN as u64, DISK_OFFSET + 512))? != LEN as u64 {
            return Err("short read".into());
        }
        if get(dst, LEN)? != pat {
            return Err("read back differs from what was written".into());
        }
        // O_DIRECT's rules.
        want_err("unaligned offset", sys::pread64(fds, fd, dst, 512, DISK_OFFSET + 1), Errno::EINVAL)?;
        want_err("unaligned length", sys::pread64(fds, fd, dst, 100, DISK_OFFSET), Errno::EINVAL)?;
        want_err("unaligned buffer", sys::pread64(fds, fd, dst + 8, 512, DISK_OFFSET), Errno::EINVAL)?;
        if ok("read at the end", sys::pread64(fds, fd, dst, 512, size))? != 0 {
            return Err("a read at the end of the disk is not end of file".into());
        }
        want_err("a write at the end", sys::pwrite64(fds, fd, dst, 512, size), Errno::ENOSPC)?;
        want_err(
            "a buffer in the kernel half",
            sys::pread64(fds, fd, USER_END - 512, 1024, DISK_OFFSET),
            Errno::EFAULT,
        )?;
        Ok(fd)
    })?;
    // The device wrote what the process wrote: check with the kernel's
    // own page read.
    let frames = memory::alloc_frames(1).map_err(|e| format!("{e:?}"))?;
    // SAFETY: two frames of our own, freed below, touched by nothing else.
    let r = unsafe { disk.read_pages(DISK_OFFSET / 4096, frames, 2) };
    // SAFETY: the first 8 KiB of our frames, read after the transfer.
    let on_disk =
        unsafe { core::slice::from_raw_parts(memory::phys_to_virt(frames).as_u64() as *const u8, 8192) }
            .to_vec();
    memory::free_frames(frames, 1);
    r.map_err(|e| e.to_string())?;
    if on_disk[512..8192] != pattern[..8192 - 512] {
        return Err("the disk does not hold the bytes at the offset written".into());
    }
    // No pin is left behind, and a read into a page shared with a fork
    // child lands in the parent's page only (the read pins for writing,
    // which breaks COW first).
    let va = p.buf + 8 * 4096;
    let pins = pin_count(&p.space, va)?;
    if pins != 0 {
        return Err(format!("a page of the buffer still has {pins} pins"));
    }
    let dst = p.buf + 40 * 4096;
    p.run(move |_, _, _| copy_to_user(dst, &[0xeeu8; 4096]).map_err(|e| format!("{e:?}")))?;
    let child = p.space.fork()?;
    p.run(move |fds, _, _| {
        ok("pread into a COW-shared page", sys::pread64(fds, fd, dst, 4096, DISK_OFFSET + 512))
    })?;
    let parent_sees = p.run(move |_, _, _| get(dst, 16))?;
    let child_sees = child.spawn(None, "fs child", move || get(dst, 16))?.join()??;
    if parent_sees != pattern[..16] || child_sees != [0xee; 16] {
        return Err(format!("after a read into a COW page: parent {parent_sees:x?}, child {child_sees:x?}"));
    }
    p.fds.close_all();
    Ok(())
}

/// The pins on the folio mapped at `va` of `space`.
fn pin_count(space: &AddressSpace, va: u64) -> Result<i32, String> {
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    let pa = inner.table.translate(&KernelTables, VirtAddr::new(va)).ok_or(format!("{va:#x} not mapped"))?;
    let folio = mm::folio::folio_of(memory::frame_allocator().memmap(), pa.pfn()).ok_or("no folio")?;
    Ok(folio.pincount() as i32)
}

/// Reads the whole file `path` through the system calls.
fn read_file(p: &Proc, path: &'static str) -> Result<String, String> {
    p.run(move |fds, cwd, buf| {
        let fd = ok(path, sys::openat(fds, cwd, FDCWD, put_str(buf, path)?, 0, 0))?;
        let mut out = Vec::new();
        loop {
            let n = ok("read", sys::read(fds, fd, buf + 4096, 1000))? as usize;
            if n == 0 {
                break;
            }
            out.extend(get(buf + 4096, n)?);
        }
        ok("close", sys::close(fds, fd))?;
        String::from_utf8(out).map_err(|_| format!("{path} is not text"))
    })
}

fn field(text: &str, name: &str) -> Result<u64, String> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).ok_or(format!("no {name}"))?;
    line[name.len() + 1..]
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {line:?}"))
}

fn proc_files_show_the_kernels_counters(_: &TestEnv<'_>) -> Result<(), String> {
    let p = Proc::new()?;
    let frames = memory::frame_allocator();
    let meminfo = read_file(&p, "/proc/meminfo")?;
    for name in [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapCached",
        "Active",
        "Inactive",
        "AnonPages",
        "AnonHugePages",
        "SwapTotal",
        "SwapFree",
        "PageTables",
    ] {
        field(&meminfo, name)?;
    }
    if field(&meminfo, "MemTotal")? != frames.managed_pages() * 4 {
        return Err(format!(
            "MemTotal {} kB, the allocator manages {} pages",
            field(&meminfo, "MemTotal")?,
            frames.managed_pages()
        ));
    }
    let (swap_free, swap_total) = crate::vm::swap::totals();
    if field(&meminfo, "SwapTotal")? != swap_total * 4
        || field(&meminfo, "SwapFree")?.abs_diff(swap_free * 4) > 4096
    {
        return Err(format!("swap fields disagree with the areas ({swap_free} of {swap_total} free)"));
    }
    // A THP mapped now shows in AnonHugePages.
    let before = field(&meminfo, "AnonHugePages")?;
    let base = p.space.mmap(HUGE, HUGE, RW).map_err(|e| format!("{e:?}"))?;
    p.space.madvise(base, HUGE, Advice::HugePage).map_err(|e| format!("{e:?}"))?;
    let b = base.as_u64();
    p.run(move |_, _, _| copy_to_user(b, &[1]).map_err(|e| format!("{e:?}")))?;
    let huge = p.space.nr_thp_faults() == 1;
    let after = field(&read_file(&p, "/proc/meminfo")?, "AnonHugePages")?;
    if huge && after < before + 2048 {
        return Err(format!("AnonHugePages {before} -> {after} kB with a THP mapped"));
    }
    p.space.munmap(base, HUGE).map_err(|e| format!("{e:?}"))?;
    let vmstat = read_file(&p, "/proc/vmstat")?;
    for name in [
        "nr_free_pages",
        "nr_writeback",
        "pswpin",
        "pswpout",
        "pgmigrate_success",
        "compact_stall",
        "thp_fault_alloc",
    ] {
        if !vmstat
            .lines()
            .any(|l| l.split_once(' ').is_some_and(|(n, v)| n == name && v.parse::<u64>().is_ok()))
        {
            return Err(format!("/proc/vmstat has no `{name} N` line"));
        }
    }
    let online = read_file(&p, "/sys/devices/system/cpu/online")?;
    let n = crate::task::sched::nr_cpus_online();
    let want = if n == 1 { "0\n".to_string() } else { format!("0-{}\n", n - 1) };
    if online != want {
        return Err(format!("cpu/online reads {online:?}, expected {want:?}"));
    }
    let cpuinfo = read_file(&p, "/proc/cpuinfo")?;
    if cpuinfo.lines().filter(|l| l.starts_with("processor")).count() != n {
        return Err(format!("/proc/cpuinfo lists the wrong number of CPUs:\n{cpuinfo}"));
    }
    Ok(())
}

fn thp_enabled_switch_decides_huge_faults(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::vm::thp_policy;
    let p = Proc::new()?;
    const ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    const DEFRAG: &str = "/sys/kernel/mm/transparent_hugepage/defrag";
    if read_file(&p, ENABLED)? != "[always] madvise never\n"
        || read_file(&p, DEFRAG)? != "always [madvise] never\n"
    {
        return Err(format!("defaults read {:?} and {:?}", read_file(&p, ENABLED)?, read_file(&p, DEFRAG)?));
    }
    let set = |word: &'static str, path: &'static str| {
        p.run(move |fds, cwd, buf| {
            let fd = ok("open", sys::openat(fds, cwd, FDCWD, put_str(buf, path)?, O_WRONLY, 0))?;
            copy_to_user(buf + 4096, word.as_bytes()).map_err(|e| format!("{e:?}"))?;
            let r = sys::write(fds, fd, buf + 4096, word.len() as u64);
            ok("close", sys::close(fds, fd))?;
            Ok(r)
        })
    };
    // One 2 MiB area with no advice, one with MADV_HUGEPAGE; a write to
    // each; how many THP faults that made.
    let fault_both = |p: &Proc| -> Result<(bool, bool), String> {
        let plain = p.space.mmap(HUGE, HUGE, RW).map_err(|e| format!("{e:?}"))?;
        let advised = p.space.mmap(HUGE, HUGE, RW).map_err(|e| format!("{e:?}"))?;
        p.space.madvise(advised, HUGE, Advice::HugePage).map_err(|e| format!("{e:?}"))?;
        let mut got = [false; 2];
        for (i, va) in [plain, advised].into_iter().enumerate() {
            let before = p.space.nr_thp_faults() + p.space.nr_thp_fallbacks();
            let a = va.as_u64();
            p.run(move |_, _, _| copy_to_user(a, &[1]).map_err(|e| format!("{e:?}")))?;
            got[i] = p.space.nr_thp_faults() + p.space.nr_thp_fallbacks() > before;
        }
        p.space.munmap(plain, HUGE).map_err(|e| format!("{e:?}"))?;
        p.space.munmap(advised, HUGE).map_err(|e| format!("{e:?}"))?;
        Ok((got[0], got[1]))
    };
    let result = (|| {
        for (word, want) in
            [("never\n", (false, false)), ("madvise", (false, true)), ("always", (true, true))]
        {
            set(word, ENABLED)?.map_err(|e| format!("writing {word:?}: {e:?}"))?;
            // A space of its own each time: an unmapped area's page tables
            // stay, and a block with a PTE table never gets a PMD leaf.
            let got = fault_both(&Proc::new()?)?;
            if got != want {
                return Err(format!(
                    "with enabled={word:?}: THP tried in (plain, advised) = {got:?}, expected {want:?}"
                ));
            }
        }
        want_err("an unknown word", set("sometimes", ENABLED)?, Errno::EINVAL)?;
        want_err("defrag's defer", set("defer", DEFRAG)?, Errno::EINVAL)?;
        set("never", DEFRAG)?.map_err(|e| format!("{e:?}"))?;
        if thp_policy::defrag() != mm::compaction::Defrag::Never
            || read_file(&p, DEFRAG)? != "always madvise [never]\n"
        {
            return Err("writing defrag did not set the policy".into());
        }
        Ok(())
    })();
    thp_policy::set_enabled(mm::vma::ThpEnabled::Always);
    thp_policy::set_defrag(mm::compaction::Defrag::Madvise);
    result
}

pub(crate) const TESTS: &[Test] = register!["fs": tree_from_a_cpio_archive, the_boot_initramfs_is_the_root, open_read_seek_stat_and_list, descriptors_dup_cloexec_and_fork_copies, pipes_carry_data_block_and_end, console_and_null, raw_disk_transfers_pin_the_users_pages, proc_files_show_the_kernels_counters, thp_enabled_switch_decides_huge_faults];
