//! Disks attached to the guest: virtio-blk over PCI on both architectures,
//! backed by a raw image, or by a raw image behind QEMU's `blkdebug` error
//! injection.
//!
//! Every disk is `-drive if=none,...,id=ID -device virtio-blk-pci,drive=ID,
//! serial=SERIAL`. The guest finds its disks by serial (the kernel reads it
//! with the virtio-blk GET_ID request): [`SWAP_SERIAL`] is the swap disk,
//! a serial starting with [`FAULTY_SERIAL_PREFIX`] the faulty disk,
//! [`READ_ONLY_SERIAL`] the read-only disk.
//!
//! ## The faulty disk
//!
//! A scratch image of [`FAULTY_DISK_PAGES`] pages whose [`FaultPlan`] makes
//! every write touching pages [`FaultPlan::write_fail`] and every read
//! touching pages [`FaultPlan::read_fail`] fail with EIO; the other pages
//! work. QEMU's `blkdebug` driver does it, from a config file of
//! `[inject-error]` sections ([`FaultPlan::blkdebug_config`]):
//!
//! ```text
//! [inject-error]
//! event = "write_aio"     # armed by every guest write (the raw format above
//! errno = "5"             # blkdebug announces write_aio/read_aio on it)
//! sector = "128"          # fails a request that covers this 512-byte sector
//! ```
//!
//! No `once = "on"`: a rule fails every matching request. A rule names one
//! sector and fails any request covering it, so the plan has one rule per
//! page (its first sector, `page * 8`); the guest reads and writes whole
//! pages, so every request touching a page covers that sector. QEMU may
//! merge adjacent guest requests: a request next to a failing page may then
//! fail too, so tests keep healthy I/O away from the failing ranges. The
//! guest learns the ranges from the disk's serial, `faulty:wA-B:rC-D`
//! ([`FaultPlan::serial`]). Checked with QEMU 7.2 (`qemu-io` and the guest
//! tests). The drive reports errors to the guest (`werror=report,
//! rerror=report`) rather than stopping the VM.
//!
//! ## The stalling disk
//!
//! A disk that stops answering: a blank scratch image of
//! [`STALLING_DISK_PAGES`] pages (serial [`STALLING_SERIAL`]) whose QEMU
//! drive is throttled to one byte a second with a burst of
//! [`STALLING_DISK_BURST`] bytes (`throttling.bps-total=1,
//! throttling.bps-total-max=...`). QEMU's throttle lets a request through
//! while the bytes it let through so far are within the burst, and makes
//! the next one wait until they have drained at one byte a second: about an
//! hour for a 4 KiB page. So the disk answers its first few requests and
//! then none within any test's lifetime: QEMU's own 512-byte look at
//! page 0 when it attaches the disk, the kernel's look for a swap header at
//! boot (the image is blank: no swap), then as much as fits in the rest of
//! the burst (a test's header write and its swapon's read, and a page or
//! two). A reset of the device (virtio status 0) drains the throttled
//! requests: QEMU completes them before the reset returns, which is how the
//! kernel gets a stalled request's buffers back (`drivers::blk` in the
//! kernel, "A disk that stops answering"). Checked with QEMU 7.2.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use crate::config::{parse_size, ConfigError, SizeUnit};
use crate::machine::escape_option_value;

/// The serial of the swap disk.
pub const SWAP_SERIAL: &str = "swap0";
/// The serial prefix of the faulty disk (the ranges follow, see the module doc).
pub const FAULTY_SERIAL_PREFIX: &str = "faulty:";
/// The serial of the read-only disk: a small image with a valid swap
/// header, attached read-only (`readonly=on`, so virtio-blk offers
/// `VIRTIO_BLK_F_RO`), which swapon must refuse.
pub const READ_ONLY_SERIAL: &str = "readonly0";
/// Size of the read-only disk: 1 MiB.
pub const READ_ONLY_DISK_PAGES: u64 = 256;
/// Bytes in a disk page (the kernel's page size) and sectors in one.
pub const PAGE_BYTES: u64 = 4096;
pub const SECTORS_PER_PAGE: u64 = PAGE_BYTES / 512;
/// Size of the faulty disk: 8 MiB.
pub const FAULTY_DISK_PAGES: u64 = 2048;
/// The serial of the stalling disk (module doc).
pub const STALLING_SERIAL: &str = "stalling";
/// Size of the stalling disk: 1 MiB.
pub const STALLING_DISK_PAGES: u64 = 256;
/// Bytes the stalling disk answers before it stops (module doc): QEMU's
/// 512 and three pages, and most of a fourth.
pub const STALLING_DISK_BURST: u64 = 16 * 1024;
/// virtio-blk serials are at most 20 bytes.
const MAX_SERIAL: usize = 20;

/// What backs a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A raw image file.
    Raw(PathBuf),
    /// A raw image behind `blkdebug` with the rules in `config`.
    Blkdebug { config: PathBuf, image: PathBuf },
    /// A raw image whose drive stops answering after [`STALLING_DISK_BURST`]
    /// bytes (module doc, "The stalling disk").
    Stalling(PathBuf),
    /// A raw image file the guest may only read (`readonly=on`).
    ReadOnly(PathBuf),
}

