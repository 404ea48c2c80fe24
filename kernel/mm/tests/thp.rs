//! Transparent huge pages over both real formats: the huge folios of
//! `mm::thp`, the THP paths of `mm::fault::handle_fault`, and the range
//! operations of `mm::space` (munmap, `MADV_DONTNEED`, mprotect, fork),
//! with the consistency checker (`mm::debug::check_spaces`) after every
//! step and every frame back in the allocator at the end.
//!
//! The world of these tests is `mm::testkit`'s `World` over `SimFrames`
//! with the huge zero folio ([`world`]):
//! - data frames come from a real `FrameAllocator` over a leaked memmap of
//!   8192 pages at PFN 0x80000 (32 MiB: several order-9 blocks); page
//!   tables live in `SimMemory` at 0x4000_0000, so the two never overlap;
//! - the contents of data frames are simulated too: zeroed when a folio is
//!   made, copied by `copy_page`, removed when the folio is freed, so a
//!   read through a stale translation of a freed frame panics, and copy on
//!   write and splits can be checked byte by byte;
//! - user accesses go through a simulated CPU (`World::access`): the
//!   format's hardware walker behind a software TLB, and on a fault the real
//!   fault handler, as the trap handler would call it. Every translation
//!   the CPU uses is compared with the tables, so a missing flush that
//!   leaves a stale translation of another frame fails the test;
//! - address spaces are a fork family sharing one simulated memory and one
//!   TLB (keyed by root), checked together as the kernel's
//!   `AddressSpace::check` does.

use mm::folio::FolioMapping;
use mm::pgtable::SwapType;
use mm::testkit::rng::Rng;
use mm::Pfn;

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::anon::{anon_handle, remove_pte_mapping};
use mm::debug::{ConsistencyError, MigrationProblem, Stats};
use mm::fault::{Access, FaultOutcome, Refused};
use mm::folio::{folio_of, Folio};
use mm::lru::LruList;
use mm::page::PageFlag;
use mm::pageout::{deactivate_range, pageout_candidates, KeptWhole};
use mm::pgtable::sim::{HardwareWalker, HwAccess};
use mm::pgtable::{
    Decoded, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageSize, Prot, SwapEntry,
};
use mm::space::protect_range;
use mm::testkit::frames::SimFrames;
use mm::testkit::world::{offset_in, pages, pattern, va, Ev, World, AREA, MEMMAP_BASE, MEMMAP_LEN, PAGE};
use mm::thp::{
    is_huge_zero, remove_pmd_mapping, split_huge_pmd, split_huge_pmd_if_cut, split_isolated_folio,
    try_split_folio, PmdSplit, SplitRefused, HPAGE_NR, HPAGE_SIZE,
};
use mm::vma::{ThpMode, VmaProt};
use mm::PhysAddr;
use std::collections::HashMap;

const HP: u64 = HPAGE_SIZE;
const RW: VmaProt = VmaProt::READ_WRITE;

/// The world of these tests: [`World`]'s frames with the huge zero folio.
fn world<F: HardwareWalker>() -> World<F> {
    World::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_huge_zero())
}

/// What a folio's descriptors say, to compare before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    pfn: Pfn,
    order: u8,
    refcount: i32,
    entire: i32,
    pincount: i32,
    mapping: FolioMapping,
    index: u64,
    pages: Vec<(u64, i32)>,
}

fn snapshot(f: &Folio<'_>) -> Snapshot {
    Snapshot {
        pfn: f.pfn(),
        order: f.order(),
        refcount: f.refcount(),
        entire: f.entire_mapcount(),
        pincount: f.pincount(),
        mapping: f.mapping(),
        index: f.index(),
        pages: (0..f.nr_pages()).map(|i| (f.page(i).flags(), f.page_mapcount(i))).collect(),
    }
}

fn pmd_stats(nr_pmds: u64, nr_folios: u64) -> Stats {
    Stats { nr_pages_mapped: 512 * nr_pmds, nr_folios, nr_pmd_leaves: nr_pmds, ..Stats::default() }
}

/// PMD leaves in the region the random test uses (cheaper than the checker).
fn nr_pmd_leaves<F: HardwareWalker>(w: &World<F>, s: usize) -> u64 {
    let mut n = 0;
    w.sp(s).table.visit(&w.mem, va(AREA), va(AREA + REGION_PAGES * PAGE), &mut |_, level, e, _| {
        n += (level == Level::Pmd && matches!(e, Decoded::Leaf(_))) as u64;
    });
    n
}

/// A world whose space 0 maps `nr_blocks` empty 2 MiB blocks at
/// [`AREA`]; its huge zero folio and what its descriptors say now.
fn with_zero_folio<F: HardwareWalker>(nr_blocks: u64) -> (World<F>, Folio<'static>, Snapshot) {
    let mut w = world::<F>();
    w.mmap(0, AREA, nr_blocks * HP, RW);
    let zero = w.zero_folio();
    let before = snapshot(&zero);
    (w, zero, before)
}

/// A world whose space 0 maps `nr_blocks` 2 MiB blocks at [`AREA`],
/// filled with `seed` (write faults: one THP each); and the first THP.
fn filled<F: HardwareWalker>(nr_blocks: u64, seed: u8) -> (World<F>, Folio<'static>) {
    let mut w = world::<F>();
    w.mmap(0, AREA, nr_blocks * HP, RW);
    w.fill(0, AREA, nr_blocks * HP, seed);
    let f = assert_fresh_thp(&w, 0, AREA);
    (w, f)
}

/// The PMD-mapped THP a write fault made at `block`, with its checks.
fn assert_fresh_thp<F: HardwareWalker>(w: &World<F>, s: usize, block: u64) -> Folio<'static> {
    let (level, leaf) = w.leaf(s, block);
    assert_eq!((level, leaf.size), (Level::Pmd, PageSize::Size2M));
    assert!(leaf.prot.writable && leaf.dirty && leaf.young && leaf.prot.user);
    let f = w.folio_at(s, block);
    assert_eq!(f.pfn().phys(), leaf.frame);
    assert_eq!((f.order(), f.entire_mapcount(), f.refcount(), f.total_mapcount()), (9, 1, 1, 1));
    assert!((0..HPAGE_NR).all(|i| f.page_mapcount(i) == 0));
    assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
    assert_eq!((f.anon_handle(), f.index()), (Some(anon_handle(w.sp(s).table.root())), block >> 12));
    f
}

// ------------------------------------------------------------------ 1

fn a_write_fault_maps_one_pmd_leaf<F: HardwareWalker>() {
    let mut w = world::<F>();
    w.mmap(0, AREA, 2 * HP, RW);
    let free = w.nr_free();
    let at = AREA + HP + 0x1234;
    assert_eq!(w.write(0, at, 0x5a), [FaultOutcome::MappedHuge]);
    let f = assert_fresh_thp(&w, 0, AREA + HP);
    assert_eq!(w.nr_free(), free - 512, "one order-9 block");
    assert_eq!(w.stats(0), pmd_stats(1, 1));
    // The rest of the block is there already, zeroed, without a fault.
    assert_eq!(w.write(0, AREA + HP + 511 * PAGE, 1), Vec::<Ev>::new());
    assert_eq!((w.read(0, at), w.read(0, AREA + HP), w.read(0, AREA + HP + 511 * PAGE)), (0x5a, 0, 1));
    assert_eq!(w.frames.byte(PhysAddr::new((f.pfn().phys().as_u64()) + 0x1234)), 0x5a);
    // A read fault in the other block maps the zero folio, not a new one.
    assert_eq!(w.read(0, AREA + 5), 0);
    assert_eq!(
        w.stats(0),
        Stats { nr_pages_mapped: 1024, nr_folios: 2, nr_pmd_leaves: 2, ..Stats::default() }
    );
    assert_eq!(w.nr_free(), free - 512);
    w.finish();
}

// ------------------------------------------------------------------ 2

