//! Folios: a head page and its `2^order - 1` tail pages, physically
//! contiguous and naturally aligned, managed as one unit (one reference
//! count, one lock, one set of LRU and swap-cache flags, one swap entry).
//!
//! ## States and who may do what
//!
//! 1. **Unpublished** ([`UnpublishedFolio`]): just allocated
//!    ([`crate::frame::FrameAllocator::alloc_folio`]) and prepared; no other
//!    CPU can reach it (it is in no page table, LRU list or swap cache). Only
//!    here may its flags be written non-atomically
//!    ([`UnpublishedFolio::nonatomic_set_flag`]), which is cheaper.
//! 2. **Published** ([`Folio`], after [`UnpublishedFolio::publish`]): other
//!    CPUs may find it at any moment (a PFN walker, reclaim, the fault
//!    handler). Every flag change is an atomic read-modify-write; [`Folio`]
//!    has no public non-atomic method (seed 003: a plain write of
//!    "swap-backed" on a folio already in the swap cache and on the LRU
//!    wiped out a concurrent atomic clear of its LRU bit). The one
//!    crate-private exception, `Folio::bug_replay_nonatomic_set_flags`,
//!    exists only to put that mistake back when the bug-replay switch
//!    [`crate::bugs::Bug::NonatomicFolioFlags`] is on.
//! 3. **Freed**: the last [`Folio::put`] returned `true`; the owner hands it
//!    back with [`crate::frame::FrameAllocator::free_folio`].
//!
//! ## Fields (on the head unless said otherwise; layout in [`crate::page`])
//!
//! - order: bits 56..63 of the head's flags word; [`PageFlag::Head`] on the
//!   head, [`PageFlag::Tail`] on each tail, whose `mapping` holds the head's
//!   PFN (that is how [`folio_of`] finds the head from any page).
//! - refcount: references. A small folio counts a `FOLL_PIN` pin as
//!   [`PIN_BIAS`] references; a large folio counts a pin as one reference
//!   plus one in `pincount` ([`Folio::maybe_pinned`]).
//! - entire mapcount: PMD mappings; each page's own mapcount: its PTE
//!   mappings (both start at 0 for "unmapped").
//! - swap: the folio's first swap entry, raw, kept **once** on the head;
//!   page `i`'s entry is `swap + i` (mm-reference §5). Tail pages keep
//!   nothing: seed 000 is what happened when tails kept copies and one path
//!   updated only the head. The raw encoding must keep the slot offset in
//!   the low bits, so `raw + i` is slot `offset + i` of the same area.
//!
//! ## Locks
//!
//! The folio lock is the [`PageFlag::Locked`] bit: [`Folio::try_lock`] is an
//! atomic test-and-set (acquire), [`Folio::unlock`] an atomic clear
//! (release). [`Folio::lock`] spins for now; it becomes a sleeping wait when
//! the scheduler can park a task. Setting the swap entry or the mapping of
//! a published folio requires the folio lock (asserted).
//!
//! [`folio_of`] reads a snapshot: the answer stays true only while the
//! caller holds a reference (or otherwise stops the folio from being freed
//! or split). A speculative caller does [`Folio::try_get`] and then checks
//! `folio_of` again.

use crate::addr::{Pfn, PhysAddr};
use crate::page::{Memmap, Page, PageFlag, NO_PFN};
use crate::pgtable::format::SwapEntry;
use crate::sync::{fence, Ordering};
use core::fmt;

/// The anonymous memory of one address space and the fork children that
/// share its pages: what an anonymous folio's mapping names. It is the PFN
/// of the space's root table ([`AnonHandle::of_root`]), so never 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AnonHandle(u64);

impl AnonHandle {
    /// The handle of the space whose root table is at `root`.
    ///
    /// # Panics
    /// When `root` is in frame 0, which would read as no mapping (frame 0
    /// is never a page-table root: firmware owns it on both arches, and the
    /// simulated memory of the host tests starts far above it).
    pub fn of_root(root: PhysAddr) -> AnonHandle {
        assert!(root.pfn() != Pfn::new(0), "AnonHandle::of_root: a root in frame 0");
        AnonHandle(root.pfn().as_u64())
    }
    /// The number stored in a page descriptor.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// What a folio belongs to, as its head's `mapping` word says.
///
/// Stored as one word: 0 for [`FolioMapping::None`], all ones for
/// [`FolioMapping::HugeZero`] (no root table is at the last frame), the
/// handle for [`FolioMapping::Anon`]. Shared-memory objects, when they
/// come, get a tag bit of their own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FolioMapping {
    /// Nothing: a free or unpublished folio.
    None,
    /// The huge zero folio (`crate::thp`), which belongs to every space
    /// and is counted by none.
    HugeZero,
    /// Anonymous memory of this space and its fork family.
    Anon(AnonHandle),
}

impl FolioMapping {
    /// The mapping a page descriptor's word stands for.
    pub const fn from_raw(raw: u64) -> FolioMapping {
        match raw {
            0 => FolioMapping::None,
            u64::MAX => FolioMapping::HugeZero,
            handle => FolioMapping::Anon(AnonHandle(handle)),
        }
    }
    /// The word a page descriptor stores.
    pub const fn to_raw(self) -> u64 {
        match self {
            FolioMapping::None => 0,
            FolioMapping::HugeZero => u64::MAX,
            FolioMapping::Anon(handle) => handle.0,
        }
    }
}

/// References one `FOLL_PIN` pin adds to a small folio's refcount (Linux's
/// `GUP_PIN_COUNTING_BIAS`). A refcount at or above it means "may be
/// pinned": a false positive only when a folio has 1024 plain references.
pub const PIN_BIAS: i32 = 1024;

