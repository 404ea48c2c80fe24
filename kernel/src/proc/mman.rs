//! The memory system calls over the process's address space
//! ([`crate::vm::space::AddressSpace`]): `brk`, `mmap` (anonymous and
//! private), `munmap`, `mprotect`, `mremap`, `madvise` and `mincore`.
//!
//! - `mmap` without `MAP_FIXED` takes the hint when that range is free,
//!   else the highest free range below the stack's gap (top down, as
//!   Linux: the room above the program stays for its heap); 2 MiB aligned
//!   from 2 MiB up, so that a
//!   huge page fits from the first byte. `MAP_FIXED` unmaps first;
//!   `MAP_FIXED_NOREPLACE` fails with `EEXIST` over a mapping. Shared
//!   anonymous memory is not supported (`EINVAL`): no two spaces share
//!   pages here. File mappings are a private copy of the file
//!   ([`super::files::map_file`]).
//! - `brk` grows and shrinks the heap area after the program; a break
//!   that cannot grow (a mapping is in the way) stays where it was, as
//!   in Linux.
//! - `madvise`: `DONTNEED` and `FREE` drop the pages, `PAGEOUT` writes
//!   them to swap now, `HUGEPAGE`/`NOHUGEPAGE` set the areas' THP mode,
//!   `DONTFORK`/`DOFORK` mark ranges a fork leaves out (merged when they
//!   touch, at most `MAX_DONTFORK` apart, else `ENOMEM`), `COLD` moves the
//!   pages this process maps alone to the inactive LRU list (reclaim takes
//!   them first; nothing is written), the access-pattern hints are
//!   accepted and change nothing.
//! - `mremap` shrinks in place, grows in place when the range after is
//!   free, and otherwise (`MREMAP_MAYMOVE`) maps a new range, copies the
//!   contents over and unmaps the old one.
//! - `mincore` reports the pages a present entry maps
//!   ([`AddressSpace::resident`]; a page in swap is not resident).
//!
//! Locks: the process's `mm` lock only for a moment to read or set the
//! break and the `DONTFORK` ranges, never across a space operation (an
//! unmap waits for a TLB shootdown, which needs interrupts on).

use super::syscall::{Ctx, Errno, SysResult};
use crate::vm::space::{AddressSpace, Advice};
use crate::vm::uaccess::{copy_from_user, copy_to_user};
use alloc::sync::Arc;
use alloc::vec;
use linux_raw_sys::general as g;
use mm::vma::{VmaError, VmaProt};
use mm::VirtAddr;

const PAGE: u64 = 4096;
const HUGE: u64 = 2 << 20;
/// The range `mincore` and `mremap` ask the residency of at once (4096
/// pages: a 4 KiB answer), so their kernel allocation stays bounded
/// whatever length the user passes.
const CHUNK: u64 = 4096 * PAGE;
/// The most separate `MADV_DONTFORK` ranges a process may have; one more
/// is `ENOMEM` (as Linux's limit on the areas such a split makes).
const MAX_DONTFORK: usize = 4096;
/// Where `mmap` places from, downwards: 128 MiB below the stack area, as
/// Linux's gap below the stack limit.
pub(super) const MMAP_TOP: VirtAddr =
    VirtAddr::new(super::stack::STACK_TOP - super::stack::STACK_SIZE - (128 << 20));

fn up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

/// The errno of a refused area operation.
pub fn errno_of(e: VmaError) -> Errno {
    match e {
        VmaError::Misaligned | VmaError::Empty | VmaError::OutOfRange => Errno::EINVAL,
        VmaError::Overlaps { .. } => Errno::EEXIST,
        VmaError::NoSpace
        | VmaError::NotMapped
        | VmaError::TooManyVmas
        | VmaError::OutOfMemory
        | VmaError::ProtNoneOverMappedPages => Errno::ENOMEM,
    }
}

