//! Anonymous pages as folios: the folio a demand-zero fault maps, and the
//! two steps that give it back when its page-table entry goes.
//!
//! ## Protocol
//!
//! Every anonymous page is an order-0 folio from
//! [`FrameAllocator::alloc_folio`]. [`alloc_anon_folio`] prepares it while
//! it is unpublished (nobody else can see it, so plain stores are fine):
//!
//! | field | value | why |
//! | --- | --- | --- |
//! | page 0's mapcount | 1 | the one PTE the fault is about to write |
//! | refcount | 1 | the reference that PTE mapping holds |
//! | [`PageFlag::AnonExclusive`] (page 0, on the head) | set | a fresh anonymous page is mapped by one address space only (mm-reference §8) |
//! | [`PageFlag::SwapBacked`] | set | anonymous memory is backed by swap, not a file |
//! | mapping, index | [`anon_handle`] of the space, `va >> 12` | who maps it, and where |
//!
//! and zeroes the frame before publishing it ([`prepare_anon_folio`] is
//! the part after the allocation). The caller then writes the PTE; if that
//! fails it gives the page back with [`remove_pte_mapping`] and
//! [`put_anon_folio`] (nobody else ever saw it).
//!
//! The order matters (seed 003): the flags are written with plain stores
//! *before* [`UnpublishedFolio::publish`], while a PFN walker's `try_get`
//! still fails. The bug-replay switch [`Bug::NonatomicFolioFlags`] swaps
//! it: publish first, then a plain load/modify/store of the flags word.
//!
//! Unmapping is two steps, because another CPU may still use a stale
//! translation until the TLB shootdown is over:
//! 1. under the address-space lock, with the PTE just cleared:
//!    [`remove_pte_mapping`] drops the page's mapcount, so the counts agree
//!    with the tables for anyone who checks them under that lock
//!    (`crate::debug`); the folio keeps the mapping's reference;
//! 2. after the flush: [`put_anon_folio`] drops that reference and frees
//!    the folio when it was the last.
//!
//! Locks: mapcounts and the refcount are atomics; the only lock taken is
//! the frame allocator's (a leaf), inside [`alloc_anon_folio`] and
//! [`put_anon_folio`]. The kernel calls both with interrupts off.

use crate::addr::PhysAddr;
use crate::bugs::{self, Bug};
use crate::folio::{folio_of, AnonHandle, Folio, FolioMapping, UnpublishedFolio};
use crate::frame::{AllocError, AllocKind, FrameAllocator};
use crate::page::{Memmap, PageFlag};

/// The anon handle of the address space whose root table is at `root`
/// ([`AnonHandle::of_root`]).
pub fn anon_handle(root: PhysAddr) -> AnonHandle {
    AnonHandle::of_root(root)
}

/// A new anonymous page for page `index` of the address space `handle`: an
/// order-0 folio whose frame `zero` has filled with zeros, published with
/// mapcount 1, refcount 1, `AnonExclusive`, `SwapBacked`, and mapping
/// `(handle, index)` (see the module doc). The caller maps it with one PTE.
pub fn alloc_anon_folio(
    frames: &FrameAllocator,
    kind: AllocKind,
    handle: AnonHandle,
    index: u64,
    zero: impl FnOnce(PhysAddr),
) -> Result<Folio<'static>, AllocError> {
    let folio = frames.alloc_folio(0, kind)?;
    zero(folio.pfn().phys());
    Ok(prepare_anon_folio(folio, handle, index))
}

/// The part of [`alloc_anon_folio`] after the allocation: gives the order-0
/// `folio` (allocated and zeroed by the caller) the fields of a new
/// anonymous page (the module doc's table) while it is unpublished, then
/// publishes it. Apart so that a host test can run it under a concurrency
/// checker without the frame allocator (`tests/races_folio_flags.rs`).
///
/// With the switch [`Bug::NonatomicFolioFlags`] on, it puts seed 003's
/// mistake back instead ([`replay_nonatomic_folio_flags`]).
pub fn prepare_anon_folio(mut folio: UnpublishedFolio<'_>, handle: AnonHandle, index: u64) -> Folio<'_> {
    debug_assert!(folio.order() == 0, "prepare_anon_folio: order {} (anon pages are order 0)", folio.order());
    if bugs::enabled(Bug::NonatomicFolioFlags) {
        return replay_nonatomic_folio_flags(folio, handle, index);
    }
    folio.nonatomic_set_flag(PageFlag::SwapBacked);
    // Page 0's per-page flag lives on the head.
    folio.nonatomic_set_flag(PageFlag::AnonExclusive);
    folio.set_mapping(FolioMapping::Anon(handle), index);
    folio.set_page_mapcount(0, 1);
    folio.publish()
}

/// **Bug replay** ([`Bug::NonatomicFolioFlags`], seed 003): the same
/// fields, in the wrong order. The folio is published first, so a PFN
/// walker's `try_get` may already succeed and change flags atomically;
/// then `SwapBacked` and `AnonExclusive` are written with a plain
/// load/modify/store of the flags word, which undoes whatever the walker
/// set or cleared in between.
fn replay_nonatomic_folio_flags(
    mut folio: UnpublishedFolio<'_>,
    handle: AnonHandle,
    index: u64,
) -> Folio<'_> {
    folio.set_mapping(FolioMapping::Anon(handle), index);
    folio.set_page_mapcount(0, 1);
    let folio = folio.publish();
    folio.bug_replay_nonatomic_set_flags(PageFlag::SwapBacked.mask() | PageFlag::AnonExclusive.mask());
    folio
}

