//! The AArch64 page-table entry format: [`Aarch64Format`].
//!
//! VMSAv8-64 stage 1 at EL1&0 with a 4 KiB granule and 48-bit virtual
//! addresses: four levels (0..3; `mm` calls them PGD, PUD, PMD, PTE) of 512
//! eight-byte descriptors, 4 KiB pages, 2 MiB (level 2) and 1 GiB (level 1)
//! blocks. Generic code never sees these bits: it asks [`Aarch64Format`] to
//! decode an entry into a [`Decoded`] and to encode the entries it wants.
//! With the `sim` feature (and in this crate's tests) the format also walks
//! tables as the MMU would (`HardwareWalker`).
//!
//! ## Present descriptors
//!
//! Under each field: `*` this format uses it; `0` kept zero (a descriptor
//! with it set decodes as [`Decoded::Bad`]); `=` a fixed value (other values
//! are Bad).
//!
//! A table descriptor (levels 0..2, bits\[1:0\] = 0b11):
//!
//! ```text
//!   63   62 61  60   59  58   52 51  48 47                    12 11                2  1   0
//! +-----+-----+-----+-----+-------+------+------------------------+-------------------+---+---+
//! | NS  | AP  | UXN | PXN | ign.  | res0 |   next table address   |      ignored      | 1 | 1 |
//! | Tbl | Tbl | Tbl | Tbl |       |      |                        |                   |   |   |
//! +-----+-----+-----+-----+-------+------+------------------------+-------------------+---+---+
//!    0     0     0     0     0       0               *                      0            *   *
//! ```
//!
//! No hierarchical limits (APTable, UXNTable, PXNTable): the leaf decides.
//!
//! A page (level 3, bits\[1:0\] = 0b11) or block (levels 1 and 2, bits\[1:0\]
//! = 0b01) descriptor:
//!
//! ```text
//! bits 63..32:
//!   63     59 58  56   55      54    53    52      51     50   49 48  47            32
//! +---------+------+-------+-----+-----+------+-------+----+------+----------------+
//! | PBHA /  |  SW  | DIRTY | UXN | PXN | Cont | WRITE | GP | res0 | frame address  |
//! | ignored |      |  (SW) |     |     |      | (DBM) |    |      |   (high part)  |
//! +---------+------+-------+-----+-----+------+-------+----+------+----------------+
//!      0       0       *      *     *     0       *     0     0           *
//!
//! bits 31..0:
//!   31             12|21|30  11   10   9  8     7        6     5    4    2    1     0
//! +----------------------+----+----+------+--------+-------+----+--------+----+-------+
//! | frame address (low)  | nG | AF |  SH  | AP[2]  | AP[1] | NS |  Attr  | T  | VALID |
//! |                      |    |    |      | RDONLY | USER  |    |  Indx  |    |       |
//! +----------------------+----+----+------+--------+-------+----+--------+----+-------+
//!            *             *    *    =11      *        *     0     =1      *     1
//! ```
//!
//! The frame address is bits 47..12 (page), 47..21 (2 MiB block) or 47..30
//! (1 GiB block); in a block the bits below it are RES0 and kept 0 (an
//! unaligned frame is Bad). `T` is 1 for a page and 0 for a block.
//!
//! | bit(s) | kind | meaning here |
//! | --- | --- | --- |
//! | AttrIndx 2..4 | hardware | always 1: MAIR attr1, Normal write-back |
//! | AP\[1\] 6 | hardware | USER: [`Prot::user`], EL0 may access |
//! | AP\[2\] 7 | hardware | RDONLY: set unless the page is writable *and* dirty |
//! | SH 8..9 | hardware | always 0b11, inner shareable |
//! | AF 10 | hardware | [`Leaf::young`]; an access with AF = 0 faults |
//! | nG 11 | hardware | not [`Prot::global`] |
//! | DBM 51 | hardware, used as software | WRITE: [`Prot::writable`] (see below) |
//! | PXN 53, UXN 54 | hardware | execute-never for EL1, for EL0 (see below) |
//! | 55 | software | DIRTY: [`Leaf::dirty`] |
//!
//! Execute-never: a user mapping has PXN = 1 (the kernel never executes
//! user memory) and UXN = not [`Prot::executable`]; a kernel mapping has
//! UXN = 1 and PXN = not executable.
//!
//! DBM would let a CPU with FEAT_HAFDBS clear AP\[2\] itself on the first
//! write, but only with TCR_EL1.HD = 1, which the boot path leaves 0; so
//! the bit is free to mean WRITE, as in Linux.
//!
//! Dirty and write are kept in software, as Linux does: a writable page
//! that is clean is read-only to the hardware (AP\[2\] set), so its first
//! write takes a permission fault, and the fault handler marks it dirty
//! (`mkdirty` sets DIRTY and, the page being writable, clears AP\[2\]).
//! Decoding follows Linux: dirty = DIRTY, or WRITE with AP\[2\] clear (what a
//! CPU managing DBM would leave); writable = WRITE. Write-protecting keeps
//! dirtiness in DIRTY, clears WRITE and sets AP\[2\].
//!
//! ## Invalid descriptors (swap and migration)
//!
//! With bit 0 clear the MMU ignores every other bit, so they are all
//! software bits, laid out as Linux 6.12 lays them out (`mm-reference.md`
//! §2):
//!
//! ```text
//!   63 62 61                                     12   11   10    6  5  4    3      2    1   0
//! +------+-----------------------------------------+-----+--------+-----+------+------+---+---+
//! |  0   |             offset (50 bits)            | PI  |  type  |  0  |  uw  | excl | 0 | 0 |
//! +------+-----------------------------------------+-----+--------+-----+------+------+---+---+
//!                          *                          0       *             0      *
//! ```
//!
//! - `type`: the swap area (`0..MAX_SWAP_TYPES`), or a migration type (24
//!   read, 25 read-exclusive, 26 write); any other type is Bad.
//! - `offset`: the swap slot, or for migration the PFN with young and dirty
//!   above it
//!   ([`MigrationEntry::to_offset`](mm::pgtable::MigrationEntry::to_offset)),
//!   stored as is.
//! - `excl`: the swap entry was anon-exclusive; 0 in migration entries
//!   (their type carries exclusivity).
//! - `PI` (bit 11): Linux's "present but invalid" marker (PROT_NONE, a PMD
//!   being split); unused here, so an entry with it is Bad. `uw` (uffd-wp)
//!   and the other zero bits: unused, Bad when set.
//!
//! Raw 0 is the none entry. The same layout is used at the PTE and PMD
//! levels; an invalid non-zero entry at level 0 or 1 is Bad.
//!
//! ## Assumed configuration
//!
//! - EL1, stage 1 only, TTBR0/TTBR1 with T0SZ = T1SZ = 16 (48-bit VAs) and
//!   TG0 = TG1 = 4 KiB, as `boot/aarch64/src/entry.S` sets TCR_EL1.
//! - MAIR_EL1 = 0x44ff04: attr0 Device-nGnRE, attr1 Normal write-back, attr2
//!   Normal non-cacheable. Every leaf made here uses attr1; the format has
//!   no way to express device memory (the boot tables' device blocks decode
//!   as Bad).
//! - 48-bit output addresses, no FEAT_LPA/LPA2 (bits 48..49 are RES0). The
//!   boot path sets TCR_EL1.IPS to the CPU's physical address size, at most
//!   48 bits (cortex-a72 reports 44; `max` more); a frame above it would
//!   take an address-size fault (not modelled: RAM is far below).
//! - TCR_EL1.HA = HD = 0 (FEAT_HAFDBS, which `max` has and cortex-a72 has
//!   not, is left off): the MMU never writes a
//!   descriptor. AF = 0 takes an access-flag fault and a write to AP\[2\] = 1
//!   a permission fault; the kernel sets AF and dirty itself.
//! - SCTLR_EL1.WXN = 0 (the boot path clears it). PAN is on where the CPU
//!   has it (`crate::user`): then a privileged load or store at a page with
//!   AP\[1\] takes a permission fault, and the kernel reaches user pages
//!   only with `ldtr`/`sttr`, which are checked as EL0's. The walker
//!   models a CPU without PAN (its kernel accesses may touch user pages).
//! - User pages carry AP\[1\] and PXN; kernel pages never carry AP\[1\]
//!   (so EL0 cannot read them: a permission fault) and always UXN. Decode
//!   refuses a user page without PXN and a kernel page without UXN.
//! - Break-before-make is the caller's business: changing the address or
//!   size of a valid descriptor needs invalid, TLBI, DSB in between.
#![forbid(unsafe_code)]

