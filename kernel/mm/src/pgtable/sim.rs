//! Simulated hardware for host tests: physical memory, a per-format
//! hardware walker that follows the architecture's rules, and a software TLB
//! that keeps stale translations until it is flushed, so that a missing
//! flush shows up as a failing test.
//!
//! Built for `mm`'s own tests and, with the `sim` feature, for the arch
//! crates' conformance tests and `mm`'s integration tests.

extern crate std;

use super::format::{Level, PageSize, PageTableFormat};
use super::memory::{TableMemory, TlbHooks};
use crate::addr::{PhysAddr, VirtAddr};
use crate::fault::Access;
use core::hash::{BuildHasherDefault, Hasher};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::vec::Vec;

/// How an access is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwAccess {
    pub access: Access,
    /// From user mode (ring 3 / EL0).
    pub user: bool,
}

impl HwAccess {
    pub const KERNEL_READ: HwAccess = HwAccess { access: Access::Read, user: false };
    pub const KERNEL_WRITE: HwAccess = HwAccess { access: Access::Write, user: false };
    pub const KERNEL_EXEC: HwAccess = HwAccess { access: Access::Execute, user: false };
    pub const USER_READ: HwAccess = HwAccess { access: Access::Read, user: true };
    pub const USER_WRITE: HwAccess = HwAccess { access: Access::Write, user: true };
    pub const USER_EXEC: HwAccess = HwAccess { access: Access::Execute, user: true };
}

/// Why a simulated walk faulted, and at which level it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwFault {
    /// No valid entry (x86 P=0; AArch64 translation fault).
    NotMapped { level: Level },
    /// A valid entry forbids the access.
    Permission { level: Level },
    /// AArch64: the leaf's access flag is clear.
    AccessFlag { level: Level },
    /// Bits the hardware rejects (x86 reserved-bit fault; AArch64 a block
    /// descriptor where none is allowed, or a reserved encoding).
    Reserved { level: Level },
}

/// A successful simulated translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the accessed byte.
    pub pa: PhysAddr,
    /// The size of the leaf that mapped it.
    pub size: PageSize,
    /// What the (possibly cached) translation allows without another walk.
    pub can_read: bool,
    pub can_write: bool,
    pub can_exec: bool,
    /// User mode may use it.
    pub user: bool,
}

impl Translation {
    /// Would this translation, cached, allow `access` without a walk?
    pub fn allows(&self, access: HwAccess) -> bool {
        if access.user && !self.user {
            return false;
        }
        match access.access {
            Access::Read => self.can_read,
            Access::Write => self.can_write,
            Access::Execute => self.can_exec,
        }
    }
}

/// The architecture's MMU, in software: implemented by each arch crate's
/// format (with the `sim` feature).
pub trait HardwareWalker: PageTableFormat {
    /// Walks from `root` for `access` at `va` exactly as the MMU would,
    /// including the updates the hardware itself makes (x86 sets A, and D on
    /// a write; AArch64 without FEAT_HAFDBS makes none and faults instead).
    /// The returned translation describes what a TLB may cache.
    fn hw_translate(
        mem: &impl TableMemory,
        root: PhysAddr,
        va: VirtAddr,
        access: HwAccess,
    ) -> Result<Translation, HwFault>;
}

/// The hasher of [`SimMemory`]'s frames, keyed by frame address: the keys
/// are distinct multiples of 4 KiB, so folding the frame number into the
/// low bits and one multiply to fill the high ones spreads them. (The
/// default SipHash, compiled unoptimised into each test binary, was a
/// fifth of the host tests' time; every simulated memory access hashes.)
#[derive(Default)]
struct FrameHasher(u64);

impl Hasher for FrameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 12)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Simulated physical memory: 4 KiB frames allocated on demand from a
/// fixed range, with counts of table frames in use (to catch leaks).
pub struct SimMemory {
    frames: RefCell<HashMap<u64, std::boxed::Box<[u64; 512]>, BuildHasherDefault<FrameHasher>>>,
    next_free: RefCell<u64>,
    free_list: RefCell<Vec<u64>>,
    limit: u64,
    /// Table frames handed out and not given back.
    pub live_tables: RefCell<u64>,
    /// Table allocations still to fail ([`SimMemory::fail_next_tables`]).
    failing_tables: RefCell<u32>,
}

