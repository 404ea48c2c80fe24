//! Verdicts: did a run pass? Pure functions of how the guest ended and what
//! it printed, so every rule is unit tested.
//!
//! A test run passes only when *everything* agrees: the guest reported
//! success, printed its summary, the summary matches the result lines, at
//! least one test ran, nothing failed and nothing panicked. A guest that
//! says "success" but whose output disagrees is a harness bug, and a harness
//! bug that hides a failing test is the worst kind, so it fails the run.

use std::fmt;

use crate::config::Arch;
use crate::exit::GuestExit;
use crate::protocol::{CpusOnline, Report, TestOutcome};

/// The result of a run, with every reason it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// One sentence per problem, most specific first (failed tests, the
    /// test that was running, panics, how the guest ended, protocol problems).
    Fail(Vec<String>),
}

impl Verdict {
    fn from_reasons(reasons: Vec<String>) -> Verdict {
        if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(reasons)
        }
    }

    pub fn is_pass(&self) -> bool {
        *self == Verdict::Pass
    }

    /// The reasons for failing (empty for a pass).
    pub fn reasons(&self) -> &[String] {
        match self {
            Verdict::Pass => &[],
            Verdict::Fail(reasons) => reasons,
        }
    }

    /// `PASS`, or `FAIL` followed by one indented reason per line.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("PASS"),
            Verdict::Fail(reasons) => {
                f.write_str("FAIL")?;
                for r in reasons {
                    write!(f, "\n  - {r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Reasons shared by every kind of run: failed tests, a test that never
/// finished, panics, and how the guest ended when it was not a success.
fn common_reasons(arch: Arch, exit: GuestExit, report: &Report) -> Vec<String> {
    let mut reasons = Vec::new();
    for test in &report.tests {
        if let TestOutcome::Failed(why) = &test.outcome {
            if why.is_empty() {
                reasons.push(format!("test {} FAILED", test.name));
            } else {
                reasons.push(format!("test {} FAILED: {why}", test.name));
            }
        }
    }
    if let Some(name) = &report.running {
        reasons.push(format!("test {name} was running when the output ended (it never printed a result)"));
    }
    for name in &report.unfinished {
        reasons.push(format!("test {name} started but never printed a result"));
    }
    for message in &report.panics {
        reasons.push(format!("kernel panic: {message}"));
    }
    reasons.extend(cpu_reason(report));
    reasons.extend(numa_reason(report));
    if !exit.is_success() {
        reasons.push(format!("exit: {}", exit.describe(arch)));
    }
    reasons
}

/// Whether the kernel runs on the CPUs the machine was given: its
/// `smp: N of M CPUs online` line must say `N of N`, and when the run
/// knows how many CPUs it asked QEMU for ([`Report::cpus_asked`]), the line
/// must be there and name that many. A kernel that found or started fewer
/// would otherwise run the multi-CPU test configurations on fewer CPUs and
/// still pass.
fn cpu_reason(report: &Report) -> Option<String> {
    match (report.cpus_asked, report.cpus_online) {
        (Some(asked), None) => Some(format!(
            "the kernel never said how many CPUs are online (no `smp: N of M CPUs online` line; QEMU was given {asked})"
        )),
        (Some(asked), Some(CpusOnline { online, listed })) if (online, listed) != (asked, asked) => Some(format!(
            "QEMU was given {asked} CPUs, but the kernel found {listed} and runs on {online} (`smp: {online} of {listed} CPUs online`)"
        )),
        (None, Some(CpusOnline { online, listed })) if online != listed => {
            Some(format!("the kernel runs on {online} of the {listed} CPUs it found"))
        }
        _ => None,
    }
}

/// Whether the kernel found the NUMA nodes the machine was given: when the
/// run knows how many ([`Report::numa_asked`]), the kernel's `numa: node N`
/// lines must name exactly nodes 0 to N - 1, in order.
fn numa_reason(report: &Report) -> Option<String> {
    let asked = report.numa_asked?;
    let expected: Vec<u32> = (0..asked).collect();
    if report.numa_nodes == expected {
        return None;
    }
    let found = match report.numa_nodes.len() {
        0 => "no `numa: node N:` line".to_string(),
        _ => format!("lines for nodes {:?}", report.numa_nodes),
    };
    Some(format!("QEMU was given {asked} NUMA nodes, but the kernel printed {found}"))
}

/// The verdict of an in-guest test run (`cargo xtask qemu test`).
pub fn test_verdict(arch: Arch, exit: GuestExit, report: &Report) -> Verdict {
    let mut reasons = common_reasons(arch, exit, report);
    let ok_lines = report.passed().count() as u64;
    let failed_lines = report.failed().count() as u64;
    match report.summary {
        None => reasons.push(
            "the summary line `N passed, M failed` is missing (the test run did not finish)".to_string(),
        ),
        Some(summary) => {
            if summary.passed != ok_lines {
                reasons.push(format!(
                    "the summary says {} passed but {ok_lines} test lines say ok",
                    summary.passed
                ));
            }
            if summary.failed != failed_lines {
                reasons.push(format!(
                    "the summary says {} failed but {failed_lines} test lines say FAILED",
                    summary.failed
                ));
            }
            if summary.passed == 0 && summary.failed == 0 {
                reasons.push("no test ran (does the test filter match any test?)".to_string());
            } else if summary.passed == 0 {
                reasons.push("no test passed".to_string());
            }
        }
    }
    Verdict::from_reasons(reasons)
}

/// The verdict of a plain boot (`cargo xtask qemu boot`, `bench`): the guest
/// reported success and nothing panicked. A test it ran that failed or
/// never finished is reported too.
pub fn boot_verdict(arch: Arch, exit: GuestExit, report: &Report) -> Verdict {
    Verdict::from_reasons(common_reasons(arch, exit, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_transcript;

    const X86: Arch = Arch::X86_64;
    const ARM: Arch = Arch::Aarch64;

    fn verdict(exit: GuestExit, transcript: &str) -> Verdict {
        test_verdict(X86, exit, &parse_transcript(transcript))
    }

    #[test]
    fn all_ok_passes() {
        let v = verdict(
            GuestExit::Success,
            "kernel: args: test=all\ntest a ... ok\ntest b ... ok\n2 passed, 0 failed\n",
        );
        assert_eq!(v, Verdict::Pass);
        assert_eq!(v.message(), "PASS");
        assert!(v.reasons().is_empty());
        let v = test_verdict(
            ARM,
            GuestExit::Success,
            &parse_transcript("test a ... ok\r\n1 passed, 0 failed\r\n"),
        );
        assert!(v.is_pass());
    }

    /// Test runs that fail, each with every reason its verdict must give,
    /// in order: (what the case shows, how the guest ended, its transcript,
    /// the reasons).
    const FAILING_RUNS: &[(&str, GuestExit, &str, &[&str])] = &[
        (
            "one failed test is named with its reason",
            GuestExit::Failure,
            "test a ... ok\ntest mm::swap::slots ... FAILED: slot 7 freed twice\n\
             test c ... ok\n2 passed, 1 failed\n",
            &["test mm::swap::slots FAILED: slot 7 freed twice", FAILURE_EXIT],
        ),
        (
            "every failed test is named",
            GuestExit::Failure,
            "test a ... FAILED: one\ntest b ... ok\ntest c ... FAILED\n1 passed, 2 failed\n",
            &["test a FAILED: one", "test c FAILED", FAILURE_EXIT],
        ),
        (
            "a failure is a failure even if the guest claims success",
            GuestExit::Success,
            "test a ... ok\ntest b ... FAILED: x\n1 passed, 1 failed\n",
            &["test b FAILED: x"],
        ),
        (
            "a panic mid-test names the test, the panic and the exit",
            GuestExit::Failure,
            "test a ... ok\ntest mm::huge::split ... kernel panic: index out of bounds at huge.rs:10:5\n",
            &[
                "test mm::huge::split was running when the output ended (it never printed a result)",
                "kernel panic: index out of bounds at huge.rs:10:5",
                FAILURE_EXIT,
                NO_SUMMARY,
            ],
        ),
        (
            "a panic fails even with success and a good summary",
            GuestExit::Success,
            "test a ... ok\nkernel panic: late at x.rs:1:1\n1 passed, 0 failed\n",
            &["kernel panic: late at x.rs:1:1"],
        ),
        ("a missing summary fails", GuestExit::Success, "test a ... ok\ntest b ... ok\n", &[NO_SUMMARY]),
        (
            "a summary with more passes than ok lines fails",
            GuestExit::Success,
            "test a ... ok\ntest b ... ok\n3 passed, 0 failed\n",
            &["the summary says 3 passed but 2 test lines say ok"],
        ),
        (
            "a summary with more failures than FAILED lines fails",
            GuestExit::Success,
            "test a ... ok\n1 passed, 1 failed\n",
            &["the summary says 1 failed but 0 test lines say FAILED"],
        ),
        (
            "zero tests is not a pass",
            GuestExit::Success,
            "0 passed, 0 failed\n",
            &["no test ran (does the test filter match any test?)"],
        ),
        (
            "a timeout fails and names the test that was running",
            GuestExit::TimedOut,
            "test a ... ok\ntest slow ... ",
            &[
                "test slow was running when the output ended (it never printed a result)",
                "exit: the guest exceeded its time limit and was killed",
                NO_SUMMARY,
            ],
        ),
        (
            "a signal fails a clean transcript",
            GuestExit::Crashed(None),
            "test a ... ok\n1 passed, 0 failed\n",
            &["exit: QEMU was killed by a signal"],
        ),
        (
            "an unfinished test fails",
            GuestExit::Success,
            "test a ... \ntest b ... ok\n1 passed, 0 failed\n",
            &["test a started but never printed a result"],
        ),
    ];
    const FAILURE_EXIT: &str = "exit: the guest reported failure (QEMU status 35)";
    const NO_SUMMARY: &str = "the summary line `N passed, M failed` is missing (the test run did not finish)";

    #[test]
    fn failing_runs_give_every_reason_in_order() {
        for (what, exit, transcript, reasons) in FAILING_RUNS {
            assert_eq!(verdict(*exit, transcript).reasons(), *reasons, "{what}");
        }
    }

    #[test]
    fn a_failing_message_lists_one_reason_per_line() {
        let v = verdict(
            GuestExit::Failure,
            "test a ... ok\ntest b ... FAILED: slot 7 freed twice\n1 passed, 1 failed\n",
        );
        assert_eq!(v.message(), format!("FAIL\n  - test b FAILED: slot 7 freed twice\n  - {FAILURE_EXIT}"));
    }

    #[test]
    fn x86_status_zero_is_a_crash_not_a_success() {
        let exit = GuestExit::from_status(X86, Some(0));
        assert_eq!(exit, GuestExit::Crashed(Some(0)));
        let v = verdict(exit, "test a ... ok\ntest b ... ");
        assert_eq!(v.reasons()[0], "test b was running when the output ended (it never printed a result)");
        assert!(v.reasons()[1].starts_with("exit: the guest crashed: QEMU exited with status 0"));
        // Even a complete, clean transcript does not pass without the success report.
        let v = verdict(exit, "test a ... ok\n1 passed, 0 failed\n");
        assert_eq!(v.reasons().len(), 1);
        assert!(v.reasons()[0].contains("triple fault"));
    }

    #[test]
    fn the_harness_selfcheck_failure_is_named() {
        let v = verdict(
            GuestExit::Failure,
            "kernel: args: test=harness::selfcheck_fail harness_selfcheck=fail\n\
             test harness::selfcheck_fail ... FAILED: failing on purpose (harness_selfcheck=fail)\n\
             0 passed, 1 failed\n",
        );
        assert!(!v.is_pass());
        assert!(v.message().contains("test harness::selfcheck_fail FAILED: failing on purpose"));
    }

    /// A run told how many CPUs QEMU was given ([`crate::Parser::expecting_cpus`]).
    fn verdict_with_cpus(asked: u32, transcript: &str) -> Verdict {
        let mut parser = crate::Parser::expecting_cpus(asked);
        transcript.split('\n').for_each(|line| parser.feed_line(line));
        test_verdict(X86, GuestExit::Success, parser.report())
    }

    #[test]
    fn the_numa_nodes_must_be_the_nodes_asked_for() {
        let verdict = |asked: u32, lines: &str| {
            let mut parser = crate::Parser::new().expecting_numa_nodes(asked);
            format!("{lines}test a ... ok\n1 passed, 0 failed\n")
                .split('\n')
                .for_each(|l| parser.feed_line(l));
            test_verdict(X86, GuestExit::Success, parser.report())
        };
        let node0 = "numa: node 0: 496 MiB [0x100000-0x1ffdd000], CPUs 0-3\n";
        let two = "numa: node 0: 240 MiB [0x100000-0x10000000], CPUs 0-1\r\nnuma: node 1: 255 MiB [0x10000000-0x1ffdd000], CPUs 2-3\n";
        assert!(verdict(1, node0).is_pass());
        assert!(verdict(2, two).is_pass());
        assert_eq!(
            verdict(2, node0).reasons(),
            ["QEMU was given 2 NUMA nodes, but the kernel printed lines for nodes [0]"]
        );
        assert_eq!(
            verdict(1, two).reasons(),
            ["QEMU was given 1 NUMA nodes, but the kernel printed lines for nodes [0, 1]"]
        );
        assert_eq!(
            verdict(1, "").reasons(),
            ["QEMU was given 1 NUMA nodes, but the kernel printed no `numa: node N:` line"]
        );
        // Not told: not checked.
        let mut parser = crate::Parser::new();
        parser.feed_line("test a ... ok");
        parser.feed_line("1 passed, 0 failed");
        assert!(test_verdict(X86, GuestExit::Success, parser.report()).is_pass());
    }

    #[test]
    fn the_cpus_online_must_be_the_cpus_asked_for() {
        let run = |cpu_line: &str| format!("{cpu_line}\ntest a ... ok\n1 passed, 0 failed\n");
        assert!(verdict_with_cpus(4, &run("smp: 4 of 4 CPUs online")).is_pass());
        assert!(verdict_with_cpus(1, &run("smp: 1 of 1 CPUs online\r")).is_pass());
        assert_eq!(
            verdict_with_cpus(4, &run("smp: 1 of 1 CPUs online")).reasons(),
            ["QEMU was given 4 CPUs, but the kernel found 1 and runs on 1 (`smp: 1 of 1 CPUs online`)"]
        );
        assert_eq!(
            verdict_with_cpus(4, &run("smp: 3 of 4 CPUs online")).reasons(),
            ["QEMU was given 4 CPUs, but the kernel found 4 and runs on 3 (`smp: 3 of 4 CPUs online`)"]
        );
        assert_eq!(
            verdict_with_cpus(2, &run("kernel: args: test=a")).reasons(),
            [
                "the kernel never said how many CPUs are online (no `smp: N of M CPUs online` line; QEMU was given 2)"
            ]
        );
        // A boot verdict checks it too.
        let mut parser = crate::Parser::expecting_cpus(2);
        parser.feed_line("smp: 1 of 1 CPUs online");
        assert!(!boot_verdict(ARM, GuestExit::Success, parser.report()).is_pass());
        // Without the count asked for, only a CPU that did not start fails.
        assert!(verdict(GuestExit::Success, &run("smp: 2 of 2 CPUs online")).is_pass());
        assert_eq!(
            verdict(GuestExit::Success, &run("smp: 2 of 3 CPUs online")).reasons(),
            ["the kernel runs on 2 of the 3 CPUs it found"]
        );
    }

    #[test]
    fn boot_verdicts() {
        let boot = |exit, text| boot_verdict(X86, exit, &parse_transcript(text));
        assert!(boot(GuestExit::Success, "kernel: args: smoke=1\nkernel: done\n").is_pass());
        // A boot has no summary to require.
        assert!(boot(GuestExit::Success, "").is_pass());
        assert_eq!(
            boot(GuestExit::Success, "kernel panic: x at y.rs:1:1\n").reasons(),
            ["kernel panic: x at y.rs:1:1"]
        );
        assert_eq!(boot(GuestExit::Crashed(Some(0)), "kernel: args:\n").reasons().len(), 1);
        let v = boot_verdict(ARM, GuestExit::Failure, &parse_transcript(""));
        assert_eq!(v.reasons(), ["exit: the guest reported failure, or QEMU itself failed (status 1)"]);
        assert!(!boot(GuestExit::TimedOut, "").is_pass());
    }
}
