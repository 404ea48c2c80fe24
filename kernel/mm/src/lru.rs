//! The anonymous LRU lists: every anonymous folio that is mapped sits on
//! one of two lists, **active** and **inactive**, so that reclaim can find
//! the folios least likely to be used again without walking page tables.
//!
//! ## The lists
//!
//! Each list is doubly linked through the folio head's `list_next` /
//! `list_prev` (PFNs, [`NO_PFN`] at the ends), as the buddy free lists are
//! (`crate::frame`), with its head and tail PFN and its length in folios
//! and in pages. The head is the newest end, the tail the oldest. A large
//! folio is one element (its head page) and counts `2^order` pages: a
//! 2 MiB folio is one folio and 512 pages.
//!
//! | state | `Lru` | `Active` | who owns it |
//! | --- | --- | --- | --- |
//! | off the lists (new, or removed for freeing) | clear | clear | its references |
//! | on the inactive list | set | clear | the lists |
//! | on the active list | set | set | the lists |
//! | isolated ([`LruLists::isolate`], or one given folio by [`LruLists::isolate_folio`]) | clear | clear | reclaim or compaction, by the reference isolation took |
//!
//! ## The flag rule (seed 003, mm-reference §9)
//!
//! A folio is on a list **exactly when** its [`PageFlag::Lru`] is set, and
//! [`PageFlag::Active`] says which list. Both flags are changed only here,
//! only while holding the lists' lock, and only with atomic
//! read-modify-writes (`test_and_set`, `test_and_clear`, `set`, `clear` of
//! [`Folio`]); nothing writes the flags word as a whole once a folio is
//! published. Other CPUs change other bits of the same word at the same
//! time without this lock (`Referenced` from [`LruLists::mark_accessed`],
//! `Dirty`, `Locked`, ...), and an atomic change of one bit never undoes
//! theirs. Seed 003 was the opposite: a plain store of "swap-backed" put
//! back an `Lru` bit that isolation had just cleared, and the folio was
//! later taken off a list it was not on.
//!
//! `Referenced` is not covered by the lock: anyone holding a reference
//! sets it ([`LruLists::mark_accessed`]); the scans test-and-clear it.
//!
//! ## Lock
//!
//! One lock (`LruLists::lists`, a `crate::sync::Lock`) guards the list
//! heads, tails and counts, the `list_next` / `list_prev` of every member,
//! and the `Lru` and `Active` flags of every folio (members and folios
//! being put on or taken off).
//!
//! Locks: the lists' lock guards both lists, their links and the `Lru` and
//! `Active` flags; it comes after the folio lock and the address-space
//! locks in the kernel's one order (`docs/src/locking.md`). It is a leaf
//! apart from the folio atomics: while holding it, nothing here takes another lock,
//! allocates, or drops a reference (dropping the last one would have to
//! come back here to remove the folio). [`LruLists::isolate`] reserves its
//! vector before taking it. The kernel takes it with interrupts disabled,
//! as the frame allocator's, since the last reference of a folio may be
//! dropped anywhere and the free path takes it.
//!
//! A member's descriptor stays valid while the lock is held even when its
//! refcount is 0: the free path must [`LruLists::remove`] a folio (under
//! the lock) before `FrameAllocator::free_folio`, which refuses a folio
//! with `Lru` set. So the scans may look at and move any member, and take
//! a reference only on what they isolate.
//!
//! ## Who calls what
//!
//! - The fault path, after mapping a new anonymous folio: [`LruLists::add`]
//!   (the folio goes on the **inactive** head, see there why).
//! - Whoever drops the last reference of a folio ([`Folio::put`] returned
//!   `true`): [`LruLists::remove`], then frees it.
//! - Whoever sees a folio used (a fault on it, the accessed bit found set):
//!   [`LruLists::mark_accessed`].
//! - Reclaim: [`LruLists::balance`] or [`LruLists::shrink_active`] to age
//!   the active list into the inactive one, then [`LruLists::isolate`] to
//!   take folios from the inactive tail (a referenced folio gets a second
//!   chance on the active list instead), then for each isolated folio
//!   either swaps it out or [`LruLists::putback`]s it, and drops the
//!   reference `isolate` took.
//!
//! - `MADV_COLD` (`crate::pageout::deactivate_range`): [`LruLists::deactivate`]
//!   for each folio of the range that the space maps alone.
//!
//! - Compaction's migrate scanner (`crate::compaction`), which finds folios
//!   by PFN: [`LruLists::isolate_folio`] for each one it moves, then
//!   [`LruLists::putback`] of the folio it moved (or of the source, when
//!   the move failed) on the list it came from, and drops its reference.
//!
//! A folio must be off the lists (isolated, or never added) while it is
//! split: a list element is a head, and its page count is its order.
//!
//! ## Policies
//!
//! - **New folios go on the inactive list.** A burst of anonymous memory
//!   touched once (a large buffer filled and dropped) then ages out without
//!   pushing the established working set off the active list; a folio used
//!   again is promoted at its first scan. Linux placed new anon folios on
//!   the active list until 5.8 and on the inactive list since 5.9 (with
//!   workingset detection for anon), for the same reason.
//! - **Second chance.** [`LruLists::isolate`] moves a folio whose
//!   `Referenced` is set to the active head (clearing `Referenced`) instead
//!   of isolating it. The young (accessed) bits of the leaves are a second
//!   source, looked at outside this lock: reclaim's scan tests and clears
//!   them through the reverse map for each folio it isolated
//!   (`crate::reclaim::test_and_clear_young`, under the family's locks)
//!   and puts a young one back on the active head instead of writing it.
//! - **Deactivation.** [`LruLists::shrink_active`] moves folios from the
//!   active tail to the inactive head unconditionally, clearing
//!   `Referenced`: a folio must be used again while inactive to come back.
//!   (Linux deactivates anon folios even when referenced as well; only
//!   executable file pages get another round on the active list.)
//! - **Cold.** [`LruLists::deactivate`] (`MADV_COLD`) moves a given folio
//!   to the inactive **tail**, clearing `Active` and `Referenced`: the
//!   program said it will not use it soon, so reclaim takes it before
//!   anything that merely aged. (Linux puts such folios at the inactive
//!   head; the tail follows the advice more literally and is what makes
//!   the effect observable in a test.)
//! - **Balance.** The inactive list is kept at least as large as the active
//!   one, in pages ([`LruLists::inactive_is_low`]): Linux's ratio for anon
//!   on machines under 1 GiB, and simple to reason about.

