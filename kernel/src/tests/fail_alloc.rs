//! The allocation-failure sweep (`mm::fail_alloc`): each memory operation
//! is run again and again with the n-th frame allocation of its task made to
//! fail, for n over the allocations it makes, and every run must end with
//! the checker clean, nothing leaked (frame, swap slot, heap byte), the
//! address space still working, and at most that task ended.
//!
//! A case (the table [`CASES`]) sets a world up with the injector off, runs
//! its operation in a task of its own that arms the injector for itself
//! alone (scope: its task id, so kswapd and every other task allocate
//! normally), and accepts any of three ends: the operation succeeded (the
//! failure was absorbed: a retry after reclaim, a fallback to 4 KiB
//! pages), it returned an error, or the kernel ended the task. Then, with
//! the injector off, the world is checked and used once more, torn down,
//! and the counts of free frames, free slots and used heap must be what
//! they were before the set-up.
//!
//! A dry run first counts the allocations the operation makes; the sweep
//! then fails each of them, or [`MAX_RUNS`] spread evenly over them when
//! there are more. With the kernel argument `fail_alloc=<spec>`, each case
//! runs [`MAX_RUNS`] times with that spec instead (seeded from `seed=`
//! plus the run's number), for probabilities.

use crate::demo::{check_pattern, write_pattern};
use crate::memory;
use crate::task::sched;
use crate::tests::kit::Usage;
use crate::tests::{Test, TestEnv};
use crate::vm::space::{release_user_pages, AddressSpace, Advice};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use mm::fail_alloc::Spec;
use mm::gup::Hold;
use mm::pgtable::SwapType;
use mm::vma::VmaProt;
use mm::VirtAddr;

pub(crate) const TESTS: &[Test] = register!["fail_alloc": sweep_over_every_operation];

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const RO: VmaProt = VmaProt { read: true, write: false, exec: false };
/// 4 KiB pages in a world's small area.
const PAGES: u64 = 24;
const HUGE: u64 = 2 << 20;
/// Runs per case at most.
const MAX_RUNS: u64 = 12;
/// An operation's error that starts with this is a wrong result, which
/// fails the sweep; any other error is the soft failure allowed.
const WRONG: &str = "wrong: ";

/// What a case works on.
struct World {
    space: Arc<AddressSpace>,
    /// A fork child, for the cases that need pages shared.
    child: Option<Arc<AddressSpace>>,
    /// `PAGES` pages, THP off.
    base: u64,
    /// One 2 MiB block, THP on.
    huge: u64,
    /// The scratch swap area the world's pages went to (swapoff's case).
    area: Option<SwapType>,
    /// The pattern the pages hold after the set-up (0: none).
    tag: u64,
}

/// Where a case's operation runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// In a task of the world's space (the operation faults).
    InSpace,
    /// In a task of the child's space.
    InChild,
    /// In a plain kernel task (the operation calls the space's methods).
    Kernel,
}

/// One operation to sweep.
struct Case {
    name: &'static str,
    /// Pages filled and how: (THP block filled, forked, paged out, to a
    /// scratch area).
    setup: Setup,
    runs: Runs,
    op: fn(&World) -> Result<(), String>,
}

#[derive(Clone, Copy)]
struct Setup {
    fill: bool,
    fork: bool,
    pageout: bool,
    scratch: bool,
}

const EMPTY: Setup = Setup { fill: false, fork: false, pageout: false, scratch: false };
const FILLED: Setup = Setup { fill: true, ..EMPTY };

