//! User mode on AArch64: entering EL0 with `eret`, coming back through the
//! lower-EL vectors, the unprivileged copies (`ldtr`/`sttr`) and their
//! fix-ups, PAN, and `AT_HWCAP` from the ID registers. The model is
//! `arch_common::user`'s; this is its AArch64 half.
//!
//! ## Entering and leaving EL0
//!
//! `arch_aarch64_enter_user(regs, info)` is called like a function. It
//! pushes a 192-byte frame on the task's kernel stack (the `Regs` and
//! `info` pointers, x19..x30, d8..d15 and the kernel's FPCR: what AAPCS64
//! says a call keeps), loads every user register from `*regs` (SP_EL0 from
//! `sp`, ELR_EL1 from `pc`, SPSR_EL1 from `pstate`, `TPIDR_EL0` from `tls`,
//! q0..q31, FPCR, FPSR, x0..x30), zeroes `TPIDRRO_EL0` (the kernel's
//! scratch register, see [`crate::trap`]) and `eret`s. SP_EL1 stays on the
//! frame, so an exception from EL0 enters with SP pointing at it.
//!
//! The four lower-EL AArch64 vectors (8 synchronous, 9 IRQ, 10 FIQ, 11
//! SError) push user x0 and x1, store every user register back into
//! `*regs`, write ESR_EL1 and FAR_EL1 to `*info`, restore the kernel's
//! callee-saved registers from the frame and return to
//! `arch_aarch64_enter_user`'s caller with the vector number in x0. Rust
//! ([`UserMode::enter_user`]) then decodes the exception into a
//! [`UserExit`]; for an IRQ it first runs the interrupt handlers
//! ([`crate::irq::handle_pending`]: no preemption from here, the task's
//! loop decides).
//!
//! `pstate` is sanitised on entry: only NZCV (bits 31..28) come from the
//! saved value; the mode is EL0t and DAIF clear (interrupts on in user
//! mode). A kernel bug or a crafted signal frame cannot enter EL1 that way.
//!
//! ## User access
//!
//! `arch_aarch64_copy_from_user` and `arch_aarch64_copy_to_user` touch
//! user memory only with `ldtr`/`ldtrb` and `sttr`/`sttrb`: executed at
//! EL1 they are checked with EL0's permissions, so a kernel address (no
//! AP\[1\]) is refused, and PAN does not apply to them. They copy bytes
//! until the user address is 8-aligned, then words (an aligned word never
//! straddles a page, so a fault's address is the first byte that could not
//! be reached), then the tail in bytes. The six user-access instructions
//! are the exception table ([`uaccess_sites`]): a data abort on one of
//! them is offered to the kernel (`arch_common::user::offer_uaccess_fault`);
//! when the page was mapped the trap returns and the instruction runs
//! again, otherwise the trap handler sets x0 = 1, x1 = FAR and resumes at
//! `arch_aarch64_uaccess_fixup` (a `ret`), so the routine returns
//! `UserFault { addr: FAR }`. A fault on the routines' kernel-side loads
//! and stores is not in the table: that stays a kernel bug.
//!
//! ## The CPU's setup
//!
//! [`init_this_cpu`] (every CPU, at boot) lets EL0 do what Linux lets
//! programs do: `DC ZVA`, reading CTR_EL0, `DC CVAU`/`IC IVAU`
//! (SCTLR_EL1.DZE, UCT, UCI) and reading the virtual counter
//! (CNTKCTL_EL1.EL0VCTEN); unmodified C libraries use them.
//!
//! ## PAN
//!
//! When ID_AA64MMFR1_EL1.PAN says the CPU has it, [`init_this_cpu`] clears
//! SCTLR_EL1.SPAN (so every exception taken to EL1, from EL0 too, sets
//! PSTATE.PAN) and sets PSTATE.PAN: from then on a privileged load or
//! store at an EL0-accessible address takes a permission fault. The kernel
//! reaches user memory only through the copies above. `cortex-a72`
//! (ARMv8.0) has no PAN; QEMU's `max` has.
//!
//! Locks: none. [`PAN_ON`] is written once per CPU with the same value.
#![cfg(target_os = "none")]

use crate::trap::{decode_abort, ec, TrapFrame};
use crate::Aarch64;
use arch_common::user::{FpCause, UserException, UserExit, UserFault, UserMode, UserRegs};
use core::sync::atomic::{AtomicBool, Ordering};
use mm::fault::MemFault;

