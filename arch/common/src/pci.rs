//! PCI as the kernel's generic code (`kernel::pci`) and the virtio PCI
//! transport see it: one host bridge, its configuration access, and where
//! each function's INTx pin arrives.
//!
//! Configuration accesses go through `virtio-drivers`' `ConfigurationAccess`
//! (x86_64: the ports 0xCF8/0xCFC; AArch64: an ECAM region). BARs are
//! placed by the kernel in [`Host::mem32`] when the firmware left them
//! unassigned (AArch64 `virt`), or were placed by the firmware (`None`).

use core::ops::RangeInclusive;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// PCI, as an arch provides it.
pub trait Pci: crate::irq::Irq {
    /// This machine's configuration access.
    type Cam: ConfigurationAccess;

    /// The host bridge, if the machine has a usable one.
    fn pci_host() -> Option<Host<Self::Cam>>;

    /// The interrupt line of function `df`'s INTx pin, read through `cam`
    /// and the machine's routing. None when the function uses no pin or it
    /// is not routed.
    fn intx_irq(cam: &Self::Cam, df: DeviceFunction) -> Option<Self::DeviceIrq>;
}

/// An MMIO window in which BARs may be placed, at the same address for the
/// CPU and on the PCI bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemWindow {
    pub base: u64,
    pub size: u64,
}

/// The PCI host bridge: how to reach configuration space, which buses to
/// scan, and where to place BARs (None: the firmware placed them).
pub struct Host<C> {
    pub cam: C,
    pub buses: RangeInclusive<u8>,
    pub mem32: Option<MemWindow>,
}
