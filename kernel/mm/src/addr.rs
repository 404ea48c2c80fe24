//! Address newtypes: a physical address and a virtual address are different
//! types, so one cannot be passed where the other is meant.
//!
//! Both are plain 64-bit numbers with alignment helpers. Constructors do not
//! check canonical form: that is an arch property, and the arch crates check it
//! where an address reaches the hardware.

use core::fmt;

/// The base page size on both supported arches (4 KiB granule).
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;
/// The size of a PMD leaf (a 2 MiB huge page) with a 4 KiB granule.
pub const HUGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two); `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                debug_assert!(align.is_power_of_two());
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// True when the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// The address `bytes` further on; `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A physical address: where a byte is in RAM or device space.
    PhysAddr,
    "PhysAddr"
);
address_type!(
    /// A virtual address: what a load or store names before translation.
    VirtAddr,
    "VirtAddr"
);

impl PhysAddr {
    /// The page frame number of the frame holding this address: the
    /// address divided by [`PAGE_SIZE`].
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

/// A page frame number: which 4 KiB frame of physical memory. Frame `n`
/// starts at physical address `n * PAGE_SIZE` ([`Pfn::phys`]); the page
/// descriptor array (`crate::page::Memmap`) is indexed by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(u64);

impl Pfn {
    /// Frame number `n`.
    pub const fn new(n: u64) -> Pfn {
        Pfn(n)
    }
    /// The number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The physical address where the frame starts.
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// The frame `n` frames after this one.
    pub const fn plus(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }
    /// How many frames this one lies after `base` (`self - base`).
    ///
    /// # Panics
    /// When `self` lies before `base`.
    pub const fn since(self, base: Pfn) -> u64 {
        assert!(self.0 >= base.0, "Pfn::since: the frame lies before the base");
        self.0 - base.0
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::addr::Pfn;

    #[test]
    fn alignment_helpers() {
        let a = PhysAddr::new(0x1234);
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x1000));
        assert_eq!(a.checked_align_up(PAGE_SIZE), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(0x2000).checked_align_up(PAGE_SIZE), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(u64::MAX).checked_align_up(PAGE_SIZE), None);
        assert!(PhysAddr::new(0x20_0000).is_aligned(HUGE_PAGE_SIZE));
        assert!(!PhysAddr::new(0x20_1000).is_aligned(HUGE_PAGE_SIZE));
        assert_eq!(PhysAddr::new(0x5000).pfn(), Pfn::new(5));
        assert_eq!(Pfn::new(5).phys(), PhysAddr::new(0x5000));
        assert_eq!(Pfn::new(0x200).plus(3).since(Pfn::new(0x200)), 3);
        assert_eq!(VirtAddr::new(1).checked_add(u64::MAX), None);
    }

    #[test]
    fn formatting_says_which_kind() {
        extern crate std;
        assert_eq!(std::format!("{:?}", PhysAddr::new(0x10)), "PhysAddr(0x10)");
        assert_eq!(std::format!("{:?}", VirtAddr::new(0x10)), "VirtAddr(0x10)");
        assert_eq!(std::format!("{}", VirtAddr::new(0x10)), "0x10");
    }
}
