//! Conformance of the real page-table formats to the rules of
//! `mm::pgtable::format`, and of their simulated MMUs to what generic code
//! may assume: one generic function, [`conformance`], run over
//! `arch_x86_64::pgtable::X86Format` and `arch_aarch64::pgtable::Aarch64Format`.
//!
//! Where the architectures legitimately differ (x86 sets accessed and dirty
//! in hardware, AArch64 without FEAT_HAFDBS faults instead) the checks
//! accept either behaviour, but require that the kernel's fix (`mkyoung`,
//! `mkdirty`) then lets the access through.
//!
//! Needs `mm`'s `sim` feature: the arch crates, dev-dependencies here, turn
//! it on.

#[macro_use]
mod common;
use common::Rng;

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::pgtable::format::{MigrationKind, MAX_SWAP_OFFSET, MAX_SWAP_TYPES, MIGRATION_PFN_BITS};
use mm::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SimMemory, SoftTlb};
use mm::pgtable::{
    Decoded, Flush, Leaf, Level, MigrationEntry, NonPresent, PageSize, PageTableFormat, Prot, SwapEntry,
    TableMemory, TlbHooks,
};
use mm::{PhysAddr, VirtAddr};

#[test]
fn x86_64_conforms() {
    conformance::<X86Format>();
}

#[test]
fn aarch64_conforms() {
    conformance::<Aarch64Format>();
}

/// Every rule, for format `F`.
fn conformance<F: PageTableFormat + HardwareWalker>() {
    none_is_zero::<F>();
    nonpresent_entries_round_trip::<F>();
    leaves_round_trip::<F>();
    tables_round_trip::<F>();
    dirty_young_write_algebra::<F>();
    walks_follow_the_tables::<F>();
    accessed_and_dirty_are_kept_or_faulted::<F>();
    a_missing_flush_leaves_a_stale_translation::<F>();
}

// ---- sample values ----

const KINDS: [MigrationKind; 3] = [MigrationKind::Read, MigrationKind::ReadExclusive, MigrationKind::Write];
const SIZES: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];
const NR_RANDOM: usize = 2000;

/// Swap and migration entries: the edges of every field, then random ones.
fn nonpresent_samples() -> Vec<NonPresent> {
    let max_offset = MAX_SWAP_OFFSET;
    let mut out = Vec::new();
    for ty in [0, 1, MAX_SWAP_TYPES - 1] {
        for offset in [1, 2, 0x1234_5678, max_offset - 1, max_offset] {
            for exclusive in [false, true] {
                out.push(NonPresent::Swap { entry: SwapEntry::new(ty, offset).unwrap(), exclusive });
            }
        }
    }
    for kind in KINDS {
        for pfn in [0, 1, 0x12345, (1 << MIGRATION_PFN_BITS) - 1] {
            for (young, dirty) in [(false, false), (true, false), (false, true), (true, true)] {
                out.push(NonPresent::Migration(MigrationEntry { kind, pfn, young, dirty }));
            }
        }
    }
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..NR_RANDOM {
        out.push(if rng.bool() {
            let ty = rng.below(MAX_SWAP_TYPES as u64) as u8;
            let offset = 1 + rng.below(max_offset - 1);
            NonPresent::Swap { entry: SwapEntry::new(ty, offset).unwrap(), exclusive: rng.bool() }
        } else {
            NonPresent::Migration(MigrationEntry {
                kind: KINDS[rng.below(3) as usize],
                pfn: rng.below(1 << MIGRATION_PFN_BITS),
                young: rng.bool(),
                dirty: rng.bool(),
            })
        });
    }
    out
}

fn prot_from_bits(b: u64) -> Prot {
    Prot { writable: b & 1 != 0, user: b & 2 != 0, executable: b & 4 != 0, global: b & 8 != 0 }
}

