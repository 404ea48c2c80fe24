//! The choices a user makes about a guest machine: which architecture, which
//! accelerator, which firmware (x86_64 only) and how much memory (disk
//! sizes are in [`crate::disk`]).
//!
//! Each type parses from the word a user types on the `cargo xtask` command
//! line, so a typo is refused here, with a message naming the bad word,
//! before anything is built or started.

use std::fmt;
use std::str::FromStr;

/// Why a machine choice was refused. Every variant is the user's input to
/// blame (a bad word, or a combination this machine cannot run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--arch` is not `x86_64` or `aarch64`.
    UnknownArch(String),
    /// `--accel` is not `tcg` or `kvm`.
    UnknownAccel(String),
    /// `--boot` is not `bios` or `uefi`.
    UnknownFirmware(String),
    /// `--mem` could not be read as a size.
    BadMemSize { input: String, why: &'static str },
    /// `--swap` could not be read as a disk size.
    BadDiskSize { input: String, why: &'static str },
    /// `--smp` is not a CPU count QEMU accepts.
    BadCpuCount(String),
    /// The architecture has no such firmware (UEFI is wired up for x86_64 only).
    FirmwareUnsupported { arch: Arch, firmware: Firmware },
    /// The accelerator cannot run this architecture on this host.
    AccelUnsupported { arch: Arch, accel: Accel, why: &'static str },
    /// `--cpu` was given an empty name.
    EmptyCpuModel,
    /// `--numa N` is not a node count, or does not split the machine's
    /// CPUs and RAM evenly into nodes big enough.
    BadNuma { input: String, why: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownArch(s) => {
                write!(f, "unknown architecture `{s}` (expected x86_64 or aarch64)")
            }
            ConfigError::UnknownAccel(s) => {
                write!(f, "unknown accelerator `{s}` (expected tcg or kvm)")
            }
            ConfigError::UnknownFirmware(s) => {
                write!(f, "unknown boot firmware `{s}` (expected bios or uefi)")
            }
            ConfigError::BadMemSize { input, why } => {
                write!(f, "bad memory size `{input}`: {why} (examples: 512M, 2G, 2048 meaning MiB)")
            }
            ConfigError::BadDiskSize { input, why } => {
                write!(f, "bad disk size `{input}`: {why} (examples: 256M, 1G, 0 for none)")
            }
            ConfigError::BadCpuCount(s) => {
                write!(f, "bad CPU count `{s}` (expected a whole number from 1 to {MAX_SMP})")
            }
            ConfigError::FirmwareUnsupported { arch, firmware } => write!(
                f,
                "--boot {firmware} is not supported on {arch}: QEMU's virt machine loads the \
                 kernel image directly (use --boot bios or leave --boot out)"
            ),
            ConfigError::AccelUnsupported { arch, accel, why } => {
                write!(f, "--accel {accel} is not supported on {arch}: {why}")
            }
            ConfigError::EmptyCpuModel => write!(f, "--cpu needs a CPU model name"),
            ConfigError::BadNuma { input, why } => write!(f, "--numa {input}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Gives a choice enum its words from one table: `ALL` (every value, in
/// the table's order), `name` (the word users type), `Display` (that word)
/// and `FromStr` (the word back, else `ConfigError::$unknown` naming what
/// was typed). One table per enum, so printing and parsing cannot disagree.
macro_rules! choice_words {
    ($ty:ident, $unknown:ident, [$($variant:ident => $word:literal),+ $(,)?]) => {
        impl $ty {
            /// Every value, in the order of its words table.
            pub const ALL: [$ty; [$($word),+].len()] = [$($ty::$variant),+];

            /// The word users type for this value, also used in file names
            /// and messages.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = ConfigError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let known = Self::ALL.into_iter().find(|v| v.name() == s);
                known.ok_or_else(|| ConfigError::$unknown(s.to_string()))
            }
        }
    };
}

/// The guest's instruction set; also picks the QEMU binary and the kernel target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

// In the order CI runs them (`Arch::ALL`).
choice_words!(Arch, UnknownArch, [X86_64 => "x86_64", Aarch64 => "aarch64"]);

impl Arch {
    /// The QEMU system emulator for this architecture.
    pub fn qemu_program(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The bare-metal Rust target the kernel is built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-none",
            Arch::Aarch64 => "aarch64-unknown-none",
        }
    }
}

/// How QEMU executes guest code.
///
/// TCG (QEMU's own translator) is the default because `/dev/kvm` on the
/// project's machines is a software hypervisor that aborts with `-cpu host`
/// or `-cpu max`; KVM is opt-in.
///
/// `tcg-icount` is TCG on one host thread with QEMU's instruction counter
/// as the guest's clock (`-icount shift=0`: one nanosecond per guest
/// instruction): the guest's timings become instruction counts, the same
/// from one run to the next whatever else the host runs. For comparing two
/// builds on a loaded machine, not for figures to set beside real time;
/// several guest CPUs take turns on that one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Accel {
    #[default]
    Tcg,
    Kvm,
    TcgIcount,
}

choice_words!(Accel, UnknownAccel, [Tcg => "tcg", Kvm => "kvm", TcgIcount => "tcg-icount"]);

/// The firmware that loads the kernel on x86_64: legacy BIOS (SeaBIOS,
/// QEMU's default) or UEFI (OVMF). AArch64 always boots the raw image
/// directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

choice_words!(Firmware, UnknownFirmware, [Bios => "bios", Uefi => "uefi"]);

/// Another name for [`Firmware`], matching the `--boot` option.
pub type Boot = Firmware;

/// The most guest RAM accepted: 1 TiB. Far above what these hosts have;
/// the limit only catches slips such as `2048G` for `2048M`.
pub const MAX_MEM_MIB: u64 = 1024 * 1024;

/// The smallest guest RAM accepted. Below this, neither firmware nor kernel
/// has room to start, and the resulting crash would be misleading.
pub const MIN_MEM_MIB: u64 = 16;

/// The most CPUs accepted by `--smp` (QEMU's `pc` machine limit).
pub const MAX_SMP: u32 = 255;

/// Guest RAM size, in whole MiB (QEMU's `-m` unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemSize {
    mib: u64,
}

impl MemSize {
    /// A size of `mib` MiB, if it lies within [`MIN_MEM_MIB`]..=[`MAX_MEM_MIB`].
    pub fn from_mib(mib: u64) -> Option<Self> {
        (MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib).then_some(MemSize { mib })
    }

    /// The size in MiB.
    pub fn mib(self) -> u64 {
        self.mib
    }
}

impl Default for MemSize {
    /// 512 MiB, the default of `cargo xtask qemu boot`.
    fn default() -> Self {
        MemSize { mib: 512 }
    }
}

impl fmt::Display for MemSize {
    /// The form QEMU's `-m` takes, e.g. `512M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}M", self.mib)
    }
}

