//! NUMA nodes as the firmware describes them: which node each range of RAM
//! and each CPU belongs to.
//!
//! The boot paths fill a [`NumaMap`] from the ACPI SRAT (x86_64,
//! `arch_x86_64::srat`) or from the `numa-node-id` properties of the device
//! tree (AArch64, `arch_aarch64::dtmem`); the kernel splits its usable RAM
//! by it into the frame allocator's per-node pools ([`crate::frame`]) and
//! maps each CPU to its node. An empty map means the firmware said nothing
//! (or something the boot path refused): one node, node 0, holds every
//! frame and every CPU.
//!
//! ## Node ids
//!
//! Firmware names nodes by numbers of its own (SRAT proximity domains, any
//! `u32`; device-tree `numa-node-id`s). [`DomainIds`] turns the ones a table
//! uses into dense [`NodeId`]s `0..n`, in increasing order of the firmware's
//! number, so node 0 is the lowest domain; at most [`MAX_NODES`].
//!
//! ## Invariants
//!
//! A [`NumaMap`]'s memory ranges never overlap (a range claimed by two
//! nodes is refused), and a CPU (hardware id: local APIC id, MPIDR
//! affinity) belongs to one node. RAM no range covers, and CPUs not listed,
//! belong to node 0 ([`NumaMap::node_of_addr_or_zero`]).
//!
//! Plain data, no locks: built once by the boot path, read afterwards.

use crate::addr::PhysAddr;
use crate::memmap::PhysRange;
use core::fmt;

/// The most nodes the kernel keeps (each has its own free-page pool).
pub const MAX_NODES: usize = 8;
/// The most memory ranges a [`NumaMap`] holds.
pub const MAX_NUMA_RANGES: usize = 32;
/// The most CPUs a [`NumaMap`] holds.
pub const MAX_NUMA_CPUS: usize = 64;

/// A NUMA node, `0..MAX_NODES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(u8);

impl NodeId {
    /// Node 0: the only node without NUMA information.
    pub const ZERO: NodeId = NodeId(0);

    /// Node `index`, if below [`MAX_NODES`].
    pub const fn new(index: usize) -> Option<NodeId> {
        if index < MAX_NODES {
            Some(NodeId(index as u8))
        } else {
            None
        }
    }

    /// The node's number, `0..MAX_NODES`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every node id below `nr_nodes` (at most [`MAX_NODES`]).
    pub fn all(nr_nodes: usize) -> impl Iterator<Item = NodeId> {
        (0..nr_nodes.min(MAX_NODES)).map(|i| NodeId(i as u8))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a firmware's NUMA description was refused (the firmware's fault;
/// the boot path falls back to one node and says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumaError {
    /// More distinct domains than [`MAX_NODES`]; `domain` is the first one
    /// that did not fit.
    TooManyNodes { domain: u32 },
    /// A domain that was not registered with [`DomainIds::insert`].
    UnknownDomain { domain: u32 },
    /// More memory ranges than [`MAX_NUMA_RANGES`].
    TooManyRanges,
    /// More CPUs than [`MAX_NUMA_CPUS`].
    TooManyCpus,
    /// A memory range overlaps one already given (to any node), or wraps.
    Overlap { start: u64, end: u64 },
    /// A CPU listed twice with different nodes.
    CpuTwice { hw_id: u64 },
}

impl fmt::Display for NumaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyNodes { domain } => {
                write!(f, "more than {MAX_NODES} nodes (domain {domain} is one too many)")
            }
            Self::UnknownDomain { domain } => write!(f, "domain {domain} was never declared"),
            Self::TooManyRanges => write!(f, "more than {MAX_NUMA_RANGES} memory ranges"),
            Self::TooManyCpus => write!(f, "more than {MAX_NUMA_CPUS} CPUs"),
            Self::Overlap { start, end } => {
                write!(f, "memory {start:#x}..{end:#x} overlaps another range or wraps")
            }
            Self::CpuTwice { hw_id } => write!(f, "CPU {hw_id:#x} is given two nodes"),
        }
    }
}

/// The firmware's domain numbers, sorted, each standing for the node of
/// its position (module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct DomainIds {
    domains: [u32; MAX_NODES],
    len: usize,
}

impl DomainIds {
    /// No domain yet.
    pub const fn new() -> DomainIds {
        DomainIds { domains: [0; MAX_NODES], len: 0 }
    }

    /// Declares `domain` (again is fine).
    pub fn insert(&mut self, domain: u32) -> Result<(), NumaError> {
        let known = &self.domains[..self.len];
        let Err(at) = known.binary_search(&domain) else { return Ok(()) };
        if self.len == MAX_NODES {
            return Err(NumaError::TooManyNodes { domain });
        }
        self.domains.copy_within(at..self.len, at + 1);
        self.domains[at] = domain;
        self.len += 1;
        Ok(())
    }

