//! Reads the PCI host bridge from the device tree: the first node
//! compatible with `pci-host-ecam-generic` (QEMU `virt`'s PCIe root
//! complex), turned into an [`arch::pci::EcamHost`] for the kernel.
//!
//! What is read, in the bindings' terms (the node has `#address-cells = 3`,
//! `#size-cells = 2`, `#interrupt-cells = 1`):
//! - `reg`: the ECAM region, in the root's cells;
//! - `bus-range`: first and last bus (default 0..255);
//! - `ranges`: (PCI address: 3 cells, CPU address: root's cells, size: 2
//!   cells) triples; the first 32-bit memory space one (space code 0b10 in
//!   bits 24..26 of the first cell) whose PCI and CPU addresses are equal is
//!   the window BARs go in;
//! - `interrupt-map-mask` and `interrupt-map`: (unit address: 3 cells, pin:
//!   1 cell, parent phandle, parent unit address: the parent's
//!   `#address-cells`, parent specifier: the parent's `#interrupt-cells`)
//!   entries; the parent must be the GIC with 3-cell specifiers (type 0 =
//!   SPI, number, flags: 1/2 edge, 4/8 level).
//!
//! Anything malformed is reported on the console and the host is left out
//! (the kernel then finds no disks); nothing here stops the boot.

use crate::arch;
use arch::irq::DeviceIrq;
use arch::pci::{EcamHost, IntxEntry, IntxMap, MAX_INTX_ENTRIES};
use arch_common::irq::Trigger;
use arch_common::pci::MemWindow;
use kernel::println;

/// The big-endian 32-bit cells of a property.
fn cells(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.as_chunks::<4>().0.iter().map(|c| u32::from_be_bytes(*c))
}

/// A number of one or two cells.
fn join(cells: &[u32]) -> u64 {
    cells.iter().fold(0, |acc, &c| acc << 32 | c as u64)
}

/// A `#...-cells` property of `node`, or `default`.
fn cell_count(node: &fdt::node::FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name).and_then(|p| p.as_usize()).unwrap_or(default)
}

/// Finds the host bridge and records it with [`arch::pci::set_host`].
pub fn find_host(fdt: &fdt::Fdt<'_>) {
    let Some(node) = fdt.find_compatible(&["pci-host-ecam-generic"]) else {
        println!("boot: the device tree has no pci-host-ecam-generic node; no PCI devices");
        return;
    };
    match read_host(fdt, &node) {
        Ok(host) => arch::pci::set_host(host),
        Err(why) => println!("boot: PCI host bridge {} left out: {why}", node.name),
    }
}

fn read_host(fdt: &fdt::Fdt<'_>, node: &fdt::node::FdtNode<'_, '_>) -> Result<EcamHost, &'static str> {
    if cell_count(node, "#address-cells", 0) != 3 || cell_count(node, "#size-cells", 0) != 2 {
        return Err("its #address-cells/#size-cells are not 3/2");
    }
    let root_cells = fdt.find_node("/").map_or(2, |root| cell_count(&root, "#address-cells", 2));
    if !(1..=2).contains(&root_cells) {
        return Err("the root's #address-cells is not 1 or 2");
    }
    let ecam = node.reg().and_then(|mut r| r.next()).ok_or("it has no reg")?;
    let ecam_size = ecam.size.ok_or("its reg has no size")? as u64;
    let (first_bus, last_bus) = match node.property("bus-range") {
        Some(p) => match cells(p.value).collect::<ArrayCells>().as_slice() {
            &[a, b] if a <= b && b <= 255 => (a as u8, b as u8),
            _ => return Err("its bus-range is malformed"),
        },
        None => (0, 255),
    };

    // `ranges`: PCI address (3), CPU address (root cells), size (2).
    let mut mem32 = None;
    if let Some(p) = node.property("ranges") {
        let entry = 3 + root_cells + 2;
        let all: ArrayCells = cells(p.value).collect();
        for e in all.as_slice().chunks_exact(entry) {
            let space = (e[0] >> 24) & 0b11;
            let pci = join(&e[1..3]);
            let cpu = join(&e[3..3 + root_cells]);
            let size = join(&e[3 + root_cells..]);
            if space == 0b10 && mem32.is_none() && pci == cpu && size > 0 {
                mem32 = Some(MemWindow { base: cpu, size });
            }
        }
    }

    let mut intx = IntxMap { mask: [u32::MAX; 4], entries: [None; MAX_INTX_ENTRIES] };
    if let Some(p) = node.property("interrupt-map-mask") {
        let m: ArrayCells = cells(p.value).collect();
        if m.as_slice().len() != 4 {
            return Err("its interrupt-map-mask is not 4 cells");
        }
        intx.mask.copy_from_slice(m.as_slice());
    }
    if cell_count(node, "#interrupt-cells", 1) != 1 {
        return Err("its #interrupt-cells is not 1");
    }
    if let Some(p) = node.property("interrupt-map") {
        let all: ArrayCells = cells(p.value).collect();
        let mut rest = all.as_slice();
        let mut n = 0;
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err("its interrupt-map is cut short");
            }
            let child = [rest[0], rest[1], rest[2], rest[3]];
            let parent = fdt.find_phandle(rest[4]).ok_or("its interrupt-map names an unknown phandle")?;
            let parent_addr = cell_count(&parent, "#address-cells", 0);
            let parent_irq = cell_count(&parent, "#interrupt-cells", 0);
            if parent_irq != 3 {
                return Err("its interrupt-map leads to a controller without 3-cell specifiers (not a GIC)");
            }
            let len = 5 + parent_addr + parent_irq;
            let e = rest.get(..len).ok_or("its interrupt-map is cut short")?;
            let spec = &e[5 + parent_addr..];
            if spec[0] != 0 {
                return Err("its interrupt-map uses a GIC interrupt that is not an SPI");
            }
            let trigger = if spec[2] & 0b11 != 0 { Trigger::Edge } else { Trigger::Level };
            let irq = DeviceIrq { intid: 32 + spec[1], trigger };
            let slot = intx.entries.get_mut(n).ok_or("its interrupt-map has too many entries")?;
            // Stored masked, as lookups are.
            let masked: [u32; 4] = core::array::from_fn(|i| child[i] & intx.mask[i]);
            *slot = Some(IntxEntry { child: masked, irq });
            n += 1;
            rest = &rest[len..];
        }
    }
    Ok(EcamHost { ecam_base: ecam.starting_address as u64, ecam_size, first_bus, last_bus, mem32, intx })
}

/// Up to 512 cells of a property, without a heap (the boot path has none).
struct ArrayCells {
    cells: [u32; 512],
    len: usize,
}

impl ArrayCells {
    fn as_slice(&self) -> &[u32] {
        &self.cells[..self.len]
    }
}

impl FromIterator<u32> for ArrayCells {
    /// Keeps the first 512 cells (more make the property look cut short).
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut a = ArrayCells { cells: [0; 512], len: 0 };
        for c in iter.into_iter().take(512) {
            a.cells[a.len] = c;
            a.len += 1;
        }
        a
    }
}
