//! The AArch64 boot path for QEMU `virt`: from the device tree to `kernel_main`.
//!
//! `entry.S` runs first (see its header); it calls [`boot_aarch64_main`] in
//! the upper half with the device tree's physical address. This file reads
//! the device tree with the `fdt` crate: the console UART, the RAM ranges
//! (through `arch::dtmem`, which refuses a bad memory node and leaves out
//! RAM the boot tables do not map as Normal), the command line (`/chosen/bootargs`, filled by QEMU's `-append`), the
//! reservations, the initial RAM disk (`/chosen/linux,initrd-start|end`,
//! filled by QEMU's `-initrd`: [`find_initrd`]), the CPUs (`/cpus`) and how to start them (`/psci`), the
//! NUMA nodes (`numa-node-id`s, through `arch::dtmem::read_numa`), the
//! PCI host bridge ([`pci`]), and hands the kernel one [`BootInfo`]. Secondary CPUs enter at
//! `secondary_entry` in `entry.S` and continue in `arch::smp`.
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

use arch_aarch64 as arch;
use arch_aarch64::Aarch64;
use arch_common::{Arch, ExitStatus};
use kernel::bootinfo::{BootInfo, CpuList, FirmwareTables};
use kernel::println;
use mm::memmap::PhysRange;
use mm::PhysAddr;

mod pci;

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

/// A string property of `/chosen`, if the node and the property exist.
fn chosen_str<'a>(fdt: &fdt::Fdt<'a>, name: &str) -> Option<&'a str> {
    fdt.find_node("/chosen")?.property(name)?.as_str()
}

/// The initial RAM disk `/chosen/linux,initrd-start` and `-end` name (each
/// one or two big-endian cells, as QEMU writes them with the root's
/// `#address-cells`), if both are there and make a range inside RAM the
/// boot tables map as Normal; otherwise says why and returns `None`.
fn find_initrd(fdt: &fdt::Fdt<'_>) -> Option<PhysRange> {
    let chosen = fdt.find_node("/chosen")?;
    let cell = |name: &str| {
        let p = chosen.property(name)?;
        matches!(p.value.len(), 4 | 8).then(|| read_cells(p.value, p.value.len() / 4)).flatten()
    };
    let (start, end) = match (cell("linux,initrd-start"), cell("linux,initrd-end")) {
        (Some(start), Some(end)) => (start, end),
        (None, None) => return None,
        _ => {
            println!("boot: /chosen has one of linux,initrd-start and -end, or a bad one; no initrd");
            return None;
        }
    };
    let normal = arch::dtmem::NORMAL_RAM;
    if end <= start || start < normal.start || end > normal.end {
        println!("boot: the initrd {start:#x}..{end:#x} is empty or outside mapped RAM; no initrd");
        return None;
    }
    Some(PhysRange::new(start, end - start))
}

fn find_uart(fdt: &fdt::Fdt<'_>) -> Option<u64> {
    // `/chosen/stdout-path` names the console ("/pl011@9000000", maybe with
    // ":options"); read it by hand, because `Fdt::chosen` panics when the
    // tree has no `/chosen`.
    let stdout = chosen_str(fdt, "stdout-path")
        .map(|path| path.split(':').next().unwrap_or(path))
        .and_then(|path| fdt.find_node(path));
    let node = stdout.or_else(|| fdt.find_compatible(&["arm,pl011"]))?;
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

/// Gives the device tree's PL031 real-time clock to `arch::time`; without
/// one the kernel has no date (`CLOCK_REALTIME` counts from 1970).
fn find_rtc(fdt: &fdt::Fdt<'_>) {
    let Some(node) = fdt.find_compatible(&["arm,pl031"]) else {
        println!("boot: the device tree has no arm,pl031 node; no real-time clock");
        return;
    };
    let Some(reg) = node.reg().and_then(|mut r| r.next()) else {
        println!("boot: the PL031 node {} has no reg; no real-time clock", node.name);
        return;
    };
    if let Err(e) = arch::time::set_rtc(reg.starting_address as u64) {
        println!("boot: the PL031 at {:#x} left out: {e:?}", reg.starting_address as u64);
    }
}

/// MPIDR_EL1's affinity fields: Aff3 (bits 39..32) and Aff2..Aff0 (23..0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The boot CPU's affinity fields (MPIDR_EL1 Aff3..Aff0), as the device
/// tree's `cpu` nodes name CPUs.
fn boot_mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {0}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    mpidr & MPIDR_AFFINITY
}

/// Reads the device tree's `/psci` node and tells `arch::smp` how to call
/// `CPU_ON`. Without a usable node, secondary CPUs cannot be started: the
/// kernel runs on the boot CPU (each start reports `NoPsci`).
fn find_psci(fdt: &fdt::Fdt<'_>) {
    let Some(node) = fdt.find_node("/psci").or_else(|| fdt.find_compatible(&["arm,psci"])) else {
        println!("boot: the device tree has no /psci node; secondary CPUs cannot be started");
        return;
    };
    let method = match node.property("method").and_then(|p| p.as_str()) {
        Some("hvc") => arch::smp::PsciMethod::Hvc,
        Some("smc") => arch::smp::PsciMethod::Smc,
        other => {
            println!(
                "boot: /psci has method {other:?}, not \"hvc\" or \"smc\"; secondary CPUs cannot be started"
            );
            return;
        }
    };
    // PSCI 0.2 and later fix the function ids; PSCI 0.1 names them.
    let v02 = node.compatible().is_some_and(|c| c.all().any(|c| c == "arm,psci-0.2" || c == "arm,psci-1.0"));
    let cpu_on = if v02 {
        arch::smp::PSCI_CPU_ON_64
    } else {
        match node.property("cpu_on").and_then(|p| p.as_usize()) {
            Some(id) => id as u32,
            None => {
                println!(
                    "boot: /psci (PSCI 0.1) has no cpu_on function id; secondary CPUs cannot be started"
                );
                return;
            }
        }
    };
    arch::smp::set_psci_method(method, cpu_on);
}

