//! The kernel's side of the policies `mm::reclaim` and `mm::swapoff`
//! over a [`World`], so that host tests run their real decisions:
//! [`World`] implements [`ReclaimHost`] and [`SwapoffHost`], and
//! [`Switches`] (the world's `host`) make that side play differently.
//!
//! What the hosts give the policies:
//! - the family of a folio is every live space of the world but the ones
//!   a test hides ([`Switches::hidden`]: a mapping reclaim cannot see, a
//!   space swapoff's walk does not find); its locks are the world's, which
//!   is single-threaded;
//! - the one swap area of the world's [`SimFrames`] is the only device,
//!   unless swap is off ([`Switches::no_swap`]) or the area is gone
//!   ([`Switches::area_gone`]); its disk is the frames' RAM disk, whose
//!   failures the frames inject;
//! - swapoff's swap-in of one entry is [`World::swap_in`] (a read fault);
//! - the LRU lists, when the frames have them (without lists nothing is
//!   put back and `shrink_lru` finds nothing);
//! - a swap write may be submitted only once no TLB entry reaches its
//!   frames (the world's software TLB; a stale one would let a CPU write
//!   the page after its copy went to disk);
//! - a swap write starts when reclaim submits it and is made when reclaim
//!   waits for it, so that several are in flight at once, as many as
//!   [`Switches::write_room`] allows; one write takes several folios up to
//!   [`Switches::write_gather`] pages, and fails whole when any of its
//!   folios' writes fails;
//! - `relax` counts its calls and runs [`Switches::on_relax`] (a racing
//!   reference going away, a folio lock released).
//!
//! Reclaim as tests start it ([`World::isolate`], [`World::shrink`],
//! [`World::swap_out`], [`World::reclaim_cache`]) takes a folio off the
//! lists with a reference, as the scan does, and calls
//! `mm::reclaim`. [`world`] and [`world_without_runs`] are the worlds of
//! the policy tests (`tests/reclaim.rs`, `tests/swapoff.rs`,
//! `tests/try_to_unmap.rs`): lists and a swap area of [`TY`]; each test
//! runs in [`with_world`], which holds its turn at the bug switches and
//! wants everything back at the end.
//!
//! Single-threaded, as [`World`]: the switches are `Cell`s.

extern crate std;

use super::bug_switch::{shared, BugOn};
use super::frames::SimFrames;
use super::world::{va, World, MEMMAP_BASE, MEMMAP_LEN, USER_END};
use crate::bugs::Bug;
use crate::folio::Folio;
use crate::lru::{LruList, LruLists};
use crate::page::Memmap;
use crate::pgtable::sim::{HardwareWalker, SimMemory, SoftTlb};
use crate::pgtable::{Decoded, Level, PageTable, SwapEntry, SwapType};
use crate::reclaim::{shrink_folio, shrink_list, Pieces, ReclaimHost, Shrunk};
use crate::swap::area::SwapArea;
use crate::swap::cache::lookup_get;
use crate::swap::swapin::{SwapBackend, SwapInError};
use crate::swapoff::SwapoffHost;
use crate::{PhysAddr, VirtAddr};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use std::collections::BTreeSet;

/// The swap area type of [`world`].
pub const TY: u8 = 3;
/// The swap area size of [`world`]: 8 clusters of 512 pages (cluster 0
/// holds the header).
pub const SWAP_PAGES: u64 = 4096;

