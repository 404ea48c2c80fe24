//! The reverse map of anonymous folios: from a folio to every PTE and PMD
//! that maps it, which swap-out and migration need to unmap a folio they
//! found on a list rather than in a page table.
//!
//! ## How a folio is found again
//!
//! An anonymous folio records *where* it belongs, not every mapping:
//! - its **mapping** is the anon handle ([`crate::anon::anon_handle`]) of
//!   the space that made it;
//! - its **index** is the page number (`va >> 12`) of its first page there.
//!
//! Neither changes while the folio lives (no mremap here), and fork copies
//! an area at the same addresses, so every space that may map the folio is
//! a member of the made-it space's fork *family* (the spaces forked from
//! one another, which the kernel keeps together with the handles of all
//! members that ever were), and in each of them page `i` can only be at
//! `(index + i) << 12`. [`rmap_walk`] therefore looks at one small range in
//! each family member: O(spaces × pages of the folio), never a whole table.
//! This plays the part of Linux's anon_vma chains for a kernel without
//! mremap or file mappings.
//!
//! ## Locks
//!
//! The caller holds the lock of every space it passes (the kernel takes
//! the family's locks in root order) and a reference on the folio, so the
//! mappings found stay true until it lets go.

use crate::addr::VirtAddr;
use crate::folio::Folio;
use crate::pgtable::{Decoded, Leaf, Level, PageTable, PageTableFormat, TableMemory};

/// One mapping [`rmap_walk`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Which of the spaces passed in (its position in the slice).
    pub space: usize,
    /// The start of the range the entry maps.
    pub va: VirtAddr,
    /// `Pte` for one page, `Pmd` for the whole huge folio.
    pub level: Level,
    /// The page of the folio the entry maps first (0 for a PMD).
    pub page: usize,
    pub leaf: Leaf,
}

/// Calls `f` for every present leaf in `tables` that maps a page of the
/// anonymous folio `folio`, in space order then address order; returns how
/// many there were. A PMD mapping is reported once.
pub fn rmap_walk<F: PageTableFormat>(
    folio: &Folio<'_>,
    tables: &[&PageTable<F>],
    mem: &impl TableMemory,
    f: &mut dyn FnMut(Mapping),
) -> usize {
    let nr = folio.nr_pages() as u64;
    let start = VirtAddr::new(folio.index() << 12);
    let end = VirtAddr::new((folio.index() + nr) << 12);
    let mut found = 0;
    for (space, table) in tables.iter().enumerate() {
        table.visit(mem, start, end, &mut |va, level, entry, _| {
            let Decoded::Leaf(leaf) = entry else { return };
            let pfn = leaf.frame.pfn();
            if !folio.contains_pfn(pfn) {
                return;
            }
            let page = folio.page_index_of(pfn);
            // The page must sit where the index says; a folio page mapped
            // elsewhere would be a broken invariant, which the checker
            // reports (`crate::debug`), not a mapping of this folio's.
            if va.as_u64() >> 12 != folio.index() + page as u64 {
                return;
            }
            found += 1;
            f(Mapping { space, va, level, page, leaf });
        });
    }
    found
}
