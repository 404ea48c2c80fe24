//! `ptdump`: a page-table dump for people.
//!
//! Prints every leaf and swap/migration entry of a virtual range, one line
//! per run, with the level it sits at, its size, its permissions and state,
//! and where it points. Consecutive 4 KiB leaves whose frames are contiguous
//! and whose attributes match are folded into one line, so a 2 MiB region
//! mapped with 512 PTEs reads as one line next to a PMD leaf; so are PTE
//! migration entries of consecutive PFNs with the same kind, young and
//! dirty (a split PMD migration entry reads as one line of 512).
//!
//! ```text
//! 0x0000004000000000-0x0000004000200000 PMD 2M   x1   rw- k D A -> 0x40400000
//! 0x0000004000200000-0x0000004000202000 PTE 4K   x2   r-x u - A -> 0x40612000
//! 0x0000004000202000-0x0000004000203000 PTE 4K   x1   swap 1:0x2a exclusive
//! 0x0000004000400000-0x0000004000600000 PMD 2M   x1   migration write pfn 0x40400 young
//! 0x0000004000600000-0x0000004000800000 PTE 4K   x512 migration read pfn 0x40600 dirty
//! ```
//!
//! Permissions read `rwx`; then `u` (user) or `k` (kernel), `g` when
//! global; `D` dirty, `A` young (accessed), `-` when clear.

use crate::addr::{PhysAddr, VirtAddr};
use crate::pgtable::format::{Decoded, Leaf, Level, MigrationKind, NonPresent, PageSize, PageTableFormat};
use crate::pgtable::{PageTable, TableMemory};
use core::fmt::{self, Write};

/// A run of entries being folded into one line.
struct Run {
    start: u64,
    end: u64,
    level: Level,
    count: u64,
    entry: Decoded,
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Pte => "PTE",
        Level::Pmd => "PMD",
        Level::Pud => "PUD",
        Level::Pgd => "PGD",
    }
}

fn size_name(level: Level) -> &'static str {
    match PageSize::at_level(level) {
        Some(PageSize::Size4K) => "4K",
        Some(PageSize::Size2M) => "2M",
        Some(PageSize::Size1G) => "1G",
        None => "512G",
    }
}

/// True when `next` continues `run`: same level and kind, adjacent, and
/// for leaves (and migration entries) the next frame with the same
/// attributes.
fn continues(run: &Run, va: u64, level: Level, next: &Decoded) -> bool {
    if run.level != level || run.end != va || level != Level::Pte {
        return false;
    }
    match (&run.entry, next) {
        (Decoded::Leaf(a), Decoded::Leaf(b)) => {
            b.frame.as_u64() == a.frame.as_u64() + run.count * 4096
                && (a.prot, a.dirty, a.young) == (b.prot, b.dirty, b.young)
        }
        (Decoded::NonPresent(NonPresent::Migration(a)), Decoded::NonPresent(NonPresent::Migration(b))) => {
            b.pfn.as_u64() == a.pfn.as_u64() + run.count
                && (a.kind, a.young, a.dirty) == (b.kind, b.young, b.dirty)
        }
        _ => false,
    }
}

fn write_leaf(out: &mut impl Write, leaf: &Leaf) -> fmt::Result {
    let p = leaf.prot;
    write!(
        out,
        "r{}{} {}{} {} {} -> {:#x}",
        if p.writable { 'w' } else { '-' },
        if p.executable { 'x' } else { '-' },
        if p.user { 'u' } else { 'k' },
        if p.global { "g" } else { "" },
        if leaf.dirty { 'D' } else { '-' },
        if leaf.young { 'A' } else { '-' },
        leaf.frame.as_u64()
    )
}

fn write_run(out: &mut impl Write, run: &Run) -> fmt::Result {
    write!(
        out,
        "{:#018x}-{:#018x} {} {:<4} x{:<4} ",
        run.start,
        run.end,
        level_name(run.level),
        size_name(run.level),
        run.count
    )?;
    match &run.entry {
        Decoded::Leaf(leaf) => write_leaf(out, leaf)?,
        Decoded::NonPresent(NonPresent::Swap { entry, exclusive }) => write!(
            out,
            "swap {}:{:#x}{}",
            entry.ty(),
            entry.offset(),
            if *exclusive { " exclusive" } else { "" }
        )?,
        Decoded::NonPresent(NonPresent::Migration(m)) => {
            let kind = match m.kind {
                MigrationKind::Read => "read",
                MigrationKind::ReadExclusive => "read-exclusive",
                MigrationKind::Write => "write",
            };
            write!(
                out,
                "migration {kind} pfn {:#x}{}{}",
                m.pfn,
                if m.young { " young" } else { "" },
                if m.dirty { " dirty" } else { "" }
            )?
        }
        Decoded::Bad(raw) => write!(out, "BAD ENTRY {raw:#018x}")?,
        Decoded::None | Decoded::Table(_) => {}
    }
    writeln!(out)
}

/// Writes the dump of `[start, end)` of `table` to `out`; returns the
/// number of lines written.
pub fn dump<F: PageTableFormat>(
    table: &PageTable<F>,
    mem: &impl TableMemory,
    start: VirtAddr,
    end: VirtAddr,
    out: &mut impl Write,
) -> Result<usize, fmt::Error> {
    let mut run: Option<Run> = None;
    let mut lines = 0;
    let mut result = Ok(());
    table.visit(mem, start, end, &mut |va, level, entry, _slot: PhysAddr| {
        let va = va.as_u64();
        match &mut run {
            Some(r) if continues(r, va, level, &entry) => {
                r.end += level.entry_size();
                r.count += 1;
            }
            _ => {
                if let Some(done) = run.take() {
                    result = result.and_then(|()| write_run(out, &done));
                    lines += 1;
                }
                run =
                    Some(Run { start: va, end: va.wrapping_add(level.entry_size()), level, count: 1, entry });
            }
        }
    });
    if let Some(done) = run {
        result = result.and_then(|()| write_run(out, &done));
        lines += 1;
    }
    result.map(|()| lines)
}
