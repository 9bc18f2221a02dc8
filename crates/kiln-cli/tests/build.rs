//! `kiln build` end to end: the example templates are bootstrapped from the
//! Debian mirror, built to images, and the images are read by their real
//! consumers — the Linux kernel in qemu (TCG, SeaBIOS and OVMF), qemu-img,
//! sfdisk/sgdisk, e2fsck/debugfs, fsck.vfat, tar and sha256sum.
//!
//! Builds share one stage cache under the target directory, so the minimal
//! and rich examples bootstrap once, each template is built once, and every
//! later build of it is replayed from the cache (the cache is the point of
//! the design; the first run on a clean machine builds everything).

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kiln_trust::testkit::{KeyType, TestPki};
use serde_json::Value;

#[test]
fn minimal_example_boots_to_a_login_prompt_with_bios_and_uefi() {
    let out = tempfile::tempdir().unwrap();
    let events = build(&repo("examples/debian-minimal.yaml"), out.path(), &[]);
    for stage in [
        "bootstrap",
        "packages",
        "kernel",
        "bootloader",
        "outputs",
        "manifest",
    ] {
        finished(&events, stage);
    }
    let image = out.path().join("debian-minimal.qcow2");
    run(Command::new("qemu-img").arg("check").arg(&image));
    let m = manifest(out.path(), "debian-minimal");
    assert!(m["kernel"].as_str().unwrap().ends_with("-amd64"), "{m}");
    boot(&image, "qcow2", false, &["debian-minimal login:"]);
    boot(&image, "qcow2", true, &["debian-minimal login:"]);
}

