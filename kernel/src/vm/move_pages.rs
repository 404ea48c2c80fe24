//! Moving the pages of a range to a NUMA node, and asking where they are:
//! [`AddressSpace::move_pages`] and [`AddressSpace::query_pages`], the
//! kernel side of Linux's `move_pages(2)` (and so of `migrate_pages(2)`,
//! which is `move_pages` over everything a process maps).
//!
//! ## The protocol
//!
//! The arguments are user input and are checked first, each refusal a
//! [`MovePagesError`] that names what was wrong: the range must be page
//! aligned, not empty, inside the user half and at most
//! [`MAX_MOVE_PAGES`] pages; the node must exist and hold memory.
//!
//! Then the range is looked at one 2 MiB chunk at a time under the
//! space's lock (so the lock is never held for the whole range), and each
//! page gets a [`PageStatus`], as Linux's `status` array says it (the
//! decision is `mm::move_pages::look_at`, host-tested; the last row's
//! outcome is this module's):
//!
//! | the page | query | move to `node` |
//! | --- | --- | --- |
//! | no area covers it | `NoMapping` (`-EFAULT`) | the same |
//! | the huge zero folio maps it (Linux: the zero page) | `NoMapping` (`-EFAULT`) | the same |
//! | not present (never touched, or in swap) | `NotPresent` (`-ENOENT`) | the same |
//! | present on node `n` | `Node(n)` | `Node(node)` when `n == node` (left alone) |
//! | present elsewhere, mapped more than once (a fork relative maps it too) | `Node(n)` | `Shared` (`-EACCES`: Linux asks for `MPOL_MF_MOVE_ALL` to move those) |
//! | present elsewhere, mapped once | `Node(n)` | migrated: `Node(node)`, or `Busy` (`-EBUSY`: pinned, referenced by someone else, under writeback) or `NoMemory` (`-ENOMEM`: the node had no page) when it stayed |
//!
//! A page whose entry is a migration entry (someone else is moving its
//! folio) is waited for ([`crate::vm::migrate::wait`], as a fault waits)
//! and looked at again. "Mapped more than once" counts the page's PTE
//! mappings and its THP's PMD mappings in every space. A THP only partly
//! inside the range moves whole (as in Linux, which isolates the whole
//! compound page).
//!
//! Moving: the folios to move are gathered (each once, with a reference
//! taken under the lock), the lock is dropped, and each is migrated with
//! [`Dest::Node`] ([`crate::vm::migrate::migrate_folio`]): strict
//! allocation on the node; a THP that finds no free 2 MiB block there is
//! split and moved page by page. Afterwards every page that was to move
//! is looked at again under the lock and reports where it is now: the
//! node, or why it is still elsewhere. So the statuses are what is true
//! when the call returns (unless something else moved the page since).
//!
//! ## Locks
//!
//! The space's lock while looking (a chunk at a time); none while
//! migrating (migration takes the folio lock, then the family's locks:
//! [`crate::vm::migrate`]).

use crate::memory;
use crate::memory::paging::KernelTables;
use crate::vm::migrate::{migrate_folio, Dest};
use crate::vm::space::{AddressSpace, USER_END, USER_START};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use mm::folio::Folio;
use mm::migrate::MigrateError;
use mm::move_pages::PageLook;
pub use mm::move_pages::PageStatus;
use mm::numa::NodeId;
use mm::thp::HPAGE_NR;
use mm::{Pfn, VirtAddr, PAGE_SIZE};

/// The most pages one call looks at (4 GiB): bounds the status array.
pub const MAX_MOVE_PAGES: u64 = 1 << 20;
/// Pages looked at under one hold of the space's lock.
const CHUNK_PAGES: u64 = 512;

/// Why a call was refused as a whole. Every one is the caller's mistake
/// except [`MovePagesError::TornDown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovePagesError {
    /// The start or the length is not a multiple of the page size.
    Unaligned { start: VirtAddr, len: u64 },
    /// The length is 0.
    Empty,
    /// The range leaves the user half (or wraps around).
    OutsideUser { start: VirtAddr, len: u64 },
    /// More pages than [`MAX_MOVE_PAGES`].
    TooLong { pages: u64 },
    /// The node does not exist.
    NoSuchNode { node: NodeId, nr_nodes: usize },
    /// The node exists but manages no memory.
    NodeWithoutMemory(NodeId),
    /// The space is being torn down.
    TornDown,
}

