//! The x86_64 page-table entry format: [`X86Format`].
//!
//! Four levels of 512 eight-byte entries (the CPU's PML4, PDPT, PD and PT;
//! `mm` calls them PGD, PUD, PMD and PTE), 4 KiB pages, and 2 MiB (PD) and
//! 1 GiB (PDPT) leaves. Generic code never sees these bits: it asks
//! [`X86Format`] to decode an entry into a [`Decoded`] and to encode the
//! entries it wants. With the `sim` feature (and in this crate's tests) the
//! format also walks tables as the MMU would (`HardwareWalker`).
//!
//! ## Present entries
//!
//! Under each field: `*` this format writes and reads it; `0` never written
//! (an entry with it set decodes as [`Decoded::Bad`]); `a` never written but
//! accepted by decode, because the CPU or the boot loader's tables set it.
//!
//! A table entry (PML4E; PDPTE or PDE with PS = 0):
//!
//! ```text
//!   63  62     52 51                   12 11   9   8    7    6   5    4     3    2    1   0
//! +----+---------+-----------------------+-------+----+----+---+---+-----+-----+----+----+---+
//! | NX | ignored |  next table address   |  ign  | ign| PS |ign| A | PCD | PWT | US | RW | P |
//! +----+---------+-----------------------+-------+----+----+---+---+-----+-----+----+----+---+
//!   a      0                *                0      0    0   0   a    a     a    *    *    *
//! ```
//!
//! [`make_table`](PageTableFormat::make_table) writes `P | RW | US`: a table
//! entry never restricts, the leaf decides. Decode also accepts NX, PWT,
//! PCD, A and a clear RW or US, because the CPU (A) and the boot loader's
//! tables (NX, no US) may have them; anything else makes the entry Bad.
//!
//! A 4 KiB leaf (PTE):
//!
//! ```text
//!   63  62  59 58  52 51                   12 11   9   8    7    6   5    4     3    2    1   0
//! +----+------+------+-----------------------+-------+----+-----+---+---+-----+-----+----+----+---+
//! | NX | PKEY | ign. |     frame address     | soft  | G  | PAT | D | A | PCD | PWT | US | RW | P |
//! +----+------+------+-----------------------+-------+----+-----+---+---+-----+-----+----+----+---+
//!   *     0      0               *               0     *     0    *   *    0     0    *    *    *
//! ```
//!
//! A 2 MiB leaf (PDE with PS) or 1 GiB leaf (PDPTE with PS): the frame
//! address is bits 51..21 (2 MiB) or 51..30 (1 GiB); the bits between it
//! and bit 13 are reserved by the CPU; bit 12 is PAT.
//!
//! ```text
//!   63  62  59 58  52 51    21|30 20|29   13  12   11  9   8    7    6   5    4     3    2    1   0
//! +----+------+------+---------+----------+-----+------+----+----+---+---+-----+-----+----+----+---+
//! | NX | PKEY | ign. |  frame  | reserved | PAT | soft | G  | PS | D | A | PCD | PWT | US | RW | P |
//! +----+------+------+---------+----------+-----+------+----+----+---+---+-----+-----+----+----+---+
//!   *     0      0        *         0        0     0     *    1    *   *    0     0    *    *    *
//! ```
//!
//! Meaning of the used leaf bits: P present; RW = [`Prot::writable`]; US =
//! [`Prot::user`]; A = [`Leaf::young`] and D = [`Leaf::dirty`], both set by
//! the CPU on access and write; G = [`Prot::global`]; NX = not
//! [`Prot::executable`]. All of them are hardware bits; the format uses no
//! software bit (9..11, 52..58) in a present entry.
//!
//! ## Non-present entries (swap and migration)
//!
//! With P = 0 the CPU ignores every other bit, so they are all software
//! bits, laid out as Linux lays them out (`mm-reference.md` §1):
//!
//! ```text
//!   63    59 58                                          9    8     7    6   5    4     3      2    1   0
//! +--------+----------------------------------------------+------+----+---+---+-----+------+----+----+---+
//! |  type  |      NOT offset (50 bits, stored inverted)   | PROT | PS | D | A | (4) | excl | uw | sd | P |
//! |        |                                              | NONE |    |   |   |     |      |    |    |   |
//! +--------+----------------------------------------------+------+----+---+---+-----+------+----+----+---+
//!      *                        *                            0     0   i   i    0      *     0    0    0
//! ```
//!
//! - `type`: the swap area (`0..MAX_SWAP_TYPES`), or a migration type (24
//!   read, 25 read-exclusive, 26 write); any other type is Bad.
//! - `offset`: the swap slot, or for migration the PFN with young and dirty
//!   above it
//!   ([`MigrationEntry::to_offset`](mm::pgtable::MigrationEntry::to_offset)).
//!   It is stored bitwise inverted (L1TF): the CPU may speculatively use the
//!   address bits of a non-present entry, and inverted small numbers point
//!   far above RAM.
//! - `excl`: the swap entry was anon-exclusive. Migration entries carry
//!   exclusivity in their type and keep this bit 0.
//! - `A`, `D`: ignored. Some CPUs (Knights Landing erratum) can set them in a
//!   non-present entry, so an entry of only A and/or D is none, and A/D never
//!   hold information.
//! - `PS`, `PROTNONE`, `uw` (uffd-wp), `sd` (soft-dirty), bit 4: 0; Linux
//!   uses them, this kernel does not (yet), so a set bit is Bad.
//!
//! The same layout is used at the PTE and PMD levels; a non-present entry
//! at the PUD or PGD level is Bad (the kernel never writes one).
//!
//! ## Assumed configuration
//!
//! - Long mode, 4-level paging (CR4.LA57 = 0): 48-bit canonical virtual
//!   addresses.
//! - EFER.NXE = 1 (set by `init` at boot), so bit 63 is NX, not a
//!   reserved bit.
//! - CR0.WP = 1 (set at boot): supervisor writes honour RW.
//! - CR4.PKE = 0: bits 59..62 are ignored by the CPU; kept 0.
//! - CR4.SMEP and CR4.SMAP are on when the CPU has them (`user`): the
//!   kernel may not execute user pages, nor touch them outside the
//!   user-access routines. The format is unaffected (the US bit means the
//!   same), and the walker does not model them.
//! - The PAT MSR at its power-on value: PWT = PCD = PAT = 0 selects entry 0,
//!   write-back. Every mapping made through this format is write-back RAM;
//!   the format has no way to express device memory.
//! - Physical addresses up to 52 bits are encoded (the architectural
//!   maximum). QEMU's `qemu64` CPU reports 40 physical address bits, so a
//!   frame above 2^40 would take a reserved-bit fault there; RAM is far
//!   below, and the frame allocator only hands out RAM.
//! - 1 GiB leaves need CPUID `Page1GB`, which QEMU's `qemu64` model lacks
//!   unless `+pdpe1gb` is given: the format encodes them, and the walker
//!   models a CPU that has them, but the kernel must check the CPUID bit
//!   before making one.
#![forbid(unsafe_code)]

