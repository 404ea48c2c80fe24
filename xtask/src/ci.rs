//! `cargo xtask test`: everything CI runs. Every step runs even when an
//! earlier one failed (one red step should not hide the state of the
//! others); a table at the end gives each step's result and time.
//!
//! Steps, in order:
//! - host setup: QEMU (and OVMF) are installed when missing, before the
//!   host tests, whose QEMU runner tests need them (skipped by `--host-only`);
//! - host tests: `cargo test` at the workspace root (its default members
//!   are the host crates);
//! - lints: `cargo fmt --check` over the workspace, and clippy with warnings
//!   denied over the host crates and over each kernel for its bare-metal target;
//! - in-guest tests (`qemu test`) on x86_64 and AArch64, each with 1 CPU
//!   and with [`SMP_CPUS`] CPUs (the races the kernel guards against need
//!   several CPUs; one CPU checks that nothing depends on there being more),
//!   with a swap disk and the faulty and stalling disks attached, as
//!   `qemu test` does;
//! - the NUMA in-guest tests ([`NUMA_FILTER`]) on each architecture with
//!   [`NUMA_NODES`] nodes (`--numa`) and [`SMP_CPUS`] CPUs: the nodes come
//!   from the firmware, allocations land on their node, faults on the
//!   faulting CPU's, `move_pages` moves 4 KiB pages and THPs between the
//!   nodes; the runner requires one `numa: node N` line per node
//!   (on every run: one without `--numa`);
//! - the short randomised mm stress (`cargo xtask stress`) on x86_64 and
//!   AArch64, [`CI_STRESS_SECS`] seconds at [`SMP_CPUS`] CPUs with the seed
//!   [`CI_STRESS_SEED`] (fixed, so that a red CI run replays): no
//!   mismatch, checker error, killed task, leak or panic;
//! - boot smoke checks on x86_64 BIOS, x86_64 UEFI and AArch64 (with a swap
//!   disk, as `qemu boot`): the boot passes and the kernel echoes the marker
//!   argument `smoke=1`; the UEFI and AArch64 boots run the boot workload
//!   (the swap demo) as `qemu boot` does, the BIOS boot, whose point is the
//!   BIOS way in, skips it ([`smoke_args`]);
//! - the harness self-check on each architecture: a test that fails on
//!   purpose must make the run fail, named;
//! - the crash self-check on each architecture: a test that takes an
//!   unexpected page fault must fail the run with a panic, named as the
//!   test that was running, and the panic's backtrace, symbolized by the
//!   runner, must name the crashing function with its file and line;
//! - the bug replays, each switch of [`guest::BUG_REPLAYS`] on each
//!   architecture with [`SMP_CPUS`] CPUs: booted with `bug=<switch>`, the
//!   stress test that guards that mechanism must fail with the expected
//!   reason (and the kernel must not panic). A stress test that cannot
//!   see the historical mistake would pass a kernel that made it. The
//!   randomised mm stress is among them: it must catch
//!   `forget-anon-exclusive` on its own; so is seed 004 from user space,
//!   `user::rawdisk_get` booted with `rawdisk_hold=get` as well (the raw
//!   disks take plain references, as O_DIRECT did before pins: with pins
//!   the switch cannot lose a transfer);
//! - before the replays, on each architecture at [`SMP_CPUS`] CPUs, the
//!   same `user::rawdisk_get` with `rawdisk_hold=get` and no switch must
//!   pass ([`RAWDISK_GET_TEST`]): the swap entry's exclusive bit is what
//!   keeps a referenced page the process's own (with pins it runs in the
//!   in-guest test steps);
//! - user programs: on each architecture,
//!   `qemu run` of the project's `exit_with 3` must report status 3 (a
//!   static program built by Debian's gcc ran and its status reached
//!   xtask), and Debian's busybox must run `sh -c 'echo hi | cat'` and
//!   print `hi`, its `cat /proc/meminfo`, `uname -a` and `free` must
//!   print what they read from the kernel, and its shell's `wait` (which
//!   waits in `rt_sigsuspend`) must return for a background `sleep 0`
//!   ([`BUSYBOX_CHECK`]); the user-mode tests themselves
//!   (`user::*`) run inside the in-guest test steps at 1 and [`SMP_CPUS`]
//!   CPUs.
//!
//! Host tests are `cargo test` at the workspace root and the race tests
//! under the concurrency checker ([`host_test_commands`]); the lints cover
//! the race tests too ([`lint_commands`]).

