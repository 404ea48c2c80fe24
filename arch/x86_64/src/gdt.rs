//! The GDT and the TSS, one of each per CPU.
//!
//! Long mode ignores segment bases and limits, but still needs a code
//! segment for CS, and a TSS for the interrupt stack table: a double fault
//! (often a kernel stack overflow) must run on a known-good stack, or the CPU
//! triple-faults and QEMU resets without a word. NMI and machine check get
//! their own stacks too.
//!
//! Every CPU has its own TSS (its IST stacks must be its own: two CPUs
//! taking a double fault at once would otherwise share one stack) and so its
//! own GDT (loading a TSS marks its descriptor busy, and a busy descriptor
//! cannot be loaded by a second CPU). All GDTs have the same layout, so the
//! selectors, and the IDT built with them, are the same on every CPU.
//!
//! The layout: null, kernel code (0x08), kernel data (0x10), user data
//! (0x18), user code (0x20), TSS. The user segments (DPL 3) come in the
//! order `sysret` needs (see [`crate::user`]). A ring-3 entry switches to
//! the TSS's `rsp0`, which `enter_user` ([`crate::user`]) sets each time (it is
//! the entering task's kernel stack).
//!
//! The tables and stacks are statics, one slot per kernel CPU index
//! ([`MAX_CPUS`]), so that a CPU can set itself up before the kernel's heap
//! is reachable from here. Slot `i` is written by CPU `i` only: once in
//! [`init_this_cpu`], and the TSS's `rsp0` on each entry to user mode.
#![cfg(target_os = "none")]

use crate::cpu::MAX_CPUS;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (0-based, as the IDT entry takes it) for double faults.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMI.
pub const IST_NMI: u16 = 1;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;
const NR_IST_STACKS: usize = 3;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// The IST stacks, per CPU. Written only by the CPU, when it switches to them.
static mut IST_STACKS: [[IstStack; NR_IST_STACKS]; MAX_CPUS] =
    [const { [const { IstStack([0; IST_STACK_SIZE]) }; NR_IST_STACKS] }; MAX_CPUS];

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// The TSSes, per CPU. The CPU reads its own; `rsp0` is written by the CPU
/// on every entry to user mode, everything else once in [`init_this_cpu`].
static mut TSS: [TaskStateSegment; MAX_CPUS] = [const { TaskStateSegment::new() }; MAX_CPUS];
static TABLES: [Once<Tables>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Builds CPU `cpu`'s TSS and GDT and loads them: the GDT, the segment
/// registers and the task register. Once per CPU, by that CPU (the boot CPU
/// from [`crate::init`], the others from their start-up path).
///
/// # Panics
/// When `cpu` is not below [`MAX_CPUS`], or its tables were loaded before
/// (their TSS descriptor is busy): kernel bugs.
pub fn init_this_cpu(cpu: usize) {
    assert!(cpu < MAX_CPUS, "gdt::init_this_cpu: CPU index {cpu} is not below {MAX_CPUS}");
    assert!(!TABLES[cpu].is_completed(), "gdt::init_this_cpu: CPU {cpu}'s tables are already loaded");
    // SAFETY: slot `cpu` is this CPU's (checked not loaded before): no
    // other CPU touches it, and this CPU does not use it until `load_tss`.
    let tss = unsafe { core::ptr::addr_of_mut!(TSS[cpu]) };
    for (slot, i) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().zip(0..) {
        // SAFETY: only the address of the stack is taken here; the
        // stacks are used by this CPU alone.
        let base = unsafe { core::ptr::addr_of!(IST_STACKS[cpu][i]) } as u64;
        // SAFETY: as above; a plain store into this CPU's TSS.
        unsafe { (*tss).interrupt_stack_table[slot as usize] = VirtAddr::new(base + IST_STACK_SIZE as u64) };
    }
    // SAFETY: only the address of `rsp0` is taken (the field is 4-aligned
    // in the packed TSS; the assembly stores it unaligned).
    let rsp0 = unsafe { core::ptr::addr_of_mut!((*tss).privilege_stack_table[0]) } as u64;
    // SAFETY: this CPU's own `PerCpu`.
    unsafe { (*crate::cpu::per_cpu(cpu)).tss_rsp0 = rsp0 };
    let tables = TABLES[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        debug_assert_eq!(user_data.0, crate::user::USER_SS);
        debug_assert_eq!(user_code.0, crate::user::USER_CS);
        // SAFETY: the TSS is a static, so it outlives the GDT; it is
        // changed only by its CPU (`rsp0`), which the CPU reads on entries.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        Tables { gdt, code, data, tss }
    });
    tables.gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // lives in a static for the rest of the kernel's life; the TSS
    // descriptor is this CPU's own and not yet busy (checked above).
    unsafe {
        CS::set_reg(tables.code);
        SS::set_reg(tables.data);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        // Null FS and GS: an `iretq` to ring 3 would null a kernel
        // selector there, and with it (on some CPUs, and QEMU) the base,
        // the user's TLS. Loading them may clear the GS base: set again.
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(tables.tss);
    }
    crate::cpu::set_index(cpu);
}