/// Drops the PTE mapping of the anonymous page at `pa`, whose entry the
/// caller has just cleared (holding the lock that serialises the table).
/// Returns its folio, which still holds the mapping's reference: drop it
/// with [`put_anon_folio`] once no CPU can use the old translation.
///
/// # Panics
///
/// When `pa` is not a page of a folio, or the page was not mapped (a kernel
/// bug: the tables and the counts disagreed).
pub fn remove_pte_mapping(memmap: &Memmap, pa: PhysAddr) -> Folio<'_> {
    let pfn = pa.pfn();
    let folio = folio_of(memmap, pfn)
        .unwrap_or_else(|| panic!("remove_pte_mapping: pfn {pfn:#x} is not a folio page"));
    let i = folio.page_index_of(pfn);
    let old = folio.page(i).mapcount.fetch_sub(1, core::sync::atomic::Ordering::AcqRel);
    assert!(old > 0, "remove_pte_mapping: pfn {pfn:#x} was not mapped (mapcount {old})");
    folio
}

/// True when `pa` is a page of a live anonymous folio (`SwapBacked`, with a
/// reference): what [`crate::fault::FrameSource::copy_page`] may copy to
/// and from. The kernel's copy checks it (see [`crate::folio::folio_covering`]).
pub fn is_live_anon_page(memmap: &Memmap, pa: PhysAddr) -> bool {
    crate::folio::folio_covering(memmap, pa, 1)
        .is_some_and(|f| f.test_flag(PageFlag::SwapBacked) && f.refcount() > 0)
}

