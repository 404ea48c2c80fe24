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

/// Distributor registers, shared by all CPUs. The per-interrupt ones are
/// banks of 32-bit words holding a field of [`Gicd::bits_per_id`] bits per
/// id, id 0 in the low bits of word 0 ([`gicd_set_field`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gicd {
    /// Control: bit 0 forwards interrupts to the CPU interfaces.
    Ctlr,
    /// Set-enable: a bit per id; writing 1 enables the id, 0 does nothing.
    Isenabler,
    /// Priority: a byte per id.
    Ipriorityr,
    /// Target CPU interfaces: a byte per id. Word 0 is banked and reads as
    /// this CPU's own interface bit.
    Itargetsr,
    /// Configuration: two bits per id, the upper one set for edge.
    Icfgr,
    /// Software-generated interrupts: target list and SGI id.
    Sgir,
}

impl Gicd {
    /// The register's offset from the distributor's base.
    const fn offset(self) -> u64 {
        match self {
            Gicd::Ctlr => 0x000,
            Gicd::Isenabler => 0x100,
            Gicd::Ipriorityr => 0x400,
            Gicd::Itargetsr => 0x800,
            Gicd::Icfgr => 0xc00,
            Gicd::Sgir => 0xf00,
        }
    }

    /// The width of one interrupt id's field in a per-interrupt bank; 0
    /// for the registers that are not banks.
    const fn bits_per_id(self) -> u32 {
        match self {
            Gicd::Isenabler => 1,
            Gicd::Icfgr => 2,
            Gicd::Ipriorityr | Gicd::Itargetsr => 8,
            Gicd::Ctlr | Gicd::Sgir => 0,
        }
    }
}

/// CPU interface registers, banked per CPU (one interface per CPU at the
/// same address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gicc {
    /// Control: bit 0 lets the interface signal interrupts to this CPU.
    Ctlr,
    /// Priority mask: only interrupts of a higher priority are signalled.
    Pmr,
    /// Interrupt acknowledge: reading it takes the highest pending id.
    Iar,
    /// End of interrupt: the value read from IAR, written back.
    Eoir,
}

impl Gicc {
    /// The register's offset from the CPU interface's base.
    const fn offset(self) -> u64 {
        match self {
            Gicc::Ctlr => 0x000,
            Gicc::Pmr => 0x004,
            Gicc::Iar => 0x00c,
            Gicc::Eoir => 0x010,
        }
    }
}

/// The priority every interrupt is given (0xff in PMR lets it through).
const PRIORITY: u32 = 0xa0;

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

fn mmio_read(block: &AtomicU64, offset: u64) -> u32 {
    let b = block.load(Ordering::Relaxed);
    debug_assert!(b != 0, "GIC access before init");
    // SAFETY: `b` maps the GIC block (Device memory, see the module doc)
    // and `offset` is one of its registers ([`Gicd`], [`Gicc`]); they are
    // 32-bit, accessed with volatile loads.
    unsafe { core::ptr::read_volatile((b + offset) as *const u32) }
}

fn mmio_write(block: &AtomicU64, offset: u64, value: u32) {
    let b = block.load(Ordering::Relaxed);
    debug_assert!(b != 0, "GIC access before init");
    // SAFETY: as for `mmio_read`.
    unsafe { core::ptr::write_volatile((b + offset) as *mut u32, value) }
}

/// Word `word` of distributor register `reg` (0 for a single register).
fn gicd_read(reg: Gicd, word: u32) -> u32 {
    mmio_read(&GICD, reg.offset() + 4 * word as u64)
}

fn gicd_write(reg: Gicd, word: u32, value: u32) {
    mmio_write(&GICD, reg.offset() + 4 * word as u64, value)
}

fn gicc_read(reg: Gicc) -> u32 {
    mmio_read(&GICC, reg.offset())
}

fn gicc_write(reg: Gicc, value: u32) {
    mmio_write(&GICC, reg.offset(), value)
}