use mm::pgtable::format::{bits, is_partition, MIGRATION_PFN_BITS, SWAP_OFFSET_BITS};
use mm::pgtable::{Decoded, Leaf, Level, NonPresent, PageSize, PageTableFormat, Prot};
use mm::PhysAddr;
// The names the tests below take from here with `use super::*`.
#[cfg(test)]
use mm::pgtable::{MigrationEntry, SwapEntry};

// ---- Present entries: hardware bits ----

/// Present.
pub const P: u64 = 1 << 0;
/// Writable (at every level of the walk).
pub const RW: u64 = 1 << 1;
/// User (ring 3) may access (at every level of the walk).
pub const US: u64 = 1 << 2;
/// Page-level write-through (a cache-type selector; kept 0: write-back).
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable (a cache-type selector; kept 0: write-back).
pub const PCD: u64 = 1 << 4;
/// Accessed: set by the CPU when it uses the entry.
pub const A: u64 = 1 << 5;
/// Dirty: set by the CPU on the first write through a leaf.
pub const D: u64 = 1 << 6;
/// Page size: a PDE or PDPTE with PS is a 2 MiB or 1 GiB leaf.
pub const PS: u64 = 1 << 7;
/// In a 4 KiB leaf bit 7 is the PAT selector instead of PS (kept 0).
pub const PTE_PAT: u64 = 1 << 7;
/// Global: the translation survives a CR3 switch.
pub const G: u64 = 1 << 8;
/// Bits 9..11, available to software (unused in present entries).
pub const SOFTWARE_LOW: u64 = bits(9, 11);
/// The physical address of a 4 KiB frame or of the next table: bits 12..51.
pub const ADDR: u64 = PageSize::Size4K.frame_mask(PHYS_ADDR_BITS);
/// In a 2 MiB or 1 GiB leaf bit 12 is the PAT selector (kept 0).
pub const HUGE_PAT: u64 = 1 << 12;
/// The frame address of a 2 MiB leaf: bits 21..51.
pub const ADDR_2M: u64 = PageSize::Size2M.frame_mask(PHYS_ADDR_BITS);
/// Reserved (must be 0) bits of a 2 MiB leaf, between PAT and the address.
pub const RESERVED_2M: u64 = bits(13, 20);
/// The frame address of a 1 GiB leaf: bits 30..51.
pub const ADDR_1G: u64 = PageSize::Size1G.frame_mask(PHYS_ADDR_BITS);
/// Reserved (must be 0) bits of a 1 GiB leaf, between PAT and the address.
pub const RESERVED_1G: u64 = bits(13, 29);
/// Bits 52..58, ignored by the CPU (unused).
pub const IGNORED_HIGH: u64 = bits(52, 58);
/// Protection key (ignored with CR4.PKE = 0; kept 0).
pub const PKEY: u64 = bits(59, 62);
/// No-execute (with EFER.NXE = 1).
pub const NX: u64 = 1 << 63;

