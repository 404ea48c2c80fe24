//! [`PageTable`]: the generic tree operations over any [`PageTableFormat`].
//!
//! ## Protocol
//!
//! - Callers serialise changes to one page table (the address space's lock
//!   in issue 5; per-table PT locks come with concurrent faults). Hardware
//!   walkers may read the tables at any time, so every entry is written
//!   whole, and a new table is filled before the entry pointing at it is
//!   written ([`TableMemory::write_entry`] orders the writes).
//! - Every operation that can leave a stale translation returns a
//!   [`Flush`] the caller must pay. Operations that must flush *between*
//!   two writes (break-before-make: [`PageTable::remap`],
//!   [`PageTable::split_pmd`]) take the [`TlbHooks`] and flush themselves.
//! - Presence first: every decision starts from [`PageTableFormat::decode`];
//!   a frame number is read only from a present leaf (seed 001).
//!
//! Errors say who is to blame: the caller's request ([`PgError::Misaligned`],
//! [`PgError::AlreadyMapped`], [`PgError::NotMapped`],
//! [`PgError::HugeInTheWay`], ...), memory exhaustion
//! ([`PgError::OutOfMemory`]), or corrupt tables ([`PgError::Corrupt`]).

use super::format::{Decoded, Leaf, Level, NonPresent, PageSize, PageTableFormat, Prot, ENTRIES_PER_TABLE};
use super::format::{MigrationEntry, SwapEntry};
use super::memory::{Flush, TableMemory, TlbHooks};
use crate::addr::{PhysAddr, VirtAddr};
use core::fmt;
use core::marker::PhantomData;

/// Why a page-table operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgError {
    /// No frame for a new table: memory is exhausted. Nothing was changed.
    OutOfMemory,
    /// The address or frame is not aligned to the page size asked for.
    Misaligned { va: VirtAddr, size: PageSize },
    /// Something is already mapped (or remembered: swap/migration) there.
    AlreadyMapped { va: VirtAddr, level: Level },
    /// Nothing is mapped there.
    NotMapped { va: VirtAddr },
    /// A huge leaf (or a huge swap/migration entry) covers the address at
    /// `level`: split it first.
    HugeInTheWay { va: VirtAddr, level: Level },
    /// A table exists where a huge leaf was asked for.
    TableInTheWay { va: VirtAddr, level: Level },
    /// The entry at `level` is not what the operation works on (e.g. a
    /// split of an entry that is not a huge leaf).
    WrongKind { va: VirtAddr, level: Level },
    /// An entry no rule of the format explains: a kernel bug or memory
    /// corruption.
    Corrupt { va: VirtAddr, level: Level, raw: u64 },
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::OutOfMemory => write!(f, "out of memory for a page table"),
            PgError::Misaligned { va, size } => write!(f, "{va} (or its frame) is not aligned to {size:?}"),
            PgError::AlreadyMapped { va, level } => write!(f, "{va} is already mapped at {level:?} level"),
            PgError::NotMapped { va } => write!(f, "{va} is not mapped"),
            PgError::HugeInTheWay { va, level } => write!(f, "a huge {level:?} entry covers {va}"),
            PgError::TableInTheWay { va, level } => write!(f, "a table is at {level:?} level for {va}"),
            PgError::WrongKind { va, level } => {
                write!(f, "the {level:?} entry for {va} is of the wrong kind")
            }
            PgError::Corrupt { va, level, raw } => {
                write!(f, "corrupt {level:?} entry {raw:#x} for {va}")
            }
        }
    }
}

/// The address of one entry and what it held when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySlot {
    pub level: Level,
    /// Physical address of the 8-byte entry.
    pub pa: PhysAddr,
    pub raw: u64,
}

/// A page table of format `F`: a root table and what hangs below it.
///
/// The value owns the tree's *table* frames (given back by
/// [`PageTable::destroy`]); it does not own the frames that leaves map.
#[derive(Debug)]
pub struct PageTable<F: PageTableFormat> {
    root: PhysAddr,
    _format: PhantomData<fn() -> F>,
}

fn entry_pa(table: PhysAddr, level: Level, va: VirtAddr) -> PhysAddr {
    PhysAddr::new(table.as_u64() + 8 * level.index(va.as_u64()) as u64)
}

fn align_down(va: VirtAddr, level: Level) -> VirtAddr {
    va.align_down(level.entry_size())
}

impl<F: PageTableFormat> PageTable<F> {
    /// An empty page table (a zeroed root).
    pub fn new(mem: &impl TableMemory) -> Result<Self, PgError> {
        let root = mem.alloc_table().ok_or(PgError::OutOfMemory)?;
        Ok(PageTable { root, _format: PhantomData })
    }

