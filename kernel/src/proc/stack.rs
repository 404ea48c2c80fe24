//! The initial stack of a program, as Linux lays it out for `_start`:
//!
//! ```text
//! sp ->  argc
//!        argv[0] .. argv[argc - 1], NULL
//!        envp[0] .. , NULL
//!        auxv pairs (AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE,
//!          AT_FLAGS, AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID,
//!          AT_SECURE, AT_CLKTCK, AT_HWCAP, AT_RANDOM, AT_PLATFORM,
//!          AT_EXECFN), AT_NULL
//!        (padding)
//!        16 random bytes, the platform string
//!        the argument and environment strings, the file name
//! top
//! ```
//!
//! `sp` is 16-byte aligned. The stack is an anonymous area of
//! [`STACK_SIZE`] below [`STACK_TOP`] (pages come on first touch); the
//! whole block above is built in kernel memory and copied in at once.
//!
//! Locks: none.

use super::elf::Loaded;
use super::syscall::Errno;
use super::UserArch;
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::copy_to_user;
use alloc::string::String;
use alloc::vec::Vec;
use arch_common::user::UserMode;
use linux_raw_sys::auxvec as at;
use mm::vma::VmaProt;
use mm::VirtAddr;

/// One past the stack's highest byte.
pub const STACK_TOP: u64 = 0x7fff_ff00_0000;
/// The stack area's size (Linux's default `RLIMIT_STACK`).
pub const STACK_SIZE: u64 = 8 << 20;
/// The most bytes of argument and environment strings (Linux: a quarter
/// of the stack limit).
pub const MAX_ARG_BYTES: usize = (STACK_SIZE / 4) as usize;

/// The platform string (`AT_PLATFORM`).
fn platform() -> &'static str {
    UserArch::MACHINE
}

/// Words of the initial stack besides the string pointers: `argc`, the
/// two `NULL`s, the auxv pairs, and slack for the alignment.
const FIXED_WORDS: usize = 3 + 2 * 18 + 4;

/// The initial stack's size for these strings, or `E2BIG` when it is over
/// [`MAX_ARG_BYTES`] (`execve` asks before it ends the other threads;
/// [`build`] asks too). Within it, the stack fits its area.
pub fn check_size(execfn: &str, argv: &[String], envp: &[String]) -> Result<usize, Errno> {
    let strings: usize = argv.iter().chain(envp).map(|s| s.len() + 1).sum::<usize>() + execfn.len() + 1;
    let words = argv.len() + envp.len() + FIXED_WORDS;
    let size = strings + platform().len() + 1 + 16 + 16 + words * 8;
    if size > MAX_ARG_BYTES {
        return Err(Errno::E2BIG);
    }
    Ok(size)
}

/// Maps the stack in `space` (the running task is in it) and writes the
/// initial stack; returns the stack pointer `_start` gets.
pub fn build(
    space: &AddressSpace,
    loaded: &Loaded,
    execfn: &str,
    argv: &[String],
    envp: &[String],
    random: [u8; 16],
) -> Result<u64, Errno> {
    let size = check_size(execfn, argv, envp)?;
    space
        .mmap_fixed(VirtAddr::new(STACK_TOP - STACK_SIZE), STACK_SIZE, VmaProt::READ_WRITE)
        .map_err(|_| Errno::ENOMEM)?;

    // The strings block, from the top down: its contents and where each
    // string lands.
    let mut block: Vec<u8> = Vec::new();
    block.try_reserve(size).map_err(|_| Errno::ENOMEM)?;
    let place = |s: &[u8], block: &mut Vec<u8>| -> u64 {
        block.extend_from_slice(s);
        block.push(0);
        block.len() as u64 // offset of the end; fixed up below
    };
    let mut ends = Vec::new();
    for s in argv.iter().chain(envp) {
        ends.push(place(s.as_bytes(), &mut block));
    }
    let execfn_end = place(execfn.as_bytes(), &mut block);
    let platform_end = place(platform().as_bytes(), &mut block);
    block.extend_from_slice(&random);
    let random_end = block.len() as u64;
    let block_base = (STACK_TOP - 16 - block.len() as u64) & !15;
    let addr_of = |end: u64, len: usize| block_base + end - len as u64;
    let mut lens = argv.iter().chain(envp).map(|s| s.len() + 1);
    let string_addrs: Vec<u64> = ends.iter().map(|&e| addr_of(e, lens.next().unwrap_or(0))).collect();
    let execfn_addr = addr_of(execfn_end, execfn.len() + 1);
    let platform_addr = addr_of(platform_end, platform().len() + 1);
    let random_addr = addr_of(random_end, 16);

    let auxv: [(u32, u64); 18] = [
        (at::AT_PHDR, loaded.phdr),
        (at::AT_PHENT, loaded.phent),
        (at::AT_PHNUM, loaded.phnum),
        (at::AT_PAGESZ, 4096),
        (at::AT_BASE, 0),
        (at::AT_FLAGS, 0),
        (at::AT_ENTRY, loaded.entry),
        (at::AT_UID, 0),
        (at::AT_EUID, 0),
        (at::AT_GID, 0),
        (at::AT_EGID, 0),
        (at::AT_SECURE, 0),
        (at::AT_CLKTCK, 100),
        (at::AT_HWCAP, UserArch::hwcap()),
        (at::AT_RANDOM, random_addr),
        (at::AT_PLATFORM, platform_addr),
        (at::AT_EXECFN, execfn_addr),
        (at::AT_NULL, 0),
    ];
    let mut words: Vec<u64> = Vec::new();
    words.try_reserve(argv.len() + envp.len() + FIXED_WORDS).map_err(|_| Errno::ENOMEM)?;
    words.push(argv.len() as u64);
    words.extend_from_slice(&string_addrs[..argv.len()]);
    words.push(0);
    words.extend_from_slice(&string_addrs[argv.len()..]);
    words.push(0);
    for (k, v) in auxv {
        words.push(k as u64);
        words.push(v);
    }
    let sp = (block_base - words.len() as u64 * 8) & !15;
    if sp < STACK_TOP - STACK_SIZE + 4096 {
        return Err(Errno::E2BIG);
    }
    copy_to_user(block_base, &block)?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    copy_to_user(sp, &bytes)?;
    Ok(sp)
}
