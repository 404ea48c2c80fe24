//! Devices.
//!
//! | module | what |
//! | --- | --- |
//! | [`pci`] | PCI functions on the host bridge: enumeration, BAR placement, INTx lines |
//! | [`dma`] | DMA memory and addresses for virtio devices (`virtio-drivers`' `Hal`) |
//! | [`blk`] | virtio-blk disks: page reads and writes for the swap code, by interrupt |
//!
//! Below: [`crate::task`] (a request's waiter parks) and [`crate::memory`]
//! (DMA frames).

pub mod blk;
pub mod dma;
pub mod pci;
