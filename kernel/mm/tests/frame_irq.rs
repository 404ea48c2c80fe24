//! The frame allocator takes its lock with interrupts off in every method,
//! the read-only queries included (`mm::frame`, "Lock").
//!
//! A query that took the lock with interrupts on could be preempted by the
//! tick while holding it; the next allocation on that CPU, with interrupts
//! off, would then spin for ever. Here the kernel's interrupt hooks are
//! stand-ins that keep a per-thread "interrupts on" flag and count how
//! often they turned interrupts off; every method of the allocator must
//! turn them off (at least once) and leave them as it found them.
//!
//! Its own test binary: the hooks are registered once per process
//! (`mm::sync::set_irq_hooks`), and no other test should run under them.
//! Not built with `shuttle`, whose locks have no interrupt hooks.
#![cfg(not(feature = "shuttle"))]

use mm::frame::{AllocKind, FrameAllocator};
use mm::page::Memmap;
use mm::Pfn;
use std::cell::Cell;

thread_local! {
    static IRQ_ON: Cell<bool> = const { Cell::new(true) };
    static NR_DISABLES: Cell<u64> = const { Cell::new(0) };
}

fn save_and_disable() -> bool {
    NR_DISABLES.with(|n| n.set(n.get() + 1));
    IRQ_ON.with(|on| on.replace(false))
}

fn restore(was_on: bool) {
    IRQ_ON.with(|on| on.set(was_on));
}

/// Runs `f` with interrupts "on" and says how often it turned them off;
/// fails if it left them off.
fn disables_during(what: &str, f: impl FnOnce()) -> u64 {
    IRQ_ON.with(|on| on.set(true));
    let before = NR_DISABLES.with(Cell::get);
    f();
    assert!(IRQ_ON.with(Cell::get), "{what} left interrupts off");
    NR_DISABLES.with(Cell::get) - before
}

#[test]
fn every_method_takes_the_lock_with_interrupts_off() {
    mm::sync::set_irq_hooks(save_and_disable, restore);
    let memmap = Memmap::new_leaked(Pfn::new(0x1000), 1024);
    let fa: &'static FrameAllocator = Box::leak(Box::new(FrameAllocator::new(memmap)));
    assert!(
        disables_during("add_free_range", || {
            fa.add_free_range(Pfn::new(0x1000), Pfn::new(0x1400)).unwrap()
        }) > 0
    );
    let mut pfn = None;
    assert!(disables_during("alloc", || pfn = Some(fa.alloc(0, AllocKind::Normal).unwrap())) > 0);
    assert!(disables_during("free", || fa.free(pfn.unwrap(), 0)) > 0);
    let node = mm::numa::NodeId::ZERO;
    assert!(disables_during("alloc_on", || pfn = Some(fa.alloc_on(node, 0, AllocKind::Normal).unwrap())) > 0);
    fa.free(pfn.unwrap(), 0);
    let queries: [(&str, &dyn Fn()); 13] = [
        ("nr_free_pages", &|| {
            let _ = fa.nr_free_pages();
        }),
        ("nr_free_blocks", &|| {
            let _ = fa.nr_free_blocks(0);
        }),
        ("managed_pages", &|| {
            let _ = fa.managed_pages();
        }),
        ("watermarks", &|| {
            let _ = fa.watermarks();
        }),
        ("below_low", &|| {
            let _ = fa.below_low();
        }),
        ("below_high", &|| {
            let _ = fa.below_high();
        }),
        ("nr_nodes", &|| {
            let _ = fa.nr_nodes();
        }),
        ("nr_free_pages_on", &|| {
            let _ = fa.nr_free_pages_on(node);
        }),
        ("nr_free_blocks_on", &|| {
            let _ = fa.nr_free_blocks_on(node, 0);
        }),
        ("managed_pages_on", &|| {
            let _ = fa.managed_pages_on(node);
        }),
        ("watermarks_on", &|| {
            let _ = fa.watermarks_on(node);
        }),
        ("check_consistency", &|| fa.check_consistency().unwrap()),
        ("Debug", &|| drop(format!("{fa:?}"))),
    ];
    for (what, query) in queries {
        assert!(disables_during(what, query) > 0, "{what} took the allocator's lock with interrupts on");
    }
}
