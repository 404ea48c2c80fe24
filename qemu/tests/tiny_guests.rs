//! End-to-end checks of the runner against the real QEMU, with tiny guests
//! written for these tests (a few dozen instructions each, hand-assembled
//! below) instead of the kernel: they print protocol lines on the serial
//! port and then exit the way the kernel does (x86_64 debug-exit port,
//! AArch64 semihosting), crash, or hang.
//!
//! This proves the command lines from `MachineConfig` are accepted by the
//! installed QEMU and that exit statuses, streaming and the time limit work,
//! independently of the kernel. Each test is skipped (with a note) when its
//! QEMU binary is not installed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use qemu::{run, test_verdict, Arch, Firmware, GuestExit, MachineConfig, RunOptions, RunOutcome};

fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: {program} is not installed");
    }
    found
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("qemu-crate-test-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("write a temporary guest image");
    path
}

/// What an x86_64 guest does after printing its message.
enum X86End {
    /// Write this byte to the debug-exit port.
    DebugExit(u8),
    /// Load an empty IDT and raise an interrupt: a triple fault.
    TripleFault,
    /// Spin forever.
    Hang,
}

/// A BIOS boot sector that prints `message` on COM1 and then ends as told.
fn x86_boot_sector(message: &str, end: X86End) -> Vec<u8> {
    let mut code: Vec<u8> = vec![
        0xfa, //             cli
        0x31, 0xc0, //       xor ax, ax
        0x8e, 0xd8, //       mov ds, ax
        0xfc, //             cld
        0xbe, 0x40, 0x7c, // mov si, 0x7c40      ; the message
        0xac, //             1: lodsb
        0x84, 0xc0, //       test al, al
        0x74, 0x06, //       jz 2f
        0xba, 0xf8, 0x03, // mov dx, 0x3f8       ; COM1 data register
        0xee, //             out dx, al
        0xeb, 0xf5, //       jmp 1b
    ]; //                    2:
    match end {
        X86End::DebugExit(v) => code.extend([
            0xb0, v, //      mov al, v
            0xe6, 0xf4, //   out 0xf4, al        ; isa-debug-exit
            0xf4, //         3: hlt
            0xeb, 0xfd, //   jmp 3b
        ]),
        X86End::TripleFault => code.extend([
            0x0f, 0x01, 0x1e, 0xf0, 0x7d, // lidt [0x7df0]  ; limit 0 (zero padding)
            0xcc, //                         int3
        ]),
        X86End::Hang => code.extend([0xeb, 0xfe]), // jmp $
    }
    let mut sector = vec![0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    let text = message.as_bytes();
    assert!(0x40 + text.len() < 0x1f0, "message too long for the boot sector");
    sector[0x40..0x40 + text.len()].copy_from_slice(text);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// What an AArch64 guest does after printing its message.
enum ArmEnd {
    /// Semihosting SYS_EXIT_EXTENDED with this exit code.
    Exit(u64),
    /// Spin forever.
    Hang,
}

/// A raw AArch64 image with the Linux arm64 header that prints `message`
/// on the PL011 UART of QEMU's `virt` machine and then ends as told.
fn aarch64_image(message: &str, end: ArmEnd) -> Vec<u8> {
    let words: [u32; 32] = [
        0x14000010, // 0x00: b 0x40                       ; code0: skip the header
        0,          // 0x04: code1
        0, 0, //       0x08: text_offset
        0x10000, 0, // 0x10: image_size
        0, 0, //       0x18: flags
        0, 0, 0, 0, 0, 0,          // 0x20: res2..res4
        0x644d5241, // 0x38: magic "ARM\x64"
        0,          // 0x3c: res5
        0x100001e1, // 0x40: adr x1, 0x7c                  ; the message
        0xd2a12002, // 0x44: mov x2, #0x09000000           ; PL011 data register
        0x38401423, // 0x48: 1: ldrb w3, [x1], #1
        0x34000063, // 0x4c: cbz w3, 2f
        0x39000043, // 0x50: strb w3, [x2]
        0x17fffffd, // 0x54: b 1b
        0x100000a1, // 0x58: 2: adr x1, 0x6c               ; parameter block
        0xd2800400, // 0x5c: mov x0, #0x20                 ; SYS_EXIT_EXTENDED
        0xd45e0000, // 0x60: hlt #0xf000                   ; semihosting call
        0xd503207f, // 0x64: 3: wfi
        0x17ffffff, // 0x68: b 3b
        0x00020026, // 0x6c: ADP_Stopped_ApplicationExit
        0,          // 0x70
        0, 0, //       0x74: exit code, patched below
        0, // 0x7c: the message starts here (in place of this word)
    ];
    let mut image: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    image.truncate(0x7c);
    match end {
        ArmEnd::Exit(code) => image[0x74..0x7c].copy_from_slice(&code.to_le_bytes()),
        // b . in place of the semihosting call
        ArmEnd::Hang => image[0x60..0x64].copy_from_slice(&0x14000000u32.to_le_bytes()),
    }
    image.extend_from_slice(message.as_bytes());
    image.push(0);
    image
}

fn run_guest(cfg: &MachineConfig, timeout_secs: u64) -> RunOutcome {
    let cmd = cfg.command().expect("valid machine config");
    let opts = RunOptions {
        timeout: Some(Duration::from_secs(timeout_secs)),
        echo: false,
        keep_lines: 40,
        ..RunOptions::default()
    };
    let outcome = run(&cmd, cfg.arch, &opts).expect("QEMU starts");
    let _ = std::fs::remove_file(&cfg.image);
    outcome
}

const PASSING: &str = "kernel: args: smoke=1\r\ntest guest::hello ... ok\r\n1 passed, 0 failed\r\n";
const FAILING: &str = "test guest::bad ... FAILED: on purpose\r\n0 passed, 1 failed\r\n";

/// How the runner must judge a tiny guest.
#[derive(Debug)]
enum Expect {
    /// It printed [`PASSING`] and reported success: a pass, with the
    /// arguments echoed, and QEMU complained about nothing.
    Pass,
    /// It printed [`FAILING`] and reported failure: the verdict names the
    /// failed test and its reason.
    Fail,
    /// It stopped with this QEMU status, without reporting, while this
    /// test ran: a crash, and the verdict names the test.
    Crash(i32, &'static str),
    /// It spun in `guest::slow`: killed, promptly, at its 3 s time limit.
    Hang,
}

/// The kernel arguments the passing guests are given. They do not read
/// them, but QEMU must accept the option (commas doubled on x86_64).
const ARGS: &str = "smoke=1 test=a,b";

/// A change to the default machine.
type Setup = fn(&mut MachineConfig);

/// Every tiny guest of `arch`: (its image file's name, the image, the
/// change to the default machine, how it must be judged).
fn guests(arch: Arch) -> Vec<(&'static str, Vec<u8>, Setup, Expect)> {
    let as_is: Setup = |_| {};
    match arch {
        Arch::X86_64 => vec![
            (
                "ok.img",
                x86_boot_sector(PASSING, X86End::DebugExit(0x10)),
                |c| c.kernel_args = ARGS.into(),
                Expect::Pass,
            ),
            ("fail.img", x86_boot_sector(FAILING, X86End::DebugExit(0x11)), as_is, Expect::Fail),
            (
                "triple.img",
                x86_boot_sector("test guest::crashy ... ", X86End::TripleFault),
                as_is,
                Expect::Crash(0, "guest::crashy"),
            ),
            ("hang.img", x86_boot_sector("test guest::slow ... ", X86End::Hang), as_is, Expect::Hang),
        ],
        Arch::Aarch64 => vec![
            (
                "ok.bin",
                aarch64_image(PASSING, ArmEnd::Exit(0)),
                |c| {
                    c.kernel_args = ARGS.into();
                    c.smp = 2;
                },
                Expect::Pass,
            ),
            ("fail.bin", aarch64_image(FAILING, ArmEnd::Exit(1)), as_is, Expect::Fail),
            (
                "three.bin",
                aarch64_image("test guest::odd ... ", ArmEnd::Exit(3)),
                |c| c.cpu = Some("max,pauth-impdef=on".into()),
                Expect::Crash(3, "guest::odd"),
            ),
            ("hang.bin", aarch64_image("test guest::slow ... ", ArmEnd::Hang), as_is, Expect::Hang),
        ],
    }
}

/// Boots every tiny guest of `arch` and checks that the runner judged it
/// as expected; skipped when that architecture's QEMU is not installed.
fn judge_guests(arch: Arch) {
    if !have(arch.qemu_program()) {
        return;
    }
    for (name, image, setup, expect) in guests(arch) {
        let mut cfg = MachineConfig::new(arch, temp_file(name, &image));
        setup(&mut cfg);
        let timeout_secs = if matches!(expect, Expect::Hang) { 3 } else { 60 };
        let out = run_guest(&cfg, timeout_secs);
        let verdict = test_verdict(out.arch, out.exit, &out.report);
        let context = format!("{name}, expected {expect:?}: {out:?}");
        match expect {
            Expect::Pass => {
                assert_eq!(out.exit, GuestExit::Success, "{context}");
                assert!(verdict.is_pass(), "{context}");
                assert!(out.report.args_echo_contains("smoke=1"), "{context}");
                assert_eq!(
                    out.last_lines.last().map(String::as_str),
                    Some("1 passed, 0 failed"),
                    "{context}"
                );
                assert!(out.stderr.is_empty(), "{context}");
            }
            Expect::Fail => {
                assert_eq!(out.exit, GuestExit::Failure, "{context}");
                assert!(out.report.has_failed("guest::bad"), "{context}");
                assert!(verdict.message().contains("test guest::bad FAILED: on purpose"), "{context}");
            }
            Expect::Crash(status, test) => {
                assert_eq!(out.exit, GuestExit::Crashed(Some(status)), "{context}");
                assert_eq!(out.report.running.as_deref(), Some(test), "{context}");
                assert!(verdict.message().contains(&format!("test {test} was running")), "{context}");
            }
            Expect::Hang => {
                assert_eq!(out.exit, GuestExit::TimedOut, "{context}");
                assert_eq!(out.report.running.as_deref(), Some("guest::slow"), "{context}");
                assert!(out.elapsed < Duration::from_secs(20), "{context}");
            }
        }
    }
}

#[test]
fn x86_64_bios_guests_are_judged_right() {
    judge_guests(Arch::X86_64);
}

#[test]
fn aarch64_guests_are_judged_right() {
    judge_guests(Arch::Aarch64);
}

#[test]
fn x86_64_uefi_command_line_is_accepted() {
    if !have("qemu-system-x86_64") || !std::path::Path::new(qemu::OVMF_CODE).exists() {
        return;
    }
    // OVMF finds nothing to boot on this disk; what matters is that QEMU
    // starts with the pflash firmware and complains about nothing.
    let image = temp_file("uefi.img", &vec![0u8; 1 << 20]);
    let mut cfg = MachineConfig::new(Arch::X86_64, image);
    cfg.firmware = Firmware::Uefi;
    cfg.kernel_args = "smoke=1".into();
    let out = run_guest(&cfg, 3);
    assert!(out.stderr.is_empty(), "QEMU complained: {}", out.stderr);
    assert_ne!(out.exit, GuestExit::Crashed(Some(1)), "{out:?}");
}

#[test]
fn qemu_errors_are_collected_from_stderr() {
    if !have("qemu-system-x86_64") {
        return;
    }
    let cfg = MachineConfig::new(Arch::X86_64, "/nonexistent/kernel.img");
    let cmd = cfg.command().unwrap();
    let opts = RunOptions {
        timeout: Some(Duration::from_secs(30)),
        echo: false,
        keep_lines: 40,
        ..RunOptions::default()
    };
    let out = run(&cmd, cfg.arch, &opts).unwrap();
    assert_eq!(out.exit, GuestExit::Crashed(Some(1)), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/kernel.img"), "{}", out.stderr);
    assert!(out.problem_text().unwrap().contains("QEMU's own messages"));
}
