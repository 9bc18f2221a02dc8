//! The VHD footer, the dynamic-disk header and CHS geometry, as plain data.
//! Every integer is big-endian.

use crate::{Error, Result};

pub const FOOTER_LEN: u64 = 512;
pub const DYNAMIC_HEADER_LEN: u64 = 1024;
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub const DYNAMIC_COOKIE: &[u8; 8] = b"cxsparse";
/// The data offset of a fixed disk: there is no dynamic header.
pub const NO_DATA_OFFSET: u64 = u64::MAX;
pub const TYPE_FIXED: u32 = 2;
pub const TYPE_DYNAMIC: u32 = 3;
pub const TYPE_DIFFERENCING: u32 = 4;
/// A BAT entry for a block never written.
pub const BAT_UNALLOCATED: u32 = u32::MAX;
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// The largest CHS geometry: 65535 cylinders, 16 heads, 255 sectors a track.
pub const MAX_GEOMETRY: Geometry = Geometry {
    cylinders: 65535,
    heads: 16,
    sectors: 255,
};
/// The largest disk qemu (and Virtual PC) accept: 2040 GiB.
pub const MAX_SECTORS: u64 = 0xff00_0000;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;

const FORMAT: &str = "vhd";

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// One's complement of the byte sum, with the checksum field itself counted as zero.
pub fn checksum(bytes: &[u8], checksum_at: usize) -> u32 {
    let sum = bytes.iter().enumerate().fold(0u32, |sum, (i, &b)| {
        if (checksum_at..checksum_at + 4).contains(&i) {
            sum
        } else {
            sum.wrapping_add(b as u32)
        }
    });
    !sum
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Geometry {
    pub fn total_sectors(self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64
    }

    /// The geometry the VHD specification derives from a sector count
    /// (rounding down: it may cover fewer sectors than asked for).
    pub fn for_sectors(total: u64) -> Geometry {
        let total = total.min(MAX_GEOMETRY.total_sectors());
        let (sectors, heads, cylinders_times_heads) = if total >= 65535 * 16 * 63 {
            (255, 16, total / 255)
        } else {
            let mut sectors = 17;
            let mut cth = total / sectors;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                sectors = 31;
                heads = 16;
                cth = total / sectors;
            }
            if cth >= heads * 1024 {
                sectors = 63;
                heads = 16;
                cth = total / sectors;
            }
            (sectors, heads, cth)
        };
        Geometry {
            cylinders: (cylinders_times_heads / heads) as u16,
            heads: heads as u8,
            sectors: sectors as u8,
        }
    }
}

/// The size and geometry of a new disk of `size` bytes, as qemu-img makes
/// them: without `force_size` the size grows to the next whole CHS geometry
/// (what Virtual PC reads); with it the size is kept (rounded up to a
/// sector) and the geometry is the maximum, which tells readers to believe
/// the size field.
pub fn new_disk_size(size: u64, force_size: bool) -> Result<(u64, Geometry)> {
    let sectors = size.div_ceil(512);
    if sectors > MAX_SECTORS {
        return Err(Error::Usage(format!(
            "a VHD holds at most 2040 GiB; {size} bytes is too large"
        )));
    }
    if force_size {
        return Ok((sectors * 512, MAX_GEOMETRY));
    }
    let mut geometry = Geometry::for_sectors(sectors);
    let mut extra = 1;
    while geometry.total_sectors() < sectors && geometry != MAX_GEOMETRY {
        geometry = Geometry::for_sectors(sectors + extra);
        extra += 1;
    }
    if geometry == MAX_GEOMETRY {
        Ok((sectors * 512, geometry))
    } else {
        Ok((geometry.total_sectors() * 512, geometry))
    }
}

/// Azure takes only fixed VHDs whose virtual size is a whole number of MiB.
pub const AZURE_SIZE_UNIT: u64 = 1 << 20;

