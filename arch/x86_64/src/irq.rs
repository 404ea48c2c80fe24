//! Interrupts on x86_64: the legacy PIC silenced, the local APIC (xAPIC,
//! memory-mapped) programmed for a periodic timer and inter-processor
//! interrupts, and interrupt enable/disable.
//!
//! ## Protocol
//!
//! - Vectors: [`TIMER_VECTOR`] (the local APIC timer), [`IPI_VECTOR`] (the
//!   one kernel IPI; the kernel keeps per-CPU work flags to say why),
//!   [`SPURIOUS_VECTOR`], and one vector per attached device line from
//!   [`DEVICE_VECTOR_BASE`] (the line's index in [`DEVICE_LINES`]). The
//!   trap stubs deliver them to [`dispatch`], which acknowledges (EOI) and
//!   runs the kernel's hooks in the order `arch_common::irq` describes.
//! - Device lines (`Irq::attach_device_irq`): an IO-APIC input (GSI) routed
//!   to a vector of its own on the boot CPU; the table of lines and its
//!   locking are `arch_common::irq::DeviceLines`. A device vector runs its
//!   handlers *before* the EOI, so a level-triggered line is low again when
//!   the EOI lets the IO-APIC look at it.
//! - The APIC's registers are reached through the direct map (the
//!   bootloader maps all physical addresses up to the top of the firmware's
//!   memory map, which covers 0xFEE0_0000). The firmware's MTRRs make that
//!   range uncacheable, which wins over the write-back attributes of the
//!   direct map.
//! - x2APIC is not used: QEMU 7.2's TCG does not offer it.
//! - The kernel names CPUs by index (0 = boot CPU), the APIC by APIC id.
//!   `Irq::send_ipi_to` translates through a table: slot 0 is filled by
//!   [`init_boot_cpu`], slot `i` by `Smp::start_cpu` ([`crate::smp`]) before CPU
//!   `i` runs (and cleared again if it does not start).
//! - The interrupt command register is two writes (destination, then
//!   command); `send_icr` makes them with interrupts off, so an interrupt
//!   handler on the same CPU cannot slip its own IPI between them.
#![cfg(target_os = "none")]

use crate::cpu::MAX_CPUS;
use crate::X86_64;
use arch_common::irq::{self as common, AttachError, DeviceLines, Irq, Trigger, NR_DEVICE_LINES};
use arch_common::time::Time;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::ApicBase;

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x30;
/// The kernel's IPI vector.
pub const IPI_VECTOR: u8 = 0x31;
/// Where the APIC sends spurious interrupts (no EOI for these).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The vector of device line 0; line `i` has `DEVICE_VECTOR_BASE + i`.
pub const DEVICE_VECTOR_BASE: u8 = 0x40;

/// The local APIC registers this module uses, by their offset in the
/// APIC's register page: [`apic_read`] and [`apic_write`] take nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum ApicReg {
    /// This APIC's id, in bits 24..32.
    Id = 0x20,
    /// End of interrupt: written (with 0) when a handler is done.
    Eoi = 0xb0,
    /// Spurious-interrupt vector; bit 8 enables the APIC.
    Svr = 0xf0,
    /// Interrupt command, low half: vector, delivery mode, level; writing
    /// it sends the IPI.
    IcrLow = 0x300,
    /// Interrupt command, high half: the destination APIC id in bits 24..32.
    IcrHigh = 0x310,
    /// The timer's local vector table entry: vector, mask, mode.
    LvtTimer = 0x320,
    /// The timer's initial count (writing it starts the count).
    TimerInitial = 0x380,
    /// The timer's current count.
    TimerCurrent = 0x390,
    /// The timer's divide configuration.
    TimerDivide = 0x3e0,
}

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// ICR delivery mode INIT (resets the target into wait-for-SIPI).
const ICR_INIT: u32 = 0b101 << 8;
/// ICR delivery mode start-up (SIPI); the vector is the start page number.
const ICR_STARTUP: u32 = 0b110 << 8;
/// ICR level: assert (the only level modern APICs use).
const ICR_LEVEL_ASSERT: u32 = 1 << 14;

/// "No CPU" in [`CPU_APIC_IDS`] (0xff is the broadcast id, never a CPU's).
const NO_APIC_ID: u32 = u32::MAX;
/// The APIC id of each kernel CPU index, or [`NO_APIC_ID`]. Written by the
/// boot CPU only (at init and in `smp::start_cpu`), read by any CPU
/// sending an IPI; a slot is filled before its CPU runs tasks, so a reader
/// that knows the CPU is online sees its id (Release/Acquire).
static CPU_APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NO_APIC_ID) }; MAX_CPUS];

/// Virtual address of the local APIC's registers (0 before [`init_boot_cpu`]).
static APIC_BASE: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks per second (divide-by-16), measured once.
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);