fn read_faults_map_the_huge_zero_folio_and_writes_replace_it<F: HardwareWalker>() {
    let (w, zero, zero_before) = with_zero_folio::<F>(4);
    let free = w.nr_free();
    // A read: the zero folio, read-only, by one PMD; nothing allocated.
    let (_, outcomes) = w.access(0, AREA + 0x10, HwAccess::USER_READ).unwrap();
    assert_eq!(outcomes, [FaultOutcome::MappedHugeZero]);
    let (level, leaf) = w.leaf(0, AREA);
    assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, zero.pfn().phys(), false));
    assert!(is_huge_zero(w.memmap(), &leaf));
    assert_eq!(w.stats(0), pmd_stats(1, 1));
    assert_eq!((w.nr_free(), snapshot(&zero)), (free, zero_before.clone()), "zero mappings are not counted");
    assert_eq!(w.read(0, AREA + 7 * PAGE), 0);
    // A write: a fresh huge folio replaces it, zeroed.
    assert_eq!(w.write(0, AREA + 0x20, 7), [FaultOutcome::MappedHuge]);
    let f = assert_fresh_thp(&w, 0, AREA);
    assert_ne!(f.pfn(), zero.pfn());
    assert_eq!((w.read(0, AREA + 0x10), w.read(0, AREA + 0x20), w.read(0, AREA + 300 * PAGE)), (0, 7, 0));
    assert_eq!((w.nr_free(), snapshot(&zero)), (free - 512, zero_before.clone()));
    assert_eq!(w.stats(0), pmd_stats(1, 1));
    // Another zero PMD, then no 2 MiB block is left.
    assert_eq!(w.access(0, AREA + HP, HwAccess::USER_READ).unwrap().1, [FaultOutcome::MappedHugeZero]);
    w.fragment();
    let free = w.nr_free();
    // A write in an empty block falls back to one 4 KiB page.
    assert_eq!(w.write(0, AREA + 2 * HP + 5, 9), [FaultOutcome::HugeFallback]);
    let (level, small) = w.leaf(0, AREA + 2 * HP);
    assert_eq!((level, small.size, small.prot.writable), (Level::Pte, PageSize::Size4K, true));
    assert_eq!(w.folio_at(0, AREA + 2 * HP).order(), 0);
    assert_eq!(w.nr_free(), free - 1);
    // A write to the zero PMD splits it and maps one 4 KiB page.
    assert_eq!(w.write(0, AREA + HP + 3 * PAGE + 1, 4), [FaultOutcome::HugeFallback]);
    assert_eq!(w.leaf(0, AREA + HP + 3 * PAGE).0, Level::Pte);
    assert_eq!(w.lookup(0, AREA + HP + 4 * PAGE), (Level::Pte, Decoded::None), "the rest refaults");
    assert_eq!(w.nr_free(), free - 2);
    assert_eq!(snapshot(&zero), zero_before);
    let st = w.stats(0);
    assert_eq!((st.nr_pmd_leaves, st.nr_pte_leaves, st.nr_pages_mapped), (1, 2, 514));
    // The rest of that block reads zeros (4 KiB pages now), keeps the byte.
    assert_eq!((w.read(0, AREA + HP + 3 * PAGE + 1), w.read(0, AREA + HP + 9 * PAGE)), (4, 0));
    assert_eq!(w.leaf(0, AREA + HP + 9 * PAGE).0, Level::Pte);
    // Reads still get the zero folio while no block is free.
    assert_eq!(w.access(0, AREA + 3 * HP, HwAccess::USER_READ).unwrap().1, [FaultOutcome::MappedHugeZero]);
    w.check();
    w.unfragment();
    // With blocks back, a write to the zero PMD gets a huge folio again.
    assert_eq!(w.write(0, AREA + 3 * HP + 8, 8), [FaultOutcome::MappedHuge]);
    assert_fresh_thp(&w, 0, AREA + 3 * HP);
    w.check();
    w.finish();
}

fn nohugepage_areas_get_no_new_huge_folios<F: HardwareWalker>() {
    let mut w = world::<F>();
    w.mmap(0, AREA, 3 * HP, RW);
    // A zero PMD, then MADV_NOHUGEPAGE over its whole block (no boundary
    // inside it: the PMD stays, as pages already mapped do).
    assert_eq!(w.access(0, AREA + 8, HwAccess::USER_READ).unwrap().1, [FaultOutcome::MappedHugeZero]);
    w.advise_thp(0, AREA, HP, ThpMode::Never);
    assert_eq!(w.leaf(0, AREA).0, Level::Pmd);
    // A write to it must not make a huge folio: the zero PMD is split and
    // one 4 KiB page mapped.
    let free = w.nr_free();
    assert_eq!(w.write(0, AREA + PAGE + 1, 1), [FaultOutcome::HugeFallback]);
    assert_eq!((w.leaf(0, AREA + PAGE).0, w.nr_free()), (Level::Pte, free - 1));
    assert_eq!((w.read(0, AREA + PAGE + 1), w.read(0, AREA + 2 * PAGE)), (1, 0));
    // Fresh faults there map 4 KiB pages; the next block still gets THPs.
    assert_eq!(w.access(0, AREA + HP - 1, HwAccess::USER_READ).unwrap().1, [FaultOutcome::Resolved]);
    assert_eq!(w.write(0, AREA + HP, 2), [FaultOutcome::MappedHuge]);
    // A boundary inside a PMD: MADV_NOHUGEPAGE on half a THP splits it.
    w.advise_thp(0, AREA + HP, HP / 2, ThpMode::Never);
    assert_eq!(w.leaf(0, AREA + HP).0, Level::Pte);
    assert_eq!(w.read(0, AREA + HP), 2);
    w.check();
    w.finish();
}

/// The frames of a world with the system-wide THP switch set to `.1`.
struct Switched<'a>(&'a SimFrames, mm::vma::ThpEnabled);

impl mm::fault::FrameSource for Switched<'_> {
    fn alloc_anon_page(&self, handle: mm::folio::AnonHandle, index: u64) -> Option<PhysAddr> {
        self.0.alloc_anon_page(handle, index)
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.0.release_anon_page(pa)
    }
    fn alloc_anon_huge(&self, handle: mm::folio::AnonHandle, index: u64) -> Option<PhysAddr> {
        self.0.alloc_anon_huge(handle, index)
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        self.0.release_anon_huge(pa)
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        self.0.huge_zero()
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        self.0.copy_page(dst, src)
    }
    fn memmap(&self) -> &mm::page::Memmap {
        mm::fault::FrameSource::memmap(self.0)
    }
    fn thp_enabled(&self) -> mm::vma::ThpEnabled {
        self.1
    }
}

fn the_thp_switch_decides_which_areas_fault_huge<F: HardwareWalker>() {
    use mm::vma::ThpEnabled;
    let mut w = world::<F>();
    // Per setting: a plain 2 MiB area and an advised one, each written
    // once; which got a huge folio.
    for (i, (enabled, want)) in [
        (ThpEnabled::Never, [FaultOutcome::Resolved, FaultOutcome::Resolved]),
        (ThpEnabled::Madvise, [FaultOutcome::Resolved, FaultOutcome::MappedHuge]),
        (ThpEnabled::Always, [FaultOutcome::MappedHuge, FaultOutcome::MappedHuge]),
    ]
    .into_iter()
    .enumerate()
    {
        let plain = AREA + 4 * i as u64 * HP;
        let advised = plain + 2 * HP;
        w.mmap(0, plain, HP, RW);
        w.mmap(0, advised, HP, RW);
        w.advise_thp(0, advised, HP, ThpMode::Always);
        for (at, want) in [plain, advised].into_iter().zip(want) {
            let sp = w.sp(0);
            let fault = mm::fault::MemFault {
                addr: va(at),
                access: Access::Write,
                cause: mm::fault::FaultCause::NotMapped,
                level: None,
                syndrome: 0,
            };
            let out = mm::fault::handle_fault(
                &sp.table,
                &sp.vmas,
                &w.mem,
                &Switched(&w.frames, enabled),
                &w.tlb,
                &fault,
                true,
            );
            assert_eq!(out, want, "{enabled:?} at {at:#x}");
        }
    }
    w.check();
    w.finish();
}

/// The frames of a world, for a caller that makes huge folios without the
/// lock (`FrameSource::huge_outside_lock`): `prepared` is the folio it
/// made (`Some(None)`: it found no 2 MiB block), `None` before it did.
struct Outside<'a> {
    frames: &'a SimFrames,
    prepared: std::cell::Cell<Option<Option<PhysAddr>>>,
}

impl mm::fault::FrameSource for Outside<'_> {
    fn alloc_anon_page(&self, handle: mm::folio::AnonHandle, index: u64) -> Option<PhysAddr> {
        self.frames.alloc_anon_page(handle, index)
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.frames.release_anon_page(pa)
    }
    fn alloc_anon_huge(&self, _: mm::folio::AnonHandle, _: u64) -> Option<PhysAddr> {
        self.prepared.take().expect("a huge folio taken before it was made")
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        self.frames.release_anon_huge(pa)
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        self.frames.huge_zero()
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        self.frames.copy_page(dst, src)
    }
    fn memmap(&self) -> &mm::page::Memmap {
        mm::fault::FrameSource::memmap(self.frames)
    }
    fn huge_outside_lock(&self) -> bool {
        self.prepared.get().is_none()
    }
}

fn a_source_that_zeroes_outside_the_lock_gets_asked_first<F: HardwareWalker>() {
    let mut w = world::<F>();
    w.mmap(0, AREA, 3 * HP, RW);
    let handle = anon_handle(w.sp(0).table.root());
    let fault = |at: u64, access, cause| mm::fault::MemFault {
        addr: va(at),
        access,
        cause,
        level: None,
        syndrome: 0,
    };
    let handle_with = |w: &World<F>, src: &Outside<'_>, f: &mm::fault::MemFault| {
        let sp = w.sp(0);
        mm::fault::handle_fault(&sp.table, &sp.vmas, &w.mem, src, &w.tlb, f, true)
    };
    let free = w.nr_free();
    // Nothing made yet: the write fault changes nothing and asks for one.
    let src = Outside { frames: &w.frames, prepared: std::cell::Cell::new(None) };
    let write = fault(AREA + 0x1234, Access::Write, mm::fault::FaultCause::NotMapped);
    assert_eq!(handle_with(&w, &src, &write), FaultOutcome::NeedsHugeFolio { page: va(AREA + 0x1000) });
    assert_eq!((w.lookup(0, AREA).1, w.nr_free()), (Decoded::None, free));
    // Made: the same fault maps that folio with one PMD.
    let made =
        mm::fault::FrameSource::alloc_anon_huge(&w.frames, handle, AREA >> 12).expect("a free 2 MiB block");
    src.prepared.set(Some(Some(made)));
    assert_eq!(handle_with(&w, &src, &write), FaultOutcome::MappedHuge);
    assert_eq!(assert_fresh_thp(&w, 0, AREA).pfn().phys(), made);
    assert_eq!(src.prepared.get(), None, "the folio was taken");
    // A read asks for nothing: the huge zero folio.
    let read = fault(AREA + HP, Access::Read, mm::fault::FaultCause::NotMapped);
    assert_eq!(handle_with(&w, &src, &read), FaultOutcome::MappedHugeZero);
    // A write to the zero PMD asks too, and leaves the zero PMD as it was.
    let over_zero = fault(AREA + HP + 8, Access::Write, mm::fault::FaultCause::Protection);
    assert_eq!(handle_with(&w, &src, &over_zero), FaultOutcome::NeedsHugeFolio { page: va(AREA + HP) });
    assert!(is_huge_zero(w.memmap(), &w.leaf(0, AREA + HP).1));
    // Made, but no block was free: the fault falls back to 4 KiB.
    src.prepared.set(Some(None));
    assert_eq!(handle_with(&w, &src, &over_zero), FaultOutcome::HugeFallback);
    assert_eq!(w.leaf(0, AREA + HP).0, Level::Pte);
    // An empty block, the same.
    src.prepared.set(Some(None));
    let third = fault(AREA + 2 * HP, Access::Write, mm::fault::FaultCause::NotMapped);
    assert_eq!(handle_with(&w, &src, &third), FaultOutcome::HugeFallback);
    assert_eq!(w.folio_at(0, AREA + 2 * HP).order(), 0);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 3

