//! Exceptions: the IDT, the entry stubs, the register frame they save, and
//! the decoding of page-fault error codes.
//!
//! ## Protocol
//!
//! Each vector 0..=255 has a 16-byte stub (`arch_x86_trap_stubs +
//! 16 * vector`) that pushes a zero error code if the CPU pushed none, then
//! the vector number, and jumps to a common path that pushes every
//! general-purpose register (a [`TrapFrame`]) and calls [`x86_trap`];
//! vectors 32 and up are interrupts, handed to `irq::dispatch`. On
//! return the frame, possibly changed (`rip` moved to a fix-up, `rax`/`rdx`
//! set to report a fault), is restored and `iretq` resumes.
//!
//! Double fault, NMI and machine check run on their own IST stacks (see
//! [`crate::gdt`]). A kernel stack that overflows into its guard page
//! faults, and the CPU cannot push that fault's frame on the same stack:
//! the page fault becomes a double fault, taken on its IST stack and
//! offered to the kernel as a possible stack overflow
//! (`arch_common::trap::offer_stack_fault`: the stack pointer, CR2, and the
//! interrupt flag of the frame; the SDM leaves the double fault's saved RIP
//! undefined, so RIP is only reported). A kernel exception is expected (a
//! [`crate::probe`] instruction), a fault the kernel's handler resolves
//! (`arch_common::trap`), or a kernel bug, reported with CR2, the error
//! code and RIP before a panic.
#![cfg(target_os = "none")]

use crate::gdt;
use crate::probe;
use mm::fault::{Access, FaultCause, MemFault};
use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

/// The registers saved on exception entry, lowest address first (the order
/// is the reverse of the pushes in the assembly below).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The CPU aligns RSP to 16 before pushing its 5 words; with the error code,
// the vector and 15 registers the frame is 22 words, and 22 * 8 keeps the
// 16-byte alignment the call into Rust needs.
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

/// RFLAGS.IF: interrupts enabled.
const RFLAGS_IF: u64 = 1 << 9;

/// Vectors for which the CPU pushes an error code.
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

macro_rules! trap_stubs {
    ($($n:literal)*) => {
        core::arch::global_asm!(
            ".section .text",
            ".balign 16",
            ".global arch_x86_trap_stubs",
            "arch_x86_trap_stubs:",
            $(
                ".balign 16",
                concat!(".if ", stringify!($n), " == 8 || ", stringify!($n), " == 10 || ", stringify!($n),
                        " == 11 || ", stringify!($n), " == 12 || ", stringify!($n), " == 13 || ",
                        stringify!($n), " == 14 || ", stringify!($n), " == 17 || ", stringify!($n),
                        " == 21 || ", stringify!($n), " == 29 || ", stringify!($n), " == 30"),
                ".else",
                "push 0",
                ".endif",
                concat!("push ", stringify!($n)),
                "jmp arch_x86_trap_common",
            )*
            "arch_x86_trap_common:",
            // From ring 3 (CS's RPL, above the vector, error code and RIP):
            // the kernel's GS base back first.
            "test byte ptr [rsp + 24], 3",
            "jz 1f",
            "swapgs",
            "1:",
            // The `syscall` entry joins here with its own frame.
            ".global arch_x86_trap_gs_done",
            "arch_x86_trap_gs_done:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
            "mov rdi, rsp",
            "cld",
            // No user access from the handler, whatever AC was.
            "cmp byte ptr [rip + ARCH_X86_SMAP], 0",
            "je 1f",
            "clac",
            "1:",
            "call {handler}",
            // A ring-3 frame stored into its Regs: return from enter_user.
            "test rax, rax",
            "jnz arch_x86_user_exit",
            "test byte ptr [rsp + 15 * 8 + 24], 3",
            "jz 1f",
            "swapgs",
            "1:",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
            "add rsp, 16",
            "iretq",
            handler = sym x86_trap,
        );
    };
}

