//! Building the kernels and their boot images.
//!
//! * x86_64: `cargo build -p boot-x86_64 --target x86_64-unknown-none
//!   --profile kernel` gives an ELF, which the `bootloader` crate wraps into
//!   a BIOS or UEFI disk image, with the initramfs ([`crate::initramfs`])
//!   as its ramdisk.
//! * AArch64: `cargo build -p boot-aarch64 --target aarch64-unknown-none
//!   --profile kernel` gives an ELF whose first bytes carry the arm64 image
//!   header; `llvm-objcopy -O binary` turns it into the raw image QEMU's
//!   `-kernel` loads; the initramfs goes beside it (`-initrd`).
//!
//! Cargo runs as a child process with the same `cargo` that runs xtask, in
//! the workspace root, so the pinned toolchain applies.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use qemu::{Arch, Firmware};

use crate::error::Error;

/// Where things are in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    /// The workspace xtask was built in (its manifest is `<root>/xtask/Cargo.toml`).
    pub fn locate() -> Workspace {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
        Workspace::new(root, target_dir)
    }

    /// A workspace at `root`, with cargo's target directory override if any.
    pub fn new(root: PathBuf, target_dir: Option<PathBuf>) -> Workspace {
        let target_dir = match target_dir {
            Some(dir) if dir.is_absolute() => dir,
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Workspace { root, target_dir }
    }

    /// The kernel ELF cargo produces for `arch`.
    pub fn kernel_elf(&self, arch: Arch) -> PathBuf {
        self.target_dir.join(arch.rust_target()).join("kernel").join(format!("kernel-{arch}"))
    }

    /// The image QEMU boots: a disk image on x86_64, a raw binary on AArch64.
    pub fn image(&self, arch: Arch, firmware: Firmware) -> PathBuf {
        let name = match arch {
            Arch::X86_64 => format!("kernel-x86_64-{firmware}.img"),
            Arch::Aarch64 => "kernel-aarch64.bin".to_string(),
        };
        self.target_dir.join("images").join(name)
    }
}

/// The cargo to run: `$CARGO` (set when xtask runs under cargo), else `cargo`.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The rustc to ask about the toolchain: `$RUSTC`, else `rustc`.
fn rustc_program() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// The package that builds the kernel binary for `arch`.
pub fn boot_package(arch: Arch) -> String {
    format!("boot-{arch}")
}

/// The arguments of the cargo command that builds the kernel for `arch`.
pub fn kernel_build_args(arch: Arch) -> Vec<String> {
    ["build", "-p", &boot_package(arch), "--target", arch.rust_target(), "--profile", "kernel"]
        .map(String::from)
        .to_vec()
}

