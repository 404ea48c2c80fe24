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
//! ## The modules
//!
//! | module | what |
//! | --- | --- |
//! | [`header`] | the mkswap version-1 header: parse (with a message for every refusal) and format |
//! | [`area`] | one swap area: slots, their counts and HAS_CACHE, clusters and runs, the swap cache map |
//! | [`cache`] | the folio side of the swap cache: adding a folio, deleting it, the folio's swap entry |
//! | [`swapin`] | the swap-in of a fault: cache lookup, claim, read, recheck, map (mm-reference section 5) |
//!
//! Built on top, in other modules: swap-out ([`cache::add_to_swap`],
//! [`crate::unmap`], [`crate::reclaim`]), swapoff ([`crate::swapoff`]), and
//! in the kernel the table of areas, the device I/O and the fault entry
//! (`kernel/src/vm/swap.rs`, `kernel/src/vm/reclaim.rs`,
//! `kernel/src/vm/fault.rs`).

pub mod area;
pub mod cache;
pub mod header;
pub mod swapin;
