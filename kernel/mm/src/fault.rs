//! The arch-neutral description of a memory fault: what each arch's
//! exception decoder produces from the hardware's report (x86_64's error code
//! and CR2, AArch64's ESR and FAR), and what the fault handler will consume.
//!
//! Decoding lives in `arch/`; this module only names the outcomes, so that
//! `mm` and the tests never look at an arch's raw bits.

use crate::addr::VirtAddr;

/// What the faulting access tried to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// An instruction fetch.
    Execute,
}

/// Why the translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCause {
    /// No valid entry at some level (x86_64: P=0; AArch64: translation fault).
    NotMapped,
    /// A valid entry forbids the access (read-only, no-execute, privilege).
    Protection,
    /// AArch64 only: a valid entry with the access flag clear.
    AccessFlag,
    /// Anything else the hardware reports (reserved bits, alignment,
    /// external abort). `MemFault::syndrome` has the raw report.
    Other,
}

/// A decoded memory fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemFault {
    /// The address the access named (CR2 / FAR).
    pub addr: VirtAddr,
    pub access: Access,
    pub cause: FaultCause,
    /// The table level the walk stopped at, when the hardware says
    /// (AArch64 reports it; x86_64 does not).
    pub level: Option<u8>,
    /// The raw report: the x86_64 error code, or the AArch64 ESR.
    pub syndrome: u64,
}
