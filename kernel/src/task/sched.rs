//! The scheduler: kernel tasks, preemptive, each optionally inside an
//! address space.
//!
//! ## Model
//!
//! A [`Task`] has its own kernel stack (frames from the buddy allocator)
//! and a saved [`Context`]. Tasks are `Ready` (in the run queue), `Running`
//! (on a CPU), `Sleeping` (until a tick), `Blocked` (until another task wakes
//! it: join), `Parked` (until [`unpark`]: the wait primitive of
//! [`crate::task::wait`] and device drivers) or `Dead`. Each CPU has an idle task, which runs when nothing is
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
//! - Park and unpark: [`park`] blocks the running task until some code calls
//!   [`unpark`] on it, from a task or an interrupt handler. A task's
//!   `unpark_token` (under RQ_LOCK) remembers an unpark that came while the
//!   task was not parked, and the next `park` consumes it and returns at
//!   once: so a waiter that publishes itself, checks its condition, then
//!   parks, cannot miss a wake-up that comes between the check and the
//!   park. Wake-ups may be spurious; waiters re-check in a loop.
//!
//! All CPUs share the one run queue, so a task runs wherever a CPU is free
//! (migration is the default); `spawn_on` pins it. A CPU's index comes from
//! its per-CPU register (`Arch::cpu_index`); the boot CPU keeps time.

use crate::arch;
use crate::arch::context::Context;
use crate::arch::prelude::*;
use crate::memory;
use crate::sync::RawSpinLock;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::PhysAddr;

/// The most CPUs the kernel manages.
pub const MAX_CPUS: usize = crate::bootinfo::MAX_CPUS;
// The arch keeps per-CPU state for every CPU the kernel may run.
const _: () = assert!(Arch::MAX_CPUS >= MAX_CPUS, "the arch keeps state for fewer CPUs than the kernel runs");
/// Timer interrupts per second (the time slice is one tick).
pub const TICK_HZ: u32 = 100;
/// Ready and sleeping tasks the run queue holds without allocating.
const RESERVED_TASKS: usize = 256;
/// Order of a task's kernel stack: 2^3 frames = 32 KiB.
const STACK_ORDER: u8 = 3;

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
    /// Pinned to this CPU, or any CPU.
    pub affinity: Option<usize>,
    /// The kernel stack's frames (None for `main` and the boot stacks).
    stack: Option<PhysAddr>,
    /// Why the task was ended by the kernel, if it was ([`kill_current`]).
    killed: spin::Mutex<Option<alloc::string::String>>,
    /// What the task runs. It stays here, on the heap, while it runs (it is
    /// called by reference), so a task ended by the kernel mid-way leaks
    /// nothing it captured: the box is dropped with the task.
    body: spin::Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// Kept alive as long as the task (the address space it runs in).
    _keep: Option<Arc<dyn core::any::Any + Send + Sync>>,
    inner: UnsafeCell<TaskInner>,
}

// SAFETY: `inner` is only accessed with RQ_LOCK held (see `inner`), which
// serialises all CPUs; the other fields are immutable after creation.
unsafe impl Sync for Task {}
// SAFETY: as above; a Task holds no thread-bound data.
unsafe impl Send for Task {}

impl Task {
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

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(pa) = self.stack {
            memory::free_frames(pa, STACK_ORDER);
        }
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
    stack: Option<PhysAddr>,
    context: Context,
) -> Arc<Task> {
    new_task_with(name, affinity, stack, context, None, None, None)
}

