//! Host setup checks: are QEMU and the UEFI firmware installed? Are the C
//! compilers of the user programs there ([`ensure_user_compiler`]: `gcc`
//! and Debian's `aarch64-linux-gnu-gcc`, each with a static glibc)? If not,
//! and we may (root, Debian's apt-get), install them; otherwise print the
//! exact commands to run and stop. [`ensure_foreign_arch`] lets apt fetch
//! arm64 packages (Debian's busybox for AArch64 guests).
//!
//! The retry with a pinned `qemu-utils` exists because some of the project's
//! machines carry a backported qemu-utils 10.x that `Breaks` qemu-system-common
//! 7.2; pinning qemu-utils to the version of qemu-system-x86 that apt would
//! install resolves it.

use std::path::{Path, PathBuf};
use std::process::Command;

use qemu::{Accel, Arch, Firmware, OVMF_CODE};

use crate::error::Error;

/// The Debian packages that provide everything the runner needs.
pub const PACKAGES: [&str; 3] = ["qemu-system-x86", "qemu-system-arm", "ovmf"];

/// A file the run needs that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// A program not found on PATH.
    Program(&'static str),
    /// A file not found at its fixed path.
    File(&'static str),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Program(p) => write!(f, "{p} (not on PATH)"),
            Missing::File(p) => write!(f, "{p}"),
        }
    }
}

/// What a run on `arch` with `firmware` needs and does not have.
/// `on_path` and `exists` are the lookups, passed in so tests can fake them.
pub fn missing_for(
    arch: Arch,
    firmware: Firmware,
    on_path: impl Fn(&str) -> bool,
    exists: impl Fn(&str) -> bool,
) -> Vec<Missing> {
    let mut missing = Vec::new();
    if !on_path(arch.qemu_program()) {
        missing.push(Missing::Program(arch.qemu_program()));
    }
    if arch == Arch::X86_64 && firmware == Firmware::Uefi && !exists(OVMF_CODE) {
        missing.push(Missing::File(OVMF_CODE));
    }
    missing
}

/// The path of `program` if it is an executable file on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads the `Candidate:` version from `apt-cache policy <package>`.
pub fn parse_candidate(policy: &str) -> Option<&str> {
    let version = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (!version.is_empty() && version != "(none)").then_some(version)
}

