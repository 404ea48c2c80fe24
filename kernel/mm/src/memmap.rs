//! The boot memory map: which physical ranges are usable RAM.
//!
//! Each boot path fills one [`MemoryMap`] from what its firmware says (the
//! bootloader's region list on x86_64, the device tree's `memory` nodes on
//! AArch64), then carves out what is in use (the kernel image, the device
//! tree, firmware reservations). The kernel then hands the map to the early
//! frame allocator and later to the buddy allocator.
//!
//! Invariants kept by every method, checked by the host tests:
//! - ranges are page-aligned (a partial page at an edge is dropped: it cannot
//!   be handed out as a frame),
//! - sorted by start, disjoint, and not touching (touching ranges are merged),
//! - never empty.
//!
//! The map has a fixed capacity ([`MAX_RANGES`]) because it exists before the
//! heap does. Running out of room is reported, not hidden.
//!
//! Used by the boot CPU only, before SMP: no lock.

use crate::addr::{PhysAddr, PAGE_SIZE};
use core::fmt;

/// The most disjoint ranges a map holds.
pub const MAX_RANGES: usize = 64;

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub start: PhysAddr,
    pub end: PhysAddr,
}

impl PhysRange {
    /// `[start, start + size)`, saturating at the top of the address space.
    pub const fn new(start: u64, size: u64) -> Self {
        PhysRange { start: PhysAddr::new(start), end: PhysAddr::new(start.saturating_add(size)) }
    }
    /// The length in bytes.
    pub const fn size(&self) -> u64 {
        self.end.as_u64() - self.start.as_u64()
    }
    /// True when `addr` lies inside.
    pub const fn contains(&self, addr: PhysAddr) -> bool {
        self.start.as_u64() <= addr.as_u64() && addr.as_u64() < self.end.as_u64()
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.as_u64(), self.end.as_u64())
    }
}

/// The map could not record a range: it has [`MAX_RANGES`] already.
/// The kernel's fault (the capacity is too small for this firmware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapFull;

/// Usable RAM as sorted, disjoint, page-aligned ranges.
#[derive(Clone)]
pub struct MemoryMap {
    ranges: [PhysRange; MAX_RANGES],
    nr_ranges: usize,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    /// An empty map.
    pub const fn new() -> Self {
        MemoryMap { ranges: [PhysRange::new(0, 0); MAX_RANGES], nr_ranges: 0 }
    }

