//! Interrupts on AArch64 `virt`: the GICv2 distributor and CPU interface,
//! the EL1 virtual timer as the periodic tick, SGIs as IPIs, and the DAIF
//! I bit.
//!
//! ## Protocol
//!
//! - Interrupt ids: [`IPI_SGI`] (the one kernel IPI; the kernel keeps
//!   per-CPU work flags to say why) and [`TIMER_PPI`] (the virtual timer,
//!   PPI 11 = id 27). The IRQ vector calls [`dispatch`], which acknowledges
//!   each pending interrupt (IAR), ends it (EOIR), and runs the kernel's
//!   hooks in the order `arch_common::irq` describes, interrupts still
//!   masked (the interrupted context, FP/SIMD registers included, stays
//!   saved on its own stack).
//! - The GIC's registers are in the low 1 GiB Device block of the boot
//!   tables, reached at `DIRECT_MAP_OFFSET + pa`. GICv3 (`gic-version=3`)
//!   is not supported yet: [`init_boot_cpu`] refuses it by name.
//! - The virtual timer is one-shot in hardware; the handler rearms it, so it
//!   ticks at the rate `Irq::start_timer` set.
//! - Device lines (`Irq::attach_device_irq`): a shared peripheral interrupt
//!   (SPI, ids 32..1020) configured level or edge, routed to the boot CPU
//!   and enabled; the table of lines and its locking are
//!   `arch_common::irq::DeviceLines`. [`dispatch`] runs a device line's
//!   handlers *before* its EOIR, so a level-triggered SPI is low when the
//!   GIC next looks at it.
//! - IPIs by kernel CPU index: each CPU, in [`init_this_cpu`], records its
//!   own CPU-interface bit (the banked GICD_ITARGETSR0) in a table indexed
//!   by its kernel index; `Irq::send_ipi_to` looks the target up there. A CPU
//!   whose slot is still 0 has not set up its GIC interface yet and gets no
//!   IPI (it is not online for the kernel either).
#![cfg(target_os = "none")]

use crate::cpu::MAX_CPUS;
use crate::Aarch64;
use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0};
use arch_common::cpu::Cpu;
use arch_common::irq::{self as common, AttachError, DeviceLines, Irq, Trigger};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The SGI used as the kernel IPI.
pub const IPI_SGI: u32 = 0;
/// The EL1 virtual timer's interrupt id (PPI 11).
pub const TIMER_PPI: u32 = 27;
const SPURIOUS: u32 = 1023; // what IAR reads when nothing is pending

// Distributor registers (offsets from GICD), shared by all CPUs: control
// (bit 0 forwards interrupts to the CPU interfaces), set-enable (a bit per
// id), priority and target interfaces (a byte per id; word 0 of the targets
// is banked and reads as this CPU's own interface bit), configuration (two
// bits per id, the upper one set for edge), software-generated interrupts.
const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_ICFGR: u64 = 0xc00;
const GICD_SGIR: u64 = 0xf00;
// CPU interface registers (offsets from GICC), banked per CPU: control,
// priority mask, interrupt acknowledge (reading it takes the highest pending
// id), end of interrupt (that id written back).
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;

static GICD: AtomicU64 = AtomicU64::new(0);
static GICC: AtomicU64 = AtomicU64::new(0);
/// Timer counts per tick (0: timer off on this CPU... shared rate).
static TICK_COUNTS: AtomicU64 = AtomicU64::new(0);

/// Each CPU's GIC CPU-interface mask (its SGI target bit), by kernel index;
/// 0 = not set up yet. Written once per CPU by [`init_this_cpu`] (Release),
/// read by `Irq::send_ipi_to` (Acquire).
static INTERFACE_MASKS: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// GICD_SGIR TargetListFilter = 0b10: to the requesting CPU only.
const SGIR_TO_SELF: u32 = 0b10 << 24;

fn read(base: &AtomicU64, reg: u64) -> u32 {
    let b = base.load(Ordering::Relaxed);
    debug_assert!(b != 0, "GIC access before init");
    // SAFETY: `b` maps the GIC block (Device memory, see the module doc);
    // its registers are 32-bit, accessed with volatile loads.
    unsafe { core::ptr::read_volatile((b + reg) as *const u32) }
}

