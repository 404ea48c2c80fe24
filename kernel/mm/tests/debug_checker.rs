//! The consistency checker (`mm::debug`) over both real formats: address
//! spaces built by the real fault handler (`mm::fault::handle_fault`) with
//! anonymous folios from a real `FrameAllocator`, tables in `SimMemory`.
//! A consistent space passes with the right statistics; each kind of
//! corruption (a count, an area, a frame, an entry) is reported by name.
//!
//! Frames for data come from the allocator's memmap at PFN 0x80000 and up
//! (physical 0x8000_0000); table frames from `SimMemory` at 0x4000_0000, so
//! the two never overlap.

use arch_aarch64::pgtable::Aarch64Format;
use arch_x86_64::pgtable::X86Format;
use mm::anon::{alloc_anon_folio, anon_handle, put_anon_folio, remove_pte_mapping};
use mm::debug::{check_address_space, ConsistencyError, FrameProblem, Stats};
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, FrameSource, MemFault};
use mm::folio::{folio_of, Folio};
use mm::frame::{AllocKind, FrameAllocator};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::format::MigrationKind;
use mm::pgtable::sim::{HardwareWalker, SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Leaf, Level, MigrationEntry, NonPresent, PageSize, PageTable, Prot, SwapEntry};
use mm::vma::{VmaKind, VmaProt, VmaSet};
use mm::{PhysAddr, VirtAddr};

const MEMMAP_BASE: u64 = 0x80000;
/// Descriptors in the memmap; the last `RESERVED` are never managed.
const MEMMAP_LEN: usize = 4096;
const RESERVED: u64 = 16;
const AREA: u64 = 0x10_0000_0000;
const RW: VmaProt = VmaProt::READ_WRITE;
const USER_RW: Prot = Prot { writable: true, user: true, executable: false, global: false };

/// Anonymous pages from a real allocator, as the kernel makes them.
struct Frames(&'static FrameAllocator);

impl FrameSource for Frames {
    fn alloc_anon_page(&self, handle: u64, index: u64) -> Option<PhysAddr> {
        let f = alloc_anon_folio(self.0, AllocKind::Normal, handle, index, |_| {}).ok()?;
        Some(PhysAddr::new(f.pfn() << 12))
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        put_anon_folio(self.0, remove_pte_mapping(self.0.memmap(), pa));
    }
    fn alloc_anon_huge(&self, _handle: u64, _index: u64) -> Option<PhysAddr> {
        None // these tests map 4 KiB pages only (tests/thp.rs covers huge ones)
    }
    fn release_anon_huge(&self, _pa: PhysAddr) {
        unreachable!("no huge folio is handed out")
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        None
    }
    fn copy_page(&self, _dst: PhysAddr, _src: PhysAddr) {
        // Data frames are not simulated here: only the counts matter.
    }
    fn memmap(&self) -> &Memmap {
        self.0.memmap()
    }
}

struct Space<F: HardwareWalker> {
    mem: SimMemory,
    tlb: SoftTlb<F>,
    table: PageTable<F>,
    vmas: VmaSet,
    frames: Frames,
    free_at_start: u64,
}

impl<F: HardwareWalker> Space<F> {
    fn new() -> Self {
        let memmap = Memmap::new_leaked(MEMMAP_BASE, MEMMAP_LEN);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(MEMMAP_BASE, MEMMAP_BASE + MEMMAP_LEN as u64 - RESERVED).unwrap();
        let mem = SimMemory::new(0x4000_0000, 1 << 12);
        let table = PageTable::new(&mem).unwrap();
        let vmas = VmaSet::new(VirtAddr::new(0x1000), VirtAddr::new(0x8000_0000_0000));
        Space {
            mem,
            tlb: SoftTlb::default(),
            table,
            vmas,
            frames: Frames(fa),
            free_at_start: fa.nr_free_pages(),
        }
    }

    fn memmap(&self) -> &'static Memmap {
        self.frames.0.memmap()
    }

    fn check(&self) -> Result<Stats, ConsistencyError> {
        check_address_space(&self.table, &self.vmas, &self.mem, self.memmap())
    }

    fn fault(&self, addr: u64, access: Access) {
        let fault = MemFault {
            addr: VirtAddr::new(addr),
            access,
            cause: FaultCause::NotMapped,
            level: None,
            syndrome: 0,
        };
        let out = handle_fault(&self.table, &self.vmas, &self.mem, &self.frames, &self.tlb, &fault, true);
        assert_eq!(out, FaultOutcome::Resolved, "fault at {addr:#x}");
    }

    /// The folio mapped at `va`.
    fn folio_at(&self, va: u64) -> Folio<'static> {
        let pa = self.table.translate(&self.mem, VirtAddr::new(va)).expect("mapped");
        folio_of(self.memmap(), pa.pfn()).expect("a folio")
    }

    /// Unmaps `[start, start + len)` as the kernel does: areas, entries,
    /// mapcounts under the lock, then (after the flush) the references.
    fn munmap(&mut self, start: u64, len: u64) {
        let ranges = self.vmas.unmap(VirtAddr::new(start), len).unwrap();
        let mut folios = Vec::new();
        for (s, e) in ranges {
            let mut leaves = Vec::new();
            self.table.visit(&self.mem, s, e, &mut |va, _, entry, _| {
                if let Decoded::Leaf(l) = entry {
                    leaves.push((va, l));
                }
            });
            for (va, l) in leaves {
                let (_, flush) = self.table.unmap(&self.mem, va, PageSize::Size4K).unwrap();
                flush.flush(&self.tlb);
                folios.push(remove_pte_mapping(self.memmap(), l.frame));
            }
        }
        for f in folios {
            assert!(put_anon_folio(self.frames.0, f), "the mapping held the last reference");
        }
    }

    /// Unmaps everything, frees the tables, and wants every frame back.
    fn finish(mut self) {
        self.munmap(0x1000, 0x8000_0000_0000 - 0x1000);
        assert_eq!(self.check(), Ok(Stats::default()));
        self.table.destroy(&self.mem, 0..0);
        assert_eq!(self.frames.0.nr_free_pages(), self.free_at_start, "folios leaked");
        self.frames.0.check_consistency().unwrap();
    }
}

