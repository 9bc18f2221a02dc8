//! Hosted sparse extents (`KDMV`): monolithicSparse, streamOptimized and the
//! extents of twoGbMaxExtentSparse. A grain directory (GD) points at grain
//! tables (GTs), whose entries point at grains: plain, or zlib-compressed
//! behind a grain marker in streamOptimized files.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::{Decompress, FlushDecompress, Status};

use super::FORMAT;
use super::descriptor::Descriptor;
use super::header::{
    FLAG_REDUNDANT_GD, FLAG_ZERO_GRAIN, GD_AT_END, GRAIN_MARKER_LEN, GTE_ZERO_GRAIN, HEADER_LEN,
    MARKER_FOOTER, SECTOR, SparseHeader, marker_kind,
};
use crate::blocks::{
    BlockMap, Endian, Regions, Survey, read_blocks, read_region, read_u32_table, status_blocks,
};
use crate::{Allocation, DiskRead, Error, Format, ImageInfo, Result};

/// Grain tables kept in memory (at most 256 KiB each); the cache is emptied
/// when full, which suits the sequential reads of convert.
const CACHED_TABLES: usize = 64;

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(FORMAT, reason)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A sector number from a header or table as a byte offset, refusing overflow.
fn sector_offset(sector: u64, what: &str) -> Result<u64> {
    sector
        .checked_mul(SECTOR)
        .ok_or_else(|| invalid(format!("{what} at sector {sector} overflows")))
}

/// The header that locates the tables: the one at the start, or for a stream
/// whose grain directory comes last, the footer near the end (then the flag
/// is true).
pub(super) fn read_header(file: &File, file_size: u64) -> Result<(SparseHeader, bool)> {
    let mut b = [0u8; HEADER_LEN];
    file.read_exact_at(&mut b, 0)
        .map_err(|_| invalid("file too short for a sparse extent header"))?;
    let header = SparseHeader::parse(&b)?;
    header.validate()?;
    if header.gd_offset != GD_AT_END {
        return Ok((header, false));
    }
    // The stream ends with: footer marker, footer (a header copy), end-of-stream marker.
    let Some(marker_at) = file_size.checked_sub(3 * SECTOR).filter(|&at| at >= SECTOR) else {
        return Err(invalid("stream too short for its footer"));
    };
    let mut marker = [0u8; SECTOR as usize];
    file.read_exact_at(&mut marker, marker_at)?;
    if marker_kind(&marker) != Some(MARKER_FOOTER) {
        return Err(invalid(
            "the grain directory is at the end, but the stream has no footer",
        ));
    }
    file.read_exact_at(&mut b, marker_at + SECTOR)?;
    let footer = SparseHeader::parse(&b)?;
    footer.validate()?;
    if footer.gd_offset == GD_AT_END {
        return Err(invalid("the footer does not locate the grain directory"));
    }
    Ok((footer, true))
}

/// The descriptor embedded in a sparse extent, if it has one.
pub(super) fn read_embedded_descriptor(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
) -> Result<Option<Descriptor>> {
    if header.descriptor_offset == 0 || header.descriptor_sectors == 0 {
        return Ok(None);
    }
    let offset = sector_offset(header.descriptor_offset, "embedded descriptor")?;
    let bytes = read_region(
        file,
        offset,
        header.descriptor_sectors * SECTOR,
        file_size,
        FORMAT,
        "embedded descriptor",
    )?;
    let text = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    Descriptor::parse(&String::from_utf8_lossy(text)).map(Some)
}

fn read_gd(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
    offset_sectors: u64,
) -> Result<Vec<u32>> {
    let offset = sector_offset(offset_sectors, "grain directory")?;
    read_u32_table(
        file,
        offset,
        header.gd_entries(),
        file_size,
        Endian::Little,
        FORMAT,
        "grain directory",
    )
}

fn read_gt(file: &File, header: &SparseHeader, file_size: u64, sector: u32) -> Result<Vec<u32>> {
    let (offset, entries) = (sector as u64 * SECTOR, header.gtes_per_gt as u64);
    read_u32_table(
        file,
        offset,
        entries,
        file_size,
        Endian::Little,
        FORMAT,
        "grain table",
    )
}

