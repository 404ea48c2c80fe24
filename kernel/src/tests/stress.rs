//! The randomised mm stress (`stress::random_mm_ops`): tasks on every CPU
//! apply random operations to overlapping ranges of shared address spaces
//! and check every byte they read against a shadow model, with swap
//! smaller than the working set and the faulty disk as a second swap area;
//! the consistency checker runs at quiescent points (with kcompactd idle). `cargo xtask stress`
//! runs it for minutes; `cargo xtask test` runs it briefly.
//!
//! ## Worlds, regions and the shadow
//!
//! There are [`NR_WORLDS`] address spaces (worlds), each with
//! [`NR_REGIONS`] regions of [`REGION_PAGES`] pages (two huge pages) at
//! fixed addresses. Every byte of a region is described by the shadow: per
//! page, unmapped, or mapped read-only or read-write with contents that are
//! zeros or the pattern of a stamp ([`pattern`]: every word of every page
//! differs, and names its address, so a page from the wrong place, a stale
//! copy or a lost write all show).
//!
//! Half the tasks run in each world, on every CPU. An operation picks a
//! region and a range of pages in it (a random one, or one aligned to huge
//! pages), takes the region's lock (the stress's own, a try-lock that
//! yields), does its work and updates the shadow. The lock serialises the
//! operations on one region, so the shadow is never ambiguous; the kernel
//! still races everywhere: all tasks of a world share its page table, its
//! lock, its areas (which merge and split across regions), and all share
//! the LRU, reclaim, kswapd and swap. What an operation may not assume is
//! written beside it (a fork elsewhere in the world shares every page for
//! a while, for instance).
//!
//! ## Operations
//!
//! [`OPS`] is the table of operations, one entry each: a name (printed in
//! the totals as `op.<name>=N`), a weight (how often it is picked) and a
//! function. A new mechanism joins the stress by adding an entry.
//!
//! ## Epochs and quiescent points
//!
//! The run goes in epochs (a few seconds each). In an epoch's first phase
//! every task runs operations until the epoch's end; then, with every task
//! waiting, the checker (`AddressSpace::check`) runs over every world; in
//! the second phase every task reads all the pages of its share of the
//! regions back against the shadow (four words of every page; every word
//! in the last epoch), and the checker runs again. Before
//! the last epoch's second phase the faulty area is swapped off, so its
//! pages come back through swapoff's walk and are verified.
//!
//! ## Reproducibility
//!
//! Every task draws its operations from its own generator (`mm::rng::SplitMix64`,
//! stream = task index) seeded by `seed=` (default [`DEFAULT_SEED`]), the
//! same number of draws per operation whatever happens: the same seed
//! replays the same sequence of operations in every task (how they
//! interleave is up to the machine). The first mismatch names the seed, the
//! task and the operation's number in its sequence.
//!
//! ## The totals line
//!
//! The run ends with one line (`STRESS key=value ...`, see [`Totals`]) that
//! `cargo xtask stress` parses. The test fails on any mismatched byte,
//! checker error, killed task, or leaked frame, swap slot or heap byte.

use crate::arch::prelude::*;
use crate::memory;
use crate::task::sched;
use crate::tests::kit::Usage;
use crate::tests::{Test, TestEnv};
use crate::vm::migrate::Dest;
use crate::vm::move_pages::PageStatus;
use crate::vm::space::{release_user_pages, AddressSpace, Advice};
use crate::vm::swap::{self, PSWPIN, PSWPOUT, WRITE_ERRORS};
use crate::vm::uaccess;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use mm::gup::Hold;
use mm::pgtable::SwapType;
use mm::rng::SplitMix64;
use mm::vma::VmaProt;
use mm::{PhysAddr, VirtAddr};

pub(crate) const TESTS: &[Test] = register!["stress": random_mm_ops];

/// Address spaces the tasks share.
const NR_WORLDS: usize = 2;
/// Regions per world (each locked on its own).
const NR_REGIONS: usize = 6;
/// Pages per region: two huge pages.
const REGION_PAGES: u64 = 1024;
const REGION_BYTES: u64 = REGION_PAGES * PAGE;
const PAGE: u64 = 4096;
const WORDS: u64 = PAGE / 8;
/// Where the regions of every world start (2 MiB aligned).
const BASE: u64 = 0x0000_0010_0000_0000;
/// The pages all the regions hold when fully mapped.
const WORKING_SET_PAGES: u64 = NR_WORLDS as u64 * NR_REGIONS as u64 * REGION_PAGES;
/// How long the stress runs when `stress_secs` is not given.
const DEFAULT_SECS: u64 = 5;
/// The seed when `seed=` is not given.
pub const DEFAULT_SEED: u64 = 0x5eed_0013;
/// Most pages one write or read operation touches (bounds an operation's time).
const MAX_RW_PAGES: u64 = 64;
/// Most pages one GUP operation holds.
const MAX_GUP_PAGES: u64 = 16;
/// Every failure message about contents starts so.
pub const MISMATCH: &str = "mismatch";

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const RO: VmaProt = VmaProt { read: true, write: false, exec: false };

/// What one page must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Zeros (never written, or dropped by `MADV_DONTNEED`).
    Zero,
    /// The pattern of this stamp.
    Stamp(u32),
    /// Not known after a mismatch (not checked until written again).
    Unknown,
}

/// The shadow of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Unmapped,
    Mapped { writable: bool, content: Content },
}

impl Page {
    fn mapped(self) -> bool {
        self != Page::Unmapped
    }
    fn writable(self) -> bool {
        matches!(self, Page::Mapped { writable: true, .. })
    }
    fn content(self) -> Option<Content> {
        match self {
            Page::Unmapped => None,
            Page::Mapped { content, .. } => Some(content),
        }
    }
    fn with_content(self, content: Content) -> Page {
        match self {
            Page::Unmapped => Page::Unmapped,
            Page::Mapped { writable, .. } => Page::Mapped { writable, content },
        }
    }
}

/// Word `w` of the page at `va` holding the pattern of `stamp`: never
/// zero, different for every word, page and stamp.
fn pattern(stamp: u32, va: u64, w: u64) -> u64 {
    mm::rng::mix64((u64::from(stamp) << 32 | w) ^ va.rotate_left(17)) | 1
}

