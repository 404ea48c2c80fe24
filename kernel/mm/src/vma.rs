//! Virtual memory areas: which ranges of one address space are mapped, and how.
//!
//! A [`Vma`] is a page-aligned, half-open range `[start, end)` of user virtual
//! addresses with one set of attributes: its protection ([`VmaProt`]), what
//! backs it ([`VmaKind`]; private anonymous memory only, for now) and its
//! transparent-huge-page advice ([`ThpMode`]). A [`VmaSet`] holds all the
//! VMAs of one address space, sorted by start, inside a user range fixed at
//! construction. It is what mmap, munmap, mprotect and madvise change, and
//! what the fault handler asks ("is this address mapped, may it be written,
//! may it get a huge page?").
//!
//! ## Protocol
//!
//! The set is a plain structure changed through `&mut self`; it takes no lock.
//! Its owner, the address space, holds the address-space lock for writing
//! across a change to the set *and* the matching page-table change (unmap the
//! ranges [`VmaSet::unmap`] returns, change protections on the ranges
//! [`VmaSet::protect`] returns, then flush), and for reading while it looks a
//! VMA up to handle a fault. So a fault never sees a VMA whose page tables
//! disagree with it.
//!
//! Every operation is all-or-nothing: it checks its arguments and the limits
//! first, builds the new contents of the range it touches, and only then
//! changes the set. On error the set is exactly as before.
//!
//! Operations take a start address and a length, both multiples of
//! [`PAGE_SIZE`] (the syscall layer rounds a length up before calling), and
//! the range must lie inside the user range.
//!
//! | operation | range needs | splits VMAs at the range's ends | returns |
//! | --- | --- | --- | --- |
//! | [`VmaSet::map_fixed`] | to be free ([`VmaError::Overlaps`] otherwise) | no | the start |
//! | [`VmaSet::map_anywhere`] | a free gap somewhere ([`VmaError::NoSpace`]) | no | the chosen start |
//! | [`VmaSet::unmap`] | nothing (holes are fine, like munmap) | yes | the removed ranges |
//! | [`VmaSet::protect`] | full coverage ([`VmaError::NotMapped`], like mprotect's ENOMEM) | yes | the ranges whose protection changed |
//! | [`VmaSet::advise_thp`] | full coverage ([`VmaError::NotMapped`]) | yes | nothing |
//!
//! After every operation, neighbours with identical attributes are merged, so
//! the set never fragments: with one kind of backing, the VMAs are exactly the
//! maximal runs of pages with equal attributes.
//!
//! ## Invariants
//!
//! Kept by every method, checked by [`VmaSet::check_invariants`] (which the
//! tests call after every step):
//! - each VMA is non-empty, page-aligned, and inside the user range;
//! - VMAs are sorted by start and do not overlap (each map key is its VMA's start);
//! - no two adjacent VMAs (one's end is the other's start) have identical
//!   attributes: they would have been merged;
//! - there are at most `max_vmas` of them ([`MAX_VMAS`] unless lowered).

use crate::addr::{VirtAddr, HUGE_PAGE_SIZE, PAGE_SIZE};
use crate::pgtable::Prot;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// The most VMAs one address space may hold by default (Linux's
/// `vm.max_map_count` is of the same order). A limit on what a process can
/// make the kernel allocate.
pub const MAX_VMAS: usize = 65536;

/// What a VMA allows user code to do, as mmap's `PROT_*` bits.
///
/// All false is `PROT_NONE`: the range is reserved, and every access faults.
/// The page tables have no read bit: a VMA that is writable or executable is
/// readable on both arches, whatever `read` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmaProt {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl VmaProt {
    /// `PROT_NONE`.
    pub const NONE: VmaProt = VmaProt { read: false, write: false, exec: false };
    /// `PROT_READ`.
    pub const READ: VmaProt = VmaProt { read: true, ..VmaProt::NONE };
    /// `PROT_READ | PROT_WRITE`.
    pub const READ_WRITE: VmaProt = VmaProt { write: true, ..VmaProt::READ };
    /// `PROT_READ | PROT_EXEC`.
    pub const READ_EXEC: VmaProt = VmaProt { exec: true, ..VmaProt::READ };

    /// The page-table protection for a page of this VMA: writable and
    /// executable as the VMA says, user-accessible when `user`, never global
    /// (a VMA belongs to one address space).
    ///
    /// Only meaningful for a VMA that allows some access: the fault handler
    /// maps no page in a `PROT_NONE` VMA. A writable VMA's pages may still be
    /// mapped read-only for copy-on-write; that is the fault handler's choice.
    pub const fn to_prot(self, user: bool) -> Prot {
        Prot { writable: self.write, user, executable: self.exec, global: false }
    }
}

/// What backs a VMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmaKind {
    /// Private anonymous memory: zero-filled on first touch, copied on write
    /// after fork, swappable.
    Anonymous,
}

/// Transparent-huge-page advice for a VMA (madvise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThpMode {
    /// No advice: the kernel's policy decides (today: eligible).
    #[default]
    Default,
    /// `MADV_NOHUGEPAGE`: never back this VMA with huge pages.
    Never,
    /// `MADV_HUGEPAGE`: back it with huge pages wherever a whole 2 MiB block fits.
    Always,
}

/// The system-wide THP switch (Linux's
/// `/sys/kernel/mm/transparent_hugepage/enabled`): which areas a fault may
/// back with huge pages at all, before the per-area advice and the
/// block's fit ([`VmaSet::thp_eligible`]) are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThpEnabled {
    /// Every area without `MADV_NOHUGEPAGE` (this kernel's behaviour
    /// before the switch existed).
    #[default]
    Always,
    /// Only `MADV_HUGEPAGE` areas.
    Madvise,
    /// None: every fault maps 4 KiB pages.
    Never,
}

impl ThpEnabled {
    /// True when an area of advice `thp` may get huge pages under this
    /// setting.
    pub fn allows(self, thp: ThpMode) -> bool {
        match self {
            ThpEnabled::Always => thp != ThpMode::Never,
            ThpEnabled::Madvise => thp == ThpMode::Always,
            ThpEnabled::Never => false,
        }
    }
}

/// One virtual memory area: `[start, end)` with one set of attributes.
///
/// Page-aligned and `start < end` inside a [`VmaSet`], which hands out only
/// shared references to its VMAs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vma {
    pub start: VirtAddr,
    pub end: VirtAddr,
    pub prot: VmaProt,
    pub kind: VmaKind,
    pub thp: ThpMode,
}

impl Vma {
    /// The length in bytes.
    pub const fn size(&self) -> u64 {
        self.end.as_u64() - self.start.as_u64()
    }

    /// True when `addr` lies inside.
    pub const fn contains(&self, addr: VirtAddr) -> bool {
        self.start.as_u64() <= addr.as_u64() && addr.as_u64() < self.end.as_u64()
    }

    /// True when everything but the range is equal: two such VMAs that touch
    /// are one VMA.
    pub fn same_attrs(&self, other: &Vma) -> bool {
        self.prot == other.prot && self.kind == other.kind && self.thp == other.thp
    }

    /// The same attributes over `[start, end)`.
    fn with_range(self, start: u64, end: u64) -> Vma {
        Vma { start: VirtAddr::new(start), end: VirtAddr::new(end), ..self }
    }

    /// The part of `self` inside `[start, end)`; the two must overlap.
    fn clipped(self, start: u64, end: u64) -> Vma {
        self.with_range(self.start.as_u64().max(start), self.end.as_u64().min(end))
    }
}