/// The operations swept.
const CASES: &[Case] = &[
    Case { name: "first-touch faults", setup: EMPTY, runs: Runs::InSpace, op: |w| touch(w, 7) },
    Case { name: "THP fault", setup: EMPTY, runs: Runs::InSpace, op: |w| touch_huge(w, 7) },
    Case { name: "fork", setup: FILLED, runs: Runs::Kernel, op: |w| w.space.fork().map(drop) },
    Case {
        name: "fork of pages in swap",
        setup: Setup { pageout: true, ..FILLED },
        runs: Runs::Kernel,
        op: |w| w.space.fork().map(drop),
    },
    Case {
        name: "COW",
        setup: Setup { fork: true, ..FILLED },
        runs: Runs::InChild,
        op: |w| touch_child(w, 9),
    },
    Case {
        name: "PMD split by mprotect",
        setup: FILLED,
        runs: Runs::Kernel,
        op: |w| {
            w.space
                .mprotect(VirtAddr::new(w.huge + 8 * 4096), 4096, RO)
                .map_err(|e| format!("mprotect: {e:?}"))
        },
    },
    Case {
        name: "PMD split by munmap",
        setup: FILLED,
        runs: Runs::Kernel,
        op: |w| w.space.munmap(VirtAddr::new(w.huge + 8 * 4096), 4096).map_err(|e| format!("munmap: {e:?}")),
    },
    Case {
        name: "PMD split by MADV_NOHUGEPAGE",
        setup: FILLED,
        runs: Runs::Kernel,
        op: |w| {
            w.space
                .madvise(VirtAddr::new(w.huge + 8 * 4096), HUGE - 8 * 4096, Advice::NoHugePage)
                .map_err(|e| format!("madvise: {e:?}"))?;
            // Done: the 2 MiB page no longer straddles the new areas.
            match crate::tests::vm::leaf_at(&w.space, w.huge)? {
                Some((mm::pgtable::Level::Pmd, _)) => {
                    Err(format!("{WRONG}madvise succeeded and left a PMD across two areas"))
                }
                _ => Ok(()),
            }
        },
    },
    Case {
        name: "GUP write pin of shared pages",
        setup: Setup { fork: true, ..FILLED },
        runs: Runs::Kernel,
        op: |w| {
            let pages = w.space.get_user_pages(VirtAddr::new(w.base), PAGES as usize, true, Hold::Pin)?;
            release_user_pages(&pages, Hold::Pin);
            Ok(())
        },
    },
    Case { name: "swap-out", setup: FILLED, runs: Runs::Kernel, op: pageout },
    Case { name: "swap-in", setup: Setup { pageout: true, ..FILLED }, runs: Runs::InSpace, op: read_back },
    Case {
        name: "swapoff",
        setup: Setup { pageout: true, scratch: true, ..FILLED },
        runs: Runs::Kernel,
        op: |w| {
            crate::vm::swap::swapoff(w.area.ok_or("no scratch area")?).map_err(|e| format!("swapoff: {e}"))
        },
    },
];

fn touch(w: &World, tag: u64) -> Result<(), String> {
    write_in_task(w.base, 0..PAGES, tag);
    Ok(())
}

fn touch_huge(w: &World, tag: u64) -> Result<(), String> {
    write_in_task(w.huge, 0..HUGE / 4096, tag);
    Ok(())
}

fn touch_child(w: &World, tag: u64) -> Result<(), String> {
    write_in_task(w.base, 0..PAGES, tag);
    write_in_task(w.huge, 0..HUGE / 4096, tag);
    Ok(())
}

/// Writes the pattern `tag` from the running task (in the space).
fn write_in_task(base: u64, pages: core::ops::Range<u64>, tag: u64) {
    for p in pages {
        for w in (0..crate::demo::WORDS).step_by(64) {
            crate::vm::uaccess::write_u64(base + p * 4096 + w * 8, crate::demo::word(p, w, tag));
        }
    }
}

/// Reads the world's pattern back from the running task (in the space).
fn read_back(w: &World) -> Result<(), String> {
    for (base, pages) in [(w.base, PAGES), (w.huge, HUGE / 4096)] {
        for p in 0..pages {
            for word in (0..crate::demo::WORDS).step_by(64) {
                let got = crate::vm::uaccess::read_u64(base + p * 4096 + word * 8);
                if got != crate::demo::word(p, word, w.tag) {
                    return Err(format!("page {p} of {base:#x}, word {word}: {got:#x}"));
                }
            }
        }
    }
    Ok(())
}