/// Physical address bits an entry can hold (the architectural maximum).
pub const PHYS_ADDR_BITS: u32 = 52;

/// The bits a table entry may carry besides [`ADDR`] and decode as a table.
const TABLE_FLAGS: u64 = P | RW | US | PWT | PCD | A | NX;
/// The bits a leaf may carry besides its address (and PS on huge leaves).
const LEAF_FLAGS: u64 = P | RW | US | A | D | G | NX;

// ---- Non-present entries: all software bits ----

/// Soft-dirty in a swap entry (unused: 0).
pub const SWP_SOFT_DIRTY: u64 = 1 << 1;
/// uffd-wp in a swap entry (unused: 0).
pub const SWP_UFFD_WP: u64 = 1 << 2;
/// The swap entry was anon-exclusive (the PWT position).
pub const SWP_EXCLUSIVE: u64 = 1 << 3;
/// Bit 4 (PCD position): unused, 0.
pub const SWP_UNUSED: u64 = 1 << 4;
/// PROT_NONE marker in Linux (the G position); unused here, 0.
pub const SWP_PROTNONE: u64 = 1 << 8;
/// Where the inverted offset starts.
pub const SWP_OFFSET_SHIFT: u32 = 9;
/// The inverted offset: bits 9..58.
pub const SWP_OFFSET: u64 = bits(SWP_OFFSET_SHIFT, SWP_OFFSET_SHIFT + SWAP_OFFSET_BITS - 1);
/// Where the type starts.
pub const SWP_TYPE_SHIFT: u32 = 59;
/// The type: bits 59..63.
pub const SWP_TYPE: u64 = bits(SWP_TYPE_SHIFT, 63);

// Every bit of every kind of entry has exactly one role. A table entry has
// the fields of a 4 KiB leaf (bit 7, PAT there, is PS here and kept 0).
const PTE_FIELDS: [u64; 14] =
    [P, RW, US, PWT, PCD, A, D, PTE_PAT, G, SOFTWARE_LOW, ADDR, IGNORED_HIGH, PKEY, NX];
const _: () = assert!(is_partition(&PTE_FIELDS));
const HUGE_2M_FIELDS: [u64; 16] =
    [P, RW, US, PWT, PCD, A, D, PS, G, SOFTWARE_LOW, HUGE_PAT, RESERVED_2M, ADDR_2M, IGNORED_HIGH, PKEY, NX];
const _: () = assert!(is_partition(&HUGE_2M_FIELDS));
const HUGE_1G_FIELDS: [u64; 16] =
    [P, RW, US, PWT, PCD, A, D, PS, G, SOFTWARE_LOW, HUGE_PAT, RESERVED_1G, ADDR_1G, IGNORED_HIGH, PKEY, NX];
const _: () = assert!(is_partition(&HUGE_1G_FIELDS));
const SWAP_FIELDS: [u64; 11] =
    [P, SWP_SOFT_DIRTY, SWP_UFFD_WP, SWP_EXCLUSIVE, SWP_UNUSED, A, D, PS, SWP_PROTNONE, SWP_OFFSET, SWP_TYPE];
const _: () = assert!(is_partition(&SWAP_FIELDS));
// The flags the format writes never overlap an address.
const _: () = assert!((TABLE_FLAGS | LEAF_FLAGS | PS) & ADDR == 0);
// The type field holds every type number (0..=31), the offset field every
// swap offset and every migration offset (PFN, young, dirty).
const _: () = assert!(SWP_TYPE >> SWP_TYPE_SHIFT == 31);
const _: () = assert!(SWP_OFFSET >> SWP_OFFSET_SHIFT == (1 << SWAP_OFFSET_BITS) - 1);
const _: () = assert!(MIGRATION_PFN_BITS + 2 <= SWAP_OFFSET_BITS);
// A 4 KiB leaf's PAT bit is where a huge leaf's PS is: decode tells them
// apart by level.
const _: () = assert!(PTE_PAT == PS);