trap_stubs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255);

extern "C" {
    static arch_x86_trap_stubs: u8;
}

fn stub(vector: u8) -> VirtAddr {
    let base = core::ptr::addr_of!(arch_x86_trap_stubs) as u64;
    VirtAddr::new(base + 16 * vector as u64)
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Points each named exception entry of `$idt` at the stub of its vector:
/// the IDT's exception entries are fields of different handler types, so
/// they are set by name, from this one table of names and vectors.
macro_rules! point_exceptions_at_stubs {
    ($idt:ident: $($field:ident $vector:literal,)+) => {
        $( $idt.$field.set_handler_addr(stub($vector)); )+
    };
}

/// Builds and loads the IDT. Boot CPU, once, after [`gdt::init_this_cpu`]
/// (the entries take the current code segment, the same on every CPU).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY (all entries): each stub saves a full frame, calls
        // `x86_trap` and returns with `iretq`, popping the error code the
        // CPU pushed for exactly the vectors in `has_error_code`.
        unsafe {
            point_exceptions_at_stubs!(idt:
                divide_error 0,
                debug 1,
                breakpoint 3,
                overflow 4,
                bound_range_exceeded 5,
                invalid_opcode 6,
                device_not_available 7,
                invalid_tss 10,
                segment_not_present 11,
                stack_segment_fault 12,
                general_protection_fault 13,
                page_fault 14,
                x87_floating_point 16,
                alignment_check 17,
                simd_floating_point 19,
                virtualization 20,
                cp_protection_exception 21,
                hv_injection_exception 28,
                vmm_communication_exception 29,
                security_exception 30,
            );
            // `int3` and `into` may be used by user code (DPL 3): they are
            // reported as breakpoint and overflow, not as a #GP.
            idt.breakpoint.set_handler_addr(stub(3)).set_privilege_level(x86_64::PrivilegeLevel::Ring3);
            idt.overflow.set_handler_addr(stub(4)).set_privilege_level(x86_64::PrivilegeLevel::Ring3);
            // These three run on their own stacks.
            idt.non_maskable_interrupt.set_handler_addr(stub(2)).set_stack_index(gdt::IST_NMI);
            idt.double_fault.set_handler_addr(stub(8)).set_stack_index(gdt::IST_DOUBLE_FAULT);
            idt.machine_check.set_handler_addr(stub(18)).set_stack_index(gdt::IST_MACHINE_CHECK);
            for vector in 32..=255u8 {
                idt[vector].set_handler_addr(stub(vector));
            }
        }
        idt
    });
    idt.load();
}

/// Loads the IDT [`init`] built: every other CPU, once, in its start-up
/// path, after its own GDT.
///
/// # Panics
/// When [`init`] has not run: a kernel bug (CPUs are started after it).
pub fn load_this_cpu() {
    IDT.get().expect("trap::load_this_cpu: the boot CPU has not built the IDT").load();
}

/// True once [`init`] has built the IDT.
pub fn initialised() -> bool {
    IDT.is_completed()
}

/// Exception names, by vector.
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug",
        "NMI",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection fault",
        "page fault",
        "reserved",
        "x87 floating-point",
        "alignment check",
        "machine check",
        "SIMD floating-point",
        "virtualization",
        "control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection",
        "VMM communication",
        "security",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Page-fault error code bits (Intel SDM vol. 3, 4.7).
pub mod pf {
    /// 0: the page was not present; 1: a protection violation.
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from user mode.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging entry.
    pub const RESERVED: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// Decodes a page fault (error code, CR2) into the arch-neutral [`MemFault`].
pub fn decode_page_fault(error_code: u64, cr2: u64) -> MemFault {
    let access = if error_code & pf::FETCH != 0 {
        Access::Execute
    } else if error_code & pf::WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    };
    let cause = if error_code & pf::RESERVED != 0 {
        FaultCause::Other
    } else if error_code & pf::PRESENT != 0 {
        FaultCause::Protection
    } else {
        FaultCause::NotMapped
    };
    MemFault { addr: mm::VirtAddr::new(cr2), access, cause, level: None, syndrome: error_code }
}

