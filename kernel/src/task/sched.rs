//! The scheduler: kernel tasks, preemptive, each optionally inside an
//! address space.
//!
//! ## Model
//!
//! A [`Task`] has its own kernel stack ([`crate::memory::stacks`]: 32 KiB
//! with an unmapped guard below it; an overflow ends the task, see
//! [`on_stack_fault`]) and a saved [`Context`]. Tasks are `Ready` (in the run queue), `Running`
//! (on a CPU), `Sleeping` (until a tick), `Blocked` (until another task wakes
//! it: join), `Parked` (until [`unpark`]: the wait primitive of
//! [`crate::task::wait`] and device drivers), `ParkedUntil` (until
//! [`unpark`] or a tick: [`park_until`], the timed waits of user calls) or
//! `Dead`. Each CPU has an idle task, which runs when nothing is
//! ready and never enters the run queue. The boot flow of the boot CPU
//! becomes the task `main`.
//!
//! ## Protocol
//!
//! - One run queue and one lock, [`RQ_LOCK`] (a [`RawSpinLock`], taken with
//!   interrupts disabled). It guards the ready and sleeping lists, every
//!   task's `state`, `joiner` and `context`, and the per-CPU `current`
//!   slots. A switch happens with the lock held: the task that gets the CPU
//!   releases it ([`finish_switch`]), whether it resumes in [`schedule`] or
//!   starts fresh in [`task_entry`].
//! - Preemption: the timer tick marks the CPU as needing a reschedule; the
//!   arch's `after_irq` hook calls [`preempt`], which switches tasks from
//!   inside the interrupt (the interrupted registers stay in the trap frame
//!   on that task's stack until it is resumed).
//! - Address spaces: a task's `root` (None = kernel only) is loaded on every
//!   switch to it (CR3 / TTBR0). Code that enters an address space says so
//!   with [`enter_address_space`], so preemption keeps it.
//! - A dead task's stack is freed only after the CPU has switched away from
//!   it: the previous task is dropped in [`finish_switch`], on the new
//!   task's stack.
//! - A joiner gets the task's result, or [`Killed`] when the kernel ended
//!   it ([`kill_current`]); never a panic.
//! - Locks private to a task: `Task::body` (the task alone), and
//!   `Task::killed` and the join result slot ([`IrqSpinLock`]s: the task
//!   and its joiner, for a moment each).
//! - Park and unpark: [`park`] blocks the running task until some code calls
//!   [`unpark`] on it, from a task or an interrupt handler. A task's
//!   `unpark_token` (under RQ_LOCK) remembers an unpark that came while the
//!   task was not parked, and the next `park` consumes it and returns at
//!   once: so a waiter that publishes itself, checks its condition, then
//!   parks, cannot miss a wake-up that comes between the check and the
//!   park. Wake-ups may be spurious; waiters re-check in a loop.
//!   [`park_until`] is the same with a deadline in ticks: the task waits on
//!   the sleeping list, and the tick that reaches the deadline or an
//!   `unpark` (which takes it off that list) makes it ready, whichever
//!   comes first. `sleep_ms`'s `Sleeping` ignores unparks.
//!
//! All CPUs share the one run queue, so a task runs wherever a CPU is free
//! (migration is the default, but when it happens is up to timing); `spawn_on`
//! pins a new task, and [`set_affinity`] pins (or unpins) the running task,
//! moving it to its CPU before it returns. A CPU's index comes from
//! its per-CPU register (`Arch::cpu_index`); the boot CPU keeps time.
//!
//! CPU time: each switch adds the time the task switched away from ran
//! (since its `on_cpu_since`, written when it was switched to) to its
//! `cpu_ns`; both atomics are written only by the switch, under RQ_LOCK
//! ([`Task::cpu_ns`] reads them; `getrusage` and `/proc/<pid>/stat` build
//! user and system time on it).

use crate::arch;
use crate::arch::context::Context;
use crate::arch::prelude::*;
use crate::memory::stacks::{self, KernelStack};
use crate::sync::{IrqSpinLock, RawSpinLock};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use mm::PhysAddr;

/// The most CPUs the kernel manages.
pub const MAX_CPUS: usize = crate::bootinfo::MAX_CPUS;
// The arch keeps per-CPU state for every CPU the kernel may run.
const _: () = assert!(Arch::MAX_CPUS >= MAX_CPUS, "the arch keeps state for fewer CPUs than the kernel runs");
/// Timer interrupts per second (the time slice is one tick).
pub const TICK_HZ: u32 = 100;
/// Ready and sleeping tasks the run queue holds without allocating.
const RESERVED_TASKS: usize = 256;

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Ready,
    Running,
    /// Until the tick count reaches this.
    Sleeping(u64),
    Blocked,
    /// In [`park`], until [`unpark`].
    Parked,
    /// In [`park_until`], until [`unpark`] or the tick count reaches this
    /// (on the sleeping list meanwhile).
    ParkedUntil(u64),
    Dead,
}

