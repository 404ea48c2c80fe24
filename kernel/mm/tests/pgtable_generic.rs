//! The generic page-table code (`mm::pgtable::PageTable`) over both real
//! formats, checked by each architecture's simulated MMU.
//!
//! Every test runs once with `X86Format` and once with `Aarch64Format`:
//! tables are built by `PageTable` in `SimMemory`, and every claim about a
//! mapping is checked by translating through the format's `HardwareWalker`
//! behind a `SoftTlb`, which keeps stale translations until flushed. So a
//! wrong encoding, a wrong walk or a missing flush fails here.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::pgtable::format::{MigrationKind, ENTRIES_PER_TABLE};
use mm::pgtable::sim::{HardwareWalker, HwFault, SimMemory};
use mm::pgtable::SwapType;
use mm::pgtable::{
    Decoded, Leaf, Level, MigrationEntry, NonPresent, PageSize, PageTable, PgError, Prot, SwapEntry,
};
use mm::testkit::mmu::Machine;
use mm::{PhysAddr, VirtAddr};
use std::collections::BTreeMap;

const BASE: u64 = 0x0000_0040_0000_0000;
const RW: Prot = Prot { writable: true, user: true, executable: false, global: false };
const RO: Prot = Prot { writable: false, ..RW };

fn leaf(frame: PhysAddr, size: PageSize, prot: Prot) -> Leaf {
    Leaf { frame, size, prot, dirty: true, young: true }
}

fn va(offset: u64) -> VirtAddr {
    VirtAddr::new(BASE + offset)
}

fn map_translate_and_unmap<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let small = w.mem.alloc_frame().unwrap();
    let huge = w.mem.alloc_aligned(2 << 20).unwrap();
    w.table.map(&w.mem, va(0x1000), leaf(small, PageSize::Size4K, RW)).unwrap().ignore();
    w.table.map(&w.mem, va(0x20_0000), leaf(huge, PageSize::Size2M, RW)).unwrap().ignore();
    // The MMU translates exactly as mapped, at every offset.
    assert_eq!(w.read(va(0x1abc)), Ok(PhysAddr::new(small.as_u64() + 0xabc)));
    for off in [0, 0x1000, 0x12_3456, 0x1f_ffff] {
        assert_eq!(w.write(va(0x20_0000 + off)), Ok(PhysAddr::new(huge.as_u64() + off)));
    }
    // Neighbours are not mapped: the walk stops at the PTE / PMD level.
    assert_eq!(w.read(va(0x2000)), Err(HwFault::NotMapped { level: Level::Pte }));
    assert_eq!(w.read(va(0x40_0000)), Err(HwFault::NotMapped { level: Level::Pmd }));
    assert_eq!(w.table.lookup(&w.mem, va(0x20_1000)).0, Level::Pmd);
    assert_eq!(w.table.translate(&w.mem, va(0x20_0010)), Some(PhysAddr::new(huge.as_u64() + 0x10)));
    // Unmapping returns the leaf and a flush; once paid, the MMU faults.
    let (old, flush) = w.table.unmap(&w.mem, va(0x1000), PageSize::Size4K).unwrap();
    assert_eq!(old.frame, small);
    assert_eq!(flush.span(), (va(0x1000), va(0x2000)));
    flush.flush(&w.tlb);
    assert_eq!(w.read(va(0x1abc)), Err(HwFault::NotMapped { level: Level::Pte }));
    let (_, flush) = w.table.unmap(&w.mem, va(0x20_0000), PageSize::Size2M).unwrap();
    flush.flush(&w.tlb);
    assert_eq!(w.read(va(0x20_0000)), Err(HwFault::NotMapped { level: Level::Pmd }));
    w.finish();
}

fn a_missing_flush_is_visible<F: HardwareWalker>() {
    // The negative control: the software TLB really keeps what it cached,
    // so the tests above would catch a forgotten flush.
    let w = Machine::<F>::new();
    let frame = w.mem.alloc_frame().unwrap();
    w.table.map(&w.mem, va(0x5000), leaf(frame, PageSize::Size4K, RW)).unwrap().ignore();
    assert!(w.read(va(0x5000)).is_ok());
    let (_, flush) = w.table.unmap(&w.mem, va(0x5000), PageSize::Size4K).unwrap();
    flush.ignore(); // deliberately wrong
    assert_eq!(w.read(va(0x5000)), Ok(frame), "stale translation expected without a flush");
    w.table.map(&w.mem, va(0x5000), leaf(frame, PageSize::Size4K, RW)).unwrap().ignore();
    w.finish();
}