/// A user thread's registers, as EL0 left them. Layout shared with the
/// assembly below (offsets in the `const _` checks).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Regs {
    /// x0..x30 (x30 is the link register).
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// ELR_EL1: where EL0 resumes.
    pub pc: u64,
    /// SPSR_EL1 as EL0 left it; only NZCV are used on entry.
    pub pstate: u64,
    /// TPIDR_EL0.
    pub tls: u64,
    _pad: u64,
    /// The FP/SIMD registers.
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

const _: () = assert!(core::mem::offset_of!(Regs, sp) == 248);
const _: () = assert!(core::mem::offset_of!(Regs, pc) == 256);
const _: () = assert!(core::mem::offset_of!(Regs, pstate) == 264);
const _: () = assert!(core::mem::offset_of!(Regs, tls) == 272);
const _: () = assert!(core::mem::offset_of!(Regs, q) == 288);
const _: () = assert!(core::mem::offset_of!(Regs, fpcr) == 800);
const _: () = assert!(core::mem::offset_of!(Regs, fpsr) == 808);

/// The end of the user half (TTBR0's 48-bit range): user addresses are
/// below it.
pub const USER_END: u64 = 1 << 48;

/// SPSR bits user mode may set: the condition flags N, Z, C, V.
const SPSR_NZCV: u64 = 0xf << 28;

