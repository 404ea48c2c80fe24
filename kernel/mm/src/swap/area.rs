//! One swap area: the state of every slot, the clusters slots are handed
//! out from, and the swap cache, all behind one lock.
//!
//! ## Slots
//!
//! Slot `n` is page `n` of the device, named by the entry `(ty, n)`. One
//! state byte per slot (mm-reference §5):
//!
//! ```text
//!   bit   7    6          5..0
//!       +----+----------+------------------------------------------+
//!       | 0  | HAS_CACHE| count 0..=0x3e, or 0x3f = bad            |
//!       +----+----------+------------------------------------------+
//! ```
//!
//! - **count**: the number of page-table entries, in any address space,
//!   that hold this slot's entry. [`SwapArea::dup`] adds one (fork, or
//!   swap-out replacing one more PTE), [`SwapArea::free_ref`] removes one.
//!   Counts stop at [`MAX_SWAP_COUNT`]: a `dup` beyond fails (there is no
//!   continuation byte as in Linux's 0x80).
//! - **HAS_CACHE**: a folio for this slot is in the swap cache, or someone
//!   is about to read one in. Whoever set it owns the slot's place in the
//!   cache until [`SwapArea::release_cache`]: [`SwapArea::alloc`] sets it
//!   on every new slot (swap-out is about to add the folio), and
//!   [`SwapArea::claim_cache`] sets it for swap-in.
//! - **bad** (0x3f): page 0 (the header) and the header's bad pages. A bad
//!   slot is never free, never handed out, and refuses every operation.
//!
//! A slot is **free** exactly when its byte is 0: count 0 and no HAS_CACHE.
//! So a slot that swap-in has claimed cannot become free, be handed out to
//! swap-out and be written with another page while the claimer reads it
//! (the ABA of seed 002): the claim needs count > 0 and keeps the slot
//! used until it is released.
//!
//! ## Clusters
//!
//! Slots are grouped in clusters of [`CLUSTER_SLOTS`] (512, one PMD of
//! pages): cluster `c` holds slots `512c..512c+512`. A cluster is in one
//! of three states:
//!
//! - **free**: all 512 slots good and free; on the free list. Only a
//!   *whole* cluster (no header page, no bad page, not cut short by the end
//!   of the area) can be free.
//! - **serving order k**: handed out runs of `2^k` slots. It is the
//!   current cluster of order k, or on the non-full list of order k (it has
//!   had a slot freed since it was last found without room).
//! - **full**: serving order k, but no room was found for another run of
//!   order k; on no list. The next slot freed in it puts it back on the
//!   non-full list of its order.
//!
//! [`SwapArea::alloc`] of order k (0..=[`MAX_ALLOC_ORDER`]) looks for
//! `2^k` free slots at an offset that is a multiple of `2^k`, in order:
//! the current cluster of order k; the non-full clusters of order k (a
//! cluster found without room there becomes full); a free cluster, which
//! then serves order k. Order 0 may also take a free slot from any cluster
//! at all; a larger order returns `None` (the caller splits the folio and
//! asks for order 0). A run never crosses a cluster (512 is a multiple of
//! every run) and never covers a bad slot.
//!
//! When the last used slot of a whole cluster is freed, the cluster is
//! free again, whatever order it served. A cluster that is not whole
//! serves order 0 from the start, for ever: keeping it out of the larger
//! orders costs little (at most the first cluster, the last one and those
//! with bad pages) and keeps every large run free of bad slots by
//! construction.
//!
//! Lists are doubly linked through the clusters (indices, `NIL` at the
//! ends), so taking a cluster off one is O(1). Counters of free slots per
//! area and per cluster make [`SwapArea::nr_free`] O(1) and let a scan
//! skip clusters with no room.
//!
//! ## The swap cache
//!
//! Slot → folio, for folios being written out, read in, or still in memory
//! while their slots hold a copy. A folio of `nr` pages occupies `nr`
//! consecutive slots; page `i` of it is slot `first + i`. The cache is a
//! `BTreeMap` from the first slot of each cached folio to its head PFN and
//! size: memory is proportional to the cached folios (a 512-page folio is
//! one entry), not to the area. A slot may be in the cache only while it
//! has HAS_CACHE; whoever set HAS_CACHE adds the folio
//! ([`SwapArea::cache_add`]), deletes it ([`SwapArea::cache_delete`]) and
//! then releases the slots ([`SwapArea::release_cache`]).
//!
//! ## Memory
//!
//! One byte per page plus 20 bytes per cluster: 272 KiB for a 1 GiB area,
//! 14 MiB for 56 GiB, from the heap. [`SwapArea::try_new`] takes a budget
//! and refuses an area whose [`SwapArea::footprint`] exceeds it
//! ([`AreaError::TooLarge`], naming the largest area that fits,
//! [`SwapArea::max_pages_within`]), and asks the heap with `try_reserve`,
//! so that an allocation that fails is [`AreaError::NoMemory`], not a
//! panic. It takes no lock: the caller makes the area before it takes any
//! lock of its own (the kernel's `AREAS`).
//!
//! ## Lock
//!
//! One `crate::sync::Lock` (`SwapArea::inner`) guards everything above:
//! the slot bytes, the clusters and their lists, the counters, the cache
//! and the stop flag. Every method takes it for its whole work and releases it
//! before returning, so each method is atomic with respect to the others
//! (that is what makes a claim and a `free_ref` race cleanly). It is a
//! **leaf** lock, taken with interrupts off in the kernel; nothing else is
//! taken while holding it, except that the closure of
//! [`SwapArea::cache_lookup_with`] runs under it and may use a folio's
//! atomics (to take a reference while the cache's own keeps it alive).
//! The type `ty` and the sizes are fixed at creation and need no lock.
//!
//! ## Errors and panics
//!
//! Every misuse a caller can make is an error ([`SlotError`],
//! [`ClaimError`], [`CacheError`]), all of which say the caller is to
//! blame except [`ClaimError::Busy`] and [`ClaimError::Unused`], which are
//! the normal outcomes of a race. Nothing here panics on a caller's or a
//! disk's input; broken internal invariants are `debug_assert!`ed, and
//! [`SwapArea::check`] verifies all of them (tests, debug builds).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::addr::Pfn;
use crate::pgtable::format::{SwapEntry, SwapType, MAX_SWAP_OFFSET};
use crate::swap::header::SwapHeader;
use crate::sync::Lock;

