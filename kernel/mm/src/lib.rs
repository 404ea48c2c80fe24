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
//! | [`fail_alloc`] | allocation-failure injection: the n-th allocation, or each with a seeded probability, fails, for one task or all |
//! | [`frame`] | the buddy allocator over all usable RAM (orders 0..=10), one free-page pool per NUMA node, watermarks |
//! | [`numa`] | NUMA nodes as the firmware describes them: which node each RAM range and CPU belongs to |
//! | [`page`] | the page descriptor: one per 4 KiB frame, in the memmap array |
//! | [`folio`] | folios: a head page and its tails, flags, counts, swap entry |
//! | [`pgtable`] | page tables over any arch format: entries, walk, map, unmap, protect |
//! | [`ptdump`] | a page-table dump for people: levels, flags, sizes, swap/migration entries |
//! | [`early`] | the early frame allocator: first-fit, carving frames from the boot memory map until the buddy allocator takes over |
//! | [`vma`] | the VMAs of one address space: map, unmap, protect, THP advice; split and merge |
//! | [`anon`] | anonymous pages as order-0 folios: made for a fault, unmapped and freed in two steps |
//! | [`thp`] | transparent huge pages: order-9 folios on PMD leaves, the huge zero folio, PMD and folio splits |
//! | [`space`] | whole-space operations over the tables: zap (munmap, MADV_DONTNEED, teardown), protect, fork |
//! | [`gup`] | `get_user_pages`: references and pins on user pages, the anon-exclusive rules |
//! | [`rmap`] | the reverse map: from a folio to every PTE and PMD of its fork family that maps it |
//! | [`rng`] | seeded mixing (SplitMix64) for everything that replays from `seed=`: the failure injector, randomised tests, the stress |
//! | [`debug`] | the consistency checker: walks an address space's tables against its areas and the folio counts |
//! | [`swap`] | swap areas: the mkswap header, slots and their counts, clusters, the swap cache |
//! | [`pageout`] | `MADV_PAGEOUT`'s choice of folios; splitting the large folios a range cuts, never one reclaim holds (seed 002); `MADV_COLD`'s deactivation of the same choice |
//! | [`compaction`] | rebuilding free 2 MiB blocks: the migrate and free scanners, suitability, kcompactd's wake-up, direct compaction for THP faults, counters and measures |
//! | [`lru`] | the anonymous LRU lists (active, inactive) that reclaim scans for folios to swap out |
//! | [`unmap`] | `try_to_unmap`: every mapping of a folio becomes a target's entry (swap, migration), wholly or not at all |
//! | [`migrate`] | folio migration: unmap to migration entries, freeze, copy, move the metadata and swap-cache slots, restore; split-then-migrate for a huge folio with no 2 MiB destination |
//! | [`move_pages`] | what `move_pages(2)` says of one page: its node, or why it is not moved (absent, unmapped, shared, being migrated) |
//! | [`reclaim`] | the shrink step: which isolated folio is skipped, kept, activated, split, written, freed; the LRU scan; `MADV_PAGEOUT`'s hand-over |
//! | [`swapoff`] | swapoff's walk: every entry of an area brought back, the cache emptied, the area checked empty |
//! | [`bugs`] | the bug-replay switches (`bug=<name>`): each puts one historical mistake back, off by default |
//! | `testkit` | the host tests' kit (feature `sim`): simulated frames and swap, worlds of address spaces, proptest strategies, the shuttle set-up |
//! | `sync` | the page descriptor's atomics from one place: `core`'s, or shuttle's under the `shuttle` feature (host race tests), and `Lock`, the mutex that is shuttle's there too |
//!
//! ## Locks
//!
//! The order of every lock in the kernel, `mm`'s among them, is written
//! once, in the book's chapter "Locks and their order"
//! (`docs/src/locking.md`); each module's doc says which of them protect
//! its data. `mm` knows no interrupts: the kernel takes `mm`'s spin locks
//! with interrupts disabled on its CPU (`mm::sync::set_irq_hooks`).
//!
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
pub mod compaction;
pub mod debug;
pub mod early;
pub mod fail_alloc;
pub mod fault;
pub mod folio;
pub mod frame;
pub mod gup;
pub mod lru;
pub mod memmap;
pub mod migrate;
pub mod move_pages;
pub mod numa;
pub mod page;
pub mod pageout;
pub mod pgtable;
pub mod ptdump;
pub mod reclaim;
pub mod rmap;
pub mod rng;
pub mod space;
pub mod swap;
pub mod swapoff;
pub mod sync;
#[cfg(feature = "sim")]
pub mod testkit;
pub mod thp;
pub mod unmap;
pub mod vma;

pub use addr::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};