impl fmt::Debug for Vma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}) ", self.start.as_u64(), self.end.as_u64())?;
        let p = self.prot;
        let bit = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{} {:?} thp={:?}",
            bit(p.read, 'r'),
            bit(p.write, 'w'),
            bit(p.exec, 'x'),
            self.kind,
            self.thp
        )
    }
}

/// Why a VMA operation refused. The set is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmaError {
    /// The caller's fault: an address or length is not a multiple of
    /// [`PAGE_SIZE`], or an alignment is not a power of two at least [`PAGE_SIZE`].
    Misaligned,
    /// The caller's fault: the length is zero.
    Empty,
    /// The caller's fault: the range does not lie inside the user range
    /// (or its end overflows).
    OutOfRange,
    /// The caller's fault: a fixed mapping would overlap this existing VMA
    /// (the lowest one it overlaps). Nothing is replaced.
    Overlaps { existing: (VirtAddr, VirtAddr) },
    /// The process's limit: no free gap of that size and alignment is left.
    NoSpace,
    /// The caller's fault: part of the range has no VMA, and the operation
    /// needs the whole range mapped (mprotect and madvise fail with ENOMEM).
    NotMapped,
    /// The process's limit: the result would hold more VMAs than allowed
    /// (splitting a VMA adds one, so even an unmap can hit it).
    TooManyVmas,
    /// Not supported yet: `mprotect(PROT_NONE)` over pages already mapped.
    /// Tasks run at kernel privilege, so an inaccessible mapped page needs
    /// a non-present "prot none" entry that the formats do not have yet;
    /// dropping the pages instead would lose data. Nothing is changed.
    ProtNoneOverMappedPages,
    /// No memory for the page table that splits a 2 MiB page the range
    /// cuts (munmap, mprotect and madvise split it before they change an
    /// area, so that no huge page straddles two). Nothing is changed.
    OutOfMemory,
}

/// The VMAs of one address space, sorted by start. See the module doc for the
/// protocol and invariants.
#[derive(Clone, PartialEq, Eq)]
pub struct VmaSet {
    /// Keyed by each VMA's start address.
    vmas: BTreeMap<u64, Vma>,
    /// The user range `[user_start, user_end)`, page-aligned.
    user_start: u64,
    user_end: u64,
    /// At most this many VMAs.
    max_vmas: usize,
}

impl VmaSet {
    /// An empty set over the user range `[user_start, user_end)` (for example
    /// `0x1000..0x0000_7fff_ffff_f000`), holding at most [`MAX_VMAS`] VMAs.
    ///
    /// # Panics
    /// When the range is not page-aligned or is empty: a kernel bug.
    pub fn new(user_start: VirtAddr, user_end: VirtAddr) -> Self {
        Self::with_max_vmas(user_start, user_end, MAX_VMAS)
    }

    /// Like [`VmaSet::new`] with a lower limit on the number of VMAs.
    ///
    /// # Panics
    /// As [`VmaSet::new`], and when `max_vmas` is zero.
    pub fn with_max_vmas(user_start: VirtAddr, user_end: VirtAddr, max_vmas: usize) -> Self {
        assert!(
            user_start.is_aligned(PAGE_SIZE) && user_end.is_aligned(PAGE_SIZE) && user_start < user_end,
            "VmaSet::new: bad user range [{user_start}, {user_end})"
        );
        assert!(max_vmas > 0, "VmaSet::new: max_vmas is zero");
        VmaSet {
            vmas: BTreeMap::new(),
            user_start: user_start.as_u64(),
            user_end: user_end.as_u64(),
            max_vmas,
        }
    }

    /// The user range `(start, end)` given at construction.
    pub fn user_range(&self) -> (VirtAddr, VirtAddr) {
        (VirtAddr::new(self.user_start), VirtAddr::new(self.user_end))
    }

    /// The number of VMAs.
    pub fn len(&self) -> usize {
        self.vmas.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }

