//! Swap in the running kernel: the table of swap areas (swapon, swapoff),
//! the disk I/O under `mm::swap`, and the swap-in half of a fault.
//!
//! ## Areas
//!
//! At boot, [`init`] looks at every virtio-blk disk (`crate::drivers::blk`) and
//! turns swap on for each whose page 0 is a valid mkswap header
//! (`mm::swap::header::parse`); a disk with a bad header is refused with
//! the parser's message and the kernel goes on without it. So is a disk
//! that is read-only ([`SwapOnError::ReadOnly`]) and an area whose slot map
//! would take more than [`AREA_HEAP_BUDGET`] of the heap
//! ([`SwapOnError::Area`], which names the largest area that fits). The
//! area is made before [`AREAS`] is locked, with interrupts on. An area's
//! type is its index in [`AREAS`]. New slots come from the first area that
//! still allocates.
//!
//! ## A disk that goes away
//!
//! When the block driver retires a disk (a request got no answer:
//! `crate::drivers::blk`, "A disk that stops answering"), it calls the hook
//! [`init`] registers ([`on_disk_retired`]): every area on that disk is
//! marked [`SwapDevice::disk_gone`] and stops allocating, so reclaim sends
//! no more pages to it. Its pages already on disk are lost: a fault on one
//! ends its task with the read error, as any read error does. The driver
//! never calls into this module; the hook is the only way down-up.
//!
//! ## Write errors
//!
//! Every swap write that fails is counted ([`WRITE_ERRORS`], and
//! [`write_errors_in_a_row`] since the last one that worked, with the
//! latest error), so that an out-of-memory message can say why reclaim
//! freed nothing (`crate::vm::reclaim::why_nothing_freed`); the driver
//! reports device errors on the console itself.
//!
//! ## Writing
//!
//! Reclaim's writes ([`Io::submit_write`], [`wait_write`]; the protocol of
//! a write in flight is `mm::reclaim`'s "Writes in flight") are submitted
//! to the disk without waiting (`BlockDevice::submit_write_pages`), one
//! request per folio, several in flight; the disk's interrupt handler reaps
//! each completion and wakes the reclaiming task, which waits for its
//! writes oldest first, counts each (`PSWPOUT`, errors, [`NR_WRITEBACK`])
//! and frees the folio, in task context. Nothing here runs in the interrupt
//! handler: it only records the request's status and unparks. A folio
//! larger than one request (a device with a small `size_max`) is written
//! whole, synchronously, at submission.
//!
//! ## Protocol
//!
//! - [`AREAS`] (an [`IrqSpinLock`], a leaf) guards the table; each area is
//!   an `Arc`, so a fault or reclaim holding one keeps it alive while
//!   swapoff takes it out of the table. `mm::swap::area::SwapArea` has its
//!   own lock for its slots and cache, which the kernel takes (inside its
//!   methods) with interrupts off.
//! - The disk is read and written only from task context with interrupts
//!   on and no spin lock held: I/O sleeps ([`Io`]).
//! - Reclaim holds a folio lock while it writes; swap-in holds one while
//!   it reads (where the folio lock sits among the others:
//!   `docs/src/locking.md`).

use crate::drivers::blk::BlockDevice;
use crate::drivers::blk::IoError;
use crate::memory;
use crate::memory::paging::{Format, KernelTables};
use crate::sync::IrqSpinLock;
use crate::task::sched;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::folio::AnonHandle;
use mm::folio::{Folio, UnpublishedFolio};
use mm::frame::AllocKind;
use mm::pgtable::PageTable;
use mm::pgtable::SwapEntry;
use mm::pgtable::SwapType;
use mm::swap::area::SwapArea;
use mm::swap::swapin::{SwapBackend, SwapInError};
use mm::vma::VmaSet;
use mm::{PhysAddr, VirtAddr};

/// One swap area on a disk.
pub struct SwapDevice {
    pub area: SwapArea,
    disk: &'static BlockDevice,
    label: String,
    /// The disk was retired ([`on_disk_retired`]); set once, never cleared.
    disk_gone: AtomicBool,
}

impl SwapDevice {
    /// The disk's name.
    pub fn disk_name(&self) -> &str {
        self.disk.name()
    }