fn pages(n: u64) -> Stats {
    Stats { nr_pages_mapped: n, nr_folios: n, nr_pte_leaves: n, ..Stats::default() }
}

/// A space with 8 pages faulted in (writes and reads) in a 16-page area.
fn faulted<F: HardwareWalker>() -> Space<F> {
    let mut s = Space::<F>::new();
    s.vmas.map_fixed(VirtAddr::new(AREA), 16 * 4096, RW, VmaKind::Anonymous).unwrap();
    for p in 0..8 {
        let access = if p % 2 == 0 { Access::Write } else { Access::Read };
        s.fault(AREA + p * 4096 + 0x10, access);
    }
    s
}

fn demand_faults_make_consistent_anon_folios<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    assert_eq!(s.check(), Ok(pages(8)));
    let handle = anon_handle(s.table.root());
    for p in 0..8 {
        let va = AREA + p * 4096;
        let f = s.folio_at(va);
        assert_eq!((f.order(), f.page_mapcount(0), f.refcount(), f.entire_mapcount()), (0, 1, 1, 0));
        assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert_eq!((f.mapping(), f.index()), (handle, va >> 12));
    }
    assert_eq!(s.frames.0.nr_free_pages(), s.free_at_start - 8, "one frame per folio");
    // A partial munmap splits the area and frees the folios at once.
    let free = s.frames.0.nr_free_pages();
    s.munmap(AREA + 2 * 4096, 3 * 4096);
    assert_eq!(s.frames.0.nr_free_pages(), free + 3);
    assert_eq!(s.vmas.len(), 2);
    assert_eq!(s.check(), Ok(pages(5)));
    s.finish();
}

fn a_corrupted_page_mapcount_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(AREA + 3 * 4096);
    f.add_page_mapcount(0, 1);
    assert_eq!(
        s.check(),
        Err(ConsistencyError::PageMapcount { folio: f.pfn(), pfn: f.pfn(), nr_ptes: 1, mapcount: 2 })
    );
    let msg = s.check().unwrap_err().to_string();
    assert!(msg.contains("mapped by 1 PTEs, mapcount 2"), "{msg}");
    f.add_page_mapcount(0, -1);
    assert_eq!(s.check(), Ok(pages(8)));
    s.finish();
}

