//! Raw images: the guest disk byte for byte, holes as zeros.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::writeback::Writeback;
use crate::{Allocation, DiskRead, DiskWrite, Format, ImageInfo, Result};

pub struct RawReader {
    file: File,
    size: u64,
}

impl RawReader {
    pub fn new(file: File) -> Result<Self> {
        let size = file.metadata()?.len();
        Ok(RawReader { file, size })
    }
}

enum Seek {
    Found(u64),
    /// ENXIO: no data (or hole) at or after the offset.
    PastEnd,
    /// The file system does not answer SEEK_DATA/SEEK_HOLE.
    Unsupported,
}

fn lseek(file: &File, offset: u64, whence: i32) -> Seek {
    // SAFETY: lseek reads only its integer arguments; `file` owns the descriptor.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Seek::Found(r as u64);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => Seek::PastEnd,
        _ => Seek::Unsupported,
    }
}

impl DiskRead for RawReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        let end = offset + len;
        match lseek(&self.file, offset, libc::SEEK_DATA) {
            Seek::Unsupported => Ok((Allocation::Data, len)),
            Seek::PastEnd => Ok((Allocation::Zero, len)),
            Seek::Found(data) if data > offset => Ok((Allocation::Zero, data.min(end) - offset)),
            Seek::Found(_) => {
                let hole = match lseek(&self.file, offset, libc::SEEK_HOLE) {
                    Seek::Found(h) => h,
                    _ => self.size,
                };
                Ok((Allocation::Data, hole.clamp(offset + 1, end) - offset))
            }
        }
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            format: Format::Raw,
            virtual_size: self.size,
            ..Default::default()
        }
    }
}

/// Writes a raw image as a sparse file: only data is written, the rest stays a hole.
pub struct RawWriter {
    file: File,
    writeback: Writeback,
}

impl RawWriter {
    pub fn new(file: File, virtual_size: u64) -> Result<Self> {
        file.set_len(virtual_size)?;
        Ok(RawWriter {
            file,
            writeback: Writeback::default(),
        })
    }
}

impl DiskWrite for RawWriter {
    fn granularity(&self) -> u64 {
        4096
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, offset)?;
        self.writeback.wrote(&self.file, offset, data.len() as u64);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.file.sync_all()?;
        Ok(())
    }
}
