//! In-guest benchmarks, run with `bench=all` (or `bench=<prefix>,...`).
//!
//! Each prints `BENCH name=<name> value=<number> unit=<unit>` lines (the
//! runner collects them); the workloads are those of `BENCHMARKS.md` that
//! exist so far. Timing uses the arch clock ([`crate::arch::time`]), named
//! once at the start. A benchmark that finds wrong data fails the run.

use crate::arch;
use crate::memory;
use crate::println;
use crate::testing::selected;

/// One benchmark: a name prefix for selection and the function.
struct Bench {
    name: &'static str,
    run: fn() -> Result<(), alloc::string::String>,
}

const BENCHES: &[Bench] = &[
    Bench { name: "frame_alloc_free", run: frame_alloc_free },
    Bench { name: "tlb_shootdown", run: tlb_shootdown },
];

fn tlb_shootdown() -> Result<(), alloc::string::String> {
    let per_second = crate::tlb::bench_shootdown()?;
    report("tlb_shootdown", per_second, "shootdowns/s");
    report("tlb_shootdown_cpus", crate::sched::nr_cpus_online() as f64, "cpus");
    Ok(())
}

fn report(name: &str, value: f64, unit: &str) {
    println!("BENCH name={name} value={value:.1} unit={unit}");
}

/// Allocate-and-free pairs per second at `order`, over `pairs` rounds.
fn pairs_per_second(order: u8, pairs: u64) -> Result<f64, alloc::string::String> {
    let before = memory::nr_free_frames();
    let start = arch::time::now_ns();
    for _ in 0..pairs {
        let pa = memory::alloc_frames(order).map_err(|e| alloc::format!("order {order}: {e:?}"))?;
        memory::free_frames(pa, order);
    }
    let elapsed = arch::time::now_ns().saturating_sub(start).max(1);
    if memory::nr_free_frames() != before {
        return Err(alloc::format!(
            "order {order}: free frames went from {before} to {}",
            memory::nr_free_frames()
        ));
    }
    Ok(pairs as f64 * 1e9 / elapsed as f64)
}

fn frame_alloc_free() -> Result<(), alloc::string::String> {
    report("frame_alloc_free_o0", pairs_per_second(0, 200_000)?, "pairs/s");
    report("frame_alloc_free_o9", pairs_per_second(9, 20_000)?, "pairs/s");
    Ok(())
}

/// Runs the selected benchmarks; false when one failed or none matched.
pub fn run(filter: &str) -> bool {
    let (clock, hz) = arch::time::describe();
    println!("bench: clock {clock} at {} kHz", hz / 1000);
    let mut ran = 0;
    for bench in BENCHES.iter().filter(|b| selected(filter, b.name)) {
        ran += 1;
        if let Err(why) = (bench.run)() {
            println!("bench: {} FAILED: {why}", bench.name);
            return false;
        }
    }
    if ran == 0 {
        println!("bench: no benchmark name starts with `{filter}`");
    }
    ran > 0
}