use crate::addr::Pfn;
use crate::folio::{folio_of, Folio};
use crate::page::{Memmap, Page, PageFlag, NO_PFN};
use crate::sync::{Lock, Ordering};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One of the two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LruList {
    /// Folios not used since they were added or deactivated: reclaim's
    /// candidates. `Active` clear.
    Inactive,
    /// Folios used again while inactive. `Active` set.
    Active,
}

impl LruList {
    /// The list a member with these flags is on.
    fn of(active: bool) -> LruList {
        if active {
            LruList::Active
        } else {
            LruList::Inactive
        }
    }
}

/// The lengths of both lists, read together under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LruCounts {
    /// Folios on the active list.
    pub nr_active: u64,
    /// Folios on the inactive list.
    pub nr_inactive: u64,
    /// Pages of the folios on the active list.
    pub nr_active_pages: u64,
    /// Pages of the folios on the inactive list.
    pub nr_inactive_pages: u64,
}

/// What one [`LruLists::isolate`] did.
#[derive(Debug, Default)]
pub struct Scan {
    /// The folios taken off the inactive list, oldest first, each with a
    /// reference the caller now owns and `Lru` clear.
    pub isolated: Vec<Folio<'static>>,
    /// Folios looked at (isolated, rotated or skipped).
    pub nr_scanned: usize,
    /// Referenced folios moved to the active list (second chance).
    pub nr_rotated: usize,
    /// Folios left in place because their refcount was 0 (being freed).
    pub nr_skipped: usize,
}

/// One list: its ends and its length. Guarded by the lists' lock.
#[derive(Debug, Clone, Copy)]
struct List {
    /// The newest folio's head PFN, or [`NO_PFN`].
    head: u64,
    /// The oldest folio's head PFN, or [`NO_PFN`].
    tail: u64,
    nr_folios: u64,
    nr_pages: u64,
}

impl List {
    const EMPTY: List = List { head: NO_PFN, tail: NO_PFN, nr_folios: 0, nr_pages: 0 };
}

/// Everything the lists' lock guards (with the members' links and flags).
struct Lists {
    inactive: List,
    active: List,
}