/// The other releases the builder supports, through the same backend: each
/// builds to raw with its distribution's update and security suites in its
/// apt sources, and boots (BIOS) to a login prompt.
#[test]
fn ubuntu_and_debian_trixie_boot_to_a_login_prompt() {
    for (template, kernel_suffix, suites) in [
        (
            "examples/ubuntu-noble.yaml",
            "-generic",
            ["noble-updates", "noble-security"],
        ),
        (
            "examples/debian-trixie.yaml",
            "-amd64",
            ["trixie-updates", "trixie-security"],
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        build(&repo(template), out.path(), &["--format", "raw"]);
        let stem = Path::new(template).file_stem().unwrap().to_str().unwrap();
        let m = manifest(out.path(), stem);
        assert!(
            m["kernel"].as_str().unwrap().ends_with(kernel_suffix),
            "{m}"
        );
        let image = out.path().join(format!("{stem}.raw"));
        let sources = debugfs_cat(&image, root_offset(&m), "/etc/apt/sources.list");
        for suite in suites {
            assert!(sources.contains(suite), "{template}: {sources}");
        }
        boot(&image, "raw", false, &[&format!("{stem} login:")]);
    }
}

#[test]
fn rich_example_boots_with_its_files_commands_user_and_service() {
    let out = tempfile::tempdir().unwrap();
    build(&repo("examples/debian-rich.yaml"), out.path(), &[]);
    let qcow2 = out.path().join("debian-rich.qcow2");
    let raw = out.path().join("debian-rich.raw");
    run(Command::new("qemu-img").arg("check").arg(&qcow2));
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&qcow2));
    assert!(info.contains("\"compression-type\": \"zstd\""), "{info}");
    run(Command::new("qemu-img")
        .arg("compare")
        .arg(&qcow2)
        .arg(&raw));

    let m = manifest(out.path(), "debian-rich");
    // The manifest: kiln version, template digest, packages with versions, outputs with digests.
    assert_eq!(m["kiln_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["template"]["digest"].as_str().unwrap().len(), 64);
    for name in ["sudo", "curl", "openssh-server", "systemd-sysv"] {
        let p = m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name);
        assert!(
            p.is_some_and(|p| !p["version"].as_str().unwrap().is_empty()),
            "{name} not in the manifest"
        );
    }
    for o in m["outputs"].as_array().unwrap() {
        let file = out.path().join(o["file"].as_str().unwrap());
        let sha256 = run(Command::new("sha256sum").arg(&file));
        assert_eq!(sha256.split_whitespace().next().unwrap(), o["sha256"]);
        let sha512 = run(Command::new("sha512sum").arg(&file));
        assert_eq!(sha512.split_whitespace().next().unwrap(), o["sha512"]);
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            o["size"].as_u64().unwrap()
        );
    }

    // The disk, by its consumers.
    run(Command::new("sgdisk").arg("--verify").arg(&raw));
    let dump = run(Command::new("sfdisk").arg("--dump").arg(&raw));
    assert!(
        dump.contains("type=21686148-6449-6E6F-744E-656564454649"),
        "{dump}"
    );
    assert!(
        dump.contains("type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{dump}"
    );
    let offset = root_offset(&m);
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={offset}", raw.display())));
    let esp = m["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "esp")
        .unwrap()
        .clone();
    let esp_img = out.path().join("esp.img");
    run(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", esp_img.display()))
        .args(["bs=1M", "status=none"])
        .arg(format!("skip={}", esp["offset"].as_u64().unwrap() >> 20))
        .arg(format!("count={}", esp["size"].as_u64().unwrap() >> 20)));
    run(Command::new("fsck.vfat").arg("-n").arg(&esp_img));

    // The template's effects, read from the root filesystem.
    let motd = debugfs_cat(&raw, offset, "/etc/motd");
    assert_eq!(
        motd,
        "Built by kiln from debian-rich 1.0 (Debian bookworm, x86_64).\n"
    );
    assert_eq!(
        debugfs_cat(&raw, offset, "/etc/kiln-marker"),
        "KILN-RICH-BOOTED\n"
    );
    let keys = debugfs_cat(&raw, offset, "/home/admin/.ssh/authorized_keys");
    assert!(
        keys.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFk1Y2ls"),
        "{keys}"
    );
    let sudoers = debugfs_cat(&raw, offset, "/etc/sudoers.d/kiln-admin");
    assert_eq!(sudoers, "admin ALL=(ALL:ALL) NOPASSWD: ALL\n");
    let group = debugfs_cat(&raw, offset, "/etc/group");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("operators:") && l.ends_with(":admin")),
        "{group}"
    );
    let sshd = debugfs_cat(&raw, offset, "/etc/ssh/sshd_config");
    assert!(
        sshd.lines().any(|l| l == "PasswordAuthentication no"),
        "{sshd}"
    );
    // Every clone must be unique: no machine-id, no SSH host keys in the image.
    assert_eq!(debugfs_cat(&raw, offset, "/etc/machine-id"), "");
    let ssh_dir = run(Command::new("debugfs")
        .args(["-R", "ls -l /etc/ssh"])
        .arg(format!("{}?offset={offset}", raw.display())));
    assert!(!ssh_dir.contains("ssh_host_"), "{ssh_dir}");

    // Booted: the service prints the marker, a login prompt follows, and the
    // host keys the image lacked were made at first boot.
    for uefi in [false, true] {
        boot(
            &qcow2,
            "qcow2",
            uefi,
            &["KILN-RICH-BOOTED", "debian-rich login:"],
        );
    }
}

