//! Accesses that may fault, and a breakpoint that is expected.
//!
//! A probe is a one-instruction load or store at a known address. When the
//! MMU faults on exactly that instruction, the trap handler does not crash:
//! it writes the fault report into the saved `x0`/`x1` and resumes at a
//! fix-up label that returns it. This is how the kernel will later read
//! user memory it is not sure is mapped, and how the tests check that a real
//! MMU fault is reported with the right address and cause.
//!
//! Return convention of the assembly functions (AAPCS64 returns a 16-byte
//! `#[repr(C)]` struct in `x0`, `x1`): `x0 = 0` and `x1 = value` on success;
//! `x0 = (ESR << 1) | 1` and `x1 = FAR` after a fault.

use crate::trap::{decode_abort, TrapFrame};
use mm::fault::MemFault;
use mm::VirtAddr;

#[repr(C)]
struct ProbeResult {
    status: u64,
    value: u64,
}

// The labels Rust refers to (`extern` statics below) are `.global`: the
// referring code may land in another codegen unit than this block.
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

extern "C" {
    fn arch_probe_read_u8(addr: u64) -> ProbeResult;
    fn arch_probe_write_u8(addr: u64, value: u8) -> ProbeResult;
    fn arch_probe_breakpoint() -> ProbeResult;
    fn arch_probe_exec(target: u64) -> ProbeResult;
    static arch_probe_exec_ret: u8;
    static arch_probe_read_u8_insn: u8;
    static arch_probe_write_u8_insn: u8;
    static arch_probe_fixup: u8;
    static arch_probe_breakpoint_insn: u8;
}

/// The immediate of the probe's `BRK`, reported in ESR.ISS.
pub const BREAKPOINT_IMM: u64 = 0x4d4d;

fn label(sym: *const u8) -> u64 {
    sym as u64
}

fn decode(result: ProbeResult) -> Result<u64, MemFault> {
    if result.status & 1 == 0 {
        return Ok(result.value);
    }
    let esr = result.status >> 1;
    Err(decode_abort(esr, result.value).expect("probe fix-up recorded a non-abort ESR"))
}

/// Reads one byte at `addr`, or reports the fault the MMU raised.
pub fn read_u8(addr: VirtAddr) -> Result<u8, MemFault> {
    // SAFETY: the load is the probe instruction: a fault on it is fixed up
    // by the trap handler, and a successful load of a byte has no side
    // effects on normal memory (callers do not probe device memory).
    decode(unsafe { arch_probe_read_u8(addr.as_u64()) }).map(|v| v as u8)
}

/// Writes one byte at `addr`, or reports the fault the MMU raised.
///
/// # Safety
/// If `addr` is mapped and writable the byte is stored: the caller must own
/// that byte (or know that nothing else uses it).
pub unsafe fn write_u8(addr: VirtAddr, value: u8) -> Result<(), MemFault> {
    // SAFETY: a fault on the store is fixed up by the trap handler; the
    // caller owns the byte if the store succeeds.
    decode(unsafe { arch_probe_write_u8(addr.as_u64(), value) }).map(|_| ())
}

/// Calls the code at `target`, or reports the fault the MMU raised when
/// fetching its first instruction. The code must return with `x0 = 0` and
/// its result in `x1` (AAPCS64's registers for a 16-byte result).
///
/// # Safety
/// If `target` is mapped executable, the code there runs: it must be a
/// function of that contract that touches nothing else.
pub unsafe fn exec(target: VirtAddr) -> Result<u64, MemFault> {
    // SAFETY: a fetch fault at `target` is fixed up by the trap handler (it
    // recognises the probe's return address in the link register);
    // otherwise the caller vouches for the code.
    decode(unsafe { arch_probe_exec(target.as_u64()) })
}

/// What the breakpoint exception reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakpointHit {
    /// The address the CPU reported (ELR: the `BRK` itself on AArch64).
    pub reported_at: u64,
    /// Where the `BRK` instruction is.
    pub insn_at: u64,
    /// The address a correct report names: the instruction itself.
    pub expected: u64,
    /// The raw syndrome (ESR).
    pub syndrome: u64,
    /// The syndrome a correct report carries: EC = BRK (0x3c), IL = 1, ISS =
    /// the immediate.
    pub expected_syndrome: u64,
}

/// Executes a `BRK` and returns what the exception handler saw.
pub fn breakpoint() -> BreakpointHit {
    // SAFETY: the BRK is the probe breakpoint: the handler records it and
    // resumes after it.
    let r = unsafe { arch_probe_breakpoint() };
    let insn_at = label(core::ptr::addr_of!(arch_probe_breakpoint_insn));
    BreakpointHit {
        reported_at: r.status,
        insn_at,
        expected: insn_at,
        syndrome: r.value,
        expected_syndrome: (crate::trap::ec::BRK64 << 26) | (1 << 25) | BREAKPOINT_IMM,
    }
}

/// An address no translation maps: TTBR0 walks are off after boot.
pub fn unmapped_address() -> VirtAddr {
    VirtAddr::new(0x0000_1234_5678_9000)
}

/// Called by the trap handler for a data abort in the kernel: true (and the
/// frame set up to return the fault) when it hit a probe instruction.
pub(crate) fn fix_up_fault(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    let read = label(core::ptr::addr_of!(arch_probe_read_u8_insn));
    let write = label(core::ptr::addr_of!(arch_probe_write_u8_insn));
    let fixup = label(core::ptr::addr_of!(arch_probe_fixup));
    let exec_ret = label(core::ptr::addr_of!(arch_probe_exec_ret));
    if fault.access == mm::fault::Access::Execute && frame.elr == fault.addr.as_u64() {
        // An instruction abort on the first fetch of an `exec` probe: the
        // link register holds the probe's return address.
        if frame.x[30] != exec_ret {
            return false;
        }
        frame.x[0] = (fault.syndrome << 1) | 1;
        frame.x[1] = fault.addr.as_u64();
        frame.elr = exec_ret;
        return true;
    }
    if frame.elr != read && frame.elr != write {
        return false;
    }
    frame.x[0] = (fault.syndrome << 1) | 1;
    frame.x[1] = fault.addr.as_u64();
    frame.elr = fixup;
    true
}

/// Called by the trap handler for a `BRK` in the kernel: true (and the
/// frame set up to resume after it) when it is the probe's.
pub(crate) fn fix_up_breakpoint(frame: &mut TrapFrame) -> bool {
    let insn = label(core::ptr::addr_of!(arch_probe_breakpoint_insn));
    if frame.elr != insn {
        return false;
    }
    frame.x[0] = frame.elr;
    frame.x[1] = frame.esr;
    frame.elr += 4;
    true
}
