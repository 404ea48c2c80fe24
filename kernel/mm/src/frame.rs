//! The buddy allocator: hands out physically contiguous, naturally aligned
//! blocks of `2^order` frames, orders `0..=MAX_ORDER` (4 KiB to 4 MiB), over
//! all usable RAM, from one free-page pool per NUMA node.
//!
//! ## The buddy rule
//!
//! A block of order `o` starts at a PFN that is a multiple of `2^o`
//! (absolute PFNs, not relative to the memmap: a 2 MiB folio must sit at a
//! 2 MiB-aligned physical address to be mapped by a PMD). Its *buddy* is the
//! other half of the order `o + 1` block containing it: `pfn ^ (1 << o)`.
//! When a block is freed and its buddy is free with the same order, the two
//! merge into one block of order `o + 1`, and so on up to `MAX_ORDER`. An
//! allocation takes the smallest free block that is large enough and splits
//! it, putting the upper halves back on the lower orders' lists.
//!
//! The memmap need not start at an aligned PFN, and RAM has holes: a buddy
//! is merged only when its descriptor exists, carries [`PageFlag::Buddy`] and
//! has the same order. Frames outside every range given to
//! [`FrameAllocator::add_free_range`] keep [`PageFlag::Reserved`] and are
//! never a buddy.
//!
//! ## State of a frame
//!
//! | state | first page of the block | other pages |
//! | --- | --- | --- |
//! | reserved (hole, firmware, kernel) | `Reserved` | `Reserved` |
//! | free | `Buddy`, order bits = block order, on free list `order` | all 0 |
//! | allocated, raw | all 0 (the owner may use the counts, and must zero them before `free`) | all 0 |
//! | isolated by compaction's free scanner ([`FrameAllocator::isolate_free_block`]) | all 0, off the lists, not counted free | all 0 |
//! | allocated, folio | see [`crate::folio`] | see [`crate::folio`] |
//!
//! Free lists are doubly linked through the descriptors' `list_next` /
//! `list_prev` (PFNs, [`NO_PFN`] at the ends), newest first, so that
//! removing a buddy from the middle of its list is O(1).
//!
//! ## Watermarks
//!
//! With `managed` pages handed to the allocator (`managed_kib = 4 * managed`):
//!
//! ```text
//! min  = min( clamp( isqrt(16 * managed_kib) KiB / 4 KiB,  32 pages (128 KiB),  16384 pages (64 MiB) ),
//!             managed / 4 )
//! low  = min * 5 / 4
//! high = min * 3 / 2
//! ```
//!
//! (Linux's `min_free_kbytes` rule, `sqrt(16 * lowmem_kbytes)`, with the
//! extra cap at a quarter of memory so a tiny test machine keeps most of it
//! usable.) Examples: 16 MiB → min 128, low 160, high 192 pages; 128 MiB →
//! 362 / 452 / 543; 1 GiB → 1024 / 1280 / 1536 (4 MiB, 5 MiB, 6 MiB).
//! These are the totals, from all managed pages. Each node's pool gets a
//! share: its `min` is the total `min` times its part of the managed pages,
//! its `low` and `high` follow from that `min` by the same rule, so the
//! shares add up to (at most, by rounding) the totals, and one node's share
//! is the whole. [`AllocKind::Normal`] fails on a node with
//! [`AllocError::BelowMin`] when the block would leave fewer than the node's
//! `min` free pages there (and tries the next node); [`AllocKind::Reserve`]
//! may use the last `min` pages. Reclaim, which is global, wakes when all
//! nodes together are below the total `low` and stops at the total `high`.
//!
//! ## Nodes
//!
//! [`FrameAllocator::add_free_range_on`] gives a range of frames to one
//! node's pool (the kernel cuts its usable RAM at the boundaries the
//! firmware reports, [`crate::numa`]); [`FrameAllocator::add_free_range`] is
//! node 0's. Which node a frame belongs to is recorded per range given
//! (`NodeSpans`, append-only, read without a lock) and asked by
//! [`FrameAllocator::node_of`]. A block never crosses nodes: ranges are
//! cut into blocks inside themselves, and a freed block merges with its
//! buddy only when the buddy is on the same node, so a node boundary that
//! is not aligned to `MAX_ORDER` costs the larger blocks around it, never
//! correctness.
//!
//! Allocation takes a node policy:
//! - [`FrameAllocator::alloc`] (and `alloc_folio`, `alloc_silent`)
//!   prefers the *local node*, the one the kernel's hook names
//!   ([`FrameAllocator::set_local_node_hook`]: the current CPU's), node 0
//!   without a hook; callers that do not care about nodes need nothing else;
//! - [`FrameAllocator::alloc_preferring`] prefers a given node;
//! - either tries the preferred node, then the next ones in turn
//!   (`n + 1`, `n + 2`, ..., wrapping), and succeeds on the first that has a
//!   block (above its `min` for `Normal`);
//! - [`FrameAllocator::alloc_on`] / [`FrameAllocator::alloc_folio_on`] take
//!   from one node only, and fail when it has nothing, whatever the others
//!   hold (for moving memory to a node).
//!
//! A failed allocation says [`AllocError::BelowMin`] if some node it tried
//! was below its `min`, else [`AllocError::OutOfMemory`].
//!
//! ## The low-memory hook
//!
//! `mm` knows no tasks, so it cannot wake a reclaimer itself. The kernel
//! registers a plain function with [`FrameAllocator::set_low_memory_hook`];
//! [`FrameAllocator::alloc`] (every policy) calls it when an allocation
//! leaves fewer than the total `low` pages free in all nodes, or fails for
//! want of memory (not for a bad order). The decision is taken with the
//! allocation's own count (the free total is an atomic the pool locks keep
//! in step); the call is made **after the lock is released**, in the allocating
//! context (whatever locks the caller holds, interrupts as the caller has
//! them: off, in the kernel). So the hook must not allocate, sleep, or
//! take a lock an allocating caller may hold: in the kernel it sets an
//! atomic flag and unparks kswapd (`kernel/src/vm/reclaim.rs`).
//!
//! ## Failure injection
//!
//! [`FrameAllocator::alloc`] asks its [`FailAlloc`] first
//! ([`FrameAllocator::fail_alloc`], disarmed unless a test or the kernel
//! argument `fail_alloc=` arms it) and, told to fail, fails as if memory
//! had run out, without the hook. [`FrameAllocator::alloc_silent`], the
//! kernel heap's growth, is never failed on purpose.
//!
//! ## Locks
//!
//! Each node's pool has its own spin lock (`FrameAllocator::pools`, a
//! [`crate::sync::IrqLock`]), which guards its free lists, its counts and
//! watermarks, and the descriptors of its free blocks (their `Buddy` flag,
//! order and list links). They are **leaf** locks: nothing else is taken
//! while holding one, and an allocation holds one at a time (it releases
//! the preferred node's before trying the next). A pool's lock is held for
//! O(`MAX_ORDER`) steps plus a check of the freed block's descriptors; the
//! consistency check (and `Debug`) alone holds all of them, taken in node
//! order and released in reverse, to see every list at one instant.
//! A second lock, `FrameAllocator::totals` (managed pages, total
//! watermarks, node count), is taken by `add_free_range_on` before one
//! pool's lock at a time, and alone by the queries of totals. The free
//! total (`nr_free_total`) is an atomic changed under the pool lock whose
//! count changes, by the same amount. Every method takes its locks with
//! interrupts off on its CPU, the read-only queries (`nr_free_pages`,
//! `below_low`, `watermarks`, ...) included: `mm` knows no interrupts, but
//! the kernel registers how to turn them off (`crate::sync::set_irq_hooks`),
//! so a lock's holder is never preempted by a tick while another task on
//! its CPU spins for it. Per-CPU caches of order-0 frames in front of the
//! pools are not built yet.
//!
//! ## Errors and panics
//!
//! Allocation failure is a result ([`AllocError`]), never a panic: the
//! caller decides whether to reclaim, retry or give up. Freeing something
//! that is not an allocated block (a double free, a misaligned or
//! out-of-range PFN, a frame still in use) is a kernel bug and panics with
//! `free: reason`.

use crate::addr::Pfn;
use crate::fail_alloc::FailAlloc;
use crate::folio::{Folio, UnpublishedFolio};
use crate::numa::{NodeId, MAX_NODES};
use crate::page::{Memmap, Page, PageFlag, NO_PFN, ORDER_SHIFT};
use crate::sync::IrqLock;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// The largest order: blocks of `2^10` frames (4 MiB).
pub const MAX_ORDER: u8 = 10;
/// The number of orders, `MAX_ORDER + 1`.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Who is allocating, which decides whether the last `min` free pages may
/// be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocKind {
    /// Ordinary allocations (faults, page tables of new mappings): fail
    /// rather than go below the `min` watermark.
    Normal,
    /// Allocations that free memory or must not fail (reclaim writing a
    /// folio out, boot): may use the reserve below `min`.
    Reserve,
}

/// Why an allocation failed. None of these is a bug: the caller reclaims,
/// retries or reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// No free block of this order or larger (memory is full, or too
    /// fragmented for this order).
    OutOfMemory { order: u8 },
    /// A [`AllocKind::Normal`] allocation would leave fewer than `min` free
    /// pages.
    BelowMin { order: u8 },
    /// The caller asked for an order above [`MAX_ORDER`] (the caller's fault).
    BadOrder(u8),
}

/// Why [`FrameAllocator::add_free_range`] refused a range (the boot code's
/// fault: nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Part of `[start_pfn, end_pfn)` has no descriptor in the memmap.
    OutsideMemmap { start_pfn: u64, end_pfn: u64 },
    /// Frame `pfn` was already handed to the allocator.
    AlreadyManaged { pfn: u64 },
    /// More ranges than [`MAX_SPANS`] were given.
    TooManySpans,
}

