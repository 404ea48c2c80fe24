//! Machine profiles: turn a [`MachineConfig`] into the exact QEMU command
//! line, one argv element per `String`, with no shell in between.
//!
//! Everything that decides *how* the guest is run lives here, in one pure
//! function ([`MachineConfig::command`]), so the command line can be unit
//! tested to the last argument and read in one place. The values match the
//! "QEMU configuration" table in BENCHMARKS.md and the "Boot" section of
//! ARCHITECTURE.md, plus one addition: x86_64 BIOS boots get `-vga std`,
//! because the bootloader's BIOS stages need VESA (VBE) and `-nodefaults`
//! leaves the machine without a display card.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Accel, Arch, ConfigError, Firmware, MemSize};
use crate::disk::VirtioDisk;

/// Where Debian's `ovmf` package installs the UEFI firmware for x86_64.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";

/// The I/O port of QEMU's `isa-debug-exit` device on x86_64. A byte `v`
/// written there makes QEMU exit with status `(v << 1) | 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The `fw_cfg` file through which x86_64 kernels receive their arguments.
pub const FW_CFG_CMDLINE: &str = "opt/kernel/cmdline";

/// The TCP port QEMU's gdb stub listens on with `-s`.
pub const GDB_PORT: u16 = 1234;

/// Everything needed to start one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub arch: Arch,
    pub accel: Accel,
    /// BIOS or UEFI; only [`Firmware::Bios`] is accepted on AArch64 (where
    /// it means "load the kernel directly").
    pub firmware: Firmware,
    pub mem: MemSize,
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// NUMA nodes (`-numa`, one memory backend each): `None` for a machine
    /// without NUMA; `Some(n)` splits the CPUs and RAM evenly into `n`
    /// nodes ([`crate::config::check_numa`]).
    pub numa: Option<u32>,
    /// A `-cpu` model replacing the profile's default (e.g. `max,pauth-impdef=on`).
    pub cpu: Option<String>,
    /// Start paused with QEMU's gdb stub on [`GDB_PORT`] (`-s -S`).
    pub gdb: bool,
    /// The kernel command line (`key=value` words separated by spaces).
    pub kernel_args: String,
    /// x86_64: the BIOS or UEFI disk image. AArch64: the raw kernel image (`.bin`).
    pub image: PathBuf,
    /// The UEFI firmware code, read only (x86_64 UEFI only).
    pub ovmf_code: PathBuf,
    /// The initial RAM disk. AArch64: passed with `-initrd` (QEMU names it
    /// in the device tree's `/chosen`). x86_64: not passed here, because
    /// the BIOS or UEFI image carries it as the bootloader's ramdisk.
    pub initrd: Option<PathBuf>,
    /// virtio-blk disks, attached in this order (so the guest finds them in
    /// this PCI order), after the machine's own devices.
    pub disks: Vec<VirtioDisk>,
    /// Arguments appended as they are, after everything else.
    pub extra_args: Vec<String>,
}

