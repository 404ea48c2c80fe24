//! `cargo xtask stress`: boots the kernel's randomised mm stress (the
//! in-guest test [`STRESS_TEST`], `kernel/src/tests/stress.rs`) for as
//! long as asked, reads its totals line (`STRESS key=value ...`, kept by
//! the `qemu` crate's parser), prints the totals and fails on any
//! mismatched byte, checker error, killed task, leaked frame, swap slot or
//! heap byte, kernel panic, or a run that did not end with its totals.
//!
//! The seed is `--seed`, or a new one from the clock, printed either way
//! with the command that replays it: the same seed replays the same
//! sequence of operations in every task.

use std::time::{SystemTime, UNIX_EPOCH};

use qemu::{test_verdict, Arch, GuestExit, Report, TestOutcome};

use crate::cli::StressArgs;
use crate::error::Error;
use crate::guest;
use crate::kbuild::Builder;

/// The in-guest test that is the stress.
pub const STRESS_TEST: &str = "stress::random_mm_ops";

/// Totals that must be present, in the order they are listed.
pub const REQUIRED: &[&str] = &[
    "seed",
    "secs",
    "ops",
    "bytes_verified",
    "faults",
    "swapouts",
    "swapins",
    "pins",
    "forks",
    "mismatches",
    "checker_errors",
    "killed",
    "leaked_frames",
    "leaked_slots",
    "leaked_heap",
];

/// Totals that must be zero for the run to pass.
pub const MUST_BE_ZERO: &[&str] =
    &["mismatches", "checker_errors", "killed", "leaked_frames", "leaked_slots", "leaked_heap"];

/// The kernel command line of a stress run with `seed`.
pub fn kernel_args(args: &StressArgs, seed: &str) -> String {
    let mut words =
        vec![format!("test={STRESS_TEST}"), format!("stress_secs={}", args.secs), format!("seed={seed}")];
    if let Some(bug) = &args.bug {
        words.push(format!("bug={bug}"));
    }
    words.extend(args.run.extra_args.iter().cloned());
    words.join(" ")
}

/// A new seed, from the clock (32 bits, in hex).
pub fn fresh_seed() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:#x}", (nanos as u64 ^ (nanos >> 64) as u64 ^ u64::from(std::process::id())) & 0xffff_ffff)
}

