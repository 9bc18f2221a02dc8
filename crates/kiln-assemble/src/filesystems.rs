//! Each partition's filesystem, written from data into its bytes of the disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use kiln_fs::ext::{ExtFs, ExtKind};
use kiln_fs::fat::{FatFile, FatOptions};

use crate::grub::EFI_REMOVABLE_PATH;
use crate::layout::{Fs, Layout, Partition, Role};
use crate::uuid;
use crate::{Error, Result};

/// What goes into the filesystems.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    /// The image root, copied into the root filesystem.
    pub root: &'a Path,
    /// GRUB's EFI binary for the ESP, when the disk boots with UEFI.
    pub efi_image: Option<&'a [u8]>,
    /// Seconds since 1970 for timestamps the tools make up.
    pub epoch: i64,
}

/// Creates `image` as a sparse file of the disk's size and writes every
/// filesystem at its offset. The partition table comes after, by [`crate::gpt`].
pub fn write(image: &Path, layout: &Layout, contents: &Contents<'_>) -> Result<()> {
    let file = File::create(image).map_err(crate::io_error(image.display().to_string()))?;
    file.set_len(layout.disk_size)
        .map_err(crate::io_error(image.display().to_string()))?;
    for p in &layout.partitions {
        match p.role {
            Role::BiosBoot => {}
            Role::Root => write_root(image, p, contents)?,
            Role::Esp => write_esp(&file, layout, p, contents)?,
            Role::Swap => write_swap(&file, p)?,
        }
    }
    file.sync_all()
        .map_err(crate::io_error(image.display().to_string()))?;
    Ok(())
}

fn write_root(image: &Path, p: &Partition, contents: &Contents<'_>) -> Result<()> {
    let kind = if p.fs == Some(Fs::Ext3) {
        ExtKind::Ext3
    } else {
        ExtKind::Ext4
    };
    kiln_fs::ext::make(
        image,
        &ExtFs {
            kind,
            source: contents.root.to_path_buf(),
            offset: p.offset,
            size: p.size,
            label: p.label.clone(),
            uuid: p.fs_uuid.clone().unwrap_or_default(),
            epoch: Some(contents.epoch),
        },
    )?;
    Ok(())
}

fn write_esp(file: &File, layout: &Layout, p: &Partition, contents: &Contents<'_>) -> Result<()> {
    let mut files = Vec::new();
    if let Some(efi) = contents.efi_image {
        files.push(FatFile {
            path: EFI_REMOVABLE_PATH,
            contents: efi,
        });
    }
    let volume = kiln_fs::fat::build(
        &FatOptions {
            size: p.size,
            label: "EFI".into(),
            volume_id: layout.esp_volume_id().unwrap_or(0),
            epoch: contents.epoch,
        },
        &files,
    )?;
    file.write_all_at(&volume, p.offset)
        .map_err(crate::io_error("writing the ESP"))?;
    Ok(())
}

const PAGE: u64 = 4096;

/// A Linux swap area: the `SWAPSPACE2` signature and header mkswap writes.
fn write_swap(file: &File, p: &Partition) -> Result<()> {
    let pages = p.size / PAGE;
    if pages < 10 {
        return Err(Error::Invalid(
            "a swap partition needs at least 40 KiB".into(),
        ));
    }
    let id = p
        .fs_uuid
        .as_deref()
        .and_then(uuid::parse)
        .ok_or_else(|| Error::Invalid("the swap partition has no UUID".into()))?;
    let mut page = vec![0u8; PAGE as usize];
    // struct swap_header_v1_2 at byte 1024: version, last_page, nr_badpages, uuid, label.
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&u32::try_from(pages - 1).unwrap_or(u32::MAX).to_le_bytes());
    page[1036..1052].copy_from_slice(&id);
    let label = p.label.as_bytes();
    page[1052..1052 + label.len().min(16)].copy_from_slice(&label[..label.len().min(16)]);
    page[PAGE as usize - 10..].copy_from_slice(b"SWAPSPACE2");
    file.write_all_at(&page, p.offset)
        .map_err(crate::io_error("writing the swap header"))?;
    Ok(())
}
