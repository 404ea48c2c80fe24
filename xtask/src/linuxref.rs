//! `cargo xtask bench --linux`: the Linux reference of BENCHMARKS.md,
//! booted beside this kernel in the same QEMU configuration, and the
//! side-by-side table of the two.
//!
//! What Linux boots ([`prepare`]):
//!
//! - **The kernel**: Debian's `linux-image-amd64` / `linux-image-arm64`.
//!   Those are metapackages; the versioned package they depend on
//!   (`linux-image-6.1.0-N-amd64`, asked of `apt-cache depends`) is fetched
//!   with `apt-get download` and unpacked with `dpkg-deb -x` into
//!   `target/linux/<debarch>/root/`, once: a later run finds the
//!   [`EXTRACTED_MARK`] file and fetches nothing. The image is
//!   `boot/vmlinuz-<release>` (a bzImage on x86_64; on arm64 an `Image`,
//!   gunzipped first should it come compressed).
//! - **The initramfs** (`target/linux/<debarch>/initramfs.cpio`, written
//!   with [`crate::initramfs::archive`]): the project's usertests
//!   multicall with its program links (so `/bin/mmbench` is the very
//!   binary this kernel runs), the modules the swap disk needs
//!   (`virtio_pci` and `virtio_blk` with the closure of their `depends=`
//!   lists, read from each module's `.modinfo` section since the package
//!   ships no `modules.dep`; modules the config builds in are skipped)
//!   under `/lib/modules/`, the order to load them in `/etc/modules-load`,
//!   and `/init`, the project's `user/linux/init.c` built static for the
//!   guest (mounts devtmpfs, proc and sysfs, loads the modules, swaps on
//!   `/dev/vda`, runs the program after `--`, prints `init: exited with
//!   status N` as this kernel does for its first process, powers off).
//! - **The machine** ([`qemu_command`]): BENCHMARKS.md's flags, the same
//!   CPU model, RAM and CPUs as this kernel's boot of the profile, a fresh
//!   mkswap'd 1 GiB swap image in `/dev/shm` per boot ([`crate::disks`]),
//!   `-kernel`/`-initrd`/`-append` with [`kernel_command_line`].
//!
//! [`bench`] then runs profiles `main` and `swap`, alternating one boot of
//! this kernel (as `cargo xtask bench` boots it in user mode,
//! `init=/bin/mmbench init_args=<profile>`, [`guest::bench_boot`]) and one
//! of Linux running `/bin/mmbench <profile>`, N times, and prints per
//! figure both medians, the ratio and which side a figure favours
//! ([`table`]), then every raw value.
//! Nothing here is a test: the figures are measurements of a shared
//! machine, compared only within one run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use qemu::disk::VirtioDisk;
use qemu::{Arch, GuestExit, InitEnd, QemuCommand, Report, RunOptions, RunOutcome};

use crate::cli::{LinuxBenchArgs, RunArgs};
use crate::error::Error;
use crate::guest::{self, BenchMode};
use crate::initramfs::{self, Member};
use crate::kbuild::{is_fresh, Builder, Workspace};
use crate::{disks, setup, userprogs};

/// The modules `/dev/vda` needs: the PCI transport and the block driver
/// (their dependencies are found in their `.modinfo`).
pub const ROOT_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// Written into the unpacked package's root once `dpkg-deb -x` finished;
/// holds the package's name.
pub const EXTRACTED_MARK: &str = ".xtask-extracted";

/// Where the init reads the modules to load (one path a line, in order).
pub const MODULES_LIST: &str = "etc/modules-load";

/// The metapackage of `arch`'s kernel.
pub fn metapackage(arch: Arch) -> String {
    format!("linux-image-{}", setup::debian_arch(arch))
}

/// The cache of `arch`'s reference kernel and its initramfs.
pub fn cache_dir(ws: &Workspace, arch: Arch) -> PathBuf {
    ws.target_dir.join("linux").join(setup::debian_arch(arch))
}

/// The versioned kernel package `apt-cache depends <metapackage>` names
/// (its first `Depends: linux-image-...` line; a `:arm64` suffix dropped).
pub fn versioned_package(depends_output: &str, debarch: &str) -> Option<String> {
    depends_output.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        let name = name.strip_suffix(&format!(":{debarch}")).unwrap_or(name);
        (name.starts_with("linux-image-") && name.ends_with(&format!("-{debarch}"))).then(|| name.to_string())
    })
}

