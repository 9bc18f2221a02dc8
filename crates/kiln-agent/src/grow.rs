//! Growing the root partition to the end of its disk, as growpart does: the
//! partition table is edited in place (GPT: the partition's last LBA, the
//! backup header and entries moved to the new end, CRCs; MBR: the size),
//! then the kernel is told (`partx --update`) and the filesystem grown
//! (`resize2fs`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SECTOR: u64 = 512;
/// Growing by less than this is not worth a partition table write.
const MIN_GROWTH: u64 = 1024 * 1024;

fn read_at(file: &mut File, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    file.read_exact(&mut buf)
        .map_err(|e| format!("read at {offset}: {e}"))?;
    Ok(buf)
}

/// What growing takes: bytes to write at offsets, in order, and the
/// partition's new size.
struct Growth {
    writes: Vec<(u64, Vec<u8>)>,
    bytes: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Grows partition `number` (1-based) of the disk (a device or an image file)
/// to the end of the disk. Returns the new size in bytes, or None when there
/// was nothing to grow.
pub fn grow_partition(disk: &Path, number: u32) -> Result<Option<u64>, String> {
    let cannot_open = |e: std::io::Error| format!("cannot open {}: {e}", disk.display());
    // Planned on a read-only handle: closing a disk that was open for
    // writing makes udev probe it and each of its partitions again, which
    // costs a boot under emulation more than the agent's whole run.
    let mut file = File::open(disk).map_err(cannot_open)?;
    let size = file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let sectors = size / SECTOR;
    let mbr = read_at(&mut file, 0, 512)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(format!("{}: no partition table", disk.display()));
    }
    let growth = if mbr[450] == 0xEE {
        grow_gpt(&mut file, sectors, number)?
    } else {
        grow_mbr(&mbr, sectors, number)?
    };
    let Some(growth) = growth else {
        return Ok(None);
    };
    let mut file = File::options()
        .write(true)
        .open(disk)
        .map_err(cannot_open)?;
    for (offset, bytes) in &growth.writes {
        file.seek(SeekFrom::Start(*offset))
            .and_then(|_| file.write_all(bytes))
            .map_err(|e| format!("write at {offset}: {e}"))?;
    }
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(Some(growth.bytes))
}

fn grow_mbr(mbr: &[u8], sectors: u64, number: u32) -> Result<Option<Growth>, String> {
    if !(1..=4).contains(&number) {
        return Err(format!("MBR partition {number} is not a primary partition"));
    }
    let entry = 446 + 16 * (number as usize - 1);
    let start = u64::from(u32_at(mbr, entry + 8));
    let length = u64::from(u32_at(mbr, entry + 12));
    if mbr[entry + 4] == 0 || length == 0 {
        return Err(format!("MBR partition {number} does not exist"));
    }
    let end = start + length;
    let others_after = (0..4).filter(|&i| i != number as usize - 1).any(|i| {
        let e = 446 + 16 * i;
        mbr[e + 4] != 0 && u64::from(u32_at(mbr, e + 8)) >= end
    });
    if others_after {
        return Err(format!("partition {number} is not the last one"));
    }
    let new_length = sectors.min(u64::from(u32::MAX)) - start;
    if new_length * SECTOR < length * SECTOR + MIN_GROWTH {
        return Ok(None);
    }
    Ok(Some(Growth {
        writes: vec![(
            entry as u64 + 12,
            (new_length as u32).to_le_bytes().to_vec(),
        )],
        bytes: new_length * SECTOR,
    }))
}

