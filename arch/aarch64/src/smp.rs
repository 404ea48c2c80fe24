//! Starting secondary CPUs with PSCI `CPU_ON`.
//!
//! ## Protocol
//!
//! 1. The boot CPU, once, before any start: the boot path reads the device
//!    tree's `/psci` node and records how to call the firmware with
//!    [`set_psci_method`]: the conduit (`method = "hvc"` or `"smc"`) and the
//!    `CPU_ON` function id. Without that call, `Smp::start_cpu` returns
//!    [`SmpError::NoPsci`].
//! 2. `Smp::start_cpu` writes a start record (the kernel's entry function and
//!    the CPU's kernel index) at the top of the new CPU's stack, waits for
//!    the store to complete (`DSB ISH`), and calls `CPU_ON` with x1 = the
//!    target's MPIDR affinity, x2 = the physical address of
//!    `secondary_entry` (boot/aarch64/src/entry.S), x3 = the context id =
//!    the record's physical address. It returns once the firmware accepted
//!    the call; the kernel then waits for the CPU to report online itself.
//! 3. The firmware starts the CPU at EL1, MMU off, at `secondary_entry`,
//!    with the context id in x0. The assembly masks all exceptions, enables
//!    FP/SIMD, turns the MMU on with the same tables and registers as the
//!    boot CPU, jumps to the upper half, installs the vectors, and calls
//!    [`arch_aarch64_secondary_main`] with SP and x0 = the record's
//!    direct-map address (the stack grows down from below the record).
//! 4. [`arch_aarch64_secondary_main`] reads the record, sets the CPU index
//!    ([`crate::cpu::set_index`]), stops TTBR0 walks
//!    ([`crate::mmu::disable_lower_half`]), turns PAN on when the CPU has
//!    it ([`crate::user::init_this_cpu`]), sets up its banked GIC state
//!    ([`crate::irq::init_this_cpu`]) and calls the entry function with the
//!    index, interrupts still masked. The entry never returns.
//!
//! ## Why no cache maintenance
//!
//! The boot CPU writes the record through the cacheable direct map, so it
//! may sit in the boot CPU's data cache and not yet in RAM. The new CPU
//! therefore reads it only after its MMU is on, through the same Normal
//! write-back, Inner Shareable mapping, where its accesses are coherent with
//! the boot CPU's cache. With the MMU off it reads nothing but the kernel
//! image and the boot tables, which were in RAM before the boot CPU turned
//! its own caches on and have not been written since; it writes nothing.
#![cfg(target_os = "none")]

use crate::Aarch64;
use arch_common::context::TaskEntry;
use arch_common::smp::{CpuStart, Smp};
use core::sync::atomic::{AtomicU64, Ordering};

/// `CPU_ON`'s function id, SMC64 calling convention (PSCI 0.2 and later).
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;

/// How the kernel calls the PSCI firmware (the `/psci` node's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciMethod {
    /// `HVC #0`: the hypervisor (or QEMU's built-in PSCI without EL3).
    Hvc,
    /// `SMC #0`: the secure monitor at EL3.
    Smc,
}

/// Why a CPU was not started. All but `NoPsci` are the firmware's answer to
/// `CPU_ON`; `InvalidParameters` usually means the device tree named an
/// MPIDR that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpError {
    /// The device tree has no usable `/psci` node: the machine gives no way
    /// to start CPUs.
    NoPsci,
    /// NOT_SUPPORTED (-1): the firmware has no `CPU_ON`.
    NotSupported,
    /// INVALID_PARAMETERS (-2): no such CPU.
    InvalidParameters,
    /// DENIED (-3).
    Denied,
    /// ALREADY_ON (-4): the CPU is running already.
    AlreadyOn,
    /// ON_PENDING (-5): an earlier `CPU_ON` for it has not completed.
    OnPending,
    /// INTERNAL_FAILURE (-6).
    InternalFailure,
    /// INVALID_ADDRESS (-9): the firmware refused the entry address.
    InvalidAddress,
    /// A return code PSCI does not define for `CPU_ON`.
    Unknown(i32),
}

impl SmpError {
    /// The error for a PSCI return code other than SUCCESS (0).
    fn from_psci(code: i32) -> SmpError {
        match code {
            -1 => SmpError::NotSupported,
            -2 => SmpError::InvalidParameters,
            -3 => SmpError::Denied,
            -4 => SmpError::AlreadyOn,
            -5 => SmpError::OnPending,
            -6 => SmpError::InternalFailure,
            -9 => SmpError::InvalidAddress,
            other => SmpError::Unknown(other),
        }
    }
}

/// The PSCI conduit and `CPU_ON` function id, set once by the boot CPU
/// before any CPU is started: 0 = no PSCI; otherwise bits 31..0 = function
/// id and bits 33..32 = 1 (HVC) or 2 (SMC). Written with Release by
/// [`set_psci_method`], read with Acquire by `Smp::start_cpu`.
static PSCI: AtomicU64 = AtomicU64::new(0);

/// Records how to call PSCI: the device tree's `/psci` `method` and the
/// `CPU_ON` function id ([`PSCI_CPU_ON_64`] for PSCI 0.2 and later; PSCI
/// 0.1 names its own in the node's `cpu_on` property). Boot CPU, once,
/// before `Smp::start_cpu`; not calling it leaves CPUs unstartable.
pub fn set_psci_method(method: PsciMethod, cpu_on: u32) {
    let tag = match method {
        PsciMethod::Hvc => 1u64,
        PsciMethod::Smc => 2,
    };
    PSCI.store(tag << 32 | cpu_on as u64, Ordering::Release);
}

