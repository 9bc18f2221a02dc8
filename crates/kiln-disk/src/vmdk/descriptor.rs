//! The VMDK text descriptor: `key=value` lines, extent lines and the disk
//! database (`ddb.*`), as plain data.

use crate::{Error, Result};

/// `parentCID` of an image without a parent.
pub const NO_PARENT_CID: u32 = 0xffff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// A hosted sparse extent (`KDMV`) file.
    Sparse,
    /// Raw guest bytes in a file, from a sector offset (FLAT, or VMFS on ESX).
    Flat,
    /// Reads as zeros; no file.
    Zero,
    /// An ESX-only kind kiln does not read (VMFSSPARSE, SESPARSE, VMFSRDM, ...).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// RW, RDONLY or NOACCESS.
    pub access: String,
    pub sectors: u64,
    pub kind: ExtentKind,
    /// The kind as written.
    pub kind_name: String,
    /// The file, relative to the descriptor; absent for ZERO extents.
    pub file: Option<String>,
    /// Where the extent starts in its file, in sectors (FLAT extents).
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub cid: u32,
    pub parent_cid: u32,
    pub create_type: String,
    pub parent_file_name_hint: Option<String>,
    pub extents: Vec<Extent>,
    /// Disk database entries (`ddb.adapterType` ...), in file order.
    pub ddb: Vec<(String, String)>,
}

fn invalid(reason: String) -> Error {
    Error::invalid("vmdk", reason)
}

/// The first whitespace-separated word of `s` and the rest after it.
fn next_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_once(char::is_whitespace).unwrap_or((s, ""))
}