/// Mutable task fields, guarded by [`RQ_LOCK`].
struct TaskInner {
    state: TaskState,
    context: Context,
    /// The task waiting in `join` for this one to die.
    joiner: Option<Arc<Task>>,
    /// The address space the task runs in (None: kernel only).
    root: Option<PhysAddr>,
    /// An [`unpark`] came while the task was not parked: its next [`park`]
    /// returns at once (see the module doc).
    unpark_token: bool,
}

/// A kernel task.
pub struct Task {
    pub id: u64,
    pub name: &'static str,
    /// The CPU the task is pinned to, or [`ANY_CPU`]. Changed only by the
    /// task itself ([`set_affinity`]), under RQ_LOCK; read by the
    /// scheduler under RQ_LOCK and by reports anywhere.
    affinity: AtomicUsize,
    /// The kernel stack, with its guard (None for `main` and the CPUs'
    /// start-up stacks); freed when the task is dropped. Only held.
    _stack: Option<KernelStack>,
    /// Why the task was ended by the kernel, if it was ([`kill_current`]).
    /// Held with interrupts off: the killed task writes it with interrupts
    /// off, and a joiner polling [`JoinHandle::is_finished`] on the same CPU
    /// must not be preempted holding it.
    killed: IrqSpinLock<Option<String>>,
    /// What the task runs. It stays here, on the heap, while it runs (it is
    /// called by reference), so a task ended by the kernel mid-way leaks
    /// nothing it captured: the box is dropped with the task.
    body: spin::Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// Kept alive as long as the task (the address space it runs in).
    _keep: Option<Arc<dyn core::any::Any + Send + Sync>>,
    /// Nanoseconds on a CPU before the current stretch (see the module doc).
    cpu_ns: AtomicU64,
    /// When the task was last switched to (`Arch::now_ns`).
    on_cpu_since: AtomicU64,
    inner: UnsafeCell<TaskInner>,
}

// SAFETY: `inner` is only accessed with RQ_LOCK held (see `inner`), which
// serialises all CPUs; the other fields are immutable after creation.
unsafe impl Sync for Task {}
// SAFETY: as above; a Task holds no thread-bound data.
unsafe impl Send for Task {}

/// [`Task::affinity`]'s value for a task that may run on any CPU.
const ANY_CPU: usize = usize::MAX;

impl Task {
    /// Nanoseconds the task has run on a CPU; for the calling task,
    /// including the current stretch (another running task's current
    /// stretch is not in it yet).
    pub fn cpu_ns(&self) -> u64 {
        let was = Arch::irq_save_and_disable();
        let mut ns = self.cpu_ns.load(Ordering::Relaxed);
        if current_id() == self.id {
            // Not switched away meanwhile: interrupts are off.
            ns += Arch::now_ns().saturating_sub(self.on_cpu_since.load(Ordering::Relaxed));
        }
        Arch::irq_restore(was);
        ns
    }

    /// The CPU the task is pinned to, or `None` when it may run anywhere.
    pub fn affinity(&self) -> Option<usize> {
        Some(self.affinity.load(Ordering::Relaxed)).filter(|&c| c != ANY_CPU)
    }

    /// The task's mutable fields.
    ///
    /// # Safety
    /// RQ_LOCK must be held by this CPU, and the reference must not outlive
    /// that.
    #[allow(clippy::mut_from_ref)]
    unsafe fn inner(&self) -> &mut TaskInner {
        debug_assert!(RQ_LOCK.is_locked());
        // SAFETY: the caller holds RQ_LOCK, which serialises every access.
        unsafe { &mut *self.inner.get() }
    }
}

/// The run queue's contents, guarded by [`RQ_LOCK`].
struct RunQueue {
    ready: VecDeque<Arc<Task>>,
    sleeping: Vec<Arc<Task>>,
    current: [Option<Arc<Task>>; MAX_CPUS],
    idle: [Option<Arc<Task>>; MAX_CPUS],
    /// The task a CPU just switched away from, dropped by the next task.
    last: [Option<Arc<Task>>; MAX_CPUS],
    /// The root loaded on each CPU.
    loaded_root: [Option<PhysAddr>; MAX_CPUS],
}

struct RqCell(UnsafeCell<RunQueue>);
// SAFETY: accessed only with RQ_LOCK held (see `rq`).
unsafe impl Sync for RqCell {}

static RQ_LOCK: RawSpinLock = RawSpinLock::new();
static RQ: RqCell = RqCell(UnsafeCell::new(RunQueue {
    ready: VecDeque::new(),
    sleeping: Vec::new(),
    current: [const { None }; MAX_CPUS],
    idle: [const { None }; MAX_CPUS],
    last: [const { None }; MAX_CPUS],
    loaded_root: [None; MAX_CPUS],
}));

/// The run queue.
///
/// # Safety
/// RQ_LOCK must be held by this CPU, and the reference must not outlive
/// that.
#[allow(clippy::mut_from_ref)]
unsafe fn rq() -> &'static mut RunQueue {
    debug_assert!(RQ_LOCK.is_locked());
    // SAFETY: the caller holds RQ_LOCK.
    unsafe { &mut *RQ.0.get() }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static TICKS: AtomicU64 = AtomicU64::new(0);
