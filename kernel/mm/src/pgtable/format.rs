//! The page-table *format*: what an entry is, as each architecture encodes it.
//!
//! `mm` is generic over [`PageTableFormat`]; `arch/x86_64` and `arch/aarch64`
//! implement it with the real bit layouts (their `pgtable` modules carry the
//! diagrams). Generic code never looks at raw bits: it asks the format to
//! [`decode`](PageTableFormat::decode) an entry into a [`Decoded`] and to
//! encode the entries it wants to write.
//!
//! ## Entry kinds
//!
//! | kind | where | meaning |
//! | --- | --- | --- |
//! | none | any level | nothing mapped, nothing remembered |
//! | table | PGD, PUD, PMD | points at the next-level table |
//! | leaf | PTE (4 KiB), PMD (2 MiB), PUD (1 GiB) | maps a frame with [`Prot`] and dirty/young state |
//! | swap | PTE, PMD | not present; the data is in a swap slot ([`SwapEntry`]), with the anon-exclusive bit |
//! | migration | PTE, PMD | not present; the frame is being migrated ([`MigrationEntry`]) |
//!
//! ## Rules every format keeps (checked by the conformance tests)
//!
//! - A swap or migration entry is never present, never none, never a table,
//!   and decodes back to exactly what was encoded (type, offset, exclusive;
//!   kind, pfn, young, dirty), at PTE and at PMD level.
//! - Present-ness is decided first: nothing reads a frame number from an
//!   entry that is not a present leaf (seed 001: a migration PMD decoded as a
//!   frame yields garbage, or worse, a false match with the huge zero page).
//! - Raw value 0 is the none entry on both formats.
//! - The dirty/write algebra: `mkdirty` then `mkclean` is clean; `wrprotect`
//!   keeps dirty; `mkdirty` never makes an entry writable.
//!
//! ## What the formats share
//!
//! The arch-neutral steps of encoding live here, once: a non-present
//! entry's type, offset and exclusive bit ([`NonPresent::to_fields`],
//! [`NonPresent::from_fields`]), a leaf's checked frame address
//! ([`Leaf::frame_bits`], [`PageSize::frame_mask`]), and the helpers each
//! format's compile-time layout checks use ([`bits`], [`is_partition`]).
//! Where those fields sit in an entry is each format's own business.

use crate::addr::{Pfn, PhysAddr};
use core::fmt;

/// A level of the 4-level tree, named as Linux names them. The number is
/// the level's distance from the bottom: an entry at level `l` covers
/// `1 << (12 + 9 * l)` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Level 0 of the walk from the bottom: x86 PT, AArch64 level 3. Entries map 4 KiB.
    Pte = 0,
    /// x86 PD, AArch64 level 2. Entries map 2 MiB or point at a PTE table.
    Pmd = 1,
    /// x86 PDPT, AArch64 level 1. Entries map 1 GiB or point at a PMD table.
    Pud = 2,
    /// x86 PML4, AArch64 level 0. Entries point at a PUD table.
    Pgd = 3,
}

impl Level {
    /// From the root down.
    pub const TOP_DOWN: [Level; 4] = [Level::Pgd, Level::Pud, Level::Pmd, Level::Pte];

    /// The shift of the virtual-address bits that index a table at this level.
    pub const fn shift(self) -> u32 {
        12 + 9 * self as u32
    }
    /// Bytes covered by one entry at this level.
    pub const fn entry_size(self) -> u64 {
        1 << self.shift()
    }
    /// The index into a table at this level for virtual address `va`.
    pub const fn index(self, va: u64) -> usize {
        ((va >> self.shift()) & 511) as usize
    }
    /// The level below, or `None` at the PTE level.
    pub const fn below(self) -> Option<Level> {
        match self {
            Level::Pgd => Some(Level::Pud),
            Level::Pud => Some(Level::Pmd),
            Level::Pmd => Some(Level::Pte),
            Level::Pte => None,
        }
    }
}

/// Entries per table on both formats (4 KiB tables of 8-byte entries).
pub const ENTRIES_PER_TABLE: usize = 512;

