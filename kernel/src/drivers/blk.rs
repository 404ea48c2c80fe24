//! Block devices: the virtio-blk disks on the PCI bus, read and written in
//! whole 4 KiB pages by the swap code.
//!
//! ## What a caller gets
//!
//! [`disks`] lists every virtio-blk function found at boot ([`init`]), in
//! PCI order, named `vda`, `vdb`, ... [`BlockDevice::read_pages`] and
//! [`BlockDevice::write_pages`] move `nr_pages` pages between the disk
//! (page `p` is sectors `8p..8p+8`) and `nr_pages` physically contiguous
//! frames (a folio of any order); [`BlockDevice::read_sectors`] and
//! [`BlockDevice::write_sectors`] do the same in 512-byte sectors, for a
//! raw disk's transfer into a user's pinned page (`crate::fs::dev`). They
//! run in task context, may sleep, and
//! must be called holding no spin lock (in particular never the
//! address-space lock). Every failure comes back as an [`IoError`] naming
//! who is to blame; nothing here panics on a device's or caller's mistake.
//!
//! ## Requests
//!
//! A call is cut into requests of at most `max_request_pages` pages (the
//! device's `size_max` when it has one, else [`MAX_REQUEST_PAGES`] = 2 MiB),
//! issued one after another. Each request is one virtio-blk request of
//! three descriptors: its header (type, sector) and status byte live in a
//! *slot* of a DMA page the disk owns, its data is the frames themselves
//! (one descriptor: the frames are contiguous, so the device's `seg_max`
//! never matters). With indirect descriptors (QEMU offers them) a request
//! takes one ring entry.
//!
//! ## Concurrency: one virtqueue, many requests in flight
//!
//! Everything about a disk's queue (the virtqueue, the slots) is under its
//! `queue` lock, an [`IrqSpinLock`]: the interrupt handler takes it too.
//! Each in-flight request owns one of [`QUEUE_SIZE`] slots, which moves
//! `Free -> InFlight { token, waiter } -> Done(status) -> Free`: the
//! submitting task takes a free slot and submits under the lock; whoever
//! holds the lock and sees completions in the used ring (the interrupt
//! handler, or a waiter re-checking) *reaps* them, in used-ring order (the
//! virtqueue gives them back only in that order), recording each status in
//! its slot and unparking that slot's waiter after dropping the lock; the
//! owner takes the status and frees the slot. So several tasks on several
//! CPUs keep up to 16 requests in flight, and each waiter is woken for its
//! own request only. A task that finds no free slot, or no free descriptor
//! (`QueueFull`), waits on the disk's `room` [`WaitQueue`], woken whenever
//! a slot or descriptors are given back. Only a task that holds no slot
//! waits for room (a submitter without waiting is told there is none
//! instead, below), so waiting for room cannot deadlock: every slot taken
//! belongs to a task that is not waiting for room and gives it back once
//! its request has ended.
//!
//! ## Submitting without waiting
//!
//! [`BlockDevice::submit_write_pages`] submits one request and returns a
//! [`Ticket`] at once; [`BlockDevice::wait`] waits for it later. The
//! synchronous calls are the two back to back. So one task (swap-out)
//! keeps several requests in flight and works on while the disk writes;
//! the interrupt handler reaps their completions into their slots and
//! unparks the submitter. A ticket owns its slot until it is waited for, so
//! every ticket is waited for once. When no slot or descriptor is free,
//! `submit_write_pages` returns `Ok(None)` rather than wait for room: its
//! caller may hold other tickets, and waits for one of its own first.
//!
//! ## Gathered writes: several folios in one request
//!
//! Swap-out writes folios whose slots follow one another; each folio is
//! contiguous, but the folios are not. `VirtIOBlk` (virtio-drivers 0.13)
//! takes one data buffer per request, so [`BlockDevice::submit_write_gather`]
//! copies up to [`GATHER_PAGES`] pages of such parts into a *bounce buffer*
//! and sends them as one request: one descriptor chain, one notification
//! and one interrupt for what were up to 32 requests. A disk has bounce
//! buffers only while [`BlockDevice::enable_write_gather`] gave it some
//! (the swap code, at swapon; [`BlockDevice::disable_write_gather`] takes
//! them back at swapoff): [`QUEUE_SIZE`] of them, one per request that may
//! be in flight, taken and given back under the `bounce` leaf lock. A
//! ticket that holds one gives it back when it is waited for, after the
//! device is done with it (reaped, or reset). Submitting copies the parts,
//! so the caller's frames are read before it returns; the caller still keeps
//! them unchanged until the wait, as for any write. No bounce buffer free
//! means no room, as no free slot does.
//!
//! ## Completion: interrupt, or polling
//!
//! When the disk's INTx line could be attached (`Arch::attach_device_irq`: the IO-APIC
//! on x86_64, a GIC SPI on AArch64), a waiter parks ([`sched::park`]) and
//! the interrupt handler acknowledges the device (reading the ISR status
//! lowers INTx), reaps and unparks. Without a line the waiter polls the used
//! ring, yielding the CPU between polls.
//!
//! ## A disk that stops answering: timeouts and retirement
//!
//! Every request has a deadline, its disk's timeout after it was submitted
//! ([`DEFAULT_TIMEOUT_MS`], changed with [`BlockDevice::set_timeout_ms`]).
//! The tick hook ([`reap_missed_completions`]) unparks the waiter of every
//! request past its deadline; a waiter that finds its request still in
//! flight past the deadline *retires* the disk: it marks it retired (no
//! request is sent any more), resets the device (virtio status 0: the
//! device finishes or abandons every request before the reset completes,
//! so no frame is touched after it), reaps what the device finished as it
//! reset, marks every other request in flight abandoned and wakes its
//! waiter, and calls the retire hook
//! ([`set_retire_hook`]: the swap code stops allocating on the disk; a
//! hook, so that this driver calls nothing above it). The request that
//! timed out fails with [`IoError::TimedOut`], the abandoned ones and every
//! later one with [`IoError::OutOfService`]. So a task waits at most about
//! one timeout for a disk that stopped answering, and so does anybody
//! waiting on what it holds (a folio lock while reclaim writes). A disk
//! whose device completes a request it was never given is retired the same
//! way. A retired disk stays out of service until the next boot.
//!
//! ## Device errors on the console
//!
//! A request the device fails, or that times out, is counted on its disk
//! ([`BlockDevice::nr_device_errors`]); the first is printed whole, later
//! ones at most once every [`ERROR_REPORT_INTERVAL_MS`], as a count with the
//! latest. The caller's mistakes (a bad buffer, a page past the end) are
//! only returned.
//!
//! Locks: a disk's queue lock guards its virtqueue and the table of
//! waiters; the heap's lock may be taken under it (the virtqueue allocates
//! indirect descriptor lists). The run-queue lock (unpark) and the `room`
//! queue's lock are taken only after it is released. Where it sits in the
//! kernel's one order: `docs/src/locking.md`.

