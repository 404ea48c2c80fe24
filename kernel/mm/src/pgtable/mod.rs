//! Page tables: the generic walk, map, unmap and protect over any
//! [`PageTableFormat`].
//!
//! (Generic code: being written; see `format` for the entry model.)

pub mod format;
pub mod memory;
#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use format::{
    Decoded, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageSize, PageTableFormat, Prot,
    SwapEntry,
};
pub use memory::{Flush, TableMemory, TlbHooks};
