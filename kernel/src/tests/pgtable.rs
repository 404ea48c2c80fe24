//! In-guest tests moved from memory/paging.rs.

use crate::arch::prelude::*;
use crate::arch::probe::RETURN_MAGIC;
use crate::memory;
use crate::memory::paging::*;
use crate::tests::kit::*;
use crate::tests::{Test, TestEnv};
use alloc::format;
use alloc::string::String;
use mm::fault::{Access, FaultCause};
use mm::pgtable::SwapType;
use mm::pgtable::{
    Decoded, Leaf, Level, MigrationEntry, MigrationKind, NonPresent, PageSize, Prot, SwapEntry,
};
use mm::{PhysAddr, VirtAddr};

fn expect_fault(
    what: &str,
    result: Result<u64, mm::fault::MemFault>,
    va: u64,
    access: Access,
    cause: FaultCause,
) -> Result<(), String> {
    match result {
        Ok(v) => Err(format!("{what} at {va:#x} did not fault (got {v:#x})")),
        Err(f) if f.addr.as_u64() == va && f.access == access && f.cause == cause => Ok(()),
        Err(f) => Err(format!("{what} at {va:#x}: expected {access:?} {cause:?}, got {f:?}")),
    }
}

fn map_4k_and_2m_through_the_mmu(_: &TestEnv<'_>) -> Result<(), String> {
    let small = Frames::new(0)?;
    let huge = Frames::new(9)?;
    let space = TestSpace::new()?;
    let (va4k, va2m) = (TEST_VA, TEST_VA + 0x20_0000);
    let t = &space.table;
    t.map(&KernelTables, VirtAddr::new(va4k), leaf(small.pa, PageSize::Size4K, RW_KERNEL))
        .map_err(|e| format!("map 4K: {e}"))?
        .ignore(); // nothing was mapped before
    t.map(&KernelTables, VirtAddr::new(va2m), leaf(huge.pa, PageSize::Size2M, RW_KERNEL))
        .map_err(|e| format!("map 2M: {e}"))?
        .ignore();
    // The 2 MiB mapping is one PMD leaf, wherever inside it we look.
    for off in [0, 0x1000, 0x1f_f000] {
        match t.lookup(&KernelTables, VirtAddr::new(va2m + off)) {
            (Level::Pmd, Decoded::Leaf(l)) if l.size == PageSize::Size2M && l.frame == huge.pa => {}
            other => return Err(format!("2M mapping at +{off:#x} is {other:?}")),
        }
    }
    let result = (|| {
        let _active = space.activate();
        // Stores through the MMU land in the expected frames...
        probe_write(va4k + 0x123, 0xa1)?;
        for (i, off) in [0u64, 0x1000, 0x12_3457, 0x1f_ffff].into_iter().enumerate() {
            probe_write(va2m + off, 0xb0 + i as u8)?;
        }
        // ...and what the kernel writes into the frames is what loads see.
        small.write(0x800, 0x5c);
        huge.write(0x10_0000, 0x6d);
        let seen = (probe_read(va4k + 0x800)?, probe_read(va2m + 0x10_0000)?);
        if seen != (0x5c, 0x6d) {
            return Err(format!("loads through the MMU saw {seen:x?}, expected (5c, 6d)"));
        }
        Ok(())
    })();
    if small.read(0x123) != 0xa1 {
        return Err(format!("4K store landed elsewhere: frame byte is {:#x}", small.read(0x123)));
    }
    for (i, off) in [0u64, 0x1000, 0x12_3457, 0x1f_ffff].into_iter().enumerate() {
        if huge.read(off) != 0xb0 + i as u8 {
            return Err(format!("2M store at +{off:#x} landed elsewhere"));
        }
    }
    space.destroy();
    result
}

fn unmap_then_fault_at_the_address(_: &TestEnv<'_>) -> Result<(), String> {
    let frame = Frames::new(0)?;
    let space = TestSpace::new()?;
    let va = TEST_VA + 0x5000;
    space.map_leaf(va, frame.pa, PageSize::Size4K, RW_KERNEL)?;
    let result = (|| {
        let _active = space.activate();
        probe_write(va + 0x10, 1)?; // now cached in the TLB
        let (_, flush) = space
            .table
            .unmap(&KernelTables, VirtAddr::new(va), PageSize::Size4K)
            .map_err(|e| format!("{e}"))?;
        flush.flush(&Arch::TLB);
        expect_fault(
            "read after unmap",
            Arch::probe_read_u8(VirtAddr::new(va + 0x10)).map(u64::from),
            va + 0x10,
            Access::Read,
            FaultCause::NotMapped,
        )?;
        // SAFETY: nothing is mapped there any more: the store can only fault.
        let w = unsafe { Arch::probe_write_u8(VirtAddr::new(va + 0xff8), 2) };
        expect_fault("write after unmap", w.map(|_| 0), va + 0xff8, Access::Write, FaultCause::NotMapped)
    })();
    space.destroy();
    result
}

