//! The disks a guest run attaches (virtio-blk, see `qemu::disk`):
//!
//! - the swap disk: a fresh raw image whose first page is a mkswap
//!   version-1 header made by `mm::swap::header::format` (the kernel's own
//!   header code, so the two cannot disagree), or the user's image
//!   (`--swap-image`, e.g. made by `mkswap`), attached as it is;
//! - the faulty disk (`--faulty-disk`): a fresh scratch image behind QEMU's
//!   `blkdebug`, with the [`FaultPlan`]'s failing pages; with it the
//!   stalling disk, a blank image whose drive stops answering after its
//!   first few requests (`qemu::disk`, "The stalling disk"); and the
//!   read-only disk, a fresh image of [`READ_ONLY_DISK_PAGES`] pages with a
//!   valid swap header, attached read-only, which swapon must refuse (the
//!   in-guest test `swap::a_read_only_disk_is_refused`).
//!
//! Fresh images are sparse files in `/dev/shm` (RAM-backed, so the host's
//! disk adds no noise; `target/tmp` where there is no `/dev/shm`), named
//! after this process, and removed when the [`DiskSet`] is dropped, after
//! the run. A user's image is never removed or changed by xtask.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use qemu::disk::{
    Backing, DiskSize, FaultPlan, VirtioDisk, FAULTY_DISK_PAGES, PAGE_BYTES, STALLING_DISK_PAGES,
    STALLING_SERIAL, SWAP_SERIAL,
};
use qemu::disk::{READ_ONLY_DISK_PAGES, READ_ONLY_SERIAL};

use crate::error::Error;

/// The volume label of swap images xtask makes.
pub const SWAP_LABEL: &[u8] = b"mmkernel-swap";

/// Which swap disk a run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapChoice {
    /// None (`--no-swap`, `--swap 0`).
    Off,
    /// A fresh image of this size, removed after the run.
    Fresh(DiskSize),
    /// The user's image, attached as it is.
    Image(PathBuf),
}

/// The disks of one run; fresh images are removed on drop.
#[derive(Debug, Default)]
pub struct DiskSet {
    pub disks: Vec<VirtioDisk>,
    /// Files to remove after the run.
    temporary: Vec<PathBuf>,
}