/// Leaves of every size, protection and state, at frames below 2^48 (what
/// both formats can hold).
fn leaf_samples() -> Vec<Leaf> {
    let mut out = Vec::new();
    let mut rng = Rng(0x1eaf);
    for size in SIZES {
        for bits in 0..64u64 {
            let frame = rng.below(1 << 48) & !(size.bytes() - 1);
            out.push(Leaf {
                frame: PhysAddr::new(frame),
                size,
                prot: prot_from_bits(bits),
                dirty: bits & 16 != 0,
                young: bits & 32 != 0,
            });
        }
        let top = ((1u64 << 48) - 1) & !(size.bytes() - 1);
        for frame in [0, size.bytes(), top] {
            out.push(Leaf { frame: PhysAddr::new(frame), size, prot: Prot::READ, dirty: false, young: true });
        }
    }
    out
}

fn decoded_leaf<F: PageTableFormat>(raw: u64, level: Level) -> Leaf {
    match F::decode(raw, level) {
        Decoded::Leaf(leaf) => leaf,
        other => panic!("{}: {raw:#x} at {level:?} decodes as {other:?}, not a leaf", F::NAME),
    }
}

// ---- the entry rules ----

fn none_is_zero<F: PageTableFormat>() {
    for level in Level::TOP_DOWN {
        assert_eq!(F::decode(0, level), Decoded::None, "{}: 0 at {level:?}", F::NAME);
        assert!(F::is_none(0, level) && !F::is_present(0, level));
    }
}

fn nonpresent_entries_round_trip<F: PageTableFormat>() {
    for entry in nonpresent_samples() {
        let raw = F::make_nonpresent(&entry);
        for level in [Level::Pte, Level::Pmd] {
            let what = format!("{}: {entry:?} = {raw:#x} at {level:?}", F::NAME);
            assert_eq!(F::decode(raw, level), Decoded::NonPresent(entry), "{what}");
            assert!(!F::is_present(raw, level), "{what} is present");
            assert!(!F::is_none(raw, level), "{what} is none");
        }
        // Seed 001: a migration PMD is never a leaf of the frame it names.
        if let NonPresent::Migration(m) = entry {
            let frame = PhysAddr::new(m.pfn << 12);
            assert!(
                !matches!(F::decode(raw, Level::Pmd), Decoded::Leaf(l) if l.frame == frame),
                "{}: migration PMD {m:?} decodes as a leaf of its frame",
                F::NAME
            );
        }
        // The algebra leaves non-present entries alone.
        for op in [F::mkdirty, F::mkclean, F::mkyoung, F::mkold, F::wrprotect, F::mkwrite] {
            assert_eq!(op(raw, Level::Pte), raw, "{}: the algebra changed {entry:?}", F::NAME);
        }
    }
}

fn leaves_round_trip<F: PageTableFormat>() {
    for leaf in leaf_samples() {
        let level = leaf.size.level();
        let raw = F::make_leaf(&leaf);
        assert_eq!(F::decode(raw, level), Decoded::Leaf(leaf), "{}: {raw:#x}", F::NAME);
        assert!(F::is_present(raw, level) && !F::is_none(raw, level));
        assert!(F::leaf_allowed(level));
    }
    assert!(!F::leaf_allowed(Level::Pgd));
}

fn tables_round_trip<F: PageTableFormat>() {
    for level in [Level::Pgd, Level::Pud, Level::Pmd] {
        for next in [0x1000, 0x4000_0000, 0xffff_ffff_f000] {
            let next = PhysAddr::new(next);
            let raw = F::make_table(next, level);
            assert_eq!(F::decode(raw, level), Decoded::Table(next), "{}: {raw:#x} at {level:?}", F::NAME);
            assert!(F::is_present(raw, level));
            for op in [F::mkdirty, F::mkclean, F::mkyoung, F::mkold, F::wrprotect, F::mkwrite] {
                assert_eq!(op(raw, level), raw, "{}: the algebra changed a table", F::NAME);
            }
        }
    }
}