fn apic_read(reg: ApicReg) -> u32 {
    let base = APIC_BASE.load(Ordering::Relaxed);
    debug_assert!(base != 0, "apic_read before init");
    // SAFETY: `base` maps the local APIC's 4 KiB register page (see the
    // module doc), `reg` is one of its registers; registers are 32-bit,
    // accessed with volatile loads.
    unsafe { core::ptr::read_volatile((base + reg as u64) as *const u32) }
}

fn apic_write(reg: ApicReg, value: u32) {
    let base = APIC_BASE.load(Ordering::Relaxed);
    debug_assert!(base != 0, "apic_write before init");
    // SAFETY: as for `apic_read`.
    unsafe { core::ptr::write_volatile((base + reg as u64) as *mut u32, value) }
}

/// Masks both legacy 8259 PICs after moving their vectors to 0x20..0x30,
/// out of the exception range, so a stray legacy interrupt cannot look like
/// an exception.
fn silence_pic() {
    let mut cmd1 = Port::<u8>::new(0x20);
    let mut data1 = Port::<u8>::new(0x21);
    let mut cmd2 = Port::<u8>::new(0xa0);
    let mut data2 = Port::<u8>::new(0xa1);
    // SAFETY: the standard ICW1..ICW4 sequence on the PC's 8259 ports,
    // then a full mask; no other device uses these ports.
    unsafe {
        cmd1.write(0x11);
        cmd2.write(0x11);
        data1.write(0x20);
        data2.write(0x28);
        data1.write(4);
        data2.write(2);
        data1.write(1);
        data2.write(1);
        data1.write(0xff);
        data2.write(0xff);
    }
}

/// This CPU's local APIC id.
pub fn apic_id() -> u32 {
    apic_read(ApicReg::Id) >> 24
}

/// Enables this CPU's local APIC (spurious vector, software enable).
fn enable_local_apic() {
    apic_write(ApicReg::Svr, 0x100 | SPURIOUS_VECTOR as u32);
    apic_write(ApicReg::LvtTimer, LVT_MASKED);
}

/// Boot CPU, once: silence the PIC, find and enable the local APIC, and
/// measure its timer against the (already calibrated) TSC.
pub fn init_boot_cpu(phys_offset: u64) {
    silence_pic();
    let base = ApicBase::read().0.start_address().as_u64();
    APIC_BASE.store(base + phys_offset, Ordering::Relaxed);
    enable_local_apic();
    // Count APIC timer ticks (divide by 16) over 10 ms of TSC time.
    apic_write(ApicReg::TimerDivide, 0x3);
    apic_write(ApicReg::TimerInitial, u32::MAX);
    let start = X86_64::now_ns();
    while X86_64::now_ns() - start < 10_000_000 {
        core::hint::spin_loop();
    }
    let counted = u32::MAX - apic_read(ApicReg::TimerCurrent);
    apic_write(ApicReg::TimerInitial, 0);
    APIC_TIMER_HZ.store(counted as u64 * 100, Ordering::Relaxed);
    CPU_APIC_IDS[0].store(apic_id(), Ordering::Release);
}

/// True once [`init_boot_cpu`] has found the local APIC.
pub(crate) fn initialised() -> bool {
    APIC_BASE.load(Ordering::Relaxed) != 0
}

/// Every other CPU, once, in its start-up path.
pub fn init_this_cpu() {
    enable_local_apic();
}

/// Stops this CPU's timer.
pub fn stop_timer() {
    apic_write(ApicReg::LvtTimer, LVT_MASKED);
    apic_write(ApicReg::TimerInitial, 0);
}

/// Sends the kernel IPI to the CPU whose APIC id is `apic_id`.
pub fn send_ipi(apic_id: u32) {
    send_icr(apic_id, IPI_VECTOR as u32);
}

/// Records (`Some`) or forgets (`None`) the APIC id of kernel CPU `cpu`.
/// Boot CPU only (`smp::start_cpu`).
pub(crate) fn set_cpu_apic_id(cpu: usize, apic_id: Option<u32>) {
    CPU_APIC_IDS[cpu].store(apic_id.unwrap_or(NO_APIC_ID), Ordering::Release);
}

/// The kernel index of the CPU whose APIC id is `apic_id`, if it was
/// recorded.
pub(crate) fn cpu_of_apic_id(apic_id: u32) -> Option<usize> {
    CPU_APIC_IDS.iter().position(|id| id.load(Ordering::Acquire) == apic_id)
}

/// Sends INIT to the CPU whose APIC id is `apic_id`: it resets and waits
/// for a start-up IPI.
pub(crate) fn send_init(apic_id: u32) {
    send_icr(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// Sends a start-up IPI: the target, waiting after INIT, starts in real
/// mode at `page << 12` (CS = `page << 8`, IP = 0).
pub(crate) fn send_startup(apic_id: u32, page: u8) {
    send_icr(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | page as u32);
}

/// Writes the interrupt command register and waits until the APIC has
/// accepted the message. The two writes are made with interrupts off.
pub(crate) fn send_icr(apic_id: u32, low: u32) {
    X86_64::with_irqs_disabled(|| {
        apic_write(ApicReg::IcrHigh, apic_id << 24);
        apic_write(ApicReg::IcrLow, low);
        while apic_read(ApicReg::IcrLow) & ICR_DELIVERY_PENDING != 0 {
            core::hint::spin_loop();
        }
    })
}

/// Which level of a line is "asserted".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    High,
    Low,
}

/// A device's interrupt line, as the IO-APIC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIrq {
    /// The global system interrupt (IO-APIC input).
    pub gsi: u32,
    /// The legacy (PIC) IRQ number the firmware gave the device, if it came
    /// from a PCI interrupt-line register.
    pub legacy: Option<u8>,
    pub trigger: Trigger,
    pub polarity: Polarity,
}

