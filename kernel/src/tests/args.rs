//! In-guest tests moved from cmdline.rs.

use crate::cmdline::*;
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use kargs::Args;
use mm::bugs::Bug;

fn reached_kernel(env: &TestEnv<'_>) -> Result<(), String> {
    // The harness runs only when `test=` arrived; check it survived intact
    // next to whatever else was passed.
    let filter = env.args.get("test").ok_or("no `test` argument, yet the harness runs")?;
    if filter.is_empty() {
        return Err("`test` argument arrived empty".into());
    }
    for a in env.args.iter() {
        if !a.value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("argument `{}` arrived with unprintable bytes", a.key));
        }
    }
    Ok(())
}

fn parser_works_in_the_guest(_: &TestEnv<'_>) -> Result<(), String> {
    let args = Args::parse("a=1 flag seed=0x10").map_err(|e| format!("{e}"))?;
    if args.get("a") != Some("1") || !args.has("flag") || args.get_u64("seed") != Ok(Some(16)) {
        return Err(format!("wrong parse: {args:?}"));
    }
    match Args::parse("a=1 a=2") {
        Err(kargs::ArgError::Repeated { key: "a" }) => Ok(()),
        other => Err(format!("a repeated key was not refused: {other:?}")),
    }
}

fn validation_names_the_bad_argument(_: &TestEnv<'_>) -> Result<(), String> {
    let cases = [
        ("seed=12x", "seed=12x"),
        ("bug=no-such-switch", "bug=no-such-switch"),
        ("harness_selfcheck=maybe", "harness_selfcheck=maybe"),
        ("rawdisk_hold=foll_get", "rawdisk_hold=foll_get"),
        ("init=bin/sh", "init=bin/sh"),
        ("init=/bin/sh init_args=a,%zz", "init_args=a,%zz"),
        ("init_args=a", "without `init=`"),
        ("init=/bin/sh test=all", "init="),
    ];
    for (line, culprit) in cases {
        let args = Args::parse(line).map_err(|e| format!("{e}"))?;
        match validate(&args) {
            Err(msg) if msg.contains(culprit) => {}
            other => return Err(format!("validate({line:?}) gave {other:?}")),
        }
    }
    let good =
        Args::parse("seed=0x10 stress_secs=5 test=all rawdisk_hold=get").map_err(|e| format!("{e}"))?;
    validate(&good).map_err(|e| format!("good arguments refused: {e}"))?;
    let replay = Args::parse("test=all bug=nonatomic-folio-flags").map_err(|e| format!("{e}"))?;
    validate(&replay).map_err(|e| format!("a known bug-replay switch refused: {e}"))?;
    let init = Args::parse("init=/bin/busybox init_args=sh,-c,echo%20hi").map_err(|e| format!("{e}"))?;
    validate(&init).map_err(|e| format!("a good init= refused: {e}"))
}

fn wait_status_lines(_: &TestEnv<'_>) -> Result<(), String> {
    // The lines the runner reads the first program's end from.
    for (status, line) in [
        (0, "init: exited with status 0"),
        (3 << 8, "init: exited with status 3"),
        (11, "init: killed by signal 11"),
        (9 | 0x80, "init: killed by signal 9"),
    ] {
        let got = crate::init::describe_wait_status(status);
        if got != line {
            return Err(format!("wait status {status:#x} gave {got:?}, not {line:?}"));
        }
    }
    Ok(())
}

fn bug_switches_match_mm(_: &TestEnv<'_>) -> Result<(), String> {
    // The table the kernel validates `bug=` with and `mm`'s switches name
    // the same set, each once.
    for bug in Bug::ALL {
        let listed = BUG_SWITCHES.iter().filter(|(name, _)| *name == bug.name()).count();
        if listed != 1 {
            return Err(format!("`{}` is listed {listed} times in BUG_SWITCHES", bug.name()));
        }
    }
    for (name, what) in BUG_SWITCHES {
        if Bug::from_name(name).is_none() || what.is_empty() {
            return Err(format!("BUG_SWITCHES lists `{name}`, which mm::bugs does not know"));
        }
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["args": reached_kernel, validation_names_the_bad_argument, parser_works_in_the_guest, bug_switches_match_mm, wait_status_lines];