    /// An empty page table whose top-level entries `shared` (indices) are
    /// copied from `template`: how x86_64 address spaces share the kernel's
    /// upper half (entries 256..512). The shared subtrees stay owned by the
    /// template; [`PageTable::destroy`] leaves them alone.
    pub fn new_sharing(
        mem: &impl TableMemory,
        template: PhysAddr,
        shared: core::ops::Range<usize>,
    ) -> Result<Self, PgError> {
        let table = Self::new(mem)?;
        for i in shared {
            let raw = mem.read_entry(PhysAddr::new(template.as_u64() + 8 * i as u64));
            mem.write_entry(PhysAddr::new(table.root.as_u64() + 8 * i as u64), raw);
        }
        Ok(table)
    }

    /// A view of the existing tree rooted at `root`, for changes to a tree
    /// this value does not own: the kernel's own root, where the kernel
    /// stacks are mapped (`kernel/src/memory/stacks.rs`).
    ///
    /// `root` must be the root table of a live tree of format `F`, whose
    /// changes the caller serialises; the value must never be given to
    /// [`PageTable::destroy`], which would free tables their owner still uses.
    pub fn from_root(root: PhysAddr) -> Self {
        PageTable { root, _format: PhantomData }
    }

    /// The root table's physical address (for CR3 / TTBR0).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Reads down the tree for `va` and returns the first entry that is not
    /// a table (or the PTE), with its slot.
    pub fn walk(&self, mem: &impl TableMemory, va: VirtAddr) -> EntrySlot {
        let mut table = self.root;
        let mut level = Level::Pgd;
        loop {
            let pa = entry_pa(table, level, va);
            let raw = mem.read_entry(pa);
            match (F::decode(raw, level), level.below()) {
                (Decoded::Table(next), Some(below)) => {
                    table = next;
                    level = below;
                }
                _ => return EntrySlot { level, pa, raw },
            }
        }
    }

    /// The decoded entry that decides `va`, and its level.
    pub fn lookup(&self, mem: &impl TableMemory, va: VirtAddr) -> (Level, Decoded) {
        let slot = self.walk(mem, va);
        (slot.level, F::decode(slot.raw, slot.level))
    }

    /// The physical address `va` maps to, by the tables alone (no
    /// permission check, no TLB): for reports and tests.
    pub fn translate(&self, mem: &impl TableMemory, va: VirtAddr) -> Option<PhysAddr> {
        match self.lookup(mem, va) {
            (_, Decoded::Leaf(leaf)) => {
                Some(PhysAddr::new(leaf.frame.as_u64() + (va.as_u64() & (leaf.size.bytes() - 1))))
            }
            _ => None,
        }
    }

    /// The slot at `level` for `va`, creating missing tables above it when
    /// `create` is set.
    fn slot_at(
        &self,
        mem: &impl TableMemory,
        va: VirtAddr,
        level: Level,
        create: bool,
    ) -> Result<EntrySlot, PgError> {
        let mut table = self.root;
        let mut at = Level::Pgd;
        loop {
            let pa = entry_pa(table, at, va);
            let raw = mem.read_entry(pa);
            if at == level {
                return Ok(EntrySlot { level, pa, raw });
            }
            let below = at.below().expect("slot_at: walked below the PTE level");
            table = match F::decode(raw, at) {
                Decoded::Table(next) => next,
                Decoded::None if create => {
                    let next = mem.alloc_table().ok_or(PgError::OutOfMemory)?;
                    mem.write_entry(pa, F::make_table(next, at));
                    next
                }
                Decoded::None => return Err(PgError::NotMapped { va }),
                Decoded::Leaf(_) | Decoded::NonPresent(_) => {
                    return Err(PgError::HugeInTheWay { va, level: at })
                }
                Decoded::Bad(raw) => return Err(PgError::Corrupt { va, level: at, raw }),
            };
            at = below;
        }
    }

    /// Maps `leaf` at `va` (both aligned to `leaf.size`), creating tables
    /// as needed. The slot must be empty.
    pub fn map(&self, mem: &impl TableMemory, va: VirtAddr, leaf: Leaf) -> Result<Flush, PgError> {
        let size = leaf.size;
        if !va.is_aligned(size.bytes()) || !leaf.frame.is_aligned(size.bytes()) {
            return Err(PgError::Misaligned { va, size });
        }
        let slot = self.slot_at(mem, va, size.level(), true)?;
        match F::decode(slot.raw, slot.level) {
            Decoded::None => {}
            Decoded::Table(_) => return Err(PgError::TableInTheWay { va, level: slot.level }),
            Decoded::Bad(raw) => return Err(PgError::Corrupt { va, level: slot.level, raw }),
            Decoded::Leaf(_) | Decoded::NonPresent(_) => {
                return Err(PgError::AlreadyMapped { va, level: slot.level })
            }
        }
        mem.write_entry(slot.pa, F::make_leaf(&leaf));
        // Nothing valid was there, and neither format caches invalid entries.
        Ok(Flush::none(self.root))
    }

