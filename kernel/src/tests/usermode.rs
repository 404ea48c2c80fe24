//! In-guest tests of user mode (`arch_common::user`): entering ring 3 /
//! EL0 on hand-written machine code and coming back on each kind of
//! entry, SMAP/PAN, and the user-access routines with their fix-ups
//! (`crate::vm::uaccess`).
//!
//! Each test maps a page of code into a fresh address space (written
//! through `uaccess`, then made read-execute), and a kernel task in that
//! space enters user mode on it with interrupts off, the way a process's
//! thread will. The programs are arch-neutral in what they do and are
//! given per arch in [`code`]: the same registers by role (the system-call
//! number and arguments of `UserRegs`, the call arguments `set_call`
//! passes). No ELF yet: bytes only.

use crate::arch::prelude::*;
use crate::arch::user::{UserExit, UserRegs};
use crate::task::sched;
use crate::tests::{Test, TestEnv};
use crate::vm::space::AddressSpace;
use crate::vm::uaccess::{self, BadAddress};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mm::fault::{Access, FaultCause, MemFault};
use mm::vma::VmaProt;
use mm::VirtAddr;

type Regs = <Arch as arch_common::user::UserMode>::Regs;

const RW: VmaProt = VmaProt { read: true, write: true, exec: false };
const RO: VmaProt = VmaProt { read: true, write: false, exec: false };
const RX: VmaProt = VmaProt { read: true, write: false, exec: true };
const PAGE: u64 = 4096;

/// The test programs, x86_64 machine code (assembled with GNU `as`; each
/// instruction is listed beside its bytes). Each arch's `code` module has
/// the same items: `SYSCALLS`, `INCREMENT`, `COPY_BYTE` and
/// `COPY_BYTE_STORE`, `FORBIDDEN` and `FORBIDDEN_EXITS`, `SPIN` and
/// `SPIN_AT`, `HWCAP_ALWAYS`, `first_vector_register`; and the arch answers
/// `user_access_guarded` below.
#[cfg(target_arch = "x86_64")]
mod code {
    use crate::arch::user::UserException;

    /// System calls: nr 0x1234 with arguments 11, 22, 33, 44, 55, 66; then
    /// nr `ret + 1` with argument 0 = `ret` (the first call's return value);
    /// then nr 0x77 with argument 1 = the word at the thread pointer.
    pub const SYSCALLS: &[u8] = &[
        0xb8, 0x34, 0x12, 0x00, 0x00, // mov eax, 0x1234
        0xbf, 0x0b, 0x00, 0x00, 0x00, // mov edi, 11
        0xbe, 0x16, 0x00, 0x00, 0x00, // mov esi, 22
        0xba, 0x21, 0x00, 0x00, 0x00, // mov edx, 33
        0x41, 0xba, 0x2c, 0x00, 0x00, 0x00, // mov r10d, 44
        0x41, 0xb8, 0x37, 0x00, 0x00, 0x00, // mov r8d, 55
        0x41, 0xb9, 0x42, 0x00, 0x00, 0x00, // mov r9d, 66
        0x0f, 0x05, // syscall
        0x48, 0x89, 0xc7, // mov rdi, rax
        0x48, 0x8d, 0x40, 0x01, // lea rax, [rax + 1]
        0x0f, 0x05, // syscall
        0x64, 0x48, 0x8b, 0x34, 0x25, 0x00, 0x00, 0x00, 0x00, // mov rsi, fs:[0]
        0xb8, 0x77, 0x00, 0x00, 0x00, // mov eax, 0x77
        0x0f, 0x05, // syscall
    ];

    /// Loads the word at call argument 0, adds 1, stores it 8 bytes
    /// further, then system call 60 with argument 1 = that value.
    pub const INCREMENT: &[u8] = &[
        0x48, 0x8b, 0x07, // mov rax, [rdi]
        0x48, 0x83, 0xc0, 0x01, // add rax, 1
        0x48, 0x89, 0x47, 0x08, // mov [rdi + 8], rax
        0x48, 0x89, 0xc6, // mov rsi, rax
        0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60
        0x0f, 0x05, // syscall
    ];

