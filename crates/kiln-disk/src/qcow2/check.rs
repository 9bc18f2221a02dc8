//! Consistency check (refcounts against references, as `qemu-img check`) and
//! the structural safety walk the inspector runs on untrusted images.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::header::{self, Header, INCOMPAT_DATA_FILE};
use super::reader::{read_header, read_table};
use super::snapshot::read_snapshots;
use super::tables::{COMPRESSED, CompressedLayout, Mapping, OFFSET_MASK, decode_l2, get_refcount};
use crate::check::CheckReport;
use crate::inspect::Structure;
use crate::{Error, Result};

/// Every cluster the image references, and who references it.
pub(super) struct Walk<'a> {
    file: &'a File,
    file_size: u64,
    header: &'a Header,
    layout: CompressedLayout,
    /// References per host cluster inside the file.
    pub(super) refs: Vec<u16>,
    /// Which metadata structure owns a host cluster.
    metadata: HashMap<u64, &'static str>,
    pub(super) problems: Vec<String>,
    allocated: u64,
    compressed: u64,
}

impl<'a> Walk<'a> {
    fn cs(&self) -> u64 {
        self.header.cluster_size()
    }

    fn reference(&mut self, cluster: u64, what: &str) {
        match self.refs.get_mut(cluster as usize) {
            Some(r) => *r = r.saturating_add(1),
            None => self.problems.push(format!(
                "{what} at cluster {cluster} lies past the end of the file"
            )),
        }
    }

    /// Records a metadata range: bounds, alignment, overlaps with other structures.
    fn metadata(&mut self, offset: u64, len: u64, what: &'static str) -> bool {
        let cs = self.cs();
        if len == 0 {
            return true;
        }
        if !offset.is_multiple_of(cs) {
            self.problems
                .push(format!("{what} at {offset:#x} is not cluster aligned"));
            return false;
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.file_size)
        {
            self.problems.push(format!(
                "{what} at {offset:#x} ({len} bytes) lies outside the file"
            ));
            return false;
        }
        for c in offset / cs..(offset + len).div_ceil(cs) {
            if let Some(other) = self.metadata.insert(c, what)
                && !(other == what && what == "L2 table")
            {
                self.problems
                    .push(format!("{what} overlaps the {other} at cluster {c}"));
            }
            self.reference(c, what);
        }
        true
    }

    fn data(&mut self, first: u64, last: u64, what: &'static str) {
        for c in first..=last {
            if let Some(owner) = self.metadata.get(&c) {
                self.problems
                    .push(format!("{what} at cluster {c} overlaps the {owner}"));
            }
            self.reference(c, what);
        }
    }

    fn walk_l1(&mut self, l1: &[u64]) -> Result<()> {
        let cs = self.cs();
        let external_data = self.header.incompatible_features & INCOMPAT_DATA_FILE != 0;
        let entry_words = (self.header.l2_entry_bytes() / 8) as usize;
        for &l1_entry in l1 {
            let l2_offset = l1_entry & OFFSET_MASK;
            if l2_offset == 0 || !self.metadata(l2_offset, cs, "L2 table") {
                continue;
            }
            let table = read_table(self.file, self.file_size, l2_offset, cs / 8, "L2 table")?;
            for entry in table.chunks_exact(entry_words) {
                let mapping = if entry_words == 2 && entry[0] & COMPRESSED == 0 {
                    // Extended L2: a data cluster is referenced when any subcluster is allocated.
                    match entry[0] & OFFSET_MASK {
                        host if host != 0 && entry[1] as u32 != 0 => Mapping::Data(host),
                        _ => Mapping::Unallocated,
                    }
                } else {
                    decode_l2(self.header, &self.layout, entry[0])
                };
                match mapping {
                    Mapping::Data(host) => {
                        self.allocated += 1;
                        if external_data {
                            continue;
                        }
                        if !host.is_multiple_of(cs) {
                            self.problems
                                .push(format!("data cluster at {host:#x} is not cluster aligned"));
                        } else {
                            self.data(host / cs, host / cs, "data cluster");
                        }
                    }
                    Mapping::Compressed { offset, len } => {
                        self.allocated += 1;
                        self.compressed += 1;
                        self.data(offset / cs, (offset + len - 1) / cs, "compressed cluster");
                    }
                    Mapping::Zero | Mapping::Unallocated => {}
                }
            }
        }
        Ok(())
    }
}

