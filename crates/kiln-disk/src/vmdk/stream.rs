//! The streamOptimized writer: what OVA files and VMware imports take.
//!
//! The file is written strictly front to back: header and descriptor, then
//! each non-zero grain as a marker plus zlib data, each grain table after its
//! grains (behind a GT marker), then the grain directory, a footer holding
//! the real directory offset, and the end-of-stream marker. Grains are
//! compressed on every core, in order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::ZlibEncoder;

use super::descriptor::Descriptor;
use super::header::{
    COMPRESS_DEFLATE, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_TEST, GD_AT_END,
    GRAIN_MARKER_LEN, MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, SECTOR, SparseHeader,
    marker,
};
use crate::blocks::random_u64;
use crate::convert::is_zero;
use crate::inspect::MAX_VIRTUAL_SIZE;
use crate::parallel::OrderedPool;
use crate::{CreateOptions, DiskWrite, Error, Result};

/// 64 KiB grains and 512-entry tables, as VMware and qemu write them.
const GRAIN_SECTORS: u64 = 128;
const GTES_PER_GT: u32 = 512;
/// Sectors reserved for the embedded descriptor, as qemu reserves.
const DESCRIPTOR_SECTORS: u64 = 20;

/// A grain handed to the compressing workers: its index and its bytes.
type GrainJob = (u64, Vec<u8>);
/// A grain back from the workers: its index and zlib data (None: all zeros).
type GrainDone = (u64, std::io::Result<Option<Vec<u8>>>);

fn compress_grain((index, data): GrainJob) -> GrainDone {
    if is_zero(&data) {
        return (index, Ok(None));
    }
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), Compression::default());
    let compressed = encoder.write_all(&data).and_then(|()| encoder.finish());
    (index, compressed.map(Some))
}

/// The output side: the file, where it stands, and the tables so far.
struct Sink {
    out: BufWriter<File>,
    /// Bytes written so far: the offset of the next write.
    pos: u64,
    header: SparseHeader,
    gd: Vec<u32>,
    /// The grain table being filled and its directory index.
    table: Option<(u64, Vec<u32>)>,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next sector boundary.
    fn pad_to_sector(&mut self) -> Result<()> {
        let pad = self.pos.next_multiple_of(SECTOR) - self.pos;
        self.write(&vec![0u8; pad as usize])
    }

    fn sector(&self) -> Result<u32> {
        u32::try_from(self.pos / SECTOR)
            .map_err(|_| Error::Usage("streamOptimized output beyond 2 TiB of file".into()))
    }

    fn write_grain(&mut self, index: u64, zlib: &[u8]) -> Result<()> {
        let table_index = index / GTES_PER_GT as u64;
        if self.table.as_ref().is_some_and(|(t, _)| *t != table_index) {
            self.flush_table()?;
        }
        let sector = self.sector()?;
        let (_, table) = self
            .table
            .get_or_insert_with(|| (table_index, vec![0; GTES_PER_GT as usize]));
        table[(index % GTES_PER_GT as u64) as usize] = sector;
        let mut grain_marker = [0u8; GRAIN_MARKER_LEN as usize];
        grain_marker[..8].copy_from_slice(&(index * GRAIN_SECTORS).to_le_bytes());
        grain_marker[8..].copy_from_slice(&(zlib.len() as u32).to_le_bytes());
        self.write(&grain_marker)?;
        self.write(zlib)?;
        self.pad_to_sector()
    }

    /// Writes a table (or the directory) behind its marker.
    fn write_table(&mut self, kind: u32, entries: &[u32]) -> Result<u32> {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.write(&marker((bytes.len() as u64).div_ceil(SECTOR), kind))?;
        let sector = self.sector()?;
        self.write(&bytes)?;
        self.pad_to_sector()?;
        Ok(sector)
    }