use mm::pgtable::format::{bits, is_partition, MIGRATION_PFN_BITS, SWAP_OFFSET_BITS};
use mm::pgtable::{Decoded, Leaf, Level, NonPresent, PageSize, PageTableFormat, Prot};
use mm::PhysAddr;
// The names the tests below take from here with `use super::*`.
#[cfg(test)]
use mm::pgtable::{MigrationEntry, SwapEntry};

// ---- Valid descriptors: hardware bits ----

/// Valid.
pub const VALID: u64 = 1 << 0;
/// With VALID: table (levels 0..2) or page (level 3) when set, block when
/// clear.
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// AttrIndx: which MAIR_EL1 attribute the mapping uses.
pub const ATTR_INDX: u64 = bits(2, 4);
/// AttrIndx 1: Normal memory, write-back (our MAIR).
pub const ATTR_NORMAL_WB: u64 = 1 << 2;
/// Non-secure (ignored at non-secure EL1; kept 0).
pub const NS: u64 = 1 << 5;
/// AP\[1\]: EL0 may access.
pub const AP_USER: u64 = 1 << 6;
/// AP\[2\]: read-only (at every exception level that may access).
pub const AP_RDONLY: u64 = 1 << 7;
/// Shareability.
pub const SH: u64 = bits(8, 9);
/// Shareability 0b11: inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// Access flag.
pub const AF: u64 = 1 << 10;
/// Not global: the translation belongs to one ASID.
pub const NG: u64 = 1 << 11;
/// The output address of a page or the next table: bits 12..47.
pub const ADDR: u64 = PageSize::Size4K.frame_mask(PHYS_ADDR_BITS);
/// The output address of a 2 MiB block: bits 21..47.
pub const ADDR_2M: u64 = PageSize::Size2M.frame_mask(PHYS_ADDR_BITS);
/// RES0 bits of a 2 MiB block below its address.
pub const RES0_2M: u64 = bits(12, 20);
/// The output address of a 1 GiB block: bits 30..47.
pub const ADDR_1G: u64 = PageSize::Size1G.frame_mask(PHYS_ADDR_BITS);
/// RES0 bits of a 1 GiB block below its address.
pub const RES0_1G: u64 = bits(12, 29);
/// Bits 48..49: RES0 without FEAT_LPA.
pub const RES0_HIGH: u64 = bits(48, 49);
/// Guarded page (FEAT_BTI; kept 0).
pub const GP: u64 = 1 << 50;
/// Dirty bit modifier, used by this format as the software WRITE bit.
pub const DBM: u64 = 1 << 51;
/// This format's name for [`DBM`]: the mapping is writable.
pub const WRITE: u64 = DBM;
/// Contiguous hint (kept 0).
pub const CONT: u64 = 1 << 52;
/// Privileged (EL1) execute-never.
pub const PXN: u64 = 1 << 53;
/// Unprivileged (EL0) execute-never.
pub const UXN: u64 = 1 << 54;
/// Software: the page is dirty.
pub const SW_DIRTY: u64 = 1 << 55;
/// Software bits 56..58 (unused).
pub const SW_OTHER: u64 = bits(56, 58);
/// Bits 59..62 (PBHA or ignored) and 63 (ignored) of a page or block.
pub const LEAF_HIGH: u64 = bits(59, 63);
/// Bits 2..11 of a table descriptor (ignored by the MMU).
pub const TABLE_IGNORED_LOW: u64 = bits(2, 11);
/// Bits 52..58 of a table descriptor (ignored by the MMU).
pub const TABLE_IGNORED_HIGH: u64 = bits(52, 58);
/// Bits 48..51 of a table descriptor: RES0 without FEAT_LPA2.
pub const TABLE_RES0: u64 = bits(48, 51);
/// PXNTable, UXNTable, APTable\[1:0\], NSTable: limits on everything below.
pub const TABLE_LIMITS: u64 = bits(59, 63);

