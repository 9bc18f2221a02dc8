//! FAT volumes read back by their real consumers: fsck.vfat and mtools.

use std::process::Command;

use kiln_fs::fat::{FatFile, FatOptions, build};

fn options(size: u64) -> FatOptions {
    FatOptions {
        size,
        label: "esp".into(),
        volume_id: 0x1234_abcd,
        epoch: 1_700_000_000,
    }
}

fn write_and_check(size: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let files = [
        FatFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            contents: &vec![0x5a; 300_000],
        },
        FatFile {
            path: "EFI/kiln/grub.cfg",
            contents: b"set timeout=0\n",
        },
        FatFile {
            path: "top.txt",
            contents: b"top\n",
        },
    ];
    let image = build(&options(size), &files).unwrap();
    assert_eq!(image.len() as u64, size);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esp.img");
    std::fs::write(&path, &image).unwrap();
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck.vfat -n: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let cfg = Command::new("mtype")
        .args(["-i"])
        .arg(&path)
        .arg("::/EFI/kiln/grub.cfg")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cfg.stdout), "set timeout=0\n");
    let efi = Command::new("mtype")
        .args(["-i"])
        .arg(&path)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .output()
        .unwrap();
    assert_eq!(efi.stdout, vec![0x5a; 300_000]);
    (dir, path)
}

#[test]
fn fat16_volume_passes_fsck_and_reads_back() {
    write_and_check(64 << 20);
}

#[test]
fn fat32_volume_passes_fsck_and_reads_back() {
    let (_dir, path) = write_and_check(600 << 20);
    let info = Command::new("minfo").arg("-i").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("disk type=\"FAT32   \""), "{text}");
    assert!(text.contains("disk label=\"ESP        \""), "{text}");
}

#[test]
fn same_input_same_bytes() {
    let files = [FatFile {
        path: "a/b.txt",
        contents: b"x",
    }];
    assert_eq!(
        build(&options(8 << 20), &files).unwrap(),
        build(&options(8 << 20), &files).unwrap()
    );
}
