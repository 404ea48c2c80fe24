//! TLB shootdown: after a page-table change returns, no CPU may still use
//! the old translation.
//!
//! [`Shootdown`] is the `TlbHooks` the kernel gives `mm::pgtable`.
//!
//! - AArch64: `TLBI VAAE1IS` / `VMALLE1IS` are broadcast to every CPU in the
//!   inner-shareable domain and `DSB ISH` waits for all of them, so the
//!   arch flush already is the shootdown.
//! - x86_64: `INVLPG` and CR3 reloads act on the local CPU only. The
//!   initiator flushes locally, then posts the range in the mailbox of every
//!   other online CPU that has the address space loaded
//!   ([`crate::sched::cpus_with_root`]), sends each the kernel IPI, and waits
//!   until each has flushed and cleared its mailbox. A CPU that switches to
//!   the address space after the check loads CR3, which drops its old
//!   non-global translations anyway (no PCIDs).
//!
//! ## Protocol (x86_64)
//!
//! [`SHOOTDOWN_LOCK`] lets one initiator at a time use the mailboxes. A
//! CPU spinning with interrupts off cannot take the IPI, so every spin
//! loop that may wait (directly or through a chain) for a shootdown
//! initiator *serves its own mailbox* while it spins ([`handle_ipi`]):
//! the initiator's wait for [`SHOOTDOWN_LOCK`] and for the acknowledgements,
//! and the address-space lock (`crate::vm`, taken with
//! `IrqSpinLock::lock_polling`). A target's acknowledgement then never
//! depends on its interrupts being on, and [`Shootdown`] may run with
//! interrupts disabled: the fault handler uses it for the break-before-make
//! of copy on write, inside the trap, holding the address-space lock. The
//! shootdown lock itself is always held with interrupts off, so its holder
//! is never preempted by a task that would then spin for it.
//! Every other lock that a CPU spins on with interrupts off (run queue,
//! heap, frame allocator, console, the space registry) is held only for
//! short sections that never start a shootdown, so its holder always gets
//! on without anyone's acknowledgement.

use crate::arch;
use mm::pgtable::TlbHooks;
use mm::{PhysAddr, VirtAddr};

/// The TLB hooks for page tables that other CPUs may be using.
pub struct Shootdown;

#[cfg(target_arch = "aarch64")]
impl TlbHooks for Shootdown {
    fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
        arch::mmu::Tlb.flush_range(root, start, end);
        crate::sched::note_shootdown();
    }
    fn flush_all(&self, root: PhysAddr) {
        arch::mmu::Tlb.flush_all(root);
        crate::sched::note_shootdown();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::sched::{self, MAX_CPUS};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// One CPU's pending flush: `[start, end)` of `root`, or everything.
    struct Mailbox {
        pending: AtomicBool,
        root: AtomicU64,
        start: AtomicU64,
        end: AtomicU64,
        all: AtomicBool,
    }

    static MAILBOXES: [Mailbox; MAX_CPUS] = [const {
        Mailbox {
            pending: AtomicBool::new(false),
            root: AtomicU64::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            all: AtomicBool::new(false),
        }
    }; MAX_CPUS];

    /// One initiator at a time (see the module doc).
    pub(super) static SHOOTDOWN_LOCK: spin::Mutex<()> = spin::Mutex::new(());

    fn shoot(root: PhysAddr, start: VirtAddr, end: VirtAddr, all: bool) {
        // The lock is held with interrupts off: a holder preempted by the
        // tick would leave another task on this CPU spinning for it with
        // interrupts off (a COW fault in the trap) forever.
        let irq_was_enabled = arch::irq::save_and_disable();
        shoot_with_interrupts_off(root, start, end, all);
        arch::irq::restore(irq_was_enabled);
    }

    fn shoot_with_interrupts_off(root: PhysAddr, start: VirtAddr, end: VirtAddr, all: bool) {
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
        let targets = sched::cpus_with_root(root) & !(1 << me);
        for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
            let m = &MAILBOXES[cpu];
            m.root.store(root.as_u64(), Ordering::Relaxed);
            m.start.store(start.as_u64(), Ordering::Relaxed);
            m.end.store(end.as_u64(), Ordering::Relaxed);
            m.all.store(all, Ordering::Relaxed);
            m.pending.store(true, Ordering::Release);
            arch::irq::send_ipi_to(cpu);
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
        if m.all.load(Ordering::Relaxed) {
            arch::mmu::Tlb.flush_all(root);
        } else {
            let (start, end) = (m.start.load(Ordering::Relaxed), m.end.load(Ordering::Relaxed));
            arch::mmu::Tlb.flush_range(root, VirtAddr::new(start), VirtAddr::new(end));
        }
        m.pending.store(false, Ordering::Release);
    }

    impl TlbHooks for Shootdown {
        fn flush_range(&self, root: PhysAddr, start: VirtAddr, end: VirtAddr) {
            arch::mmu::Tlb.flush_range(root, start, end);
            shoot(root, start, end, false);
        }
        fn flush_all(&self, root: PhysAddr) {
            arch::mmu::Tlb.flush_all(root);
            shoot(root, VirtAddr::new(0), VirtAddr::new(0), true);
        }
    }
}

