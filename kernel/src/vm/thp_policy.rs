//! The system-wide transparent-huge-page policy: Linux's
//! `/sys/kernel/mm/transparent_hugepage/enabled` and `defrag`, which the
//! fault path reads through [`crate::vm::space::KernelFrames`].
//!
//! - [`enabled`] (`mm::vma::ThpEnabled`): which areas a fault may back with
//!   huge pages at all (`always`: all but `MADV_NOHUGEPAGE` ones, the
//!   default and this kernel's behaviour before the switch existed;
//!   `madvise`: only `MADV_HUGEPAGE` ones; `never`).
//! - [`defrag`] (`mm::compaction::Defrag`): which THP write faults that
//!   find no free 2 MiB block compact before falling back (default
//!   `madvise`: those in `MADV_HUGEPAGE` areas, see
//!   [`crate::vm::compaction`]).
//!
//! Each setting is one atomic byte (no lock): a fault reads it once, so a
//! change applies to faults that start after it; mappings already made
//! stay as they are, as in Linux. The text form (`always [madvise] never`
//! to read, one word to write) is [`show_enabled`] / [`store_enabled`]
//! and the same for `defrag`.

use alloc::string::String;
use core::sync::atomic::{AtomicU8, Ordering};
use mm::compaction::Defrag;
use mm::vma::ThpEnabled;

/// [`ThpEnabled`] as 0 = always, 1 = madvise, 2 = never.
static ENABLED: AtomicU8 = AtomicU8::new(0);
/// [`Defrag`] as 0 = always, 1 = madvise, 2 = never.
static DEFRAG: AtomicU8 = AtomicU8::new(1);

const ENABLED_NAMES: [(&str, ThpEnabled); 3] =
    [("always", ThpEnabled::Always), ("madvise", ThpEnabled::Madvise), ("never", ThpEnabled::Never)];
const DEFRAG_NAMES: [(&str, Defrag); 3] =
    [("always", Defrag::Always), ("madvise", Defrag::Madvise), ("never", Defrag::Never)];

/// The THP switch now.
pub fn enabled() -> ThpEnabled {
    ENABLED_NAMES[ENABLED.load(Ordering::Relaxed) as usize].1
}

/// Sets the THP switch (for faults from now on).
pub fn set_enabled(value: ThpEnabled) {
    let i = ENABLED_NAMES.iter().position(|(_, v)| *v == value).unwrap_or(0);
    ENABLED.store(i as u8, Ordering::Relaxed);
}

/// The defrag policy now.
pub fn defrag() -> Defrag {
    DEFRAG_NAMES[DEFRAG.load(Ordering::Relaxed) as usize].1
}

/// Sets the defrag policy (for faults from now on).
pub fn set_defrag(value: Defrag) {
    let i = DEFRAG_NAMES.iter().position(|(_, v)| *v == value).unwrap_or(1);
    DEFRAG.store(i as u8, Ordering::Relaxed);
}

/// A written word the setting does not know (the user's mistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownWord;

/// Every choice, the current one in brackets, as Linux shows it.
fn show(names: &[&str], current: usize) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if i == current {
            out.push('[');
            out.push_str(name);
            out.push(']');
        } else {
            out.push_str(name);
        }
    }
    out.push('\n');
    out
}

/// The text of `enabled`: `[always] madvise never`.
pub fn show_enabled() -> String {
    show(&ENABLED_NAMES.map(|(n, _)| n), ENABLED.load(Ordering::Relaxed) as usize)
}

/// The text of `defrag`: `always [madvise] never`.
pub fn show_defrag() -> String {
    show(&DEFRAG_NAMES.map(|(n, _)| n), DEFRAG.load(Ordering::Relaxed) as usize)
}

/// Sets `enabled` from a written word (a trailing newline allowed); `Err`
/// for anything else.
pub fn store_enabled(text: &str) -> Result<(), UnknownWord> {
    let (_, v) = ENABLED_NAMES.iter().find(|(n, _)| *n == text.trim_end_matches('\n')).ok_or(UnknownWord)?;
    set_enabled(*v);
    Ok(())
}

/// Sets `defrag` from a written word; `Err` for anything else (Linux's
/// `defer` and `defer+madvise` too: this kernel has no deferred
/// compaction).
pub fn store_defrag(text: &str) -> Result<(), UnknownWord> {
    let (_, v) = DEFRAG_NAMES.iter().find(|(n, _)| *n == text.trim_end_matches('\n')).ok_or(UnknownWord)?;
    set_defrag(*v);
    Ok(())
}
