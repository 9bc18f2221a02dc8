//! A small ISO 9660 writer with Joliet and Rock Ridge, for seed images.
//!
//! Written here because hadris-iso 2.5 stamps the wall clock into every
//! volume descriptor and directory record, so its images differ from run to
//! run. This writer takes one timestamp for everything, like
//! SOURCE_DATE_EPOCH, and gives the same bytes for the same seed.
//!
//! Layout: 16 empty sectors, the primary volume descriptor (ISO level 1 names
//! plus Rock Ridge 1.10 PX/TF/NM entries), the Joliet supplementary
//! descriptor (UCS-2 names), the terminator, four path tables, the directories
//! of both trees, one continuation sector holding Rock Ridge's ER entry, then
//! the file data shared by both trees.

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Result};
use crate::seed::Seed;

const SECTOR: usize = 2048;
const FIRST_DESCRIPTOR: usize = 16;
const DIR_MODE: u32 = 0o040755;
const FILE_TYPE: u32 = 0o100000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Namespace {
    Iso,
    Joliet,
}

/// A directory entry with its name in each namespace.
#[derive(Debug)]
struct Entry {
    /// The real name, kept by Rock Ridge.
    name: String,
    iso: Vec<u8>,
    joliet: Vec<u8>,
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Dir(usize),
    File(usize),
}

#[derive(Debug, Default)]
struct Dir {
    parent: usize,
    entries: Vec<Entry>,
}

impl Entry {
    fn identifier(&self, namespace: Namespace) -> &[u8] {
        match namespace {
            Namespace::Iso => &self.iso,
            Namespace::Joliet => &self.joliet,
        }
    }
}

pub fn write(seed: &Seed, epoch: i64) -> Result<Vec<u8>> {
    let dirs = build_tree(seed)?;
    Image::new(seed, dirs, epoch)?.render()
}

/// Directories by index (0 is the root) with entries holding both names.
fn build_tree(seed: &Seed) -> Result<Vec<Dir>> {
    let mut dirs = vec![Dir::default()];
    let mut by_path: BTreeMap<String, usize> = BTreeMap::from([(String::new(), 0)]);
    for (file_index, file) in seed.files.iter().enumerate() {
        let mut parent = 0;
        let mut path = String::new();
        let components: Vec<&str> = file.path.split('/').collect();
        let (file_name, dir_names) = components
            .split_last()
            .expect("split gives one item at least");
        for name in dir_names {
            path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}/{name}")
            };
            parent = match by_path.get(&path) {
                Some(&index) => index,
                None => {
                    let index = dirs.len();
                    dirs.push(Dir {
                        parent,
                        entries: Vec::new(),
                    });
                    add_entry(&mut dirs[parent], name, Target::Dir(index))?;
                    by_path.insert(path.clone(), index);
                    index
                }
            };
        }
        add_entry(&mut dirs[parent], file_name, Target::File(file_index))?;
    }
    Ok(dirs)
}

fn add_entry(dir: &mut Dir, name: &str, target: Target) -> Result<()> {
    if dir.entries.iter().any(|e| e.name == name) {
        return Err(Error::Invalid(format!(
            "{name:?} is both a file and a directory"
        )));
    }
    let is_dir = matches!(target, Target::Dir(_));
    let iso = unique(dir, Namespace::Iso, |attempt| {
        iso_name(name, is_dir, attempt)
    });
    let joliet = unique(dir, Namespace::Joliet, |attempt| joliet_name(name, attempt));
    dir.entries.push(Entry {
        name: name.to_string(),
        iso,
        joliet,
        target,
    });
    Ok(())
}

/// The first candidate name not yet used in `dir`.
fn unique(dir: &Dir, namespace: Namespace, candidate: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    (0..)
        .map(candidate)
        .find(|name| {
            dir.entries
                .iter()
                .all(|e| e.identifier(namespace) != name.as_slice())
        })
        .expect("names are unbounded")
}

