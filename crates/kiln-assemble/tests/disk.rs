//! A disk assembled from a small tree, read back by its real consumers:
//! sfdisk and sgdisk for the GPT, e2fsck and debugfs for ext4, fsck.vfat for
//! the ESP, blkid for swap, and GRUB itself booted by qemu with SeaBIOS and
//! with OVMF, reading the tree's grub.cfg by UUID.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_assemble::filesystems::{self, Contents};
use kiln_assemble::layout::{self, Boot, Fs, Layout, PartitionRequest, Role};
use kiln_assemble::{gpt, grub};

const MARKER: &str = "KILN-GRUB-CONFIG-READ";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds a disk whose grub.cfg prints a marker instead of booting a kernel.
fn assemble(dir: &Path, boot: Boot, requests: &[PartitionRequest]) -> (PathBuf, Layout) {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/grub")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), "hello from the tree\n").unwrap();
    let layout = layout::plan(boot, Some(256 << 20), requests, b"disk-test").unwrap();
    let root_uuid = layout.root().fs_uuid.clone().unwrap();
    fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!("serial --unit=0 --speed=115200\nterminal_output serial console\necho {MARKER}\nsleep 600\n"),
    )
    .unwrap();
    fs::write(tree.join("etc/fstab"), layout.fstab()).unwrap();
    let efi = boot.uefi().then(|| grub::efi_image(&root_uuid).unwrap());
    let image = dir.join("disk.raw");
    filesystems::write(
        &image,
        &layout,
        &Contents {
            root: &tree,
            efi_image: efi.as_deref(),
            epoch: 1_700_000_000,
        },
    )
    .unwrap();
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    gpt::write(&mut file, &layout).unwrap();
    if boot.bios() {
        grub::install_bios(&file, &layout, &grub::bios_core(&root_uuid).unwrap()).unwrap();
    }
    (image, layout)
}

#[test]
fn gpt_and_filesystems_pass_their_checkers() {
    let dir = tempfile::tempdir().unwrap();
    let requests = [
        PartitionRequest {
            mount: None,
            size: Some(16 << 20),
            fs: Fs::Swap,
            options: None,
        },
        PartitionRequest {
            mount: Some("/".into()),
            size: None,
            fs: Fs::Ext4,
            options: None,
        },
    ];
    let (image, layout) = assemble(dir.path(), Boot::Both, &requests);

    run(Command::new("sgdisk").arg("--verify").arg(&image));
    let dump = run(Command::new("sfdisk").arg("--dump").arg(&image));
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(&format!("label-id: {}", layout.disk_guid.to_uppercase())),
        "{dump}"
    );
    for p in &layout.partitions {
        let line = dump
            .lines()
            .find(|l| l.contains(&format!("start={:>12}", p.first_lba())))
            .unwrap_or_else(|| panic!("partition {} not in {dump}", p.number));
        assert!(
            line.contains(&format!("size={:>12}", p.size / 512)),
            "{line}"
        );
        assert!(
            line.contains(&format!("type={}", p.type_guid.to_uppercase())),
            "{line}"
        );
        assert!(
            line.contains(&format!("uuid={}", p.part_uuid.to_uppercase())),
            "{line}"
        );
    }

    let root = layout.root();
    run(Command::new("e2fsck").arg("-fn").arg(format!(
        "{}?offset={}",
        image.display(),
        root.offset
    )));
    let cat = run(Command::new("debugfs")
        .args(["-R", "cat /etc/hello"])
        .arg(format!("{}?offset={}", image.display(), root.offset)));
    assert_eq!(cat, "hello from the tree\n");
    let probe = run(Command::new("blkid")
        .args(["-p", "-o", "export", "--offset"])
        .arg(root.offset.to_string())
        .arg(&image));
    assert!(
        probe.contains(&format!("UUID={}", root.fs_uuid.as_ref().unwrap())),
        "{probe}"
    );

    let esp = layout.find(Role::Esp).unwrap();
    let esp_file = dir.path().join("esp.img");
    let bytes = fs::read(&image).unwrap();
    fs::write(
        &esp_file,
        &bytes[esp.offset as usize..(esp.offset + esp.size) as usize],
    )
    .unwrap();
    run(Command::new("fsck.vfat").arg("-n").arg(&esp_file));
    let listing = run(Command::new("mdir")
        .args(["-i"])
        .arg(&esp_file)
        .arg("::/EFI/BOOT"));
    assert!(listing.contains("BOOTX64"), "{listing}");
    let probe = run(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(&esp_file));
    assert!(
        probe.contains(&format!("UUID={}", esp.fs_uuid.as_ref().unwrap())),
        "{probe}"
    );

    let swap = layout.find(Role::Swap).unwrap();
    let probe = run(Command::new("blkid")
        .args(["-p", "-o", "export", "--offset"])
        .arg(swap.offset.to_string())
        .arg(&image));
    assert!(probe.contains("TYPE=swap"), "{probe}");
    assert!(
        probe.contains(&format!("UUID={}", swap.fs_uuid.as_ref().unwrap())),
        "{probe}"
    );
}

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the disk in qemu (TCG) and waits for the marker on the serial console.
fn boots_to_marker(image: &Path, uefi: bool) {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "256",
        "-nographic",
        "-nodefaults",
        "-snapshot",
    ])
    .args(["-serial", "stdio", "-no-reboot"])
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", image.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if uefi {
        cmd.args(["-bios", "/usr/share/OVMF/OVMF_CODE.fd"]);
    }
    let mut qemu = Qemu(
        cmd.spawn()
            .expect("qemu-system-x86_64 (scripts/setup installs it)"),
    );
    let stdout = qemu.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Firmware writes bytes that are not UTF-8 (OVMF does): read lossily.
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            line.clear();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains(MARKER) => return,
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!(
        "GRUB did not read its configuration ({}):\n{}",
        if uefi { "UEFI" } else { "BIOS" },
        seen.join("\n")
    );
}

#[test]
fn grub_finds_its_configuration_by_uuid_with_bios_and_with_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = assemble(dir.path(), Boot::Both, &[]);
    boots_to_marker(&image, false);
    boots_to_marker(&image, true);
}