use crate::arch;
use crate::arch::prelude::*;
use crate::drivers::dma::KernelHal;
use crate::drivers::pci::{self, Pci};
use crate::memory;
use crate::println;
use crate::sync::IrqSpinLock;
use crate::task::sched::{self, Task};
use crate::task::wait::WaitQueue;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::{PhysAddr, PAGE_SIZE};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;

/// The largest request sent to a device that does not say (2 MiB, a PMD
/// folio).
pub const MAX_REQUEST_PAGES: usize = 512;
/// Requests in flight per disk: the virtqueue size `virtio-drivers` uses.
pub const QUEUE_SIZE: usize = 16;
/// The most pages one gathered write takes (module doc, "Gathered
/// writes"): the size of each bounce buffer.
pub const GATHER_PAGES: usize = 32;
const GATHER_ORDER: u8 = GATHER_PAGES.trailing_zeros() as u8;
const _: () = assert!(GATHER_PAGES.is_power_of_two() && QUEUE_SIZE <= 32);
/// How long a request may go unanswered before its disk is retired (module
/// doc). Generous: a 2 MiB write on a loaded host takes well under a second.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Device errors after a disk's first are reported at most this often.
pub const ERROR_REPORT_INTERVAL_MS: u64 = 5_000;
const SECTORS_PER_PAGE: u64 = PAGE_SIZE / SECTOR_BYTES;
/// A sector: the unit of virtio-blk addresses.
pub const SECTOR_BYTES: u64 = 512;

/// The disk pages sectors `first..first + n` touch: the first and how many
/// (what errors name).
fn pages_of(first: u64, n: usize) -> (u64, usize) {
    let last = first.saturating_add(n as u64).div_ceil(SECTORS_PER_PAGE);
    (first / SECTORS_PER_PAGE, (last - first / SECTORS_PER_PAGE) as usize)
}
pub(crate) const PAGE_BYTES: usize = PAGE_SIZE as usize;
/// virtio PCI ids: the Red Hat vendor, virtio-blk modern and transitional.
const VIRTIO_VENDOR: u16 = 0x1af4;
const VIRTIO_BLK_MODERN: u16 = 0x1042;
const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;
/// Feature bit: `size_max` in the configuration is valid.
const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// Offset of `size_max` in the device configuration.
const CONFIG_SIZE_MAX: usize = 8;
/// Disk names, in PCI order; more disks than this are left out.
const NAMES: [&str; 8] = ["vda", "vdb", "vdc", "vdd", "vde", "vdf", "vdg", "vdh"];

/// Which way data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
        })
    }
}

/// The status a device ended a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `VIRTIO_BLK_S_IOERR`: the medium (the host's file) failed.
    IoErr,
    /// `VIRTIO_BLK_S_UNSUPP`: the device does not do this request.
    Unsupported,
    /// The device was not ready.
    NotReady,
    /// The driver library refused the exchange (a descriptor mismatch).
    Driver(virtio_drivers::Error),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::IoErr => f.write_str("I/O error (VIRTIO_BLK_S_IOERR)"),
            Status::Unsupported => f.write_str("request not supported (VIRTIO_BLK_S_UNSUPP)"),
            Status::NotReady => f.write_str("device not ready"),
            Status::Driver(e) => write!(f, "virtqueue error: {e}"),
        }
    }
}

/// Why a read or write failed. Each variant says who is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The device failed the request (the disk's or the host's fault).
    Device { disk: &'static str, op: Op, first_page: u64, nr_pages: usize, status: Status },
    /// The pages asked for go past the end of the disk (the caller's).
    OutOfRange { disk: &'static str, first_page: u64, nr_pages: usize, capacity_pages: u64 },
    /// The frames are not `nr_pages` whole pages of RAM (the caller's).
    BadBuffer { disk: &'static str, frame: PhysAddr, nr_pages: usize, why: &'static str },
    /// A write to a read-only disk (the caller's).
    ReadOnly { disk: &'static str },
    /// No memory for the request's bookkeeping (the machine's).
    NoMemory { disk: &'static str },
    /// The device did not answer this request within the disk's timeout;
    /// the disk was reset and retired (the device's fault).
    TimedOut { disk: &'static str, op: Op, first_page: u64, nr_pages: usize, after_ms: u64 },
    /// The disk is out of service (the device's fault): it was retired
    /// while this request was in flight or before it was sent.
    OutOfService { disk: &'static str, why: Retirement },
}

/// Why a disk was taken out of service (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// A request got no answer within the timeout.
    NoAnswer { after_ms: u64 },
    /// The device completed a request it was never given.
    StrayCompletion,
}

impl fmt::Display for Retirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retirement::NoAnswer { after_ms } => write!(f, "a request got no answer in {after_ms} ms"),
            Retirement::StrayCompletion => f.write_str("the device completed a request it was never given"),
        }
    }
}

impl IoError {
    /// True when the device is to blame (what the console reports and
    /// [`BlockDevice::nr_device_errors`] counts), false for the caller's
    /// mistakes and the machine's.
    pub fn is_device_error(&self) -> bool {
        matches!(self, IoError::Device { .. } | IoError::TimedOut { .. } | IoError::OutOfService { .. })
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Device { disk, op, first_page, nr_pages, status } => write!(
                f,
                "{disk}: the device failed the {op} of pages {first_page}..{}: {status}",
                first_page + *nr_pages as u64
            ),
            IoError::OutOfRange { disk, first_page, nr_pages, capacity_pages } => write!(
                f,
                "{disk}: pages {first_page}..{} are past the end of the disk ({capacity_pages} pages)",
                first_page.saturating_add(*nr_pages as u64)
            ),
            IoError::BadBuffer { disk, frame, nr_pages, why } => {
                write!(f, "{disk}: bad buffer of {nr_pages} pages at {frame}: {why}")
            }
            IoError::ReadOnly { disk } => write!(f, "{disk}: the disk is read-only"),
            IoError::NoMemory { disk } => write!(f, "{disk}: no memory for the request"),
            IoError::TimedOut { disk, op, first_page, nr_pages, after_ms } => write!(
                f,
                "{disk}: the {op} of pages {first_page}..{} got no answer in {after_ms} ms; \
                 the disk is reset and out of service",
                first_page + *nr_pages as u64
            ),
            IoError::OutOfService { disk, why } => write!(f, "{disk}: the disk is out of service ({why})"),
        }
    }
}

/// A request's header and status, where the device reads and writes them.
#[repr(C)]
struct Header {
    req: BlkReq,
    resp: BlkResp,
}