static NEED_RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// CPUs running their idle task (they look at the run queue only when
/// interrupted, so a task made ready must wake one: [`kick_idle_cpu`]).
static IDLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static STARTED: AtomicBool = AtomicBool::new(false);
/// CPUs that run tasks.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// This CPU's index (0 = boot CPU).
pub fn cpu_index() -> usize {
    Arch::cpu_index()
}

/// True when CPU `cpu` runs tasks.
pub fn cpu_online(cpu: usize) -> bool {
    cpu < MAX_CPUS && ONLINE[cpu].load(Ordering::Acquire)
}

/// How many CPUs run tasks.
pub fn nr_cpus_online() -> usize {
    ONLINE.iter().filter(|o| o.load(Ordering::Acquire)).count()
}

/// The indexes of the CPUs that run tasks (there may be gaps, if a CPU
/// failed to start).
pub fn online_cpus() -> impl Iterator<Item = usize> {
    (0..MAX_CPUS).filter(|&c| cpu_online(c))
}

/// A task was made ready: if it may run on an idle CPU other than this
/// one, send that CPU the kernel IPI so it schedules now rather than at
/// its next tick.
fn kick_idle_cpu(affinity: Option<usize>) {
    let me = cpu_index();
    let target = match affinity {
        Some(cpu) => (cpu != me && IDLE[cpu].load(Ordering::Relaxed)).then_some(cpu),
        None => online_cpus().find(|&c| c != me && IDLE[c].load(Ordering::Relaxed)),
    };
    if let Some(cpu) = target {
        Arch::send_ipi_to(cpu);
    }
}

/// Timer ticks since the scheduler started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// True once [`init`] has run (tasks, sleeping and preemption work).
pub fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

fn new_task(
    name: &'static str,
    affinity: Option<usize>,
    stack: Option<KernelStack>,
    context: Context,
) -> Arc<Task> {
    new_task_with(name, affinity, stack, context, None, None, None)
}

fn new_task_with(
    name: &'static str,
    affinity: Option<usize>,
    stack: Option<KernelStack>,
    context: Context,
    body: Option<Box<dyn FnMut() + Send>>,
    keep: Option<Arc<dyn core::any::Any + Send + Sync>>,
    root: Option<PhysAddr>,
) -> Arc<Task> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if let Some(stack) = &stack {
        stack.set_owner(id);
    }
    Arc::new(Task {
        id,
        name,
        affinity: AtomicUsize::new(affinity.unwrap_or(ANY_CPU)),
        _stack: stack,
        killed: IrqSpinLock::new(None),
        body: spin::Mutex::new(body),
        _keep: keep,
        cpu_ns: AtomicU64::new(0),
        on_cpu_since: AtomicU64::new(Arch::now_ns()),
        inner: UnsafeCell::new(TaskInner {
            state: TaskState::Ready,
            context,
            joiner: None,
            root,
            unpark_token: false,
        }),
    })
}

/// Why a task could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No frames for its kernel stack.
    NoMemory,
    /// The CPU asked for does not run tasks.
    NoSuchCpu(usize),
}

/// A kernel stack with its guard ([`crate::memory::stacks`]), and the
/// address its stack pointer starts from.
fn alloc_stack() -> Result<(KernelStack, u64), SpawnError> {
    let stack = KernelStack::alloc().map_err(|_| SpawnError::NoMemory)?;
    let top = stack.top();
    Ok((stack, top))
}

/// What an idle task does: wait for an interrupt; reschedule when the
/// tick or an IPI asks for it.
fn idle_forever() -> ! {
    loop {
        Arch::irq_disable();
        if NEED_RESCHED[cpu_index()].swap(false, Ordering::Relaxed) {
            schedule();
        }
        // Sleeps until an interrupt, then takes it with interrupts on; the
        // tick marks a reschedule, handled at the top of the loop.
        Arch::wait_for_interrupt();
    }
}

extern "C" fn idle_entry(_: usize) -> ! {
    finish_switch();
    idle_forever()
}

/// Starts scheduling on the boot CPU: the running flow becomes the task
/// `main`, an idle task is made, the tick starts and interrupts go on.
pub fn init() -> Result<(), SpawnError> {
    let main = new_task("main", Some(0), None, Context::default());
    let (stack, top) = alloc_stack()?;
    // SAFETY: the stack was just allocated for the idle task and is freed
    // only when the task is dropped, which never happens.
    let idle = new_task("idle", Some(0), Some(stack), unsafe { Arch::new_context(top, idle_entry, 0) });
    Arch::irq_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        main.inner().state = TaskState::Running;
        let rq = rq();
        // Room for this many waiting tasks up front, so that scheduling
        // (which runs in interrupts, too) does not allocate in the common
        // case; more tasks only grow the lists.
        rq.ready.reserve(RESERVED_TASKS);
        rq.sleeping.reserve(RESERVED_TASKS);
        rq.current[0] = Some(main);
        rq.idle[0] = Some(idle);
    }
    RQ_LOCK.unlock();
    arch::irq::set_hooks(arch::irq::Hooks { timer: on_tick, ipi: on_ipi, after_irq: preempt });
    arch::trap::set_stack_fault_hook(on_stack_fault);
    ONLINE[0].store(true, Ordering::Release);
    STARTED.store(true, Ordering::Release);
    Arch::start_timer(TICK_HZ);
    Arch::irq_enable();
    Ok(())
}

