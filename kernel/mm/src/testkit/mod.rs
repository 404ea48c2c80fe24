//! The test kit (feature `sim`): what the host tests build again and again,
//! in one place. `mm`'s integration tests (`kernel/mm/tests`) and the arch
//! crates' format tests (`arch/*/src/pgtable.rs`) use it; nothing in the
//! kernel does.
//!
//! | module | what |
//! | --- | --- |
//! | [`rng`] | [`Rng`](rng::Rng), a small seeded generator for long random runs |
//! | [`strategies`] | proptest strategies for entries: sizes, protections, leaves, swap and migration entries |
//! | [`mmu`] | tables written by hand and walked by a format's simulated MMU; [`Machine`](mmu::Machine), one page table behind a software TLB |
//!
//! and the macro [`for_both_formats!`](crate::for_both_formats), which runs
//! a generic test once per real format.
//!
//! The kit keeps no state between tests: each test builds what it uses.

pub mod mmu;
pub mod rng;
pub mod strategies;

/// Instantiates each generic test `fn name<F>()` for both real page-table
/// formats, as `x86_64::name` and `aarch64::name`; attributes written
/// before a name (`#[should_panic(...)]`) go on both. The calling file
/// imports `X86Format` and `Aarch64Format` (`mm` cannot name the arch
/// crates: they depend on it).
#[macro_export]
macro_rules! for_both_formats {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {
        mod x86_64 {
            $( $(#[$meta])* #[test] fn $name() { super::$name::<super::X86Format>() } )*
        }
        mod aarch64 {
            $( $(#[$meta])* #[test] fn $name() { super::$name::<super::Aarch64Format>() } )*
        }
    };
}