fn errors_leave_the_table_unchanged<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let frame = w.mem.alloc_frame().unwrap();
    let huge = w.mem.alloc_aligned(2 << 20).unwrap();
    let l = leaf(frame, PageSize::Size4K, RW);
    assert_eq!(
        w.table.map(&w.mem, va(0x1001), l),
        Err(PgError::Misaligned { va: va(0x1001), size: PageSize::Size4K })
    );
    w.table.map(&w.mem, va(0x1000), l).unwrap().ignore();
    assert_eq!(
        w.table.map(&w.mem, va(0x1000), l),
        Err(PgError::AlreadyMapped { va: va(0x1000), level: Level::Pte })
    );
    // A 2 MiB leaf where a PTE table already is.
    assert_eq!(
        w.table.map(&w.mem, va(0), leaf(huge, PageSize::Size2M, RW)),
        Err(PgError::TableInTheWay { va: va(0), level: Level::Pmd })
    );
    w.table.map(&w.mem, va(0x20_0000), leaf(huge, PageSize::Size2M, RW)).unwrap().ignore();
    // A 4 KiB operation inside a 2 MiB leaf must split first.
    assert_eq!(
        w.table.map(&w.mem, va(0x20_1000), l),
        Err(PgError::HugeInTheWay { va: va(0x20_1000), level: Level::Pmd })
    );
    assert_eq!(
        w.table.unmap(&w.mem, va(0x20_1000), PageSize::Size4K),
        Err(PgError::HugeInTheWay { va: va(0x20_1000), level: Level::Pmd })
    );
    // Protecting half of a huge leaf is refused whole.
    let before = w.table.lookup(&w.mem, va(0x20_0000));
    assert!(matches!(
        w.table.protect(&w.mem, va(0x20_0000), va(0x30_0000), RO),
        Err(PgError::HugeInTheWay { .. })
    ));
    assert_eq!(w.table.lookup(&w.mem, va(0x20_0000)), before);
    assert_eq!(
        w.table.unmap(&w.mem, va(0x3000), PageSize::Size4K),
        Err(PgError::NotMapped { va: va(0x3000) })
    );
    assert!(w.write(va(0x1000)).is_ok());
    w.finish();
}

fn protect_then_flush_changes_what_the_mmu_allows<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let frames: Vec<_> = (0..4).map(|_| w.mem.alloc_frame().unwrap()).collect();
    for (i, f) in frames.iter().enumerate() {
        w.table.map(&w.mem, va(i as u64 * 0x1000), leaf(*f, PageSize::Size4K, RW)).unwrap().ignore();
        assert!(w.write(va(i as u64 * 0x1000)).is_ok());
    }
    let flush = w.table.protect(&w.mem, va(0x1000), va(0x3000), RO).unwrap();
    assert_eq!(flush.span(), (va(0x1000), va(0x3000)));
    flush.flush(&w.tlb);
    assert!(w.write(va(0)).is_ok());
    assert_eq!(w.write(va(0x1000)), Err(HwFault::Permission { level: Level::Pte }));
    assert_eq!(w.write(va(0x2000)), Err(HwFault::Permission { level: Level::Pte }));
    assert!(w.read(va(0x2000)).is_ok(), "read-only pages stay readable");
    assert!(w.write(va(0x3000)).is_ok());
    // Dirty survives write protection (the algebra, through the generic path).
    match w.table.lookup(&w.mem, va(0x1000)) {
        (_, Decoded::Leaf(l)) => assert!(l.dirty && !l.prot.writable),
        other => panic!("{other:?}"),
    }
    // Nothing to change: no flush owed.
    assert!(w.table.protect(&w.mem, va(0x1000), va(0x3000), RO).unwrap().is_empty());
    w.finish();
}

fn remap_is_break_before_make<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let (a, b) = (w.mem.alloc_frame().unwrap(), w.mem.alloc_frame().unwrap());
    w.table.map(&w.mem, va(0x7000), leaf(a, PageSize::Size4K, RW)).unwrap().ignore();
    assert_eq!(w.read(va(0x7008)), Ok(PhysAddr::new(a.as_u64() + 8)));
    let flushes = *w.tlb.nr_flushes.borrow();
    let old = w.table.remap(&w.mem, &w.tlb, va(0x7000), leaf(b, PageSize::Size4K, RW)).unwrap();
    assert_eq!(old.frame, a);
    assert_eq!(*w.tlb.nr_flushes.borrow(), flushes + 1, "remap must flush between clear and set");
    assert_eq!(w.read(va(0x7008)), Ok(PhysAddr::new(b.as_u64() + 8)));
    w.finish();
}