fn pageout(w: &World) -> Result<(), String> {
    for (base, len) in [(w.base, PAGES * 4096), (w.huge, HUGE)] {
        w.space.madvise(VirtAddr::new(base), len, Advice::PageOut).map_err(|e| format!("madvise: {e:?}"))?;
    }
    Ok(())
}

/// Builds a world for `setup` with the injector off.
fn build(setup: Setup) -> Result<World, String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(PAGES * 4096, 4096, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(base), PAGES * 4096, Advice::NoHugePage).map_err(|e| format!("{e:?}"))?;
    let huge = space.mmap(HUGE, HUGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.madvise(VirtAddr::new(huge), HUGE, Advice::HugePage).map_err(|e| format!("{e:?}"))?;
    let mut world = World { space, child: None, base, huge, area: None, tag: 0 };
    if setup.scratch {
        world.area = Some(crate::tests::swap::scratch_swapon(b"fail-alloc", None, false)?);
    }
    if setup.fill {
        world.tag = 3;
        write_pattern(&world.space, base, 0..PAGES, 3)?;
        write_pattern(&world.space, huge, 0..HUGE / 4096, 3)?;
    }
    if setup.fork {
        world.child = Some(world.space.fork()?);
    }
    if setup.pageout {
        pageout(&world)?;
    }
    Ok(world)
}

/// How a run ended (the kernel prints why a task was ended; an error's
/// message is dropped before the leak check counts the heap).
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Done,
    Error,
    Killed,
}

/// Runs `case` once with `spec` armed for its task; returns how it ended
/// and (allocations in scope, failures injected).
fn run_once(
    case: &'static Case,
    world: &Arc<World>,
    spec: Spec,
    seed: u64,
) -> Result<(End, u64, u64), String> {
    let w = world.clone();
    let body = move || {
        memory::fail_alloc().arm(spec, seed, Some(sched::current_id()));
        let r = (case.op)(&w);
        memory::fail_alloc().disarm();
        r
    };
    let joined = match case.runs {
        Runs::InSpace => world.space.spawn(None, "fail-alloc", body)?.join(),
        Runs::InChild => world.child.as_ref().ok_or("no child")?.spawn(None, "fail-alloc", body)?.join(),
        Runs::Kernel => sched::spawn("fail-alloc", body).map_err(|e| format!("spawn: {e:?}"))?.join(),
    };
    memory::fail_alloc().disarm();
    let f = memory::fail_alloc();
    let end = match joined {
        Ok(Ok(())) => End::Done,
        Ok(Err(e)) if e.starts_with(WRONG) => return Err(e),
        Ok(Err(_)) => End::Error,
        Err(_) => End::Killed,
    };
    Ok((end, f.nr_calls(), f.nr_failed()))
}

/// After a run, injector off: the checker passes over the family, the
/// small area holds the set-up's pattern (no operation changes it in the
/// space: COW's writes are the child's), and the spaces take new writes
/// and read them back.
fn verify(world: &World) -> Result<(), String> {
    world.space.check().map_err(|e| format!("checker: {e}"))?;
    if let Some(child) = &world.child {
        child.check().map_err(|e| format!("checker (child): {e}"))?;
    }
    if world.tag != 0 {
        check_pattern(&world.space, world.base, 0..PAGES, world.tag)?.map_err(|e| format!("data: {e}"))?;
    }
    if let Some(child) = &world.child {
        // (Above: the child's writes never reach the parent.)
        write_pattern(child, world.base, 0..PAGES, 11)?;
        check_pattern(child, world.base, 0..PAGES, 11)?.map_err(|e| format!("child after rewrite: {e}"))?;
    }
    write_pattern(&world.space, world.base, 0..PAGES, 12)?;
    check_pattern(&world.space, world.base, 0..PAGES, 12)?.map_err(|e| format!("after rewrite: {e}"))?;
    world.space.check().map_err(|e| format!("checker after rewrite: {e}"))?;
    Ok(())
}