/// Output address bits a descriptor can hold (no FEAT_LPA).
pub const PHYS_ADDR_BITS: u32 = 48;

/// The bits a page or block may carry besides its address and type.
const LEAF_FLAGS: u64 = ATTR_INDX | AP_USER | AP_RDONLY | SH | AF | NG | WRITE | PXN | UXN | SW_DIRTY;

// ---- Invalid descriptors: all software bits ----

/// The swap entry was anon-exclusive.
pub const SWP_EXCLUSIVE: u64 = 1 << 2;
/// uffd-wp (unused: 0).
pub const SWP_UFFD_WP: u64 = 1 << 3;
/// Bits 4..5: unused, 0.
pub const SWP_UNUSED_LOW: u64 = bits(4, 5);
/// Where the type starts.
pub const SWP_TYPE_SHIFT: u32 = 6;
/// The type: bits 6..10.
pub const SWP_TYPE: u64 = bits(SWP_TYPE_SHIFT, 10);
/// Linux's present-invalid marker (unused here: an entry with it is Bad).
pub const SWP_PRESENT_INVALID: u64 = 1 << 11;
/// Where the offset starts.
pub const SWP_OFFSET_SHIFT: u32 = 12;
/// The offset: bits 12..61.
pub const SWP_OFFSET: u64 = bits(SWP_OFFSET_SHIFT, SWP_OFFSET_SHIFT + SWAP_OFFSET_BITS - 1);
/// Bits 62..63: unused, 0.
pub const SWP_UNUSED_HIGH: u64 = bits(62, 63);

// Every bit of every kind of descriptor has exactly one role.
const TABLE_FIELDS: [u64; 7] =
    [VALID, TABLE_OR_PAGE, TABLE_IGNORED_LOW, ADDR, TABLE_RES0, TABLE_IGNORED_HIGH, TABLE_LIMITS];
const _: () = assert!(is_partition(&TABLE_FIELDS));
// A table descriptor's RES0 bits 48..51 are a leaf's RES0_HIGH, GP and DBM.
const _: () = assert!(is_partition(&[
    VALID,
    TABLE_OR_PAGE,
    TABLE_IGNORED_LOW,
    ADDR,
    RES0_HIGH,
    GP,
    DBM,
    TABLE_IGNORED_HIGH,
    TABLE_LIMITS
]));
const LEAF_FIELDS_4K: [u64; 20] = [
    VALID,
    TABLE_OR_PAGE,
    ATTR_INDX,
    NS,
    AP_USER,
    AP_RDONLY,
    SH,
    AF,
    NG,
    ADDR,
    RES0_HIGH,
    GP,
    DBM,
    CONT,
    PXN,
    UXN,
    SW_DIRTY,
    SW_OTHER,
    LEAF_HIGH,
    0,
];
const _: () = assert!(is_partition(&LEAF_FIELDS_4K));
const LEAF_FIELDS_2M: [u64; 20] = {
    let mut f = LEAF_FIELDS_4K;
    f[9] = ADDR_2M;
    f[19] = RES0_2M;
    f
};
const _: () = assert!(is_partition(&LEAF_FIELDS_2M));
const LEAF_FIELDS_1G: [u64; 20] = {
    let mut f = LEAF_FIELDS_4K;
    f[9] = ADDR_1G;
    f[19] = RES0_1G;
    f
};
const _: () = assert!(is_partition(&LEAF_FIELDS_1G));
const SWAP_FIELDS: [u64; 9] = [
    VALID,
    TABLE_OR_PAGE,
    SWP_EXCLUSIVE,
    SWP_UFFD_WP,
    SWP_UNUSED_LOW,
    SWP_TYPE,
    SWP_PRESENT_INVALID,
    SWP_OFFSET,
    SWP_UNUSED_HIGH,
];
const _: () = assert!(is_partition(&SWAP_FIELDS));
// Fixed values lie inside their fields.
const _: () = assert!(ATTR_NORMAL_WB & !ATTR_INDX == 0 && SH_INNER & !SH == 0);
// The type field holds every type number (0..=31), the offset field every
// swap offset and every migration offset (PFN, young, dirty).
const _: () = assert!(SWP_TYPE >> SWP_TYPE_SHIFT == 31);
const _: () = assert!(SWP_OFFSET >> SWP_OFFSET_SHIFT == (1 << SWAP_OFFSET_BITS) - 1);
const _: () = assert!(MIGRATION_PFN_BITS + 2 <= SWAP_OFFSET_BITS);
// The software dirty and write bits are not hardware permission bits.
const _: () = assert!((SW_DIRTY | WRITE) & (AP_USER | AP_RDONLY | PXN | UXN) == 0);

/// The AArch64 4 KiB-granule, 4-level page-table format (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aarch64Format;