fn read_only_write_faults(_: &TestEnv<'_>) -> Result<(), String> {
    let frame = Frames::new(0)?;
    frame.write(0x40, 0x77);
    let space = TestSpace::new()?;
    let va = TEST_VA + 0x7000;
    let ro = Prot { writable: false, ..RW_KERNEL };
    space.map_leaf(va, frame.pa, PageSize::Size4K, ro)?;
    let result = (|| {
        let _active = space.activate();
        if probe_read(va + 0x40)? != 0x77 {
            return Err("read-only page reads wrong data".into());
        }
        // SAFETY: the page is read-only, so the store can only fault.
        let w = unsafe { Arch::probe_write_u8(VirtAddr::new(va + 0x40), 0) };
        expect_fault("write to read-only", w.map(|_| 0), va + 0x40, Access::Write, FaultCause::Protection)?;
        // Granting write turns the same store into a success.
        let flush = space
            .table
            .protect(&KernelTables, VirtAddr::new(va), VirtAddr::new(va + 0x1000), RW_KERNEL)
            .map_err(|e| format!("{e}"))?;
        flush.flush(&Arch::TLB);
        probe_write(va + 0x40, 0x78)
    })();
    space.destroy();
    if frame.read(0x40) != 0x78 {
        return Err(format!("write after mprotect did not land ({:#x})", frame.read(0x40)));
    }
    result
}

fn no_execute_faults(_: &TestEnv<'_>) -> Result<(), String> {
    // A function that returns RETURN_MAGIC in the probe's registers.
    let code = Arch::RETURN_MAGIC_CODE;
    let frame = Frames::new(0)?;
    for (i, b) in code.iter().enumerate() {
        frame.write(i as u64, *b);
    }
    Arch::code_written(memory::phys_to_virt(frame.pa), code.len() as u64);
    let space = TestSpace::new()?;
    let (x_va, nx_va) = (TEST_VA + 0x10_0000, TEST_VA + 0x20_0000);
    // Kernel mappings: the kernel executes nothing that user mode may write.
    let rx = Prot { writable: false, user: false, executable: true, global: false };
    let r = Prot { executable: false, ..rx };
    for (va, prot) in [(x_va, rx), (nx_va, r)] {
        space.map_leaf(va, frame.pa, PageSize::Size4K, prot)?;
    }
    let result = (|| {
        let _active = space.activate();
        // SAFETY: the page holds `Arch::RETURN_MAGIC_CODE`, a function of the
        // probe's contract.
        let ran = unsafe { Arch::probe_exec(VirtAddr::new(x_va)) };
        if ran != Ok(RETURN_MAGIC) {
            return Err(format!("executable page: {ran:?}"));
        }
        // SAFETY: the page is mapped no-execute: the fetch can only fault.
        let nx = unsafe { Arch::probe_exec(VirtAddr::new(nx_va)) };
        expect_fault("fetch from no-execute page", nx, nx_va, Access::Execute, FaultCause::Protection)?;
        // SAFETY: nothing is mapped there: the fetch can only fault.
        let unmapped = unsafe { Arch::probe_exec(VirtAddr::new(nx_va + 0x1000)) };
        expect_fault(
            "fetch from unmapped page",
            unmapped,
            nx_va + 0x1000,
            Access::Execute,
            FaultCause::NotMapped,
        )
    })();
    space.destroy();
    result
}