/// Runs a secondary CPU from its start-up stack on: the running flow
/// becomes this CPU's idle task, its tick starts, and it schedules forever.
/// The arch code has set up the CPU (tables, vectors, interrupt controller,
/// index) with interrupts off.
pub fn run_secondary(cpu: usize) -> ! {
    assert!(cpu > 0 && cpu < MAX_CPUS, "run_secondary: bad CPU index {cpu}");
    debug_assert_eq!(cpu_index(), cpu);
    let idle = new_task("idle", Some(cpu), None, Context::default());
    Arch::irq_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        idle.inner().state = TaskState::Running;
        let rq = rq();
        rq.current[cpu] = Some(idle.clone());
        rq.idle[cpu] = Some(idle);
    }
    RQ_LOCK.unlock();
    IDLE[cpu].store(true, Ordering::Relaxed);
    ONLINE[cpu].store(true, Ordering::Release);
    Arch::start_timer(TICK_HZ);
    idle_forever()
}

/// The timer interrupt: the boot CPU keeps time and wakes sleepers; every
/// CPU asks for a reschedule (its time slice is over).
fn on_tick() {
    NR_CPU_TICKS[cpu_index()].fetch_add(1, Ordering::Relaxed);
    if cpu_index() != 0 {
        NEED_RESCHED[cpu_index()].store(true, Ordering::Relaxed);
        return;
    }
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    // Work of other subsystems that must run once a tick (the disks look
    // for completions whose interrupt was missed).
    if let Some(hook) = TICK_HOOK.get() {
        hook();
    }
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let rq = rq();
        let mut i = 0;
        while i < rq.sleeping.len() {
            let due = matches!(
                rq.sleeping[i].inner().state,
                TaskState::Sleeping(at) | TaskState::ParkedUntil(at) if at <= now
            );
            if due {
                let task = rq.sleeping.swap_remove(i);
                task.inner().state = TaskState::Ready;
                kick_idle_cpu(task.affinity());
                rq.ready.push_back(task);
            } else {
                i += 1;
            }
        }
    }
    RQ_LOCK.unlock();
    NEED_RESCHED[cpu_index()].store(true, Ordering::Relaxed);
}

/// The kernel IPI: serve a TLB shootdown request, and reschedule (a task
/// may have been made ready for this CPU).
fn on_ipi() {
    NR_CPU_IPIS[cpu_index()].fetch_add(1, Ordering::Relaxed);
    if let Some(hook) = IPI_HOOK.get() {
        hook();
    }
    NEED_RESCHED[cpu_index()].store(true, Ordering::Relaxed);
}

static TICK_HOOK: spin::Once<fn()> = spin::Once::new();
static IPI_HOOK: spin::Once<fn()> = spin::Once::new();

/// Has `hook` called on the boot CPU at every timer tick, in interrupt
/// context (interrupts off, no lock of the scheduler held): for work a
/// subsystem above the scheduler must not miss, such as a disk completion
/// whose interrupt was lost. Set once, at boot.
pub fn set_tick_hook(hook: fn()) {
    TICK_HOOK.call_once(|| hook);
}

/// Has `hook` called on every CPU that takes the kernel IPI, in interrupt
/// context, before the CPU reschedules: the TLB shootdown serves its
/// flush requests there. Set once, at boot, before any IPI is sent.
pub fn set_ipi_hook(hook: fn()) {
    IPI_HOOK.call_once(|| hook);
}

static NR_SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// Per-CPU counts: ticks taken, IPIs taken, task switches made.
static NR_CPU_TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NR_CPU_IPIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NR_CPU_SWITCHES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// (ticks, IPIs, switches) taken by CPU `cpu` so far.
pub fn cpu_stats(cpu: usize) -> (u64, u64, u64) {
    (
        NR_CPU_TICKS[cpu].load(Ordering::Relaxed),
        NR_CPU_IPIS[cpu].load(Ordering::Relaxed),
        NR_CPU_SWITCHES[cpu].load(Ordering::Relaxed),
    )
}

/// Counts a completed TLB shootdown (for the benchmark).
pub fn note_shootdown() {
    NR_SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

/// TLB shootdowns completed so far.
pub fn nr_shootdowns() -> u64 {
    NR_SHOOTDOWNS.load(Ordering::Relaxed)
}

/// A bit mask of the CPUs whose loaded root is `root`.
pub fn cpus_with_root(root: PhysAddr) -> u32 {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    let mask = unsafe {
        rq().loaded_root
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == Some(root))
            .fold(0u32, |m, (i, _)| m | 1 << i)
    };
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
    mask
}

