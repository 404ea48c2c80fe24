//! `execve`: replacing a process's program. The new program's headers and
//! the size of its initial stack are checked first
//! ([`super::elf::Image::parse`], [`stack::check_size`]: a bad file or too
//! many arguments fail the call with the old program and its threads
//! intact); then the other threads are ended; then a new address space is
//! made, the thread enters it, the segments are loaded and the initial
//! stack built ([`super::stack`]); then the process takes the new space
//! (the old one is dropped), its `brk` starts after the program, handlers
//! go back to their defaults and the fd table closes its close-on-exec
//! fds. The old space is dropped only after everything succeeded, so a
//! failure there (out of memory) returns the error to the old program,
//! which goes on with its other threads ended.
//!
//! Ending the other threads is as a group exit would, but the caller goes
//! on: it dooms them and waits until they are gone (their blocking waits
//! leave at once, [`Thread::interrupted`]). Two threads calling `execve`
//! at once: the first to set the process's `execing` flag wins, the other
//! returns `EINTR` (and is ended by the winner); a caller that must end
//! itself gives up with `EINTR`. The first thread of a [`super::spawn`]ed
//! process runs the same code ([`exec_image`]) to start.
//!
//! Locks: the process's `mm` lock, for a moment, to switch the space.

use super::elf::Image;
use super::syscall::{Ctx, Errno, Flow, SysResult};
use super::thread::{self, Entered, Thread};
use super::{stack, Regs};
use crate::fs::path::PATH_MAX;
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::{copy_from_user, read_cstr};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch_common::user::UserRegs;
use core::sync::atomic::Ordering;

/// Reads a NULL-terminated array of string pointers, charging each
/// string to `budget` (what is left of [`stack::MAX_ARG_BYTES`] for
/// `argv` and `envp` together): no string is read past what is left, so
/// the kernel never holds more than the limit's worth of strings and
/// pointers (`E2BIG` first).
fn read_strings(addr: u64, budget: &mut usize) -> Result<Vec<String>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    for i in 0.. {
        let mut p = [0u8; 8];
        copy_from_user(&mut p, addr + i * 8)?;
        let p = u64::from_ne_bytes(p);
        if p == 0 {
            break;
        }
        // The string, its NUL and its pointer on the new stack: millions
        // of empty strings are as much as their bytes.
        let room = budget.checked_sub(8).ok_or(Errno::E2BIG)?;
        let s = match read_cstr(p, room) {
            Err(crate::vm::uaccess::CStrError::TooLong) => return Err(Errno::E2BIG),
            r => r?,
        };
        *budget = room - (s.len() + 1);
        out.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        out.push(s);
    }
    Ok(out)
}

/// `execve(path, argv, envp)`.
pub fn execve(c: &mut Ctx, path: u64, argv: u64, envp: u64) -> SysResult {
    let path = read_cstr(path, PATH_MAX)?;
    let mut budget = stack::MAX_ARG_BYTES;
    let argv = read_strings(argv, &mut budget)?;
    let envp = read_strings(envp, &mut budget)?;
    let image = super::files::read_exec(c, &path)?;
    Image::parse(&image).map_err(|_| Errno::ENOEXEC)?;
    stack::check_size(&path, &argv, &envp)?;
    let process = &c.thread.process;
    if process.execing.swap(true, Ordering::AcqRel) {
        // Another thread's execve goes on (and ends this thread).
        return Err(Errno::EINTR);
    }
    let result = end_other_threads(c.thread)
        .and_then(|()| exec_image(c.thread, c.entered, &path, &image, &argv, &envp));
    process.execing.store(false, Ordering::Release);
    let regs = result?;
    *c.regs = regs;
    c.flow = Some(Flow::NoReturn);
    Ok(0)
}

/// Ends every thread of the caller's process but the caller, and waits
/// until they are gone; `EINTR` when the caller must end meanwhile.
fn end_other_threads(me: &Arc<Thread>) -> Result<(), Errno> {
    loop {
        if me.must_exit() {
            return Err(Errno::EINTR);
        }
        let others: Vec<Arc<Thread>> =
            me.process.state.lock().threads.iter().filter(|t| !Arc::ptr_eq(t, me)).cloned().collect();
        if others.is_empty() {
            return Ok(());
        }
        for t in &others {
            t.doom();
        }
        crate::task::sched::yield_now();
    }
}

/// Loads `image` into a new address space for `thread`'s process and
/// returns the registers the program starts with. Fails with the old
/// program intact when the new one cannot be set up.
pub fn exec_image(
    thread: &Arc<Thread>,
    entered: &mut Option<Entered>,
    path: &str,
    image: &[u8],
    argv: &[String],
    envp: &[String],
) -> Result<Regs, Errno> {
    let parsed = Image::parse(image).map_err(|_| Errno::ENOEXEC)?;
    let space = AddressSpace::new().map_err(|_| Errno::ENOMEM)?;
    let old = entered.as_ref().map(|e| e.space.clone());
    thread::enter(entered, space.clone());
    let set_up = parsed.load(&space, image).and_then(|loaded| {
        let sp = stack::build(&space, &loaded, path, argv, envp, super::info::random_bytes())?;
        super::signal::map_trampoline(&space)?;
        Ok((loaded, sp))
    });
    let (loaded, sp) = match set_up {
        Ok(v) => v,
        Err(e) => {
            // Back to the old program, which nothing touched.
            if let Some(old) = old {
                thread::enter(entered, old);
            }
            return Err(e);
        }
    };
    let process = &thread.process;
    let mut cmdline = String::new();
    for arg in argv {
        cmdline.push_str(arg);
        cmdline.push('\0');
    }
    {
        let mut mm = process.mm.lock();
        mm.cmdline = cmdline;
        mm.space = Some(space);
        mm.brk_start = loaded.end;
        mm.brk = loaded.end;
        mm.exe = String::from(path);
        mm.dontfork.clear();
        mm.execs += 1;
    }
    drop(old);
    process.state.lock().actions.exec();
    thread.frames.lock().clear();
    process.files.exec();
    // A vfork parent waits for this.
    process.exited.wake_all();
    Ok(Regs::new(loaded.entry, sp))
}
