//! User mode on x86_64: ring 3, `syscall`, the user-access routines and
//! their exception table (`arch_common::user`'s `UserMode`).
//!
//! ## Entering and leaving ring 3
//!
//! [`UserMode::enter_user`] (`arch_x86_enter_user`) pushes the kernel's
//! callee-saved registers and the address of the [`Regs`] on the task's
//! kernel stack, records that stack pointer as this CPU's landing place
//! (`PerCpu::kernel_rsp`, for `syscall`, and TSS `rsp0`, for exceptions
//! and interrupts), loads every user register, `swapgs` and `iretq`s to
//! ring 3. Whatever brings the CPU back lands just below that stack
//! pointer:
//! - `syscall` (`arch_x86_syscall_entry`, in `LSTAR`): `swapgs`, the user
//!   RSP parked in `PerCpu::user_rsp`, the kernel RSP loaded, and a frame
//!   pushed by hand that looks like the CPU's exception frame (user CS and
//!   SS, RCX as RIP, R11 as RFLAGS) with pseudo-vector [`SYSCALL_VECTOR`];
//! - an exception or interrupt: the CPU switches to `rsp0` and pushes its
//!   frame; the trap stubs (`crate::trap`) see a ring-3 CS, `swapgs`.
//!
//! Both go through the common trap path to `crate::trap::x86_trap`, which
//! hands ring-3 frames to [`from_user`]: it stores the registers into the
//! `Regs` (found in the word above the frame), notes the vector, error code
//! and CR2, runs an interrupt's device handlers (without the preemption
//! hook: the kernel's user loop preempts, not a trap frame), and returns
//! true; the assembly then drops the frame and returns from
//! `arch_x86_enter_user` into [`UserMode::enter_user`], which saves the FS
//! and GS bases and the SSE state and decodes the exit. Going back to user
//! mode always takes `iretq` (never `sysretq`, whose non-canonical-RCX
//! case would fault in ring 0 on user's stack); a non-canonical PC is
//! reported as a general-protection exception without entering.
//!
//! Segments ([`crate::gdt`]): kernel code 0x08, kernel data 0x10, user data
//! 0x18 (selector 0x1b), user code 0x20 (0x23): the layout `STAR` needs
//! (`sysret` would take CS = base + 16, SS = base + 8 from base 0x10).
//! `FMASK` clears IF, TF, DF and AC on `syscall`.
//!
//! GS: the kernel's GS base points at this CPU's [`crate::cpu::PerCpu`];
//! user mode runs with its own (saved in [`Regs::gs_base`]) while the
//! kernel's waits in `KERNEL_GS_BASE`. Every entry from ring 3 swaps them
//! first; the NMI and machine-check vectors (never expected, both end in a
//! panic) are the exception, as in any kernel that does not use paranoid
//! entries.
//!
//! FPU/SSE: the kernel is built without SSE (`x86_64-unknown-none`), so
//! only user code uses the x87/SSE registers; [`Regs::fpu`] holds them
//! (`fxsave64`/`fxrstor64` around each stay in ring 3). No AVX: `XSAVE` is
//! not enabled, so CPUID tells programs not to use it.
//!
//! ## SMEP, SMAP and the user-access routines
//!
//! [`crate::init`] turns on SMEP and SMAP when CPUID offers them (QEMU's
//! `max` does, `qemu64` does not). With SMAP the only kernel instructions
//! that touch user memory are those of `arch_x86_copy_user` and
//! `arch_x86_clear_user`, between `stac` and `clac` (skipped without
//! SMAP: `stac` would be undefined). Their faulting instructions are in
//! the exception table (`exception_table`): a page fault there at a user address is offered to
//! `arch_common::user::offer_uaccess_fault` (resolved: the `rep` string
//! instruction resumes where it stopped; refused: RIP moves to the fix-up,
//! which returns the address in RDX). Every trap entry clears AC, so the
//! kernel code a trap runs never has the window open; `iretq` restores the
//! interrupted flags. A kernel-mode page fault at a user address anywhere
//! else panics (`crate::trap`): a kernel bug.
//!
//! Locks: none. Per-CPU state (`PerCpu`, the TSS) is written by its CPU
//! only, with interrupts off.
#![cfg(target_os = "none")]