/// What one slot holds (see the module doc).
enum Slot {
    Free,
    InFlight {
        token: u16,
        op: Op,
        /// The data: `len` bytes at this direct-map address.
        data: usize,
        len: usize,
        /// The task to unpark when it completes (interrupt mode).
        waiter: Option<Arc<Task>>,
        /// The tick after which it has timed out.
        deadline: u64,
    },
    Done(Result<(), virtio_drivers::Error>),
    /// The disk was retired with this request in flight; the device was
    /// reset, so it no longer touches the request's buffers.
    Abandoned,
}

/// A request submitted and not yet waited for
/// ([`BlockDevice::submit_write_pages`]): it owns its slot, which only
/// [`BlockDevice::wait`] gives back, so every ticket must be waited for,
/// once, on its own disk.
#[must_use = "a ticket's slot is given back only by waiting for it"]
#[derive(Debug)]
pub struct Ticket {
    disk: &'static str,
    slot: usize,
    op: Op,
    first_page: u64,
    nr_pages: usize,
    /// The bounce buffer it holds (a gathered write), given back by
    /// [`BlockDevice::wait`].
    bounce: Option<usize>,
}

impl Ticket {
    /// The first disk page the request covers.
    pub fn first_page(&self) -> u64 {
        self.first_page
    }

    /// The pages it covers.
    pub fn nr_pages(&self) -> usize {
        self.nr_pages
    }
}

/// A disk's queue state, under [`BlockDevice::queue`].
struct Queue {
    dev: VirtIOBlk<KernelHal, PciTransport>,
    slots: [Slot; QUEUE_SIZE],
    /// The frame holding the slots' [`Header`]s (never freed: disks live
    /// as long as the kernel).
    headers: PhysAddr,
    /// Set when the disk is retired (module doc); nothing more is sent.
    retired: Option<Retirement>,
    /// A waiter has taken on the device's reset ([`BlockDevice::retire`]).
    reset_claimed: bool,
    /// The reset is done: what the used ring holds now is all the device
    /// will ever give back, and may be reaped.
    reset_done: bool,
}

/// Tasks to unpark once the queue lock is dropped (no heap: the interrupt
/// handler fills it).
struct WakeList {
    tasks: [Option<Arc<Task>>; QUEUE_SIZE],
}

impl WakeList {
    fn new() -> Self {
        WakeList { tasks: [const { None }; QUEUE_SIZE] }
    }

    fn push(&mut self, task: Arc<Task>) {
        if let Some(slot) = self.tasks.iter_mut().find(|t| t.is_none()) {
            *slot = Some(task);
        }
    }

    fn unpark_all(self) {
        for t in self.tasks.iter().flatten() {
            sched::unpark(t);
        }
    }
}

impl Queue {
    fn header(&self, slot: usize) -> *mut Header {
        debug_assert!(slot < QUEUE_SIZE);
        (memory::phys_to_virt(self.headers).as_u64() as *mut Header).wrapping_add(slot)
    }

    /// Hands slot `slot`'s request to the device; the token on success.
    ///
    /// # Safety
    /// `len` bytes at `data` are RAM in the direct map that nothing else
    /// reads or writes until the request is reaped ([`Queue::reap`]).
    unsafe fn submit(
        &mut self,
        slot: usize,
        op: Op,
        sector: u64,
        data: usize,
        len: usize,
    ) -> Result<u16, virtio_drivers::Error> {
        let header = self.header(slot);
        let dev = &mut self.dev;
        // SAFETY: (1) the header is slot `slot`'s, in the disk's DMA frame,
        // used by no other request while this one is in flight (the slot is
        // ours); (2) the caller vouches for the data buffer until reaping,
        // which passes these same buffers back.
        unsafe {
            let h = &mut *header;
            match op {
                Op::Read => {
                    let buf = core::slice::from_raw_parts_mut(data as *mut u8, len);
                    dev.read_blocks_nb(sector as usize, &mut h.req, buf, &mut h.resp)
                }
                Op::Write => {
                    let buf = core::slice::from_raw_parts(data as *const u8, len);
                    dev.write_blocks_nb(sector as usize, &mut h.req, buf, &mut h.resp)
                }
            }
        }
    }

    /// Reaps every completed request (in used-ring order): records its
    /// status in its slot and queues its waiter on `wake`. True when any
    /// ring entries were given back.
    fn reap(&mut self, wake: &mut WakeList) -> bool {
        let mut reaped = false;
        while self.retired.is_none() || self.reset_done {
            let Some(token) = self.dev.peek_used() else { break };
            let Some(slot) =
                self.slots.iter().position(|s| matches!(s, Slot::InFlight { token: t, .. } if *t == token))
            else {
                if self.retired.is_none() {
                    self.stray_completion(wake);
                }
                break;
            };
            let Slot::InFlight { op, data, len, waiter, .. } =
                core::mem::replace(&mut self.slots[slot], Slot::Done(Ok(())))
            else {
                unreachable!("reap: slot {slot} was just found in flight")
            };
            let header = self.header(slot);
            let dev = &mut self.dev;
            // SAFETY: these are the buffers `submit` passed with this token
            // (the slot's header, the data the submitter vouched for);
            // the device has finished with them (the token is in the used
            // ring).
            let result = unsafe {
                let h = &mut *header;
                match op {
                    Op::Read => {
                        let buf = core::slice::from_raw_parts_mut(data as *mut u8, len);
                        dev.complete_read_blocks(token, &h.req, buf, &mut h.resp)
                    }
                    Op::Write => {
                        let buf = core::slice::from_raw_parts(data as *const u8, len);
                        dev.complete_write_blocks(token, &h.req, buf, &mut h.resp)
                    }
                }
            };
            self.slots[slot] = Slot::Done(result);
            if let Some(w) = waiter {
                wake.push(w);
            }
            reaped = true;
        }
        reaped
    }

    /// The device gave back a token we never sent: the disk is retired.
    /// Whoever holds the lock here may be the interrupt handler, which
    /// must not reset the device (that takes the PCI bus and waits for the
    /// device): the requests stay in flight, and the first of their
    /// waiters, woken now, resets it ([`BlockDevice::retire`]).
    fn stray_completion(&mut self, wake: &mut WakeList) {
        self.retired = Some(Retirement::StrayCompletion);
        self.wake_in_flight(wake);
    }

    /// Queues the waiter of every request in flight on `wake` (left in
    /// place: it is unparked again if it parks again).
    fn wake_in_flight(&self, wake: &mut WakeList) {
        for s in self.slots.iter() {
            if let Slot::InFlight { waiter: Some(w), .. } = s {
                wake.push(w.clone());
            }
        }
    }
}

