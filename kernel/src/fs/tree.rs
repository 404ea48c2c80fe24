//! The file tree: [`Node`]s built once from a cpio `newc` archive (read
//! with the `cpio_reader` crate), with the synthetic files grafted on:
//! `/dev` ([`crate::fs::dev`]), `/proc` and `/sys` ([`crate::fs::procfs`]).
//!
//! ## What the archive gives
//!
//! Directories, regular files and symlinks; names with or without a
//! leading `./` or `/`; a file whose parent directories are missing gets
//! them (mode 0755); a later entry of the same name replaces an earlier
//! one; hard links (`newc` stores the data with the last entry of an
//! inode) share the data; device nodes, FIFOs and sockets in the archive
//! are left out (this kernel's `/dev` is its own). A regular file's bytes
//! are the archive's own (the archive stays in memory for good): opening
//! or reading one copies nothing but what is read.
//!
//! ## The root
//!
//! The tree is immutable once built (no file is created, renamed or
//! removed: writes to it are `EROFS`/`EACCES`). The mounted root is an
//! `Arc` under the `ROOT` lock, a leaf held only to clone or replace it;
//! [`mount_root`] swaps in a whole new tree (boot, and the tests' own
//! archives), so a walk that started keeps the tree it started in.

use crate::fs::file::{
    makedev, read_from_bytes, DirEntry, File, IoBuf, Stat, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT,
    S_IFREG,
};
use crate::fs::{dev, procfs, Errno};
use crate::sync::IrqSpinLock;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// One name in the tree.
pub struct Node {
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    pub kind: NodeKind,
}

/// What a node is.
pub enum NodeKind {
    /// Entries by name (no `.` or `..`: the walk keeps its own path).
    Dir(BTreeMap<String, Arc<Node>>),
    /// The archive's bytes.
    Regular(&'static [u8]),
    Symlink(String),
    /// A file the kernel makes: opened by [`Special::open`].
    Special(Special),
}

/// The synthetic files.
#[derive(Clone, Copy)]
pub enum Special {
    /// `/dev/console`.
    Console,
    /// `/dev/null`.
    Null,
    /// `/dev/vdX`: the disk of that index in `crate::drivers::blk::disks`.
    Disk(usize),
    /// A read-only text made at open (`/proc/meminfo`, ...).
    Generated(fn() -> String),
    /// A text that can be read and written (`/sys/.../enabled`).
    Knob(procfs::Knob),
}

impl Special {
    fn open(self, stat: Stat) -> Arc<dyn File> {
        match self {
            Special::Console => Arc::new(dev::Console { stat }),
            Special::Null => Arc::new(dev::Null { stat }),
            Special::Disk(i) => Arc::new(dev::RawDisk::new(i, stat)),
            Special::Generated(make) => Arc::new(procfs::Snapshot::new(make(), stat)),
            Special::Knob(knob) => Arc::new(procfs::KnobFile { knob, stat }),
        }
    }
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir(_))
    }

    /// What `stat` says of the node itself (not following a symlink).
    pub fn stat(&self) -> Stat {
        let (size, rdev, nlink) = match &self.kind {
            NodeKind::Dir(children) => (0, 0, 2 + children.values().filter(|c| c.is_dir()).count() as u32),
            NodeKind::Regular(data) => (data.len() as u64, 0, 1),
            NodeKind::Symlink(target) => (target.len() as u64, 0, 1),
            NodeKind::Special(Special::Console) => (0, makedev(5, 1), 1),
            NodeKind::Special(Special::Null) => (0, makedev(1, 3), 1),
            NodeKind::Special(Special::Disk(i)) => {
                (dev::disk_bytes(*i), makedev(dev::VIRTBLK_MAJOR, 16 * *i as u32), 1)
            }
            NodeKind::Special(_) => (0, 0, 1),
        };
        Stat { ino: self.ino, mode: self.mode, nlink, size, rdev, blksize: 4096 }
    }

    /// Opens the node (not a symlink: the walk follows those).
    pub fn open(self: &Arc<Node>) -> Result<Arc<dyn File>, Errno> {
        let stat = self.stat();
        Ok(match &self.kind {
            NodeKind::Dir(_) => Arc::new(DirFile { node: self.clone() }),
            NodeKind::Regular(data) => Arc::new(RegularFile { data, stat }),
            NodeKind::Symlink(_) => return Err(Errno::ELOOP),
            NodeKind::Special(s) => s.open(stat),
        })
    }
}

/// An open regular file of the archive: read-only.
struct RegularFile {
    data: &'static [u8],
    stat: Stat,
}

impl File for RegularFile {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        read_from_bytes(self.data, offset, buf, len)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EROFS)
    }
    fn stat(&self) -> Stat {
        self.stat
    }
}

/// An open directory: `getdents64` lists it, `read` is `EISDIR`.
struct DirFile {
    node: Arc<Node>,
}