/// What to tell someone whose fetch failed.
fn fetch_error(arch: Arch, why: &str, package: Option<&str>, dir: &Path) -> Error {
    let debarch = setup::debian_arch(arch);
    let pkg = package.map_or_else(
        || format!("<the package `apt-cache depends {}` names>", metapackage(arch)),
        str::to_string,
    );
    let foreign =
        if arch == Arch::Aarch64 { format!("dpkg --add-architecture {debarch} && ") } else { String::new() };
    Error::Setup(format!(
        "cannot fetch Debian's {arch} kernel for the Linux reference: {why}\n  \
         fix the host's apt (as root: {foreign}apt-get update), then run `cargo xtask bench --linux` again; or by hand:\n    \
         mkdir -p {dir} && cd {dir} && apt-get download {pkg}{suffix} && dpkg-deb -x {pkg}_*_{debarch}.deb root && echo {pkg} > root/{EXTRACTED_MARK}",
        dir = dir.display(),
        suffix = if arch == Arch::Aarch64 { format!(":{debarch}") } else { String::new() },
    ))
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

/// The unpacked package of `arch`: fetched and unpacked when not cached.
pub fn fetch(ws: &Workspace, arch: Arch) -> Result<PathBuf, Error> {
    let dir = cache_dir(ws, arch);
    let root = dir.join("root");
    if root.join(EXTRACTED_MARK).is_file() {
        return Ok(root);
    }
    let debarch = setup::debian_arch(arch);
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        if setup::find_on_path(tool).is_none() {
            return Err(fetch_error(
                arch,
                &format!("`{tool}` is not on this host (a Debian host is needed)"),
                None,
                &dir,
            ));
        }
    }
    if !setup::ensure_foreign_arch(debarch) {
        return Err(fetch_error(arch, &format!("apt cannot fetch {debarch} packages here"), None, &dir));
    }
    let spec = match arch {
        Arch::X86_64 => metapackage(arch),
        Arch::Aarch64 => format!("{}:{debarch}", metapackage(arch)),
    };
    let resolve =
        || command_output("apt-cache", &["depends", &spec]).and_then(|o| versioned_package(&o, debarch));
    let package = match resolve() {
        Some(p) => p,
        None => {
            println!("xtask: apt knows no {spec}; running: apt-get update");
            run_ok(Command::new("apt-get").arg("update"));
            resolve().ok_or_else(|| {
                fetch_error(
                    arch,
                    &format!("`apt-cache depends {spec}` names no linux-image package"),
                    None,
                    &dir,
                )
            })?
        }
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Setup(format!("cannot create {}: {e}", dir.display())))?;
    let download = match arch {
        Arch::X86_64 => package.clone(),
        Arch::Aarch64 => format!("{package}:{debarch}"),
    };
    println!("xtask: running: apt-get download {download} (in {})", dir.display());
    if !run_ok(Command::new("apt-get").args(["download", &download]).current_dir(&dir)) {
        return Err(fetch_error(
            arch,
            &format!("`apt-get download {download}` failed"),
            Some(&package),
            &dir,
        ));
    }
    let prefix = format!("{package}_");
    let suffix = format!("_{debarch}.deb");
    let deb = std::fs::read_dir(&dir)
        .ok()
        .and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
            })
        })
        .ok_or_else(|| fetch_error(arch, "apt-get download left no .deb", Some(&package), &dir))?;
    // A half-unpacked tree from an interrupted run is thrown away.
    let _ = std::fs::remove_dir_all(&root);
    println!("xtask: running: dpkg-deb -x {} {}", deb.display(), root.display());
    if !run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root)) {
        return Err(fetch_error(
            arch,
            &format!("`dpkg-deb -x {}` failed", deb.display()),
            Some(&package),
            &dir,
        ));
    }
    std::fs::write(root.join(EXTRACTED_MARK), format!("{package}\n"))
        .map_err(|e| Error::Setup(format!("cannot write into {}: {e}", root.display())))?;
    // The unpacked tree is what is kept; the .deb is not needed again.
    let _ = std::fs::remove_file(&deb);
    Ok(root)
}

/// The kernel release of an unpacked package: its one `lib/modules/<release>`.
pub fn release(root: &Path) -> Result<String, Error> {
    let dir = root.join("lib/modules");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::Setup(format!("cannot read {}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Setup(format!("{} holds {names:?}, not one kernel release", dir.display()))),
    }
}

/// The image QEMU's `-kernel` boots: `boot/vmlinuz-<release>`, gunzipped
/// into `out_dir/Image` when it is a gzip stream (QEMU takes an arm64
/// `Image` or a bzImage as they are).
pub fn kernel_image(root: &Path, release: &str, out_dir: &Path) -> Result<PathBuf, Error> {
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    let head = std::fs::read(&vmlinuz)
        .map_err(|e| Error::Setup(format!("cannot read {}: {e}", vmlinuz.display())))?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        return Ok(vmlinuz);
    }
    let image = out_dir.join("Image");
    if !is_fresh(&image, &[&vmlinuz]) {
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(&vmlinuz)
            .output()
            .map_err(|e| Error::Setup(format!("cannot run gzip: {e}")))?;
        if !out.status.success() {
            return Err(Error::Setup(format!("`gzip -dc {}` failed", vmlinuz.display())));
        }
        std::fs::write(&image, out.stdout)
            .map_err(|e| Error::Setup(format!("cannot write {}: {e}", image.display())))?;
    }
    Ok(image)
}

