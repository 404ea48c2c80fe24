//! The test kit (feature `sim`): what the host tests build again and again,
//! in one place. `mm`'s integration tests (`kernel/mm/tests`) and the arch
//! crates' format tests (`arch/*/src/pgtable.rs`) use it; nothing in the
//! kernel does.
//!
//! | module | what |
//! | --- | --- |
//! | [`rng`] | [`Rng`](rng::Rng), a small seeded generator for long random runs |
//! | [`strategies`] | proptest strategies for entries: sizes, protections, leaves, swap and migration entries |
//! | [`bug_switch`] | tests taking turns at the global bug-replay switches: [`shared`](bug_switch::shared), [`BugOn`](bug_switch::BugOn) |
//! | [`frames`] | [`SimFrames`](frames::SimFrames): the frame source of the tests, which is also their swap backend: a real allocator, simulated contents, on request the huge zero folio, the LRU lists and a swap area with a RAM disk |
//! | [`world`] | [`World`](world::World): a fork family of address spaces over `SimFrames` with a simulated CPU and the system calls; [`SharedSpace`](world::SharedSpace): one space behind a lock, for race tests |
//! | [`migration_entries`] | a migration in its two halves, `mm`'s own code (`try_to_unmap`'s migration target, `migrate::remove_migration_entries`) with the folio as its own destination, so that a test can act between them: [`World::start_migration`](world::World::start_migration), [`World::end_migration`](world::World::end_migration) |
//! | [`policy`] | `World` as the kernel's side of `mm::reclaim` and `mm::swapoff` (`ReclaimHost`, `SwapoffHost`), with [`Switches`](policy::Switches) that play it differently, and the policy tests' worlds |
//! | [`migration`] | `World` as the kernel's side of `mm::migrate` (`MigrateHost`), and `World::migrate` |
//! | `races` | the shuttle set-up of the race tests (feature `shuttle`): one configuration, `run` (both schedulers) and `explore` (one, the failure returned) |
//! | [`mmu`] | tables written by hand and walked by a format's simulated MMU; [`Machine`](mmu::Machine), one page table behind a software TLB |
//!
//! and the macro [`for_both_formats!`](crate::for_both_formats), which runs
//! a generic test once per real format.
//!
//! The kit keeps no state between tests (each test builds what it uses)
//! but the turn at the bug switches, which are global themselves.

pub mod bug_switch;
pub mod frames;
pub mod migration;
pub mod migration_entries;
pub mod mmu;
pub mod policy;
#[cfg(feature = "shuttle")]
pub mod races;
pub mod rng;
pub mod strategies;
pub mod world;

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
