//! PCI: finding functions on the host bridge and making one ready for its
//! driver (BARs placed, memory decoding and bus mastering on).
//!
//! ## Protocol
//!
//! - The arch gives the host bridge ([`arch::pci::host`]): how to reach
//!   configuration space (a `virtio-drivers` `ConfigurationAccess`: ports
//!   0xCF8/0xCFC on x86_64, ECAM on AArch64), the buses to scan, and a
//!   32-bit MMIO window when nobody has placed BARs (AArch64 `virt` has no
//!   firmware; on x86_64 SeaBIOS or OVMF placed them).
//! - [`Pci::enable`] places every memory BAR of a function in that window
//!   (each aligned to its size, one after another; 64-bit BARs get 32-bit
//!   addresses, which they accept; I/O BARs are left unassigned and I/O
//!   decoding off), makes sure the kernel maps every memory BAR
//!   ([`crate::drivers::dma::map_mmio`]: OVMF puts 64-bit BARs far above RAM), then
//!   turns on memory decoding and bus mastering (the device's DMA).
//! - Only used at boot, from one task: a [`Pci`] is owned by its user, so
//!   no lock; configuration accesses of the arch are atomic on their own.
//! - INTx routing is the arch's ([`arch::pci::intx_irq`]): the firmware's
//!   interrupt-line register through the IO-APIC on x86_64, the device
//!   tree's `interrupt-map` on AArch64.

use crate::arch;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, MemoryBarType, PciError,
    PciRoot,
};

/// Why a function could not be made ready. The machine's fault (a BAR that
/// does not fit, or that the kernel cannot reach).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// The function's BARs could not be read.
    Bar(PciError),
    /// A BAR does not fit in what is left of the MMIO window.
    WindowFull { bar: u8, size: u64 },
    /// The firmware left a memory BAR unassigned.
    Unassigned { bar: u8 },
    /// A memory BAR lies where the kernel cannot map device memory.
    Unmappable { bar: u8, address: u64, size: u64, why: arch::mmu::MapDeviceError },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Bar(e) => write!(f, "cannot read its BARs: {e}"),
            SetupError::WindowFull { bar, size } => {
                write!(f, "BAR {bar} ({size:#x} bytes) does not fit in the host bridge's MMIO window")
            }
            SetupError::Unassigned { bar } => write!(f, "BAR {bar} has no address"),
            SetupError::Unmappable { bar, address, size, why } => {
                write!(f, "BAR {bar} at {address:#x} ({size:#x} bytes) cannot be mapped: {why}")
            }
        }
    }
}

/// `0000:bb:dd.f`, as Linux prints PCI addresses.
pub fn location(df: DeviceFunction) -> String {
    format!("0000:{:02x}:{:02x}.{}", df.bus, df.device, df.function)
}

/// The host bridge, opened for enumeration and set-up.
pub struct Pci {
    root: PciRoot<arch::pci::Cam>,
    /// A second handle on configuration space, used only to read
    /// read-only registers (the interrupt pin, the firmware's line).
    reader: arch::pci::Cam,
    buses: core::ops::RangeInclusive<u8>,
    /// Where the next BAR may go, and the window's end (AArch64).
    window: Option<(u64, u64)>,
}

impl Pci {
    /// Opens the arch's host bridge, if there is one.
    pub fn open() -> Option<Pci> {
        let host = arch::pci::host()?;
        // SAFETY: `reader` only reads the interrupt-pin and interrupt-line
        // registers, which no write of ours changes (the contract of
        // `unsafe_clone`: the clone reads read-only fields only).
        let reader = unsafe { host.cam.unsafe_clone() };
        let window = host.mem32.map(|w| (w.base, w.base + w.size));
        Some(Pci { root: PciRoot::new(host.cam), reader, buses: host.buses, window })
    }

    /// Every function on the scanned buses, in bus, device, function order.
    pub fn functions(&self) -> Vec<(DeviceFunction, DeviceFunctionInfo)> {
        self.buses.clone().flat_map(|bus| self.root.enumerate_bus(bus)).collect()
    }

    /// The configuration-space handle, for a driver's transport.
    pub fn root_mut(&mut self) -> &mut PciRoot<arch::pci::Cam> {
        &mut self.root
    }

    /// The interrupt line of `df`'s INTx pin, if it has one and the arch
    /// can route it.
    pub fn intx_irq(&self, df: DeviceFunction) -> Option<arch::irq::DeviceIrq> {
        arch::pci::intx_irq(&self.reader, df)
    }

    /// Places `df`'s memory BARs if the host bridge leaves that to us,
    /// checks the kernel reaches them, and turns on memory decoding and
    /// bus mastering (see the module doc).
    pub fn enable(&mut self, df: DeviceFunction) -> Result<(), SetupError> {
        let bars = self.root.bars(df).map_err(SetupError::Bar)?;
        let (_, command) = self.root.get_status_command(df);
        self.root.set_command(df, command & !(Command::MEMORY_SPACE | Command::BUS_MASTER));
        for (index, bar) in bars.iter().enumerate() {
            let Some(BarInfo::Memory { address_type, address, size, .. }) = *bar else { continue };
            if size == 0 {
                continue;
            }
            let index = index as u8;
            let address = match self.window.as_mut() {
                Some((next, end)) => {
                    let base = next.next_multiple_of(size.max(4096));
                    if base.checked_add(size).is_none_or(|e| e > *end) {
                        return Err(SetupError::WindowFull { bar: index, size });
                    }
                    *next = base + size;
                    match address_type {
                        MemoryBarType::Width64 => self.root.set_bar_64(df, index, base),
                        MemoryBarType::Width32 | MemoryBarType::Below1MiB => {
                            self.root.set_bar_32(df, index, base as u32)
                        }
                    }
                    base
                }
                None => address,
            };
            if address == 0 {
                return Err(SetupError::Unassigned { bar: index });
            }
            crate::drivers::dma::map_mmio(address, size).map_err(|why| SetupError::Unmappable {
                bar: index,
                address,
                size,
                why,
            })?;
        }
        let mut command = command | Command::MEMORY_SPACE | Command::BUS_MASTER;
        if self.window.is_some() {
            // Our own placement: I/O BARs were not given addresses.
            command &= !Command::IO_SPACE;
        }
        self.root.set_command(df, command);
        Ok(())
    }
}
