//! Conformance of the real page-table formats to the rules of
//! `mm::pgtable::format`, and of their simulated MMUs to what generic code
//! may assume: every test here is one generic function, run once per
//! format (`x86_64::name`, `aarch64::name`) by `for_both_formats!`.
//!
//! These are the tests that hold for any format; each arch crate keeps
//! only what is about its own bits (`arch/*/src/pgtable.rs`: where each
//! field sits, the encodings only it has, its MMU's own rules). Where the
//! architectures legitimately differ (x86 sets accessed and dirty in
//! hardware, AArch64 without FEAT_HAFDBS faults instead) the checks accept
//! either behaviour, but require that the kernel's fix (`mkyoung`,
//! `mkdirty`) then lets the access through.
//!
//! The values come from `mm::testkit::strategies` (proptest), plus the
//! edges of every field, which random draws would seldom hit.
//!
//! Needs `mm`'s `sim` feature: the arch crates, dev-dependencies here, turn
//! it on.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::pgtable::format::{MigrationKind, MAX_SWAP_OFFSET, MAX_SWAP_TYPES, MIGRATION_PFN_BITS};
use mm::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SoftTlb};
use mm::pgtable::SwapType;
use mm::pgtable::{
    Decoded, Flush, Leaf, Level, MigrationEntry, NonPresent, PageSize, PageTableFormat, Prot, SwapEntry,
    TableMemory, TlbHooks,
};
use mm::testkit::mmu::{install, memory, page, slot_of, walk, FRAME, USER_RW, VA};
use mm::testkit::strategies::{decoded_leaf, leaf, migration, nonpresent, swap_entry, table_level};
use mm::Pfn;
use mm::{PhysAddr, VirtAddr};
use proptest::prelude::*;

/// The formats under test: a format with its simulated MMU (the physical
/// address width it encodes, frames above which are refused, is
/// `PageTableFormat::PHYS_ADDR_BITS`).
trait Format: HardwareWalker {}

impl Format for X86Format {}

impl Format for Aarch64Format {}

/// The entry operations that change only present leaves.
fn the_algebra<F: PageTableFormat>() -> [fn(u64, Level) -> u64; 6] {
    [F::mkdirty, F::mkclean, F::mkyoung, F::mkold, F::wrprotect, F::mkwrite]
}

// ---------------------------------------------------------------- non-present entries

fn none_is_zero<F: Format>() {
    for level in Level::TOP_DOWN {
        assert_eq!(F::decode(0, level), Decoded::None, "{}: 0 at {level:?}", F::NAME);
        assert!(F::is_none(0, level) && !F::is_present(0, level));
    }
}

/// Checks what every swap or migration entry must keep.
fn check_nonpresent<F: Format>(entry: NonPresent) {
    let raw = F::make_nonpresent(&entry);
    for level in [Level::Pte, Level::Pmd] {
        let what = format!("{}: {entry:?} = {raw:#x} at {level:?}", F::NAME);
        assert_eq!(F::decode(raw, level), Decoded::NonPresent(entry), "{what}");
        assert!(!F::is_present(raw, level), "{what} is present");
        assert!(!F::is_none(raw, level), "{what} is none");
        for op in the_algebra::<F>() {
            assert_eq!(op(raw, level), raw, "{what}: the algebra changed it");
        }
    }
    // Seed 001: a migration PMD is never a leaf of the frame it names.
    if let NonPresent::Migration(m) = entry {
        let frame = m.pfn.phys();
        assert!(
            !matches!(F::decode(raw, Level::Pmd), Decoded::Leaf(l) if l.frame == frame),
            "{}: migration PMD {m:?} decodes as a leaf of its frame",
            F::NAME
        );
    }
}

fn nonpresent_round_trips_at_pte_and_pmd<F: Format>() {
    proptest!(|(entry in nonpresent())| check_nonpresent::<F>(entry));
}

