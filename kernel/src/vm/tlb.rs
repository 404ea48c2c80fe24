//! TLB shootdown: after a page-table change returns, no CPU may still use
//! the old translation.
//!
//! [`Shootdown`] is the `TlbHooks` the kernel gives `mm::pgtable`.
//!
//! A space that no CPU but this one has loaded is flushed here alone
//! (`Arch::LOCAL_TLB`, [`flush_is_local`]): no IPI on x86_64, no broadcast
//! `TLBI ... IS` on AArch64 (a copy on write in a single-threaded process).
//! Otherwise, whether the arch's own flush (`Arch::TLB`) reaches the other
//! CPUs is `Arch::TLB_BROADCAST`:
//!
//! - AArch64: `TLBI VAAE1IS` / `VMALLE1IS` are broadcast to every CPU in the
//!   inner-shareable domain and `DSB ISH` waits for all of them, so the
//!   arch flush already is the shootdown.
//! - x86_64: `INVLPG` and CR3 reloads act on the local CPU only. The
//!   initiator flushes locally, then posts the range in the mailbox of every
//!   other online CPU that has the address space loaded
//!   ([`crate::task::sched::cpus_with_root`]), sends each the kernel IPI, and waits
//!   until each has flushed and cleared its mailbox. A CPU that switches to
//!   the address space after the check loads CR3, which drops its old
//!   non-global translations anyway (no PCIDs).
//!
//! ## Protocol (where flushes are local: x86_64)
//!
//! [`SHOOTDOWN_LOCK`] lets one initiator at a time use the mailboxes. A
//! CPU spinning with interrupts off cannot take the IPI, so every spin
//! loop that may wait (directly or through a chain) for a shootdown
//! initiator *serves its own mailbox* while it spins ([`handle_ipi`]):
//! the initiator's wait for [`SHOOTDOWN_LOCK`] and for the acknowledgements,
//! and the address-space lock (`crate::vm::space`, taken with
//! `IrqSpinLock::lock_polling`). A target's acknowledgement then never
//! depends on its interrupts being on, and [`Shootdown`] may run with
//! interrupts disabled: the fault handler uses it for the break-before-make
//! of copy on write, inside the trap, holding the address-space lock. The
//! shootdown lock itself is always held with interrupts off, so its holder
//! is never preempted by a task that would then spin for it.
//!
//! The kernel's own mappings change after boot in one place, the kernel
//! stacks' window (`crate::memory::stacks`), whose freed slots are flushed
//! on every CPU before reuse: [`flush_kernel_everywhere`] (x86_64: the same
//! mailboxes, with every other online CPU as a target and a flag that says
//! "kernel range, whatever root is loaded").
//!
//! Every other lock that a CPU spins on with interrupts off (run queue,
//! heap, frame allocator, console, the space registry) is held only for
//! short sections that never start a shootdown, so its holder always gets
//! on without anyone's acknowledgement.

use crate::arch::prelude::*;
use core::sync::atomic::{AtomicU64, Ordering};
use mm::pgtable::TlbHooks;
use mm::{PhysAddr, VirtAddr};

/// The TLB hooks for page tables that other CPUs may be using.
pub struct Shootdown;

impl TlbHooks for Shootdown {
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        // Interrupts off: the CPU that checked is the one that flushes.
        let irq_was_enabled = Arch::irq_save_and_disable();
        if flush_is_local(root) {
            Arch::LOCAL_TLB.flush_range(root, start, end);
            NR_LOCAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        } else {
            Arch::TLB.flush_range(root, start, end);
            if Arch::TLB_BROADCAST {
                crate::task::sched::note_shootdown();
            } else {
                by_ipi::shoot(root, start, end, false);
            }
        }
        Arch::irq_restore(irq_was_enabled);
    }
    fn flush_all(&self, root: PhysAddr) {
        let irq_was_enabled = Arch::irq_save_and_disable();
        if flush_is_local(root) {
            Arch::LOCAL_TLB.flush_all(root);
            NR_LOCAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        } else {
            Arch::TLB.flush_all(root);
            if Arch::TLB_BROADCAST {
                crate::task::sched::note_shootdown();
            } else {
                by_ipi::shoot(root, VirtAddr::new(0), VirtAddr::new(0), true);
            }
        }
        Arch::irq_restore(irq_was_enabled);
    }
}

/// Flushes of a space that no other CPU had loaded, done on this CPU alone
/// ([`flush_is_local`]).
pub static NR_LOCAL_FLUSHES: AtomicU64 = AtomicU64::new(0);

/// Whether a flush of the space `root`, whose page-table writes are done,
/// may be this CPU's alone: no other CPU has it loaded. Called with
/// interrupts off (this CPU stays the one that flushes).
///
/// Why that is enough (see the module doc): the table writes are made
/// visible to every CPU's walks first (`Arch::table_write_barrier`); the
/// CPUs' loaded roots are read under the run-queue lock, under which a CPU
/// loads a root (`sched`). A CPU that loads `root` after this check does so
/// after the writes, and a load drops that CPU's old lower-half
/// translations (`Mmu::load_user_root`: a CR3 write without PCIDs; on
/// AArch64 `TLBI VMALLE1` after the TTBR0 write); a CPU that had the space
/// loaded before and switched away dropped them when it switched.
pub(crate) fn flush_is_local(root: PhysAddr) -> bool {
    debug_assert!(!Arch::irq_enabled(), "flush_is_local with interrupts on");
    Arch::table_write_barrier();
    let me = crate::task::sched::cpu_index();
    crate::task::sched::cpus_with_root(root) & !(1 << me) == 0
}

