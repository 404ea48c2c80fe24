//! The runner: starts QEMU, streams the guest's serial console to the user
//! while parsing it, enforces the time limit, and says how the guest ended.
//!
//! QEMU's stdout is the guest's serial port (`-serial stdio`); its stderr
//! carries QEMU's own complaints (a missing file, a bad option), which are
//! collected and shown when the run fails, because they are usually the
//! whole explanation. stdin is closed so QEMU never waits on the terminal.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Arch;
use crate::exit::GuestExit;
use crate::machine::QemuCommand;
use crate::protocol::{Parser, Report};
use crate::symbols::Symbolizer;

/// How many of the guest's last lines to keep for error reports.
pub const DEFAULT_KEEP_LINES: usize = 40;

/// How long to wait for the output pipes to close once QEMU has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How a run is supervised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Kill the guest after this long; `None` waits forever (e.g. under gdb).
    pub timeout: Option<Duration>,
    /// Copy the serial output to our stdout as it arrives, and print
    /// problems (time limit, crash, panic, QEMU's stderr) to our stderr.
    pub echo: bool,
    /// How many trailing lines to keep in [`RunOutcome::last_lines`].
    pub keep_lines: usize,
    /// The CPUs the machine was given (`-smp`), for the verdicts to check
    /// against the kernel's `smp: N of M CPUs online` line
    /// ([`crate::Report::cpus_asked`]); `None` for guests that print no such line.
    pub cpus: Option<u32>,
    /// The NUMA nodes the machine was given (1 without `-numa`), for the
    /// verdicts to check against the kernel's `numa: node N` lines
    /// ([`crate::Report::numa_asked`]); `None` for guests that print none.
    pub numa_nodes: Option<u32>,
    /// The kernel's ELF: its `backtrace:` frame lines are kept (and, when
    /// echoing, printed again) with `function at file:line` appended
    /// ([`crate::symbols`]). Source paths under `source_root` are shown
    /// relative to it.
    pub kernel_elf: Option<PathBuf>,
    pub source_root: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: Some(Duration::from_secs(120)),
            echo: true,
            keep_lines: DEFAULT_KEEP_LINES,
            cpus: None,
            numa_nodes: None,
            kernel_elf: None,
            source_root: None,
        }
    }
}

/// Why QEMU could not be run at all (as opposed to a guest that failed).
#[derive(Debug)]
pub enum RunError {
    /// QEMU could not be started (usually: not installed).
    Spawn { program: String, source: io::Error },
    /// Waiting for or killing QEMU failed.
    Wait(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { program, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(
                    f,
                    "could not start `{program}`: it is not on PATH (on Debian: apt-get install \
                 qemu-system-x86 qemu-system-arm ovmf)"
                )
            }
            RunError::Spawn { program, source } => {
                write!(f, "could not start `{program}`: {source}")
            }
            RunError::Wait(e) => write!(f, "lost track of the QEMU process: {e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spawn { source, .. } => Some(source),
            RunError::Wait(e) => Some(e),
        }
    }
}

/// Everything known about a finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub arch: Arch,
    pub exit: GuestExit,
    /// What the serial output said.
    pub report: Report,
    /// The last [`RunOptions::keep_lines`] lines of serial output.
    pub last_lines: Vec<String>,
    /// Everything QEMU wrote to its stderr.
    pub stderr: String,
    pub elapsed: Duration,
    /// The time limit the run had, if any.
    pub timeout: Option<Duration>,
}

