//! The qcow2 header and its extensions, as plain data.

use crate::{Error, Result};

pub const MAGIC: &[u8; 4] = b"QFI\xfb";

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = 0x1f;

pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// qemu's limits: cluster_bits 9..=21, L1 at most 32 MiB, refcount table at
/// most 8 MiB. Larger values are refused before anything is allocated.
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;
pub const MAX_L1_BYTES: u64 = 32 << 20;
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;

/// The v3 header length kiln writes: 104 bytes plus the compression type
/// byte, padded to a multiple of 8, as qemu does.
pub const V3_HEADER_LENGTH: u32 = 112;
pub const V2_HEADER_LENGTH: u32 = 72;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Zlib,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub kind: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: CompressionType,
    /// Header extensions other than the end marker, in file order.
    pub extensions: Vec<Extension>,
    pub backing_file: Option<String>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid("qcow2", reason)
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTL2 != 0
    }

    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// Bytes of one L2 entry: 8, or 16 with extended L2 (entry + subcluster bitmap).
    pub fn l2_entry_bytes(&self) -> u64 {
        if self.extended_l2() { 16 } else { 8 }
    }

    /// Guest clusters one L2 table maps.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / self.l2_entry_bytes()
    }

    /// The L1 entries needed to map the whole virtual size.
    pub fn required_l1_entries(&self) -> u64 {
        self.size.div_ceil(self.cluster_size() * self.l2_entries())
    }

    /// The external data file's name, if the image has one.
    pub fn data_file(&self) -> Option<String> {
        self.extension(EXT_DATA_FILE)
            .map(|d| String::from_utf8_lossy(d).into_owned())
    }

    pub fn backing_format(&self) -> Option<String> {
        self.extension(EXT_BACKING_FORMAT)
            .map(|d| String::from_utf8_lossy(d).into_owned())
    }

    fn extension(&self, kind: u32) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.data.as_slice())
    }

    /// Parses the header from the start of the file. `head` holds at least the
    /// first cluster, or the whole file when it is shorter.
    pub fn parse(head: &[u8]) -> Result<Header> {
        if head.len() < 72 || &head[0..4] != MAGIC {
            return Err(invalid("no qcow2 magic"));
        }
        let version = be32(head, 4);
        if version != 2 && version != 3 {
            return Err(Error::unsupported("qcow2", format!("version {version}")));
        }
        let cluster_bits = be32(head, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(invalid(format!(
                "cluster_bits {cluster_bits} outside 9..=21"
            )));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(head, 8),
            backing_file_size: be32(head, 16),
            cluster_bits,
            size: be64(head, 24),
            crypt_method: be32(head, 32),
            l1_size: be32(head, 36),
            l1_table_offset: be64(head, 40),
            refcount_table_offset: be64(head, 48),
            refcount_table_clusters: be32(head, 56),
            nb_snapshots: be32(head, 60),
            snapshots_offset: be64(head, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LENGTH,
            compression_type: CompressionType::Zlib,
            extensions: Vec::new(),
            backing_file: None,
        };
        let cluster_size = h.cluster_size() as usize;
        if version == 3 {
            if head.len() < 104 {
                return Err(invalid("v3 header is truncated"));
            }
            h.incompatible_features = be64(head, 72);
            h.compatible_features = be64(head, 80);
            h.autoclear_features = be64(head, 88);
            h.refcount_order = be32(head, 96);
            h.header_length = be32(head, 100);
            if h.refcount_order > 6 {
                return Err(invalid(format!(
                    "refcount_order {} above 6",
                    h.refcount_order
                )));
            }
            if h.header_length < 104
                || h.header_length as usize > cluster_size
                || !h.header_length.is_multiple_of(8)
            {
                return Err(invalid(format!("header_length {}", h.header_length)));
            }
            if h.header_length as usize > head.len() {
                return Err(invalid("header runs past the end of the file"));
            }
            let unknown = h.incompatible_features & !INCOMPAT_KNOWN;
            if unknown != 0 {
                return Err(Error::unsupported(
                    "qcow2",
                    format!("incompatible feature bits {unknown:#x}"),
                ));
            }
            if h.incompatible_features & INCOMPAT_COMPRESSION != 0 {
                if h.header_length < 105 {
                    return Err(invalid(
                        "compression type bit set but header has no compression type",
                    ));
                }
                h.compression_type = match head[104] {
                    0 => CompressionType::Zlib,
                    1 => CompressionType::Zstd,
                    t => return Err(Error::unsupported("qcow2", format!("compression type {t}"))),
                };
            }
            if h.extended_l2() && cluster_bits < 14 {
                return Err(invalid(
                    "extended L2 entries need clusters of at least 16 KiB",
                ));
            }
        }
        h.extensions =
            parse_extensions(head, h.header_length as usize, cluster_size.min(head.len()))?;
        if h.backing_file_offset != 0 {
            let start = h.backing_file_offset as usize;
            let len = h.backing_file_size as usize;
            if h.backing_file_size > 1023
                || start
                    .checked_add(len)
                    .is_none_or(|end| end > cluster_size.min(head.len()))
            {
                return Err(invalid("backing file name lies outside the first cluster"));
            }
            h.backing_file = Some(String::from_utf8_lossy(&head[start..start + len]).into_owned());
        }
        Ok(h)
    }

    /// The header, its extensions and the backing file name, as they are
    /// written into cluster 0.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.backing_file_offset.to_be_bytes());
        out.extend_from_slice(&self.backing_file_size.to_be_bytes());
        out.extend_from_slice(&self.cluster_bits.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.crypt_method.to_be_bytes());
        out.extend_from_slice(&self.l1_size.to_be_bytes());
        out.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        out.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        out.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        out.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        out.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            out.extend_from_slice(&self.incompatible_features.to_be_bytes());
            out.extend_from_slice(&self.compatible_features.to_be_bytes());
            out.extend_from_slice(&self.autoclear_features.to_be_bytes());
            out.extend_from_slice(&self.refcount_order.to_be_bytes());
            out.extend_from_slice(&self.header_length.to_be_bytes());
            out.resize(self.header_length as usize, 0);
            if self.header_length > 104 {
                out[104] = match self.compression_type {
                    CompressionType::Zlib => 0,
                    CompressionType::Zstd => 1,
                };
            }
            for ext in &self.extensions {
                out.extend_from_slice(&ext.kind.to_be_bytes());
                out.extend_from_slice(&(ext.data.len() as u32).to_be_bytes());
                out.extend_from_slice(&ext.data);
                out.resize(out.len().next_multiple_of(8), 0);
            }
            out.extend_from_slice(&EXT_END.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        out
    }
}

