//! The AArch64 boot path for QEMU `virt`: from the device tree to `kernel_main`.
//!
//! `entry.S` runs first (see its header); it calls [`boot_aarch64_main`] in
//! the upper half with the device tree's physical address. This file reads
//! the device tree with the `fdt` crate: the console UART, the RAM ranges,
//! the command line (`/chosen/bootargs`, filled by QEMU's `-append`) and the
//! reservations, and hands the kernel one [`BootInfo`].
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

use arch_aarch64 as arch;
use kernel::boot::{BootInfo, FirmwareTables};
use kernel::println;
use mm::memmap::{MemoryMap, PhysRange};
use mm::PhysAddr;

core::arch::global_asm!(include_str!("entry.S"));

/// `virt`'s PL011, used when the device tree names none.
const VIRT_PL011: u64 = 0x0900_0000;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

fn phys_of(virt: u64) -> u64 {
    virt - arch::DIRECT_MAP_OFFSET
}

/// The kernel image in physical memory, `.bss`, boot tables and stack included.
fn kernel_image() -> PhysRange {
    let start = phys_of(core::ptr::addr_of!(__image_start) as u64);
    let end = phys_of(core::ptr::addr_of!(__image_end) as u64);
    PhysRange::new(start, end - start)
}

fn find_uart(fdt: &fdt::Fdt<'_>) -> Option<u64> {
    let node = fdt.chosen().stdout().or_else(|| fdt.find_compatible(&["arm,pl011"]))?;
    let region = node.reg()?.next()?;
    Some(region.starting_address as u64)
}

/// Finds the GICv2 distributor and CPU interface in the device tree and
/// starts the interrupt controller; a missing or GICv3 controller stops the
/// boot with a message (QEMU's `virt` gives GICv2 unless asked otherwise).
fn init_gic(fdt: &fdt::Fdt<'_>) {
    if let Some(gic) = fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]) {
        let mut regs = gic.reg().into_iter().flatten();
        if let (Some(d), Some(c)) = (regs.next(), regs.next()) {
            arch::irq::init_boot_cpu(d.starting_address as u64, c.starting_address as u64);
            return;
        }
        fail(format_args!("the GICv2 node has no distributor/CPU-interface registers"));
    }
    if fdt.find_compatible(&["arm,gic-v3"]).is_some() {
        fail(format_args!("GICv3 is not supported yet; run QEMU's virt machine with its default GICv2"));
    }
    fail(format_args!("the device tree names no interrupt controller"));
}

fn fail(msg: core::fmt::Arguments<'_>) -> ! {
    println!("boot: {msg}");
    arch::exit(arch::ExitStatus::Failure)
}

#[no_mangle]
extern "C" fn boot_aarch64_main(dtb_pa: u64) -> ! {
    let dtb = (dtb_pa + arch::DIRECT_MAP_OFFSET) as *const u8;
    // SAFETY: QEMU put a device tree at `dtb_pa`, in RAM, which the boot
    // tables map at DIRECT_MAP_OFFSET + pa; `from_ptr` checks the header
    // before reading further. The tree stays in place: it is removed from
    // usable memory below and never written.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb) };
    let fdt = match fdt {
        Ok(fdt) => fdt,
        Err(e) => {
            // SAFETY: virt's PL011 is at this address, inside the Device
            // block the boot tables map.
            unsafe { arch::console::init(VIRT_PL011 + arch::DIRECT_MAP_OFFSET) };
            fail(format_args!("no valid device tree at {dtb_pa:#x} ({e:?}); boot QEMU with -kernel"))
        }
    };
    let uart = find_uart(&fdt).unwrap_or(VIRT_PL011);
    // SAFETY: the device tree says a PL011 is at `uart`; all of the low 1 GiB
    // is mapped as Device memory by the boot tables.
    unsafe { arch::console::init(uart + arch::DIRECT_MAP_OFFSET) };
    arch::mmu::disable_lower_half();
    init_gic(&fdt);

    let mut memory = MemoryMap::new();
    for region in fdt.memory().regions() {
        let range = PhysRange::new(region.starting_address as u64, region.size.unwrap_or(0) as u64);
        if memory.add(range).is_err() {
            println!("boot: too many memory ranges; ignoring {range:?}");
        }
    }
    let dt_range = PhysRange::new(dtb_pa, fdt.total_size() as u64);
    let mut in_use = [kernel_image(), dt_range]
        .into_iter()
        .chain(fdt.memory_reservations().map(|r| PhysRange::new(r.address() as u64, r.size() as u64)));
    let reserved_nodes = fdt
        .find_node("/reserved-memory")
        .into_iter()
        .flat_map(|n| n.children())
        .flat_map(|child| child.reg().into_iter().flatten())
        .map(|r| PhysRange::new(r.starting_address as u64, r.size.unwrap_or(0) as u64));
    for range in in_use.by_ref().chain(reserved_nodes) {
        if memory.remove(range).is_err() {
            fail(format_args!("too many memory ranges while reserving {range:?}"));
        }
    }

    let cmdline = fdt.chosen().bootargs().unwrap_or("");
    kernel::kernel_main(BootInfo {
        boot_method: "linux-image",
        memory,
        direct_map_offset: arch::DIRECT_MAP_OFFSET,
        cmdline,
        firmware: FirmwareTables::DeviceTree { addr: PhysAddr::new(dtb_pa), size: dt_range.size() },
        kernel_image: kernel_image(),
    })
}