/// What [`FrameAllocator::check_consistency`] found wrong (a kernel bug in
/// the allocator or in a caller that wrote to free descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyError {
    /// The list of `order` reaches `pfn`, which has no descriptor, or whose
    /// back link is wrong, or whose block runs past the memmap.
    BadLink { order: u8, pfn: u64 },
    /// `pfn` is on the free list of `order` without the `Buddy` flag.
    NotBuddy { order: u8, pfn: u64 },
    /// `pfn` is on the free list of `order` but its order bits say `found`.
    WrongOrder { order: u8, pfn: u64, found: u8 },
    /// `pfn` is on the free list of `order` but not aligned to it.
    Misaligned { order: u8, pfn: u64 },
    /// The first page of free block `pfn` has more than `Buddy` and its
    /// order, or non-zero counts.
    DirtyHead { pfn: u64 },
    /// Page `pfn`, inside free block `block`, is the head of another free
    /// block: two free blocks overlap.
    Overlap { pfn: u64, block: u64 },
    /// Page `pfn`, inside free block `block`, is not all zero (reserved,
    /// flagged or counted).
    DirtyInterior { pfn: u64, block: u64 },
    /// The list of `order` has `listed` blocks (or loops) but the count says `recorded`.
    CountMismatch { order: u8, listed: u64, recorded: u64 },
    /// The lists hold `listed` pages but the free-page count says `recorded`.
    FreePagesMismatch { listed: u64, recorded: u64 },
    /// `found` descriptors carry `Buddy` but only `listed` blocks are on lists.
    StrayBuddy { found: u64, listed: u64 },
    /// Page `pfn` of free block `block`, on node `node`'s lists, belongs to
    /// another node (or none): a block crossed a node boundary.
    WrongNode { node: u8, pfn: u64, block: u64 },
}

impl fmt::Display for ConsistencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadLink { order, pfn } => write!(f, "free list {order}: bad link at pfn {pfn:#x}"),
            Self::NotBuddy { order, pfn } => write!(f, "free list {order}: pfn {pfn:#x} is not Buddy"),
            Self::WrongOrder { order, pfn, found } => {
                write!(f, "free list {order}: pfn {pfn:#x} has order {found}")
            }
            Self::Misaligned { order, pfn } => write!(f, "free list {order}: pfn {pfn:#x} misaligned"),
            Self::DirtyHead { pfn } => write!(f, "free block {pfn:#x}: head descriptor not clean"),
            Self::Overlap { pfn, block } => write!(f, "free block {pfn:#x} overlaps free block {block:#x}"),
            Self::DirtyInterior { pfn, block } => {
                write!(f, "page {pfn:#x} inside free block {block:#x} not clean")
            }
            Self::CountMismatch { order, listed, recorded } => {
                write!(f, "free list {order}: {listed} blocks listed, {recorded} counted")
            }
            Self::FreePagesMismatch { listed, recorded } => {
                write!(f, "{listed} free pages listed, {recorded} counted")
            }
            Self::StrayBuddy { found, listed } => {
                write!(f, "{found} Buddy descriptors, {listed} blocks on lists")
            }
            Self::WrongNode { node, pfn, block } => {
                write!(f, "page {pfn:#x} of free block {block:#x} on node {node}'s lists is not on that node")
            }
        }
    }
}

/// The `min`, `low` and `high` free-page watermarks (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermarks {
    pub min: u64,
    pub low: u64,
    pub high: u64,
}

impl Watermarks {
    /// The lowest `min` (128 KiB), unless memory is tiny.
    pub const MIN_FLOOR_PAGES: u64 = 32;
    /// The highest `min` (64 MiB).
    pub const MIN_CEILING_PAGES: u64 = 16384;

    /// The watermarks for `managed` pages.
    pub fn for_managed_pages(managed: u64) -> Watermarks {
        let managed_kib = managed.saturating_mul(4);
        let min_kib = managed_kib.saturating_mul(16).isqrt();
        let min = (min_kib / 4).clamp(Self::MIN_FLOOR_PAGES, Self::MIN_CEILING_PAGES).min(managed / 4);
        Self::from_min(min)
    }

    /// A node's share of `total`: its `min` in proportion to its managed
    /// pages, `low` and `high` from that `min` by the same rule.
    pub fn share(total: Watermarks, node_managed: u64, total_managed: u64) -> Watermarks {
        if total_managed == 0 {
            return Watermarks::default();
        }
        let min = (total.min as u128 * node_managed as u128 / total_managed as u128) as u64;
        Self::from_min(min)
    }

    const fn from_min(min: u64) -> Watermarks {
        Watermarks { min, low: min * 5 / 4, high: min * 3 / 2 }
    }
}

/// One free list.
#[derive(Clone, Copy)]
struct FreeArea {
    /// PFN of the newest free block, or [`NO_PFN`].
    first: u64,
    /// Blocks on the list.
    nr_free: u64,
}

/// One node's free-page pool: everything its lock guards.
struct Zone {
    areas: [FreeArea; NR_ORDERS],
    /// Sum over the lists of `nr_free << order`.
    nr_free_pages: u64,
    managed_pages: u64,
    /// This node's share of the total watermarks.
    watermarks: Watermarks,
}

impl Zone {
    const fn new() -> Zone {
        Zone {
            areas: [FreeArea { first: NO_PFN, nr_free: 0 }; NR_ORDERS],
            nr_free_pages: 0,
            managed_pages: 0,
            watermarks: Watermarks { min: 0, low: 0, high: 0 },
        }
    }
}

/// The most PFN spans [`FrameAllocator::add_free_range_on`] records (one
/// per range given): room for every range of a full boot memory map
/// (`mm::memmap::MAX_RANGES`) cut at every boundary of a full NUMA map
/// (`mm::numa::MAX_NUMA_RANGES`, fewer).
pub const MAX_SPANS: usize = crate::memmap::MAX_RANGES + 2 * crate::numa::MAX_NUMA_RANGES;

/// Which node each managed frame belongs to: the ranges given to
/// [`FrameAllocator::add_free_range_on`], append-only. Entries below `len`
/// never change once `len` (Release) covers them, so readers (Acquire)
/// need no lock; writers hold [`FrameAllocator::totals`].
struct NodeSpans {
    len: AtomicUsize,
    start: [AtomicU64; MAX_SPANS],
    end: [AtomicU64; MAX_SPANS],
    node: [AtomicU8; MAX_SPANS],
}

impl NodeSpans {
    const fn new() -> NodeSpans {
        NodeSpans {
            len: AtomicUsize::new(0),
            start: [const { AtomicU64::new(0) }; MAX_SPANS],
            end: [const { AtomicU64::new(0) }; MAX_SPANS],
            node: [const { AtomicU8::new(0) }; MAX_SPANS],
        }
    }

    /// The node of managed frame `pfn`; None for a frame never managed.
    fn node_of(&self, pfn: u64) -> Option<NodeId> {
        let len = self.len.load(Ordering::Acquire);
        (0..len)
            .find(|&i| {
                self.start[i].load(Ordering::Relaxed) <= pfn && pfn < self.end[i].load(Ordering::Relaxed)
            })
            .and_then(|i| NodeId::new(self.node[i].load(Ordering::Relaxed) as usize))
    }

    /// Records `[start, end)` as `node`'s. The caller holds the totals lock.
    fn push(&self, start: u64, end: u64, node: NodeId) -> Result<(), RangeError> {
        let i = self.len.load(Ordering::Relaxed);
        if i == MAX_SPANS {
            return Err(RangeError::TooManySpans);
        }
        self.start[i].store(start, Ordering::Relaxed);
        self.end[i].store(end, Ordering::Relaxed);
        self.node[i].store(node.index() as u8, Ordering::Relaxed);
        self.len.store(i + 1, Ordering::Release);
        Ok(())
    }
}

/// The totals over every node, guarded by [`FrameAllocator::totals`].
#[derive(Clone, Copy)]
struct Totals {
    managed_pages: u64,
    watermarks: Watermarks,
    /// Nodes with memory given, `max(node) + 1`.
    nr_nodes: usize,
}

/// The buddy allocator over the frames of one [`Memmap`], one free-page
/// pool per NUMA node.
pub struct FrameAllocator {
    memmap: &'static Memmap,
    /// One leaf lock per node: its free lists, counts, watermarks, and
    /// the descriptors of its free blocks.
    pools: [IrqLock<Zone>; MAX_NODES],
    /// Which node each managed frame belongs to (lock-free reads).
    spans: NodeSpans,
    /// Managed pages, total watermarks, node count; taken by
    /// [`FrameAllocator::add_free_range_on`] before a pool's lock, and
    /// alone by the queries of totals.
    totals: IrqLock<Totals>,
    /// Free pages in all pools: changed under the pool lock that changes
    /// a pool's count, by the same amount, so it is always a true sum at
    /// some instant; read without a lock for the hook's decision.
    nr_free_total: AtomicU64,
    /// `totals.watermarks.low`, for the hook's decision without a lock.
    low_total: AtomicU64,
    /// `totals.nr_nodes`, for the allocation path without a lock.
    nr_nodes: AtomicUsize,
    /// The node allocations without a node prefer: the current CPU's,
    /// registered by the kernel ([`FrameAllocator::set_local_node_hook`]);
    /// node 0 without one.
    local_node_hook: spin::Once<fn() -> NodeId>,
    /// Called after an allocation that left free memory below `low` or
    /// failed (module doc).
    low_memory_hook: spin::Once<fn()>,
    /// Allocation-failure injection ([`crate::fail_alloc`]), disarmed
    /// unless a test or the kernel argument `fail_alloc=` arms it.
    fail_alloc: FailAlloc,
}

fn page(memmap: &Memmap, pfn: u64) -> &'static Page {
    memmap.get_raw(pfn).expect("frame: pfn outside the memmap")
}

impl Zone {
    /// Puts the block `pfn` of `order` at the front of its list and marks
    /// its first page `Buddy`. No merging.
    fn push(&mut self, memmap: &Memmap, pfn: u64, order: u8) {
        let head = page(memmap, pfn);
        let area = &mut self.areas[order as usize];
        head.list_prev.store(NO_PFN, Ordering::Relaxed);
        head.list_next.store(area.first, Ordering::Relaxed);
        if area.first != NO_PFN {
            page(memmap, area.first).list_prev.store(pfn, Ordering::Relaxed);
        }
        area.first = pfn;
        area.nr_free += 1;
        self.nr_free_pages += 1 << order;
        // Order first: whoever sees `Buddy` sees the order too.
        head.set_order(order);
        head.set_flag(PageFlag::Buddy);
    }

    /// Takes the block `pfn` of `order` off its list and clears its first
    /// page back to all zero.
    fn unlink(&mut self, memmap: &Memmap, pfn: u64, order: u8) {
        let head = page(memmap, pfn);
        let next = head.list_next.load(Ordering::Relaxed);
        let prev = head.list_prev.load(Ordering::Relaxed);
        let area = &mut self.areas[order as usize];
        if prev == NO_PFN {
            area.first = next;
        } else {
            page(memmap, prev).list_next.store(next, Ordering::Relaxed);
        }
        if next != NO_PFN {
            page(memmap, next).list_prev.store(prev, Ordering::Relaxed);
        }
        area.nr_free -= 1;
        self.nr_free_pages -= 1 << order;
        head.clear_flag(PageFlag::Buddy);
        head.set_order(0);
        head.list_next.store(0, Ordering::Relaxed);
        head.list_prev.store(0, Ordering::Relaxed);
    }