/// Where a compressed grain's bytes lie: after its marker, or (without
/// markers) from its start, as much as a grain can take.
fn compressed_extent(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
    index: u64,
    at: u64,
) -> Result<(u64, u64)> {
    // zlib never grows data by more than a few bytes in 16 KiB.
    let max_len = header.grain_bytes() + header.grain_bytes() / 64 + 1024;
    if !header.has_markers() {
        return Ok((at, max_len.min(file_size.saturating_sub(at))));
    }
    let mut m = [0u8; GRAIN_MARKER_LEN as usize];
    file.read_exact_at(&mut m, at)
        .map_err(|_| invalid(format!("grain {index} at {at} lies past the end")))?;
    let lba = u64::from_le_bytes(m[..8].try_into().unwrap());
    let len = u32::from_le_bytes(m[8..12].try_into().unwrap()) as u64;
    if lba != index * header.grain_sectors {
        return Err(invalid(format!(
            "grain marker at {at} is for sector {lba}, but the grain table puts it at sector {}",
            index * header.grain_sectors
        )));
    }
    if len > max_len {
        return Err(invalid(format!(
            "compressed grain at {at} claims {len} bytes"
        )));
    }
    Ok((at + GRAIN_MARKER_LEN, len))
}

/// One hosted sparse extent, opened for reading.
pub struct SparseExtent {
    file: File,
    file_size: u64,
    pub(super) header: SparseHeader,
    pub(super) descriptor: Option<Descriptor>,
    gd: Vec<u32>,
    tables: Mutex<HashMap<u32, Arc<[u32]>>>,
    /// The last grain inflated: small reads of one compressed grain inflate it once.
    last_grain: Mutex<Option<(u64, Arc<[u8]>)>>,
}

impl SparseExtent {
    pub fn open(file: File) -> Result<Self> {
        let file_size = file.metadata()?.len();
        let (header, _) = read_header(&file, file_size)?;
        // A damaged embedded descriptor only loses facts `info` shows; the
        // inspector reports it.
        let descriptor = read_embedded_descriptor(&file, &header, file_size)
            .ok()
            .flatten();
        let gd = read_gd(&file, &header, file_size, header.gd_offset)?;
        Ok(SparseExtent {
            file,
            file_size,
            header,
            descriptor,
            gd,
            tables: Mutex::new(HashMap::new()),
            last_grain: Mutex::new(None),
        })
    }

    /// The grain table entry of grain `index`: 0 when its table is absent.
    fn grain_entry(&self, index: u64) -> Result<u32> {
        let per_table = self.header.gtes_per_gt as u64;
        let Some(&table_sector) = self.gd.get((index / per_table) as usize) else {
            return Err(invalid(format!(
                "grain {index} lies beyond the grain directory"
            )));
        };
        if table_sector == 0 {
            return Ok(0);
        }
        let cached = lock(&self.tables).get(&table_sector).cloned();
        let table = match cached {
            Some(t) => t,
            None => {
                let t: Arc<[u32]> =
                    read_gt(&self.file, &self.header, self.file_size, table_sector)?.into();
                let mut tables = lock(&self.tables);
                if tables.len() >= CACHED_TABLES {
                    tables.clear();
                }
                tables.insert(table_sector, Arc::clone(&t));
                t
            }
        };
        Ok(table[(index % per_table) as usize])
    }

