//! User processes (`crate::proc`): the ELF checks of `spawn`, loading a
//! program and its initial stack into a space (read back through user
//! access), the page residency `mincore` reports, and `/bin/hello` run
//! through `spawn` and `wait_exit`; `/proc/<pid>/` answering for that
//! process, and `/proc` listing `self` and the pids.

use crate::proc::elf::Image;
use crate::proc::stack;
use crate::tests::{Test, TestEnv};
use crate::vm::space::AddressSpace;
use crate::vm::uaccess;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use linux_raw_sys::auxvec as at;
use mm::vma::VmaProt;
use mm::VirtAddr;

pub static TESTS: &[Test] = register![
    "proc": spawn_refuses_what_is_not_a_program, parse_refuses_addresses_out_of_range, load_maps_segments_and_builds_the_stack,
        mincore_sees_touched_pages, hello_runs_to_exit_0, a_missing_program_is_an_error, proc_pid_is_that_process,
        proc_pid_from_user_space
];

#[cfg(target_arch = "x86_64")]
const EM: u16 = 62;
#[cfg(target_arch = "aarch64")]
const EM: u16 = 183;

/// Where the test program loads, and its code bytes.
const BASE: u64 = 0x40_0000;
const CODE: &[u8] = b"\x90\x90\x90\x90not really code";

/// A static ELF executable of `machine` and `kind` (2 = ET_EXEC) with one
/// RX segment at [`BASE`] holding the headers and [`CODE`], plus a
/// `PT_INTERP` when `interp`.
fn elf(machine: u16, kind: u16, interp: bool) -> Vec<u8> {
    let phnum: u16 = if interp { 2 } else { 1 };
    let code_off = 64 + 56 * phnum as u64;
    let mut f = vec![0u8; code_off as usize];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&kind.to_le_bytes());
    f[18..20].copy_from_slice(&machine.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&(BASE + code_off).to_le_bytes()); // entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&phnum.to_le_bytes());
    f.extend_from_slice(CODE);
    let total = f.len() as u64;
    let mut ph = |i: usize, p_type: u32, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64| {
        let h = &mut f[64 + 56 * i..64 + 56 * (i + 1)];
        h[0..4].copy_from_slice(&p_type.to_le_bytes());
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        h[8..16].copy_from_slice(&off.to_le_bytes());
        h[16..24].copy_from_slice(&vaddr.to_le_bytes());
        h[24..32].copy_from_slice(&vaddr.to_le_bytes());
        h[32..40].copy_from_slice(&filesz.to_le_bytes());
        h[40..48].copy_from_slice(&memsz.to_le_bytes());
        h[48..56].copy_from_slice(&4096u64.to_le_bytes());
    };
    // PT_LOAD, R+X, with a .bss page after the file bytes.
    ph(0, 1, 5, 0, BASE, total, total + 4096);
    if interp {
        ph(1, 3, 4, code_off, BASE + code_off, 4, 4);
    }
    f
}

fn spawn_refuses_what_is_not_a_program(_: &TestEnv<'_>) -> Result<(), String> {
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("garbage", b"#!/bin/sh\necho hi\n".to_vec(), ""),
        ("other machine", elf(if EM == 62 { 183 } else { 62 }, 2, false), "ELF file for"),
        ("relocatable", elf(EM, 1, false), "not an executable"),
        ("dynamic", elf(EM, 2, true), "dynamically linked"),
    ];
    for (what, image, why) in cases {
        match crate::proc::spawn_image(what, image.into(), &[what], &[]) {
            Ok(pid) => return Err(format!("{what}: started as pid {pid}")),
            Err(e) if e.contains(why) => {}
            Err(e) => return Err(format!("{what}: refused for the wrong reason: {e}")),
        }
    }
    Image::parse(&elf(EM, 2, false)).map_err(|e| format!("the good image: {e}"))?;
    Ok(())
}

