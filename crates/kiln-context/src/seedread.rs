//! Reading seed images straight from their bytes (a block device or a file),
//! without mounting: the volume label of ISO 9660 and FAT filesystems, and
//! every file of a seed with its real name (Rock Ridge, else Joliet, else the
//! ISO level 1 name) and mode.
//!
//! This is what the in-guest agent uses to find `CONTEXT`, `cidata` and
//! `config-2`, and what the writers' tests use to read their images back.

use std::io::{Read, Seek, SeekFrom};

use crate::error::{Error, Result};
use crate::seed::{Filesystem, Seed, SeedFile};

const SECTOR: u64 = 2048;
const FIRST_DESCRIPTOR: u64 = 16;
/// Seeds are small; these bounds keep a hostile or damaged device from
/// making the reader allocate or loop without end.
const MAX_FILE: u64 = 64 * 1024 * 1024;
const MAX_TOTAL: u64 = 256 * 1024 * 1024;
const MAX_ENTRIES: usize = 10_000;
const MAX_DEPTH: usize = 8;

/// The filesystem and volume label of an image, if it is ISO 9660 or FAT.
pub fn probe<R: Read + Seek>(reader: &mut R) -> Result<Option<(Filesystem, String)>> {
    if let Some(pvd) = read_descriptor(reader, 1)? {
        return Ok(Some((Filesystem::Iso9660, trimmed(&pvd[40..72]))));
    }
    Ok(fat_label(reader)?.map(|label| (Filesystem::Vfat, label)))
}

/// Every file of a seed image (ISO 9660 or FAT), with the image's label.
pub fn read_seed<R: Read + Seek>(reader: &mut R) -> Result<Seed> {
    match probe(reader)? {
        Some((Filesystem::Iso9660, label)) => read_iso(reader, label),
        Some((Filesystem::Vfat, label)) => read_fat(reader, label),
        None => Err(Error::Invalid(
            "neither an ISO 9660 nor a FAT filesystem".into(),
        )),
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Io {
        origin: "seed image".into(),
        source: e,
    }
}

fn damaged(what: impl Into<String>) -> Error {
    Error::Invalid(format!("ISO 9660 image: {}", what.into()))
}

fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    reader.seek(SeekFrom::Start(offset)).map_err(io_error)?;
    reader.read_exact(&mut buf).map_err(io_error)?;
    Ok(buf)
}

