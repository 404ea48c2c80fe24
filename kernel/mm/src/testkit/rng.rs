//! [`Rng`]: a small seeded generator for the host tests' random runs, so
//! that a failure names its seed and reproduces.
//!
//! Not for proptest's strategies (those have their own runner, see
//! [`super::strategies`]); for the long model-checked runs that pick their
//! next operation themselves.

/// xorshift64*: a small seeded generator. The seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A coin toss.
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
