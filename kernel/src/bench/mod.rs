//! In-guest benchmarks, run with `bench=all` (or `bench=<prefix>,...`).
//!
//! Each prints `BENCH name=<name> value=<number> unit=<unit>` lines (the
//! runner collects them); the workloads are those of `BENCHMARKS.md` that
//! exist so far. Timing uses the arch clock (`Arch::now_ns`), named
//! once at the start. A benchmark that finds wrong data fails the run.
//!
//! The workloads of profiles `main` and `swap` are also a user program,
//! `user/mmbench.c` (`/bin/mmbench`, which `cargo xtask bench` runs first,
//! and which runs on Linux too); the figures these kernel-task versions
//! print carry the suffix `_ktask` (`anon4k_fault_ktask`), so that the two
//! sets stay apart and show what the user/kernel boundary costs. The
//! lower-level benchmarks and profile `migrate` exist only here and keep
//! their names.
//!
//! ## The address-space workloads
//!
//! `anon4k_fault`, `thp_fault`, `cow_fork`, `anon4k_mt_t*` and
//! `memset_gibps` (profile `main`) and `swap_out`/`swap_in`/`pressure`
//! (profile `swap`, `bench=swap-profile`) and `compact` (profile
//! `migrate`, `bench=migrate-profile`; [`compact`]) run in address spaces of their own ([`AddressSpace`]):
//! a task in the space makes plain loads and stores, and every first touch
//! is a real MMU fault handled by `mm::fault::handle_fault`. Each one:
//!
//! - times only its loop of accesses, inside the task (the fork of
//!   `cow_fork` and the munmap of `anon4k_fault` from the bench task);
//! - takes its fault counts from the space's counters, not from how many
//!   pages it touched;
//! - reads every byte it wrote back afterwards (outside the timing), and
//!   fails on a wrong one;
//! - drops its spaces and fails unless the allocator's free frame count is
//!   back where it was before ([`Ledger`]).
//!
//! Profile `migrate` (`bench=migrate-profile`, [`MIGRATE_BENCHES`]) runs
//! the migration workloads of [`migrate`] and the compaction workload of
//! [`compact`] the same way.

mod compact;
mod migrate;

use crate::arch::prelude::*;
use crate::cmdline::selected;
use crate::memory;
use crate::memory::paging::KernelTables;
use crate::println;
use crate::task::sched;
use crate::tests::kit::{leaf, probe_read, Frames, TestSpace, RW_USER, TEST_VA};
use crate::vm::space::{AddressSpace, Advice};
use crate::vm::tlb::Shootdown;
use crate::vm::uaccess::{self, read_u8 as load, write_u8 as store};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::{AtomicUsize, Ordering};
use mm::pgtable::PageSize;
use mm::vma::VmaProt;
use mm::VirtAddr;

/// One benchmark: a name prefix for selection and the function.
struct Bench {
    name: &'static str,
    run: fn() -> Result<(), String>,
}

/// The benchmarks of profile `swap` (BENCHMARKS.md: `-m 256` and a swap
/// disk), run with `bench=swap-profile` (or by name); `bench=all` runs
/// those of profile `main`.
const SWAP_BENCHES: &[Bench] =
    &[Bench { name: "swap_out", run: swap_out_in }, Bench { name: "pressure", run: pressure }];

/// The benchmarks of profile `migrate` (BENCHMARKS.md: `-m 2048 -smp 4`
/// and `--numa 2`), run with `bench=migrate-profile` (or by name).
const MIGRATE_BENCHES: &[Bench] = &[
    Bench { name: "migrate_4k", run: migrate::migrate_4k },
    Bench { name: "migrate_thp", run: migrate::migrate_thp },
    Bench { name: "compact", run: compact::compact },
];

const BENCHES: &[Bench] = &[
    Bench { name: "frame_alloc_free", run: frame_alloc_free },
    Bench { name: "tlb_shootdown", run: tlb_shootdown },
    Bench { name: "anon4k_fault", run: anon4k_fault },
    Bench { name: "thp_fault", run: thp_fault },
    Bench { name: "cow_fork", run: cow_fork },
    Bench { name: "anon4k_mt_t1", run: || anon4k_mt(1) },
    Bench { name: "anon4k_mt_t2", run: || anon4k_mt(2) },
    Bench { name: "anon4k_mt_t4", run: || anon4k_mt(4) },
    Bench { name: "memset_gibps", run: memset_gibps },
];

