//! PCI configuration space on QEMU's `pc` machine (i440FX), through
//! configuration mechanism #1: the 32-bit address register at port 0xCF8
//! selects bus, device, function and register, and the data port 0xCFC
//! reads or writes that register.
//!
//! ## Protocol
//!
//! - [`PortCam`] implements `virtio-drivers`' `ConfigurationAccess`, so the
//!   kernel's generic PCI code (`kernel::pci`) and the virtio PCI transport
//!   read and write configuration space through it (`Pci::Cam`).
//! - An access is two port operations (select, then transfer); [`PORT_LOCK`]
//!   makes the pair atomic against other CPUs, and interrupts are off while
//!   it is held, so an interrupt handler on the same CPU cannot slip its own
//!   select in between (and a holder is never preempted).
//! - The firmware (SeaBIOS or OVMF) has already assigned every BAR and
//!   routed every INTx pin to a legacy IRQ, which it wrote in the
//!   interrupt-line register: `Host::mem32` is `None` (nothing to assign)
//!   and `Pci::intx_irq` reads that register and turns the legacy IRQ into
//!   an IO-APIC input ([`crate::ioapic`]).
//! - Only bus 0 is scanned: QEMU's `pc` puts every device there unless the
//!   user adds PCI bridges.
#![cfg(target_os = "none")]

use crate::irq::DeviceIrq;
use crate::X86_64;
use arch_common::irq::Irq;
use arch_common::pci::{Host, Pci};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// Bit 31 of the address register: the access is a configuration cycle.
const CONFIG_ENABLE: u32 = 1 << 31;
/// The interrupt-line (byte 0) and interrupt-pin (byte 1) register.
const INTERRUPT_REGISTER: u8 = 0x3c;
/// Interrupt-line value meaning "not connected" (PCI local bus spec).
const LINE_UNKNOWN: u8 = 0xff;

/// Serialises the select-then-transfer pairs of every CPU (see the module
/// doc). Taken with interrupts disabled; a leaf lock.
static PORT_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Configuration mechanism #1 (ports 0xCF8/0xCFC). Stateless: every value
/// reaches the same configuration space.
#[derive(Debug)]
pub struct PortCam {
    _private: (),
}

/// This machine's configuration access.
pub type Cam = PortCam;

impl PortCam {
    fn address(df: DeviceFunction, offset: u8) -> u32 {
        debug_assert!(df.valid() && offset.is_multiple_of(4), "PortCam: bad address {df} +{offset:#x}");
        CONFIG_ENABLE
            | (df.bus as u32) << 16
            | (df.device as u32) << 11
            | (df.function as u32) << 8
            | (offset & 0xfc) as u32
    }

    /// Runs `f` on the two ports with [`PORT_LOCK`] held and interrupts off.
    fn with_ports<R>(f: impl FnOnce(&mut Port<u32>, &mut Port<u32>) -> R) -> R {
        X86_64::with_irqs_disabled(|| {
            let _guard = PORT_LOCK.lock();
            f(&mut Port::new(CONFIG_ADDRESS), &mut Port::new(CONFIG_DATA))
        })
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        Self::with_ports(|addr, data| {
            // SAFETY: 0xCF8/0xCFC are the PC's configuration ports, owned by
            // this module; the lock makes the pair one access; a read of an
            // absent function returns all ones and has no effect.
            unsafe {
                addr.write(Self::address(df, offset));
                data.read()
            }
        })
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, value: u32) {
        Self::with_ports(|addr, data| {
            // SAFETY: as in `read_word`; what the write does to the device
            // is the caller's business (the generic PCI code).
            unsafe {
                addr.write(Self::address(df, offset));
                data.write(value);
            }
        })
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam { _private: () }
    }
}

impl Pci for X86_64 {
    type Cam = Cam;

    /// There if configuration mechanism #1 answers (function 00:00.0, the
    /// i440FX itself, has a vendor id).
    fn pci_host() -> Option<Host<Cam>> {
        let cam = PortCam { _private: () };
        let host_bridge = DeviceFunction { bus: 0, device: 0, function: 0 };
        if cam.read_word(host_bridge, 0) as u16 == 0xffff {
            return None;
        }
        Some(Host { cam, buses: 0..=0, mem32: None })
    }

    /// The legacy IRQ the firmware wrote in the function's interrupt-line
    /// register, through the IO-APIC. None when the function uses no pin,
    /// the firmware left the line unrouted, or no IO-APIC is known.
    fn intx_irq(cam: &Cam, df: DeviceFunction) -> Option<DeviceIrq> {
        let reg = cam.read_word(df, INTERRUPT_REGISTER);
        let (line, pin) = (reg as u8, (reg >> 8) as u8);
        if pin == 0 || line == LINE_UNKNOWN || line >= 16 {
            return None;
        }
        crate::ioapic::pci_legacy_irq(line)
    }
}