fn a_corrupted_entire_mapcount_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(AREA);
    f.add_entire_mapcount(1);
    assert_eq!(
        s.check(),
        Err(ConsistencyError::EntireMapcount { folio: f.pfn(), nr_pmds: 0, entire_mapcount: 1 })
    );
    f.add_entire_mapcount(-1);
    assert_eq!(s.check(), Ok(pages(8)));
    s.finish();
}

fn a_refcount_below_the_mappings_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    // Map the folio of page 0 a second time (not anon, so its index does
    // not tie it to one address), counting the mapping but not its reference.
    let f = s.folio_at(AREA);
    f.clear_flag(PageFlag::SwapBacked);
    let leaf = Leaf {
        frame: PhysAddr::new(f.pfn() << 12),
        size: PageSize::Size4K,
        prot: USER_RW,
        dirty: false,
        young: true,
    };
    s.table.map(&s.mem, VirtAddr::new(AREA + 12 * 4096), leaf).unwrap().ignore();
    f.add_page_mapcount(0, 1);
    assert_eq!(
        s.check(),
        Err(ConsistencyError::RefcountBelowMapcount { folio: f.pfn(), refcount: 1, total_mapcount: 2 })
    );
    f.get();
    assert_eq!(s.check(), Ok(Stats { nr_folios: 8, ..pages(9) }));
    // Undo the second mapping: entry, mapcount, reference.
    s.table.unmap(&s.mem, VirtAddr::new(AREA + 12 * 4096), PageSize::Size4K).unwrap().1.flush(&s.tlb);
    f.add_page_mapcount(0, -1);
    assert!(!f.put());
    f.set_flag(PageFlag::SwapBacked);
    assert_eq!(s.check(), Ok(pages(8)));
    s.finish();
}

fn leaves_outside_their_area_or_beyond_its_rights_are_reported<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    // The area is cut without the table: the page is left behind.
    let ranges = s.vmas.unmap(VirtAddr::new(AREA + 4096), 4096).unwrap();
    assert_eq!(ranges.len(), 1);
    assert_eq!(
        s.check(),
        Err(ConsistencyError::OutsideArea { va: VirtAddr::new(AREA + 4096), level: Level::Pte })
    );
    s.vmas.map_fixed(VirtAddr::new(AREA + 4096), 4096, RW, VmaKind::Anonymous).unwrap();
    assert_eq!(s.check(), Ok(pages(8)));
    // The area becomes read-only without the table following.
    s.vmas.protect(VirtAddr::new(AREA), 16 * 4096, VmaProt::READ).unwrap();
    assert_eq!(
        s.check(),
        Err(ConsistencyError::ProtExceedsArea {
            va: VirtAddr::new(AREA),
            level: Level::Pte,
            prot: USER_RW,
            area: VmaProt::READ,
        })
    );
    s.table
        .protect(
            &s.mem,
            VirtAddr::new(AREA),
            VirtAddr::new(AREA + 16 * 4096),
            Prot { writable: false, ..USER_RW },
        )
        .unwrap()
        .flush(&s.tlb);
    assert_eq!(s.check(), Ok(pages(8)));
    // PROT_NONE maps nothing at all.
    s.vmas.protect(VirtAddr::new(AREA), 16 * 4096, VmaProt::NONE).unwrap();
    assert!(matches!(s.check(), Err(ConsistencyError::ProtExceedsArea { area: VmaProt::NONE, .. })));
    s.finish();
}

