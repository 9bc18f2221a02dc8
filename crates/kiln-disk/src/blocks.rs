//! What VMDK, VHD and VDI share: a guest disk cut into fixed-size blocks that
//! a table maps into the file, the read and status loops over such a map,
//! table reads bounded by the file, and the inspector's checks of where tables
//! and blocks lie.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::FileExt;

use crate::inspect::Structure;
use crate::{Allocation, Error, Result};

/// A guest disk made of `block_size` blocks, each either reading as zeros or
/// read from the image by the format.
pub(crate) trait BlockMap {
    fn block_size(&self) -> u64;

    /// Whether block `index` reads as zeros or has to be read.
    fn allocation(&self, index: u64) -> Result<Allocation>;

    /// Fills `buf` from block `index`, starting `within` bytes into it. Called
    /// only for blocks whose allocation is `Data`.
    fn read_block(&self, index: u64, within: u64, buf: &mut [u8]) -> Result<()>;
}

/// [`crate::DiskRead::read_at`] over a block map.
pub(crate) fn read_blocks(map: &impl BlockMap, buf: &mut [u8], offset: u64) -> Result<()> {
    let block_size = map.block_size();
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let (index, within) = (pos / block_size, pos % block_size);
        let n = ((block_size - within) as usize).min(buf.len() - done);
        let piece = &mut buf[done..done + n];
        match map.allocation(index)? {
            Allocation::Zero => piece.fill(0),
            Allocation::Data => map.read_block(index, within, piece)?,
        }
        done += n;
    }
    Ok(())
}

/// [`crate::DiskRead::block_status`] over a block map: the run of blocks from
/// `offset` sharing the first one's allocation.
pub(crate) fn status_blocks(
    map: &impl BlockMap,
    offset: u64,
    len: u64,
) -> Result<(Allocation, u64)> {
    let block_size = map.block_size();
    let first = map.allocation(offset / block_size)?;
    let mut end = (offset / block_size + 1) * block_size;
    while end < offset + len && map.allocation(end / block_size)? == first {
        end += block_size;
    }
    Ok((first, end.min(offset + len) - offset))
}