/// Runs `cmd`, with its output going straight to the user.
fn run_visible(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let status = cmd.status().map_err(|e| Error::Build(format!("could not start {what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!("{what} failed ({status}); see its messages above")))
    }
}

/// Builds the kernel ELF for `arch` and returns its path.
pub fn build_kernel(ws: &Workspace, arch: Arch) -> Result<PathBuf, Error> {
    let args = kernel_build_args(arch);
    println!("xtask: building the {arch} kernel: cargo {}", args.join(" "));
    run_visible(
        Command::new(cargo_program()).args(&args).current_dir(&ws.root),
        &format!("`cargo {}`", args.join(" ")),
    )?;
    let elf = ws.kernel_elf(arch);
    if !elf.is_file() {
        return Err(Error::Build(format!(
            "cargo built {} but {} is not there (is its binary named kernel-{arch}?)",
            boot_package(arch),
            elf.display()
        )));
    }
    Ok(elf)
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// True when `output` exists and is newer than every one of `inputs`.
pub fn is_fresh(output: &Path, inputs: &[&Path]) -> bool {
    let Some(out) = modified(output) else {
        return false;
    };
    inputs.iter().all(|i| modified(i).is_some_and(|t| t <= out))
}

/// Makes the bootable image for `arch`/`firmware` from the kernel `elf`
/// (and, on x86_64, the initramfs `initrd`, the image's ramdisk).
/// Reuses an existing image that is newer than its inputs.
pub fn make_image(
    ws: &Workspace,
    arch: Arch,
    firmware: Firmware,
    elf: &Path,
    initrd: &Path,
) -> Result<PathBuf, Error> {
    let image = ws.image(arch, firmware);
    // The bootloader code in an x86_64 image comes with xtask itself.
    let exe = std::env::current_exe().ok();
    let mut inputs = vec![elf];
    if arch == Arch::X86_64 {
        inputs.extend(exe.as_deref());
        inputs.push(initrd);
    }
    if is_fresh(&image, &inputs) {
        return Ok(image);
    }
    let dir = image.parent().expect("images live in a directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Build(format!("could not create {}: {e}", dir.display())))?;
    // Write beside the image and rename, so a half-written image never looks fresh.
    let partial = image.with_extension("partial");
    println!("xtask: making {}", image.display());
    match (arch, firmware) {
        (Arch::X86_64, Firmware::Bios) => bootloader::BiosBoot::new(elf)
            .set_ramdisk(initrd)
            .create_disk_image(&partial)
            .map_err(|e| Error::Build(format!("the bootloader crate could not make a BIOS image: {e:#}")))?,
        (Arch::X86_64, Firmware::Uefi) => bootloader::UefiBoot::new(elf)
            .set_ramdisk(initrd)
            .create_disk_image(&partial)
            .map_err(|e| Error::Build(format!("the bootloader crate could not make a UEFI image: {e:#}")))?,
        (Arch::Aarch64, _) => {
            let objcopy = llvm_objcopy(ws)?;
            run_visible(
                Command::new(&objcopy).arg("-O").arg("binary").arg(elf).arg(&partial),
                &format!("`{} -O binary`", objcopy.display()),
            )?;
        }
    }
    std::fs::rename(&partial, &image)
        .map_err(|e| Error::Build(format!("could not move the image to {}: {e}", image.display())))?;
    Ok(image)
}

/// The `host: ` triple from `rustc -vV`.
pub fn parse_host_triple(rustc_vv: &str) -> Option<&str> {
    rustc_vv.lines().find_map(|l| l.strip_prefix("host: ")).map(str::trim)
}

fn rustc_output(ws: &Workspace, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(rustc_program())
        .args(args)
        .current_dir(&ws.root)
        .output()
        .map_err(|e| Error::Setup(format!("could not run `rustc {}`: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`rustc {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The toolchain's llvm-objcopy (from the `llvm-tools` component).
fn llvm_objcopy(ws: &Workspace) -> Result<PathBuf, Error> {
    let sysroot = rustc_output(ws, &["--print", "sysroot"])?;
    let vv = rustc_output(ws, &["-vV"])?;
    let host =
        parse_host_triple(&vv).ok_or_else(|| Error::Setup("`rustc -vV` printed no `host:` line".into()))?;
    let path = objcopy_path(Path::new(sysroot.trim()), host);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Setup(format!("{} is missing; run `rustup component add llvm-tools`", path.display())))
    }
}

/// Where the `llvm-tools` component puts llvm-objcopy.
pub fn objcopy_path(sysroot: &Path, host: &str) -> PathBuf {
    sysroot.join("lib").join("rustlib").join(host).join("bin").join("llvm-objcopy")
}

/// Builds kernels, initramfs archives and images at most once per run of
/// xtask, remembering failures too, so `cargo xtask test` does not rebuild
/// (or re-fail) per step.
pub struct Builder {
    pub ws: Workspace,
    elves: HashMap<Arch, Result<PathBuf, Error>>,
    initrds: HashMap<Arch, Result<PathBuf, Error>>,
    images: HashMap<(Arch, Firmware), Result<PathBuf, Error>>,
}

impl Builder {
    pub fn new(ws: Workspace) -> Builder {
        Builder { ws, elves: HashMap::new(), initrds: HashMap::new(), images: HashMap::new() }
    }

    /// The initramfs of `arch` ([`crate::initramfs`]), built if not yet done.
    pub fn initrd(&mut self, arch: Arch) -> Result<PathBuf, Error> {
        let ws = &self.ws;
        self.initrds.entry(arch).or_insert_with(|| crate::initramfs::build(ws, arch)).clone()
    }

    /// The kernel ELF for `arch`, built if not yet done.
    pub fn kernel(&mut self, arch: Arch) -> Result<PathBuf, Error> {
        let ws = &self.ws;
        self.elves.entry(arch).or_insert_with(|| build_kernel(ws, arch)).clone()
    }

    /// The ELF and the bootable image for `arch`/`firmware`, made if not
    /// yet done, with the initramfs built (x86_64 images carry it; AArch64
    /// boots pass [`Builder::initrd`] to QEMU).
    pub fn image(&mut self, arch: Arch, firmware: Firmware) -> Result<(PathBuf, PathBuf), Error> {
        let firmware = if arch == Arch::Aarch64 { Firmware::Bios } else { firmware };
        let elf = self.kernel(arch)?;
        let initrd = self.initrd(arch)?;
        let ws = &self.ws;
        let image = self
            .images
            .entry((arch, firmware))
            .or_insert_with(|| make_image(ws, arch, firmware, &elf, &initrd))
            .clone()?;
        Ok((elf, image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_target_dir() {
        let ws = Workspace::new("/w".into(), None);
        assert_eq!(
            ws.kernel_elf(Arch::X86_64),
            Path::new("/w/target/x86_64-unknown-none/kernel/kernel-x86_64")
        );
        assert_eq!(
            ws.kernel_elf(Arch::Aarch64),
            Path::new("/w/target/aarch64-unknown-none/kernel/kernel-aarch64")
        );
        assert_eq!(
            ws.image(Arch::X86_64, Firmware::Bios),
            Path::new("/w/target/images/kernel-x86_64-bios.img")
        );
        assert_eq!(
            ws.image(Arch::X86_64, Firmware::Uefi),
            Path::new("/w/target/images/kernel-x86_64-uefi.img")
        );
        assert_eq!(ws.image(Arch::Aarch64, Firmware::Bios), Path::new("/w/target/images/kernel-aarch64.bin"));
        let ws = Workspace::new("/w".into(), Some("out".into()));
        assert_eq!(ws.target_dir, Path::new("/w/out"));
        let ws = Workspace::new("/w".into(), Some("/tmp/t".into()));
        assert_eq!(ws.image(Arch::Aarch64, Firmware::Bios), Path::new("/tmp/t/images/kernel-aarch64.bin"));
    }

    #[test]
    fn the_real_workspace_is_the_parent_of_xtask() {
        let ws = Workspace::locate();
        assert!(ws.root.join("Cargo.toml").is_file());
        assert!(ws.root.join("xtask").is_dir());
    }

    #[test]
    fn kernel_build_commands() {
        assert_eq!(
            kernel_build_args(Arch::X86_64).join(" "),
            "build -p boot-x86_64 --target x86_64-unknown-none --profile kernel"
        );
        assert_eq!(
            kernel_build_args(Arch::Aarch64).join(" "),
            "build -p boot-aarch64 --target aarch64-unknown-none --profile kernel"
        );
    }

    #[test]
    fn objcopy_location() {
        let vv = "rustc 1.93.0-nightly (abc 2026-09-30)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.93.0-nightly\n";
        assert_eq!(parse_host_triple(vv), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(parse_host_triple("nothing"), None);
        assert_eq!(
            objcopy_path(Path::new("/s"), "x86_64-unknown-linux-gnu"),
            Path::new("/s/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy")
        );
    }

    #[test]
    fn freshness() {
        let dir = std::env::temp_dir().join(format!("xtask-fresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in");
        let output = dir.join("out");
        std::fs::write(&input, b"x").unwrap();
        assert!(!is_fresh(&output, &[&input]), "a missing output is stale");
        std::fs::write(&output, b"y").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&input).unwrap().set_modified(old).unwrap();
        assert!(is_fresh(&output, &[&input]));
        std::fs::File::options()
            .write(true)
            .open(&output)
            .unwrap()
            .set_modified(old - std::time::Duration::from_secs(5))
            .unwrap();
        assert!(!is_fresh(&output, &[&input]));
        assert!(!is_fresh(&output, &[&dir.join("missing")]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