/// Slots per cluster: one PMD of 4 KiB pages.
pub const CLUSTER_SLOTS: u64 = 512;
/// The largest order [`SwapArea::alloc`] hands out: a whole cluster.
pub const MAX_ALLOC_ORDER: u8 = 9;
/// The largest swap count a slot holds.
pub const MAX_SWAP_COUNT: u8 = 0x3e;

/// The count bits of a slot's byte.
const COUNT_MASK: u8 = 0x3f;
/// A slot that is never used: the header page or a bad page.
const BAD: u8 = 0x3f;
/// A folio for the slot is in the swap cache, or being read into it.
const HAS_CACHE: u8 = 0x40;
/// The end of a cluster list, and "no cluster".
const NIL: u32 = u32::MAX;
/// Number of orders, and the index of the free list in `Inner::lists`.
const NR_ORDERS: usize = MAX_ALLOC_ORDER as usize + 1;
const FREE_LIST: usize = NR_ORDERS;
/// `Cluster::on_list` of a cluster on no list.
const NO_LIST: u8 = u8::MAX;

const _: () = assert!(CLUSTER_SLOTS == 1 << MAX_ALLOC_ORDER);
const _: () = assert!(core::mem::size_of::<Cluster>() as u64 == CLUSTER_BYTES);

/// Bytes of one [`Cluster`].
const CLUSTER_BYTES: u64 = 20;

/// Heap bytes of the slot map and clusters of an area of `nr_pages` pages.
fn footprint_of(nr_pages: u64) -> u64 {
    nr_pages + nr_pages.div_ceil(CLUSTER_SLOTS) * CLUSTER_BYTES
}
const _: () = assert!(MAX_SWAP_COUNT < BAD && BAD & HAS_CACHE == 0 && BAD == COUNT_MASK);

/// Why a slot operation was refused. Always the caller's mistake: it
/// passed an entry it does not hold, or holds in another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// The entry belongs to another swap area.
    WrongArea { ty: SwapType, area: SwapType },
    /// `nr` slots from `offset` are not all inside the area (or `nr` is 0).
    OutOfRange { offset: u64, nr: u64, nr_pages: u64 },
    /// The slot is the header page or a bad page.
    Bad { offset: u64 },
    /// The slot is free: nobody holds its entry.
    Free { offset: u64 },
    /// The slot's count is already [`MAX_SWAP_COUNT`].
    CountMax { offset: u64 },
    /// `free_ref` on a slot whose count is 0: no page-table entry holds it.
    NoReference { offset: u64 },
    /// `release_cache` on a slot without HAS_CACHE.
    NotCached { offset: u64 },
    /// `release_cache` on a slot whose folio is still in the swap cache
    /// (delete it first).
    StillInCache { offset: u64 },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WrongArea { ty, area } => write!(f, "swap entry of type {ty} given to swap area {area}"),
            Self::OutOfRange { offset, nr, nr_pages } => {
                write!(f, "swap slots {offset:#x} +{nr} are not inside the area's {nr_pages:#x} pages")
            }
            Self::Bad { offset } => write!(f, "swap slot {offset:#x} is the header or a bad page"),
            Self::Free { offset } => write!(f, "swap slot {offset:#x} is free: nobody holds its entry"),
            Self::CountMax { offset } => {
                write!(
                    f,
                    "swap slot {offset:#x} already has {MAX_SWAP_COUNT} references, the most it can count"
                )
            }
            Self::NoReference { offset } => {
                write!(f, "swap slot {offset:#x} has no page-table reference to drop")
            }
            Self::NotCached { offset } => write!(f, "swap slot {offset:#x} has no HAS_CACHE to release"),
            Self::StillInCache { offset } => {
                write!(
                    f,
                    "swap slot {offset:#x} still has a folio in the swap cache: delete it before release"
                )
            }
        }
    }
}

/// Why [`SwapArea::claim_cache`] did not claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// A slot has HAS_CACHE: someone else has (or is reading) the folio.
    /// Look the cache up again, or wait and retry.
    Busy { offset: u64 },
    /// A slot's count is 0: its entry was freed since the caller read its
    /// page-table entry, which must have changed. Recheck it.
    Unused { offset: u64 },
    /// The entry is not a usable slot of this area (the caller's mistake).
    Slot(SlotError),
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Busy { offset } => {
                write!(f, "swap slot {offset:#x} is busy: its folio is in the swap cache or being read")
            }
            Self::Unused { offset } => {
                write!(
                    f,
                    "swap slot {offset:#x} is unused: its entry was freed (the page-table entry changed)"
                )
            }
            Self::Slot(e) => write!(f, "cannot claim: {e}"),
        }
    }
}

/// Why [`SwapArea::try_new`] made no area. The machine's limits, not the
/// disk's fault: a smaller area (or a partition of the disk) would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaError {
    /// The slot map and clusters of `nr_pages` pages would take `footprint`
    /// bytes, more than the `budget` the caller allows; areas of at most
    /// `max_pages` pages fit.
    TooLarge { nr_pages: u64, footprint: u64, budget: u64, max_pages: u64 },
    /// The heap had no `bytes` free for them.
    NoMemory { bytes: u64 },
}