    /// Loads the byte at call argument 0 (at offset 0), stores it at call
    /// argument 1 (at [`COPY_BYTE_STORE`]), then system call 60.
    pub const COPY_BYTE: &[u8] = &[
        0x8a, 0x07, // mov al, [rdi]
        0x88, 0x06, // mov [rsi], al
        0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60
        0x0f, 0x05, // syscall
    ];
    pub const COPY_BYTE_STORE: u64 = 2;

    /// Instructions user mode may not run, then system call 60: for each,
    /// its offset, the exception, the PC reported and where to go on.
    pub const FORBIDDEN: &[u8] = &[
        0xf4, // hlt: privileged (#GP)
        0x0f, 0x0b, // ud2: undefined (#UD)
        0xcc, // int3: a trap, reported after it
        0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60
        0x0f, 0x05, // syscall
    ];
    pub const FORBIDDEN_EXITS: &[(UserException, u64, u64)] = &[
        (UserException::GeneralProtection, 0, 1),
        (UserException::IllegalInstruction, 1, 3),
        (UserException::Breakpoint, 4, 4),
    ];

    /// Puts call argument 0 in the first vector register, then spins at
    /// [`SPIN_AT`] until an interrupt.
    pub const SPIN: &[u8] = &[
        0x66, 0x48, 0x0f, 0x6e, 0xc7, // movq xmm0, rdi
        0xeb, 0xfe, // 1: jmp 1b
    ];
    pub const SPIN_AT: u64 = 5;

    /// `AT_HWCAP` bits every x86_64 CPU has: FPU (0), SSE (25), SSE2 (26).
    pub const HWCAP_ALWAYS: u64 = (1 << 0) | (1 << 25) | (1 << 26);

    /// The low 64 bits of the first vector register (`xmm0`: offset 160 of
    /// the `fxsave` area).
    pub fn first_vector_register(regs: &super::Regs) -> u64 {
        u64::from_le_bytes(regs.fpu.0[160..168].try_into().unwrap())
    }
}

/// The test programs, AArch64 machine code (assembled with LLVM's
/// `llvm-mc -triple=aarch64`; each instruction is listed beside its
/// bytes). System calls are `svc #0` with the number in x8, arguments and
/// return value in x0..x5; call arguments arrive in x0..x2.
#[cfg(target_arch = "aarch64")]
mod code {
    use crate::arch::user::UserException;

    /// System calls: nr 0x1234 with arguments 11, 22, 33, 44, 55, 66; then
    /// nr `ret + 1` with argument 0 = `ret` (the first call's return value);
    /// then nr 0x77 with argument 1 = the word at the thread pointer
    /// (`TPIDR_EL0`).
    pub const SYSCALLS: &[u8] = &[
        0x88, 0x46, 0x82, 0xd2, // mov x8, #0x1234
        0x60, 0x01, 0x80, 0xd2, // mov x0, #11
        0xc1, 0x02, 0x80, 0xd2, // mov x1, #22
        0x22, 0x04, 0x80, 0xd2, // mov x2, #33
        0x83, 0x05, 0x80, 0xd2, // mov x3, #44
        0xe4, 0x06, 0x80, 0xd2, // mov x4, #55
        0x45, 0x08, 0x80, 0xd2, // mov x5, #66
        0x01, 0x00, 0x00, 0xd4, // svc #0
        0x08, 0x04, 0x00, 0x91, // add x8, x0, #1
        0x01, 0x00, 0x00, 0xd4, // svc #0
        0x49, 0xd0, 0x3b, 0xd5, // mrs x9, tpidr_el0
        0x21, 0x01, 0x40, 0xf9, // ldr x1, [x9]
        0xe8, 0x0e, 0x80, 0xd2, // mov x8, #0x77
        0x01, 0x00, 0x00, 0xd4, // svc #0
    ];