/// Like [`read_at`], but a short image is "not this filesystem", not an error.
fn try_read_at<R: Read + Seek>(reader: &mut R, offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
    match read_at(reader, offset, len) {
        Ok(buf) => Ok(Some(buf)),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn trimmed(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// The first volume descriptor of `kind` (1 primary, 2 supplementary) that
/// `accept` takes; None when the image is not ISO 9660.
fn find_descriptor<R: Read + Seek>(
    reader: &mut R,
    kind: u8,
    accept: impl Fn(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>> {
    for index in FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + 32 {
        let Some(descriptor) = try_read_at(reader, index * SECTOR, SECTOR as usize)? else {
            return Ok(None);
        };
        if &descriptor[1..6] != b"CD001" {
            return Ok(None);
        }
        match descriptor[0] {
            255 => return Ok(None),
            k if k == kind && accept(&descriptor) => return Ok(Some(descriptor)),
            _ => {}
        }
    }
    Ok(None)
}

fn read_descriptor<R: Read + Seek>(reader: &mut R, kind: u8) -> Result<Option<Vec<u8>>> {
    find_descriptor(reader, kind, |_| true)
}

/// A Joliet descriptor names UCS-2 level 1, 2 or 3 in its escape sequences.
fn is_joliet(descriptor: &[u8]) -> bool {
    descriptor[88..120]
        .windows(3)
        .any(|w| matches!(w, b"%/@" | b"%/C" | b"%/E"))
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn le16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

/// One directory record, decoded.
struct Record {
    extent: u64,
    size: u64,
    is_dir: bool,
    identifier: Vec<u8>,
    system_use: Vec<u8>,
}

fn parse_record(bytes: &[u8]) -> Result<Record> {
    let len = bytes[0] as usize;
    let id_len = *bytes.get(32).ok_or_else(|| damaged("short record"))? as usize;
    if len < 33 + id_len || len > bytes.len() {
        return Err(damaged("directory record overruns its sector"));
    }
    let id_end = 33 + id_len;
    let system_use_start = id_end + usize::from(id_len.is_multiple_of(2));
    Ok(Record {
        extent: u64::from(le32(&bytes[2..6])),
        size: u64::from(le32(&bytes[10..14])),
        is_dir: bytes[25] & 0x02 != 0,
        identifier: bytes[33..id_end].to_vec(),
        system_use: bytes.get(system_use_start..len).unwrap_or(&[]).to_vec(),
    })
}

/// How names are read in the tree being walked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    RockRidge,
    Joliet,
    Iso,
}

struct IsoReader<'r, R> {
    reader: &'r mut R,
    names: Names,
    total: u64,
    files: Vec<SeedFile>,
}

fn read_iso<R: Read + Seek>(reader: &mut R, label: String) -> Result<Seed> {
    let pvd = read_descriptor(reader, 1)?.ok_or_else(|| damaged("no primary descriptor"))?;
    if le16(&pvd[128..130]) as u64 != SECTOR {
        return Err(damaged("logical blocks other than 2048 bytes"));
    }
    let root = parse_record(&pvd[156..190])?;
    let mut iso = IsoReader {
        reader,
        names: Names::Iso,
        total: 0,
        files: Vec::new(),
    };
    // Rock Ridge announces itself with SP in the root's "." entry.
    let dot = iso.directory(&root)?.into_iter().next();
    let (tree, names) = if dot.is_some_and(|d| d.system_use.starts_with(b"SP")) {
        (root, Names::RockRidge)
    } else if let Some(svd) = find_descriptor(iso.reader, 2, is_joliet)? {
        (parse_record(&svd[156..190])?, Names::Joliet)
    } else {
        (root, Names::Iso)
    };
    iso.names = names;
    iso.walk(&tree, "", 0)?;
    let mut seed = Seed::new(label);
    for file in iso.files {
        seed.add_file(file)?;
    }
    Ok(seed)
}

impl<R: Read + Seek> IsoReader<'_, R> {
    /// The records of a directory, "." and ".." included.
    fn directory(&mut self, dir: &Record) -> Result<Vec<Record>> {
        if dir.size > MAX_FILE {
            return Err(damaged("directory too large"));
        }
        let bytes = read_at(self.reader, dir.extent * SECTOR, dir.size as usize)?;
        let mut records = Vec::new();
        for sector in bytes.chunks(SECTOR as usize) {
            let mut at = 0;
            while at < sector.len() && sector[at] != 0 {
                let record = parse_record(&sector[at..])?;
                at += sector[at] as usize;
                records.push(record);
                if records.len() > MAX_ENTRIES {
                    return Err(damaged("too many directory entries"));
                }
            }
        }
        Ok(records)
    }

    fn walk(&mut self, dir: &Record, prefix: &str, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(damaged("directories nested too deep"));
        }
        for record in self.directory(dir)? {
            if matches!(record.identifier.as_slice(), [0] | [1]) {
                continue;
            }
            let (name, mode) = self.name_and_mode(&record)?;
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(damaged(format!("bad file name {name:?}")));
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if record.is_dir {
                self.walk(&record, &path, depth + 1)?;
                continue;
            }
            self.total += record.size;
            if record.size > MAX_FILE || self.total > MAX_TOTAL {
                return Err(damaged(format!("{path} is too large for a seed")));
            }
            let contents = read_at(self.reader, record.extent * SECTOR, record.size as usize)?;
            self.files.push(SeedFile {
                path,
                contents,
                mode: mode.unwrap_or(0o644),
            });
        }
        Ok(())
    }

    fn name_and_mode(&mut self, record: &Record) -> Result<(String, Option<u32>)> {
        match self.names {
            Names::Joliet => {
                let units: Vec<u16> = record
                    .identifier
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                let name = String::from_utf16_lossy(&units);
                Ok((strip_version(&name).to_string(), None))
            }
            Names::Iso => {
                let name = String::from_utf8_lossy(&record.identifier).to_ascii_lowercase();
                let name = strip_version(&name);
                Ok((name.strip_suffix('.').unwrap_or(name).to_string(), None))
            }
            Names::RockRidge => {
                let mut name = Vec::new();
                let mut mode = None;
                self.rock_ridge(&record.system_use, &mut name, &mut mode, 0)?;
                if name.is_empty() {
                    // A record without NM keeps its ISO name.
                    let iso = String::from_utf8_lossy(&record.identifier).to_ascii_lowercase();
                    return Ok((strip_version(&iso).trim_end_matches('.').to_string(), mode));
                }
                Ok((String::from_utf8_lossy(&name).into_owned(), mode))
            }
        }
    }

    /// Collects NM (name) and PX (mode) from SUSP entries, following CE
    /// continuation areas.
    fn rock_ridge(
        &mut self,
        area: &[u8],
        name: &mut Vec<u8>,
        mode: &mut Option<u32>,
        hops: usize,
    ) -> Result<()> {
        let mut at = 0;
        while at + 4 <= area.len() {
            let len = area[at + 2] as usize;
            if len < 4 || at + len > area.len() {
                break;
            }
            let entry = &area[at..at + len];
            match &entry[..2] {
                b"NM" if len >= 5 => name.extend_from_slice(&entry[5..]),
                b"PX" if len >= 12 => *mode = Some(le32(&entry[4..8]) & 0o7777),
                b"CE" if len >= 28 && hops < 4 => {
                    let (block, offset, size) = (
                        u64::from(le32(&entry[4..8])),
                        u64::from(le32(&entry[12..16])),
                        le32(&entry[20..24]) as usize,
                    );
                    if size > SECTOR as usize {
                        return Err(damaged("continuation area too large"));
                    }
                    let more = read_at(self.reader, block * SECTOR + offset, size)?;
                    self.rock_ridge(&more, name, mode, hops + 1)?;
                }
                b"ST" => break,
                _ => {}
            }
            at += len;
        }
        Ok(())
    }
}

fn strip_version(name: &str) -> &str {
    match name.rfind(';') {
        Some(semicolon) => &name[..semicolon],
        None => name,
    }
}

/// The label of a FAT12/16/32 boot sector, None when it is not FAT.
fn fat_label<R: Read + Seek>(reader: &mut R) -> Result<Option<String>> {
    let Some(boot) = try_read_at(reader, 0, 512)? else {
        return Ok(None);
    };
    if boot[510..512] != [0x55, 0xAA] {
        return Ok(None);
    }
    // FAT32 keeps its extended BPB further in than FAT12/16.
    for (signature, label, fs_type) in [(38, 43..54, 54..62), (66, 71..82, 82..90)] {
        if matches!(boot[signature], 0x28 | 0x29) && boot[fs_type.clone()].starts_with(b"FAT") {
            let label = trimmed(&boot[label]);
            return Ok(Some(if label == "NO NAME" {
                String::new()
            } else {
                label
            }));
        }
    }
    Ok(None)
}

/// The geometry of a FAT volume, from its boot sector.
struct Fat {
    bytes_per_sector: u64,
    cluster_size: u64,
    fat_offset: u64,
    /// FAT12/16: the fixed root directory (offset, bytes); FAT32: None.
    fixed_root: Option<(u64, u64)>,
    root_cluster: u32,
    data_offset: u64,
    clusters: u32,
    bits: u8,
}

fn fat_damaged(what: impl Into<String>) -> Error {
    Error::Invalid(format!("FAT image: {}", what.into()))
}

fn read_fat<R: Read + Seek>(reader: &mut R, label: String) -> Result<Seed> {
    let boot = read_at(reader, 0, 512)?;
    let bytes_per_sector = u64::from(le16(&boot[11..13]));
    let sectors_per_cluster = u64::from(boot[13]);
    let reserved = u64::from(le16(&boot[14..16]));
    let fats = u64::from(boot[16]);
    let root_entries = u64::from(le16(&boot[17..19]));
    let total = match le16(&boot[19..21]) {
        0 => u64::from(le32(&boot[32..36])),
        n => u64::from(n),
    };
    let fat_sectors = match le16(&boot[22..24]) {
        0 => u64::from(le32(&boot[36..40])),
        n => u64::from(n),
    };
    if !bytes_per_sector.is_power_of_two()
        || !(512..=4096).contains(&bytes_per_sector)
        || sectors_per_cluster == 0
        || fats == 0
    {
        return Err(fat_damaged("bad boot sector"));
    }
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let first_data = reserved + fats * fat_sectors + root_sectors;
    let clusters = total.saturating_sub(first_data) / sectors_per_cluster;
    let bits = match clusters {
        0..4085 => 12,
        4085..65525 => 16,
        _ => 32,
    };
    let fat = Fat {
        bytes_per_sector,
        cluster_size: bytes_per_sector * sectors_per_cluster,
        fat_offset: reserved * bytes_per_sector,
        fixed_root: (bits != 32).then(|| {
            (
                (reserved + fats * fat_sectors) * bytes_per_sector,
                root_entries * 32,
            )
        }),
        root_cluster: le32(&boot[44..48]),
        data_offset: first_data * bytes_per_sector,
        clusters: clusters as u32,
        bits,
    };
    let root = match fat.fixed_root {
        Some((offset, size)) => read_at(reader, offset, size as usize)?,
        None => fat.chain(reader, fat.root_cluster, None)?,
    };
    let mut files = Vec::new();
    let mut total_bytes = 0;
    fat.walk(reader, &root, "", 0, &mut files, &mut total_bytes)?;
    let mut seed = Seed::new(label);
    for file in files {
        seed.add_file(file)?;
    }
    Ok(seed)
}

impl Fat {
    fn next_cluster<R: Read + Seek>(&self, reader: &mut R, cluster: u32) -> Result<Option<u32>> {
        let (offset, end) = match self.bits {
            12 => (u64::from(cluster) * 3 / 2, 0xFF8),
            16 => (u64::from(cluster) * 2, 0xFFF8),
            _ => (u64::from(cluster) * 4, 0x0FFF_FFF8),
        };
        let bytes = read_at(
            reader,
            self.fat_offset + offset,
            4.min(self.bytes_per_sector as usize),
        )?;
        let next = match self.bits {
            12 if cluster % 2 == 1 => u32::from(le16(&bytes) >> 4),
            12 => u32::from(le16(&bytes) & 0x0FFF),
            16 => u32::from(le16(&bytes)),
            _ => le32(&bytes) & 0x0FFF_FFFF,
        };
        Ok((next < end).then_some(next))
    }

    /// The bytes of a cluster chain, cut to `size` when known.
    fn chain<R: Read + Seek>(
        &self,
        reader: &mut R,
        first: u32,
        size: Option<u64>,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut cluster = Some(first);
        let limit = size.unwrap_or(MAX_FILE);
        while let Some(current) = cluster {
            if current < 2 || current >= self.clusters + 2 {
                return Err(fat_damaged(format!(
                    "cluster {current} is outside the volume"
                )));
            }
            if out.len() as u64 >= limit {
                break;
            }
            let offset = self.data_offset + u64::from(current - 2) * self.cluster_size;
            out.extend(read_at(reader, offset, self.cluster_size as usize)?);
            cluster = self.next_cluster(reader, current)?;
        }
        match size {
            Some(size) if (out.len() as u64) < size => {
                Err(fat_damaged("a file is longer than its clusters"))
            }
            Some(size) => {
                out.truncate(size as usize);
                Ok(out)
            }
            None => Ok(out),
        }
    }

    fn walk<R: Read + Seek>(
        &self,
        reader: &mut R,
        dir: &[u8],
        prefix: &str,
        depth: usize,
        files: &mut Vec<SeedFile>,
        total: &mut u64,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(fat_damaged("directories nested too deep"));
        }
        let mut long_name: Vec<(u8, Vec<u16>)> = Vec::new();
        for entry in dir.chunks_exact(32) {
            match entry[0] {
                0 => break,
                0xE5 => {
                    long_name.clear();
                    continue;
                }
                _ => {}
            }
            let attributes = entry[11];
            if attributes & 0x3F == 0x0F {
                let units = [&entry[1..11], &entry[14..26], &entry[28..32]]
                    .concat()
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0 && u != 0xFFFF)
                    .collect();
                long_name.push((entry[0] & 0x1F, units));
                continue;
            }
            let name = if long_name.is_empty() {
                short_name(entry)
            } else {
                long_name.sort_by_key(|(order, _)| *order);
                let units: Vec<u16> = long_name.iter().flat_map(|(_, u)| u.clone()).collect();
                String::from_utf16_lossy(&units)
            };
            long_name.clear();
            if attributes & 0x08 != 0 || name == "." || name == ".." {
                continue;
            }
            if name.contains('/') || name.is_empty() {
                return Err(fat_damaged(format!("bad file name {name:?}")));
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let cluster = u32::from(le16(&entry[20..22])) << 16 | u32::from(le16(&entry[26..28]));
            if attributes & 0x10 != 0 {
                let sub = self.chain(reader, cluster, None)?;
                self.walk(reader, &sub, &path, depth + 1, files, total)?;
                continue;
            }
            let size = u64::from(le32(&entry[28..32]));
            *total += size;
            if size > MAX_FILE || *total > MAX_TOTAL || files.len() > MAX_ENTRIES {
                return Err(fat_damaged(format!("{path} is too large for a seed")));
            }
            let contents = if size == 0 {
                Vec::new()
            } else {
                self.chain(reader, cluster, Some(size))?
            };
            files.push(SeedFile::new(path, contents));
        }
        Ok(())
    }
}

/// An 8.3 name, with the lower-case flags Windows NT (and Linux) set.
fn short_name(entry: &[u8]) -> String {
    let case = |bytes: &[u8], lower: bool| {
        let text = trimmed(bytes);
        if lower {
            text.to_ascii_lowercase()
        } else {
            text
        }
    };
    let base = case(&entry[0..8], entry[12] & 0x08 != 0);
    let extension = case(&entry[8..11], entry[12] & 0x10 != 0);
    if extension.is_empty() {
        base
    } else {
        format!("{base}.{extension}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn seed() -> Seed {
        let mut seed = Seed::new("config-2");
        seed.add("openstack/latest/meta_data.json", b"{}\n".to_vec())
            .unwrap();
        seed.add("openstack/latest/user_data", b"#cloud-config\n".to_vec())
            .unwrap();
        seed.add_file(SeedFile {
            path: "init.sh".into(),
            contents: b"#!/bin/sh\necho hi\n".to_vec(),
            mode: 0o755,
        })
        .unwrap();
        seed.add("a-long-name-with.many.dots.txt", vec![7; 5000])
            .unwrap();
        seed
    }

    fn sorted(mut files: Vec<SeedFile>) -> Vec<SeedFile> {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    #[test]
    fn iso_images_read_back_with_names_modes_and_label() {
        let seed = seed();
        let image = seed.to_image(Filesystem::Iso9660, 0).unwrap();
        let mut cursor = Cursor::new(image);
        assert_eq!(
            probe(&mut cursor).unwrap(),
            Some((Filesystem::Iso9660, "config-2".into()))
        );
        let back = read_seed(&mut cursor).unwrap();
        assert_eq!(back.label, "config-2");
        assert_eq!(sorted(back.files), sorted(seed.files));
    }

    #[test]
    fn vfat_images_read_back() {
        let seed = seed();
        let image = seed.to_image(Filesystem::Vfat, 0).unwrap();
        let mut cursor = Cursor::new(image);
        assert_eq!(
            probe(&mut cursor).unwrap(),
            Some((Filesystem::Vfat, "CONFIG-2".into()))
        );
        let back = read_seed(&mut cursor).unwrap();
        let names: Vec<_> = sorted(back.files.clone())
            .into_iter()
            .map(|f| (f.path, f.contents))
            .collect();
        let expected: Vec<_> = sorted(seed.files)
            .into_iter()
            .map(|f| (f.path, f.contents))
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn other_bytes_are_not_seeds() {
        assert_eq!(probe(&mut Cursor::new(vec![0u8; 100])).unwrap(), None);
        assert_eq!(probe(&mut Cursor::new(vec![0u8; 40_000])).unwrap(), None);
        let err = read_seed(&mut Cursor::new(vec![1u8; 70_000])).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn damaged_directories_are_errors_not_panics() {
        let mut image = seed().to_image(Filesystem::Iso9660, 0).unwrap();
        // Point the root directory's extent past the end of the image.
        let root = 16 * 2048 + 156;
        image[root + 2..root + 6].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_seed(&mut Cursor::new(image)).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}
