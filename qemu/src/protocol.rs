//! The serial protocol: what the kernel prints on its console that the host
//! reads to know what happened.
//!
//! ```text
//! kernel: args: test=all seed=7          the kernel echoes its arguments
//! numa: node 0: 256 MiB [..], CPUs 0-1   one line per NUMA node, in order
//! smp: 4 of 4 CPUs online                how many CPUs it found and started
//! test mm::frame::alloc ... ok           one test passed
//! test mm::swap::slots ... FAILED: why   one test failed, and why
//! 41 passed, 1 failed                    the summary, alone on the last line
//! BENCH name=thp_fault value=1234.5 unit=faults/s
//! STRESS seed=0x2a ops=1234 mismatches=0 ...   the totals of a stress run
//! init: exited with status 3              how the first program (init=) ended
//! init: killed by signal 11               (or this, or `init: cannot run PATH: why`)
//! kernel panic: <message> at <file:line>
//! ```
//!
//! The kernel prints `test <name> ... ` *before* running a test and the
//! result on the same line afterwards, so when a guest dies mid-test the
//! last (partial) line still names the test that was running; a panic then
//! usually continues that same line. The [`Parser`] follows that: a line
//! holding only the start of a test records it as running, and the rest of
//! such a line is read again as a line of its own (to find a panic in it).
//!
//! Lines may end in `\r` (serial consoles often send CR LF); trailing white
//! space is ignored. Text is taken as plain ASCII: no escape sequences.

use std::fmt;

/// The prefix of the line on which the kernel echoes its arguments.
pub const ARGS_ECHO_PREFIX: &str = "kernel: args:";
/// The prefix of a panic line.
pub const PANIC_PREFIX: &str = "kernel panic: ";
/// The prefix of the line on which the kernel says how many CPUs run.
pub const CPUS_PREFIX: &str = "smp: ";

/// The prefix of the kernel's line for one NUMA node: `numa: node N: ...`.
pub const NUMA_NODE_PREFIX: &str = "numa: node ";

/// `smp: <online> of <listed> CPUs online`: the CPUs that run tasks, of
/// those the firmware listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpusOnline {
    pub online: u32,
    pub listed: u32,
}
/// The first word of the totals line of a stress run (`key=value` words
/// follow; `cargo xtask stress` reads them).
pub const STRESS_PREFIX: &str = "STRESS";

/// The prefix of the kernel's lines about the first user program (`init=`).
pub const INIT_PREFIX: &str = "init: ";

/// How the first user program (`init=`) ended, as the kernel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitEnd {
    /// `init: exited with status N`
    Exited(u8),
    /// `init: killed by signal S`
    Killed(u8),
    /// `init: cannot run PATH: WHY`; holds the rest of the line.
    CannotRun(String),
}

impl InitEnd {
    /// The status a shell would give: the exit status, or 128 plus the
    /// signal; 127 when the program could not run (a shell's "not found").
    pub fn shell_status(&self) -> i32 {
        match self {
            InitEnd::Exited(n) => *n as i32,
            InitEnd::Killed(s) => 128 + *s as i32,
            InitEnd::CannotRun(_) => 127,
        }
    }
}

impl fmt::Display for InitEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitEnd::Exited(n) => write!(f, "exited with status {n}"),
            InitEnd::Killed(s) => write!(f, "killed by signal {s}"),
            InitEnd::CannotRun(why) => write!(f, "cannot run {why}"),
        }
    }
}

/// Reads the kernel's `init: ...` line about how the first program ended.
fn parse_init_end(line: &str) -> Option<InitEnd> {
    let rest = line.strip_prefix(INIT_PREFIX)?;
    if let Some(n) = rest.strip_prefix("exited with status ") {
        return number(n).map(InitEnd::Exited);
    }
    if let Some(s) = rest.strip_prefix("killed by signal ") {
        return number(s).map(InitEnd::Killed);
    }
    rest.strip_prefix("cannot run ").map(|why| InitEnd::CannotRun(why.to_string()))
}

/// The result one test printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Ok,
    /// `FAILED: <why>`; holds `<why>`.
    Failed(String),
}

/// One test and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub outcome: TestOutcome,
}

/// The final `N passed, M failed` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
}

/// One `BENCH name=<name> value=<number> unit=<unit>` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Bench {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The line as the kernel printed it (keeps the number's own formatting).
    pub line: String,
}