/// A shared view of a published folio: the memmap and the head's PFN. It
/// holds no reference by itself; take one with [`Folio::get`] or
/// [`Folio::try_get`].
#[derive(Clone, Copy)]
pub struct Folio<'a> {
    memmap: &'a Memmap,
    head: &'a Page,
    pfn: u64,
}

/// The folio that contains frame `pfn`: itself when it is a folio head, its
/// head when it is a tail page. `None` when `pfn` is outside the memmap or
/// the frame is not part of a folio (free, reserved, a raw frame).
#[inline]
pub fn folio_of(memmap: &Memmap, pfn: Pfn) -> Option<Folio<'_>> {
    let page = memmap.get(pfn)?;
    let pfn = pfn.as_u64();
    let flags = page.flags();
    let head_pfn = if flags & PageFlag::Tail.mask() != 0 {
        // `prep` wrote the head's PFN before `Tail`, and `publish` ordered
        // both before the folio became reachable.
        page.mapping.load(Ordering::Acquire)
    } else if flags & PageFlag::Head.mask() != 0 {
        // A head covers itself: no second lookup (fork asks this once a
        // page, for folios that are nearly all heads).
        return Some(Folio { memmap, head: page, pfn });
    } else {
        return None;
    };
    let head = memmap.get_raw(head_pfn)?;
    // A stale tail (its folio split or freed meanwhile) may name a head
    // that no longer covers it.
    let covers =
        head.test_flag(PageFlag::Head) && pfn.checked_sub(head_pfn).is_some_and(|d| d < 1u64 << head.order());
    covers.then_some(Folio { memmap, head, pfn: head_pfn })
}

/// The folio that holds all of the `nr` pages from `frame`, if one does.
///
/// `mm` has no `unsafe`, so the kernel's side of a trait that takes a raw
/// frame from `mm` (a disk transfer, a page copy) is a safe method: it
/// checks with this that it is aimed at a folio's pages, never at a page
/// table, the heap or a stack (those are raw frames, not folios).
pub fn folio_covering(memmap: &Memmap, frame: PhysAddr, nr: usize) -> Option<Folio<'_>> {
    if nr == 0 || !frame.is_aligned(crate::addr::PAGE_SIZE) {
        return None;
    }
    let folio = folio_of(memmap, frame.pfn())?;
    let end = frame.pfn().since(folio.pfn()).checked_add(nr as u64)?;
    (end <= folio.nr_pages() as u64).then_some(folio)
}

impl<'a> Folio<'a> {
    /// The folio order: it has `2^order` pages.
    #[inline]
    pub fn order(&self) -> u8 {
        self.head.order()
    }