    /// Clears the entry at `level` for `va` (a leaf of that level's size, or
    /// a swap/migration entry) and returns what it was.
    pub fn clear(
        &self,
        mem: &impl TableMemory,
        va: VirtAddr,
        level: Level,
    ) -> Result<(Decoded, Flush), PgError> {
        let slot = self.slot_at(mem, va, level, false)?;
        let old = F::decode(slot.raw, level);
        match old {
            Decoded::None => return Err(PgError::NotMapped { va }),
            Decoded::Table(_) => return Err(PgError::TableInTheWay { va, level }),
            Decoded::Bad(raw) => return Err(PgError::Corrupt { va, level, raw }),
            Decoded::Leaf(_) | Decoded::NonPresent(_) => {}
        }
        mem.write_entry(slot.pa, 0);
        let flush = match old {
            Decoded::Leaf(_) => {
                let start = align_down(va, level);
                Flush::range(self.root, start, VirtAddr::new(start.as_u64() + level.entry_size()))
            }
            _ => Flush::none(self.root),
        };
        Ok((old, flush))
    }

    /// Unmaps the leaf of `size` at `va` and returns it.
    pub fn unmap(
        &self,
        mem: &impl TableMemory,
        va: VirtAddr,
        size: PageSize,
    ) -> Result<(Leaf, Flush), PgError> {
        if !va.is_aligned(size.bytes()) {
            return Err(PgError::Misaligned { va, size });
        }
        let slot = self.slot_at(mem, va, size.level(), false)?;
        if !matches!(F::decode(slot.raw, slot.level), Decoded::Leaf(_)) {
            return match F::decode(slot.raw, slot.level) {
                Decoded::None => Err(PgError::NotMapped { va }),
                _ => Err(PgError::WrongKind { va, level: slot.level }),
            };
        }
        match self.clear(mem, va, size.level())? {
            (Decoded::Leaf(leaf), flush) => Ok((leaf, flush)),
            _ => unreachable!("unmap: the slot held a leaf a moment ago and the caller holds the table"),
        }
    }

    /// Puts a swap or migration entry at `level` for `va`, replacing a leaf
    /// of that level, another non-present entry, or nothing. Returns what
    /// was there.
    pub fn set_nonpresent(
        &self,
        mem: &impl TableMemory,
        va: VirtAddr,
        level: Level,
        entry: NonPresent,
    ) -> Result<(Decoded, Flush), PgError> {
        if level > Level::Pmd {
            return Err(PgError::WrongKind { va, level });
        }
        let slot = self.slot_at(mem, va, level, true)?;
        let old = F::decode(slot.raw, level);
        let flush = match old {
            Decoded::Table(_) => return Err(PgError::TableInTheWay { va, level }),
            Decoded::Bad(raw) => return Err(PgError::Corrupt { va, level, raw }),
            Decoded::Leaf(_) => {
                let start = align_down(va, level);
                Flush::range(self.root, start, VirtAddr::new(start.as_u64() + level.entry_size()))
            }
            Decoded::None | Decoded::NonPresent(_) => Flush::none(self.root),
        };
        mem.write_entry(slot.pa, F::make_nonpresent(&entry));
        Ok((old, flush))
    }

    /// Changes the protection of every present leaf in `[start, end)`,
    /// keeping frames, dirty and young. A huge leaf only partly in the range
    /// is refused (split it first); nothing is changed then.
    pub fn protect(
        &self,
        mem: &impl TableMemory,
        start: VirtAddr,
        end: VirtAddr,
        prot: Prot,
    ) -> Result<Flush, PgError> {
        // First pass: refuse before changing anything.
        let mut problem = None;
        self.visit(mem, start, end, &mut |va, level, entry, _| {
            if let Decoded::Leaf(leaf) = entry {
                let leaf_end = va.as_u64() + leaf.size.bytes();
                if va < start || leaf_end > end.as_u64() {
                    problem.get_or_insert(PgError::HugeInTheWay { va: start.max(va), level });
                }
            }
        });
        if let Some(e) = problem {
            return Err(e);
        }
        let mut flush = Flush::none(self.root);
        self.visit(mem, start, end, &mut |va, level, entry, slot| {
            if let Decoded::Leaf(mut leaf) = entry {
                if leaf.prot != prot {
                    leaf.prot = prot;
                    mem.write_entry(slot, F::make_leaf(&leaf));
                    let f = Flush::range(self.root, va, VirtAddr::new(va.as_u64() + level.entry_size()));
                    flush = core::mem::replace(&mut flush, Flush::none(self.root)).merge(f);
                }
            }
        });
        Ok(flush)
    }