impl fmt::Display for AreaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLarge { nr_pages, footprint, budget, max_pages } => write!(
                f,
                "an area of {nr_pages} pages ({} MiB) needs {} KiB of slot map, more than the {} KiB \
                 an area may take; use an area of at most {max_pages} pages ({} MiB)",
                nr_pages / 256,
                footprint.div_ceil(1024),
                budget / 1024,
                max_pages / 256
            ),
            Self::NoMemory { bytes } => {
                write!(f, "no {} KiB free in the kernel heap for the slot map", bytes.div_ceil(1024))
            }
        }
    }
}

/// Why a swap-cache operation was refused. Always the caller's mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheError {
    /// `cache_add` on a slot without HAS_CACHE: claim it first.
    NotClaimed { offset: u64 },
    /// `cache_add` on a slot that already has a folio in the cache.
    Occupied { offset: u64 },
    /// `cache_delete` of a slot with no folio in the cache.
    Absent { offset: u64 },
    /// `cache_delete` that does not name the cached folio exactly: the
    /// folio there starts at slot `first`, has `nr` pages, head `pfn`.
    OtherFolio { offset: u64, first: u64, nr: u64, pfn: u64 },
    /// The entry is not a usable slot of this area.
    Slot(SlotError),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotClaimed { offset } => {
                write!(f, "swap cache: slot {offset:#x} has no HAS_CACHE, claim it before adding a folio")
            }
            Self::Occupied { offset } => write!(f, "swap cache: slot {offset:#x} already has a folio"),
            Self::Absent { offset } => write!(f, "swap cache: slot {offset:#x} has no folio to delete"),
            Self::OtherFolio { offset, first, nr, pfn } => write!(
                f,
                "swap cache: slot {offset:#x} belongs to the folio at pfn {pfn:#x} \
                 (slots {first:#x} +{nr}), not the one named"
            ),
            Self::Slot(e) => write!(f, "swap cache: {e}"),
        }
    }
}

/// What a cluster is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// All slots good and free, on the free list.
    Free,
    /// Runs of `2^order` slots (current, non-full or full: see the module
    /// doc).
    Order(u8),
}

/// One cluster of [`CLUSTER_SLOTS`] slots.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    serves: Serves,
    /// Free slots (byte 0) in the cluster.
    nr_avail: u16,
    /// Slots that are not bad (and exist: the last cluster may be short).
    nr_good: u16,
    /// Where the next search for a run starts, relative to the cluster.
    hint: u16,
    /// Index into `Inner::lists`, or [`NO_LIST`].
    on_list: u8,
    prev: u32,
    next: u32,
}

impl Cluster {
    fn is_whole(&self) -> bool {
        u64::from(self.nr_good) == CLUSTER_SLOTS
    }
}

/// A doubly linked list of clusters.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// A folio in the swap cache, keyed by its first slot.
#[derive(Debug, Clone, Copy)]
struct Cached {
    pfn: u64,
    nr: u64,
}

/// Everything the lock guards.
struct Inner {
    /// One state byte per page of the area (see the module doc).
    map: Vec<u8>,
    clusters: Vec<Cluster>,
    /// `lists[k]`: non-full clusters of order k; `lists[FREE_LIST]`: free
    /// clusters.
    lists: [List; NR_ORDERS + 1],
    /// The cluster each order allocates from first.
    current: [u32; NR_ORDERS],
    /// Free slots in the area.
    nr_free: u64,
    /// Slots that have a folio in the cache.
    nr_in_cache: u64,
    cache: BTreeMap<u64, Cached>,
    /// Set by `stop_alloc` (swapoff): `alloc` hands out nothing more.
    alloc_stopped: bool,
}

/// One swap area. See the module doc for the protocol.
pub struct SwapArea {
    ty: SwapType,
    /// Pages of the area, header and bad pages included.
    nr_pages: u64,
    /// Good slots: pages minus the header and the bad pages.
    nr_slots: u64,
    /// Whether swap-in may keep clean copies in this area's cache
    /// ([`crate::swap::swapin::keeps_clean_copies`]); on unless turned off
    /// (the kernel's `swap_keep_clean=off`). A setting, read relaxed.
    keep_clean: AtomicBool,
    inner: Lock<Inner>,
    /// The slot of the latest swap-in fault on the area, or `u64::MAX`:
    /// swap-in's readahead reads ahead only after a fault near it
    /// ([`SwapArea::note_fault`]). A hint, not under the lock.
    last_fault: AtomicU64,
}

impl SwapArea {
    /// Bytes of kernel heap [`SwapArea::new`] takes for an area with this
    /// header (the swap cache comes on top, as folios are added).
    pub fn footprint(header: &SwapHeader) -> u64 {
        footprint_of(header.nr_pages.min(MAX_SWAP_OFFSET + 1))
    }

    /// The most pages an area may have for its [`SwapArea::footprint`] to
    /// stay within `budget` bytes.
    pub fn max_pages_within(budget: u64) -> u64 {
        let per_cluster = CLUSTER_SLOTS + CLUSTER_BYTES;
        let whole = budget / per_cluster;
        let rest = (budget % per_cluster).saturating_sub(CLUSTER_BYTES).min(CLUSTER_SLOTS - 1);
        (whole * CLUSTER_SLOTS + rest).min(MAX_SWAP_OFFSET + 1)
    }

    /// [`SwapArea::try_new`] with no budget, for tests and tools: panics
    /// when the heap has no room.
    ///
    /// # Panics
    ///
    /// When the allocation fails.
    pub fn new(ty: SwapType, header: &SwapHeader) -> SwapArea {
        match SwapArea::try_new(ty, header, u64::MAX) {
            Ok(area) => area,
            Err(e) => panic!("SwapArea::new: {e}"),
        }
    }