fn frames_that_are_not_folio_pages_are_reported<F: HardwareWalker>() {
    let mut s = faulted::<F>();
    let fa = s.frames.0;
    let raw = fa.alloc(0, AllocKind::Normal).unwrap();
    // Some free frame: the allocator's next order-0 block, given back.
    let free = fa.alloc(0, AllocKind::Normal).unwrap();
    fa.free(free, 0);
    let reserved = MEMMAP_BASE + MEMMAP_LEN as u64 - 1;
    let outside = MEMMAP_BASE + MEMMAP_LEN as u64 + 0x100;
    let va = AREA + 10 * 4096;
    for (pfn, why) in [
        (raw, FrameProblem::NotFolio),
        (free, FrameProblem::Free { block: free }),
        (reserved, FrameProblem::Reserved),
        (outside, FrameProblem::OutsideMemmap),
    ] {
        let leaf = Leaf {
            frame: PhysAddr::new(pfn << 12),
            size: PageSize::Size4K,
            prot: USER_RW,
            dirty: false,
            young: true,
        };
        s.table.map(&s.mem, VirtAddr::new(va), leaf).unwrap().ignore();
        match (s.check(), why) {
            // The free frame merged with its buddies: the block starts at or below it.
            (
                Err(ConsistencyError::NotFolioPage { va: v, pfn: p, why: FrameProblem::Free { block } }),
                FrameProblem::Free { .. },
            ) => {
                assert_eq!((v, p), (VirtAddr::new(va), pfn));
                assert!(block <= pfn, "free block {block:#x} does not contain {pfn:#x}");
            }
            (got, _) => {
                assert_eq!(got, Err(ConsistencyError::NotFolioPage { va: VirtAddr::new(va), pfn, why }))
            }
        }
        s.table.unmap(&s.mem, VirtAddr::new(va), PageSize::Size4K).unwrap().1.flush(&s.tlb);
    }
    assert_eq!(s.check(), Ok(pages(8)));
    fa.free(raw, 0);
    s.munmap(AREA, 16 * 4096);
    s.finish();
}

fn a_wrong_anon_mapping_is_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let f = s.folio_at(AREA + 5 * 4096);
    let handle = anon_handle(s.table.root());
    f.lock();
    f.set_mapping(handle, f.index() + 1);
    f.unlock();
    assert_eq!(
        s.check(),
        Err(ConsistencyError::WrongMapping {
            va: VirtAddr::new(AREA + 5 * 4096),
            folio: f.pfn(),
            mapping: handle,
            index: (AREA >> 12) + 6,
            expected_mapping: handle,
            expected_index: (AREA >> 12) + 5,
        })
    );
    f.lock();
    f.set_mapping(handle, (AREA >> 12) + 5);
    f.unlock();
    assert_eq!(s.check(), Ok(pages(8)));
    s.finish();
}

fn swap_and_migration_entries_are_counted_and_reported<F: HardwareWalker>() {
    let s = faulted::<F>();
    let swap = NonPresent::Swap { entry: SwapEntry::new(1, 7).unwrap(), exclusive: true };
    s.table
        .set_nonpresent(&s.mem, VirtAddr::new(AREA + 12 * 4096), Level::Pte, swap)
        .unwrap()
        .1
        .flush(&s.tlb);
    let m = MigrationEntry::new(MigrationKind::Read, 0x1234, false, false).unwrap();
    let mig = NonPresent::Migration(m);
    s.table.set_nonpresent(&s.mem, VirtAddr::new(AREA + 10 * 4096), Level::Pte, mig).unwrap().1.flush(&s.tlb);
    s.table
        .set_nonpresent(&s.mem, VirtAddr::new(AREA + 11 * 4096), Level::Pte, swap)
        .unwrap()
        .1
        .flush(&s.tlb);
    assert_eq!(
        s.check(),
        Err(ConsistencyError::NonPresentEntries {
            nr_swap: 2,
            nr_migration: 1,
            first: VirtAddr::new(AREA + 10 * 4096)
        })
    );
    for p in 10..13 {
        s.table.clear(&s.mem, VirtAddr::new(AREA + p * 4096), Level::Pte).unwrap().1.flush(&s.tlb);
    }
    assert_eq!(s.check(), Ok(pages(8)));
    s.finish();
}

