//! The `cargo xtask` command line: a small option parser (no external
//! crate) and the typed commands it produces.
//!
//! Options are `--name VALUE`, `--name=VALUE` or a bare `--flag`; each may
//! be given once. Words after `--` are kernel arguments. Anything unknown is
//! refused with a message naming it, so a typo never silently changes what
//! runs.

use std::collections::HashMap;
use std::fmt;

use qemu::{Accel, Arch, DiskSize, Firmware, MemSize};

use crate::disks::SwapChoice;

/// One line per command.
// (Not a `\` continuation: that would eat the first line's indent.)
const SYNOPSIS: &str = "    cargo xtask build [--arch x86_64|aarch64|all]
    cargo xtask qemu boot [RUN OPTIONS] [-- KERNEL ARGS...]
    cargo xtask qemu test [RUN OPTIONS] [--filter NAME] [--seed N] [--bug NAME] [-- EXTRA ARGS...]
    cargo xtask qemu run [RUN OPTIONS] -- PROGRAM [ARGS...]
    cargo xtask bench [RUN OPTIONS] [-- EXTRA ARGS...]
    cargo xtask bench --linux [--arch x86_64|aarch64] [--boots N] [RUN OPTIONS]
    cargo xtask stress [RUN OPTIONS] [--minutes M | --secs S] [--seed N] [--bug NAME] [-- EXTRA ARGS...]
    cargo xtask test [--host-only] [--arch x86_64|aarch64]
    cargo xtask book
    cargo xtask --help
";

/// The options, after the synopsis in `--help`.
const DETAILS: &str = "\
COMMANDS:
    build        build the kernel images (default: both architectures)
    qemu boot    build and boot the kernel; passes when the guest reports success
                 without panicking
    qemu test    boot with test=<NAME|all> [seed=N] [bug=NAME]; passes only when every
                 in-guest test passes
    qemu run     boot with init=PROGRAM init_args=ARGS: run PROGRAM of the initramfs
                 (a bare name means /bin/NAME) as the first process, and exit with
                 its status (128 + N when signal N killed it)
    bench        profile main: boot with init=/bin/mmbench init_args=main (the user
                 program), then with bench=all (the kernel-task versions, figures
                 named ..._ktask); profile swap (256 MiB of RAM) the same with
                 init_args=swap and bench=swap-profile; profile migrate: boot with
                 bench=migrate-profile and --numa 2; listing the BENCH lines of each
    bench --linux
                 profiles main and swap on this kernel (user mode) and on Debian's
                 Linux 6.1 (fetched with apt-get download once, into target/linux/),
                 alternating the two, N boots each (--boots N, default 3); prints per
                 figure both medians, the ratio and which side is ahead, then every
                 raw value
    stress       boot with test=stress::random_mm_ops for M minutes (default 1; smp 4,
                 256M RAM, a 32M swap disk and the faulty disk), print the totals
                 and fail on any mismatched byte, checker error, killed task,
                 leaked frame, slot or heap byte, or panic
    test         everything CI runs: host tests, lints (rustfmt, clippy), in-guest
                 tests on both architectures, the short randomised stress on
                 each (45 s), boot smoke checks (BIOS, UEFI,
                 AArch64), the harness self-checks (a failing and a crashing
                 test must be caught) and the bug replays (each bug=<switch>
                 must be caught by its stress test); runs every step, prints
                 a table, and fails if any step failed
    book         build the mdBook in docs/ (installs mdbook 0.4 if missing)

RUN OPTIONS:
    --arch x86_64|aarch64   guest architecture (default x86_64)
    --smp N                 number of CPUs (default 1; bench: 4)
    --numa N                split the CPUs and RAM evenly into N NUMA nodes (1 to 8;
                            N must divide --smp, and each node gets at least 64 MiB)
    --mem SIZE              guest RAM: 512M, 2G, or a number of MiB (default 512M; bench: 2G)
    --accel tcg|kvm|tcg-icount
                            accelerator (default tcg; kvm is x86_64 only;
                            tcg-icount: one thread, the guest's clock counts
                            instructions, for A/B comparisons on a busy host)
    --boot bios|uefi        x86_64 firmware (default bios)
    --cpu NAME              QEMU CPU model, e.g. max,pauth-impdef=on
                            (default: max; qemu64,+nx with kvm)
    --gdb                   start paused with a gdb stub on localhost:1234
                            (no time limit unless --timeout is given)
    --timeout SECS          kill the guest after SECS seconds, 0 for no limit
                            (default: boot 120, test 600, bench 600,
                            stress: twice its length plus 300)
    --swap SIZE             attach a fresh swap disk of SIZE (e.g. 256M, 1G) as
                            virtio-blk: a sparse image in /dev/shm with a mkswap v1
                            header, removed after the run (default: boot 256M,
                            test 128M, bench 1G, stress 32M; 0 for none)
    --no-swap               attach no swap disk (same as --swap 0)
    --swap-image PATH       attach your own swap image instead (e.g. made by mkswap);
                            it is used as it is and kept
    --faulty-disk           attach the faulty disks too: an 8 MiB scratch disk on which
                            writes of pages 16..24 and reads of pages 32..40 fail
                            with EIO (QEMU blkdebug); a 1 MiB disk that stops
                            answering after its first few requests (QEMU
                            throttling); and a 1 MiB read-only disk with a swap
                            header (swapon must refuse it); default for qemu test
                            and stress
    --no-faulty-disk        do not attach them (qemu test, stress)