    fn inflate_grain(&self, index: u64, entry: u32) -> Result<Arc<[u8]>> {
        if let Some((cached, grain)) = &*lock(&self.last_grain)
            && *cached == index
        {
            return Ok(Arc::clone(grain));
        }
        let at = entry as u64 * SECTOR;
        let (start, len) = compressed_extent(&self.file, &self.header, self.file_size, index, at)?;
        let compressed = read_region(
            &self.file,
            start,
            len,
            self.file_size,
            FORMAT,
            "compressed grain",
        )?;
        let mut grain = vec![0u8; self.header.grain_bytes() as usize];
        let mut inflater = Decompress::new(true);
        match inflater.decompress(&compressed, &mut grain, FlushDecompress::Finish) {
            // A short grain (the disk's last) reads as zeros past its data.
            Ok(Status::StreamEnd) => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "compressed grain {index} at {at} is truncated or too large"
                )));
            }
            Err(e) => return Err(invalid(format!("compressed grain {index} at {at}: {e}"))),
        }
        let grain: Arc<[u8]> = grain.into();
        *lock(&self.last_grain) = Some((index, Arc::clone(&grain)));
        Ok(grain)
    }

    pub fn info(&self) -> ImageInfo {
        let d = self.descriptor.as_ref();
        let default_type = if self.header.compressed() {
            "streamOptimized"
        } else {
            "monolithicSparse"
        };
        let create_type = d.map(|d| d.create_type.clone()).filter(|t| !t.is_empty());
        let mut details = Vec::new();
        if let Some(d) = d {
            details.push(("cid".into(), d.cid.to_string()));
            details.push(("parent cid".into(), d.parent_cid.to_string()));
            if let Some(adapter) = d.ddb("ddb.adapterType") {
                details.push(("adapter type".into(), adapter.into()));
            }
        }
        details.push(("extent version".into(), self.header.version.to_string()));
        ImageInfo {
            format: Format::Vmdk,
            virtual_size: self.virtual_size(),
            cluster_size: Some(self.header.grain_bytes()),
            subformat: Some(create_type.unwrap_or_else(|| default_type.into())),
            compression: self.header.compressed().then(|| "zlib".into()),
            details,
            ..Default::default()
        }
    }
}

impl BlockMap for SparseExtent {
    fn block_size(&self) -> u64 {
        self.header.grain_bytes()
    }

    fn allocation(&self, index: u64) -> Result<Allocation> {
        Ok(match self.grain_entry(index)? {
            0 => Allocation::Zero,
            GTE_ZERO_GRAIN if self.header.flags & FLAG_ZERO_GRAIN != 0 => Allocation::Zero,
            _ => Allocation::Data,
        })
    }

    fn read_block(&self, index: u64, within: u64, buf: &mut [u8]) -> Result<()> {
        let entry = self.grain_entry(index)?;
        if self.header.compressed() {
            let grain = self.inflate_grain(index, entry)?;
            buf.copy_from_slice(&grain[within as usize..within as usize + buf.len()]);
        } else {
            let at = entry as u64 * SECTOR + within;
            self.file
                .read_exact_at(buf, at)
                .map_err(|e| invalid(format!("grain {index} at {at}: {e}")))?;
        }
        Ok(())
    }
}

impl DiskRead for SparseExtent {
    fn virtual_size(&self) -> u64 {
        self.header.capacity * SECTOR
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        read_blocks(self, buf, offset)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        status_blocks(self, offset, len)
    }

    fn info(&self) -> ImageInfo {
        SparseExtent::info(self)
    }
}

/// Walks a sparse extent's header, tables and grain markers without reading
/// grain data; returns the embedded descriptor for the caller to judge.
pub(super) fn survey(file: &File, file_size: u64) -> (Survey, Option<Descriptor>) {
    let (header, in_footer) = match read_header(file, file_size) {
        Ok(h) => h,
        Err(e) => return (Survey::failed(e), None),
    };
    let mut survey = Survey {
        virtual_size: Some(header.capacity * SECTOR),
        ..Default::default()
    };
    let mut regions = Regions::new(file_size, SECTOR);
    regions.claim("header", None, 0, SECTOR);
    if in_footer {
        regions.claim("footer", None, file_size - 3 * SECTOR, 3 * SECTOR);
    }
    let descriptor = match read_embedded_descriptor(file, &header, file_size) {
        Ok(d) => {
            if d.is_some() {
                regions.claim(
                    "embedded descriptor",
                    None,
                    header.descriptor_offset * SECTOR,
                    header.descriptor_sectors * SECTOR,
                );
            }
            d
        }
        Err(e) => {
            regions.problem(e.to_string());
            None
        }
    };
    let gd = survey_gd(
        file,
        &header,
        file_size,
        header.gd_offset,
        "grain directory",
        &mut regions,
    );
    if header.flags & FLAG_REDUNDANT_GD != 0 {
        let rgd = survey_gd(
            file,
            &header,
            file_size,
            header.rgd_offset,
            "redundant grain directory",
            &mut regions,
        );
        if let (Some(gd), Some(rgd)) = (&gd, &rgd) {
            compare_redundant(file, &header, file_size, gd, rgd, &mut regions);
        }
    }
    if let Some(gd) = gd {
        survey_grains(file, &header, file_size, &gd, &mut regions);
    }
    survey.problems = regions.finish();
    (survey, descriptor)
}

