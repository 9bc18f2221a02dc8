//! VHD (qemu's "vpc"): fixed, dynamic and differencing images.
//!
//! A fixed VHD is the raw disk followed by a 512-byte footer. A dynamic one
//! starts with a copy of the footer, then a header locating the block
//! allocation table (BAT); each allocated block is a sector bitmap followed
//! by the block's data, and the footer ends the file. A differencing disk is
//! a dynamic one whose unallocated blocks (and sectors clear in the bitmap)
//! read from a parent VHD named in the header.

mod footer;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use footer::{
    AZURE_SIZE_UNIT, DynamicHeader, Footer, Geometry, ParentLocator, azure_size, check_azure_size,
    new_disk_size,
};
use footer::{
    BAT_UNALLOCATED, DEFAULT_BLOCK_SIZE, DYNAMIC_HEADER_LEN, FOOTER_LEN, TYPE_DIFFERENCING,
    TYPE_DYNAMIC, TYPE_FIXED, checksum,
};

use crate::blocks::{
    BlockMap, Endian, Regions, Survey, random_u64, read_blocks, read_region, read_u32_table,
    status_blocks,
};
use crate::inspect::Structure;
use crate::open::open_external;
use crate::raw::RawReader;
use crate::{
    Allocation, CreateOptions, DiskRead, DiskWrite, Error, Format, ImageInfo, OpenOptions, Result,
};

const FORMAT: &str = "vhd";
/// Block sizes kiln accepts: Hyper-V writes 512 KiB to 32 MiB, qemu 2 MiB.
const MIN_BLOCK_SIZE: u32 = 512;
const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// The longest parent locator kiln reads (a path in UTF-16).
const MAX_LOCATOR_LEN: u32 = 64 << 10;

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(FORMAT, reason)
}

fn read_footer_at(file: &File, offset: u64) -> Result<Footer> {
    let mut b = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut b, offset)?;
    let footer = Footer::parse(&b)?;
    let sum = checksum(&b, 64);
    if sum != footer.checksum {
        return Err(invalid(format!(
            "footer at offset {offset} has checksum {:#010x}, its bytes sum to {sum:#010x}",
            footer.checksum
        )));
    }
    Ok(footer)
}

/// The footer at the end of the file, or, when that one is damaged, the copy
/// a dynamic disk keeps at its start.
fn read_footer(file: &File, file_size: u64) -> Result<Footer> {
    if file_size < FOOTER_LEN {
        return Err(invalid(format!(
            "a {file_size}-byte file is too short for a VHD footer"
        )));
    }
    read_footer_at(file, file_size - FOOTER_LEN).or_else(|at_end| match read_footer_at(file, 0) {
        Ok(copy) if copy.disk_type != TYPE_FIXED => Ok(copy),
        _ => Err(at_end),
    })
}

fn read_dynamic_header(file: &File, footer: &Footer, file_size: u64) -> Result<DynamicHeader> {
    let bytes = read_region(
        file,
        footer.data_offset,
        DYNAMIC_HEADER_LEN,
        file_size,
        FORMAT,
        "dynamic disk header",
    )?;
    let header = DynamicHeader::parse(bytes.as_slice().try_into().unwrap())?;
    let size = footer.virtual_size();
    if !header.block_size.is_power_of_two()
        || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&header.block_size)
    {
        return Err(invalid(format!("absurd block size {}", header.block_size)));
    }
    if (header.max_table_entries as u64) * (header.block_size as u64) < size {
        return Err(invalid(format!(
            "the BAT's {} blocks of {} bytes do not cover the {size}-byte disk",
            header.max_table_entries, header.block_size
        )));
    }
    Ok(header)
}

fn read_bat(file: &File, header: &DynamicHeader, file_size: u64) -> Result<Vec<u32>> {
    let (offset, entries) = (header.table_offset, header.max_table_entries as u64);
    read_u32_table(file, offset, entries, file_size, Endian::Big, FORMAT, "BAT")
}

/// The parent a differencing disk names: the relative Windows path locator,
/// else the absolute one, else the file name in the header. Backslashes
/// become slashes and a Windows drive letter is dropped; a relative name
/// resolves next to the child, where copied image chains keep their parents.
fn parent_name(file: &File, header: &DynamicHeader, file_size: u64) -> Result<String> {
    for code in [b"W2ru", b"W2ku"] {
        let Some(locator) = header
            .parent_locators
            .iter()
            .find(|l| &l.platform_code == code)
        else {
            continue;
        };
        if locator.data_length > MAX_LOCATOR_LEN {
            return Err(invalid(format!(
                "parent locator of {} bytes",
                locator.data_length
            )));
        }
        let bytes = read_region(
            file,
            locator.data_offset,
            locator.data_length as u64,
            file_size,
            FORMAT,
            "parent locator",
        )?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let name = String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .replace('\\', "/");
        let name = match name.as_bytes() {
            [_, b':', ..] => name[2..].to_string(),
            _ => name,
        };
        if !name.is_empty() {
            return Ok(name);
        }
    }
    if header.parent_name.is_empty() {
        return Err(invalid("differencing disk names no parent"));
    }
    Ok(header.parent_name.clone())
}

