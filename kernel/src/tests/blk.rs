//! In-guest tests moved from drivers/blk.rs.

use crate::drivers::blk::*;
use crate::memory;
use crate::task::sched::{self};
use crate::tests::kit::*;
use alloc::string::String;
use alloc::vec::Vec;
use mm::PhysAddr;

use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::ToString;

/// The device id xtask gives the swap disk (`-device virtio-blk-pci,serial=swap0`).
pub const SWAP_SERIAL: &str = "swap0";

/// `2^order` frames of the test's own, freed on drop.
pub(crate) struct Frames {
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
    /// Writes the pattern `seed` to `nr_pages` pages of `disk` from
    /// `first_disk_page`, clears the buffer, reads them back and checks.
    fn round_trip(
        &mut self,
        disk: &BlockDevice,
        first_disk_page: u64,
        nr_pages: usize,
        seed: u64,
    ) -> Result<(), String> {
        assert!(
            nr_pages <= 1 << self.order,
            "round_trip: {nr_pages} pages into a buffer of {}",
            1 << self.order
        );
        self.fill(seed, first_disk_page);
        // SAFETY (both requests): `nr_pages` of our own frames (checked
        // above), which `&mut self` keeps from every other use meanwhile.
        unsafe { disk.write_pages(first_disk_page, self.pa, nr_pages) }.map_err(|e| e.to_string())?;
        self.words().fill(0);
        unsafe { disk.read_pages(first_disk_page, self.pa, nr_pages) }.map_err(|e| e.to_string())?;
        self.check(seed, first_disk_page, nr_pages)
    }

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
    // SAFETY: our own frame, untouched until the read is over.
    unsafe { disk.read_pages(0, page.pa, 1) }.map_err(|e| e.to_string())?;
    // SAFETY: the frame is ours and the read is over.
    let bytes = unsafe {
        core::slice::from_raw_parts(memory::phys_to_virt(page.pa).as_u64() as *const u8, PAGE_BYTES)
    };
    let header = mm::swap::header::parse(bytes, disk.capacity_pages())
        .map_err(|e| format!("{} ({}): {e}", disk.name(), disk.location()))?;
    if header.last_page + 1 != disk.capacity_pages() || !header.bad_pages.is_empty() {
        return Err(format!(
            "{}: the header describes pages 0..={} with {} bad pages; xtask makes 0..={} with none",
            disk.name(),
            header.last_page,
            header.bad_pages.len(),
            disk.capacity_pages() - 1
        ));
    }
    Ok(())
}

