//! BoxGrinder appliances: the shared corpus and fixtures for inheritance,
//! variables and schema errors.

mod common;

use std::path::PathBuf;

use common::{corpus, places, reload};
use kiln_template::{Command, Filesystem, Size};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/appl")
        .join(name)
}

#[test]
fn every_corpus_appliance_imports_and_checks() {
    let mut count = 0;
    for entry in std::fs::read_dir(corpus("boxgrinder-appl")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "appl") {
            let imported = kiln_template::import(&path).unwrap_or_else(|p| panic!("{}", p.plain()));
            assert_eq!(
                reload(&imported, &path),
                imported.template,
                "{}",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 2, "found {count} appliances");
}

#[test]
fn the_corpus_appliances_convert_field_by_field() {
    let full = kiln_template::import(&corpus("boxgrinder-appl").join("full.appl"))
        .unwrap()
        .template;
    let urls: Vec<_> = full
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.url.as_deref(), r.mirrorlist.as_deref()))
        .collect();
    assert_eq!(
        urls[0],
        (
            "cirras",
            Some("http://repo.boxgrinder.org/packages/fedora/11/RPMS/x86_64"),
            None
        )
    );
    assert_eq!(urls[2].0, "boxgrinder-f11-testing-x86_64");
    assert_eq!(
        full.disk
            .partitions
            .iter()
            .map(|p| p.size.unwrap().to_string())
            .collect::<Vec<_>>(),
        ["2G", "3G"]
    );

    let precise = kiln_template::import(&corpus("boxgrinder-appl").join("ubuntu-precise.appl"))
        .unwrap()
        .template;
    assert_eq!(precise.files[0].path, "/root/script/postinstall.sh");
    assert_eq!(
        precise.commands.after_packages,
        [Command::Shell("sh /root/script/postinstall.sh".into())]
    );
    assert_eq!(precise.disk.partitions[1].fs, Filesystem::Swap);
    assert!(precise.bootstrap_backend().is_ok());
}

#[test]
fn parents_merge_as_boxgrinder_merged_them() {
    // Cargo (and nextest) give tests CARGO_PKG_NAME, which fills #CARGO_PKG_NAME#.
    let imported = kiln_template::import(&fixture("child.appl")).unwrap();
    let t = &imported.template;
    assert_eq!(
        (t.os.distribution.as_str(), t.os.release.as_str()),
        ("centos", "6"),
        "the child's os wins"
    );
    assert_eq!(t.version.as_deref(), Some("2.3"));
    assert_eq!(
        (t.hardware.cpus, t.hardware.memory),
        (4, Size::from_mib(1024)),
        "cpus and memory take the maximum"
    );
    let root = &t.disk.partitions[0];
    assert_eq!(
        (root.size, root.fs, root.options.as_deref()),
        (
            Some(Size::from_mib(5 * 1024)),
            Filesystem::Ext4,
            Some("noatime")
        )
    );
    assert_eq!(t.disk.partitions[1].size, Some(Size::from_mib(512)));
    assert_eq!(
        t.packages,
        ["bash", "@core", "openssh-server"],
        "parents' lists come first"
    );
    assert!(!t.default_repositories);
    assert_eq!(t.repositories[0].name, "base-x86_64");
    assert_eq!(
        t.repositories[0].url.as_deref(),
        Some("http://mirror.example.org/centos/6/os/x86_64")
    );
    assert!(t.repositories[1].build_only, "ephemeral is build-only");
    assert_eq!(t.files[0].path, "/opt/app/app.conf");
    let after: Vec<String> = t
        .commands
        .after_packages
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(
        after[0].contains("curl") && after[0].contains("/opt/app/app.tar.gz"),
        "{after:?}"
    );
    assert_eq!(
        t.commands.after_packages[1..],
        [
            Command::Shell("echo base".into()),
            Command::Shell("echo hello world from kiln-template".into())
        ]
    );
    assert_eq!(
        t.commands.platforms["vmware"],
        [Command::Shell("vmware-tools-setup".into())]
    );
    assert_eq!(reload(&imported, &fixture("child.appl")), imported.template);
}

#[test]
fn schema_errors_point_into_the_file_that_has_them() {
    let problems = kiln_template::import(&fixture("bad-child.appl")).unwrap_err();
    let found = places(&problems);
    let has = |file: &str, line: usize, text: &str| {
        found
            .iter()
            .any(|(f, l, m, _)| f == file && *l == line && m.contains(text))
    };
    assert!(has("bad-child.appl", 1, "has no `os`"), "{found:?}");
    assert!(
        has("bad-child.appl", 4, "cannot read parent appliance"),
        "{found:?}"
    );
    assert!(
        has("bad-child.appl", 6, "is not a package name"),
        "{found:?}"
    );
    assert!(
        has("bad-parent.appl", 6, "cpus 32 is out of range"),
        "{found:?}"
    );
    assert!(
        has("bad-parent.appl", 7, "unknown key `memroy`"),
        "{found:?}"
    );
    assert_eq!(found.len(), 5, "{found:?}");
}