/// The edges of every field: types, offsets, PFNs, young and dirty.
fn the_edges_of_every_field_round_trip<F: Format>() {
    for ty in [0, 1, MAX_SWAP_TYPES - 1] {
        for offset in [1, 2, 0x1234_5678, MAX_SWAP_OFFSET - 1, MAX_SWAP_OFFSET] {
            for exclusive in [false, true] {
                let entry = SwapEntry::new(SwapType::nth(ty), offset).unwrap();
                check_nonpresent::<F>(NonPresent::Swap { entry, exclusive });
            }
        }
    }
    for kind in [MigrationKind::Read, MigrationKind::ReadExclusive, MigrationKind::Write] {
        for pfn in [0, 1, 0x12345, (1 << MIGRATION_PFN_BITS) - 1] {
            for (young, dirty) in [(false, false), (true, false), (false, true), (true, true)] {
                check_nonpresent::<F>(NonPresent::Migration(MigrationEntry {
                    kind,
                    pfn: Pfn::new(pfn),
                    young,
                    dirty,
                }));
            }
        }
    }
    for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
        let top = ((1 << F::PHYS_ADDR_BITS) - 1) & !(size.bytes() - 1);
        for frame in [0, size.bytes(), top] {
            for bits in 0..64u64 {
                let prot = Prot {
                    writable: bits & 1 != 0,
                    user: bits & 2 != 0,
                    executable: bits & 4 != 0,
                    global: bits & 8 != 0,
                };
                let leaf = Leaf {
                    frame: PhysAddr::new(frame),
                    size,
                    prot,
                    dirty: bits & 16 != 0,
                    young: bits & 32 != 0,
                };
                check_leaf::<F>(leaf);
            }
        }
    }
}

/// Checks what every leaf must keep: the round trip and the algebra.
fn check_leaf<F: Format>(leaf: Leaf) {
    let (name, level) = (F::NAME, leaf.size.level());
    let raw = F::make_leaf(&leaf);
    assert_eq!(F::decode(raw, level), Decoded::Leaf(leaf), "{name}: {raw:#x}");
    let after = |op: fn(u64, Level) -> u64, raw| decoded_leaf::<F>(op(raw, level), level);
    assert_eq!(after(F::mkdirty, raw), Leaf { dirty: true, ..leaf }, "{name}: mkdirty never makes writable");
    assert_eq!(after(F::mkclean, F::mkdirty(raw, level)), Leaf { dirty: false, ..leaf }, "{name}: mkclean");
    let read_only = Leaf { prot: Prot { writable: false, ..leaf.prot }, ..leaf };
    assert_eq!(after(F::wrprotect, raw), read_only, "{name}: wrprotect keeps dirty");
    let writable = Prot { writable: true, ..leaf.prot };
    let clean = F::mkclean(raw, level);
    assert_eq!(after(F::mkwrite, clean), Leaf { prot: writable, dirty: false, ..leaf }, "{name}: mkwrite");
    assert_eq!(after(F::mkyoung, F::mkold(raw, level)), Leaf { young: true, ..leaf }, "{name}: mkyoung");
    assert_eq!(after(F::mkold, raw), Leaf { young: false, ..leaf }, "{name}: mkold");
}

/// Swap and migration entries live at the PTE and PMD levels only.
fn nonpresent_above_the_pmd_is_bad<F: Format>() {
    proptest!(|(entry in nonpresent())| {
        let raw = F::make_nonpresent(&entry);
        prop_assert_eq!(F::decode(raw, Level::Pud), Decoded::Bad(raw));
        prop_assert_eq!(F::decode(raw, Level::Pgd), Decoded::Bad(raw));
    });
}

/// The exclusive bit of a swap entry is one bit, the same for every entry,
/// and a migration entry (whose kind says it) never has it.
fn the_exclusive_bit_is_one_bit_swap_entries_alone_have<F: Format>() {
    let bit = |entry: SwapEntry| {
        F::make_nonpresent(&NonPresent::Swap { entry, exclusive: true })
            ^ F::make_nonpresent(&NonPresent::Swap { entry, exclusive: false })
    };
    let first = bit(SwapEntry::new(SwapType::nth(0), 1).unwrap());
    assert_eq!(first.count_ones(), 1, "{}: {first:#x}", F::NAME);
    proptest!(|(entry in swap_entry(), m in migration())| {
        prop_assert_eq!(bit(entry), first);
        let raw = F::make_nonpresent(&NonPresent::Migration(m)) | first;
        prop_assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw));
    });
}