/// The preemption point after every interrupt (interrupts disabled).
fn preempt() {
    if NEED_RESCHED[cpu_index()].swap(false, Ordering::Relaxed) {
        schedule();
    }
}

/// Gives the CPU to the next ready task (or idle); returns when this task
/// runs again. Interrupts must be disabled.
fn schedule() {
    debug_assert!(!Arch::irq_enabled(), "schedule with interrupts on");
    RQ_LOCK.lock();
    schedule_locked();
}

/// [`schedule`] with RQ_LOCK already held; releases it.
fn schedule_locked() {
    let cpu = cpu_index();
    // SAFETY (whole body): RQ_LOCK is held until `finish_switch` (here or in
    // the next task) releases it; every `inner()` and `rq()` use is inside.
    unsafe {
        let rq = rq();
        let prev = rq.current[cpu].clone().expect("schedule: no current task");
        let is_idle = rq.idle[cpu].as_ref().is_some_and(|t| Arc::ptr_eq(t, &prev));
        match prev.inner().state {
            TaskState::Running if !is_idle => {
                prev.inner().state = TaskState::Ready;
                rq.ready.push_back(prev.clone());
                // Moved away from this CPU (`set_affinity`): its new CPU
                // may be idle, waiting for an interrupt.
                if prev.affinity().is_some_and(|c| c != cpu) {
                    kick_idle_cpu(prev.affinity());
                }
            }
            TaskState::Running => prev.inner().state = TaskState::Ready,
            TaskState::Sleeping(_) | TaskState::ParkedUntil(_) => rq.sleeping.push(prev.clone()),
            TaskState::Ready | TaskState::Blocked | TaskState::Parked | TaskState::Dead => {}
        }
        let pos = rq.ready.iter().position(|t| t.affinity().is_none_or(|c| c == cpu));
        let next = match pos {
            Some(i) => rq.ready.remove(i).expect("schedule: position in range"),
            None => rq.idle[cpu].clone().expect("schedule: no idle task"),
        };
        next.inner().state = TaskState::Running;
        let next_is_idle = rq.idle[cpu].as_ref().is_some_and(|t| Arc::ptr_eq(t, &next));
        IDLE[cpu].store(next_is_idle, Ordering::Relaxed);
        if Arc::ptr_eq(&next, &prev) {
            RQ_LOCK.unlock();
            return;
        }
        let root = next.inner().root;
        if rq.loaded_root[cpu] != root {
            load_root(root);
            rq.loaded_root[cpu] = root;
        }
        let now = Arch::now_ns();
        let ran = now.saturating_sub(prev.on_cpu_since.load(Ordering::Relaxed));
        prev.cpu_ns.fetch_add(ran, Ordering::Relaxed);
        next.on_cpu_since.store(now, Ordering::Relaxed);
        let from: *mut Context = &mut prev.inner().context;
        let to: *const Context = &next.inner().context;
        rq.current[cpu] = Some(next);
        rq.last[cpu] = Some(prev);
        NR_CPU_SWITCHES[cpu].fetch_add(1, Ordering::Relaxed);
        Arch::switch_context(from, to);
    }
    finish_switch();
}

/// Run by the task that just got the CPU: drop the reference to the task
/// switched away from (freeing its stack if it died) and release RQ_LOCK.
fn finish_switch() {
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is still held, taken by the task that switched to us.
    let last = unsafe { rq().last[cpu].take() };
    RQ_LOCK.unlock();
    drop(last);
}

/// Loads an address space on this CPU (None: the kernel alone).
fn load_root(root: Option<PhysAddr>) {
    // SAFETY: every root the scheduler loads was made by
    // `PageTable::new_sharing` from the kernel root (so it shares the
    // kernel's `Arch::KERNEL_SHARED` entries), and is owned by the address
    // space the task entered, which outlives the task's stay in it.
    unsafe { Arch::load_user_root(root) };
}

/// Makes the running task run in the address space rooted at `root` from
/// now on (loaded now and on every switch back to it) until the guard drops.
/// The caller keeps the tables alive longer than the guard.
pub fn enter_address_space(root: PhysAddr) -> AddressSpaceGuard {
    set_current_root(Some(root));
    AddressSpaceGuard { _private: () }
}

/// Leaves the address space entered with [`enter_address_space`].
pub struct AddressSpaceGuard {
    _private: (),
}

impl Drop for AddressSpaceGuard {
    fn drop(&mut self) {
        set_current_root(None);
    }
}

fn set_current_root(root: Option<PhysAddr>) {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let rq = rq();
        if let Some(cur) = rq.current[cpu].as_ref() {
            cur.inner().root = root;
        }
        if rq.loaded_root[cpu] != root {
            load_root(root);
            rq.loaded_root[cpu] = root;
        }
    }
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
}