/// The big-endian number in the first `cells` 32-bit cells of `bytes`.
fn read_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    let bytes = bytes.get(..cells * 4)?;
    Some(bytes.iter().fold(0, |acc, &b| acc << 8 | b as u64))
}

/// The CPUs the device tree lists under `/cpus`, boot CPU first: each
/// `cpu@*` node with `device_type = "cpu"`, named by its `reg` (MPIDR
/// affinity, in `#address-cells` = 1 or 2 cells). CPUs started another way
/// than PSCI and malformed nodes are reported and left out. (`fdt`'s own
/// `Fdt::cpus` is not used: it panics on a missing `/cpus` or `reg`.)
fn find_cpus(fdt: &fdt::Fdt<'_>) -> CpuList {
    let boot = boot_mpidr();
    let mut cpus = CpuList::boot_only(boot);
    let Some(node) = fdt.find_node("/cpus") else {
        println!("boot: the device tree has no /cpus node; running on the boot CPU only");
        return cpus;
    };
    let cells = match node.property("#address-cells").and_then(|p| p.as_usize()) {
        Some(n @ (1 | 2)) => n,
        other => {
            println!("boot: /cpus has #address-cells {other:?}, not 1 or 2; running on the boot CPU only");
            return cpus;
        }
    };
    let mut boot_listed = false;
    for cpu in node.children().filter(|n| n.name.split('@').next() == Some("cpu")) {
        if cpu.property("device_type").and_then(|p| p.as_str()) != Some("cpu") {
            continue;
        }
        let Some(mpidr) = cpu.property("reg").and_then(|p| read_cells(p.value, cells)) else {
            println!("boot: /cpus/{} has no usable reg; left out", cpu.name);
            continue;
        };
        if mpidr & !MPIDR_AFFINITY != 0 {
            println!("boot: /cpus/{} has reg {mpidr:#x}, not an MPIDR affinity; left out", cpu.name);
            continue;
        }
        if mpidr == boot {
            boot_listed = true;
            continue;
        }
        // `enable-method` is a string list: started when it lists PSCI.
        match cpu.property("enable-method").and_then(|p| p.as_str()) {
            Some(m) if m.split('\0').any(|m| m == "psci") => cpus.push(mpidr),
            Some(m) => {
                println!(
                    "boot: /cpus/{} (MPIDR {mpidr:#x}) is started by {m:?}, not PSCI; left out",
                    cpu.name
                )
            }
            None => println!("boot: /cpus/{} (MPIDR {mpidr:#x}) has no enable-method; left out", cpu.name),
        }
    }
    if !boot_listed {
        println!("boot: the device tree does not list the boot CPU (MPIDR {boot:#x})");
    }
    cpus
}

fn fail(msg: core::fmt::Arguments<'_>) -> ! {
    println!("boot: {msg}");
    Aarch64::exit(ExitStatus::Failure)
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
    arch::cpu::set_index(0);
    arch::user::init_this_cpu();
    init_gic(&fdt);

    // The memory nodes, read without `fdt`'s panicking `memory()`; RAM the
    // boot tables do not map as Normal is left out, with a word.
    let ram = match arch::dtmem::read_ram(&fdt) {
        Ok(ram) => ram,
        Err(e) => fail(format_args!("bad device tree: {e}")),
    };
    for range in ram.outside.ranges() {
        println!(
            "boot: RAM {range:?} lies outside what the boot tables map as Normal memory ({:#x}..{:#x}); left out",
            arch::dtmem::NORMAL_RAM.start,
            arch::dtmem::NORMAL_RAM.end
        );
    }
    let mut memory = ram.usable;
    let dt_range = PhysRange::new(dtb_pa, fdt.total_size() as u64);
    let initrd = find_initrd(&fdt);
    let mut in_use = [kernel_image(), dt_range]
        .into_iter()
        .chain(initrd)
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

    find_psci(&fdt);
    find_rtc(&fdt);
    pci::find_host(&fdt);
    let cpus = find_cpus(&fdt);
    let numa = match arch::dtmem::read_numa(&fdt) {
        Ok(numa) => numa,
        Err(e) => {
            println!("boot: the device tree's NUMA nodes are unusable ({e}); one node holds everything");
            mm::numa::NumaMap::new()
        }
    };
    // The raw bytes: the kernel checks them (not UTF-8 is a bad argument,
    // as on x86_64), where `as_str` would drop them without a word.
    let cmdline = fdt.find_node("/chosen").and_then(|c| c.property("bootargs")).map_or(&[][..], |p| p.value);
    kernel::kernel_main(BootInfo {
        boot_method: "linux-image",
        memory,
        direct_map_offset: arch::DIRECT_MAP_OFFSET,
        cmdline,
        firmware: FirmwareTables::DeviceTree { addr: PhysAddr::new(dtb_pa), size: dt_range.size() },
        kernel_image: kernel_image(),
        cpus,
        numa,
        initrd,
    })
}
