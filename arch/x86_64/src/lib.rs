//! x86_64 support: everything the kernel needs from the CPU and QEMU's `pc`
//! machine that is specific to this architecture.
//!
//! | module | what |
//! | --- | --- |
//! | [`console`] | `Console`: COM1, a 16550 UART (`uart_16550`) |
//! | [`gdt`] | the GDT and the TSS with its interrupt stacks (IST), per CPU |
//! | [`trap`] | the IDT, the entry stubs, the saved register frame, page-fault decoding |
//! | [`probe`] | `Probe`: the probe routines (loads, stores and calls that may fault) and their fix-ups |
//! | [`fw_cfg`] | QEMU's firmware configuration device, which carries the kernel arguments |
//! | [`cpu`] | `Cpu`: this CPU's kernel index, in a per-CPU register; the random-number instruction |
//! | [`context`] | `ContextSwitch`: the task switch routine (callee-saved registers, stack pointer), a new task's frame |
//! | [`irq`] | `Irq`: interrupt controller, periodic timer, IPIs, device interrupt lines, interrupt enable/disable |
//! | [`ioapic`] | the IO-APIC: device interrupt lines (GSIs) to local APIC vectors |
//! | [`pci`] | `Pci`: PCI configuration space through ports 0xCF8/0xCFC, INTx routing |
//! | [`smp`] | `Smp`: starting the other CPUs with INIT-SIPI-SIPI and a real-mode trampoline |
//! | [`mmu`] | `Mmu`: CR3 switching, INVLPG/CR3 TLB flushes (`mm`'s `TlbHooks`), device mappings |
//! | [`time`] | `Time`: the TSC, calibrated against the PIT; the CMOS real-time clock |
//! | [`srat`] | the ACPI SRAT read by hand: which NUMA node each memory range and CPU belongs to |
//! | [`pgtable`] | the page-table entry format (`X86Format`) and, for host tests, a software walker |
//! | [`user`] | `UserMode`: ring 3, `syscall`, the user registers, SMEP/SMAP, the user-access routines and their exception table |
//!
//! [`X86_64`] is this arch for the kernel: it implements every trait of
//! `arch_common` (the one declaration of what the kernel needs from an
//! arch), each in the module the table names with it.
//!
//! Everything except [`pgtable`], [`srat`], [`NAME`] and the [`X86_64`] type touches
//! the hardware and is built only for the bare-metal target (`target_os =
//! "none"`); `pgtable` is plain bit arithmetic, built and tested on the host.
//!
//! ## Assumed configuration
//!
//! Long mode with 4-level paging, entered from the `bootloader` crate (BIOS
//! or UEFI), which maps the kernel and all physical memory at a dynamic
//! offset. [`init`] takes over the GDT, TSS and IDT and turns on NX
//! (`EFER.NXE`), supervisor write protection (`CR0.WP`), SSE for user code,
//! SMEP and SMAP (when CPUID offers them) and `syscall` on the boot CPU;
//! `Smp::start_cpu` ([`smp`]) brings every other CPU to the same state (its own
//! GDT, TSS and IST stacks, the shared IDT, the boot CPU's control
//! registers).
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

// Every module but `pgtable` and `srat` touches the hardware and starts with
// `#![cfg(target_os = "none")]`: it is built for the bare-metal target only.
pub mod console;
pub mod context;
pub mod cpu;
pub mod fw_cfg;
pub mod gdt;
pub mod ioapic;
pub mod irq;
pub mod mmu;
pub mod pci;
pub mod pgtable;
pub mod probe;
pub mod smp;
pub mod srat;
pub mod time;
pub mod trap;
pub mod user;

#[cfg(target_os = "none")]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(target_os = "none")]
use x86_64::registers::control::{Cr0, Cr0Flags};
#[cfg(target_os = "none")]
use x86_64::registers::model_specific::{Efer, EferFlags};

/// The architecture's name as the kernel prints it.
pub const NAME: &str = "x86_64";

/// The arch type of this crate: `arch_common`'s traits, implemented for
/// x86_64 on QEMU's `pc` machine.
#[derive(Debug, Clone, Copy)]
pub struct X86_64;

/// Where the bootloader mapped physical address 0.
#[cfg(target_os = "none")]
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// The direct-map offset given to [`init`].
#[cfg(target_os = "none")]
pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// Sets up the boot CPU for the kernel: GDT/TSS, IDT, NX and write
/// protection, and records the root table it runs on as the kernel root.
/// Boot CPU, once, before anything can fault. (The other CPUs get the same
/// from their start-up path, [`smp`].)
#[cfg(target_os = "none")]
pub fn init(phys_offset: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    mmu::record_kernel_root();
    gdt::init_this_cpu(0);
    trap::init();
    // SAFETY: NXE only makes the NX bit of page-table entries meaningful
    // (the bootloader's tables use it consistently); WP makes the kernel
    // honour read-only mappings as user code would. Neither changes any
    // mapping the kernel relies on being writable.
    unsafe {
        Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE));
        Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT));
    }
    user::enable_protections();
    user::init_this_cpu();
}

/// I/O port of QEMU's `isa-debug-exit` device (`-device
/// isa-debug-exit,iobase=0xf4,iosize=0x04`). Writing `v` makes QEMU exit with
/// status `(v << 1) | 1`: 0x10 gives 33 (success), 0x11 gives 35 (failure).
#[cfg(target_os = "none")]
const DEBUG_EXIT_PORT: u16 = 0xf4;

#[cfg(target_os = "none")]
use arch_common::ExitStatus;

#[cfg(target_os = "none")]
impl arch_common::Arch for X86_64 {
    const NAME: &'static str = NAME;

    /// Writes the status to the debug-exit device. Without it the write
    /// does nothing, and the CPU parks itself.
    fn exit(status: ExitStatus) -> ! {
        let value: u32 = match status {
            ExitStatus::Success => 0x10,
            ExitStatus::Failure => 0x11,
        };
        // SAFETY: port 0xf4 is the debug-exit device in our QEMU profile; on
        // a machine without it an unclaimed port write is ignored.
        unsafe { x86_64::instructions::port::Port::new(DEBUG_EXIT_PORT).write(value) };
        Self::halt_forever()
    }

    fn halt_forever() -> ! {
        x86_64::instructions::interrupts::disable();
        loop {
            x86_64::instructions::hlt();
        }
    }
}