/// The blocks of a dynamic or differencing disk.
struct DynamicBlocks {
    file: File,
    header: DynamicHeader,
    bat: Vec<u32>,
    /// A differencing disk's parent: what unallocated blocks and sectors read.
    parent: Option<Box<dyn DiskRead>>,
}

impl DynamicBlocks {
    fn block_offset(&self, index: u64) -> Option<u64> {
        match self.bat[index as usize] {
            BAT_UNALLOCATED => None,
            sector => Some(sector as u64 * 512),
        }
    }

    /// Reads guest bytes from the parent; past the parent's end they are zeros.
    fn read_parent(parent: &dyn DiskRead, buf: &mut [u8], offset: u64) -> Result<()> {
        let inside = parent
            .virtual_size()
            .saturating_sub(offset)
            .min(buf.len() as u64) as usize;
        buf[inside..].fill(0);
        if inside > 0 {
            parent.read_at(&mut buf[..inside], offset)?;
        }
        Ok(())
    }
}

impl BlockMap for DynamicBlocks {
    fn block_size(&self) -> u64 {
        self.header.block_size as u64
    }

    fn allocation(&self, index: u64) -> Result<Allocation> {
        Ok(
            if self.block_offset(index).is_some() || self.parent.is_some() {
                Allocation::Data
            } else {
                Allocation::Zero
            },
        )
    }

    fn read_block(&self, index: u64, within: u64, buf: &mut [u8]) -> Result<()> {
        let guest = index * self.block_size() + within;
        let (block, parent) = match (self.block_offset(index), self.parent.as_deref()) {
            (None, Some(parent)) => return Self::read_parent(parent, buf, guest),
            (None, None) => {
                buf.fill(0);
                return Ok(());
            }
            // Without a parent every sector of an allocated block is the
            // block's own, whatever the bitmap says (as qemu reads it).
            (Some(block), None) => {
                self.file
                    .read_exact_at(buf, block + self.header.bitmap_len() + within)?;
                return Ok(());
            }
            (Some(block), Some(parent)) => (block, parent),
        };
        let data = block + self.header.bitmap_len() + within;
        let bitmap = read_region(
            &self.file,
            block,
            self.header.bitmap_len(),
            u64::MAX,
            FORMAT,
            "sector bitmap",
        )?;
        let mut done = 0usize;
        while done < buf.len() {
            let sector = (within + done as u64) / 512;
            let n = ((512 - (within + done as u64) % 512) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            if bitmap[(sector / 8) as usize] & (0x80 >> (sector % 8)) != 0 {
                self.file.read_exact_at(piece, data + done as u64)?;
            } else {
                Self::read_parent(parent, piece, guest + done as u64)?;
            }
            done += n;
        }
        Ok(())
    }
}

enum Data {
    /// A fixed disk: the guest bytes are the file's first bytes.
    Fixed(RawReader),
    Dynamic(DynamicBlocks),
}

/// A VHD opened for reading.
pub struct VhdReader {
    footer: Footer,
    size: u64,
    data: Data,
    parent_name: Option<String>,
}

impl VhdReader {
    pub fn open(file: File, path: &Path, opts: &OpenOptions, depth: usize) -> Result<Self> {
        let file_size = file.metadata()?.len();
        let footer = read_footer(&file, file_size)?;
        let size = footer.virtual_size();
        let (data, parent_name) = match footer.disk_type {
            TYPE_FIXED => {
                if size > file_size - FOOTER_LEN {
                    return Err(invalid(format!(
                        "fixed disk of {size} bytes in a {file_size}-byte file: data would run into the footer"
                    )));
                }
                (Data::Fixed(RawReader::new(file)?), None)
            }
            TYPE_DYNAMIC | TYPE_DIFFERENCING => {
                let header = read_dynamic_header(&file, &footer, file_size)?;
                let bat = read_bat(&file, &header, file_size)?;
                let (parent, parent_name) = if footer.disk_type == TYPE_DIFFERENCING {
                    let name = parent_name(&file, &header, file_size)?;
                    if !opts.allow_external {
                        return Err(Error::External {
                            format: FORMAT,
                            path: name,
                        });
                    }
                    (
                        Some(open_external(path, &name, Some(Format::Vhd), opts, depth)?),
                        Some(name),
                    )
                } else {
                    (None, None)
                };
                (
                    Data::Dynamic(DynamicBlocks {
                        file,
                        header,
                        bat,
                        parent,
                    }),
                    parent_name,
                )
            }
            other => return Err(invalid(format!("unknown disk type {other}"))),
        };
        Ok(VhdReader {
            footer,
            size,
            data,
            parent_name,
        })
    }
}

impl DiskRead for VhdReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match &self.data {
            Data::Fixed(raw) => raw.read_at(buf, offset),
            Data::Dynamic(blocks) => read_blocks(blocks, buf, offset),
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        match &self.data {
            Data::Fixed(raw) => raw.block_status(offset, len),
            Data::Dynamic(blocks) => status_blocks(blocks, offset, len),
        }
    }