/// The `key=value` words of a totals line, in order. Refuses a word
/// without `=`, an empty key or a key given twice.
pub fn parse_totals(words: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for word in words.split_whitespace() {
        let (k, v) = word.split_once('=').ok_or(format!("`{word}` is not key=value"))?;
        if k.is_empty() {
            return Err(format!("`{word}` has no key"));
        }
        if out.iter().any(|(key, _)| key == k) {
            return Err(format!("`{k}` is given twice"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The value of `key` in `totals`.
pub fn total<'a>(totals: &'a [(String, String)], key: &str) -> Option<&'a str> {
    totals.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The verdict of a stress run: its totals, or every reason it failed.
pub fn stress_check(
    arch: Arch,
    exit: GuestExit,
    report: &Report,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut why = Vec::new();
    for panic in &report.panics {
        why.push(format!("kernel panic: {panic}"));
    }
    let totals = match report.stress_totals.as_deref().map(parse_totals) {
        None => {
            why.push("the kernel printed no `STRESS` totals line".to_string());
            Vec::new()
        }
        Some(Err(e)) => {
            why.push(format!("bad totals line: {e}"));
            Vec::new()
        }
        Some(Ok(t)) => t,
    };
    if report.stress_totals.is_some() {
        for key in REQUIRED {
            if total(&totals, key).is_none() {
                why.push(format!("the totals have no `{key}`"));
            }
        }
        for key in MUST_BE_ZERO {
            match total(&totals, key) {
                Some("0") | None => {}
                Some(v) => why.push(format!("{key}={v}")),
            }
        }
    }
    match report.tests.iter().find(|t| t.name == STRESS_TEST).map(|t| &t.outcome) {
        Some(TestOutcome::Ok) => {}
        Some(TestOutcome::Failed(reason)) => why.push(format!("{STRESS_TEST} failed: {reason}")),
        None => why.push(format!("{STRESS_TEST} never reported")),
    }
    let verdict = test_verdict(arch, exit, report);
    if why.is_empty() && !verdict.is_pass() {
        why.extend(verdict.reasons().iter().cloned());
    }
    if why.is_empty() {
        Ok(totals)
    } else {
        Err(why)
    }
}

/// The totals, one `key = value` per line, and the panics the transcript
/// showed (the kernel cannot count its own).
pub fn listing(totals: &[(String, String)], nr_panics: usize) -> String {
    let width = totals.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max("panics".len());
    let mut out = String::from("xtask: stress totals:\n");
    for (k, v) in totals {
        out.push_str(&format!("  {k:<width$} = {v}\n"));
    }
    out.push_str(&format!("  {:<width$} = {nr_panics}\n", "panics"));
    out
}

/// `cargo xtask stress`.
pub fn run(builder: &mut Builder, args: &StressArgs) -> Result<(), Error> {
    let seed = args.seed.clone().unwrap_or_else(fresh_seed);
    let replay = format!(
        "cargo xtask stress --arch {} --smp {}{} --secs {} --seed {seed}{}",
        args.run.arch,
        args.run.smp,
        args.run.numa.map(|n| format!(" --numa {n}")).unwrap_or_default(),
        args.secs,
        args.bug.as_ref().map(|b| format!(" --bug {b}")).unwrap_or_default()
    );
    println!("xtask: stress seed {seed} (replay: {replay})");
    let outcome = guest::run_guest(builder, &args.run, &kernel_args(args, &seed), &[])?;
    let what =
        format!("stress on {} smp {}", guest::machine_name(args.run.arch, args.run.firmware), args.run.smp);
    let checked = stress_check(outcome.arch, outcome.exit, &outcome.report);
    let totals = match &checked {
        Ok(t) => t.clone(),
        Err(_) => {
            outcome.report.stress_totals.as_deref().and_then(|t| parse_totals(t).ok()).unwrap_or_default()
        }
    };
    println!();
    print!("{}", listing(&totals, outcome.report.panics.len()));
    let secs = outcome.elapsed.as_secs_f64();
    match checked {
        Ok(_) => {
            println!("xtask: {what}: PASS in {secs:.1} s (seed {seed})");
            Ok(())
        }
        Err(why) => {
            eprintln!("xtask: {what}: FAIL (seed {seed}; replay: {replay})");
            for w in &why {
                eprintln!("  - {w}");
            }
            if let Some(e) = outcome.problem_text() {
                eprintln!("{e}");
            }
            Err(Error::Failed(format!("{what}: {}", why.join("; "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command};
    use qemu::parse_transcript;

    const GOOD: &str = "seed=0x2a secs=45 ops=10 op.mmap=3 bytes_verified=80 faults=9 swapouts=4 swapins=3 \
                        pins=1 forks=1 mismatches=0 checker_errors=0 killed=0 leaked_frames=0 \
                        leaked_slots=0 leaked_heap=0";

    fn stress_args(line: &str) -> StressArgs {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        match cli::parse(&words).unwrap() {
            Command::Stress(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn transcript(totals: &str, result: &str) -> String {
        format!("kernel: args: test={STRESS_TEST}\ntest {STRESS_TEST} ... \nSTRESS {totals}\n{result}\n")
    }

    #[test]
    fn kernel_command_line() {
        let a = stress_args("stress --secs 45 --bug forget-anon-exclusive -- verbose");
        assert_eq!(
            kernel_args(&a, "0x2a"),
            "test=stress::random_mm_ops stress_secs=45 seed=0x2a bug=forget-anon-exclusive verbose"
        );
        assert_eq!(
            kernel_args(&stress_args("stress"), "7"),
            "test=stress::random_mm_ops stress_secs=60 seed=7"
        );
        assert!(crate::cli::parse(&["stress".into(), "--seed".into(), fresh_seed()]).is_ok());
    }

    #[test]
    fn totals_are_parsed_strictly() {
        let t = parse_totals("a=1 op.b=2  c=0x3").unwrap();
        assert_eq!(total(&t, "op.b"), Some("2"));
        assert_eq!(total(&t, "c"), Some("0x3"));
        assert_eq!(total(&t, "d"), None);
        assert_eq!(parse_totals("a"), Err("`a` is not key=value".into()));
        assert_eq!(parse_totals("=1"), Err("`=1` has no key".into()));
        assert_eq!(parse_totals("a=1 a=2"), Err("`a` is given twice".into()));
    }

    #[test]
    fn a_clean_run_passes() {
        let report = parse_transcript(&(transcript(GOOD, "ok") + "1 passed, 0 failed\n"));
        let totals = stress_check(Arch::X86_64, GuestExit::Success, &report).unwrap();
        assert_eq!(total(&totals, "ops"), Some("10"));
        let shown = listing(&totals, 0);
        assert!(
            shown.contains("  mismatches     = 0\n") && shown.ends_with("  panics         = 0\n"),
            "{shown}"
        );
    }

    #[test]
    fn every_kind_of_failure_is_named() {
        let check = |text: &str, exit| stress_check(Arch::X86_64, exit, &parse_transcript(text)).unwrap_err();
        let bad = GOOD.replace("mismatches=0", "mismatches=32").replace("leaked_heap=0", "leaked_heap=8");
        let why =
            check(&(transcript(&bad, "FAILED: mismatch: x") + "0 passed, 1 failed\n"), GuestExit::Failure);
        assert_eq!(why, ["mismatches=32", "leaked_heap=8", "stress::random_mm_ops failed: mismatch: x"]);
        // A run that died: a panic, no totals, no result.
        let why = check(
            &format!("kernel: args: x\ntest {STRESS_TEST} ... kernel panic: oops at a.rs:1:1\n"),
            GuestExit::Failure,
        );
        assert_eq!(
            why,
            [
                "kernel panic: oops at a.rs:1:1",
                "the kernel printed no `STRESS` totals line",
                "stress::random_mm_ops never reported"
            ]
        );
        // Totals that lack a count prove nothing about it.
        let why = check(&(transcript("seed=1 ops=2", "ok") + "1 passed, 0 failed\n"), GuestExit::Success);
        assert!(why.contains(&"the totals have no `mismatches`".to_string()), "{why:?}");
        // Everything looks fine, but the guest claimed failure.
        let why = check(&(transcript(GOOD, "ok") + "1 passed, 0 failed\n"), GuestExit::Failure);
        assert!(!why.is_empty());
    }
}