impl File for DirFile {
    fn read(&self, _: u64, _: &mut IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
    fn stat(&self) -> Stat {
        self.node.stat()
    }
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let NodeKind::Dir(children) = &self.node.kind else { return Err(Errno::ENOTDIR) };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push(DirEntry { ino: self.node.ino, kind: S_IFDIR, name: ".".to_string() });
        out.push(DirEntry { ino: self.node.ino, kind: S_IFDIR, name: "..".to_string() });
        out.extend(children.iter().map(|(name, c)| DirEntry {
            ino: c.ino,
            kind: c.mode & S_IFMT,
            name: name.clone(),
        }));
        // `/proc` also lists `self` and the processes (`crate::proc`).
        let is_proc = match &root().kind {
            NodeKind::Dir(top) => top.get("proc").is_some_and(|p| Arc::ptr_eq(p, &self.node)),
            _ => false,
        };
        if is_proc {
            out.extend(super::proc_list());
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- building

/// A node while the tree is built (mutable directories).
enum Building {
    Dir(u32, BTreeMap<String, Building>),
    Done(u32, NodeKind),
}

struct Builder {
    root: Building,
}

impl Builder {
    /// The directory `parts` (made, 0755, where missing; a non-directory
    /// in the way is replaced).
    fn dir(&mut self, parts: &[&str]) -> &mut BTreeMap<String, Building> {
        let mut cur = &mut self.root;
        for part in parts {
            let Building::Dir(_, children) = cur else { unreachable!("dir: walked into a file") };
            let child =
                children.entry(part.to_string()).or_insert(Building::Dir(S_IFDIR | 0o755, BTreeMap::new()));
            if !matches!(child, Building::Dir(..)) {
                *child = Building::Dir(S_IFDIR | 0o755, BTreeMap::new());
            }
            cur = child;
        }
        let Building::Dir(_, children) = cur else { unreachable!("dir: ends at a file") };
        children
    }

    /// Puts `node` at `path` (components separated by `/`).
    fn put(&mut self, path: &str, node: Building) {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let Some((name, parents)) = parts.split_last() else {
            // The archive's `.`: the root's own mode.
            if let (Building::Dir(mode, _), Building::Dir(m, _)) = (&mut self.root, node) {
                *mode = m;
            }
            return;
        };
        let dir = self.dir(parents);
        match (dir.get_mut(*name), node) {
            // A directory named again keeps what it holds.
            (Some(Building::Dir(mode, _)), Building::Dir(m, _)) => *mode = m,
            (_, node) => {
                dir.insert(name.to_string(), node);
            }
        }
    }

    fn freeze(b: Building, next_ino: &mut u64) -> Arc<Node> {
        let ino = *next_ino;
        *next_ino += 1;
        match b {
            Building::Dir(mode, children) => {
                let children = children.into_iter().map(|(n, c)| (n, Self::freeze(c, next_ino))).collect();
                Arc::new(Node { ino, mode, kind: NodeKind::Dir(children) })
            }
            Building::Done(mode, kind) => Arc::new(Node { ino, mode, kind }),
        }
    }
}

/// Builds a tree from `archive` (a cpio `newc` archive, maybe empty) and
/// the synthetic files. Returns the root and the number of archive entries
/// taken. An archive that stops parsing is taken up to there (the reader
/// stops at a bad header).
pub fn build(archive: &'static [u8]) -> (Arc<Node>, usize) {
    let mut b = Builder { root: Building::Dir(S_IFDIR | 0o755, BTreeMap::new()) };
    let mut nr = 0;
    // Hard links: the data of an inode comes with its last entry.
    let mut data_of_ino: BTreeMap<u32, &'static [u8]> = BTreeMap::new();
    let mut linked: Vec<(String, u32, u32)> = Vec::new();
    for entry in cpio_reader::iter_files(archive) {
        let name = entry.name().trim_start_matches("./").trim_start_matches('/');
        let mode = entry.mode().bits();
        let node = match mode & S_IFMT {
            S_IFDIR => Building::Dir(mode, BTreeMap::new()),
            S_IFREG => {
                if entry.nlink() > 1 {
                    if !entry.file().is_empty() {
                        data_of_ino.insert(entry.ino(), entry.file());
                    }
                    linked.push((name.to_string(), entry.ino(), mode));
                }
                Building::Done(mode, NodeKind::Regular(entry.file()))
            }
            S_IFLNK => match core::str::from_utf8(entry.file()) {
                Ok(target) => Building::Done(mode, NodeKind::Symlink(target.to_string())),
                Err(_) => continue,
            },
            _ => continue,
        };
        b.put(name, node);
        nr += 1;
    }
    for (name, ino, mode) in linked {
        if let Some(data) = data_of_ino.get(&ino) {
            b.put(&name, Building::Done(mode, NodeKind::Regular(data)));
        }
    }
    graft_synthetic(&mut b);
    let mut next_ino = 1;
    (Builder::freeze(b.root, &mut next_ino), nr)
}

/// `/dev`, `/proc`, `/sys` (module doc).
fn graft_synthetic(b: &mut Builder) {
    let special = |mode: u32, s: Special| Building::Done(mode, NodeKind::Special(s));
    b.put("dev/console", special(S_IFCHR | 0o600, Special::Console));
    b.put("dev/null", special(S_IFCHR | 0o666, Special::Null));
    for (i, name) in dev::disk_names().into_iter().enumerate() {
        b.put(&alloc::format!("dev/{name}"), special(S_IFBLK | 0o660, Special::Disk(i)));
    }
    for (path, make) in procfs::GENERATED {
        b.put(path, special(S_IFREG | 0o444, Special::Generated(*make)));
    }
    for (path, knob) in procfs::KNOBS {
        b.put(path, special(S_IFREG | 0o644, Special::Knob(*knob)));
    }
    b.put("tmp", Building::Dir(S_IFDIR | 0o1777, BTreeMap::new()));
}

static ROOT: IrqSpinLock<Option<Arc<Node>>> = IrqSpinLock::new(None);

/// The mounted root (a tree of the synthetic files alone before [`mount_root`]).
pub fn root() -> Arc<Node> {
    if let Some(r) = ROOT.lock().as_ref() {
        return r.clone();
    }
    let (fresh, _) = build(&[]);
    ROOT.lock().get_or_insert(fresh).clone()
}

/// Mounts `root` as the root of every lookup from now on; returns the one
/// it replaces.
pub fn mount_root(root: Arc<Node>) -> Option<Arc<Node>> {
    ROOT.lock().replace(root)
}