fn four_tasks_write_and_read_back(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    // Each task: four ranges of 1, 7, 33 and 64 pages in its own 256 pages.
    const RANGES: [(u64, usize); 4] = [(0, 1), (8, 7), (32, 33), (128, 64)];
    if disk.capacity_pages() < 256 + 4 * 256 {
        return Err(format!("{} has {} pages; the test needs 1280", disk.name(), disk.capacity_pages()));
    }
    let handles: Result<Vec<_>, _> = (0..4u64)
        .map(|t| {
            sched::spawn("blk-writer", move || -> Result<(), String> {
                let base = 256 + t * 256;
                let mut bufs = Vec::new();
                for (off, n) in RANGES {
                    let mut f = Frames::new(n.next_power_of_two().trailing_zeros() as u8)?;
                    f.fill(t + 1, base + off);
                    // SAFETY: `n` pages of `f`, ours (sized for `n` above).
                    unsafe { disk.write_pages(base + off, f.pa, n) }.map_err(|e| e.to_string())?;
                    bufs.push(f);
                }
                for ((off, n), f) in RANGES.iter().zip(&mut bufs) {
                    f.words().fill(0);
                    // SAFETY: as for the write: `n` pages of `f`, ours.
                    unsafe { disk.read_pages(base + off, f.pa, *n) }.map_err(|e| e.to_string())?;
                    f.check(t + 1, base + off, *n).map_err(|e| format!("task {t}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for h in handles.map_err(|e| format!("spawn: {e:?}"))? {
        if let Err(e) = h.join().unwrap_or_else(|killed| Err(killed.into())) {
            result = Err(e);
        }
    }
    result
}

fn a_2mib_request_round_trips(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let first = 1024;
    if disk.capacity_pages() < first + 512 {
        return Err(format!(
            "{} has {} pages; the test needs {}",
            disk.name(),
            disk.capacity_pages(),
            first + 512
        ));
    }
    let mut f = Frames::new(9)?;
    f.round_trip(disk, first, 512, 0x77)
}

fn past_the_end_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = scratch_disk()?;
    let cap = disk.capacity_pages();
    let mut f = Frames::new(1)?;
    for (first, n) in [(cap, 1), (cap - 1, 2), (u64::MAX, 1)] {
        // SAFETY: `n` <= 2 pages of our order-1 `f`; refused anyway.
        match unsafe { disk.read_pages(first, f.pa, n) } {
            Err(IoError::OutOfRange { .. }) => {}
            other => return Err(format!("read of pages {first}+{n} on a {cap}-page disk gave {other:?}")),
        }
    }
    // SAFETY: a page of our `f`; refused anyway.
    match unsafe { disk.write_pages(cap, f.pa, 1) } {
        Err(e @ IoError::OutOfRange { .. }) if e.to_string().contains("past the end") => {}
        other => return Err(format!("write of page {cap} gave {other:?}")),
    }
    // And the disk goes on working: the last page is reachable.
    f.round_trip(disk, cap - 1, 1, 9)
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
        // SAFETY: every case is a buffer `read_pages` refuses before any
        // transfer (its contract's first sentence); the test checks it does.
        match unsafe { disk.read_pages(64, frame, n) } {
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
    let (bad_write, bad_read) = faulty_ranges(disk.serial())
        .ok_or_else(|| format!("cannot read the failing ranges from serial `{}`", disk.serial()))?;
    let mut f = Frames::new(0)?;
    let is_ioerr = |r: Result<(), IoError>| matches!(r, Err(IoError::Device { status: Status::IoErr, .. }));
    for page in [bad_write.start, bad_write.end - 1] {
        f.fill(1, page);
        // SAFETY: one page of our `f`, untouched while the request runs.
        let r = unsafe { disk.write_pages(page, f.pa, 1) };
        if !is_ioerr(r.clone()) {
            return Err(format!("write of page {page} (injected EIO) gave {r:?}"));
        }
        // SAFETY: as above.
        unsafe { disk.read_pages(page, f.pa, 1) }
            .map_err(|e| format!("read of page {page} should work: {e}"))?;
    }
    for page in [bad_read.start, bad_read.end - 1] {
        f.fill(2, page);
        // SAFETY (both requests): one page of our `f`, untouched meanwhile.
        unsafe { disk.write_pages(page, f.pa, 1) }
            .map_err(|e| format!("write of page {page} should work: {e}"))?;
        let r = unsafe { disk.read_pages(page, f.pa, 1) };
        if !is_ioerr(r.clone()) {
            return Err(format!("read of page {page} (injected EIO) gave {r:?}"));
        }
    }
    // A request that only partly covers a failing range fails whole.
    let two = Frames::new(1)?;
    // SAFETY: the two pages of our order-1 `two`.
    let r = unsafe { disk.read_pages(bad_read.start - 1, two.pa, 2) };
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
    f.round_trip(disk, page, 1, 3)
}

fn completions_come_by_interrupt(_: &TestEnv<'_>) -> Result<(), String> {
    if disks().is_empty() {
        return Err("no virtio-blk disks attached".into());
    }
    match disks().iter().find(|d| !d.uses_interrupts()) {
        Some(d) => Err(format!("{} is polled: its interrupt line could not be attached", d.name())),
        None => Ok(()),
    }
}

pub(crate) const TESTS: &[Test] = register!["blk": completions_come_by_interrupt, swap_disk_has_a_mkswap_header, four_tasks_write_and_read_back, a_2mib_request_round_trips, past_the_end_is_an_error, bad_buffers_are_refused, injected_errors_come_back_as_io_errors];
