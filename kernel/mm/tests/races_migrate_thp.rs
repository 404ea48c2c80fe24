//! The real migration of a whole THP (`mm::migrate::migrate_folio`)
//! against the two paths that change its PMD meanwhile, under a
//! concurrency checker: a munmap that cuts the THP (the PMD split first:
//! before the migration, on its PMD migration entry, or after it), and
//! fork (copying the PMD, the PMD migration entry as `Read` on both
//! sides, or the new PMD). Whatever the order, the pages left keep their
//! bytes and are mapped again, the checker passes and every frame comes
//! back. With the replay switch `split-pmd-migration-entry` on (seed 001),
//! the split that meets the entry loses it, and shuttle must find that.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_migrate_thp
//! ```
//!
//! Each race starts its other side at once, once it sees the migration
//! entry, or after the migration ([`START_AT`]): a migration of 512 pages
//! has hundreds of scheduling points, and from a single start shuttle
//! almost never lets it finish before the other side begins. The copy is
//! a scheduling point (it runs without the space's lock).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arch_x86_64::pgtable::X86Format;
use mm::anon::anon_handle;
use mm::bugs::{self, Bug};
use mm::debug::{check_spaces_in, Scope};
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, MemFault};
use mm::folio::{folio_of, Folio};
use mm::lru::LruLists;
use mm::migrate::{migrate_folio, MigrateError, MigrateHost};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::{SimMemory, SoftTlb};
use mm::pgtable::{Decoded, Flush, Level, NonPresent, PageTable, SwapType};
use mm::space::{fork_range, zap_range, Gather};
use mm::swap::area::SwapArea;
use mm::testkit::bug_switch::BugOn;
use mm::testkit::frames::SimFrames;
use mm::testkit::migration::copy_frames;
use mm::testkit::races::{explore, run, Explorer};
use mm::testkit::world::{zap_locked, zap_release, SharedSpace};
use mm::thp::HPAGE_SIZE;
use mm::vma::{VmaKind, VmaProt, VmaSet};
use mm::{Pfn, PhysAddr, VirtAddr};
use shuttle::FailurePersistence;

const BASE_PFN: u64 = 0x80000;
/// Three 2 MiB blocks: the THP, its destination, tables' spare.
const NR_FRAMES: usize = 1536;
const AREA: u64 = 0x4000_0000;
const USER_END: u64 = 0x8000_0000_0000;
const SEED: u64 = 0x5eed_0014;

/// The kernel's side of migration over the one space (module doc).
use mm::testkit::races::SpaceMigrator as Host;

/// The tests of this file one at a time: they share the statics below,
/// and one turns a bug-replay switch on, which the others must not see.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------ split

/// The pages of the THP the munmap cuts out of it.
const CUT: std::ops::Range<u64> = 100..356;

/// Executions that saw each order: [munmap first, the split met the PMD
/// migration entry, migration first, migration backed off].
static SPLIT_SEEN: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
/// The split lost the migration entry (seed 001's replay).
static LOST: AtomicBool = AtomicBool::new(false);

/// When the other side of a race with a whole migration starts: at once
/// (0), once it sees the PMD migration entry or the migration is over
/// (1), or after the migration (2). Shuttle explores the interleavings
/// from each start; without them, a migration of 512 pages (hundreds of
/// scheduling points) almost never ends before the other side begins.
static START_AT: AtomicUsize = AtomicUsize::new(0);
/// The migration of the race is over.
static MIGRATED: AtomicBool = AtomicBool::new(false);

/// Waits, yielding, for the start [`START_AT`] says; `entry` looks under
/// the lock whether the PMD migration entry stands.
fn wait_for_start(entry: impl Fn() -> bool) {
    match START_AT.load(Ordering::Relaxed) {
        0 => {}
        1 => {
            while !MIGRATED.load(Ordering::Relaxed) && !entry() {
                shuttle::thread::yield_now();
            }
        }
        _ => {
            while !MIGRATED.load(Ordering::Relaxed) {
                shuttle::thread::yield_now();
            }
        }
    }
}

/// Runs `f` under shuttle from each start of [`START_AT`].
fn run_from_each_start(name: &str, seed: u64, f: fn()) {
    for start in 0..3 {
        START_AT.store(start, Ordering::Relaxed);
        run(name, seed + start as u64, WHOLE_ITERATIONS, f);
    }
    START_AT.store(0, Ordering::Relaxed);
}

/// Iterations of each scheduler from each start, for the races with a
/// whole THP (slow: every page's counts are scheduling points).
const WHOLE_ITERATIONS: usize = 20;