use crate::cpu::PerCpu;
use crate::trap::{decode_page_fault, TrapFrame};
use crate::X86_64;
use arch_common::user::{FpCause, UserException, UserExit, UserFault, UserMode, UserRegs};
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, Ordering};
use mm::fault::MemFault;
use x86_64::registers::control::Cr2;
use x86_64::registers::model_specific::Msr;

/// Kernel code and data selectors (GDT slots 1 and 2).
pub const KERNEL_CS: u16 = 0x08;
/// User data (slot 3) and code (slot 4) selectors, RPL 3.
pub const USER_SS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;

/// The pseudo-vector a `syscall` entry puts in its frame (above every real
/// vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// Where the user half ends: the canonical lower half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

const IA32_EFER: u32 = 0xc000_0080;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const EFER_SCE: u64 = 1 << 0;

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_DF: u64 = 1 << 10;
const RFLAGS_AC: u64 = 1 << 18;
/// The flags user code may change (CF PF AF ZF SF TF DF OF AC ID); IOPL,
/// NT, RF, VM, VIF and VIP are never given to user mode.
const RFLAGS_USER: u64 = 0x0000_0cd5 | RFLAGS_TF | RFLAGS_AC | (1 << 21);
/// Bit 1 of RFLAGS is always set.
const RFLAGS_FIXED: u64 = 1 << 1;

/// Whether SMAP is on (the copy routines and trap entries run `stac`/`clac`
/// only then). Set once by [`enable_protections`], read by the assembly.
#[no_mangle]
static ARCH_X86_SMAP: AtomicBool = AtomicBool::new(false);
/// Whether SMEP is on.
static SMEP: AtomicBool = AtomicBool::new(false);

/// The x87/SSE register area `fxsave64` writes (512 bytes, 16-aligned).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

impl Default for FxArea {
    /// The state after `FNINIT` plus the default MXCSR: x87 control word
    /// 0x37f, MXCSR 0x1f80 (every exception masked), registers zero.
    fn default() -> Self {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        a[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK: ignored by fxrstor
        FxArea(a)
    }
}

impl core::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fcw = u16::from_le_bytes([self.0[0], self.0[1]]);
        let mxcsr = u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]]);
        write!(f, "FxArea {{ fcw: {fcw:#x}, mxcsr: {mxcsr:#x}, .. }}")
    }
}

/// A user thread's registers on x86_64, and the record of its last exit
/// (`trap`, `error_code`, `fault_addr`: written by the entry path, not
/// user registers). `repr(C)`: the assembly reaches the fields by offset.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    /// The vector of the last exit ([`SYSCALL_VECTOR`] for `syscall`).
    pub trap: u64,
    /// Its error code (0 when the CPU pushes none).
    pub error_code: u64,
    /// CR2 of the last page fault.
    pub fault_addr: u64,
    pub fpu: FxArea,
}