impl fmt::Display for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// What one serial line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// `test <name> ... ok`
    TestOk { name: &'a str },
    /// `test <name> ... FAILED: <why>`
    TestFailed { name: &'a str, why: &'a str },
    /// `test <name> ... ` with no result (yet); `rest` is whatever else
    /// followed on the line (often a panic message).
    TestStarted { name: &'a str, rest: &'a str },
    /// A line that is only `ok` or `FAILED: <why>`: the result of a test
    /// whose own output pushed its result onto a new line.
    BareResult(Option<&'a str>),
    /// `N passed, M failed`
    Summary(Summary),
    /// A well-formed `BENCH` line.
    Bench(Bench),
    /// A line starting with `BENCH` that does not follow the format.
    BadBench,
    /// `kernel panic: <message>`; holds `<message>`.
    Panic(&'a str),
    /// `kernel: args: <args>`; holds `<args>`.
    ArgsEcho(&'a str),
    /// `smp: N of M CPUs online`
    CpusOnline(CpusOnline),
    /// `numa: node N: ...`; holds `N`.
    NumaNode(u32),
    /// `STRESS <key=value>...`; holds the words after `STRESS`.
    Stress(&'a str),
    /// `init: exited with status N` and the like.
    InitEnd(InitEnd),
    /// Anything else (log output).
    Other,
}

/// Removes the line ending and trailing white space the serial line may add.
pub fn normalize(raw: &str) -> &str {
    raw.trim_end()
}

/// Reads one line (already [`normalize`]d or not).
pub fn classify(raw: &str) -> Line<'_> {
    let line = normalize(raw);
    if let Some(rest) = line.strip_prefix("test ") {
        if let Some(parsed) = classify_test(rest) {
            return parsed;
        }
    }
    if line == "ok" {
        return Line::BareResult(None);
    }
    if let Some(why) = failed_reason(line) {
        return Line::BareResult(Some(why));
    }
    if let Some(summary) = parse_summary(line) {
        return Line::Summary(summary);
    }
    if line == "BENCH" || line.starts_with("BENCH ") {
        return parse_bench(line).map_or(Line::BadBench, Line::Bench);
    }
    if let Some(message) = line.strip_prefix(PANIC_PREFIX) {
        return Line::Panic(message);
    }
    if let Some(totals) = line.strip_prefix(STRESS_PREFIX).and_then(|r| r.strip_prefix(' ')) {
        return Line::Stress(totals.trim_start());
    }
    if line == PANIC_PREFIX.trim_end() {
        return Line::Panic("");
    }
    if let Some(cpus) = parse_cpus_online(line) {
        return Line::CpusOnline(cpus);
    }
    if let Some(end) = parse_init_end(line) {
        return Line::InitEnd(end);
    }
    if let Some(node) =
        line.strip_prefix(NUMA_NODE_PREFIX).and_then(|r| r.split_once(':')).and_then(|(n, _)| number(n))
    {
        return Line::NumaNode(node);
    }
    if let Some(args) = line.strip_prefix(ARGS_ECHO_PREFIX) {
        if args.is_empty() || args.starts_with(' ') {
            return Line::ArgsEcho(args.trim_start());
        }
    }
    Line::Other
}

/// `<name> ... <result>` after the `test ` prefix.
fn classify_test(rest: &str) -> Option<Line<'_>> {
    let (name, after) = rest.split_once(" ...")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    if after.is_empty() {
        return Some(Line::TestStarted { name, rest: "" });
    }
    let result = after.strip_prefix(' ')?;
    if result == "ok" {
        return Some(Line::TestOk { name });
    }
    if let Some(why) = failed_reason(result) {
        return Some(Line::TestFailed { name, why });
    }
    Some(Line::TestStarted { name, rest: result.trim_start() })
}

fn failed_reason(text: &str) -> Option<&str> {
    if text == "FAILED" || text == "FAILED:" {
        return Some("");
    }
    text.strip_prefix("FAILED: ").map(str::trim_start)
}

/// A decimal number of digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        s.parse().ok()
    }
}

/// Reads `N passed, M failed` exactly.
fn parse_summary(line: &str) -> Option<Summary> {
    let (passed, failed) = line.split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some(Summary { passed: number(passed)?, failed: number(failed)? })
}