fn tlb_shootdown() -> Result<(), String> {
    let per_second = bench_shootdown()?;
    report("tlb_shootdown", per_second, "shootdowns/s");
    report("tlb_shootdown_cpus", sched::nr_cpus_online() as f64, "cpus");
    Ok(())
}

fn report(name: &str, value: f64, unit: &str) {
    println!("BENCH name={name} value={value:.1} unit={unit}");
}

/// What the figures of the workloads the user program `user/mmbench.c`
/// also runs (profiles `main` and `swap`) end with here, so that the two
/// sets can be told apart: the difference is the cost of the user/kernel
/// boundary (a kernel task takes no trap into the kernel on a fault).
const KTASK_SUFFIX: &str = "_ktask";

/// [`report`] for a figure of such a workload: its BENCHMARKS.md name
/// with [`KTASK_SUFFIX`].
fn report_ktask(name: &str, value: f64, unit: &str) {
    report(&format!("{name}{KTASK_SUFFIX}"), value, unit);
}

/// Allocate-and-free pairs per second at `order`, over `pairs` rounds.
fn pairs_per_second(order: u8, pairs: u64) -> Result<f64, String> {
    let before = memory::nr_free_frames();
    let start = Arch::now_ns();
    for _ in 0..pairs {
        let pa = memory::alloc_frames(order).map_err(|e| format!("order {order}: {e:?}"))?;
        memory::free_frames(pa, order);
    }
    let elapsed = Arch::now_ns().saturating_sub(start).max(1);
    if memory::nr_free_frames() != before {
        return Err(format!("order {order}: free frames went from {before} to {}", memory::nr_free_frames()));
    }
    Ok(pairs as f64 * 1e9 / elapsed as f64)
}

fn frame_alloc_free() -> Result<(), String> {
    report("frame_alloc_free_o0", pairs_per_second(0, 200_000)?, "pairs/s");
    report("frame_alloc_free_o9", pairs_per_second(9, 20_000)?, "pairs/s");
    Ok(())
}

// ------------------------------------------------- address-space workloads

const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
const PAGE: u64 = 4096;
const HUGE: u64 = 2 * MIB;
const RW: VmaProt = VmaProt { read: true, write: true, exec: false };

/// The byte a workload writes into page `p` (never 0, so an untouched page
/// cannot pass for a written one), varied by `salt`.
fn pattern(p: u64, salt: u64) -> u8 {
    (1 + (p.wrapping_mul(7) + salt) % 255) as u8
}

/// When a timed stretch started and ended (clock ns).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    /// Nanoseconds, at least 1.
    fn ns(&self) -> u64 {
        self.end.saturating_sub(self.start).max(1)
    }
}

/// Runs `f` and says when it started and ended.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Span) {
    let start = Arch::now_ns();
    let value = f();
    (value, Span { start, end: Arch::now_ns() })
}

/// Events per second over `ns`.
fn per_second(events: u64, ns: u64) -> f64 {
    events as f64 * 1e9 / ns as f64
}

/// Microseconds per event over `ns`.
fn micros_each(events: u64, ns: u64) -> f64 {
    ns as f64 / 1e3 / events.max(1) as f64
}

/// GiB per second for `bytes` over `ns`.
fn gib_per_second(bytes: u64, ns: u64) -> f64 {
    bytes as f64 / GIB * 1e9 / ns as f64
}

/// The free frame count before a workload made its spaces: [`Ledger::settle`]
/// fails unless the count is back there once they are gone.
struct Ledger {
    free_before: u64,
}

impl Ledger {
    fn open() -> Ledger {
        Ledger { free_before: memory::nr_free_frames() }
    }

