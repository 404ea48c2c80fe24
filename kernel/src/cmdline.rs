//! The kernel arguments this kernel understands, and their echo at boot.
//!
//! Parsing is the `kargs` crate's (shared with xtask, tested on the host).
//! Here: the list of known keys, so that a typo is reported instead of being
//! silently ignored, and in-guest tests that the arguments arrived intact.

use crate::println;
use alloc::format;
use alloc::string::String;
use kargs::Args;
use mm::bugs::Bug;
use mm::gup::Hold;

/// True when the test or benchmark `name` is selected by `filter`: one
/// of its comma-separated prefixes starts `name`, or it is `all`.
pub fn selected(filter: &str, name: &str) -> bool {
    filter.split(',').any(|p| p == "all" || (!p.is_empty() && name.starts_with(p)))
}

/// Every key the kernel reads, with what it does.
pub const KNOWN_ARGS: &[(&str, &str)] = &[
    ("test", "run the in-guest tests whose names start with this (`all` for every test; several separated by `,`)"),
    ("seed", "seed for randomised tests and stress runs"),
    ("bug", "put a historical mistake back (bug-replay switch)"),
    ("stress_secs", "how long stress tests run"),
    ("bench", "run the benchmarks"),
    ("smoke", "marker used by boot checks; no effect"),
    ("swap_demo", "`0` skips the boot workload that fills more than free memory and reads it back through swap"),
    ("fail_alloc", "allocation-failure injection: `<n>` fails the n-th frame allocation, `<p>` (`0.01` or `1%`) each with probability p, seeded from `seed`; for the boot workload or benchmark, for every task; with `test=`, the spec of every run of the `fail_alloc::` sweep instead of its own"),
    ("harness_selfcheck", "`fail` makes harness::selfcheck_fail fail, `crash` makes harness::selfcheck_crash take an unhandled page fault"),
    ("init", "run this program of the initramfs (e.g. `/bin/busybox`) as the first process instead of the boot workload, print `init: exited with status N` and stop"),
    ("swap_keep_clean", "`on` (default) or `off`: whether a page swapped in by a read keeps its slot and its clean copy in the swap cache while the area is less than half full, so that reclaiming it again writes nothing (`off`: every swap-in frees its slots, as before)"),
    ("rawdisk_hold", "`pin` (default) or `get`: the hold a raw-disk transfer (`/dev/vdX`) takes on the user's pages, a pin (FOLL_PIN, as Linux's O_DIRECT now) or a plain reference (FOLL_GET, as O_DIRECT before pins): the lab of seed 004 from user space (`user::rawdisk_get`)"),
    ("init_args", "the first program's arguments after argv[0], `,`-separated and percent-encoded (`sh,-c,echo%20hi`; `kargs::argv`); needs `init=`"),
];

/// The bug-replay switches this kernel has (`bug=<name>`), with the mistake
/// each puts back. Each mechanism's issue adds its switch here, named by
/// its `mm::bugs::Bug`; any other `bug=` is refused rather than silently
/// doing nothing.
pub const BUG_SWITCHES: &[(&str, &str)] = &[
    (
        Bug::NonatomicFolioFlags.name(),
        "seed 003: a new anonymous folio is published first and its flags are written after with a plain \
         load/modify/store, undoing a PFN walker's concurrent atomic change",
    ),
    (
        Bug::ForgetAnonExclusive.name(),
        "seed 004: unmapping to swap writes swap entries without the exclusive bit, so a page somebody \
         holds a plain reference to comes back shared and is copied on the next write",
    ),
    (
        Bug::PageoutSplitRace.name(),
        "seed 002: MADV_PAGEOUT splits a large folio without checking that reclaim isolated it, and \
         swap-in of a slot one entry holds reads it without the HAS_CACHE claim, trusting the entry \
         recheck, which a reused slot fools (ABA)",
    ),
    (
        Bug::SplitPmdMigrationEntry.name(),
        "seed 001: splitting a PMD reads its frame field for the huge-zero test before checking it is \
         present, and clears a PMD migration entry as if nothing were behind it, so the migration's \
         restore finds nothing and the huge page's data is lost",
    ),
    (
        Bug::SwapcacheTailEntries.name(),
        "seed 000: each page of a swap-cache folio keeps its own swap entry, and migrating the folio \
         records the head page's only, so after a split the tail pages name no slot of their own",
    ),
];