/// What a word of `content` at `va` must be (`None`: unknown).
fn expected(content: Content, va: u64, w: u64) -> Option<u64> {
    match content {
        Content::Zero => Some(0),
        Content::Stamp(s) => Some(pattern(s, va, w)),
        Content::Unknown => None,
    }
}

/// One address space of the stress and the shadow of its regions.
struct World {
    space: Arc<AddressSpace>,
    /// The shadow of each region, behind the region's lock.
    regions: Vec<spin::Mutex<Vec<Page>>>,
    /// Fork operations under way in this world, and how many began: while
    /// a child lives every page of the world may be shared with it, so a
    /// write may copy a page a plain reference holds (not a bug).
    nr_forks_active: AtomicU64,
    nr_forks_begun: AtomicU64,
}

impl World {
    fn va(&self, region: usize, page: u64) -> u64 {
        region_va(region, page)
    }
}

fn region_va(region: usize, page: u64) -> u64 {
    BASE + region as u64 * REGION_BYTES + page * PAGE
}

/// Counters every task adds to.
#[derive(Default)]
struct Counts {
    ops: [AtomicU64; OPS.len()],
    bytes_verified: AtomicU64,
    mismatched_bytes: AtomicU64,
    pins: AtomicU64,
    gets: AtomicU64,
    forks: AtomicU64,
    fork_failures: AtomicU64,
    /// Operations the kernel refused (too many areas, out of memory).
    refused: AtomicU64,
    killed: AtomicU64,
    /// Faults of fork children (the worlds' own are read at the end).
    child_faults: AtomicU64,
    /// The longest one operation took, in milliseconds.
    slowest_op_ms: AtomicU64,
}

/// What the tasks and the coordinator share.
struct Shared {
    seed: u64,
    worlds: Vec<World>,
    counts: Counts,
    /// The first mismatch, kill or error, with where it happened.
    first_error: spin::Mutex<Option<String>>,
    /// What the slowest operation was.
    slowest_op: spin::Mutex<Option<String>>,
    /// Bumped by the coordinator to start a phase.
    phase: AtomicU64,
    /// Tasks done with the current phase.
    arrived: AtomicU64,
    /// When the current epoch's operations end.
    epoch_end_ns: AtomicU64,
    /// Set to end the run (also when a task died).
    stop: AtomicBool,
    /// The quiescent read-back reads every word (the last epoch's), not
    /// four of every page.
    full_verify: AtomicBool,
    nr_tasks: u64,
    /// When the run started.
    start_ns: u64,
}

impl Shared {
    /// Keeps `why` if it is the first failure, with when it was found.
    fn note_error(&self, why: String) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            let ms = (Arch::now_ns() - self.start_ns) / 1_000_000;
            let why = format!("{why} (found {ms} ms into the run)");
            crate::println!("\nstress: {why}");
            *first = Some(why);
        }
    }
}

/// Where a check happens, for the message of a mismatch.
#[derive(Clone, Copy)]
struct Who {
    task: u64,
    op_nr: u64,
    op: &'static str,
    via: &'static str,
}

/// One task's state. It lives on the task's stack and holds the shared
/// state only by reference: the `Arc` is the task closure's, which the
/// kernel drops even when it ends the task, so a killed task does not keep
/// the worlds (and all they map) alive.
struct Ctx<'a> {
    sh: &'a Arc<Shared>,
    world: usize,
    task: u64,
    rng: SplitMix64,
    op_nr: u64,
    nr_stamps: u32,
}

/// The arguments of one operation, drawn before it runs.
#[derive(Debug, Clone, Copy)]
struct Args {
    region: usize,
    first: u64,
    pages: u64,
    aux: u64,
}

/// One operation of the table.
struct Op {
    name: &'static str,
    weight: u64,
    run: fn(&mut Ctx<'_>, &mut [Page], Args),
}

/// The operations (module doc): a new mechanism joins with an entry.
const OPS: &[Op] = &[
    Op { name: "mmap", weight: 8, run: op_mmap },
    Op { name: "mmap_nothp", weight: 3, run: op_mmap_nothp },
    Op { name: "munmap", weight: 3, run: op_munmap },
    Op { name: "mprotect", weight: 4, run: op_mprotect },
    Op { name: "dontneed", weight: 3, run: op_dontneed },
    Op { name: "pageout", weight: 4, run: op_pageout },
    Op { name: "hugepage", weight: 3, run: op_hugepage },
    Op { name: "nohugepage", weight: 2, run: op_nohugepage },
    Op { name: "write", weight: 14, run: op_write },
    Op { name: "read", weight: 12, run: op_read },
    Op { name: "gup", weight: 5, run: op_gup },
    Op { name: "fork", weight: 2, run: op_fork },
    Op { name: "migrate", weight: 3, run: op_migrate },
    Op { name: "compact", weight: 2, run: op_compact },
];

impl Ctx<'_> {
    fn world(&self) -> &World {
        &self.sh.worlds[self.world]
    }
    fn space(&self) -> &Arc<AddressSpace> {
        &self.world().space
    }
    /// A stamp no other write used.
    fn stamp(&mut self) -> u32 {
        self.nr_stamps += 1;
        ((self.task as u32 + 1) << 22) | (self.nr_stamps & 0x3f_ffff)
    }
    fn who(&self, op: &'static str, via: &'static str) -> Who {
        Who { task: self.task, op_nr: self.op_nr, op, via }
    }
    fn refused(&self) {
        self.sh.counts.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Draws and runs the next operation (always five draws).
    fn step(&mut self) -> bool {
        let (pick, r, a, b, aux) = (
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64(),
            self.rng.next_u64(),
        );
        let op = pick_op(pick);
        let region = (r % NR_REGIONS as u64) as usize;
        let mut first = a % REGION_PAGES;
        let mut pages = match b % 4 {
            0 => 1 + (b >> 2) % 8,
            1 => 1 + (b >> 2) % 64,
            2 => 1 + (b >> 2) % 512,
            _ => REGION_PAGES,
        };
        // A quarter of the ranges are whole huge pages.
        if (b >> 20).is_multiple_of(4) {
            first &= !511;
            pages = pages.div_ceil(512) * 512;
        }
        pages = pages.min(REGION_PAGES - first);
        let args = Args { region, first, pages, aux };
        let sh = self.sh;
        let Some(mut shadow) = lock_region(sh, self.world, region) else { return false };
        let t0 = Arch::now_ns();
        (OPS[op].run)(self, &mut shadow, args);
        drop(shadow);
        let ms = (Arch::now_ns() - t0) / 1_000_000;
        if ms > self.sh.counts.slowest_op_ms.fetch_max(ms, Ordering::Relaxed) {
            let what =
                format!("task {} op #{} ({}, {args:?}) took {ms} ms", self.task, self.op_nr, OPS[op].name);
            *self.sh.slowest_op.lock() = Some(what);
        }
        self.sh.counts.ops[op].fetch_add(1, Ordering::Relaxed);
        self.op_nr += 1;
        true
    }

    /// [`verify_user`] with this task's shared state.
    fn verify_user(&self, who: Who, page: &mut Page, va: u64, all: bool, aux: u64) {
        verify_user(self.sh, who, page, va, all, aux);
    }
}

/// The index in [`OPS`] that the draw `pick` chooses, by weight.
fn pick_op(pick: u64) -> usize {
    let total: u64 = OPS.iter().map(|o| o.weight).sum();
    let mut left = pick % total;
    for (i, op) in OPS.iter().enumerate() {
        if left < op.weight {
            return i;
        }
        left -= op.weight;
    }
    unreachable!("pick_op: {pick} is below the total weight")
}

/// The lock of `region` of world `world` (yielding while another task
/// holds it); `None` when the run is stopping.
fn lock_region(sh: &Shared, world: usize, region: usize) -> Option<spin::MutexGuard<'_, Vec<Page>>> {
    let lock = &sh.worlds[world].regions[region];
    loop {
        if let Some(guard) = lock.try_lock() {
            return Some(guard);
        }
        if sh.stop.load(Ordering::Relaxed) {
            return None;
        }
        sched::yield_now();
    }
}

