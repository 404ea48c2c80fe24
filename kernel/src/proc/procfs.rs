//! The per-process `/proc` files, given to the file layer through its hooks
//! (`fs::set_proc_self_hook` and `fs::set_proc_list_hook`, installed by
//! [`init`]): `/proc/<pid>/` for every process alive or a zombie, and
//! `/proc/self/` for the caller's (`ENOENT` for a pid no process has),
//! each a directory of `status`, `stat`, `cmdline`, `maps`, `smaps`,
//! `pagemap` and the `exe` link; `/proc` lists `self` and every pid.
//!
//! - `status`: name, pid, parent, threads, and the memory lines `VmSize`,
//!   `VmRSS` and `VmSwap` (kB) from the page table
//!   (`mm::space::usage`).
//! - `stat`: one line of Linux's 52 fields (`proc(5)`): pid, `(comm)`,
//!   state (`R`, or `Z` for a zombie), ppid, minflt, majflt, utime, stime
//!   (clock ticks of 10 ms), num_threads, vsize (bytes), rss (pages),
//!   startstack; a field the kernel does not keep (process groups,
//!   priorities, children's counts, ...) is 0.
//! - `cmdline`: the program's arguments, each followed by a NUL (as
//!   `execve` got them; empty for a zombie).
//! - `maps`: one line per area, `start-end perms offset dev inode name`,
//!   with `[heap]` and `[stack]` named.
//! - `smaps`: each `maps` line and its `Size`, `Rss`, `AnonHugePages`,
//!   `Swap` (kB).
//! - `pagemap`: 8 bytes per page at offset `vaddr / 4096 * 8`, Linux's
//!   present, swapped, exclusive bits and PFN (`mm::space::pagemap`),
//!   made at each read for the pages read.
//! - `exe`: a link whose target is the program's path.
//!
//! The text files are made when opened (`fs::procfs::Snapshot`).
//!
//! Locks: the space's lock inside its calls; nothing else.

use super::process::{self, Pid, Process};
use super::thread;
use crate::fs::file::{read_from_bytes, DirEntry, IoBuf, Stat, S_IFDIR, S_IFLNK, S_IFREG};
use crate::fs::procfs::Snapshot;
use crate::fs::{self, Errno, File};
use crate::vm::space::{AddressSpace, USER_END};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use mm::space::Usage;
use mm::vma::Vma;
use mm::VirtAddr;

/// Installs the hook (boot CPU, once, after `fs::init`).
pub fn init() {
    fs::set_proc_self_hook(open);
    fs::set_proc_list_hook(list);
}

/// Inode numbers of the per-process directories (`/proc/<pid>`), by pid.
const INO_DIRS: u64 = 0x7100_0000;

/// The files of a process's directory, with their kinds.
const FILES: [(&str, u32); 7] = [
    ("status", S_IFREG),
    ("maps", S_IFREG),
    ("smaps", S_IFREG),
    ("pagemap", S_IFREG),
    ("exe", S_IFLNK),
    ("stat", S_IFREG),
    ("cmdline", S_IFREG),
];

/// `/proc`'s per-process entries: `self` (the caller's directory) and one
/// per process.
fn list() -> Vec<DirEntry> {
    let me = thread::current().map_or(0, |t| t.process.pid);
    let mut out =
        alloc::vec![DirEntry { ino: INO_DIRS + me as u64, kind: S_IFDIR, name: String::from("self") }];
    out.extend(process::all().iter().map(|p| DirEntry {
        ino: INO_DIRS + p.pid as u64,
        kind: S_IFDIR,
        name: format!("{}", p.pid),
    }));
    out
}

/// An open `/proc/<pid>` directory: `getdents64` lists its files.
struct ProcDir {
    pid: Pid,
}

impl File for ProcDir {
    fn read(&self, _: u64, _: &mut IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
    fn stat(&self) -> Stat {
        Stat {
            ino: INO_DIRS + self.pid as u64,
            mode: S_IFDIR | 0o555,
            nlink: 2,
            size: 0,
            rdev: 0,
            blksize: 4096,
        }
    }
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let ino = INO_DIRS + self.pid as u64;
        let mut out = alloc::vec![
            DirEntry { ino, kind: S_IFDIR, name: String::from(".") },
            DirEntry { ino: 1, kind: S_IFDIR, name: String::from("..") },
        ];
        for (n, (name, kind)) in FILES.iter().enumerate() {
            out.push(DirEntry { ino: INO_BASE + n as u64 + 1, kind: *kind, name: String::from(*name) });
        }
        Ok(out)
    }
}

