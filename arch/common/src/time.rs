//! The clock: a counter every CPU can read, converted to nanoseconds.

/// The clock an arch provides.
pub trait Time {
    /// Nanoseconds since an arbitrary point (boot). Monotonic on one CPU.
    fn now_ns() -> u64;

    /// The clock's name and rate in Hz, printed once at boot.
    fn describe_clock() -> (&'static str, u64);
}
