//! Which CPU am I? Each CPU's GS base (`IA32_GS_BASE`) points at its own
//! [`PerCpu`], written once when the CPU comes up: its kernel index (0 =
//! boot CPU) and the words the `syscall` entry needs before it has a stack
//! ([`crate::user`]). While a CPU runs user code the kernel's GS base waits
//! in `KERNEL_GS_BASE` (`swapgs` on every entry and exit), so in the kernel
//! the active GS base is always this one.
//!
//! Random numbers: `RDSEED` (CPUID.(7,0):EBX bit 18, the entropy
//! source's conditioned output), else `RDRAND` (CPUID.1:ECX bit 30, the
//! DRBG it reseeds); both set CF when they delivered. QEMU's `-cpu max`
//! has both.
#![cfg(target_os = "none")]

use crate::X86_64;
use arch_common::cpu::Cpu;
use x86_64::registers::model_specific::Msr;

const IA32_GS_BASE: u32 = 0xc000_0101;

/// The most CPUs this arch code keeps per-CPU state for (GDT, TSS, IST
/// stacks, APIC ids); at least the kernel's own limit.
pub const MAX_CPUS: usize = 16;

/// One CPU's own words, reached through its GS base. `repr(C)`: the
/// assembly of [`crate::user`] uses the offsets. Written only by its CPU.
#[repr(C)]
#[derive(Debug)]
pub struct PerCpu {
    /// The kernel index.
    pub index: u64,
    /// Where `syscall` lands: the stack pointer `enter_user` left.
    pub kernel_rsp: u64,
    /// The user RSP, parked by the `syscall` entry for a moment.
    pub user_rsp: u64,
    /// The address of this CPU's TSS `rsp0` ([`crate::gdt`]).
    pub tss_rsp0: u64,
}

static mut PER_CPU: [PerCpu; MAX_CPUS] =
    [const { PerCpu { index: 0, kernel_rsp: 0, user_rsp: 0, tss_rsp0: 0 } }; MAX_CPUS];

/// CPU `cpu`'s [`PerCpu`].
pub(crate) fn per_cpu(cpu: usize) -> *mut PerCpu {
    // SAFETY: only the address is taken.
    unsafe { core::ptr::addr_of_mut!(PER_CPU[cpu]) }
}

/// Records this CPU's index and points its GS base at its [`PerCpu`].
/// Done by [`crate::gdt::init_this_cpu`] (after it loads a null GS
/// selector, which may clear the base); again by the start-up paths, which
/// name the index too. Before it, [`Cpu::cpu_index`] must not be called.
pub fn set_index(index: usize) {
    assert!(index < MAX_CPUS, "set_index: CPU index {index} is not below {MAX_CPUS}");
    let p = per_cpu(index);
    // SAFETY: slot `index` is this CPU's: no other CPU touches it; GS_BASE
    // is used for nothing else in the kernel.
    unsafe {
        (*p).index = index as u64;
        Msr::new(IA32_GS_BASE).write(p as u64);
    }
}

/// This CPU's [`PerCpu`] (CPU 0's before [`set_index`]).
pub(crate) fn this_cpu() -> *mut PerCpu {
    per_cpu(X86_64::cpu_index())
}

/// Which random-number instructions the CPU has: (RDSEED, RDRAND).
fn random_instructions() -> (bool, bool) {
    let (leaf1, leaf7) = (core::arch::x86_64::__cpuid(1), core::arch::x86_64::__cpuid_count(7, 0));
    (leaf7.ebx & (1 << 18) != 0, leaf1.ecx & (1 << 30) != 0)
}

impl Cpu for X86_64 {
    const MAX_CPUS: usize = MAX_CPUS;

    fn hw_random_source() -> Option<&'static str> {
        match random_instructions() {
            (true, _) => Some("RDSEED"),
            (false, true) => Some("RDRAND"),
            _ => None,
        }
    }

    fn hw_random() -> Option<u64> {
        let (rdseed, rdrand) = random_instructions();
        let mut value = 0u64;
        for _ in 0..10 {
            // SAFETY: each instruction runs only when CPUID says the CPU
            // has it; it writes `value` and nothing else.
            let ok = unsafe {
                (rdseed && core::arch::x86_64::_rdseed64_step(&mut value) == 1)
                    || (rdrand && core::arch::x86_64::_rdrand64_step(&mut value) == 1)
            };
            if ok {
                return Some(value);
            }
        }
        None
    }

    fn cpu_index() -> usize {
        let index: u64;
        // SAFETY: in the kernel the active GS base points at this CPU's
        // `PerCpu` (`set_index`; `swapgs` on every entry from user mode),
        // whose first word is the index, never changed after.
        unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, preserves_flags)) };
        index as usize
    }
}
