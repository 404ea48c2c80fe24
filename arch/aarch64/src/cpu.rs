//! Which CPU am I? Each CPU keeps its kernel index (0 = boot CPU) in its
//! own `TPIDR_EL1`, written once when the CPU comes up.

/// Records this CPU's index. Once per CPU, before it runs tasks.
pub fn set_index(index: usize) {
    // SAFETY: TPIDR_EL1 is a software thread-ID register reserved for this.
    unsafe { core::arch::asm!("msr tpidr_el1, {0}", in(reg) index as u64, options(nomem, nostack)) };
}

/// This CPU's index.
pub fn index() -> usize {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {0}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
    v as usize
}
