//! The in-guest tests: the harness, its kit, and one file of tests per
//! area.
//!
//! | module | what |
//! | --- | --- |
//! | [`kit`] | what tests of several areas share: a bare address space on the real MMU ([`kit::TestSpace`]), the scratch disk, physical reads |
//! | [`harness`] | the harness's own checks (filter, a failing test, a crashing test) |
//! | [`args`] | the kernel arguments arrived intact and bad ones are named |
//! | [`initrd`] | the initramfs arrived whole (BIOS, UEFI, the device tree) and its memory is reserved |
//! | [`memory`] | the heap and the buddy allocator in the running kernel |
//! | [`numa`] | NUMA nodes: the firmware's, allocations on a node, faults on the faulting CPU's node |
//! | [`exceptions`] | the arch's exception handling: faults, probes, breakpoints |
//! | [`pgtable`] | both page-table formats through the real MMU |
//! | [`sched`] | ticks, yield, preemption, sleep, join |
//! | [`smp`] | every CPU online, tasks moving between CPUs |
//! | [`tlb`] | TLB shootdown leaves no stale translation |
//! | [`user`] | the programs of `user/` run as processes: each exit status is the verdict |
//! | [`usermode`] | user mode on hand-written code: system calls, faults, exceptions, interrupts; SMAP/PAN; the user-access routines' fix-ups |
//! | [`vm`] | address spaces: demand faults, COW and fork, THP, GUP, the rmap |
//! | [`swap`] | swap-out, swap-in, the exclusive bit, bad headers, disk errors (seeds 002, 004) |
//! | [`reclaim`] | kswapd's wake-up |
//! | [`migrate`] | folio migration: a THP moved under tasks on every CPU, a fork family's pages |
//! | [`compaction`] | compaction: THP faults after a fragmentation reach 90 % coverage, kcompactd's wake-up |
//! | [`folio_flags`] | the stress test of the folio flags word (seed 003) |
//! | [`blk`] | virtio-blk disks: interrupts, concurrent requests, errors |
//! | [`fs`] | files: the tree from a cpio archive, lookup, the file system calls from a user task, pipes, raw disks through pins, `/proc` and `/sys`, the THP switch |
//! | [`fail_alloc`] | the allocation-failure sweep: every memory operation with each of its allocations failed |
//! | [`proc`] | user processes: ELF checks, loading a program and its stack, mincore's residency, `/bin/hello` through spawn and wait_exit |
//! | [`stress`] | the randomised mm stress: random operations on shared spaces against a shadow (`cargo xtask stress`; on demand only, see [`on_demand_tests`]) |
//!
//! Tests are plain functions registered in each file's `TESTS` list
//! ([`register!`]) and gathered in [`all_tests`]. With `test=<filter>` on the command line the
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

use crate::cmdline::selected;
use crate::{print, println};
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

/// The table of an area's tests: `register!["area": f, g; "other": h]`
/// names each function `area::f`, so a test's name is its function's.
macro_rules! register {
    ($($area:literal: $($f:ident),+);+ $(;)?) => {
        &[$($($crate::tests::Test { name: concat!($area, "::", stringify!($f)), run: $f }),+),+]
    };
}

pub mod args;
pub mod blk;
pub mod compaction;
pub mod exceptions;
pub mod fail_alloc;
pub mod folio_flags;
pub mod fs;
pub mod harness;
pub mod initrd;
pub mod kit;
pub mod memory;
pub mod migrate;
pub mod numa;
pub mod pgtable;
pub mod proc;
pub mod reclaim;
pub mod sched;
pub mod smp;
pub mod stress;
pub mod swap;
pub mod tlb;
pub mod user;
pub mod usermode;
pub mod vm;

/// Every test in the kernel, in the order they run.
pub fn all_tests() -> impl Iterator<Item = &'static Test> {
    [
        harness::TESTS,
        args::TESTS,
        initrd::TESTS,
        memory::TESTS,
        numa::TESTS,
        exceptions::TESTS,
        pgtable::TESTS,
        sched::TESTS,
        smp::TESTS,
        tlb::TESTS,
        usermode::TESTS,
        user::TESTS,
        vm::TESTS,
        swap::TESTS,
        reclaim::TESTS,
        migrate::TESTS,
        compaction::TESTS,
        folio_flags::TESTS,
        blk::TESTS,
        fs::TESTS,
        fail_alloc::TESTS,
        proc::TESTS,
    ]
    .into_iter()
    .flatten()
}

/// Tests that run only when a filter prefix other than `all` selects them
/// (`test=stress`, `cargo xtask stress`): the randomised stress runs for as
/// long as it is told and fails on what it finds anywhere in mm, so the
/// suite's own runs do not include it; CI runs it in steps of its own.
pub fn on_demand_tests() -> impl Iterator<Item = &'static Test> {
    stress::TESTS.iter()
}

/// True when `filter` names the on-demand test `name` by a prefix of its
/// own (`all` does not count).
pub(crate) fn selected_on_demand(filter: &str, name: &str) -> bool {
    filter.split(',').any(|p| p != "all" && selected(p, name))
}

/// Runs the selected tests; true when all passed and at least one ran.
pub fn run(filter: &str, args: &Args<'_>) -> bool {
    let env = TestEnv { args };
    let (mut passed, mut failed) = (0u32, 0u32);
    println!("harness: running tests matching `{filter}`");
    let chosen = all_tests()
        .filter(|t| selected(filter, t.name))
        .chain(on_demand_tests().filter(|t| selected_on_demand(filter, t.name)));
    for test in chosen {
        print!("test {} ... ", test.name);
        let before = kit::Usage::now();
        let result = (test.run)(&env).and_then(|()| match before.settled_since(50).leaks_since(&before) {
            Some(leaks) => Err(leaks),
            None => {
                // Nothing runs now: every rule of the checker holds, over
                // whatever spaces are left (usually none: then the swap
                // areas, the cache and the tables must be empty of them).
                crate::vm::space::check_all_at_rest(true).map(drop).map_err(|e| format!("checker: {e}"))
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