    fn info(&self) -> ImageInfo {
        let (subformat, cluster_size) = match &self.data {
            Data::Fixed(_) => ("fixed", None),
            Data::Dynamic(b) if b.parent.is_some() => {
                ("differencing", Some(b.header.block_size as u64))
            }
            Data::Dynamic(b) => ("dynamic", Some(b.header.block_size as u64)),
        };
        let creator = String::from_utf8_lossy(&self.footer.creator_app)
            .trim_end_matches(['\0', ' '])
            .to_string();
        ImageInfo {
            format: Format::Vhd,
            virtual_size: self.size,
            cluster_size,
            subformat: Some(subformat.into()),
            backing_file: self.parent_name.clone(),
            backing_format: self.parent_name.as_ref().map(|_| "vpc".into()),
            details: vec![
                ("creator".into(), creator),
                ("current size".into(), self.footer.current_size.to_string()),
            ],
            ..Default::default()
        }
    }
}

/// Where a dynamic disk being written stands.
struct DynamicLayout {
    header: DynamicHeader,
    bat: Vec<u32>,
    /// The file offset the next new block goes to.
    next_block: u64,
}

/// Writes a fixed or dynamic VHD.
pub struct VhdWriter {
    file: File,
    footer: Footer,
    dynamic: Option<DynamicLayout>,
}

/// Where a dynamic disk's BAT goes: after the footer copy and the header.
const TABLE_OFFSET: u64 = FOOTER_LEN + DYNAMIC_HEADER_LEN;

impl VhdWriter {
    /// A writer for a disk of at least `size` bytes: see [`new_disk_size`]
    /// for how the size is rounded.
    pub fn new(file: File, opts: &CreateOptions, size: u64) -> Result<Self> {
        let (size, geometry) = new_disk_size(size, opts.vhd_force_size)?;
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&random_u64().to_be_bytes());
        uuid[8..].copy_from_slice(&random_u64().to_be_bytes());
        // RFC 4122 version 4 (random), variant 1.
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        if opts.vhd_fixed {
            file.set_len(size + FOOTER_LEN)?;
            let footer = Footer::new(TYPE_FIXED, size, geometry, uuid);
            return Ok(VhdWriter {
                file,
                footer,
                dynamic: None,
            });
        }
        let entries = size.div_ceil(DEFAULT_BLOCK_SIZE as u64);
        let header = DynamicHeader::new(TABLE_OFFSET, entries as u32, DEFAULT_BLOCK_SIZE);
        let dynamic = DynamicLayout {
            header,
            bat: vec![BAT_UNALLOCATED; entries as usize],
            next_block: TABLE_OFFSET + (entries * 4).div_ceil(512) * 512,
        };
        let footer = Footer::new(TYPE_DYNAMIC, size, geometry, uuid);
        Ok(VhdWriter {
            file,
            footer,
            dynamic: Some(dynamic),
        })
    }

    fn size(&self) -> u64 {
        self.footer.current_size
    }
}

