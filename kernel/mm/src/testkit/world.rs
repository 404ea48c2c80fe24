//! [`World`]: a fork family of address spaces over one [`SimFrames`], one
//! simulated physical memory for the tables and one software TLB (keyed by
//! root), with a simulated CPU and the system calls as the kernel makes
//! them; and [`SharedSpace`], one address space behind a lock for the race
//! tests.
//!
//! The CPU ([`World::access`]): an access goes through the TLB and the
//! format's hardware walker; a fault goes to the real fault handler
//! (`mm::fault::handle_fault`) and, for a swap entry, to swap-in, as the
//! trap handler would call them, and the access is retried. Every
//! translation the CPU uses is compared with the tables, so a missing
//! flush that leaves a stale translation of another frame fails the test.
//!
//! The kernel's sequences are re-enacted here over the simulation:
//! [`World::swap_in`] is `kernel/src/vm/fault.rs` `swap_in`, [`World::munmap`]
//! and [`World::exit`] the unmap paths of `kernel/src/vm/space.rs` (a swap
//! cache folio whose last mapping or entry goes leaves the cache when
//! nobody needs it); reclaim and swapoff are the real `mm::reclaim` and
//! `mm::swapoff`, with [`World`] as their host ([`super::policy`]).
//! [`World::check`] is `AddressSpace::check` over the whole family plus the
//! rules the checker cannot see (and the LRU lists' own check, when there
//! are lists). [`World::finish`] wants every frame, table and swap slot
//! back, and the lists empty.
//!
//! Single-threaded: the tables' memory and the TLB are `RefCell`s.
//! [`SharedSpace`] puts one space under a [`crate::sync::Lock`] (shuttle's
//! mutex in race tests) as the kernel puts its `Inner` under the space's
//! lock: every table and mapcount change under it.

extern crate std;

use super::frames::{Bytes, SimFrames};
use super::policy::Switches;
use crate::anon::anon_handle;
use crate::debug::{check_spaces_in, ConsistencyError, Scope, Stats};
use crate::fault::{handle_fault, Access, FaultCause, FaultOutcome, MemFault};
use crate::folio::{folio_of, AnonHandle, Folio};
use crate::frame::AllocKind;
use crate::gup::{get_user_page, release, Hold};
use crate::lru::LruLists;
use crate::page::Memmap;
use crate::pgtable::sim::{HardwareWalker, HwAccess, HwFault, SimMemory, SoftTlb};
use crate::pgtable::{Decoded, Flush, Leaf, Level, NonPresent, PageTable, SwapEntry, TableMemory, TlbHooks};
use crate::space::{fork_range, free_pgtables, protect_range, zap_range, ForkError, Gather};
use crate::swap::area::SwapArea;
use crate::swap::cache::{delete_if_unused, IfMapped};
use crate::swap::swapin::{get_swapped_folio, intact_run, map_swapped_in, readahead_window, SwapInOptions};
use crate::swap::swapin::{map_around, SwapInError, SwapInOutcome};
use crate::sync::Lock;
use crate::thp::{split_huge_pmd_if_cut, HPAGE_NR, HPAGE_SIZE};
use crate::vma::{ThpMode, VmaKind, VmaProt, VmaSet};
use crate::{Pfn, PhysAddr, VirtAddr};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// A page.
pub const PAGE: u64 = 4096;

/// [`SimMemory`] whose table allocations fail after `left` more
/// ([`World::try_fork_with_tables`]).
struct LimitedTables<'a> {
    mem: &'a SimMemory,
    left: Cell<u32>,
}

impl TableMemory for LimitedTables<'_> {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        self.mem.read_entry(pa)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        self.mem.write_entry(pa, value)
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        let left = self.left.get().checked_sub(1)?;
        self.left.set(left);
        self.mem.alloc_table()
    }
    fn free_table(&self, pa: PhysAddr) {
        self.mem.free_table(pa)
    }
}

/// [`SimMemory`] that counts the entries read and written through it (how
/// much of the tables an operation walks: [`World::fork_counting`]), and
/// the barriers a kernel's table memory would issue: one per
/// [`TableMemory::write_entry`], one per [`TableMemory::publish_writes`].
struct CountingTables<'a> {
    mem: &'a SimMemory,
    work: Cell<TableWork>,
}

/// What [`World::fork_counting`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableWork {
    /// Entries read or written.
    pub accesses: u64,
    /// Table-walker barriers: ordered writes, and publishes of batched ones.
    pub barriers: u64,
    /// Writes made batched ([`TableMemory::write_entry_batched`]).
    pub batched: u64,
}

impl CountingTables<'_> {
    fn count(&self, f: impl FnOnce(&mut TableWork)) {
        let mut work = self.work.get();
        f(&mut work);
        self.work.set(work);
    }
}

impl TableMemory for CountingTables<'_> {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        self.count(|w| w.accesses += 1);
        self.mem.read_entry(pa)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        self.count(|w| {
            w.accesses += 1;
            w.barriers += 1;
        });
        self.mem.write_entry(pa, value)
    }
    fn write_entry_batched(&self, pa: PhysAddr, value: u64) {
        self.count(|w| {
            w.accesses += 1;
            w.batched += 1;
        });
        self.mem.write_entry(pa, value)
    }
    fn publish_writes(&self) {
        self.count(|w| w.barriers += 1);
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        self.mem.alloc_table()
    }
    fn free_table(&self, pa: PhysAddr) {
        self.mem.free_table(pa)
    }
}

