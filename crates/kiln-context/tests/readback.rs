//! Generated files read back by the programs that consume them: context.sh
//! sourced by bash and dash; images read by xorriso, isoinfo, blkid, mtools
//! and fsck.vfat; user-data parsed by Python's email and yaml modules, as
//! cloud-init parses it. These tools come from scripts/setup.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use kiln_context::description::{parse_resource, parse_vm};
use kiln_context::onecontext::{context_seed, context_sh, context_variables};
use kiln_context::vm::Vm;
use kiln_context::{Filesystem, Seed, SeedFile, cloudinit};

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Values that break naive quoting, as CONTEXT values in OpenNebula syntax
/// (`\"` is a quote, `\$` a literal dollar) and as the text expected back.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("SINGLE", "it's 'quoted'", "it's 'quoted'"),
    ("DOUBLE", "say \\\"hi\\\"", "say \"hi\""),
    ("LINES", "line one\nline two\n\n", "line one\nline two\n\n"),
    (
        "SUBSHELL",
        "\\$(touch pwned-subshell)",
        "$(touch pwned-subshell)",
    ),
    (
        "BACKTICK",
        "`touch pwned-backtick`",
        "`touch pwned-backtick`",
    ),
    (
        "BREAKOUT",
        "'; touch pwned-breakout; echo '",
        "'; touch pwned-breakout; echo '",
    ),
    (
        "EXPANSION",
        "\\${HOME} \\$HOME \\\\n",
        "${HOME} $HOME \\\\n",
    ),
    ("UNICODE", "ünïcødé — 日本語 🚀", "ünïcødé — 日本語 🚀"),
    ("ONLY_QUOTE", "'", "'"),
    ("EMPTY", "", ""),
];

fn hostile_vm() -> Vm {
    let attributes: Vec<String> = HOSTILE
        .iter()
        .map(|(name, value, _)| format!("{name} = \"{value}\""))
        .collect();
    let text = format!("NAME = web\nCONTEXT = [ {} ]\n", attributes.join(",\n  "));
    Vm::instantiate(parse_vm("vm.one", &text).unwrap(), Some(1)).unwrap()
}

#[test]
fn context_sh_sourced_by_bash_and_dash_gives_every_value_back() {
    let variables = context_variables(&hostile_vm()).unwrap();
    for (name, _, expected) in HOSTILE {
        assert_eq!(variables[*name], *expected, "{name} after substitution");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("context.sh"), context_sh(&variables)).unwrap();
    let names: Vec<String> = HOSTILE
        .iter()
        .map(|(name, _, _)| format!("\"${name}\""))
        .collect();
    let script = format!(". ./context.sh && printf '%s\\0' {}", names.join(" "));
    for shell in ["bash", "dash", "sh"] {
        let output = run(shell, &["-c", &script], dir.path());
        let values: Vec<&[u8]> = output.stdout.split(|b| *b == 0).collect();
        for ((name, _, expected), got) in HOSTILE.iter().zip(&values) {
            assert_eq!(*got, expected.as_bytes(), "{shell}: {name}");
        }
        let pwned: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pwned"))
            .collect();
        assert!(pwned.is_empty(), "{shell} ran injected commands: {pwned:?}");
    }
}