/// Walks every table of the image, collecting references and structural problems.
pub(super) fn walk<'a>(file: &'a File, file_size: u64, header: &'a Header) -> Result<Walk<'a>> {
    let cs = header.cluster_size();
    let clusters = file_size.div_ceil(cs);
    if clusters > 1 << 31 {
        return Err(Error::unsupported(
            "qcow2",
            "more than 2^31 host clusters to check",
        ));
    }
    let mut w = Walk {
        file,
        file_size,
        header,
        layout: CompressedLayout::new(header.cluster_bits),
        refs: vec![0; clusters as usize],
        metadata: HashMap::new(),
        problems: Vec::new(),
        allocated: 0,
        compressed: 0,
    };
    w.metadata(0, cs, "header");
    let l1_bytes = header.l1_size as u64 * 8;
    if l1_bytes > header::MAX_L1_BYTES {
        w.problems.push(format!(
            "L1 table of {} entries exceeds qemu's limit",
            header.l1_size
        ));
        return Ok(w);
    }
    if (header.l1_size as u64) < header.required_l1_entries() {
        w.problems
            .push("L1 table is too small for the virtual size".into());
    }
    let reftable_bytes = header.refcount_table_clusters as u64 * cs;
    if reftable_bytes > header::MAX_REFTABLE_BYTES {
        w.problems.push(format!(
            "refcount table of {} clusters exceeds qemu's limit",
            header.refcount_table_clusters
        ));
        return Ok(w);
    }
    if w.metadata(
        header.refcount_table_offset,
        reftable_bytes,
        "refcount table",
    ) {
        let reftable = read_table(
            file,
            file_size,
            header.refcount_table_offset,
            reftable_bytes / 8,
            "refcount table",
        )?;
        for block in reftable
            .into_iter()
            .map(|e| e & OFFSET_MASK)
            .filter(|&b| b != 0)
        {
            w.metadata(block, cs, "refcount block");
        }
    }
    if l1_bytes > 0 && w.metadata(header.l1_table_offset, l1_bytes, "L1 table") {
        let l1 = read_table(
            file,
            file_size,
            header.l1_table_offset,
            header.l1_size as u64,
            "L1 table",
        )?;
        w.walk_l1(&l1)?;
    }
    match read_snapshots(file, file_size, header) {
        Err(e) => w.problems.push(e.to_string()),
        Ok((snapshots, table_len)) => {
            if !snapshots.is_empty() {
                w.metadata(header.snapshots_offset, table_len, "snapshot table");
            }
            for s in snapshots {
                let bytes = s.l1_size as u64 * 8;
                if bytes > header::MAX_L1_BYTES {
                    w.problems.push(format!(
                        "snapshot {:?} has an L1 table of {} entries",
                        s.id, s.l1_size
                    ));
                } else if bytes > 0 && w.metadata(s.l1_table_offset, bytes, "snapshot L1 table") {
                    let l1 = read_table(
                        file,
                        file_size,
                        s.l1_table_offset,
                        s.l1_size as u64,
                        "snapshot L1 table",
                    )?;
                    w.walk_l1(&l1)?;
                }
            }
        }
    }
    Ok(w)
}

/// Checks refcounts against references, as `qemu-img check` does.
pub fn check(file: &File) -> Result<CheckReport> {
    let file_size = file.metadata()?.len();
    let header = read_header(file, file_size)?;
    let w = walk(file, file_size, &header)?;
    let mut report = CheckReport {
        errors: w.problems.clone(),
        allocated_clusters: Some(w.allocated),
        compressed_clusters: Some(w.compressed),
        total_clusters: Some(header.size.div_ceil(header.cluster_size())),
        image_end_offset: Some(file_size),
        ..Default::default()
    };
    let cs = header.cluster_size();
    let bits = header.refcount_bits();
    let per_block = cs * 8 / bits as u64;
    let mut stored = vec![0u64; w.refs.len()];
    if report.errors.is_empty() {
        let reftable = read_table(
            file,
            file_size,
            header.refcount_table_offset,
            header.refcount_table_clusters as u64 * cs / 8,
            "refcount table",
        )?;
        let mut block = vec![0u8; cs as usize];
        for (i, entry) in reftable.iter().enumerate() {
            let offset = entry & OFFSET_MASK;
            if offset == 0 {
                continue;
            }
            file.read_exact_at(&mut block, offset)?;
            for j in 0..per_block {
                let cluster = i as u64 * per_block + j;
                let r = get_refcount(&block, bits, j);
                match stored.get_mut(cluster as usize) {
                    Some(s) => *s = r,
                    None if r > 0 => report.leaks.push(format!("Leaked cluster {cluster} refcount={r} reference=0 (past the end of the file)")),
                    None => {}
                }
            }
        }
    }
    if report.errors.is_empty() {
        for (cluster, (&reference, &refcount)) in w.refs.iter().zip(&stored).enumerate() {
            let reference = reference as u64;
            if refcount < reference {
                report.errors.push(format!(
                    "ERROR cluster {cluster} refcount={refcount} reference={reference}"
                ));
            } else if refcount > reference {
                report.leaks.push(format!(
                    "Leaked cluster {cluster} refcount={refcount} reference={reference}"
                ));
            }
        }
    }
    Ok(report)
}

/// The structural safety walk for the inspector: never follows a reference.
pub fn inspect_structure(file: &File, file_size: u64) -> Structure {
    let header = match read_header(file, file_size) {
        Ok(h) => h,
        Err(e) => {
            return Structure {
                virtual_size: None,
                problems: vec![e.to_string()],
            };
        }
    };
    let mut problems = Vec::new();
    if let Some(backing) = &header.backing_file {
        problems.push(format!("qcow2 image has a backing file {backing:?}"));
    }
    if header.incompatible_features & INCOMPAT_DATA_FILE != 0 {
        problems.push(format!(
            "qcow2 image has an external data file {:?}",
            header.data_file().unwrap_or_default()
        ));
    }
    if header.crypt_method != 0 {
        problems.push("qcow2 image is encrypted: its contents cannot be inspected".into());
    }
    match walk(file, file_size, &header) {
        Ok(w) => problems.extend(w.problems),
        Err(e) => problems.push(e.to_string()),
    }
    Structure {
        virtual_size: Some(header.size),
        problems,
    }
}
