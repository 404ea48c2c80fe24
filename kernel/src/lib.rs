//! `kernel`: the arch-neutral kernel. Both boot paths (`boot/x86_64`,
//! `boot/aarch64`) build one [`boot::BootInfo`] and call
//! [`boot::kernel_main`]; from there on the code is the same on both arches.
//!
//! | module | what |
//! | --- | --- |
//! | [`boot`] | `BootInfo` and `kernel_main`: banner, memory summary, arguments, then tests or shutdown |
//! | [`console`] | `print!`/`println!` over the arch's serial port, one lock for whole lines |
//! | [`memory`] | the heap, the memmap and the buddy frame allocator in the running kernel |
//! | [`paging`] | `mm::pgtable` over this arch's real format: table memory, test address spaces, MMU tests |
//! | [`sched`] | kernel tasks: spawn, join, sleep, yield, preemption, address spaces per task |
//! | [`smp`] | starting every CPU the firmware lists |
//! | [`sync`] | interrupt-disabling spin locks, the scheduler's raw lock |
//! | [`bench`] | in-guest benchmarks (`bench=`), printing `BENCH` lines |
//! | [`cmdline`] | the kernel arguments this kernel knows, and their echo |
//! | [`exceptions`] | in-guest tests of the arch's exception handling |
//! | [`tlb`] | TLB shootdown: no CPU keeps a stale translation after a change returns |
//! | [`vm`] | address spaces: areas, page tables, the fault handler for tasks |
//! | [`wait`] | wait queues of parked tasks (with `sched::park`/`unpark`) |
//! | [`pci`] | PCI functions on the host bridge: enumeration, BAR placement, INTx lines |
//! | [`dma`] | DMA memory and addresses for virtio devices (`virtio-drivers`' `Hal`) |
//! | [`blk`] | virtio-blk disks: page reads and writes for the swap code, by interrupt |
//! | [`swap`] | swap areas on virtio-blk disks (swapon at boot), swap I/O, the swap-in half of a fault |
//! | [`reclaim`] | the LRU lists, shrinking to swap, kswapd, direct reclaim, `MADV_PAGEOUT` |
//! | [`flags_stress`] | the stress test of the folio flags word (seed 003, `bug=nonatomic-folio-flags`) |
//! | [`testing`] | the in-guest test harness and its serial protocol |
//! | [`panic`] | the panic handler: message, location, failing exit |
//!
//! Hardware is reached only through the `arch` crate of the target
//! (re-exported as [`arch`]); memory management lives in the `mm` crate.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub use arch_aarch64 as arch;
#[cfg(target_arch = "x86_64")]
pub use arch_x86_64 as arch;

pub mod bench;
pub mod blk;
pub mod boot;
pub use boot::kernel_main;
pub mod cmdline;
pub mod console;
pub mod dma;
pub mod exceptions;
pub mod flags_stress;
pub mod memory;
pub mod paging;
pub mod panic;
pub mod pci;
pub mod reclaim;
pub mod sched;
pub mod smp;
pub mod swap;
pub mod sync;
pub mod testing;
pub mod tlb;
pub mod vm;
pub mod wait;