#[test]
fn every_output_format_passes_its_consumers() {
    let out = tempfile::tempdir().unwrap();
    // Signed with an X.509 certificate: a CMS signature of the manifest.
    let pki = TestPki::new("Kiln Build CA");
    let (cert, key) = pki.signer("builder", KeyType::Ecdsa);
    build(
        &repo("examples/debian-minimal.yaml"),
        out.path(),
        &[
            "--format",
            "raw,qcow2,vmdk,vhd,ova",
            "--sign",
            key.to_str().unwrap(),
            "--sign-cert",
            cert.to_str().unwrap(),
        ],
    );
    let ca = pki.ca_cert();
    let (manifest_path, sig, tampered) =
        check_signed_manifest(out.path(), "debian-minimal", &ca, "/CN=builder");
    // openssl reads the signature as kiln does: over the manifest, not over a changed one.
    let cms_verify = |content: &Path| {
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "PEM", "-in"])
            .arg(&sig)
            .arg("-content")
            .arg(content)
            .arg("-CAfile")
            .arg(&ca)
            .args(["-out", "/dev/null"])
            .output()
            .expect("openssl (scripts/setup installs it)")
    };
    let ok = cms_verify(&manifest_path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = cms_verify(&tampered);
    assert!(
        !refused.status.success(),
        "openssl accepted a changed manifest"
    );
    let raw = out.path().join("debian-minimal.raw");
    for (file, format) in [("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhd", "vpc")] {
        let image = out.path().join(format!("debian-minimal.{file}"));
        if format != "vpc" {
            run(Command::new("qemu-img").arg("check").arg(&image));
        }
        let info = run(Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&image));
        assert!(
            info.contains(&format!("\"format\": \"{format}\"")),
            "{info}"
        );
        if file == "vmdk" {
            assert!(info.contains("streamOptimized"), "{info}");
        }
        run(Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&raw)
            .arg(&image));
    }

    // OVA: the .ovf first, then the manifest, then the disk; the manifest checks.
    let ova = out.path().join("debian-minimal.ova");
    let listing = run(Command::new("tar").arg("tf").arg(&ova));
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            "debian-minimal.ovf",
            "debian-minimal.mf",
            "debian-minimal-disk1.vmdk"
        ]
    );
    let unpacked = out.path().join("ova");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("xf")
        .arg(&ova)
        .arg("-C")
        .arg(&unpacked));
    let mf = fs::read_to_string(unpacked.join("debian-minimal.mf")).unwrap();
    // `SHA256(f)= hex` is the BSD checksum format sha256sum -c reads.
    let check = run(Command::new("sha256sum")
        .arg("-c")
        .arg("debian-minimal.mf")
        .current_dir(&unpacked));
    assert_eq!(
        check.lines().filter(|l| l.ends_with(": OK")).count(),
        2,
        "{check}\n{mf}"
    );
    let vmdk = unpacked.join("debian-minimal-disk1.vmdk");
    run(Command::new("qemu-img").arg("check").arg(&vmdk));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vmdk"])
        .arg(&raw)
        .arg(&vmdk));
    let ovf = unpacked.join("debian-minimal.ovf");
    let parsed = run(Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); ns = {'o': 'http://schemas.dmtf.org/ovf/envelope/1'}; f = r.find('o:References/o:File', ns); print(f.get('{http://schemas.dmtf.org/ovf/envelope/1}href'), f.get('{http://schemas.dmtf.org/ovf/envelope/1}size'))"])
        .arg(&ovf));
    assert_eq!(
        parsed.trim(),
        format!(
            "debian-minimal-disk1.vmdk {}",
            fs::metadata(&vmdk).unwrap().len()
        )
    );
}

/// Checks what `kiln build --sign` left in `out`: `<stem>.manifest.json.sig`,
/// which `kiln verify --trust TRUST` accepts as made by `signer`, over a
/// manifest that binds every output by its size, sha256 and sha512 (as
/// sha256sum and sha512sum compute them); the same manifest with one digit
/// of a digest changed is refused (exit 1). Returns the manifest, the
/// signature and the changed manifest.
fn check_signed_manifest(
    out: &Path,
    stem: &str,
    trust: &Path,
    signer: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let manifest_path = out.join(format!("{stem}.manifest.json"));
    let sig = out.join(format!("{stem}.manifest.json.sig"));
    let verify = |doc: &Path| {
        kiln()
            .arg("verify")
            .arg(doc)
            .arg(&sig)
            .arg("--trust")
            .arg(trust)
            .output()
            .unwrap()
    };
    let verified = verify(&manifest_path);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && text.contains("verified") && text.contains(signer),
        "{text}{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    let m = manifest(out, stem);
    let outputs = m["outputs"].as_array().unwrap();
    assert!(!outputs.is_empty(), "{m}");
    for o in outputs {
        let file = out.join(o["file"].as_str().unwrap());
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            o["size"].as_u64().unwrap()
        );
        for (tool, digest) in [("sha256sum", "sha256"), ("sha512sum", "sha512")] {
            let line = run(Command::new(tool).arg(&file));
            assert_eq!(
                line.split_whitespace().next(),
                o[digest].as_str(),
                "{tool} {}",
                file.display()
            );
        }
    }

    // One byte of the manifest changed: a digest of the first output.
    let bytes = fs::read(&manifest_path).unwrap();
    let digest = outputs[0]["sha256"].as_str().unwrap().as_bytes();
    let at = bytes
        .windows(digest.len())
        .position(|w| w == digest)
        .expect("the digest in the manifest");
    let mut changed = bytes.clone();
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    let tampered = out.join("tampered.manifest.json");
    fs::write(&tampered, changed).unwrap();
    let refused = verify(&tampered);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("refused"), "{text}");
    (manifest_path, sig, tampered)
}