/// The active and inactive anonymous LRU lists over one [`Memmap`]. See
/// the module doc for the protocol.
pub struct LruLists {
    memmap: &'static Memmap,
    /// Leaf lock: both lists, their members' links, `Lru` and `Active`.
    lists: Lock<Lists>,
}

fn page(memmap: &Memmap, pfn: u64) -> &'static Page {
    memmap.get_raw(pfn).expect("lru: pfn outside the memmap")
}

impl Lists {
    fn list(&mut self, which: LruList) -> &mut List {
        match which {
            LruList::Inactive => &mut self.inactive,
            LruList::Active => &mut self.active,
        }
    }

    /// Links the folio head `pfn` of `nr_pages` at the head of `which`.
    fn push_head(&mut self, memmap: &Memmap, pfn: u64, nr_pages: u64, which: LruList) {
        let list = self.list(which);
        let desc = page(memmap, pfn);
        desc.list_prev.store(NO_PFN, Ordering::Relaxed);
        desc.list_next.store(list.head, Ordering::Relaxed);
        if list.head == NO_PFN {
            list.tail = pfn;
        } else {
            page(memmap, list.head).list_prev.store(pfn, Ordering::Relaxed);
        }
        list.head = pfn;
        list.nr_folios += 1;
        list.nr_pages += nr_pages;
    }

    /// Links the folio head `pfn` of `nr_pages` at the tail (oldest end) of
    /// `which`.
    fn push_tail(&mut self, memmap: &Memmap, pfn: u64, nr_pages: u64, which: LruList) {
        let list = self.list(which);
        let desc = page(memmap, pfn);
        desc.list_next.store(NO_PFN, Ordering::Relaxed);
        desc.list_prev.store(list.tail, Ordering::Relaxed);
        if list.tail == NO_PFN {
            list.head = pfn;
        } else {
            page(memmap, list.tail).list_next.store(pfn, Ordering::Relaxed);
        }
        list.tail = pfn;
        list.nr_folios += 1;
        list.nr_pages += nr_pages;
    }

    /// Unlinks the folio head `pfn` of `nr_pages` from `which`, and leaves
    /// its links at [`NO_PFN`].
    fn unlink(&mut self, memmap: &Memmap, pfn: u64, nr_pages: u64, which: LruList) {
        let list = self.list(which);
        let desc = page(memmap, pfn);
        let next = desc.list_next.load(Ordering::Relaxed);
        let prev = desc.list_prev.load(Ordering::Relaxed);
        if prev == NO_PFN {
            list.head = next;
        } else {
            page(memmap, prev).list_next.store(next, Ordering::Relaxed);
        }
        if next == NO_PFN {
            list.tail = prev;
        } else {
            page(memmap, next).list_prev.store(prev, Ordering::Relaxed);
        }
        list.nr_folios -= 1;
        list.nr_pages -= nr_pages;
        desc.list_next.store(NO_PFN, Ordering::Relaxed);
        desc.list_prev.store(NO_PFN, Ordering::Relaxed);
    }
}

impl LruLists {
    /// Two empty lists for the folios of `memmap`.
    pub const fn new(memmap: &'static Memmap) -> LruLists {
        LruLists { memmap, lists: Lock::new(Lists { inactive: List::EMPTY, active: List::EMPTY }) }
    }

