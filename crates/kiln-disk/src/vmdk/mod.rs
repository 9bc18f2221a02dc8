//! VMDK: monolithicSparse and streamOptimized files (one hosted sparse
//! extent with an embedded descriptor), and text descriptors whose extents
//! live in other files (monolithicFlat, twoGbMaxExtentSparse/Flat, ...).
//! kiln writes streamOptimized only.

pub mod descriptor;
pub mod header;
mod sparse;
mod stream;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use descriptor::{Descriptor, Extent, ExtentKind};
pub use header::SparseHeader;
pub use sparse::SparseExtent;
pub use stream::StreamWriter;

use crate::blocks::{Survey, read_region};
use crate::inspect::Structure;
use crate::open::open_external;
use crate::{Allocation, DiskRead, Error, Format, ImageInfo, OpenOptions, Result};

const FORMAT: &str = "vmdk";
/// The largest text descriptor kiln reads.
const MAX_DESCRIPTOR_FILE: u64 = 1 << 20;

fn is_sparse_extent(file: &File) -> Result<bool> {
    let mut magic = [0u8; 4];
    Ok(file.read_exact_at(&mut magic, 0).is_ok() && &magic == header::MAGIC)
}

fn read_descriptor_file(file: &File, file_size: u64) -> Result<Descriptor> {
    if file_size > MAX_DESCRIPTOR_FILE {
        return Err(Error::invalid(
            FORMAT,
            format!("a {file_size}-byte text descriptor is too large"),
        ));
    }
    let bytes = read_region(file, 0, file_size, file_size, FORMAT, "descriptor")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::invalid(FORMAT, format!("descriptor is not UTF-8: {e}")))?;
    Descriptor::parse(text)
}

/// Refuses a child (snapshot) image: kiln does not read VMDK parents.
fn refuse_parent(descriptor: &Descriptor, opts: &OpenOptions) -> Result<()> {
    match descriptor.parent() {
        None => Ok(()),
        Some(parent) if !opts.allow_external => Err(Error::External {
            format: FORMAT,
            path: parent.into(),
        }),
        Some(parent) => Err(Error::unsupported(
            FORMAT,
            format!("child images (parent {parent:?})"),
        )),
    }
}

/// One stretch of the guest disk: zeros, or bytes of an extent from an offset.
struct Part {
    start: u64,
    len: u64,
    source: Option<(Box<dyn DiskRead>, u64)>,
}

/// A VMDK opened for reading: its extents laid end to end.
pub struct VmdkReader {
    parts: Vec<Part>,
    size: u64,
    info: ImageInfo,
}

impl VmdkReader {
    pub fn open(file: File, path: &Path, opts: &OpenOptions, depth: usize) -> Result<Self> {
        if is_sparse_extent(&file)? {
            let extent = SparseExtent::open(file)?;
            if let Some(d) = &extent.descriptor {
                refuse_parent(d, opts)?;
            }
            let (size, info) = (extent.virtual_size(), extent.info());
            let parts = vec![Part {
                start: 0,
                len: size,
                source: Some((Box::new(extent), 0)),
            }];
            return Ok(VmdkReader { parts, size, info });
        }
        let descriptor = read_descriptor_file(&file, file.metadata()?.len())?;
        refuse_parent(&descriptor, opts)?;
        if descriptor.extents.is_empty() {
            return Err(Error::invalid(FORMAT, "the descriptor names no extents"));
        }
        if !opts.allow_external
            && let Some(name) = descriptor.extents.iter().find_map(|e| e.file.as_ref())
        {
            return Err(Error::External {
                format: FORMAT,
                path: name.clone(),
            });
        }
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut cluster_size = None;
        for (i, extent) in descriptor.extents.iter().enumerate() {
            let bad = |what: &str| Error::invalid(FORMAT, format!("extent {i}: {what}"));
            let len = extent
                .sectors
                .checked_mul(512)
                .ok_or_else(|| bad("size overflows"))?;
            let source = match (extent.kind, &extent.file) {
                (_, _) if extent.access == "NOACCESS" => {
                    return Err(Error::unsupported(FORMAT, format!("NOACCESS extent {i}")));
                }
                (ExtentKind::Zero, _) => None,
                (ExtentKind::Sparse | ExtentKind::Flat, Some(name)) => {
                    let (format, offset) = match extent.kind {
                        ExtentKind::Sparse => (Format::Vmdk, 0),
                        _ => (
                            Format::Raw,
                            extent
                                .offset
                                .checked_mul(512)
                                .ok_or_else(|| bad("offset overflows"))?,
                        ),
                    };
                    let image = open_external(path, name, Some(format), opts, depth)?;
                    if offset
                        .checked_add(len)
                        .is_none_or(|end| end > image.virtual_size())
                    {
                        return Err(bad(&format!(
                            "{name:?} is shorter than the {len} bytes the extent needs"
                        )));
                    }
                    cluster_size = cluster_size.or(image.info().cluster_size);
                    Some((image, offset))
                }
                (ExtentKind::Sparse | ExtentKind::Flat, None) => return Err(bad("no file name")),
                (ExtentKind::Other, _) => {
                    return Err(Error::unsupported(
                        FORMAT,
                        format!("{} extents", extent.kind_name),
                    ));
                }
            };
            if len > 0 {
                parts.push(Part {
                    start: size,
                    len,
                    source,
                });
            }
            size = size
                .checked_add(len)
                .ok_or_else(|| bad("disk size overflows"))?;
        }
        let mut details = vec![("cid".into(), descriptor.cid.to_string())];
        if let Some(adapter) = descriptor.ddb("ddb.adapterType") {
            details.push(("adapter type".into(), adapter.into()));
        }
        let info = ImageInfo {
            format: Format::Vmdk,
            virtual_size: size,
            cluster_size,
            subformat: Some(descriptor.create_type.clone()),
            external_files: descriptor
                .extents
                .iter()
                .filter_map(|e| e.file.clone())
                .collect(),
            details,
            ..Default::default()
        };
        Ok(VmdkReader { parts, size, info })
    }

