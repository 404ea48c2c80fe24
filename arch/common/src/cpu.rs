//! Which CPU am I? Each CPU keeps its kernel index (0 = the boot CPU) in a
//! per-CPU register of its own, written once when it comes up (by the boot
//! path for the boot CPU, by the arch's start-up path for the others).

/// The CPU facts an arch provides.
pub trait Cpu {
    /// The most CPUs the arch keeps per-CPU state for (descriptor tables,
    /// interrupt-controller ids, ...); the kernel's own limit must not be
    /// larger.
    const MAX_CPUS: usize;

    /// This CPU's kernel index.
    fn cpu_index() -> usize;
}
