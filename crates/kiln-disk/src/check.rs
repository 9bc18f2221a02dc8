//! `check`: metadata consistency of any format, in qemu-img check's terms.

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use crate::{Format, Result, detect, qcow2, vdi, vhd, vmdk};

#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckReport {
    pub format: Format,
    /// Corruptions: references the metadata does not account for, tables out of bounds.
    pub errors: Vec<String>,
    /// Space marked used that nothing refers to: wasted, not harmful.
    pub leaks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_clusters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_clusters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_clusters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_end_offset: Option<u64>,
}

/// Checks the image at `path`; the format is detected unless given.
pub fn check_file(path: &Path, format: Option<Format>) -> Result<CheckReport> {
    let file = File::open(path)?;
    let format = match format {
        Some(f) => f,
        None => detect(&file)?,
    };
    let mut report = match format {
        Format::Qcow2 => qcow2::check(&file)?,
        Format::Raw => CheckReport::default(),
        Format::Vmdk => CheckReport {
            errors: vmdk::check(&file)?,
            ..Default::default()
        },
        Format::Vhd => CheckReport {
            errors: vhd::check(&file)?,
            ..Default::default()
        },
        Format::Vdi => CheckReport {
            errors: vdi::check(&file)?,
            ..Default::default()
        },
    };
    report.format = format;
    Ok(report)
}
