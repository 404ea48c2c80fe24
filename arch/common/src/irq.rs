//! Interrupts: what an arch provides ([`Irq`]), and what both arches share:
//! the kernel's [`Hooks`], the table of device lines ([`DeviceLines`]) and
//! why attaching a device fails ([`AttachError`]).
//!
//! ## Protocol
//!
//! - The arch's interrupt entry acknowledges each interrupt and runs the
//!   kernel's code with interrupts still disabled: [`run_timer_hook`] or
//!   [`run_ipi_hook`] after the end of interrupt for its timer and its one
//!   kernel IPI (the kernel keeps per-CPU work flags to say why); a device
//!   line's handlers ([`DeviceLines::run`]) *before* the end of interrupt,
//!   because they quiet their devices, so that a level-triggered line is
//!   low again when the controller next looks at it; and
//!   [`run_after_irq_hook`] last, the preemption point, which may switch
//!   tasks (the interrupted context stays saved on its own stack).
//! - The hooks are installed once, by [`set_hooks`] (the scheduler's
//!   start); interrupts taken before that are only acknowledged.
//! - A device line is one interrupt-controller input (x86_64: an IO-APIC
//!   GSI; AArch64: a GIC SPI) with up to [`NR_SHARED_HANDLERS`] handlers
//!   (devices sharing the line; each checks its own device). The table is
//!   written by [`DeviceLines::attach`] under its lock, taken with
//!   interrupts off (boot, task context), and read without a lock by the
//!   interrupt path: each field is a `spin::Once`, set before the arch
//!   unmasks the line.

use core::fmt;

/// Device lines that can be attached.
pub const NR_DEVICE_LINES: usize = 8;
/// Handlers one device line can carry.
pub const NR_SHARED_HANDLERS: usize = 4;

/// The interrupts an arch provides.
pub trait Irq {
    /// A device's interrupt line as the arch's controller names it.
    type DeviceIrq: Copy + Eq + fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// Enables interrupts on this CPU.
    fn irq_enable();

    /// Disables interrupts on this CPU.
    fn irq_disable();

    /// True when interrupts are enabled on this CPU.
    fn irq_enabled() -> bool;

    /// Disables interrupts; returns whether they were enabled, for
    /// [`Irq::irq_restore`].
    fn irq_save_and_disable() -> bool {
        let was = Self::irq_enabled();
        Self::irq_disable();
        was
    }

    /// Re-enables interrupts if `was_enabled`.
    fn irq_restore(was_enabled: bool) {
        if was_enabled {
            Self::irq_enable();
        }
    }

    /// Runs `f` with interrupts disabled on this CPU, then restores them.
    fn with_irqs_disabled<R>(f: impl FnOnce() -> R) -> R {
        let was = Self::irq_save_and_disable();
        let result = f();
        Self::irq_restore(was);
        result
    }

    /// Enables interrupts and waits until one has been taken, with no
    /// window in which an interrupt pending before the call could be missed.
    fn wait_for_interrupt();

    /// Starts this CPU's periodic timer at `hz` interrupts per second.
    fn start_timer(hz: u32);

    /// Sends the kernel IPI to the CPU with kernel index `cpu`. Does nothing
    /// for a CPU that cannot take it yet (not started, or its interrupt
    /// controller not set up: it is not online for the kernel either).
    fn send_ipi_to(cpu: usize);

    /// Makes `handler(arg)` run on every interrupt of `irq` (on the boot
    /// CPU, interrupts disabled, before the end of interrupt: it must quiet
    /// its device), and unmasks the line. Lines may be shared: every handler
    /// of a line runs on each of its interrupts.
    fn attach_device_irq(irq: Self::DeviceIrq, handler: fn(usize), arg: usize) -> Result<(), AttachError>;
}

/// How a device line signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// What the kernel wants done on each interrupt (see the module doc).
#[derive(Clone, Copy)]
pub struct Hooks {
    pub timer: fn(),
    pub ipi: fn(),
    /// The preemption point, after every interrupt.
    pub after_irq: fn(),
}

/// The kernel's hooks, installed once by [`set_hooks`].
static HOOKS: spin::Once<Hooks> = spin::Once::new();

/// Installs the kernel's interrupt hooks (once; later calls are ignored).
pub fn set_hooks(hooks: Hooks) {
    HOOKS.call_once(|| hooks);
}

/// Runs the kernel's timer hook, if installed.
pub fn run_timer_hook() {
    if let Some(h) = HOOKS.get() {
        (h.timer)();
    }
}

