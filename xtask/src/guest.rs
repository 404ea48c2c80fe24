//! Booting a guest for `qemu boot`, `qemu test` and `bench`: check the
//! kernel arguments, check the host, build, run QEMU, judge the result.

use std::time::Duration;

use qemu::{
    boot_verdict, test_verdict, Arch, Firmware, GuestExit, MachineConfig, MemSize, Report, RunOptions,
    RunOutcome, TestOutcome, Verdict,
};

use crate::cli::{RunArgs, TestArgs};
use crate::disks;
use crate::error::Error;
use crate::kbuild::Builder;
use crate::setup;

/// Refuses a kernel command line the kernel would refuse, before anything is built.
pub fn check_kernel_args(line: &str) -> Result<(), Error> {
    kargs::Args::parse(line)
        .map(|_| ())
        .map_err(|e| Error::Usage(format!("bad kernel arguments `{line}`: {e}")))
}

/// The machine for `args`, booting `image` with `kernel_args`.
pub fn machine_config(args: &RunArgs, image: std::path::PathBuf, kernel_args: &str) -> MachineConfig {
    let mut cfg = MachineConfig::new(args.arch, image);
    cfg.accel = args.accel;
    cfg.firmware = args.firmware;
    cfg.mem = args.mem;
    cfg.smp = args.smp;
    cfg.numa = args.numa;
    cfg.cpu = args.cpu.clone();
    cfg.gdb = args.gdb;
    cfg.kernel_args = kernel_args.to_string();
    cfg
}

/// A short name for the machine, e.g. `x86_64 (uefi)`.
pub fn machine_name(arch: Arch, firmware: Firmware) -> String {
    match arch {
        Arch::X86_64 => format!("{arch} ({firmware})"),
        Arch::Aarch64 => arch.to_string(),
    }
}

/// Checks, makes the disks, builds and boots; returns how the run went.
/// `extra_qemu` is appended to QEMU's arguments. Fresh disk images are
/// removed when the run is over (whatever its outcome).
pub fn run_guest(
    builder: &mut Builder,
    args: &RunArgs,
    kernel_args: &str,
    extra_qemu: &[String],
) -> Result<RunOutcome, Error> {
    check_kernel_args(kernel_args)?;
    // Refuse a bad machine before spending minutes on a build.
    let probe = machine_config(args, Default::default(), kernel_args);
    probe.validate().map_err(|e| Error::Usage(e.to_string()))?;
    setup::ensure_host_tools(args.arch, args.firmware, args.accel)?;
    let scratch = disks::scratch_dir(&builder.ws.target_dir.join("tmp"));
    let disk_set = disks::prepare(&scratch, &args.swap, args.faulty_disk)?;

    let (elf, image) = builder.image(args.arch, args.firmware)?;
    let mut cfg = machine_config(args, image, kernel_args);
    // Every boot carries the initramfs (x86_64: inside the image).
    cfg.initrd = Some(builder.initrd(args.arch)?);
    cfg.disks = disk_set.disks.clone();
    cfg.extra_args = extra_qemu.to_vec();
    for warning in cfg.warnings() {
        println!("xtask: warning: {warning}");
    }
    let cmd = cfg.command().map_err(|e| Error::Usage(e.to_string()))?;
    println!("xtask: running: {cmd}");
    if args.gdb {
        println!("{}", qemu::gdb_hint(&elf));
    }
    let opts = RunOptions {
        timeout: args.timeout_secs.map(Duration::from_secs),
        echo: true,
        keep_lines: qemu::runner::DEFAULT_KEEP_LINES,
        cpus: Some(args.smp),
        numa_nodes: Some(args.numa.unwrap_or(1)),
        // A panic's backtrace comes out as `function at file:line`.
        kernel_elf: Some(elf.clone()),
        source_root: Some(builder.ws.root.clone()),
    };
    let outcome = qemu::run(&cmd, args.arch, &opts).map_err(|e| Error::Qemu(e.to_string()));
    drop(disk_set);
    outcome
}

/// Prints a verdict line and turns a failing verdict into an error (whose
/// message has then been printed already).
fn conclude(what: &str, outcome: &RunOutcome, verdict: Verdict) -> Result<(), Error> {
    let secs = outcome.elapsed.as_secs_f64();
    if verdict.is_pass() {
        let passed = outcome.report.passed().count();
        let count = if passed > 0 { format!(", {passed} tests passed") } else { String::new() };
        println!("xtask: {what}: PASS{count} in {secs:.1} s");
        Ok(())
    } else {
        let text = format!("{what}: {verdict}");
        eprintln!("xtask: {text}\n  (after {secs:.1} s)");
        Err(Error::Failed(text))
    }
}

/// `cargo xtask qemu boot`.
pub fn boot(builder: &mut Builder, args: &RunArgs) -> Result<(), Error> {
    let kernel_args = args.extra_args.join(" ");
    let outcome = run_guest(builder, args, &kernel_args, &[])?;
    let verdict = boot_verdict(outcome.arch, outcome.exit, &outcome.report);
    conclude(&format!("boot on {}", machine_name(args.arch, args.firmware)), &outcome, verdict)
}