/// An ISO level 1 name: 8.3 upper-case d-characters, `;1` for files; on a
/// clash (`attempt` > 0) the end of the base name becomes a number.
fn iso_name(name: &str, is_dir: bool, attempt: usize) -> Vec<u8> {
    let d_chars = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (base, extension) = match name.rfind('.') {
        Some(dot) if !is_dir && dot > 0 => (&name[..dot], Some(&name[dot + 1..])),
        _ => (name, None),
    };
    let mut base: String = d_chars(base).chars().take(8).collect();
    if attempt > 0 {
        let suffix = attempt.to_string();
        base = base.chars().take(8 - suffix.len()).collect::<String>() + &suffix;
    }
    let mut out = base;
    if !is_dir {
        out.push('.');
        out.extend(d_chars(extension.unwrap_or("")).chars().take(3));
        out.push_str(";1");
    }
    out.into_bytes()
}

/// A Joliet name in UCS-2 big-endian: at most 64 characters, without the
/// characters Joliet forbids; a clash adds a number before the end.
fn joliet_name(name: &str, attempt: usize) -> Vec<u8> {
    let mut units: Vec<u16> = name
        .chars()
        .map(|c| match c {
            '*' | '/' | ':' | ';' | '?' | '\\' => '_' as u16,
            c if (c as u32) < 0x20 || (c as u32) > 0xFFFF => '_' as u16,
            c => c as u16,
        })
        .collect();
    if attempt > 0 {
        let suffix: Vec<u16> = format!("~{attempt}").encode_utf16().collect();
        units.truncate(64 - suffix.len());
        units.extend(suffix);
    }
    units.truncate(64);
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

/// Where everything goes, computed before any byte is written.
struct Image<'a> {
    seed: &'a Seed,
    dirs: Vec<Dir>,
    date: [u8; 7],
    descriptor_date: [u8; 17],
    /// Directory order of each tree's path table (breadth-first, by name).
    order: BTreeMap<Namespace, Vec<usize>>,
    /// Each directory's extent and size, per tree.
    dir_extent: BTreeMap<(Namespace, usize), (u32, u32)>,
    path_table: BTreeMap<Namespace, (u32, u32, usize)>,
    continuation: u32,
    file_extent: Vec<u32>,
    total_sectors: u32,
}

fn sectors(bytes: usize) -> u32 {
    bytes.div_ceil(SECTOR) as u32
}

impl<'a> Image<'a> {
    fn new(seed: &'a Seed, dirs: Vec<Dir>, epoch: i64) -> Result<Image<'a>> {
        let image = Image {
            seed,
            dirs,
            date: record_date(epoch),
            descriptor_date: descriptor_date(epoch),
            order: BTreeMap::new(),
            dir_extent: BTreeMap::new(),
            path_table: BTreeMap::new(),
            continuation: 0,
            file_extent: Vec::new(),
            total_sectors: 0,
        };
        image.layout()
    }

    fn layout(mut self) -> Result<Self> {
        let mut next = (FIRST_DESCRIPTOR + 3) as u32;
        for namespace in [Namespace::Iso, Namespace::Joliet] {
            let order = self.breadth_first(namespace);
            let size = self.path_table_bytes(namespace, &order, false).len();
            self.path_table
                .insert(namespace, (next, next + sectors(size), size));
            next += 2 * sectors(size);
            self.order.insert(namespace, order);
        }
        for namespace in [Namespace::Iso, Namespace::Joliet] {
            for index in self.order[&namespace].clone() {
                let size = self.directory_size(namespace, index)?;
                self.dir_extent
                    .insert((namespace, index), (next, size as u32));
                next += sectors(size);
            }
            if namespace == Namespace::Iso {
                self.continuation = next;
                next += 1;
            }
        }
        for file in &self.seed.files {
            let length = file.contents.len();
            self.file_extent.push(if length == 0 { 0 } else { next });
            next += sectors(length);
        }
        self.total_sectors = next;
        Ok(self)
    }

    fn sorted_entries(&self, namespace: Namespace, dir: usize) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.dirs[dir].entries.iter().collect();
        entries.sort_by(|a, b| a.identifier(namespace).cmp(b.identifier(namespace)));
        entries
    }