    /// The node standing for `domain`.
    pub fn node(&self, domain: u32) -> Result<NodeId, NumaError> {
        let at = self.domains[..self.len].binary_search(&domain);
        at.map(|i| NodeId(i as u8)).map_err(|_| NumaError::UnknownDomain { domain })
    }

    /// Declared domains.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before any [`DomainIds::insert`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Which node each memory range and each CPU belongs to (module doc).
#[derive(Clone, Copy)]
pub struct NumaMap {
    memory: [(PhysRange, NodeId); MAX_NUMA_RANGES],
    nr_memory: usize,
    cpus: [(u64, NodeId); MAX_NUMA_CPUS],
    nr_cpus: usize,
    /// Nodes declared (with or without memory or CPUs).
    nr_nodes: usize,
}

impl Default for NumaMap {
    fn default() -> Self {
        Self::new()
    }
}

impl NumaMap {
    /// No information: one node.
    pub const fn new() -> NumaMap {
        NumaMap {
            memory: [(PhysRange::new(0, 0), NodeId::ZERO); MAX_NUMA_RANGES],
            nr_memory: 0,
            cpus: [(0, NodeId::ZERO); MAX_NUMA_CPUS],
            nr_cpus: 0,
            nr_nodes: 0,
        }
    }

    /// Declares nodes `0..nr` (the firmware's domains, [`DomainIds::len`]),
    /// so a node without memory or CPUs still counts.
    pub fn set_nr_nodes(&mut self, nr: usize) {
        self.nr_nodes = self.nr_nodes.max(nr.min(MAX_NODES));
    }

    /// Says that `range` is RAM of `node`. Empty ranges are ignored.
    pub fn add_memory(&mut self, node: NodeId, range: PhysRange) -> Result<(), NumaError> {
        let (start, end) = (range.start.as_u64(), range.end.as_u64());
        if end < start {
            return Err(NumaError::Overlap { start, end });
        }
        if start == end {
            return Ok(());
        }
        let overlaps = self.memory().iter().any(|(r, _)| r.start.as_u64() < end && start < r.end.as_u64());
        if overlaps {
            return Err(NumaError::Overlap { start, end });
        }
        if self.nr_memory == MAX_NUMA_RANGES {
            return Err(NumaError::TooManyRanges);
        }
        let at = self.memory().partition_point(|(r, _)| r.start.as_u64() < start);
        self.memory.copy_within(at..self.nr_memory, at + 1);
        self.memory[at] = (range, node);
        self.nr_memory += 1;
        self.set_nr_nodes(node.index() + 1);
        Ok(())
    }

    /// Says that the CPU with hardware id `hw_id` sits on `node`.
    pub fn add_cpu(&mut self, node: NodeId, hw_id: u64) -> Result<(), NumaError> {
        match self.node_of_cpu(hw_id) {
            Some(n) if n == node => return Ok(()),
            Some(_) => return Err(NumaError::CpuTwice { hw_id }),
            None => {}
        }
        if self.nr_cpus == MAX_NUMA_CPUS {
            return Err(NumaError::TooManyCpus);
        }
        self.cpus[self.nr_cpus] = (hw_id, node);
        self.nr_cpus += 1;
        self.set_nr_nodes(node.index() + 1);
        Ok(())
    }

    /// True when the firmware gave no memory affinity: one node.
    pub fn is_empty(&self) -> bool {
        self.nr_memory == 0
    }

    /// The number of nodes: those declared, at least 1.
    pub fn nr_nodes(&self) -> usize {
        if self.is_empty() {
            1
        } else {
            self.nr_nodes.max(1)
        }
    }

    /// The memory ranges, sorted by address, with their nodes.
    pub fn memory(&self) -> &[(PhysRange, NodeId)] {
        &self.memory[..self.nr_memory]
    }

    /// The CPUs (hardware ids) with their nodes, in the order given.
    pub fn cpus(&self) -> &[(u64, NodeId)] {
        &self.cpus[..self.nr_cpus]
    }

    /// The node whose range holds `pa`, if any.
    pub fn node_of_addr(&self, pa: PhysAddr) -> Option<NodeId> {
        self.memory().iter().find(|(r, _)| r.contains(pa)).map(|&(_, n)| n)
    }

    /// The node of `pa`: its range's, else node 0 (module doc).
    pub fn node_of_addr_or_zero(&self, pa: PhysAddr) -> NodeId {
        self.node_of_addr(pa).unwrap_or(NodeId::ZERO)
    }