fn remap_sees_the_new_frame(_: &TestEnv<'_>) -> Result<(), String> {
    let frames = [Frames::new(0)?, Frames::new(0)?, Frames::new(0)?];
    for (i, f) in frames.iter().enumerate() {
        for off in (0..4096).step_by(512) {
            f.write(off, 0x10 * (i as u8 + 1));
        }
    }
    let space = TestSpace::new()?;
    let va = TEST_VA + 0x3000;
    space.map_leaf(va, frames[0].pa, PageSize::Size4K, RW_KERNEL)?;
    let result = (|| {
        let _active = space.activate();
        for round in 0..30 {
            let i = round % 3;
            if round > 0 {
                space
                    .table
                    .remap(
                        &KernelTables,
                        &Arch::TLB,
                        VirtAddr::new(va),
                        leaf(frames[i].pa, PageSize::Size4K, RW_KERNEL),
                    )
                    .map_err(|e| format!("{e}"))?;
            }
            for off in (0..4096).step_by(512) {
                let got = probe_read(va + off)?;
                if got != 0x10 * (i as u8 + 1) {
                    return Err(format!(
                        "round {round}: read {got:#x} at +{off:#x}: a stale translation survived the remap"
                    ));
                }
            }
        }
        Ok(())
    })();
    space.destroy();
    result
}

fn swap_and_migration_entries_fault(_: &TestEnv<'_>) -> Result<(), String> {
    // Real non-present encodings in a live table: the MMU must treat every
    // one as not present, at PTE and at PMD level, whatever frame number
    // a migration entry carries (seed 001: never taken for a mapping).
    let target = Frames::new(9)?;
    let space = TestSpace::new()?;
    let swap = SwapEntry::new(SwapType::nth(1), 0x2a).map_err(|e| format!("{e:?}"))?;
    let migration =
        MigrationEntry { kind: MigrationKind::Write, pfn: target.pa.pfn(), young: true, dirty: true };
    let entries = [
        (TEST_VA + 0x1000, Level::Pte, NonPresent::Swap { entry: swap, exclusive: true }),
        (TEST_VA + 0x2000, Level::Pte, NonPresent::Migration(migration)),
        (TEST_VA + 0x40_0000, Level::Pmd, NonPresent::Migration(migration)),
        (TEST_VA + 0x60_0000, Level::Pmd, NonPresent::Swap { entry: swap, exclusive: false }),
    ];
    for (va, level, entry) in entries {
        let (old, flush) = space
            .table
            .set_nonpresent(&KernelTables, VirtAddr::new(va), level, entry)
            .map_err(|e| format!("{e}"))?;
        flush.ignore(); // the space is not loaded yet
        if old != Decoded::None {
            return Err(format!("{va:#x} held {old:?}"));
        }
        match space.table.lookup(&KernelTables, VirtAddr::new(va)) {
            (l, Decoded::NonPresent(np)) if l == level && np == entry => {}
            other => return Err(format!("{va:#x} reads back as {other:?}")),
        }
    }
    let result = (|| {
        let _active = space.activate();
        for (va, _, _) in entries {
            let probe = va + 0x18;
            expect_fault(
                "read of a non-present entry",
                Arch::probe_read_u8(VirtAddr::new(probe)).map(u64::from),
                probe,
                Access::Read,
                FaultCause::NotMapped,
            )?;
        }
        Ok(())
    })();
    space.destroy();
    result
}

fn split_pmd_keeps_data(_: &TestEnv<'_>) -> Result<(), String> {
    let huge = Frames::new(9)?;
    for page in 0..512u64 {
        huge.write(page * 4096 + 7, page as u8 ^ 0x5a);
    }
    let space = TestSpace::new()?;
    let va = TEST_VA + 0x80_0000;
    space.map_leaf(va, huge.pa, PageSize::Size2M, RW_KERNEL)?;
    let result = (|| {
        let _active = space.activate();
        probe_read(va + 7)?; // cache the 2 MiB translation
        space
            .table
            .split_pmd(&KernelTables, &Arch::TLB, VirtAddr::new(va))
            .map_err(|e| format!("split: {e}"))?;
        for page in 0..512u64 {
            let at = va + page * 4096;
            match space.table.lookup(&KernelTables, VirtAddr::new(at)) {
                (Level::Pte, Decoded::Leaf(l)) if l.frame.as_u64() == huge.pa.as_u64() + page * 4096 => {}
                other => return Err(format!("page {page} after split: {other:?}")),
            }
            let got = probe_read(at + 7)?;
            if got != page as u8 ^ 0x5a {
                return Err(format!("page {page} reads {got:#x} after the split"));
            }
        }
        Ok(())
    })();
    space.destroy();
    result
}