impl UserRegs for Regs {
    fn new(pc: u64, sp: u64) -> Regs {
        Regs { pc, sp, ..Regs::default() }
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    fn sp(&self) -> u64 {
        self.sp
    }
    fn set_sp(&mut self, sp: u64) {
        self.sp = sp;
    }
    fn tls(&self) -> u64 {
        self.tls
    }
    fn set_tls(&mut self, tls: u64) {
        self.tls = tls;
    }
    fn syscall_nr(&self) -> u64 {
        self.x[8]
    }
    fn syscall_arg(&self, i: usize) -> u64 {
        assert!(i < 6, "system calls have six arguments, not {}", i + 1);
        self.x[i]
    }
    fn set_syscall_return(&mut self, value: u64) {
        self.x[0] = value;
    }
    fn restart_syscall(&mut self, nr: u64, arg0: u64) {
        // `svc #0` is one 4-byte instruction.
        self.pc = self.pc.wrapping_sub(4);
        self.x[8] = nr;
        self.x[0] = arg0;
    }
    fn set_call(&mut self, pc: u64, sp: u64, args: [u64; 3], ret: u64) {
        self.pc = pc;
        self.sp = sp;
        self.x[..3].copy_from_slice(&args);
        self.x[30] = ret;
    }
    const RET_ON_STACK: bool = false;
}

/// Where the lower-EL vectors report the exception: ESR_EL1, FAR_EL1.
#[repr(C)]
#[derive(Debug, Default)]
struct TrapInfo {
    esr: u64,
    far: u64,
}

/// The vectors of `crate::trap`'s table that come from EL0 (AArch64).
pub(crate) const VECTOR_LOWER_SYNC: u64 = 8;
const VECTOR_LOWER_IRQ: u64 = 9;
const VECTOR_LOWER_FIQ: u64 = 10;

// The lower-EL vector entries themselves are in `crate::trap`'s table
// (`USER_ENTRY`); they branch to `arch_aarch64_user_exit` here.
core::arch::global_asm!(
    r#"
.section .text
.global arch_aarch64_enter_user
arch_aarch64_enter_user:
    sub sp, sp, #192
    stp x0, x1, [sp, #0]
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    stp x29, x30, [sp, #96]
    stp d8, d9, [sp, #112]
    stp d10, d11, [sp, #128]
    stp d12, d13, [sp, #144]
    stp d14, d15, [sp, #160]
    mrs x2, fpcr
    str x2, [sp, #176]

    ldr x2, [x0, #248]
    msr sp_el0, x2
    ldp x2, x3, [x0, #256]
    msr elr_el1, x2
    and x3, x3, #{nzcv}
    msr spsr_el1, x3
    ldr x2, [x0, #272]
    msr tpidr_el0, x2
    msr tpidrro_el0, xzr
    add x2, x0, #288
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    ldr x2, [x0, #800]
    ldr x3, [x0, #808]
    msr fpcr, x2
    msr fpsr, x3
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0, #0]
    eret
    // Nothing after `eret` runs; keep the CPU from speculating into it.
    dsb nsh
    isb

// From a lower-EL vector: SP = the frame above with user x0, x1 pushed
// below it; x1 = the vector number; every other register is the user's.
.global arch_aarch64_user_exit
arch_aarch64_user_exit:
    ldr x0, [sp, #16]
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0, #0]
    mrs x2, sp_el0
    str x2, [x0, #248]
    mrs x2, elr_el1
    mrs x3, spsr_el1
    stp x2, x3, [x0, #256]
    mrs x2, tpidr_el0
    str x2, [x0, #272]
    add x2, x0, #288
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mrs x2, fpcr
    mrs x3, fpsr
    str x2, [x0, #800]
    str x3, [x0, #808]
    ldr x4, [sp, #8]
    mrs x2, esr_el1
    mrs x3, far_el1
    stp x2, x3, [x4]
    mov x0, x1
    ldr x2, [sp, #176]
    msr fpcr, x2
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp, #96]
    ldp d8, d9, [sp, #112]
    ldp d10, d11, [sp, #128]
    ldp d12, d13, [sp, #144]
    ldp d14, d15, [sp, #160]
    add sp, sp, #192
    ret

// copy_from_user(dst x0, src x1 (user), len x2) -> (x0 = 0 | 1, x1 = FAR)
.global arch_aarch64_copy_from_user
.global arch_aarch64_uaccess_ld_head
.global arch_aarch64_uaccess_ld_word
.global arch_aarch64_uaccess_ld_tail
arch_aarch64_copy_from_user:
    cbz x2, 9f
1:  tst x1, #7
    b.eq 2f
arch_aarch64_uaccess_ld_head:
    ldtrb w3, [x1]
    strb w3, [x0], #1
    add x1, x1, #1
    subs x2, x2, #1
    b.ne 1b
    b 9f
2:  cmp x2, #8
    b.lo 3f
arch_aarch64_uaccess_ld_word:
    ldtr x3, [x1]
    str x3, [x0], #8
    add x1, x1, #8
    sub x2, x2, #8
    b 2b
3:  cbz x2, 9f
arch_aarch64_uaccess_ld_tail:
    ldtrb w3, [x1]
    strb w3, [x0], #1
    add x1, x1, #1
    subs x2, x2, #1
    b.ne 3b
9:  mov x0, #0
    mov x1, #0
    ret

// copy_to_user(dst x0 (user), src x1, len x2) -> (x0 = 0 | 1, x1 = FAR)
.global arch_aarch64_copy_to_user
.global arch_aarch64_uaccess_st_head
.global arch_aarch64_uaccess_st_word
.global arch_aarch64_uaccess_st_tail
arch_aarch64_copy_to_user:
    cbz x2, 9f
1:  tst x0, #7
    b.eq 2f
    ldrb w3, [x1], #1
arch_aarch64_uaccess_st_head:
    sttrb w3, [x0]
    add x0, x0, #1
    subs x2, x2, #1
    b.ne 1b
    b 9f
2:  cmp x2, #8
    b.lo 3f
    ldr x3, [x1], #8
arch_aarch64_uaccess_st_word:
    sttr x3, [x0]
    add x0, x0, #8
    sub x2, x2, #8
    b 2b
3:  cbz x2, 9f
    ldrb w3, [x1], #1
arch_aarch64_uaccess_st_tail:
    sttrb w3, [x0]
    add x0, x0, #1
    subs x2, x2, #1
    b.ne 3b
9:  mov x0, #0
    mov x1, #0
    ret

// The trap handler resumes here after a refused fault with x0 = 1 and
// x1 = the address.
.global arch_aarch64_uaccess_fixup
arch_aarch64_uaccess_fixup:
    ret
"#,
    nzcv = const SPSR_NZCV,
);

/// What the copy routines return in x0 and x1.
#[repr(C)]
struct CopyResult {
    faulted: u64,
    addr: u64,
}

extern "C" {
    fn arch_aarch64_enter_user(regs: *mut Regs, info: *mut TrapInfo) -> u64;
    fn arch_aarch64_copy_from_user(dst: *mut u8, src: u64, len: usize) -> CopyResult;
    fn arch_aarch64_copy_to_user(dst: u64, src: *const u8, len: usize) -> CopyResult;
    static arch_aarch64_uaccess_ld_head: u8;
    static arch_aarch64_uaccess_ld_word: u8;
    static arch_aarch64_uaccess_ld_tail: u8;
    static arch_aarch64_uaccess_st_head: u8;
    static arch_aarch64_uaccess_st_word: u8;
    static arch_aarch64_uaccess_st_tail: u8;
    static arch_aarch64_uaccess_fixup: u8;
}

/// The exception table: the addresses of the six instructions that touch
/// user memory.
fn uaccess_sites() -> [u64; 6] {
    [
        core::ptr::addr_of!(arch_aarch64_uaccess_ld_head) as u64,
        core::ptr::addr_of!(arch_aarch64_uaccess_ld_word) as u64,
        core::ptr::addr_of!(arch_aarch64_uaccess_ld_tail) as u64,
        core::ptr::addr_of!(arch_aarch64_uaccess_st_head) as u64,
        core::ptr::addr_of!(arch_aarch64_uaccess_st_word) as u64,
        core::ptr::addr_of!(arch_aarch64_uaccess_st_tail) as u64,
    ]
}

/// Called by the trap handler for a data abort in the kernel: true when it
/// hit a user-access instruction and is dealt with: the kernel mapped the
/// page (the frame is left alone: the instruction runs again), or it
/// refused (the frame is set to return the fault from the copy routine).
pub(crate) fn fix_up_fault(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    if !uaccess_sites().contains(&frame.elr) {
        return false;
    }
    if arch_common::user::offer_uaccess_fault(fault) {
        return true;
    }
    frame.x[0] = 1;
    frame.x[1] = frame.far;
    frame.elr = core::ptr::addr_of!(arch_aarch64_uaccess_fixup) as u64;
    true
}

/// Whether this CPU runs with PAN (set by [`init_this_cpu`]; all CPUs are
/// alike, so one flag).
static PAN_ON: AtomicBool = AtomicBool::new(false);

/// Whether the CPU has PAN: ID_AA64MMFR1_EL1.PAN (bits 23..20) is not 0.
pub fn cpu_has_pan() -> bool {
    let mmfr1: u64;
    // SAFETY: reading an ID register has no side effect.
    unsafe { core::arch::asm!("mrs {0}, id_aa64mmfr1_el1", out(reg) mmfr1, options(nomem, nostack)) };
    (mmfr1 >> 20) & 0xf != 0
}

/// SCTLR_EL1.SPAN: when clear, an exception taken to EL1 sets PSTATE.PAN.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1 bits that let EL0 do what Linux lets programs do: `DC ZVA`
/// (DZE, 14), read CTR_EL0 (UCT, 15), and `DC CVAU`/`IC IVAU` on its own
/// memory (UCI, 26), which `__clear_cache` and `memset` use.
const SCTLR_EL0_CACHE_OPS: u64 = 1 << 14 | 1 << 15 | 1 << 26;
/// CNTKCTL_EL1.EL0VCTEN: EL0 may read CNTVCT_EL0 and CNTFRQ_EL0, as on
/// Linux (its timers stay EL1's).
const CNTKCTL_EL0VCTEN: u64 = 1 << 1;

/// Sets up what user mode needs of this CPU, once per CPU, after the boot
/// path set SCTLR_EL1: EL0 may use the cache operations and read the
/// virtual counter as on Linux, and PAN is on when the CPU has it (module
/// doc). Returns whether PAN is on.
pub fn init_this_cpu() -> bool {
    // SAFETY: the SCTLR bits only stop EL0's cache operations and counter
    // reads from trapping (they act on memory EL0 may read anyway); no
    // kernel state depends on them.
    unsafe {
        core::arch::asm!(
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, {el0}",
            "msr sctlr_el1, {t}",
            "mrs {t}, cntkctl_el1",
            "orr {t}, {t}, #{vct}",
            "msr cntkctl_el1, {t}",
            "isb",
            t = out(reg) _,
            el0 = in(reg) SCTLR_EL0_CACHE_OPS,
            vct = const CNTKCTL_EL0VCTEN,
            options(nostack)
        );
    }
    if !cpu_has_pan() {
        return false;
    }
    // SAFETY: clearing SPAN only makes exception entry set PAN; `msr pan,
    // #1` (written as its encoding, which needs no assembler extension)
    // makes privileged accesses to EL0 memory fault: the kernel touches
    // user memory only through the unprivileged copies, and the probes
    // expect exactly that fault.
    unsafe {
        core::arch::asm!(
            "mrs {t}, sctlr_el1",
            "bic {t}, {t}, #{span}",
            "msr sctlr_el1, {t}",
            "isb",
            ".inst 0xd500419f", // msr pan, #1
            "isb",
            t = out(reg) _,
            span = const SCTLR_SPAN,
            options(nostack)
        );
    }
    PAN_ON.store(true, Ordering::Relaxed);
    true
}

/// Whether PAN is on (this CPU has it and [`init_this_cpu`] ran).
pub fn pan_enabled() -> bool {
    PAN_ON.load(Ordering::Relaxed)
}

/// The synchronous exception of `info` from EL0, as the kernel sees it.
fn decode_sync(regs: &Regs, info: &TrapInfo) -> UserExit {
    let esr = info.esr;
    match crate::trap::esr_class(esr) {
        ec::SVC64 => UserExit::Syscall,
        ec::DATA_ABORT_LOWER | ec::INSN_ABORT_LOWER => {
            // DFSC 0b100001: an alignment fault, not a page fault.
            if esr & 0x3f == 0b10_0001 {
                return UserExit::Exception(UserException::Alignment { addr: info.far });
            }
            match decode_abort(esr, info.far) {
                Some(fault) => UserExit::PageFault(fault),
                None => UserExit::Exception(UserException::Other { syndrome: esr }),
            }
        }
        ec::PC_ALIGNMENT => UserExit::Exception(UserException::Alignment { addr: info.far }),
        ec::SP_ALIGNMENT => UserExit::Exception(UserException::Alignment { addr: regs.sp }),
        ec::BRK64 | ec::SOFTWARE_STEP_LOWER => UserExit::Exception(UserException::Breakpoint),
        // A trapped floating-point exception (FPCR's trap enables; the
        // CPU may not implement them: QEMU does not). ISS: IOF 0, DZF 1,
        // OFF 2, UFF 3, IXF 4, IDF 7.
        ec::FP_EXCEPTION64 => {
            let cause = if esr & 1 != 0 {
                FpCause::InvalidOperation
            } else if esr & 2 != 0 {
                FpCause::DivideByZero
            } else if esr & 4 != 0 {
                FpCause::Overflow
            } else if esr & (8 | 0x80) != 0 {
                FpCause::Underflow
            } else if esr & 0x10 != 0 {
                FpCause::Inexact
            } else {
                FpCause::Unknown
            };
            UserExit::Exception(UserException::FloatingPoint { cause })
        }
        ec::UNKNOWN | ec::SYSREG | ec::ILLEGAL_STATE | ec::SVE => {
            UserExit::Exception(UserException::IllegalInstruction)
        }
        _ => UserExit::Exception(UserException::Other { syndrome: esr }),
    }
}

impl UserMode for Aarch64 {
    type Regs = Regs;
    const MACHINE: &'static str = "aarch64";

    /// Enters EL0 with `regs` (module doc). Nothing per-CPU to set up:
    /// exceptions from EL0 land on SP_EL1, which is the stack this is
    /// called on.
    unsafe fn enter_user(regs: &mut Regs) -> UserExit {
        let mut info = TrapInfo::default();
        // SAFETY: the caller's contract: interrupts are off, the user
        // address space is loaded, and this is the task's own kernel stack,
        // where the lower-EL vectors find the frame the routine pushes. The
        // routine keeps every register AAPCS64 says a call keeps.
        let vector = unsafe { arch_aarch64_enter_user(regs, &mut info) };
        match vector {
            VECTOR_LOWER_SYNC => decode_sync(regs, &info),
            VECTOR_LOWER_IRQ => {
                crate::irq::handle_pending();
                UserExit::Interrupt
            }
            // Nothing raises FIQs on this machine: a spurious one is
            // simply taken and forgotten.
            VECTOR_LOWER_FIQ => UserExit::Interrupt,
            // SError: an asynchronous external abort, blamed on the
            // program (it was running).
            _ => UserExit::Exception(UserException::Other { syndrome: info.esr }),
        }
    }

    unsafe fn copy_from_user(dst: *mut u8, src: u64, len: usize) -> Result<(), UserFault> {
        // SAFETY: `dst` is valid for `len` bytes (the caller's contract);
        // the routine reads `src` only with unprivileged loads, whose
        // faults the trap handler fixes up.
        let r = unsafe { arch_aarch64_copy_from_user(dst, src, len) };
        if r.faulted == 0 {
            Ok(())
        } else {
            Err(UserFault { addr: r.addr })
        }
    }

    unsafe fn copy_to_user(dst: u64, src: *const u8, len: usize) -> Result<(), UserFault> {
        // SAFETY: as in `copy_from_user`, the other way round.
        let r = unsafe { arch_aarch64_copy_to_user(dst, src, len) };
        if r.faulted == 0 {
            Ok(())
        } else {
            Err(UserFault { addr: r.addr })
        }
    }

    fn hwcap() -> u64 {
        crate::hwcap::from_id_registers(&crate::hwcap::IdRegisters::read())
    }
}