/// A module's name as `depends=` and `modules.builtin` spell it: the file
/// name without `.ko[.xz|.zst|.gz]`, dashes as underscores.
pub fn module_name(file_name: &str) -> Option<String> {
    let stem = ["", ".xz", ".zst", ".gz"].iter().find_map(|c| file_name.strip_suffix(&format!(".ko{c}")))?;
    Some(stem.replace('-', "_"))
}

/// Every module file under `modules_dir` (recursively), by name.
pub fn module_index(modules_dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut index = BTreeMap::new();
    let mut todo = vec![modules_dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                index.insert(name, path);
            }
        }
    }
    index
}

fn le(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(len)?)?;
    Some(b.iter().rev().fold(0, |v, &x| (v << 8) | x as u64))
}

/// The bytes of section `name` of a little-endian ELF64 file.
pub fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return None;
    }
    let shoff = le(elf, 0x28, 8)? as usize;
    let entsize = le(elf, 0x3a, 2)? as usize;
    let count = le(elf, 0x3c, 2)? as usize;
    let strndx = le(elf, 0x3e, 2)? as usize;
    let section = |i: usize| -> Option<(usize, &'a [u8])> {
        let h = shoff.checked_add(i.checked_mul(entsize)?)?;
        let name = le(elf, h, 4)? as usize;
        let (off, size) = (le(elf, h + 0x18, 8)? as usize, le(elf, h + 0x20, 8)? as usize);
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, strtab) = section(strndx)?;
    (0..count).filter_map(section).find_map(|(n, data)| {
        let rest = strtab.get(n..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        (&rest[..end] == name.as_bytes()).then_some(data)
    })
}

/// The modules a module's `.modinfo` says it needs (`depends=a,b`).
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>, String> {
    let info =
        elf_section(elf, ".modinfo").ok_or("no .modinfo section (not a 64-bit little-endian module?)")?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list).split(',').map(|s| s.trim().replace('-', "_")).collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect())
}

/// What [`load_order`] learns of one module: its dependencies, `None`
/// when it is built in.
pub type Depends = Result<Option<Vec<String>>, String>;

/// The modules to load for `roots`, each after what it depends on.
/// `depends(name)` gives a module's dependencies, `Ok(None)` when the
/// kernel has it built in (nothing to load).
pub fn load_order(roots: &[&str], mut depends: impl FnMut(&str) -> Depends) -> Result<Vec<String>, String> {
    fn visit(
        name: &str,
        depends: &mut dyn FnMut(&str) -> Depends,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            return Err(format!("modules depend on each other in a cycle: {} -> {name}", path.join(" -> ")));
        }
        let Some(deps) = depends(name)? else {
            done.insert(name.to_string());
            return Ok(());
        };
        path.push(name.to_string());
        for dep in &deps {
            visit(dep, depends, path, done, order)?;
        }
        path.pop();
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }
    let (mut done, mut order) = (BTreeSet::new(), Vec::new());
    for root in roots {
        visit(root, &mut depends, &mut Vec::new(), &mut done, &mut order)?;
    }
    Ok(order)
}

/// A module's bytes, decompressed (`xz`, `zstd` or `gzip -dc`) if need be.
fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
        .into_iter()
        .find(|(s, _)| name.ends_with(s));
    match tool {
        None => std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}")),
        Some((_, tool)) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .map_err(|e| format!("cannot run {tool}: {e}"))?;
            if out.status.success() {
                Ok(out.stdout)
            } else {
                Err(format!("`{tool} -dc {name}` failed"))
            }
        }
    }
}

/// The modules of [`ROOT_MODULES`]' closure, in load order, with their
/// (decompressed) bytes.
pub fn needed_modules(modules_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let index = module_index(&modules_dir.join("kernel"));
    let builtin: BTreeSet<String> = std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next().and_then(module_name))
        .collect();
    let mut bytes = BTreeMap::new();
    let order = load_order(ROOT_MODULES, |name| {
        if let Some(path) = index.get(name) {
            let data = module_bytes(path)?;
            let deps = modinfo_depends(&data).map_err(|e| format!("{}: {e}", path.display()))?;
            bytes.insert(name.to_string(), data);
            Ok(Some(deps))
        } else if builtin.contains(name) {
            Ok(None)
        } else {
            Err(format!("module {name} is neither under {} nor built in", modules_dir.display()))
        }
    })
    .map_err(Error::Setup)?;
    Ok(order.into_iter().map(|n| (n.clone(), bytes.remove(&n).unwrap_or_default())).collect())
}