/// The size of a leaf mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }
    /// The level whose entries map this size.
    pub const fn level(self) -> Level {
        match self {
            PageSize::Size4K => Level::Pte,
            PageSize::Size2M => Level::Pmd,
            PageSize::Size1G => Level::Pud,
        }
    }
    /// The size mapped by a leaf at `level`, if a leaf may live there.
    pub const fn at_level(level: Level) -> Option<PageSize> {
        match level {
            Level::Pte => Some(PageSize::Size4K),
            Level::Pmd => Some(PageSize::Size2M),
            Level::Pud => Some(PageSize::Size1G),
            Level::Pgd => None,
        }
    }
    /// The bits of an entry that hold the address of a frame of this size,
    /// in a format whose entries hold physical addresses below
    /// 2^`phys_addr_bits`: bits `log2(bytes)` up to `phys_addr_bits - 1`.
    pub const fn frame_mask(self, phys_addr_bits: u32) -> u64 {
        bits(self.bytes().trailing_zeros(), phys_addr_bits - 1)
    }
}

/// What a mapping allows. Arch-neutral: each format turns it into its own
/// bits (x86: RW, US, NX, G; AArch64: AP, UXN/PXN, DBM, nG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prot {
    /// Writes are allowed (once the entry is dirty, on formats that track
    /// dirtiness through write permission).
    pub writable: bool,
    /// User mode (ring 3 / EL0) may access it.
    pub user: bool,
    /// Instructions may be fetched from it (at the privilege that may
    /// access it).
    pub executable: bool,
    /// The translation is the same in every address space (kernel
    /// mappings): x86 G bit; AArch64 nG clear.
    pub global: bool,
}

impl Prot {
    /// Read-only, kernel, not executable, not global.
    pub const READ: Prot = Prot { writable: false, user: false, executable: false, global: false };
    /// Read-write, kernel, not executable, not global.
    pub const READ_WRITE: Prot = Prot { writable: true, ..Prot::READ };
}

/// A present leaf: a frame mapped at some size, with its permissions and
/// the state the hardware (or the fault handler) keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// The first byte of the mapped frame(s); aligned to `size`.
    pub frame: PhysAddr,
    pub size: PageSize,
    pub prot: Prot,
    /// Written since last cleaned.
    pub dirty: bool,
    /// Accessed since last made old (x86 A; AArch64 AF, whose absence
    /// faults when the CPU does not manage it).
    pub young: bool,
}

impl Leaf {
    /// The frame address a format's `make_leaf` writes into the entry's
    /// address field ([`PageSize::frame_mask`]), checked against the two
    /// rules every format relies on.
    ///
    /// # Panics
    /// If the frame is not aligned to the leaf's size, or lies at or above
    /// 2^`phys_addr_bits` (kernel bugs: callers check alignment first, and
    /// frames come from RAM).
    #[inline]
    pub fn frame_bits(&self, phys_addr_bits: u32) -> u64 {
        let frame = self.frame.as_u64();
        assert!(
            self.frame.is_aligned(self.size.bytes()),
            "make_leaf: {} not aligned to {:?}",
            self.frame,
            self.size
        );
        assert!(
            frame >> phys_addr_bits == 0,
            "make_leaf: {} beyond {phys_addr_bits}-bit physical addresses",
            self.frame
        );
        frame
    }
}

/// Width of the offset field of a swap entry (50 bits on both formats).
pub const SWAP_OFFSET_BITS: u32 = 50;
/// The largest usable swap offset: one below the field's maximum, because
/// on x86_64 the all-ones offset of a type-0 entry is stored inverted as
/// all zeros, which is the none entry.
pub const MAX_SWAP_OFFSET: u64 = (1 << SWAP_OFFSET_BITS) - 2;
/// Swap types usable for swap areas: `0..MAX_SWAP_TYPES`.
pub const MAX_SWAP_TYPES: u8 = 23;
/// Type numbers of migration entries (after the swap types and hwpoison).
pub const MIGRATION_READ_TYPE: u8 = 24;
pub const MIGRATION_READ_EXCLUSIVE_TYPE: u8 = 25;
pub const MIGRATION_WRITE_TYPE: u8 = 26;
/// Bits of a migration entry's offset that hold the PFN (52-bit physical
/// addresses); young and dirty sit just above.
pub const MIGRATION_PFN_BITS: u32 = 40;