impl SimMemory {
    /// Memory whose frames lie in `[base, base + nr_frames * 4096)`.
    pub fn new(base: u64, nr_frames: u64) -> SimMemory {
        SimMemory {
            frames: RefCell::new(HashMap::default()),
            next_free: RefCell::new(base),
            free_list: RefCell::new(Vec::new()),
            limit: base + nr_frames * 4096,
            live_tables: RefCell::new(0),
            failing_tables: RefCell::new(0),
        }
    }
    /// The next `n` table allocations fail, as when memory runs out.
    pub fn fail_next_tables(&self, n: u32) {
        *self.failing_tables.borrow_mut() = n;
    }
    /// A zeroed frame that is not a table (data for leaves).
    pub fn alloc_frame(&self) -> Option<PhysAddr> {
        let pa = match self.free_list.borrow_mut().pop() {
            Some(pa) => pa,
            None => {
                let mut next = self.next_free.borrow_mut();
                if *next >= self.limit {
                    return None;
                }
                *next += 4096;
                *next - 4096
            }
        };
        self.frames.borrow_mut().insert(pa, std::boxed::Box::new([0; 512]));
        Some(PhysAddr::new(pa))
    }
    /// `bytes` of contiguous frames aligned to `bytes` (a power of two; for
    /// huge leaves), taken from the bump region.
    pub fn alloc_aligned(&self, bytes: u64) -> Option<PhysAddr> {
        let mut next = self.next_free.borrow_mut();
        let start = next.div_ceil(bytes) * bytes;
        if start + bytes > self.limit {
            return None;
        }
        *next = start + bytes;
        Some(PhysAddr::new(start))
    }
    /// Reads 8 bytes at any physical address in a frame that exists
    /// (unwritten memory reads as 0).
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        let frame = pa.as_u64() & !4095;
        let word = ((pa.as_u64() & 4095) / 8) as usize;
        self.frames.borrow().get(&frame).map_or(0, |f| f[word])
    }
    /// Writes 8 bytes at any physical address.
    pub fn write_u64(&self, pa: PhysAddr, value: u64) {
        let frame = pa.as_u64() & !4095;
        let word = ((pa.as_u64() & 4095) / 8) as usize;
        self.frames.borrow_mut().entry(frame).or_insert_with(|| std::boxed::Box::new([0; 512]))[word] = value;
    }
}

impl TableMemory for SimMemory {
    fn read_entry(&self, pa: PhysAddr) -> u64 {
        assert!(pa.is_aligned(8), "unaligned entry read at {pa}");
        self.read_u64(pa)
    }
    fn write_entry(&self, pa: PhysAddr, value: u64) {
        assert!(pa.is_aligned(8), "unaligned entry write at {pa}");
        self.write_u64(pa, value)
    }
    fn alloc_table(&self) -> Option<PhysAddr> {
        {
            let mut failing = self.failing_tables.borrow_mut();
            if *failing > 0 {
                *failing -= 1;
                return None;
            }
        }
        let pa = self.alloc_frame()?;
        *self.live_tables.borrow_mut() += 1;
        Some(pa)
    }
    fn free_table(&self, pa: PhysAddr) {
        assert!(pa.is_aligned(4096), "free_table of unaligned {pa}");
        assert!(self.frames.borrow_mut().remove(&pa.as_u64()).is_some(), "free_table of unknown frame {pa}");
        *self.live_tables.borrow_mut() -= 1;
        self.free_list.borrow_mut().push(pa.as_u64());
    }
}

/// A software TLB over format `F`: caches each successful translation by
/// virtual page and keeps it until a flush names it.
pub struct SoftTlb<F: HardwareWalker> {
    entries: RefCell<BTreeMap<(u64, u64), Translation>>,
    /// Flushes received, for tests that count them.
    pub nr_flushes: RefCell<u64>,
    _format: core::marker::PhantomData<F>,
}

impl<F: HardwareWalker> Default for SoftTlb<F> {
    fn default() -> Self {
        SoftTlb {
            entries: RefCell::new(BTreeMap::new()),
            nr_flushes: RefCell::new(0),
            _format: Default::default(),
        }
    }
}

impl<F: HardwareWalker> SoftTlb<F> {
    /// Translates as a CPU would: a cached translation that allows the
    /// access is used without looking at the tables; otherwise the tables
    /// are walked and the result cached.
    pub fn translate(
        &self,
        mem: &impl TableMemory,
        root: PhysAddr,
        va: VirtAddr,
        access: HwAccess,
    ) -> Result<Translation, HwFault> {
        let page = va.as_u64() & !4095;
        if let Some(t) = self.entries.borrow().get(&(root.as_u64(), page)) {
            if t.allows(access) {
                let offset = va.as_u64() & 4095;
                return Ok(Translation { pa: PhysAddr::new((t.pa.as_u64() & !4095) + offset), ..*t });
            }
        }
        let t = F::hw_translate(mem, root, va, access)?;
        self.entries.borrow_mut().insert((root.as_u64(), page), t);
        Ok(t)
    }
    /// Number of cached translations.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }
    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
    /// True when a cached translation (of any space) reaches a frame of
    /// `[pa, pa + len)`: a CPU could still read or write it unseen.
    pub fn reaches(&self, pa: PhysAddr, len: u64) -> bool {
        let (start, end) = (pa.as_u64() & !4095, pa.as_u64() + len);
        self.entries.borrow().values().any(|t| (start..end).contains(&(t.pa.as_u64() & !4095)))
    }
}

impl<F: HardwareWalker> TlbHooks for SoftTlb<F> {
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        *self.nr_flushes.borrow_mut() += 1;
        let (s, e) = (start.as_u64() & !4095, end.as_u64());
        self.entries.borrow_mut().retain(|&(r, page), _| r != root.as_u64() || page < s || page >= e);
    }
    fn flush_all(&self, root: PhysAddr) {
        *self.nr_flushes.borrow_mut() += 1;
        self.entries.borrow_mut().retain(|&(r, _), _| r != root.as_u64());
    }
}
