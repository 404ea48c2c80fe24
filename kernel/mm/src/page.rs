//! The page descriptor: one [`Page`] per 4 KiB frame of physical memory, and
//! the [`Memmap`], the array of them.
//!
//! ## Protocol
//!
//! Every CPU may hold a `&Page` at any time (a PFN walker, the fault handler,
//! reclaim, the allocator), so a descriptor has **only atomic fields** and no
//! method on `&Page` does a non-atomic read-modify-write of the flags word.
//! That is the lesson of seed 003: a plain `load; or; store` of a flags word
//! that another CPU changes at the same time puts back bits the other CPU
//! cleared, or drops bits it set. The only whole-word writes are
//! `pub(crate)` and say `nonatomic` in their name; they are for descriptors
//! nobody else can reach yet (a fresh [`Memmap`], a block inside the frame
//! allocator, a folio being prepared: see [`crate::folio::UnpublishedFolio`]).
//!
//! What a field means depends on what the frame is: a free buddy block (the
//! first page of the block carries [`PageFlag::Buddy`]), a folio (its first
//! page carries [`PageFlag::Head`], the others [`PageFlag::Tail`]; see
//! [`crate::folio`]), or a raw frame handed out by the allocator (kernel
//! data: no flag; a page table: [`PageFlag::PageTable`], set by whoever
//! makes it a table and cleared before it is freed). Frames outside usable RAM carry
//! [`PageFlag::Reserved`] and are never touched again.
//!
//! ## Byte layout (`#[repr(C, align(64))]`, 64 bytes: one cache line)
//!
//! | bytes | field | free buddy block (first page) | folio head | tail page |
//! | --- | --- | --- | --- | --- |
//! | 0..8 | `flags: AtomicU64` | `Buddy`, bits 56..63 = block order | `Head`, folio flags, bits 56..63 = folio order, `AnonExclusive` of page 0 | `Tail`, `AnonExclusive` of this page |
//! | 8..12 | `refcount: AtomicI32` | 0 | references to the folio (+[`crate::folio::PIN_BIAS`] per pin when small) | 0 always |
//! | 12..16 | `mapcount: AtomicI32` | 0 | PTE mappings of page 0 (0 = unmapped) | PTE mappings of this page |
//! | 16..24 | `list_next: AtomicU64` | PFN of the next free block of this order, or [`NO_PFN`] | next folio on its LRU list ([`crate::lru`]) | unused (0) |
//! | 24..32 | `list_prev: AtomicU64` | PFN of the previous free block, or [`NO_PFN`] | previous folio on its LRU list | unused (0) |
//! | 32..40 | `mapping: AtomicU64` | 0 | anon mapping handle (0 = none) | PFN of the head |
//! | 40..48 | `index: AtomicU64` | 0 | page index of page 0 in its mapping | 0 |
//! | 48..56 | `swap: AtomicU64` | 0 | raw swap entry of page 0 (0 = none); page i's is this + i | 0 always (seed 000) |
//! | 56..60 | `entire_mapcount: AtomicI32` | 0 | PMD mappings of the whole folio | 0 |
//! | 60..64 | `pincount: AtomicI32` | 0 | `FOLL_PIN` pins of a large folio (0 for a small one) | 0 |
//!
//! Pages inside a free block other than its first have every field 0. A raw
//! frame has every field 0 while the allocator's caller holds it.
//!
//! All zero bytes is a valid descriptor ([`Page::new`]), so the array can
//! also be made by zero-filling memory.
//!
//! The atomic types come from `crate::sync`: `core`'s, except under the
//! host-only feature `shuttle`, where they are the concurrency checker's
//! (larger, so the layout checks below are off then).
//!
//! ## Cost
//!
//! `size_of::<Page>()` = 64 bytes per 4 KiB frame: 64 / 4096 = 1.5625 % of
//! RAM (16 MiB of descriptors for 1 GiB). Linux's `struct page` is the same
//! size for the same reason: a descriptor per cache line.
//!
//! ## The flags word
//!
//! Bits 0..=13 are the [`PageFlag`]s, bits 14..=55 are free for flags to
//! come, bits 56..=63 hold an order (of the folio on a head, of the free
//! block on a `Buddy` page). Flag changes are atomic `fetch_or` /
//! `fetch_and` with `AcqRel` ordering: a CPU that sees a flag set (an
//! `Acquire` test) also sees what the setter wrote before setting it. The
//! order bits change with a compare-and-swap loop that leaves the flag bits
//! alone.