/// The x86_64 4-level page-table format (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86Format;

/// Decodes a present table entry: any of [`TABLE_FLAGS`], nothing else.
#[inline]
fn decode_table(raw: u64) -> Decoded {
    if raw & !(ADDR | TABLE_FLAGS) != 0 {
        return Decoded::Bad(raw);
    }
    Decoded::Table(PhysAddr::new(raw & ADDR))
}

/// Decodes a present leaf of `size`. Exactly the bits
/// [`X86Format::make_leaf`] writes are accepted, so decoding and encoding
/// again gives back `raw`.
#[inline]
fn decode_leaf(raw: u64, size: PageSize) -> Decoded {
    let ps = if size == PageSize::Size4K { 0 } else { PS };
    let addr = size.frame_mask(PHYS_ADDR_BITS);
    // Catches PAT, PWT, PCD, software and key bits, and on huge leaves the
    // reserved bits (an address not aligned to the leaf size).
    if raw & !(addr | LEAF_FLAGS | ps) != 0 {
        return Decoded::Bad(raw);
    }
    Decoded::Leaf(Leaf {
        frame: PhysAddr::new(raw & addr),
        size,
        prot: Prot {
            writable: raw & RW != 0,
            user: raw & US != 0,
            executable: raw & NX == 0,
            global: raw & G != 0,
        },
        dirty: raw & D != 0,
        young: raw & A != 0,
    })
}

/// Decodes an entry with P = 0.
fn decode_nonpresent(raw: u64, level: Level) -> Decoded {
    // A and D may have been set by the CPU (erratum); they mean nothing.
    let bits = raw & !(A | D);
    if bits == 0 {
        return Decoded::None;
    }
    if !matches!(level, Level::Pte | Level::Pmd) {
        return Decoded::Bad(raw);
    }
    if bits & !(SWP_TYPE | SWP_OFFSET | SWP_EXCLUSIVE) != 0 {
        return Decoded::Bad(raw);
    }
    let ty = (bits >> SWP_TYPE_SHIFT) as u8;
    let offset = !(bits >> SWP_OFFSET_SHIFT) & ((1 << SWAP_OFFSET_BITS) - 1);
    NonPresent::from_fields(ty, offset, bits & SWP_EXCLUSIVE != 0)
        .map_or(Decoded::Bad(raw), Decoded::NonPresent)
}

impl PageTableFormat for X86Format {
    const NAME: &'static str = crate::NAME;
    const PHYS_ADDR_BITS: u32 = PHYS_ADDR_BITS;

    #[inline]
    fn decode(raw: u64, level: Level) -> Decoded {
        if raw & P == 0 {
            return decode_nonpresent(raw, level);
        }
        match level {
            // Bit 7 here is PAT, which this format never sets: decode_leaf
            // reports it as Bad.
            Level::Pte => decode_leaf(raw, PageSize::Size4K),
            Level::Pmd if raw & PS != 0 => decode_leaf(raw, PageSize::Size2M),
            Level::Pud if raw & PS != 0 => decode_leaf(raw, PageSize::Size1G),
            // PS in a PML4E is reserved.
            Level::Pgd if raw & PS != 0 => Decoded::Bad(raw),
            Level::Pmd | Level::Pud | Level::Pgd => decode_table(raw),
        }
    }

    /// # Panics
    /// If `level` is the PTE level (nothing lies below it), or `next` is not
    /// a 4 KiB-aligned address below 2^52.
    fn make_table(next: PhysAddr, level: Level) -> u64 {
        assert!(level != Level::Pte, "make_table: a PTE cannot point at a table");
        assert!(next.as_u64() & !ADDR == 0, "make_table: {next} is not a 4 KiB frame below 2^52");
        next.as_u64() | P | RW | US
    }

    /// # Panics
    /// If `leaf.frame` is not aligned to `leaf.size` or lies above 2^52.
    #[inline]
    fn make_leaf(leaf: &Leaf) -> u64 {
        let frame = leaf.frame_bits(PHYS_ADDR_BITS);
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        frame
            | P
            | flag(leaf.size != PageSize::Size4K, PS)
            | flag(leaf.prot.writable, RW)
            | flag(leaf.prot.user, US)
            | flag(leaf.prot.global, G)
            | flag(!leaf.prot.executable, NX)
            | flag(leaf.young, A)
            | flag(leaf.dirty, D)
    }