    fn breadth_first(&self, namespace: Namespace) -> Vec<usize> {
        let mut order = Vec::new();
        let mut queue = VecDeque::from([0usize]);
        while let Some(dir) = queue.pop_front() {
            order.push(dir);
            for entry in self.sorted_entries(namespace, dir) {
                if let Target::Dir(child) = entry.target {
                    queue.push_back(child);
                }
            }
        }
        order
    }

    fn path_table_bytes(&self, namespace: Namespace, order: &[usize], big_endian: bool) -> Vec<u8> {
        let number: BTreeMap<usize, u16> = order
            .iter()
            .enumerate()
            .map(|(i, &d)| (d, i as u16 + 1))
            .collect();
        let mut out = Vec::new();
        for &dir in order {
            let identifier = if dir == 0 {
                vec![0]
            } else {
                self.name_of_dir(namespace, dir).to_vec()
            };
            let extent = self.dir_extent.get(&(namespace, dir)).map_or(0, |e| e.0);
            out.push(identifier.len() as u8);
            out.push(0);
            out.extend(if big_endian {
                extent.to_be_bytes()
            } else {
                extent.to_le_bytes()
            });
            let parent = number[&self.dirs[dir].parent];
            out.extend(if big_endian {
                parent.to_be_bytes()
            } else {
                parent.to_le_bytes()
            });
            out.extend(&identifier);
            if identifier.len() % 2 == 1 {
                out.push(0);
            }
        }
        out
    }

    fn name_of_dir(&self, namespace: Namespace, dir: usize) -> &[u8] {
        let parent = &self.dirs[self.dirs[dir].parent];
        let entry = parent
            .entries
            .iter()
            .find(|e| matches!(e.target, Target::Dir(d) if d == dir));
        entry
            .expect("every directory but the root has an entry")
            .identifier(namespace)
    }

    /// The records of a directory, in order: `.`, `..`, then the entries.
    fn records(&self, namespace: Namespace, dir: usize) -> Result<Vec<Vec<u8>>> {
        let placed = |d: usize| {
            self.dir_extent
                .get(&(namespace, d))
                .copied()
                .unwrap_or((0, 0))
        };
        let rock_ridge = namespace == Namespace::Iso;
        let parent = self.dirs[dir].parent;
        let mut dot_su = Vec::new();
        if rock_ridge {
            if dir == 0 {
                dot_su.extend(sp_entry());
            }
            dot_su.extend(px_entry(DIR_MODE, self.links(dir)));
            dot_su.extend(tf_entry(&self.date));
            if dir == 0 {
                dot_su.extend(ce_entry(self.continuation, er_entry().len() as u32));
            }
        }
        let dotdot_su = if rock_ridge {
            [px_entry(DIR_MODE, self.links(parent)), tf_entry(&self.date)].concat()
        } else {
            Vec::new()
        };
        let (extent, size) = placed(dir);
        let (parent_extent, parent_size) = placed(parent);
        let mut records = vec![
            directory_record(extent, size, true, &[0], &dot_su, &self.date),
            directory_record(
                parent_extent,
                parent_size,
                true,
                &[1],
                &dotdot_su,
                &self.date,
            ),
        ];
        for entry in self.sorted_entries(namespace, dir) {
            let (extent, size, is_dir, mode, links) = match entry.target {
                Target::Dir(d) => {
                    let (extent, size) = placed(d);
                    (extent, size, true, DIR_MODE, self.links(d))
                }
                Target::File(f) => {
                    let file = &self.seed.files[f];
                    let extent = self.file_extent.get(f).copied().unwrap_or(0);
                    (
                        extent,
                        file.contents.len() as u32,
                        false,
                        FILE_TYPE | (file.mode & 0o7777),
                        1,
                    )
                }
            };
            let su = if rock_ridge {
                [
                    px_entry(mode, links),
                    tf_entry(&self.date),
                    nm_entry(&entry.name),
                ]
                .concat()
            } else {
                Vec::new()
            };
            let record = directory_record(
                extent,
                size,
                is_dir,
                entry.identifier(namespace),
                &su,
                &self.date,
            );
            if record.len() > 255 {
                return Err(Error::Invalid(format!(
                    "file name {:?} is too long for an ISO 9660 directory record",
                    entry.name
                )));
            }
            records.push(record);
        }
        Ok(records)
    }