impl core::fmt::Display for DeviceIrq {
    /// `irq 11` (the legacy number, as PC users know it), or `GSI n` when it
    /// is routed elsewhere.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.legacy {
            Some(irq) if irq as u32 == self.gsi => write!(f, "irq {irq}"),
            Some(irq) => write!(f, "irq {irq} (GSI {})", self.gsi),
            None => write!(f, "GSI {}", self.gsi),
        }
    }
}

/// The attached device lines, by GSI; line `i` has vector
/// `DEVICE_VECTOR_BASE + i`.
static DEVICE_LINES: DeviceLines = DeviceLines::new();

/// Called by the trap handler for vectors 32..=255 taken in the kernel:
/// the handlers, then the preemption point.
pub(crate) fn dispatch(vector: u8) {
    if run_handlers(vector) {
        common::run_after_irq_hook();
    }
}

/// Called for an interrupt taken in user mode ([`crate::user`]): the
/// handlers only. The preemption point is the kernel's user loop, after
/// `enter_user` returned `UserExit::Interrupt`, not this trap frame.
pub(crate) fn dispatch_from_user(vector: u8) {
    run_handlers(vector);
}

/// Acknowledges `vector` and runs its handlers; false for a spurious
/// interrupt (nothing ran).
fn run_handlers(vector: u8) -> bool {
    match vector {
        SPURIOUS_VECTOR => return false, // no EOI for spurious interrupts
        v if (DEVICE_VECTOR_BASE..DEVICE_VECTOR_BASE + NR_DEVICE_LINES as u8).contains(&v) => {
            DEVICE_LINES.run((v - DEVICE_VECTOR_BASE) as usize);
            apic_write(ApicReg::Eoi, 0);
        }
        TIMER_VECTOR => {
            apic_write(ApicReg::Eoi, 0);
            common::run_timer_hook();
        }
        IPI_VECTOR => {
            apic_write(ApicReg::Eoi, 0);
            common::run_ipi_hook();
        }
        other => {
            apic_write(ApicReg::Eoi, 0);
            panic!("unexpected interrupt vector {other:#x}");
        }
    }
    true
}

impl Irq for X86_64 {
    type DeviceIrq = DeviceIrq;

    fn irq_enable() {
        x86_64::instructions::interrupts::enable();
    }

    fn irq_disable() {
        x86_64::instructions::interrupts::disable();
    }

    fn irq_enabled() -> bool {
        x86_64::instructions::interrupts::are_enabled()
    }

    /// `STI; HLT`: `STI` takes effect after `HLT` starts, so no interrupt
    /// slips in between.
    fn wait_for_interrupt() {
        x86_64::instructions::interrupts::enable_and_hlt();
    }

    fn start_timer(hz: u32) {
        let count = (APIC_TIMER_HZ.load(Ordering::Relaxed) / hz.max(1) as u64).clamp(1, u32::MAX as u64);
        apic_write(ApicReg::TimerDivide, 0x3);
        apic_write(ApicReg::LvtTimer, TIMER_VECTOR as u32 | LVT_PERIODIC);
        apic_write(ApicReg::TimerInitial, count as u32);
    }

    /// Sends [`IPI_VECTOR`] to the CPU's APIC id. An index no CPU was
    /// started with is a kernel bug, asserted in debug builds.
    fn send_ipi_to(cpu: usize) {
        let id = CPU_APIC_IDS.get(cpu).map_or(NO_APIC_ID, |id| id.load(Ordering::Acquire));
        debug_assert!(id != NO_APIC_ID, "send_ipi_to: no CPU with index {cpu}");
        if id != NO_APIC_ID {
            send_ipi(id);
        }
    }

    /// A new line is checked against the IO-APICs before it is taken, and
    /// routed to its vector on the boot CPU once its handler is in place.
    fn attach_device_irq(irq: DeviceIrq, handler: fn(usize), arg: usize) -> Result<(), AttachError> {
        let check = || crate::ioapic::route_check(&irq);
        let route = |index: usize| {
            let boot_cpu = CPU_APIC_IDS[0].load(Ordering::Acquire);
            crate::ioapic::route(&irq, DEVICE_VECTOR_BASE + index as u8, boot_cpu)
        };
        DEVICE_LINES.attach::<X86_64>(irq.gsi, (handler, arg), check, route)
    }
}
