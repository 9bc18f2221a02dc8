//! Trust end to end through the `kiln` binary: key gen, sign, verify (Ed25519
//! and CMS, with openssl in both directions), push --sign, endorse, policy
//! check and verified pull against a running `kiln serve`, with a refusal
//! test for each reason; a refusal leaves no file behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use assert_cmd::cargo::cargo_bin;
use kiln_trust::testkit::{KeyType, TestPki, openssl};
use serde_json::Value;

struct Env {
    home: PathBuf,
}

impl Env {
    fn new(dir: &Path) -> Env {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        Env { home }
    }

    fn kiln(&self) -> Command {
        let mut c = Command::new(cargo_bin("kiln"));
        c.env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("KILN_SERVER")
            .env_remove("KILN_TOKEN")
            .env_remove("KILN_CLIENT_CONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.kiln().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kiln {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must exit `code`; returns stdout + stderr.
    fn code(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "kiln {args:?}: {text}");
        text
    }

    fn serve(&self, data: &str) -> Served {
        let mut child = self
            .kiln()
            .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("kiln: serving on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Served { child, url }
    }
}

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn key_gen_sign_and_verify_with_ed25519_and_cms() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    let alice = env.ok(&["key", "gen", s(&d("alice"))]);
    assert!(
        alice.trim().starts_with("ed25519:") && alice.trim().len() == 72,
        "{alice}"
    );
    let mode = std::fs::metadata(d("alice.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    env.code(2, &["key", "gen", s(&d("alice"))]); // never overwrites
    let bob: Value =
        serde_json::from_str(&env.ok(&["key", "gen", s(&d("bob")), "--json"])).unwrap();
    assert_eq!(bob["identity"]["kind"], "ed25519");

    std::fs::write(d("doc"), b"a manifest\n").unwrap();
    env.ok(&[
        "sign",
        s(&d("doc")),
        "--key",
        s(&d("alice.key")),
        "-o",
        s(&d("doc.sig")),
    ]);
    let v: Value = serde_json::from_str(&env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("doc.sig")),
        "--trust",
        s(&d("alice.pub")),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["signer"]["fingerprint"], alice.trim());
    // Unknown signer, tampered bytes: exit 1 with the reason.
    let out = env.code(
        1,
        &[
            "verify",
            s(&d("doc")),
            s(&d("doc.sig")),
            "--trust",
            s(&d("bob.pub")),
        ],
    );
    assert!(out.contains("unknown signer"), "{out}");
    std::fs::write(d("doc"), b"a manifest!\n").unwrap();
    let out = env.code(
        1,
        &[
            "verify",
            s(&d("doc")),
            s(&d("doc.sig")),
            "--trust",
            s(&d("alice.pub")),
        ],
    );
    assert!(out.contains("bad signature"), "{out}");

    // CMS: kiln signs, openssl verifies; openssl signs, kiln verifies against a CA dir.
    let pki = TestPki::new("Kiln Test CA");
    let (cert, key) = pki.signer("carol", KeyType::Ecdsa);
    let (dcert, dkey) = pki.signer("dave", KeyType::Rsa);
    pki.revoke("dave");
    let ca_dir = pki.ca_dir(true);
    env.ok(&[
        "sign",
        s(&d("doc")),
        "--cert",
        s(&cert),
        "--key",
        s(&key),
        "-o",
        s(&d("doc.cms")),
    ]);
    openssl(
        dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "PEM",
            "-in",
            "doc.cms",
            "-content",
            "doc",
            "-CAfile",
            s(&pki.ca_cert()),
            "-out",
            "/dev/null",
        ],
    );
    let out = env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("doc.cms")),
        "--ca-dir",
        s(&ca_dir),
    ]);
    assert!(out.contains("/CN=carol"), "{out}");
    openssl(
        dir.path(),
        &[
            "cms",
            "-sign",
            "-binary",
            "-in",
            "doc",
            "-signer",
            s(&dcert),
            "-inkey",
            s(&dkey),
            "-outform",
            "DER",
            "-out",
            "dave.der",
        ],
    );
    let out = env.code(
        1,
        &[
            "verify",
            s(&d("doc")),
            s(&d("dave.der")),
            "--ca-dir",
            s(&ca_dir),
        ],
    );
    assert!(out.contains("revoked"), "{out}");
    // Without a CRL dave's signature is fine: what refused it was the CRL.
    let out = env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("dave.der")),
        "--trust",
        s(&pki.ca_cert()),
    ]);
    assert!(out.contains("/CN=dave"), "{out}");
}

/// A raw image of `n` bytes.
fn image(path: &Path, n: usize, seed: u32) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