impl DiskWrite for VhdWriter {
    fn granularity(&self) -> u64 {
        match &self.dynamic {
            Some(d) => d.header.block_size as u64,
            None => 64 << 10,
        }
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.size())
        {
            return Err(Error::Usage(format!(
                "write of {} bytes at {offset} runs past the {}-byte disk",
                data.len(),
                self.size()
            )));
        }
        let Some(layout) = &mut self.dynamic else {
            self.file.write_all_at(data, offset)?;
            return Ok(());
        };
        let block_size = layout.header.block_size as u64;
        let bitmap_len = layout.header.bitmap_len();
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (index, within) = ((pos / block_size) as usize, pos % block_size);
            let n = ((block_size - within) as usize).min(data.len() - done);
            if layout.bat[index] == BAT_UNALLOCATED {
                // Every sector of a new block is marked present: the block is
                // written whole (the rest of it stays a hole, reading zeros).
                layout.bat[index] = (layout.next_block / 512) as u32;
                self.file
                    .write_all_at(&vec![0xff; bitmap_len as usize], layout.next_block)?;
                layout.next_block += bitmap_len + block_size;
            }
            let block = layout.bat[index] as u64 * 512;
            self.file
                .write_all_at(&data[done..done + n], block + bitmap_len + within)?;
            done += n;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let footer = self.footer.serialize();
        match &self.dynamic {
            None => self.file.write_all_at(&footer, self.size())?,
            Some(layout) => {
                let bat: Vec<u8> = layout.bat.iter().flat_map(|e| e.to_be_bytes()).collect();
                self.file.write_all_at(&footer, 0)?;
                self.file
                    .write_all_at(&layout.header.serialize(), FOOTER_LEN)?;
                self.file.write_all_at(&bat, TABLE_OFFSET)?;
                self.file.write_all_at(&footer, layout.next_block)?;
            }
        }
        self.file.sync_all()?;
        Ok(())
    }
}

/// Walks footer, header, BAT and blocks without following the parent.
fn survey(file: &File, file_size: u64) -> Survey {
    let footer = match read_footer(file, file_size) {
        Ok(f) => f,
        Err(e) => return Survey::failed(e),
    };
    let size = footer.virtual_size();
    let mut survey = Survey {
        virtual_size: Some(size),
        ..Default::default()
    };
    if footer.disk_type == TYPE_FIXED {
        if size > file_size - FOOTER_LEN {
            survey.problems.push(format!(
                "fixed disk of {size} bytes runs past the footer of a {file_size}-byte file"
            ));
        }
        return survey;
    }
    if footer.disk_type != TYPE_DYNAMIC && footer.disk_type != TYPE_DIFFERENCING {
        survey
            .problems
            .push(format!("unknown disk type {}", footer.disk_type));
        return survey;
    }
    let header = match read_dynamic_header(file, &footer, file_size) {
        Ok(h) => h,
        Err(e) => {
            survey.problems.push(e.to_string());
            return survey;
        }
    };
    if let Ok(bytes) = read_region(
        file,
        footer.data_offset,
        DYNAMIC_HEADER_LEN,
        file_size,
        FORMAT,
        "header",
    ) && checksum(&bytes, 36) != header.checksum
    {
        survey.problems.push(format!(
            "dynamic disk header at {} has a wrong checksum",
            footer.data_offset
        ));
    }
    let mut copy = [0u8; FOOTER_LEN as usize];
    if file.read_exact_at(&mut copy, 0).is_err()
        || Footer::parse(&copy).ok().as_ref() != Some(&footer)
    {
        survey
            .problems
            .push("the footer copy at offset 0 differs from the footer at the end".into());
    }
    let block_len = header.bitmap_len() + header.block_size as u64;
    let mut regions = Regions::new(file_size, block_len);
    regions.claim("footer copy", None, 0, FOOTER_LEN);
    regions.claim(
        "dynamic disk header",
        None,
        footer.data_offset,
        DYNAMIC_HEADER_LEN,
    );
    regions.claim("footer", None, file_size - FOOTER_LEN, FOOTER_LEN);
    let entries = header.max_table_entries as u64;
    if regions.claim("BAT", None, header.table_offset, entries * 4) {
        match read_bat(file, &header, file_size) {
            Ok(bat) => {
                for (index, &entry) in bat
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| **e != BAT_UNALLOCATED)
                {
                    regions.claim("block", Some(index as u64), entry as u64 * 512, block_len);
                }
            }
            Err(e) => regions.problem(e.to_string()),
        }
    }
    if footer.disk_type == TYPE_DIFFERENCING {
        for (i, locator) in header.parent_locators.iter().enumerate() {
            regions.claim(
                "parent locator",
                Some(i as u64),
                locator.data_offset,
                locator.data_length as u64,
            );
        }
        let name = parent_name(file, &header, file_size).unwrap_or_else(|e| e.to_string());
        survey
            .references
            .push(format!("differencing disk: refers to parent file {name:?}"));
    }
    survey.problems.extend(regions.finish());
    survey
}

/// Structural safety checks; see [`crate::inspect`].
pub fn inspect_structure(file: &File, file_size: u64) -> Structure {
    survey(file, file_size).into_structure()
}

/// Structural errors for `kiln img check`; empty when the image is clean.
pub fn check(file: &File) -> Result<Vec<String>> {
    Ok(survey(file, file.metadata()?.len()).problems)
}
