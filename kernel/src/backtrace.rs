//! Backtraces: the call stack of a panic, printed by walking the
//! frame-pointer chain, for the runner to turn into function names.
//!
//! Kernels are built with frame pointers forced on (`.cargo/config.toml`).
//! On both arches a frame pointer then points at a two-word frame record:
//! the caller's frame pointer, then the return address into the caller
//! (x86_64: `push rbp; mov rbp, rsp` after the `call` pushed the return
//! address; AArch64: `stp x29, x30, [sp, ...]; mov x29, sp`). [`print`]
//! follows that chain from where the panic happened: after a kernel fault,
//! from the faulting instruction and the frame pointer it had (recorded by
//! the arch's trap handler, `arch_common::trap::note_fatal_fault`); else
//! from the panic handler's own frame. (`core` and `alloc` come prebuilt,
//! maybe without frame pointers: a frame of theirs may be missing from the
//! chain, never a wrong one, since they preserve the register.)
//!
//! ## A walk that cannot crash the report
//!
//! The chain is data a bug may have trampled, so every word is read with the
//! arch's probe (`Probe::probe_read_u8`: a fault ends the walk, not the
//! kernel), and a frame pointer is followed only when it is 8-byte aligned,
//! above the previous one (so the walk ends), and within [`MAX_STACK_SPAN`]
//! bytes of the first (one stack: the largest, the x86_64 boot stack, is
//! 256 KiB). At most [`MAX_FRAMES`] frames are printed. A zero return
//! address ends the chain (a task's first frame).
//!
//! ## What is printed
//!
//! ```text
//! backtrace: _start at 0xffffffff80029620
//! backtrace: #0 pc 0xffffffff8004a1b2
//! backtrace: #1 ret 0xffffffff8004c3d4
//! backtrace: end after 2 frames (a zero return address)
//! ```
//!
//! `_start`'s address lets the runner find the offset the image was loaded
//! at (the x86_64 kernel is position-independent; `_start` is the ELF's
//! entry on both arches). `pc` is the address of an instruction, `ret` a
//! return address (the call is just before it). The runner
//! (`qemu::symbols`) appends `function at file:line` to each frame line.
//!
//! No locks: it runs in the panic handler, which owns the console.

use crate::arch::prelude::*;
use mm::VirtAddr;

/// The most frames printed.
pub const MAX_FRAMES: usize = 48;
/// How far above the first frame pointer the walk may go: one stack.
pub const MAX_STACK_SPAN: u64 = 256 * 1024;

extern "C" {
    /// The image's entry, defined by the boot crate (both arches).
    fn _start();
}

/// Reads the 8-byte word at `addr` with the arch's probe: `None` when any
/// of its bytes faults.
pub fn read_word(addr: u64) -> Option<u64> {
    let mut bytes = [0u8; 8];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = Arch::probe_read_u8(VirtAddr::new(addr.checked_add(i as u64)?)).ok()?;
    }
    Some(u64::from_le_bytes(bytes))
}

/// Why a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A zero return address or frame pointer: the bottom of the stack.
    Bottom,
    /// The next frame pointer is not above the last, misaligned, or too far.
    OutOfBounds(u64),
    /// Reading a frame record faulted.
    Unreadable(u64),
    /// [`MAX_FRAMES`] reached.
    TooDeep,
}

/// Walks the chain from frame pointer `fp`, calling `frame` with each return
/// address, innermost first; `read` reads a word. Returns how it ended.
/// Separate from the printing so that its bounds can be tested in the
/// guest on a hand-made chain.
pub fn walk(mut fp: u64, read: impl Fn(u64) -> Option<u64>, mut frame: impl FnMut(u64)) -> End {
    let first = fp;
    for _ in 0..MAX_FRAMES {
        if fp == 0 {
            return End::Bottom;
        }
        if !fp.is_multiple_of(8) || fp < first || fp - first > MAX_STACK_SPAN {
            return End::OutOfBounds(fp);
        }
        let (Some(next), Some(ret)) = (read(fp), fp.checked_add(8).and_then(&read)) else {
            return End::Unreadable(fp);
        };
        if ret == 0 {
            return End::Bottom;
        }
        frame(ret);
        if next != 0 && next <= fp {
            return End::OutOfBounds(next);
        }
        fp = next;
    }
    End::TooDeep
}

/// Prints the backtrace of a panic on this CPU (see the module doc).
pub fn print() {
    let start = crate::arch::trap::take_fatal_fault(Arch::cpu_index());
    let fp = match start {
        Some((_, fp)) => fp,
        None => Arch::frame_pointer(),
    };
    crate::console::write_unlocked(format_args!(
        "backtrace: _start at {:#x}\n",
        _start as *const () as usize
    ));
    let mut n = 0;
    if let Some((pc, _)) = start {
        crate::console::write_unlocked(format_args!("backtrace: #0 pc {pc:#x}\n"));
        n += 1;
    }
    let end = walk(fp, read_word, |ret| {
        crate::console::write_unlocked(format_args!("backtrace: #{n} ret {ret:#x}\n"));
        n += 1;
    });
    let why = match end {
        End::Bottom => "the bottom of the stack",
        End::OutOfBounds(_) => "a frame pointer outside the stack",
        End::Unreadable(_) => "an unreadable frame record",
        End::TooDeep => "the frame limit",
    };
    crate::console::write_unlocked(format_args!("backtrace: end after {n} frames ({why})\n"));
}