fn write(base: &AtomicU64, reg: u64, value: u32) {
    let b = base.load(Ordering::Relaxed);
    debug_assert!(b != 0, "GIC access before init");
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile((b + reg) as *mut u32, value) }
}

/// Why the interrupt controller could not be set up. The machine's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqError {
    /// The device tree names no GIC.
    NoGic,
    /// Only GICv2 is supported (run QEMU without `gic-version=3`).
    UnsupportedGic(&'static str),
}

/// Boot CPU, once: enable the distributor, then this CPU's interface.
/// `gicd` and `gicc` are the physical addresses of the distributor and the
/// CPU interface from the device tree.
pub fn init_boot_cpu(gicd: u64, gicc: u64) {
    GICD.store(gicd + crate::DIRECT_MAP_OFFSET, Ordering::Relaxed);
    GICC.store(gicc + crate::DIRECT_MAP_OFFSET, Ordering::Relaxed);
    write(&GICD, GICD_CTLR, 1);
    init_this_cpu();
}

/// Every CPU (the boot CPU through [`init_boot_cpu`]), after its kernel
/// index is set ([`crate::cpu::set_index`]): enable the banked SGI and timer
/// interrupts and this CPU's interface, and record its interface mask for
/// `Irq::send_ipi_to`.
pub fn init_this_cpu() {
    for id in [IPI_SGI, TIMER_PPI] {
        let reg = GICD_IPRIORITYR + (id as u64 & !3);
        let shift = (id % 4) * 8;
        let old = read(&GICD, reg);
        write(&GICD, reg, (old & !(0xff << shift)) | (0xa0 << shift));
        write(&GICD, GICD_ISENABLER, 1 << id);
    }
    write(&GICC, GICC_PMR, 0xff);
    write(&GICC, GICC_CTLR, 1);
    let cpu = Aarch64::cpu_index();
    match INTERFACE_MASKS.get(cpu) {
        Some(slot) => slot.store(interface_mask(), Ordering::Release),
        None => debug_assert!(false, "init_this_cpu: CPU index {cpu} beyond the IPI table"),
    }
}

/// This CPU's GIC CPU-interface mask (the SGI target bit), read from the
/// banked GICD_ITARGETSR0. A uniprocessor GIC reads 0 here.
pub fn interface_mask() -> u8 {
    read(&GICD, GICD_ITARGETSR) as u8
}

/// Stops this CPU's tick.
pub fn stop_timer() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR);
}

/// Sends the kernel IPI to the CPUs whose interface bits are in `targets`.
pub fn send_ipi(targets: u8) {
    // SAFETY: barrier only: make earlier stores (the work flags the IPI
    // announces) visible before the interrupt can be taken.
    unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
    write(&GICD, GICD_SGIR, (targets as u32) << 16 | IPI_SGI);
}

/// The first shared peripheral interrupt id, and the end of the range.
const FIRST_SPI: u32 = 32;
const SPI_END: u32 = 1020;

/// A device's interrupt line, as the GIC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIrq {
    /// The GIC interrupt id (an SPI: 32 + the device tree's SPI number).
    pub intid: u32,
    pub trigger: Trigger,
}

impl core::fmt::Display for DeviceIrq {
    /// `irq 36 (SPI 4)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.intid.checked_sub(FIRST_SPI) {
            Some(spi) => write!(f, "irq {} (SPI {spi})", self.intid),
            None => write!(f, "irq {}", self.intid),
        }
    }
}

/// The attached device lines, by SPI id.
static DEVICE_LINES: DeviceLines = DeviceLines::new();

/// Configures SPI `irq` (trigger mode, priority, the boot CPU as its
/// target) and enables it: a new device line, its handler in place.
fn enable_spi(irq: &DeviceIrq) {
    let id = irq.intid as u64;
    // Trigger mode: two bits per id, the upper one set for edge.
    let cfg = GICD_ICFGR + (id / 16) * 4;
    let shift = (id % 16) * 2;
    let edge = if irq.trigger == Trigger::Edge { 0b10 } else { 0b00 };
    let old = read(&GICD, cfg);
    write(&GICD, cfg, (old & !(0b11 << shift)) | (edge << shift));
    // Priority and target CPU: one byte per id, in words of four.
    let byte = (id & 3) * 8;
    let prio = GICD_IPRIORITYR + (id & !3);
    write(&GICD, prio, (read(&GICD, prio) & !(0xff << byte)) | (0xa0 << byte));
    // The boot CPU's interface; a uniprocessor GIC ignores the field.
    let target = INTERFACE_MASKS[0].load(Ordering::Acquire).max(1) as u32;
    let targets = GICD_ITARGETSR + (id & !3);
    write(&GICD, targets, (read(&GICD, targets) & !(0xff << byte)) | (target << byte));
    write(&GICD, GICD_ISENABLER + (id / 32) * 4, 1 << (id % 32));
}

