//! Anonymous folios in the running kernel: allocated zeroed from the
//! buddy allocator ([`crate::memory`]) and put on the LRU lists at once
//! ([`crate::vm::reclaim`]), taken off them when the last reference goes;
//! the huge zero folio, made once at boot; the copy of copy-on-write.
//!
//! The folio rules are `mm::anon`'s and `mm::thp`'s; here is only the
//! running kernel's frame source and lists. Locks: the frame allocator's
//! lock (a leaf, interrupts off) around each allocation and free; the LRU
//! lock inside `reclaim::lru_add`/`lru_remove`.

use crate::memory::{frame_allocator, phys_to_virt, zero_frames};
use mm::folio::AnonHandle;
use mm::folio::Folio;
use mm::frame::AllocKind;
use mm::Pfn;
use mm::{PhysAddr, PAGE_SIZE};

/// A new zeroed anonymous page for page `index` of the address space
/// `handle`: an order-0 folio, mapcount 1 and refcount 1 for the PTE the
/// caller writes next (see `mm::anon`). `None` when memory is short.
pub fn alloc_anon_page(handle: AnonHandle, index: u64) -> Option<PhysAddr> {
    // Interrupts off around the allocator's lock (see `crate::sync`); the
    // zeroing inside is of a frame nobody else can see yet.
    let folio = crate::sync::without_interrupts(|| {
        mm::anon::alloc_anon_folio(frame_allocator(), AllocKind::Normal, handle, index, |pa| {
            // SAFETY: `alloc_anon_folio` calls this with the frame it has
            // just allocated, before it publishes the folio: ours alone.
            unsafe { zero_frames(pa, 0) }
        })
    })
    .ok()?;
    crate::vm::reclaim::lru_add(folio);
    Some(folio.pfn().phys())
}

/// A zeroed raw frame for a fault that may need a new anonymous page,
/// taken and zeroed *before* the space's lock (`crate::vm::fault`), so that
/// faults of one space on different CPUs zero their pages in parallel; the
/// zeroing is of a frame nobody else can see. `Err` when the allocation
/// failed (memory short, or failed on purpose by `mm::fail_alloc`): the
/// fault's 4 KiB page then fails as an allocation under the lock would.
/// The caller turns it into a folio ([`anon_page_from_zeroed`]) or gives
/// it back ([`free_zeroed_frame`]).
pub fn alloc_zeroed_frame() -> Result<Pfn, mm::frame::AllocError> {
    let pfn = crate::sync::without_interrupts(|| frame_allocator().alloc(0, AllocKind::Normal))?;
    // SAFETY: the frame was allocated just now and is not published: ours
    // alone (RAM, in the direct map).
    unsafe { zero_frames(pfn.phys(), 0) };
    Ok(pfn)
}

/// [`alloc_anon_page`] with the frame [`alloc_zeroed_frame`] prepared: the
/// same folio (mapcount 1, refcount 1, on the LRU), without the zeroing.
pub fn anon_page_from_zeroed(pfn: Pfn, handle: AnonHandle, index: u64) -> PhysAddr {
    let folio = mm::anon::prepare_anon_folio(frame_allocator().raw_into_folio(pfn, 0), handle, index);
    crate::vm::reclaim::lru_add(folio);
    folio.pfn().phys()
}

/// Gives back a frame of [`alloc_zeroed_frame`] the fault did not use.
pub fn free_zeroed_frame(pfn: Pfn) {
    crate::sync::without_interrupts(|| frame_allocator().free(pfn, 0));
}

/// A new zeroed huge anonymous folio (order 9) for the 2 MiB block whose
/// first page is `index` of the space `handle`: entire mapcount 1 and
/// refcount 1 for the PMD the caller writes next (see `mm::thp`). `None`
/// when no free 2 MiB block is left above the watermark; then kcompactd
/// is woken if the failure was for want of a block
/// (`crate::vm::compaction::huge_alloc_failed`).
pub fn alloc_anon_huge(handle: AnonHandle, index: u64) -> Option<PhysAddr> {
    // The allocator's lock with interrupts off; the 2 MiB of zeroing after
    // it (interrupts still off: this runs inside a fault) is of frames
    // nobody else can see yet.
    let allocated = crate::sync::without_interrupts(|| {
        mm::thp::alloc_anon_huge_folio(frame_allocator(), AllocKind::Normal, handle, index, |pa| {
            // SAFETY: `alloc_anon_huge_folio` calls this with the first of
            // the 512 frames it has just allocated, before it publishes the
            // folio: ours alone.
            unsafe { zero_frames(pa, mm::thp::HPAGE_ORDER) }
        })
    });
    let folio = match allocated {
        Ok(folio) => folio,
        Err(e) => {
            // No free 2 MiB block: kcompactd makes some for the next
            // faults (this one falls back, or compacts directly).
            crate::vm::compaction::huge_alloc_failed(mm::thp::HPAGE_ORDER, e);
            return None;
        }
    };
    crate::vm::reclaim::lru_add(folio);
    Some(folio.pfn().phys())
}

