//! A process's file descriptors: slots pointing to open-file descriptions
//! ([`OpenFile`]), each with its close-on-exec bit.
//!
//! ## Sharing
//!
//! - `fork` (without `CLONE_FILES`): [`FdTable::fork_copy`], a new table
//!   whose slots point to the same descriptions (offsets and status flags
//!   shared, as Linux does), with the same close-on-exec bits.
//! - Threads (`CLONE_THREAD`) share the table by being one process: the
//!   process holds one table for all its threads. A new process made by
//!   `clone(CLONE_FILES)` without `CLONE_THREAD` gets a copy, as from
//!   `fork`: tables are never shared between processes.
//! - `execve`: [`FdTable::close_on_exec`] closes the slots marked.
//!
//! A description lives as long as some slot (of any table) or some call in
//! progress holds it: a `read` clones the `Arc` out of the slot and drops
//! the table's lock before it transfers, so a `close` by another thread
//! meanwhile closes the slot and the description goes when the read ends.
//! The last reference to a pipe end going is what tells the other end
//! (EOF, `EPIPE`).
//!
//! Lock: `slots`, a leaf; never held across a transfer, and the
//! descriptions it drops are dropped after it is released (a pipe end's
//! drop wakes a wait queue).

use crate::fs::file::OpenFile;
use crate::fs::Errno;
use crate::sync::IrqSpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// The most descriptors a table holds (`RLIMIT_NOFILE`'s usual soft limit).
pub const MAX_FDS: usize = 1024;

#[derive(Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// A descriptor table (module doc).
pub struct FdTable {
    slots: IrqSpinLock<Vec<Option<Slot>>>,
}

impl FdTable {
    pub fn new() -> FdTable {
        FdTable { slots: IrqSpinLock::new(Vec::new()) }
    }

    /// The description behind `fd`.
    pub fn get(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        let slots = self.slots.lock();
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor at or above `min`.
    pub fn install_from(&self, min: usize, file: Arc<OpenFile>, cloexec: bool) -> Result<i32, Errno> {
        if min >= MAX_FDS {
            return Err(Errno::EINVAL);
        }
        let mut slots = self.slots.lock();
        let free = (min..MAX_FDS).find(|&i| slots.get(i).is_none_or(|s| s.is_none())).ok_or(Errno::EMFILE)?;
        if slots.len() <= free {
            slots.resize(free + 1, None);
        }
        slots[free] = Some(Slot { file, cloexec });
        Ok(free as i32)
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn install(&self, file: Arc<OpenFile>, cloexec: bool) -> Result<i32, Errno> {
        self.install_from(0, file, cloexec)
    }

    /// Puts `file` at `fd`, closing what was there (`dup2`/`dup3`).
    pub fn install_at(&self, fd: i32, file: Arc<OpenFile>, cloexec: bool) -> Result<(), Errno> {
        let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FDS).ok_or(Errno::EBADF)?;
        let old = {
            let mut slots = self.slots.lock();
            if slots.len() <= i {
                slots.resize(i + 1, None);
            }
            slots[i].replace(Slot { file, cloexec })
        };
        drop(old);
        Ok(())
    }

    /// Closes `fd`.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        let old = {
            let mut slots = self.slots.lock();
            usize::try_from(fd).ok().and_then(|i| slots.get_mut(i)).and_then(|s| s.take())
        };
        old.map(drop).ok_or(Errno::EBADF)
    }

    /// The close-on-exec bit of `fd`.
    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        let slots = self.slots.lock();
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.cloexec)
            .ok_or(Errno::EBADF)
    }

    /// Sets the close-on-exec bit of `fd`.
    pub fn set_cloexec(&self, fd: i32, on: bool) -> Result<(), Errno> {
        let mut slots = self.slots.lock();
        let slot = usize::try_from(fd).ok().and_then(|i| slots.get_mut(i)).and_then(|s| s.as_mut());
        slot.map(|s| s.cloexec = on).ok_or(Errno::EBADF)
    }

    /// A new table with the same descriptions and bits (fork).
    pub fn fork_copy(&self) -> FdTable {
        FdTable { slots: IrqSpinLock::new(self.slots.lock().clone()) }
    }

    /// Closes every descriptor marked close-on-exec (execve).
    pub fn close_on_exec(&self) {
        let closed: Vec<Slot> = {
            let mut slots = self.slots.lock();
            slots
                .iter_mut()
                .filter(|s| s.as_ref().is_some_and(|s| s.cloexec))
                .filter_map(|s| s.take())
                .collect()
        };
        drop(closed);
    }

    /// Closes every descriptor (process exit).
    pub fn close_all(&self) {
        let all = core::mem::take(&mut *self.slots.lock());
        drop(all);
    }

    /// The open descriptors, lowest first.
    pub fn open_fds(&self) -> Vec<i32> {
        let slots = self.slots.lock();
        slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as i32).collect()
    }
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}