    /// Drops `spaces` (the workload's last references) and checks that every
    /// frame came back. A task that ran in a space holds it until the CPU
    /// it ran on has switched away from it (`sched`'s `finish_switch`),
    /// which may be a moment after `join`: wait for that first, so that
    /// each space is torn down here.
    fn settle(self, what: &str, spaces: Vec<Arc<AddressSpace>>) -> Result<(), String> {
        const PATIENCE_MS: u64 = 2000;
        for space in spaces {
            let mut waited = 0;
            while Arc::strong_count(&space) > 1 {
                if waited == PATIENCE_MS {
                    return Err(format!("{what}: a finished task still holds its address space"));
                }
                sched::sleep_ms(1);
                waited += 1;
            }
            drop(space);
        }
        let after = memory::nr_free_frames();
        if after != self.free_before {
            return Err(format!(
                "{what}: free frames went from {} to {after} after the address spaces were dropped",
                self.free_before
            ));
        }
        Ok(())
    }
}

/// Whether a mapping may use 2 MiB pages (`madvise` over all of it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Thp {
    On,
    Off,
}

/// Maps `len` bytes read-write in `space`, aligned to `align`, with THP
/// advice for the whole range; returns the start.
fn map(space: &AddressSpace, len: u64, align: u64, thp: Thp) -> Result<u64, String> {
    let base = space.mmap(len, align, RW).map_err(|e| format!("mmap of {len:#x} bytes: {e:?}"))?;
    let advice = match thp {
        Thp::On => Advice::HugePage,
        Thp::Off => Advice::NoHugePage,
    };
    space.madvise(base, len, advice).map_err(|e| format!("madvise {advice:?}: {e:?}"))?;
    Ok(base.as_u64())
}

/// Runs `f` in a task of `space` (on `cpu`, or any) and waits for it; a task
/// the kernel ended is an error.
fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    cpu: Option<usize>,
    name: &'static str,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(cpu, name, f)?.join()?)
}

/// What a page must hold after a workload: `(offset, want)`, the byte at
/// `offset` in page `p` must be `want(p)`.
type Expect = (u64, fn(u64) -> u8);

/// Checks, in a task of `space`, each of the `pages` pages from `base`
/// (`stride` apart) against every [`Expect`] of `expect`.
fn verify<const N: usize>(
    space: &Arc<AddressSpace>,
    what: &str,
    base: u64,
    pages: u64,
    stride: u64,
    expect: [Expect; N],
) -> Result<(), String> {
    run_in(space, None, "bench verify", move || {
        for p in 0..pages {
            for (offset, want) in expect {
                let at = base + p * stride + offset;
                let (got, want) = (load(at), want(p));
                if got != want {
                    return Err(format!("page {p}: the byte at {at:#x} is {got:#x}, expected {want:#x}"));
                }
            }
        }
        Ok(())
    })?
    .map_err(|e| format!("{what}: {e}"))
}

/// A fresh space of `len` bytes mapped with `thp`, and one byte written
/// (`pattern(i, salt)`) at the start of every `stride` bytes by a task of
/// the space, timed: every write is a first touch, so a fault. Returns
/// the ledger opened before the space, the space, its base and the time.
fn first_touches(
    name: &'static str,
    len: u64,
    stride: u64,
    thp: Thp,
    salt: u64,
) -> Result<(Ledger, Arc<AddressSpace>, u64, Span), String> {
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, len, stride, thp)?;
    let ((), span) = run_in(&space, None, name, move || {
        timed(|| (0..len / stride).for_each(|i| store(base + i * stride, pattern(i, salt))))
    })?;
    Ok((ledger, space, base, span))
}

fn anon4k_fault() -> Result<(), String> {
    // 256 MiB with THP off, one byte written per 4 KiB page in order.
    const LEN: u64 = 256 * MIB;
    const PAGES: u64 = LEN / PAGE;
    let (ledger, space, base, span) = first_touches("anon4k_fault", LEN, PAGE, Thp::Off, 0)?;
    let faults = space.nr_faults();
    if faults < PAGES {
        return Err(format!("anon4k_fault: {faults} faults for {PAGES} pages"));
    }
    // The byte written, and the rest of the page still zero (its last byte).
    verify(&space, "anon4k_fault", base, PAGES, PAGE, [(0, |p| pattern(p, 0)), (PAGE - 1, |_| 0)])?;
    report_ktask("anon4k_fault", per_second(faults, span.ns()), "faults/s");
    report_ktask("anon4k_fault_lat", micros_each(faults, span.ns()), "us/fault");
    let free = memory::nr_free_frames();
    let (unmapped, span) = timed(|| space.munmap(VirtAddr::new(base), LEN));
    unmapped.map_err(|e| format!("anon4k_fault: munmap: {e:?}"))?;
    let freed = memory::nr_free_frames().saturating_sub(free);
    if freed < PAGES {
        return Err(format!("anon4k_fault: munmap of {PAGES} pages freed {freed} frames"));
    }
    report_ktask("anon4k_munmap", span.ns() as f64 / 1e6, "ms");
    ledger.settle("anon4k_fault", alloc::vec![space])
}