/// Checks the page at `va` against `content` by loading its words with
/// `load` (every word, or four of them chosen by `aux`); counts the bytes
/// and any mismatch, and notes the first. False on a mismatch.
fn verify(
    sh: &Shared,
    who: Who,
    va: u64,
    content: Content,
    all: bool,
    aux: u64,
    load: impl Fn(u64) -> u64,
) -> bool {
    if content == Content::Unknown {
        return true;
    }
    let sample = [0, WORDS - 1, aux % WORDS, (aux >> 9) % WORDS];
    let words: &mut dyn Iterator<Item = u64> = if all { &mut (0..WORDS) } else { &mut sample.into_iter() };
    let mut nr = 0;
    let mut bad = 0u64;
    let mut first_bad = None;
    for w in words {
        nr += 1;
        let want = expected(content, va, w).unwrap_or(0);
        let got = load(w);
        if got != want {
            bad += (got ^ want).to_ne_bytes().iter().filter(|&&b| b != 0).count() as u64;
            first_bad.get_or_insert((w, got, want));
        }
    }
    sh.counts.bytes_verified.fetch_add(nr * 8, Ordering::Relaxed);
    let Some((w, got, want)) = first_bad else { return true };
    sh.counts.mismatched_bytes.fetch_add(bad, Ordering::Relaxed);
    sh.note_error(format!(
        "{MISMATCH}: seed={:#x} task {} op #{} ({}, via {}): word {w} of the page at {va:#x} is {got:#x}, \
         the shadow says {want:#x} ({content:?}); {bad} bad bytes in the page",
        sh.seed, who.task, who.op_nr, who.op, who.via
    ));
    false
}

/// [`verify`] through the running task's own loads; a page that
/// mismatched becomes [`Content::Unknown`].
fn verify_user(sh: &Shared, who: Who, page: &mut Page, va: u64, all: bool, aux: u64) {
    if let Some(content) = page.content() {
        if !verify(sh, who, va, content, all, aux, |w| uaccess::read_u64(va + w * 8)) {
            *page = page.with_content(Content::Unknown);
        }
    }
}

/// Fills the page at `va` with the pattern of `stamp` (the task's stores).
fn fill_user(va: u64, stamp: u32) {
    for w in 0..WORDS {
        uaccess::write_u64(va + w * 8, pattern(stamp, va, w));
    }
}

/// The word `w` of the held page at `pa`, through the direct map.
fn hold_read(pa: PhysAddr, w: u64) -> u64 {
    let at = memory::phys_to_virt(PhysAddr::new(pa.as_u64() & !(PAGE - 1))).as_u64() + w * 8;
    // SAFETY: `pa` is a page this task holds (a GUP reference or pin), so
    // it stays allocated; the direct map maps it; an aligned word load of
    // memory any bits of which are a valid `u64`.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// Stores `value` as word `w` of the held page at `pa` (a device's DMA).
fn hold_write(pa: PhysAddr, w: u64, value: u64) {
    let at = memory::phys_to_virt(PhysAddr::new(pa.as_u64() & !(PAGE - 1))).as_u64() + w * 8;
    // SAFETY: as in `hold_read`; the hold was taken for writing, and the
    // page is user memory: no kernel object lives in it.
    unsafe { core::ptr::write_volatile(at as *mut u64, value) }
}

/// The maximal runs `[start, end)` of pages in `[first, first + pages)`
/// for which `keep` holds.
fn runs(shadow: &[Page], a: Args, keep: impl Fn(Page) -> bool) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for p in a.first..a.first + a.pages {
        match (keep(shadow[p as usize]), start) {
            (true, None) => start = Some(p),
            (false, Some(s)) => {
                out.push((s, p));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, a.first + a.pages));
    }
    out
}

// ------------------------------------------------------------ operations

fn op_mmap(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    mmap_runs(ctx, shadow, a, None);
}

/// mmap, then `MADV_NOHUGEPAGE` over the new area: only 4 KiB pages.
fn op_mmap_nothp(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    mmap_runs(ctx, shadow, a, Some(Advice::NoHugePage));
}

