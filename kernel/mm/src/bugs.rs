//! Bug-replay switches: each puts one historical mistake back into the
//! memory subsystem, so that a stress test can prove it catches it.
//!
//! ## What a switch is
//!
//! A [`Bug`] names a mistake that a seed thread fixed (ARCHITECTURE.md,
//! "Bug replay"). The code of the mechanism keeps its correct form and,
//! next to it, the old wrong one, taken only when [`enabled`] says its
//! switch is on. Each wrong path is narrow and says in its doc which
//! switch selects it, so reading the correct code never requires reading
//! the mistake.
//!
//! ## Protocol
//!
//! - Every switch is **off** by default. The kernel turns one on only at
//!   boot, from the argument `bug=<name>` ([`Bug::from_name`], then
//!   [`enable`]), on the boot CPU and before any other CPU runs; nothing
//!   turns a switch off in the kernel. (Host tests may, with `disable`,
//!   which exists only in host builds.)
//! - State: one bit per switch in a word, [`Bug`]'s number being the bit.
//!   [`enable`] sets it with an atomic `fetch_or`; [`enabled`] is a single
//!   **relaxed** load. Relaxed is enough: the word is written before the
//!   other CPUs are started (starting them orders it before anything they
//!   do), and a host test sets it before it starts the threads that read
//!   it. No lock.
//! - The word is a plain `core` atomic even when the `shuttle` feature
//!   routes the page descriptor's atomics through the concurrency checker
//!   (`crate::sync`): a switch is set outside any checked execution and is
//!   constant during one, so reading it is no scheduling point.
//!
//! ## Adding a switch
//!
//! Add a variant with the next number, its [`Bug::name`] and
//! [`Bug::mistake`], and list it in [`Bug::ALL`]; the kernel's argument
//! table (`BUG_SWITCHES` in `kernel/src/cmdline.rs`) names it with the
//! same `name()`.

use core::sync::atomic::{AtomicU32, Ordering};

/// One bug-replay switch. The number is its bit in the switch word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Bug {
    /// Seed 003: a plain (non-atomic) read-modify-write of the flags word
    /// of a folio that other CPUs can already reach. See
    /// [`crate::anon::prepare_anon_folio`].
    NonatomicFolioFlags = 0,
    /// Seed 004: unmapping to swap drops the anon-exclusive state instead
    /// of keeping it in the swap entry's exclusive bit. See
    /// [`crate::unmap`].
    ForgetAnonExclusive = 1,
    /// Seed 002: `MADV_PAGEOUT` splits a large folio without looking
    /// whether reclaim has isolated it to swap it out whole, and swap-in of
    /// a slot held by one entry reads it **without claiming it**, trusting
    /// only the recheck of the page-table entry (Linux's fast path for
    /// synchronous swap devices at the time). Paging the page out again
    /// hands the freed slot back and puts the same entry value back in the
    /// entry (ABA), so the recheck passes and a stale copy is mapped. See
    /// [`crate::pageout::split_cut_folio`] and
    /// [`crate::swap::swapin::get_swapped_folio`].
    PageoutSplitRace = 2,
    /// Seed 000: each page of a swap-cache folio records its own swap
    /// entry (the design before Linux 6.6), and migrating such a folio
    /// records the entry of the head page only, so after a later split the
    /// tail pages carry wrong entries (none here) and a freed or
    /// swapped-in tail no longer names its own slot. See
    /// [`crate::folio::Folio::bug_replay_record_tail_entries`] and
    /// [`crate::migrate::record_swap_entry`].
    SwapcacheTailEntries = 3,
    /// Seed 001: splitting a PMD asks whether it maps the huge zero folio
    /// by reading its frame field **before** asking whether it is present,
    /// and does not think of a PMD migration entry: a non-present PMD is
    /// cleared like the zero PMD ("the range refaults"), so the migration's
    /// restore finds nothing and the THP's data is lost. See
    /// [`crate::thp::split_huge_pmd`].
    SplitPmdMigrationEntry = 4,
}