impl MachineConfig {
    /// A configuration with the defaults of `cargo xtask qemu boot`: TCG,
    /// BIOS, 512 MiB, one CPU, the profile's CPU model, no arguments.
    pub fn new(arch: Arch, image: impl Into<PathBuf>) -> Self {
        MachineConfig {
            arch,
            accel: Accel::Tcg,
            firmware: Firmware::Bios,
            mem: MemSize::default(),
            smp: 1,
            numa: None,
            cpu: None,
            gdb: false,
            kernel_args: String::new(),
            image: image.into(),
            ovmf_code: PathBuf::from(OVMF_CODE),
            initrd: None,
            disks: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// Refuses combinations this project cannot run. Checked by
    /// [`command`](Self::command) too; callers use it to fail before building.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_combination(self.arch, self.accel, self.firmware)?;
        if !(1..=crate::config::MAX_SMP).contains(&self.smp) {
            return Err(ConfigError::BadCpuCount(self.smp.to_string()));
        }
        if matches!(&self.cpu, Some(c) if c.trim().is_empty()) {
            return Err(ConfigError::EmptyCpuModel);
        }
        if let Some(nodes) = self.numa {
            crate::config::check_numa(nodes, self.smp, self.mem)?;
        }
        Ok(())
    }

    /// The CPU model passed with `-cpu`: the user's choice, else the profile's.
    pub fn cpu_model(&self) -> &str {
        if let Some(cpu) = &self.cpu {
            return cpu;
        }
        match (self.arch, self.accel) {
            (Arch::X86_64, Accel::Tcg | Accel::TcgIcount) => "max",
            // `-cpu host` and `-cpu max` abort under this machine's /dev/kvm;
            // qemu64 plus NX (which the kernel's page tables use) runs.
            (Arch::X86_64, Accel::Kvm) => "qemu64,+nx",
            // `max` has PAN (ARMv8.1), which user mode turns on; cortex-a72
            // (ARMv8.0) has not. Measured under TCG, runs interleaved: the
            // in-guest suite takes as long on both (33-44 s against 30-50 s
            // at one CPU; the spread is the machine's load).
            (Arch::Aarch64, _) => "max",
        }
    }

    /// Things that are allowed but probably a mistake, to print before running.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.accel == Accel::Kvm {
            if let Some(cpu) = &self.cpu {
                let model = cpu.split(',').next().unwrap_or("");
                if model == "host" || model == "max" {
                    out.push(format!(
                        "-cpu {cpu} with KVM aborts on the project's machines (their /dev/kvm is a \
                         software hypervisor); leave --cpu out to get qemu64,+nx"
                    ));
                }
            }
        }
        out
    }

    /// The full QEMU command line.
    pub fn command(&self) -> Result<QemuCommand, ConfigError> {
        self.validate()?;
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));

        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&["-serial", "stdio", "-no-reboot"]);
        push(&["-M", machine_type(self.arch)]);
        push(&["-accel", accel_option(self.accel)]);
        if self.accel == Accel::TcgIcount {
            push(&["-icount", "shift=0"]);
        }
        push(&["-cpu", self.cpu_model()]);
        push(&["-m", &self.mem.to_string()]);
        push(&["-smp", &self.smp.to_string()]);
        if let Some(nodes) = self.numa {
            args.extend(numa_args(nodes, self.smp, self.mem));
        }
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));

        match self.arch {
            Arch::X86_64 => {
                let exit_dev = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
                push(&["-device", &exit_dev]);
                match self.firmware {
                    // The bootloader crate's BIOS stage 2 sets a VESA mode and
                    // stops (silently: it panics before any serial output) when
                    // there is no VBE, and `-nodefaults` removes the VGA card.
                    Firmware::Bios => push(&["-vga", "std"]),
                    // OVMF boots the UEFI image without any display device.
                    Firmware::Uefi => {}
                }
                if self.firmware == Firmware::Uefi {
                    let pflash = format!(
                        "if=pflash,format=raw,readonly=on,file={}",
                        escape_option_value(&path_text(&self.ovmf_code))
                    );
                    push(&["-drive", &pflash]);
                }
                let image = escape_option_value(&path_text(&self.image));
                match self.firmware {
                    Firmware::Bios => push(&["-drive", &format!("format=raw,file={image},if=ide,index=0")]),
                    // With a boot index QEMU hands OVMF a boot order, and
                    // OVMF then connects only the devices it names instead
                    // of every disk: it leaves the virtio disks alone, so
                    // the stalling disk's burst (`crate::disk`) is the
                    // kernel's, and booting skips OVMF's partition scans.
                    Firmware::Uefi => {
                        push(&["-drive", &format!("format=raw,file={image},if=none,id=boot")]);
                        push(&["-device", "ide-hd,drive=boot,bootindex=0"]);
                    }
                }
                if !self.kernel_args.is_empty() {
                    let cmdline =
                        format!("name={FW_CFG_CMDLINE},string={}", escape_option_value(&self.kernel_args));
                    push(&["-fw_cfg", &cmdline]);
                }
            }
            Arch::Aarch64 => {
                push(&["-semihosting-config", "enable=on,target=native"]);
                // `-kernel` and `-append` take their value verbatim (they are
                // not `key=value,...` options), so nothing is escaped here.
                push(&["-kernel", &path_text(&self.image)]);
                if let Some(initrd) = &self.initrd {
                    push(&["-initrd", &path_text(initrd)]);
                }
                if !self.kernel_args.is_empty() {
                    push(&["-append", &self.kernel_args]);
                }
            }
        }
        if self.gdb {
            push(&["-s", "-S"]);
        }
        for disk in &self.disks {
            args.extend(disk.qemu_args());
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(QemuCommand { program: self.arch.qemu_program().to_string(), args })
    }
}

