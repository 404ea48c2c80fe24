//! What every boot path hands the kernel: [`BootInfo`], built by
//! `boot/x86_64` from the `bootloader` crate's boot information and by
//! `boot/aarch64` from its own boot tables and the device tree.

use mm::memmap::{MemoryMap, PhysRange};
use mm::numa::NumaMap;
use mm::PhysAddr;

/// Where the firmware's description of the machine is.
#[derive(Debug, Clone, Copy)]
pub enum FirmwareTables {
    /// x86_64: ACPI, from the RSDP if the bootloader found one.
    Acpi { rsdp: Option<PhysAddr> },
    /// AArch64: a flattened device tree.
    DeviceTree { addr: PhysAddr, size: u64 },
}

/// The most CPUs a boot path reports (the scheduler's limit).
pub const MAX_CPUS: usize = 16;

/// The CPUs the firmware describes, by their hardware ids (x86_64: local
/// APIC ids from the ACPI MADT; AArch64: MPIDR affinity from the device
/// tree). Index 0 is always the boot CPU.
#[derive(Debug, Clone, Copy)]
pub struct CpuList {
    ids: [u64; MAX_CPUS],
    len: usize,
    /// CPUs the firmware listed beyond [`MAX_CPUS`] (not used).
    pub nr_ignored: usize,
}

impl CpuList {
    /// A list holding only the boot CPU.
    pub const fn boot_only(boot_id: u64) -> CpuList {
        let mut ids = [0; MAX_CPUS];
        ids[0] = boot_id;
        CpuList { ids, len: 1, nr_ignored: 0 }
    }
    /// Adds a CPU (not the boot CPU); counts it as ignored when full.
    pub fn push(&mut self, id: u64) {
        if self.ids[..self.len].contains(&id) {
            return;
        }
        if self.len == MAX_CPUS {
            self.nr_ignored += 1;
        } else {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }
    /// Hardware ids, boot CPU first.
    pub fn ids(&self) -> &[u64] {
        &self.ids[..self.len]
    }
}

/// The one description of the machine both boot paths produce.
pub struct BootInfo {
    /// How the kernel was loaded: `bios`, `uefi` or `linux-image`.
    pub boot_method: &'static str,
    /// Usable RAM, with the kernel image, boot data and firmware
    /// reservations already removed.
    pub memory: MemoryMap,
    /// All RAM is mapped at `direct_map_offset + pa`.
    pub direct_map_offset: u64,
    /// The kernel arguments, the bytes as the firmware gave them (maybe
    /// NUL-terminated, maybe not UTF-8): the kernel checks them, the same
    /// way on both arches (`kargs::Args::parse_bytes`).
    pub cmdline: &'static [u8],
    pub firmware: FirmwareTables,
    /// Where the kernel image lies in physical memory.
    pub kernel_image: PhysRange,
    /// The CPUs to bring up.
    pub cpus: CpuList,
    /// The NUMA nodes: each node's memory ranges and CPUs (by the hardware
    /// ids of [`BootInfo::cpus`]), from the ACPI SRAT (x86_64) or the
    /// device tree's `numa-node-id`s (AArch64). Empty when the firmware
    /// describes none or the boot path refused what it said: one node.
    pub numa: NumaMap,
    /// The initial RAM disk (a cpio `newc` archive: the root of the files
    /// user processes see), if the boot path was given one; its memory is
    /// already removed from [`BootInfo::memory`].
    pub initrd: Option<PhysRange>,
}

/// The initial RAM disk's bytes, through the direct map; set once by
/// `kernel_main` ([`set_initrd`]).
static INITRD: spin::Once<&'static [u8]> = spin::Once::new();

/// Records the initial RAM disk of `info` (called once, by `kernel_main`).
pub fn set_initrd(info: &BootInfo) {
    if let Some(range) = info.initrd {
        let start = (info.direct_map_offset + range.start.as_u64()) as *const u8;
        // SAFETY: the boot path removed the range from usable memory, so
        // nothing allocates or writes it, and all RAM is mapped at
        // `direct_map_offset + pa`; the bytes live as long as the kernel.
        let bytes = unsafe { core::slice::from_raw_parts(start, range.size() as usize) };
        INITRD.call_once(|| bytes);
    }
}

/// The initial RAM disk's bytes, if the kernel was booted with one.
pub fn initrd() -> Option<&'static [u8]> {
    INITRD.get().copied()
}