/// What a test sets to play the kernel's side of reclaim and swapoff
/// differently (module doc). All off by default.
#[derive(Default)]
pub struct Switches {
    /// No swap area is on: nothing to allocate from.
    pub no_swap: Cell<bool>,
    /// The area of the folios' slots is gone (swapoff took it away).
    pub area_gone: Cell<bool>,
    /// Spaces the families and swapoff's walk leave out.
    pub hidden: RefCell<Vec<usize>>,
    /// Calls of `relax`.
    pub nr_relax: Cell<usize>,
    /// What each call of `relax` does.
    pub on_relax: RefCell<Option<Box<dyn FnMut()>>>,
    /// Writes reclaim may have in flight before the disk has no room
    /// (`None`: no limit but reclaim's own cap).
    pub write_room: Cell<Option<usize>>,
    /// Reclaim's writes submitted and not yet waited for.
    pub writes_in_flight: Cell<usize>,
    /// The most writes that were in flight at once.
    pub most_writes_in_flight: Cell<usize>,
    /// The most pages one write of several folios takes (`max_write_pages`;
    /// 0 or 1: each folio alone).
    pub write_gather: Cell<usize>,
    /// Writes reclaim submitted, and the most folios one of them took.
    pub nr_writes_submitted: Cell<usize>,
    pub most_folios_per_write: Cell<usize>,
    /// Calls of swapoff's `wait_in_flight`.
    pub nr_waits: Cell<u32>,
    /// After this many calls of `wait_in_flight`, [`Switches::hidden`] is
    /// emptied: the spaces a walk missed (being made or torn down) are seen.
    pub reveal_after_waits: Cell<Option<u32>>,
    /// Calls of migration's `migration_done` (`super::migration`).
    pub nr_migrations_done: Cell<usize>,
    /// Every entry of every live space as migration's copy found them
    /// (the migration entries in place), of the latest migration.
    pub entries_at_copy: RefCell<Vec<(usize, VirtAddr, Level, Decoded)>>,
    /// Swap-in's half 2 maps the window around the faulting page too
    /// ([`crate::swap::swapin::map_around`]), as the kernel always does.
    /// Off by default, so that the readahead tests see the neighbours
    /// waiting in the cache.
    pub map_around: Cell<bool>,
    /// Pages [`crate::swap::swapin::map_around`] mapped.
    pub nr_mapped_around: Cell<u64>,
}

/// [`World::new`]'s frames with the LRU lists and a swap area of type
/// [`TY`] and [`SWAP_PAGES`] pages, every cluster whole.
pub fn world<F: HardwareWalker>() -> World<F> {
    World::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_lru().with_swap(TY, SWAP_PAGES))
}

/// [`world`] with a bad page in every cluster of 512: single slots only,
/// no run for a huge folio.
pub fn world_without_runs<F: HardwareWalker>() -> World<F> {
    let bad: Vec<u32> = (0..SWAP_PAGES as u32).step_by(512).map(|c| c + 300).collect();
    let frames = SimFrames::new(MEMMAP_BASE, MEMMAP_LEN).with_lru();
    World::with_frames(frames.with_swap_and_bad_pages(TY, SWAP_PAGES, &bad))
}

/// Runs the test `body` over the world `make` makes, holding the turn at
/// the bug switches with every switch off ([`shared`]) for the whole test,
/// then wants everything back ([`World::finish`]).
pub fn with_world<F: HardwareWalker>(make: fn() -> World<F>, body: impl FnOnce(&mut World<F>)) {
    with_world_and_bug(None, make, body);
}

/// [`with_world`], with `bug`'s replay switch on for the whole test (alone:
/// [`BugOn`]) when there is one.
pub fn with_world_and_bug<F: HardwareWalker>(
    bug: Option<Bug>,
    make: fn() -> World<F>,
    body: impl FnOnce(&mut World<F>),
) {
    let _on = bug.map(BugOn::new);
    let _shared = bug.is_none().then(shared);
    let mut w = make();
    body(&mut w);
    w.finish();
}

impl<F: HardwareWalker> World<F> {
    /// The live spaces the kernel's side can see (not hidden).
    pub fn visible(&self) -> Vec<usize> {
        let hidden = self.host.hidden.borrow();
        self.live().into_iter().filter(|s| !hidden.contains(s)).collect()
    }