    /// Loads the word at call argument 0, adds 1, stores it 8 bytes
    /// further, then system call 60 with argument 1 = that value.
    pub const INCREMENT: &[u8] = &[
        0x09, 0x00, 0x40, 0xf9, // ldr x9, [x0]
        0x29, 0x05, 0x00, 0x91, // add x9, x9, #1
        0x09, 0x04, 0x00, 0xf9, // str x9, [x0, #8]
        0xe1, 0x03, 0x09, 0xaa, // mov x1, x9
        0x88, 0x07, 0x80, 0xd2, // mov x8, #60
        0x01, 0x00, 0x00, 0xd4, // svc #0
    ];

    /// Loads the byte at call argument 0 (at offset 0), stores it at call
    /// argument 1 (at [`COPY_BYTE_STORE`]), then system call 60.
    pub const COPY_BYTE: &[u8] = &[
        0x09, 0x00, 0x40, 0x39, // ldrb w9, [x0]
        0x29, 0x00, 0x00, 0x39, // strb w9, [x1]
        0x88, 0x07, 0x80, 0xd2, // mov x8, #60
        0x01, 0x00, 0x00, 0xd4, // svc #0
    ];
    pub const COPY_BYTE_STORE: u64 = 4;

    /// Two reads EL0 may make on Linux (the virtual counter, the cache
    /// type: no exception), then instructions it may not run, then system
    /// call 60: for each of those, the exception, the PC reported and
    /// where to go on.
    pub const FORBIDDEN: &[u8] = &[
        0x4a, 0xe0, 0x3b, 0xd5, // mrs x10, cntvct_el0
        0x2b, 0x00, 0x3b, 0xd5, // mrs x11, ctr_el0
        0x09, 0x10, 0x38, 0xd5, // mrs x9, sctlr_el1: an EL1 register
        0x00, 0x00, 0x00, 0x00, // udf #0: undefined
        0x00, 0x00, 0x20, 0xd4, // brk #0: reported at itself
        0x88, 0x07, 0x80, 0xd2, // mov x8, #60
        0x01, 0x00, 0x00, 0xd4, // svc #0
    ];
    pub const FORBIDDEN_EXITS: &[(UserException, u64, u64)] = &[
        (UserException::IllegalInstruction, 8, 12),
        (UserException::IllegalInstruction, 12, 16),
        (UserException::Breakpoint, 16, 20),
    ];

    /// Puts call argument 0 in the first vector register, then spins at
    /// [`SPIN_AT`] until an interrupt.
    pub const SPIN: &[u8] = &[
        0x00, 0x00, 0x67, 0x9e, // fmov d0, x0
        0x00, 0x00, 0x00, 0x14, // 1: b 1b
    ];
    pub const SPIN_AT: u64 = 4;

    /// `AT_HWCAP` bits every AArch64 CPU Linux runs on has: FP (0),
    /// ASIMD (1).
    pub const HWCAP_ALWAYS: u64 = (1 << 0) | (1 << 1);

    /// The low 64 bits of the first vector register (`q0`).
    pub fn first_vector_register(regs: &super::Regs) -> u64 {
        regs.q[0] as u64
    }
}

/// A fresh address space with `code` in a read-execute page, a stack
/// page, and `data` read-write pages; the addresses of each.
struct Setup {
    space: Arc<AddressSpace>,
    code: u64,
    stack_top: u64,
    data: u64,
}

fn setup(code: &'static [u8], data_pages: u64) -> Result<Setup, String> {
    let space = AddressSpace::new()?;
    let map =
        |len, prot| space.mmap(len, PAGE, prot).map(VirtAddr::as_u64).map_err(|e| format!("mmap: {e:?}"));
    let text = map(PAGE, RW)?;
    let stack = map(PAGE, RW)?;
    let data = map(data_pages.max(1) * PAGE, RW)?;
    let written = run_in(&space, move || uaccess::copy_to_user(text, code))?;
    written.map_err(|e| format!("writing the code: {e:?}"))?;
    space.mprotect(VirtAddr::new(text), PAGE, RX).map_err(|e| format!("mprotect: {e:?}"))?;
    // The instruction side sees the bytes (a no-op on x86_64).
    let (pfn, _, _) = space.folio_at(VirtAddr::new(text))?;
    Arch::code_written(
        crate::memory::phys_to_virt(mm::PhysAddr::new(pfn.as_u64() * PAGE)),
        code.len() as u64,
    );
    Ok(Setup { space, code: text, stack_top: stack + PAGE, data })
}

