//! [`SimFrames`]: the one frame source of the host tests, which is also
//! their swap backend.
//!
//! What it holds:
//! - a real [`FrameAllocator`] over a leaked memmap (every frame free, or
//!   all but a reserved tail that no one manages);
//! - the contents of every data frame it hands out, 4 KiB each by PFN:
//!   zeroed when a folio is made, copied by `copy_page`, read and written
//!   by the tests and by the disk, removed when the folio is freed, so
//!   touching a free frame panics (a use after free) and copy on write,
//!   splits and swap can be checked byte by byte;
//! - on request: the huge zero folio (made at set-up, as the kernel makes
//!   it at boot), the anonymous LRU lists (then, as in the kernel, a folio
//!   the fault path allocates through [`FrameSource`] goes on them at once
//!   and the free path takes a folio off its list before freeing it, as the
//!   module doc of [`crate::lru`] asks), and one [`SwapArea`] (bad pages
//!   too, if asked) with a RAM disk behind [`SwapBackend`];
//! - switches that make the next reads, writes or allocations fail, and
//!   counts of reads, writes and copies.
//!
//! The disk checks the swap protocol as it goes: a read is only of slots
//! somebody claimed (HAS_CACHE) and a page-table entry still holds (seed
//! 002; the replay `pageout-split-race` reads without the claim, so the
//! check is off while that switch is on), a write only of slots in the
//! cache.
//!
//! Locks, for the race tests that share one `SimFrames` between shuttle
//! threads: the contents and the disk are each behind a std mutex that is
//! never held across a call into `mm` (so no scheduling point happens under
//! it); every call into the frame allocator is made under `alloc_lock`
//! ([`crate::sync::Lock`]: shuttle's mutex under the `shuttle` feature, so
//! the allocator's own spin lock, which would never yield, is never
//! contended). `alloc_lock` may be taken under a space's lock, and the
//! contents' mutex under `alloc_lock` (the zeroing of a new folio);
//! never the other way round. Counts and switches are std atomics:
//! bookkeeping, not scheduling points.

extern crate std;

use crate::anon::{alloc_anon_folio, is_live_anon_page, remove_pte_mapping};
use crate::bugs::{self, Bug};
use crate::fault::FrameSource;
use crate::folio::{folio_covering, AnonHandle, Folio, UnpublishedFolio};
use crate::frame::{AllocKind, FrameAllocator};
use crate::lru::LruLists;
use crate::page::Memmap;
use crate::pgtable::{SwapEntry, SwapType};
use crate::swap::area::SwapArea;
use crate::swap::cache::{delete_if_unused, lookup_get, nth_entry, IfMapped};
use crate::swap::header::{format, parse};
use crate::swap::swapin::SwapBackend;
use crate::sync::Lock;
use crate::thp::{alloc_anon_huge_folio, alloc_huge_zero_folio, remove_pmd_mapping, HPAGE_NR, HPAGE_ORDER};
use crate::{Pfn, PhysAddr};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The bytes of one 4 KiB frame.
pub type Bytes = Box<[u8; 4096]>;

/// A frame's zero contents.
fn zeroed() -> Bytes {
    Box::new([0; 4096])
}

/// Takes a std mutex of the kit; a test that panicked under it has failed
/// already, so a poisoned one is taken as it is.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One more on a count.
fn bump(n: &AtomicU64, by: u64) {
    n.fetch_add(by, Ordering::Relaxed);
}