/// One virtio-blk disk.
pub struct BlockDevice {
    name: &'static str,
    /// PCI address, `0000:00:04.0`.
    location: String,
    /// What the device reports as its id (QEMU: the drive's `serial=`).
    serial: String,
    capacity_pages: u64,
    read_only: bool,
    max_request_pages: usize,
    irq: Option<arch::DeviceIrq>,
    /// Where it is on the bus (to reset it, [`BlockDevice::retire`]).
    function: virtio_drivers::transport::pci::bus::DeviceFunction,
    /// Completions are announced by interrupt (else waiters poll).
    interrupts: AtomicBool,
    queue: IrqSpinLock<Queue>,
    /// Tasks waiting for a free slot or free descriptors.
    room: WaitQueue,
    /// The request timeout in milliseconds (module doc).
    timeout_ms: AtomicU64,
    /// Device errors so far, and the console's account of them.
    errors: ErrorLog,
    /// The bounce buffers of gathered writes (module doc, "Gathered
    /// writes"); a leaf lock, held only to take or give one back.
    bounce: IrqSpinLock<Bounce>,
}

/// A disk's bounce buffers, under [`BlockDevice::bounce`].
struct Bounce {
    /// `GATHER_PAGES` frames each, while gathering is enabled.
    bufs: Option<[PhysAddr; QUEUE_SIZE]>,
    /// Bit `i` set: buffer `i` is free.
    free: u32,
}

/// Every bounce buffer free.
const ALL_BOUNCE_FREE: u32 = ((1u64 << QUEUE_SIZE) - 1) as u32;

/// A disk's device errors and what the console was told of them (module
/// doc, "Device errors on the console"). Atomics: errors are noted from
/// any task, with no lock held.
struct ErrorLog {
    count: AtomicU64,
    /// `count` at the last line printed.
    reported: AtomicU64,
    /// The tick of the last line printed.
    last_report: AtomicU64,
}

impl ErrorLog {
    const fn new() -> Self {
        ErrorLog { count: AtomicU64::new(0), reported: AtomicU64::new(0), last_report: AtomicU64::new(0) }
    }

    /// Counts `e` and prints what is due: the first error whole, then at
    /// most one line per [`ERROR_REPORT_INTERVAL_MS`] with the count since
    /// the last line and the latest error.
    fn note(&self, disk: &str, e: &IoError) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = sched::ticks();
        if n == 1 {
            self.reported.store(1, Ordering::Relaxed);
            self.last_report.store(now, Ordering::Relaxed);
            println!("blk: device error: {e} (the first on {disk}; later ones are counted)");
            return;
        }
        let last = self.last_report.load(Ordering::Relaxed);
        if now.saturating_sub(last) < ms_to_ticks(ERROR_REPORT_INTERVAL_MS) {
            return;
        }
        // One reporter per interval.
        if self.last_report.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let since = n - self.reported.swap(n, Ordering::Relaxed);
        println!("blk: {since} more device errors on {disk} ({n} in all); the latest: {e}");
    }
}

/// Ticks in at least `ms` milliseconds.
fn ms_to_ticks(ms: u64) -> u64 {
    (ms * sched::TICK_HZ as u64).div_ceil(1000)
}

/// Called once a disk is retired (module doc).
static RETIRE_HOOK: spin::Once<fn(&BlockDevice)> = spin::Once::new();

/// Has `hook` called (in task context, no lock held) on each disk that is
/// retired, once: for whoever keeps state on a disk (swap stops allocating
/// on it). Set once, at boot.
pub fn set_retire_hook(hook: fn(&BlockDevice)) {
    RETIRE_HOOK.call_once(|| hook);
}

impl BlockDevice {
    /// `vda`, `vdb`, ... in PCI order.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The disk's PCI address.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The id the device reports (QEMU: the `serial=` of its `-device`).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// True when the device refuses writes (QEMU `readonly=on`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whole 4 KiB pages on the disk.
    pub fn capacity_pages(&self) -> u64 {
        self.capacity_pages
    }

    /// True when completions come by interrupt (false: polled).
    pub fn uses_interrupts(&self) -> bool {
        self.interrupts.load(Ordering::Acquire)
    }