fn run_in<T: Send + 'static>(
    space: &Arc<AddressSpace>,
    f: impl Fn() -> T + Send + 'static,
) -> Result<T, String> {
    Ok(space.spawn(None, "usermode test", f)?.join()?)
}

/// Registers that start the program at `pc` as a call with `args`.
fn call(pc: u64, sp: u64, args: [u64; 3]) -> Regs {
    let mut regs = Regs::new(pc, sp);
    regs.set_call(pc, sp, args, 0);
    regs
}

/// Enters user mode once (interrupts off around it, as the kernel's loop
/// will run it).
fn enter(regs: &mut Regs) -> UserExit {
    let was = Arch::irq_save_and_disable();
    // SAFETY: `regs` lives across the call; this task's own stack is the
    // one the entries land on; its space is loaded (a task of the space).
    let exit = unsafe { Arch::enter_user(regs) };
    Arch::irq_restore(was);
    exit
}

/// Runs until an exit that is neither an interrupt nor a page fault the
/// kernel resolves; counts the resolved faults.
fn run_to_exit(regs: &mut Regs) -> (UserExit, u64) {
    let mut faults = 0;
    loop {
        match enter(regs) {
            UserExit::Interrupt => {}
            UserExit::PageFault(f) => {
                let was = Arch::irq_save_and_disable();
                let resolved = crate::vm::fault::resolve(&f);
                Arch::irq_restore(was);
                if resolved.is_err() {
                    return (UserExit::PageFault(f), faults);
                }
                faults += 1;
            }
            other => return (other, faults),
        }
    }
}

fn expect_fault(
    what: &str,
    exit: UserExit,
    addr: u64,
    access: Access,
    cause: FaultCause,
) -> Result<MemFault, String> {
    match exit {
        UserExit::PageFault(f) if f.addr.as_u64() == addr && f.access == access && f.cause == cause => Ok(f),
        other => Err(format!("{what}: {other:?}, expected a {access:?} {cause:?} fault at {addr:#x}")),
    }
}

fn syscall_comes_back_with_its_arguments(_: &TestEnv<'_>) -> Result<(), String> {
    let s = setup(code::SYSCALLS, 1)?;
    let (code, sp, tls) = (s.code, s.stack_top, s.data);
    run_in(&s.space, move || -> Result<(), String> {
        uaccess::write_u64(tls, 0x7157_0000_0000_7157);
        let mut regs = Regs::new(code, sp);
        regs.set_tls(tls);
        let (exit, _) = run_to_exit(&mut regs);
        let args: Vec<u64> = (0..6).map(|i| regs.syscall_arg(i)).collect();
        if exit != UserExit::Syscall || regs.syscall_nr() != 0x1234 || args != [11, 22, 33, 44, 55, 66] {
            return Err(format!("first call: {exit:?} nr {:#x} args {args:?}", regs.syscall_nr()));
        }
        let first_pc = regs.pc();
        regs.set_syscall_return(0x5000);
        let (exit, _) = run_to_exit(&mut regs);
        if exit != UserExit::Syscall || regs.syscall_nr() != 0x5001 || regs.syscall_arg(0) != 0x5000 {
            return Err(format!(
                "second call (the return value 0x5000 in user mode): {exit:?} nr {:#x} arg 0 {:#x}",
                regs.syscall_nr(),
                regs.syscall_arg(0)
            ));
        }
        if regs.pc() <= first_pc || regs.pc() > code + code::SYSCALLS.len() as u64 {
            return Err(format!("second call at pc {:#x}, the first at {first_pc:#x}", regs.pc()));
        }
        let (exit, _) = run_to_exit(&mut regs);
        if exit != UserExit::Syscall
            || regs.syscall_nr() != 0x77
            || regs.syscall_arg(1) != 0x7157_0000_0000_7157
        {
            return Err(format!(
                "third call (the word at the thread pointer): {exit:?} nr {:#x} arg 1 {:#x}",
                regs.syscall_nr(),
                regs.syscall_arg(1)
            ));
        }
        if regs.tls() != tls || regs.pc() != code + code::SYSCALLS.len() as u64 {
            return Err(format!("after the calls: tls {:#x}, pc {:#x}", regs.tls(), regs.pc()));
        }
        Ok(())
    })?
}