/// The install commands, as a user would type them (`sudo` when not root).
/// `candidate` is qemu-system-x86's candidate version, if known.
pub fn install_commands(sudo: bool, candidate: Option<&str>) -> Vec<String> {
    let s = if sudo { "sudo " } else { "" };
    let packages = PACKAGES.join(" ");
    let pin = match candidate {
        Some(v) => format!("qemu-utils={v}"),
        None => "qemu-utils=$(apt-cache policy qemu-system-x86 | sed -n 's/ *Candidate: //p')".to_string(),
    };
    vec![
        format!("{s}apt-get update"),
        format!("{s}env DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}"),
        format!(
            "# only if that fails because qemu-utils breaks qemu-system-common:\n\
             {s}env DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades {packages} {pin}"
        ),
    ]
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs an apt command, echoing it first; true on success.
fn apt(args: &[&str]) -> bool {
    let program = args[0];
    println!("xtask: running: DEBIAN_FRONTEND=noninteractive {}", args.join(" "));
    Command::new(program)
        .args(&args[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
}

fn candidate_version() -> Option<String> {
    let out = Command::new("apt-cache").args(["policy", "qemu-system-x86"]).output().ok()?;
    parse_candidate(&String::from_utf8_lossy(&out.stdout)).map(str::to_string)
}

/// Installs the packages as root with apt-get; true when apt-get succeeded.
fn install_with_apt() -> bool {
    println!("xtask: installing {} with apt-get", PACKAGES.join(", "));
    if !apt(&["apt-get", "update"]) {
        println!("xtask: apt-get update failed; trying the install anyway");
    }
    let mut install = vec!["apt-get", "install", "-y"];
    install.extend(PACKAGES);
    if apt(&install) {
        return true;
    }
    let Some(version) = candidate_version() else {
        println!("xtask: apt-cache policy qemu-system-x86 shows no candidate version; cannot retry");
        return false;
    };
    println!("xtask: retrying with qemu-utils pinned to qemu-system-x86's version {version}");
    let pin = format!("qemu-utils={version}");
    let mut retry = vec!["apt-get", "install", "-y", "--allow-downgrades"];
    retry.extend(PACKAGES);
    retry.push(&pin);
    apt(&retry)
}

/// Makes sure the host can run `arch` with `firmware` and `accel`, installing
/// what is missing when possible.
pub fn ensure_host_tools(arch: Arch, firmware: Firmware, accel: Accel) -> Result<(), Error> {
    if accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
        return Err(Error::Setup(
            "--accel kvm needs /dev/kvm, which this machine does not have; use --accel tcg".into(),
        ));
    }
    let check = || missing_for(arch, firmware, |p| find_on_path(p).is_some(), |f| Path::new(f).exists());
    let missing = check();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    println!("xtask: missing on this host: {list}");
    let root = is_root();
    let have_apt = find_on_path("apt-get").is_some();
    if root && have_apt && install_with_apt() {
        let still = check();
        if still.is_empty() {
            println!("xtask: installed; continuing");
            return Ok(());
        }
        let list = still.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(Error::Setup(format!("apt-get succeeded but these are still missing: {list}")));
    }
    let how = if have_apt {
        let intro = if root { "installing with apt-get failed; fix it and run" } else { "run" };
        let commands = install_commands(!root, candidate_version().as_deref());
        let lines: Vec<String> = commands.join("\n").lines().map(|l| format!("    {l}")).collect();
        format!("{intro}:\n{}", lines.join("\n"))
    } else {
        "install QEMU 7.2 or later (qemu-system-x86_64 and qemu-system-aarch64) and, for UEFI, \
         OVMF at /usr/share/OVMF/OVMF_CODE.fd with your package manager"
            .to_string()
    };
    Err(Error::Setup(format!("missing {list}; {how}")))
}

/// What compiles the user programs of one guest architecture: Debian's
/// compiler for it and the static glibc `-static` links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserToolchain {
    /// The compiler on PATH.
    pub compiler: &'static str,
    /// glibc's static archive, which `-static` needs.
    pub static_libc: &'static str,
    /// The Debian packages that provide both.
    pub packages: &'static [&'static str],
}

/// The toolchain for user programs of `arch` (the host is x86_64 Debian).
pub fn user_toolchain(arch: Arch) -> UserToolchain {
    match arch {
        Arch::X86_64 => UserToolchain {
            compiler: "gcc",
            static_libc: "/usr/lib/x86_64-linux-gnu/libc.a",
            packages: &["gcc", "libc6-dev"],
        },
        Arch::Aarch64 => UserToolchain {
            compiler: "aarch64-linux-gnu-gcc",
            static_libc: "/usr/aarch64-linux-gnu/lib/libc.a",
            packages: &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
        },
    }
}

/// What of `tc` is missing (`on_path` and `exists` as in [`missing_for`]).
pub fn missing_toolchain(
    tc: &UserToolchain,
    on_path: impl Fn(&str) -> bool,
    exists: impl Fn(&str) -> bool,
) -> Vec<Missing> {
    let mut missing = Vec::new();
    if !on_path(tc.compiler) {
        missing.push(Missing::Program(tc.compiler));
    }
    if !exists(tc.static_libc) {
        missing.push(Missing::File(tc.static_libc));
    }
    missing
}

/// Makes sure the C compiler for `arch`'s user programs is there,
/// installing its packages with apt-get when missing and allowed (root);
/// returns the compiler's name.
pub fn ensure_user_compiler(arch: Arch) -> Result<&'static str, Error> {
    let tc = user_toolchain(arch);
    let check = || missing_toolchain(&tc, |p| find_on_path(p).is_some(), |f| Path::new(f).exists());
    let missing = check();
    if missing.is_empty() {
        return Ok(tc.compiler);
    }
    let list = missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let packages = tc.packages.join(" ");
    println!("xtask: missing for the {arch} user programs: {list}");
    if is_root() && find_on_path("apt-get").is_some() {
        let mut install = vec!["apt-get", "install", "-y"];
        install.extend(tc.packages);
        if !apt(&install) {
            println!("xtask: apt-get install failed; updating the package lists and trying again");
            apt(&["apt-get", "update"]);
            apt(&install);
        }
        if check().is_empty() {
            return Ok(tc.compiler);
        }
    }
    let s = if is_root() { "" } else { "sudo " };
    Err(Error::Setup(format!(
        "missing {list}, needed to build the {arch} user programs; install them with:\n    \
         {s}env DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}"
    )))
}