/// Reads `len` bytes at `offset` of a file of `file_size` bytes, refusing a
/// range past the end before allocating anything for it.
pub(crate) fn read_region(
    file: &File,
    offset: u64,
    len: u64,
    file_size: u64,
    format: &'static str,
    what: &str,
) -> Result<Vec<u8>> {
    match offset.checked_add(len) {
        Some(end) if end <= file_size => {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        }
        _ => Err(Error::invalid(
            format,
            format!(
                "{what} at offset {offset} ({len} bytes) lies past the end of the {file_size}-byte file"
            ),
        )),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Endian {
    Little,
    Big,
}

/// Reads a table of `count` u32 entries at `offset`, bounded by the file.
pub(crate) fn read_u32_table(
    file: &File,
    offset: u64,
    count: u64,
    file_size: u64,
    endian: Endian,
    format: &'static str,
    what: &str,
) -> Result<Vec<u32>> {
    let bytes = read_region(
        file,
        offset,
        count.saturating_mul(4),
        file_size,
        format,
        what,
    )?;
    let decode = match endian {
        Endian::Little => u32::from_le_bytes,
        Endian::Big => u32::from_be_bytes,
    };
    Ok(bytes
        .chunks_exact(4)
        .map(|c| decode(c.try_into().unwrap()))
        .collect())
}

/// Random bytes for identifiers (VMDK CID, VHD UUID): unique, not secret.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// What a walk over an image's header and tables found, without following
/// any reference: the inspector reports all of it, `check` the problems only
/// (a reference to another file is not an error in itself).
#[derive(Debug, Default)]
pub(crate) struct Survey {
    pub virtual_size: Option<u64>,
    /// Other files or images the image refers to, described.
    pub references: Vec<String>,
    pub problems: Vec<String>,
}

impl Survey {
    /// A walk that stopped at an unreadable header.
    pub(crate) fn failed(error: Error) -> Survey {
        Survey {
            problems: vec![error.to_string()],
            ..Default::default()
        }
    }

    pub(crate) fn into_structure(self) -> Structure {
        let mut problems = self.problems;
        problems.extend(self.references);
        Structure {
            virtual_size: self.virtual_size,
            problems,
        }
    }
}

/// How many problems of one walk are spelled out before the rest are counted.
const MAX_LISTED_PROBLEMS: usize = 20;

/// The regions of a file an image's header and tables claim, collected to
/// report those past the end of the file and those overlapping each other.
///
/// Non-overlapping regions of at least `min_len` bytes can number at most
/// `file_size / min_len`; past that some must overlap, so collection stops
/// there, which bounds memory by the file size.
pub(crate) struct Regions {
    file_size: u64,
    list: Vec<Region>,
    limit: usize,
    /// The limit was reached: the rest is not collected.
    full: bool,
    problems: Vec<String>,
    unlisted: usize,
}

struct Region {
    start: u64,
    end: u64,
    what: &'static str,
    /// Which one of several (a table or block index).
    index: Option<u64>,
}

impl Region {
    fn describe(&self) -> String {
        match self.index {
            Some(i) => format!("{} {i} (bytes {}..{})", self.what, self.start, self.end),
            None => format!("{} (bytes {}..{})", self.what, self.start, self.end),
        }
    }
}

/// A hard cap on regions, whatever the file size: 8 Mi regions, 256 MiB.
const MAX_REGIONS: u64 = 8 << 20;

impl Regions {
    pub(crate) fn new(file_size: u64, min_len: u64) -> Self {
        let limit = (file_size / min_len.max(1) + 64).min(MAX_REGIONS) as usize;
        Regions {
            file_size,
            list: Vec::new(),
            limit,
            full: false,
            problems: Vec::new(),
            unlisted: 0,
        }
    }

    /// Records a problem found while walking the image.
    pub(crate) fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(text);
        } else {
            self.unlisted += 1;
        }
    }

    /// Claims `len` bytes at `offset` for `what`; false (and a problem) when the
    /// region does not lie wholly inside the file.
    pub(crate) fn claim(
        &mut self,
        what: &'static str,
        index: Option<u64>,
        offset: u64,
        len: u64,
    ) -> bool {
        let Some(end) = offset.checked_add(len).filter(|&end| end <= self.file_size) else {
            let region = Region {
                start: offset,
                end: offset.saturating_add(len),
                what,
                index,
            };
            self.problem(format!(
                "{} lies past the end of the {}-byte file",
                region.describe(),
                self.file_size
            ));
            return false;
        };
        if self.list.len() < self.limit {
            self.list.push(Region {
                start: offset,
                end,
                what,
                index,
            });
        } else if !self.full {
            self.full = true;
            self.problem(format!(
                "more regions than a {}-byte file can hold without overlap: {what} entries point at shared space",
                self.file_size
            ));
        }
        true
    }

    /// Whether more regions were claimed than fit the file without overlap.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// The problems found: those recorded and every overlap of two regions.
    pub(crate) fn finish(mut self) -> Vec<String> {
        let mut list = std::mem::take(&mut self.list);
        list.sort_by_key(|r| (r.start, r.end));
        // Overlaps are listed apart from the walk's problems, so that many
        // of one kind do not hide the other.
        let (mut overlaps, mut unlisted_overlaps) = (Vec::new(), 0);
        // The region reaching furthest so far: any later start before its end overlaps it.
        let mut reach: Option<usize> = None;
        for i in 0..list.len() {
            if list[i].start == list[i].end {
                continue;
            }
            if let Some(r) = reach {
                if list[i].start < list[r].end {
                    if overlaps.len() < MAX_LISTED_PROBLEMS {
                        overlaps.push(format!(
                            "{} overlaps {}",
                            list[i].describe(),
                            list[r].describe()
                        ));
                    } else {
                        unlisted_overlaps += 1;
                    }
                }
                if list[i].end > list[r].end {
                    reach = Some(i);
                }
            } else {
                reach = Some(i);
            }
        }
        for (problems, unlisted) in [
            (&mut self.problems, self.unlisted),
            (&mut overlaps, unlisted_overlaps),
        ] {
            if unlisted > 0 {
                problems.push(format!("and {unlisted} more problems like these"));
            }
        }
        self.problems.extend(overlaps);
        self.problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Alternating;
    impl BlockMap for Alternating {
        fn block_size(&self) -> u64 {
            4
        }
        fn allocation(&self, index: u64) -> Result<Allocation> {
            Ok(if index % 3 == 2 {
                Allocation::Zero
            } else {
                Allocation::Data
            })
        }
        fn read_block(&self, index: u64, within: u64, buf: &mut [u8]) -> Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (index * 4 + within + i as u64) as u8 + 1;
            }
            Ok(())
        }
    }

    #[test]
    fn reads_and_statuses_span_blocks() {
        let mut buf = [0xaau8; 10];
        read_blocks(&Alternating, &mut buf, 3).unwrap();
        assert_eq!(buf, [4, 5, 6, 7, 8, 0, 0, 0, 0, 13]);
        assert_eq!(
            status_blocks(&Alternating, 1, 20).unwrap(),
            (Allocation::Data, 7)
        );
        assert_eq!(
            status_blocks(&Alternating, 9, 20).unwrap(),
            (Allocation::Zero, 3)
        );
        assert_eq!(
            status_blocks(&Alternating, 13, 2).unwrap(),
            (Allocation::Data, 2)
        );
    }

    #[test]
    fn regions_report_overlap_and_eof() {
        let mut r = Regions::new(4096, 512);
        assert!(r.claim("header", None, 0, 512));
        assert!(r.claim("table", None, 1024, 1024));
        assert!(r.claim("block", Some(3), 1536, 512));
        assert!(!r.claim("block", Some(4), 4000, 512));
        assert!(!r.claim("block", Some(5), u64::MAX, 2));
        let problems = r.finish();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[2].contains("block 3") && problems[2].contains("overlaps table"));
    }

    #[test]
    fn regions_stop_collecting_at_the_file_bound() {
        let mut r = Regions::new(1 << 20, 1 << 20);
        for i in 0..1000 {
            r.claim("block", Some(i), 0, 1 << 20);
        }
        let problems = r.finish();
        assert!(problems.iter().any(|p| p.contains("more regions")));
        assert!(problems.len() <= 2 * (MAX_LISTED_PROBLEMS + 1));
    }
}