    /// The memmap whose folios these lists hold.
    pub fn memmap(&self) -> &'static Memmap {
        self.memmap
    }

    /// The member whose head is `pfn`, as a [`Folio`] (no reference taken).
    /// Called under the lock, where members stay folios.
    fn member(&self, pfn: u64) -> Folio<'static> {
        folio_of(self.memmap, Pfn::new(pfn))
            .unwrap_or_else(|| panic!("lru: member pfn {pfn:#x} is not a folio"))
    }

    /// Puts a newly mapped anonymous folio on the **inactive** list's head
    /// (why inactive: the module doc's policies) and sets `Lru`, clearing
    /// `Active`.
    ///
    /// Precondition: the caller holds a reference (the new mapping's) and
    /// the folio is published and on no list.
    ///
    /// # Panics
    ///
    /// When the folio already has `Lru` set (added twice, or put back
    /// without being isolated: a kernel bug that would corrupt the lists).
    pub fn add(&self, folio: Folio<'_>) {
        debug_assert!(core::ptr::eq(folio.memmap(), self.memmap), "LruLists::add: folio of another memmap");
        debug_assert!(folio.refcount() > 0, "LruLists::add: pfn {:#x} without a reference", folio.pfn());
        let mut lists = self.lists.lock();
        let was_on = folio.test_and_set_flag(PageFlag::Lru);
        assert!(!was_on, "LruLists::add: pfn {:#x} is already on a list", folio.pfn());
        folio.clear_flag(PageFlag::Active);
        lists.push_head(self.memmap, folio.pfn().as_u64(), folio.nr_pages() as u64, LruList::Inactive);
    }

    /// Takes `folio` off whichever list it is on, if `Lru` is set, clearing
    /// `Lru` and `Active`; returns whether it was on one. An isolated
    /// folio is on none, and `false` is the answer.
    ///
    /// This is the free path's step: whoever drops a folio's last reference
    /// calls it before `FrameAllocator::free_folio`. Precondition: the
    /// caller holds a reference, or dropped the last one (and so is the
    /// only one left who may free the folio).
    pub fn remove(&self, folio: Folio<'_>) -> bool {
        debug_assert!(
            core::ptr::eq(folio.memmap(), self.memmap),
            "LruLists::remove: folio of another memmap"
        );
        let mut lists = self.lists.lock();
        if !folio.test_and_clear_flag(PageFlag::Lru) {
            return false;
        }
        let which = LruList::of(folio.test_and_clear_flag(PageFlag::Active));
        lists.unlink(self.memmap, folio.pfn().as_u64(), folio.nr_pages() as u64, which);
        true
    }

    /// Reclaim's scan: looks at up to `nr_to_scan` folios from the tail
    /// (oldest end) of the inactive list, and for each, in this order:
    ///
    /// 1. refcount 0: the folio is being freed; it is **skipped** and left
    ///    in place for the free path's [`LruLists::remove`];
    /// 2. `Referenced` set: **second chance**, `Referenced` is cleared and
    ///    the folio moves to the active list's head;
    /// 3. otherwise it is **isolated**: a reference is taken
    ///    ([`Folio::try_get`]; if the count dropped to 0 meanwhile it is
    ///    skipped as in 1), `Lru` cleared, and it is unlinked.
    ///
    /// The caller owns each isolated folio's reference: it either reclaims
    /// the folio or hands it back with [`LruLists::putback`], then drops
    /// the reference (and, if that was the last, removes and frees it as
    /// the free path does).
    ///
    /// The result vector is reserved before the lock is taken, for at most
    /// as many folios as the inactive list holds at that moment; the scan
    /// stops early when it is full (folios added meanwhile are at the other
    /// end anyway).
    ///
    /// Precondition: none (the lock keeps members alive).
    pub fn isolate(&self, nr_to_scan: usize) -> Scan {
        let room = nr_to_scan.min(usize::try_from(self.nr_inactive()).unwrap_or(usize::MAX));
        let mut scan = Scan { isolated: Vec::with_capacity(room), ..Scan::default() };
        let mut lists = self.lists.lock();
        let mut pfn = lists.inactive.tail;
        while pfn != NO_PFN && scan.nr_scanned < nr_to_scan && scan.isolated.len() < room {
            let folio = self.member(pfn);
            let nr_pages = folio.nr_pages() as u64;
            let prev = page(self.memmap, pfn).list_prev.load(Ordering::Relaxed);
            scan.nr_scanned += 1;
            if folio.refcount() == 0 {
                scan.nr_skipped += 1;
            } else if folio.test_and_clear_flag(PageFlag::Referenced) {
                lists.unlink(self.memmap, pfn, nr_pages, LruList::Inactive);
                folio.set_flag(PageFlag::Active);
                lists.push_head(self.memmap, pfn, nr_pages, LruList::Active);
                scan.nr_rotated += 1;
            } else if folio.try_get() {
                let was_on = folio.test_and_clear_flag(PageFlag::Lru);
                assert!(was_on, "LruLists::isolate: member pfn {pfn:#x} without Lru");
                lists.unlink(self.memmap, pfn, nr_pages, LruList::Inactive);
                scan.isolated.push(folio);
            } else {
                scan.nr_skipped += 1;
            }
            pfn = prev;
        }
        scan
    }

    /// Isolates one given folio, wherever it is on the lists (compaction's
    /// migrate scanner, which finds folios by PFN rather than by age):
    /// when `folio` is a member with a reference count above 0, takes a
    /// reference ([`Folio::try_get`]), clears `Lru` and `Active`, unlinks
    /// it, and returns the list it was on, for [`LruLists::putback`].
    /// `None` when it is on no list (isolated by someone else, never
    /// added, freed) or being freed; nothing changes then.
    ///
    /// Precondition: none. `folio` may be a stale view found without a
    /// reference ([`folio_of`] of a PFN): under the lock, `Lru` on its head
    /// page means it is a member, whose order does not change while it is
    /// one (a folio is split only off the lists).
    pub fn isolate_folio(&self, folio: Folio<'_>) -> Option<LruList> {
        debug_assert!(
            core::ptr::eq(folio.memmap(), self.memmap),
            "LruLists::isolate_folio: folio of another memmap"
        );
        let mut lists = self.lists.lock();
        if !folio.test_flag(PageFlag::Lru) || !folio.try_get() {
            return None;
        }
        let pfn = folio.pfn().as_u64();
        let was_on = folio.test_and_clear_flag(PageFlag::Lru);
        assert!(was_on, "LruLists::isolate_folio: member pfn {pfn:#x} lost Lru under the lock");
        let which = LruList::of(folio.test_and_clear_flag(PageFlag::Active));
        lists.unlink(self.memmap, pfn, folio.nr_pages() as u64, which);
        Some(which)
    }

    /// Puts an isolated folio back on the head of `list`, after reclaim
    /// decided to keep it: sets `Lru`, and sets or clears `Active` as
    /// `list` says. The caller then drops the reference it got from
    /// [`LruLists::isolate`].
    ///
    /// Precondition: the caller holds a reference and the folio is on no
    /// list (isolated by this caller).
    ///
    /// # Panics
    ///
    /// When `Lru` is already set (a kernel bug, as in [`LruLists::add`]).
    pub fn putback(&self, folio: Folio<'_>, list: LruList) {
        debug_assert!(
            core::ptr::eq(folio.memmap(), self.memmap),
            "LruLists::putback: folio of another memmap"
        );
        debug_assert!(folio.refcount() > 0, "LruLists::putback: pfn {:#x} without a reference", folio.pfn());
        let mut lists = self.lists.lock();
        let was_on = folio.test_and_set_flag(PageFlag::Lru);
        assert!(!was_on, "LruLists::putback: pfn {:#x} is already on a list", folio.pfn());
        match list {
            LruList::Active => folio.set_flag(PageFlag::Active),
            LruList::Inactive => folio.clear_flag(PageFlag::Active),
        }
        lists.push_head(self.memmap, folio.pfn().as_u64(), folio.nr_pages() as u64, list);
    }

    /// Moves up to `nr_to_scan` folios from the active list's tail to the
    /// inactive list's head, clearing `Active` and `Referenced` (the
    /// deactivation policy of the module doc). Returns how many moved.
    ///
    /// Precondition: none.
    pub fn shrink_active(&self, nr_to_scan: usize) -> usize {
        let mut lists = self.lists.lock();
        let mut moved = 0;
        while moved < nr_to_scan && self.deactivate_tail(&mut lists) {
            moved += 1;
        }
        moved
    }

    /// Moves folios from the active tail to the inactive head, as
    /// [`LruLists::shrink_active`], while [`LruLists::inactive_is_low`],
    /// at most `nr_to_scan` of them. Returns how many moved.
    ///
    /// Precondition: none.
    pub fn balance(&self, nr_to_scan: usize) -> usize {
        let mut lists = self.lists.lock();
        let mut moved = 0;
        while moved < nr_to_scan
            && Self::is_low(&lists.inactive, &lists.active)
            && self.deactivate_tail(&mut lists)
        {
            moved += 1;
        }
        moved
    }

    /// True when the inactive list holds fewer pages than the active one:
    /// reclaim should [`LruLists::balance`] before it isolates.
    pub fn inactive_is_low(&self) -> bool {
        let lists = self.lists.lock();
        Self::is_low(&lists.inactive, &lists.active)
    }

    fn is_low(inactive: &List, active: &List) -> bool {
        inactive.nr_pages < active.nr_pages
    }

    /// Moves the active tail to the inactive head; false when the active
    /// list is empty. Called with the lock held (`lists` is its guard).
    fn deactivate_tail(&self, lists: &mut Lists) -> bool {
        let pfn = lists.active.tail;
        if pfn == NO_PFN {
            return false;
        }
        let folio = self.member(pfn);
        let nr_pages = folio.nr_pages() as u64;
        lists.unlink(self.memmap, pfn, nr_pages, LruList::Active);
        folio.clear_flag(PageFlag::Referenced);
        folio.clear_flag(PageFlag::Active);
        lists.push_head(self.memmap, pfn, nr_pages, LruList::Inactive);
        true
    }

    /// Deactivates one given folio (`MADV_COLD`, `crate::pageout`): when
    /// it is a member of either list, unlinks it, clears `Active` and
    /// `Referenced` and links it at the **inactive tail**, where reclaim's
    /// next [`LruLists::isolate`] looks first. Returns whether it moved.
    /// A folio off the lists (isolated by reclaim or compaction, never
    /// added) is left alone: its owner decides where it goes.
    ///
    /// Precondition: `folio` is kept alive by the caller (a reference, or
    /// a mapping under the address-space lock).
    pub fn deactivate(&self, folio: Folio<'_>) -> bool {
        debug_assert!(
            core::ptr::eq(folio.memmap(), self.memmap),
            "LruLists::deactivate: folio of another memmap"
        );
        let mut lists = self.lists.lock();
        if !folio.test_flag(PageFlag::Lru) {
            return false;
        }
        let pfn = folio.pfn().as_u64();
        let nr_pages = folio.nr_pages() as u64;
        let which = LruList::of(folio.test_and_clear_flag(PageFlag::Active));
        lists.unlink(self.memmap, pfn, nr_pages, which);
        folio.clear_flag(PageFlag::Referenced);
        lists.push_tail(self.memmap, pfn, nr_pages, LruList::Inactive);
        true
    }

    /// Notes that `folio` was used: sets `Referenced` (atomically, without
    /// the lists' lock). The next scan that finds it clears the bit: on
    /// the inactive list that promotes it to the active one.
    ///
    /// Precondition: the caller holds a reference, or a lock that keeps the
    /// folio mapped (the page-table lock of a mapping of it).
    pub fn mark_accessed(&self, folio: Folio<'_>) {
        folio.set_flag(PageFlag::Referenced);
    }

    /// Folios on the active list.
    pub fn nr_active(&self) -> u64 {
        self.lists.lock().active.nr_folios
    }

    /// Folios on the inactive list.
    pub fn nr_inactive(&self) -> u64 {
        self.lists.lock().inactive.nr_folios
    }

    /// Pages of the folios on the active list.
    pub fn nr_active_pages(&self) -> u64 {
        self.lists.lock().active.nr_pages
    }

    /// Pages of the folios on the inactive list.
    pub fn nr_inactive_pages(&self) -> u64 {
        self.lists.lock().inactive.nr_pages
    }

    /// All four lengths, read together.
    pub fn counts(&self) -> LruCounts {
        let lists = self.lists.lock();
        LruCounts {
            nr_active: lists.active.nr_folios,
            nr_inactive: lists.inactive.nr_folios,
            nr_active_pages: lists.active.nr_pages,
            nr_inactive_pages: lists.inactive.nr_pages,
        }
    }

    /// The list the folio headed by `pfn` is on, read from its flags under
    /// the lock (exact as long as the flag rule holds, which
    /// [`LruLists::check`] verifies). `None` for a folio off the lists, a
    /// tail page, or a PFN outside the memmap.
    pub fn list_of(&self, pfn: Pfn) -> Option<LruList> {
        let pfn = pfn.as_u64();
        let desc = self.memmap.get_raw(pfn)?;
        let _lists = self.lists.lock();
        let flags = desc.flags();
        let on = flags & PageFlag::Head.mask() != 0 && flags & PageFlag::Lru.mask() != 0;
        on.then(|| LruList::of(flags & PageFlag::Active.mask() != 0))
    }

    /// Calls `f(head_pfn, list)` for every member, the inactive list first,
    /// each from head (newest) to tail (oldest), under the lock: `f` must
    /// not call back into these lists or take a lock (see the lock order).
    pub fn for_each(&self, mut f: impl FnMut(Pfn, LruList)) {
        let lists = self.lists.lock();
        for (list, which) in [(&lists.inactive, LruList::Inactive), (&lists.active, LruList::Active)] {
            let mut pfn = list.head;
            for _ in 0..list.nr_folios {
                if pfn == NO_PFN {
                    break;
                }
                f(Pfn::new(pfn), which);
                pfn = page(self.memmap, pfn).list_next.load(Ordering::Relaxed);
            }
        }
    }

    /// The consistency check: walks both lists under the lock and verifies
    /// that the links agree both ways and end at the recorded head and
    /// tail; that every member is a folio head with `Lru` set and `Active`
    /// as its list says; that the counts of folios and pages match; and,
    /// scanning the whole memmap, that no other page carries `Lru` or
    /// `Active` (so these must be the only LRU lists over the memmap).
    /// O(memmap): for tests and the debug checker.
    pub fn check(&self) -> Result<(), String> {
        let lists = self.lists.lock();
        let memmap = self.memmap;
        let mut nr_members = 0u64;
        for (list, which) in [(&lists.inactive, LruList::Inactive), (&lists.active, LruList::Active)] {
            let mut prev = NO_PFN;
            let mut pfn = list.head;
            let (mut nr_folios, mut nr_pages) = (0u64, 0u64);
            while pfn != NO_PFN {
                if nr_folios > memmap.len() as u64 {
                    return Err(format!("{which:?} list: loops (more than {} members)", memmap.len()));
                }
                let Some(desc) = memmap.get_raw(pfn) else {
                    return Err(format!("{which:?} list: pfn {pfn:#x} (after {prev:#x}) outside the memmap"));
                };
                let flags = desc.flags();
                if flags & PageFlag::Head.mask() == 0 || flags & PageFlag::Tail.mask() != 0 {
                    return Err(format!("{which:?} list: pfn {pfn:#x} is not a folio head: {desc:?}"));
                }
                if flags & PageFlag::Lru.mask() == 0 {
                    return Err(format!("{which:?} list: pfn {pfn:#x} without Lru: {desc:?}"));
                }
                if LruList::of(flags & PageFlag::Active.mask() != 0) != which {
                    return Err(format!("{which:?} list: pfn {pfn:#x} has Active wrong: {desc:?}"));
                }
                let back = desc.list_prev.load(Ordering::Relaxed);
                if back != prev {
                    return Err(format!(
                        "{which:?} list: pfn {pfn:#x} links back to {back:#x}, not to {prev:#x}"
                    ));
                }
                nr_folios += 1;
                nr_pages += 1u64 << desc.order();
                prev = pfn;
                pfn = desc.list_next.load(Ordering::Relaxed);
            }
            if prev != list.tail {
                return Err(format!("{which:?} list: ends at {prev:#x}, tail says {:#x}", list.tail));
            }
            if (nr_folios, nr_pages) != (list.nr_folios, list.nr_pages) {
                return Err(format!(
                    "{which:?} list: {nr_folios} folios of {nr_pages} pages listed, {} of {} counted",
                    list.nr_folios, list.nr_pages
                ));
            }
            nr_members += nr_folios;
        }
        let mut nr_flagged = 0u64;
        for (i, desc) in memmap.pages().iter().enumerate() {
            let flags = desc.flags();
            let pfn = memmap.base_pfn().as_u64() + i as u64;
            if flags & PageFlag::Lru.mask() != 0 {
                if flags & PageFlag::Head.mask() == 0 {
                    return Err(format!("pfn {pfn:#x} has Lru but is no folio head: {desc:?}"));
                }
                nr_flagged += 1;
            } else if flags & PageFlag::Active.mask() != 0 {
                return Err(format!("pfn {pfn:#x} has Active without Lru: {desc:?}"));
            }
        }
        if nr_flagged != nr_members {
            return Err(format!("{nr_flagged} folio heads have Lru, {nr_members} are on the lists"));
        }
        Ok(())
    }
}

