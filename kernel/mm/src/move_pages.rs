//! What `move_pages(2)` says of one page: the decision behind the kernel's
//! `AddressSpace::move_pages` and `query_pages` (`kernel/src/vm/move_pages.rs`),
//! taken here so that it is host-tested over both formats.
//!
//! [`look_at`] is asked, under the lock of the space that owns `table` and
//! `vmas`, about one page, and answers with a [`PageLook`]:
//!
//! | the page | query (`target` `None`) | move to `target` |
//! | --- | --- | --- |
//! | no area covers it | `NoMapping` (`-EFAULT`) | the same |
//! | mapped by the huge zero folio (Linux: the zero page) | `NoMapping` (`-EFAULT`) | the same |
//! | a migration entry | [`PageLook::Migrating`]: wait, look again | the same |
//! | not present (never touched, in swap) | `NotPresent` (`-ENOENT`) | the same |
//! | present on node `n` | `Node(n)` | `Node(n)` when `n` is the target |
//! | present elsewhere, mapped more than once | `Node(n)` | `Shared` (`-EACCES`) |
//! | present elsewhere, mapped once | `Node(n)` | [`PageLook::Move`] with the folio's head |
//!
//! "Mapped more than once" counts the page's PTE mappings and its folio's
//! PMD mappings, in every space (Linux's `page_mapcount > 1`, which moves
//! such pages only with the privileged `MPOL_MF_MOVE_ALL`).
//!
//! The statuses a page has after the caller tried to move it ([`PageStatus::Busy`],
//! [`PageStatus::NoMemory`]) are the caller's to give: they depend on how
//! the migration went.
//!
//! Locks: the caller holds the space's lock (the table and areas stay as
//! they are while it looks); nothing else is taken.

use crate::folio::folio_of;
use crate::numa::NodeId;
use crate::page::Memmap;
use crate::pgtable::{Decoded, NonPresent, PageTable, PageTableFormat, TableMemory};
use crate::vma::VmaSet;
use crate::{Pfn, VirtAddr, PAGE_SIZE};

/// Where one page is, or why it is not where it was asked to go; as
/// Linux's `move_pages` status ([`PageStatus::errno`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    /// Present, on this node.
    Node(NodeId),
    /// Inside an area but not present: never touched, or in swap (`-ENOENT`).
    NotPresent,
    /// No area covers it, or the huge zero folio maps it (`-EFAULT`).
    NoMapping,
    /// Could not be moved: pinned, referenced by someone else, under
    /// writeback, or being moved by someone else (`-EBUSY`).
    Busy,
    /// Mapped more than once (a fork relative maps it too), so not moved
    /// (`-EACCES`; Linux's `MPOL_MF_MOVE_ALL` is not offered).
    Shared,
    /// The node had no free page for it (`-ENOMEM`).
    NoMemory,
}

impl PageStatus {
    /// Linux's `status` value: the node number, or a negative errno.
    pub fn errno(self) -> i32 {
        match self {
            PageStatus::Node(n) => n.index() as i32,
            PageStatus::NotPresent => -2, // ENOENT
            PageStatus::NoMemory => -12,  // ENOMEM
            PageStatus::Shared => -13,    // EACCES
            PageStatus::NoMapping => -14, // EFAULT
            PageStatus::Busy => -16,      // EBUSY
        }
    }
}

/// What [`look_at`] found (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLook {
    /// The page's status; nothing to move.
    Done(PageStatus),
    /// Present on another node than the target and mapped once: to move.
    /// The head PFN of its folio.
    Move(Pfn),
    /// A migration entry: someone is moving its folio. Wait until it is
    /// over (as a fault does), then look again.
    Migrating,
}

/// What `move_pages` says of the page at `va` (module doc): `target` is
/// the node to move to, `None` for a query; `node_of` says which node a
/// frame is on. The caller holds the space's lock.
pub fn look_at<F: PageTableFormat>(
    table: &PageTable<F>,
    vmas: &VmaSet,
    mem: &impl TableMemory,
    memmap: &Memmap,
    va: VirtAddr,
    target: Option<NodeId>,
    node_of: &dyn Fn(Pfn) -> NodeId,
) -> PageLook {
    if vmas.find(va).is_none() {
        return PageLook::Done(PageStatus::NoMapping);
    }
    let leaf = match table.lookup(mem, va).1 {
        Decoded::Leaf(leaf) => leaf,
        Decoded::NonPresent(NonPresent::Migration(_)) => return PageLook::Migrating,
        _ => return PageLook::Done(PageStatus::NotPresent),
    };
    if crate::thp::is_huge_zero(memmap, &leaf) {
        return PageLook::Done(PageStatus::NoMapping);
    }
    let pfn = leaf.frame.pfn().plus((va.as_u64() & (leaf.size.bytes() - 1)) / PAGE_SIZE);
    let Some(folio) = folio_of(memmap, pfn).filter(|f| f.anon_handle().is_some()) else {
        return PageLook::Done(PageStatus::NoMapping);
    };
    let here = node_of(pfn);
    match target {
        None => PageLook::Done(PageStatus::Node(here)),
        Some(node) if node == here => PageLook::Done(PageStatus::Node(here)),
        Some(_) if folio.entire_mapcount() + folio.page_mapcount(folio.page_index_of(pfn)) > 1 => {
            PageLook::Done(PageStatus::Shared)
        }
        Some(_) => PageLook::Move(folio.pfn()),
    }
}
