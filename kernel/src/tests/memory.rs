//! In-guest tests moved from memory/mod.rs.

use crate::memory::*;
use crate::tests::{Test, TestEnv};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mm::frame::{AllocKind, MAX_ORDER};
use mm::{PhysAddr, PAGE_SIZE};

fn box_vec_and_reuse(_: &TestEnv<'_>) -> Result<(), String> {
    let before = heap_used();
    let b = Box::new(0x1234_5678_u64);
    let mut v: Vec<u32> = Vec::new();
    for i in 0..10_000 {
        v.push(i * 3);
    }
    if *b != 0x1234_5678 || v.iter().enumerate().any(|(i, &x)| x != i as u32 * 3) {
        return Err("heap data changed under us".into());
    }
    // A large block, written and read in full.
    let mut big = alloc::vec![0u8; 1 << 20];
    for (i, byte) in big.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    if big.iter().enumerate().any(|(i, &x)| x != (i % 251) as u8) {
        return Err("1 MiB heap block did not keep its contents".into());
    }
    drop((b, v, big));
    let after = heap_used();
    if after != before {
        return Err(format!("heap use went from {before} to {after} bytes after freeing everything"));
    }
    Ok(())
}

fn exhaustion_is_an_error(_: &TestEnv<'_>) -> Result<(), String> {
    // More than the whole of RAM (the heap grows from it): must fail as a
    // result, not a crash.
    let ram = boot_memory().ok_or("no boot memory map")?.total_bytes() as usize;
    let mut v: Vec<u8> = Vec::new();
    match v.try_reserve_exact(ram * 2) {
        Err(_) => {}
        Ok(()) => return Err("reserving twice the RAM succeeded".into()),
    }
    // And the heap still works afterwards.
    let ok: Vec<u64> = (0..100).collect();
    if ok.iter().sum::<u64>() != 4950 {
        return Err("heap broken after a failed allocation".into());
    }
    Ok(())
}

/// Fails (ends the kernel) with a fixed heap: allocates half as much again
/// as the boot region in small blocks and one large one, checks every
/// byte, frees it all, and finds the heap's growth given back.
fn grows_past_the_boot_region_and_shrinks(_: &TestEnv<'_>) -> Result<(), String> {
    let (used0, grown0) = (heap_used(), heap::grown_frames());
    let frames0 = nr_free_frames();
    let n = (BOOT_HEAP_SIZE as usize * 3 / 2) / 512;
    let mut small: Vec<Box<[u64; 64]>> = Vec::new();
    small.try_reserve_exact(n).map_err(|e| format!("reserve {n} boxes: {e}"))?;
    for i in 0..n {
        small.push(Box::new([i as u64; 64]));
    }
    let mut big: Vec<u8> = Vec::new();
    big.try_reserve_exact(4 << 20).map_err(|e| format!("a 4 MiB block: {e}"))?;
    big.resize(4 << 20, 0xa5);
    let grown = heap::grown_frames() - grown0;
    if grown == 0 {
        return Err(format!("{} MiB in use and the heap did not grow", (heap_used() - used0) >> 20));
    }
    if let Some(i) = small.iter().enumerate().position(|(i, b)| b.iter().any(|&w| w != i as u64)) {
        return Err(format!("box {i} lost its contents"));
    }
    if big.iter().any(|&b| b != 0xa5) {
        return Err("the 4 MiB block lost its contents".into());
    }
    drop((small, big));
    heap::trim();
    if heap::grown_frames() != grown0 || heap_used() != used0 || nr_free_frames() != frames0 {
        return Err(format!(
            "after freeing: heap {} bytes used (was {used0}), {} frames grown (was {grown0}, {grown} at most), \
             {} frames free (was {frames0})",
            heap_used(),
            heap::grown_frames(),
            nr_free_frames()
        ));
    }
    Ok(())
}