/// True when a switch says the next operation fails (and counts it down).
fn fails(switch: &AtomicU32) -> bool {
    switch.try_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

/// Frames, their simulated contents and, on request, the huge zero folio,
/// the LRU lists and a swap area with its disk (see the module doc).
pub struct SimFrames {
    fa: &'static FrameAllocator,
    /// Taken around every call into `fa`.
    alloc_lock: Lock<()>,
    /// The bytes of every data frame handed out, by PFN. A frame not here
    /// is free.
    data: Mutex<HashMap<u64, Bytes>>,
    zero: Option<u64>,
    lru: Option<&'static LruLists>,
    area: Option<SwapArea>,
    /// Slot offset -> the page written there last.
    disk: Mutex<HashMap<u64, Bytes>>,
    fail_reads: AtomicU32,
    fail_writes: AtomicU32,
    fail_allocs: AtomicU32,
    fail_huge_allocs: AtomicU32,
    /// Readahead blocks are handed out ([`SimFrames::set_readahead`]).
    readahead: AtomicBool,
    /// Slots whose every read fails, as a bad sector on a disk would: any
    /// read request covering one of them.
    unreadable: Mutex<Vec<u64>>,
    nr_reads: AtomicU64,
    nr_read_calls: AtomicU64,
    nr_writes: AtomicU64,
    nr_write_calls: AtomicU64,
    nr_copies: AtomicU64,
}

impl SimFrames {
    /// The raw-frame contract of swap I/O (`SwapBackend`): the pages are
    /// those of one folio. mm's callers keep it, and every host test checks
    /// that they do; except with seed 002's switch on, whose replayed
    /// mistake (pageout splitting a folio reclaim is writing whole) breaks
    /// it on the way to the lost write its replay tests look for.
    fn check_one_folio(&self, frame: PhysAddr, nr: usize, what: &str) {
        if !bugs::enabled(Bug::PageoutSplitRace) {
            assert!(folio_covering(self.memmap(), frame, nr).is_some(), "{what} {frame}+{nr}: not one folio");
        }
    }

    /// What a read may go into: one folio, or (readahead) order-0 folios
    /// side by side, each a folio of its own.
    fn check_folios(&self, frame: PhysAddr, nr: usize, what: &str) {
        let each =
            |k: usize| folio_covering(self.memmap(), PhysAddr::new(frame.as_u64() + k as u64 * 4096), 1);
        if folio_covering(self.memmap(), frame, nr).is_none() {
            assert!(
                (0..nr).all(|k| each(k).is_some_and(|f| f.order() == 0)),
                "{what} {frame}+{nr}: not folios"
            );
        }
    }

    /// `nr_frames` frames from `base_pfn`, all free.
    pub fn new(base_pfn: u64, nr_frames: usize) -> SimFrames {
        SimFrames::with_reserved_tail(base_pfn, nr_frames, 0)
    }

    /// `nr_frames` descriptors from `base_pfn`; the last `nr_reserved` are
    /// never given to the allocator (reserved memory).
    pub fn with_reserved_tail(base_pfn: u64, nr_frames: usize, nr_reserved: u64) -> SimFrames {
        let memmap = Memmap::new_leaked(Pfn::new(base_pfn), nr_frames);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(Pfn::new(base_pfn), Pfn::new(base_pfn + nr_frames as u64 - nr_reserved)).unwrap();
        SimFrames {
            fa,
            alloc_lock: Lock::new(()),
            data: Mutex::new(HashMap::new()),
            zero: None,
            lru: None,
            area: None,
            disk: Mutex::new(HashMap::new()),
            fail_reads: AtomicU32::new(0),
            fail_writes: AtomicU32::new(0),
            fail_allocs: AtomicU32::new(0),
            fail_huge_allocs: AtomicU32::new(0),
            readahead: AtomicBool::new(false),
            unreadable: Mutex::new(Vec::new()),
            nr_reads: AtomicU64::new(0),
            nr_read_calls: AtomicU64::new(0),
            nr_writes: AtomicU64::new(0),
            nr_write_calls: AtomicU64::new(0),
            nr_copies: AtomicU64::new(0),
        }
    }

    /// With the huge zero folio, made now as the kernel makes it at boot.
    pub fn with_huge_zero(mut self) -> SimFrames {
        let zero = alloc_huge_zero_folio(self.fa, |pa| self.fill_zero(pa, HPAGE_NR as u64)).unwrap();
        self.zero = Some(zero.pfn().as_u64());
        self
    }

    /// With the anonymous LRU lists over this memmap: the free path takes
    /// a folio off its list first.
    pub fn with_lru(mut self) -> SimFrames {
        self.lru = Some(Box::leak(Box::new(LruLists::new(self.fa.memmap()))));
        self
    }

    /// With a swap area of type `ty` and `nr_pages` pages (page 0 is the
    /// header), made from a formatted and parsed mkswap header.
    pub fn with_swap(self, ty: u8, nr_pages: u64) -> SimFrames {
        self.with_swap_and_bad_pages(ty, nr_pages, &[])
    }

    /// [`SimFrames::with_swap`] with the pages `bad` listed bad in the
    /// header: never slots anyone gets (a bad page in every cluster leaves
    /// no run for a huge folio).
    pub fn with_swap_and_bad_pages(mut self, ty: u8, nr_pages: u64, bad: &[u32]) -> SimFrames {
        let ty = SwapType::new(ty as usize).expect("with_swap: not a swap type");
        let header = parse(&format(nr_pages, bad, b"swaptest").unwrap(), nr_pages).unwrap();
        let area = SwapArea::new(ty, &header);
        assert_eq!(area.nr_slots(), nr_pages - 1 - bad.len() as u64);
        self.area = Some(area);
        self
    }

    // ---- what it is made of

    /// The allocator. Tests that take frames from it directly give them
    /// back to it directly (they have no contents here).
    pub fn fa(&self) -> &'static FrameAllocator {
        self.fa
    }

    /// The memmap (with a `'static` lifetime, unlike [`FrameSource::memmap`]).
    pub fn memmap(&self) -> &'static Memmap {
        self.fa.memmap()
    }

    /// Free pages in the allocator.
    pub fn nr_free(&self) -> u64 {
        self.fa.nr_free_pages()
    }

    /// The huge zero folio's PFN, when it was made.
    pub fn zero_pfn(&self) -> Option<Pfn> {
        self.zero.map(Pfn::new)
    }

    /// The LRU lists.
    ///
    /// # Panics
    /// When they were not asked for ([`SimFrames::with_lru`]).
    pub fn lru(&self) -> &'static LruLists {
        self.lru.expect("SimFrames: no LRU lists (with_lru)")
    }

    /// The LRU lists, if they were asked for.
    pub fn lru_lists(&self) -> Option<&'static LruLists> {
        self.lru
    }

    /// The swap area.
    ///
    /// # Panics
    /// When there is none ([`SimFrames::with_swap`]).
    pub fn area(&self) -> &SwapArea {
        self.area.as_ref().expect("SimFrames: no swap area (with_swap)")
    }

    /// The swap area, if there is one.
    pub fn swap_area(&self) -> Option<&SwapArea> {
        self.area.as_ref()
    }

    // ---- allocation and the free path

    /// A new anonymous folio (order 0, or order 9 when `huge`) for page
    /// `index` of the space `handle`, mapped once, zeroed; `None` when
    /// memory is short.
    pub fn alloc_anon(
        &self,
        kind: AllocKind,
        huge: bool,
        handle: AnonHandle,
        index: u64,
    ) -> Option<Folio<'static>> {
        let _fa = self.alloc_lock.lock();
        if huge {
            alloc_anon_huge_folio(self.fa, kind, handle, index, |pa| self.fill_zero(pa, HPAGE_NR as u64)).ok()
        } else {
            alloc_anon_folio(self.fa, kind, handle, index, |pa| self.fill_zero(pa, 1)).ok()
        }
    }

    /// [`SimFrames::alloc_anon`] for the fault path: on the LRU lists at
    /// once when there are lists, as in the kernel.
    fn alloc_listed(&self, huge: bool, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        let f = self.alloc_anon(AllocKind::Normal, huge, handle, index)?;
        if let Some(lru) = self.lru {
            lru.add(f);
        }
        Some(f.pfn().phys())
    }

    /// A fresh unpublished folio of `order` with zeroed contents (a
    /// migration destination, or the start of any folio); `None` when
    /// memory is short.
    pub fn alloc_unpublished(&self, order: u8) -> Option<UnpublishedFolio<'static>> {
        let _fa = self.alloc_lock.lock();
        let f = self.fa.alloc_folio(order, AllocKind::Normal).ok()?;
        self.fill_zero(f.pfn().phys(), 1 << order);
        Some(f)
    }

    /// Hands out the frames of `dst`, a block the caller cut from free
    /// memory it isolated itself (compaction's free scanner) instead of
    /// allocating it here: zeroed contents, as for a folio made here, so
    /// that a migration may copy into it.
    pub fn adopt_unpublished(&self, dst: &UnpublishedFolio<'_>) {
        self.fill_zero(dst.pfn().phys(), 1 << dst.order());
    }

    /// Undoes [`SimFrames::adopt_unpublished`] for a block that was not
    /// used (a refused migration hands it back): its frames are free
    /// memory of the caller's again.
    pub fn disown_unpublished(&self, dst: &UnpublishedFolio<'_>) {
        let mut data = locked(&self.data);
        for pfn in dst.pfn().as_u64()..dst.pfn().as_u64() + (1u64 << dst.order()) {
            assert!(data.remove(&pfn).is_some(), "disown: frame {pfn:#x} was not adopted");
        }
    }

    /// Gives back a folio whose last reference is gone: its contents, its
    /// place on the LRU lists, then its frames.
    ///
    /// # Panics
    /// When a frame of it was never handed out (or was freed already).
    pub fn free(&self, folio: Folio<'static>) {
        // The folio's size is read before the lock: a descriptor load is a
        // scheduling point under shuttle.
        let pfns = folio.pfn().as_u64()..folio.pfn().as_u64() + folio.nr_pages() as u64;
        {
            let mut data = locked(&self.data);
            for pfn in pfns {
                assert!(data.remove(&pfn).is_some(), "free: frame {pfn:#x} was never handed out");
            }
        }
        if let Some(lru) = self.lru {
            lru.remove(folio);
        }
        let _fa = self.alloc_lock.lock();
        self.fa.free_folio(folio);
    }

    /// Drops one reference, freeing the folio when it was the last.
    /// Returns whether it freed.
    pub fn put(&self, folio: Folio<'static>) -> bool {
        let last = folio.put();
        if last {
            self.free(folio);
        }
        last
    }

    // ---- contents

    /// Zeroes `nr` frames from `pa` that are being handed out.
    fn fill_zero(&self, pa: PhysAddr, nr: u64) {
        let mut data = locked(&self.data);
        for pfn in pa.pfn().as_u64()..pa.pfn().as_u64() + nr {
            assert!(data.insert(pfn, zeroed()).is_none(), "frame {pfn:#x} handed out twice");
        }
    }

    /// The contents of frame `pfn`.
    ///
    /// # Panics
    /// When the frame is free.
    pub fn frame(&self, pfn: Pfn) -> Bytes {
        locked(&self.data).get(&pfn.as_u64()).unwrap_or_else(|| panic!("read of free frame {pfn:#x}")).clone()
    }

    /// Replaces the contents of frame `pfn`.
    pub fn set_frame(&self, pfn: Pfn, bytes: Bytes) {
        *locked(&self.data)
            .get_mut(&pfn.as_u64())
            .unwrap_or_else(|| panic!("write to free frame {pfn:#x}")) = bytes;
    }

    /// Runs `f` on the bytes of the frame holding `pa` and the offset of
    /// `pa` in it.
    fn with_frame<T>(&self, pa: PhysAddr, f: impl FnOnce(&mut [u8; 4096], usize) -> T) -> T {
        let mut data = locked(&self.data);
        let frame = data
            .get_mut(&pa.pfn().as_u64())
            .unwrap_or_else(|| panic!("access to free frame {:#x}", pa.pfn()));
        f(frame, (pa.as_u64() & 4095) as usize)
    }

    /// The byte at `pa`.
    pub fn byte(&self, pa: PhysAddr) -> u8 {
        self.with_frame(pa, |frame, at| frame[at])
    }

    /// Writes the byte at `pa`.
    ///
    /// # Panics
    /// Also when `pa` is in the huge zero folio, which nobody may write.
    pub fn set_byte(&self, pa: PhysAddr, value: u8) {
        if let Some(z) = self.zero {
            assert!(
                !(z..z + HPAGE_NR as u64).contains(&pa.pfn().as_u64()),
                "a write reached the huge zero folio"
            );
        }
        self.with_frame(pa, |frame, at| frame[at] = value)
    }

    /// The 8 bytes at `pa` (8-byte aligned), little-endian.
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.with_frame(pa, |frame, at| u64::from_le_bytes(frame[at..at + 8].try_into().unwrap()))
    }

    /// Writes the 8 bytes at `pa` (8-byte aligned), little-endian.
    pub fn write_u64(&self, pa: PhysAddr, value: u64) {
        self.with_frame(pa, |frame, at| frame[at..at + 8].copy_from_slice(&value.to_le_bytes()))
    }

    /// Data frames handed out and not freed.
    pub fn nr_data_frames(&self) -> usize {
        locked(&self.data).len()
    }

    // ---- the disk

    /// What the disk holds at slot `offset`.
    pub fn on_disk(&self, offset: u64) -> Option<Bytes> {
        locked(&self.disk).get(&offset).cloned()
    }

    /// Turns readahead on or off (off at first): with it, swap-in may get
    /// blocks of order-0 folios ([`SwapBackend::alloc_readahead`]) and
    /// read the neighbours of a faulting page with it.
    pub fn set_readahead(&self, on: bool) {
        self.readahead.store(on, Ordering::Relaxed);
    }

    /// The next `n` reads fail.
    pub fn fail_next_reads(&self, n: u32) {
        self.fail_reads.store(n, Ordering::Relaxed);
    }

    /// Every read covering the slot at `offset` fails from now on (a bad
    /// sector): a large read of a run holding it, and its own 4 KiB read.
    pub fn make_unreadable(&self, offset: u64) {
        locked(&self.unreadable).push(offset);
    }

    /// The next `n` writes fail.
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::Relaxed);
    }

    /// The next `n` swap-in allocations of order-0 folios fail.
    pub fn fail_next_allocs(&self, n: u32) {
        self.fail_allocs.store(n, Ordering::Relaxed);
    }

    /// The next `n` swap-in allocations of huge folios fail.
    pub fn fail_next_huge_allocs(&self, n: u32) {
        self.fail_huge_allocs.store(n, Ordering::Relaxed);
    }

    /// Pages read from the disk.
    pub fn nr_reads(&self) -> u64 {
        self.nr_reads.load(Ordering::Relaxed)
    }

    /// Read requests that succeeded (one per `read` call).
    pub fn nr_read_calls(&self) -> u64 {
        self.nr_read_calls.load(Ordering::Relaxed)
    }

    /// Pages written to the disk.
    pub fn nr_writes(&self) -> u64 {
        self.nr_writes.load(Ordering::Relaxed)
    }

    /// Write requests that succeeded (one per `write` call).
    pub fn nr_write_calls(&self) -> u64 {
        self.nr_write_calls.load(Ordering::Relaxed)
    }

    /// 4 KiB copies made (copy on write, fork of pinned pages).
    pub fn nr_copies(&self) -> u64 {
        self.nr_copies.load(Ordering::Relaxed)
    }

    /// A page-table entry holding `entry` is gone (munmap, exit): the slot
    /// loses a count, and when that was the last and a folio is still in
    /// the cache for it, the folio is dropped if nobody uses it (as
    /// `free_entry` in `kernel/src/vm/swap.rs`). An entry of a type no area
    /// here has (one a test wrote by hand) has no count to drop.
    ///
    /// # Panics
    /// When the area refuses the free (a count that was never taken).
    pub fn free_swap_entry(&self, entry: SwapEntry) {
        let Some(area) = self.area.as_ref().filter(|a| a.ty() == entry.ty()) else { return };
        match area.free_ref(entry) {
            Ok(0) if area.has_cache(entry) => {
                let Some((folio, _)) = lookup_get(area, self.memmap(), entry) else { return };
                self.drop_unmapped_cache_folio(folio);
                self.put(folio);
            }
            Ok(_) => {}
            Err(e) => panic!("free of {entry:?}: {e}"),
        }
    }

    /// The cache folio `folio` (the caller holds a reference) may be
    /// needed by nobody: its last mapping or entry just went. It leaves the
    /// cache now when nothing needs it there (`delete_if_unused`), as
    /// `drop_unmapped_cache_folio` in `kernel/src/vm/swap.rs` does, less
    /// that function's hand-over to kswapd of a folio somebody has locked:
    /// here it stays in the cache.
    pub fn drop_unmapped_cache_folio(&self, folio: Folio<'static>) {
        let Some(area) = self.area.as_ref() else { return };
        if folio.try_lock() {
            delete_if_unused(area, &folio, IfMapped::Keep);
            folio.unlock();
        }
    }

    /// A [`SwapBackend`] over these frames that also counts the reads made
    /// through it: one per faulting thread says whether that thread read.
    pub fn counting(&self) -> Counting<'_> {
        Counting { frames: self, reads: Cell::new(0) }
    }
}

