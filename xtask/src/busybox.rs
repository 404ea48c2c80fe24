//! Debian's `busybox-static` for the guest's architecture, fetched once
//! with `apt-get download` into `target/busybox/<debarch>/` and unpacked
//! there with `dpkg-deb -x`; the initramfs ([`crate::initramfs`]) puts
//! its `bin/busybox` at `/bin/busybox`. The arm64 package needs apt to
//! know that architecture ([`crate::setup::ensure_foreign_arch`]).
//!
//! Busybox is a program nobody here wrote, run to see that the kernel's
//! Linux ABI is the real one; a machine that cannot fetch it (offline, not
//! Debian) still builds an initramfs, without it, and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use qemu::Arch;

use crate::kbuild::Workspace;
use crate::setup;

/// The Debian package.
pub const PACKAGE: &str = "busybox-static";

/// The applets the initramfs links to `/bin/busybox`.
pub const APPLETS: &[&str] = &["sh", "cat", "echo", "free", "uname", "ls"];

/// The cache directory of `arch`'s package.
pub fn cache_dir(ws: &Workspace, arch: Arch) -> PathBuf {
    ws.target_dir.join("busybox").join(setup::debian_arch(arch))
}

/// The unpacked binary, once fetched.
pub fn binary_path(ws: &Workspace, arch: Arch) -> PathBuf {
    cache_dir(ws, arch).join("root").join("bin").join("busybox")
}

fn run(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

/// The busybox binary for `arch`, fetched and unpacked when not cached;
/// `None` (with the reason printed) when that is not possible here.
pub fn fetch(ws: &Workspace, arch: Arch) -> Option<PathBuf> {
    let binary = binary_path(ws, arch);
    if binary.is_file() {
        return Some(binary);
    }
    let debarch = setup::debian_arch(arch);
    let dir = cache_dir(ws, arch);
    let skip = |why: String| {
        println!("xtask: warning: no busybox in the {arch} initramfs: {why}");
        None
    };
    if setup::find_on_path("apt-get").is_none() || setup::find_on_path("dpkg-deb").is_none() {
        return skip("apt-get and dpkg-deb are needed to fetch Debian's busybox-static".into());
    }
    if !setup::ensure_foreign_arch(debarch) {
        return skip(format!("apt cannot fetch {debarch} packages here"));
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return skip(format!("cannot create {}: {e}", dir.display()));
    }
    let spec = format!("{PACKAGE}:{debarch}");
    println!("xtask: running: apt-get download {spec} (in {})", dir.display());
    if !run(Command::new("apt-get").args(["download", &spec]).current_dir(&dir)) {
        return skip(format!("`apt-get download {spec}` failed"));
    }
    let Some(deb) = find_deb(&dir, debarch) else {
        return skip(format!("apt-get download left no {PACKAGE}_*_{debarch}.deb in {}", dir.display()));
    };
    let root = dir.join("root");
    if !run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root)) {
        return skip(format!("`dpkg-deb -x {}` failed", deb.display()));
    }
    if binary.is_file() {
        Some(binary)
    } else {
        skip(format!("{} holds no bin/busybox", deb.display()))
    }
}

fn find_deb(dir: &Path, debarch: &str) -> Option<PathBuf> {
    let suffix = format!("_{debarch}.deb");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PACKAGE) && n.ends_with(&suffix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths() {
        let ws = Workspace::new("/w".into(), None);
        assert_eq!(binary_path(&ws, Arch::Aarch64), Path::new("/w/target/busybox/arm64/root/bin/busybox"));
        assert_eq!(cache_dir(&ws, Arch::X86_64), Path::new("/w/target/busybox/amd64"));
    }
}
