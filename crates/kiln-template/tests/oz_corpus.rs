//! Oz's own test TDLs: kiln accepts exactly those Oz accepts (expected.tsv).

mod common;

use common::{corpus, reload};

#[test]
fn every_corpus_tdl_gets_oz_s_verdict() {
    let dir = corpus("oz-tdl");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let (file, verdict) = line.split_once('\t').unwrap();
        let path = dir.join(file);
        checked += 1;
        match (verdict, kiln_template::import(&path)) {
            ("accept", Ok(imported)) => {
                assert_eq!(
                    reload(&imported, &path),
                    imported.template,
                    "{file}: the written template reads back differently"
                );
            }
            ("reject", Err(problems)) => {
                for p in &problems.0 {
                    let (line, col) = p.line_col();
                    assert!(
                        line >= 1 && col >= 1 && p.message.contains('<'),
                        "{file}: reason names no element: {}",
                        p.plain()
                    );
                }
            }
            ("accept", Err(problems)) => mismatches.push(format!(
                "{file}: Oz accepts, kiln rejects:\n{}",
                problems.plain()
            )),
            ("reject", Ok(_)) => mismatches.push(format!("{file}: Oz rejects, kiln accepts")),
            (other, _) => panic!("{file}: unknown verdict {other}"),
        }
    }
    assert!(checked >= 60, "expected.tsv lists {checked} files");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The three corpus files that expected.tsv leaves out break TDL.py's rules.
#[test]
fn position_and_localhost_rules_reject_with_the_element() {
    let cases = [
        (
            "test-60-command-mix-positions-and-not.tdl",
            "has no position while others have one",
            (19, 5),
        ),
        (
            "test-61-command-duplicate-position.tdl",
            "<command> position 1 where 2 was expected",
            (19, 5),
        ),
        (
            "test-62-repository-localhost.tdl",
            "a repository <url> cannot be on localhost",
            (14, 7),
        ),
    ];
    for (file, message, at) in cases {
        let problems = kiln_template::import(&corpus("oz-tdl").join(file)).unwrap_err();
        assert_eq!(problems.0.len(), 1, "{file}: {}", problems.plain());
        assert!(
            problems.0[0].message.contains(message),
            "{file}: {}",
            problems.plain()
        );
        assert_eq!(problems.0[0].line_col(), at, "{file}");
    }
}

#[test]
fn a_converted_tdl_keeps_what_kiln_can_use() {
    let path = corpus("oz-tdl").join("test-59-command-sorting.tdl");
    let t = kiln_template::import(&path).unwrap().template;
    assert_eq!(
        (
            t.name.as_str(),
            t.os.distribution.as_str(),
            t.os.release.as_str()
        ),
        ("f12jeos", "Fedora", "12")
    );
    assert_eq!(
        t.mirror.as_deref(),
        Some("http://download.fedoraproject.org/pub/fedora/linux/releases/12/Fedora/x86_64/os/")
    );
    let shells: Vec<String> = t
        .commands
        .after_packages
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(
        shells[1].contains("/tmp/foobar") && shells[2].contains("/tmp/bar"),
        "sorted by position: {shells:?}"
    );
    assert_eq!(
        t.bootstrap_backend().unwrap_err().to_string(),
        "no bootstrap backend for Fedora 12: kiln builds Debian and Ubuntu"
    );

    let big = kiln_template::import(&corpus("oz-tdl").join("test-64-disk-size-zettabyte.tdl"))
        .unwrap()
        .template;
    assert_eq!(big.disk.size.unwrap().bytes(), 10 * 10u128.pow(21));
}

#[test]
fn every_error_of_a_bad_tdl_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tdl");
    std::fs::write(
        &path,
        "<template>\n  <name>x</name>\n  <os>\n    <name>Fedora</name>\n    <version>12</version>\n    <arch>arm</arch>\n\
         <install type='url'><url>http://h/</url></install>\n  </os>\n  <disk><size>10Q</size></disk>\n  <colour/>\n</template>\n",
    )
    .unwrap();
    let problems = kiln_template::import(&path).unwrap_err();
    let found: Vec<(usize, &str)> = problems
        .0
        .iter()
        .map(|p| (p.line_col().0, p.message.as_str()))
        .collect();
    assert_eq!(found.len(), 3, "{}", problems.plain());
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 6 && m.contains("<arch> `arm`")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 9 && m.contains("<size> `10Q`")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 10 && m.contains("unexpected <colour>")),
        "{found:?}"
    );
}
