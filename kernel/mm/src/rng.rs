//! Seeded mixing for everything that must replay from `seed=`: the
//! allocation-failure injector ([`crate::fail_alloc`]), the in-guest
//! randomised tests and the stress (their generator and byte patterns).
//!
//! [`mix64`] is SplitMix64's finaliser, a bijection on 64 bits whose
//! output bits each depend on every input bit; [`SplitMix64`] is the
//! generator built on it (a Weyl sequence, mixed). No state is shared, no
//! lock: each user owns its generator. (The host tests' xorshift
//! generator, `testkit::rng`, is separate so that their recorded seeds keep
//! replaying.)

/// The Weyl increment of [`SplitMix64`] (2^64 over the golden ratio).
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: mixes the bits of `z`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same sequence on every arch and every run.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator of stream `stream` of `seed` (one per task or CPU, so
    /// that each replays its own sequence whatever the others do).
    pub fn new(seed: u64, stream: u64) -> SplitMix64 {
        let mut mix = SplitMix64(seed ^ stream.wrapping_mul(0xd134_2543_de82_ef95));
        mix.next_u64();
        SplitMix64(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_replay_and_differ() {
        let (mut a, mut b) = (SplitMix64::new(7, 0), SplitMix64::new(7, 0));
        let first: [u64; 4] = core::array::from_fn(|_| a.next_u64());
        assert_eq!(first, core::array::from_fn(|_| b.next_u64()));
        let mut other = SplitMix64::new(7, 1);
        assert_ne!(first[0], other.next_u64());
    }

    #[test]
    fn mix64_is_splitmix64s_finaliser() {
        // The first output of SplitMix64 seeded with 0 (the reference
        // implementation's published value).
        assert_eq!(mix64(GOLDEN), 0xe220_a839_7b1d_cdaf);
    }
}