fn split_pmd_keeps_every_meaning<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let huge = w.mem.alloc_aligned(2 << 20).unwrap();
    // A present 2 MiB leaf, read-only and clean-but-young.
    let ro = Leaf { frame: huge, size: PageSize::Size2M, prot: RO, dirty: false, young: true };
    w.table.map(&w.mem, va(0), ro).unwrap().ignore();
    assert!(w.read(va(0x10)).is_ok()); // cached as a 2 MiB translation
                                       // The stale 2 MiB translation would mean the same as the new 4 KiB
                                       // ones, so reads cannot show a missing flush; but break-before-make
                                       // requires one (AArch64 may raise a TLB conflict abort otherwise).
    let flushes = *w.tlb.nr_flushes.borrow();
    let old = w.table.split_pmd(&w.mem, &w.tlb, va(0x12_3000)).unwrap();
    assert_eq!(old, Decoded::Leaf(ro));
    assert_eq!(
        *w.tlb.nr_flushes.borrow(),
        flushes + 1,
        "splitting a present PMD must flush before the table goes in"
    );
    for i in 0..ENTRIES_PER_TABLE as u64 {
        let expect = Leaf { frame: PhysAddr::new(huge.as_u64() + i * 4096), size: PageSize::Size4K, ..ro };
        assert_eq!(w.table.lookup(&w.mem, va(i * 4096)), (Level::Pte, Decoded::Leaf(expect)));
        assert_eq!(w.read(va(i * 4096 + 5)), Ok(PhysAddr::new(huge.as_u64() + i * 4096 + 5)));
    }
    assert_eq!(w.write(va(0x4000)), Err(HwFault::Permission { level: Level::Pte }));

    // A PMD migration entry: 512 PTE migration entries, one per subpage,
    // never a present mapping (seed 001).
    let m = MigrationEntry::new(MigrationKind::ReadExclusive, huge.pfn(), true, false).unwrap();
    w.table.set_nonpresent(&w.mem, va(0x20_0000), Level::Pmd, NonPresent::Migration(m)).unwrap().1.ignore();
    assert_eq!(w.read(va(0x20_0000)), Err(HwFault::NotMapped { level: Level::Pmd }));
    w.table.split_pmd(&w.mem, &w.tlb, va(0x20_0000)).unwrap();
    for i in [0u64, 1, 511] {
        let sub = MigrationEntry { pfn: huge.pfn().plus(i), ..m };
        assert_eq!(
            w.table.lookup(&w.mem, va(0x20_0000 + i * 4096)),
            (Level::Pte, Decoded::NonPresent(NonPresent::Migration(sub)))
        );
        assert_eq!(w.read(va(0x20_0000 + i * 4096)), Err(HwFault::NotMapped { level: Level::Pte }));
    }

    // A PMD swap entry: 512 consecutive slots, exclusive kept.
    let s = SwapEntry::new(SwapType::nth(2), 0x1000).unwrap();
    w.table
        .set_nonpresent(&w.mem, va(0x40_0000), Level::Pmd, NonPresent::Swap { entry: s, exclusive: true })
        .unwrap()
        .1
        .ignore();
    w.table.split_pmd(&w.mem, &w.tlb, va(0x40_0000)).unwrap();
    let last = SwapEntry::new(SwapType::nth(2), 0x1000 + 511).unwrap();
    assert_eq!(
        w.table.lookup(&w.mem, va(0x40_0000 + 511 * 4096)),
        (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry: last, exclusive: true }))
    );
    // Nothing else splits.
    assert_eq!(
        w.table.split_pmd(&w.mem, &w.tlb, va(0x60_0000)),
        Err(PgError::NotMapped { va: va(0x60_0000) })
    );
    assert_eq!(
        w.table.split_pmd(&w.mem, &w.tlb, va(0)),
        Err(PgError::WrongKind { va: va(0), level: Level::Pmd })
    );
    w.finish();
}