/// The size to give a disk for Azure: `size` rounded up to a whole MiB.
pub fn azure_size(size: u64) -> u64 {
    size.div_ceil(AZURE_SIZE_UNIT) * AZURE_SIZE_UNIT
}

/// Refuses a virtual size Azure would reject, naming the size to use instead.
pub fn check_azure_size(size: u64) -> Result<()> {
    if size.is_multiple_of(AZURE_SIZE_UNIT) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "Azure needs a virtual size that is a whole number of MiB; {size} is not (resize to {} first)",
            azure_size(size)
        )))
    }
}

/// The 512-byte footer at the end of every VHD (and copied at the start of
/// dynamic ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub features: u32,
    pub version: u32,
    pub data_offset: u64,
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_os: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Geometry,
    pub disk_type: u32,
    pub checksum: u32,
    pub uuid: [u8; 16],
    pub saved_state: u8,
}

impl Footer {
    /// A footer for a new disk; `creator_app` "kiln", host OS "Wi2k" as
    /// Windows-made disks carry.
    pub fn new(disk_type: u32, size: u64, geometry: Geometry, uuid: [u8; 16]) -> Footer {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Footer {
            features: 2,
            version: 0x0001_0000,
            data_offset: if disk_type == TYPE_FIXED {
                NO_DATA_OFFSET
            } else {
                FOOTER_LEN
            },
            timestamp: now.saturating_sub(VHD_EPOCH) as u32,
            creator_app: *b"kiln",
            creator_version: 0x0001_0000,
            creator_os: *b"Wi2k",
            original_size: size,
            current_size: size,
            geometry,
            disk_type,
            checksum: 0,
            uuid,
            saved_state: 0,
        }
    }

    pub fn parse(b: &[u8; FOOTER_LEN as usize]) -> Result<Footer> {
        if &b[..8] != FOOTER_COOKIE {
            return Err(Error::invalid(FORMAT, "no \"conectix\" footer"));
        }
        Ok(Footer {
            features: be32(b, 8),
            version: be32(b, 12),
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app: b[28..32].try_into().unwrap(),
            creator_version: be32(b, 32),
            creator_os: b[36..40].try_into().unwrap(),
            original_size: be64(b, 40),
            current_size: be64(b, 48),
            geometry: Geometry {
                cylinders: be16(b, 56),
                heads: b[58],
                sectors: b[59],
            },
            disk_type: be32(b, 60),
            checksum: be32(b, 64),
            uuid: b[68..84].try_into().unwrap(),
            saved_state: b[84],
        })
    }

    /// The footer's bytes, with its checksum computed.
    pub fn serialize(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[..8].copy_from_slice(FOOTER_COOKIE);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_os);
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.cylinders.to_be_bytes());
        b[58] = self.geometry.heads;
        b[59] = self.geometry.sectors;
        b[60..64].copy_from_slice(&self.disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&self.uuid);
        b[84] = self.saved_state;
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// The guest size, decided as qemu decides it: Virtual PC sized disks by
    /// their CHS geometry, Hyper-V and others by the size field. qemu (and
    /// so kiln) believes the size field for the creators known to use it and
    /// whenever the geometry is the maximum; otherwise the geometry.
    pub fn virtual_size(&self) -> u64 {
        let by_size_field = matches!(
            &self.creator_app,
            b"win " | b"qem2" | b"d2v " | b"CTXS" | b"tap\0"
        ) || self.geometry == MAX_GEOMETRY;
        if by_size_field {
            self.current_size / 512 * 512
        } else {
            self.geometry.total_sectors() * 512
        }
    }
}

/// One parent locator of a differencing disk's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    pub platform_code: [u8; 4],
    pub data_space: u32,
    pub data_length: u32,
    pub data_offset: u64,
}

/// The 1024-byte header of dynamic and differencing disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    pub parent_uuid: [u8; 16],
    pub parent_name: String,
    pub parent_locators: Vec<ParentLocator>,
}