/// Builds `/init` (user/linux/init.c) for `arch` into `out_dir/init`.
pub fn build_init(ws: &Workspace, arch: Arch, out_dir: &Path) -> Result<PathBuf, Error> {
    let source = ws.root.join("user/linux/init.c");
    let binary = out_dir.join("init");
    if !is_fresh(&binary, &[&source]) {
        let compiler = setup::ensure_user_compiler(arch)?;
        let mut args: Vec<String> = vec!["-static".into(), "-s".into()];
        args.extend(userprogs::CFLAGS.iter().map(|f| f.to_string()));
        args.extend(["-o".to_string(), binary.display().to_string(), source.display().to_string()]);
        println!("xtask: the Linux reference's init: {compiler} {}", args.join(" "));
        let ok = run_ok(Command::new(compiler).args(&args));
        if !ok {
            return Err(Error::Build(format!("{compiler} failed for {}", source.display())));
        }
    }
    Ok(binary)
}

/// The initramfs's members: [`initramfs::layout`] (the usertests
/// multicall and its links, without busybox), then `/lib/modules/<name>.ko`
/// for each module, [`MODULES_LIST`] naming them in order, and `/init`.
pub fn initramfs_members(
    usertests: Vec<u8>,
    programs: &[String],
    modules: Vec<(String, Vec<u8>)>,
    init: Vec<u8>,
) -> Vec<Member> {
    let mut members = initramfs::layout(usertests, programs, None);
    members.push(Member::Dir { path: "lib".into() });
    members.push(Member::Dir { path: "lib/modules".into() });
    let mut list = String::new();
    for (name, data) in modules {
        let path = format!("lib/modules/{name}.ko");
        list.push_str(&format!("/{path}\n"));
        members.push(Member::File { path, mode: 0o644, data });
    }
    members.push(Member::File { path: MODULES_LIST.into(), mode: 0o644, data: list.into_bytes() });
    members.push(Member::File { path: "init".into(), mode: 0o755, data: init });
    members
}

/// The kernel command line: the console, quiet, on x86_64
/// `init_on_alloc=0` (Debian turns it on; the comparison of issue 16 was
/// made without it there), and after `--` the program and its arguments
/// for the init.
pub fn kernel_command_line(arch: Arch, program: &[&str]) -> String {
    let console = match arch {
        Arch::X86_64 => "console=ttyS0 init_on_alloc=0",
        Arch::Aarch64 => "console=ttyAMA0",
    };
    format!("{console} quiet -- {}", program.join(" "))
}

/// QEMU's command line for one Linux boot: BENCHMARKS.md's flags with the
/// CPU model, RAM and CPUs of `args` (as [`guest::bench_args`] set them).
pub fn qemu_command(
    args: &RunArgs,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    disks: &[VirtioDisk],
) -> QemuCommand {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"]);
    let machine = match args.arch {
        Arch::X86_64 => "pc",
        Arch::Aarch64 => "virt",
    };
    let cpu = args.cpu.clone().unwrap_or_else(|| "max".into());
    push(&["-M", machine, "-accel", "tcg,thread=multi", "-cpu", &cpu]);
    push(&["-m", &args.mem.to_string(), "-smp", &args.smp.to_string(), "-mem-prealloc"]);
    push(&["-kernel", &kernel.to_string_lossy(), "-initrd", &initrd.to_string_lossy(), "-append", cmdline]);
    for disk in disks {
        a.extend(disk.qemu_args());
    }
    QemuCommand { program: args.arch.qemu_program().to_string(), args: a }
}

/// Everything a Linux boot of `arch` needs, made (and cached) up front.
pub struct LinuxGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub release: String,
}

/// Fetches Debian's kernel, builds the init and the user programs, and
/// writes the initramfs (when its bytes changed).
pub fn prepare(ws: &Workspace, arch: Arch) -> Result<LinuxGuest, Error> {
    let root = fetch(ws, arch)?;
    let release = release(&root)?;
    let dir = cache_dir(ws, arch);
    let kernel = kernel_image(&root, &release, &dir)?;
    let modules = needed_modules(&root.join("lib/modules").join(&release))?;
    let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    println!("xtask: Linux {release} ({arch}): modules to load: {}", names.join(" "));
    let init = build_init(ws, arch, &dir)?;
    let built = userprogs::build(ws, arch)?;
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| Error::Build(format!("cannot read {}: {e}", p.display())));
    let members = initramfs_members(read(&built.binary)?, &built.names, modules, read(&init)?);
    let bytes = initramfs::archive(&members)
        .map_err(|e| Error::Build(format!("cannot write the Linux initramfs: {e}")))?;
    let initrd = dir.join("initramfs.cpio");
    if std::fs::read(&initrd).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&initrd, &bytes)
            .map_err(|e| Error::Build(format!("cannot write {}: {e}", initrd.display())))?;
        println!("xtask: wrote the Linux initramfs {} ({} KiB)", initrd.display(), bytes.len() / 1024);
    }
    Ok(LinuxGuest { kernel, initrd, release })
}

