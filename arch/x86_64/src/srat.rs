//! The ACPI SRAT (System Resource Affinity Table): which NUMA node each
//! range of memory and each CPU belongs to, read by hand from the table's
//! bytes (the `acpi` crate 5.2 finds and checksums the table but does not
//! parse it).
//!
//! ## Layout (ACPI 6.5, 5.2.16)
//!
//! ```text
//! offset  0  the SDT header (36 bytes: "SRAT", length, revision, checksum, ...)
//!        36  reserved, 4 bytes (1), then reserved, 8 bytes
//!        48  the entries, each starting with [type: u8, length: u8]:
//!
//! type 0, processor local APIC affinity, 16 bytes
//!   2 domain bits 0..8 | 3 APIC id | 4..8 flags (bit 0: enabled)
//!   8 SAPIC EID | 9..12 domain bits 8..32 | 12..16 clock domain
//! type 1, memory affinity, 40 bytes
//!   2..6 domain | 8..16 base | 16..24 length | 28..32 flags (bit 0: enabled,
//!   bit 1: hot-pluggable, bit 2: non-volatile)
//! type 2, processor local x2APIC affinity, 24 bytes
//!   4..8 domain | 8..12 x2APIC id | 12..16 flags (bit 0: enabled)
//! ```
//!
//! Other entry types (GICC, ITS, generic initiator) are skipped by their
//! length. Entries whose enabled bit is clear are ignored.
//!
//! ## Checks
//!
//! [`read_srat`] refuses, with a [`SratError`] saying what is wrong, a table
//! shorter than its header, a length field longer than the bytes given, an
//! entry shorter than its type needs or running past the end, a memory
//! range that wraps or overlaps another, a CPU in two domains, more domains
//! than `mm::numa::MAX_NODES`, and a table with no enabled memory entry
//! (which says nothing about memory). The boot path then runs with one
//! node and prints why.
//!
//! Proximity domains become dense node ids in increasing order
//! (`mm::numa::DomainIds`). Plain parsing, no hardware: built and tested on
//! the host. No locks.

use core::fmt;
use mm::memmap::PhysRange;
use mm::numa::{DomainIds, NumaError, NumaMap};

/// The table's signature.
pub const SIGNATURE: [u8; 4] = *b"SRAT";
/// Where the entries start: the 36-byte SDT header, then 12 reserved bytes.
pub const ENTRIES_OFFSET: usize = 48;

const LOCAL_APIC: u8 = 0;
const LOCAL_APIC_LEN: usize = 16;
const MEMORY: u8 = 1;
const MEMORY_LEN: usize = 40;
const LOCAL_X2APIC: u8 = 2;
const LOCAL_X2APIC_LEN: usize = 24;
/// Bit 0 of every entry's flags: the entry is in use.
const ENABLED: u32 = 1 << 0;

/// Why an SRAT was refused (the firmware's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SratError {
    /// Fewer bytes than the header and the reserved fields, or a length
    /// field that does not fit the bytes given.
    BadLength { len: usize },
    /// The entry at `offset` is shorter than its type needs (or than 2
    /// bytes), or runs past the end of the table.
    BadEntry { offset: usize },
    /// No enabled memory affinity entry.
    NoMemory,
    /// What the entries say does not make one map of nodes.
    Numa(NumaError),
}

impl From<NumaError> for SratError {
    fn from(e: NumaError) -> Self {
        SratError::Numa(e)
    }
}

impl fmt::Display for SratError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SratError::BadLength { len } => write!(f, "the SRAT's length ({len} bytes) is wrong"),
            SratError::BadEntry { offset } => write!(f, "the SRAT entry at offset {offset} has a bad length"),
            SratError::NoMemory => write!(f, "the SRAT has no enabled memory affinity entry"),
            SratError::Numa(e) => write!(f, "the SRAT's nodes do not add up: {e}"),
        }
    }
}

/// One entry, decoded.
enum Entry {
    Cpu { domain: u32, hw_id: u64 },
    Memory { domain: u32, range: PhysRange, base: u64, len: u64 },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u32_at(b, at) as u64 | (u32_at(b, at + 4) as u64) << 32
}

