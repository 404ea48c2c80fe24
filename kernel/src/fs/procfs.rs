//! The system-wide synthetic files: `/proc/meminfo`, `/proc/vmstat`,
//! `/proc/cpuinfo`, `/sys/devices/system/cpu/online`, and the THP policy's
//! `/sys/kernel/mm/transparent_hugepage/enabled` and `defrag`.
//!
//! A read-only file's text is made when it is opened ([`Snapshot`]: what
//! one `open` reads is one consistent-enough moment, as Linux's seq files
//! give when read in one go), from the kernel's own counters, never
//! estimated apart from them; where this kernel has nothing that stands
//! for a Linux field (no page cache: `Cached`, `Dirty`...), the field is
//! there and 0, so programs that parse it find it. Where each number comes
//! from is written beside it below and in the book ("/proc as a window
//! into the memory subsystem").
//!
//! A [`Knob`] is read and written: its text is made at each read; a write
//! of one of the words it knows sets the policy
//! ([`crate::vm::thp_policy`]), anything else is `EINVAL`.

use crate::fs::file::{read_from_bytes, File, IoBuf, Stat};
use crate::fs::Errno;
use crate::memory;
use crate::vm::{compaction, migrate, reclaim, swap, thp_policy};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// Makes the text of a read-only file.
pub type MakeText = fn() -> String;

/// Read-only files: path in the tree and the function that makes the text.
pub const GENERATED: &[(&str, MakeText)] = &[
    ("proc/meminfo", meminfo),
    ("proc/vmstat", vmstat),
    ("proc/cpuinfo", cpuinfo),
    ("sys/devices/system/cpu/online", cpu_online),
];

/// Read-write files.
pub const KNOBS: &[(&str, Knob)] = &[
    (
        "sys/kernel/mm/transparent_hugepage/enabled",
        Knob { show: thp_policy::show_enabled, store: thp_policy::store_enabled },
    ),
    (
        "sys/kernel/mm/transparent_hugepage/defrag",
        Knob { show: thp_policy::show_defrag, store: thp_policy::store_defrag },
    ),
];

/// A setting as a file (module doc).
#[derive(Clone, Copy)]
pub struct Knob {
    pub show: fn() -> String,
    pub store: fn(&str) -> Result<(), thp_policy::UnknownWord>,
}

/// An open [`Knob`].
pub struct KnobFile {
    pub knob: Knob,
    pub stat: Stat,
}

impl File for KnobFile {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        read_from_bytes((self.knob.show)().as_bytes(), offset, buf, len)
    }
    fn write(&self, _: u64, buf: &IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        if len > 64 {
            return Err(Errno::EINVAL);
        }
        let mut bytes = vec![0u8; len];
        buf.take(0, &mut bytes)?;
        let text = core::str::from_utf8(&bytes).map_err(|_| Errno::EINVAL)?;
        (self.knob.store)(text).map_err(|_| Errno::EINVAL)?;
        Ok(len)
    }
    fn stat(&self) -> Stat {
        self.stat
    }
}

/// A text made at open (module doc).
pub struct Snapshot {
    text: String,
    stat: Stat,
}

impl Snapshot {
    pub fn new(text: String, stat: Stat) -> Snapshot {
        Snapshot { text, stat }
    }
}

impl File for Snapshot {
    fn read(&self, offset: u64, buf: &mut IoBuf<'_>, len: usize, _: bool) -> Result<usize, Errno> {
        read_from_bytes(self.text.as_bytes(), offset, buf, len)
    }
    fn write(&self, _: u64, _: &IoBuf<'_>, _: usize, _: bool) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }
    fn stat(&self) -> Stat {
        self.stat
    }
}

/// The memory counters `/proc/meminfo` is made of, in pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCounts {
    pub total: u64,
    pub free: u64,
    pub active: u64,
    pub inactive: u64,
    pub swap_cached: u64,
    pub anon_huge: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub page_tables: u64,
    pub writeback: u64,
}

/// The counters now: the buddy allocator's managed and free pages, the LRU
/// lists' pages (every page on them is anonymous: this kernel has no page
/// cache), the swap cache and the swap areas' slots, the page-table
/// frames, and the huge folios found on the LRU lists.
pub fn mem_counts() -> MemCounts {
    let frames = memory::frame_allocator();
    let (swap_free, swap_total) = swap::totals();
    let mut c = MemCounts {
        total: frames.managed_pages(),
        free: frames.nr_free_pages(),
        swap_cached: swap::nr_cached(),
        swap_total,
        swap_free,
        page_tables: memory::paging::nr_tables(),
        writeback: swap::NR_WRITEBACK.load(Ordering::Relaxed),
        ..MemCounts::default()
    };
    if let Some(lru) = reclaim::lru() {
        let counts = lru.counts();
        c.active = counts.nr_active_pages;
        c.inactive = counts.nr_inactive_pages;
        let memmap = frames.memmap();
        lru.for_each(|pfn, _| {
            if mm::folio::folio_of(memmap, pfn).is_some_and(|f| f.order() == 9) {
                c.anon_huge += 512;
            }
        });
    }
    c
}

