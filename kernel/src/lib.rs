//! `kernel`: the arch-neutral kernel. Both boot paths (`boot/x86_64`,
//! `boot/aarch64`) build one [`bootinfo::BootInfo`] and call
//! [`kernel_main`]; from there on the code is the same on both arches.
//!
//! The folders are the architecture, lowest first; a unit may use the
//! units above it in this table and never one below it (the host test
//! `xtask/tests/kernel_layers.rs` fails on any import cycle between them):
//!
//! | module | what |
//! | --- | --- |
//! | [`arch`] | the architecture of this build, named once: `Arch`, which implements `arch_common`'s traits |
//! | [`sync`] | interrupt-disabling spin locks, the scheduler's raw lock |
//! | [`console`] | `print!`/`println!` over the arch's serial port, one lock for whole lines |
//! | [`panic`] | the panic handler: message, location, backtrace, failing exit |
//! | [`backtrace`] | the call stack of a panic: a bounded, probe-read walk of the frame-pointer chain |
//! | [`bootinfo`] | what every boot path hands the kernel: memory map, firmware tables, CPUs, arguments |
//! | [`cmdline`] | the kernel arguments this kernel knows, their echo, the bug-replay switch |
//! | [`memory`] | physical memory of the running kernel: heap, memmap, buddy frame allocator, kernel page tables |
//! | [`task`] | kernel tasks: scheduler, wait queues, bringing up every CPU |
//! | [`drivers`] | devices: PCI, DMA memory, virtio-blk disks |
//! | [`vm`] | virtual memory of tasks: address spaces, the fault entry, TLB shootdown, user access, swap, reclaim |
//! | [`fs`] | files: the initramfs tree, `/dev`, `/proc`, `/sys`, descriptors, pipes, raw disks, the file system calls |
//! | [`proc`] | user processes with the Linux ABI: threads around `enter_user`, system calls, ELF, signals, futexes |
//! | [`demo`] | the boot workload that pushes memory through swap and back |
//! | [`init`] | `kernel_main`: the order in which the kernel starts, then tests, benchmarks or the demo |
//! | [`tests`] | the in-guest test harness, its kit, and the tests of every area |
//! | [`bench`] | in-guest benchmarks (`bench=`), printing `BENCH` lines |
//!
//! Production code ([`arch`] to [`init`]) never names [`tests`] or
//! [`bench`]: this crate root hands their entry points to [`init`], and
//! lower units reach higher ones only through hooks the higher ones
//! register (the scheduler's tick and IPI hooks, the frame allocator's
//! low-memory hook).
//!
//! Hardware is reached only through `arch_common`'s traits, implemented by
//! the arch crate of the target ([`arch::Arch`]); memory-management policy
//! lives in the `mm` crate.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod arch;
pub mod backtrace;
pub mod bench;
pub mod bootinfo;
pub mod cmdline;
pub mod console;
pub mod demo;
pub mod drivers;
pub mod fs;
pub mod init;
pub mod memory;
pub mod panic;
pub mod proc;
pub mod sync;
pub mod task;
pub mod tests;
pub mod vm;

/// The kernel proper, entered once by the boot CPU: [`init::kernel_main`]
/// with the test harness and the benchmarks as the modes `test=` and
/// `bench=` select.
pub fn kernel_main(info: bootinfo::BootInfo) -> ! {
    init::kernel_main(info, init::Modes { tests: tests::run, bench: bench::run })
}
