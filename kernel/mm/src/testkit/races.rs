//! The shuttle set-up of the race tests (`kernel/mm/tests/races_*.rs`,
//! feature `shuttle`): one configuration, and the two ways they explore an
//! execution: both schedulers from a fixed seed, each failure reported
//! ([`run`]); or one scheduler, a failure returned as its message so that
//! a test can require one ([`explore`]); and [`SpaceMigrator`], the
//! kernel's side of `mm::migrate` over one [`SharedSpace`], for the races
//! against a migration.
//!
//! Shuttle models every ordering as sequentially consistent
//! (`crate::sync` says so); its warnings about that are silenced.

extern crate std;

use super::migration::copy_frames;
use super::world::SharedSpace;
use crate::folio::Folio;
use crate::lru::LruLists;
use crate::migrate::MigrateHost;
use crate::page::Memmap;
use crate::pgtable::sim::{HardwareWalker, SimMemory, SoftTlb};
use crate::pgtable::{PageTable, SwapType};
use crate::swap::area::SwapArea;
use crate::{Pfn, PhysAddr};
use alloc::string::{String, ToString};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::{Config, FailurePersistence, Runner};
use std::boxed::Box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// PCT's depth in every race test: the bugs sought need at most two
/// preemptions at the right points.
pub const PCT_DEPTH: usize = 3;

/// The configuration: a failing execution prints its schedule to replay
/// (`shuttle::replay`) when `persist` says so.
pub fn config(persist: FailurePersistence) -> Config {
    let mut config = Config::new();
    config.failure_persistence = persist;
    config.silence_warnings = true;
    config
}

/// A scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explorer {
    Random,
    /// Probabilistic concurrency testing at [`PCT_DEPTH`].
    Pct,
}

/// Runs `iterations` executions of `f` under `explorer` from `seed`,
/// printing the time taken. Returns the panic message of the first failing
/// execution, if any (its schedule is printed only with
/// [`FailurePersistence::Print`]).
pub fn explore(
    explorer: Explorer,
    seed: u64,
    iterations: usize,
    persist: FailurePersistence,
    f: fn(),
) -> Result<(), String> {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| match explorer {
        Explorer::Random => {
            Runner::new(RandomScheduler::new_from_seed(seed, iterations), config(persist)).run(f)
        }
        Explorer::Pct => {
            Runner::new(PctScheduler::new_from_seed(seed, PCT_DEPTH, iterations), config(persist)).run(f)
        }
    }));
    std::eprintln!("shuttle: {explorer:?}: {:.2} s", start.elapsed().as_secs_f64());
    result.map(drop).map_err(|payload| panic_message(&payload))
}

/// Runs `iterations` executions of `f` under the random scheduler, then as
/// many under PCT, from `seed`; a failing execution fails the test with
/// its schedule printed.
pub fn run(name: &str, seed: u64, iterations: usize, f: fn()) {
    let start = Instant::now();
    Runner::new(RandomScheduler::new_from_seed(seed, iterations), config(FailurePersistence::Print)).run(f);
    Runner::new(PctScheduler::new_from_seed(seed, PCT_DEPTH, iterations), config(FailurePersistence::Print))
        .run(f);
    std::eprintln!("shuttle: {name}: {:.2} s", start.elapsed().as_secs_f64());
}

/// The message of a panic's payload.
pub fn panic_message(payload: &Box<dyn core::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// The kernel's side of migration over one [`SharedSpace`] (the race
/// tests' `Host`): the space's lock stands for the family's locks, there
/// are no LRU lists and no swap, and the copy, which the kernel makes
/// without the space's lock, begins with a scheduling point, so that the
/// other threads meet the migration entries meanwhile.
pub struct SpaceMigrator<F: HardwareWalker>(pub &'static SharedSpace<F>);

impl<F: HardwareWalker> MigrateHost for SpaceMigrator<F> {
    type Format = F;
    type Mem = SimMemory;
    type Tlb = SoftTlb<F>;

    fn memmap(&self) -> &'static Memmap {
        self.0.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        None
    }
    fn with_family_locked<R>(
        &self,
        _: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<F>], &SimMemory, &SoftTlb<F>) -> R,
    ) -> R {
        self.0.locked(|g| f(&[&g.table], &g.mem, &g.tlb))
    }
    fn with_swap_area<R>(&self, _: SwapType, _: impl FnOnce(&SwapArea) -> R) -> Option<R> {
        None
    }
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize) {
        shuttle::thread::yield_now();
        copy_frames(&self.0.frames, dst, src, nr);
    }
    fn free(&self, folio: Folio<'static>) {
        self.0.frames.free(folio);
    }
    fn migration_done(&self, _: Pfn) {}
}
