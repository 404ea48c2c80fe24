//! The probes on AArch64: the assembly routines `arch_common::probe`
//! declares, and their fix-ups in the trap handler.
//!
//! The routines return their `ProbeResult` in `x0` (status) and `x1`
//! (value), as AAPCS64 returns a 16-byte `#[repr(C)]` pair. After a fault
//! the status holds ESR (shifted, with bit 0 set) and the value FAR. An exec
//! probe's target is entered by `BLR`, so a fault on its first fetch finds
//! the probe's return address in the link register (x30). `BRK` reports
//! the address of the `BRK` itself, and its immediate in ESR.ISS.
#![cfg(target_os = "none")]

use crate::trap::{decode_abort, TrapFrame};
use crate::Aarch64;
use arch_common::probe::{FixUp, Probe};
use mm::fault::MemFault;
use mm::VirtAddr;

// Every label is `.global`: `arch_common::probe` refers to them from
// another crate.
core::arch::global_asm!(
    r#"
.section .text
.global arch_probe_read_u8_insn
.global arch_probe_write_u8_insn
.global arch_probe_fixup
.global arch_probe_exec_ret
.global arch_probe_breakpoint_insn
.global arch_probe_read_u8
arch_probe_read_u8:
arch_probe_read_u8_insn:
    ldrb w1, [x0]
    mov x0, #0
    ret

.global arch_probe_write_u8
arch_probe_write_u8:
arch_probe_write_u8_insn:
    strb w1, [x0]
    mov x0, #0
    mov x1, #0
    ret

arch_probe_fixup:
    ret

.global arch_probe_exec
arch_probe_exec:
    stp x29, x30, [sp, #-16]!
    blr x0
arch_probe_exec_ret:
    ldp x29, x30, [sp], #16
    ret

.global arch_probe_breakpoint
arch_probe_breakpoint:
    mov x0, #0
    mov x1, #0
arch_probe_breakpoint_insn:
    brk #0x4d4d
    ret
"#
);

/// The immediate of the probe's `BRK`, reported in ESR.ISS.
pub const BREAKPOINT_IMM: u64 = 0x4d4d;

// SAFETY: the assembly above defines every routine and label of
// `arch_common::probe`'s contract, and `trap::aarch64_trap` fixes up
// exactly what `ProbeSites` recognises (`fix_up_fault`) and the probe's
// `BRK` (`fix_up_breakpoint`).
unsafe impl Probe for Aarch64 {
    const BREAKPOINT_REPORTED_OFFSET: u64 = 0;
    /// EC = BRK (0x3c), IL = 1, ISS = the immediate.
    const BREAKPOINT_SYNDROME: u64 = (crate::trap::ec::BRK64 << 26) | (1 << 25) | BREAKPOINT_IMM;
    const RETURN_MAGIC_CODE: &'static [u8] = &[
        0x01, 0xcf, 0x8a, 0xd2, // movz x1, #0x5678
        0x81, 0x46, 0xa2, 0xf2, // movk x1, #0x1234, lsl #16
        0x00, 0x00, 0x80, 0xd2, // movz x0, #0
        0xc0, 0x03, 0x5f, 0xd6, // ret
    ];

    /// # Panics
    /// When `esr` is not an abort: only the trap handler's fix-up writes a
    /// report, and only for aborts.
    fn decode_probe_fault(esr: u64, far: u64) -> MemFault {
        decode_abort(esr, far).expect("probe fix-up recorded a non-abort ESR")
    }

    /// TTBR0 walks are off after boot, and address spaces map nothing there.
    fn unmapped_address() -> VirtAddr {
        VirtAddr::new(0x0000_1234_5678_9000)
    }
}

/// Called by the trap handler for a data or instruction abort in the
/// kernel: true (and the frame set up to return the fault) when it hit a
/// probe instruction, or the first fetch of an exec probe (the link
/// register holds the probe's return address).
pub(crate) fn fix_up_fault(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    let sites = Aarch64::probe_sites();
    let fix =
        sites.fix_up_exec(frame.elr, fault, || frame.x[30]).or_else(|| sites.fix_up_access(frame.elr, fault));
    let Some(FixUp { resume, result }) = fix else {
        return false;
    };
    frame.x[0] = result.status;
    frame.x[1] = result.value;
    frame.elr = resume;
    true
}

/// Called by the trap handler for a `BRK` in the kernel: true (and the
/// frame set up to resume after it) when it is the probe's.
pub(crate) fn fix_up_breakpoint(frame: &mut TrapFrame) -> bool {
    if frame.elr != Aarch64::probe_sites().breakpoint_insn {
        return false;
    }
    frame.x[0] = frame.elr;
    frame.x[1] = frame.esr;
    frame.elr += 4;
    true
}
