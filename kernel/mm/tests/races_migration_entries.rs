//! Migration entries against the paths that meet them, under a
//! concurrency checker: a PMD split (munmap cutting a THP) against a
//! migration of that THP, and fork against a migration, in every
//! interleaving shuttle explores of the real `mm` code.
//!
//! ```text
//! cargo test -p mm --features shuttle --test races_migration_entries
//! ```
//!
//! The migration is `mm::migrate`'s own two halves, cut apart by
//! `mm::testkit::migration_entries` (`try_to_unmap`'s migration target,
//! then `mm::migrate::remove_migration_entries`, the folio its own
//! destination), run as the kernel runs them: the folio lock first (waiting by
//! yielding), the space's lock to replace the mappings by migration
//! entries, the copy without that lock (a scheduling point here), the lock
//! again to restore what it finds, then the folio lock and the reference
//! it took before it started (isolation) go. Whatever the order, the end
//! must be the same pages mapped the same way, with the counts the checker
//! wants and every frame back at teardown. With the replay switch
//! `split-pmd-migration-entry` on, a split that meets the PMD migration
//! entry loses it, and shuttle must find that interleaving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arch_x86_64::pgtable::X86Format;
use mm::anon::anon_handle;
use mm::bugs::{self, Bug};
use mm::debug::{check_spaces_in, Scope};
use mm::fault::{handle_fault, Access, FaultCause, FaultOutcome, MemFault};
use mm::folio::{folio_of, Folio};
use mm::page::{Memmap, PageFlag};
use mm::pgtable::sim::{SimMemory, SoftTlb};
use mm::pgtable::{Flush, Level, PageTable};
use mm::space::{fork_range, zap_range, Gather};
use mm::testkit::bug_switch::{shared, BugOn};
use mm::testkit::frames::SimFrames;
use mm::testkit::migration_entries::{remove_migration_entries, unmap_to_migration};
use mm::testkit::races::{explore, run, Explorer};
use mm::testkit::world::SharedSpace;
use mm::thp::HPAGE_SIZE;
use mm::vma::{VmaKind, VmaProt, VmaSet};
use mm::VirtAddr;
use shuttle::FailurePersistence;

const BASE_PFN: u64 = 0x80000;
/// Two 2 MiB blocks of frames.
const NR_FRAMES: usize = 1024;
const AREA: u64 = 0x4000_0000;
const USER_END: u64 = 0x8000_0000_0000;
const SEED: u64 = 0x5eed_0014;
const ITERATIONS: usize = 150;
const PAGE: u64 = 4096;

type Space = SharedSpace<X86Format>;

fn va(raw: u64) -> VirtAddr {
    VirtAddr::new(raw)
}

/// What runs under the lock of every table that may map the folio: the
/// tables, their areas (the same in every space here), memory and TLB.
type Locked<'a> = dyn FnMut(&[&PageTable<X86Format>], &VmaSet, &SimMemory, &SoftTlb<X86Format>) -> usize + 'a;

