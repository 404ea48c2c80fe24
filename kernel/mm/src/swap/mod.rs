//! Swap areas: where anonymous pages go when memory is short.
//!
//! A swap area is a disk (or a part of one) cut into 4 KiB pages. This
//! module holds its data structures; moving pages in and out is built on
//! top of them elsewhere.
//!
//! ## The pieces
//!
//! - **The header** ([`header`]): page 0, in the format of Linux `mkswap`
//!   version 1: the magic `SWAPSPACE2`, the last page, a list of bad pages,
//!   a uuid and a label. [`header::parse`] checks it at swapon and refuses a
//!   bad one with a message a user can act on; [`header::format`] makes one.
//! - **Slots** ([`area`]): each page of the area is a *slot*, named by a
//!   [`SwapEntry`](crate::pgtable::format::SwapEntry) `(type, offset)` whose
//!   offset is the page number on the device. Page 0 and the bad pages are
//!   never slots anyone gets.
//! - **Swap counts**: a slot's count is the number of page-table entries,
//!   in any address space, that hold its swap entry (0..=0x3e). Fork
//!   raises it ([`area::SwapArea::dup`]), unmapping or swap-in lowers it
//!   ([`area::SwapArea::free_ref`]).
//! - **HAS_CACHE**: a flag beside the count saying that a folio for the
//!   slot is in the swap cache, or is being read into it. Whoever sets it
//!   owns the slot's cache position: swap-out gets it with a new slot
//!   ([`area::SwapArea::alloc`]), swap-in takes it with
//!   [`area::SwapArea::claim_cache`] before reading. A slot is free exactly
//!   when its count is 0 and HAS_CACHE is clear, so a slot someone is
//!   reading can never be freed and reused under them (the ABA of seed 002).
//! - **Clusters**: slots are handed out from clusters of 512 (one PMD of
//!   pages), each serving one folio order, so a large folio gets naturally
//!   aligned, contiguous slots and can be written and read in one piece.
//! - **The swap cache**: slot → folio, for folios being written out, read
//!   in, or still in memory while their slots hold a copy. A large folio
//!   covers `nr` consecutive slots; page `i` of it is slot `folio.swap + i`.
//!
//! Everything of one area is behind that area's one lock (see [`area`]).
//!
//! ## Built on top, in other modules
//!
//! - the table of swap areas (swapon/swapoff by type, pinning an area
//!   against swapoff during a fault) and the device I/O: the kernel;
//! - swap-out: add a folio to the swap cache ([`cache::add_to_swap`]),
//!   replace its page-table entries by swap entries with the exclusive bit
//!   ([`crate::unmap`]), write it, free it ([`crate::reclaim`]);
//! - swap-in: the fault path of mm-reference §5 ([`swapin`]: look up the
//!   cache, claim, read, recheck the entry, map, free the entry, release
//!   the claim);
//! - swapoff: stop allocation, bring every used slot back in, drop the
//!   cache ([`crate::swapoff`]).

pub mod area;
pub mod cache;
pub mod header;
pub mod swapin;
pub mod unmap;
