//! The sandbox against the real kernel: a small root made of host binaries,
//! commands run in it, and the host's mount table checked afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_rootfs::files::{TreeFile, install};
use kiln_rootfs::{Error, Sandbox};

/// Copies `programs` and the libraries ldd names for them into `root`.
fn mini_root(root: &Path) {
    let programs = [
        "/usr/bin/dash",
        "/usr/bin/cat",
        "/usr/bin/tar",
        "/usr/bin/ls",
        "/usr/bin/sleep",
    ];
    for dir in ["usr/bin", "proc", "sys", "dev", "run", "etc", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh")).unwrap();
    for program in programs {
        copy_in(root, Path::new(program));
        let ldd = Command::new("ldd").arg(program).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(lib) = lib {
                copy_in(root, &lib);
            }
        }
    }
}

fn copy_in(root: &Path, host: &Path) {
    let real = fs::canonicalize(host).unwrap();
    for path in [host, real.as_path()] {
        let target = root.join(path.strip_prefix("/").unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        if !target.exists() {
            fs::copy(&real, &target).unwrap();
        }
    }
}

/// Mount points of this (the host's) namespace that lie under `root`.
fn host_mounts_under(root: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(&root))
        .collect()
}

#[test]
fn commands_see_proc_sys_and_dev_and_the_host_sees_no_mount() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    mini_root(&root);
    let sandbox = Sandbox::new(&root);
    let out = sandbox
        .shell("cat /proc/self/stat >/dev/null && ls /sys/kernel >/dev/null && echo ok >/dev/null && ls /dev && ls /proc")
        .unwrap();
    for node in ["null", "zero", "urandom", "pts", "ptmx", "shm"] {
        assert!(
            out.lines().any(|l| l == node),
            "{node} missing in /dev: {out}"
        );
    }
    // The command runs in a PID namespace of its own: it sees only its few
    // processes, not the host's.
    let pids = out.lines().filter(|l| l.parse::<u32>().is_ok()).count();
    assert!((1..10).contains(&pids), "{pids} processes visible: {out}");
    assert!(host_mounts_under(&root).is_empty());
    // What /dev and /proc held during the run is gone from the tree.
    assert!(fs::read_dir(root.join("dev")).unwrap().next().is_none());
    assert!(fs::read_dir(root.join("proc")).unwrap().next().is_none());
}

#[test]
fn a_failing_command_reports_its_status_and_output_and_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    mini_root(&root);
    let err = Sandbox::new(&root)
        .shell("echo something went wrong >&2; exit 3")
        .unwrap_err();
    match &err {
        Error::Command { status, output, .. } => {
            assert!(status.contains('3'), "{status}");
            assert!(output.contains("something went wrong"), "{output}");
        }
        other => panic!("{other:?}"),
    }
    assert!(host_mounts_under(&root).is_empty());
}

#[test]
fn files_land_inside_the_root_even_through_an_absolute_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    mini_root(&root);
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // /etc/app points at an absolute path that exists on the host too.
    std::os::unix::fs::symlink(&outside, root.join("etc/app")).unwrap();
    let inside_dir = root.join(outside.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside_dir).unwrap();
    let sandbox = Sandbox::new(&root);
    install(
        &sandbox,
        &[
            TreeFile::new("/etc/app/config", "inside\n", 0o600),
            TreeFile::new("/opt/new/dir/tool", "#!/bin/sh\n", 0o755),
        ],
    )
    .unwrap();
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "a write escaped the root"
    );
    let inside = inside_dir.join("config");
    assert_eq!(fs::read_to_string(&inside).unwrap(), "inside\n");
    use std::os::unix::fs::PermissionsExt;
    let tool = fs::metadata(root.join("opt/new/dir/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_to_string(root.join("opt/new/dir/tool")).unwrap(),
        "#!/bin/sh\n"
    );
}

#[test]
fn no_resolv_conf_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    mini_root(&root);
    let seen = Sandbox::new(&root).shell("cat /etc/resolv.conf").unwrap();
    assert_eq!(seen, fs::read_to_string("/etc/resolv.conf").unwrap());
    assert!(!root.join("etc/resolv.conf").exists());
}
