//! L1/L2 entries and refcount blocks: how their bits are laid out.

use super::header::Header;

/// Bits 9..=55 of an L1 entry or a standard L2 entry hold the host offset.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub const COPIED: u64 = 1 << 63;
pub const COMPRESSED: u64 = 1 << 62;
/// A standard L2 entry whose cluster reads as zeros (v3 only).
pub const ZERO: u64 = 1;

/// What one guest cluster (or subcluster) maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Not allocated: reads from the backing file, or as zeros.
    Unallocated,
    Zero,
    /// Data at this host offset (in the data file when there is one).
    Data(u64),
    /// Compressed data: host byte offset and the bytes to read.
    Compressed {
        offset: u64,
        len: u64,
    },
}

/// How compressed-cluster descriptors split into offset and sector count.
#[derive(Debug, Clone, Copy)]
pub struct CompressedLayout {
    /// Bits below this hold the host byte offset.
    offset_bits: u32,
    sector_count_mask: u64,
}

impl CompressedLayout {
    pub fn new(cluster_bits: u32) -> Self {
        let offset_bits = 62 - (cluster_bits - 8);
        CompressedLayout {
            offset_bits,
            sector_count_mask: (1 << (cluster_bits - 8)) - 1,
        }
    }

    pub fn decode(&self, entry: u64) -> Mapping {
        let offset = entry & ((1 << self.offset_bits) - 1);
        let sectors = ((entry >> self.offset_bits) & self.sector_count_mask) + 1;
        Mapping::Compressed {
            offset,
            len: sectors * 512 - (offset & 511),
        }
    }

    /// The descriptor for `len` compressed bytes at host `offset`.
    pub fn encode(&self, offset: u64, len: u64) -> u64 {
        let extra_sectors = (offset + len - 1) / 512 - offset / 512;
        COMPRESSED | (extra_sectors << self.offset_bits) | offset
    }
}

/// Decodes a standard (non-extended) L2 entry.
pub fn decode_l2(header: &Header, layout: &CompressedLayout, entry: u64) -> Mapping {
    if entry & COMPRESSED != 0 {
        return layout.decode(entry);
    }
    if header.version >= 3 && entry & ZERO != 0 {
        return Mapping::Zero;
    }
    match entry & OFFSET_MASK {
        0 => Mapping::Unallocated,
        host => Mapping::Data(host),
    }
}

/// Decodes the mapping of subcluster `sub` of an extended L2 entry.
pub fn decode_extended(
    layout: &CompressedLayout,
    entry: u64,
    bitmap: u64,
    sub: u32,
    subcluster_size: u64,
) -> Mapping {
    if entry & COMPRESSED != 0 {
        return layout.decode(entry);
    }
    if bitmap & (1 << (32 + sub)) != 0 {
        return Mapping::Zero;
    }
    if bitmap & (1 << sub) != 0 {
        return Mapping::Data((entry & OFFSET_MASK) + sub as u64 * subcluster_size);
    }
    Mapping::Unallocated
}

/// Reads refcount `index` from a refcount block of `bits`-bit big-endian entries.
pub fn get_refcount(block: &[u8], bits: u32, index: u64) -> u64 {
    match bits {
        8 => block[index as usize] as u64,
        16 => u16::from_be_bytes(block[index as usize * 2..][..2].try_into().unwrap()) as u64,
        32 => u32::from_be_bytes(block[index as usize * 4..][..4].try_into().unwrap()) as u64,
        64 => u64::from_be_bytes(block[index as usize * 8..][..8].try_into().unwrap()),
        // 1, 2 and 4 bits: entries are packed from the low bits of each byte.
        _ => {
            let per_byte = 8 / bits as u64;
            let byte = block[(index / per_byte) as usize];
            let shift = (index % per_byte) as u32 * bits;
            ((byte >> shift) as u64) & ((1 << bits) - 1)
        }
    }
}

/// Big-endian u64 entries of a table read from disk.
pub fn be_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_descriptors_round_trip() {
        for bits in [9, 12, 16, 21] {
            let layout = CompressedLayout::new(bits);
            for (offset, len) in [
                (0x30000u64, 1u64),
                (0x30001, 511),
                (0x301ff, 2),
                (0x12345, 40000.min(1 << bits)),
            ] {
                let Mapping::Compressed { offset: o, len: l } =
                    layout.decode(layout.encode(offset, len))
                else {
                    panic!("not compressed")
                };
                assert_eq!(o, offset);
                // The reader reads whole sectors: at least the bytes written.
                assert!(
                    l >= len && l < len + 512 + 511,
                    "bits {bits} offset {offset:#x} len {len} -> {l}"
                );
            }
        }
    }

    #[test]
    fn packed_refcounts_read_from_low_bits() {
        let block = [0b1110_0100u8, 0xff];
        assert_eq!(get_refcount(&block, 2, 0), 0);
        assert_eq!(get_refcount(&block, 2, 1), 1);
        assert_eq!(get_refcount(&block, 2, 2), 2);
        assert_eq!(get_refcount(&block, 2, 3), 3);
        assert_eq!(get_refcount(&block, 16, 0), 0xe4ff);
        assert_eq!(get_refcount(&block, 1, 2), 1);
    }
}
