//! ELF executables: reading the headers of a static program (`ET_EXEC`,
//! or a static-pie `ET_DYN` without an interpreter) with `xmas-elf`, and
//! mapping its `PT_LOAD` segments into the running thread's new space.
//!
//! Each segment's pages become an anonymous area, mapped writable while
//! the file bytes are copied in (the rest, up to `p_memsz`, stays zero:
//! the `.bss`), then given the segment's rights. A page two segments
//! share keeps the rights of both.
//!
//! A static-pie program (`ET_DYN`, linked at 0) is loaded at the fixed
//! [`PIE_BASE`], not a randomised one: the same addresses on every run
//! make a failure replayable. The kernel applies no relocation: a
//! static-pie program relocates itself before anything else (glibc's
//! start code finds its own load address PC-relatively and applies its
//! `R_*_RELATIVE` entries). `AT_BASE` stays 0, as Linux gives a program
//! without an interpreter. Every segment, with the bias, must end below
//! [`LOAD_END`], under the `mmap` area and the stack.
//!
//! Locks: none here (the space's own, inside its calls).

use super::syscall::Errno;
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::copy_to_user;
use alloc::string::String;
use alloc::vec::Vec;
use mm::vma::VmaProt;
use mm::VirtAddr;
use xmas_elf::header::{Class, Machine, Type as FileType};
use xmas_elf::program::Type;
use xmas_elf::ElfFile;

/// Where a static-pie program's first page goes (2 MiB aligned; where
/// Linux puts it without randomisation).
pub const PIE_BASE: u64 = 0x5555_5540_0000;

/// One past the highest address a segment may reach, with its bias: far
/// above [`PIE_BASE`] and far below the `mmap` area and the stack
/// (`super::mman`, [`super::stack::STACK_TOP`]).
pub const LOAD_END: u64 = 0x6000_0000_0000;
const _: () = assert!(PIE_BASE < LOAD_END && LOAD_END < super::stack::STACK_TOP - (1 << 40));

const PAGE: u64 = 4096;

/// The machine this kernel runs programs of.
#[cfg(target_arch = "x86_64")]
const MACHINE: Machine = Machine::X86_64;
#[cfg(target_arch = "aarch64")]
const MACHINE: Machine = Machine::AArch64;

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_size: u64,
    pub offset: u64,
    pub prot: VmaProt,
}

/// What the loader needs of an executable's headers.
#[derive(Debug, Clone)]
pub struct Image {
    /// `ET_DYN`: loaded at [`PIE_BASE`].
    pub pie: bool,
    pub entry: u64,
    pub phoff: u64,
    pub phent: u64,
    pub phnum: u64,
    /// `PT_PHDR`'s address, when there is one.
    pub phdr: Option<u64>,
    pub segments: Vec<Segment>,
}

/// Where a loaded program lies.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub entry: u64,
    /// The program headers' address (`AT_PHDR`), `AT_PHENT`, `AT_PHNUM`.
    pub phdr: u64,
    pub phent: u64,
    pub phnum: u64,
    /// The first page after the highest segment (where the heap starts).
    pub end: u64,
    /// The load bias (0 for `ET_EXEC`).
    pub bias: u64,
}