/// Header fields whose arithmetic in `Image::parse` or `Image::load`
/// would overflow (a kernel panic): `Image::parse` must refuse them.
fn parse_refuses_addresses_out_of_range(_: &TestEnv<'_>) -> Result<(), String> {
    let put = |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // The first PT_LOAD's fields: offset, vaddr, paddr, filesz, memsz.
    let (offset, vaddr, paddr, filesz, memsz) = (64 + 8, 64 + 16, 64 + 24, 64 + 32, 64 + 40);
    let mut entry_outside = elf(EM, 2, false);
    put(&mut entry_outside, 24, u64::MAX - 0xfff);
    // File offset above the address: the headers' address (vaddr -
    // offset + phoff) would go below zero.
    let mut headers_below_zero = elf(EM, 2, false);
    headers_below_zero.resize(0x3000, 0);
    for (at, v) in [(offset, 0x2000), (vaddr, 0x1000), (paddr, 0x1000), (filesz, 0x100), (memsz, 0x100)] {
        put(&mut headers_below_zero, at, v);
    }
    put(&mut headers_below_zero, 24, 0x1010);
    // Position-independent (the load bias is added too): a segment whose
    // page plus the bias wraps.
    let mut segment_wraps = elf(EM, 3, false);
    put(&mut segment_wraps, vaddr, !0xfff);
    put(&mut segment_wraps, memsz, 0x2000);
    let cases = [
        ("an entry outside the user range", entry_outside, "entry point"),
        ("headers below address 0", headers_below_zero, "program headers"),
        ("a segment that wraps", segment_wraps, "PT_LOAD"),
    ];
    for (what, image, why) in cases {
        match Image::parse(&image) {
            Ok(_) => return Err(format!("{what}: parsed")),
            Err(e) if e.contains(why) => {}
            Err(e) => return Err(format!("{what}: refused for the wrong reason: {e}")),
        }
    }
    Ok(())
}

/// Reads the word at user address `at`.
fn word(at: u64) -> u64 {
    uaccess::read_u64(at)
}

/// Reads the NUL-terminated string at user address `at`.
fn string(at: u64) -> String {
    let mut s = Vec::new();
    for i in 0.. {
        match uaccess::read_u8(at + i) {
            0 => break,
            b => s.push(b),
        }
    }
    String::from_utf8_lossy(&s).to_string()
}

fn load_maps_segments_and_builds_the_stack(_: &TestEnv<'_>) -> Result<(), String> {
    let image = elf(EM, 2, false);
    let parsed = Image::parse(&image)?;
    let space = AddressSpace::new()?;
    let s = space.clone();
    let h = space.spawn(None, "loader", move || -> Result<(), String> {
        let loaded = parsed.load(&s, &image).map_err(|e| format!("load: {e:?}"))?;
        let argv = ["prog".to_string(), "arg one".to_string()];
        let envp = ["X=1".to_string()];
        let random = [7u8; 16];
        let sp = stack::build(&s, &loaded, "/bin/prog", &argv, &envp, random)
            .map_err(|e| format!("stack: {e:?}"))?;
        if sp % 16 != 0 || !(stack::STACK_TOP - stack::STACK_SIZE..stack::STACK_TOP).contains(&sp) {
            return Err(format!("sp {sp:#x} misaligned or off the stack"));
        }
        // The file bytes, then zeros (.bss).
        let code_at = BASE + 64 + 56;
        let read: Vec<u8> = (0..CODE.len() as u64).map(|i| uaccess::read_u8(code_at + i)).collect();
        if read != CODE {
            return Err(format!("segment bytes {read:?}"));
        }
        if uaccess::first_non_zero(BASE + 4096, 4096).is_some() {
            return Err(String::from("the .bss page is not zero"));
        }
        // argc, argv, envp.
        if word(sp) != 2 {
            return Err(format!("argc {}", word(sp)));
        }
        let strings = [string(word(sp + 8)), string(word(sp + 16)), string(word(sp + 32))];
        if strings != ["prog", "arg one", "X=1"] || word(sp + 24) != 0 || word(sp + 40) != 0 {
            return Err(format!("argv/envp {strings:?}"));
        }
        // auxv.
        let mut aux = Vec::new();
        let mut at_ = sp + 48;
        loop {
            let (k, v) = (word(at_), word(at_ + 8));
            aux.push((k as u32, v));
            if k == 0 {
                break;
            }
            at_ += 16;
        }
        let get = |k: u32| aux.iter().find(|&&(key, _)| key == k).map(|&(_, v)| v);
        let want = [
            (at::AT_ENTRY, code_at),
            (at::AT_PHDR, BASE + 64),
            (at::AT_PHENT, 56),
            (at::AT_PHNUM, 1),
            (at::AT_PAGESZ, 4096),
        ];
        for (k, v) in want {
            if get(k) != Some(v) {
                return Err(format!("auxv {k}: {:?}, not {v:#x}", get(k)));
            }
        }
        let r = get(at::AT_RANDOM).ok_or("no AT_RANDOM")?;
        if (0..16).any(|i| uaccess::read_u8(r + i) != 7) {
            return Err(String::from("AT_RANDOM's bytes"));
        }
        let execfn = string(get(at::AT_EXECFN).ok_or("no AT_EXECFN")?);
        if execfn != "/bin/prog" {
            return Err(format!("AT_EXECFN {execfn}"));
        }
        if loaded.end != BASE + 2 * 4096 {
            return Err(format!("heap start {:#x}", loaded.end));
        }
        Ok(())
    })?;
    h.join()??;
    // The segment ends up read and execute, not writable.
    let area = space.area_at(VirtAddr::new(BASE)).ok_or("no area at the segment")?;
    if area.prot != VmaProt::READ_EXEC {
        return Err(format!("segment rights {:?}", area.prot));
    }
    Ok(())
}

