//! The x86_64 boot path: from the `bootloader` crate's entry to `kernel_main`.
//!
//! The bootloader (BIOS or UEFI, images made by `cargo xtask`) loads this ELF,
//! maps it, maps all physical memory at a dynamic offset, and calls
//! [`boot_x86_64_main`] with its own boot information. This file turns that
//! into the kernel's [`BootInfo`]: usable RAM (minus the first MiB, kept for
//! the application-processor trampoline of issue 4), the direct-map offset,
//! the ACPI RSDP, and the kernel arguments, which arrive through QEMU's
//! `fw_cfg` (the bootloader has no command line).
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

use arch_x86_64 as arch;
use arch_x86_64::fw_cfg::{self, FwCfgError};
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::info::MemoryRegionKind;
use kernel::boot::{BootInfo, FirmwareTables};
use kernel::println;
use mm::memmap::{MemoryMap, PhysRange};
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

/// Below 1 MiB: real-mode structures and, later, the AP start-up trampoline.
const LOW_MEMORY_END: u64 = 0x10_0000;

fn read_cmdline() -> &'static str {
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
    match core::str::from_utf8(&buf[..*len]) {
        Ok(s) => s.trim_end_matches('\0'),
        Err(_) => {
            println!("boot: kernel arguments are not UTF-8; ignoring them");
            ""
        }
    }
}

fn boot_x86_64_main(info: &'static mut bootloader_api::BootInfo) -> ! {
    arch::console::init();
    let Some(phys_offset) = info.physical_memory_offset.into_option() else {
        println!("boot: the bootloader did not map physical memory");
        arch::exit(arch::ExitStatus::Failure);
    };
    arch::init(phys_offset);
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
    if memory.remove(PhysRange::new(0, LOW_MEMORY_END)).is_err() {
        println!("boot: too many memory ranges while reserving low memory");
    }

    kernel::kernel_main(BootInfo {
        boot_method: if uefi { "uefi" } else { "bios" },
        memory,
        direct_map_offset: phys_offset,
        cmdline: read_cmdline(),
        firmware: FirmwareTables::Acpi { rsdp: info.rsdp_addr.into_option().map(PhysAddr::new) },
        kernel_image: PhysRange::new(info.kernel_addr, info.kernel_len),
    })
}
