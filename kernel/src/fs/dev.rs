//! The device files of `/dev`: the console, the null device, and the
//! virtio disks as raw block devices.
//!
//! ## `/dev/console`
//!
//! Writes go to the kernel console ([`crate::console::write_bytes`]: whole
//! under the console lock, so a line of a program does not interleave
//! with kernel lines mid-way). Reads return 0, end of file: there is no
//! keyboard. It is a terminal as far as `ioctl` goes: `TCGETS` answers
//! a cooked-mode `termios`, `TIOCGWINSZ` 24x80, `TCSETS*` are accepted
//! and change nothing.
//!
//! ## `/dev/null`
//!
//! Reads: end of file. Writes: taken whole, dropped.
//!
//! ## `/dev/vda`, `/dev/vdb`, ...: raw disks
//!
//! The disks of [`crate::drivers::blk::disks`], read and written the way
//! Linux's `O_DIRECT` does: the data moves straight between the disk and
//! the caller's pages, with no copy. The file offset, the length and the
//! user buffer's address must each be a multiple of a sector (512 bytes,
//! else `EINVAL`); a transfer is cut at the end of the disk (a read there
//! returns 0, a write `ENOSPC`).
//!
//! A transfer pins the user's pages first (`AddressSpace::get_user_pages`
//! with `Hold::Pin`, the FOLL_PIN of Linux: a page under a pin is not
//! swapped out, migrated or shared copy-on-write away from the process, so
//! the device's writes land in the page the process sees), at most
//! [`PIN_BATCH`] pages at a time; a read pins for writing (the pages are
//! made writable and exclusive first: a read into a page shared with a
//! fork relative copies it before the device writes). Each page's part of
//! the buffer becomes one sector transfer (`read_sectors`/`write_sectors`;
//! physically adjacent parts are merged), then the pins are released. A
//! buffer the process may not access fails the pin: `EFAULT`; a disk
//! error: `EIO`. This is `mm::gup`'s first user outside the tests.
//!
//! ### The other hold: `rawdisk_hold=get` (seed 004's lab)
//!
//! The kernel argument `rawdisk_hold=get` ([`set_raw_hold`], at boot)
//! makes every transfer take plain references instead (`Hold::Get`, the
//! FOLL_GET of Linux), the way `O_DIRECT` worked in Linux before it moved
//! to pins; `rawdisk_hold=pin` (the default) is the production behaviour.
//! A reference keeps the frame allocated, nothing more: reclaim may unmap
//! the page to swap during the transfer (it writes the page and keeps it
//! in the swap cache, the reference refusing the free), and a fork makes
//! it shared, so the process's next write copies it away from the device.
//! The first is made safe by the swap entry's exclusive bit (seed 004:
//! the page comes back as the process's own, the same frame); the second
//! is not safe at all, as it never was in Linux. `user::rawdisk_get`
//! replays seed 004 with it (`docs/src/swapin.md`).
//!
//! A reference the device wrote through is given back under the folio
//! lock ([`release_written`]): reclaim writes a folio and then frees it
//! only if nobody else holds it, all under that lock, so the release
//! cannot fall between a write that missed the device's bytes and the
//! free (the bytes would then live only in a freed frame). Before or
//! after that critical section, the folio is either written with the
//! bytes in it or kept and written again before it is ever freed.
//!
//! The hold is one word read with a relaxed load: it is set once on the
//! boot CPU before any process runs.

use crate::drivers::blk::{self, BlockDevice, SECTOR_BYTES};
use crate::fs::abi;
use crate::fs::file::{File, IoBuf, Stat};
use crate::fs::Errno;
use crate::vm::space::{find_space, release_user_pages};
use crate::vm::uaccess;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use mm::gup::Hold;
use mm::{PhysAddr, VirtAddr};

/// The block major of the disks in `stat` (Linux gives virtio-blk a
/// dynamic major; 254 is what it usually gets).
pub const VIRTBLK_MAJOR: u32 = 254;
/// The most pages one raw transfer pins at a time.
pub const PIN_BATCH: usize = 256;
const PAGE: u64 = 4096;

/// True when raw-disk transfers take plain references (`rawdisk_hold=get`)
/// instead of pins (module doc).
static HOLD_GET: AtomicBool = AtomicBool::new(false);

/// Chooses the hold raw-disk transfers take (`rawdisk_hold=`; module
/// doc). Boot CPU, before any process runs.
pub fn set_raw_hold(hold: Hold) {
    HOLD_GET.store(hold == Hold::Get, Ordering::Relaxed);
}

/// The hold raw-disk transfers take.
pub fn raw_hold() -> Hold {
    if HOLD_GET.load(Ordering::Relaxed) {
        Hold::Get
    } else {
        Hold::Pin
    }
}

