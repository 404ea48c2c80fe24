//! Migration under a concurrency checker: a task writing a page (small,
//! or a THP mapped by a PMD) while another CPU migrates it; and a device
//! taking a `FOLL_GET` reference on the page and writing through it while
//! the page migrates (the freeze must make migration back off while the
//! reference is held, so the device's write lands in the page the task
//! sees whatever the order). The writer's
//! fault on a migration entry waits until the migration is over
//! (`mm::migrate::migration_in_progress`, which the kernel's wait in
//! `kernel/src/vm/migrate.rs` polls under the space's lock) and retries;
//! in every interleaving shuttle explores of the real `mm::migrate`,
//! `mm::unmap` and `mm::fault` code, no write is lost (the copy never
//! misses one, and none lands in the old frames after it), the page is
//! mapped from the new folio (a PMD leaf again for the THP), the checker
//! passes and every frame comes back.
//!
//! Built only with the `shuttle` feature (see `Cargo.toml` and
//! `src/sync.rs`):
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_migrate
//! ```
//!
//! A device pinning the page (`FOLL_PIN`) instead: either the pin comes
//! first and migration is refused before anything changes, or GUP waits
//! on the entry and pins the new page. The whole-THP races (a PMD split,
//! fork) are in `races_migrate_thp.rs`.
//!
//! The space is `mm::testkit`'s `SharedSpace`: its lock (shuttle's mutex)
//! is the family's lock of migration's steps 3 and 7, taken around the
//! table, the areas, the simulated memory and the TLB; the copy runs
//! without it, as in the kernel. The writer's CPU writes through the
//! table under the lock (a CPU with a flushed TLB sees what the table
//! says).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arch_x86_64::pgtable::X86Format;
use mm::fault::{Access, FaultOutcome};
use mm::folio::folio_of;
use mm::gup::{get_user_page, release, GupError, Hold};
use mm::migrate::{migrate_folio, migration_in_progress, MigrateError};
use mm::pgtable::{Decoded, Level};
use mm::testkit::frames::SimFrames;
use mm::testkit::races::run;
use mm::testkit::world::SharedSpace;
use mm::thp::HPAGE_SIZE;
use mm::unmap::UnmapError;
use mm::{Pfn, PhysAddr, VirtAddr};

const BASE_PFN: u64 = 0x80000;
/// Three 2 MiB blocks: the THP, its destination, tables' spare.
const NR_FRAMES: usize = 1536;
const AREA: u64 = 0x4000_0000;
const SEED: u64 = 0x5eed_0014;
const ITERATIONS: usize = 150;
/// Writes the writer makes, each to its own word of the page.
const NR_WRITES: u64 = 3;

type Space = SharedSpace<X86Format>;

/// The kernel's side of migration over the one space (module doc).
use mm::testkit::races::SpaceMigrator as Host;

/// The tests of this file one at a time: they share the statics below,
/// and one turns a bug-replay switch on, which the others must not see.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Executions in which the writer waited on a migration entry.
static WAITED: AtomicUsize = AtomicUsize::new(0);
/// The migrator holds the folio lock: the writer starts then, so that its
/// writes meet every step of the migration rather than all come first.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The address of word `w` of the page at `at`.
fn word(at: u64, w: u64) -> u64 {
    at + 8 * w
}

/// The writer: writes `w + 1` into word `w` for each of its writes, as a
/// CPU does: through the table when it maps the page, else a fault, and
/// on a migration entry a wait until the migration is over, then again.
fn write_words(space: &'static Space, at: u64) {
    while !STARTED.load(Ordering::Relaxed) {
        shuttle::thread::yield_now();
    }
    for w in 0..NR_WRITES {
        loop {
            let done = space.locked(|g| match g.table.translate(&g.mem, VirtAddr::new(word(at, w))) {
                Some(pa) => {
                    space.frames.write_u64(pa, w + 1);
                    true
                }
                None => false,
            });
            if done {
                break;
            }
            match space.fault(word(at, w), Access::Write) {
                FaultOutcome::MigrationWait { page, .. } => {
                    WAITED.fetch_add(1, Ordering::Relaxed);
                    // The kernel parks here until woken; shuttle yields.
                    while space
                        .locked(|g| migration_in_progress(&g.table, &g.mem, space.memmap(), page))
                        .is_some()
                    {
                        shuttle::thread::yield_now();
                    }
                }
                FaultOutcome::Refused(r) => panic!("write fault refused: {r:?}"),
                _ => {}
            }
        }
    }
}