use std::process::Command;
use std::time::{Duration, Instant};

use qemu::{Accel, Arch, Firmware, MemSize};

use crate::cli::{
    CiArgs, RunArgs, StressArgs, TestArgs, BOOT_SWAP, BOOT_TIMEOUT_SECS, STRESS_SWAP, TEST_SWAP,
    TEST_TIMEOUT_SECS,
};
use crate::disks::SwapChoice;
use crate::error::Error;
use crate::guest::{self, BugReplay, BUG_REPLAYS, CRASHCHECK_ARGS, RAWDISK_GET_ARGS, SELFCHECK_ARGS};
use crate::kbuild::{self, Builder};
use crate::setup;
use crate::stress;

/// CPUs of the multi-CPU in-guest run.
pub const SMP_CPUS: u32 = 4;
/// NUMA nodes of the NUMA in-guest run (at [`SMP_CPUS`] CPUs).
pub const NUMA_NODES: u32 = 2;
/// The tests of the NUMA in-guest run: the node tests (`move_pages`'s
/// among them), and the allocator's own in-guest tests over two pools.
pub const NUMA_FILTER: &str = "numa,frame";
/// How long CI's stress runs on each arch.
pub const CI_STRESS_SECS: u64 = 45;
/// The seed of CI's stress.
pub const CI_STRESS_SEED: &str = "0x5eed0013";

/// The in-guest test that must pass with the raw disks taking plain
/// references ([`RAWDISK_GET_ARGS`]) and no bug switch.
pub const RAWDISK_GET_TEST: &str = "user::rawdisk_get";

/// The status `qemu run -- exit_with N` must report.
pub const EXIT_WITH_STATUS: i32 = 3;

/// The busybox check: the command, and the line it must print.
pub const BUSYBOX_CHECK: (&[&str], &[&str]) = (
    &[
        "busybox",
        "sh",
        "-c",
        "busybox cat /proc/meminfo | busybox head -3; busybox uname -a; busybox free; echo hi | cat; \
         busybox sleep 0 & wait; echo waited",
    ],
    &["MemTotal:", "Linux mmkernel ", "Swap:", "hi", "waited"],
);

/// One finished step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    pub name: String,
    /// `Err` holds why the step failed, in one line.
    pub result: Result<(), String>,
    pub elapsed: Duration,
}

/// The steps to run, by name, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    HostSetup,
    HostTests,
    Lints,
    /// In-guest tests with this many CPUs.
    QemuTest(Arch, u32),
    /// The NUMA tests ([`NUMA_FILTER`]) on [`NUMA_NODES`] nodes and
    /// [`SMP_CPUS`] CPUs.
    NumaTest(Arch),
    /// The short randomised mm stress (at [`SMP_CPUS`] CPUs).
    Stress(Arch),
    Smoke(Arch, Firmware),
    SelfCheck(Arch),
    CrashCheck(Arch),
    /// [`RAWDISK_GET_TEST`] passes with [`RAWDISK_GET_ARGS`] (at
    /// [`SMP_CPUS`] CPUs).
    RawdiskGet(Arch),
    /// A bug-replay switch must be caught (at [`SMP_CPUS`] CPUs).
    BugReplay(Arch, &'static BugReplay),
    /// `qemu run -- exit_with 3` reports status 3.
    RunProgram(Arch),
    /// Busybox runs [`BUSYBOX_CHECK`].
    Busybox(Arch),
}