impl FromStr for MemSize {
    type Err = ConfigError;

    /// Reads `512M`, `512MiB`, `2G`, `2GiB`, `1T` (suffixes in any case, an
    /// optional trailing `B`), or a bare number meaning MiB.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |why| ConfigError::BadMemSize { input: input.to_string(), why };
        let mib = parse_size(input, MEM_UNITS, "unknown unit (use M or G)").map_err(bad)?;
        if mib < MIN_MEM_MIB {
            return Err(bad("it is below the 16 MiB a guest needs to start"));
        }
        if mib > MAX_MEM_MIB {
            return Err(bad("it is above the 1 TiB limit"));
        }
        Ok(MemSize { mib })
    }
}

/// The units of a [`MemSize`], worth so many MiB.
const MEM_UNITS: &[SizeUnit] = &[
    (&["", "m", "mb", "mib"], Ok(1)),
    (&["g", "gb", "gib"], Ok(1024)),
    (&["t", "tb", "tib"], Ok(1024 * 1024)),
    (&["k", "kb", "kib", "b"], Err("give it in M or G (QEMU counts whole MiB)")),
];

/// A unit a size may be written in: its spellings (lower case; `""` for a
/// bare number), and what one of it is worth in the caller's unit, or why
/// the caller refuses it.
pub(crate) type SizeUnit = (&'static [&'static str], Result<u64, &'static str>);

/// Reads a size a user typed: a whole number, then one of `units` in any
/// case. Returns the number times the unit's worth, or why the text is
/// refused (`unknown_unit` when the suffix is none of `units`). Shared by
/// [`MemSize`] and [`DiskSize`](crate::disk::DiskSize), which check the
/// range themselves.
pub(crate) fn parse_size(
    input: &str,
    units: &[SizeUnit],
    unknown_unit: &'static str,
) -> Result<u64, &'static str> {
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err("it does not start with a number");
    }
    let lower = suffix.to_ascii_lowercase();
    let worth = match units.iter().find(|(names, _)| names.contains(&lower.as_str())) {
        Some((_, worth)) => (*worth)?,
        None if suffix.starts_with('.') => return Err("use a whole number, e.g. 1536M for 1.5G"),
        None => return Err(unknown_unit),
    };
    let number: u64 = digits.parse().map_err(|_| "the number is too large")?;
    number.checked_mul(worth).ok_or("the number is too large")
}