/// Drops the reference a removed mapping held on `folio`, freeing the folio
/// when it was the last. Returns whether it was freed.
pub fn put_anon_folio(frames: &FrameAllocator, folio: Folio<'_>) -> bool {
    if folio.put() {
        frames.free_folio(folio);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;

    /// The handle of the space whose root table is in frame `pfn`.
    fn space(pfn: u64) -> AnonHandle {
        AnonHandle::of_root(PhysAddr::new(pfn << 12))
    }
    use std::boxed::Box;
    use std::cell::Cell;

    fn allocator() -> &'static FrameAllocator {
        let memmap = Memmap::new_leaked(Pfn::new(0x800), 256);
        let fa = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(Pfn::new(0x800), Pfn::new(0x900)).unwrap();
        fa
    }

    #[test]
    fn a_new_anon_folio_is_mapped_once_exclusive_and_zeroed() {
        let fa = allocator();
        let free = fa.nr_free_pages();
        let zeroed = Cell::new(None);
        let f =
            alloc_anon_folio(fa, AllocKind::Normal, space(0x42), 0x1234, |pa| zeroed.set(Some(pa))).unwrap();
        assert_eq!(zeroed.get(), Some(f.pfn().phys()));
        assert_eq!((f.order(), f.refcount(), f.page_mapcount(0), f.entire_mapcount()), (0, 1, 1, 0));
        assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert!(f.test_flag(PageFlag::Head) && !f.is_locked());
        assert_eq!((f.mapping(), f.index()), (FolioMapping::Anon(space(0x42)), 0x1234));
        assert_eq!(fa.nr_free_pages(), free - 1);
        // Unmap, then put: freed, and the allocator is whole again.
        let g = remove_pte_mapping(fa.memmap(), f.pfn().phys());
        assert_eq!(g, f);
        assert_eq!((f.page_mapcount(0), f.refcount()), (0, 1));
        assert!(put_anon_folio(fa, g));
        assert_eq!(fa.nr_free_pages(), free);
        fa.check_consistency().unwrap();
    }

    /// The fault path's two steps (a raw frame zeroed before the space's
    /// lock, made a folio under it: `FrameAllocator::raw_into_folio` then
    /// `prepare_anon_folio`) give the same folio as `alloc_anon_folio`; a
    /// raw frame not used goes back with a plain `free`.
    #[test]
    fn a_raw_frame_made_an_anon_folio_is_the_same_as_a_new_one() {
        let fa = allocator();
        let free = fa.nr_free_pages();
        let raw = fa.alloc(0, AllocKind::Normal).unwrap();
        let f = prepare_anon_folio(fa.raw_into_folio(raw, 0), space(0x42), 0x1234);
        assert_eq!(f.pfn(), raw);
        assert_eq!((f.order(), f.refcount(), f.page_mapcount(0), f.entire_mapcount()), (0, 1, 1, 0));
        assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert!(f.test_flag(PageFlag::Head) && !f.is_locked());
        assert_eq!((f.mapping(), f.index()), (FolioMapping::Anon(space(0x42)), 0x1234));
        assert!(is_live_anon_page(fa.memmap(), f.pfn().phys()));
        assert!(put_anon_folio(fa, remove_pte_mapping(fa.memmap(), f.pfn().phys())));
        let unused = fa.alloc(0, AllocKind::Normal).unwrap();
        fa.free(unused, 0);
        assert_eq!(fa.nr_free_pages(), free);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn only_pages_of_live_anon_folios_are_anon_pages() {
        let fa = allocator();
        let f = alloc_anon_folio(fa, AllocKind::Normal, space(1), 0, |_| {}).unwrap();
        assert!(is_live_anon_page(fa.memmap(), f.pfn().phys()));
        // A folio that is not anonymous, and a raw frame: no.
        let other = fa.alloc_folio(0, AllocKind::Normal).unwrap().publish();
        assert!(!is_live_anon_page(fa.memmap(), other.pfn().phys()));
        let raw = fa.alloc(0, AllocKind::Normal).unwrap();
        assert!(!is_live_anon_page(fa.memmap(), raw.phys()));
        // Freed: no longer.
        let pa = f.pfn().phys();
        assert!(put_anon_folio(fa, remove_pte_mapping(fa.memmap(), pa)));
        assert!(!is_live_anon_page(fa.memmap(), pa));
        fa.free(raw, 0);
        assert!(other.put());
        fa.free_folio(other);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn an_extra_reference_keeps_the_folio() {
        let fa = allocator();
        let f = alloc_anon_folio(fa, AllocKind::Normal, space(1), 0, |_| {}).unwrap();
        f.get();
        let g = remove_pte_mapping(fa.memmap(), f.pfn().phys());
        assert!(!put_anon_folio(fa, g));
        assert_eq!(f.refcount(), 1);
        assert!(put_anon_folio(fa, f));
        fa.check_consistency().unwrap();
    }

    #[test]
    fn the_replayed_mistake_leaves_the_same_folio_when_alone() {
        // The replay is wrong only against another CPU; alone it must make
        // the same page, so the kernel keeps working with the switch on.
        let _serial = crate::bugs::TEST_SWITCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let fa = allocator();
        bugs::enable(Bug::NonatomicFolioFlags);
        let f = alloc_anon_folio(fa, AllocKind::Normal, space(0x42), 7, |_| {});
        bugs::disable(Bug::NonatomicFolioFlags);
        let f = f.unwrap();
        assert_eq!(
            (f.refcount(), f.page_mapcount(0), f.mapping(), f.index()),
            (1, 1, FolioMapping::Anon(space(0x42)), 7)
        );
        assert!(f.test_flag(PageFlag::AnonExclusive) && f.test_flag(PageFlag::SwapBacked));
        assert!(f.test_flag(PageFlag::Head) && f.order() == 0);
        let g = remove_pte_mapping(fa.memmap(), f.pfn().phys());
        assert!(put_anon_folio(fa, g));
        fa.check_consistency().unwrap();
    }

    #[test]
    #[should_panic(expected = "remove_pte_mapping: pfn 0x850 is not a folio page")]
    fn removing_a_mapping_of_a_raw_frame_panics() {
        let fa = allocator();
        let _ = remove_pte_mapping(fa.memmap(), PhysAddr::new(0x850 << 12));
    }

    #[test]
    #[should_panic(expected = "was not mapped")]
    fn removing_a_mapping_twice_panics() {
        let fa = allocator();
        let f = alloc_anon_folio(fa, AllocKind::Normal, space(1), 0, |_| {}).unwrap();
        let pa = f.pfn().phys();
        let _ = remove_pte_mapping(fa.memmap(), pa);
        let _ = remove_pte_mapping(fa.memmap(), pa);
    }
}