    /// The request timeout (module doc).
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.load(Ordering::Relaxed)
    }

    /// Sets the request timeout (at least one tick) for requests submitted
    /// from now on.
    pub fn set_timeout_ms(&self, ms: u64) {
        self.timeout_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Why the disk is out of service, if it is (module doc).
    pub fn retired(&self) -> Option<Retirement> {
        self.queue.lock().retired
    }

    /// Device errors so far ([`IoError::is_device_error`]).
    pub fn nr_device_errors(&self) -> u64 {
        self.errors.count.load(Ordering::Relaxed)
    }

    /// Reads disk pages `first_page..first_page + nr_pages` into the
    /// `nr_pages` physically contiguous frames at `frame`. Task context, no
    /// spin lock held; sleeps until done.
    ///
    /// # Safety
    ///
    /// A buffer that is empty, not page-aligned or not all in one range of
    /// usable RAM is refused (`BadBuffer`) before any transfer. Otherwise
    /// the caller owns those frames: it keeps them allocated, and nothing
    /// else (no Rust object, no CPU, no device) reads or writes them, until
    /// this returns; the device writes them.
    pub unsafe fn read_pages(
        &self,
        first_page: u64,
        frame: PhysAddr,
        nr_pages: usize,
    ) -> Result<(), IoError> {
        self.transfer(Op::Read, first_page, frame, nr_pages)
    }

    /// Writes the `nr_pages` physically contiguous frames at `frame` to
    /// disk pages `first_page..first_page + nr_pages`. Task context, no
    /// spin lock held; sleeps until done.
    ///
    /// # Safety
    ///
    /// A bad buffer is refused as for [`BlockDevice::read_pages`].
    /// Otherwise the caller keeps the frames allocated, and unchanged by the
    /// kernel, until this returns: the device reads them behind the
    /// kernel's back.
    pub unsafe fn write_pages(
        &self,
        first_page: u64,
        frame: PhysAddr,
        nr_pages: usize,
    ) -> Result<(), IoError> {
        self.transfer(Op::Write, first_page, frame, nr_pages)
    }

    /// Reads sectors `first_sector..first_sector + nr_sectors` (512 bytes
    /// each) into the `nr_sectors * 512` physically contiguous bytes at
    /// `buf`: the transfer of a raw disk read into a user's pinned page,
    /// where a buffer need not be a whole page. Task context, no spin lock
    /// held; sleeps until done. Errors name pages as for whole pages (the
    /// page of the first sector, the pages the sectors touch).
    ///
    /// # Safety
    ///
    /// A buffer that is empty, not 512-byte aligned or not all in one
    /// range of usable RAM is refused (`BadBuffer`) before any transfer.
    /// Otherwise as for [`BlockDevice::read_pages`]: the caller keeps
    /// those bytes' frames allocated and touched by nothing else until
    /// this returns.
    pub unsafe fn read_sectors(
        &self,
        first_sector: u64,
        buf: PhysAddr,
        nr_sectors: usize,
    ) -> Result<(), IoError> {
        self.transfer_sectors(Op::Read, first_sector, buf, nr_sectors)
    }

    /// Writes the `nr_sectors * 512` bytes at `buf` to sectors
    /// `first_sector..`; as [`BlockDevice::read_sectors`].
    ///
    /// # Safety
    ///
    /// As for [`BlockDevice::write_pages`], for the bytes at `buf`.
    pub unsafe fn write_sectors(
        &self,
        first_sector: u64,
        buf: PhysAddr,
        nr_sectors: usize,
    ) -> Result<(), IoError> {
        self.transfer_sectors(Op::Write, first_sector, buf, nr_sectors)
    }

    fn transfer(&self, op: Op, first_page: u64, frame: PhysAddr, nr_pages: usize) -> Result<(), IoError> {
        if !frame.is_aligned(PAGE_SIZE) {
            return Err(IoError::BadBuffer { disk: self.name, frame, nr_pages, why: "not page-aligned" });
        }
        let sectors = nr_pages.checked_mul(SECTORS_PER_PAGE as usize);
        let first = first_page.checked_mul(SECTORS_PER_PAGE);
        match (first, sectors) {
            (Some(first), Some(sectors)) => self.transfer_sectors(op, first, frame, sectors),
            _ => Err(IoError::OutOfRange {
                disk: self.name,
                first_page,
                nr_pages,
                capacity_pages: self.capacity_pages,
            }),
        }
    }

    fn transfer_sectors(
        &self,
        op: Op,
        first: u64,
        frame: PhysAddr,
        nr_sectors: usize,
    ) -> Result<(), IoError> {
        self.check(op, first, frame, nr_sectors)?;
        let max = self.max_request_pages * SECTORS_PER_PAGE as usize;
        let mut done = 0;
        while done < nr_sectors {
            let n = (nr_sectors - done).min(max);
            let pa = PhysAddr::new(frame.as_u64() + done as u64 * SECTOR_BYTES);
            // Device errors are noted where they are found (`submit`, `wait`).
            let t = self.submit(op, first + done as u64, pa, n, true)?;
            self.wait(t.expect("submit: a submitter that may wait for room always gets a slot"))?;
            done += n;
        }
        Ok(())
    }

    /// Refuses a transfer the caller got wrong (module doc): the checks
    /// every request passes before it is sent.
    fn check(&self, op: Op, first: u64, frame: PhysAddr, nr_sectors: usize) -> Result<(), IoError> {
        debug_assert!(
            Arch::irq_enabled(),
            "blk: I/O with interrupts off (a spin lock held?) would never sleep"
        );
        let disk = self.name;
        let (first_page, nr_pages) = pages_of(first, nr_sectors);
        let bad = |why| Err(IoError::BadBuffer { disk, frame, nr_pages, why });
        if nr_sectors == 0 {
            return bad("no pages");
        }
        if !frame.is_aligned(SECTOR_BYTES) {
            return bad("not sector-aligned");
        }
        let bytes = (nr_sectors as u64).checked_mul(SECTOR_BYTES);
        let in_ram = bytes.and_then(|b| frame.checked_add(b)).is_some_and(|end| {
            memory::boot_memory().is_some_and(|m| {
                m.ranges()
                    .iter()
                    .any(|r| r.start.as_u64() <= frame.as_u64() && end.as_u64() <= r.end.as_u64())
            })
        });
        if !in_ram {
            return bad("not in one range of usable RAM");
        }
        let end = first.checked_add(nr_sectors as u64);
        if end.is_none_or(|e| e > self.capacity_pages * SECTORS_PER_PAGE) {
            return Err(IoError::OutOfRange {
                disk,
                first_page,
                nr_pages,
                capacity_pages: self.capacity_pages,
            });
        }
        if op == Op::Write && self.read_only {
            return Err(IoError::ReadOnly { disk });
        }
        Ok(())
    }

    /// Starts writing the `nr_pages` physically contiguous frames at
    /// `frame` to disk pages `first_page..first_page + nr_pages`, as one
    /// request, and returns at once (module doc, "Submitting without
    /// waiting"): the [`Ticket`] is to be given to [`BlockDevice::wait`],
    /// which says how the write ended. `Ok(None)` when no slot or
    /// descriptor is free now: the caller waits for one of its own tickets
    /// first, or calls [`BlockDevice::write_pages`], which waits for room
    /// (never while it holds tickets). At most
    /// [`BlockDevice::max_request_pages`] pages. Task context, interrupts
    /// on, no spin lock held; does not sleep.
    ///
    /// # Safety
    ///
    /// As for [`BlockDevice::write_pages`], until the ticket has been
    /// waited for: the caller keeps the frames allocated and unchanged by
    /// the kernel until [`BlockDevice::wait`] returned for it.
    pub unsafe fn submit_write_pages(
        &self,
        first_page: u64,
        frame: PhysAddr,
        nr_pages: usize,
    ) -> Result<Option<Ticket>, IoError> {
        let disk = self.name;
        let too_big = nr_pages > self.max_request_pages;
        let sector = first_page.checked_mul(SECTORS_PER_PAGE);
        let (Some(sector), false) = (sector, too_big) else {
            return Err(IoError::BadBuffer {
                disk,
                frame,
                nr_pages,
                why: "more pages than one request takes",
            });
        };
        if !frame.is_aligned(PAGE_SIZE) {
            return Err(IoError::BadBuffer { disk, frame, nr_pages, why: "not page-aligned" });
        }
        let nr_sectors = nr_pages * SECTORS_PER_PAGE as usize;
        self.check(Op::Write, sector, frame, nr_sectors)?;
        self.submit(Op::Write, sector, frame, nr_sectors, false)
    }

    /// Gives the disk its bounce buffers for gathered writes (module doc,
    /// "Gathered writes"), if it has none. False when there was no memory
    /// for them: writes then go one part per request. Task context, no
    /// spin lock held.
    pub fn enable_write_gather(&self) -> bool {
        if self.bounce.lock().bufs.is_some() {
            return true;
        }
        let mut bufs = [PhysAddr::new(0); QUEUE_SIZE];
        for i in 0..QUEUE_SIZE {
            match memory::alloc_frames(GATHER_ORDER) {
                Ok(pa) => bufs[i] = pa,
                Err(_) => {
                    bufs[..i].iter().for_each(|&pa| memory::free_frames(pa, GATHER_ORDER));
                    return false;
                }
            }
        }
        let lost_race = {
            let mut b = self.bounce.lock();
            let lost = b.bufs.is_some();
            if !lost {
                *b = Bounce { bufs: Some(bufs), free: ALL_BOUNCE_FREE };
            }
            lost
        };
        if lost_race {
            bufs.iter().for_each(|&pa| memory::free_frames(pa, GATHER_ORDER));
        }
        true
    }

    /// Takes the bounce buffers back (swapoff), unless one is in use (a
    /// write in flight: then they stay, and a later call frees them).
    /// Task context, no spin lock held.
    pub fn disable_write_gather(&self) {
        let bufs = {
            let mut b = self.bounce.lock();
            if b.free != ALL_BOUNCE_FREE {
                return;
            }
            b.bufs.take()
        };
        for pa in bufs.iter().flatten() {
            memory::free_frames(*pa, GATHER_ORDER);
        }
    }

    /// The most pages [`BlockDevice::submit_write_gather`] takes in one
    /// request of several parts (1 while gathering is not enabled).
    pub fn gather_pages(&self) -> usize {
        if self.bounce.lock().bufs.is_some() {
            GATHER_PAGES.min(self.max_request_pages)
        } else {
            1
        }
    }

    /// Takes a free bounce buffer: its index and frames; `None` when none
    /// is free or gathering is not enabled.
    fn take_bounce(&self) -> Option<(usize, PhysAddr)> {
        let mut b = self.bounce.lock();
        let bufs = b.bufs?;
        if b.free == 0 {
            return None;
        }
        let i = b.free.trailing_zeros() as usize;
        b.free &= !(1 << i);
        Some((i, bufs[i]))
    }

    /// Gives bounce buffer `i` back, and wakes whoever waits for room.
    fn give_back_bounce(&self, i: usize) {
        self.bounce.lock().free |= 1 << i;
        self.room.wake_all();
    }

    /// Starts writing `parts` (each `(frame, nr_pages)`: physically
    /// contiguous frames) one after another to disk pages from
    /// `first_page` on, as **one** request through a bounce buffer (module
    /// doc, "Gathered writes"), and returns at once, as
    /// [`BlockDevice::submit_write_pages`] does (which one part alone
    /// goes to, without a copy). At most [`BlockDevice::gather_pages`]
    /// pages in all. `Ok(None)`: no slot, descriptor or bounce buffer free
    /// now. Task context, interrupts on, no spin lock held; does not sleep.
    ///
    /// # Safety
    ///
    /// As for [`BlockDevice::submit_write_pages`], for every part.
    pub unsafe fn submit_write_gather(
        &self,
        first_page: u64,
        parts: &[(PhysAddr, usize)],
    ) -> Result<Option<Ticket>, IoError> {
        if let [(frame, nr)] = parts {
            // SAFETY: the caller's contract is that of `submit_write_pages`.
            return unsafe { self.submit_write_pages(first_page, *frame, *nr) };
        }
        let disk = self.name;
        let nr_pages: usize = parts.iter().map(|p| p.1).sum();
        let frame = parts.first().map_or(PhysAddr::new(0), |p| p.0);
        if parts.is_empty() || nr_pages > self.gather_pages() {
            return Err(IoError::BadBuffer {
                disk,
                frame,
                nr_pages,
                why: "more pages than one request takes",
            });
        }
        let sector = first_page.checked_mul(SECTORS_PER_PAGE).ok_or(IoError::OutOfRange {
            disk,
            first_page,
            nr_pages,
            capacity_pages: self.capacity_pages,
        })?;
        let mut at = sector;
        for &(frame, nr) in parts {
            if !frame.is_aligned(PAGE_SIZE) {
                return Err(IoError::BadBuffer { disk, frame, nr_pages: nr, why: "not page-aligned" });
            }
            self.check(Op::Write, at, frame, nr * SECTORS_PER_PAGE as usize)?;
            at += (nr * SECTORS_PER_PAGE as usize) as u64;
        }
        // Gathering disabled meanwhile (swapoff) is as no room: the caller
        // waits for a write of its own, or writes part by part.
        let Some((i, buf)) = self.take_bounce() else { return Ok(None) };
        let mut off = 0;
        for &(frame, nr) in parts {
            let len = nr * PAGE_BYTES;
            let src = memory::phys_to_virt(frame).as_u64() as *const u8;
            let dst = (memory::phys_to_virt(buf).as_u64() as usize + off) as *mut u8;
            // SAFETY: (1) `frame..+len` is RAM in the direct map (`check`)
            // that the caller keeps allocated and unchanged by the kernel
            // (its contract); (2) the destination lies inside bounce buffer
            // `i` (`nr_pages <= GATHER_PAGES` pages in all), which this
            // call alone holds (taken above); the two never overlap, the
            // buffer being no folio.
            unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
            off += len;
        }
        let nr_sectors = nr_pages * SECTORS_PER_PAGE as usize;
        match self.submit(Op::Write, sector, buf, nr_sectors, false) {
            Ok(Some(mut t)) => {
                t.bounce = Some(i);
                Ok(Some(t))
            }
            other => {
                self.give_back_bounce(i);
                other
            }
        }
    }

    /// The most pages one request takes (the device's `size_max`, else
    /// [`MAX_REQUEST_PAGES`]).
    pub fn max_request_pages(&self) -> usize {
        self.max_request_pages
    }

    /// Takes a slot and submits one request in it; `Ok(None)` when there
    /// is no room and `may_wait` is false, else waits for room on `room`.
    fn submit(
        &self,
        op: Op,
        sector: u64,
        frame: PhysAddr,
        nr_sectors: usize,
        may_wait: bool,
    ) -> Result<Option<Ticket>, IoError> {
        let disk = self.name;
        let data = memory::phys_to_virt(frame).as_u64() as usize;
        let len = nr_sectors * SECTOR_BYTES as usize;
        let (page, nr_pages) = pages_of(sector, nr_sectors);
        let interrupts = self.uses_interrupts();
        let me = sched::current_task();
        let try_submit = || {
            let mut q = self.queue.lock();
            if let Some(why) = q.retired {
                return Some(Err(IoError::OutOfService { disk, why }));
            }
            let slot = q.slots.iter().position(|s| matches!(s, Slot::Free))?;
            // SAFETY: the frames are RAM in the direct map (checked by
            // `check`), owned by our caller until the ticket is waited for,
            // and `wait` returns only after the request is reaped, or after
            // the device was reset (`retire`).
            match unsafe { q.submit(slot, op, sector, data, len) } {
                Ok(token) => {
                    let waiter = interrupts.then(|| me.clone());
                    let deadline = sched::ticks() + ms_to_ticks(self.timeout_ms()) + 1;
                    q.slots[slot] = Slot::InFlight { token, op, data, len, waiter, deadline };
                    Some(Ok(Ticket { disk, slot, op, first_page: page, nr_pages, bounce: None }))
                }
                // No free descriptor: wait for room.
                Err(virtio_drivers::Error::QueueFull) => None,
                Err(virtio_drivers::Error::DmaError) => Some(Err(IoError::NoMemory { disk })),
                Err(e) => Some(Err(device_error(disk, op, page, nr_pages, e))),
            }
        };
        let r = if may_wait { self.room.wait_for(try_submit).map(Some) } else { try_submit().transpose() };
        if let Err(e) = &r {
            if e.is_device_error() {
                self.errors.note(disk, e);
            }
        }
        r
    }

    /// Waits until the request of `ticket` has ended, and says how: in
    /// interrupt mode parked until the interrupt handler reaps it, else
    /// polling. A request past its deadline retires the disk (module doc).
    /// Task context, interrupts on, no spin lock held; may sleep.
    pub fn wait(&self, ticket: Ticket) -> Result<(), IoError> {
        let Ticket { disk, slot, op, first_page: page, nr_pages, bounce } = ticket;
        assert_eq!(disk, self.name, "blk: a ticket of {disk} waited for on {}", self.name);
        let interrupts = self.uses_interrupts();
        let me = sched::current_task();
        let result = loop {
            let mut wake = WakeList::new();
            let mut q = self.queue.lock();
            let reaped = q.reap(&mut wake);
            let retired = q.retired;
            let mut late = false;
            let result = match &mut q.slots[slot] {
                Slot::Done(r) => Some(r.map_err(|e| device_error(disk, op, page, nr_pages, e))),
                Slot::Abandoned => Some(Err(IoError::OutOfService {
                    disk,
                    why: retired.unwrap_or(Retirement::StrayCompletion),
                })),
                Slot::InFlight { waiter, deadline, .. } => {
                    if interrupts && waiter.is_none() {
                        *waiter = Some(me.clone());
                    }
                    late = sched::ticks() > *deadline;
                    None
                }
                Slot::Free => unreachable!("request: our slot {slot} was freed under us"),
            };
            if result.is_some() {
                q.slots[slot] = Slot::Free;
            }
            // Past the deadline, or the disk was retired by a stray
            // completion (which only the waiters act on): retire it now,
            // unless another waiter is at it (it wakes us when done).
            let retire =
                result.is_none() && ((late && retired.is_none()) || (retired.is_some() && !q.reset_claimed));
            if retire {
                q.retired = Some(retired.unwrap_or(Retirement::NoAnswer { after_ms: self.timeout_ms() }));
                q.reset_claimed = true;
            }
            drop(q);
            wake.unpark_all();
            if reaped || result.is_some() {
                self.room.wake_all();
            }
            if retire {
                let why = self.retire(slot);
                break Err(match why {
                    Retirement::NoAnswer { after_ms } => {
                        IoError::TimedOut { disk, op, first_page: page, nr_pages, after_ms }
                    }
                    why => IoError::OutOfService { disk, why },
                });
            }
            match result {
                Some(r) => break r,
                None if interrupts => sched::park(),
                None => sched::yield_now(),
            }
        };
        if let Err(e) = &result {
            if e.is_device_error() {
                self.errors.note(disk, e);
            }
        }
        // The device is done with it: reaped, or reset (`retire`).
        if let Some(i) = bounce {
            self.give_back_bounce(i);
        }
        result
    }

    /// Retires the disk (module doc), which the caller marked retired,
    /// claiming the reset; the caller's request, in slot `mine`, is freed.
    /// Returns why the disk was retired.
    fn retire(&self, mine: usize) -> Retirement {
        // Resets the device (virtio status 0) and waits until the reset is
        // done: from then on it touches no request's frames. Through a
        // transport of its own, dropped at once (dropping a transport
        // resets its device): the queue's keeps its virtqueue, whose
        // memory stays allocated as long as the disk record lives.
        let reset = Pci::open().ok_or("no PCI host bridge").and_then(|mut pci| {
            PciTransport::new::<KernelHal, _>(pci.root_mut(), self.function)
                .map(drop)
                .map_err(|_| "its virtio PCI capabilities are unusable")
        });
        if let Err(why) = reset {
            // Only if the bus changed under us; the requests in flight are
            // then abandoned without a reset.
            println!("blk: {}: cannot reset the device: {why}", self.name);
        }
        let mut wake = WakeList::new();
        let why = {
            let mut q = self.queue.lock();
            // A device finishes what it had in flight as it resets (QEMU
            // does): reap it, so that those requests end as they did and
            // their descriptors go back. What is left is abandoned.
            q.reset_done = true;
            q.reap(&mut wake);
            q.slots[mine] = Slot::Free;
            q.wake_in_flight(&mut wake);
            for s in q.slots.iter_mut() {
                if matches!(s, Slot::InFlight { .. }) {
                    *s = Slot::Abandoned;
                }
            }
            q.retired.unwrap_or(Retirement::StrayCompletion)
        };
        wake.unpark_all();
        self.room.wake_all();
        println!("blk: {}: {why}: the device is reset and the disk taken out of service", self.name);
        if let Some(hook) = RETIRE_HOOK.get() {
            hook(self);
        }
        why
    }

    /// Reaps completions without an interrupt (see
    /// [`reap_missed_completions`]); the lock is only tried, since a tick
    /// may land while this CPU holds it.
    /// Wakes the waiters of requests past their deadline too, so that they
    /// retire the disk.
    fn reap_without_interrupt(&self) {
        let mut wake = WakeList::new();
        let reaped = {
            let Some(mut q) = self.queue.try_lock() else { return };
            let reaped = q.reap(&mut wake);
            let now = sched::ticks();
            for s in q.slots.iter() {
                if let Slot::InFlight { waiter: Some(w), deadline, .. } = s {
                    if now > *deadline {
                        wake.push(w.clone());
                    }
                }
            }
            reaped
        };
        wake.unpark_all();
        if reaped {
            self.room.wake_all();
        }
    }

    /// The disk's interrupt: quiet the device, reap, wake the waiters.
    fn handle_interrupt(&self) {
        let mut wake = WakeList::new();
        let reaped = {
            let mut q = self.queue.lock();
            // Reading the ISR status lowers the INTx line.
            q.dev.ack_interrupt();
            q.reap(&mut wake)
        };
        wake.unpark_all();
        if reaped {
            self.room.wake_all();
        }
    }
}