    /// Takes `folio` for reclaim as the scan does: a reference, and off
    /// its list when there are lists.
    ///
    /// # Panics
    /// When there are lists and the folio is on none.
    pub fn isolate(&self, folio: Folio<'static>) -> Folio<'static> {
        folio.get();
        if let Some(lru) = self.frames.lru_lists() {
            assert!(lru.remove(folio), "pfn {:#x} is on no list", folio.pfn());
        }
        folio
    }

    /// The list `folio` is on, if any.
    pub fn list_of(&self, folio: Folio<'static>) -> Option<LruList> {
        self.lru().list_of(folio.pfn())
    }

    /// The folio mapped at `at` in space `s`, isolated ([`World::isolate`]).
    pub fn isolate_at(&self, s: usize, at: u64) -> Folio<'static> {
        self.isolate(self.folio_at(s, at))
    }

    /// `mm::reclaim::shrink_folio` of the isolated `folio`, which must
    /// leave no pieces (no split).
    pub fn shrink(&self, folio: Folio<'static>) -> Shrunk {
        let mut pieces = Pieces::default();
        let r = shrink_folio(self, folio, &mut pieces);
        assert!(pieces.folios.is_empty() && pieces.nr_split == 0, "unexpected split: {pieces:?}");
        r
    }

    /// Reclaim of the folio mapped at `at` in space `s`.
    pub fn swap_out(&self, s: usize, at: u64) -> Shrunk {
        self.shrink(self.isolate_at(s, at))
    }

    /// A reclaim pass over the swap cache (what the LRU would find in the
    /// kernel): every cache folio, mapped or not, that nobody else has
    /// isolated is shrunk (`mm::reclaim::shrink_list`). Returns the pages
    /// freed.
    pub fn reclaim_cache(&self) -> usize {
        let cached: Vec<SwapEntry> = self.area().used_slots().filter(|&e| self.area().has_cache(e)).collect();
        let mut seen = BTreeSet::new();
        let mut isolated = Vec::new();
        for e in cached {
            let Some((folio, _)) = lookup_get(self.area(), self.memmap(), e) else { continue };
            // The lookup's reference is the one reclaim isolates with.
            let listed = self.frames.lru_lists().is_none_or(|lru| lru.remove(folio));
            if seen.insert(folio.pfn()) && listed {
                isolated.push(folio);
            } else {
                self.frames.put(folio);
            }
        }
        shrink_list(self, isolated).nr_pages
    }
}

impl<F: HardwareWalker> ReclaimHost for World<F> {
    type Format = F;
    type Mem = SimMemory;
    type Tlb = SoftTlb<F>;
    type Device = ();
    type IoError = String;