/// Where tests map their areas: 2 MiB- (indeed 1 GiB-) aligned.
pub const AREA: u64 = 0x10_0000_0000;
/// The end of user space (48-bit lower half).
pub const USER_END: u64 = 0x8000_0000_0000;
/// The first PFN of [`World::new`]'s frames.
pub const MEMMAP_BASE: u64 = 0x80000;
/// [`World::new`]'s frames: 32 MiB, several 2 MiB blocks.
pub const MEMMAP_LEN: usize = 8192;
/// A huge page's size.
pub const HP: u64 = HPAGE_SIZE;
/// The pages of a huge page.
pub const NR_HP: u64 = HPAGE_NR as u64;
/// The protection of most test areas.
pub const RW: VmaProt = VmaProt::READ_WRITE;

/// `raw` as a virtual address.
pub fn va(raw: u64) -> VirtAddr {
    VirtAddr::new(raw)
}

/// The byte offset in page `va` that the byte-level tests write: it moves
/// from page to page so that copies of whole pages are checked, not only
/// byte 0.
pub fn offset_in(va: u64) -> u64 {
    ((va >> 12) * 67) % 4096
}

/// The byte [`World::fill`] writes into page `page` for `seed`.
pub fn pattern(page: u64, seed: u8) -> u8 {
    ((page >> 12) as u8).wrapping_mul(31).wrapping_add(seed) | 1
}

/// The contents the page-level tests give page `p` in version `tag` (0:
/// the zero page): every byte of every page differs from its neighbours
/// and versions, so a page read from the wrong slot, a stale copy or a
/// lost write is caught.
pub fn page_bytes(p: u64, tag: u8) -> Bytes {
    let mut b = Box::new([0u8; 4096]);
    if tag != 0 {
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = ((p >> 12).wrapping_mul(131) + i as u64 * 7 + u64::from(tag) * 13) as u8;
        }
    }
    b
}

/// The pages `start`, `start + PAGE`, ... (`n` of them).
pub fn pages(start: u64, n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| start + i * PAGE)
}

/// What one access went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Fault(FaultOutcome),
    SwapIn(Result<SwapInOutcome, SwapInError<String>>),
}

impl Ev {
    /// The fault outcome, for an event that is one.
    pub fn fault(&self) -> Option<FaultOutcome> {
        match self {
            Ev::Fault(o) => Some(*o),
            Ev::SwapIn(_) => None,
        }
    }
}

/// An event is equal to the fault outcome it records, so tests that take
/// no swap-in compare the events with outcomes.
impl PartialEq<FaultOutcome> for Ev {
    fn eq(&self, other: &FaultOutcome) -> bool {
        *self == Ev::Fault(*other)
    }
}

/// One address space of a [`World`].
pub struct Space<F: HardwareWalker> {
    pub table: PageTable<F>,
    pub vmas: VmaSet,
}

/// A fork family of address spaces (see the module doc).
pub struct World<F: HardwareWalker> {
    pub mem: SimMemory,
    pub tlb: SoftTlb<F>,
    pub frames: SimFrames,
    /// Index = space id; `None` once it exited.
    spaces: Vec<Option<Space<F>>>,
    /// The anon handle of every space there ever was.
    handles: Vec<AnonHandle>,
    /// Free pages at the start: what teardown returns to.
    free_at_start: u64,
    /// Halves of 2 MiB blocks held by [`World::fragment`].
    fragments: RefCell<Vec<Pfn>>,
    /// How the kernel's side of reclaim and swapoff plays ([`Switches`]).
    pub host: Switches,
    /// The holds [`World::hold`] took and [`World::unhold`] has not
    /// dropped, for the checker's exact refcounts.
    holds: RefCell<Vec<(PhysAddr, Hold)>>,
    /// References tests declared ([`World::declare_refs`]).
    extra_refs: RefCell<Vec<(Pfn, i32)>>,
    /// The checker's window ([`Scope::window`]; 0 for its default): tests
    /// lower it to check in many windows.
    pub check_window: usize,
}

impl<F: HardwareWalker> Default for World<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: HardwareWalker> World<F> {
    /// [`MEMMAP_LEN`] frames at [`MEMMAP_BASE`], nothing else.
    pub fn new() -> Self {
        Self::with_frames(SimFrames::new(MEMMAP_BASE, MEMMAP_LEN))
    }

    /// Space 0, empty, over `frames`; tables in [`SimMemory`] at
    /// 0x4000_0000, below any data frame the tests use.
    pub fn with_frames(frames: SimFrames) -> Self {
        let mut w = World {
            mem: SimMemory::new(0x4000_0000, 1 << 14),
            tlb: SoftTlb::default(),
            free_at_start: frames.nr_free(),
            frames,
            spaces: Vec::new(),
            handles: Vec::new(),
            fragments: RefCell::new(Vec::new()),
            host: Switches::default(),
            holds: RefCell::new(Vec::new()),
            extra_refs: RefCell::new(Vec::new()),
            check_window: 0,
        };
        w.add_space(PageTable::new(&w.mem).unwrap(), VmaSet::new(va(0x1000), va(USER_END)));
        w
    }

    /// Adds a space; returns its id.
    pub fn add_space(&mut self, table: PageTable<F>, vmas: VmaSet) -> usize {
        self.handles.push(anon_handle(table.root()));
        self.spaces.push(Some(Space { table, vmas }));
        self.spaces.len() - 1
    }

    /// Space `s`.
    ///
    /// # Panics
    /// When it exited.
    pub fn sp(&self, s: usize) -> &Space<F> {
        self.spaces[s].as_ref().expect("space exited")
    }