fn device_error(
    disk: &'static str,
    op: Op,
    first_page: u64,
    nr_pages: usize,
    e: virtio_drivers::Error,
) -> IoError {
    let status = match e {
        virtio_drivers::Error::IoError => Status::IoErr,
        virtio_drivers::Error::Unsupported => Status::Unsupported,
        virtio_drivers::Error::NotReady => Status::NotReady,
        other => Status::Driver(other),
    };
    IoError::Device { disk, op, first_page, nr_pages, status }
}

/// The disks found at boot.
static DISKS: spin::Once<Vec<BlockDevice>> = spin::Once::new();

/// Every virtio-blk disk found at boot, in PCI order (empty before
/// [`init`] or when there are none).
pub fn disks() -> &'static [BlockDevice] {
    DISKS.get().map_or(&[], Vec::as_slice)
}

/// The disk whose device id (QEMU `serial=`) is `serial`.
pub fn disk_by_serial(serial: &str) -> Option<&'static BlockDevice> {
    disks().iter().find(|d| d.serial == serial)
}

/// Called from the timer tick (boot CPU): reaps what the disks completed
/// in case an interrupt was missed, so no waiter stays parked for ever,
/// and wakes the waiters of requests past their deadline (module doc).
/// Cheap when nothing completed: one look at each used ring and slot.
pub fn reap_missed_completions() {
    for d in disks().iter().filter(|d| d.uses_interrupts()) {
        d.reap_without_interrupt();
    }
}

