//! Starting the other CPUs (application processors, "APs").
//!
//! After the firmware, every CPU but the boot CPU waits for an INIT and a
//! start-up IPI (SIPI). A SIPI starts the CPU in 16-bit real mode at
//! physical address `vector << 12`, so the first code it runs must sit in a
//! page below 1 MiB: the *trampoline*. It takes the CPU from real mode to
//! 64-bit mode on the kernel's page tables, then into Rust (`ap_main`),
//! where the CPU sets itself up and calls the kernel's entry.
//!
//! ## The trampoline area
//!
//! The boot path gives this module [`TRAMPOLINE_AREA_SIZE`] bytes of RAM
//! below 1 MiB ([`set_trampoline_area`]), five pages (numbered from the
//! area's start; page 0's number is the SIPI vector):
//!
//! | page | what |
//! | --- | --- |
//! | 0 | a copy of the trampoline code, its GDT, and its data block |
//! | 1 | a PML4: entry 0 leads to the identity map below, entries 256..512 are the kernel root's |
//! | 2, 3, 4 | PDPT, PD and PT of the identity map of page 0 (4 KiB pages only) |
//!
//! These pages are safe to use because the bootloader reported them usable
//! RAM, its own frame allocator hands out nothing below 1 MiB, and the
//! kernel's memory map leaves out the whole first MiB (boot/x86_64): nothing
//! else in the kernel ever owns them.
//!
//! ## Protocol (one CPU at a time, `Smp::start_cpu`)
//!
//! 1. The boot CPU records the new CPU's APIC id, sets `HANDSHAKE` to
//!    `WAITING` and sends INIT (the CPU now waits for a SIPI, running
//!    nothing). It copies the trampoline into page 0, fills its data block
//!    (the CPU's index, stack, entry point; the kernel root; the boot CPU's
//!    CR0, CR4 and EFER, which the new CPU takes over) and builds the
//!    tables; then, 10 ms after the INIT, sends a SIPI, and another 200 us
//!    later (Intel SDM vol. 3, 9.4.4; a SIPI to a CPU that already started
//!    is ignored).
//! 2. The new CPU, in real mode with CS = page 0's segment, loads the
//!    trampoline's GDT and enters 32-bit protected mode; turns on PAE, loads
//!    the temporary PML4, sets EFER (LME, NXE) and CR0 (PG, WP, caches on),
//!    which puts it in long mode, and far-jumps to the 64-bit code segment.
//!    Every address it uses up to here is the page base (from CS) plus an
//!    offset: the code does not know where it was copied.
//! 3. In 64-bit mode, still in page 0, it loads its stack and arguments
//!    from the data block and jumps to `arch_x86_ap_long_mode` in the
//!    kernel image (mapped through the copied upper half), which loads the
//!    kernel root into CR3. From here the low pages are no longer used,
//!    except that GDTR still points at the trampoline's GDT until the next
//!    step replaces it (no segment is loaded in between).
//! 4. `ap_main` copies the boot CPU's CR4, records its index, loads its
//!    own GDT and TSS ([`gdt::init_this_cpu`]) and the shared IDT, enables
//!    its local APIC, and then claims the handshake (`WAITING` -> its
//!    index). The boot CPU, seeing that, returns `Ok`: the trampoline area
//!    may now be rewritten for the next CPU. The new CPU calls the kernel's
//!    `entry(cpu)`, interrupts still disabled.
//! 5. If the handshake is not claimed within [`START_TIMEOUT_NS`], the boot
//!    CPU cancels it (`WAITING` -> `CANCELLED`) and sends INIT again, which
//!    parks the CPU wherever it was; a CPU that reaches step 4 late finds
//!    the handshake cancelled and halts. Either way it never runs the
//!    kernel's entry, and never again reads the trampoline area.
//!
//! The new CPU's kernel index is recorded with its APIC id (for
//! `Irq::send_ipi_to`) before the INIT, and forgotten on failure. A
//! kernel index is used for one start attempt only: its per-CPU GDT and TSS
//! may have been loaded (and the TSS marked busy) by a CPU that was then
//! parked.
#![cfg(target_os = "none")]

