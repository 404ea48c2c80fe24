//! Unmapping a folio to swap: [`crate::unmap::try_to_unmap`] with the
//! swap target, under the name swap-out's callers have used. The protocol,
//! its invariants and locks are [`crate::unmap`]'s.

use super::area::SwapArea;
use crate::folio::Folio;
use crate::page::Memmap;
use crate::pgtable::{PageTable, PageTableFormat, TableMemory, TlbHooks};
use crate::unmap::{try_to_unmap, Target};

pub use crate::unmap::{UnmapError, Unmapped};

/// [`try_to_unmap`] of `folio`, which is in `area`'s swap cache, to swap
/// entries ([`Target::Swap`]); the preconditions are that function's.
pub fn unmap_to_swap<F: PageTableFormat>(
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    hooks: &impl TlbHooks,
    memmap: &Memmap,
    folio: &Folio<'_>,
    area: &SwapArea,
) -> Result<Unmapped, UnmapError> {
    try_to_unmap(tables, mem, hooks, memmap, folio, Target::Swap { area })
}
