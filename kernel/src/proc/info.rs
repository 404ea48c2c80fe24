//! The information system calls: `arch_prctl`, `prctl`, `prlimit64`, `getrandom`,
//! the clocks and sleeps, `getrusage`, `sched_getaffinity`, `sysinfo`,
//! `uname`; and the random bytes of `AT_RANDOM`.
//!
//! Time: the monotonic clocks are the arch's counter (`Time::now_ns`,
//! since boot). The wall clocks (`CLOCK_REALTIME` and its variants,
//! `CLOCK_TAI`, `time`, `gettimeofday`) add [`REALTIME_OFFSET_NS`]: the
//! machine's real-time clock (`Time::rtc_unix_secs`: the CMOS RTC, the
//! PL031) is read once at boot ([`init_wall_clock`]) and the counter
//! advances it; nothing sets it later (no `settimeofday`), so it never
//! steps. A machine without one counts from 1970 at boot. The CPU-time
//! clocks read the monotonic counter. Sleeps are in scheduler ticks, at
//! least as long as asked.
//!
//! Random bytes (`getrandom`, `AT_RANDOM`): each 64 bits come from the
//! CPU's random-number instruction when it has one (`Cpu::hw_random`:
//! x86_64 `RDSEED`/`RDRAND`, AArch64 `RNDR`), a hardware generator fed by
//! an entropy source: as unpredictable as the CPU is trustworthy. The
//! fallback, when the CPU has none or it fails ten times running, is a
//! generator (splitmix64) over a counter and the clock: distinct per call
//! but NOT a CSPRNG (its output inverts to the counter and the clock, so
//! canaries and hash seeds are guessable). The kernel says at boot which
//! one it has ([`describe_random`]).
//!
//! Locks: none.

use super::syscall::{Ctx, Errno, SysResult};
use super::UserArch;
use crate::arch::prelude::*;
use crate::task::sched;
use crate::vm::uaccess::copy_to_user;
use alloc::vec;
use arch_common::user::{UserMode, UserRegs};
use core::sync::atomic::{AtomicU64, Ordering};
use linux_raw_sys::general as g;

/// `CLOCK_REALTIME` minus the monotonic clock, in nanoseconds: written
/// once at boot by [`init_wall_clock`], before any process runs; read
/// relaxed.
static REALTIME_OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Reads the real-time clock once, at boot (see the module doc).
pub fn init_wall_clock() {
    match Arch::rtc_unix_secs() {
        Some((secs, device)) => {
            let offset = secs.saturating_mul(1_000_000_000).saturating_sub(Arch::now_ns());
            REALTIME_OFFSET_NS.store(offset, Ordering::Relaxed);
            crate::println!("time: {device}: {secs} s since the epoch; CLOCK_REALTIME follows it");
        }
        None => crate::println!("time: no real-time clock; CLOCK_REALTIME counts from 1970 at boot"),
    }
}

/// The wall clock: nanoseconds since the Unix epoch.
fn realtime_ns() -> u64 {
    Arch::now_ns().saturating_add(REALTIME_OFFSET_NS.load(Ordering::Relaxed))
}

/// Whether `clock` is a wall clock (else a monotonic or CPU-time one).
fn is_wall_clock(clock: u32) -> bool {
    matches!(clock, g::CLOCK_REALTIME | g::CLOCK_REALTIME_COARSE | g::CLOCK_REALTIME_ALARM | g::CLOCK_TAI)
}

/// The fallback generator's state.
static RANDOM: AtomicU64 = AtomicU64::new(0);

/// Says at boot where random bytes come from.
pub fn describe_random() {
    match Arch::hw_random_source() {
        Some(name) => crate::println!("random: getrandom and AT_RANDOM from the CPU's {name}"),
        None => crate::println!(
            "random: the CPU has no random-number instruction; getrandom and AT_RANDOM come from a \
             clock-seeded generator, NOT a CSPRNG"
        ),
    }
}

/// The next 64 random bits (see the module doc).
fn next_random() -> u64 {
    Arch::hw_random().unwrap_or_else(fallback_random)
}

/// The fallback generator's next 64 bits (see the module doc).
fn fallback_random() -> u64 {
    let step = 0x9e37_79b9_7f4a_7c15u64;
    let s = RANDOM.fetch_add(step, Ordering::Relaxed).wrapping_add(step) ^ Arch::now_ns().rotate_left(32);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 16 random bytes (`AT_RANDOM`).
pub fn random_bytes() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&next_random().to_ne_bytes());
    out[8..].copy_from_slice(&next_random().to_ne_bytes());
    out
}