/// Seed 001: a migration PMD holds a PFN where a block keeps its frame; it
/// must never decode as a block or a table, not even of that frame.
fn migration_pmd_is_never_a_leaf<F: Format>() {
    proptest!(|(m in migration(), frame_2m in 0..1u64 << 27)| {
        let m = MigrationEntry { pfn: Pfn::new(frame_2m << 9), ..m };
        let raw = F::make_nonpresent(&NonPresent::Migration(m));
        prop_assert!(!matches!(F::decode(raw, Level::Pmd), Decoded::Leaf(_) | Decoded::Table(_)));
    });
}

fn a_migration_pfn_wider_than_its_field_is_refused<F: Format>() {
    let m = MigrationEntry {
        kind: MigrationKind::Write,
        pfn: Pfn::new(1 << MIGRATION_PFN_BITS),
        young: false,
        dirty: false,
    };
    let _ = F::make_nonpresent(&NonPresent::Migration(m));
}

// ---------------------------------------------------------------- present entries

fn leaf_round_trips<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let level = leaf.size.level();
        let raw = F::make_leaf(&leaf);
        prop_assert_eq!(F::decode(raw, level), Decoded::Leaf(leaf));
        prop_assert!(F::is_present(raw, level) && !F::is_none(raw, level));
        prop_assert!(F::leaf_allowed(level));
    });
    assert!(!F::leaf_allowed(Level::Pgd));
}

/// The frame field read without decoding (seed 001's mistaken read, kept
/// for its replay) is a leaf's frame, and the width is the arch crate's.
fn the_unchecked_frame_field_of_a_leaf_is_its_frame<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        prop_assert_eq!(F::frame_field_unchecked(F::make_leaf(&leaf), leaf.size), leaf.frame);
    });
    let bits = match F::NAME {
        "x86_64" => arch_x86_64::pgtable::PHYS_ADDR_BITS,
        _ => arch_aarch64::pgtable::PHYS_ADDR_BITS,
    };
    assert_eq!(F::PHYS_ADDR_BITS, bits);
}

/// Whatever a leaf with one bit flipped decodes to, encoding that again
/// gives an entry with the same meaning. (Each arch crate's
/// `decode_is_canonical` says which bits may differ.)
fn decoding_a_flipped_leaf_is_stable<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS), bit in 0..64u32)| {
        let level = leaf.size.level();
        let raw = F::make_leaf(&leaf) ^ (1 << bit);
        let decoded = F::decode(raw, level);
        let again = match decoded {
            Decoded::Leaf(l) => F::make_leaf(&l),
            Decoded::Table(t) => F::make_table(t, level),
            Decoded::NonPresent(e) => F::make_nonpresent(&e),
            Decoded::None | Decoded::Bad(_) => return Ok(()),
        };
        prop_assert_eq!(F::decode(again, level), decoded);
    });
}

fn make_leaf_refuses_a_misaligned_frame<F: Format>() {
    let _ = F::make_leaf(&Leaf {
        frame: PhysAddr::new(0x1000),
        size: PageSize::Size2M,
        prot: Prot::READ,
        dirty: false,
        young: false,
    });
}

/// A 1 GiB leaf's bits mean a 2 MiB leaf one level down, and nothing a
/// PTE or a PGD entry may hold.
fn a_huge_leaf_decodes_by_its_level<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let giant = Leaf { size: PageSize::Size1G, frame: PhysAddr::new(leaf.frame.as_u64() & !0x3fff_ffff), ..leaf };
        let raw = F::make_leaf(&giant);
        prop_assert_eq!(F::decode(raw, Level::Pud), Decoded::Leaf(giant));
        prop_assert_eq!(F::decode(raw, Level::Pmd), Decoded::Leaf(Leaf { size: PageSize::Size2M, ..giant }));
        prop_assert_eq!(F::decode(raw, Level::Pte), Decoded::Bad(raw));
        prop_assert_eq!(F::decode(raw, Level::Pgd), Decoded::Bad(raw));
    });
}