    /// The area of type `ty` described by a checked `header`: every slot
    /// free but page 0 and the bad pages, every whole cluster free. Bad
    /// pages outside `1..nr_pages` are ignored. Refused when its
    /// [`SwapArea::footprint`] exceeds `budget` bytes, or the heap has no
    /// room for it (module doc, Memory); never panics for either.
    pub fn try_new(ty: SwapType, header: &SwapHeader, budget: u64) -> Result<SwapArea, AreaError> {
        let nr_pages = header.nr_pages.min(MAX_SWAP_OFFSET + 1);
        let footprint = footprint_of(nr_pages);
        if footprint > budget {
            let max_pages = SwapArea::max_pages_within(budget);
            return Err(AreaError::TooLarge { nr_pages, footprint, budget, max_pages });
        }
        let nr_clusters = nr_pages.div_ceil(CLUSTER_SLOTS);
        let mut map = Vec::new();
        let mut clusters = Vec::new();
        map.try_reserve_exact(nr_pages as usize)
            .and_then(|()| clusters.try_reserve_exact(nr_clusters as usize))
            .map_err(|_| AreaError::NoMemory { bytes: footprint })?;
        map.resize(nr_pages as usize, 0u8);
        if let Some(header_slot) = map.first_mut() {
            *header_slot = BAD;
        }
        for &bad in &header.bad_pages {
            if let Some(slot) = map.get_mut(bad as usize) {
                *slot = BAD;
            }
        }
        let mut inner = Inner {
            clusters,
            map,
            lists: [List { head: NIL, tail: NIL }; NR_ORDERS + 1],
            current: [NIL; NR_ORDERS],
            nr_free: 0,
            nr_in_cache: 0,
            cache: BTreeMap::new(),
            alloc_stopped: false,
        };
        for c in 0..nr_pages.div_ceil(CLUSTER_SLOTS) {
            let start = c * CLUSTER_SLOTS;
            let end = (start + CLUSTER_SLOTS).min(nr_pages);
            let nr_good = inner.map[start as usize..end as usize].iter().filter(|&&b| b == 0).count() as u16;
            let whole = u64::from(nr_good) == CLUSTER_SLOTS;
            inner.clusters.push(Cluster {
                serves: if whole { Serves::Free } else { Serves::Order(0) },
                nr_avail: nr_good,
                nr_good,
                hint: 0,
                on_list: NO_LIST,
                prev: NIL,
                next: NIL,
            });
            inner.nr_free += u64::from(nr_good);
            if whole {
                inner.push(FREE_LIST, c as u32);
            } else if nr_good > 0 {
                inner.push(0, c as u32);
            }
        }
        let nr_slots = inner.nr_free;
        Ok(SwapArea {
            ty,
            nr_pages,
            nr_slots,
            keep_clean: AtomicBool::new(true),
            inner: Lock::new(inner),
            last_fault: AtomicU64::new(u64::MAX),
        })
    }

    /// The area's swap type.
    pub fn ty(&self) -> SwapType {
        self.ty
    }