/// Decodes a table descriptor: exactly what
/// [`Aarch64Format::make_table`] writes.
#[inline]
fn decode_table(raw: u64) -> Decoded {
    if raw & !(ADDR | VALID | TABLE_OR_PAGE) != 0 {
        return Decoded::Bad(raw);
    }
    Decoded::Table(PhysAddr::new(raw & ADDR))
}

/// Decodes a page (`size` 4 KiB) or block descriptor.
///
/// Accepts what [`Aarch64Format::make_leaf`] writes, and one more state:
/// WRITE with AP\[2\] clear but DIRTY clear ("hardware dirty", what a CPU
/// managing DBM leaves), which decodes as dirty. Rejects the states no rule
/// explains: AP\[2\] clear without WRITE (the hardware could write a page
/// the kernel thinks read-only), and WRITE with DIRTY and AP\[2\] set.
#[inline]
fn decode_leaf(raw: u64, size: PageSize) -> Decoded {
    let addr = size.frame_mask(PHYS_ADDR_BITS);
    if raw & !(addr | LEAF_FLAGS | VALID | TABLE_OR_PAGE) != 0
        || raw & ATTR_INDX != ATTR_NORMAL_WB
        || raw & SH != SH_INNER
    {
        return Decoded::Bad(raw);
    }
    let user = raw & AP_USER != 0;
    let write = raw & WRITE != 0;
    let rdonly = raw & AP_RDONLY != 0;
    let sw_dirty = raw & SW_DIRTY != 0;
    if !write && !rdonly || write && rdonly && sw_dirty {
        return Decoded::Bad(raw);
    }
    // The execute-never bit of the other privilege must be set.
    let (never, own_xn) = if user { (PXN, UXN) } else { (UXN, PXN) };
    if raw & never == 0 {
        return Decoded::Bad(raw);
    }
    Decoded::Leaf(Leaf {
        frame: PhysAddr::new(raw & addr),
        size,
        prot: Prot { writable: write, user, executable: raw & own_xn == 0, global: raw & NG == 0 },
        dirty: sw_dirty || write && !rdonly,
        young: raw & AF != 0,
    })
}

/// Decodes an invalid descriptor.
fn decode_invalid(raw: u64, level: Level) -> Decoded {
    if raw == 0 {
        return Decoded::None;
    }
    if !matches!(level, Level::Pte | Level::Pmd) || raw & !(SWP_TYPE | SWP_OFFSET | SWP_EXCLUSIVE) != 0 {
        return Decoded::Bad(raw);
    }
    let ty = ((raw & SWP_TYPE) >> SWP_TYPE_SHIFT) as u8;
    let offset = (raw & SWP_OFFSET) >> SWP_OFFSET_SHIFT;
    NonPresent::from_fields(ty, offset, raw & SWP_EXCLUSIVE != 0)
        .map_or(Decoded::Bad(raw), Decoded::NonPresent)
}

impl PageTableFormat for Aarch64Format {
    const NAME: &'static str = crate::NAME;
    const PHYS_ADDR_BITS: u32 = PHYS_ADDR_BITS;

    #[inline]
    fn decode(raw: u64, level: Level) -> Decoded {
        if raw & VALID == 0 {
            return decode_invalid(raw, level);
        }
        match (level, raw & TABLE_OR_PAGE != 0) {
            (Level::Pte, true) => decode_leaf(raw, PageSize::Size4K),
            (Level::Pmd | Level::Pud | Level::Pgd, true) => decode_table(raw),
            (Level::Pmd, false) => decode_leaf(raw, PageSize::Size2M),
            (Level::Pud, false) => decode_leaf(raw, PageSize::Size1G),
            // A block at level 0 or 3 is a reserved encoding.
            (Level::Pte | Level::Pgd, false) => Decoded::Bad(raw),
        }
    }

    /// # Panics
    /// If `level` is the PTE level (a 0b11 descriptor there is a page), or
    /// `next` is not a 4 KiB-aligned address below 2^48.
    fn make_table(next: PhysAddr, level: Level) -> u64 {
        assert!(level != Level::Pte, "make_table: a level-3 descriptor cannot point at a table");
        assert!(next.as_u64() & !ADDR == 0, "make_table: {next} is not a 4 KiB frame below 2^48");
        next.as_u64() | TABLE_OR_PAGE | VALID
    }

    /// # Panics
    /// If `leaf.frame` is not aligned to `leaf.size` or lies above 2^48.
    #[inline]
    fn make_leaf(leaf: &Leaf) -> u64 {
        let frame = leaf.frame_bits(PHYS_ADDR_BITS);
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        let prot = leaf.prot;
        let execute_never =
            if prot.user { PXN | flag(!prot.executable, UXN) } else { UXN | flag(!prot.executable, PXN) };
        frame
            | VALID
            | flag(leaf.size == PageSize::Size4K, TABLE_OR_PAGE)
            | ATTR_NORMAL_WB
            | SH_INNER
            | flag(leaf.young, AF)
            | flag(!prot.global, NG)
            | flag(prot.user, AP_USER)
            | flag(prot.writable, WRITE)
            | flag(!(prot.writable && leaf.dirty), AP_RDONLY)
            | flag(leaf.dirty, SW_DIRTY)
            | execute_never
    }

    /// # Panics
    /// If a migration entry's PFN is wider than [`MIGRATION_PFN_BITS`] (it
    /// would spill into the young and dirty bits).
    fn make_nonpresent(entry: &NonPresent) -> u64 {
        let (ty, offset, exclusive) = entry.to_fields();
        (ty as u64) << SWP_TYPE_SHIFT | offset << SWP_OFFSET_SHIFT | if exclusive { SWP_EXCLUSIVE } else { 0 }
    }
}