impl Drop for DiskSet {
    fn drop(&mut self) {
        for path in &self.temporary {
            // Already gone is fine; anything else is worth a word.
            if let Err(e) = fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("xtask: warning: cannot remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// Where fresh images go: `/dev/shm` if the host has it, else `fallback`.
pub fn scratch_dir(fallback: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        fallback.to_path_buf()
    }
}

/// Numbers the images of one xtask process (CI runs many guests).
static NEXT_IMAGE: AtomicUsize = AtomicUsize::new(0);

fn fresh_path(dir: &Path, what: &str) -> PathBuf {
    let n = NEXT_IMAGE.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("mmkernel-{}-{n}-{what}", std::process::id()))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Setup(format!("cannot {what} {}: {e}", path.display()))
}

/// A sparse raw image of `size` bytes whose first page is a mkswap v1
/// header for the whole image.
pub fn write_swap_image(path: &Path, size: DiskSize) -> Result<(), Error> {
    let header = mm::swap::header::format(size.pages(), &[], SWAP_LABEL)
        .map_err(|e| Error::Usage(format!("--swap {size}: {e}")))?;
    let mut file = File::create(path).map_err(|e| io_error(path, "create", e))?;
    file.write_all(&header).map_err(|e| io_error(path, "write", e))?;
    file.set_len(size.bytes()).map_err(|e| io_error(path, "size", e))?;
    Ok(())
}

/// Checks the user's swap image before a run: it must exist and be a
/// file. A header the kernel would refuse only earns a warning (the kernel
/// says so too, and goes on without swap).
pub fn check_swap_image(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path).map_err(|e| {
        Error::Usage(format!(
            "--swap-image: cannot use `{}`: {e} (make one with `truncate -s 256M swap.img && mkswap swap.img`, \
             or leave --swap-image out to get a fresh one)",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::Usage(format!("--swap-image: `{}` is not a regular file", path.display())));
    }
    let mut page = vec![0u8; PAGE_BYTES as usize];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut page));
    let verdict = match read {
        Ok(()) => {
            mm::swap::header::parse(&page, meta.len() / PAGE_BYTES).map(|_| ()).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("cannot read its first page: {e}")),
    };
    if let Err(why) = verdict {
        println!("xtask: warning: swap image {}: {why}; the kernel will not swap to it", path.display());
    }
    Ok(())
}

/// Makes the disks of a run in `dir`: the swap disk of `swap` first, then
/// the faulty disk, the stalling disk and the read-only disk if asked (so
/// the guest sees them in that PCI order).
pub fn prepare(dir: &Path, swap: &SwapChoice, faulty: bool) -> Result<DiskSet, Error> {
    let mut set = DiskSet::default();
    if (matches!(swap, SwapChoice::Fresh(_)) || faulty) && !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the directory", e))?;
    }
    match swap {
        SwapChoice::Off => {}
        SwapChoice::Fresh(size) => {
            let path = fresh_path(dir, "swap.img");
            set.temporary.push(path.clone());
            write_swap_image(&path, *size)?;
            println!(
                "xtask: swap disk: {} ({size}, mkswap v1 header; removed after the run)",
                path.display()
            );
            set.disks.push(VirtioDisk {
                id: "swap0".into(),
                serial: SWAP_SERIAL.into(),
                backing: Backing::Raw(path),
            });
        }
        SwapChoice::Image(path) => {
            check_swap_image(path)?;
            println!("xtask: swap disk: {} (yours; left as it is)", path.display());
            set.disks.push(VirtioDisk {
                id: "swap0".into(),
                serial: SWAP_SERIAL.into(),
                backing: Backing::Raw(path.clone()),
            });
        }
    }
    if faulty {
        let plan = FaultPlan::default();
        let image = fresh_path(dir, "faulty.img");
        let config = fresh_path(dir, "faulty.blkdebug");
        set.temporary.push(image.clone());
        set.temporary.push(config.clone());
        File::create(&image)
            .and_then(|f| f.set_len(FAULTY_DISK_PAGES * PAGE_BYTES))
            .map_err(|e| io_error(&image, "create", e))?;
        fs::write(&config, plan.blkdebug_config()).map_err(|e| io_error(&config, "write", e))?;
        println!(
            "xtask: faulty disk: {} ({} pages; writes of pages {:?} and reads of pages {:?} fail with EIO)",
            image.display(),
            FAULTY_DISK_PAGES,
            plan.write_fail,
            plan.read_fail
        );
        set.disks.push(VirtioDisk {
            id: "faulty0".into(),
            serial: plan.serial(),
            backing: Backing::Blkdebug { config, image },
        });
        let image = fresh_path(dir, "stalling.img");
        set.temporary.push(image.clone());
        File::create(&image)
            .and_then(|f| f.set_len(STALLING_DISK_PAGES * PAGE_BYTES))
            .map_err(|e| io_error(&image, "create", e))?;
        println!(
            "xtask: stalling disk: {} ({} pages; stops answering after its first few requests)",
            image.display(),
            STALLING_DISK_PAGES
        );
        set.disks.push(VirtioDisk {
            id: "stall0".into(),
            serial: STALLING_SERIAL.into(),
            backing: Backing::Stalling(image),
        });
        let image = fresh_path(dir, "readonly.img");
        set.temporary.push(image.clone());
        write_swap_image(&image, DiskSize::from_mib((READ_ONLY_DISK_PAGES * PAGE_BYTES) >> 20))?;
        println!("xtask: read-only disk: {} (a swap header, attached read-only)", image.display());
        set.disks.push(VirtioDisk {
            id: "readonly0".into(),
            serial: READ_ONLY_SERIAL.into(),
            backing: Backing::ReadOnly(image),
        });
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-disks-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_fresh_swap_image_has_a_header_the_kernel_accepts_and_is_removed() {
        let dir = temp_dir("fresh");
        let size: DiskSize = "1M".parse().unwrap();
        let set = prepare(&dir, &SwapChoice::Fresh(size), false).unwrap();
        assert_eq!(set.disks.len(), 1);
        let Backing::Raw(path) = &set.disks[0].backing else { panic!("{:?}", set.disks[0]) };
        let bytes = fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, size.bytes());
        let header = mm::swap::header::parse(&bytes[..4096], size.pages()).unwrap();
        assert_eq!(header.last_page, size.pages() - 1);
        assert_eq!(header.label_bytes(), SWAP_LABEL);
        assert_eq!(&bytes[4086..4096], b"SWAPSPACE2");
        let path = path.clone();
        drop(set);
        assert!(!path.exists(), "the image outlived the run");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_faulty_disk_comes_with_its_blkdebug_rules_the_stalling_and_the_read_only_disk() {
        let dir = temp_dir("faulty");
        let set = prepare(&dir, &SwapChoice::Off, true).unwrap();
        assert_eq!(set.disks.len(), 3, "the faulty disk, the stalling disk, then the read-only one");
        let Backing::Blkdebug { config, image } = &set.disks[0].backing else { panic!("{:?}", set.disks[0]) };
        assert_eq!(fs::metadata(image).unwrap().len(), FAULTY_DISK_PAGES * PAGE_BYTES);
        assert_eq!(fs::read_to_string(config).unwrap(), FaultPlan::default().blkdebug_config());
        assert_eq!(set.disks[0].serial, FaultPlan::default().serial());
        let Backing::Stalling(stalling) = &set.disks[1].backing else { panic!("{:?}", set.disks[1]) };
        assert_eq!(set.disks[1].serial, STALLING_SERIAL);
        let blank = fs::read(stalling).unwrap();
        assert_eq!(blank.len() as u64, STALLING_DISK_PAGES * PAGE_BYTES);
        assert!(blank.iter().all(|&b| b == 0), "no swap header: the kernel must not swap to it at boot");
        let Backing::ReadOnly(read_only) = &set.disks[2].backing else { panic!("{:?}", set.disks[2]) };
        assert_eq!(set.disks[2].serial, READ_ONLY_SERIAL);
        // A header the kernel would accept: only the disk's being read-only
        // makes swapon refuse it.
        let bytes = fs::read(read_only).unwrap();
        assert_eq!(bytes.len() as u64, READ_ONLY_DISK_PAGES * PAGE_BYTES);
        mm::swap::header::parse(&bytes[..4096], READ_ONLY_DISK_PAGES).unwrap();
        let (config, image, stalling, read_only) =
            (config.clone(), image.clone(), stalling.clone(), read_only.clone());
        drop(set);
        assert!(!config.exists() && !image.exists() && !stalling.exists() && !read_only.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_users_image_is_checked_and_kept() {
        let dir = temp_dir("user");
        let missing = dir.join("nope.img");
        let err = prepare(&dir, &SwapChoice::Image(missing), false).unwrap_err();
        assert!(err.message().starts_with("--swap-image: cannot use `"), "{err}");
        let mine = dir.join("mine.img");
        write_swap_image(&mine, "64K".parse().unwrap()).unwrap();
        let set = prepare(&dir, &SwapChoice::Image(mine.clone()), true).unwrap();
        assert_eq!(
            set.disks.len(),
            4,
            "swap disk first, then the faulty, the stalling and the read-only disk"
        );
        assert_eq!(set.disks[0].backing, Backing::Raw(mine.clone()));
        drop(set);
        assert!(mine.exists(), "xtask removed the user's image");
        assert_eq!(prepare(&dir, &SwapChoice::Off, false).unwrap().disks, []);
        fs::remove_dir_all(dir).unwrap();
    }
}
