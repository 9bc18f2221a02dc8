//! `kiln template check|show|import` end to end.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn corpus(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(path)
}

fn kiln() -> Command {
    Command::cargo_bin("kiln").unwrap()
}

#[test]
fn check_accepts_the_examples() {
    for example in ["examples/debian-minimal.yaml", "examples/debian-rich.yaml"] {
        kiln()
            .args(["template", "check"])
            .arg(repo(example))
            .assert()
            .success()
            .stdout(predicate::str::contains("ok"));
    }
}

#[test]
fn check_prints_every_error_with_file_line_column_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: bad\nos:\n  distribution: debian\n  release: bookworm\npakages: [vim]\nboot: uefii\n").unwrap();
    let out = kiln()
        .args(["template", "check"])
        .arg(&bad)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains(&format!(
            "{}:5:1: error: unknown key `pakages`",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `packages`?"), "{err}");
    assert!(
        err.contains(&format!(
            "{}:6:7: error: boot `uefii` is not known",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn show_prints_the_resolved_template_as_yaml_or_json() {
    let rich = repo("examples/debian-rich.yaml");
    kiln()
        .args(["template", "show"])
        .arg(&rich)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("name: debian-rich")
                .and(predicate::str::contains("- linux-image-amd64")),
        );
    let out = kiln()
        .args(["template", "show", "--json"])
        .arg(&rich)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["os"]["release"], "bookworm");
    assert_eq!(json["hardware"]["cpus"], 2);
    assert_eq!(json["packages"][0], "linux-image-amd64");
}

#[test]
fn import_writes_a_template_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    for source in [
        corpus("oz-tdl/test-37-command.tdl"),
        corpus("boxgrinder-appl/ubuntu-precise.appl"),
    ] {
        let out = dir.path().join("out.yaml");
        kiln()
            .args(["template", "import"])
            .arg(&source)
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
        kiln()
            .args(["template", "check"])
            .arg(&out)
            .assert()
            .success();
    }
}

#[test]
fn import_notes_an_os_kiln_cannot_build_and_rejects_what_oz_rejects() {
    kiln()
        .args(["template", "import"])
        .arg(corpus("oz-tdl/test-19-key.tdl"))
        .assert()
        .success()
        .stdout(predicate::str::contains("distribution: Windows"))
        .stderr(predicate::str::contains(
            "no bootstrap backend for Windows 2003: kiln builds Debian and Ubuntu",
        ));
    kiln()
        .args(["template", "import"])
        .arg(corpus("oz-tdl/test-09-os-invalid-arch.tdl"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "test-09-os-invalid-arch.tdl:6:5: error: <arch> `arm` is not one Oz knows",
        ));
}
