//! The RAM a device tree describes: its memory nodes, read without the
//! calls of the `fdt` crate that panic, and clipped to what the boot tables
//! map as Normal memory.
//!
//! `fdt`'s `Fdt::memory` panics when the tree has no `/memory` node, its
//! `regions` when that node has no `reg`, and `reg` reads the parent's
//! `#address-cells`/`#size-cells` with `expect`. [`read_ram`] reads the same
//! things by hand:
//! - the root's `#address-cells` (1 or 2, default 2) and `#size-cells` (1 or
//!   2, default 1), each exactly one cell;
//! - every child of the root whose `device_type` is `"memory"` (or, without
//!   a `device_type`, whose name is `memory` or `memory@...`), unless its
//!   `status` says it is not `"okay"`;
//! - each such node's `reg`: (address, size) pairs in those cells, a whole
//!   number of them, none wrapping past the top of the address space.
//!   Entries of size 0 are skipped.
//!
//! Anything else is a bad tree: [`read_ram`] refuses it with a
//! [`DtMemError`] that says what is wrong, and the boot path stops with it.
//!
//! ## Clipping
//!
//! RAM outside [`NORMAL_RAM`] is left out: the boot tables
//! (`boot/aarch64/src/entry.S`) map 0..1 GiB and from 256 GiB on as Device
//! memory, so RAM there would be used with the wrong attributes (or not be
//! reachable through the direct map at all). What is left out comes back
//! in [`Ram::outside`], for the boot path to report.
//!
//! ## NUMA nodes
//!
//! [`read_numa`] reads the `numa-node-id` property (one cell) of every
//! memory node (for all of its `reg` entries, unclipped) and of every
//! `/cpus/cpu@...` node (named by its `reg`, the MPIDR affinity, in
//! `/cpus`'s `#address-cells`), into an `mm::numa::NumaMap`, the node ids
//! made dense in increasing order. A tree where no memory node has one is
//! not NUMA: the map comes back empty. A tree where some memory nodes have
//! one and others not, a property that is not one cell, or nodes that do
//! not add up (overlapping ranges, more than `mm::numa::MAX_NODES`) are
//! refused with a [`DtNumaError`]; the boot path then runs with one node
//! and says why. (`distance-map` is not read: allocation falls back to the
//! other nodes in turn, not by distance.)
//!
//! Plain parsing, no hardware: built and tested on the host. No locks.

use core::fmt;
use core::ops::Range;
use mm::memmap::{MapFull, MemoryMap, PhysRange};
use mm::numa::{DomainIds, NumaError, NumaMap};

/// The physical range the boot tables map as Normal write-back memory
/// (1..256 GiB, `entry.S`'s level-1 blocks); RAM is used only inside it.
pub const NORMAL_RAM: Range<u64> = (1 << 30)..(256 << 30);

/// Why a device tree's RAM could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtMemError {
    /// The tree has no root node.
    NoRoot,
    /// A `#address-cells` or `#size-cells` of the root that is not one
    /// cell, or a count other than 1 or 2.
    BadCells { property: &'static str },
    /// No child of the root is a memory node.
    NoMemoryNode,
    /// A memory node without a `reg`.
    NoReg,
    /// A memory node's `reg` is empty or not a whole number of
    /// (address, size) entries of `entry` bytes.
    BadRegLength { len: usize, entry: usize },
    /// An entry that runs past the top of the physical address space.
    Wraps { base: u64, size: u64 },
    /// More disjoint ranges than a [`MemoryMap`] holds.
    TooManyRanges,
}

impl fmt::Display for DtMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtMemError::NoRoot => write!(f, "the device tree has no root node"),
            DtMemError::BadCells { property } => {
                write!(f, "the root's {property} is not one cell holding 1 or 2")
            }
            DtMemError::NoMemoryNode => write!(f, "the device tree has no memory node"),
            DtMemError::NoReg => write!(f, "a memory node has no reg property"),
            DtMemError::BadRegLength { len, entry } => {
                write!(
                    f,
                    "a memory node's reg is {len} bytes, not a whole number (>= 1) of {entry}-byte entries"
                )
            }
            DtMemError::Wraps { base, size } => {
                write!(
                    f,
                    "a memory node lists {size:#x} bytes at {base:#x}, past the top of the address space"
                )
            }
            DtMemError::TooManyRanges => {
                write!(f, "the memory nodes list more disjoint ranges than the kernel keeps")
            }
        }
    }
}