/// The scratch directory of the kiln process `pid` (see kiln_build::cache).
fn work_dir(pid: u32) -> PathBuf {
    cache_dir().join("work").join(pid.to_string())
}

/// Mount points of this namespace under `dir`, and processes rooted in it.
fn leftovers(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    let processes = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            fs::read_link(e.path().join("root"))
                .ok()
                .map(|r| (e.file_name(), r))
        })
        .filter(|(_, r)| r.starts_with(dir))
        .map(|(pid, r)| format!("{} in {}", pid.to_string_lossy(), r.display()))
        .collect();
    (mounts, processes)
}

fn derived(dir: &Path, command: &str) -> PathBuf {
    let path = dir.join("derived.yaml");
    fs::write(
        &path,
        format!(
            "extends: {}\nname: kiln-derived\ncommands:\n  after_packages:\n    - {command}\n",
            repo("examples/debian-minimal.yaml").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_killed_build_leaves_no_image_and_the_next_build_reuses_finished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let template = derived(dir.path(), "sleep 300");
    let mut child = kiln()
        .arg("build")
        .arg(&template)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the commands stage (the sleep) is running, then SIGKILL kiln.
    let stdout = child.stdout.take().unwrap();
    let mut in_commands = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "stage-started" && event["stage"] == "commands" {
            in_commands = true;
            break;
        }
        assert_ne!(event["event"], "stage-failed", "{event}");
    }
    assert!(in_commands, "the build never reached the commands stage");
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();

    // Nothing mounted, nothing running inside the image root, no image.
    let work = work_dir(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = leftovers(&work);
    while (!left.0.is_empty() || !left.1.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        left = leftovers(&work);
    }
    assert_eq!(left, (vec![], vec![]), "left behind by the killed build");
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        0,
        "the output directory is not empty"
    );

    // The next build works; what finished before the kill is replayed.
    // A command never built before (the cache persists across test runs), so
    // that the commands stage runs and the stages before it are replayed.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let template = derived(dir.path(), &format!("echo {nonce} > /etc/kiln-derived"));
    let events = build(&template, &out, &[]);
    for stage in ["bootstrap", "repositories", "packages", "files"] {
        assert_eq!(
            finished(&events, stage)["cached"],
            true,
            "{stage}: {events:?}"
        );
    }
    assert_eq!(finished(&events, "commands")["cached"], false);
    assert!(out.join("kiln-derived.qcow2").exists());
    run(Command::new("qemu-img")
        .arg("check")
        .arg(out.join("kiln-derived.qcow2")));
}

#[test]
fn a_failing_command_names_its_stage_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let template = derived(dir.path(), "echo about to fail; exit 7");
    let child = kiln()
        .arg("build")
        .arg(&template)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("build failed in stage commands"),
        "{stderr}"
    );
    assert!(stderr.contains("about to fail"), "{stderr}");
    assert!(fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 0);
    // The failed build removed its scratch space; nothing of it is mounted or running.
    assert!(!work_dir(pid).exists());
    assert_eq!(leftovers(&work_dir(pid)), (vec![], vec![]));
}

#[test]
fn a_template_for_an_os_without_backend_fails_in_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("fedora.yaml");
    fs::write(
        &template,
        "name: f\nos:\n  distribution: fedora\n  release: \"40\"\n",
    )
    .unwrap();
    let output = kiln()
        .arg("build")
        .arg(&template)
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("build failed in stage resolve"), "{stderr}");
    assert!(
        stderr.contains("no bootstrap backend for fedora 40"),
        "{stderr}"
    );
}