    /// The most pages one write of several folios takes on the area's
    /// disk (`crate::drivers::blk`, "Gathered writes"; 1 without bounce
    /// buffers).
    pub fn gather_pages(&self) -> usize {
        self.disk.gather_pages()
    }

    /// True once the area's disk was retired (module doc): the area
    /// allocates nothing more, and reads of what is on it fail.
    pub fn disk_gone(&self) -> bool {
        self.disk_gone.load(Ordering::Acquire)
    }
}

/// The swap areas, by type. `None` where swapoff took one out.
static AREAS: IrqSpinLock<Vec<Option<Arc<SwapDevice>>>> = IrqSpinLock::new(Vec::new());

/// Whether new areas let swap-in keep clean copies
/// (`mm::swap::area::SwapArea::set_keep_clean`): the kernel argument
/// `swap_keep_clean=`, set at boot before any swapon.
static KEEP_CLEAN: AtomicBool = AtomicBool::new(true);

/// Sets [`KEEP_CLEAN`] for the areas swapped on from now.
pub fn set_keep_clean(on: bool) {
    KEEP_CLEAN.store(on, Ordering::Relaxed);
}

/// Pages read from swap.
pub static PSWPIN: AtomicU64 = AtomicU64::new(0);
/// Pages written to swap.
pub static PSWPOUT: AtomicU64 = AtomicU64::new(0);
/// Pages a swap-in fault mapped beside its own ([`map_around`]): each a
/// fault saved (`/proc/vmstat` `swapin_mapped_around`).
pub static SWAPIN_MAPPED_AROUND: AtomicU64 = AtomicU64::new(0);
/// Pages whose write to swap is in flight now (`/proc/meminfo` Writeback,
/// `/proc/vmstat` nr_writeback): counted in before the request is made and
/// out when its writer has waited for it, completed, failed or not (module
/// doc, "Writing").
pub static NR_WRITEBACK: AtomicU64 = AtomicU64::new(0);
/// Writes that failed (the folio stayed in memory).
pub static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Read requests that failed: the faulting task was ended, or (a failed
/// readahead) its page was read alone next.
pub static READ_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Writes that failed since the last one that worked.
static WRITE_ERRORS_IN_A_ROW: AtomicU64 = AtomicU64::new(0);
/// The latest failed write's error (a leaf lock; `IoError` holds no heap).
static LAST_WRITE_ERROR: IrqSpinLock<Option<IoError>> = IrqSpinLock::new(None);

/// Swap writes that failed since the last one that worked, and the
/// latest one's error (module doc, "Write errors").
pub fn write_errors_in_a_row() -> (u64, Option<IoError>) {
    let n = WRITE_ERRORS_IN_A_ROW.load(Ordering::Relaxed);
    (n, if n > 0 { LAST_WRITE_ERROR.lock().clone() } else { None })
}

/// Why swapon refused a disk. Each says whose it is to fix: the disk's
/// contents (a header `mkswap` did not write), the disk itself, or the
/// machine (memory, the number of areas).
#[derive(Debug)]
pub enum SwapOnError {
    /// The first page is not a valid swap header: the user's to fix, with
    /// `mkswap` (the header's own message says what is wrong).
    BadHeader(mm::swap::header::HeaderError),
    /// The disk refused writes: every swap-out would fail.
    ReadOnly,
    /// Reading the header failed: the disk's fault.
    Read(IoError),
    /// No frame to read the header into.
    NoMemory,
    /// Every swap type is in use already.
    TooManyAreas { on: usize },
    /// The area's slot map would not fit the heap's share for it
    /// ([`AREA_HEAP_BUDGET`]), or the heap has no room for it now: the
    /// machine's limit; a smaller area works.
    Area(mm::swap::area::AreaError),
}

/// Heap bytes one area's slot map and clusters may take
/// (`mm::swap::area::SwapArea::footprint`): a quarter of the heap's boot
/// region, about 15 GiB of swap (the slot map is one allocation, larger
/// than the regions the heap grows by, so it must fit in the boot region:
/// `memory::heap`). A larger area is refused at swapon, before anything is
/// allocated, rather than end the kernel when the heap runs out.
pub const AREA_HEAP_BUDGET: u64 = memory::BOOT_HEAP_SIZE / 4;

impl fmt::Display for SwapOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapOnError::BadHeader(e) => write!(f, "{e}"),
            SwapOnError::ReadOnly => write!(f, "the disk is read-only, and swap must write"),
            SwapOnError::Read(e) => write!(f, "reading the header: {e}"),
            SwapOnError::NoMemory => write!(f, "no memory to read the header into"),
            SwapOnError::TooManyAreas { on } => write!(f, "{on} swap areas are on already"),
            SwapOnError::Area(e) => write!(f, "{e}"),
        }
    }
}