    /// The number of pages, `2^order`.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        1 << self.order()
    }

    /// True for a folio of more than one page.
    #[inline]
    pub fn is_large(&self) -> bool {
        self.order() > 0
    }

    /// The head's PFN.
    pub fn pfn(&self) -> Pfn {
        Pfn::new(self.pfn)
    }

    /// The physical address of the head's frame (where the folio starts).
    pub fn phys(&self) -> PhysAddr {
        self.pfn().phys()
    }

    /// True when frame `pfn` is one of the folio's.
    pub fn contains_pfn(&self, pfn: Pfn) -> bool {
        pfn.as_u64().checked_sub(self.pfn).is_some_and(|i| i < self.nr_pages() as u64)
    }

    /// Which page of the folio frame `pfn` is.
    ///
    /// # Panics
    /// When the frame is not one of the folio's.
    #[inline(always)]
    pub fn page_index_of(&self, pfn: Pfn) -> usize {
        let i = pfn.since(self.pfn());
        assert!(
            i < self.nr_pages() as u64,
            "Folio::page_index_of: {pfn:?} is not in the folio at {:#x}",
            self.pfn
        );
        i as usize
    }

    /// The descriptor of page `i` of the folio (0 is the head).
    ///
    /// # Panics
    ///
    /// When `i` is not below [`Folio::nr_pages`] (a kernel bug).
    #[inline(always)]
    pub fn page(&self, i: usize) -> &'a Page {
        if i == 0 {
            return self.head;
        }
        assert!(i < self.nr_pages(), "Folio::page: page {i} of a folio of {}", self.nr_pages());
        self.memmap.get_raw(self.pfn + i as u64).expect("Folio::page: folio runs past the memmap")
    }

    /// True when `flag` is set on the head.
    #[inline]
    pub fn test_flag(&self, flag: PageFlag) -> bool {
        self.head.test_flag(flag)
    }

    /// Sets `flag` on the head, atomically. Structural flags (head, tail,
    /// buddy, reserved) are the allocator's business and refused.
    pub fn set_flag(&self, flag: PageFlag) {
        debug_assert!(!flag.is_structural(), "Folio::set_flag: {flag:?} is structural");
        self.head.set_flag(flag);
    }

    /// Clears `flag` on the head, atomically.
    #[inline]
    pub fn clear_flag(&self, flag: PageFlag) {
        debug_assert!(!flag.is_structural(), "Folio::clear_flag: {flag:?} is structural");
        self.head.clear_flag(flag);
    }

    /// Sets `flag` on the head, atomically; returns whether it was set.
    pub fn test_and_set_flag(&self, flag: PageFlag) -> bool {
        debug_assert!(!flag.is_structural(), "Folio::test_and_set_flag: {flag:?} is structural");
        self.head.test_and_set_flag(flag)
    }

    /// Clears `flag` on the head, atomically; returns whether it was set.
    pub fn test_and_clear_flag(&self, flag: PageFlag) -> bool {
        debug_assert!(!flag.is_structural(), "Folio::test_and_clear_flag: {flag:?} is structural");
        self.head.test_and_clear_flag(flag)
    }

    /// The reference count.
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.head.refcount()
    }

    /// Takes one more reference. The caller already holds one (or a lock
    /// that keeps the folio alive); use [`Folio::try_get`] otherwise.
    #[inline]
    pub fn get(&self) {
        let old = self.head.refcount.fetch_add(1, Ordering::Relaxed);
        debug_assert!(old > 0, "Folio::get: refcount was {old} (use try_get for speculative references)");
    }

    /// Takes a reference unless the count is 0 (the folio is being freed or
    /// is free): the speculative reference of a caller that found the folio
    /// without holding one. Returns whether it got it.
    pub fn try_get(&self) -> bool {
        let mut v = self.head.refcount.load(Ordering::Relaxed);
        while v > 0 {
            match self.head.refcount.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Drops one reference; `true` when it was the last, and the caller
    /// must then free the folio ([`crate::frame::FrameAllocator::free_folio`]).
    ///
    /// # Panics
    ///
    /// When the count was already 0 (a kernel bug: a reference dropped twice).
    pub fn put(&self) -> bool {
        let old = self.head.refcount.fetch_sub(1, Ordering::Release);
        assert!(old > 0, "Folio::put: refcount underflow on pfn {:#x}", self.pfn);
        if old == 1 {
            // Everything other CPUs did before their last put happens
            // before whatever the caller now does to free the folio.
            fence(Ordering::Acquire);
            return true;
        }
        false
    }

    /// Adds a `FOLL_PIN` pin: [`PIN_BIAS`] references on a small folio, one
    /// reference and one pin count on a large one. The caller holds a
    /// reference.
    pub fn pin(&self) {
        if self.is_large() {
            self.get();
            self.head.pincount.fetch_add(1, Ordering::AcqRel);
        } else {
            let old = self.head.refcount.fetch_add(PIN_BIAS, Ordering::AcqRel);
            debug_assert!(old > 0, "Folio::pin: refcount was {old}");
        }
    }

    /// Drops a pin taken by [`Folio::pin`]; `true` when that dropped the
    /// last reference (as [`Folio::put`]).
    ///
    /// # Panics
    ///
    /// When the folio has no pin to drop (a kernel bug).
    pub fn unpin(&self) -> bool {
        if self.is_large() {
            let old = self.head.pincount.fetch_sub(1, Ordering::AcqRel);
            assert!(old > 0, "Folio::unpin: pincount underflow on pfn {:#x}", self.pfn);
            self.put()
        } else {
            let old = self.head.refcount.fetch_sub(PIN_BIAS, Ordering::Release);
            assert!(old >= PIN_BIAS, "Folio::unpin: no pin on pfn {:#x}", self.pfn);
            if old == PIN_BIAS {
                fence(Ordering::Acquire);
                return true;
            }
            false
        }
    }

    /// `FOLL_PIN` pins of a large folio (always 0 for a small one, whose
    /// pins live in its refcount).
    #[inline]
    pub fn pincount(&self) -> i32 {
        self.head.pincount.load(Ordering::Acquire)
    }

    /// True when the folio may be pinned for DMA or direct I/O: a large
    /// folio with pins, or a small folio whose refcount reaches
    /// [`PIN_BIAS`]. Unmapping for swap or migration and fork consult it
    /// (mm-reference §8); "maybe" because 1024 plain references look like a
    /// pin too, which only costs a copy or a skipped reclaim.
    #[inline]
    pub fn maybe_pinned(&self) -> bool {
        if self.is_large() {
            self.pincount() > 0
        } else {
            self.refcount() >= PIN_BIAS
        }
    }

    /// PMD mappings of the whole folio.
    pub fn entire_mapcount(&self) -> i32 {
        self.head.entire_mapcount.load(Ordering::Acquire)
    }

    /// PTE mappings of page `i`.
    pub fn page_mapcount(&self, i: usize) -> i32 {
        self.page(i).mapcount()
    }

    /// All mappings of the folio, a PMD mapping counted once: the entire
    /// mapcount plus every page's PTE mappings. Not a snapshot of one moment
    /// when mappings change while it adds up.
    pub fn total_mapcount(&self) -> i32 {
        (0..self.nr_pages()).map(|i| self.page_mapcount(i)).sum::<i32>() + self.entire_mapcount()
    }

    /// Adds `delta` to the entire (PMD) mapcount; returns the new value.
    #[inline]
    pub fn add_entire_mapcount(&self, delta: i32) -> i32 {
        let new = self.head.entire_mapcount.fetch_add(delta, Ordering::AcqRel) + delta;
        debug_assert!(new >= 0, "Folio::add_entire_mapcount: negative on pfn {:#x}", self.pfn);
        new
    }

    /// Adds `delta` to page `i`'s PTE mapcount; returns the new value.
    #[inline(always)]
    pub fn add_page_mapcount(&self, i: usize, delta: i32) -> i32 {
        let new = self.page(i).mapcount.fetch_add(delta, Ordering::AcqRel) + delta;
        debug_assert!(new >= 0, "Folio::add_page_mapcount: negative on page {i} of pfn {:#x}", self.pfn);
        new
    }

    /// What the folio belongs to.
    pub fn mapping(&self) -> FolioMapping {
        FolioMapping::from_raw(self.head.mapping.load(Ordering::Acquire))
    }

    /// The address space (fork family) whose anonymous memory the folio
    /// is, if it is anonymous.
    pub fn anon_handle(&self) -> Option<AnonHandle> {
        match self.mapping() {
            FolioMapping::Anon(handle) => Some(handle),
            FolioMapping::None | FolioMapping::HugeZero => None,
        }
    }

    /// The page index of the folio's first page in its mapping.
    pub fn index(&self) -> u64 {
        self.head.index.load(Ordering::Acquire)
    }

    /// Sets what the folio belongs to and its first page's index there.
    /// Requires the folio lock.
    pub fn set_mapping(&self, mapping: FolioMapping, index: u64) {
        debug_assert!(self.test_flag(PageFlag::Locked), "Folio::set_mapping: folio not locked");
        self.head.index.store(index, Ordering::Relaxed);
        self.head.mapping.store(mapping.to_raw(), Ordering::Release);
    }

    /// The folio's first swap entry, if it has one (stored as
    /// [`SwapEntry::to_raw`] on the head; 0 is none).
    pub fn swap_entry(&self) -> Option<SwapEntry> {
        match self.head.swap.load(Ordering::Acquire) {
            0 => None,
            raw => Some(SwapEntry::from_raw(raw).expect("Folio::swap_entry: the head holds a bad entry")),
        }
    }

    /// Page `i`'s swap entry: the slot `i` after the folio's first. Tail
    /// pages keep no entry of their own (seed 000).
    pub fn page_swap_entry(&self, i: usize) -> Option<SwapEntry> {
        assert!(i < self.nr_pages(), "Folio::page_swap_entry: page {i} of {}", self.nr_pages());
        self.swap_entry().map(|first| first.plus(i as u64))
    }

    /// Records the folio's first swap entry. Requires the folio lock (the
    /// swap cache adds and deletes under it).
    pub fn set_swap_entry(&self, entry: SwapEntry) {
        debug_assert!(self.test_flag(PageFlag::Locked), "Folio::set_swap_entry: folio not locked");
        self.head.swap.store(entry.to_raw(), Ordering::Release);
    }

    /// Forgets the folio's swap entry. Requires the folio lock.
    pub fn clear_swap_entry(&self) {
        debug_assert!(self.test_flag(PageFlag::Locked), "Folio::clear_swap_entry: folio not locked");
        self.head.swap.store(0, Ordering::Release);
    }

    /// Takes the folio lock, spinning while another holder has it.
    pub fn lock(&self) {
        while !self.try_lock() {
            while self.test_flag(PageFlag::Locked) {
                core::hint::spin_loop();
            }
        }
    }

    /// Takes the folio lock if it is free; returns whether it did.
    pub fn try_lock(&self) -> bool {
        !self.head.test_and_set_flag(PageFlag::Locked)
    }

    /// Releases the folio lock.
    ///
    /// # Panics
    ///
    /// When the folio was not locked (a kernel bug).
    pub fn unlock(&self) {
        assert!(
            self.head.test_and_clear_flag(PageFlag::Locked),
            "Folio::unlock: pfn {:#x} not locked",
            self.pfn
        );
    }

    /// True when someone holds the folio lock.
    pub fn is_locked(&self) -> bool {
        self.test_flag(PageFlag::Locked)
    }

    /// Freezes the refcount: replaces exactly `expected` references with 0,
    /// atomically, so that no [`Folio::try_get`] can succeed until the
    /// owner stores a count again. Fails (and changes nothing) when the
    /// count is not `expected`: somebody holds a reference the caller did
    /// not account for (a `FOLL_GET` or a pin), and the folio must not be
    /// split or freed under them. mm-reference §4, "the reference-count
    /// freeze rule".
    pub fn try_freeze(&self, expected: i32) -> bool {
        debug_assert!(expected > 0, "Folio::try_freeze: expected {expected} references");
        self.head.refcount.compare_exchange(expected, 0, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Splits this large folio, whose refcount the caller froze
    /// ([`Folio::try_freeze`]) and whose lock it holds, into `nr_pages`
    /// order-0 folios. Page `i` becomes a folio head with the folio-wide
    /// flags of the old head (`SwapBacked`, `Dirty`, `Uptodate`,
    /// `Referenced`, `Active`, `SwapCache`), its own `AnonExclusive`, the
    /// mapping, the index `index + i`, the swap entry `swap + i` (when the
    /// folio had one; with [`crate::bugs::Bug::SwapcacheTailEntries`] on,
    /// the page's own record instead, see [`Folio::bug_replay_record_tail_entries`]),
    /// its own PTE mapcount, and `refs(i)` references (`refs` is
    /// called while the folio is still whole, so it may read its pages'
    /// counts). The old head keeps the lock; the new folios are unlocked.
    ///
    /// Order of the stores, for a CPU that looks at a page meanwhile
    /// without a reference ([`folio_of`] then [`Folio::try_get`]): each
    /// page's flags first (it stops being a `Tail`), then its mapping,
    /// index and swap entry, and last its refcount with a release store;
    /// until then its refcount is 0 and any `try_get` fails.
    ///
    /// # Panics
    ///
    /// When the folio is small, mapped by a PMD, pinned, unfrozen or
    /// unlocked (kernel bugs: the caller checks first).
    pub(crate) fn split_frozen(&self, refs: impl Fn(usize) -> i32) {
        let pfn = self.pfn;
        assert!(self.is_large(), "split_frozen: pfn {pfn:#x} is already order 0");
        assert_eq!(self.refcount(), 0, "split_frozen: pfn {pfn:#x} is not frozen");
        assert_eq!(self.entire_mapcount(), 0, "split_frozen: pfn {pfn:#x} is mapped by a PMD");
        assert_eq!(self.pincount(), 0, "split_frozen: pfn {pfn:#x} is pinned");
        assert!(self.is_locked(), "split_frozen: pfn {pfn:#x} is not locked");
        let nr = self.nr_pages();
        const FOLIO_WIDE: [PageFlag; 6] = [
            PageFlag::SwapBacked,
            PageFlag::Dirty,
            PageFlag::Uptodate,
            PageFlag::Referenced,
            PageFlag::Active,
            PageFlag::SwapCache,
        ];
        // Bug replay (seed 000): a swap-cache folio's tails keep the
        // records `bug_replay_record_tail_entries` gave them.
        let per_page_records = crate::bugs::enabled(crate::bugs::Bug::SwapcacheTailEntries)
            && self.test_flag(PageFlag::SwapCache);
        let folio_wide = FOLIO_WIDE.iter().filter(|f| self.test_flag(**f)).fold(0u64, |m, f| m | f.mask());
        let (mapping, index, swap) =
            (self.mapping().to_raw(), self.index(), self.swap_entry().map(SwapEntry::to_raw));
        for i in 1..nr {
            let page = self.page(i);
            page.update_flags(|old| {
                (old & PageFlag::AnonExclusive.mask()) | folio_wide | PageFlag::Head.mask()
            });
            page.index.store(index + i as u64, Ordering::Relaxed);
            if !per_page_records {
                page.swap.store(swap.map_or(0, |s| s + i as u64), Ordering::Relaxed);
            }
            // Bug replay (seed 000): the tail keeps its own record, which
            // a migration in between did not carry over.
            page.mapping.store(mapping, Ordering::Relaxed);
        }
        // `refs` and `self.page(i)` are used while the head still has its
        // order (both may look at page `i` of this folio); each tail is
        // already a folio of its own, so its count may be published now.
        let head_refs = refs(0);
        debug_assert!(head_refs >= 0, "split_frozen: page 0 gets {head_refs} references");
        for i in (1..nr).rev() {
            let r = refs(i);
            debug_assert!(r >= 0, "split_frozen: page {i} gets {r} references");
            self.page(i).refcount.store(r, Ordering::Release);
        }
        // The head last: until its order is 0 and its count stored, a
        // speculative `try_get` on it fails.
        self.head.set_order(0);
        self.head.refcount.store(head_refs, Ordering::Release);
    }

    pub(crate) fn memmap(&self) -> &'a Memmap {
        self.memmap
    }

    /// **Bug replay only** ([`crate::bugs::Bug::SwapcacheTailEntries`],
    /// seed 000): gives every tail page a record of its own swap entry
    /// (the folio's first plus `i`), the per-page design Linux had until
    /// 6.6; [`Folio::split_frozen`] then hands each tail its own record
    /// instead of computing it from the head's. Only the switch's path of
    /// `crate::swap::cache::add_to_swap` calls it. Migration
    /// (`crate::migrate`) records the head's entry only, as this kernel's
    /// design has one entry per folio: with the per-page records that is
    /// the historical mistake, and the tails of a migrated folio carry no
    /// entry after a split. Requires the folio lock.
    pub(crate) fn bug_replay_record_tail_entries(&self) {
        debug_assert!(self.test_flag(PageFlag::Locked), "bug_replay_record_tail_entries: folio not locked");
        let Some(first) = self.swap_entry() else { return };
        for i in 1..self.nr_pages() {
            self.page(i).swap.store(first.plus(i as u64).to_raw(), Ordering::Release);
        }
    }

    /// **Bug replay only** ([`crate::bugs::Bug::NonatomicFolioFlags`], seed
    /// 003): sets the flags of `mask` on the head the wrong way, with a
    /// plain load of the flags word, a computation of
    /// [`BUG_REPLAY_WINDOW_STEPS`] steps, and a plain store of the result.
    /// On a published folio that is the historical mistake: whatever
    /// another CPU sets or clears atomically between the load and the
    /// store is undone. The computation widens that window a little (a few
    /// microseconds under TCG), as a slower CPU or a cache miss would; it is
    /// `core::hint::black_box` steps rather than spin-loop hints, whose
    /// cost differs a thousandfold between the arches under TCG. Nothing
    /// but the replay path of `crate::anon` may call it.
    pub(crate) fn bug_replay_nonatomic_set_flags(&self, mask: u64) {
        let mut word = self.head.flags();
        for _ in 0..BUG_REPLAY_WINDOW_STEPS {
            word = core::hint::black_box(word);
        }
        self.head.nonatomic_store_flags(word | mask);
    }
}

/// Steps between the load and the store of
/// [`Folio::bug_replay_nonatomic_set_flags`] (the replay's window; the
/// correct code has no such loop).
const BUG_REPLAY_WINDOW_STEPS: u32 = 512;

impl PartialEq for Folio<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.pfn == other.pfn && core::ptr::eq(self.memmap, other.memmap)
    }
}
impl Eq for Folio<'_> {}