/// `/proc/meminfo`: Linux's field names and layout (`Name:  N kB`).
pub fn meminfo() -> String {
    let c = mem_counts();
    let kb = |pages: u64| pages * 4;
    // Anonymous pages mapped by processes: the LRU's pages less the swap
    // cache's (which Linux counts apart); a swap-cache page that is also
    // mapped is counted as cached only.
    let anon = (c.active + c.inactive).saturating_sub(c.swap_cached);
    let fields: &[(&str, u64)] = &[
        ("MemTotal", kb(c.total)),
        ("MemFree", kb(c.free)),
        // Nothing is reclaimable without I/O here (no clean page cache):
        // what is available without swapping is what is free.
        ("MemAvailable", kb(c.free)),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", kb(c.swap_cached)),
        ("Active", kb(c.active)),
        ("Inactive", kb(c.inactive)),
        ("Active(anon)", kb(c.active)),
        ("Inactive(anon)", kb(c.inactive)),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", 0),
        ("Mlocked", 0),
        ("SwapTotal", kb(c.swap_total)),
        ("SwapFree", kb(c.swap_free)),
        ("Dirty", 0),
        ("Writeback", kb(c.writeback)),
        ("AnonPages", kb(anon)),
        ("Mapped", 0),
        ("Shmem", 0),
        ("PageTables", kb(c.page_tables)),
        ("AnonHugePages", kb(c.anon_huge)),
        ("ShmemHugePages", 0),
        ("FileHugePages", 0),
    ];
    let mut out = String::new();
    for (name, v) in fields {
        let _ = writeln!(out, "{:<16}{v:>8} kB", format!("{name}:"));
    }
    let _ = writeln!(out, "{:<16}{:>8}", "HugePages_Total:", 0);
    let _ = writeln!(out, "{:<16}{:>8}", "HugePages_Free:", 0);
    let _ = writeln!(out, "{:<16}{:>8} kB", "Hugepagesize:", 2048);
    out
}

/// `/proc/vmstat`: `name value` lines, Linux's names for the counters this
/// kernel keeps.
pub fn vmstat() -> String {
    let c = mem_counts();
    let m = migrate::counters();
    let mut out = String::new();
    let mut line = |name: &str, v: u64| {
        let _ = writeln!(out, "{name} {v}");
    };
    line("nr_free_pages", c.free);
    line("nr_inactive_anon", c.inactive);
    line("nr_active_anon", c.active);
    line("nr_anon_pages", (c.active + c.inactive).saturating_sub(c.swap_cached));
    line("nr_anon_transparent_hugepages", c.anon_huge / 512);
    line("nr_page_table_pages", c.page_tables);
    line("nr_swapcached", c.swap_cached);
    line("nr_writeback", c.writeback);
    line("pswpin", swap::PSWPIN.load(Ordering::Relaxed));
    line("pswpout", swap::PSWPOUT.load(Ordering::Relaxed));
    line("swapin_mapped_around", swap::SWAPIN_MAPPED_AROUND.load(Ordering::Relaxed));
    line("pgsteal_anon", reclaim::NR_RECLAIMED.load(Ordering::Relaxed));
    line("allocstall_normal", reclaim::NR_DIRECT_RECLAIMS.load(Ordering::Relaxed));
    line("pageoutrun", reclaim::NR_KSWAPD_WAKEUPS.load(Ordering::Relaxed));
    line("oom_kill", reclaim::NR_OOM_KILLS.load(Ordering::Relaxed));
    line("thp_swpout_fallback", reclaim::NR_SPLIT_FOR_SWAP.load(Ordering::Relaxed));
    line("pgmigrate_success", m.pgmigrate_success);
    line("pgmigrate_fail", m.pgmigrate_fail);
    line("thp_migration_success", m.thp_migration_success);
    line("thp_migration_split", m.thp_migration_split);
    // The compaction counters print themselves as `name value` pairs.
    let compact = format!("{}", compaction::counts());
    let words: alloc::vec::Vec<&str> = compact.split_whitespace().collect();
    for pair in words.chunks(2) {
        if let [name, v] = pair {
            let _ = writeln!(out, "{name} {v}");
        }
    }
    out
}

/// `/proc/cpuinfo`, minimal: one block per online CPU.
pub fn cpuinfo() -> String {
    let mut out = String::new();
    for cpu in crate::task::sched::online_cpus() {
        let _ = writeln!(out, "processor\t: {cpu}");
        #[cfg(target_arch = "x86_64")]
        let _ = writeln!(
            out,
            "vendor_id\t: mmkernel\nmodel name\t: QEMU TCG x86_64 CPU\nflags\t\t: fpu pae pse pge lm"
        );
        #[cfg(target_arch = "aarch64")]
        let _ = writeln!(out, "CPU architecture: 8\nFeatures\t: fp asimd");
        out.push('\n');
    }
    out
}

/// `/sys/devices/system/cpu/online`: the online CPUs as ranges (`0-3`).
pub fn cpu_online() -> String {
    let mut out = String::new();
    let cpus: alloc::vec::Vec<usize> = crate::task::sched::online_cpus().collect();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if cpus[i] == start {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{}", cpus[i]);
        }
        i += 1;
    }
    out.push('\n');
    out
}