/// Maps every unmapped run of the range (read-write, zeros), then gives it
/// `advice`, if any; the aux bit 0 asks for `MADV_HUGEPAGE` otherwise.
fn mmap_runs(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args, advice: Option<Advice>) {
    let advice = advice.or((a.aux & 1 == 0).then_some(Advice::HugePage));
    for (s, e) in runs(shadow, a, |p| !p.mapped()) {
        let va = ctx.world().va(a.region, s);
        if ctx.space().mmap_fixed(VirtAddr::new(va), (e - s) * PAGE, RW).is_err() {
            ctx.refused();
            continue;
        }
        for p in s..e {
            shadow[p as usize] = Page::Mapped { writable: true, content: Content::Zero };
        }
        if let Some(advice) = advice {
            if ctx.space().madvise(VirtAddr::new(va), (e - s) * PAGE, advice).is_err() {
                ctx.refused();
            }
        }
    }
}

fn op_munmap(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let va = ctx.world().va(a.region, a.first);
    if ctx.space().munmap(VirtAddr::new(va), a.pages * PAGE).is_err() {
        ctx.refused();
        return;
    }
    shadow[a.first as usize..(a.first + a.pages) as usize].fill(Page::Unmapped);
}

/// Makes the mapped runs read-only (aux bit 0) or read-write.
fn op_mprotect(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let writable = a.aux & 1 == 0;
    for (s, e) in runs(shadow, a, Page::mapped) {
        let va = ctx.world().va(a.region, s);
        let prot = if writable { RW } else { RO };
        if ctx.space().mprotect(VirtAddr::new(va), (e - s) * PAGE, prot).is_err() {
            ctx.refused();
            continue;
        }
        for p in &mut shadow[s as usize..e as usize] {
            if let Page::Mapped { content, .. } = *p {
                *p = Page::Mapped { writable, content };
            }
        }
    }
}

/// `madvise(advice)` over every mapped run; `MADV_DONTNEED` zeroes the
/// shadow.
fn advise_runs(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args, advice: Advice) {
    for (s, e) in runs(shadow, a, Page::mapped) {
        let va = ctx.world().va(a.region, s);
        if ctx.space().madvise(VirtAddr::new(va), (e - s) * PAGE, advice).is_err() {
            ctx.refused();
            continue;
        }
        if advice == Advice::DontNeed {
            for p in &mut shadow[s as usize..e as usize] {
                *p = p.with_content(Content::Zero);
            }
        }
    }
}

fn op_dontneed(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    advise_runs(ctx, shadow, a, Advice::DontNeed);
}

fn op_pageout(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    advise_runs(ctx, shadow, a, Advice::PageOut);
}

fn op_hugepage(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    advise_runs(ctx, shadow, a, Advice::HugePage);
}

fn op_nohugepage(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    advise_runs(ctx, shadow, a, Advice::NoHugePage);
}

/// Fills the writable pages of the range (at most [`MAX_RW_PAGES`]) with a
/// new stamp; with aux bit 0 reads a few words of each back at once.
fn op_write(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let stamp = ctx.stamp();
    let who = ctx.who("write", "task");
    for p in a.first..a.first + a.pages.min(MAX_RW_PAGES) {
        let page = &mut shadow[p as usize];
        if page.writable() {
            let va = ctx.world().va(a.region, p);
            fill_user(va, stamp);
            *page = page.with_content(Content::Stamp(stamp));
            if a.aux & 1 == 0 {
                ctx.verify_user(who, page, va, false, a.aux >> 1);
            }
        }
    }
}

/// Reads every word of the mapped pages of the range (at most
/// [`MAX_RW_PAGES`]) back against the shadow.
fn op_read(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let who = ctx.who("read", "task");
    for p in a.first..a.first + a.pages.min(MAX_RW_PAGES) {
        let va = ctx.world().va(a.region, p);
        ctx.verify_user(who, &mut shadow[p as usize], va, true, a.aux);
    }
}

/// Holds up to [`MAX_GUP_PAGES`] mapped pages from the range's start with
/// `get_user_pages` (a pin with aux bit 1, else a plain reference; for
/// writing when they are writable), checks them through the holds, with
/// aux bit 2 pages them out while held, then (writable) writes a new stamp
/// through the holds (as a device would), checks the task sees it, writes
/// another stamp as the task and checks the holds see that: a pinned page
/// always stays the one mapped; a referenced one too unless a fork shared
/// it meanwhile (a write then copies it, as it must).
fn op_gup(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let Some(first) = shadow.get(a.first as usize).copied().filter(|p| p.mapped()) else { return };
    let write = first.writable();
    let a = Args { pages: a.pages.min(MAX_GUP_PAGES), ..a };
    let Some(&(s, e)) = runs(shadow, a, |p| p.mapped() && p.writable() == write).first() else { return };
    let hold = if a.aux & 2 != 0 { Hold::Pin } else { Hold::Get };
    let world = ctx.world();
    let forks_before = world.nr_forks_begun.load(Ordering::SeqCst);
    let no_fork_before = world.nr_forks_active.load(Ordering::SeqCst) == 0;
    let va = world.va(a.region, s);
    let held = match ctx.space().get_user_pages(VirtAddr::new(va), (e - s) as usize, write, hold) {
        Ok(held) => held,
        Err(_) => return ctx.refused(),
    };
    let counter = if hold == Hold::Pin { &ctx.sh.counts.pins } else { &ctx.sh.counts.gets };
    counter.fetch_add(held.len() as u64, Ordering::Relaxed);
    let via = if hold == Hold::Pin { "pin" } else { "reference" };
    let who = ctx.who("gup", via);
    for (i, &pa) in held.iter().enumerate() {
        let p = s as usize + i;
        let pva = ctx.world().va(a.region, p as u64);
        if let Some(c) = shadow[p].content() {
            if !verify(ctx.sh, who, pva, c, false, a.aux >> 3, |w| hold_read(pa, w)) {
                shadow[p] = shadow[p].with_content(Content::Unknown);
            }
        }
    }
    if a.aux & 4 != 0 && ctx.space().madvise(VirtAddr::new(va), (e - s) * PAGE, Advice::PageOut).is_err() {
        ctx.refused();
    }
    if write {
        // The device writes; the task must see it (the page it maps is the
        // held one: nothing in this region wrote since the hold).
        let dma = ctx.stamp();
        let who = ctx.who("gup", "task after a write through the hold");
        for (i, &pa) in held.iter().enumerate() {
            let p = s as usize + i;
            let pva = ctx.world().va(a.region, p as u64);
            for w in 0..WORDS {
                hold_write(pa, w, pattern(dma, pva, w));
            }
            shadow[p] = shadow[p].with_content(Content::Stamp(dma));
            ctx.verify_user(who, &mut shadow[p], pva, true, 0);
        }
        // The task writes; the holds must see it, unless a fork may have
        // shared the pages meanwhile (then the write copies a referenced
        // page: the reference keeps the old one).
        let stamp = ctx.stamp();
        for p in s..e {
            fill_user(ctx.world().va(a.region, p), stamp);
            shadow[p as usize] = shadow[p as usize].with_content(Content::Stamp(stamp));
        }
        let world = ctx.world();
        let no_fork = no_fork_before
            && world.nr_forks_active.load(Ordering::SeqCst) == 0
            && world.nr_forks_begun.load(Ordering::SeqCst) == forks_before;
        if hold == Hold::Pin || no_fork {
            let who = ctx.who(
                "gup",
                if hold == Hold::Pin { "pin after a task write" } else { "reference after a task write" },
            );
            for (i, &pa) in held.iter().enumerate() {
                let pva = ctx.world().va(a.region, s + i as u64);
                verify(ctx.sh, who, pva, Content::Stamp(stamp), false, a.aux >> 5, |w| hold_read(pa, w));
            }
        }
    }
    release_user_pages(&held, hold);
}

