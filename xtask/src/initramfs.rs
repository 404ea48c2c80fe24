//! The initramfs every boot carries: a cpio `newc` archive (written with
//! the `cpio` crate) that is the root of the files user processes see.
//!
//! ```text
//! /bin/usertests          the project's user programs, one executable (crate::userprogs)
//! /bin/<program>          symlinks to usertests, one per program of user/
//! /bin/busybox            Debian's busybox-static, when it could be fetched
//! /bin/sh, cat, ...       symlinks to busybox (busybox::APPLETS)
//! /dev /proc /sys /tmp    empty directories (the kernel fills them)
//! /etc/passwd             one root line
//! /etc/initramfs.fnv      the FNV-1a hash of every archive byte before it
//! ```
//!
//! The check file comes last: the in-guest test `initrd::arrived_whole`
//! hashes the archive up to it, so a truncated or damaged initrd is caught.
//! The archive is written to `target/initramfs/<arch>.cpio` only when its
//! bytes change, so an unchanged one leaves the boot images fresh.
//!
//! x86_64 passes it as the `bootloader` crate's ramdisk (in the BIOS and
//! UEFI images, [`crate::kbuild`]); AArch64 with QEMU's `-initrd`
//! (`qemu::MachineConfig::initrd`).

use std::io::Write;
use std::path::PathBuf;

use cpio::newc::{Builder as Header, ModeFileType};
use qemu::Arch;

use crate::error::Error;
use crate::kbuild::Workspace;
use crate::{busybox, userprogs};

/// The file the archive's check hash is in (path without the leading `/`).
pub const CHECK_FILE: &str = "etc/initramfs.fnv";

/// The directories every initramfs has.
pub const DIRS: &[&str] = &["bin", "dev", "etc", "proc", "sys", "tmp"];

/// `/etc/passwd`: enough for programs that look up uid 0.
pub const PASSWD: &str = "root:x:0:0:root:/:/bin/sh\n";

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Dir { path: String },
    File { path: String, mode: u32, data: Vec<u8> },
    Symlink { path: String, target: String },
}

/// What goes in: the layout of the module doc, with the user programs'
/// executable and names, and busybox's bytes if there are any.
pub fn layout(usertests: Vec<u8>, programs: &[String], busybox: Option<Vec<u8>>) -> Vec<Member> {
    let mut members: Vec<Member> = DIRS.iter().map(|d| Member::Dir { path: d.to_string() }).collect();
    members.push(Member::File { path: "etc/passwd".into(), mode: 0o644, data: PASSWD.as_bytes().to_vec() });
    let multicall = userprogs::MULTICALL;
    members.push(Member::File { path: format!("bin/{multicall}"), mode: 0o755, data: usertests });
    for name in programs {
        members.push(Member::Symlink { path: format!("bin/{name}"), target: multicall.into() });
    }
    if let Some(data) = busybox {
        members.push(Member::File { path: "bin/busybox".into(), mode: 0o755, data });
        for applet in busybox::APPLETS {
            members.push(Member::Symlink { path: format!("bin/{applet}"), target: "busybox".into() });
        }
    }
    members
}

/// 64-bit FNV-1a (the kernel's test computes the same).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn entry(
    out: Vec<u8>,
    ino: u32,
    path: &str,
    mode: u32,
    kind: ModeFileType,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    let size =
        u32::try_from(data.len()).map_err(|_| std::io::Error::other(format!("{path} is over 4 GiB")))?;
    let nlink = if matches!(kind, ModeFileType::Directory) { 2 } else { 1 };
    let mut w = Header::new(path).ino(ino).mode(mode).nlink(nlink).set_mode_file_type(kind).write(out, size);
    w.write_all(data)?;
    w.finish()
}

/// The archive's bytes: `members` in order, then [`CHECK_FILE`], then the
/// trailer.
pub fn archive(members: &[Member]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ino = 1;
    for m in members {
        out = match m {
            Member::Dir { path } => entry(out, ino, path, 0o755, ModeFileType::Directory, &[])?,
            Member::File { path, mode, data } => entry(out, ino, path, *mode, ModeFileType::Regular, data)?,
            Member::Symlink { path, target } => {
                entry(out, ino, path, 0o777, ModeFileType::Symlink, target.as_bytes())?
            }
        };
        ino += 1;
    }
    let check = format!("{:016x}\n", fnv1a(&out));
    out = entry(out, ino, CHECK_FILE, 0o444, ModeFileType::Regular, check.as_bytes())?;
    cpio::newc::trailer(out)
}

