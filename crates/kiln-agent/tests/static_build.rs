//! The guest binary: scripts/build-agent makes one static x86_64 musl
//! executable, checked by `file` and `ldd`, kept small, and it applies a
//! context as the test build does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Most the static binary may weigh (it is about 3 MiB).
const MAX_SIZE: u64 = 4 * 1024 * 1024;

fn build() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A target directory of its own: the musl build has its own profile and lock.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("musl-agent");
    let output = Command::new(workspace.join("scripts/build-agent"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("scripts/build-agent runs");
    assert!(
        output.status.success(),
        "scripts/build-agent failed (scripts/setup installs musl-tools and the musl target):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

#[test]
fn static_musl_binary_is_small_and_works() {
    let binary = build();
    let file = Command::new("file").arg(&binary).output().unwrap();
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("x86-64")
            && (file.contains("static-pie linked") || file.contains("statically linked")),
        "{file}"
    );
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "{ldd}"
    );
    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(
        size <= MAX_SIZE,
        "kiln-agent is {size} bytes, more than {MAX_SIZE}"
    );
    eprintln!("kiln-agent (static, x86_64 musl): {size} bytes");

    let root_dir = scratch_root();
    let root = root_dir.path();
    let images = tempfile::tempdir().unwrap();
    let vm = vm(r#"NAME = "static1"
NIC = [ NETWORK = "public", IP = "192.0.2.30" ]
CONTEXT = [ NETWORK = "YES", SET_HOSTNAME = "static1", USERNAME = "carol", PASSWORD = "pw", SSH_PUBLIC_KEY = "ssh-ed25519 AAAA carol" ]"#);
    let iso = write_image(images.path(), "c.iso", &opennebula_iso(&vm, vec![]));
    let output = apply_with(Command::new(&binary), root, &iso);
    assert_ok(&output);
    assert_eq!(read(root, "/etc/hostname"), "static1\n");
    assert_eq!(
        read(root, "/home/carol/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA carol\n"
    );
    let shadow = read(root, "/etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("carol:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    assert_password(hash, "pw");
}