impl Step {
    pub fn name(&self) -> String {
        match self {
            Step::HostSetup => "host setup (QEMU, OVMF)".to_string(),
            Step::HostTests => "host tests (cargo test)".to_string(),
            Step::Lints => "lints (rustfmt, clippy)".to_string(),
            Step::QemuTest(arch, smp) => format!("in-guest tests {arch} smp {smp}"),
            Step::NumaTest(arch) => format!("in-guest NUMA tests {arch} smp {SMP_CPUS} numa {NUMA_NODES}"),
            Step::Stress(arch) => format!("stress {arch} smp {SMP_CPUS} {CI_STRESS_SECS} s"),
            Step::Smoke(arch, fw) => format!("boot smoke {}", guest::machine_name(*arch, *fw)),
            Step::SelfCheck(arch) => format!("harness self-check {arch}"),
            Step::CrashCheck(arch) => format!("harness crash check {arch}"),
            Step::RawdiskGet(arch) => format!("{RAWDISK_GET_TEST} {RAWDISK_GET_ARGS} {arch} smp {SMP_CPUS}"),
            Step::BugReplay(arch, replay) => {
                let by = if replay.test == stress::STRESS_TEST {
                    " (stress)".to_string()
                } else if replay.test.starts_with("user::") {
                    format!(" (user, {})", replay.extra_args)
                } else {
                    String::new()
                };
                format!("bug replay {}{by} {arch} smp {SMP_CPUS}", replay.bug)
            }
            Step::RunProgram(arch) => format!("qemu run exit_with {EXIT_WITH_STATUS} {arch}"),
            Step::Busybox(arch) => format!("busybox sh, cat, uname, free {arch}"),
        }
    }
}

/// The plan for `args`.
pub fn plan(args: &CiArgs) -> Vec<Step> {
    if args.host_only {
        return vec![Step::HostTests, Step::Lints];
    }
    let mut steps = vec![Step::HostSetup, Step::HostTests, Step::Lints];
    for &arch in &args.arches {
        steps.push(Step::QemuTest(arch, 1));
        steps.push(Step::QemuTest(arch, SMP_CPUS));
        steps.push(Step::NumaTest(arch));
    }
    steps.extend(args.arches.iter().map(|&a| Step::Stress(a)));
    for &arch in &args.arches {
        steps.push(Step::Smoke(arch, Firmware::Bios));
        if arch == Arch::X86_64 {
            steps.push(Step::Smoke(arch, Firmware::Uefi));
        }
    }
    steps.extend(args.arches.iter().map(|&a| Step::SelfCheck(a)));
    steps.extend(args.arches.iter().map(|&a| Step::CrashCheck(a)));
    steps.extend(args.arches.iter().map(|&a| Step::RawdiskGet(a)));
    for replay in BUG_REPLAYS {
        steps.extend(args.arches.iter().map(|&a| Step::BugReplay(a, replay)));
    }
    steps.extend(args.arches.iter().map(|&a| Step::RunProgram(a)));
    steps.extend(args.arches.iter().map(|&a| Step::Busybox(a)));
    steps
}

/// The firmware of every x86_64 step but the BIOS smoke boot: UEFI.
/// Under TCG the BIOS path loads the kernel and the initramfs through
/// the BIOS disk calls, about ten seconds more per boot than OVMF, and CI
/// boots x86_64 more than a dozen times; the BIOS smoke step still boots
/// that path every run. (AArch64 has one way in; its value is unused.)
fn step_firmware(arch: Arch) -> Firmware {
    match arch {
        Arch::X86_64 => Firmware::Uefi,
        Arch::Aarch64 => Firmware::Bios,
    }
}

fn run_args(arch: Arch, firmware: Firmware, timeout_secs: u64) -> RunArgs {
    RunArgs {
        arch,
        smp: 1,
        numa: None,
        mem: MemSize::default(),
        accel: Accel::Tcg,
        firmware,
        cpu: None,
        gdb: false,
        timeout_secs: Some(timeout_secs),
        swap: SwapChoice::Fresh(BOOT_SWAP),
        faulty_disk: false,
        extra_args: Vec::new(),
    }
}