    /// Rewrites the present leaf at `level` for `va` as `new`, which must
    /// map the same frame at the same size: only permissions and
    /// dirty/young may differ, which every format allows on a live entry
    /// (no break-before-make). The flush is owed only when access was taken
    /// away; granting access needs none (a CPU holding the old entry faults
    /// once more, spuriously).
    pub fn update_leaf(
        &self,
        mem: &impl TableMemory,
        va: VirtAddr,
        level: Level,
        new: Leaf,
    ) -> Result<Flush, PgError> {
        let slot = self.slot_at(mem, va, level, false)?;
        match F::decode(slot.raw, level) {
            Decoded::Leaf(old) if old.frame == new.frame && old.size == new.size => {
                mem.write_entry(slot.pa, F::make_leaf(&new));
                let start = align_down(va, level);
                Ok(Flush::range(self.root, start, VirtAddr::new(start.as_u64() + level.entry_size())))
            }
            Decoded::Leaf(_) => Err(PgError::WrongKind { va, level }),
            Decoded::None => Err(PgError::NotMapped { va }),
            Decoded::Bad(raw) => Err(PgError::Corrupt { va, level, raw }),
            _ => Err(PgError::WrongKind { va, level }),
        }
    }

    /// Replaces the leaf at `va` with `new` (same size) by
    /// break-before-make: clear, flush every CPU's translation, then write
    /// the new entry. Required on AArch64 when the output address changes,
    /// and harmless elsewhere. Returns the old leaf.
    pub fn remap(
        &self,
        mem: &impl TableMemory,
        hooks: &impl TlbHooks,
        va: VirtAddr,
        new: Leaf,
    ) -> Result<Leaf, PgError> {
        if !va.is_aligned(new.size.bytes()) || !new.frame.is_aligned(new.size.bytes()) {
            return Err(PgError::Misaligned { va, size: new.size });
        }
        let (old, flush) = self.unmap(mem, va, new.size)?;
        flush.flush(hooks);
        let slot = self.slot_at(mem, va, new.size.level(), false)?;
        mem.write_entry(slot.pa, F::make_leaf(&new));
        Ok(old)
    }

    /// Splits the PMD entry covering `va` into a table of 512 PTE entries
    /// with the same meaning:
    /// - a 2 MiB leaf becomes 512 4 KiB leaves of the same frames, with the
    ///   same protection, dirty and young (break-before-make: the PMD is
    ///   cleared and flushed before the table is installed);
    /// - a PMD migration entry becomes 512 PTE migration entries for the
    ///   subpages, keeping kind, young and dirty (seed 001: the split must
    ///   not treat it as a present or huge-zero mapping);
    /// - a PMD swap entry becomes 512 PTE swap entries for consecutive slots.
    ///
    /// Returns the PMD entry that was split.
    pub fn split_pmd(
        &self,
        mem: &impl TableMemory,
        hooks: &impl TlbHooks,
        va: VirtAddr,
    ) -> Result<Decoded, PgError> {
        let slot = self.slot_at(mem, va, Level::Pmd, false)?;
        let base = align_down(va, Level::Pmd);
        let old = F::decode(slot.raw, Level::Pmd);
        let pte_at = |i: u64| -> u64 {
            match old {
                Decoded::Leaf(leaf) => F::make_leaf(&Leaf {
                    frame: PhysAddr::new(leaf.frame.as_u64() + i * 4096),
                    size: PageSize::Size4K,
                    ..leaf
                }),
                Decoded::NonPresent(NonPresent::Migration(m)) => {
                    F::make_nonpresent(&NonPresent::Migration(MigrationEntry { pfn: m.pfn.plus(i), ..m }))
                }
                Decoded::NonPresent(NonPresent::Swap { entry, exclusive }) => {
                    let entry = SwapEntry::new(entry.ty(), entry.offset() + i)
                        .expect("split_pmd: a PMD swap entry's run of 512 slots fits the offset field");
                    F::make_nonpresent(&NonPresent::Swap { entry, exclusive })
                }
                _ => unreachable!("split_pmd: only huge entries are split"),
            }
        };
        match old {
            Decoded::Leaf(Leaf { size: PageSize::Size2M, .. }) | Decoded::NonPresent(_) => {}
            Decoded::None => return Err(PgError::NotMapped { va }),
            Decoded::Bad(raw) => return Err(PgError::Corrupt { va, level: Level::Pmd, raw }),
            _ => return Err(PgError::WrongKind { va, level: Level::Pmd }),
        }
        let table = mem.alloc_table().ok_or(PgError::OutOfMemory)?;
        for i in 0..ENTRIES_PER_TABLE as u64 {
            mem.write_entry(PhysAddr::new(table.as_u64() + 8 * i), pte_at(i));
        }
        if matches!(old, Decoded::Leaf(_)) {
            // Break: no CPU may hold the 2 MiB translation and a 4 KiB one
            // for the same address at once.
            mem.write_entry(slot.pa, 0);
            Flush::range(self.root, base, VirtAddr::new(base.as_u64() + Level::Pmd.entry_size()))
                .flush(hooks);
        }
        mem.write_entry(slot.pa, F::make_table(table, Level::Pmd));
        Ok(old)
    }

