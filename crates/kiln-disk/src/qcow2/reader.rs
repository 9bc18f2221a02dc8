use std::fs::File;
use std::path::Path;

use crate::{Error, OpenOptions, Result};

pub struct Qcow2Reader;

impl Qcow2Reader {
    pub fn open(_file: File, _path: &Path, _opts: &OpenOptions, _depth: usize) -> Result<Self> {
        Err(Error::unsupported("qcow2", "reader not implemented yet"))
    }
}

impl crate::DiskRead for Qcow2Reader {
    fn virtual_size(&self) -> u64 {
        0
    }
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> Result<()> {
        unreachable!()
    }
    fn block_status(&self, _offset: u64, _len: u64) -> Result<(crate::Allocation, u64)> {
        unreachable!()
    }
    fn info(&self) -> crate::ImageInfo {
        unreachable!()
    }
}
