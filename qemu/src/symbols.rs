//! Symbolizing the kernel's backtraces: the addresses of its `backtrace:`
//! lines become `function at file:line`, read from the kernel's ELF with
//! the `addr2line` crate (DWARF line tables, the symbol table as a fallback).
//!
//! The kernel (`kernel/src/backtrace.rs`) prints:
//!
//! ```text
//! backtrace: _start at 0xffff800000029750
//! backtrace: #0 pc 0xffff8000000be67f
//! backtrace: #1 ret 0xffff800000070bcc
//! ```
//!
//! The first line gives the load offset: `_start`'s run-time address minus
//! the ELF's entry point, which is `_start` on both arches (the x86_64 kernel
//! is position-independent and loaded high; the AArch64 one runs where it
//! was linked, offset 0). A `pc` is looked up as it is; a `ret` is a return
//! address, so the call before it is looked up (`ret - 1`). Inlined calls
//! come out innermost first, joined with `inlined into`.
//!
//! Anything missing (no ELF, no anchor line yet, an address with no line
//! information) leaves the line as the kernel printed it, or says `??`.

use std::path::{Path, PathBuf};

/// A kernel ELF open for lookups, and the load offset once known.
pub struct Symbolizer {
    loader: addr2line::Loader,
    /// The ELF's entry point (`_start`'s link-time address).
    entry: u64,
    /// Run-time minus link-time addresses, from the `_start at` line.
    offset: Option<u64>,
    /// Stripped from the front of source paths, to keep them short.
    root: Option<PathBuf>,
}

/// A frame line: its index, whether the address is a return address, the
/// address.
fn parse_frame(line: &str) -> Option<(u64, bool, u64)> {
    let rest = line.strip_prefix("backtrace: #")?;
    let mut words = rest.split_ascii_whitespace();
    let n = words.next()?.parse().ok()?;
    let ret = match words.next()? {
        "pc" => false,
        "ret" => true,
        _ => return None,
    };
    let addr = u64::from_str_radix(words.next()?.strip_prefix("0x")?, 16).ok()?;
    words.next().is_none().then_some((n, ret, addr))
}

/// The run-time address of `_start`, from the anchor line.
fn parse_anchor(line: &str) -> Option<u64> {
    let hex = line.strip_prefix("backtrace: _start at 0x")?;
    u64::from_str_radix(hex.trim_end(), 16).ok()
}

/// The entry point of a 64-bit little-endian ELF.
fn elf_entry(bytes: &[u8]) -> Result<u64, String> {
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF".to_string());
    }
    let entry = bytes.get(0x18..0x20).ok_or("ELF header cut short")?;
    Ok(u64::from_le_bytes(entry.try_into().expect("8 bytes")))
}

impl Symbolizer {
    /// Opens the kernel ELF at `elf`; source paths under `root` are shown
    /// relative to it.
    pub fn open(elf: &Path, root: Option<&Path>) -> Result<Symbolizer, String> {
        let bytes = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let entry = elf_entry(&bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
        let loader = addr2line::Loader::new(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        Ok(Symbolizer { loader, entry, offset: None, root: root.map(Path::to_path_buf) })
    }

    /// `line` with `function at file:line` appended when it is a frame
    /// line the ELF knows; `None` for every other line (an anchor line sets
    /// the load offset).
    pub fn annotate(&mut self, line: &str) -> Option<String> {
        if let Some(start) = parse_anchor(line) {
            self.offset = Some(start.wrapping_sub(self.entry));
            return None;
        }
        let (_, ret, addr) = parse_frame(line)?;
        let offset = self.offset?;
        let probe = addr.wrapping_sub(offset).wrapping_sub(ret as u64);
        Some(format!("{line} {}", self.describe(probe)))
    }

    /// `function at file:line`, inlined calls first, for a link-time address.
    pub fn describe(&self, probe: u64) -> String {
        // (name from DWARF, place); the last is the function the address is
        // in, the ones before it calls inlined into it.
        let mut frames = Vec::new();
        if let Ok(mut iter) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let name = frame.function.as_ref().and_then(|f| f.demangle().ok()).map(|n| n.into_owned());
                let place = frame.location.map(|loc| self.place(loc.file, loc.line));
                frames.push((name, place));
            }
        }
        // The symbol table has the full path (`kernel::tests::...::f`)
        // where line-tables-only DWARF has the bare name: it names the
        // function the address is in.
        match (frames.last_mut(), self.symbol(probe)) {
            (Some((name, _)), Some(full)) => *name = Some(full),
            (None, full) => frames.push((full, None)),
            (Some(_), None) => {}
        }
        let parts: Vec<String> = frames
            .into_iter()
            .map(|(name, place)| {
                let name = name.unwrap_or_else(|| "??".to_string());
                match place {
                    Some(place) => format!("{name} at {place}"),
                    None => name,
                }
            })
            .collect();
        parts.join(", inlined into ")
    }

