//! The user-mode tests: each program of `user/` (in the initramfs as
//! `/bin/<name>`, built by xtask with Debian's static gcc) runs as a process,
//! and its exit status is the verdict: 0 passes; anything else fails, with
//! the program's own `<name>: FAILED: <why>` line printed just before on
//! the console (`user/ut.h`). The programs and what each checks are listed
//! in the book's chapter on the initramfs (`docs/src/initramfs.md`).
//!
//! Only through the process API: `proc::spawn` and `proc::wait_exit`
//! (the Linux wait status).

use crate::tests::kit::scratch_disk;
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mm::gup::Hold;

/// A word of kernel data for `kernel_read` to try: mapped, but never for
/// user mode.
static KERNEL_WORD: u64 = 0x6b65_726e_656c_2121;

/// What the Linux wait status `status` says, for a failure message.
fn describe(status: i32) -> String {
    match status & 0x7f {
        0 => format!("exited with status {}", (status >> 8) & 0xff),
        signal => format!("was killed by signal {signal}"),
    }
}

/// Runs `/bin/<name>` with `args` and returns its Linux wait status.
fn wait_status(name: &str, args: &[&str]) -> Result<i32, String> {
    let path = format!("/bin/{name}");
    let mut argv: Vec<&str> = Vec::with_capacity(args.len() + 1);
    argv.push(&path);
    argv.extend_from_slice(args);
    let pid = crate::proc::spawn(&path, &argv, &["PATH=/bin", "HOME=/"])
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    Ok(crate::proc::wait_exit(pid))
}

/// Runs `/bin/<name>` with `args` and passes when it exits with 0.
fn run(name: &str, args: &[&str]) -> Result<(), String> {
    match wait_status(name, args)? {
        0 => Ok(()),
        status => Err(format!("/bin/{name} {} (its message is on the line above)", describe(status))),
    }
}

fn first_touch(_: &TestEnv<'_>) -> Result<(), String> {
    run("first_touch", &[])
}

fn cow_fork(_: &TestEnv<'_>) -> Result<(), String> {
    run("cow_fork", &[])
}

fn thp_madvise(_: &TestEnv<'_>) -> Result<(), String> {
    run("thp_madvise", &[])
}

fn pageout(_: &TestEnv<'_>) -> Result<(), String> {
    run("pageout", &[])
}

fn threads_futex(_: &TestEnv<'_>) -> Result<(), String> {
    run("threads_futex", &[])
}

/// `rawdisk_fork`'s exit status when the disk's writes were lost.
const LOST_STATUS: i32 = 4;

/// Seed 004 from user space, on the scratch disk's healthy first pages
/// (`bug=forget-anon-exclusive` must make it fail, saying the writes are
/// lost: CI's user bug replay looks for those words).
fn rawdisk_fork(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = format!("/dev/{}", scratch_disk()?.name());
    match wait_status("rawdisk_fork", &[&disk])? {
        0 => Ok(()),
        status if status == LOST_STATUS << 8 => Err(format!(
            "a raw read from {disk} into a buffer forked and paged out meanwhile: the disk's writes are lost"
        )),
        status => Err(format!("/bin/rawdisk_fork {} (its message is on the line above)", describe(status))),
    }
}

/// `rawdisk_get`'s exit status when it did not reach the race.
const NOT_REACHED_STATUS: i32 = 5;

/// Seed 004 replayed from user space: a raw read into a buffer paged out
/// and write-faulted (bytes unchanged) meanwhile, with the hold the raw
/// disks take now (`rawdisk_hold=`, passed to the program). It passes with
/// pins and with plain references (the swap entry's exclusive bit keeps
/// the page the process's own); `rawdisk_hold=get
/// bug=forget-anon-exclusive` must make it fail saying the writes are
/// lost (CI's bug replay looks for those words).
fn rawdisk_get(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = format!("/dev/{}", scratch_disk()?.name());
    let hold = match crate::fs::dev::raw_hold() {
        Hold::Pin => "pin",
        Hold::Get => "get",
    };
    match wait_status("rawdisk_get", &[&disk, hold])? {
        0 => Ok(()),
        status if status == LOST_STATUS << 8 => Err(format!(
            "a raw read from {disk} (hold {hold}) into a buffer paged out and write-faulted meanwhile: \
             the disk's writes are lost"
        )),
        status if status == NOT_REACHED_STATUS << 8 => Err(format!(
            "/bin/rawdisk_get (hold {hold}) did not reach the race (its message is on the line above)"
        )),
        status => Err(format!("/bin/rawdisk_get {} (its message is on the line above)", describe(status))),
    }
}

fn sigsegv_handler(_: &TestEnv<'_>) -> Result<(), String> {
    run("sigsegv_handler", &[])
}

fn signal_restart(_: &TestEnv<'_>) -> Result<(), String> {
    run("signal_restart", &[])
}

fn sleeps(_: &TestEnv<'_>) -> Result<(), String> {
    run("sleeps", &[])
}

fn execve_limits(_: &TestEnv<'_>) -> Result<(), String> {
    run("execve_limits", &[])
}

fn signal_waits(_: &TestEnv<'_>) -> Result<(), String> {
    run("signal_waits", &[])
}

/// With a kernel address that really is mapped: the copy must refuse it
/// for being the kernel's, not for being unmapped.
fn efault(_: &TestEnv<'_>) -> Result<(), String> {
    run("efault", &[&kernel_word_address()])
}

fn kernel_word_address() -> String {
    format!("{:#x}", core::ptr::addr_of!(KERNEL_WORD) as u64)
}

/// A kernel address that really is mapped (this file's static).
fn kernel_read(_: &TestEnv<'_>) -> Result<(), String> {
    run("kernel_read", &[&kernel_word_address()])
}

fn enosys(_: &TestEnv<'_>) -> Result<(), String> {
    run("enosys", &[])
}

fn badargs(_: &TestEnv<'_>) -> Result<(), String> {
    run("badargs", &[])
}

fn fp_signal(_: &TestEnv<'_>) -> Result<(), String> {
    run("fp_signal", &[])
}

fn static_pie(_: &TestEnv<'_>) -> Result<(), String> {
    run("static_pie", &[])
}

fn wall_clock(_: &TestEnv<'_>) -> Result<(), String> {
    run("wall_clock", &[])
}

fn random_bytes(_: &TestEnv<'_>) -> Result<(), String> {
    run("random_bytes", &[])
}

fn cpu_times(_: &TestEnv<'_>) -> Result<(), String> {
    run("cpu_times", &[])
}

fn proc_stat(_: &TestEnv<'_>) -> Result<(), String> {
    run("proc_stat", &[])
}

/// `sendfile` between files and pipes, and to and from the scratch disk
/// (the kernel-buffer bounce of raw disks).
fn sendfile_copy(_: &TestEnv<'_>) -> Result<(), String> {
    let disk = format!("/dev/{}", scratch_disk()?.name());
    run("sendfile_copy", &[&disk])
}

fn exec_race(_: &TestEnv<'_>) -> Result<(), String> {
    run("exec_race", &[])
}

fn clone_fs(_: &TestEnv<'_>) -> Result<(), String> {
    run("clone_fs", &[])
}

pub(crate) const TESTS: &[Test] = register!["user":
    first_touch, cow_fork, thp_madvise, pageout, threads_futex, rawdisk_fork, rawdisk_get,
    sigsegv_handler, fp_signal, signal_waits, signal_restart, sleeps, execve_limits, efault, kernel_read, enosys,
    badargs, static_pie, wall_clock, random_bytes, cpu_times, proc_stat, sendfile_copy, exec_race,
    clone_fs];