/// Why a swap entry could not be built. The caller's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapEntryError {
    /// A stored type number is not below [`MAX_SWAP_TYPES`].
    BadType(u8),
    /// Offset 0 is the swap header (never a slot), and offsets are at most
    /// [`MAX_SWAP_OFFSET`].
    BadOffset(u64),
}

/// Which swap area: a number below [`MAX_SWAP_TYPES`], checked when made,
/// so the type of a [`SwapEntry`] is always one an area can have.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SwapType(u8);

impl SwapType {
    /// Swap type `n`; `None` when `n` is not below [`MAX_SWAP_TYPES`].
    pub const fn new(n: usize) -> Option<SwapType> {
        if n < MAX_SWAP_TYPES as usize {
            Some(SwapType(n as u8))
        } else {
            None
        }
    }
    /// Swap type `n`, for constants and tests.
    ///
    /// # Panics
    /// When `n` is not below [`MAX_SWAP_TYPES`] (at compile time in a
    /// constant).
    pub const fn nth(n: u8) -> SwapType {
        assert!(n < MAX_SWAP_TYPES, "SwapType::nth: not a swap type");
        SwapType(n)
    }
    /// The type as an index (of a table of areas).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The type's number, as the entry formats store it.
    pub const fn raw(self) -> u8 {
        self.0
    }
}

impl fmt::Display for SwapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An arch-neutral swap entry: which swap area (`ty`) and which page slot in
/// it (`offset`). Built with [`SwapEntry::new`], which checks the offset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwapEntry {
    ty: SwapType,
    offset: u64,
}

impl SwapEntry {
    /// A swap entry; refuses an offset of 0 (the header page) or above
    /// [`MAX_SWAP_OFFSET`].
    pub const fn new(ty: SwapType, offset: u64) -> Result<SwapEntry, SwapEntryError> {
        if offset == 0 || offset > MAX_SWAP_OFFSET {
            return Err(SwapEntryError::BadOffset(offset));
        }
        Ok(SwapEntry { ty, offset })
    }
    /// The entry of a type number and offset as an entry format stores
    /// them; refuses a number that is no swap type, and a bad offset.
    pub const fn from_type_offset(ty: u8, offset: u64) -> Result<SwapEntry, SwapEntryError> {
        match SwapType::new(ty as usize) {
            Some(ty) => SwapEntry::new(ty, offset),
            None => Err(SwapEntryError::BadType(ty)),
        }
    }
    /// The swap area.
    pub const fn ty(self) -> SwapType {
        self.ty
    }
    /// The page slot in the area.
    pub const fn offset(self) -> u64 {
        self.offset
    }
    /// One arch-neutral number for the entry, as a folio stores it: type
    /// above [`SWAP_OFFSET_BITS`], offset below. Never 0 (offsets start at
    /// 1), and `raw + i` is the entry of slot `offset + i` of the same area.
    pub const fn to_raw(self) -> u64 {
        (self.ty.0 as u64) << SWAP_OFFSET_BITS | self.offset
    }
    /// The entry `n` slots after this one in the same area.
    ///
    /// # Panics
    /// When that passes [`MAX_SWAP_OFFSET`] (no area is that large).
    pub const fn plus(self, n: u64) -> SwapEntry {
        let offset = self.offset + n;
        assert!(offset <= MAX_SWAP_OFFSET, "SwapEntry::plus: past the largest offset");
        SwapEntry { ty: self.ty, offset }
    }
    /// The entry a raw number from [`SwapEntry::to_raw`] stands for.
    pub const fn from_raw(raw: u64) -> Result<SwapEntry, SwapEntryError> {
        let ty = raw >> SWAP_OFFSET_BITS;
        if ty >= MAX_SWAP_TYPES as u64 {
            return Err(SwapEntryError::BadType(if ty > 255 { 255 } else { ty as u8 }));
        }
        SwapEntry::from_type_offset(ty as u8, raw & ((1 << SWAP_OFFSET_BITS) - 1))
    }
}

impl fmt::Debug for SwapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swap({}:{:#x})", self.ty, self.offset)
    }
}

/// What a migration entry lets a faulting access do once migration ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationKind {
    /// Was mapped read-only and possibly shared.
    Read,
    /// Was mapped read-only, anon-exclusive.
    ReadExclusive,
    /// Was mapped writable (which implies exclusive).
    Write,
}