    /// The VMAs, sorted by start.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> + '_ {
        self.vmas.values()
    }

    /// The VMA containing `addr`, if any.
    pub fn find(&self, addr: VirtAddr) -> Option<&Vma> {
        let (_, vma) = self.vmas.range(..=addr.as_u64()).next_back()?;
        vma.contains(addr).then_some(vma)
    }

    /// True when the 2 MiB-aligned block around `addr` lies entirely inside
    /// one anonymous VMA whose THP mode is not [`ThpMode::Never`], so a fault
    /// there may map a huge page. ([`ThpMode::Default`] counts as eligible
    /// today; the kernel's policy may change that.) Because neighbours with
    /// equal attributes are merged, a block across two VMAs always spans two
    /// different sets of attributes and is never eligible.
    pub fn thp_eligible(&self, addr: VirtAddr) -> bool {
        let block = addr.align_down(HUGE_PAGE_SIZE);
        let Some(block_end) = block.checked_add(HUGE_PAGE_SIZE) else { return false };
        self.find(block).is_some_and(|vma| {
            block_end <= vma.end && vma.kind == VmaKind::Anonymous && vma.thp != ThpMode::Never
        })
    }

    /// Maps `[start, start + len)` with `prot`, `kind` and [`ThpMode::Default`],
    /// merging with equal neighbours. Refuses to replace anything: the range
    /// must be free (mmap's `MAP_FIXED_NOREPLACE`; `MAP_FIXED` is an unmap
    /// first). Returns `start`.
    pub fn map_fixed(
        &mut self,
        start: VirtAddr,
        len: u64,
        prot: VmaProt,
        kind: VmaKind,
    ) -> Result<VirtAddr, VmaError> {
        let (s, e) = self.check_range(start, len)?;
        if let Some(vma) = self.overlapping(s, e).next() {
            return Err(VmaError::Overlaps { existing: (vma.start, vma.end) });
        }
        let vma = Vma { start, end: VirtAddr::new(e), prot, kind, thp: ThpMode::Default };
        self.rewrite(s, e, alloc::vec![vma])?;
        Ok(start)
    }

    /// Maps `len` bytes at the lowest free address that is a multiple of
    /// `align` (a power of two, at least [`PAGE_SIZE`]; [`HUGE_PAGE_SIZE`]
    /// for a mapping that can take huge pages from its first byte). Returns
    /// the chosen start.
    pub fn map_anywhere(
        &mut self,
        len: u64,
        align: u64,
        prot: VmaProt,
        kind: VmaKind,
    ) -> Result<VirtAddr, VmaError> {
        check_len_align(len, align)?;
        let start = self.find_gap(len, align).ok_or(VmaError::NoSpace)?;
        self.map_fixed(VirtAddr::new(start), len, prot, kind)
    }

    /// Maps `len` bytes at the highest free address that is a multiple of
    /// `align` (as for [`VmaSet::map_anywhere`]) and ends at or below
    /// `limit`: mmap's top-down placement, below the stack, which leaves
    /// the room above the program for its heap. Returns the chosen start.
    pub fn map_below(
        &mut self,
        limit: VirtAddr,
        len: u64,
        align: u64,
        prot: VmaProt,
        kind: VmaKind,
    ) -> Result<VirtAddr, VmaError> {
        check_len_align(len, align)?;
        let start = self.find_gap_below(limit.as_u64(), len, align).ok_or(VmaError::NoSpace)?;
        self.map_fixed(VirtAddr::new(start), len, prot, kind)
    }

    /// The highest `align`-aligned start of `len` free bytes ending at or
    /// below `limit`.
    fn find_gap_below(&self, limit: u64, len: u64, align: u64) -> Option<u64> {
        let user_start = self.user_start;
        let fit = |lo: u64, hi: u64| -> Option<u64> {
            let start = hi.checked_sub(len)? & !(align - 1);
            (start >= lo.max(user_start)).then_some(start)
        };
        // Gaps from the top down: between each VMA's end and `top` (the
        // start of the VMA above it, or the limit).
        let mut top = limit.min(self.user_end);
        for vma in self.vmas.values().rev() {
            let (s, e) = (vma.start.as_u64(), vma.end.as_u64());
            if s >= top {
                continue;
            }
            if e < top {
                if let Some(start) = fit(e, top) {
                    return Some(start);
                }
            }
            top = s;
        }
        fit(user_start, top)
    }

    /// Removes every part of a VMA inside `[start, start + len)`, splitting
    /// the VMAs that straddle its ends. A range with no VMA is fine. Returns
    /// the removed ranges (sorted, disjoint, touching ones joined): the caller
    /// unmaps the page tables there.
    pub fn unmap(&mut self, start: VirtAddr, len: u64) -> Result<Vec<(VirtAddr, VirtAddr)>, VmaError> {
        let (s, e) = self.check_range(start, len)?;
        let removed = join_ranges(self.overlapping(s, e).map(|vma| vma.clipped(s, e)));
        self.rewrite(s, e, Vec::new())?;
        Ok(removed)
    }

    /// The gap around `[start, end)`, which no VMA may overlap: from the end
    /// of the VMA below (or 0) to the start of the VMA above (or the end of
    /// the user range). munmap frees the page tables wholly inside it
    /// (`crate::space::free_pgtables`).
    pub fn gap_around(&self, start: VirtAddr, end: VirtAddr) -> (VirtAddr, VirtAddr) {
        debug_assert!(
            self.overlapping(start.as_u64(), end.as_u64()).next().is_none(),
            "gap_around: a VMA in the range"
        );
        let floor = self.vmas.range(..=start.as_u64()).next_back().map_or(0, |(_, v)| v.end.as_u64());
        let ceiling = self.vmas.range(end.as_u64()..).next().map_or(self.user_end, |(_, v)| v.start.as_u64());
        (VirtAddr::new(floor.min(start.as_u64())), VirtAddr::new(ceiling.max(end.as_u64())))
    }

    /// Sets the protection of `[start, start + len)` to `prot`, splitting the
    /// VMAs that straddle its ends. The whole range must be mapped. Returns
    /// the ranges whose protection changed (sorted, disjoint, touching ones
    /// joined): the caller changes the page tables there.
    pub fn protect(
        &mut self,
        start: VirtAddr,
        len: u64,
        prot: VmaProt,
    ) -> Result<Vec<(VirtAddr, VirtAddr)>, VmaError> {
        let (s, e) = self.check_range(start, len)?;
        let pieces = self.covering(s, e)?;
        let changed = join_ranges(pieces.iter().copied().filter(|vma| vma.prot != prot));
        let inside = pieces.into_iter().map(|vma| Vma { prot, ..vma }).collect();
        self.rewrite(s, e, inside)?;
        Ok(changed)
    }

    /// Sets the THP mode of `[start, start + len)` to `mode` (madvise's
    /// `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE`), splitting the VMAs that straddle
    /// its ends. The whole range must be mapped. Pages already mapped are
    /// left as they are: khugepaged and splitting are other modules' business.
    pub fn advise_thp(&mut self, start: VirtAddr, len: u64, mode: ThpMode) -> Result<(), VmaError> {
        let (s, e) = self.check_range(start, len)?;
        let pieces = self.covering(s, e)?;
        let inside = pieces.into_iter().map(|vma| Vma { thp: mode, ..vma }).collect();
        self.rewrite(s, e, inside)
    }

    /// Checks that `[start, start + len)` is valid and wholly mapped
    /// (madvise's rule); returns its end.
    pub fn check_mapped(&self, start: VirtAddr, len: u64) -> Result<VirtAddr, VmaError> {
        let (s, e) = self.check_range(start, len)?;
        self.covering(s, e)?;
        Ok(VirtAddr::new(e))
    }

    /// True when an area starts or ends exactly at `addr` while another
    /// area, or none, lies on its other side: a place where the attributes
    /// may change, so no huge leaf may straddle it.
    pub fn is_boundary(&self, addr: VirtAddr) -> bool {
        let a = addr.as_u64();
        let after = self.find(addr).map(|v| (v.start, v.end));
        let before = a.checked_sub(1).and_then(|b| self.find(VirtAddr::new(b))).map(|v| (v.start, v.end));
        before != after && (before.is_some() || after.is_some())
    }

    /// Checks every invariant of the module doc.
    ///
    /// # Panics
    /// When one is broken: a bug in this module.
    pub fn check_invariants(&self) {
        assert!(
            self.vmas.len() <= self.max_vmas,
            "VmaSet: {} VMAs, limit {}",
            self.vmas.len(),
            self.max_vmas
        );
        for (&key, vma) in &self.vmas {
            assert_eq!(key, vma.start.as_u64(), "VmaSet: key {key:#x} for {vma:?}");
            assert!(vma.start < vma.end, "VmaSet: empty {vma:?}");
            assert!(vma.start.is_aligned(PAGE_SIZE) && vma.end.is_aligned(PAGE_SIZE), "VmaSet: {vma:?}");
            assert!(
                self.user_start <= vma.start.as_u64() && vma.end.as_u64() <= self.user_end,
                "VmaSet: {vma:?} outside the user range"
            );
        }
        let mut vmas = self.vmas.values();
        let Some(mut prev) = vmas.next() else { return };
        for vma in vmas {
            assert!(prev.end <= vma.start, "VmaSet: {prev:?} overlaps {vma:?}");
            assert!(
                !(prev.end == vma.start && prev.same_attrs(vma)),
                "VmaSet: {prev:?} and {vma:?} not merged"
            );
            prev = vma;
        }
    }

    /// `[start, start + len)` as raw bounds, after checking alignment, length
    /// and that it lies inside the user range.
    fn check_range(&self, start: VirtAddr, len: u64) -> Result<(u64, u64), VmaError> {
        if !start.is_aligned(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(VmaError::Misaligned);
        }
        if len == 0 {
            return Err(VmaError::Empty);
        }
        let start = start.as_u64();
        let end = start.checked_add(len).ok_or(VmaError::OutOfRange)?;
        if start < self.user_start || end > self.user_end {
            return Err(VmaError::OutOfRange);
        }
        Ok((start, end))
    }

    /// The VMAs that overlap `[start, end)`, whole, in order.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> + '_ {
        // Only the last VMA starting before `start` can reach into the range.
        let before = self.vmas.range(..start).next_back().map(|(_, vma)| vma);
        let before = before.filter(|vma| vma.end.as_u64() > start);
        before.into_iter().chain(self.vmas.range(start..end).map(|(_, vma)| vma))
    }

    /// The parts of VMAs inside `[start, end)`, in order, when they cover it
    /// without a hole; [`VmaError::NotMapped`] otherwise.
    fn covering(&self, start: u64, end: u64) -> Result<Vec<Vma>, VmaError> {
        let pieces: Vec<Vma> = self.overlapping(start, end).map(|vma| vma.clipped(start, end)).collect();
        let mut cursor = start;
        for piece in &pieces {
            if piece.start.as_u64() != cursor {
                return Err(VmaError::NotMapped);
            }
            cursor = piece.end.as_u64();
        }
        if cursor != end {
            return Err(VmaError::NotMapped);
        }
        Ok(pieces)
    }

    /// The lowest multiple of `align` in a free gap of at least `len` bytes.
    fn find_gap(&self, len: u64, align: u64) -> Option<u64> {
        // Gaps lie between `cursor` (the end of the previous VMA, or the user
        // start) and the next VMA's start (or the user end).
        let mut cursor = self.user_start;
        let bounds = self.vmas.values().map(|vma| (vma.start.as_u64(), vma.end.as_u64()));
        for (next_start, next_end) in bounds.chain(core::iter::once((self.user_end, self.user_end))) {
            // On overflow no later gap can hold it either: give up.
            let candidate = VirtAddr::new(cursor).checked_align_up(align)?.as_u64();
            if candidate.checked_add(len)? <= next_start {
                return Some(candidate);
            }
            cursor = next_end;
        }
        None
    }

    /// The one place the set changes. Replaces what lies in `[start, end)`
    /// with `inside` (sorted, disjoint, within the range; neighbours in it may
    /// have equal attributes), keeping the parts of VMAs outside the range,
    /// and merges equal neighbours, including those just outside. Commits only
    /// when the result stays within the limit.
    fn rewrite(&mut self, start: u64, end: u64, inside: Vec<Vma>) -> Result<(), VmaError> {
        // The VMAs that overlap or touch the range: any of them may be split
        // or merged. Only the first can start before `start`, only the last
        // can end after `end`.
        let before = self.vmas.range(..start).next_back().filter(|(_, vma)| vma.end.as_u64() >= start);
        let old: Vec<Vma> = before.into_iter().chain(self.vmas.range(start..=end)).map(|(_, v)| *v).collect();
        let left = old.first().filter(|vma| vma.start.as_u64() < start);
        let right = old.last().filter(|vma| vma.end.as_u64() > end);

        let left = left.map(|vma| vma.with_range(vma.start.as_u64(), vma.end.as_u64().min(start)));
        let right = right.map(|vma| vma.with_range(vma.start.as_u64().max(end), vma.end.as_u64()));
        let mut new: Vec<Vma> = Vec::with_capacity(inside.len() + 2);
        for vma in left.into_iter().chain(inside).chain(right) {
            match new.last_mut() {
                Some(last) if last.end == vma.start && last.same_attrs(&vma) => last.end = vma.end,
                _ => new.push(vma),
            }
        }

        if self.vmas.len() - old.len() + new.len() > self.max_vmas {
            return Err(VmaError::TooManyVmas);
        }
        for vma in &old {
            self.vmas.remove(&vma.start.as_u64());
        }
        for vma in new {
            self.vmas.insert(vma.start.as_u64(), vma);
        }
        Ok(())
    }
}

