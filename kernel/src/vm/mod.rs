//! Virtual memory of tasks: the kernel side of the `mm` crate's policy.
//! Here is what needs hardware, tasks and locks; the decisions are `mm`'s.
//!
//! | module | what |
//! | --- | --- |
//! | [`folios`] | anonymous folios of the running kernel: allocated onto the LRU, freed off it, the huge zero folio |
//! | [`space`] | address spaces: areas, page tables, fork families |
//! | [`fault`] | the fault entry of tasks: after `mm::fault` decided (swap-in, direct reclaim, ending the task) |
//! | [`ptlock`] | split page-table locks: one PTE table's lock, for the faults that hold their space's lock shared |
//! | [`tlb`] | TLB shootdown: no CPU keeps a stale translation after a change returns |
//! | [`uaccess`] | the one way kernel code touches user memory |
//! | [`swap`] | swap areas on virtio-blk disks (swapon at boot, swapoff over `mm::swapoff`), swap I/O, the swap-in half of a fault |
//! | [`reclaim`] | the LRU lists, kswapd, direct reclaim, `MADV_PAGEOUT`; the host of `mm::reclaim`'s shrink step |
//! | [`migrate`] | folio migration: the host of `mm::migrate`, destinations, counters, `AddressSpace::migrate_range`, the wait of a fault on a migration entry |
//! | [`move_pages`] | moving a range's pages to a NUMA node, and asking where they are (`move_pages(2)`) |
//! | [`thp_policy`] | the system-wide THP policy: the `enabled` switch and `defrag`, read by every fault |
//! | [`compaction`] | compaction: the host of `mm::compaction`, a zone per node, kcompactd, direct compaction for THP faults, the counters |
//!
//! Below: [`crate::drivers`] (swap I/O), [`crate::task`], [`crate::memory`].

pub mod compaction;
pub mod fault;
pub mod folios;
pub mod migrate;
pub mod move_pages;
pub mod ptlock;
pub mod reclaim;
pub mod space;
pub mod swap;
pub mod thp_policy;
pub mod tlb;
pub mod uaccess;