use crate::addr::Pfn;
use crate::sync::{AtomicI32, AtomicU64, Ordering};
use core::fmt;
use core::mem::size_of;

/// "No frame": the end of a free or LRU list.
pub const NO_PFN: u64 = u64::MAX;

/// The first bit of the order field of the flags word.
pub const ORDER_SHIFT: u32 = 56;
/// The order field of the flags word.
pub const ORDER_MASK: u64 = 0xff << ORDER_SHIFT;

/// One flag bit of a page's flags word. The number is the bit.
///
/// Most flags describe a whole folio and live on its head only; the
/// exceptions are [`PageFlag::Tail`] (on each tail page) and
/// [`PageFlag::AnonExclusive`] (on each page of an anon folio, because each
/// page of a large folio may be mapped exclusively or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageFlag {
    /// The folio lock is held ([`crate::folio::Folio::lock`]).
    Locked = 0,
    /// Accessed recently (reclaim's second-chance bit).
    Referenced = 1,
    /// The contents are valid (read in or written by the kernel).
    Uptodate = 2,
    /// The contents differ from the backing store (swap slot).
    Dirty = 3,
    /// On an LRU list. Changed only under the lists' lock ([`crate::lru`]).
    Lru = 4,
    /// On the active LRU list (rather than the inactive one). Same lock.
    Active = 5,
    /// Backed by swap (anonymous memory) rather than a file.
    SwapBacked = 6,
    /// In the swap cache; the head's swap field holds its first entry.
    SwapCache = 7,
    /// Being written to its backing store.
    Writeback = 8,
    /// First page of a folio (any order; Linux sets `PG_head` only for
    /// large folios, here every folio head has it so a checker can tell a
    /// folio from a raw frame).
    Head = 9,
    /// A page of a large folio other than the first.
    Tail = 10,
    /// First page of a free block in the buddy allocator.
    Buddy = 11,
    /// Not managed by the allocator (a hole, firmware, the kernel image).
    Reserved = 12,
    /// Per page: the anon page is mapped by one address space only and may
    /// be written without copying (mm-reference §8).
    AnonExclusive = 13,
    /// A raw frame that holds a page table: set by the table memory that
    /// handed it out, cleared before it is freed (the allocator refuses to
    /// free a frame that still has it). The consistency checker wants it on
    /// every table frame it reaches.
    PageTable = 14,
}

impl PageFlag {
    /// Every flag, in bit order.
    pub const ALL: [PageFlag; 15] = [
        PageFlag::Locked,
        PageFlag::Referenced,
        PageFlag::Uptodate,
        PageFlag::Dirty,
        PageFlag::Lru,
        PageFlag::Active,
        PageFlag::SwapBacked,
        PageFlag::SwapCache,
        PageFlag::Writeback,
        PageFlag::Head,
        PageFlag::Tail,
        PageFlag::Buddy,
        PageFlag::Reserved,
        PageFlag::AnonExclusive,
        PageFlag::PageTable,
    ];

    /// The flag's mask in the flags word.
    pub const fn mask(self) -> u64 {
        1 << self as u8
    }

    /// True for the flags that say what the frame *is* (folio head, tail,
    /// free block, reserved): only the allocator and folio preparation set
    /// or clear them.
    pub const fn is_structural(self) -> bool {
        matches!(self, PageFlag::Head | PageFlag::Tail | PageFlag::Buddy | PageFlag::Reserved)
    }
}

// Flags and the order field never overlap.
const _: () = {
    let mut i = 0;
    while i < PageFlag::ALL.len() {
        assert!(PageFlag::ALL[i] as u8 as usize == i, "PageFlag::ALL is in bit order");
        assert!(PageFlag::ALL[i].mask() & ORDER_MASK == 0, "a flag overlaps the order field");
        i += 1;
    }
};