fn up(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

fn down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

impl Image {
    /// Reads and checks the headers of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Image, String> {
        // The ELF reader reads its headers in place and asserts their
        // alignment (a panic): refuse a misaligned image instead
        // (`super::files` hands out aligned bytes).
        if !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err(String::from("an image not 8-byte aligned in memory"));
        }
        let elf = ElfFile::new(bytes).map_err(String::from)?;
        if elf.header.pt1.class() != Class::SixtyFour {
            return Err(String::from("not a 64-bit ELF file"));
        }
        let pt2 = &elf.header.pt2;
        if pt2.machine().as_machine() != MACHINE {
            return Err(alloc::format!("ELF file for {:?}, not {MACHINE:?}", pt2.machine().as_machine()));
        }
        let pie = match pt2.type_().as_type() {
            FileType::Executable => false,
            FileType::SharedObject => true,
            other => return Err(alloc::format!("ELF file of type {other:?}, not an executable")),
        };
        let mut segments = Vec::new();
        let mut phdr = None;
        for ph in elf.program_iter() {
            match ph.get_type().map_err(String::from)? {
                Type::Interp => return Err(String::from("a dynamically linked program (no loader here)")),
                Type::Phdr => phdr = Some(ph.virtual_addr()),
                Type::Load if ph.mem_size() > 0 => {
                    if ph.file_size() > ph.mem_size()
                        || ph.virtual_addr().checked_add(ph.mem_size()).is_none()
                        || ph.offset().checked_add(ph.file_size()).is_none_or(|e| e > bytes.len() as u64)
                        || ph.virtual_addr() % PAGE != ph.offset() % PAGE
                    {
                        return Err(String::from("a PT_LOAD segment outside the file or misaligned"));
                    }
                    let f = ph.flags();
                    segments.push(Segment {
                        vaddr: ph.virtual_addr(),
                        mem_size: ph.mem_size(),
                        file_size: ph.file_size(),
                        offset: ph.offset(),
                        prot: VmaProt { read: f.is_read(), write: f.is_write(), exec: f.is_execute() },
                    });
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(String::from("no PT_LOAD segment"));
        }
        segments.sort_by_key(|s| s.vaddr);
        let bias = if pie { PIE_BASE } else { 0 };
        // Every address `load` computes is checked here, so that its
        // arithmetic cannot overflow: a segment's end (checked above),
        // with the bias, is at most `LOAD_END`, and the entry and the
        // headers' address are user addresses.
        let end = segments.iter().map(|s| s.vaddr + s.mem_size).max().unwrap_or(0);
        let user = crate::vm::space::USER_START..crate::vm::space::USER_END;
        if end.checked_add(bias).is_none_or(|e| e > LOAD_END) || down(segments[0].vaddr) + bias < user.start {
            return Err(String::from("segments outside the user range"));
        }
        if pt2.entry_point().checked_add(bias).is_none_or(|e| !user.contains(&e)) {
            return Err(String::from("an entry point outside the user range"));
        }
        let first = &segments[0];
        let headers = match phdr {
            Some(p) => Some(p),
            None => first.vaddr.checked_sub(first.offset).and_then(|v| v.checked_add(pt2.ph_offset())),
        };
        if headers.and_then(|h| h.checked_add(bias)).is_none_or(|h| !user.contains(&h)) {
            return Err(String::from("program headers outside the user range"));
        }
        Ok(Image {
            pie,
            entry: pt2.entry_point(),
            phoff: pt2.ph_offset(),
            phent: pt2.ph_entry_size() as u64,
            phnum: pt2.ph_count() as u64,
            phdr,
            segments,
        })
    }

    /// Maps the segments into `space`, which the running task is in, and
    /// copies the file bytes of `bytes` there.
    pub fn load(&self, space: &AddressSpace, bytes: &[u8]) -> Result<Loaded, Errno> {
        let bias = if self.pie { PIE_BASE } else { 0 };
        let mut mapped_end = 0;
        // Areas, writable for the copy; a page shared with the segment
        // before is already mapped.
        for s in &self.segments {
            let start = down(s.vaddr + bias).max(mapped_end);
            let end = up(s.vaddr + bias + s.mem_size);
            if start < end {
                space
                    .mmap_fixed(VirtAddr::new(start), end - start, VmaProt::READ_WRITE)
                    .map_err(|_| Errno::ENOMEM)?;
            }
            mapped_end = mapped_end.max(end);
        }
        for s in &self.segments {
            let file = &bytes[s.offset as usize..(s.offset + s.file_size) as usize];
            copy_to_user(s.vaddr + bias, file)?;
        }
        // Final rights: each segment's own pages, and the union on a page
        // shared with a neighbour.
        for (i, s) in self.segments.iter().enumerate() {
            let (start, end) = (down(s.vaddr + bias), up(s.vaddr + bias + s.mem_size));
            let mut prot = s.prot;
            for (j, o) in self.segments.iter().enumerate() {
                let (os, oe) = (down(o.vaddr + bias), up(o.vaddr + bias + o.mem_size));
                if j != i && os < end && start < oe {
                    prot.read |= o.prot.read;
                    prot.write |= o.prot.write;
                    prot.exec |= o.prot.exec;
                }
            }
            let own = VmaProt { read: s.prot.read, write: s.prot.write, exec: s.prot.exec };
            // The whole range with the union first, then the pages this
            // segment has alone with its own rights.
            space.mprotect(VirtAddr::new(start), end - start, prot).map_err(|_| Errno::ENOMEM)?;
            let first_alone = if i > 0 && down(s.vaddr + bias) < up(self.segments[i - 1].end(bias)) {
                start + PAGE
            } else {
                start
            };
            let last_alone = match self.segments.get(i + 1) {
                Some(n) if down(n.vaddr + bias) < end => end - PAGE,
                _ => end,
            };
            if first_alone < last_alone && own != prot {
                space
                    .mprotect(VirtAddr::new(first_alone), last_alone - first_alone, own)
                    .map_err(|_| Errno::ENOMEM)?;
            }
        }
        let first = &self.segments[0];
        // The headers lie in the first segment's file bytes as a rule.
        let phdr = match self.phdr {
            Some(p) => p + bias,
            None => first.vaddr - first.offset + self.phoff + bias,
        };
        Ok(Loaded {
            entry: self.entry + bias,
            phdr,
            phent: self.phent,
            phnum: self.phnum,
            end: up(self.segments.iter().map(|s| s.end(bias)).max().unwrap_or(0)),
            bias,
        })
    }
}

impl Segment {
    /// One past the segment's last byte, with `bias`.
    fn end(&self, bias: u64) -> u64 {
        self.vaddr + bias + self.mem_size
    }
}