impl UserRegs for Regs {
    fn new(pc: u64, sp: u64) -> Self {
        Regs { rip: pc, rsp: sp, rflags: RFLAGS_FIXED | RFLAGS_IF, ..Regs::default() }
    }
    fn pc(&self) -> u64 {
        self.rip
    }
    fn set_pc(&mut self, pc: u64) {
        self.rip = pc;
    }
    fn sp(&self) -> u64 {
        self.rsp
    }
    fn set_sp(&mut self, sp: u64) {
        self.rsp = sp;
    }
    fn tls(&self) -> u64 {
        self.fs_base
    }
    fn set_tls(&mut self, tls: u64) {
        self.fs_base = tls;
    }
    fn syscall_nr(&self) -> u64 {
        self.rax
    }
    fn syscall_arg(&self, i: usize) -> u64 {
        match i {
            0 => self.rdi,
            1 => self.rsi,
            2 => self.rdx,
            3 => self.r10,
            4 => self.r8,
            5 => self.r9,
            _ => panic!("syscall_arg: no argument {i}"),
        }
    }
    fn set_syscall_return(&mut self, value: u64) {
        self.rax = value;
    }
    fn restart_syscall(&mut self, nr: u64, arg0: u64) {
        // `syscall` is two bytes (0f 05).
        self.rip = self.rip.wrapping_sub(2);
        self.rax = nr;
        self.rdi = arg0;
    }
    fn set_call(&mut self, pc: u64, sp: u64, args: [u64; 3], _ret: u64) {
        self.rip = pc;
        self.rsp = sp;
        [self.rdi, self.rsi, self.rdx] = args;
        // A handler starts with the direction flag clear, as the ABI says,
        // and, as Linux gives it, with the x87/SSE state at its defaults:
        // no exception pending from the code it interrupted (a pending x87
        // error would trap again at the handler's first waiting x87
        // instruction, and again after a `siglongjmp`). The interrupted
        // state is in the saved frame, which `rt_sigreturn` restores.
        self.rflags &= !RFLAGS_DF;
        self.fpu = FxArea::default();
    }
    const RET_ON_STACK: bool = true;
}

// Offsets the assembly uses.
const R_RAX: usize = offset_of!(Regs, rax);
const R_RBX: usize = offset_of!(Regs, rbx);
const R_RCX: usize = offset_of!(Regs, rcx);
const R_RDX: usize = offset_of!(Regs, rdx);
const R_RSI: usize = offset_of!(Regs, rsi);
const R_RDI: usize = offset_of!(Regs, rdi);
const R_RBP: usize = offset_of!(Regs, rbp);
const R_R8: usize = offset_of!(Regs, r8);
const R_R9: usize = offset_of!(Regs, r9);
const R_R10: usize = offset_of!(Regs, r10);
const R_R11: usize = offset_of!(Regs, r11);
const R_R12: usize = offset_of!(Regs, r12);
const R_R13: usize = offset_of!(Regs, r13);
const R_R14: usize = offset_of!(Regs, r14);
const R_R15: usize = offset_of!(Regs, r15);
const R_RIP: usize = offset_of!(Regs, rip);
const R_RSP: usize = offset_of!(Regs, rsp);
const R_RFLAGS: usize = offset_of!(Regs, rflags);

