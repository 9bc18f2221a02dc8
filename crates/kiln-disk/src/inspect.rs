//! The safety inspector: decides whether an image from elsewhere may be used.
//!
//! An image is refused when it can reach outside itself (backing file,
//! external data file, VMDK extents in other files), lies about its format
//! (carries the signatures of two formats, as in OSSA-2024-001), or has tables
//! that point outside the file, overlap, or claim absurd sizes. The inspector
//! reads headers and tables only; it never follows a reference.

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use crate::detect::{Signature, detect_all};
use crate::{Format, Result, qcow2, vdi, vhd, vmdk};

/// The largest virtual disk kiln accepts from elsewhere: 64 TiB, beyond any
/// VM image in practice and far below what would overflow offset arithmetic.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// What the inspector found. `problems` empty means safe.
#[derive(Debug, Clone, Serialize)]
pub struct SafetyReport {
    pub format: Format,
    pub virtual_size: Option<u64>,
    pub file_size: u64,
    pub signatures: Vec<Signature>,
    pub problems: Vec<String>,
}

impl SafetyReport {
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A format's structural verdict on its own file.
#[derive(Debug, Default)]
pub struct Structure {
    pub virtual_size: Option<u64>,
    pub problems: Vec<String>,
}

/// Inspects the file at `path`. I/O errors are errors; everything wrong with
/// the content is a problem in the report.
pub fn inspect_file(path: &Path) -> Result<SafetyReport> {
    let file = File::open(path)?;
    inspect(&file)
}

pub fn inspect(file: &File) -> Result<SafetyReport> {
    let file_size = file.metadata()?.len();
    let signatures = detect_all(file)?;
    let mut problems = Vec::new();

    let containers: Vec<Format> = signatures.iter().filter_map(|s| s.container()).collect();
    let format = containers.first().copied().unwrap_or(Format::Raw);
    if signatures.contains(&Signature::Vhdx) {
        problems.push("VHDX images are not accepted".to_string());
    }
    let mut distinct = containers.clone();
    distinct.dedup();
    if distinct.len() > 1 {
        problems.push(format!(
            "the file carries the signatures of several formats ({}): it could be read as either",
            distinct
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for other in [Signature::Gpt, Signature::Iso9660] {
        if format != Format::Raw && signatures.contains(&other) {
            problems.push(format!(
                "a {format} image that also carries a {} signature inside: refusing a file that parses as two formats",
                match other {
                    Signature::Gpt => "GPT partition table",
                    _ => "ISO 9660",
                }
            ));
        }
    }

    let structure = match format {
        Format::Raw => Structure {
            virtual_size: Some(file_size),
            problems: Vec::new(),
        },
        Format::Qcow2 => qcow2::inspect_structure(file, file_size),
        Format::Vmdk => vmdk::inspect_structure(file, file_size),
        Format::Vhd => vhd::inspect_structure(file, file_size),
        Format::Vdi => vdi::inspect_structure(file, file_size),
    };
    problems.extend(structure.problems);
    if let Some(size) = structure.virtual_size
        && size > MAX_VIRTUAL_SIZE
    {
        problems.push(format!(
            "virtual size {size} bytes is larger than the {} TiB kiln accepts",
            MAX_VIRTUAL_SIZE >> 40
        ));
    }
    Ok(SafetyReport {
        format,
        virtual_size: structure.virtual_size,
        file_size,
        signatures,
        problems,
    })
}