/// The kernel arguments of the boot smoke check on `arch` and `firmware`:
/// the marker, and on the x86_64 BIOS boot `swap_demo=0`. The swap demo
/// pushes more than free memory through swap and back (about 20 s under
/// TCG); after the boot the kernel is the same whichever firmware loaded
/// it, so the UEFI boot's demo covers x86_64 and the BIOS boot checks
/// only what differs: the way in, up to a clean shutdown.
pub fn smoke_args(arch: Arch, firmware: Firmware) -> String {
    match (arch, firmware) {
        (Arch::X86_64, Firmware::Bios) => format!("{} swap_demo=0", guest::SMOKE_ARG),
        _ => guest::SMOKE_ARG.to_string(),
    }
}

fn one_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

/// The host test commands (arguments to cargo), all of which must pass:
/// the workspace's default members, then `mm`'s race tests under the
/// concurrency checker (a feature no other build sees).
pub fn host_test_commands() -> Vec<Vec<String>> {
    vec![
        words("test"),
        words(
            "test -p mm --features shuttle --test races_folio_flags --test races_thp --test races_lru \
         --test races_swap_claim --test races_swapin --test races_migration_entries --test races_migrate --test races_migrate_thp",
        ),
    ]
}

/// The lint commands (arguments to cargo), all of which must pass.
pub fn lint_commands() -> Vec<Vec<String>> {
    let mut commands = vec![
        words("fmt --all -- --check"),
        words("clippy --all-targets -- -D warnings"),
        words("clippy -p mm --features shuttle --tests -- -D warnings"),
    ];
    for arch in Arch::ALL {
        let mut clippy = kbuild::kernel_build_args(arch);
        clippy[0] = "clippy".to_string();
        clippy.extend(words("-- -D warnings"));
        commands.push(clippy);
    }
    commands
}