fn mincore_sees_touched_pages(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let base = space.mmap(8 * 4096, 4096, VmaProt::READ_WRITE).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let h = space.spawn(None, "toucher", move || {
        uaccess::write_u8(base + 4096, 1);
        uaccess::write_u8(base + 5 * 4096 + 7, 1);
    })?;
    h.join()?;
    let r = space.resident(VirtAddr::new(base), 8 * 4096).map_err(|e| format!("resident: {e:?}"))?;
    if r != [0, 1, 0, 0, 0, 1, 0, 0] {
        return Err(format!("residency {r:?}"));
    }
    if space.resident(VirtAddr::new(base), 9 * 4096).is_ok() {
        return Err(String::from("a range past the area is not refused"));
    }
    Ok(())
}

/// `/bin/hello` (user/hello.c: printf, malloc, fork and wait, a pthread)
/// through the kernel's API, to exit status 0.
fn hello_runs_to_exit_0(_: &TestEnv<'_>) -> Result<(), String> {
    let pid = crate::proc::spawn("/bin/hello", &["/bin/hello"], &["HOME=/"])?;
    match crate::proc::wait_exit(pid) {
        0 => Ok(()),
        status => Err(format!("/bin/hello ended with wait status {status:#x}")),
    }
}

fn a_missing_program_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    if let Ok(pid) = crate::proc::spawn("/bin/no-such-program", &[], &[]) {
        return Err(format!("started as pid {pid}"));
    }
    // `init=` of a missing program: an error (the kernel prints
    // `init: cannot run PATH: WHY`), not a status 127 as if it ran.
    let path = "/bin/no-such-program";
    match crate::proc::run_init(path, &[path]) {
        Ok(status) => Err(format!("run_init of a missing program gave status {status:#x}, not an error")),
        Err(why) if why.starts_with(path) => Err(format!("run_init's reason repeats the path: {why}")),
        Err(_) => Ok(()),
    }
}

/// Opens `path` as the file layer does for a process's `open`.
fn open_path(path: &str) -> Result<alloc::sync::Arc<dyn crate::fs::File>, crate::fs::Errno> {
    crate::fs::path::lookup("/", path, true)?.open()
}

/// The names a directory lists.
fn names(path: &str) -> Result<Vec<String>, String> {
    let dir = open_path(path).map_err(|e| format!("open {path}: {e:?}"))?;
    let entries = dir.readdir().map_err(|e| format!("readdir {path}: {e:?}"))?;
    Ok(entries.into_iter().map(|e| e.name).collect())
}

