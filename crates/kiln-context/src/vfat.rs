//! VFAT seed images through hadris-fat (cloud-init accepts `cidata` and
//! `config-2` on vfat as on iso9660; cloud-localds `-f vfat` does the same).
//!
//! hadris-fat stamps the wall clock into the volume label entry and picks a
//! time-based volume id; both are fixed here so images are reproducible.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Mutex, OnceLock};

use hadris_fat::format::{FatFormatOptions, FatVolumeFormatter};
use hadris_fat::time::StaticTimeProvider;
use hadris_fat::{FatDateTime, FatVolume, FatVolumeWriteExt};

use crate::error::{Error, Result};
use crate::seed::Seed;

const MIB: u64 = 1024 * 1024;
/// Attribute byte of the volume label entry.
const VOLUME_ID: u8 = 0x08;
/// Above this size hadris-fat formats FAT32, whose root is not at a fixed place.
const FAT16_LIMIT: u64 = 512 * MIB;

pub fn write(seed: &Seed, epoch: i64) -> Result<Vec<u8>> {
    let stamp = fat_time(epoch);
    let payload: u64 = seed.files.iter().map(|f| f.contents.len() as u64).sum();
    // Room for the data, cluster slack, the FATs and the directories.
    let size = (2 * payload + 2 * MIB).div_ceil(MIB) * MIB;
    if size >= FAT16_LIMIT {
        return Err(Error::Invalid(format!(
            "seed of {payload} bytes is too large for a VFAT seed image"
        )));
    }
    let options = FatFormatOptions::new(size)
        .volume_label(&seed.label.to_ascii_uppercase())
        .volume_id(volume_id(seed));
    let formatted = FatVolumeFormatter::format(Cursor::new(vec![0u8; size as usize]), options)
        .map_err(fat_error)?;
    let mut data = formatted.into_inner();
    data.set_position(0);
    let fs = FatVolume::builder(data)
        .time_provider(clock(stamp))
        .open()
        .map_err(fat_error)?;
    for file in &seed.files {
        let (dir_path, name) = file.path.rsplit_once('/').unwrap_or(("", &file.path));
        let mut dir = fs.root_dir();
        let mut so_far = String::new();
        for component in dir_path.split('/').filter(|c| !c.is_empty()) {
            so_far = format!("{so_far}/{component}");
            dir = match fs.open_dir_path(&so_far) {
                Ok(existing) => existing,
                Err(_) => fs.create_dir(&dir, component).map_err(fat_error)?,
            };
        }
        let entry = fs.create_file(&dir, name).map_err(fat_error)?;
        let mut writer = fs.write_file(&entry).map_err(fat_error)?;
        let mut rest = file.contents.as_slice();
        while !rest.is_empty() {
            let written = writer.write(rest).map_err(fat_error)?;
            rest = &rest[written..];
        }
        writer.finish().map_err(fat_error)?;
    }
    let mut image = fs.into_inner().into_inner();
    stamp_volume_label(&mut image, stamp)?;
    Ok(image)
}

fn fat_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("VFAT image: {e}"))
}

/// FAT stores local dates from 1980 on; earlier epochs become 1980-01-01.
fn fat_time(epoch: i64) -> FatDateTime {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    let (year, month, day) = crate::iso9660::civil_from_days(days);
    if year < 1980 {
        return FatDateTime::EPOCH;
    }
    let year = year.min(2107) as u16;
    FatDateTime::new(
        year,
        month as u8,
        day as u8,
        (seconds / 3600) as u8,
        (seconds / 60 % 60) as u8,
        (seconds % 60) as u8,
    )
}

/// hadris-fat wants a `&'static` clock: one per distinct time, kept for the
/// life of the process (a handful at most).
fn clock(stamp: FatDateTime) -> &'static StaticTimeProvider {
    static CLOCKS: OnceLock<Mutex<BTreeMap<(u16, u16), &'static StaticTimeProvider>>> =
        OnceLock::new();
    let mut clocks = CLOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    clocks
        .entry((stamp.date, stamp.time))
        .or_insert_with(|| Box::leak(Box::new(StaticTimeProvider(stamp))))
}

/// A volume id derived from the content (FNV-1a), so equal seeds get equal ids.
fn volume_id(seed: &Seed) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = std::iter::once(seed.label.as_bytes()).chain(
        seed.files
            .iter()
            .flat_map(|f| [f.path.as_bytes(), f.contents.as_slice()]),
    );
    for byte in bytes.flatten() {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// Overwrites the times of the root directory's volume label entry.
fn stamp_volume_label(image: &mut [u8], stamp: FatDateTime) -> Result<()> {
    let u16_at = |offset: usize| u16::from_le_bytes([image[offset], image[offset + 1]]) as usize;
    let bytes_per_sector = u16_at(11);
    let reserved = u16_at(14);
    let fats = image[16] as usize;
    let root_entries = u16_at(17);
    let fat_sectors = u16_at(22);
    let root = (reserved + fats * fat_sectors) * bytes_per_sector;
    let (date, time, _) = stamp.to_raw();
    for entry in (0..root_entries).map(|i| root + i * 32) {
        let attributes = image[entry + 11];
        if image[entry] != 0 && attributes & 0x0F == VOLUME_ID {
            for (offset, value) in [(14, time), (16, date), (18, date), (22, time), (24, date)] {
                image[entry + offset..entry + offset + 2].copy_from_slice(&value.to_le_bytes());
            }
            return Ok(());
        }
    }
    Err(Error::Invalid(
        "VFAT image: no volume label entry in the root directory".into(),
    ))
}