/// `arch_prctl(code, addr)` (x86_64): the FS base.
pub fn arch_prctl(c: &mut Ctx, code: u64, addr: u64) -> SysResult {
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    match code {
        ARCH_SET_FS => {
            if addr >= crate::vm::space::USER_END {
                return Err(Errno::EPERM);
            }
            c.regs.set_tls(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            copy_to_user(addr, &c.regs.tls().to_ne_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `prctl(option, arg2)`: the thread name (`PR_SET_NAME` accepted and
/// not kept; `PR_GET_NAME` gives the program's name); other options
/// `EINVAL`.
pub fn prctl(c: &mut Ctx, option: u32, arg2: u64) -> SysResult {
    match option {
        linux_raw_sys::prctl::PR_SET_NAME => Ok(0),
        linux_raw_sys::prctl::PR_GET_NAME => {
            let exe = c.thread.process.mm.lock().exe.clone();
            let mut name = [0u8; 16];
            let base = exe.rsplit('/').next().unwrap_or("").as_bytes();
            let n = base.len().min(15);
            name[..n].copy_from_slice(&base[..n]);
            copy_to_user(arg2, &name)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `prlimit64(pid, resource, new, old)`: the limits Linux starts a
/// process with; setting one is accepted and changes nothing.
pub fn prlimit64(c: &mut Ctx, pid: u32, resource: u32, _new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != c.thread.process.pid {
        return Err(Errno::ESRCH);
    }
    let inf = u64::MAX;
    let (cur, max) = match resource {
        g::RLIMIT_STACK => (super::stack::STACK_SIZE, inf),
        g::RLIMIT_NOFILE => (1024, 4096),
        g::RLIMIT_CORE => (0, inf),
        r if r < g::RLIM_NLIMITS => (inf, inf),
        _ => return Err(Errno::EINVAL),
    };
    if old != 0 {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&cur.to_ne_bytes());
        raw[8..].copy_from_slice(&max.to_ne_bytes());
        copy_to_user(old, &raw)?;
    }
    Ok(0)
}

/// `getrandom(buf, len, flags)`.
pub fn getrandom(_c: &mut Ctx, buf: u64, len: u64) -> SysResult {
    let len = len.min(1 << 20);
    let mut bytes = vec![0u8; len as usize];
    for chunk in bytes.chunks_mut(8) {
        let r = next_random().to_ne_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    copy_to_user(buf, &bytes)?;
    Ok(len)
}

/// A `timespec` of `ns` nanoseconds.
fn timespec(ns: u64) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&(ns / 1_000_000_000).to_ne_bytes());
    raw[8..].copy_from_slice(&(ns % 1_000_000_000).to_ne_bytes());
    raw
}

/// `clock_gettime(clock, tp)`.
pub fn clock_gettime(_c: &mut Ctx, clock: u32, tp: u64) -> SysResult {
    if clock > g::CLOCK_TAI {
        return Err(Errno::EINVAL);
    }
    let ns = if is_wall_clock(clock) { realtime_ns() } else { Arch::now_ns() };
    copy_to_user(tp, &timespec(ns))?;
    Ok(0)
}

/// `time(tloc)` (x86_64 only): the seconds of the clock, also stored at
/// `tloc` when it is not null.
pub fn time(_c: &mut Ctx, tloc: u64) -> SysResult {
    let secs = realtime_ns() / 1_000_000_000;
    if tloc != 0 {
        copy_to_user(tloc, &secs.to_ne_bytes())?;
    }
    Ok(secs)
}

/// `gettimeofday(tv, tz)`.
pub fn gettimeofday(_c: &mut Ctx, tv: u64) -> SysResult {
    if tv != 0 {
        let ns = realtime_ns();
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&(ns / 1_000_000_000).to_ne_bytes());
        raw[8..].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_ne_bytes());
        copy_to_user(tv, &raw)?;
    }
    Ok(0)
}

/// `clock_nanosleep(clock, flags, request, remain)` and `nanosleep`: parks
/// until the deadline (`sched::park_for_ns`, to the tick: it ends at most
/// about a tick late) or a signal's kick. Interrupted, it returns `EINTR`
/// and, for a relative sleep, writes the time left to `remain` when that
/// is not null (Linux would restart it through `restart_syscall` when no
/// handler runs; here the caller sees `EINTR` then too).
pub fn clock_nanosleep(c: &mut Ctx, clock: u32, flags: u32, request: u64, remain: u64) -> SysResult {
    let t = super::futex::read_timespec(request)?;
    let now = Arch::now_ns();
    let absolute = flags & g::TIMER_ABSTIME != 0;
    // An absolute wall-clock deadline, on the monotonic clock.
    let t = if absolute && is_wall_clock(clock) {
        t.saturating_sub(REALTIME_OFFSET_NS.load(Ordering::Relaxed))
    } else {
        t
    };
    let deadline = if absolute { t } else { now.saturating_add(t) };
    // One clock read per pass: reading it again for the remaining time
    // could pass the deadline between the two reads and underflow.
    loop {
        let now = Arch::now_ns();
        if now >= deadline {
            return Ok(0);
        }
        if c.thread.interrupted() {
            if !absolute && remain != 0 {
                copy_to_user(remain, &timespec(deadline - now))?;
            }
            return Err(Errno::EINTR);
        }
        sched::park_for_ns(deadline - now);
    }
}

/// `getrusage(who, usage)`: user and system time (the process's, the
/// thread's, or the reaped children's: `super::process::CpuTimes`) and
/// the faults of the process (`ru_minflt`, `ru_majflt`; the children's
/// are not counted).
pub fn getrusage(c: &mut Ctx, who: i32, usage: u64) -> SysResult {
    let p = &c.thread.process;
    let faults = (p.min_flt.load(Ordering::Relaxed), p.maj_flt.load(Ordering::Relaxed));
    let (times, (min, maj)) = match who {
        // RUSAGE_SELF, RUSAGE_THREAD, RUSAGE_CHILDREN
        0 => (p.cpu_times(), faults),
        1 => (c.thread.cpu_times(), faults),
        -1 => (p.children_times(), (0, 0)),
        _ => return Err(Errno::EINVAL),
    };
    copy_to_user(usage, &rusage(times, min, maj))?;
    Ok(0)
}

/// A `struct rusage` with these times and faults (the rest zero).
pub fn rusage(
    times: super::process::CpuTimes,
    min_flt: u64,
    maj_flt: u64,
) -> [u8; core::mem::size_of::<g::rusage>()] {
    let mut raw = [0u8; core::mem::size_of::<g::rusage>()];
    // Two timevals, then maxrss, ixrss, idrss, isrss, minflt, majflt.
    for (at, ns) in [(0, times.user_ns), (16, times.sys_ns)] {
        raw[at..at + 8].copy_from_slice(&(ns / 1_000_000_000).to_ne_bytes());
        raw[at + 8..at + 16].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_ne_bytes());
    }
    raw[64..72].copy_from_slice(&min_flt.to_ne_bytes());
    raw[72..80].copy_from_slice(&maj_flt.to_ne_bytes());
    raw
}

/// `sched_getaffinity(pid, len, mask)`: every online CPU.
pub fn sched_getaffinity(_c: &mut Ctx, len: u64, mask: u64) -> SysResult {
    if len < 8 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let bits = sched::online_cpus().fold(0u64, |m, cpu| m | 1 << cpu);
    copy_to_user(mask, &bits.to_ne_bytes())?;
    Ok(8)
}

/// `sysinfo(info)`.
pub fn sysinfo(_c: &mut Ctx, info: u64) -> SysResult {
    // The same counts as /proc/meminfo's MemTotal and MemFree.
    let frames = crate::memory::frame_allocator();
    let (total, free) = (frames.managed_pages() * 4096, frames.nr_free_pages() * 4096);
    let (swap_free, swap_total) = crate::vm::swap::totals();
    // `struct sysinfo` (linux-raw-sys has no binding of it): uptime,
    // loads[3], totalram, freeram, sharedram, bufferram, totalswap,
    // freeswap (8 bytes each), procs (u16 at 80), totalhigh, freehigh,
    // mem_unit (u32 at 104).
    let mut raw = [0u8; 112];
    let put = |raw: &mut [u8; 112], at: usize, v: u64| raw[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put(&mut raw, 0, Arch::now_ns() / 1_000_000_000);
    put(&mut raw, 32, total);
    put(&mut raw, 40, free);
    put(&mut raw, 64, swap_total * 4096);
    put(&mut raw, 72, swap_free * 4096);
    raw[80..82].copy_from_slice(&(super::process::all().len() as u16).to_ne_bytes());
    raw[104..108].copy_from_slice(&1u32.to_ne_bytes());
    copy_to_user(info, &raw)?;
    Ok(0)
}

/// `uname(buf)`: six fields of 65 bytes.
pub fn uname(_c: &mut Ctx, buf: u64) -> SysResult {
    let fields = ["Linux", "mmkernel", "6.1.0-mmkernel", "#1 SMP", UserArch::MACHINE, "(none)"];
    let mut raw = [0u8; 65 * 6];
    for (i, f) in fields.iter().enumerate() {
        raw[i * 65..i * 65 + f.len()].copy_from_slice(f.as_bytes());
    }
    copy_to_user(buf, &raw)?;
    Ok(0)
}