impl From<MapFull> for DtMemError {
    fn from(_: MapFull) -> Self {
        DtMemError::TooManyRanges
    }
}

/// The RAM a device tree lists.
#[derive(Debug, Clone)]
pub struct Ram {
    /// RAM inside [`NORMAL_RAM`]: what the kernel may use (before its
    /// reservations are taken out).
    pub usable: MemoryMap,
    /// RAM the tree lists outside [`NORMAL_RAM`]: left out.
    pub outside: MemoryMap,
}

/// A `#...-cells` property of the root: exactly one big-endian cell of 1
/// or 2, or `default` when absent.
fn root_cells(
    root: &fdt::node::FdtNode<'_, '_>,
    property: &'static str,
    default: usize,
) -> Result<usize, DtMemError> {
    let Some(prop) = root.property(property) else { return Ok(default) };
    match *prop.value {
        [a, b, c, d] => match u32::from_be_bytes([a, b, c, d]) {
            n @ (1 | 2) => Ok(n as usize),
            _ => Err(DtMemError::BadCells { property }),
        },
        _ => Err(DtMemError::BadCells { property }),
    }
}

/// A number of `bytes.len() / 4` big-endian cells.
fn read_number(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| acc << 8 | b as u64)
}

fn is_memory_node(node: &fdt::node::FdtNode<'_, '_>) -> bool {
    let enabled =
        node.property("status").is_none_or(|s| matches!(s.value, b"okay\0" | b"ok\0" | b"okay" | b"ok"));
    let memory = match node.property("device_type") {
        Some(t) => matches!(t.value, b"memory\0" | b"memory"),
        None => node.name.split('@').next() == Some("memory"),
    };
    memory && enabled
}

/// Reads the RAM `fdt` lists (see the module doc); a bad tree is refused.
pub fn read_ram(fdt: &fdt::Fdt<'_>) -> Result<Ram, DtMemError> {
    let root = fdt.find_node("/").ok_or(DtMemError::NoRoot)?;
    let address_cells = root_cells(&root, "#address-cells", 2)?;
    let size_cells = root_cells(&root, "#size-cells", 1)?;
    let entry = 4 * (address_cells + size_cells);
    let mut ram = Ram { usable: MemoryMap::new(), outside: MemoryMap::new() };
    let mut found = false;
    for node in root.children().filter(is_memory_node) {
        found = true;
        let reg = node.property("reg").ok_or(DtMemError::NoReg)?.value;
        if reg.is_empty() || reg.len() % entry != 0 {
            return Err(DtMemError::BadRegLength { len: reg.len(), entry });
        }
        for e in reg.chunks_exact(entry) {
            let (base, size) = e.split_at(4 * address_cells);
            let (base, size) = (read_number(base), read_number(size));
            let end = base.checked_add(size).ok_or(DtMemError::Wraps { base, size })?;
            if size == 0 {
                continue;
            }
            let inside = base.max(NORMAL_RAM.start)..end.min(NORMAL_RAM.end);
            if inside.start < inside.end {
                ram.usable.add(PhysRange::new(inside.start, inside.end - inside.start))?;
            }
            for part in [base..end.min(NORMAL_RAM.start), base.max(NORMAL_RAM.end)..end] {
                if part.start < part.end {
                    ram.outside.add(PhysRange::new(part.start, part.end - part.start))?;
                }
            }
        }
    }
    if !found {
        return Err(DtMemError::NoMemoryNode);
    }
    Ok(ram)
}