/// Called by the assembly for every exception, interrupt and `syscall`,
/// with the saved frame. Returns 1 when the frame came from ring 3 and was
/// stored into the `Regs` of `enter_user` ([`crate::user`]): the assembly
/// then returns from `enter_user`; 0 to resume the frame.
///
/// # Panics
/// On any exception the kernel did not expect: that is a kernel bug, and the
/// panic message carries the vector, error code, CR2 and RIP. A kernel-mode
/// page fault at a user address outside the user-access routines is one.
#[no_mangle]
extern "C" fn x86_trap(frame: &mut TrapFrame) -> u64 {
    // NMI, double fault and machine check run on their IST stacks, not on
    // `rsp0`: never a user exit (the kernel expects none of them).
    if frame.cs & 3 == 3 && !matches!(frame.vector, 2 | 8 | 18) {
        crate::user::from_user(frame);
        return 1;
    }
    debug_assert!(has_error_code(frame.vector as u8) || frame.error_code == 0);
    let vector = frame.vector;
    if vector >= 32 {
        crate::irq::dispatch(vector as u8);
        return 0;
    }
    if vector == 3 && probe::fix_up_breakpoint(frame) {
        return 0;
    }
    match vector {
        14 => {
            let cr2 = Cr2::read_raw();
            let fault = decode_page_fault(frame.error_code, cr2);
            if probe::fix_up_fault(frame, &fault) || crate::user::fix_up_uaccess(frame, &fault) {
                return 0;
            }
            if cr2 < crate::user::USER_END {
                note_fatal(frame);
                panic!(
                    "kernel page fault at user address {cr2:#x} ({:?} {:?}, error code {:#x}) at RIP {:#x}, \
                     outside the user-access routines",
                    fault.access, fault.cause, frame.error_code, frame.rip
                );
            }
            if arch_common::trap::offer_to_kernel(&fault) {
                return 0;
            }
            note_fatal(frame);
            panic!(
                "unexpected kernel page fault at {cr2:#x} ({:?} {:?}, error code {:#x}) at RIP {:#x}",
                fault.access, fault.cause, frame.error_code, frame.rip
            );
        }
        8 => {
            let cr2 = Cr2::read_raw();
            let fault = arch_common::trap::StackFault {
                sp: frame.rsp,
                addr: cr2,
                pc: frame.rip,
                irqs_were_on: frame.rflags & RFLAGS_IF != 0,
            };
            // Returns only when it was not the overflow of a kernel stack.
            arch_common::trap::offer_stack_fault(&fault);
            note_fatal(frame);
            panic!(
                "double fault at RIP {:#x}, RSP {:#x}, CR2 {cr2:#x} (not a kernel stack's guard page)",
                frame.rip, frame.rsp
            );
        }
        v => {
            note_fatal(frame);
            panic!(
                "unexpected exception {v} ({}), error code {:#x}, at RIP {:#x}, RSP {:#x}",
                vector_name(v),
                frame.error_code,
                frame.rip,
                frame.rsp
            )
        }
    }
}

/// Records where the fault in `frame` happened, for the panic's backtrace
/// (`arch_common::trap::note_fatal_fault`).
fn note_fatal(frame: &TrapFrame) {
    use arch_common::cpu::Cpu;
    arch_common::trap::note_fatal_fault(crate::X86_64::cpu_index(), frame.rip, frame.rbp);
}

impl arch_common::trap::Frames for crate::X86_64 {
    #[inline(always)]
    fn frame_pointer() -> u64 {
        let fp: u64;
        // SAFETY: reads RBP, which with frame pointers forced on holds this
        // function's frame record; no memory is touched.
        unsafe { core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags)) };
        fp
    }
}
