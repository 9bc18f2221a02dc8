//! VDI (VirtualBox): static and dynamic images, read only.
//!
//! A VDI file is a header, a block map of little-endian u32 entries (one per
//! 1 MiB block: the block's index in the data area, or a marker for "never
//! written" and "discarded"), and the data area.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::blocks::{
    BlockMap, Endian, Regions, Survey, read_blocks, read_u32_table, status_blocks,
};
use crate::inspect::Structure;
use crate::{Allocation, DiskRead, Error, Format, ImageInfo, Result};

const FORMAT: &str = "vdi";
pub const SIGNATURE: u32 = 0xbeda_107f;
/// Version 1.1, the only one VirtualBox has written since 2008 (and qemu reads).
pub const VERSION_1_1: u32 = 0x0001_0001;
pub const TYPE_DYNAMIC: u32 = 1;
pub const TYPE_STATIC: u32 = 2;
pub const TYPE_UNDO: u32 = 3;
pub const TYPE_DIFF: u32 = 4;
/// Block map entries that mean "reads as zeros".
pub const BLOCK_UNALLOCATED: u32 = 0xffff_ffff;
pub const BLOCK_DISCARDED: u32 = 0xffff_fffe;
/// The pre-header text, signature, version and header size before the header proper.
const PREHEADER_LEN: u64 = 72;
/// Enough bytes for every header field kiln reads.
const HEADER_READ_LEN: usize = 512;
/// VirtualBox always writes 1 MiB blocks; accept powers of two in a range
/// that keeps offset arithmetic far from overflow.
const MIN_BLOCK_SIZE: u32 = 512;
const MAX_BLOCK_SIZE: u32 = 64 << 20;

/// The fields of a version 1.1 header that locate the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub header_size: u32,
    pub image_type: u32,
    pub offset_bmap: u32,
    pub offset_data: u32,
    pub sector_size: u32,
    pub disk_size: u64,
    pub block_size: u32,
    pub block_extra: u32,
    pub blocks_in_image: u32,
    pub blocks_allocated: u32,
    pub uuid_parent: [u8; 16],
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(FORMAT, reason)
}

impl Header {
    /// Parses the header from the first 512 bytes of the file and checks that
    /// its values are ones kiln can read safely.
    pub fn parse(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER_READ_LEN {
            return Err(invalid("file too short for a VDI header"));
        }
        if le32(b, 64) != SIGNATURE {
            return Err(invalid("no VDI signature at offset 64"));
        }
        let header = Header {
            version: le32(b, 68),
            header_size: le32(b, 72),
            image_type: le32(b, 76),
            offset_bmap: le32(b, 340),
            offset_data: le32(b, 344),
            sector_size: le32(b, 360),
            disk_size: u64::from_le_bytes(b[368..376].try_into().unwrap()),
            block_size: le32(b, 376),
            block_extra: le32(b, 380),
            blocks_in_image: le32(b, 384),
            blocks_allocated: le32(b, 388),
            uuid_parent: b[440..456].try_into().unwrap(),
        };
        header.validate()?;
        Ok(header)
    }

