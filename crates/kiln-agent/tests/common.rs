//! Helpers of the agent's integration tests: a scratch root to apply a
//! context to, seeds made by kiln-context's generators, the agent binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_context::description::{parse_resource, parse_vm};
use kiln_context::vm::Vm;
use kiln_context::{Filesystem, Seed, cloudinit, onecontext};

/// A root directory with the files a Debian system has and a static shell
/// (busybox, from scripts/setup) so scripts can run in it through chroot.
pub fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in [
        "etc/skel",
        "bin",
        "tmp",
        "root",
        "home",
        "usr/share/zoneinfo/Europe",
        "etc/systemd/network",
        "proc",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let write = |path: &str, text: &str| std::fs::write(root.join(path), text).unwrap();
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    );
    write(
        "etc/shadow",
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    );
    write(
        "etc/group",
        "root:x:0:\ndaemon:x:1:\nsudo:x:27:\nadm:x:4:\n",
    );
    write("etc/gshadow", "root:*::\ndaemon:*::\nsudo:*::\nadm:*::\n");
    write(
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost\n",
    );
    write("etc/hostname", "debian\n");
    write("etc/skel/.profile", "# skel\n");
    std::fs::copy(
        "/usr/share/zoneinfo/Europe/Madrid",
        root.join("usr/share/zoneinfo/Europe/Madrid"),
    )
    .expect("tzdata is installed");
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static is installed (scripts/setup)");
    for tool in [
        "sh", "bash", "touch", "echo", "cat", "id", "printf", "date", "mkdir",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    dir
}

pub fn vm(text: &str) -> Vm {
    let mut source = parse_vm("vm.one", text).unwrap();
    source.networks = vec![
        parse_resource(
            "net.one",
            "NAME = public\nNETWORK_MASK = 255.255.255.0\nGATEWAY = 192.0.2.1\nDNS = \"192.0.2.53\"\nGUEST_MTU = 1400",
        )
        .unwrap(),
    ];
    Vm::instantiate(source, Some(42)).unwrap()
}

/// The OpenNebula context CD of a VM, as `kiln context iso` writes it.
pub fn opennebula_iso(vm: &Vm, extra: Vec<kiln_context::SeedFile>) -> Vec<u8> {
    let variables = onecontext::context_variables(vm).unwrap();
    onecontext::context_seed(&variables, extra)
        .unwrap()
        .to_image(Filesystem::Iso9660, 0)
        .unwrap()
}

pub fn nocloud(vm: &Vm, fs: Filesystem) -> Vec<u8> {
    cloudinit::nocloud_seed(vm)
        .unwrap()
        .to_image(fs, 0)
        .unwrap()
}

pub fn configdrive(vm: &Vm) -> Vec<u8> {
    cloudinit::configdrive_seed(vm)
        .unwrap()
        .to_image(Filesystem::Iso9660, 0)
        .unwrap()
}

pub fn seed_image(seed: &Seed) -> Vec<u8> {
    seed.to_image(Filesystem::Iso9660, 0).unwrap()
}

pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln-agent"))
}

/// `kiln-agent run --stage all` on the root with one device, no network.
pub fn apply(root: &Path, device: &Path) -> Output {
    apply_with(agent(), root, device)
}

/// As [`apply`], with a given agent binary (the static musl build, say).
pub fn apply_with(mut agent: Command, root: &Path, device: &Path) -> Output {
    agent
        .args([
            "run",
            "--stage",
            "all",
            "--no-network",
            "--device-wait",
            "0",
            "--cmdline",
            "",
        ])
        .arg("--root")
        .arg(root)
        .arg("--device")
        .arg(device)
        .output()
        .unwrap()
}

pub fn write_image(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn mode(root: &Path, path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(root.join(path.trim_start_matches('/')))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

pub fn owner(root: &Path, path: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(root.join(path.trim_start_matches('/'))).unwrap();
    (m.uid(), m.gid())
}

pub fn status(root: &Path) -> serde_json::Value {
    let output = agent()
        .args(["status", "--json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A step's record in `kiln-agent status --json`.
pub fn step<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == name)
        .map(|s| &s[1])
        .unwrap_or_else(|| panic!("no step {name} in {status}"))
}

pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "kiln-agent failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// openssl checks that a sha512-crypt hash is `password`'s.
pub fn assert_password(hash: &str, password: &str) {
    let salt = hash.split('$').nth(2).expect("a $6$salt$hash");
    let output = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, password])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        hash,
        "openssl computes another hash"
    );
}