    /// The ranges, sorted by start.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.nr_ranges]
    }

    /// Total usable bytes.
    pub fn total_bytes(&self) -> u64 {
        self.ranges().iter().map(PhysRange::size).sum()
    }

    /// Adds usable RAM. The range is shrunk to whole pages; overlapping or
    /// touching ranges are merged.
    pub fn add(&mut self, range: PhysRange) -> Result<(), MapFull> {
        let Some(start) = range.start.checked_align_up(PAGE_SIZE) else { return Ok(()) };
        let end = range.end.align_down(PAGE_SIZE);
        if start >= end {
            return Ok(());
        }
        let mut new = PhysRange { start, end };
        // Absorb every range that overlaps or touches `new`.
        let mut i = 0;
        while i < self.nr_ranges {
            let r = self.ranges[i];
            if r.start <= new.end && new.start <= r.end {
                new.start = new.start.min(r.start);
                new.end = new.end.max(r.end);
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
        self.insert_sorted(new)
    }

    /// Removes `range` from the map (it is in use: kernel image, device tree,
    /// a firmware reservation). Partial pages at its edges are removed whole.
    /// Fails, changing nothing, when it would split a range of a full map.
    pub fn remove(&mut self, range: PhysRange) -> Result<(), MapFull> {
        let start = range.start.align_down(PAGE_SIZE);
        // A range reaching into the last page of the address space: no map range
        // can extend past that page's start (its end would not fit in a u64).
        let end = range.end.checked_align_up(PAGE_SIZE).unwrap_or(PhysAddr::new(!(PAGE_SIZE - 1)));
        if start >= end {
            return Ok(());
        }
        // Only a range that strictly contains `[start, end)` splits in two
        // and needs one more slot: refuse before changing anything, so a
        // full map loses nothing.
        let splits = self.ranges().iter().any(|r| r.start < start && end < r.end);
        if splits && self.nr_ranges == MAX_RANGES {
            return Err(MapFull);
        }
        let mut i = 0;
        while i < self.nr_ranges {
            let r = self.ranges[i];
            if r.end <= start || end <= r.start {
                i += 1;
                continue;
            }
            self.remove_at(i);
            let left = PhysRange { start: r.start, end: start };
            let right = PhysRange { start: end, end: r.end };
            if left.start < left.end {
                self.insert_sorted(left)?;
                i += 1;
            }
            if right.start < right.end {
                self.insert_sorted(right)?;
                i += 1;
            }
        }
        Ok(())
    }

    fn remove_at(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.nr_ranges, i);
        self.nr_ranges -= 1;
    }

    fn insert_sorted(&mut self, range: PhysRange) -> Result<(), MapFull> {
        if self.nr_ranges == MAX_RANGES {
            return Err(MapFull);
        }
        let pos = self.ranges().partition_point(|r| r.start < range.start);
        self.ranges.copy_within(pos..self.nr_ranges, pos + 1);
        self.ranges[pos] = range;
        self.nr_ranges += 1;
        Ok(())
    }
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const K: u64 = 1024;
    const M: u64 = 1024 * K;

    fn spans(map: &MemoryMap) -> Vec<(u64, u64)> {
        map.ranges().iter().map(|r| (r.start.as_u64(), r.end.as_u64())).collect()
    }

    fn check_invariants(map: &MemoryMap) {
        for r in map.ranges() {
            assert!(r.start < r.end, "empty range {r:?}");
            assert!(r.start.is_aligned(PAGE_SIZE) && r.end.is_aligned(PAGE_SIZE), "{r:?}");
        }
        for w in map.ranges().windows(2) {
            assert!(w[0].end < w[1].start, "not sorted, disjoint and apart: {map:?}");
        }
    }

    #[test]
    fn add_trims_to_pages_and_merges() {
        let mut map = MemoryMap::new();
        map.add(PhysRange::new(0x1001, 0x3000)).unwrap(); // [0x2000, 0x4000)
        map.add(PhysRange::new(0x10_0000, M)).unwrap();
        map.add(PhysRange::new(0x4000, 0x1000)).unwrap(); // touches the first
        map.add(PhysRange::new(0x800, 0x100)).unwrap(); // less than a page: dropped
        check_invariants(&map);
        assert_eq!(spans(&map), [(0x2000, 0x5000), (0x10_0000, 0x20_0000)]);
        map.add(PhysRange::new(0x3000, 0x10_0000)).unwrap(); // bridges both
        assert_eq!(spans(&map), [(0x2000, 0x20_0000)]);
        assert_eq!(map.total_bytes(), 0x20_0000 - 0x2000);
    }

    #[test]
    fn remove_splits_and_rounds_outwards() {
        let mut map = MemoryMap::new();
        map.add(PhysRange::new(0x4000_0000, 128 * M)).unwrap();
        // A kernel image not page-aligned at its end, in the middle.
        map.remove(PhysRange::new(0x4008_0000, 0x12345)).unwrap();
        // A device tree at the very start.
        map.remove(PhysRange::new(0x4000_0000, 0x100)).unwrap();
        check_invariants(&map);
        assert_eq!(spans(&map), [(0x4000_1000, 0x4008_0000), (0x4009_3000, 0x4000_0000 + 128 * M)]);
        // Removing what is not there changes nothing.
        map.remove(PhysRange::new(0x1000, 0x1000)).unwrap();
        assert_eq!(map.ranges().len(), 2);
        // Removing across both ranges and the hole between.
        map.remove(PhysRange::new(0x4004_0000, 0x10_0000)).unwrap();
        assert_eq!(spans(&map), [(0x4000_1000, 0x4004_0000), (0x4014_0000, 0x4000_0000 + 128 * M)]);
    }

    #[test]
    fn full_map_reports_instead_of_dropping() {
        let mut map = MemoryMap::new();
        for i in 0..MAX_RANGES as u64 {
            map.add(PhysRange::new(i * 0x10_0000, 0x1000)).unwrap();
        }
        assert_eq!(map.add(PhysRange::new(0x7000_0000, 0x1000)), Err(MapFull));
        assert_eq!(map.ranges().len(), MAX_RANGES);
        check_invariants(&map);
        // Splitting a range would need one more slot: refused, map unchanged.
        let mut wide = MemoryMap::new();
        for i in 0..MAX_RANGES as u64 {
            wide.add(PhysRange::new(i * 0x10_0000, 0x4000)).unwrap();
        }
        let before = wide.clone();
        assert_eq!(wide.remove(PhysRange::new(0x1000, 0x1000)), Err(MapFull));
        assert_eq!(spans(&wide), spans(&before));
        // Trimming an edge needs no slot and still works when full.
        wide.remove(PhysRange::new(0, 0x1000)).unwrap();
        assert_eq!(wide.ranges()[0], PhysRange::new(0x1000, 0x3000));
    }

    /// Many random adds and removes, checked against a page-by-page model.
    #[test]
    fn random_operations_agree_with_a_page_bitmap() {
        const PAGES: usize = 512;
        let mut model = [false; PAGES];
        let mut map = MemoryMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let start = next() % (PAGES as u64 * PAGE_SIZE);
            let len = next() % (40 * PAGE_SIZE);
            let range = PhysRange::new(start, len);
            let first_full = start.div_ceil(PAGE_SIZE) as usize;
            let end_full = ((start + len) / PAGE_SIZE) as usize;
            let first_touched = (start / PAGE_SIZE) as usize;
            let end_touched = (start + len).div_ceil(PAGE_SIZE) as usize;
            if next() % 3 == 0 {
                if map.remove(range).is_err() {
                    continue;
                }
                model[first_touched.min(PAGES)..end_touched.min(PAGES)].fill(false);
            } else {
                if map.clone().add(range).is_err() {
                    continue;
                }
                map.add(range).unwrap();
                if first_full < end_full {
                    model[first_full.min(PAGES)..end_full.min(PAGES)].fill(true);
                }
            }
            check_invariants(&map);
            for (p, &usable) in model.iter().enumerate() {
                let addr = PhysAddr::new(p as u64 * PAGE_SIZE);
                let in_map = map.ranges().iter().any(|r| r.contains(addr));
                assert_eq!(in_map, usable, "page {p} after {range:?}: {map:?}");
            }
        }
    }
}
