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
mod busybox;
mod ci;
mod cli;
mod disks;
mod error;
mod guest;
mod initramfs;
mod kbuild;
mod linuxref;
// The layering check of kernel/src runs as a host test (`cargo test -p xtask`).
#[cfg(test)]
mod layers;
#[cfg(test)]
mod rustsrc;
mod setup;
mod stress;
mod userprogs;

use cli::Command;
use error::Error;
use kbuild::{Builder, Workspace};

fn main() {
    let code = match utf8_args(std::env::args_os().skip(1)).and_then(|args| run(&args)) {
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

/// The command line as strings; an argument that is not UTF-8 is a usage
/// error naming it (`std::env::args` would panic). Kernel arguments are
/// printable ASCII anyway (`kargs`), so nothing valid is lost.
fn utf8_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Vec<String>, Error> {
    args.into_iter()
        .map(|arg| {
            arg.into_string().map_err(|bad| {
                Error::Usage(format!(
                    "argument {:?} is not UTF-8 (kernel arguments are key=value words of printable ASCII)",
                    bad.to_string_lossy()
                ))
            })
        })
        .collect()
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
        Command::Run(args) => {
            let status = guest::run_program(&mut builder, &args)?;
            std::process::exit(status)
        }
        Command::Bench(args) => guest::bench(&mut builder, &args),
        Command::BenchLinux(args) => linuxref::bench(&mut builder, &args),
        Command::Stress(args) => stress::run(&mut builder, &args),
        Command::Ci(args) => ci::run(&mut builder, &args),
        Command::Book => book::run(&builder.ws),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn arguments_that_are_not_utf8_are_a_usage_error_naming_them() {
        let ok = utf8_args(["qemu", "boot", "--", "test=all"].map(OsString::from)).unwrap();
        assert_eq!(ok, ["qemu", "boot", "--", "test=all"]);
        let bad = [
            OsString::from("qemu"),
            OsString::from("boot"),
            OsString::from("--"),
            OsString::from_vec(b"a=\xff".to_vec()),
        ];
        let err = utf8_args(bad).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("\"a=\u{fffd}\" is not UTF-8"), "{err}");
    }
}