    /// # Panics
    /// - If a migration entry's PFN is wider than [`MIGRATION_PFN_BITS`].
    /// - For the one swap entry whose inverted offset is all zeros and whose
    ///   encoding would therefore be the none entry: type 0, offset
    ///   2^50 - 1, not exclusive. No swap area is that large.
    fn make_nonpresent(entry: &NonPresent) -> u64 {
        let (ty, offset, exclusive) = entry.to_fields();
        let raw = (ty as u64) << SWP_TYPE_SHIFT
            | (!offset << SWP_OFFSET_SHIFT) & SWP_OFFSET
            | if exclusive { SWP_EXCLUSIVE } else { 0 };
        assert!(raw != 0, "make_nonpresent: {entry:?} would encode as the none entry");
        raw
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

    /// True when `va` is canonical for 48-bit virtual addresses (bits 63..47
    /// all equal).
    const fn is_canonical(va: u64) -> bool {
        ((va << 16) as i64 >> 16) as u64 == va
    }

    /// Bits that make a present entry at `level` fault as reserved.
    ///
    /// The CPU reserves PS in a PML4E and the bits between PAT and the address
    /// in a huge leaf. It treats the PAT bits (bit 7 of a PTE, bit 12 of a huge
    /// leaf) as memory-type selectors; this walker reports them as reserved
    /// because the kernel programs no PAT memory type and never sets them, so a
    /// stray one is a bug to surface. Bits 52..62 are ignored by the CPU (CR4.PKE
    /// = 0, MAXPHYADDR modelled as 52), so they are not reserved here.
    fn reserved_bits(raw: u64, level: Level) -> u64 {
        match level {
            Level::Pgd => PS,
            Level::Pte => PTE_PAT,
            Level::Pmd if raw & PS != 0 => HUGE_PAT | RESERVED_2M,
            Level::Pud if raw & PS != 0 => HUGE_PAT | RESERVED_1G,
            Level::Pmd | Level::Pud => 0,
        }
    }

    /// The x86_64 MMU in software.
    ///
    /// Rights are the intersection over the whole walk: writable only if RW is
    /// set at every level, user only if US is, executable only if NX is clear
    /// at every level. CR0.WP = 1, so supervisor writes need RW too. SMAP and
    /// SMEP are off (as at boot) and not modelled: the supervisor may read,
    /// write and execute user pages.
    ///
    /// On success the walker sets A in the leaf, and D on a write, in one
    /// write of the entry, as the CPU's locked update does. (The CPU also sets A
    /// in the table entries it used; the walker leaves them alone, and decode
    /// accepts A in a table entry either way.) A translation without D does not
    /// allow writes: the CPU must walk again to set D.
    ///
    /// # Panics
    /// If `va` is not canonical (the CPU raises #GP, not a page fault, and the
    /// fault type has no variant for it), or `root` is not a table frame.
    impl HardwareWalker for X86Format {
        fn hw_translate(
            mem: &impl TableMemory,
            root: PhysAddr,
            va: VirtAddr,
            access: HwAccess,
        ) -> Result<Translation, HwFault> {
            let va = va.as_u64();
            assert!(is_canonical(va), "X86Format::hw_translate: {va:#x} is not canonical");
            assert!(root.as_u64() & !ADDR == 0, "X86Format::hw_translate: root {root} is not a table frame");
            let mut table = root.as_u64();
            let (mut writable, mut user, mut executable) = (true, true, true);
            for level in Level::TOP_DOWN {
                let slot = PhysAddr::new(table + 8 * level.index(va) as u64);
                let raw = mem.read_entry(slot);
                if raw & P == 0 {
                    return Err(HwFault::NotMapped { level });
                }
                if raw & reserved_bits(raw, level) != 0 {
                    return Err(HwFault::Reserved { level });
                }
                writable &= raw & RW != 0;
                user &= raw & US != 0;
                executable &= raw & NX == 0;
                let size = match level {
                    Level::Pte => PageSize::Size4K,
                    Level::Pmd if raw & PS != 0 => PageSize::Size2M,
                    Level::Pud if raw & PS != 0 => PageSize::Size1G,
                    _ => {
                        table = raw & ADDR;
                        continue;
                    }
                };
                let write = access.access == Access::Write;
                let denied = (access.user && !user)
                    || match access.access {
                        Access::Read => false,
                        Access::Write => !writable,
                        Access::Execute => !executable,
                    };
                if denied {
                    return Err(HwFault::Permission { level });
                }
                let updated = raw | A | if write { D } else { 0 };
                if updated != raw {
                    mem.write_entry(slot, updated);
                }
                let frame = raw & size.frame_mask(PHYS_ADDR_BITS);
                return Ok(Translation {
                    pa: PhysAddr::new(frame | (va & (size.bytes() - 1))),
                    size,
                    can_read: true,
                    can_write: writable && updated & D != 0,
                    can_exec: executable,
                    user,
                });
            }
            unreachable!("X86Format::hw_translate: the PTE level always ends the walk")
        }
    }
}

#[cfg(test)]
mod tests {
    //! What only this format has: where each field sits, the encodings
    //! x86 alone has, and the rules of its MMU (A and D set by the CPU,
    //! reserved bits, rights over the whole walk, canonical addresses).
    //! The rules every format keeps are tested once for both formats, in
    //! `kernel/mm/tests/formats_conformance.rs`.
    use super::*;
    use mm::pgtable::format::MAX_SWAP_OFFSET;
    use mm::pgtable::sim::{HwAccess, HwFault};
    use mm::pgtable::SwapType;
    use mm::pgtable::TableMemory;
    use mm::testkit::mmu::{install, memory, page, slot_of, walk, FRAME, USER_RW, VA};
    use mm::testkit::strategies::{decoded_leaf, leaf, migration, nonpresent, swap_fields, table_level};
    use proptest::prelude::*;