    /// Frees the block `pfn` of `order` of node `node` (descriptors already
    /// clean), merging it with free buddies of the same node as far as
    /// possible: a buddy on another node sits in another pool, and never
    /// merges, whatever its flags say.
    fn free_block(&mut self, memmap: &Memmap, spans: &NodeSpans, node: NodeId, mut pfn: u64, mut order: u8) {
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            match memmap.get_raw(buddy) {
                Some(b) if b.test_flag(PageFlag::Buddy) && b.order() == order => {}
                _ => break,
            }
            if spans.node_of(buddy) != Some(node) {
                break;
            }
            self.unlink(memmap, buddy, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        self.push(memmap, pfn, order);
    }
}

impl FrameAllocator {
    /// An allocator with no frame yet: give it memory with
    /// [`FrameAllocator::add_free_range`] or
    /// [`FrameAllocator::add_free_range_on`].
    pub const fn new(memmap: &'static Memmap) -> FrameAllocator {
        FrameAllocator {
            memmap,
            pools: [const { IrqLock::new(Zone::new()) }; MAX_NODES],
            spans: NodeSpans::new(),
            totals: IrqLock::new(Totals {
                managed_pages: 0,
                watermarks: Watermarks::from_min(0),
                nr_nodes: 0,
            }),
            nr_free_total: AtomicU64::new(0),
            low_total: AtomicU64::new(0),
            nr_nodes: AtomicUsize::new(1),
            local_node_hook: spin::Once::new(),
            low_memory_hook: spin::Once::new(),
            fail_alloc: FailAlloc::new(),
        }
    }

    /// Registers `hook`, called (with no allocator lock held) after every
    /// allocation that leaves fewer than `low` pages free or fails for want
    /// of memory (module doc). Once: a second call is ignored.
    pub fn set_low_memory_hook(&self, hook: fn()) {
        self.low_memory_hook.call_once(|| hook);
    }

    /// Registers `hook`, which names the node allocations without a node
    /// prefer: the kernel's says the current CPU's. It is called without
    /// any allocator lock, before each such allocation, so it must be
    /// cheap and take no lock. Once: a second call is ignored.
    pub fn set_local_node_hook(&self, hook: fn() -> NodeId) {
        self.local_node_hook.call_once(|| hook);
    }

    /// The node allocations without a node prefer (module doc).
    pub fn local_node(&self) -> NodeId {
        self.local_node_hook.get().map_or(NodeId::ZERO, |hook| hook())
    }

    /// The allocation-failure injector [`FrameAllocator::alloc`] asks
    /// before each allocation.
    pub fn fail_alloc(&self) -> &FailAlloc {
        &self.fail_alloc
    }

    /// The memmap whose frames this allocator manages.
    pub fn memmap(&self) -> &'static Memmap {
        self.memmap
    }

    /// Hands the usable frames `[start_pfn, end_pfn)` to node 0's pool:
    /// [`FrameAllocator::add_free_range_on`] for a machine of one node.
    pub fn add_free_range(&self, start_pfn: Pfn, end_pfn: Pfn) -> Result<(), RangeError> {
        self.add_free_range_on(NodeId::ZERO, start_pfn, end_pfn)
    }

    /// Hands the usable frames `[start_pfn, end_pfn)` of `node` to that
    /// node's pool, as the largest naturally aligned blocks that fit
    /// (merged with adjacent free blocks of the same node from earlier
    /// ranges). Every frame must still be `Reserved` (never given before).
    /// An empty range does nothing. Every node's watermarks are recomputed
    /// (its share of the total, module doc).
    ///
    /// All or nothing: on an error nothing changed.
    pub fn add_free_range_on(&self, node: NodeId, start_pfn: Pfn, end_pfn: Pfn) -> Result<(), RangeError> {
        let (start_pfn, end_pfn) = (start_pfn.as_u64(), end_pfn.as_u64());
        if start_pfn >= end_pfn {
            return Ok(());
        }
        let memmap = self.memmap;
        if !memmap.contains_raw(start_pfn) || end_pfn > memmap.end_pfn().as_u64() {
            return Err(RangeError::OutsideMemmap { start_pfn, end_pfn });
        }
        // Lock order: totals, then one pool at a time.
        let mut totals = self.totals.lock();
        if let Some(pfn) = (start_pfn..end_pfn).find(|&pfn| !page(memmap, pfn).test_flag(PageFlag::Reserved))
        {
            return Err(RangeError::AlreadyManaged { pfn });
        }
        self.spans.push(start_pfn, end_pfn, node)?;
        for pfn in start_pfn..end_pfn {
            page(memmap, pfn).clear_flag(PageFlag::Reserved);
        }
        totals.managed_pages += end_pfn - start_pfn;
        totals.watermarks = Watermarks::for_managed_pages(totals.managed_pages);
        totals.nr_nodes = totals.nr_nodes.max(node.index() + 1);
        self.low_total.store(totals.watermarks.low, Ordering::Relaxed);
        self.nr_nodes.store(totals.nr_nodes, Ordering::Relaxed);
        {
            let mut zone = self.pools[node.index()].lock();
            zone.managed_pages += end_pfn - start_pfn;
            let mut pfn = start_pfn;
            while pfn < end_pfn {
                let mut order = pfn.trailing_zeros().min(MAX_ORDER as u32) as u8;
                while pfn + (1 << order) > end_pfn {
                    order -= 1;
                }
                zone.free_block(memmap, &self.spans, node, pfn, order);
                pfn += 1 << order;
            }
            self.nr_free_total.fetch_add(end_pfn - start_pfn, Ordering::Relaxed);
        }
        for pool in &self.pools[..totals.nr_nodes] {
            let mut zone = pool.lock();
            zone.watermarks = Watermarks::share(totals.watermarks, zone.managed_pages, totals.managed_pages);
        }
        Ok(())
    }

    /// A block of `2^order` frames; returns its first PFN. The descriptors
    /// are all zero (a raw frame); see [`FrameAllocator::alloc_folio`] for a
    /// folio. Prefers the local node ([`FrameAllocator::local_node`]) and
    /// falls back to the others (module doc, "Nodes").
    pub fn alloc(&self, order: u8, kind: AllocKind) -> Result<Pfn, AllocError> {
        self.alloc_policy(Policy::Prefer(self.local_node()), order, kind, true)
    }

    /// [`FrameAllocator::alloc`] preferring `node`, falling back to the
    /// others.
    pub fn alloc_preferring(&self, node: NodeId, order: u8, kind: AllocKind) -> Result<Pfn, AllocError> {
        self.alloc_policy(Policy::Prefer(node), order, kind, true)
    }

    /// [`FrameAllocator::alloc`] from `node`'s pool only: fails when that
    /// node has no block (or would go below its `min`), however much the
    /// others have. For moving memory to a node (`move_pages`).
    pub fn alloc_on(&self, node: NodeId, order: u8, kind: AllocKind) -> Result<Pfn, AllocError> {
        self.alloc_policy(Policy::Only(node), order, kind, true)
    }

    /// [`FrameAllocator::alloc`] without the low-memory hook and without
    /// failure injection: for the kernel heap, which grows from here and
    /// may be called under any lock (the hook's too) and for allocations
    /// that cannot fail softly (`Box::new`). Memory left below `low` is
    /// noticed by the next ordinary allocation.
    pub fn alloc_silent(&self, order: u8, kind: AllocKind) -> Result<Pfn, AllocError> {
        self.alloc_policy(Policy::Prefer(self.local_node()), order, kind, false)
    }