/// Where the archive of `arch` is written.
pub fn path(ws: &Workspace, arch: Arch) -> PathBuf {
    ws.target_dir.join("initramfs").join(format!("{}.cpio", arch.name()))
}

/// Builds the user programs, fetches busybox, and writes the archive of
/// `arch` (when its bytes changed); returns its path.
pub fn build(ws: &Workspace, arch: Arch) -> Result<PathBuf, Error> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| Error::Build(format!("cannot read {}: {e}", p.display())))
    };
    let built = userprogs::build(ws, arch)?;
    let usertests = read(&built.binary)?;
    let busybox = busybox::fetch(ws, arch).map(|p| read(&p)).transpose()?;
    let bytes = archive(&layout(usertests, &built.names, busybox))
        .map_err(|e| Error::Build(format!("cannot write the {arch} initramfs: {e}")))?;
    let out = path(ws, arch);
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        let dir = out.parent().expect("the archive lives in a directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Build(format!("cannot create {}: {e}", dir.display())))?;
        let partial = out.with_extension("partial");
        std::fs::write(&partial, &bytes)
            .and_then(|()| std::fs::rename(&partial, &out))
            .map_err(|e| Error::Build(format!("cannot write {}: {e}", out.display())))?;
        println!("xtask: wrote the {arch} initramfs {} ({} KiB)", out.display(), bytes.len() / 1024);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let programs = ["first_touch".to_string()];
        archive(&layout(b"\x7fELF prog".to_vec(), &programs, Some(b"\x7fELF busybox".to_vec()))).unwrap()
    }

    /// What the kernel's reader (`cpio_reader`, used by the fs unit) sees.
    #[test]
    fn the_kernels_reader_sees_the_layout() {
        let bytes = sample();
        assert!(bytes.starts_with(b"070701"));
        let entries: Vec<_> = cpio_reader::iter_files(&bytes).collect();
        let names: Vec<&str> = entries.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "etc",
                "proc",
                "sys",
                "tmp",
                "etc/passwd",
                "bin/usertests",
                "bin/first_touch",
                "bin/busybox",
                "bin/sh",
                "bin/cat",
                "bin/echo",
                "bin/free",
                "bin/uname",
                "bin/ls",
                CHECK_FILE
            ]
        );
        let find = |n: &str| entries.iter().find(|e| e.name() == n).unwrap();
        // The file type is the mode's top bits (one value, not flags).
        let kind = |n: &str| find(n).mode().bits() & 0o170000;
        assert_eq!(find("bin/usertests").file(), b"\x7fELF prog");
        assert_eq!(kind("bin/usertests"), cpio_reader::Mode::REGULAR_FILE.bits());
        assert_eq!(find("bin/usertests").mode().bits() & 0o777, 0o755);
        assert_eq!(kind("bin/first_touch"), cpio_reader::Mode::SYMBOLIK_LINK.bits());
        assert_eq!(find("bin/first_touch").file(), b"usertests");
        assert_eq!(kind("bin"), cpio_reader::Mode::DIRECTORY.bits());
        assert_eq!(kind("bin/sh"), cpio_reader::Mode::SYMBOLIK_LINK.bits());
        assert_eq!(find("bin/sh").file(), b"busybox");
        assert_eq!(find("etc/passwd").file(), PASSWD.as_bytes());
    }

    #[test]
    fn the_check_file_hashes_everything_before_it() {
        let bytes = sample();
        let at = bytes.windows(CHECK_FILE.len()).position(|w| w == CHECK_FILE.as_bytes()).unwrap() - 110;
        let check = cpio_reader::iter_files(&bytes).find(|e| e.name() == CHECK_FILE).unwrap();
        let want = format!("{:016x}\n", fnv1a(&bytes[..at]));
        assert_eq!(check.file(), want.as_bytes());
        // Changing any earlier byte changes the hash.
        let mut damaged = bytes[..at].to_vec();
        damaged[200] ^= 1;
        assert_ne!(fnv1a(&damaged), fnv1a(&bytes[..at]));
    }

    #[test]
    fn without_busybox_there_are_no_applet_links() {
        let bytes = archive(&layout(vec![], &[], None)).unwrap();
        let bin: Vec<_> = cpio_reader::iter_files(&bytes)
            .filter(|e| e.name().starts_with("bin/"))
            .map(|e| e.name().to_string())
            .collect();
        assert_eq!(bin, ["bin/usertests"]);
        assert!(bytes.ends_with(&[0; 0]) && bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn fnv_is_the_standard_one() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