fn thp_fault() -> Result<(), String> {
    // 512 MiB aligned to 2 MiB with THP on, one byte written per 2 MiB.
    const LEN: u64 = 512 * MIB;
    const BLOCKS: u64 = LEN / HUGE;
    let (ledger, space, base, span) = first_touches("thp_fault", LEN, HUGE, Thp::On, 1)?;
    let (faults, huge, fallbacks) = (space.nr_faults(), space.nr_thp_faults(), space.nr_thp_fallbacks());
    if huge + fallbacks != BLOCKS {
        return Err(format!(
            "thp_fault: {huge} huge faults and {fallbacks} fallbacks for {BLOCKS} blocks ({faults} faults)"
        ));
    }
    // The byte written; the middle and the end of the block still zero.
    verify(
        &space,
        "thp_fault",
        base,
        BLOCKS,
        HUGE,
        [(0, |b| pattern(b, 1)), (HUGE / 2 + 5, |_| 0), (HUGE - 1, |_| 0)],
    )?;
    report_ktask("thp_fault", per_second(faults, span.ns()), "faults/s");
    report_ktask("thp_zero_gibps", gib_per_second(huge * HUGE, span.ns()), "GiB/s");
    report_ktask("thp_coverage", 100.0 * huge as f64 / (huge + fallbacks) as f64, "%");
    ledger.settle("thp_fault", alloc::vec![space])
}

fn cow_fork() -> Result<(), String> {
    // 128 MiB with THP off (so the copies measured are of 4 KiB pages),
    // touched by the parent; fork; the child writes one byte per page.
    const LEN: u64 = 128 * MIB;
    const PAGES: u64 = LEN / PAGE;
    let ledger = Ledger::open();
    let parent = AddressSpace::new()?;
    let base = map(&parent, LEN, PAGE, Thp::Off)?;
    run_in(&parent, None, "cow_fork parent", move || {
        (0..PAGES).for_each(|p| store(base + p * PAGE, pattern(p, 2)))
    })?;
    let (child, fork) = timed(|| parent.fork());
    let child = child?;
    let ((), span) = run_in(&child, None, "cow_fork child", move || {
        timed(|| (0..PAGES).for_each(|p| store(base + p * PAGE + 1, pattern(p, 3))))
    })?;
    let (faults, copies) = (child.nr_faults(), child.nr_cow_copies());
    // The parent maps every page still: each write must have copied.
    if copies != PAGES {
        return Err(format!("cow_fork: {copies} copies ({faults} faults) for {PAGES} shared pages"));
    }
    // The child sees the parent's byte (copied) and its own; the parent
    // keeps its byte and never sees the child's.
    verify(&child, "cow_fork child", base, PAGES, PAGE, [(0, |p| pattern(p, 2)), (1, |p| pattern(p, 3))])?;
    verify(&parent, "cow_fork parent", base, PAGES, PAGE, [(0, |p| pattern(p, 2)), (1, |_| 0)])?;
    report_ktask("cow_fork", per_second(faults, span.ns()), "faults/s");
    report_ktask("cow_fork_lat", micros_each(faults, span.ns()), "us/fault");
    report_ktask("cow_fork_syscall", fork.ns() as f64 / 1e6, "ms");
    ledger.settle("cow_fork", alloc::vec![child, parent])
}

