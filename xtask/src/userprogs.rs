//! The project's user programs: every `user/*.c` compiled with Debian's
//! gcc for the guest's architecture (`gcc -static`,
//! `aarch64-linux-gnu-gcc -static`) into `target/user/<arch>/<name>`,
//! where the initramfs ([`crate::initramfs`]) takes them from, as
//! `/bin/<name>`. A program is rebuilt when it is older than its source or
//! any header in `user/`. The compiler is installed when missing
//! ([`crate::setup::ensure_user_compiler`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use qemu::Arch;

use crate::error::Error;
use crate::kbuild::{is_fresh, Workspace};
use crate::setup;

/// The compiler flags of every user program, after `-static`.
pub const CFLAGS: &[&str] = &["-O2", "-g0", "-s", "-Wall", "-Wextra", "-Werror", "-pthread", "-std=gnu11"];

/// A program to build: its source and where the binary goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub name: String,
    pub source: PathBuf,
    pub output: PathBuf,
}

/// Where the binaries of `arch` go.
pub fn output_dir(ws: &Workspace, arch: Arch) -> PathBuf {
    ws.target_dir.join("user").join(arch.name())
}

/// The programs in `user/` (every `*.c`, by name) and the headers they share.
pub fn programs(ws: &Workspace, arch: Arch) -> Result<(Vec<Program>, Vec<PathBuf>), Error> {
    let dir = ws.root.join("user");
    let read =
        std::fs::read_dir(&dir).map_err(|e| Error::Build(format!("cannot read {}: {e}", dir.display())))?;
    let (mut programs, mut headers) = (Vec::new(), Vec::new());
    for entry in read {
        let path = entry.map_err(|e| Error::Build(format!("cannot read {}: {e}", dir.display())))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("c") => {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                let output = output_dir(ws, arch).join(&name);
                programs.push(Program { name, source: path, output });
            }
            Some("h") => headers.push(path),
            _ => {}
        }
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((programs, headers))
}

/// The compiler's arguments for `program`.
pub fn compile_args(program: &Program, include: &Path) -> Vec<String> {
    let mut args = vec!["-static".to_string()];
    args.extend(CFLAGS.iter().map(|f| f.to_string()));
    args.push(format!("-I{}", include.display()));
    args.extend([
        "-o".to_string(),
        program.output.display().to_string(),
        program.source.display().to_string(),
    ]);
    args
}

/// Builds the user programs of `arch` that are not fresh; returns them all.
pub fn build(ws: &Workspace, arch: Arch) -> Result<Vec<Program>, Error> {
    let (programs, headers) = programs(ws, arch)?;
    let dir = output_dir(ws, arch);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Build(format!("cannot create {}: {e}", dir.display())))?;
    let stale: Vec<&Program> = programs
        .iter()
        .filter(|p| {
            let inputs: Vec<&Path> =
                std::iter::once(p.source.as_path()).chain(headers.iter().map(PathBuf::as_path)).collect();
            !is_fresh(&p.output, &inputs)
        })
        .collect();
    if stale.is_empty() {
        return Ok(programs);
    }
    let compiler = setup::ensure_user_compiler(arch)?;
    let include = ws.root.join("user");
    for program in stale {
        let args = compile_args(program, &include);
        println!("xtask: building user program {}: {compiler} {}", program.name, args.join(" "));
        let status = Command::new(compiler)
            .args(&args)
            .status()
            .map_err(|e| Error::Build(format!("could not start {compiler}: {e}")))?;
        if !status.success() {
            return Err(Error::Build(format!(
                "{compiler} failed on {} ({status})",
                program.source.display()
            )));
        }
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c_file_is_a_program() {
        let ws = Workspace::locate();
        let (programs, _) = programs(&ws, Arch::Aarch64).unwrap();
        assert!(!programs.is_empty(), "user/ has no programs");
        for p in &programs {
            assert_eq!(p.output, ws.target_dir.join("user/aarch64").join(&p.name));
            assert!(p.source.ends_with(format!("user/{}.c", p.name)));
        }
    }

    #[test]
    fn compile_command() {
        let p = Program {
            name: "t".into(),
            source: "/w/user/t.c".into(),
            output: "/w/target/user/x86_64/t".into(),
        };
        assert_eq!(
            compile_args(&p, Path::new("/w/user")).join(" "),
            "-static -O2 -g0 -s -Wall -Wextra -Werror -pthread -std=gnu11 -I/w/user -o /w/target/user/x86_64/t /w/user/t.c"
        );
    }
}
