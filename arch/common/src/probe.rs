//! Accesses that may fault, and a breakpoint that is expected.
//!
//! A probe is a one-instruction load or store at a known address. When the
//! MMU faults on exactly that instruction, the arch's trap handler does not
//! crash: it writes the fault report into the probe's two result registers
//! and resumes at a fix-up label that returns it. This is how the kernel
//! will read user memory it is not sure is mapped, and how the tests check
//! that a real MMU fault is reported with the right address and cause.
//!
//! ## The assembly contract
//!
//! Each arch crate defines these global symbols in assembly (the names are
//! the same on every arch; this module declares them once):
//!
//! | symbol | what |
//! | --- | --- |
//! | `arch_probe_read_u8(addr)` | loads the byte at `addr` with the one instruction at `arch_probe_read_u8_insn` |
//! | `arch_probe_write_u8(addr, value)` | stores `value` at `addr` with the one instruction at `arch_probe_write_u8_insn` |
//! | `arch_probe_exec(target)` | calls `target`, which returns to `arch_probe_exec_ret` |
//! | `arch_probe_breakpoint()` | runs the breakpoint instruction at `arch_probe_breakpoint_insn` |
//! | `arch_probe_fixup` | returns: the result registers already hold the fault report |
//!
//! Each returns a [`ProbeResult`], a 16-byte `repr(C)` pair that both ABIs
//! return in two registers (x86_64: `rax`, `rdx`; AArch64: `x0`, `x1`):
//! `status = 0` and the value on success; after a fault, what
//! [`ProbeResult::fault`] makes of the syndrome and the address. The trap
//! handler asks [`ProbeSites`] whether a fault is a probe's and where to
//! resume.

use mm::fault::{Access, MemFault};
use mm::VirtAddr;

/// What a probe routine returns (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ProbeResult {
    pub status: u64,
    pub value: u64,
}

impl ProbeResult {
    /// The report of `fault`: the syndrome shifted up with bit 0 set, and
    /// the faulting address.
    pub fn fault(fault: &MemFault) -> ProbeResult {
        ProbeResult { status: (fault.syndrome << 1) | 1, value: fault.addr.as_u64() }
    }

    /// The value, or the fault the report describes, decoded by `P`.
    fn decode<P: Probe + ?Sized>(self) -> Result<u64, MemFault> {
        if self.status & 1 == 0 {
            Ok(self.value)
        } else {
            Err(P::decode_probe_fault(self.status >> 1, self.value))
        }
    }
}

extern "C" {
    fn arch_probe_read_u8(addr: u64) -> ProbeResult;
    fn arch_probe_write_u8(addr: u64, value: u8) -> ProbeResult;
    fn arch_probe_breakpoint() -> ProbeResult;
    fn arch_probe_exec(target: u64) -> ProbeResult;
    static arch_probe_exec_ret: u8;
    static arch_probe_read_u8_insn: u8;
    static arch_probe_write_u8_insn: u8;
    static arch_probe_fixup: u8;
    static arch_probe_breakpoint_insn: u8;
}

/// The value the code [`Probe::RETURN_MAGIC_CODE`] returns.
pub const RETURN_MAGIC: u64 = 0x1234_5678;

/// The probes, as an arch provides them. The probe functions themselves are
/// provided: they call the assembly routines and decode what they return.
///
/// # Safety
/// The implementing arch crate defines the symbols of the module doc with
/// that contract, and its trap handler fixes up exactly the faults
/// [`ProbeSites`] recognises, and the probe breakpoint, as described there.
pub unsafe trait Probe {
    /// How far past the breakpoint instruction the exception reports it
    /// (0 when it names the instruction itself).
    const BREAKPOINT_REPORTED_OFFSET: u64;

    /// The syndrome a correct report of the probe breakpoint carries.
    const BREAKPOINT_SYNDROME: u64;

    /// Machine code of a function that, run by [`Probe::probe_exec`],
    /// returns [`RETURN_MAGIC`]: for tests of execute permissions.
    const RETURN_MAGIC_CODE: &'static [u8];

    /// The fault a report's syndrome and address describe.
    fn decode_probe_fault(syndrome: u64, addr: u64) -> MemFault;