/// The migrator: the folio mapped at `at`, a reference and its lock (as
/// `kernel/src/vm/migrate.rs` takes them), a destination of its order,
/// `migrate_folio`. Returns the new head.
fn migrate(space: &'static Space, at: u64) -> Pfn {
    let pa = space.translate(at).expect("mapped before the race");
    let folio = folio_of(space.memmap(), pa.pfn()).unwrap();
    folio.get();
    folio.lock();
    STARTED.store(true, Ordering::Relaxed);
    let dst = space.frames.alloc_unpublished(folio.order()).expect("a destination");
    let new = migrate_folio(&Host(space), folio, dst).unwrap_or_else(|e| panic!("migration refused: {e}"));
    assert!(!new.put(), "the mapping keeps the new folio");
    new.pfn()
}

/// A write fault on a page racing its migration; then every word is
/// where it was written, in the new folio.
fn race(huge: bool) {
    let len = if huge { HPAGE_SIZE } else { 4096 };
    let frames = SimFrames::new(BASE_PFN, NR_FRAMES);
    let space = SharedSpace::<X86Format>::new(frames, &[(AREA, len)]);
    if !huge {
        space.locked(|g| g.vmas.advise_thp(VirtAddr::new(AREA), len, mm::vma::ThpMode::Never).unwrap());
    }
    // The page (or THP) exists before the race.
    assert!(!matches!(space.fault(AREA, Access::Write), FaultOutcome::Refused(_)));
    let at = AREA + if huge { 0x1_3000 } else { 0 };
    STARTED.store(false, Ordering::Relaxed);
    let writer = shuttle::thread::spawn(move || write_words(space, at));
    let migrator = shuttle::thread::spawn(move || migrate(space, AREA));
    writer.join().unwrap();
    let new = migrator.join().unwrap();
    let (level, decoded) = space.lookup(at);
    let Decoded::Leaf(leaf) = decoded else { panic!("not mapped after the race: {decoded:?}") };
    assert_eq!(level, if huge { Level::Pmd } else { Level::Pte });
    let page = (at - AREA) / 4096;
    assert_eq!(leaf.frame.pfn(), if huge { new } else { new.plus(page) }, "mapped from the new folio");
    let pa = space.translate(at).unwrap();
    for w in 0..NR_WRITES {
        assert_eq!(space.frames.read_u64(PhysAddr::new(pa.as_u64() + 8 * w)), w + 1, "word {w} lost");
    }
    space.check();
    space.finish();
}

/// Executions in which the migration backed off for the device's
/// reference, and in which it moved the page.
static BACKED_OFF: AtomicUsize = AtomicUsize::new(0);
static MOVED: AtomicUsize = AtomicUsize::new(0);

/// The device: a write hold of `hold`'s kind (a `FOLL_GET` reference or a
/// `FOLL_PIN` pin) on the page at `at` (through GUP under the lock,
/// waiting like a fault when it meets a migration entry), a write of
/// `value` into word 0 through it without the lock, then the hold dropped.
fn device_writes_through(space: &'static Space, at: u64, value: u64, hold: Hold) {
    while !STARTED.load(Ordering::Relaxed) {
        shuttle::thread::yield_now();
    }
    let pa = loop {
        let got = space.locked(|g| {
            get_user_page(&g.table, &g.vmas, &g.mem, &space.frames, &g.tlb, VirtAddr::new(at), true, hold)
        });
        match got {
            Ok(pa) => break pa,
            Err(
                GupError::Migrating { va: page, .. }
                | GupError::Fault(FaultOutcome::MigrationWait { page, .. }),
            ) => {
                while space
                    .locked(|g| migration_in_progress(&g.table, &g.mem, space.memmap(), page))
                    .is_some()
                {
                    shuttle::thread::yield_now();
                }
            }
            Err(e) => panic!("GUP: {e:?}"),
        }
    };
    space.frames.write_u64(pa, value);
    if let Some(folio) = release(space.memmap(), pa, hold) {
        space.frames.free(folio);
    }
}

