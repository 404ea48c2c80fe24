//! Allocation-failure injection: makes allocations fail on demand, so that
//! every path that allocates is run through its failure branch by tests.
//!
//! A [`FailAlloc`] is asked [`FailAlloc::should_fail`] by an allocator
//! before each allocation it may inject into (the frame allocator's
//! [`crate::frame::FrameAllocator::alloc`]: folios, page tables, the heap's
//! room taken before a large piece of work; not the heap's growth behind an
//! infallible `Box::new`, which cannot fail softly). What it answers
//! follows a [`Spec`]:
//! - [`Spec::Nth`]`(n)`: the `n`-th call after arming fails, once;
//! - [`Spec::Probability`]: each call fails with that probability, decided
//!   by a hash of the seed and the call's number, so the same seed and the
//!   same sequence of calls fail the same calls.
//!
//! A **scope** narrows it to one context: armed with a scope, only calls for
//! which the scope function (registered once by the kernel:
//! [`FailAlloc::set_scope_fn`], the running task's id there) returns that
//! scope count and fail; the rest of the system allocates normally. That
//! is what lets a test fail the allocations of one task and check that
//! only that task ended.
//!
//! The kernel argument `fail_alloc=<n>|<p>` ([`Spec::parse`]) arms it for
//! the whole workload, seeded from `seed=`.
//!
//! ## Invariants and lock
//!
//! No lock: every field is an atomic, and [`FailAlloc::arm`] stores the
//! mode last (Release), so a caller that sees a mode sees its parameters.
//! Re-arming while allocations run is allowed; a call racing it may be
//! counted against either arming. [`FailAlloc::nr_failed`] counts the
//! failures injected since the last arming, exactly.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// What to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// The `n`-th call (1-based) fails, once.
    Nth(u64),
    /// Each call fails with probability `per_million / 1e6`.
    Probability { per_million: u32 },
}

/// Why a `fail_alloc=` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecError {
    /// Neither a whole number at least 1 nor a probability `0.x`/`N%`.
    Malformed,
    /// A probability above 1 (100%).
    AboveOne,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Malformed => f.write_str(
                "expected a whole number n >= 1 (the n-th allocation fails) or a probability \
                 (0.01 or 1%: each allocation fails with it)",
            ),
            SpecError::AboveOne => f.write_str("a probability is at most 1 (100%)"),
        }
    }
}

impl Spec {
    /// `"5"`: the 5th allocation; `"0.01"` or `"1%"`: each with probability
    /// 1/100 (to a millionth).
    pub fn parse(s: &str) -> Result<Spec, SpecError> {
        if let Some(pct) = s.strip_suffix('%') {
            let pm = parse_millionths(pct, 10_000)?;
            return Spec::probability(pm);
        }
        if s.contains('.') {
            return Spec::probability(parse_millionths(s, 1_000_000)?);
        }
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Spec::Nth(n)),
            _ => Err(SpecError::Malformed),
        }
    }

    fn probability(per_million: u64) -> Result<Spec, SpecError> {
        if per_million > 1_000_000 {
            return Err(SpecError::AboveOne);
        }
        Ok(Spec::Probability { per_million: per_million as u32 })
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Nth(n) => write!(f, "allocation {n}"),
            Spec::Probability { per_million } => {
                write!(f, "each allocation with p={}", *per_million as f64 / 1e6)
            }
        }
    }
}

/// `s` (a decimal like `0.25` or `12`) times `unit`, in whole units, the
/// rest dropped.
fn parse_millionths(s: &str, unit: u64) -> Result<u64, SpecError> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(SpecError::Malformed);
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| SpecError::Malformed)? };
    let mut value = int.checked_mul(unit).ok_or(SpecError::AboveOne)?;
    let mut scale = unit;
    for b in frac.bytes() {
        scale /= 10;
        value += u64::from(b - b'0') * scale;
    }
    Ok(value)
}

const OFF: u8 = 0;
const NTH: u8 = 1;
const PROBABILITY: u8 = 2;

/// The injector (module doc).
pub struct FailAlloc {
    mode: AtomicU8,
    /// `Nth`: n; `Probability`: per million.
    param: AtomicU64,
    seed: AtomicU64,
    /// Calls in scope since the arming.
    calls: AtomicU64,
    failed: AtomicU64,
    /// 0: every caller; otherwise only callers whose scope is this.
    scope: AtomicU64,
    scope_fn: spin::Once<fn() -> u64>,
}

impl Default for FailAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// A 64-bit mix of `z` (one step of SplitMix64 from state `z`).
fn mix(z: u64) -> u64 {
    crate::rng::mix64(z.wrapping_add(crate::rng::GOLDEN))
}

impl FailAlloc {
    /// Disarmed.
    pub const fn new() -> FailAlloc {
        FailAlloc {
            mode: AtomicU8::new(OFF),
            param: AtomicU64::new(0),
            seed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            scope: AtomicU64::new(0),
            scope_fn: spin::Once::new(),
        }
    }