/// The descriptor of one 4 KiB frame. See the module doc for what each
/// field means in each state.
#[repr(C, align(64))]
pub struct Page {
    /// Flag bits and an order. Private: every change goes through an atomic
    /// method here or a `nonatomic_` one whose caller owns the descriptor.
    flags: AtomicU64,
    /// Head: references to the folio. 0 on tails, free and raw frames.
    pub(crate) refcount: AtomicI32,
    /// PTE mappings of this page; 0 = unmapped.
    pub(crate) mapcount: AtomicI32,
    /// Free block: next block on its free list (PFN) or [`NO_PFN`].
    /// Guarded by the frame allocator's lock while `Buddy` is set.
    /// Folio head: next folio on its LRU list, guarded by the lists' lock
    /// while `Lru` is set ([`crate::lru`]).
    pub(crate) list_next: AtomicU64,
    /// Free block: previous block on its free list (PFN) or [`NO_PFN`].
    /// Folio head: previous folio on its LRU list (same locks).
    pub(crate) list_prev: AtomicU64,
    /// Head: anon mapping handle (0 = none). Tail: the head's PFN.
    pub(crate) mapping: AtomicU64,
    /// Head: page index of the folio's first page in its mapping.
    pub(crate) index: AtomicU64,
    /// Head: the folio's first swap entry, raw (0 = none). Tails: always 0.
    pub(crate) swap: AtomicU64,
    /// Head: PMD mappings of the whole folio.
    pub(crate) entire_mapcount: AtomicI32,
    /// Head of a large folio: `FOLL_PIN` pins.
    pub(crate) pincount: AtomicI32,
}

// One cache line, and the layout table in the module doc, checked. (Not
// under `shuttle`, whose atomics are larger: see `crate::sync`.)
#[cfg(not(feature = "shuttle"))]
const _: () = assert!(size_of::<Page>() <= 64);
#[cfg(not(feature = "shuttle"))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Page, flags) == 0);
    assert!(offset_of!(Page, refcount) == 8);
    assert!(offset_of!(Page, mapcount) == 12);
    assert!(offset_of!(Page, list_next) == 16);
    assert!(offset_of!(Page, list_prev) == 24);
    assert!(offset_of!(Page, mapping) == 32);
    assert!(offset_of!(Page, index) == 40);
    assert!(offset_of!(Page, swap) == 48);
    assert!(offset_of!(Page, entire_mapcount) == 56);
    assert!(offset_of!(Page, pincount) == 60);
};

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

impl Page {
    /// A descriptor with every field 0: no flag, no reference, no mapping.
    pub const fn new() -> Page {
        Page {
            flags: AtomicU64::new(0),
            refcount: AtomicI32::new(0),
            mapcount: AtomicI32::new(0),
            list_next: AtomicU64::new(0),
            list_prev: AtomicU64::new(0),
            mapping: AtomicU64::new(0),
            index: AtomicU64::new(0),
            swap: AtomicU64::new(0),
            entire_mapcount: AtomicI32::new(0),
            pincount: AtomicI32::new(0),
        }
    }

    /// A snapshot of the whole flags word (flags and order).
    #[inline]
    pub fn flags(&self) -> u64 {
        self.flags.load(Ordering::Acquire)
    }

    /// True when `flag` is set.
    #[inline]
    pub fn test_flag(&self, flag: PageFlag) -> bool {
        self.flags() & flag.mask() != 0
    }

    /// Sets `flag` atomically; other bits are untouched even when other
    /// CPUs change them at the same time.
    pub fn set_flag(&self, flag: PageFlag) {
        self.flags.fetch_or(flag.mask(), Ordering::AcqRel);
    }

    /// Clears `flag` atomically.
    #[inline]
    pub fn clear_flag(&self, flag: PageFlag) {
        self.flags.fetch_and(!flag.mask(), Ordering::AcqRel);
    }

    /// Sets `flag` atomically and returns whether it was set before.
    pub fn test_and_set_flag(&self, flag: PageFlag) -> bool {
        self.flags.fetch_or(flag.mask(), Ordering::AcqRel) & flag.mask() != 0
    }

    /// Clears `flag` atomically and returns whether it was set before.
    pub fn test_and_clear_flag(&self, flag: PageFlag) -> bool {
        self.flags.fetch_and(!flag.mask(), Ordering::AcqRel) & flag.mask() != 0
    }

