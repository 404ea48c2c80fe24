//! Interrupts on AArch64 `virt`: the GICv2 distributor and CPU interface,
//! the EL1 virtual timer as the periodic tick, SGIs as IPIs, and the DAIF
//! I bit.
//!
//! ## Protocol
//!
//! - Interrupt ids: [`IPI_SGI`] (the one kernel IPI; the kernel keeps
//!   per-CPU work flags to say why) and [`TIMER_PPI`] (the virtual timer,
//!   PPI 11 = id 27). The IRQ vector calls [`dispatch`], which acknowledges
//!   each pending interrupt (IAR), ends it (EOIR), then calls the kernel's
//!   [`Hooks`] with interrupts still masked; `after_irq` runs last and may
//!   switch tasks (the interrupted context, FP/SIMD registers included,
//!   stays saved on its own stack).
//! - The GIC's registers are in the low 1 GiB Device block of the boot
//!   tables, reached at `DIRECT_MAP_OFFSET + pa`. GICv3 (`gic-version=3`)
//!   is not supported yet: [`init_boot_cpu`] refuses it by name.
//! - The virtual timer is one-shot in hardware; the handler rearms it, so it
//!   ticks at the rate [`start_timer`] set.
//! - Device lines ([`attach_device_irq`]): a shared peripheral interrupt
//!   (SPI, ids 32..1020) configured level or edge, routed to the boot CPU
//!   and enabled, with up to [`NR_SHARED_HANDLERS`] handlers (devices
//!   sharing it; each checks its own device). [`dispatch`] runs a device
//!   line's handlers *before* its EOIR: they quiet their devices, so a
//!   level-triggered SPI is low when the GIC next looks at it. The line
//!   table is written under [`ATTACH_LOCK`] (boot, task context) and read
//!   without a lock by [`dispatch`]: each field is a `spin::Once`, set
//!   before the SPI is enabled.
//! - IPIs by kernel CPU index: each CPU, in [`init_this_cpu`], records its
//!   own CPU-interface bit (the banked GICD_ITARGETSR0) in a table indexed
//!   by its kernel index; [`send_ipi_to`] looks the target up there. A CPU
//!   whose slot is still 0 has not set up its GIC interface yet and gets no
//!   IPI (it is not online for the kernel either).

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The SGI used as the kernel IPI.
pub const IPI_SGI: u32 = 0;
/// The EL1 virtual timer's interrupt id (PPI 11).
pub const TIMER_PPI: u32 = 27;
const SPURIOUS: u32 = 1023;

const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_ICFGR: u64 = 0xc00;
const GICD_SGIR: u64 = 0xf00;
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;

static GICD: AtomicU64 = AtomicU64::new(0);
static GICC: AtomicU64 = AtomicU64::new(0);
/// Timer counts per tick (0: timer off on this CPU... shared rate).
static TICK_COUNTS: AtomicU64 = AtomicU64::new(0);

/// Kernel CPU indexes the IPI table covers: at least the kernel's limit
/// (`kernel::boot::MAX_CPUS`). GICv2 itself has at most 8 CPU interfaces.
const NR_IPI_SLOTS: usize = 16;
/// Each CPU's GIC CPU-interface mask (its SGI target bit), by kernel index;
/// 0 = not set up yet. Written once per CPU by [`init_this_cpu`] (Release),
/// read by [`send_ipi_to`] (Acquire).
static INTERFACE_MASKS: [AtomicU8; NR_IPI_SLOTS] = [const { AtomicU8::new(0) }; NR_IPI_SLOTS];
/// GICD_SGIR TargetListFilter = 0b10: to the requesting CPU only.
const SGIR_TO_SELF: u32 = 0b10 << 24;

/// What the kernel wants done on each interrupt. Called with interrupts
/// masked, after the end of interrupt.
#[derive(Clone, Copy)]
pub struct Hooks {
    pub timer: fn(),
    pub ipi: fn(),
    /// The preemption point, after every device interrupt.
    pub after_irq: fn(),
}

/// The kernel's hooks, installed once by [`set_hooks`] (the scheduler's
/// start); interrupts before that only acknowledge.
static HOOKS: spin::Once<Hooks> = spin::Once::new();

/// Installs the kernel's interrupt hooks (once; later calls are ignored).
pub fn set_hooks(hooks: Hooks) {
    HOOKS.call_once(|| hooks);
}

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
/// [`send_ipi_to`].
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
    let cpu = crate::cpu::index();
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

