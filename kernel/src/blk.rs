//! Block devices: the virtio-blk disks on the PCI bus, read and written in
//! whole 4 KiB pages by the swap code.
//!
//! ## What a caller gets
//!
//! [`disks`] lists every virtio-blk function found at boot ([`init`]), in
//! PCI order, named `vda`, `vdb`, ... [`BlockDevice::read_pages`] and
//! [`BlockDevice::write_pages`] move `nr_pages` pages between the disk
//! (page `p` is sectors `8p..8p+8`) and `nr_pages` physically contiguous
//! frames (a folio of any order). They run in task context, may sleep, and
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
//! a slot or descriptors are given back. Each task holds at most one slot
//! at a time, so waiting for room cannot deadlock.
//!
//! ## Completion: interrupt, or polling
//!
//! When the disk's INTx line could be attached ([`arch::irq`]: the IO-APIC
//! on x86_64, a GIC SPI on AArch64), a waiter parks ([`sched::park`]) and
//! the interrupt handler acknowledges the device (reading the ISR status
//! lowers INTx), reaps and unparks. Without a line the waiter polls the used
//! ring, yielding the CPU between polls.
//!
//! Lock order: a disk's queue lock, then the heap and frame-allocator locks
//! (leaves: the virtqueue allocates indirect descriptor lists). The
//! run-queue lock (unpark) and the `room` queue's lock are taken only after
//! the queue lock is released.

use crate::arch;
use crate::dma::KernelHal;
use crate::memory;
use crate::pci::{self, Pci};
use crate::println;
use crate::sched::{self, Task};
use crate::sync::IrqSpinLock;
use crate::wait::WaitQueue;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use mm::{PhysAddr, PAGE_SIZE};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;

/// The largest request sent to a device that does not say (2 MiB, a PMD
/// folio).
pub const MAX_REQUEST_PAGES: usize = 512;
/// Requests in flight per disk: the virtqueue size `virtio-drivers` uses.
pub const QUEUE_SIZE: usize = 16;
const SECTORS_PER_PAGE: u64 = PAGE_SIZE / 512;
const PAGE_BYTES: usize = PAGE_SIZE as usize;
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
    /// The device completed a request it was never given; the disk is out
    /// of service (the device's fault).
    Broken { disk: &'static str },
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
            IoError::Broken { disk } => write!(
                f,
                "{disk}: the device completed a request it was never given; the disk is out of service"
            ),
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
    },
    Done(Result<(), virtio_drivers::Error>),
}