/// The interrupt handler of disk `index` (see [`BlockDevice::handle_interrupt`]).
fn on_interrupt(index: usize) {
    if let Some(d) = disks().get(index) {
        d.handle_interrupt();
    }
}

/// Why a virtio-blk function was left out.
enum ProbeError {
    Setup(pci::SetupError),
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    Device(virtio_drivers::Error),
    NoMemory,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Setup(e) => write!(f, "{e}"),
            ProbeError::Transport(e) => write!(f, "its virtio PCI capabilities are unusable: {e}"),
            ProbeError::Device(e) => write!(f, "the device refused initialisation: {e}"),
            ProbeError::NoMemory => f.write_str("no memory for its request headers"),
        }
    }
}

/// Sets up one virtio-blk function (interrupts are attached later, once
/// the disk has its place in [`DISKS`]).
fn probe_one(
    pci: &mut Pci,
    df: virtio_drivers::transport::pci::bus::DeviceFunction,
    name: &'static str,
) -> Result<BlockDevice, ProbeError> {
    pci.enable(df).map_err(ProbeError::Setup)?;
    let mut transport =
        PciTransport::new::<KernelHal, _>(pci.root_mut(), df).map_err(ProbeError::Transport)?;
    let size_max = if transport.read_device_features() & VIRTIO_BLK_F_SIZE_MAX != 0 {
        transport.read_config_space::<u32>(CONFIG_SIZE_MAX).ok()
    } else {
        None
    };
    let mut dev = VirtIOBlk::<KernelHal, _>::new(transport).map_err(ProbeError::Device)?;
    debug_assert_eq!(dev.virt_queue_size() as usize, QUEUE_SIZE);
    // The id is read with a blocking request, before interrupts are on;
    // its buffer on the heap (DMA buffers must be in the direct map).
    let mut id = Box::new([0u8; 20]);
    let serial = match dev.device_id(&mut id) {
        Ok(n) => String::from_utf8_lossy(&id[..n]).into_owned(),
        Err(_) => String::new(),
    };
    let headers = memory::alloc_frames(0).map_err(|_| ProbeError::NoMemory)?;
    // SAFETY: just allocated, not yet given to the device.
    unsafe { memory::zero_frames(headers, 0) };
    const _: () = assert!(QUEUE_SIZE * core::mem::size_of::<Header>() <= PAGE_SIZE as usize);
    let max_request_pages = match size_max {
        Some(bytes) => (bytes as usize / PAGE_BYTES).clamp(1, MAX_REQUEST_PAGES),
        None => MAX_REQUEST_PAGES,
    };
    Ok(BlockDevice {
        name,
        location: pci::location(df),
        serial,
        capacity_pages: dev.capacity() / SECTORS_PER_PAGE,
        read_only: dev.readonly(),
        max_request_pages,
        irq: pci.intx_irq(df),
        function: df,
        interrupts: AtomicBool::new(false),
        queue: IrqSpinLock::new(Queue {
            dev,
            slots: [const { Slot::Free }; QUEUE_SIZE],
            headers,
            retired: None,
            reset_claimed: false,
            reset_done: false,
        }),
        room: WaitQueue::new(),
        timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT_MS),
        errors: ErrorLog::new(),
        bounce: IrqSpinLock::new(Bounce { bufs: None, free: ALL_BOUNCE_FREE }),
    })
}