    type F = X86Format;

    // ---- non-present entries ----

    proptest! {
        /// The diagram of the module doc: P clear, the type, the offset
        /// inverted (L1TF), the exclusive bit at the PWT position, and the
        /// bits Linux uses for other things zero.
        #[test]
        fn nonpresent_bits_follow_the_diagram(entry in nonpresent()) {
            let raw = F::make_nonpresent(&entry);
            prop_assert_eq!(raw & P, 0);
            let (ty, offset, exclusive) = swap_fields(entry);
            prop_assert_eq!(raw >> SWP_TYPE_SHIFT, ty as u64);
            prop_assert_eq!((raw & SWP_OFFSET) >> SWP_OFFSET_SHIFT, !offset & ((1 << SWAP_OFFSET_BITS) - 1));
            prop_assert_eq!(raw & SWP_EXCLUSIVE != 0, exclusive);
            prop_assert_eq!(raw & (SWP_SOFT_DIRTY | SWP_UFFD_WP | SWP_UNUSED | A | D | PS | SWP_PROTNONE), 0);
        }

        /// Some CPUs set A or D in a non-present entry (erratum): ignored.
        #[test]
        fn nonpresent_ignores_accessed_and_dirty(entry in nonpresent(), ad in 0..4u64) {
            let raw = F::make_nonpresent(&entry) | ad << 5;
            prop_assert_eq!(F::decode(raw, Level::Pte), Decoded::NonPresent(entry));
        }

        /// Inverted, a migration PMD's PFN does not even look like the
        /// frame it names.
        #[test]
        fn a_migration_pmd_holds_its_frame_inverted(m in migration(), frame_2m in 0..1u64 << 19) {
            let frame = frame_2m << 21;
            let raw = F::make_nonpresent(&NonPresent::Migration(MigrationEntry { pfn: PhysAddr::new(frame).pfn(), ..m }));
            prop_assert_ne!(raw & ADDR_2M, frame);
        }
    }

    #[test]
    fn none_is_zero_and_ignores_accessed_and_dirty() {
        for level in Level::TOP_DOWN {
            for raw in [0, A, D, A | D] {
                assert_eq!(F::decode(raw, level), Decoded::None, "{raw:#x} at {level:?}");
                assert!(F::is_none(raw, level));
            }
        }
    }