/// The most NUMA nodes `--numa` makes (the kernel's `mm::numa::MAX_NODES`).
pub const MAX_NUMA_NODES: u32 = 8;
/// The least RAM a NUMA node gets: node 0 holds the kernel, its heap and
/// the page descriptors.
pub const MIN_NUMA_NODE_MIB: u64 = 64;

/// Parses a `--numa` node count: a whole number from 1 to [`MAX_NUMA_NODES`]
/// (whether it fits the machine is [`check_numa`]'s question).
pub fn parse_numa(input: &str) -> Result<u32, ConfigError> {
    match input.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_NUMA_NODES).contains(&n) => Ok(n),
        _ => Err(ConfigError::BadNuma {
            input: input.to_string(),
            why: format!("expected a number of nodes from 1 to {MAX_NUMA_NODES}"),
        }),
    }
}

/// Checks that `nodes` NUMA nodes split `smp` CPUs and `mem` evenly: the
/// same number of CPUs (at least one) and the same whole number of MiB (at
/// least [`MIN_NUMA_NODE_MIB`]) on each.
pub fn check_numa(nodes: u32, smp: u32, mem: MemSize) -> Result<(), ConfigError> {
    let bad = |why: String| ConfigError::BadNuma { input: nodes.to_string(), why };
    if !(1..=MAX_NUMA_NODES).contains(&nodes) {
        return Err(bad(format!("expected a number of nodes from 1 to {MAX_NUMA_NODES}")));
    }
    if smp < nodes || !smp.is_multiple_of(nodes) {
        return Err(bad(format!(
            "{smp} CPUs do not split evenly into {nodes} nodes of at least one CPU (e.g. --smp {})",
            nodes * smp.div_ceil(nodes).max(1)
        )));
    }
    if !mem.mib().is_multiple_of(nodes as u64) {
        return Err(bad(format!("{mem} of RAM does not split into {nodes} nodes of whole MiB")));
    }
    if mem.mib() / (nodes as u64) < MIN_NUMA_NODE_MIB {
        return Err(bad(format!(
            "{mem} of RAM gives each of {nodes} nodes less than {MIN_NUMA_NODE_MIB} MiB (give --mem {}M or more)",
            MIN_NUMA_NODE_MIB * nodes as u64
        )));
    }
    Ok(())
}