/// Every file of an image, as the reader extracted it, by relative path.
fn extracted(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn expected_files(seed: &Seed) -> BTreeMap<String, Vec<u8>> {
    seed.files
        .iter()
        .map(|f| (f.path.clone(), f.contents.clone()))
        .collect()
}

fn blkid(image: &Path) -> BTreeMap<String, String> {
    let output = run(
        "blkid",
        &["-p", "-o", "export", image.to_str().unwrap()],
        Path::new("."),
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Writes the ISO and checks it with blkid, xorriso and isoinfo (Rock Ridge
/// and Joliet), and that a second build is byte-identical.
fn check_iso(seed: &Seed, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = seed.to_image(Filesystem::Iso9660, 0).unwrap();
    assert_eq!(
        seed.to_image(Filesystem::Iso9660, 0).unwrap(),
        image,
        "the same input gives the same bytes"
    );
    assert_ne!(
        seed.to_image(Filesystem::Iso9660, 1_700_000_000).unwrap(),
        image,
        "the epoch is stamped"
    );
    let path = dir.path().join("seed.iso");
    std::fs::write(&path, &image).unwrap();
    let iso = path.to_str().unwrap();

    let ids = blkid(&path);
    assert_eq!(ids.get("TYPE").map(String::as_str), Some("iso9660"));
    assert_eq!(ids.get("LABEL").map(String::as_str), Some(label));

    // xorriso reports any problem loading the tree as a WARNING or worse.
    let listing = run(
        "xorriso",
        &[
            "-return_with",
            "WARNING",
            "32",
            "-indev",
            iso,
            "-find",
            "/",
            "-type",
            "f",
        ],
        dir.path(),
    );
    let listed: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_matches('\'').to_string())
        .collect();
    for file in &seed.files {
        assert!(
            listed.contains(&format!("/{}", file.path)),
            "xorriso lists /{}: {listed:?}",
            file.path
        );
    }
    // Rock Ridge names, then the Joliet tree alone.
    for (tree, read_fs) in [("rock-ridge", "any"), ("joliet", "norock")] {
        let out = dir.path().join(tree);
        let out = out.to_str().unwrap();
        run(
            "xorriso",
            &[
                "-return_with",
                "WARNING",
                "32",
                "-read_fs",
                read_fs,
                "-osirrox",
                "on",
                "-indev",
                iso,
                "-extract",
                "/",
                out,
            ],
            dir.path(),
        );
        assert_eq!(
            extracted(Path::new(out)),
            expected_files(seed),
            "{tree} tree"
        );
    }

    let description =
        String::from_utf8(run("isoinfo", &["-d", "-i", iso], dir.path()).stdout).unwrap();
    assert!(
        description.contains("Rock Ridge signatures version 1 found"),
        "{description}"
    );
    assert!(
        description.contains("Joliet with UCS level 3 found"),
        "{description}"
    );
    // isoinfo prints Joliet names in a legacy charset: ASCII names only.
    for file in &seed.files {
        let target = format!("/{}", file.path);
        let trees: &[&str] = if file.path.is_ascii() {
            &["-R", "-J"]
        } else {
            &["-R"]
        };
        for extension in trees {
            let content = run(
                "isoinfo",
                &[*extension, "-i", iso, "-x", &target],
                dir.path(),
            )
            .stdout;
            assert_eq!(content, file.contents, "isoinfo {extension} -x {target}");
        }
    }
}

/// Writes the VFAT image and checks it with blkid, fsck.vfat, mdir and mtype.
fn check_vfat(seed: &Seed, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = seed.to_image(Filesystem::Vfat, 0).unwrap();
    assert_eq!(
        seed.to_image(Filesystem::Vfat, 0).unwrap(),
        image,
        "the same input gives the same bytes"
    );
    let path = dir.path().join("seed.img");
    std::fs::write(&path, &image).unwrap();
    let img = path.to_str().unwrap();

    let ids = blkid(&path);
    assert_eq!(ids.get("TYPE").map(String::as_str), Some("vfat"));
    assert_eq!(ids.get("LABEL").map(String::as_str), Some(label));
    run("fsck.vfat", &["-n", img], dir.path());
    for file in &seed.files {
        let content = run(
            "mtype",
            &["-i", img, &format!("::{}", file.path)],
            dir.path(),
        )
        .stdout;
        assert_eq!(content, file.contents, "mtype ::{}", file.path);
    }
    let listing =
        String::from_utf8(run("mdir", &["-i", img, "-b", "-/", "::"], dir.path()).stdout).unwrap();
    let listed: Vec<&str> = listing
        .lines()
        .filter(|l| !l.ends_with('/'))
        .filter_map(|l| l.strip_prefix("::/"))
        .collect();
    let mut listed: Vec<String> = listed.into_iter().map(str::to_string).collect();
    listed.sort();
    assert_eq!(
        listed,
        expected_files(seed).into_keys().collect::<Vec<_>>(),
        "mdir lists exactly the seed's files"
    );
}

fn cloud_vm() -> Vm {
    let text = "NAME = web1\n\
                NIC = [ NETWORK = public, IP = 192.0.2.10 ]\n\
                CONTEXT = [ NETWORK = YES, SSH_PUBLIC_KEY = \"$USER[SSH_PUBLIC_KEY]\", USERNAME = alice,\n\
                  START_SCRIPT = \"echo 'started' > /tmp/started\" ]";
    let mut source = parse_vm("vm.one", text).unwrap();
    source.networks.push(
        parse_resource(
            "net.one",
            "NAME = public\nNETWORK_MASK = 255.255.255.0\nGATEWAY = 192.0.2.1",
        )
        .unwrap(),
    );
    source.owner = Some(
        parse_resource(
            "user.one",
            "NAME = alice\nSSH_PUBLIC_KEY = \"ssh-ed25519 AAAA alice@example\"",
        )
        .unwrap(),
    );
    Vm::instantiate(source, Some(7)).unwrap()
}

#[test]
fn context_cd_reads_back() {
    let vm = hostile_vm();
    let script = SeedFile {
        path: "init.sh".into(),
        contents: b"#!/bin/sh\necho hi\n".to_vec(),
        mode: 0o755,
    };
    let seed = context_seed(&context_variables(&vm).unwrap(), vec![script]).unwrap();
    check_iso(&seed, "CONTEXT");
    check_vfat(&seed, "CONTEXT");
}

#[test]
fn nocloud_seed_reads_back() {
    let seed = cloudinit::nocloud_seed(&cloud_vm()).unwrap();
    check_iso(&seed, "cidata");
    check_vfat(&seed, "CIDATA");
}

#[test]
fn configdrive_reads_back() {
    let seed = cloudinit::configdrive_seed(&cloud_vm()).unwrap();
    check_iso(&seed, "config-2");
    check_vfat(&seed, "CONFIG-2");
}

#[test]
fn awkward_names_and_sizes_read_back() {
    let mut seed = Seed::new("CONTEXT");
    seed.add("empty", Vec::new()).unwrap();
    seed.add(
        "two-sectors.bin",
        (0..4097u32).map(|i| (i % 251) as u8).collect(),
    )
    .unwrap();
    seed.add("ünïcødé name.txt", "ü\n".as_bytes().to_vec())
        .unwrap();
    seed.add("meta-data", b"a".to_vec()).unwrap();
    seed.add("meta_data", b"b".to_vec()).unwrap();
    seed.add("deep/er/still/file", b"c".to_vec()).unwrap();
    check_iso(&seed, "CONTEXT");
    check_vfat(&seed, "CONTEXT");
}

/// cloud-init reads user-data with Python's email package and the parts
/// with PyYAML: so does this test.
#[test]
fn user_data_parses_as_cloud_init_parses_it() {
    let seed = cloudinit::nocloud_seed(&cloud_vm()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("user-data"),
        &seed.file("user-data").unwrap().contents,
    )
    .unwrap();
    let script = r#"
import email, json, sys, yaml
message = email.message_from_bytes(open("user-data", "rb").read())
parts = [(p.get_content_type(), p.get_payload(decode=True).decode()) for p in message.walk() if not p.is_multipart()]
print(json.dumps({"parts": [t for t, _ in parts], "config": yaml.safe_load(parts[0][1]), "script": parts[1][1]}))
"#;
    let output = run("python3", &["-c", script], dir.path());
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        parsed["parts"],
        serde_json::json!(["text/cloud-config", "text/x-shellscript"])
    );
    assert_eq!(parsed["config"]["users"][0]["name"], "alice");
    assert_eq!(
        parsed["config"]["users"][0]["ssh_authorized_keys"][0],
        "ssh-ed25519 AAAA alice@example"
    );
    assert_eq!(parsed["script"], "#!/bin/sh\necho 'started' > /tmp/started");

    std::fs::write(
        dir.path().join("network-config"),
        &seed.file("network-config").unwrap().contents,
    )
    .unwrap();
    let output = run(
        "python3",
        &[
            "-c",
            "import json, yaml; print(json.dumps(yaml.safe_load(open('network-config'))))",
        ],
        dir.path(),
    );
    let network: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        network["ethernets"]["eth0"]["match"]["macaddress"],
        "02:00:c0:00:02:0a"
    );
    assert_eq!(
        network["ethernets"]["eth0"]["addresses"][0],
        "192.0.2.10/24"
    );
    assert_eq!(
        network["ethernets"]["eth0"]["routes"][0]["via"],
        "192.0.2.1"
    );
}