/// Called from the kernel IPI handler: serve a pending flush request.
pub fn handle_ipi() {
    #[cfg(target_arch = "x86_64")]
    x86::handle_ipi();
}

// ---------------------------------------------------------------- tests

use crate::paging::{leaf, probe_read, Frames, KernelTables, TestSpace, RW_USER, TEST_VA};
use crate::sched;
use crate::testing::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::pgtable::PageSize;

/// Readers on every other CPU read a page of a shared address space while
/// this CPU remaps it, generation after generation, to a fresh frame that
/// holds the generation number. A reader that has seen generation `g`
/// published must never read a smaller number: that would be a stale
/// translation surviving the remap's shootdown.
fn shootdown_leaves_no_stale_reads(_: &TestEnv<'_>) -> Result<(), String> {
    const GENERATIONS: u64 = 60;
    let va = TEST_VA + 0x4000;
    let frames: Result<Vec<Frames>, String> = (0..=GENERATIONS).map(|_| Frames::new(0)).collect();
    let frames = frames?;
    for (gen, f) in frames.iter().enumerate() {
        for off in (0..4096).step_by(64) {
            f.write(off, gen as u8);
        }
    }
    let space = Arc::new(TestSpace::new()?);
    space
        .table
        .map(&KernelTables, VirtAddr::new(va), leaf(frames[0].pa, PageSize::Size4K, RW_USER))
        .map_err(|e| format!("{e}"))?
        .ignore();
    let generation = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<usize> = sched::online_cpus().filter(|&c| c != sched::cpu_index()).collect();
    // The generation each reader has read at: the writer waits for all of
    // them before the next remap, so every reader really uses every
    // translation (and would keep a stale one, were it not shot down).
    let progress: Arc<Vec<AtomicU64>> = Arc::new(others.iter().map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for (slot, &cpu) in others.iter().enumerate() {
        let (space, generation, stop, progress) =
            (space.clone(), generation.clone(), stop.clone(), progress.clone());
        let h = sched::spawn_on(cpu, "reader", move || -> Result<u64, String> {
            let _in = sched::enter_address_space(space.table.root());
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                let g = generation.load(Ordering::Acquire);
                let at = VirtAddr::new(va + (reads * 64) % 4096);
                let v = match crate::arch::probe::read_u8(at) {
                    Ok(v) => v as u64,
                    // The remap's break-before-make leaves the page unmapped
                    // for a moment; a real access would fault and retry.
                    Err(f) if f.cause == mm::fault::FaultCause::NotMapped => continue,
                    Err(f) => return Err(format!("CPU {cpu}: unexpected fault {f:?}")),
                };
                if v < g {
                    return Err(format!("CPU {cpu} read generation {v} after generation {g} was published"));
                }
                progress[slot].store(g, Ordering::Release);
                reads += 1;
            }
            Ok(reads)
        })
        .map_err(|e| format!("spawn_on({cpu}): {e:?}"))?;
        readers.push(h);
    }
    let wait_for_readers = |gen: u64| -> Result<(), String> {
        let start = crate::arch::time::now_ns();
        while progress.iter().any(|p| p.load(Ordering::Acquire) < gen) {
            if crate::arch::time::now_ns() - start > 5_000_000_000 {
                return Err(format!("a reader did not read generation {gen} within 5 s"));
            }
            sched::yield_now();
        }
        Ok(())
    };
    let result = (|| {
        let _in = sched::enter_address_space(space.table.root());
        wait_for_readers(0)?;
        for gen in 1..=GENERATIONS {
            space
                .table
                .remap(
                    &KernelTables,
                    &Shootdown,
                    VirtAddr::new(va),
                    leaf(frames[gen as usize].pa, PageSize::Size4K, RW_USER),
                )
                .map_err(|e| format!("remap: {e}"))?;
            generation.store(gen, Ordering::Release);
            let here = probe_read(va)? as u64;
            if here != gen {
                return Err(format!("the remapping CPU read {here} after publishing {gen}"));
            }
            wait_for_readers(gen)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Release);
    let mut errors = Vec::new();
    for h in readers {
        if let Err(e) = h.join() {
            errors.push(e);
        }
    }
    match Arc::try_unwrap(space) {
        Ok(space) => space.destroy(),
        Err(_) => return Err("the address space is still referenced after the readers ended".into()),
    }
    drop(frames);
    // A reader's own failure explains a writer's timeout: report it first.
    if let Some(e) = errors.first() {
        return Err(e.clone());
    }
    result
}

pub(crate) const TESTS: &[Test] =
    &[Test { name: "tlb::shootdown_leaves_no_stale_reads", run: shootdown_leaves_no_stale_reads }];

/// `BENCH name=tlb_shootdown`: remaps per second of a page that readers on
/// every other CPU keep using (each remap is a break-before-make with a
/// shootdown of all of them).
pub fn bench_shootdown() -> Result<f64, String> {
    const ROUNDS: u64 = 2000;
    let va = TEST_VA + 0x6000;
    let (a, b) = (Frames::new(0)?, Frames::new(0)?);
    let space = Arc::new(TestSpace::new()?);
    space
        .table
        .map(&KernelTables, VirtAddr::new(va), leaf(a.pa, PageSize::Size4K, RW_USER))
        .map_err(|e| format!("{e}"))?
        .ignore();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for cpu in sched::online_cpus().filter(|&c| c != sched::cpu_index()) {
        let (space, stop) = (space.clone(), stop.clone());
        readers.push(
            sched::spawn_on(cpu, "bench-reader", move || {
                let _in = sched::enter_address_space(space.table.root());
                while !stop.load(Ordering::Acquire) {
                    let _ = probe_read(va);
                }
            })
            .map_err(|e| format!("spawn_on({cpu}): {e:?}"))?,
        );
    }
    let result = (|| {
        let _in = sched::enter_address_space(space.table.root());
        sched::sleep_ms(20);
        let start = crate::arch::time::now_ns();
        for i in 0..ROUNDS {
            let f = if i % 2 == 0 { &b } else { &a };
            space
                .table
                .remap(&KernelTables, &Shootdown, VirtAddr::new(va), leaf(f.pa, PageSize::Size4K, RW_USER))
                .map_err(|e| format!("{e}"))?;
        }
        let elapsed = crate::arch::time::now_ns() - start;
        Ok(ROUNDS as f64 * 1e9 / elapsed.max(1) as f64)
    })();
    stop.store(true, Ordering::Release);
    for h in readers {
        h.join();
    }
    if let Ok(space) = Arc::try_unwrap(space) {
        space.destroy();
    }
    result
}
