//! QEMU's firmware configuration device (`fw_cfg`), I/O port interface.
//!
//! xtask passes the kernel arguments as a fw_cfg file
//! (`-fw_cfg name=opt/kernel/cmdline,string=...`), because the bootloader
//! has no command line of its own. Protocol (QEMU docs/specs/fw_cfg.rst):
//! write a 16-bit selector to port 0x510, then read the item byte by byte
//! from port 0x511. Item 0 is the signature `QEMU`; item 0x19 is the file
//! directory: a big-endian u32 count, then 64-byte entries {size: u32 BE,
//! select: u16 BE, reserved: u16, name: [u8; 56]}.
#![cfg(target_os = "none")]

use x86_64::instructions::port::Port;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;

/// Why a fw_cfg file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwCfgError {
    /// No fw_cfg device (not QEMU, or it is disabled).
    NoDevice,
    /// The device has no file of that name.
    NotFound,
    /// The file is larger than the caller's buffer.
    TooLarge { size: usize },
}

fn select(key: u16) {
    // SAFETY: 0x510 is QEMU's fw_cfg selector port on the PC machine;
    // selecting an item has no effect beyond the device.
    unsafe { Port::<u16>::new(SELECTOR_PORT).write(key) };
}

fn read_bytes(buf: &mut [u8]) {
    let mut data = Port::<u8>::new(DATA_PORT);
    for b in buf {
        // SAFETY: reading the data port returns the next byte of the
        // selected item (0 past its end).
        *b = unsafe { data.read() };
    }
}

/// Reads the fw_cfg file `name` into `buf`; returns its length.
pub fn read_file(name: &str, buf: &mut [u8]) -> Result<usize, FwCfgError> {
    let mut sig = [0u8; 4];
    select(SIGNATURE);
    read_bytes(&mut sig);
    if &sig != b"QEMU" {
        return Err(FwCfgError::NoDevice);
    }
    select(FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    for _ in 0..u32::from_be_bytes(count) {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as usize;
        let key = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let len = raw_name.iter().position(|&b| b == 0).unwrap_or(raw_name.len());
        if &raw_name[..len] != name.as_bytes() {
            continue;
        }
        if size > buf.len() {
            return Err(FwCfgError::TooLarge { size });
        }
        select(key);
        read_bytes(&mut buf[..size]);
        return Ok(size);
    }
    Err(FwCfgError::NotFound)
}