/// The kernel arguments that run `program_and_args` (the words after
/// `--` of `qemu run`) as the first process: `init=PATH` (a bare name is
/// `/bin/NAME`) and, with arguments, `init_args=` (`kargs::argv`).
pub fn init_kernel_args(program_and_args: &[String]) -> Result<String, Error> {
    let (program, rest) =
        program_and_args.split_first().ok_or_else(|| Error::Usage("`qemu run` needs a program".into()))?;
    let path = if program.starts_with('/') { program.clone() } else { format!("/bin/{program}") };
    if path.is_empty() || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(format!("program path `{path}` must be printable ASCII without spaces")));
    }
    let mut line = format!("{}={path}", kargs::argv::INIT_KEY);
    if !rest.is_empty() {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let value = kargs::argv::encode_argv(&rest)
            .map_err(|e| Error::Usage(format!("cannot pass the arguments {rest:?}: {e}")))?;
        line.push_str(&format!(" {}={value}", kargs::argv::INIT_ARGS_KEY));
    }
    Ok(line)
}

/// What `qemu run` exits with: the first program's status as a shell
/// gives it, or an error when the kernel never said how it ended (it
/// crashed, timed out, or panicked).
pub fn run_status(arch: Arch, exit: GuestExit, report: &Report) -> Result<i32, String> {
    if let Some(panic) = report.panics.first() {
        return Err(format!("the kernel panicked: {panic}"));
    }
    match &report.init_end {
        Some(end) => Ok(end.shell_status()),
        None => Err(format!(
            "the kernel never said how the program ended (no `init: ` end line); the guest {}",
            exit.describe(arch)
        )),
    }
}

/// A program run through `init=` (CI's busybox check) passed: it exited
/// with status 0 and printed a line for each of `wants`: a want ending in
/// `:` or a space is the start of its line (`MemTotal:`), any other the
/// whole line (`hi`).
pub fn output_check(
    arch: Arch,
    exit: GuestExit,
    report: &Report,
    last_lines: &[String],
    wants: &[&str],
) -> Result<(), String> {
    match run_status(arch, exit, report)? {
        0 => {}
        status => return Err(format!("the program ended with status {status}")),
    }
    for want in wants {
        let prefix = want.ends_with(':') || want.ends_with(' ');
        let seen = |l: &String| if prefix { l.starts_with(want) } else { l.trim_end() == *want };
        if !last_lines.iter().any(seen) {
            return Err(format!("the program exited with 0 but never printed the line `{want}`"));
        }
    }
    Ok(())
}

/// `cargo xtask qemu run`: boots with `init=`, returns the program's
/// status (see [`run_status`]).
pub fn run_program(builder: &mut Builder, args: &RunArgs) -> Result<i32, Error> {
    let kernel_args = init_kernel_args(&args.extra_args)?;
    let outcome = run_guest(builder, args, &kernel_args, &[])?;
    let what = format!("`{}` on {}", args.extra_args.join(" "), machine_name(args.arch, args.firmware));
    match run_status(outcome.arch, outcome.exit, &outcome.report) {
        Ok(status) => {
            let end = outcome.report.init_end.as_ref().map(ToString::to_string).unwrap_or_default();
            println!("xtask: {what}: {end} (xtask exits with {status})");
            Ok(status)
        }
        Err(why) => {
            eprintln!("xtask: {what}: {why}");
            Err(Error::Failed(why))
        }
    }
}

/// `cargo xtask qemu test`.
pub fn qemu_test(builder: &mut Builder, args: &TestArgs) -> Result<RunOutcome, Error> {
    let outcome = run_guest(builder, &args.run, &args.kernel_args(), &[])?;
    let verdict = test_verdict(outcome.arch, outcome.exit, &outcome.report);
    let what = format!("in-guest tests on {}", machine_name(args.run.arch, args.run.firmware));
    conclude(&what, &outcome, verdict).map(|()| outcome)
}

/// `cargo xtask bench`: the QEMU arguments the benchmark configuration adds
/// (BENCHMARKS.md: memory allocated up front, and on AArch64 the `max` CPU
/// with cheap pointer authentication unless `--cpu` says otherwise).
pub fn bench_args(args: &RunArgs) -> (RunArgs, Vec<String>) {
    let mut args = args.clone();
    if args.arch == Arch::Aarch64 && args.cpu.is_none() {
        args.cpu = Some("max,pauth-impdef=on".to_string());
    }
    (args, vec!["-mem-prealloc".to_string()])
}

