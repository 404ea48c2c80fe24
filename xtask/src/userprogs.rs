//! The project's user programs: the C files of `user/`, each one program
//! with its own `main`, compiled with Debian's gcc for the guest's
//! architecture (`gcc`, `aarch64-linux-gnu-gcc`) and linked into ONE
//! static-pie executable (`-static-pie`: an `ET_DYN` file without an
//! interpreter that relocates itself), `target/user/<arch>/usertests`, that runs
//! the program its name says (argv\[0\]'s last component, or the first
//! argument when called as `usertests`), the way busybox runs its applets.
//! The initramfs ([`crate::initramfs`]) holds it as `/bin/usertests`, and
//! `/bin/<name>` for each program as a symbolic link to it.
//!
//! One executable rather than one per program because each static glibc
//! program is about 700 KiB, and the initramfs is loaded on every boot: on
//! x86_64 BIOS boots the bootloader reads it through the BIOS disk calls,
//! about a second per MiB under TCG.
//!
//! Static-pie rather than `-static` so that every user test runs through
//! the kernel's `ET_DYN` load (at its fixed base, `proc::elf`); plain
//! static (`ET_EXEC`) programs stay covered by Debian's busybox-static,
//! which is one.
//!
//! Each `user/<name>.c` is compiled on its own with `-Dmain=ut_main_<name>`;
//! a dispatcher xtask writes (`dispatch.c`, [`dispatcher_source`]) holds
//! the table of names. Objects are rebuilt when older than their source or
//! any header in `user/`. The compiler is installed when missing
//! ([`crate::setup::ensure_user_compiler`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use qemu::Arch;

use crate::error::Error;
use crate::kbuild::{is_fresh, Workspace};
use crate::setup;

/// The compiler flags of every user program, after `-static-pie`.
pub const CFLAGS: &[&str] = &["-fPIE", "-O2", "-g0", "-Wall", "-Wextra", "-Werror", "-pthread", "-std=gnu11"];

/// The name of the one executable.
pub const MULTICALL: &str = "usertests";

/// A program of `user/`: its name and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub name: String,
    pub source: PathBuf,
}

/// The user programs built for one architecture: the executable and the
/// names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub binary: PathBuf,
    pub names: Vec<String>,
}

/// Where the objects and the executable of `arch` go.
pub fn output_dir(ws: &Workspace, arch: Arch) -> PathBuf {
    ws.target_dir.join("user").join(arch.name())
}

/// The programs in `user/` (every `*.c`, by name, sorted) and the headers
/// they share.
pub fn programs(ws: &Workspace) -> Result<(Vec<Program>, Vec<PathBuf>), Error> {
    let dir = ws.root.join("user");
    let read =
        std::fs::read_dir(&dir).map_err(|e| Error::Build(format!("cannot read {}: {e}", dir.display())))?;
    let (mut programs, mut headers) = (Vec::new(), Vec::new());
    for entry in read {
        let path = entry.map_err(|e| Error::Build(format!("cannot read {}: {e}", dir.display())))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("c") => {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(Error::Build(format!(
                        "{}: a program's name is [A-Za-z0-9_]",
                        path.display()
                    )));
                }
                programs.push(Program { name, source: path });
            }
            Some("h") => headers.push(path),
            _ => {}
        }
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((programs, headers))
}

/// The C source of the dispatcher for `names`.
pub fn dispatcher_source(names: &[&str]) -> String {
    let mut s = String::from("/* Written by xtask (xtask/src/userprogs.rs); not to be edited. */\n");
    s.push_str("#include <stdio.h>\n#include <string.h>\n\n");
    for name in names {
        s.push_str(&format!("int ut_main_{name}(int argc, char **argv);\n"));
    }
    s.push_str(
        "\nstatic const struct {\n\tconst char *name;\n\tint (*main)(int, char **);\n} programs[] = {\n",
    );
    for name in names {
        s.push_str(&format!("\t{{ \"{name}\", ut_main_{name} }},\n"));
    }
    s.push_str(&format!(
        "}};\n\nint main(int argc, char **argv)\n{{\n\
         \tconst char *name = argc > 0 ? argv[0] : \"\";\n\
         \tconst char *slash = strrchr(name, '/');\n\
         \tif (slash)\n\t\tname = slash + 1;\n\
         \tif (strcmp(name, \"{MULTICALL}\") == 0 && argc > 1) {{\n\
         \t\targc--;\n\t\targv++;\n\t\tname = argv[0];\n\t}}\n\
         \tfor (unsigned i = 0; i < sizeof programs / sizeof programs[0]; i++)\n\
         \t\tif (strcmp(name, programs[i].name) == 0)\n\t\t\treturn programs[i].main(argc, argv);\n\
         \tfprintf(stderr, \"{MULTICALL}: no program named %s\\n\", name);\n\
         \treturn 127;\n}}\n"
    ));
    s
}

