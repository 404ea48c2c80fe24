//! proptest strategies for page-table entries, arch-neutral: the values of
//! [`crate::pgtable::format`] that every format must encode. The arch
//! crates' bit-layout tests and `mm`'s format conformance tests
//! (`kernel/mm/tests/formats_conformance.rs`) draw from these, so both sides
//! test the same domain.
//!
//! Only values the format contract allows are generated: swap offsets in
//! `1..=MAX_SWAP_OFFSET`, migration PFNs below `2^MIGRATION_PFN_BITS`,
//! frames aligned to their leaf size and below the format's physical
//! address width (which the caller gives, as the trait does not name it).

use crate::pgtable::format::{MigrationKind, MAX_SWAP_OFFSET, MAX_SWAP_TYPES, MIGRATION_PFN_BITS};
use crate::pgtable::SwapType;
use crate::pgtable::{
    Decoded, Leaf, Level, MigrationEntry, NonPresent, PageSize, PageTableFormat, Prot, SwapEntry,
};
use crate::{Pfn, PhysAddr};
use proptest::prelude::*;

/// Any leaf size.
pub fn page_size() -> impl Strategy<Value = PageSize> {
    prop_oneof![Just(PageSize::Size4K), Just(PageSize::Size2M), Just(PageSize::Size1G)]
}

/// Any protection.
pub fn prot() -> impl Strategy<Value = Prot> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(writable, user, executable, global)| Prot { writable, user, executable, global })
}

/// Any leaf of any size whose frame lies below `2^phys_addr_bits`.
pub fn leaf(phys_addr_bits: u32) -> impl Strategy<Value = Leaf> {
    (page_size(), 0..1u64 << phys_addr_bits, prot(), any::<bool>(), any::<bool>()).prop_map(
        |(size, addr, prot, dirty, young)| {
            let frame = addr & !(size.bytes() - 1);
            Leaf { frame: PhysAddr::new(frame), size, prot, dirty, young }
        },
    )
}

/// Any migration kind.
pub fn migration_kind() -> impl Strategy<Value = MigrationKind> {
    prop_oneof![Just(MigrationKind::Read), Just(MigrationKind::ReadExclusive), Just(MigrationKind::Write)]
}

/// Any migration entry (PFN within its field).
pub fn migration() -> impl Strategy<Value = MigrationEntry> {
    (migration_kind(), 0..1u64 << MIGRATION_PFN_BITS, any::<bool>(), any::<bool>())
        .prop_map(|(kind, pfn, young, dirty)| MigrationEntry { kind, pfn: Pfn::new(pfn), young, dirty })
}

/// Any swap entry [`SwapEntry::new`] accepts.
pub fn swap_entry() -> impl Strategy<Value = SwapEntry> {
    (0..MAX_SWAP_TYPES, 1..=MAX_SWAP_OFFSET)
        .prop_map(|(ty, offset)| SwapEntry::new(SwapType::nth(ty), offset).unwrap())
}

/// Any swap or migration entry.
pub fn nonpresent() -> impl Strategy<Value = NonPresent> {
    prop_oneof![
        (swap_entry(), any::<bool>()).prop_map(|(entry, exclusive)| NonPresent::Swap { entry, exclusive }),
        migration().prop_map(NonPresent::Migration),
    ]
}

/// The type number, the offset field and the exclusive bit that encode a
/// swap or migration entry on every format (a migration entry's kind is
/// its type, its PFN, young and dirty its offset; it has no exclusive bit).
pub fn swap_fields(entry: NonPresent) -> (u8, u64, bool) {
    match entry {
        NonPresent::Swap { entry, exclusive } => (entry.ty().raw(), entry.offset(), exclusive),
        NonPresent::Migration(m) => (m.kind.swap_type(), m.to_offset(), false),
    }
}

/// A level that may hold a table entry.
pub fn table_level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Pmd), Just(Level::Pud), Just(Level::Pgd)]
}

/// The leaf `raw` decodes to at `level`.
///
/// # Panics
/// When it decodes to anything else.
pub fn decoded_leaf<F: PageTableFormat>(raw: u64, level: Level) -> Leaf {
    match F::decode(raw, level) {
        Decoded::Leaf(leaf) => leaf,
        other => panic!("{}: {raw:#x} at {level:?} decodes as {other:?}, not a leaf", F::NAME),
    }
}
