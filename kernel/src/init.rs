//! The kernel's first steps, in order.
//!
//! [`kernel_main`] prints the banner, the memory map and the arguments, sets
//! up physical memory (heap, memmap, buddy allocator), turns on the
//! bug-replay switch `bug=` names (if any), starts the scheduler and the
//! other CPUs, finds the disks ([`crate::drivers::blk`]), then either runs the
//! in-guest tests (`test=`) or the benchmarks (`bench=`), or the first user
//! program (`init=`, [`run_init`]), or runs the boot workload
//! ([`crate::demo`]) and shuts the machine down with a success status. The tests and benchmarks are handed in as [`Modes`] by the
//! crate root, so that nothing here names them.

use crate::arch::prelude::*;
use crate::arch::ExitStatus;
use crate::bootinfo::{BootInfo, FirmwareTables};
use crate::{cmdline, memory, println};
use kargs::Args;

/// What the kernel can run after booting besides the boot workload: each
/// is given the filter of its argument (`test=`, `bench=`) and the
/// arguments, and says whether everything it ran passed.
pub struct Modes {
    pub tests: fn(&str, &Args<'_>) -> bool,
    pub bench: fn(&str) -> bool,
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
pub fn kernel_main(info: BootInfo, modes: Modes) -> ! {
    println!();
    println!("{KERNEL_NAME} on {} (booted as {})", Arch::NAME, info.boot_method);
    print_memory(&info);
    crate::bootinfo::set_initrd(&info);

    let args = match Args::parse_bytes(info.cmdline) {
        Ok(args) => args,
        Err(e) => {
            println!("kernel: bad arguments: {e}");
            println!("kernel: arguments are key=value words, e.g. `test=all seed=7`");
            Arch::exit(ExitStatus::Failure);
        }
    };
    if let Err(e) = memory::init(&info) {
        println!("kernel: {e}");
        Arch::exit(ExitStatus::Failure);
    }
    if let Err(e) = memory::stacks::init() {
        println!("kernel: {e}");
        Arch::exit(ExitStatus::Failure);
    }
    crate::vm::reclaim::init();
    memory::print_summary();
    cmdline::echo(&args);
    if let Err(e) = cmdline::validate(&args) {
        println!("kernel: bad arguments: {e}");
        Arch::exit(ExitStatus::Failure);
    }
    // Before any other CPU runs (`mm::bugs`).
    cmdline::enable_bug_switch(&args);
    cmdline::apply_rawdisk_hold(&args);
    cmdline::apply_swap_keep_clean(&args);

    crate::vm::space::init();
    if let Err(e) = crate::task::sched::init() {
        println!("kernel: cannot start the scheduler: {e:?}");
        Arch::exit(ExitStatus::Failure);
    }
    let (clock, hz) = Arch::describe_clock();
    println!(
        "kernel: scheduler running: {} Hz tick; clock {clock} at {} kHz",
        crate::task::sched::TICK_HZ,
        hz / 1000
    );
    let online = crate::task::smp::bring_up(&info.cpus);
    println!("smp: {online} of {} CPUs online", info.cpus.ids().len());
    crate::drivers::blk::init();
    crate::vm::swap::init();
    crate::vm::reclaim::start_kswapd();
    crate::vm::compaction::start();
    crate::fs::init();
    crate::proc::init();

    // The injector's scope is a task (`mm::fail_alloc`).
    memory::fail_alloc().set_scope_fn(crate::task::sched::current_id);
    if let (Some(spec), None) = (args.get("fail_alloc"), args.get("test")) {
        let spec = mm::fail_alloc::Spec::parse(spec).expect("init: `fail_alloc=` not validated");
        let seed = args.get_u64("seed").ok().flatten().unwrap_or(0);
        memory::fail_alloc().arm(spec, seed, None);
        println!("kernel: fail_alloc ON: {spec} fails (seed {seed}), for every task");
    }
    if let Some(filter) = args.get("test") {
        let ok = (modes.tests)(filter, &args);
        Arch::exit(if ok { ExitStatus::Success } else { ExitStatus::Failure });
    }
    if let Some(filter) = args.get("bench") {
        let ok = (modes.bench)(if filter.is_empty() { "all" } else { filter });
        Arch::exit(if ok { ExitStatus::Success } else { ExitStatus::Failure });
    }
    if let Some(path) = args.get(kargs::argv::INIT_KEY) {
        let ok = run_init(path, args.get(kargs::argv::INIT_ARGS_KEY).unwrap_or(""));
        Arch::exit(if ok { ExitStatus::Success } else { ExitStatus::Failure });
    }
    if args.get("swap_demo") != Some("0") && !crate::demo::run() {
        Arch::exit(ExitStatus::Failure);
    }
    if args.get("fail_alloc").is_some() {
        let f = memory::fail_alloc();
        println!(
            "kernel: fail_alloc: {} of {} frame allocations failed on purpose",
            f.nr_failed(),
            f.nr_calls()
        );
    }
    crate::vm::compaction::print_counters();
    println!("kernel: boot complete; shutting down");
    Arch::exit(ExitStatus::Success)
}

/// Runs the first user program `path` with the arguments `init_args`
/// carries (`kargs::argv`; argv\[0\] is `path`), waits for it and prints
/// how it ended, in the one line the runner reads (`qemu::protocol`):
/// `init: exited with status N` or `init: killed by signal S`; or
/// `init: cannot run PATH: WHY`. True when it exited with status 0.
fn run_init(path: &str, init_args: &str) -> bool {
    // Validated by `cmdline::validate`.
    let rest = kargs::argv::decode_argv(init_args).expect("init: `init_args=` not validated");
    let mut argv: alloc::vec::Vec<&str> = alloc::vec![path];
    argv.extend(rest.iter().map(|a| a.as_str()));
    println!("init: running {path} with {} arguments", argv.len() - 1);
    match crate::proc::run_init(path, &argv) {
        Ok(status) => {
            println!("{}", describe_wait_status(status));
            status == 0
        }
        Err(why) => {
            println!("init: cannot run {path}: {why}");
            false
        }
    }
}

/// The line that says how a process with the Linux wait status `status`
/// ended.
pub fn describe_wait_status(status: i32) -> alloc::string::String {
    let signal = status & 0x7f;
    if signal == 0 {
        alloc::format!("init: exited with status {}", (status >> 8) & 0xff)
    } else {
        alloc::format!("init: killed by signal {signal}")
    }
}