/// The compiler's arguments for the object of `program`.
pub fn compile_args(program: &Program, include: &Path, object: &Path) -> Vec<String> {
    let mut args: Vec<String> = CFLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("-I{}", include.display()));
    args.push(format!("-Dmain=ut_main_{}", program.name));
    args.extend(["-c", "-o"].map(String::from));
    args.push(object.display().to_string());
    args.push(program.source.display().to_string());
    args
}

/// The compiler's arguments that link `objects` (the dispatcher's first)
/// into `binary`.
pub fn link_args(objects: &[PathBuf], binary: &Path) -> Vec<String> {
    let mut args = vec!["-static-pie".to_string(), "-s".to_string()];
    args.extend(CFLAGS.iter().map(|f| f.to_string()));
    args.extend(["-o".to_string(), binary.display().to_string()]);
    args.extend(objects.iter().map(|o| o.display().to_string()));
    // The maths library (`fenv.h`'s calls), after the objects that use it.
    args.push("-lm".to_string());
    args
}

fn compile(compiler: &str, args: &[String], what: &str) -> Result<(), Error> {
    println!("xtask: {what}: {compiler} {}", args.join(" "));
    let status = Command::new(compiler)
        .args(args)
        .status()
        .map_err(|e| Error::Build(format!("could not start {compiler}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!("{compiler} failed ({status}) for {what}")))
    }
}

/// Builds what is not fresh of the user programs of `arch`.
pub fn build(ws: &Workspace, arch: Arch) -> Result<Built, Error> {
    let (programs, headers) = programs(ws)?;
    let dir = output_dir(ws, arch);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Build(format!("cannot create {}: {e}", dir.display())))?;
    let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
    let dispatch = dir.join("dispatch.c");
    let source = dispatcher_source(&names);
    if std::fs::read_to_string(&dispatch).ok().as_deref() != Some(&source) {
        std::fs::write(&dispatch, &source)
            .map_err(|e| Error::Build(format!("cannot write {}: {e}", dispatch.display())))?;
    }
    let include = ws.root.join("user");
    // Looked for (and installed) only when something is to be built.
    let mut compiler = None;
    let needs = |compiler: &mut Option<&'static str>| -> Result<&'static str, Error> {
        Ok(*match compiler {
            Some(c) => c,
            None => compiler.insert(setup::ensure_user_compiler(arch)?),
        })
    };
    let dispatcher = Program { name: "dispatch".into(), source: dispatch.clone() };
    let mut objects = Vec::new();
    for program in std::iter::once(&dispatcher).chain(&programs) {
        let object = dir.join(format!("{}.o", program.name));
        let inputs: Vec<&Path> =
            std::iter::once(program.source.as_path()).chain(headers.iter().map(PathBuf::as_path)).collect();
        if !is_fresh(&object, &inputs) {
            let mut args = compile_args(program, &include, &object);
            if program.name == "dispatch" {
                args.retain(|a| !a.starts_with("-Dmain="));
            }
            compile(needs(&mut compiler)?, &args, &format!("user program {}", program.name))?;
        }
        objects.push(object);
    }
    let binary = dir.join(MULTICALL);
    let inputs: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
    if !is_fresh(&binary, &inputs) {
        compile(needs(&mut compiler)?, &link_args(&objects, &binary), &format!("linking {MULTICALL}"))?;
    }
    Ok(Built { binary, names: programs.into_iter().map(|p| p.name).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c_file_is_a_program() {
        let ws = Workspace::locate();
        let (programs, headers) = programs(&ws).unwrap();
        let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
        for name in ["first_touch", "cow_fork", "rawdisk_fork", "exit_with"] {
            assert!(names.contains(&name), "{name} is missing from {names:?}");
        }
        assert!(headers.iter().any(|h| h.ends_with("user/ut.h")));
    }

    #[test]
    fn compile_and_link_commands() {
        let p = Program { name: "t".into(), source: "/w/user/t.c".into() };
        assert_eq!(
            compile_args(&p, Path::new("/w/user"), Path::new("/o/t.o")).join(" "),
            "-fPIE -O2 -g0 -Wall -Wextra -Werror -pthread -std=gnu11 -I/w/user -Dmain=ut_main_t -c -o /o/t.o /w/user/t.c"
        );
        assert_eq!(
            link_args(&["/o/dispatch.o".into(), "/o/t.o".into()], Path::new("/o/usertests")).join(" "),
            "-static-pie -s -fPIE -O2 -g0 -Wall -Wextra -Werror -pthread -std=gnu11 -o /o/usertests /o/dispatch.o /o/t.o -lm"
        );
    }

    #[test]
    fn the_dispatcher_names_every_program() {
        let s = dispatcher_source(&["a_b", "c"]);
        assert!(s.contains("int ut_main_a_b(int argc, char **argv);\n"));
        assert!(s.contains("{ \"a_b\", ut_main_a_b },\n\t{ \"c\", ut_main_c },\n"));
        assert!(s.contains("strcmp(name, \"usertests\") == 0"));
    }
}