/// Reads `smp: N of M CPUs online` exactly.
fn parse_cpus_online(line: &str) -> Option<CpusOnline> {
    let counts = line.strip_prefix(CPUS_PREFIX)?.strip_suffix(" CPUs online")?;
    let (online, listed) = counts.split_once(" of ")?;
    Some(CpusOnline { online: number(online)?, listed: number(listed)? })
}

/// Reads `BENCH name=<name> value=<number> unit=<unit>` exactly.
fn parse_bench(line: &str) -> Option<Bench> {
    let mut words = line.split_whitespace();
    if words.next()? != "BENCH" {
        return None;
    }
    let name = words.next()?.strip_prefix("name=")?;
    let value_text = words.next()?.strip_prefix("value=")?;
    let unit = words.next()?.strip_prefix("unit=")?;
    if words.next().is_some() || name.is_empty() || unit.is_empty() {
        return None;
    }
    let value: f64 = value_text.parse().ok().filter(|v: &f64| v.is_finite())?;
    Some(Bench { name: name.to_string(), value, unit: unit.to_string(), line: line.to_string() })
}

/// Everything learned from a guest's serial output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Tests with a result, in the order they finished.
    pub tests: Vec<TestResult>,
    /// The test that had started and not reported a result when the output ended.
    pub running: Option<String>,
    /// Tests that started, never reported, and were followed by another test.
    pub unfinished: Vec<String>,
    /// The last summary line seen.
    pub summary: Option<Summary>,
    pub benches: Vec<Bench>,
    /// `BENCH` lines that did not follow the format, as printed.
    pub bad_bench_lines: Vec<String>,
    /// The messages of `kernel panic: ` lines.
    pub panics: Vec<String>,
    /// The arguments the kernel echoed on its `kernel: args: ` line.
    pub args_echo: Option<String>,
    /// What the kernel's `smp: N of M CPUs online` line said (the last one).
    pub cpus_online: Option<CpusOnline>,
    /// The CPUs the machine was given (`-smp`), when the run was told
    /// ([`Parser::expecting_cpus`]): the verdicts then require the kernel to
    /// report exactly that many CPUs online, so that a broken CPU discovery
    /// cannot quietly run a multi-CPU test on one CPU.
    pub cpus_asked: Option<u32>,
    /// The nodes of the kernel's `numa: node N: ...` lines, in order.
    pub numa_nodes: Vec<u32>,
    /// The NUMA nodes the machine was given (1 without `--numa`), when the
    /// run was told ([`Parser::expecting_numa_nodes`]): the verdicts then
    /// require one `numa: node` line for each, 0 to N - 1, so that a
    /// broken firmware reading cannot quietly run NUMA tests on one node.
    pub numa_asked: Option<u32>,
    /// The words of the last `STRESS` line (a stress run's totals).
    pub stress_totals: Option<String>,
    /// How the first user program ended (the last `init: ` end line).
    pub init_end: Option<InitEnd>,
}

impl Report {
    /// The tests that printed `ok`.
    pub fn passed(&self) -> impl Iterator<Item = &TestResult> {
        self.tests.iter().filter(|t| t.outcome == TestOutcome::Ok)
    }

    /// The tests that printed `FAILED`.
    pub fn failed(&self) -> impl Iterator<Item = &TestResult> {
        self.tests.iter().filter(|t| t.outcome != TestOutcome::Ok)
    }

    /// True when a test named `name` printed `FAILED`.
    pub fn has_failed(&self, name: &str) -> bool {
        self.failed().any(|t| t.name == name)
    }

    /// True when the echoed arguments contain the word `word` (e.g. `smoke=1`).
    pub fn args_echo_contains(&self, word: &str) -> bool {
        self.args_echo.as_deref().is_some_and(|a| a.split_whitespace().any(|w| w == word))
    }
}