    /// Clears every leaf and swap/migration entry inside `[start, end)` in
    /// one walk, calling `f(va, level, old)` for each, and returns the flush
    /// owed (for the present leaves cleared). The range must not cut a huge
    /// leaf: split it first (`crate::thp::split_huge_pmd_if_cut`); one that
    /// does is a caller bug, left in place (and asserted in debug builds).
    pub fn clear_range(
        &self,
        mem: &impl TableMemory,
        start: VirtAddr,
        end: VirtAddr,
        f: &mut dyn FnMut(VirtAddr, Level, Decoded),
    ) -> Flush {
        let mut flush = Flush::none(self.root);
        self.visit(mem, start, end, &mut |va, level, entry, slot| {
            let entry_end = va.as_u64().wrapping_add(level.entry_size());
            if va < start || entry_end > end.as_u64() {
                debug_assert!(false, "clear_range: the {level:?} entry at {va} is cut by [{start}, {end})");
                return;
            }
            mem.write_entry(slot, 0);
            if matches!(entry, Decoded::Leaf(_)) {
                let more = Flush::range(self.root, va, VirtAddr::new(entry_end));
                flush = core::mem::replace(&mut flush, Flush::none(self.root)).merge(more);
            }
            f(va, level, entry);
        });
        flush
    }

    /// Calls `f(va, level, entry, slot)` for every leaf and swap/migration
    /// entry that overlaps `[start, end)`, in address order. `va` is the
    /// start of the range the entry covers.
    pub fn visit(
        &self,
        mem: &impl TableMemory,
        start: VirtAddr,
        end: VirtAddr,
        f: &mut dyn FnMut(VirtAddr, Level, Decoded, PhysAddr),
    ) {
        self.visit_table(mem, self.root, Level::Pgd, 0, start.as_u64(), end.as_u64(), f);
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_table(
        &self,
        mem: &impl TableMemory,
        table: PhysAddr,
        level: Level,
        table_va: u64,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(VirtAddr, Level, Decoded, PhysAddr),
    ) {
        for (_, va, _, pa) in slots_in(table, level, table_va, start, end) {
            let raw = mem.read_entry(pa);
            match (F::decode(raw, level), level.below()) {
                (Decoded::None, _) => {}
                (Decoded::Table(next), Some(below)) => self.visit_table(mem, next, below, va, start, end, f),
                (entry, _) => f(VirtAddr::new(va), level, entry, pa),
            }
        }
    }

    /// Copies the entries of `[start, end)` into `child` one table at a
    /// time (fork's walk, `crate::space::fork_range`): for every leaf and
    /// swap/migration entry, in address order, `f(va, level, entry)` says
    /// what the child gets at the same place and what the source's entry
    /// becomes ([`EntryCopy`]). Each table of either tree is reached once,
    /// not once per entry from the root, and a child table is made only
    /// where the source has an entry.
    ///
    /// Before `f` is called for an entry, the child's table for it exists
    /// and its slot is empty, so what `f` decides is written without a way
    /// to fail (`f` may take counts for the child's entry: they always get
    /// it). `f` may map the child's place itself (say 512 small pages for a
    /// huge entry) and return `child: 0`. The source leaves made to lose
    /// access add their range to `flush`, one range a table (from its
    /// first such leaf to its last), also when the walk stops at an error
    /// there, so the flush is whole then too; changed swap or migration
    /// entries owe none. A child table the walk makes itself is known
    /// empty: its slots are not read before they are written. Stops at the first error: of `f`, or
    /// `table_error` of the table's (no memory for a child table, a child
    /// slot already in use, a corrupt entry).
    ///
    /// The entries `f` decides are written batched
    /// ([`TableMemory::write_entry_batched`]: no barrier a write, which on
    /// AArch64 was two per page of a fork) and published once when the
    /// walk stops, error or not, before the caller flushes.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_range<E>(
        &self,
        child: &PageTable<F>,
        mem: &impl TableMemory,
        start: VirtAddr,
        end: VirtAddr,
        flush: &mut Flush,
        table_error: &impl Fn(VirtAddr, PgError) -> E,
        f: &mut impl FnMut(VirtAddr, Level, Decoded) -> Result<EntryCopy, E>,
    ) -> Result<(), E> {
        let mut walk = CopyWalk { source: self, flush, table_error, f };
        let result = walk.table(mem, self.root, Level::Pgd, 0, start.as_u64(), end.as_u64(), Ok(child.root));
        // The entries were written batched (one barrier here, not one a
        // write): also after an error, before the caller flushes or tears
        // the child down.
        mem.publish_writes();
        result
    }