/// The kernel's usage with the heap's emptied growth given back.
fn usage() -> Usage {
    memory::heap::trim();
    Usage::now()
}

/// One run: set up, run with `spec`, verify, tear down, count.
fn one_run(case: &'static Case, spec: Spec, seed: u64) -> Result<(End, u64, u64), String> {
    let before = usage();
    let world = Arc::new(build(case.setup)?);
    let kills_before = sched::nr_killed();
    let ran = run_once(case, &world, spec, seed).and_then(|r| {
        // Only the task that hit the failure may have been ended.
        let ended = sched::nr_killed() - kills_before;
        match ended == u64::from(r.0 == End::Killed) {
            true => Ok(r),
            false => Err(format!("{ended} tasks ended during the run")),
        }
    });
    let checked = ran.as_ref().map_err(Clone::clone).and_then(|_| verify(&world));
    let area = world.area;
    drop(world);
    if let Some(ty) = area {
        crate::vm::swap::prefer(None);
        // Off already if swapoff succeeded under the injection.
        if crate::vm::swap::area(ty).is_some() {
            crate::vm::swap::swapoff(ty).map_err(|e| format!("swapoff after the run: {e}"))?;
        }
    }
    checked?;
    if let Some(leaks) = before.settled_since(50).leaks_since(&before) {
        return Err(leaks);
    }
    ran
}

fn sweep_over_every_operation(env: &TestEnv<'_>) -> Result<(), String> {
    if crate::vm::swap::alloc_area().is_none() {
        return Err(String::from("no swap area: attach a swap disk (xtask does unless --swap 0)"));
    }
    let seed = env.args.get_u64("seed").ok().flatten().unwrap_or(0);
    let given = match env.args.get("fail_alloc") {
        Some(v) => Some(Spec::parse(v).map_err(|e| format!("fail_alloc={v}: {e}"))?),
        None => None,
    };
    for case in CASES {
        let (mut done, mut errors, mut killed, mut injected) = (0, 0, 0, 0);
        let mut record = |end: End, failed: u64| {
            injected += failed;
            match end {
                End::Done => done += 1,
                End::Error => errors += 1,
                End::Killed => killed += 1,
            }
        };
        let fail = |n: &str, e: String| format!("{}: {n}: {e}", case.name);
        let what;
        match given {
            Some(spec) => {
                what = format!("{MAX_RUNS} runs, {spec}");
                for i in 0..MAX_RUNS {
                    let (end, _, failed) = one_run(case, spec, seed.wrapping_add(i))
                        .map_err(|e| fail(&format!("{spec}, seed {}", seed.wrapping_add(i)), e))?;
                    record(end, failed);
                }
            }
            None => {
                // The dry run: nothing fails, the allocations are counted.
                let (end, calls, _) =
                    one_run(case, Spec::Nth(u64::MAX), seed).map_err(|e| fail("dry run", e))?;
                if end != End::Done {
                    return Err(fail("dry run", String::from("failed with nothing injected")));
                }
                if calls == 0 {
                    return Err(fail(
                        "dry run",
                        String::from("made no frame allocation: the sweep would test nothing"),
                    ));
                }
                what = format!("{calls} allocations");
                let runs = calls.min(MAX_RUNS);
                for r in 0..runs {
                    // 1 and `calls` always, the rest spread between.
                    let n = if runs == 1 { 1 } else { 1 + r * (calls - 1) / (runs - 1) };
                    let (end, _, failed) = one_run(case, Spec::Nth(n), seed)
                        .map_err(|e| fail(&format!("allocation {n} failed"), e))?;
                    if failed != 1 {
                        return Err(fail(
                            &format!("allocation {n}"),
                            format!("{failed} failures injected, not 1"),
                        ));
                    }
                    record(end, failed);
                }
            }
        }
        crate::println!(
            "fail_alloc: {}: {what}; {injected} failed on purpose: {done} absorbed, {errors} errors, \
             {killed} tasks ended",
            case.name
        );
    }
    Ok(())
}
