//! In-guest tests of exception handling, through the real MMU and CPU.
//!
//! The handlers themselves are arch code (`arch::trap`, `arch::probe`); what
//! is checked here is arch-neutral: a load or store to an unmapped address
//! raises a page fault that is reported with exactly that address, the
//! right access kind and cause; a breakpoint is reported at the right
//! instruction; and the kernel carries on afterwards, many times over.

use crate::arch::prelude::*;
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
    let addr = Arch::unmapped_address();
    expect_fault("read", Arch::probe_read_u8(addr).map(|_| ()), addr, Access::Read)
}

fn page_fault_on_write(_: &TestEnv<'_>) -> Result<(), String> {
    // An address inside the page, not its start: the report must be exact.
    let addr = VirtAddr::new(Arch::unmapped_address().as_u64() + 0x123);
    if Arch::probe_read_u8(addr).is_ok() {
        return Err(format!("{addr} is mapped; refusing to write to it"));
    }
    // SAFETY: the read above faulted, so nothing is mapped at `addr` and the
    // store cannot change memory; it can only fault.
    let result = unsafe { Arch::probe_write_u8(addr, 0xaa) };
    expect_fault("write", result, addr, Access::Write)
}

fn probes_of_mapped_memory_succeed(_: &TestEnv<'_>) -> Result<(), String> {
    static VALUE: u8 = 0x5a;
    let got = Arch::probe_read_u8(VirtAddr::new(&VALUE as *const u8 as u64));
    if got != Ok(0x5a) {
        return Err(format!("probe read of a mapped static gave {got:?}"));
    }
    let mut cell = alloc::boxed::Box::new(0u8);
    let addr = VirtAddr::new(&mut *cell as *mut u8 as u64);
    // SAFETY: `cell` is our own heap byte, alive across the call.
    let w = unsafe { Arch::probe_write_u8(addr, 0xc3) };
    if w.is_err() || *cell != 0xc3 {
        return Err(format!("probe write to a heap byte gave {w:?}, byte now {:#x}", *cell));
    }
    Ok(())
}

fn faults_repeat_cleanly(_: &TestEnv<'_>) -> Result<(), String> {
    // Each fault goes through the full save/restore path; a frame or stack
    // imbalance shows up long before a thousand rounds.
    let base = Arch::unmapped_address().as_u64();
    for i in 0..1000u64 {
        let addr = VirtAddr::new(base + i * 4097);
        match Arch::probe_read_u8(addr) {
            Err(f) if f.addr == addr => {}
            other => return Err(format!("round {i}: read at {addr} gave {other:?}")),
        }
    }
    Ok(())
}

fn breakpoint_is_reported(_: &TestEnv<'_>) -> Result<(), String> {
    let hit = Arch::probe_breakpoint();
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

/// A frame record of a hand-made chain: `(fp, (next fp, return address))`.
type Record = (u64, (u64, u64));

/// A hand-made frame chain for `backtrace::walk`: any address but the
/// records' words is unreadable.
fn chain_reader(records: &[Record]) -> impl Fn(u64) -> Option<u64> + '_ {
    move |addr| {
        records.iter().find_map(|&(fp, (next, ret))| match addr {
            a if a == fp => Some(next),
            a if a == fp + 8 => Some(ret),
            _ => None,
        })
    }
}

fn backtrace_walk_stays_in_bounds(_env: &TestEnv<'_>) -> Result<(), String> {
    use crate::backtrace::{walk, End, MAX_FRAMES, MAX_STACK_SPAN};
    let base = 0xffff_8000_1000_0000u64;
    let run = |records: &[Record]| {
        let mut rets = alloc::vec::Vec::new();
        let end = walk(records.first().map_or(0, |r| r.0), chain_reader(records), |r| rets.push(r));
        (rets, end)
    };
    let cases: [(&str, alloc::vec::Vec<Record>, usize, End); 6] = [
        (
            "a chain to a zero return address",
            alloc::vec![(base, (base + 64, 1)), (base + 64, (0, 2))],
            2,
            End::Bottom,
        ),
        ("a frame pointing at itself", alloc::vec![(base, (base, 1))], 1, End::OutOfBounds(base)),
        ("a frame pointing down", alloc::vec![(base, (base - 16, 1))], 1, End::OutOfBounds(base - 16)),
        (
            "a misaligned next frame",
            alloc::vec![(base, (base + 20, 1)), (base + 20, (0, 2))],
            1,
            End::OutOfBounds(base + 20),
        ),
        (
            "a next frame past one stack",
            alloc::vec![(base, (base + MAX_STACK_SPAN + 8, 1)), (base + MAX_STACK_SPAN + 8, (0, 2))],
            1,
            End::OutOfBounds(base + MAX_STACK_SPAN + 8),
        ),
        ("an unreadable next frame", alloc::vec![(base, (base + 64, 1))], 1, End::Unreadable(base + 64)),
    ];
    for (what, records, frames, want) in cases {
        let (rets, end) = run(&records);
        if rets.len() != frames || end != want {
            return Err(format!(
                "{what}: {} frames ending {end:?}, expected {frames} ending {want:?}",
                rets.len()
            ));
        }
    }
    let deep: alloc::vec::Vec<_> =
        (0..MAX_FRAMES as u64 + 5).map(|i| (base + 16 * i, (base + 16 * (i + 1), i + 1))).collect();
    let (rets, end) = run(&deep);
    if rets.len() != MAX_FRAMES || end != End::TooDeep {
        return Err(format!("an endless chain: {} frames ending {end:?}", rets.len()));
    }
    Ok(())
}

#[inline(never)]
fn backtrace_of_this_stack_reaches_the_caller(_env: &TestEnv<'_>) -> Result<(), String> {
    // The real chain of this test's task, read with the probe: it must
    // give this test's callers and end without a fault.
    let mut frames = 0;
    let end = crate::backtrace::walk(Arch::frame_pointer(), crate::backtrace::read_word, |_| frames += 1);
    if frames < 2 || matches!(end, crate::backtrace::End::Unreadable(_)) {
        return Err(format!("the walk of this stack gave {frames} frames and ended {end:?}"));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["exceptions": page_fault_on_read, page_fault_on_write, probes_of_mapped_memory_succeed, faults_repeat_cleanly, breakpoint_is_reported, backtrace_walk_stays_in_bounds, backtrace_of_this_stack_reaches_the_caller];
