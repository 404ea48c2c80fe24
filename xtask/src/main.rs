//! `cargo xtask`: the project's host tool. It builds the kernels and their
//! boot images, boots them under QEMU, runs the in-guest tests and
//! benchmarks, and runs everything CI runs. `cargo xtask --help` lists the
//! commands; the QEMU side (command lines, serial protocol, verdicts) lives
//! in the `qemu` crate.
//!
//! Exit status: 0 on success, 1 when a build, a run or a check failed,
//! 2 when the command line was wrong.

mod book;
#[cfg(test)]
mod bookcheck;
mod ci;
mod cli;
mod disks;
mod error;
mod guest;
mod kbuild;
// The layering check of kernel/src runs as a host test (`cargo test -p xtask`).
#[cfg(test)]
mod layers;
#[cfg(test)]
mod rustsrc;
mod setup;
mod stress;

use cli::Command;
use error::Error;
use kbuild::{Builder, Workspace};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            match &e {
                Error::Usage(_) => eprintln!("{e}\n\n{}", cli::usage_text()),
                // The verdict or the CI table has been printed in full.
                Error::Failed(_) => {}
                _ => eprintln!("xtask: {e}"),
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(args: &[String]) -> Result<(), Error> {
    let command = cli::parse(args)?;
    let mut builder = Builder::new(Workspace::locate());
    match command {
        Command::Help => {
            print!("{}", cli::help_text());
            Ok(())
        }
        Command::Build(choice) => {
            for arch in choice.arches() {
                let elf = builder.kernel(arch)?;
                let firmwares: &[qemu::Firmware] = match arch {
                    qemu::Arch::X86_64 => &[qemu::Firmware::Bios, qemu::Firmware::Uefi],
                    qemu::Arch::Aarch64 => &[qemu::Firmware::Bios],
                };
                println!("xtask: {arch} kernel: {}", elf.display());
                for &firmware in firmwares {
                    let (_, image) = builder.image(arch, firmware)?;
                    println!("xtask: {arch} image: {}", image.display());
                }
            }
            Ok(())
        }
        Command::Boot(args) => guest::boot(&mut builder, &args),
        Command::QemuTest(args) => guest::qemu_test(&mut builder, &args).map(|_| ()),
        Command::Bench(args) => guest::bench(&mut builder, &args),
        Command::Stress(args) => stress::run(&mut builder, &args),
        Command::Ci(args) => ci::run(&mut builder, &args),
        Command::Book => book::run(&builder.ws),
    }
}