fn table_round_trips<F: Format>() {
    proptest!(|(frame in 0..1u64 << (F::PHYS_ADDR_BITS - 12), level in table_level())| {
        let next = PhysAddr::new(frame << 12);
        let raw = F::make_table(next, level);
        prop_assert_eq!(F::decode(raw, level), Decoded::Table(next));
        prop_assert!(F::is_present(raw, level));
        for op in the_algebra::<F>() {
            prop_assert_eq!(op(raw, level), raw, "the algebra changed a table");
        }
    });
    let top = (1 << F::PHYS_ADDR_BITS) - 0x1000;
    for level in [Level::Pgd, Level::Pud, Level::Pmd] {
        for next in [0x1000, 0x4000_0000, 0xffff_ffff_f000, top] {
            let next = PhysAddr::new(next);
            assert_eq!(F::decode(F::make_table(next, level), level), Decoded::Table(next), "{}", F::NAME);
        }
    }
}

// ---------------------------------------------------------------- the dirty/young/write algebra

fn mkdirty_then_mkclean_is_clean<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let level = leaf.size.level();
        let dirty = F::mkdirty(F::make_leaf(&leaf), level);
        prop_assert_eq!(decoded_leaf::<F>(dirty, level), Leaf { dirty: true, ..leaf }, "never makes writable");
        let clean = F::mkclean(dirty, level);
        prop_assert_eq!(decoded_leaf::<F>(clean, level), Leaf { dirty: false, ..leaf });
    });
}

fn wrprotect_keeps_dirty<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let level = leaf.size.level();
        let raw = F::wrprotect(F::make_leaf(&leaf), level);
        let read_only = Leaf { prot: Prot { writable: false, ..leaf.prot }, ..leaf };
        prop_assert_eq!(decoded_leaf::<F>(raw, level), read_only);
        let dirty_ro = decoded_leaf::<F>(F::wrprotect(F::mkdirty(F::make_leaf(&leaf), level), level), level);
        prop_assert!(dirty_ro.dirty && !dirty_ro.prot.writable);
    });
}

fn mkwrite_on_a_clean_page_leaves_it_clean<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let level = leaf.size.level();
        let w = decoded_leaf::<F>(F::mkwrite(F::make_leaf(&Leaf { dirty: false, ..leaf }), level), level);
        prop_assert_eq!(w, Leaf { prot: Prot { writable: true, ..leaf.prot }, dirty: false, ..leaf });
    });
}

fn mkold_then_mkyoung<F: Format>() {
    proptest!(|(leaf in leaf(F::PHYS_ADDR_BITS))| {
        let level = leaf.size.level();
        let old = F::mkold(F::make_leaf(&leaf), level);
        prop_assert_eq!(decoded_leaf::<F>(old, level), Leaf { young: false, ..leaf });
        let young = F::mkyoung(old, level);
        prop_assert_eq!(decoded_leaf::<F>(young, level), Leaf { young: true, ..leaf });
    });
}

// ---------------------------------------------------------------- the simulated MMU

const PTE_PERMISSION: Result<mm::pgtable::sim::Translation, HwFault> =
    Err(HwFault::Permission { level: Level::Pte });

fn a_missing_entry_faults_at_its_level<F: Format>() {
    let (mem, root) = memory();
    let not_mapped = |level| Err(HwFault::NotMapped { level });
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), not_mapped(Level::Pgd));
    slot_of::<F>(&mem, root, VA, Level::Pud);
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), not_mapped(Level::Pud));
    slot_of::<F>(&mem, root, VA, Level::Pmd);
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), not_mapped(Level::Pmd));
    slot_of::<F>(&mem, root, VA, Level::Pte);
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), not_mapped(Level::Pte));
    // Swap and migration entries are not mapped, at their level.
    let swap = NonPresent::Swap { entry: SwapEntry::new(SwapType::nth(0), 1).unwrap(), exclusive: true };
    install::<F>(&mem, root, VA, Level::Pte, F::make_nonpresent(&swap));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ), not_mapped(Level::Pte));
    let m = MigrationEntry {
        kind: MigrationKind::Write,
        pfn: PhysAddr::new(FRAME).pfn(),
        young: true,
        dirty: true,
    };
    install::<F>(&mem, root, VA, Level::Pmd, F::make_nonpresent(&NonPresent::Migration(m)));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_READ), not_mapped(Level::Pmd));
}

