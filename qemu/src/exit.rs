//! How a guest ended, read from QEMU's exit status.
//!
//! The guest reports its own result through a device that makes QEMU exit
//! with a chosen status:
//!
//! * x86_64: `isa-debug-exit` at port 0xf4. Writing `v` makes QEMU exit with
//!   `(v << 1) | 1`: the kernel writes 0x10 for success (status 33) and 0x11
//!   for failure (status 35). A plain status 0 is *not* success there: with
//!   `-no-reboot`, a triple fault or a reset request also makes QEMU exit 0,
//!   so 0 means the guest went away without reporting.
//! * AArch64: semihosting `SYS_EXIT_EXTENDED`; QEMU exits with the code the
//!   kernel gives: 0 for success, 1 for failure.
//!
//! Anything else (a signal, QEMU's own error status) is a crash.

use std::fmt;

use crate::config::Arch;

/// The value an x86_64 guest writes to the debug-exit port on success.
pub const X86_GUEST_SUCCESS: u32 = 0x10;
/// The value an x86_64 guest writes to the debug-exit port on failure.
pub const X86_GUEST_FAILURE: u32 = 0x11;

/// QEMU's exit status after the x86_64 guest writes `value` to the debug-exit port.
pub const fn x86_debug_exit_status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

/// How the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest reported success.
    Success,
    /// The guest reported failure (a test failed, or it gave up on purpose).
    Failure,
    /// The guest stopped without reporting: QEMU's exit status (`None` when
    /// QEMU was killed by a signal).
    Crashed(Option<i32>),
    /// The runner killed QEMU because the guest ran past its time limit.
    TimedOut,
}

impl GuestExit {
    /// Maps QEMU's exit status (`None` when killed by a signal) for a guest of `arch`.
    pub fn from_status(arch: Arch, status: Option<i32>) -> GuestExit {
        let success = x86_debug_exit_status(X86_GUEST_SUCCESS);
        let failure = x86_debug_exit_status(X86_GUEST_FAILURE);
        match (arch, status) {
            (Arch::X86_64, Some(s)) if s == success => GuestExit::Success,
            (Arch::X86_64, Some(s)) if s == failure => GuestExit::Failure,
            (Arch::Aarch64, Some(0)) => GuestExit::Success,
            (Arch::Aarch64, Some(1)) => GuestExit::Failure,
            (_, status) => GuestExit::Crashed(status),
        }
    }

    /// True for [`GuestExit::Success`].
    pub fn is_success(self) -> bool {
        self == GuestExit::Success
    }

    /// A sentence saying how the guest ended, for reports.
    pub fn describe(self, arch: Arch) -> String {
        match (self, arch) {
            (GuestExit::Success, _) => "the guest reported success".to_string(),
            (GuestExit::Failure, Arch::X86_64) => "the guest reported failure (QEMU status 35)".to_string(),
            (GuestExit::Failure, Arch::Aarch64) => {
                "the guest reported failure, or QEMU itself failed (status 1)".to_string()
            }
            (GuestExit::Crashed(None), _) => "QEMU was killed by a signal".to_string(),
            (GuestExit::Crashed(Some(0)), Arch::X86_64) => {
                "the guest crashed: QEMU exited with status 0 without the guest reporting \
                 (a triple fault, reset or shutdown under -no-reboot)"
                    .to_string()
            }
            (GuestExit::Crashed(Some(s)), _) => format!(
                "the guest crashed or QEMU failed: QEMU exited with status {s} without the guest reporting"
            ),
            (GuestExit::TimedOut, _) => "the guest exceeded its time limit and was killed".to_string(),
        }
    }
}

impl fmt::Display for GuestExit {
    /// A short name: `success`, `failure`, `crashed (status N)`, `timed out`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::Success => f.write_str("success"),
            GuestExit::Failure => f.write_str("failure"),
            GuestExit::Crashed(Some(s)) => write!(f, "crashed (status {s})"),
            GuestExit::Crashed(None) => f.write_str("crashed (killed by a signal)"),
            GuestExit::TimedOut => f.write_str("timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_debug_exit_statuses() {
        assert_eq!(x86_debug_exit_status(X86_GUEST_SUCCESS), 33);
        assert_eq!(x86_debug_exit_status(X86_GUEST_FAILURE), 35);
        let map = |s| GuestExit::from_status(Arch::X86_64, s);
        assert_eq!(map(Some(33)), GuestExit::Success);
        assert_eq!(map(Some(35)), GuestExit::Failure);
        // Status 0 on x86_64 is a reset or triple fault, never success.
        assert_eq!(map(Some(0)), GuestExit::Crashed(Some(0)));
        assert_eq!(map(Some(1)), GuestExit::Crashed(Some(1)));
        assert_eq!(map(Some(3)), GuestExit::Crashed(Some(3)));
        assert_eq!(map(None), GuestExit::Crashed(None));
    }

    #[test]
    fn aarch64_semihosting_statuses() {
        let map = |s| GuestExit::from_status(Arch::Aarch64, s);
        assert_eq!(map(Some(0)), GuestExit::Success);
        assert_eq!(map(Some(1)), GuestExit::Failure);
        assert_eq!(map(Some(33)), GuestExit::Crashed(Some(33)));
        assert_eq!(map(Some(2)), GuestExit::Crashed(Some(2)));
        assert_eq!(map(None), GuestExit::Crashed(None));
    }

    #[test]
    fn descriptions_say_what_happened() {
        assert!(GuestExit::Crashed(Some(0)).describe(Arch::X86_64).contains("triple fault"));
        assert!(GuestExit::Crashed(Some(2)).describe(Arch::Aarch64).contains("status 2"));
        assert!(GuestExit::TimedOut.describe(Arch::X86_64).contains("time limit"));
        assert_eq!(GuestExit::Crashed(Some(0)).to_string(), "crashed (status 0)");
        assert_eq!(GuestExit::TimedOut.to_string(), "timed out");
        assert!(GuestExit::Success.is_success());
        assert!(!GuestExit::Failure.is_success());
    }
}