/// Pins the running task to CPU `cpu`, or with `None` lets it run on any
/// CPU again, and returns once it runs where it may: on `cpu` itself
/// when pinned. The explicit way to move a task between CPUs (whether
/// an unpinned task ever changes CPU on its own depends on which CPU
/// finds it ready first, which nothing guarantees).
///
/// # Errors
/// [`SpawnError::NoSuchCpu`] when `cpu` does not run tasks; nothing changed.
pub fn set_affinity(cpu: Option<usize>) -> Result<(), SpawnError> {
    if let Some(c) = cpu.filter(|&c| !cpu_online(c)) {
        return Err(SpawnError::NoSuchCpu(c));
    }
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    let me = cpu_index();
    // SAFETY: RQ_LOCK is held.
    let cur = unsafe { rq().current[me].clone().expect("set_affinity: no current task") };
    cur.affinity.store(cpu.unwrap_or(ANY_CPU), Ordering::Relaxed);
    drop(cur);
    if cpu.is_some_and(|c| c != me) {
        // Back in the run queue; only `cpu` may take it from there.
        schedule_locked();
    } else {
        RQ_LOCK.unlock();
    }
    Arch::irq_restore(was);
    debug_assert!(cpu.is_none_or(|c| c == cpu_index()), "set_affinity: resumed on the wrong CPU");
    Ok(())
}

/// Gives up the CPU to other ready tasks.
pub fn yield_now() {
    let was = Arch::irq_save_and_disable();
    schedule();
    Arch::irq_restore(was);
}

/// Sleeps for at least `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    let nr_ticks = (ms * TICK_HZ as u64).div_ceil(1000).max(1);
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let cur = rq().current[cpu].clone().expect("sleep_ms: no current task");
        // The next tick may come at once: count one more, so at least
        // `nr_ticks` whole tick periods pass.
        cur.inner().state = TaskState::Sleeping(ticks() + nr_ticks + 1);
    }
    schedule_locked();
    Arch::irq_restore(was);
}

/// The running task.
///
/// # Panics
/// Before [`init`] (no task runs yet: a kernel bug).
pub fn current_task() -> Arc<Task> {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    let cur = unsafe { rq().current[cpu_index()].clone() };
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
    cur.expect("current_task: the scheduler has not started")
}

/// The running task's id; 0 before the scheduler starts (ids start at 1).
/// Any context in which the caller does not hold the run-queue lock (the
/// allocation-failure injector's scope, `memory::fail_alloc`).
pub fn current_id() -> u64 {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    let id = unsafe { rq().current[cpu_index()].as_ref().map_or(0, |t| t.id) };
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
    id
}

/// Blocks the running task until [`unpark`] is called on it, or returns at
/// once if that happened since its last `park` (see the module doc). The
/// caller holds no spin lock. May return spuriously: callers loop on their
/// condition.
pub fn park() {
    park_with(None);
}

/// [`park`] with a deadline: returns at the latest once the tick count
/// ([`ticks`]) has reached `tick` (at once if it has), earlier on an
/// [`unpark`] (or the token of one). The timed wait of user calls
/// (`nanosleep`, a futex wait with a timeout): a signal's kick ends it.
/// The caller holds no spin lock and re-checks its condition and clock.
pub fn park_until(tick: u64) {
    park_with(Some(tick));
}

/// [`park`] (`until` is `None`) and [`park_until`].
fn park_with(until: Option<u64>) {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is held. With a deadline: the tick that reaches it
    // either counted before the check below (no park) or scans the
    // sleeping list after this CPU released RQ_LOCK (it takes the lock to
    // scan).
    let parked = unsafe {
        let cur = rq().current[cpu].as_ref().expect("park: no current task");
        let inner = cur.inner();
        if inner.unpark_token {
            inner.unpark_token = false;
            false
        } else {
            match until {
                Some(tick) if ticks() >= tick => false,
                Some(tick) => {
                    inner.state = TaskState::ParkedUntil(tick);
                    true
                }
                None => {
                    inner.state = TaskState::Parked;
                    true
                }
            }
        }
    };
    if parked {
        schedule_locked();
    } else {
        RQ_LOCK.unlock();
    }
    Arch::irq_restore(was);
}

/// Parks the running task for about `ns` nanoseconds at most (rounded up
/// to whole ticks; the current tick is partly over, so it may return up
/// to a tick early) or until [`unpark`]: see [`park_until`]. Callers loop
/// on the clock, so a sleep ends at most about a tick after its deadline.
pub fn park_for_ns(ns: u64) {
    let tick_ns = 1_000_000_000 / TICK_HZ as u64;
    park_until(ticks() + ns.div_ceil(tick_ns).max(1));
}