/// A migration racing a device that writes through a hold of `hold`'s
/// kind, taken through GUP (which waits on a migration entry like a
/// fault), and the task's own writes. Both writes are in the page the
/// table maps after, whatever happened: the migration moved the page
/// (counted in `moved`), or it was refused for the device's hold (counted
/// in `refused`): a plain reference makes it back off at the freeze
/// (`Referenced`), a pin refuses it before anything changes
/// (`Unmap(Pinned)`), or GUP met the entry, waited and held the new page.
fn race_with_a_hold(hold: Hold, moved: &'static AtomicUsize, refused: &'static AtomicUsize) {
    let frames = SimFrames::new(BASE_PFN, NR_FRAMES);
    let space = SharedSpace::<X86Format>::new(frames, &[(AREA, 4096)]);
    space.locked(|g| g.vmas.advise_thp(VirtAddr::new(AREA), 4096, mm::vma::ThpMode::Never).unwrap());
    assert!(!matches!(space.fault(AREA, Access::Write), FaultOutcome::Refused(_)));
    STARTED.store(false, Ordering::Relaxed);
    let device = shuttle::thread::spawn(move || device_writes_through(space, AREA, 0xd00d, hold));
    let writer = shuttle::thread::spawn(move || write_words(space, AREA + 8));
    let migrator = shuttle::thread::spawn(move || {
        let pa = space.translate(AREA).expect("mapped before the race");
        let folio = folio_of(space.memmap(), pa.pfn()).unwrap();
        folio.get();
        folio.lock();
        STARTED.store(true, Ordering::Relaxed);
        let dst = space.frames.alloc_unpublished(0).expect("a destination");
        match (migrate_folio(&Host(space), folio, dst), hold) {
            (Ok(new), _) => {
                moved.fetch_add(1, Ordering::Relaxed);
                assert!(!new.put());
            }
            (Err(MigrateError::Referenced { .. }), Hold::Get)
            | (Err(MigrateError::Unmap(UnmapError::Pinned)), Hold::Pin) => {
                refused.fetch_add(1, Ordering::Relaxed);
                folio.unlock();
                assert!(!folio.put());
            }
            (Err(e), _) => panic!("migration refused: {e}"),
        }
    });
    device.join().unwrap();
    writer.join().unwrap();
    migrator.join().unwrap();
    let pa = space.translate(AREA).expect("mapped after the race");
    assert_eq!(space.frames.read_u64(pa), 0xd00d, "the device's write is lost");
    for w in 0..NR_WRITES {
        let got = space.frames.read_u64(PhysAddr::new(pa.as_u64() + 8 + 8 * w));
        assert_eq!(got, w + 1, "the task's word {w} is lost");
    }
    space.check();
    space.finish();
}

#[test]
fn a_device_reference_makes_migration_back_off_and_loses_no_write() {
    let _alone = alone();
    BACKED_OFF.store(0, Ordering::Relaxed);
    MOVED.store(0, Ordering::Relaxed);
    run("reference", SEED + 2, ITERATIONS, || race_with_a_hold(Hold::Get, &MOVED, &BACKED_OFF));
    let (backed_off, moved) = (BACKED_OFF.load(Ordering::Relaxed), MOVED.load(Ordering::Relaxed));
    assert!(backed_off > 0 && moved > 0, "both outcomes: {backed_off} backed off, {moved} moved");
}

#[test]
fn a_fault_on_a_small_page_waits_for_its_migration() {
    let _alone = alone();
    WAITED.store(0, Ordering::Relaxed);
    run("small", SEED, ITERATIONS, || race(false));
    assert!(WAITED.load(Ordering::Relaxed) > 0, "no execution met a migration entry");
}

#[test]
fn a_fault_on_a_pmd_mapped_thp_waits_for_its_migration() {
    let _alone = alone();
    WAITED.store(0, Ordering::Relaxed);
    run("thp", SEED + 1, ITERATIONS, || race(true));
    assert!(WAITED.load(Ordering::Relaxed) > 0, "no execution met a migration entry");
}

// ------------------------------------------------------------------ GUP pin

/// Executions in which the migration was refused for the pin, and in
/// which it moved the page before the pin was taken.
static REFUSED_PINNED: AtomicUsize = AtomicUsize::new(0);
static MOVED_BEFORE_PIN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_pin_refuses_migration_or_waits_for_it_and_loses_no_write() {
    let _alone = alone();
    REFUSED_PINNED.store(0, Ordering::Relaxed);
    MOVED_BEFORE_PIN.store(0, Ordering::Relaxed);
    run("pin", SEED + 3, ITERATIONS / 3, || race_with_a_hold(Hold::Pin, &MOVED_BEFORE_PIN, &REFUSED_PINNED));
    let (refused, moved) = (REFUSED_PINNED.load(Ordering::Relaxed), MOVED_BEFORE_PIN.load(Ordering::Relaxed));
    assert!(refused > 0 && moved > 0, "both outcomes: {refused} refused for the pin, {moved} moved");
}