impl fmt::Display for MovePagesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MovePagesError::Unaligned { start, len } => {
                write!(f, "move_pages: range {start} + {len:#x} is not page aligned")
            }
            MovePagesError::Empty => write!(f, "move_pages: empty range"),
            MovePagesError::OutsideUser { start, len } => {
                write!(f, "move_pages: range {start} + {len:#x} is not inside the user half")
            }
            MovePagesError::TooLong { pages } => {
                write!(f, "move_pages: {pages} pages, at most {MAX_MOVE_PAGES} in one call")
            }
            MovePagesError::NoSuchNode { node, nr_nodes } => {
                write!(f, "move_pages: no node {node} (the machine has {nr_nodes})")
            }
            MovePagesError::NodeWithoutMemory(node) => write!(f, "move_pages: node {node} has no memory"),
            MovePagesError::TornDown => write!(f, "move_pages: address space torn down"),
        }
    }
}

/// The pages of `[start, start + len)`, checked (module doc).
fn check_range(start: VirtAddr, len: u64) -> Result<u64, MovePagesError> {
    if len == 0 {
        return Err(MovePagesError::Empty);
    }
    if !start.as_u64().is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MovePagesError::Unaligned { start, len });
    }
    let end = start.as_u64().checked_add(len);
    if start.as_u64() < USER_START || end.is_none_or(|end| end > USER_END) {
        return Err(MovePagesError::OutsideUser { start, len });
    }
    let pages = len / PAGE_SIZE;
    if pages > MAX_MOVE_PAGES {
        return Err(MovePagesError::TooLong { pages });
    }
    Ok(pages)
}

/// `node`, checked: it exists and manages memory.
fn check_node(node: NodeId) -> Result<NodeId, MovePagesError> {
    let nr_nodes = memory::nr_nodes();
    if node.index() >= nr_nodes {
        return Err(MovePagesError::NoSuchNode { node, nr_nodes });
    }
    if memory::frame_allocator().managed_pages_on(node) == 0 {
        return Err(MovePagesError::NodeWithoutMemory(node));
    }
    Ok(node)
}

impl AddressSpace {
    /// Where each page of `[start, start + len)` is: its node, or why it
    /// has none (`move_pages` with no nodes: the module doc).
    pub fn query_pages(
        self: &Arc<Self>,
        start: VirtAddr,
        len: u64,
    ) -> Result<Vec<PageStatus>, MovePagesError> {
        let pages = check_range(start, len)?;
        let mut status = Vec::with_capacity(pages as usize);
        self.look(start, pages, None, &mut |_, seen| {
            status.push(match seen {
                PageLook::Done(s) => s,
                // Not asked to move: `look` only answers `Move` with a target.
                PageLook::Move(_) | PageLook::Migrating => PageStatus::Busy,
            })
        })?;
        Ok(status)
    }