/// The MMU in software, for host tests (`sim` feature).
#[cfg(any(test, feature = "sim"))]
mod walker {
    use super::*;
    use mm::fault::Access;
    use mm::pgtable::sim::{HardwareWalker, HwAccess, HwFault, Translation};
    use mm::pgtable::TableMemory;
    use mm::VirtAddr;

    /// The AArch64 MMU in software (stage 1, EL1&0, no FEAT_HAFDBS).
    ///
    /// `root` is the table base of whichever TTBR the address selects: TTBR0
    /// when bits 63..48 are all 0, TTBR1 when all 1; any other address takes
    /// a level-0 translation fault, as the hardware does.
    ///
    /// Faults in the order the architecture gives them: translation (an
    /// invalid descriptor: `NotMapped`; a block at level 0 or 3, a reserved
    /// encoding: `Reserved`), then access flag (AF = 0 at the leaf), then
    /// permission:
    /// - EL0 needs AP\[1\]; a write needs AP\[2\] clear (at either level);
    /// - EL0 execution needs UXN clear; EL1 execution needs PXN clear and
    ///   the page not EL0-writable (AP\[2:1\] = 0b01 implies PXN);
    /// - EL1 may read and write EL0 pages: PAN (on where the CPU has it) is
    ///   not modelled.
    ///
    /// Table descriptors' hierarchical limits are not modelled (this format
    /// never sets them), nor is TCR_EL1.IPS (no address-size faults). The
    /// walker never writes a descriptor: without FEAT_HAFDBS the hardware
    /// faults where x86 would set A or D.
    ///
    /// The translation's `can_exec` holds only when both EL0 (if it may
    /// access the page) and EL1 may execute, since a cached translation is
    /// shared by both: a user-executable page is re-walked for each fetch
    /// rather than let the kernel execute it from the cache.
    impl HardwareWalker for Aarch64Format {
        fn hw_translate(
            mem: &impl TableMemory,
            root: PhysAddr,
            va: VirtAddr,
            access: HwAccess,
        ) -> Result<Translation, HwFault> {
            let va = va.as_u64();
            if !matches!(va >> 48, 0 | 0xffff) {
                return Err(HwFault::NotMapped { level: Level::Pgd });
            }
            assert!(
                root.as_u64() & !ADDR == 0,
                "Aarch64Format::hw_translate: root {root} is not a table frame"
            );
            let mut table = root.as_u64();
            for level in Level::TOP_DOWN {
                let raw = mem.read_entry(PhysAddr::new(table + 8 * level.index(va) as u64));
                if raw & VALID == 0 {
                    return Err(HwFault::NotMapped { level });
                }
                let size = match (level, raw & TABLE_OR_PAGE != 0) {
                    (Level::Pte, true) => PageSize::Size4K,
                    (Level::Pmd, false) => PageSize::Size2M,
                    (Level::Pud, false) => PageSize::Size1G,
                    (Level::Pte | Level::Pgd, false) => return Err(HwFault::Reserved { level }),
                    (Level::Pmd | Level::Pud | Level::Pgd, true) => {
                        table = raw & ADDR;
                        continue;
                    }
                };
                if raw & AF == 0 {
                    return Err(HwFault::AccessFlag { level });
                }
                let user = raw & AP_USER != 0;
                let rdonly = raw & AP_RDONLY != 0;
                let el0_exec = user && raw & UXN == 0;
                let el1_exec = raw & PXN == 0 && !(user && !rdonly);
                let denied = (access.user && !user)
                    || match access.access {
                        Access::Read => false,
                        Access::Write => rdonly,
                        Access::Execute if access.user => !el0_exec,
                        Access::Execute => !el1_exec,
                    };
                if denied {
                    return Err(HwFault::Permission { level });
                }
                let frame = raw & size.frame_mask(PHYS_ADDR_BITS);
                return Ok(Translation {
                    pa: PhysAddr::new(frame | (va & (size.bytes() - 1))),
                    size,
                    can_read: true,
                    can_write: !rdonly,
                    can_exec: el1_exec && (!user || el0_exec),
                    user,
                });
            }
            unreachable!("Aarch64Format::hw_translate: level 3 always ends the walk")
        }
    }
}

#[cfg(test)]
mod tests {
    //! What only this format has: where each field sits, the encodings
    //! AArch64 alone has (DBM as the write bit, dirty in bit 55, the boot
    //! blocks), and the rules of its MMU (access-flag faults, no hardware
    //! dirty, UXN/PXN, the two halves). The rules every format keeps are
    //! tested once for both formats, in
    //! `kernel/mm/tests/formats_conformance.rs`.
    use super::*;
    use mm::pgtable::sim::{HwAccess, HwFault, Translation};
    use mm::pgtable::SwapType;
    use mm::pgtable::TableMemory;
    use mm::testkit::mmu::{install, memory, page, slot_of, walk, FRAME, USER_RW, VA};
    use mm::testkit::strategies::{decoded_leaf, leaf, migration, nonpresent, swap_fields, table_level};
    use proptest::prelude::*;

    type F = Aarch64Format;

    // ---- valid descriptors ----