    fn alloc_policy(
        &self,
        policy: Policy,
        order: u8,
        kind: AllocKind,
        hook: bool,
    ) -> Result<Pfn, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError::BadOrder(order));
        }
        if hook && self.fail_alloc.should_fail() {
            // Injected: like running out, without waking reclaim for it.
            return Err(AllocError::OutOfMemory { order });
        }
        let nr_nodes = self.nr_nodes.load(Ordering::Relaxed).max(1);
        let (first, strict) = match policy {
            Policy::Prefer(node) => (node.index().min(nr_nodes - 1), false),
            Policy::Only(node) => (node.index(), true),
        };
        let tries = if strict { 1 } else { nr_nodes };
        let mut result = Err(AllocError::OutOfMemory { order });
        // The preferred node, then the next ones in turn, wrapping.
        let modulus = nr_nodes.max(first + 1);
        for i in (0..tries).map(|k| (first + k) % modulus) {
            let mut zone = self.pools[i].lock();
            match self.alloc_locked(&mut zone, order, kind) {
                Ok(pfn) => {
                    result = Ok(pfn);
                    break;
                }
                // Below min somewhere is what the caller hears, unless
                // another node has the block.
                Err(e @ AllocError::BelowMin { .. }) => result = Err(e),
                Err(_) => {}
            }
        }
        // Decided with the allocation's own count, called without a lock
        // (module doc).
        let low = hook
            && (result.is_err()
                || self.nr_free_total.load(Ordering::Relaxed) < self.low_total.load(Ordering::Relaxed));
        if low {
            if let Some(hook) = self.low_memory_hook.get() {
                hook();
            }
        }
        result.map(Pfn::new)
    }

    /// Takes a block from one pool; keeps [`FrameAllocator::nr_free_total`]
    /// in step, under that pool's lock.
    fn alloc_locked(&self, zone: &mut Zone, order: u8, kind: AllocKind) -> Result<u64, AllocError> {
        let memmap = self.memmap;
        let Some(found) = (order..=MAX_ORDER).find(|&o| zone.areas[o as usize].first != NO_PFN) else {
            return Err(AllocError::OutOfMemory { order });
        };
        if kind == AllocKind::Normal && zone.nr_free_pages < zone.watermarks.min + (1 << order) {
            return Err(AllocError::BelowMin { order });
        }
        let pfn = zone.areas[found as usize].first;
        zone.unlink(memmap, pfn, found);
        // Split: keep the lower half, free the upper half, down to `order`.
        let mut o = found;
        while o > order {
            o -= 1;
            zone.push(memmap, pfn + (1 << o), o);
        }
        self.nr_free_total.fetch_sub(1 << order, Ordering::Relaxed);
        Ok(pfn)
    }

    /// A new folio of `2^order` pages, prepared (head, tails; refcount frozen at 0 until `publish`)
    /// and not yet visible to anyone. Prefers the local node, as
    /// [`FrameAllocator::alloc`].
    pub fn alloc_folio(&self, order: u8, kind: AllocKind) -> Result<UnpublishedFolio<'static>, AllocError> {
        let pfn = self.alloc(order, kind)?;
        Ok(UnpublishedFolio::prep(self.memmap, pfn, order))
    }

    /// `nr` (at most `2^MAX_ORDER`) new order-0 folios in `nr` physically
    /// contiguous frames, in frame order, prepared as
    /// [`FrameAllocator::alloc_folio`]'s: for one read of consecutive disk
    /// pages into folios of their own (swap readahead,
    /// `crate::swap::swapin`). One block of the order that holds `nr` is
    /// allocated and the frames past `nr` are freed at once.
    pub fn alloc_folio_run(
        &self,
        nr: usize,
        kind: AllocKind,
    ) -> Result<Vec<UnpublishedFolio<'static>>, AllocError> {
        let order = nr.max(1).next_power_of_two().trailing_zeros() as u8;
        let pfn = self.alloc(order, kind)?;
        for extra in nr as u64..1u64 << order {
            self.free(pfn.plus(extra), 0);
        }
        Ok((0..nr as u64).map(|k| UnpublishedFolio::prep(self.memmap, pfn.plus(k), 0)).collect())
    }

    /// Turns the raw order-`order` block at `pfn`, which [`FrameAllocator::alloc`]
    /// handed out and nobody else can see (no count, flag or mapping set
    /// since), into an unpublished folio: [`FrameAllocator::alloc_folio`] in
    /// two steps, for a caller that prepares the frames (zeroes them) before
    /// it knows whether it needs a folio (the fault path's pre-zeroed page,
    /// zeroed outside the space's lock).
    pub fn raw_into_folio(&self, pfn: Pfn, order: u8) -> UnpublishedFolio<'static> {
        UnpublishedFolio::prep(self.memmap, pfn, order)
    }

    /// [`FrameAllocator::alloc_folio`] from `node`'s pool only
    /// ([`FrameAllocator::alloc_on`]).
    pub fn alloc_folio_on(
        &self,
        node: NodeId,
        order: u8,
        kind: AllocKind,
    ) -> Result<UnpublishedFolio<'static>, AllocError> {
        let pfn = self.alloc_on(node, order, kind)?;
        Ok(UnpublishedFolio::prep(self.memmap, pfn, order))
    }

    /// The node frame `pfn` belongs to; None for a frame never handed to
    /// the allocator (a hole, firmware, the kernel image, the memmap).
    pub fn node_of(&self, pfn: Pfn) -> Option<NodeId> {
        self.spans.node_of(pfn.as_u64())
    }

    /// Gives back the block `pfn` of `order` from [`FrameAllocator::alloc`],
    /// merging it with free buddies of its node. Its descriptors are reset
    /// to all zero.
    ///
    /// # Panics
    ///
    /// On a kernel bug, with a `free: reason` message:
    /// - `order` above [`MAX_ORDER`], `pfn` not aligned to `order`, or the
    ///   block not inside the memmap;
    /// - a double free: the block, part of it, or a block containing it is
    ///   already free;
    /// - a frame of the block is reserved (never given to the allocator);
    /// - the block spans two nodes (no allocation returns one);
    /// - a frame still in use: locked, on an LRU list, in the swap cache,
    ///   under writeback, part of a folio (use [`FrameAllocator::free_folio`]),
    ///   or with a reference, mapping, pin or swap entry.
    pub fn free(&self, pfn: Pfn, order: u8) {
        let pfn = pfn.as_u64();
        assert!(order <= MAX_ORDER, "free: order {order} above MAX_ORDER");
        let nr = 1u64 << order;
        assert!(pfn.is_multiple_of(nr), "free: pfn {pfn:#x} not aligned to order {order}");
        let memmap = self.memmap;
        assert!(
            memmap.contains_raw(pfn) && memmap.contains_raw(pfn + nr - 1),
            "free: pfn {pfn:#x} order {order} out of range of {memmap:?}"
        );
        // A frame never managed has no node: the reserved check below
        // names it.
        let node = self.spans.node_of(pfn).unwrap_or(NodeId::ZERO);
        let last = self.spans.node_of(pfn + nr - 1);
        assert!(
            last.is_none_or(|n| n == node),
            "free: pfn {pfn:#x} order {order} spans nodes {node} and {}",
            last.unwrap_or_default()
        );
        let mut zone = self.pools[node.index()].lock();
        // A free block containing the whole block starts at `pfn` rounded
        // down to its own order (on the same node: blocks never cross).
        for k in order..=MAX_ORDER {
            let start = pfn & !((1u64 << k) - 1);
            if let Some(p) = memmap.get_raw(start) {
                let free = p.test_flag(PageFlag::Buddy) && start + (1u64 << p.order()) > pfn;
                let free = free && self.spans.node_of(start) == Some(node);
                assert!(!free, "free: double free of pfn {pfn:#x} (inside free block {start:#x})");
            }
        }
        const BUSY: u64 = PageFlag::Locked.mask()
            | PageFlag::Lru.mask()
            | PageFlag::SwapCache.mask()
            | PageFlag::Writeback.mask()
            | PageFlag::Head.mask()
            | PageFlag::Tail.mask()
            | PageFlag::PageTable.mask();
        for p in pfn..pfn + nr {
            let desc = page(memmap, p);
            let flags = desc.flags();
            assert!(
                flags & PageFlag::Buddy.mask() == 0,
                "free: double free of pfn {pfn:#x} (free block {p:#x} inside it)"
            );
            assert!(flags & PageFlag::Reserved.mask() == 0, "free: pfn {p:#x} is reserved, not managed");
            let idle = flags & BUSY == 0
                && desc.refcount() == 0
                && desc.mapcount() == 0
                && desc.entire_mapcount.load(Ordering::Relaxed) == 0
                && desc.pincount.load(Ordering::Relaxed) == 0
                && desc.swap.load(Ordering::Relaxed) == 0;
            assert!(idle, "free: pfn {p:#x} still in use: {desc:?}");
        }
        for p in pfn..pfn + nr {
            page(memmap, p).nonatomic_reset(0);
        }
        zone.free_block(memmap, &self.spans, node, pfn, order);
        self.nr_free_total.fetch_add(nr, Ordering::Relaxed);
    }

    /// Gives back a folio whose last reference is gone ([`Folio::put`]
    /// returned `true`): its descriptors are reset and its frames freed.
    ///
    /// # Panics
    ///
    /// On a kernel bug (`free_folio: reason`): the folio belongs to another
    /// memmap, still has references, mappings or pins, is locked, on an LRU
    /// list, in the swap cache or under writeback, or keeps a swap entry;
    /// and as [`FrameAllocator::free`].
    pub fn free_folio(&self, folio: Folio<'_>) {
        assert!(core::ptr::eq(folio.memmap(), self.memmap), "free_folio: folio of another memmap");
        let pfn = folio.pfn();
        assert!(folio.refcount() == 0, "free_folio: pfn {pfn:#x} has {} references", folio.refcount());
        for flag in [PageFlag::Locked, PageFlag::Lru, PageFlag::SwapCache, PageFlag::Writeback] {
            assert!(!folio.test_flag(flag), "free_folio: pfn {pfn:#x} is {flag:?}");
        }
        assert!(folio.total_mapcount() == 0, "free_folio: pfn {pfn:#x} is still mapped");
        assert!(folio.pincount() == 0, "free_folio: pfn {pfn:#x} is pinned");
        assert!(folio.swap_entry().is_none(), "free_folio: pfn {pfn:#x} keeps a swap entry");
        let order = folio.order();
        // Refcount 0 and unmapped: nobody else can reach the descriptors.
        // Tails first, then the head, whose order says how many there are.
        for p in (pfn.as_u64()..pfn.as_u64() + (1u64 << order)).rev() {
            page(self.memmap, p).nonatomic_reset(0);
        }
        self.free(pfn, order);
    }

    /// Nodes with memory: `max(node) + 1` over the ranges given, at least 1.
    pub fn nr_nodes(&self) -> usize {
        self.totals.lock().nr_nodes.max(1)
    }

    /// Free pages in all pools.
    pub fn nr_free_pages(&self) -> u64 {
        self.pools.iter().map(|pool| pool.lock().nr_free_pages).sum()
    }

    /// Free pages in `node`'s pool.
    pub fn nr_free_pages_on(&self, node: NodeId) -> u64 {
        self.pools[node.index()].lock().nr_free_pages
    }

    /// Free blocks of `order` in all pools (0 for an order above [`MAX_ORDER`]).
    pub fn nr_free_blocks(&self, order: u8) -> u64 {
        NodeId::all(MAX_NODES).map(|node| self.nr_free_blocks_on(node, order)).sum()
    }

    /// Free blocks of `order` in `node`'s pool.
    pub fn nr_free_blocks_on(&self, node: NodeId, order: u8) -> u64 {
        self.pools[node.index()].lock().areas.get(order as usize).map_or(0, |a| a.nr_free)
    }

    /// Pages ever handed to the allocator by [`FrameAllocator::add_free_range_on`].
    pub fn managed_pages(&self) -> u64 {
        self.totals.lock().managed_pages
    }

    /// Pages ever handed to `node`'s pool.
    pub fn managed_pages_on(&self, node: NodeId) -> u64 {
        self.pools[node.index()].lock().managed_pages
    }

    /// The current watermarks over all memory.
    pub fn watermarks(&self) -> Watermarks {
        self.totals.lock().watermarks
    }

    /// `node`'s share of the watermarks.
    pub fn watermarks_on(&self, node: NodeId) -> Watermarks {
        self.pools[node.index()].lock().watermarks
    }

    /// True when fewer than `low` pages are free in all (reclaim should start).
    pub fn below_low(&self) -> bool {
        let totals = self.totals.lock();
        self.nr_free_total.load(Ordering::Relaxed) < totals.watermarks.low
    }

    /// True when fewer than `high` pages are free in all (reclaim should go on).
    pub fn below_high(&self) -> bool {
        let totals = self.totals.lock();
        self.nr_free_total.load(Ordering::Relaxed) < totals.watermarks.high
    }

    /// Walks every pool's free lists and every descriptor and checks: each
    /// listed block is `Buddy` with its list's order, aligned, inside the
    /// memmap, correctly back-linked, with a clean head and all-zero other
    /// pages (so no two free blocks overlap), every page of it on the
    /// pool's node; each pool's counts match its lists, and the total
    /// matches the pools; no `Buddy` descriptor is off the lists.
    /// O(memmap size), under every pool's lock (taken in node order).
    pub fn check_consistency(&self) -> Result<(), ConsistencyError> {
        let zones: [_; MAX_NODES] = core::array::from_fn(|i| self.pools[i].lock());
        let result = self.check_locked(&zones);
        // Released last taken first: each guard restores the interrupt
        // state its lock found.
        for zone in zones.into_iter().rev() {
            drop(zone);
        }
        result
    }

    fn check_locked(&self, zones: &[impl core::ops::Deref<Target = Zone>]) -> Result<(), ConsistencyError> {
        use ConsistencyError::*;
        let memmap = self.memmap;
        let (mut listed_pages, mut listed_blocks) = (0u64, 0u64);
        for (i, zone) in zones.iter().enumerate() {
            let node = NodeId::new(i).expect("pools are MAX_NODES");
            let mut node_pages = 0u64;
            for order in 0..=MAX_ORDER {
                let area = zone.areas[order as usize];
                let nr = 1u64 << order;
                let (mut prev, mut pfn, mut count) = (NO_PFN, area.first, 0u64);
                while pfn != NO_PFN {
                    count += 1;
                    if count > area.nr_free {
                        return Err(CountMismatch { order, listed: count, recorded: area.nr_free });
                    }
                    let head = memmap.get_raw(pfn).ok_or(BadLink { order, pfn })?;
                    if head.list_prev.load(Ordering::Relaxed) != prev || !memmap.contains_raw(pfn + nr - 1) {
                        return Err(BadLink { order, pfn });
                    }
                    if !head.test_flag(PageFlag::Buddy) {
                        return Err(NotBuddy { order, pfn });
                    }
                    if head.order() != order {
                        return Err(WrongOrder { order, pfn, found: head.order() });
                    }
                    if !pfn.is_multiple_of(nr) {
                        return Err(Misaligned { order, pfn });
                    }
                    if head.flags() != PageFlag::Buddy.mask() | (order as u64) << ORDER_SHIFT
                        || !counts_zero(head)
                    {
                        return Err(DirtyHead { pfn });
                    }
                    for p in pfn..pfn + nr {
                        if self.spans.node_of(p) != Some(node) {
                            return Err(WrongNode { node: node.index() as u8, pfn: p, block: pfn });
                        }
                    }
                    for p in pfn + 1..pfn + nr {
                        let desc = page(memmap, p);
                        if desc.test_flag(PageFlag::Buddy) {
                            return Err(Overlap { pfn: p, block: pfn });
                        }
                        if desc.flags() != 0 || !counts_zero(desc) {
                            return Err(DirtyInterior { pfn: p, block: pfn });
                        }
                    }
                    prev = pfn;
                    pfn = head.list_next.load(Ordering::Relaxed);
                }
                if count != area.nr_free {
                    return Err(CountMismatch { order, listed: count, recorded: area.nr_free });
                }
                listed_blocks += count;
                node_pages += count << order;
            }
            if node_pages != zone.nr_free_pages {
                return Err(FreePagesMismatch { listed: node_pages, recorded: zone.nr_free_pages });
            }
            listed_pages += node_pages;
        }
        let total = self.nr_free_total.load(Ordering::Relaxed);
        if listed_pages != total {
            return Err(FreePagesMismatch { listed: listed_pages, recorded: total });
        }
        let found = memmap.pages().iter().filter(|p| p.test_flag(PageFlag::Buddy)).count() as u64;
        if found != listed_blocks {
            return Err(StrayBuddy { found, listed: listed_blocks });
        }
        Ok(())
    }
}