impl SwapBackend for SimFrames {
    /// The simulated disk's failures are injected ones, told in words.
    type IoError = String;

    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        if !bugs::enabled(Bug::PageoutSplitRace) {
            self.check_folios(frame, nr, "read into");
        }
        if fails(&self.fail_reads) {
            return Err(String::from("injected read error"));
        }
        let span = first.offset()..first.offset() + nr as u64;
        if let Some(bad) = locked(&self.unreadable).iter().find(|&&o| span.contains(&o)) {
            return Err(format!("injected read error: slot {bad:#x} is unreadable"));
        }
        let area = self.area();
        for i in 0..nr {
            let e = nth_entry(first, i);
            // Seed 002: only a claimed slot may be read (a freed slot may
            // already hold another page). Its count may have dropped to 0
            // since the claim (an munmap racing the read: shuttle finds it
            // for a readahead neighbour): the claim keeps such a slot from
            // being freed and reused, so it still holds the page unmapped.
            if !bugs::enabled(Bug::PageoutSplitRace) {
                let (count, has_cache) = (area.count(e), area.has_cache(e));
                assert!(has_cache, "read of slot {e:?}: count {count}, has_cache {has_cache}");
            }
            let bytes =
                self.on_disk(e.offset()).unwrap_or_else(|| panic!("read of slot {e:?}, never written"));
            self.set_frame(frame.pfn().plus(i as u64), bytes);
        }
        bump(&self.nr_reads, nr as u64);
        bump(&self.nr_read_calls, 1);
        Ok(())
    }

    fn write(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        self.check_one_folio(frame, nr, "write from");
        if fails(&self.fail_writes) {
            return Err(String::from("injected write error"));
        }
        for i in 0..nr {
            let e = nth_entry(first, i);
            assert!(self.area().has_cache(e), "write of slot {e:?}, which is not in the cache");
            let bytes = self.frame(frame.pfn().plus(i as u64));
            locked(&self.disk).insert(e.offset(), bytes);
        }
        bump(&self.nr_writes, nr as u64);
        bump(&self.nr_write_calls, 1);
        Ok(())
    }

    /// Under shuttle another thread may release what swap-in waits for; in
    /// a one-thread test no one can.
    fn relax(&self) {
        #[cfg(feature = "shuttle")]
        shuttle::thread::yield_now();
        #[cfg(not(feature = "shuttle"))]
        panic!("swap-in waits for a folio lock or a claim, which no one can release in a one-thread test");
    }

    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        if fails(&self.fail_allocs) {
            return None;
        }
        self.alloc_unpublished(0)
    }

    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        if fails(&self.fail_huge_allocs) {
            return None;
        }
        self.alloc_unpublished(HPAGE_ORDER)
    }

    fn alloc_readahead(&self, nr: usize) -> Option<Vec<UnpublishedFolio<'static>>> {
        if !self.readahead.load(Ordering::Relaxed) {
            return None;
        }
        let _fa = self.alloc_lock.lock();
        let run = self.fa.alloc_folio_run(nr, AllocKind::Normal).ok()?;
        self.fill_zero(run[0].phys(), nr as u64);
        Some(run)
    }

    fn free_folio(&self, folio: Folio<'static>) {
        self.free(folio);
    }
}

