//! How generic page-table code reaches table memory and the TLB.
//!
//! [`TableMemory`]: reading and writing 8-byte entries by physical address
//! and getting zeroed frames for new tables. In the kernel it goes through
//! the direct map and the frame allocator; in host tests through a
//! simulated physical memory (`sim`).
//!
//! [`TlbHooks`]: the hardware's translation caches. Every change that can
//! leave a stale translation returns a [`Flush`], a `#[must_use]` value the
//! caller must either [`Flush::flush`] through the hooks or explicitly
//! [`Flush::ignore`] (only for tables no CPU can be using).

use crate::addr::{PhysAddr, VirtAddr};

/// Physical memory as page-table code sees it.
///
/// Entry accesses are single 8-byte atomic loads and stores, as the hardware
/// walker reads them: a walker never sees half an entry.
pub trait TableMemory {
    /// Reads the entry at `pa` (8-byte aligned).
    fn read_entry(&self, pa: PhysAddr) -> u64;
    /// Writes the entry at `pa` (8-byte aligned), ordered after every
    /// earlier write to table memory (a walker that sees the new entry sees
    /// the table it points at initialised).
    fn write_entry(&self, pa: PhysAddr, value: u64);
    /// Writes the entry at `pa` as [`TableMemory::write_entry`] does but
    /// without the barrier that makes it visible to the table walker at
    /// once (AArch64's `dsb ishst; isb` after each write): for a batch of
    /// leaf and swap entries no walker needs before the batch ends, closed
    /// by one [`TableMemory::publish_writes`]. Fork's copy
    /// (`PageTable::copy_range`) is the one user: the child's tables are
    /// loaded on no CPU, and the parent's leaves only lose write access,
    /// which the TLB flush after the copy completes anyway.
    fn write_entry_batched(&self, pa: PhysAddr, value: u64) {
        self.write_entry(pa, value)
    }
    /// Makes every earlier [`TableMemory::write_entry_batched`] visible to
    /// the table walker: the barrier those writes left out, once.
    fn publish_writes(&self) {}
    /// A zeroed 4 KiB frame for a new table, or `None` when memory is out.
    fn alloc_table(&self) -> Option<PhysAddr>;
    /// Gives back a table frame that no entry points at any more and that
    /// no CPU can be walking (its TLB entries are flushed).
    fn free_table(&self, pa: PhysAddr);
}

/// The TLB invalidation the hardware needs.
pub trait TlbHooks {
    /// Drops every cached translation for the pages in `[start, end)` of
    /// the address space whose root is `root`, on every CPU that may cache
    /// them, and waits until it is done.
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr);
    /// Drops every cached translation of the address space whose root is
    /// `root` (also cached table entries).
    fn flush_all(&self, root: PhysAddr);
}

/// A TLB flush the caller owes after changing a table.
#[must_use = "a changed page table leaves stale TLB entries until this is flushed"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    root: PhysAddr,
    start: VirtAddr,
    end: VirtAddr,
    /// Table entries changed too (a table was freed or replaced): a range
    /// flush is not enough on formats that cache table entries.
    tables: bool,
}

impl Flush {
    /// A flush of `[start, end)` in the address space rooted at `root`.
    #[inline]
    pub fn range(root: PhysAddr, start: VirtAddr, end: VirtAddr) -> Flush {
        Flush { root, start, end, tables: false }
    }
    /// A flush of everything in the address space rooted at `root`.
    pub fn all(root: PhysAddr) -> Flush {
        Flush { root, start: VirtAddr::new(0), end: VirtAddr::new(u64::MAX), tables: true }
    }
    /// Nothing to flush (nothing was present before).
    #[inline]
    pub fn none(root: PhysAddr) -> Flush {
        Flush { root, start: VirtAddr::new(0), end: VirtAddr::new(0), tables: false }
    }
    /// True when nothing needs flushing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start >= self.end && !self.tables
    }
    /// The range owed, `[start, end)`.
    pub fn span(&self) -> (VirtAddr, VirtAddr) {
        (self.start, self.end)
    }
    /// One flush that covers both.
    #[inline]
    pub fn merge(self, other: Flush) -> Flush {
        debug_assert_eq!(self.root, other.root, "Flush::merge: different address spaces");
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        Flush {
            root: self.root,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            tables: self.tables || other.tables,
        }
    }
    /// Pays the debt through the hardware hooks.
    pub fn flush(self, hooks: &impl TlbHooks) {
        if self.tables {
            hooks.flush_all(self.root);
        } else if !self.is_empty() {
            hooks.flush_range(self.root, self.start, self.end);
        }
    }
    /// Declares the flush unnecessary: the table is not in use by any CPU
    /// (being built, or already torn down and flushed as a whole).
    pub fn ignore(self) {}
}