    #[test]
    fn unknown_nonpresent_entries_are_bad() {
        let swap = F::make_nonpresent(&NonPresent::Swap {
            entry: SwapEntry::new(SwapType::nth(3), 7).unwrap(),
            exclusive: false,
        });
        for bit in [SWP_SOFT_DIRTY, SWP_UFFD_WP, SWP_UNUSED, PS, SWP_PROTNONE] {
            assert_eq!(F::decode(swap | bit, Level::Pte), Decoded::Bad(swap | bit), "bit {bit:#x}");
        }
        // Types 23 (hwpoison), 27..=31 (device, marker): not used here.
        for ty in [23u64, 27, 28, 29, 30, 31] {
            let raw = ty << SWP_TYPE_SHIFT | (!1u64 << SWP_OFFSET_SHIFT) & SWP_OFFSET;
            assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw), "type {ty}");
        }
        // Swap offset 0 (the header) is no slot: its inverted field is all ones.
        let raw = 5 << SWP_TYPE_SHIFT | SWP_OFFSET;
        assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw));
    }

    #[test]
    fn the_swap_offset_that_would_invert_to_zero_cannot_be_built() {
        // Type 0, all-ones offset, not exclusive would be stored as 0, the
        // none entry: `SwapEntry::new` refuses that offset for every type.
        assert!(SwapEntry::new(SwapType::nth(0), (1 << SWAP_OFFSET_BITS) - 1).is_err());
        let entry = SwapEntry::new(SwapType::nth(0), MAX_SWAP_OFFSET).unwrap();
        let raw = F::make_nonpresent(&NonPresent::Swap { entry, exclusive: false });
        assert_ne!(raw, 0);
        assert_eq!(
            F::decode(raw, Level::Pte),
            Decoded::NonPresent(NonPresent::Swap { entry, exclusive: false })
        );
    }

    // ---- present entries ----

    proptest! {
        /// Every 52-bit frame, PS exactly on huge leaves, and none of the
        /// cache-type, software or key bits.
        #[test]
        fn leaf_bits_follow_the_diagram(leaf in leaf(PHYS_ADDR_BITS)) {
            let raw = F::make_leaf(&leaf);
            prop_assert_eq!(raw & ADDR & !(leaf.size.bytes() - 1), leaf.frame.as_u64());
            prop_assert_eq!(raw & PS != 0, leaf.size != PageSize::Size4K);
            prop_assert_eq!(raw & (PWT | PCD | SOFTWARE_LOW | IGNORED_HIGH | PKEY), 0);
            if leaf.size != PageSize::Size4K {
                prop_assert_eq!(raw & HUGE_PAT, 0);
            }
            let bits = [(RW, leaf.prot.writable), (US, leaf.prot.user), (G, leaf.prot.global)];
            for (bit, on) in bits.into_iter().chain([(NX, !leaf.prot.executable), (A, leaf.young), (D, leaf.dirty)]) {
                prop_assert_eq!(raw & bit != 0, on, "bit {:#x}", bit);
            }
        }

        /// Decode is exact: flipping any bit of a valid leaf gives an entry
        /// that encodes back to exactly itself (a leaf), a table entry of
        /// the same address, a non-present entry up to A and D, or one that
        /// decode refuses.
        #[test]
        fn decode_is_canonical(leaf in leaf(PHYS_ADDR_BITS), bit in 0..64u32) {
            let level = leaf.size.level();
            let raw = F::make_leaf(&leaf) ^ (1 << bit);
            match F::decode(raw, level) {
                Decoded::Leaf(l) => prop_assert_eq!(F::make_leaf(&l), raw),
                Decoded::Table(t) => prop_assert_eq!(t.as_u64(), raw & ADDR),
                Decoded::NonPresent(e) => prop_assert_eq!(F::make_nonpresent(&e), raw & !(A | D)),
                Decoded::None | Decoded::Bad(_) => {}
            }
        }

        /// `P | RW | US`: a table entry never restricts. The CPU sets A in
        /// the table entries it walks: still a table.
        #[test]
        fn table_bits_follow_the_diagram(frame in 0..1u64 << 40, level in table_level()) {
            let next = PhysAddr::new(frame << 12);
            let raw = F::make_table(next, level);
            prop_assert_eq!(raw & !ADDR, P | RW | US);
            prop_assert_eq!(F::decode(raw | A, level), Decoded::Table(next));
        }
    }

    /// Bit 7 is PS one level up and PAT in a PTE (the level rules are
    /// `formats_conformance`'s `a_huge_leaf_decodes_by_its_level`): the
    /// bits between PAT and a huge frame are reserved, and the cache-type
    /// bits are never written.
    #[test]
    fn reserved_and_cache_type_bits_are_bad() {
        let leaf = page(0x20_0000, Prot::READ_WRITE, false, true);
        let raw = F::make_leaf(&Leaf { size: PageSize::Size2M, ..leaf }) | 1 << 13;
        assert_eq!(F::decode(raw, Level::Pmd), Decoded::Bad(raw), "a misaligned huge frame");
        for bit in [PTE_PAT, PWT, PCD] {
            let raw = F::make_leaf(&leaf) | bit;
            assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw), "{bit:#x}");
        }
    }

    // ---- the walker ----

    #[test]
    fn the_kernel_may_execute_user_pages_without_smep() {
        let (mem, root) = memory();
        let exec = Prot { executable: true, ..USER_RW };
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, exec, true, true)));
        assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC).unwrap().can_exec);
    }

    #[test]
    fn nx_forbids_execution() {
        let (mem, root) = memory();
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
        let fault = Err(HwFault::Permission { level: Level::Pte });
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC), fault);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC), fault);
        let exec = F::make_leaf(&page(FRAME, Prot { executable: true, ..USER_RW }, true, true));
        install::<F>(&mem, root, VA, Level::Pte, exec);
        assert!(
            walk::<F>(&mem, root, VA, HwAccess::USER_EXEC).unwrap().can_exec,
            "one TLB entry for both modes"
        );
    }

    #[test]
    fn rights_are_the_intersection_over_the_walk() {
        let (mem, root) = memory();
        let rwx = Prot { executable: true, ..USER_RW };
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, rwx, true, true)));
        let pmd_slot = slot_of::<F>(&mem, root, VA, Level::Pmd);
        let Decoded::Table(pt) = F::decode(mem.read_entry(pmd_slot), Level::Pmd) else { panic!("no PT") };
        for (clear, access) in [(RW, HwAccess::USER_WRITE), (US, HwAccess::USER_READ)] {
            mem.write_entry(pmd_slot, F::make_table(pt, Level::Pmd) & !clear);
            assert_eq!(walk::<F>(&mem, root, VA, access), Err(HwFault::Permission { level: Level::Pte }));
        }
        mem.write_entry(pmd_slot, F::make_table(pt, Level::Pmd) | NX);
        assert_eq!(
            walk::<F>(&mem, root, VA, HwAccess::USER_EXEC),
            Err(HwFault::Permission { level: Level::Pte })
        );
        mem.write_entry(pmd_slot, F::make_table(pt, Level::Pmd));
        assert!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC).is_ok());
    }

    #[test]
    fn the_cpu_sets_accessed_and_dirty() {
        let (mem, root) = memory();
        let slot =
            install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, false, false)));
        let t = walk::<F>(&mem, root, VA, HwAccess::USER_READ).unwrap();
        assert!(!t.can_write, "without D a write must walk again");
        let after_read = decoded_leaf::<F>(mem.read_entry(slot), Level::Pte);
        assert!(after_read.young && !after_read.dirty);
        let t = walk::<F>(&mem, root, VA, HwAccess::USER_WRITE).unwrap();
        assert!(t.can_write);
        assert_eq!(decoded_leaf::<F>(mem.read_entry(slot), Level::Pte), page(FRAME, USER_RW, true, true));
        // A faulting access changes nothing.
        let ro = F::make_leaf(&page(FRAME, Prot::READ, false, false));
        mem.write_entry(slot, ro);
        assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE).is_err());
        assert_eq!(mem.read_entry(slot), ro);
    }

    #[test]
    fn reserved_bits_fault() {
        let (mem, root) = memory();
        let leaf = page(FRAME, Prot::READ, true, true);
        let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&leaf) | PTE_PAT);
        let reserved = |level| Err(HwFault::Reserved { level });
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ), reserved(Level::Pte));
        // Ignored bits are not reserved to the CPU (though decode calls them Bad).
        mem.write_entry(slot, F::make_leaf(&leaf) | IGNORED_HIGH | SOFTWARE_LOW);
        assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ).is_ok());
        let huge = Leaf { frame: PhysAddr::new(0x20_0000), size: PageSize::Size2M, ..leaf };
        install::<F>(&mem, root, VA, Level::Pmd, F::make_leaf(&huge) | 1 << 14);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ), reserved(Level::Pmd));
        let pgd_slot = slot_of::<F>(&mem, root, VA, Level::Pgd);
        mem.write_entry(pgd_slot, mem.read_entry(pgd_slot) | PS);
        assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ), reserved(Level::Pgd));
    }

    #[test]
    #[should_panic(expected = "not canonical")]
    fn a_non_canonical_address_is_not_a_page_fault() {
        let (mem, root) = memory();
        let _ = walk::<F>(&mem, root, 0x0000_8000_0000_0000, HwAccess::KERNEL_READ);
    }

    #[test]
    fn upper_half_addresses_walk_from_the_same_root() {
        let (mem, root) = memory();
        let va = 0xffff_8000_0000_1000;
        install::<F>(&mem, root, va, Level::Pte, F::make_leaf(&page(FRAME, Prot::READ, false, true)));
        assert_eq!(walk::<F>(&mem, root, va, HwAccess::KERNEL_READ).unwrap().pa, PhysAddr::new(FRAME));
    }
}
