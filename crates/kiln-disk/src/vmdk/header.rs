//! The hosted sparse extent header (`KDMV`) and stream markers, as plain
//! data. Every integer is little-endian; offsets and sizes count 512-byte
//! sectors.

use crate::{Error, Result};

pub const MAGIC: &[u8; 4] = b"KDMV";
pub const HEADER_LEN: usize = 512;
pub const SECTOR: u64 = 512;
/// The newline characters are intact (the file was not mangled by a text transfer).
pub const FLAG_NEWLINE_TEST: u32 = 1 << 0;
pub const FLAG_REDUNDANT_GD: u32 = 1 << 1;
/// Grain table entry 1 means "reads as zeros".
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub const FLAG_COMPRESSED: u32 = 1 << 16;
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `gd_offset` of a stream whose grain directory is found through the footer.
pub const GD_AT_END: u64 = u64::MAX;
pub const COMPRESS_DEFLATE: u16 = 1;
pub const GTE_ZERO_GRAIN: u32 = 1;

/// Marker types of streamOptimized files.
pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;
/// A grain marker's header: the grain's guest sector and its compressed size.
pub const GRAIN_MARKER_LEN: u64 = 12;

/// Limits that keep every size kiln derives from a header sane: grains of
/// 512 bytes to 2 MiB, grain tables of at most 64 Ki entries, descriptors of
/// at most 1 MiB.
pub const MAX_GRAIN_SECTORS: u64 = 4096;
pub const MAX_GTES_PER_GT: u32 = 1 << 16;
pub const MAX_DESCRIPTOR_SECTORS: u64 = 2048;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    /// Guest size in sectors.
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_sectors: u64,
    pub gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    pub unclean_shutdown: bool,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    pub fn parse(b: &[u8]) -> Result<SparseHeader> {
        if b.len() < HEADER_LEN || &b[..4] != MAGIC {
            return Err(Error::invalid("vmdk", "no KDMV sparse extent header"));
        }
        Ok(SparseHeader {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_sectors: le64(b, 20),
            descriptor_offset: le64(b, 28),
            descriptor_sectors: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            unclean_shutdown: b[72] != 0,
            compress_algorithm: u16::from_le_bytes([b[77], b[78]]),
        })
    }

    pub fn serialize(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_sectors.to_le_bytes());
        b[28..36].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.descriptor_sectors.to_le_bytes());
        b[44..48].copy_from_slice(&self.gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[72] = self.unclean_shutdown as u8;
        // The newline-detection characters: "\n", " ", "\r\n".
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }

    /// Refuses values that are absurd or would overflow offset arithmetic.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("vmdk", reason));
        if !(1..=3).contains(&self.version) {
            return Err(Error::unsupported(
                "vmdk",
                format!("sparse extent version {}", self.version),
            ));
        }
        if !self.grain_sectors.is_power_of_two() || self.grain_sectors > MAX_GRAIN_SECTORS {
            return bad(format!(
                "absurd grain size of {} sectors",
                self.grain_sectors
            ));
        }
        if self.gtes_per_gt == 0 || self.gtes_per_gt > MAX_GTES_PER_GT {
            return bad(format!(
                "absurd grain table size of {} entries",
                self.gtes_per_gt
            ));
        }
        if self.capacity.checked_mul(SECTOR).is_none() {
            return bad(format!("capacity of {} sectors overflows", self.capacity));
        }
        if self.descriptor_sectors > MAX_DESCRIPTOR_SECTORS {
            return bad(format!(
                "embedded descriptor of {} sectors",
                self.descriptor_sectors
            ));
        }
        if self.compressed() && self.compress_algorithm != COMPRESS_DEFLATE {
            return Err(Error::unsupported(
                "vmdk",
                format!("compression algorithm {}", self.compress_algorithm),
            ));
        }
        Ok(())
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    pub fn has_markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }

    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Guest sectors one grain table covers.
    pub fn gt_coverage(&self) -> u64 {
        self.grain_sectors * self.gtes_per_gt as u64
    }

    /// Entries of the grain directory: one per grain table the capacity needs.
    pub fn gd_entries(&self) -> u64 {
        self.capacity.div_ceil(self.gt_coverage())
    }

    pub fn gt_bytes(&self) -> u64 {
        self.gtes_per_gt as u64 * 4
    }
}

/// A one-sector stream marker (GT, GD, footer or end of stream).
pub fn marker(sectors: u64, kind: u32) -> [u8; SECTOR as usize] {
    let mut b = [0u8; SECTOR as usize];
    b[..8].copy_from_slice(&sectors.to_le_bytes());
    b[12..16].copy_from_slice(&kind.to_le_bytes());
    b
}

/// The type of the marker in `b`, when it is one (a grain's size field is never 0).
pub fn marker_kind(b: &[u8; SECTOR as usize]) -> Option<u32> {
    (le32(b, 8) == 0).then(|| le32(b, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = SparseHeader {
            version: 3,
            flags: FLAG_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity: 144_594,
            grain_sectors: 128,
            descriptor_offset: 1,
            descriptor_sectors: 20,
            gtes_per_gt: 512,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: 128,
            unclean_shutdown: false,
            compress_algorithm: COMPRESS_DEFLATE,
        };
        let bytes = header.serialize();
        assert_eq!(SparseHeader::parse(&bytes).unwrap(), header);
        header.validate().unwrap();
        assert_eq!(header.gd_entries(), 3);
        assert_eq!(marker_kind(&marker(4, MARKER_GT)), Some(MARKER_GT));
    }
}