/// Migrates the range's folios: with several nodes and aux bit 0 clear,
/// `move_pages` to node `aux >> 1` (each page's status must agree with
/// the shadow: `NoMapping` exactly for the unmapped pages, and for pages
/// of zeros the huge zero folio may map); otherwise `migrate_range` to
/// any frames (to 4 KiB pages only, splitting THPs, when aux bits 1 and 2
/// are clear). Contents do not change: the first pages (at most
/// [`MAX_RW_PAGES`]) are read back at once. Migration is synchronous:
/// every entry is restored when the call returns, so no migration is in
/// flight at a quiescent point.
fn op_migrate(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let va = ctx.world().va(a.region, a.first);
    let nr_nodes = memory::nr_nodes();
    if nr_nodes > 1 && a.aux & 1 == 0 {
        let node = mm::numa::NodeId::new((a.aux >> 1) as usize % nr_nodes).unwrap_or(mm::numa::NodeId::ZERO);
        let statuses = match ctx.space().move_pages(VirtAddr::new(va), a.pages * PAGE, node) {
            Ok(statuses) => statuses,
            Err(e) => {
                let why = format!(
                    "seed={:#x} task {} op #{}: move_pages refused: {e}",
                    ctx.sh.seed, ctx.task, ctx.op_nr
                );
                return ctx.sh.note_error(why);
            }
        };
        for (i, status) in statuses.iter().enumerate() {
            let page = shadow[(a.first + i as u64) as usize];
            let no_mapping = *status == PageStatus::NoMapping;
            let zeros = page.content() == Some(Content::Zero);
            if no_mapping != !page.mapped() && !(no_mapping && zeros) {
                let why = format!(
                    "seed={:#x} task {} op #{} (migrate): page {} of region {} is {page:?} in the shadow, \
                     move_pages says {status:?}",
                    ctx.sh.seed,
                    ctx.task,
                    ctx.op_nr,
                    a.first + i as u64,
                    a.region
                );
                return ctx.sh.note_error(why);
            }
        }
    } else {
        let dest = if a.aux & 6 == 0 { Dest::Pages } else { Dest::Any };
        if ctx.space().migrate_range(VirtAddr::new(va), a.pages * PAGE, dest).is_err() {
            ctx.refused();
        }
    }
    let who = ctx.who("migrate", "task after the migration");
    for p in a.first..a.first + a.pages.min(MAX_RW_PAGES) {
        let va = ctx.world().va(a.region, p);
        ctx.verify_user(who, &mut shadow[p as usize], va, false, a.aux >> 3);
    }
}

/// Forks the world; a task in the child reads the region back against the
/// shadow as it was at the fork (every word of the range, four of every
/// other page) and writes the range's pages with a stamp of its own, while
/// the parent writes every other page of the range; after the child has
/// ended and its space is gone, the parent reads the region back the same
/// way (no write of either side may show through on the other).
/// A bounded compaction pass over the node of this CPU while the other
/// tasks work (the region's lock is held, but the pass moves the movable
/// folios of every world and changes no content, so the shadow stays).
/// Aux bit 0: a pass as a THP fault's (a free 2 MiB block,
/// `THP_FAULT_BUDGET`), which suitability skips while memory is short,
/// as it mostly is here; otherwise the zone from both ends, no
/// suitability, 64 pageblocks for each scanner: pages move whenever a
/// free frame above `min` is there to take them.
fn op_compact(_: &mut Ctx<'_>, _: &mut [Page], a: Args) {
    use mm::compaction::{Budget, Caller, Goal, Request};
    let request = if a.aux & 1 == 0 {
        Request { caller: Caller::Manual, ..Request::thp_fault() }
    } else {
        let budget = Budget { migrate_blocks: 64, free_blocks: 64 };
        Request { goal: Goal::Whole, budget, caller: Caller::Manual }
    };
    crate::vm::compaction::compact_node(memory::cpu_node(sched::cpu_index()), request);
}

fn op_fork(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let world = ctx.world();
    world.nr_forks_active.fetch_add(1, Ordering::SeqCst);
    world.nr_forks_begun.fetch_add(1, Ordering::SeqCst);
    fork_and_exit(ctx, shadow, a);
    ctx.world().nr_forks_active.fetch_sub(1, Ordering::SeqCst);
}

/// True when page `p` is among the pages an operation on `a` writes
/// (read back in full after a fork; the rest of the region is sampled).
fn in_range(a: Args, p: u64) -> bool {
    (a.first..a.first + a.pages.min(MAX_RW_PAGES)).contains(&p)
}

