//! Opening and creating images of any format.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{
    CreateOptions, DiskRead, DiskWrite, Error, Format, Result, detect, qcow2, raw, vdi, vhd, vmdk,
};

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Skip detection and read the file as this format.
    pub format: Option<Format>,
    /// Follow backing files, external data files and VMDK extents in other
    /// files. Off by default: an image from elsewhere must not make kiln read
    /// files it names (the class of OSSA-2024-001).
    pub allow_external: bool,
}

/// How deep a backing chain may go before it is refused as a loop.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Opens `path` as a guest-visible disk.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskRead>> {
    open_at_depth(path, opts, 0)
}

/// Opens a file another image refers to (a backing file or an extent),
/// resolving `name` relative to the directory of the referring image.
pub(crate) fn open_external(
    referrer: &Path,
    name: &str,
    format: Option<Format>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Box<dyn DiskRead>> {
    if depth >= MAX_CHAIN_DEPTH {
        return Err(Error::Usage(format!(
            "backing chain deeper than {MAX_CHAIN_DEPTH} at {name:?}: refusing a possible loop"
        )));
    }
    let path = resolve_external(referrer, name);
    let opts = OpenOptions {
        format,
        ..opts.clone()
    };
    open_at_depth(&path, &opts, depth + 1)
}

/// A file name stored inside an image, as a path relative to that image.
pub(crate) fn resolve_external(referrer: &Path, name: &str) -> std::path::PathBuf {
    let named = Path::new(name);
    if named.is_absolute() {
        named.to_path_buf()
    } else {
        referrer.parent().unwrap_or(Path::new(".")).join(named)
    }
}

fn open_at_depth(path: &Path, opts: &OpenOptions, depth: usize) -> Result<Box<dyn DiskRead>> {
    let file = File::open(path).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    let format = match opts.format {
        Some(f) => f,
        None => detect(&file)?,
    };
    let actual_size = file.metadata()?.blocks() * 512;
    let image: Box<dyn DiskRead> = match format {
        Format::Raw => Box::new(raw::RawReader::new(file)?),
        Format::Qcow2 => Box::new(qcow2::Qcow2Reader::open(file, path, opts, depth)?),
        Format::Vmdk => Box::new(vmdk::VmdkReader::open(file, path, opts, depth)?),
        Format::Vhd => Box::new(vhd::VhdReader::open(file, path, opts, depth)?),
        Format::Vdi => Box::new(vdi::VdiReader::new(file)?),
    };
    Ok(Box::new(WithActualSize {
        inner: image,
        actual_size,
    }))
}

/// Adds the file's disk usage to what the format reports.
struct WithActualSize {
    inner: Box<dyn DiskRead>,
    actual_size: u64,
}

impl DiskRead for WithActualSize {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<(crate::Allocation, u64)> {
        self.inner.block_status(offset, len)
    }
    fn info(&self) -> crate::ImageInfo {
        let mut info = self.inner.info();
        info.actual_size = self.actual_size;
        info
    }
}

/// Creates `path` as a new, empty image of `virtual_size` bytes and returns
/// its writer. The file is created or truncated.
pub fn create(path: &Path, opts: &CreateOptions, virtual_size: u64) -> Result<Box<dyn DiskWrite>> {
    let file = File::create(path)?;
    Ok(match opts.format {
        Format::Raw => Box::new(raw::RawWriter::new(file, virtual_size)?),
        Format::Qcow2 => Box::new(qcow2::Qcow2Writer::new(file, opts, virtual_size)?),
        Format::Vmdk => Box::new(vmdk::StreamWriter::new(file, path, opts, virtual_size)?),
        Format::Vhd => Box::new(vhd::VhdWriter::new(file, opts, virtual_size)?),
        Format::Vdi => {
            return Err(Error::unsupported(
                "vdi",
                "kiln reads VDI but does not write it",
            ));
        }
    })
}