/// Whether the PMD at `at` of `table` is a migration entry.
fn pmd_entry(table: &PageTable<X86Format>, mem: &SimMemory, at: u64) -> bool {
    matches!(
        table.lookup(mem, VirtAddr::new(at)),
        (Level::Pmd, Decoded::NonPresent(NonPresent::Migration(_)))
    )
}

/// Word 0 of page `i` of the THP.
fn stamp(i: u64) -> u64 {
    0x5eed_0000 + i
}

/// A munmap that cuts a THP in two (the PMD split first) against the real
/// migration of that THP (`migrate_folio`): whether the split comes
/// before, meets the PMD migration entry (then 512 PTE entries, of which
/// the restore maps the 256 left), or comes after, the 256 pages left are
/// mapped with their bytes, and the checker and the frame count agree.
/// The migration may also back off, when it freezes while the munmap
/// still holds the references it gathered.
fn split_against_migration() {
    let space = SharedSpace::<X86Format>::new(SimFrames::new(BASE_PFN, NR_FRAMES), &[(AREA, HPAGE_SIZE)]);
    assert_eq!(space.fault(AREA, Access::Write), FaultOutcome::MappedHuge);
    let head = space.translate(AREA).unwrap().pfn();
    for i in 0..512 {
        space.frames.write_u64(head.plus(i).phys(), stamp(i));
    }
    let folio = folio_of(space.memmap(), head).unwrap();
    folio.get(); // the migration's, taken when it chose the folio
    MIGRATED.store(false, Ordering::Relaxed);
    let migrator = shuttle::thread::spawn(move || {
        folio.lock();
        let dst = space.frames.alloc_unpublished(folio.order()).expect("a destination");
        let moved = match migrate_folio(&Host(space), folio, dst) {
            Ok(new) => {
                if new.put() {
                    // Nothing was restored, though only half was cut.
                    LOST.store(true, Ordering::Relaxed);
                    space.frames.free(new);
                    panic!("the split lost the PMD migration entry: the migration restored no mapping");
                }
                true
            }
            Err(MigrateError::Referenced { .. }) => {
                folio.unlock();
                assert!(!folio.put(), "the mappings keep the folio");
                false
            }
            Err(e) => panic!("migration refused: {e}"),
        };
        MIGRATED.store(true, Ordering::Relaxed);
        moved
    });
    let cutter = shuttle::thread::spawn(move || {
        wait_for_start(|| space.locked(|g| pmd_entry(&g.table, &g.mem, AREA)));
        let (start, end) = (VirtAddr::new(AREA + CUT.start * 4096), VirtAddr::new(AREA + CUT.end * 4096));
        let (seen, gather) = space.locked(|g| {
            // What the split is about to meet.
            let seen = match g.table.lookup(&g.mem, VirtAddr::new(AREA)) {
                (Level::Pmd, Decoded::Leaf(leaf)) if leaf.frame.pfn() == head => 0,
                (Level::Pmd, Decoded::NonPresent(NonPresent::Migration(_))) => 1,
                (Level::Pmd, Decoded::Leaf(_)) => 2,
                other => panic!("the munmap found {other:?}"),
            };
            g.vmas.unmap(start, end.as_u64() - start.as_u64()).unwrap();
            (seen, zap_locked(&space.frames, &g.table, &g.mem, &g.tlb, &[(start, end)]))
        });
        zap_release(&space.frames, gather);
        seen
    });
    let seen = cutter.join().unwrap();
    let moved = migrator.join().unwrap();
    let left: Vec<u64> = (0..512).filter(|i| !CUT.contains(i)).collect();
    if seen == 1 && left.iter().any(|&i| space.translate(AREA + i * 4096).is_none()) {
        LOST.store(true, Ordering::Relaxed);
        panic!("the split lost the PMD migration entry: the pages left are not mapped again");
    }
    for &i in &left {
        let pa = space.translate(AREA + i * 4096).unwrap_or_else(|| panic!("page {i} is not mapped"));
        assert_eq!(space.frames.read_u64(pa), stamp(i), "page {i} lost its bytes");
        assert_eq!(pa.pfn() == head.plus(i), !moved, "page {i} at {pa}, moved: {moved}");
    }
    let seen = if moved { seen } else { 3 };
    SPLIT_SEEN[seen].fetch_add(1, Ordering::Relaxed);
    let stats = space.check();
    assert_eq!((stats.nr_pte_leaves, stats.nr_migration_entries), (256, 0));
    space.finish();
}