/// Runs `cargo <args>` in the workspace root, output going to the user.
fn cargo(builder: &Builder, args: &[String]) -> Result<(), String> {
    let shown = format!("cargo {}", args.join(" "));
    println!("xtask: running: {shown}");
    let status = Command::new(kbuild::cargo_program())
        .args(args)
        .current_dir(&builder.ws.root)
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs every one of `commands` (arguments to cargo), then reports every
/// one that failed.
fn cargo_all(builder: &Builder, commands: &[Vec<String>]) -> Result<(), String> {
    let failures: Vec<String> = commands.iter().filter_map(|args| cargo(builder, args).err()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn run_step(builder: &mut Builder, step: &Step) -> Result<(), String> {
    match step {
        Step::HostSetup => {
            // Everything the guest steps will use; UEFI covers OVMF.
            for arch in [Arch::X86_64, Arch::Aarch64] {
                let firmware = if arch == Arch::X86_64 { Firmware::Uefi } else { Firmware::Bios };
                setup::ensure_host_tools(arch, firmware, Accel::Tcg).map_err(|e| {
                    // The full message holds the commands to run.
                    eprintln!("xtask: {e}");
                    one_line(&e)
                })?;
            }
            Ok(())
        }
        Step::HostTests => cargo_all(builder, &host_test_commands()),
        Step::Lints => cargo_all(builder, &lint_commands()),
        Step::QemuTest(arch, smp) => {
            // As `qemu test`: a swap disk and the faulty disks, whose
            // injected errors and stall the blk and swap tests check.
            let args = TestArgs {
                run: RunArgs {
                    smp: *smp,
                    swap: SwapChoice::Fresh(TEST_SWAP),
                    faulty_disk: true,
                    ..run_args(*arch, step_firmware(*arch), TEST_TIMEOUT_SECS)
                },
                filter: None,
                seed: None,
                bug: None,
            };
            guest::qemu_test(builder, &args).map(|_| ()).map_err(|e| match e {
                // The verdict was printed in full just above.
                Error::Failed(m) => m.replace('\n', " "),
                other => one_line(&other),
            })
        }
        Step::NumaTest(arch) => {
            let args = TestArgs {
                run: RunArgs {
                    smp: SMP_CPUS,
                    numa: Some(NUMA_NODES),
                    swap: SwapChoice::Fresh(TEST_SWAP),
                    ..run_args(*arch, step_firmware(*arch), TEST_TIMEOUT_SECS)
                },
                filter: Some(NUMA_FILTER.to_string()),
                seed: None,
                bug: None,
            };
            guest::qemu_test(builder, &args).map(|_| ()).map_err(|e| match e {
                Error::Failed(m) => m.replace('\n', " "),
                other => one_line(&other),
            })
        }
        Step::Stress(arch) => {
            let args = StressArgs {
                run: RunArgs {
                    smp: SMP_CPUS,
                    mem: MemSize::from_mib(256).expect("256 MiB is a valid size"),
                    swap: SwapChoice::Fresh(STRESS_SWAP),
                    faulty_disk: true,
                    ..run_args(*arch, step_firmware(*arch), 2 * CI_STRESS_SECS + 300)
                },
                secs: CI_STRESS_SECS,
                seed: Some(CI_STRESS_SEED.to_string()),
                bug: None,
            };
            stress::run(builder, &args).map_err(|e| match e {
                Error::Failed(m) => m.replace('\n', " "),
                other => one_line(&other),
            })
        }
        Step::Smoke(arch, firmware) => {
            let args = run_args(*arch, *firmware, BOOT_TIMEOUT_SECS);
            let outcome = guest::run_guest(builder, &args, &smoke_args(*arch, *firmware), &[])
                .map_err(|e| one_line(&e))?;
            guest::smoke_check(outcome.arch, outcome.exit, &outcome.report)
        }
        Step::SelfCheck(arch) => {
            let args = run_args(*arch, step_firmware(*arch), BOOT_TIMEOUT_SECS);
            let outcome = guest::run_guest(builder, &args, SELFCHECK_ARGS, &[]).map_err(|e| one_line(&e))?;
            guest::selfcheck_check(outcome.arch, outcome.exit, &outcome.report)
        }
        Step::CrashCheck(arch) => {
            let args = run_args(*arch, step_firmware(*arch), BOOT_TIMEOUT_SECS);
            let outcome = guest::run_guest(builder, &args, CRASHCHECK_ARGS, &[]).map_err(|e| one_line(&e))?;
            guest::crashcheck_check(outcome.arch, outcome.exit, &outcome.report, &outcome.last_lines)
        }
        Step::RawdiskGet(arch) => {
            let args = TestArgs {
                run: RunArgs {
                    smp: SMP_CPUS,
                    swap: SwapChoice::Fresh(TEST_SWAP),
                    faulty_disk: true,
                    extra_args: words(RAWDISK_GET_ARGS),
                    ..run_args(*arch, step_firmware(*arch), TEST_TIMEOUT_SECS)
                },
                filter: Some(RAWDISK_GET_TEST.to_string()),
                seed: None,
                bug: None,
            };
            guest::qemu_test(builder, &args).map(|_| ()).map_err(|e| match e {
                Error::Failed(m) => m.replace('\n', " "),
                other => one_line(&other),
            })
        }
        Step::BugReplay(arch, replay) => {
            // The disks of `qemu test`: some stress tests swap to the
            // scratch disk.
            let args = RunArgs {
                smp: SMP_CPUS,
                swap: SwapChoice::Fresh(TEST_SWAP),
                faulty_disk: true,
                ..run_args(*arch, step_firmware(*arch), TEST_TIMEOUT_SECS)
            };
            let outcome =
                guest::run_guest(builder, &args, &replay.kernel_args(), &[]).map_err(|e| one_line(&e))?;
            guest::bug_replay_check(replay, outcome.arch, outcome.exit, &outcome.report)
        }
        Step::RunProgram(arch) => {
            let args = run_args(*arch, step_firmware(*arch), BOOT_TIMEOUT_SECS);
            let program = words(&format!("exit_with {EXIT_WITH_STATUS}"));
            let kernel_args = guest::init_kernel_args(&program).map_err(|e| one_line(&e))?;
            let outcome = guest::run_guest(builder, &args, &kernel_args, &[]).map_err(|e| one_line(&e))?;
            match guest::run_status(outcome.arch, outcome.exit, &outcome.report)? {
                EXIT_WITH_STATUS => Ok(()),
                other => Err(format!("`exit_with {EXIT_WITH_STATUS}` reported status {other}")),
            }
        }
        Step::Busybox(arch) => {
            let args = run_args(*arch, step_firmware(*arch), BOOT_TIMEOUT_SECS);
            let (command, wants) = BUSYBOX_CHECK;
            let command: Vec<String> = command.iter().map(|w| w.to_string()).collect();
            let kernel_args = guest::init_kernel_args(&command).map_err(|e| one_line(&e))?;
            let outcome = guest::run_guest(builder, &args, &kernel_args, &[]).map_err(|e| one_line(&e))?;
            guest::output_check(outcome.arch, outcome.exit, &outcome.report, &outcome.last_lines, wants)
        }
    }
}

/// The final table.
pub fn table(results: &[StepResult]) -> String {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0).max("step".len());
    let mut out = format!("{:<width$}  result  seconds\n", "step");
    for r in results {
        let (mark, why) = match &r.result {
            Ok(()) => ("PASS", String::new()),
            Err(why) => ("FAIL", format!("  {why}")),
        };
        out.push_str(&format!("{:<width$}  {mark}    {:>7.1}{why}\n", r.name, r.elapsed.as_secs_f64()));
    }
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if failed == 0 {
        out.push_str(&format!("all {} steps passed\n", results.len()));
    } else {
        out.push_str(&format!("{failed} of {} steps FAILED\n", results.len()));
    }
    // The closing line a CI reader looks for: the steps, counted as tests
    // (a bug replay's guest prints "0 passed, 1 failed" on purpose before).
    out.push_str(&format!("steps: {} passed, {failed} failed\n", results.len() - failed));
    out
}

/// `cargo xtask test`.
pub fn run(builder: &mut Builder, args: &CiArgs) -> Result<(), Error> {
    let steps = plan(args);
    let mut results = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        println!("\nxtask: ===== step {}/{}: {} =====", i + 1, steps.len(), step.name());
        let start = Instant::now();
        let result = run_step(builder, step);
        match &result {
            Ok(()) => println!("xtask: step `{}`: PASS", step.name()),
            Err(why) => eprintln!("xtask: step `{}`: FAIL: {why}", step.name()),
        }
        results.push(StepResult { name: step.name(), result, elapsed: start.elapsed() });
    }
    println!("\n{}", table(&results));
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::Failed(format!("{failed} of {} CI steps failed", results.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_plan_in_order() {
        let names: Vec<String> =
            plan(&CiArgs { host_only: false, arches: Arch::ALL.to_vec() }).iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "host setup (QEMU, OVMF)",
                "host tests (cargo test)",
                "lints (rustfmt, clippy)",
                "in-guest tests x86_64 smp 1",
                "in-guest tests x86_64 smp 4",
                "in-guest NUMA tests x86_64 smp 4 numa 2",
                "in-guest tests aarch64 smp 1",
                "in-guest tests aarch64 smp 4",
                "in-guest NUMA tests aarch64 smp 4 numa 2",
                "stress x86_64 smp 4 45 s",
                "stress aarch64 smp 4 45 s",
                "boot smoke x86_64 (bios)",
                "boot smoke x86_64 (uefi)",
                "boot smoke aarch64",
                "harness self-check x86_64",
                "harness self-check aarch64",
                "harness crash check x86_64",
                "harness crash check aarch64",
                "user::rawdisk_get rawdisk_hold=get x86_64 smp 4",
                "user::rawdisk_get rawdisk_hold=get aarch64 smp 4",
                "bug replay nonatomic-folio-flags x86_64 smp 4",
                "bug replay nonatomic-folio-flags aarch64 smp 4",
                "bug replay forget-anon-exclusive x86_64 smp 4",
                "bug replay forget-anon-exclusive aarch64 smp 4",
                "bug replay pageout-split-race x86_64 smp 4",
                "bug replay pageout-split-race aarch64 smp 4",
                "bug replay swapcache-tail-entries x86_64 smp 4",
                "bug replay swapcache-tail-entries aarch64 smp 4",
                "bug replay split-pmd-migration-entry x86_64 smp 4",
                "bug replay split-pmd-migration-entry aarch64 smp 4",
                "bug replay forget-anon-exclusive (user, rawdisk_hold=get) x86_64 smp 4",
                "bug replay forget-anon-exclusive (user, rawdisk_hold=get) aarch64 smp 4",
                "bug replay forget-anon-exclusive (stress) x86_64 smp 4",
                "bug replay forget-anon-exclusive (stress) aarch64 smp 4",
                "qemu run exit_with 3 x86_64",
                "qemu run exit_with 3 aarch64",
                "busybox sh, cat, uname, free x86_64",
                "busybox sh, cat, uname, free aarch64",
            ]
        );
    }

    #[test]
    fn restricted_plans() {
        assert_eq!(
            plan(&CiArgs { host_only: true, arches: Arch::ALL.to_vec() }),
            [Step::HostTests, Step::Lints]
        );
        assert_eq!(
            plan(&CiArgs { host_only: false, arches: vec![Arch::Aarch64] }),
            [
                Step::HostSetup,
                Step::HostTests,
                Step::Lints,
                Step::QemuTest(Arch::Aarch64, 1),
                Step::QemuTest(Arch::Aarch64, SMP_CPUS),
                Step::NumaTest(Arch::Aarch64),
                Step::Stress(Arch::Aarch64),
                Step::Smoke(Arch::Aarch64, Firmware::Bios),
                Step::SelfCheck(Arch::Aarch64),
                Step::CrashCheck(Arch::Aarch64),
                Step::RawdiskGet(Arch::Aarch64),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[0]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[1]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[2]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[3]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[4]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[5]),
                Step::BugReplay(Arch::Aarch64, &BUG_REPLAYS[6]),
                Step::RunProgram(Arch::Aarch64),
                Step::Busybox(Arch::Aarch64),
            ]
        );
    }

    #[test]
    fn host_tests_include_the_race_tests() {
        let shown: Vec<String> = host_test_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            shown,
            ["test", "test -p mm --features shuttle --test races_folio_flags --test races_thp --test races_lru --test races_swap_claim --test races_swapin --test races_migration_entries --test races_migrate --test races_migrate_thp"]
        );
    }

    #[test]
    fn lint_commands_cover_host_and_kernel_crates() {
        let shown: Vec<String> = lint_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            shown,
            [
                "fmt --all -- --check",
                "clippy --all-targets -- -D warnings",
                "clippy -p mm --features shuttle --tests -- -D warnings",
                "clippy -p boot-x86_64 --target x86_64-unknown-none --profile kernel -- -D warnings",
                "clippy -p boot-aarch64 --target aarch64-unknown-none --profile kernel -- -D warnings",
            ]
        );
    }

    #[test]
    fn only_the_bios_smoke_boot_skips_the_swap_demo() {
        assert_eq!(smoke_args(Arch::X86_64, Firmware::Bios), "smoke=1 swap_demo=0");
        assert_eq!(smoke_args(Arch::X86_64, Firmware::Uefi), "smoke=1");
        assert_eq!(smoke_args(Arch::Aarch64, Firmware::Bios), "smoke=1");
    }

    #[test]
    fn the_table() {
        let results = vec![
            StepResult {
                name: "host tests (cargo test)".into(),
                result: Ok(()),
                elapsed: Duration::from_millis(41_230),
            },
            StepResult {
                name: "boot smoke aarch64".into(),
                result: Err("no args line".into()),
                elapsed: Duration::from_millis(2_000),
            },
        ];
        assert_eq!(
            table(&results),
            "step                     result  seconds\n\
             host tests (cargo test)  PASS       41.2\n\
             boot smoke aarch64       FAIL        2.0  no args line\n\
             1 of 2 steps FAILED\n\
             steps: 1 passed, 1 failed\n"
        );
        assert!(table(&results[..1]).ends_with("all 1 steps passed\nsteps: 1 passed, 0 failed\n"));
    }
}