    /// Directory links: itself, its `.` and one `..` per subdirectory.
    fn links(&self, dir: usize) -> u32 {
        2 + self.dirs[dir]
            .entries
            .iter()
            .filter(|e| matches!(e.target, Target::Dir(_)))
            .count() as u32
    }

    /// Records never cross a sector boundary; the size is whole sectors.
    fn directory_bytes(&self, namespace: Namespace, dir: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for record in self.records(namespace, dir)? {
            let room = SECTOR - out.len() % SECTOR;
            if record.len() > room {
                out.resize(out.len() + room, 0);
            }
            out.extend(record);
        }
        out.resize(sectors(out.len()) as usize * SECTOR, 0);
        Ok(out)
    }

    fn directory_size(&self, namespace: Namespace, dir: usize) -> Result<usize> {
        self.directory_bytes(namespace, dir).map(|b| b.len())
    }

    fn render(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.total_sectors as usize * SECTOR];
        let mut put = |sector: u32, bytes: &[u8]| {
            let start = sector as usize * SECTOR;
            out[start..start + bytes.len()].copy_from_slice(bytes);
        };
        put(
            FIRST_DESCRIPTOR as u32,
            &self.volume_descriptor(Namespace::Iso),
        );
        put(
            FIRST_DESCRIPTOR as u32 + 1,
            &self.volume_descriptor(Namespace::Joliet),
        );
        put(FIRST_DESCRIPTOR as u32 + 2, &terminator());
        for namespace in [Namespace::Iso, Namespace::Joliet] {
            let (little, big, _) = self.path_table[&namespace];
            let order = &self.order[&namespace];
            put(little, &self.path_table_bytes(namespace, order, false));
            put(big, &self.path_table_bytes(namespace, order, true));
            for &dir in order {
                put(
                    self.dir_extent[&(namespace, dir)].0,
                    &self.directory_bytes(namespace, dir)?,
                );
            }
        }
        put(self.continuation, &er_entry());
        for (file, &extent) in self.seed.files.iter().zip(&self.file_extent) {
            put(extent, &file.contents);
        }
        Ok(out)
    }

    fn volume_descriptor(&self, namespace: Namespace) -> Vec<u8> {
        let joliet = namespace == Namespace::Joliet;
        let text = |s: &str, len: usize| {
            if joliet {
                ucs2_field(s, len)
            } else {
                ascii_field(s, len)
            }
        };
        let mut d = vec![0u8; SECTOR];
        d[0] = if joliet { 2 } else { 1 };
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        d[8..40].copy_from_slice(&text("LINUX", 32));
        d[40..72].copy_from_slice(&text(&self.seed.label, 32));
        d[80..88].copy_from_slice(&both32(self.total_sectors));
        if joliet {
            d[88..91].copy_from_slice(b"%/E"); // UCS-2 level 3
        }
        d[120..124].copy_from_slice(&both16(1));
        d[124..128].copy_from_slice(&both16(1));
        d[128..132].copy_from_slice(&both16(SECTOR as u16));
        let (little, big, size) = self.path_table[&namespace];
        d[132..140].copy_from_slice(&both32(size as u32));
        d[140..144].copy_from_slice(&little.to_le_bytes());
        d[148..152].copy_from_slice(&big.to_be_bytes());
        let (root_extent, root_size) = self.dir_extent[&(namespace, 0)];
        d[156..190].copy_from_slice(&directory_record(
            root_extent,
            root_size,
            true,
            &[0],
            &[],
            &self.date,
        ));
        for (start, len) in [(190, 128), (318, 128), (446, 128)] {
            d[start..start + len].copy_from_slice(&text("", len));
        }
        d[574..702].copy_from_slice(&text("KILN", 128));
        for start in [702, 739, 776] {
            d[start..start + 37].copy_from_slice(&text("", 37));
        }
        d[813..830].copy_from_slice(&self.descriptor_date);
        d[830..847].copy_from_slice(&self.descriptor_date);
        d[847..864].copy_from_slice(&unset_descriptor_date());
        d[864..881].copy_from_slice(&unset_descriptor_date());
        d[881] = 1;
        d
    }
}