use crate::cpu::MAX_CPUS;
use crate::pgtable::{P, RW};
use crate::{gdt, irq, trap, X86_64};
use arch_common::context::TaskEntry;
use arch_common::smp::{CpuStart, Smp};
use arch_common::time::Time;
use arch_common::Arch;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use mm::PhysAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4};
use x86_64::registers::model_specific::{Efer, EferFlags};

const PAGE_SIZE: u64 = 4096;
/// Pages of the trampoline area (see the module doc).
pub const TRAMPOLINE_PAGES: u64 = 5;
/// Bytes of the trampoline area.
pub const TRAMPOLINE_AREA_SIZE: u64 = TRAMPOLINE_PAGES * PAGE_SIZE;
/// A SIPI vector is a page number below 1 MiB.
const LOW_MEMORY_END: u64 = 0x10_0000;
/// Where the kernel's half of the address space starts.
const KERNEL_HALF_START: u64 = 0xffff_8000_0000_0000;

/// How long the boot CPU waits for a started CPU to claim the handshake.
pub const START_TIMEOUT_NS: u64 = 1_000_000_000;
/// Wait after INIT before the first SIPI (SDM: 10 ms).
const INIT_DELAY_NS: u64 = 10_000_000;
/// Wait between the two SIPIs (SDM: 200 us).
const SIPI_DELAY_NS: u64 = 200_000;

/// Physical address of the trampoline area; 0 until [`set_trampoline_area`].
static TRAMPOLINE_AREA: AtomicU64 = AtomicU64::new(0);
/// Serialises `Smp::start_cpu`: the trampoline area and [`HANDSHAKE`] serve
/// one starting CPU at a time.
static START_LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// Kernel indexes a start was attempted with (each is used once).
static INDEX_USED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The handshake between `Smp::start_cpu` and the CPU it starts: `WAITING`
/// (set by the boot CPU before INIT), then either the new CPU's index (the
/// new CPU, in [`ap_main`], done with the trampoline area) or `CANCELLED`
/// (the boot CPU, on time-out). Both sides move it only from `WAITING`,
/// with a compare-exchange, so exactly one of them decides.
static HANDSHAKE: AtomicUsize = AtomicUsize::new(WAITING);
const WAITING: usize = 0;
const CANCELLED: usize = usize::MAX;

/// Why a CPU was not started.
#[derive(Debug)]
pub enum SmpError {
    /// The boot path gave no trampoline area ([`set_trampoline_area`]):
    /// the firmware left no usable RAM below 1 MiB.
    NoTrampoline,
    /// The trampoline area offered is not page-aligned inside
    /// `[0x1000, 1 MiB)` (the boot path's fault).
    BadTrampolineArea(PhysAddr),
    /// The hardware id is not the xAPIC id of a CPU that can be started:
    /// above 0xfe, or the id of a CPU already running (the firmware's CPU
    /// table lists it twice, or lists the boot CPU as another one).
    BadApicId(u64),
    /// The kernel index is 0 (the boot CPU), not below [`MAX_CPUS`], or
    /// was used for an earlier start (the kernel's fault).
    BadCpuIndex(usize),
    /// The stack top is not a 16-byte-aligned kernel address (the
    /// kernel's fault).
    BadStack(u64),
    /// The CPU did not finish its start-up within [`START_TIMEOUT_NS`] (the
    /// CPU's or the firmware's fault: a listed CPU that does not respond).
    /// It was sent INIT again, which parks it.
    NoResponse { apic_id: u32 },
}

/// The trampoline's data block, filled by `Smp::start_cpu` in the copy; the
/// assembly reads it at `page base + data offset + field offset`.
#[repr(C)]
struct TrampolineData {
    /// Operand of `lgdtl`: the limit in bits 0..16, the GDT's physical
    /// address in bits 16..48.
    gdtr: u64,
    /// Operand of the far jump to 32-bit code: the offset (a physical
    /// address) in bits 0..32, the selector in bits 32..48.
    far32: u64,
    /// The same, to 64-bit code.
    far64: u64,
    /// The temporary PML4 (below 1 MiB, so a 32-bit CR3 load reaches it).
    pml4: u64,
    /// The CR0 and EFER the new CPU loads (the boot CPU's, see `start_cpu`).
    cr0: u64,
    efer: u64,
    /// Arguments for `arch_x86_ap_long_mode`.
    kernel_root: u64,
    stack_top: u64,
    cpu: u64,
    entry: u64,
    cr4: u64,
    /// Where the 64-bit code jumps: `arch_x86_ap_long_mode`.
    long_mode: u64,
}