/// Why [`FrameAllocator::isolate_free_block`] took nothing (none of these
/// is a bug: the free scanner of `crate::compaction` looked at a frame
/// without the lock, and the answer may have changed since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolateError {
    /// The frame does not head a free block (allocated, inside a larger
    /// free block, reserved, or outside the memmap).
    NotFree,
    /// It heads a free block of `order`, at or above the caller's limit.
    TooLarge { order: u8 },
    /// Taking the block would leave fewer than `min` pages free: the
    /// reserve is not compaction's to borrow.
    BelowMin { order: u8 },
}

/// Isolation of free blocks for compaction (`crate::compaction`): the free
/// scanner takes **specific** free blocks off the lists to move pages into,
/// and gives back what it did not use. Kept apart from the allocation path
/// so that it does not depend on how the free lists are organised.
///
/// An isolated block is a raw block (every descriptor zero, as
/// [`FrameAllocator::alloc`] hands one out) that is counted neither free
/// nor in use by anyone else: the isolator owns it until it makes folios of
/// (parts of) it with `UnpublishedFolio::prep` or gives it back with
/// [`FrameAllocator::putback_isolated`]. It may split an isolated block into
/// naturally aligned halves and give them back separately; they merge again
/// on the way back. Isolation takes the allocator's lock for one block, and
/// never calls the low-memory hook (the pages come back soon).
impl FrameAllocator {
    /// Takes the free block whose first frame is `pfn` off its free list,
    /// when it is one and its order is below `below_order`; returns its
    /// order. Leaves at least `min` pages free.
    pub fn isolate_free_block(&self, pfn: Pfn, below_order: u8) -> Result<u8, IsolateError> {
        let pfn = pfn.as_u64();
        let memmap = self.memmap;
        let Some(head) = memmap.get_raw(pfn) else { return Err(IsolateError::NotFree) };
        let Some(node) = self.spans.node_of(pfn) else { return Err(IsolateError::NotFree) };
        let mut zone = self.pools[node.index()].lock();
        // Under the lock, `Buddy` on a page means it heads a free block of
        // the order its bits say, on that order's list (module doc).
        if !head.test_flag(PageFlag::Buddy) {
            return Err(IsolateError::NotFree);
        }
        let order = head.order();
        if order >= below_order {
            return Err(IsolateError::TooLarge { order });
        }
        if zone.nr_free_pages < zone.watermarks.min + (1u64 << order) {
            return Err(IsolateError::BelowMin { order });
        }
        zone.unlink(memmap, pfn, order);
        self.nr_free_total.fetch_sub(1 << order, Ordering::Relaxed);
        Ok(order)
    }

    /// Gives back a block isolated by [`FrameAllocator::isolate_free_block`]
    /// (or a naturally aligned part of one), all descriptors zero again,
    /// merging it with free buddies. The same checks as
    /// [`FrameAllocator::free`], which it is.
    pub fn putback_isolated(&self, pfn: Pfn, order: u8) {
        self.free(pfn, order);
    }

    /// True when a free block of `order` or larger is on the lists: an
    /// allocation of `order` would find one (the watermarks aside).
    pub fn has_free_block(&self, order: u8) -> bool {
        self.pools.iter().any(|pool| {
            let zone = pool.lock();
            (order..=MAX_ORDER).any(|o| zone.areas[o as usize].nr_free > 0)
        })
    }

    /// The free blocks of every order over all nodes (each node's counts
    /// read together under its lock).
    pub fn free_block_counts(&self) -> [u64; NR_ORDERS] {
        let mut counts = [0; NR_ORDERS];
        for pool in &self.pools {
            let zone = pool.lock();
            for (c, area) in counts.iter_mut().zip(&zone.areas) {
                *c += area.nr_free;
            }
        }
        counts
    }
}

/// Where an allocation may come from.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// This node first, then the others in turn.
    Prefer(NodeId),
    /// This node only.
    Only(NodeId),
}