    /// Pages of the area, header and bad pages included (slot offsets are
    /// below it).
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages
    }

    /// Slots that can hold data: all but the header and the bad pages.
    pub fn nr_slots(&self) -> u64 {
        self.nr_slots
    }

    /// Lets swap-in keep clean copies in this area's cache (`true`, the
    /// default) or not (every swap-in frees the slots it can, as a full
    /// area does).
    pub fn set_keep_clean(&self, on: bool) {
        self.keep_clean.store(on, core::sync::atomic::Ordering::Relaxed);
    }

    /// [`SwapArea::set_keep_clean`]'s setting.
    pub fn keep_clean(&self) -> bool {
        self.keep_clean.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Free slots now. O(1).
    pub fn nr_free(&self) -> u64 {
        self.inner.lock().nr_free
    }

    /// Used slots now (count > 0 or HAS_CACHE): `nr_slots() - nr_free()`.
    pub fn nr_used(&self) -> u64 {
        self.nr_slots - self.nr_free()
    }

    /// Slots that have a folio in the swap cache now.
    pub fn nr_in_cache(&self) -> u64 {
        self.inner.lock().nr_in_cache
    }

    /// `2^order` contiguous free slots at an offset that is a multiple of
    /// `2^order`, all with count 0 and HAS_CACHE set: the caller (swap-out)
    /// owns their cache position, adds its folio with
    /// [`SwapArea::cache_add`], and [`SwapArea::dup`]s each slot once per
    /// page-table entry it makes. Returns the first slot's entry.
    ///
    /// `None` when `order > MAX_ALLOC_ORDER`, after [`SwapArea::stop_alloc`],
    /// or when no room is found (see the module doc: for `order > 0` the
    /// caller should split its folio and retry with order 0).
    pub fn alloc(&self, order: u8) -> Option<SwapEntry> {
        if order > MAX_ALLOC_ORDER {
            return None;
        }
        let mut inner = self.inner.lock();
        if inner.alloc_stopped || inner.nr_free < 1 << order {
            return None;
        }
        let first = inner.alloc_run(order)?;
        let entry = SwapEntry::new(self.ty, first);
        debug_assert!(entry.is_ok(), "alloc: slot {first:#x} handed out is not an entry");
        entry.ok()
    }

    /// Stops allocation for good (swapoff's first step): every later
    /// [`SwapArea::alloc`] returns `None`. The rest keeps working.
    pub fn stop_alloc(&self) {
        self.inner.lock().alloc_stopped = true;
    }

    /// Whether [`SwapArea::stop_alloc`] was called.
    pub fn alloc_stopped(&self) -> bool {
        self.inner.lock().alloc_stopped
    }

    /// One more page-table entry holds `entry` (fork copies it, or swap-out
    /// writes it into one more PTE). The slot must be in use: count > 0, or
    /// HAS_CACHE (a fresh slot from [`SwapArea::alloc`]). Returns the new
    /// count.
    pub fn dup(&self, entry: SwapEntry) -> Result<u8, SlotError> {
        let mut inner = self.inner.lock();
        let (s, byte) = self.counted_slot(&inner, entry)?;
        let count = byte & COUNT_MASK;
        if byte == 0 {
            return Err(SlotError::Free { offset: s as u64 });
        }
        if count == MAX_SWAP_COUNT {
            return Err(SlotError::CountMax { offset: s as u64 });
        }
        inner.map[s] = byte + 1;
        Ok(count + 1)
    }

    /// A page-table entry holding `entry` is gone (unmapped, or replaced by
    /// the page at swap-in). The count must be > 0. Returns the new count;
    /// when it is 0 and the slot has no HAS_CACHE, the slot is free.
    pub fn free_ref(&self, entry: SwapEntry) -> Result<u8, SlotError> {
        let mut inner = self.inner.lock();
        let (s, byte) = self.counted_slot(&inner, entry)?;
        let count = byte & COUNT_MASK;
        if count == 0 {
            return Err(SlotError::NoReference { offset: s as u64 });
        }
        inner.map[s] = byte - 1;
        if byte - 1 == 0 {
            inner.slot_freed(s);
        }
        Ok(count - 1)
    }

    /// Swap-in notes a fault on `entry`'s slot; returns the slot of the
    /// one before, `None` for the first (`crate::swap::swapin`'s
    /// readahead: is the area read in order?).
    pub fn note_fault(&self, entry: SwapEntry) -> Option<u64> {
        let prev = self.last_fault.swap(entry.offset(), Ordering::Relaxed);
        (prev != u64::MAX).then_some(prev)
    }

    /// Swap-in's claim on the `nr` slots from `entry`, before reading them
    /// into a new folio: succeeds only if every slot has count > 0 and no
    /// HAS_CACHE, and then sets HAS_CACHE on all of them, in one step under
    /// the lock. While claimed, no slot can become free, so none can be
    /// reused for another page under the reader. Release with
    /// [`SwapArea::release_cache`] (after [`SwapArea::cache_delete`] if the
    /// folio was added to the cache).
    ///
    /// [`ClaimError::Unused`] (some count is 0) is reported before
    /// [`ClaimError::Busy`]: the caller's entry is gone, waiting is useless.
    pub fn claim_cache(&self, entry: SwapEntry, nr: u64) -> Result<(), ClaimError> {
        let mut inner = self.inner.lock();
        let range = self.slot_range(entry, nr).map_err(ClaimError::Slot)?;
        let mut busy = None;
        for s in range.clone() {
            let byte = inner.map[s];
            if byte & COUNT_MASK == BAD {
                return Err(ClaimError::Slot(SlotError::Bad { offset: s as u64 }));
            }
            if byte & COUNT_MASK == 0 {
                return Err(ClaimError::Unused { offset: s as u64 });
            }
            if byte & HAS_CACHE != 0 && busy.is_none() {
                busy = Some(s as u64);
            }
        }
        if let Some(offset) = busy {
            return Err(ClaimError::Busy { offset });
        }
        for s in range {
            inner.map[s] |= HAS_CACHE;
        }
        Ok(())
    }

    /// Clears HAS_CACHE on the `nr` slots from `entry`, set by
    /// [`SwapArea::alloc`] or [`SwapArea::claim_cache`]; slots whose count
    /// is 0 become free. Every slot must have HAS_CACHE and no folio in the
    /// cache; otherwise nothing changes and the first offender is named.
    pub fn release_cache(&self, entry: SwapEntry, nr: u64) -> Result<(), SlotError> {
        let mut inner = self.inner.lock();
        let range = self.slot_range(entry, nr)?;
        for s in range.clone() {
            let byte = inner.map[s];
            if byte & COUNT_MASK == BAD {
                return Err(SlotError::Bad { offset: s as u64 });
            }
            if byte & HAS_CACHE == 0 {
                return Err(SlotError::NotCached { offset: s as u64 });
            }
        }
        if let Some(first) = inner.cached_in(range.start as u64, range.end as u64) {
            return Err(SlotError::StillInCache { offset: first.max(range.start as u64) });
        }
        for s in range {
            inner.map[s] &= !HAS_CACHE;
            if inner.map[s] == 0 {
                inner.slot_freed(s);
            }
        }
        Ok(())
    }

    /// The slot's swap count (0 for a bad slot or an entry not of this
    /// area). A snapshot: it may change as soon as the lock is dropped.
    pub fn count(&self, entry: SwapEntry) -> u8 {
        let inner = self.inner.lock();
        match self.slot_range(entry, 1) {
            Ok(r) if inner.map[r.start] & COUNT_MASK != BAD => inner.map[r.start] & COUNT_MASK,
            _ => 0,
        }
    }

    /// Whether the slot has HAS_CACHE (false for a bad slot or an entry not
    /// of this area). A snapshot.
    pub fn has_cache(&self, entry: SwapEntry) -> bool {
        let inner = self.inner.lock();
        self.slot_range(entry, 1).is_ok_and(|r| inner.map[r.start] & HAS_CACHE != 0)
    }

    /// Puts the folio of `nr` pages with head `pfn` in the swap cache at
    /// the `nr` slots from `entry` (page `i` at slot `entry + i`). The
    /// caller holds the folio locked and owns the slots' HAS_CACHE (from
    /// [`SwapArea::alloc`] or [`SwapArea::claim_cache`]); no slot may have
    /// a folio yet. The cache keeps its own reference on the folio, taken
    /// by the caller.
    pub fn cache_add(&self, entry: SwapEntry, nr: u64, pfn: Pfn) -> Result<(), CacheError> {
        let pfn = pfn.as_u64();
        let mut inner = self.inner.lock();
        let range = self.slot_range(entry, nr).map_err(CacheError::Slot)?;
        for s in range.clone() {
            let byte = inner.map[s];
            if byte & COUNT_MASK == BAD {
                return Err(CacheError::Slot(SlotError::Bad { offset: s as u64 }));
            }
            if byte & HAS_CACHE == 0 {
                return Err(CacheError::NotClaimed { offset: s as u64 });
            }
        }
        if let Some(first) = inner.cached_in(range.start as u64, range.end as u64) {
            return Err(CacheError::Occupied { offset: first.max(range.start as u64) });
        }
        inner.cache.insert(range.start as u64, Cached { pfn, nr });
        inner.nr_in_cache += nr;
        Ok(())
    }

    /// Looks `entry` up in the swap cache; when a folio is there, runs `f`
    /// with its head PFN and the index of `entry`'s page in it, **under the
    /// area's lock**, and returns what `f` returns. `f` may take a folio
    /// reference (the cache's own keeps the folio alive meanwhile) and must
    /// do nothing else that waits or takes a lock.
    pub fn cache_lookup_with<R>(&self, entry: SwapEntry, f: impl FnOnce(Pfn, usize) -> R) -> Option<R> {
        let inner = self.inner.lock();
        let s = self.slot_range(entry, 1).ok()?.start as u64;
        let (&first, cached) = inner.cache.range(..=s).next_back()?;
        if s >= first + cached.nr {
            return None;
        }
        Some(f(Pfn::new(cached.pfn), (s - first) as usize))
    }

    /// Takes the folio of `nr` pages with head `pfn` out of the swap cache
    /// at the slots from `entry`: exactly what [`SwapArea::cache_add`] put
    /// there. The caller holds the folio locked and not under writeback,
    /// drops the cache's reference afterwards, and releases the slots with
    /// [`SwapArea::release_cache`]. HAS_CACHE stays set until then.
    pub fn cache_delete(&self, entry: SwapEntry, nr: u64, pfn: Pfn) -> Result<(), CacheError> {
        let pfn = pfn.as_u64();
        let mut inner = self.inner.lock();
        let start = self.slot_range(entry, nr).map_err(CacheError::Slot)?.start as u64;
        let Some((&first, &cached)) = inner.cache.range(..=start).next_back() else {
            return Err(CacheError::Absent { offset: start });
        };
        if start >= first + cached.nr {
            return Err(CacheError::Absent { offset: start });
        }
        if first != start || cached.nr != nr || cached.pfn != pfn {
            return Err(CacheError::OtherFolio { offset: start, first, nr: cached.nr, pfn: cached.pfn });
        }
        inner.cache.remove(&first);
        if inner.cache.is_empty() {
            // Give back the empty root node: an idle area holds no heap.
            inner.cache = BTreeMap::new();
        }
        inner.nr_in_cache -= nr;
        Ok(())
    }

    /// Points the `nr` cache slots from `entry`, which hold the folio with
    /// head `old`, at the folio with head `new` instead, in one step under
    /// the area's lock: a lookup sees one folio or the other for every
    /// slot, never a mix (migration, `crate::migrate`). The caller holds
    /// both folios locked, `old`'s refcount frozen.
    pub fn cache_replace(&self, entry: SwapEntry, nr: u64, old: Pfn, new: Pfn) -> Result<(), CacheError> {
        let mut inner = self.inner.lock();
        let start = self.cached_whole(&inner, entry, nr, old)?;
        if let Some(cached) = inner.cache.get_mut(&start) {
            cached.pfn = new.as_u64();
        }
        Ok(())
    }

    /// The first slot of the cache entry at `entry` when it holds the whole
    /// `nr`-page folio with head `pfn` (for [`SwapArea::cache_replace`] and
    /// [`SwapArea::cache_split`], under the area's lock).
    fn cached_whole(&self, inner: &Inner, entry: SwapEntry, nr: u64, pfn: Pfn) -> Result<u64, CacheError> {
        let start = self.slot_range(entry, nr).map_err(CacheError::Slot)?.start as u64;
        let Some(cached) = inner.cache.get(&start) else {
            return Err(CacheError::Absent { offset: start });
        };
        if cached.nr != nr || cached.pfn != pfn.as_u64() {
            return Err(CacheError::OtherFolio {
                offset: start,
                first: start,
                nr: cached.nr,
                pfn: cached.pfn,
            });
        }
        Ok(start)
    }

    /// Splits the cache entry of the `nr`-page folio with head `pfn` at the
    /// slots from `entry` into `nr` entries of one page each, slot
    /// `first + i` naming frame `pfn + i`: what a folio split leaves
    /// (mm-reference §4: a swap-cache folio splits only to order 0). The
    /// caller holds the folio locked with its refcount frozen, so a lookup
    /// meanwhile finds no reference to take.
    pub fn cache_split(&self, entry: SwapEntry, nr: u64, pfn: Pfn) -> Result<(), CacheError> {
        let mut inner = self.inner.lock();
        let start = self.cached_whole(&inner, entry, nr, pfn)?;
        let pfn = pfn.as_u64();
        for i in 0..nr {
            inner.cache.insert(start + i, Cached { pfn: pfn + i, nr: 1 });
        }
        Ok(())
    }

    /// The first used slot (count > 0 or HAS_CACHE) at or after `from`.
    /// Swapoff walks the area with it (or with [`SwapArea::used_slots`]),
    /// taking the lock once per call.
    pub fn next_used(&self, from: u64) -> Option<SwapEntry> {
        let inner = self.inner.lock();
        let mut s = from.max(1);
        while s < self.nr_pages {
            let c = &inner.clusters[(s / CLUSTER_SLOTS) as usize];
            let cluster_end = ((s / CLUSTER_SLOTS + 1) * CLUSTER_SLOTS).min(self.nr_pages);
            if c.nr_avail == c.nr_good {
                // Nothing used in this cluster.
                s = cluster_end;
                continue;
            }
            for t in s..cluster_end {
                let byte = inner.map[t as usize];
                if byte != 0 && byte != BAD {
                    return SwapEntry::new(self.ty, t).ok();
                }
            }
            s = cluster_end;
        }
        None
    }

    /// The used slots in increasing order. Not a snapshot: each step takes
    /// the lock and finds the next used slot after the last one returned.
    pub fn used_slots(&self) -> UsedSlots<'_> {
        self.used_slots_from(1)
    }

    /// [`SwapArea::used_slots`] from the slot at `offset` on (the header
    /// slot 0 is never used).
    pub fn used_slots_from(&self, offset: u64) -> UsedSlots<'_> {
        UsedSlots { area: self, next: offset.max(1) }
    }

    /// Checks every invariant of the area (O(slots + cached folios)): the
    /// counters against the slot bytes, the cluster states and lists, and
    /// the cache against HAS_CACHE. For tests and debug builds.
    pub fn check(&self) -> Result<(), String> {
        let inner = self.inner.lock();
        inner.check(self.nr_slots)
    }

    /// The slot of `entry` and its map byte (count and HAS_CACHE), under
    /// the area's lock; a bad page is refused.
    fn counted_slot(&self, inner: &Inner, entry: SwapEntry) -> Result<(usize, u8), SlotError> {
        let s = self.slot_range(entry, 1)?.start;
        let byte = inner.map[s];
        if byte & COUNT_MASK == BAD {
            return Err(SlotError::Bad { offset: s as u64 });
        }
        Ok((s, byte))
    }

    /// The slot indices of `nr` slots from `entry`, if they are all in
    /// this area.
    fn slot_range(&self, entry: SwapEntry, nr: u64) -> Result<core::ops::Range<usize>, SlotError> {
        if entry.ty() != self.ty {
            return Err(SlotError::WrongArea { ty: entry.ty(), area: self.ty });
        }
        let offset = entry.offset();
        match offset.checked_add(nr) {
            Some(end) if nr > 0 && end <= self.nr_pages => Ok(offset as usize..end as usize),
            _ => Err(SlotError::OutOfRange { offset, nr, nr_pages: self.nr_pages }),
        }
    }
}