fn dirty_young_write_algebra<F: PageTableFormat>() {
    for leaf in leaf_samples() {
        let level = leaf.size.level();
        let raw = F::make_leaf(&leaf);
        let name = F::NAME;

        let dirty = decoded_leaf::<F>(F::mkdirty(raw, level), level);
        assert_eq!(
            dirty,
            Leaf { dirty: true, ..leaf },
            "{name}: mkdirty changes only dirty (never writable)"
        );
        let clean = decoded_leaf::<F>(F::mkclean(F::mkdirty(raw, level), level), level);
        assert_eq!(clean, Leaf { dirty: false, ..leaf }, "{name}: mkdirty then mkclean is clean");

        let read_only = Leaf { prot: Prot { writable: false, ..leaf.prot }, ..leaf };
        assert_eq!(
            decoded_leaf::<F>(F::wrprotect(raw, level), level),
            read_only,
            "{name}: wrprotect keeps dirty"
        );
        let dirty_ro = decoded_leaf::<F>(F::wrprotect(F::mkdirty(raw, level), level), level);
        assert!(dirty_ro.dirty && !dirty_ro.prot.writable, "{name}: wrprotect of a dirty page");

        let clean_raw = F::mkclean(raw, level);
        let w = decoded_leaf::<F>(F::mkwrite(clean_raw, level), level);
        assert!(w.prot.writable && !w.dirty, "{name}: mkwrite on a clean page does not dirty it");

        let old = decoded_leaf::<F>(F::mkold(raw, level), level);
        assert_eq!(old, Leaf { young: false, ..leaf }, "{name}: mkold");
        let young = decoded_leaf::<F>(F::mkyoung(F::mkold(raw, level), level), level);
        assert_eq!(young, Leaf { young: true, ..leaf }, "{name}: mkold then mkyoung");
    }
}

// ---- the simulated MMU ----

const ROOT_BASE: u64 = 0x10_0000;
const VA: u64 = 0x0000_0012_3456_7abc;
const USER_RW: Prot = Prot { writable: true, user: true, executable: false, global: false };

/// Memory and an empty root table.
fn memory() -> (SimMemory, PhysAddr) {
    let mem = SimMemory::new(ROOT_BASE, 64);
    let root = mem.alloc_table().unwrap();
    (mem, root)
}

/// Writes `raw` as the entry at `level` for `va`, making tables with
/// `make_table` on the way; returns the entry's address.
fn install<F: PageTableFormat>(mem: &SimMemory, root: PhysAddr, va: u64, level: Level, raw: u64) -> PhysAddr {
    let mut table = root;
    for l in Level::TOP_DOWN {
        let slot = PhysAddr::new(table.as_u64() + 8 * l.index(va) as u64);
        if l == level {
            mem.write_entry(slot, raw);
            return slot;
        }
        table = match F::decode(mem.read_entry(slot), l) {
            Decoded::Table(next) => next,
            Decoded::None => {
                let next = mem.alloc_table().unwrap();
                mem.write_entry(slot, F::make_table(next, l));
                next
            }
            other => panic!("install: {other:?} in the way at {l:?}"),
        };
    }
    unreachable!()
}

fn page(frame: u64, prot: Prot, dirty: bool, young: bool) -> Leaf {
    Leaf { frame: PhysAddr::new(frame), size: PageSize::Size4K, prot, dirty, young }
}

fn walk<F: HardwareWalker>(
    mem: &SimMemory,
    root: PhysAddr,
    va: u64,
    access: HwAccess,
) -> Result<mm::pgtable::sim::Translation, HwFault> {
    F::hw_translate(mem, root, VirtAddr::new(va), access)
}

