//! Kernel tasks and the CPUs they run on.
//!
//! | module | what |
//! | --- | --- |
//! | [`sched`] | kernel tasks: spawn, join, sleep, yield, preemption, address spaces per task, tick and IPI hooks |
//! | [`wait`] | wait queues of parked tasks (with `sched::park`/`unpark`) |
//! | [`smp`] | starting every CPU the firmware lists |
//!
//! Below: [`crate::memory`] (task stacks). Devices and the TLB shootdown,
//! which the tick and the kernel IPI must reach, register hooks
//! ([`sched::set_tick_hook`], [`sched::set_ipi_hook`]) instead of being
//! called by name.

pub mod sched;
pub mod smp;
pub mod wait;