/// One virtio-blk disk of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioDisk {
    /// The QEMU drive id (`[a-z0-9]`).
    pub id: String,
    /// What the guest reads as the disk's id.
    pub serial: String,
    pub backing: Backing,
}

impl VirtioDisk {
    /// The `-drive` and `-device` arguments attaching this disk.
    pub fn qemu_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| escape_option_value(&p.to_string_lossy());
        let drive = match &self.backing {
            Backing::Raw(image) => format!("file={},if=none,format=raw,id={}", path(image), self.id),
            Backing::Stalling(image) => format!(
                "file={},if=none,format=raw,id={},throttling.bps-total=1,\
                 throttling.bps-total-max={STALLING_DISK_BURST}",
                path(image),
                self.id
            ),
            Backing::ReadOnly(image) => {
                format!("file={},if=none,format=raw,readonly=on,id={}", path(image), self.id)
            }
            Backing::Blkdebug { config, image } => format!(
                "if=none,id={},driver=raw,file.driver=blkdebug,file.config={},file.image.filename={},\
                 werror=report,rerror=report",
                self.id,
                path(config),
                path(image)
            ),
        };
        let device = format!("virtio-blk-pci,drive={},serial={}", self.id, escape_option_value(&self.serial));
        vec!["-drive".into(), drive, "-device".into(), device]
    }
}

/// Which pages of the faulty disk fail (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// Writes touching these pages fail with EIO.
    pub write_fail: Range<u64>,
    /// Reads touching these pages fail with EIO.
    pub read_fail: Range<u64>,
}

/// EIO on Linux hosts.
const EIO: u32 = 5;

impl Default for FaultPlan {
    /// Writes fail on pages 16..24, reads on pages 32..40 (sectors 128..192
    /// and 256..320); pages 0..16, 24..32 and 40..2048 work.
    fn default() -> Self {
        FaultPlan { write_fail: 16..24, read_fail: 32..40 }
    }
}

impl FaultPlan {
    /// The `blkdebug` config file: one `[inject-error]` rule per failing
    /// page, on its first sector.
    pub fn blkdebug_config(&self) -> String {
        let mut out = String::from("# Made by xtask: the faulty disk's failing pages (see qemu::disk).\n");
        for (event, pages) in [("write_aio", &self.write_fail), ("read_aio", &self.read_fail)] {
            for page in pages.clone() {
                out.push_str(&format!(
                    "\n[inject-error]\nevent = \"{event}\"\nerrno = \"{EIO}\"\nsector = \"{}\"\n",
                    page * SECTORS_PER_PAGE
                ));
            }
        }
        out
    }

    /// The serial that tells the guest the ranges: `faulty:wA-B:rC-D`.
    pub fn serial(&self) -> String {
        let s = format!(
            "{FAULTY_SERIAL_PREFIX}w{}-{}:r{}-{}",
            self.write_fail.start, self.write_fail.end, self.read_fail.start, self.read_fail.end
        );
        debug_assert!(s.len() <= MAX_SERIAL, "faulty-disk serial `{s}` is longer than virtio-blk allows");
        s
    }
}

/// A disk size given on the command line (`--swap`): whole 4 KiB pages, 0
/// meaning "no disk".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSize {
    bytes: u64,
}

/// The largest swap disk: the mkswap header counts pages in 32 bits.
pub const MAX_DISK_BYTES: u64 = (1 << 32) * PAGE_BYTES;

impl DiskSize {
    /// `mib` MiB.
    pub const fn from_mib(mib: u64) -> DiskSize {
        DiskSize { bytes: mib << 20 }
    }

    pub fn bytes(self) -> u64 {
        self.bytes
    }

    pub fn pages(self) -> u64 {
        self.bytes / PAGE_BYTES
    }

    pub fn is_zero(self) -> bool {
        self.bytes == 0
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bytes {
            b if b % (1 << 30) == 0 && b > 0 => write!(f, "{}G", b >> 30),
            b if b % (1 << 20) == 0 => write!(f, "{}M", b >> 20),
            b => write!(f, "{}K", b >> 10),
        }
    }
}

impl FromStr for DiskSize {
    type Err = ConfigError;

    /// Reads `0`, `256M`, `1G`, `64MiB`, `512K` (suffixes in any case, an
    /// optional trailing `B`), or a bare number meaning MiB. A non-zero size
    /// is at least 2 pages (a swap header and one slot) and a whole number
    /// of 4 KiB pages.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |why| ConfigError::BadDiskSize { input: input.to_string(), why };
        let bytes = parse_size(input, DISK_UNITS, "unknown unit (use K, M or G)").map_err(bad)?;
        if bytes == 0 {
            return Ok(DiskSize { bytes });
        }
        if bytes % PAGE_BYTES != 0 {
            return Err(bad("it is not a whole number of 4 KiB pages"));
        }
        if bytes < 2 * PAGE_BYTES {
            return Err(bad("a swap disk needs at least 2 pages (8K): the header and one slot"));
        }
        if bytes > MAX_DISK_BYTES {
            return Err(bad("it is above the 16 TiB a swap header can describe"));
        }
        Ok(DiskSize { bytes })
    }
}

