//! Reading a qcow2 image as a guest disk.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::compress::decompress_cluster;
use super::header::{self, Header, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY};
use super::snapshot::{Snapshot, read_snapshots};
use super::tables::{CompressedLayout, Mapping, OFFSET_MASK, be_u64s, decode_extended, decode_l2};
use crate::open::open_external;
use crate::{Allocation, DiskRead, Error, Format, ImageInfo, OpenOptions, Result};

/// How many L2 tables stay cached; 64 tables of 64 KiB map 32 GiB.
const L2_CACHE_TABLES: usize = 64;

pub struct Qcow2Reader {
    file: File,
    /// Where guest data lives: the image itself or its external data file.
    data_file: Option<File>,
    file_size: u64,
    header: Header,
    layout: CompressedLayout,
    l1: Vec<u64>,
    l2_cache: Mutex<HashMap<u64, Arc<Vec<u64>>>>,
    /// The last decompressed cluster, keyed by its host offset: unaligned
    /// reads of a compressed image decompress each cluster once.
    last_cluster: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    backing: Option<Box<dyn DiskRead>>,
    snapshots: Vec<Snapshot>,
}

/// Reads the first cluster (or the whole file when it is shorter) and parses
/// the header from it.
pub fn read_header(file: &File, file_size: u64) -> Result<Header> {
    let mut probe = vec![0u8; 4096.min(file_size) as usize];
    file.read_exact_at(&mut probe, 0)?;
    let bits = if probe.len() >= 24 {
        u32::from_be_bytes(probe[20..24].try_into().unwrap())
    } else {
        0
    };
    let cluster = 1u64 << bits.clamp(header::MIN_CLUSTER_BITS, header::MAX_CLUSTER_BITS);
    let mut head = vec![0u8; cluster.min(file_size) as usize];
    file.read_exact_at(&mut head, 0)?;
    Header::parse(&head)
}