/// Claims a grain directory and its tables; returns the directory.
fn survey_gd(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
    offset_sectors: u64,
    what: &'static str,
    regions: &mut Regions,
) -> Option<Vec<u32>> {
    let offset = offset_sectors.saturating_mul(SECTOR);
    if !regions.claim(what, None, offset, header.gd_entries().saturating_mul(4)) {
        return None;
    }
    match read_gd(file, header, file_size, offset_sectors) {
        Ok(gd) => {
            for (i, &gt) in gd.iter().enumerate().filter(|(_, gt)| **gt != 0) {
                regions.claim(
                    if what == "grain directory" {
                        "grain table"
                    } else {
                        "redundant grain table"
                    },
                    Some(i as u64),
                    gt as u64 * SECTOR,
                    header.gt_bytes(),
                );
            }
            Some(gd)
        }
        Err(e) => {
            regions.problem(e.to_string());
            None
        }
    }
}

/// The redundant grain tables must say what the primary ones say.
fn compare_redundant(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
    gd: &[u32],
    rgd: &[u32],
    regions: &mut Regions,
) {
    // Comparing reads two tables an entry: stop where more tables than the
    // file can hold would be read.
    let most = (file_size / header.gt_bytes()) as usize + 1;
    for (i, (&a, &b)) in gd.iter().zip(rgd).enumerate().take(most) {
        let same = match (a, b) {
            (0, 0) => true,
            (0, _) | (_, 0) => false,
            _ => matches!(
                (read_gt(file, header, file_size, a), read_gt(file, header, file_size, b)),
                (Ok(x), Ok(y)) if x == y
            ),
        };
        if !same {
            regions.problem(format!("grain table {i} differs from its redundant copy"));
        }
    }
}

/// Claims every grain the tables point at (reading compressed grains' markers
/// for their length).
fn survey_grains(
    file: &File,
    header: &SparseHeader,
    file_size: u64,
    gd: &[u32],
    regions: &mut Regions,
) {
    let mut seen_tables = std::collections::HashSet::new();
    let grains = header.capacity.div_ceil(header.grain_sectors);
    for (t, &gt) in gd.iter().enumerate() {
        // A table shared by two directory entries is reported as an overlap; walk it once.
        if gt == 0 || !seen_tables.insert(gt) {
            continue;
        }
        // Past this point tables or grains must overlap, which is reported:
        // walking on would only cost time.
        if regions.is_full() {
            return;
        }
        let Ok(table) = read_gt(file, header, file_size, gt) else {
            continue;
        };
        for (j, &entry) in table.iter().enumerate() {
            let index = t as u64 * header.gtes_per_gt as u64 + j as u64;
            if entry == 0
                || index >= grains
                || (entry == GTE_ZERO_GRAIN && header.flags & FLAG_ZERO_GRAIN != 0)
            {
                continue;
            }
            let at = entry as u64 * SECTOR;
            let len = if !header.compressed() {
                header.grain_bytes()
            } else if !header.has_markers() {
                // Without a marker a compressed grain's length is unknown.
                SECTOR
            } else {
                match compressed_extent(file, header, file_size, index, at) {
                    Ok((start, len)) => start + len - at,
                    Err(e) => {
                        regions.problem(e.to_string());
                        continue;
                    }
                }
            };
            regions.claim("grain", Some(index), at, len);
        }
    }
}
