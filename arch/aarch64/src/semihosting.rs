//! Arm semihosting, used for one thing: telling QEMU the exit status.
//!
//! QEMU must run with `-semihosting-config enable=on,target=native`; the
//! call is `HLT #0xF000` with the operation in `w0` and a parameter block in
//! `x1`. `SYS_EXIT_EXTENDED` takes `{reason, subcode}`; with reason
//! `ADP_Stopped_ApplicationExit` QEMU exits with `subcode` as its status.
#![cfg(target_os = "none")]

const SYS_EXIT_EXTENDED: u64 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Asks QEMU to exit with `code`. Returns only if semihosting is off.
pub fn exit(code: u32) {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: the semihosting call reads the two-word block we pass and
    // nothing else; without semihosting QEMU treats HLT as an undefined
    // instruction only when semihosting is off *and* the debugger is absent,
    // which our vectors report as an unexpected exception.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT_EXTENDED => _,
            in("x1") block.as_ptr(),
            options(nostack)
        );
    }
}
