//! xtask's error type. Each variant says who is to blame, because the first
//! question after a red CI run is "my code, my command, or the machine?".

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The user's command line or kernel arguments.
    Usage(String),
    /// The host lacks a tool (QEMU, OVMF, llvm-objcopy, /dev/kvm) or could not install it.
    Setup(String),
    /// Building the kernel or its boot image failed.
    Build(String),
    /// QEMU could not be run.
    Qemu(String),
    /// The guest ran and failed its verdict (the message is already printed).
    Failed(String),
}

impl Error {
    /// The process exit status for this error: 2 for a bad command line, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The message without the blame prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::Usage(m) | Error::Setup(m) | Error::Build(m) | Error::Qemu(m) | Error::Failed(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self {
            Error::Usage(_) => "error (your command line)",
            Error::Setup(_) => "error (host setup)",
            Error::Build(_) => "error (kernel build)",
            Error::Qemu(_) => "error (QEMU)",
            Error::Failed(_) => "FAIL",
        };
        write!(f, "{who}: {}", self.message())
    }
}

impl std::error::Error for Error {}

impl From<crate::cli::CliError> for Error {
    fn from(e: crate::cli::CliError) -> Self {
        Error::Usage(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blame_and_exit_codes() {
        assert_eq!(Error::Usage("x".into()).to_string(), "error (your command line): x");
        assert_eq!(Error::Build("y".into()).to_string(), "error (kernel build): y");
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Failed("z".into()).exit_code(), 1);
        assert_eq!(Error::Setup("s".into()).message(), "s");
    }
}