/// Selectors of the trampoline's GDT.
const TRAMPOLINE_CODE32: u64 = 0x08;
const TRAMPOLINE_CODE64: u64 = 0x18;
/// Bytes of the trampoline's GDT (four descriptors).
const TRAMPOLINE_GDT_SIZE: u64 = 4 * 8;

/// `global_asm!` in AT&T syntax with, after the given template and
/// operands, one operand per named field of [`TrampolineData`]: `{field}` is
/// that field's offset in the data block, so the assembly names each field
/// as the Rust struct does.
macro_rules! trampoline_asm {
    (data fields: $($field:ident)+; $($template_and_operands:tt)+) => {
        core::arch::global_asm!(
            $($template_and_operands)+
            $($field = const core::mem::offset_of!(TrampolineData, $field),)+
            options(att_syntax),
        );
    };
}

// The trampoline. It is assembled into read-only data, never run there: it
// is copied to the trampoline page, and every address it uses is relative
// to that page (see the module doc). AT&T syntax, for the mode-specific
// forms (`lgdtl`, `ljmpl *`).
trampoline_asm!(
    data fields: gdtr far32 far64 pml4 cr0 efer kernel_root stack_top cpu entry cr4 long_mode;
    ".pushsection .rodata.arch_x86_ap_trampoline, \"a\", @progbits",
    ".balign 16",
    ".global arch_x86_ap_trampoline",
    "arch_x86_ap_trampoline:",
    // Real mode, CS:IP = (page << 8):0, interrupts in any state.
    ".code16",
    "    cli",
    "    cld",
    "    movw %cs, %ax",
    "    movw %ax, %ds",
    // EBX = the page's physical base, kept through the mode switches.
    "    xorl %ebx, %ebx",
    "    movw %ax, %bx",
    "    shll $4, %ebx",
    "    lgdtl arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {gdtr}",
    "    movl %cr0, %eax",
    "    orl $1, %eax",
    "    movl %eax, %cr0",
    "    ljmpl *arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {far32}",
    // 32-bit protected mode, flat segments, paging off.
    ".code32",
    ".global arch_x86_ap_trampoline_code32",
    "arch_x86_ap_trampoline_code32:",
    "    movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movw %ax, %fs",
    "    movw %ax, %gs",
    "    movl %cr4, %eax",
    "    orl $0x20, %eax", // PAE
    "    movl %eax, %cr4",
    "    movl (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {pml4})(%ebx), %eax",
    "    movl %eax, %cr3",
    "    movl $0xc0000080, %ecx", // IA32_EFER: LME, NXE (before paging: the tables use NX)
    "    movl (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {efer})(%ebx), %eax",
    "    movl (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {efer} + 4)(%ebx), %edx",
    "    wrmsr",
    "    movl (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {cr0})(%ebx), %eax",
    "    movl %eax, %cr0", // PG: long mode (compatibility), on the identity-mapped page
    "    ljmpl *(arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {far64})(%ebx)",
    // 64-bit mode, still in the identity-mapped page. The upper half of
    // RBX is undefined after the switch: zero-extend.
    ".code64",
    ".global arch_x86_ap_trampoline_code64",
    "arch_x86_ap_trampoline_code64:",
    "    movl %ebx, %ebx",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {stack_top})(%rbx), %rsp",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {cpu})(%rbx), %rdi",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {entry})(%rbx), %rsi",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {cr4})(%rbx), %rdx",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {kernel_root})(%rbx), %rcx",
    "    movq (arch_x86_ap_trampoline_data - arch_x86_ap_trampoline + {long_mode})(%rbx), %rax",
    "    jmpq *%rax",
    // The GDT: null, 32-bit code, data (both flat 4 GiB), 64-bit code.
    ".balign 8",
    ".global arch_x86_ap_trampoline_gdt",
    "arch_x86_ap_trampoline_gdt:",
    "    .quad 0",
    "    .quad 0x00cf9a000000ffff",
    "    .quad 0x00cf92000000ffff",
    "    .quad 0x00af9a000000ffff",
    ".balign 8",
    ".global arch_x86_ap_trampoline_data",
    "arch_x86_ap_trampoline_data:",
    "    .skip {data_size}",
    ".global arch_x86_ap_trampoline_end",
    "arch_x86_ap_trampoline_end:",
    ".popsection",
    // In the kernel image: load the kernel root, then call into Rust with
    // RDI = cpu, RSI = entry, RDX = CR4 (the stack top is 16-aligned, so
    // the call leaves RSP = 8 mod 16, as the ABI wants).
    ".pushsection .text.arch_x86_ap_long_mode, \"ax\", @progbits",
    ".global arch_x86_ap_long_mode",
    "arch_x86_ap_long_mode:",
    "    movq %rcx, %cr3",
    "    xorl %ebp, %ebp",
    "    call {ap_main}",
    "    ud2",
    ".popsection",
    data_size = const core::mem::size_of::<TrampolineData>(),
    ap_main = sym ap_main,
);