/// Makes a task parked in [`park`] or [`park_until`] ready again; if it is
/// not parked, its next `park` returns at once. Callable from interrupt
/// handlers (it takes RQ_LOCK with interrupts disabled).
pub fn unpark(task: &Arc<Task>) {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let inner = task.inner();
        match inner.state {
            TaskState::Parked | TaskState::ParkedUntil(_) => {
                if matches!(inner.state, TaskState::ParkedUntil(_)) {
                    // Off the sleeping list, where `schedule_locked` put it
                    // in the same hold of RQ_LOCK that parked it.
                    rq().sleeping.retain(|t| !Arc::ptr_eq(t, task));
                }
                inner.state = TaskState::Ready;
                rq().ready.push_back(task.clone());
                kick_idle_cpu(task.affinity());
                // Called from an interrupt that woke this CPU out of its
                // idle task: schedule on the way out rather than at the
                // next tick.
                let me = cpu_index();
                if IDLE[me].load(Ordering::Relaxed) && task.affinity().is_none_or(|c| c == me) {
                    NEED_RESCHED[me].store(true, Ordering::Relaxed);
                }
            }
            _ => inner.unpark_token = true,
        }
    }
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
}

/// The entry of every spawned task: finish the switch that started it,
/// run its closure with interrupts on, then die.
extern "C" fn task_entry(arg: usize) -> ! {
    finish_switch();
    Arch::irq_enable();
    // SAFETY: `arg` is the address of this task's `Task`, which the run
    // queue's `current` slot keeps alive while the task runs.
    let task = unsafe { &*(arg as *const Task) };
    {
        // Called in place (by reference): if the kernel ends the task
        // inside, the body is dropped later with the task, not leaked.
        let mut body = task.body.lock();
        if let Some(f) = body.as_mut() {
            f();
        }
    }
    exit()
}

/// The root of the running task's address space, if it runs in one.
pub fn current_root() -> Option<PhysAddr> {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    let root = unsafe { rq().current[cpu_index()].as_ref().and_then(|t| t.inner().root) };
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
    root
}

/// The arch's report of a fault that may be a kernel stack overflow (on
/// its emergency stack, interrupts off; `arch_common::trap`): when the
/// faulting address or the stack pointer lies in the guard of a task's
/// stack ([`crate::memory::stacks`]), end that task with "kernel stack
/// overflow", which names it, and never return. When interrupts were off
/// the task may hold a spin lock that nothing would ever release: panic,
/// naming the task, instead. Returns when the fault is not in a guard.
fn on_stack_fault(fault: &arch::trap::StackFault) {
    let Some(slot) = stacks::guard_slot(fault.addr).or_else(|| stacks::guard_slot(fault.sp)) else {
        return;
    };
    let owner = stacks::owner(slot);
    let what = alloc::format!(
        "kernel stack overflow (SP {:#x}, fault at {:#x}, PC {:#x})",
        fault.sp,
        fault.addr,
        fault.pc
    );
    if !fault.irqs_were_on {
        panic!("{what} in task {owner}, with interrupts off: it may hold a spin lock, so it cannot be ended alone");
    }
    let current = current_task();
    if current.id != owner {
        panic!(
            "{what}: an access to the guard of task {owner}'s stack by task {} ({})",
            current.id, current.name
        );
    }
    drop(current);
    kill_current(what)
}

/// Tasks ended by [`kill_current`] since boot.
static NR_KILLED: AtomicU64 = AtomicU64::new(0);

/// How many tasks the kernel has ended ([`kill_current`]) since boot.
pub fn nr_killed() -> u64 {
    NR_KILLED.load(Ordering::Relaxed)
}

/// Ends the running task because of what it did (a refused memory access,
/// no memory for its fault): says so on the console, records `why` for its
/// joiner, and never returns. Called from the fault handler, on the task's
/// own stack, holding no lock.
pub fn kill_current(why: String) -> ! {
    Arch::irq_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    let task = unsafe { rq().current[cpu_index()].clone().expect("kill_current: no current task") };
    RQ_LOCK.unlock();
    crate::println!("task {} ({}) killed: {why}", task.id, task.name);
    NR_KILLED.fetch_add(1, Ordering::Relaxed);
    *task.killed.lock() = Some(why);
    drop(task);
    exit()
}

/// Ends the running task: wake its joiner, never run again.
fn exit() -> ! {
    Arch::irq_disable();
    RQ_LOCK.lock();
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let rq = rq();
        let cur = rq.current[cpu].clone().expect("exit: no current task");
        cur.inner().state = TaskState::Dead;
        if let Some(joiner) = cur.inner().joiner.take() {
            joiner.inner().state = TaskState::Ready;
            kick_idle_cpu(joiner.affinity());
            rq.ready.push_back(joiner);
        }
    }
    schedule_locked();
    unreachable!("exit: a dead task was scheduled again");
}

/// The result slot a task fills and its [`JoinHandle`] empties. Held with
/// interrupts off (as every lock a task and another may take on one CPU):
/// a holder preempted by the tick must never leave the other spinning with
/// interrupts off.
type ResultSlot<T> = Arc<IrqSpinLock<Option<T>>>;

/// Waits for a task to finish and gives its result.
pub struct JoinHandle<T> {
    task: Arc<Task>,
    result: ResultSlot<T>,
}