    /// Registers how a caller's scope is found (once; a second call is
    /// ignored). Called where the caller may be asked, so it must not
    /// allocate or take a lock an allocating caller may hold.
    pub fn set_scope_fn(&self, f: fn() -> u64) {
        self.scope_fn.call_once(|| f);
    }

    /// Arms `spec` with `seed`, for callers of `scope` only (`None`: every
    /// caller); the counts start again.
    pub fn arm(&self, spec: Spec, seed: u64, scope: Option<u64>) {
        self.mode.store(OFF, Ordering::SeqCst);
        let (mode, param) = match spec {
            Spec::Nth(n) => (NTH, n),
            Spec::Probability { per_million } => (PROBABILITY, u64::from(per_million)),
        };
        self.param.store(param, Ordering::Relaxed);
        self.seed.store(seed, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.scope.store(scope.unwrap_or(0), Ordering::Relaxed);
        self.mode.store(mode, Ordering::Release);
    }

    /// Stops injecting; the counts stay readable.
    pub fn disarm(&self) {
        self.mode.store(OFF, Ordering::SeqCst);
    }

    /// Whether the allocation about to be made is to fail (module doc).
    pub fn should_fail(&self) -> bool {
        let mode = self.mode.load(Ordering::Acquire);
        if mode == OFF {
            return false;
        }
        let scope = self.scope.load(Ordering::Relaxed);
        if scope != 0 && self.scope_fn.get().is_none_or(|f| f() != scope) {
            return false;
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let param = self.param.load(Ordering::Relaxed);
        let fail = match mode {
            NTH => call == param,
            _ => mix(self.seed.load(Ordering::Relaxed) ^ mix(call)) % 1_000_000 < param,
        };
        if fail {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    /// Calls in scope since the last arming.
    pub fn nr_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failures injected since the last arming.
    pub fn nr_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_probabilities() {
        assert_eq!(Spec::parse("1"), Ok(Spec::Nth(1)));
        assert_eq!(Spec::parse("250"), Ok(Spec::Nth(250)));
        assert_eq!(Spec::parse("0.01"), Ok(Spec::Probability { per_million: 10_000 }));
        assert_eq!(Spec::parse(".5"), Ok(Spec::Probability { per_million: 500_000 }));
        assert_eq!(Spec::parse("1%"), Ok(Spec::Probability { per_million: 10_000 }));
        assert_eq!(Spec::parse("0.5%"), Ok(Spec::Probability { per_million: 5_000 }));
        assert_eq!(Spec::parse("1.0"), Ok(Spec::Probability { per_million: 1_000_000 }));
        assert_eq!(Spec::parse("0"), Err(SpecError::Malformed));
        assert_eq!(Spec::parse(""), Err(SpecError::Malformed));
        assert_eq!(Spec::parse("."), Err(SpecError::Malformed));
        assert_eq!(Spec::parse("x"), Err(SpecError::Malformed));
        assert_eq!(Spec::parse("-1"), Err(SpecError::Malformed));
        assert_eq!(Spec::parse("1.5"), Err(SpecError::AboveOne));
        assert_eq!(Spec::parse("101%"), Err(SpecError::AboveOne));
    }

    #[test]
    fn nth_fails_that_call_once() {
        let f = FailAlloc::new();
        assert!(!(0..10).any(|_| f.should_fail()), "disarmed must not fail");
        f.arm(Spec::Nth(3), 0, None);
        let got: std::vec::Vec<bool> = (0..6).map(|_| f.should_fail()).collect();
        assert_eq!(got, [false, false, true, false, false, false]);
        assert_eq!((f.nr_calls(), f.nr_failed()), (6, 1));
        f.disarm();
        assert!(!f.should_fail());
    }

    #[test]
    fn probability_replays_with_its_seed_and_is_near_its_rate() {
        let f = FailAlloc::new();
        let run = |seed| {
            f.arm(Spec::Probability { per_million: 100_000 }, seed, None);
            (0..10_000).map(|_| f.should_fail()).collect::<std::vec::Vec<bool>>()
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b, "same seed, same failures");
        assert_ne!(a, c, "another seed, other failures");
        let n = a.iter().filter(|&&x| x).count();
        assert!((800..1200).contains(&n), "{n} failures of 10000 at p=0.1");
        assert_eq!(f.nr_failed() as usize, c.iter().filter(|&&x| x).count());
    }

    static SCOPE: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn a_scope_fails_only_its_callers() {
        let f = FailAlloc::new();
        f.set_scope_fn(|| SCOPE.load(Ordering::Relaxed));
        f.arm(Spec::Nth(1), 0, Some(42));
        SCOPE.store(41, Ordering::Relaxed);
        assert!(!f.should_fail() && !f.should_fail(), "another scope allocates normally");
        assert_eq!(f.nr_calls(), 0, "and is not counted");
        SCOPE.store(42, Ordering::Relaxed);
        assert!(f.should_fail());
        assert!(!f.should_fail());
    }
}