/// `PROT_*` bits as area rights.
fn prot_of(prot: u32) -> Result<VmaProt, Errno> {
    if prot & !(g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(VmaProt {
        read: prot & g::PROT_READ != 0,
        write: prot & g::PROT_WRITE != 0,
        exec: prot & g::PROT_EXEC != 0,
    })
}

fn space(c: &Ctx) -> Result<Arc<AddressSpace>, Errno> {
    c.thread.process.space().ok_or(Errno::EINVAL)
}

/// `brk(addr)`: the new break, or the old one when it cannot move.
pub fn brk(c: &mut Ctx, addr: u64) -> SysResult {
    let space = space(c)?;
    let (start, cur) = {
        let mm = c.thread.process.mm.lock();
        (mm.brk_start, mm.brk)
    };
    if addr < start || addr >= crate::vm::space::USER_END {
        return Ok(cur);
    }
    let (old_end, new_end) = (up(cur).unwrap_or(cur), up(addr).ok_or(Errno::ENOMEM)?);
    let moved = if new_end > old_end {
        space.mmap_fixed(VirtAddr::new(old_end), new_end - old_end, VmaProt::READ_WRITE).is_ok()
    } else if new_end < old_end {
        space.munmap(VirtAddr::new(new_end), old_end - new_end).is_ok()
    } else {
        true
    };
    if !moved {
        return Ok(cur);
    }
    c.thread.process.mm.lock().brk = addr;
    Ok(addr)
}

/// `mmap(addr, len, prot, flags, fd, offset)`.
pub fn mmap(c: &mut Ctx, addr: u64, len: u64, prot: u32, flags: u32, fd: i32, offset: u64) -> SysResult {
    let space = space(c)?;
    let vprot = prot_of(prot)?;
    let len = up(len).filter(|&l| l > 0).ok_or(Errno::EINVAL)?;
    if !addr.is_multiple_of(PAGE) && flags & (g::MAP_FIXED | g::MAP_FIXED_NOREPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    match flags & g::MAP_TYPE {
        g::MAP_PRIVATE => {}
        g::MAP_SHARED | g::MAP_SHARED_VALIDATE
            if flags & g::MAP_ANONYMOUS == 0 && prot & g::PROT_WRITE == 0 => {}
        _ => return Err(Errno::EINVAL),
    }
    let at = if flags & g::MAP_FIXED != 0 {
        space.munmap(VirtAddr::new(addr), len).map_err(errno_of)?;
        space.mmap_fixed(VirtAddr::new(addr), len, VmaProt::READ_WRITE).map_err(errno_of)?
    } else if flags & g::MAP_FIXED_NOREPLACE != 0 {
        space.mmap_fixed(VirtAddr::new(addr), len, VmaProt::READ_WRITE).map_err(errno_of)?
    } else {
        let hint = up(addr).filter(|&a| a != 0);
        match hint.and_then(|a| space.mmap_fixed(VirtAddr::new(a), len, VmaProt::READ_WRITE).ok()) {
            Some(at) => at,
            None => {
                let align = if len >= HUGE { HUGE } else { PAGE };
                space.mmap_below(MMAP_TOP, len, align, VmaProt::READ_WRITE).map_err(errno_of)?
            }
        }
    };
    let at = at.as_u64();
    // The contents (a file's), then the rights asked for.
    if flags & g::MAP_ANONYMOUS == 0 {
        if let Err(e) = super::files::map_file(c, fd, offset, at, len) {
            let _ = space.munmap(VirtAddr::new(at), len);
            return Err(e);
        }
    }
    if vprot != VmaProt::READ_WRITE {
        if let Err(e) = space.mprotect(VirtAddr::new(at), len, vprot) {
            let _ = space.munmap(VirtAddr::new(at), len);
            return Err(errno_of(e));
        }
    }
    Ok(at)
}

/// `munmap(addr, len)`.
pub fn munmap(c: &mut Ctx, addr: u64, len: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = up(len).ok_or(Errno::EINVAL)?;
    space(c)?.munmap(VirtAddr::new(addr), len).map_err(errno_of)?;
    Ok(0)
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect(c: &mut Ctx, addr: u64, len: u64, prot: u32) -> SysResult {
    let prot = prot_of(prot & !(g::PROT_GROWSDOWN | g::PROT_GROWSUP))?;
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let len = up(len).ok_or(Errno::ENOMEM)?;
    space(c)?.mprotect(VirtAddr::new(addr), len, prot).map_err(errno_of)?;
    Ok(0)
}

/// `madvise(addr, len, advice)`.
pub fn madvise(c: &mut Ctx, addr: u64, len: u64, advice: u32) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let len = up(len).ok_or(Errno::EINVAL)?;
    let space = space(c)?;
    let op = match advice {
        g::MADV_DONTNEED | g::MADV_FREE => Advice::DontNeed,
        g::MADV_PAGEOUT => Advice::PageOut,
        g::MADV_COLD => Advice::Cold,
        g::MADV_HUGEPAGE => Advice::HugePage,
        g::MADV_NOHUGEPAGE => Advice::NoHugePage,
        g::MADV_DONTFORK | g::MADV_DOFORK => {
            space.check_mapped(VirtAddr::new(addr), len).map_err(errno_of)?;
            let mut mm = c.thread.process.mm.lock();
            let end = addr + len;
            // Cut the range out of every marked one, then add it back
            // for DONTFORK.
            let mut kept = alloc::vec::Vec::new();
            for &(s, e) in &mm.dontfork {
                if e <= addr || s >= end {
                    kept.push((s, e));
                } else {
                    if s < addr {
                        kept.push((s, addr));
                    }
                    if e > end {
                        kept.push((end, e));
                    }
                }
            }
            if advice == g::MADV_DONTFORK {
                kept.push((addr, end));
            }
            // Sorted, and ranges that touch merged: the list is as short
            // as the marked memory allows, and bounded (it is rebuilt
            // under the lock on every call and copied by every fork).
            kept.sort_unstable_by_key(|&(s, _)| s);
            let mut merged: alloc::vec::Vec<(u64, u64)> = alloc::vec::Vec::with_capacity(kept.len());
            for (s, e) in kept {
                match merged.last_mut() {
                    Some(last) if last.1 >= s => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            if merged.len() > MAX_DONTFORK {
                return Err(Errno::ENOMEM);
            }
            mm.dontfork = merged;
            return Ok(0);
        }
        g::MADV_NORMAL | g::MADV_RANDOM | g::MADV_SEQUENTIAL | g::MADV_WILLNEED => {
            space.check_mapped(VirtAddr::new(addr), len).map_err(errno_of)?;
            return Ok(0);
        }
        _ => return Err(Errno::EINVAL),
    };
    space.madvise(VirtAddr::new(addr), len, op).map_err(errno_of)?;
    Ok(0)
}

/// `mincore(addr, len, vec)`: one byte per page, bit 0 when resident.
pub fn mincore(c: &mut Ctx, addr: u64, len: u64, vec_addr: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let len = up(len).ok_or(Errno::ENOMEM)?;
    if len == 0 {
        return Ok(0);
    }
    addr.checked_add(len).ok_or(Errno::ENOMEM)?;
    let space = space(c)?;
    space.check_mapped(VirtAddr::new(addr), len).map_err(errno_of)?;
    // A chunk at a time: the answer for a large range (one byte per page)
    // would be a kernel allocation as large as the user asks.
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK);
        let resident = space.resident(VirtAddr::new(addr + off), n).map_err(errno_of)?;
        let bytes: alloc::vec::Vec<u8> = resident.iter().map(|&r| r & 1).collect();
        copy_to_user(vec_addr.checked_add(off / PAGE).ok_or(Errno::EFAULT)?, &bytes)?;
        off += n;
    }
    Ok(0)
}

/// `mremap(old, old_len, new_len, flags, new_addr)`.
pub fn mremap(c: &mut Ctx, old: u64, old_len: u64, new_len: u64, flags: u32, _new_addr: u64) -> SysResult {
    if !old.is_multiple_of(PAGE) || flags & !g::MREMAP_MAYMOVE != 0 {
        return Err(Errno::EINVAL);
    }
    // An old length of 0 asks Linux for a second mapping of shared
    // memory, which is not supported here: EINVAL.
    let old_len = up(old_len).filter(|&l| l > 0).ok_or(Errno::EINVAL)?;
    let new_len = up(new_len).filter(|&l| l > 0).ok_or(Errno::EINVAL)?;
    let old_end = old.checked_add(old_len).ok_or(Errno::EFAULT)?;
    let space = space(c)?;
    let area = space.area_at(VirtAddr::new(old)).ok_or(Errno::EFAULT)?;
    if old_end > area.end.as_u64() {
        return Err(Errno::EFAULT);
    }
    if new_len <= old_len {
        if new_len < old_len {
            space.munmap(VirtAddr::new(old + new_len), old_len - new_len).map_err(errno_of)?;
        }
        return Ok(old);
    }
    let grow = new_len - old_len;
    if space.mmap_fixed(VirtAddr::new(old + old_len), grow, area.prot).is_ok() {
        return Ok(old);
    }
    if flags & g::MREMAP_MAYMOVE == 0 {
        return Err(Errno::ENOMEM);
    }
    let align = if new_len >= HUGE { HUGE } else { PAGE };
    let new = space.mmap_below(MMAP_TOP, new_len, align, VmaProt::READ_WRITE).map_err(errno_of)?.as_u64();
    let moved = copy_contents(&space, old, new, old_len)
        .and_then(|()| match area.prot {
            VmaProt::READ_WRITE => Ok(()),
            prot => space.mprotect(VirtAddr::new(new), new_len, prot).map_err(errno_of),
        })
        .and_then(|()| space.munmap(VirtAddr::new(old), old_len).map_err(errno_of));
    if let Err(e) = moved {
        // Every failure leaves the old mapping the caller's and takes
        // the new one back.
        let _ = space.munmap(VirtAddr::new(new), new_len);
        return Err(e);
    }
    Ok(new)
}

/// Copies the contents of `[old, old + len)` to `new` (mremap's move), a
/// page at a time: only the pages mapped or in swap (one never touched
/// reads zero on both sides). The residency is asked [`CHUNK`] bytes of
/// range at a time, so the kernel's allocation does not grow with `len`.
fn copy_contents(space: &AddressSpace, old: u64, new: u64, len: u64) -> Result<(), Errno> {
    let mut page = vec![0u8; PAGE as usize];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK);
        let resident = space.resident(VirtAddr::new(old + off), n).map_err(errno_of)?;
        for (i, _) in resident.iter().enumerate().filter(|(_, &r)| r != 0) {
            let at = off + i as u64 * PAGE;
            copy_from_user(&mut page, old + at)?;
            copy_to_user(new + at, &page)?;
        }
        off += n;
    }
    Ok(())
}
