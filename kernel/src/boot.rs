//! What every boot path hands the kernel, and the kernel's first steps.
//!
//! [`kernel_main`] prints the banner, the memory map and the arguments, sets
//! up physical memory (heap, memmap, buddy allocator), turns on the
//! bug-replay switch `bug=` names (if any), starts the scheduler and the
//! other CPUs, finds the disks ([`crate::blk`]), then either runs the
//! in-guest tests (`test=`) or the benchmarks (`bench=`), or shuts the
//! machine down with a success status.

use crate::arch;
use crate::{cmdline, memory, println, testing};
use kargs::Args;
use mm::memmap::{MemoryMap, PhysRange};
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
    /// The kernel arguments, as given (`key=value` words).
    pub cmdline: &'static str,
    pub firmware: FirmwareTables,
    /// Where the kernel image lies in physical memory.
    pub kernel_image: PhysRange,
    /// The CPUs to bring up.
    pub cpus: CpuList,
}

/// The banner's first words.
pub const KERNEL_NAME: &str = concat!("mmkernel ", env!("CARGO_PKG_VERSION"));

const MIB: u64 = 1024 * 1024;

fn print_memory(info: &BootInfo) {
    let map = &info.memory;
    println!(
        "memory: {} MiB usable in {} ranges; direct map at {:#x}; kernel image at {:?}",
        map.total_bytes() / MIB,
        map.ranges().len(),
        info.direct_map_offset,
        info.kernel_image
    );
    for r in map.ranges() {
        println!("memory:   {:#014x}-{:#014x} {:>8} KiB", r.start.as_u64(), r.end.as_u64(), r.size() / 1024);
    }
    match info.firmware {
        FirmwareTables::Acpi { rsdp: Some(rsdp) } => println!("firmware: ACPI, RSDP at {rsdp}"),
        FirmwareTables::Acpi { rsdp: None } => println!("firmware: ACPI, no RSDP found"),
        FirmwareTables::DeviceTree { addr, size } => {
            println!("firmware: device tree at {addr}, {size} bytes")
        }
    }
}

/// The kernel proper, entered once by the boot CPU.
pub fn kernel_main(info: BootInfo) -> ! {
    println!();
    println!("{KERNEL_NAME} on {} (booted as {})", arch::NAME, info.boot_method);
    print_memory(&info);

    let args = match Args::parse(info.cmdline) {
        Ok(args) => args,
        Err(e) => {
            println!("kernel: bad arguments: {e}");
            println!("kernel: arguments are key=value words, e.g. `test=all seed=7`");
            arch::exit(arch::ExitStatus::Failure);
        }
    };
    if let Err(e) = memory::init(&info) {
        println!("kernel: {e}");
        arch::exit(arch::ExitStatus::Failure);
    }
    crate::reclaim::init();
    memory::print_summary();
    cmdline::echo(&args);
    if let Err(e) = cmdline::validate(&args) {
        println!("kernel: bad arguments: {e}");
        arch::exit(arch::ExitStatus::Failure);
    }
    // Before any other CPU runs (`mm::bugs`).
    cmdline::enable_bug_switch(&args);

    crate::vm::init();
    if let Err(e) = crate::sched::init() {
        println!("kernel: cannot start the scheduler: {e:?}");
        arch::exit(arch::ExitStatus::Failure);
    }
    let (clock, hz) = arch::time::describe();
    println!(
        "kernel: scheduler running: {} Hz tick; clock {clock} at {} kHz",
        crate::sched::TICK_HZ,
        hz / 1000
    );
    let online = crate::smp::bring_up(&info.cpus);
    println!("smp: {online} of {} CPUs online", info.cpus.ids().len());
    crate::blk::init();
    crate::swap::init();
    crate::reclaim::start_kswapd();

    if let Some(filter) = args.get("test") {
        let ok = testing::run(filter, &args);
        arch::exit(if ok { arch::ExitStatus::Success } else { arch::ExitStatus::Failure });
    }
    if let Some(filter) = args.get("bench") {
        let ok = crate::bench::run(if filter.is_empty() { "all" } else { filter });
        arch::exit(if ok { arch::ExitStatus::Success } else { arch::ExitStatus::Failure });
    }
    if args.get("swap_demo") != Some("0") && !crate::swap::demo() {
        arch::exit(arch::ExitStatus::Failure);
    }
    println!("kernel: boot complete; shutting down");
    arch::exit(arch::ExitStatus::Success)
}