/// Iterator of [`SwapArea::used_slots`].
pub struct UsedSlots<'a> {
    area: &'a SwapArea,
    next: u64,
}

impl Iterator for UsedSlots<'_> {
    type Item = SwapEntry;

    fn next(&mut self) -> Option<SwapEntry> {
        let entry = self.area.next_used(self.next)?;
        self.next = entry.offset() + 1;
        Some(entry)
    }
}

impl Inner {
    /// Finds and takes a run of `2^order` slots (see the module doc for the
    /// order of search). Returns its first slot.
    fn alloc_run(&mut self, order: u8) -> Option<u64> {
        let k = order as usize;
        let nr = 1u64 << order;
        let current = self.current[k];
        if current != NIL {
            if let Some(first) = self.find_run(current, nr) {
                return Some(self.take_run(current, first, nr));
            }
            // No room for this order: the cluster is full until a slot in
            // it is freed.
            self.current[k] = NIL;
        }
        while let Some(c) = self.pop(k) {
            if let Some(first) = self.find_run(c, nr) {
                self.current[k] = c;
                return Some(self.take_run(c, first, nr));
            }
        }
        if let Some(c) = self.pop(FREE_LIST) {
            debug_assert!(self.clusters[c as usize].is_whole());
            self.clusters[c as usize].serves = Serves::Order(order);
            self.clusters[c as usize].hint = 0;
            self.current[k] = c;
            let first = self.find_run(c, nr);
            debug_assert!(first.is_some(), "alloc: free cluster {c} has no run");
            return first.map(|first| self.take_run(c, first, nr));
        }
        if order == 0 {
            // Any cluster of any order with a free slot.
            let c = self.clusters.iter().position(|c| c.nr_avail > 0)? as u32;
            let first = self.find_run(c, 1);
            debug_assert!(first.is_some(), "alloc: cluster {c} counts a free slot it lacks");
            return first.map(|first| self.take_run(c, first, 1));
        }
        None
    }

