//! Page tables: the generic walk, map, unmap and protect over any
//! [`PageTableFormat`].
//!
//! | module | what |
//! | --- | --- |
//! | [`format`] | the entry model and the [`PageTableFormat`] trait each arch implements |
//! | [`memory`] | [`TableMemory`] (table frames, entry access), [`TlbHooks`], the `#[must_use]` [`Flush`] |
//! | [`table`] | [`PageTable`]: walk, map, unmap, protect, break-before-make remap, PMD split, teardown |
//! | `sim` | simulated hardware for host tests (feature `sim`) |
//!
//! The arch formats live in `arch/x86_64/src/pgtable.rs` and
//! `arch/aarch64/src/pgtable.rs`; `ptdump` prints trees for people.

pub mod format;
pub mod memory;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod table;

pub use format::{
    Decoded, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageSize, PageTableFormat, Prot,
    SwapEntry, SwapType,
};
pub use memory::{Flush, TableMemory, TlbHooks};
pub use table::{EntryCopy, EntrySlot, PageTable, PgError};