#[test]
fn a_split_against_a_real_migration_keeps_every_page() {
    let _alone = alone();
    for s in &SPLIT_SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run_from_each_start("split against migrate_folio", SEED, split_against_migration);
    let seen: Vec<usize> = SPLIT_SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: munmap first {}, split of the migration entry {}, migration first {}, backed off {}",
        seen[0], seen[1], seen[2], seen[3]
    );
    assert!(seen[..3].iter().all(|&n| n > 0), "shuttle never reached every order: {seen:?}");
}

#[test]
fn shuttle_catches_split_pmd_migration_entry_in_a_real_migration() {
    let _alone = alone();
    let failed = {
        let _on = BugOn::new(Bug::SplitPmdMigrationEntry);
        LOST.store(false, Ordering::Relaxed);
        // From the start where the split meets the entry most often.
        START_AT.store(1, Ordering::Relaxed);
        let r = explore(
            Explorer::Random,
            SEED,
            WHOLE_ITERATIONS,
            FailurePersistence::None,
            split_against_migration,
        );
        START_AT.store(0, Ordering::Relaxed);
        if let Err(msg) = &r {
            eprintln!("shuttle: the failure it found: {msg}");
        }
        r.is_err()
    };
    assert!(!bugs::enabled(Bug::SplitPmdMigrationEntry));
    assert!(
        failed && LOST.load(Ordering::Relaxed),
        "shuttle did not find the lost migration entry of seed 001"
    );
}

// ------------------------------------------------------------------ fork

/// A parent and the child fork makes, under one lock (the kernel's fork
/// holds the parent's lock; migration every family member's).
struct Family {
    parent: PageTable<X86Format>,
    child: Option<PageTable<X86Format>>,
    vmas: VmaSet,
    mem: SimMemory,
    tlb: SoftTlb<X86Format>,
}

/// The kernel's side of migration over a family of two.
struct FamilyHost {
    family: &'static shuttle::sync::Mutex<Family>,
    frames: &'static SimFrames,
}

impl MigrateHost for FamilyHost {
    type Format = X86Format;
    type Mem = SimMemory;
    type Tlb = SoftTlb<X86Format>;

    fn memmap(&self) -> &'static Memmap {
        self.frames.memmap()
    }
    fn lru(&self) -> Option<&LruLists> {
        None
    }
    fn with_family_locked<R>(
        &self,
        _: &Folio<'static>,
        f: impl FnOnce(&[&PageTable<X86Format>], &SimMemory, &SoftTlb<X86Format>) -> R,
    ) -> R {
        let g = self.family.lock().unwrap();
        let mut tables = vec![&g.parent];
        tables.extend(g.child.as_ref());
        f(&tables, &g.mem, &g.tlb)
    }
    fn with_swap_area<R>(&self, _: SwapType, _: impl FnOnce(&SwapArea) -> R) -> Option<R> {
        None
    }
    fn copy_frames(&self, dst: PhysAddr, src: PhysAddr, nr: usize) {
        shuttle::thread::yield_now(); // as `Host`'s
        copy_frames(self.frames, dst, src, nr);
    }
    fn free(&self, folio: Folio<'static>) {
        self.frames.free(folio);
    }
    fn migration_done(&self, _: Pfn) {}
}

/// Executions that saw each order: [fork first, fork of the PMD migration
/// entry, migration first].
static FORK_SEEN: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