fn partial_munmap_of_an_exclusive_thp_splits_it_and_frees_the_part<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(2, 1);
    assert_fresh_thp(&w, 0, AREA + HP);
    let free = w.nr_free();
    // 16 pages out of the middle of block 0.
    let (cut, nr_cut) = (AREA + 0x10_0000, 16);
    w.munmap(0, cut, nr_cut * PAGE);
    assert_eq!(w.nr_free(), free + nr_cut, "the unmapped pages are freed at once");
    let handle = anon_handle(w.sp(0).table.root());
    for i in 0..HPAGE_NR as u64 {
        let p = AREA + i * PAGE;
        if (cut..cut + nr_cut * PAGE).contains(&p) {
            assert_eq!(w.lookup(0, p), (Level::Pte, Decoded::None));
            continue;
        }
        let (level, leaf) = w.leaf(0, p);
        assert_eq!((level, leaf.prot.writable, leaf.dirty), (Level::Pte, true, true));
        // Split into order-0 folios, each mapped once, exclusive.
        let g = w.folio_at(0, p);
        assert_eq!(g.pfn(), f.pfn().plus(i));
        assert_eq!((g.order(), g.refcount(), g.page_mapcount(0), g.entire_mapcount()), (0, 1, 1, 0));
        assert!(g.test_flag(PageFlag::AnonExclusive) && g.test_flag(PageFlag::SwapBacked));
        assert_eq!((g.anon_handle(), g.index()), (Some(handle), p >> 12));
    }
    w.expect_filled(0, AREA, cut - AREA, 1);
    w.expect_filled(0, cut + nr_cut * PAGE, 2 * HP - (cut + nr_cut * PAGE - AREA), 1);
    assert_eq!(
        w.stats(0),
        Stats {
            nr_pages_mapped: 1024 - nr_cut,
            nr_folios: 512 - nr_cut + 1,
            nr_pte_leaves: 512 - nr_cut,
            nr_pmd_leaves: 1,
            nr_pud_leaves: 0,
            nr_swap_entries: 0,
            nr_migration_entries: 0,
        }
    );
    // A range across the boundary of the two blocks cuts both.
    let free = w.nr_free();
    w.munmap(0, AREA + HP - 8 * PAGE, 16 * PAGE);
    assert_eq!(w.nr_free(), free + 16);
    let st = w.stats(0);
    assert_eq!((st.nr_pmd_leaves, st.nr_pte_leaves, st.nr_folios), (0, 1024 - 32, 1024 - 32));
    w.expect_filled(0, AREA + HP + 8 * PAGE, HP - 8 * PAGE, 1);
    // MADV_DONTNEED of part of a THP frees it too and the range reads zeros.
    w.mmap(0, AREA + 2 * HP, HP, RW);
    w.fill(0, AREA + 2 * HP, HP, 3);
    let free = w.nr_free();
    w.dontneed(0, AREA + 2 * HP + 100 * PAGE, 10 * PAGE);
    assert_eq!(w.nr_free(), free + 10);
    assert_eq!(w.read(0, AREA + 2 * HP + 105 * PAGE + offset_in(AREA + 2 * HP + 105 * PAGE)), 0);
    w.expect_filled(0, AREA + 2 * HP, 100 * PAGE, 3);
    w.finish();
}

fn partial_munmap_of_a_thp_shared_with_a_child_keeps_the_folio<F: HardwareWalker>() {
    for child_first in [false, true] {
        let (mut w, f) = filled::<F>(1, 2);
        let c = w.fork(0);
        w.check();
        let free = w.nr_free();
        let (cut, nr_cut) = (AREA + 0x8_0000, 16u64);
        w.munmap(0, cut, nr_cut * PAGE);
        // The parent's PMD is split; the folio is not (the child maps it).
        assert_eq!(w.nr_free(), free, "nothing freed while the child maps the folio");
        assert_eq!((f.order(), f.entire_mapcount()), (9, 1));
        let in_cut = |i: u64| (cut..cut + nr_cut * PAGE).contains(&(AREA + i * PAGE));
        for i in 0..HPAGE_NR as u64 {
            assert_eq!(f.page_mapcount(i as usize), if in_cut(i) { 0 } else { 1 });
        }
        assert_eq!(f.refcount(), 1 + 512 - nr_cut as i32);
        let st = w.check();
        assert_eq!((st[0].nr_pte_leaves, st[0].nr_pmd_leaves, st[0].nr_folios), (512 - nr_cut, 0, 1));
        assert_eq!(st[c], pmd_stats(1, 1));
        w.expect_filled(c, AREA, HP, 2);
        w.expect_filled(0, AREA, cut - AREA, 2);
        if child_first {
            // The child goes: the folio stays for the parent's PTEs; a
            // further cut in the parent now splits it, freeing both cuts.
            w.exit(c);
            assert_eq!((f.order(), f.entire_mapcount(), f.refcount()), (9, 0, 512 - nr_cut as i32));
            assert_eq!(w.nr_free(), free);
            w.check();
            w.munmap(0, AREA, nr_cut * PAGE);
            assert_eq!(w.nr_free(), free + 2 * nr_cut);
            assert_eq!(w.folio_at(0, AREA + HP - PAGE).order(), 0);
            w.expect_filled(0, AREA + nr_cut * PAGE, cut - AREA - nr_cut * PAGE, 2);
            w.check();
            w.munmap(0, AREA, HP);
        } else {
            // The parent drops the rest: the child's PMD keeps it whole.
            w.munmap(0, AREA, HP);
            assert_eq!((f.order(), f.entire_mapcount(), f.refcount(), f.total_mapcount()), (9, 1, 1, 1));
            assert_eq!(w.nr_free(), free);
            w.check();
            w.expect_filled(c, AREA, HP, 2);
            w.munmap(c, AREA, HP);
        }
        assert_eq!(w.nr_free(), free + 512, "freed when both sides dropped it");
        w.finish();
    }
}

// ------------------------------------------------------------------ 4

fn mprotect_of_part_of_a_thp_splits_it_and_never_grants_write<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(2, 4);
    let free = w.nr_free();
    let (part, nr_part) = (AREA + 64 * PAGE, 32u64);
    let in_part = |p: u64| (part..part + nr_part * PAGE).contains(&p);
    w.mprotect(0, part, nr_part * PAGE, VmaProt::READ);
    // The PMD is split; the folio stays whole, mapped by 512 PTEs.
    assert_eq!((f.order(), f.entire_mapcount(), f.refcount(), f.total_mapcount()), (9, 0, 512, 512));
    for i in 0..HPAGE_NR {
        let p = AREA + i as u64 * PAGE;
        assert_eq!(f.page_mapcount(i), 1);
        assert!(f.page(i).test_flag(PageFlag::AnonExclusive), "page {i} stays exclusive");
        let (level, leaf) = w.leaf(0, p);
        assert_eq!((level, leaf.frame), (Level::Pte, f.pfn().plus(i as u64).phys()));
        assert_eq!(leaf.prot.writable, !in_part(p), "page {i}");
        assert!(leaf.dirty && leaf.young);
    }
    assert_eq!(w.nr_free(), free);
    let st = w.stats(0);
    assert_eq!((st.nr_pte_leaves, st.nr_pmd_leaves, st.nr_folios), (512, 1, 2));
    // Writes are refused there, allowed around it; the data is intact.
    assert_eq!(
        w.access(0, part + 5, HwAccess::USER_WRITE),
        Err(Ev::Fault(FaultOutcome::Refused(Refused::NotAllowed)))
    );
    assert_eq!(w.write(0, part - PAGE, 0x77), Vec::<Ev>::new());
    w.fill(0, part + nr_part * PAGE, 16 * PAGE, 4);
    w.expect_filled(0, part, nr_part * PAGE, 4);
    // Back to read-write: the area allows writes, the leaves stay read-only.
    w.mprotect(0, part, nr_part * PAGE, RW);
    for p in (part..part + nr_part * PAGE).step_by(PAGE as usize) {
        assert!(!w.leaf(0, p).1.prot.writable, "{p:#x}: mprotect granted write");
    }
    w.check();
    // A write faults once and reuses the exclusive page in place.
    let before = w.leaf(0, part).1.frame;
    assert_eq!(w.write(0, part + offset_in(part), 0x99), [FaultOutcome::Reused]);
    assert_eq!(w.leaf(0, part).1.frame, before);
    assert!(w.leaf(0, part).1.prot.writable);
    assert_eq!((w.nr_free(), w.frames.nr_copies()), (free, 0));
    assert_eq!(w.read(0, part + offset_in(part)), 0x99);
    w.expect_filled(0, part + PAGE, (nr_part - 1) * PAGE, 4);
    w.check();
    // A whole PMD made read-only and back: no split; the write reuses it.
    w.mprotect(0, AREA + HP, HP, VmaProt::READ);
    w.mprotect(0, AREA + HP, HP, RW);
    let (level, leaf) = w.leaf(0, AREA + HP);
    assert_eq!((level, leaf.prot.writable), (Level::Pmd, false));
    assert_eq!(w.write(0, AREA + HP + 3, 3), [FaultOutcome::Reused]);
    assert_eq!(
        w.leaf(0, AREA + HP),
        (Level::Pmd, Leaf { prot: Prot { writable: true, ..leaf.prot }, ..leaf })
    );
    w.expect_filled(0, AREA + HP + PAGE, HP - PAGE, 4);
    // After fork, mprotect of the parent never makes a shared leaf writable.
    let c = w.fork(0);
    w.mprotect(0, AREA + HP, 8 * PAGE, VmaProt::READ_EXEC);
    w.mprotect(0, AREA + HP, 8 * PAGE, RW);
    for p in (AREA + HP..AREA + HP + 8 * PAGE).step_by(PAGE as usize) {
        assert!(!w.leaf(0, p).1.prot.writable);
    }
    w.check();
    assert_eq!(w.write(0, AREA + HP + 2 * PAGE, 0xee), [FaultOutcome::Copied]);
    assert_eq!(w.read(c, AREA + HP + 2 * PAGE), 0, "the child keeps its page");
    w.expect_filled(c, AREA + HP + PAGE, HP - PAGE, 4);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 5