/// Inode numbers of the per-process files (a range of their own).
const INO_BASE: u64 = 0x7000_0000;

fn stat(mode: u32, size: u64, n: u64) -> Stat {
    Stat { ino: INO_BASE + n, mode, nlink: 1, size, rdev: 0, blksize: 4096 }
}

/// The hook: the file `rest` of process `pid` (the caller's for `None`).
fn open(pid: Option<Pid>, rest: &str) -> Option<Result<Arc<dyn File>, Errno>> {
    let found = match pid {
        None => thread::current().map(|me| me.process.clone()),
        Some(pid) => process::find(pid),
    };
    let Some(p) = found else { return Some(Err(Errno::ENOENT)) };
    let text = |t: String, n| -> Option<Result<Arc<dyn File>, Errno>> {
        let st = stat(S_IFREG | 0o444, 0, n);
        Some(Ok(Arc::new(Snapshot::new(t, st))))
    };
    match rest {
        "" => Some(Ok(Arc::new(ProcDir { pid: p.pid }))),
        "status" => text(status(&p), 1),
        "maps" => text(maps(&p, false), 2),
        "smaps" => text(maps(&p, true), 3),
        "pagemap" => Some(Ok(Arc::new(Pagemap { process: p }))),
        "stat" => text(stat_line(&p), 6),
        "cmdline" => {
            let zombie = p.state.lock().status.is_some();
            text(if zombie { String::new() } else { p.mm.lock().cmdline.clone() }, 7)
        }
        "exe" => {
            let target = p.mm.lock().exe.clone();
            Some(Ok(Arc::new(Link { size: target.len() as u64, target })))
        }
        _ => None,
    }
}

/// The usage of `[start, end)` of `space`.
fn usage_of(space: &AddressSpace, start: VirtAddr, end: VirtAddr) -> Usage {
    space.usage(start, end)
}

fn status(p: &Arc<Process>) -> String {
    let (exe, space) = {
        let mm = p.mm.lock();
        (mm.exe.clone(), mm.space.clone())
    };
    let name = exe.rsplit('/').next().unwrap_or("").chars().take(15).collect::<String>();
    let threads = p.state.lock().threads.len();
    let (mut size, mut total) = (0, Usage::default());
    if let Some(space) = &space {
        for a in space.areas() {
            size += a.size();
            let u = usage_of(space, a.start, a.end);
            total.rss += u.rss;
            total.swap += u.swap;
        }
    }
    format!(
        "Name:\t{name}\nState:\tR (running)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
         VmSize:\t{:8} kB\nVmRSS:\t{:8} kB\nVmSwap:\t{:8} kB\nThreads:\t{threads}\n",
        size >> 10,
        total.rss >> 10,
        total.swap >> 10,
        pid = p.pid,
        ppid = p.ppid(),
    )
}

/// `/proc/<pid>/stat` (see the module doc).
fn stat_line(p: &Arc<Process>) -> String {
    let (exe, space) = {
        let mm = p.mm.lock();
        (mm.exe.clone(), mm.space.clone())
    };
    let comm = exe.rsplit('/').next().unwrap_or("").chars().take(15).collect::<String>();
    let (zombie, threads) = {
        let st = p.state.lock();
        (st.status.is_some(), st.threads.len())
    };
    let (mut vsize, mut rss) = (0, 0);
    if let Some(space) = &space {
        for a in space.areas() {
            vsize += a.size();
            rss += usage_of(space, a.start, a.end).rss;
        }
    }
    let times = p.cpu_times();
    // Clock ticks of 10 ms (`AT_CLKTCK` 100).
    let (utime, stime) = (times.user_ns / 10_000_000, times.sys_ns / 10_000_000);
    let startstack = if space.is_some() { super::stack::STACK_TOP } else { 0 };
    let fields: [u64; 49] = {
        let mut f = [0u64; 49];
        // Fields 4.. of proc(5), 1-based: f[i] is field i + 4.
        let mut put = |field: usize, v: u64| f[field - 4] = v;
        put(4, p.ppid() as u64);
        put(5, p.pid as u64); // pgrp: each process leads its own
        put(6, p.pid as u64); // session
        put(10, p.min_flt.load(core::sync::atomic::Ordering::Relaxed));
        put(12, p.maj_flt.load(core::sync::atomic::Ordering::Relaxed));
        put(14, utime);
        put(15, stime);
        put(18, 20); // priority
        put(20, threads as u64);
        put(23, vsize);
        put(24, rss / 4096);
        put(25, u64::MAX); // rsslim
        put(28, startstack);
        put(38, 17); // exit_signal: SIGCHLD
        f
    };
    let mut out = format!("{} ({comm}) {}", p.pid, if zombie { 'Z' } else { 'R' });
    for v in fields {
        let _ = write!(out, " {v}");
    }
    out.push('\n');
    out
}