/// Finds the virtio-blk disks, attaches their interrupts and prints one
/// line per disk. Once, at boot, after the scheduler started (the probing
/// runs in a task of its own: the boot stack is not DMA-able on x86_64).
pub fn init() {
    // A completion whose interrupt was missed would leave its waiter
    // parked for good: look at the disks' used rings once a tick too.
    sched::set_tick_hook(reap_missed_completions);
    let probe = sched::spawn("blk-probe", || {
        let Some(mut pci) = Pci::open() else {
            println!("blk: no PCI host bridge; no disks");
            return Vec::new();
        };
        let mut found = Vec::new();
        for (df, info) in pci.functions() {
            let is_blk = info.vendor_id == VIRTIO_VENDOR
                && matches!(info.device_id, VIRTIO_BLK_MODERN | VIRTIO_BLK_TRANSITIONAL);
            if !is_blk {
                continue;
            }
            let Some(&name) = NAMES.get(found.len()) else {
                println!(
                    "blk: virtio-blk at {} left out: more than {} disks",
                    pci::location(df),
                    NAMES.len()
                );
                continue;
            };
            match probe_one(&mut pci, df, name) {
                Ok(d) => found.push(d),
                Err(e) => println!("blk: virtio-blk at {} left out: {e}", pci::location(df)),
            }
        }
        found
    });
    let found = match probe {
        Ok(h) => match h.join() {
            Ok(found) => found,
            Err(killed) => {
                println!("blk: the probing {killed}; no disks");
                return;
            }
        },
        Err(e) => {
            println!("blk: cannot start the probing task ({e:?}); no disks");
            return;
        }
    };
    let disks = DISKS.call_once(|| found);
    if disks.is_empty() {
        println!("blk: no virtio-blk disks");
    }
    // The probe's own requests left the devices' INTx asserted. An IO-APIC
    // only latches a level-triggered line on a change of level (QEMU's does
    // so even for an entry that was masked or edge-triggered when the line
    // rose), so lower every line before routing it: otherwise it would stay
    // high, unnoticed, and no completion would ever interrupt.
    for d in disks {
        d.queue.lock().dev.ack_interrupt();
    }
    for (i, d) in disks.iter().enumerate() {
        let completion = match d.irq {
            Some(irq) => match Arch::attach_device_irq(irq, on_interrupt, i) {
                Ok(()) => {
                    d.interrupts.store(true, Ordering::Release);
                    alloc::format!("{irq}")
                }
                Err(e) => alloc::format!("polled ({irq}: {e})"),
            },
            None => String::from("polled (no interrupt line)"),
        };
        println!(
            "blk: {}: virtio-blk {} serial \"{}\", capacity {} pages ({} MiB){}, {completion}",
            d.name,
            d.location,
            d.serial,
            d.capacity_pages,
            (d.capacity_pages * PAGE_SIZE) >> 20,
            if d.read_only { ", read-only" } else { "" },
        );
    }
}
