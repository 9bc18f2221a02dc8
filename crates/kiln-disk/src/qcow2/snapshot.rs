//! The snapshot table: listed by `info`, walked by `check`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::header::Header;
use crate::io::SnapshotInfo;
use crate::{Error, Result};

/// qemu refuses more snapshots than this.
pub const MAX_SNAPSHOTS: u32 = 65536;
/// The fixed part of a snapshot table entry.
const ENTRY_HEADER: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub l1_table_offset: u64,
    pub l1_size: u32,
    pub id: String,
    pub name: String,
    pub date_sec: u32,
    pub vm_clock_nsec: u64,
    pub vm_state_size: u64,
}

impl Snapshot {
    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            vm_state_size: self.vm_state_size,
            date_sec: self.date_sec,
            vm_clock_nsec: self.vm_clock_nsec,
        }
    }
}

/// Reads every snapshot entry, refusing a table that leaves the file.
/// Returns the entries and the bytes the table occupies.
pub fn read_snapshots(
    file: &File,
    file_size: u64,
    header: &Header,
) -> Result<(Vec<Snapshot>, u64)> {
    if header.nb_snapshots == 0 {
        return Ok((Vec::new(), 0));
    }
    let bad = |why: String| Error::invalid("qcow2", format!("snapshot table: {why}"));
    if header.nb_snapshots > MAX_SNAPSHOTS {
        return Err(bad(format!("{} snapshots", header.nb_snapshots)));
    }
    let mut snapshots = Vec::with_capacity(header.nb_snapshots as usize);
    let mut at = header.snapshots_offset;
    // Entries start 8-aligned; the table ends where its last entry does.
    let mut end = at;
    for _ in 0..header.nb_snapshots {
        let mut fixed = [0u8; ENTRY_HEADER];
        if at
            .checked_add(ENTRY_HEADER as u64)
            .is_none_or(|end| end > file_size)
        {
            return Err(bad(format!("entry at {at:#x} lies outside the file")));
        }
        file.read_exact_at(&mut fixed, at)?;
        let u16_at = |i: usize| u16::from_be_bytes(fixed[i..i + 2].try_into().unwrap()) as u64;
        let u32_at = |i: usize| u32::from_be_bytes(fixed[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_be_bytes(fixed[i..i + 8].try_into().unwrap());
        let (id_len, name_len, extra_len) = (u16_at(12), u16_at(14), u32_at(36) as u64);
        let rest = extra_len + id_len + name_len;
        if (at + ENTRY_HEADER as u64)
            .checked_add(rest)
            .is_none_or(|end| end > file_size)
        {
            return Err(bad(format!(
                "entry at {at:#x} runs past the end of the file"
            )));
        }
        let mut tail = vec![0u8; rest as usize];
        file.read_exact_at(&mut tail, at + ENTRY_HEADER as u64)?;
        let mut vm_state_size = u32_at(32) as u64;
        if extra_len >= 8 {
            vm_state_size = u64::from_be_bytes(tail[0..8].try_into().unwrap());
        }
        let id_start = extra_len as usize;
        let name_start = id_start + id_len as usize;
        snapshots.push(Snapshot {
            l1_table_offset: u64_at(0),
            l1_size: u32_at(8),
            id: String::from_utf8_lossy(&tail[id_start..name_start]).into_owned(),
            name: String::from_utf8_lossy(&tail[name_start..]).into_owned(),
            date_sec: u32_at(16),
            vm_clock_nsec: u64_at(24),
            vm_state_size,
        });
        end = at + ENTRY_HEADER as u64 + rest;
        at = end.next_multiple_of(8);
    }
    Ok((snapshots, end - header.snapshots_offset))
}