/// The enabled CPU and memory entries of `table`, each checked for length.
fn entries(table: &[u8], mut f: impl FnMut(Entry) -> Result<(), SratError>) -> Result<(), SratError> {
    let mut at = ENTRIES_OFFSET;
    while at < table.len() {
        let rest = &table[at..];
        let [kind, len, ..] = *rest else { return Err(SratError::BadEntry { offset: at }) };
        let len = len as usize;
        let min = match kind {
            LOCAL_APIC => LOCAL_APIC_LEN,
            MEMORY => MEMORY_LEN,
            LOCAL_X2APIC => LOCAL_X2APIC_LEN,
            _ => 2,
        };
        if len < min || len > rest.len() {
            return Err(SratError::BadEntry { offset: at });
        }
        let e = &rest[..len];
        match kind {
            LOCAL_APIC if u32_at(e, 4) & ENABLED != 0 => {
                let domain = e[2] as u32 | (e[9] as u32) << 8 | (e[10] as u32) << 16 | (e[11] as u32) << 24;
                f(Entry::Cpu { domain, hw_id: e[3] as u64 })?;
            }
            LOCAL_X2APIC if u32_at(e, 12) & ENABLED != 0 => {
                f(Entry::Cpu { domain: u32_at(e, 4), hw_id: u32_at(e, 8) as u64 })?;
            }
            MEMORY if u32_at(e, 28) & ENABLED != 0 => {
                let (base, len) = (u64_at(e, 8), u64_at(e, 16));
                f(Entry::Memory { domain: u32_at(e, 2), range: PhysRange::new(base, len), base, len })?;
            }
            _ => {}
        }
        at += len;
    }
    Ok(())
}