    proptest! {
        /// Normal write-back inner-shareable memory; writable and dirty is
        /// AP[2] clear, dirty alone bit 55, writable alone DBM; nG, AP[1],
        /// and which of UXN/PXN is clear by who may execute.
        #[test]
        fn leaf_bits_follow_the_diagram(leaf in leaf(PHYS_ADDR_BITS)) {
            let raw = F::make_leaf(&leaf);
            prop_assert_eq!(raw & ADDR & !(leaf.size.bytes() - 1), leaf.frame.as_u64());
            prop_assert_eq!(raw & TABLE_OR_PAGE != 0, leaf.size == PageSize::Size4K);
            prop_assert_eq!(raw & ATTR_INDX, ATTR_NORMAL_WB);
            prop_assert_eq!(raw & SH, SH_INNER);
            prop_assert_eq!(raw & AP_RDONLY == 0, leaf.prot.writable && leaf.dirty);
            prop_assert_eq!(raw & SW_DIRTY != 0, leaf.dirty);
            prop_assert_eq!(raw & WRITE != 0, leaf.prot.writable);
            prop_assert_eq!(raw & NG == 0, leaf.prot.global);
            prop_assert_eq!(raw & AP_USER != 0, leaf.prot.user);
            prop_assert_eq!(raw & AF != 0, leaf.young);
            if leaf.prot.user {
                prop_assert!(raw & PXN != 0, "the kernel never executes user memory");
                prop_assert_eq!(raw & UXN == 0, leaf.prot.executable);
            } else {
                prop_assert!(raw & UXN != 0);
                prop_assert_eq!(raw & PXN == 0, leaf.prot.executable);
            }
        }

        /// Decode is exact: flipping any bit of a valid leaf gives an entry
        /// that encodes back to itself, or one decode refuses. The one
        /// exception is "hardware dirty" (WRITE, AP[2] clear, DIRTY clear),
        /// which encodes with DIRTY set.
        #[test]
        fn decode_is_canonical(leaf in leaf(PHYS_ADDR_BITS), bit in 0..64u32) {
            let level = leaf.size.level();
            let raw = F::make_leaf(&leaf) ^ (1 << bit);
            match F::decode(raw, level) {
                Decoded::Leaf(l) => {
                    let hw_dirty = raw & (WRITE | AP_RDONLY | SW_DIRTY) == WRITE;
                    prop_assert_eq!(F::make_leaf(&l), if hw_dirty { raw | SW_DIRTY } else { raw });
                }
                Decoded::Table(t) => prop_assert_eq!(F::make_table(t, level), raw),
                Decoded::NonPresent(e) => prop_assert_eq!(F::make_nonpresent(&e), raw),
                Decoded::None | Decoded::Bad(_) => {}
            }
        }

        /// A table descriptor is its address and 0b11; the same bits at
        /// level 3 are a page (this one Bad: no attributes).
        #[test]
        fn table_bits_follow_the_diagram(frame in 0..1u64 << 36, level in table_level()) {
            let next = PhysAddr::new(frame << 12);
            let raw = F::make_table(next, level);
            prop_assert_eq!(raw, next.as_u64() | 0b11);
            prop_assert!(!matches!(F::decode(raw, Level::Pte), Decoded::Table(_)));
        }

        // ---- the dirty/young/write algebra in DBM, AP[2], bit 55 and AF ----

        /// mkdirty: AP[2] clear exactly when writable; mkclean: read-only
        /// to the hardware, so the first write faults; mkwrite of a clean
        /// page too; mkold clears AF.
        #[test]
        fn clean_pages_stay_read_only_to_the_hardware(leaf in leaf(PHYS_ADDR_BITS)) {
            let level = leaf.size.level();
            let dirty = F::mkdirty(F::make_leaf(&leaf), level);
            prop_assert_eq!(dirty & WRITE != 0, leaf.prot.writable, "mkdirty never makes writable");
            prop_assert_eq!(dirty & AP_RDONLY == 0, leaf.prot.writable, "writable and dirty: no RDONLY");
            prop_assert!(F::mkclean(dirty, level) & AP_RDONLY != 0, "clean: read-only to the hardware");
            let clean_writable = F::mkwrite(F::make_leaf(&Leaf { dirty: false, ..leaf }), level);
            prop_assert!(clean_writable & AP_RDONLY != 0, "the first write must still fault");
            prop_assert_eq!(F::mkold(dirty, level) & AF, 0);
        }

        #[test]
        fn wrprotect_keeps_dirty_in_the_software_bit(leaf in leaf(PHYS_ADDR_BITS)) {
            let raw = F::wrprotect(F::make_leaf(&leaf), leaf.size.level());
            prop_assert_eq!(raw & SW_DIRTY != 0, leaf.dirty);
            prop_assert_eq!(raw & (WRITE | AP_RDONLY), AP_RDONLY);
        }

        /// A hardware-dirty entry (as a DBM-managing CPU would leave it)
        /// keeps its dirtiness through write-protection: it moves into bit 55.
        #[test]
        fn wrprotect_moves_hardware_dirty_into_bit_55(leaf in leaf(PHYS_ADDR_BITS)) {
            let level = leaf.size.level();
            let writable_dirty = Leaf { prot: Prot { writable: true, ..leaf.prot }, dirty: true, ..leaf };
            let hw_dirty = F::make_leaf(&writable_dirty) & !SW_DIRTY;
            prop_assert!(decoded_leaf::<F>(hw_dirty, level).dirty);
            let raw = F::wrprotect(hw_dirty, level);
            prop_assert!(raw & SW_DIRTY != 0);
            prop_assert_eq!(raw & (WRITE | AP_RDONLY), AP_RDONLY);
            prop_assert!(decoded_leaf::<F>(raw, level).dirty);
        }

        #[test]
        fn mkwrite_on_a_dirty_page_makes_it_hardware_writable(leaf in leaf(PHYS_ADDR_BITS)) {
            let level = leaf.size.level();
            let raw = F::mkwrite(F::make_leaf(&Leaf { dirty: true, ..leaf }), level);
            prop_assert_eq!(raw & (WRITE | AP_RDONLY | SW_DIRTY), WRITE | SW_DIRTY);
        }
    }

    // ---- invalid descriptors ----

