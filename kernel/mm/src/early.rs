//! The early frame allocator: hands out physical frames from the boot memory
//! map before the buddy allocator exists.
//!
//! It keeps its own copy of the usable memory as a [`MemoryMap`] of *free*
//! ranges and serves each request first-fit, from the lowest address up,
//! carving the frames it hands out from that map. Nothing it hands out can be
//! freed, which is exactly what boot needs (the heap, early page tables, the
//! page descriptor array), and nothing is lost either: frames skipped to
//! reach an alignment stay in the free map. When the buddy allocator takes
//! over, it receives [`EarlyFrameAllocator::remaining`].
//!
//! Allocation failure is a result ([`OutOfFrames`]), never a panic: the caller
//! says what it was trying to do.
//!
//! Used by the boot CPU only, before SMP: no lock.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::memmap::{MemoryMap, PhysRange};

/// Not enough contiguous usable memory for the request (or the free map has
/// no room to record the hole an aligned request would leave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfFrames {
    /// The number of frames asked for.
    pub nr_frames: u64,
}

/// A first-fit allocator that carves frames out of a [`MemoryMap`].
pub struct EarlyFrameAllocator {
    free: MemoryMap,
    nr_allocated: u64,
}

impl EarlyFrameAllocator {
    /// Takes over the usable memory of `map`.
    pub fn new(map: MemoryMap) -> Self {
        EarlyFrameAllocator { free: map, nr_allocated: 0 }
    }

    /// One frame.
    pub fn alloc_frame(&mut self) -> Result<PhysAddr, OutOfFrames> {
        self.alloc_contiguous(1, PAGE_SIZE)
    }

    /// `nr_frames` physically contiguous frames starting at a multiple of
    /// `align` (a power of two; at least [`PAGE_SIZE`] is used). The lowest
    /// fitting run is taken; the frames before it stay free.
    pub fn alloc_contiguous(&mut self, nr_frames: u64, align: u64) -> Result<PhysAddr, OutOfFrames> {
        let fail = OutOfFrames { nr_frames };
        if nr_frames == 0 || !align.is_power_of_two() {
            return Err(fail);
        }
        let align = align.max(PAGE_SIZE);
        let bytes = nr_frames.checked_mul(PAGE_SIZE).ok_or(fail)?;
        let start = self
            .free
            .ranges()
            .iter()
            .find_map(|r| {
                let start = r.start.checked_align_up(align)?;
                let end = start.checked_add(bytes)?;
                (end <= r.end).then_some(start)
            })
            .ok_or(fail)?;
        self.free.remove(PhysRange::new(start.as_u64(), bytes)).map_err(|_| fail)?;
        self.nr_allocated += nr_frames;
        Ok(start)
    }

    /// Frames handed out so far.
    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    /// Frames not handed out.
    pub fn nr_free(&self) -> u64 {
        self.free.total_bytes() / PAGE_SIZE
    }

    /// The usable ranges not handed out: what the next allocator takes over.
    pub fn remaining(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.free.ranges().iter().copied()
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
    fn aligned_runs_leave_the_skipped_frames_free() {
        let map = map_of(&[(0x1000, 0x3000), (0x20_3000, 0x40_0000)]);
        let mut early = EarlyFrameAllocator::new(map);
        let total = early.nr_free();
        // 8 frames do not fit in the first range: the second one serves,
        // aligned to 2 MiB.
        let run = early.alloc_contiguous(8, 0x20_0000).unwrap();
        assert_eq!(run.as_u64(), 0x40_0000);
        // Everything not in the run is still there, the alignment gap too.
        let rest: Vec<_> = early.remaining().collect();
        assert_eq!(
            rest,
            [
                PhysRange::new(0x1000, 0x3000),
                PhysRange::new(0x20_3000, 0x40_0000 - 0x20_3000),
                PhysRange::new(0x40_8000, 0x60_3000 - 0x40_8000),
            ]
        );
        assert_eq!(early.nr_free(), total - 8);
        // Later single frames come from the lowest free memory again.
        assert_eq!(early.alloc_frame().unwrap().as_u64(), 0x1000);
    }

    #[test]
    fn bad_requests_fail_cleanly() {
        let mut early = EarlyFrameAllocator::new(map_of(&[(0x1000, 0x10_0000)]));
        assert_eq!(early.alloc_contiguous(0, PAGE_SIZE), Err(OutOfFrames { nr_frames: 0 }));
        assert_eq!(early.alloc_contiguous(1, 3), Err(OutOfFrames { nr_frames: 1 }));
        assert_eq!(early.alloc_contiguous(u64::MAX, PAGE_SIZE), Err(OutOfFrames { nr_frames: u64::MAX }));
        assert_eq!(early.alloc_contiguous(0x101, PAGE_SIZE), Err(OutOfFrames { nr_frames: 0x101 }));
        assert_eq!(early.nr_allocated(), 0);
        assert_eq!(early.nr_free(), 0x100);
    }

    #[test]
    fn allocated_plus_remaining_is_always_everything() {
        let map = map_of(&[(0x1000, 0x8_0000), (0x20_0000, 0x30_0000), (0x80_0000, 0x7000)]);
        let total = EarlyFrameAllocator::new(map.clone()).nr_free();
        let mut early = EarlyFrameAllocator::new(map.clone());
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let nr = 1 + seed % 24;
            let align = PAGE_SIZE << ((seed >> 40) % 6);
            if let Ok(start) = early.alloc_contiguous(nr, align) {
                assert!(start.is_aligned(align));
                let (s, e) = (start.as_u64(), start.as_u64() + nr * PAGE_SIZE);
                assert!(map.ranges().iter().any(|r| r.start.as_u64() <= s && e <= r.end.as_u64()));
                assert!(runs.iter().all(|&(a, b)| e <= a || b <= s), "overlap at {start}");
                assert!(early.remaining().all(|r| e <= r.start.as_u64() || r.end.as_u64() <= s));
                runs.push((s, e));
            }
            assert_eq!(early.nr_allocated() + early.nr_free(), total);
        }
        assert!(!runs.is_empty());
    }

    #[test]
    fn empty_map_fails_cleanly() {
        let mut early = EarlyFrameAllocator::new(MemoryMap::new());
        assert_eq!(early.alloc_frame(), Err(OutOfFrames { nr_frames: 1 }));
        assert_eq!(early.nr_free(), 0);
    }
}