core::arch::global_asm!(
    ".section .text",
    // arch_x86_enter_user(regs: rdi, percpu: rsi). Returns (rax) when user
    // mode next enters the kernel: see the module doc.
    ".global arch_x86_enter_user",
    "arch_x86_enter_user:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    // RSP is 16-aligned here (8 mod 16 at entry, 7 pushes): where the
    // CPU's frame and the syscall frame end.
    "    mov [rsi + {kernel_rsp}], rsp",
    "    mov rax, [rsi + {tss_rsp0}]",
    "    mov [rax], rsp",
    "    push {user_ss}",
    "    push qword ptr [rdi + {rsp}]",
    "    push qword ptr [rdi + {rflags}]",
    "    push {user_cs}",
    "    push qword ptr [rdi + {rip}]",
    "    mov rax, [rdi + {rax}]",
    "    mov rbx, [rdi + {rbx}]",
    "    mov rcx, [rdi + {rcx}]",
    "    mov rdx, [rdi + {rdx}]",
    "    mov rsi, [rdi + {rsi}]",
    "    mov rbp, [rdi + {rbp}]",
    "    mov r8, [rdi + {r8}]",
    "    mov r9, [rdi + {r9}]",
    "    mov r10, [rdi + {r10}]",
    "    mov r11, [rdi + {r11}]",
    "    mov r12, [rdi + {r12}]",
    "    mov r13, [rdi + {r13}]",
    "    mov r14, [rdi + {r14}]",
    "    mov r15, [rdi + {r15}]",
    "    mov rdi, [rdi + {rdi}]",
    "    swapgs",
    "    iretq",
    // The user exit: `crate::trap`'s common path jumps here after
    // `x86_trap` stored a ring-3 frame into the Regs; RSP is at the frame.
    ".global arch_x86_user_exit",
    "arch_x86_user_exit:",
    "    add rsp, {frame_size}",
    "    pop rdi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    // `syscall`: RCX = user RIP, R11 = user RFLAGS, IF/TF/DF/AC cleared
    // (FMASK), RSP still the user's.
    ".global arch_x86_syscall_entry",
    "arch_x86_syscall_entry:",
    "    swapgs",
    "    mov gs:[{user_rsp}], rsp",
    "    mov rsp, gs:[{kernel_rsp}]",
    "    push {user_ss}",
    "    push qword ptr gs:[{user_rsp}]",
    "    push r11",
    "    push {user_cs}",
    "    push rcx",
    "    push 0",
    "    push {syscall_vector}",
    "    jmp arch_x86_trap_gs_done",
    // arch_x86_copy_user(dst: rdi, src: rsi, len: rdx) -> (rax, rdx):
    // (0, _) when copied, (1, address) when a user address faulted and
    // the kernel refused it. Words first, then the bytes left.
    ".global arch_x86_copy_user",
    "arch_x86_copy_user:",
    "    cmp byte ptr [rip + ARCH_X86_SMAP], 0",
    "    je 2f",
    "    stac",
    // One word (the kernel tasks' loads and stores of user words): one
    // load and one store, no string instruction to set up.
    "2:  cmp rdx, 8",
    "    jne 3f",
    ".global arch_x86_copy_user_load",
    "arch_x86_copy_user_load:",
    "    mov rcx, [rsi]",
    ".global arch_x86_copy_user_store",
    "arch_x86_copy_user_store:",
    "    mov [rdi], rcx",
    "    xor eax, eax",
    "    jmp arch_x86_user_access_done",
    "3:  mov rcx, rdx",
    "    shr rcx, 3",
    ".global arch_x86_copy_user_words",
    "arch_x86_copy_user_words:",
    "    rep movsq",
    "    mov ecx, edx",
    "    and ecx, 7",
    ".global arch_x86_copy_user_bytes",
    "arch_x86_copy_user_bytes:",
    "    rep movsb",
    "    xor eax, eax",
    "    jmp arch_x86_user_access_done",
    // arch_x86_clear_user(dst: rdi, len: rsi) -> as arch_x86_copy_user.
    ".global arch_x86_clear_user",
    "arch_x86_clear_user:",
    "    cmp byte ptr [rip + ARCH_X86_SMAP], 0",
    "    je 2f",
    "    stac",
    "2:  mov rdx, rsi",
    "    mov rcx, rsi",
    "    shr rcx, 3",
    "    xor eax, eax",
    ".global arch_x86_clear_user_words",
    "arch_x86_clear_user_words:",
    "    rep stosq",
    "    mov ecx, edx",
    "    and ecx, 7",
    ".global arch_x86_clear_user_bytes",
    "arch_x86_clear_user_bytes:",
    "    rep stosb",
    "    jmp arch_x86_user_access_done",
    // The fix-up: the trap handler put the address in RDX.
    ".global arch_x86_user_access_fixup",
    "arch_x86_user_access_fixup:",
    "    mov eax, 1",
    "arch_x86_user_access_done:",
    "    cmp byte ptr [rip + ARCH_X86_SMAP], 0",
    "    je 2f",
    "    clac",
    "2:  ret",
    kernel_rsp = const offset_of!(PerCpu, kernel_rsp),
    user_rsp = const offset_of!(PerCpu, user_rsp),
    tss_rsp0 = const offset_of!(PerCpu, tss_rsp0),
    user_ss = const USER_SS,
    user_cs = const USER_CS,
    syscall_vector = const SYSCALL_VECTOR,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    rax = const R_RAX,
    rbx = const R_RBX,
    rcx = const R_RCX,
    rdx = const R_RDX,
    rsi = const R_RSI,
    rdi = const R_RDI,
    rbp = const R_RBP,
    r8 = const R_R8,
    r9 = const R_R9,
    r10 = const R_R10,
    r11 = const R_R11,
    r12 = const R_R12,
    r13 = const R_R13,
    r14 = const R_R14,
    r15 = const R_R15,
    rip = const R_RIP,
    rsp = const R_RSP,
    rflags = const R_RFLAGS,
);

