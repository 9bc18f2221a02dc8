//! The native format: inheritance, every error reported with its place, and
//! `show` output that reads back to the same template.

mod common;

use std::path::PathBuf;

use kiln_template::{Compression, FileSource, Filesystem, Size};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/native")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn a_child_merges_into_its_parent() {
    let t = kiln_template::load(&fixture("child/child.yaml"))
        .unwrap_or_else(|p| panic!("{}", p.plain()));
    assert_eq!(t.name, "child");
    assert_eq!(
        t.packages,
        ["systemd-sysv", "openssh-server"],
        "lists concatenate, repeats dropped"
    );
    assert_eq!(
        (t.hardware.cpus, t.hardware.memory),
        (4, Size::from_mib(2048)),
        "cpus and memory take the maximum"
    );
    let parts: Vec<_> = t
        .disk
        .partitions
        .iter()
        .map(|p| (p.identity().to_string(), p.size.unwrap().to_string(), p.fs))
        .collect();
    assert_eq!(
        parts,
        [
            ("/".into(), "6G".into(), Filesystem::Ext4),
            ("swap".into(), "1G".into(), Filesystem::Swap),
            ("/boot/efi".into(), "512M".into(), Filesystem::Vfat)
        ]
    );
    assert_eq!(
        t.disk.partitions[0].options.as_deref(),
        Some("noatime"),
        "the child's other keys are kept"
    );
    assert_eq!(t.outputs.len(), 1);
    assert_eq!(t.outputs[0].compression, Compression::Zstd);
    // A parent's relative path is relative to the parent's file.
    let FileSource::Local(source) = &t.files[0].source else {
        panic!("{:?}", t.files[0].source)
    };
    assert_eq!(
        source.canonicalize().unwrap(),
        fixture("base.txt").canonicalize().unwrap()
    );
}

#[test]
fn every_error_is_reported_where_it_is() {
    let problems = kiln_template::load(&fixture("broken.yaml")).unwrap_err();
    let found = common::places(&problems);
    let has = |file: &str, line: usize, message: &str, hint: &str| {
        found
            .iter()
            .any(|(f, l, m, h)| f == file && *l == line && m.contains(message) && h.contains(hint))
    };
    assert!(
        has(
            "broken-base.yaml",
            5,
            "os.arch `amd46` is not known",
            "did you mean `amd64`?"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            "broken-base.yaml",
            6,
            "unknown key `hardwre`",
            "did you mean `hardware`?"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            3,
            "unknown key `pakages`",
            "did you mean `packages`?"
        ),
        "{found:#?}"
    );
    assert!(
        has("broken.yaml", 5, "disk size `10` is not a size", "10G"),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            7,
            "file path `etc/motd` is not absolute",
            "/etc/motd"
        ),
        "{found:#?}"
    );
    assert!(
        has("broken.yaml", 10, "needs its `sha256`", "sha256sum"),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            12,
            "`Admin` is not a valid account name",
            "lower-case"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            13,
            "not an OpenSSH public key",
            "ssh-ed25519"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            14,
            "password is not a password hash",
            "{plain: …}"
        ),
        "{found:#?}"
    );
    assert!(
        has("broken.yaml", 18, "cannot use zstd compression", "none"),
        "{found:#?}"
    );
    assert!(
        has(
            "broken.yaml",
            19,
            "unknown variable `${consle}`",
            "$${consle}"
        ),
        "{found:#?}"
    );
    assert_eq!(found.len(), 11, "{found:#?}");
}

#[test]
fn an_inheritance_cycle_is_an_error() {
    let problems = kiln_template::load(&fixture("cycle-a.yaml")).unwrap_err();
    let cycle = problems
        .0
        .iter()
        .find(|p| p.message.starts_with("inheritance cycle"))
        .expect("the cycle is reported");
    assert_eq!(
        (
            cycle.source.path.file_name().unwrap().to_str(),
            cycle.line_col()
        ),
        (Some("cycle-b.yaml"), (1, 10))
    );
}

#[test]
fn the_examples_check_and_show_reads_back_the_same() {
    for name in ["debian-minimal.yaml", "debian-rich.yaml"] {
        let t = kiln_template::load(&example(name)).unwrap_or_else(|p| panic!("{}", p.plain()));
        assert!(t.bootstrap_backend().is_ok());
        let dir = tempfile::tempdir().unwrap();
        let shown = dir.path().join("shown.yaml");
        std::fs::write(&shown, t.to_yaml().unwrap()).unwrap();
        let again = kiln_template::load(&shown)
            .unwrap_or_else(|p| panic!("show output of {name}:\n{}", p.plain()));
        assert_eq!(again, t, "{name}");
    }
    let rich = kiln_template::load(&example("debian-rich.yaml")).unwrap();
    assert_eq!(
        rich.packages[0], "linux-image-amd64",
        "${{debian_arch}} from the parent"
    );
    assert!(rich.users[0].ssh_keys[0].starts_with("ssh-ed25519 "));
    assert!(
        rich.services
            .enable
            .contains(&"kiln-marker.service".to_string())
    );
}

#[test]
fn a_literal_dollar_brace_survives_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, "name: t\nos: {distribution: debian, release: bookworm}\ncommands:\n  after_packages: ['echo $${HOME}']\n").unwrap();
    let t = kiln_template::load(&path).unwrap();
    assert_eq!(
        format!("{:?}", t.commands.after_packages[0]),
        r#"Shell("echo ${HOME}")"#
    );
    std::fs::write(&path, t.to_yaml().unwrap()).unwrap();
    assert_eq!(kiln_template::load(&path).unwrap(), t);
}