    /// Unhooks the tables below the root that map nothing and whose whole
    /// span lies inside `[floor, ceiling)`, looking only at tables whose
    /// span overlaps `[start, end)` (munmap's range): each such table's
    /// parent entry is cleared and its frame pushed to `freed`, children
    /// before parents. The frames are **not** given back here: a CPU may
    /// still walk through them (a cached table entry) until the caller has
    /// flushed the space's translations, table entries included
    /// ([`Flush::all`]); only then may it [`TableMemory::free_table`] them.
    ///
    /// `[floor, ceiling)` is the gap no area covers around the range (the
    /// end of the area below, the start of the area above): a table whose
    /// span reaches past it may serve an area still, and stays. A table
    /// that still holds any entry (a leaf, a swap or migration entry, a
    /// table kept) is never unhooked, whatever its span. The root stays.
    pub fn unhook_empty_tables(
        &self,
        mem: &impl TableMemory,
        start: VirtAddr,
        end: VirtAddr,
        floor: VirtAddr,
        ceiling: VirtAddr,
        freed: &mut alloc::vec::Vec<PhysAddr>,
    ) {
        let range = (start.as_u64(), end.as_u64());
        let gap = (floor.as_u64(), ceiling.as_u64());
        Self::unhook_in(mem, self.root, Level::Pgd, 0, range, gap, freed);
    }

    /// [`PageTable::unhook_empty_tables`] below `table` (at `level`, mapping
    /// from `table_va`); returns whether `table` maps nothing now.
    fn unhook_in(
        mem: &impl TableMemory,
        table: PhysAddr,
        level: Level,
        table_va: u64,
        range: (u64, u64),
        gap: (u64, u64),
        freed: &mut alloc::vec::Vec<PhysAddr>,
    ) -> bool {
        let size = level.entry_size();
        let mut empty = true;
        for i in 0..ENTRIES_PER_TABLE as u64 {
            let pa = PhysAddr::new(table.as_u64() + 8 * i);
            let raw = mem.read_entry(pa);
            if raw == 0 {
                continue;
            }
            let va = table_va + i * size;
            // Upper-half entries (sign-extended) are never in a user gap.
            let upper = level == Level::Pgd && i >= 256;
            let va_end = va + size;
            let overlaps = !upper && va < range.1 && va_end > range.0;
            if let (true, Decoded::Table(next), Some(below)) =
                (overlaps, F::decode(raw, level), level.below())
            {
                let child_empty = Self::unhook_in(mem, next, below, va, range, gap, freed);
                if child_empty && va >= gap.0 && va_end <= gap.1 {
                    mem.write_entry(pa, 0);
                    freed.push(next);
                    continue;
                }
            }
            empty = false;
        }
        empty
    }

    /// Gives back every table frame of the tree except the top-level
    /// entries listed in `shared` (see [`PageTable::new_sharing`]). The
    /// caller must have stopped every CPU from using the table and flushed
    /// its translations; the frames leaves map are not touched.
    pub fn destroy(self, mem: &impl TableMemory, shared: core::ops::Range<usize>) {
        for i in 0..ENTRIES_PER_TABLE {
            if shared.contains(&i) {
                continue;
            }
            let raw = mem.read_entry(PhysAddr::new(self.root.as_u64() + 8 * i as u64));
            if let Decoded::Table(next) = F::decode(raw, Level::Pgd) {
                Self::free_subtree(mem, next, Level::Pud);
            }
        }
        mem.free_table(self.root);
    }

    fn free_subtree(mem: &impl TableMemory, table: PhysAddr, level: Level) {
        if let Some(below) = level.below() {
            for i in 0..ENTRIES_PER_TABLE as u64 {
                let raw = mem.read_entry(PhysAddr::new(table.as_u64() + 8 * i));
                if let Decoded::Table(next) = F::decode(raw, level) {
                    Self::free_subtree(mem, next, below);
                }
            }
        }
        mem.free_table(table);
    }
}

/// What [`PageTable::copy_range`] writes for one entry of the source, as
/// raw entries of the table's format (encoded once by the caller: fork
/// gives both sides the same write-protected leaf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryCopy {
    /// The child's entry at the same address and level (a leaf, or a swap
    /// or migration entry), or 0, the none entry, to write nothing.
    pub child: u64,
    /// The source's entry from now on (same kinds), or `None` to leave it
    /// as it is.
    pub source: Option<u64>,
}

impl EntryCopy {
    /// Nothing written on either side.
    pub const KEEP: EntryCopy = EntryCopy { child: 0, source: None };
}

/// The state of one [`PageTable::copy_range`]. Generic over the caller's
/// functions, not `dyn`: fork calls `f` once a page, and inlined into the
/// loop it costs no call (under QEMU's TCG each call and return is an
/// indirect jump through a lookup).
struct CopyWalk<'a, F: PageTableFormat, T, C> {
    source: &'a PageTable<F>,
    flush: &'a mut Flush,
    table_error: &'a T,
    f: &'a mut C,
}