impl MigrationKind {
    /// The entry type number.
    pub const fn swap_type(self) -> u8 {
        match self {
            MigrationKind::Read => MIGRATION_READ_TYPE,
            MigrationKind::ReadExclusive => MIGRATION_READ_EXCLUSIVE_TYPE,
            MigrationKind::Write => MIGRATION_WRITE_TYPE,
        }
    }
    /// The kind of a migration type number.
    pub const fn from_swap_type(ty: u8) -> Option<MigrationKind> {
        match ty {
            MIGRATION_READ_TYPE => Some(MigrationKind::Read),
            MIGRATION_READ_EXCLUSIVE_TYPE => Some(MigrationKind::ReadExclusive),
            MIGRATION_WRITE_TYPE => Some(MigrationKind::Write),
            _ => None,
        }
    }
}

/// A migration entry: the frame being migrated and how it was mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MigrationEntry {
    pub kind: MigrationKind,
    /// The PFN of the (head) page being migrated; at most
    /// [`MIGRATION_PFN_BITS`] bits (use [`MigrationEntry::new`] to check;
    /// the formats assert it when encoding).
    pub pfn: Pfn,
    /// The mapping was young.
    pub young: bool,
    /// The mapping was dirty.
    pub dirty: bool,
}

impl MigrationEntry {
    /// A migration entry; `None` when `pfn` needs more than
    /// [`MIGRATION_PFN_BITS`] bits (it would spill into young/dirty).
    pub const fn new(kind: MigrationKind, pfn: Pfn, young: bool, dirty: bool) -> Option<MigrationEntry> {
        if pfn.as_u64() >> MIGRATION_PFN_BITS != 0 {
            return None;
        }
        Some(MigrationEntry { kind, pfn, young, dirty })
    }
    /// The offset field that encodes this entry: PFN, then young, then dirty.
    pub const fn to_offset(self) -> u64 {
        self.pfn.as_u64()
            | (self.young as u64) << MIGRATION_PFN_BITS
            | (self.dirty as u64) << (MIGRATION_PFN_BITS + 1)
    }
    /// Decodes a migration entry from its type number and offset field.
    pub const fn from_type_offset(ty: u8, offset: u64) -> Option<MigrationEntry> {
        let Some(kind) = MigrationKind::from_swap_type(ty) else { return None };
        if offset >> (MIGRATION_PFN_BITS + 2) != 0 {
            return None;
        }
        Some(MigrationEntry {
            kind,
            pfn: Pfn::new(offset & ((1 << MIGRATION_PFN_BITS) - 1)),
            young: offset >> MIGRATION_PFN_BITS & 1 != 0,
            dirty: offset >> (MIGRATION_PFN_BITS + 1) & 1 != 0,
        })
    }
}

/// A non-present entry that still means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonPresent {
    /// The page is in swap. `exclusive`: it was anon-exclusive when it was
    /// unmapped (seed 004), so swap-in may map it writable without a copy.
    Swap { entry: SwapEntry, exclusive: bool },
    /// The page is being migrated; a fault waits for the migration to end.
    Migration(MigrationEntry),
}

impl NonPresent {
    /// The type number, offset and exclusive bit that encode this entry:
    /// the three fields both formats store a non-present entry in. A swap
    /// entry gives its area, its slot and its anon-exclusive bit; a
    /// migration entry its kind's type, [`MigrationEntry::to_offset`] and a
    /// clear exclusive bit (its kind carries exclusivity).
    ///
    /// # Panics
    /// If a migration entry's PFN needs more than [`MIGRATION_PFN_BITS`]
    /// bits (it would spill into the young and dirty bits: a kernel bug).
    pub fn to_fields(&self) -> (u8, u64, bool) {
        match *self {
            NonPresent::Swap { entry, exclusive } => (entry.ty().raw(), entry.offset(), exclusive),
            NonPresent::Migration(m) => {
                assert!(
                    m.pfn.as_u64() >> MIGRATION_PFN_BITS == 0,
                    "make_nonpresent: migration pfn {:#x} too wide",
                    m.pfn
                );
                (m.kind.swap_type(), m.to_offset(), false)
            }
        }
    }

