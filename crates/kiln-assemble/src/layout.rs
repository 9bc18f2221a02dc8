//! The partition plan: every offset, size and identifier of the disk, fixed
//! before anything is written.

use crate::uuid;
use crate::{Error, Result};

pub const MIB: u64 = 1 << 20;
pub const SECTOR: u64 = 512;
/// Sectors the backup GPT takes at the end: 32 of entries and the header.
const BACKUP_GPT_SECTORS: u64 = 33;

pub const DEFAULT_DISK_SIZE: u64 = 4 << 30;
pub const BIOS_BOOT_SIZE: u64 = MIB;
pub const DEFAULT_ESP_SIZE: u64 = 64 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    Bios,
    Uefi,
    Both,
}

impl Boot {
    pub fn bios(self) -> bool {
        matches!(self, Boot::Bios | Boot::Both)
    }
    pub fn uefi(self) -> bool {
        matches!(self, Boot::Uefi | Boot::Both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    Ext3,
    Vfat,
    Swap,
}

/// A partition as a template asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRequest {
    pub mount: Option<String>,
    /// `None`: the rest of the disk.
    pub size: Option<u64>,
    pub fs: Fs,
    pub options: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GRUB's core.img for BIOS boot on GPT.
    BiosBoot,
    Esp,
    Root,
    Swap,
}

impl Role {
    fn type_guid(self) -> &'static str {
        match self {
            Role::BiosBoot => "21686148-6449-6e6f-744e-656564454649",
            Role::Esp => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            Role::Root => "0fc63daf-8483-4772-8e79-3d69d8477de4",
            Role::Swap => "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::BiosBoot => "bios-boot",
            Role::Esp => "esp",
            Role::Root => "root",
            Role::Swap => "swap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as in /dev/vda1.
    pub number: u32,
    pub role: Role,
    pub fs: Option<Fs>,
    /// Bytes from the start of the disk; a multiple of 1 MiB.
    pub offset: u64,
    pub size: u64,
    pub type_guid: String,
    pub part_uuid: String,
    /// The filesystem's identifier as blkid shows it: a UUID, or `XXXX-XXXX` for FAT.
    pub fs_uuid: Option<String>,
    pub label: String,
    pub mount_options: Option<String>,
}

impl Partition {
    pub fn first_lba(&self) -> u64 {
        self.offset / SECTOR
    }
    pub fn last_lba(&self) -> u64 {
        (self.offset + self.size) / SECTOR - 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk_size: u64,
    pub disk_guid: String,
    pub boot: Boot,
    pub partitions: Vec<Partition>,
}

impl Layout {
    pub fn find(&self, role: Role) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.role == role)
    }

    pub fn root(&self) -> &Partition {
        self.find(Role::Root).expect("a plan always has a root")
    }

    /// The FAT volume id of the ESP, from its `XXXX-XXXX` form.
    pub fn esp_volume_id(&self) -> Option<u32> {
        let esp = self.find(Role::Esp)?;
        u32::from_str_radix(&esp.fs_uuid.as_ref()?.replace('-', ""), 16).ok()
    }

