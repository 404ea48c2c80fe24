//! The x86_64 boot path: from the `bootloader` crate's entry to `kernel_main`.
//!
//! The bootloader (BIOS or UEFI, images made by `cargo xtask`) loads this ELF,
//! maps it, maps all physical memory at a dynamic offset, and calls
//! [`boot_x86_64_main`] with its own boot information. This file turns that
//! into the kernel's [`BootInfo`]: usable RAM (minus the first MiB), the
//! direct-map offset, the ACPI RSDP, the CPUs (from the ACPI MADT), the
//! NUMA nodes (from the ACPI SRAT, read by `arch::srat`), and the
//! kernel arguments, which arrive through QEMU's `fw_cfg` (the bootloader
//! has no command line). The MADT's IO-APICs and interrupt source overrides
//! go to [`arch::ioapic`], for device interrupts.
//!
//! The initial RAM disk is the bootloader's ramdisk (xtask puts the
//! initramfs in the image): the bootloader loads it into physically
//! contiguous frames and maps them at a virtual address it reports;
//! [`find_initrd`] turns that back into the physical range `BootInfo`
//! names, which leaves the usable map (the bootloader already reports it
//! as its own, but the kernel does not rely on that).
//!
//! The first MiB stays out of the kernel's memory map: a few usable pages
//! there become the trampoline that starts the other CPUs
//! ([`arch::smp`]; a start-up IPI can only point below 1 MiB), the rest is
//! left alone (real-mode firmware structures).
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

use acpi::madt::{Madt, MadtEntry};
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use arch_common::{Arch, ExitStatus};
use arch_x86_64 as arch;
use arch_x86_64::fw_cfg::{self, FwCfgError};
use arch_x86_64::X86_64;
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::info::MemoryRegionKind;
use core::ptr::NonNull;
use kernel::bootinfo::{BootInfo, CpuList, FirmwareTables};
use kernel::println;
use mm::memmap::{MemoryMap, PhysRange};
use mm::numa::NumaMap;
use mm::PhysAddr;

/// Where the kernel's half of every address space starts: PML4 entry 256.
/// Everything the bootloader maps for us (the kernel, its stack, the boot
/// information, the direct map of physical memory) goes above it, so the
/// lower half (entries 0..256) belongs to address spaces alone.
const KERNEL_HALF_START: u64 = 0xffff_8000_0000_0000;

/// What we ask of the bootloader: all physical memory mapped (at an offset
/// it chooses in the upper half), everything else in the upper half too,
/// and a 256 KiB boot stack.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.dynamic_range_start = Some(KERNEL_HALF_START);
    config.kernel_stack_size = 256 * 1024;
    config
};

bootloader_api::entry_point!(boot_x86_64_main, config = &BOOTLOADER_CONFIG);

/// The fw_cfg file xtask puts the kernel arguments in.
const CMDLINE_FILE: &str = "opt/kernel/cmdline";
/// The longest command line accepted.
const CMDLINE_MAX: usize = 4096;

static CMDLINE: spin::Once<([u8; CMDLINE_MAX], usize)> = spin::Once::new();

/// Below 1 MiB: real-mode structures and the AP start-up trampoline.
const LOW_MEMORY_END: u64 = 0x10_0000;
/// The trampoline never goes in page 0 (the real-mode interrupt table).
const TRAMPOLINE_MIN: u64 = 0x1000;

/// The first [`arch::smp::TRAMPOLINE_AREA_SIZE`] bytes of usable RAM in
/// `[0x1000, 1 MiB)`, if the firmware left that much.
fn find_trampoline_area(usable: &MemoryMap) -> Option<PhysAddr> {
    usable.ranges().iter().find_map(|r| {
        let start = r.start.as_u64().max(TRAMPOLINE_MIN);
        let end = r.end.as_u64().min(LOW_MEMORY_END);
        (start + arch::smp::TRAMPOLINE_AREA_SIZE <= end).then_some(PhysAddr::new(start))
    })
}