impl<F: PageTableFormat, E, T, C> CopyWalk<'_, F, T, C>
where
    T: Fn(VirtAddr, PgError) -> E,
    C: FnMut(VirtAddr, Level, Decoded) -> Result<EntryCopy, E>,
{
    /// Copies what overlaps `[start, end)` of the source table `table` at
    /// `level`, which covers from `table_va`. The child's table for the
    /// same range is `child`: known, or (`Err(link)`) to be found or made
    /// through the child's entry at `link` (of the level above) when the
    /// first entry that needs it comes, so a source table with nothing in
    /// range costs the child nothing.
    ///
    /// The source leaves made to lose access in this table add one range
    /// to the flush, from the first to the last (fork makes nearly every
    /// leaf of a table read-only: one merge a table, not one an entry), on
    /// the way out whether the walk stopped at an error or not.
    #[allow(clippy::too_many_arguments)]
    fn table(
        &mut self,
        mem: &impl TableMemory,
        table: PhysAddr,
        level: Level,
        table_va: u64,
        start: u64,
        end: u64,
        child: Result<PhysAddr, (PhysAddr, Level)>,
    ) -> Result<(), E> {
        let mut lost_access: Option<(u64, u64)> = None;
        let result = self.entries(mem, table, level, table_va, (start, end), child, &mut lost_access);
        if let Some((from, to)) = lost_access {
            let more = Flush::range(self.source.root, VirtAddr::new(from), VirtAddr::new(to));
            *self.flush = core::mem::replace(self.flush, Flush::none(self.source.root)).merge(more);
        }
        result
    }

    /// [`CopyWalk::table`]'s loop; `lost_access` gathers the span of the
    /// source leaves made to lose access (`va_end` wraps to 0 only for the
    /// top-level slot of the upper half, never a leaf).
    #[allow(clippy::too_many_arguments)]
    fn entries(
        &mut self,
        mem: &impl TableMemory,
        table: PhysAddr,
        level: Level,
        table_va: u64,
        (start, end): (u64, u64),
        mut child: Result<PhysAddr, (PhysAddr, Level)>,
        lost_access: &mut Option<(u64, u64)>,
    ) -> Result<(), E> {
        // True while the child's table is one this walk just made: its
        // slots are all empty, and each is written at most once (the
        // source's slots are distinct), so they need no check.
        let mut fresh = false;
        for (i, va, va_end, pa) in slots_in(table, level, table_va, start, end) {
            let raw = mem.read_entry(pa);
            if raw == 0 {
                continue;
            }
            let entry = F::decode(raw, level);
            if matches!(entry, Decoded::None) {
                continue;
            }
            let at = VirtAddr::new(va);
            let err = |error| (self.table_error)(at, error);
            let child_table = match child {
                Ok(t) => t,
                Err((link, above)) => {
                    let t = match F::decode(mem.read_entry(link), above) {
                        Decoded::Table(t) => t,
                        Decoded::None => {
                            let t = mem.alloc_table().ok_or(PgError::OutOfMemory).map_err(err)?;
                            mem.write_entry(link, F::make_table(t, above));
                            fresh = true;
                            t
                        }
                        Decoded::Bad(raw) => return Err(err(PgError::Corrupt { va: at, level: above, raw })),
                        _ => return Err(err(PgError::HugeInTheWay { va: at, level: above })),
                    };
                    child = Ok(t);
                    t
                }
            };
            let child_pa = PhysAddr::new(child_table.as_u64() + 8 * i);
            if let (Decoded::Table(next), Some(below)) = (entry, level.below()) {
                self.table(mem, next, below, va, start, end, Err((child_pa, level)))?;
                continue;
            }
            if !fresh {
                match F::decode(mem.read_entry(child_pa), level) {
                    Decoded::None => {}
                    Decoded::Table(_) => return Err(err(PgError::TableInTheWay { va: at, level })),
                    Decoded::Bad(raw) => return Err(err(PgError::Corrupt { va: at, level, raw })),
                    _ => return Err(err(PgError::AlreadyMapped { va: at, level })),
                }
            }
            if matches!(entry, Decoded::Bad(_) | Decoded::Table(_)) {
                return Err(err(PgError::Corrupt { va: at, level, raw }));
            }
            let copy = (self.f)(at, level, entry)?;
            if copy.child != 0 {
                mem.write_entry_batched(child_pa, copy.child);
            }
            let Some(source_raw) = copy.source else { continue };
            mem.write_entry_batched(pa, source_raw);
            if matches!(entry, Decoded::Leaf(_)) {
                let (from, _) = lost_access.get_or_insert((va, va_end));
                *lost_access = Some((*from, va_end));
            }
        }
        Ok(())
    }
}