QEMU TEST OPTIONS:
    --filter NAME           run the tests whose names start with NAME (several:
                            comma-separated; default all)
    --seed N                seed for randomised tests (decimal or 0x hex)
    --bug NAME              put a historical mistake back (bug-replay switch)

STRESS OPTIONS:
    --minutes M             how long the stress runs, in minutes (decimals allowed;
                            default 1)
    --secs S                the same in seconds (instead of --minutes)
    --seed N                the seed (decimal or 0x hex; default: a new one, printed):
                            the same seed replays the same operations in every task
    --bug NAME              put a historical mistake back: the stress must catch it

TEST (CI) OPTIONS:
    --host-only             host tests and lints only
    --arch x86_64|aarch64   run the guest steps for this architecture only

Kernel arguments are key=value words (key: [a-z0-9_-]); they are checked
before anything is built.
";

/// The full help text printed by `--help`.
pub fn help_text() -> String {
    format!("cargo xtask: build, boot and test the kernel under QEMU\n\nUSAGE:\n{SYNOPSIS}\n{DETAILS}")
}

/// The short usage printed after a bad command line.
pub fn usage_text() -> String {
    format!("usage:\n{SYNOPSIS}run `cargo xtask --help` for the options\n")
}

/// A command line that cannot be obeyed. Always the user's input to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which architectures `build` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchChoice {
    One(Arch),
    All,
}

impl ArchChoice {
    pub fn arches(self) -> Vec<Arch> {
        match self {
            ArchChoice::One(arch) => vec![arch],
            ArchChoice::All => Arch::ALL.to_vec(),
        }
    }
}

/// Options shared by every command that boots a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub arch: Arch,
    pub smp: u32,
    /// NUMA nodes (`--numa N`), `None` for none.
    pub numa: Option<u32>,
    pub mem: MemSize,
    pub accel: Accel,
    pub firmware: Firmware,
    pub cpu: Option<String>,
    pub gdb: bool,
    /// The time limit; `None` for no limit.
    pub timeout_secs: Option<u64>,
    /// The swap disk.
    pub swap: SwapChoice,
    /// Attach the faulty disk (`qemu::disk::FaultPlan`).
    pub faulty_disk: bool,
    /// The words after `--`.
    pub extra_args: Vec<String>,
}

/// `cargo xtask qemu test` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestArgs {
    pub run: RunArgs,
    pub filter: Option<String>,
    pub seed: Option<String>,
    pub bug: Option<String>,
}

impl TestArgs {
    /// The kernel command line: `test=<filter|all> [seed=N] [bug=NAME] EXTRA...`.
    pub fn kernel_args(&self) -> String {
        let mut words = vec![format!("test={}", self.filter.as_deref().unwrap_or("all"))];
        if let Some(seed) = &self.seed {
            words.push(format!("seed={seed}"));
        }
        if let Some(bug) = &self.bug {
            words.push(format!("bug={bug}"));
        }
        words.extend(self.run.extra_args.iter().cloned());
        words.join(" ")
    }
}

/// `cargo xtask stress` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StressArgs {
    pub run: RunArgs,
    /// How long the stress runs, in seconds.
    pub secs: u64,
    pub seed: Option<String>,
    pub bug: Option<String>,
}

/// `cargo xtask test` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiArgs {
    pub host_only: bool,
    /// Run the guest steps for these architectures only.
    pub arches: Vec<Arch>,
}

/// `cargo xtask bench --linux` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxBenchArgs {
    pub run: RunArgs,
    /// Boots of each kernel per profile.
    pub boots: u32,
}

/// Boots of each kernel per profile when `--boots` is not given.
pub const LINUX_BENCH_BOOTS: u32 = 3;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Build(ArchChoice),
    Boot(RunArgs),
    QemuTest(TestArgs),
    /// `qemu run`: the program and its arguments are `extra_args`.
    Run(RunArgs),
    Bench(RunArgs),
    /// `bench --linux`.
    BenchLinux(LinuxBenchArgs),
    Stress(StressArgs),
    Ci(CiArgs),
    Book,
}

/// One option a command accepts; `value` names its argument, `None` for a flag.
struct OptSpec {
    name: &'static str,
    value: Option<&'static str>,
}

