//! Host-side QEMU support for the kernel: machine profiles, the runner, the
//! serial protocol and the verdicts. Used by `xtask`; it knows nothing about
//! how the kernel is built.
//!
//! The flow of one run:
//!
//! 1. [`MachineConfig`] (architecture, accelerator, firmware, memory, CPUs,
//!    kernel arguments, image, virtio-blk disks from [`disk`]) →
//!    [`MachineConfig::command`] gives the exact QEMU argv as a
//!    [`QemuCommand`].
//! 2. [`run`] starts QEMU, echoes the serial console, feeds each line to the
//!    protocol [`Parser`], kills the guest at its time limit, and returns a
//!    [`RunOutcome`]: how the guest ended ([`GuestExit`], decoded from QEMU's
//!    exit status) and what it printed ([`Report`]).
//! 3. [`test_verdict`] or [`boot_verdict`] turns that into a [`Verdict`].
//!
//! Steps 1 and 3 are pure functions, unit tested without QEMU.
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | architectures, accelerators, firmware, memory sizes: what a run is asked for |
//! | [`disk`] | virtio-blk disks: swap images, the faulty blkdebug disk, the stalling disk, their QEMU arguments |
//! | [`machine`] | one machine profile per arch and firmware, and the QEMU command line it makes |
//! | [`runner`] | starting QEMU, echoing the console, the time limit |
//! | [`protocol`] | the serial protocol: test lines, summaries, `BENCH` lines, panics |
//! | [`exit`] | how the guest ended, from QEMU's exit status |
//! | [`verdict`] | pass or fail of a test run or a boot, with the reason |
//! | [`symbols`] | the kernel's `backtrace:` lines turned into `function at file:line` from its ELF |

pub mod config;
pub mod disk;
pub mod exit;
pub mod machine;
pub mod protocol;
pub mod runner;
pub mod symbols;
pub mod verdict;

pub use config::{check_numa, parse_numa, parse_smp, Accel, Arch, Boot, ConfigError, Firmware, MemSize};
pub use disk::{Backing, DiskSize, FaultPlan, VirtioDisk};
pub use exit::GuestExit;
pub use machine::{gdb_hint, MachineConfig, QemuCommand, OVMF_CODE};
pub use protocol::{parse_transcript, Bench, InitEnd, Parser, Report, Summary, TestOutcome, TestResult};
pub use runner::{run, RunError, RunOptions, RunOutcome};
pub use verdict::{boot_verdict, test_verdict, Verdict};