/// Runs the kernel's IPI hook, if installed.
pub fn run_ipi_hook() {
    if let Some(h) = HOOKS.get() {
        (h.ipi)();
    }
}

/// Runs the kernel's after-interrupt hook (the preemption point), if
/// installed.
pub fn run_after_irq_hook() {
    if let Some(h) = HOOKS.get() {
        (h.after_irq)();
    }
}

/// Why a device interrupt could not be attached: the machine's fault (no
/// controller, a line it does not have) or a kernel limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// No interrupt controller for device lines (x86_64: the firmware
    /// described no IO-APIC; AArch64: the GIC was not set up).
    NoController,
    /// The controller has no such line (x86_64: no IO-APIC serves the
    /// GSI; AArch64: the id is not a shared peripheral interrupt).
    NoSuchLine,
    /// All [`NR_DEVICE_LINES`] lines are in use.
    NoFreeLine,
    /// The line already carries [`NR_SHARED_HANDLERS`] handlers.
    LineFull,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachError::NoController => "no interrupt controller serves device lines",
            AttachError::NoSuchLine => "the interrupt controller has no such line",
            AttachError::NoFreeLine => "every device interrupt line is in use",
            AttachError::LineFull => "too many devices share that interrupt line",
        })
    }
}

/// A device handler and the argument it is called with.
pub type Handler = (fn(usize), usize);

/// One attachable device line (see the module doc).
struct DeviceLine {
    /// The controller input (x86_64: the GSI; AArch64: the GIC id).
    input: spin::Once<u32>,
    handlers: [spin::Once<Handler>; NR_SHARED_HANDLERS],
}

/// The device lines of one interrupt controller: which input each line is,
/// and its handlers. An arch keeps one in a static; a line's index is how
/// the arch names it to the controller (x86_64: its vector is a base plus
/// the index).
pub struct DeviceLines {
    lines: [DeviceLine; NR_DEVICE_LINES],
    /// Serialises [`DeviceLines::attach`]; taken with interrupts off.
    attach_lock: spin::Mutex<()>,
}

impl DeviceLines {
    /// An empty table.
    pub const fn new() -> Self {
        DeviceLines {
            lines: [const {
                DeviceLine {
                    input: spin::Once::new(),
                    handlers: [const { spin::Once::new() }; NR_SHARED_HANDLERS],
                }
            }; NR_DEVICE_LINES],
            attach_lock: spin::Mutex::new(()),
        }
    }

    /// Adds `handler` to the line of controller input `input`: the line
    /// already attached to it, or else a free one. For a new line, `check()`
    /// runs before the line is taken (an error leaves the table as it was)
    /// and `enable(index)` after the handler is in place (it routes and
    /// unmasks the input). With interrupts disabled (through `A`) and the
    /// table's lock held.
    pub fn attach<A: Irq + ?Sized>(
        &self,
        input: u32,
        handler: Handler,
        check: impl FnOnce() -> Result<(), AttachError>,
        enable: impl FnOnce(usize) -> Result<(), AttachError>,
    ) -> Result<(), AttachError> {
        A::with_irqs_disabled(|| {
            let _guard = self.attach_lock.lock();
            let index = self
                .index_of(input)
                .or_else(|| self.lines.iter().position(|l| l.input.get().is_none()))
                .ok_or(AttachError::NoFreeLine)?;
            let line = &self.lines[index];
            let new_line = line.input.get().is_none();
            let slot = line.handlers.iter().find(|h| h.get().is_none()).ok_or(AttachError::LineFull)?;
            if new_line {
                check()?;
                line.input.call_once(|| input);
            }
            slot.call_once(|| handler);
            if new_line {
                enable(index)?;
            }
            Ok(())
        })
    }

    /// The index of the line attached to controller input `input`.
    pub fn index_of(&self, input: u32) -> Option<usize> {
        self.lines.iter().position(|l| l.input.get() == Some(&input))
    }

    /// Runs every handler of line `index` (none if it is out of range or
    /// not attached). The interrupt path, interrupts disabled.
    pub fn run(&self, index: usize) {
        let handlers = self.lines.get(index).into_iter().flat_map(|l| l.handlers.iter());
        for (handler, arg) in handlers.filter_map(|h| h.get()) {
            handler(*arg);
        }
    }
}

impl Default for DeviceLines {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::format;
    use std::sync::{Mutex, MutexGuard};

    /// The tests share the fake interrupt flag and the call counter: one
    /// at a time.
    fn serial() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A host stand-in for an arch: interrupts are a flag.
    struct FakeArch;