/// Builds a [`Report`] one line at a time, as the output arrives.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    report: Report,
}

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// A parser for the output of a machine given `cpus` CPUs (recorded in
    /// [`Report::cpus_asked`] for the verdicts).
    pub fn expecting_cpus(cpus: u32) -> Self {
        let mut parser = Parser::default();
        parser.report.cpus_asked = Some(cpus);
        parser
    }

    /// This parser, for the output of a machine given `nodes` NUMA nodes
    /// (recorded in [`Report::numa_asked`] for the verdicts).
    pub fn expecting_numa_nodes(mut self, nodes: u32) -> Self {
        self.report.numa_asked = Some(nodes);
        self
    }

    /// Takes one line of serial output (with or without its line ending).
    pub fn feed_line(&mut self, raw: &str) {
        match classify(raw) {
            Line::TestStarted { name, rest } => {
                self.start(name);
                if !rest.is_empty() {
                    // Output that followed the test's start on its line: a
                    // panic, or the test's own log text. Read it as a line.
                    self.feed_line(rest);
                }
            }
            Line::TestOk { name } => self.finish(name, TestOutcome::Ok),
            Line::TestFailed { name, why } => self.finish(name, TestOutcome::Failed(why.to_string())),
            Line::BareResult(result) => {
                if let Some(name) = self.report.running.take() {
                    let outcome = match result {
                        None => TestOutcome::Ok,
                        Some(why) => TestOutcome::Failed(why.to_string()),
                    };
                    self.report.tests.push(TestResult { name, outcome });
                }
            }
            Line::Summary(s) => self.report.summary = Some(s),
            Line::Bench(b) => self.report.benches.push(b),
            Line::BadBench => self.report.bad_bench_lines.push(normalize(raw).to_string()),
            Line::Panic(message) => self.report.panics.push(message.to_string()),
            Line::ArgsEcho(args) => self.report.args_echo = Some(args.to_string()),
            Line::CpusOnline(cpus) => self.report.cpus_online = Some(cpus),
            Line::NumaNode(node) => self.report.numa_nodes.push(node),
            Line::Stress(totals) => self.report.stress_totals = Some(totals.to_string()),
            Line::InitEnd(end) => self.report.init_end = Some(end),
            Line::Other => {}
        }
    }

    fn start(&mut self, name: &str) {
        if let Some(previous) = self.report.running.replace(name.to_string()) {
            self.report.unfinished.push(previous);
        }
    }

    fn finish(&mut self, name: &str, outcome: TestOutcome) {
        match self.report.running.take() {
            Some(running) if running != name => self.report.unfinished.push(running),
            _ => {}
        }
        self.report.tests.push(TestResult { name: name.to_string(), outcome });
    }

    /// The report so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report, once the output has ended.
    pub fn into_report(self) -> Report {
        self.report
    }
}

