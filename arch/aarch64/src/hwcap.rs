//! `AT_HWCAP` on AArch64: Linux's `HWCAP_*` bits (the ABI of the
//! auxiliary vector's hardware-capability word), computed from the ID
//! registers. Plain bit arithmetic, built and tested on the host; only
//! [`IdRegisters::read`] touches the CPU.
//!
//! A bit is set when the CPU has the feature *and* EL0 can use it as this
//! kernel runs the CPU; see [`from_id_registers`] for what is left out.

/// The ID registers `AT_HWCAP` is made from.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdRegisters {
    pub pfr0: u64,
    pub isar0: u64,
    pub isar1: u64,
    pub mmfr2: u64,
    pub pfr1: u64,
}

#[cfg(target_os = "none")]
impl IdRegisters {
    /// This CPU's.
    pub fn read() -> IdRegisters {
        let mut r = IdRegisters::default();
        // SAFETY: reading ID registers has no side effect.
        unsafe {
            core::arch::asm!(
                "mrs {0}, id_aa64pfr0_el1",
                "mrs {1}, id_aa64isar0_el1",
                "mrs {2}, id_aa64isar1_el1",
                "mrs {3}, id_aa64mmfr2_el1",
                "mrs {4}, id_aa64pfr1_el1",
                out(reg) r.pfr0,
                out(reg) r.isar0,
                out(reg) r.isar1,
                out(reg) r.mmfr2,
                out(reg) r.pfr1,
                options(nomem, nostack)
            );
        }
        r
    }
}

/// Linux's `HWCAP_*` bit numbers (the ABI of `AT_HWCAP` on AArch64).
pub mod bit {
    pub const FP: u32 = 0;
    pub const ASIMD: u32 = 1;
    pub const AES: u32 = 3;
    pub const PMULL: u32 = 4;
    pub const SHA1: u32 = 5;
    pub const SHA2: u32 = 6;
    pub const CRC32: u32 = 7;
    pub const ATOMICS: u32 = 8;
    pub const FPHP: u32 = 9;
    pub const ASIMDHP: u32 = 10;
    pub const ASIMDRDM: u32 = 12;
    pub const JSCVT: u32 = 13;
    pub const FCMA: u32 = 14;
    pub const LRCPC: u32 = 15;
    pub const DCPOP: u32 = 16;
    pub const SHA3: u32 = 17;
    pub const SM3: u32 = 18;
    pub const SM4: u32 = 19;
    pub const ASIMDDP: u32 = 20;
    pub const SHA512: u32 = 21;
    pub const ASIMDFHM: u32 = 23;
    pub const DIT: u32 = 24;
    pub const USCAT: u32 = 25;
    pub const ILRCPC: u32 = 26;
    pub const FLAGM: u32 = 27;
    pub const SSBS: u32 = 28;
    pub const SB: u32 = 29;
}

/// The 4-bit ID field at `shift`.
fn field(reg: u64, shift: u32) -> u64 {
    (reg >> shift) & 0xf
}