impl fmt::Debug for Folio<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Folio {{ pfn: {:#x}, head: {:?} }}", self.pfn, self.head)
    }
}

/// A folio just allocated: only its owner can see it, so its flags may be
/// written with plain loads and stores. Obtained from the frame allocator
/// only ([`crate::frame::FrameAllocator::alloc_folio`]); [`publish`] turns
/// it into a shared [`Folio`] and there is no way back.
///
/// [`publish`]: UnpublishedFolio::publish
#[must_use = "an unpublished folio dropped is a leak: publish it, then put and free it"]
pub struct UnpublishedFolio<'a> {
    memmap: &'a Memmap,
    head: &'a Page,
    pfn: u64,
}

impl<'a> UnpublishedFolio<'a> {
    /// Turns the frames `[pfn, pfn + 2^order)`, which the caller got from
    /// the allocator and nobody else can see, into a folio: the head gets
    /// `Head` and the order; each tail gets `Tail` and the head's PFN; every
    /// count, the mapping, index and swap entry are 0. The refcount stays
    /// *frozen at 0* until [`UnpublishedFolio::publish`]: a CPU that finds
    /// the frame through the memmap (a scanner, a speculative lookup) fails
    /// [`Folio::try_get`] and so can neither lock it nor change its flags
    /// while the owner still uses the non-atomic setters.
    ///
    /// # Panics
    ///
    /// When the block is misaligned or runs past the memmap (a kernel bug).
    pub(crate) fn prep(memmap: &'a Memmap, pfn: Pfn, order: u8) -> UnpublishedFolio<'a> {
        let pfn = pfn.as_u64();
        let nr = 1u64 << order;
        assert!(pfn.is_multiple_of(nr), "UnpublishedFolio::prep: pfn {pfn:#x} not aligned to order {order}");
        assert!(
            memmap.contains_raw(pfn) && memmap.contains_raw(pfn + nr - 1),
            "UnpublishedFolio::prep: block past the memmap"
        );
        for tail_pfn in pfn + 1..pfn + nr {
            let tail = memmap.get_raw(tail_pfn).expect("checked above");
            tail.nonatomic_reset(0);
            tail.mapping.store(pfn, Ordering::Relaxed);
            tail.nonatomic_store_flags(PageFlag::Tail.mask());
        }
        let head = memmap.get_raw(pfn).expect("checked above");
        head.nonatomic_reset(PageFlag::Head.mask() | (order as u64) << crate::page::ORDER_SHIFT);
        head.list_next.store(NO_PFN, Ordering::Relaxed);
        head.list_prev.store(NO_PFN, Ordering::Relaxed);
        head.refcount.store(0, Ordering::Relaxed);
        UnpublishedFolio { memmap, head, pfn }
    }

    /// The head's PFN.
    pub fn pfn(&self) -> Pfn {
        Pfn::new(self.pfn)
    }

    /// The physical address of the head's frame (where the folio starts).
    pub fn phys(&self) -> PhysAddr {
        self.pfn().phys()
    }

    /// The folio order.
    #[inline]
    pub fn order(&self) -> u8 {
        self.head.order()
    }

    /// The number of pages.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        1 << self.order()
    }