/// Why a device tree's NUMA nodes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtNumaError {
    /// The memory or CPU description itself is bad ([`read_ram`]'s rules).
    Memory(DtMemError),
    /// A `numa-node-id` that is not one cell.
    BadNodeId,
    /// Some memory nodes have a `numa-node-id`, this many do not.
    MissingNodeId { nr_without: usize },
    /// A cpu node with a `numa-node-id` has no usable `reg`.
    BadCpuReg,
    /// The nodes do not add up.
    Numa(NumaError),
}

impl fmt::Display for DtNumaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtNumaError::Memory(e) => write!(f, "{e}"),
            DtNumaError::BadNodeId => write!(f, "a numa-node-id is not one cell"),
            DtNumaError::MissingNodeId { nr_without } => {
                write!(f, "{nr_without} memory nodes have no numa-node-id while others have one")
            }
            DtNumaError::BadCpuReg => write!(f, "a cpu node with a numa-node-id has no usable reg"),
            DtNumaError::Numa(e) => write!(f, "the nodes do not add up: {e}"),
        }
    }
}

impl From<NumaError> for DtNumaError {
    fn from(e: NumaError) -> Self {
        DtNumaError::Numa(e)
    }
}

impl From<DtMemError> for DtNumaError {
    fn from(e: DtMemError) -> Self {
        DtNumaError::Memory(e)
    }
}

/// A node's `numa-node-id`: None when absent.
fn node_id(node: &fdt::node::FdtNode<'_, '_>) -> Result<Option<u32>, DtNumaError> {
    match node.property("numa-node-id").map(|p| p.value) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(_) => Err(DtNumaError::BadNodeId),
    }
}

/// The cpu nodes under `/cpus` with their `reg` cells count.
fn cpu_nodes<'b, 'a>(fdt: &'b fdt::Fdt<'a>) -> (usize, impl Iterator<Item = fdt::node::FdtNode<'b, 'a>>) {
    let cpus = fdt.find_node("/cpus");
    let cells = cpus.and_then(|n| n.property("#address-cells")).and_then(|p| p.as_usize()).unwrap_or(2);
    let children = cpus.into_iter().flat_map(|n| n.children());
    (cells, children.filter(|n| n.name.split('@').next() == Some("cpu")))
}

