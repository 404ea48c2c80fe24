//! Which CPU am I? Each CPU keeps its kernel index (0 = the boot CPU) in a
//! per-CPU register of its own, written once when it comes up (by the boot
//! path for the boot CPU, by the arch's start-up path for the others).
//! And the CPU's random-number instruction, where it has one.

/// The CPU facts an arch provides.
pub trait Cpu {
    /// The most CPUs the arch keeps per-CPU state for (descriptor tables,
    /// interrupt-controller ids, ...); the kernel's own limit must not be
    /// larger.
    const MAX_CPUS: usize;

    /// This CPU's kernel index.
    fn cpu_index() -> usize;

    /// The name of the CPU's random-number instruction, when it has one
    /// ([`Cpu::hw_random`] may give values), else `None`.
    fn hw_random_source() -> Option<&'static str>;

    /// 64 bits from the CPU's random-number generator (x86_64 `RDSEED`,
    /// else `RDRAND`; AArch64 `RNDR`, FEAT_RNG): a hardware DRBG reseeded
    /// from its own entropy source. `None` when the CPU has no such
    /// instruction or it failed a few times in a row (the generator may
    /// run dry for a moment); the caller then falls back on something of
    /// its own.
    fn hw_random() -> Option<u64>;
}