/// Why swapoff did not finish. The area stays on, with allocation stopped,
/// and nothing is lost.
#[derive(Debug)]
pub enum SwapOffError {
    /// No area of that type is on (the caller's).
    NoArea(SwapType),
    /// Bringing the pages back failed (a read error, no memory), or slots
    /// stayed in use (`mm::swapoff`).
    Walk(mm::swapoff::SwapoffError),
}

impl fmt::Display for SwapOffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapOffError::NoArea(ty) => write!(f, "no swap area of type {ty}"),
            SwapOffError::Walk(e) => write!(f, "{e}"),
        }
    }
}

/// The in-guest tests report errors as strings.
impl From<SwapOnError> for String {
    fn from(e: SwapOnError) -> String {
        format!("swapon: {e}")
    }
}

impl From<SwapOffError> for String {
    fn from(e: SwapOffError) -> String {
        format!("swapoff: {e}")
    }
}

/// Turns swap on for `disk`: reads and checks its header, makes the area.
/// Returns the area's type, or why the disk was refused.
pub fn swapon(disk: &'static BlockDevice) -> Result<SwapType, SwapOnError> {
    if disk.read_only() {
        return Err(SwapOnError::ReadOnly);
    }
    let pages = disk.capacity_pages();
    let frame = memory::alloc_frames(0).map_err(|_| SwapOnError::NoMemory)?;
    // SAFETY: a frame we just allocated, touched by nothing else before the
    // read is over; freed after it.
    let header = unsafe { disk.read_pages(0, frame, 1) }.map_err(SwapOnError::Read).and_then(|()| {
        // SAFETY: `frame` is a RAM frame we own, mapped in the direct
        // map; the read has completed, nobody else writes it.
        let page =
            unsafe { core::slice::from_raw_parts(memory::phys_to_virt(frame).as_u64() as *const u8, 4096) };
        mm::swap::header::parse(page, pages).map_err(SwapOnError::BadHeader)
    });
    memory::free_frames(frame, 0);
    let header = header?;
    let label = String::from_utf8_lossy(header.label_bytes()).into_owned();
    // The area (its slot map, up to `AREA_HEAP_BUDGET` of heap) is made
    // with no lock held and interrupts on, for the free type seen under
    // `AREAS`; if another swapon took that type meanwhile, again.
    let dev = loop {
        let slot = first_free_type();
        let ty = SwapType::new(slot).ok_or(SwapOnError::TooManyAreas { on: slot })?;
        let area = SwapArea::try_new(ty, &header, AREA_HEAP_BUDGET).map_err(SwapOnError::Area)?;
        area.set_keep_clean(KEEP_CLEAN.load(Ordering::Relaxed));
        let dev =
            Arc::new(SwapDevice { area, disk, label: label.clone(), disk_gone: AtomicBool::new(false) });
        let mut areas = AREAS.lock();
        if first_free_type_in(&areas) != slot {
            continue; // dropped after the lock
        }
        if slot == areas.len() {
            areas.push(Some(dev.clone()));
        } else {
            areas[slot] = Some(dev.clone());
        }
        break dev;
    };
    // Bounce buffers for reclaim's gathered writes (given back at swapoff).
    if !disk.enable_write_gather() {
        crate::println!("swap: {}: no memory for gathered writes; one request per folio", disk.name());
    }
    let ty = dev.area.ty();
    crate::println!(
        "swap: on {} (type {ty}): {} slots ({} MiB){}",
        disk.name(),
        dev.area.nr_slots(),
        dev.area.nr_slots() / 256,
        if dev.label.is_empty() { String::new() } else { format!(", label \"{}\"", dev.label) }
    );
    Ok(ty)
}

/// The index of the first free type in `areas`.
fn first_free_type_in(areas: &[Option<Arc<SwapDevice>>]) -> usize {
    areas.iter().position(Option::is_none).unwrap_or(areas.len())
}

