//! The swap header: page 0 of a swap area, in the format of Linux `mkswap`
//! version 1, read by [`parse`] at swapon and written by [`format`] (xtask
//! makes swap images with it; tests make good and bad headers with it).
//!
//! ## Layout (one 4 KiB page, mm-reference §5)
//!
//! ```text
//! offset  size      field
//!      0  1024      boot bits (left alone: a disk label or boot block may live there)
//!   1024     4      version (u32, must be 1)
//!   1028     4      last_page (u32): the last page of the area
//!   1032     4      nr_badpages (u32), at most MAX_BAD_PAGES
//!   1036    16      uuid
//!   1052    16      volume label (NUL-padded)
//!   1068   468      padding (117 u32)
//!   1536  4*n       bad pages (u32 each)
//!   4086    10      magic "SWAPSPACE2"
//! ```
//!
//! The numbers are in the byte order of the machine that ran `mkswap`. A
//! header whose version reads `0x0100_0000` was written on a machine of
//! the other byte order: it is accepted and every number swapped
//! ([`SwapHeader::byte_swapped`]). Our targets are little-endian, so
//! [`format`] writes little-endian.
//!
//! ## Trust
//!
//! The page comes from a disk: every field is an allegation. [`parse`]
//! checks them all and answers a [`HeaderError`] that says what is wrong
//! and how to fix it; nothing in it panics. The kernel keeps running
//! without a swap area whose header is refused.

use alloc::vec::Vec;
use core::fmt;

use crate::pgtable::format::MAX_SWAP_OFFSET;

/// Size of the header page (and of every slot): 4 KiB, whatever the host's
/// page size was when the area was made (`mkswap -p 4096`).
pub const HEADER_SIZE: usize = 4096;
/// The signature of a version-1 header, in the last 10 bytes of page 0.
pub const MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// The signature of the old version-0 format (a bitmap of good pages,
/// unsupported since Linux 2.5).
pub const OLD_MAGIC: &[u8; 10] = b"SWAP-SPACE";
/// The most bad pages the list between offset 1536 and the magic can hold:
/// (4096 − 10 − 1536) / 4.
pub const MAX_BAD_PAGES: usize = (HEADER_SIZE - MAGIC.len() - BAD_PAGES_AT) / 4;
/// Longest volume label.
pub const LABEL_LEN: usize = 16;

const VERSION_AT: usize = 1024;
const LAST_PAGE_AT: usize = 1028;
const NR_BAD_AT: usize = 1032;
const UUID_AT: usize = 1036;
const LABEL_AT: usize = 1052;
const BAD_PAGES_AT: usize = 1536;
const MAGIC_AT: usize = HEADER_SIZE - MAGIC.len();

const _: () = assert!(MAX_BAD_PAGES == 637);
const _: () = assert!(LABEL_AT + LABEL_LEN <= BAD_PAGES_AT);
const _: () = assert!(BAD_PAGES_AT + 4 * MAX_BAD_PAGES <= MAGIC_AT);

/// A checked swap header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapHeader {
    /// The last page of the area, as the header says (the area is pages
    /// `0..=last_page`).
    pub last_page: u64,
    /// Usable pages, page 0 (the header) and bad pages included: slot
    /// offsets are `1..nr_pages`. `min(MAX_SWAP_OFFSET + 1, last_page + 1)`.
    pub nr_pages: u64,
    /// The bad pages, sorted, without repeats; each in `1..=last_page`.
    pub bad_pages: Vec<u32>,
    /// The uuid `mkswap` chose (or [`format`] derived).
    pub uuid: [u8; 16],
    /// The volume label, NUL-padded.
    pub label: [u8; LABEL_LEN],
    /// The header was written on a machine of the other byte order.
    pub byte_swapped: bool,
}

impl SwapHeader {
    /// The label without its NUL padding.
    pub fn label_bytes(&self) -> &[u8] {
        let len = self.label.iter().position(|&b| b == 0).unwrap_or(LABEL_LEN);
        &self.label[..len]
    }

    /// Pages that can hold data: usable pages minus the header and the
    /// bad ones.
    pub fn nr_good_pages(&self) -> u64 {
        self.nr_pages.saturating_sub(1 + self.bad_pages.len() as u64)
    }
}

