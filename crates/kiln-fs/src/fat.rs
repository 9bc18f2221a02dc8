//! FAT volumes written in memory through hadris-fat: a seed image, an EFI
//! system partition.
//!
//! hadris-fat stamps the wall clock into the volume label entry and picks a
//! time-based volume id; both are fixed here so images are reproducible.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Mutex, OnceLock};

use hadris_fat::format::{FatFormatOptions, FatTypeSelection, FatVolumeFormatter};
use hadris_fat::time::StaticTimeProvider;
use hadris_fat::{FatDateTime, FatVolume, FatVolumeWriteExt};

use crate::{Error, Result};

/// Attribute byte of the volume label entry.
const VOLUME_ID: u8 = 0x08;
const FAT32_FROM: u64 = 512 << 20;

/// What the volume is: its size, label, id and the time stamped on everything.
#[derive(Debug, Clone)]
pub struct FatOptions {
    /// Bytes: FAT12/16 below 512 MiB, FAT32 from there on (as Microsoft
    /// advises; hadris-fat alone would try FAT16 with oversized clusters).
    pub size: u64,
    /// Up to 11 characters, stored upper-case.
    pub label: String,
    pub volume_id: u32,
    /// Seconds since 1970 for every timestamp (FAT stores 1980–2107).
    pub epoch: i64,
}

/// One file of the volume; directories on its path are created as needed.
#[derive(Debug, Clone, Copy)]
pub struct FatFile<'a> {
    /// Slash-separated, relative to the root: `EFI/BOOT/BOOTX64.EFI`.
    pub path: &'a str,
    pub contents: &'a [u8],
}

/// The bytes of a FAT volume of `options.size` holding `files`.
pub fn build(options: &FatOptions, files: &[FatFile<'_>]) -> Result<Vec<u8>> {
    let stamp = fat_time(options.epoch);
    let format = FatFormatOptions::new(options.size)
        .volume_label(&options.label.to_ascii_uppercase())
        .volume_id(options.volume_id);
    let format = if options.size >= FAT32_FROM {
        format.fat_type(FatTypeSelection::Fat32)
    } else {
        format
    };
    let formatted =
        FatVolumeFormatter::format(Cursor::new(vec![0u8; options.size as usize]), format)
            .map_err(fat_error)?;
    let mut data = formatted.into_inner();
    data.set_position(0);
    let fs = FatVolume::builder(data)
        .time_provider(clock(stamp))
        .open()
        .map_err(fat_error)?;
    for file in files {
        let (dir_path, name) = file.path.rsplit_once('/').unwrap_or(("", file.path));
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
        let mut rest = file.contents;
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
    Error::Invalid(format!("FAT volume: {e}"))
}

/// FAT stores local dates from 1980 on; earlier epochs become 1980-01-01.
fn fat_time(epoch: i64) -> FatDateTime {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    let (year, month, day) = crate::civil_from_days(days);
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

/// Overwrites the times of the root directory's volume label entry: in the
/// fixed root area of FAT12/16, in the first root cluster of FAT32.
fn stamp_volume_label(image: &mut [u8], stamp: FatDateTime) -> Result<()> {
    let u16_at = |offset: usize| u16::from_le_bytes([image[offset], image[offset + 1]]) as usize;
    let u32_at = |offset: usize| {
        u32::from_le_bytes([
            image[offset],
            image[offset + 1],
            image[offset + 2],
            image[offset + 3],
        ]) as usize
    };
    let bytes_per_sector = u16_at(11);
    let sectors_per_cluster = image[13] as usize;
    let reserved = u16_at(14);
    let fats = image[16] as usize;
    let root_entries = u16_at(17);
    let (root, entries) = match u16_at(22) {
        0 => {
            // FAT32: the root is a cluster chain starting at BPB_RootClus.
            let data = (reserved + fats * u32_at(36)) * bytes_per_sector;
            let cluster = sectors_per_cluster * bytes_per_sector;
            (data + (u32_at(44) - 2) * cluster, cluster / 32)
        }
        fat_sectors => (
            (reserved + fats * fat_sectors) * bytes_per_sector,
            root_entries,
        ),
    };
    let (date, time, _) = stamp.to_raw();
    for entry in (0..entries).map(|i| root + i * 32) {
        let attributes = image[entry + 11];
        if image[entry] != 0 && attributes & 0x0F == VOLUME_ID {
            for (offset, value) in [(14, time), (16, date), (18, date), (22, time), (24, date)] {
                image[entry + offset..entry + offset + 2].copy_from_slice(&value.to_le_bytes());
            }
            return Ok(());
        }
    }
    Err(Error::Invalid(
        "FAT volume: no volume label entry in the root directory".into(),
    ))
}