    /// The entry a type number, offset and exclusive bit encode
    /// ([`NonPresent::to_fields`] backwards), or `None` when they name none:
    /// a type that is neither a swap area nor a migration kind, a swap
    /// offset [`SwapEntry::new`] refuses, a migration offset with bits above
    /// young and dirty, or a migration entry with the exclusive bit.
    pub const fn from_fields(ty: u8, offset: u64, exclusive: bool) -> Option<NonPresent> {
        if ty < MAX_SWAP_TYPES {
            return match SwapEntry::from_type_offset(ty, offset) {
                Ok(entry) => Some(NonPresent::Swap { entry, exclusive }),
                Err(_) => None,
            };
        }
        match MigrationEntry::from_type_offset(ty, offset) {
            Some(m) if !exclusive => Some(NonPresent::Migration(m)),
            _ => None,
        }
    }
}

/// An entry as generic code sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoded {
    None,
    /// Points at the next-level table.
    Table(PhysAddr),
    Leaf(Leaf),
    NonPresent(NonPresent),
    /// Bits that no rule of the format explains (a kernel bug or memory
    /// corruption): reported, never interpreted.
    Bad(u64),
}

/// Bits `lo..=hi` set: a field of a raw entry, for the formats' layouts.
pub const fn bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// True when `fields` split the 64 bits of an entry: no two share a bit,
/// and together they hold every bit. Each format asserts it, at compile
/// time, of every kind of entry it has, so that every bit has exactly one
/// role.
pub const fn is_partition(fields: &[u64]) -> bool {
    let mut seen = 0;
    let mut i = 0;
    while i < fields.len() {
        if seen & fields[i] != 0 {
            return false;
        }
        seen |= fields[i];
        i += 1;
    }
    seen == u64::MAX
}