fn grow_gpt(file: &mut File, sectors: u64, number: u32) -> Result<Option<Growth>, String> {
    let header = read_at(file, SECTOR, SECTOR as usize)?;
    if &header[0..8] != b"EFI PART" {
        return Err("protective MBR but no GPT header".into());
    }
    let header_size = u32_at(&header, 12) as usize;
    let entries_lba = u64_at(&header, 72);
    let count = u32_at(&header, 80) as u64;
    let entry_size = u32_at(&header, 84) as u64;
    if !(92..=512).contains(&header_size)
        || entry_size < 128
        || count == 0
        || count > 4096
        || number == 0
        || u64::from(number) > count
    {
        return Err("damaged GPT header".into());
    }
    let entries_bytes = count * entry_size;
    let entries_sectors = entries_bytes.div_ceil(SECTOR);
    let mut entries = read_at(file, entries_lba * SECTOR, entries_bytes as usize)?;
    if crc32fast::hash(&entries) != u32_at(&header, 88) {
        return Err("GPT partition entries fail their CRC".into());
    }
    let backup_lba = sectors - 1;
    let backup_entries_lba = backup_lba - entries_sectors;
    let last_usable = backup_entries_lba - 1;
    let at = (u64::from(number) - 1) * entry_size;
    let entry = at as usize;
    if entries[entry..entry + 16].iter().all(|&b| b == 0) {
        return Err(format!("GPT partition {number} does not exist"));
    }
    let first = u64_at(&entries, entry + 32);
    let last = u64_at(&entries, entry + 40);
    let others_after = (0..count as usize)
        .filter(|&i| i as u64 != at / entry_size)
        .any(|i| {
            let e = i * entry_size as usize;
            !entries[e..e + 16].iter().all(|&b| b == 0) && u64_at(&entries, e + 32) > last
        });
    if others_after {
        return Err(format!("partition {number} is not the last one"));
    }
    if last_usable <= last || (last_usable - last) * SECTOR < MIN_GROWTH {
        return Ok(None);
    }
    entries[entry + 40..entry + 48].copy_from_slice(&last_usable.to_le_bytes());
    let entries_crc = crc32fast::hash(&entries);
    let mut primary = header.clone();
    primary[32..40].copy_from_slice(&backup_lba.to_le_bytes());
    primary[48..56].copy_from_slice(&last_usable.to_le_bytes());
    primary[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let mut backup = primary.clone();
    backup[24..32].copy_from_slice(&backup_lba.to_le_bytes());
    backup[32..40].copy_from_slice(&1u64.to_le_bytes());
    backup[72..80].copy_from_slice(&backup_entries_lba.to_le_bytes());
    for h in [&mut primary, &mut backup] {
        h[16..20].copy_from_slice(&[0; 4]);
        let crc = crc32fast::hash(&h[..header_size]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    // The protective MBR covers the whole disk (at most 2 TiB of it).
    let protective = (sectors - 1).min(u64::from(u32::MAX)) as u32;
    Ok(Some(Growth {
        // Backup first: the primary, written last, is what tools trust.
        writes: vec![
            (backup_entries_lba * SECTOR, entries.clone()),
            (backup_lba * SECTOR, backup),
            (entries_lba * SECTOR, entries),
            (SECTOR, primary),
            (446 + 12, protective.to_le_bytes().to_vec()),
        ],
        bytes: (last_usable - first + 1) * SECTOR,
    }))
}

/// The block device mounted at `/`, from /proc/self/mountinfo's major:minor.
pub fn root_partition() -> Result<(PathBuf, PathBuf, u32, String), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .ok_or("/ is not in /proc/self/mountinfo")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let device_number = fields[2];
    let fstype = fields
        .iter()
        .position(|f| *f == "-")
        .and_then(|i| fields.get(i + 1))
        .unwrap_or(&"")
        .to_string();
    let sys = PathBuf::from(format!("/sys/dev/block/{device_number}"));
    let number: u32 = std::fs::read_to_string(sys.join("partition"))
        .map_err(|_| format!("the root device {device_number} is not a partition"))?
        .trim()
        .parse()
        .map_err(|e| format!("partition number: {e}"))?;
    let real = std::fs::canonicalize(&sys).map_err(|e| e.to_string())?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no device name")?;
    let disk = real
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .ok_or("no parent disk")?;
    Ok((
        PathBuf::from(format!("/dev/{disk}")),
        PathBuf::from(format!("/dev/{name}")),
        number,
        fstype,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_partition_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let err = grow_partition(&path, 1).unwrap_err();
        assert!(err.contains("no partition table"), "{err}");
    }
}