extern "C" {
    static arch_x86_ap_trampoline: u8;
    static arch_x86_ap_trampoline_code32: u8;
    static arch_x86_ap_trampoline_code64: u8;
    static arch_x86_ap_trampoline_gdt: u8;
    static arch_x86_ap_trampoline_data: u8;
    static arch_x86_ap_trampoline_end: u8;
    fn arch_x86_ap_long_mode() -> !;
}

/// The offset of a trampoline label from the trampoline's start (the same
/// in the kernel image and in the copy).
fn trampoline_offset(label: *const u8) -> u64 {
    label as u64 - core::ptr::addr_of!(arch_x86_ap_trampoline) as u64
}

/// Hands this module the trampoline area: [`TRAMPOLINE_AREA_SIZE`] bytes of
/// RAM at `pa`, page-aligned, inside `[0x1000, 1 MiB)`. The boot path, once,
/// before the kernel starts CPUs.
///
/// # Safety
/// The area must be RAM that nothing else uses, now or later (the boot path
/// takes it from what the bootloader reported usable, and keeps it out of
/// the kernel's memory map), and be mapped by the direct map.
pub unsafe fn set_trampoline_area(pa: PhysAddr) -> Result<(), SmpError> {
    let start = pa.as_u64();
    if !pa.is_aligned(PAGE_SIZE) || start < PAGE_SIZE || start + TRAMPOLINE_AREA_SIZE > LOW_MEMORY_END {
        return Err(SmpError::BadTrampolineArea(pa));
    }
    TRAMPOLINE_AREA.store(start, Ordering::Release);
    Ok(())
}

/// Busy-waits `ns` nanoseconds.
fn delay_ns(ns: u64) {
    let start = X86_64::now_ns();
    while X86_64::now_ns() - start < ns {
        core::hint::spin_loop();
    }
}

/// A pointer to physical address `pa` through the direct map.
fn phys_ptr<T>(pa: u64) -> *mut T {
    (crate::phys_offset() + pa) as *mut T
}

