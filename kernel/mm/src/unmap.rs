//! `try_to_unmap`: replacing every mapping of a folio, found through the
//! reverse map ([`crate::rmap`]), by a non-present entry that says where
//! the folio went: the swap entry of its slot (swap-out) or a migration
//! entry naming it while it moves ([`crate::migrate`]).
//!
//! ## The protocol (mm-reference §6, §8)
//!
//! [`try_to_unmap`] does, for a locked folio over the tables of every space
//! that may map it:
//! 1. **prepare** the [`Target`]: what it needs of the folio (swap: the
//!    folio is in the swap cache; its first entry `e`; migration: nothing);
//! 2. **refuse** when the folio may be pinned ([`Folio::maybe_pinned`]): the
//!    pin's owner must keep seeing the page the task sees;
//! 3. **walk** the reverse map once and let the target refuse before
//!    anything changes (swap: a slot would exceed [`MAX_SWAP_COUNT`]
//!    holders; migration refuses nothing);
//! 4. **PMD mappings**: the target decides. Swap splits each into 512 PTEs
//!    ([`split_huge_pmd`], the folio stays whole) and goes on with those;
//!    migration replaces the PMD by **one** PMD migration entry (the folio
//!    loses the entire mapcount, the head its `AnonExclusive`);
//! 5. **PTE mappings**: each becomes the target's entry for its page `i`
//!    (swap: `e + i`, whose slot gains one count, with the exclusive bit
//!    = the page's [`PageFlag::AnonExclusive`], seed 004; migration: a
//!    migration entry naming page `i`'s frame); the page loses
//!    `AnonExclusive` (the entry carries it now) and one mapcount.
//!
//! To swap, a PTE leaf that is dirty or writable makes the folio
//! [`PageFlag::Dirty`] before it is replaced (a PMD leaf is split into
//! PTEs first; a migration entry carries the leaf's own bits): reclaim
//! writes a folio that is already in the swap cache only when it is
//! `Dirty`, so the leaf's dirty bit must reach the folio before that
//! decision.
//!
//! A migration entry's kind says what the mapping was ([`migration_kind`],
//! mm-reference §7): `Write` when it was writable, `ReadExclusive` when
//! read-only but anon-exclusive, `Read` otherwise (shared, e.g. with a
//! fork relative); young and dirty are kept in the entry. The entry holds
//! no mapcount and no reference: the migration that made it holds the
//! folio locked and referenced until every entry is replaced again.
//!
//! The caller then runs the returned flushes and only after them drops
//! one folio reference per replaced mapping ([`Unmapped::refs`]): until
//! every CPU has dropped its translation, the mapping still uses the page.
//!
//! With the bug-replay switch [`Bug::ForgetAnonExclusive`] on, the swap
//! target always writes `exclusive = false`: the mistake of seed 004, after
//! which a swapped-in page that somebody else still holds a plain
//! (`FOLL_GET`) reference to can no longer be proven exclusive, is mapped
//! read-only, and is copied on the next write, so writes through that
//! reference are lost.
//!
//! ## Invariants: whole or nothing
//!
//! A folio (large or not) is unmapped wholly or not at all. Linux needs
//! care for that (seed 002: its walk took the page-table lock only at the
//! first present entry, so a transiently cleared entry at the front was
//! skipped and the folio ended half unmapped). Here the caller holds the
//! lock of **every** space that may map the folio (its fork family) for
//! the whole call, and page-table entries change only under their space's
//! lock, so the walk cannot see a transient entry; everything that could
//! refuse (a pin, a swap count at its limit, a missing cache slot) is
//! checked before the first entry changes. Only a PMD split can fail after
//! that (no memory for a page table), and it fails before any PTE is
//! replaced; PMDs it split already stay split (the folio is still wholly
//! mapped, by PTEs). The migration target splits nothing and allocates
//! nothing, so once its checks pass it cannot fail at all.
//!
//! Pins: `get_user_pages` takes the space's lock too, so with every family
//! lock held no pin can appear during the call, and one check of
//! [`Folio::maybe_pinned`] at the start is enough (Linux, whose GUP-fast
//! takes no lock, clears the entry first and checks after a barrier).
//!
//! ## Locks
//!
//! The caller holds: the folio lock (asserted), a reference on the folio,
//! and the lock of every space whose table it passes (the kernel takes a
//! family's locks in root order). Inside: the swap area's lock (a leaf, in
//! [`SwapArea::count`] and [`SwapArea::dup`]). PMD splits are flushed
//! through the caller's [`TlbHooks`] on the spot (break-before-make).

use crate::bugs::{self, Bug};
use crate::folio::Folio;
use crate::page::{Memmap, PageFlag};
use crate::pgtable::{
    Flush, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageTable, PageTableFormat, PgError,
    SwapEntry, TableMemory, TlbHooks,
};
use crate::rmap::rmap_walk;
use crate::swap::area::{SwapArea, MAX_SWAP_COUNT};
use crate::swap::cache::{folio_entry, nth_entry};
use crate::thp::split_huge_pmd;
use alloc::vec::Vec;
use core::fmt;