/// The kernel command line for `bench`.
pub fn bench_kernel_args(args: &RunArgs) -> String {
    std::iter::once("bench=all".to_string())
        .chain(args.extra_args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Profile `swap` of BENCHMARKS.md: the same machine with 256 MiB of RAM
/// (and the bench's swap disk), running `bench=swap-profile`.
pub fn swap_profile_args(args: &RunArgs) -> RunArgs {
    RunArgs { mem: MemSize::from_mib(256).expect("256 MiB is a valid size"), ..args.clone() }
}

/// NUMA nodes of profile `migrate` (BENCHMARKS.md: `--numa 2`).
pub const MIGRATE_PROFILE_NODES: u32 = 2;

/// Profile `migrate` of BENCHMARKS.md: the same machine (`-m 2048 -smp 4`
/// unless told otherwise) split into [`MIGRATE_PROFILE_NODES`] NUMA nodes,
/// so that `migrate_4k` and `migrate_thp` move pages to the other node as
/// `move_pages` does; running `bench=migrate-profile`. A `--numa` given
/// wins; CPUs or RAM that do not split into the nodes give one node (the
/// moves then go to other frames of it).
pub fn migrate_profile_args(args: &RunArgs) -> RunArgs {
    let split = qemu::check_numa(MIGRATE_PROFILE_NODES, args.smp, args.mem).is_ok();
    let numa = args.numa.or(split.then_some(MIGRATE_PROFILE_NODES));
    RunArgs { numa, ..args.clone() }
}

/// The user program of the benchmarks (`user/mmbench.c`, `/bin/mmbench`
/// in the initramfs): the workloads of profiles `main` and `swap` as a
/// process, the same binary that runs on Linux.
pub const USER_BENCH: &str = "mmbench";

/// The kernel command line that runs profile `profile` (`main`, `swap`) of
/// [`USER_BENCH`] as the first process: `init=/bin/mmbench
/// init_args=<profile>`, then the words after `--`.
pub fn user_bench_kernel_args(args: &RunArgs, profile: &str) -> Result<String, Error> {
    let init = init_kernel_args(&[USER_BENCH.to_string(), profile.to_string()])?;
    Ok(std::iter::once(init).chain(args.extra_args.iter().cloned()).collect::<Vec<_>>().join(" "))
}

/// What runs the workloads in one boot of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// `/bin/mmbench <profile>` as the first process (figures named as in
    /// BENCHMARKS.md).
    User(&'static str),
    /// The in-kernel benchmarks, `bench=<selector>` (kernel tasks; the
    /// figures of workloads the user program also has end in `_ktask`).
    Ktask(&'static str),
}

/// `cargo xtask bench`: profile `main`, then profile `swap`, each in user
/// mode ([`USER_BENCH`]) and then as kernel tasks, then profile `migrate`
/// (kernel tasks only: no user API moves pages yet); each boot prints its
/// `BENCH` listing. The first boot that fails ends the command.
pub fn bench(builder: &mut Builder, args: &RunArgs) -> Result<(), Error> {
    let (args, extra_qemu) = bench_args(args);
    let swap = swap_profile_args(&args);
    let boots: [(&RunArgs, BenchMode, &str); 4] = [
        (&args, BenchMode::User("main"), " (profile main, user mode)"),
        (&args, BenchMode::Ktask("bench=all"), " (profile main, kernel tasks)"),
        (&swap, BenchMode::User("swap"), " (profile swap, user mode)"),
        (&swap, BenchMode::Ktask("bench=swap-profile"), " (profile swap, kernel tasks)"),
    ];
    for (boot_args, mode, label) in boots {
        bench_profile(builder, boot_args, mode, label, &extra_qemu)?;
    }
    bench_profile(
        builder,
        &migrate_profile_args(&args),
        BenchMode::Ktask("bench=migrate-profile"),
        " (profile migrate, kernel tasks)",
        &extra_qemu,
    )
}

/// One boot of `cargo xtask bench`: runs the workloads as `mode` says and
/// prints the `BENCH` listing; `label` names the profile in the verdict.
fn bench_profile(
    builder: &mut Builder,
    args: &RunArgs,
    mode: BenchMode,
    label: &str,
    extra_qemu: &[String],
) -> Result<(), Error> {
    let (outcome, verdict) = bench_boot(builder, args, mode, extra_qemu)?;
    println!();
    print!("{}", bench_listing(&outcome.report));
    conclude(&format!("bench{label} on {}", machine_name(args.arch, args.firmware)), &outcome, verdict)
}

/// One boot of the benchmarks on this kernel, as `cargo xtask bench` makes
/// it (also `bench --linux`'s boot of this kernel): the workloads run as
/// `mode` says; returns the run and its verdict, which in user mode also
/// needs [`user_bench_check`] to pass.
pub fn bench_boot(
    builder: &mut Builder,
    args: &RunArgs,
    mode: BenchMode,
    extra_qemu: &[String],
) -> Result<(RunOutcome, Verdict), Error> {
    let kernel_args = match mode {
        BenchMode::User(profile) => user_bench_kernel_args(args, profile)?,
        BenchMode::Ktask(selector) => bench_kernel_args(args).replacen("bench=all", selector, 1),
    };
    let outcome = run_guest(builder, args, &kernel_args, extra_qemu)?;
    let mut verdict = boot_verdict(outcome.arch, outcome.exit, &outcome.report);
    if let BenchMode::User(_) = mode {
        if let Err(why) = user_bench_check(outcome.arch, outcome.exit, &outcome.report) {
            let mut reasons = vec![why];
            reasons.extend(verdict.reasons().iter().cloned());
            verdict = Verdict::Fail(reasons);
        }
    }
    Ok((outcome, verdict))
}

/// A boot of the user benchmarks passed: `/bin/mmbench` exited with status
/// 0 (it ran every workload and their data matched), printed `BENCH` lines,
/// and none malformed.
pub fn user_bench_check(arch: Arch, exit: GuestExit, report: &Report) -> Result<(), String> {
    match run_status(arch, exit, report)? {
        0 => {}
        status => {
            return Err(format!(
                "/bin/{USER_BENCH} ended with status {status} (its `mmbench: ` lines above say why)"
            ))
        }
    }
    if report.benches.is_empty() {
        return Err(format!("/bin/{USER_BENCH} exited with 0 but printed no BENCH lines"));
    }
    if let Some(bad) = report.bad_bench_lines.first() {
        return Err(format!("/bin/{USER_BENCH} printed a malformed BENCH line: {bad}"));
    }
    Ok(())
}

/// The `BENCH` lines again, after the noise of the run.
pub fn bench_listing(report: &Report) -> String {
    let mut out = String::new();
    if report.benches.is_empty() {
        out.push_str("xtask: the kernel printed no BENCH lines (no benchmarks are implemented yet?)\n");
    } else {
        out.push_str(&format!("xtask: {} BENCH lines:\n", report.benches.len()));
        for b in &report.benches {
            out.push_str(&format!("{b}\n"));
        }
    }
    for bad in &report.bad_bench_lines {
        out.push_str(&format!(
            "xtask: warning: malformed (expected `BENCH name=N value=NUMBER unit=U`): {bad}\n"
        ));
    }
    out
}

/// The marker argument the boot smoke checks pass and expect to see echoed.
pub const SMOKE_ARG: &str = "smoke=1";

/// The smoke check: the boot passed and the kernel echoed the marker argument.
pub fn smoke_check(arch: Arch, exit: GuestExit, report: &Report) -> Result<(), String> {
    let verdict = boot_verdict(arch, exit, report);
    if !verdict.is_pass() {
        return Err(verdict.reasons().join("; "));
    }
    match &report.args_echo {
        None => Err("the kernel printed no `kernel: args: ` line".to_string()),
        Some(_) if report.args_echo_contains(SMOKE_ARG) => Ok(()),
        Some(echo) => Err(format!("the kernel echoed `kernel: args: {echo}`, without {SMOKE_ARG}")),
    }
}

/// The test that fails on purpose, and the arguments that make it fail.
pub const SELFCHECK_TEST: &str = "harness::selfcheck_fail";
pub const SELFCHECK_ARGS: &str = "test=harness::selfcheck_fail harness_selfcheck=fail";

/// The harness self-check: a run with a test that fails on purpose must
/// fail, name that test, and end through the guest's failure exit. A harness
/// that cannot see this failure would pass a broken kernel.
pub fn selfcheck_check(arch: Arch, exit: GuestExit, report: &Report) -> Result<(), String> {
    let verdict = failing_verdict(arch, exit, report, SELFCHECK_TEST, "fail")?;
    let reasons = verdict.reasons().join("; ");
    if !verdict.message().contains(SELFCHECK_TEST) {
        return Err(format!("the run failed without naming {SELFCHECK_TEST}: {reasons}"));
    }
    if !report.has_failed(SELFCHECK_TEST) {
        return Err(format!("{SELFCHECK_TEST} never printed its FAILED line: {reasons}"));
    }
    failure_exit(arch, exit)
}

/// The test that crashes the kernel on purpose, and the arguments that make it crash.
pub const CRASHCHECK_TEST: &str = "harness::selfcheck_crash";
pub const CRASHCHECK_ARGS: &str = "test=harness::selfcheck_crash harness_selfcheck=crash";

/// The crash self-check: a test that takes an unexpected page fault must
/// fail the run with a panic line, be named as the test that was running,
/// and the panic's backtrace, symbolized by the runner (`qemu::symbols`),
/// must name the crashing function with its source place in one of the
/// last `lines` (`backtrace: #0 pc 0x... kernel::tests::harness::selfcheck_crash at kernel/src/tests/harness.rs:34`).
pub fn crashcheck_check(
    arch: Arch,
    exit: GuestExit,
    report: &Report,
    lines: &[String],
) -> Result<(), String> {
    let verdict = failing_verdict(arch, exit, report, CRASHCHECK_TEST, "crash")?;
    let reasons = verdict.reasons().join("; ");
    if report.running.as_deref() != Some(CRASHCHECK_TEST) {
        return Err(format!(
            "the report does not name {CRASHCHECK_TEST} as the test that was running: {reasons}"
        ));
    }
    if report.panics.is_empty() {
        return Err(format!("the kernel printed no `kernel panic: ` line: {reasons}"));
    }
    if exit.is_success() {
        return Err("the guest reported success after a panic".to_string());
    }
    let named =
        |l: &&String| l.starts_with("backtrace: #") && l.contains(CRASHCHECK_TEST) && l.contains(" at ");
    if !lines.iter().any(|l| named(&l)) {
        return Err(format!("no symbolized backtrace frame names {CRASHCHECK_TEST} (function at file:line)"));
    }
    Ok(())
}

/// The verdict of a harness self-check run, which must fail: a pass means
/// the harness let `test` through although `harness_selfcheck=mode` makes
/// it `mode` (fail or crash).
fn failing_verdict(
    arch: Arch,
    exit: GuestExit,
    report: &Report,
    test: &str,
    mode: &str,
) -> Result<Verdict, String> {
    let verdict = test_verdict(arch, exit, report);
    if verdict.is_pass() {
        return Err(format!("the run passed, but {test} must {mode} when harness_selfcheck={mode} is given"));
    }
    Ok(verdict)
}

/// A run that must fail ended through the guest's failure exit, not a
/// crash or a claimed success.
fn failure_exit(arch: Arch, exit: GuestExit) -> Result<(), String> {
    if exit != GuestExit::Failure {
        return Err(format!("the guest did not end through its failure exit: {}", exit.describe(arch)));
    }
    Ok(())
}

/// A bug-replay check: a switch, the in-guest test that must catch it, and
/// what that test's failure must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugReplay {
    /// The switch, as in `bug=<name>`.
    pub bug: &'static str,
    /// The test that must fail with the switch on.
    pub test: &'static str,
    /// Words its `FAILED` reason must contain.
    pub expect: &'static str,
    /// The `stress_secs` bound given to the test: it stops at the first
    /// failure, so this is only how long a miss takes.
    pub stress_secs: u32,
    /// Other kernel arguments the replay needs (space-separated; empty for
    /// none), e.g. `rawdisk_hold=get` for seed 004 from user space.
    pub extra_args: &'static str,
}

/// Every bug-replay switch the kernel has, each with the test that must
/// catch it (ARCHITECTURE.md, "Bug replay").
pub const BUG_REPLAYS: &[BugReplay] = &[
    BugReplay {
        bug: "nonatomic-folio-flags",
        test: "folio_flags::no_lost_updates_while_mapping",
        expect: "lost update",
        stress_secs: 10,
        extra_args: "",
    },
    BugReplay {
        bug: "forget-anon-exclusive",
        test: "swap::gup_write_reference_survives_swap",
        expect: "writes are lost",
        stress_secs: 10,
        extra_args: "",
    },
    BugReplay {
        bug: "pageout-split-race",
        test: "swap::swapin_racing_pageout_loses_no_write",
        expect: "lost write",
        stress_secs: 20,
        extra_args: "",
    },
    BugReplay {
        bug: "swapcache-tail-entries",
        test: "migrate::swap_cache_thp_migrated_split_freed_and_swapped_in",
        expect: "wrong tail entry",
        stress_secs: 10,
        extra_args: "",
    },
    BugReplay {
        bug: "split-pmd-migration-entry",
        test: "migrate::thp_cut_while_it_migrates_loses_nothing",
        expect: "lost data",
        stress_secs: 30,
        extra_args: "",
    },
    // Seed 004 from user space: raw-disk reads that take plain references
    // (`rawdisk_hold=get`, O_DIRECT before pins) into a buffer paged out
    // and write-faulted meanwhile (docs/src/swapin.md). With pins, the
    // default, the switch cannot lose a transfer.
    BugReplay {
        bug: "forget-anon-exclusive",
        test: "user::rawdisk_get",
        expect: "writes are lost",
        stress_secs: 10,
        extra_args: RAWDISK_GET_ARGS,
    },
    // The randomised mm stress must catch a broken mechanism on its own,
    // with its default seed (docs/src/stress.md, "What it catches").
    BugReplay {
        bug: "forget-anon-exclusive",
        test: crate::stress::STRESS_TEST,
        expect: "mismatch",
        stress_secs: 90,
        extra_args: "",
    },
];

/// The kernel argument under which the raw disks take plain references
/// (FOLL_GET) instead of pins: `user::rawdisk_get` must pass with it and
/// fail with it and `bug=forget-anon-exclusive`.
pub const RAWDISK_GET_ARGS: &str = "rawdisk_hold=get";

impl BugReplay {
    /// The kernel command line of the check.
    pub fn kernel_args(&self) -> String {
        let line = format!("test={} bug={} stress_secs={}", self.test, self.bug, self.stress_secs);
        if self.extra_args.is_empty() {
            line
        } else {
            format!("{line} {}", self.extra_args)
        }
    }
}

/// The bug-replay check: with the switch on, the run must fail because
/// `replay.test` printed `FAILED` with a reason containing `replay.expect`,
/// the kernel must have echoed the switch and must not have panicked (a
/// replayed mistake is to be *detected*, not to bring the kernel down),
/// and the guest must end through its failure exit. A stress test that
/// cannot see its switch's mistake would pass a broken kernel.
pub fn bug_replay_check(
    replay: &BugReplay,
    arch: Arch,
    exit: GuestExit,
    report: &Report,
) -> Result<(), String> {
    let BugReplay { bug, test, expect, extra_args, .. } = replay;
    if !report.args_echo_contains(&format!("bug={bug}")) {
        return Err(format!("the kernel did not echo `bug={bug}`"));
    }
    if let Some(arg) = extra_args.split(' ').find(|a| !a.is_empty() && !report.args_echo_contains(a)) {
        return Err(format!("the kernel did not echo `{arg}`"));
    }
    if let Some(panic) = report.panics.first() {
        return Err(format!("the kernel panicked with bug={bug}: {panic}"));
    }
    let verdict = test_verdict(arch, exit, report);
    if verdict.is_pass() {
        return Err(format!("the run passed: {test} did not catch bug={bug}"));
    }
    match report.tests.iter().find(|t| t.name == *test).map(|t| &t.outcome) {
        Some(TestOutcome::Failed(why)) if why.contains(expect) => {}
        Some(TestOutcome::Failed(why)) => {
            return Err(format!("{test} failed, but not with a {expect}: {why}"));
        }
        Some(TestOutcome::Ok) => return Err(format!("{test} passed: it did not catch bug={bug}")),
        None => return Err(format!("{test} never reported: {}", verdict.reasons().join("; "))),
    }
    failure_exit(arch, exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command};
    use qemu::parse_transcript;

    fn run_args(line: &str) -> RunArgs {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        match cli::parse(&words).unwrap() {
            Command::Boot(a) | Command::Bench(a) => a,
            Command::QemuTest(t) => t.run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kernel_args_are_checked_with_the_kernels_parser() {
        assert_eq!(check_kernel_args("test=all seed=1 verbose"), Ok(()));
        assert_eq!(check_kernel_args(""), Ok(()));
        assert_eq!(
            check_kernel_args("test=a test=b"),
            Err(Error::Usage(
                "bad kernel arguments `test=a test=b`: argument `test` is given more than once".into()
            ))
        );
        assert!(check_kernel_args("Seed=1").is_err());
    }

    #[test]
    fn machine_config_carries_every_option() {
        let args = run_args("qemu boot --arch x86_64 --smp 2 --mem 1G --boot uefi --cpu qemu64 --gdb");
        let cfg = machine_config(&args, "k.img".into(), "a=1");
        assert_eq!((cfg.smp, cfg.mem.mib(), cfg.firmware, cfg.gdb), (2, 1024, Firmware::Uefi, true));
        assert_eq!(cfg.cpu.as_deref(), Some("qemu64"));
        assert_eq!(cfg.kernel_args, "a=1");
        let argv = cfg.command().unwrap().args;
        assert!(argv.ends_with(&[
            "-fw_cfg".to_string(),
            "name=opt/kernel/cmdline,string=a=1".into(),
            "-s".into(),
            "-S".into()
        ]));
    }

    #[test]
    fn bench_configuration() {
        let args = run_args("bench --arch aarch64 -- extra=1");
        let (b, extra) = bench_args(&args);
        assert_eq!(b.cpu.as_deref(), Some("max,pauth-impdef=on"));
        assert_eq!(extra, ["-mem-prealloc"]);
        assert_eq!(bench_kernel_args(&b), "bench=all extra=1");
        assert_eq!(user_bench_kernel_args(&b, "swap").unwrap(), "init=/bin/mmbench init_args=swap extra=1");
        let (b, _) = bench_args(&run_args("bench --arch aarch64 --cpu cortex-a72"));
        assert_eq!(b.cpu.as_deref(), Some("cortex-a72"));
        let (b, _) = bench_args(&run_args("bench"));
        assert_eq!(b.cpu, None);
        assert_eq!((b.smp, b.mem.mib()), (4, 2048));
    }

    #[test]
    fn migrate_profile_splits_the_bench_machine_into_two_nodes() {
        let (b, _) = bench_args(&run_args("bench"));
        let m = migrate_profile_args(&b);
        assert_eq!((m.smp, m.mem.mib(), m.numa), (4, 2048, Some(2)));
        assert_eq!(b.numa, None, "profile main stays on one node");
        assert_eq!(swap_profile_args(&b).numa, None, "profile swap stays on one node");
        // A --numa given wins; CPUs that do not split give one node.
        assert_eq!(migrate_profile_args(&run_args("bench --numa 4 --smp 4")).numa, Some(4));
        assert_eq!(migrate_profile_args(&run_args("bench --smp 1")).numa, None);
        assert_eq!(migrate_profile_args(&run_args("bench --smp 3")).numa, None);
    }

    #[test]
    fn bench_listing_repeats_the_lines_or_says_there_were_none() {
        let none = bench_listing(&parse_transcript("kernel: args: bench=all\n"));
        assert_eq!(none, "xtask: the kernel printed no BENCH lines (no benchmarks are implemented yet?)\n");
        let some = bench_listing(&parse_transcript(
            "BENCH name=a value=1.5 unit=GiB/s\nlog\nBENCH name=b value=2 unit=faults/s\nBENCH name=c\n",
        ));
        assert_eq!(
            some,
            "xtask: 2 BENCH lines:\nBENCH name=a value=1.5 unit=GiB/s\nBENCH name=b value=2 unit=faults/s\n\
             xtask: warning: malformed (expected `BENCH name=N value=NUMBER unit=U`): BENCH name=c\n"
        );
    }

    #[test]
    fn user_bench_passes_only_on_status_0_with_bench_lines() {
        let check = |exit, text| user_bench_check(Arch::X86_64, exit, &parse_transcript(text));
        let good = "init: running /bin/mmbench with 1 arguments\nBENCH name=a value=1.5 unit=faults/s\n\
                    init: exited with status 0\n";
        assert_eq!(check(GuestExit::Success, good), Ok(()));
        let failed = "BENCH name=a value=1.5 unit=faults/s\nmmbench: FAILED: x\ninit: exited with status 1\n";
        assert!(check(GuestExit::Failure, failed).unwrap_err().contains("status 1"));
        let silent = "init: exited with status 0\n";
        assert!(check(GuestExit::Success, silent).unwrap_err().contains("no BENCH lines"));
        let bad = "BENCH name=a value=1.5 unit=x\nBENCH name=b\ninit: exited with status 0\n";
        assert!(check(GuestExit::Success, bad).unwrap_err().contains("malformed"));
        assert!(check(GuestExit::Crashed(None), "BENCH name=a value=1 unit=x\n")
            .unwrap_err()
            .contains("never said"));
    }

    #[test]
    fn smoke_checks() {
        let check = |exit, text| smoke_check(Arch::X86_64, exit, &parse_transcript(text));
        assert_eq!(check(GuestExit::Success, "kernel: args: smoke=1\n"), Ok(()));
        assert_eq!(
            check(GuestExit::Success, "kernel: booted\n"),
            Err("the kernel printed no `kernel: args: ` line".into())
        );
        assert_eq!(
            check(GuestExit::Success, "kernel: args: smoke=10\n"),
            Err("the kernel echoed `kernel: args: smoke=10`, without smoke=1".into())
        );
        assert!(check(GuestExit::Crashed(Some(0)), "kernel: args: smoke=1\n")
            .unwrap_err()
            .contains("triple fault"));
        assert!(check(GuestExit::Success, "kernel: args: smoke=1\nkernel panic: x\n").is_err());
    }

    #[test]
    fn selfcheck_checks() {
        let check = |exit, text| selfcheck_check(Arch::Aarch64, exit, &parse_transcript(text));
        let good = "kernel: args: test=harness::selfcheck_fail harness_selfcheck=fail\n\
                    test harness::selfcheck_fail ... FAILED: failing on purpose\n0 passed, 1 failed\n";
        assert_eq!(check(GuestExit::Failure, good), Ok(()));
        // The harness would have let a failing test through.
        let passed = "test harness::selfcheck_fail ... ok\n1 passed, 0 failed\n";
        assert!(check(GuestExit::Success, passed).unwrap_err().starts_with("the run passed"));
        // Failing for some other reason does not prove anything.
        assert!(check(GuestExit::Crashed(Some(3)), "kernel: args:\n")
            .unwrap_err()
            .starts_with("the run failed without naming"));
        // A crash while the test ran names it, but is not the failure path.
        let crash = "test harness::selfcheck_fail ... kernel panic: oops\n";
        assert!(check(GuestExit::Failure, crash).unwrap_err().contains("never printed its FAILED line"));
        // The FAILED line is there, but the guest claimed success.
        let lying = "test harness::selfcheck_fail ... FAILED: x\n0 passed, 1 failed\n";
        assert!(check(GuestExit::Success, lying)
            .unwrap_err()
            .starts_with("the guest did not end through its failure exit"));
    }

    #[test]
    fn crashcheck_checks() {
        let check = |exit, text: &str| {
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            crashcheck_check(Arch::X86_64, exit, &parse_transcript(text), &lines)
        };
        let panic = "test harness::selfcheck_crash ... \n\
                     kernel panic: unexpected kernel page fault at 0x42 at trap.rs:1:1\n\
                     backtrace: _start at 0x1000\n";
        let frame = "backtrace: #0 pc 0x1234 kernel::tests::harness::selfcheck_crash at kernel/src/tests/harness.rs:34\n";
        let good = format!("{panic}{frame}");
        let good = good.as_str();
        assert_eq!(check(GuestExit::Failure, good), Ok(()));
        // A backtrace the runner could not symbolize, or that misses the
        // crashing function, does not do.
        let raw = format!("{panic}backtrace: #0 pc 0x1234\n");
        assert!(check(GuestExit::Failure, &raw).unwrap_err().starts_with("no symbolized backtrace frame"));
        let elsewhere =
            format!("{panic}backtrace: #0 pc 0x1234 kernel::panic::panic at kernel/src/panic.rs:9\n");
        assert!(check(GuestExit::Failure, &elsewhere)
            .unwrap_err()
            .starts_with("no symbolized backtrace frame"));
        assert!(check(GuestExit::Success, "test harness::selfcheck_crash ... ok\n1 passed, 0 failed\n")
            .unwrap_err()
            .starts_with("the run passed"));
        // Dying silently (a triple fault) names the test but prints no panic.
        assert!(check(GuestExit::Crashed(Some(0)), "test harness::selfcheck_crash ... ")
            .unwrap_err()
            .starts_with("the kernel printed no `kernel panic: ` line"));
        assert!(check(GuestExit::Failure, "kernel panic: early\n")
            .unwrap_err()
            .starts_with("the report does not name"));
        assert_eq!(check(GuestExit::Success, good), Err("the guest reported success after a panic".into()));
    }

    #[test]
    fn bug_replay_checks() {
        let replay = &BUG_REPLAYS[0];
        assert_eq!(
            replay.kernel_args(),
            "test=folio_flags::no_lost_updates_while_mapping bug=nonatomic-folio-flags stress_secs=10"
        );
        let user =
            BUG_REPLAYS.iter().find(|r| r.test == "user::rawdisk_get").expect("seed 004 from user space");
        assert_eq!(
            user.kernel_args(),
            "test=user::rawdisk_get bug=forget-anon-exclusive stress_secs=10 rawdisk_hold=get"
        );
        // Caught, but without the hold that makes it possible: not the replay.
        let pinned = "kernel: args: test=user::rawdisk_get bug=forget-anon-exclusive stress_secs=10\n\
                      test user::rawdisk_get ... FAILED: the disk's writes are lost\n0 passed, 1 failed\n";
        assert_eq!(
            bug_replay_check(user, Arch::X86_64, GuestExit::Failure, &parse_transcript(pinned)),
            Err("the kernel did not echo `rawdisk_hold=get`".into())
        );
        let check = |exit, text: &str| bug_replay_check(replay, Arch::X86_64, exit, &parse_transcript(text));
        let echo =
            "kernel: args: test=folio_flags::no_lost_updates_while_mapping bug=nonatomic-folio-flags\n";
        let caught = format!(
            "{echo}test folio_flags::no_lost_updates_while_mapping ... FAILED: lost update: bit gone\n\
             0 passed, 1 failed\n"
        );
        assert_eq!(check(GuestExit::Failure, &caught), Ok(()));
        // The stress test missed the mistake.
        let missed =
            format!("{echo}test folio_flags::no_lost_updates_while_mapping ... ok\n1 passed, 0 failed\n");
        assert!(check(GuestExit::Success, &missed).unwrap_err().starts_with("the run passed"));
        // It failed, but for another reason (a leak, say): not the catch.
        let other = format!(
            "{echo}test folio_flags::no_lost_updates_while_mapping ... FAILED: leaked 8 bytes of heap\n\
             0 passed, 1 failed\n"
        );
        assert!(check(GuestExit::Failure, &other).unwrap_err().contains("not with a lost update"));
        // The kernel went down instead of the test catching it.
        let panic =
            format!("{echo}test folio_flags::no_lost_updates_while_mapping ... \nkernel panic: free: x\n");
        assert!(check(GuestExit::Failure, &panic).unwrap_err().starts_with("the kernel panicked"));
        // The switch never reached the kernel.
        let no_echo = "kernel: args: test=folio_flags::no_lost_updates_while_mapping\n";
        assert!(check(GuestExit::Failure, no_echo).unwrap_err().contains("did not echo"));
        // Another test failing does not count.
        let elsewhere = format!("{echo}test vm::x ... FAILED: lost update\n0 passed, 1 failed\n");
        assert!(check(GuestExit::Failure, &elsewhere).unwrap_err().contains("never reported"));
        // The FAILED line is there, but the guest claimed success.
        assert!(check(GuestExit::Success, &caught).unwrap_err().starts_with("the guest did not end"));
    }

    #[test]
    fn init_arguments() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(init_kernel_args(&words("first_touch")).unwrap(), "init=/bin/first_touch");
        let mut busybox = words("/bin/busybox sh -c");
        busybox.push("echo hi | cat".into());
        let line = init_kernel_args(&busybox).unwrap();
        assert_eq!(line, "init=/bin/busybox init_args=sh,-c,echo%20hi%20|%20cat");
        assert_eq!(check_kernel_args(&line), Ok(()));
        assert!(init_kernel_args(&[]).is_err());
        assert!(init_kernel_args(&words("prog ")).is_err(), "one empty argument alone");
    }

    #[test]
    fn run_status_is_the_programs() {
        let status = |exit, text: &str| run_status(Arch::X86_64, exit, &parse_transcript(text));
        assert_eq!(status(GuestExit::Success, "init: exited with status 0\n"), Ok(0));
        assert_eq!(status(GuestExit::Failure, "init: exited with status 3\n"), Ok(3));
        assert_eq!(status(GuestExit::Failure, "init: killed by signal 11\n"), Ok(139));
        assert_eq!(status(GuestExit::Failure, "init: cannot run /bin/x: gone\n"), Ok(127));
        assert!(status(GuestExit::Failure, "kernel: args: init=/bin/x\n")
            .unwrap_err()
            .contains("never said"));
        assert!(status(GuestExit::Failure, "init: exited with status 0\nkernel panic: x\n")
            .unwrap_err()
            .contains("panicked"));
    }

    #[test]
    fn output_checks() {
        let check = |text: &str| {
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            output_check(Arch::Aarch64, GuestExit::Success, &parse_transcript(text), &lines, &["Mem:", "hi"])
        };
        assert_eq!(check("init: running /bin/busybox\nMem: 5 6\nhi\r\ninit: exited with status 0\n"), Ok(()));
        assert!(check("Mem: 5\nhi there\ninit: exited with status 0\n")
            .unwrap_err()
            .contains("never printed"));
        assert!(check("Mem 5\nhi\ninit: exited with status 0\n").unwrap_err().contains("`Mem:`"));
        assert!(check("Mem: 5\nhi\ninit: exited with status 2\n").unwrap_err().contains("status 2"));
        assert!(check("Mem: 5\nhi\n").unwrap_err().contains("never said"));
    }

    #[test]
    fn machine_names() {
        assert_eq!(machine_name(Arch::X86_64, Firmware::Uefi), "x86_64 (uefi)");
        assert_eq!(machine_name(Arch::Aarch64, Firmware::Bios), "aarch64");
    }
}
