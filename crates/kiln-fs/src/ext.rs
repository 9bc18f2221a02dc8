//! ext2/3/4 filesystems written by `mke2fs -d DIR -E offset=N` into a region
//! of an image file: no loop device, no mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtKind {
    Ext3,
    Ext4,
}

impl ExtKind {
    pub fn name(self) -> &'static str {
        match self {
            ExtKind::Ext3 => "ext3",
            ExtKind::Ext4 => "ext4",
        }
    }
}

/// One filesystem to write into `image` at `offset`, `size` bytes long,
/// holding what `source` holds (owners, modes, links and xattrs included).
#[derive(Debug, Clone)]
pub struct ExtFs {
    pub kind: ExtKind,
    pub source: PathBuf,
    pub offset: u64,
    pub size: u64,
    /// Up to 16 bytes.
    pub label: String,
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`; also seeds the directory hash.
    pub uuid: String,
    /// Seconds since 1970 stamped on the superblock and the inodes mke2fs makes.
    pub epoch: Option<i64>,
}

const BLOCK_SIZE: u64 = 4096;

/// Features older readers lack: GRUB 2.06 and e2fsck before 1.47 refuse a
/// filesystem with them, and e2fsprogs 1.47 turns them on by default.
const FEATURES_OFF: &str = "^metadata_csum_seed,^orphan_file";

/// Writes the filesystem; the rest of `image` is left as it is.
pub fn make(image: &Path, fs: &ExtFs) -> Result<()> {
    if !fs.size.is_multiple_of(BLOCK_SIZE) || !fs.offset.is_multiple_of(512) {
        return Err(Error::Invalid(format!(
            "{} at offset {} of {} bytes: must be whole 4 KiB blocks at a sector boundary",
            fs.kind.name(),
            fs.offset,
            fs.size
        )));
    }
    let mut cmd = Command::new("mke2fs");
    cmd.args([
        "-q",
        "-F",
        "-t",
        fs.kind.name(),
        "-b",
        "4096",
        "-O",
        FEATURES_OFF,
    ])
    .arg("-L")
    .arg(&fs.label)
    .arg("-U")
    .arg(&fs.uuid)
    .arg("-E")
    // lazy_journal_init: the region was just discarded (a hole in a sparse
    // file reads as zeros), so writing 64 MiB or more of journal zeros is waste.
    .arg(format!(
        "offset={},hash_seed={},root_owner=0:0,lazy_journal_init=1",
        fs.offset, fs.uuid
    ))
    .arg("-d")
    .arg(&fs.source)
    .arg(image)
    .arg(format!("{}k", fs.size / 1024));
    if let Some(epoch) = fs.epoch {
        // 1.47.0 reads E2FSPROGS_FAKE_TIME; later versions read SOURCE_DATE_EPOCH.
        cmd.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    tracing::debug!(?cmd, "writing {}", fs.kind.name());
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: "mke2fs".into(),
        message: format!("cannot run it ({e}): install e2fsprogs"),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "mke2fs".into(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn writes_at_offset_and_leaves_the_rest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tree");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/hello"), "hello\n").unwrap();
        let image = dir.path().join("disk.img");
        let offset = 1 << 20;
        let size = 16 << 20;
        let file = fs::File::create(&image).unwrap();
        file.set_len(offset + size + (1 << 20)).unwrap();
        drop(file);
        make(
            &image,
            &ExtFs {
                kind: ExtKind::Ext4,
                source: src,
                offset,
                size,
                label: "root".into(),
                uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
                epoch: Some(1_700_000_000),
            },
        )
        .unwrap();
        let data = fs::read(&image).unwrap();
        assert!(data[..offset as usize].iter().all(|&b| b == 0));
        assert!(data[(offset + size) as usize..].iter().all(|&b| b == 0));
        // The ext superblock magic 0xEF53 sits 1080 bytes into the filesystem.
        let magic = offset as usize + 1080;
        assert_eq!(&data[magic..magic + 2], &[0x53, 0xEF]);
        // e2fsck reads the filesystem where mke2fs put it.
        let fsck = Command::new("e2fsck")
            .args(["-fn"])
            .arg(format!("{}?offset={offset}", image.display()))
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }

    #[test]
    fn refuses_a_size_that_is_not_whole_blocks() {
        let err = make(
            Path::new("/nonexistent"),
            &ExtFs {
                kind: ExtKind::Ext4,
                source: PathBuf::from("/nonexistent"),
                offset: 0,
                size: 4097,
                label: String::new(),
                uuid: String::new(),
                epoch: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("whole 4 KiB blocks"), "{err}");
    }
}