fn frames_are_usable_ram(_: &TestEnv<'_>) -> Result<(), String> {
    let map = boot_memory().ok_or("no boot memory map")?;
    let free_before = nr_free_frames();
    let mut frames = Vec::new();
    for _ in 0..64 {
        let f = alloc_frames(0).map_err(|e| format!("frame allocator failed: {e:?}"))?;
        if !f.is_aligned(PAGE_SIZE) {
            return Err(format!("frame {f} is not page-aligned"));
        }
        if !map.ranges().iter().any(|r| r.contains(f)) {
            return Err(format!("frame {f} is not in usable memory {map:?}"));
        }
        if frames.contains(&f) {
            return Err(format!("frame {f} handed out twice"));
        }
        frames.push(f);
    }
    // Fill each frame through the direct map with its own pattern, then
    // check them all: distinct frames, really RAM, really mapped.
    for (i, f) in frames.iter().enumerate() {
        let p = phys_to_virt(*f).as_u64() as *mut u64;
        for w in 0..(PAGE_SIZE / 8) as usize {
            // SAFETY: the frame is ours (just allocated), mapped read-write
            // in the direct map, and `w` stays within its 512 words.
            unsafe { p.add(w).write_volatile(((i as u64) << 32) | w as u64) };
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let p = phys_to_virt(*f).as_u64() as *const u64;
        for w in 0..(PAGE_SIZE / 8) as usize {
            // SAFETY: as above, reading back what we wrote.
            let got = unsafe { p.add(w).read_volatile() };
            if got != ((i as u64) << 32) | w as u64 {
                return Err(format!("frame {f} word {w}: read {got:#x}"));
            }
        }
    }
    let used = free_before - nr_free_frames();
    for f in frames {
        free_frames(f, 0);
    }
    if used != 64 {
        return Err(format!("64 frames allocated but the free count fell by {used}"));
    }
    Ok(())
}

fn every_order_drains_and_refills(_: &TestEnv<'_>) -> Result<(), String> {
    // Take *all* memory at each order (reserve included), give it back, and
    // find the allocator exactly as it was.
    let frames = frame_allocator();
    let start: Vec<u64> = (0..=MAX_ORDER).map(|o| frames.nr_free_blocks(o)).collect();
    let free_before = frames.nr_free_pages();
    for order in 0..=MAX_ORDER {
        let mut blocks = Vec::new();
        // Interrupts off around each call, as for every allocator call
        // (see `crate::sync`).
        let alloc = || crate::sync::without_interrupts(|| frames.alloc(order, AllocKind::Reserve));
        while let Ok(pfn) = alloc() {
            blocks.push(pfn);
        }
        let left = frames.nr_free_pages();
        if left >= 1 << order {
            // Fragmentation may leave free pages, but never a free block of
            // this order or larger.
            if (order..=MAX_ORDER).any(|o| frames.nr_free_blocks(o) > 0) {
                return Err(format!("order {order}: allocation failed with blocks of that order free"));
            }
        }
        if order == 0 && left != 0 {
            return Err(format!("order 0: {left} pages left free after draining"));
        }
        for pfn in blocks.drain(..) {
            crate::sync::without_interrupts(|| frames.free(pfn, order));
        }
        if frames.nr_free_pages() != free_before {
            return Err(format!(
                "order {order}: {} pages free after refilling, {free_before} before",
                frames.nr_free_pages()
            ));
        }
        crate::sync::without_interrupts(|| frames.check_consistency())
            .map_err(|e| format!("order {order}: {e}"))?;
    }
    let end: Vec<u64> = (0..=MAX_ORDER).map(|o| frames.nr_free_blocks(o)).collect();
    if start != end {
        return Err(format!("free blocks per order {start:?} before, {end:?} after"));
    }
    Ok(())
}

fn huge_frames_are_aligned_and_distinct(_: &TestEnv<'_>) -> Result<(), String> {
    let mut blocks = Vec::new();
    for _ in 0..8 {
        let pa = alloc_frames(9).map_err(|e| format!("order 9: {e:?}"))?;
        if !pa.is_aligned(2 * 1024 * 1024) {
            return Err(format!("order-9 block at {pa} is not 2 MiB aligned"));
        }
        blocks.push(pa);
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    let overlap = sorted.windows(2).any(|w| w[1].as_u64() - w[0].as_u64() < 2 * 1024 * 1024);
    for pa in blocks {
        free_frames(pa, 9);
    }
    if overlap {
        return Err(format!("order-9 blocks overlap: {sorted:?}"));
    }
    Ok(())
}

fn concurrent_alloc_from_every_cpu(env: &TestEnv<'_>) -> Result<(), String> {
    // A task pinned to every CPU allocates and frees blocks of random
    // orders, stamping each block it owns and checking the stamp before it
    // frees it: a block handed to two CPUs at once shows up as a wrong stamp.
    // The orders and choices come from `seed=` (one stream per CPU).
    let seed = crate::tests::kit::test_seed(env, "frame::concurrent_alloc_from_every_cpu", 0x9e37_79b9)?;
    let before = nr_free_frames();
    let handles: Result<Vec<_>, _> = crate::task::sched::online_cpus()
        .map(|cpu| {
            crate::task::sched::spawn_on(cpu, "allocator", move || -> Result<(), String> {
                let mut rng = mm::rng::SplitMix64::new(seed, cpu as u64);
                let mut held: Vec<(PhysAddr, u8, u64)> = Vec::new();
                for round in 0..3000u64 {
                    let seed = rng.next_u64();
                    if held.len() < 48 && !seed.is_multiple_of(3) {
                        let order = (seed >> 8) as u8 % 5;
                        let Ok(pa) = alloc_frames(order) else { continue };
                        let stamp = (cpu as u64) << 48 | round;
                        // SAFETY: the block is ours until we free it; RAM in the direct map.
                        unsafe { (phys_to_virt(pa).as_u64() as *mut u64).write_volatile(stamp) };
                        held.push((pa, order, stamp));
                    } else if !held.is_empty() {
                        let (pa, order, stamp) = held.swap_remove((seed >> 16) as usize % held.len());
                        // SAFETY: as above.
                        let seen = unsafe { (phys_to_virt(pa).as_u64() as *const u64).read_volatile() };
                        if seen != stamp {
                            return Err(format!(
                                "CPU {cpu}: block {pa} holds {seen:#x}, not its stamp {stamp:#x}"
                            ));
                        }
                        free_frames(pa, order);
                    }
                }
                for (pa, order, _) in held {
                    free_frames(pa, order);
                }
                Ok(())
            })
        })
        .collect();
    for h in handles.map_err(|e| format!("spawn_on: {e:?}"))? {
        h.join()??;
    }
    crate::sync::without_interrupts(|| frame_allocator().check_consistency()).map_err(|e| format!("{e}"))?;
    let after = nr_free_frames();
    if after != before {
        return Err(format!("{before} frames free before, {after} after"));
    }
    Ok(())
}

/// The allocator's read-only queries hold its lock with interrupts off too
/// (`mm::frame`, "Lock"). Two tasks share CPU 0 for two seconds: one asks
/// how much is free, as kswapd does between its rounds, the other
/// allocates and frees (with interrupts off, as every allocation does).
/// A query that held the lock with interrupts on was preempted by the tick
/// now and then, and the allocator then spun with interrupts off for ever:
/// the whole CPU stopped, with nothing on the console (the hang of
/// `swap::fill_more_than_ram`, kswapd against the faulting task). Here the
/// test would never end and the run would fail at its time limit.
fn a_query_preempted_by_the_tick_stalls_no_allocator(_: &TestEnv<'_>) -> Result<(), String> {
    use crate::task::sched;
    let until = sched::ticks() + 2 * u64::from(sched::TICK_HZ);
    let querier = sched::spawn_on(0, "frame-query", move || {
        let (mut rounds, mut sum) = (0u64, 0u64);
        while sched::ticks() < until {
            let fa = frame_allocator();
            sum = sum.wrapping_add(fa.nr_free_pages()).wrapping_add(fa.nr_free_blocks(0));
            rounds += 1;
        }
        (rounds, sum)
    })
    .map_err(|e| format!("spawn_on: {e:?}"))?;
    let allocator = sched::spawn_on(0, "frame-alloc", move || -> Result<u64, String> {
        let mut rounds = 0u64;
        while sched::ticks() < until {
            let pa = alloc_frames(0).map_err(|e| format!("no frame: {e:?}"))?;
            free_frames(pa, 0);
            rounds += 1;
        }
        Ok(rounds)
    })
    .map_err(|e| format!("spawn_on: {e:?}"))?;
    let (queries, _) = querier.join()?;
    let allocs = allocator.join()??;
    // Both ran, taking turns on the CPU.
    if queries == 0 || allocs == 0 {
        return Err(format!("{queries} queries and {allocs} allocations in two seconds"));
    }
    Ok(())
}

fn task_stacks_start_zeroed(_env: &TestEnv<'_>) -> Result<(), String> {
    // "Kernel memory is zeroed when taken" (memory's module doc): a stack
    // that kept old bytes could also keep stale translated code under TCG,
    // which made every fault after a UEFI boot 50 times slower. Dirty
    // blocks of a stack's size and give them back, so that the next
    // stacks are made of them; a task then checks a part of its stack far
    // below anything it has used (the buddy block is aligned to its size).
    use crate::memory::stacks::STACK_ORDER;
    const DIRTY: usize = 8;
    let bytes = (PAGE_SIZE << STACK_ORDER) as usize;
    let mut blocks = Vec::new();
    for _ in 0..DIRTY {
        let pa = alloc_frames(STACK_ORDER).map_err(|e| format!("order {STACK_ORDER}: {e:?}"))?;
        // SAFETY: the block was just allocated for this test and is RAM,
        // mapped read-write in the direct map.
        unsafe { core::ptr::write_bytes(phys_to_virt(pa).as_u64() as *mut u8, 0xa5, bytes) };
        blocks.push(pa);
    }
    for pa in blocks.into_iter().rev() {
        free_frames(pa, STACK_ORDER);
    }
    let handles: Vec<_> = (0..DIRTY)
        .map(|_| {
            crate::task::sched::spawn("stack check", move || {
                let here = 0u8;
                let sp = core::hint::black_box(&here) as *const u8 as u64;
                let base = sp & !(bytes as u64 - 1);
                // The second page of the stack: 24 KiB below the top.
                let probe = base + PAGE_SIZE;
                // SAFETY: [probe, probe + PAGE_SIZE) lies in this task's
                // own stack (below `sp`, above its lowest page), mapped
                // in the stack window (`memory::stacks`).
                let page = unsafe { core::slice::from_raw_parts(probe as *const u8, PAGE_SIZE as usize) };
                match page.iter().position(|&b| b != 0) {
                    Some(i) => {
                        Err(format!("the stack at {:#x} holds {:#x}, not 0", probe + i as u64, page[i]))
                    }
                    None => Ok(()),
                }
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("spawn: {e:?}"))?;
    for h in handles {
        h.join()??;
    }
    Ok(())
}

pub(crate) const TESTS: &[Test] = register!["frame": concurrent_alloc_from_every_cpu; "heap": box_vec_and_reuse, exhaustion_is_an_error, grows_past_the_boot_region_and_shrinks; "frame": frames_are_usable_ram, huge_frames_are_aligned_and_distinct, every_order_drains_and_refills, task_stacks_start_zeroed, a_query_preempted_by_the_tick_stalls_no_allocator];