/// The name column of an area.
fn area_name(a: &Vma, brk: (u64, u64), exe: &str) -> String {
    let (s, e) = (a.start.as_u64(), a.end.as_u64());
    if s >= brk.0 && e <= brk.1.div_ceil(4096) * 4096 && brk.1 > brk.0 {
        String::from("[heap]")
    } else if e == super::stack::STACK_TOP {
        String::from("[stack]")
    } else if a.prot.exec && s < super::elf::PIE_BASE + (1 << 30) {
        String::from(exe)
    } else {
        String::new()
    }
}

fn maps(p: &Arc<Process>, smaps: bool) -> String {
    let (exe, space, brk) = {
        let mm = p.mm.lock();
        (mm.exe.clone(), mm.space.clone(), (mm.brk_start, mm.brk))
    };
    let mut out = String::new();
    let Some(space) = space else { return out };
    for a in space.areas() {
        let perms = format!(
            "{}{}{}p",
            if a.prot.read || a.prot.write || a.prot.exec { 'r' } else { '-' },
            if a.prot.write { 'w' } else { '-' },
            if a.prot.exec { 'x' } else { '-' },
        );
        let name = area_name(&a, brk, &exe);
        let _ = writeln!(
            out,
            "{:08x}-{:08x} {perms} 00000000 00:00 0 {:>10}{name}",
            a.start.as_u64(),
            a.end.as_u64(),
            ""
        );
        if smaps {
            let u = usage_of(&space, a.start, a.end);
            let thp = if a.thp == mm::vma::ThpMode::Always {
                " hg"
            } else if a.thp == mm::vma::ThpMode::Never {
                " nh"
            } else {
                ""
            };
            let _ = write!(
                out,
                "Size:           {:8} kB\nRss:            {:8} kB\nAnonymous:      {:8} kB\nAnonHugePages:  {:8} kB\nSwap:           {:8} kB\nVmFlags: rd{}{} mr mw me ac{thp}\n",
                a.size() >> 10,
                u.rss >> 10,
                u.rss >> 10,
                u.anon_huge >> 10,
                u.swap >> 10,
                if a.prot.write { " wr" } else { "" },
                if a.prot.exec { " ex" } else { "" },
            );
        }
    }
    out
}

/// `/proc/self/pagemap`.
struct Pagemap {
    process: Arc<Process>,
}

impl File for Pagemap {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        // Whole words only, as Linux.
        if !offset.is_multiple_of(8) || !len.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        let space = self.process.space().ok_or(Errno::EIO)?;
        let first = offset / 8;
        let last = (first + len as u64 / 8).min(USER_END / 4096);
        if first >= last {
            return Ok(0);
        }
        // A bounded batch per read: 64 KiB of words.
        let last = last.min(first + 8192);
        let words = space.pagemap(VirtAddr::new(first * 4096), VirtAddr::new(last * 4096));
        let bytes: alloc::vec::Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        buf.put(0, &bytes)?;
        Ok(bytes.len())
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }
    fn stat(&self) -> Stat {
        stat(S_IFREG | 0o400, 0, 4)
    }
}

/// `/proc/self/exe`.
struct Link {
    target: String,
    size: u64,
}

impl File for Link {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        read_from_bytes(self.target.as_bytes(), offset, buf, len)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }
    fn stat(&self) -> Stat {
        stat(S_IFLNK | 0o777, self.size, 5)
    }
    fn readlink(&self) -> Option<String> {
        Some(self.target.clone())
    }
}
