//! The MMU state the kernel runs with after boot.
//!
//! The boot path enables the MMU with one level-0 table in both TTBR0 (an
//! identity map, needed only for the instructions that turn the MMU on) and
//! TTBR1 (the kernel and the direct map). Once running in the upper half the
//! identity map must go: [`disable_lower_half`] stops all TTBR0 walks, so any
//! lower-half access takes a level-0 translation fault until address spaces
//! (issue 3) install their own tables.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, TCR_EL1};

/// Turns off translation through TTBR0 and drops every cached lower-half
/// translation.
pub fn disable_lower_half() {
    TCR_EL1.modify(TCR_EL1::EPD0::DisableTTBR0Walks);
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation only drops cached translations; the next walk
    // reads the tables again. DSB waits for it to finish, ISB makes later
    // instructions see the result.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}