/// The first free type now.
fn first_free_type() -> usize {
    first_free_type_in(&AREAS.lock())
}

/// Turns swap off for the area of type `ty` (`mm::swapoff`): stops
/// allocation from it, brings every page of every address space back from
/// it (as read faults would: [`crate::vm::space::Spaces`]), takes the cache
/// folios left (unmapped, or mapped read-only) out of the cache, and frees
/// the area once no slot is used. On an error (a read that fails, no
/// memory) the area stays on, with allocation stopped, and the message says
/// why; nothing is lost.
pub fn swapoff(ty: SwapType) -> Result<(), SwapOffError> {
    let dev = area(ty).ok_or(SwapOffError::NoArea(ty))?;
    let back = mm::swapoff::swapoff(&crate::vm::space::Spaces, &dev.area).map_err(SwapOffError::Walk)?;
    let mut areas = AREAS.lock();
    areas[ty.index()] = None;
    while areas.last().is_some_and(Option::is_none) {
        areas.pop();
    }
    drop(areas);
    // No slot is used: no write of this area is in flight.
    dev.disk.disable_write_gather();
    crate::println!("swap: off {} (type {ty}): {back} pages brought back", dev.disk.name());
    Ok(())
}

/// Turns swap on for every disk whose header is valid (module doc).
pub fn init() {
    AREAS.lock().reserve(mm::pgtable::format::MAX_SWAP_TYPES as usize);
    crate::drivers::blk::set_retire_hook(on_disk_retired);
    for disk in crate::drivers::blk::disks() {
        if let Err(e) = swapon(disk) {
            crate::println!("swap: swapon {}: {e}", disk.name());
        }
    }
}

/// The block driver's retire hook (module doc): every area on `disk`
/// stops allocating for good. Task context, no lock held.
fn on_disk_retired(disk: &BlockDevice) {
    for i in 0..mm::pgtable::format::MAX_SWAP_TYPES as usize {
        let Some(dev) = SwapType::new(i).and_then(area) else { continue };
        if !core::ptr::eq(dev.disk, disk) || dev.disk_gone.swap(true, Ordering::AcqRel) {
            continue;
        }
        dev.area.stop_alloc();
        crate::println!(
            "swap: area type {} on {}: the disk is out of service; no new pages go to it ({} slots in use: \
             a page only the disk holds is lost to whoever needs it)",
            dev.area.ty(),
            disk.name(),
            dev.area.nr_used()
        );
    }
}

/// The area of type `ty`.
pub fn area(ty: SwapType) -> Option<Arc<SwapDevice>> {
    AREAS.lock().get(ty.index()).cloned().flatten()
}

/// The area new slots come from: the preferred one ([`prefer`]) if set,
/// still allocating and not full, else the first such one. A full area is
/// passed over: choosing it would make reclaim free nothing while another
/// area has room.
pub fn alloc_area() -> Option<Arc<SwapDevice>> {
    let areas = AREAS.lock();
    let preferred = PREFERRED.load(Ordering::Relaxed);
    let first = |d: &&Arc<SwapDevice>| !d.disk_gone() && !d.area.alloc_stopped() && d.area.nr_free() > 0;
    areas
        .get(preferred as usize)
        .and_then(Option::as_ref)
        .filter(first)
        .or_else(|| areas.iter().flatten().find(first))
        .cloned()
}

/// The type [`alloc_area`] prefers (`u64::MAX`: none).
static PREFERRED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes new slots come from the area of type `ty` while it allocates
/// (`None`: the first area again). For tests of one area.
pub fn prefer(ty: Option<SwapType>) {
    PREFERRED.store(ty.map_or(u64::MAX, |ty| ty.index() as u64), Ordering::Relaxed);
}

/// True when some swap area is on (allocates nothing: kswapd asks often).
pub fn any_area() -> bool {
    AREAS.lock().iter().any(Option::is_some)
}

/// Free and total slots over every area.
pub fn totals() -> (u64, u64) {
    AREAS.lock().iter().flatten().fold((0, 0), |(f, t), d| (f + d.area.nr_free(), t + d.area.nr_slots()))
}

/// Pages in the swap cache over every area (`/proc/meminfo`'s
/// `SwapCached`).
pub fn nr_cached() -> u64 {
    AREAS.lock().iter().flatten().map(|d| d.area.nr_in_cache()).sum()
}