    /// The descriptor of page `i` (for per-page atomic flags such as
    /// [`PageFlag::AnonExclusive`]).
    #[inline]
    pub fn page(&self, i: usize) -> &'a Page {
        assert!(i < self.nr_pages(), "UnpublishedFolio::page: page {i} of {}", self.nr_pages());
        self.memmap.get_raw(self.pfn + i as u64).expect("prep checked the block")
    }

    /// True when `flag` is set on the head.
    #[inline]
    pub fn test_flag(&self, flag: PageFlag) -> bool {
        self.head.test_flag(flag)
    }

    /// Sets `flag` on the head with a plain load and store of the flags
    /// word: correct only because nobody else can see this folio yet.
    pub fn nonatomic_set_flag(&mut self, flag: PageFlag) {
        debug_assert!(!flag.is_structural(), "nonatomic_set_flag: {flag:?} is structural");
        self.head.nonatomic_store_flags(self.head.flags() | flag.mask());
    }

    /// Clears `flag` on the head with a plain load and store (see
    /// [`UnpublishedFolio::nonatomic_set_flag`]).
    pub fn nonatomic_clear_flag(&mut self, flag: PageFlag) {
        debug_assert!(!flag.is_structural(), "nonatomic_clear_flag: {flag:?} is structural");
        self.head.nonatomic_store_flags(self.head.flags() & !flag.mask());
    }

    /// Sets what the folio belongs to and its first page's index there (no
    /// lock needed: unpublished).
    pub fn set_mapping(&mut self, mapping: FolioMapping, index: u64) {
        self.head.index.store(index, Ordering::Relaxed);
        self.head.mapping.store(mapping.to_raw(), Ordering::Relaxed);
    }

    /// Sets page `i`'s PTE mapcount (for a folio that is mapped as soon as
    /// it is published, such as a new anonymous page: the PTE is written
    /// after [`UnpublishedFolio::publish`], whose release store orders this
    /// store before it).
    pub fn set_page_mapcount(&mut self, i: usize, count: i32) {
        debug_assert!(count >= 0, "UnpublishedFolio::set_page_mapcount: negative count {count}");
        self.page(i).mapcount.store(count, Ordering::Relaxed);
    }

    /// Sets the entire (PMD) mapcount (for a huge folio mapped by one PMD
    /// as soon as it is published; see [`UnpublishedFolio::set_page_mapcount`]).
    pub fn set_entire_mapcount(&mut self, count: i32) {
        debug_assert!(count >= 0, "UnpublishedFolio::set_entire_mapcount: negative count {count}");
        self.head.entire_mapcount.store(count, Ordering::Relaxed);
    }

    /// Sets `flag` on page `i` with a plain store (per-page flags such as
    /// [`PageFlag::AnonExclusive`]; nobody else can see the folio yet).
    pub fn nonatomic_set_page_flag(&mut self, i: usize, flag: PageFlag) {
        debug_assert!(!flag.is_structural(), "nonatomic_set_page_flag: {flag:?} is structural");
        let page = self.page(i);
        page.nonatomic_store_flags(page.flags() | flag.mask());
    }

    /// The reference count: 0 (frozen) until published.
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.head.refcount()
    }

    /// Undoes [`UnpublishedFolio::prep`] for a folio its maker did not
    /// use (a compaction destination whose migration failed): every
    /// descriptor back to zero, the frames a raw block again, returned as
    /// its first PFN and order for the allocator. Plain stores, as in
    /// `prep`: nobody else can take a reference (the count is frozen at 0).
    pub(crate) fn into_raw_block(self) -> (Pfn, u8) {
        let order = self.order();
        debug_assert_eq!(self.refcount(), 0, "into_raw_block: pfn {:#x} has references", self.pfn);
        // Tails first, then the head, whose order says how many there are.
        for pfn in (self.pfn..self.pfn + (1u64 << order)).rev() {
            self.memmap.get_raw(pfn).expect("prep checked the block").nonatomic_reset(0);
        }
        (Pfn::new(self.pfn), order)
    }

    /// Makes the folio shareable, holding the caller's one reference. The
    /// release store of the refcount orders every plain store made while it
    /// was unpublished before any successful `try_get` (which acquires), and
    /// before the store that lets another CPU find it (a PTE, a list link, a
    /// swap-cache slot), which that CPU reads with acquire (or under the
    /// lock that published it).
    pub fn publish(self) -> Folio<'a> {
        self.head.refcount.store(1, Ordering::Release);
        Folio { memmap: self.memmap, head: self.head, pfn: self.pfn }
    }
}