fn anon4k_mt(nr_tasks: usize) -> Result<(), String> {
    // `anon4k_fault` split between `nr_tasks` tasks of one space, each its
    // own 2 MiB-aligned slice of one 256 MiB mapping (THP off), each on its
    // own CPU while there are enough. They start together (a barrier);
    // the time is from the first start to the last end.
    const LEN: u64 = 256 * MIB;
    const PAGES: u64 = LEN / PAGE;
    let name = format!("anon4k_mt_t{nr_tasks}");
    let slice = LEN / nr_tasks as u64;
    if !slice.is_multiple_of(HUGE) {
        return Err(format!("{name}: a slice of {slice:#x} bytes is not 2 MiB-aligned"));
    }
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, LEN, HUGE, Thp::Off)?;
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for t in 0..nr_tasks {
        let barrier = arrived.clone();
        let first = t as u64 * slice / PAGE;
        let spawned = space.spawn(Some(cpus[t % cpus.len()]), "anon4k_mt", move || {
            barrier.fetch_add(1, Ordering::AcqRel);
            while barrier.load(Ordering::Acquire) < nr_tasks {
                core::hint::spin_loop();
            }
            let pages = first..first + slice / PAGE;
            timed(|| pages.for_each(|p| store(base + p * PAGE, pattern(p, 4)))).1
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // Let the tasks already waiting go, so they can be joined.
                arrived.fetch_add(nr_tasks, Ordering::AcqRel);
                handles.into_iter().for_each(|h| drop(h.join()));
                return Err(format!("{name}: {e}"));
            }
        }
    }
    let mut spans = Vec::new();
    for h in handles {
        spans.push(h.join().map_err(|killed| format!("{name}: {killed}"))?);
    }
    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
    let span = Span { start, end };
    let faults = space.nr_faults();
    if faults < PAGES {
        return Err(format!("{name}: {faults} faults for {PAGES} pages"));
    }
    verify(&space, &name, base, PAGES, PAGE, [(0, |p| pattern(p, 4)), (PAGE - 1, |_| 0)])?;
    report_ktask(&name, per_second(faults, span.ns()), "faults/s");
    ledger.settle(&name, alloc::vec![space])
}

fn memset_gibps() -> Result<(), String> {
    // 512 MiB mapped first (THP on: 2 MiB pages, as for `thp_fault`), a
    // non-zero byte left in every 4 KiB page; then zeros written over all
    // of it, faulting nothing.
    const LEN: u64 = 512 * MIB;
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, LEN, HUGE, Thp::On)?;
    run_in(&space, None, "memset prefault", move || {
        (0..LEN / PAGE).for_each(|p| store(base + p * PAGE + p % PAGE, pattern(p, 5)))
    })?;
    let faults = space.nr_faults();
    let ((), span) = run_in(&space, None, "memset", move || timed(|| uaccess::zero(base, LEN)))?;
    let faults = space.nr_faults() - faults;
    if faults != 0 {
        return Err(format!("memset_gibps: {faults} faults while writing over mapped memory"));
    }
    let bad = run_in(&space, None, "memset verify", move || uaccess::first_non_zero(base, LEN))?;
    if let Some(offset) = bad {
        return Err(format!("memset_gibps: a non-zero word at offset {offset:#x} after the memset"));
    }
    report_ktask("memset_gibps", gib_per_second(LEN, span.ns()), "GiB/s");
    ledger.settle("memset_gibps", alloc::vec![space])
}

/// Runs the selected benchmarks; false when one failed or none matched.
pub fn run(filter: &str) -> bool {
    let (clock, hz) = Arch::describe_clock();
    println!("bench: clock {clock} at {} kHz", hz / 1000);
    let mut ran = 0;
    let chosen: Vec<&Bench> = if filter == "swap-profile" {
        SWAP_BENCHES.iter().collect()
    } else if filter == "migrate-profile" {
        MIGRATE_BENCHES.iter().collect()
    } else {
        BENCHES
            .iter()
            .filter(|b| selected(filter, b.name))
            .chain(SWAP_BENCHES.iter().filter(|b| filter != "all" && selected(filter, b.name)))
            .chain(MIGRATE_BENCHES.iter().filter(|b| filter != "all" && selected(filter, b.name)))
            .collect()
    };
    for bench in chosen {
        ran += 1;
        let (result, span) = timed(bench.run);
        if let Err(why) = result {
            println!("bench: {} FAILED: {why}", bench.name);
            return false;
        }
        println!("bench: {} took {:.1} s", bench.name, span.ns() as f64 / 1e9);
    }
    if ran == 0 {
        println!("bench: no benchmark name starts with `{filter}`");
    }
    ran > 0
}

// ------------------------------------------------------- profile `swap`