impl Bug {
    /// Every switch, in bit order.
    pub const ALL: [Bug; 5] = [
        Bug::NonatomicFolioFlags,
        Bug::ForgetAnonExclusive,
        Bug::PageoutSplitRace,
        Bug::SwapcacheTailEntries,
        Bug::SplitPmdMigrationEntry,
    ];

    /// The name used in `bug=<name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::NonatomicFolioFlags => "nonatomic-folio-flags",
            Bug::ForgetAnonExclusive => "forget-anon-exclusive",
            Bug::PageoutSplitRace => "pageout-split-race",
            Bug::SwapcacheTailEntries => "swapcache-tail-entries",
            Bug::SplitPmdMigrationEntry => "split-pmd-migration-entry",
        }
    }

    /// The mistake the switch puts back, in one line.
    pub const fn mistake(self) -> &'static str {
        match self {
            Bug::NonatomicFolioFlags => {
                "a non-atomic flag write on a folio already visible to other CPUs (seed 003)"
            }
            Bug::ForgetAnonExclusive => {
                "unmapping to swap drops the exclusive marker; a writable GUP reference loses writes (seed 004)"
            }
            Bug::PageoutSplitRace => {
                "MADV_PAGEOUT splits a large folio reclaim is swapping out whole, and swap-in reads a slot \
                 without claiming it, so a stale copy is mapped after the slot is reused (seed 002)"
            }
            Bug::SwapcacheTailEntries => {
                "pages of a swap-cache folio keep their own swap entries and migration records the head's \
                 only, so after a split the tails name the wrong slots (seed 000)"
            }
            Bug::SplitPmdMigrationEntry => {
                "a PMD split tests huge-zero on the frame field before present and clears a PMD migration \
                 entry, so the migration restores nothing and the data is lost (seed 001)"
            }
        }
    }

    /// The switch called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }

    const fn mask(self) -> u32 {
        1 << self as u8
    }
}

// Every switch has a bit of the word, and `ALL` is in bit order.
const _: () = {
    assert!(Bug::ALL.len() <= u32::BITS as usize, "more switches than bits in the switch word");
    let mut i = 0;
    while i < Bug::ALL.len() {
        assert!(Bug::ALL[i] as u8 as usize == i, "Bug::ALL is in bit order");
        i += 1;
    }
};

/// The switches that are on, one bit per [`Bug`].
static ENABLED: AtomicU32 = AtomicU32::new(0);

/// Turns `bug`'s switch on. The kernel calls it at boot only, before the
/// other CPUs start (see the module doc).
pub fn enable(bug: Bug) {
    ENABLED.fetch_or(bug.mask(), Ordering::Relaxed);
}

/// True when `bug`'s switch is on: one relaxed load.
#[inline]
pub fn enabled(bug: Bug) -> bool {
    ENABLED.load(Ordering::Relaxed) & bug.mask() != 0
}

/// Turns `bug`'s switch off again. Host tests only (a test that turned a
/// switch on must leave it off for the next); the kernel has no such call.
#[cfg(any(test, feature = "sim", feature = "shuttle"))]
pub fn disable(bug: Bug) {
    ENABLED.fetch_and(!bug.mask(), Ordering::Relaxed);
}

/// Unit tests that turn a switch on hold this, so that two of them never
/// overlap (the other unit tests do not care: a replayed mistake changes
/// nothing when only one thread runs).
#[cfg(test)]
pub(crate) static TEST_SWITCH_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
            assert!(!bug.mistake().is_empty());
        }
        assert_eq!(Bug::from_name("nonatomic-folio-flags"), Some(Bug::NonatomicFolioFlags));
        assert_eq!(Bug::from_name("Nonatomic-Folio-Flags"), None);
        assert_eq!(Bug::from_name(""), None);
    }

    #[test]
    fn off_by_default_then_on_then_off() {
        let _serial = TEST_SWITCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!enabled(Bug::NonatomicFolioFlags));
        enable(Bug::NonatomicFolioFlags);
        assert!(enabled(Bug::NonatomicFolioFlags));
        disable(Bug::NonatomicFolioFlags);
        assert!(!enabled(Bug::NonatomicFolioFlags));
    }
}
