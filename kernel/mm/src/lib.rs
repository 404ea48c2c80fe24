//! `mm`: the memory subsystem of the kernel, written without any knowledge of
//! the hardware so that it builds and is tested on the host.
//!
//! This crate grows one mechanism per module (see `../shared/ARCHITECTURE.md`
//! and the book's chapters). What is here so far:
//!
//! | module | mechanism |
//! | --- | --- |
//! | [`addr`] | physical and virtual address newtypes, page sizes |
//! | [`memmap`] | the boot memory map: usable RAM as sorted, disjoint, page-aligned ranges, with reserved ranges carved out |
//! | [`fault`] | the arch-neutral description of a memory fault (address, access, cause) |
//! | [`frame`] | the buddy allocator over all usable RAM (orders 0..=10), watermarks |
//! | [`page`] | the page descriptor: one per 4 KiB frame, in the memmap array |
//! | [`folio`] | folios: a head page and its tails, flags, counts, swap entry |
//! | [`pgtable`] | page tables over any arch format: entries, walk, map, unmap, protect |
//! | [`ptdump`] | a page-table dump for people: levels, flags, sizes, swap/migration entries |
//! | [`early`] | the early frame allocator: first-fit, carving frames from the boot memory map until the buddy allocator takes over |
//! | [`vma`] | the VMAs of one address space: map, unmap, protect, THP advice; split and merge |
//! | [`anon`] | anonymous pages as order-0 folios: made for a fault, unmapped and freed in two steps |
//! | [`debug`] | the consistency checker: walks an address space's tables against its areas and the folio counts |
//! | [`swap`] | swap areas: the mkswap header, slots and their counts, clusters, the swap cache |
//! | [`pageout`] | `MADV_PAGEOUT`'s choice of folios; splitting the large folios a range cuts, never one reclaim holds (seed 002) |
//! | [`lru`] | the anonymous LRU lists (active, inactive) that reclaim scans for folios to swap out |
//! | [`bugs`] | the bug-replay switches (`bug=<name>`): each puts one historical mistake back, off by default |
//! | `testkit` | the host tests' kit (feature `sim`): simulated frames and swap, worlds of address spaces, proptest strategies, the shuttle set-up |
//! | `sync` | the page descriptor's atomics from one place: `core`'s, or shuttle's under the `shuttle` feature (host race tests), and `Lock`, the mutex that is shuttle's there too |
//!
//! ## Lock order
//!
//! Outer locks first; a lock may be taken while holding the ones above it.
//!
//! ```text
//! folio lock (PageFlag::Locked; spins today, sleeps once tasks exist)
//!   page-table changes: serialised by the caller (the address-space lock
//!   of issue 5; per-table PT locks come with concurrent faults)
//!     LruLists' lock (both lists, members' links, Lru/Active)   leaf
//!     FrameAllocator's spin lock (free lists, counts)           leaf
//!     a SwapArea's lock (slots, clusters, swap cache)           leaf (its
//!       `cache_lookup_with` closure may touch a folio's atomics)
//! ```
//!
//! The two leaves are never held together: the LRU lock's holder neither
//! allocates nor drops a reference, and the free path removes a folio from
//! its list before it takes the allocator's lock. The allocator's
//! low-memory hook (`frame::FrameAllocator::set_low_memory_hook`) runs after
//! its lock is released, under whatever the allocating caller holds.
//!
//! The boot memory map and the early allocator are used by the boot CPU
//! alone, before any other CPU runs, and take no lock. `mm` knows no
//! interrupts: the kernel takes the frame allocator's lock only with
//! interrupts disabled on its CPU (its wrappers in `kernel/src/memory.rs`),
//! so a holder is never preempted or interrupted by a handler that
//! allocates (the rule in `kernel/src/sync.rs`).
//! Page descriptors are all atomics: flags are changed only by atomic
//! read-modify-writes once a folio is published (seed 003); the one
//! non-atomic API is on `folio::UnpublishedFolio` (and a crate-private
//! method for the bug replay of seed 003, see [`bugs`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(any(test, feature = "sim"))]
extern crate std;

pub mod addr;
pub mod anon;
pub mod bugs;
pub mod debug;
pub mod early;
pub mod fault;
pub mod folio;
pub mod frame;
pub mod gup;
pub mod lru;
pub mod memmap;
pub mod page;
pub mod pageout;
pub mod pgtable;
pub mod ptdump;
pub mod rmap;
pub mod space;
pub mod swap;
pub mod sync;
#[cfg(feature = "sim")]
pub mod testkit;
pub mod thp;
pub mod vma;

pub use addr::{PhysAddr, VirtAddr, PAGE_SIZE};