    fn mem(&self) -> &SimMemory {
        &self.mem
    }
    fn tlb(&self) -> &SoftTlb<F> {
        &self.tlb
    }
    fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        self.frames.lru_lists()
    }
    fn any_device(&self) -> bool {
        self.frames.swap_area().is_some() && !self.host.no_swap.get()
    }
    fn device(&self, ty: SwapType) -> Option<()> {
        let area = self.frames.swap_area().filter(|a| a.ty() == ty);
        (area.is_some() && !self.host.area_gone.get()).then_some(())
    }
    fn alloc_device(&self) -> Option<()> {
        let area = self.frames.swap_area().filter(|a| !a.alloc_stopped());
        (area.is_some() && !self.host.no_swap.get()).then_some(())
    }
    fn area<'a>(&'a self, _: &'a ()) -> &'a SwapArea {
        self.frames.area()
    }
    /// The write is made when it is waited for, so that reclaim's folios
    /// stay in flight (locked, `Writeback`) in between as in the kernel;
    /// `host.write_room` bounds the writes in flight ([`PolicyHost`]).
    type Write = (SwapEntry, Vec<(PhysAddr, usize)>);
    fn submit_write(
        &self,
        _: &(),
        first: SwapEntry,
        folios: &[Folio<'static>],
        pending: bool,
    ) -> Result<Option<Self::Write>, String> {
        let in_flight = self.host.writes_in_flight.get();
        if pending && self.host.write_room.get().is_some_and(|room| in_flight >= room) {
            return Ok(None);
        }
        // Every mapping's translation was flushed first: a CPU writing
        // through a stale one would leave the disk copy stale.
        let parts: Vec<(PhysAddr, usize)> = folios.iter().map(|f| (f.pfn().phys(), f.nr_pages())).collect();
        for &(frame, nr) in &parts {
            assert!(
                !self.tlb.reaches(frame, nr as u64 * 4096),
                "a write of {frame} submitted before the flush"
            );
        }
        let nr_pages: usize = parts.iter().map(|p| p.1).sum();
        assert!(
            parts.len() == 1 || nr_pages <= self.host.write_gather.get().max(1),
            "a write of {nr_pages} pages in {} folios",
            parts.len()
        );
        self.host.writes_in_flight.set(in_flight + 1);
        let most = self.host.most_writes_in_flight.get().max(in_flight + 1);
        self.host.most_writes_in_flight.set(most);
        self.host.nr_writes_submitted.set(self.host.nr_writes_submitted.get() + 1);
        let most = self.host.most_folios_per_write.get().max(parts.len());
        self.host.most_folios_per_write.set(most);
        Ok(Some((first, parts)))
    }
    fn max_write_pages(&self, _: &()) -> usize {
        self.host.write_gather.get().max(1)
    }
    fn wait_write(&self, (first, parts): Self::Write) -> Result<(), String> {
        self.host.writes_in_flight.set(self.host.writes_in_flight.get() - 1);
        let mut result = Ok(());
        let mut entry = first;
        for (frame, nr) in parts {
            // The protocol of a write in flight: its folios locked, `Writeback`.
            let folio = crate::folio::folio_covering(self.memmap(), frame, nr).expect("a folio is written");
            assert!(folio.is_locked() && folio.test_flag(crate::page::PageFlag::Writeback));
            assert_eq!(crate::swap::cache::folio_entry(&folio), Some(entry), "the slots follow on");
            // One request: it fails whole when any part fails.
            let r = SwapBackend::write(&self.frames, entry, frame, nr);
            result = result.and(r);
            entry = entry.plus(nr as u64);
        }
        result
    }
    fn with_family_locked<R>(&self, _: &Folio<'static>, f: impl FnOnce(&[&PageTable<F>]) -> R) -> R {
        let tables: Vec<&PageTable<F>> = self.visible().into_iter().map(|s| &self.sp(s).table).collect();
        f(&tables)
    }
    fn free(&self, folio: Folio<'static>) {
        self.frames.free(folio);
    }
    fn relax(&self) {
        self.host.nr_relax.set(self.host.nr_relax.get() + 1);
        if let Some(f) = self.host.on_relax.borrow_mut().as_mut() {
            f();
        }
    }
}

impl<F: HardwareWalker> SwapoffHost for World<F> {
    type Space = usize;
    type Format = F;
    type Mem = SimMemory;

    fn mem(&self) -> &SimMemory {
        &self.mem
    }
    fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }
    fn spaces(&self) -> Vec<usize> {
        self.visible()
    }
    fn user_end(&self) -> VirtAddr {
        va(USER_END)
    }
    fn with_space_locked<R>(&self, s: &usize, f: impl FnOnce(&PageTable<F>) -> R) -> Option<R> {
        self.space(*s).map(|sp| f(&sp.table))
    }
    /// A read fault's swap-in; a stale entry (brought back meanwhile) is
    /// `Ok`, for the walk to look again.
    fn swap_in(&self, s: &usize, at: VirtAddr, entry: SwapEntry) -> Result<(), String> {
        match World::swap_in(self, *s, at.as_u64(), entry, false) {
            Ok(_) | Err(SwapInError::Stale) => Ok(()),
            Err(e) => Err(format!("space {s} {at}: {e:?}")),
        }
    }
    fn put(&self, folio: Folio<'static>) {
        self.frames.put(folio);
    }
    fn relax(&self) {
        ReclaimHost::relax(self);
    }
    fn wait_in_flight(&self) {
        let n = self.host.nr_waits.get() + 1;
        self.host.nr_waits.set(n);
        if self.host.reveal_after_waits.get() == Some(n) {
            self.host.hidden.borrow_mut().clear();
        }
    }
}