/// Random maps, unmaps, protects and remaps against a model of what each
/// page should translate to; after every step (flushes paid) the MMU agrees
/// with the model on a sample of addresses, and at the end on all of them.
fn random_operations_agree_with_the_mmu<F: HardwareWalker>() {
    const WINDOW: u64 = 16 << 21; // 16 PMDs
    let w = Machine::<F>::new();
    // model: page offset -> (pa of the page, writable)
    let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut huge_at: BTreeMap<u64, bool> = BTreeMap::new(); // PMD offset -> mapped huge
    let mut seed = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let check = |model: &BTreeMap<u64, (u64, bool)>, page: u64| {
        let at = va(page + 0x18);
        match model.get(&page) {
            Some(&(pa, writable)) => {
                assert_eq!(w.read(at), Ok(PhysAddr::new(pa + 0x18)), "{} read at {at}", F::NAME);
                assert_eq!(w.write(at).is_ok(), writable, "{} write at {at}", F::NAME);
            }
            None => assert!(w.read(at).is_err(), "{} unmapped {at} translates", F::NAME),
        }
    };
    for step in 0..1500 {
        let pmd = (next() % (WINDOW >> 21)) << 21;
        let page = pmd + (next() % 512) * 4096;
        let prot = if next() % 3 == 0 { RO } else { RW };
        match next() % 5 {
            0 if !huge_at.contains_key(&pmd) && !model.range(pmd..pmd + (2 << 20)).any(|_| true) => {
                let frame = w.mem.alloc_aligned(2 << 20).unwrap();
                // A PTE table left behind by earlier 4K maps blocks the leaf.
                match w.table.map(&w.mem, va(pmd), leaf(frame, PageSize::Size2M, prot)) {
                    Ok(f) => {
                        f.flush(&w.tlb);
                        huge_at.insert(pmd, true);
                        for i in 0..512 {
                            model.insert(pmd + i * 4096, (frame.as_u64() + i * 4096, prot.writable));
                        }
                    }
                    Err(PgError::TableInTheWay { .. }) => {}
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            1 if huge_at.contains_key(&pmd) => {
                w.table.split_pmd(&w.mem, &w.tlb, va(pmd)).unwrap();
                huge_at.remove(&pmd);
            }
            2 if !model.contains_key(&page) && !huge_at.contains_key(&pmd) => {
                let frame = w.mem.alloc_frame().unwrap();
                w.table.map(&w.mem, va(page), leaf(frame, PageSize::Size4K, prot)).unwrap().flush(&w.tlb);
                model.insert(page, (frame.as_u64(), prot.writable));
            }
            3 if model.contains_key(&page) && !huge_at.contains_key(&pmd) => {
                let (_, f) = w.table.unmap(&w.mem, va(page), PageSize::Size4K).unwrap();
                f.flush(&w.tlb);
                model.remove(&page);
            }
            4 => {
                let end = page + (next() % 8 + 1) * 4096;
                match w.table.protect(&w.mem, va(page), va(end), prot) {
                    Ok(f) => {
                        f.flush(&w.tlb);
                        for (_, v) in model.range_mut(page..end) {
                            v.1 = prot.writable;
                        }
                    }
                    Err(PgError::HugeInTheWay { .. }) => assert!(
                        huge_at.contains_key(&pmd) || huge_at.contains_key(&((end - 4096) & !0x1f_ffff))
                    ),
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            _ => {}
        }
        for _ in 0..8 {
            check(&model, (next() % (WINDOW / 4096)) * 4096);
        }
    }
    for page in (0..WINDOW).step_by(4096) {
        check(&model, page);
    }
    w.finish();
}

fn visit_sees_leaves_and_entries_in_order<F: HardwareWalker>() {
    let w = Machine::<F>::new();
    let frame = w.mem.alloc_frame().unwrap();
    w.table.map(&w.mem, va(0x3000), leaf(frame, PageSize::Size4K, RW)).unwrap().ignore();
    let s = SwapEntry::new(SwapType::nth(1), 9).unwrap();
    w.table
        .set_nonpresent(&w.mem, va(0x1000), Level::Pte, NonPresent::Swap { entry: s, exclusive: false })
        .unwrap()
        .1
        .ignore();
    let mut seen = Vec::new();
    w.table.visit(&w.mem, va(0), va(0x20_0000), &mut |at, level, entry, _| seen.push((at, level, entry)));
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].0, seen[0].1), (va(0x1000), Level::Pte));
    assert!(matches!(seen[0].2, Decoded::NonPresent(NonPresent::Swap { .. })));
    assert_eq!(seen[1].0, va(0x3000));
    // A range that excludes both sees nothing.
    let mut none = 0;
    w.table.visit(&w.mem, va(0x4000), va(0x20_0000), &mut |_, _, _, _| none += 1);
    assert_eq!(none, 0);
    w.finish();
}

/// The space the residency, usage and pagemap tests read: a 4 KiB leaf at
/// 0x1000, a swap entry (type 1, offset 7) at 0x3000, a 2 MiB leaf at
/// 0x20_0000. Returns the machine and the two leaves' frames.
fn leaf_swap_and_huge<F: HardwareWalker>() -> (Machine<F>, PhysAddr, PhysAddr) {
    let w = Machine::<F>::new();
    let small = w.mem.alloc_frame().unwrap();
    let huge = w.mem.alloc_aligned(2 << 20).unwrap();
    w.table.map(&w.mem, va(0x1000), leaf(small, PageSize::Size4K, RW)).unwrap().ignore();
    let s = SwapEntry::new(SwapType::nth(1), 7).unwrap();
    w.table
        .set_nonpresent(&w.mem, va(0x3000), Level::Pte, NonPresent::Swap { entry: s, exclusive: false })
        .unwrap()
        .1
        .ignore();
    w.table.map(&w.mem, va(0x20_0000), leaf(huge, PageSize::Size2M, RW)).unwrap().ignore();
    (w, small, huge)
}

/// `mm::space::residency` (mincore, mremap): a 4 KiB leaf, a swap
/// entry, a 2 MiB leaf the range cuts, and untouched pages in between.
fn residency_marks_leaves_and_swap_entries<F: HardwareWalker>() {
    use mm::space::{residency, NOT_PRESENT, RESIDENT};
    let (w, ..) = leaf_swap_and_huge::<F>();
    // From page 0 to two pages into the huge leaf.
    let r = residency(&w.table, &w.mem, va(0), va(0x20_2000));
    assert_eq!(r.len(), 0x202);
    assert_eq!(&r[..5], &[0, RESIDENT, 0, NOT_PRESENT, 0]);
    assert!(r[5..0x200].iter().all(|&b| b == 0));
    assert_eq!(&r[0x200..], &[RESIDENT, RESIDENT]);
    // A range starting inside the huge leaf.
    assert_eq!(residency(&w.table, &w.mem, va(0x3f_f000), va(0x40_1000)), [RESIDENT, 0]);
    w.table.clear_range(&w.mem, va(0), va(0x40_0000), &mut |_, _, _| {}).ignore();
    w.finish();
}

/// `mm::space::usage` (smaps) and `mm::space::pagemap` (present with the
/// PFN, swap with type and offset, nothing) over the same kinds of entry.
fn usage_and_pagemap_read_the_entries<F: HardwareWalker>() {
    use mm::space::{pagemap, usage, Usage, PM_PRESENT, PM_SWAP};
    let (w, small, huge) = leaf_swap_and_huge::<F>();
    let u = usage(&w.table, &w.mem, va(0), va(0x40_0000));
    assert_eq!(u, Usage { rss: 0x1000 + (2 << 20), anon_huge: 2 << 20, swap: 0x1000 });
    // A range cutting the huge leaf counts its part inside.
    assert_eq!(usage(&w.table, &w.mem, va(0x3f_e000), va(0x40_0000)).anon_huge, 0x2000);
    // No folio describes these frames: never exclusive.
    let memmap = mm::page::Memmap::new_leaked(mm::Pfn::new(0), 1);
    let pm = pagemap(&w.table, &w.mem, memmap, va(0), va(0x20_2000));
    assert_eq!(pm[0], 0);
    assert_eq!(pm[1], PM_PRESENT | small.pfn().as_u64());
    assert_eq!(pm[3], PM_SWAP | 1 | (7 << 5));
    assert_eq!(pm[0x201], PM_PRESENT | (huge.pfn().as_u64() + 1));
    w.table.clear_range(&w.mem, va(0), va(0x40_0000), &mut |_, _, _| {}).ignore();
    w.finish();
}

fn out_of_memory_is_an_error<F: HardwareWalker>() {
    // Memory with room for the root only.
    let mem = SimMemory::new(0x4000_0000, 1);
    let table = PageTable::<F>::new(&mem).unwrap();
    let l = leaf(PhysAddr::new(0x8000_0000), PageSize::Size4K, RW);
    assert_eq!(table.map(&mem, va(0), l), Err(PgError::OutOfMemory));
    table.destroy(&mem, 0..0);
}

mm::for_both_formats!(
    map_translate_and_unmap,
    a_missing_flush_is_visible,
    errors_leave_the_table_unchanged,
    protect_then_flush_changes_what_the_mmu_allows,
    remap_is_break_before_make,
    split_pmd_keeps_every_meaning,
    random_operations_agree_with_the_mmu,
    visit_sees_leaves_and_entries_in_order,
    residency_marks_leaves_and_swap_entries,
    usage_and_pagemap_read_the_entries,
    out_of_memory_is_an_error,
);