/// Why a swap header was refused (by [`parse`]) or could not be made (by
/// [`format`]). All but the last two are the disk's fault: the area must be
/// remade with `mkswap` (or the device given is not the one meant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The caller passed a page of `len` bytes, not 4096 (a kernel bug,
    /// or a device smaller than one page).
    WrongSize { len: usize },
    /// The last 10 bytes are not `SWAPSPACE2`: not a swap area.
    NoSignature,
    /// The signature is the old `SWAP-SPACE` (version 0), unsupported.
    OldFormat,
    /// The version is neither 1 nor 1 in the other byte order.
    BadVersion { version: u32 },
    /// `last_page` is 0: the area would have no page besides the header.
    NoLastPage,
    /// The header describes more pages than the device has.
    BeyondDevice { nr_pages: u64, device_pages: u64 },
    /// More bad pages than the header can list.
    TooManyBadPages { nr: u32 },
    /// A bad page is 0 (the header) or beyond `last_page`.
    BadPageOutOfRange { page: u32, last_page: u64 },
    /// Every page besides the header is bad.
    NoGoodPage,
    /// [`format`] only: a label longer than 16 bytes.
    LabelTooLong { len: usize },
    /// [`format`] only: the header stores `last_page` in 32 bits, so an
    /// area has at most 2^32 pages (16 TiB).
    TooLarge { total_pages: u64 },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WrongSize { len } => {
                write!(f, "swap header: page 0 is {len} bytes, not {HEADER_SIZE} (is the device smaller than 4 KiB?)")
            }
            Self::NoSignature => write!(
                f,
                "no swap signature: the last 10 bytes of page 0 are not SWAPSPACE2 (make the area with mkswap)"
            ),
            Self::OldFormat => write!(
                f,
                "old swap format: the signature is SWAP-SPACE (version 0), which is not supported \
                 (remake the area with mkswap)"
            ),
            Self::BadVersion { version } => write!(
                f,
                "swap header version {version:#x} is not supported: only version 1 is (remake the area with mkswap)"
            ),
            Self::NoLastPage => {
                write!(f, "swap header: last_page is 0, so the area has no page for data (remake it with mkswap)")
            }
            Self::BeyondDevice { nr_pages, device_pages } => write!(
                f,
                "swap header describes {nr_pages} pages but the device has only {device_pages} \
                 (the area is shorter than its header says: remake it with mkswap on this device)"
            ),
            Self::TooManyBadPages { nr } => write!(
                f,
                "swap header lists {nr} bad pages, more than the {MAX_BAD_PAGES} a header can hold \
                 (corrupt header: remake the area with mkswap)"
            ),
            Self::BadPageOutOfRange { page, last_page } => write!(
                f,
                "swap header lists bad page {page}, outside 1..={last_page} \
                 (corrupt header: remake the area with mkswap)"
            ),
            Self::NoGoodPage => {
                write!(f, "swap header: every page but the header is bad, nothing is usable (use another device)")
            }
            Self::LabelTooLong { len } => {
                write!(f, "swap label is {len} bytes, longer than the {LABEL_LEN} a header can hold")
            }
            Self::TooLarge { total_pages } => write!(
                f,
                "swap area of {total_pages} pages is too large: a header holds at most 2^32 pages (16 TiB)"
            ),
        }
    }
}

/// Reads a `u32` at `at`, in the header's byte order.
fn read_u32(page: &[u8], at: usize, swapped: bool) -> u32 {
    let bytes = [page[at], page[at + 1], page[at + 2], page[at + 3]];
    let value = u32::from_le_bytes(bytes);
    if swapped {
        value.swap_bytes()
    } else {
        value
    }
}