/// Parses a whole transcript at once.
pub fn parse_transcript(text: &str) -> Report {
    let mut parser = Parser::new();
    for line in text.split('\n') {
        parser.feed_line(line);
    }
    parser.into_report()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> TestResult {
        TestResult { name: name.into(), outcome: TestOutcome::Ok }
    }
    fn failed(name: &str, why: &str) -> TestResult {
        TestResult { name: name.into(), outcome: TestOutcome::Failed(why.into()) }
    }

    #[test]
    fn the_first_programs_end_is_read() {
        assert_eq!(classify("init: exited with status 3\r"), Line::InitEnd(InitEnd::Exited(3)));
        assert_eq!(classify("init: killed by signal 11"), Line::InitEnd(InitEnd::Killed(11)));
        assert_eq!(
            classify("init: cannot run /bin/x: no such file"),
            Line::InitEnd(InitEnd::CannotRun("/bin/x: no such file".into()))
        );
        assert_eq!(classify("init: running /bin/x with 2 arguments"), Line::Other);
        assert_eq!(classify("init: exited with status 300"), Line::Other);
        let r = parse_transcript("init: running /bin/sh\nhi\ninit: exited with status 0\n");
        assert_eq!(r.init_end, Some(InitEnd::Exited(0)));
        assert_eq!(parse_transcript("hi\n").init_end, None);
        assert_eq!(InitEnd::Exited(3).shell_status(), 3);
        assert_eq!(InitEnd::Killed(11).shell_status(), 139);
        assert_eq!(InitEnd::CannotRun("x".into()).shell_status(), 127);
        assert_eq!(InitEnd::Killed(9).to_string(), "killed by signal 9");
    }

    #[test]
    fn stress_totals_are_kept() {
        assert_eq!(classify("STRESS seed=0x2a ops=5\r"), Line::Stress("seed=0x2a ops=5"));
        assert_eq!(classify("STRESSED out"), Line::Other);
        let r = parse_transcript("STRESS ops=1\nlog\nSTRESS ops=2 mismatches=0\n");
        assert_eq!(r.stress_totals.as_deref(), Some("ops=2 mismatches=0"));
        assert_eq!(parse_transcript("log\n").stress_totals, None);
    }

    #[test]
    fn classifies_each_kind_of_line() {
        assert_eq!(classify("test a::b ... ok"), Line::TestOk { name: "a::b" });
        assert_eq!(classify("test a::b ... ok\r"), Line::TestOk { name: "a::b" });
        assert_eq!(
            classify("test a ... FAILED: expected 3, got 4"),
            Line::TestFailed { name: "a", why: "expected 3, got 4" }
        );
        assert_eq!(classify("test a ... FAILED"), Line::TestFailed { name: "a", why: "" });
        assert_eq!(classify("test a ... "), Line::TestStarted { name: "a", rest: "" });
        assert_eq!(classify("test a ..."), Line::TestStarted { name: "a", rest: "" });
        assert_eq!(
            classify("test a ... kernel panic: boom at x.rs:1:2"),
            Line::TestStarted { name: "a", rest: "kernel panic: boom at x.rs:1:2" }
        );
        assert_eq!(classify("12 passed, 0 failed"), Line::Summary(Summary { passed: 12, failed: 0 }));
        assert_eq!(classify("12 passed, 3 failed\r\n"), Line::Summary(Summary { passed: 12, failed: 3 }));
        assert_eq!(classify("kernel panic: oops at a.rs:3:4"), Line::Panic("oops at a.rs:3:4"));
        assert_eq!(classify("kernel: args: test=all seed=1"), Line::ArgsEcho("test=all seed=1"));
        assert_eq!(classify("kernel: args:"), Line::ArgsEcho(""));
        assert_eq!(classify("ok"), Line::BareResult(None));
        assert_eq!(classify("FAILED: x"), Line::BareResult(Some("x")));
        match classify("BENCH name=thp_fault value=1234.5 unit=faults/s") {
            Line::Bench(b) => {
                assert_eq!((b.name.as_str(), b.value, b.unit.as_str()), ("thp_fault", 1234.5, "faults/s"));
                assert_eq!(b.to_string(), "BENCH name=thp_fault value=1234.5 unit=faults/s");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_the_cpus_online_line() {
        assert_eq!(
            classify("smp: 3 of 4 CPUs online\r"),
            Line::CpusOnline(CpusOnline { online: 3, listed: 4 })
        );
        for near_miss in [
            "smp: 3 of 4 CPUs",
            "smp: x of 4 CPUs online",
            "smp: 3 of  CPUs online",
            "smp:3 of 4 CPUs online",
        ] {
            assert_eq!(classify(near_miss), Line::Other, "{near_miss}");
        }
        let report = parse_transcript("smp: 1 of 1 CPUs online\nsmp: CPU 1 did not start\n");
        assert_eq!(report.cpus_online, Some(CpusOnline { online: 1, listed: 1 }));
        assert_eq!(report.cpus_asked, None);
        assert_eq!(Parser::expecting_cpus(4).report().cpus_asked, Some(4));
    }

    #[test]
    fn near_misses_are_not_protocol_lines() {
        for line in [
            "testing a ... ok",
            "test  ... ok",
            "test a b ... ok",
            "test a ...ok",
            " 1 passed, 0 failed",
            "1 passed, 0 failed, 2 ignored",
            "1 passed 0 failed",
            "x passed, 0 failed",
            "-1 passed, 0 failed",
            "the kernel panic: was expected",
            "kernel: argsx",
            "okay",
            "",
        ] {
            assert_eq!(classify(line), Line::Other, "{line:?}");
        }
        for line in [
            "BENCH",
            "BENCH name=x value=1",
            "BENCH name=x value=abc unit=s",
            "BENCH name=x value=1 unit=s extra=1",
            "BENCH value=1 name=x unit=s",
            "BENCH name= value=1 unit=s",
            "BENCH name=x value=inf unit=s",
        ] {
            assert_eq!(classify(line), Line::BadBench, "{line:?}");
        }
    }

    #[test]
    fn a_full_passing_run() {
        let report = parse_transcript(
            "SeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\
             kernel: booting on 1 CPU\r\n\
             kernel: args: test=all seed=42\r\n\
             test mm::frame::alloc_free ... ok\r\n\
             test mm::pgtable::map_unmap ... ok\r\n\
             test mm::fault::cow ... ok\r\n\
             3 passed, 0 failed\r\n",
        );
        assert_eq!(
            report.tests,
            [ok("mm::frame::alloc_free"), ok("mm::pgtable::map_unmap"), ok("mm::fault::cow")]
        );
        assert_eq!(report.summary, Some(Summary { passed: 3, failed: 0 }));
        assert_eq!(report.running, None);
        assert!(report.panics.is_empty());
        assert!(report.args_echo_contains("seed=42"));
        assert!(!report.args_echo_contains("seed=4"));
    }

    #[test]
    fn failures_keep_their_reasons() {
        let report = parse_transcript(
            "test a ... ok\n\
             test b ... FAILED: mapcount 2, expected 1 (folio 0x1234)\n\
             test c ... ok\n\
             2 passed, 1 failed\n",
        );
        assert_eq!(report.passed().count(), 2);
        let failed_tests: Vec<_> = report.failed().cloned().collect();
        assert_eq!(failed_tests, [failed("b", "mapcount 2, expected 1 (folio 0x1234)")]);
        assert!(report.has_failed("b"));
        assert!(!report.has_failed("a"));
    }

    #[test]
    fn a_panic_mid_test_names_the_running_test() {
        let report = parse_transcript(
            "test mm::swap::roundtrip ... ok\n\
             test mm::huge::split ... kernel panic: assertion failed: folio.is_locked() at kernel/mm/src/huge.rs:88:9\n\
             backtrace not available\n",
        );
        assert_eq!(report.tests, [ok("mm::swap::roundtrip")]);
        assert_eq!(report.running.as_deref(), Some("mm::huge::split"));
        assert_eq!(report.panics, ["assertion failed: folio.is_locked() at kernel/mm/src/huge.rs:88:9"]);
        assert_eq!(report.summary, None);
    }

    #[test]
    fn a_guest_dying_silently_leaves_the_partial_line() {
        // The last line has no newline: the guest triple-faulted mid-test.
        let report = parse_transcript("test a ... ok\ntest b ... ");
        assert_eq!(report.running.as_deref(), Some("b"));
        let report = parse_transcript("test a ... ok\ntest b ... \n");
        assert_eq!(report.running.as_deref(), Some("b"));
    }

    #[test]
    fn a_panic_on_its_own_line_after_a_started_test() {
        let report = parse_transcript("test a ... \nkernel panic: boom at x.rs:1:1\n");
        assert_eq!(report.running.as_deref(), Some("a"));
        assert_eq!(report.panics, ["boom at x.rs:1:1"]);
    }

    #[test]
    fn test_output_may_push_the_result_to_a_later_line() {
        let report = parse_transcript(
            "test a ... mm: debug: 3 folios on the LRU\nok\n\
             test b ... note\nFAILED: lost a write\n\
             1 passed, 1 failed\n",
        );
        assert_eq!(report.tests, [ok("a"), failed("b", "lost a write")]);
        assert_eq!(report.running, None);
        assert!(report.unfinished.is_empty());
    }

    #[test]
    fn a_test_that_never_reports_before_the_next_one_is_unfinished() {
        let report = parse_transcript("test a ... \ntest b ... ok\n1 passed, 0 failed\n");
        assert_eq!(report.unfinished, ["a"]);
        assert_eq!(report.tests, [ok("b")]);
        assert_eq!(report.running, None);
    }

    #[test]
    fn benches_are_collected_and_bad_ones_kept_aside() {
        let report = parse_transcript(
            "kernel: clock source: TSC 2.1 GHz\n\
             BENCH name=anon4k_fault value=81234.5 unit=faults/s\n\
             BENCH name=swap_mismatch value=0 unit=count\n\
             BENCH name=oops value=fast unit=faults/s\n",
        );
        let names: Vec<_> = report.benches.iter().map(|b| (b.name.as_str(), b.value)).collect();
        assert_eq!(names, [("anon4k_fault", 81234.5), ("swap_mismatch", 0.0)]);
        assert_eq!(report.bad_bench_lines, ["BENCH name=oops value=fast unit=faults/s"]);
    }

    #[test]
    fn incremental_feeding_matches_the_whole_transcript() {
        let text = "kernel: args: \ntest a ... ok\ntest b ... FAILED: x\n1 passed, 1 failed\n";
        let mut parser = Parser::new();
        for line in text.lines() {
            parser.feed_line(line);
        }
        assert_eq!(parser.report(), &parse_transcript(text));
        assert_eq!(parser.into_report().args_echo.as_deref(), Some(""));
    }
}