fn unmapped_page_faults_in_and_the_access_retries(_: &TestEnv<'_>) -> Result<(), String> {
    let s = setup(code::INCREMENT, 1)?;
    let (code, sp, data) = (s.code, s.stack_top, s.data);
    let got = run_in(&s.space, move || {
        let mut regs = call(code, sp, [data, 0, 0]);
        let (exit, faults) = run_to_exit(&mut regs);
        (exit, faults, regs.syscall_nr(), regs.syscall_arg(1), uaccess::read_u64(data + 8))
    })?;
    match got {
        // A read fault (zero page or a new page), then maybe the write's.
        (UserExit::Syscall, 1..=2, 60, 1, 1) => Ok(()),
        other => Err(format!("(exit, resolved faults, nr, arg 1, stored word) = {other:?}")),
    }
}

fn refused_accesses_come_back_as_page_faults(_: &TestEnv<'_>) -> Result<(), String> {
    let s = setup(code::COPY_BYTE, 1)?;
    let ro = s.space.mmap(PAGE, PAGE, RO).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let (code, sp, data) = (s.code, s.stack_top, s.data);
    run_in(&s.space, move || -> Result<(), String> {
        // A load from no area (null).
        let mut regs = call(code, sp, [8, data, 0]);
        let (exit, _) = run_to_exit(&mut regs);
        expect_fault("load of null", exit, 8, Access::Read, FaultCause::NotMapped)?;
        if regs.pc() != code {
            return Err(format!("the null load's fault at pc {:#x}, not {code:#x}", regs.pc()));
        }
        // A store into a read-only area, after a load that maps its page.
        let mut regs = call(code, sp, [ro + 5, ro + 6, 0]);
        let (exit, faults) = run_to_exit(&mut regs);
        let f = match exit {
            UserExit::PageFault(f) => f,
            other => return Err(format!("store to read-only: {other:?}")),
        };
        if f.addr.as_u64() != ro + 6 || f.access != Access::Write || faults == 0 {
            return Err(format!("store to read-only: {f:?} after {faults} resolved faults"));
        }
        if regs.pc() != code + code::COPY_BYTE_STORE {
            return Err(format!("the store's fault at pc {:#x}", regs.pc()));
        }
        let was = Arch::irq_save_and_disable();
        let again = crate::vm::fault::resolve(&f);
        Arch::irq_restore(was);
        match again {
            Err(crate::vm::fault::Unresolved::Refused(_)) => Ok(()),
            other => Err(format!("the kernel's answer to the store: {other:?}")),
        }
    })?
}

fn kernel_address_from_user_mode_faults(_: &TestEnv<'_>) -> Result<(), String> {
    static KERNEL_BYTE: u8 = 0x5a;
    let secret = core::ptr::addr_of!(KERNEL_BYTE) as u64;
    let s = setup(code::COPY_BYTE, 1)?;
    let (code, sp, data) = (s.code, s.stack_top, s.data);
    run_in(&s.space, move || -> Result<(), String> {
        let mut regs = call(code, sp, [secret, data, 0]);
        let (exit, _) = run_to_exit(&mut regs);
        let f = expect_fault("load of a kernel byte", exit, secret, Access::Read, FaultCause::Protection)?;
        let was = Arch::irq_save_and_disable();
        let answer = crate::vm::fault::resolve(&f);
        Arch::irq_restore(was);
        if !matches!(answer, Err(crate::vm::fault::Unresolved::NotOurs)) {
            return Err(format!("the kernel's answer to it: {answer:?}"));
        }
        if uaccess::read_u8(data) != 0 {
            return Err(String::from("the kernel byte reached user memory"));
        }
        Ok(())
    })?
}