/// The fault path's frames. As in the kernel (`kernel/src/vm/folios.rs`),
/// a new anonymous folio goes on the LRU lists at once when there are
/// lists (`SimFrames::alloc_listed`).
impl FrameSource for SimFrames {
    fn alloc_anon_page(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        self.alloc_listed(false, handle, index)
    }
    fn release_anon_page(&self, pa: PhysAddr) {
        self.put(remove_pte_mapping(self.memmap(), pa));
    }
    fn alloc_anon_huge(&self, handle: AnonHandle, index: u64) -> Option<PhysAddr> {
        self.alloc_listed(true, handle, index)
    }
    fn release_anon_huge(&self, pa: PhysAddr) {
        self.put(remove_pmd_mapping(self.memmap(), pa));
    }
    fn huge_zero(&self) -> Option<PhysAddr> {
        self.zero.map(|pfn| PhysAddr::new(pfn << 12))
    }
    fn copy_page(&self, dst: PhysAddr, src: PhysAddr) {
        // The contract the kernel's copy checks (and relies on).
        let anon = |pa| is_live_anon_page(self.memmap(), pa);
        assert!(dst != src && anon(dst) && anon(src), "copy_page: {dst} <- {src}, not two live anon pages");
        let bytes = self.frame(src.pfn());
        self.set_frame(dst.pfn(), bytes);
        bump(&self.nr_copies, 1);
    }
    fn memmap(&self) -> &Memmap {
        self.fa.memmap()
    }
    fn swap_dup(&self, entry: SwapEntry) -> Result<(), String> {
        match &self.area {
            Some(area) => area.dup(entry).map(drop).map_err(|e| format!("{e}")),
            None => Err(format!("no swap area for {entry:?}")),
        }
    }
}

/// [`SimFrames`] as a swap backend, counting the reads made through this
/// value ([`SimFrames::counting`]).
pub struct Counting<'a> {
    frames: &'a SimFrames,
    reads: Cell<u32>,
}

impl Counting<'_> {
    /// Reads made through this value.
    pub fn nr_reads(&self) -> u32 {
        self.reads.get()
    }
}

impl SwapBackend for Counting<'_> {
    type IoError = String;

    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        self.frames.read(first, frame, nr)?;
        self.reads.set(self.reads.get() + 1);
        Ok(())
    }
    fn write(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), String> {
        self.frames.write(first, frame, nr)
    }
    fn relax(&self) {
        self.frames.relax()
    }
    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        self.frames.alloc_folio()
    }
    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        self.frames.alloc_huge_folio()
    }
    fn alloc_readahead(&self, nr: usize) -> Option<Vec<UnpublishedFolio<'static>>> {
        self.frames.alloc_readahead(nr)
    }
    fn free_folio(&self, folio: Folio<'static>) {
        self.frames.free(folio)
    }
}