/// `AT_HWCAP` for a CPU with these ID registers: each feature EL0 can
/// use as this kernel runs it. Left out although the CPU may have them:
/// SVE (this kernel keeps SVE trapped and saves only the FP/SIMD
/// registers), pointer authentication (no keys are set up), `CPUID`
/// (EL0 reads of the ID registers are not emulated) and `EVTSTRM` (no
/// timer event stream).
pub fn from_id_registers(id: &IdRegisters) -> u64 {
    let mut caps = 0u64;
    let mut set = |on: bool, b: u32| {
        if on {
            caps |= 1 << b;
        }
    };
    // ID_AA64PFR0_EL1: FP 19..16, AdvSIMD 23..20 (0xf = absent, 1 =
    // with half precision), DIT 51..48.
    let fp = field(id.pfr0, 16);
    let simd = field(id.pfr0, 20);
    set(fp != 0xf, bit::FP);
    set(fp == 1, bit::FPHP);
    set(simd != 0xf, bit::ASIMD);
    set(simd == 1, bit::ASIMDHP);
    set(field(id.pfr0, 48) >= 1, bit::DIT);
    // ID_AA64ISAR0_EL1.
    let aes = field(id.isar0, 4);
    set(aes >= 1, bit::AES);
    set(aes >= 2, bit::PMULL);
    set(field(id.isar0, 8) >= 1, bit::SHA1);
    let sha2 = field(id.isar0, 12);
    set(sha2 >= 1, bit::SHA2);
    set(sha2 >= 2, bit::SHA512);
    set(field(id.isar0, 16) >= 1, bit::CRC32);
    set(field(id.isar0, 20) >= 2, bit::ATOMICS);
    set(field(id.isar0, 28) >= 1, bit::ASIMDRDM);
    set(field(id.isar0, 32) >= 1, bit::SHA3);
    set(field(id.isar0, 36) >= 1, bit::SM3);
    set(field(id.isar0, 40) >= 1, bit::SM4);
    set(field(id.isar0, 44) >= 1, bit::ASIMDDP);
    set(field(id.isar0, 48) >= 1, bit::ASIMDFHM);
    set(field(id.isar0, 52) >= 1, bit::FLAGM);
    // ID_AA64ISAR1_EL1.
    set(field(id.isar1, 0) >= 1, bit::DCPOP);
    set(field(id.isar1, 12) >= 1, bit::JSCVT);
    set(field(id.isar1, 16) >= 1, bit::FCMA);
    let lrcpc = field(id.isar1, 20);
    set(lrcpc >= 1, bit::LRCPC);
    set(lrcpc >= 2, bit::ILRCPC);
    set(field(id.isar1, 36) >= 1, bit::SB);
    // ID_AA64MMFR2_EL1.AT: unaligned single-copy atomicity.
    set(field(id.mmfr2, 32) >= 1, bit::USCAT);
    // ID_AA64PFR1_EL1.SSBS >= 2: EL0 has the MSR SSBS instruction.
    set(field(id.pfr1, 4) >= 2, bit::SSBS);
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(list: &[u32]) -> u64 {
        list.iter().fold(0, |caps, b| caps | 1 << b)
    }

    /// QEMU's `cortex-a72`: FP, AdvSIMD, AES with PMULL, SHA1, SHA2, CRC32
    /// (Linux shows `fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid`;
    /// `evtstrm` and `cpuid` are features of the kernel, not offered here).
    #[test]
    fn cortex_a72() {
        let id =
            IdRegisters { pfr0: 0x0000_0000_0000_2222, isar0: 0x0000_0000_0001_1120, ..Default::default() };
        use bit::*;
        assert_eq!(from_id_registers(&id), bits(&[FP, ASIMD, AES, PMULL, SHA1, SHA2, CRC32]));
    }

    /// No FP/SIMD (fields 0xf): neither bit, nor their half-precision ones.
    #[test]
    fn absent_fp_and_simd() {
        let id = IdRegisters { pfr0: 0xff << 16, ..Default::default() };
        assert_eq!(from_id_registers(&id), 0);
    }

    /// Each field's levels: SHA2 2 is SHA512 too, LRCPC 2 ILRCPC too,
    /// atomics need level 2, SSBS level 2; SVE (PFR0 bits 35..32) and
    /// pointer authentication (ISAR1 APA/API) never show.
    #[test]
    fn levels_and_what_is_left_out() {
        use bit::*;
        let id = IdRegisters {
            pfr0: 1 << 16 | 1 << 20 | 1 << 32 | 1 << 48,
            isar0: 2 << 12 | 1 << 20,
            isar1: 2 << 20 | 1 << 4 | 1 << 8,
            mmfr2: 1 << 32,
            pfr1: 1 << 4,
        };
        assert_eq!(
            from_id_registers(&id),
            bits(&[FP, FPHP, ASIMD, ASIMDHP, DIT, SHA2, SHA512, LRCPC, ILRCPC, USCAT])
        );
        let id = IdRegisters { isar0: 2 << 20, pfr1: 2 << 4, ..id };
        assert_eq!(from_id_registers(&id) & bits(&[ATOMICS, SSBS, SHA2]), bits(&[ATOMICS, SSBS]));
    }
}