/// A Linux boot went well: the init said the program exited with 0, and
/// QEMU ended by itself (the power-off; on `pc` that is status 0, which
/// [`GuestExit`] calls a crash because it expects the debug-exit port).
pub fn linux_verdict(exit: GuestExit, report: &Report) -> Result<(), String> {
    match exit {
        GuestExit::Success | GuestExit::Crashed(Some(0)) => {}
        GuestExit::TimedOut => return Err("the guest ran out of time".into()),
        other => return Err(format!("QEMU ended unexpectedly ({other:?})")),
    }
    match &report.init_end {
        Some(InitEnd::Exited(0)) => Ok(()),
        Some(end) => Err(format!("the program {end}")),
        None => Err("the init never said how the program ended".into()),
    }
}

/// One boot of Linux running `program`.
fn linux_boot(
    ws: &Workspace,
    args: &RunArgs,
    guest: &LinuxGuest,
    program: &[&str],
) -> Result<RunOutcome, Error> {
    let scratch = disks::scratch_dir(&ws.target_dir.join("tmp"));
    let disk_set = disks::prepare(&scratch, &args.swap, false)?;
    let cmdline = kernel_command_line(args.arch, program);
    let cmd = qemu_command(args, &guest.kernel, &guest.initrd, &cmdline, &disk_set.disks);
    println!("xtask: running: {cmd}");
    let opts = RunOptions {
        timeout: args.timeout_secs.map(Duration::from_secs),
        echo: true,
        keep_lines: qemu::runner::DEFAULT_KEEP_LINES,
        ..RunOptions::default()
    };
    let outcome = qemu::run(&cmd, args.arch, &opts).map_err(|e| Error::Qemu(e.to_string()));
    drop(disk_set);
    outcome
}

/// Which way a unit is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// Rates (`.../s`) and percentages are better high; times and counts
/// (pages written, mismatches) low.
pub fn better(unit: &str) -> Better {
    if unit.ends_with("/s") || unit == "%" {
        Better::Higher
    } else {
        Better::Lower
    }
}

/// The median (the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A figure's values over the boots of one kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub unit: String,
    pub values: Vec<f64>,
}

/// Adds a boot's `BENCH` lines to `into` (by name, in first-seen order).
pub fn collect(into: &mut Vec<(String, Samples)>, report: &Report) {
    for b in &report.benches {
        match into.iter_mut().find(|(n, _)| *n == b.name) {
            Some((_, s)) => s.values.push(b.value),
            None => into.push((b.name.clone(), Samples { unit: b.unit.clone(), values: vec![b.value] })),
        }
    }
}

fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The side-by-side table of one profile: per figure both medians, the
/// ratio ours/Linux, which way the unit is better, and who is ahead by
/// how much; figures only one side printed are listed after it.
pub fn table(profile: &str, ours: &[(String, Samples)], linux: &[(String, Samples)]) -> String {
    let mut rows = vec![[
        "figure".to_string(),
        "unit".into(),
        "ours".into(),
        "Linux".into(),
        "ours/Linux".into(),
        "better".into(),
        "verdict".into(),
    ]];
    for (name, o) in ours {
        let Some((_, l)) = linux.iter().find(|(n, _)| n == name) else { continue };
        let (Some(om), Some(lm)) = (median(&o.values), median(&l.values)) else { continue };
        let dir = better(&o.unit);
        let ratio = if lm != 0.0 { number(om / lm) } else { "-".into() };
        let verdict = if om == lm {
            "equal".to_string()
        } else if om == 0.0 || lm == 0.0 {
            let ours_ahead = (dir == Better::Lower) == (om == 0.0);
            if ours_ahead {
                "ours ahead".into()
            } else {
                "Linux ahead".into()
            }
        } else {
            let (ahead, factor) = match dir {
                Better::Higher if om > lm => ("ours", om / lm),
                Better::Higher => ("Linux", lm / om),
                Better::Lower if om < lm => ("ours", lm / om),
                Better::Lower => ("Linux", om / lm),
            };
            format!("{ahead} {factor:.2}x")
        };
        let better = match dir {
            Better::Higher => "higher",
            Better::Lower => "LOWER",
        };
        rows.push([name.clone(), o.unit.clone(), number(om), number(lm), ratio, better.into(), verdict]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("xtask: profile {profile}: medians, this kernel (ours) against Linux\n");
    for row in &rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if (2..=4).contains(&i) {
                line.push_str(&format!("{}{cell}  ", " ".repeat(pad)));
            } else {
                line.push_str(&format!("{cell}{}  ", " ".repeat(pad)));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let only = |a: &[(String, Samples)], b: &[(String, Samples)]| -> Vec<String> {
        a.iter().filter(|(n, _)| !b.iter().any(|(m, _)| m == n)).map(|(n, _)| n.clone()).collect()
    };
    for (who, names) in [("ours", only(ours, linux)), ("Linux", only(linux, ours))] {
        if !names.is_empty() {
            out.push_str(&format!("  only {who} printed: {}\n", names.join(" ")));
        }
    }
    out
}

/// Every value of every boot, for the record.
pub fn raw_values(profile: &str, ours: &[(String, Samples)], linux: &[(String, Samples)]) -> String {
    let mut out = format!("xtask: profile {profile}: raw values per boot (ours | Linux)\n");
    let list = |s: Option<&Samples>| {
        s.map_or_else(
            || "-".to_string(),
            |s| s.values.iter().map(|&v| number(v)).collect::<Vec<_>>().join(" "),
        )
    };
    let mut names: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    names.extend(linux.iter().map(|(n, _)| n).filter(|n| !ours.iter().any(|(m, _)| m == *n)));
    for name in names {
        let find = |v: &[(String, Samples)]| v.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
        out.push_str(&format!("  {name}: {} | {}\n", list(find(ours).as_ref()), list(find(linux).as_ref())));
    }
    out
}

/// A profile of BENCHMARKS.md that both kernels run.
struct Profile {
    name: &'static str,
    /// The machine of the profile, from the bench machine.
    machine: fn(&RunArgs) -> RunArgs,
}

const PROFILES: &[Profile] = &[
    Profile { name: "main", machine: RunArgs::clone },
    Profile { name: "swap", machine: guest::swap_profile_args },
];

/// `cargo xtask bench --linux`.
pub fn bench(builder: &mut Builder, args: &LinuxBenchArgs) -> Result<(), Error> {
    let start = Instant::now();
    let (run, extra_qemu) = guest::bench_args(&args.run);
    setup::ensure_host_tools(run.arch, run.firmware, run.accel)?;
    // A failed download is said before minutes of booting.
    let linux = prepare(&builder.ws, run.arch)?;
    // The program this kernel runs as `init=/bin/mmbench`.
    let program = format!("/bin/{}", guest::USER_BENCH);
    let mut failures = Vec::new();
    let mut report = String::new();
    for profile in PROFILES {
        let machine = (profile.machine)(&run);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for boot in 1..=args.boots {
            let tag = format!("profile {} boot {boot}/{}", profile.name, args.boots);
            println!("xtask: {tag}: this kernel");
            let (outcome, verdict) =
                guest::bench_boot(builder, &machine, BenchMode::User(profile.name), &extra_qemu)?;
            if !verdict.is_pass() {
                failures.push(format!("{tag}, this kernel: {verdict}"));
            }
            collect(&mut ours, &outcome.report);
            println!("xtask: {tag}: Linux {}", linux.release);
            let outcome = linux_boot(&builder.ws, &machine, &linux, &[&program, profile.name])?;
            if let Err(why) = linux_verdict(outcome.exit, &outcome.report) {
                if let Some(text) = outcome.problem_text() {
                    eprint!("{text}");
                }
                failures.push(format!("{tag}, Linux: {why}"));
            }
            collect(&mut theirs, &outcome.report);
        }
        report.push_str(&table(profile.name, &ours, &theirs));
        report.push_str(&raw_values(profile.name, &ours, &theirs));
    }
    println!();
    print!("{report}");
    let what = format!(
        "bench --linux on {} ({} boots of each kernel per profile, Linux {})",
        run.arch, args.boots, linux.release
    );
    let secs = start.elapsed().as_secs_f64();
    if failures.is_empty() {
        println!("xtask: {what}: done in {secs:.0} s");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("xtask: FAILED: {f}");
        }
        Err(Error::Failed(format!("{what}: {} boots failed", failures.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu::disk::Backing;
    use qemu::parse_transcript;

    #[test]
    fn the_versioned_package_is_the_metapackages_dependency() {
        let amd = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(versioned_package(amd, "amd64").as_deref(), Some("linux-image-6.1.0-57-amd64"));
        let arm = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n";
        assert_eq!(versioned_package(arm, "arm64").as_deref(), Some("linux-image-6.1.0-57-arm64"));
        assert_eq!(versioned_package("linux-image-amd64\n  Recommends: firmware\n", "amd64"), None);
        assert_eq!(versioned_package(amd, "arm64"), None);
    }

    #[test]
    fn a_failed_fetch_says_what_to_run() {
        let e = fetch_error(
            Arch::Aarch64,
            "no network",
            Some("linux-image-6.1.0-57-arm64"),
            Path::new("/t/arm64"),
        )
        .to_string();
        assert!(e.contains("no network"), "{e}");
        assert!(e.contains("dpkg --add-architecture arm64 && apt-get update"), "{e}");
        assert!(e.contains("cd /t/arm64 && apt-get download linux-image-6.1.0-57-arm64:arm64"), "{e}");
        assert!(e.contains("dpkg-deb -x linux-image-6.1.0-57-arm64_*_arm64.deb root"), "{e}");
        let e = fetch_error(Arch::X86_64, "x", None, Path::new("/t")).to_string();
        assert!(e.contains("(as root: apt-get update)"), "{e}");
        assert!(e.contains("apt-cache depends linux-image-amd64"), "{e}");
    }

    #[test]
    fn module_names_are_spelt_as_depends_spells_them() {
        assert_eq!(module_name("virtio_blk.ko").as_deref(), Some("virtio_blk"));
        assert_eq!(module_name("virtio-rng.ko.xz").as_deref(), Some("virtio_rng"));
        assert_eq!(module_name("virtio_pci.ko.zst").as_deref(), Some("virtio_pci"));
        assert_eq!(module_name("modules.dep"), None);
    }

    /// A minimal ELF64 with a `.modinfo` section holding `info`.
    fn fake_module(info: &[u8]) -> Vec<u8> {
        let strtab = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let info_off = elf.len();
        elf.extend_from_slice(info);
        let str_off = elf.len();
        elf.extend_from_slice(strtab);
        let shoff = elf.len();
        let header = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, info_off, info.len()));
        elf.extend(header(10, str_off, strtab.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn depends_comes_from_the_modinfo_section() {
        let m = fake_module(b"license=GPL\0depends=virtio_ring,virtio-pci-legacy-dev\0name=virtio_pci\0");
        assert_eq!(modinfo_depends(&m).unwrap(), ["virtio_ring", "virtio_pci_legacy_dev"]);
        assert_eq!(modinfo_depends(&fake_module(b"depends=\0name=x\0")).unwrap(), Vec::<String>::new());
        assert!(modinfo_depends(b"not an elf").is_err());
        // A `depends=` outside the section is not read.
        let mut m = fake_module(b"name=x\0");
        m.extend_from_slice(b"\0depends=other\0");
        assert_eq!(modinfo_depends(&m).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn modules_load_after_their_dependencies_and_built_ins_are_skipped() {
        let graph: BTreeMap<&str, Option<Vec<&str>>> = [
            ("virtio_pci", Some(vec!["virtio_ring", "virtio_pci_modern_dev", "virtio"])),
            ("virtio_blk", Some(vec!["virtio", "virtio_ring"])),
            ("virtio", Some(vec!["virtio_ring"])),
            ("virtio_ring", Some(vec![])),
            ("virtio_pci_modern_dev", Some(vec!["builtin_one"])),
            ("builtin_one", None),
        ]
        .into_iter()
        .collect();
        let deps = |n: &str| match graph.get(n) {
            Some(d) => Ok(d.as_ref().map(|d| d.iter().map(|s| s.to_string()).collect())),
            None => Err(format!("no {n}")),
        };
        let order = load_order(&["virtio_pci", "virtio_blk"], deps).unwrap();
        assert_eq!(order, ["virtio_ring", "virtio_pci_modern_dev", "virtio", "virtio_pci", "virtio_blk"]);
        assert_eq!(load_order(&["missing"], deps).unwrap_err(), "no missing");
        let cycle = |n: &str| Ok(Some(vec![if n == "a" { "b".to_string() } else { "a".to_string() }]));
        assert!(load_order(&["a"], cycle).unwrap_err().contains("cycle: a -> b -> a"));
    }

    #[test]
    fn the_initramfs_has_init_the_modules_in_order_and_the_programs() {
        let members = initramfs_members(
            b"usertests".to_vec(),
            &["mmbench".to_string()],
            vec![("virtio_ring".into(), b"r".to_vec()), ("virtio_blk".into(), b"b".to_vec())],
            b"init".to_vec(),
        );
        let bytes = initramfs::archive(&members).unwrap();
        let files: BTreeMap<String, Vec<u8>> =
            cpio_reader::iter_files(&bytes).map(|e| (e.name().to_string(), e.file().to_vec())).collect();
        assert_eq!(files["init"], b"init");
        assert_eq!(files["bin/mmbench"], b"usertests");
        assert_eq!(files["lib/modules/virtio_blk.ko"], b"b");
        assert_eq!(files[MODULES_LIST], b"/lib/modules/virtio_ring.ko\n/lib/modules/virtio_blk.ko\n");
        // Every file's directory comes before it (Linux's unpacker makes none).
        let names: Vec<String> = cpio_reader::iter_files(&bytes).map(|e| e.name().to_string()).collect();
        for (i, n) in names.iter().enumerate() {
            if let Some((dir, _)) = n.rsplit_once('/') {
                assert!(names[..i].iter().any(|d| d == dir), "{n} comes before {dir}");
            }
        }
    }

    #[test]
    fn the_command_lines() {
        assert_eq!(
            kernel_command_line(Arch::X86_64, &["/bin/mmbench", "main"]),
            "console=ttyS0 init_on_alloc=0 quiet -- /bin/mmbench main"
        );
        assert_eq!(
            kernel_command_line(Arch::Aarch64, &["/bin/mmbench", "swap"]),
            "console=ttyAMA0 quiet -- /bin/mmbench swap"
        );
        let run =
            match crate::cli::parse(&["bench".into(), "--linux".into(), "--arch".into(), "aarch64".into()]) {
                Ok(crate::cli::Command::BenchLinux(a)) => a.run,
                other => panic!("{other:?}"),
            };
        let (run, extra) = guest::bench_args(&run);
        assert_eq!(extra, ["-mem-prealloc"]);
        let disk = VirtioDisk {
            id: "sw".into(),
            serial: "s".into(),
            backing: Backing::Raw("/dev/shm/s.img".into()),
        };
        let cmd = qemu_command(&run, Path::new("/k"), Path::new("/i"), "console=ttyAMA0", &[disk]);
        assert_eq!(cmd.program, "qemu-system-aarch64");
        assert_eq!(
            cmd.args.join(" "),
            "-nodefaults -no-user-config -display none -serial stdio -no-reboot -M virt \
             -accel tcg,thread=multi -cpu max,pauth-impdef=on -m 2048M -smp 4 -mem-prealloc \
             -kernel /k -initrd /i -append console=ttyAMA0 \
             -drive file=/dev/shm/s.img,if=none,format=raw,id=sw -device virtio-blk-pci,drive=sw,serial=s"
        );
    }

    #[test]
    fn a_linux_boot_passes_only_when_the_program_exited_with_0() {
        let ok = parse_transcript("BENCH name=a value=1 unit=u\ninit: exited with status 0\n");
        assert_eq!(linux_verdict(GuestExit::Crashed(Some(0)), &ok), Ok(()));
        assert_eq!(linux_verdict(GuestExit::Success, &ok), Ok(()));
        assert!(linux_verdict(GuestExit::TimedOut, &ok).is_err());
        assert!(linux_verdict(GuestExit::Crashed(Some(1)), &ok).is_err());
        let bad = parse_transcript("init: exited with status 1\n");
        assert_eq!(
            linux_verdict(GuestExit::Crashed(Some(0)), &bad).unwrap_err(),
            "the program exited with status 1"
        );
        let none = parse_transcript("init: cannot run swapon /dev/vda: Invalid argument\n");
        assert!(linux_verdict(GuestExit::Crashed(Some(0)), &none).unwrap_err().contains("cannot run swapon"));
        assert!(linux_verdict(GuestExit::Crashed(Some(0)), &parse_transcript("")).is_err());
    }

    #[test]
    fn medians_and_directions() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(better("faults/s"), Better::Higher);
        assert_eq!(better("GiB/s"), Better::Higher);
        assert_eq!(better("%"), Better::Higher);
        assert_eq!(better("ms"), Better::Lower);
        assert_eq!(better("us"), Better::Lower);
        assert_eq!(better("pages"), Better::Lower);
    }

    #[test]
    fn the_table_puts_medians_side_by_side() {
        let (mut ours, mut linux) = (Vec::new(), Vec::new());
        for v in ["1", "3", "2"] {
            collect(&mut ours, &parse_transcript(&format!(
                "BENCH name=f value={v}00 unit=faults/s\nBENCH name=fork value=52 unit=ms\nBENCH name=x_ktask value=1 unit=u\n"
            )));
        }
        for _ in 0..3 {
            collect(
                &mut linux,
                &parse_transcript(
                    "BENCH name=f value=100 unit=faults/s\nBENCH name=fork value=6.5 unit=ms\n",
                ),
            );
        }
        let t = table("main", &ours, &linux);
        let line = |n: &str| {
            t.lines().find(|l| l.trim_start().starts_with(n)).unwrap().split_whitespace().collect::<Vec<_>>()
        };
        assert_eq!(line("f "), ["f", "faults/s", "200", "100", "2.00", "higher", "ours", "2.00x"]);
        assert_eq!(line("fork"), ["fork", "ms", "52.0", "6.50", "8.00", "LOWER", "Linux", "8.00x"]);
        assert!(t.contains("only ours printed: x_ktask"), "{t}");
        let raw = raw_values("main", &ours, &linux);
        assert!(raw.contains("  f: 100 300 200 | 100 100 100\n"), "{raw}");
        assert!(raw.contains("  x_ktask: 1.00 1.00 1.00 | -\n"), "{raw}");
    }
}