/// Copies the trampoline into the area's first page, fills its data block
/// for this start, and builds the temporary page tables.
///
/// # Safety
/// `area` must be the trampoline area, and no CPU may be running in it.
unsafe fn prepare_trampoline(area: u64, data: TrampolineData) {
    let start = core::ptr::addr_of!(arch_x86_ap_trampoline);
    let len = trampoline_offset(core::ptr::addr_of!(arch_x86_ap_trampoline_end));
    let data_offset = trampoline_offset(core::ptr::addr_of!(arch_x86_ap_trampoline_data));
    assert!(len <= PAGE_SIZE, "smp: the trampoline ({len} bytes) does not fit in a page");
    let [page, pml4, pdpt, pd, pt] = core::array::from_fn(|i| area + i as u64 * PAGE_SIZE);
    let kernel_root = data.kernel_root;
    // SAFETY: (1) the area is ours alone and idle (the caller's contract),
    // and the direct map covers it; the copy fits in its first page
    // (asserted above). (2) The data block is 8-byte aligned in
    // the copy, since the page is and its offset is. (3) The kernel root is
    // a live PML4, read through the direct map.
    unsafe {
        core::ptr::copy_nonoverlapping(start, phys_ptr::<u8>(page), len as usize);
        phys_ptr::<TrampolineData>(page + data_offset).write(data);
        for table in [pml4, pdpt, pd, pt] {
            phys_ptr::<u64>(table).write_bytes(0, 512);
        }
        let pml4_entries = phys_ptr::<u64>(pml4);
        pml4_entries.write(pdpt | P | RW);
        for i in 256..512 {
            pml4_entries.add(i).write(phys_ptr::<u64>(kernel_root).add(i).read());
        }
        phys_ptr::<u64>(pdpt).write(pd | P | RW);
        phys_ptr::<u64>(pd).write(pt | P | RW);
        phys_ptr::<u64>(pt).add((page / PAGE_SIZE) as usize).write(page | P | RW);
    }
    // The new CPU reads all this from memory after the IPIs, which are
    // stores to the APIC (uncached): x86 keeps stores in order; the fence
    // keeps the compiler from moving them past.
    core::sync::atomic::fence(Ordering::SeqCst);
}

impl Smp for X86_64 {
    type SmpError = SmpError;

