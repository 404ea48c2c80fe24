//! Accesses that may fault, and a breakpoint that is expected.
//!
//! A probe is a one-instruction load or store at a known address. When the
//! MMU faults on exactly that instruction, the trap handler does not crash:
//! it writes the fault report into the saved `rax`/`rdx` and resumes at a
//! fix-up label that returns it. This is how the kernel will later read user
//! memory it is not sure is mapped, and how the tests check that a real MMU
//! fault is reported with the right address and cause.
//!
//! Return convention of the assembly functions (System V returns a 16-byte
//! `#[repr(C)]` struct of two integers in `rax`, `rdx`): `rax = 0` and `rdx =
//! value` on success; `rax = (error code << 1) | 1` and `rdx = CR2` after a
//! fault.

use crate::trap::{decode_page_fault, TrapFrame};
use mm::fault::MemFault;
use mm::VirtAddr;
use x86_64::registers::control::Cr3;

#[repr(C)]
struct ProbeResult {
    status: u64,
    value: u64,
}

// The labels Rust refers to (`extern` statics below) are `.global`: the
// referring code may land in another codegen unit than this block.
core::arch::global_asm!(
    ".section .text",
    ".global arch_probe_read_u8_insn",
    ".global arch_probe_write_u8_insn",
    ".global arch_probe_fixup",
    ".global arch_probe_exec_ret",
    ".global arch_probe_breakpoint_insn",
    ".global arch_probe_read_u8",
    "arch_probe_read_u8:",
    "arch_probe_read_u8_insn:",
    "    movzx edx, byte ptr [rdi]",
    "    xor eax, eax",
    "    ret",
    ".global arch_probe_write_u8",
    "arch_probe_write_u8:",
    "arch_probe_write_u8_insn:",
    "    mov byte ptr [rdi], sil",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    "arch_probe_fixup:",
    "    ret",
    ".global arch_probe_exec",
    "arch_probe_exec:",
    "    call rdi",
    "arch_probe_exec_ret:",
    "    ret",
    ".global arch_probe_breakpoint",
    "arch_probe_breakpoint:",
    "    xor eax, eax",
    "    xor edx, edx",
    "arch_probe_breakpoint_insn:",
    "    int3",
    "    ret",
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

fn label(sym: *const u8) -> u64 {
    sym as u64
}

fn decode(result: ProbeResult) -> Result<u64, MemFault> {
    if result.status & 1 == 0 {
        Ok(result.value)
    } else {
        Err(decode_page_fault(result.status >> 1, result.value))
    }
}

/// Reads one byte at `addr`, or reports the fault the MMU raised.
pub fn read_u8(addr: VirtAddr) -> Result<u8, MemFault> {
    // SAFETY: the load is the probe instruction: a fault on it is fixed up
    // by the trap handler, and a successful byte load from RAM has no side
    // effects (callers do not probe device memory).
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
/// fetching its first instruction. The code must return with `rax = 0` and
/// its result in `rdx` (System V's registers for a 16-byte result).
///
/// # Safety
/// If `target` is mapped executable, the code there runs: it must be a
/// function of that contract that touches nothing else.
pub unsafe fn exec(target: VirtAddr) -> Result<u64, MemFault> {
    // SAFETY: a fetch fault at `target` is fixed up by the trap handler (it
    // recognises the return address of the probe's call); otherwise the
    // caller vouches for the code.
    decode(unsafe { arch_probe_exec(target.as_u64()) })
}

/// What the breakpoint exception reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakpointHit {
    /// The address the CPU reported (the saved RIP).
    pub reported_at: u64,
    /// Where the `INT3` instruction is.
    pub insn_at: u64,
    /// The address a correct report names: `#BP` is a trap, so the
    /// instruction after the one-byte `INT3`.
    pub expected: u64,
    /// The vector the handler ran for.
    pub syndrome: u64,
    /// Vector 3, `#BP`.
    pub expected_syndrome: u64,
}

/// Executes an `INT3` and returns what the exception handler saw.
pub fn breakpoint() -> BreakpointHit {
    // SAFETY: the INT3 is the probe breakpoint: the handler records it and
    // resumes after it.
    let r = unsafe { arch_probe_breakpoint() };
    let insn_at = label(core::ptr::addr_of!(arch_probe_breakpoint_insn));
    BreakpointHit {
        reported_at: r.status,
        insn_at,
        expected: insn_at + 1,
        syndrome: r.value,
        expected_syndrome: 3,
    }
}

/// A canonical lower-half address that no page table maps: the first
/// address covered by an empty top-level (PML4) entry, plus a page.
///
/// # Panics
/// If every lower-half PML4 entry is in use, which the bootloader never does.
pub fn unmapped_address() -> VirtAddr {
    let (frame, _) = Cr3::read();
    let pml4 = (frame.start_address().as_u64() + crate::phys_offset()) as *const u64;
    for index in (1..256).rev() {
        // SAFETY: CR3 points at the live PML4, a 512-entry page of RAM, and
        // all RAM is mapped at `phys_offset`; reading an entry has no effect.
        let entry = unsafe { pml4.add(index).read_volatile() };
        if entry & 1 == 0 {
            return VirtAddr::new(((index as u64) << 39) + 0x1000);
        }
    }
    panic!("unmapped_address: every lower-half PML4 entry is present");
}

/// Called by the trap handler for a page fault in the kernel: true (and the
/// frame set up to return the fault) when it hit a probe instruction, or the
/// first fetch of an [`exec`] probe (the faulting RIP is the target and the
/// return address on the stack is the probe's).
pub(crate) fn fix_up_fault(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    let read = label(core::ptr::addr_of!(arch_probe_read_u8_insn));
    let write = label(core::ptr::addr_of!(arch_probe_write_u8_insn));
    let exec_ret = label(core::ptr::addr_of!(arch_probe_exec_ret));
    if fault.access == mm::fault::Access::Execute && frame.rip == fault.addr.as_u64() {
        // SAFETY: the fault was taken in kernel mode, so RSP is the kernel
        // stack of the interrupted code, which is mapped; we only read the
        // word at its top (the return address the probe's call pushed).
        let ret = unsafe { (frame.rsp as *const u64).read() };
        if ret == exec_ret {
            frame.rsp += 8;
            frame.rax = (fault.syndrome << 1) | 1;
            frame.rdx = fault.addr.as_u64();
            frame.rip = exec_ret;
            return true;
        }
        return false;
    }
    if frame.rip != read && frame.rip != write {
        return false;
    }
    frame.rax = (fault.syndrome << 1) | 1;
    frame.rdx = fault.addr.as_u64();
    frame.rip = label(core::ptr::addr_of!(arch_probe_fixup));
    true
}

/// Called by the trap handler for `#BP`: true (and the frame set up to
/// report it) when it is the probe's `INT3`.
pub(crate) fn fix_up_breakpoint(frame: &mut TrapFrame) -> bool {
    let insn = label(core::ptr::addr_of!(arch_probe_breakpoint_insn));
    if frame.rip != insn + 1 {
        return false;
    }
    frame.rax = frame.rip;
    frame.rdx = frame.vector;
    true
}
