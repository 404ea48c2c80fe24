//! The early frame allocator: hands out physical frames from the boot memory
//! map before the buddy allocator exists.
//!
//! It is a bump allocator: a cursor walks the usable ranges from the lowest
//! address up and never goes back, so nothing it hands out can be freed. That
//! is exactly what boot needs (the heap, early page tables, the page
//! descriptor array) and it cannot hand out a frame twice. When the buddy
//! allocator takes over, it receives [`EarlyFrameAllocator::remaining`]: the
//! frames the cursor has not reached.
//!
//! Allocation failure is a result ([`OutOfFrames`]), never a panic: the caller
//! says what it was trying to do.
//!
//! Used by the boot CPU only, before SMP: no lock.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::memmap::{MemoryMap, PhysRange};

/// Not enough contiguous usable memory for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfFrames {
    /// The number of frames asked for.
    pub nr_frames: u64,
}

/// A bump allocator over a [`MemoryMap`].
pub struct EarlyFrameAllocator {
    map: MemoryMap,
    /// Index of the range the cursor is in.
    range: usize,
    /// The next free address in that range.
    cursor: PhysAddr,
    nr_allocated: u64,
}

impl EarlyFrameAllocator {
    /// Takes over the usable memory of `map`.
    pub fn new(map: MemoryMap) -> Self {
        let cursor = map.ranges().first().map_or(PhysAddr::new(0), |r| r.start);
        EarlyFrameAllocator { map, range: 0, cursor, nr_allocated: 0 }
    }

    /// One frame.
    pub fn alloc_frame(&mut self) -> Result<PhysAddr, OutOfFrames> {
        self.alloc_contiguous(1, PAGE_SIZE)
    }

    /// `nr_frames` physically contiguous frames starting at a multiple of
    /// `align` (a power of two, at least [`PAGE_SIZE`]). Frames skipped to
    /// reach the alignment, or at the end of a range too short, are lost to
    /// the bump allocator but stay in [`Self::remaining`].
    pub fn alloc_contiguous(&mut self, nr_frames: u64, align: u64) -> Result<PhysAddr, OutOfFrames> {
        let fail = OutOfFrames { nr_frames };
        if nr_frames == 0 || !align.is_power_of_two() {
            return Err(fail);
        }
        let align = align.max(PAGE_SIZE);
        let bytes = nr_frames.checked_mul(PAGE_SIZE).ok_or(fail)?;
        while let Some(&r) = self.map.ranges().get(self.range) {
            let from = self.cursor.max(r.start);
            if let Some(start) = from.checked_align_up(align) {
                if let Some(end) = start.checked_add(bytes) {
                    if end <= r.end {
                        self.cursor = end;
                        self.nr_allocated += nr_frames;
                        return Ok(start);
                    }
                }
            }
            self.range += 1;
        }
        Err(fail)
    }

    /// Frames handed out so far.
    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    /// Frames not yet handed out (including any skipped for alignment).
    pub fn nr_free(&self) -> u64 {
        self.remaining().map(|r| r.size() / PAGE_SIZE).sum()
    }

    /// The usable ranges the cursor has not passed: what the next allocator
    /// may take over.
    pub fn remaining(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let ranges = self.map.ranges();
        let mut skipped_behind = None;
        if let Some(&r) = ranges.get(self.range) {
            if self.cursor > r.start {
                skipped_behind = Some(PhysRange { start: self.cursor.min(r.end), end: r.end });
            }
        }
        let from = if skipped_behind.is_some() { self.range + 1 } else { self.range };
        skipped_behind
            .into_iter()
            .chain(ranges.get(from..).unwrap_or(&[]).iter().copied())
            .filter(|r| r.start < r.end)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn map_of(ranges: &[(u64, u64)]) -> MemoryMap {
        let mut map = MemoryMap::new();
        for &(start, size) in ranges {
            map.add(PhysRange::new(start, size)).unwrap();
        }
        map
    }

    #[test]
    fn frames_are_distinct_and_in_usable_memory() {
        let map = map_of(&[(0x1000, 3 * PAGE_SIZE), (0x10_0000, 2 * PAGE_SIZE)]);
        let mut early = EarlyFrameAllocator::new(map.clone());
        assert_eq!(early.nr_free(), 5);
        let frames: Vec<_> = (0..5).map(|_| early.alloc_frame().unwrap()).collect();
        assert_eq!(
            frames.iter().map(|f| f.as_u64()).collect::<Vec<_>>(),
            [0x1000, 0x2000, 0x3000, 0x10_0000, 0x10_1000]
        );
        assert_eq!(early.alloc_frame(), Err(OutOfFrames { nr_frames: 1 }));
        assert_eq!(early.nr_allocated(), 5);
        assert_eq!(early.nr_free(), 0);
    }

    #[test]
    fn contiguous_runs_respect_alignment_and_skip_short_ranges() {
        let map = map_of(&[(0x1000, 0x3000), (0x20_3000, 0x40_0000)]);
        let mut early = EarlyFrameAllocator::new(map);
        // 8 frames do not fit in the first range: the second one serves,
        // aligned to 2 MiB.
        let run = early.alloc_contiguous(8, 0x20_0000).unwrap();
        assert_eq!(run.as_u64(), 0x40_0000);
        // The skipped frames are not handed out by the bump allocator, but
        // the ones after the run remain for the next allocator.
        let rest: Vec<_> = early.remaining().collect();
        assert_eq!(rest, [PhysRange::new(0x40_8000, 0x60_3000 - 0x40_8000)]);
        assert_eq!(early.alloc_contiguous(0, PAGE_SIZE), Err(OutOfFrames { nr_frames: 0 }));
        assert_eq!(early.alloc_contiguous(1, 3), Err(OutOfFrames { nr_frames: 1 }));
        assert_eq!(early.alloc_contiguous(u64::MAX, PAGE_SIZE), Err(OutOfFrames { nr_frames: u64::MAX }));
    }

    #[test]
    fn remaining_covers_exactly_what_was_not_handed_out() {
        let map = map_of(&[(0x1000, 0x4000), (0x10_0000, 0x4000)]);
        let mut early = EarlyFrameAllocator::new(map);
        assert_eq!(early.remaining().count(), 2);
        early.alloc_contiguous(2, PAGE_SIZE).unwrap();
        let rest: Vec<_> = early.remaining().collect();
        assert_eq!(rest, [PhysRange::new(0x3000, 0x2000), PhysRange::new(0x10_0000, 0x4000)]);
        early.alloc_contiguous(2, PAGE_SIZE).unwrap();
        let rest: Vec<_> = early.remaining().collect();
        assert_eq!(rest, [PhysRange::new(0x10_0000, 0x4000)]);
        assert_eq!(early.nr_free(), 4);
    }

    #[test]
    fn empty_map_fails_cleanly() {
        let mut early = EarlyFrameAllocator::new(MemoryMap::new());
        assert_eq!(early.alloc_frame(), Err(OutOfFrames { nr_frames: 1 }));
        assert_eq!(early.nr_free(), 0);
    }
}
