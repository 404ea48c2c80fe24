//! Path lookup: from the root or a starting directory (the cwd, an
//! `openat` directory), component by component: `.` stays, `..` goes up
//! (never above the root), a symlink is followed (its target read as a
//! path from the symlink's directory, or from the root when absolute) when
//! it is not the last component or the caller follows the last one, at
//! most [`MAX_SYMLINKS`] times in one lookup (`ELOOP`).
//!
//! `/proc/self/...` and `/proc/<pid>/...` are not in the tree: when the
//! walk is in `/proc` and meets `self` or a number, that process (`None`
//! for `self`) and the rest of the path go to the per-process hook
//! (`crate::fs::set_proc_self_hook`).
//!
//! The walk keeps the chain of directories it went through, so it knows
//! the canonical path of what it found (`getcwd`, the base of a relative
//! `openat` on a directory descriptor). The tree is immutable (see
//! [`crate::fs::tree`]), so a walk takes no lock.
//!
//! [`Cwd`] is a process's current directory: a canonical path under its
//! own leaf lock.

use crate::fs::file::File;
use crate::fs::tree::{self, Node, NodeKind};
use crate::fs::Errno;
use crate::sync::IrqSpinLock;
use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// The most symlinks one lookup follows (Linux's limit).
pub const MAX_SYMLINKS: usize = 40;
/// The longest path accepted (`PATH_MAX`, with its NUL).
pub const PATH_MAX: usize = 4096;

/// What a lookup found.
pub enum Found {
    /// A node of the tree and its canonical path.
    Node(Arc<Node>, String),
    /// A per-process file (`/proc/self/...`, `/proc/<pid>/...`).
    Proc(Arc<dyn File>),
}

impl Found {
    /// Opens it.
    pub fn open(&self) -> Result<Arc<dyn File>, Errno> {
        match self {
            Found::Node(n, _) => n.open(),
            Found::Proc(f) => Ok(f.clone()),
        }
    }
}

/// Looks `path` up from `base` (a canonical directory path; ignored when
/// `path` is absolute). `follow_last`: a symlink as the last component is
/// followed (`open` without `O_NOFOLLOW`, `stat`), or returned
/// (`readlink`, `lstat`).
pub fn lookup(base: &str, path: &str, follow_last: bool) -> Result<Found, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let root = tree::root();
    // The directories walked through: (name, node); empty = at the root.
    let mut chain: Vec<(String, Arc<Node>)> = Vec::new();
    if !path.starts_with('/') {
        // `base` is canonical: no symlinks, no `..` in it.
        for part in base.split('/').filter(|p| !p.is_empty()) {
            let here = chain.last().map_or(&root, |(_, n)| n).clone();
            let NodeKind::Dir(children) = &here.kind else { return Err(Errno::ENOTDIR) };
            let child = children.get(part).ok_or(Errno::ENOENT)?;
            chain.push((part.to_string(), child.clone()));
        }
    }
    let mut todo: VecDeque<String> = components(path);
    // A trailing slash asks for a directory.
    let want_dir = path.ends_with('/');
    let mut nr_links = 0;
    while let Some(part) = todo.pop_front() {
        if part == "." {
            continue;
        }
        if part == ".." {
            chain.pop();
            continue;
        }
        let here = chain.last().map_or(&root, |(_, n)| n).clone();
        let NodeKind::Dir(children) = &here.kind else { return Err(Errno::ENOTDIR) };
        if chain.len() == 1
            && chain[0].0 == "proc"
            && (part == "self" || part.bytes().all(|b| b.is_ascii_digit()))
        {
            // `self` is the caller; a number too large for a pid names
            // no process.
            let pid = match part.as_str() {
                "self" => None,
                n => Some(n.parse::<u32>().map_err(|_| Errno::ENOENT)?),
            };
            let rest: Vec<String> = todo.into_iter().collect();
            return match crate::fs::proc_self(pid, &rest.join("/")) {
                Some(Ok(f)) => Ok(Found::Proc(f)),
                Some(Err(e)) => Err(e),
                None => Err(Errno::ENOENT),
            };
        }
        let child = children.get(&part).ok_or(Errno::ENOENT)?.clone();
        if let NodeKind::Symlink(target) = &child.kind {
            if !todo.is_empty() || follow_last || want_dir {
                nr_links += 1;
                if nr_links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                if target.starts_with('/') {
                    chain.clear();
                }
                let mut next = components(target);
                next.extend(todo);
                todo = next;
                continue;
            }
        }
        chain.push((part, child));
    }
    let node = chain.last().map_or(&root, |(_, n)| n).clone();
    if want_dir && !node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(Found::Node(node, canonical(&chain)))
}

fn components(path: &str) -> VecDeque<String> {
    path.split('/').filter(|p| !p.is_empty()).map(|p| p.to_string()).collect()
}

fn canonical(chain: &[(String, Arc<Node>)]) -> String {
    if chain.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for (name, _) in chain {
        out.push('/');
        out.push_str(name);
    }
    out
}

/// A process's current directory (module doc).
pub struct Cwd {
    path: IrqSpinLock<String>,
}

impl Cwd {
    /// The root.
    pub fn new() -> Cwd {
        Cwd { path: IrqSpinLock::new("/".to_string()) }
    }

    /// The canonical path.
    pub fn get(&self) -> String {
        self.path.lock().clone()
    }

    /// Moves to `path` (canonical; the caller checked it is a directory).
    pub fn set(&self, path: String) {
        *self.path.lock() = path;
    }

    /// A copy for a child (fork without `CLONE_FS`).
    pub fn fork_copy(&self) -> Cwd {
        Cwd { path: IrqSpinLock::new(self.get()) }
    }
}

impl Default for Cwd {
    fn default() -> Self {
        Cwd::new()
    }
}