/// Gives back plain references (`Hold::Get`) the device wrote through,
/// each under its folio's lock (module doc: not between reclaim's write
/// of the folio and its free). Task context, no spin lock held: the lock
/// may be held across a disk write, so this yields while it waits.
fn release_written(pages: &[PhysAddr]) {
    let memmap = crate::memory::frame_allocator().memmap();
    for &pa in pages {
        let folio = mm::folio::folio_of(memmap, pa.pfn())
            .unwrap_or_else(|| panic!("dev: {pa} held by a raw transfer is not a folio page"));
        while !folio.try_lock() {
            crate::task::sched::yield_now();
        }
        let last = mm::gup::release(memmap, pa, Hold::Get);
        folio.unlock();
        if let Some(folio) = last {
            crate::vm::folios::free_folio(folio);
        }
    }
}

/// `/dev/console`.
pub struct Console {
    pub stat: Stat,
}

impl File for Console {
    fn read(&self, _: u64, _: &mut IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Ok(0)
    }
    fn write(&self, _: u64, buf: &IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        let mut bounce = vec![0u8; len.min(512)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(bounce.len());
            if let Err(e) = buf.take(done, &mut bounce[..n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            crate::console::write_bytes(&bounce[..n]);
            done += n;
        }
        Ok(done)
    }
    fn stat(&self) -> Stat {
        self.stat
    }
    fn seekable(&self) -> bool {
        false
    }
    fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        use linux_raw_sys::ioctl::{TCGETS, TCSETS, TCSETSF, TCSETSW, TIOCGWINSZ};
        match cmd {
            TCGETS => uaccess::copy_to_user(arg, &abi::console_termios())?,
            TIOCGWINSZ => uaccess::copy_to_user(arg, &abi::console_winsize())?,
            TCSETS | TCSETSW | TCSETSF => {}
            _ => return Err(Errno::ENOTTY),
        }
        Ok(0)
    }
}

/// `/dev/null`.
pub struct Null {
    pub stat: Stat,
}

impl File for Null {
    fn read(&self, _: u64, _: &mut IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Ok(0)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        Ok(len)
    }
    fn stat(&self) -> Stat {
        self.stat
    }
}

/// The disks' names, in [`blk::disks`] order (`vda`, ...).
pub fn disk_names() -> Vec<String> {
    blk::disks().iter().map(|d| String::from(d.name())).collect()
}

/// The size of disk `i` in bytes (0 if there is none).
pub fn disk_bytes(i: usize) -> u64 {
    blk::disks().get(i).map_or(0, |d| d.capacity_pages() * PAGE)
}

/// An open raw disk (module doc).
pub struct RawDisk {
    disk: Option<&'static BlockDevice>,
    stat: Stat,
}

impl RawDisk {
    pub fn new(index: usize, stat: Stat) -> RawDisk {
        RawDisk { disk: blk::disks().get(index), stat }
    }