fn write_u32(page: &mut [u8], at: usize, value: u32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Checks page 0 of a device of `device_pages` 4 KiB pages and returns
/// what it says. `page` must be the device's first 4096 bytes.
///
/// The checks, in order: size of `page`; magic (the old version-0 magic
/// is recognised and refused); version 1 in either byte order; `last_page`
/// non-zero; the usable pages fit in the device; at most
/// [`MAX_BAD_PAGES`] bad pages, each in `1..=last_page`; at least one good
/// page besides the header.
pub fn parse(page: &[u8], device_pages: u64) -> Result<SwapHeader, HeaderError> {
    if page.len() != HEADER_SIZE {
        return Err(HeaderError::WrongSize { len: page.len() });
    }
    let magic = &page[MAGIC_AT..];
    if magic == OLD_MAGIC {
        return Err(HeaderError::OldFormat);
    }
    if magic != MAGIC {
        return Err(HeaderError::NoSignature);
    }
    let byte_swapped = match read_u32(page, VERSION_AT, false) {
        1 => false,
        0x0100_0000 => true,
        version => return Err(HeaderError::BadVersion { version }),
    };
    let last_page = u64::from(read_u32(page, LAST_PAGE_AT, byte_swapped));
    if last_page == 0 {
        return Err(HeaderError::NoLastPage);
    }
    let nr_pages = core::cmp::min(MAX_SWAP_OFFSET + 1, last_page + 1);
    if nr_pages > device_pages {
        return Err(HeaderError::BeyondDevice { nr_pages, device_pages });
    }
    let nr_bad = read_u32(page, NR_BAD_AT, byte_swapped);
    if nr_bad as usize > MAX_BAD_PAGES {
        return Err(HeaderError::TooManyBadPages { nr: nr_bad });
    }
    let mut bad_pages = Vec::with_capacity(nr_bad as usize);
    for i in 0..nr_bad as usize {
        let bad = read_u32(page, BAD_PAGES_AT + 4 * i, byte_swapped);
        if bad == 0 || u64::from(bad) > last_page {
            return Err(HeaderError::BadPageOutOfRange { page: bad, last_page });
        }
        // A bad page beyond the usable pages cannot be a slot anyway.
        if u64::from(bad) < nr_pages {
            bad_pages.push(bad);
        }
    }
    bad_pages.sort_unstable();
    bad_pages.dedup();
    if nr_pages - 1 <= bad_pages.len() as u64 {
        return Err(HeaderError::NoGoodPage);
    }
    let mut uuid = [0; 16];
    uuid.copy_from_slice(&page[UUID_AT..UUID_AT + 16]);
    let mut label = [0; LABEL_LEN];
    label.copy_from_slice(&page[LABEL_AT..LABEL_AT + LABEL_LEN]);
    Ok(SwapHeader { last_page, nr_pages, bad_pages, uuid, label, byte_swapped })
}

/// Builds a version-1 header for a device of `total_pages` 4 KiB pages
/// (`last_page = total_pages - 1`), with `bad_pages` and a `label` of at
/// most 16 bytes. The uuid is derived from the size, the bad pages and the
/// label (the same inputs give the same image), marked as an RFC 9562
/// version-8 (custom) uuid. Everything [`parse`] would refuse is refused
/// here with the same error, so the result always parses.
pub fn format(total_pages: u64, bad_pages: &[u32], label: &[u8]) -> Result<[u8; HEADER_SIZE], HeaderError> {
    if label.len() > LABEL_LEN {
        return Err(HeaderError::LabelTooLong { len: label.len() });
    }
    if total_pages > 1 << 32 {
        return Err(HeaderError::TooLarge { total_pages });
    }
    let last_page = total_pages.saturating_sub(1);
    if bad_pages.len() > MAX_BAD_PAGES {
        return Err(HeaderError::TooManyBadPages { nr: bad_pages.len() as u32 });
    }
    let mut page = [0u8; HEADER_SIZE];
    write_u32(&mut page, VERSION_AT, 1);
    write_u32(&mut page, LAST_PAGE_AT, last_page as u32);
    write_u32(&mut page, NR_BAD_AT, bad_pages.len() as u32);
    for (i, &bad) in bad_pages.iter().enumerate() {
        write_u32(&mut page, BAD_PAGES_AT + 4 * i, bad);
    }
    page[UUID_AT..UUID_AT + 16].copy_from_slice(&derive_uuid(total_pages, bad_pages, label));
    page[LABEL_AT..LABEL_AT + label.len()].copy_from_slice(label);
    page[MAGIC_AT..].copy_from_slice(MAGIC);
    // The remaining checks (last_page, bad-page ranges, a good page left)
    // are parse's own: one place decides what a valid header is.
    parse(&page, total_pages)?;
    Ok(page)
}

/// A uuid from the inputs of [`format`]: two 64-bit FNV-1a hashes with
/// different starting values, then the version (8) and variant (0b10) bits.
fn derive_uuid(total_pages: u64, bad_pages: &[u32], label: &[u8]) -> [u8; 16] {
    fn fnv1a(mut hash: u64, bytes: impl Iterator<Item = u8>) -> u64 {
        for b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
    let input = || {
        total_pages
            .to_le_bytes()
            .into_iter()
            .chain(bad_pages.iter().flat_map(|b| b.to_le_bytes()))
            .chain(label.iter().copied())
    };
    let high = fnv1a(0xcbf2_9ce4_8422_2325, input());
    let low = fnv1a(0x6c62_272e_07bb_0142, input());
    let mut uuid = [0; 16];
    uuid[..8].copy_from_slice(&high.to_be_bytes());
    uuid[8..].copy_from_slice(&low.to_be_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}