    /// An address no page table of the running kernel maps.
    fn unmapped_address() -> VirtAddr;

    /// Where the probe instructions are, for the trap handler.
    fn probe_sites() -> ProbeSites {
        ProbeSites {
            read_insn: core::ptr::addr_of!(arch_probe_read_u8_insn) as u64,
            write_insn: core::ptr::addr_of!(arch_probe_write_u8_insn) as u64,
            fixup: core::ptr::addr_of!(arch_probe_fixup) as u64,
            exec_ret: core::ptr::addr_of!(arch_probe_exec_ret) as u64,
            breakpoint_insn: core::ptr::addr_of!(arch_probe_breakpoint_insn) as u64,
        }
    }

    /// Reads one byte at `addr`, or reports the fault the MMU raised.
    fn probe_read_u8(addr: VirtAddr) -> Result<u8, MemFault> {
        // SAFETY: the load is the probe instruction: a fault on it is fixed
        // up by the trap handler (the implementor's contract), and a
        // successful byte load from RAM has no side effects (callers do not
        // probe device memory).
        unsafe { arch_probe_read_u8(addr.as_u64()) }.decode::<Self>().map(|v| v as u8)
    }

    /// Writes one byte at `addr`, or reports the fault the MMU raised.
    ///
    /// # Safety
    /// If `addr` is mapped and writable the byte is stored: the caller must
    /// own that byte (or know that nothing else uses it).
    unsafe fn probe_write_u8(addr: VirtAddr, value: u8) -> Result<(), MemFault> {
        // SAFETY: a fault on the store is fixed up by the trap handler; the
        // caller owns the byte if the store succeeds.
        unsafe { arch_probe_write_u8(addr.as_u64(), value) }.decode::<Self>().map(|_| ())
    }

    /// Calls the code at `target`, or reports the fault the MMU raised when
    /// fetching its first instruction. The code must return a
    /// [`ProbeResult`] with status 0 (as [`Probe::RETURN_MAGIC_CODE`] does).
    ///
    /// # Safety
    /// If `target` is mapped executable, the code there runs: it must be a
    /// function of that contract that touches nothing else.
    unsafe fn probe_exec(target: VirtAddr) -> Result<u64, MemFault> {
        // SAFETY: a fetch fault at `target` is fixed up by the trap handler
        // (it recognises the probe's return address); otherwise the caller
        // vouches for the code.
        unsafe { arch_probe_exec(target.as_u64()) }.decode::<Self>()
    }

    /// Executes the probe breakpoint and returns what the exception handler
    /// saw: its fix-up returns the reported address as the status and the
    /// syndrome as the value.
    fn probe_breakpoint() -> BreakpointHit {
        // SAFETY: the breakpoint is the probe's: the handler records it and
        // resumes after it.
        let r = unsafe { arch_probe_breakpoint() };
        let insn_at = Self::probe_sites().breakpoint_insn;
        BreakpointHit {
            reported_at: r.status,
            insn_at,
            expected: insn_at + Self::BREAKPOINT_REPORTED_OFFSET,
            syndrome: r.value,
            expected_syndrome: Self::BREAKPOINT_SYNDROME,
        }
    }
}

/// What the breakpoint exception reported, and what a correct report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakpointHit {
    /// The address the CPU reported (x86_64: the saved RIP; AArch64: ELR).
    pub reported_at: u64,
    /// Where the breakpoint instruction is.
    pub insn_at: u64,
    /// The address a correct report names (x86_64: `#BP` is a trap, so
    /// the instruction after the one-byte `INT3`; AArch64: the `BRK`
    /// itself).
    pub expected: u64,
    /// The syndrome the handler saw (x86_64: the vector; AArch64: ESR).
    pub syndrome: u64,
    /// The syndrome a correct report carries.
    pub expected_syndrome: u64,
}

/// The addresses of the probe labels (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSites {
    pub read_insn: u64,
    pub write_insn: u64,
    pub fixup: u64,
    pub exec_ret: u64,
    pub breakpoint_insn: u64,
}

/// How the trap handler resumes after a probe's fault: at `resume`, with
/// `result` in the probe's two result registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixUp {
    pub resume: u64,
    pub result: ProbeResult,
}