/// What `arch_x86_copy_user` and `arch_x86_clear_user` return.
#[repr(C)]
struct AccessResult {
    failed: u64,
    addr: u64,
}

extern "C" {
    fn arch_x86_enter_user(regs: *mut Regs, percpu: *mut PerCpu) -> u64;
    fn arch_x86_syscall_entry();
    fn arch_x86_copy_user(dst: *mut u8, src: *const u8, len: usize) -> AccessResult;
    fn arch_x86_clear_user(dst: *mut u8, len: usize) -> AccessResult;
    static arch_x86_copy_user_load: u8;
    static arch_x86_copy_user_store: u8;
    static arch_x86_copy_user_words: u8;
    static arch_x86_copy_user_bytes: u8;
    static arch_x86_clear_user_words: u8;
    static arch_x86_clear_user_bytes: u8;
    static arch_x86_user_access_fixup: u8;
}

/// The instructions of the user-access routines that may fault on a user
/// address: a page fault at one of them is the routine's (see the module
/// doc); all resume at `arch_x86_user_access_fixup` when refused.
fn exception_table() -> [u64; 6] {
    [
        core::ptr::addr_of!(arch_x86_copy_user_load) as u64,
        core::ptr::addr_of!(arch_x86_copy_user_store) as u64,
        core::ptr::addr_of!(arch_x86_copy_user_words) as u64,
        core::ptr::addr_of!(arch_x86_copy_user_bytes) as u64,
        core::ptr::addr_of!(arch_x86_clear_user_words) as u64,
        core::ptr::addr_of!(arch_x86_clear_user_bytes) as u64,
    ]
}

/// Called by the trap handler for a kernel-mode page fault: when `frame`
/// is stopped at a user-access instruction and `fault` is at a user
/// address, offers it to the kernel and either leaves the frame to retry
/// (true, resolved) or moves it to the fix-up (true, refused). False when
/// the fault is not a user access's.
pub(crate) fn fix_up_uaccess(frame: &mut TrapFrame, fault: &MemFault) -> bool {
    if fault.addr.as_u64() >= USER_END || !exception_table().contains(&frame.rip) {
        return false;
    }
    if !arch_common::user::offer_uaccess_fault(fault) {
        frame.rip = core::ptr::addr_of!(arch_x86_user_access_fixup) as u64;
        frame.rdx = fault.addr.as_u64();
    }
    true
}

/// Called by the trap handler for every entry from ring 3 but NMI, double
/// fault and machine check (their IST stacks are not `rsp0`): stores the
/// frame into the `Regs` of the running `enter_user` and runs an
/// interrupt's handlers. The assembly then returns from
/// `arch_x86_enter_user`.
pub(crate) fn from_user(frame: &TrapFrame) {
    // SAFETY: a ring-3 frame on `rsp0` (or the syscall frame built the
    // same way) ends where `arch_x86_enter_user` pushed the address of the
    // `Regs` it was given, which stays valid until it returns (its
    // contract).
    let regs = unsafe { &mut **(frame as *const TrapFrame).add(1).cast::<*mut Regs>() };
    regs.rax = frame.rax;
    regs.rbx = frame.rbx;
    regs.rcx = frame.rcx;
    regs.rdx = frame.rdx;
    regs.rsi = frame.rsi;
    regs.rdi = frame.rdi;
    regs.rbp = frame.rbp;
    regs.r8 = frame.r8;
    regs.r9 = frame.r9;
    regs.r10 = frame.r10;
    regs.r11 = frame.r11;
    regs.r12 = frame.r12;
    regs.r13 = frame.r13;
    regs.r14 = frame.r14;
    regs.r15 = frame.r15;
    regs.rip = frame.rip;
    regs.rsp = frame.rsp;
    regs.rflags = frame.rflags;
    regs.trap = frame.vector;
    regs.error_code = frame.error_code;
    if frame.vector == 14 {
        regs.fault_addr = Cr2::read_raw();
    }
    if (32..SYSCALL_VECTOR).contains(&frame.vector) {
        crate::irq::dispatch_from_user(frame.vector as u8);
    }
}