    /// A run of `nr` free slots aligned to `nr` in cluster `c`, searched
    /// from the cluster's hint onwards, wrapping around.
    fn find_run(&self, c: u32, nr: u64) -> Option<u64> {
        let cluster = &self.clusters[c as usize];
        if u64::from(cluster.nr_avail) < nr {
            return None;
        }
        let base = u64::from(c) * CLUSTER_SLOTS;
        let nr_runs = CLUSTER_SLOTS / nr;
        let hint_run = u64::from(cluster.hint) / nr;
        (0..nr_runs).map(|i| base + (hint_run + i) % nr_runs * nr).find(|&first| {
            let end = first + nr;
            end <= self.map.len() as u64 && self.map[first as usize..end as usize].iter().all(|&b| b == 0)
        })
    }

    /// Marks `nr` free slots from `first` in cluster `c` used, with count 0
    /// and HAS_CACHE.
    fn take_run(&mut self, c: u32, first: u64, nr: u64) -> u64 {
        for byte in &mut self.map[first as usize..(first + nr) as usize] {
            debug_assert_eq!(*byte, 0, "alloc: handing out a used slot");
            *byte = HAS_CACHE;
        }
        let cluster = &mut self.clusters[c as usize];
        cluster.nr_avail -= nr as u16;
        cluster.hint = ((first + nr) % CLUSTER_SLOTS) as u16;
        self.nr_free -= nr;
        first
    }

    /// Slot `s`'s byte has just become 0: count it free, and move its
    /// cluster to the free list (whole and now empty) or back to the
    /// non-full list of its order (it was full).
    fn slot_freed(&mut self, s: usize) {
        let c = (s as u64 / CLUSTER_SLOTS) as u32;
        self.nr_free += 1;
        let cluster = &mut self.clusters[c as usize];
        cluster.nr_avail += 1;
        debug_assert!(cluster.nr_avail <= cluster.nr_good);
        let Serves::Order(order) = cluster.serves else {
            debug_assert!(false, "free: slot {s:#x} freed in a free cluster");
            return;
        };
        let k = order as usize;
        if cluster.is_whole() && cluster.nr_avail == cluster.nr_good {
            if self.current[k] == c {
                self.current[k] = NIL;
            }
            self.unlink(c);
            self.clusters[c as usize].serves = Serves::Free;
            self.push(FREE_LIST, c);
        } else if self.current[k] != c && cluster.on_list == NO_LIST {
            self.push(k, c);
        }
    }