impl DynamicHeader {
    pub fn new(table_offset: u64, max_table_entries: u32, block_size: u32) -> DynamicHeader {
        DynamicHeader {
            table_offset,
            max_table_entries,
            block_size,
            checksum: 0,
            parent_uuid: [0; 16],
            parent_name: String::new(),
            parent_locators: Vec::new(),
        }
    }

    pub fn parse(b: &[u8; DYNAMIC_HEADER_LEN as usize]) -> Result<DynamicHeader> {
        if &b[..8] != DYNAMIC_COOKIE {
            return Err(Error::invalid(
                FORMAT,
                "no \"cxsparse\" dynamic disk header",
            ));
        }
        let name_units: Vec<u16> = b[64..576]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let name_len = name_units
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(name_units.len());
        let parent_locators = b[576..768]
            .chunks_exact(24)
            .filter(|e| be32(e, 0) != 0)
            .map(|e| ParentLocator {
                platform_code: e[..4].try_into().unwrap(),
                data_space: be32(e, 4),
                data_length: be32(e, 8),
                data_offset: be64(e, 16),
            })
            .collect();
        Ok(DynamicHeader {
            table_offset: be64(b, 16),
            max_table_entries: be32(b, 28),
            block_size: be32(b, 32),
            checksum: be32(b, 36),
            parent_uuid: b[40..56].try_into().unwrap(),
            parent_name: String::from_utf16_lossy(&name_units[..name_len]),
            parent_locators,
        })
    }

    /// The header's bytes, with its checksum computed. (Parent fields are
    /// never written: kiln does not create differencing disks.)
    pub fn serialize(&self) -> [u8; DYNAMIC_HEADER_LEN as usize] {
        let mut b = [0u8; DYNAMIC_HEADER_LEN as usize];
        b[..8].copy_from_slice(DYNAMIC_COOKIE);
        b[8..16].copy_from_slice(&NO_DATA_OFFSET.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        let sum = checksum(&b, 36);
        b[36..40].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Bytes of the sector bitmap in front of every block, padded to a sector.
    pub fn bitmap_len(&self) -> u64 {
        (self.block_size as u64 / 512).div_ceil(8).div_ceil(512) * 512
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_specification() {
        // Sizes and results checked against qemu-img create -f vpc.
        assert_eq!(new_disk_size(1000, false).unwrap().0, 34816);
        assert_eq!(new_disk_size(1 << 20, false).unwrap().0, 1_079_296);
        assert_eq!(new_disk_size(1 << 30, false).unwrap().0, 1_073_995_776);
        assert_eq!(new_disk_size(127 << 30, false).unwrap().0, 136_365_219_840);
        assert_eq!(new_disk_size(200 << 30, false).unwrap().0, 200 << 30);
        assert_eq!(new_disk_size(1000, true).unwrap(), (1024, MAX_GEOMETRY));
        assert!(new_disk_size(2041 << 30, false).is_err());
    }

    #[test]
    fn footer_round_trips_with_checksum() {
        let footer = Footer::new(
            TYPE_DYNAMIC,
            1 << 30,
            Geometry::for_sectors(1 << 21),
            [7; 16],
        );
        let bytes = footer.serialize();
        assert_eq!(
            checksum(&bytes, 64),
            u32::from_be_bytes(bytes[64..68].try_into().unwrap())
        );
        let parsed = Footer::parse(&bytes).unwrap();
        assert_eq!(
            Footer {
                checksum: 0,
                ..parsed
            },
            footer
        );
    }

    #[test]
    fn azure_sizes_are_whole_mib() {
        assert_eq!(azure_size(1), 1 << 20);
        assert_eq!(azure_size(3 << 20), 3 << 20);
        assert!(check_azure_size(3 << 20).is_ok());
        assert!(check_azure_size((3 << 20) + 512).is_err());
    }
}