/// Turns on SMEP and SMAP when CPUID offers them, and the SSE state user
/// programs need (`CR4.OSFXSR`, `CR4.OSXMMEXCPT`, `CR0.MP`, not `CR0.EM`).
/// Boot CPU, from [`crate::init`]; the others copy its CR0 and CR4.
pub(crate) fn enable_protections() {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    // CPUID leaf 7 (structured extended features) exists on every CPU
    // QEMU models for long mode.
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let smep = leaf7.ebx & (1 << 7) != 0;
    let smap = leaf7.ebx & (1 << 20) != 0;
    let mut flags = Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    if smep {
        flags |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if smap {
        flags |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    // SAFETY: SMEP and SMAP only forbid the kernel what it never does
    // outside the user-access routines (executing or touching user
    // pages); the SSE bits let user code use SSE (the kernel uses none).
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
            // x87 errors as #MF (vector 16), not the legacy FERR# line.
            f.insert(Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|f| f.insert(flags));
    }
    SMEP.store(smep, Ordering::Relaxed);
    ARCH_X86_SMAP.store(smap, Ordering::Relaxed);
}

/// Whether the CPU offers SMAP (CPUID.7.0 EBX bit 20), whatever the kernel
/// did with it: what a test compares [`smap`]'s effect against.
pub fn cpu_has_smap() -> bool {
    core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 20) != 0
}

/// Whether SMAP is on.
pub fn smap() -> bool {
    ARCH_X86_SMAP.load(Ordering::Relaxed)
}

/// Whether SMEP is on.
pub fn smep() -> bool {
    SMEP.load(Ordering::Relaxed)
}

/// This CPU's `syscall` set-up: `EFER.SCE`, `STAR` (kernel CS 0x08, and
/// base 0x10 for `sysret`'s user selectors), `LSTAR` (the entry), `FMASK`
/// (IF, TF, DF and AC cleared on entry). Every CPU, once.
pub(crate) fn init_this_cpu() {
    let star = ((0x10u64 | 3) << 48) | ((KERNEL_CS as u64) << 32);
    // SAFETY: these MSRs only configure the `syscall` instruction, whose
    // entry is `arch_x86_syscall_entry` above; no user code runs yet.
    unsafe {
        let mut efer = Msr::new(IA32_EFER);
        let v = efer.read();
        efer.write(v | EFER_SCE);
        Msr::new(IA32_STAR).write(star);
        Msr::new(IA32_LSTAR).write(arch_x86_syscall_entry as *const () as u64);
        Msr::new(IA32_FMASK).write(RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC);
    }
}

/// The exception a non-page-fault vector from ring 3 is; `fpu` is the
/// x87/SSE state saved at the exit, whose flags say why #MF or #XM came.
fn exception(vector: u64, error_code: u64, fpu: &FxArea) -> UserException {
    let word = |at: usize| u32::from(u16::from_le_bytes([fpu.0[at], fpu.0[at + 1]]));
    match vector {
        0 => UserException::DivideError,
        1 | 3 => UserException::Breakpoint,
        6 => UserException::IllegalInstruction,
        // #GP (privileged instructions, non-canonical addresses), #SS,
        // #NP, #TS: Linux sends SIGSEGV with address 0 for all.
        10..=13 => UserException::GeneralProtection,
        // #MF: an x87 exception whose mask bit (control word, bits 0-5)
        // is clear, flagged in the status word.
        16 => UserException::FloatingPoint { cause: FpCause::of_x86_flags(word(2) & !word(0) & 0x3f) },
        17 => UserException::Alignment { addr: 0 },
        // #XM: an SSE exception; MXCSR holds the flags (bits 0-5) and the
        // masks (bits 7-12).
        19 => {
            let mxcsr = u32::from_le_bytes([fpu.0[24], fpu.0[25], fpu.0[26], fpu.0[27]]);
            UserException::FloatingPoint { cause: FpCause::of_x86_flags(mxcsr & !(mxcsr >> 7) & 0x3f) }
        }
        v => UserException::Other { syndrome: (v << 32) | (error_code & 0xffff_ffff) },
    }
}

