//! In-guest tests of exception handling, through the real MMU and CPU.
//!
//! The handlers themselves are arch code (`arch::trap`, `arch::probe`); what
//! is checked here is arch-neutral: a load or store to an unmapped address
//! raises a page fault that is reported with exactly that address, the
//! right access kind and cause; a breakpoint is reported at the right
//! instruction; and the kernel carries on afterwards, many times over.

use crate::arch;
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use mm::fault::{Access, FaultCause, MemFault};
use mm::VirtAddr;

fn expect_fault(
    what: &str,
    result: Result<(), MemFault>,
    addr: VirtAddr,
    access: Access,
) -> Result<(), String> {
    let fault = match result {
        Ok(()) => return Err(format!("{what} at {addr} did not fault")),
        Err(f) => f,
    };
    if fault.addr != addr {
        return Err(format!("{what}: fault reported at {} instead of {addr} ({fault:?})", fault.addr));
    }
    if fault.access != access {
        return Err(format!("{what}: reported as {:?}, expected {access:?} ({fault:?})", fault.access));
    }
    if fault.cause != FaultCause::NotMapped {
        return Err(format!("{what}: cause {:?}, expected NotMapped ({fault:?})", fault.cause));
    }
    Ok(())
}

fn page_fault_on_read(_: &TestEnv<'_>) -> Result<(), String> {
    let addr = arch::probe::unmapped_address();
    expect_fault("read", arch::probe::read_u8(addr).map(|_| ()), addr, Access::Read)
}

fn page_fault_on_write(_: &TestEnv<'_>) -> Result<(), String> {
    // An address inside the page, not its start: the report must be exact.
    let addr = VirtAddr::new(arch::probe::unmapped_address().as_u64() + 0x123);
    if arch::probe::read_u8(addr).is_ok() {
        return Err(format!("{addr} is mapped; refusing to write to it"));
    }
    // SAFETY: the read above faulted, so nothing is mapped at `addr` and the
    // store cannot change memory; it can only fault.
    let result = unsafe { arch::probe::write_u8(addr, 0xaa) };
    expect_fault("write", result, addr, Access::Write)
}

fn probes_of_mapped_memory_succeed(_: &TestEnv<'_>) -> Result<(), String> {
    static VALUE: u8 = 0x5a;
    let got = arch::probe::read_u8(VirtAddr::new(&VALUE as *const u8 as u64));
    if got != Ok(0x5a) {
        return Err(format!("probe read of a mapped static gave {got:?}"));
    }
    let mut cell = alloc::boxed::Box::new(0u8);
    let addr = VirtAddr::new(&mut *cell as *mut u8 as u64);
    // SAFETY: `cell` is our own heap byte, alive across the call.
    let w = unsafe { arch::probe::write_u8(addr, 0xc3) };
    if w.is_err() || *cell != 0xc3 {
        return Err(format!("probe write to a heap byte gave {w:?}, byte now {:#x}", *cell));
    }
    Ok(())
}

fn faults_repeat_cleanly(_: &TestEnv<'_>) -> Result<(), String> {
    // Each fault goes through the full save/restore path; a frame or stack
    // imbalance shows up long before a thousand rounds.
    let base = arch::probe::unmapped_address().as_u64();
    for i in 0..1000u64 {
        let addr = VirtAddr::new(base + i * 4097);
        match arch::probe::read_u8(addr) {
            Err(f) if f.addr == addr => {}
            other => return Err(format!("round {i}: read at {addr} gave {other:?}")),
        }
    }
    Ok(())
}

fn breakpoint_is_reported(_: &TestEnv<'_>) -> Result<(), String> {
    let hit = arch::probe::breakpoint();
    if hit.reported_at != hit.expected {
        return Err(format!(
            "breakpoint at {:#x} reported at {:#x}, expected {:#x}",
            hit.insn_at, hit.reported_at, hit.expected
        ));
    }
    if hit.syndrome != hit.expected_syndrome {
        return Err(format!(
            "breakpoint syndrome {:#x}, expected {:#x}",
            hit.syndrome, hit.expected_syndrome
        ));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["exceptions": page_fault_on_read, page_fault_on_write, probes_of_mapped_memory_succeed, faults_repeat_cleanly, breakpoint_is_reported];