/// Called by the IRQ vector.
pub(crate) fn dispatch() {
    loop {
        let iar = read(&GICC, GICC_IAR);
        let id = iar & 0x3ff;
        if id == SPURIOUS {
            break;
        }
        match id {
            TIMER_PPI => {
                CNTV_TVAL_EL0.set(TICK_COUNTS.load(Ordering::Relaxed));
                write(&GICC, GICC_EOIR, iar);
                common::run_timer_hook();
            }
            IPI_SGI => {
                write(&GICC, GICC_EOIR, iar);
                common::run_ipi_hook();
            }
            spi if (FIRST_SPI..SPI_END).contains(&spi) => {
                if let Some(index) = DEVICE_LINES.index_of(spi) {
                    DEVICE_LINES.run(index);
                }
                write(&GICC, GICC_EOIR, iar);
            }
            other => {
                write(&GICC, GICC_EOIR, iar);
                panic!("unexpected interrupt id {other}");
            }
        }
    }
    common::run_after_irq_hook();
}

impl Irq for Aarch64 {
    type DeviceIrq = DeviceIrq;

    fn irq_enable() {
        // SAFETY: unmasking IRQs only lets pending interrupts be taken.
        unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
    }

    fn irq_disable() {
        // SAFETY: masking IRQs has no effect on memory.
        unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack)) };
    }

    fn irq_enabled() -> bool {
        let daif: u64;
        // SAFETY: reading DAIF has no effect.
        unsafe { core::arch::asm!("mrs {0}, daif", out(reg) daif, options(nomem, nostack)) };
        daif & (1 << 7) == 0
    }

    /// `WFI` wakes on a pending interrupt even while masked, so none is
    /// missed between the check and the wait; interrupts are unmasked
    /// after it, and the pending one is taken.
    fn wait_for_interrupt() {
        // SAFETY: WFI only waits; unmasking lets the pending interrupt be
        // taken.
        unsafe { core::arch::asm!("wfi", "msr daifclr, #2", options(nomem, nostack)) };
    }

    /// The virtual timer, rearmed by [`dispatch`] on every tick.
    fn start_timer(hz: u32) {
        let counts = (CNTFRQ_EL0.get() / hz.max(1) as u64).max(1);
        TICK_COUNTS.store(counts, Ordering::Relaxed);
        CNTV_TVAL_EL0.set(counts);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    }

    /// Nothing is sent to a CPU that has not set up its interface yet. A
    /// CPU may send to itself (with the SGI's "this CPU only" filter when
    /// its mask is unknown, as on a uniprocessor GIC).
    fn send_ipi_to(cpu: usize) {
        let Some(slot) = INTERFACE_MASKS.get(cpu) else {
            debug_assert!(false, "send_ipi_to: CPU index {cpu} beyond the IPI table");
            return;
        };
        let mask = slot.load(Ordering::Acquire);
        if mask != 0 {
            send_ipi(mask);
        } else if cpu == Self::cpu_index() {
            // SAFETY: barrier only, as in `send_ipi`.
            unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
            write(&GICD, GICD_SGIR, SGIR_TO_SELF | IPI_SGI);
        }
    }

    /// The GIC must be set up and the id an SPI; a new line is configured
    /// and enabled once its handler is in place.
    fn attach_device_irq(irq: DeviceIrq, handler: fn(usize), arg: usize) -> Result<(), AttachError> {
        if GICD.load(Ordering::Relaxed) == 0 {
            return Err(AttachError::NoController);
        }
        if !(FIRST_SPI..SPI_END).contains(&irq.intid) {
            return Err(AttachError::NoSuchLine);
        }
        DEVICE_LINES.attach::<Aarch64>(
            irq.intid,
            (handler, arg),
            || Ok(()),
            |_| {
                enable_spi(&irq);
                Ok(())
            },
        )
    }
}