fn pmd_leaves_count_in_the_entire_mapcount<F: HardwareWalker>() {
    let mut s = Space::<F>::new();
    let base = AREA + 0x20_0000;
    s.vmas.map_fixed(VirtAddr::new(base), 0x20_0000, RW, VmaKind::Anonymous).unwrap();
    let handle = anon_handle(s.table.root());
    let mut u = s.frames.0.alloc_folio(9, AllocKind::Normal).unwrap();
    u.nonatomic_set_flag(PageFlag::SwapBacked);
    u.set_mapping(handle, base >> 12);
    let f = u.publish();
    let huge = |frame: u64| Leaf {
        frame: PhysAddr::new(frame << 12),
        size: PageSize::Size2M,
        prot: USER_RW,
        dirty: true,
        young: true,
    };
    s.table.map(&s.mem, VirtAddr::new(base), huge(f.pfn())).unwrap().ignore();
    // Mapped by a PMD but not counted.
    assert_eq!(
        s.check(),
        Err(ConsistencyError::EntireMapcount { folio: f.pfn(), nr_pmds: 1, entire_mapcount: 0 })
    );
    f.add_entire_mapcount(1);
    assert_eq!(
        s.check(),
        Ok(Stats { nr_pages_mapped: 512, nr_folios: 1, nr_pmd_leaves: 1, ..Stats::default() })
    );
    // One of its pages also mapped by a PTE (elsewhere, in another area):
    // counted on that page's own mapcount, next to the PMD mapping.
    s.vmas.map_fixed(VirtAddr::new(base + 0x20_0000), 0x20_0000, RW, VmaKind::Anonymous).unwrap();
    f.clear_flag(PageFlag::SwapBacked); // its index ties it to `base` only
    let tail = Leaf {
        frame: PhysAddr::new((f.pfn() + 5) << 12),
        size: PageSize::Size4K,
        prot: USER_RW,
        dirty: false,
        young: true,
    };
    s.table.map(&s.mem, VirtAddr::new(base + 0x20_0000 + 5 * 4096), tail).unwrap().ignore();
    assert!(
        matches!(s.check(), Err(ConsistencyError::PageMapcount { pfn, nr_ptes: 1, mapcount: 0, .. }) if pfn == f.pfn() + 5)
    );
    f.add_page_mapcount(5, 1);
    f.get();
    assert_eq!(
        s.check(),
        Ok(Stats {
            nr_pages_mapped: 513,
            nr_folios: 1,
            nr_pte_leaves: 1,
            nr_pmd_leaves: 1,
            ..Stats::default()
        })
    );
    // Undo by hand and free.
    s.table
        .unmap(&s.mem, VirtAddr::new(base + 0x20_0000 + 5 * 4096), PageSize::Size4K)
        .unwrap()
        .1
        .flush(&s.tlb);
    s.table.unmap(&s.mem, VirtAddr::new(base), PageSize::Size2M).unwrap().1.flush(&s.tlb);
    f.add_page_mapcount(5, -1);
    f.add_entire_mapcount(-1);
    f.set_flag(PageFlag::SwapBacked);
    assert!(!f.put());
    assert!(f.put());
    s.frames.0.free_folio(f);
    s.finish();
}

fn a_huge_leaf_that_is_not_one_folio_is_reported<F: HardwareWalker>() {
    let mut s = Space::<F>::new();
    let base = AREA + 0x20_0000;
    s.vmas.map_fixed(VirtAddr::new(base), 0x20_0000, RW, VmaKind::Anonymous).unwrap();
    // An order-10 folio (4 MiB): its head is 2 MiB-aligned but the folio is
    // larger than the leaf.
    let f = s.frames.0.alloc_folio(10, AllocKind::Normal).unwrap().publish();
    let leaf = Leaf {
        frame: PhysAddr::new(f.pfn() << 12),
        size: PageSize::Size2M,
        prot: USER_RW,
        dirty: true,
        young: true,
    };
    s.table.map(&s.mem, VirtAddr::new(base), leaf).unwrap().ignore();
    assert_eq!(
        s.check(),
        Err(ConsistencyError::HugeLeafNotFolio {
            va: VirtAddr::new(base),
            level: Level::Pmd,
            pfn: f.pfn(),
            order: 10
        })
    );
    s.table.unmap(&s.mem, VirtAddr::new(base), PageSize::Size2M).unwrap().1.flush(&s.tlb);
    assert!(f.put());
    s.frames.0.free_folio(f);
    s.finish();
}

mm::for_both_formats!(
    demand_faults_make_consistent_anon_folios,
    a_corrupted_page_mapcount_is_reported,
    a_corrupted_entire_mapcount_is_reported,
    a_refcount_below_the_mappings_is_reported,
    leaves_outside_their_area_or_beyond_its_rights_are_reported,
    frames_that_are_not_folio_pages_are_reported,
    a_wrong_anon_mapping_is_reported,
    swap_and_migration_entries_are_counted_and_reported,
    pmd_leaves_count_in_the_entire_mapcount,
    a_huge_leaf_that_is_not_one_folio_is_reported,
);