/// Checks the values of the arguments the kernel interprets. The message
/// names the argument and says what is accepted.
pub fn validate(args: &Args<'_>) -> Result<(), String> {
    args.get_u64("seed").map_err(|e| format!("{e}"))?;
    args.get_u64("stress_secs").map_err(|e| format!("{e}"))?;
    if let Some(name) = args.get("bug") {
        if !BUG_SWITCHES.iter().any(|(k, _)| *k == name) || Bug::from_name(name).is_none() {
            let mut known = String::new();
            for (k, _) in BUG_SWITCHES {
                known.push_str(if known.is_empty() { "" } else { ", " });
                known.push_str(k);
            }
            if known.is_empty() {
                known.push_str("none in this build");
            }
            return Err(format!("unknown bug-replay switch `bug={name}` (known: {known})"));
        }
    }
    if let Some(v) = args.get("fail_alloc") {
        mm::fail_alloc::Spec::parse(v).map_err(|e| format!("`fail_alloc={v}`: {e}"))?;
    }
    if let Some(v) = args.get(kargs::argv::INIT_ARGS_KEY) {
        if args.get(kargs::argv::INIT_KEY).is_none() {
            return Err("`init_args=` is given without `init=`".into());
        }
        kargs::argv::decode_argv(v).map_err(|e| format!("`init_args={v}`: {e}"))?;
    }
    if let Some(v) = args.get(kargs::argv::INIT_KEY) {
        if !v.starts_with('/') {
            return Err(format!("`init={v}`: expected an absolute path in the initramfs, e.g. /bin/busybox"));
        }
        if args.get("test").is_some() || args.get("bench").is_some() {
            return Err(
                "`init=` runs a program instead of the tests or benchmarks: give one of init=, test=, bench="
                    .into(),
            );
        }
    }
    if let Some(v) = args.get("rawdisk_hold") {
        rawdisk_hold(v).ok_or_else(|| format!("`rawdisk_hold={v}`: expected `pin` or `get`"))?;
    }
    if let Some(v) = args.get("swap_keep_clean") {
        on_off(v).ok_or_else(|| format!("`swap_keep_clean={v}`: expected `on` or `off`"))?;
    }
    if let Some(v) = args.get("harness_selfcheck") {
        if v != "fail" && v != "crash" {
            return Err(format!("`harness_selfcheck={v}`: expected `fail` or `crash`"));
        }
    }
    Ok(())
}

/// Turns on the bug-replay switch that `bug=` names, if any, and says so on
/// one line. Boot CPU, after [`validate`], before the other CPUs start
/// (`mm::bugs`: the switch word is then read with relaxed loads).
pub fn enable_bug_switch(args: &Args<'_>) {
    let Some(name) = args.get("bug") else { return };
    let bug = Bug::from_name(name).expect("enable_bug_switch: `bug=` not validated");
    mm::bugs::enable(bug);
    println!("kernel: bug replay ON: `bug={}` puts back {}", bug.name(), bug.mistake());
}

/// The hold `rawdisk_hold=<v>` names.
fn rawdisk_hold(v: &str) -> Option<Hold> {
    match v {
        "pin" => Some(Hold::Pin),
        "get" => Some(Hold::Get),
        _ => None,
    }
}

/// Sets the raw disks' hold from `rawdisk_hold=` ([`crate::fs::dev`]) and
/// says so when it is not the default. Boot CPU, after [`validate`],
/// before any process runs.
pub fn apply_rawdisk_hold(args: &Args<'_>) {
    let Some(v) = args.get("rawdisk_hold") else { return };
    let hold = rawdisk_hold(v).expect("apply_rawdisk_hold: `rawdisk_hold=` not validated");
    crate::fs::dev::set_raw_hold(hold);
    if hold == Hold::Get {
        println!("kernel: raw disks take plain references (FOLL_GET), not pins: `rawdisk_hold=get`");
    }
}

/// Sets whether swap areas keep clean copies from `swap_keep_clean=`
/// ([`crate::vm::swap::set_keep_clean`]) and says so when it is not the
/// default. Boot CPU, after [`validate`], before any swapon.
pub fn apply_swap_keep_clean(args: &Args<'_>) {
    let Some(v) = args.get("swap_keep_clean") else { return };
    let on = on_off(v).expect("apply_swap_keep_clean: `swap_keep_clean=` not validated");
    crate::vm::swap::set_keep_clean(on);
    if !on {
        println!("kernel: swap-in frees the slots of every page it can: `swap_keep_clean=off`");
    }
}

/// `on` or `off`.
fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Prints `kernel: args: ...` (the runner looks for this line) and a warning
/// for every key the kernel does not know.
pub fn echo(args: &Args<'_>) {
    if args.is_empty() {
        println!("kernel: args: (none)");
    } else {
        let mut line = String::new();
        for a in args.iter() {
            if !line.is_empty() {
                line.push(' ');
            }
            if a.value.is_empty() {
                line.push_str(a.key);
            } else {
                line.push_str(&format!("{}={}", a.key, a.value));
            }
        }
        println!("kernel: args: {line}");
    }
    for a in args.iter() {
        if !KNOWN_ARGS.iter().any(|(k, _)| *k == a.key) {
            println!("kernel: warning: unknown argument `{}` is ignored", a.key);
        }
    }
}
