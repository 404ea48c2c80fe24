//! Pipes: a bounded byte buffer ([`PIPE_CAPACITY`]) between a read end and
//! a write end.
//!
//! ## Protocol
//!
//! - `read` waits while the buffer is empty and some write end is open;
//!   then takes what is there (at most what was asked). Empty with no
//!   write end: 0, end of file.
//! - `write` with no read end open: `EPIPE` (the caller, the system-call
//!   layer, sends `SIGPIPE`). Otherwise it copies the user's bytes in
//!   pieces, waiting for room; a write of at most [`PIPE_BUF`] bytes goes
//!   in whole or not at all (atomic, as POSIX asks), a longer one may be
//!   interleaved with other writers. A reader that leaves midway ends the
//!   write with what was taken so far (or `EPIPE` when nothing was).
//! - `O_NONBLOCK`: `EAGAIN` instead of waiting.
//! - A wait ends when [`crate::fs::interrupted`] says so (a signal to
//!   deliver, the caller's thread or process ending) with
//!   [`Errno::ERESTARTSYS`]: the call runs again after a handler with
//!   `SA_RESTART` (or when no handler runs), else it returns `EINTR`; a
//!   write that moved bytes returns their count instead.
//! - The ends are counted: a [`PipeEnd`] is made per end by [`new`] and
//!   each end's drop (the last descriptor of its description closed)
//!   decrements its count and wakes the other side.
//!
//! Capacity: a write adds bytes only while the buffer holds fewer than
//! [`PIPE_CAPACITY`]; but a read whose copy to user memory fails puts what
//! it took back in front, and a writer may have filled the room meanwhile,
//! so the buffer can hold up to `PIPE_CAPACITY` + one read's bytes for a
//! while. Room is therefore counted saturating (none while over).
//!
//! Lock: the pipe's `state`, a leaf; user memory is copied outside it
//! (through a kernel bounce buffer), since a copy may fault and sleep.
//! Waits are on `readers_wait` (data or no writer) and `writers_wait`
//! (room or no reader), woken after the lock is released.

use crate::fs::file::{File, IoBuf, Stat, S_IFIFO};
use crate::fs::Errno;
use crate::sync::IrqSpinLock;
use crate::task::wait::WaitQueue;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes a pipe buffers (Linux's default, 16 pages).
pub const PIPE_CAPACITY: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

struct State {
    data: VecDeque<u8>,
    nr_readers: usize,
    nr_writers: usize,
}

struct Pipe {
    state: IrqSpinLock<State>,
    readers_wait: WaitQueue,
    writers_wait: WaitQueue,
    ino: u64,
}

/// Which end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Read,
    Write,
}

/// One end of a pipe, as a [`File`].
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    side: Side,
}

/// Inode numbers of pipes: a range of their own.
static NEXT_INO: AtomicU64 = AtomicU64::new(1 << 32);

/// A new pipe: its read end and its write end.
pub fn new() -> (Arc<PipeEnd>, Arc<PipeEnd>) {
    let pipe = Arc::new(Pipe {
        state: IrqSpinLock::new(State { data: VecDeque::new(), nr_readers: 1, nr_writers: 1 }),
        readers_wait: WaitQueue::new(),
        writers_wait: WaitQueue::new(),
        ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
    });
    (
        Arc::new(PipeEnd { pipe: pipe.clone(), side: Side::Read }),
        Arc::new(PipeEnd { pipe, side: Side::Write }),
    )
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        {
            let mut st = self.pipe.state.lock();
            match self.side {
                Side::Read => st.nr_readers -= 1,
                Side::Write => st.nr_writers -= 1,
            }
        }
        self.pipe.readers_wait.wake_all();
        self.pipe.writers_wait.wake_all();
    }
}

impl File for PipeEnd {
    fn read(&self, _: u64, buf: &mut IoBuf<'_>, len: usize, nonblock: bool) -> Result<usize, Errno> {
        if self.side != Side::Read {
            return Err(Errno::EBADF);
        }
        if len == 0 {
            return Ok(0);
        }
        let p = &self.pipe;
        let taken = p.readers_wait.wait_for(|| {
            let ready = {
                let mut st = p.state.lock();
                if !st.data.is_empty() {
                    let n = len.min(st.data.len());
                    Some(Ok(st.data.drain(..n).collect::<alloc::vec::Vec<u8>>()))
                } else if st.nr_writers == 0 {
                    Some(Ok(alloc::vec::Vec::new()))
                } else if nonblock {
                    Some(Err(Errno::EAGAIN))
                } else {
                    None
                }
            };
            // About to wait: not when the caller must leave (outside the
            // pipe's lock: the check takes the process's).
            ready.or_else(|| crate::fs::interrupted().then_some(Err(Errno::ERESTARTSYS)))
        })?;
        // The copy may fault and sleep (swap-in), so it runs without the
        // lock. When the reader's buffer is bad, what was taken goes back
        // in front of the pipe, as Linux keeps it: the next good read gets
        // it (a reader racing in between could get later bytes first).
        if let Err(e) = buf.put(0, &taken) {
            let mut st = p.state.lock();
            for &byte in taken.iter().rev() {
                st.data.push_front(byte);
            }
            return Err(e);
        }
        p.writers_wait.wake_all();
        Ok(taken.len())
    }

    fn write(&self, _: u64, buf: &IoBuf<'_>, len: usize, nonblock: bool) -> Result<usize, Errno> {
        if self.side != Side::Write {
            return Err(Errno::EBADF);
        }
        let p = &self.pipe;
        let mut done = 0;
        let mut bounce = vec![0u8; len.min(PIPE_BUF)];
        while done < len {
            let chunk = (len - done).min(PIPE_BUF);
            let bytes = &mut bounce[..chunk];
            if let Err(e) = buf.take(done, bytes) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            // Atomic when the whole write fits in PIPE_BUF: wait for room
            // for all of it; otherwise take whatever room there is.
            let whole = len <= PIPE_BUF;
            let put = p.writers_wait.wait_for(|| {
                let ready = {
                    let mut st = p.state.lock();
                    let room = PIPE_CAPACITY.saturating_sub(st.data.len());
                    if st.nr_readers == 0 {
                        Some(Err(Errno::EPIPE))
                    } else if room >= chunk || (!whole && room > 0) {
                        let n = room.min(chunk);
                        st.data.extend(&bytes[..n]);
                        Some(Ok(n))
                    } else if nonblock {
                        Some(Err(Errno::EAGAIN))
                    } else {
                        None
                    }
                };
                ready.or_else(|| crate::fs::interrupted().then_some(Err(Errno::ERESTARTSYS)))
            });
            match put {
                Ok(n) => {
                    p.readers_wait.wake_all();
                    done += n;
                }
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            }
        }
        Ok(done)
    }

    fn stat(&self) -> Stat {
        Stat { ino: self.pipe.ino, mode: S_IFIFO | 0o600, nlink: 1, size: 0, rdev: 0, blksize: 4096 }
    }

    fn seekable(&self) -> bool {
        false
    }
}
