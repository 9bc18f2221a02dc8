//! VHD (qemu's "vpc"): fixed and dynamic images.
//! (Being written: see the disk-formats work in progress.)

use std::fs::File;
use std::path::Path;

use crate::{CreateOptions, DiskRead, DiskWrite, Error, OpenOptions, Result};

pub fn open(_file: File, _path: &Path, _opts: &OpenOptions, _depth: usize) -> Result<Box<dyn DiskRead>> {
    Err(Error::unsupported("vhd", "reader not implemented yet"))
}

pub fn create(_file: File, _opts: &CreateOptions, _size: u64) -> Result<Box<dyn DiskWrite>> {
    Err(Error::unsupported("vhd", "writer not implemented yet"))
}

/// Structural safety checks; see [`crate::inspect`].
pub fn inspect_structure(_file: &File, _file_size: u64) -> crate::inspect::Structure {
    crate::inspect::Structure { virtual_size: None, problems: vec!["not implemented yet".into()] }
}
