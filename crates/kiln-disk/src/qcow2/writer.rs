//! Writing qcow2 as a stream: header and L1 first (filled in at the end),
//! then data clusters with each L2 table after the data it maps, then the
//! refcount blocks and table, sized to cover everything including themselves.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::compress::compress_cluster;
use super::header::{self, CompressionType, Header, INCOMPAT_COMPRESSION};
use super::tables::{COPIED, CompressedLayout};
use crate::parallel::OrderedPool;
use crate::writeback::Writeback;
use crate::{Compression, CreateOptions, DiskWrite, Error, Result};

/// kiln writes 16-bit refcounts, as qemu does by default.
const REFCOUNT_ORDER: u32 = 4;
const MAX_REFCOUNT: u16 = u16::MAX;
/// Appended bytes are gathered into writes of this size.
const WRITE_BUFFER: usize = 8 << 20;
/// Runs at least this long are written from the caller's buffer, uncopied.
const WRITE_THROUGH: usize = 1 << 20;

/// Sequential output with the current end position.
struct Appender {
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    writeback: Writeback,
}

impl Appender {
    fn pos(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() >= WRITE_THROUGH {
            // A long run goes straight from the caller's buffer: no copy.
            self.flush()?;
            self.write_through(bytes)?;
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }
    fn align(&mut self, to: u64) -> Result<()> {
        let pad = self.pos().next_multiple_of(to) - self.pos();
        self.buf.resize(self.buf.len() + pad as usize, 0);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        self.write_through(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
    /// Writes `bytes` at the end, which must have no buffered bytes before it.
    fn write_through(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all_at(bytes, self.buf_start)?;
        self.writeback
            .wrote(&self.file, self.buf_start, bytes.len() as u64);
        self.buf_start += bytes.len() as u64;
        Ok(())
    }
}

type CompressJob = (u64, Vec<u8>);
type CompressResult = (u64, Vec<u8>, bool);

pub struct Qcow2Writer {
    out: Appender,
    header: Header,
    layout: CompressedLayout,
    l1: Vec<u64>,
    /// The L2 table being filled: its L1 index and entries.
    l2: Option<(u64, Vec<u64>)>,
    /// Refcount of every host cluster written so far.
    refcounts: Vec<u16>,
    pool: Option<OrderedPool<CompressJob, CompressResult>>,
}

impl Qcow2Writer {
    pub fn new(file: File, opts: &CreateOptions, size: u64) -> Result<Self> {
        let cs = opts.cluster_size;
        if !cs.is_power_of_two() || !(512..=2 << 20).contains(&cs) {
            return Err(Error::Usage(format!(
                "cluster size {cs} must be a power of two from 512 to 2M"
            )));
        }
        let compression_type = match opts.compression_type {
            Compression::Zlib => CompressionType::Zlib,
            Compression::Zstd if opts.qcow2_v2 => {
                return Err(Error::Usage(
                    "zstd compression needs compat=1.1 (qcow2 v3)".into(),
                ));
            }
            Compression::Zstd => CompressionType::Zstd,
        };
        let (version, header_length, incompatible) = if opts.qcow2_v2 {
            (2, header::V2_HEADER_LENGTH, 0)
        } else {
            let bit = if compression_type == CompressionType::Zstd {
                INCOMPAT_COMPRESSION
            } else {
                0
            };
            (3, header::V3_HEADER_LENGTH, bit)
        };
        let mut header = Header {
            version,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: cs.trailing_zeros(),
            size,
            crypt_method: 0,
            l1_size: 0,
            l1_table_offset: cs,
            refcount_table_offset: 0,
            refcount_table_clusters: 0,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: incompatible,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: REFCOUNT_ORDER,
            header_length,
            compression_type,
            extensions: Vec::new(),
            backing_file: None,
        };
        let l1_entries = header.required_l1_entries();
        if l1_entries * 8 > header::MAX_L1_BYTES {
            return Err(Error::Usage(format!(
                "{size} bytes is too large for {cs}-byte clusters"
            )));
        }
        header.l1_size = l1_entries as u32;
        let l1_clusters = (l1_entries * 8).div_ceil(cs).max(1);
        let data_start = (1 + l1_clusters) * cs;
        let pool = opts.compress.then(|| {
            OrderedPool::new(
                opts.threads,
                move |(offset, data): CompressJob| match compress_cluster(compression_type, &data) {
                    Some(packed) => (offset, packed, true),
                    None => (offset, data, false),
                },
            )
        });
        Ok(Qcow2Writer {
            out: Appender {
                file,
                buf: Vec::with_capacity(WRITE_BUFFER + (2 << 20)),
                buf_start: data_start,
                writeback: Writeback::default(),
            },
            layout: CompressedLayout::new(header.cluster_bits),
            header,
            l1: vec![0; l1_entries as usize],
            l2: None,
            refcounts: vec![1; (1 + l1_clusters) as usize],
            pool,
        })
    }

    fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    fn add_ref(&mut self, host_cluster: u64) {
        let i = host_cluster as usize;
        if i >= self.refcounts.len() {
            self.refcounts.resize(i + 1, 0);
        }
        self.refcounts[i] += 1;
    }

    /// Makes the L2 table for guest `offset` current and returns the entry index in it.
    fn l2_slot(&mut self, offset: u64) -> Result<usize> {
        let cluster = offset / self.cluster_size();
        let entries = self.header.l2_entries();
        let l1_index = cluster / entries;
        if self.l2.as_ref().is_none_or(|(i, _)| *i != l1_index) {
            self.flush_l2()?;
            self.l2 = Some((l1_index, vec![0; entries as usize]));
        }
        Ok((cluster % entries) as usize)
    }

    fn flush_l2(&mut self) -> Result<()> {
        let Some((l1_index, table)) = self.l2.take() else {
            return Ok(());
        };
        let host = self.alloc_cluster()?;
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.out.append(&bytes)?;
        self.l1[l1_index as usize] = host | COPIED;
        Ok(())
    }

    /// Aligns the output to a cluster, counts that cluster and returns its offset.
    fn alloc_cluster(&mut self) -> Result<u64> {
        let cs = self.cluster_size();
        self.out.align(cs)?;
        let host = self.out.pos();
        self.add_ref(host / cs);
        Ok(host)
    }

    /// Places consecutive clusters starting at guest `offset` contiguously
    /// in the file; a short last cluster is padded to a whole one.
    fn place_clusters(&mut self, mut offset: u64, mut data: &[u8]) -> Result<()> {
        let cs = self.cluster_size();
        while !data.is_empty() {
            // One L2 table's worth at most: its table follows the data it maps.
            let slot = self.l2_slot(offset)?;
            let room = (self.header.l2_entries() - slot as u64) * cs;
            let (run, rest) = data.split_at(room.min(data.len() as u64) as usize);
            let host = self.alloc_cluster()?;
            let clusters = (run.len() as u64).div_ceil(cs);
            for c in 1..clusters {
                self.add_ref(host / cs + c);
            }
            self.out.append(run)?;
            let tail = (clusters * cs) as usize - run.len();
            if tail > 0 {
                self.out.append(&vec![0; tail])?;
            }
            let entries = &mut self.l2.as_mut().unwrap().1[slot..slot + clusters as usize];
            for (c, entry) in entries.iter_mut().enumerate() {
                *entry = (host + c as u64 * cs) | COPIED;
            }
            offset += run.len() as u64;
            data = rest;
        }
        Ok(())
    }

    /// Packs compressed bytes right after the previous ones, across cluster
    /// boundaries; every host cluster they touch is counted once more.
    fn place_compressed(&mut self, offset: u64, packed: &[u8]) -> Result<()> {
        let slot = self.l2_slot(offset)?;
        let cs = self.cluster_size();
        let start_cluster = self.out.pos() / cs;
        if self
            .refcounts
            .get(start_cluster as usize)
            .is_some_and(|&r| r == MAX_REFCOUNT)
        {
            self.out.align(cs)?;
        }
        let host = self.out.pos();
        self.out.append(packed)?;
        for c in host / cs..=(host + packed.len() as u64 - 1) / cs {
            self.add_ref(c);
        }
        self.l2.as_mut().unwrap().1[slot] = self.layout.encode(host, packed.len() as u64);
        Ok(())
    }

    fn deliver(&mut self, (offset, data, compressed): CompressResult) -> Result<()> {
        if compressed {
            self.place_compressed(offset, &data)
        } else {
            self.place_clusters(offset, &data)
        }
    }

    /// Writes refcount blocks and the refcount table after everything else.
    fn write_refcounts(&mut self) -> Result<()> {
        let cs = self.cluster_size();
        self.out.align(cs)?;
        let used = self.out.pos() / cs;
        let per_block = cs * 8 / (1 << REFCOUNT_ORDER);
        let (mut blocks, mut table_clusters) = (0u64, 0u64);
        loop {
            let total = used + blocks + table_clusters;
            let (b, t) = (
                total.div_ceil(per_block),
                (total.div_ceil(per_block) * 8).div_ceil(cs),
            );
            if (b, t) == (blocks, table_clusters) {
                break;
            }
            (blocks, table_clusters) = (b, t);
        }
        let total = (used + blocks + table_clusters) as usize;
        self.refcounts.resize(total, 0);
        self.refcounts[used as usize..].fill(1);
        let blocks_start = self.out.pos();
        let mut block = vec![0u8; cs as usize];
        for b in 0..blocks as usize {
            block.fill(0);
            let covered = self
                .refcounts
                .iter()
                .skip(b * per_block as usize)
                .take(per_block as usize);
            for (slot, r) in block.chunks_exact_mut(2).zip(covered) {
                slot.copy_from_slice(&r.to_be_bytes());
            }
            self.out.append(&block)?;
        }
        let mut table = vec![0u8; (table_clusters * cs) as usize];
        for b in 0..blocks {
            table[b as usize * 8..][..8].copy_from_slice(&(blocks_start + b * cs).to_be_bytes());
        }
        self.header.refcount_table_offset = self.out.pos();
        self.header.refcount_table_clusters = table_clusters as u32;
        self.out.append(&table)?;
        Ok(())
    }
}

impl DiskWrite for Qcow2Writer {
    fn granularity(&self) -> u64 {
        self.cluster_size()
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        debug_assert_eq!(offset % self.cluster_size(), 0);
        let Some(mut pool) = self.pool.take() else {
            return self.place_clusters(offset, data);
        };
        let cs = self.cluster_size() as usize;
        let mut result = Ok(());
        for (i, chunk) in data.chunks(cs).enumerate() {
            let mut cluster = chunk.to_vec();
            cluster.resize(cs, 0);
            let at = offset + (i * cs) as u64;
            result = pool.submit((at, cluster), &mut |done| self.deliver(done));
            if result.is_err() {
                break;
            }
        }
        self.pool = Some(pool);
        result
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(pool) = self.pool.take() {
            pool.finish(&mut |done| self.deliver(done))?;
        }
        self.flush_l2()?;
        self.write_refcounts()?;
        self.out.flush()?;
        let cs = self.cluster_size();
        let mut head = self.header.to_bytes();
        head.resize(cs as usize, 0);
        let l1: Vec<u8> = self.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        let file = &self.out.file;
        file.write_all_at(&head, 0)?;
        // The L1 area is whole clusters: zero it fully, then the entries.
        let mut area = vec![0u8; (l1.len() as u64).div_ceil(cs).max(1) as usize * cs as usize];
        area[..l1.len()].copy_from_slice(&l1);
        file.write_all_at(&area, cs)?;
        file.set_len(self.out.pos())?;
        file.sync_all()?;
        Ok(())
    }
}
