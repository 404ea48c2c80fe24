//! Helpers shared by `mm`'s integration tests (each test file includes this
//! module with `mod common;`; not every file uses every helper).
#![allow(dead_code, unused_macros)]

/// xorshift64*: a small seeded generator, so that a failure names its seed
/// and reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A coin toss.
    pub fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Instantiates each generic test `fn name<F>()` for both real page-table
/// formats, as `x86_64::name` and `aarch64::name`. The including file
/// imports `X86Format` and `Aarch64Format`.
macro_rules! for_both_formats {
    ($($name:ident),* $(,)?) => {
        mod x86_64 {
            $( #[test] fn $name() { super::$name::<super::X86Format>() } )*
        }
        mod aarch64 {
            $( #[test] fn $name() { super::$name::<super::Aarch64Format>() } )*
        }
    };
}