/// Debian's name for `arch` (`dpkg --print-architecture`).
pub fn debian_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// Makes apt able to fetch packages of `debarch` (`dpkg --add-architecture`
/// and an update, as root, once); true when it can. Needed only to
/// download packages, never to install them.
pub fn ensure_foreign_arch(debarch: &str) -> bool {
    let out = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let native = out("dpkg", &["--print-architecture"]).unwrap_or_default();
    let foreign = out("dpkg", &["--print-foreign-architectures"]).unwrap_or_default();
    if native.trim() == debarch || foreign.lines().any(|l| l.trim() == debarch) {
        return true;
    }
    if !is_root() {
        println!("xtask: apt does not know the {debarch} architecture; as root: dpkg --add-architecture {debarch} && apt-get update");
        return false;
    }
    println!("xtask: running: dpkg --add-architecture {debarch}");
    let added =
        Command::new("dpkg").args(["--add-architecture", debarch]).status().is_ok_and(|s| s.success());
    added && apt(&["apt-get", "update"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_toolchains_name_their_packages() {
        let a64 = user_toolchain(Arch::Aarch64);
        assert_eq!(a64.compiler, "aarch64-linux-gnu-gcc");
        assert_eq!(a64.packages, ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]);
        assert_eq!(missing_toolchain(&a64, |_| false, |_| true), [Missing::Program("aarch64-linux-gnu-gcc")]);
        assert_eq!(
            missing_toolchain(&user_toolchain(Arch::X86_64), |_| true, |_| false),
            [Missing::File("/usr/lib/x86_64-linux-gnu/libc.a")]
        );
        assert_eq!(missing_toolchain(&a64, |_| true, |_| true), []);
        assert_eq!((debian_arch(Arch::X86_64), debian_arch(Arch::Aarch64)), ("amd64", "arm64"));
    }

    #[test]
    fn lists_what_is_missing() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        assert_eq!(missing_for(Arch::X86_64, Firmware::Bios, all, none), []);
        assert_eq!(
            missing_for(Arch::X86_64, Firmware::Uefi, all, none),
            [Missing::File("/usr/share/OVMF/OVMF_CODE.fd")]
        );
        assert_eq!(
            missing_for(Arch::Aarch64, Firmware::Bios, none, none),
            [Missing::Program("qemu-system-aarch64")]
        );
        assert_eq!(
            missing_for(Arch::X86_64, Firmware::Uefi, |p| p != "qemu-system-x86_64", all),
            [Missing::Program("qemu-system-x86_64")]
        );
    }

    #[test]
    fn reads_the_candidate_version() {
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  Version table:\n";
        assert_eq!(parse_candidate(policy), Some("1:7.2+dfsg-7+deb12u18+b3"));
        assert_eq!(parse_candidate("qemu-system-x86:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(parse_candidate(""), None);
    }

    #[test]
    fn install_commands_for_users() {
        let cmds = install_commands(true, Some("1:7.2+dfsg-7"));
        assert_eq!(cmds[0], "sudo apt-get update");
        assert_eq!(
            cmds[1],
            "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-x86 qemu-system-arm ovmf"
        );
        assert!(cmds[2].ends_with(
            "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades \
             qemu-system-x86 qemu-system-arm ovmf qemu-utils=1:7.2+dfsg-7"
        ));
        let cmds = install_commands(false, None);
        assert_eq!(cmds[0], "apt-get update");
        assert!(cmds[2].contains("qemu-utils=$(apt-cache policy qemu-system-x86"));
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("surely-not-a-program-xyz").is_none());
    }
}