/// Starts this CPU's periodic tick at `hz` interrupts per second.
pub fn start_timer(hz: u32) {
    let counts = (CNTFRQ_EL0.get() / hz.max(1) as u64).max(1);
    TICK_COUNTS.store(counts, Ordering::Relaxed);
    CNTV_TVAL_EL0.set(counts);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
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

/// Sends the kernel IPI to the CPU with kernel index `cpu`. Nothing is sent
/// to a CPU that has not set up its interface yet. A CPU may send to itself
/// (with the SGI's "this CPU only" filter when its mask is unknown, as on a
/// uniprocessor GIC).
pub fn send_ipi_to(cpu: usize) {
    let Some(slot) = INTERFACE_MASKS.get(cpu) else {
        debug_assert!(false, "send_ipi_to: CPU index {cpu} beyond the IPI table");
        return;
    };
    let mask = slot.load(Ordering::Acquire);
    if mask != 0 {
        send_ipi(mask);
    } else if cpu == crate::cpu::index() {
        // SAFETY: barrier only, as in `send_ipi`.
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
        write(&GICD, GICD_SGIR, SGIR_TO_SELF | IPI_SGI);
    }
}

/// The first shared peripheral interrupt id, and the end of the range.
const FIRST_SPI: u32 = 32;
const SPI_END: u32 = 1020;
/// Device lines that can be attached.
pub const NR_DEVICE_LINES: usize = 8;
/// Handlers one device line can carry.
pub const NR_SHARED_HANDLERS: usize = 4;

/// How a device line signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

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

/// Why a device interrupt could not be attached. The machine's fault (a
/// line that is not an SPI) or a kernel limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// The GIC was not set up.
    NoController,
    /// The id is not a shared peripheral interrupt.
    NoSuchLine,
    /// All [`NR_DEVICE_LINES`] lines are in use.
    NoFreeLine,
    /// The line already carries [`NR_SHARED_HANDLERS`] handlers.
    LineFull,
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AttachError::NoController => "the GIC is not set up",
            AttachError::NoSuchLine => "the interrupt is not a GIC shared peripheral interrupt",
            AttachError::NoFreeLine => "every device interrupt line is in use",
            AttachError::LineFull => "too many devices share that interrupt line",
        })
    }
}

/// A handler and the argument it is called with.
type Handler = (fn(usize), usize);

/// One attachable device line (see the module doc).
struct DeviceLine {
    irq: spin::Once<DeviceIrq>,
    handlers: [spin::Once<Handler>; NR_SHARED_HANDLERS],
}

static DEVICE_LINES: [DeviceLine; NR_DEVICE_LINES] = [const {
    DeviceLine { irq: spin::Once::new(), handlers: [const { spin::Once::new() }; NR_SHARED_HANDLERS] }
}; NR_DEVICE_LINES];
/// Serialises [`attach_device_irq`]; taken with interrupts off.
static ATTACH_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Makes `handler(arg)` run on every interrupt of `irq` (on the boot CPU,
/// interrupts masked, before the EOIR: it must quiet its device), and
/// enables the SPI. Lines may be shared: every handler of a line runs on
/// each of its interrupts.
pub fn attach_device_irq(irq: DeviceIrq, handler: fn(usize), arg: usize) -> Result<(), AttachError> {
    if GICD.load(Ordering::Relaxed) == 0 {
        return Err(AttachError::NoController);
    }
    if !(FIRST_SPI..SPI_END).contains(&irq.intid) {
        return Err(AttachError::NoSuchLine);
    }
    let was = save_and_disable();
    let guard = ATTACH_LOCK.lock();
    let result = attach_locked(irq, (handler, arg));
    drop(guard);
    restore(was);
    result
}

fn attach_locked(irq: DeviceIrq, handler: Handler) -> Result<(), AttachError> {
    let line = DEVICE_LINES
        .iter()
        .find(|l| l.irq.get().is_some_and(|i| i.intid == irq.intid))
        .or_else(|| DEVICE_LINES.iter().find(|l| l.irq.get().is_none()))
        .ok_or(AttachError::NoFreeLine)?;
    let new_line = line.irq.get().is_none();
    let slot = line.handlers.iter().find(|h| h.get().is_none()).ok_or(AttachError::LineFull)?;
    line.irq.call_once(|| irq);
    slot.call_once(|| handler);
    if new_line {
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
    Ok(())
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
                if let Some(h) = HOOKS.get() {
                    (h.timer)();
                }
            }
            IPI_SGI => {
                write(&GICC, GICC_EOIR, iar);
                if let Some(h) = HOOKS.get() {
                    (h.ipi)();
                }
            }
            spi if (FIRST_SPI..SPI_END).contains(&spi) => {
                let line = DEVICE_LINES.iter().find(|l| l.irq.get().is_some_and(|i| i.intid == spi));
                for (handler, arg) in line.into_iter().flat_map(|l| l.handlers.iter().filter_map(|h| h.get()))
                {
                    handler(*arg);
                }
                write(&GICC, GICC_EOIR, iar);
            }
            other => {
                write(&GICC, GICC_EOIR, iar);
                panic!("unexpected interrupt id {other}");
            }
        }
    }
    if let Some(h) = HOOKS.get() {
        (h.after_irq)();
    }
}

/// Enables interrupts on this CPU.
pub fn enable() {
    // SAFETY: unmasking IRQs only lets pending interrupts be taken.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Disables interrupts on this CPU.
pub fn disable() {
    // SAFETY: masking IRQs has no effect on memory.
    unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// True when interrupts are enabled on this CPU.
pub fn enabled() -> bool {
    let daif: u64;
    // SAFETY: reading DAIF has no effect.
    unsafe { core::arch::asm!("mrs {0}, daif", out(reg) daif, options(nomem, nostack)) };
    daif & (1 << 7) == 0
}

/// Disables interrupts; returns whether they were enabled, for [`restore`].
pub fn save_and_disable() -> bool {
    let was = enabled();
    disable();
    was
}

/// Re-enables interrupts if `was_enabled`.
pub fn restore(was_enabled: bool) {
    if was_enabled {
        enable();
    }
}

/// Waits for an interrupt, then takes it: `WFI` wakes on a pending
/// interrupt even while masked, so none is missed between the check and the
/// wait; interrupts are enabled on return.
pub fn wait_for_interrupt() {
    // SAFETY: WFI only waits; unmasking lets the pending interrupt be taken.
    unsafe { core::arch::asm!("wfi", "msr daifclr, #2", options(nomem, nostack)) };
}