/// The options of `nodes` NUMA nodes over `smp` CPUs and `mem` of RAM
/// (checked by [`crate::config::check_numa`]): per node a RAM backend of
/// its share and a `-numa node` with its CPUs, in order (node 0 has the
/// first CPUs and the lowest RAM). The same on `pc` and `virt`: QEMU turns
/// them into an ACPI SRAT or `numa-node-id`s in the device tree.
pub fn numa_args(nodes: u32, smp: u32, mem: MemSize) -> Vec<String> {
    let (cpus, mib) = (smp / nodes, mem.mib() / nodes as u64);
    let mut args = Vec::new();
    for node in 0..nodes {
        let (first, last) = (node * cpus, node * cpus + cpus - 1);
        let cpus = if first == last { first.to_string() } else { format!("{first}-{last}") };
        args.extend([
            "-object".to_string(),
            format!("memory-backend-ram,id=m{node},size={mib}M"),
            "-numa".to_string(),
            format!("node,nodeid={node},cpus={cpus},memdev=m{node}"),
        ]);
    }
    args
}

/// Refuses an architecture/accelerator/firmware combination that cannot run.
pub fn check_combination(arch: Arch, accel: Accel, firmware: Firmware) -> Result<(), ConfigError> {
    if arch == Arch::Aarch64 && firmware == Firmware::Uefi {
        return Err(ConfigError::FirmwareUnsupported { arch, firmware });
    }
    if arch == Arch::Aarch64 && accel == Accel::Kvm {
        return Err(ConfigError::AccelUnsupported {
            arch,
            accel,
            why: "KVM needs an AArch64 host and `-cpu host`, which this x86_64 machine cannot \
                  provide; use --accel tcg",
        });
    }
    Ok(())
}

fn machine_type(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "pc",
        Arch::Aarch64 => "virt",
    }
}

fn accel_option(accel: Accel) -> &'static str {
    match accel {
        Accel::Tcg => "tcg,thread=multi",
        Accel::Kvm => "kvm",
        // QEMU counts instructions only with one translator thread.
        Accel::TcgIcount => "tcg,thread=single",
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Escapes a value inside a QEMU `key=value,key=value` option: a literal
/// comma is written as two commas.
pub fn escape_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// The line to print when a guest waits for a debugger.
pub fn gdb_hint(elf: &Path) -> String {
    format!(
        "qemu: the guest is paused waiting for gdb; attach with: gdb {} -ex 'target remote localhost:{GDB_PORT}'",
        elf.display()
    )
}

/// A QEMU program and its arguments, ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    pub program: String,
    pub args: Vec<String>,
}

impl QemuCommand {
    /// A [`Command`] for this program and these arguments (no stdio set up).
    pub fn to_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }
}

impl fmt::Display for QemuCommand {
    /// The command as a user could paste it into a POSIX shell.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// Quotes a word for a POSIX shell, only when it needs it.
fn shell_quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=,:+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(cfg: &MachineConfig) -> Vec<String> {
        let cmd = cfg.command().expect("valid config");
        std::iter::once(cmd.program).chain(cmd.args).collect()
    }

    /// A profile's own options, as (flag, value) pairs.
    type Options<'a> = &'a [(&'a str, &'a str)];

    /// The exact argv of a TCG profile: `program`, the options every
    /// profile starts with (`[machine, cpu, mem, smp]` filling in the values
    /// that differ), then the profile's `own` options as (flag, value) pairs.
    fn expected_argv(program: &str, [machine, cpu, mem, smp]: [&str; 4], own: Options) -> Vec<String> {
        let mut argv: Vec<String> =
            [program, "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"]
                .map(String::from)
                .to_vec();
        let common =
            [("-M", machine), ("-accel", "tcg,thread=multi"), ("-cpu", cpu), ("-m", mem), ("-smp", smp)];
        for (flag, value) in common.iter().chain(own) {
            argv.extend([flag.to_string(), value.to_string()]);
        }
        argv
    }

