//! The initial RAM disk reached the kernel whole, and its memory is not
//! handed out.
//!
//! xtask builds the initramfs (a cpio `newc` archive) and attaches it to
//! every boot: on x86_64 inside the BIOS or UEFI image, as the
//! `bootloader` crate's ramdisk; on AArch64 with QEMU's `-initrd`, named
//! by the device tree's `/chosen/linux,initrd-start|end`. Its last file,
//! `etc/initramfs.fnv`, holds the 64-bit FNV-1a hash (in hex) of every
//! archive byte before that file's header, so a truncated, shifted or
//! partly overwritten archive is caught here (the file tree itself is the
//! `fs` unit's to read).

use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use mm::PhysAddr;

/// The newc header: magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 110;
const MAGIC: &[u8] = b"070701";
/// The check file xtask writes last (`xtask/src/initramfs.rs`).
const CHECK_FILE: &str = "etc/initramfs.fnv";

/// One newc entry: its header's offset, name, and data range.
struct Entry<'a> {
    offset: usize,
    name: &'a str,
    data: core::ops::Range<usize>,
}

fn hex_field(header: &[u8], index: usize) -> Result<usize, String> {
    let field = &header[6 + 8 * index..6 + 8 * (index + 1)];
    let text = core::str::from_utf8(field).map_err(|_| format!("header field {index} is not text"))?;
    usize::from_str_radix(text, 16).map_err(|_| format!("header field {index} `{text}` is not hex"))
}

/// The entries of a newc archive, up to (not including) the trailer; an
/// error when a header is malformed or the archive ends without one.
fn entries(archive: &[u8]) -> Result<alloc::vec::Vec<Entry<'_>>, String> {
    let mut out = alloc::vec::Vec::new();
    let mut at = 0;
    loop {
        let header = archive
            .get(at..at + HEADER_LEN)
            .ok_or_else(|| format!("the archive ends at {at} without a TRAILER!!! entry"))?;
        if &header[..6] != MAGIC {
            return Err(format!("no newc magic at offset {at}"));
        }
        let file_size = hex_field(header, 6)?;
        let name_size = hex_field(header, 11)?;
        let name_end = at + HEADER_LEN + name_size;
        let name =
            archive.get(at + HEADER_LEN..name_end.saturating_sub(1)).ok_or("a name runs past the end")?;
        let name = core::str::from_utf8(name).map_err(|_| format!("the name at {at} is not UTF-8"))?;
        let data = name_end.next_multiple_of(4)..name_end.next_multiple_of(4) + file_size;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        if data.end > archive.len() {
            return Err(format!("{name}'s data runs past the end of the archive"));
        }
        out.push(Entry { offset: at, name, data: data.clone() });
        at = data.end.next_multiple_of(4);
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn arrived_whole(_: &TestEnv<'_>) -> Result<(), String> {
    let archive = crate::bootinfo::initrd().ok_or("the kernel was booted without an initial RAM disk")?;
    if !archive.starts_with(MAGIC) {
        let start = &archive[..archive.len().min(6)];
        return Err(format!("the initrd starts with {start:?}, not the newc magic 070701"));
    }
    let list = entries(archive)?;
    let check =
        list.iter().find(|e| e.name == CHECK_FILE).ok_or(format!("no {CHECK_FILE} in the archive"))?;
    let text =
        core::str::from_utf8(&archive[check.data.clone()]).map_err(|_| "the check file is not text")?;
    let want = u64::from_str_radix(text.trim(), 16).map_err(|_| format!("bad check file `{text}`"))?;
    let got = fnv1a(&archive[..check.offset]);
    if got != want {
        return Err(format!(
            "the archive's bytes differ from what xtask wrote: FNV-1a {got:#x}, expected {want:#x}"
        ));
    }
    for needed in ["etc/passwd", "bin", "dev", "proc", "sys", "tmp"] {
        if !list.iter().any(|e| e.name == needed) {
            return Err(format!("the initramfs has no {needed}"));
        }
    }
    Ok(())
}

fn memory_is_reserved(_: &TestEnv<'_>) -> Result<(), String> {
    let archive = crate::bootinfo::initrd().ok_or("the kernel was booted without an initial RAM disk")?;
    let offset = crate::memory::phys_to_virt(PhysAddr::new(0)).as_u64();
    let start = archive.as_ptr() as u64 - offset;
    let end = start + archive.len() as u64;
    let usable = crate::memory::boot_memory().ok_or("no boot memory map")?;
    for r in usable.ranges() {
        if r.start.as_u64() < end && start < r.end.as_u64() {
            return Err(format!(
                "the initrd at {start:#x}..{end:#x} overlaps usable memory {:#x}..{:#x}",
                r.start.as_u64(),
                r.end.as_u64()
            ));
        }
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["initrd": arrived_whole, memory_is_reserved];