/// What [`JoinHandle::join`] gives for a task the kernel ended
/// ([`kill_current`]) instead of a result: which task, and why. Whose
/// fault it was depends on the task (a refused access in a test that
/// expects it; a kernel bug in a task that should never make one): the
/// caller decides, and reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    pub id: u64,
    pub name: &'static str,
    /// The reason [`kill_current`] was given (also printed when it ended
    /// the task).
    pub why: String,
}

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} ({}) was killed: {}", self.id, self.name, self.why)
    }
}

/// For the many callers that report errors as text (`h.join()?` in a
/// function returning `Result<_, String>`).
impl From<Killed> for String {
    fn from(k: Killed) -> String {
        alloc::format!("{k}")
    }
}

impl<T> JoinHandle<T> {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.task.id
    }

    /// True once the task has returned or been ended (its result, or why
    /// it was ended, is there for a join). Does not block.
    pub fn is_finished(&self) -> bool {
        self.result.lock().is_some() || self.task.killed.lock().is_some()
    }

    /// Blocks until the task has finished; what it returned, or, when the
    /// kernel ended it ([`kill_current`]), which task and why. Never
    /// panics for a killed task: a kernel task that makes a refused access
    /// is a bug the caller reports with the task's name.
    pub fn join(self) -> Result<T, Killed> {
        loop {
            let was = Arch::irq_save_and_disable();
            RQ_LOCK.lock();
            let cpu = cpu_index();
            // SAFETY: RQ_LOCK is held.
            let dead = unsafe {
                if self.task.inner().state == TaskState::Dead {
                    true
                } else {
                    let cur = rq().current[cpu].clone().expect("join: no current task");
                    cur.inner().state = TaskState::Blocked;
                    self.task.inner().joiner = Some(cur);
                    false
                }
            };
            if dead {
                RQ_LOCK.unlock();
                Arch::irq_restore(was);
                break;
            }
            schedule_locked();
            Arch::irq_restore(was);
        }
        let killed = self.task.killed.lock().take();
        if let Some(why) = killed {
            return Err(Killed { id: self.task.id, name: self.task.name, why });
        }
        let result = self.result.lock().take();
        Ok(result.expect("join: a dead task that was not killed left no result"))
    }
}

fn spawn_inner<T: Send + 'static>(
    name: &'static str,
    affinity: Option<usize>,
    space: Option<(PhysAddr, Arc<dyn core::any::Any + Send + Sync>)>,
    make_body: impl FnOnce(ResultSlot<T>) -> Box<dyn FnMut() + Send>,
) -> Result<JoinHandle<T>, SpawnError> {
    if let Some(cpu) = affinity {
        if !cpu_online(cpu) {
            return Err(SpawnError::NoSuchCpu(cpu));
        }
    }
    let result = Arc::new(IrqSpinLock::new(None));
    let body = make_body(result.clone());
    let (stack, top) = alloc_stack()?;
    let (root, keep) = match space {
        Some((root, keep)) => (Some(root), Some(keep)),
        None => (None, None),
    };
    let task = new_task_with(name, affinity, Some(stack), Context::default(), Some(body), keep, root);
    // SAFETY: the stack was just allocated for this task and is freed when
    // the task is dropped, after it has died and been switched away from;
    // the argument is the task's own address, alive while it runs.
    let context = unsafe { Arch::new_context(top, task_entry, Arc::as_ptr(&task) as usize) };
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held; the task is not running anywhere yet.
    unsafe {
        task.inner().context = context;
        rq().ready.push_back(task.clone());
    }
    kick_idle_cpu(affinity);
    RQ_LOCK.unlock();
    Arch::irq_restore(was);
    Ok(JoinHandle { task, result })
}

/// The body of an ordinary task: run `f` once, keep its result.
fn once_body<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl FnOnce(ResultSlot<T>) -> Box<dyn FnMut() + Send> {
    move |slot| {
        let mut f = Some(f);
        Box::new(move || {
            if let Some(f) = f.take() {
                let value = f();
                *slot.lock() = Some(value);
            }
        })
    }
}

/// Starts a task that runs `f` inside an address space, on any CPU or
/// pinned to `cpu` (its root is loaded before the task first runs; `keep`
/// is held as long as the task, to keep the space alive). `f` is called by
/// reference and stays on the heap, so if the kernel ends the task for what
/// it did ([`kill_current`]), what `f` captured is dropped with the task
/// instead of leaking.
pub fn spawn_in<T: Send + 'static>(
    cpu: Option<usize>,
    root: PhysAddr,
    keep: Arc<dyn core::any::Any + Send + Sync>,
    name: &'static str,
    f: impl Fn() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    spawn_inner(name, cpu, Some((root, keep)), move |slot| {
        Box::new(move || {
            let value = f();
            *slot.lock() = Some(value);
        })
    })
}

/// Starts a task on any CPU.
pub fn spawn<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    spawn_inner(name, None, None, once_body(f))
}

/// Starts a task that runs only on CPU `cpu`.
pub fn spawn_on<T: Send + 'static>(
    cpu: usize,
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    spawn_inner(name, Some(cpu), None, once_body(f))
}