/// The migration of `folio` (module doc), holding the reference the
/// caller took for it; `lock_tables` runs a closure under the lock of
/// every table that may map it. Returns (entries written, mappings
/// restored).
fn migrate<L>(folio: Folio<'static>, memmap: &'static Memmap, lock_tables: L) -> (usize, usize)
where
    L: Fn(&mut Locked<'_>) -> usize,
{
    while !folio.try_lock() {
        shuttle::thread::yield_now();
    }
    let mut prots = None;
    let unmapped = lock_tables(&mut |tables, _, mem, tlb| {
        let done = unmap_to_migration(tables, mem, tlb, memmap, &folio);
        prots = Some(done.prots);
        done.nr_entries
    });
    shuttle::thread::yield_now(); // the copy, without the space's lock
    let prots = prots.expect("the first half ran");
    let restored = lock_tables(&mut |tables, vmas, mem, _| {
        let spaces: Vec<_> = tables.iter().map(|t| (*t, vmas)).collect();
        remove_migration_entries(&spaces, mem, &folio, &prots)
    });
    folio.unlock();
    (unmapped, restored)
}

// ------------------------------------------------------------------ split

/// Executions that saw each order: [munmap first, split of the migration
/// entry, migration first].
static SPLIT_SEEN: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
/// The split lost the migration entry (the replay's mistake).
static LOST: AtomicBool = AtomicBool::new(false);

/// A munmap that cuts a THP in two (the PMD split first) against a
/// migration of that THP.
fn split_against_migration() {
    let space: &'static Space = SharedSpace::new(SimFrames::new(BASE_PFN, NR_FRAMES), &[(AREA, HPAGE_SIZE)]);
    assert_eq!(space.fault(AREA, Access::Write), FaultOutcome::MappedHuge);
    let head = space.translate(AREA).unwrap().pfn();
    let folio = folio_of(space.memmap(), head).unwrap();
    folio.get(); // the migration's, taken when it isolated the folio
    let lock_tables = move |f: &mut Locked<'_>| space.locked(|g| f(&[&g.table], &g.vmas, &g.mem, &g.tlb));
    let memmap = space.memmap();
    let m = shuttle::thread::spawn(move || migrate(folio, memmap, lock_tables));
    let z = shuttle::thread::spawn(move || space.munmap(AREA + 100 * PAGE, AREA + 356 * PAGE));
    z.join().unwrap();
    let (unmapped, restored) = m.join().unwrap();
    let last = space.frames.put(folio);
    let seen = match (unmapped, restored) {
        (256, 256) => 0,
        (1, 256) => 1,
        (1, 1) => 2,
        (1, 0) => {
            LOST.store(true, Ordering::Relaxed);
            panic!("the split lost the PMD migration entry: nothing restored (freed: {last})");
        }
        other => panic!("(entries written, restored) = {other:?}"),
    };
    SPLIT_SEEN[seen].fetch_add(1, Ordering::Relaxed);
    assert!(!last, "the mappings keep the folio");
    let stats = space.check();
    assert_eq!((stats.nr_pte_leaves, stats.nr_migration_entries), (256, 0));
    for i in (0..100).chain(356..512).step_by(17) {
        assert_eq!(space.translate(AREA + i * PAGE), Some(head.plus(i).phys()), "page {i}");
    }
    // Split into order-0 folios when the munmap came after the migration
    // (nothing else held it then), else whole.
    let folio = folio_of(space.memmap(), head).unwrap();
    let taken = if folio.order() == 0 { 256 } else { 512 };
    assert_eq!(space.nr_taken(), taken);
    space.finish();
}

#[test]
fn a_split_against_a_migration_keeps_every_entry() {
    let _shared = shared();
    for s in &SPLIT_SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run("split against migration", SEED, ITERATIONS, split_against_migration);
    let seen: Vec<usize> = SPLIT_SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: munmap first {} times, split of the migration entry {} times, migration first {} times",
        seen[0], seen[1], seen[2]
    );
    assert!(seen.iter().all(|&n| n > 0), "shuttle never reached every order: {seen:?}");
}