fn forbidden_instructions_are_exceptions(_: &TestEnv<'_>) -> Result<(), String> {
    let s = setup(code::FORBIDDEN, 1)?;
    let (code, sp) = (s.code, s.stack_top);
    run_in(&s.space, move || -> Result<(), String> {
        let mut regs = call(code, sp, [0, 0, 0]);
        for &(want, reported, resume) in code::FORBIDDEN_EXITS {
            let (exit, _) = run_to_exit(&mut regs);
            if exit != UserExit::Exception(want) || regs.pc() != code + reported {
                return Err(format!(
                    "{exit:?} at pc {:#x}, expected {want:?} at {:#x}",
                    regs.pc(),
                    code + reported
                ));
            }
            regs.set_pc(code + resume);
        }
        match run_to_exit(&mut regs) {
            (UserExit::Syscall, _) if regs.syscall_nr() == 60 => Ok(()),
            other => Err(format!("after the exceptions: {other:?}")),
        }
    })?
}

fn interrupts_come_back_with_every_register(_: &TestEnv<'_>) -> Result<(), String> {
    const MARK: u64 = 0x0123_4567_89ab_cdef;
    let s = setup(code::SPIN, 1)?;
    let (code, sp, tls) = (s.code, s.stack_top, s.data);
    run_in(&s.space, move || -> Result<(), String> {
        let mut regs = call(code, sp, [MARK, 2, 3]);
        regs.set_tls(tls);
        #[cfg(target_arch = "x86_64")]
        {
            (regs.rbx, regs.rbp, regs.r12, regs.r13, regs.r14, regs.r15) = (11, 12, 13, 14, 15, 16);
            (regs.rax, regs.rcx, regs.r8, regs.r9, regs.r10, regs.r11) = (21, 22, 23, 24, 25, 26);
        }
        #[cfg(target_arch = "aarch64")]
        for (i, x) in regs.x.iter_mut().enumerate().skip(3) {
            *x = 100 + i as u64;
        }
        let start = regs;
        let mut interrupts = 0;
        let t0 = sched::ticks();
        // Several timer ticks, and a reschedule after each as the kernel's
        // loop would.
        while sched::ticks() < t0 + 3 {
            match enter(&mut regs) {
                UserExit::Interrupt => interrupts += 1,
                other => return Err(format!("{other:?} at pc {:#x} while spinning", regs.pc())),
            }
            sched::yield_now();
        }
        if interrupts == 0 || regs.pc() != code + code::SPIN_AT {
            return Err(format!("{interrupts} interrupts, pc {:#x}", regs.pc()));
        }
        if code::first_vector_register(&regs) != MARK {
            return Err(format!("the vector register holds {:#x}", code::first_vector_register(&regs)));
        }
        let same = regs.sp() == start.sp()
            && regs.tls() == start.tls()
            && (0..3).all(|i| regs.syscall_arg(i) == start.syscall_arg(i));
        #[cfg(target_arch = "x86_64")]
        let same = same
            && (regs.rbx, regs.rbp, regs.r12, regs.r13, regs.r14, regs.r15) == (11, 12, 13, 14, 15, 16)
            && (regs.rax, regs.rcx, regs.r8, regs.r9, regs.r10, regs.r11) == (21, 22, 23, 24, 25, 26);
        #[cfg(target_arch = "aarch64")]
        let same = same && regs.x.iter().enumerate().skip(3).all(|(i, &x)| x == 100 + i as u64);
        if !same {
            return Err(format!("registers changed across interrupts: {start:?} -> {regs:?}"));
        }
        Ok(())
    })?
}

/// SMAP (x86_64) / PAN (AArch64): does the CPU offer it (so the kernel
/// must have turned it on)? Asked of the CPU, not of the kernel's flag.
#[cfg(target_arch = "x86_64")]
fn user_access_guarded() -> bool {
    arch_x86_64::user::cpu_has_smap()
}