fn fork_shares_a_pmd_thp_and_a_write_splits_and_copies<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(1, 5);
    let c = w.fork(0);
    for s in [0, c] {
        let (level, leaf) = w.leaf(s, AREA);
        assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, f.pfn().phys(), false));
    }
    assert_eq!((f.entire_mapcount(), f.refcount(), f.total_mapcount()), (2, 2, 2));
    assert!(!f.test_flag(PageFlag::AnonExclusive));
    let st = w.check();
    assert_eq!((st[0], st[c]), (pmd_stats(1, 1), pmd_stats(1, 1)));
    // The parent writes page 5: its PMD is split, page 5 copied.
    let free = w.nr_free();
    let p5 = AREA + 5 * PAGE;
    assert_eq!(w.write(0, p5 + offset_in(p5), 0xa5), [FaultOutcome::Copied]);
    assert_eq!(w.frames.nr_copies(), 1);
    assert_eq!(w.nr_free(), free - 1);
    assert_eq!(w.leaf(c, AREA).0, Level::Pmd, "the child keeps its PMD");
    let (level, leaf) = w.leaf(0, p5);
    assert_eq!((level, leaf.prot.writable), (Level::Pte, true));
    assert_ne!(leaf.frame.pfn(), f.pfn().plus(5));
    let copy = w.folio_at(0, p5);
    assert!(copy.test_flag(PageFlag::AnonExclusive));
    assert_eq!((copy.order(), copy.refcount(), copy.page_mapcount(0)), (0, 1, 1));
    assert_eq!(f.entire_mapcount(), 1);
    for i in 0..HPAGE_NR {
        assert_eq!(f.page_mapcount(i), if i == 5 { 0 } else { 1 }, "page {i}");
        assert!(!f.page(i).test_flag(PageFlag::AnonExclusive));
        if i != 5 {
            assert!(!w.leaf(0, AREA + i as u64 * PAGE).1.prot.writable);
        }
    }
    assert_eq!(f.refcount(), 1 + 511);
    assert_eq!(w.read(0, p5 + offset_in(p5)), 0xa5);
    assert_eq!(w.read(c, p5 + offset_in(p5)), pattern(p5, 5));
    w.expect_filled(0, AREA, 5 * PAGE, 5);
    w.expect_filled(0, AREA + 6 * PAGE, HP - 6 * PAGE, 5);
    w.expect_filled(c, AREA, HP, 5);
    let st = w.check();
    assert_eq!((st[0].nr_pte_leaves, st[0].nr_folios), (512, 2));
    // The child writes page 7: its own split and copy.
    let p7 = AREA + 7 * PAGE;
    assert_eq!(w.write(c, p7 + offset_in(p7), 0xc7), [FaultOutcome::Copied]);
    assert_eq!(
        (f.entire_mapcount(), f.page_mapcount(5), f.page_mapcount(7), f.page_mapcount(8)),
        (0, 1, 1, 2)
    );
    assert_eq!(w.read(0, p7 + offset_in(p7)), pattern(p7, 5));
    assert_eq!(w.read(c, p7 + offset_in(p7)), 0xc7);
    assert_eq!(w.read(c, p5 + offset_in(p5)), pattern(p5, 5));
    w.check();
    w.finish();
}

fn a_write_after_the_other_side_unmapped_reuses_the_pmd<F: HardwareWalker>() {
    for (writer, dropper) in [(0, 1), (1, 0)] {
        let (mut w, f) = filled::<F>(2, 6);
        let c = w.fork(0);
        assert_eq!(c, 1);
        // The other side unmaps the block (munmap of exactly the block).
        w.munmap(dropper, AREA, HP);
        assert_eq!((f.entire_mapcount(), f.refcount()), (1, 1));
        w.check();
        let free = w.nr_free();
        assert_eq!(w.write(writer, AREA + 9, 0x11), [FaultOutcome::Reused]);
        assert_eq!(w.nr_free(), free);
        let (level, leaf) = w.leaf(writer, AREA);
        assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, f.pfn().phys(), true));
        assert!(f.test_flag(PageFlag::AnonExclusive));
        assert_eq!(w.read(writer, AREA + 9), 0x11);
        w.expect_filled(writer, AREA + PAGE, HP - PAGE, 6);
        w.check();
        // The other block: the other side exits altogether.
        let g = w.folio_at(0, AREA + HP);
        w.exit(dropper);
        assert_eq!(w.write(writer, AREA + HP + 9, 0x12), [FaultOutcome::Reused]);
        assert_eq!((g.entire_mapcount(), g.refcount()), (1, 1));
        assert!(g.test_flag(PageFlag::AnonExclusive));
        w.expect_filled(writer, AREA + HP + PAGE, HP - PAGE, 6);
        w.check();
        w.finish();
    }
}

// ------------------------------------------------------------------ 6

fn a_pinned_thp_is_copied_whole_for_the_child<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(1, 7);
    w.pin(f);
    assert_eq!((f.refcount(), f.pincount()), (2, 1));
    w.check();
    let free = w.nr_free();
    let c = w.fork(0);
    assert_eq!(w.frames.nr_copies(), 512);
    assert_eq!(w.nr_free(), free - 512);
    // The parent keeps it exclusive and writable.
    let (level, leaf) = w.leaf(0, AREA);
    assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, f.pfn().phys(), true));
    assert_eq!((f.entire_mapcount(), f.refcount(), f.pincount()), (1, 2, 1));
    assert!(f.test_flag(PageFlag::AnonExclusive));
    // The child has its own huge folio.
    let g = w.folio_at(c, AREA);
    assert_ne!(g, f);
    assert_eq!((g.order(), g.entire_mapcount(), g.refcount(), g.pincount()), (9, 1, 1, 0));
    assert!(g.test_flag(PageFlag::AnonExclusive));
    assert_eq!((g.anon_handle(), g.index()), (Some(anon_handle(w.sp(c).table.root())), AREA >> 12));
    assert_eq!(w.leaf(c, AREA).0, Level::Pmd);
    let st = w.check();
    assert_eq!((st[0], st[c]), (pmd_stats(1, 1), pmd_stats(1, 1)));
    w.expect_filled(c, AREA, HP, 7);
    // A write through the pin (DMA) is seen by the parent only.
    let p = AREA + 40 * PAGE;
    w.frames.set_byte(PhysAddr::new((f.pfn().plus(40).phys().as_u64()) + 8), 0xd0);
    assert_eq!((w.read(0, p + 8), w.read(c, p + 8)), (0xd0, 0));
    // Both write without a fault on either side.
    assert_eq!(w.write(0, AREA + 1, 1), Vec::<Ev>::new());
    assert_eq!(w.write(c, AREA + 1, 2), Vec::<Ev>::new());
    assert_eq!((w.read(0, AREA + 1), w.read(c, AREA + 1)), (1, 2));
    assert!(!w.unpin(f));
    assert_eq!((f.refcount(), f.pincount()), (1, 0));
    w.check();
    w.finish();
}

fn a_pinned_thp_is_copied_in_small_pages_when_no_2mib_block_is_free<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(1, 10);
    w.pin(f);
    w.fragment();
    let free = w.nr_free();
    let c = w.fork(0);
    assert_eq!((w.frames.nr_copies(), w.nr_free()), (512, free - 512));
    // The parent keeps its PMD, exclusive and writable.
    let (level, leaf) = w.leaf(0, AREA);
    assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, f.pfn().phys(), true));
    assert_eq!((f.entire_mapcount(), f.refcount()), (1, 2));
    assert!(f.test_flag(PageFlag::AnonExclusive));
    // The child maps 512 fresh exclusive pages of its own.
    let handle = anon_handle(w.sp(c).table.root());
    for i in 0..HPAGE_NR as u64 {
        let (level, leaf) = w.leaf(c, AREA + i * PAGE);
        assert_eq!((level, leaf.prot.writable), (Level::Pte, true));
        let g = w.folio_at(c, AREA + i * PAGE);
        assert_eq!((g.order(), g.refcount(), g.page_mapcount(0)), (0, 1, 1));
        assert!(g.test_flag(PageFlag::AnonExclusive));
        assert_eq!((g.anon_handle(), g.index()), (Some(handle), (AREA >> 12) + i));
    }
    let st = w.check();
    assert_eq!((st[0], st[c].nr_pte_leaves, st[c].nr_folios), (pmd_stats(1, 1), 512, 512));
    w.expect_filled(c, AREA, HP, 10);
    assert_eq!(w.write(c, AREA + 1, 2), Vec::<Ev>::new());
    assert_eq!((w.read(0, AREA + 1), w.read(c, AREA + 1)), (0, 2));
    assert!(!w.unpin(f));
    w.finish();
}