/// Where the mappings of a folio go: the kind of non-present entry that
/// replaces them.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// Swap-out: the folio is in `area`'s swap cache, and page `i` of it
    /// is held by the swap entry `first + i` (the cache's run).
    Swap {
        /// The area whose cache holds the folio.
        area: &'a SwapArea,
    },
    /// Migration ([`crate::migrate`]): each mapping becomes a migration
    /// entry naming the frame it mapped, a PMD mapping one PMD entry.
    Migration,
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Swap { area } => write!(f, "Swap {{ area: type {} }}", area.ty()),
            Target::Migration => write!(f, "Migration"),
        }
    }
}

/// Why a folio was left mapped. Nothing changed, except that PMDs split
/// before a [`UnmapError::Table`] failure stay split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// The folio may be pinned: it stays mapped (and exclusive).
    Pinned,
    /// A slot would exceed [`MAX_SWAP_COUNT`] page-table entries.
    SwapCountFull { offset: u64 },
    /// The folio is not in the swap cache (the caller's bug).
    NotInSwapCache,
    /// A page table refused a change (out of memory for a PMD split).
    Table(PgError),
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapError::Pinned => write!(f, "the folio may be pinned"),
            UnmapError::SwapCountFull { offset } => {
                write!(f, "swap slot {offset:#x} is held by {MAX_SWAP_COUNT} entries already")
            }
            UnmapError::NotInSwapCache => write!(f, "the folio has no swap slots"),
            UnmapError::Table(e) => write!(f, "page table: {e:?}"),
        }
    }
}

/// What [`try_to_unmap`] did.
#[derive(Debug)]
#[must_use = "the flushes must run before the mappings' references are dropped"]
pub struct Unmapped {
    /// Mappings replaced: the references the caller drops once the flushes
    /// are over.
    pub refs: usize,
    /// Per table (same order as passed in): what must be flushed before
    /// those references go.
    pub flushes: Vec<Flush>,
}

/// A target after step 1 of the module doc: what it learned of the folio.
enum Prepared<'a> {
    Swap { area: &'a SwapArea, first: SwapEntry },
    Migration,
}

/// The kind of migration entry that replaces a mapping (module doc):
/// `Write` for a writable one, `ReadExclusive` for a read-only one of an
/// anon-exclusive page, `Read` for the rest.
pub fn migration_kind(writable: bool, exclusive: bool) -> MigrationKind {
    match (writable, exclusive) {
        (true, _) => MigrationKind::Write,
        (false, true) => MigrationKind::ReadExclusive,
        (false, false) => MigrationKind::Read,
    }
}

/// The migration entry for `leaf`, which maps the frame `pfn` of a page
/// whose `AnonExclusive` is `exclusive`.
fn migration_entry(leaf: &Leaf, pfn: crate::Pfn, exclusive: bool) -> NonPresent {
    let kind = migration_kind(leaf.prot.writable, exclusive);
    NonPresent::Migration(
        MigrationEntry::new(kind, pfn, leaf.young, leaf.dirty)
            .expect("try_to_unmap: a memmap frame fits a migration entry"),
    )
}

impl<'a> Target<'a> {
    /// Step 1: what the target needs of the folio.
    fn prepare(self, folio: &Folio<'_>) -> Result<Prepared<'a>, UnmapError> {
        match self {
            Target::Swap { area } => {
                let first = folio_entry(folio).ok_or(UnmapError::NotInSwapCache)?;
                Ok(Prepared::Swap { area, first })
            }
            Target::Migration => Ok(Prepared::Migration),
        }
    }
}

impl Prepared<'_> {
    /// Step 3: refuses before anything changes. `gain[i]` is the number of
    /// entries that will hold page `i` (a PMD counts for every page).
    fn check(&self, gain: &[u32]) -> Result<(), UnmapError> {
        match *self {
            Prepared::Swap { area, first } => {
                for (i, g) in gain.iter().enumerate() {
                    let e = nth_entry(first, i);
                    if area.count(e) as u32 + g > MAX_SWAP_COUNT as u32 {
                        return Err(UnmapError::SwapCountFull { offset: e.offset() });
                    }
                }
                Ok(())
            }
            Prepared::Migration => Ok(()),
        }
    }

