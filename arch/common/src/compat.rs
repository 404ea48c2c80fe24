//! Temporary: the kernel's old paths into an arch crate (`arch::irq::enable()`,
//! `arch::probe::read_u8(..)`, ...), as thin functions over the traits, so
//! that the kernel keeps building until it calls through the traits itself.
//! Each arch module invokes the macro of its part with the arch type. This
//! module goes away with the kernel's switch.

/// `console::write_bytes`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_console {
    ($arch:ty) => {
        pub fn write_bytes(bytes: &[u8]) {
            <$arch as $crate::console::Console>::console_write(bytes)
        }
    };
}

/// `cpu::index`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_cpu {
    ($arch:ty) => {
        pub fn index() -> usize {
            <$arch as $crate::cpu::Cpu>::cpu_index()
        }
    };
}

/// `time::{now_ns, describe}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_time {
    ($arch:ty) => {
        pub fn now_ns() -> u64 {
            <$arch as $crate::time::Time>::now_ns()
        }
        pub fn describe() -> (&'static str, u64) {
            <$arch as $crate::time::Time>::describe_clock()
        }
    };
}

/// `irq::{enable, disable, enabled, save_and_disable, restore,
/// wait_for_interrupt, start_timer, send_ipi_to, attach_device_irq,
/// set_hooks, Hooks}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_irq {
    ($arch:ty) => {
        pub use $crate::irq::{set_hooks, Hooks};
        pub fn enable() {
            <$arch as $crate::irq::Irq>::irq_enable()
        }
        pub fn disable() {
            <$arch as $crate::irq::Irq>::irq_disable()
        }
        pub fn enabled() -> bool {
            <$arch as $crate::irq::Irq>::irq_enabled()
        }
        pub fn save_and_disable() -> bool {
            <$arch as $crate::irq::Irq>::irq_save_and_disable()
        }
        pub fn restore(was_enabled: bool) {
            <$arch as $crate::irq::Irq>::irq_restore(was_enabled)
        }
        pub fn wait_for_interrupt() {
            <$arch as $crate::irq::Irq>::wait_for_interrupt()
        }
        pub fn start_timer(hz: u32) {
            <$arch as $crate::irq::Irq>::start_timer(hz)
        }
        pub fn send_ipi_to(cpu: usize) {
            <$arch as $crate::irq::Irq>::send_ipi_to(cpu)
        }
        pub fn attach_device_irq(
            irq: DeviceIrq,
            handler: fn(usize),
            arg: usize,
        ) -> Result<(), $crate::irq::AttachError> {
            <$arch as $crate::irq::Irq>::attach_device_irq(irq, handler, arg)
        }
    };
}

/// `context::{Context, switch}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_context {
    ($arch:ty) => {
        /// The shared context, with its old constructor.
        #[derive(Debug, Default)]
        #[repr(transparent)]
        pub struct Context($crate::context::Context);
        impl Context {
            /// # Safety
            /// As for `ContextSwitch::new_context`.
            pub unsafe fn new(stack_top: u64, entry: $crate::context::TaskEntry, arg: usize) -> Context {
                // SAFETY: the caller's contract.
                Context(unsafe {
                    <$arch as $crate::context::ContextSwitch>::new_context(stack_top, entry, arg)
                })
            }
        }
        /// # Safety
        /// As for `ContextSwitch::switch_context`.
        pub unsafe fn switch(from: *mut Context, to: *const Context) {
            // SAFETY: the caller's contract; `Context` is transparent.
            unsafe { <$arch as $crate::context::ContextSwitch>::switch_context(from.cast(), to.cast()) }
        }
    };
}

/// `mmu::{table_write_barrier, code_written, map_device}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_mmu {
    ($arch:ty) => {
        pub fn table_write_barrier() {
            <$arch as $crate::mmu::Mmu>::table_write_barrier()
        }
        pub fn code_written(va: mm::VirtAddr, len: u64) {
            <$arch as $crate::mmu::Mmu>::code_written(va, len)
        }
        pub fn map_device(
            root: mm::PhysAddr,
            pa: u64,
            size: u64,
            alloc_table: $crate::mmu::TableAlloc,
        ) -> Result<(), MapDeviceError> {
            <$arch as $crate::mmu::Mmu>::map_device(root, pa, size, alloc_table)
        }
    };
}

/// `probe::{read_u8, write_u8, exec, breakpoint, unmapped_address}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_probe {
    ($arch:ty) => {
        pub fn read_u8(addr: mm::VirtAddr) -> Result<u8, mm::fault::MemFault> {
            <$arch as $crate::probe::Probe>::probe_read_u8(addr)
        }
        /// # Safety
        /// As for `Probe::probe_write_u8`.
        pub unsafe fn write_u8(addr: mm::VirtAddr, value: u8) -> Result<(), mm::fault::MemFault> {
            // SAFETY: the caller's contract.
            unsafe { <$arch as $crate::probe::Probe>::probe_write_u8(addr, value) }
        }
        /// # Safety
        /// As for `Probe::probe_exec`.
        pub unsafe fn exec(target: mm::VirtAddr) -> Result<u64, mm::fault::MemFault> {
            // SAFETY: the caller's contract.
            unsafe { <$arch as $crate::probe::Probe>::probe_exec(target) }
        }
        pub fn breakpoint() -> $crate::probe::BreakpointHit {
            <$arch as $crate::probe::Probe>::probe_breakpoint()
        }
        pub fn unmapped_address() -> mm::VirtAddr {
            <$arch as $crate::probe::Probe>::unmapped_address()
        }
    };
}

/// `pci::{host, intx_irq}`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_pci {
    ($arch:ty) => {
        pub fn host() -> Option<$crate::pci::Host<Cam>> {
            <$arch as $crate::pci::Pci>::pci_host()
        }
        pub fn intx_irq(
            cam: &Cam,
            df: virtio_drivers::transport::pci::bus::DeviceFunction,
        ) -> Option<<$arch as $crate::irq::Irq>::DeviceIrq> {
            <$arch as $crate::pci::Pci>::intx_irq(cam, df)
        }
    };
}

/// `smp::start_cpu` with its four arguments.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_smp {
    ($arch:ty) => {
        /// # Safety
        /// As for `Smp::start_cpu`.
        pub unsafe fn start_cpu(
            arch_id: u64,
            cpu: usize,
            stack_top: u64,
            entry: $crate::context::TaskEntry,
        ) -> Result<(), SmpError> {
            let start = $crate::smp::CpuStart { arch_id, cpu, stack_top, entry };
            // SAFETY: the caller's contract.
            unsafe { <$arch as $crate::smp::Smp>::start_cpu(start) }
        }
    };
}

/// At the crate root: `exit` and `ExitStatus`.
#[doc(hidden)]
#[macro_export]
macro_rules! compat_root {
    ($arch:ty) => {
        pub use $crate::ExitStatus;
        pub fn exit(status: ExitStatus) -> ! {
            <$arch as $crate::Arch>::exit(status)
        }
    };
}