impl UserMode for X86_64 {
    type Regs = Regs;

    const MACHINE: &'static str = "x86_64";

    unsafe fn enter_user(regs: &mut Regs) -> UserExit {
        debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "enter_user with interrupts on");
        if regs.rip >= USER_END || regs.fs_base >= USER_END || regs.gs_base >= USER_END {
            // `iretq` would fault in ring 0 on such a `rip`, and `wrmsr`
            // on a non-canonical base; Linux answers with SIGSEGV. (The
            // system calls refuse such a base; this keeps a mistake there
            // from becoming a #GP in ring 0.)
            regs.trap = 13;
            regs.error_code = 0;
            return UserExit::Exception(UserException::GeneralProtection);
        }
        regs.rflags = (regs.rflags & RFLAGS_USER) | RFLAGS_FIXED | RFLAGS_IF;
        let percpu = crate::cpu::this_cpu();
        // SAFETY: 1. The FS base and the inactive GS base are user mode's
        // alone (the kernel uses neither: its GS base is the active one),
        // and both are below `USER_END` (checked above), so canonical:
        // `wrmsr` does not fault.
        // 2. `fxrstor64` loads a 16-aligned 512-byte area that was written
        // by `fxsave64` or is the default state; the kernel uses no
        // x87/SSE state that it could clobber. 3. The entry: `regs` and
        // this task's stack stay valid until it returns (the caller's
        // contract), interrupts are off, so the task stays on this CPU
        // until ring 3 runs with `percpu` and the TSS as set here.
        unsafe {
            Msr::new(IA32_FS_BASE).write(regs.fs_base);
            Msr::new(IA32_KERNEL_GS_BASE).write(regs.gs_base);
            core::arch::asm!("fxrstor64 [{}]", in(reg) &regs.fpu, options(nostack, readonly, preserves_flags));
            arch_x86_enter_user(regs, percpu);
            core::arch::asm!("fxsave64 [{}]", in(reg) &mut regs.fpu, options(nostack, preserves_flags));
            regs.fs_base = Msr::new(IA32_FS_BASE).read();
            regs.gs_base = Msr::new(IA32_KERNEL_GS_BASE).read();
        }
        match regs.trap {
            SYSCALL_VECTOR => UserExit::Syscall,
            14 => UserExit::PageFault(decode_page_fault(regs.error_code, regs.fault_addr)),
            v if v >= 32 => UserExit::Interrupt,
            v => UserExit::Exception(exception(v, regs.error_code, &regs.fpu)),
        }
    }

    unsafe fn copy_from_user(dst: *mut u8, src: u64, len: usize) -> Result<(), UserFault> {
        // SAFETY: the caller vouches for `dst` and that the source is in
        // the user half; a fault on it is fixed up (`fix_up_uaccess`).
        let r = unsafe { arch_x86_copy_user(dst, src as *const u8, len) };
        if r.failed == 0 {
            Ok(())
        } else {
            Err(UserFault { addr: r.addr })
        }
    }

    unsafe fn copy_to_user(dst: u64, src: *const u8, len: usize) -> Result<(), UserFault> {
        // SAFETY: as in `copy_from_user`, the other way.
        let r = unsafe { arch_x86_copy_user(dst as *mut u8, src, len) };
        if r.failed == 0 {
            Ok(())
        } else {
            Err(UserFault { addr: r.addr })
        }
    }

    unsafe fn clear_user(dst: u64, len: usize) -> Result<(), UserFault> {
        // SAFETY: as in `copy_to_user`.
        let r = unsafe { arch_x86_clear_user(dst as *mut u8, len) };
        if r.failed == 0 {
            Ok(())
        } else {
            Err(UserFault { addr: r.addr })
        }
    }

    /// CPUID leaf 1's EDX, as Linux's `AT_HWCAP` on x86_64.
    fn hwcap() -> u64 {
        core::arch::x86_64::__cpuid(1).edx as u64
    }
}
