//! The in-guest test harness.
//!
//! Tests are plain functions registered in each module's `TESTS` list and
//! gathered in [`all_tests`]. With `test=<filter>` on the command line the
//! kernel runs, one after another in this boot, every test whose name starts
//! with one of the filter's comma-separated prefixes (`all` runs every test).
//!
//! ## Serial protocol (read by the `qemu` crate's runner)
//!
//! ```text
//! test <name> ... ok
//! test <name> ... FAILED: <why>
//! N passed, M failed
//! ```
//!
//! `test <name> ... ` is printed *before* the test runs, so if the test
//! crashes the kernel, the last line names it. A test fails by returning
//! `Err(why)`; a test that returns `Ok` but leaks heap memory or frames
//! (the buddy allocator's free count differs from before) fails too.
//! The kernel exits with the failure status unless every selected test
//! passed and at least one ran.

use crate::println;
use crate::{
    blk, cmdline, exceptions, flags_stress, memory, paging, print, reclaim, sched, smp, swap, tlb, vm,
};
use alloc::format;
use alloc::string::String;
use kargs::Args;

/// What a test gets to look at.
pub struct TestEnv<'a> {
    /// The kernel arguments.
    pub args: &'a Args<'a>,
}

/// One registered test.
pub struct Test {
    /// `area::what`, e.g. `heap::box_vec_and_reuse`.
    pub name: &'static str,
    pub run: fn(&TestEnv<'_>) -> Result<(), String>,
}

/// Every test in the kernel, in the order they run.
pub fn all_tests() -> impl Iterator<Item = &'static Test> {
    [
        TESTS,
        cmdline::TESTS,
        memory::TESTS,
        exceptions::TESTS,
        paging::TESTS,
        sched::TESTS,
        smp::TESTS,
        tlb::TESTS,
        vm::TESTS,
        swap::TESTS,
        reclaim::TESTS,
        flags_stress::TESTS,
        blk::TESTS,
    ]
    .into_iter()
    .flatten()
}

/// True when `name` is selected by `filter` (see the module doc).
pub fn selected(filter: &str, name: &str) -> bool {
    filter.split(',').any(|p| p == "all" || (!p.is_empty() && name.starts_with(p)))
}

/// Runs the selected tests; true when all passed and at least one ran.
pub fn run(filter: &str, args: &Args<'_>) -> bool {
    let env = TestEnv { args };
    let (mut passed, mut failed) = (0u32, 0u32);
    println!("harness: running tests matching `{filter}`");
    for test in all_tests().filter(|t| selected(filter, t.name)) {
        print!("test {} ... ", test.name);
        let heap_before = memory::heap_used();
        let frames_before = memory::nr_free_frames();
        let result = (test.run)(&env).and_then(|()| {
            // Reclaim caught mid-pass and swap-cache folios whose removal
            // waited for a lock are not leaks: let that work finish first.
            crate::reclaim::quiesce();
            // A task that just ended is dropped by the CPU it ran on right
            // after that CPU switches away, which may come a moment after
            // its joiner returned: give that a few ticks before calling
            // what is still held a leak.
            let mut heap_after = memory::heap_used();
            let mut frames_after = memory::nr_free_frames();
            for _ in 0..25 {
                if heap_after <= heap_before && frames_after == frames_before {
                    break;
                }
                crate::sched::sleep_ms(2);
                heap_after = memory::heap_used();
                frames_after = memory::nr_free_frames();
            }
            if heap_after > heap_before {
                Err(format!("leaked {} bytes of heap", heap_after - heap_before))
            } else if frames_after != frames_before {
                Err(format!("free frames went from {frames_before} to {frames_after} (leak or double free)"))
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                passed += 1;
                println!("ok");
            }
            Err(why) => {
                failed += 1;
                println!("FAILED: {why}");
            }
        }
    }
    if passed + failed == 0 {
        println!("harness: no test name starts with `{filter}`");
    }
    println!("{passed} passed, {failed} failed");
    failed == 0 && passed > 0
}

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
    let addr = crate::arch::probe::unmapped_address().as_u64() + 0x42;
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

pub(crate) const TESTS: &[Test] = &[
    Test { name: "harness::filter_selects_by_prefix", run: filter_selects_by_prefix },
    Test { name: "harness::selfcheck_fail", run: selfcheck_fail },
    Test { name: "harness::selfcheck_crash", run: selfcheck_crash },
];
