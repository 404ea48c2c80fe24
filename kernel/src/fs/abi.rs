//! The Linux structures the file system calls exchange with user memory,
//! laid out as the arch's `struct` in `linux-raw-sys` says: `stat` (which
//! differs between x86_64 and AArch64), `linux_dirent64`, `iovec`,
//! `termios`, `winsize`.
//!
//! Each is written field by field into a byte buffer at the field's
//! `offset_of!` with the field's own size (both arches are little-endian),
//! so no padding byte is ever read and no `unsafe` is needed; the buffer
//! then goes out with one `copy_to_user`.

use crate::fs::file::{DirEntry, Stat, S_IFMT};
use alloc::vec;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};
use linux_raw_sys::general::{iovec, linux_dirent64, stat, winsize};

/// Writes `value` into `buf` at `off`, truncated to the field's size `F`
/// (the field is named by `_field`, a projection the caller writes).
fn put<T, F>(buf: &mut [u8], off: usize, _field: fn(&T) -> &F, value: u64) {
    let n = size_of::<F>();
    buf[off..off + n].copy_from_slice(&value.to_le_bytes()[..n]);
}

macro_rules! set {
    ($buf:expr, $ty:ident . $field:ident = $value:expr) => {
        put::<$ty, _>(&mut $buf, offset_of!($ty, $field), |s| &s.$field, $value as u64)
    };
}

/// The arch's `struct stat` of `st`.
pub fn stat_bytes(st: &Stat) -> Vec<u8> {
    let mut b = vec![0u8; size_of::<stat>()];
    set!(b, stat.st_dev = 1u64);
    set!(b, stat.st_ino = st.ino);
    set!(b, stat.st_nlink = st.nlink);
    set!(b, stat.st_mode = st.mode);
    set!(b, stat.st_rdev = st.rdev);
    set!(b, stat.st_size = st.size);
    set!(b, stat.st_blksize = st.blksize);
    set!(b, stat.st_blocks = st.size.div_ceil(512));
    b
}

/// Bytes of the `linux_dirent64` for `e` (its name NUL-terminated, the
/// record padded to 8), with `d_off` = `next` (the offset of the entry
/// after it).
pub fn dirent64_bytes(e: &DirEntry, next: u64) -> Vec<u8> {
    let name_at = offset_of!(linux_dirent64, d_name);
    let reclen = (name_at + e.name.len() + 1).next_multiple_of(8);
    let mut b = vec![0u8; reclen];
    set!(b, linux_dirent64.d_ino = e.ino);
    set!(b, linux_dirent64.d_off = next);
    set!(b, linux_dirent64.d_reclen = reclen);
    set!(b, linux_dirent64.d_type = dirent_type(e.kind));
    b[name_at..name_at + e.name.len()].copy_from_slice(e.name.as_bytes());
    b
}

/// `DT_*` of a mode's `S_IF*` (which is the type bits shifted by 12).
fn dirent_type(kind: u32) -> u32 {
    (kind & S_IFMT) >> 12
}

/// The size of one `iovec`.
pub const IOVEC_SIZE: usize = size_of::<iovec>();

/// `(base, len)` of the `iovec` in `bytes`.
pub fn iovec_from(bytes: &[u8]) -> (u64, u64) {
    let get = |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8]));
    (get(offset_of!(iovec, iov_base)), get(offset_of!(iovec, iov_len)))
}

/// The console's `termios` (`TCGETS`): what Linux's serial console shows
/// after boot (cooked mode, echo, 38400 8N1).
pub fn console_termios() -> Vec<u8> {
    use linux_raw_sys::general::*;
    let mut b = vec![0u8; size_of::<termios>()];
    set!(b, termios.c_iflag = ICRNL | IXON);
    set!(b, termios.c_oflag = OPOST | ONLCR);
    set!(b, termios.c_cflag = B38400 | CS8 | CREAD | HUPCL);
    set!(b, termios.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN);
    let cc = offset_of!(termios, c_cc);
    for (i, v) in [
        (VINTR, 3u8),
        (VQUIT, 0x1c),
        (VERASE, 0x7f),
        (VKILL, 0x15),
        (VEOF, 4),
        (VMIN, 1),
        (VSTART, 0x11),
        (VSTOP, 0x13),
        (VSUSP, 0x1a),
    ] {
        b[cc + i as usize] = v;
    }
    b
}

/// The console's `winsize` (`TIOCGWINSZ`): 24 rows of 80 columns.
pub fn console_winsize() -> Vec<u8> {
    let mut b = vec![0u8; size_of::<winsize>()];
    set!(b, winsize.ws_row = 24u16);
    set!(b, winsize.ws_col = 80u16);
    b
}