/// Splits an extent line: `RW 2048 FLAT "name with spaces.vmdk" 0`.
fn parse_extent(line: &str, number: usize) -> Result<Extent> {
    let bad = || {
        invalid(format!(
            "descriptor line {number}: malformed extent {line:?}"
        ))
    };
    let (access, rest) = next_word(line);
    let (sectors, rest) = next_word(rest);
    let (kind_name, rest) = next_word(rest);
    let access = access.to_string();
    let sectors = sectors.parse::<u64>().map_err(|_| bad())?;
    let kind = match kind_name {
        "SPARSE" => ExtentKind::Sparse,
        "FLAT" | "VMFS" => ExtentKind::Flat,
        "ZERO" => ExtentKind::Zero,
        _ => ExtentKind::Other,
    };
    let rest = rest.trim();
    let (file, offset) = if kind == ExtentKind::Zero && rest.is_empty() {
        (None, 0)
    } else {
        let quoted = rest.strip_prefix('"').ok_or_else(bad)?;
        let (name, after) = quoted.split_once('"').ok_or_else(bad)?;
        let after = after.trim();
        let offset = if after.is_empty() {
            0
        } else {
            after.parse::<u64>().map_err(|_| bad())?
        };
        (Some(name.to_string()), offset)
    };
    Ok(Extent {
        access,
        sectors,
        kind,
        kind_name: kind_name.to_string(),
        file,
        offset,
    })
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

impl Descriptor {
    pub fn parse(text: &str) -> Result<Descriptor> {
        let mut d = Descriptor {
            parent_cid: NO_PARENT_CID,
            ..Default::default()
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if ["RW ", "RDONLY ", "NOACCESS "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                d.extents.push(parse_extent(line, i + 1)?);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!(
                    "descriptor line {}: neither key=value nor an extent: {line:?}",
                    i + 1
                )));
            };
            let (key, value) = (key.trim(), unquote(value));
            let hex = || {
                u32::from_str_radix(value, 16)
                    .map_err(|_| invalid(format!("descriptor line {}: {key} {value:?}", i + 1)))
            };
            match key {
                "CID" => d.cid = hex()?,
                "parentCID" => d.parent_cid = hex()?,
                "createType" => d.create_type = value.to_string(),
                "parentFileNameHint" => d.parent_file_name_hint = Some(value.to_string()),
                k if k.starts_with("ddb.") => d.ddb.push((k.to_string(), value.to_string())),
                _ => {}
            }
        }
        Ok(d)
    }

    /// The descriptor of a new streamOptimized image, with qemu-img's
    /// geometry (16 heads for IDE, 255 otherwise; 63 sectors a track).
    pub fn stream_optimized(capacity: u64, file_name: &str, adapter: &str, cid: u32) -> Descriptor {
        let heads: u64 = if adapter == "ide" { 16 } else { 255 };
        let ddb = [
            ("ddb.virtualHWVersion", "4".to_string()),
            (
                "ddb.geometry.cylinders",
                (capacity / (heads * 63)).to_string(),
            ),
            ("ddb.geometry.heads", heads.to_string()),
            ("ddb.geometry.sectors", "63".to_string()),
            ("ddb.adapterType", adapter.to_string()),
            ("ddb.toolsVersion", "2147483647".to_string()),
        ];
        Descriptor {
            cid,
            parent_cid: NO_PARENT_CID,
            create_type: "streamOptimized".into(),
            parent_file_name_hint: None,
            extents: vec![Extent {
                access: "RW".into(),
                sectors: capacity,
                kind: ExtentKind::Sparse,
                kind_name: "SPARSE".into(),
                file: Some(file_name.replace('"', "_")),
                offset: 0,
            }],
            ddb: ddb.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "# Disk DescriptorFile\nversion=1\nCID={:08x}\nparentCID={:08x}\ncreateType=\"{}\"\n",
            self.cid, self.parent_cid, self.create_type
        );
        if let Some(hint) = &self.parent_file_name_hint {
            s += &format!("parentFileNameHint=\"{hint}\"\n");
        }
        s += "\n# Extent description\n";
        for e in &self.extents {
            s += &format!("{} {} {}", e.access, e.sectors, e.kind_name);
            if let Some(file) = &e.file {
                s += &format!(" \"{file}\"");
            }
            if e.kind == ExtentKind::Flat {
                s += &format!(" {}", e.offset);
            }
            s += "\n";
        }
        s += "\n# The Disk Data Base\n#DDB\n\n";
        for (k, v) in &self.ddb {
            s += &format!("{k} = \"{v}\"\n");
        }
        s
    }

    pub fn ddb(&self, key: &str) -> Option<&str> {
        self.ddb
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The parent image this one is a child (snapshot) of, if any.
    pub fn parent(&self) -> Option<&str> {
        if self.parent_cid == NO_PARENT_CID {
            return None;
        }
        Some(
            self.parent_file_name_hint
                .as_deref()
                .unwrap_or("(unnamed parent)"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_qemu_writes() {
        let text = "# Disk DescriptorFile\nversion=1\nCID=e30e5999\nparentCID=ffffffff\n\
                    createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n\
                    RW 4192256 FLAT \"a b-f001.vmdk\" 0\nRW 100 FLAT \"x-f002.vmdk\" 7\nRDONLY 5 ZERO\n\n\
                    ddb.adapterType = \"ide\"\n";
        let d = Descriptor::parse(text).unwrap();
        assert_eq!(d.cid, 0xe30e5999);
        assert_eq!(d.parent(), None);
        assert_eq!(d.create_type, "twoGbMaxExtentFlat");
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[0].file.as_deref(), Some("a b-f001.vmdk"));
        assert_eq!((d.extents[1].sectors, d.extents[1].offset), (100, 7));
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
        assert_eq!(d.ddb("ddb.adapterType"), Some("ide"));
    }

    #[test]
    fn written_descriptors_parse_back() {
        let d = Descriptor::stream_optimized(144_594, "disk.vmdk", "lsilogic", 0x1234);
        assert_eq!(Descriptor::parse(&d.to_text()).unwrap(), d);
        assert_eq!(d.ddb("ddb.geometry.cylinders"), Some("9"));
    }

    #[test]
    fn malformed_extents_are_errors() {
        for line in [
            "RW x SPARSE \"a\"",
            "RW 1 FLAT a",
            "RW 1 FLAT \"a",
            "RW 1 FLAT \"a\" z",
            "RW 5",
        ] {
            assert!(Descriptor::parse(line).is_err(), "{line}");
        }
    }
}