impl fmt::Debug for UnpublishedFolio<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnpublishedFolio {{ pfn: {:#x}, head: {:?} }}", self.pfn, self.head)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;
    use crate::pgtable::format::SwapType;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::thread;
    use std::vec::Vec;

    /// A memmap whose frames look as the allocator leaves them: not
    /// reserved, all fields 0.
    fn memmap(base: u64, len: usize) -> &'static Memmap {
        let mm = Memmap::new_leaked(Pfn::new(base), len);
        for p in mm.pages() {
            p.nonatomic_reset(0);
        }
        mm
    }

    #[test]
    fn prep_order_0() {
        let mm = memmap(0x100, 4);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0x101), 0);
        assert_eq!((f.pfn(), f.order(), f.nr_pages(), f.refcount()), (Pfn::new(0x101), 0, 1, 0));
        assert!(f.test_flag(PageFlag::Head));
        let f = f.publish();
        assert!(!f.is_large() && !f.test_flag(PageFlag::Tail));
        assert_eq!((f.entire_mapcount(), f.total_mapcount(), f.pincount()), (0, 0, 0));
        assert_eq!(f.swap_entry(), None);
        assert_eq!(folio_of(mm, Pfn::new(0x101)), Some(f));
        // Neighbours are raw frames, not folios.
        assert_eq!(folio_of(mm, Pfn::new(0x100)), None);
        assert_eq!(folio_of(mm, Pfn::new(0x102)), None);
        assert_eq!(folio_of(mm, Pfn::new(0x99)), None);
    }

    #[test]
    fn prep_order_9_and_folio_of_a_tail() {
        // A base that is not 512-aligned: the folio is aligned on absolute PFNs.
        let mm = memmap(0x7f00, 1024);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0x8000), 9).publish();
        assert_eq!((f.order(), f.nr_pages(), f.refcount()), (9, 512, 1));
        assert!(f.test_flag(PageFlag::Head) && !f.test_flag(PageFlag::Tail));
        for i in 1..512 {
            let tail = f.page(i);
            assert_eq!(tail.flags(), PageFlag::Tail.mask(), "tail {i}");
            assert_eq!(tail.refcount(), 0);
            assert_eq!(tail.mapping.load(Ordering::Relaxed), 0x8000);
            assert_eq!(tail.swap.load(Ordering::Relaxed), 0);
            assert_eq!(folio_of(mm, Pfn::new(0x8000 + i as u64)), Some(f));
        }
        assert_eq!(folio_of(mm, Pfn::new(0x8000 + 511)).unwrap().pfn(), Pfn::new(0x8000));
        assert_eq!(folio_of(mm, Pfn::new(0x8200)), None);
    }

    #[test]
    fn folio_covering_takes_only_pages_of_one_folio() {
        let mm = memmap(0x7e00, 1040);
        let big = UnpublishedFolio::prep(mm, Pfn::new(0x8000), 9).publish();
        let small = UnpublishedFolio::prep(mm, Pfn::new(0x8200), 0).publish();
        let at = |pfn: u64| PhysAddr::new(pfn << 12);
        assert_eq!(folio_covering(mm, at(0x8000), 512), Some(big));
        assert_eq!(folio_covering(mm, at(0x8100), 256), Some(big));
        assert_eq!(folio_covering(mm, at(0x8200), 1), Some(small));
        // Past the folio's end (into the next folio), none, misaligned,
        // a raw frame, outside the memmap: refused.
        assert_eq!(folio_covering(mm, at(0x81ff), 2), None);
        assert_eq!(folio_covering(mm, at(0x8000), 0), None);
        assert_eq!(folio_covering(mm, PhysAddr::new((0x8000 << 12) + 8), 1), None);
        assert_eq!(folio_covering(mm, at(0x7fff), 1), None);
        assert_eq!(folio_covering(mm, at(0x8201), 1), None);
        assert_eq!(folio_covering(mm, at(0x100), 1), None);
        assert_eq!(folio_covering(mm, at(0x8000), usize::MAX), None);
    }

    #[test]
    #[should_panic(expected = "not aligned to order 9")]
    fn prep_refuses_a_misaligned_block() {
        let mm = memmap(0, 1024);
        let _ = UnpublishedFolio::prep(mm, Pfn::new(0x100), 9);
    }

    #[test]
    fn swap_entry_of_page_i_is_head_plus_i() {
        let mm = memmap(0, 512);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 9).publish();
        assert_eq!(f.page_swap_entry(3), None);
        f.lock();
        let first = SwapEntry::new(SwapType::nth(2), 0x200).unwrap();
        f.set_swap_entry(first);
        f.unlock();
        assert_eq!(f.swap_entry(), Some(first));
        for i in [0, 1, 100, 511] {
            assert_eq!(
                f.page_swap_entry(i),
                Some(SwapEntry::new(SwapType::nth(2), 0x200 + i as u64).unwrap())
            );
            // The entry lives once, on the head.
            if i > 0 {
                assert_eq!(f.page(i).swap.load(Ordering::Relaxed), 0);
            }
        }
        f.lock();
        f.clear_swap_entry();
        f.unlock();
        assert_eq!(f.page_swap_entry(5), None);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "set_swap_entry: folio not locked")]
    fn swap_entry_needs_the_lock() {
        let mm = memmap(0, 1);
        UnpublishedFolio::prep(mm, Pfn::new(0), 0)
            .publish()
            .set_swap_entry(SwapEntry::new(SwapType::nth(0), 7).unwrap());
    }

    #[test]
    fn lock_try_lock_unlock() {
        let mm = memmap(0, 4);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 2).publish();
        assert!(f.try_lock());
        assert!(f.is_locked() && !f.try_lock());
        f.unlock();
        assert!(!f.is_locked());
        f.lock();
        assert!(!f.try_lock());
        f.unlock();
    }

    #[test]
    #[should_panic(expected = "Folio::unlock: pfn 0x0 not locked")]
    fn unlock_of_an_unlocked_folio_panics() {
        let mm = memmap(0, 1);
        UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish().unlock();
    }

    /// The lock excludes: threads increment a plain (non-atomic in spirit:
    /// load then store) counter under it and none of the increments is lost.
    #[test]
    fn lock_excludes_across_threads() {
        let mm = memmap(0, 1);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish();
        let counter = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                thread::spawn(move || {
                    for _ in 0..20_000 {
                        f.lock();
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                        f.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    }

    #[test]
    fn a_folio_being_prepared_refuses_speculative_references() {
        // Seed 003's shape: another CPU finds the frames while the owner
        // still uses the non-atomic setters. Frozen at 0, it cannot get a
        // reference, so it cannot lock the folio or touch its flags.
        let mm = memmap(0, 4);
        let mut f = UnpublishedFolio::prep(mm, Pfn::new(0), 2);
        let seen = folio_of(mm, Pfn::new(3)).expect("the tail leads to the head");
        assert!(!seen.try_get(), "speculative reference on an unpublished folio");
        f.nonatomic_set_flag(PageFlag::SwapBacked);
        let published = f.publish();
        assert!(seen.try_get(), "published folios take references");
        assert_eq!(published.refcount(), 2);
        assert!(published.test_flag(PageFlag::SwapBacked));
        assert!(!published.put());
    }

    #[test]
    fn refcount_get_put_try_get() {
        let mm = memmap(0, 1);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish();
        assert_eq!(f.refcount(), 1);
        f.get();
        assert!(f.try_get());
        assert_eq!(f.refcount(), 3);
        assert!(!f.put());
        assert!(!f.put());
        assert!(f.put(), "the last put says so");
        assert_eq!(f.refcount(), 0);
        assert!(!f.try_get(), "no speculative reference on a folio being freed");
        assert_eq!(f.refcount(), 0);
    }

    #[test]
    #[should_panic(expected = "Folio::put: refcount underflow")]
    fn put_below_zero_panics() {
        let mm = memmap(0, 1);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish();
        f.put();
        f.put();
    }

    #[test]
    fn pins_small_and_large() {
        let mm = memmap(0, 8);
        let small = UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish();
        assert!(!small.maybe_pinned());
        small.pin();
        assert_eq!(small.refcount(), 1 + PIN_BIAS);
        assert!(small.maybe_pinned() && small.pincount() == 0);
        assert!(!small.unpin());
        assert!(!small.maybe_pinned());

        let large = UnpublishedFolio::prep(mm, Pfn::new(4), 2).publish();
        large.pin();
        large.pin();
        assert_eq!((large.refcount(), large.pincount()), (3, 2));
        assert!(large.maybe_pinned());
        assert!(!large.unpin());
        assert!(!large.unpin());
        assert!(!large.maybe_pinned());
        assert!(large.put());
    }

    #[test]
    fn mapcounts_count_a_pmd_once() {
        let mm = memmap(0, 512);
        let f = UnpublishedFolio::prep(mm, Pfn::new(0), 9).publish();
        assert_eq!(f.add_entire_mapcount(1), 1);
        assert_eq!(f.total_mapcount(), 1);
        assert_eq!(f.add_page_mapcount(0, 1), 1);
        assert_eq!(f.add_page_mapcount(7, 1), 1);
        assert_eq!(f.add_page_mapcount(7, 1), 2);
        assert_eq!((f.page_mapcount(0), f.page_mapcount(7), f.page_mapcount(8)), (1, 2, 0));
        assert_eq!(f.total_mapcount(), 4);
        assert_eq!(f.add_entire_mapcount(-1), 0);
        assert_eq!(f.total_mapcount(), 3);
    }

    #[test]
    fn unpublished_flags_then_publish() {
        let mm = memmap(0, 2);
        let mut u = UnpublishedFolio::prep(mm, Pfn::new(0), 1);
        u.nonatomic_set_flag(PageFlag::SwapBacked);
        u.nonatomic_set_flag(PageFlag::Uptodate);
        u.nonatomic_set_flag(PageFlag::Dirty);
        u.nonatomic_clear_flag(PageFlag::Dirty);
        u.page(1).set_flag(PageFlag::AnonExclusive);
        let space = FolioMapping::Anon(AnonHandle::of_root(PhysAddr::new(0xabc << 12)));
        u.set_mapping(space, 42);
        assert!(u.test_flag(PageFlag::SwapBacked) && !u.test_flag(PageFlag::Dirty));
        let f = u.publish();
        assert!(f.test_flag(PageFlag::SwapBacked) && f.test_flag(PageFlag::Uptodate));
        assert!(f.test_flag(PageFlag::Head) && f.order() == 1);
        assert!(f.page(1).test_flag(PageFlag::AnonExclusive) && f.page(1).test_flag(PageFlag::Tail));
        assert_eq!((f.mapping(), f.index()), (space, 42));
        // From now on, atomic only.
        f.set_flag(PageFlag::Lru);
        assert!(f.test_and_clear_flag(PageFlag::Lru));
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "is structural")]
    fn folio_refuses_structural_flags() {
        let mm = memmap(0, 1);
        UnpublishedFolio::prep(mm, Pfn::new(0), 0).publish().clear_flag(PageFlag::Head);
    }
}