/// Sets interrupt `id`'s field in the distributor bank `reg` to `value`,
/// leaving the other ids' fields as they are.
fn gicd_set_field(reg: Gicd, id: u32, value: u32) {
    let width = reg.bits_per_id();
    debug_assert!(width > 0, "gicd_set_field: {reg:?} is not a per-interrupt bank");
    let per_word = 32 / width;
    let (word, shift) = (id / per_word, (id % per_word) * width);
    let mask = (u32::MAX >> (32 - width)) << shift;
    let old = gicd_read(reg, word);
    gicd_write(reg, word, (old & !mask) | (value << shift));
}

/// Enables interrupt `id` at the distributor.
fn gicd_enable(id: u32) {
    gicd_write(Gicd::Isenabler, id / 32, 1 << (id % 32));
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
    gicd_write(Gicd::Ctlr, 0, 1);
    init_this_cpu();
}

/// Every CPU (the boot CPU through [`init_boot_cpu`]), after its kernel
/// index is set ([`crate::cpu::set_index`]): enable the banked SGI and timer
/// interrupts and this CPU's interface, and record its interface mask for
/// `Irq::send_ipi_to`.
pub fn init_this_cpu() {
    for id in [IPI_SGI, TIMER_PPI] {
        gicd_set_field(Gicd::Ipriorityr, id, PRIORITY);
        gicd_enable(id);
    }
    gicc_write(Gicc::Pmr, 0xff);
    gicc_write(Gicc::Ctlr, 1);
    let cpu = Aarch64::cpu_index();
    match INTERFACE_MASKS.get(cpu) {
        Some(slot) => slot.store(interface_mask(), Ordering::Release),
        None => debug_assert!(false, "init_this_cpu: CPU index {cpu} beyond the IPI table"),
    }
}

/// This CPU's GIC CPU-interface mask (the SGI target bit), read from the
/// banked GICD_ITARGETSR0. A uniprocessor GIC reads 0 here.
pub fn interface_mask() -> u8 {
    gicd_read(Gicd::Itargetsr, 0) as u8
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
    gicd_write(Gicd::Sgir, 0, (targets as u32) << 16 | IPI_SGI);
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
    let id = irq.intid;
    let edge = if irq.trigger == Trigger::Edge { 0b10 } else { 0b00 };
    gicd_set_field(Gicd::Icfgr, id, edge);
    gicd_set_field(Gicd::Ipriorityr, id, PRIORITY);
    // The boot CPU's interface; a uniprocessor GIC ignores the field.
    let target = INTERFACE_MASKS[0].load(Ordering::Acquire).max(1) as u32;
    gicd_set_field(Gicd::Itargetsr, id, target);
    gicd_enable(id);
}

/// Called by the IRQ vector from the kernel: the handlers, then the
/// kernel's preemption point.
pub(crate) fn dispatch() {
    handle_pending();
    common::run_after_irq_hook();
}

/// Runs the handlers of every pending interrupt, without the preemption
/// point: for an IRQ taken in user mode (`crate::user`), where the task's
/// loop preempts after `enter_user` returns.
pub(crate) fn handle_pending() {
    loop {
        let iar = gicc_read(Gicc::Iar);
        let id = iar & 0x3ff;
        if id == SPURIOUS {
            break;
        }
        match id {
            TIMER_PPI => {
                CNTV_TVAL_EL0.set(TICK_COUNTS.load(Ordering::Relaxed));
                gicc_write(Gicc::Eoir, iar);
                common::run_timer_hook();
            }
            IPI_SGI => {
                gicc_write(Gicc::Eoir, iar);
                common::run_ipi_hook();
            }
            spi if (FIRST_SPI..SPI_END).contains(&spi) => {
                if let Some(index) = DEVICE_LINES.index_of(spi) {
                    DEVICE_LINES.run(index);
                }
                gicc_write(Gicc::Eoir, iar);
            }
            other => {
                gicc_write(Gicc::Eoir, iar);
                panic!("unexpected interrupt id {other}");
            }
        }
    }
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
            gicd_write(Gicd::Sgir, 0, SGIR_TO_SELF | IPI_SGI);
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