    proptest! {
        /// The diagram of the module doc: valid and table/page clear, the
        /// type and the offset as they are, the exclusive bit at bit 2, the
        /// unused bits and the present-invalid marker zero.
        #[test]
        fn nonpresent_bits_follow_the_diagram(entry in nonpresent()) {
            let raw = F::make_nonpresent(&entry);
            prop_assert_eq!(raw & (VALID | TABLE_OR_PAGE), 0);
            prop_assert_eq!(raw & (SWP_UFFD_WP | SWP_PRESENT_INVALID | SWP_UNUSED_LOW | SWP_UNUSED_HIGH), 0);
            let (ty, offset, exclusive) = swap_fields(entry);
            prop_assert_eq!((raw & SWP_OFFSET) >> SWP_OFFSET_SHIFT, offset);
            prop_assert_eq!((raw & SWP_TYPE) >> SWP_TYPE_SHIFT, ty as u64);
            prop_assert_eq!(raw & SWP_EXCLUSIVE != 0, exclusive);
        }

        /// Seed 001: a migration PMD holds the PFN in the very bits a block
        /// keeps its address in; only the valid bit tells them apart.
        #[test]
        fn a_migration_pmd_holds_its_frame_in_the_block_address_bits(m in migration(), frame_2m in 0..1u64 << 27) {
            let m = MigrationEntry { pfn: mm::Pfn::new(frame_2m << 9), ..m };
            prop_assert_eq!(F::make_nonpresent(&NonPresent::Migration(m)) & ADDR_2M, frame_2m << 21);
        }
    }