    /// The first slot of a cached folio that overlaps slots `start..end`,
    /// if any.
    fn cached_in(&self, start: u64, end: u64) -> Option<u64> {
        let (&first, cached) = self.cache.range(..end).next_back()?;
        (first + cached.nr > start).then_some(first)
    }

    fn push(&mut self, list: usize, c: u32) {
        debug_assert_eq!(self.clusters[c as usize].on_list, NO_LIST);
        let tail = self.lists[list].tail;
        let cluster = &mut self.clusters[c as usize];
        cluster.on_list = list as u8;
        cluster.prev = tail;
        cluster.next = NIL;
        if tail == NIL {
            self.lists[list].head = c;
        } else {
            self.clusters[tail as usize].next = c;
        }
        self.lists[list].tail = c;
    }

    fn pop(&mut self, list: usize) -> Option<u32> {
        let c = self.lists[list].head;
        if c == NIL {
            return None;
        }
        self.unlink(c);
        Some(c)
    }

    /// Takes cluster `c` off its list, if it is on one.
    fn unlink(&mut self, c: u32) {
        let Cluster { on_list, prev, next, .. } = self.clusters[c as usize];
        if on_list == NO_LIST {
            return;
        }
        let list = on_list as usize;
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.clusters[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.clusters[next as usize].prev = prev;
        }
        let cluster = &mut self.clusters[c as usize];
        cluster.on_list = NO_LIST;
        cluster.prev = NIL;
        cluster.next = NIL;
    }

    fn check(&self, nr_slots: u64) -> Result<(), String> {
        let mut nr_free = 0;
        let mut nr_good_total = 0;
        for (c, (cluster, slots)) in
            self.clusters.iter().zip(self.map.chunks(CLUSTER_SLOTS as usize)).enumerate()
        {
            let avail = slots.iter().filter(|&&b| b == 0).count() as u16;
            let good = slots.iter().filter(|&&b| b & COUNT_MASK != BAD).count() as u16;
            if let Some(b) = slots.iter().find(|&&b| b & !(HAS_CACHE | COUNT_MASK) != 0) {
                return Err(format!("cluster {c}: slot byte {b:#x} has unknown bits"));
            }
            if (avail, good) != (cluster.nr_avail, cluster.nr_good) {
                return Err(format!(
                    "cluster {c}: counts {} free of {} good, slots say {avail} of {good}",
                    cluster.nr_avail, cluster.nr_good
                ));
            }
            nr_free += u64::from(avail);
            nr_good_total += u64::from(good);
            let c = c as u32;
            match cluster.serves {
                Serves::Free => {
                    if !cluster.is_whole() || avail != good || cluster.on_list as usize != FREE_LIST {
                        return Err(format!("cluster {c}: free but not whole, empty and on the free list"));
                    }
                }
                Serves::Order(k) => {
                    if k > MAX_ALLOC_ORDER || (!cluster.is_whole() && k != 0) {
                        return Err(format!("cluster {c}: serves order {k}"));
                    }
                    if cluster.is_whole() && avail == good {
                        return Err(format!("cluster {c}: whole and empty but not free"));
                    }
                    let listed = cluster.on_list != NO_LIST;
                    if listed && cluster.on_list != k {
                        return Err(format!("cluster {c}: order {k} on list {}", cluster.on_list));
                    }
                    if listed && self.current[k as usize] == c {
                        return Err(format!("cluster {c}: current of order {k} and on a list"));
                    }
                }
            }
        }
        if (nr_free, nr_good_total) != (self.nr_free, nr_slots) {
            return Err(format!(
                "area: counts {} free of {nr_slots} slots, slots say {nr_free} of {nr_good_total}",
                self.nr_free
            ));
        }
        for (k, &c) in self.current.iter().enumerate() {
            if c != NIL && self.clusters[c as usize].serves != Serves::Order(k as u8) {
                return Err(format!(
                    "current cluster {c} of order {k} serves {:?}",
                    self.clusters[c as usize].serves
                ));
            }
        }
        for (list, l) in self.lists.iter().enumerate() {
            let (mut c, mut prev, mut steps) = (l.head, NIL, 0);
            while c != NIL {
                let cluster = &self.clusters[c as usize];
                if cluster.on_list as usize != list || cluster.prev != prev || steps > self.clusters.len() {
                    return Err(format!("list {list}: broken at cluster {c}"));
                }
                (prev, c, steps) = (c, cluster.next, steps + 1);
            }
            if l.tail != prev {
                return Err(format!("list {list}: tail {} is not the last cluster {prev}", l.tail));
            }
            let on = self.clusters.iter().filter(|c| c.on_list as usize == list).count();
            if on != steps {
                return Err(format!("list {list}: {on} clusters say they are on it, {steps} are linked"));
            }
        }
        let mut in_cache = 0;
        let mut end_of_last = 0;
        for (&first, cached) in &self.cache {
            if first < end_of_last || cached.nr == 0 {
                return Err(format!("cache: folio at slot {first:#x} overlaps the one before or is empty"));
            }
            end_of_last = first + cached.nr;
            let slots = self.map.get(first as usize..end_of_last as usize);
            if !slots.is_some_and(|s| s.iter().all(|&b| b & HAS_CACHE != 0 && b & COUNT_MASK != BAD)) {
                return Err(format!("cache: folio at slot {first:#x} covers a slot without HAS_CACHE"));
            }
            in_cache += cached.nr;
        }
        if in_cache != self.nr_in_cache {
            return Err(format!("cache: counts {} slots, holds {in_cache}", self.nr_in_cache));
        }
        Ok(())
    }
}