/// Reads `count` big-endian u64 entries at `offset`, refusing tables that lie
/// outside the file (so a hostile header cannot make kiln allocate wildly).
pub fn read_table(
    file: &File,
    file_size: u64,
    offset: u64,
    count: u64,
    what: &str,
) -> Result<Vec<u64>> {
    let bytes = count
        .checked_mul(8)
        .filter(|&b| offset.checked_add(b).is_some_and(|end| end <= file_size));
    let Some(bytes) = bytes else {
        return Err(Error::invalid(
            "qcow2",
            format!("{what} at {offset:#x} ({count} entries) lies outside the file"),
        ));
    };
    let mut buf = vec![0u8; bytes as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(be_u64s(&buf))
}

impl Qcow2Reader {
    pub fn open(file: File, path: &Path, opts: &OpenOptions, depth: usize) -> Result<Self> {
        let file_size = file.metadata()?.len();
        let header = read_header(&file, file_size)?;
        if header.crypt_method != 0 {
            return Err(Error::unsupported("qcow2", "encrypted images"));
        }
        if header.l1_size as u64 * 8 > header::MAX_L1_BYTES {
            return Err(Error::invalid(
                "qcow2",
                format!("L1 table of {} entries is too large", header.l1_size),
            ));
        }
        if (header.l1_size as u64) < header.required_l1_entries() {
            return Err(Error::invalid(
                "qcow2",
                "L1 table too small for the virtual size",
            ));
        }
        let l1 = read_table(
            &file,
            file_size,
            header.l1_table_offset,
            header.l1_size as u64,
            "L1 table",
        )?;
        let data_file = if header.incompatible_features & INCOMPAT_DATA_FILE != 0 {
            let name = header.data_file().ok_or_else(|| {
                Error::invalid("qcow2", "external data file bit set but no file name")
            })?;
            if !opts.allow_external {
                return Err(Error::External {
                    format: "qcow2",
                    path: name,
                });
            }
            Some(File::open(crate::open::resolve_external(path, &name))?)
        } else {
            None
        };
        let backing = match &header.backing_file {
            None => None,
            Some(name) if !opts.allow_external => {
                return Err(Error::External {
                    format: "qcow2",
                    path: name.clone(),
                });
            }
            Some(name) => {
                let format = header.backing_format().map(|f| f.parse()).transpose()?;
                Some(open_external(path, name, format, opts, depth)?)
            }
        };
        let (snapshots, _) = read_snapshots(&file, file_size, &header)?;
        Ok(Qcow2Reader {
            layout: CompressedLayout::new(header.cluster_bits),
            file,
            data_file,
            file_size,
            header,
            l1,
            l2_cache: Mutex::new(HashMap::new()),
            last_cluster: Mutex::new(None),
            backing,
            snapshots,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn l2_table(&self, l1_index: u64) -> Result<Option<Arc<Vec<u64>>>> {
        let offset = self.l1[l1_index as usize] & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        if let Some(t) = self.l2_cache.lock().unwrap().get(&offset) {
            return Ok(Some(Arc::clone(t)));
        }
        let words = self.header.cluster_size() / 8;
        let table = Arc::new(read_table(
            &self.file,
            self.file_size,
            offset,
            words,
            "L2 table",
        )?);
        let mut cache = self.l2_cache.lock().unwrap();
        if cache.len() >= L2_CACHE_TABLES {
            cache.clear();
        }
        cache.insert(offset, Arc::clone(&table));
        Ok(Some(table))
    }

    /// The mapping at guest `offset` and how many bytes from there share it
    /// contiguously (data runs extend across clusters within one L2 table).
    fn resolve(&self, offset: u64, max: u64) -> Result<(Mapping, u64)> {
        let h = &self.header;
        let cs = h.cluster_size();
        let l2_entries = h.l2_entries();
        let cluster = offset / cs;
        let (l1_index, mut l2_index) = (cluster / l2_entries, cluster % l2_entries);
        let Some(table) = self.l2_table(l1_index)? else {
            // A whole L2 table's range is unallocated.
            let table_end = (l1_index + 1) * l2_entries * cs;
            return Ok((Mapping::Unallocated, (table_end - offset).min(max)));
        };
        let (sub_size, granule) = if h.extended_l2() {
            (cs / 32, cs / 32)
        } else {
            (cs, cs)
        };
        let lookup = |l2_index: u64, at: u64| -> Mapping {
            if h.extended_l2() {
                let (entry, bitmap) = (
                    table[l2_index as usize * 2],
                    table[l2_index as usize * 2 + 1],
                );
                decode_extended(
                    &self.layout,
                    entry,
                    bitmap,
                    ((at % cs) / sub_size) as u32,
                    sub_size,
                )
            } else {
                decode_l2(h, &self.layout, table[l2_index as usize])
            }
        };
        let first = lookup(l2_index, offset);
        let in_granule = granule - offset % granule;
        let mut len = in_granule;
        if let Mapping::Data(host) = first {
            let first = Mapping::Data(host + offset % granule);
            // Extend the run over following granules that continue it on disk.
            let mut next = offset + in_granule;
            while len < max && next / cs / l2_entries == l1_index {
                l2_index = (next / cs) % l2_entries;
                match lookup(l2_index, next) {
                    Mapping::Data(h2) if h2 == host + (next - offset + offset % granule) => {}
                    _ => break,
                }
                len += granule;
                next += granule;
            }
            return Ok((first, len.min(max)));
        }
        if matches!(first, Mapping::Compressed { .. }) {
            return Ok((first, (cs - offset % cs).min(max)));
        }
        // Unallocated and zero runs extend over granules of the same kind.
        let mut next = offset + in_granule;
        while len < max && next / cs / l2_entries == l1_index {
            if lookup((next / cs) % l2_entries, next) != first {
                break;
            }
            len += granule;
            next += granule;
        }
        Ok((first, len.min(max)))
    }

    fn read_compressed(&self, host: u64, len: u64) -> Result<Arc<Vec<u8>>> {
        if let Some((at, data)) = &*self.last_cluster.lock().unwrap()
            && *at == host
        {
            return Ok(Arc::clone(data));
        }
        // The descriptor rounds up to whole sectors; the file may end sooner.
        let available = self.file_size.saturating_sub(host).min(len);
        if available == 0 {
            return Err(Error::invalid(
                "qcow2",
                format!("compressed cluster at {host:#x} lies outside the file"),
            ));
        }
        let mut raw = vec![0u8; available as usize];
        self.file.read_exact_at(&mut raw, host)?;
        let data = Arc::new(decompress_cluster(
            self.header.compression_type,
            &raw,
            self.header.cluster_size() as usize,
        )?);
        *self.last_cluster.lock().unwrap() = Some((host, Arc::clone(&data)));
        Ok(data)
    }

    fn read_backing(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match &self.backing {
            None => buf.fill(0),
            Some(b) => {
                // A backing file smaller than the image reads as zeros past its end.
                let inside = b
                    .virtual_size()
                    .saturating_sub(offset)
                    .min(buf.len() as u64) as usize;
                if inside > 0 {
                    b.read_at(&mut buf[..inside], offset)?;
                }
                buf[inside..].fill(0);
            }
        }
        Ok(())
    }
}

impl DiskRead for Qcow2Reader {
    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (mapping, n) = self.resolve(at, (buf.len() - done) as u64)?;
            let piece = &mut buf[done..done + n as usize];
            match mapping {
                Mapping::Zero => piece.fill(0),
                Mapping::Unallocated => self.read_backing(piece, at)?,
                Mapping::Data(host) => {
                    let file = self.data_file.as_ref().unwrap_or(&self.file);
                    file.read_exact_at(piece, host).map_err(|e| {
                        Error::invalid(
                            "qcow2",
                            format!("data at host offset {host:#x} for guest offset {at:#x}: {e}"),
                        )
                    })?;
                }
                Mapping::Compressed { offset: host, len } => {
                    let cluster = self.read_compressed(host, len)?;
                    let within = (at % self.header.cluster_size()) as usize;
                    piece.copy_from_slice(&cluster[within..within + piece.len()]);
                }
            }
            done += n as usize;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        let (mapping, n) = self.resolve(offset, len)?;
        Ok(match mapping {
            Mapping::Zero => (Allocation::Zero, n),
            Mapping::Data(_) | Mapping::Compressed { .. } => (Allocation::Data, n),
            Mapping::Unallocated => match &self.backing {
                None => (Allocation::Zero, n),
                Some(b) if offset >= b.virtual_size() => (Allocation::Zero, n),
                Some(b) => b.block_status(offset, n.min(b.virtual_size() - offset))?,
            },
        })
    }

    fn info(&self) -> ImageInfo {
        let h = &self.header;
        let mut details = vec![("refcount bits".to_string(), h.refcount_bits().to_string())];
        if h.extended_l2() {
            details.push(("extended l2".into(), "true".into()));
        }
        if h.compatible_features & 1 != 0 {
            details.push(("lazy refcounts".into(), "true".into()));
        }
        ImageInfo {
            format: Format::Qcow2,
            virtual_size: h.size,
            cluster_size: Some(h.cluster_size()),
            subformat: Some(
                if h.version == 2 {
                    "compat 0.10"
                } else {
                    "compat 1.1"
                }
                .into(),
            ),
            compression: Some(
                match h.compression_type {
                    header::CompressionType::Zlib => "zlib",
                    header::CompressionType::Zstd => "zstd",
                }
                .into(),
            ),
            backing_file: h.backing_file.clone(),
            backing_format: h.backing_format(),
            external_files: h.data_file().into_iter().collect(),
            dirty: h.incompatible_features & INCOMPAT_DIRTY != 0,
            corrupt: h.incompatible_features & INCOMPAT_CORRUPT != 0,
            snapshots: self.snapshots.iter().map(Snapshot::info).collect(),
            details,
            ..Default::default()
        }
    }
}
