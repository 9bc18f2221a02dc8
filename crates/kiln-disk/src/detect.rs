//! Format detection by content, never by file name.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

use serde::Serialize;

use crate::{Error, Result};

/// The image formats kiln knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Raw,
    Qcow2,
    Vmdk,
    Vhd,
    Vdi,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Vhd,
        Format::Vdi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Vdi => "vdi",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "raw" => Format::Raw,
            "qcow2" => Format::Qcow2,
            "vmdk" => Format::Vmdk,
            // qemu-img calls VHD "vpc".
            "vhd" | "vpc" => Format::Vhd,
            "vdi" => Format::Vdi,
            other => {
                return Err(Error::Usage(format!(
                    "unknown format {other:?}; known: raw, qcow2, vmdk, vhd (or vpc), vdi"
                )));
            }
        })
    }
}

/// A signature found in a file: the structures a file can be mistaken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    Qcow2,
    /// Binary sparse-extent header (`KDMV`).
    VmdkSparse,
    /// A text descriptor (`# Disk DescriptorFile`).
    VmdkDescriptor,
    /// `conectix` footer at the end of the file, or its copy at the start.
    Vhd,
    Vdi,
    Vhdx,
    /// An ISO 9660 volume descriptor (`CD001` at 32 KiB + 1).
    Iso9660,
    /// A GPT header (`EFI PART` at LBA 1).
    Gpt,
}

impl Signature {
    /// The image container format this signature belongs to, if any.
    pub fn container(self) -> Option<Format> {
        match self {
            Signature::Qcow2 => Some(Format::Qcow2),
            Signature::VmdkSparse | Signature::VmdkDescriptor => Some(Format::Vmdk),
            Signature::Vhd => Some(Format::Vhd),
            Signature::Vdi => Some(Format::Vdi),
            Signature::Vhdx | Signature::Iso9660 | Signature::Gpt => None,
        }
    }
}

const VDI_SIGNATURE: u32 = 0xbeda_107f;

/// Every signature present in `file`: its start, its end (VHD footer), the ISO
/// volume descriptor area and the GPT header.
pub fn detect_all(file: &File) -> Result<Vec<Signature>> {
    let len = file.metadata()?.len();
    let mut head = vec![0u8; 4096.min(len) as usize];
    file.read_exact_at(&mut head, 0)?;
    let mut found = Vec::new();
    if head.starts_with(b"QFI\xfb") {
        found.push(Signature::Qcow2);
    }
    if head.starts_with(b"KDMV") {
        found.push(Signature::VmdkSparse);
    }
    if head.starts_with(b"# Disk DescriptorFile") {
        found.push(Signature::VmdkDescriptor);
    }
    if head.starts_with(b"vhdxfile") {
        found.push(Signature::Vhdx);
    }
    if head.len() >= 0x44
        && u32::from_le_bytes(head[0x40..0x44].try_into().unwrap()) == VDI_SIGNATURE
    {
        found.push(Signature::Vdi);
    }
    let footer_at_end = if len >= 512 {
        let mut tail = [0u8; 8];
        file.read_exact_at(&mut tail, len - 512)?;
        &tail == b"conectix"
    } else {
        false
    };
    if footer_at_end || head.starts_with(b"conectix") {
        found.push(Signature::Vhd);
    }
    if head.len() >= 520 && &head[512..520] == b"EFI PART" {
        found.push(Signature::Gpt);
    }
    if len >= 0x8006 {
        let mut vd = [0u8; 5];
        file.read_exact_at(&mut vd, 0x8001)?;
        if &vd == b"CD001" {
            found.push(Signature::Iso9660);
        }
    }
    Ok(found)
}

/// The format of `file`, judged by content. A file that carries no known
/// container signature is raw.
pub fn detect(file: &File) -> Result<Format> {
    let sigs = detect_all(file)?;
    if sigs.contains(&Signature::Vhdx) {
        return Err(Error::unsupported(
            "vhdx",
            "VHDX images can not be read yet",
        ));
    }
    // The first container signature wins; the safety inspector is the place
    // that refuses files carrying more than one.
    Ok(sigs
        .iter()
        .find_map(|s| s.container())
        .unwrap_or(Format::Raw))
}