fn psci() -> Option<(PsciMethod, u32)> {
    let v = PSCI.load(Ordering::Acquire);
    let method = match v >> 32 {
        1 => PsciMethod::Hvc,
        2 => PsciMethod::Smc,
        _ => return None,
    };
    Some((method, v as u32))
}

/// An SMCCC call through `$conduit` (`"hvc #0"` or `"smc #0"`): function
/// `$fid` with arguments `$a1..$a3` in x1..x3; evaluates to x0. SMCCC 1.0
/// lets the firmware change x0..x17; the FP/SIMD registers are declared
/// clobbered too, which costs nothing here. Not `nomem`: the firmware (and
/// the CPU it starts) reads memory the kernel wrote before the call. Must
/// be used inside an `unsafe` block that says why the call is sound.
macro_rules! smccc_call {
    ($conduit:literal, $fid:expr, $a1:expr, $a2:expr, $a3:expr) => {{
        let ret: u64;
        core::arch::asm!(
            $conduit,
            inlateout("x0") $fid as u64 => ret,
            in("x1") $a1,
            in("x2") $a2,
            in("x3") $a3,
            clobber_abi("C"),
            options(nostack)
        );
        ret
    }};
}

/// Calls PSCI function `fid` with three arguments, through the conduit
/// `method` names; returns its status (x0).
///
/// # Safety
/// The call must be one whose effects the caller has prepared for (for
/// `CPU_ON`: a valid entry point and context).
unsafe fn psci_call(method: PsciMethod, fid: u32, a1: u64, a2: u64, a3: u64) -> i32 {
    let ret = match method {
        // SAFETY: the caller's contract; HVC is the conduit the device tree
        // names.
        PsciMethod::Hvc => unsafe { smccc_call!("hvc #0", fid, a1, a2, a3) },
        // SAFETY: as for HVC, with SMC the conduit named.
        PsciMethod::Smc => unsafe { smccc_call!("smc #0", fid, a1, a2, a3) },
    };
    // A status is a signed 32-bit value (sign-extended for SMC64 calls).
    ret as i32
}

/// What a new CPU needs from Rust: at the top of its own stack, 16-byte
/// aligned so that its address is also a valid initial SP.
#[repr(C, align(16))]
struct StartRecord {
    entry: TaskEntry,
    cpu: usize,
}

extern "C" {
    /// Where a secondary CPU enters, MMU off (boot/aarch64/src/entry.S).
    static secondary_entry: u8;
}

fn phys_of(va: u64) -> u64 {
    va - crate::DIRECT_MAP_OFFSET
}

impl Smp for Aarch64 {
    type SmpError = SmpError;

    /// Starts the CPU whose MPIDR affinity (Aff3..Aff0, as the device
    /// tree's `cpu` nodes give it) is `arch_id` with PSCI `CPU_ON`: it runs
    /// `entry(cpu)` on the stack ending at `stack_top`, with kernel index
    /// `cpu`, interrupts masked, its vectors and GIC interface set up.
    /// Returns once the firmware accepted the request; the CPU comes up some
    /// time later. The top 16 bytes of the stack hold the start record.
    unsafe fn start_cpu(start: CpuStart) -> Result<(), SmpError> {
        let CpuStart { arch_id, cpu, stack_top, entry } = start;
        let (method, cpu_on) = psci().ok_or(SmpError::NoPsci)?;
        debug_assert!(
            stack_top > crate::DIRECT_MAP_OFFSET,
            "start_cpu: stack {stack_top:#x} not in the direct map"
        );
        let record = ((stack_top & !15) - core::mem::size_of::<StartRecord>() as u64) as *mut StartRecord;
        // SAFETY: the record lies inside the new CPU's stack (the caller's
        // contract), 16-byte aligned, and nothing else uses that memory.
        unsafe { record.write(StartRecord { entry, cpu }) };
        // SAFETY: a barrier only: the record's store completes before the
        // firmware call that lets the new CPU read it.
        unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
        let entry_pa = phys_of(core::ptr::addr_of!(secondary_entry) as u64);
        // SAFETY: `secondary_entry` is the MMU-off entry, position-independent
        // until it turns the MMU on; the image lies at its link address minus
        // DIRECT_MAP_OFFSET (checked by `_start`), so `entry_pa` is where it
        // is. The context id is the record's physical address, which it
        // expects in x0.
        let status = unsafe { psci_call(method, cpu_on, arch_id, entry_pa, phys_of(record as u64)) };
        match status {
            0 => Ok(()),
            code => Err(SmpError::from_psci(code)),
        }
    }
}

/// A secondary CPU's first Rust code, called by `secondary_entry` with the
/// MMU on, running in the upper half, all exceptions masked, SP = `record`
/// (the stack grows down below it).
#[no_mangle]
extern "C" fn arch_aarch64_secondary_main(record: *const StartRecord) -> ! {
    // SAFETY: `record` is the start record `start_cpu` wrote for this CPU,
    // at its direct-map address; the MMU is on, so this read is coherent
    // with the boot CPU's write (module doc), and the stack below it does
    // not overlap it.
    let StartRecord { entry, cpu } = unsafe { record.read() };
    crate::cpu::set_index(cpu);
    crate::mmu::disable_lower_half();
    crate::user::init_this_cpu();
    crate::irq::init_this_cpu();
    entry(cpu)
}