/// Word `w` of page `p` in version `v` of the swap benchmarks' pattern:
/// every word of every page and version differs, so a page read from the
/// wrong slot, a stale copy or zeros is counted as a mismatch.
fn swap_word(p: u64, w: u64, v: u64) -> u64 {
    (p << 20 | w << 8 | v).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// Writes version `v` of the pattern over page `p` at `base` (in a task),
/// with one copy of the page, as a program's memcpy would (a user access
/// per word would measure `stac`/`clac` rather than paging).
fn write_page(base: u64, p: u64, v: u64) {
    let mut words = [0u64; (PAGE / 8) as usize];
    words.iter_mut().enumerate().for_each(|(w, word)| *word = swap_word(p, w as u64, v));
    uaccess::write_words(base + p * PAGE, &words);
}

/// True when page `p` at `base` holds version `v` of the pattern (in a
/// task), read with one copy of the page.
fn page_is(base: u64, p: u64, v: u64) -> bool {
    let mut words = [0u64; (PAGE / 8) as usize];
    uaccess::read_words(base + p * PAGE, &mut words);
    words.iter().enumerate().all(|(w, &word)| word == swap_word(p, w as u64, v))
}

fn need_swap(what: &str, pages: u64) -> Result<(), String> {
    let (free, _) = crate::vm::swap::totals();
    if free < pages {
        return Err(format!(
            "{what}: needs {pages} free swap slots, has {free} (run with a swap disk: `cargo xtask bench` attaches one)"
        ));
    }
    Ok(())
}

/// `swap_out`, `swap_in` and `swap_mismatch`: 128 MiB filled with the
/// pattern, `MADV_PAGEOUT` over all of it (synchronous here: it returns
/// when every write has completed and the folios are freed), then one word
/// per page read in address order (each a swap-in: the checker confirms
/// every page was a swap entry, none left in memory), then every page
/// compared whole.
fn swap_out_in() -> Result<(), String> {
    const LEN: u64 = 128 * MIB;
    const PAGES: u64 = LEN / PAGE;
    need_swap("swap_out", PAGES)?;
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, LEN, PAGE, Thp::Off)?;
    run_in(&space, None, "swap fill", move || (0..PAGES).for_each(|p| write_page(base, p, 1)))?;
    let out0 = crate::vm::swap::PSWPOUT.load(Ordering::Relaxed);
    let (r, span) = timed(|| space.madvise(VirtAddr::new(base), LEN, Advice::PageOut));
    r.map_err(|e| format!("swap_out: madvise(PAGEOUT): {e:?}"))?;
    let written = crate::vm::swap::PSWPOUT.load(Ordering::Relaxed) - out0;
    let out_entries = space.check().map_err(|e| format!("swap_out: {e}"))?.nr_swap_entries;
    if out_entries != PAGES {
        return Err(format!("swap_out: {out_entries} of {PAGES} pages are in swap after MADV_PAGEOUT"));
    }
    report_ktask("swap_out", (written * PAGE) as f64 / MIB as f64 * 1e9 / span.ns() as f64, "MiB/s");
    report_ktask("swap_out_pages", written as f64, "pages");
    let in0 = crate::vm::swap::PSWPIN.load(Ordering::Relaxed);
    let ((), span) = run_in(&space, None, "swap_in", move || {
        timed(|| {
            (0..PAGES).for_each(|p| {
                load(base + p * PAGE);
            })
        })
    })?;
    let read = crate::vm::swap::PSWPIN.load(Ordering::Relaxed) - in0;
    report_ktask("swap_in", (read * PAGE) as f64 / MIB as f64 * 1e9 / span.ns() as f64, "MiB/s");
    report_ktask("swap_in_pages", read as f64, "pages");
    let mismatch =
        run_in(&space, None, "swap verify", move || (0..PAGES).filter(|&p| !page_is(base, p, 1)).count())?;
    report_ktask("swap_mismatch", mismatch as f64, "pages");
    if mismatch != 0 {
        return Err(format!("swap_mismatch: {mismatch} pages came back wrong"));
    }
    ledger.settle("swap_out", alloc::vec![space])
}