    /// The order in bits 56..=63 (of the folio on a head, of the free block
    /// on a `Buddy` page; 0 otherwise).
    #[inline]
    pub fn order(&self) -> u8 {
        (self.flags() >> ORDER_SHIFT) as u8
    }

    /// Replaces the order bits atomically (a compare-and-swap loop), leaving
    /// every flag bit as it is.
    pub(crate) fn set_order(&self, order: u8) {
        let bits = (order as u64) << ORDER_SHIFT;
        let mut old = self.flags.load(Ordering::Relaxed);
        loop {
            let new = (old & !ORDER_MASK) | bits;
            match self.flags.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => old = now,
            }
        }
    }

    /// Rewrites the flags word (flags and order) as `f` says, atomically (a
    /// compare-and-swap loop): bits other CPUs change meanwhile are kept,
    /// because `f` is applied again to what they left.
    pub(crate) fn update_flags(&self, f: impl Fn(u64) -> u64) {
        let mut old = self.flags.load(Ordering::Relaxed);
        loop {
            match self.flags.compare_exchange_weak(old, f(old), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => old = now,
            }
        }
    }

    /// The reference count (meaningful on a folio head).
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Ordering::Acquire)
    }

    /// PTE mappings of this page.
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Acquire)
    }

    /// Writes the whole flags word with a plain store: whatever another CPU
    /// sets or clears at the same moment is lost.
    ///
    /// Only for a descriptor nobody else can reach: a fresh memmap, a frame
    /// inside the allocator, a folio not yet published (seed 003 is what
    /// happens otherwise).
    pub(crate) fn nonatomic_store_flags(&self, word: u64) {
        self.flags.store(word, Ordering::Relaxed);
    }

    /// Puts every field back to the all-zero state, then stores `flags`.
    /// Same rule as [`Page::nonatomic_store_flags`]: nobody else may reach
    /// the descriptor.
    pub(crate) fn nonatomic_reset(&self, flags: u64) {
        self.refcount.store(0, Ordering::Relaxed);
        self.mapcount.store(0, Ordering::Relaxed);
        self.list_next.store(0, Ordering::Relaxed);
        self.list_prev.store(0, Ordering::Relaxed);
        self.mapping.store(0, Ordering::Relaxed);
        self.index.store(0, Ordering::Relaxed);
        self.swap.store(0, Ordering::Relaxed);
        self.entire_mapcount.store(0, Ordering::Relaxed);
        self.pincount.store(0, Ordering::Relaxed);
        self.nonatomic_store_flags(flags);
    }
}

/// The flags word as flag names and an order.
struct FlagNames(u64);

impl fmt::Debug for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for flag in PageFlag::ALL {
            if self.0 & flag.mask() != 0 {
                if !first {
                    f.write_str("|")?;
                }
                write!(f, "{flag:?}")?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        write!(f, " order {}", self.0 >> ORDER_SHIFT)
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("flags", &FlagNames(self.flags()))
            .field("refcount", &self.refcount())
            .field("mapcount", &self.mapcount())
            .field("mapping", &self.mapping.load(Ordering::Relaxed))
            .field("swap", &self.swap.load(Ordering::Relaxed))
            .field("entire_mapcount", &self.entire_mapcount.load(Ordering::Relaxed))
            .field("pincount", &self.pincount.load(Ordering::Relaxed))
            .finish()
    }
}

/// The descriptors of the frames `[base_pfn, base_pfn + len)`.
///
/// The kernel places the array in RAM taken from the early allocator and
/// covers every PFN from the lowest to the highest usable frame; holes in
/// between get descriptors too, marked [`PageFlag::Reserved`] (a hole costs
/// 1.56 % of its size, which keeps PFN-to-descriptor a subtraction).
pub struct Memmap {
    pages: &'static [Page],
    base_pfn: u64,
}