/// The encoding of one architecture's page-table entries.
///
/// Implementations must keep the rules in the module doc; the conformance
/// tests in each arch crate check them.
pub trait PageTableFormat: 'static {
    /// For reports: `x86_64` or `aarch64`.
    const NAME: &'static str;

    /// Physical address bits a leaf can hold (x86_64: 52; AArch64: 48): a
    /// leaf of size `s` keeps its frame in `s.frame_mask(PHYS_ADDR_BITS)`.
    const PHYS_ADDR_BITS: u32;

    /// True when a leaf may be placed at `level` (PTE, PMD and PUD on both).
    fn leaf_allowed(level: Level) -> bool {
        PageSize::at_level(level).is_some()
    }

    /// Decodes the raw entry `raw` found at `level`.
    fn decode(raw: u64, level: Level) -> Decoded;

    /// An entry at `level` pointing at the next-level table at `next`.
    fn make_table(next: PhysAddr, level: Level) -> u64;

    /// A leaf entry. The leaf's size decides its level.
    ///
    /// # Panics
    /// If `leaf.frame` is not aligned to `leaf.size` (a kernel bug: callers
    /// check alignment first).
    fn make_leaf(leaf: &Leaf) -> u64;

    /// A swap or migration entry; the same encoding at PTE and PMD level.
    fn make_nonpresent(entry: &NonPresent) -> u64;

    /// The frame field of `raw` read as if it were a present leaf of
    /// `size`, whatever the entry is: Linux's `pmd_pfn` without its
    /// `pmd_present` check. Nothing but the replay of that mistake may use
    /// it (seed 001, [`crate::bugs::Bug::SplitPmdMigrationEntry`] in
    /// [`crate::thp::split_huge_pmd`]): generic code decodes first. Of a
    /// migration entry it gives, on x86_64, an address above 2^51 (the
    /// inverted offset: never RAM), and on AArch64 exactly the frame the
    /// entry names (the offset starts at bit 12, where the address does).
    fn frame_field_unchecked(raw: u64, size: PageSize) -> PhysAddr {
        PhysAddr::new(raw & size.frame_mask(Self::PHYS_ADDR_BITS))
    }

    /// True when the entry at `level` is present to the hardware walker
    /// (a table or a leaf). Cheap; must agree with [`Self::decode`].
    fn is_present(raw: u64, level: Level) -> bool {
        matches!(Self::decode(raw, level), Decoded::Table(_) | Decoded::Leaf(_))
    }

    /// True when the entry is none. Cheap; must agree with [`Self::decode`].
    fn is_none(raw: u64, level: Level) -> bool {
        matches!(Self::decode(raw, level), Decoded::None)
    }

    /// The dirty/young/write algebra on present leaves, as decode, change,
    /// encode: the encoding of [`Leaf`] is canonical, so each format keeps
    /// the rules in one place (`make_leaf`). Entries that are not present
    /// leaves are returned unchanged.
    fn update_leaf(raw: u64, level: Level, change: impl FnOnce(&mut Leaf)) -> u64 {
        match Self::decode(raw, level) {
            Decoded::Leaf(mut leaf) => {
                change(&mut leaf);
                Self::make_leaf(&leaf)
            }
            _ => raw,
        }
    }
    /// Marks a present leaf dirty (never makes it writable).
    fn mkdirty(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.dirty = true)
    }
    /// Marks a present leaf clean.
    fn mkclean(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.dirty = false)
    }
    /// Marks a present leaf young (accessed).
    fn mkyoung(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.young = true)
    }
    /// Marks a present leaf old: the next access sets it young again (x86
    /// hardware) or faults so the kernel does (AArch64 without FEAT_HAFDBS).
    fn mkold(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.young = false)
    }
    /// Removes write permission, keeping dirty.
    fn wrprotect(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.prot.writable = false)
    }
    /// Grants write permission.
    fn mkwrite(raw: u64, level: Level) -> u64 {
        Self::update_leaf(raw, level, |l| l.prot.writable = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cover_the_48_bit_address_space() {
        assert_eq!(Level::Pte.entry_size(), 4096);
        assert_eq!(Level::Pmd.entry_size(), 2 << 20);
        assert_eq!(Level::Pud.entry_size(), 1 << 30);
        assert_eq!(Level::Pgd.entry_size(), 512 << 30);
        let va = 0x0000_7fff_ffff_f000u64;
        assert_eq!(Level::TOP_DOWN.map(|l| l.index(va)), [255, 511, 511, 511]);
        assert_eq!(PageSize::at_level(Level::Pmd), Some(PageSize::Size2M));
        assert_eq!(PageSize::Size2M.level(), Level::Pmd);
    }

    #[test]
    fn swap_entries_are_checked() {
        let t = SwapType::nth;
        assert!(SwapEntry::new(t(0), 1).is_ok());
        assert_eq!(SwapEntry::new(t(0), 0), Err(SwapEntryError::BadOffset(0)));
        assert_eq!(SwapType::new(23), None);
        assert_eq!(SwapEntry::from_type_offset(23, 1), Err(SwapEntryError::BadType(23)));
        assert_eq!(SwapEntry::new(t(1), 1 << 50), Err(SwapEntryError::BadOffset(1 << 50)));
        assert_eq!(SwapEntry::new(t(0), (1 << 50) - 1), Err(SwapEntryError::BadOffset((1 << 50) - 1)));
        let e = SwapEntry::new(t(22), MAX_SWAP_OFFSET).unwrap();
        assert_eq!((e.ty(), e.offset()), (t(22), MAX_SWAP_OFFSET));
        assert_eq!(alloc::format!("{}", e.ty()), "22");
        assert!(MigrationEntry::new(MigrationKind::Read, Pfn::new(1 << 40), false, false).is_none());
        assert!(MigrationEntry::new(MigrationKind::Read, Pfn::new((1 << 40) - 1), true, true).is_some());
    }

    #[test]
    fn raw_swap_entries_round_trip_and_count_slots() {
        let e = SwapEntry::new(SwapType::nth(5), 0x1000).unwrap();
        assert_ne!(e.to_raw(), 0);
        assert_eq!(SwapEntry::from_raw(e.to_raw()), Ok(e));
        assert_eq!(SwapEntry::from_raw(e.to_raw() + 7), SwapEntry::new(SwapType::nth(5), 0x1007));
        assert_eq!(e.plus(7), SwapEntry::new(SwapType::nth(5), 0x1007).unwrap());
        assert_eq!(SwapEntry::from_raw(0), Err(SwapEntryError::BadOffset(0)));
        assert!(SwapEntry::from_raw(23 << SWAP_OFFSET_BITS | 1).is_err());
    }

    #[test]
    fn migration_offsets_round_trip() {
        for kind in [MigrationKind::Read, MigrationKind::ReadExclusive, MigrationKind::Write] {
            for (young, dirty) in [(false, false), (true, false), (false, true), (true, true)] {
                let m = MigrationEntry { kind, pfn: Pfn::new(0xff_ffff_ffff), young, dirty };
                assert_eq!(MigrationEntry::from_type_offset(kind.swap_type(), m.to_offset()), Some(m));
            }
        }
        assert_eq!(MigrationEntry::from_type_offset(3, 1), None);
        assert_eq!(MigrationEntry::from_type_offset(24, 1 << 45), None);
    }

    #[test]
    fn nonpresent_fields_round_trip_and_refuse_what_names_no_entry() {
        let swap =
            NonPresent::Swap { entry: SwapEntry::new(SwapType::nth(7), 0x1234).unwrap(), exclusive: true };
        assert_eq!(swap.to_fields(), (7, 0x1234, true));
        let m = MigrationEntry {
            kind: MigrationKind::ReadExclusive,
            pfn: Pfn::new(0x42),
            young: true,
            dirty: false,
        };
        let migration = NonPresent::Migration(m);
        assert_eq!(migration.to_fields(), (25, m.to_offset(), false));
        for entry in [swap, migration] {
            let (ty, offset, exclusive) = entry.to_fields();
            assert_eq!(NonPresent::from_fields(ty, offset, exclusive), Some(entry));
        }
        assert_eq!(NonPresent::from_fields(3, 0, false), None, "offset 0 is the swap header");
        assert_eq!(NonPresent::from_fields(23, 1, false), None, "hwpoison: no swap area, no migration kind");
        assert_eq!(
            NonPresent::from_fields(25, m.to_offset(), true),
            None,
            "migration with the exclusive bit"
        );
        assert_eq!(
            NonPresent::from_fields(24, 1 << 45, false),
            None,
            "migration offset above young and dirty"
        );
    }

    #[test]
    #[should_panic(expected = "too wide")]
    fn nonpresent_fields_refuse_a_wide_migration_pfn() {
        let m = MigrationEntry {
            kind: MigrationKind::Read,
            pfn: Pfn::new(1 << MIGRATION_PFN_BITS),
            young: false,
            dirty: false,
        };
        let _ = NonPresent::Migration(m).to_fields();
    }

    #[test]
    fn field_helpers_describe_bit_layouts() {
        assert_eq!(bits(0, 0), 1);
        assert_eq!(bits(12, 51), 0x000f_ffff_ffff_f000);
        assert_eq!(bits(59, 63), 0xf800_0000_0000_0000);
        assert!(is_partition(&[bits(0, 11), bits(12, 62), 1 << 63]));
        assert!(!is_partition(&[bits(0, 12), bits(12, 63)]), "bit 12 in two fields");
        assert!(!is_partition(&[bits(0, 11), bits(13, 63)]), "bit 12 in none");
        assert_eq!(PageSize::Size4K.frame_mask(52), bits(12, 51));
        assert_eq!(PageSize::Size2M.frame_mask(48), bits(21, 47));
        assert_eq!(PageSize::Size1G.frame_mask(48), bits(30, 47));
    }

    fn leaf(frame: u64, size: PageSize) -> Leaf {
        Leaf { frame: PhysAddr::new(frame), size, prot: Prot::READ, dirty: false, young: false }
    }

    #[test]
    fn leaf_frame_bits_are_the_frame() {
        assert_eq!(leaf(0x20_0000, PageSize::Size2M).frame_bits(48), 0x20_0000);
        assert_eq!(leaf((1 << 48) - 4096, PageSize::Size4K).frame_bits(48), (1 << 48) - 4096);
    }

    #[test]
    #[should_panic(expected = "not aligned to Size2M")]
    fn leaf_frame_bits_refuse_an_unaligned_frame() {
        let _ = leaf(0x1000, PageSize::Size2M).frame_bits(48);
    }

    #[test]
    #[should_panic(expected = "beyond 48-bit physical addresses")]
    fn leaf_frame_bits_refuse_a_frame_too_high() {
        let _ = leaf(1 << 48, PageSize::Size4K).frame_bits(48);
    }
}
