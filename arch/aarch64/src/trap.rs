//! Exceptions: the vector table, the register frame each exception saves, and
//! the decoding of the Exception Syndrome Register (ESR_EL1).
//!
//! ## Protocol
//!
//! `VBAR_EL1` points at [`VECTORS`] (2 KiB aligned, 16 entries of 0x80
//! bytes: {current EL with SP0, current EL with SPx, lower EL AArch64, lower
//! EL AArch32} x {synchronous, IRQ, FIQ, SError}). Every entry but the four
//! from EL0 (AArch64) pushes a [`TrapFrame`] on the current stack and calls
//! [`aarch64_trap`] with the entry's index; on return the frame, possibly
//! changed (`elr` moved past a fixed-up access, `x0`/`x1` set to report a
//! fault), is restored and `eret` resumes. The four from EL0 (8..=11)
//! store the user's registers and return from `enter_user` instead
//! ([`crate::user`]).
//!
//! ## Kernel stack overflow
//!
//! A kernel stack that runs into its guard (the unmapped lower half of its
//! slot in the stack window, `arch_common::mmu::STACK_SLOT_SHIFT`) takes a
//! data abort whose frame the entry would push on the same exhausted stack,
//! faulting again and again down the address space. So the entry of a
//! synchronous exception from the kernel (vector 4) first looks at SP,
//! with `TPIDRRO_EL0` as its one scratch register (EL0 may read it, so
//! `enter_user` zeroes it before every entry, as Linux keeps it 0 for
//! AArch64 programs): when SP lies in
//! the window (bits 63..=39 set) and in a guard (bit 15 clear), it switches
//! to this CPU's overflow stack ([`OVERFLOW_STACKS`]) and calls
//! [`aarch64_stack_overflow`], which offers the fault to the kernel
//! (`arch_common::trap::offer_stack_fault`) and never returns to the
//! overflowed code. Every other exception takes the ordinary path.
//!
//! A synchronous exception in the kernel is expected (a user-access
//! instruction of [`crate::user`]'s copies, or a [`crate::probe`] access or
//! breakpoint, each recognised by its exact instruction address), a
//! fault the kernel's handler resolves (`arch_common::trap`), or a kernel
//! bug, reported with ESR, FAR and ELR before a panic. A kernel fault at a
//! user address (the lower half) that is neither a user access nor a probe
//! is always a bug: the kernel touches user memory only through the
//! copies (with PAN on, any other access faults).
#![cfg(target_os = "none")]

use crate::probe;
use core::fmt;
use mm::fault::{Access, FaultCause, MemFault};
use mm::VirtAddr;

/// The registers saved on exception entry. Layout shared with the assembly
/// below: `x[i]` at `8*i`, then ELR, SPSR, ESR, FAR, then the FP/SIMD
/// registers `q0..q31`, FPCR and FPSR.
///
/// The FP/SIMD state is saved because Rust code for `aarch64-unknown-none`
/// uses the NEON registers anywhere (copies, formatting): a handler would
/// otherwise clobber the interrupted code's registers, and a task switch
/// taken from an interrupt would hand them to another task.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    _pad: u64,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 816);
const _: () = assert!(core::mem::offset_of!(TrapFrame, q) == 288);

/// Bytes of each CPU's overflow stack.
const OVERFLOW_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct OverflowStack([u8; OVERFLOW_STACK_SIZE]);

/// One stack per CPU for [`aarch64_stack_overflow`], by kernel CPU index
/// (`TPIDR_EL1`). Used only by the assembly, which points SP at the top of
/// its CPU's stack; the overflowed task never resumes, so each overflow
/// starts from the top again.
static mut OVERFLOW_STACKS: [OverflowStack; crate::cpu::MAX_CPUS] =
    [const { OverflowStack([0; OVERFLOW_STACK_SIZE]) }; crate::cpu::MAX_CPUS];