#[test]
fn shuttle_catches_split_pmd_migration_entry() {
    let failed = {
        let _on = BugOn::new(Bug::SplitPmdMigrationEntry);
        LOST.store(false, Ordering::Relaxed);
        let r =
            explore(Explorer::Random, SEED, ITERATIONS, FailurePersistence::None, split_against_migration);
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

/// A parent, and the child fork makes, under one lock (the kernel's fork
/// holds the parent's lock, the migration every family member's).
struct Family {
    parent: PageTable<X86Format>,
    child: Option<PageTable<X86Format>>,
    vmas: VmaSet,
    mem: SimMemory,
    tlb: SoftTlb<X86Format>,
}

/// Executions that saw each order: [fork first, fork of the migration
/// entry, migration first].
static FORK_SEEN: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

/// Fork of a space whose THP is being migrated.
fn fork_against_migration() {
    let frames: &'static SimFrames = Box::leak(Box::new(SimFrames::new(BASE_PFN, NR_FRAMES)));
    let free_at_start = frames.nr_free();
    let mem = SimMemory::new(0x1000_0000, 64);
    let parent = PageTable::new(&mem).unwrap();
    let mut vmas = VmaSet::new(va(0x1000), va(USER_END));
    vmas.map_fixed(va(AREA), HPAGE_SIZE, VmaProt::READ_WRITE, VmaKind::Anonymous).unwrap();
    let family = Family { parent, child: None, vmas, mem, tlb: SoftTlb::default() };
    let family: &'static shuttle::sync::Mutex<Family> =
        Box::leak(Box::new(shuttle::sync::Mutex::new(family)));
    let fault = MemFault {
        addr: va(AREA),
        access: Access::Write,
        cause: FaultCause::NotMapped,
        level: None,
        syndrome: 0,
    };
    {
        let g = family.lock().unwrap();
        let out = handle_fault(&g.parent, &g.vmas, &g.mem, frames, &g.tlb, &fault, true);
        assert_eq!(out, FaultOutcome::MappedHuge);
    }
    let head = {
        let g = family.lock().unwrap();
        g.parent.translate(&g.mem, va(AREA)).unwrap().pfn()
    };
    let folio = folio_of(frames.memmap(), head).unwrap();
    folio.get(); // the migration's
    let lock_tables = move |f: &mut Locked<'_>| {
        let g = family.lock().unwrap();
        let mut tables = vec![&g.parent];
        tables.extend(g.child.as_ref());
        f(&tables, &g.vmas, &g.mem, &g.tlb)
    };
    let m = shuttle::thread::spawn(move || migrate(folio, frames.memmap(), lock_tables));
    let f = shuttle::thread::spawn(move || {
        let mut g = family.lock().unwrap();
        let child = PageTable::new(&g.mem).unwrap();
        let mut flush = Flush::none(g.parent.root());
        let handle = anon_handle(child.root());
        fork_range(&g.parent, &child, &g.mem, frames, handle, va(0), va(USER_END), &mut flush).unwrap();
        flush.flush(&g.tlb);
        g.child = Some(child);
    });
    f.join().unwrap();
    let (unmapped, restored) = m.join().unwrap();
    let seen = match (unmapped, restored) {
        (2, 2) => 0,
        (1, 2) => 1,
        (1, 1) => 2,
        other => panic!("(entries written, restored) = {other:?}"),
    };
    FORK_SEEN[seen].fetch_add(1, Ordering::Relaxed);
    assert!(!frames.put(folio), "the mappings keep the folio");
    // Whatever the order: both spaces map the THP by a read-only PMD, shared.
    let mut g = family.lock().unwrap();
    let child = g.child.take().unwrap();
    for table in [&g.parent, &child] {
        let (level, leaf) = match table.lookup(&g.mem, va(AREA)) {
            (level, mm::pgtable::Decoded::Leaf(leaf)) => (level, leaf),
            other => panic!("no leaf: {other:?}"),
        };
        assert_eq!((level, leaf.frame, leaf.prot.writable), (Level::Pmd, head.phys(), false));
    }
    assert_eq!((folio.entire_mapcount(), folio.refcount()), (2, 2));
    assert!(!folio.test_flag(PageFlag::AnonExclusive));
    let handles = [anon_handle(g.parent.root()), anon_handle(child.root())];
    let spaces = [(&g.parent, &g.vmas), (&child, &g.vmas)];
    let scope = Scope { complete: true, quiescent: true, ..Scope::default() };
    check_spaces_in(&spaces, &g.mem, &handles, frames.memmap(), &scope)
        .unwrap_or_else(|e| panic!("checker: {e}"));
    // Teardown: both spaces' mappings, then their tables.
    let g = &mut *g;
    for table in [&g.parent, &child] {
        let mut gather = Gather::new(table.root());
        zap_range(table, &g.mem, &g.tlb, frames.memmap(), va(0), va(USER_END), &mut gather, &mut |f| {
            frames.free(f)
        })
        .unwrap();
        gather.take_flush().flush(&g.tlb);
        gather.release(frames.memmap(), &mut |f| frames.free(f));
    }
    child.destroy(&g.mem, 0..0);
    assert_eq!(frames.nr_free(), free_at_start, "frames leaked");
}

#[test]
fn fork_against_a_migration_shares_the_thp_either_way() {
    let _shared = shared();
    for s in &FORK_SEEN {
        s.store(0, Ordering::Relaxed);
    }
    run("fork against migration", SEED, ITERATIONS, fork_against_migration);
    let seen: Vec<usize> = FORK_SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    eprintln!(
        "shuttle: fork first {} times, fork of the migration entry {} times, migration first {} times",
        seen[0], seen[1], seen[2]
    );
    assert!(seen.iter().all(|&n| n > 0), "shuttle never reached every order: {seen:?}");
}