const fn opt(name: &'static str, value: &'static str) -> OptSpec {
    OptSpec { name, value: Some(value) }
}

const fn flag(name: &'static str) -> OptSpec {
    OptSpec { name, value: None }
}

const RUN_OPTS: &[OptSpec] = &[
    opt("--arch", "ARCH"),
    opt("--smp", "N"),
    opt("--numa", "N"),
    opt("--mem", "SIZE"),
    opt("--accel", "ACCEL"),
    opt("--boot", "FIRMWARE"),
    opt("--cpu", "NAME"),
    flag("--gdb"),
    opt("--timeout", "SECS"),
    opt("--swap", "SIZE"),
    flag("--no-swap"),
    opt("--swap-image", "PATH"),
    flag("--faulty-disk"),
    flag("--no-faulty-disk"),
];
const TEST_OPTS: &[OptSpec] = &[opt("--filter", "NAME"), opt("--seed", "N"), opt("--bug", "NAME")];
const STRESS_OPTS: &[OptSpec] =
    &[opt("--minutes", "M"), opt("--secs", "S"), opt("--seed", "N"), opt("--bug", "NAME")];
const BENCH_OPTS: &[OptSpec] = &[flag("--linux"), opt("--boots", "N")];
const BUILD_OPTS: &[OptSpec] = &[opt("--arch", "ARCH")];
const CI_OPTS: &[OptSpec] = &[flag("--host-only"), opt("--arch", "ARCH")];

/// The options found on a command line, and the words after `--`.
#[derive(Debug, Default)]
struct Parsed {
    values: HashMap<&'static str, String>,
    flags: Vec<&'static str>,
    rest: Vec<String>,
    help: bool,
}

impl Parsed {
    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    /// Parses option `name` with `parse` when given, else `default`.
    fn parse_or<T, E: fmt::Display>(
        &self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, CliError> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => parse(v).map_err(|e| CliError(format!("{name}: {e}"))),
        }
    }
}

/// Splits `words` into options known to `specs` and the words after `--`.
fn parse_options(
    command: &str,
    words: &[String],
    specs: &[&[OptSpec]],
    allow_rest: bool,
) -> Result<Parsed, CliError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word == "--" {
            if !allow_rest {
                return Err(CliError(format!("`cargo xtask {command}` takes no arguments after `--`")));
            }
            parsed.rest = words[i..].to_vec();
            break;
        }
        if word == "-h" || word == "--help" {
            parsed.help = true;
            continue;
        }
        if !word.starts_with('-') {
            let hint = if allow_rest { " (kernel arguments go after `--`)" } else { "" };
            return Err(CliError(format!("unexpected argument `{word}` for `cargo xtask {command}`{hint}")));
        }
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        let spec = specs
            .iter()
            .flat_map(|s| s.iter())
            .find(|s| s.name == name)
            .ok_or_else(|| CliError(format!("unknown option `{name}` for `cargo xtask {command}`")))?;
        if parsed.values.contains_key(spec.name) || parsed.flags.contains(&spec.name) {
            return Err(CliError(format!("option `{name}` is given more than once")));
        }
        match (spec.value, inline) {
            (None, Some(_)) => return Err(CliError(format!("option `{name}` takes no value"))),
            (None, None) => parsed.flags.push(spec.name),
            (Some(_), Some(v)) => {
                parsed.values.insert(spec.name, v);
            }
            (Some(what), None) => {
                let v = words
                    .get(i)
                    .filter(|v| *v != "--")
                    .ok_or_else(|| CliError(format!("option `{name}` needs a value ({what})")))?;
                i += 1;
                parsed.values.insert(spec.name, v.clone());
            }
        }
    }
    Ok(parsed)
}

/// Default time limits, in seconds.
pub const BOOT_TIMEOUT_SECS: u64 = 120;
pub const TEST_TIMEOUT_SECS: u64 = 600;
pub const BENCH_TIMEOUT_SECS: u64 = 600;

/// Defaults that differ between `qemu boot`, `qemu test` and `bench`.
struct RunDefaults {
    smp: u32,
    mem_mib: u64,
    timeout_secs: u64,
    swap: DiskSize,
    faulty_disk: bool,
}

/// Default swap disk sizes: `qemu boot`, `qemu test`, and `bench` (the
/// "swap disk" row of BENCHMARKS.md).
pub const BOOT_SWAP: DiskSize = DiskSize::from_mib(256);
pub const TEST_SWAP: DiskSize = DiskSize::from_mib(128);
pub const BENCH_SWAP: DiskSize = DiskSize::from_mib(1024);
/// The stress's swap disk: with the faulty disk's 8 MiB, less than the
/// stress's working set (48 MiB), as its design asks.
pub const STRESS_SWAP: DiskSize = DiskSize::from_mib(32);
/// The stress's length when neither `--minutes` nor `--secs` is given.
pub const STRESS_DEFAULT_SECS: u64 = 60;