#[cfg(target_arch = "aarch64")]
fn user_access_guarded() -> bool {
    arch_aarch64::user::cpu_has_pan()
}

fn smap_faults_a_plain_kernel_load_of_user_memory(_: &TestEnv<'_>) -> Result<(), String> {
    let space = AddressSpace::new()?;
    let data = space.mmap(PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let guarded = user_access_guarded();
    let probed = run_in(&space, move || {
        uaccess::write_u8(data + 3, 0x42); // mapped and present
        Arch::probe_read_u8(VirtAddr::new(data + 3))
    })?;
    match (guarded, probed) {
        (true, Err(f))
            if f.addr.as_u64() == data + 3
                && f.access == Access::Read
                && f.cause == FaultCause::Protection =>
        {
            Ok(())
        }
        (false, Ok(0x42)) => {
            // On a line of its own: the harness then reads `ok` on the next.
            crate::println!("(the CPU offers no SMAP/PAN: the load is allowed)");
            Ok(())
        }
        other => Err(format!("(guarded, probe) = {other:?}")),
    }
}

fn uaccess_reports_bad_addresses_and_faults_pages_in(_: &TestEnv<'_>) -> Result<(), String> {
    const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
    let space = AddressSpace::new()?;
    let data = space.mmap(3 * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    let ro = space.mmap(PAGE, PAGE, RO).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    // The page after the area: unmapped (the guard the next mmap leaves
    // would not be guaranteed, so punch a hole).
    space.munmap(VirtAddr::new(data + 2 * PAGE), PAGE).map_err(|e| format!("munmap: {e:?}"))?;
    let hole = data + 2 * PAGE;
    run_in(&space, move || -> Result<(), String> {
        // Not yet faulted, across a page boundary: both pages come in.
        let bytes: Vec<u8> = (0..64u8).collect();
        let at = data + PAGE - 20;
        uaccess::copy_to_user(at, &bytes).map_err(|e| format!("copy_to_user over two new pages: {e:?}"))?;
        let mut back = [0u8; 64];
        uaccess::copy_from_user(&mut back, at).map_err(|e| format!("copy_from_user: {e:?}"))?;
        if back[..] != bytes[..] {
            return Err(format!("read back {back:?}"));
        }
        // Bad pointers: no area, a copy running into the hole, a
        // read-only target, null, the kernel half.
        uaccess::copy_to_user(hole - 16, &[0xab; 16]).map_err(|e| format!("copy_to_user: {e:?}"))?;
        let mut buf = [0u8; 32];
        let cases: [(&str, Result<(), BadAddress>, u64); 6] = [
            ("read of the hole", uaccess::copy_from_user(&mut buf, hole + 8), hole + 8),
            ("read into the hole", uaccess::copy_from_user(&mut buf, hole - 16), hole),
            ("write into the hole", uaccess::copy_to_user(hole - 8, &buf), hole),
            ("write to read-only", uaccess::copy_to_user(ro, &buf), ro),
            ("read of null", uaccess::copy_from_user(&mut buf, 0), 0),
            ("read of the kernel half", uaccess::copy_from_user(&mut buf, KERNEL_HALF), KERNEL_HALF),
        ];
        for (what, got, addr) in cases {
            if got != Err(BadAddress { addr }) {
                return Err(format!("{what}: {got:?}, expected the bad address {addr:#x}"));
            }
        }
        // The copy into the hole got the bytes before it.
        if buf[..16] != [0xab; 16] {
            return Err(format!("the bytes before the hole: {:?}", &buf[..16]));
        }
        // A read-only area reads (and maps its zero page).
        uaccess::copy_from_user(&mut buf, ro).map_err(|e| format!("read of read-only: {e:?}"))?;
        uaccess::copy_to_user(data, &[0xff; 128]).map_err(|e| format!("copy_to_user: {e:?}"))?;
        uaccess::clear_user(data, 100).map_err(|e| format!("clear_user: {e:?}"))?;
        if uaccess::first_non_zero(data, PAGE) != Some(96) {
            return Err(format!(
                "first_non_zero after clear_user: {:?}",
                uaccess::first_non_zero(data, PAGE)
            ));
        }
        Ok(())
    })?
}

fn read_cstr_stops_at_nul_max_and_bad_pages(_: &TestEnv<'_>) -> Result<(), String> {
    use uaccess::CStrError;
    let space = AddressSpace::new()?;
    let data = space.mmap(3 * PAGE, PAGE, RW).map_err(|e| format!("mmap: {e:?}"))?.as_u64();
    space.munmap(VirtAddr::new(data + 2 * PAGE), PAGE).map_err(|e| format!("munmap: {e:?}"))?;
    let hole = data + 2 * PAGE;
    run_in(&space, move || -> Result<(), String> {
        let put = |at: u64, bytes: &[u8]| {
            uaccess::copy_to_user(at, bytes).map_err(|e| format!("copy_to_user: {e:?}"))
        };
        // Across a page boundary, longer than one chunk.
        let long: Vec<u8> = (0..600).map(|i| b'a' + (i % 26) as u8).collect();
        let at = data + PAGE - 300;
        put(at, &long)?;
        put(at + 600, &[0])?;
        let want = String::from_utf8(long.clone()).map_err(|e| format!("{e}"))?;
        let cases: [(&str, u64, usize, Result<String, CStrError>); 4] = [
            ("600 bytes and NUL, max 601", at, 601, Ok(want.clone())),
            ("600 bytes and NUL, max 600", at, 600, Err(CStrError::TooLong)),
            ("the empty string", at + 600, 1, Ok(String::new())),
            ("null", 0, 4096, Err(CStrError::BadAddress)),
        ];
        for (what, addr, max, expect) in cases {
            let got = uaccess::read_cstr(addr, max);
            if got != expect {
                return Err(format!("{what}: {got:?}, expected {expect:?}"));
            }
        }
        // Not UTF-8.
        put(data, b"ok\xff\0")?;
        if uaccess::read_cstr(data, 4096) != Err(CStrError::NotUtf8) {
            return Err(format!("non-UTF-8: {:?}", uaccess::read_cstr(data, 4096)));
        }
        // Running into the hole with no NUL; a NUL just before the hole.
        put(hole - 8, b"abcdefgh")?;
        if uaccess::read_cstr(hole - 8, 4096) != Err(CStrError::BadAddress) {
            return Err(format!("into the hole: {:?}", uaccess::read_cstr(hole - 8, 4096)));
        }
        put(hole - 1, &[0])?;
        if uaccess::read_cstr(hole - 8, 4096).as_deref() != Ok("abcdefg") {
            return Err(format!("NUL before the hole: {:?}", uaccess::read_cstr(hole - 8, 4096)));
        }
        // `max` bytes are read at most: no NUL within them is TooLong even
        // when the hole comes right after.
        put(hole - 8, b"abcdefgh")?;
        if uaccess::read_cstr(hole - 8, 8) != Err(CStrError::TooLong) {
            return Err(format!("max before the hole: {:?}", uaccess::read_cstr(hole - 8, 8)));
        }
        Ok(())
    })?
}

fn hwcap_names_this_cpu(_: &TestEnv<'_>) -> Result<(), String> {
    let hwcap = Arch::hwcap();
    if hwcap & code::HWCAP_ALWAYS != code::HWCAP_ALWAYS {
        return Err(format!("hwcap {hwcap:#x} lacks {:#x}", code::HWCAP_ALWAYS));
    }
    Ok(())
}

pub const TESTS: &[Test] = register!["usermode":
    hwcap_names_this_cpu,
    syscall_comes_back_with_its_arguments,
    unmapped_page_faults_in_and_the_access_retries,
    refused_accesses_come_back_as_page_faults,
    kernel_address_from_user_mode_faults,
    forbidden_instructions_are_exceptions,
    interrupts_come_back_with_every_register,
    smap_faults_a_plain_kernel_load_of_user_memory,
    uaccess_reports_bad_addresses_and_faults_pages_in,
    read_cstr_stops_at_nul_max_and_bad_pages
];