/// A disk's queue state, under [`BlockDevice::queue`].
struct Queue {
    dev: VirtIOBlk<KernelHal, PciTransport>,
    slots: [Slot; QUEUE_SIZE],
    /// The frame holding the slots' [`Header`]s (never freed: disks live
    /// as long as the kernel).
    headers: PhysAddr,
    /// The device misbehaved ([`IoError::Broken`]); nothing more is sent.
    broken: bool,
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
        // SAFETY: (1) the header is slot `slot`'s, in the disk's DMA frame,
        // used by no other request while this one is in flight (the slot is
        // ours); (2) the caller vouches for the data buffer until reaping,
        // which passes these same buffers back.
        unsafe {
            let h = &mut *header;
            match op {
                Op::Read => {
                    let buf = core::slice::from_raw_parts_mut(data as *mut u8, len);
                    self.dev.read_blocks_nb(sector as usize, &mut h.req, buf, &mut h.resp)
                }
                Op::Write => {
                    let buf = core::slice::from_raw_parts(data as *const u8, len);
                    self.dev.write_blocks_nb(sector as usize, &mut h.req, buf, &mut h.resp)
                }
            }
        }
    }

    /// Reaps every completed request (in used-ring order): records its
    /// status in its slot and queues its waiter on `wake`. True when any
    /// ring entries were given back.
    fn reap(&mut self, wake: &mut WakeList) -> bool {
        let mut reaped = false;
        while !self.broken {
            let Some(token) = self.dev.peek_used() else { break };
            let Some(slot) =
                self.slots.iter().position(|s| matches!(s, Slot::InFlight { token: t, .. } if *t == token))
            else {
                self.break_down(wake);
                break;
            };
            let Slot::InFlight { op, data, len, waiter, .. } =
                core::mem::replace(&mut self.slots[slot], Slot::Done(Ok(())))
            else {
                unreachable!("reap: slot {slot} was just found in flight")
            };
            let header = self.header(slot);
            // SAFETY: these are the buffers `submit` passed with this token
            // (the slot's header, the data the submitter vouched for);
            // the device has finished with them (the token is in the used
            // ring).
            let result = unsafe {
                let h = &mut *header;
                match op {
                    Op::Read => {
                        let buf = core::slice::from_raw_parts_mut(data as *mut u8, len);
                        self.dev.complete_read_blocks(token, &h.req, buf, &mut h.resp)
                    }
                    Op::Write => {
                        let buf = core::slice::from_raw_parts(data as *const u8, len);
                        self.dev.complete_write_blocks(token, &h.req, buf, &mut h.resp)
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

    /// The device gave back a token we never sent: fail every request in
    /// flight and take the disk out of service. (A device this confused
    /// might still write into those requests' frames after their owners
    /// have moved on; the kernel cannot reset it from here. QEMU's devices
    /// never do this.)
    fn break_down(&mut self, wake: &mut WakeList) {
        self.broken = true;
        for s in self.slots.iter_mut() {
            if let Slot::InFlight { waiter, .. } = s {
                if let Some(w) = waiter.take() {
                    wake.push(w);
                }
                *s = Slot::Done(Err(virtio_drivers::Error::WrongToken));
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
    irq: Option<arch::irq::DeviceIrq>,
    /// Completions are announced by interrupt (else waiters poll).
    interrupts: AtomicBool,
    queue: IrqSpinLock<Queue>,
    /// Tasks waiting for a free slot or free descriptors.
    room: WaitQueue,
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

    /// Whole 4 KiB pages on the disk.
    pub fn capacity_pages(&self) -> u64 {
        self.capacity_pages
    }

    /// True when completions come by interrupt (false: polled).
    pub fn uses_interrupts(&self) -> bool {
        self.interrupts.load(Ordering::Acquire)
    }

    /// Reads disk pages `first_page..first_page + nr_pages` into the
    /// `nr_pages` physically contiguous frames at `frame`. The caller owns
    /// those frames (holds a reference and touches them nowhere else until
    /// this returns). Task context, no spin lock held; sleeps until done.
    pub fn read_pages(&self, first_page: u64, frame: PhysAddr, nr_pages: usize) -> Result<(), IoError> {
        self.transfer(Op::Read, first_page, frame, nr_pages)
    }

    /// Writes the `nr_pages` physically contiguous frames at `frame` to
    /// disk pages `first_page..first_page + nr_pages`. The caller keeps the
    /// frames alive and unchanged until this returns. Task context, no spin
    /// lock held; sleeps until done.
    pub fn write_pages(&self, first_page: u64, frame: PhysAddr, nr_pages: usize) -> Result<(), IoError> {
        self.transfer(Op::Write, first_page, frame, nr_pages)
    }

    fn transfer(&self, op: Op, first_page: u64, frame: PhysAddr, nr_pages: usize) -> Result<(), IoError> {
        debug_assert!(
            arch::irq::enabled(),
            "blk: I/O with interrupts off (a spin lock held?) would never sleep"
        );
        let disk = self.name;
        let bad = |why| Err(IoError::BadBuffer { disk, frame, nr_pages, why });
        if nr_pages == 0 {
            return bad("no pages");
        }
        if !frame.is_aligned(PAGE_SIZE) {
            return bad("not page-aligned");
        }
        let bytes = (nr_pages as u64).checked_mul(PAGE_SIZE);
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
        let end = first_page.checked_add(nr_pages as u64);
        if end.is_none_or(|e| e > self.capacity_pages) {
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
        let mut done = 0;
        while done < nr_pages {
            let n = (nr_pages - done).min(self.max_request_pages);
            let pa = PhysAddr::new(frame.as_u64() + done as u64 * PAGE_SIZE);
            self.request(op, first_page + done as u64, pa, n)?;
            done += n;
        }
        Ok(())
    }

    /// One request: take a slot, submit, wait for its completion.
    fn request(&self, op: Op, page: u64, frame: PhysAddr, nr_pages: usize) -> Result<(), IoError> {
        let disk = self.name;
        let data = memory::phys_to_virt(frame).as_u64() as usize;
        let len = nr_pages * PAGE_BYTES;
        let interrupts = self.uses_interrupts();
        let me = sched::current_task();
        let submitted = self.room.wait_for(|| {
            let mut q = self.queue.lock();
            if q.broken {
                return Some(Err(IoError::Broken { disk }));
            }
            let slot = q.slots.iter().position(|s| matches!(s, Slot::Free))?;
            // SAFETY: the frames are RAM in the direct map (checked by
            // `transfer`), owned by our caller until we return, and we
            // return only after the request is reaped.
            match unsafe { q.submit(slot, op, page * SECTORS_PER_PAGE, data, len) } {
                Ok(token) => {
                    let waiter = interrupts.then(|| me.clone());
                    q.slots[slot] = Slot::InFlight { token, op, data, len, waiter };
                    Some(Ok(slot))
                }
                // No free descriptor: wait for room.
                Err(virtio_drivers::Error::QueueFull) => None,
                Err(virtio_drivers::Error::DmaError) => Some(Err(IoError::NoMemory { disk })),
                Err(e) => Some(Err(device_error(disk, op, page, nr_pages, e))),
            }
        });
        let slot = submitted?;
        loop {
            let mut wake = WakeList::new();
            let mut q = self.queue.lock();
            let reaped = q.reap(&mut wake);
            let result = match &mut q.slots[slot] {
                Slot::Done(r) => Some(*r),
                Slot::InFlight { waiter, .. } => {
                    if interrupts && waiter.is_none() {
                        *waiter = Some(me.clone());
                    }
                    None
                }
                Slot::Free => unreachable!("request: our slot {slot} was freed under us"),
            };
            if result.is_some() {
                q.slots[slot] = Slot::Free;
            }
            drop(q);
            wake.unpark_all();
            if reaped || result.is_some() {
                self.room.wake_all();
            }
            match result {
                Some(Ok(())) => return Ok(()),
                Some(Err(virtio_drivers::Error::WrongToken)) if self.queue.lock().broken => {
                    return Err(IoError::Broken { disk })
                }
                Some(Err(e)) => return Err(device_error(disk, op, page, nr_pages, e)),
                None if interrupts => sched::park(),
                None => sched::yield_now(),
            }
        }
    }

    /// Reaps completions without an interrupt (see
    /// [`reap_missed_completions`]); the lock is only tried, since a tick
    /// may land while this CPU holds it.
    fn reap_without_interrupt(&self) {
        let mut wake = WakeList::new();
        let reaped = {
            let Some(mut q) = self.queue.try_lock() else { return };
            q.reap(&mut wake)
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
/// in case an interrupt was missed, so no waiter stays parked for ever.
/// Cheap when nothing completed: one look at each used ring.
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
    memory::zero_frames(headers, 0);
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
        interrupts: AtomicBool::new(false),
        queue: IrqSpinLock::new(Queue {
            dev,
            slots: [const { Slot::Free }; QUEUE_SIZE],
            headers,
            broken: false,
        }),
        room: WaitQueue::new(),
    })
}

/// Finds the virtio-blk disks, attaches their interrupts and prints one
/// line per disk. Once, at boot, after the scheduler started (the probing
/// runs in a task of its own: the boot stack is not DMA-able on x86_64).
pub fn init() {
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
        Ok(h) => h.join(),
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
            Some(irq) => match arch::irq::attach_device_irq(irq, on_interrupt, i) {
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

// ---------------------------------------------------------------- tests

use crate::testing::{Test, TestEnv};
use alloc::format;
use alloc::string::ToString;

/// The device id xtask gives the swap disk (`-device virtio-blk-pci,serial=swap0`).
pub const SWAP_SERIAL: &str = "swap0";
/// The prefix of the id xtask gives the faulty disk: `faulty:wA-B:rC-D`
/// says writes of pages `A..B` and reads of pages `C..D` fail (QEMU
/// blkdebug). Its other pages are healthy scratch space for the tests.
pub const FAULTY_SERIAL_PREFIX: &str = "faulty:";

/// The scratch disk: the faulty disk, whose healthy pages nobody else uses.
pub(crate) fn scratch_disk() -> Result<&'static BlockDevice, String> {
    disks().iter().find(|d| d.serial.starts_with(FAULTY_SERIAL_PREFIX)).ok_or_else(|| {
        format!(
            "no faulty/scratch disk (serial `{FAULTY_SERIAL_PREFIX}...`) among {} disks: \
             `cargo xtask qemu test` attaches one unless --no-faulty-disk is given",
            disks().len()
        )
    })
}

/// The page ranges of the faulty disk that fail writes and reads, from its
/// serial (see [`FAULTY_SERIAL_PREFIX`]).
pub(crate) fn faulty_ranges(serial: &str) -> Option<(core::ops::Range<u64>, core::ops::Range<u64>)> {
    let mut write = None;
    let mut read = None;
    for part in serial.strip_prefix(FAULTY_SERIAL_PREFIX)?.split(':') {
        let (kind, range) = part.split_at_checked(1)?;
        let (a, b) = range.split_once('-')?;
        let r = a.parse().ok()?..b.parse().ok()?;
        match kind {
            "w" => write = Some(r),
            "r" => read = Some(r),
            _ => return None,
        }
    }
    Some((write?, read?))
}

/// `2^order` frames of the test's own, freed on drop.
struct Frames {
    pa: PhysAddr,
    order: u8,
}

impl Frames {
    fn new(order: u8) -> Result<Frames, String> {
        let pa = memory::alloc_frames(order).map_err(|e| format!("no order-{order} block: {e:?}"))?;
        Ok(Frames { pa, order })
    }

    fn words(&mut self) -> &mut [u64] {
        let n = (PAGE_BYTES << self.order) / 8;
        // SAFETY: the frames are ours (allocated in `new`, freed in `drop`),
        // RAM mapped read-write in the direct map; `&mut self` makes this the
        // only view, and the tests take it only while no request on the
        // frames is in flight.
        unsafe { core::slice::from_raw_parts_mut(memory::phys_to_virt(self.pa).as_u64() as *mut u64, n) }
    }

    fn words_ref(&self) -> &[u64] {
        let n = (PAGE_BYTES << self.order) / 8;
        // SAFETY: as in `words`, read-only.
        unsafe { core::slice::from_raw_parts(memory::phys_to_virt(self.pa).as_u64() as *const u64, n) }
    }

    /// Fills page `i` with words naming `seed`, the disk page and the word.
    fn fill(&mut self, seed: u64, first_disk_page: u64) {
        for (w, word) in self.words().iter_mut().enumerate() {
            *word = pattern(seed, first_disk_page + (w * 8 / PAGE_BYTES) as u64, w % (PAGE_BYTES / 8));
        }
    }

    /// The first word that differs from [`Frames::fill`]'s pattern.
    fn check(&self, seed: u64, first_disk_page: u64, nr_pages: usize) -> Result<(), String> {
        for (w, &word) in self.words_ref()[..nr_pages * PAGE_BYTES / 8].iter().enumerate() {
            let page = first_disk_page + (w * 8 / PAGE_BYTES) as u64;
            let want = pattern(seed, page, w % (PAGE_BYTES / 8));
            if word != want {
                return Err(format!("disk page {page} word {}: read {word:#x}, wrote {want:#x}", w % 512));
            }
        }
        Ok(())
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        memory::free_frames(self.pa, self.order);
    }
}

fn pattern(seed: u64, page: u64, word: usize) -> u64 {
    (seed << 48) ^ (page << 16) ^ word as u64 ^ 0x5a5a_0000_0000_0000
}

fn swap_disk_has_a_mkswap_header(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = disk_by_serial(SWAP_SERIAL).ok_or_else(|| {
        format!(
            "no swap disk (serial `{SWAP_SERIAL}`) among {} disks: `cargo xtask qemu test` attaches one \
             unless --swap 0 / --no-swap is given",
            disks().len()
        )
    })?;
    let page = Frames::new(0)?;
    disk.read_pages(0, page.pa, 1).map_err(|e| e.to_string())?;
    // SAFETY: the frame is ours and the read is over.
    let bytes = unsafe {
        core::slice::from_raw_parts(memory::phys_to_virt(page.pa).as_u64() as *const u8, PAGE_BYTES)
    };
    let header = mm::swap::header::parse(bytes, disk.capacity_pages)
        .map_err(|e| format!("{} ({}): {e}", disk.name, disk.location))?;
    if header.last_page + 1 != disk.capacity_pages || !header.bad_pages.is_empty() {
        return Err(format!(
            "{}: the header describes pages 0..={} with {} bad pages; xtask makes 0..={} with none",
            disk.name,
            header.last_page,
            header.bad_pages.len(),
            disk.capacity_pages - 1
        ));
    }
    Ok(())
}

fn four_tasks_write_and_read_back(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    // Each task: four ranges of 1, 7, 33 and 64 pages in its own 256 pages.
    const RANGES: [(u64, usize); 4] = [(0, 1), (8, 7), (32, 33), (128, 64)];
    if disk.capacity_pages < 256 + 4 * 256 {
        return Err(format!("{} has {} pages; the test needs 1280", disk.name, disk.capacity_pages));
    }
    let handles: Result<Vec<_>, _> = (0..4u64)
        .map(|t| {
            sched::spawn("blk-writer", move || -> Result<(), String> {
                let base = 256 + t * 256;
                let mut bufs = Vec::new();
                for (off, n) in RANGES {
                    let mut f = Frames::new(n.next_power_of_two().trailing_zeros() as u8)?;
                    f.fill(t + 1, base + off);
                    disk.write_pages(base + off, f.pa, n).map_err(|e| e.to_string())?;
                    bufs.push(f);
                }
                for ((off, n), f) in RANGES.iter().zip(&mut bufs) {
                    f.words().fill(0);
                    disk.read_pages(base + off, f.pa, *n).map_err(|e| e.to_string())?;
                    f.check(t + 1, base + off, *n).map_err(|e| format!("task {t}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for h in handles.map_err(|e| format!("spawn: {e:?}"))? {
        if let Err(e) = h.join() {
            result = Err(e);
        }
    }
    result
}

fn a_2mib_request_round_trips(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let first = 1024;
    if disk.capacity_pages < first + 512 {
        return Err(format!(
            "{} has {} pages; the test needs {}",
            disk.name,
            disk.capacity_pages,
            first + 512
        ));
    }
    let mut f = Frames::new(9)?;
    f.fill(0x77, first);
    disk.write_pages(first, f.pa, 512).map_err(|e| e.to_string())?;
    f.words().fill(0);
    disk.read_pages(first, f.pa, 512).map_err(|e| e.to_string())?;
    f.check(0x77, first, 512)
}

fn past_the_end_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let cap = disk.capacity_pages;
    let mut f = Frames::new(1)?;
    for (first, n) in [(cap, 1), (cap - 1, 2), (u64::MAX, 1)] {
        match disk.read_pages(first, f.pa, n) {
            Err(IoError::OutOfRange { .. }) => {}
            other => return Err(format!("read of pages {first}+{n} on a {cap}-page disk gave {other:?}")),
        }
    }
    match disk.write_pages(cap, f.pa, 1) {
        Err(e @ IoError::OutOfRange { .. }) if e.to_string().contains("past the end") => {}
        other => return Err(format!("write of page {cap} gave {other:?}")),
    }
    // And the disk goes on working: the last page is reachable.
    f.fill(9, cap - 1);
    disk.write_pages(cap - 1, f.pa, 1).map_err(|e| e.to_string())?;
    f.words().fill(0);
    disk.read_pages(cap - 1, f.pa, 1).map_err(|e| e.to_string())?;
    f.check(9, cap - 1, 1)
}

fn bad_buffers_are_refused(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let f = Frames::new(0)?;
    let cases = [
        (f.pa, 0, "no pages"),
        (PhysAddr::new(f.pa.as_u64() + 8), 1, "not page-aligned"),
        (PhysAddr::new(0xffff_0000_0000), 1, "not in one range of usable RAM"),
    ];
    for (frame, n, why) in cases {
        match disk.read_pages(64, frame, n) {
            Err(IoError::BadBuffer { why: w, .. }) if w == why => {}
            other => {
                return Err(format!("read into {frame} x{n}: expected BadBuffer ({why}), got {other:?}"))
            }
        }
    }
    Ok(())
}

fn injected_errors_come_back_as_io_errors(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let (bad_write, bad_read) = faulty_ranges(&disk.serial)
        .ok_or_else(|| format!("cannot read the failing ranges from serial `{}`", disk.serial))?;
    let mut f = Frames::new(0)?;
    let is_ioerr = |r: Result<(), IoError>| matches!(r, Err(IoError::Device { status: Status::IoErr, .. }));
    for page in [bad_write.start, bad_write.end - 1] {
        f.fill(1, page);
        let r = disk.write_pages(page, f.pa, 1);
        if !is_ioerr(r.clone()) {
            return Err(format!("write of page {page} (injected EIO) gave {r:?}"));
        }
        disk.read_pages(page, f.pa, 1).map_err(|e| format!("read of page {page} should work: {e}"))?;
    }
    for page in [bad_read.start, bad_read.end - 1] {
        f.fill(2, page);
        disk.write_pages(page, f.pa, 1).map_err(|e| format!("write of page {page} should work: {e}"))?;
        let r = disk.read_pages(page, f.pa, 1);
        if !is_ioerr(r.clone()) {
            return Err(format!("read of page {page} (injected EIO) gave {r:?}"));
        }
    }
    // A request that only partly covers a failing range fails whole.
    let two = Frames::new(1)?;
    let r = disk.read_pages(bad_read.start - 1, two.pa, 2);
    if !is_ioerr(r.clone()) {
        return Err(format!("read of pages {}..{} gave {r:?}", bad_read.start - 1, bad_read.start + 1));
    }
    if let Err(e) = r {
        if !e.to_string().contains("I/O error") {
            return Err(format!("the error does not say what happened: {e}"));
        }
    }
    // And the disk goes on working.
    let page = bad_read.end + 8;
    f.fill(3, page);
    disk.write_pages(page, f.pa, 1).map_err(|e| e.to_string())?;
    f.words().fill(0);
    disk.read_pages(page, f.pa, 1).map_err(|e| e.to_string())?;
    f.check(3, page, 1)
}

fn completions_come_by_interrupt(_: &TestEnv<'_>) -> Result<(), String> {
    if disks().is_empty() {
        return Err("no virtio-blk disks attached".into());
    }
    match disks().iter().find(|d| !d.uses_interrupts()) {
        Some(d) => Err(format!("{} is polled: its interrupt line could not be attached", d.name)),
        None => Ok(()),
    }
}

pub(crate) const TESTS: &[Test] = &[
    Test { name: "blk::completions_come_by_interrupt", run: completions_come_by_interrupt },
    Test { name: "blk::swap_disk_has_a_mkswap_header", run: swap_disk_has_a_mkswap_header },
    Test { name: "blk::four_tasks_write_and_read_back", run: four_tasks_write_and_read_back },
    Test { name: "blk::a_2mib_request_round_trips", run: a_2mib_request_round_trips },
    Test { name: "blk::past_the_end_is_an_error", run: past_the_end_is_an_error },
    Test { name: "blk::bad_buffers_are_refused", run: bad_buffers_are_refused },
    Test { name: "blk::injected_errors_come_back_as_io_errors", run: injected_errors_come_back_as_io_errors },
];