fn a_pinned_pte_mapped_thp_is_copied_page_by_page<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(1, 8);
    w.mprotect(0, AREA, PAGE, VmaProt::READ); // splits the PMD
    assert_eq!(f.entire_mapcount(), 0);
    w.pin(f);
    let c = w.fork(0);
    assert_eq!(w.frames.nr_copies(), 512);
    assert_eq!((f.refcount(), f.total_mapcount()), (513, 512));
    assert!((0..HPAGE_NR).all(|i| f.page(i).test_flag(PageFlag::AnonExclusive)));
    assert!(w.leaf(0, AREA + PAGE).1.prot.writable);
    let st = w.check();
    assert_eq!((st[c].nr_pte_leaves, st[c].nr_folios), (512, 512));
    w.expect_filled(c, AREA, HP, 8);
    // Pinned: a partial munmap cannot split it; the pages stay until unpin.
    let free = w.nr_free();
    w.munmap(0, AREA, 8 * PAGE);
    assert_eq!((w.nr_free(), f.order()), (free, 9));
    w.munmap(0, AREA, HP);
    assert_eq!((w.nr_free(), f.refcount(), f.total_mapcount()), (free, 1, 0));
    assert!(w.unpin(f));
    w.frames.free(f);
    assert_eq!(w.nr_free(), free + 512);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ 7

fn try_split_folio_refuses_and_changes_nothing<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(2, 9);
    let pmd_mapped = assert_fresh_thp(&w, 0, AREA + HP);
    let split = |w: &World<F>, folio: Folio<'static>| {
        let sp = w.sp(0);
        try_split_folio(&sp.table, &w.mem, folio, |_| 0, &mut |g| w.frames.free(g))
    };
    // Mapped by a PMD.
    let before = snapshot(&pmd_mapped);
    assert_eq!(split(&w, pmd_mapped), Err(SplitRefused::PmdMapped));
    assert_eq!(snapshot(&pmd_mapped), before);
    // Split the PMD of block 0 by hand: 512 PTEs, counts on the pages.
    let sp = w.sp(0);
    assert_eq!(
        split_huge_pmd(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA + 77 * PAGE)),
        Ok(PmdSplit::Anon)
    );
    assert_eq!(split_huge_pmd(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA)), Ok(PmdSplit::NotHuge));
    assert_eq!((f.order(), f.entire_mapcount(), f.refcount(), f.total_mapcount()), (9, 0, 512, 512));
    assert!((0..HPAGE_NR).all(|i| f.page_mapcount(i) == 1 && f.page(i).test_flag(PageFlag::AnonExclusive)));
    assert_eq!(w.stats(0).nr_pte_leaves, 512);
    let before = snapshot(&f);
    let free = w.nr_free();
    let refused = |w: &World<F>, why: SplitRefused| {
        assert_eq!(split(w, f), Err(why));
        // Not quiescent while the test holds the folio's lock.
        let quiescent = !f.is_locked();
        w.check_in(quiescent);
        assert_eq!(w.nr_free(), free);
        w.expect_filled(0, AREA, HP, 9);
    };
    // Pinned.
    w.pin(f);
    let pinned = snapshot(&f);
    refused(&w, SplitRefused::Pinned);
    assert_eq!(snapshot(&f), pinned);
    assert!(!w.unpin(f));
    assert_eq!(snapshot(&f), before);
    // An extra reference (FOLL_GET): the freeze fails.
    f.get();
    w.declare_refs(f.pfn(), 1);
    let got = snapshot(&f);
    refused(&w, SplitRefused::Referenced);
    assert_eq!(snapshot(&f), got);
    w.declare_refs(f.pfn(), -1);
    assert!(!f.put());
    // Locked by somebody else.
    f.lock();
    refused(&w, SplitRefused::Locked);
    f.unlock();
    assert_eq!(snapshot(&f), before);
    // Mapped by another space too (a fork child's PTEs).
    let c = w.fork(0);
    let shared = snapshot(&f);
    assert_eq!(f.refcount(), 1024);
    refused(&w, SplitRefused::MappedElsewhere);
    assert_eq!(snapshot(&f), shared);
    w.exit(c);
    assert_eq!(snapshot(&f).refcount, 512);
    // The parent lost AnonExclusive at fork; otherwise as before.
    assert!((0..HPAGE_NR).all(|i| !f.page(i).test_flag(PageFlag::AnonExclusive)));
    w.check();
    // Now it splits: page 4's PTE was cleared by the caller (who holds its
    // reference), page 6's PTE gone and its reference dropped already.
    let sp = w.sp(0);
    let (_, flush) = sp.table.clear(&w.mem, va(AREA + 4 * PAGE), Level::Pte).unwrap();
    flush.flush(&w.tlb);
    remove_pte_mapping(w.memmap(), PhysAddr::new(f.pfn().plus(4).phys().as_u64()));
    let (_, flush) = sp.table.clear(&w.mem, va(AREA + 6 * PAGE), Level::Pte).unwrap();
    flush.flush(&w.tlb);
    assert!(!remove_pte_mapping(w.memmap(), PhysAddr::new(f.pfn().plus(6).phys().as_u64())).put());
    let mut freed = Vec::new();
    let held = |i: usize| (i == 4) as i32;
    assert_eq!(
        try_split_folio(&sp.table, &w.mem, f, held, &mut |g| {
            freed.push(g.pfn());
            w.frames.free(g)
        }),
        Ok(())
    );
    assert_eq!(freed, [f.pfn().plus(6)], "the page nobody holds is freed at once");
    assert_eq!(w.nr_free(), free + 1);
    let page4 = folio_of(w.memmap(), f.pfn().plus(4)).unwrap();
    assert_eq!((page4.order(), page4.refcount(), page4.page_mapcount(0)), (0, 1, 0));
    w.frames.put(page4);
    let handle = anon_handle(w.sp(0).table.root());
    for i in (0..HPAGE_NR).filter(|&i| i != 4 && i != 6) {
        let g = w.folio_at(0, AREA + i as u64 * PAGE);
        assert_eq!(g.pfn(), f.pfn().plus(i as u64));
        assert_eq!((g.order(), g.refcount(), g.page_mapcount(0), g.is_locked()), (0, 1, 1, false));
        assert_eq!((g.anon_handle(), g.index()), (Some(handle), (AREA >> 12) + i as u64));
        assert!(g.test_flag(PageFlag::SwapBacked));
    }
    assert_eq!(w.nr_free(), free + 2);
    let st = w.stats(0);
    assert_eq!((st.nr_pte_leaves, st.nr_folios, st.nr_pmd_leaves), (510, 511, 1));
    w.expect_filled(0, AREA, 4 * PAGE, 9);
    w.expect_filled(0, AREA + 7 * PAGE, HP - 7 * PAGE, 9);
    assert_eq!(split(&w, w.folio_at(0, AREA)), Err(SplitRefused::Small));
    w.finish();
}

// ------------------------------------------------------------------ 8