    /// Moves the pages of `[start, start + len)` to `node` and says where
    /// each one is afterwards (`move_pages(2)`: the module doc). Pages
    /// already on `node` stay; pages shared with another space are not
    /// moved (`Shared`). Task context, interrupts on, no lock held.
    pub fn move_pages(
        self: &Arc<Self>,
        start: VirtAddr,
        len: u64,
        node: NodeId,
    ) -> Result<Vec<PageStatus>, MovePagesError> {
        let pages = check_range(start, len)?;
        let node = check_node(node)?;
        let memmap = memory::frame_allocator().memmap();
        let mut status = Vec::with_capacity(pages as usize);
        // The folios to move, each once, by head; each with a reference.
        let mut folios: BTreeMap<Pfn, Folio<'static>> = BTreeMap::new();
        let mut to_move = Vec::new();
        self.look(start, pages, Some(node), &mut |p, seen| match seen {
            PageLook::Done(s) => status.push(s),
            PageLook::Move(head) => {
                folios.entry(head).or_insert_with(|| {
                    let folio =
                        mm::folio::folio_of(memmap, head).expect("move_pages: a mapped head is a folio");
                    // The mapping's reference keeps it alive until this one
                    // is taken: the space's lock is held.
                    folio.get();
                    folio
                });
                to_move.push(p);
                status.push(PageStatus::Busy);
            }
            PageLook::Migrating => unreachable!("move_pages: `look` waits out migration entries"),
        })?;
        // Migrate, without the lock; remember why a folio stayed.
        let mut refused: BTreeMap<Pfn, MigrateError> = BTreeMap::new();
        for (head, folio) in folios {
            if let (_, Some(e)) = migrate_folio(folio, Dest::Node(node)) {
                refused.insert(head, e);
            }
        }
        // Where each page that was to move is now.
        let why = |e: Option<&MigrateError>| match e {
            Some(MigrateError::NoMemory) => PageStatus::NoMemory,
            _ => PageStatus::Busy,
        };
        let mut i = 0;
        while i < to_move.len() {
            let guard = self.lock();
            let inner = guard.as_ref().ok_or(MovePagesError::TornDown)?;
            for &p in to_move[i..].iter().take(CHUNK_PAGES as usize) {
                let va = VirtAddr::new(start.as_u64() + p * PAGE_SIZE);
                status[p as usize] = match look_at(inner, va, None) {
                    PageLook::Done(PageStatus::Node(n)) if n == node => PageStatus::Node(n),
                    // Still elsewhere: why its folio (or the piece of it
                    // that holds this page) stayed, by its old head.
                    PageLook::Done(PageStatus::Node(_)) => {
                        let pfn = page_pfn_of(inner, va);
                        let head = refused.range(..=pfn).next_back();
                        why(head.filter(|(h, _)| pfn.since(**h) < HPAGE_NR as u64).map(|(_, e)| e))
                    }
                    PageLook::Done(s) => s,
                    PageLook::Move(_) | PageLook::Migrating => PageStatus::Busy,
                };
            }
            i += CHUNK_PAGES as usize;
        }
        Ok(status)
    }

    /// Calls `f(page number, what was seen)` for each of the `pages` pages
    /// from `start`, in order, one chunk per hold of the lock; a chunk
    /// with a migration entry is looked at again after the migration.
    fn look(
        self: &Arc<Self>,
        start: VirtAddr,
        pages: u64,
        target: Option<NodeId>,
        f: &mut dyn FnMut(u64, PageLook),
    ) -> Result<(), MovePagesError> {
        let mut p = 0;
        while p < pages {
            // To the next 2 MiB boundary, so a THP is looked at under one hold.
            let va = start.as_u64() + p * PAGE_SIZE;
            let chunk = (CHUNK_PAGES - (va / PAGE_SIZE) % CHUNK_PAGES).min(pages - p);
            let mut seen = Vec::with_capacity(chunk as usize);
            let waiting = {
                let guard = self.lock();
                let inner = guard.as_ref().ok_or(MovePagesError::TornDown)?;
                let mut waiting = None;
                for q in p..p + chunk {
                    let va = VirtAddr::new(start.as_u64() + q * PAGE_SIZE);
                    match look_at(inner, va, target) {
                        PageLook::Migrating => {
                            waiting = Some(va);
                            break;
                        }
                        // `f` may take a reference: under the lock.
                        s => seen.push(s),
                    }
                }
                if waiting.is_none() {
                    for (i, s) in seen.into_iter().enumerate() {
                        f(p + i as u64, s);
                    }
                }
                waiting
            };
            match waiting {
                Some(va) => crate::vm::migrate::wait(self, va),
                None => p += chunk,
            }
        }
        Ok(())
    }
}

/// The PFN of the page `va` maps (present), or PFN 0.
fn page_pfn_of(inner: &crate::vm::space::Inner, va: VirtAddr) -> Pfn {
    inner.table.translate(&KernelTables, va).map_or(Pfn::default(), |pa| pa.pfn())
}

/// What the page at `va` is (`mm::move_pages::look_at` over this space,
/// the frames' nodes as the allocator says), under the space's lock;
/// `target` is the node to move to (`None`: a query).
fn look_at(inner: &crate::vm::space::Inner, va: VirtAddr, target: Option<NodeId>) -> PageLook {
    let memmap = memory::frame_allocator().memmap();
    let node_of = |pfn: Pfn| memory::node_of_pfn(pfn).unwrap_or(NodeId::ZERO);
    mm::move_pages::look_at(&inner.table, &inner.vmas, &KernelTables, memmap, va, target, &node_of)
}
