//! The marketplace web UI end to end: a real `kiln serve` on the embedded
//! default, users made with `kiln user add`, entries published with `kiln
//! push`, then the browser tests (crates/kiln-market/tests/web) in Debian's
//! headless Chromium driven by playwright-core. scripts/setup installs
//! chromium, node and the npm packages; without them this test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{Served, kiln_at_home};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-market/tests/web")
}

fn run(mut cmd: Command, stdin: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `n` bytes a raw-image inspector accepts (no format's signature).
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn web_ui_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/setup installs Debian's chromium"
    );
    let web = web_dir();
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: scripts/setup runs npm ci there",
        web.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let mut dev_token = String::new();
    for (name, role) in [
        ("admin", "admin"),
        ("dev", "developer"),
        ("reader", "reader"),
    ] {
        let mut c = kiln_at_home(&home);
        c.args(["user", "add", name, "--role", role, "--password-stdin"])
            .args(["--data", data]);
        let token = run(c, &format!("{name}-password\n"));
        if name == "dev" {
            dev_token = token.trim().to_string();
        }
    }

    let served = Served::start(kiln_at_home(&home), &["--data", data], Stdio::null());
    let url = served.url.clone();

    // Seed: three entries, two of one series, with different os/arch/tags.
    // The first entry is endorsed at push with a fresh Ed25519 key.
    let mut c = kiln_at_home(&home);
    c.arg("key").arg("gen").arg(dir.path().join("endorser"));
    let endorser = run(c, "").trim().to_string();
    let mut seed_sha = String::new();
    for (i, (title, os, arch, tag, series)) in [
        (
            "Debian 12 base",
            "debian",
            "x86_64",
            "base",
            Some("debian-12"),
        ),
        ("Alpine 3.20", "alpine", "aarch64", "minimal", None),
        (
            "Debian 12 web",
            "debian",
            "x86_64",
            "web",
            Some("debian-12"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = noise(64 << 10, i as u32 + 7);
        let path = dir.path().join(format!("seed{i}.img"));
        std::fs::write(&path, &bytes).unwrap();
        if i == 0 {
            seed_sha = sha256(&bytes);
        }
        let mut c = kiln_at_home(&home);
        c.arg("push")
            .arg(&path)
            .args(["--title", title, "--os", os, "--arch", arch, "--tag", tag])
            .args(["--server", &url, "--token", &dev_token, "--json"]);
        if let Some(s) = series {
            c.args(["--series", s]);
        }
        if i == 0 {
            c.arg("--sign").arg(dir.path().join("endorser.key"));
        }
        run(c, "");
    }

    // A real qcow2 image (qemu-img converts 1 MiB of data into it).
    let raw = dir.path().join("upload.raw");
    std::fs::write(&raw, noise(1 << 20, 99)).unwrap();
    let qcow2 = dir.path().join("upload.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .expect("qemu-img (scripts/setup installs qemu-utils)");
    assert!(status.success());

    let out = Command::new("node")
        .arg("--test-reporter=spec")
        .arg("web.test.mjs")
        .current_dir(&web)
        .env("KILN_URL", &url)
        .env("KILN_UPLOAD_IMAGE", &qcow2)
        .env("KILN_SEED_SHA256", &seed_sha)
        .env("KILN_SEED_ENDORSER", &endorser)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node (scripts/setup installs nodejs)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "browser tests failed:\n{report}");
    // node's runner reports what ran: every test passed, none was skipped.
    assert!(report.contains("ℹ fail 0"), "{report}");
    assert!(report.contains("ℹ skipped 0"), "{report}");
    assert!(!report.contains("ℹ pass 0\n"), "no test ran: {report}");
    drop(served);
}