    /// The exact argv of each profile: x86_64 with BIOS and with UEFI, and AArch64.
    #[test]
    fn exact_argv_of_each_profile() {
        let bios = MachineConfig {
            kernel_args: "test=all seed=7".into(),
            ..MachineConfig::new(Arch::X86_64, "target/images/kernel-x86_64-bios.img")
        };
        // No kernel arguments: no -fw_cfg at all.
        let uefi = MachineConfig {
            firmware: Firmware::Uefi,
            smp: 4,
            mem: "2G".parse().unwrap(),
            ..MachineConfig::new(Arch::X86_64, "/t/kernel-x86_64-uefi.img")
        };
        let aarch64 = MachineConfig {
            kernel_args: "smoke=1 test=a,b".into(),
            ..MachineConfig::new(Arch::Aarch64, "target/images/kernel-aarch64.bin")
        };
        let debug_exit = ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04");
        let cases: [(MachineConfig, &str, [&str; 4], Options<'_>); 3] = [
            (
                bios,
                "qemu-system-x86_64",
                ["pc", "max", "512M", "1"],
                &[
                    debug_exit,
                    ("-vga", "std"),
                    ("-drive", "format=raw,file=target/images/kernel-x86_64-bios.img,if=ide,index=0"),
                    ("-fw_cfg", "name=opt/kernel/cmdline,string=test=all seed=7"),
                ],
            ),
            (
                uefi,
                "qemu-system-x86_64",
                ["pc", "max", "2048M", "4"],
                &[
                    debug_exit,
                    ("-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd"),
                    ("-drive", "format=raw,file=/t/kernel-x86_64-uefi.img,if=none,id=boot"),
                    ("-device", "ide-hd,drive=boot,bootindex=0"),
                ],
            ),
            (
                aarch64,
                "qemu-system-aarch64",
                ["virt", "max", "512M", "1"],
                &[
                    ("-semihosting-config", "enable=on,target=native"),
                    ("-kernel", "target/images/kernel-aarch64.bin"),
                    ("-append", "smoke=1 test=a,b"),
                ],
            ),
        ];
        for (cfg, program, head, own) in cases {
            assert_eq!(argv(&cfg), expected_argv(program, head, own), "{} ({})", cfg.arch, cfg.firmware);
        }
    }

    #[test]
    fn fw_cfg_value_doubles_commas_and_keeps_spaces_in_one_element() {
        let mut cfg = MachineConfig::new(Arch::X86_64, "k.img");
        cfg.kernel_args = "test=pgtable::map,huge bug=x".into();
        let args = cfg.command().unwrap().args;
        let i = args.iter().position(|a| a == "-fw_cfg").unwrap();
        assert_eq!(args[i + 1], "name=opt/kernel/cmdline,string=test=pgtable::map,,huge bug=x");
        assert_eq!(args.len(), i + 2);
    }

    #[test]
    fn image_paths_with_commas_are_escaped_in_drive_options() {
        let mut cfg = MachineConfig::new(Arch::X86_64, "/a,b/k.img");
        cfg.firmware = Firmware::Uefi;
        cfg.ovmf_code = "/fw,x/OVMF.fd".into();
        let args = cfg.command().unwrap().args;
        assert!(args.contains(&"if=pflash,format=raw,readonly=on,file=/fw,,x/OVMF.fd".to_string()));
        assert!(args.contains(&"format=raw,file=/a,,b/k.img,if=none,id=boot".to_string()));
        // -kernel takes its value verbatim.
        let cfg = MachineConfig::new(Arch::Aarch64, "/a,b/k.bin");
        assert!(cfg.command().unwrap().args.contains(&"/a,b/k.bin".to_string()));
    }

    #[test]
    fn the_initrd_goes_to_qemu_on_aarch64_only() {
        let mut cfg = MachineConfig::new(Arch::Aarch64, "k.bin");
        cfg.initrd = Some("/t/initramfs/aarch64.cpio".into());
        let args = cfg.command().unwrap().args;
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i - 1], "k.bin", "-initrd follows -kernel");
        assert_eq!(args[i + 1], "/t/initramfs/aarch64.cpio");
        // The x86_64 image carries its ramdisk itself.
        let mut cfg = MachineConfig::new(Arch::X86_64, "k.img");
        cfg.initrd = Some("/t/initramfs/x86_64.cpio".into());
        assert!(!cfg.command().unwrap().args.iter().any(|a| a.contains("initr")));
    }

    #[test]
    fn kvm_on_x86_64_uses_qemu64_with_nx() {
        let mut cfg = MachineConfig::new(Arch::X86_64, "k.img");
        cfg.accel = Accel::Kvm;
        let args = cfg.command().unwrap().args;
        let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(at("-accel"), "kvm");
        assert_eq!(at("-cpu"), "qemu64,+nx");
        assert!(cfg.warnings().is_empty());
        cfg.cpu = Some("max".into());
        assert_eq!(cfg.warnings().len(), 1);
    }

    #[test]
    fn tcg_icount_counts_instructions_on_one_thread() {
        for arch in Arch::ALL {
            let mut cfg = MachineConfig::new(arch, "k.img");
            cfg.accel = Accel::TcgIcount;
            cfg.smp = 4;
            let args = cfg.command().unwrap().args;
            let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
            assert_eq!(
                (at("-accel"), at("-icount"), at("-cpu")),
                ("tcg,thread=single".into(), "shift=0".into(), "max".into())
            );
        }
        let args = MachineConfig::new(Arch::X86_64, "k.img").command().unwrap().args;
        assert!(!args.iter().any(|a| a == "-icount"), "plain TCG counts no instructions");
    }

    #[test]
    fn cpu_override_gdb_and_extra_args() {
        let mut cfg = MachineConfig::new(Arch::Aarch64, "k.bin");
        cfg.cpu = Some("max,pauth-impdef=on".into());
        cfg.gdb = true;
        cfg.extra_args = vec!["-drive".into(), "file=swap.img,if=none,format=raw,id=sw".into()];
        let args = cfg.command().unwrap().args;
        let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(at("-cpu"), "max,pauth-impdef=on");
        // no -append when there are no kernel arguments
        assert!(!args.contains(&"-append".to_string()));
        let tail: Vec<&str> = args[args.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["-s", "-S", "-drive", "file=swap.img,if=none,format=raw,id=sw"]);
    }

    #[test]
    fn disks_come_after_the_machine_and_before_extra_args() {
        use crate::disk::{Backing, SWAP_SERIAL};
        for arch in Arch::ALL {
            let mut cfg = MachineConfig::new(arch, "k");
            cfg.disks = vec![VirtioDisk {
                id: "swap0".into(),
                serial: SWAP_SERIAL.into(),
                backing: Backing::Raw("/dev/shm/s.img".into()),
            }];
            cfg.extra_args = vec!["-mem-prealloc".into()];
            let args = cfg.command().unwrap().args;
            let tail: Vec<&str> = args[args.len() - 5..].iter().map(String::as_str).collect();
            assert_eq!(
                tail,
                [
                    "-drive",
                    "file=/dev/shm/s.img,if=none,format=raw,id=swap0",
                    "-device",
                    "virtio-blk-pci,drive=swap0,serial=swap0",
                    "-mem-prealloc"
                ],
                "{arch}"
            );
        }
    }

    #[test]
    fn numa_nodes_split_cpus_and_ram_on_both_machines() {
        for arch in Arch::ALL {
            let mut cfg = MachineConfig::new(arch, "k");
            cfg.smp = 4;
            cfg.numa = Some(2);
            let args = cfg.command().unwrap().args;
            let at = args.iter().position(|a| a == "-smp").unwrap() + 2;
            assert_eq!(
                args[at..at + 8],
                [
                    "-object",
                    "memory-backend-ram,id=m0,size=256M",
                    "-numa",
                    "node,nodeid=0,cpus=0-1,memdev=m0",
                    "-object",
                    "memory-backend-ram,id=m1,size=256M",
                    "-numa",
                    "node,nodeid=1,cpus=2-3,memdev=m1"
                ],
                "{arch}"
            );
            cfg.smp = 2;
            assert!(cfg.command().unwrap().args.contains(&"node,nodeid=1,cpus=1,memdev=m1".to_string()));
            cfg.smp = 3;
            assert!(matches!(cfg.command(), Err(ConfigError::BadNuma { .. })));
            cfg.numa = None;
            assert!(!cfg.command().unwrap().args.contains(&"-numa".to_string()));
        }
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let mut cfg = MachineConfig::new(Arch::Aarch64, "k.bin");
        cfg.firmware = Firmware::Uefi;
        assert!(matches!(cfg.command(), Err(ConfigError::FirmwareUnsupported { .. })));
        cfg.firmware = Firmware::Bios;
        cfg.accel = Accel::Kvm;
        let err = cfg.command().unwrap_err();
        assert!(err.to_string().starts_with("--accel kvm is not supported on aarch64"), "{err}");
        let mut cfg = MachineConfig::new(Arch::X86_64, "k.img");
        cfg.smp = 0;
        assert!(matches!(cfg.command(), Err(ConfigError::BadCpuCount(_))));
        cfg.smp = 1;
        cfg.cpu = Some(" ".into());
        assert_eq!(cfg.command(), Err(ConfigError::EmptyCpuModel));
    }

    #[test]
    fn display_quotes_for_the_shell() {
        let mut cfg = MachineConfig::new(Arch::Aarch64, "my dir/k.bin");
        cfg.kernel_args = "a=1 b=it's".into();
        let shown = cfg.command().unwrap().to_string();
        assert!(shown.starts_with("qemu-system-aarch64 -nodefaults "), "{shown}");
        assert!(shown.contains(" -kernel 'my dir/k.bin' "), "{shown}");
        assert!(shown.ends_with(r" -append 'a=1 b=it'\''s'"), "{shown}");
    }

    #[test]
    fn gdb_hint_names_the_elf_and_port() {
        let hint = gdb_hint(Path::new("target/x/kernel"));
        assert!(hint.contains("gdb target/x/kernel"));
        assert!(hint.contains("localhost:1234"));
    }
}