fn terminator() -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 255;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d
}

fn both16(value: u16) -> [u8; 4] {
    let (l, b) = (value.to_le_bytes(), value.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(value: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&value.to_le_bytes());
    out[4..].copy_from_slice(&value.to_be_bytes());
    out
}

fn ascii_field(s: &str, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = s.bytes().take(len).collect();
    out.resize(len, b' ');
    out
}

/// UCS-2 big-endian, space-padded; an odd last byte stays zero.
fn ucs2_field(s: &str, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = s
        .encode_utf16()
        .take(len / 2)
        .flat_map(|u| u.to_be_bytes())
        .collect();
    while out.len() + 2 <= len {
        out.extend([0, b' ']);
    }
    out.resize(len, 0);
    out
}

fn directory_record(
    extent: u32,
    size: u32,
    is_dir: bool,
    identifier: &[u8],
    system_use: &[u8],
    date: &[u8; 7],
) -> Vec<u8> {
    let padding = usize::from(identifier.len().is_multiple_of(2));
    let length = 33 + identifier.len() + padding + system_use.len();
    let mut r = Vec::with_capacity(length);
    r.push(length.min(255) as u8);
    r.push(0);
    r.extend(both32(extent));
    r.extend(both32(size));
    r.extend(date);
    r.push(if is_dir { 2 } else { 0 });
    r.extend([0, 0]);
    r.extend(both16(1));
    r.push(identifier.len() as u8);
    r.extend(identifier);
    r.resize(r.len() + padding, 0);
    r.extend(system_use);
    r
}

/// (year, month, day, hour, minute, second) in UTC, the year kept within
/// what ISO 9660 can store (1900–2155).
fn utc_fields(epoch: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (year, month, day) = kiln_fs::civil_from_days(epoch.div_euclid(86_400));
    let seconds = epoch.rem_euclid(86_400);
    let (hour, minute, second) = (
        (seconds / 3600) as u32,
        (seconds / 60 % 60) as u32,
        (seconds % 60) as u32,
    );
    (year.clamp(1900, 2155), month, day, hour, minute, second)
}

fn record_date(epoch: i64) -> [u8; 7] {
    let (year, month, day, hour, minute, second) = utc_fields(epoch);
    [
        (year - 1900) as u8,
        month as u8,
        day as u8,
        hour as u8,
        minute as u8,
        second as u8,
        0,
    ]
}

fn descriptor_date(epoch: i64) -> [u8; 17] {
    let (year, month, day, hour, minute, second) = utc_fields(epoch);
    let text = format!(
        "{:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}00",
        year.min(9999)
    );
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

fn unset_descriptor_date() -> [u8; 17] {
    let mut out = [b'0'; 17];
    out[16] = 0;
    out
}

// System Use Sharing Protocol and Rock Ridge entries.

fn sp_entry() -> Vec<u8> {
    vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0]
}

fn px_entry(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', 36, 1];
    for value in [mode, links, 0, 0] {
        e.extend(both32(value));
    }
    e
}

fn tf_entry(date: &[u8; 7]) -> Vec<u8> {
    // Flags: modification, access and attribute-change times, short form.
    let mut e = vec![b'T', b'F', 5 + 3 * 7, 1, 0b0000_1110];
    for _ in 0..3 {
        e.extend(date);
    }
    e
}

fn nm_entry(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', (5 + name.len()).min(255) as u8, 1, 0];
    e.extend(name.as_bytes());
    e
}

fn ce_entry(sector: u32, length: u32) -> Vec<u8> {
    let mut e = vec![b'C', b'E', 28, 1];
    e.extend(both32(sector));
    e.extend(both32(0));
    e.extend(both32(length));
    e
}

fn er_entry() -> Vec<u8> {
    const ID: &[u8] = b"RRIP_1991A";
    const DESCRIPTOR: &[u8] =
        b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    const SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
    let length = 8 + ID.len() + DESCRIPTOR.len() + SOURCE.len();
    let mut e = vec![
        b'E',
        b'R',
        length as u8,
        1,
        ID.len() as u8,
        DESCRIPTOR.len() as u8,
        SOURCE.len() as u8,
        1,
    ];
    e.extend(ID);
    e.extend(DESCRIPTOR);
    e.extend(SOURCE);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn iso_names(seed: &Seed) -> BTreeSet<String> {
        let dirs = build_tree(seed).unwrap();
        dirs.iter()
            .flat_map(|d| {
                d.entries
                    .iter()
                    .map(|e| String::from_utf8(e.iso.clone()).unwrap())
            })
            .collect()
    }

    #[test]
    fn level_one_names_are_unique_per_directory() {
        let mut seed = Seed::new("T");
        for name in [
            "meta-data",
            "meta-data.json",
            "meta-data-2",
            "network-config",
            "a.tar.gz",
            "openstack/latest/x",
        ] {
            seed.add(name, vec![]).unwrap();
        }
        let names = iso_names(&seed);
        let expected: BTreeSet<String> = [
            "META_DAT.;1",
            "META_DAT.JSO;1",
            "META_DA1.;1",
            "NETWORK_.;1",
            "A_TAR.GZ;1",
            "OPENSTAC",
            "LATEST",
            "X.;1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn joliet_names_drop_forbidden_characters_and_stay_short() {
        let decode = |bytes: Vec<u8>| {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).unwrap()
        };
        assert_eq!(decode(joliet_name("a:b;c", 0)), "a_b_c");
        assert_eq!(decode(joliet_name("ünï", 0)), "ünï");
        assert_eq!(decode(joliet_name(&"x".repeat(70), 0)).len(), 64);
        assert!(decode(joliet_name(&"x".repeat(70), 2)).ends_with("~2"));
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(descriptor_date(0)[..16], *b"1970010100000000");
        assert_eq!(record_date(0), [70, 1, 1, 0, 0, 0, 0]);
        // 2024-02-29 12:34:56 UTC
        assert_eq!(descriptor_date(1_709_210_096)[..16], *b"2024022912345600");
        assert_eq!(record_date(1_709_210_096), [124, 2, 29, 12, 34, 56, 0]);
    }

    #[test]
    fn a_file_and_a_directory_cannot_share_a_name() {
        let mut seed = Seed::new("T");
        seed.add("a", vec![1]).unwrap();
        seed.add("a/b", vec![2]).unwrap();
        assert!(write(&seed, 0).is_err());
    }

    #[test]
    fn descriptors_and_label_are_in_place() {
        let mut seed = Seed::new("cidata");
        seed.add("meta-data", b"instance-id: x\n".to_vec()).unwrap();
        let image = write(&seed, 0).unwrap();
        assert_eq!(&image[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&image[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
        assert_eq!(image[17 * SECTOR], 2);
        assert_eq!(image[18 * SECTOR], 255);
        assert_eq!(image.len() % SECTOR, 0);
        assert_eq!(write(&seed, 0).unwrap(), image);
    }
}