    fn validate(&self) -> Result<()> {
        if self.version != VERSION_1_1 {
            return Err(Error::unsupported(
                FORMAT,
                format!("version {:#x} (only 1.1 is read)", self.version),
            ));
        }
        if self.sector_size != 512 {
            return Err(invalid(format!(
                "sector size {} (must be 512)",
                self.sector_size
            )));
        }
        if !self.block_size.is_power_of_two()
            || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size)
        {
            return Err(invalid(format!("absurd block size {}", self.block_size)));
        }
        if self.block_extra != 0 {
            return Err(Error::unsupported(
                FORMAT,
                format!("block extra data ({} bytes)", self.block_extra),
            ));
        }
        if self.disk_size > self.blocks_in_image as u64 * self.block_size as u64 {
            return Err(invalid(format!(
                "disk size {} is larger than its {} blocks of {} bytes",
                self.disk_size, self.blocks_in_image, self.block_size
            )));
        }
        if (self.offset_bmap as u64) < PREHEADER_LEN + self.header_size as u64 {
            return Err(invalid(format!(
                "block map at {} overlaps the header",
                self.offset_bmap
            )));
        }
        if (self.offset_data as u64) < self.offset_bmap as u64 + self.map_bytes() {
            return Err(invalid(format!(
                "data area at {} overlaps the block map ({} bytes at {})",
                self.offset_data,
                self.map_bytes(),
                self.offset_bmap
            )));
        }
        Ok(())
    }

    pub fn map_bytes(&self) -> u64 {
        self.blocks_in_image as u64 * 4
    }

    /// The file offset of data block `entry` of the block map.
    pub fn block_offset(&self, entry: u32) -> u64 {
        self.offset_data as u64 + entry as u64 * self.block_size as u64
    }

    pub fn subformat(&self) -> &'static str {
        match self.image_type {
            TYPE_STATIC => "static",
            TYPE_DYNAMIC => "dynamic",
            TYPE_UNDO => "undo",
            TYPE_DIFF => "differencing",
            _ => "unknown",
        }
    }

    fn parent_uuid(&self) -> String {
        self.uuid_parent
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn read_header(file: &File) -> Result<Header> {
    let mut b = [0u8; HEADER_READ_LEN];
    file.read_exact_at(&mut b, 0)
        .map_err(|_| invalid("file too short for a VDI header"))?;
    Header::parse(&b)
}

fn read_map(file: &File, header: &Header, file_size: u64) -> Result<Vec<u32>> {
    let (offset, count) = (header.offset_bmap as u64, header.blocks_in_image as u64);
    read_u32_table(
        file,
        offset,
        count,
        file_size,
        Endian::Little,
        FORMAT,
        "block map",
    )
}

/// A VDI image opened for reading.
pub struct VdiReader {
    file: File,
    header: Header,
    map: Vec<u32>,
}

impl VdiReader {
    pub fn new(file: File) -> Result<Self> {
        let file_size = file.metadata()?.len();
        let header = read_header(&file)?;
        match header.image_type {
            TYPE_STATIC | TYPE_DYNAMIC => {}
            TYPE_DIFF => {
                return Err(Error::unsupported(
                    FORMAT,
                    format!("differencing image of parent {}", header.parent_uuid()),
                ));
            }
            other => return Err(Error::unsupported(FORMAT, format!("image type {other}"))),
        }
        let map = read_map(&file, &header, file_size)?;
        Ok(VdiReader { file, header, map })
    }
}

impl BlockMap for VdiReader {
    fn block_size(&self) -> u64 {
        self.header.block_size as u64
    }

    fn allocation(&self, index: u64) -> Result<Allocation> {
        Ok(match self.map[index as usize] {
            BLOCK_UNALLOCATED | BLOCK_DISCARDED => Allocation::Zero,
            _ => Allocation::Data,
        })
    }

    fn read_block(&self, index: u64, within: u64, buf: &mut [u8]) -> Result<()> {
        let offset = self.header.block_offset(self.map[index as usize]) + within;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            invalid(format!(
                "block {index} at file offset {offset} can not be read: {e}"
            ))
        })
    }
}

impl DiskRead for VdiReader {
    fn virtual_size(&self) -> u64 {
        self.header.disk_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        read_blocks(self, buf, offset)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        status_blocks(self, offset, len)
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            format: Format::Vdi,
            virtual_size: self.header.disk_size,
            cluster_size: Some(self.header.block_size as u64),
            subformat: Some(self.header.subformat().into()),
            ..Default::default()
        }
    }
}

/// Walks the header, block map and blocks without reading data.
fn survey(file: &File, file_size: u64) -> Survey {
    let header = match read_header(file) {
        Ok(h) => h,
        Err(e) => return Survey::failed(e),
    };
    let mut regions = Regions::new(file_size, header.block_size as u64);
    regions.claim("header", None, 0, PREHEADER_LEN + header.header_size as u64);
    if regions.claim(
        "block map",
        None,
        header.offset_bmap as u64,
        header.map_bytes(),
    ) {
        match read_map(file, &header, file_size) {
            Ok(map) => {
                for (index, &entry) in map.iter().enumerate() {
                    if entry != BLOCK_UNALLOCATED && entry != BLOCK_DISCARDED {
                        let offset = header.block_offset(entry);
                        regions.claim(
                            "data block",
                            Some(index as u64),
                            offset,
                            header.block_size as u64,
                        );
                    }
                }
            }
            Err(e) => regions.problem(e.to_string()),
        }
    }
    Survey {
        virtual_size: Some(header.disk_size),
        references: (header.image_type == TYPE_DIFF)
            .then(|| {
                format!(
                    "differencing image: refers to parent image {}",
                    header.parent_uuid()
                )
            })
            .into_iter()
            .collect(),
        problems: regions.finish(),
    }
}

/// Structural safety checks; see [`crate::inspect`].
pub fn inspect_structure(file: &File, file_size: u64) -> Structure {
    survey(file, file_size).into_structure()
}

/// Structural errors for `kiln img check`; empty when the image is clean.
pub fn check(file: &File) -> Result<Vec<String>> {
    Ok(survey(file, file.metadata()?.len()).problems)
}