/// Reads the node map from the SRAT's bytes `table` (header included,
/// exactly as long as its length field or longer); see the module doc.
pub fn read_srat(table: &[u8]) -> Result<NumaMap, SratError> {
    if table.len() < ENTRIES_OFFSET {
        return Err(SratError::BadLength { len: table.len() });
    }
    let len = u32_at(table, 4) as usize;
    if len < ENTRIES_OFFSET || len > table.len() {
        return Err(SratError::BadLength { len });
    }
    let table = &table[..len];
    // First every domain, so node ids follow the domains' order whatever
    // the entries' order; then the entries.
    let mut domains = DomainIds::new();
    entries(table, |e| {
        let (Entry::Cpu { domain, .. } | Entry::Memory { domain, .. }) = e;
        domains.insert(domain).map_err(SratError::from)
    })?;
    let mut map = NumaMap::new();
    entries(table, |e| {
        match e {
            Entry::Cpu { domain, hw_id } => map.add_cpu(domains.node(domain)?, hw_id)?,
            Entry::Memory { domain, range, base, len } => {
                if base.checked_add(len).is_none() {
                    return Err(NumaError::Overlap { start: base, end: u64::MAX }.into());
                }
                map.add_memory(domains.node(domain)?, range)?
            }
        }
        Ok(())
    })?;
    if map.is_empty() {
        return Err(SratError::NoMemory);
    }
    map.set_nr_nodes(domains.len());
    Ok(map)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use mm::numa::NodeId;
    use mm::PhysAddr;
    use std::vec::Vec;

    fn header(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&SIGNATURE);
        let len: usize = ENTRIES_OFFSET + entries.iter().map(Vec::len).sum::<usize>();
        t.extend_from_slice(&(len as u32).to_le_bytes());
        t.resize(36, 0);
        t.extend_from_slice(&1u32.to_le_bytes());
        t.resize(ENTRIES_OFFSET, 0);
        for e in entries {
            t.extend_from_slice(e);
        }
        t
    }

    fn apic(domain: u32, apic_id: u8, enabled: bool) -> Vec<u8> {
        let mut e = std::vec![0u8; LOCAL_APIC_LEN];
        e[0] = LOCAL_APIC;
        e[1] = LOCAL_APIC_LEN as u8;
        e[2] = domain as u8;
        e[3] = apic_id;
        e[4] = enabled as u8;
        e[9..12].copy_from_slice(&domain.to_le_bytes()[1..]);
        e
    }

    fn x2apic(domain: u32, id: u32) -> Vec<u8> {
        let mut e = std::vec![0u8; LOCAL_X2APIC_LEN];
        e[0] = LOCAL_X2APIC;
        e[1] = LOCAL_X2APIC_LEN as u8;
        e[4..8].copy_from_slice(&domain.to_le_bytes());
        e[8..12].copy_from_slice(&id.to_le_bytes());
        e[12] = 1;
        e
    }

    fn memory(domain: u32, base: u64, len: u64, flags: u32) -> Vec<u8> {
        let mut e = std::vec![0u8; MEMORY_LEN];
        e[0] = MEMORY;
        e[1] = MEMORY_LEN as u8;
        e[2..6].copy_from_slice(&domain.to_le_bytes());
        e[8..16].copy_from_slice(&base.to_le_bytes());
        e[16..24].copy_from_slice(&len.to_le_bytes());
        e[28..32].copy_from_slice(&flags.to_le_bytes());
        e
    }

    const MIB: u64 = 1 << 20;

    fn node(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    /// What QEMU's `pc` machine writes for `-numa node,nodeid=0,cpus=0-1
    /// -numa node,nodeid=1,cpus=2-3` with 256 MiB each.
    fn qemu_two_nodes() -> Vec<u8> {
        header(&[
            apic(0, 0, true),
            apic(0, 1, true),
            apic(1, 2, true),
            apic(1, 3, true),
            memory(0, 0, 0xa_0000, 1),
            memory(0, MIB, 255 * MIB, 1),
            memory(1, 256 * MIB, 256 * MIB, 1),
            memory(0, 0, 0, 0),
        ])
    }

    #[test]
    fn reads_qemus_two_nodes() {
        let map = read_srat(&qemu_two_nodes()).unwrap();
        assert_eq!(map.nr_nodes(), 2);
        assert_eq!(map.memory().len(), 3);
        assert_eq!(map.node_of_addr(PhysAddr::new(0x1000)), Some(node(0)));
        assert_eq!(map.node_of_addr(PhysAddr::new(256 * MIB - 1)), Some(node(0)));
        assert_eq!(map.node_of_addr(PhysAddr::new(256 * MIB)), Some(node(1)));
        assert_eq!(map.node_of_addr(PhysAddr::new(512 * MIB)), None);
        let cpus: Vec<_> = map.cpus().iter().map(|&(id, n)| (id, n.index())).collect();
        assert_eq!(cpus, [(0, 0), (1, 0), (2, 1), (3, 1)]);
    }

    #[test]
    fn domains_are_renumbered_in_order_and_disabled_entries_ignored() {
        let t = header(&[
            x2apic(0x300, 7),
            apic(0x300, 9, false),
            memory(0x300, 2 << 30, 1 << 30, 1),
            memory(5, 0, 1 << 30, 1 | 2),
            memory(9, 4 << 30, 1 << 30, 0),
        ]);
        let map = read_srat(&t).unwrap();
        assert_eq!(map.nr_nodes(), 2, "domain 9 is only in a disabled entry");
        assert_eq!(map.node_of_addr(PhysAddr::new(0)), Some(node(0)));
        assert_eq!(map.node_of_addr(PhysAddr::new(2 << 30)), Some(node(1)));
        assert_eq!(map.node_of_cpu(7), Some(node(1)));
        assert_eq!(map.node_of_cpu(9), None);
    }

    #[test]
    fn bad_tables_are_refused_with_what_is_wrong() {
        assert_eq!(read_srat(&[0; 20]).unwrap_err(), SratError::BadLength { len: 20 });
        let mut long = qemu_two_nodes();
        long[4..8].copy_from_slice(&10_000u32.to_le_bytes());
        assert_eq!(read_srat(&long).unwrap_err(), SratError::BadLength { len: 10_000 });
        let mut short_entry = header(&[apic(0, 0, true), memory(0, 0, MIB, 1)]);
        short_entry[ENTRIES_OFFSET + LOCAL_APIC_LEN + 1] = 20;
        assert_eq!(
            read_srat(&short_entry).unwrap_err(),
            SratError::BadEntry { offset: ENTRIES_OFFSET + LOCAL_APIC_LEN }
        );
        let mut past_end = header(&[memory(0, 0, MIB, 1)]);
        past_end[ENTRIES_OFFSET + 1] = 48;
        assert_eq!(read_srat(&past_end).unwrap_err(), SratError::BadEntry { offset: ENTRIES_OFFSET });
        let mut zero_len = header(&[memory(0, 0, MIB, 1), std::vec![7, 0]]);
        let at = zero_len.len() - 2;
        zero_len[at + 1] = 0;
        assert_eq!(read_srat(&zero_len).unwrap_err(), SratError::BadEntry { offset: at });
        assert_eq!(read_srat(&header(&[apic(0, 0, true)])).unwrap_err(), SratError::NoMemory);
        let overlap = header(&[memory(0, 0, 2 * MIB, 1), memory(1, MIB, 2 * MIB, 1)]);
        assert!(matches!(read_srat(&overlap).unwrap_err(), SratError::Numa(NumaError::Overlap { .. })));
        let wraps = header(&[memory(0, u64::MAX - MIB, 2 * MIB, 1)]);
        assert!(matches!(read_srat(&wraps).unwrap_err(), SratError::Numa(NumaError::Overlap { .. })));
        let twice = header(&[apic(0, 1, true), apic(1, 1, true), memory(0, 0, MIB, 1)]);
        assert_eq!(read_srat(&twice).unwrap_err(), SratError::Numa(NumaError::CpuTwice { hw_id: 1 }));
        let many: Vec<_> = (0..9).map(|d| memory(d, d as u64 * MIB, MIB, 1)).collect();
        assert_eq!(
            read_srat(&header(&many)).unwrap_err(),
            SratError::Numa(NumaError::TooManyNodes { domain: 8 })
        );
        // Unknown entry types are skipped by their length.
        let mut unknown = std::vec![0u8; 12];
        unknown[0] = 3;
        unknown[1] = 12;
        assert!(read_srat(&header(&[unknown, memory(0, 0, MIB, 1)])).is_ok());
    }
}
