//! The two interfaces every format implements, and the facts `info` reports.

use serde::Serialize;

use crate::{Format, Result};

/// How a guest range is backed, as far as the image's own tables tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Backed by data in the file (which may still happen to be zeros).
    Data,
    /// Reads as zeros without reading the file: unallocated, a hole, or a
    /// cluster flagged as zero.
    Zero,
}

/// A guest-visible, read-only view of a disk image.
///
/// Reads take `&self` so that several threads can read one image at once;
/// implementations keep any table caches behind their own locks.
pub trait DiskRead: Send + Sync {
    /// The size of the disk the guest sees, in bytes.
    fn virtual_size(&self) -> u64;

    /// Fills `buf` with guest bytes starting at `offset`.
    /// `offset + buf.len()` must not exceed the virtual size.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// The allocation of the guest range at `offset`: returns the kind of the
    /// first byte and how many bytes from `offset` (at least 1, at most `len`)
    /// share it. `len` is non-zero and the range lies within the disk.
    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)>;

    /// What `kiln img info` reports about this image.
    fn info(&self) -> ImageInfo;
}

/// A writer of one output image. Data arrives in strictly ascending guest
/// order without overlap; ranges never handed to `write_at` read as zeros.
pub trait DiskWrite: Send {
    /// The unit the writer allocates in (cluster, grain, block). Convert hands
    /// it runs of whole units, aligned, except for a short last one at the
    /// disk's end, and never hands it a unit that is all zeros.
    fn granularity(&self) -> u64;

    /// Writes `data` at guest `offset`; `data` may span several units.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// Writes the remaining metadata and syncs the file.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// The facts about an image that `kiln img info` prints, in qemu-img's terms.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImageInfo {
    pub format: Format,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Bytes the file occupies on disk (allocated blocks); filled in by `open`.
    pub actual_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    /// Format-specific subformat or version: "compat 1.1", "streamOptimized", "dynamic".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subformat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_format: Option<String>,
    /// External files the image refers to (data file, VMDK extents).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_files: Vec<String>,
    pub dirty: bool,
    pub corrupt: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotInfo>,
    /// Other format-specific facts as key/value pairs, printed in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    pub vm_state_size: u64,
    pub date_sec: u32,
    pub vm_clock_nsec: u64,
}
