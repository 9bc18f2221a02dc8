//! GRUB for both firmware kinds, made by `grub-mkimage` from the host's GRUB
//! modules and put in place by kiln: for BIOS, boot.img in the MBR and core.img
//! in the BIOS boot partition (what grub-bios-setup does, without a device);
//! for UEFI, one EFI binary at the removable-media path of the ESP. Both carry
//! every module they need and find the root filesystem by UUID, then read
//! /boot/grub/grub.cfg from it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::layout::{Layout, Role, SECTOR};
use crate::{Error, Result};

pub const I386_PC: &str = "/usr/lib/grub/i386-pc";
pub const X86_64_EFI: &str = "/usr/lib/grub/x86_64-efi";
/// Where firmware without boot entries looks on the ESP.
pub const EFI_REMOVABLE_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// Modules both images carry: enough to find the root by UUID and boot Linux
/// from the configuration, with nothing loaded later from disk.
const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "fat",
    "search",
    "search_fs_uuid",
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "gzio",
    "xzio",
    "minicmd",
    "serial",
    "terminal",
    "sleep",
    "loadenv",
];
const BIOS_MODULES: &[&str] = &["biosdisk"];
const EFI_MODULES: &[&str] = &["efi_gop", "efi_uga", "all_video"];

/// The configuration built into each image: root by filesystem UUID.
fn early_config(root_fs_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_fs_uuid}\nset prefix=($root)/boot/grub\n"
    )
}

/// The /boot/grub/grub.cfg of the image.
pub fn config(
    title: &str,
    kernel: &str,
    initrd: &str,
    root_part_uuid: &str,
    cmdline: &str,
) -> String {
    let title: String = title.chars().filter(|c| *c != '\'' && *c != '\n').collect();
    format!(
        "# Written by kiln.\nserial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset default=0\nset timeout=1\n\nmenuentry '{title}' {{\n\tlinux {kernel} root=PARTUUID={root_part_uuid} ro {cmdline}\n\tinitrd {initrd}\n}}\n"
    )
}

fn mkimage(
    format: &str,
    modules_dir: &str,
    modules: &[&str],
    root_fs_uuid: &str,
) -> Result<Vec<u8>> {
    if !Path::new(modules_dir).is_dir() {
        return Err(Error::Tool {
            tool: "grub-mkimage".into(),
            message: format!(
                "{modules_dir} is missing: install {}",
                if format == "i386-pc" {
                    "grub-pc-bin"
                } else {
                    "grub-efi-amd64-bin"
                }
            ),
        });
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kiln-grub-{}-{}-{format}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(crate::io_error(dir.display().to_string()))?;
    let cleanup = RemoveOnDrop(dir.clone());
    let cfg = dir.join("early.cfg");
    let out = dir.join("image");
    std::fs::write(&cfg, early_config(root_fs_uuid))
        .map_err(crate::io_error(cfg.display().to_string()))?;
    let result = Command::new("grub-mkimage")
        .args([
            "--format",
            format,
            "--directory",
            modules_dir,
            "--prefix",
            "/boot/grub",
            "--compression",
            "auto",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--output")
        .arg(&out)
        .args(modules)
        .output()
        .map_err(|e| Error::Tool {
            tool: "grub-mkimage".into(),
            message: format!("cannot run it ({e}): install grub-common"),
        })?;
    if !result.status.success() {
        return Err(Error::Tool {
            tool: "grub-mkimage".into(),
            message: String::from_utf8_lossy(&result.stderr).trim().to_string(),
        });
    }
    let image = std::fs::read(&out).map_err(crate::io_error(out.display().to_string()))?;
    drop(cleanup);
    Ok(image)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// core.img for BIOS boot.
pub fn bios_core(root_fs_uuid: &str) -> Result<Vec<u8>> {
    let modules: Vec<&str> = COMMON_MODULES.iter().chain(BIOS_MODULES).copied().collect();
    mkimage("i386-pc", I386_PC, &modules, root_fs_uuid)
}

/// BOOTX64.EFI for UEFI boot.
pub fn efi_image(root_fs_uuid: &str) -> Result<Vec<u8>> {
    let modules: Vec<&str> = COMMON_MODULES.iter().chain(EFI_MODULES).copied().collect();
    mkimage("x86_64-efi", X86_64_EFI, &modules, root_fs_uuid)
}

// Offsets in boot.img and diskboot.img (GRUB's include/grub/i386/pc/boot.h).
const KERNEL_SECTOR: usize = 0x5c;
const ROOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
/// Where the MBR's disk signature and partition table start: kept from the disk.
const MBR_TABLE: usize = 0x1b8;
/// The blocklist at the end of core.img's first sector: {u64 start, u16 len, u16 segment}.
const BLOCKLIST: usize = 0x200 - 12;
const CORE_SEGMENT: u16 = 0x820;

/// Writes boot.img into the MBR (keeping its partition table) and core.img
/// into the BIOS boot partition, pointing each at the next.
pub fn install_bios(image: &File, layout: &Layout, core: &[u8]) -> Result<()> {
    let part = layout
        .find(Role::BiosBoot)
        .ok_or_else(|| Error::Invalid("BIOS boot needs a BIOS boot partition".into()))?;
    let sectors = (core.len() as u64).div_ceil(SECTOR);
    if sectors * SECTOR > part.size || sectors < 2 {
        return Err(Error::Invalid(format!(
            "core.img of {} bytes does not fit the BIOS boot partition of {} bytes",
            core.len(),
            part.size
        )));
    }
    let boot_path = Path::new(I386_PC).join("boot.img");
    let boot =
        std::fs::read(&boot_path).map_err(crate::io_error(boot_path.display().to_string()))?;
    if boot.len() != 512 {
        return Err(Error::Invalid(format!(
            "{} is not one sector",
            boot_path.display()
        )));
    }
    let mut mbr = [0u8; 512];
    image
        .read_exact_at(&mut mbr, 0)
        .map_err(crate::io_error("reading the MBR"))?;
    let mut code = boot.clone();
    code[MBR_TABLE..].copy_from_slice(&mbr[MBR_TABLE..]);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&part.first_lba().to_le_bytes());
    code[ROOT_DRIVE] = 0xff;
    // A hard disk: trust the drive number the BIOS passes (grub-bios-setup does the same).
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;

    let mut core = core.to_vec();
    core.resize((sectors * SECTOR) as usize, 0);
    let start = part.first_lba() + 1;
    let len =
        u16::try_from(sectors - 1).map_err(|_| Error::Invalid("core.img is too large".into()))?;
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&start.to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&len.to_le_bytes());
    core[BLOCKLIST + 10..BLOCKLIST + 12].copy_from_slice(&CORE_SEGMENT.to_le_bytes());
    // The entry before it terminates the list.
    core[BLOCKLIST - 12..BLOCKLIST].fill(0);

    image
        .write_all_at(&core, part.offset)
        .map_err(crate::io_error("writing core.img"))?;
    image
        .write_all_at(&code, 0)
        .map_err(crate::io_error("writing boot.img"))?;
    image
        .sync_data()
        .map_err(crate::io_error("syncing the disk"))?;
    Ok(())
}
