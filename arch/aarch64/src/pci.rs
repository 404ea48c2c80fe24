//! PCI on QEMU `virt`: the generic ECAM host bridge the device tree
//! describes (`pci-host-ecam-generic`).
//!
//! ## Protocol
//!
//! - The boot path reads the host bridge's node and hands [`set_host`] an
//!   [`EcamHost`]: the ECAM region (configuration space, 4 KiB per
//!   function), the bus range, the 32-bit MMIO window from `ranges`, and
//!   the INTx routing from `interrupt-map` ([`IntxMap`]). Written once,
//!   read-only afterwards.
//! - There is no firmware: nobody has assigned BARs or enabled devices.
//!   `Host::mem32` gives the kernel's generic PCI code the window to
//!   place BARs in (the kernel assigns them, `kernel::pci`).
//! - Configuration accesses go through `virtio-drivers`' `MmioCam` on the
//!   ECAM region, which the boot tables map as Device memory (virt puts it
//!   at 256 GiB, in the high Device block; the 32-bit window lies in the low
//!   1 GiB Device block). Each access is one 32-bit load or store, so no
//!   lock is needed; the kernel makes its writes from one task at boot.
//! - INTx: a function on the root bus raising pin INTA..INTD is looked up
//!   in the interrupt map (unit address `bus << 16 | device << 11 |
//!   function << 8` and the pin, both masked by `interrupt-map-mask`); the
//!   entry gives the GIC SPI. Functions behind bridges (which swizzle pins)
//!   are not supported: the kernel scans the root bus only.
#![cfg(target_os = "none")]

use crate::irq::DeviceIrq;
use crate::Aarch64;
use arch_common::pci::{Host, MemWindow, Pci};
use virtio_drivers::transport::pci::bus::{Cam as CamKind, ConfigurationAccess, DeviceFunction, MmioCam};

/// Entries an interrupt map may have (virt uses 16: 4 slots x 4 pins).
pub const MAX_INTX_ENTRIES: usize = 64;
/// The interrupt-pin register (byte 1 of the word at 0x3c).
const INTERRUPT_REGISTER: u8 = 0x3c;

/// One `interrupt-map` entry: a child unit address and pin (4 cells, as in
/// the map), and the GIC line they lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxEntry {
    pub child: [u32; 4],
    pub irq: DeviceIrq,
}

/// The host bridge's `interrupt-map` and `interrupt-map-mask`.
#[derive(Debug, Clone, Copy)]
pub struct IntxMap {
    pub mask: [u32; 4],
    pub entries: [Option<IntxEntry>; MAX_INTX_ENTRIES],
}

/// What the device tree says about the host bridge.
#[derive(Debug, Clone, Copy)]
pub struct EcamHost {
    /// Physical address and size of the ECAM region; bus `buses.start()`
    /// is at its start.
    pub ecam_base: u64,
    pub ecam_size: u64,
    pub first_bus: u8,
    pub last_bus: u8,
    pub mem32: Option<MemWindow>,
    pub intx: IntxMap,
}

static HOST: spin::Once<EcamHost> = spin::Once::new();

/// Records the host bridge (boot path, once).
pub fn set_host(host: EcamHost) {
    HOST.call_once(|| host);
}

/// This machine's configuration access.
pub type Cam = MmioCam<'static>;

impl Pci for Aarch64 {
    type Cam = Cam;

    /// There if the device tree described a usable one: its ECAM region
    /// must start at bus 0 and cover the bus range (1 MiB per bus).
    fn pci_host() -> Option<Host<Cam>> {
        let h = HOST.get()?;
        let nr_buses = h.last_bus as u64 + 1;
        if h.first_bus != 0 || h.ecam_size < nr_buses << 20 {
            return None;
        }
        // SAFETY: the ECAM region is Device memory in the boot tables'
        // direct map (see the module doc) for as long as the kernel runs; it
        // is MMIO, never a Rust object, so nothing else holds references
        // into it; and the kernel enumerates only buses `0..=last_bus`,
        // whose configuration space lies within the region even when it is
        // smaller than the 256 MiB `MmioCam` covers.
        let cam = unsafe { MmioCam::new((h.ecam_base + crate::DIRECT_MAP_OFFSET) as *mut u8, CamKind::Ecam) };
        Some(Host { cam, buses: 0..=h.last_bus, mem32: h.mem32 })
    }

    /// From the interrupt map (see the module doc). None when the function
    /// uses no pin or the map has no entry.
    fn intx_irq(cam: &Cam, df: DeviceFunction) -> Option<DeviceIrq> {
        let pin = (cam.read_word(df, INTERRUPT_REGISTER) >> 8) & 0xff;
        if pin == 0 || pin > 4 {
            return None;
        }
        let map = &HOST.get()?.intx;
        let unit = (df.bus as u32) << 16 | (df.device as u32) << 11 | (df.function as u32) << 8;
        let key = [unit, 0, 0, pin];
        let masked: [u32; 4] = core::array::from_fn(|i| key[i] & map.mask[i]);
        map.entries.iter().flatten().find(|e| e.child == masked).map(|e| e.irq)
    }
}