    /// Space `s`, unless it exited.
    pub fn space(&self, s: usize) -> Option<&Space<F>> {
        self.spaces[s].as_ref()
    }

    /// Space `s`, to change by hand (its areas without its table, say).
    pub fn sp_mut(&mut self, s: usize) -> &mut Space<F> {
        self.spaces[s].as_mut().expect("space exited")
    }

    pub fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }

    pub fn area(&self) -> &SwapArea {
        self.frames.area()
    }

    /// The LRU lists ([`SimFrames::lru`]).
    pub fn lru(&self) -> &'static LruLists {
        self.frames.lru()
    }

    pub fn nr_free(&self) -> u64 {
        self.frames.nr_free()
    }

    /// Free pages when the world was made.
    pub fn nr_free_at_start(&self) -> u64 {
        self.free_at_start
    }

    /// The huge zero folio.
    pub fn zero_folio(&self) -> Folio<'static> {
        folio_of(self.memmap(), self.frames.zero_pfn().expect("no huge zero folio")).unwrap()
    }

    /// The spaces that have not exited.
    pub fn live(&self) -> Vec<usize> {
        (0..self.spaces.len()).filter(|&s| self.spaces[s].is_some()).collect()
    }

    /// Space `s`'s anon handle.
    pub fn handle(&self, s: usize) -> AnonHandle {
        anon_handle(self.sp(s).table.root())
    }

    // ---- the consistency checker

    /// Checks the whole family, which is every space of the world, at a
    /// quiescent point: with the swap area and the LRU lists when there
    /// are, the tables the table memory has out, and the holds of
    /// [`World::hold`] (so refcounts are exact). Returns each space's
    /// statistics (default for spaces that exited).
    pub fn try_check(&self) -> Result<Vec<Stats>, ConsistencyError> {
        self.try_check_in(true)
    }

    /// [`World::try_check`], with `quiescent` false for a state caught
    /// half-way (a folio locked, a swap-in claim held).
    pub fn try_check_in(&self, quiescent: bool) -> Result<Vec<Stats>, ConsistencyError> {
        let live = self.live();
        let spaces: Vec<_> = live.iter().map(|&s| (&self.sp(s).table, &self.sp(s).vmas)).collect();
        let area = self.frames.swap_area();
        let areas: Vec<&SwapArea> = area.into_iter().collect();
        let holds = |pfn: Pfn| self.holds_on(pfn);
        let scope = Scope {
            swap: area.map(|_| &areas[..]),
            lru: self.frames.lru_lists(),
            complete: true,
            quiescent,
            holds: Some(&holds),
            nr_tables: Some(*self.mem.live_tables.borrow()),
            window: self.check_window,
        };
        let stats = check_spaces_in(&spaces, &self.mem, &self.handles, self.memmap(), &scope)?;
        let mut all = vec![Stats::default(); self.spaces.len()];
        for (s, st) in live.into_iter().zip(stats) {
            all[s] = st;
        }
        Ok(all)
    }

    /// The references [`World::hold`]s keep on the folio headed by `head`
    /// (a pin counts [`crate::folio::PIN_BIAS`] on a small folio, one on a
    /// large one), plus those tests declared ([`World::declare_refs`]).
    pub fn holds_on(&self, head: Pfn) -> i32 {
        let held = self.holds.borrow();
        held.iter()
            .filter_map(|&(pa, hold)| {
                let f = folio_of(self.memmap(), pa.pfn())?;
                (f.pfn() == head).then(|| match hold {
                    Hold::Pin if !f.is_large() => crate::folio::PIN_BIAS,
                    _ => 1,
                })
            })
            .sum::<i32>()
            + self.extra_refs.borrow().iter().filter(|&&(pfn, _)| pfn == head).map(|&(_, n)| n).sum::<i32>()
    }

    /// Pins `folio` as a `FOLL_PIN` user would ([`Folio::pin`]), telling
    /// the checker ([`World::declare_refs`]).
    pub fn pin(&self, folio: Folio<'static>) {
        folio.pin();
        self.declare_refs(folio.pfn(), if folio.is_large() { 1 } else { crate::folio::PIN_BIAS });
    }

    /// Drops a pin of [`World::pin`]; `true` when that was the last
    /// reference ([`Folio::unpin`]).
    pub fn unpin(&self, folio: Folio<'static>) -> bool {
        self.declare_refs(folio.pfn(), if folio.is_large() { -1 } else { -crate::folio::PIN_BIAS });
        folio.unpin()
    }

    /// Tells the checker that the test holds `n` more references on the
    /// folio headed by `head` (negative to take them back), so its
    /// refcount check stays exact.
    pub fn declare_refs(&self, head: Pfn, n: i32) {
        self.extra_refs.borrow_mut().push((head, n));
    }

    /// The checker over the family ([`World::try_check`]), and the
    /// allocator's, the swap area's and the LRU lists' own checks.
    pub fn check(&self) -> Vec<Stats> {
        self.check_in(true)
    }

    /// [`World::check`], with `quiescent` false for a state caught
    /// half-way ([`World::try_check_in`]).
    pub fn check_in(&self, quiescent: bool) -> Vec<Stats> {
        self.frames.fa().check_consistency().unwrap();
        if let Some(area) = self.frames.swap_area() {
            area.check().unwrap_or_else(|e| panic!("swap area: {e}"));
        }
        if let Some(lru) = self.frames.lru_lists() {
            lru.check().unwrap_or_else(|e| panic!("lru: {e}"));
        }
        self.try_check_in(quiescent).unwrap_or_else(|e| panic!("checker: {e}"))
    }

    /// Space `s`'s statistics, after a full [`World::check`].
    pub fn stats(&self, s: usize) -> Stats {
        self.check()[s]
    }

    // ---- looking at the tables

    /// Every entry of every live space, for "nothing changed" checks.
    pub fn entries(&self) -> Vec<(usize, VirtAddr, Level, Decoded)> {
        let mut all = Vec::new();
        for s in self.live() {
            self.sp(s).table.visit(&self.mem, va(0), va(USER_END), &mut |at, level, e, _| {
                all.push((s, at, level, e));
            });
        }
        all
    }

    pub fn lookup(&self, s: usize, at: u64) -> (Level, Decoded) {
        self.sp(s).table.lookup(&self.mem, va(at))
    }

    /// The leaf mapping `at`.
    ///
    /// # Panics
    /// When there is none.
    pub fn leaf(&self, s: usize, at: u64) -> (Level, Leaf) {
        match self.lookup(s, at) {
            (level, Decoded::Leaf(leaf)) => (level, leaf),
            other => panic!("{at:#x}: no leaf but {other:?}"),
        }
    }

    /// The swap entry at `at` and its exclusive bit, if a PTE holds one.
    pub fn swap_pte(&self, s: usize, at: u64) -> Option<(SwapEntry, bool)> {
        match self.lookup(s, at) {
            (Level::Pte, Decoded::NonPresent(NonPresent::Swap { entry, exclusive })) => {
                Some((entry, exclusive))
            }
            _ => None,
        }
    }

    /// The folio mapped at `at`.
    pub fn folio_at(&self, s: usize, at: u64) -> Folio<'static> {
        let pa = self.sp(s).table.translate(&self.mem, va(at)).expect("mapped");
        folio_of(self.memmap(), pa.pfn()).expect("a folio")
    }

    // ---- the CPU

    /// The fault handler, called directly (a not-mapped fault).
    pub fn fault(&self, s: usize, at: u64, access: Access) -> FaultOutcome {
        let sp = self.sp(s);
        let fault = MemFault { addr: va(at), access, cause: FaultCause::NotMapped, level: None, syndrome: 0 };
        handle_fault(&sp.table, &sp.vmas, &self.mem, &self.frames, &self.tlb, &fault, true)
    }

    /// An access by user code of space `s`, as a CPU makes it (module
    /// doc). Returns the physical address used and what the faults went
    /// through, or the event that ended the task.
    pub fn access(&self, s: usize, at: u64, how: HwAccess) -> Result<(PhysAddr, Vec<Ev>), Ev> {
        let sp = self.sp(s);
        let mut events = Vec::new();
        for _ in 0..6 {
            match self.tlb.translate(&self.mem, sp.table.root(), va(at), how) {
                Ok(t) => {
                    let now = sp.table.translate(&self.mem, va(at));
                    assert_eq!(Some(t.pa), now, "{at:#x}: the CPU used a stale translation");
                    return Ok((t.pa, events));
                }
                Err(fault) => {
                    let cause = match fault {
                        HwFault::NotMapped { .. } => FaultCause::NotMapped,
                        HwFault::Permission { .. } => FaultCause::Protection,
                        HwFault::AccessFlag { .. } => FaultCause::AccessFlag,
                        HwFault::Reserved { level } => panic!("{at:#x}: reserved-bit fault at {level:?}"),
                    };
                    let fault =
                        MemFault { addr: va(at), access: how.access, cause, level: None, syndrome: 0 };
                    let out =
                        handle_fault(&sp.table, &sp.vmas, &self.mem, &self.frames, &self.tlb, &fault, true);
                    events.push(Ev::Fault(out));
                    match out {
                        FaultOutcome::Refused(_) | FaultOutcome::OutOfMemory => return Err(Ev::Fault(out)),
                        FaultOutcome::NeedsSwapIn { page, entry } => {
                            let r = self.swap_in(s, page.as_u64(), entry, how.access == Access::Write);
                            events.push(Ev::SwapIn(r.clone()));
                            if let Err(SwapInError::Io(_) | SwapInError::NoMemory) = r {
                                return Err(Ev::SwapIn(r));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        panic!("{at:#x}: still faulting after {events:?}");
    }

    /// User code of space `s` writes the byte `value` at `at`; returns what
    /// the faults went through.
    pub fn write(&self, s: usize, at: u64, value: u8) -> Vec<Ev> {
        let (pa, events) =
            self.access(s, at, HwAccess::USER_WRITE).unwrap_or_else(|e| panic!("write at {at:#x}: {e:?}"));
        self.frames.set_byte(pa, value);
        events
    }

    /// User code of space `s` reads the byte at `at`.
    pub fn read(&self, s: usize, at: u64) -> u8 {
        let (pa, _) =
            self.access(s, at, HwAccess::USER_READ).unwrap_or_else(|e| panic!("read at {at:#x}: {e:?}"));
        self.frames.byte(pa)
    }

    /// Writes [`pattern`] of `seed` into every page of `[start, start +
    /// len)`, at [`offset_in`].
    pub fn fill(&self, s: usize, start: u64, len: u64, seed: u8) {
        for p in (start..start + len).step_by(PAGE as usize) {
            self.write(s, p + offset_in(p), pattern(p, seed));
        }
    }

    /// Checks what [`World::fill`] wrote.
    pub fn expect_filled(&self, s: usize, start: u64, len: u64, seed: u8) {
        for p in (start..start + len).step_by(PAGE as usize) {
            assert_eq!(self.read(s, p + offset_in(p)), pattern(p, seed), "space {s}, page {p:#x}");
        }
    }

    /// User code of space `s` writes page `p` whole with version `tag`.
    pub fn write_page(&self, s: usize, p: u64, tag: u8) -> Vec<Ev> {
        let (pa, events) =
            self.access(s, p, HwAccess::USER_WRITE).unwrap_or_else(|e| panic!("write of {p:#x}: {e:?}"));
        self.frames.set_frame(pa.pfn(), page_bytes(p, tag));
        events
    }

    /// User code of space `s` reads page `p` whole.
    pub fn read_page(&self, s: usize, p: u64) -> (Bytes, Vec<Ev>) {
        let (pa, events) =
            self.access(s, p, HwAccess::USER_READ).unwrap_or_else(|e| panic!("read of {p:#x}: {e:?}"));
        (self.frames.frame(pa.pfn()), events)
    }

    /// Reads page `p` and wants version `tag`.
    pub fn expect_page(&self, s: usize, p: u64, tag: u8) -> Vec<Ev> {
        let (bytes, events) = self.read_page(s, p);
        assert!(bytes == page_bytes(p, tag), "space {s}, page {p:#x}: not version {tag}");
        events
    }

    // ---- swap-in (kernel/src/vm/fault.rs `swap_in`)

    /// Half 1, without the space's lock: the folio of `entry`, locked;
    /// an intact run is read whole (the kernel looks at the table under
    /// the space's lock).
    pub fn swap_in_half1(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
    ) -> Result<(Folio<'static>, usize), SwapInError<String>> {
        let sp = self.sp(s);
        let run = || intact_run(&sp.table, &self.mem, &sp.vmas, va(page), entry);
        let window = || readahead_window(&sp.table, &self.mem, &sp.vmas, va(page), entry);
        self.listed_if_read(|| {
            let options = SwapInOptions { run: Some(&run), window: Some(&window) };
            get_swapped_folio(
                self.area(),
                self.memmap(),
                &self.frames,
                entry,
                self.handle(s),
                page >> 12,
                options,
            )
        })
    }

    /// Half 1 as a path that reads the one page whatever the table holds.
    pub fn swap_in_half1_small(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
    ) -> Result<(Folio<'static>, usize), SwapInError<String>> {
        self.listed_if_read(|| {
            let (memmap, options) = (self.memmap(), SwapInOptions::default());
            get_swapped_folio(self.area(), memmap, &self.frames, entry, self.handle(s), page >> 12, options)
        })
    }

    /// Runs half 1 (`get`); a folio it read from the disk is new and goes
    /// on the LRU lists, when there are lists. (`mm::swap::swapin` adds it
    /// to the kernel's registered lists; a world's lists are its own, not
    /// registered.)
    fn listed_if_read(
        &self,
        get: impl FnOnce() -> Result<(Folio<'static>, usize), SwapInError<String>>,
    ) -> Result<(Folio<'static>, usize), SwapInError<String>> {
        let calls = self.frames.nr_read_calls();
        let got = get()?;
        if let Some(lru) = self.frames.lru_lists() {
            if self.frames.nr_read_calls() != calls {
                lru.add(got.0);
            }
        }
        Ok(got)
    }

    /// Half 2, under the space's lock; then, as the kernel does, the folio
    /// leaves the swap cache if nobody needs it there (unmapped, no entry
    /// holding its slots: the entry changed meanwhile), is unlocked and the
    /// caller's reference dropped.
    pub fn swap_in_half2(
        &self,
        s: usize,
        (folio, i): (Folio<'static>, usize),
        page: u64,
        entry: SwapEntry,
        write: bool,
    ) -> SwapInOutcome {
        let sp = self.sp(s);
        let out = map_swapped_in(
            &sp.table,
            &self.mem,
            &sp.vmas,
            self.area(),
            &folio,
            i,
            va(page),
            entry,
            write,
            true,
        );
        if self.host.map_around.get() && matches!(out, SwapInOutcome::Mapped { .. }) {
            let free = |f: Folio<'static>| self.frames.free(f);
            let n = map_around(
                &sp.table,
                &self.mem,
                &sp.vmas,
                self.area(),
                self.memmap(),
                va(page),
                entry,
                true,
                &free,
            );
            self.host.nr_mapped_around.set(self.host.nr_mapped_around.get() + n as u64);
        }
        delete_if_unused(self.area(), &folio, IfMapped::Keep);
        folio.unlock();
        self.frames.put(folio);
        out
    }

    /// Both halves.
    pub fn swap_in(
        &self,
        s: usize,
        page: u64,
        entry: SwapEntry,
        write: bool,
    ) -> Result<SwapInOutcome, SwapInError<String>> {
        let got = self.swap_in_half1(s, page, entry)?;
        Ok(self.swap_in_half2(s, got, page, entry, write))
    }

    // ---- system calls

    pub fn mmap(&mut self, s: usize, start: u64, len: u64, prot: VmaProt) {
        self.sp_mut(s).vmas.map_fixed(va(start), len, prot, VmaKind::Anonymous).unwrap();
    }

    /// `n` pages from `start`, mapped 4 KiB each (no THP) and written with
    /// version `tag`.
    pub fn small_pages(&mut self, s: usize, start: u64, n: u64, tag: u8) {
        self.mmap(s, start, n * PAGE, RW);
        self.advise_thp(s, start, n * PAGE, ThpMode::Never);
        for p in pages(start, n) {
            self.write_page(s, p, tag);
        }
    }

    /// A THP at `base` (2 MiB-aligned) mapped by a PMD, written with `tag`.
    pub fn thp(&mut self, s: usize, base: u64, tag: u8) -> Folio<'static> {
        self.mmap(s, base, HP, RW);
        self.advise_thp(s, base, HP, ThpMode::Always);
        for p in pages(base, NR_HP) {
            self.write_page(s, p, tag);
        }
        assert_eq!(self.leaf(s, base).0, Level::Pmd, "no 2 MiB block for the THP");
        self.folio_at(s, base)
    }

    /// Unmaps `ranges` of space `s`'s table into a gather, flushes, gives
    /// the swap entries their counts back, releases the references.
    pub fn zap(&self, s: usize, ranges: &[(VirtAddr, VirtAddr)]) {
        let sp = self.sp(s);
        let gather = zap_locked(&self.frames, &sp.table, &self.mem, &self.tlb, ranges);
        zap_release(&self.frames, gather);
    }

    /// munmap: areas, then entries; the references after the flush.
    pub fn munmap(&mut self, s: usize, start: u64, len: u64) {
        let ranges = self.sp_mut(s).vmas.unmap(va(start), len).unwrap();
        let sp = self.sp(s);
        let mut gather = zap_locked(&self.frames, &sp.table, &self.mem, &self.tlb, &ranges);
        free_pgtables_locked(&sp.table, &sp.vmas, &self.mem, &self.tlb, &ranges, &mut gather);
        zap_release(&self.frames, gather);
    }

    /// `MADV_DONTNEED` over a wholly mapped range.
    pub fn dontneed(&self, s: usize, start: u64, len: u64) {
        let end = self.sp(s).vmas.check_mapped(va(start), len).unwrap();
        self.zap(s, &[(va(start), end)]);
    }

    /// `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE` as the kernel does them: the
    /// areas' mode, then a PMD cut by a new area boundary is split.
    pub fn advise_thp(&mut self, s: usize, start: u64, len: u64, mode: ThpMode) {
        self.sp_mut(s).vmas.advise_thp(va(start), len, mode).unwrap();
        let sp = self.sp(s);
        for at in [va(start), va(start + len)] {
            if sp.vmas.is_boundary(at) {
                split_huge_pmd_if_cut(&sp.table, &self.mem, &self.tlb, self.memmap(), at).unwrap();
            }
        }
    }

    /// mprotect: areas, then leaves; the flush before returning.
    pub fn mprotect(&mut self, s: usize, start: u64, len: u64, prot: VmaProt) {
        let ranges = self.sp_mut(s).vmas.protect(va(start), len, prot).unwrap();
        let sp = self.sp(s);
        let mut flush = Flush::none(sp.table.root());
        for (a, b) in ranges {
            let f = protect_range(&sp.table, &self.mem, &self.tlb, self.memmap(), a, b, prot.to_prot(true))
                .unwrap();
            flush = flush.merge(f);
        }
        flush.flush(&self.tlb);
    }

    /// fork: a child with the same areas and the anonymous pages shared
    /// (or copied when maybe pinned), swap entries duplicated. Returns the
    /// child's id.
    pub fn fork(&mut self, s: usize) -> usize {
        let table = PageTable::<F>::new(&self.mem).unwrap();
        let parent = self.sp(s);
        let mut flush = Flush::none(parent.table.root());
        let handle = anon_handle(table.root());
        fork_range(&parent.table, &table, &self.mem, &self.frames, handle, va(0), va(USER_END), &mut flush)
            .unwrap();
        flush.flush(&self.tlb);
        let vmas = parent.vmas.clone();
        self.add_space(table, vmas)
    }

    /// [`World::fork`], also returning how many table entries it read and
    /// wrote (both trees) and the walker barriers it would cost
    /// ([`TableWork`]).
    pub fn fork_counting(&mut self, s: usize) -> (usize, TableWork) {
        let counting = CountingTables { mem: &self.mem, work: Cell::new(TableWork::default()) };
        let table = PageTable::<F>::new(&self.mem).unwrap();
        let parent = self.sp(s);
        let mut flush = Flush::none(parent.table.root());
        let handle = anon_handle(table.root());
        fork_range(&parent.table, &table, &counting, &self.frames, handle, va(0), va(USER_END), &mut flush)
            .unwrap();
        flush.flush(&self.tlb);
        let (vmas, work) = (parent.vmas.clone(), counting.work.get());
        (self.add_space(table, vmas), work)
    }

    /// fork as the kernel does it when memory runs out: the child's tables
    /// may take only `tables` new frames (the root included), and when
    /// `fork_range` fails the child is torn down at once (the kernel drops
    /// it). Returns the child's id, or the error, with the child gone.
    pub fn try_fork_with_tables(&mut self, s: usize, tables: u32) -> Result<usize, ForkError> {
        let limited = LimitedTables { mem: &self.mem, left: Cell::new(tables) };
        let table = PageTable::<F>::new(&limited).map_err(|_| ForkError::OutOfMemory { va: va(0) })?;
        let parent = self.sp(s);
        let mut flush = Flush::none(parent.table.root());
        let handle = anon_handle(table.root());
        let result = fork_range(
            &parent.table,
            &table,
            &limited,
            &self.frames,
            handle,
            va(0),
            va(USER_END),
            &mut flush,
        );
        flush.flush(&self.tlb);
        let vmas = parent.vmas.clone();
        let child = self.add_space(table, vmas);
        match result {
            Ok(()) => Ok(child),
            Err(e) => {
                self.exit(child);
                Err(e)
            }
        }
    }

    /// The space goes away: every mapping, then the tables.
    pub fn exit(&mut self, s: usize) {
        self.zap(s, &[(va(0), va(USER_END))]);
        let sp = self.spaces[s].take().unwrap();
        let root = sp.table.root();
        sp.table.destroy(&self.mem, 0..0);
        // The root frame may come back as another space's root: a kernel
        // flushes an address space identifier before reusing it.
        self.tlb.flush_all(root);
    }

    /// A hold (a `FOLL_GET` reference or a pin) on the page at `at`
    /// (write: as for a device that writes into it), after faulting it in
    /// if needed.
    pub fn hold(&self, s: usize, at: u64, write: bool, hold: Hold) -> PhysAddr {
        let how = if write { HwAccess::USER_WRITE } else { HwAccess::USER_READ };
        self.access(s, at, how).unwrap();
        let sp = self.sp(s);
        let pa = get_user_page(&sp.table, &sp.vmas, &self.mem, &self.frames, &self.tlb, va(at), write, hold)
            .unwrap();
        self.holds.borrow_mut().push((pa, hold));
        pa
    }

    /// Drops a hold from [`World::hold`].
    pub fn unhold(&self, pa: PhysAddr, hold: Hold) {
        let mut held = self.holds.borrow_mut();
        if let Some(i) = held.iter().position(|&h| h == (pa, hold)) {
            held.swap_remove(i);
        }
        drop(held);
        if let Some(folio) = release(self.memmap(), pa, hold) {
            self.frames.free(folio);
        }
    }

    // ---- the allocator

    /// Takes every free 2 MiB block (or larger) and gives back half of
    /// each: memory is left, but no order-9 block.
    pub fn fragment(&self) {
        let fa = self.frames.fa();
        let mut kept = Vec::new();
        while let Ok(pfn) = fa.alloc(9, AllocKind::Reserve) {
            kept.push(pfn);
        }
        for &pfn in &kept {
            fa.free(pfn.plus(256), 8);
        }
        assert_eq!(fa.nr_free_blocks(9) + fa.nr_free_blocks(10), 0);
        self.fragments.borrow_mut().extend(kept);
    }

    /// True between [`World::fragment`] and [`World::unfragment`].
    pub fn is_fragmented(&self) -> bool {
        !self.fragments.borrow().is_empty()
    }

    /// Gives back what [`World::fragment`] took.
    pub fn unfragment(&self) {
        for pfn in self.fragments.borrow_mut().drain(..) {
            self.frames.fa().free(pfn, 8);
        }
    }

    /// Every space exits; every frame, table and swap slot must be back,
    /// with no folio left in the swap cache (tests that leave some behind
    /// on purpose run [`World::reclaim_cache`] first) nor on the LRU
    /// lists; then the huge zero folio goes too and the allocator is whole.
    pub fn finish(mut self) {
        self.unfragment();
        for s in self.live() {
            self.exit(s);
        }
        assert_eq!(self.try_check(), Ok(vec![Stats::default(); self.spaces.len()]));
        if let Some(area) = self.frames.swap_area() {
            assert_eq!(area.nr_in_cache(), 0, "folios left in the swap cache");
            assert_eq!(area.nr_used(), 0, "swap slots leaked");
            area.check().unwrap();
        }
        if let Some(lru) = self.frames.lru_lists() {
            assert_eq!((lru.nr_active(), lru.nr_inactive()), (0, 0), "folios left on the lists");
        }
        assert_eq!(self.nr_free(), self.free_at_start, "folios leaked");
        assert_eq!(*self.mem.live_tables.borrow(), 0, "tables leaked");
        if self.frames.zero_pfn().is_some() {
            let zero = self.zero_folio();
            assert_eq!((zero.refcount(), zero.total_mapcount()), (1, 0), "the huge zero folio");
            self.frames.put(zero);
        }
        assert_eq!(self.frames.nr_data_frames(), 0, "data frames still handed out");
        self.frames.fa().check_consistency().unwrap();
    }
}

// ---- the steps both worlds share

/// The part of an unmap done under the space's lock: `ranges` of `table`
/// into a gather, and the flush. Folios a split frees on the way go back
/// at once.
pub fn zap_locked<F: HardwareWalker>(
    frames: &SimFrames,
    table: &PageTable<F>,
    mem: &SimMemory,
    tlb: &SoftTlb<F>,
    ranges: &[(VirtAddr, VirtAddr)],
) -> Gather {
    let mut gather = Gather::new(table.root());
    for &(a, b) in ranges {
        zap_range(table, mem, tlb, frames.memmap(), a, b, &mut gather, &mut |f| frames.free(f)).unwrap();
    }
    gather.take_flush().flush(tlb);
    gather
}

/// munmap's second step, as the kernel's: after [`zap_locked`] of the
/// `ranges` the areas lost, unhooks the tables wholly inside the gap
/// around them ([`free_pgtables`]), flushes, and frees those tables.
pub fn free_pgtables_locked<F: HardwareWalker>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &SimMemory,
    tlb: &SoftTlb<F>,
    ranges: &[(VirtAddr, VirtAddr)],
    gather: &mut Gather,
) {
    let (Some(&(start, _)), Some(&(_, end))) = (ranges.first(), ranges.last()) else { return };
    let (floor, ceiling) = vmas.gap_around(start, end);
    free_pgtables(table, mem, start, end, floor, ceiling, gather);
    gather.take_flush().flush(tlb);
    gather.free_tables(mem);
}

/// The rest, after the lock: the swap entries' counts, then the
/// references the entries held (a swap cache folio whose last mapping
/// went leaves the cache when nobody needs it,
/// [`SimFrames::drop_unmapped_cache_folio`]).
pub fn zap_release(frames: &SimFrames, mut gather: Gather) {
    for e in gather.take_swap_entries() {
        frames.free_swap_entry(e);
    }
    gather.release_unmapped(frames.memmap(), &mut |f| frames.drop_unmapped_cache_folio(f), &mut |f| {
        frames.free(f)
    });
}

/// What [`SharedSpace`]'s lock guards, as the kernel's `Inner`.
pub struct Inner<F: HardwareWalker> {
    pub table: PageTable<F>,
    pub vmas: VmaSet,
    pub mem: SimMemory,
    pub tlb: SoftTlb<F>,
}

/// One address space behind a lock, over [`SimFrames`], for the race
/// tests (module doc). Tables in `SimMemory` at 0x1000_0000 (64 frames).
pub struct SharedSpace<F: HardwareWalker> {
    inner: Lock<Inner<F>>,
    pub frames: SimFrames,
    /// The space's anon handle.
    pub handle: AnonHandle,
    free_at_start: u64,
}

impl<F: HardwareWalker> SharedSpace<F> {
    /// A space over `frames` with the read-write anonymous areas `areas`
    /// (start, length), leaked so that threads may share it.
    pub fn new(frames: SimFrames, areas: &[(u64, u64)]) -> &'static SharedSpace<F> {
        let mem = SimMemory::new(0x1000_0000, 64);
        let table = PageTable::new(&mem).unwrap();
        let handle = anon_handle(table.root());
        let mut vmas = VmaSet::new(va(0x1000), va(USER_END));
        for &(start, len) in areas {
            vmas.map_fixed(va(start), len, VmaProt::READ_WRITE, VmaKind::Anonymous).unwrap();
        }
        let free_at_start = frames.nr_free();
        let inner = Lock::new(Inner { table, vmas, mem, tlb: SoftTlb::default() });
        Box::leak(Box::new(SharedSpace { inner, frames, handle, free_at_start }))
    }

    /// Runs `f` under the space's lock.
    pub fn locked<T>(&self, f: impl FnOnce(&mut Inner<F>) -> T) -> T {
        f(&mut self.inner.lock())
    }

    pub fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }

    /// The fault handler under the lock (a not-mapped fault at `at`).
    pub fn fault(&self, at: u64, access: Access) -> FaultOutcome {
        let fault = MemFault { addr: va(at), access, cause: FaultCause::NotMapped, level: None, syndrome: 0 };
        self.locked(|g| handle_fault(&g.table, &g.vmas, &g.mem, &self.frames, &g.tlb, &fault, true))
    }

    /// What the table holds at `at`, under the lock.
    pub fn lookup(&self, at: u64) -> (Level, Decoded) {
        self.locked(|g| g.table.lookup(&g.mem, va(at)))
    }

    /// The physical address `at` is mapped to, under the lock.
    pub fn translate(&self, at: u64) -> Option<PhysAddr> {
        self.locked(|g| g.table.translate(&g.mem, va(at)))
    }

    /// munmap of `[start, end)`: under the lock the areas, the entries,
    /// the mapcounts and the flush; then the swap counts and references.
    pub fn munmap(&self, start: u64, end: u64) {
        let gather = self.locked(|g| {
            let ranges = g.vmas.unmap(va(start), end - start).unwrap();
            let mut gather = zap_locked(&self.frames, &g.table, &g.mem, &g.tlb, &ranges);
            free_pgtables_locked(&g.table, &g.vmas, &g.mem, &g.tlb, &ranges, &mut gather);
            gather
        });
        zap_release(&self.frames, gather);
    }

    /// The checker (the one space is every space; with the swap area and
    /// the lists, when there are; at a quiescent point: called between the
    /// race's threads, not during them) and the area's own check.
    pub fn check(&self) -> Stats {
        let area = self.frames.swap_area();
        let areas: Vec<&SwapArea> = area.into_iter().collect();
        let stats = self.locked(|g| {
            let scope = Scope {
                swap: area.map(|_| &areas[..]),
                lru: self.frames.lru_lists(),
                complete: true,
                quiescent: true,
                holds: None,
                nr_tables: Some(*g.mem.live_tables.borrow()),
                window: 0,
            };
            check_spaces_in(&[(&g.table, &g.vmas)], &g.mem, &[self.handle], self.memmap(), &scope)
        });
        if let Some(area) = area {
            area.check().unwrap();
        }
        stats.unwrap_or_else(|e| panic!("consistency: {e}"))[0]
    }

    /// Unmaps everything; every frame and swap slot must be back.
    pub fn finish(&self) {
        self.munmap(0x1000, USER_END);
        if let Some(area) = self.frames.swap_area() {
            assert_eq!((area.nr_used(), area.nr_in_cache()), (0, 0), "swap slots or cache folios leaked");
            area.check().unwrap();
        }
        assert_eq!(self.frames.nr_free(), self.free_at_start, "frames leaked");
        assert_eq!(self.frames.nr_data_frames(), 0, "data frames still handed out");
        self.frames.fa().check_consistency().unwrap();
    }

    /// Pages allocated since the space was made and not freed.
    pub fn nr_taken(&self) -> u64 {
        self.free_at_start - self.frames.nr_free()
    }
}
