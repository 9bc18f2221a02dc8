//! VDI (VirtualBox): static and dynamic images, read only.
//! (Being written: see the disk-formats work in progress.)

use std::fs::File;

use crate::{DiskRead, Error, Result};

pub fn open(_file: File) -> Result<Box<dyn DiskRead>> {
    Err(Error::unsupported("vdi", "reader not implemented yet"))
}

/// Structural safety checks; see [`crate::inspect`].
pub fn inspect_structure(_file: &File, _file_size: u64) -> crate::inspect::Structure {
    crate::inspect::Structure { virtual_size: None, problems: vec!["not implemented yet".into()] }
}