/// A page-table entry holding `entry` is gone (munmap, teardown): its slot
/// loses a count. When that was the last and a folio is still in the
/// cache for it, the folio is freed now if nobody is using it (otherwise
/// reclaim frees it when it finds it).
pub fn free_entry(entry: SwapEntry) {
    let Some(dev) = area(entry.ty()) else {
        crate::println!("swap: free of {entry:?}: no such area");
        return;
    };
    match dev.area.free_ref(entry) {
        Ok(0) if dev.area.has_cache(entry) => drop_unused_cache_folio(&dev, entry),
        Ok(_) => {}
        Err(e) => crate::println!("swap: free of {entry:?}: {e}"),
    }
}

/// Frees the cache folio of `entry` if nobody needs it any more
/// ([`drop_unmapped_cache_folio`]).
fn drop_unused_cache_folio(dev: &SwapDevice, entry: SwapEntry) {
    let memmap = memory::frame_allocator().memmap();
    let Some((folio, _)) = mm::swap::cache::lookup_get(&dev.area, memmap, entry) else { return };
    drop_unmapped_cache_folio(folio);
    put(folio);
}

/// Takes the locked, unmapped folio `folio` (the caller holds a reference
/// too) out of `dev`'s swap cache when no page-table entry holds any of its
/// slots and it is not under writeback (`mm::swap::cache::delete_if_unused`).
/// A folio is left in that state by a fault whose entry changed meanwhile,
/// or by an munmap that raced reclaim; without this it would wait for the
/// next reclaim pass.
pub fn free_if_unused_locked(dev: &SwapDevice, folio: Folio<'static>) {
    mm::swap::cache::delete_if_unused(&dev.area, &folio, mm::swap::cache::IfMapped::Keep);
}

/// A cache folio that may be needed by nobody (its last mapping or entry
/// just went; the caller holds a reference): takes it out of the cache
/// now if its lock is free, else hands it to kswapd
/// ([`crate::vm::reclaim::defer`]), which waits for the lock.
pub fn drop_unmapped_cache_folio(folio: Folio<'static>) {
    let Some(entry) = mm::swap::cache::folio_entry(&folio) else { return };
    let Some(dev) = area(entry.ty()) else { return };
    if folio.try_lock() {
        free_if_unused_locked(&dev, folio);
        folio.unlock();
    } else {
        crate::vm::reclaim::defer(folio);
    }
}

/// Drops one reference, freeing the folio (off the LRU first) when it was
/// the last.
pub fn put(folio: Folio<'static>) {
    if folio.put() {
        crate::vm::folios::free_folio(folio);
    }
}

/// One more page-table entry holds `entry` (fork).
pub fn dup_entry(entry: SwapEntry) -> Result<(), String> {
    let dev = area(entry.ty()).ok_or_else(|| format!("no swap area {}", entry.ty()))?;
    dev.area.dup(entry).map(drop).map_err(|e| format!("{e}"))
}

/// The count of `entry`'s slot, for the consistency checker.
pub fn count_of(entry: SwapEntry) -> Option<u8> {
    area(entry.ty()).map(|d| d.area.count(entry))
}

/// Panics unless the `nr` frames at `frame` are pages of one folio: what
/// `mm::swap` hands to [`Io`] (`SwapBackend`, a safe trait since `mm` has no
/// `unsafe`). Page tables, the heap and stacks are raw frames, not folios,
/// so a bug in a caller cannot aim the device at them.
fn assert_one_folio(what: &str, frame: PhysAddr, nr: usize) {
    let ok = mm::folio::folio_covering(memory::frame_allocator().memmap(), frame, nr).is_some();
    assert!(ok, "swap: {what} {nr} pages at {frame}, not pages of one folio");
}

/// Panics unless each of the `nr` frames at `frame` is a page of a folio
/// (one folio, or a readahead's order-0 folios side by side): what
/// `mm::swap` may read into.
fn assert_folios(what: &str, frame: PhysAddr, nr: usize) {
    let memmap = memory::frame_allocator().memmap();
    let ok = mm::folio::folio_covering(memmap, frame, nr).is_some()
        || (0..nr as u64).all(|k| {
            mm::folio::folio_covering(memmap, PhysAddr::new(frame.as_u64() + k * mm::PAGE_SIZE), 1).is_some()
        });
    assert!(ok, "swap: {what} {nr} pages at {frame}, not pages of folios");
}