/// Reads the NUMA nodes `fdt` describes (see the module doc); an empty
/// map when it describes none.
pub fn read_numa(fdt: &fdt::Fdt<'_>) -> Result<NumaMap, DtNumaError> {
    let root = fdt.find_node("/").ok_or(DtMemError::NoRoot)?;
    let address_cells = root_cells(&root, "#address-cells", 2)?;
    let size_cells = root_cells(&root, "#size-cells", 1)?;
    let entry = 4 * (address_cells + size_cells);
    let mut domains = DomainIds::new();
    let mut nr_without = 0;
    for node in root.children().filter(is_memory_node) {
        match node_id(&node)? {
            Some(id) => domains.insert(id)?,
            None => nr_without += 1,
        }
    }
    if domains.is_empty() {
        return Ok(NumaMap::new());
    }
    if nr_without > 0 {
        return Err(DtNumaError::MissingNodeId { nr_without });
    }
    for cpu in cpu_nodes(fdt).1 {
        if let Some(id) = node_id(&cpu)? {
            domains.insert(id)?;
        }
    }
    let mut map = NumaMap::new();
    for node in root.children().filter(is_memory_node) {
        let Some(id) = node_id(&node)? else { continue };
        let reg = node.property("reg").ok_or(DtMemError::NoReg)?.value;
        if reg.is_empty() || reg.len() % entry != 0 {
            return Err(DtMemError::BadRegLength { len: reg.len(), entry }.into());
        }
        for e in reg.chunks_exact(entry) {
            let (base, size) = e.split_at(4 * address_cells);
            let (base, size) = (read_number(base), read_number(size));
            base.checked_add(size).ok_or(DtMemError::Wraps { base, size })?;
            map.add_memory(domains.node(id)?, PhysRange::new(base, size))?;
        }
    }
    let (cpu_cells, cpus) = cpu_nodes(fdt);
    for cpu in cpus {
        let Some(id) = node_id(&cpu)? else { continue };
        let reg = cpu.property("reg").map(|p| p.value).ok_or(DtNumaError::BadCpuReg)?;
        if !(1..=2).contains(&cpu_cells) || reg.len() < 4 * cpu_cells {
            return Err(DtNumaError::BadCpuReg);
        }
        map.add_cpu(domains.node(id)?, read_number(&reg[..4 * cpu_cells]))?;
    }
    map.set_nr_nodes(domains.len());
    Ok(map)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const GIB: u64 = 1 << 30;

    /// A property: name and raw value.
    type Prop<'a> = (&'a str, Vec<u8>);

    /// A node: name, properties, children.
    struct Node<'a> {
        name: &'a str,
        props: Vec<Prop<'a>>,
        children: Vec<Node<'a>>,
    }

    fn node<'a>(name: &'a str, props: Vec<Prop<'a>>, children: Vec<Node<'a>>) -> Node<'a> {
        Node { name, props, children }
    }

    fn cells(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// A flattened device tree (version 17) holding `root`, built by hand
    /// the way the specification lays it out: header, an empty memory
    /// reservation block, the structure block, the strings block.
    fn dtb(root: &Node<'_>) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, v: u32) {
            out.extend_from_slice(&v.to_be_bytes());
        }
        fn walk(n: &Node<'_>, structs: &mut Vec<u8>, strings: &mut Vec<u8>) {
            put(structs, 1); // FDT_BEGIN_NODE
            structs.extend_from_slice(n.name.as_bytes());
            structs.push(0);
            while !structs.len().is_multiple_of(4) {
                structs.push(0);
            }
            for (name, value) in &n.props {
                let off = strings.len() as u32;
                strings.extend_from_slice(name.as_bytes());
                strings.push(0);
                put(structs, 3); // FDT_PROP
                put(structs, value.len() as u32);
                put(structs, off);
                structs.extend_from_slice(value);
                while !structs.len().is_multiple_of(4) {
                    structs.push(0);
                }
            }
            for c in &n.children {
                walk(c, structs, strings);
            }
            put(structs, 2); // FDT_END_NODE
        }
        let (mut structs, mut strings) = (Vec::new(), Vec::new());
        walk(root, &mut structs, &mut strings);
        put(&mut structs, 9); // FDT_END
        let rsv = [0u8; 16];
        let off_rsv = 40;
        let off_struct = off_rsv + rsv.len();
        let off_strings = off_struct + structs.len();
        let total = off_strings + strings.len();
        let mut out = Vec::new();
        for v in
            [0xd00d_feed, total, off_struct, off_strings, off_rsv, 17, 16, 0, strings.len(), structs.len()]
        {
            put(&mut out, v as u32);
        }
        out.extend_from_slice(&rsv);
        out.extend_from_slice(&structs);
        out.extend_from_slice(&strings);
        out
    }

    /// The root with `#address-cells = 2`, `#size-cells = 2` and `children`.
    fn root<'a>(children: Vec<Node<'a>>) -> Node<'a> {
        node("", vec![("#address-cells", cells(&[2])), ("#size-cells", cells(&[2]))], children)
    }

    fn memory<'a>(name: &'a str, entries: &[(u64, u64)]) -> Node<'a> {
        let reg = entries.iter().flat_map(|&(b, s)| [(b >> 32) as u32, b as u32, (s >> 32) as u32, s as u32]);
        node(name, vec![("device_type", string("memory")), ("reg", cells(&reg.collect::<Vec<_>>()))], vec![])
    }

    fn read(tree: &Node<'_>) -> Result<Ram, DtMemError> {
        let bytes = dtb(tree);
        let fdt = fdt::Fdt::new(&bytes).expect("the hand-built tree parses");
        read_ram(&fdt)
    }

    fn ranges(map: &MemoryMap) -> Vec<(u64, u64)> {
        map.ranges().iter().map(|r| (r.start.as_u64(), r.end.as_u64())).collect()
    }

    #[test]
    fn reads_every_memory_node_and_entry() {
        let tree = root(vec![
            node("chosen", vec![], vec![]),
            memory("memory@40000000", &[(GIB, GIB), (4 * GIB, GIB / 2)]),
            memory("memory@100000000", &[(8 * GIB, GIB)]),
        ]);
        let ram = read(&tree).unwrap();
        assert_eq!(ranges(&ram.usable), [(GIB, 2 * GIB), (4 * GIB, 4 * GIB + GIB / 2), (8 * GIB, 9 * GIB)]);
        assert!(ram.outside.ranges().is_empty());
    }

    #[test]
    fn one_cell_addresses_and_sizes_and_a_node_named_memory_without_device_type() {
        let mem = node("memory", vec![("reg", cells(&[0x4000_0000, 0x1000_0000]))], vec![]);
        let tree = node("", vec![("#address-cells", cells(&[1])), ("#size-cells", cells(&[1]))], vec![mem]);
        assert_eq!(ranges(&read(&tree).unwrap().usable), [(GIB, GIB + 0x1000_0000)]);
    }

    #[test]
    fn a_tree_without_memory_is_refused_not_a_panic() {
        assert_eq!(read(&root(vec![node("chosen", vec![], vec![])])).unwrap_err(), DtMemError::NoMemoryNode);
        // A disabled node does not count.
        let mut off = memory("memory@40000000", &[(GIB, GIB)]);
        off.props.push(("status", string("disabled")));
        assert_eq!(read(&root(vec![off])).unwrap_err(), DtMemError::NoMemoryNode);
    }

    #[test]
    fn odd_memory_nodes_are_refused_with_what_is_wrong() {
        let no_reg = node("memory@0", vec![("device_type", string("memory"))], vec![]);
        assert_eq!(read(&root(vec![no_reg])).unwrap_err(), DtMemError::NoReg);
        let short =
            node("memory@0", vec![("device_type", string("memory")), ("reg", cells(&[0, 1, 0]))], vec![]);
        assert_eq!(read(&root(vec![short])).unwrap_err(), DtMemError::BadRegLength { len: 12, entry: 16 });
        let empty = node("memory@0", vec![("device_type", string("memory")), ("reg", vec![])], vec![]);
        assert_eq!(read(&root(vec![empty])).unwrap_err(), DtMemError::BadRegLength { len: 0, entry: 16 });
        let wraps = memory("memory@0", &[(u64::MAX - 10, 100)]);
        assert!(matches!(read(&root(vec![wraps])).unwrap_err(), DtMemError::Wraps { .. }));
        let bad_cells =
            node("", vec![("#address-cells", cells(&[3]))], vec![memory("memory", &[(GIB, GIB)])]);
        assert_eq!(read(&bad_cells).unwrap_err(), DtMemError::BadCells { property: "#address-cells" });
        let short_cells = node("", vec![("#size-cells", vec![0, 1])], vec![memory("memory", &[(GIB, GIB)])]);
        assert_eq!(read(&short_cells).unwrap_err(), DtMemError::BadCells { property: "#size-cells" });
        let msg = std::format!("{}", DtMemError::BadRegLength { len: 12, entry: 16 });
        assert_eq!(msg, "a memory node's reg is 12 bytes, not a whole number (>= 1) of 16-byte entries");
    }

    #[test]
    fn ram_outside_the_normal_window_is_clipped_and_reported() {
        // 255..260 GiB straddles the top; 0.5..1.5 GiB the bottom; 300 GiB
        // lies wholly above.
        let tree = root(vec![memory(
            "memory@0",
            &[(255 * GIB, 5 * GIB), (GIB / 2, GIB), (300 * GIB, GIB), (10 * GIB, 0)],
        )]);
        let ram = read(&tree).unwrap();
        assert_eq!(ranges(&ram.usable), [(GIB, GIB + GIB / 2), (255 * GIB, 256 * GIB)]);
        assert_eq!(ranges(&ram.outside), [(GIB / 2, GIB), (256 * GIB, 260 * GIB), (300 * GIB, 301 * GIB)]);
    }

    fn with_node_id<'a>(mut n: Node<'a>, id: u32) -> Node<'a> {
        n.props.push(("numa-node-id", cells(&[id])));
        n
    }

    fn cpu<'a>(name: &'a str, mpidr: u32, id: Option<u32>) -> Node<'a> {
        let mut props = vec![("device_type", string("cpu")), ("reg", cells(&[mpidr]))];
        if let Some(id) = id {
            props.push(("numa-node-id", cells(&[id])));
        }
        node(name, props, vec![])
    }

    fn cpus(children: Vec<Node<'_>>) -> Node<'_> {
        node("cpus", vec![("#address-cells", cells(&[1])), ("#size-cells", cells(&[0]))], children)
    }

    fn numa(tree: &Node<'_>) -> Result<NumaMap, DtNumaError> {
        let bytes = dtb(tree);
        let fdt = fdt::Fdt::new(&bytes).expect("the hand-built tree parses");
        read_numa(&fdt)
    }

    #[test]
    fn numa_node_ids_on_memory_and_cpus() {
        // What QEMU's virt writes for two nodes: one memory node each.
        let tree = root(vec![
            cpus(vec![cpu("cpu@0", 0, Some(0)), cpu("cpu@1", 1, Some(0)), cpu("cpu@2", 2, Some(1))]),
            with_node_id(memory("memory@80000000", &[(2 * GIB, GIB)]), 1),
            with_node_id(memory("memory@40000000", &[(GIB, GIB)]), 0),
        ]);
        let map = numa(&tree).unwrap();
        assert_eq!(map.nr_nodes(), 2);
        let node = |i| mm::numa::NodeId::new(i).unwrap();
        assert_eq!(map.node_of_addr(mm::PhysAddr::new(GIB)), Some(node(0)));
        assert_eq!(map.node_of_addr(mm::PhysAddr::new(2 * GIB)), Some(node(1)));
        assert_eq!(
            [map.node_of_cpu(0), map.node_of_cpu(1), map.node_of_cpu(2)],
            [Some(node(0)), Some(node(0)), Some(node(1))]
        );
    }

    #[test]
    fn a_tree_without_numa_node_ids_is_one_node() {
        let tree = root(vec![cpus(vec![cpu("cpu@0", 0, None)]), memory("memory@40000000", &[(GIB, GIB)])]);
        let map = numa(&tree).unwrap();
        assert!(map.is_empty());
        assert_eq!(map.nr_nodes(), 1);
    }

    #[test]
    fn odd_numa_node_ids_are_refused() {
        let half = root(vec![
            with_node_id(memory("memory@40000000", &[(GIB, GIB)]), 0),
            memory("memory@80000000", &[(2 * GIB, GIB)]),
        ]);
        assert_eq!(numa(&half).unwrap_err(), DtNumaError::MissingNodeId { nr_without: 1 });
        let mut wide = memory("memory@40000000", &[(GIB, GIB)]);
        wide.props.push(("numa-node-id", cells(&[0, 1])));
        assert_eq!(numa(&root(vec![wide])).unwrap_err(), DtNumaError::BadNodeId);
        let overlap = root(vec![
            with_node_id(memory("memory@40000000", &[(GIB, 2 * GIB)]), 0),
            with_node_id(memory("memory@80000000", &[(2 * GIB, GIB)]), 1),
        ]);
        assert!(matches!(numa(&overlap).unwrap_err(), DtNumaError::Numa(NumaError::Overlap { .. })));
        let twice = root(vec![
            cpus(vec![cpu("cpu@0", 0, Some(0)), cpu("cpu@0", 0, Some(1))]),
            with_node_id(memory("memory@40000000", &[(GIB, GIB)]), 0),
        ]);
        assert_eq!(numa(&twice).unwrap_err(), DtNumaError::Numa(NumaError::CpuTwice { hw_id: 0 }));
    }
}