    static ENABLED: AtomicBool = AtomicBool::new(true);

    impl Irq for FakeArch {
        type DeviceIrq = u32;
        fn irq_enable() {
            ENABLED.store(true, Ordering::SeqCst);
        }
        fn irq_disable() {
            ENABLED.store(false, Ordering::SeqCst);
        }
        fn irq_enabled() -> bool {
            ENABLED.load(Ordering::SeqCst)
        }
        fn wait_for_interrupt() {}
        fn start_timer(_hz: u32) {}
        fn send_ipi_to(_cpu: usize) {}
        fn attach_device_irq(_irq: u32, _handler: fn(usize), _arg: usize) -> Result<(), AttachError> {
            Ok(())
        }
    }

    /// Sum of the arguments handlers were called with.
    static CALLED: AtomicUsize = AtomicUsize::new(0);

    fn count(arg: usize) {
        CALLED.fetch_add(arg, Ordering::SeqCst);
    }

    fn ok() -> Result<(), AttachError> {
        Ok(())
    }

    /// Attaches `count(arg)` to `input`; returns the index `enable` was
    /// called with, if it was.
    fn attach(table: &DeviceLines, input: u32, arg: usize) -> Result<Option<usize>, AttachError> {
        let mut enabled = None;
        table.attach::<FakeArch>(input, (count, arg), ok, |i| {
            enabled = Some(i);
            Ok(())
        })?;
        Ok(enabled)
    }

    #[test]
    fn handlers_of_one_input_share_its_line_and_all_run() {
        let _serial = serial();
        let table = DeviceLines::new();
        assert_eq!(attach(&table, 11, 1), Ok(Some(0)));
        assert_eq!(attach(&table, 10, 10), Ok(Some(1)));
        assert_eq!(attach(&table, 11, 100), Ok(None), "a second handler does not enable the line again");
        assert_eq!(table.index_of(11), Some(0));
        assert_eq!(table.index_of(10), Some(1));
        assert_eq!(table.index_of(12), None);
        CALLED.store(0, Ordering::SeqCst);
        table.run(0);
        assert_eq!(CALLED.load(Ordering::SeqCst), 101);
        table.run(5);
        table.run(NR_DEVICE_LINES + 1);
        assert_eq!(CALLED.load(Ordering::SeqCst), 101, "empty and out-of-range lines run nothing");
    }

    #[test]
    fn limits_are_reported() {
        let _serial = serial();
        let table = DeviceLines::new();
        for h in 0..NR_SHARED_HANDLERS {
            assert!(attach(&table, 5, h).is_ok());
        }
        assert_eq!(attach(&table, 5, 0), Err(AttachError::LineFull));
        for input in 1..NR_DEVICE_LINES as u32 {
            assert!(attach(&table, 100 + input, 0).is_ok());
        }
        assert_eq!(attach(&table, 999, 0), Err(AttachError::NoFreeLine));
    }

    #[test]
    fn a_refused_line_is_not_taken() {
        let _serial = serial();
        let table = DeviceLines::new();
        let refuse = || Err(AttachError::NoSuchLine);
        let r = table.attach::<FakeArch>(7, (count, 0), refuse, |_| panic!("enabled a refused line"));
        assert_eq!(r, Err(AttachError::NoSuchLine));
        assert_eq!(table.index_of(7), None);
        assert_eq!(attach(&table, 8, 0), Ok(Some(0)), "the refused line's slot is still free");
    }

    #[test]
    fn attach_runs_with_interrupts_disabled_and_restores_them() {
        let _serial = serial();
        let table = DeviceLines::new();
        FakeArch::irq_enable();
        let mut seen = None;
        table
            .attach::<FakeArch>(3, (count, 0), ok, |_| {
                seen = Some(FakeArch::irq_enabled());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, Some(false));
        assert!(FakeArch::irq_enabled());
    }

    #[test]
    fn save_and_restore_nest() {
        let _serial = serial();
        FakeArch::irq_enable();
        let outer = FakeArch::irq_save_and_disable();
        let inner = FakeArch::irq_save_and_disable();
        assert!(outer && !inner);
        FakeArch::irq_restore(inner);
        assert!(!FakeArch::irq_enabled(), "the inner restore keeps them off");
        FakeArch::irq_restore(outer);
        assert!(FakeArch::irq_enabled());
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(format!("{}", AttachError::LineFull), "too many devices share that interrupt line");
    }
}