/// Counts a swap write of `nr` pages that has ended with `r` (module doc,
/// "Write errors"; [`NR_WRITEBACK`]). Task context.
fn write_ended(nr: usize, r: Result<(), IoError>) -> Result<(), IoError> {
    NR_WRITEBACK.fetch_sub(nr as u64, Ordering::Relaxed);
    match &r {
        Ok(()) => {
            PSWPOUT.fetch_add(nr as u64, Ordering::Relaxed);
            WRITE_ERRORS_IN_A_ROW.store(0, Ordering::Relaxed);
        }
        Err(e) => {
            WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
            *LAST_WRITE_ERROR.lock() = Some(e.clone());
            WRITE_ERRORS_IN_A_ROW.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

/// A swap write reclaim started ([`Io::submit_write`]) and has not waited
/// for yet ([`wait_write`]); its pages are counted in [`NR_WRITEBACK`]
/// until then.
pub enum PendingWrite {
    /// One request in flight on `disk`.
    InFlight { disk: &'static BlockDevice, ticket: crate::drivers::blk::Ticket, nr: usize },
    /// Written already, waiting (a folio larger than one request).
    Ended(Result<(), IoError>),
}

impl Io<'_> {
    /// Starts writing `folios` (which reclaim holds locked, `Writeback`
    /// set, until [`wait_write`] returned; their slots one run from
    /// `first`) as one request, without waiting for it (module doc,
    /// "Writing"): one folio from its own frames, several gathered through
    /// the disk's bounce buffer. `Ok(None)`: the disk has no room now,
    /// only when `pending` (the caller waits for one of its writes first);
    /// with nothing pending this waits for room. A folio larger than one
    /// request is written whole before this returns. Task context,
    /// interrupts on, no spin lock held.
    pub fn submit_write(
        &self,
        first: SwapEntry,
        folios: &[Folio<'static>],
        pending: bool,
    ) -> Result<Option<PendingWrite>, IoError> {
        let disk = self.0.disk;
        let parts: Vec<(PhysAddr, usize)> = folios.iter().map(|f| (f.pfn().phys(), f.nr_pages())).collect();
        let nr: usize = parts.iter().map(|p| p.1).sum();
        if let [(frame, n)] = parts[..] {
            if n > disk.max_request_pages() {
                return Ok(Some(PendingWrite::Ended(self.write(first, frame, n))));
            }
        }
        for &(frame, n) in &parts {
            assert_one_folio("write from", frame, n);
        }
        NR_WRITEBACK.fetch_add(nr as u64, Ordering::Relaxed);
        // SAFETY: pages of folios (checked above); `mm::reclaim` holds
        // each locked with a reference, under `Writeback`, until it has
        // waited for this write (`wait_write`), so they stay allocated and
        // the kernel does not change them meanwhile
        // (`ReclaimHost::submit_write`).
        match unsafe { disk.submit_write_gather(first.offset(), &parts) } {
            Ok(Some(ticket)) => Ok(Some(PendingWrite::InFlight { disk, ticket, nr })),
            Ok(None) => {
                NR_WRITEBACK.fetch_sub(nr as u64, Ordering::Relaxed);
                if pending {
                    Ok(None)
                } else {
                    // Holding no request of ours: waiting for room is
                    // safe. Part by part; the write fails whole if one does.
                    let mut entry = first;
                    let mut r = Ok(());
                    for (frame, n) in parts {
                        r = r.and(self.write(entry, frame, n));
                        entry = entry.plus(n as u64);
                    }
                    Ok(Some(PendingWrite::Ended(r)))
                }
            }
            Err(e) => write_ended(nr, Err(e)).map(|()| None),
        }
    }
}

/// Waits for a write [`Io::submit_write`] started; says how it ended.
/// Task context, interrupts on, no spin lock held; may sleep.
pub fn wait_write(write: PendingWrite) -> Result<(), IoError> {
    match write {
        PendingWrite::InFlight { disk, ticket, nr } => write_ended(nr, disk.wait(ticket)),
        PendingWrite::Ended(r) => r,
    }
}

/// The disk and memory under `mm::swap` for one area.
pub struct Io<'a>(pub &'a SwapDevice);

impl SwapBackend for Io<'_> {
    type IoError = IoError;

    fn read(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), IoError> {
        assert_folios("read into", frame, nr);
        // SAFETY: pages of folios (checked above), not a kernel object;
        // `mm::swap` reads only into folios it holds locked or has not
        // published yet, so nothing else touches them until this returns
        // (`SwapBackend::read`).
        let r = unsafe { self.0.disk.read_pages(first.offset(), frame, nr) };
        match r {
            Ok(()) => PSWPIN.fetch_add(nr as u64, Ordering::Relaxed),
            Err(_) => READ_ERRORS.fetch_add(1, Ordering::Relaxed),
        };
        r
    }
    fn write(&self, first: SwapEntry, frame: PhysAddr, nr: usize) -> Result<(), IoError> {
        assert_one_folio("write from", frame, nr);
        NR_WRITEBACK.fetch_add(nr as u64, Ordering::Relaxed);
        // SAFETY: pages of one folio (checked above); `mm` writes a folio
        // it holds locked with a reference, so it stays allocated and the
        // kernel does not change it until this returns (`SwapBackend::write`).
        let r = unsafe { self.0.disk.write_pages(first.offset(), frame, nr) };
        write_ended(nr, r)
    }
    fn relax(&self) {
        sched::yield_now();
    }
    fn alloc_folio(&self) -> Option<UnpublishedFolio<'static>> {
        for _ in 0..3 {
            let f = crate::sync::without_interrupts(|| {
                memory::frame_allocator().alloc_folio(0, AllocKind::Normal)
            });
            if let Ok(f) = f {
                return Some(f);
            }
            if crate::vm::reclaim::direct_reclaim(32) == 0 {
                break;
            }
        }
        None
    }
    fn alloc_huge_folio(&self) -> Option<UnpublishedFolio<'static>> {
        // Only if a 2 MiB block is free now: no reclaim for it, the
        // order-0 read is the fallback.
        crate::sync::without_interrupts(|| {
            memory::frame_allocator().alloc_folio(mm::thp::HPAGE_ORDER, AllocKind::Normal).ok()
        })
    }
    fn alloc_readahead(&self, nr: usize) -> Option<Vec<UnpublishedFolio<'static>>> {
        // Only if a block is free now: no reclaim for neighbours nobody
        // asked for yet; the faulting page alone is the fallback.
        crate::sync::without_interrupts(|| {
            memory::frame_allocator().alloc_folio_run(nr, AllocKind::Normal).ok()
        })
    }
    fn free_folio(&self, folio: Folio<'static>) {
        crate::vm::folios::free_folio(folio);
    }
}

