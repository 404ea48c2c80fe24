//! In-guest tests of the NUMA nodes (`memory`'s "NUMA nodes", `mm::frame`'s
//! per-node pools): the nodes the kernel uses are the firmware's,
//! allocations on a node land in its ranges, and a CPU's faults take
//! frames from its own node. They hold on any machine (without `--numa`
//! there is one node, and the first test checks that everything is on
//! it); CI runs them with `--numa 2 --smp 4` on both arches, where the
//! runner also requires one `numa: node N` line per node.

use crate::memory;
use crate::memory::paging::KernelTables;
use crate::task::sched;
use crate::tests::{Test, TestEnv};
use crate::vm::space::AddressSpace;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mm::frame::AllocKind;
use mm::numa::NodeId;
use mm::vma::VmaProt;
use mm::VirtAddr;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };

/// Nodes that hold managed memory.
fn nodes_with_memory() -> Vec<NodeId> {
    let frames = memory::frame_allocator();
    NodeId::all(memory::nr_nodes()).filter(|&n| frames.managed_pages_on(n) > 0).collect()
}

/// The kernel's nodes are the firmware's: as many, each node's pool holds
/// exactly the usable RAM the firmware gives it (less what boot took), the
/// per-node counts add up, and without NUMA information everything (RAM
/// and every CPU) is node 0.
fn nodes_are_the_firmwares(_: &TestEnv<'_>) -> Result<(), String> {
    let frames = memory::frame_allocator();
    let map = memory::numa_map();
    let nr = memory::nr_nodes();
    if nr != map.nr_nodes() {
        return Err(format!("{nr} nodes in use, the firmware described {}", map.nr_nodes()));
    }
    if map.is_empty() {
        if frames.nr_nodes() != 1 || frames.managed_pages_on(NodeId::ZERO) != frames.managed_pages() {
            return Err(format!("no NUMA information, yet memory on {} nodes", frames.nr_nodes()));
        }
        if let Some(cpu) = sched::online_cpus().find(|&cpu| memory::cpu_node(cpu) != NodeId::ZERO) {
            return Err(format!("no NUMA information, yet CPU {cpu} is on node {}", memory::cpu_node(cpu)));
        }
    }
    let (mut managed, mut free) = (0, 0);
    for node in NodeId::all(nr) {
        let (ranges, len, _) = memory::node_memory::<64>(node);
        let usable: u64 = ranges[..len].iter().map(|r| r.size() / mm::PAGE_SIZE).sum();
        let on = frames.managed_pages_on(node);
        if on > usable || (usable > 0) != (on > 0) {
            return Err(format!("node {node}: {on} pages managed of {usable} usable"));
        }
        managed += on;
        free += crate::sync::without_interrupts(|| frames.nr_free_pages_on(node));
    }
    if let Some(cpu) = sched::online_cpus().find(|&cpu| memory::cpu_node(cpu).index() >= nr) {
        return Err(format!("CPU {cpu} is on node {}, of {nr}", memory::cpu_node(cpu)));
    }
    if managed != frames.managed_pages() {
        return Err(format!("{managed} pages managed over the nodes, {} in all", frames.managed_pages()));
    }
    let total = crate::sync::without_interrupts(|| frames.nr_free_pages());
    // Other CPUs may allocate between the reads: only roughly equal.
    if free.abs_diff(total) > 4096 {
        return Err(format!("{free} pages free over the nodes, {total} in all"));
    }
    crate::sync::without_interrupts(|| frames.check_consistency()).map_err(|e| format!("{e}"))
}

/// A frame or folio allocated on a node lies in that node's firmware
/// ranges, and the allocator says it is on that node; so does one that
/// merely prefers the node while it has plenty free.
fn allocations_on_a_node_land_in_its_ranges(_: &TestEnv<'_>) -> Result<(), String> {
    let frames = memory::frame_allocator();
    let map = memory::numa_map();
    let check = |node: NodeId, pfn: mm::Pfn, what: &str| -> Result<(), String> {
        let firmware = map.node_of_addr_or_zero(pfn.phys());
        let allocator = memory::node_of_pfn(pfn);
        if firmware != node || allocator != Some(node) {
            return Err(format!(
                "{what} on node {node} got {:#x}: the firmware puts it on node {firmware}, the allocator on {allocator:?}",
                pfn.phys().as_u64()
            ));
        }
        Ok(())
    };
    for node in nodes_with_memory() {
        for order in [0, 4, 9] {
            let pa = memory::alloc_frames_on(node, order).map_err(|e| format!("alloc_frames_on: {e:?}"))?;
            let result = check(node, pa.pfn(), "alloc_frames_on");
            memory::free_frames(pa, order);
            result?;
            let pfn =
                crate::sync::without_interrupts(|| frames.alloc_preferring(node, order, AllocKind::Normal))
                    .map_err(|e| format!("alloc_preferring: {e:?}"))?;
            let result = check(node, pfn, "alloc_preferring");
            memory::free_frames(pfn.phys(), order);
            result?;
        }
        let folio = memory::alloc_folio_on(node, 9).map_err(|e| format!("alloc_folio_on: {e:?}"))?;
        let result = check(node, folio.pfn(), "alloc_folio_on");
        let folio = folio.publish();
        folio.put();
        crate::sync::without_interrupts(|| frames.free_folio(folio));
        result?;
    }
    // A node with no memory fails strictly, and nothing is lost.
    if let Some(empty) = NodeId::new(memory::nr_nodes()) {
        if memory::alloc_frames_on(empty, 0).is_ok() {
            return Err(format!("node {empty} has no memory, yet alloc_frames_on gave a frame"));
        }
    }
    Ok(())
}

/// Pages a task faults in on a CPU come from that CPU's node (while the
/// node has plenty free), on every CPU.
fn faults_prefer_the_faulting_cpus_node(_: &TestEnv<'_>) -> Result<(), String> {
    const PAGES: u64 = 32;
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let space = AddressSpace::new()?;
    let base = space.mmap(cpus.len() as u64 * PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?;
    let base = base.as_u64();
    let mut handles = Vec::new();
    for (slot, &cpu) in cpus.iter().enumerate() {
        handles.push(space.spawn(Some(cpu), "numa-faulter", move || {
            for p in 0..PAGES {
                uaccess::write_u8(base + (slot as u64 * PAGES + p) * 4096, 1 + slot as u8);
            }
        })?);
    }
    for h in handles {
        h.join()?;
    }
    let guard = space.lock();
    let inner = guard.as_ref().ok_or("torn down")?;
    for (slot, &cpu) in cpus.iter().enumerate() {
        let want = memory::cpu_node(cpu);
        for p in 0..PAGES {
            let va = base + (slot as u64 * PAGES + p) * 4096;
            let pa = inner
                .table
                .translate(&KernelTables, VirtAddr::new(va))
                .ok_or(format!("{va:#x} not mapped"))?;
            let got = memory::node_of_pfn(pa.pfn());
            if got != Some(want) {
                return Err(format!("CPU {cpu} (node {want}) faulted {va:#x} in from {pa} on node {got:?}"));
            }
        }
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register![
    "numa": nodes_are_the_firmwares, allocations_on_a_node_land_in_its_ranges, faults_prefer_the_faulting_cpus_node
];