impl RunOutcome {
    /// The text to print after a run that went wrong: why, and the last
    /// lines of output; QEMU's stderr when it said anything. `None` when
    /// the guest reported success and did not panic.
    pub fn problem_text(&self) -> Option<String> {
        let mut out = String::new();
        let headline = match self.exit {
            GuestExit::TimedOut => Some(format!(
                "qemu: guest exceeded its time limit of {} s; last lines:",
                self.timeout.map_or(0, |t| t.as_secs())
            )),
            GuestExit::Crashed(_) => Some(format!("qemu: {}; last lines:", self.exit.describe(self.arch))),
            _ if !self.report.panics.is_empty() => Some("qemu: the kernel panicked; last lines:".to_string()),
            _ => None,
        };
        if let Some(headline) = headline {
            out.push_str(&headline);
            out.push('\n');
            if self.last_lines.is_empty() {
                out.push_str("    (the guest printed nothing)\n");
            }
            for line in &self.last_lines {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        let stderr = self.stderr.trim_end();
        if !stderr.is_empty() && (!self.exit.is_success() || !self.report.panics.is_empty()) {
            out.push_str("qemu: QEMU's own messages (stderr):\n");
            for line in stderr.lines() {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Runs QEMU until the guest exits or its time is up.
pub fn run(cmd: &QemuCommand, arch: Arch, opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let start = Instant::now();
    let mut child = cmd
        .to_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn { program: cmd.program.clone(), source })?;

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<String>();
    let echo = opts.echo;
    thread::spawn(move || split_lines(stdout, echo, |line| tx.send(line).is_ok()));
    let (stderr_tx, stderr_rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_end(&mut bytes);
        let _ = stderr_tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });

    let deadline = opts.timeout.map(|t| start + t);
    let symbols = match &opts.kernel_elf {
        Some(elf) => Symbols::Unopened { elf: elf.clone(), root: opts.source_root.clone() },
        None => Symbols::Off,
    };
    let mut lines = Lines {
        parser: {
            let parser = opts.cpus.map_or_else(Parser::new, Parser::expecting_cpus);
            match opts.numa_nodes {
                Some(nodes) => parser.expecting_numa_nodes(nodes),
                None => parser,
            }
        },
        last: VecDeque::new(),
        keep: opts.keep_lines,
        symbols,
        echo: opts.echo,
    };
    let mut timed_out = !lines.read_until(&rx, deadline);
    let status = if timed_out {
        kill(&mut child)?
    } else {
        match wait_until(&mut child, deadline)? {
            Some(status) => status,
            None => {
                timed_out = true;
                kill(&mut child)?
            }
        }
    };
    // QEMU is gone, so its pipes reach their end: take the lines that
    // arrived between the deadline and the kill, and the partial last line.
    // (The grace period only matters if something else still holds a pipe
    // open; the reader threads are then left behind rather than waited for.)
    lines.read_until(&rx, Some(Instant::now() + PIPE_GRACE));
    let stderr = stderr_rx.recv_timeout(PIPE_GRACE).unwrap_or_default();
    let exit = if timed_out { GuestExit::TimedOut } else { GuestExit::from_status(arch, status.code()) };

    let outcome = RunOutcome {
        arch,
        exit,
        report: lines.parser.into_report(),
        last_lines: lines.last.into(),
        stderr,
        elapsed: start.elapsed(),
        timeout: opts.timeout,
    };
    if opts.echo {
        if let Some(text) = outcome.problem_text() {
            let _ = io::stdout().flush();
            eprint!("{text}");
        }
    }
    Ok(outcome)
}

/// The lines received so far: parsed, and the last few kept.
struct Lines {
    parser: Parser,
    last: VecDeque<String>,
    keep: usize,
    symbols: Symbols,
    echo: bool,
}

/// The symbolizer of a run: opened at the first `backtrace:` line.
enum Symbols {
    Off,
    Unopened { elf: PathBuf, root: Option<PathBuf> },
    Open(Box<Symbolizer>),
}

impl Symbols {
    /// `line` with its frame symbolized, when it is a frame line.
    fn annotate(&mut self, line: &str, echo: bool) -> Option<String> {
        if !line.starts_with("backtrace: ") {
            return None;
        }
        if let Symbols::Unopened { elf, root } = self {
            match Symbolizer::open(elf, root.as_deref()) {
                Ok(s) => *self = Symbols::Open(Box::new(s)),
                Err(e) => {
                    if echo {
                        eprintln!("qemu: cannot symbolize the backtrace: {e}");
                    }
                    *self = Symbols::Off;
                }
            }
        }
        match self {
            Symbols::Open(s) => s.annotate(line),
            _ => None,
        }
    }
}

impl Lines {
    fn take(&mut self, line: String) {
        self.parser.feed_line(&line);
        let line = match self.symbols.annotate(&line, self.echo) {
            Some(annotated) => {
                if self.echo {
                    println!("qemu: {annotated}");
                }
                annotated
            }
            None => line,
        };
        if self.keep > 0 {
            if self.last.len() == self.keep {
                self.last.pop_front();
            }
            self.last.push_back(line);
        }
    }

    /// Takes lines until the output ends (`true`) or the deadline passes (`false`).
    fn read_until(&mut self, rx: &Receiver<String>, deadline: Option<Instant>) -> bool {
        loop {
            let received = match deadline {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match received {
                Ok(line) => self.take(line),
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// Reads `input` to its end, copying it to stdout as it arrives when `echo`,
/// and hands each line (without `\n` or `\r`) to `sink`. A last line without
/// a newline is handed over too: it is the partial `test <name> ... ` of a
/// guest that died mid-test. Stops early when `sink` returns false.
///
/// Terminal escape sequences are dropped on the way (OVMF clears the screen
/// with them, which would wipe the user's terminal); the protocol is plain text.
fn split_lines(mut input: impl Read, echo: bool, mut sink: impl FnMut(String) -> bool) {
    let mut buf = [0u8; 4096];
    let mut plain: Vec<u8> = Vec::with_capacity(buf.len());
    let mut filter = EscapeFilter::default();
    let mut pending: Vec<u8> = Vec::new();
    let to_line = |bytes: &[u8]| {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        String::from_utf8_lossy(bytes).into_owned()
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        plain.clear();
        filter.filter(&buf[..n], &mut plain);
        if echo && !plain.is_empty() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&plain);
            let _ = out.flush();
        }
        for piece in plain.split_inclusive(|&b| b == b'\n') {
            pending.extend_from_slice(piece);
            if pending.last() == Some(&b'\n') {
                pending.pop();
                if !sink(to_line(&pending)) {
                    return;
                }
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        sink(to_line(&pending));
    }
}

/// Drops ANSI escape sequences (`ESC [ ... final` and two-byte `ESC x`)
/// from a byte stream, keeping its state across chunks.
#[derive(Debug, Default)]
struct EscapeFilter {
    state: EscapeState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum EscapeState {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// Inside `ESC [`, until a final byte in `0x40..=0x7e`.
    Csi,
}

impl EscapeFilter {
    const ESC: u8 = 0x1b;

    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (EscapeState::Text, Self::ESC) => EscapeState::Escape,
                (EscapeState::Text, _) => {
                    out.push(b);
                    EscapeState::Text
                }
                (EscapeState::Escape, b'[') => EscapeState::Csi,
                (EscapeState::Escape, _) => EscapeState::Text,
                (EscapeState::Csi, 0x40..=0x7e) => EscapeState::Text,
                (EscapeState::Csi, _) => EscapeState::Csi,
            };
        }
    }
}

/// Waits for the child until `deadline`; `None` when it is still running then.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Result<Option<ExitStatus>, RunError> {
    let Some(deadline) = deadline else {
        return child.wait().map(Some).map_err(RunError::Wait);
    };
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Wait)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn kill(child: &mut Child) -> Result<ExitStatus, RunError> {
    // An error here means the child already exited; `wait` still reaps it.
    let _ = child.kill();
    child.wait().map_err(RunError::Wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_transcript;

    fn lines_of(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        split_lines(input, false, |l| {
            out.push(l);
            true
        });
        out
    }

    #[test]
    fn splits_lines_and_keeps_the_partial_last_one() {
        assert_eq!(lines_of(b"a\r\nb\n\ntest x ... "), ["a", "b", "", "test x ... "]);
        assert_eq!(lines_of(b"a\n"), ["a"]);
        assert!(lines_of(b"").is_empty());
        // Bytes that are not UTF-8 do not stop the run.
        assert_eq!(lines_of(b"\xffok\n"), ["\u{fffd}ok"]);
    }

    #[test]
    fn drops_terminal_escapes_even_across_chunks() {
        // What OVMF prints before its boot messages.
        assert_eq!(
            lines_of(b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\nok\n"),
            ["BdsDxe: loading Boot0001", "ok"]
        );
        let mut filter = EscapeFilter::default();
        let mut out = Vec::new();
        for chunk in [&b"a\x1b"[..], b"[0", b"1;0", b"1Hb\x1bc", b"d"] {
            filter.filter(chunk, &mut out);
        }
        assert_eq!(out, b"abd");
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let mut lines = Lines {
            parser: Parser::new(),
            last: VecDeque::new(),
            keep: 2,
            symbols: Symbols::Off,
            echo: false,
        };
        for l in ["test a ... ok", "x", "y"] {
            lines.take(l.to_string());
        }
        assert_eq!(lines.last, ["x", "y"]);
        assert_eq!(lines.parser.report().tests.len(), 1);
    }

    fn outcome(exit: GuestExit, text: &str, stderr: &str) -> RunOutcome {
        RunOutcome {
            arch: Arch::X86_64,
            exit,
            report: parse_transcript(text),
            last_lines: text.lines().map(String::from).collect(),
            stderr: stderr.to_string(),
            elapsed: Duration::from_secs(1),
            timeout: Some(Duration::from_secs(120)),
        }
    }

    #[test]
    fn problem_text_for_each_way_of_going_wrong() {
        assert_eq!(outcome(GuestExit::Success, "test a ... ok\n", "").problem_text(), None);
        assert_eq!(outcome(GuestExit::Failure, "test a ... FAILED: x\n", "").problem_text(), None);
        assert_eq!(
            outcome(GuestExit::TimedOut, "test slow ... ", "").problem_text().unwrap(),
            "qemu: guest exceeded its time limit of 120 s; last lines:\n    test slow ... \n"
        );
        let crash = outcome(GuestExit::Crashed(Some(0)), "", "").problem_text().unwrap();
        assert!(crash.starts_with("qemu: the guest crashed: QEMU exited with status 0"), "{crash}");
        assert!(crash.ends_with("last lines:\n    (the guest printed nothing)\n"), "{crash}");
        let panic = outcome(GuestExit::Failure, "kernel panic: x\n", "").problem_text().unwrap();
        assert_eq!(panic, "qemu: the kernel panicked; last lines:\n    kernel panic: x\n");
        let qemu_err = outcome(
            GuestExit::Crashed(Some(1)),
            "",
            "qemu-system-x86_64: -drive file=k.img: Could not open 'k.img': No such file or directory\n",
        )
        .problem_text()
        .unwrap();
        assert!(
            qemu_err.ends_with("qemu: QEMU's own messages (stderr):\n    qemu-system-x86_64: -drive file=k.img: Could not open 'k.img': No such file or directory\n"),
            "{qemu_err}"
        );
    }

    #[test]
    fn a_missing_qemu_is_a_clear_error() {
        let cmd = QemuCommand { program: "qemu-system-does-not-exist".into(), args: vec![] };
        let err = run(&cmd, Arch::X86_64, &RunOptions { echo: false, ..RunOptions::default() }).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("could not start `qemu-system-does-not-exist`: it is not on PATH"));
    }

    #[test]
    fn runs_a_process_streams_its_lines_and_maps_its_status() {
        // A stand-in for QEMU: any program that prints and exits with 33.
        let cmd = QemuCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "printf 'test a ... ok\\r\\n1 passed, 0 failed\\r\\n'; echo warn >&2; exit 33".into(),
            ],
        };
        let out = run(&cmd, Arch::X86_64, &RunOptions { echo: false, ..RunOptions::default() }).unwrap();
        assert_eq!(out.exit, GuestExit::Success);
        assert_eq!(out.last_lines, ["test a ... ok", "1 passed, 0 failed"]);
        assert_eq!(out.report.tests.len(), 1);
        assert_eq!(out.stderr, "warn\n");
    }

    #[test]
    fn kills_a_process_that_runs_too_long() {
        let cmd = QemuCommand {
            program: "sh".into(),
            args: vec!["-c".into(), "printf 'test slow ... '; exec sleep 30".into()],
        };
        let opts = RunOptions {
            timeout: Some(Duration::from_millis(500)),
            echo: false,
            keep_lines: 40,
            ..RunOptions::default()
        };
        let out = run(&cmd, Arch::Aarch64, &opts).unwrap();
        assert_eq!(out.exit, GuestExit::TimedOut);
        assert!(out.elapsed < Duration::from_secs(10));
        assert_eq!(out.report.running.as_deref(), Some("slow"));
    }
}