fn ptdump_shows_the_tree(_: &TestEnv<'_>) -> Result<(), String> {
    let small = Frames::new(0)?;
    let huge = Frames::new(9)?;
    let space = TestSpace::new()?;
    let t = &space.table;
    let ro_x = Prot { writable: false, user: true, executable: true, global: false };
    for i in 0..3 {
        let l = leaf(PhysAddr::new(small.pa.as_u64()), PageSize::Size4K, RW_USER);
        let l = if i == 2 { Leaf { prot: ro_x, ..l } } else { l };
        t.map(&KernelTables, VirtAddr::new(TEST_VA + i * 0x1000), l).map_err(|e| format!("{e}"))?.ignore();
    }
    t.map(&KernelTables, VirtAddr::new(TEST_VA + 0x20_0000), leaf(huge.pa, PageSize::Size2M, RW_USER))
        .map_err(|e| format!("{e}"))?
        .ignore();
    let swap = SwapEntry::new(SwapType::nth(3), 0x77).map_err(|e| format!("{e:?}"))?;
    t.set_nonpresent(
        &KernelTables,
        VirtAddr::new(TEST_VA + 0x5000),
        Level::Pte,
        NonPresent::Swap { entry: swap, exclusive: true },
    )
    .map_err(|e| format!("{e}"))?
    .1
    .ignore();
    let mut out = String::new();
    let lines = mm::ptdump::dump(
        t,
        &KernelTables,
        VirtAddr::new(TEST_VA),
        VirtAddr::new(TEST_VA + 0x40_0000),
        &mut out,
    )
    .map_err(|_| String::from("ptdump failed to format"))?;
    space.destroy();
    let expect = [
        format!("{:#018x}-{:#018x} PTE 4K   x1    rw- u D A -> ", TEST_VA, TEST_VA + 0x1000),
        format!("{:#018x}-{:#018x} PTE 4K   x1    rw- u D A -> ", TEST_VA + 0x1000, TEST_VA + 0x2000),
        format!("{:#018x}-{:#018x} PTE 4K   x1    r-x u D A -> ", TEST_VA + 0x2000, TEST_VA + 0x3000),
        format!("{:#018x}-{:#018x} PTE 4K   x1    swap 3:0x77 exclusive", TEST_VA + 0x5000, TEST_VA + 0x6000),
        format!("{:#018x}-{:#018x} PMD 2M   x1    rw- u D A -> ", TEST_VA + 0x20_0000, TEST_VA + 0x40_0000),
    ];
    if lines != expect.len() {
        return Err(format!("ptdump printed {lines} lines, expected {}:\n{out}", expect.len()));
    }
    for (line, want) in out.lines().zip(expect.iter()) {
        if !line.starts_with(want.as_str()) {
            return Err(format!("ptdump line `{line}` does not start with `{want}`"));
        }
    }
    Ok(())
}

fn address_space_follows_its_task(_: &TestEnv<'_>) -> Result<(), String> {
    // Two tasks, two address spaces mapping the same address to different
    // frames; while the tasks yield and get preempted, each must always see
    // its own frame: the scheduler reloads CR3 / TTBR0 on every switch.
    let va = TEST_VA + 0x9000;
    let mut handles = alloc::vec::Vec::new();
    for marker in [0xa1u8, 0xb2] {
        let frame = Frames::new(0)?;
        for off in (0..4096).step_by(256) {
            frame.write(off, marker);
        }
        let space = TestSpace::new()?;
        space.map_leaf(va, frame.pa, PageSize::Size4K, RW_KERNEL)?;
        let task = crate::task::sched::spawn("in-space", move || {
            let result = (|| {
                let _active = space.activate();
                for round in 0..300u64 {
                    let got = probe_read(va + (round * 256) % 4096)?;
                    if got != marker {
                        return Err(format!("task {marker:#x} read {got:#x} in round {round}"));
                    }
                    if round % 7 == 0 {
                        crate::task::sched::yield_now();
                    }
                }
                Ok(())
            })();
            space.destroy();
            drop(frame);
            result
        })
        .map_err(|e| format!("spawn: {e:?}"))?;
        handles.push(task);
    }
    for h in handles {
        h.join()??;
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["pgtable": map_4k_and_2m_through_the_mmu, unmap_then_fault_at_the_address, read_only_write_faults, no_execute_faults, remap_sees_the_new_frame, swap_and_migration_entries_fault, split_pmd_keeps_data, ptdump_shows_the_tree, address_space_follows_its_task];