/// `/proc/<pid>/...` is that process's (its `exe` link names its
/// program), from a kernel task too, which has no `self`; a pid no
/// process has is `ENOENT`; `/proc` lists `self` and the pid, and the
/// pid's directory its files; once the process is reaped it is gone.
fn proc_pid_is_that_process(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::fs::Errno;
    let pid = crate::proc::spawn("/bin/busybox", &["sleep", "1"], &[])?;
    let checks = (|| -> Result<(), String> {
        let exe = open_path(&format!("/proc/{pid}/exe")).map_err(|e| format!("/proc/{pid}/exe: {e:?}"))?;
        if exe.readlink().as_deref() != Some("/bin/busybox") {
            return Err(format!("/proc/{pid}/exe links to {:?}", exe.readlink()));
        }
        for missing in
            ["/proc/self/status", "/proc/4000000000/status", "/proc/99999999999/status", "/proc/0/maps"]
        {
            match open_path(missing) {
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(format!("{missing}: {e:?}, not ENOENT")),
                Ok(_) => return Err(format!("{missing} opened (from a kernel task, which is no process)")),
            }
        }
        let listed = names("/proc")?;
        if !listed.iter().any(|n| n == "self") || !listed.contains(&format!("{pid}")) {
            return Err(format!("/proc lists {listed:?}: no self or {pid}"));
        }
        let files = names(&format!("/proc/{pid}"))?;
        for want in ["status", "maps", "smaps", "pagemap", "exe"] {
            if !files.iter().any(|n| n == want) {
                return Err(format!("/proc/{pid} lists {files:?}: no {want}"));
            }
        }
        Ok(())
    })();
    let status = crate::proc::wait_exit(pid);
    checks?;
    if status != 0 {
        return Err(format!("busybox sleep ended with wait status {status:#x}"));
    }
    match open_path(&format!("/proc/{pid}/status")) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("/proc/{pid}/status after the reap: {e:?}")),
        Ok(_) => Err(format!("/proc/{pid}/status opened after the reap")),
    }
}

/// The same from a program: a shell reads its background child's and its
/// own `/proc/<pid>/status` (each with its pid: before, both were the
/// reader's, grep's), finds `self` and
/// the child in `ls /proc`, and no status for a pid nobody has (the
/// initramfs links only a few applets: the others run as `busybox <name>`;
/// the child is killed, not waited for, since ash's `wait` needs
/// `rt_sigsuspend`, which the kernel does not have yet; the orphan is
/// reaped when the shell exits).
fn proc_pid_from_user_space(_: &TestEnv<'_>) -> Result<(), String> {
    const SCRIPT: &str = "busybox sleep 1 & c=$!; r=0; \
        busybox grep -q \"^Pid:[[:space:]]*$c\\$\" /proc/$c/status || { echo \"proc: FAILED: /proc/$c/status is not $c's\"; r=1; }; \
        busybox grep -q \"^Pid:[[:space:]]*$$\\$\" /proc/$$/status || { echo \"proc: FAILED: /proc/$$/status is not $$'s\"; r=1; }; \
        busybox ls /proc | busybox grep -qx self || { echo 'proc: FAILED: ls /proc has no self'; r=1; }; \
        busybox ls /proc | busybox grep -qx $c || { echo \"proc: FAILED: ls /proc has no $c\"; r=1; }; \
        ! test -e /proc/99999/status || { echo 'proc: FAILED: /proc/99999/status exists'; r=1; }; \
        kill $c; exit $r";
    let pid = crate::proc::spawn("/bin/busybox", &["sh", "-c", SCRIPT], &["PATH=/bin"])?;
    let status = crate::proc::wait_exit(pid);
    // The killed child may still be in its sleep (a signal does not cut
    // it short everywhere): its end reaps it, within the second.
    for _ in 0..300 {
        if !crate::proc::process::all().iter().any(|p| p.pid > pid) {
            break;
        }
        crate::task::sched::sleep_ms(10);
    }
    match status {
        0 => Ok(()),
        status => Err(format!("the shell ended with wait status {status:#x} (its message is above)")),
    }
}