/// Drops every CPU's translations of the kernel-half range `[start, end)`
/// (`Arch::flush_kernel_range` here, and by IPI on the others where that
/// is local). Called holding no lock.
pub fn flush_kernel_everywhere(start: VirtAddr, end: VirtAddr) {
    Arch::flush_kernel_range(start, end);
    if Arch::TLB_BROADCAST {
        crate::task::sched::note_shootdown();
    } else {
        by_ipi::shoot_kernel(start, end);
    }
}

/// The shootdown by IPI and mailboxes (see the module doc), for an arch
/// whose flushes are local.
mod by_ipi {
    use super::*;
    use crate::task::sched::{self, MAX_CPUS};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// One CPU's pending flush: `[start, end)` of `root`, or everything,
    /// or (`kernel`) `[start, end)` of the kernel half whatever is loaded.
    struct Mailbox {
        pending: AtomicBool,
        root: AtomicU64,
        start: AtomicU64,
        end: AtomicU64,
        all: AtomicBool,
        kernel: AtomicBool,
    }

    static MAILBOXES: [Mailbox; MAX_CPUS] = [const {
        Mailbox {
            pending: AtomicBool::new(false),
            root: AtomicU64::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            all: AtomicBool::new(false),
            kernel: AtomicBool::new(false),
        }
    }; MAX_CPUS];

    /// One initiator at a time (see the module doc).
    pub(super) static SHOOTDOWN_LOCK: spin::Mutex<()> = spin::Mutex::new(());

    /// What one shootdown asks of its targets.
    #[derive(Clone, Copy)]
    enum Request {
        /// `[start, end)` of the space `root`, or all of it.
        Space { root: PhysAddr, start: VirtAddr, end: VirtAddr, all: bool },
        /// `[start, end)` of the kernel half, on every other online CPU.
        Kernel { start: VirtAddr, end: VirtAddr },
    }

    pub(super) fn shoot(root: PhysAddr, start: VirtAddr, end: VirtAddr, all: bool) {
        shoot_request(Request::Space { root, start, end, all });
    }

    pub(super) fn shoot_kernel(start: VirtAddr, end: VirtAddr) {
        shoot_request(Request::Kernel { start, end });
    }

    fn shoot_request(request: Request) {
        // The lock is held with interrupts off: a holder preempted by the
        // tick would leave another task on this CPU spinning for it with
        // interrupts off (a COW fault in the trap) forever.
        let irq_was_enabled = Arch::irq_save_and_disable();
        shoot_with_interrupts_off(request);
        Arch::irq_restore(irq_was_enabled);
    }

    fn shoot_with_interrupts_off(request: Request) {
        // Serve our own mailbox while waiting (see the module doc), so
        // another initiator never waits for us forever.
        let _one_at_a_time = loop {
            if let Some(g) = SHOOTDOWN_LOCK.try_lock() {
                break g;
            }
            handle_ipi();
            core::hint::spin_loop();
        };
        let me = sched::cpu_index();
        let (targets, root, start, end, all, kernel) = match request {
            Request::Space { root, start, end, all } => {
                (sched::cpus_with_root(root), root, start, end, all, false)
            }
            Request::Kernel { start, end } => {
                let online = sched::online_cpus().fold(0u32, |m, c| m | 1 << c);
                (online, PhysAddr::new(0), start, end, false, true)
            }
        };
        let targets = targets & !(1 << me);
        for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
            let m = &MAILBOXES[cpu];
            m.root.store(root.as_u64(), Ordering::Relaxed);
            m.start.store(start.as_u64(), Ordering::Relaxed);
            m.end.store(end.as_u64(), Ordering::Relaxed);
            m.all.store(all, Ordering::Relaxed);
            m.kernel.store(kernel, Ordering::Relaxed);
            m.pending.store(true, Ordering::Release);
            Arch::send_ipi_to(cpu);
        }
        for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
            while MAILBOXES[cpu].pending.load(Ordering::Acquire) {
                handle_ipi();
                core::hint::spin_loop();
            }
        }
        sched::note_shootdown();
    }

    /// Called from the kernel IPI: perform this CPU's pending flush and
    /// acknowledge it.
    pub fn handle_ipi() {
        let m = &MAILBOXES[sched::cpu_index()];
        if !m.pending.load(Ordering::Acquire) {
            return;
        }
        let root = PhysAddr::new(m.root.load(Ordering::Relaxed));
        if m.kernel.load(Ordering::Relaxed) {
            let (start, end) = (m.start.load(Ordering::Relaxed), m.end.load(Ordering::Relaxed));
            Arch::flush_kernel_range(VirtAddr::new(start), VirtAddr::new(end));
        } else if m.all.load(Ordering::Relaxed) {
            Arch::TLB.flush_all(root);
        } else {
            let (start, end) = (m.start.load(Ordering::Relaxed), m.end.load(Ordering::Relaxed));
            Arch::TLB.flush_range(root, VirtAddr::new(start), VirtAddr::new(end));
        }
        m.pending.store(false, Ordering::Release);
    }
}

/// Called from the kernel IPI handler: serve a pending flush request.
pub fn handle_ipi() {
    if !Arch::TLB_BROADCAST {
        by_ipi::handle_ipi();
    }
}