fn walks_follow_the_tables<F: PageTableFormat + HardwareWalker>() {
    let name = F::NAME;
    let (mem, root) = memory();
    assert_eq!(
        walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ),
        Err(HwFault::NotMapped { level: Level::Pgd })
    );

    // A user page, dirty and young: everything but execution.
    let slot =
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(0x8765_4000, USER_RW, true, true)));
    let t = walk::<F>(&mem, root, VA, HwAccess::USER_WRITE).unwrap();
    assert_eq!(t.pa, PhysAddr::new(0x8765_4abc), "{name}");
    assert!(t.can_read && t.can_write && t.user && !t.can_exec, "{name}: {t:?}");
    assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ).is_ok(), "{name}: kernel reads user pages");
    let pte_permission = Err(HwFault::Permission { level: Level::Pte });
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_EXEC), pte_permission, "{name}: no-execute");

    // Read-only: no write from either mode.
    mem.write_entry(slot, F::wrprotect(mem.read_entry(slot), Level::Pte));
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::USER_WRITE), pte_permission, "{name}");
    assert_eq!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_WRITE), pte_permission, "{name}");

    // A kernel page: no user access; the kernel may execute an executable one.
    let kernel_x = Prot { executable: true, ..Prot::READ };
    mem.write_entry(slot, F::make_leaf(&page(0x8765_4000, kernel_x, false, true)));
    for access in [HwAccess::USER_READ, HwAccess::USER_WRITE, HwAccess::USER_EXEC] {
        assert_eq!(walk::<F>(&mem, root, VA, access), pte_permission, "{name}: {access:?}");
    }
    assert!(walk::<F>(&mem, root, VA, HwAccess::KERNEL_EXEC).unwrap().can_exec, "{name}");

    // Swap and migration entries are not mapped, at their level.
    let swap = NonPresent::Swap { entry: SwapEntry::new(2, 77).unwrap(), exclusive: true };
    mem.write_entry(slot, F::make_nonpresent(&swap));
    assert_eq!(
        walk::<F>(&mem, root, VA, HwAccess::KERNEL_READ),
        Err(HwFault::NotMapped { level: Level::Pte })
    );
    let migration = MigrationEntry { kind: MigrationKind::Write, pfn: 0x200, young: true, dirty: true };
    let va_2m = VA + (1 << 30);
    install::<F>(&mem, root, va_2m, Level::Pmd, F::make_nonpresent(&NonPresent::Migration(migration)));
    assert_eq!(
        walk::<F>(&mem, root, va_2m, HwAccess::KERNEL_READ),
        Err(HwFault::NotMapped { level: Level::Pmd })
    );

    // Huge leaves translate with the offset inside them.
    let huge =
        Leaf { frame: PhysAddr::new(0x20_0000), size: PageSize::Size2M, ..page(0, USER_RW, true, true) };
    install::<F>(&mem, root, va_2m, Level::Pmd, F::make_leaf(&huge));
    let t = walk::<F>(&mem, root, va_2m, HwAccess::USER_READ).unwrap();
    assert_eq!((t.pa.as_u64(), t.size), (0x20_0000 + (va_2m & 0x1f_ffff), PageSize::Size2M), "{name}");
    let va_1g = VA + (2 << 30);
    let giant = Leaf { frame: PhysAddr::new(0x4000_0000), size: PageSize::Size1G, ..huge };
    install::<F>(&mem, root, va_1g, Level::Pud, F::make_leaf(&giant));
    let t = walk::<F>(&mem, root, va_1g, HwAccess::USER_READ).unwrap();
    assert_eq!((t.pa.as_u64(), t.size), (0x4000_0000 + (va_1g & 0x3fff_ffff), PageSize::Size1G), "{name}");
}

/// x86 sets A and D itself; AArch64 (no FEAT_HAFDBS) faults and the kernel
/// marks the entry. Either way, once the kernel has done its part the
/// access goes through, and afterwards the entry is young (and dirty).
fn accessed_and_dirty_are_kept_or_faulted<F: PageTableFormat + HardwareWalker>() {
    let name = F::NAME;
    let (mem, root) = memory();
    let slot =
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(0x8765_4000, USER_RW, false, false)));

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
fn a_missing_flush_leaves_a_stale_translation<F: PageTableFormat + HardwareWalker>() {
    let name = F::NAME;
    let (mem, root) = memory();
    let tlb = SoftTlb::<F>::default();
    let slot =
        install::<F>(&mem, root, VA, Level::Pte, F::make_leaf(&page(0x8765_4000, USER_RW, true, true)));
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
    assert_eq!(
        tlb.translate(&mem, root, va, HwAccess::USER_WRITE),
        Err(HwFault::Permission { level: Level::Pte }),
        "{name}"
    );

    assert!(tlb.translate(&mem, root, va, HwAccess::USER_READ).is_ok(), "{name}: read-only, cached again");
    mem.write_entry(slot, 0);
    assert!(tlb.translate(&mem, root, va, HwAccess::USER_READ).is_ok(), "{name}: unmapped but still cached");
    tlb.flush_all(root);
    assert_eq!(
        tlb.translate(&mem, root, va, HwAccess::USER_READ),
        Err(HwFault::NotMapped { level: Level::Pte })
    );
}