impl Memmap {
    /// The descriptors `pages` for the frames from `base_pfn` on. Every
    /// descriptor is reset and marked [`PageFlag::Reserved`]: the frame
    /// allocator clears `Reserved` on the frames it is given.
    ///
    /// Must be called before any other CPU can reach the descriptors.
    ///
    /// # Panics
    ///
    /// When `base_pfn + pages.len()` does not fit below [`NO_PFN`] (a
    /// kernel bug: no physical address is that large).
    pub fn new(base_pfn: Pfn, pages: &'static [Page]) -> Memmap {
        let base_pfn = base_pfn.as_u64();
        let end = base_pfn.checked_add(pages.len() as u64);
        assert!(end.is_some_and(|e| e < NO_PFN), "Memmap::new: PFN range overflows");
        for page in pages {
            page.nonatomic_reset(PageFlag::Reserved.mask());
        }
        Memmap { pages, base_pfn }
    }

    /// The descriptor of frame `pfn`, or `None` outside the memmap.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Option<&'static Page> {
        let i = pfn.as_u64().checked_sub(self.base_pfn)?;
        let pages: &'static [Page] = self.pages;
        pages.get(usize::try_from(i).ok()?)
    }

    /// [`Memmap::get`] by the raw number, for the allocator's and the
    /// lists' own arithmetic on frame numbers.
    #[inline]
    pub(crate) fn get_raw(&self, pfn: u64) -> Option<&'static Page> {
        self.get(Pfn::new(pfn))
    }

    /// [`Memmap::contains`] by the raw number.
    pub(crate) fn contains_raw(&self, pfn: u64) -> bool {
        self.contains(Pfn::new(pfn))
    }

    /// True when `pfn` has a descriptor here.
    pub fn contains(&self, pfn: Pfn) -> bool {
        let pfn = pfn.as_u64();
        pfn >= self.base_pfn && pfn - self.base_pfn < self.pages.len() as u64
    }

    /// The frame number of `page`, found from its place in the array.
    ///
    /// # Panics
    ///
    /// When `page` is not an element of this memmap (a kernel bug).
    pub fn pfn_of(&self, page: &Page) -> Pfn {
        let offset = (page as *const Page as usize).wrapping_sub(self.pages.as_ptr() as usize);
        let i = offset / size_of::<Page>();
        assert!(
            offset.is_multiple_of(size_of::<Page>()) && i < self.pages.len(),
            "Memmap::pfn_of: page not in this memmap"
        );
        Pfn::new(self.base_pfn + i as u64)
    }

    /// The first frame covered.
    pub fn base_pfn(&self) -> Pfn {
        Pfn::new(self.base_pfn)
    }

    /// One past the last frame covered.
    pub fn end_pfn(&self) -> Pfn {
        Pfn::new(self.base_pfn + self.pages.len() as u64)
    }

    /// The number of descriptors.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True when the memmap covers no frame.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The descriptors, in PFN order.
    pub fn pages(&self) -> &'static [Page] {
        self.pages
    }

    /// Host tests: a memmap over `len` fresh descriptors from `base_pfn`
    /// on, leaked so that it lives as long as the test process.
    #[cfg(any(test, feature = "sim"))]
    pub fn new_leaked(base_pfn: Pfn, len: usize) -> &'static Memmap {
        use std::boxed::Box;
        use std::vec::Vec;
        let pages: Vec<Page> = (0..len).map(|_| Page::new()).collect();
        Box::leak(Box::new(Memmap::new(base_pfn, Box::leak(pages.into_boxed_slice()))))
    }
}