/// `pressure`: a working set twice the free memory, every page filled,
/// then 20,000 random page touches (xorshift, fixed seed); each verifies
/// the whole page and every second one rewrites it with a new version.
fn pressure() -> Result<(), String> {
    const TOUCHES: u64 = 20_000;
    let pages = 2 * memory::nr_free_frames();
    need_swap("pressure", pages)?;
    let ledger = Ledger::open();
    let space = AddressSpace::new()?;
    let base = map(&space, pages * PAGE, PAGE, Thp::Off)?;
    let (in0, out0) =
        (crate::vm::swap::PSWPIN.load(Ordering::Relaxed), crate::vm::swap::PSWPOUT.load(Ordering::Relaxed));
    let wake0 = crate::vm::reclaim::NR_KSWAPD_WAKEUPS.load(Ordering::Relaxed);
    let ((), fill) = run_in(&space, None, "pressure fill", move || {
        timed(|| (0..pages).for_each(|p| write_page(base, p, 0)))
    })?;
    let (mismatch, span) = run_in(&space, None, "pressure touch", move || {
        timed(|| {
            let mut versions = alloc::vec![0u8; pages as usize];
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut mismatch = 0u64;
            for t in 0..TOUCHES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let p = x % pages;
                if !page_is(base, p, versions[p as usize] as u64) {
                    mismatch += 1;
                }
                if t % 2 == 1 {
                    versions[p as usize] = versions[p as usize].wrapping_add(1);
                    write_page(base, p, versions[p as usize] as u64);
                }
            }
            mismatch
        })
    })?;
    let (pswpin, pswpout) = (
        crate::vm::swap::PSWPIN.load(Ordering::Relaxed) - in0,
        crate::vm::swap::PSWPOUT.load(Ordering::Relaxed) - out0,
    );
    report_ktask("pressure", per_second(TOUCHES, span.ns()), "touches/s");
    report_ktask("pressure_pswpin", pswpin as f64, "pages");
    report_ktask("pressure_pswpout", pswpout as f64, "pages");
    let wakeups = crate::vm::reclaim::NR_KSWAPD_WAKEUPS.load(Ordering::Relaxed) - wake0;
    report_ktask("pressure_kswapd_wakeups", wakeups as f64, "wakeups");
    report_ktask("pressure_fill", (pages * PAGE) as f64 / MIB as f64 * 1e9 / fill.ns() as f64, "MiB/s");
    report_ktask("pressure_mismatch", mismatch as f64, "pages");
    if mismatch != 0 {
        return Err(format!("pressure: {mismatch} touches found a wrong page"));
    }
    ledger.settle("pressure", alloc::vec![space])
}

/// `BENCH name=tlb_shootdown`: remaps per second of a page that readers on
/// every other CPU keep using (each remap is a break-before-make with a
/// shootdown of all of them).
pub fn bench_shootdown() -> Result<f64, String> {
    const ROUNDS: u64 = 2000;
    let va = TEST_VA + 0x6000;
    let (a, b) = (Frames::new(0)?, Frames::new(0)?);
    let space = Arc::new(TestSpace::new()?);
    space.map_leaf(va, a.pa, PageSize::Size4K, RW_USER)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for cpu in sched::online_cpus().filter(|&c| c != sched::cpu_index()) {
        let (space, stop) = (space.clone(), stop.clone());
        readers.push(
            sched::spawn_on(cpu, "bench-reader", move || {
                let _in = sched::enter_address_space(space.table.root());
                while !stop.load(Ordering::Acquire) {
                    let _ = probe_read(va);
                }
            })
            .map_err(|e| format!("spawn_on({cpu}): {e:?}"))?,
        );
    }
    let result = (|| {
        let _in = sched::enter_address_space(space.table.root());
        sched::sleep_ms(20);
        let start = Arch::now_ns();
        for i in 0..ROUNDS {
            let f = if i % 2 == 0 { &b } else { &a };
            space
                .table
                .remap(&KernelTables, &Shootdown, VirtAddr::new(va), leaf(f.pa, PageSize::Size4K, RW_USER))
                .map_err(|e| format!("{e}"))?;
        }
        let elapsed = Arch::now_ns() - start;
        Ok(ROUNDS as f64 * 1e9 / elapsed.max(1) as f64)
    })();
    stop.store(true, Ordering::Release);
    for h in readers {
        h.join()?;
    }
    if let Ok(space) = Arc::try_unwrap(space) {
        space.destroy();
    }
    result
}