/// Reaches ACPI tables through the direct map: all physical memory is
/// mapped for good, so there is nothing to map or unmap.
#[derive(Clone, Copy)]
struct DirectMap {
    offset: u64,
}

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va = (self.offset + pa as u64) as *mut T;
        // SAFETY: (1) `va` is not null: the direct map lies in the upper
        // half. (2) The direct map covers every physical address of the
        // firmware's memory map, where its tables are, so `size` bytes at
        // `va` are mapped, and stay mapped.
        unsafe { PhysicalMapping::new(pa, NonNull::new_unchecked(va), size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// MADT entry types read here, and their sizes (ACPI 6.5, 5.2.12).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_LOCAL_APIC_LEN: u8 = 8;
const MADT_LOCAL_X2APIC: u8 = 9;
const MADT_LOCAL_X2APIC_LEN: u8 = 16;
const MADT_IO_APIC: u8 = 1;
const MADT_IO_APIC_LEN: u8 = 12;
const MADT_SOURCE_OVERRIDE: u8 = 2;
const MADT_SOURCE_OVERRIDE_LEN: u8 = 10;
/// Local APIC flags: the CPU is usable now.
const MADT_CPU_ENABLED: u32 = 1 << 0;
/// The MADT's fixed part (the table header, the APIC address, the flags),
/// after which the entries start.
const MADT_HEADER_LEN: usize = core::mem::size_of::<Madt>();

/// Checks that the MADT's entries tile the table (each at least a header
/// long, none past the end, the CPU entries long enough), which the `acpi`
/// crate's entry iterator assumes. Returns what is wrong.
fn check_madt(madt: &PhysicalMapping<DirectMap, Madt>) -> Result<(), &'static str> {
    let len = madt.get().header.length as usize;
    if len < MADT_HEADER_LEN || len > madt.region_length() {
        return Err("its length is wrong");
    }
    // SAFETY: the mapping covers the whole table (`region_length`, checked
    // above), which the `acpi` crate mapped to verify its checksum.
    let bytes = unsafe { core::slice::from_raw_parts(madt.virtual_start().as_ptr() as *const u8, len) };
    let mut rest = &bytes[MADT_HEADER_LEN..];
    while !rest.is_empty() {
        let [kind, entry_len, ..] = *rest else { return Err("an entry is cut short") };
        let min = match kind {
            MADT_LOCAL_APIC => MADT_LOCAL_APIC_LEN,
            MADT_LOCAL_X2APIC => MADT_LOCAL_X2APIC_LEN,
            MADT_IO_APIC => MADT_IO_APIC_LEN,
            MADT_SOURCE_OVERRIDE => MADT_SOURCE_OVERRIDE_LEN,
            _ => 2,
        };
        if entry_len < min || entry_len as usize > rest.len() {
            return Err("an entry has a bad length");
        }
        rest = &rest[entry_len as usize..];
    }
    Ok(())
}

/// Hands the MADT's IO-APICs and ISA interrupt source overrides to
/// [`arch::ioapic`] (device interrupts need them; without any, devices are
/// polled).
fn record_ioapics(madt: core::pin::Pin<&Madt>) {
    let mut ioapics =
        [arch::ioapic::IoApicInfo { id: 0, address: 0, gsi_base: 0 }; arch::ioapic::MAX_IOAPICS];
    let mut overrides =
        [arch::ioapic::Override { isa_irq: 0, gsi: 0, flags: 0 }; arch::ioapic::MAX_OVERRIDES];
    let (mut nr_ioapics, mut nr_overrides, mut nr_dropped) = (0, 0, 0);
    for entry in madt.entries() {
        match entry {
            MadtEntry::IoApic(e) if nr_ioapics < ioapics.len() => {
                ioapics[nr_ioapics] = arch::ioapic::IoApicInfo {
                    id: e.io_apic_id,
                    address: e.io_apic_address,
                    gsi_base: e.global_system_interrupt_base,
                };
                nr_ioapics += 1;
            }
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 && nr_overrides < overrides.len() => {
                overrides[nr_overrides] =
                    arch::ioapic::Override { isa_irq: e.irq, gsi: e.global_system_interrupt, flags: e.flags };
                nr_overrides += 1;
            }
            MadtEntry::IoApic(_) | MadtEntry::InterruptSourceOverride(_) => nr_dropped += 1,
            _ => {}
        }
    }
    if nr_ioapics == 0 {
        println!("boot: the ACPI MADT lists no IO-APIC; devices will be polled");
    }
    if nr_dropped > 0 {
        println!(
            "boot: {nr_dropped} IO-APIC or interrupt-override entries beyond the kernel's limits ignored"
        );
    }
    arch::ioapic::init(&ioapics[..nr_ioapics], &overrides[..nr_overrides]);
}

/// The CPUs to start: the boot CPU, then every CPU the ACPI MADT lists as
/// enabled, and the MADT's IO-APICs ([`record_ioapics`]). When the tables
/// cannot be read, says why and returns the boot CPU alone.
fn discover_cpus(rsdp: Option<u64>, phys_offset: u64) -> CpuList {
    let mut cpus = CpuList::boot_only(arch::irq::apic_id() as u64);
    let Some(rsdp) = rsdp else {
        println!("boot: no ACPI RSDP; running on the boot CPU only");
        return cpus;
    };
    // SAFETY: the bootloader found an RSDP there (the crate checks its
    // signature and checksum before trusting it); the direct map covers it.
    let tables = match unsafe { AcpiTables::from_rsdp(DirectMap { offset: phys_offset }, rsdp as usize) } {
        Ok(tables) => tables,
        Err(e) => {
            println!("boot: cannot read the ACPI tables ({e:?}); running on the boot CPU only");
            return cpus;
        }
    };
    let madt = match tables.find_table::<Madt>() {
        Ok(madt) => madt,
        Err(e) => {
            println!("boot: no usable ACPI MADT ({e:?}); running on the boot CPU only");
            return cpus;
        }
    };
    if let Err(why) = check_madt(&madt) {
        println!("boot: the ACPI MADT is malformed ({why}); running on the boot CPU only");
        return cpus;
    }
    record_ioapics(madt.get());
    for entry in madt.get().entries() {
        let (id, flags) = match entry {
            MadtEntry::LocalApic(e) => (e.apic_id as u32, e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        if flags & MADT_CPU_ENABLED == 0 {
            continue;
        }
        if id >= 0xff {
            println!("boot: MADT CPU with APIC id {id:#x} is beyond xAPIC's reach; skipping it");
            continue;
        }
        cpus.push(id as u64);
    }
    cpus
}

/// The SRAT as the `acpi` crate finds it: its header only; the entries
/// are read from the bytes by `arch::srat`.
#[repr(transparent)]
struct Srat {
    header: SdtHeader,
}

// SAFETY: `Srat` is exactly an SDT header, as every ACPI table starts, and
// claims the SRAT's signature; the crate maps the whole table (its length
// field) and checks the checksum before handing it out.
unsafe impl AcpiTable for Srat {
    const SIGNATURE: Signature = Signature::SRAT;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// The NUMA nodes the ACPI SRAT describes; with no SRAT, or a bad one, an
/// empty map (one node), saying why.
fn discover_numa(rsdp: Option<u64>, phys_offset: u64) -> NumaMap {
    let Some(rsdp) = rsdp else { return NumaMap::new() };
    // SAFETY: as in `discover_cpus`: a checked RSDP, reached through the
    // direct map.
    let Ok(tables) = (unsafe { AcpiTables::from_rsdp(DirectMap { offset: phys_offset }, rsdp as usize) })
    else {
        return NumaMap::new();
    };
    let srat = match tables.find_table::<Srat>() {
        Ok(srat) => srat,
        Err(acpi::AcpiError::TableMissing(_)) => return NumaMap::new(),
        Err(e) => {
            println!("boot: the ACPI SRAT is unusable ({e:?}); one NUMA node holds everything");
            return NumaMap::new();
        }
    };
    let len = (srat.get().header.length as usize).min(srat.region_length());
    // SAFETY: the mapping covers `region_length` bytes of the table, which
    // the crate mapped to verify its checksum; `len` is no more.
    let bytes = unsafe { core::slice::from_raw_parts(srat.virtual_start().as_ptr() as *const u8, len) };
    match arch::srat::read_srat(bytes) {
        Ok(map) => map,
        Err(e) => {
            println!("boot: {e}; one NUMA node holds everything");
            NumaMap::new()
        }
    }
}

/// The physical range of the bootloader's ramdisk, if it loaded one: its
/// virtual start translated through the live page tables (the frames are
/// contiguous: the bootloader maps `[phys, phys + len)` page by page).
fn find_initrd(info: &bootloader_api::BootInfo, phys_offset: u64) -> Option<PhysRange> {
    use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};
    let va = info.ramdisk_addr.into_option()?;
    if info.ramdisk_len == 0 {
        return None;
    }
    let (root, _) = x86_64::registers::control::Cr3::read();
    let pml4 = (root.start_address().as_u64() + phys_offset) as *mut PageTable;
    // SAFETY: CR3 holds the live PML4, a page of RAM mapped at
    // `phys_offset`; only the boot CPU runs and nothing else touches the
    // tables while this reference lives (it only reads them).
    let tables = unsafe { OffsetPageTable::new(&mut *pml4, x86_64::VirtAddr::new(phys_offset)) };
    match tables.translate_addr(x86_64::VirtAddr::new(va)) {
        Some(pa) => Some(PhysRange::new(pa.as_u64(), info.ramdisk_len)),
        None => {
            println!("boot: the bootloader's ramdisk at {va:#x} is not mapped; booting without an initrd");
            None
        }
    }
}

/// The whole pages `range` touches.
fn page_cover(range: PhysRange) -> PhysRange {
    let start = range.start.as_u64() & !0xfff;
    let end = (range.end.as_u64() + 0xfff) & !0xfff;
    PhysRange::new(start, end - start)
}

fn read_cmdline() -> &'static [u8] {
    let (buf, len) = CMDLINE.call_once(|| {
        let mut buf = [0u8; CMDLINE_MAX];
        let len = match fw_cfg::read_file(CMDLINE_FILE, &mut buf) {
            Ok(len) => len,
            Err(FwCfgError::NotFound) => 0,
            Err(FwCfgError::NoDevice) => {
                println!("boot: no fw_cfg device; booting without kernel arguments");
                0
            }
            Err(FwCfgError::TooLarge { size }) => {
                println!("boot: kernel arguments are {size} bytes, more than {CMDLINE_MAX}; ignoring them");
                0
            }
        };
        (buf, len)
    });
    // The kernel checks the bytes (trailing NULs, UTF-8), as on AArch64.
    &buf[..*len]
}

fn boot_x86_64_main(info: &'static mut bootloader_api::BootInfo) -> ! {
    arch::console::init();
    let Some(phys_offset) = info.physical_memory_offset.into_option() else {
        println!("boot: the bootloader did not map physical memory");
        X86_64::exit(ExitStatus::Failure);
    };
    arch::init(phys_offset);
    arch::cpu::set_index(0);
    arch::time::init();
    arch::irq::init_boot_cpu(phys_offset);

    let mut memory = MemoryMap::new();
    let mut uefi = false;
    for region in info.memory_regions.iter() {
        match region.kind {
            MemoryRegionKind::Usable => {
                let range = PhysRange::new(region.start, region.end - region.start);
                if memory.add(range).is_err() {
                    println!("boot: too many memory ranges; ignoring {range:?}");
                }
            }
            MemoryRegionKind::UnknownUefi(_) => uefi = true,
            _ => {}
        }
    }
    let initrd = find_initrd(info, phys_offset);
    if let Some(range) = initrd {
        if memory.remove(page_cover(range)).is_err() {
            println!("boot: too many memory ranges while reserving the initrd {range:?}");
            X86_64::exit(ExitStatus::Failure);
        }
    }
    let trampoline = find_trampoline_area(&memory);
    if memory.remove(PhysRange::new(0, LOW_MEMORY_END)).is_err() {
        println!("boot: too many memory ranges while reserving low memory");
    }
    let rsdp = info.rsdp_addr.into_option();
    let cpus = match trampoline {
        Some(pa) => {
            // SAFETY: the bootloader reported the area usable RAM, it
            // allocates nothing below 1 MiB itself, and the kernel's map
            // has just lost the whole first MiB: nothing else will use it.
            // The direct map covers all RAM.
            match unsafe { arch::smp::set_trampoline_area(pa) } {
                Ok(()) => discover_cpus(rsdp, phys_offset),
                Err(e) => {
                    println!("boot: cannot use {pa} for the CPU start-up trampoline ({e:?}); one CPU only");
                    CpuList::boot_only(arch::irq::apic_id() as u64)
                }
            }
        }
        None => {
            println!("boot: no free RAM below 1 MiB for the CPU start-up trampoline; one CPU only");
            CpuList::boot_only(arch::irq::apic_id() as u64)
        }
    };

    kernel::kernel_main(BootInfo {
        boot_method: if uefi { "uefi" } else { "bios" },
        memory,
        direct_map_offset: phys_offset,
        cmdline: read_cmdline(),
        firmware: FirmwareTables::Acpi { rsdp: rsdp.map(PhysAddr::new) },
        kernel_image: PhysRange::new(info.kernel_addr, info.kernel_len),
        cpus,
        numa: discover_numa(rsdp, phys_offset),
        initrd,
    })
}