    /// Step 4, for the PMD mapping `leaf` at `va` of `table`. Returns the
    /// flush owed when the PMD itself was replaced (one mapping gone: its
    /// reference is the caller's to drop), `None` when it was split into
    /// PTEs that step 5 replaces.
    #[allow(clippy::too_many_arguments)]
    fn unmap_pmd<F: PageTableFormat>(
        &self,
        table: &PageTable<F>,
        mem: &impl TableMemory,
        hooks: &impl TlbHooks,
        memmap: &Memmap,
        folio: &Folio<'_>,
        va: crate::VirtAddr,
        leaf: &Leaf,
    ) -> Result<Option<Flush>, UnmapError> {
        match self {
            // 512 PTEs, replaced in step 5 like any others.
            Prepared::Swap { .. } => {
                split_huge_pmd(table, mem, hooks, memmap, va).map_err(UnmapError::Table)?;
                Ok(None)
            }
            // One PMD migration entry; the head's bit speaks for the folio.
            Prepared::Migration => {
                let exclusive = folio.page(0).test_flag(PageFlag::AnonExclusive);
                let entry = migration_entry(leaf, folio.pfn(), exclusive);
                let (_, flush) = table
                    .set_nonpresent(mem, va, Level::Pmd, entry)
                    .expect("try_to_unmap: the rmap walk just found a PMD leaf here");
                folio.page(0).clear_flag(PageFlag::AnonExclusive);
                folio.add_entire_mapcount(-1);
                Ok(Some(flush))
            }
        }
    }

    /// Step 5: the entry that replaces the PTE `leaf` mapping page `i` of
    /// `folio`, and what it holds (swap: one more count on the slot).
    fn pte_entry(&self, folio: &Folio<'_>, i: usize, leaf: &Leaf) -> NonPresent {
        match *self {
            Prepared::Swap { area, first } => {
                let entry = nth_entry(first, i);
                let exclusive = folio.page(i).test_flag(PageFlag::AnonExclusive)
                    && !bugs::enabled(Bug::ForgetAnonExclusive);
                area.dup(entry).expect("try_to_unmap: counts were checked under the family's locks");
                NonPresent::Swap { entry, exclusive }
            }
            Prepared::Migration => {
                let exclusive = folio.page(i).test_flag(PageFlag::AnonExclusive);
                migration_entry(leaf, folio.pfn().plus(i as u64), exclusive)
            }
        }
    }
}

/// Replaces every mapping of `folio` in `tables` by `target`'s entries, as
/// the module doc says. The caller holds the lock of every table in
/// `tables` (the whole fork family of the folio), the folio lock and a
/// reference. PMD splits are flushed through `hooks` on the spot; the
/// returned flushes cover the replaced PTEs.
pub fn try_to_unmap<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: &Folio<'_>,
    target: Target<'_>,
) -> Result<Unmapped, UnmapError> {
    debug_assert!(folio.is_locked(), "try_to_unmap: folio {:#x} not locked", folio.pfn());
    let prepared = target.prepare(folio)?;
    if folio.maybe_pinned() {
        return Err(UnmapError::Pinned);
    }
    // What each page will gain, and the PMD mappings, in one walk.
    let mut gain = alloc::vec![0u32; folio.nr_pages()];
    let mut pmds = Vec::new();
    for (s, table) in tables.iter().enumerate() {
        rmap_walk(folio, &[*table], mem, &mut |m| match m.level {
            Level::Pmd => {
                pmds.push((s, m.va, m.leaf));
                gain.iter_mut().for_each(|g| *g += 1);
            }
            _ => gain[m.page] += 1,
        });
    }
    prepared.check(&gain)?;
    let mut flushes: Vec<Flush> = tables.iter().map(|t| Flush::none(t.root())).collect();
    let mut refs = 0;
    for (s, va, leaf) in pmds {
        if let Some(flush) = prepared.unmap_pmd(tables[s], mem, hooks, memmap, folio, va, &leaf)? {
            flushes[s] = core::mem::replace(&mut flushes[s], Flush::none(tables[s].root())).merge(flush);
            refs += 1;
        }
    }
    for (s, table) in tables.iter().enumerate() {
        let mut ptes = Vec::new();
        rmap_walk(folio, &[*table], mem, &mut |m| {
            debug_assert_eq!(m.level, Level::Pte, "try_to_unmap: a PMD left after step 4");
            ptes.push((m.va, m.page, m.leaf));
        });
        for (va, i, leaf) in ptes {
            // To swap, the leaf's dirtiness moves to the folio before the
            // leaf goes (reclaim decides from `Dirty` whether to write). A
            // writable leaf counts as dirty: on x86 a CPU may set its dirty
            // bit after the walk read it, and the write below would lose
            // that. (A migration entry keeps the leaf's own bits.)
            let to_swap = matches!(prepared, Prepared::Swap { .. });
            if to_swap && (leaf.dirty || leaf.prot.writable) {
                folio.set_flag(PageFlag::Dirty);
            }
            let entry = prepared.pte_entry(folio, i, &leaf);
            let (_, flush) = table
                .set_nonpresent(mem, va, Level::Pte, entry)
                .expect("try_to_unmap: the rmap walk just found a PTE leaf here");
            folio.page(i).clear_flag(PageFlag::AnonExclusive);
            folio.add_page_mapcount(i, -1);
            flushes[s] = core::mem::replace(&mut flushes[s], Flush::none(table.root())).merge(flush);
            refs += 1;
        }
    }
    Ok(Unmapped { refs, flushes })
}