    /// The demangled name of the symbol holding `probe`, without its hash.
    fn symbol(&self, probe: u64) -> Option<String> {
        let name = self.loader.find_symbol(probe)?;
        Some(addr2line::demangle_auto(name.into(), Some(addr2line::gimli::DW_LANG_Rust)).into_owned())
    }

    /// `file:line`, the file relative to the root when under it.
    fn place(&self, file: Option<&str>, line: Option<u32>) -> String {
        let file = file.unwrap_or("??");
        let short = self
            .root
            .as_deref()
            .and_then(|root| Path::new(file).strip_prefix(root).ok())
            .map_or_else(|| file.to_string(), |p| p.display().to_string());
        match line {
            Some(n) => format!("{short}:{n}"),
            None => short,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_anchor_lines_parse_and_nothing_else_does() {
        assert_eq!(
            parse_frame("backtrace: #0 pc 0xffff80000000be67"),
            Some((0, false, 0xffff_8000_0000_be67))
        );
        assert_eq!(parse_frame("backtrace: #12 ret 0x10"), Some((12, true, 0x10)));
        assert_eq!(parse_frame("backtrace: #1 ret 0x10 already annotated"), None);
        assert_eq!(parse_frame("backtrace: #1 sp 0x10"), None);
        assert_eq!(parse_frame("backtrace: end after 2 frames (the bottom of the stack)"), None);
        assert_eq!(parse_frame("test a ... ok"), None);
        assert_eq!(parse_anchor("backtrace: _start at 0xffff800000029750"), Some(0xffff_8000_0002_9750));
        assert_eq!(parse_anchor("backtrace: _start at nowhere"), None);
    }

    #[test]
    fn elf_entry_reads_the_header_and_refuses_other_files() {
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x18..0x20].copy_from_slice(&0x1234_5678u64.to_le_bytes());
        assert_eq!(elf_entry(&header), Ok(0x1234_5678));
        assert!(elf_entry(b"MZ not an elf").is_err());
        assert!(elf_entry(&header[..0x10]).is_err());
    }

    extern "C" {
        /// This test executable's entry (the C runtime's), its ELF entry
        /// point as `_start` is the kernel's.
        fn _start();
    }

    /// This test binary is an ELF with line tables too: one of its own
    /// functions must come back by name, with this file and a line, through
    /// the same anchor arithmetic as the kernel's lines (the executable is
    /// position-independent, so the offset is not zero).
    #[test]
    fn symbolizes_a_real_elf_by_name_file_and_line() {
        let exe = std::env::current_exe().unwrap();
        let mut sym = Symbolizer::open(&exe, Some(Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap();
        let anchor = format!("backtrace: _start at {:#x}", _start as *const () as u64);
        assert_eq!(sym.annotate(&anchor), None);
        let pc = parse_frame as *const () as u64;
        let line = sym.annotate(&format!("backtrace: #0 pc {pc:#x}")).expect("a frame line");
        assert!(line.contains("qemu::symbols::parse_frame at src/symbols.rs:"), "{line}");
        // A return address just past the function's first byte is looked
        // up at the byte before: the same function.
        let line = sym.annotate(&format!("backtrace: #1 ret {:#x}", pc + 1)).expect("a frame line");
        assert!(line.contains("qemu::symbols::parse_frame at src/symbols.rs:"), "{line}");
        // Lines that are not frames pass through as `None`.
        assert_eq!(sym.annotate("kernel panic: oops"), None);
    }
}
