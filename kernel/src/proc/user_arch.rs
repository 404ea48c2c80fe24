//! TEMPORARY (issue 15): the arch's user mode until the arch crates
//! implement `arch_common::user::UserMode`. Replaced by `crate::arch::Arch`
//! when part x86user is merged; nothing here runs user code.

use arch_common::user::{UserExit, UserFault, UserMode, UserRegs};

/// No user mode: `enter_user` panics.
pub struct UserArch;

/// Registers of no machine: enough to compile the process code.
#[derive(Clone, Copy, Default, Debug)]
pub struct NoRegs {
    r: [u64; 8],
    pc: u64,
    sp: u64,
    tls: u64,
}

impl UserRegs for NoRegs {
    fn new(pc: u64, sp: u64) -> Self {
        NoRegs { pc, sp, ..Default::default() }
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.pc = pc
    }
    fn sp(&self) -> u64 {
        self.sp
    }
    fn set_sp(&mut self, sp: u64) {
        self.sp = sp
    }
    fn tls(&self) -> u64 {
        self.tls
    }
    fn set_tls(&mut self, tls: u64) {
        self.tls = tls
    }
    fn syscall_nr(&self) -> u64 {
        self.r[7]
    }
    fn syscall_arg(&self, i: usize) -> u64 {
        self.r[i]
    }
    fn set_syscall_return(&mut self, value: u64) {
        self.r[0] = value
    }
    fn set_call(&mut self, pc: u64, sp: u64, args: [u64; 3], _ret: u64) {
        self.pc = pc;
        self.sp = sp;
        self.r[..3].copy_from_slice(&args);
    }
    const RET_ON_STACK: bool = true;
}

impl UserMode for UserArch {
    type Regs = NoRegs;
    const MACHINE: &'static str = "none";
    unsafe fn enter_user(_regs: &mut NoRegs) -> UserExit {
        panic!("enter_user: this build has no user mode yet")
    }
    unsafe fn copy_from_user(_dst: *mut u8, src: u64, _len: usize) -> Result<(), UserFault> {
        Err(UserFault { addr: src })
    }
    unsafe fn copy_to_user(dst: u64, _src: *const u8, _len: usize) -> Result<(), UserFault> {
        Err(UserFault { addr: dst })
    }
    fn hwcap() -> u64 {
        0
    }
}