fn present_leaves_translate_with_their_offset<F: Format>() {
    let (mem, root) = memory();
    install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
    let t = walk::<F>(&mem, root, VA, HwAccess::USER_WRITE).unwrap();
    assert_eq!(t.pa, PhysAddr::new(FRAME + 0xabc));
    assert_eq!(
        (t.size, t.can_read, t.can_write, t.can_exec, t.user),
        (PageSize::Size4K, true, true, false, true)
    );
    let block =
        Leaf { frame: PhysAddr::new(0x20_0000), size: PageSize::Size2M, ..page(0, Prot::READ, false, true) };
    let va_2m = VA + (1 << 30);
    install::<F>(&mem, root, va_2m, Level::Pmd, F::make_leaf(&block));
    let t = walk::<F>(&mem, root, va_2m, HwAccess::KERNEL_READ).unwrap();
    assert_eq!((t.pa.as_u64(), t.size), (0x20_0000 + (va_2m & 0x1f_ffff), PageSize::Size2M));
    let va_1g = VA + (2 << 30);
    let giant = Leaf { frame: PhysAddr::new(0x4000_0000), size: PageSize::Size1G, ..block };
    install::<F>(&mem, root, va_1g, Level::Pud, F::make_leaf(&giant));
    let t = walk::<F>(&mem, root, va_1g, HwAccess::KERNEL_READ).unwrap();
    assert_eq!((t.pa.as_u64(), t.size), (0x4000_0000 + (va_1g & 0x3fff_ffff), PageSize::Size1G));
}

fn writes_to_read_only_pages_fault<F: Format>() {
    let (mem, root) = memory();
    let ro = Prot { writable: false, ..USER_RW };
    let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, ro, true, true)));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), PTE_PERMISSION);
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE), PTE_PERMISSION, "supervisor writes too");
    assert!(walk::<F>(&mem, root, VA, HwAccess::USER_READ).is_ok());
    // mkdirty never makes it writable.
    mem.write_entry(slot, F::mkdirty(mem.read_entry(slot), Level::Pte));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), PTE_PERMISSION);
    // Nor does wrprotect of a writable page leave a way to write.
    mem.write_entry(slot, F::wrprotect(F::make_leaf(&page(FRAME, USER_RW, true, true)), Level::Pte));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), PTE_PERMISSION);
}

fn user_access_to_a_kernel_page_faults<F: Format>() {
    let (mem, root) = memory();
    let kernel_rwx = Prot { executable: true, ..Prot::READ_WRITE };
    install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, kernel_rwx, true, true)));
    for access in [HwAccess::USER_READ, HwAccess::USER_WRITE, HwAccess::USER_EXEC] {
        assert_eq!(walk::<F>(&mem, root, VA, access), PTE_PERMISSION, "{access:?}");
    }
    let t = walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE).unwrap();
    assert!(!t.user && t.can_write);
    let t = walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC).unwrap();
    assert!(!t.user && t.can_write && t.can_exec);
}

/// Neither SMAP nor PAN is on (the assumed configuration of both formats).
fn the_kernel_may_read_and_write_user_pages<F: Format>() {
    let (mem, root) = memory();
    install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
    assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ).is_ok());
    assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE).is_ok());
}

fn execution_needs_an_executable_leaf<F: Format>() {
    let (mem, root) = memory();
    let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC), PTE_PERMISSION);
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC), PTE_PERMISSION);
    let user_x = Prot { executable: true, ..USER_RW };
    mem.write_entry(slot, F::make_leaf(&page(FRAME, user_x, true, true)));
    assert!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC).is_ok());
    let kernel_x = Prot { executable: true, ..Prot::READ };
    mem.write_entry(slot, F::make_leaf(&page(FRAME, kernel_x, false, true)));
    assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC).unwrap().can_exec);
}

