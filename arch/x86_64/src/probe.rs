//! The probes on x86_64: the assembly routines `arch_common::probe`
//! declares, and their fix-ups in the trap handler.
//!
//! The routines return their `ProbeResult` in `rax` (status) and `rdx`
//! (value), as System V returns a 16-byte `#[repr(C)]` pair of integers.
//! After a fault the status holds the page-fault error code (shifted, with
//! bit 0 set) and the value CR2. An exec probe's target is entered by
//! `call`, so a fault on its first fetch finds the probe's return address
//! on top of the stack; the fix-up pops it and resumes at that address.
//! `#BP` is a trap: it reports the address after the one-byte `INT3`.
#![cfg(target_os = "none")]

use crate::trap::{decode_page_fault, TrapFrame};
use crate::X86_64;
use arch_common::probe::{FixUp, Probe};
use mm::fault::MemFault;
use mm::VirtAddr;
use x86_64::registers::control::Cr3;

// Every label is `.global`: `arch_common::probe` refers to them from
// another crate.
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

// SAFETY: the assembly above defines every routine and label of
// `arch_common::probe`'s contract, and `trap::x86_trap` fixes up exactly
// what `ProbeSites` recognises (`fix_up_fault`) and the probe's `INT3`
// (`fix_up_breakpoint`).
unsafe impl Probe for X86_64 {
    const BREAKPOINT_REPORTED_OFFSET: u64 = 1;
    /// `#BP` is vector 3.
    const BREAKPOINT_SYNDROME: u64 = 3;
    /// `xor eax, eax; mov edx, 0x12345678; ret`.
    const RETURN_MAGIC_CODE: &'static [u8] = &[0x31, 0xc0, 0xba, 0x78, 0x56, 0x34, 0x12, 0xc3];

    fn decode_probe_fault(error_code: u64, cr2: u64) -> MemFault {
        decode_page_fault(error_code, cr2)
    }

    /// A canonical lower-half address that no page table maps: the first
    /// address covered by an empty top-level (PML4) entry, plus a page.
    ///
    /// # Panics
    /// If every lower-half PML4 entry is in use, which the bootloader never
    /// does.
    fn unmapped_address() -> VirtAddr {
        let (frame, _) = Cr3::read();
        let pml4 = (frame.start_address().as_u64() + crate::phys_offset()) as *const u64;
        for index in (1..256).rev() {
            // SAFETY: CR3 points at the live PML4, a 512-entry page of RAM,
            // and all RAM is mapped at `phys_offset`; reading an entry has
            // no effect.
            let entry = unsafe { pml4.add(index).read_volatile() };
            if entry & 1 == 0 {
                return VirtAddr::new(((index as u64) << 39) + 0x1000);
            }
        }
        panic!("unmapped_address: every lower-half PML4 entry is present");
    }
}

/// Called by the trap handler for a page fault in the kernel: true (and the
/// frame set up to return the fault) when it hit a probe instruction, or the
/// first fetch of an exec probe (the faulting RIP is the target and the
/// return address on the stack is the probe's).
pub(crate) fn fix_up_fault(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    let sites = X86_64::probe_sites();
    // SAFETY: called only for a fetch fault at RIP itself, taken in kernel
    // mode, so RSP is the kernel stack of the interrupted code, which is
    // mapped; we only read the word at its top (the return address the
    // probe's call pushed, if the probe made the call).
    let exec = sites.fix_up_exec(frame.rip, fault, || unsafe { (frame.rsp as *const u64).read() });
    if exec.is_some() {
        frame.rsp += 8; // the return address, consumed
    }
    let Some(FixUp { resume, result }) = exec.or_else(|| sites.fix_up_access(frame.rip, fault)) else {
        return false;
    };
    frame.rax = result.status;
    frame.rdx = result.value;
    frame.rip = resume;
    true
}

/// Called by the trap handler for `#BP`: true (and the frame set up to
/// report it) when it is the probe's `INT3`.
pub(crate) fn fix_up_breakpoint(frame: &mut TrapFrame) -> bool {
    if frame.rip != X86_64::probe_sites().breakpoint_insn + X86_64::BREAKPOINT_REPORTED_OFFSET {
        return false;
    }
    frame.rax = frame.rip;
    frame.rdx = frame.vector;
    true
}