fn curl_patch(url: &str, token: &str, body: &str) {
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PATCH",
            "-H",
            "content-type: application/json",
            "-H",
        ])
        .arg(format!("authorization: Bearer {token}"))
        .args(["--data", body, url])
        .output()
        .expect("curl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "PATCH {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn push_sign_endorse_policy_and_verified_pull_with_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    let data = d("data");
    let dev = env
        .ok(&[
            "user",
            "add",
            "dev",
            "--role",
            "developer",
            "--data",
            s(&data),
        ])
        .trim()
        .to_string();
    let server = env.serve(s(&data));
    let url = server.url.clone();
    let remote = |mut v: Vec<String>| {
        v.extend([
            "--server".into(),
            url.clone(),
            "--token".into(),
            dev.clone(),
        ]);
        v
    };
    let run = |code: i32, args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        env.code(code, &a)
    };
    let st = |p: &Path| p.to_str().unwrap().to_string();
    env.ok(&["key", "gen", s(&d("alice"))]);
    env.ok(&["key", "gen", s(&d("bob"))]);
    image(&d("img.raw"), 1 << 20, 7);

    // push --sign endorses the new entry.
    let pushed = run(
        0,
        remote(vec![
            "push".into(),
            st(&d("img.raw")),
            "--title".into(),
            "signed".into(),
            "--sign".into(),
            st(&d("alice.key")),
            "--json".into(),
        ]),
    );
    let pushed: Value = serde_json::from_str(&pushed[..pushed.rfind('}').unwrap() + 1]).unwrap();
    let id = pushed["id"].as_str().unwrap().to_string();

    // Accepted: policy check explains, pull writes the verified file.
    let out = run(
        0,
        remote(vec![
            "policy".into(),
            "check".into(),
            id.clone(),
            "--trust".into(),
            st(&d("alice.pub")),
        ]),
    );
    assert!(
        out.contains("min-endorsements") && out.contains("accepted"),
        "{out}"
    );
    let report: Value = serde_json::from_str(&run(
        0,
        remote(vec![
            "policy".into(),
            "check".into(),
            id.clone(),
            "--trust".into(),
            st(&d("alice.pub")),
            "--json".into(),
        ]),
    ))
    .unwrap();
    assert_eq!(report["accepted"], true);
    run(
        0,
        remote(vec![
            "pull".into(),
            id.clone(),
            "-o".into(),
            st(&d("ok.raw")),
            "--trust".into(),
            st(&d("alice.pub")),
        ]),
    );
    assert_eq!(
        std::fs::read(d("ok.raw")).unwrap(),
        std::fs::read(d("img.raw")).unwrap()
    );

    let refused = |args: Vec<String>, out_name: &str, reason: &str| {
        let mut a = remote(vec![
            "pull".into(),
            id.clone(),
            "-o".into(),
            st(&d(out_name)),
        ]);
        a.extend(args);
        let text = run(2, a);
        assert!(text.contains(reason), "expected {reason:?} in: {text}");
        assert!(
            !d(out_name).exists() && !d(&format!("{out_name}.part")).exists(),
            "{out_name} left behind"
        );
    };
    // Unknown signer.
    refused(
        vec!["--trust".into(), st(&d("bob.pub"))],
        "unknown.raw",
        "unknown signer",
    );
    // Denied signer, revoked key, checksum on the deny list: policy files.
    env.ok(&[
        "endorse",
        &id,
        "--key",
        s(&d("bob.key")),
        "--server",
        &url,
        "--token",
        &dev,
    ]);
    let sha256 = pushed["checksums"]["sha256"].as_str().unwrap().to_string();
    let policy = |name: &str, body: &str| {
        let p = d(name);
        std::fs::write(&p, format!("{body}[[trusted]]\nkey_file = \"alice.pub\"\n")).unwrap();
        st(&p)
    };
    let bob_fp = {
        // The fingerprint of bob.pub, as kiln prints it for a signature by bob.
        std::fs::write(d("x"), b"x").unwrap();
        env.ok(&[
            "sign",
            s(&d("x")),
            "--key",
            s(&d("bob.key")),
            "-o",
            s(&d("x.sig")),
        ]);
        let v: Value = serde_json::from_str(&env.ok(&[
            "verify",
            s(&d("x")),
            s(&d("x.sig")),
            "--trust",
            s(&d("bob.pub")),
            "--json",
        ]))
        .unwrap();
        v["signer"]["fingerprint"].as_str().unwrap().to_string()
    };
    let alice_fp = {
        env.ok(&[
            "sign",
            s(&d("x")),
            "--key",
            s(&d("alice.key")),
            "-o",
            s(&d("x.sig")),
        ]);
        let v: Value = serde_json::from_str(&env.ok(&[
            "verify",
            s(&d("x")),
            s(&d("x.sig")),
            "--trust",
            s(&d("alice.pub")),
            "--json",
        ]))
        .unwrap();
        v["signer"]["fingerprint"].as_str().unwrap().to_string()
    };
    let p = policy("denied.toml", &format!("[[denied]]\nkey = \"{bob_fp}\"\n"));
    let out = run(
        1,
        remote(vec![
            "policy".into(),
            "check".into(),
            id.clone(),
            "--policy".into(),
            p.clone(),
        ]),
    );
    assert!(out.contains("FAIL  denied-endorsers"), "{out}");
    refused(vec!["--policy".into(), p], "denied.raw", "denied-endorsers");
    let p = policy(
        "revoked.toml",
        &format!("revoked_keys = [\"{alice_fp}\"]\n"),
    );
    refused(vec!["--policy".into(), p], "revoked.raw", "revoked key");
    let p = policy(
        "checksum.toml",
        &format!("denied_checksums = [\"sha256:{sha256}\"]\n"),
    );
    refused(
        vec!["--policy".into(), p],
        "checksum.raw",
        "denied-checksums",
    );

    // Tampered metadata: the owner extends valid_until after alice endorsed.
    let entry_url = format!("{url}/api/v1/entries/{id}");
    curl_patch(
        &entry_url,
        &dev,
        r#"{"valid_until": "2099-01-01T00:00:00Z"}"#,
    );
    refused(
        vec!["--trust".into(), st(&d("alice.pub"))],
        "meta.raw",
        "does not match the entry's metadata",
    );
    // Expired: alice endorses the (past) expiry; the policy refuses it as expired.
    curl_patch(
        &entry_url,
        &dev,
        r#"{"valid_until": "2020-01-01T00:00:00Z"}"#,
    );
    env.ok(&[
        "endorse",
        &id,
        "--key",
        s(&d("alice.key")),
        "--server",
        &url,
        "--token",
        &dev,
    ]);
    refused(
        vec!["--trust".into(), st(&d("alice.pub"))],
        "expired.raw",
        "refuse-expired",
    );
    // Deprecated (after an expiry in the future and a fresh endorsement).
    curl_patch(
        &entry_url,
        &dev,
        r#"{"valid_until": "2099-01-01T00:00:00Z"}"#,
    );
    let e: Value = serde_json::from_str(&env.ok(&[
        "endorse",
        &id,
        "--key",
        s(&d("alice.key")),
        "--server",
        &url,
        "--token",
        &dev,
        "--json",
    ]))
    .unwrap();
    run(
        0,
        remote(vec![
            "pull".into(),
            id.clone(),
            "-o".into(),
            st(&d("again.raw")),
            "--trust".into(),
            st(&d("alice.pub")),
        ]),
    );
    // The endorser revokes its endorsement: it no longer counts.
    let eid = e["id"].as_str().unwrap();
    env.ok(&[
        "endorse",
        &id,
        "--key",
        s(&d("alice.key")),
        "--revoke",
        eid,
        "--reason",
        "oops",
        "--server",
        &url,
        "--token",
        &dev,
    ]);
    refused(
        vec!["--trust".into(), st(&d("alice.pub"))],
        "rev.raw",
        "revoked by its endorser",
    );
    let e: Value = serde_json::from_str(&env.ok(&[
        "endorse",
        &id,
        "--key",
        s(&d("alice.key")),
        "--server",
        &url,
        "--token",
        &dev,
        "--json",
    ]))
    .unwrap();
    assert_eq!(e["status"], "active");
    env.ok(&[
        "deprecate",
        &id,
        "--reason",
        "use the next one",
        "--server",
        &url,
        "--token",
        &dev,
    ]);
    refused(
        vec!["--trust".into(), st(&d("alice.pub"))],
        "dep.raw",
        "use the next one",
    );

    // Tampered bytes: the stored blob changes under an accepted entry.
    let id2 = {
        image(&d("img2.raw"), 1 << 20, 9);
        let out = run(
            0,
            remote(vec![
                "push".into(),
                st(&d("img2.raw")),
                "--title".into(),
                "two".into(),
                "--sign".into(),
                st(&d("alice.key")),
            ]),
        );
        out.lines().find(|l| l.len() == 36).unwrap().to_string()
    };
    let blob = walk(&data.join("blobs"))
        .into_iter()
        .find(|p| std::fs::read(p).unwrap() == std::fs::read(d("img2.raw")).unwrap())
        .expect("the stored blob");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let mut a = remote(vec![
        "pull".into(),
        id2,
        "-o".into(),
        st(&d("bytes.raw")),
        "--trust".into(),
        st(&d("alice.pub")),
    ]);
    a.push("--json".into());
    let text = run(2, a);
    assert!(text.contains("sha256"), "{text}");
    assert!(!d("bytes.raw").exists() && !d("bytes.raw.part").exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