fn split_huge_pmd_of_migration_and_swap_entries<F: HardwareWalker>() {
    let (w, zero, zero_before) = with_zero_folio::<F>(3);
    let sp = w.sp(0);
    // A migration PMD whose PFN is the huge zero folio's (seed 001): it
    // must be split as a migration entry, not taken for the zero PMD.
    let m = MigrationEntry::new(MigrationKind::ReadExclusive, zero.pfn(), true, false).unwrap();
    sp.table.set_nonpresent(&w.mem, va(AREA), Level::Pmd, NonPresent::Migration(m)).unwrap().1.flush(&w.tlb);
    // The fault handler does not look at its frame either: it only asks
    // its caller to wait for the migration the entry names.
    let wait = FaultOutcome::MigrationWait { page: va(AREA), pfn: zero.pfn() };
    assert_eq!(w.fault(0, AREA + 5, Access::Read), wait);
    assert_eq!(w.fault(0, AREA + 5, Access::Write), wait);
    assert_eq!(
        split_huge_pmd(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA + 0x1234)),
        Ok(PmdSplit::NonPresent)
    );
    for i in 0..HPAGE_NR as u64 {
        let expected = NonPresent::Migration(MigrationEntry { pfn: zero.pfn().plus(i), ..m });
        assert_eq!(w.lookup(0, AREA + i * PAGE), (Level::Pte, Decoded::NonPresent(expected)));
    }
    assert_eq!(snapshot(&zero), zero_before);
    // A THP unmapped for migration (by hand: the PMD becomes a migration
    // entry, the PMD mapping goes, the migration holds the reference).
    let sp = w.sp(0);
    assert_eq!(w.write(0, AREA + HP, 1), [FaultOutcome::MappedHuge]);
    let f = assert_fresh_thp(&w, 0, AREA + HP);
    let m2 = MigrationEntry::new(MigrationKind::Write, f.pfn(), true, true).unwrap();
    let (old, flush) =
        sp.table.set_nonpresent(&w.mem, va(AREA + HP), Level::Pmd, NonPresent::Migration(m2)).unwrap();
    flush.flush(&w.tlb);
    let Decoded::Leaf(old) = old else { panic!("{old:?}") };
    assert_eq!(remove_pmd_mapping(w.memmap(), old.frame), f);
    assert!(f.try_lock(), "a migration holds the folio lock");
    f.clear_flag(PageFlag::AnonExclusive); // the entry's kind carries it
    let f_before = snapshot(&f);
    assert_eq!((f_before.refcount, f_before.entire), (1, 0));
    // Cut by a range: split_huge_pmd_if_cut.
    assert_eq!(
        split_huge_pmd_if_cut(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA + HP)),
        Ok(PmdSplit::NotHuge)
    );
    assert_eq!(
        split_huge_pmd_if_cut(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA + HP + 3 * PAGE)),
        Ok(PmdSplit::NonPresent)
    );
    for i in 0..HPAGE_NR as u64 {
        let expected = NonPresent::Migration(MigrationEntry { pfn: f.pfn().plus(i), ..m2 });
        assert_eq!(w.lookup(0, AREA + HP + i * PAGE), (Level::Pte, Decoded::NonPresent(expected)));
    }
    assert_eq!(snapshot(&f), f_before, "no count changes");
    // A swap PMD.
    let entry = SwapEntry::new(SwapType::nth(3), 0x1000).unwrap();
    let swap = NonPresent::Swap { entry, exclusive: true };
    sp.table.set_nonpresent(&w.mem, va(AREA + 2 * HP), Level::Pmd, swap).unwrap().1.flush(&w.tlb);
    assert_eq!(
        split_huge_pmd(&sp.table, &w.mem, &w.tlb, w.memmap(), va(AREA + 2 * HP + HP - 1)),
        Ok(PmdSplit::NonPresent)
    );
    for i in 0..HPAGE_NR as u64 {
        let expected = NonPresent::Swap {
            entry: SwapEntry::new(SwapType::nth(3), 0x1000 + i).unwrap(),
            exclusive: true,
        };
        assert_eq!(w.lookup(0, AREA + 2 * HP + i * PAGE), (Level::Pte, Decoded::NonPresent(expected)));
    }
    // The checker: the entries made by hand at AREA name the huge zero
    // folio, which no migration moves (it is not anonymous).
    let bad = |at: u64, pfn, why| {
        Err(ConsistencyError::BadMigrationEntry { va: va(at), level: Level::Pte, pfn, why })
    };
    assert_eq!(w.try_check_in(false), bad(AREA, zero.pfn(), MigrationProblem::WrongMapping));
    for i in 0..HPAGE_NR as u64 {
        w.sp(0).table.clear(&w.mem, va(AREA + i * PAGE), Level::Pte).unwrap().1.ignore();
    }
    assert_eq!(
        w.try_check_in(false),
        Err(ConsistencyError::NonPresentEntries { nr_swap: 512, first: va(AREA + 2 * HP) })
    );
    // mprotect and a partial MADV_DONTNEED leave them as they are / clear
    // the part; no count changes.
    let sp = w.sp(0);
    protect_range(
        &sp.table,
        &w.mem,
        &w.tlb,
        w.memmap(),
        va(AREA),
        va(AREA + 3 * HP),
        VmaProt::READ.to_prot(true),
    )
    .unwrap()
    .flush(&w.tlb);
    w.dontneed(0, AREA + HP, 256 * PAGE);
    assert_eq!(w.lookup(0, AREA + HP), (Level::Pte, Decoded::None));
    assert!(matches!(w.lookup(0, AREA + HP + 256 * PAGE), (Level::Pte, Decoded::NonPresent(_))));
    assert_eq!(snapshot(&f), f_before);
    assert_eq!(snapshot(&zero), zero_before);
    // Migration over: drop the entries, then the lock and the reference.
    w.dontneed(0, AREA, 3 * HP);
    assert_eq!(snapshot(&f), f_before);
    f.unlock();
    assert_eq!(w.stats(0), Stats::default());
    w.frames.put(f);
    w.finish();
}

// ------------------------------------------------------------------ 9

/// Prints the operations of a failing run.
struct OpLog(Vec<String>);

impl Drop for OpLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let from = self.0.len().saturating_sub(40);
            eprintln!("last operations:\n  {}", self.0[from..].join("\n  "));
        }
    }
}

impl OpLog {
    /// Whether `(start, len)` is wholly mapped in space `s`, for an
    /// operation (`what`) that runs only then; logged either way.
    fn if_mapped<F: HardwareWalker>(
        &mut self,
        w: &World<F>,
        op: usize,
        s: usize,
        (start, len): (u64, u64),
        what: &str,
    ) -> bool {
        let mapped = w.sp(s).vmas.check_mapped(va(start), len).is_ok();
        self.0.push(format!("{op}: {what} {s} {start:#x}+{len:#x} (mapped {mapped})"));
        mapped
    }
}

/// The region the random operations work in: 4 blocks.
const REGION_PAGES: u64 = 4 * 512;

/// A range in the region: 2 MiB blocks mostly cut at both ends, sometimes whole.
fn random_range(rng: &mut Rng) -> (u64, u64) {
    if rng.chance(20) {
        let b = rng.below(4);
        let n = 1 + rng.below(4 - b);
        return (AREA + b * HP, n * HP);
    }
    let start = rng.below(REGION_PAGES);
    let max = if rng.chance(50) { 16 } else { 700 };
    let len = 1 + rng.below((REGION_PAGES - start).min(max));
    (AREA + start * PAGE, len * PAGE)
}

fn random_operations_agree_with_a_byte_model<F: HardwareWalker>() {
    // For a longer soak: THP_RANDOM_SEEDS (default 4) seeds of
    // THP_RANDOM_OPS (default 250) operations.
    let env =
        |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (nr_seeds, nr_ops) = (env("THP_RANDOM_SEEDS", 4), env("THP_RANDOM_OPS", 250));
    let mut seen: HashMap<String, u64> = HashMap::new();
    for seed in 1..=nr_seeds {
        random_run::<F>(seed, nr_ops as usize, &mut seen);
    }
    // The run reached every path it is meant to mix.
    for what in
        ["MappedHuge", "MappedHugeZero", "HugeFallback", "Copied", "Reused", "Resolved", "fork", "split"]
    {
        assert!(seen.get(what).copied().unwrap_or(0) > 0, "never saw {what}: {seen:?}");
    }
}