    #[test]
    fn unknown_invalid_descriptors_are_bad() {
        let swap = F::make_nonpresent(&NonPresent::Swap {
            entry: SwapEntry::new(SwapType::nth(3), 7).unwrap(),
            exclusive: false,
        });
        for bit in [SWP_UFFD_WP, 1 << 4, 1 << 5, SWP_PRESENT_INVALID, 1 << 62, 1 << 63] {
            assert_eq!(F::decode(swap | bit, Level::Pte), Decoded::Bad(swap | bit), "bit {bit:#x}");
        }
        for ty in [23u64, 27, 28, 29, 30, 31] {
            let raw = ty << SWP_TYPE_SHIFT | 1 << SWP_OFFSET_SHIFT;
            assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw), "type {ty}");
        }
        // Swap offset 0 (the header) is no slot; nor is the bare marker bit.
        let raw = 5 << SWP_TYPE_SHIFT;
        assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw));
        assert_eq!(F::decode(SWP_PRESENT_INVALID, Level::Pmd), Decoded::Bad(SWP_PRESENT_INVALID));
    }

    #[test]
    fn descriptor_types_depend_on_the_level() {
        // 0b01: a block at levels 1 and 2, reserved at level 3 and (with
        // 4 KiB granules) at level 0 (`formats_conformance`'s
        // `a_huge_leaf_decodes_by_its_level`); 0b11: a page at level 3.
        let leaf = Leaf { size: PageSize::Size1G, ..page(0x4000_0000, Prot::READ_WRITE, false, true) };
        assert_eq!(F::make_leaf(&leaf) & 0b11, 0b01);
        let page = F::make_leaf(&Leaf { size: PageSize::Size4K, ..leaf });
        assert_eq!(page & 0b11, 0b11);
        // A misaligned block, other memory types and shareability, the bits we never set.
        let misaligned =
            F::make_leaf(&Leaf { size: PageSize::Size2M, frame: PhysAddr::new(0x20_0000), ..leaf }) | 1 << 12;
        assert_eq!(F::decode(misaligned, Level::Pmd), Decoded::Bad(misaligned));
        for bad in [
            page & !ATTR_INDX,
            page & !ATTR_INDX | 2 << 2,
            page & !SH,
            page | NS,
            page | CONT,
            page | GP,
            page | 1 << 48,
            page | 1 << 56,
            page | 1 << 59,
        ] {
            assert_eq!(F::decode(bad, Level::Pte), Decoded::Bad(bad), "{bad:#x}");
        }
        // Hardware-writable but not WRITE; WRITE and DIRTY but read-only; kernel page without UXN.
        for bad in [page & !AP_RDONLY & !WRITE, page | WRITE | SW_DIRTY | AP_RDONLY, page & !UXN] {
            assert_eq!(F::decode(bad, Level::Pte), Decoded::Bad(bad), "{bad:#x}");
        }
        let user =
            F::make_leaf(&Leaf { size: PageSize::Size4K, prot: Prot { user: true, ..Prot::READ }, ..leaf });
        assert_eq!(
            F::decode(user & !PXN, Level::Pte),
            Decoded::Bad(user & !PXN),
            "user page the kernel could execute"
        );
    }

    #[test]
    fn the_boot_blocks_decode_as_this_formats_mappings() {
        // entry.S BLOCK_NORMAL (kept in step with it by hand): a 1 GiB
        // kernel block, writable (DBM as WRITE), dirty (bit 55, RDONLY
        // clear), young, executable by the kernel only, global.
        let normal = (1 << 55) | (1 << 54) | (1 << 51) | (1 << 10) | (3 << 8) | (1 << 2) | 1 | 0x4000_0000;
        let kernel_rwx = Prot { writable: true, user: false, executable: true, global: true };
        assert_eq!(
            F::decode(normal, Level::Pud),
            Decoded::Leaf(Leaf {
                frame: PhysAddr::new(0x4000_0000),
                size: PageSize::Size1G,
                prot: kernel_rwx,
                dirty: true,
                young: true
            })
        );
        assert_eq!(
            F::make_leaf(&Leaf {
                frame: PhysAddr::new(0x4000_0000),
                size: PageSize::Size1G,
                prot: kernel_rwx,
                dirty: true,
                young: true
            }),
            normal
        );
        // BLOCK_DEVICE uses attr0 (Device-nGnRE): `Prot` has no memory
        // type yet, so the format does not claim it.
        let device = (1 << 54) | (1 << 53) | (1 << 10) | 1;
        assert_eq!(F::decode(device, Level::Pud), Decoded::Bad(device));
    }

    #[test]
    #[should_panic(expected = "beyond 48-bit")]
    fn make_leaf_refuses_a_frame_above_48_bits() {
        let _ = F::make_leaf(&page(1 << 48, Prot::READ, false, false));
    }

    // ---- the walker ----

    const PTE_PERMISSION: Result<Translation, HwFault> = Err(HwFault::Permission { level: Level::Pte });

    #[test]
    fn addresses_outside_both_halves_take_a_level_0_translation_fault() {
        let (mem, root) = memory();
        assert_eq!(
            walk::<F>(&mem, root, 0x0001_0000_0000_0000, HwAccess::KERNEL_READ),
            Err(HwFault::NotMapped { level: Level::Pgd })
        );
    }

    #[test]
    fn a_block_in_the_upper_half_translates_with_its_offset() {
        let (mem, root) = memory();
        let block = Leaf {
            frame: PhysAddr::new(0x8000_0000),
            size: PageSize::Size1G,
            ..page(0, Prot::READ, false, true)
        };
        let va = 0xffff_0000_4000_0000 + 0x1234;
        install::<F>(&mem, root, va, Level::Pud, F::make_leaf(&block));
        let t = walk::<F>(&mem, root, va, HwAccess::KERNEL_READ).unwrap();
        assert_eq!((t.pa, t.size), (PhysAddr::new(0x8000_1234), PageSize::Size1G));
    }

    #[test]
    fn an_old_page_takes_an_access_flag_fault_until_made_young() {
        let (mem, root) = memory();
        let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, false)));
        let access_flag = Err(HwFault::AccessFlag { level: Level::Pte });
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), access_flag);
        // Access flag before permission: even a forbidden access reports it.
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC), access_flag);
        mem.write_entry(slot, F::mkyoung(mem.read_entry(slot), Level::Pte));
        assert!(walk::<F>(&mem, root, VA, HwAccess::USER_READ).is_ok());
    }

    #[test]
    fn a_clean_writable_page_faults_on_write_until_made_dirty() {
        let (mem, root) = memory();
        let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, false, true)));
        let before = mem.read_entry(slot);
        let t = walk::<F>(&mem, root, VA, HwAccess::USER_READ).unwrap();
        assert!(!t.can_write);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), PTE_PERMISSION);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE), PTE_PERMISSION);
        assert_eq!(mem.read_entry(slot), before, "the MMU writes no descriptor");
        mem.write_entry(slot, F::mkdirty(before, Level::Pte));
        assert!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE).unwrap().can_write);
    }

    #[test]
    fn execute_never_bits() {
        let (mem, root) = memory();
        let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC), PTE_PERMISSION, "UXN");
        mem.write_entry(slot, F::make_leaf(&page(FRAME, Prot { executable: true, ..USER_RW }, true, true)));
        let t = walk::<F>(&mem, root, VA, HwAccess::USER_EXEC).unwrap();
        assert!(!t.can_exec, "not cached as executable: EL1 may not execute it");
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC), PTE_PERMISSION, "PXN on user pages");
        // Even with PXN clear, EL1 never executes an EL0-writable page.
        mem.write_entry(slot, mem.read_entry(slot) & !PXN);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC), PTE_PERMISSION);
        // ...but may execute an EL0 read-only one.
        mem.write_entry(slot, (mem.read_entry(slot) | AP_RDONLY) & !PXN);
        assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC).is_ok());
        mem.write_entry(slot, F::make_leaf(&page(FRAME, Prot::READ_WRITE, true, true)));
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC), PTE_PERMISSION, "PXN");
    }

    /// EL0 gets a permission fault on every kind of kernel page (no
    /// AP[1]), whatever the kernel may do there; on a user page it reads,
    /// and writes only a writable one.
    #[test]
    fn el0_is_refused_kernel_pages() {
        let (mem, root) = memory();
        let kernel_rwx = Prot { writable: true, user: false, executable: true, global: true };
        for prot in [kernel_rwx, Prot::READ_WRITE, Prot::READ] {
            let raw = F::make_leaf(&page(FRAME, prot, true, true));
            assert_eq!(raw & AP_USER, 0, "{prot:?}");
            let slot = install::<F>(&mem, root, VA, Level::Pte, raw);
            for access in [HwAccess::USER_READ, HwAccess::USER_WRITE, HwAccess::USER_EXEC] {
                assert_eq!(walk::<F>(&mem, root, VA, access), PTE_PERMISSION, "{prot:?} {access:?}");
            }
            assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ).is_ok());
            mem.write_entry(slot, 0);
        }
        let user_ro = Prot { writable: false, ..USER_RW };
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, user_ro, true, true)));
        assert!(walk::<F>(&mem, root, VA, HwAccess::USER_READ).is_ok());
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), PTE_PERMISSION);
    }

    #[test]
    fn blocks_where_none_may_be_are_reserved() {
        let (mem, root) = memory();
        let block = F::make_leaf(&Leaf {
            frame: PhysAddr::new(0x4000_0000),
            size: PageSize::Size1G,
            ..page(0, Prot::READ, false, true)
        });
        let slot = install::<F>(&mem, root, VA, Level::Pte, block);
        assert_eq!(
            walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ),
            Err(HwFault::Reserved { level: Level::Pte })
        );
        mem.write_entry(slot, 0);
        let pgd = slot_of::<F>(&mem, root, VA, Level::Pgd);
        mem.write_entry(pgd, block);
        assert_eq!(
            walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ),
            Err(HwFault::Reserved { level: Level::Pgd })
        );
    }
}