/// Parses a `--smp` CPU count: a whole number from 1 to [`MAX_SMP`].
pub fn parse_smp(input: &str) -> Result<u32, ConfigError> {
    match input.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_SMP).contains(&n) => Ok(n),
        _ => Err(ConfigError::BadCpuCount(input.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_accel_firmware_parse_and_print() {
        assert_eq!("x86_64".parse(), Ok(Arch::X86_64));
        assert_eq!("aarch64".parse(), Ok(Arch::Aarch64));
        assert_eq!("arm64".parse::<Arch>(), Err(ConfigError::UnknownArch("arm64".into())));
        assert_eq!("tcg".parse(), Ok(Accel::Tcg));
        assert_eq!("kvm".parse(), Ok(Accel::Kvm));
        assert_eq!("tcg-icount".parse(), Ok(Accel::TcgIcount));
        assert!("hvf".parse::<Accel>().is_err());
        assert_eq!("bios".parse(), Ok(Firmware::Bios));
        assert_eq!("uefi".parse(), Ok(Firmware::Uefi));
        assert!("UEFI".parse::<Firmware>().is_err());
        for a in Arch::ALL {
            assert_eq!(a.name().parse(), Ok(a));
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!(Arch::X86_64.qemu_program(), "qemu-system-x86_64");
        assert_eq!(Arch::Aarch64.rust_target(), "aarch64-unknown-none");
    }

    #[test]
    fn mem_sizes_in_the_forms_users_type() {
        for (mib, spellings) in [
            (512, &["512M", "512m", "512MiB", "512MB"][..]),
            (2048, &["2G", "2g", "2GiB", "2048"]),
            (256, &[" 256 "]),
            (1024 * 1024, &["1T"]),
        ] {
            for s in spellings {
                assert_eq!(s.parse::<MemSize>().map(MemSize::mib), Ok(mib), "{s:?}");
            }
        }
        assert_eq!(MemSize::default().to_string(), "512M");
        assert_eq!("2G".parse::<MemSize>().unwrap().to_string(), "2048M");
    }

    /// Why `s` is refused as a memory size; the error must name `s`.
    fn mem_refusal(s: &str) -> &'static str {
        match s.parse::<MemSize>() {
            Err(ConfigError::BadMemSize { input, why }) => {
                assert_eq!(input, s);
                why
            }
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    #[test]
    fn mem_sizes_that_make_no_sense_are_refused_with_a_reason() {
        for (why, inputs) in [
            ("unknown unit (use M or G)", &["512X", "512 M"][..]),
            ("give it in M or G (QEMU counts whole MiB)", &["4096K"]),
            ("it is below the 16 MiB a guest needs to start", &["0", "8M"]),
            ("it is above the 1 TiB limit", &["2048G"]),
        ] {
            for s in inputs {
                assert_eq!(mem_refusal(s), why, "{s:?}");
            }
        }
        let msg = "2X".parse::<MemSize>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "bad memory size `2X`: unknown unit (use M or G) (examples: 512M, 2G, 2048 meaning MiB)"
        );
    }

    /// Text that is no size at all is refused for the same reason as a
    /// memory size and as a disk size: both read it with [`parse_size`].
    #[test]
    fn malformed_sizes_are_refused_alike_for_memory_and_disks() {
        let disk_refusal = |s: &str| match s.parse::<crate::disk::DiskSize>() {
            Err(ConfigError::BadDiskSize { input, why }) => {
                assert_eq!(input, s);
                why
            }
            other => panic!("{s:?} gave {other:?}"),
        };
        for (why, inputs) in [
            ("it does not start with a number", &["", "G", "-1G", "lots", "big"][..]),
            ("use a whole number, e.g. 1536M for 1.5G", &["1.5G"]),
            (
                "the number is too large",
                &["99999999999999999999999", "99999999999999999T", "99999999999999999999G"],
            ),
        ] {
            for s in inputs {
                assert_eq!(mem_refusal(s), why, "memory size {s:?}");
                assert_eq!(disk_refusal(s), why, "disk size {s:?}");
            }
        }
    }

    #[test]
    fn numa_splits_cpus_and_ram_evenly_or_is_refused() {
        let mem = |s: &str| s.parse::<MemSize>().unwrap();
        assert_eq!(parse_numa("2"), Ok(2));
        for bad in ["0", "9", "two", ""] {
            assert!(matches!(parse_numa(bad), Err(ConfigError::BadNuma { .. })), "{bad:?}");
        }
        assert_eq!(check_numa(2, 4, mem("512M")), Ok(()));
        assert_eq!(check_numa(1, 1, mem("512M")), Ok(()));
        let why = |r: Result<(), ConfigError>| r.unwrap_err().to_string();
        assert_eq!(
            why(check_numa(2, 1, mem("512M"))),
            "--numa 2: 1 CPUs do not split evenly into 2 nodes of at least one CPU (e.g. --smp 2)"
        );
        assert_eq!(
            why(check_numa(3, 4, mem("768M"))),
            "--numa 3: 4 CPUs do not split evenly into 3 nodes of at least one CPU (e.g. --smp 6)"
        );
        assert_eq!(
            why(check_numa(3, 3, mem("512M"))),
            "--numa 3: 512M of RAM does not split into 3 nodes of whole MiB"
        );
        assert_eq!(
            why(check_numa(4, 4, mem("128M"))),
            "--numa 4: 128M of RAM gives each of 4 nodes less than 64 MiB (give --mem 256M or more)"
        );
    }

    #[test]
    fn smp_counts() {
        assert_eq!(parse_smp("1"), Ok(1));
        assert_eq!(parse_smp("4"), Ok(4));
        assert_eq!(parse_smp("255"), Ok(255));
        for bad in ["0", "256", "-1", "two", "", "1.5"] {
            assert_eq!(parse_smp(bad), Err(ConfigError::BadCpuCount(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn combination_errors_explain_themselves() {
        let e = ConfigError::FirmwareUnsupported { arch: Arch::Aarch64, firmware: Firmware::Uefi };
        assert!(e.to_string().starts_with("--boot uefi is not supported on aarch64"));
    }
}