    /// Moves `len` bytes between disk offset `offset` and user memory at
    /// `buf` (module doc).
    fn transfer(&self, op: blk::Op, offset: u64, buf: u64, len: usize) -> Result<usize, Errno> {
        let disk = self.disk.ok_or(Errno::ENXIO)?;
        if !offset.is_multiple_of(SECTOR_BYTES)
            || !buf.is_multiple_of(SECTOR_BYTES)
            || !(len as u64).is_multiple_of(SECTOR_BYTES)
        {
            return Err(Errno::EINVAL);
        }
        let size = disk.capacity_pages() * PAGE;
        if offset >= size {
            return if op == blk::Op::Read || len == 0 { Ok(0) } else { Err(Errno::ENOSPC) };
        }
        let len = (len as u64).min(size - offset);
        if len == 0 {
            return Ok(0);
        }
        buf.checked_add(len).filter(|e| *e <= crate::vm::space::USER_END).ok_or(Errno::EFAULT)?;
        let root = crate::task::sched::current_root().ok_or(Errno::EFAULT)?;
        let space = find_space(root).ok_or(Errno::EFAULT)?;
        let mut done = 0u64;
        while done < len {
            let first_page = (buf + done) & !(PAGE - 1);
            let end = (buf + len).min(first_page + PIN_BATCH as u64 * PAGE);
            let nr_pages = (end - first_page).div_ceil(PAGE) as usize;
            let write_pages = op == blk::Op::Read;
            let hold = raw_hold();
            let pins = space
                .get_user_pages(VirtAddr::new(first_page), nr_pages, write_pages, hold)
                .map_err(|_| Errno::EFAULT)?;
            // The parts of the buffer in each pinned page, merged where
            // physically adjacent: (physical address, bytes).
            let mut runs: Vec<(PhysAddr, u64)> = Vec::new();
            for (i, pa) in pins.iter().enumerate() {
                let va = first_page + i as u64 * PAGE;
                let from = va.max(buf + done);
                let to = (va + PAGE).min(end);
                let part = PhysAddr::new(pa.as_u64() + (from - va));
                match runs.last_mut() {
                    Some((start, n)) if start.as_u64() + *n == part.as_u64() => *n += to - from,
                    _ => runs.push((part, to - from)),
                }
            }
            let mut sector = (offset + done) / SECTOR_BYTES;
            let mut result = Ok(());
            for (pa, n) in &runs {
                let nr = (n / SECTOR_BYTES) as usize;
                // SAFETY: `pa..pa + n` lies in pages we hold pins (or,
                // with `rawdisk_hold=get`, references) on until after the
                // transfer returns (released below), so the frames stay
                // allocated and in place (a held page is neither freed,
                // migrated nor reused: migration, splitting and reclaim's
                // free all need a reference count without ours); the
                // kernel touches them no other way meanwhile (reclaim may
                // read a referenced page to write it to swap: bytes, read
                // by a device). The process may touch its own buffer
                // during the transfer, as with O_DIRECT on Linux: those
                // are its bytes to race on.
                result = unsafe {
                    match op {
                        blk::Op::Read => disk.read_sectors(sector, *pa, nr),
                        blk::Op::Write => disk.write_sectors(sector, *pa, nr),
                    }
                };
                if result.is_err() {
                    break;
                }
                sector += nr as u64;
            }
            match hold {
                Hold::Get if write_pages => release_written(&pins),
                _ => release_user_pages(&pins, hold),
            }
            match result {
                Ok(()) => done = end - buf,
                Err(blk::IoError::ReadOnly { .. }) => {
                    return if done > 0 { Ok(done as usize) } else { Err(Errno::EROFS) }
                }
                Err(_) => return if done > 0 { Ok(done as usize) } else { Err(Errno::EIO) },
            }
        }
        Ok(done as usize)
    }
}

impl RawDisk {
    /// Moves `len` bytes between disk offset `offset` and the kernel
    /// buffer `bytes` (`sendfile`'s), through one bounce frame of ours a
    /// page at a time: the device can only reach frames, and a heap
    /// buffer is not known to be physically contiguous. The same rules as
    /// a user transfer: sector-aligned offset and length (`EINVAL`), cut
    /// at the end of the disk, `EIO`/`EROFS` on a disk error after nothing
    /// moved, else what moved.
    fn bounce(&self, op: blk::Op, offset: u64, bytes: &mut [u8], len: usize) -> Result<usize, Errno> {
        let disk = self.disk.ok_or(Errno::ENXIO)?;
        if !offset.is_multiple_of(SECTOR_BYTES) || !(len as u64).is_multiple_of(SECTOR_BYTES) {
            return Err(Errno::EINVAL);
        }
        let size = disk.capacity_pages() * PAGE;
        if offset >= size {
            return if op == blk::Op::Read || len == 0 { Ok(0) } else { Err(Errno::ENOSPC) };
        }
        let len = (len as u64).min(size - offset).min(bytes.len() as u64) as usize;
        let frame = crate::memory::alloc_frames(0).map_err(|_| Errno::ENOMEM)?;
        let page = crate::memory::phys_to_virt(frame).as_u64() as *mut u8;
        let mut done = 0usize;
        let mut result = Ok(());
        while done < len {
            let n = (len - done).min(PAGE as usize);
            let sector = (offset + done as u64) / SECTOR_BYTES;
            let nr = n / SECTOR_BYTES as usize;
            // SAFETY: `frame` is a page we allocated above and free below;
            // nobody else knows it, so this slice is its only access
            // while it lives, and the device touches it only inside the
            // `read_sectors`/`write_sectors` calls, not while the slice is
            // used.
            let staging = unsafe { core::slice::from_raw_parts_mut(page, n) };
            result = match op {
                blk::Op::Read => {
                    // SAFETY: the frame is ours and allocated (above) for
                    // the whole call; `nr` sectors fit in one page.
                    let r = unsafe { disk.read_sectors(sector, frame, nr) };
                    r.map(|()| bytes[done..done + n].copy_from_slice(staging))
                }
                blk::Op::Write => {
                    staging.copy_from_slice(&bytes[done..done + n]);
                    // SAFETY: as for the read.
                    unsafe { disk.write_sectors(sector, frame, nr) }
                }
            };
            if result.is_err() {
                break;
            }
            done += n;
        }
        crate::memory::free_frames(frame, 0);
        match result {
            Ok(()) => Ok(done),
            Err(_) if done > 0 => Ok(done),
            Err(blk::IoError::ReadOnly { .. }) => Err(Errno::EROFS),
            Err(_) => Err(Errno::EIO),
        }
    }
}

impl File for RawDisk {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        match buf {
            IoBuf::User(at) => self.transfer(blk::Op::Read, offset, *at, len),
            IoBuf::Kernel(bytes) => self.bounce(blk::Op::Read, offset, bytes, len),
        }
    }
    fn write(&self, offset: u64, buf: &IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        match buf {
            IoBuf::User(at) => self.transfer(blk::Op::Write, offset, *at, len),
            IoBuf::Kernel(bytes) => {
                // The bounce copies in and out of one slice; a write only
                // reads it, so a copy of the part it writes will do.
                let mut copy = bytes.get(..len).ok_or(Errno::EFAULT)?.to_vec();
                self.bounce(blk::Op::Write, offset, &mut copy, len)
            }
        }
    }
    fn stat(&self) -> Stat {
        self.stat
    }
}