/// `--minutes M` or `--secs S` (at most one) as seconds, at least 1.
fn stress_secs(p: &Parsed) -> Result<u64, CliError> {
    match (p.value("--minutes"), p.value("--secs")) {
        (Some(_), Some(_)) => Err(CliError("--minutes and --secs exclude each other; give one".into())),
        (Some(m), None) => match m.parse::<f64>() {
            Ok(min) if min.is_finite() && min > 0.0 && min <= 10_000.0 => {
                Ok(((min * 60.0).round() as u64).max(1))
            }
            _ => Err(CliError(format!("--minutes: `{m}` is not a positive number of minutes"))),
        },
        (None, Some(s)) => match s.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(secs),
            _ => Err(CliError(format!("--secs: `{s}` is not a positive whole number of seconds"))),
        },
        (None, None) => Ok(STRESS_DEFAULT_SECS),
    }
}

/// `--swap`, `--no-swap` or `--swap-image` (at most one), else `default`.
fn swap_choice(p: &Parsed, default: DiskSize) -> Result<SwapChoice, CliError> {
    let given = [p.value("--swap").is_some(), p.flag("--no-swap"), p.value("--swap-image").is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(CliError("--swap, --no-swap and --swap-image exclude each other; give one".into()));
    }
    if p.flag("--no-swap") {
        return Ok(SwapChoice::Off);
    }
    if let Some(path) = p.value("--swap-image") {
        if path.is_empty() {
            return Err(CliError("--swap-image needs a path".into()));
        }
        return Ok(SwapChoice::Image(path.into()));
    }
    let size = p.parse_or("--swap", default, str::parse)?;
    Ok(if size.is_zero() { SwapChoice::Off } else { SwapChoice::Fresh(size) })
}

fn run_args(p: &Parsed, defaults: RunDefaults) -> Result<RunArgs, CliError> {
    let arch = p.parse_or("--arch", Arch::X86_64, str::parse)?;
    let mem_default = MemSize::from_mib(defaults.mem_mib).unwrap_or_default();
    let cpu = match p.value("--cpu") {
        Some(c) if c.trim().is_empty() => return Err(CliError("--cpu needs a CPU model name".into())),
        other => other.map(str::to_string),
    };
    let gdb = p.flag("--gdb");
    let timeout_secs = match p.value("--timeout") {
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(secs),
            Err(_) => return Err(CliError(format!("--timeout: `{v}` is not a whole number of seconds"))),
        },
        // A debugging session lasts as long as the user wants.
        None if gdb => None,
        None => Some(defaults.timeout_secs),
    };
    if p.flag("--faulty-disk") && p.flag("--no-faulty-disk") {
        return Err(CliError("--faulty-disk and --no-faulty-disk exclude each other".into()));
    }
    let faulty_disk = p.flag("--faulty-disk") || (defaults.faulty_disk && !p.flag("--no-faulty-disk"));
    let smp = p.parse_or("--smp", defaults.smp, qemu::parse_smp)?;
    let mem = p.parse_or("--mem", mem_default, str::parse)?;
    let numa = match p.value("--numa") {
        None => None,
        Some(v) => {
            let nodes = qemu::parse_numa(v).map_err(|e| CliError(e.to_string()))?;
            qemu::check_numa(nodes, smp, mem).map_err(|e| CliError(e.to_string()))?;
            Some(nodes)
        }
    };
    let args = RunArgs {
        arch,
        smp,
        numa,
        mem,
        accel: p.parse_or("--accel", Accel::Tcg, str::parse)?,
        firmware: p.parse_or("--boot", Firmware::Bios, str::parse)?,
        cpu,
        gdb,
        timeout_secs,
        swap: swap_choice(p, defaults.swap)?,
        faulty_disk,
        extra_args: p.rest.clone(),
    };
    qemu::machine::check_combination(args.arch, args.accel, args.firmware)
        .map_err(|e| CliError(e.to_string()))?;
    Ok(args)
}

/// Checks a `--seed`: decimal or `0x` hex, as the kernel reads it.
fn check_seed(seed: &str) -> Result<String, CliError> {
    let ok = match seed.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).is_ok(),
        None => seed.parse::<u64>().is_ok(),
    };
    if ok {
        Ok(seed.to_string())
    } else {
        Err(CliError(format!("--seed: `{seed}` is not a number (decimal or 0x hex)")))
    }
}