impl ProbeSites {
    /// The fix-up for `fault`, taken at `pc`, when `pc` is the load or the
    /// store of a probe.
    pub fn fix_up_access(&self, pc: u64, fault: &MemFault) -> Option<FixUp> {
        (pc == self.read_insn || pc == self.write_insn)
            .then(|| FixUp { resume: self.fixup, result: ProbeResult::fault(fault) })
    }

    /// The fix-up for `fault`, taken at `pc`, when it is the first fetch of
    /// an exec probe: an execute fault at the faulting address itself, whose
    /// caller is the probe (`return_address`, called only then, reads the
    /// return address the probe's call left). The handler resumes at the
    /// probe's return label, with the return address consumed.
    pub fn fix_up_exec(
        &self,
        pc: u64,
        fault: &MemFault,
        return_address: impl FnOnce() -> u64,
    ) -> Option<FixUp> {
        let first_fetch = fault.access == Access::Execute && pc == fault.addr.as_u64();
        (first_fetch && return_address() == self.exec_ret)
            .then(|| FixUp { resume: self.exec_ret, result: ProbeResult::fault(fault) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm::fault::FaultCause;

    const SITES: ProbeSites = ProbeSites {
        read_insn: 0x100,
        write_insn: 0x200,
        fixup: 0x300,
        exec_ret: 0x400,
        breakpoint_insn: 0x500,
    };

    fn fault(addr: u64, access: Access) -> MemFault {
        MemFault {
            addr: VirtAddr::new(addr),
            access,
            cause: FaultCause::NotMapped,
            level: None,
            syndrome: 0x6,
        }
    }

    /// A host stand-in whose fault decoding keeps the syndrome as the level.
    struct FakeArch;

    // SAFETY: a test type: only `decode_probe_fault` is called, never a
    // probe routine.
    unsafe impl Probe for FakeArch {
        const BREAKPOINT_REPORTED_OFFSET: u64 = 0;
        const BREAKPOINT_SYNDROME: u64 = 0;
        const RETURN_MAGIC_CODE: &'static [u8] = &[];
        fn decode_probe_fault(syndrome: u64, addr: u64) -> MemFault {
            MemFault { level: Some(syndrome as u8), ..fault(addr, Access::Write) }
        }
        fn unmapped_address() -> VirtAddr {
            VirtAddr::new(0)
        }
    }

    #[test]
    fn a_fault_report_decodes_to_its_syndrome_and_address() {
        let report = ProbeResult::fault(&fault(0xdead_b000, Access::Read));
        assert_eq!(report.status & 1, 1);
        let decoded = report.decode::<FakeArch>().unwrap_err();
        assert_eq!((decoded.addr.as_u64(), decoded.level), (0xdead_b000, Some(0x6)));
        assert_eq!(ProbeResult { status: 0, value: 42 }.decode::<FakeArch>(), Ok(42));
    }

    #[test]
    fn only_the_probe_instructions_are_fixed_up() {
        let f = fault(0x1000, Access::Read);
        let want = Some(FixUp { resume: 0x300, result: ProbeResult::fault(&f) });
        assert_eq!(SITES.fix_up_access(0x100, &f), want);
        assert_eq!(SITES.fix_up_access(0x200, &f), want);
        assert_eq!(SITES.fix_up_access(0x104, &f), None);
        assert_eq!(SITES.fix_up_access(0x300, &f), None);
    }

    #[test]
    fn an_exec_probe_is_fixed_up_on_its_first_fetch_only() {
        let f = fault(0x7000, Access::Execute);
        let want = Some(FixUp { resume: 0x400, result: ProbeResult::fault(&f) });
        assert_eq!(SITES.fix_up_exec(0x7000, &f, || 0x400), want);
        assert_eq!(SITES.fix_up_exec(0x7000, &f, || 0x404), None, "called by someone else");
        let read = fault(0x7000, Access::Read);
        assert_eq!(SITES.fix_up_exec(0x7000, &read, || panic!("read the stack for a data fault")), None);
        assert_eq!(SITES.fix_up_exec(0x7004, &f, || panic!("read the stack past the first fetch")), None);
    }
}
