//! The IO-APIC: routes device interrupt lines (global system interrupts,
//! GSIs) to a vector on a local APIC.
//!
//! ## Protocol
//!
//! - The boot path reads the ACPI MADT and hands [`init`] every IO-APIC
//!   (its registers' physical address and the first GSI it serves) and
//!   every interrupt source override (a legacy ISA IRQ wired to another
//!   GSI, or with another polarity or trigger mode). They are kept in
//!   [`TABLES`], written once, read-only afterwards.
//! - A PCI INTx pin routed by the firmware to legacy IRQ `n` enters the
//!   IO-APIC at GSI `n` unless an override says otherwise; PCI interrupts
//!   are level-triggered and active-low unless the override says otherwise
//!   (QEMU's MADT declares its PCI IRQs 5, 9, 10 and 11 level and
//!   active-high, which its IO-APIC model treats the same).
//! - The registers are indirect: a write to IOREGSEL picks a register,
//!   IOWIN reads or writes it. [`REG_LOCK`] makes the pair atomic; it is a
//!   leaf, taken with interrupts off.
//! - The registers (0xFEC0_0000 on QEMU) lie below the local APIC's page,
//!   inside the bootloader's map of all physical memory, reached at
//!   `phys_offset + pa` like the local APIC ([`crate::irq`]).
//! - [`route`] programs one redirection entry: fixed delivery to one local
//!   APIC (physical destination mode), unmasked. Entries nobody routes stay
//!   as the firmware left them (masked after reset).
#![cfg(target_os = "none")]

use crate::irq::{DeviceIrq, Polarity};
use crate::X86_64;
use arch_common::irq::{AttachError, Irq, Trigger};

/// The most IO-APICs and interrupt source overrides kept.
pub const MAX_IOAPICS: usize = 4;
pub const MAX_OVERRIDES: usize = 16;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const RTE_ACTIVE_LOW: u32 = 1 << 13;
const RTE_LEVEL: u32 = 1 << 15;

/// One IO-APIC from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicInfo {
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// The GSI of its input 0.
    pub gsi_base: u32,
}

/// An interrupt source override from the MADT: ISA IRQ `isa_irq` arrives
/// at `gsi`, with the polarity and trigger mode in `flags` (MPS INTI flags:
/// bits 0..2 polarity, 2..4 trigger; 0 in a field means "as the bus says").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    pub isa_irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

struct Tables {
    ioapics: [Option<IoApicInfo>; MAX_IOAPICS],
    overrides: [Option<Override>; MAX_OVERRIDES],
}

/// What the MADT said; written once by [`init`].
static TABLES: spin::Once<Tables> = spin::Once::new();
/// Serialises IOREGSEL/IOWIN pairs (see the module doc).
static REG_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Records the IO-APICs and overrides the MADT lists (boot CPU, once;
/// entries beyond [`MAX_IOAPICS`] / [`MAX_OVERRIDES`] are dropped: the
/// boot path reports them).
pub fn init(ioapics: &[IoApicInfo], overrides: &[Override]) {
    let mut t = Tables { ioapics: [None; MAX_IOAPICS], overrides: [None; MAX_OVERRIDES] };
    for (slot, a) in t.ioapics.iter_mut().zip(ioapics) {
        *slot = Some(*a);
    }
    for (slot, o) in t.overrides.iter_mut().zip(overrides) {
        *slot = Some(*o);
    }
    TABLES.call_once(|| t);
}

/// The IO-APIC input a PCI INTx pin uses when the firmware routed it to
/// legacy IRQ `line` (see the module doc). None without any IO-APIC.
pub fn pci_legacy_irq(line: u8) -> Option<DeviceIrq> {
    let tables = TABLES.get()?;
    tables.ioapics.iter().flatten().next()?;
    let found = tables.overrides.iter().flatten().find(|o| o.isa_irq == line);
    let (gsi, flags) = found.map_or((line as u32, 0), |o| (o.gsi, o.flags));
    let polarity = match flags & 0b11 {
        0b01 => Polarity::High,
        _ => Polarity::Low,
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b01 => Trigger::Edge,
        _ => Trigger::Level,
    };
    Some(DeviceIrq { gsi, legacy: Some(line), trigger, polarity })
}

/// The IO-APIC serving `gsi` and its input number there.
fn find(gsi: u32) -> Result<(u64, u32), AttachError> {
    let tables = TABLES.get().ok_or(AttachError::NoController)?;
    for a in tables.ioapics.iter().flatten() {
        let base = crate::phys_offset() + a.address as u64;
        if gsi < a.gsi_base {
            continue;
        }
        let input = gsi - a.gsi_base;
        let max_entry = (read(base, REG_VERSION) >> 16) & 0xff;
        if input <= max_entry {
            return Ok((base, input));
        }
    }
    Err(AttachError::NoSuchLine)
}

fn read(base: u64, reg: u32) -> u32 {
    X86_64::with_irqs_disabled(|| {
        let _guard = REG_LOCK.lock();
        // SAFETY: `base` maps an IO-APIC's register window (MADT address in
        // the direct map, see the module doc); IOREGSEL then IOWIN is one
        // register read, made atomic by REG_LOCK.
        unsafe {
            core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((base + IOWIN) as *const u32)
        }
    })
}

fn write(base: u64, reg: u32, value: u32) {
    X86_64::with_irqs_disabled(|| {
        let _guard = REG_LOCK.lock();
        // SAFETY: as in `read`, writing instead.
        unsafe {
            core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((base + IOWIN) as *mut u32, value);
        }
    })
}

/// Checks that an IO-APIC serves `irq`, without touching it.
pub(crate) fn route_check(irq: &DeviceIrq) -> Result<(), AttachError> {
    find(irq.gsi).map(|_| ())
}

/// Routes `irq` to `vector` on the CPU whose local APIC id is `apic_id`,
/// and unmasks it.
pub(crate) fn route(irq: &DeviceIrq, vector: u8, apic_id: u32) -> Result<(), AttachError> {
    let (base, input) = find(irq.gsi)?;
    let mut low = vector as u32;
    if irq.polarity == Polarity::Low {
        low |= RTE_ACTIVE_LOW;
    }
    if irq.trigger == Trigger::Level {
        low |= RTE_LEVEL;
    }
    let reg = REG_REDIRECTION + 2 * input;
    // Destination first, then the low half, whose write unmasks the entry.
    write(base, reg + 1, apic_id << 24);
    write(base, reg, low);
    Ok(())
}