fn random_run<F: HardwareWalker>(seed: u64, nr_ops: usize, seen: &mut HashMap<String, u64>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut w = world::<F>();
    let mut log = OpLog(vec![format!("seed {seed:#x}")]);
    // Expected byte at `offset_in(page)` of each page, per space (absent: 0).
    let mut model: Vec<HashMap<u64, u8>> = vec![HashMap::new()];
    // Pinned folios (head PFNs), as a FOLL_PIN user holds them.
    let mut pins: Vec<Pfn> = Vec::new();
    w.mmap(0, AREA, 4 * HP, RW);
    for op in 0..nr_ops {
        let live = w.live();
        let s = live[rng.below(live.len() as u64) as usize];
        let roll = rng.below(100);
        let mut note = |what: &str| *seen.entry(what.to_string()).or_default() += 1;
        match roll {
            0..=34 => {
                let page = AREA + rng.below(REGION_PAGES) * PAGE;
                let at = page + offset_in(page);
                let value = 1 + rng.below(255) as u8;
                let area = w.sp(s).vmas.find(va(at)).map(|v| v.prot);
                log.0.push(format!("{op}: write {s} {page:#x} = {value:#x} (area {area:?})"));
                match area {
                    Some(p) if p.write => {
                        for o in w.write(s, at, value).iter().filter_map(Ev::fault) {
                            note(&format!("{o:?}"));
                        }
                        model[s].insert(page, value);
                    }
                    Some(_) => assert_eq!(
                        w.access(s, at, HwAccess::USER_WRITE),
                        Err(Ev::Fault(FaultOutcome::Refused(Refused::NotAllowed)))
                    ),
                    None => assert_eq!(
                        w.access(s, at, HwAccess::USER_WRITE),
                        Err(Ev::Fault(FaultOutcome::Refused(Refused::NoMapping)))
                    ),
                }
            }
            35..=49 => {
                let page = AREA + rng.below(REGION_PAGES) * PAGE;
                let at = page + offset_in(page);
                let area = w.sp(s).vmas.find(va(at)).is_some();
                log.0.push(format!("{op}: read {s} {page:#x}"));
                if area {
                    let (pa, outcomes) = w.access(s, at, HwAccess::USER_READ).unwrap();
                    for o in outcomes.iter().filter_map(Ev::fault) {
                        note(&format!("{o:?}"));
                    }
                    assert_eq!(w.frames.byte(pa), model[s].get(&page).copied().unwrap_or(0), "{page:#x}");
                } else {
                    assert_eq!(
                        w.access(s, at, HwAccess::USER_READ),
                        Err(Ev::Fault(FaultOutcome::Refused(Refused::NoMapping)))
                    );
                }
            }
            50..=57 => {
                let (start, len) = random_range(&mut rng);
                log.0.push(format!("{op}: munmap {s} {start:#x}+{len:#x}"));
                let pmds = nr_pmd_leaves(&w, s);
                w.munmap(s, start, len);
                if nr_pmd_leaves(&w, s) + len / HP < pmds {
                    note("split");
                }
                model[s].retain(|&p, _| !(start..start + len).contains(&p));
            }
            58..=63 => {
                let range @ (start, len) = random_range(&mut rng);
                if log.if_mapped(&w, op, s, range, "dontneed") {
                    w.dontneed(s, start, len);
                    model[s].retain(|&p, _| !(start..start + len).contains(&p));
                }
            }
            64..=66 => {
                let range @ (start, len) = random_range(&mut rng);
                let mode = [ThpMode::Never, ThpMode::Always, ThpMode::Default][rng.below(3) as usize];
                if log.if_mapped(&w, op, s, range, &format!("madvise {mode:?}")) {
                    w.advise_thp(s, start, len, mode);
                }
            }
            67..=74 => {
                let range @ (start, len) = random_range(&mut rng);
                let prot = [VmaProt::READ, RW, RW, VmaProt::READ_EXEC][rng.below(4) as usize];
                if log.if_mapped(&w, op, s, range, &format!("mprotect {prot:?}")) {
                    w.mprotect(s, start, len, prot);
                }
            }
            75..=81 => {
                let (start, len) = random_range(&mut rng);
                let free =
                    w.sp(s).vmas.iter().all(|v| v.end.as_u64() <= start || v.start.as_u64() >= start + len);
                log.0.push(format!("{op}: mmap {s} {start:#x}+{len:#x} (free {free})"));
                if free {
                    w.mmap(s, start, len, RW);
                }
            }
            82..=86 if live.len() < 4 => {
                log.0.push(format!("{op}: fork {s}"));
                let c = w.fork(s);
                note("fork");
                model.push(model[s].clone());
                assert_eq!(model.len(), c + 1);
            }
            87..=88 if live.len() > 1 => {
                log.0.push(format!("{op}: exit {s}"));
                w.exit(s);
                model[s].clear();
            }
            89..=93 => {
                // Pin (a FOLL_PIN user) or unpin a folio.
                if !pins.is_empty() && rng.chance(50) {
                    let pfn = pins.swap_remove(rng.below(pins.len() as u64) as usize);
                    let f = folio_of(w.memmap(), pfn).unwrap();
                    log.0.push(format!("{op}: unpin {pfn:#x}"));
                    if w.unpin(f) {
                        w.frames.free(f);
                    }
                } else {
                    let page = AREA + rng.below(REGION_PAGES) * PAGE;
                    if let Some(pa) = w.sp(s).table.translate(&w.mem, va(page)) {
                        let f = folio_of(w.memmap(), pa.pfn()).unwrap();
                        if f.pfn() != w.frames.zero_pfn().unwrap() {
                            log.0.push(format!("{op}: pin {s} {page:#x} (folio {:#x})", f.pfn()));
                            w.pin(f);
                            pins.push(f.pfn());
                        }
                    }
                }
            }
            _ => {
                if !w.is_fragmented() {
                    log.0.push(format!("{op}: fragment"));
                    w.fragment();
                } else {
                    log.0.push(format!("{op}: unfragment"));
                    w.unfragment();
                }
            }
        }
        // After every operation: the checker, and every written byte.
        w.check();
        for s in w.live() {
            for (&page, &value) in &model[s] {
                let at = page + offset_in(page);
                let (pa, _) =
                    w.access(s, at, HwAccess::USER_READ).unwrap_or_else(|e| panic!("{page:#x}: {e:?}"));
                assert_eq!(w.frames.byte(pa), value, "space {s}, page {page:#x}");
            }
        }
    }
    log.0.push("teardown".into());
    for s in w.live() {
        w.exit(s);
    }
    for pfn in pins {
        let f = folio_of(w.memmap(), pfn).unwrap();
        if w.unpin(f) {
            w.frames.free(f);
        }
    }
    w.finish();
}

// ------------------------------------------------------------------ MADV_PAGEOUT

/// `mm::pageout`: a range that cuts two THPs splits both and offers
/// exactly the pages inside; a THP shared with a child, or with an extra
/// reference (a `FOLL_GET` holder, or reclaim's isolation), stays whole and
/// offers nothing.
fn pageout_splits_the_thps_a_range_cuts_and_takes_only_the_inside<F: HardwareWalker>() {
    let mut w = world::<F>();
    w.mmap(0, AREA, 3 * HP, RW);
    w.fill(0, AREA, 3 * HP, 6);
    let (f0, f1) = (assert_fresh_thp(&w, 0, AREA), assert_fresh_thp(&w, 0, AREA + HP));
    let candidates = |w: &World<F>, start: u64, end: u64| {
        let sp = w.sp(0);
        pageout_candidates(&sp.table, &w.mem, &w.tlb, w.memmap(), va(start), va(end), &mut |g| {
            w.frames.free(g)
        })
    };
    // The second half of block 0 and the first of block 1.
    let (start, end) = (AREA + HP / 2, AREA + HP + HP / 2);
    let got = candidates(&w, start, end);
    assert_eq!((got.nr_split, got.kept_whole.len(), got.folios.len()), (2, 0, 512));
    for g in &got.folios {
        assert_eq!(
            (g.order(), g.refcount(), g.page_mapcount(0)),
            (0, 2, 1),
            "a piece, mapped, with our reference"
        );
        assert!((start..end).contains(&(g.index() << 12)));
        assert!(g.test_flag(PageFlag::AnonExclusive) && g.test_flag(PageFlag::SwapBacked));
    }
    for g in got.folios {
        w.frames.put(g);
    }
    assert_eq!((f0.order(), f1.order()), (0, 0));
    let st = w.stats(0);
    assert_eq!((st.nr_pmd_leaves, st.nr_pte_leaves, st.nr_folios), (1, 1024, 1025));
    w.expect_filled(0, AREA, 3 * HP, 6);
    // A range inside one small folio's worth cuts nothing more.
    let got = candidates(&w, AREA + 3 * PAGE, AREA + 5 * PAGE);
    assert_eq!((got.nr_split, got.folios.len()), (0, 2));
    got.folios.into_iter().for_each(|g| {
        w.frames.put(g);
    });

    // Block 2 shared with a child: its PMD is mapped twice; kept whole.
    let c = w.fork(0);
    let f2 = w.folio_at(0, AREA + 2 * HP);
    let got = candidates(&w, AREA + 2 * HP, AREA + 2 * HP + HP / 2);
    assert_eq!((got.nr_split, got.folios.len()), (0, 0));
    assert_eq!(got.kept_whole, vec![(f2.pfn(), KeptWhole::Shared)]);
    assert_eq!((f2.order(), f2.entire_mapcount()), (9, 2));
    w.check();
    w.exit(c);
    // An extra reference (as reclaim's isolation takes): the PMD is split,
    // the folio is not, and nothing of it is offered.
    f2.get();
    let got = candidates(&w, AREA + 2 * HP, AREA + 2 * HP + HP / 2);
    assert_eq!((got.nr_split, got.folios.len()), (0, 0));
    assert_eq!(got.kept_whole, vec![(f2.pfn(), KeptWhole::Refused(SplitRefused::Referenced))]);
    assert_eq!((f2.order(), f2.entire_mapcount(), f2.total_mapcount()), (9, 0, 512));
    w.frames.put(f2);
    // Without it the same call splits.
    let got = candidates(&w, AREA + 2 * HP, AREA + 2 * HP + HP / 2);
    assert_eq!((got.nr_split, got.folios.len()), (1, 256));
    got.folios.into_iter().for_each(|g| {
        w.frames.put(g);
    });
    w.expect_filled(0, AREA, 3 * HP, 6);
    w.check();
    w.finish();
}

/// `split_isolated_folio`, reclaim's split when no run of slots is free:
/// the caller's lock and isolation reference stay on page 0, the other
/// mapped pieces come back with a reference each; a folio shared with a
/// child or referenced by someone else is refused and stays whole.
fn split_isolated_folio_hands_the_pieces_to_reclaim<F: HardwareWalker>() {
    let (mut w, f) = filled::<F>(2, 7);
    let split = |w: &World<F>, f: Folio<'static>| {
        let sp = w.sp(0);
        split_isolated_folio(&sp.table, &w.mem, &w.tlb, w.memmap(), f, &mut |g| w.frames.free(g))
    };
    // Shared with a child: its PMD is mapped twice.
    let c = w.fork(0);
    assert!(f.try_lock());
    f.get();
    assert_eq!(split(&w, f).unwrap_err(), SplitRefused::MappedElsewhere);
    assert_eq!((f.order(), f.entire_mapcount()), (9, 2));
    f.unlock();
    w.frames.put(f);
    w.exit(c);
    // Someone else's reference: the PMD is split, the folio is not.
    assert!(f.try_lock());
    f.get();
    f.get();
    assert_eq!(split(&w, f).unwrap_err(), SplitRefused::Referenced);
    assert_eq!((f.order(), f.entire_mapcount(), f.total_mapcount()), (9, 0, 512));
    w.frames.put(f);
    // Only the caller's: split; page 0 keeps the lock and the reference.
    let pieces = split(&w, f).unwrap();
    assert_eq!(pieces.len(), 511);
    assert_eq!((f.order(), f.refcount(), f.page_mapcount(0)), (0, 2, 1));
    assert!(f.is_locked());
    for (i, g) in pieces.iter().enumerate() {
        assert_eq!(g.pfn(), f.pfn().plus(1 + i as u64));
        assert_eq!((g.order(), g.refcount(), g.page_mapcount(0)), (0, 2, 1));
        assert!(!g.is_locked());
    }
    f.unlock();
    w.frames.put(f);
    pieces.into_iter().for_each(|g| {
        w.frames.put(g);
    });
    let st = w.stats(0);
    assert_eq!((st.nr_pmd_leaves, st.nr_pte_leaves, st.nr_folios), (1, 512, 513));
    w.expect_filled(0, AREA, 2 * HP, 7);
    w.finish();
}