    /// The part holding guest byte `offset` (which is within the disk).
    fn part(&self, offset: u64) -> Result<&Part> {
        let i = self.parts.partition_point(|p| p.start + p.len <= offset);
        self.parts
            .get(i)
            .ok_or_else(|| Error::Usage(format!("offset {offset} is past the end of the disk")))
    }
}

impl DiskRead for VmdkReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let part = self.part(pos)?;
            let n = ((part.start + part.len - pos) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match &part.source {
                None => piece.fill(0),
                Some((image, base)) => image.read_at(piece, base + pos - part.start)?,
            }
            done += n;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        let part = self.part(offset)?;
        let len = len.min(part.start + part.len - offset);
        match &part.source {
            None => Ok((Allocation::Zero, len)),
            Some((image, base)) => image.block_status(base + offset - part.start, len),
        }
    }

    fn info(&self) -> ImageInfo {
        self.info.clone()
    }
}

/// What a descriptor refers to and what is wrong with it, without opening anything.
fn survey_descriptor(descriptor: &Descriptor, embedded: bool, survey: &mut Survey) {
    if let Some(parent) = descriptor.parent() {
        survey
            .references
            .push(format!("child image: refers to parent file {parent:?}"));
    }
    if embedded {
        // The file itself is the extent; a name other than a bare file
        // name, or more extents, would lead another reader elsewhere.
        for e in &descriptor.extents {
            if let Some(name) = e
                .file
                .as_ref()
                .filter(|n| n.contains('/') || n.contains('\\') || descriptor.extents.len() > 1)
            {
                survey
                    .references
                    .push(format!("embedded descriptor names extent file {name:?}"));
            }
        }
        return;
    }
    let mut size = Some(0u64);
    for (i, e) in descriptor.extents.iter().enumerate() {
        if let Some(name) = &e.file {
            survey
                .references
                .push(format!("extent {i} refers to file {name:?}"));
        }
        if e.kind == ExtentKind::Other {
            survey.problems.push(format!(
                "extent {i} is of kind {} kiln does not read",
                e.kind_name
            ));
        }
        size = size.and_then(|s| s.checked_add(e.sectors.checked_mul(512)?));
    }
    match size {
        Some(size) => survey.virtual_size = Some(size),
        None => survey.problems.push("the extents' sizes overflow".into()),
    }
    if descriptor.extents.is_empty() {
        survey.problems.push("the descriptor has no extents".into());
    }
}

fn survey(file: &File, file_size: u64) -> Survey {
    match is_sparse_extent(file) {
        Ok(true) => {
            let (mut survey, descriptor) = sparse::survey(file, file_size);
            if let Some(d) = descriptor {
                survey_descriptor(&d, true, &mut survey);
            }
            survey
        }
        Ok(false) => match read_descriptor_file(file, file_size) {
            Ok(d) => {
                let mut survey = Survey::default();
                survey_descriptor(&d, false, &mut survey);
                survey
            }
            Err(e) => Survey::failed(e),
        },
        Err(e) => Survey::failed(e),
    }
}

/// Structural safety checks; see [`crate::inspect`].
pub fn inspect_structure(file: &File, file_size: u64) -> Structure {
    survey(file, file_size).into_structure()
}

/// Structural errors for `kiln img check`; empty when the image is clean.
/// A text descriptor's extents are not opened.
pub fn check(file: &File) -> Result<Vec<String>> {
    Ok(survey(file, file.metadata()?.len()).problems)
}