/// A zeroed raw 2 MiB block for a THP write fault, taken and zeroed with
/// no lock held and interrupts on (`crate::vm::fault`, on
/// `FaultOutcome::NeedsHugeFolio`): the zeroing is of frames nobody else
/// can see. `None` when no 2 MiB block is free; kcompactd is woken then,
/// as for [`alloc_anon_huge`]. The caller turns it into a folio under the
/// lock ([`anon_huge_from_zeroed`]) or gives it back
/// ([`free_zeroed_huge`]).
pub fn alloc_zeroed_huge() -> Option<Pfn> {
    let order = mm::thp::HPAGE_ORDER;
    match crate::sync::without_interrupts(|| frame_allocator().alloc(order, AllocKind::Normal)) {
        Ok(pfn) => {
            // SAFETY: the block was allocated just now and is not
            // published: ours alone (RAM, in the direct map).
            unsafe { zero_frames(pfn.phys(), order) };
            Some(pfn)
        }
        Err(e) => {
            crate::vm::compaction::huge_alloc_failed(order, e);
            None
        }
    }
}

/// [`alloc_anon_huge`] with the block [`alloc_zeroed_huge`] prepared: the
/// same folio (entire mapcount 1, refcount 1, on the LRU), without the
/// zeroing.
pub fn anon_huge_from_zeroed(pfn: Pfn, handle: AnonHandle, index: u64) -> PhysAddr {
    let raw = frame_allocator().raw_into_folio(pfn, mm::thp::HPAGE_ORDER);
    let folio = mm::thp::prepare_anon_huge_folio(raw, handle, index);
    crate::vm::reclaim::lru_add(folio);
    folio.pfn().phys()
}

/// Gives back a block of [`alloc_zeroed_huge`] the fault did not use.
pub fn free_zeroed_huge(pfn: Pfn) {
    crate::sync::without_interrupts(|| frame_allocator().free(pfn, mm::thp::HPAGE_ORDER));
}

/// The huge zero folio, made once at boot ([`init_huge_zero`]).
static HUGE_ZERO: spin::Once<Option<Pfn>> = spin::Once::new();

/// Makes the huge zero folio (2 MiB of zeros, kept for good). Boot CPU,
/// once, after [`init`]. Without a free 2 MiB block, read faults in huge
/// ranges map 4 KiB pages instead.
pub fn init_huge_zero() {
    HUGE_ZERO.call_once(|| {
        crate::sync::without_interrupts(|| {
            mm::thp::alloc_huge_zero_folio(frame_allocator(), |pa| {
                // SAFETY: called with the first of the 512 frames just
                // allocated, before the folio is published: ours alone.
                unsafe { zero_frames(pa, mm::thp::HPAGE_ORDER) }
            })
        })
        .ok()
        .map(|f| f.pfn())
    });
}

/// The huge zero folio's first frame, if it was made.
pub fn huge_zero() -> Option<PhysAddr> {
    HUGE_ZERO.get().copied().flatten().map(Pfn::phys)
}

/// Gives back a folio whose last reference is gone, taking it off the LRU
/// lists first (`crate::vm::reclaim`).
pub fn free_folio(folio: Folio<'_>) {
    crate::sync::without_interrupts(|| {
        if folio.test_flag(mm::page::PageFlag::Lru) {
            crate::vm::reclaim::lru_remove(folio);
        }
        frame_allocator().free_folio(folio)
    });
}

/// Drops the reference a removed mapping held on `folio` (the second step
/// of unmapping an anonymous page, after the TLB shootdown), freeing the
/// folio when it was the last.
pub fn put_anon_folio(folio: Folio<'_>) {
    if folio.put() {
        free_folio(folio);
    }
}

/// Copies the 4 KiB frame at `src` to the frame at `dst` (copy on write).
///
/// # Safety
///
/// 1. `dst` and `src` are distinct page-aligned RAM frames (so both are in
///    the direct map).
/// 2. The caller owns `dst`: nothing else reads or writes it until this
///    returns (a page just allocated and not yet mapped anywhere).
/// 3. The caller holds a reference on `src`'s folio, so it is not freed
///    and reused meanwhile, and `src` holds no Rust object (an anonymous
///    page: plain bytes). The kernel does not write it meanwhile; a user or
///    device write through a pin may race (fork copying a pinned page the
///    parent keeps writable), and then the copy holds some mix of old and
///    new bytes, as a fork during that write may.
pub unsafe fn copy_page(dst: PhysAddr, src: PhysAddr) {
    let (d, s) = (phys_to_virt(dst).as_u64() as *mut u8, phys_to_virt(src).as_u64() as *const u8);
    // SAFETY: both RAM frames mapped read-write in the direct map, `dst`
    // ours alone and `src` kept alive with no Rust object in it, distinct
    // (contract 1 to 3).
    unsafe { core::ptr::copy_nonoverlapping(s, d, PAGE_SIZE as usize) };
}