/// Swap-in's fault-around (`mm::swap::swapin::map_around`): after half 2
/// mapped the page at `page` (its PTE held `entry`), maps the neighbours
/// of its readahead window that wait in the swap cache, each as a read
/// fault would, and counts them ([`SWAPIN_MAPPED_AROUND`]). The caller
/// holds the space's lock and the faulting folio's lock.
pub fn map_around(
    dev: &SwapDevice,
    table: &PageTable<Format>,
    vmas: &VmaSet,
    page: VirtAddr,
    entry: SwapEntry,
) {
    let memmap = memory::frame_allocator().memmap();
    let free = |folio: Folio<'static>| crate::vm::folios::free_folio(folio);
    let n =
        mm::swap::swapin::map_around(table, &KernelTables, vmas, &dev.area, memmap, page, entry, true, &free);
    SWAPIN_MAPPED_AROUND.fetch_add(n as u64, Ordering::Relaxed);
}

/// Swap-in, half 1 (`mm::swap::swapin`): the cache folio of `entry`,
/// locked, with a reference, and the page's index in it. Task context,
/// interrupts on, no lock held. `options` look at the page table under
/// the space's lock for an intact run to read whole and for the
/// neighbours to read ahead with it (`mm::swap::swapin::SwapInOptions`).
pub fn get_folio(
    dev: &SwapDevice,
    entry: SwapEntry,
    handle: AnonHandle,
    index: u64,
    options: mm::swap::swapin::SwapInOptions<'_>,
) -> Result<(Folio<'static>, usize), SwapInError<IoError>> {
    let memmap = memory::frame_allocator().memmap();
    mm::swap::swapin::get_swapped_folio(&dev.area, memmap, &Io(dev), entry, handle, index, options)
}