/// The slots of `table` (at `level`, mapping from `table_va`) whose span
/// overlaps `[start, end)`, in order: `(index, va, va_end, slot address)`,
/// with top-level upper-half addresses sign-extended so they are real
/// (`va_end` wraps to 0 for the last slot of the address space).
///
/// Only the slots from the one holding `start` to the one holding
/// `end - 1` are looked at ([`slot_bounds`]), so a walk of one page costs
/// a few slots per level rather than all 512 of each table on the way
/// (an rmap walk, a fault's lookup, a test's check).
fn slots_in(
    table: PhysAddr,
    level: Level,
    table_va: u64,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (u64, u64, u64, PhysAddr)> {
    let size = level.entry_size();
    slot_bounds(level, table_va, start, end).filter_map(move |i| {
        let va = table_va + i * size;
        let va = if level == Level::Pgd && i >= 256 { va | 0xffff_0000_0000_0000 } else { va };
        let va_end = va.wrapping_add(size);
        if va_end <= start && va_end != 0 || va >= end {
            return None;
        }
        Some((i, va, va_end, PhysAddr::new(table.as_u64() + 8 * i)))
    })
}

/// The indices of the slots of a table at `level` mapping from `table_va`
/// that can overlap `[start, end)`: a superset [`slots_in`] filters. Below
/// the top level a table's slots map consecutive spans from `table_va`;
/// at the top level so do the lower half's 256, and a range reaching into
/// the upper half (sign-extended) looks at all 512.
fn slot_bounds(level: Level, table_va: u64, start: u64, end: u64) -> core::ops::Range<u64> {
    let size = level.entry_size();
    let slots = ENTRIES_PER_TABLE as u64;
    if level == Level::Pgd && (end == 0 || end > (slots / 2) * size) {
        return 0..slots;
    }
    let first = (start.saturating_sub(table_va) / size).min(slots);
    let last = if end <= table_va { 0 } else { ((end - table_va - 1) / size + 1).min(slots) };
    first..last.max(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The slots of a table overlapping `[start, end)`, by looking at all
    /// 512 (what `slots_in` did before [`slot_bounds`]).
    fn every_slot(level: Level, table_va: u64, start: u64, end: u64) -> alloc::vec::Vec<u64> {
        let size = level.entry_size();
        (0..ENTRIES_PER_TABLE as u64)
            .filter(|&i| {
                let va = table_va + i * size;
                let va = if level == Level::Pgd && i >= 256 { va | 0xffff_0000_0000_0000 } else { va };
                let va_end = va.wrapping_add(size);
                !(va_end <= start && va_end != 0 || va >= end)
            })
            .collect()
    }

    fn bounded(level: Level, table_va: u64, start: u64, end: u64) -> alloc::vec::Vec<u64> {
        slots_in(PhysAddr::new(0x1000), level, table_va, start, end).map(|(i, ..)| i).collect()
    }

    /// An address near a slot boundary of `level`: where an off-by-one
    /// would show.
    fn near_boundary() -> impl Strategy<Value = u64> {
        (0u64..1 << 16, 0usize..4, -2i64..3).prop_map(|(n, l, d)| {
            (n << Level::TOP_DOWN[l].entry_size().trailing_zeros()).wrapping_add_signed(d)
        })
    }

    #[test]
    fn the_edges_of_the_address_space() {
        let top = |l: Level| 0u64.wrapping_sub(ENTRIES_PER_TABLE as u64 * l.entry_size());
        for (level, table_va) in [
            (Level::Pgd, 0),
            (Level::Pud, 0),
            (Level::Pte, 0x20_0000),
            (Level::Pud, top(Level::Pud)),
            (Level::Pte, top(Level::Pte)),
        ] {
            for (start, end) in [
                (0, 0),
                (0, 1),
                (0, u64::MAX),
                (0x1000, 0x2000),
                (0x7fff_ffff_f000, 0x8000_0000_0000),
                (0xffff_8000_0000_0000, u64::MAX),
                (0xffff_ffff_ffff_f000, 0),
                (u64::MAX - 1, u64::MAX),
                (5, 3),
            ] {
                assert_eq!(
                    bounded(level, table_va, start, end),
                    every_slot(level, table_va, start, end),
                    "{level:?} table at {table_va:#x}, [{start:#x}, {end:#x})"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Looking only between the bounds finds the same slots as looking
        /// at all of them, for tables anywhere and ranges of any shape.
        #[test]
        fn bounds_find_every_overlapping_slot(
            l in 0usize..4,
            table in 0u64..1 << 20,
            start in near_boundary(),
            len in prop_oneof![near_boundary(), 0u64..0x10_0000],
        ) {
            let level = Level::TOP_DOWN[l];
            // A table's own address: a multiple of its span (the top
            // level's is 0), in either half.
            let span_shift = level.entry_size().trailing_zeros() + 9;
            let table_va = if level == Level::Pgd || span_shift >= 64 {
                0
            } else {
                let va = (table << span_shift) & 0x0000_ffff_ffff_ffff;
                if va & 0x0000_8000_0000_0000 != 0 { va | 0xffff_0000_0000_0000 } else { va }
            };
            let end = start.wrapping_add(len);
            prop_assert_eq!(bounded(level, table_va, start, end), every_slot(level, table_va, start, end));
        }
    }
}
