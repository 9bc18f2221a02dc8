use std::fs::File;

use crate::{CreateOptions, Error, Result};

pub struct Qcow2Writer;

impl Qcow2Writer {
    pub fn new(_file: File, _opts: &CreateOptions, _size: u64) -> Result<Self> {
        Err(Error::unsupported("qcow2", "writer not implemented yet"))
    }
}

impl crate::DiskWrite for Qcow2Writer {
    fn granularity(&self) -> u64 {
        65536
    }
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> crate::Result<()> {
        unreachable!()
    }
    fn finish(self: Box<Self>) -> crate::Result<()> {
        unreachable!()
    }
}