impl fmt::Debug for VmaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vmas.values()).finish()
    }
}

/// Sorted, disjoint ranges of `vmas`, with touching ones joined.
fn join_ranges(vmas: impl Iterator<Item = Vma>) -> Vec<(VirtAddr, VirtAddr)> {
    let mut out: Vec<(VirtAddr, VirtAddr)> = Vec::new();
    for vma in vmas {
        match out.last_mut() {
            Some(last) if last.1 == vma.start => last.1 = vma.end,
            _ => out.push((vma.start, vma.end)),
        }
    }
    out
}

/// The arguments [`VmaSet::map_anywhere`] and [`VmaSet::map_below`]
/// check: `align` a power of two of at least [`PAGE_SIZE`]
/// ([`VmaError::Misaligned`]), `len` a whole number of pages
/// ([`VmaError::Misaligned`]) and not zero ([`VmaError::Empty`]).
fn check_len_align(len: u64, align: u64) -> Result<(), VmaError> {
    if !align.is_power_of_two() || align < PAGE_SIZE || !len.is_multiple_of(PAGE_SIZE) {
        return Err(VmaError::Misaligned);
    }
    if len == 0 {
        return Err(VmaError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    const P: u64 = PAGE_SIZE;
    const M2: u64 = HUGE_PAGE_SIZE;
    const RW: VmaProt = VmaProt::READ_WRITE;
    const RO: VmaProt = VmaProt::READ;
    const ANON: VmaKind = VmaKind::Anonymous;

    fn va(raw: u64) -> VirtAddr {
        VirtAddr::new(raw)
    }

    /// A set over the usual x86_64 user range.
    fn user_set() -> VmaSet {
        VmaSet::new(va(0x1000), va(0x0000_7fff_ffff_f000))
    }

    /// The VMAs as `(start, end, prot, thp)`.
    fn spans(set: &VmaSet) -> Vec<(u64, u64, VmaProt, ThpMode)> {
        set.iter().map(|v| (v.start.as_u64(), v.end.as_u64(), v.prot, v.thp)).collect()
    }

    fn ranges(raw: &[(u64, u64)]) -> Vec<(VirtAddr, VirtAddr)> {
        raw.iter().map(|&(s, e)| (va(s), va(e))).collect()
    }

    mod construction {
        use super::*;

        #[test]
        #[should_panic(expected = "bad user range")]
        fn misaligned_user_range_panics() {
            VmaSet::new(va(0x1800), va(0x10_0000));
        }

        #[test]
        #[should_panic(expected = "bad user range")]
        fn empty_user_range_panics() {
            VmaSet::new(va(0x10_0000), va(0x10_0000));
        }

        #[test]
        fn to_prot_keeps_write_and_exec_and_is_never_global() {
            let rx = VmaProt::READ_EXEC.to_prot(true);
            assert_eq!(rx, Prot { writable: false, user: true, executable: true, global: false });
            let rw = RW.to_prot(false);
            assert_eq!(rw, Prot { writable: true, user: false, executable: false, global: false });
            assert_eq!(VmaProt::NONE.to_prot(true), Prot { user: true, ..Prot::READ });
        }
    }

    mod map {
        use super::*;

        #[test]
        fn map_fixed_checks_its_arguments_in_order() {
            let mut set = VmaSet::new(va(0x10_0000), va(0x20_0000));
            assert_eq!(set.map_fixed(va(0x10_0800), P, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_fixed(va(0x10_0000), 100, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_fixed(va(0x10_0000), 0, RW, ANON), Err(VmaError::Empty));
            assert_eq!(set.map_fixed(va(0xf_f000), P, RW, ANON), Err(VmaError::OutOfRange));
            assert_eq!(set.map_fixed(va(0x1f_f000), 2 * P, RW, ANON), Err(VmaError::OutOfRange));
            assert_eq!(set.map_fixed(va(0x10_0000), !(P - 1), RW, ANON), Err(VmaError::OutOfRange));
            assert_eq!(set.map_fixed(va(!(P - 1)), P, RW, ANON), Err(VmaError::OutOfRange));
            assert!(set.is_empty());
            // The whole user range is fine.
            assert_eq!(set.map_fixed(va(0x10_0000), 0x10_0000, RW, ANON), Ok(va(0x10_0000)));
            set.check_invariants();
            assert_eq!(spans(&set), [(0x10_0000, 0x20_0000, RW, ThpMode::Default)]);
        }

        #[test]
        fn map_fixed_refuses_overlap_and_names_the_lowest_vma_hit() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 4 * P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_8000), 4 * P, RO, ANON).unwrap();
            let before = set.clone();
            let first = Err(VmaError::Overlaps { existing: (va(0x10_0000), va(0x10_4000)) });
            let second = Err(VmaError::Overlaps { existing: (va(0x10_8000), va(0x10_c000)) });
            // Reaching into the first from below, from the hole, both, and inside.
            assert_eq!(set.map_fixed(va(0xf_f000), 2 * P, RW, ANON), first);
            assert_eq!(set.map_fixed(va(0x10_3000), 4 * P, RW, ANON), first);
            assert_eq!(set.map_fixed(va(0xf_0000), 0x20_0000, RW, ANON), first);
            assert_eq!(set.map_fixed(va(0x10_1000), P, RW, ANON), first);
            assert_eq!(set.map_fixed(va(0x10_4000), 5 * P, RW, ANON), second);
            assert_eq!(set, before);
            // The hole itself, exactly: fits, and touches both.
            set.map_fixed(va(0x10_4000), 4 * P, VmaProt::NONE, ANON).unwrap();
            set.check_invariants();
            assert_eq!(set.len(), 3);
        }

        #[test]
        fn touching_maps_merge_only_with_equal_attributes() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_2000), P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_3000), P, RO, ANON).unwrap();
            set.check_invariants();
            assert_eq!(set.len(), 3);
            // Filling the hole joins the first two, not the read-only one.
            set.map_fixed(va(0x10_1000), P, RW, ANON).unwrap();
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [(0x10_0000, 0x10_3000, RW, ThpMode::Default), (0x10_3000, 0x10_4000, RO, ThpMode::Default)]
            );
            assert_eq!(set.find(va(0x10_2fff)).map(|v| v.start), Some(va(0x10_0000)));
            assert_eq!(set.find(va(0x10_3000)).map(|v| v.prot), Some(RO));
            assert_eq!(set.find(va(0x10_4000)), None);
            assert_eq!(set.find(va(0xf_ffff)), None);
        }

        #[test]
        fn map_anywhere_takes_the_lowest_aligned_gap() {
            let mut set = VmaSet::new(va(0x1000), va(0x100_0000));
            // Page-aligned: the very first page.
            assert_eq!(set.map_anywhere(P, P, RO, ANON), Ok(va(0x1000)));
            // 2 MiB-aligned: the first block boundary above it.
            assert_eq!(set.map_anywhere(M2, M2, RW, ANON), Ok(va(0x20_0000)));
            // A gap of 3 pages below 2 MiB takes a 3-page request, not a 4-page one.
            set.map_fixed(va(0x5000), 0x1f_b000, RO, ANON).unwrap();
            assert_eq!(spans(&set)[0], (0x1000, 0x2000, RO, ThpMode::Default));
            assert_eq!(set.map_anywhere(4 * P, P, RW, ANON), Ok(va(0x40_0000)));
            assert_eq!(set.map_anywhere(3 * P, P, VmaProt::NONE, ANON), Ok(va(0x2000)));
            // 16 KiB alignment skips the unaligned part of a gap.
            set.unmap(va(0x40_0000), 4 * P).unwrap();
            set.map_fixed(va(0x40_1000), P, VmaProt::NONE, ANON).unwrap();
            assert_eq!(set.map_anywhere(4 * P, 4 * P, RW, ANON), Ok(va(0x40_4000)));
            set.check_invariants();
            // What is left: [0x40_8000, 0x100_0000); 2 MiB-aligned from 0x60_0000.
            assert_eq!(set.map_anywhere(5 * M2, M2, RW, ANON), Ok(va(0x60_0000)));
            let before = set.clone();
            assert_eq!(set.map_anywhere(M2, M2, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_anywhere(0x100_0000, P, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_anywhere(!(P - 1), P, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_anywhere(P, 3 * P, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_anywhere(P, 2048, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_anywhere(P + 1, P, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_anywhere(0, P, RW, ANON), Err(VmaError::Empty));
            assert_eq!(set, before);
            // Filling the three gaps left, each exactly, largest first:
            // [0x40_8000, 0x60_0000), [0x40_2000, 0x40_4000), [0x40_0000, 0x40_1000).
            assert_eq!(set.map_anywhere(0x1f_8000, P, RO, ANON), Ok(va(0x40_8000)));
            assert_eq!(set.map_anywhere(2 * P, P, RO, ANON), Ok(va(0x40_2000)));
            assert_eq!(set.map_anywhere(P, P, RO, ANON), Ok(va(0x40_0000)));
            assert_eq!(set.map_anywhere(P, P, RO, ANON), Err(VmaError::NoSpace));
            set.check_invariants();
        }

        #[test]
        fn map_below_takes_the_highest_aligned_gap_under_the_limit() {
            let mut set = VmaSet::new(va(0x1000), va(0x100_0000));
            // Just under the limit, whatever lies above it.
            set.map_fixed(va(0xf0_0000), P, RW, ANON).unwrap();
            assert_eq!(set.map_below(va(0xe0_0000), P, P, RO, ANON), Ok(va(0xdf_f000)));
            // The next one goes below it (the gap above is full).
            assert_eq!(set.map_below(va(0xe0_0000), 2 * P, P, RW, ANON), Ok(va(0xdf_d000)));
            // 2 MiB-aligned: the highest block boundary that fits.
            assert_eq!(set.map_below(va(0xe0_0000), M2, M2, RW, ANON), Ok(va(0xa0_0000)));
            // A limit inside a VMA: the gap under that VMA.
            assert_eq!(set.map_below(va(0xa1_0000), P, P, RO, ANON), Ok(va(0x9f_f000)));
            set.check_invariants();
            // A request no gap under the limit holds.
            let before = set.clone();
            assert_eq!(set.map_below(va(0x3000), 3 * P, P, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_below(va(0x100_0000), P, 3 * P, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_below(va(0x100_0000), P, 2048, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_below(va(0x100_0000), P + 1, P, RW, ANON), Err(VmaError::Misaligned));
            assert_eq!(set.map_below(va(0x100_0000), 0, P, RW, ANON), Err(VmaError::Empty));
            assert_eq!(set, before);
            // The lowest gap, exactly.
            assert_eq!(set.map_below(va(0x3000), P, P, RW, ANON), Ok(va(0x2000)));
            assert_eq!(set.map_below(va(0x3000), P, P, RW, ANON), Ok(va(0x1000)));
            assert_eq!(set.map_below(va(0x3000), P, P, RW, ANON), Err(VmaError::NoSpace));
            set.check_invariants();
        }

        #[test]
        fn map_anywhere_alignment_near_the_top_does_not_overflow() {
            let top = !(M2 - 1);
            let mut set = VmaSet::new(va(top - M2), va(top));
            set.map_fixed(va(top - M2), P, RW, ANON).unwrap();
            assert_eq!(set.map_anywhere(P, M2, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_anywhere(P, 1 << 63, RW, ANON), Err(VmaError::NoSpace));
            assert_eq!(set.map_anywhere(P, P, RW, ANON), Ok(va(top - M2 + P)));
        }
    }

    mod unmap {
        use super::*;

        #[test]
        fn unmap_splits_at_both_ends() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 16 * P, RW, ANON).unwrap();
            let removed = set.unmap(va(0x10_4000), 4 * P).unwrap();
            assert_eq!(removed, ranges(&[(0x10_4000, 0x10_8000)]));
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [(0x10_0000, 0x10_4000, RW, ThpMode::Default), (0x10_8000, 0x11_0000, RW, ThpMode::Default)]
            );
            // Mapping the hole again merges everything back.
            set.map_fixed(va(0x10_4000), 4 * P, RW, ANON).unwrap();
            assert_eq!(spans(&set), [(0x10_0000, 0x11_0000, RW, ThpMode::Default)]);
        }

        #[test]
        fn unmap_exact_cover_and_edges() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 8 * P, RW, ANON).unwrap();
            // Trim the first page, then the last, then the rest exactly.
            assert_eq!(set.unmap(va(0x10_0000), P).unwrap(), ranges(&[(0x10_0000, 0x10_1000)]));
            assert_eq!(set.unmap(va(0x10_7000), P).unwrap(), ranges(&[(0x10_7000, 0x10_8000)]));
            assert_eq!(spans(&set), [(0x10_1000, 0x10_7000, RW, ThpMode::Default)]);
            assert_eq!(set.unmap(va(0x10_1000), 6 * P).unwrap(), ranges(&[(0x10_1000, 0x10_7000)]));
            assert!(set.is_empty());
        }

        #[test]
        fn unmap_across_several_vmas_and_holes() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 4 * P, RW, ANON).unwrap(); // [0x10_0000, 0x10_4000)
            set.map_fixed(va(0x10_4000), 4 * P, RO, ANON).unwrap(); // touches: [.., 0x10_8000)
            set.map_fixed(va(0x10_a000), 2 * P, RW, ANON).unwrap(); // after a hole
            set.map_fixed(va(0x10_e000), 4 * P, RO, ANON).unwrap(); // [0x10_e000, 0x11_2000)
            let removed = set.unmap(va(0x10_2000), 0xe * P).unwrap(); // up to 0x11_0000
                                                                      // Touching pieces come back joined; the hole splits them.
            assert_eq!(
                removed,
                ranges(&[(0x10_2000, 0x10_8000), (0x10_a000, 0x10_c000), (0x10_e000, 0x11_0000)])
            );
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [(0x10_0000, 0x10_2000, RW, ThpMode::Default), (0x11_0000, 0x11_2000, RO, ThpMode::Default)]
            );
        }

        #[test]
        fn unmap_of_a_hole_is_fine_and_bad_ranges_are_refused() {
            let mut set = VmaSet::new(va(0x10_0000), va(0x20_0000));
            set.map_fixed(va(0x10_0000), P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_3000), P, RW, ANON).unwrap();
            let before = set.clone();
            assert_eq!(set.unmap(va(0x10_1000), 2 * P), Ok(vec![]));
            assert_eq!(set.unmap(va(0x10_1000), 3), Err(VmaError::Misaligned));
            assert_eq!(set.unmap(va(0x10_1000), 0), Err(VmaError::Empty));
            assert_eq!(set.unmap(va(0xf_f000), 2 * P), Err(VmaError::OutOfRange));
            assert_eq!(set.unmap(va(0x10_0000), 0x10_1000), Err(VmaError::OutOfRange));
            assert_eq!(set, before);
        }
    }

    mod protect {
        use super::*;

        #[test]
        fn protect_splits_at_both_ends_and_merges_back() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 8 * P, RW, ANON).unwrap();
            let changed = set.protect(va(0x10_2000), 2 * P, RO).unwrap();
            assert_eq!(changed, ranges(&[(0x10_2000, 0x10_4000)]));
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [
                    (0x10_0000, 0x10_2000, RW, ThpMode::Default),
                    (0x10_2000, 0x10_4000, RO, ThpMode::Default),
                    (0x10_4000, 0x10_8000, RW, ThpMode::Default),
                ]
            );
            // Back to read-write over a wider range: only the middle changes,
            // and the three become one.
            let changed = set.protect(va(0x10_1000), 6 * P, RW).unwrap();
            assert_eq!(changed, ranges(&[(0x10_2000, 0x10_4000)]));
            assert_eq!(spans(&set), [(0x10_0000, 0x10_8000, RW, ThpMode::Default)]);
            // Nothing to change: nothing returned, nothing split.
            assert_eq!(set.protect(va(0x10_3000), P, RW), Ok(vec![]));
            assert_eq!(set.len(), 1);
        }

        #[test]
        fn protect_exact_cover_of_several_vmas_joins_them() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 2 * P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_2000), 2 * P, RO, ANON).unwrap();
            set.map_fixed(va(0x10_4000), 2 * P, VmaProt::READ_EXEC, ANON).unwrap();
            let changed = set.protect(va(0x10_0000), 6 * P, RO).unwrap();
            // The read-only middle did not change, so two separate ranges.
            assert_eq!(changed, ranges(&[(0x10_0000, 0x10_2000), (0x10_4000, 0x10_6000)]));
            set.check_invariants();
            assert_eq!(spans(&set), [(0x10_0000, 0x10_6000, RO, ThpMode::Default)]);
        }

        #[test]
        fn protect_with_a_hole_is_not_mapped_and_changes_nothing() {
            let mut set = user_set();
            set.map_fixed(va(0x10_0000), 4 * P, RW, ANON).unwrap();
            set.map_fixed(va(0x10_5000), 4 * P, RW, ANON).unwrap();
            let before = set.clone();
            // A hole in the middle, at the start, at the end, and all hole.
            assert_eq!(set.protect(va(0x10_2000), 6 * P, RO), Err(VmaError::NotMapped));
            assert_eq!(set.protect(va(0xf_f000), 2 * P, RO), Err(VmaError::NotMapped));
            assert_eq!(set.protect(va(0x10_8000), 2 * P, RO), Err(VmaError::NotMapped));
            assert_eq!(set.protect(va(0x10_4000), P, RO), Err(VmaError::NotMapped));
            assert_eq!(set.protect(va(0x20_0000), P, RO), Err(VmaError::NotMapped));
            assert_eq!(set.protect(va(0x10_0001), P, RO), Err(VmaError::Misaligned));
            assert_eq!(set.protect(va(0x10_0000), 0, RO), Err(VmaError::Empty));
            assert_eq!(set.protect(va(0), P, RO), Err(VmaError::OutOfRange));
            assert_eq!(set, before);
        }
    }

    mod thp {
        use super::*;

        #[test]
        fn advise_thp_splits_and_needs_full_coverage() {
            let mut set = user_set();
            set.map_fixed(va(0x40_0000), 3 * M2, RW, ANON).unwrap();
            set.advise_thp(va(0x40_0000 + M2), M2, ThpMode::Never).unwrap();
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [
                    (0x40_0000, 0x60_0000, RW, ThpMode::Default),
                    (0x60_0000, 0x80_0000, RW, ThpMode::Never),
                    (0x80_0000, 0xa0_0000, RW, ThpMode::Default),
                ]
            );
            let before = set.clone();
            assert_eq!(set.advise_thp(va(0x90_0000), M2, ThpMode::Always), Err(VmaError::NotMapped));
            assert_eq!(set, before);
            set.advise_thp(va(0x60_0000), M2, ThpMode::Default).unwrap();
            assert_eq!(spans(&set), [(0x40_0000, 0xa0_0000, RW, ThpMode::Default)]);
        }

        #[test]
        fn thp_enabled_switch_allows_by_advice() {
            use ThpMode::{Always as A, Default as D, Never as N};
            let allowed = |e: ThpEnabled| [D, A, N].map(|m| e.allows(m));
            assert_eq!(allowed(ThpEnabled::Always), [true, true, false]);
            assert_eq!(allowed(ThpEnabled::Madvise), [false, true, false]);
            assert_eq!(allowed(ThpEnabled::Never), [false, false, false]);
        }

        #[test]
        fn thp_eligible_needs_a_whole_block_in_one_vma_not_never() {
            let mut set = user_set();
            // [1 MiB, 5 MiB + 4 KiB): only the block [2 MiB, 4 MiB) is whole.
            set.map_fixed(va(0x10_0000), 0x40_1000, RW, ANON).unwrap();
            assert!(!set.thp_eligible(va(0x10_0000)));
            assert!(set.thp_eligible(va(0x20_0000)));
            assert!(set.thp_eligible(va(0x3f_ffff)));
            assert!(!set.thp_eligible(va(0x40_0000)));
            assert!(!set.thp_eligible(va(0x50_0000)));
            assert!(!set.thp_eligible(va(0x7fff_ffff_f000)));
            assert!(!set.thp_eligible(va(u64::MAX)));
            // Never turns it off; Always keeps it; a split by protect makes
            // the block span two VMAs.
            set.advise_thp(va(0x20_0000), M2, ThpMode::Never).unwrap();
            assert!(!set.thp_eligible(va(0x30_0000)));
            set.advise_thp(va(0x10_0000), 0x40_1000, ThpMode::Always).unwrap();
            assert_eq!(set.len(), 1);
            assert!(set.thp_eligible(va(0x30_0000)));
            set.protect(va(0x3f_f000), P, RO).unwrap();
            assert!(!set.thp_eligible(va(0x30_0000)));
            // An unmapped page inside the block does the same.
            set.protect(va(0x3f_f000), P, RW).unwrap();
            assert!(set.thp_eligible(va(0x30_0000)));
            set.unmap(va(0x21_0000), P).unwrap();
            assert!(!set.thp_eligible(va(0x30_0000)));
            // A VMA of exactly one block is eligible.
            set.unmap(va(0x10_0000), 0x40_1000).unwrap();
            set.map_fixed(va(0x20_0000), M2, RW, ANON).unwrap();
            assert!(set.thp_eligible(va(0x20_0000)) && set.thp_eligible(va(0x3f_ffff)));
            assert!(!set.thp_eligible(va(0x1f_ffff)) && !set.thp_eligible(va(0x40_0000)));
        }
    }

    mod limits {
        use super::*;

        #[test]
        fn vma_limit_is_all_or_nothing() {
            let mut set = VmaSet::with_max_vmas(va(0x10_0000), va(0x20_0000), 3);
            set.map_fixed(va(0x10_0000), 4 * P, RW, ANON).unwrap();
            set.map_fixed(va(0x11_0000), 4 * P, RW, ANON).unwrap();
            let before = set.clone();
            // Splitting the middle of a VMA needs two more: refused.
            assert_eq!(set.protect(va(0x10_1000), P, RO), Err(VmaError::TooManyVmas));
            assert_eq!(set, before);
            // Splitting one end needs one: allowed; now at the limit.
            set.protect(va(0x10_0000), P, RO).unwrap();
            assert_eq!(set.len(), 3);
            let before = set.clone();
            assert_eq!(set.map_fixed(va(0x12_0000), P, RW, ANON), Err(VmaError::TooManyVmas));
            assert_eq!(set.map_anywhere(P, P, VmaProt::NONE, ANON), Err(VmaError::TooManyVmas));
            assert_eq!(set.unmap(va(0x10_2000), P), Err(VmaError::TooManyVmas));
            assert_eq!(set.advise_thp(va(0x11_1000), P, ThpMode::Never), Err(VmaError::TooManyVmas));
            assert_eq!(set, before);
            // What does not add a VMA still works at the limit: growing one by
            // merging (anywhere or fixed), trimming one end, joining two by
            // filling the gap between.
            assert_eq!(set.map_anywhere(P, P, RW, ANON), Ok(va(0x10_4000)));
            set.map_fixed(va(0x10_5000), P, RW, ANON).unwrap();
            set.unmap(va(0x11_3000), P).unwrap();
            set.map_fixed(va(0x10_6000), 0xa * P, RW, ANON).unwrap();
            set.check_invariants();
            assert_eq!(
                spans(&set),
                [(0x10_0000, 0x10_1000, RO, ThpMode::Default), (0x10_1000, 0x11_3000, RW, ThpMode::Default)]
            );
        }

        #[test]
        fn default_limit_is_max_vmas() {
            let mut set = user_set();
            for i in 0..MAX_VMAS as u64 {
                set.map_fixed(va(0x10_0000 + 2 * i * P), P, RW, ANON).unwrap();
            }
            assert_eq!(set.len(), MAX_VMAS);
            let next = va(0x10_0000 + 2 * MAX_VMAS as u64 * P);
            assert_eq!(set.map_fixed(next, P, RW, ANON), Err(VmaError::TooManyVmas));
            // Filling a gap joins two: fine.
            set.map_fixed(va(0x10_1000), P, RW, ANON).unwrap();
            assert_eq!(set.len(), MAX_VMAS - 1);
            set.check_invariants();
        }
    }

    /// Thousands of random operations on a window of 1024 pages (two 2 MiB
    /// blocks), checked against a page-by-page model: the result or error of
    /// each operation, the VMAs (which must be the model's maximal runs of
    /// equal pages), `find` for every page, `thp_eligible` for each block,
    /// the invariants, and that an error leaves the set unchanged.
    mod model {
        use super::*;

        const N: usize = 1024;
        const BASE: u64 = 0x4000_0000;
        const END: u64 = BASE + N as u64 * P;
        const MAX: usize = 24;
        const PROTS: [VmaProt; 4] = [VmaProt::NONE, VmaProt::READ, VmaProt::READ_WRITE, VmaProt::READ_EXEC];
        const MODES: [ThpMode; 3] = [ThpMode::Default, ThpMode::Never, ThpMode::Always];

        type Page = Option<(VmaProt, ThpMode)>;

        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
        }

        fn page_addr(p: usize) -> u64 {
            BASE + p as u64 * P
        }

        /// Maximal runs of equal mapped pages: what the VMAs must be.
        fn runs(model: &[Page]) -> Vec<(u64, u64, VmaProt, ThpMode)> {
            let mut out: Vec<(u64, u64, VmaProt, ThpMode)> = Vec::new();
            for (p, page) in model.iter().enumerate() {
                let Some((prot, thp)) = *page else { continue };
                match out.last_mut() {
                    Some(last) if last.1 == page_addr(p) && (last.2, last.3) == (prot, thp) => last.1 += P,
                    _ => out.push((page_addr(p), page_addr(p) + P, prot, thp)),
                }
            }
            out
        }

        /// Maximal runs of pages in `pages` for which `pred` holds.
        fn page_ranges(
            pages: core::ops::Range<usize>,
            pred: impl Fn(usize) -> bool,
        ) -> Vec<(VirtAddr, VirtAddr)> {
            let mut out: Vec<(VirtAddr, VirtAddr)> = Vec::new();
            for p in pages.filter(|&p| pred(p)) {
                match out.last_mut() {
                    Some(last) if last.1 == va(page_addr(p)) => last.1 = va(page_addr(p + 1)),
                    _ => out.push((va(page_addr(p)), va(page_addr(p + 1)))),
                }
            }
            out
        }

        /// The model's view of a range check: the pages, or the error.
        fn model_range(start: u64, len: u64) -> Result<core::ops::Range<usize>, VmaError> {
            if !start.is_multiple_of(P) || !len.is_multiple_of(P) {
                return Err(VmaError::Misaligned);
            }
            if len == 0 {
                return Err(VmaError::Empty);
            }
            if start < BASE || start + len > END {
                return Err(VmaError::OutOfRange);
            }
            Ok(((start - BASE) / P) as usize..((start + len - BASE) / P) as usize)
        }

        /// The model after mapping `pages`, or why not.
        fn model_map(
            model: &[Page],
            pages: core::ops::Range<usize>,
            prot: VmaProt,
        ) -> Result<Vec<Page>, VmaError> {
            if let Some(p) = pages.clone().find(|&p| model[p].is_some()) {
                let run =
                    runs(model).into_iter().find(|r| r.0 <= page_addr(p) && page_addr(p) < r.1).unwrap();
                return Err(VmaError::Overlaps { existing: (va(run.0), va(run.1)) });
            }
            let mut new = model.to_vec();
            new[pages].fill(Some((prot, ThpMode::Default)));
            Ok(new)
        }

        fn within_limit(new: Vec<Page>) -> Result<Vec<Page>, VmaError> {
            if runs(&new).len() > MAX {
                return Err(VmaError::TooManyVmas);
            }
            Ok(new)
        }

        /// What the model expects: the outcome and the model after it, or the error.
        type Expected = Result<(Outcome, Vec<Page>), VmaError>;

        #[derive(Debug, PartialEq)]
        enum Outcome {
            Mapped(VirtAddr),
            Ranges(Vec<(VirtAddr, VirtAddr)>),
            Advised,
        }

        #[test]
        fn random_operations_agree_with_a_page_model() {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut set = VmaSet::with_max_vmas(va(BASE), va(END), MAX);
            let mut model: Vec<Page> = vec![None; N];
            let mut seen_ok = [0usize; 5];
            let mut seen_err: Vec<VmaError> = Vec::new();
            let mut nr_eligible = 0;
            for step in 0..6000 {
                // A start a little outside the window at times, rarely misaligned.
                let mut start = BASE - 8 * P + rng.below(N as u64 + 16) * P;
                if rng.below(64) == 0 {
                    start += 0x800;
                }
                let mut len = match rng.below(16) {
                    0 => 0,
                    1..=3 => (1 + rng.below(N as u64)) * P,
                    _ => (1 + rng.below(24)) * P,
                };
                // Whole 2 MiB blocks at times, so that some become THP-eligible.
                if rng.below(8) == 0 {
                    start = BASE + rng.below((N / 512) as u64) * M2;
                    len = M2;
                }
                if rng.below(64) == 0 {
                    len += 8;
                }
                let prot = PROTS[rng.below(4) as usize];
                let mode = MODES[rng.below(3) as usize];
                let op = rng.below(5) as usize;
                let before = set.clone();

                let (got, want): (Result<Outcome, VmaError>, Expected) = match op {
                    0 => (
                        set.map_fixed(va(start), len, prot, ANON).map(Outcome::Mapped),
                        model_range(start, len)
                            .and_then(|pages| model_map(&model, pages, prot))
                            .and_then(within_limit)
                            .map(|new| (Outcome::Mapped(va(start)), new)),
                    ),
                    1 => {
                        let align = [P, 4 * P, M2][rng.below(3) as usize];
                        let want = if !len.is_multiple_of(P) {
                            Err(VmaError::Misaligned)
                        } else if len == 0 {
                            Err(VmaError::Empty)
                        } else {
                            // Every aligned start in turn, lowest first.
                            (BASE..END)
                                .step_by(align as usize)
                                .find(|&s| {
                                    model_range(s, len).is_ok_and(|r| r.clone().all(|p| model[p].is_none()))
                                })
                                .ok_or(VmaError::NoSpace)
                                .and_then(|s| {
                                    let new = model_map(&model, model_range(s, len).unwrap(), prot).unwrap();
                                    within_limit(new).map(|new| (Outcome::Mapped(va(s)), new))
                                })
                        };
                        (set.map_anywhere(len, align, prot, ANON).map(Outcome::Mapped), want)
                    }
                    2 => (
                        set.unmap(va(start), len).map(Outcome::Ranges),
                        model_range(start, len).and_then(|pages| {
                            let removed = page_ranges(pages.clone(), |p| model[p].is_some());
                            let mut new = model.clone();
                            new[pages].fill(None);
                            within_limit(new).map(|new| (Outcome::Ranges(removed), new))
                        }),
                    ),
                    3 => (
                        set.protect(va(start), len, prot).map(Outcome::Ranges),
                        model_range(start, len).and_then(|pages| {
                            if pages.clone().any(|p| model[p].is_none()) {
                                return Err(VmaError::NotMapped);
                            }
                            let changed = page_ranges(pages.clone(), |p| model[p].unwrap().0 != prot);
                            let mut new = model.clone();
                            new[pages].iter_mut().for_each(|page| page.as_mut().unwrap().0 = prot);
                            within_limit(new).map(|new| (Outcome::Ranges(changed), new))
                        }),
                    ),
                    _ => (
                        set.advise_thp(va(start), len, mode).map(|()| Outcome::Advised),
                        model_range(start, len).and_then(|pages| {
                            if pages.clone().any(|p| model[p].is_none()) {
                                return Err(VmaError::NotMapped);
                            }
                            let mut new = model.clone();
                            new[pages].iter_mut().for_each(|page| page.as_mut().unwrap().1 = mode);
                            within_limit(new).map(|new| (Outcome::Advised, new))
                        }),
                    ),
                };

                let ctx =
                    || std::format!("step {step}: op {op} start {start:#x} len {len:#x} {prot:?} {mode:?}");
                match want {
                    Ok((outcome, new)) => {
                        assert_eq!(got, Ok(outcome), "{}", ctx());
                        model = new;
                        seen_ok[op] += 1;
                    }
                    Err(e) => {
                        assert_eq!(got, Err(e), "{}", ctx());
                        assert_eq!(set, before, "{}: an error changed the set", ctx());
                        if !seen_err
                            .iter()
                            .any(|seen| core::mem::discriminant(seen) == core::mem::discriminant(&e))
                        {
                            seen_err.push(e);
                        }
                    }
                }

                set.check_invariants();
                assert_eq!(spans(&set), runs(&model), "{}", ctx());
                for (p, page) in model.iter().enumerate() {
                    let found = set.find(va(page_addr(p) + rng.below(P))).map(|v| (v.prot, v.thp));
                    assert_eq!(found, *page, "{}: page {p}", ctx());
                }
                assert_eq!(set.find(va(BASE - 1)), None);
                assert_eq!(set.find(va(END)), None);
                for block in 0..N / 512 {
                    let pages = &model[block * 512..(block + 1) * 512];
                    let want = pages[0].is_some_and(|(_, thp)| thp != ThpMode::Never)
                        && pages.iter().all(|page| *page == pages[0]);
                    let addr = va(page_addr(block * 512) + rng.below(M2));
                    assert_eq!(set.thp_eligible(addr), want, "{}: block {block}", ctx());
                    nr_eligible += usize::from(want);
                }
            }
            // The run must have exercised every operation and every error.
            assert!(seen_ok.iter().all(|&n| n > 50), "successes per op: {seen_ok:?}");
            assert_eq!(seen_err.len(), 7, "errors seen: {seen_err:?}");
            assert!(nr_eligible > 100, "blocks THP-eligible only {nr_eligible} times");
        }
    }
}