/// The lists of the running kernel, once it registered them
/// ([`register`]). Code deep in `mm` that changes what a list element is
/// (a folio split, [`crate::thp::try_split_folio`]) takes the folio off
/// them first and puts the pieces back. Host tests that make no lists
/// leave it unset.
static REGISTERED: spin::Once<&'static LruLists> = spin::Once::new();

/// Makes `lists` the lists [`registered`] returns (the kernel, once, at
/// boot).
pub fn register(lists: &'static LruLists) {
    REGISTERED.call_once(|| lists);
}

/// The lists the kernel registered, if any.
pub fn registered() -> Option<&'static LruLists> {
    REGISTERED.get().copied()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;
    use crate::frame::{AllocKind, FrameAllocator};
    use std::boxed::Box;

    fn lists_with_folios(n: usize) -> (&'static LruLists, Vec<Folio<'static>>) {
        let memmap = Memmap::new_leaked(Pfn::new(0x100), 64);
        let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
        fa.add_free_range(Pfn::new(0x100), Pfn::new(0x140)).unwrap();
        let lru: &'static LruLists = Box::leak(Box::new(LruLists::new(memmap)));
        let folios: Vec<_> =
            (0..n).map(|_| fa.alloc_folio(0, AllocKind::Reserve).unwrap().publish()).collect();
        for &f in &folios {
            lru.add(f);
        }
        (lru, folios)
    }

    #[test]
    fn isolate_folio_takes_one_member_from_either_list() {
        let (lru, f) = lists_with_folios(4);
        // f[1] from the middle of the inactive list; f[3] made active first.
        lru.mark_accessed(f[3]);
        lru.isolate(1); // the tail f[0] isolated; f[3] is not the tail
        let scan = lru.isolate(4);
        // Inactive tail to head was f[1], f[2], f[3]: f[3] referenced, rotated.
        for g in scan.isolated {
            lru.putback(g, LruList::Inactive);
            assert!(!g.put());
        }
        assert_eq!(lru.list_of(f[3].pfn()), Some(LruList::Active));
        let before = f[1].refcount();
        assert_eq!(lru.isolate_folio(f[1]), Some(LruList::Inactive));
        assert_eq!(f[1].refcount(), before + 1);
        assert!(!f[1].test_flag(PageFlag::Lru));
        lru.check().unwrap();
        assert_eq!(lru.isolate_folio(f[1]), None, "isolated twice");
        assert_eq!(lru.isolate_folio(f[3]), Some(LruList::Active));
        assert!(!f[3].test_flag(PageFlag::Active));
        assert_eq!(lru.counts().nr_active, 0);
        lru.check().unwrap();
        lru.putback(f[3], LruList::Active);
        lru.putback(f[1], LruList::Inactive);
        assert!(!f[1].put() && !f[3].put());
        lru.check().unwrap();
        // A member whose count reached 0 (being freed) is left in place.
        assert!(f[2].put());
        assert_eq!(lru.isolate_folio(f[2]), None);
        assert_eq!(lru.list_of(f[2].pfn()), Some(LruList::Inactive));
        assert!(lru.remove(f[2]));
        lru.check().unwrap();
    }

    /// Links are crate-private: only a unit test can break one.
    #[test]
    fn check_catches_broken_links() {
        let (lru, f) = lists_with_folios(3);
        lru.check().unwrap();
        // Inactive list, head to tail: f[2], f[1], f[0].
        let mid = page(lru.memmap, f[1].pfn().as_u64());
        let saved = mid.list_prev.load(Ordering::Relaxed);
        mid.list_prev.store(f[0].pfn().as_u64(), Ordering::Relaxed);
        let e = lru.check().unwrap_err();
        assert!(e.contains("links back to"), "{e}");
        mid.list_prev.store(saved, Ordering::Relaxed);
        lru.check().unwrap();

        // A forward link skipping a member: the count no longer matches.
        let first = page(lru.memmap, f[2].pfn().as_u64());
        first.list_next.store(f[0].pfn().as_u64(), Ordering::Relaxed);
        let e = lru.check().unwrap_err();
        assert!(e.contains("links back to"), "{e}");
        first.list_next.store(f[1].pfn().as_u64(), Ordering::Relaxed);

        // A loop.
        let last = page(lru.memmap, f[0].pfn().as_u64());
        last.list_next.store(f[2].pfn().as_u64(), Ordering::Relaxed);
        assert!(lru.check().is_err());
        last.list_next.store(NO_PFN, Ordering::Relaxed);
        lru.check().unwrap();

        // A wrong tail.
        lru.lists.lock().inactive.tail = f[1].pfn().as_u64();
        let e = lru.check().unwrap_err();
        assert!(e.contains("tail says"), "{e}");
        lru.lists.lock().inactive.tail = f[0].pfn().as_u64();

        // A wrong page count.
        lru.lists.lock().inactive.nr_pages += 1;
        let e = lru.check().unwrap_err();
        assert!(e.contains("counted"), "{e}");
        lru.lists.lock().inactive.nr_pages -= 1;
        lru.check().unwrap();
    }
}