    /// Starts the CPU whose local APIC id is `arch_id` as kernel CPU `cpu`: it
    /// comes up in 64-bit mode on the kernel's page tables (the current CR3),
    /// on the stack ending at `stack_top`, with interrupts disabled, its own
    /// GDT, TSS and IST stacks, the shared IDT, NX and write protection on, its
    /// local APIC enabled and its index set (`cpu_index() == cpu`), and calls
    /// `entry(cpu)`. `start_cpu` returns once the CPU has done all that but the
    /// call: the next CPU may be started. Whether it then comes online is for
    /// the kernel to see.
    ///
    /// Boot CPU, after [`crate::init`], `irq::init_boot_cpu` and
    /// [`set_trampoline_area`]; calls are serialised.
    ///
    /// # Safety
    /// 1. `arch_id` must not name a CPU that runs anything (INIT resets it);
    ///    the boot CPU and CPUs started here are refused.
    /// 2. `stack_top` must end a writable stack big enough for `entry` (the
    ///    kernel gives 32 KiB), mapped in the kernel half of every address
    ///    space, owned by the new CPU from now on (if `Ok` is returned).
    /// 3. `entry` must be fit to run on the new CPU with interrupts disabled.
    ///
    /// # Panics
    /// When called before the boot CPU's own set-up (IDT, local APIC): a
    /// kernel bug.
    unsafe fn start_cpu(start: CpuStart) -> Result<(), SmpError> {
        let CpuStart { arch_id, cpu, stack_top, entry } = start;
        assert!(trap::initialised() && irq::initialised(), "smp::start_cpu: the boot CPU is not set up");
        let _guard = START_LOCK.lock();
        let area = TRAMPOLINE_AREA.load(Ordering::Acquire);
        if area == 0 {
            return Err(SmpError::NoTrampoline);
        }
        let Ok(apic_id) = u32::try_from(arch_id) else { return Err(SmpError::BadApicId(arch_id)) };
        if apic_id >= 0xff || irq::cpu_of_apic_id(apic_id).is_some() {
            return Err(SmpError::BadApicId(arch_id));
        }
        if !stack_top.is_multiple_of(16) || stack_top < KERNEL_HALF_START {
            return Err(SmpError::BadStack(stack_top));
        }
        if cpu == 0 || cpu >= MAX_CPUS || INDEX_USED[cpu].swap(true, Ordering::Relaxed) {
            return Err(SmpError::BadCpuIndex(cpu));
        }

        let gdt = area + trampoline_offset(core::ptr::addr_of!(arch_x86_ap_trampoline_gdt));
        let code32 = area + trampoline_offset(core::ptr::addr_of!(arch_x86_ap_trampoline_code32));
        let code64 = area + trampoline_offset(core::ptr::addr_of!(arch_x86_ap_trampoline_code64));
        let data = TrampolineData {
            gdtr: (TRAMPOLINE_GDT_SIZE - 1) | gdt << 16,
            far32: code32 | TRAMPOLINE_CODE32 << 32,
            far64: code64 | TRAMPOLINE_CODE64 << 32,
            pml4: area + PAGE_SIZE,
            // The boot CPU's control registers, so that both run the same way
            // (write protection, caches on: after INIT, CR0 has CD and NW set).
            cr0: (Cr0::read_raw() | (Cr0Flags::PROTECTED_MODE_ENABLE | Cr0Flags::PAGING).bits())
                & !(Cr0Flags::CACHE_DISABLE | Cr0Flags::NOT_WRITE_THROUGH).bits(),
            // Long mode enabled (not yet active: the CPU sets LMA itself) and NX.
            efer: (Efer::read_raw() | (EferFlags::LONG_MODE_ENABLE | EferFlags::NO_EXECUTE_ENABLE).bits())
                & !EferFlags::LONG_MODE_ACTIVE.bits(),
            kernel_root: crate::mmu::current_root().as_u64(),
            stack_top,
            cpu: cpu as u64,
            entry: entry as usize as u64,
            cr4: Cr4::read_raw(),
            long_mode: arch_x86_ap_long_mode as *const () as u64,
        };
        // Recorded before the CPU can run, so that once it is online any CPU
        // can send it IPIs.
        irq::set_cpu_apic_id(cpu, Some(apic_id));
        HANDSHAKE.store(WAITING, Ordering::Release);
        // INIT first: whatever the firmware left the CPU doing, it now waits for
        // a SIPI and runs nothing, in the area or elsewhere.
        let init_sent = X86_64::now_ns();
        irq::send_init(apic_id);
        // SAFETY: the area is the trampoline area (set by the boot path under
        // its contract), and no CPU runs in it: every earlier start either
        // claimed the handshake (done with the area) or was parked by INIT,
        // and this one is waiting for its SIPI.
        unsafe { prepare_trampoline(area, data) };
        let page = (area / PAGE_SIZE) as u8; // below 1 MiB: fits
        delay_ns(INIT_DELAY_NS.saturating_sub(X86_64::now_ns() - init_sent));
        irq::send_startup(apic_id, page);
        delay_ns(SIPI_DELAY_NS);
        irq::send_startup(apic_id, page);

        let start = X86_64::now_ns();
        while X86_64::now_ns() - start < START_TIMEOUT_NS {
            if HANDSHAKE.load(Ordering::Acquire) == cpu {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        match HANDSHAKE.compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // Park the CPU wherever it got to, and give the INIT time to
                // land before anyone rewrites the area.
                irq::send_init(apic_id);
                delay_ns(INIT_DELAY_NS);
                irq::set_cpu_apic_id(cpu, None);
                Err(SmpError::NoResponse { apic_id })
            }
            // The CPU claimed the handshake just in time.
            Err(_) => Ok(()),
        }
    }
}

/// A started CPU's first Rust code, called by `arch_x86_ap_long_mode` on
/// the kernel root and the CPU's own stack, interrupts disabled.
extern "C" fn ap_main(cpu: usize, entry: TaskEntry, cr4: u64) -> ! {
    // SAFETY: the boot CPU's CR4 (the same kind of CPU, in the same mode:
    // long mode, CR3 with no PCID bits), so every bit set there is valid
    // here; it changes no mapping.
    unsafe { Cr4::write_raw(cr4) };
    // The GDT first: it loads a null GS, then points the GS base at the
    // CPU's `PerCpu` (`set_index`).
    gdt::init_this_cpu(cpu);
    crate::cpu::set_index(cpu);
    trap::load_this_cpu();
    crate::user::init_this_cpu();
    irq::init_this_cpu();
    if HANDSHAKE.compare_exchange(WAITING, cpu, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // The boot CPU gave up on us (and is sending INIT).
        X86_64::halt_forever();
    }
    entry(cpu)
}