/// Fork of a space whose THP the real migration moves: whatever the
/// order, both spaces map the new THP by a read-only PMD, shared (entire
/// mapcount 2), with its bytes; the checker passes over the family and
/// every frame comes back.
fn fork_against_migration() {
    let frames: &'static SimFrames = Box::leak(Box::new(SimFrames::new(BASE_PFN, NR_FRAMES)));
    let free_at_start = frames.nr_free();
    let mem = SimMemory::new(0x1000_0000, 64);
    let parent = PageTable::new(&mem).unwrap();
    let mut vmas = VmaSet::new(VirtAddr::new(0x1000), VirtAddr::new(USER_END));
    vmas.map_fixed(VirtAddr::new(AREA), HPAGE_SIZE, VmaProt::READ_WRITE, VmaKind::Anonymous).unwrap();
    let family = Family { parent, child: None, vmas, mem, tlb: SoftTlb::default() };
    let family: &'static shuttle::sync::Mutex<Family> =
        Box::leak(Box::new(shuttle::sync::Mutex::new(family)));
    let fault = MemFault {
        addr: VirtAddr::new(AREA),
        access: Access::Write,
        cause: FaultCause::NotMapped,
        level: None,
        syndrome: 0,
    };
    let head = {
        let g = family.lock().unwrap();
        let out = handle_fault(&g.parent, &g.vmas, &g.mem, frames, &g.tlb, &fault, true);
        assert_eq!(out, FaultOutcome::MappedHuge);
        g.parent.translate(&g.mem, VirtAddr::new(AREA)).unwrap().pfn()
    };
    for i in (0..512).step_by(7) {
        frames.write_u64(head.plus(i).phys(), stamp(i));
    }
    let folio = folio_of(frames.memmap(), head).unwrap();
    folio.get(); // the migration's, taken when it chose the folio
    MIGRATED.store(false, Ordering::Relaxed);
    let migrator = shuttle::thread::spawn(move || {
        folio.lock();
        let dst = frames.alloc_unpublished(folio.order()).expect("a destination");
        let new = migrate_folio(&FamilyHost { family, frames }, folio, dst)
            .unwrap_or_else(|e| panic!("migration refused: {e}"));
        assert!(!new.put(), "the mappings keep the new folio");
        MIGRATED.store(true, Ordering::Relaxed);
        new
    });
    let forker = shuttle::thread::spawn(move || {
        wait_for_start(|| {
            let g = family.lock().unwrap();
            pmd_entry(&g.parent, &g.mem, AREA)
        });
        let mut g = family.lock().unwrap();
        // What fork is about to copy.
        let seen = match g.parent.lookup(&g.mem, VirtAddr::new(AREA)) {
            (Level::Pmd, Decoded::Leaf(leaf)) if leaf.frame.pfn() == head => 0,
            (Level::Pmd, Decoded::NonPresent(NonPresent::Migration(_))) => 1,
            (Level::Pmd, Decoded::Leaf(_)) => 2,
            other => panic!("fork found {other:?}"),
        };
        let child = PageTable::new(&g.mem).unwrap();
        let mut flush = Flush::none(g.parent.root());
        let handle = anon_handle(child.root());
        let (start, end) = (VirtAddr::new(0), VirtAddr::new(USER_END));
        fork_range(&g.parent, &child, &g.mem, frames, handle, start, end, &mut flush).unwrap();
        flush.flush(&g.tlb);
        g.child = Some(child);
        seen
    });
    let seen = forker.join().unwrap();
    let new = migrator.join().unwrap();
    let mut g = family.lock().unwrap();
    let child = g.child.take().unwrap();
    for table in [&g.parent, &child] {
        let (level, leaf) = match table.lookup(&g.mem, VirtAddr::new(AREA)) {
            (level, Decoded::Leaf(leaf)) => (level, leaf),
            other => panic!("no leaf: {other:?}"),
        };
        assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, new.phys(), false));
    }
    for i in (0..512).step_by(7) {
        assert_eq!(frames.read_u64(new.pfn().plus(i).phys()), stamp(i), "page {i} lost its bytes");
    }
    assert_eq!((new.entire_mapcount(), new.refcount()), (2, 2));
    assert!(!new.test_flag(PageFlag::AnonExclusive));
    FORK_SEEN[seen].fetch_add(1, Ordering::Relaxed);
    let handles = [anon_handle(g.parent.root()), anon_handle(child.root())];
    let spaces = [(&g.parent, &g.vmas), (&child, &g.vmas)];
    let scope = Scope { complete: true, quiescent: true, ..Scope::default() };
    check_spaces_in(&spaces, &g.mem, &handles, frames.memmap(), &scope)
        .unwrap_or_else(|e| panic!("checker: {e}"));
    let g = &mut *g;
    for table in [&g.parent, &child] {
        let mut gather = Gather::new(table.root());
        let (start, end) = (VirtAddr::new(0), VirtAddr::new(USER_END));
        zap_range(table, &g.mem, &g.tlb, frames.memmap(), start, end, &mut gather, &mut |f| frames.free(f))
            .unwrap();
        gather.take_flush().flush(&g.tlb);
        gather.release(frames.memmap(), &mut |f| frames.free(f));
    }
    child.destroy(&g.mem, 0..0);
    assert_eq!(frames.nr_free(), free_at_start, "frames leaked");
}

#[test]
fn fork_against_a_real_migration_shares_the_new_thp_either_way() {
    let _alone = alone();
    for s in &FORK_SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run_from_each_start("fork against migrate_folio", SEED + 8, fork_against_migration);
    let seen: Vec<usize> = FORK_SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: fork first {}, fork of the migration entry {}, migration first {}",
        seen[0], seen[1], seen[2]
    );
    assert!(seen.iter().all(|&n| n > 0), "shuttle never reached every order: {seen:?}");
}