#[test]
fn the_agent_and_its_units_are_installed_when_a_binary_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let template = derived(dir.path(), "true");
    // A stand-in for the agent (the real one is a static musl build of its
    // own): what is checked is that this exact binary and the agent's units
    // land in the image, enabled.
    let agent = dir.path().join("kiln-agent");
    fs::copy("/usr/bin/true", &agent).unwrap();
    // Signed with an Ed25519 key.
    let key = dir.path().join("builder");
    let fingerprint = run(kiln().args(["key", "gen"]).arg(&key));
    let output = kiln()
        .env("KILN_AGENT_BINARY", &agent)
        .env("KILN_AGENT_UNITS", repo("crates/kiln-agent/systemd"))
        .arg("build")
        .arg(&template)
        .arg("-o")
        .arg(&out)
        .args(["--json", "--format", "raw", "--sign"])
        .arg(key.with_extension("key"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_signed_manifest(
        &out,
        "kiln-derived",
        &key.with_extension("pub"),
        fingerprint.trim(),
    );
    let events = events(&output.stdout);
    let detail = finished(&events, "agent")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("as /usr/bin/kiln-agent"), "{detail}");
    assert!(
        detail.contains("enabled kiln-agent-local.service, kiln-agent.service"),
        "{detail}"
    );

    let raw = out.join("kiln-derived.raw");
    let offset = root_offset(&manifest(&out, "kiln-derived"));
    let image = format!("{}?offset={offset}", raw.display());
    let installed = Command::new("debugfs")
        .args(["-R", "cat /usr/bin/kiln-agent"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(installed.stdout, fs::read("/usr/bin/true").unwrap());
    let wants = run(Command::new("debugfs")
        .args(["-R", "ls -l /etc/systemd/system/multi-user.target.wants"])
        .arg(&image));
    for unit in ["kiln-agent.service", "kiln-agent-local.service"] {
        assert!(wants.contains(unit), "{unit} not enabled: {wants}");
    }
}

#[test]
fn a_rebuild_after_a_file_change_runs_on_the_kept_tree_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let template = dir.path().join("kept.yaml");
    // A file never built before (the cache persists across test runs).
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let write = |content: &str| {
        fs::write(
            &template,
            format!(
                "extends: {}\nname: kiln-kept\nfiles:\n  - path: /etc/kiln-kept\n    content: \"{content}\"\n",
                repo("examples/debian-minimal.yaml").display()
            ),
        )
        .unwrap()
    };
    write(&format!("{nonce} one"));
    build(&template, &out, &[]);
    write(&format!("{nonce} two"));
    let events = build(&template, &out, &[]);
    for stage in ["bootstrap", "repositories", "packages"] {
        let done = finished(&events, stage);
        assert_eq!(done["cached"], true, "{stage}: {done}");
        assert!(
            done["detail"].as_str().unwrap().ends_with("(kept tree)"),
            "{stage} did not come from the kept tree: {done}"
        );
    }
    assert_eq!(finished(&events, "files")["cached"], false);

    // The image holds the new content.
    let raw = dir.path().join("kept.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(out.join("kiln-kept.qcow2"))
        .arg(&raw));
    let offset = root_offset(&manifest(&out, "kiln-kept"));
    assert_eq!(
        debugfs_cat(&raw, offset, "/etc/kiln-kept"),
        format!("{nonce} two")
    );
    // The kept tree is as the packages stage left it: the later stages wrote
    // only to the build's own overlay layer. Nothing stays mounted.
    let trees: Vec<PathBuf> = fs::read_dir(cache_dir().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().path().join("root"))
        .collect();
    assert!(!trees.is_empty(), "no kept tree in the cache");
    for tree in &trees {
        assert!(tree.join("etc/os-release").exists(), "{}", tree.display());
        assert!(
            !tree.join("etc/kiln-kept").exists(),
            "{} was written to",
            tree.display()
        );
    }
    assert_eq!(leftovers(&cache_dir()), (vec![], vec![]));
}