    /// The node of the CPU with hardware id `hw_id`, if listed.
    pub fn node_of_cpu(&self, hw_id: u64) -> Option<NodeId> {
        self.cpus().iter().find(|&&(id, _)| id == hw_id).map(|&(_, n)| n)
    }

    /// Cuts `range` at the node boundaries and calls `f` for each piece
    /// with its node, in address order; parts no range covers go to node
    /// 0 (with an empty map, all of `range`). Returns the bytes no range
    /// covered (0 with an empty map).
    pub fn split(&self, range: PhysRange, mut f: impl FnMut(PhysRange, NodeId)) -> u64 {
        let (mut at, end) = (range.start.as_u64(), range.end.as_u64());
        if self.is_empty() {
            if at < end {
                f(range, NodeId::ZERO);
            }
            return 0;
        }
        let mut uncovered = 0;
        for &(r, node) in self.memory() {
            let (rs, re) = (r.start.as_u64(), r.end.as_u64());
            if re <= at || rs >= end {
                continue;
            }
            if rs > at {
                f(PhysRange::new(at, rs - at), NodeId::ZERO);
                uncovered += rs - at;
                at = rs;
            }
            let piece_end = re.min(end);
            f(PhysRange::new(at, piece_end - at), node);
            at = piece_end;
        }
        if at < end {
            f(PhysRange::new(at, end - at), NodeId::ZERO);
            uncovered += end - at;
        }
        uncovered
    }
}

impl fmt::Debug for NumaMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumaMap")
            .field("nr_nodes", &self.nr_nodes())
            .field("memory", &self.memory())
            .field("cpus", &self.cpus())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn node(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    #[test]
    fn domains_become_dense_sorted_node_ids() {
        let mut d = DomainIds::new();
        for domain in [7, 3, 7, 100, 3] {
            d.insert(domain).unwrap();
        }
        assert_eq!(d.len(), 3);
        assert_eq!([d.node(3), d.node(7), d.node(100)], [Ok(node(0)), Ok(node(1)), Ok(node(2))]);
        assert_eq!(d.node(4), Err(NumaError::UnknownDomain { domain: 4 }));
        for domain in 200..205 {
            d.insert(domain).unwrap();
        }
        assert_eq!(d.insert(1), Err(NumaError::TooManyNodes { domain: 1 }));
    }

    #[test]
    fn ranges_sort_refuse_overlaps_and_split_usable_ram() {
        let mut m = NumaMap::new();
        assert_eq!(m.nr_nodes(), 1);
        m.add_memory(node(1), PhysRange::new(0x1000_0000, 0x1000_0000)).unwrap();
        m.add_memory(node(0), PhysRange::new(0, 0x1000_0000)).unwrap();
        assert_eq!(
            m.add_memory(node(0), PhysRange::new(0x1800_0000, 0x1000_0000)),
            Err(NumaError::Overlap { start: 0x1800_0000, end: 0x2800_0000 })
        );
        assert_eq!(m.nr_nodes(), 2);
        assert_eq!(m.memory()[0].1, node(0));
        assert_eq!(m.node_of_addr(PhysAddr::new(0x1000_0000)), Some(node(1)));
        assert_eq!(m.node_of_addr(PhysAddr::new(0x2000_0000)), None);
        assert_eq!(m.node_of_addr_or_zero(PhysAddr::new(0x2000_0000)), node(0));
        let mut pieces = Vec::new();
        let uncovered = m.split(PhysRange::new(0x0f00_0000, 0x1200_0000), |r, n| {
            pieces.push((r.start.as_u64(), r.end.as_u64(), n.index()))
        });
        assert_eq!(
            pieces,
            [(0x0f00_0000, 0x1000_0000, 0), (0x1000_0000, 0x2000_0000, 1), (0x2000_0000, 0x2100_0000, 0)]
        );
        assert_eq!(uncovered, 0x100_0000);
    }

    #[test]
    fn cpus_belong_to_one_node() {
        let mut m = NumaMap::new();
        m.add_cpu(node(0), 0).unwrap();
        m.add_cpu(node(2), 5).unwrap();
        m.add_cpu(node(2), 5).unwrap();
        assert_eq!(m.add_cpu(node(1), 5), Err(NumaError::CpuTwice { hw_id: 5 }));
        assert_eq!(m.node_of_cpu(5), Some(node(2)));
        assert_eq!(m.node_of_cpu(1), None);
        // CPUs alone make no NUMA: without memory affinity, one node.
        assert_eq!(m.nr_nodes(), 1);
        m.add_memory(node(0), PhysRange::new(0, 0x1000)).unwrap();
        assert_eq!(m.nr_nodes(), 3);
    }
}