    fn flush_table(&mut self) -> Result<()> {
        if let Some((index, table)) = self.table.take() {
            self.gd[index as usize] = self.write_table(MARKER_GT, &table)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush_table()?;
        let gd = std::mem::take(&mut self.gd);
        let gd_sector = self.write_table(MARKER_GD, &gd)?;
        self.write(&marker(1, MARKER_FOOTER))?;
        let footer = SparseHeader {
            gd_offset: gd_sector as u64,
            ..self.header.clone()
        };
        self.write(&footer.serialize())?;
        self.write(&marker(0, MARKER_EOS))?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
}

pub struct StreamWriter {
    pool: OrderedPool<GrainJob, GrainDone>,
    sink: Sink,
    size: u64,
    /// The index the next grain must reach: grains come in ascending order.
    next_grain: u64,
}

impl StreamWriter {
    pub fn new(file: File, path: &Path, opts: &CreateOptions, size: u64) -> Result<Self> {
        // VMware's limit is 62 TiB; the bound also keeps the directory small.
        if size > MAX_VIRTUAL_SIZE {
            return Err(Error::Usage(format!(
                "a VMDK holds at most {} TiB; {size} bytes is too large",
                MAX_VIRTUAL_SIZE >> 40
            )));
        }
        let capacity = size.div_ceil(SECTOR);
        let header = SparseHeader {
            version: 3,
            flags: FLAG_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity,
            grain_sectors: GRAIN_SECTORS,
            descriptor_offset: 1,
            descriptor_sectors: DESCRIPTOR_SECTORS,
            gtes_per_gt: GTES_PER_GT,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            // Grains start at the first grain boundary after the descriptor.
            overhead: (1 + DESCRIPTOR_SECTORS).next_multiple_of(GRAIN_SECTORS),
            unclean_shutdown: false,
            compress_algorithm: COMPRESS_DEFLATE,
        };
        header.validate()?;
        let name = path
            .file_name()
            .map_or("disk.vmdk".into(), |n| n.to_string_lossy().into_owned());
        let descriptor =
            Descriptor::stream_optimized(capacity, &name, &opts.vmdk_adapter, random_u64() as u32);
        let text = descriptor.to_text();
        if text.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
            return Err(Error::Usage(format!(
                "VMDK descriptor too long ({} bytes): shorten the file name",
                text.len()
            )));
        }
        let mut sink = Sink {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            gd: vec![0; header.gd_entries() as usize],
            header,
            table: None,
        };
        sink.write(&sink.header.serialize())?;
        sink.write(text.as_bytes())?;
        let overhead = sink.header.overhead * SECTOR;
        sink.write(&vec![0u8; (overhead - sink.pos) as usize])?;
        Ok(StreamWriter {
            pool: OrderedPool::new(opts.threads, compress_grain),
            sink,
            size,
            next_grain: 0,
        })
    }
}

fn deliver(sink: &mut Sink) -> impl FnMut(GrainDone) -> Result<()> + '_ {
    |(index, zlib)| match zlib? {
        Some(zlib) => sink.write_grain(index, &zlib),
        None => Ok(()),
    }
}

impl DiskWrite for StreamWriter {
    fn granularity(&self) -> u64 {
        GRAIN_SECTORS * SECTOR
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let grain = self.granularity();
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= self.size);
        if !offset.is_multiple_of(grain) || offset / grain < self.next_grain || end.is_none() {
            return Err(Error::Usage(format!(
                "streamOptimized takes whole grains in ascending order within the disk: not {} bytes at {offset}",
                data.len()
            )));
        }
        for (i, chunk) in data.chunks(grain as usize).enumerate() {
            let index = offset / grain + i as u64;
            let mut bytes = chunk.to_vec();
            // A short grain only ends the disk; it is stored whole.
            bytes.resize(grain as usize, 0);
            self.pool
                .submit((index, bytes), &mut deliver(&mut self.sink))?;
            self.next_grain = index + 1;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let StreamWriter { pool, mut sink, .. } = *self;
        pool.finish(&mut deliver(&mut sink))?;
        sink.finish()
    }
}