impl fmt::Debug for Memmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Memmap[{:#x}, {:#x})", self.base_pfn, self.end_pfn())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread;
    use std::vec::Vec;

    #[test]
    fn descriptor_is_one_cache_line() {
        assert_eq!(size_of::<Page>(), 64);
        assert_eq!(core::mem::align_of::<Page>(), 64);
        // 64 bytes per 4096: 1.5625 %.
        assert_eq!(size_of::<Page>() as f64 / 4096.0 * 100.0, 1.5625);
    }

    #[test]
    fn flags_set_clear_test() {
        let page = Page::new();
        assert_eq!(page.flags(), 0);
        for flag in PageFlag::ALL {
            assert!(!page.test_flag(flag));
            page.set_flag(flag);
            assert!(page.test_flag(flag), "{flag:?}");
        }
        assert_eq!(page.flags(), (1 << PageFlag::ALL.len()) - 1);
        page.clear_flag(PageFlag::Dirty);
        assert!(!page.test_flag(PageFlag::Dirty));
        assert!(page.test_flag(PageFlag::Uptodate) && page.test_flag(PageFlag::Lru));
        assert!(!page.test_and_set_flag(PageFlag::Dirty));
        assert!(page.test_and_set_flag(PageFlag::Dirty));
        assert!(page.test_and_clear_flag(PageFlag::Dirty));
        assert!(!page.test_and_clear_flag(PageFlag::Dirty));
    }

    #[test]
    fn order_bits_leave_flags_alone() {
        let page = Page::new();
        page.set_flag(PageFlag::Head);
        page.set_flag(PageFlag::AnonExclusive);
        page.set_order(9);
        assert_eq!(page.order(), 9);
        assert!(page.test_flag(PageFlag::Head) && page.test_flag(PageFlag::AnonExclusive));
        page.set_order(255);
        assert_eq!(page.order(), 255);
        page.set_order(0);
        assert_eq!(page.flags(), PageFlag::Head.mask() | PageFlag::AnonExclusive.mask());
        assert!(std::format!("{page:?}").contains("Head|AnonExclusive order 0"));
    }

    /// Seed 003's failure mode: CPUs changing different bits of one flags
    /// word at once. With atomic read-modify-writes no change is lost: each
    /// thread always finds its own bit as it left it, and bits nobody
    /// touches stay set throughout.
    #[test]
    fn concurrent_flag_changes_lose_nothing() {
        const ROUNDS: usize = 100_000;
        let own = [PageFlag::Lru, PageFlag::Active, PageFlag::Dirty, PageFlag::Referenced];
        let steady = PageFlag::SwapBacked.mask() | PageFlag::Head.mask() | PageFlag::Uptodate.mask();
        let page = Arc::new(Page::new());
        page.set_flag(PageFlag::SwapBacked);
        page.set_flag(PageFlag::Head);
        page.set_flag(PageFlag::Uptodate);
        page.set_order(9);
        let done = Arc::new(AtomicBool::new(false));
        let checker = {
            let (page, done) = (page.clone(), done.clone());
            thread::spawn(move || {
                let mut checks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let word = page.flags();
                    assert_eq!(word & steady, steady, "a bit nobody cleared was lost: {word:#x}");
                    assert_eq!(word >> ORDER_SHIFT, 9, "the order was changed: {word:#x}");
                    checks += 1;
                }
                checks
            })
        };
        let workers: Vec<_> = own
            .into_iter()
            .map(|flag| {
                let page = page.clone();
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        assert!(!page.test_and_set_flag(flag), "{flag:?} set behind our back");
                        assert!(page.test_and_clear_flag(flag), "{flag:?} set was lost");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(checker.join().unwrap() > 0);
        assert_eq!(page.flags(), steady | 9 << ORDER_SHIFT);
    }

    #[test]
    fn memmap_maps_pfns_both_ways() {
        let mm = Memmap::new_leaked(Pfn::new(0x1003), 100);
        assert_eq!((mm.base_pfn(), mm.end_pfn(), mm.len()), (Pfn::new(0x1003), Pfn::new(0x1067), 100));
        assert!(
            mm.get_raw(0x1002).is_none() && mm.get_raw(0x1067).is_none() && mm.get_raw(u64::MAX).is_none()
        );
        for pfn in [0x1003, 0x1004, 0x1050, 0x1066] {
            let page = mm.get_raw(pfn).unwrap();
            assert!(mm.contains_raw(pfn));
            assert_eq!(mm.pfn_of(page), Pfn::new(pfn));
            // Every descriptor starts reserved: not managed until the
            // allocator is given the frame.
            assert_eq!(page.flags(), PageFlag::Reserved.mask());
        }
        assert!(!mm.contains_raw(0x1002) && !mm.contains_raw(0x1067));
    }

    #[test]
    #[should_panic(expected = "Memmap::pfn_of: page not in this memmap")]
    fn pfn_of_a_foreign_page_panics() {
        let mm = Memmap::new_leaked(Pfn::new(0), 4);
        let other = Page::new();
        mm.pfn_of(&other);
    }

    #[test]
    #[should_panic(expected = "Memmap::new: PFN range overflows")]
    fn memmap_past_the_last_pfn_panics() {
        Memmap::new_leaked(Pfn::new(u64::MAX - 2), 4);
    }
}