core::arch::global_asm!(
    r#"
.macro VECTOR_ENTRY kind
    .balign 0x80
.if \kind == 4
    msr tpidrro_el0, x0
    mov x0, sp
    asr x0, x0, #{window_shift}
    cmn x0, #1
    b.ne 1f
    mov x0, sp
    tbnz x0, #{guard_bit}, 1f
    b arch_aarch64_stack_overflow
1:  mrs x0, tpidrro_el0
.endif
    sub sp, sp, #816
    stp x0, x1, [sp, #0]
    mov x1, #\kind
    b arch_aarch64_trap_common
.endm

// From EL0 (AArch64): SP is `arch_aarch64_enter_user`'s frame; back to
// its caller through `arch_aarch64_user_exit` (`crate::user`).
.macro USER_ENTRY kind
    .balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x1, #\kind
    b arch_aarch64_user_exit
.endm

.section .text.vectors, "ax"
.balign 2048
.global arch_aarch64_vectors
arch_aarch64_vectors:
    VECTOR_ENTRY 0
    VECTOR_ENTRY 1
    VECTOR_ENTRY 2
    VECTOR_ENTRY 3
    VECTOR_ENTRY 4
    VECTOR_ENTRY 5
    VECTOR_ENTRY 6
    VECTOR_ENTRY 7
    USER_ENTRY 8
    USER_ENTRY 9
    USER_ENTRY 10
    USER_ENTRY 11
    VECTOR_ENTRY 12
    VECTOR_ENTRY 13
    VECTOR_ENTRY 14
    VECTOR_ENTRY 15

.section .text
arch_aarch64_trap_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x2, elr_el1
    mrs x3, spsr_el1
    stp x30, x2, [sp, #240]
    mrs x4, esr_el1
    stp x3, x4, [sp, #256]
    mrs x5, far_el1
    str x5, [sp, #272]
    add x6, sp, #288
    stp q0, q1, [x6, #0]
    stp q2, q3, [x6, #32]
    stp q4, q5, [x6, #64]
    stp q6, q7, [x6, #96]
    stp q8, q9, [x6, #128]
    stp q10, q11, [x6, #160]
    stp q12, q13, [x6, #192]
    stp q14, q15, [x6, #224]
    stp q16, q17, [x6, #256]
    stp q18, q19, [x6, #288]
    stp q20, q21, [x6, #320]
    stp q22, q23, [x6, #352]
    stp q24, q25, [x6, #384]
    stp q26, q27, [x6, #416]
    stp q28, q29, [x6, #448]
    stp q30, q31, [x6, #480]
    mrs x7, fpcr
    mrs x8, fpsr
    str x7, [sp, #800]
    str x8, [sp, #808]
    mov x0, sp
    bl {handler}
    add x6, sp, #288
    ldr x7, [sp, #800]
    ldr x8, [sp, #808]
    msr fpcr, x7
    msr fpsr, x8
    ldp q0, q1, [x6, #0]
    ldp q2, q3, [x6, #32]
    ldp q4, q5, [x6, #64]
    ldp q6, q7, [x6, #96]
    ldp q8, q9, [x6, #128]
    ldp q10, q11, [x6, #160]
    ldp q12, q13, [x6, #192]
    ldp q14, q15, [x6, #224]
    ldp q16, q17, [x6, #256]
    ldp q18, q19, [x6, #288]
    ldp q20, q21, [x6, #320]
    ldp q22, q23, [x6, #352]
    ldp q24, q25, [x6, #384]
    ldp q26, q27, [x6, #416]
    ldp q28, q29, [x6, #448]
    ldp q30, q31, [x6, #480]
    ldp x30, x2, [sp, #240]
    ldr x3, [sp, #256]
    msr elr_el1, x2
    msr spsr_el1, x3
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    add sp, sp, #816
    eret

// SP is in a guard: x0 is free (the overflowed code never resumes), x1..
// are not needed either. Switch to this CPU's overflow stack and report.
arch_aarch64_stack_overflow:
    mrs x0, tpidr_el1
    add x0, x0, #1
    lsl x0, x0, #{overflow_shift}
    adrp x1, {overflow_stacks}
    add x1, x1, :lo12:{overflow_stacks}
    add x1, x1, x0
    mov x0, sp
    mov sp, x1
    mrs x1, elr_el1
    mrs x2, far_el1
    mrs x3, spsr_el1
    bl {overflow}
    brk #2
"#,
    handler = sym aarch64_trap,
    overflow = sym aarch64_stack_overflow,
    overflow_stacks = sym OVERFLOW_STACKS,
    overflow_shift = const OVERFLOW_STACK_SIZE.trailing_zeros(),
    window_shift = const arch_common::mmu::STACK_WINDOW_SHIFT,
    guard_bit = const arch_common::mmu::STACK_SLOT_SHIFT - 1,
);

const _: () = assert!(OVERFLOW_STACK_SIZE.is_power_of_two());
// `asr #window_shift; cmn #1` tests "in the window": it must be the
// address space's last 2^window_shift bytes.
const _: () = assert!(arch_common::mmu::STACK_WINDOW_START == !0u64 << arch_common::mmu::STACK_WINDOW_SHIFT);

/// SPSR_EL1.I: IRQs were masked.
const SPSR_I: u64 = 1 << 7;

/// Called by the vector entry, on this CPU's overflow stack, when a
/// synchronous exception from the kernel came with SP in a stack guard.
///
/// # Panics
/// When the kernel does not end the task (it returns from the hook): the
/// fault is then reported as a kernel bug.
#[no_mangle]
extern "C" fn aarch64_stack_overflow(sp: u64, elr: u64, far: u64, spsr: u64) -> ! {
    let fault = arch_common::trap::StackFault { sp, addr: far, pc: elr, irqs_were_on: spsr & SPSR_I == 0 };
    arch_common::trap::offer_stack_fault(&fault);
    panic!("exception with SP {sp:#x} in a stack guard (FAR {far:#x}) at PC {elr:#x}");
}

extern "C" {
    /// The vector table defined in the assembly above.
    static arch_aarch64_vectors: u8;
}

/// The address of the vector table, for `VBAR_EL1`.
pub fn vectors_address() -> u64 {
    core::ptr::addr_of!(arch_aarch64_vectors) as u64
}

/// Points `VBAR_EL1` at the vector table. The boot path does this in assembly
/// before any Rust code; this is for secondary CPUs and for tests.
pub fn install() {
    // SAFETY: the vector table is linked into the kernel image and mapped for
    // as long as the kernel runs; ISB makes the new base take effect.
    unsafe {
        core::arch::asm!("msr vbar_el1, {0}", "isb", in(reg) vectors_address(), options(nostack));
    }
}

/// Which of the 16 vectors was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorKind(pub u64);

impl fmt::Display for VectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = ["current EL, SP0", "current EL, SPx", "lower EL, AArch64", "lower EL, AArch32"];
        let what = ["synchronous", "IRQ", "FIQ", "SError"];
        let i = self.0 as usize & 15;
        write!(f, "{} from {}", what[i % 4], from[i / 4])
    }
}

/// Exception classes (ESR_EL1.EC, bits 31:26) the kernel tells apart.
pub mod ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const ILLEGAL_STATE: u64 = 0x0e;
    pub const SVC64: u64 = 0x15;
    pub const SYSREG: u64 = 0x18;
    pub const SVE: u64 = 0x19;
    pub const INSN_ABORT_LOWER: u64 = 0x20;
    pub const INSN_ABORT_SAME: u64 = 0x21;
    pub const PC_ALIGNMENT: u64 = 0x22;
    pub const DATA_ABORT_LOWER: u64 = 0x24;
    pub const DATA_ABORT_SAME: u64 = 0x25;
    pub const SP_ALIGNMENT: u64 = 0x26;
    pub const FP_EXCEPTION64: u64 = 0x2c;
    pub const SERROR: u64 = 0x2f;
    pub const SOFTWARE_STEP_LOWER: u64 = 0x32;
    pub const BRK64: u64 = 0x3c;
}

/// The exception class of an ESR value.
pub const fn esr_class(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// A short name for an exception class, for reports.
pub fn class_name(class: u64) -> &'static str {
    match class {
        ec::UNKNOWN => "unknown reason (undefined instruction?)",
        ec::SVC64 => "SVC",
        ec::INSN_ABORT_LOWER | ec::INSN_ABORT_SAME => "instruction abort",
        ec::PC_ALIGNMENT => "PC alignment fault",
        ec::DATA_ABORT_LOWER | ec::DATA_ABORT_SAME => "data abort",
        ec::SP_ALIGNMENT => "SP alignment fault",
        ec::SERROR => "SError",
        ec::BRK64 => "BRK",
        _ => "other",
    }
}

/// Decodes a data or instruction abort (`esr`, `far`) into the arch-neutral
/// [`MemFault`]. Returns `None` for any other exception class.
///
/// Fault status code (DFSC/IFSC, ISS bits 5:0): `0b0001LL` translation fault
/// at level LL, `0b0010LL` access flag fault, `0b0011LL` permission fault;
/// ISS bit 6 (WnR) says a data abort was a write.
pub fn decode_abort(esr: u64, far: u64) -> Option<MemFault> {
    let class = esr_class(esr);
    let access = match class {
        ec::INSN_ABORT_LOWER | ec::INSN_ABORT_SAME => Access::Execute,
        ec::DATA_ABORT_LOWER | ec::DATA_ABORT_SAME if esr & (1 << 6) != 0 => Access::Write,
        ec::DATA_ABORT_LOWER | ec::DATA_ABORT_SAME => Access::Read,
        _ => return None,
    };
    let status = esr & 0x3f;
    let level = (status & 3) as u8;
    let (cause, level) = match status >> 2 {
        0b0001 => (FaultCause::NotMapped, Some(level)),
        0b0010 => (FaultCause::AccessFlag, Some(level)),
        0b0011 => (FaultCause::Protection, Some(level)),
        _ => (FaultCause::Other, None),
    };
    Some(MemFault { addr: VirtAddr::new(far), access, cause, level, syndrome: esr })
}

/// Called by the assembly for every exception, with the saved frame.
///
/// # Panics
/// On any exception the kernel did not expect: that is a kernel bug, and the
/// panic message carries ESR, FAR and ELR.
#[no_mangle]
extern "C" fn aarch64_trap(frame: &mut TrapFrame, kind: u64) {
    let kind = VectorKind(kind);
    if kind.0 == 5 {
        // IRQ from the kernel itself.
        crate::irq::dispatch();
        return;
    }
    let class = esr_class(frame.esr);
    if kind.0 == 4 {
        // Synchronous, from the kernel itself.
        if let Some(fault) = decode_abort(frame.esr, frame.far) {
            if crate::user::fix_up_fault(frame, &fault) || probe::fix_up_fault(frame, &fault) {
                return;
            }
            if frame.far < crate::user::USER_END {
                note_fatal(frame);
                panic!(
                    "kernel {} at user address {:#x} ({:?} {:?}, ESR {:#x}) at PC {:#x}, outside the \
                     user-access routines",
                    class_name(class),
                    frame.far,
                    fault.access,
                    fault.cause,
                    frame.esr,
                    frame.elr
                );
            }
            if arch_common::trap::offer_to_kernel(&fault) {
                return;
            }
            note_fatal(frame);
            panic!(
                "unexpected kernel {} at {:#x} ({:?} {:?}, level {:?}, ESR {:#x}) at PC {:#x}",
                class_name(class),
                frame.far,
                fault.access,
                fault.cause,
                fault.level,
                frame.esr,
                frame.elr
            );
        }
        if class == ec::BRK64 && probe::fix_up_breakpoint(frame) {
            return;
        }
    }
    note_fatal(frame);
    panic!(
        "unexpected exception: {kind}: {} (ESR {:#x}, FAR {:#x}) at PC {:#x}",
        class_name(class),
        frame.esr,
        frame.far,
        frame.elr
    );
}

/// Records where the fault in `frame` happened, for the panic's backtrace
/// (`arch_common::trap::note_fatal_fault`): ELR and x29.
fn note_fatal(frame: &TrapFrame) {
    use arch_common::cpu::Cpu;
    arch_common::trap::note_fatal_fault(crate::Aarch64::cpu_index(), frame.elr, frame.x[29]);
}

impl arch_common::trap::Frames for crate::Aarch64 {
    #[inline(always)]
    fn frame_pointer() -> u64 {
        let fp: u64;
        // SAFETY: reads x29, which with frame pointers forced on holds this
        // function's frame record; no memory is touched.
        unsafe { core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags)) };
        fp
    }
}