/// Parses `words` as the options of `command` (see [`parse_options`]):
/// `--help` among them asks for the help, else `make` builds the command
/// from them.
fn with_options(
    command: &str,
    words: &[String],
    specs: &[&[OptSpec]],
    allow_rest: bool,
    make: impl FnOnce(&Parsed) -> Result<Command, CliError>,
) -> Result<Command, CliError> {
    let p = parse_options(command, words, specs, allow_rest)?;
    if p.help {
        return Ok(Command::Help);
    }
    make(&p)
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let Some(first) = args.first() else {
        return Err(CliError("no command given".into()));
    };
    let rest = &args[1..];
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "build" => with_options("build", rest, &[BUILD_OPTS], false, |p| {
            let arch = match p.value("--arch") {
                None | Some("all") => ArchChoice::All,
                Some(a) => ArchChoice::One(a.parse().map_err(|_| {
                    CliError(format!("--arch: unknown architecture `{a}` (expected x86_64, aarch64 or all)"))
                })?),
            };
            Ok(Command::Build(arch))
        }),
        "qemu" => match rest.first().map(String::as_str) {
            Some("boot") => with_options("qemu boot", &rest[1..], &[RUN_OPTS], true, |p| {
                let defaults = RunDefaults {
                    smp: 1,
                    mem_mib: 512,
                    timeout_secs: BOOT_TIMEOUT_SECS,
                    swap: BOOT_SWAP,
                    faulty_disk: false,
                };
                Ok(Command::Boot(run_args(p, defaults)?))
            }),
            Some("test") => with_options("qemu test", &rest[1..], &[RUN_OPTS, TEST_OPTS], true, |p| {
                let defaults = RunDefaults {
                    smp: 1,
                    mem_mib: 512,
                    timeout_secs: TEST_TIMEOUT_SECS,
                    swap: TEST_SWAP,
                    faulty_disk: true,
                };
                let nonempty = |name: &str| match p.value(name) {
                    Some("") => Err(CliError(format!("{name} needs a value"))),
                    v => Ok(v.map(str::to_string)),
                };
                Ok(Command::QemuTest(TestArgs {
                    run: run_args(p, defaults)?,
                    filter: nonempty("--filter")?,
                    seed: p.value("--seed").map(check_seed).transpose()?,
                    bug: nonempty("--bug")?,
                }))
            }),
            Some("run") => with_options("qemu run", &rest[1..], &[RUN_OPTS], true, |p| {
                let defaults = RunDefaults {
                    smp: 1,
                    mem_mib: 512,
                    timeout_secs: BOOT_TIMEOUT_SECS,
                    swap: BOOT_SWAP,
                    faulty_disk: false,
                };
                let args = run_args(p, defaults)?;
                if args.extra_args.is_empty() {
                    return Err(CliError("`cargo xtask qemu run` needs a program after `--`".into()));
                }
                Ok(Command::Run(args))
            }),
            Some("-h" | "--help") => Ok(Command::Help),
            Some(other) => Err(CliError(format!(
                "unknown command `qemu {other}` (expected `qemu boot`, `qemu test` or `qemu run`)"
            ))),
            None => Err(CliError("`cargo xtask qemu` needs a subcommand: boot, test or run".into())),
        },
        "bench" => with_options("bench", rest, &[RUN_OPTS, BENCH_OPTS], true, |p| {
            // The `main` profile of BENCHMARKS.md.
            let defaults = RunDefaults {
                smp: 4,
                mem_mib: 2048,
                timeout_secs: BENCH_TIMEOUT_SECS,
                swap: BENCH_SWAP,
                faulty_disk: false,
            };
            let run = run_args(p, defaults)?;
            if !p.flag("--linux") {
                if p.value("--boots").is_some() {
                    return Err(CliError("--boots counts the boots of `bench --linux`; add --linux".into()));
                }
                return Ok(Command::Bench(run));
            }
            // Linux boots only under TCG here, and has no gdb stub or NUMA split to match.
            if run.accel != Accel::Tcg || run.gdb || run.numa.is_some() {
                return Err(CliError("bench --linux compares under TCG without --gdb or --numa".into()));
            }
            let boots = match p.value("--boots") {
                None => LINUX_BENCH_BOOTS,
                Some(v) => match v.parse::<u32>() {
                    Ok(n @ 1..=99) => n,
                    _ => {
                        return Err(CliError(format!("--boots: `{v}` is not a number of boots from 1 to 99")))
                    }
                },
            };
            Ok(Command::BenchLinux(LinuxBenchArgs { run, boots }))
        }),
        "stress" => with_options("stress", rest, &[RUN_OPTS, STRESS_OPTS], true, |p| {
            let secs = stress_secs(p)?;
            let defaults = RunDefaults {
                smp: 4,
                mem_mib: 256,
                timeout_secs: 2 * secs + 300,
                swap: STRESS_SWAP,
                faulty_disk: true,
            };
            let bug = match p.value("--bug") {
                Some("") => return Err(CliError("--bug needs a value".into())),
                v => v.map(str::to_string),
            };
            Ok(Command::Stress(StressArgs {
                run: run_args(p, defaults)?,
                secs,
                seed: p.value("--seed").map(check_seed).transpose()?,
                bug,
            }))
        }),
        "test" => with_options("test", rest, &[CI_OPTS], false, |p| {
            let arches = match p.value("--arch") {
                None => Arch::ALL.to_vec(),
                Some(a) => vec![a.parse().map_err(|e| CliError(format!("--arch: {e}")))?],
            };
            Ok(Command::Ci(CiArgs { host_only: p.flag("--host-only"), arches }))
        }),
        "book" => with_options("book", rest, &[], false, |_| Ok(Command::Book)),
        other => Err(CliError(format!("unknown command `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, CliError> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&words)
    }

    fn err(line: &str) -> String {
        parse_str(line).unwrap_err().0
    }

    fn boot(line: &str) -> RunArgs {
        match parse_str(line) {
            Ok(Command::Boot(args)) => args,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn qtest(line: &str) -> TestArgs {
        match parse_str(line) {
            Ok(Command::QemuTest(args)) => args,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn boot_defaults() {
        assert_eq!(
            boot("qemu boot"),
            RunArgs {
                arch: Arch::X86_64,
                smp: 1,
                numa: None,
                mem: MemSize::from_mib(512).unwrap(),
                accel: Accel::Tcg,
                firmware: Firmware::Bios,
                cpu: None,
                gdb: false,
                timeout_secs: Some(120),
                swap: SwapChoice::Fresh(BOOT_SWAP),
                faulty_disk: false,
                extra_args: vec![],
            }
        );
    }

    #[test]
    fn disk_options() {
        assert_eq!(qtest("qemu test").run.swap, SwapChoice::Fresh(TEST_SWAP));
        assert!(qtest("qemu test").run.faulty_disk, "qemu test attaches the faulty disk");
        assert!(!qtest("qemu test --no-faulty-disk").run.faulty_disk);
        assert!(boot("qemu boot --faulty-disk").faulty_disk);
        assert_eq!(boot("qemu boot --swap 1G").swap, SwapChoice::Fresh("1G".parse().unwrap()));
        assert_eq!(boot("qemu boot --swap=0").swap, SwapChoice::Off);
        assert_eq!(boot("qemu boot --no-swap").swap, SwapChoice::Off);
        assert_eq!(boot("qemu boot --swap-image my.img").swap, SwapChoice::Image("my.img".into()));
        match parse_str("bench") {
            Ok(Command::Bench(a)) => {
                assert_eq!((a.swap, a.faulty_disk), (SwapChoice::Fresh(BENCH_SWAP), false))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err("qemu boot --swap 1G --swap-image x.img"),
            "--swap, --no-swap and --swap-image exclude each other; give one"
        );
        assert_eq!(
            err("qemu boot --no-swap --swap 0"),
            "--swap, --no-swap and --swap-image exclude each other; give one"
        );
        assert_eq!(
            err("qemu test --faulty-disk --no-faulty-disk"),
            "--faulty-disk and --no-faulty-disk exclude each other"
        );
        assert_eq!(err("qemu boot --swap-image="), "--swap-image needs a path");
        assert!(err("qemu boot --swap 3K").starts_with("--swap: bad disk size `3K`"));
    }

    #[test]
    fn boot_with_every_option_in_both_spellings() {
        let a = boot(
            "qemu boot --arch=aarch64 --smp 4 --mem=2G --accel tcg --cpu max,pauth-impdef=on \
             --timeout 30 -- smoke=1 verbose",
        );
        assert_eq!(a.arch, Arch::Aarch64);
        assert_eq!(a.smp, 4);
        assert_eq!(a.mem.mib(), 2048);
        assert_eq!(a.cpu.as_deref(), Some("max,pauth-impdef=on"));
        assert_eq!(a.timeout_secs, Some(30));
        assert_eq!(a.extra_args, ["smoke=1", "verbose"]);
        let a = boot("qemu boot --boot uefi --accel kvm --gdb");
        assert_eq!((a.firmware, a.accel, a.gdb), (Firmware::Uefi, Accel::Kvm, true));
        assert_eq!(boot("qemu boot --accel tcg-icount").accel, Accel::TcgIcount);
        assert_eq!(a.timeout_secs, None, "no time limit under gdb by default");
        assert_eq!(boot("qemu boot --gdb --timeout 5").timeout_secs, Some(5));
        assert_eq!(boot("qemu boot --timeout 0").timeout_secs, None);
    }

    #[test]
    fn words_after_the_separator_are_not_options() {
        let a = boot("qemu boot -- --arch=x -- a=1");
        assert_eq!(a.extra_args, ["--arch=x", "--", "a=1"]);
        assert_eq!(a.arch, Arch::X86_64);
    }

    #[test]
    fn bad_boot_command_lines() {
        assert_eq!(
            err("qemu boot --arch riscv64"),
            "--arch: unknown architecture `riscv64` (expected x86_64 or aarch64)"
        );
        assert_eq!(
            err("qemu boot --frobnicate"),
            "unknown option `--frobnicate` for `cargo xtask qemu boot`"
        );
        assert_eq!(err("qemu boot --filter x"), "unknown option `--filter` for `cargo xtask qemu boot`");
        assert_eq!(err("qemu boot --smp"), "option `--smp` needs a value (N)");
        assert_eq!(err("qemu boot --smp --"), "option `--smp` needs a value (N)");
        assert_eq!(
            err("qemu boot --smp 0"),
            "--smp: bad CPU count `0` (expected a whole number from 1 to 255)"
        );
        assert_eq!(err("qemu boot --smp 2 --smp 3"), "option `--smp` is given more than once");
        assert_eq!(boot("qemu boot --numa 2 --smp 4").numa, Some(2));
        assert_eq!(qtest("qemu test --numa=2 --smp 2 --mem 1G").run.numa, Some(2));
        assert_eq!(
            err("qemu boot --numa 2"),
            "--numa 2: 1 CPUs do not split evenly into 2 nodes of at least one CPU (e.g. --smp 2)"
        );
        assert_eq!(err("qemu test --numa 9 --smp 9"), "--numa 9: expected a number of nodes from 1 to 8");
        assert_eq!(
            err("qemu boot --numa 4 --smp 4 --mem 128M"),
            "--numa 4: 128M of RAM gives each of 4 nodes less than 64 MiB (give --mem 256M or more)"
        );
        assert_eq!(err("qemu boot --gdb=yes"), "option `--gdb` takes no value");
        assert!(err("qemu boot --mem 1.5G").starts_with("--mem: bad memory size `1.5G`"));
        assert_eq!(err("qemu boot --timeout soon"), "--timeout: `soon` is not a whole number of seconds");
        assert_eq!(
            err("qemu boot smoke=1"),
            "unexpected argument `smoke=1` for `cargo xtask qemu boot` (kernel arguments go after `--`)"
        );
        assert!(err("qemu boot --arch aarch64 --boot uefi")
            .starts_with("--boot uefi is not supported on aarch64"));
        assert!(err("qemu boot --arch aarch64 --accel kvm")
            .starts_with("--accel kvm is not supported on aarch64"));
        assert_eq!(err("qemu boot --cpu="), "--cpu needs a CPU model name");
        assert_eq!(err("qemu"), "`cargo xtask qemu` needs a subcommand: boot, test or run");
        assert_eq!(
            err("qemu frob"),
            "unknown command `qemu frob` (expected `qemu boot`, `qemu test` or `qemu run`)"
        );
        assert_eq!(err("frob"), "unknown command `frob`");
        assert_eq!(err(""), "no command given");
    }

    #[test]
    fn qemu_test_options_and_kernel_args() {
        let t = qtest("qemu test");
        assert_eq!(t.run.timeout_secs, Some(600));
        assert_eq!(t.kernel_args(), "test=all");
        let t = qtest("qemu test --arch aarch64 --filter mm::swap --seed 0x2a --bug forget-anon-exclusive -- stress_secs=5");
        assert_eq!(t.run.arch, Arch::Aarch64);
        assert_eq!(t.kernel_args(), "test=mm::swap seed=0x2a bug=forget-anon-exclusive stress_secs=5");
        assert_eq!(err("qemu test --seed twelve"), "--seed: `twelve` is not a number (decimal or 0x hex)");
        assert_eq!(err("qemu test --filter="), "--filter needs a value");
    }

    #[test]
    fn qemu_run_takes_a_program_and_its_arguments() {
        let a = match parse_str("qemu run --arch aarch64 --smp 4 -- busybox sh -c x") {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!((a.arch, a.smp, a.timeout_secs), (Arch::Aarch64, 4, Some(BOOT_TIMEOUT_SECS)));
        assert_eq!(a.extra_args, ["busybox", "sh", "-c", "x"]);
        assert!(!a.faulty_disk);
        assert_eq!(err("qemu run"), "`cargo xtask qemu run` needs a program after `--`");
        assert_eq!(err("qemu run --"), "`cargo xtask qemu run` needs a program after `--`");
        assert_eq!(parse_str("qemu run --help"), Ok(Command::Help));
    }

    fn stress(line: &str) -> StressArgs {
        match parse_str(line) {
            Ok(Command::Stress(args)) => args,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn stress_options() {
        let s = stress("stress");
        assert_eq!((s.secs, s.seed, s.bug), (60, None, None));
        assert_eq!((s.run.smp, s.run.mem.mib(), s.run.timeout_secs), (4, 256, Some(420)));
        assert_eq!((s.run.swap, s.run.faulty_disk), (SwapChoice::Fresh(STRESS_SWAP), true));
        let s = stress("stress --arch aarch64 --smp 2 --minutes 10 --seed 0x2a --bug forget-anon-exclusive");
        assert_eq!((s.run.arch, s.run.smp, s.secs), (Arch::Aarch64, 2, 600));
        assert_eq!((s.seed.as_deref(), s.bug.as_deref()), (Some("0x2a"), Some("forget-anon-exclusive")));
        assert_eq!(stress("stress --minutes 0.75").secs, 45);
        assert_eq!(stress("stress --secs 45 --timeout 60").run.timeout_secs, Some(60));
        assert_eq!(err("stress --minutes 1 --secs 5"), "--minutes and --secs exclude each other; give one");
        assert_eq!(err("stress --minutes soon"), "--minutes: `soon` is not a positive number of minutes");
        assert_eq!(err("stress --minutes 0"), "--minutes: `0` is not a positive number of minutes");
        assert_eq!(err("stress --secs -1"), "--secs: `-1` is not a positive whole number of seconds");
        assert_eq!(err("stress --seed x"), "--seed: `x` is not a number (decimal or 0x hex)");
        assert_eq!(err("stress --filter x"), "unknown option `--filter` for `cargo xtask stress`");
    }

    #[test]
    fn bench_linux_counts_boots_and_keeps_the_bench_machine() {
        match parse_str("bench --linux") {
            Ok(Command::BenchLinux(a)) => {
                assert_eq!(a.boots, LINUX_BENCH_BOOTS);
                assert_eq!((a.run.smp, a.run.mem.mib()), (4, 2048));
                assert_eq!(a.run.swap, SwapChoice::Fresh(BENCH_SWAP));
            }
            other => panic!("{other:?}"),
        }
        match parse_str("bench --linux --boots 1 --arch aarch64") {
            Ok(Command::BenchLinux(a)) => assert_eq!((a.boots, a.run.arch), (1, Arch::Aarch64)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_str("bench"), Ok(Command::Bench(_))));
        assert!(err("bench --boots 2").contains("add --linux"));
        assert!(err("bench --linux --boots 0").contains("from 1 to 99"));
        assert!(err("bench --linux --boots x").contains("from 1 to 99"));
        assert!(err("bench --linux --accel kvm").contains("under TCG"));
        assert!(err("bench --linux --accel tcg-icount").contains("under TCG"));
        assert!(err("bench --linux --numa 2").contains("under TCG"));
    }

    #[test]
    fn build_bench_ci_book_help() {
        assert_eq!(parse_str("build"), Ok(Command::Build(ArchChoice::All)));
        assert_eq!(parse_str("build --arch all"), Ok(Command::Build(ArchChoice::All)));
        assert_eq!(parse_str("build --arch aarch64"), Ok(Command::Build(ArchChoice::One(Arch::Aarch64))));
        assert_eq!(
            err("build --arch arm"),
            "--arch: unknown architecture `arm` (expected x86_64, aarch64 or all)"
        );
        assert_eq!(err("build -- x"), "`cargo xtask build` takes no arguments after `--`");
        match parse_str("bench --arch aarch64") {
            Ok(Command::Bench(a)) => {
                assert_eq!((a.arch, a.smp, a.mem.mib(), a.timeout_secs), (Arch::Aarch64, 4, 2048, Some(600)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_str("test"),
            Ok(Command::Ci(CiArgs { host_only: false, arches: Arch::ALL.to_vec() }))
        );
        assert_eq!(
            parse_str("test --host-only --arch x86_64"),
            Ok(Command::Ci(CiArgs { host_only: true, arches: vec![Arch::X86_64] }))
        );
        assert_eq!(err("test --quick"), "unknown option `--quick` for `cargo xtask test`");
        assert_eq!(parse_str("book"), Ok(Command::Book));
        assert_eq!(err("book now"), "unexpected argument `now` for `cargo xtask book`");
        for help in [
            "--help",
            "-h",
            "help",
            "build --help",
            "qemu boot -h",
            "qemu test --help",
            "qemu run -h",
            "qemu --help",
            "bench -h",
            "stress --help",
            "test --help",
            "book --help",
        ] {
            assert_eq!(parse_str(help), Ok(Command::Help), "{help}");
        }
    }

    #[test]
    fn help_and_usage_texts() {
        let help = help_text();
        for cmd in ["build", "qemu boot", "qemu test", "qemu run", "bench", "stress", "test", "book"] {
            assert!(
                help.contains(&format!("\n    cargo xtask {cmd} "))
                    || help.contains(&format!("\n    cargo xtask {cmd}\n")),
                "{cmd}"
            );
        }
        for option in RUN_OPTS.iter().chain(TEST_OPTS).chain(STRESS_OPTS).chain(CI_OPTS) {
            assert!(help.contains(option.name), "{} is not documented", option.name);
        }
        assert!(usage_text().starts_with("usage:\n    cargo xtask build"));
    }

    #[test]
    fn arch_choice_lists_arches() {
        assert_eq!(ArchChoice::All.arches(), [Arch::X86_64, Arch::Aarch64]);
        assert_eq!(ArchChoice::One(Arch::Aarch64).arches(), [Arch::Aarch64]);
    }
}