/// x86 sets A and D itself; AArch64 (no FEAT_HAFDBS) faults and the kernel
/// marks the entry. Either way, once the kernel has done its part the
/// access goes through, and afterwards the entry is young (and dirty).
fn accessed_and_dirty_are_kept_or_faulted<F: Format>() {
    let name = F::NAME;
    let (mem, root) = memory();
    let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, false, false)));

    match walk::<F>(&mem, root, VA, HwAccess::USER_READ) {
        Ok(_) => {}
        Err(HwFault::AccessFlag { level: Level::Pte }) => {
            mem.write_entry(slot, F::mkyoung(mem.read_entry(slot), Level::Pte));
        }
        other => panic!("{name}: read of an old page: {other:?}"),
    }
    let t = walk::<F>(&mem, root, VA, HwAccess::USER_READ).unwrap();
    assert!(decoded_leaf::<F>(mem.read_entry(slot), Level::Pte).young, "{name}: young after a read");
    assert!(!t.can_write, "{name}: a translation of a clean page must not allow a write without a walk");

    match walk::<F>(&mem, root, VA, HwAccess::USER_WRITE) {
        Ok(_) => {}
        Err(HwFault::Permission { level: Level::Pte }) => {
            mem.write_entry(slot, F::mkdirty(mem.read_entry(slot), Level::Pte));
        }
        other => panic!("{name}: write to a clean writable page: {other:?}"),
    }
    assert!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE).unwrap().can_write, "{name}");
    let after = decoded_leaf::<F>(mem.read_entry(slot), Level::Pte);
    assert!(after.dirty && after.young && after.prot.writable, "{name}: {after:?}");
}

/// The software TLB keeps what it cached until flushed: a change without a
/// flush is invisible, the flush makes it visible.
fn a_missing_flush_leaves_a_stale_translation<F: Format>() {
    let name = F::NAME;
    let (mem, root) = memory();
    let tlb = SoftTlb::<F>::default();
    let slot = install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(FRAME, USER_RW, true, true)));
    let va = VirtAddr::new(VA);
    assert!(tlb.translate(&mem, root, va, HwAccess::USER_WRITE).is_ok());

    mem.write_entry(slot, F::wrprotect(mem.read_entry(slot), Level::Pte));
    assert!(
        tlb.translate(&mem, root, va, HwAccess::USER_WRITE).is_ok(),
        "{name}: the stale translation is used"
    );
    let page_start = VirtAddr::new(VA & !0xfff);
    let page_end = VirtAddr::new((VA & !0xfff) + 0x1000);
    Flush::range(root, page_start, page_end).flush(&tlb);
    assert_eq!(tlb.translate(&mem, root, va, HwAccess::USER_WRITE), PTE_PERMISSION, "{name}");

    assert!(tlb.translate(&mem, root, va, HwAccess::USER_READ).is_ok(), "{name}: read-only, cached again");
    mem.write_entry(slot, 0);
    assert!(tlb.translate(&mem, root, va, HwAccess::USER_READ).is_ok(), "{name}: unmapped but still cached");
    tlb.flush_all(root);
    assert_eq!(
        tlb.translate(&mem, root, va, HwAccess::USER_READ),
        Err(HwFault::NotMapped { level: Level::Pte })
    );
}

mm::for_both_formats!(
    none_is_zero,
    the_unchecked_frame_field_of_a_leaf_is_its_frame,
    nonpresent_round_trips_at_pte_and_pmd,
    the_edges_of_every_field_round_trip,
    nonpresent_above_the_pmd_is_bad,
    the_exclusive_bit_is_one_bit_swap_entries_alone_have,
    migration_pmd_is_never_a_leaf,
    #[should_panic(expected = "too wide")]
    a_migration_pfn_wider_than_its_field_is_refused,
    leaf_round_trips,
    decoding_a_flipped_leaf_is_stable,
    #[should_panic(expected = "not aligned")]
    make_leaf_refuses_a_misaligned_frame,
    a_huge_leaf_decodes_by_its_level,
    table_round_trips,
    mkdirty_then_mkclean_is_clean,
    wrprotect_keeps_dirty,
    mkwrite_on_a_clean_page_leaves_it_clean,
    mkold_then_mkyoung,
    a_missing_entry_faults_at_its_level,
    present_leaves_translate_with_their_offset,
    writes_to_read_only_pages_fault,
    user_access_to_a_kernel_page_faults,
    the_kernel_may_read_and_write_user_pages,
    execution_needs_an_executable_leaf,
    accessed_and_dirty_are_kept_or_faulted,
    a_missing_flush_leaves_a_stale_translation,
);
