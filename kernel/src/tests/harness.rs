//! In-guest tests moved from testing.rs.

use crate::arch::prelude::*;
use crate::cmdline::selected;
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;

// ---------------------------------------------------------------- tests

fn selfcheck_fail(env: &TestEnv<'_>) -> Result<(), String> {
    // Fails only when asked: `cargo xtask test` passes
    // `harness_selfcheck=fail` to prove that a failing test makes the whole
    // run fail and is named in the report.
    match env.args.get("harness_selfcheck") {
        Some("fail") => Err("failing on purpose (harness_selfcheck=fail)".into()),
        _ => Ok(()),
    }
}

fn selfcheck_crash(env: &TestEnv<'_>) -> Result<(), String> {
    // Crashes only when asked: `cargo xtask test` passes
    // `harness_selfcheck=crash` to prove that an unexpected kernel page
    // fault is reported (address, cause, instruction) and fails the run
    // with this test named as the one running.
    if env.args.get("harness_selfcheck") != Some("crash") {
        return Ok(());
    }
    let addr = Arch::unmapped_address().as_u64() + 0x42;
    // SAFETY: deliberately not sound: nothing is mapped at `addr`. The
    // volatile load is emitted as written, the MMU faults, and the trap
    // handler, finding no fix-up for this instruction, panics, so this
    // function never returns a value read from `addr`.
    let value = unsafe { core::ptr::read_volatile(addr as *const u8) };
    Err(format!("read of unmapped {addr:#x} returned {value:#x} instead of faulting"))
}

fn filter_selects_by_prefix(_: &TestEnv<'_>) -> Result<(), String> {
    let cases = [
        ("all", "heap::x", true),
        ("heap", "heap::x", true),
        ("heap::x", "heap::x", true),
        ("exceptions,heap", "heap::x", true),
        ("exceptions", "heap::x", false),
        ("", "heap::x", false),
        (",", "heap::x", false),
    ];
    for (filter, name, want) in cases {
        if selected(filter, name) != want {
            return Err(format!("selected({filter:?}, {name:?}) should be {want}"));
        }
    }
    Ok(())
}

fn on_demand_tests_need_their_own_prefix(_: &TestEnv<'_>) -> Result<(), String> {
    let cases = [
        ("all", false),
        ("stress", true),
        ("stress::random_mm_ops", true),
        ("all,stress", true),
        ("vm,all", false),
        ("", false),
    ];
    for (filter, want) in cases {
        if crate::tests::selected_on_demand(filter, "stress::random_mm_ops") != want {
            return Err(format!("selected_on_demand({filter:?}, stress::random_mm_ops) should be {want}"));
        }
    }
    if crate::tests::all_tests().any(|t| t.name.starts_with("stress::")) {
        return Err(String::from("the stress is among the tests `test=all` runs"));
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["harness": filter_selects_by_prefix, on_demand_tests_need_their_own_prefix, selfcheck_fail, selfcheck_crash];