/// True when every count and the swap entry of `p` are 0.
fn counts_zero(p: &Page) -> bool {
    p.refcount() == 0
        && p.mapcount() == 0
        && p.entire_mapcount.load(Ordering::Relaxed) == 0
        && p.pincount.load(Ordering::Relaxed) == 0
        && p.swap.load(Ordering::Relaxed) == 0
        && p.mapping.load(Ordering::Relaxed) == 0
}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let totals = *self.totals.lock();
        let mut nr_free = [0u64; NR_ORDERS];
        let mut node_free = [0u64; MAX_NODES];
        for (pool, free) in self.pools.iter().zip(node_free.iter_mut()) {
            let zone = pool.lock();
            for (n, area) in nr_free.iter_mut().zip(zone.areas.iter()) {
                *n += area.nr_free;
            }
            *free = zone.nr_free_pages;
        }
        f.debug_struct("FrameAllocator")
            .field("memmap", self.memmap)
            .field("managed_pages", &totals.managed_pages)
            .field("nr_free_pages", &node_free.iter().sum::<u64>())
            .field("nr_free", &nr_free)
            .field("watermarks", &totals.watermarks)
            .field("nr_free_per_node", &&node_free[..totals.nr_nodes.max(1)])
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;

    /// [`FrameAllocator::alloc`] as a raw frame number, for the block
    /// arithmetic of these tests.
    fn alloc_raw(fa: &FrameAllocator, order: u8, kind: AllocKind) -> Result<u64, AllocError> {
        fa.alloc(order, kind).map(Pfn::as_u64)
    }

    /// [`FrameAllocator::free`] by the raw frame number.
    fn free_raw(fa: &FrameAllocator, pfn: u64, order: u8) {
        fa.free(Pfn::new(pfn), order)
    }
    use proptest::prelude::*;
    use std::thread;
    use std::vec;
    use std::vec::Vec;

    fn allocator(base: u64, len: usize, ranges: &[(u64, u64)]) -> &'static FrameAllocator {
        let memmap = Memmap::new_leaked(Pfn::new(base), len);
        let fa = std::boxed::Box::leak(std::boxed::Box::new(FrameAllocator::new(memmap)));
        for &(s, e) in ranges {
            fa.add_free_range(Pfn::new(s), Pfn::new(e)).unwrap();
        }
        fa.check_consistency().unwrap();
        fa
    }

    fn free_counts(fa: &FrameAllocator) -> [u64; NR_ORDERS] {
        core::array::from_fn(|o| fa.nr_free_blocks(o as u8))
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn watermark_formula() {
        let wm = Watermarks::for_managed_pages;
        assert_eq!(wm(0), Watermarks { min: 0, low: 0, high: 0 });
        assert_eq!(wm(64).min, 16, "a quarter of tiny memory");
        assert_eq!(wm(4096), Watermarks { min: 128, low: 160, high: 192 }); // 16 MiB
        assert_eq!(wm(32768), Watermarks { min: 362, low: 452, high: 543 }); // 128 MiB
        assert_eq!(wm(262144), Watermarks { min: 1024, low: 1280, high: 1536 }); // 1 GiB
        assert_eq!(wm(1 << 40).min, Watermarks::MIN_CEILING_PAGES);
        assert_eq!(wm(1024).min, 64);
        assert_eq!(wm(200).min, Watermarks::MIN_FLOOR_PAGES);
    }

    #[test]
    fn ranges_become_the_largest_aligned_blocks() {
        // [3, 2050): 3 (order 0), 4..8 (order 2), 8..16, ..., 512..1024 (order 9),
        // 1024..2048 (order 10), 2048..2050 (order 1).
        let fa = allocator(0, 4096, &[(3, 2050)]);
        assert_eq!(fa.managed_pages(), 2047);
        assert_eq!(fa.nr_free_pages(), 2047);
        assert_eq!(free_counts(fa), [1; NR_ORDERS]);
        // Pages outside stay reserved; inside, only block heads carry a flag.
        assert!(fa.memmap().get(Pfn::new(2)).unwrap().test_flag(PageFlag::Reserved));
        assert!(fa.memmap().get(Pfn::new(2050)).unwrap().test_flag(PageFlag::Reserved));
        assert_eq!(fa.memmap().get(Pfn::new(1025)).unwrap().flags(), 0);
        // A second, adjacent range merges with the first.
        fa.add_free_range(Pfn::new(2050), Pfn::new(4096)).unwrap();
        fa.add_free_range(Pfn::new(0), Pfn::new(3)).unwrap();
        assert_eq!(free_counts(fa), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn bad_ranges_are_refused_whole() {
        let fa = allocator(0x100, 256, &[(0x100, 0x180)]);
        let before = free_counts(fa);
        assert_eq!(
            fa.add_free_range(Pfn::new(0xff), Pfn::new(0x110)),
            Err(RangeError::OutsideMemmap { start_pfn: 0xff, end_pfn: 0x110 })
        );
        assert_eq!(
            fa.add_free_range(Pfn::new(0x1f0), Pfn::new(0x201)),
            Err(RangeError::OutsideMemmap { start_pfn: 0x1f0, end_pfn: 0x201 })
        );
        assert_eq!(
            fa.add_free_range(Pfn::new(0x170), Pfn::new(0x190)),
            Err(RangeError::AlreadyManaged { pfn: 0x170 })
        );
        assert!(fa.memmap().get(Pfn::new(0x185)).unwrap().test_flag(PageFlag::Reserved), "nothing changed");
        assert_eq!(free_counts(fa), before);
        assert_eq!(fa.add_free_range(Pfn::new(0x190), Pfn::new(0x190)), Ok(()));
        fa.check_consistency().unwrap();
    }

    #[test]
    fn alloc_and_free_at_every_order_restores_the_count() {
        let fa = allocator(0, 8192, &[(0, 8192)]);
        let start = free_counts(fa);
        for order in 0..=MAX_ORDER {
            let pfn = alloc_raw(fa, order, AllocKind::Normal).unwrap();
            assert_eq!(pfn % (1 << order), 0);
            assert_eq!(fa.nr_free_pages(), 8192 - (1 << order));
            fa.check_consistency().unwrap();
            free_raw(fa, pfn, order);
            assert_eq!(fa.nr_free_pages(), 8192);
            assert_eq!(free_counts(fa), start, "order {order}");
        }
        assert_eq!(alloc_raw(fa, MAX_ORDER + 1, AllocKind::Reserve), Err(AllocError::BadOrder(11)));
    }

    #[test]
    fn everything_at_order_0_then_back_coalesces() {
        // A base that is not aligned to MAX_ORDER and a hole in the middle.
        let base = 0x1_0003;
        let fa = allocator(base, 5000, &[(base, base + 2000), (base + 2100, base + 5000)]);
        let start = free_counts(fa);
        let total = fa.nr_free_pages();
        let mut pfns = Vec::new();
        while let Ok(pfn) = alloc_raw(fa, 0, AllocKind::Reserve) {
            pfns.push(pfn);
        }
        assert_eq!(pfns.len() as u64, total);
        assert_eq!(fa.nr_free_pages(), 0);
        assert_eq!(alloc_raw(fa, 0, AllocKind::Reserve), Err(AllocError::OutOfMemory { order: 0 }));
        pfns.sort_unstable();
        pfns.dedup();
        assert_eq!(pfns.len() as u64, total, "a frame was handed out twice");
        // Free in a scrambled order.
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for i in (1..pfns.len()).rev() {
            pfns.swap(i, rng.next() as usize % (i + 1));
        }
        for pfn in pfns {
            free_raw(fa, pfn, 0);
        }
        assert_eq!(free_counts(fa), start);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn normal_stops_at_min_reserve_goes_on() {
        let fa = allocator(0, 4096, &[(0, 4096)]);
        let wm = fa.watermarks();
        assert_eq!(wm.min, 128);
        assert!(!fa.below_high());
        let mut held = Vec::new();
        loop {
            match alloc_raw(fa, 0, AllocKind::Normal) {
                Ok(pfn) => held.push(pfn),
                Err(e) => {
                    assert_eq!(e, AllocError::BelowMin { order: 0 });
                    break;
                }
            }
        }
        assert_eq!(fa.nr_free_pages(), wm.min);
        assert!(fa.below_low() && fa.below_high());
        // A larger block needs room above min too.
        assert_eq!(alloc_raw(fa, 3, AllocKind::Normal), Err(AllocError::BelowMin { order: 3 }));
        // The reserve is there for those allowed to use it.
        for _ in 0..wm.min {
            held.push(alloc_raw(fa, 0, AllocKind::Reserve).unwrap());
        }
        assert_eq!(alloc_raw(fa, 0, AllocKind::Reserve), Err(AllocError::OutOfMemory { order: 0 }));
        assert_eq!(alloc_raw(fa, 0, AllocKind::Normal), Err(AllocError::OutOfMemory { order: 0 }));
        for pfn in held.drain(..wm.high as usize) {
            free_raw(fa, pfn, 0);
        }
        assert!(!fa.below_high() && !fa.below_low());
        fa.check_consistency().unwrap();
    }

    #[test]
    fn low_memory_hook_fires_below_low_and_on_failure_only() {
        use std::sync::atomic::AtomicU64;
        // This test's own counter: no other test registers this hook.
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn hook() {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
        let calls = || CALLS.load(Ordering::SeqCst);
        let fa = allocator(0, 4096, &[(0, 4096)]);
        fa.set_low_memory_hook(hook);
        let wm = fa.watermarks();
        let mut held = Vec::new();
        // Down to exactly `low` free: never called.
        while fa.nr_free_pages() > wm.low {
            held.push(alloc_raw(fa, 0, AllocKind::Normal).unwrap());
        }
        assert_eq!(calls(), 0, "called with {} pages free, low {}", fa.nr_free_pages(), wm.low);
        // The allocation that crosses `low` calls it, and every one below.
        held.push(alloc_raw(fa, 0, AllocKind::Normal).unwrap());
        assert_eq!(calls(), 1);
        held.push(alloc_raw(fa, 0, AllocKind::Normal).unwrap());
        assert_eq!(calls(), 2);
        // Back above `low`: quiet again.
        for pfn in held.drain(..) {
            free_raw(fa, pfn, 0);
        }
        held.push(alloc_raw(fa, 0, AllocKind::Normal).unwrap());
        assert_eq!(calls(), 2);
        // A failure calls it even above `low` (the page held split one of
        // the four largest blocks: the fourth of that order fails), a bad
        // order does not (the caller's fault, not memory's).
        let big: Vec<u64> = (0..3).map(|_| alloc_raw(fa, MAX_ORDER, AllocKind::Normal).unwrap()).collect();
        assert_eq!(calls(), 2);
        assert_eq!(
            alloc_raw(fa, MAX_ORDER, AllocKind::Normal),
            Err(AllocError::OutOfMemory { order: MAX_ORDER })
        );
        assert!(!fa.below_low());
        assert_eq!(calls(), 3);
        assert_eq!(alloc_raw(fa, MAX_ORDER + 1, AllocKind::Normal), Err(AllocError::BadOrder(MAX_ORDER + 1)));
        assert_eq!(calls(), 3);
        for pfn in held {
            free_raw(fa, pfn, 0);
        }
        for pfn in big {
            free_raw(fa, pfn, MAX_ORDER);
        }
        fa.check_consistency().unwrap();
    }

    #[test]
    fn fragmentation_is_out_of_memory_for_that_order() {
        let fa = allocator(0, 1024, &[(0, 1024)]);
        let pfns: Vec<_> = (0..1024).map(|_| alloc_raw(fa, 0, AllocKind::Reserve).unwrap()).collect();
        // Free every other frame: 512 free pages, no two of them buddies.
        for &pfn in pfns.iter().step_by(2) {
            free_raw(fa, pfn, 0);
        }
        assert_eq!(fa.nr_free_pages(), 512);
        assert_eq!(alloc_raw(fa, 1, AllocKind::Reserve), Err(AllocError::OutOfMemory { order: 1 }));
        assert!(alloc_raw(fa, 0, AllocKind::Reserve).is_ok());
    }

    #[test]
    fn folio_round_trip() {
        let fa = allocator(0x200, 2048, &[(0x200, 0xa00)]);
        let start = free_counts(fa);
        let mut u = fa.alloc_folio(9, AllocKind::Normal).unwrap();
        assert_eq!(u.pfn().as_u64() % 512, 0);
        u.nonatomic_set_flag(PageFlag::SwapBacked);
        let f = u.publish();
        assert_eq!(crate::folio::folio_of(fa.memmap(), f.pfn().plus(77)), Some(f));
        f.set_flag(PageFlag::Dirty);
        assert!(f.put());
        fa.free_folio(f);
        assert_eq!(free_counts(fa), start);
        fa.check_consistency().unwrap();
        assert_eq!(crate::folio::folio_of(fa.memmap(), f.pfn().plus(77)), None);
    }

    #[test]
    #[should_panic(expected = "free_folio: pfn 0x0 has 1 references")]
    fn freeing_a_referenced_folio_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let f = fa.alloc_folio(0, AllocKind::Reserve).unwrap().publish();
        fa.free_folio(f);
    }

    #[test]
    #[should_panic(expected = "free: pfn 0x0 still in use")]
    fn freeing_a_folio_as_raw_frames_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let f = fa.alloc_folio(2, AllocKind::Reserve).unwrap().publish();
        f.put();
        fa.free(f.pfn(), 2);
    }

    #[test]
    #[should_panic(expected = "free: double free of pfn 0x10")]
    fn double_free_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let pfns: Vec<_> = (0..64).map(|_| alloc_raw(fa, 0, AllocKind::Reserve).unwrap()).collect();
        assert!(pfns.contains(&0x10));
        free_raw(fa, 0x10, 0);
        free_raw(fa, 0x10, 0);
    }

    #[test]
    #[should_panic(expected = "free: double free of pfn 0x11 (inside free block 0x10)")]
    fn double_free_of_a_merged_frame_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let _: Vec<_> = (0..64).map(|_| alloc_raw(fa, 0, AllocKind::Reserve).unwrap()).collect();
        free_raw(fa, 0x10, 0);
        free_raw(fa, 0x11, 0); // merges into the order-1 block at 0x10
        free_raw(fa, 0x11, 0);
    }

    #[test]
    #[should_panic(expected = "free: double free of pfn 0x10 (free block 0x12 inside it)")]
    fn freeing_a_block_with_a_free_part_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let _: Vec<_> = (0..64).map(|_| alloc_raw(fa, 0, AllocKind::Reserve).unwrap()).collect();
        free_raw(fa, 0x12, 0);
        free_raw(fa, 0x10, 2);
    }

    #[test]
    #[should_panic(expected = "free: pfn 0x3 not aligned to order 1")]
    fn misaligned_free_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        free_raw(fa, 3, 1);
    }

    #[test]
    #[should_panic(expected = "free: pfn 0x40 order 0 out of range")]
    fn out_of_range_free_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        free_raw(fa, 0x40, 0);
    }

    #[test]
    #[should_panic(expected = "free: pfn 0x20 is reserved")]
    fn freeing_a_reserved_frame_panics() {
        let fa = allocator(0, 64, &[(0, 32)]);
        free_raw(fa, 0x20, 0);
    }

    #[test]
    fn consistency_check_catches_corruption() {
        let fa = allocator(0, 64, &[(0, 64)]);
        let pfn = alloc_raw(fa, 0, AllocKind::Reserve).unwrap();
        // A stray Buddy flag on an allocated frame.
        fa.memmap().get(Pfn::new(pfn)).unwrap().set_flag(PageFlag::Buddy);
        assert!(matches!(fa.check_consistency(), Err(ConsistencyError::StrayBuddy { .. })));
        fa.memmap().get(Pfn::new(pfn)).unwrap().clear_flag(PageFlag::Buddy);
        fa.check_consistency().unwrap();
        // Someone writes into a free block.
        let inside = fa.memmap().get(Pfn::new(40)).unwrap();
        inside.set_flag(PageFlag::Dirty);
        assert_eq!(fa.check_consistency(), Err(ConsistencyError::DirtyInterior { pfn: 40, block: 32 }));
        inside.clear_flag(PageFlag::Dirty);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn isolating_a_specific_free_block_and_giving_it_back() {
        let fa = allocator(0, 4096, &[(0, 4096)]);
        let start = free_counts(fa);
        // Everything at order 0, then free a few: a free block of order 1
        // at 0x10, of order 0 at 0x21 (its buddy 0x20 stays taken).
        let pfns: Vec<_> = (0..4096).map(|_| alloc_raw(fa, 0, AllocKind::Reserve).unwrap()).collect();
        for pfn in [0x10, 0x11, 0x21] {
            free_raw(fa, pfn, 0);
        }
        assert_eq!(fa.free_block_counts()[..2], [1, 1]);
        // Only a block's first frame names it; not a taken frame; not one
        // at or above the limit.
        assert_eq!(fa.isolate_free_block(Pfn::new(0x11), 9), Err(IsolateError::NotFree));
        assert_eq!(fa.isolate_free_block(Pfn::new(0x20), 9), Err(IsolateError::NotFree));
        assert_eq!(fa.isolate_free_block(Pfn::new(0x10), 1), Err(IsolateError::TooLarge { order: 1 }));
        assert_eq!(fa.isolate_free_block(Pfn::new(0x1_0000), 9), Err(IsolateError::NotFree));
        // The reserve is not lent: with fewer than min + 2 pages free, no.
        assert_eq!(fa.isolate_free_block(Pfn::new(0x10), 9), Err(IsolateError::BelowMin { order: 1 }));
        let mut held = pfns;
        held.retain(|&p| p != 0x10 && p != 0x11 && p != 0x21);
        let min = fa.watermarks().min as usize;
        for pfn in held.drain(..min) {
            free_raw(fa, pfn, 0);
        }
        let free = fa.nr_free_pages();
        assert_eq!(fa.isolate_free_block(Pfn::new(0x10), 9), Ok(1));
        assert_eq!(fa.isolate_free_block(Pfn::new(0x21), 9), Ok(0));
        // Off the lists, not free, the allocator still consistent; the
        // descriptors are those of a raw block.
        assert_eq!(fa.nr_free_pages(), free - 3);
        assert!(!fa.memmap().get(Pfn::new(0x10)).unwrap().test_flag(PageFlag::Buddy));
        fa.check_consistency().unwrap();
        assert_eq!(fa.isolate_free_block(Pfn::new(0x10), 9), Err(IsolateError::NotFree), "taken twice");
        // Back in halves (a split isolated block), merging as a free does.
        fa.putback_isolated(Pfn::new(0x11), 0);
        fa.putback_isolated(Pfn::new(0x10), 0);
        fa.putback_isolated(Pfn::new(0x21), 0);
        assert_eq!(fa.nr_free_pages(), free);
        fa.check_consistency().unwrap();
        for pfn in held {
            free_raw(fa, pfn, 0);
        }
        assert_eq!(free_counts(fa), start);
        assert!(fa.has_free_block(MAX_ORDER) && !fa.has_free_block(MAX_ORDER + 1));
    }

    #[test]
    #[should_panic(expected = "free: double free of pfn 0x8")]
    fn giving_back_a_block_not_isolated_panics() {
        let fa = allocator(0, 64, &[(0, 64)]);
        fa.putback_isolated(Pfn::new(8), 3);
    }

    fn node(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    /// An allocator over `[0, len)` whose node `i` holds `ranges[i]`.
    fn nodes_allocator(len: usize, ranges: &[(u64, u64)]) -> &'static FrameAllocator {
        let memmap = Memmap::new_leaked(Pfn::new(0), len);
        let fa = std::boxed::Box::leak(std::boxed::Box::new(FrameAllocator::new(memmap)));
        for (i, &(s, e)) in ranges.iter().enumerate() {
            fa.add_free_range_on(node(i), Pfn::new(s), Pfn::new(e)).unwrap();
        }
        fa.check_consistency().unwrap();
        fa
    }

    fn node_of_raw(fa: &FrameAllocator, pfn: u64) -> usize {
        fa.node_of(Pfn::new(pfn)).unwrap().index()
    }

    #[test]
    fn ranges_beyond_the_span_table_are_refused_whole() {
        let fa = allocator(0, 2 * MAX_SPANS + 2, &[]);
        for i in 0..MAX_SPANS as u64 {
            fa.add_free_range_on(node(1), Pfn::new(2 * i), Pfn::new(2 * i + 1)).unwrap();
        }
        let last = 2 * MAX_SPANS as u64;
        assert_eq!(fa.add_free_range(Pfn::new(last), Pfn::new(last + 1)), Err(RangeError::TooManySpans));
        assert!(fa.memmap().get(Pfn::new(last)).unwrap().test_flag(PageFlag::Reserved), "nothing changed");
        assert_eq!(fa.managed_pages(), MAX_SPANS as u64);
        fa.check_consistency().unwrap();
    }

    #[test]
    fn per_node_counts_and_watermarks_add_up() {
        let fa = nodes_allocator(4096, &[(0, 1024), (1024, 4096)]);
        assert_eq!(fa.nr_nodes(), 2);
        assert_eq!((fa.managed_pages_on(node(0)), fa.managed_pages_on(node(1))), (1024, 3072));
        assert_eq!(fa.nr_free_pages_on(node(0)) + fa.nr_free_pages_on(node(1)), fa.nr_free_pages());
        let total = fa.watermarks();
        assert_eq!(total, Watermarks::for_managed_pages(4096), "the total is the one-node rule");
        let (w0, w1) = (fa.watermarks_on(node(0)), fa.watermarks_on(node(1)));
        assert_eq!((w0.min, w1.min), (total.min / 4, total.min * 3 / 4), "shares in proportion");
        assert!(w0.low + w1.low <= total.low && w0.high + w1.high <= total.high);
        // One node: its share is the whole.
        let one = allocator(0, 4096, &[(0, 4096)]);
        assert_eq!(one.watermarks_on(NodeId::ZERO), one.watermarks());
        assert_eq!(one.nr_nodes(), 1);
    }

    #[test]
    fn allocations_prefer_their_node_and_fall_back_to_the_next_in_turn() {
        let fa = nodes_allocator(3072, &[(0, 1024), (1024, 2048), (2048, 3072)]);
        for n in 0..3 {
            let pfn = fa.alloc_preferring(node(n), 0, AllocKind::Normal).unwrap();
            assert_eq!(node_of_raw(fa, pfn.as_u64()), n);
            fa.free(pfn, 0);
        }
        // Node 1 empty: its allocations go to node 2, then node 0.
        let mut held: Vec<_> =
            (0..1024).map(|_| fa.alloc_on(node(1), 0, AllocKind::Reserve).unwrap()).collect();
        let next = fa.alloc_preferring(node(1), 0, AllocKind::Reserve).unwrap();
        assert_eq!(node_of_raw(fa, next.as_u64()), 2);
        held.push(next);
        while fa.nr_free_pages_on(node(2)) > 0 {
            held.push(fa.alloc_on(node(2), 0, AllocKind::Reserve).unwrap());
        }
        let last = fa.alloc_preferring(node(1), 0, AllocKind::Reserve).unwrap();
        assert_eq!(node_of_raw(fa, last.as_u64()), 0);
        held.push(last);
        // A Normal allocation that would take a node below its min goes
        // elsewhere too.
        let fb = nodes_allocator(4096, &[(0, 2048), (2048, 4096)]);
        let min0 = fb.watermarks_on(node(0)).min;
        while fb.nr_free_pages_on(node(0)) > min0 {
            let pfn = fb.alloc_preferring(node(0), 0, AllocKind::Normal).unwrap();
            assert_eq!(node_of_raw(fb, pfn.as_u64()), 0);
        }
        let pfn = fb.alloc_preferring(node(0), 0, AllocKind::Normal).unwrap();
        assert_eq!(node_of_raw(fb, pfn.as_u64()), 1, "node 0 is at its min");
        assert_eq!(fb.alloc_on(node(0), 0, AllocKind::Normal), Err(AllocError::BelowMin { order: 0 }));
        for pfn in held {
            fa.free(pfn, 0);
        }
        fa.check_consistency().unwrap();
        fb.check_consistency().unwrap();
    }

    #[test]
    fn strict_allocation_fails_when_its_node_is_empty() {
        let fa = nodes_allocator(2048, &[(0, 1024), (1024, 2048)]);
        let held: Vec<_> = (0..1024).map(|_| fa.alloc_on(node(1), 0, AllocKind::Reserve).unwrap()).collect();
        assert!(held.iter().all(|p| node_of_raw(fa, p.as_u64()) == 1));
        assert_eq!(fa.alloc_on(node(1), 0, AllocKind::Reserve), Err(AllocError::OutOfMemory { order: 0 }));
        assert_eq!(
            fa.alloc_folio_on(node(1), 0, AllocKind::Reserve).err(),
            Some(AllocError::OutOfMemory { order: 0 })
        );
        // Node 0 still has all of its memory, and a node with none fails too.
        assert_eq!(fa.nr_free_pages_on(node(0)), 1024);
        assert_eq!(fa.alloc_on(node(5), 0, AllocKind::Reserve), Err(AllocError::OutOfMemory { order: 0 }));
        let u = fa.alloc_folio_on(node(0), 9, AllocKind::Normal).unwrap();
        assert_eq!(node_of_raw(fa, u.pfn().as_u64()), 0);
        let f = u.publish();
        assert!(f.put());
        fa.free_folio(f);
        for pfn in held {
            fa.free(pfn, 0);
        }
        fa.check_consistency().unwrap();
    }

    #[test]
    fn the_local_node_hook_picks_the_preferred_node() {
        fn on_node_1() -> NodeId {
            NodeId::new(1).unwrap()
        }
        let fa = nodes_allocator(2048, &[(0, 1024), (1024, 2048)]);
        assert_eq!(node_of_raw(fa, fa.alloc(0, AllocKind::Normal).unwrap().as_u64()), 0);
        fa.set_local_node_hook(on_node_1);
        assert_eq!(fa.local_node(), node(1));
        assert_eq!(node_of_raw(fa, fa.alloc(0, AllocKind::Normal).unwrap().as_u64()), 1);
        assert_eq!(node_of_raw(fa, fa.alloc_silent(0, AllocKind::Normal).unwrap().as_u64()), 1);
        let folio = fa.alloc_folio(9, AllocKind::Normal).unwrap();
        assert_eq!(node_of_raw(fa, folio.pfn().as_u64()), 1);
    }

    #[test]
    fn buddies_never_merge_across_a_node_boundary() {
        // 0x200 pages is 2 MiB: blocks 0x000 and 0x200 of order 9 are
        // buddies, but on two nodes. A boundary at 0x300 (3 MiB) cuts an
        // order-10 block in two.
        for boundary in [0x200u64, 0x300] {
            let fa = nodes_allocator(0x1000, &[(0, boundary), (boundary, 0x1000)]);
            let start = free_counts(fa);
            let crosses = |fa: &FrameAllocator| {
                (0..=MAX_ORDER).any(|o| {
                    let nr = 1u64 << o;
                    let head = boundary & !(nr - 1);
                    head < boundary && head + nr > boundary && {
                        let p = fa.memmap().get(Pfn::new(head)).unwrap();
                        p.test_flag(PageFlag::Buddy) && p.order() == o
                    }
                })
            };
            assert!(!crosses(fa), "boundary {boundary:#x}: a free block crosses it from the start");
            assert_eq!(fa.nr_free_blocks_on(node(0), 10), 0);
            // Everything out at order 0, then back in a scrambled order:
            // the same blocks come back, none across the boundary.
            let mut pfns = Vec::new();
            while let Ok(pfn) = alloc_raw(fa, 0, AllocKind::Reserve) {
                pfns.push(pfn);
            }
            assert_eq!(pfns.len(), 0x1000);
            let mut rng = XorShift(boundary);
            for i in (1..pfns.len()).rev() {
                pfns.swap(i, rng.next() as usize % (i + 1));
            }
            for pfn in pfns {
                free_raw(fa, pfn, 0);
                assert!(!crosses(fa), "boundary {boundary:#x}: freeing {pfn:#x} merged across it");
            }
            assert_eq!(free_counts(fa), start);
            fa.check_consistency().unwrap();
        }
    }

    #[test]
    fn consistency_check_catches_a_block_on_the_wrong_node() {
        let fa = nodes_allocator(2048, &[(0, 1024), (1024, 2048)]);
        // Move node 1's first order-10 block onto node 0's lists.
        let pfn = {
            let mut z1 = fa.pools[1].lock();
            let pfn = z1.areas[MAX_ORDER as usize].first;
            z1.unlink(fa.memmap(), pfn, MAX_ORDER);
            pfn
        };
        fa.pools[0].lock().push(fa.memmap(), pfn, MAX_ORDER);
        let err = fa.check_consistency().unwrap_err();
        assert!(matches!(err, ConsistencyError::WrongNode { node: 0, pfn: 1024, block: 1024 }), "{err:?}");
        // And a pool whose count is off, though the total is right.
        let fb = nodes_allocator(2048, &[(0, 1024), (1024, 2048)]);
        fb.pools[0].lock().nr_free_pages += 1;
        fb.pools[1].lock().nr_free_pages -= 1;
        assert!(matches!(fb.check_consistency(), Err(ConsistencyError::FreePagesMismatch { .. })));
    }

    /// Tracks who owns each frame and checks the allocator against it.
    struct Model {
        fa: &'static FrameAllocator,
        usable: Vec<bool>,
        owned: Vec<bool>,
        live: Vec<(u64, u8)>,
        allocated: u64,
        start: [u64; NR_ORDERS],
    }

    impl Model {
        /// A memmap with holes and a base not aligned to any order above 0.
        fn new() -> Model {
            let base = 0x4_0001;
            let len = 6000;
            let ranges = [(base, base + 700), (base + 1023, base + 3100), (base + 3333, base + len as u64)];
            let fa = allocator(base, len, &ranges);
            let mut usable = vec![false; len];
            for (s, e) in ranges {
                usable[(s - base) as usize..(e - base) as usize].fill(true);
            }
            Model {
                fa,
                usable,
                owned: vec![false; len],
                live: Vec::new(),
                allocated: 0,
                start: free_counts(fa),
            }
        }

        fn alloc(&mut self, order: u8, kind: AllocKind) {
            let fa = self.fa;
            let free_before = fa.nr_free_pages();
            match alloc_raw(fa, order, kind) {
                Ok(pfn) => {
                    let nr = 1u64 << order;
                    assert_eq!(pfn % nr, 0, "misaligned block");
                    let i = (pfn - fa.memmap().base_pfn().as_u64()) as usize;
                    for j in i..i + nr as usize {
                        assert!(self.usable[j], "pfn {pfn:#x} order {order} covers a hole");
                        assert!(!self.owned[j], "pfn {pfn:#x} order {order} overlaps a live block");
                        self.owned[j] = true;
                    }
                    self.live.push((pfn, order));
                    self.allocated += nr;
                }
                Err(AllocError::OutOfMemory { order: o }) => {
                    assert_eq!(o, order);
                    assert!((order..=MAX_ORDER).all(|k| fa.nr_free_blocks(k) == 0));
                }
                Err(AllocError::BelowMin { order: o }) => {
                    assert_eq!((o, kind), (order, AllocKind::Normal));
                    assert!(free_before < fa.watermarks().min + (1 << order));
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }

        fn free(&mut self, pick: usize) {
            if self.live.is_empty() {
                return;
            }
            let (pfn, order) = self.live.swap_remove(pick % self.live.len());
            let i = (pfn - self.fa.memmap().base_pfn().as_u64()) as usize;
            self.owned[i..i + (1 << order)].fill(false);
            self.allocated -= 1 << order;
            free_raw(self.fa, pfn, order);
        }

        fn check(&self) {
            self.fa.check_consistency().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(self.fa.nr_free_pages(), self.fa.managed_pages() - self.allocated);
        }

        fn free_all_and_check(&mut self) {
            while !self.live.is_empty() {
                self.free(0);
            }
            self.check();
            assert_eq!(free_counts(self.fa), self.start, "not coalesced back");
        }
    }

    const ORDERS: [u8; 16] = [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 8, 9, 10];

    #[test]
    fn random_operations_agree_with_an_ownership_model() {
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 0xdead_beef_cafe_f00d] {
            let mut rng = XorShift(seed);
            let mut model = Model::new();
            for _ in 0..3000 {
                let r = rng.next();
                if r % 5 < 3 {
                    let kind = if r & 0x100 == 0 { AllocKind::Normal } else { AllocKind::Reserve };
                    model.alloc(ORDERS[(r >> 12) as usize % ORDERS.len()], kind);
                } else {
                    model.free((r >> 20) as usize);
                }
                model.check();
            }
            model.free_all_and_check();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn proptest_alloc_free_sequences(ops in prop::collection::vec((0u8..16, any::<bool>(), any::<u16>()), 1..150)) {
            let mut model = Model::new();
            for (o, reserve, pick) in ops {
                if pick % 3 == 0 {
                    model.free(pick as usize);
                } else {
                    let kind = if reserve { AllocKind::Reserve } else { AllocKind::Normal };
                    model.alloc(ORDERS[o as usize], kind);
                }
                model.check();
            }
            model.free_all_and_check();
        }
    }

    #[test]
    fn concurrent_alloc_free_returns_to_the_start() {
        let fa = allocator(0x3, 16384, &[(0x3, 0x4003)]);
        let start = free_counts(fa);
        let total = fa.nr_free_pages();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                thread::spawn(move || {
                    let mut rng = XorShift(0x5eed + t * 0x1_0001);
                    let mut held: Vec<(u64, u8)> = Vec::new();
                    for _ in 0..20_000 {
                        let r = rng.next();
                        if r.is_multiple_of(2) || held.is_empty() {
                            let order = ORDERS[(r >> 8) as usize % 10];
                            if let Ok(pfn) = alloc_raw(fa, order, AllocKind::Normal) {
                                held.push((pfn, order));
                            }
                        } else {
                            let (pfn, order) = held.swap_remove((r >> 16) as usize % held.len());
                            free_raw(fa, pfn, order);
                        }
                    }
                    held
                })
            })
            .collect();
        let mut all: Vec<(u64, u8)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        // Nothing held by two threads at once.
        all.sort_unstable();
        for w in all.windows(2) {
            assert!(w[0].0 + (1 << w[0].1) <= w[1].0, "blocks {w:?} overlap");
        }
        fa.check_consistency().unwrap();
        let held: u64 = all.iter().map(|&(_, o)| 1u64 << o).sum();
        assert_eq!(fa.nr_free_pages(), total - held);
        for (pfn, order) in all {
            free_raw(fa, pfn, order);
        }
        assert_eq!(fa.nr_free_pages(), total);
        assert_eq!(free_counts(fa), start);
        fa.check_consistency().unwrap();
    }
}
