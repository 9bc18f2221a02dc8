//! Growing the last partition to the end of an enlarged disk, checked by
//! sfdisk and sgdisk (GPT: backup header and entries moved, CRCs right).

use std::path::Path;
use std::process::{Command, Stdio};

use kiln_agent::grow::grow_partition;

const MIB: u64 = 1024 * 1024;

fn sfdisk(disk: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(disk)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk package)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn table(disk: &Path) -> serde_json::Value {
    let output = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["partitiontable"].clone()
}

fn disk(dir: &Path, label: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{label}.img"));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    sfdisk(&path, &format!("label: {label}\n,15M\n,16M\n"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    path
}

#[test]
fn gpt_last_partition_grows_and_the_table_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = disk(dir.path(), "gpt");
    let err = grow_partition(&path, 1).unwrap_err();
    assert!(err.contains("not the last"), "{err}");
    let size = grow_partition(&path, 2)
        .unwrap()
        .expect("there is room to grow");
    let table = table(&path);
    let p2 = &table["partitions"][1];
    let last_lba = table["lastlba"].as_u64().unwrap();
    assert_eq!(
        p2["start"].as_u64().unwrap() + p2["size"].as_u64().unwrap() - 1,
        last_lba
    );
    assert_eq!(size, p2["size"].as_u64().unwrap() * 512);
    assert!(
        last_lba > 128 * MIB / 512 - 64,
        "the backup GPT moved to the new end: {last_lba}"
    );
    let verify = Command::new("sgdisk")
        .arg("--verify")
        .arg(&path)
        .output()
        .expect("sgdisk (gdisk package)");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && text.contains("No problems found"),
        "{text}"
    );
    assert_eq!(
        grow_partition(&path, 2).unwrap(),
        None,
        "nothing left to grow"
    );
}

#[test]
fn mbr_last_partition_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = disk(dir.path(), "dos");
    grow_partition(&path, 2)
        .unwrap()
        .expect("there is room to grow");
    let table = table(&path);
    let p2 = &table["partitions"][1];
    assert_eq!(
        p2["start"].as_u64().unwrap() + p2["size"].as_u64().unwrap(),
        128 * MIB / 512
    );
    let verify = Command::new("sfdisk")
        .arg("--verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
