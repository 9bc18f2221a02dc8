//! Early writeback for files written front to back.
//!
//! Writers sync their output before it is renamed into place. Left alone, the
//! kernel holds every written page dirty until that final fsync, which then
//! writes the whole image in one go while the writer waits. Starting writeback
//! of each stretch as soon as it is written (`sync_file_range`, as streaming
//! writers such as ostree do) overlaps the disk with the work still to come,
//! so the final fsync only finds the tail.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Writeback is started once this much has been written since the last start.
const BATCH: u64 = 8 << 20;

#[derive(Debug, Default)]
pub struct Writeback {
    /// The range written since writeback was last started.
    pending: Option<(u64, u64)>,
}

impl Writeback {
    /// Notes that `len` bytes were written at `offset`, and starts writeback
    /// of everything pending once a batch has gathered.
    pub fn wrote(&mut self, file: &File, offset: u64, len: u64) {
        let end = offset + len;
        let (start, stop) = match self.pending {
            Some((s, e)) => (s.min(offset), e.max(end)),
            None => (offset, end),
        };
        if stop - start < BATCH {
            self.pending = Some((start, stop));
            return;
        }
        self.pending = None;
        // Only a hint: if the kernel refuses, the final fsync does the work.
        // SAFETY: plain syscall on an open descriptor; no memory is passed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                start as libc::off64_t,
                (stop - start) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
}