fn fork_and_exit(ctx: &mut Ctx<'_>, shadow: &mut [Page], a: Args) {
    let child = match ctx.space().fork() {
        Ok(child) => child,
        Err(_) => {
            ctx.sh.counts.fork_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    ctx.sh.counts.forks.fetch_add(1, Ordering::Relaxed);
    let snapshot: Vec<Page> = shadow.to_vec();
    let child_stamp = ctx.stamp();
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let cpu = cpus[(a.aux as usize) % cpus.len()];
    let sh = ctx.sh.clone();
    let (task, op_nr, region) = (ctx.task, ctx.op_nr, a.region);
    let spawned = child.spawn(Some(cpu), "stress child", move || {
        let mut view = snapshot.clone();
        let who = Who { task, op_nr, op: "fork", via: "child" };
        for (p, page) in view.iter_mut().enumerate() {
            let p = p as u64;
            verify_user(&sh, who, page, region_va(region, p), in_range(a, p), p);
        }
        for p in a.first..a.first + a.pages.min(MAX_RW_PAGES) {
            let page = &mut view[p as usize];
            if page.writable() {
                let va = region_va(region, p);
                fill_user(va, child_stamp);
                *page = page.with_content(Content::Stamp(child_stamp));
                verify_user(&sh, who, page, va, false, p);
            }
        }
    });
    // The parent writes meanwhile (every other page of the range).
    let stamp = ctx.stamp();
    for p in (a.first..a.first + a.pages.min(MAX_RW_PAGES)).filter(|p| (p ^ a.aux) & 1 == 0) {
        if shadow[p as usize].writable() {
            fill_user(ctx.world().va(a.region, p), stamp);
            shadow[p as usize] = shadow[p as usize].with_content(Content::Stamp(stamp));
        }
    }
    match spawned {
        Ok(handle) => {
            if let Err(why) = handle.join().map_err(|k| k.why) {
                ctx.sh.counts.killed.fetch_add(1, Ordering::Relaxed);
                ctx.sh.note_error(format!(
                    "seed={:#x} task {task} op #{op_nr}: fork child killed: {why}",
                    ctx.sh.seed
                ));
            }
        }
        Err(_) => ctx.refused(),
    }
    ctx.sh.counts.child_faults.fetch_add(child.nr_faults(), Ordering::Relaxed);
    // Exit: the child's space goes once its task is switched away from.
    let gone = Arc::downgrade(&child);
    drop(child);
    for _ in 0..2000 {
        if gone.strong_count() == 0 {
            break;
        }
        sched::sleep_ms(1);
    }
    let who = ctx.who("fork", "parent after the child exited");
    for p in 0..REGION_PAGES {
        let va = ctx.world().va(a.region, p);
        ctx.verify_user(who, &mut shadow[p as usize], va, in_range(a, p), p);
    }
}

// ------------------------------------------------------------ the run

/// A task's life: phases until the coordinator stops the run.
fn task_main(mut ctx: Ctx<'_>) -> Result<(), String> {
    let sh = ctx.sh;
    let mut phase = 0;
    let wait = |want: u64| -> bool {
        while sh.phase.load(Ordering::SeqCst) < want {
            if sh.stop.load(Ordering::SeqCst) {
                return false;
            }
            sched::sleep_ms(1);
        }
        !sh.stop.load(Ordering::SeqCst)
    };
    loop {
        // Operations until the epoch ends.
        if !wait(phase + 1) {
            return Ok(());
        }
        phase += 1;
        while Arch::now_ns() < sh.epoch_end_ns.load(Ordering::SeqCst) {
            if !ctx.step() {
                return Ok(());
            }
        }
        sh.arrived.fetch_add(1, Ordering::SeqCst);
        // Everything of this task's share read back.
        if !wait(phase + 1) {
            return Ok(());
        }
        phase += 1;
        let per_world = sh.nr_tasks / NR_WORLDS as u64;
        let slot = ctx.task / NR_WORLDS as u64;
        let all = sh.full_verify.load(Ordering::SeqCst);
        for region in (0..NR_REGIONS).filter(|r| *r as u64 % per_world == slot) {
            let Some(mut shadow) = lock_region(sh, ctx.world, region) else { return Ok(()) };
            let who = ctx.who("verify", "task at a quiescent point");
            for p in 0..REGION_PAGES {
                let va = ctx.world().va(region, p);
                ctx.verify_user(who, &mut shadow[p as usize], va, all, p);
            }
        }
        sh.arrived.fetch_add(1, Ordering::SeqCst);
    }
}

/// The faulty disk as a second swap area, preferred for new slots: its
/// read-failing pages are listed as bad (a read error would end a task),
/// its write-failing pages are not (a failed write keeps the page in
/// memory). `None` when there is no faulty disk.
fn faulty_swapon() -> Result<Option<SwapType>, String> {
    let Ok(disk) = crate::tests::kit::scratch_disk() else { return Ok(None) };
    let pages = disk.capacity_pages();
    let (_, bad_read) =
        crate::tests::kit::faulty_ranges(disk.serial()).ok_or("faulty disk without ranges")?;
    let bad: Vec<u32> = bad_read.filter(|&p| p < pages).map(|p| p as u32).collect();
    let header = mm::swap::header::format(pages, &bad, b"stress-faulty").map_err(|e| format!("{e}"))?;
    crate::tests::swap::write_header(disk, &header)?;
    let ty = swap::swapon(disk).map_err(|e| format!("swapon of the faulty disk: {e}"))?;
    swap::prefer(Some(ty));
    Ok(Some(ty))
}

/// The totals of a run, printed as one `STRESS seed=0x... key=value ...`
/// line: `prefix` + `name` = value each. Its room is reserved before the
/// heap is measured, so the totals themselves are not counted as a leak.
struct Totals {
    seed: u64,
    fields: Vec<(&'static str, &'static str, i64)>,
}

/// Fields a [`Totals`] holds without growing.
const TOTALS_ROOM: usize = 64;
/// Bytes of error messages kept without growing (longer ones are cut).
const REPORT_ROOM: usize = 4096;

impl Totals {
    fn add(&mut self, name: &'static str, value: impl TryInto<i64>) {
        self.add_prefixed("", name, value);
    }
    fn add_prefixed(&mut self, prefix: &'static str, name: &'static str, value: impl TryInto<i64>) {
        self.fields.push((prefix, name, value.try_into().unwrap_or(i64::MAX)));
    }
    fn print(&self) {
        crate::print!("\nSTRESS seed={:#x}", self.seed);
        for (prefix, name, v) in &self.fields {
            crate::print!(" {prefix}{name}={v}");
        }
        crate::println!();
    }
}

/// Appends `why` to `report` (`; ` between messages), cut to its room.
fn append_report(report: &mut String, why: &str) {
    let sep = if report.is_empty() { "" } else { "; " };
    for c in sep.chars().chain(why.chars()) {
        if report.len() + c.len_utf8() > report.capacity() {
            return;
        }
        report.push(c);
    }
}

fn random_mm_ops(env: &TestEnv<'_>) -> Result<(), String> {
    let seed = crate::tests::kit::test_seed(env, "stress::random_mm_ops", DEFAULT_SEED)?;
    let secs = env.args.get_u64("stress_secs").map_err(|e| format!("{e}"))?.unwrap_or(DEFAULT_SECS);
    if swap::alloc_area().is_none() {
        return Err(String::from("no swap area: attach a swap disk (xtask does unless --swap 0)"));
    }
    let mut t = Totals { seed, fields: Vec::with_capacity(TOTALS_ROOM) };
    let mut report = String::with_capacity(REPORT_ROOM);
    let before = Usage::now();
    let (out0, in0, werr0) = (
        PSWPOUT.load(Ordering::Relaxed),
        PSWPIN.load(Ordering::Relaxed),
        WRITE_ERRORS.load(Ordering::Relaxed),
    );
    let compact0 = crate::vm::compaction::counts();

    // Ballast: leave free about half the working set (and some room for
    // tables, stacks and the heap), so that the stress swaps.
    let keep_free = WORKING_SET_PAGES / 2 + 1024;
    let mut ballast = Vec::new();
    while memory::nr_free_frames() > keep_free + 512 {
        match memory::alloc_frames(9) {
            Ok(pa) => ballast.push(pa),
            Err(_) => break,
        }
    }
    let faulty = faulty_swapon();
    let (free_slots, total_slots) = swap::totals();
    crate::println!(
        "stress: {secs} s, {} CPUs, {NR_WORLDS} spaces x {NR_REGIONS} regions of {} MiB: working set {} MiB, \
         {} MiB free, swap {} MiB ({} free){}",
        sched::nr_cpus_online(),
        REGION_BYTES >> 20,
        WORKING_SET_PAGES / 256,
        memory::nr_free_frames() / 256,
        total_slots / 256,
        free_slots / 256,
        match &faulty {
            Ok(Some(_)) => ", the faulty disk among it",
            Ok(None) => ", no faulty disk",
            Err(_) => "",
        }
    );
    let result = faulty.and_then(|faulty| {
        run(seed, secs, faulty, &mut t).inspect_err(|_| {
            if let Some(ty) = faulty {
                swap::prefer(None);
                let _ = swap::swapoff(ty);
            }
        })
    });
    for pa in ballast {
        memory::free_frames(pa, 9);
    }
    for why in result? {
        append_report(&mut report, &why);
    }
    // Leaks: what the run still holds once everything is gone.
    let after = before.settled_since(1000);
    let frames = before.free_frames as i64 - after.free_frames as i64;
    let heap = (after.heap_used as i64 - before.heap_used as i64).max(0);
    let slots = after.used_slots as i64 - before.used_slots as i64;
    t.add("swapouts", PSWPOUT.load(Ordering::Relaxed) - out0);
    t.add("swapins", PSWPIN.load(Ordering::Relaxed) - in0);
    t.add("write_errors", WRITE_ERRORS.load(Ordering::Relaxed) - werr0);
    let compact = crate::vm::compaction::counts();
    t.add("compact_migrated", compact.compact_migrated - compact0.compact_migrated);
    t.add("compact_stall", compact.compact_stall - compact0.compact_stall);
    t.add("compact_daemon_wake", compact.compact_daemon_wake - compact0.compact_daemon_wake);
    t.add("leaked_frames", frames);
    t.add("leaked_slots", slots);
    t.add("leaked_heap", heap);
    t.print();
    if frames != 0 || slots != 0 || heap != 0 {
        let why = format!("leaked {frames} frames, {slots} swap slots, {heap} heap bytes");
        append_report(&mut report, &why);
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// The stress proper (module doc): adds its totals to `t`, returns the
/// errors found.
fn run(seed: u64, secs: u64, faulty: Option<SwapType>, t: &mut Totals) -> Result<Vec<String>, String> {
    let cpus: Vec<usize> = sched::online_cpus().collect();
    let nr_tasks = (2 * cpus.len()).max(NR_WORLDS) as u64;
    let mut worlds = Vec::new();
    for _ in 0..NR_WORLDS {
        worlds.push(World {
            space: AddressSpace::new()?,
            regions: (0..NR_REGIONS)
                .map(|_| spin::Mutex::new(alloc::vec![Page::Unmapped; REGION_PAGES as usize]))
                .collect(),
            nr_forks_active: AtomicU64::new(0),
            nr_forks_begun: AtomicU64::new(0),
        });
    }
    let sh = Arc::new(Shared {
        seed,
        worlds,
        counts: Counts::default(),
        first_error: spin::Mutex::new(None),
        slowest_op: spin::Mutex::new(None),
        phase: AtomicU64::new(0),
        arrived: AtomicU64::new(0),
        epoch_end_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        full_verify: AtomicBool::new(false),
        nr_tasks,
        start_ns: Arch::now_ns(),
    });
    let mut tasks = Vec::new();
    for t in 0..nr_tasks {
        let world = t as usize % NR_WORLDS;
        let space = sh.worlds[world].space.clone();
        let cpu = cpus[t as usize % cpus.len()];
        let task_sh = sh.clone();
        match space.spawn(Some(cpu), "stress", move || {
            let ctx =
                Ctx { sh: &task_sh, world, task: t, rng: SplitMix64::new(seed, t), op_nr: 0, nr_stamps: 0 };
            task_main(ctx)
        }) {
            Ok(h) => tasks.push(h),
            Err(e) => {
                sh.stop.store(true, Ordering::SeqCst);
                tasks.into_iter().for_each(|h| drop(h.join().map_err(|k| k.why)));
                return Err(e);
            }
        }
    }

    let start = Arch::now_ns();
    let end = start + secs * 1_000_000_000;
    let epoch_ns = (secs * 1_000_000_000 / 4).clamp(500_000_000, 5_000_000_000);
    let mut checks = 0u64;
    let mut errors = Vec::new();
    let mut epochs = 0;
    let mut swapoff_done = faulty.is_none();
    // Opens the next phase and waits for every task to finish it; false
    // when a task ended early (killed, or an error).
    let step = |sh: &Shared, tasks: &[sched::JoinHandle<Result<(), String>>]| -> bool {
        sh.arrived.store(0, Ordering::SeqCst);
        sh.phase.fetch_add(1, Ordering::SeqCst);
        while sh.arrived.load(Ordering::SeqCst) < sh.nr_tasks {
            if tasks.iter().any(|h| h.is_finished()) {
                return false;
            }
            sched::sleep_ms(2);
        }
        true
    };
    let check_all = |sh: &Shared, checks: &mut u64, errors: &mut Vec<String>| {
        // No kcompactd pass half-way (woken by the tasks' THP faults): the
        // checker sees no folio it isolated, no migration entry it wrote.
        crate::vm::compaction::quiesce();
        for (i, w) in sh.worlds.iter().enumerate() {
            *checks += 1;
            if let Err(e) = w.space.check() {
                errors.push(format!("checker, world {i} after epoch: {e}"));
            }
        }
    };
    loop {
        let now = Arch::now_ns();
        let last = now + epoch_ns >= end;
        sh.epoch_end_ns.store(if last { end.max(now) } else { now + epoch_ns }, Ordering::SeqCst);
        if !step(&sh, &tasks) {
            break;
        }
        check_all(&sh, &mut checks, &mut errors);
        if last {
            sh.full_verify.store(true, Ordering::SeqCst);
            if let Some(ty) = faulty {
                // The pages in the faulty area come back through swapoff's
                // walk, and are read back in the next phase.
                swap::prefer(None);
                swapoff_done = true;
                if let Err(e) = swap::swapoff(ty) {
                    errors.push(format!("swapoff of the faulty area: {e}"));
                }
            }
        }
        if !step(&sh, &tasks) {
            break;
        }
        check_all(&sh, &mut checks, &mut errors);
        epochs += 1;
        // The first failure ends the run (after its read-back and check).
        if last || !errors.is_empty() || sh.first_error.lock().is_some() {
            break;
        }
    }
    sh.stop.store(true, Ordering::SeqCst);
    sh.phase.fetch_add(1, Ordering::SeqCst);
    let mut killed = 0;
    for (t, h) in tasks.into_iter().enumerate() {
        match h.join().map_err(|k| k.why) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("task {t}: {e}")),
            Err(why) => {
                killed += 1;
                errors.push(format!("seed={seed:#x} task {t} was killed: {why}"));
            }
        }
    }
    if !swapoff_done {
        if let Some(ty) = faulty {
            swap::prefer(None);
            if let Err(e) = swap::swapoff(ty) {
                errors.push(format!("swapoff of the faulty area: {e}"));
            }
        }
    }
    let elapsed_ms = (Arch::now_ns() - start) / 1_000_000;
    let c = &sh.counts;
    t.add("secs", elapsed_ms / 1000);
    t.add("cpus", cpus.len());
    t.add("tasks", nr_tasks);
    t.add("epochs", epochs);
    let nr_ops: u64 = c.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum();
    t.add("ops", nr_ops);
    for (op, n) in OPS.iter().zip(&c.ops) {
        t.add_prefixed("op.", op.name, n.load(Ordering::Relaxed));
    }
    t.add("bytes_verified", c.bytes_verified.load(Ordering::Relaxed));
    let faults: u64 =
        sh.worlds.iter().map(|w| w.space.nr_faults()).sum::<u64>() + c.child_faults.load(Ordering::Relaxed);
    t.add("faults", faults);
    t.add("pins", c.pins.load(Ordering::Relaxed));
    t.add("gets", c.gets.load(Ordering::Relaxed));
    t.add("forks", c.forks.load(Ordering::Relaxed));
    t.add("fork_failures", c.fork_failures.load(Ordering::Relaxed));
    t.add("refused", c.refused.load(Ordering::Relaxed));
    t.add("checks", checks);
    let checker_errors = errors.iter().filter(|e| e.starts_with("checker")).count();
    t.add("checker_errors", checker_errors);
    t.add("mismatches", c.mismatched_bytes.load(Ordering::Relaxed));
    t.add("killed", killed + c.killed.load(Ordering::Relaxed));
    t.add("slowest_op_ms", c.slowest_op_ms.load(Ordering::Relaxed));
    if let Some(slowest) = sh.slowest_op.lock().take() {
        crate::println!("stress: slowest: {slowest}");
    }
    if let Some(first) = sh.first_error.lock().take() {
        errors.insert(0, first);
    }
    // Everything goes: the tasks' `Arc`s first (each is dropped a moment
    // after its task ends), then the worlds and their spaces.
    let others = |sh: &Arc<Shared>| {
        let spaces: usize = sh.worlds.iter().map(|w| Arc::strong_count(&w.space) - 1).sum();
        (Arc::strong_count(sh) - 1, spaces)
    };
    for _ in 0..2000 {
        if others(&sh) == (0, 0) {
            break;
        }
        sched::sleep_ms(1);
    }
    let (held, spaces) = others(&sh);
    if (held, spaces) != (0, 0) {
        // What is left then shows as leaks: say who holds it.
        crate::println!(
            "stress: after the run {held} other references hold its state and {spaces} other references \
             its spaces (a killed task's stack holds what it held)"
        );
    }
    drop(sh);
    Ok(errors)
}