/// The units of a [`DiskSize`], worth so many bytes.
const DISK_UNITS: &[SizeUnit] = &[
    (&["", "m", "mb", "mib"], Ok(1 << 20)),
    (&["k", "kb", "kib"], Ok(1 << 10)),
    (&["g", "gb", "gib"], Ok(1 << 30)),
    (&["t", "tb", "tib"], Ok(1 << 40)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_blkdebug_disk_arguments() {
        let swap = VirtioDisk {
            id: "swap0".into(),
            serial: SWAP_SERIAL.into(),
            backing: Backing::Raw("/dev/shm/a,b.img".into()),
        };
        assert_eq!(
            swap.qemu_args(),
            [
                "-drive",
                "file=/dev/shm/a,,b.img,if=none,format=raw,id=swap0",
                "-device",
                "virtio-blk-pci,drive=swap0,serial=swap0"
            ]
        );
        let faulty = VirtioDisk {
            id: "faulty0".into(),
            serial: FaultPlan::default().serial(),
            backing: Backing::Blkdebug { config: "/t/f.conf".into(), image: "/t/f.img".into() },
        };
        assert_eq!(
            faulty.qemu_args(),
            [
                "-drive",
                "if=none,id=faulty0,driver=raw,file.driver=blkdebug,file.config=/t/f.conf,\
                 file.image.filename=/t/f.img,werror=report,rerror=report",
                "-device",
                "virtio-blk-pci,drive=faulty0,serial=faulty:w16-24:r32-40"
            ]
        );
        let stalling = VirtioDisk {
            id: "stall0".into(),
            serial: STALLING_SERIAL.into(),
            backing: Backing::Stalling("/t/s.img".into()),
        };
        assert_eq!(
            stalling.qemu_args(),
            [
                "-drive",
                "file=/t/s.img,if=none,format=raw,id=stall0,throttling.bps-total=1,\
                 throttling.bps-total-max=16384",
                "-device",
                "virtio-blk-pci,drive=stall0,serial=stalling"
            ]
        );
        let read_only = VirtioDisk {
            id: "readonly0".into(),
            serial: READ_ONLY_SERIAL.into(),
            backing: Backing::ReadOnly("/t/ro.img".into()),
        };
        assert_eq!(
            read_only.qemu_args(),
            [
                "-drive",
                "file=/t/ro.img,if=none,format=raw,readonly=on,id=readonly0",
                "-device",
                "virtio-blk-pci,drive=readonly0,serial=readonly0"
            ]
        );
    }

    #[test]
    fn the_fault_plan_has_one_rule_per_failing_page() {
        let plan = FaultPlan { write_fail: 3..5, read_fail: 7..8 };
        let text = plan.blkdebug_config();
        assert_eq!(text.matches("[inject-error]").count(), 3);
        assert!(text.contains("event = \"write_aio\"\nerrno = \"5\"\nsector = \"24\"\n"));
        assert!(text.contains("event = \"write_aio\"\nerrno = \"5\"\nsector = \"32\"\n"));
        assert!(text.contains("event = \"read_aio\"\nerrno = \"5\"\nsector = \"56\"\n"));
        assert!(!text.contains("once"));
        assert_eq!(plan.serial(), "faulty:w3-5:r7-8");
        let default = FaultPlan::default();
        assert!(default.serial().len() <= MAX_SERIAL);
        assert!(
            default.read_fail.end < FAULTY_DISK_PAGES && default.write_fail.end <= default.read_fail.start
        );
    }

    #[test]
    fn disk_sizes() {
        for (pages, spellings) in
            [(65536, &["256M", "256"][..]), (262144, &["1G", "1gib"]), (2, &["8K"]), (0, &["0"])]
        {
            for s in spellings {
                assert_eq!(s.parse::<DiskSize>().map(DiskSize::pages), Ok(pages), "{s:?}");
            }
        }
        assert!("0".parse::<DiskSize>().unwrap().is_zero());
        assert_eq!("1G".parse::<DiskSize>().unwrap().to_string(), "1G");
        assert_eq!(DiskSize::from_mib(256).to_string(), "256M");
        // Text that is no size at all: config's malformed_sizes_are_refused_alike_for_memory_and_disks.
        let why = |s: &str| match s.parse::<DiskSize>() {
            Err(ConfigError::BadDiskSize { why, .. }) => why,
            other => panic!("{s:?} gave {other:?}"),
        };
        assert_eq!(why("4K"), "a swap disk needs at least 2 pages (8K): the header and one slot");
        assert_eq!(why("5K"), "it is not a whole number of 4 KiB pages");
        assert_eq!(why("2X"), "unknown unit (use K, M or G)");
        assert_eq!(why("17T"), "it is above the 16 TiB a swap header can describe");
    }
}