// ------------------------------------------------------------------ MADV_COLD

/// `mm::pageout::deactivate_range` (`MADV_COLD`): the folios wholly inside
/// the range that the space maps alone go to the inactive tail without
/// `Referenced` and their leaves lose the young bit; a THP the range cuts,
/// folios shared with a child and folios off the lists stay as they are;
/// nothing is freed or split, and every byte reads back.
fn cold_deactivates_the_exclusive_folios_inside_the_range<F: HardwareWalker>() {
    let mut w = World::<F>::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_huge_zero().with_lru());
    let small = AREA + 3 * HP;
    w.mmap(0, AREA, 3 * HP, RW);
    w.mmap(0, small, 4 * PAGE, RW);
    w.fill(0, AREA, 3 * HP, 9);
    w.fill(0, small, 4 * PAGE, 10);
    let lru = w.lru();
    let thps: Vec<Folio<'static>> = (0..3).map(|b| assert_fresh_thp(&w, 0, AREA + b * HP)).collect();
    let smalls: Vec<Folio<'static>> = (0..4).map(|i| w.folio_at(0, small + i * PAGE)).collect();
    // Used again: what reclaim's second chance does to a referenced folio.
    for &f in thps.iter().chain(&smalls) {
        assert_eq!(lru.isolate_folio(f), Some(LruList::Inactive));
        lru.putback(f, LruList::Active);
        w.frames.put(f);
        lru.mark_accessed(f);
    }
    assert_eq!(lru.counts().nr_active, 7);
    let leaf = |w: &World<F>, at: u64| match w.sp(0).table.lookup(&w.mem, va(at)) {
        (_, Decoded::Leaf(l)) => l,
        other => panic!("no leaf at {at:#x}: {other:?}"),
    };
    assert!(leaf(&w, AREA + HP).young && leaf(&w, small).young);
    let cold = |w: &World<F>, start: u64, end: u64| {
        let sp = w.sp(0);
        let c = deactivate_range(&sp.table, &w.mem, w.memmap(), Some(lru), va(start), va(end)).unwrap();
        c.flush.flush(&w.tlb);
        (c.nr_deactivated, c.nr_off_lists, c.nr_aged)
    };
    let is_cold = |f: Folio<'static>| {
        lru.list_of(f.pfn()) == Some(LruList::Inactive) && !f.test_flag(PageFlag::Referenced)
    };
    let is_hot = |f: Folio<'static>| {
        lru.list_of(f.pfn()) == Some(LruList::Active) && f.test_flag(PageFlag::Referenced)
    };

    // Shared with a child: nothing moves, no bit changes.
    let c = w.fork(0);
    assert_eq!(cold(&w, AREA, small + 4 * PAGE), (0, 0, 0));
    assert!(thps.iter().chain(&smalls).all(|&f| is_hot(f)));
    w.exit(c);

    // One small folio off the lists (reclaim has it): left to its owner.
    assert_eq!(lru.isolate_folio(smalls[3]), Some(LruList::Active));
    // From the middle of THP 0 to the third small page: THP 0 is cut and
    // stays whole and hot; THPs 1 and 2 and small pages 0-2 go cold.
    assert_eq!(cold(&w, AREA + HP / 2, small + 3 * PAGE), (5, 0, 5));
    assert!(is_hot(thps[0]) && !is_hot(smalls[3]));
    assert!(thps[1..].iter().chain(&smalls[..3]).all(|&f| is_cold(f)), "{:?}", lru.counts());
    assert!(!leaf(&w, AREA + HP).young && !leaf(&w, small).young && leaf(&w, AREA).young);
    assert!(thps.iter().all(|f| f.order() == 9), "no THP was split");
    // The last one deactivated is at the inactive tail: reclaim takes it
    // first.
    let mut inactive = Vec::new();
    lru.for_each(|pfn, list| {
        if list == LruList::Inactive {
            inactive.push(pfn);
        }
    });
    assert_eq!(inactive.last(), Some(&smalls[2].pfn()));
    // The isolated one is untouched when the range covers it.
    assert_eq!(cold(&w, small + 3 * PAGE, small + 4 * PAGE), (0, 1, 1));
    assert!(lru.list_of(smalls[3].pfn()).is_none() && smalls[3].test_flag(PageFlag::Referenced));
    lru.putback(smalls[3], LruList::Active);
    w.frames.put(smalls[3]);
    lru.check().unwrap();
    // Nothing was written or freed: every byte reads back, and a read
    // marks the leaf young again.
    w.expect_filled(0, AREA, 3 * HP, 9);
    w.expect_filled(0, small, 4 * PAGE, 10);
    assert!(leaf(&w, AREA + HP).young);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ page tables freed by munmap

/// Table frames in use (the root included).
fn nr_tables<F: HardwareWalker>(w: &World<F>) -> u64 {
    *w.mem.live_tables.borrow()
}

fn munmap_frees_the_tables_whose_span_no_area_covers<F: HardwareWalker>() {
    let mut w = world::<F>();
    assert_eq!(nr_tables(&w), 1, "the root");
    // Alone: PUD, PMD and PTE tables come and go with the area.
    w.small_pages(0, AREA, 4, 1);
    assert_eq!(nr_tables(&w), 4);
    w.munmap(0, AREA, 4 * PAGE);
    assert_eq!(nr_tables(&w), 1, "every table under the root is freed");
    assert_eq!(w.lookup(0, AREA), (Level::Pgd, Decoded::None));
    w.check();
    // A neighbour in the same 2 MiB keeps the PTE table.
    w.small_pages(0, AREA, 4, 2);
    w.small_pages(0, AREA + 16 * PAGE, 4, 3);
    assert_eq!(nr_tables(&w), 4);
    w.munmap(0, AREA, 4 * PAGE);
    assert_eq!(nr_tables(&w), 4, "the neighbour still uses the PTE table");
    assert_eq!(w.lookup(0, AREA), (Level::Pte, Decoded::None));
    for p in pages(AREA + 16 * PAGE, 4) {
        w.expect_page(0, p, 3);
    }
    // A neighbour in the next 2 MiB keeps the PMD table only.
    w.small_pages(0, AREA + HP, 4, 4);
    assert_eq!(nr_tables(&w), 5);
    w.munmap(0, AREA + 16 * PAGE, 4 * PAGE);
    assert_eq!(nr_tables(&w), 4, "the first block's PTE table is freed");
    assert_eq!(w.lookup(0, AREA), (Level::Pmd, Decoded::None));
    for p in pages(AREA + HP, 4) {
        w.expect_page(0, p, 4);
    }
    w.check();
    // A munmap over a hole and an area frees what the gap covers whole.
    w.small_pages(0, AREA + 3 * HP, 1, 5);
    w.munmap(0, AREA, 4 * HP);
    assert_eq!(nr_tables(&w), 1);
    w.check();
    w.finish();
}

fn a_thp_fault_after_munmap_and_mmap_of_the_range_maps_a_pmd<F: HardwareWalker>() {
    let mut w = world::<F>();
    // Another area in the same PMD table, far enough not to share a block.
    w.small_pages(0, AREA + 8 * HP, 1, 1);
    // 4 KiB pages over two blocks (as mmbench's anon4k_fault), unmapped.
    w.small_pages(0, AREA, 2 * HP / PAGE, 2);
    w.munmap(0, AREA, 2 * HP);
    // The same range again, huge: each block gets a PMD leaf.
    for block in 0..2 {
        let f = w.thp(0, AREA + block * HP, 3);
        assert_eq!(f.order(), 9);
    }
    assert!((0..2).all(|b| w.lookup(0, AREA + b * HP).0 == Level::Pmd));
    w.expect_page(0, AREA + 8 * HP, 1);
    w.check();
    w.finish();
}

// ------------------------------------------------------------------ both formats

mm::for_both_formats!(
    a_write_fault_maps_one_pmd_leaf,
    read_faults_map_the_huge_zero_folio_and_writes_replace_it,
    nohugepage_areas_get_no_new_huge_folios,
    the_thp_switch_decides_which_areas_fault_huge,
    a_source_that_zeroes_outside_the_lock_gets_asked_first,
    partial_munmap_of_an_exclusive_thp_splits_it_and_frees_the_part,
    partial_munmap_of_a_thp_shared_with_a_child_keeps_the_folio,
    mprotect_of_part_of_a_thp_splits_it_and_never_grants_write,
    fork_shares_a_pmd_thp_and_a_write_splits_and_copies,
    a_write_after_the_other_side_unmapped_reuses_the_pmd,
    a_pinned_thp_is_copied_whole_for_the_child,
    a_pinned_thp_is_copied_in_small_pages_when_no_2mib_block_is_free,
    a_pinned_pte_mapped_thp_is_copied_page_by_page,
    try_split_folio_refuses_and_changes_nothing,
    split_huge_pmd_of_migration_and_swap_entries,
    random_operations_agree_with_a_byte_model,
    pageout_splits_the_thps_a_range_cuts_and_takes_only_the_inside,
    split_isolated_folio_hands_the_pieces_to_reclaim,
    cold_deactivates_the_exclusive_folios_inside_the_range,
    munmap_frees_the_tables_whose_span_no_area_covers,
    a_thp_fault_after_munmap_and_mmap_of_the_range_maps_a_pmd,
);