    /// /etc/fstab for the plan.
    pub fn fstab(&self) -> String {
        let mut text = String::from("# Written by kiln: filesystems by UUID.\n");
        for p in &self.partitions {
            let Some(uuid) = &p.fs_uuid else { continue };
            let line = match p.role {
                Role::Root => format!(
                    "UUID={uuid}\t/\t{}\t{}\t0\t1\n",
                    if p.fs == Some(Fs::Ext3) {
                        "ext3"
                    } else {
                        "ext4"
                    },
                    p.mount_options.as_deref().unwrap_or("errors=remount-ro")
                ),
                Role::Esp => format!(
                    "UUID={uuid}\t/boot/efi\tvfat\t{}\t0\t2\n",
                    p.mount_options.as_deref().unwrap_or("umask=0077,nofail")
                ),
                Role::Swap => format!("UUID={uuid}\tnone\tswap\tsw\t0\t0\n"),
                Role::BiosBoot => continue,
            };
            text.push_str(&line);
        }
        text
    }
}

fn align_up(n: u64) -> u64 {
    n.div_ceil(MIB) * MIB
}

/// Plans the disk. `seed` makes the identifiers (the template digest).
pub fn plan(
    boot: Boot,
    disk_size: Option<u64>,
    requests: &[PartitionRequest],
    seed: &[u8],
) -> Result<Layout> {
    // (role, size or the rest, filesystem, mount options), in disk order.
    type Wanted = (Role, Option<u64>, Option<Fs>, Option<String>);
    let mut wanted: Vec<Wanted> = Vec::new();
    if boot.bios() {
        wanted.push((Role::BiosBoot, Some(BIOS_BOOT_SIZE), None, None));
    }
    let has_esp = requests
        .iter()
        .any(|r| r.mount.as_deref() == Some("/boot/efi"));
    if boot.uefi() && !has_esp {
        wanted.push((Role::Esp, Some(DEFAULT_ESP_SIZE), Some(Fs::Vfat), None));
    }
    let mut roots = 0;
    for r in requests {
        let role = match (r.mount.as_deref(), r.fs) {
            (_, Fs::Swap) => Role::Swap,
            (Some("/"), Fs::Ext4 | Fs::Ext3) => Role::Root,
            (Some("/boot/efi"), Fs::Vfat) => Role::Esp,
            (Some("/"), _) => {
                return Err(Error::Invalid(
                    "the root partition must be ext4 or ext3".into(),
                ));
            }
            (Some(m), _) => {
                return Err(Error::Invalid(format!(
                    "partition {m}: kiln builds /, /boot/efi (vfat) and swap partitions; other mount points are not supported yet"
                )));
            }
            (None, _) => {
                return Err(Error::Invalid(
                    "a partition other than swap needs a mount point".into(),
                ));
            }
        };
        if role == Role::Root {
            roots += 1;
        }
        wanted.push((role, r.size, Some(r.fs), r.options.clone()));
    }
    if roots == 0 {
        wanted.push((Role::Root, None, Some(Fs::Ext4), None));
    }
    if roots > 1 {
        return Err(Error::Invalid("more than one / partition".into()));
    }
    if wanted.iter().filter(|w| w.1.is_none()).count() > 1 {
        return Err(Error::Invalid(
            "only one partition may take the rest of the disk (no size)".into(),
        ));
    }
    let fixed: u64 = wanted.iter().filter_map(|w| w.1).map(align_up).sum();
    let first = MIB;
    let tail = BACKUP_GPT_SECTORS * SECTOR;
    let needed = first
        + fixed
        + if wanted.iter().any(|w| w.1.is_none()) {
            64 * MIB
        } else {
            0
        }
        + tail;
    let disk_size = disk_size.unwrap_or_else(|| DEFAULT_DISK_SIZE.max(align_up(needed)));
    if disk_size < needed {
        return Err(Error::Invalid(format!(
            "the partitions need {} MiB but the disk is {} MiB",
            needed.div_ceil(MIB),
            disk_size / MIB
        )));
    }
    // The partition without a size takes what the others leave, in whole MiB.
    let rest = (disk_size - tail - first - fixed) / MIB * MIB;
    let mut offset = first;
    let mut partitions = Vec::new();
    for (i, (role, size, fs, options)) in wanted.into_iter().enumerate() {
        let size = size.map(align_up).unwrap_or(rest);
        let number = i as u32 + 1;
        let fs_uuid = match role {
            Role::BiosBoot => None,
            Role::Esp => {
                let id = uuid::derive(seed, "esp-volume-id");
                Some(format!(
                    "{:02X}{:02X}-{:02X}{:02X}",
                    id[0], id[1], id[2], id[3]
                ))
            }
            Role::Root | Role::Swap => Some(uuid::to_string(&uuid::derive(
                seed,
                &format!("{}-fs", role.name()),
            ))),
        };
        partitions.push(Partition {
            number,
            role,
            fs,
            offset,
            size,
            type_guid: role.type_guid().to_string(),
            part_uuid: uuid::to_string(&uuid::derive(seed, &format!("{}-part", role.name()))),
            fs_uuid,
            label: role.name().to_string(),
            mount_options: options,
        });
        offset += size;
    }
    Ok(Layout {
        disk_size,
        disk_guid: uuid::to_string(&uuid::derive(seed, "disk")),
        boot,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_for_both_boot_modes() {
        let l = plan(Boot::Both, Some(4 << 30), &[], b"t").unwrap();
        let roles: Vec<Role> = l.partitions.iter().map(|p| p.role).collect();
        assert_eq!(roles, [Role::BiosBoot, Role::Esp, Role::Root]);
        assert_eq!(l.partitions[0].offset, MIB);
        assert_eq!(l.partitions[1].offset, 2 * MIB);
        assert_eq!(l.partitions[2].offset, 66 * MIB);
        let root = l.root();
        assert!(root.offset + root.size <= (4 << 30) - 33 * 512);
        assert_eq!(root.size % MIB, 0);
        assert!(
            l.fstab()
                .contains(&format!("UUID={}\t/\text4", root.fs_uuid.as_ref().unwrap()))
        );
        assert!(l.esp_volume_id().is_some());
    }

    #[test]
    fn bios_only_and_uefi_only() {
        let bios = plan(Boot::Bios, None, &[], b"t").unwrap();
        assert!(bios.find(Role::Esp).is_none());
        assert_eq!(bios.disk_size, DEFAULT_DISK_SIZE);
        let uefi = plan(Boot::Uefi, None, &[], b"t").unwrap();
        assert!(uefi.find(Role::BiosBoot).is_none());
        assert!(uefi.find(Role::Esp).is_some());
    }

    #[test]
    fn template_partitions() {
        let req = [
            PartitionRequest {
                mount: Some("/boot/efi".into()),
                size: Some(512 * MIB),
                fs: Fs::Vfat,
                options: None,
            },
            PartitionRequest {
                mount: None,
                size: Some(1 << 30),
                fs: Fs::Swap,
                options: None,
            },
            PartitionRequest {
                mount: Some("/".into()),
                size: None,
                fs: Fs::Ext4,
                options: Some("noatime".into()),
            },
        ];
        let l = plan(Boot::Both, Some(10 << 30), &req, b"t").unwrap();
        let roles: Vec<Role> = l.partitions.iter().map(|p| p.role).collect();
        assert_eq!(roles, [Role::BiosBoot, Role::Esp, Role::Swap, Role::Root]);
        assert_eq!(l.find(Role::Esp).unwrap().size, 512 * MIB);
        assert!(l.fstab().contains("noatime"));
        assert!(l.fstab().contains("swap"));
    }

    #[test]
    fn impossible_plans_are_errors() {
        let home = [PartitionRequest {
            mount: Some("/home".into()),
            size: Some(MIB),
            fs: Fs::Ext4,
            options: None,
        }];
        assert!(
            plan(Boot::Both, None, &home, b"t")
                .unwrap_err()
                .to_string()
                .contains("/home")
        );
        let big = [PartitionRequest {
            mount: Some("/".into()),
            size: Some(8 << 30),
            fs: Fs::Ext4,
            options: None,
        }];
        assert!(
            plan(Boot::Bios, Some(4 << 30), &big, b"t")
                .unwrap_err()
                .to_string()
                .contains("MiB")
        );
    }
}