fn parse_extensions(head: &[u8], start: usize, end: usize) -> Result<Vec<Extension>> {
    let mut exts = Vec::new();
    let mut at = start;
    // v2 headers have no extensions unless there is room before the backing name;
    // qemu reads them the same way, stopping at the end marker.
    while at + 8 <= end {
        let kind = be32(head, at);
        let len = be32(head, at + 4) as usize;
        if kind == EXT_END {
            break;
        }
        let data_end = (at + 8)
            .checked_add(len)
            .filter(|&e| e <= end)
            .ok_or_else(|| invalid("header extension runs past the first cluster"))?;
        exts.push(Extension {
            kind,
            data: head[at + 8..data_end].to_vec(),
        });
        at = data_end.next_multiple_of(8);
    }
    Ok(exts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            version: 3,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            l1_size: 2,
            l1_table_offset: 65536,
            refcount_table_offset: 131072,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: INCOMPAT_COMPRESSION,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V3_HEADER_LENGTH,
            compression_type: CompressionType::Zstd,
            extensions: vec![Extension {
                kind: EXT_BACKING_FORMAT,
                data: b"raw".to_vec(),
            }],
            backing_file: None,
        };
        let mut bytes = h.to_bytes();
        bytes.resize(65536, 0);
        assert_eq!(Header::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn hostile_headers_are_refused_not_panicked_on() {
        let mut b = vec![0u8; 512];
        b[..4].copy_from_slice(MAGIC);
        b[7] = 3;
        b[23] = 30; // cluster_bits 30
        assert!(Header::parse(&b).is_err());
        b[23] = 16;
        b[103] = 201; // header_length not a multiple of 8
        assert!(Header::parse(&b).is_err());
        b[102] = 4; // header_length 1224: past the 512 bytes there are
        b[103] = 200;
        assert!(Header::parse(&b).is_err());
    }
}