fn new_task_with(
    name: &'static str,
    affinity: Option<usize>,
    stack: Option<PhysAddr>,
    context: Context,
    body: Option<Box<dyn FnMut() + Send>>,
    keep: Option<Arc<dyn core::any::Any + Send + Sync>>,
    root: Option<PhysAddr>,
) -> Arc<Task> {
    Arc::new(Task {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        affinity,
        stack,
        killed: spin::Mutex::new(None),
        body: spin::Mutex::new(body),
        _keep: keep,
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

fn alloc_stack() -> Result<(PhysAddr, u64), SpawnError> {
    let pa = memory::alloc_frames(STACK_ORDER).map_err(|_| SpawnError::NoMemory)?;
    let top = memory::phys_to_virt(pa).as_u64() + (4096 << STACK_ORDER);
    Ok((pa, top))
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
    // SAFETY: the 32 KiB stack was just allocated for the idle task and is
    // freed only when the task is dropped, which never happens.
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
            let due = matches!(rq.sleeping[i].inner().state, TaskState::Sleeping(at) if at <= now);
            if due {
                let task = rq.sleeping.swap_remove(i);
                task.inner().state = TaskState::Ready;
                kick_idle_cpu(task.affinity);
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
            }
            TaskState::Running => prev.inner().state = TaskState::Ready,
            TaskState::Sleeping(_) => rq.sleeping.push(prev.clone()),
            TaskState::Ready | TaskState::Blocked | TaskState::Parked | TaskState::Dead => {}
        }
        let pos = rq.ready.iter().position(|t| t.affinity.is_none_or(|c| c == cpu));
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
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    let cpu = cpu_index();
    // SAFETY: RQ_LOCK is held.
    let parked = unsafe {
        let cur = rq().current[cpu].as_ref().expect("park: no current task");
        let inner = cur.inner();
        if inner.unpark_token {
            inner.unpark_token = false;
            false
        } else {
            inner.state = TaskState::Parked;
            true
        }
    };
    if parked {
        schedule_locked();
    } else {
        RQ_LOCK.unlock();
    }
    Arch::irq_restore(was);
}

/// Makes a task parked in [`park`] ready again; if it is not parked, its
/// next `park` returns at once. Callable from interrupt handlers (it takes
/// RQ_LOCK with interrupts disabled).
pub fn unpark(task: &Arc<Task>) {
    let was = Arch::irq_save_and_disable();
    RQ_LOCK.lock();
    // SAFETY: RQ_LOCK is held.
    unsafe {
        let inner = task.inner();
        if inner.state == TaskState::Parked {
            inner.state = TaskState::Ready;
            rq().ready.push_back(task.clone());
            kick_idle_cpu(task.affinity);
            // Called from an interrupt that woke this CPU out of its idle
            // task: schedule on the way out rather than at the next tick.
            let me = cpu_index();
            if IDLE[me].load(Ordering::Relaxed) && task.affinity.is_none_or(|c| c == me) {
                NEED_RESCHED[me].store(true, Ordering::Relaxed);
            }
        } else {
            inner.unpark_token = true;
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
pub fn kill_current(why: alloc::string::String) -> ! {
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
            kick_idle_cpu(joiner.affinity);
            rq.ready.push_back(joiner);
        }
    }
    schedule_locked();
    unreachable!("exit: a dead task was scheduled again");
}

/// Waits for a task to finish and gives its result.
pub struct JoinHandle<T> {
    task: Arc<Task>,
    result: Arc<spin::Mutex<Option<T>>>,
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

    /// Blocks until the task has finished; returns what it returned.
    ///
    /// # Panics
    /// If the kernel ended the task ([`kill_current`]): a kernel task that
    /// makes a refused access is a kernel bug. Tests that expect it use
    /// [`JoinHandle::join_or_killed`].
    pub fn join(self) -> T {
        let name = self.task.name;
        match self.join_or_killed() {
            Ok(v) => v,
            Err(why) => panic!("join: task `{name}` was killed: {why}"),
        }
    }

    /// Blocks until the task has finished; its result, or why the kernel
    /// ended it.
    pub fn join_or_killed(self) -> Result<T, alloc::string::String> {
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
        if let Some(why) = self.task.killed.lock().take() {
            return Err(why);
        }
        Ok(self.result.lock().take().expect("join: a dead task left no result"))
    }
}

fn spawn_inner<T: Send + 'static>(
    name: &'static str,
    affinity: Option<usize>,
    space: Option<(PhysAddr, Arc<dyn core::any::Any + Send + Sync>)>,
    make_body: impl FnOnce(Arc<spin::Mutex<Option<T>>>) -> Box<dyn FnMut() + Send>,
) -> Result<JoinHandle<T>, SpawnError> {
    if let Some(cpu) = affinity {
        if !cpu_online(cpu) {
            return Err(SpawnError::NoSuchCpu(cpu));
        }
    }
    let result = Arc::new(spin::Mutex::new(None));
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
) -> impl FnOnce(Arc<spin::Mutex<Option<T>>>) -> Box<dyn FnMut() + Send> {
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
